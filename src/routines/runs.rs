//! The run control service (issue 9, items 8 and 12): pause, resume, cancel, retry and again,
//! authorized BEFORE any write (the run owner `started_by` or a chat admin, else
//! [`RoutineError::Denied`]), each ONE conditional update (see `store::run_queries`) with a
//! clear error for a run in the wrong state ("run 12 is completed; /run_again 12 starts a new
//! one"); and the read side: a run with its routine, snapshot and step runs ([`RunView`]), the
//! chat's active runs, a routine's last runs and its analytics.
//!
//! Runs of another chat are invisible: every lookup by id takes the chat and answers "no run 12
//! in this chat". Errors for the member are [`RoutineError::Invalid`] with field `run`
//! ([`user_message`] drops the field).
//!
//! Uses: services (store, clock), workflow (cancelling a run's pending gate or confirmation),
//! routines::{runner, steps}.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::{
    runner::{self, StartRun, Started},
    steps::{Definition, StepKind},
    zone_of, Actor, RoutineError,
};
use crate::{
    services::Services,
    store::{
        NewStepRun, RoutineRow, RunFilter, RunRow, RunSource, RunStatus, StepRunRow, StepStatus,
        Store, WorkflowStatus,
    },
};

/// Runs looked at for a routine's analytics (the newest).
pub const STATS_WINDOW: u64 = 200;

/// A run with what it runs: its routine, its snapshot and its step runs (id order).
#[derive(Debug, Clone)]
pub struct RunView {
    pub run: RunRow,
    pub routine: RoutineRow,
    /// The snapshot (`None`: a single-prompt routine's run, or an unreadable snapshot).
    pub definition: Option<Definition>,
    pub steps: Vec<StepRunRow>,
}

impl RunView {
    /// The chat the run works in (its own column, else its routine's).
    pub fn chat_id(&self) -> i64 {
        self.run.chat_id.unwrap_or(self.routine.chat_id)
    }

    /// The run owner (its `started_by`, else the routine's owner).
    pub fn owner(&self) -> i64 {
        self.run.started_by.unwrap_or(self.routine.owner_id)
    }

    /// Steps in the snapshot (at least the positions that have step runs).
    pub fn step_count(&self) -> usize {
        let snap = self.definition.as_ref().map_or(0, |d| d.steps.len());
        let seen = self
            .steps
            .iter()
            .map(|s| s.position as usize + 1)
            .max()
            .unwrap_or(0);
        snap.max(seen)
    }

    /// The latest step run at `position` (0-based): the one that counts.
    pub fn latest(&self, position: usize) -> Option<&StepRunRow> {
        self.steps
            .iter()
            .rev()
            .find(|s| s.position as usize == position)
    }

    /// "Plan dinners" for a step named `plan_dinners`; the kind ("Approval") when unnamed.
    pub fn step_label(&self, position: usize) -> String {
        let snap = self.definition.as_ref().and_then(|d| d.steps.get(position));
        let name = snap
            .and_then(|s| s.name.clone())
            .or_else(|| self.latest(position).and_then(|s| s.name.clone()));
        match name {
            Some(n) => humanize(&n),
            None => {
                let kind = snap
                    .map(|s| s.kind.step_type().as_str())
                    .or_else(|| self.latest(position).map(|s| s.kind.as_str()))
                    .unwrap_or("step");
                humanize(kind)
            }
        }
    }

    /// Prompt and completion tokens: the step runs' sum, or the run's totals when larger.
    pub fn tokens(&self) -> (i64, i64) {
        let p: i64 = self.steps.iter().map(|s| s.prompt_tokens as i64).sum();
        let c: i64 = self.steps.iter().map(|s| s.completion_tokens as i64).sum();
        let (rp, rc) = (
            self.run.prompt_tokens as i64,
            self.run.completion_tokens as i64,
        );
        if rp + rc > p + c {
            (rp, rc)
        } else {
            (p, c)
        }
    }

