//! Chore commands. In a group: `/addchore`, `/chores [mine|overdue|@name]`, `/mychores`,
//! `/done`, `/assign`, `/editchore`, `/skip`, `/deletechore`, `/stats`, `/leaderboard`,
//! `/reminders dm|group`. In a private chat `/addpersonal`, and `/chores`, `/done`,
//! `/editchore`, `/skip`, `/deletechore` act on the member's personal chores. Also the
//! deterministic "done dishes" reply ([`handle_text_claim`], the router's [`ChoreClaims`] step).
//! Uses: router (context, shape, traits), the chores service, stats, format.

use super::{
    add, add_personal, assign, claim, edit, list_open, recurrence_of, request_deletion,
    resolve_member, skip,
    stats::{self, Period},
    zone_of, ChoreError, Claimed, Deletion, ListFilter, MAX_SWAPS_PER_WEEK,
};
use crate::{
    format::escape_html as e,
    router::{Command, CommandCtx, CommandSet, TextCtx, TextHandler},
    services::Services,
    store::{ChoreRow, ChoreStatus, StoreResult},
    types::{ChatKind, Outbound},
};

/// (command, description) for /help and Telegram's menu.
pub const COMMANDS: &[(&str, &str)] = &[
    (
        "addchore",
        "Add a group chore, e.g. /addchore Water plants every 3 days @bob",
    ),
    ("chores", "Open chores; /chores mine, overdue or @name"),
    ("mychores", "Your open chores"),
    (
        "done",
        "Say you did a chore, e.g. /done dishes (someone verifies)",
    ),
    (
        "assign",
        "Who does it: /assign dishes @bob, or @a @b to take turns",
    ),
    (
        "editchore",
        "Edit: /editchore dishes points 2 (title, repeat, due, anchor…)",
    ),
    ("skip", "Skip this occurrence of a repeating chore"),
    ("deletechore", "Ask to delete a chore (someone approves)"),
    (
        "addpersonal",
        "In private: /addpersonal Run 5k partner @bob",
    ),
    ("stats", "Chore stats: /stats week, month or all"),
    (
        "leaderboard",
        "Points leaderboard: /leaderboard week, month or all",
    ),
    ("reminders", "Where reminders go: /reminders dm or group"),
];

/// The chore commands as a registered [`CommandSet`].
pub struct ChoreCommands;

#[async_trait::async_trait]
impl CommandSet for ChoreCommands {
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
    fn help_note(&self) -> Option<String> {
        Some(format!(
            "Doing someone else's chore is a swap: you get the points, they keep their turn (at most {MAX_SWAPS_PER_WEEK} a week)."
        ))
    }
    async fn rezone(
        &self,
        svc: &Services,
        chat_id: i64,
        old: chrono_tz::Tz,
        new: chrono_tz::Tz,
    ) -> anyhow::Result<()> {
        super::rezone(svc, chat_id, old, new).await?;
        Ok(())
    }
}

/// The router's text step for "done dishes" (see [`handle_text_claim`]).
pub struct ChoreClaims;

#[async_trait::async_trait]
impl TextHandler for ChoreClaims {
    fn name(&self) -> &'static str {
        "chore_claim"
    }
    async fn handle(&self, svc: &Services, msg: &TextCtx<'_>) -> StoreResult<bool> {
        handle_text_claim(
            svc,
            msg.chat.id,
            msg.private(),
            msg.from.id,
            msg.text,
            msg.reply_to,
        )
        .await
    }
}

