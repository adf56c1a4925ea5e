//! The run executor: starts runs (snapshot of the definition, inputs), executes claimed runs'
//! steps in order, waits without holding a task or a lock, and ends them (events
//! `run_completed` / `run_failed`).
//!
//! The run state machine is the issue 9 contract (`/run_*` control, buttons `run:*`): the engine
//! claims a run with one conditional update and a lease ([`crate::store::Store::claim_run`]); the
//! executor writes every step result together with the run's move in one conditional transaction
//! ([`crate::store::Store::advance_run`], `WHERE owner = me AND status = running`); 0 rows means
//! the run was paused, cancelled or taken over and the executor stops without writing anything.
//! A single-prompt routine (`definition = NULL`) runs as a one-step snapshot marked
//! `"single_prompt": true` and keeps its behaviour from before runs had steps (the reply posted,
//! the quiet token, the catch-up note, counters, one failure notice).
//!
//! Uses: services, agent, store, routines::{steps, gate, progress, model}, format.

use std::{collections::BTreeMap, time::Instant};

use chrono::{DateTime, Duration, NaiveTime, Utc};
use serde_json::{json, Map, Value};

use super::vars::Vars;

use super::{
    engine::RoutineEngine,
    gate::{self, GateRequest},
    model::{render_prompt, PromptVars},
    progress, run_cost,
    steps::{Check, Definition, Resolvers, Step, StepKind, Test, MAX_DEPTH},
    zone_of, RoutineError, KEEP_RUNS, QUIET_TOKEN,
};
use crate::{
    agent::{Scope, TurnFailure, TurnRequest},
    events::HearthEvent,
    format,
    services::Services,
    store::{
        ChoreStatus, NewRun, NewStepRun, Publication, RoutineRow, RoutineStatus, RunChange, RunRow,
        RunSource, RunStatus, StepChange, StepRunRow, StepStatus, StepType, StoreResult,
        TriggerKind,
    },
    types::{Button, ChatKind, Outbound},
};

/// Longest output snippet kept on a run record, in characters.
const SNIPPET_CHARS: usize = 200;
/// The snapshot key that marks a single-prompt routine's run.
const SINGLE: &str = "single_prompt";

/// A run to start.
#[derive(Debug, Clone)]
pub struct StartRun {
    pub routine_id: i64,
    pub source: RunSource,
    pub trigger_id: Option<i64>,
    /// The run owner (the member who started it by hand, else the routine's owner).
    pub started_by: i64,
    /// Initial inputs (`{{initial.<name>}}`); missing optional inputs take their default.
    pub inputs: serde_json::Map<String, serde_json::Value>,
    /// The slot a scheduled fire was for (UTC).
    pub scheduled_for: Option<DateTime<Utc>>,
    pub catch_up: bool,
    /// Set for the child run of a `routine` step.
    pub parent_run_id: Option<i64>,
    pub depth: i32,
}

/// What [`start_run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// A pending run with this id (a sweep starts it within a tick).
    Run(i64),
    /// A run recorded `skipped` with this id and reason ("already running", "paused", …).
    Skipped(i64, String),
}

/// The definition a routine runs: its stored one, or one `prompt` step over its prompt.
/// Returns the definition and whether it is a single-prompt routine.
pub fn definition_of(r: &RoutineRow) -> Result<(Definition, bool), RoutineError> {
    match &r.definition {
        Some(json) => serde_json::from_str(json)
            .map(|d| (d, false))
            .map_err(|e| RoutineError::invalid("definition", format!("unreadable: {e}"))),
        None => Ok((
            Definition {
                concurrent: r.concurrent,
                inputs: vec![],
                steps: vec![Step {
                    name: None,
                    timeout: super::steps::DEFAULT_TIMEOUT_S,
                    require_approval: false,
                    auto_approve: false,
                    kind: StepKind::Prompt {
                        prompt: r.prompt.clone(),
                    },
                }],
            },
            true,
        )),
    }
}

/// Start a run of the routine: check it may run, take the snapshot, insert the run `pending`.
///
/// Rules: a draft never fires and never runs from the chat (a child run of a `routine` step may
/// run one); an ended routine, a paused one or one over its daily cap records a `skipped` run
/// (manual runs bypass paused and the cap); unless the routine is `concurrent`, a second active
/// run of it in its chat records a `skipped` run, reason "already running".
///
/// Errors: [`RoutineError::NotFound`], [`RoutineError::Invalid`] (a required input missing, a
/// draft, an unreadable definition), storage.
pub async fn start_run(svc: &Services, req: StartRun) -> Result<Started, RoutineError> {
    let now = svc.clock.now();
    let r = svc
        .store
        .routine(req.routine_id)
        .await?
        .ok_or_else(|| RoutineError::NotFound(format!("#{}", req.routine_id)))?;
    if r.publication == Publication::Draft && req.parent_run_id.is_none() {
        return Err(RoutineError::invalid(
            "routine",
            format!("'{}' is a draft; publish it before running it", r.name),
        ));
    }
    let (def, single) = definition_of(&r)?;
    let mut inputs = req.inputs.clone();
    for spec in &def.inputs {
        let missing = inputs
            .get(&spec.name)
            .is_none_or(|v| v.is_null() || v.as_str().is_some_and(|s| s.trim().is_empty()));
        if !missing {
            continue;
        }
        match &spec.default {
            Some(d) => {
                inputs.insert(spec.name.clone(), Value::String(d.clone()));
            }
            None if spec.required => {
                return Err(RoutineError::invalid(
                    spec.name.clone(),
                    format!(
                        "is required to run '{}'{}",
                        r.name,
                        if spec.description.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", spec.description)
                        }
                    ),
                ));
            }
            None => {
                inputs.insert(spec.name.clone(), Value::String(String::new()));
            }
        }
    }
    let manual = req.source == RunSource::Manual;
    let zone = zone_of(&r);
    let today = now.with_timezone(&zone).format("%Y-%m-%d").to_string();
    let runs_today = if r.runs_day == today { r.runs_today } else { 0 };
    let mut skip = None;
    if !manual && r.status != RoutineStatus::Active {
        skip = Some("ended");
    } else if !manual && r.paused {
        skip = Some("paused");
    } else if !manual && r.max_runs_per_day.is_some_and(|cap| runs_today >= cap) {
        skip = Some("daily cap");
    } else if !r.concurrent && !def.concurrent {
        let active = svc.store.active_runs_of(r.id, r.chat_id).await?;
        if !active.is_empty() {
            skip = Some("already running");
        }
    }
    let mut snap = serde_json::to_value(&def)
        .map_err(|e| RoutineError::invalid("definition", e.to_string()))?;
    if single {
        if let Value::Object(m) = &mut snap {
            m.insert(SINGLE.into(), Value::Bool(true));
        }
    }
    let id = svc
        .store
        .insert_run(NewRun {
            routine_id: r.id,
            trigger_id: req.trigger_id,
            source: req.source,
            catch_up: req.catch_up,
            status: if skip.is_some() {
                RunStatus::Skipped
            } else {
                RunStatus::Pending
            },
            reason: skip.map(str::to_string),
            input: Some(Value::Object(inputs).to_string()),
            scheduled_for: req.scheduled_for,
            started_at: now,
            chat_id: Some(r.chat_id),
            started_by: Some(req.started_by),
            snapshot: Some(snap.to_string()),
            parent_run_id: req.parent_run_id,
            depth: req.depth,
        })
        .await?;
    match skip {
        Some(reason) => {
            tracing::info!(routine = r.id, run = id, reason, "run skipped");
            svc.store.prune_runs(r.id, KEEP_RUNS).await?;
            Ok(Started::Skipped(id, reason.to_string()))
        }
        None => Ok(Started::Run(id)),
    }
}

/// The run's snapshot as executed.
struct Snapshot {
    def: Definition,
    single: bool,
}

fn snapshot_of(run: &RunRow) -> Option<Snapshot> {
    let v: Value = serde_json::from_str(run.snapshot.as_deref()?).ok()?;
    let single = v.get(SINGLE).and_then(Value::as_bool).unwrap_or(false);
    let def = serde_json::from_value(v).ok()?;
    Some(Snapshot { def, single })
}

/// How a claimed run is entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// It was pending: run its current step as a new attempt.
    Fresh,
    /// Its wait is over (or was resolved): look at the waiting step run.
    Woken,
    /// Its holder's lease lapsed mid-step.
    TakeOver,
}

/// Where a finished step sends the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Step(usize),
    End,
}

