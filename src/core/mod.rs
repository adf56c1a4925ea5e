//! The core: what happens to every inbound event.
//!
//! Owns the message flow of `DESIGN.md`: persist the inbound message (unique on chat + message
//! id, before any work) → one worker per chat (events of a chat in order, chats in parallel;
//! the chat lock is shared with routines) → resolve chat and member → append to the chat's
//! context log → route (command | button | registered text handlers | agent turn | context
//! only) → reply through the outbox → mark the inbound message done. Commands and text steps go
//! through the [`Router`] the wiring registered (the core names no domain there).
//!
//! Durability (issue 8, DESIGN.md "Processes"): each process has a random id ([`Hearth::owner`],
//! logged at start-up). An accepted message is held by its process with a lease (owner +
//! `lease_until`), renewed for all held messages in one statement per heartbeat
//! ([`Hearth::heartbeat`]); recovery, at start-up and every `cluster.poll`, takes
//! only messages whose lease lapsed. An attempt is counted when a turn starts on a message, never
//! for queued ones; after `runtime.max_attempts` started turns, or when older than
//! [`RECOVERY_WINDOW`], a message is given up: logged at warn with its cause and the chat told
//! once. An agent reply is persisted before sending and confirmed after (`Outbox::send_for`);
//! recovery resends a stored unconfirmed reply without a model call. Inside a chat's worker,
//! members take turns (round-robin, each member's messages in order), and a member past the
//! flood budget (`group.flood_budget` per `group.flood_window`) gets one "slow down" while the
//! excess is kept as context only.
//!
//! Uses: router, services, agent, context, store.

pub mod commands;
pub mod greet;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    agent::{Agent, Scope, TurnRequest},
    format,
    router::{Router, TextCtx},
    services::Services,
    store::{ChatRow, InboundRow, InboundStatus, MemberRow, NewMessage, StoreError},
    types::{CallbackQuery, ChatKind, Content, InboundEvent, InboundMessage, Outbound},
};

/// Unfinished inbound messages younger than this are processed again by recovery; older ones
/// are given up (too old to answer) and the chat is told.
pub const RECOVERY_WINDOW: Duration = Duration::from_secs(15 * 60);

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
    /// Past the member's flood budget: kept as context only; `true` = send the one "slow down".
    flood: Option<bool>,
    /// Turns started on it before (by any process): 0 for a fresh message, so the hot path never
    /// looks for a stored reply.
    prior_attempts: i32,
}

impl Job {
    /// The member whose turn this is inside the chat's fair queue.
    fn member(&self) -> i64 {
        match &self.ev {
            InboundEvent::Message(m) => m.from.id,
            InboundEvent::Callback(c) => c.from.id,
            InboundEvent::MemberJoined { user, .. } | InboundEvent::MemberLeft { user, .. } => {
                user.id
            }
        }
    }
}

/// A chat's queue: members take turns (round-robin), each member's events stay in order
/// (issue 8, item 20: one flooding member does not starve the others).
#[derive(Default)]
struct FairQueue {
    /// Members with queued events, the next one first.
    order: VecDeque<i64>,
    jobs: HashMap<i64, VecDeque<Job>>,
}

impl FairQueue {
    fn push(&mut self, job: Job) {
        let member = job.member();
        let q = self.jobs.entry(member).or_default();
        if q.is_empty() {
            self.order.push_back(member);
        }
        q.push_back(job);
    }

    fn pop(&mut self) -> Option<Job> {
        let member = self.order.pop_front()?;
        let q = self.jobs.get_mut(&member)?;
        let job = q.pop_front();
        if q.is_empty() {
            self.jobs.remove(&member);
        } else {
            self.order.push_back(member);
        }
        job
    }
}

/// One chat's worker handle.
#[derive(Default)]
struct ChatQueue {
    q: std::sync::Mutex<FairQueue>,
    wake: Notify,
    closed: AtomicBool,
}

/// A member's flood counter in one chat (fixed window from the first counted message).
struct FloodState {
    window_start: DateTime<Utc>,
    count: u32,
    warned: bool,
}

