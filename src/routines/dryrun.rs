//! A dry run of a routine (issue 11, the web admin's test runner): its steps in order, in
//! memory, with sample inputs. Nothing a member would see happens and no run is recorded.
//!
//! Per step kind:
//! - `prompt`: a real agent turn with the routine's tools (a recorded routine's `tools` list, or
//!   every tool) where only tools that say they are [`Tool::read_only`] run; every other call is
//!   NOT made: the runtime holds it (the same path a replay's confirmation takes, with a gate that
//!   only records it) and the model gets a result saying it was not executed in a dry run. The
//!   call is listed with its exact arguments ("would call `chore_create` with …").
//! - `tool`: a read-only tool runs; any other is listed as a call that would be made.
//! - `message`: rendered, not posted ("would post to the chat").
//! - `wait`: not waited ("would wait 2h"); `approval` gates (and `require_approval`): shown as
//!   "would ask …" and taken as approved; `condition`: evaluated on the outputs so far and the
//!   chat's facts (read-only); `routine`: the child routine dry-runs the same way, nested.
//! - outputs flow to later steps as in a real run (`{{steps.<name>.output}}`).
//!
//! Nothing goes to the outbox, no `routine_runs` / `step_runs` row is written, no workflow is
//! opened. The model's tokens still count: every turn is recorded in `turns` (source
//! `dry_run`, with its tool calls, the withheld ones `held`) and in the turn metrics, exactly
//! like a silent routine turn, so the bill and the usage plots stay honest.
//!
//! Authorization ([`dry_run`]) comes first, before any model call: the routine must belong to
//! the chat and the user must be allowed to run it there, the rule of `/name` (an active member
//! of the group, or the owner of the DM its personal routine lives in). A draft may be dry-run
//! (testing it before publishing is the point); an ended routine may not.
//!
//! Uses: services, agent (turns, tools), store (reads), routines::{runner (rendering, condition
//! tests), steps, vars, model, typed}.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::{
    model::{render_prompt, PromptVars},
    run_cost,
    runner::{self, check_test, definition_of, parse_span, render_value},
    steps::{Check, Definition, InputSpec, Resolvers, Step, StepKind, MAX_DEPTH},
    vars::Vars,
    zone_of, RoutineError, QUIET_TOKEN,
};
use crate::{
    agent::{Agent, ConfirmGate, Described, Restriction, Scope, ToolError, TurnRequest},
    services::Services,
    store::{ChatRow, MemberRow, RoutineRow, RoutineStatus, StepType, StoreError, ToolCallStatus},
    types::ChatKind,
};

/// The turn source of a dry run's model turns (`turns.source`, the turn metrics' label).
pub const SOURCE: &str = crate::store::DRY_RUN_SOURCE;
/// Most step executions in one dry run (loops through branches included), a guard besides
/// each branch's own `max_loops`.
pub const MAX_VISITS: usize = 100;
/// Longest read-only tool result shown, in characters.
const MAX_RESULT_CHARS: usize = 2000;

/// What the model sees for a call that a dry run does not make.
pub const NOT_EXECUTED: &str = "not executed: this is a dry run (a test of the routine); the call was recorded and would be made in a real run. Go on as if it had been done.";

/// A dry run to make: `user_id` tests routine `routine_id` of chat `chat_id` with `inputs`
/// (`{{initial.<name>}}`, text values; missing optional inputs take their default).
#[derive(Debug, Clone)]
pub struct DryRunRequest {
    pub chat_id: i64,
    pub user_id: i64,
    pub routine_id: i64,
    pub inputs: Map<String, Value>,
}

/// What became of one step in a dry run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DryStatus {
    /// Evaluated (its effects, if any, only described).
    Completed,
    /// It failed as it would in a real run (a template error, an unknown tool, the model …).
    Failed,
    /// A branch or the end of the run passed it by.
    NotReached,
}

impl DryStatus {
    /// The word shown (`data-status` on the page): `completed`, `failed`, `not_reached`.
    pub fn as_str(self) -> &'static str {
        match self {
            DryStatus::Completed => "completed",
            DryStatus::Failed => "failed",
            DryStatus::NotReached => "not_reached",
        }
    }
}

