//! The routine engine: the sweep that claims due triggers and claimable runs, the event
//! listener, and the api / manual entry points. Runs themselves are executed by
//! [`super::runner`].
//!
//! Owns the runtime state that is not in the database: the executors in flight in this process
//! (for [`RoutineEngine::settle`]), the wake-up signal ([`RoutineEngine::kick`]) and the api
//! rate-limit windows. Everything durable (`next_fire_at`, runs, their leases and waits, step
//! runs, counters) is in the store: a run is claimed with one conditional update and a lease
//! (issue 9 contract), so two processes on one database execute each step once. The sweep is a
//! plain async method: the scheduler calls it every second and tests call
//! [`RoutineEngine::sweep`] with a manual clock.
//! Uses: services (store, clock, outbox, chat locks, events), agent, routines::{model, runner}.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{
    model::TriggerSpec,
    runner::{self, StartRun, Started},
    RoutineError,
};
use crate::{
    agent::Agent,
    events::HearthEvent,
    services::Services,
    store::{
        ChatRow, RoutineRow, RoutineStatus, RunRow, RunSource, RunStatus, StepRunRow, StepStatus,
        StoreResult, TriggerRow,
    },
};

/// Due triggers handled per sweep (the rest wait for the next tick, oldest first).
pub const SWEEP_BATCH: u64 = 500;
/// Claimable runs read per query.
pub const RUN_BATCH: u64 = 200;
/// Batches of claimable runs taken per sweep (at most 10,000 runs a tick).
pub const MAX_RUN_BATCHES: usize = 50;
/// Runs executing at once in one process; a process claims at most this many (the rest stay
/// claimable by other processes, and an executor that ends claims more). Bounds database
/// contention when thousands of waits end together (benches/runs.rs).
pub const MAX_EXECUTING: usize = 16;
/// A routine's old runs are pruned (to [`super::KEEP_RUNS`]) at every this many run ends.
pub const PRUNE_EVERY: u32 = 20;
/// How far ahead the run timer looks for the next wait to end (the sweep's period).
pub const TIMER_HORIZON: chrono::Duration = chrono::Duration::seconds(1);
/// Api calls allowed per routine per minute.
pub const API_CALLS_PER_MINUTE: usize = 60;

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Due triggers seen.
    pub due: usize,
    /// Slots this process claimed (and started a run for, or recorded as skipped).
    pub claimed: usize,
    /// Runs this process claimed and started executing (pending, woken or taken over).
    pub queued_started: usize,
}

/// The running routine engine (one per process).
pub struct RoutineEngine {
    svc: Services,
    agent: Agent,
    /// This process's id: the owner recorded on the runs it holds (the core's [`crate::core::Hearth::owner`]).
    owner: String,
    api_calls: Mutex<HashMap<i64, VecDeque<DateTime<Utc>>>>,
    /// Run ends per routine in this process (for [`RoutineEngine::prune_due`]).
    ends: Mutex<HashMap<i64, u32>>,
    in_flight: AtomicUsize,
    /// The last claim stopped at the free slots or a full batch: more runs may be claimable.
    backlog: AtomicBool,
    /// An executor is claiming more runs ([`RoutineEngine::refill`]).
    refilling: AtomicBool,
    /// The run timer task is armed ([`RoutineEngine::arm_timer`]).
    timer: AtomicBool,
    /// An arm found the timer task armed: the task looks once more before it ends (else a wait
    /// ending right after the task decided to end would wait for the next tick).
    rearm: AtomicBool,
    idle: Notify,
    wake: Notify,
    slots: Arc<tokio::sync::Semaphore>,
}