/// A message recovery gave up, with its decoded event (for the time and chat kind).
type GivenUp = (InboundRow, Option<InboundEvent>);

tokio::task_local! {
    /// The inbound message the current chat-worker task is processing (for `Outbox::send_for`).
    static CURRENT_INBOUND: i64;
}

/// A new process id: `<pid>-<8 random hex digits>` (logged at start-up; the owner of every
/// lease the process takes).
pub fn new_process_id() -> String {
    format!("{}-{:08x}", std::process::id(), rand::random::<u32>())
}

/// The running core.
pub struct Hearth {
    pub svc: Services,
    pub agent: Agent,
    /// The registered command sets and text handlers.
    router: Router,
    queues: std::sync::Mutex<HashMap<i64, Arc<ChatQueue>>>,
    tracker: TaskTracker,
    /// This process's id: owner of the leases it takes. Random, logged at start-up.
    owner: String,
    /// When this process started (UTC, the clock's time).
    started: DateTime<Utc>,
    /// Inbound ids queued or running in this process (recovery never queues one twice).
    inflight: std::sync::Mutex<HashSet<i64>>,
    /// Flood counters per (chat, member).
    flood: std::sync::Mutex<HashMap<(i64, i64), FloodState>>,
    closed: AtomicBool,
    /// Events queued and not yet processed.
    pending: AtomicUsize,
    idle: Notify,
    /// The heartbeat and claim-poll tasks ([`Hearth::spawn_lease_tasks`]): stopped by
    /// [`Hearth::shutdown`] once in-flight turns finished, and waited for before the leases and
    /// the process row are given up (a beat landing after that re-inserted the row).
    lease_tasks: LeaseTasks,
}