/// What executing (or resuming) a step came to.
enum Flow {
    /// Done: record the step, go on to `next`. `loops`: new loop counters when a branch went back.
    Next {
        step: StepChange,
        next: Target,
        loops: Option<String>,
    },
    /// The step waits (the step run stays `waiting`).
    Wait {
        step: Option<StepChange>,
        waiting_for: String,
        wake_at: Option<DateTime<Utc>>,
    },
    /// The step (and the run) failed with `reason`.
    Fail {
        step: Option<StepChange>,
        reason: String,
    },
    /// A quiet single-prompt routine had nothing to say.
    Silent { step: StepChange },
    /// Already handled (or nothing may be written).
    Stop,
}

/// Everything one step execution needs.
struct Ctx<'a> {
    eng: &'a RoutineEngine,
    svc: &'a Services,
    routine: RoutineRow,
    snap: Snapshot,
    run: RunRow,
}

impl Ctx<'_> {
    fn owner(&self) -> &str {
        self.eng.owner()
    }

    fn lease(&self) -> DateTime<Utc> {
        self.svc.clock.now()
            + Duration::from_std(self.svc.config.routines.step_lease)
                .unwrap_or(Duration::seconds(30))
    }

    fn run_owner(&self) -> i64 {
        self.run.started_by.unwrap_or(self.routine.owner_id)
    }

    fn chat_id(&self) -> i64 {
        self.run.chat_id.unwrap_or(self.routine.chat_id)
    }

    fn label(&self, idx: usize) -> String {
        match self.snap.def.steps.get(idx).and_then(|s| s.name.as_deref()) {
            Some(n) => format!("step {} '{n}'", idx + 1),
            None => format!("step {}", idx + 1),
        }
    }
}

/// Execute a run this process just claimed: `run` is the row as claimed (`running`, ours),
/// `seen` the status it was claimable in (pending: run its current step; waiting: resume the
/// wait; running: take over from a dead holder), `routine` its routine (read once per claim
/// batch; `None`: deleted). Runs step after step until the run waits, ends, or is taken away;
/// each commit returns the run row, so the row is not read again between steps.
pub(super) async fn execute(
    eng: &RoutineEngine,
    run: RunRow,
    seen: RunStatus,
    routine: Option<RoutineRow>,
) -> StoreResult<()> {
    let svc = eng.services();
    let entry = match seen {
        RunStatus::Pending => Entry::Fresh,
        RunStatus::Waiting => Entry::Woken,
        RunStatus::Running => Entry::TakeOver,
        _ => return Ok(()),
    };
    let Some(routine) = routine else {
        return Ok(()); // deleted meanwhile (its runs went with it)
    };
    let Some(snap) = snapshot_of(&run) else {
        let c = end_change(
            &run,
            RunStatus::Failed,
            Some("unreadable snapshot".into()),
            svc,
        );
        svc.store.advance_run(run.id, eng.owner(), &c, None).await?;
        return Ok(());
    };
    let mut ctx = Ctx {
        eng,
        svc,
        routine,
        snap,
        run,
    };
    let mut entry = entry;
    loop {
        if ctx.run.status != RunStatus::Running || ctx.run.owner.as_deref() != Some(eng.owner()) {
            return Ok(()); // paused, cancelled or taken over
        }
        let idx = ctx.run.current_step.max(0) as usize;
        if idx >= ctx.snap.def.steps.len() {
            let c = end_change(&ctx.run, RunStatus::Completed, None, svc);
            if svc
                .store
                .advance_run(ctx.run.id, ctx.owner(), &c, None)
                .await?
            {
                ended(&ctx, RunStatus::Completed, None).await?;
            }
            return Ok(());
        }
        let flow = match entry {
            Entry::Fresh => run_step(&ctx, idx, false).await?,
            Entry::Woken => resume_step(&ctx, idx).await?,
            Entry::TakeOver => take_over(&ctx, idx).await?,
        };
        entry = Entry::Fresh;
        match apply(&ctx, idx, flow).await? {
            Some(row) => ctx.run = row,
            None => return Ok(()),
        }
    }
}

/// Write a step's flow with the run's move. The run row as written when the run goes on in this
/// process (its next step), else `None`.
async fn apply(ctx: &Ctx<'_>, idx: usize, flow: Flow) -> StoreResult<Option<RunRow>> {
    let svc = ctx.svc;
    let run = &ctx.run;
    let multi = !ctx.snap.single;
    match flow {
        Flow::Stop => Ok(None),
        Flow::Wait {
            step,
            waiting_for,
            wake_at,
        } => {
            let c = RunChange {
                status: RunStatus::Waiting,
                waiting_for: Some(waiting_for.clone()),
                wake_at,
                ..RunChange::running(idx as i32, ctx.lease())
            };
            let c = with_step_totals(c, step.as_ref());
            if !svc
                .store
                .advance_run(run.id, ctx.owner(), &c, step.as_ref())
                .await?
            {
                return Ok(None);
            }
            if multi {
                progress::refresh(svc, run.id).await;
            }
            // resolved while we were writing the wait: wake now instead of at the safety net
            if wait_resolved(ctx, &waiting_for, step.as_ref().map(|s| s.id)).await? {
                svc.store
                    .wake_run(run.id, Some(&waiting_for), svc.clock.now())
                    .await?;
                ctx.eng.kick();
            }
            Ok(None)
        }
        Flow::Fail { step, reason } => {
            let c = with_step_totals(
                end_change(run, RunStatus::Failed, Some(reason.clone()), svc),
                step.as_ref(),
            );
            if svc
                .store
                .advance_run(run.id, ctx.owner(), &c, step.as_ref())
                .await?
            {
                ended(ctx, RunStatus::Failed, Some(reason)).await?;
            }
            Ok(None)
        }
        Flow::Silent { step } => {
            let mut c =
                with_step_totals(end_change(run, RunStatus::Silent, None, svc), Some(&step));
            c.output = step
                .output
                .as_deref()
                .map(|o| crate::context::clip(o, SNIPPET_CHARS));
            if svc
                .store
                .advance_run(run.id, ctx.owner(), &c, Some(&step))
                .await?
            {
                ended(ctx, RunStatus::Silent, None).await?;
            }
            Ok(None)
        }
        Flow::Next { step, next, loops } => {
            let cost = run.cost_usd + if step.counted { 0.0 } else { step.cost_usd };
            let cfg = &svc.config.routines;
            let snippet = step
                .output
                .as_deref()
                .map(|o| crate::context::clip(o, SNIPPET_CHARS));
            let next_idx = match next {
                Target::Step(i) if i < ctx.snap.def.steps.len() => Some(i),
                _ => None,
            };
            let Some(next_idx) = next_idx else {
                let mut c = with_step_totals(
                    end_change(run, RunStatus::Completed, None, svc),
                    Some(&step),
                );
                c.output = snippet;
                c.loops = loops;
                if svc
                    .store
                    .advance_run(run.id, ctx.owner(), &c, Some(&step))
                    .await?
                {
                    ended(ctx, RunStatus::Completed, None).await?;
                }
                return Ok(None);
            };
            if cost >= cfg.cost_limit {
                let reason = "cost limit".to_string();
                let mut c = with_step_totals(
                    end_change(run, RunStatus::Failed, Some(reason.clone()), svc),
                    Some(&step),
                );
                c.output = snippet;
                c.loops = loops;
                if svc
                    .store
                    .advance_run(run.id, ctx.owner(), &c, Some(&step))
                    .await?
                {
                    let html = format!(
                        "Run {} of <b>{}</b> stopped: it reached the cost limit of ${:.2} (spent ${cost:.2}).",
                        run.id,
                        format::escape_html(&ctx.routine.name),
                        cfg.cost_limit
                    );
                    notice(svc, ctx.chat_id(), html, vec![]).await;
                    ended(ctx, RunStatus::Failed, Some(reason)).await?;
                }
                return Ok(None);
            }
            if cost >= cfg.cost_warn && !run.cost_warned {
                let mut c = with_step_totals(
                    RunChange {
                        status: RunStatus::Waiting,
                        waiting_for: Some("cost".into()),
                        wake_at: None,
                        ..RunChange::running(next_idx as i32, ctx.lease())
                    },
                    Some(&step),
                );
                c.output = snippet;
                c.loops = loops;
                if svc
                    .store
                    .advance_run(run.id, ctx.owner(), &c, Some(&step))
                    .await?
                {
                    let html = format!(
                        "Run {} of <b>{}</b>: this run has spent ${cost:.2} so far — continue?",
                        run.id,
                        format::escape_html(&ctx.routine.name),
                    );
                    let buttons = vec![vec![
                        Button {
                            label: "Continue".into(),
                            data: format!("run:go:{}", run.id),
                        },
                        Button {
                            label: "Stop".into(),
                            data: format!("run:stop:{}", run.id),
                        },
                    ]];
                    notice(svc, ctx.chat_id(), html, buttons).await;
                    if multi {
                        progress::refresh(svc, run.id).await;
                    }
                }
                return Ok(None);
            }
            let mut c = with_step_totals(
                RunChange::running(next_idx as i32, ctx.lease()),
                Some(&step),
            );
            c.output = snippet;
            c.loops = loops;
            let row = svc
                .store
                .advance_run_row(run.id, ctx.owner(), &c, Some(&step))
                .await?;
            if row.is_some() && multi {
                progress::refresh(svc, run.id).await;
            }
            Ok(row)
        }
    }
}