/// One tool call of a dry run: made (a read-only tool) or only described.
#[derive(Debug, Clone, PartialEq)]
pub struct DryCall {
    pub tool: String,
    /// The arguments exactly as the model (or the `tool` step) gave them, pretty JSON.
    pub arguments: String,
    /// True when the call ran (read-only); false when it would have been made.
    pub made: bool,
    /// `ran`, `error`, `refused`, `repeat`, or `held` for a call not made.
    pub status: ToolCallStatus,
    /// The result a made call returned (clipped), or the refusal.
    pub result: Option<String>,
    /// What a call not made would do, in plain words (the tool's own description of it).
    pub description: Option<String>,
}

/// One step of a dry run.
#[derive(Debug, Clone)]
pub struct DryStep {
    /// 1-based position in its routine.
    pub position: usize,
    /// "step 2 'list'"; a child routine's steps: "step 3 › 'tidy' step 1".
    pub label: String,
    pub kind: StepType,
    pub status: DryStatus,
    /// The rendered input (prompt text, message text, tool arguments …).
    pub input: Option<String>,
    /// The output later steps see.
    pub output: Option<String>,
    /// What a real run would have done here ("would wait 2h", "would ask Bob", "would post to
    /// the chat", "then → step 4").
    pub notes: Vec<String>,
    pub error: Option<String>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// USD at `llm.prices`.
    pub cost_usd: f64,
    pub calls: Vec<DryCall>,
}

/// A finished dry run.
#[derive(Debug, Clone)]
pub struct DryRun {
    pub routine: String,
    /// The initial inputs as used (defaults filled), in definition order.
    pub inputs: Vec<(String, String)>,
    /// Steps in execution order (a loop shows a step again), then the ones not reached.
    pub steps: Vec<DryStep>,
    /// `None`: it went through; else why it stopped (as a real run's reason).
    pub failure: Option<String>,
}

impl DryRun {
    /// Every call that was NOT made, with its step, in order.
    pub fn would_call(&self) -> Vec<(&DryStep, &DryCall)> {
        self.calls().filter(|(_, c)| !c.made).collect()
    }

    /// Every call that was made (read-only), with its step, in order.
    pub fn made_calls(&self) -> Vec<(&DryStep, &DryCall)> {
        self.calls().filter(|(_, c)| c.made).collect()
    }

    fn calls(&self) -> impl Iterator<Item = (&DryStep, &DryCall)> {
        self.steps
            .iter()
            .flat_map(|s| s.calls.iter().map(move |c| (s, c)))
    }

    /// Prompt and completion tokens of all its model turns.
    pub fn tokens(&self) -> (u64, u64) {
        self.steps.iter().fold((0, 0), |(p, c), s| {
            (p + s.prompt_tokens as u64, c + s.completion_tokens as u64)
        })
    }

    /// What its model turns cost, USD.
    pub fn cost_usd(&self) -> f64 {
        self.steps.iter().map(|s| s.cost_usd).sum()
    }
}

/// The routine `routine_id` of chat `chat_id` if `user_id` may run it there (the rule of
/// `/name`: the routine belongs to the chat, and the user is an active member of the group or
/// the chat is the user's own DM); an ended routine is refused.
///
/// Errors: [`RoutineError::NotFound`] (another chat's routine, no such routine: no existence
/// leak), [`RoutineError::Denied`], [`RoutineError::Invalid`] (ended), storage.
pub async fn runnable(
    svc: &Services,
    chat_id: i64,
    user_id: i64,
    routine_id: i64,
) -> Result<RoutineRow, RoutineError> {
    let r = svc
        .store
        .routine(routine_id)
        .await?
        .filter(|r| r.chat_id == chat_id)
        .ok_or_else(|| RoutineError::NotFound(format!("#{routine_id}")))?;
    let allowed = if chat_id == user_id {
        true // the user's DM: their personal routines
    } else {
        svc.store
            .member(chat_id, user_id)
            .await?
            .is_some_and(|m| m.active)
    };
    if !allowed {
        return Err(RoutineError::Denied(format!(
            "only members of this chat can run '{}'",
            r.name
        )));
    }
    if r.status == RoutineStatus::Ended {
        return Err(RoutineError::invalid(
            "routine",
            format!("'{}' has ended; create it again to run it", r.name),
        ));
    }
    Ok(r)
}

