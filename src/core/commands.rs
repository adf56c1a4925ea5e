//! Slash commands: parsing (`/name@bot args`) and the foundation commands. Domain commands call
//! their services from here; [`menu`] is what `setMyCommands` publishes and /help lists.

use crate::{
    format::escape_html as e,
    services::Services,
    store::{ChatRow, MemberRow},
    types::{ChatKind, Outbound, UserRef},
};

/// (command, description) as shown in Telegram's command menu and in /help, foundation first,
/// then each domain's list.
/// The foundation's commands; [`menu`] adds each domain's list after them.
pub const FOUNDATION: &[(&str, &str)] = &[
    ("help", "What I can do"),
    ("members", "Who is in this group"),
    (
        "timezone",
        "Show or set the time zone, e.g. /timezone Europe/London",
    ),
];

/// (command, description) as shown in Telegram's command menu (`setMyCommands`) and in /help:
/// the foundation's, then each domain's own list (one list per domain, no copies).
pub fn menu() -> Vec<(&'static str, &'static str)> {
    FOUNDATION
        .iter()
        .chain(crate::chores::commands::COMMANDS)
        .chain(crate::workflow::commands::COMMANDS)
        .chain(crate::routines::commands::COMMANDS)
        .copied()
        .collect()
}

/// Where a command was given and by whom.
#[derive(Debug, Clone, Copy)]
pub struct CommandCtx<'a> {
    pub chat: &'a ChatRow,
    pub chat_kind: ChatKind,
    pub from: &'a UserRef,
    /// The sender's member row in a group (`None` in a DM).
    pub member: Option<&'a MemberRow>,
    /// The command message's id.
    pub message_id: i64,
    /// What replies should quote (the command message in groups, nothing in DMs).
    pub reply_to: Option<i64>,
    pub has_model: bool,
}

impl CommandCtx<'_> {
    /// An HTML reply to the command.
    pub fn reply(&self, html: impl Into<String>) -> Outbound {
        Outbound {
            chat_id: self.chat.id,
            html: html.into(),
            buttons: vec![],
            reply_to: self.reply_to,
        }
    }
}

/// Run a command: each domain gets a chance in turn; the first that knows the name handles it
/// and sends its own replies through the outbox.
///
/// Errors: storage or delivery failures (the core apologises to the user).
pub async fn dispatch(svc: &Services, ctx: &CommandCtx<'_>, cmd: &Command) -> anyhow::Result<()> {
    if let Some(r) = foundation(svc, ctx, cmd).await {
        return r;
    }
    // workflows and chores (issue 3/4)
    if let Some(r) = crate::workflow::commands::handle(svc, ctx, cmd).await {
        return r;
    }
    if let Some(r) = crate::chores::commands::handle(svc, ctx, cmd).await {
        return r;
    }

    // routines (issue 5)
    if let Some(r) = crate::routines::commands::handle(svc, ctx, cmd).await {
        return r;
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
    ctx: &CommandCtx<'_>,
    cmd: &Command,
) -> Option<anyhow::Result<()>> {
    let html = match cmd.name.as_str() {
        "start" | "help" => Ok(help_text(&svc.bot.name, ctx.has_model)),
        "members" => members(svc, ctx).await,
        "timezone" => timezone(svc, ctx, &cmd.args).await,
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

async fn timezone(svc: &Services, ctx: &CommandCtx<'_>, args: &str) -> anyhow::Result<String> {
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
            // chores keep their local due times in the new zone (issue 4)
            let old =
                crate::schedule::parse_zone(&chat.timezone).unwrap_or(svc.config.group.timezone);
            crate::chores::rezone(svc, chat.id, old, tz).await?;
            // routines that followed the chat's zone move with it (issue 5)
            crate::routines::rezone(svc, chat.id, old, tz).await?;
            format!("Time zone set to <b>{}</b>.", e(tz.name()))
        }
        Err(_) => format!(
            "'{}' is not an IANA time zone. Try a name like Europe/London or America/New_York.",
            e(&crate::context::clip(args, 60))
        ),
    })
}

/// The /help text.
pub fn help_text(bot: &str, has_model: bool) -> String {
    let mut s = format!(
        "<b>{}</b> keeps this chat's chores, approvals and routines.\n\n",
        e(bot)
    );
    for (c, d) in menu() {
        s.push_str(&format!("/{c} — {}\n", e(d)));
    }
    s.push_str(&format!(
        "\nDoing someone else's chore is a swap: you get the points, they keep their turn (at most {} a week).\n",
        crate::chores::MAX_SWAPS_PER_WEEK
    ));
    if has_model {
        s.push_str("\nMention me or reply to me to ask anything.");
    } else {
        s.push_str("\nNo model is configured: commands work, free text does not.");
    }
    s
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Lower-case name without the slash, e.g. "done".
    pub name: String,
    /// The rest of the text, trimmed.
    pub args: String,
}

/// Parse `/name[@bot] args`. Returns `None` for non-commands and for commands addressed to
/// another bot (`/help@otherbot`).
pub fn parse(text: &str, bot_username: &str) -> Option<Command> {
    let t = text.trim_start();
    let rest = t.strip_prefix('/')?;
    let (head, args) = match rest.find(char::is_whitespace) {
        Some(i) => (&rest[..i], rest[i..].trim()),
        None => (rest, ""),
    };
    let (name, target) = match head.split_once('@') {
        Some((n, b)) => (n, Some(b)),
        None => (head, None),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    if let Some(b) = target {
        if !b.eq_ignore_ascii_case(bot_username) {
            return None;
        }
    }
    Some(Command {
        name: name.to_ascii_lowercase(),
        args: args.to_string(),
    })
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

    #[test]
    fn menu_is_valid_for_telegram() {
        let m = menu();
        let mut names: Vec<&str> = m.iter().map(|(c, _)| *c).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), m.len(), "a command name is listed twice");
        assert!(m.len() <= 100, "Telegram allows at most 100 commands");
        for (c, d) in &m {
            assert!(
                (1..=32).contains(&c.len())
                    && c.chars()
                        .all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || x == '_'),
                "/{c} is not a valid Telegram command name"
            );
            assert!(
                (1..=256).contains(&d.chars().count()),
                "/{c}: description length"
            );
        }
        for must in [
            "addchore",
            "chores",
            "done",
            "deletechore",
            "approvals",
            "approve",
            "reject",
            "every",
            "cron",
            "at",
            "routines",
            "routine_install",
        ] {
            assert!(names.contains(&must), "/{must} missing from the menu");
        }
    }
}