    /// Cost in US dollars: the step runs' sum, or the run's total when larger.
    pub fn cost(&self) -> f64 {
        let s: f64 = self.steps.iter().map(|s| s.cost_usd).sum();
        s.max(self.run.cost_usd)
    }

    /// Wall time of the run: to `finished_at` (or `duration_ms` when set), else to `now`.
    pub fn elapsed(&self, now: DateTime<Utc>) -> Duration {
        run_duration(&self.run, now)
    }

    /// What a waiting or paused run waits for, in words ("approval (request #5)", "until Sun
    /// 17:00"); `None` when it waits for nothing.
    pub fn waiting_text(&self, zone: Tz) -> Option<String> {
        Some(describe_wait(
            self.run.waiting_for.as_deref()?,
            self.run.wake_at,
            zone,
            self.run.id,
        ))
    }
}

/// `plan_dinners` → "Plan dinners".
pub fn humanize(name: &str) -> String {
    let s = name.replace('_', " ");
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => s,
    }
}

/// A run's wall time (see [`RunView::elapsed`]).
pub fn run_duration(run: &RunRow, now: DateTime<Utc>) -> Duration {
    if let Some(f) = run.finished_at {
        return (f - run.started_at).max(Duration::zero());
    }
    if !run.status.is_active() && run.duration_ms > 0 {
        return Duration::milliseconds(run.duration_ms);
    }
    if run.status.is_active() {
        return (now - run.started_at).max(Duration::zero());
    }
    Duration::milliseconds(run.duration_ms)
}

/// "4 s", "0.4 s", "3 min 5 s", "2 h 10 min", "1 d 3 h".
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.num_milliseconds().max(0);
    let s = ms / 1000;
    match s {
        _ if ms < 1000 => format!("{:.1} s", ms as f64 / 1000.0),
        0..=59 => format!("{s} s"),
        60..=3599 if s % 60 == 0 => format!("{} min", s / 60),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s / 60 % 60),
        _ => format!("{} d {} h", s / 86_400, s / 3600 % 24),
    }
}

fn describe_wait(waiting_for: &str, wake_at: Option<DateTime<Utc>>, zone: Tz, id: i64) -> String {
    let at = |t: Option<DateTime<Utc>>| {
        t.map(|t| t.with_timezone(&zone).format("%a %d %b %H:%M").to_string())
            .unwrap_or_else(|| "soon".into())
    };
    let (head, arg) = waiting_for.split_once(':').unwrap_or((waiting_for, ""));
    match head {
        "timer" | "until" => format!("waiting until {}", at(wake_at)),
        "event" => format!("waiting for {arg} (at most until {})", at(wake_at)),
        "approval" => format!("waiting for approval (request #{arg}; /approvals)"),
        "confirm" => "waiting for the run owner's confirmation".to_string(),
        "cost" => format!("waiting: continue past the cost warning? (/run_cancel {id} stops it)"),
        "interrupted" => "interrupted during a step: Retry or Skip it".to_string(),
        other => format!("waiting for {other}"),
    }
}

/// The member-facing text of an error from this module: a `run` field error is shown without
/// its field ("no run 12 in this chat"); everything else as it displays.
pub fn user_message(e: &RoutineError) -> String {
    match e {
        RoutineError::Invalid { field, rule } if field == "run" => rule.clone(),
        other => other.to_string(),
    }
}

fn run_err(rule: impl Into<String>) -> RoutineError {
    RoutineError::invalid("run", rule)
}

/// Load run `run_id` with its routine, snapshot and step runs; `None` when there is no such run
/// (or its routine is gone).
///
/// Errors: storage.
pub async fn load(svc: &Services, run_id: i64) -> Result<Option<RunView>, RoutineError> {
    load_from(&svc.store, run_id).await
}

