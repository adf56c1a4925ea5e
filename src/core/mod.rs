//! The core: what happens to every inbound event.
//!
//! Owns the message flow of `DESIGN.md`: persist the inbound message (unique on chat + message
//! id, before any work) → one worker per chat (events of a chat in order, chats in parallel;
//! the chat lock is shared with routines) → resolve chat and member → append to the chat's
//! context log → route (command | button | registered text handlers | agent turn | context
//! only) → reply through the outbox → mark the inbound message done. Commands and text steps go
//! through the [`Router`] the wiring registered (the core names no domain there). Start-up
//! recovery re-runs unfinished messages from the last 15 minutes.
//! Uses: router, services, agent, context, store.

pub mod commands;
pub mod greet;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::sync::{mpsc, Notify};
use tokio_util::task::TaskTracker;

use crate::{
    agent::{Agent, Scope, TurnRequest},
    format,
    router::{Router, TextCtx},
    services::Services,
    store::{ChatRow, MemberRow, NewMessage, StoreError},
    types::{CallbackQuery, ChatKind, Content, InboundEvent, InboundMessage, Outbound},
};

/// Unfinished inbound messages younger than this are processed again at start-up.
pub const RECOVERY_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Attempts after which a message is given up (a poison message must not loop forever).
const MAX_ATTEMPTS: i32 = 3;

/// What [`Hearth::accept`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Persisted (messages) and queued for its chat's worker.
    Queued,
    /// Same chat and message id seen before: dropped.
    Duplicate,
    /// Outside the allowlists, from a bot, or shutting down.
    Ignored,
}

struct Job {
    ev: InboundEvent,
    inbound_id: Option<i64>,
}

/// The running core.
pub struct Hearth {
    pub svc: Services,
    pub agent: Agent,
    /// The registered command sets and text handlers.
    router: Router,
    queues: std::sync::Mutex<HashMap<i64, mpsc::UnboundedSender<Job>>>,
    tracker: TaskTracker,
    closed: AtomicBool,
    /// Events queued and not yet processed.
    pending: AtomicUsize,
    idle: Notify,
}

impl Hearth {
    /// Build the core over the domains registered in `router`.
    pub fn new(svc: Services, agent: Agent, router: Router) -> Arc<Self> {
        Arc::new(Self {
            svc,
            agent,
            router,
            queues: Default::default(),
            tracker: TaskTracker::new(),
            closed: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
            idle: Notify::new(),
        })
    }

    /// The command menu: the foundation's commands, then each registered set's (what
    /// `setMyCommands` publishes and /help lists).
    pub fn menu(&self) -> Vec<crate::router::MenuEntry> {
        commands::menu(&self.router)
    }