/// Add a step's tokens and cost to a run change.
fn with_step_totals(mut c: RunChange, step: Option<&StepChange>) -> RunChange {
    if let Some(s) = step.filter(|s| !s.counted) {
        c.add_prompt_tokens = s.prompt_tokens;
        c.add_completion_tokens = s.completion_tokens;
        c.add_cost_usd = s.cost_usd;
    }
    c
}

/// The change that ends a run with `status`.
fn end_change(
    run: &RunRow,
    status: RunStatus,
    reason: Option<String>,
    svc: &Services,
) -> RunChange {
    let now = svc.clock.now();
    RunChange {
        status,
        reason,
        duration_ms: Some((now - run.started_at).num_milliseconds().max(0)),
        finished_at: Some(now),
        ..RunChange::running(run.current_step, now)
    }
}

/// After a run ended: events, the parent's wake, counters and pruning.
async fn ended(ctx: &Ctx<'_>, status: RunStatus, reason: Option<String>) -> StoreResult<()> {
    let svc = ctx.svc;
    let run = &ctx.run;
    let now = svc.clock.now();
    let chat_id = ctx.chat_id();
    let ev = match status {
        RunStatus::Failed => HearthEvent::RunFailed {
            chat_id,
            routine: ctx.routine.name.clone(),
            run_id: run.id,
            reason: reason.clone().unwrap_or_default(),
        },
        _ => HearthEvent::RunCompleted {
            chat_id,
            routine: ctx.routine.name.clone(),
            run_id: run.id,
        },
    };
    svc.events.publish(ev);
    if let Some(parent) = run.parent_run_id {
        if svc
            .store
            .wake_run(parent, Some(&format!("child:{}", run.id)), now)
            .await?
        {
            ctx.eng.kick();
        }
    }
    if !ctx.snap.single {
        progress::refresh(svc, run.id).await;
    }
    // counters (the daily cap and `run N`), then a spent single-prompt routine ends
    let r = &ctx.routine;
    let zone = zone_of(r);
    let today = now.with_timezone(&zone).format("%Y-%m-%d").to_string();
    let Some(tick) = svc.store.count_run_end(r.id, &today).await? else {
        return Ok(()); // the routine was deleted meanwhile
    };
    if ctx.snap.single
        && r.status == RoutineStatus::Active
        && (r.max_ticks.is_some_and(|m| tick >= m) || !has_live_trigger(svc, r.id).await?)
    {
        svc.store.end_routine(r.id).await?;
        tracing::info!(routine = r.id, ticks = tick, "routine ended");
    }
    if ctx.eng.prune_due(r.id) {
        svc.store.prune_runs(r.id, KEEP_RUNS).await?;
    }
    tracing::info!(
        routine = r.id,
        run = run.id,
        status = status.as_str(),
        "run ended"
    );
    Ok(())
}

/// True while some trigger can still fire (a spent one-off cannot).
async fn has_live_trigger(svc: &Services, routine_id: i64) -> StoreResult<bool> {
    Ok(svc
        .store
        .routine_triggers(routine_id)
        .await?
        .iter()
        .any(|t| t.kind != TriggerKind::At || t.next_fire_at.is_some()))
}

/// Send a notice (not conversation) to a chat; failures are logged.
async fn notice(svc: &Services, chat_id: i64, html: String, buttons: Vec<Vec<Button>>) {
    if let Err(e) = svc
        .outbox
        .send_notice(Outbound {
            chat_id,
            html,
            buttons,
            reply_to: None,
        })
        .await
    {
        tracing::warn!(chat_id, error = %e, "run notice not delivered");
    }
}

/// Was the wait just written already resolved (a gate decided, a child ended, confirmations
/// answered, an event arrived) before the run was marked waiting?
async fn wait_resolved(
    ctx: &Ctx<'_>,
    waiting_for: &str,
    step_id: Option<i64>,
) -> StoreResult<bool> {
    let svc = ctx.svc;
    if let Some(child) = waiting_for.strip_prefix("child:") {
        let Ok(id) = child.parse::<i64>() else {
            return Ok(false);
        };
        return Ok(svc
            .store
            .run(id)
            .await?
            .is_some_and(|r| !r.status.is_active()));
    }
    if let Some(ids) = waiting_for.strip_prefix("confirm:") {
        let ids = parse_ids(ids);
        return Ok(svc.store.count_pending_workflows(&ids).await? == 0);
    }
    if waiting_for.starts_with("approval:") || waiting_for.starts_with("event:") {
        if let Some(id) = step_id {
            return Ok(svc
                .store
                .step_run(id)
                .await?
                .is_some_and(|s| s.status != StepStatus::Waiting));
        }
    }
    Ok(false)
}

fn parse_ids(s: &str) -> Vec<i64> {
    s.split(',').filter_map(|x| x.trim().parse().ok()).collect()
}

/// The latest step run of position `idx` (this pass when the run was woken).
async fn latest_at(ctx: &Ctx<'_>, idx: usize) -> StoreResult<Option<StepRunRow>> {
    Ok(ctx
        .svc
        .store
        .step_runs_of(ctx.run.id)
        .await?
        .into_iter()
        .filter(|s| s.position == idx as i32)
        .max_by_key(|s| s.id))
}

/// A new step run for position `idx`, `running` (or `status`), as the next attempt.
async fn new_step_run(
    ctx: &Ctx<'_>,
    idx: usize,
    kind: StepType,
    status: StepStatus,
    input: Option<String>,
) -> StoreResult<i64> {
    let attempt = ctx
        .svc
        .store
        .step_runs_of(ctx.run.id)
        .await?
        .iter()
        .filter(|s| s.position == idx as i32)
        .count() as i32
        + 1;
    let id = ctx
        .svc
        .store
        .insert_step_run(NewStepRun {
            run_id: ctx.run.id,
            position: idx as i32,
            attempt,
            name: ctx.snap.def.steps[idx].name.clone(),
            kind,
            status,
            input,
            started_at: Some(ctx.svc.clock.now()),
        })
        .await?;
    if !ctx.snap.single {
        progress::refresh(ctx.svc, ctx.run.id).await;
    }
    Ok(id)
}

/// A finished step's change.
fn done(id: i64, output: impl Into<String>, t0: Instant, now: DateTime<Utc>) -> StepChange {
    StepChange {
        id,
        status: StepStatus::Completed,
        output: Some(output.into()),
        reason: None,
        error: None,
        prompt_tokens: 0,
        completion_tokens: 0,
        cost_usd: 0.0,
        duration_ms: t0.elapsed().as_millis() as i64,
        workflow_id: None,
        finished_at: Some(now),
        counted: false,
    }
}

/// A failed step's flow: the step run `failed` with `error`, the run failed with it.
fn failed(id: i64, error: impl Into<String>, t0: Instant, now: DateTime<Utc>) -> Flow {
    let error = error.into();
    Flow::Fail {
        step: Some(StepChange {
            status: StepStatus::Failed,
            output: None,
            error: Some(error.clone()),
            ..done(id, "", t0, now)
        }),
        reason: error,
    }
}

/// The step after `idx`.
fn next_of(idx: usize) -> Target {
    Target::Step(idx + 1)
}

/// Run step `idx` afresh (a new attempt). `gated`: its `require_approval` gate was approved.
async fn run_step(ctx: &Ctx<'_>, idx: usize, gated: bool) -> StoreResult<Flow> {
    let step = ctx.snap.def.steps[idx].clone();
    if step.require_approval && !gated && !matches!(step.kind, StepKind::Approval { .. }) {
        let text = format!(
            "Run {} of '{}' wants to go on with {}. Approve?",
            ctx.run.id,
            ctx.routine.name,
            ctx.label(idx)
        );
        return open_gate(ctx, idx, text, Resolvers::Others, 1, None).await;
    }
    let limit = std::time::Duration::from_secs(step.timeout.max(1) as u64);
    let svc = ctx.svc;
    let t0 = Instant::now();
    let kind = step.kind.step_type();
    match &step.kind {
        // waits are bounded by their own deadlines; a single-prompt routine's turn by
        // `llm.timeout`, as before runs had steps
        StepKind::Wait { .. } | StepKind::Approval { .. } | StepKind::Routine { .. } => {
            exec_kind(ctx, idx, &step, t0).await
        }
        _ if ctx.snap.single => exec_kind(ctx, idx, &step, t0).await,
        _ => {
            // bounded execution: the step's own work, not its waits
            match tokio::time::timeout(limit, exec_kind(ctx, idx, &step, t0)).await {
                Ok(f) => f,
                Err(_) => {
                    let now = svc.clock.now();
                    match latest_at(ctx, idx).await? {
                        Some(s) if s.status == StepStatus::Running && s.kind == kind => Ok(failed(
                            s.id,
                            format!("timeout: over {} s", step.timeout),
                            t0,
                            now,
                        )),
                        _ => Ok(Flow::Fail {
                            step: None,
                            reason: format!("timeout: over {} s", step.timeout),
                        }),
                    }
                }
            }
        }
    }
}

