//! The scheduler's jobs and how each behaves with several processes ("replicas") on one database
//! (issue 12, item 4). [`super::start_scheduler`] registers every [`Job`] on every process; each
//! tick calls [`tick`], which runs the job's body everywhere or only in the process that takes
//! the job's named lease `job:<name>` ([`leased`]).
//!
//! | job | period | across replicas | why (the code path down to the store) |
//! | --- | --- | --- | --- |
//! | `routine-sweep` | 1 s | every replica, idempotent by construction | a slot fires only in the process whose `claim_trigger` (conditional update of `next_fire_at` from the seen value) matches; a run is executed only by the process whose `claim_runs` (conditional update per seen status, `RETURNING`) got it, under a step lease its heartbeat renews; lapsed timer waits move with `finish_timer_waits` (conditional). Every message a run sends is sent by its one holder. Runs on all replicas so runs spread over them. |
//! | `routine-conditions` | minute | one replica (lease) | the crossing is claimed by `cross_condition` (conditional update of `condition_met`), but whether a condition holds is computed from the evaluating process's clock and reads: an evaluator a few ms behind another re-arms a crossing the other just fired (true → false) and the next minute fires it again. One evaluator per minute keeps crossings in one order. |
//! | `inbound-cleanup` | hourly | one replica (lease) | a delete of finished rows older than 7 days, idempotent; one bulk delete per hour is enough. |
//! | `sqlite-checkpoint` | 30 s | every replica | SQLite only (one host): a PASSIVE checkpoint never blocks and repeats nothing; a no-op on Postgres. |
//! | `workflow-expiry` | minute | every replica, idempotent by construction | `expire_workflows` moves a request `pending → expired` with a conditional update inside the transaction that applies its target change; the notice, the message edit, the hook and the event follow only for the rows this process moved. Also run once at each process's start-up. |
//! | `chore-reminders` | minute | one replica (lease), idempotent by construction | every reminder, summary and leaderboard is claimed by inserting its unique key into `chore_reminders` before it is sent (insert-or-skip), and `ChoreOverdue` is published only by the claimer; leased because the job reads every open chore and every group each minute, which N replicas would only repeat. |
//!
//! A leased job's body runs only in the process whose `acquire_lease("job:<name>", owner, now,
//! now + hold)` succeeds (one conditional upsert: free, lapsed or already ours), with `hold` =
//! half the job's period and at least `cluster.lease`: every replica ticks at the same
//! wall-clock second, so one of them takes the lease and the others find it held; by the next
//! period it lapsed and whoever ticks first takes it (a dead holder is replaced at the next tick
//! after its lease lapsed). While the body runs the lease is renewed every third of
//! `cluster.lease`, so a long body is never run twice at once; it is not released at the end
//! (a replica ticking a moment later must not run the same period again).
//! Uses: the core (services, owner), the routine engine, routines::conditions, chores::reminders,
//! workflow expiry, store.

use std::{future::Future, sync::Arc, time::Duration};

use crate::{core::Hearth, routines::RoutineEngine};

/// One scheduler job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Job {
    /// Due triggers and claimable runs (every second).
    RoutineSweep,
    /// Condition triggers (each minute at :20).
    RoutineConditions,
    /// Purge of finished inbound rows and replies older than 7 days (hourly at :17).
    InboundCleanup,
    /// SQLite WAL checkpoint (every 30 s).
    SqliteCheckpoint,
    /// Approval expiry (each minute at :00).
    WorkflowExpiry,
    /// Chore reminders, daily summary, weekly leaderboard (each minute at :30).
    ChoreReminders,
}

impl Job {
    /// Every job, in registration order.
    pub const ALL: [Job; 6] = [
        Job::RoutineSweep,
        Job::RoutineConditions,
        Job::InboundCleanup,
        Job::SqliteCheckpoint,
        Job::WorkflowExpiry,
        Job::ChoreReminders,
    ];

