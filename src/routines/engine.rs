//! The routine engine: the sweep that claims due triggers, the event listener, the queue of
//! manual and api runs, and the execution of one run (a normal agent turn in the owning chat).
//!
//! Owns the runtime state that is not in the database: which routines are running in this
//! process (one run at a time per routine) and the api rate-limit windows. Everything durable
//! (`next_fire_at`, run records, counters) is in the store. The sweep is a plain async method:
//! the scheduler calls it every second and tests call [`RoutineEngine::sweep`] with a manual clock.
//! Uses: services (store, clock, outbox, chat locks, events), agent, routines::model, format.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{
    model::{render_prompt, PromptVars, TriggerSpec},
    run_cost, zone_of, KEEP_RUNS, QUIET_TOKEN,
};
use crate::{
    agent::{Agent, Scope, TurnRequest},
    events::HearthEvent,
    format,
    services::Services,
    store::{
        NewRun, RoutineCounters, RoutineRow, RoutineStatus, RunEnd, RunSource, RunStatus,
        StoreResult, TriggerKind, TriggerRow,
    },
    types::{ChatKind, Outbound},
};

/// Due triggers handled per sweep (the rest wait for the next tick, oldest first).
pub const SWEEP_BATCH: u64 = 500;
/// Api calls allowed per routine per minute.
pub const API_CALLS_PER_MINUTE: usize = 60;
/// Longest reply snippet kept in a run record, in characters.
const SNIPPET_CHARS: usize = 200;

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Due triggers seen.
    pub due: usize,
    /// Slots this process claimed (and fired or recorded as skipped).
    pub claimed: usize,
    /// Queued manual / api runs started.
    pub queued_started: usize,
}

/// The running routine engine (one per process).
pub struct RoutineEngine {
    svc: Services,
    agent: Agent,
    running: Mutex<HashSet<i64>>,
    api_calls: Mutex<HashMap<i64, VecDeque<DateTime<Utc>>>>,
    in_flight: AtomicUsize,
    idle: Notify,
}

/// Releases a routine's running flag (and the in-flight count) when dropped.
struct RunGuard {
    engine: Arc<RoutineEngine>,
    routine_id: i64,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.engine
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.routine_id);
        if self.engine.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.engine.idle.notify_waiters();
        }
    }
}

/// What a run needs besides its record.
struct RunInput {
    run_id: i64,
    routine_id: i64,
    source: RunSource,
    catch_up: bool,
    scheduled_for: Option<DateTime<Utc>>,
    trigger: Option<String>,
    input: Option<String>,
}

impl RoutineEngine {
    /// An engine over the same services (and so the same chat locks) as the core.
    pub fn new(svc: Services, agent: Agent) -> Arc<Self> {
        Arc::new(Self {
            svc,
            agent,
            running: Default::default(),
            api_calls: Default::default(),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
        })
    }

    /// The services the engine runs with.
    pub fn services(&self) -> &Services {
        &self.svc
    }

    /// Start-up: runs left "running" by a previous process (older than twice the turn timeout)
    /// are recorded as errors. Returns how many.
    pub async fn start_up(&self) -> StoreResult<u64> {
        let cutoff = self.svc.clock.now()
            - chrono::Duration::from_std(self.svc.config.llm.timeout * 2).unwrap_or_default();
        let n = self.svc.store.interrupt_stale_runs(cutoff).await?;
        if n > 0 {
            tracing::warn!(count = n, "routine runs interrupted by the last stop");
        }
        Ok(n)
    }