/// Execute the kind of step `idx`.
async fn exec_kind(ctx: &Ctx<'_>, idx: usize, step: &Step, t0: Instant) -> StoreResult<Flow> {
    let svc = ctx.svc;
    let vars = context(ctx, idx).await?;
    let kind = step.kind.step_type();
    match &step.kind {
        StepKind::Prompt { prompt } => {
            if ctx.snap.single {
                return single_prompt(ctx, idx, prompt).await;
            }
            let text = match render(prompt, &vars) {
                Ok(t) => t,
                Err(e) => {
                    let id = new_step_run(ctx, idx, kind, StepStatus::Running, None).await?;
                    return Ok(failed(id, e, t0, svc.clock.now()));
                }
            };
            let id = new_step_run(ctx, idx, kind, StepStatus::Running, Some(text.clone())).await?;
            prompt_step(ctx, idx, step, id, &text, t0).await
        }
        StepKind::Message { text, to } => {
            let id = new_step_run(ctx, idx, kind, StepStatus::Running, None).await?;
            let body = match render(text, &vars) {
                Ok(t) => t,
                Err(e) => return Ok(failed(id, e, t0, svc.clock.now())),
            };
            let target = match to.as_deref() {
                None | Some("") | Some("chat") => Some(ctx.chat_id()),
                Some("owner") => Some(ctx.run_owner()),
                Some(who) => {
                    let who = render(who, &vars).unwrap_or_else(|_| who.to_string());
                    find_member(svc, ctx.chat_id(), &who).await?
                }
            };
            let Some(target) = target else {
                return Ok(failed(
                    id,
                    format!(
                        "message: no member '{}' in this chat",
                        to.clone().unwrap_or_default()
                    ),
                    t0,
                    svc.clock.now(),
                ));
            };
            let sent = svc
                .outbox
                .send(Outbound {
                    chat_id: target,
                    html: format::markdown_to_html(&body),
                    buttons: vec![],
                    reply_to: None,
                })
                .await;
            let now = svc.clock.now();
            Ok(match sent {
                Ok(_) => Flow::Next {
                    step: done(id, body, t0, now),
                    next: next_of(idx),
                    loops: None,
                },
                Err(e) => failed(id, format!("delivery: {e}"), t0, now),
            })
        }
        StepKind::Tool { tool, args } => {
            let mut rendered = Map::new();
            let mut bad = None;
            for (k, v) in args {
                match render_value(v, &vars) {
                    Ok(v) => {
                        rendered.insert(k.clone(), v);
                    }
                    Err(e) => bad = Some(e),
                }
            }
            let input = json!({ "tool": tool, "args": rendered }).to_string();
            let id = new_step_run(ctx, idx, kind, StepStatus::Running, Some(input)).await?;
            if let Some(e) = bad {
                return Ok(failed(id, e, t0, svc.clock.now()));
            }
            let Some(t) = ctx.eng.agent().tools().get(tool).cloned() else {
                return Ok(failed(
                    id,
                    format!("no tool named '{tool}'"),
                    t0,
                    svc.clock.now(),
                ));
            };
            let Some(scope) = scope_for(ctx, false).await? else {
                return Ok(failed(id, "the chat is unknown", t0, svc.clock.now()));
            };
            let res = t.call(svc, &scope, Value::Object(rendered)).await;
            let now = svc.clock.now();
            Ok(match res {
                Ok(v) => {
                    if let Some(err) = v.get("error") {
                        let e = err.as_str().map(str::to_string).unwrap_or(err.to_string());
                        failed(id, format!("{tool}: {e}"), t0, now)
                    } else {
                        let out = match &v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        Flow::Next {
                            step: done(id, out, t0, now),
                            next: next_of(idx),
                            loops: None,
                        }
                    }
                }
                Err(e) => failed(id, format!("{tool}: {e}"), t0, now),
            })
        }
        StepKind::Wait {
            duration,
            until,
            event,
            filters,
            event_timeout,
        } => {
            let now = svc.clock.now();
            let (waiting_for, wake_at, input) = if let Some(d) = duration {
                let Some(d) = parse_span(d) else {
                    let id = new_step_run(ctx, idx, kind, StepStatus::Running, None).await?;
                    return Ok(failed(
                        id,
                        format!("wait: duration '{d}' not understood"),
                        t0,
                        now,
                    ));
                };
                (
                    "timer".to_string(),
                    now + d,
                    json!({ "duration": duration }),
                )
            } else if let Some(u) = until {
                let Some(at) = next_local(u, now, zone_of(&ctx.routine)) else {
                    let id = new_step_run(ctx, idx, kind, StepStatus::Running, None).await?;
                    return Ok(failed(
                        id,
                        format!("wait: until '{u}' is not HH:MM"),
                        t0,
                        now,
                    ));
                };
                ("until".to_string(), at, json!({ "until": u }))
            } else if let Some(ev) = event {
                let timeout = event_timeout
                    .as_deref()
                    .and_then(parse_span)
                    .unwrap_or(Duration::days(1));
                let mut f = Map::new();
                for (k, v) in filters {
                    f.insert(
                        k.clone(),
                        Value::String(render(v, &vars).unwrap_or_else(|_| v.clone())),
                    );
                }
                (
                    format!("event:{ev}"),
                    now + timeout,
                    json!({ "event": ev, "filters": f }),
                )
            } else {
                let id = new_step_run(ctx, idx, kind, StepStatus::Running, None).await?;
                return Ok(failed(id, "wait: needs duration, until or event", t0, now));
            };
            let id =
                new_step_run(ctx, idx, kind, StepStatus::Waiting, Some(input.to_string())).await?;
            Ok(Flow::Wait {
                step: Some(StepChange {
                    status: StepStatus::Waiting,
                    output: None,
                    finished_at: None,
                    ..done(id, "", t0, now)
                }),
                waiting_for,
                wake_at: Some(wake_at),
            })
        }
        StepKind::Condition {
            check,
            then,
            otherwise,
            max_loops,
        } => {
            let id = new_step_run(ctx, idx, kind, StepStatus::Running, None).await?;
            let now = svc.clock.now();
            let value = match check_value(ctx, check, &vars).await? {
                Ok(v) => v,
                Err(e) => return Ok(failed(id, e, t0, now)),
            };
            let yes = match test(&check.test, &value) {
                Ok(b) => b,
                Err(e) => return Ok(failed(id, e, t0, now)),
            };
            let branch = if yes { then } else { otherwise };
            let mut ch = done(id, if yes { "then" } else { "else" }, t0, now);
            ch.reason = Some(crate::context::clip(&value, SNIPPET_CHARS));
            branch_to(ctx, idx, branch.as_deref(), *max_loops, ch, t0)
        }
        StepKind::Approval {
            text,
            resolvers,
            required,
            expires,
            ..
        } => {
            let text = match render(text, &vars) {
                Ok(t) => t,
                Err(e) => {
                    let id = new_step_run(ctx, idx, kind, StepStatus::Running, None).await?;
                    return Ok(failed(id, e, t0, svc.clock.now()));
                }
            };
            let expires = expires.as_deref().and_then(parse_span);
            open_gate(ctx, idx, text, resolvers.clone(), *required, expires).await
        }
        StepKind::Routine { routine, inputs } => {
            let mut rendered = Map::new();
            for (k, v) in inputs {
                match render(v, &vars) {
                    Ok(s) => {
                        rendered.insert(k.clone(), Value::String(s));
                    }
                    Err(e) => {
                        let id = new_step_run(ctx, idx, kind, StepStatus::Running, None).await?;
                        return Ok(failed(id, e, t0, svc.clock.now()));
                    }
                }
            }
            let input = json!({ "routine": routine, "inputs": rendered }).to_string();
            let id = new_step_run(ctx, idx, kind, StepStatus::Running, Some(input)).await?;
            let now = svc.clock.now();
            if ctx.run.depth + 1 > MAX_DEPTH {
                return Ok(failed(
                    id,
                    format!("routine '{routine}': nesting deeper than {MAX_DEPTH}"),
                    t0,
                    now,
                ));
            }
            let Some(child) = svc.store.routine_by_name(ctx.chat_id(), routine).await? else {
                return Ok(failed(id, format!("no routine named '{routine}'"), t0, now));
            };
            let started = start_run(
                svc,
                StartRun {
                    routine_id: child.id,
                    source: RunSource::Manual,
                    trigger_id: None,
                    started_by: ctx.run_owner(),
                    inputs: rendered,
                    scheduled_for: None,
                    catch_up: false,
                    parent_run_id: Some(ctx.run.id),
                    depth: ctx.run.depth + 1,
                },
            )
            .await;
            match started {
                Ok(Started::Run(cid)) => {
                    ctx.eng.kick();
                    Ok(Flow::Wait {
                        step: Some(StepChange {
                            status: StepStatus::Waiting,
                            output: None,
                            finished_at: None,
                            ..done(id, "", t0, now)
                        }),
                        waiting_for: format!("child:{cid}"),
                        wake_at: None,
                    })
                }
                Ok(Started::Skipped(_, reason)) => Ok(failed(
                    id,
                    format!("routine '{routine}' skipped: {reason}"),
                    t0,
                    now,
                )),
                Err(RoutineError::Store(e)) => Err(e),
                Err(e) => Ok(failed(id, format!("routine '{routine}': {e}"), t0, now)),
            }
        }
    }
}

