//! Persistence: the only module that imports sea-orm. Owns connection set-up (SQLite WAL and
//! busy timeout; Postgres by URL), migrations at start-up, and every query, grouped by table.
//! Services receive plain row structs (the entity `Model`s) and never build queries.
//!
//! Portability: all queries are sea-query builders; the one SQLite-specific part is the pragma
//! set-up in [`Store::connect`].

/// Implements `as_str` (the stored name) and comparison with a stored name (`row.status ==
/// "approved"` keeps reading naturally in tests).
///
/// Used by every typed status / kind of the store (`WorkflowStatus`, `ChoreStatus`, …).
macro_rules! stored_names {
    ($t:ty { $($v:ident => $s:literal),+ $(,)? }) => {
        impl $t {
            /// The stored name, e.g. `"pending"`.
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),+ }
            }
            /// The value stored as `s` (`None` for names this build does not know).
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(<$t>::$v),)+ _ => None }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }
    };
}

pub mod entity;

mod admin;
mod chats;
mod chores;
mod cluster;
mod definitions;
mod gates;
mod inbound;
mod kv;
mod log;
mod overview;
mod routine_figures;
mod routines;
mod run_admin;
mod run_queries;
mod runs;
mod turns;
mod workflows;

use std::time::Duration;

use migration::MigratorTrait;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr};

pub use admin::AdminSession;
pub use chats::MemberRow;
pub use chores::{Anchor, ChoreChange, ChoreEdit, ChoreStatus, NewChore, NewCompletion, Rotation};
pub use definitions::{DefinitionFields, RoutineEdit};
pub use entity::reply::Model as ReplyRow;
pub use entity::{
    chat::Model as ChatRow, chore::Model as ChoreRow, chore_completion::Model as CompletionRow,
    inbound::Model as InboundRow, message::Model as MessageRow, routine::Model as RoutineRow,
    routine_run::Model as RunRow, routine_trigger::Model as TriggerRow,
    step_run::Model as StepRunRow, tool_call::Model as ToolCallRow, turn::Model as TurnRow,
    user::Model as UserRow, workflow::Model as WorkflowRow, workflow_audit::Model as AuditRow,
};
pub use inbound::InboundStatus;
pub use log::NewMessage;
pub use overview::{DoneOnDay, RequestState, RunsOnDay, UsageOnDay};
pub use routine_figures::RoutineFigures;
pub use routines::RunTally;
pub use routines::{
    NewRoutine, NewRun, NewTrigger, Publication, RoutineCounters, RoutineStatus, RunEnd, RunSource,
    RunStatus, StepStatus, StepType, TriggerKind,
};
pub use run_admin::RunPage;
pub use run_queries::{RunFilter, SeedRun, StepResult};
pub use runs::{AdvanceExtras, Advanced, GateOutcome, NewStepRun, RunChange, StepChange};
pub use turns::{
    fingerprint, NewToolCall, NewTurn, ToolCallStatus, TurnRecord, DRY_RUN_SOURCE,
    MAX_RECORDED_RESULT_CHARS,
};
pub use workflows::{
    CreateGuard, CreateRefused, Eligibility, NewWorkflow, QuorumVote, TargetChange, Transition,
    Transitioned, Via, WorkflowKind, WorkflowStatus,
};

/// A storage failure (connection, constraint, serialization). Display gives the cause.
#[derive(Debug, thiserror::Error)]
#[error("storage: {0}")]
pub struct StoreError(#[from] pub DbErr);

pub type StoreResult<T> = Result<T, StoreError>;

/// A handle to the database; cheap to clone (a pool inside).
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    /// SQLite only: the process's writers on the run engine's hot path queue here instead of
    /// colliding on the database's one write lock (SQLite answers a collision with
    /// `SQLITE_BUSY` and its busy handler sleeps 1, 2, 5, 10 … ms before trying again, while a
    /// write holds the lock for tens of µs: thousands of runs resuming together spent most of
    /// their time asleep, benches/runs.rs). `None` on Postgres (row locks; writers run in
    /// parallel). Taken by leaf store functions only (never while holding a connection or
    /// another guard), so it cannot deadlock; writers that do not take it still work (through
    /// the busy timeout).
    write: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
}