/// See [`Hearth::lease_tasks`].
#[derive(Default)]
struct LeaseTasks {
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Hearth {
    /// Build the core over the domains registered in `router`.
    pub fn new(svc: Services, agent: Agent, router: Router) -> Arc<Self> {
        let owner = svc
            .locks
            .owner()
            .map(str::to_string)
            .unwrap_or_else(new_process_id);
        let started = svc.clock.now();
        Arc::new(Self {
            started,
            svc,
            agent,
            router,
            queues: Default::default(),
            tracker: TaskTracker::new(),
            owner,
            inflight: Default::default(),
            flood: Default::default(),
            closed: AtomicBool::new(false),
            lease_tasks: LeaseTasks::default(),
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
        let InboundEvent::Message(m) = &ev else {
            // button taps and joins carry no row: the chat's worker runs them (it waits for the
            // chat's lease when another process holds it)
            self.enqueue(Job {
                ev,
                inbound_id: None,
                flood: None,
                prior_attempts: 0,
            });
            return Ok(Accepted::Queued);
        };
        let chat_id = m.chat.id;
        let payload = serde_json::to_string(&ev).unwrap_or_default();
        let now = self.svc.clock.now();
        // persisted unowned, first: whoever holds the chat claims it with the chat's other
        // unfinished messages, oldest first (issue 12: replies in message order across replicas)
        let Some(id) = self
            .svc
            .store
            .insert_inbound(chat_id, m.message_id, m.update_id, &payload, now)
            .await?
        else {
            tracing::debug!(
                chat_id,
                message_id = m.message_id,
                "duplicate delivery dropped"
            );
            return Ok(Accepted::Duplicate);
        };
        // claimed and queued under the chat's lease-operation lock: never owned while not held
        let op = match self.svc.locks.hold_guarded(chat_id).await {
            Ok(Some(op)) => op,
            Ok(None) => {
                tracing::debug!(chat_id, "chat held by another process; left to it");
                return Ok(Accepted::Queued);
            }
            Err(e) => {
                // the periodic claim retries it
                tracing::warn!(chat_id, error = %e, "chat lease not checked; left for the next claim");
                return Ok(Accepted::Queued);
            }
        };
        let flood = self.flood_check(&ev);
        let rows = self
            .svc
            .store
            .claim_inbound(&self.owner, &[chat_id], now, self.lease_end(now))
            .await?;
        self.queue_claimed(rows, Some((id, ev, flood))).await?;
        drop(op);
        Ok(Accepted::Queued)
    }

    /// This process's id (the owner recorded on the leases it holds).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn lease_end(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.svc.config.runtime.lease)
            .unwrap_or(chrono::Duration::seconds(30))
    }

    /// Count a message meant for the model against its sender's flood budget. Returns `None`
    /// within budget (or not for the model), `Some(notify)` past it, `notify` true only for the
    /// first excess message of the window.
    fn flood_check(&self, ev: &InboundEvent) -> Option<bool> {
        let InboundEvent::Message(m) = ev else {
            return None;
        };
        let for_model = m.chat.kind == ChatKind::Private
            || m.mentions_bot
            || m.reply_to.as_ref().is_some_and(|r| r.to_bot)
            || self.svc.config.group.reply_mode == crate::config::ReplyMode::Always;
        let text = match &m.content {
            Content::Text { text } => text.trim(),
            Content::Unsupported { .. } | Content::Document { .. } => return None,
        };
        if !for_model || text.starts_with('/') {
            return None;
        }
        let group = &self.svc.config.group;
        let window = chrono::Duration::from_std(group.flood_window).unwrap_or_default();
        let now = self.svc.clock.now();
        let mut map = self.flood.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, s| now - s.window_start < window);
        }
        let st = map.entry((m.chat.id, m.from.id)).or_insert(FloodState {
            window_start: now,
            count: 0,
            warned: false,
        });
        if now - st.window_start >= window {
            *st = FloodState {
                window_start: now,
                count: 0,
                warned: false,
            };
        }
        st.count += 1;
        if st.count <= group.flood_budget {
            return None;
        }
        let notify = !st.warned;
        st.warned = true;
        Some(notify)
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
        if self.closed.load(Ordering::SeqCst) {
            // shutting down: the message stays pending for recovery
            tracing::debug!(chat_id, inbound = ?job.inbound_id, "worker closed; left for recovery");
            return;
        }
        if let Some(id) = job.inbound_id {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            if !inflight.insert(id) {
                return; // already queued here
            }
        }
        self.pending.fetch_add(1, Ordering::SeqCst);
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let cq = queues.entry(chat_id).or_insert_with(|| {
            let cq = Arc::new(ChatQueue::default());
            let me = self.clone();
            let worker = cq.clone();
            self.tracker.spawn(async move {
                loop {
                    let next = worker.q.lock().unwrap_or_else(|p| p.into_inner()).pop();
                    match next {
                        Some(job) => {
                            let _turn = me.svc.locks.local(chat_id).await;
                            if me.may_work(chat_id, &job).await {
                                me.process(job).await;
                            } else {
                                me.hand_over(job).await;
                            }
                        }
                        None if worker.closed.load(Ordering::SeqCst) => break,
                        None => {
                            me.let_go(chat_id, &worker).await;
                            worker.wake.notified().await
                        }
                    }
                }
            });
            cq
        });
        cq.q.lock().unwrap_or_else(|p| p.into_inner()).push(job);
        cq.wake.notify_one();
    }

    /// With the chat's mutex held: may this process work `job` now? True when it holds the
    /// chat's lease (taken here if free). A message another live process holds the chat for
    /// is handed over ([`Hearth::hand_over`]); an event without a row (a button tap, a join)
    /// waits up to `cluster.lease` for the chat, then runs anyway (its effects are conditional
    /// updates; logged). A database error runs it as without replicas.
    async fn may_work(&self, chat_id: i64, job: &Job) -> bool {
        let wait_until = tokio::time::Instant::now() + self.svc.config.cluster.lease;
        loop {
            match self.svc.locks.try_hold(chat_id).await {
                Ok(true) => return true,
                Ok(false) if job.inbound_id.is_some() => return false,
                Ok(false) if tokio::time::Instant::now() < wait_until => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Ok(false) => {
                    tracing::warn!(
                        chat_id,
                        "chat held by another process for a whole lease; event handled here"
                    );
                    return true;
                }
                Err(e) => {
                    tracing::warn!(chat_id, error = %e, "chat lease not checked; handled here");
                    return true;
                }
            }
        }
    }