/// The initial inputs a run of `def` would take from `given`: typed inputs checked as `/name`
/// checks them, missing ones take their default; every problem, per input name.
pub async fn resolve_inputs(
    svc: &Services,
    chat_id: i64,
    specs: &[InputSpec],
    given: &Map<String, Value>,
) -> Result<Result<Map<String, Value>, BTreeMap<String, String>>, StoreError> {
    let mut out = Map::new();
    let mut errors = BTreeMap::new();
    for spec in specs {
        let raw = given
            .get(&spec.name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_string();
        if raw.is_empty() {
            match &spec.default {
                Some(d) => {
                    out.insert(spec.name.clone(), Value::String(d.clone()));
                }
                None if spec.required => {
                    errors.insert(spec.name.clone(), "is required".to_string());
                }
                None => {
                    out.insert(spec.name.clone(), Value::String(String::new()));
                }
            }
            continue;
        }
        match super::typed::check(svc, chat_id, spec, &raw).await? {
            Ok(v) => {
                out.insert(spec.name.clone(), Value::String(v));
            }
            Err(why) => {
                errors.insert(spec.name.clone(), why);
            }
        }
    }
    Ok(if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    })
}

/// Why a dry run did not start.
#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    /// Not runnable by this user here (see [`runnable`]).
    #[error(transparent)]
    Routine(#[from] RoutineError),
    /// Bad inputs: per input name, what is wrong ("is required", "no member named …").
    #[error("inputs: {0:?}")]
    Inputs(BTreeMap<String, String>),
}

impl From<StoreError> for DryRunError {
    fn from(e: StoreError) -> Self {
        DryRunError::Routine(RoutineError::Store(e))
    }
}

/// Dry-run a routine for `req.user_id` with `agent` (the process's agent; its tools and model).
/// Authorized first ([`runnable`]), inputs checked ([`resolve_inputs`]), then the steps run in
/// memory (see the module). Never posts, never writes a run; records its model turns.
pub async fn dry_run(
    svc: &Services,
    agent: &Agent,
    req: DryRunRequest,
) -> Result<DryRun, DryRunError> {
    let r = runnable(svc, req.chat_id, req.user_id, req.routine_id).await?;
    let (def, single) = definition_of(&r)?;
    let inputs = resolve_inputs(svc, req.chat_id, &def.inputs, &req.inputs)
        .await?
        .map_err(DryRunError::Inputs)?;
    let Some(chat) = svc.store.chat(req.chat_id).await? else {
        return Err(RoutineError::NotFound(format!("#{}", req.routine_id)).into());
    };
    let chat_kind = if chat.kind == ChatKind::Private.as_str() {
        ChatKind::Private
    } else {
        ChatKind::Group
    };
    let member = if chat_kind == ChatKind::Group {
        svc.store.member(chat.id, req.user_id).await?
    } else {
        None
    };
    let actor_name = match &member {
        Some(m) => m.first_name.clone(),
        None => chat.title.clone(),
    };
    let log = Arc::new(Mutex::new(Vec::new()));
    let dry = Dry {
        svc,
        agent: agent
            .clone()
            .with_confirm_gate(DryGate { log: log.clone() }),
        log,
        chat,
        chat_kind,
        user_id: req.user_id,
        actor_name,
        member,
        started: svc.clock.now(),
    };
    let shown: Vec<(String, String)> = def
        .inputs
        .iter()
        .map(|s| {
            let v = inputs.get(&s.name).and_then(Value::as_str).unwrap_or("");
            (s.name.clone(), v.to_string())
        })
        .collect();
    let mut steps = Vec::new();
    let failure = dry
        .walk(
            Plan {
                r: &r,
                def: &def,
                single,
            },
            inputs,
            0,
            String::new(),
            &mut steps,
        )
        .await?
        .err();
    tracing::info!(
        routine_id = r.id,
        steps = steps.len(),
        failed = failure.is_some(),
        "dry run"
    );
    Ok(DryRun {
        routine: r.name,
        inputs: shown,
        steps,
        failure,
    })
}

/// The confirmation gate of a dry run: records what would have been done and tells the model
/// it was not.
struct DryGate {
    log: Arc<Mutex<Vec<Described>>>,
}

#[async_trait]
impl ConfirmGate for DryGate {
    async fn hold(
        &self,
        _svc: &Services,
        _scope: &Scope,
        tool: &'static str,
        call: Described,
    ) -> Result<Value, ToolError> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(call);
        Ok(json!({ "dry_run": true, "tool": tool, "result": NOT_EXECUTED }))
    }
}

/// One dry run's fixed parts.
struct Dry<'a> {
    svc: &'a Services,
    /// The process's agent with the [`DryGate`].
    agent: Agent,
    log: Arc<Mutex<Vec<Described>>>,
    chat: ChatRow,
    chat_kind: ChatKind,
    user_id: i64,
    actor_name: String,
    member: Option<MemberRow>,
    started: DateTime<Utc>,
}