/// [`load`] over a bare store (the CLI has no services).
///
/// Errors: storage.
pub async fn load_from(store: &Store, run_id: i64) -> Result<Option<RunView>, RoutineError> {
    let Some(run) = store.run(run_id).await? else {
        return Ok(None);
    };
    let Some(routine) = store.routine(run.routine_id).await? else {
        return Ok(None);
    };
    let definition = run
        .snapshot
        .as_deref()
        .and_then(|s| serde_json::from_str::<Definition>(s).ok());
    let steps = store.step_runs_of(run_id).await?;
    Ok(Some(RunView {
        run,
        routine,
        definition,
        steps,
    }))
}

/// Run `run_id` of chat `chat_id`.
///
/// Errors: "no run 12 in this chat" (also for another chat's run: it is invisible), storage.
pub async fn in_chat(svc: &Services, chat_id: i64, run_id: i64) -> Result<RunView, RoutineError> {
    match load(svc, run_id).await? {
        Some(v) if v.chat_id() == chat_id => Ok(v),
        _ => Err(run_err(format!(
            "no run {run_id} in this chat; /runs lists the active ones"
        ))),
    }
}

/// Parse a run id argument ("12", "#12").
///
/// Errors: a `run` error naming the command's form.
pub fn parse_id(args: &str, command: &str) -> Result<i64, RoutineError> {
    let a = args.split_whitespace().next().unwrap_or("");
    a.trim_start_matches('#')
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            run_err(if a.is_empty() {
                format!("which run? /{command} <id> (/runs lists them)")
            } else {
                format!(
                    "'{}' is not a run id; /{command} <id> (/runs lists them)",
                    crate::context::clip(a, 20)
                )
            })
        })
}

/// The rule for controlling a run: its owner or a chat admin (issue 9, item 8).
pub fn may_control(v: &RunView, actor: Actor) -> bool {
    v.owner() == actor.user_id || actor.admin
}

fn authorize(v: &RunView, actor: Actor) -> Result<(), RoutineError> {
    if may_control(v, actor) {
        Ok(())
    } else {
        Err(RoutineError::Denied(format!(
            "only the member who started run {} or a group admin can change it",
            v.run.id
        )))
    }
}

/// Why run `v` cannot take `what`, by its current status.
fn wrong_state(v: &RunView, what: &str) -> RoutineError {
    let id = v.run.id;
    let st = v.run.status;
    run_err(match (what, st) {
        (_, RunStatus::Completed | RunStatus::Skipped | RunStatus::Silent) => {
            format!("run {id} is {st}; /run_again {id} starts a new one")
        }
        ("retry", RunStatus::Cancelled) => {
            format!("run {id} was cancelled; /run_again {id} starts a new one")
        }
        ("retry", s) if s.is_active() => {
            format!("run {id} is {st}, not failed; only a failed run can be retried")
        }
        ("pause", RunStatus::Paused) => {
            format!("run {id} is already paused; /run_resume {id} continues it")
        }
        ("resume", s) if s.is_active() => format!("run {id} is {st}, not paused"),
        (_, RunStatus::Failed) => {
            format!("run {id} has failed; /run_retry {id} retries the failed step")
        }
        (_, RunStatus::Cancelled) => {
            format!("run {id} was cancelled; /run_again {id} starts a new one")
        }
        _ => format!("run {id} is {st}"),
    })
}

/// Pause run `run_id`: pending | waiting | running → paused (wait and step kept).
///
/// Errors: not found / denied / wrong state, storage.
pub async fn pause(
    svc: &Services,
    chat_id: i64,
    run_id: i64,
    actor: Actor,
) -> Result<RunView, RoutineError> {
    let v = in_chat(svc, chat_id, run_id).await?;
    authorize(&v, actor)?;
    if !svc.store.pause_run(run_id).await? {
        return Err(wrong_state(&reload(svc, v).await?, "pause"));
    }
    tracing::info!(run_id, "run paused");
    after_change(svc, run_id).await
}

