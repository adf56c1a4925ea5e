//! The service bundle every layer above `store` works with: configuration, storage, clock, the
//! outbound boundary, the bot's identity, the per-chat turn locks and the workflow target hooks.
//! Built once by `app`.

use std::{collections::HashMap, sync::Arc};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::{
    clock::SharedClock, config::Config, events::EventBus, outbox::Outbox, store::ChatRow,
    store::Store, workflow::WorkflowTargets,
};

/// The bot as Telegram knows it (from getMe), or the console's stand-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotIdentity {
    pub id: i64,
    /// Without the leading "@".
    pub username: String,
    /// Display name used as the sender label of the bot's own messages.
    pub name: String,
}

/// Shared services. Cheap to clone (everything inside is shared).
#[derive(Clone)]
pub struct Services {
    pub config: Arc<Config>,
    pub store: Store,
    pub clock: SharedClock,
    pub outbox: Outbox,
    pub bot: BotIdentity,
    pub locks: ChatLocks,
    pub events: EventBus,
    /// The `WorkflowTarget` hook of each workflow kind (registered in `app::core`).
    pub workflow_targets: WorkflowTargets,
    /// Pacing of runs' progress-message edits (at most one a second per run).
    pub progress: crate::routines::progress::Pacer,
    /// The built-in command menu (`core::commands::menu` of the registered router): what a
    /// chat's own menu lists before its routines ([`crate::routines::menu`]).
    pub menu: Arc<Vec<crate::router::MenuEntry>>,
    /// Signalled when a run was started by hand (`/<name>`): the routine engine's listener
    /// sweeps at once instead of at the next one-second tick (issue 10: `/name` → first tool
    /// call within milliseconds).
    pub run_started: Arc<tokio::sync::Notify>,
}

/// One lock per chat: a member's turn and a routine's turn in the same chat never interleave —
/// in this process (a mutex) and, when built with [`ChatLocks::leased`], across every process on
/// the database (the chat's lease in `chat_leases`, issue 12).
///
/// The lease is taken with the mutex held and kept after the guard drops (cached with its
/// expiry), so a chat's next turn in the same process costs no statement; it is renewed by the
/// heartbeat ([`ChatLocks::renew`]) and given up when the chat's inbound queue drains
/// ([`ChatLocks::release`], under the mutex) or after a heartbeat period unused
/// ([`ChatLocks::release_idle`]), so another process may take the chat next.
#[derive(Clone, Default)]
pub struct ChatLocks {
    map: Arc<std::sync::Mutex<HashMap<i64, Arc<Mutex<()>>>>>,
    leases: Option<Arc<ChatLeases>>,
}

/// A held chat lease in the cache: (until, last used).
type Held = (DateTime<Utc>, std::time::Instant);

/// The cross-process half of [`ChatLocks`].
struct ChatLeases {
    store: Store,
    clock: SharedClock,
    owner: String,
    lease: chrono::Duration,
    /// Chat id → (held until (the clock's time, as written to the table), last used (real
    /// time: idleness is measured by the process, whatever the injected clock says)).
    held: std::sync::Mutex<HashMap<i64, Held>>,
    /// Per chat: serializes this process's takes and releases of the chat's lease, so the cache
    /// and the table never disagree (a release's delete landing after a concurrent re-take
    /// would leave the cache saying "held" with no row: two processes working one chat).
    ops: std::sync::Mutex<HashMap<i64, Arc<Mutex<()>>>>,
}