    /// Take an event from an adapter: filter, persist messages (dedupe), queue for the chat.
    /// Returns once the event is durable; processing happens on the chat's worker.
    ///
    /// Errors: only storage failures (the adapter must not confirm the update then).
    pub async fn accept(self: &Arc<Self>, ev: InboundEvent) -> Result<Accepted, StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            return Ok(Accepted::Ignored);
        }
        if !self.allowed(&ev) {
            return Ok(Accepted::Ignored);
        }
        let inbound_id = match &ev {
            InboundEvent::Message(m) => {
                let payload = serde_json::to_string(&ev).unwrap_or_default();
                match self
                    .svc
                    .store
                    .insert_inbound(
                        m.chat.id,
                        m.message_id,
                        m.update_id,
                        &payload,
                        self.svc.clock.now(),
                    )
                    .await?
                {
                    Some(id) => Some(id),
                    None => {
                        tracing::debug!(
                            chat_id = m.chat.id,
                            message_id = m.message_id,
                            "duplicate delivery dropped"
                        );
                        return Ok(Accepted::Duplicate);
                    }
                }
            }
            _ => None,
        };
        self.enqueue(Job { ev, inbound_id });
        Ok(Accepted::Queued)
    }

    fn allowed(&self, ev: &InboundEvent) -> bool {
        let access = &self.svc.config.access;
        let chat = ev.chat();
        if !access.allowed_chats.is_empty() && !access.allowed_chats.contains(&chat.id) {
            tracing::info!(
                chat_id = chat.id,
                "ignoring a chat outside access.allowed_chats"
            );
            return false;
        }
        let user = match ev {
            InboundEvent::Message(m) => Some(&m.from),
            InboundEvent::Callback(c) => Some(&c.from),
            _ => None,
        };
        if let Some(u) = user {
            if u.is_bot {
                return false;
            }
            if !access.allowed_users.is_empty() && !access.allowed_users.contains(&u.id) {
                tracing::info!(
                    chat_id = chat.id,
                    user_id = u.id,
                    "ignoring a user outside access.allowed_users"
                );
                return false;
            }
        }
        true
    }

    fn enqueue(self: &Arc<Self>, job: Job) {
        let chat_id = job.ev.chat().id;
        self.pending.fetch_add(1, Ordering::SeqCst);
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let tx = queues.entry(chat_id).or_insert_with(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
            let me = self.clone();
            self.tracker.spawn(async move {
                while let Some(job) = rx.recv().await {
                    let _turn = me.svc.locks.lock(chat_id).await;
                    me.process(job).await;
                }
            });
            tx
        });
        if let Err(mpsc::error::SendError(job)) = tx.send(job) {
            // the worker is gone (shutting down); the message stays pending for recovery
            self.pending.fetch_sub(1, Ordering::SeqCst);
            tracing::debug!(chat_id, inbound = ?job.inbound_id, "worker closed; left for recovery");
        }
    }

    /// Re-queue unfinished inbound messages from the last [`RECOVERY_WINDOW`]; older ones are
    /// marked abandoned. Returns how many were queued.
    pub async fn recover(self: &Arc<Self>) -> Result<usize, StoreError> {
        let now = self.svc.clock.now();
        let since = now - chrono::Duration::from_std(RECOVERY_WINDOW).unwrap_or_default();
        self.svc
            .store
            .sweep_inbound(since, now - chrono::Duration::days(7))
            .await?;
        let rows = self.svc.store.pending_inbound(since).await?;
        let mut n = 0;
        for row in rows {
            if row.attempts >= MAX_ATTEMPTS {
                self.svc.store.finish_inbound(row.id, "failed", now).await?;
                continue;
            }
            match serde_json::from_str::<InboundEvent>(&row.payload) {
                Ok(ev) => {
                    self.svc.store.bump_inbound_attempt(row.id).await?;
                    self.enqueue(Job {
                        ev,
                        inbound_id: Some(row.id),
                    });
                    n += 1;
                }
                Err(e) => {
                    tracing::warn!(inbound = row.id, error = %e, "unreadable inbound payload");
                    self.svc.store.finish_inbound(row.id, "failed", now).await?;
                }
            }
        }
        if n > 0 {
            tracing::info!(count = n, "recovering unfinished messages");
        }
        Ok(n)
    }

    /// Stop taking events, let queued work finish for at most `grace`, then return.
    /// Unfinished messages stay pending and are recovered at the next start.
    pub async fn shutdown(&self, grace: Duration) {
        self.closed.store(true, Ordering::SeqCst);
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace period over; unfinished messages will be recovered at the next start");
        }
    }

    /// Wait until every queued event has been processed (tests, benchmarks).
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.pending.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    async fn process(&self, job: Job) {
        use futures::FutureExt;
        let chat_id = job.ev.chat().id;
        let reply_chat = job.ev.chat().clone();
        let handled = async {
            match job.ev {
                InboundEvent::Message(m) => self.on_message(m).await,
                InboundEvent::Callback(c) => self.on_callback(c).await,
                InboundEvent::MemberJoined { chat, user } => {
                    self.on_member_joined(&chat, &user).await
                }
                InboundEvent::MemberLeft { chat, user } => self.on_member_left(&chat, &user).await,
            }
        };
        // A bug in one handler must not take the chat's worker down with it: the panic is
        // logged, the user hears a short apology, the message is marked failed (not retried),
        // and the worker goes on with the next event.
        let result = match std::panic::AssertUnwindSafe(handled).catch_unwind().await {
            Ok(r) => r,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(chat_id, panic = %what, "handler panicked");
                if let Some(id) = job.inbound_id {
                    let _ = self
                        .svc
                        .store
                        .finish_inbound(id, "failed", self.svc.clock.now())
                        .await;
                    self.reply(
                        reply_chat.id,
                        None,
                        "Sorry, something went wrong on my side with that message.",
                    )
                    .await;
                }
                self.settle_one();
                return;
            }
        };
        match result {
            Ok(()) => {
                if let Some(id) = job.inbound_id {
                    if let Err(e) = self
                        .svc
                        .store
                        .finish_inbound(id, "done", self.svc.clock.now())
                        .await
                    {
                        tracing::warn!(chat_id, error = %e, "could not mark a message done");
                    }
                }
            }
            Err(e) => {
                // left pending: recovered at the next start (bounded by MAX_ATTEMPTS)
                tracing::error!(chat_id, error = %e, "processing failed");
            }
        }
        self.settle_one();
    }

    /// One queued event is finished: wake [`Hearth::idle`] waiters when none is left.
    fn settle_one(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Resolve the chat row and (in a group) the member; register them on first sight.
    ///
    /// `joined`: the event is a join (`new_chat_members` / `chat_member`), the only event that
    /// re-activates a member who left. A message from someone whose `left_chat_member` was
    /// processed leaves them inactive and comes back as `None` (they decide nothing, and hold no
    /// role, until they join again). A callback query never comes here at all: it registers
    /// nobody (see [`Hearth::on_callback`]).
    async fn resolve(
        &self,
        chat: &crate::types::ChatRef,
        user: &crate::types::UserRef,
        joined: bool,
    ) -> Result<(ChatRow, Option<MemberRow>), StoreError> {
        let now = self.svc.clock.now();
        let zone = self.svc.config.group.timezone.name();
        // independent: run them concurrently
        let (row, user_done) = tokio::join!(
            self.svc
                .store
                .upsert_chat(chat.id, chat.kind.as_str(), &chat.title, zone, now),
            self.svc
                .store
                .upsert_user(user.id, user.label(), user.username.as_deref(), now)
        );
        let row = row?;
        user_done?;
        let member = if chat.kind == ChatKind::Group {
            let admin = self.svc.config.access.admin_ids.contains(&user.id);
            if !joined {
                match self.svc.store.member(chat.id, user.id).await? {
                    Some(m) if !m.active => return Ok((row, None)),
                    Some(m) if !admin || m.is_admin() => return Ok((row, Some(m))),
                    _ => {}
                }
            }
            let (m, fresh) = self
                .svc
                .store
                .ensure_member(chat.id, user.id, admin, now)
                .await?;
            if fresh {
                tracing::info!(chat_id = chat.id, user_id = user.id, role = %m.role, "member registered");
                self.svc
                    .events
                    .publish(crate::events::HearthEvent::MemberJoined {
                        chat_id: chat.id,
                        user_id: user.id,
                        name: user.label().to_string(),
                    });
            }
            Some(m)
        } else {
            None
        };
        Ok((row, member))
    }

    async fn on_message(&self, m: InboundMessage) -> Result<(), StoreError> {
        let (chat, member) = self.resolve(&m.chat, &m.from, false).await?;
        let logged_text = match &m.content {
            Content::Text { text } => text.clone(),
            Content::Unsupported { kind } => format!("[{kind}]"),
        };
        self.svc
            .store
            .append_message(NewMessage {
                chat_id: chat.id,
                sender_user_id: Some(m.from.id),
                sender_name: m.from.label(),
                from_bot: false,
                text: &logged_text,
                tg_message_id: Some(m.message_id),
                reply_to: m.reply_to.as_ref().map(|r| r.message_id),
                created_at: m.date,
            })
            .await?;

        let private = m.chat.kind == ChatKind::Private;
        let addressed = private || m.mentions_bot || m.reply_to.as_ref().is_some_and(|r| r.to_bot);
        let reply_to = (!private).then_some(m.message_id);

        if let Content::Unsupported { kind } = &m.content {
            if addressed {
                self.reply(
                    chat.id,
                    reply_to,
                    &format!("I can only read text for now, not a {kind}."),
                )
                .await;
            }
            return Ok(());
        }
        let text = m.text().trim();
        if text.is_empty() {
            return Ok(());
        }

        // 1. commands
        if text.starts_with('/') {
            if let Some(cmd) = commands::parse(text, &self.svc.bot.username) {
                let ctx = commands::CommandCtx {
                    chat: &chat,
                    chat_kind: m.chat.kind,
                    from: &m.from,
                    member: member.as_ref(),
                    message_id: m.message_id,
                    reply_to,
                    has_model: self.agent.has_model(),
                };
                if let Err(e) = commands::dispatch(&self.svc, &self.router, &ctx, &cmd).await {
                    tracing::error!(chat_id = chat.id, command = %cmd.name, error = %format!("{e:#}"), "command failed");
                    self.reply(chat.id, reply_to, "Sorry, that didn't work because of a problem on my side. Please try again.").await;
                }
            }
            return Ok(()); // a command for another bot is context only
        }

        // 3. registered text steps (approval replies, "done dishes", …), in order: the first
        // that recognises the message answers it, with no model call
        let msg = TextCtx {
            chat: &chat,
            chat_kind: m.chat.kind,
            from: &m.from,
            member: member.as_ref(),
            text,
            message_id: m.message_id,
            addressed,
            reply_to,
            replied_to: m.reply_to.as_ref().map(|r| r.message_id),
        };
        for handler in self.router.text_handlers() {
            if handler.handle(&self.svc, &msg).await? {
                tracing::debug!(chat_id = chat.id, handler = handler.name(), "text handled");
                return Ok(());
            }
        }

        // 4. agent turn when addressed, or every message in `always` mode
        let always = self.svc.config.group.reply_mode == crate::config::ReplyMode::Always;
        if !(addressed || always) {
            return Ok(()); // 5. context only
        }
        self.agent_turn(&chat, &m, member, addressed, reply_to)
            .await;
        Ok(())
    }

    async fn agent_turn(
        &self,
        chat: &ChatRow,
        m: &InboundMessage,
        member: Option<MemberRow>,
        addressed: bool,
        reply_to: Option<i64>,
    ) {
        if !self.agent.has_model() {
            if addressed {
                let msg = crate::agent::TurnFailure::NoModel.user_message();
                self.reply(chat.id, reply_to, msg).await;
            }
            return;
        }
        let typing = self.start_typing(chat.id);
        let scope = Scope {
            chat: chat.clone(),
            chat_kind: m.chat.kind,
            actor_id: Some(m.from.id),
            actor_name: m.from.label().to_string(),
            member,
            window_start_id: None,
            addressed,
            member_turn: true,
        };
        let current = format!(
            "{}: {}",
            m.from.label(),
            crate::context::clip(m.text(), 4000)
        );
        let outcome = self
            .agent
            .run_turn(
                &self.svc,
                TurnRequest {
                    scope,
                    current,
                    current_tg_id: Some(m.message_id),
                    source: "message",
                    silent_ok: !addressed,
                },
            )
            .await;
        typing.abort();
        match &outcome.result {
            Ok(text) => {
                self.send(Outbound {
                    chat_id: chat.id,
                    html: format::markdown_to_html(text),
                    buttons: vec![],
                    reply_to,
                })
                .await;
            }
            Err(_) => {
                // a failure notice is not conversation: kept out of the context log
                if let (true, Some(msg)) = (addressed, outcome.failure_message()) {
                    let notice = Outbound {
                        chat_id: chat.id,
                        html: format::escape_html(&msg),
                        buttons: vec![],
                        reply_to,
                    };
                    if let Err(e) = self.svc.outbox.send_notice(notice).await {
                        tracing::error!(chat_id = chat.id, error = %e, "notice not delivered");
                    }
                }
            }
        }
    }

    /// Repeat "typing…" every 4 s until aborted.
    fn start_typing(&self, chat_id: i64) -> tokio::task::JoinHandle<()> {
        let messenger = self.svc.outbox.messenger().clone();
        tokio::spawn(async move {
            loop {
                let _ = messenger.typing(chat_id).await;
                tokio::time::sleep(Duration::from_secs(4)).await;
            }
        })
    }

    /// A button tap. Nothing is registered or re-activated here: the tapper is authorized by
    /// the service behind the button against their current membership, before any side effect
    /// (hearth's own fault-injection run: a tap registered the tapper first, so non-members and
    /// leavers approved requests).
    async fn on_callback(&self, c: CallbackQuery) -> Result<(), StoreError> {
        // workflow buttons (issue 3)
        if crate::workflow::buttons::on_callback(&self.svc, &c).await? {
            return Ok(());
        }

        let _ = self
            .svc
            .outbox
            .messenger()
            .answer_callback(&c.id, Some("This button is no longer active."), false)
            .await;
        Ok(())
    }

    async fn on_member_joined(
        &self,
        chat: &crate::types::ChatRef,
        user: &crate::types::UserRef,
    ) -> Result<(), StoreError> {
        if user.is_bot {
            return Ok(());
        }
        self.resolve(chat, user, true).await?;
        greet::on_joined(&self.svc, chat, user).await; // once per member, see greet.rs
        Ok(())
    }

    async fn on_member_left(
        &self,
        chat: &crate::types::ChatRef,
        user: &crate::types::UserRef,
    ) -> Result<(), StoreError> {
        if self.svc.store.deactivate_member(chat.id, user.id).await? {
            tracing::info!(chat_id = chat.id, user_id = user.id, "member left");
            // chores reassigned, pending requests cancelled (issue 4)
            crate::chores::on_member_left(&self.svc, chat.id, user.id).await?;
        }
        Ok(())
    }

    /// Send plain text (escaped) as a reply.
    pub(crate) async fn reply(&self, chat_id: i64, reply_to: Option<i64>, text: &str) {
        self.send(Outbound {
            chat_id,
            html: format::escape_html(text),
            buttons: vec![],
            reply_to,
        })
        .await;
    }

    async fn send(&self, out: Outbound) {
        let chat_id = out.chat_id;
        if let Err(e) = self.svc.outbox.send(out).await {
            tracing::error!(chat_id, error = %e, "reply not delivered");
        }
    }
}