/// A routine as a dry run walks it: the row, its definition, and whether it is a single-prompt
/// routine (its one step posts the answer).
#[derive(Clone, Copy)]
struct Plan<'p> {
    r: &'p RoutineRow,
    def: &'p Definition,
    single: bool,
}

/// Where a step sends the walk.
enum Next {
    Step(usize),
    End,
    /// The run would stop here, with this reason.
    Fail(String),
}

type Walked = Result<Result<String, String>, StoreError>;

impl Dry<'_> {
    /// Walk `def`'s steps from the first, pushing each to `out` (labels prefixed with `prefix`
    /// for a child routine). Returns the last output (a child's output for its parent), or why
    /// the run would stop.
    fn walk<'s>(
        &'s self,
        plan: Plan<'s>,
        inputs: Map<String, Value>,
        depth: i32,
        prefix: String,
        out: &'s mut Vec<DryStep>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Walked> + Send + 's>> {
        Box::pin(async move {
            let Plan { r, def, .. } = plan;
            let mut reached = BTreeSet::new();
            let mut outputs: BTreeMap<usize, (String, String)> = BTreeMap::new();
            let mut passes: BTreeMap<usize, u32> = BTreeMap::new();
            let mut loops: BTreeMap<usize, u32> = BTreeMap::new();
            let mut last = String::new();
            let mut idx = 0;
            let mut visits = 0;
            let mut failure = None;
            while idx < def.steps.len() {
                visits += 1;
                if visits > MAX_VISITS {
                    failure = Some(format!("dry run: more than {MAX_VISITS} steps executed"));
                    break;
                }
                let step = &def.steps[idx];
                reached.insert(idx);
                let vars = self.vars(r, def, &inputs, &outputs, &passes, idx);
                let mut ds = DryStep {
                    position: idx + 1,
                    label: format!("{prefix}{}", label(step, idx)),
                    kind: step.kind.step_type(),
                    status: DryStatus::Completed,
                    input: None,
                    output: None,
                    notes: vec![],
                    error: None,
                    prompt_tokens: 0,
                    completion_tokens: 0,
                    cost_usd: 0.0,
                    calls: vec![],
                };
                if step.require_approval && !matches!(step.kind, StepKind::Approval { .. }) {
                    ds.notes.push(format!(
                        "would ask {} to approve before this step (taken as approved)",
                        self.who(&Resolvers::Others, 1)
                    ));
                }
                let mut child_steps = Vec::new();
                let next = self
                    .step(plan, idx, &vars, &mut ds, depth, &mut child_steps)
                    .await?;
                *passes.entry(idx).or_default() += 1;
                let next = match next {
                    Next::Step(i) if i <= idx => {
                        let n = loops.entry(idx).or_default();
                        *n += 1;
                        if *n > max_loops(step) {
                            Next::Fail("loop limit".into())
                        } else {
                            Next::Step(i)
                        }
                    }
                    n => n,
                };
                if ds.status == DryStatus::Completed {
                    let o = ds.output.clone().unwrap_or_default();
                    outputs.insert(idx, (o.clone(), String::new()));
                    last = o;
                }
                out.push(ds);
                out.extend(child_steps);
                match next {
                    Next::Step(i) => idx = i,
                    Next::End => break,
                    Next::Fail(why) => {
                        failure = Some(why);
                        break;
                    }
                }
            }
            // the steps no path reached
            for (i, step) in def.steps.iter().enumerate() {
                if !reached.contains(&i) {
                    out.push(DryStep {
                        position: i + 1,
                        label: format!("{prefix}{}", label(step, i)),
                        kind: step.kind.step_type(),
                        status: DryStatus::NotReached,
                        input: None,
                        output: None,
                        notes: vec![],
                        error: None,
                        prompt_tokens: 0,
                        completion_tokens: 0,
                        cost_usd: 0.0,
                        calls: vec![],
                    });
                }
            }
            Ok(match failure {
                Some(f) => Err(f),
                None => Ok(last),
            })
        })
    }

    /// The template variables at step `idx` (as the runner builds them from step runs).
    fn vars(
        &self,
        r: &RoutineRow,
        def: &Definition,
        inputs: &Map<String, Value>,
        outputs: &BTreeMap<usize, (String, String)>,
        passes: &BTreeMap<usize, u32>,
        idx: usize,
    ) -> Vars {
        let date = self
            .svc
            .clock
            .now()
            .with_timezone(&zone_of(r))
            .format("%Y-%m-%d")
            .to_string();
        let mut vars = Vars::new(self.chat.title.clone(), date, 0);
        for (k, v) in inputs {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            vars = vars.initial(k.clone(), text);
        }
        for (i, (o, reason)) in outputs {
            vars = vars.step(
                i + 1,
                def.steps[*i].name.as_deref(),
                o.clone(),
                reason.clone(),
            );
        }
        if let Some(&n) = passes.get(&idx).filter(|n| **n > 0) {
            vars = vars.retry(String::new(), n);
        }
        vars
    }

    /// Execute one step in memory; fills `ds`; returns where the walk goes.
    async fn step(
        &self,
        plan: Plan<'_>,
        idx: usize,
        vars: &Vars,
        ds: &mut DryStep,
        depth: i32,
        child_steps: &mut Vec<DryStep>,
    ) -> Result<Next, StoreError> {
        let Plan { r, def, single } = plan;
        let step = &def.steps[idx];
        let fail = |ds: &mut DryStep, e: String| {
            ds.status = DryStatus::Failed;
            ds.error = Some(e.clone());
            Next::Fail(e)
        };
        let next = || {
            if idx + 1 < def.steps.len() {
                Next::Step(idx + 1)
            } else {
                Next::End
            }
        };
        match &step.kind {
            StepKind::Prompt { prompt, tools } => {
                let current = if single {
                    let text = self.single_prompt_text(r, prompt);
                    ds.input = Some(text.clone());
                    text
                } else {
                    let text = match render(prompt, vars) {
                        Ok(t) => t,
                        Err(e) => return Ok(fail(ds, e)),
                    };
                    ds.input = Some(text.clone());
                    format!(
                        "[Routine '{}', test run, {} of {}]\n{text}",
                        r.name,
                        label(step, idx),
                        def.steps.len()
                    )
                };
                let restriction = self.restriction(tools.as_deref());
                let scope = self.scope(Some(restriction));
                let outcome = self
                    .agent
                    .run_turn(
                        self.svc,
                        TurnRequest {
                            scope,
                            current,
                            current_tg_id: None,
                            source: SOURCE,
                            silent_ok: false,
                        },
                    )
                    .await;
                ds.prompt_tokens = outcome.prompt_tokens;
                ds.completion_tokens = outcome.completion_tokens;
                ds.cost_usd = run_cost(
                    &self.svc.config,
                    outcome.prompt_tokens,
                    outcome.completion_tokens,
                );
                let mut held = self
                    .log
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .drain(..)
                    .collect::<Vec<_>>()
                    .into_iter();
                for c in &outcome.calls {
                    let made = c.status != ToolCallStatus::Held;
                    ds.calls.push(DryCall {
                        tool: c.name.clone(),
                        arguments: pretty(&c.arguments),
                        made,
                        status: c.status,
                        result: made.then(|| crate::context::clip(&c.result, MAX_RESULT_CHARS)),
                        description: if made {
                            None
                        } else {
                            held.next().and_then(|d| plain(&c.name, d.text))
                        },
                    });
                }
                match &outcome.result {
                    Ok(text) => {
                        if single {
                            ds.notes.push(if r.quiet && text.trim() == QUIET_TOKEN {
                                "would stay silent (the quiet answer)".into()
                            } else {
                                "would post the answer to the chat".into()
                            });
                        }
                        ds.output = Some(text.clone());
                        Ok(next())
                    }
                    Err(e) => Ok(fail(ds, e.user_message().to_string())),
                }
            }
            StepKind::Message { text, to } => {
                let body = match render(text, vars) {
                    Ok(t) => t,
                    Err(e) => return Ok(fail(ds, e)),
                };
                ds.input = Some(body.clone());
                let whom = match to.as_deref().map(str::trim) {
                    None | Some("") | Some("chat") => "to the chat".to_string(),
                    Some("owner") => format!("to {}'s direct messages", self.actor_name),
                    Some(who) => {
                        let who = render(who, vars).unwrap_or_else(|_| who.to_string());
                        match self.member_named(&who).await? {
                            Some(m) => format!("to {}'s direct messages", m),
                            None => {
                                return Ok(fail(
                                    ds,
                                    format!("message: no member '{who}' in this chat"),
                                ))
                            }
                        }
                    }
                };
                ds.notes.push(format!("would post {whom} (not sent)"));
                ds.output = Some(body);
                Ok(next())
            }
            StepKind::Tool { tool, args } => {
                let mut rendered = Map::new();
                for (k, v) in args {
                    match render_value(v, vars) {
                        Ok(v) => {
                            rendered.insert(k.clone(), v);
                        }
                        Err(e) => return Ok(fail(ds, e)),
                    }
                }
                let arguments = Value::Object(rendered);
                ds.input = Some(pretty(&arguments.to_string()));
                let Some(t) = self.agent.tools().get(tool).cloned() else {
                    return Ok(fail(ds, format!("no tool named '{tool}'")));
                };
                if !t.read_only() {
                    let description = t
                        .describe(self.svc, &self.scope(None), arguments.clone())
                        .await
                        .ok()
                        .and_then(|d| plain(tool, d.text));
                    ds.calls.push(DryCall {
                        tool: tool.clone(),
                        arguments: pretty(&arguments.to_string()),
                        made: false,
                        status: ToolCallStatus::Held,
                        result: None,
                        description,
                    });
                    ds.notes.push(format!("would call {tool} (not called)"));
                    ds.output = Some(format!("[dry run: {tool} was not called]"));
                    return Ok(next());
                }
                let res = t.call(self.svc, &self.scope(None), arguments.clone()).await;
                let (status, result) = match res {
                    Ok(v) if v.get("error").is_none() => (ToolCallStatus::Ran, Ok(v)),
                    Ok(v) => (ToolCallStatus::Error, Err(v["error"].to_string())),
                    Err(e) => (ToolCallStatus::Error, Err(e.to_string())),
                };
                let shown = match &result {
                    Ok(Value::String(s)) => s.clone(),
                    Ok(v) => v.to_string(),
                    Err(e) => e.clone(),
                };
                ds.calls.push(DryCall {
                    tool: tool.clone(),
                    arguments: pretty(&arguments.to_string()),
                    made: true,
                    status,
                    result: Some(crate::context::clip(&shown, MAX_RESULT_CHARS)),
                    description: None,
                });
                match result {
                    Ok(_) => {
                        ds.output = Some(shown);
                        Ok(next())
                    }
                    Err(e) => Ok(fail(ds, format!("{tool}: {e}"))),
                }
            }
            StepKind::Wait {
                duration,
                until,
                event,
                filters,
                event_timeout,
            } => {
                let note = if let Some(d) = duration {
                    match parse_span(d).and_then(|d| d.to_std().ok()) {
                        Some(d) => format!(
                            "would wait {} (not waited)",
                            crate::schedule::format_duration(d)
                        ),
                        None => {
                            return Ok(fail(ds, format!("wait: duration '{d}' not understood")))
                        }
                    }
                } else if let Some(u) = until {
                    format!("would wait until {u} ({}) (not waited)", zone_of(r).name())
                } else if let Some(ev) = event {
                    let f: Vec<String> = filters
                        .iter()
                        .map(|(k, v)| {
                            format!("{k}={}", render(v, vars).unwrap_or_else(|_| v.clone()))
                        })
                        .collect();
                    format!(
                        "would wait for the event {ev}{} for up to {} (not waited; taken as timed out)",
                        if f.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", f.join(", "))
                        },
                        event_timeout.as_deref().unwrap_or("1d")
                    )
                } else {
                    return Ok(fail(ds, "wait: needs duration, until or event".into()));
                };
                ds.notes.push(note);
                ds.output = Some(if event.is_some() { "timeout" } else { "done" }.into());
                Ok(next())
            }
            StepKind::Condition {
                check,
                then,
                otherwise,
                ..
            } => {
                let value = match self.check_value(def, check, vars).await? {
                    Ok(v) => v,
                    Err(e) => return Ok(fail(ds, e)),
                };
                ds.input = Some(value.clone());
                let yes = match check_test(&check.test, &value) {
                    Ok(b) => b,
                    Err(e) => return Ok(fail(ds, e)),
                };
                let branch = if yes { then } else { otherwise };
                ds.output = Some(if yes { "then" } else { "else" }.into());
                let target = match branch.as_deref().map(str::trim) {
                    None | Some("") | Some("next") => next(),
                    Some("end") => Next::End,
                    Some(name) => match def
                        .steps
                        .iter()
                        .position(|s| s.name.as_deref() == Some(name))
                    {
                        Some(i) => Next::Step(i),
                        None => return Ok(fail(ds, format!("no step named '{name}'"))),
                    },
                };
                ds.notes.push(format!(
                    "{} → {}",
                    if yes { "then" } else { "else" },
                    match &target {
                        Next::Step(i) => label(&def.steps[*i], *i),
                        _ => "end".into(),
                    }
                ));
                Ok(target)
            }
            StepKind::Approval {
                text,
                resolvers,
                required,
                ..
            } => {
                let text = match render(text, vars) {
                    Ok(t) => t,
                    Err(e) => return Ok(fail(ds, e)),
                };
                ds.input = Some(text);
                ds.notes.push(format!(
                    "would ask {} (taken as approved)",
                    self.who(resolvers, *required)
                ));
                ds.output = Some("approved".into());
                Ok(next())
            }
            StepKind::Routine { routine, inputs } => {
                let mut rendered = Map::new();
                for (k, v) in inputs {
                    match render(v, vars) {
                        Ok(s) => {
                            rendered.insert(k.clone(), Value::String(s));
                        }
                        Err(e) => return Ok(fail(ds, e)),
                    }
                }
                ds.input = Some(json!({ "routine": routine, "inputs": rendered }).to_string());
                if depth + 1 > MAX_DEPTH {
                    return Ok(fail(
                        ds,
                        format!("routine '{routine}': nesting deeper than {MAX_DEPTH}"),
                    ));
                }
                let Some(child) = self
                    .svc
                    .store
                    .routine_by_name(self.chat.id, routine)
                    .await?
                else {
                    return Ok(fail(ds, format!("no routine named '{routine}'")));
                };
                let (cdef, csingle) = match definition_of(&child) {
                    Ok(d) => d,
                    Err(e) => return Ok(fail(ds, format!("routine '{routine}': {e}"))),
                };
                let cinputs = match resolve_inputs(self.svc, self.chat.id, &cdef.inputs, &rendered)
                    .await?
                {
                    Ok(i) => i,
                    Err(errs) => {
                        let e: Vec<String> = errs.iter().map(|(k, v)| format!("{k} {v}")).collect();
                        return Ok(fail(ds, format!("routine '{routine}': {}", e.join("; "))));
                    }
                };
                let prefix = format!("{} › '{}' ", ds.label, child.name);
                match self
                    .walk(
                        Plan {
                            r: &child,
                            def: &cdef,
                            single: csingle,
                        },
                        cinputs,
                        depth + 1,
                        prefix,
                        child_steps,
                    )
                    .await?
                {
                    Ok(o) => {
                        let (p, c) = child_steps.iter().fold((0, 0), |(p, c), s| {
                            (p + s.prompt_tokens, c + s.completion_tokens)
                        });
                        ds.notes.push(format!(
                            "would run '{}' as a child run ({p} + {c} tokens below)",
                            child.name
                        ));
                        ds.output = Some(o);
                        Ok(next())
                    }
                    Err(e) => Ok(fail(ds, format!("child routine '{routine}' failed: {e}"))),
                }
            }
        }
    }

    /// A single-prompt routine's current message as its run would have it (its `{placeholders}`
    /// filled, the quiet note), marked as a test run.
    fn single_prompt_text(&self, r: &RoutineRow, prompt: &str) -> String {
        let local = self.svc.clock.now().with_timezone(&zone_of(r));
        let vars = PromptVars {
            date: local.format("%a %Y-%m-%d").to_string(),
            time: local.format("%H:%M").to_string(),
            tick_count: r.tick_count as i64 + 1,
            state: r.state.clone(),
            api_args: String::new(),
            event: String::new(),
        };
        let body = render_prompt(prompt, &vars).unwrap_or_else(|_| prompt.to_string());
        let mut s = format!(
            "[Routine '{}' (test run), run {}]\n",
            r.name, vars.tick_count
        );
        if r.quiet {
            s.push_str(&format!(
                "[Quiet: if there is nothing worth saying, reply exactly {QUIET_TOKEN}]\n"
            ));
        }
        s.push_str(&body);
        s
    }

    /// The runtime limits of a dry run's turn: the step's tools (a recorded routine's list) or
    /// every tool, and every tool that is not read-only confirmed, which here means held by the
    /// [`DryGate`], never made.
    fn restriction(&self, tools: Option<&[String]>) -> Arc<Restriction> {
        let reg = self.agent.tools();
        let all: Vec<String> = reg
            .specs(true, None)
            .into_iter()
            .map(|s| s.name.to_string())
            .collect();
        let confirm = all
            .iter()
            .filter(|n| reg.get(n).is_none_or(|t| !t.read_only()))
            .cloned()
            .collect();
        Arc::new(Restriction {
            tools: match tools {
                Some(t) => t.iter().cloned().collect(),
                None => all.into_iter().collect(),
            },
            confirm,
            recorded: vec![],
        })
    }

    /// The turn's scope: the tester acting in the chat, as the run owner of a real run.
    fn scope(&self, restriction: Option<Arc<Restriction>>) -> Scope {
        Scope {
            chat: self.chat.clone(),
            chat_kind: self.chat_kind,
            actor_id: Some(self.user_id),
            actor_name: self.actor_name.clone(),
            member: self.member.clone(),
            window_start_id: None,
            addressed: true,
            member_turn: true,
            restriction: Some(restriction.unwrap_or_else(|| self.restriction(None))),
        }
    }

    /// "any member other than Alice", "Bob or Carol (2 approvals)".
    fn who(&self, resolvers: &Resolvers, required: u32) -> String {
        let who = match resolvers {
            Resolvers::Others => format!("any member other than {}", self.actor_name),
            Resolvers::Named(names) => names.join(" or "),
        };
        if required > 1 {
            format!("{who} ({required} approvals)")
        } else {
            who
        }
    }

    /// A member's first name by Telegram id, first name or @username.
    async fn member_named(&self, who: &str) -> Result<Option<String>, StoreError> {
        let who = who.trim().trim_start_matches('@');
        let id: Option<i64> = who.parse().ok();
        if self.chat_kind == ChatKind::Private {
            return Ok((id == Some(self.user_id)).then(|| self.actor_name.clone()));
        }
        Ok(self
            .svc
            .store
            .members(self.chat.id)
            .await?
            .into_iter()
            .find(|m| {
                Some(m.user_id) == id
                    || m.first_name.eq_ignore_ascii_case(who)
                    || m.username
                        .as_deref()
                        .is_some_and(|u| u.eq_ignore_ascii_case(who))
            })
            .map(|m| m.first_name))
    }

    /// A condition's value, as the runner computes it (`runner::facts::check_value`), read-only:
    /// a rendered template or a hearth fact (`runner::chat_fact`); an approval step passed in this
    /// dry run counts as `approved`, and the run started when the dry run did.
    async fn check_value(
        &self,
        def: &Definition,
        check: &Check,
        vars: &Vars,
    ) -> Result<Result<String, String>, StoreError> {
        let v = check.value.trim();
        let Some(fact) = v.strip_prefix("fact:") else {
            return Ok(render(v, vars));
        };
        let (name, arg) = fact.split_once(':').unwrap_or((fact, ""));
        let arg = arg.trim();
        if name != "workflow_status" {
            return runner::chat_fact(self.svc, self.chat.id, name, arg, vars, self.started).await;
        }
        // an approval step passed in this dry run counts as approved
        Ok(Ok(
            match def.steps.iter().find(|s| s.name.as_deref() == Some(arg)) {
                Some(s) if matches!(s.kind, StepKind::Approval { .. }) || s.require_approval => {
                    "approved".into()
                }
                Some(_) => "none".into(),
                None => return Ok(Err(format!("fact: no step named '{arg}'"))),
            },
        ))
    }
}

/// "step 2 'list'" / "step 2".
fn label(step: &Step, idx: usize) -> String {
    match &step.name {
        Some(n) => format!("step {} '{n}'", idx + 1),
        None => format!("step {}", idx + 1),
    }
}

/// A step's loop allowance through a branch back (`max_loops`, default 0).
fn max_loops(step: &Step) -> u32 {
    match &step.kind {
        StepKind::Condition { max_loops, .. } | StepKind::Approval { max_loops, .. } => {
            max_loops.unwrap_or(0)
        }
        _ => 0,
    }
}

/// Render a step template (strict), errors as the runner words them.
fn render(template: &str, vars: &Vars) -> Result<String, String> {
    super::vars::render(template, vars).map_err(|e| format!("template: {e}"))
}

/// A call's description in plain words, `None` when it is only the default "<tool> <JSON>"
/// (the arguments are shown anyway).
fn plain(tool: &str, text: String) -> Option<String> {
    (!text.starts_with(&format!("{tool} {{"))).then_some(text)
}

/// JSON arguments pretty-printed (as given when they are not JSON).
fn pretty(raw: &str) -> String {
    let raw = if raw.trim().is_empty() { "{}" } else { raw };
    serde_json::from_str::<Value>(raw)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| raw.to_string())
}