/// A chat's lease-operation lock, held (see [`ChatLocks::hold_guarded`]).
pub struct LeaseOp(#[allow(dead_code)] Option<OwnedMutexGuard<()>>);

impl ChatLeases {
    /// Whether the cache says this process holds the chat with more than half the lease left
    /// (then marks it used).
    fn cached(&self, chat_id: i64) -> bool {
        let now = self.clock.now();
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        match held.get_mut(&chat_id) {
            Some((until, used)) if *until - now > self.lease / 2 => {
                *used = std::time::Instant::now();
                true
            }
            _ => false,
        }
    }

    /// With the chat's lease-operation lock held: take or renew the lease in the table and
    /// record the outcome in the cache.
    async fn take(&self, chat_id: i64) -> Result<bool, crate::store::StoreError> {
        let now = self.clock.now();
        let until = now + self.lease;
        let ok = self
            .store
            .acquire_chat(chat_id, &self.owner, now, until)
            .await?;
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            held.insert(chat_id, (until, std::time::Instant::now()));
        } else {
            held.remove(&chat_id);
        }
        Ok(ok)
    }

    /// The chat's lease-operation lock.
    async fn op(&self, chat_id: i64) -> OwnedMutexGuard<()> {
        let m = {
            let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
            if ops.len() > 10_000 {
                // forget chats nobody is operating on (their lock is not shared)
                ops.retain(|_, m| Arc::strong_count(m) > 1);
            }
            ops.entry(chat_id).or_default().clone()
        };
        m.lock_owned().await
    }
}

/// How often [`ChatLocks::lock`] asks again for a chat another process holds.
const LEASE_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