    /// Mark the routine running in this process; `None` when it already is.
    fn try_start(self: &Arc<Self>, routine_id: i64) -> Option<RunGuard> {
        let fresh = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(routine_id);
        if !fresh {
            return None;
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Some(RunGuard {
            engine: self.clone(),
            routine_id,
        })
    }

    /// One tick: claim every due trigger (conditional update of `next_fire_at`, so a slot fires
    /// once across processes), start its run, then start queued manual / api runs. Runs proceed
    /// in the background; [`RoutineEngine::settle`] waits for them.
    ///
    /// Errors: storage failures (the next tick retries; nothing is lost: unclaimed slots stay due).
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
        report.queued_started = self.start_queued(now).await?;
        Ok(report)
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
        let zone = zone_of(routine);
        let run = NewRun {
            routine_id: routine.id,
            trigger_id: Some(t.id),
            source: t.kind.into(),
            catch_up,
            status: RunStatus::Running,
            reason: None,
            input: None,
            scheduled_for: Some(old),
            started_at: now,
        };
        let Some(guard) = self.try_start(routine.id) else {
            let id = self
                .svc
                .store
                .insert_run(NewRun {
                    status: RunStatus::Skipped,
                    reason: Some("still running".into()),
                    ..run
                })
                .await?;
            tracing::info!(
                routine = routine.id,
                run = id,
                "fire skipped: previous run still going"
            );
            return Ok(true);
        };
        let run_id = self.svc.store.insert_run(run).await?;
        let input = RunInput {
            run_id,
            routine_id: routine.id,
            source: t.kind.into(),
            catch_up,
            scheduled_for: Some(old),
            trigger: Some(spec.describe(zone)),
            input: None,
        };
        self.spawn_run(input, guard);
        Ok(true)
    }

    /// Start queued runs whose routine is free. Returns how many started.
    pub async fn start_queued(self: &Arc<Self>, now: DateTime<Utc>) -> StoreResult<usize> {
        let mut n = 0;
        for q in self.svc.store.queued_runs(100).await? {
            let Some(guard) = self.try_start(q.routine_id) else {
                continue; // wait for the current run to finish
            };
            if !self.svc.store.claim_queued_run(q.id, now).await? {
                continue; // another process took it (guard drops)
            }
            let trigger = match q.trigger_id {
                Some(tid) => self
                    .svc
                    .store
                    .routine_triggers(q.routine_id)
                    .await?
                    .into_iter()
                    .find(|t| t.id == tid)
                    .map(|t| super::describe_trigger(&t, chrono_tz::Tz::UTC)),
                None => None,
            };
            self.spawn_run(
                RunInput {
                    run_id: q.id,
                    routine_id: q.routine_id,
                    source: q.source,
                    catch_up: q.catch_up,
                    scheduled_for: q.scheduled_for,
                    trigger,
                    input: q.input.clone(),
                },
                guard,
            );
            n += 1;
        }
        Ok(n)
    }

    fn spawn_run(self: &Arc<Self>, input: RunInput, guard: RunGuard) {
        let me = self.clone();
        tokio::spawn(async move {
            let run_id = input.run_id;
            if let Err(e) = me.execute(input).await {
                tracing::error!(run = run_id, error = %e, "routine run failed on storage");
            }
            drop(guard);
        });
    }

    /// Queue a run for an event or api call and start it when the routine is free.
    /// Returns the run id.
    pub async fn queue(
        self: &Arc<Self>,
        routine_id: i64,
        trigger_id: Option<i64>,
        source: RunSource,
        input: Option<String>,
    ) -> StoreResult<i64> {
        let now = self.svc.clock.now();
        let id = self
            .svc
            .store
            .insert_run(NewRun {
                routine_id,
                trigger_id,
                source,
                catch_up: false,
                status: RunStatus::Pending,
                reason: None,
                input,
                scheduled_for: None,
                started_at: now,
            })
            .await?;
        self.start_queued(now).await?;
        Ok(id)
    }