impl Store {
    /// Connect to `url` and apply pending migrations.
    ///
    /// SQLite: creates the file's folder, turns on WAL and `busy_timeout`; `sqlite::memory:` uses
    /// one connection (each in-memory connection is its own database).
    pub async fn connect(
        url: &str,
        max_connections: u32,
        busy_timeout: Duration,
    ) -> StoreResult<Store> {
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        if url.starts_with("sqlite:") && !memory {
            if let Some(dir) = sqlite_parent_dir(url) {
                std::fs::create_dir_all(&dir).map_err(|e| {
                    DbErr::Custom(format!("cannot create database folder {dir}: {e}"))
                })?;
            }
        }
        let mut opts = ConnectOptions::new(url.to_string());
        opts.max_connections(if memory { 1 } else { max_connections })
            .min_connections(1)
            .connect_timeout(Duration::from_secs(10))
            .sqlx_logging(false);
        if memory {
            // keep the single in-memory connection alive for the life of the pool
            opts.idle_timeout(Duration::from_secs(365 * 24 * 3600))
                .max_lifetime(Duration::from_secs(365 * 24 * 3600));
        }
        opts.map_sqlx_sqlite_opts(move |o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(busy_timeout)
                .foreign_keys(true)
                // checkpoints run from the scheduler (`checkpoint`), not inside a reply's commit
                .pragma("wal_autocheckpoint", "0")
                // page cache per connection in KiB (negative = KiB): 1 MiB instead of SQLite's
                // 2 MiB default. A household database is a few MB and the OS page cache holds it
                // anyway; each pooled connection filling 2 MiB was most of the resident growth
                // with 10,000 waiting runs (issue 9's RSS budget; measured with heaptrack).
                .pragma("cache_size", "-1024")
        });
        // every acquisition reported (TRACE, target `sqlx::pool::acquire`) for the pool-wait
        // metric; nothing is logged unless a subscriber asks for that target
        opts.map_sqlx_postgres_pool_opts(|o| o.acquire_time_level(::log::LevelFilter::Trace))
            .map_sqlx_sqlite_pool_opts(|o| o.acquire_time_level(::log::LevelFilter::Trace));
        let db = Database::connect(opts).await?;
        migrate(&db, url, busy_timeout).await?;
        let write = (db.get_database_backend() == DbBackend::Sqlite)
            .then(|| std::sync::Arc::new(tokio::sync::Mutex::new(())));
        Ok(Store { db, write })
    }

    /// A fresh in-memory SQLite database with all migrations applied (tests, console trials).
    pub async fn memory() -> StoreResult<Store> {
        Store::connect("sqlite::memory:", 1, Duration::from_secs(5)).await
    }

    /// Create database `name` on the Postgres server at `admin_url` (test isolation: one fresh
    /// database per test). Errors: the server refuses or the name exists.
    pub async fn create_postgres_database(admin_url: &str, name: &str) -> StoreResult<()> {
        let db = Database::connect(admin_url).await?;
        db.execute_unprepared(&format!("CREATE DATABASE \"{}\"", name.replace('"', "")))
            .await?;
        db.close().await?;
        Ok(())
    }

    /// Apply pending migrations and report how many ran.
    pub async fn migrate_only(url: &str) -> StoreResult<usize> {
        let memory = url.contains(":memory:");
        if url.starts_with("sqlite:") && !memory {
            if let Some(dir) = sqlite_parent_dir(url) {
                let _ = std::fs::create_dir_all(dir);
            }
        }
        let db = Database::connect(url).await?;
        // read-only: creating the migrations table here would race other processes' migrations
        let pending = migration::Migrator::get_pending_migrations_read_only(&db)
            .await?
            .len();
        migrate(&db, url, Duration::from_secs(5)).await?;
        Ok(pending)
    }

    /// Copy the SQLite write-ahead log back into the database file (PASSIVE: never blocks readers
    /// or writers). Automatic checkpoints are off so no member's reply pays for one; the
    /// scheduler calls this every 30 s. A no-op on Postgres. Returns nothing on success.
    pub async fn checkpoint(&self) -> StoreResult<()> {
        if self.backend() == DbBackend::Sqlite {
            self.db
                .execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)")
                .await?;
        }
        Ok(())
    }

    /// Round trip to the database (`/readyz`).
    pub async fn ping(&self) -> StoreResult<()> {
        self.db.ping().await?;
        Ok(())
    }

    /// The backend in use.
    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    pub(crate) fn conn(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Queue for the process's SQLite write lock (see [`Store`]'s `write` field); hold the
    /// guard over one write statement or transaction. `None` (no wait) on Postgres.
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.write {
            Some(m) => Some(m.lock().await),
            None => None,
        }
    }
}

