//! Chore commands: `/addchore <title>`, `/chores`, `/done <chore>`, `/deletechore <chore>`
//! (group chores, in a group) and `/addpersonal <title> [partner @username]` (personal chores,
//! in a private chat; `/chores`, `/done` and `/deletechore` there act on personal chores).
//! Uses: core::commands (context and shape), the chores service.

use super::{
    add, add_personal, claim, list, recurrence_of, request_deletion, ChoreError, Claimed, Deletion,
};
use crate::{
    core::commands::{Command, CommandCtx},
    format::escape_html as e,
    services::Services,
    store::{ChoreRow, CHORE_COMPLETED, CHORE_PENDING},
    types::ChatKind,
};

/// (command, description) for /help and Telegram's menu.
pub const COMMANDS: &[(&str, &str)] = &[
    (
        "addchore",
        "Add a group chore, e.g. /addchore Water plants every 3 days",
    ),
    ("chores", "List the chores"),
    (
        "done",
        "Say you did a chore, e.g. /done dishes (someone verifies)",
    ),
    ("deletechore", "Ask to delete a chore (someone approves)"),
    (
        "addpersonal",
        "In private: /addpersonal Run 5k partner @bob",
    ),
];

/// Handle a chore command; `None` when the name is not one of them.
pub async fn handle(
    svc: &Services,
    ctx: &CommandCtx<'_>,
    cmd: &Command,
) -> Option<anyhow::Result<()>> {
    let private = ctx.chat_kind == ChatKind::Private;
    let r: Result<Option<String>, ChoreError> = match cmd.name.as_str() {
        "addchore" if private => Err(ChoreError::GroupOnly),
        "addchore" => add(svc, ctx.chat.id, ctx.from.id, &cmd.args)
            .await
            .map(|c| Some(added(&c))),
        "addpersonal" if !private => Err(ChoreError::PrivateOnly),
        "addpersonal" => add_personal(svc, ctx.chat.id, ctx.from.id, &cmd.args)
            .await
            .map(|(c, p)| {
                Some(match p {
                    Some(p) => format!(
                        "{} {} will verify it when you say /done.",
                        added(&c),
                        e(&p.first_name)
                    ),
                    None => format!(
                        "{} No partner: /done completes it. Add one with /addpersonal &lt;title&gt; partner @username.",
                        added(&c)
                    ),
                })
            }),
        "chores" => list(svc, ctx.chat.id)
            .await
            .map_err(ChoreError::from)
            .map(|cs| Some(chores_list(&cs, private))),
        "done" => match claim(svc, ctx.chat.id, ctx.from.id, &cmd.args).await {
            // the request message (with buttons) is the answer in a group
            Ok(Claimed::Requested {
                delivered: true, ..
            }) if !private => Ok(None),
            Ok(Claimed::Requested {
                workflow,
                delivered,
            }) => Ok(Some(if delivered {
                format!(
                    "Sent “{}” to your partner to verify.",
                    e(&workflow.target_title)
                )
            } else {
                format!(
                    "I couldn't message your partner about “{}”: they need to open a private chat with me first. The request waits in their /approvals.",
                    e(&workflow.target_title)
                )
            })),
            Ok(Claimed::Completed(c)) => Ok(Some(format!("✅ “{}” done.", e(&c.title)))),
            Err(err) => Err(err),
        },
        "deletechore" => match request_deletion(svc, ctx.chat.id, ctx.from.id, &cmd.args).await {
            Ok(Deletion::Requested {
                delivered: true, ..
            }) => Ok(None),
            Ok(Deletion::Requested { workflow, .. }) => Ok(Some(format!(
                "Asked the group to approve deleting “{}”.",
                e(&workflow.target_title)
            ))),
            Ok(Deletion::Archived(c)) => Ok(Some(format!("🗑 Deleted “{}”.", e(&c.title)))),
            Err(err) => Err(err),
        },
        _ => return None,
    };
    Some(match r {
        Ok(None) => Ok(()),
        Ok(Some(html)) => svc
            .outbox
            .send(ctx.reply(html))
            .await
            .map(|_| ())
            .map_err(Into::into),
        Err(ChoreError::Store(err)) => Err(err.into()),
        Err(user) => svc
            .outbox
            .send(ctx.reply(e(&user.to_string())))
            .await
            .map(|_| ())
            .map_err(Into::into),
    })
}

fn added(c: &ChoreRow) -> String {
    let rep = recurrence_of(c)
        .map(|r| format!(" ({})", r.describe()))
        .unwrap_or_default();
    format!("Added chore #{} “{}”{rep}.", c.id, e(&c.title))
}

/// The `/chores` list: id, title, state.
pub fn chores_list(cs: &[ChoreRow], private: bool) -> String {
    if cs.is_empty() {
        return if private {
            "No personal chores yet. Add one with /addpersonal &lt;title&gt; [partner @username]."
                .into()
        } else {
            "No chores yet. Add one with /addchore &lt;title&gt;.".into()
        };
    }
    let mut s = String::from(if private {
        "<b>Your personal chores</b>\n"
    } else {
        "<b>Chores</b>\n"
    });
    for c in cs {
        let state = match c.status.as_str() {
            CHORE_PENDING => " · ⏳ waiting for verification",
            CHORE_COMPLETED => " · ✅ done",
            _ => "",
        };
        let rep = recurrence_of(c)
            .map(|r| format!(" · {}", r.describe()))
            .unwrap_or_default();
        s.push_str(&format!("#{} {}{rep}{state}\n", c.id, e(&c.title)));
    }
    s.push_str("<i>/done &lt;chore&gt; when you did one.</i>");
    s
}
