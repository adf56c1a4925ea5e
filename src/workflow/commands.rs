//! Workflow commands: `/approvals`, `/approve <targets>`, `/reject <targets> [reason]`,
//! `/cancel [request]`. They use the same actionable list, parser and service path as text
//! replies and buttons. Also the router's approval-reply text step ([`ApprovalReplies`]).
//! Uses: router (context, shape, traits), the workflow service.

use super::{
    actionable, cancel, items, my_pending, parse, render, respond, Decision, Outcome, Via, Viewer,
};
use crate::{
    format::escape_html as e,
    router::{Command, CommandCtx, CommandSet, TextCtx, TextHandler},
    services::Services,
    store::{StoreResult, WorkflowRow},
    types::ChatKind,
};

/// (command, description) for /help and Telegram's menu.
pub const COMMANDS: &[(&str, &str)] = &[
    ("approvals", "Requests you can approve, and your own"),
    (
        "approve",
        "Approve requests, e.g. /approve 1 3 or /approve all",
    ),
    ("reject", "Reject requests, e.g. /reject 2 not clean yet"),
    ("cancel", "Cancel one of your pending requests"),
];

/// The workflow commands as a registered [`CommandSet`].
pub struct WorkflowCommands;

#[async_trait::async_trait]
impl CommandSet for WorkflowCommands {
    fn menu(&self) -> &'static [(&'static str, &'static str)] {
        COMMANDS
    }
    async fn handle(
        &self,
        svc: &Services,
        ctx: &CommandCtx<'_>,
        cmd: &Command,
    ) -> Option<anyhow::Result<()>> {
        handle(svc, ctx, cmd).await
    }
}

/// The router's text step for approval replies ("approve both", "reject 2"): resolves what the
/// parser fully understands against the sender's actionable list, without a model call (see
/// [`super::handle_reply`]). A requester deciding their own request ("approve bathroom") is
/// told they can't ([`super::Denial::OwnRequest`]) instead of being left without an answer
/// (issue 8, item 13). Anything else is declined and goes on to the agent.
pub struct ApprovalReplies;

#[async_trait::async_trait]
impl TextHandler for ApprovalReplies {
    fn name(&self) -> &'static str {
        "approval_reply"
    }

    async fn handle(&self, svc: &Services, msg: &TextCtx<'_>) -> StoreResult<bool> {
        let v = Viewer {
            user_id: msg.from.id,
            chat_id: msg.chat.id,
            private: msg.private(),
        };
        if super::handle_reply(
            svc,
            v,
            msg.text,
            msg.addressed,
            msg.reply_to,
            msg.replied_to,
        )
        .await?
        {
            return Ok(true);
        }
        own_request_reply(svc, v, msg).await
    }
}

/// "approve bathroom" by the member who asked for it: the text names only the sender's own
/// pending requests with an explicit verb (a bare "yes" does not count). Answers with the one
/// own-request message every path uses and returns true; false when that is not the case.
async fn own_request_reply(svc: &Services, v: Viewer, msg: &TextCtx<'_>) -> StoreResult<bool> {
    let mine = my_pending(svc, v).await?;
    if mine.is_empty() {
        return Ok(false);
    }
    let own = items(&mine);
    let plain = super::strip_mention(msg.text, &svc.bot.username);
    let explicit = matches!(
        parse::parse_reply(plain, &own, false),
        parse::ParseOutcome::Resolve(_)
    );
    if !explicit {
        return Ok(false);
    }
    let html = e(&super::Denial::OwnRequest.to_string());
    if let Err(err) = svc.outbox.send(msg.reply(html)).await {
        tracing::warn!(chat_id = v.chat_id, error = %err, "own-request reply not delivered");
    }
    Ok(true)
}

/// The viewer a command acts for.
pub fn viewer(ctx: &CommandCtx<'_>) -> Viewer {
    Viewer {
        user_id: ctx.from.id,
        chat_id: ctx.chat.id,
        private: ctx.chat_kind == ChatKind::Private,
    }
}