/// The key of the Postgres advisory lock that serializes migrations across processes
/// (`pg_advisory_lock(bigint)`; "hearth" in ASCII).
pub const MIGRATION_LOCK_KEY: i64 = 0x6865_6172_7468;

/// Longest a process waits for another process's migrations (SQLite: for the write lock).
const MIGRATION_WAIT: Duration = Duration::from_secs(300);

/// Apply pending migrations. Any number of replicas may start at once on a fresh database (issue
/// 12, item 0: two of three replicas exited with `duplicate key value violates unique constraint
/// "pg_type_typname_nsp_index"`; on SQLite `index … already exists`, as sea-orm-migration runs
/// SQLite migrations outside transactions): the first process migrates and the others wait, then
/// find nothing pending.
///
/// - Postgres: the migrations run on one dedicated connection (a pool of one: sea-orm-migration
///   runs every statement, and each migration's transaction, on the connection it is given)
///   inside a session advisory lock ([`MIGRATION_LOCK_KEY`]).
/// - SQLite file: on one dedicated connection inside one `BEGIN IMMEDIATE` transaction (SQLite's
///   DDL is transactional): it holds the database's write lock, so the others wait (retried up to
///   [`MIGRATION_WAIT`] past `busy_timeout`), and a failed migration leaves nothing half done.
/// - SQLite in memory: one connection, one process; migrated directly.
async fn migrate(db: &DatabaseConnection, url: &str, busy_timeout: Duration) -> StoreResult<()> {
    let backend = db.get_database_backend();
    let memory = url.contains(":memory:") || url.contains("mode=memory");
    if backend == DbBackend::Sqlite && memory {
        migration::Migrator::up(db, None).await?;
        return Ok(());
    }
    // one connection: a session lock / a transaction belongs to the connection that took it
    let mut opts = ConnectOptions::new(url.to_string());
    opts.max_connections(1)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    opts.map_sqlx_sqlite_opts(move |o| o.busy_timeout(busy_timeout));
    let one = Database::connect(opts).await?;
    let r = if backend == DbBackend::Postgres {
        migrate_postgres(&one).await
    } else {
        migrate_sqlite(&one).await
    };
    let _ = one.close().await;
    r
}

/// Postgres: `Migrator::up` inside the session advisory lock [`MIGRATION_LOCK_KEY`] on `one`.
async fn migrate_postgres(one: &DatabaseConnection) -> StoreResult<()> {
    one.execute_unprepared(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
        .await?;
    let r = migration::Migrator::up(one, None).await;
    let _ = one
        .execute_unprepared(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
        .await;
    Ok(r?)
}

/// SQLite: `Migrator::up` inside one `BEGIN IMMEDIATE` transaction on `one`.
async fn migrate_sqlite(one: &DatabaseConnection) -> StoreResult<()> {
    let deadline = std::time::Instant::now() + MIGRATION_WAIT;
    loop {
        match one.execute_unprepared("BEGIN IMMEDIATE").await {
            Ok(_) => break,
            // busy after busy_timeout: another process is migrating (or writing); wait on
            Err(e) if std::time::Instant::now() < deadline && is_busy(&e) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    match migration::Migrator::up(one, None).await {
        Ok(()) => {
            one.execute_unprepared("COMMIT").await?;
            Ok(())
        }
        Err(e) => {
            let _ = one.execute_unprepared("ROLLBACK").await;
            Err(e.into())
        }
    }
}

/// SQLite's "database is locked" / "busy".
fn is_busy(e: &DbErr) -> bool {
    let s = e.to_string().to_lowercase();
    s.contains("locked") || s.contains("busy")
}

/// `sqlite://data/hearth.db?mode=rwc` → `Some("data")`.
fn sqlite_parent_dir(url: &str) -> Option<String> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next()?;
    let parent = std::path::Path::new(path).parent()?;
    let s = parent.to_string_lossy().to_string();
    (!s.is_empty()).then_some(s)
}

/// Map "no row inserted because of ON CONFLICT DO NOTHING" to `false`.
pub(crate) fn inserted<T>(r: Result<T, DbErr>) -> StoreResult<bool> {
    match r {
        Ok(_) => Ok(true),
        Err(DbErr::RecordNotInserted) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