impl ChatLocks {
    /// Locks that also hold each chat's lease on the database for process `owner`, for `lease`
    /// at a time (`cluster.lease`).
    pub fn leased(
        store: Store,
        clock: SharedClock,
        owner: impl Into<String>,
        lease: std::time::Duration,
    ) -> Self {
        Self {
            map: Default::default(),
            leases: Some(Arc::new(ChatLeases {
                store,
                clock,
                owner: owner.into(),
                lease: chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(15)),
                held: Default::default(),
                ops: Default::default(),
            })),
        }
    }

    /// The process id the leases are held for (`None`: local locks only).
    pub fn owner(&self) -> Option<&str> {
        self.leases.as_deref().map(|l| l.owner.as_str())
    }

    /// This process's mutex of the chat only (FIFO among waiters), no lease: the chat's inbound
    /// worker takes it, then [`ChatLocks::try_hold`] to know whether it may work the chat.
    pub async fn local(&self, chat_id: i64) -> OwnedMutexGuard<()> {
        let m = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(chat_id).or_default().clone()
        };
        m.lock_owned().await
    }

    /// Wait for the chat's lock: this process's mutex, then the chat's lease (asked again every
    /// 50 ms while another process holds it; a database error is logged and the turn goes on,
    /// as without replicas). Routine turns take this.
    pub async fn lock(&self, chat_id: i64) -> OwnedMutexGuard<()> {
        let guard = self.local(chat_id).await;
        if self.leases.is_some() {
            loop {
                match self.try_hold(chat_id).await {
                    Ok(true) => break,
                    Ok(false) => tokio::time::sleep(LEASE_RETRY).await,
                    Err(e) => {
                        tracing::warn!(chat_id, error = %e, "chat lease not taken; turn runs anyway");
                        break;
                    }
                }
            }
        }
        guard
    }

    /// With the chat's mutex held: make sure this process holds the chat's lease (no statement
    /// while more than half of it is left). Returns false when another live process holds the
    /// chat. Always true for local-only locks.
    ///
    /// Errors: the database failed.
    pub async fn try_hold(&self, chat_id: i64) -> Result<bool, crate::store::StoreError> {
        let Some(l) = &self.leases else {
            return Ok(true);
        };
        if l.cached(chat_id) {
            return Ok(true);
        }
        let _op = l.op(chat_id).await;
        l.take(chat_id).await
    }

    /// [`ChatLocks::try_hold`], keeping the chat's lease operations locked while the returned
    /// guard lives (`None`: another process holds the chat). Claim and queue a chat's messages
    /// under it: the chat cannot be let go in between, so this process never owns pending
    /// messages of a chat it does not hold (issue 12: a claim racing a release answered a newer
    /// message first on another replica).
    ///
    /// Errors: the database failed.
    pub async fn hold_guarded(
        &self,
        chat_id: i64,
    ) -> Result<Option<LeaseOp>, crate::store::StoreError> {
        let Some(l) = &self.leases else {
            return Ok(Some(LeaseOp(None)));
        };
        let op = l.op(chat_id).await;
        let held = l.cached(chat_id) || l.take(chat_id).await?;
        Ok(held.then_some(LeaseOp(Some(op))))
    }

    /// With the chat's mutex held: give up the chat's lease (its queue drained), so the next
    /// message may be worked by whichever process accepts it.
    pub async fn release(&self, chat_id: i64) {
        self.release_if(chat_id, || true).await;
    }

    /// Give up the chat's lease if `cond()` holds, deciding under the chat's lease-operation
    /// lock (so no [`ChatLocks::hold_guarded`] claim interleaves). Returns whether it did.
    pub async fn release_if(&self, chat_id: i64, cond: impl FnOnce() -> bool) -> bool {
        let Some(l) = &self.leases else { return false };
        let _op = l.op(chat_id).await;
        if !cond()
            || l.held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&chat_id)
                .is_none()
        {
            return false;
        }
        if let Err(e) = l.store.release_chats(&l.owner, &[chat_id]).await {
            tracing::warn!(chat_id, error = %e, "chat lease not released; it lapses on its own");
        }
        true
    }

    /// Give up the leases of chats not used since `before` whose mutex is free (a routine turn
    /// leaves its chat held, so a run's next step in the same chat costs no statement; the
    /// claim loop calls this every `cluster.poll`, so another process waiting for the chat waits
    /// about that long). Returns how many.
    ///
    /// `busy(chat)`: the caller still has work queued for the chat (its inbound queue): kept,
    /// or a chat would be let go between two of its queued messages and another process could
    /// answer a later message first.
    pub async fn release_idle(
        &self,
        before: std::time::Instant,
        busy: impl Fn(i64) -> bool,
    ) -> usize {
        let Some(l) = &self.leases else { return 0 };
        let idle: Vec<i64> = l
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(c, (_, used))| *used < before && !busy(**c))
            .map(|(c, _)| *c)
            .collect();
        let mut n = 0;
        for chat_id in idle {
            let m = self
                .map
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&chat_id)
                .cloned();
            // a chat whose mutex is taken is in a turn (or about to be): keep it
            let Some(Ok(_g)) = m.map(|m| m.try_lock_owned()) else {
                continue;
            };
            let still_idle = || {
                !busy(chat_id)
                    && l.held
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&chat_id)
                        .is_some_and(|(_, used)| *used < before)
            };
            if self.release_if(chat_id, still_idle).await {
                n += 1;
            }
        }
        n
    }

    /// The heartbeat: extend every chat lease this process holds (one statement). When fewer
    /// rows than held were renewed (a lease lapsed and another process took the chat), the cache
    /// is reloaded from the table so the next turn asks again.
    ///
    /// Errors: the database failed (the leases lapse on their own).
    pub async fn renew(&self) -> Result<u64, crate::store::StoreError> {
        let Some(l) = &self.leases else { return Ok(0) };
        let until = l.clock.now() + l.lease;
        let n = l.store.renew_chat_leases(&l.owner, until).await?;
        let cached = l.held.lock().unwrap_or_else(|p| p.into_inner()).len() as u64;
        if n == cached {
            let mut held = l.held.lock().unwrap_or_else(|p| p.into_inner());
            for (u, _) in held.values_mut() {
                *u = until;
            }
        } else {
            // forget what was lost; never add (a row read here may be mid-release)
            let rows = l.store.chats_held(&l.owner).await?;
            let mut held = l.held.lock().unwrap_or_else(|p| p.into_inner());
            let before = held.len();
            held.retain(|c, _| rows.contains(c));
            if held.len() < before {
                tracing::warn!(
                    lost = before - held.len(),
                    "chat leases lapsed before the heartbeat renewed them (another process took over); raise cluster.lease or look for a stalled database"
                );
            }
            for (u, _) in held.values_mut() {
                *u = until;
            }
        }
        Ok(n)
    }

    /// Give up every chat lease (graceful stop). Returns how many rows were released.
    pub async fn release_all(&self) -> Result<u64, crate::store::StoreError> {
        let Some(l) = &self.leases else { return Ok(0) };
        l.held.lock().unwrap_or_else(|p| p.into_inner()).clear();
        l.store.release_all_chats(&l.owner).await
    }
}

/// The chat's IANA zone (UTC when the stored name is unknown).
pub fn zone_of(chat: &ChatRow) -> Tz {
    chat.timezone.parse().unwrap_or(Tz::UTC)
}