/// Resume a paused run: → waiting (when it waits for something, `wake_at` kept) or pending.
///
/// Errors: not found / denied / wrong state, storage.
pub async fn resume(
    svc: &Services,
    chat_id: i64,
    run_id: i64,
    actor: Actor,
) -> Result<RunView, RoutineError> {
    let v = in_chat(svc, chat_id, run_id).await?;
    authorize(&v, actor)?;
    match svc.store.resume_run(run_id).await? {
        None => return Err(wrong_state(&reload(svc, v).await?, "resume")),
        Some(RunStatus::Waiting) => {
            // decided while paused (a gate, a confirmation): its wake-up skipped the paused
            // run, so wake it now rather than at the wait's safety-net deadline
            let now = svc.clock.now();
            let step = v.latest(v.run.current_step.max(0) as usize);
            let decided = step.is_some_and(|s| s.status == StepStatus::Completed);
            let overdue_wait = v.run.wake_at.is_none_or(|w| w > now) && decided;
            if overdue_wait {
                svc.store.wake_waiting_run(run_id, now).await?;
            }
        }
        Some(_) => {}
    }
    tracing::info!(run_id, "run resumed");
    after_change(svc, run_id).await
}

/// Cancel an active run: → cancelled, its unfinished and unreached steps skipped, then its
/// pending gate or confirmation workflows cancelled through the workflow service (their hooks
/// find the step already skipped and change nothing else). Returns the run and how many
/// workflows were cancelled.
///
/// Errors: not found / denied / wrong state, storage.
pub async fn cancel(
    svc: &Services,
    chat_id: i64,
    run_id: i64,
    actor: Actor,
) -> Result<(RunView, usize), RoutineError> {
    let v = in_chat(svc, chat_id, run_id).await?;
    authorize(&v, actor)?;
    let now = svc.clock.now();
    // the steps never reached become skipped rows (the progress shows ↷ for them)
    let remaining: Vec<NewStepRun> = v
        .definition
        .as_ref()
        .map(|d| {
            d.steps
                .iter()
                .enumerate()
                .filter(|(i, _)| *i as i32 >= v.run.current_step && v.latest(*i).is_none())
                .map(|(i, s)| NewStepRun {
                    run_id,
                    position: i as i32,
                    attempt: 1,
                    name: s.name.clone(),
                    kind: s.kind.step_type(),
                    status: StepStatus::Skipped,
                    input: None,
                    started_at: None,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut workflows: Vec<i64> = v
        .steps
        .iter()
        .filter(|s| !matches!(s.status, StepStatus::Completed | StepStatus::Skipped))
        .filter_map(|s| s.workflow_id)
        .collect();
    if let Some(w) = v.run.waiting_for.as_deref() {
        if let Some(ids) = w
            .strip_prefix("approval:")
            .or_else(|| w.strip_prefix("confirm:"))
        {
            workflows.extend(ids.split(',').filter_map(|x| x.trim().parse::<i64>().ok()));
        }
    }
    workflows.sort_unstable();
    workflows.dedup();
    if !svc.store.cancel_run(run_id, now, remaining).await? {
        return Err(wrong_state(&reload(svc, v).await?, "cancel"));
    }
    tracing::info!(run_id, "run cancelled");
    crate::metrics::run_ended(RunStatus::Cancelled.as_str());
    let mut cancelled = 0;
    for id in workflows {
        let Some(wf) = svc.store.workflow(id).await? else {
            continue;
        };
        if wf.status == WorkflowStatus::Pending
            && crate::workflow::cancel_by_system(svc, &wf, "the run was cancelled").await?
        {
            cancelled += 1;
        }
    }
    Ok((after_change(svc, run_id).await?, cancelled))
}

/// Retry a failed run from its failed step (same inputs): → pending at that step.
///
/// Errors: not found / denied / wrong state, storage.
pub async fn retry(
    svc: &Services,
    chat_id: i64,
    run_id: i64,
    actor: Actor,
) -> Result<RunView, RoutineError> {
    let v = in_chat(svc, chat_id, run_id).await?;
    authorize(&v, actor)?;
    if v.run.status != RunStatus::Failed {
        return Err(wrong_state(&v, "retry"));
    }
    let position = v
        .steps
        .iter()
        .rev()
        .find(|s| matches!(s.status, StepStatus::Failed | StepStatus::Interrupted))
        .map_or(v.run.current_step, |s| s.position);
    if !svc.store.retry_run(run_id, position).await? {
        return Err(wrong_state(&reload(svc, v).await?, "retry"));
    }
    tracing::info!(run_id, position, "run retried");
    after_change(svc, run_id).await
}

/// Start a new run of the same routine with the same inputs (and a fresh snapshot), owned by
/// `actor`. Any status may be run again.
///
/// Errors: not found / denied, what `runner::start_run` refuses, storage.
pub async fn again(
    svc: &Services,
    chat_id: i64,
    run_id: i64,
    actor: Actor,
) -> Result<(RunView, Started), RoutineError> {
    let v = in_chat(svc, chat_id, run_id).await?;
    authorize(&v, actor)?;
    let inputs = v
        .run
        .input
        .as_deref()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        .and_then(|x| x.as_object().cloned())
        .unwrap_or_default();
    let started = runner::start_run(
        svc,
        StartRun {
            routine_id: v.routine.id,
            source: RunSource::Manual,
            trigger_id: None,
            started_by: actor.user_id,
            inputs,
            scheduled_for: None,
            catch_up: false,
            parent_run_id: None,
            depth: 0,
        },
    )
    .await?;
    Ok((v, started))
}

/// Delete the record of a finished run (completed, failed, cancelled, skipped or silent) with
/// its step runs, in one transaction (issue 11, "Delete the run's record"). Same rule as the
/// other controls: the run owner or a chat admin, checked before anything is written. A run
/// still active is refused ("cancel it first"): its executor would write to a missing row.
///
/// Errors: not found / denied / wrong state, storage.
pub async fn delete(
    svc: &Services,
    chat_id: i64,
    run_id: i64,
    actor: Actor,
) -> Result<(), RoutineError> {
    let v = in_chat(svc, chat_id, run_id).await?;
    authorize(&v, actor)?;
    if !svc.store.delete_finished_run(run_id).await? {
        let v = reload(svc, v).await?;
        return Err(run_err(format!(
            "run {run_id} is {}; only a finished run's record can be deleted (cancel it first)",
            v.run.status
        )));
    }
    tracing::info!(run_id, "run record deleted");
    Ok(())
}

async fn reload(svc: &Services, v: RunView) -> Result<RunView, RoutineError> {
    Ok(load(svc, v.run.id).await?.unwrap_or(v))
}

async fn after_change(svc: &Services, run_id: i64) -> Result<RunView, RoutineError> {
    super::progress::refresh(svc, run_id).await;
    load(svc, run_id)
        .await?
        .ok_or_else(|| run_err(format!("run {run_id} is gone")))
}

/// The chat's active runs (pending, running, waiting, paused), newest first.
///
/// Errors: storage.
pub async fn active(svc: &Services, chat_id: i64) -> Result<Vec<RunView>, RoutineError> {
    let rows = svc
        .store
        .runs_where(&RunFilter {
            chat_id: Some(chat_id),
            active_only: true,
            limit: 50,
            ..Default::default()
        })
        .await?;
    let mut out = Vec::new();
    for r in rows {
        if let Some(v) = load(svc, r.id).await? {
            out.push(v);
        }
    }
    Ok(out)
}

/// The newest `limit` runs of the routine called `name` in the chat.
///
/// Errors: [`RoutineError::NotFound`], storage.
pub async fn history(
    svc: &Services,
    chat_id: i64,
    name: &str,
    limit: u64,
) -> Result<(RoutineRow, Vec<RunView>), RoutineError> {
    let r = super::find(svc, chat_id, name).await?;
    let mut out = Vec::new();
    for run in svc.store.routine_runs(r.id, limit).await? {
        if let Some(v) = load(svc, run.id).await? {
            out.push(v);
        }
    }
    Ok((r, out))
}

/// A routine's analytics over its newest [`STATS_WINDOW`] runs (skipped and silent fires not
/// counted).
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub runs: usize,
    /// Finished runs: completed, failed or cancelled.
    pub finished: usize,
    pub completed: usize,
    /// completed / finished (0 when none finished).
    pub completion_rate: f64,
    /// Mean wall time of the finished runs.
    pub average: Option<Duration>,
    /// The step that failed most: (label, failures).
    pub most_failed: Option<(String, usize)>,
}

impl Stats {
    /// "3 runs · 50% completed (1 of 2 finished) · average 1 min · fails most at step 2
    /// Shopping list (1 time)".
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} run{} · {:.0}% completed ({} of {} finished)",
            self.runs,
            if self.runs == 1 { "" } else { "s" },
            self.completion_rate * 100.0,
            self.completed,
            self.finished
        );
        if let Some(a) = self.average {
            s.push_str(&format!(" · average {}", fmt_duration(a)));
        }
        if let Some((step, n)) = &self.most_failed {
            s.push_str(&format!(
                " · fails most at step {step} ({n} time{})",
                if *n == 1 { "" } else { "s" }
            ));
        }
        s
    }
}