/// Handle a chore command; `None` when the name is not one of them.
pub async fn handle(
    svc: &Services,
    ctx: &CommandCtx<'_>,
    cmd: &Command,
) -> Option<anyhow::Result<()>> {
    let private = ctx.chat_kind == ChatKind::Private;
    let group_only = matches!(
        cmd.name.as_str(),
        "addchore" | "assign" | "stats" | "leaderboard" | "reminders" | "mychores"
    );
    let r: Result<Option<String>, ChoreError> = match cmd.name.as_str() {
        n if group_only && private && n != "mychores" => Err(ChoreError::GroupOnly),
        "mychores" if private => listing(svc, ctx.chat.id, true, ListFilter::Open, "").await,
        "addchore" => match add(svc, ctx.chat.id, ctx.from.id, &cmd.args).await {
            Ok(c) => describe(svc, &c).await.map(|d| Some(format!("Added chore {d}."))),
            Err(err) => Err(err),
        },
        "addpersonal" if !private => Err(ChoreError::PrivateOnly),
        "addpersonal" => match add_personal(svc, ctx.chat.id, ctx.from.id, &cmd.args).await {
            Ok((c, p)) => describe(svc, &c).await.map(|d| {
                Some(match p {
                    Some(p) => format!(
                        "Added chore {d}. {} will verify it when you say /done.",
                        e(&p.first_name)
                    ),
                    None => format!(
                        "Added chore {d}. No partner: /done completes it. Add one with /addpersonal &lt;title&gt; partner @username."
                    ),
                })
            }),
            Err(err) => Err(err),
        },
        "chores" => chores_command(svc, ctx, &cmd.args).await,
        "mychores" => {
            listing(svc, ctx.chat.id, false, ListFilter::AssignedTo(ctx.from.id), "yours").await
        }
        "done" => claim_reply(svc, ctx.chat.id, private, ctx.from.id, &cmd.args).await,
        "assign" => match assign(svc, ctx.chat.id, &cmd.args).await {
            Ok(c) => describe(svc, &c).await.map(|d| Some(format!("Updated {d}."))),
            Err(err) => Err(err),
        },
        "editchore" => match edit(svc, ctx.chat.id, ctx.from.id, &cmd.args).await {
            Ok(c) => describe(svc, &c).await.map(|d| Some(format!("Updated {d}."))),
            Err(err) => Err(err),
        },
        "skip" => match skip(svc, ctx.chat.id, ctx.from.id, &cmd.args).await {
            Ok(c) => describe(svc, &c).await.map(|d| Some(format!("Skipped this one: {d}."))),
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
        "stats" | "leaderboard" => match Period::parse(&cmd.args) {
            None => Err(ChoreError::BadEdit(format!(
                "'{}' isn't a period: say week, month or all.",
                crate::context::clip(&cmd.args, 30)
            ))),
            Some(p) if cmd.name == "stats" => {
                stats::stats_html(svc, ctx.chat.id, p).await.map(Some).map_err(Into::into)
            }
            Some(p) => {
                return Some(stats::send_leaderboard(svc, ctx.chat.id, p).await);
            }
        },
        "reminders" => reminders_command(svc, ctx, &cmd.args).await,
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

/// `/chores [mine|overdue|@name]`.
async fn chores_command(
    svc: &Services,
    ctx: &CommandCtx<'_>,
    args: &str,
) -> Result<Option<String>, ChoreError> {
    let private = ctx.chat_kind == ChatKind::Private;
    let a = args.trim().to_lowercase();
    let (filter, label) = match a.as_str() {
        "" | "all" => (ListFilter::Open, String::new()),
        "mine" | "my" | "me" => (ListFilter::AssignedTo(ctx.from.id), "yours".into()),
        "overdue" | "late" => (ListFilter::Overdue, "overdue".into()),
        _ if private => return Err(ChoreError::BadEdit(
            "In private, /chores lists your personal chores; /chores overdue shows the late ones."
                .into(),
        )),
        _ => {
            let m = resolve_member(svc, ctx.chat.id, args).await?;
            (ListFilter::AssignedTo(m.user_id), m.first_name)
        }
    };
    listing(svc, ctx.chat.id, private, filter, &label).await
}

async fn listing(
    svc: &Services,
    chat_id: i64,
    private: bool,
    filter: ListFilter,
    label: &str,
) -> Result<Option<String>, ChoreError> {
    let cs = list_open(svc, chat_id, filter).await?;
    Ok(Some(chores_list(svc, &cs, private, label).await?))
}

/// `/reminders [dm|group]`: show or set where this group's chore reminders go (admins set).
async fn reminders_command(
    svc: &Services,
    ctx: &CommandCtx<'_>,
    args: &str,
) -> Result<Option<String>, ChoreError> {
    use super::reminders::{TO_DM, TO_GROUP};
    let a = args.trim().to_lowercase();
    if a.is_empty() {
        return Ok(Some(format!(
            "Chore reminders go to <b>{}</b>. Change with /reminders dm or /reminders group.",
            if ctx.chat.reminders == TO_DM {
                "each assignee in private"
            } else {
                "this group"
            }
        )));
    }
    if !ctx.member.is_some_and(|m| m.is_admin()) {
        return Err(ChoreError::BadEdit(
            "Only a group admin can change where reminders go.".into(),
        ));
    }
    let to = match a.as_str() {
        "dm" | "private" => TO_DM,
        "group" | "here" => TO_GROUP,
        _ => {
            return Err(ChoreError::BadEdit(
                "Say /reminders dm or /reminders group.".into(),
            ))
        }
    };
    svc.store.set_chat_reminders(ctx.chat.id, to).await?;
    Ok(Some(if to == TO_DM {
        "Reminders will go to each assignee in private (unassigned chores: here).".into()
    } else {
        "Reminders will go to this group.".into()
    }))
}

/// The reply to a claim of `query` (`/done`, "done dishes"): always says who may verify (in a
/// group anyone but the claimer; for a personal chore the partner, by name), so the claimer
/// knows what happens next. A group claim's reply comes after the request message with its
/// buttons.
pub async fn claim_reply(
    svc: &Services,
    chat_id: i64,
    private: bool,
    user_id: i64,
    query: &str,
) -> Result<Option<String>, ChoreError> {
    match claim(svc, chat_id, user_id, query).await? {
        Claimed::Requested {
            workflow,
            delivered,
        } if !private => Ok(Some(if delivered {
            format!(
                "Sent “{}” to the group for verification — anyone but you can approve.",
                e(&workflow.target_title)
            )
        } else {
            format!(
                "I couldn't post the verification request for “{}” here; it waits in /approvals — anyone but you can approve.",
                e(&workflow.target_title)
            )
        })),
        Claimed::Requested {
            workflow,
            delivered,
        } => {
            let partner = super::verifier(svc, &workflow).await?;
            let p = e(&partner);
            Ok(Some(if delivered {
                format!(
                    "Sent “{}” to {p}, your accountability partner — only {p} can verify it.",
                    e(&workflow.target_title)
                )
            } else {
                format!(
                    "I couldn't message {p}, your accountability partner, about “{}”: they need to open a private chat with me first. The request waits in their /approvals; only {p} can verify it.",
                    e(&workflow.target_title)
                )
            }))
        }
        Claimed::Completed(c) => Ok(Some(format!("✅ “{}” done.", e(&c.title)))),
    }
}

/// Core routing: answer "done dishes" without a model call when it is clearly a claim (see
/// [`super::text_claim`]). Returns false when it is not (the core goes on).
pub async fn handle_text_claim(
    svc: &Services,
    chat_id: i64,
    private: bool,
    user_id: i64,
    text: &str,
    reply_to: Option<i64>,
) -> StoreResult<bool> {
    let Some(id) = super::text_claim(svc, chat_id, user_id, text).await? else {
        return Ok(false);
    };
    let html = match claim_reply(svc, chat_id, private, user_id, &format!("#{id}")).await {
        Ok(None) => return Ok(true),
        Ok(Some(h)) => h,
        Err(ChoreError::Store(err)) => return Err(err),
        Err(user) => e(&user.to_string()),
    };
    if let Err(err) = svc
        .outbox
        .send(Outbound {
            chat_id,
            html,
            buttons: vec![],
            reply_to,
        })
        .await
    {
        tracing::warn!(chat_id, error = %err, "claim reply not delivered");
    }
    Ok(true)
}

/// "#3 “Bins” (Mon at 19:00, next Mon 23 Nov 19:00, Bob)".
async fn describe(svc: &Services, c: &ChoreRow) -> Result<String, ChoreError> {
    let zone = zone_of(svc, c.chat_id).await?;
    let names = match c.assignee_id.filter(|_| !c.personal) {
        Some(a) => crate::workflow::render::names(svc, &[a]).await?,
        None => Default::default(),
    };
    let parts = details(c, zone, &names);
    let extra = if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    };
    Ok(format!("#{} “{}”{extra}", c.id, e(&c.title)))
}

/// A chore's details: recurrence, next due (local), assignee and rotation, points (HTML).
fn details(
    c: &ChoreRow,
    zone: chrono_tz::Tz,
    names: &std::collections::HashMap<i64, String>,
) -> Vec<String> {
    let mut parts = Vec::new();
    if let Some(r) = recurrence_of(c).filter(super::repeats) {
        parts.push(e(&r.describe()));
    }
    if let Some(d) = c.next_due {
        parts.push(format!(
            "due {}",
            d.with_timezone(&zone).format("%a %-d %b %H:%M")
        ));
    }
    if let Some(n) = c.assignee_id.and_then(|a| names.get(&a)) {
        let rot = c.rotation.describe();
        parts.push(if rot.is_empty() {
            e(n)
        } else {
            format!("{} ({rot})", e(n))
        });
    }
    if c.points != 1 {
        parts.push(format!("{} pts", c.points));
    }
    parts
}

/// The chores list: id, title, details, state.
pub async fn chores_list(
    svc: &Services,
    cs: &[ChoreRow],
    private: bool,
    label: &str,
) -> StoreResult<String> {
    if cs.is_empty() {
        return Ok(match (private, label.is_empty()) {
            (_, false) => format!("No open chores ({}).", e(label)),
            (true, true) => "No personal chores yet. Add one with /addpersonal &lt;title&gt; [partner @username].".into(),
            (false, true) => "No chores yet. Add one with /addchore &lt;title&gt;.".into(),
        });
    }
    let zone = zone_of(svc, cs[0].chat_id).await?;
    let ids: Vec<i64> = cs.iter().filter_map(|c| c.assignee_id).collect();
    let names = crate::workflow::render::names(svc, &ids).await?;
    let mut s = match (private, label.is_empty()) {
        (true, _) => "<b>Your personal chores</b>\n".to_string(),
        (false, true) => "<b>Chores</b>\n".to_string(),
        (false, false) => format!("<b>Chores ({})</b>\n", e(label)),
    };
    let now = svc.clock.now();
    for c in cs {
        let state = if c.status == ChoreStatus::Pending {
            " · ⏳ waiting for verification"
        } else if super::is_overdue(c, now) {
            " · ⚠️ overdue"
        } else {
            ""
        };
        let names = if c.personal {
            Default::default()
        } else {
            names.clone()
        };
        let d: String = details(c, zone, &names)
            .into_iter()
            .map(|p| format!(" · {p}"))
            .collect();
        s.push_str(&format!("#{} {}{d}{state}\n", c.id, e(&c.title)));
    }
    s.push_str(&format!(
        "<i>/done &lt;chore&gt; when you did one (someone else's counts as a swap: you get the points, they keep their turn; at most {MAX_SWAPS_PER_WEEK} a week).</i>"
    ));
    Ok(s)
}