    /// The job's name (logs; the lease is `job:<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Job::RoutineSweep => "routine-sweep",
            Job::RoutineConditions => "routine-conditions",
            Job::InboundCleanup => "inbound-cleanup",
            Job::SqliteCheckpoint => "sqlite-checkpoint",
            Job::WorkflowExpiry => "workflow-expiry",
            Job::ChoreReminders => "chore-reminders",
        }
    }

    /// When it ticks: tokio-cron-scheduler's 6-field syntax (with seconds), UTC.
    pub fn cron(self) -> &'static str {
        match self {
            Job::RoutineSweep => "* * * * * *",
            Job::RoutineConditions => "20 * * * * *",
            Job::InboundCleanup => "0 17 * * * *",
            Job::SqliteCheckpoint => "*/30 * * * * *",
            Job::WorkflowExpiry => "0 * * * * *",
            Job::ChoreReminders => "30 * * * * *",
        }
    }

    /// Time between two ticks.
    pub fn period(self) -> Duration {
        Duration::from_secs(match self {
            Job::RoutineSweep => 1,
            Job::SqliteCheckpoint => 30,
            Job::InboundCleanup => 3600,
            Job::RoutineConditions | Job::WorkflowExpiry | Job::ChoreReminders => 60,
        })
    }

    /// True when one replica at a time runs it (under the lease `job:<name>`); false when every
    /// replica runs it (idempotent by construction). See the module table.
    pub fn leased(self) -> bool {
        matches!(
            self,
            Job::RoutineConditions | Job::InboundCleanup | Job::ChoreReminders
        )
    }

    /// The lease name, `job:<name>`.
    pub fn lease_name(self) -> String {
        format!("job:{}", self.name())
    }
}

/// One tick of `job` in this process: its body, behind the job's lease when [`Job::leased`].
/// Returns true when this process ran the body (false: another process holds the lease, or the
/// lease could not be read). Failures of the body are logged; the next tick retries.
pub async fn tick(job: Job, hearth: &Arc<Hearth>, routines: &Arc<RoutineEngine>) -> bool {
    if job.leased() {
        leased(hearth, job, body(job, hearth, routines))
            .await
            .is_some()
    } else {
        body(job, hearth, routines).await;
        true
    }
}

/// The job's work, logged on failure.
async fn body(job: Job, hearth: &Arc<Hearth>, routines: &Arc<RoutineEngine>) {
    let svc = &hearth.svc;
    let now = svc.clock.now();
    match job {
        Job::RoutineSweep => {
            if let Err(e) = routines.sweep(now).await {
                tracing::warn!(error = %e, "routine sweep failed; retrying next tick");
            }
        }
        Job::RoutineConditions => {
            // condition triggers: each minute, a run per crossing (issue 9)
            if let Err(e) = crate::routines::conditions::evaluate(svc, now).await {
                tracing::warn!(error = %e, "condition triggers not evaluated; retrying next minute");
            }
        }
        Job::InboundCleanup => {
            // unfinished messages are recovery's (leases); this only purges finished ones
            if let Err(e) = svc
                .store
                .purge_inbound(now - chrono::Duration::days(7))
                .await
            {
                tracing::warn!(error = %e, "inbound cleanup failed");
            }
        }
        Job::SqliteCheckpoint => {
            if let Err(e) = svc.store.checkpoint().await {
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
        }
        Job::WorkflowExpiry => super::sweep_expired(hearth).await,
        Job::ChoreReminders => {
            if let Err(e) = crate::chores::reminders::run(svc, now).await {
                tracing::warn!(error = %e, "chore reminders failed; retrying next minute");
            }
        }
    }
}

/// How long a tick of `job` holds its lease: half its period, at least `cluster.lease`.
pub fn hold(job: Job, cluster_lease: Duration) -> Duration {
    (job.period() / 2).max(cluster_lease)
}

/// Run `work` only when this process takes (or still holds) the lease `job:<name>` for
/// [`hold`], renewing it every third of `cluster.lease` while `work` runs. Returns `None`
/// without running it when another process holds the lease or the store failed.
pub async fn leased<F: Future>(hearth: &Hearth, job: Job, work: F) -> Option<F::Output> {
    let svc = &hearth.svc;
    let name = job.lease_name();
    let held = chrono::Duration::from_std(hold(job, svc.config.cluster.lease))
        .unwrap_or(chrono::Duration::seconds(30));
    let now = svc.clock.now();
    match svc
        .store
        .acquire_lease(&name, hearth.owner(), now, now + held)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(job = job.name(), "held by another process; tick skipped");
            return None;
        }
        Err(e) => {
            tracing::warn!(job = job.name(), error = %e, "job lease not taken; tick skipped");
            return None;
        }
    }
    let every = (svc.config.cluster.lease / 3).max(Duration::from_millis(10));
    let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return Some(out),
            _ = renew.tick() => {
                let now = svc.clock.now();
                match svc.store.acquire_lease(&name, hearth.owner(), now, now + held).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(job = job.name(), "job lease lost while running; finishing this tick"),
                    Err(e) => tracing::warn!(job = job.name(), error = %e, "job lease not renewed"),
                }
            }
        }
    }
}