/// Analytics of routine `routine` (see [`Stats`]).
///
/// Errors: storage.
pub async fn stats(
    store: &Store,
    routine: &RoutineRow,
    now: DateTime<Utc>,
) -> Result<Stats, RoutineError> {
    let runs: Vec<RunRow> = store
        .routine_runs(routine.id, STATS_WINDOW)
        .await?
        .into_iter()
        .filter(|r| !matches!(r.status, RunStatus::Skipped | RunStatus::Silent))
        .collect();
    let finished: Vec<&RunRow> = runs.iter().filter(|r| !r.status.is_active()).collect();
    let completed = finished
        .iter()
        .filter(|r| r.status == RunStatus::Completed)
        .count();
    let average = (!finished.is_empty()).then(|| {
        let total: i64 = finished
            .iter()
            .map(|r| run_duration(r, now).num_milliseconds())
            .sum();
        Duration::milliseconds(total / finished.len() as i64)
    });
    let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let steps = store.step_runs_of_runs(&ids).await?;
    let mut fails: std::collections::BTreeMap<i32, (usize, Option<String>, &'static str)> =
        Default::default();
    for s in steps.iter().filter(|s| s.status == StepStatus::Failed) {
        let e = fails
            .entry(s.position)
            .or_insert((0, s.name.clone(), s.kind.as_str()));
        e.0 += 1;
    }
    let most_failed = fails
        .iter()
        .max_by_key(|(pos, (n, _, _))| (*n, std::cmp::Reverse(**pos)))
        .map(|(pos, (n, name, kind))| {
            let label = humanize(name.as_deref().unwrap_or(kind));
            (format!("{} {label}", pos + 1), *n)
        });
    Ok(Stats {
        runs: runs.len(),
        finished: finished.len(),
        completed,
        completion_rate: if finished.is_empty() {
            0.0
        } else {
            completed as f64 / finished.len() as f64
        },
        average,
        most_failed,
    })
}

/// True when the snapshot's step at `position` is an approval (for labels and tests).
pub fn is_approval(def: &Definition, position: usize) -> bool {
    matches!(
        def.steps.get(position).map(|s| &s.kind),
        Some(StepKind::Approval { .. })
    )
}

/// The routine's zone for a view's times.
pub fn zone(v: &RunView) -> Tz {
    zone_of(&v.routine)
}
