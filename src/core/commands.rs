//! Slash commands: the foundation commands (/help, /members, /timezone) and dispatch through
//! the registered [`CommandSet`]s (the wiring registers each domain's). The core names no
//! domain: [`menu`] is the foundation's entries then each registered set's, and is what
//! `setMyCommands` publishes and /help lists.

pub use crate::router::{parse, Command, CommandCtx};
use crate::{
    format::escape_html as e,
    router::{MenuEntry, Router},
    services::Services,
    types::ChatKind,
};

/// The foundation's commands; [`menu`] adds each registered domain's list after them.
pub const FOUNDATION: &[MenuEntry] = &[
    ("help", "What I can do"),
    ("members", "Who is in this group"),
    (
        "timezone",
        "Show or set the time zone, e.g. /timezone Europe/London",
    ),
];

/// (command, description) as shown in Telegram's command menu (`setMyCommands`) and in /help:
/// the foundation's, then each registered set's own list in registration order (no copies).
pub fn menu(router: &Router) -> Vec<MenuEntry> {
    FOUNDATION.iter().copied().chain(router.menu()).collect()
}

/// Run a command: the foundation first, then each registered set in turn; the first that
/// knows the name handles it and sends its own replies through the outbox. An unknown name
/// gets "I don't know /x".
///
/// Errors: storage or delivery failures (the core apologises to the user).
pub async fn dispatch(
    svc: &Services,
    router: &Router,
    ctx: &CommandCtx<'_>,
    cmd: &Command,
) -> anyhow::Result<()> {
    if let Some(r) = foundation(svc, router, ctx, cmd).await {
        return r;
    }
    for set in router.command_sets() {
        if let Some(r) = set.handle(svc, ctx, cmd).await {
            return r;
        }
    }
    svc.outbox
        .send(ctx.reply(format!(
            "I don't know /{}. Try /help.",
            e(&crate::context::clip(&cmd.name, 40))
        )))
        .await?;
    Ok(())
}

/// The foundation commands: /start, /help, /members, /timezone.
async fn foundation(
    svc: &Services,
    router: &Router,
    ctx: &CommandCtx<'_>,
    cmd: &Command,
) -> Option<anyhow::Result<()>> {
    let html = match cmd.name.as_str() {
        "start" | "help" => Ok(help_text(&svc.bot.name, ctx.has_model, router)),
        "members" => members(svc, ctx).await,
        "timezone" => timezone(svc, router, ctx, &cmd.args).await,
        _ => return None,
    };
    Some(match html {
        Ok(h) => svc
            .outbox
            .send(ctx.reply(h))
            .await
            .map(|_| ())
            .map_err(Into::into),
        Err(e) => Err(e),
    })
}

async fn members(svc: &Services, ctx: &CommandCtx<'_>) -> anyhow::Result<String> {
    let ids = if ctx.chat_kind == ChatKind::Group {
        vec![ctx.chat.id]
    } else {
        svc.store
            .groups_of_user(ctx.from.id)
            .await?
            .into_iter()
            .map(|g| g.id)
            .collect()
    };
    let mut lines = Vec::new();
    for id in ids {
        for mm in svc.store.members(id).await? {
            lines.push(format!(
                "• {}{}{}",
                e(&mm.first_name),
                mm.username
                    .as_deref()
                    .map(|u| format!(" @{}", e(u)))
                    .unwrap_or_default(),
                if mm.is_admin() { " (admin)" } else { "" }
            ));
        }
    }
    Ok(if lines.is_empty() {
        "No members yet: I register people when they first write in a group.".into()
    } else {
        format!("<b>Members</b>\n{}", lines.join("\n"))
    })
}

async fn timezone(
    svc: &Services,
    router: &Router,
    ctx: &CommandCtx<'_>,
    args: &str,
) -> anyhow::Result<String> {
    let chat = ctx.chat;
    if args.is_empty() {
        return Ok(format!(
            "This chat's time zone is <b>{}</b>. Change it with /timezone Europe/London.",
            e(&chat.timezone)
        ));
    }
    if ctx.chat_kind == ChatKind::Group && !ctx.member.is_some_and(|m| m.is_admin()) {
        return Ok("Only a group admin can change the time zone.".into());
    }
    Ok(match args.trim().parse::<chrono_tz::Tz>() {
        Ok(tz) => {
            svc.store.set_chat_timezone(chat.id, tz.name()).await?;
            // each domain keeps its local times local (chores' due times, routines that
            // followed the chat's zone)
            let old =
                crate::schedule::parse_zone(&chat.timezone).unwrap_or(svc.config.group.timezone);
            for set in router.command_sets() {
                set.rezone(svc, chat.id, old, tz).await?;
            }
            format!("Time zone set to <b>{}</b>.", e(tz.name()))
        }
        Err(_) => format!(
            "'{}' is not an IANA time zone. Try a name like Europe/London or America/New_York.",
            e(&crate::context::clip(args, 60))
        ),
    })
}

/// The /help text.
pub fn help_text(bot: &str, has_model: bool, router: &Router) -> String {
    let mut s = format!(
        "<b>{}</b> keeps this chat's chores, approvals and routines.\n\n",
        e(bot)
    );
    for (c, d) in menu(router) {
        s.push_str(&format!("/{c} — {}\n", e(d)));
    }
    for note in router.command_sets().iter().filter_map(|c| c.help_note()) {
        s.push_str(&format!("\n{note}\n"));
    }
    if has_model {
        s.push_str("\nMention me or reply to me to ask anything.");
    } else {
        s.push_str("\nNo model is configured: commands work, free text does not.");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        let c = parse("/done dishes now", "hearth_bot").unwrap();
        assert_eq!((c.name.as_str(), c.args.as_str()), ("done", "dishes now"));
        let c = parse("/Help@Hearth_Bot", "hearth_bot").unwrap();
        assert_eq!(c.name, "help");
        assert!(parse("/help@other_bot", "hearth_bot").is_none());
        assert!(parse("hello /help", "hearth_bot").is_none());
        assert!(parse("/", "hearth_bot").is_none());
        assert!(parse("/💥", "hearth_bot").is_none());
    }
}
