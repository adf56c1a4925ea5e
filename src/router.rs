//! The router's plug-in points, below the core: a domain implements [`CommandSet`] (its slash
//! commands and their menu entries) and/or [`TextHandler`] (a deterministic answer to a member's
//! plain text, e.g. "approve both" or "done dishes"), and the wiring (`app`) registers it in a
//! [`Router`]. The core dispatches through the router and names no domain, so a new domain
//! plugs in without touching the core (issue 8, structure). Domains import this module, never
//! `core`. Uses: services, store (row types), types.

use std::sync::Arc;

use async_trait::async_trait;
use chrono_tz::Tz;

use crate::{
    services::Services,
    store::{ChatRow, MemberRow, StoreResult},
    types::{ChatKind, Outbound, UserRef},
};

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Lower-case name without the slash, e.g. "done".
    pub name: String,
    /// The rest of the text, trimmed.
    pub args: String,
}

/// Parse `/name[@bot] args`. Returns `None` for non-commands and for commands addressed to
/// another bot (`/help@otherbot`). The name is ASCII (`[A-Za-z0-9_]+`, lower-cased here).
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

/// One entry of the command menu: (name without the slash, description), as Telegram's
/// `setMyCommands` takes it (name `[a-z0-9_]{1,32}`, description 1–256 characters).
pub type MenuEntry = (&'static str, &'static str);

/// The SHA-256 (hex) of a command list, (name, description) pairs in order: what the bot last
/// published is kept as this hash in `kv` so an unchanged menu is not sent again (the global
/// menu and each chat's routine menu; OpenClaw hit 429s re-sending it at every start).
pub fn menu_hash<C: AsRef<str>, D: AsRef<str>>(entries: &[(C, D)]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (c, d) in entries {
        h.update(c.as_ref().as_bytes());
        h.update([0]);
        h.update(d.as_ref().as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// A domain's slash commands.
#[async_trait]
pub trait CommandSet: Send + Sync + 'static {
    /// The commands this set answers, in menu order (published by `setMyCommands`, listed by
    /// /help). A command the set handles but does not list here is a hidden alias.
    fn menu(&self) -> &'static [MenuEntry];

    /// Handle `cmd` and send the replies through the outbox; `None` when the name is not one
    /// of this set's (the router tries the next set).
    ///
    /// Errors: storage or delivery failures (the core apologises to the user).
    async fn handle(
        &self,
        svc: &Services,
        ctx: &CommandCtx<'_>,
        cmd: &Command,
    ) -> Option<anyhow::Result<()>>;

    /// A line for /help after the command list (HTML), if the domain has a rule to explain.
    fn help_note(&self) -> Option<String> {
        None
    }

    /// The chat `chat_id` moved from zone `old` to `new` (`/timezone`): keep local times local.
    ///
    /// Errors: storage failures.
    async fn rezone(
        &self,
        _svc: &Services,
        _chat_id: i64,
        _old: Tz,
        _new: Tz,
    ) -> anyhow::Result<()> {
        Ok(())
    }
}

/// A member's plain (non-command) text message, as text handlers see it.
#[derive(Debug, Clone, Copy)]
pub struct TextCtx<'a> {
    pub chat: &'a ChatRow,
    pub chat_kind: ChatKind,
    pub from: &'a UserRef,
    /// The sender's member row in a group (`None` in a DM).
    pub member: Option<&'a MemberRow>,
    /// The text, trimmed, never empty.
    pub text: &'a str,
    /// The message's id.
    pub message_id: i64,
    /// A private chat, or a group message mentioning or replying to the bot.
    pub addressed: bool,
    /// What replies should quote (the message in groups, nothing in DMs).
    pub reply_to: Option<i64>,
    /// The message this one replies to, if any.
    pub replied_to: Option<i64>,
}

impl TextCtx<'_> {
    /// True in a private chat.
    pub fn private(&self) -> bool {
        self.chat_kind == ChatKind::Private
    }

    /// An HTML reply to the message.
    pub fn reply(&self, html: impl Into<String>) -> Outbound {
        Outbound {
            chat_id: self.chat.id,
            html: html.into(),
            buttons: vec![],
            reply_to: self.reply_to,
        }
    }
}

/// A deterministic step for a member's plain text, tried in registration order before the
/// agent. The rule (issue 8, item 13): a handler that recognises an intent either answers it
/// (and returns true) or declines (false, nothing sent) so the message goes on — to the next
/// handler and finally the agent. Recognising an intent and sending nothing is a bug.
#[async_trait]
pub trait TextHandler: Send + Sync + 'static {
    /// A short name for logs, e.g. "approval_reply".
    fn name(&self) -> &'static str;

    /// Answer `msg` and return true, or return false without side effects.
    ///
    /// Errors: storage failures (the message stays pending and is retried).
    async fn handle(&self, svc: &Services, msg: &TextCtx<'_>) -> StoreResult<bool>;
}

/// The registered command sets and text handlers, in order. Built by the wiring (`app`).
#[derive(Clone, Default)]
pub struct Router {
    commands: Vec<Arc<dyn CommandSet>>,
    text: Vec<Arc<dyn TextHandler>>,
}

impl Router {
    /// An empty router (the core still answers its own foundation commands).
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a command set after the ones already registered.
    pub fn commands(mut self, set: impl CommandSet) -> Self {
        self.commands.push(Arc::new(set));
        self
    }

    /// Register a text handler after the ones already registered (tried in this order).
    pub fn text(mut self, handler: impl TextHandler) -> Self {
        self.text.push(Arc::new(handler));
        self
    }

    /// Register a command set before the ones already registered (tried first).
    pub fn commands_first(mut self, set: impl CommandSet) -> Self {
        self.commands.insert(0, Arc::new(set));
        self
    }

    /// Register a text handler before the ones already registered (tried first).
    pub fn text_first(mut self, handler: impl TextHandler) -> Self {
        self.text.insert(0, Arc::new(handler));
        self
    }

    /// The command sets, in order.
    pub fn command_sets(&self) -> &[Arc<dyn CommandSet>] {
        &self.commands
    }

    /// The text handlers, in order.
    pub fn text_handlers(&self) -> &[Arc<dyn TextHandler>] {
        &self.text
    }

    /// Each set's menu entries, in registration order.
    pub fn menu(&self) -> Vec<MenuEntry> {
        self.commands
            .iter()
            .flat_map(|s| s.menu().iter().copied())
            .collect()
    }
}