/// Lowers the in-flight count when an executor ends.
struct FlightGuard(Arc<RoutineEngine>);

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl RoutineEngine {
    /// An engine over the same services (and so the same chat locks) as the core, with a fresh
    /// random process id (tests; the binary uses [`RoutineEngine::with_owner`]).
    pub fn new(svc: Services, agent: Agent) -> Arc<Self> {
        let owner = format!("{}-{:08x}", std::process::id(), rand::random::<u32>());
        Self::with_owner(svc, agent, owner)
    }

    /// An engine holding runs as process `owner` (the core's id, so the core's heartbeat renews
    /// its run leases).
    pub fn with_owner(svc: Services, agent: Agent, owner: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            svc,
            agent,
            owner: owner.into(),
            api_calls: Default::default(),
            ends: Default::default(),
            in_flight: AtomicUsize::new(0),
            backlog: AtomicBool::new(false),
            refilling: AtomicBool::new(false),
            timer: AtomicBool::new(false),
            rearm: AtomicBool::new(false),
            idle: Notify::new(),
            wake: Notify::new(),
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_EXECUTING)),
        })
    }

    /// The services the engine runs with.
    pub fn services(&self) -> &Services {
        &self.svc
    }

    /// The agent that runs prompt steps and tool steps.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// This process's id (owner of the runs it holds).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Start-up: runs left `running` without a lease (from before runs were durable) are
    /// recorded as failed. Runs with a lease are taken over when it lapses. Returns how many.
    pub async fn start_up(&self) -> StoreResult<u64> {
        let n = self
            .svc
            .store
            .interrupt_stale_runs(self.svc.clock.now())
            .await?;
        if n > 0 {
            tracing::warn!(count = n, "routine runs interrupted by the last stop");
        }
        Ok(n)
    }

    /// Wake the sweep now (a run was started or woken); the listener task sweeps at once.
    pub fn kick(&self) {
        self.wake.notify_one();
    }

    /// One tick: claim every due trigger (conditional update of `next_fire_at`, so a slot fires
    /// once across processes) and start its run, then claim claimable runs (pending, woken,
    /// lease lapsed) and execute them in the background; [`RoutineEngine::settle`] waits for them.
    ///
    /// Errors: storage failures (the next tick retries; nothing is lost: unclaimed slots stay due,
    /// unclaimed runs stay claimable).
    pub async fn sweep(self: &Arc<Self>, now: DateTime<Utc>) -> StoreResult<SweepReport> {
        let mut report = SweepReport::default();
        let due = self.svc.store.due_triggers(now, SWEEP_BATCH).await?;
        report.due = due.len();
        if !due.is_empty() {
            let mut ids: Vec<i64> = due.iter().map(|t| t.routine_id).collect();
            ids.sort_unstable();
            ids.dedup();
            let routines: HashMap<i64, RoutineRow> = self
                .svc
                .store
                .routines_by_ids(&ids)
                .await?
                .into_iter()
                .map(|r| (r.id, r))
                .collect();
            for t in due {
                if self.fire_due(&t, routines.get(&t.routine_id), now).await? {
                    report.claimed += 1;
                }
            }
        }
        report.queued_started = self.claim_runs(now).await?;
        self.arm_timer(now).await?;
        self.svc.progress.prune();
        Ok(report)
    }

    /// When the clock is the wall clock and a wait ends before the next tick, claim it at its
    /// end instead of at the tick: one background task per process sleeps until the next
    /// `wake_at` within [`TIMER_HORIZON`], claims, and looks again (resume lateness stays well
    /// under the tick, benches/runs.rs). A manual clock (tests) never arms it.
    async fn arm_timer(self: &Arc<Self>, now: DateTime<Utc>) -> StoreResult<()> {
        let wall = (now - Utc::now()).num_milliseconds().abs() < 2_000;
        if !wall || self.backlog.load(Ordering::SeqCst) {
            return Ok(());
        }
        if self.timer.load(Ordering::SeqCst) {
            self.rearm.store(true, Ordering::SeqCst);
            return Ok(());
        }
        let Some(at) = self.svc.store.next_wake(now, now + TIMER_HORIZON).await? else {
            return Ok(());
        };
        if self.timer.swap(true, Ordering::SeqCst) {
            self.rearm.store(true, Ordering::SeqCst);
            return Ok(()); // armed meanwhile
        }
        let me = self.clone();
        tokio::spawn(async move {
            let mut at = at;
            loop {
                let delay = (at - Utc::now() + chrono::Duration::milliseconds(2))
                    .to_std()
                    .unwrap_or_default();
                tokio::time::sleep(delay).await;
                let now = me.svc.clock.now();
                let next = match me.claim_runs(now).await {
                    Ok(_) if !me.backlog.load(Ordering::SeqCst) => {
                        me.svc.store.next_wake(now, now + TIMER_HORIZON).await
                    }
                    Ok(_) => Ok(None), // busy: finishing executors claim more
                    Err(e) => Err(e),
                };
                match next {
                    Ok(Some(n)) => {
                        at = n;
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "run timer failed; the next tick claims");
                        break;
                    }
                }
                me.timer.store(false, Ordering::SeqCst);
                // an arm that came meanwhile found this task still armed: look once more
                if !me.rearm.swap(false, Ordering::SeqCst) || me.backlog.load(Ordering::SeqCst) {
                    return;
                }
                let now = me.svc.clock.now();
                match me.svc.store.next_wake(now, now + TIMER_HORIZON).await {
                    Ok(Some(n)) if !me.timer.swap(true, Ordering::SeqCst) => at = n,
                    Ok(_) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "run timer failed; the next tick claims");
                        return;
                    }
                }
            }
            me.timer.store(false, Ordering::SeqCst);
        });
        Ok(())
    }

    /// Claim and fire one due trigger. Returns true when this process claimed it.
    async fn fire_due(
        self: &Arc<Self>,
        t: &TriggerRow,
        routine: Option<&RoutineRow>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let Some(old) = t.next_fire_at else {
            return Ok(false);
        };
        let spec = TriggerSpec::from_stored(t.kind, &t.spec, &t.zone);
        let (routine, spec) = match (routine, spec) {
            (Some(r), Ok(s)) if r.status == RoutineStatus::Active => (r, s),
            (_, Err(e)) => {
                tracing::warn!(trigger = t.id, error = %e, "retiring an unreadable trigger");
                self.svc.store.claim_trigger(t.id, old, None).await?;
                return Ok(false);
            }
            _ => {
                // ended or deleted routine: retire the trigger
                self.svc.store.claim_trigger(t.id, old, None).await?;
                return Ok(false);
            }
        };
        let (next, catch_up) = spec.advance(old, now);
        if !self.svc.store.claim_trigger(t.id, old, next).await? {
            return Ok(false); // another process owns this slot
        }
        let started = runner::start_run(
            &self.svc,
            StartRun {
                routine_id: routine.id,
                source: t.kind.into(),
                trigger_id: Some(t.id),
                started_by: routine.owner_id,
                inputs: Default::default(),
                scheduled_for: Some(old),
                catch_up,
                parent_run_id: None,
                depth: 0,
            },
        )
        .await;
        match started {
            Ok(_) => {}
            Err(RoutineError::Store(e)) => return Err(e),
            Err(e) => {
                tracing::warn!(routine = routine.id, error = %e, "fire not started");
            }
        }
        Ok(true)
    }

    /// Claim claimable runs and execute them in the background. Per batch of [`RUN_BATCH`]
    /// claimable rows: one conditional update per status seen (claimed rows come back with
    /// `RETURNING`, so a run is claimed by exactly one process), the lapsed timer waits finished
    /// together ([`crate::store::Store::finish_timer_waits`]), and the batch's routines, chats
    /// and (for runs entering afresh) step runs read once ([`runner::Prefetched`]). Returns how
    /// many runs this process claimed.
    pub async fn claim_runs(self: &Arc<Self>, now: DateTime<Utc>) -> StoreResult<usize> {
        let lease = now
            + chrono::Duration::from_std(self.svc.config.routines.step_lease)
                .unwrap_or(chrono::Duration::seconds(30));
        let cfg = &self.svc.config.routines;
        let store = &self.svc.store;
        let mut n = 0;
        // batch after batch until a short one (claimed rows are no longer claimable), at most
        // the free executor slots: what this process cannot start now stays claimable by
        // others, and a finishing executor claims more ([`RoutineEngine::refill`])
        for _ in 0..MAX_RUN_BATCHES {
            let free = MAX_EXECUTING.saturating_sub(self.in_flight.load(Ordering::SeqCst)) as u64;
            if free == 0 {
                self.backlog.store(true, Ordering::SeqCst);
                break;
            }
            let limit = free.min(RUN_BATCH);
            let rows = store.claimable_runs(now, limit).await?;
            let full = rows.len() as u64 == limit;
            self.backlog.store(full, Ordering::SeqCst);
            let mut claimed: Vec<(RunRow, RunStatus)> = Vec::with_capacity(rows.len());
            // step runs of runs past a lapsed timer, as the claim left them
            let mut known: HashMap<i64, Vec<StepRunRow>> = HashMap::new();
            for seen in [RunStatus::Pending, RunStatus::Waiting, RunStatus::Running] {
                let ids: Vec<i64> = rows
                    .iter()
                    .filter(|r| r.status == seen)
                    .map(|r| r.id)
                    .collect();
                let got = store
                    .claim_runs(&ids, seen, &self.owner, now, lease)
                    .await?;
                if seen != RunStatus::Waiting {
                    claimed.extend(got.into_iter().map(|r| (r, seen)));
                    continue;
                }
                // lapsed timers move on together; the run then starts its next step afresh
                // (runs near a cost question go the long way, through the executor's checks)
                let cheap: Vec<RunRow> = got
                    .iter()
                    .filter(|r| {
                        r.cost_usd < cfg.cost_limit && (r.cost_warned || r.cost_usd < cfg.cost_warn)
                    })
                    .cloned()
                    .collect();
                let mut moved: HashMap<i64, (RunRow, Vec<StepRunRow>)> = store
                    .finish_timer_waits(&cheap, &self.owner, now, lease, |r| {
                        runner::resumed_step_run(r, now)
                    })
                    .await?
                    .into_iter()
                    .map(|(r, steps)| (r.id, (r, steps)))
                    .collect();
                for r in got {
                    match moved.remove(&r.id) {
                        Some((m, steps)) => {
                            known.insert(m.id, steps);
                            claimed.push((m, RunStatus::Pending));
                        }
                        None => claimed.push((r, RunStatus::Waiting)),
                    }
                }
            }
            claimed.sort_by_key(|(r, _)| r.id);
            let mut ids: Vec<i64> = claimed.iter().map(|(r, _)| r.routine_id).collect();
            ids.sort_unstable();
            ids.dedup();
            let routines: HashMap<i64, RoutineRow> = if ids.is_empty() {
                HashMap::new()
            } else {
                store
                    .routines_by_ids(&ids)
                    .await?
                    .into_iter()
                    .map(|r| (r.id, r))
                    .collect()
            };
            let pre = self.prefetch(&claimed, &routines, known).await?;
            for ((row, seen), pre) in claimed.into_iter().zip(pre) {
                let routine = routines.get(&row.routine_id).cloned();
                self.spawn_run(row, seen, routine, pre);
                n += 1;
            }
            if !full {
                break;
            }
        }
        Ok(n)
    }

    /// For a claim batch (in its order): the chats, and the step runs of the runs entering
    /// afresh (pending, or past a lapsed timer), two queries for the batch
    /// ([`runner::Prefetched`]).
    async fn prefetch(
        &self,
        claimed: &[(RunRow, RunStatus)],
        routines: &HashMap<i64, RoutineRow>,
        mut known: HashMap<i64, Vec<StepRunRow>>,
    ) -> StoreResult<Vec<runner::Prefetched>> {
        let store = &self.svc.store;
        let chat_of = |r: &RunRow| {
            r.chat_id
                .or_else(|| routines.get(&r.routine_id).map(|x| x.chat_id))
        };
        let mut chat_ids: Vec<i64> = claimed.iter().filter_map(|(r, _)| chat_of(r)).collect();
        chat_ids.sort_unstable();
        chat_ids.dedup();
        let chats: HashMap<i64, ChatRow> = store
            .chats_by_ids(&chat_ids)
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect();
        let fresh: Vec<i64> = claimed
            .iter()
            .filter(|(r, seen)| *seen == RunStatus::Pending && !known.contains_key(&r.id))
            .map(|(r, _)| r.id)
            .collect();
        let mut steps: HashMap<i64, Vec<StepRunRow>> =
            fresh.iter().map(|id| (*id, Vec::new())).collect();
        if !fresh.is_empty() {
            for s in store.step_runs_of_runs(&fresh).await? {
                if let Some(v) = steps.get_mut(&s.run_id) {
                    v.push(s);
                }
            }
        }
        Ok(claimed
            .iter()
            .map(|(r, _)| {
                let claimed_steps = known.remove(&r.id);
                // the step run the timer claim inserted for the step the run resumes at
                let prepared = claimed_steps.as_ref().and_then(|v| {
                    v.iter()
                        .rfind(|s| s.position == r.current_step && s.status == StepStatus::Running)
                        .map(|s| (s.position.max(0) as usize, s.id))
                });
                let steps = claimed_steps.or_else(|| steps.remove(&r.id));
                runner::Prefetched {
                    steps,
                    chat: chat_of(r).map(|id| chats.get(&id).cloned()),
                    prepared,
                }
            })
            .collect())
    }

    fn spawn_run(
        self: &Arc<Self>,
        run: RunRow,
        seen: RunStatus,
        routine: Option<RoutineRow>,
        pre: runner::Prefetched,
    ) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = FlightGuard(self.clone());
        let me = self.clone();
        tokio::spawn(async move {
            let run_id = run.id;
            let Ok(_slot) = me.slots.clone().acquire_owned().await else {
                return;
            };
            if let Err(e) = runner::execute(&me, run, seen, routine, pre).await {
                tracing::error!(run = run_id, error = %e, "routine run stopped on storage");
            }
            drop(_slot);
            me.refill().await;
            drop(guard);
        });
    }

    /// After an executor ends: when the last claim left claimable runs behind and half the
    /// slots are free, claim more at once (one executor at a time) instead of at the next tick.
    async fn refill(self: &Arc<Self>) {
        if !self.backlog.load(Ordering::SeqCst)
            || self.in_flight.load(Ordering::SeqCst) > MAX_EXECUTING / 2
            || self.refilling.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let now = self.svc.clock.now();
        let claimed = match self.claim_runs(now).await {
            Ok(_) => self.arm_timer(now).await,
            Err(e) => Err(e),
        };
        if let Err(e) = claimed {
            tracing::warn!(error = %e, "claiming more runs failed; the next tick retries");
        }
        self.refilling.store(false, Ordering::SeqCst);
    }

    /// Count a run end of `routine_id`; true when the routine's old runs should be pruned now:
    /// at every end while this run is the only one executing in this process, and at every
    /// [`PRUNE_EVERY`]th end under load (pruning is two statements; history then briefly holds
    /// up to [`PRUNE_EVERY`] runs more than [`super::KEEP_RUNS`]).
    pub(super) fn prune_due(&self, routine_id: i64) -> bool {
        let mut map = self.ends.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(routine_id).or_default();
        *n += 1;
        self.in_flight.load(Ordering::SeqCst) <= 1 || (*n).is_multiple_of(PRUNE_EVERY)
    }

    /// Start a run for an event or api call (or by hand) and claim it at once.
    ///
    /// Errors: see [`runner::start_run`].
    pub async fn queue(
        self: &Arc<Self>,
        routine_id: i64,
        trigger_id: Option<i64>,
        source: RunSource,
        inputs: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Started, RoutineError> {
        let Some(r) = self.svc.store.routine(routine_id).await? else {
            return Err(RoutineError::NotFound(format!("#{routine_id}")));
        };
        let started = runner::start_run(
            &self.svc,
            StartRun {
                routine_id,
                source,
                trigger_id,
                started_by: r.owner_id,
                inputs,
                scheduled_for: None,
                catch_up: false,
                parent_run_id: None,
                depth: 0,
            },
        )
        .await?;
        self.claim_runs(self.svc.clock.now()).await?;
        Ok(started)
    }

    /// Fire the event triggers matching `ev` in its chat (the event's fields are the initial
    /// inputs) and complete the event waits of runs it matches. Returns how many runs were
    /// started.
    pub async fn on_event(self: &Arc<Self>, ev: &HearthEvent) -> StoreResult<usize> {
        let mut n = 0;
        let inputs = match serde_json::to_value(ev) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => Default::default(),
        };
        for (t, r) in self
            .svc
            .store
            .event_triggers(ev.chat_id(), ev.kind())
            .await?
        {
            let Ok(spec) = TriggerSpec::from_stored(t.kind, &t.spec, &t.zone) else {
                continue;
            };
            // a routine never reacts to its own runs' ends (it would start itself forever)
            let own = matches!(ev, HearthEvent::RunCompleted { routine, .. }
                | HearthEvent::RunFailed { routine, .. } if *routine == r.name);
            if spec.matches_event(ev) && !own {
                match self
                    .queue(r.id, Some(t.id), RunSource::Event, inputs.clone())
                    .await
                {
                    Ok(_) => n += 1,
                    Err(RoutineError::Store(e)) => return Err(e),
                    Err(e) => tracing::warn!(routine = r.id, error = %e, "event run not started"),
                }
            }
        }
        if runner::on_event_wait(&self.svc, ev).await? > 0 {
            self.claim_runs(self.svc.clock.now()).await?;
        }
        Ok(n)
    }

    /// Listen to the event bus until `stop`; each event fires matching routines.
    /// Also sweeps at once whenever [`RoutineEngine::kick`] is called.
    pub fn listen(self: &Arc<Self>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let kicked = self.clone();
        let stop2 = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop2.cancelled() => return,
                    _ = kicked.wake.notified() => {
                        let now = kicked.svc.clock.now();
                        if let Err(e) = kicked.sweep(now).await {
                            tracing::warn!(error = %e, "kicked sweep failed; the next tick retries");
                        }
                    }
                    _ = kicked.svc.run_started.notified() => {
                        let now = kicked.svc.clock.now();
                        if let Err(e) = kicked.sweep(now).await {
                            tracing::warn!(error = %e, "kicked sweep failed; the next tick retries");
                        }
                    }
                }
            }
        });
        let me = self.clone();
        let mut rx = self.svc.events.subscribe();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = stop.cancelled() => return,
                    ev = rx.recv() => ev,
                };
                match ev {
                    Ok(ev) => {
                        if let Err(e) = me.on_event(&ev).await {
                            tracing::error!(kind = ev.kind(), error = %e, "event routines not fired");
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "routine event listener lagged; events lost");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    }

    /// Count an api call for `routine_id` at `now`; false when over
    /// [`API_CALLS_PER_MINUTE`] in the last 60 s (the call is then not counted).
    pub fn api_call_allowed(&self, routine_id: i64, now: DateTime<Utc>) -> bool {
        let mut map = self.api_calls.lock().unwrap_or_else(|p| p.into_inner());
        let w = map.entry(routine_id).or_default();
        while w
            .front()
            .is_some_and(|t| now - *t >= chrono::Duration::seconds(60))
        {
            w.pop_front();
        }
        if w.len() >= API_CALLS_PER_MINUTE {
            return false;
        }
        w.push_back(now);
        true
    }

    /// Wait until no run is in flight in this process (tests, benchmarks, shutdown).
    pub async fn settle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Wait for in-flight runs for at most `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        if tokio::time::timeout(grace, self.settle()).await.is_err() {
            tracing::warn!("routine runs still going at shutdown; another process (or the next start) takes them over when their lease lapses");
        }
    }
}
