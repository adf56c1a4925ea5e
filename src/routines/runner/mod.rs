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
//! Uses: services, agent, store, routines::{steps, gate, progress, model}, format; the
//! submodules `steps` (one step), `resume` (waking a step), `facts` (variables, conditions).

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::{
    engine::RoutineEngine,
    progress,
    runs::RunView,
    steps::{Definition, Step, StepKind},
    zone_of, RoutineError, KEEP_RUNS,
};
use crate::{
    events::HearthEvent,
    format,
    services::Services,
    store::{
        AdvanceExtras, Advanced, ChatRow, MemberRow, NewRun, NewStepRun, Publication, RoutineRow,
        RoutineStatus, RunChange, RunRow, RunSource, RunStatus, StepChange, StepRunRow, StepStatus,
        StepType, StoreResult, TriggerKind, TurnRecord,
    },
    types::{Button, Outbound},
};

mod facts;
mod replay;
mod resume;
mod steps;

pub use facts::parse_span;
/// For the dry run (`routines::dryrun`): the same tool-argument rendering and condition tests.
pub(crate) use facts::{chat_fact, render_value, test as check_test};
pub use resume::{on_confirmation_resolved, on_event_wait};

use resume::{resume_step, take_over, wait_resolved};
use steps::run_step;

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
                        tools: None,
                    },
                }],
                recorded: None,
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
    let fired = skip.map_or("fired", |s| {
        if s == "daily cap" {
            "capped"
        } else {
            "skipped"
        }
    });
    crate::metrics::fire(req.source.as_str(), fired);
    match skip {
        Some(reason) => {
            crate::metrics::run_ended(RunStatus::Skipped.as_str());
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

/// The step run to insert, in the claim's commit, for the step a run goes on to after its timer
/// ([`crate::store::Store::finish_timer_waits`]): `run` as moved on (`current_step` the next
/// step). Only for a `message` step without an approval gate (its step run has no input, so it
/// is known before the step starts); `attempt` is set by the store. `None` otherwise.
pub(super) fn resumed_step_run(run: &RunRow, now: DateTime<Utc>) -> Option<NewStepRun> {
    let snap = snapshot_of(run)?;
    let idx = usize::try_from(run.current_step).ok()?;
    let step = snap.def.steps.get(idx)?;
    if snap.single || step.require_approval || !matches!(step.kind, StepKind::Message { .. }) {
        return None;
    }
    Some(NewStepRun {
        run_id: run.id,
        position: run.current_step,
        attempt: 0,
        name: step.name.clone(),
        kind: StepType::Message,
        status: StepStatus::Running,
        input: None,
        started_at: Some(now),
    })
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

/// What the engine read for a claimed run together with the rest of its claim batch (one query
/// per batch instead of one per run): given to [`execute`].
#[derive(Debug, Default)]
pub(super) struct Prefetched {
    /// All the run's step runs in id order, read after its claim (only for a run entering
    /// afresh, pending or past a lapsed timer: nobody else writes its step runs then).
    pub steps: Option<Vec<StepRunRow>>,
    /// The run's chat (`None`: read when needed).
    pub chat: Option<Option<ChatRow>>,
    /// (position, step run id): a `running` step run the claim inserted for the step the run
    /// resumes at (a `message` step after a timer, [`crate::store::Store::finish_timer_waits`]);
    /// the executor uses it instead of inserting one.
    pub prepared: Option<(usize, i64)>,
}

/// Everything one step execution needs.
struct Ctx<'a> {
    eng: &'a RoutineEngine,
    svc: &'a Services,
    routine: RoutineRow,
    snap: Snapshot,
    run: RunRow,
    /// The run's step runs as this execution last read or wrote them (id order), `None` until
    /// read. Only the holder writes a held run's step runs, so they change under this execution
    /// only by its own writes, which update or clear the cache ([`Ctx::noted`],
    /// [`Ctx::forget_steps`]); a cancel that marks them skipped also makes the next commit
    /// touch 0 rows, and the execution stops. Saves reading them again for every template
    /// context, attempt number and progress message.
    steps: std::sync::Mutex<Option<Vec<StepRunRow>>>,
    /// The run's chat, read once per execution.
    chat: tokio::sync::OnceCell<Option<ChatRow>>,
    /// The run owner's member row in the run's chat, read once per execution (a prompt step's
    /// scope).
    member: tokio::sync::OnceCell<Option<MemberRow>>,
    /// The turn of the step being executed, not yet recorded: written with the step's commit
    /// ([`commit`]), or on its own if the execution stops before one ([`execute`]).
    turn: std::sync::Mutex<Option<TurnRecord>>,
    /// (position, step run id): the step run the last commit inserted for the step the run went
    /// on to ([`prepare_next`]); [`new_step_run`] takes it instead of inserting one.
    prepared: std::sync::Mutex<Option<(usize, i64)>>,
}

impl Ctx<'_> {
    /// The run's step runs in id order (the cache, else read and cached).
    async fn step_runs(&self) -> StoreResult<Vec<StepRunRow>> {
        if let Some(v) = self.cached_steps().as_ref() {
            return Ok(v.clone());
        }
        let v = self.svc.store.step_runs_of(self.run.id).await?;
        *self.cached_steps() = Some(v.clone());
        Ok(v)
    }

    fn cached_steps(&self) -> std::sync::MutexGuard<'_, Option<Vec<StepRunRow>>> {
        self.steps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Step runs were written other than through [`Ctx::noted`]: read them again when needed.
    fn forget_steps(&self) {
        *self.cached_steps() = None;
    }

    /// A step change was committed: update the cached row (or forget the cache if it is not
    /// there).
    fn noted(&self, c: &StepChange) {
        let mut cache = self.cached_steps();
        let Some(rows) = cache.as_mut() else {
            return;
        };
        match rows.iter_mut().find(|r| r.id == c.id) {
            Some(r) => {
                r.status = c.status;
                r.output = c.output.clone();
                r.reason = c.reason.clone();
                r.error = c.error.clone();
                r.prompt_tokens = c.prompt_tokens;
                r.completion_tokens = c.completion_tokens;
                r.cost_usd = c.cost_usd;
                r.duration_ms = c.duration_ms;
                r.workflow_id = c.workflow_id;
                r.finished_at = c.finished_at;
            }
            None => *cache = None,
        }
    }

    /// The run owner's member row in the run's chat (read once per execution).
    async fn owner_member(&self, chat_id: i64) -> StoreResult<Option<MemberRow>> {
        Ok(self
            .member
            .get_or_try_init(|| self.svc.store.member(chat_id, self.run_owner()))
            .await?
            .clone())
    }

    /// Keep the step's turn for its commit (a turn already kept is recorded now).
    async fn keep_turn(&self, t: TurnRecord) {
        let old = self
            .turn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(t);
        if let Some(old) = old {
            record_turn(self.svc, old).await;
        }
    }

    fn take_turn(&self) -> Option<TurnRecord> {
        self.turn.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The run's chat (read once per execution).
    async fn chat(&self) -> StoreResult<Option<ChatRow>> {
        Ok(self
            .chat
            .get_or_try_init(|| self.svc.store.chat(self.chat_id()))
            .await?
            .clone())
    }

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
    pre: Prefetched,
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
        steps: std::sync::Mutex::new(pre.steps),
        chat: tokio::sync::OnceCell::new_with(pre.chat),
        member: tokio::sync::OnceCell::new(),
        turn: std::sync::Mutex::new(None),
        prepared: std::sync::Mutex::new(pre.prepared),
    };
    let res = steps_of(&mut ctx, entry).await;
    // a turn no commit took (the execution stopped on storage): its tokens are still recorded
    if let Some(t) = ctx.take_turn() {
        record_turn(svc, t).await;
    }
    res
}

/// Record a turn on its own (logged when it fails: the turn happened either way).
async fn record_turn(svc: &Services, t: TurnRecord) {
    if let Err(e) = svc.store.record_turn(t.as_new()).await {
        tracing::warn!(chat_id = t.chat_id, error = %e, "turn not recorded");
    }
}

/// The executor's loop over a held run's steps (see [`execute`]).
async fn steps_of(ctx: &mut Ctx<'_>, entry: Entry) -> StoreResult<()> {
    let eng = ctx.eng;
    let svc = ctx.svc;
    let mut entry = entry;
    loop {
        if ctx.run.status != RunStatus::Running || ctx.run.owner.as_deref() != Some(eng.owner()) {
            return Ok(()); // paused, cancelled or taken over
        }
        let idx = ctx.run.current_step.max(0) as usize;
        if idx >= ctx.snap.def.steps.len() {
            let c = end_change(&ctx.run, RunStatus::Completed, None, svc);
            if let Some(tick) = end_run(ctx, &c, None).await? {
                ended(ctx, RunStatus::Completed, None, tick).await?;
            }
            return Ok(());
        }
        let flow = match entry {
            Entry::Fresh => run_step(ctx, idx, false).await?,
            Entry::Woken => resume_step(ctx, idx).await?,
            Entry::TakeOver => take_over(ctx, idx).await?,
        };
        entry = Entry::Fresh;
        match apply(ctx, idx, flow).await? {
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
            if commit(ctx, &c, step.as_ref(), None, None).await?.is_none() {
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
            if let Some(tick) = end_run(ctx, &c, step.as_ref()).await? {
                ended(ctx, RunStatus::Failed, Some(reason), tick).await?;
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
            if let Some(tick) = end_run(ctx, &c, Some(&step)).await? {
                ended(ctx, RunStatus::Silent, None, tick).await?;
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
                if let Some(tick) = end_run(ctx, &c, Some(&step)).await? {
                    ended(ctx, RunStatus::Completed, None, tick).await?;
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
                if let Some(tick) = end_run(ctx, &c, Some(&step)).await? {
                    let html = format!(
                        "Run {} of <b>{}</b> stopped: it reached the cost limit of ${:.2} (spent ${cost:.2}).",
                        run.id,
                        format::escape_html(&ctx.routine.name),
                        cfg.cost_limit
                    );
                    notice(svc, ctx.chat_id(), html, vec![]).await;
                    ended(ctx, RunStatus::Failed, Some(reason), tick).await?;
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
                if commit(ctx, &c, Some(&step), None, None).await?.is_some() {
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
            let next = prepare_next(ctx, next_idx, &step).await;
            let row = commit(ctx, &c, Some(&step), None, next)
                .await?
                .map(|a| a.run);
            if row.is_some() {
                ctx.noted(&step);
                if multi {
                    refresh(ctx).await;
                }
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

/// Commit a change that ends the run (`c` from [`end_change`]) with the step's result, counting
/// the end on its routine in the same commit (the daily cap and `run N`). `None`: not held any
/// more (stop); else the routine's new `tick_count` (`None`: the routine is gone).
async fn end_run(
    ctx: &Ctx<'_>,
    c: &RunChange,
    step: Option<&StepChange>,
) -> StoreResult<Option<Option<i32>>> {
    let svc = ctx.svc;
    let r = &ctx.routine;
    let today = svc
        .clock
        .now()
        .with_timezone(&zone_of(r))
        .format("%Y-%m-%d")
        .to_string();
    let done = commit(ctx, c, step, Some((r.id, &today)), None).await?;
    if done.is_some() {
        if let Some(s) = step {
            ctx.noted(s);
        }
    }
    Ok(done.map(|a| a.tick))
}

/// Commit a step's result with the run's move ([`crate::store::Store::advance_run_with`]): the
/// step's turn kept by [`Ctx::keep_turn`] goes in the same commit, `count` counts an end on the
/// routine, `next` is the step run of the step the run goes on to (then cached and taken by
/// [`new_step_run`]). `None`: not held any more (the executor stops).
async fn commit(
    ctx: &Ctx<'_>,
    c: &RunChange,
    step: Option<&StepChange>,
    count: Option<(i64, &str)>,
    next: Option<NewStepRun>,
) -> StoreResult<Option<Advanced>> {
    let extras = AdvanceExtras {
        turn: ctx.take_turn(),
        next_step: next,
    };
    let done = ctx
        .svc
        .store
        .advance_run_with(ctx.run.id, ctx.owner(), c, step, count, extras)
        .await?;
    if let Some(row) = done.as_ref().and_then(|a| a.next_step.clone()) {
        *ctx.prepared.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((row.position.max(0) as usize, row.id));
        if let Some(rows) = ctx.cached_steps().as_mut() {
            rows.push(row);
        }
    }
    Ok(done)
}

/// The step run of step `idx` to insert with the commit that moves the run on to it, when the
/// step run is known before the step starts: a `message` step (no input) or a `prompt` step
/// (its prompt rendered with `finished`, the step just finished, noted in the cache first) of a
/// multi-step run, without an approval gate. `None` otherwise, or when the run's step runs are
/// not cached (the prompt's variables would be read without `finished`) or the prompt does not
/// render (the step fails as usual).
async fn prepare_next(ctx: &Ctx<'_>, idx: usize, finished: &StepChange) -> Option<NewStepRun> {
    let step = ctx.snap.def.steps.get(idx)?;
    if ctx.snap.single || step.require_approval || ctx.cached_steps().is_none() {
        return None;
    }
    ctx.noted(finished);
    let input = match &step.kind {
        StepKind::Message { .. } => None,
        StepKind::Prompt { prompt, .. } => {
            let vars = facts::context(ctx, idx).await.ok()?;
            Some(facts::render(prompt, &vars).ok()?)
        }
        _ => return None,
    };
    let attempt = ctx
        .cached_steps()
        .as_ref()?
        .iter()
        .filter(|s| s.position == idx as i32)
        .count() as i32
        + 1;
    Some(NewStepRun {
        run_id: ctx.run.id,
        position: idx as i32,
        attempt,
        name: step.name.clone(),
        kind: step.kind.step_type(),
        status: StepStatus::Running,
        input,
        started_at: Some(ctx.svc.clock.now()),
    })
}

/// Refresh the run's progress message from what this execution knows: its routine, snapshot
/// and cached step runs, with the run row read fresh ([`progress::refresh_known`]). Everything
/// is read when the cache is empty or the run is no longer running in this process's hands
/// (paused, cancelled, taken over: others may have written its step runs).
async fn refresh(ctx: &Ctx<'_>) {
    let me = ctx.owner();
    progress::refresh_known(ctx.svc, ctx.run.id, |run: RunRow| {
        if run.status != RunStatus::Running || run.owner.as_deref() != Some(me) {
            return None;
        }
        let steps = ctx.cached_steps().clone()?;
        Some(RunView {
            run,
            routine: ctx.routine.clone(),
            definition: Some(ctx.snap.def.clone()),
            steps,
        })
    })
    .await;
}

/// After a run ended (its end counted: `tick` is the routine's new `tick_count`, `None` when
/// the routine is gone): events, the parent's wake, a spent routine's end, pruning.
async fn ended(
    ctx: &Ctx<'_>,
    status: RunStatus,
    reason: Option<String>,
    tick: Option<i32>,
) -> StoreResult<()> {
    let svc = ctx.svc;
    let run = &ctx.run;
    let now = svc.clock.now();
    let chat_id = ctx.chat_id();
    crate::metrics::run_ended(status.as_str());
    if status == RunStatus::Silent {
        crate::metrics::fire(run.source.as_str(), "silent");
    }
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
        let cached = ctx.cached_steps().clone();
        match cached {
            Some(steps) => {
                let view = RunView {
                    run: RunRow {
                        status,
                        ..run.clone()
                    },
                    routine: ctx.routine.clone(),
                    definition: Some(ctx.snap.def.clone()),
                    steps,
                };
                progress::refresh_ended(svc, view).await;
            }
            None => progress::refresh(svc, run.id).await,
        }
    }
    // counted with the end; a spent single-prompt routine ends
    let r = &ctx.routine;
    let Some(tick) = tick else {
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

/// The latest step run of position `idx` (this pass when the run was woken).
async fn latest_at(ctx: &Ctx<'_>, idx: usize) -> StoreResult<Option<StepRunRow>> {
    Ok(ctx
        .step_runs()
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
    let prepared = {
        let mut p = ctx.prepared.lock().unwrap_or_else(|p| p.into_inner());
        match *p {
            Some((at, id)) if at == idx && status == StepStatus::Running => {
                *p = None;
                Some(id)
            }
            _ => None,
        }
    };
    if let Some(id) = prepared {
        if !ctx.snap.single {
            refresh(ctx).await;
        }
        return Ok(id);
    }
    let attempt = ctx
        .step_runs()
        .await?
        .iter()
        .filter(|s| s.position == idx as i32)
        .count() as i32
        + 1;
    let row = ctx
        .svc
        .store
        .insert_step_run_row(NewStepRun {
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
    let id = row.id;
    if let Some(rows) = ctx.cached_steps().as_mut() {
        rows.push(row);
    }
    if !ctx.snap.single {
        refresh(ctx).await;
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

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};
    use serde_json::json;

    use super::facts::{render, render_value, test};
    use super::resume::next_local;
    use super::*;
    use crate::routines::{steps::Test, vars::Vars};

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