    /// Another live process holds the chat: give the message back (unowned); the holder
    /// claims it at its next poll and answers it after the chat's earlier messages.
    async fn hand_over(&self, job: Job) {
        if let Some(id) = job.inbound_id {
            tracing::debug!(
                chat_id = job.ev.chat().id,
                inbound = id,
                "chat held by another process; handed over"
            );
            self.release_one(id).await;
            self.inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        }
        self.settle_one();
    }

    /// Whether this process has events of `chat_id` queued (not counting one being processed).
    fn queued(&self, chat_id: i64) -> bool {
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues.get(&chat_id).is_some_and(|cq| {
            !cq.q
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .order
                .is_empty()
        })
    }

    /// The chat's queue drained: under its mutex, and if nothing was queued meanwhile, give up
    /// the chat's lease so its next message is worked by whichever process accepts it.
    async fn let_go(&self, chat_id: i64, worker: &ChatQueue) {
        let _g = self.svc.locks.local(chat_id).await;
        let empty = || {
            worker
                .q
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .order
                .is_empty()
        };
        self.svc.locks.release_if(chat_id, empty).await;
    }

    /// Claim the pending messages this process may work and queue them here: those of chats no
    /// live process holds (taking each chat's lease first: left by a process that died, let the
    /// chat go, or could not take it when it accepted them) and those another process accepted
    /// for a chat this process holds. Gives up — warn log, one notice per chat — those older
    /// than [`RECOVERY_WINDOW`] or with `runtime.max_attempts` started turns. Run at start-up
    /// and every `cluster.poll`. Returns how many were queued.
    pub async fn recover(self: &Arc<Self>) -> Result<usize, StoreError> {
        let now = self.svc.clock.now();
        let mut n = 0;
        for chat_id in self.svc.store.claimable_chats(&self.owner, now).await? {
            // per chat, under its lease-operation lock (see `accept`)
            let Some(_op) = self.svc.locks.hold_guarded(chat_id).await? else {
                continue;
            };
            let rows = self
                .svc
                .store
                .claim_inbound(&self.owner, &[chat_id], now, self.lease_end(now))
                .await?;
            n += self.queue_claimed(rows, None).await?;
        }
        Ok(n)
    }

    /// Queue claimed rows here in id order (`fresh`: the message just accepted, already decoded,
    /// with its flood decision); give up those too old or tried too often. Returns how many
    /// were queued.
    async fn queue_claimed(
        self: &Arc<Self>,
        rows: Vec<InboundRow>,
        mut fresh: Option<(i64, InboundEvent, Option<bool>)>,
    ) -> Result<usize, StoreError> {
        let now = self.svc.clock.now();
        let since = now - chrono::Duration::from_std(RECOVERY_WINDOW).unwrap_or_default();
        let max = i32::try_from(self.svc.config.runtime.max_attempts).unwrap_or(i32::MAX);
        let polled = fresh.is_none();
        let mut n = 0;
        let restarted = rows.iter().filter(|r| r.attempts > 0).count();
        let mut given_up: Vec<GivenUp> = Vec::new();
        for row in rows {
            let mut flood = None;
            let decoded = match fresh.take() {
                Some((id, ev, f)) if id == row.id => {
                    flood = f;
                    Ok(ev)
                }
                other => {
                    fresh = other;
                    serde_json::from_str::<InboundEvent>(&row.payload)
                }
            };
            let ev = match decoded {
                Ok(ev) => ev,
                Err(e) => {
                    // serde's message may quote the payload (conversation text): category and position only
                    tracing::warn!(inbound = row.id, chat_id = row.chat_id, error = ?e.classify(), line = e.line(), column = e.column(), "message given up: unreadable payload");
                    self.svc
                        .store
                        .finish_inbound(row.id, InboundStatus::Failed, now)
                        .await?;
                    continue;
                }
            };
            let give_up = if row.received_at < since {
                Some(("too old to answer", InboundStatus::Abandoned))
            } else if row.attempts >= max {
                Some(("too many attempts", InboundStatus::Failed))
            } else {
                None
            };
            if let Some((cause, status)) = give_up {
                tracing::warn!(
                    inbound = row.id,
                    chat_id = row.chat_id,
                    attempts = row.attempts,
                    cause,
                    "message given up"
                );
                self.svc.store.finish_inbound(row.id, status, now).await?;
                given_up.push((row, Some(ev)));
                continue;
            }
            self.enqueue(Job {
                ev,
                inbound_id: Some(row.id),
                flood,
                prior_attempts: row.attempts,
            });
            n += 1;
        }
        // a message from days ago (a long outage) is given up without a notice nobody expects
        given_up.retain(|(row, _)| now - row.received_at < chrono::Duration::hours(24));
        self.tell_given_up(given_up).await;
        if restarted > 0 {
            // turns had started on these elsewhere (a process died or stopped mid-turn)
            tracing::info!(count = restarted, owner = %self.owner, "recovering unfinished messages");
        }
        if polled && n > restarted {
            tracing::debug!(
                count = n - restarted,
                "messages handed over by other processes claimed"
            );
        }
        Ok(n)
    }