/// Handle a workflow command; `None` when the name is not one of them.
pub async fn handle(
    svc: &Services,
    ctx: &CommandCtx<'_>,
    cmd: &Command,
) -> Option<anyhow::Result<()>> {
    let r = match cmd.name.as_str() {
        "approvals" => approvals(svc, ctx).await,
        "approve" => decide_cmd(svc, ctx, Decision::Approve, &cmd.args).await,
        "reject" => decide_cmd(svc, ctx, Decision::Reject, &cmd.args).await,
        "cancel" => cancel_cmd(svc, ctx, &cmd.args).await,
        _ => return None,
    };
    Some(r)
}

async fn approvals(svc: &Services, ctx: &CommandCtx<'_>) -> anyhow::Result<()> {
    let v = viewer(ctx);
    let list = actionable(svc, v).await?;
    let mine = my_pending(svc, v).await?;
    let mut ids: Vec<i64> = list.iter().map(|w| w.requester_id).collect();
    ids.extend(mine.iter().map(|w| w.requester_id));
    let names = render::names(svc, &ids).await?;
    let html = render::approvals(svc, &list, &mine, &names, svc.clock.now());
    let sent = svc.outbox.send(ctx.reply(html)).await?;
    if let Some(last) = sent.last() {
        // a bare "yes" right after the list is about the list (see `about_requests`)
        svc.store
            .kv_set(&super::list_key(ctx.chat.id), &last.message_id.to_string())
            .await?;
    }
    Ok(())
}

async fn decide_cmd(
    svc: &Services,
    ctx: &CommandCtx<'_>,
    decision: Decision,
    args: &str,
) -> anyhow::Result<()> {
    let v = viewer(ctx);
    let list = actionable(svc, v).await?;
    let outcome = parse::parse_command(decision, args, &items(&list));
    respond(svc, v, &list, outcome, Via::Command, ctx.reply_to).await?;
    Ok(())
}

/// Which of `mine` the `/cancel` argument means: an id (`12`, `#12`), a title, or nothing when
/// there is exactly one.
fn pick<'a>(mine: &'a [WorkflowRow], args: &str) -> Result<&'a WorkflowRow, String> {
    let a = args.trim();
    if mine.is_empty() {
        return Err("You have no pending requests.".into());
    }
    if a.is_empty() {
        return match mine {
            [one] => Ok(one),
            _ => Err(format!(
                "You have {} pending requests: say which, e.g. /cancel {}.",
                mine.len(),
                mine[0].id
            )),
        };
    }
    let idq = a.strip_prefix('#').unwrap_or(a);
    if let Ok(id) = idq.parse::<i64>() {
        return mine
            .iter()
            .find(|w| w.id == id)
            .ok_or_else(|| format!("You have no pending request {id}. /approvals lists yours."));
    }
    let q = a.to_lowercase();
    let hits: Vec<&WorkflowRow> = mine
        .iter()
        .filter(|w| w.target_title.to_lowercase().contains(&q))
        .collect();
    match hits.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "None of your pending requests matches '{}'.",
            crate::context::clip(a, 60)
        )),
        many => Err(format!(
            "'{}' matches several requests: say which, e.g. /cancel {}.",
            crate::context::clip(a, 60),
            many[0].id
        )),
    }
}

async fn cancel_cmd(svc: &Services, ctx: &CommandCtx<'_>, args: &str) -> anyhow::Result<()> {
    let v = viewer(ctx);
    let mine = my_pending(svc, v).await?;
    let html = match pick(&mine, args) {
        Err(msg) => e(&msg),
        Ok(wf) => {
            let o = cancel(svc, wf.id, v.user_id, Via::Command, v.chat_id).await?;
            match &o {
                Outcome::Done(w) => {
                    format!("🚫 Cancelled your request to {}.", e(&render::what(svc, w)))
                }
                other => e(&render::outcome_plain(other)),
            }
        }
    };
    svc.outbox.send(ctx.reply(html)).await?;
    Ok(())
}