/// Go to `branch` ("end", a step name, or the next step). A branch back to this step or an
/// earlier one counts as a loop for step `idx`; past `max_loops` (default 0) the run fails
/// "loop limit".
fn branch_to(
    ctx: &Ctx<'_>,
    idx: usize,
    branch: Option<&str>,
    max_loops: Option<u32>,
    ch: StepChange,
    t0: Instant,
) -> StoreResult<Flow> {
    let now = ctx.svc.clock.now();
    let target = match branch.map(str::trim) {
        None | Some("") | Some("next") => next_of(idx),
        Some("end") => Target::End,
        Some(name) => match ctx
            .snap
            .def
            .steps
            .iter()
            .position(|s| s.name.as_deref() == Some(name))
        {
            Some(i) => Target::Step(i),
            None => return Ok(failed(ch.id, format!("no step named '{name}'"), t0, now)),
        },
    };
    let mut loops = None;
    if let Target::Step(i) = target {
        if i <= idx {
            let mut m: BTreeMap<String, u32> =
                serde_json::from_str(&ctx.run.loops).unwrap_or_default();
            let n = m.entry(idx.to_string()).or_default();
            *n += 1;
            if *n > max_loops.unwrap_or(0) {
                return Ok(Flow::Fail {
                    step: Some(ch),
                    reason: "loop limit".into(),
                });
            }
            loops = Some(serde_json::to_string(&m).unwrap_or_else(|_| "{}".into()));
        }
    }
    Ok(Flow::Next {
        step: ch,
        next: target,
        loops,
    })
}

/// Open an approval gate for step `idx` (an `approval` step or a `require_approval` one).
async fn open_gate(
    ctx: &Ctx<'_>,
    idx: usize,
    text: String,
    resolvers: Resolvers,
    required: u32,
    expires: Option<Duration>,
) -> StoreResult<Flow> {
    let svc = ctx.svc;
    let t0 = Instant::now();
    let id = new_step_run(
        ctx,
        idx,
        StepType::Approval,
        StepStatus::Waiting,
        Some(text.clone()),
    )
    .await?;
    let opened = gate::open(
        svc,
        GateRequest {
            chat_id: ctx.chat_id(),
            run_id: ctx.run.id,
            step_run_id: id,
            owner_id: ctx.run_owner(),
            routine_name: ctx.routine.name.clone(),
            step_label: ctx.label(idx),
            text,
            resolvers,
            required: required.max(1),
            expires,
        },
    )
    .await;
    let now = svc.clock.now();
    match opened {
        Ok(wf) => Ok(Flow::Wait {
            step: Some(StepChange {
                status: StepStatus::Waiting,
                output: None,
                workflow_id: Some(wf.id),
                finished_at: None,
                ..done(id, "", t0, now)
            }),
            waiting_for: format!("approval:{}", wf.id),
            wake_at: Some(wf.expires_at + Duration::minutes(1)),
        }),
        Err(RoutineError::Store(e)) => Err(e),
        Err(e) => Ok(failed(id, e.to_string(), t0, now)),
    }
}

/// A woken run: finish the waiting step of position `idx` and decide where to go.
async fn resume_step(ctx: &Ctx<'_>, idx: usize) -> StoreResult<Flow> {
    let svc = ctx.svc;
    let now = svc.clock.now();
    let t0 = Instant::now();
    let step = ctx.snap.def.steps[idx].clone();
    let waiting_for = ctx.run.waiting_for.clone().unwrap_or_default();
    let Some(sr) = latest_at(ctx, idx).await? else {
        return run_step(ctx, idx, false).await;
    };
    let duration = |sr: &StepRunRow| {
        sr.started_at
            .map(|s| (now - s).num_milliseconds().max(0))
            .unwrap_or(0)
    };
    let finish = |sr: &StepRunRow, output: String| StepChange {
        duration_ms: duration(sr),
        prompt_tokens: sr.prompt_tokens,
        completion_tokens: sr.completion_tokens,
        cost_usd: sr.cost_usd,
        workflow_id: sr.workflow_id,
        reason: sr.reason.clone(),
        counted: true, // added to the run's totals when the step began waiting
        ..done(sr.id, output, t0, now)
    };
    if waiting_for.starts_with("approval:") || sr.kind == StepType::Approval {
        if sr.status == StepStatus::Waiting {
            // the gate has not decided yet (the safety net fired early): look again in a minute
            return Ok(Flow::Wait {
                step: None,
                waiting_for,
                wake_at: Some(now + Duration::minutes(1)),
            });
        }
        let outcome = sr.output.clone().unwrap_or_default();
        if outcome == "approved" {
            if matches!(step.kind, StepKind::Approval { .. }) {
                return Ok(Flow::Next {
                    step: finish(&sr, outcome),
                    next: next_of(idx),
                    loops: None,
                });
            }
            return run_step(ctx, idx, true).await;
        }
        if let StepKind::Approval {
            on_reject: Some(target),
            max_loops,
            ..
        } = &step.kind
        {
            if outcome == "rejected" {
                return branch_to(ctx, idx, Some(target), *max_loops, finish(&sr, outcome), t0);
            }
        }
        return Ok(Flow::Fail {
            step: None,
            reason: if outcome.is_empty() {
                "rejected".into()
            } else {
                outcome
            },
        });
    }
    if let Some(child) = waiting_for.strip_prefix("child:") {
        let cid: i64 = child.parse().unwrap_or_default();
        let Some(c) = svc.store.run(cid).await? else {
            return Ok(failed(sr.id, "the child run is gone", t0, now));
        };
        if c.status.is_active() {
            return Ok(Flow::Wait {
                step: None,
                waiting_for,
                wake_at: None,
            });
        }
        return Ok(match c.status {
            RunStatus::Completed | RunStatus::Silent => {
                let out = svc
                    .store
                    .step_runs_of(cid)
                    .await?
                    .into_iter()
                    .filter(|s| s.status == StepStatus::Completed && s.output.is_some())
                    .max_by_key(|s| s.id)
                    .and_then(|s| s.output)
                    .or(c.output)
                    .unwrap_or_default();
                let mut ch = finish(&sr, out);
                ch.prompt_tokens = c.prompt_tokens;
                ch.completion_tokens = c.completion_tokens;
                ch.cost_usd = c.cost_usd;
                ch.counted = false; // the child's spending counts for its parent
                Flow::Next {
                    step: ch,
                    next: next_of(idx),
                    loops: None,
                }
            }
            other => failed(
                sr.id,
                format!(
                    "child run {cid} {}: {}",
                    other.as_str(),
                    c.reason.unwrap_or_default()
                ),
                t0,
                now,
            ),
        });
    }
    if let Some(ids) = waiting_for.strip_prefix("confirm:") {
        let ids = parse_ids(ids);
        if svc.store.count_pending_workflows(&ids).await? > 0 {
            let expiry = Duration::from_std(svc.config.agent.confirm_expiry)
                .unwrap_or(Duration::minutes(10));
            return Ok(Flow::Wait {
                step: None,
                waiting_for,
                wake_at: Some(now + expiry + Duration::minutes(1)),
            });
        }
        let out = sr.output.clone().unwrap_or_default();
        return Ok(Flow::Next {
            step: finish(&sr, out),
            next: next_of(idx),
            loops: None,
        });
    }
    // timers and events
    match sr.status {
        StepStatus::Waiting => {
            let out = if waiting_for.starts_with("event:") {
                "timeout"
            } else {
                "done"
            };
            Ok(Flow::Next {
                step: finish(&sr, out.into()),
                next: next_of(idx),
                loops: None,
            })
        }
        StepStatus::Completed => {
            // an event completed it: the run row only moves on
            Ok(Flow::Next {
                step: finish(&sr, sr.output.clone().unwrap_or_default()),
                next: next_of(idx),
                loops: None,
            })
        }
        _ => run_step(ctx, idx, false).await,
    }
}