    /// Tell each chat once which of its messages were given up, in the chat's local time:
    /// "Sorry, I couldn't answer your message from 10:42 — please ask again."
    async fn tell_given_up(&self, rows: Vec<GivenUp>) {
        let mut by_chat: Vec<(i64, Vec<GivenUp>)> = Vec::new();
        for r in rows {
            match by_chat.iter_mut().find(|(c, _)| *c == r.0.chat_id) {
                Some((_, v)) => v.push(r),
                None => by_chat.push((r.0.chat_id, vec![r])),
            }
        }
        for (chat_id, rows) in by_chat {
            let zone = match self.svc.store.chat(chat_id).await {
                Ok(Some(c)) => crate::services::zone_of(&c),
                _ => self.svc.config.group.timezone,
            };
            let mut reply_to = None;
            let mut times = Vec::new();
            for (row, ev) in &rows {
                let (at, group_msg) = match ev {
                    Some(InboundEvent::Message(m)) => (m.date, m.chat.kind == ChatKind::Group),
                    _ => (row.received_at, false),
                };
                if group_msg && reply_to.is_none() {
                    reply_to = Some(row.message_id);
                }
                times.push(at.with_timezone(&zone).format("%H:%M").to_string());
            }
            let text = given_up_notice(&times);
            self.reply(chat_id, reply_to, &text).await;
        }
    }

    /// The heartbeat: renew every lease this process holds (inbound messages, chats, then the
    /// routine runs it executes: one statement each) and record the beat in `processes`.
    pub async fn heartbeat(&self) -> Result<u64, StoreError> {
        let now = self.svc.clock.now();
        let host = std::env::var("HOSTNAME").unwrap_or_default();
        self.svc
            .store
            .beat_process(&self.owner, &host, self.started, now)
            .await?;
        let n = self
            .svc
            .store
            .renew_leases(&self.owner, self.lease_end(now))
            .await?;
        let chats = self.svc.locks.renew().await?;
        let run_lease = chrono::Duration::from_std(self.svc.config.routines.step_lease)
            .unwrap_or(chrono::Duration::seconds(30));
        let runs = self
            .svc
            .store
            .renew_run_leases(&self.owner, now + run_lease)
            .await?;
        Ok(n + chats + runs)
    }