    /// Fire the event triggers matching `ev` in its chat. Returns how many runs were queued.
    pub async fn on_event(self: &Arc<Self>, ev: &HearthEvent) -> StoreResult<usize> {
        let mut n = 0;
        let json = serde_json::to_string(ev).unwrap_or_default();
        for (t, r) in self
            .svc
            .store
            .event_triggers(ev.chat_id(), ev.kind())
            .await?
        {
            let Ok(spec) = TriggerSpec::from_stored(t.kind, &t.spec, &t.zone) else {
                continue;
            };
            if spec.matches_event(ev) {
                self.queue(r.id, Some(t.id), RunSource::Event, Some(json.clone()))
                    .await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Listen to the event bus until `stop`; each event fires matching routines.
    pub fn listen(self: &Arc<Self>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
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
            tracing::warn!("routine runs still going at shutdown; they are recorded as interrupted at the next start");
        }
    }

    /// Execute one claimed run: checks (paused, daily cap), the turn under the chat lock,
    /// delivery, counters, ending, the run record and pruning.
    async fn execute(&self, inp: RunInput) -> StoreResult<()> {
        let svc = &self.svc;
        let started = svc.clock.now();
        let t0 = Instant::now();
        let Some(r) = svc.store.routine(inp.routine_id).await? else {
            return Ok(()); // deleted meanwhile (its runs went with it)
        };
        let manual = inp.source == RunSource::Manual;
        let zone = zone_of(&r);
        let local = started.with_timezone(&zone);
        let today = local.format("%Y-%m-%d").to_string();
        let runs_today = if r.runs_day == today { r.runs_today } else { 0 };
        let end = |status: RunStatus, reason: Option<String>| RunEnd {
            status,
            reason,
            started_at: started,
            duration_ms: t0.elapsed().as_millis() as i64,
            prompt_tokens: 0,
            completion_tokens: 0,
            cost_usd: 0.0,
            output: None,
        };
        if !manual && r.status != RoutineStatus::Active {
            return svc
                .store
                .finish_run(inp.run_id, end(RunStatus::Skipped, Some("ended".into())))
                .await;
        }
        if !manual && r.paused {
            return svc
                .store
                .finish_run(inp.run_id, end(RunStatus::Skipped, Some("paused".into())))
                .await;
        }
        if !manual && r.max_runs_per_day.is_some_and(|cap| runs_today >= cap) {
            return svc
                .store
                .finish_run(
                    inp.run_id,
                    end(RunStatus::Skipped, Some("daily cap".into())),
                )
                .await;
        }

        let lock = svc.locks.lock(r.chat_id).await;
        let Some(chat) = svc.store.chat(r.chat_id).await? else {
            drop(lock);
            return svc
                .store
                .finish_run(
                    inp.run_id,
                    end(RunStatus::Failed, Some("chat unknown".into())),
                )
                .await;
        };
        let chat_kind = if chat.kind == "private" {
            ChatKind::Private
        } else {
            ChatKind::Group
        };
        let member = if chat_kind == ChatKind::Group {
            svc.store.member(chat.id, r.owner_id).await?
        } else {
            None
        };
        let actor_name = match (&member, chat_kind) {
            (Some(m), _) => m.first_name.clone(),
            (None, ChatKind::Private) => chat.title.clone(),
            _ => "the routine's owner".into(),
        };
        let tick = r.tick_count as i64 + 1;
        let vars = PromptVars {
            date: local.format("%a %Y-%m-%d").to_string(),
            time: local.format("%H:%M").to_string(),
            tick_count: tick,
            state: r.state.clone(),
            api_args: if inp.source == RunSource::Api && r.api_args {
                inp.input.clone().unwrap_or_default()
            } else {
                String::new()
            },
            event: if inp.source == RunSource::Event {
                inp.input.clone().unwrap_or_default()
            } else {
                String::new()
            },
        };
        let prompt = render_prompt(&r.prompt, &vars).unwrap_or_else(|err| {
            // created before the template check, or hand-edited: the text as written
            tracing::warn!(routine_id = r.id, error = %err, "routine prompt not rendered");
            r.prompt.clone()
        });
        let current = routine_message(&r, &inp, tick, &prompt);
        let scope = Scope {
            chat: chat.clone(),
            chat_kind,
            actor_id: Some(r.owner_id),
            actor_name,
            member,
            window_start_id: None,
            addressed: true,
            member_turn: false,
        };
        let outcome = self
            .agent
            .run_turn(
                svc,
                TurnRequest {
                    scope,
                    current,
                    current_tg_id: None,
                    source: "routine",
                    silent_ok: false,
                },
            )
            .await;
        let (status, reason, output) = match &outcome.result {
            Ok(text) if r.quiet && text.trim() == QUIET_TOKEN => {
                (RunStatus::Silent, None, Some(text.clone()))
            }
            Ok(text) => {
                let sent = svc
                    .outbox
                    .send(Outbound {
                        chat_id: chat.id,
                        html: format::markdown_to_html(text),
                        buttons: vec![],
                        reply_to: None,
                    })
                    .await;
                match sent {
                    Ok(_) => (RunStatus::Completed, None, Some(text.clone())),
                    Err(e) => (
                        RunStatus::Failed,
                        Some(format!("delivery: {e}")),
                        Some(text.clone()),
                    ),
                }
            }
            Err(e) => {
                // Tell the chat once (not on every failing tick): only after a non-error run.
                let prev = svc.store.routine_runs(r.id, 2).await?;
                let last_was_error = prev
                    .iter()
                    .find(|x| x.id != inp.run_id)
                    .is_some_and(|x| x.status == RunStatus::Failed);
                if !last_was_error {
                    let html = format!(
                        "Routine <b>{}</b> could not run: {} (I'll keep trying on schedule; /routine_history {} shows runs.)",
                        format::escape_html(&r.name),
                        format::escape_html(e.user_message()),
                        format::escape_html(&r.name),
                    );
                    // a failure notice, not conversation: kept out of the context window
                    if let Err(err) = svc
                        .outbox
                        .send_notice(Outbound {
                            chat_id: chat.id,
                            html,
                            buttons: vec![],
                            reply_to: None,
                        })
                        .await
                    {
                        tracing::warn!(routine = r.id, error = %err, "routine failure notice not delivered");
                    }
                }
                (RunStatus::Failed, Some(e.cause().to_string()), None)
            }
        };
        drop(lock);

        svc.store
            .set_routine_counters(
                r.id,
                RoutineCounters {
                    tick_count: tick as i32,
                    runs_today: runs_today + 1,
                    runs_day: &today,
                },
            )
            .await?;
        if r.status == RoutineStatus::Active
            && (r.max_ticks.is_some_and(|m| tick >= m as i64)
                || !self.has_live_trigger(r.id).await?)
        {
            svc.store.end_routine(r.id).await?;
            tracing::info!(routine = r.id, ticks = tick, "routine ended");
        }
        svc.store
            .finish_run(
                inp.run_id,
                RunEnd {
                    status,
                    reason,
                    started_at: started,
                    duration_ms: t0.elapsed().as_millis() as i64,
                    prompt_tokens: outcome.prompt_tokens as i32,
                    completion_tokens: outcome.completion_tokens as i32,
                    cost_usd: run_cost(
                        &svc.config,
                        outcome.prompt_tokens,
                        outcome.completion_tokens,
                    ),
                    output: output.map(|o| crate::context::clip(&o, SNIPPET_CHARS)),
                },
            )
            .await?;
        svc.store.prune_runs(r.id, KEEP_RUNS).await?;
        Ok(())
    }

    /// True while some trigger can still fire (a spent one-off cannot).
    async fn has_live_trigger(&self, routine_id: i64) -> StoreResult<bool> {
        Ok(self
            .svc
            .store
            .routine_triggers(routine_id)
            .await?
            .iter()
            .any(|t| t.kind != TriggerKind::At || t.next_fire_at.is_some()))
    }
}

/// The turn's current message: a one-line header (routine, trigger, run number), the catch-up
/// and quiet notes when they apply, then the filled template.
fn routine_message(r: &RoutineRow, inp: &RunInput, tick: i64, body: &str) -> String {
    let trigger = inp.trigger.as_deref().unwrap_or(inp.source.as_str());
    let mut s = format!("[Routine '{}' ({trigger}), run {tick}]\n", r.name);
    if inp.catch_up {
        let when = inp
            .scheduled_for
            .map(|t| {
                t.with_timezone(&zone_of(r))
                    .format("%a %d %b %H:%M")
                    .to_string()
            })
            .unwrap_or_default();
        s.push_str(&format!(
            "[Catch-up: I was offline at the scheduled time ({when}); this one run replaces the missed ones. Mention that it is late.]\n"
        ));
    }
    if r.quiet {
        s.push_str(&format!(
            "[Quiet: if there is nothing worth saying, reply exactly {QUIET_TOKEN}]\n"
        ));
    }
    s.push_str(body);
    s
}
