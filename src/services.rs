//! The service bundle every layer above `store` works with: configuration, storage, clock, the
//! outbound boundary, the bot's identity, the per-chat turn locks and the workflow target hooks.
//! Built once by `app`.

use std::{collections::HashMap, sync::Arc};

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

/// One lock per chat: a member's turn and a routine's turn in the same chat never interleave.
#[derive(Clone, Default)]
pub struct ChatLocks(Arc<std::sync::Mutex<HashMap<i64, Arc<Mutex<()>>>>>);

impl ChatLocks {
    /// Wait for the chat's lock (FIFO among waiters).
    pub async fn lock(&self, chat_id: i64) -> OwnedMutexGuard<()> {
        let m = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(chat_id).or_default().clone()
        };
        m.lock_owned().await
    }
}

/// The chat's IANA zone (UTC when the stored name is unknown).
pub fn zone_of(chat: &ChatRow) -> Tz {
    chat.timezone.parse().unwrap_or(Tz::UTC)
}