/// A run whose holder died mid-step: re-run the step, unless it may have called a destructive
/// tool (a prompt, a destructive tool, a child routine): then it is `interrupted` and the run
/// waits for a member to choose Retry or Skip.
async fn take_over(ctx: &Ctx<'_>, idx: usize) -> StoreResult<Flow> {
    let svc = ctx.svc;
    let now = svc.clock.now();
    let t0 = Instant::now();
    let step = &ctx.snap.def.steps[idx];
    let latest = latest_at(ctx, idx).await?;
    if ctx.run.waiting_for.is_some()
        && latest.as_ref().map(|s| s.status) == Some(StepStatus::Waiting)
    {
        // its holder died after claiming a lapsed wait, before resuming it: resume it now
        return resume_step(ctx, idx).await;
    }
    let Some(sr) = latest.filter(|s| s.status == StepStatus::Running) else {
        return run_step(ctx, idx, false).await;
    };
    let risky = match &step.kind {
        StepKind::Prompt { .. } | StepKind::Routine { .. } => sr.kind != StepType::Approval,
        StepKind::Tool { tool, .. } => ctx
            .eng
            .agent()
            .tools()
            .get(tool)
            .is_none_or(|t| t.destructive()),
        _ => false,
    };
    if !risky {
        let ch = StepChange {
            status: StepStatus::Failed,
            output: None,
            error: Some("its process stopped; run again".into()),
            ..done(sr.id, "", t0, now)
        };
        if !svc
            .store
            .advance_run(
                ctx.run.id,
                ctx.owner(),
                &RunChange::running(idx as i32, ctx.lease()),
                Some(&ch),
            )
            .await?
        {
            return Ok(Flow::Stop);
        }
        return run_step(ctx, idx, false).await;
    }
    let ch = StepChange {
        status: StepStatus::Interrupted,
        output: None,
        error: Some("interrupted: its process stopped mid-step".into()),
        ..done(sr.id, "", t0, now)
    };
    let c = RunChange {
        status: RunStatus::Waiting,
        waiting_for: Some("interrupted".into()),
        wake_at: None,
        ..RunChange::running(idx as i32, ctx.lease())
    };
    if svc
        .store
        .advance_run(ctx.run.id, ctx.owner(), &c, Some(&ch))
        .await?
    {
        tracing::warn!(
            run = ctx.run.id,
            step = idx,
            "run step interrupted; asking Retry/Skip"
        );
        let html = format!(
            "Run {} of <b>{}</b>: {} was cut off while it ran (hearth stopped) and may already have changed something. Retry it, or skip it?",
            ctx.run.id,
            format::escape_html(&ctx.routine.name),
            format::escape_html(&ctx.label(idx)),
        );
        let buttons = vec![vec![
            Button {
                label: "Retry".into(),
                data: format!("run:retry:{}", ctx.run.id),
            },
            Button {
                label: "Skip".into(),
                data: format!("run:skip:{}", ctx.run.id),
            },
        ]];
        notice(svc, ctx.chat_id(), html, buttons).await;
        if !ctx.snap.single {
            progress::refresh(svc, ctx.run.id).await;
        }
    }
    Ok(Flow::Stop)
}

/// The turn's scope acting for the run owner (`member_turn`: destructive calls wait for the
/// owner's confirmation). `None` when the chat is unknown.
async fn scope_for(ctx: &Ctx<'_>, member_turn: bool) -> StoreResult<Option<Scope>> {
    let svc = ctx.svc;
    let Some(chat) = svc.store.chat(ctx.chat_id()).await? else {
        return Ok(None);
    };
    let chat_kind = if chat.kind == "private" {
        ChatKind::Private
    } else {
        ChatKind::Group
    };
    let actor = ctx.run_owner();
    let member = if chat_kind == ChatKind::Group {
        svc.store.member(chat.id, actor).await?
    } else {
        None
    };
    let actor_name = match (&member, chat_kind) {
        (Some(m), _) => m.first_name.clone(),
        (None, ChatKind::Private) => chat.title.clone(),
        _ => "the routine's owner".into(),
    };
    Ok(Some(Scope {
        chat,
        chat_kind,
        actor_id: Some(actor),
        actor_name,
        member,
        window_start_id: None,
        addressed: true,
        member_turn,
    }))
}

/// A multi-step run's `prompt` step: an agent turn in the chat under the chat lock (held only
/// for the turn). The output is the model's final text; destructive calls wait for the run
/// owner's confirmation unless the step is `auto_approve`.
async fn prompt_step(
    ctx: &Ctx<'_>,
    idx: usize,
    step: &Step,
    id: i64,
    text: &str,
    t0: Instant,
) -> StoreResult<Flow> {
    let svc = ctx.svc;
    let started = svc.clock.now();
    let lock = svc.locks.lock(ctx.chat_id()).await;
    let Some(scope) = scope_for(ctx, !step.auto_approve).await? else {
        return Ok(failed(id, "the chat is unknown", t0, started));
    };
    let current = format!(
        "[Routine '{}', run {}, {} of {}]\n{text}",
        ctx.routine.name,
        ctx.run.id,
        ctx.label(idx),
        ctx.snap.def.steps.len()
    );
    let outcome = ctx
        .eng
        .agent()
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
    let confirmations = if step.auto_approve {
        vec![]
    } else {
        svc.store
            .confirmations_since(ctx.chat_id(), ctx.run_owner(), started)
            .await?
    };
    drop(lock);
    let now = svc.clock.now();
    let cost = run_cost(
        &svc.config,
        outcome.prompt_tokens,
        outcome.completion_tokens,
    );
    let tokens = |mut c: StepChange| {
        c.prompt_tokens = outcome.prompt_tokens as i32;
        c.completion_tokens = outcome.completion_tokens as i32;
        c.cost_usd = cost;
        c
    };
    Ok(match &outcome.result {
        Ok(out) if !confirmations.is_empty() => {
            let expiry = Duration::from_std(svc.config.agent.confirm_expiry)
                .unwrap_or(Duration::minutes(10));
            let ids: Vec<String> = confirmations.iter().map(i64::to_string).collect();
            Flow::Wait {
                step: Some(tokens(StepChange {
                    status: StepStatus::Waiting,
                    finished_at: None,
                    workflow_id: confirmations.first().copied(),
                    ..done(id, out.clone(), t0, now)
                })),
                waiting_for: format!("confirm:{}", ids.join(",")),
                wake_at: Some(now + expiry + Duration::minutes(1)),
            }
        }
        Ok(out) => Flow::Next {
            step: tokens(done(id, out.clone(), t0, now)),
            next: next_of(idx),
            loops: None,
        },
        Err(e) => {
            let error = match e {
                TurnFailure::Loop => "loop: the same tool call three times".to_string(),
                other => other.user_message().to_string(),
            };
            match failed(id, error, t0, now) {
                Flow::Fail { step, reason } => Flow::Fail {
                    step: step.map(tokens),
                    reason,
                },
                f => f,
            }
        }
    })
}