    /// Spawn the heartbeat (every `runtime.heartbeat`) and the periodic recovery (every
    /// `cluster.poll`). The claim poll ends with `stop` (no new work once stopping); the
    /// heartbeat goes on renewing the leases of the turns still in flight until
    /// [`Hearth::shutdown`] ends it. Failures are logged and retried next period.
    pub fn spawn_lease_tasks(self: &Arc<Self>, stop: CancellationToken) {
        let rt = &self.svc.config.runtime;
        let (beat, every) = (rt.heartbeat, self.svc.config.cluster.poll);
        let me = self.clone();
        let done = self.lease_tasks.stop.clone();
        self.lease_tasks.tasks.spawn(async move {
            let mut tick = tokio::time::interval(beat);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = done.cancelled() => break,
                    _ = tick.tick() => {
                        if let Err(e) = me.heartbeat().await {
                            tracing::warn!(error = %e, "lease heartbeat failed; retrying next beat");
                        }
                    }
                }
            }
        });
        let me = self.clone();
        let done = self.lease_tasks.stop.clone();
        self.lease_tasks.tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // start-up recovery already ran
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = done.cancelled() => break,
                    _ = tick.tick() => {
                        if me.closed.load(Ordering::SeqCst) {
                            break;
                        }
                        // chats no turn used for a poll period go back to every process
                        let before = std::time::Instant::now() - every;
                        me.svc.locks.release_idle(before, |c| me.queued(c)).await;
                        if let Err(e) = me.recover().await {
                            tracing::warn!(error = %e, "periodic recovery failed; retrying");
                        }
                    }
                }
            }
        });
    }

    /// Stop taking events, let queued work finish for at most `grace`, then return.
    /// Unfinished messages stay pending and are recovered at the next start.
    pub async fn shutdown(&self, grace: Duration) {
        self.closed.store(true, Ordering::SeqCst);
        for cq in self
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, cq)| cq)
        {
            cq.closed.store(true, Ordering::SeqCst);
            cq.wake.notify_one();
        }
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace period over; unfinished messages will be recovered at the next start");
        }
        // the heartbeat renewed the in-flight turns' leases until now; end it (and the claim
        // poll) and wait, so no beat or claim lands after the release below
        self.lease_tasks.stop.cancel();
        self.lease_tasks.tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), self.lease_tasks.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("heartbeat still busy after 5 s; releasing the leases anyway");
        }
        // hand what is left to the other processes (or the next start) at once instead of
        // after the leases lapse: a rolling deploy loses and duplicates nothing (issue 12)
        match self.svc.store.release_leases(&self.owner).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "message leases released for the next process"),
            Err(e) => {
                tracing::warn!(error = %e, "could not release leases; they lapse on their own")
            }
        }
        match self.svc.locks.release_all().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "chat leases released"),
            Err(e) => {
                tracing::warn!(error = %e, "could not release chat leases; they lapse on their own")
            }
        }
        let stale = self.svc.clock.now() - chrono::Duration::days(1);
        if let Err(e) = self.svc.store.remove_process(&self.owner, stale).await {
            tracing::debug!(error = %e, "process row not removed; it goes stale on its own");
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
        let inbound_id = job.inbound_id;
        self.process_inner(job).await;
        if let Some(id) = inbound_id {
            self.inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        }
    }

    /// The reply an earlier turn stored for message `id`. One stored less than `runtime.lease`
    /// ago and not confirmed may still be on its way from a live process whose lease lapsed
    /// (stalled): that turn sends and confirms it within the lease, so it is read again once the
    /// lease has passed since it was stored, and only a reply still unconfirmed then is resent.
    /// A dead process's reply is older than that by the time its message is taken over (no
    /// wait). Telegram's sendMessage has no idempotency key: resending too early was a second
    /// copy of the same answer (issue 12, two replicas under load).
    async fn stored_reply(&self, id: i64) -> Result<Option<crate::store::ReplyRow>, StoreError> {
        let Some(r) = self.svc.store.reply_for(id).await? else {
            return Ok(None);
        };
        let lease = chrono::Duration::from_std(self.svc.config.runtime.lease)
            .unwrap_or(chrono::Duration::seconds(30));
        let settled = r.created_at + lease;
        let wait = (settled - self.svc.clock.now())
            .to_std()
            .unwrap_or_default();
        if r.sent_at.is_some() || wait.is_zero() {
            return Ok(Some(r));
        }
        tracing::info!(
            inbound = id,
            wait_ms = wait.as_millis() as u64,
            "an unconfirmed stored reply is recent: waiting for its sender before resending"
        );
        tokio::time::sleep(wait).await;
        self.svc.store.reply_for(id).await
    }

    /// Start the turn on a persisted message: take the lease and count the attempt (one
    /// statement). Returns false when the message must not run here (held by another live
    /// process, already finished, or the store failed: recovery retries it).
    async fn start_turn(&self, id: i64, chat_id: i64, prior_attempts: i32) -> bool {
        let now = self.svc.clock.now();
        match self
            .svc
            .store
            .start_turn(id, &self.owner, now, self.lease_end(now))
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(
                    chat_id,
                    inbound = id,
                    "held by another process or finished; skipped"
                );
                return false;
            }
            Err(e) => {
                tracing::warn!(chat_id, inbound = id, error = %e, "could not start a turn; left for recovery");
                self.release_one(id).await;
                return false;
            }
        }
        if prior_attempts == 0 {
            return true; // first turn: no reply can have been decided before
        }
        // a reply decided by an earlier turn is sent (or not) again without calling the model
        match self.stored_reply(id).await {
            Ok(None) => true,
            Ok(Some(r)) => {
                if r.sent_at.is_none() {
                    tracing::info!(
                        chat_id,
                        inbound = id,
                        "resending a stored reply that was never confirmed"
                    );
                    if let Err(e) = self.svc.outbox.resend(&r).await {
                        tracing::error!(chat_id, inbound = id, error = %e, "stored reply not delivered");
                    }
                } else {
                    tracing::info!(
                        chat_id,
                        inbound = id,
                        "reply already confirmed; not sent again"
                    );
                }
                self.mark_done(chat_id, id).await;
                false
            }
            Err(e) => {
                tracing::warn!(chat_id, inbound = id, error = %e, "could not read a stored reply; left for recovery");
                self.release_one(id).await;
                false
            }
        }
    }

    /// Mark a message done (answered). A failure is logged and the row stays pending for
    /// recovery, which never sends a confirmed stored reply again.
    async fn mark_done(&self, chat_id: i64, id: i64) {
        if let Err(e) = self
            .svc
            .store
            .finish_inbound(id, InboundStatus::Done, self.svc.clock.now())
            .await
        {
            tracing::warn!(chat_id, error = %e, "could not mark a message done");
        }
    }

    /// Hand one message back to recovery (the heartbeat would otherwise keep renewing it).
    async fn release_one(&self, id: i64) {
        if let Err(e) = self.svc.store.release_inbound(id, &self.owner).await {
            tracing::warn!(inbound = id, error = %e, "could not release a lease; it lapses on its own");
        }
    }

    /// Past the flood budget: keep the message in the context log only (no model call); the
    /// first excess message of the window gets one polite "slow down".
    async fn keep_as_context(&self, m: InboundMessage, notify: bool) -> Result<(), StoreError> {
        let (chat, _member) = self.resolve(&m.chat, &m.from, false).await?;
        self.svc
            .store
            .append_message(NewMessage {
                chat_id: chat.id,
                sender_user_id: Some(m.from.id),
                sender_name: m.from.label(),
                from_bot: false,
                text: m.text(),
                tg_message_id: Some(m.message_id),
                reply_to: m.reply_to.as_ref().map(|r| r.message_id),
                created_at: m.date,
            })
            .await?;
        tracing::info!(
            chat_id = chat.id,
            user_id = m.from.id,
            "flood budget exceeded: message kept as context only"
        );
        if notify {
            let reply_to = (m.chat.kind != ChatKind::Private).then_some(m.message_id);
            let text = format!(
                "{}, that's a lot of messages at once — please slow down a little. I've read them, but I'll answer the others first and you again in a moment.",
                m.from.label()
            );
            self.reply(chat.id, reply_to, &text).await;
        }
        Ok(())
    }

    async fn process_inner(&self, job: Job) {
        use futures::FutureExt;
        let chat_id = job.ev.chat().id;
        let reply_chat = job.ev.chat().clone();
        if let Some(id) = job.inbound_id {
            if !self.start_turn(id, chat_id, job.prior_attempts).await {
                self.settle_one();
                return;
            }
        }
        let flood = job.flood;
        let handled = async {
            match job.ev {
                InboundEvent::Message(m) => match flood {
                    Some(notify) => self.keep_as_context(m, notify).await,
                    None => self.on_message(m).await,
                },
                InboundEvent::Callback(c) => self.on_callback(c).await,
                InboundEvent::MemberJoined { chat, user } => {
                    self.on_member_joined(&chat, &user).await
                }
                InboundEvent::MemberLeft { chat, user } => self.on_member_left(&chat, &user).await,
            }
        };
        // the agent turn sends its reply through `Outbox::send_for(inbound_id, …)`
        let handled = async {
            match job.inbound_id {
                Some(id) => CURRENT_INBOUND.scope(id, handled).await,
                None => handled.await,
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
                        .finish_inbound(id, InboundStatus::Failed, self.svc.clock.now())
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
                    self.mark_done(chat_id, id).await;
                }
            }
            Err(e) => {
                // left pending and released: recovery retries it (bounded by runtime.max_attempts)
                tracing::error!(chat_id, error = %e, "processing failed");
                if let Some(id) = job.inbound_id {
                    self.release_one(id).await;
                }
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
            Content::Document { file_name, .. } => format!("[document {file_name}]"),
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

        // a `.toml` document: a playbook to save (admins; issue 9)
        if let Content::Document {
            file_id,
            file_name,
            size,
        } = &m.content
        {
            let admin = private || member.as_ref().is_some_and(|x| x.is_admin());
            if admin || addressed {
                let actor = crate::routines::Actor {
                    user_id: m.from.id,
                    admin,
                };
                let upload = crate::routines::playbooks::Upload {
                    file_id,
                    file_name,
                    size: *size,
                };
                let html =
                    crate::routines::playbooks::on_document(&self.svc, chat.id, actor, upload)
                        .await?;
                self.send(Outbound {
                    chat_id: chat.id,
                    html,
                    buttons: vec![],
                    reply_to,
                })
                .await;
            }
            return Ok(());
        }
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
            restriction: None,
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
                let out = Outbound {
                    chat_id: chat.id,
                    html: format::markdown_to_html(text),
                    // "💾 Save as routine" after a multi-step task (issue 10)
                    buttons: crate::routines::recorded::reply_buttons(&outcome),
                    reply_to,
                };
                match CURRENT_INBOUND.try_with(|id| *id) {
                    // decided once: stored before sending, confirmed after (issue 8, item 6)
                    Ok(id) => {
                        if let Err(e) = self.svc.outbox.send_for(id, out).await {
                            tracing::error!(chat_id = chat.id, error = %e, "reply not delivered");
                        }
                    }
                    Err(_) => self.send(out).await,
                }
                crate::routines::recorded::after_turn(&self.svc, chat.id, m.from.id, &outcome)
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
        // draft playbook Save / Cancel (issue 9)
        if crate::routines::playbooks::on_callback(&self.svc, &c).await? {
            return Ok(());
        }
        // Save as routine and its dialogue (issue 10)
        if crate::routines::recorded::on_callback(&self.svc, &self.agent, &c).await? {
            return Ok(());
        }
        // run buttons: cost question, interrupted step (issue 9)
        if crate::routines::run_buttons::on_callback(&self.svc, &c).await? {
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

/// The one notice for messages given up in a chat, times already in the chat's zone ("10:42").
fn given_up_notice(times: &[String]) -> String {
    match times {
        [] => String::new(),
        [one] => format!("Sorry, I couldn't answer your message from {one} — please ask again."),
        [a, b] => format!(
            "Sorry, I couldn't answer your messages from {a} and {b} — please ask again."
        ),
        [first, .., last] => format!(
            "Sorry, I couldn't answer {} of your messages (from {first} to {last}) — please ask again.",
            times.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::given_up_notice;

    #[test]
    fn the_give_up_notice_names_the_times() {
        let t = |v: &[&str]| given_up_notice(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            t(&["10:42"]),
            "Sorry, I couldn't answer your message from 10:42 — please ask again."
        );
        assert_eq!(
            t(&["10:42", "10:43"]),
            "Sorry, I couldn't answer your messages from 10:42 and 10:43 — please ask again."
        );
        assert_eq!(
            t(&["10:42", "10:43", "10:50"]),
            "Sorry, I couldn't answer 3 of your messages (from 10:42 to 10:50) — please ask again."
        );
    }
}