/// A single-prompt routine's one step, exactly as before runs had steps: the header, the
/// catch-up and quiet notes, `{placeholders}`, the reply posted to the chat, the quiet token, a
/// failure notice once (not on every failing tick).
async fn single_prompt(ctx: &Ctx<'_>, idx: usize, prompt: &str) -> StoreResult<Flow> {
    let svc = ctx.svc;
    let t0 = Instant::now();
    let r = &ctx.routine;
    let run = &ctx.run;
    let id = new_step_run(ctx, idx, StepType::Prompt, StepStatus::Running, None).await?;
    let started = svc.clock.now();
    let local = started.with_timezone(&zone_of(r));
    let tick = r.tick_count as i64 + 1;
    let input = run.input.clone().unwrap_or_default();
    let vars = PromptVars {
        date: local.format("%a %Y-%m-%d").to_string(),
        time: local.format("%H:%M").to_string(),
        tick_count: tick,
        state: r.state.clone(),
        api_args: if run.source == RunSource::Api && r.api_args {
            api_args_text(&input)
        } else {
            String::new()
        },
        event: if run.source == RunSource::Event {
            event_text(&input)
        } else {
            String::new()
        },
    };
    let body = render_prompt(prompt, &vars).unwrap_or_else(|err| {
        tracing::warn!(routine_id = r.id, error = %err, "routine prompt not rendered");
        prompt.to_string()
    });
    let trigger = match run.trigger_id {
        Some(tid) => svc
            .store
            .routine_triggers(r.id)
            .await?
            .into_iter()
            .find(|t| t.id == tid)
            .map(|t| super::describe_trigger(&t, zone_of(r))),
        None => None,
    };
    let current = routine_message(r, run, trigger.as_deref(), tick, &body);
    let lock = svc.locks.lock(ctx.chat_id()).await;
    // the routine's own turn acts for its owner (who set it up)
    let Some(mut scope) = scope_for(ctx, false).await? else {
        drop(lock);
        return Ok(failed(id, "chat unknown", t0, started));
    };
    if scope.actor_id != Some(r.owner_id) {
        scope.actor_id = Some(r.owner_id);
        scope.member = if scope.chat_kind == ChatKind::Group {
            svc.store.member(scope.chat.id, r.owner_id).await?
        } else {
            None
        };
        if let Some(m) = &scope.member {
            scope.actor_name = m.first_name.clone();
        }
    }
    let chat_id = scope.chat.id;
    let outcome = ctx
        .eng
        .agent()
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
    let cost = run_cost(
        &svc.config,
        outcome.prompt_tokens,
        outcome.completion_tokens,
    );
    let now = svc.clock.now();
    let with_tokens = |mut c: StepChange| {
        c.prompt_tokens = outcome.prompt_tokens as i32;
        c.completion_tokens = outcome.completion_tokens as i32;
        c.cost_usd = cost;
        c
    };
    let flow = match &outcome.result {
        Ok(text) if r.quiet && text.trim() == QUIET_TOKEN => Flow::Silent {
            step: with_tokens(done(id, text.clone(), t0, now)),
        },
        Ok(text) => {
            let sent = svc
                .outbox
                .send(Outbound {
                    chat_id,
                    html: format::markdown_to_html(text),
                    buttons: vec![],
                    reply_to: None,
                })
                .await;
            match sent {
                Ok(_) => Flow::Next {
                    step: with_tokens(done(id, text.clone(), t0, now)),
                    next: next_of(idx),
                    loops: None,
                },
                Err(e) => match failed(id, format!("delivery: {e}"), t0, now) {
                    Flow::Fail { step, reason } => Flow::Fail {
                        step: step.map(|mut s| {
                            s.output = Some(text.clone());
                            with_tokens(s)
                        }),
                        reason,
                    },
                    f => f,
                },
            }
        }
        Err(e) => {
            // Tell the chat once (not on every failing tick): only after a non-failed run.
            let prev = svc.store.routine_runs(r.id, 2).await?;
            let last_was_error = prev
                .iter()
                .find(|x| x.id != run.id)
                .is_some_and(|x| x.status == RunStatus::Failed);
            if !last_was_error {
                let html = format!(
                    "Routine <b>{}</b> could not run: {} (I'll keep trying on schedule; /routine_history {} shows runs.)",
                    format::escape_html(&r.name),
                    format::escape_html(e.user_message()),
                    format::escape_html(&r.name),
                );
                notice(svc, chat_id, html, vec![]).await;
            }
            match failed(id, e.cause(), t0, now) {
                Flow::Fail { step, reason } => Flow::Fail {
                    step: step.map(with_tokens),
                    reason,
                },
                f => f,
            }
        }
    };
    drop(lock);
    Ok(flow)
}

/// `{apiArgs}`: the api body as it came (a non-object body is kept under "body").
fn api_args_text(input: &str) -> String {
    match serde_json::from_str::<Value>(input) {
        Ok(Value::Object(m)) if m.is_empty() => String::new(),
        Ok(Value::Object(m)) if m.len() == 1 && m.contains_key("body") => m["body"].to_string(),
        Ok(v) => v.to_string(),
        Err(_) => String::new(),
    }
}

/// `{event}`: the event as hearth publishes it (its fields in declaration order).
fn event_text(input: &str) -> String {
    serde_json::from_str::<HearthEvent>(input)
        .ok()
        .and_then(|e| serde_json::to_string(&e).ok())
        .unwrap_or_else(|| input.to_string())
}

/// The turn's current message: a one-line header (routine, trigger, run number), the catch-up
/// and quiet notes when they apply, then the filled template.
fn routine_message(
    r: &RoutineRow,
    run: &RunRow,
    trigger: Option<&str>,
    tick: i64,
    body: &str,
) -> String {
    let trigger = trigger.unwrap_or(run.source.as_str());
    let mut s = format!("[Routine '{}' ({trigger}), run {tick}]\n", r.name);
    if run.catch_up {
        let when = run
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

/// A member of `chat_id` by Telegram id, first name or username (case-insensitive).
async fn find_member(svc: &Services, chat_id: i64, who: &str) -> StoreResult<Option<i64>> {
    let who = who.trim().trim_start_matches('@');
    if let Ok(id) = who.parse::<i64>() {
        return Ok(Some(id));
    }
    Ok(svc
        .store
        .members(chat_id)
        .await?
        .into_iter()
        .find(|m| {
            m.first_name.eq_ignore_ascii_case(who)
                || m.username
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(who))
        })
        .map(|m| m.user_id))
}

/// The template variables for step `idx` (issue 9 contract, rendered by [`super::vars`]):
/// `initial`, `steps` by name and by 1-based number (`output`, `reason`; the latest completed
/// step run of each position), `chat.name`, `date` (local `YYYY-MM-DD`), `run.id`, `retry`
/// (`reason`, `count`).
async fn context(ctx: &Ctx<'_>, idx: usize) -> StoreResult<Vars> {
    let svc = ctx.svc;
    let all = svc.store.step_runs_of(ctx.run.id).await?;
    let chat = svc.store.chat(ctx.chat_id()).await?;
    let date = svc
        .clock
        .now()
        .with_timezone(&zone_of(&ctx.routine))
        .format("%Y-%m-%d")
        .to_string();
    let mut vars = Vars::new(chat.map(|c| c.title).unwrap_or_default(), date, ctx.run.id);
    let initial: Map<String, Value> = ctx
        .run
        .input
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    for (k, v) in initial {
        let text = match v {
            Value::String(s) => s,
            other => other.to_string(),
        };
        vars = vars.initial(k, text);
    }
    for (i, s) in ctx.snap.def.steps.iter().enumerate() {
        let latest = all
            .iter()
            .filter(|r| r.position == i as i32 && r.status == StepStatus::Completed)
            .filter(|r| r.kind == s.kind.step_type())
            .max_by_key(|r| r.id);
        if let Some(l) = latest {
            vars = vars.step(
                i + 1,
                s.name.as_deref(),
                l.output.clone().unwrap_or_default(),
                l.reason.clone().unwrap_or_default(),
            );
        }
    }
    let passes = all
        .iter()
        .filter(|r| r.position == idx as i32 && r.status == StepStatus::Completed)
        .count();
    if passes > 0 {
        let reason = all
            .iter()
            .filter(|r| r.position > idx as i32 && r.status == StepStatus::Completed)
            .max_by_key(|r| r.id)
            .and_then(|r| r.reason.clone())
            .unwrap_or_default();
        vars = vars.retry(reason, passes as u32);
    }
    Ok(vars)
}

/// Render a step template (strict: an unknown variable is an error naming it).
fn render(template: &str, vars: &Vars) -> Result<String, String> {
    super::vars::render(template, vars).map_err(|e| format!("template: {e}"))
}

/// Render the strings inside a JSON value (tool arguments).
fn render_value(v: &Value, ctx: &Vars) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => Value::String(render(s, ctx)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| render_value(x, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => {
            let mut o = Map::new();
            for (k, x) in m {
                o.insert(k.clone(), render_value(x, ctx)?);
            }
            Value::Object(o)
        }
        other => other.clone(),
    })
}

/// A condition's value: a hearth fact or a rendered template.
async fn check_value(
    ctx: &Ctx<'_>,
    check: &Check,
    vars: &Vars,
) -> StoreResult<Result<String, String>> {
    let svc = ctx.svc;
    let v = check.value.trim();
    let Some(fact) = v.strip_prefix("fact:") else {
        return Ok(render(v, vars));
    };
    let now = svc.clock.now();
    let chat_id = ctx.chat_id();
    let (name, arg) = fact.split_once(':').unwrap_or((fact, ""));
    let arg = arg.trim();
    Ok(Ok(match name {
        "overdue_count" => svc
            .store
            .open_chores(chat_id)
            .await?
            .iter()
            .filter(|c| matches!(c.status, ChoreStatus::Todo | ChoreStatus::Pending))
            .filter(|c| c.next_due.is_some_and(|d| d < now))
            .count()
            .to_string(),
        "chore_status" => {
            let chores = svc.store.open_chores(chat_id).await?;
            let id: Option<i64> = arg.parse().ok();
            chores
                .iter()
                .find(|c| Some(c.id) == id || c.title.eq_ignore_ascii_case(arg))
                .map(|c| c.status.as_str().to_string())
                .unwrap_or_else(|| "none".into())
        }
        "workflow_status" => {
            let pos = ctx
                .snap
                .def
                .steps
                .iter()
                .position(|s| s.name.as_deref() == Some(arg));
            let wf = match pos {
                Some(p) => svc
                    .store
                    .step_runs_of(ctx.run.id)
                    .await?
                    .into_iter()
                    .filter(|s| s.position == p as i32 && s.workflow_id.is_some())
                    .max_by_key(|s| s.id)
                    .and_then(|s| s.workflow_id),
                None => return Ok(Err(format!("fact: no step named '{arg}'"))),
            };
            match wf {
                Some(id) => svc
                    .store
                    .workflow(id)
                    .await?
                    .map(|w| w.status.as_str().to_string())
                    .unwrap_or_else(|| "none".into()),
                None => "none".into(),
            }
        }
        "member_claimed" => {
            let who = match render(arg, vars) {
                Ok(w) => w,
                Err(e) => return Ok(Err(e)),
            };
            let Some(uid) = find_member(svc, chat_id, &who).await? else {
                return Ok(Ok("no".into()));
            };
            let since = ctx.run.started_at;
            let claimed = svc.store.open_chores(chat_id).await?.iter().any(|c| {
                c.assignee_id == Some(uid)
                    && (c.status == ChoreStatus::Pending
                        || (c.completed_by == Some(uid)
                            && c.completed_at.is_some_and(|t| t >= since)))
            });
            if claimed { "yes" } else { "no" }.to_string()
        }
        "elapsed_minutes" => (now - ctx.run.started_at).num_minutes().to_string(),
        other => return Ok(Err(format!("fact: unknown fact '{other}'"))),
    }))
}

/// Apply a condition's test to `value`.
fn test(t: &Test, value: &str) -> Result<bool, String> {
    Ok(match t {
        Test::Contains(s) => value.to_lowercase().contains(&s.to_lowercase()),
        Test::Equals(s) => value.trim().eq_ignore_ascii_case(s.trim()),
        Test::Compare(expr) => {
            let Some((op, want)) = super::validate::parse_compare(expr) else {
                return Err(format!(
                    "compare: '{}' needs >, >=, <, <=, == or != and a number",
                    expr.trim()
                ));
            };
            let Some(got) = first_number(value) else {
                return Ok(false);
            };
            match op {
                ">=" => got >= want,
                "<=" => got <= want,
                "==" => got == want,
                "!=" => got != want,
                ">" => got > want,
                _ => got < want,
            }
        }
    })
}

/// The first number in a text ("3 chores" → 3).
fn first_number(s: &str) -> Option<f64> {
    let start = s.find(|c: char| c.is_ascii_digit() || c == '-')?;
    let tail: String = s[start..]
        .chars()
        .enumerate()
        .take_while(|(i, c)| c.is_ascii_digit() || *c == '.' || (*i == 0 && *c == '-'))
        .map(|(_, c)| c)
        .collect();
    tail.parse().ok()
}

/// A wait's or an expiry's span ("1d", "2h30m", "90s"; [`super::validate::parse_duration`]).
pub fn parse_span(s: &str) -> Option<Duration> {
    super::validate::parse_duration(s).and_then(|d| Duration::from_std(d).ok())
}

/// The next local `HH:MM` in `zone` strictly after `now` (UTC).
fn next_local(hhmm: &str, now: DateTime<Utc>, zone: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    let t = NaiveTime::parse_from_str(hhmm.trim(), "%H:%M").ok()?;
    let local = now.with_timezone(&zone).date_naive();
    for d in 0..3 {
        let day = local + Duration::days(d);
        let at = crate::schedule::resolve_local(day.and_time(t), zone);
        if at > now {
            return Some(at);
        }
    }
    None
}

/// A confirmation was resolved (confirmed, cancelled or expired): wake the runs of its chat
/// whose `prompt` step waits for it once none of their confirmations is pending any more.
pub async fn on_confirmation_resolved(svc: &Services, chat_id: i64, workflow_id: i64) {
    let res: StoreResult<()> = async {
        for run in svc.store.runs_waiting_for(chat_id, "confirm:").await? {
            let Some(w) = run.waiting_for.as_deref() else {
                continue;
            };
            let ids = parse_ids(w.trim_start_matches("confirm:"));
            if !ids.contains(&workflow_id) {
                continue;
            }
            if svc.store.count_pending_workflows(&ids).await? == 0 {
                svc.store.wake_run(run.id, Some(w), svc.clock.now()).await?;
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = res {
        tracing::warn!(workflow_id, error = %e, "run waiting on a confirmation not woken");
    }
}

/// An event arrived: complete the event waits of its chat whose kind and filters match (the
/// event's fields become the step's output) and wake their runs. Returns how many.
pub async fn on_event_wait(svc: &Services, ev: &HearthEvent) -> StoreResult<usize> {
    let kind = ev.kind();
    let runs = svc
        .store
        .runs_waiting_for(ev.chat_id(), &format!("event:{kind}"))
        .await?;
    if runs.is_empty() {
        return Ok(0);
    }
    let fields = serde_json::to_value(ev).unwrap_or(Value::Null);
    let mut n = 0;
    for run in runs {
        if run.waiting_for.as_deref() != Some(&format!("event:{kind}")) {
            continue;
        }
        let Some(sr) = svc
            .store
            .step_runs_of(run.id)
            .await?
            .into_iter()
            .filter(|s| s.position == run.current_step && s.status == StepStatus::Waiting)
            .max_by_key(|s| s.id)
        else {
            continue;
        };
        let filters = sr
            .input
            .as_deref()
            .and_then(|i| serde_json::from_str::<Value>(i).ok())
            .and_then(|v| v.get("filters").cloned())
            .unwrap_or_else(|| json!({}));
        let matches = filters.as_object().is_none_or(|f| {
            f.iter().all(|(k, want)| {
                let want = want.as_str().unwrap_or_default();
                let got = match fields.get(k) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => "none".into(),
                    Some(other) => other.to_string(),
                };
                got.eq_ignore_ascii_case(want)
            })
        });
        if matches
            && svc
                .store
                .complete_waiting_step(sr.id, run.id, &fields.to_string(), svc.clock.now())
                .await?
        {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_tests_and_local_times() {
        assert_eq!(parse_span("1d"), Some(Duration::days(1)));
        assert_eq!(parse_span("2h30m"), Some(Duration::minutes(150)));
        assert_eq!(parse_span("90s"), Some(Duration::seconds(90)));
        assert_eq!(parse_span("2 weeks"), Some(Duration::days(14)));
        assert_eq!(parse_span("91d"), None, "over the 90-day wait limit");
        assert_eq!(parse_span("5"), None);
        assert!(test(&Test::Contains("FISH".into()), "no fish today").unwrap());
        assert!(test(&Test::Equals("yes".into()), "  Yes ").unwrap());
        assert!(test(&Test::Compare("> 3".into()), "4 chores overdue").unwrap());
        assert!(!test(&Test::Compare("<= 3".into()), "4 chores").unwrap());
        assert!(test(&Test::Compare("== -1.5".into()), "x -1.5").unwrap());
        assert!(!test(&Test::Compare("> 0".into()), "none").unwrap());
        assert!(test(&Test::Compare("about 3".into()), "3").is_err());
        let now = "2026-11-21T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let zone: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        // 10:00 UTC is 11:00 in Berlin: 09:00 local is tomorrow 08:00 UTC
        assert_eq!(
            next_local("09:00", now, zone),
            Some("2026-11-22T08:00:00Z".parse().unwrap())
        );
        assert_eq!(
            next_local("12:30", now, zone),
            Some("2026-11-21T11:30:00Z".parse().unwrap())
        );
        assert_eq!(next_local("25:00", now, zone), None);
    }

    #[test]
    fn templates_are_strict_and_read_step_numbers() {
        let ctx = Vars::new("Flat", "2026-11-30", 1)
            .initial("who", "Ann")
            .step(1, Some("plan"), "one", "");
        assert_eq!(
            render(
                "{{initial.who}}: {{steps.1.output}} / {{steps.plan.output}}",
                &ctx
            )
            .unwrap(),
            "Ann: one / one"
        );
        let err = render("{{steps.lsit.output}}", &ctx).unwrap_err();
        assert!(err.starts_with("template: "), "{err}");
        assert!(render("{{initial.nope}}", &ctx).is_err());
        assert_eq!(
            render_value(&json!({"title": "{{initial.who}}", "n": 2}), &ctx).unwrap(),
            json!({"title": "Ann", "n": 2})
        );
    }
}
