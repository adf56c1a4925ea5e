//! Validation of a routine's [`Definition`] when it is saved (import, upload, draft, install).
//!
//! Every error names the step and what is wrong, e.g.
//! `step 3 'post': {{steps.lsit.output}} — no step named 'lsit'; did you mean 'list'?`.
//!
//! Rules (issue 9, "Model" items 1 and 2):
//! - 1..=20 steps; step and input names `[a-z][a-z0-9_]{0,31}`, unique (a step may not be
//!   called `end`, the branch target).
//! - Every variable resolves: `initial.<declared input>`, `steps.<name or number>.output|reason`
//!   of a step that runs BEFORE on EVERY path (a dominator in the branch graph: step i → i+1,
//!   plus condition and approval branches), `chat.name`, `date`, `run.id`,
//!   `retry.reason|count` (always allowed). A reference to itself, a later step or a step some
//!   path skips is refused.
//! - Every branch target (`then`, `else`, `on_reject`) is a step name or `end`; a branch to the
//!   same or an earlier step (a loop) needs `max_loops` 1..=10 on the branching step.
//! - Every step is reachable from step 1.
//! - `wait`: exactly one of `duration` / `until` / `event`; durations like `1d`, `2h30m`, `90s`;
//!   `until` is `HH:MM`; `event` a hearth event kind, its filters the kind's fields.
//! - `tool`: a tool that exists, its arguments among the tool's parameters, required ones given.
//! - `message.to`: `owner`, a Telegram id, a member's name (checked at run time) or a template.
//! - `routine`: the called routine exists in the chat, is not this one, no cycle through other
//!   routines and nesting ≤ [`MAX_DEPTH`] counting this one; mapped inputs are inputs the callee
//!   declares, and the callee's required inputs without a default are mapped.
//! - `condition`: `compare` is `> 3`, `>= 3`, `< 3`, `<= 10`, `== 0` or `!= 2`; a `fact:` value
//!   names a known fact.
//! - `approval`: `required` 1..=10 (and at most the named resolvers), named `resolvers`
//!   non-empty; `expires` a duration.
//! - Every template parses; step `timeout` 1..=3600 s.
//!
//! Pure except [`ValidateCtx::load`] (reads the chat's routines). Uses: vars, steps, strsim.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{
    steps::{Check, Definition, Resolvers, Step, StepKind, Test, MAX_DEPTH, MAX_STEPS},
    vars::{self, VarRef},
    RoutineError,
};
use crate::{agent::ToolRegistry, services::Services};

/// Highest `max_loops`.
pub const MAX_LOOPS: u32 = 10;
/// Highest approval quorum.
pub const MAX_REQUIRED: u32 = 10;
/// Longest step timeout, in seconds.
pub const MAX_TIMEOUT_S: u32 = 3600;
/// Longest wait / expiry duration (90 days).
pub const MAX_WAIT: Duration = Duration::from_secs(90 * 86_400);
/// Event kinds a `wait` may name with their fields: the trigger kinds of
/// [`super::model::EVENT_KINDS`] plus the run events of issue 9.
pub const RUN_EVENT_KINDS: &[(&str, &[&str])] = &[
    ("run_completed", &["routine", "run_id"]),
    ("run_failed", &["routine", "run_id", "reason"]),
];
/// The `fact:` names a condition may test; those ending in ':' take an argument.
pub const FACTS: &[&str] = &[
    "overdue_count",
    "elapsed_minutes",
    "chore_status:",
    "workflow_status:",
    "member_claimed:",
];

/// One thing wrong with a definition. `Display`: `"<at>: <message>"`, e.g.
/// `step 5 'check': else → 'plan' loops back without max_loops`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct DefinitionError {
    /// Where: `step 3 'post'`, `step 3` (unnamed), `input 'x'`, `steps`.
    pub at: String,
    pub message: String,
}

/// A tool as validation sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolInfo {
    pub destructive: bool,
    /// Parameter names of its JSON Schema.
    pub params: Vec<String>,
    /// Required parameter names.
    pub required: Vec<String>,
}

/// What validation needs to know besides the definition.
#[derive(Debug, Clone, Default)]
pub struct ValidateCtx {
    /// The routine's own name (a `routine` step calling it is a cycle).
    pub name: String,
    /// Tools by name.
    pub tools: BTreeMap<String, ToolInfo>,
    /// The chat's other routines by name, each as a definition (a single-prompt routine is one
    /// `prompt` step, see [`super::doc::definition_of`]).
    pub routines: BTreeMap<String, Definition>,
}

impl ValidateCtx {
    /// The tools of `reg` with their parameters.
    pub fn tools_of(reg: &ToolRegistry) -> BTreeMap<String, ToolInfo> {
        reg.specs(true, None)
            .into_iter()
            .map(|s| {
                let p = &s.parameters;
                let params = p["properties"]
                    .as_object()
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default();
                let required = p["required"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let destructive = reg.get(s.name).is_some_and(|t| t.destructive());
                (
                    s.name.to_string(),
                    ToolInfo {
                        destructive,
                        params,
                        required,
                    },
                )
            })
            .collect()
    }

    /// The context for saving routine `name` in `chat_id`: hearth's tools
    /// ([`super::doc::hearth_tools`]) and the chat's other routines.
    pub async fn load(svc: &Services, chat_id: i64, name: &str) -> Result<Self, RoutineError> {
        let mut routines = BTreeMap::new();
        for r in svc.store.routines_of_chat(chat_id).await? {
            if r.name != name {
                routines.insert(r.name.clone(), super::doc::definition_of(&r)?);
            }
        }
        Ok(ValidateCtx {
            name: name.to_string(),
            tools: Self::tools_of(&super::doc::hearth_tools()),
            routines,
        })
    }
}

/// Check `def` against every rule above; all errors at once, in step order.
pub fn validate(def: &Definition, ctx: &ValidateCtx) -> Result<(), Vec<DefinitionError>> {
    let mut v = Validator {
        def,
        ctx,
        errors: Vec::new(),
    };
    v.run();
    if v.errors.is_empty() {
        Ok(())
    } else {
        Err(v.errors)
    }
}

/// The name rule for steps and inputs: `[a-z][a-z0-9_]{0,31}`.
pub fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// The closest of `candidates` to `word` (Damerau-Levenshtein distance ≤ 2 and less than the
/// word's length), for "did you mean" hints.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, _)| *d <= 2 && *d < word.len().max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// "; did you mean 'x'?" or "".
fn hint<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, candidates)
        .map(|c| format!("; did you mean '{c}'?"))
        .unwrap_or_default()
}

/// Parse a wait duration: one or more `<number><unit>` with units `d`, `h`, `m`, `s`
/// (`1d`, `2h30m`, `90s`); 1 s ..= 90 days.
pub fn parse_duration(s: &str) -> Option<Duration> {
    crate::schedule::parse_span(s).filter(|d| !d.is_zero() && *d <= MAX_WAIT)
}

/// Parse `HH:MM` (24 h) into (hour, minute).
pub fn parse_hhmm(s: &str) -> Option<(u32, u32)> {
    let (h, m) = s.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some((h, m))
}

/// A comparison's operator and number: `"> 3"` → (">", 3.0). Operators `>`, `>=`, `<`, `<=`,
/// `==`, `!=`.
pub fn parse_compare(s: &str) -> Option<(&'static str, f64)> {
    let s = s.trim();
    for op in [">=", "<=", "==", "!=", ">", "<"] {
        if let Some(rest) = s.strip_prefix(op) {
            let n: f64 = rest.trim().parse().ok()?;
            return n.is_finite().then_some((op, n));
        }
    }
    None
}

/// The event kinds a wait may name, with their fields.
fn event_kinds() -> impl Iterator<Item = &'static (&'static str, &'static [&'static str])> {
    super::model::EVENT_KINDS.iter().chain(RUN_EVENT_KINDS)
}

/// Where a step branches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Step(usize),
    End,
}

struct Validator<'a> {
    def: &'a Definition,
    ctx: &'a ValidateCtx,
    errors: Vec<DefinitionError>,
}

fn at_step(i: usize, s: &Step) -> String {
    match &s.name {
        Some(n) => format!("step {} '{n}'", i + 1),
        None => format!("step {}", i + 1),
    }
}

impl Validator<'_> {
    fn err(&mut self, at: impl Into<String>, message: impl Into<String>) {
        self.errors.push(DefinitionError {
            at: at.into(),
            message: message.into(),
        });
    }

    fn step_names(&self) -> impl Iterator<Item = &str> {
        self.def.steps.iter().filter_map(|s| s.name.as_deref())
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.def
            .steps
            .iter()
            .position(|s| s.name.as_deref() == Some(name))
    }

    fn run(&mut self) {
        let n = self.def.steps.len();
        if n == 0 || n > MAX_STEPS {
            self.err(
                "steps",
                format!("{n} given; a routine has 1 to {MAX_STEPS} steps"),
            );
            if n == 0 {
                return;
            }
        }
        self.names();
        if let Some(rec) = &self.def.recorded {
            for t in rec.confirm.iter().chain(rec.calls.iter().map(|c| &c.tool)) {
                if !self.ctx.tools.contains_key(t) {
                    let h = hint(t, self.ctx.tools.keys().map(String::as_str));
                    self.err("recorded", format!("tool '{t}' does not exist{h}"));
                }
            }
        }
        let succ = self.branches();
        let dom = dominators(n, &succ);
        for (i, d) in dom.iter().enumerate() {
            if d.is_none() {
                let at = at_step(i, &self.def.steps[i]);
                self.err(
                    at,
                    "is never reached (every path before it ends or branches past it)",
                );
            }
        }
        for (i, s) in self.def.steps.iter().enumerate() {
            self.step(i, s, dom[i].as_ref());
        }
    }

    fn names(&mut self) {
        let mut seen = BTreeSet::new();
        for inp in &self.def.inputs {
            let at = format!("input '{}'", inp.name);
            if !valid_name(&inp.name) {
                self.err(
                    at.clone(),
                    "a name is 1-32 characters of a-z, 0-9 and _, starting with a letter",
                );
            }
            if !seen.insert(inp.name.clone()) {
                self.err(at, "is declared twice");
            }
        }
        let mut seen = BTreeSet::new();
        for (i, s) in self.def.steps.iter().enumerate() {
            let Some(name) = &s.name else { continue };
            let at = at_step(i, s);
            if !valid_name(name) {
                self.err(
                    at.clone(),
                    "a step name is 1-32 characters of a-z, 0-9 and _, starting with a letter",
                );
            }
            if name == "end" {
                self.err(
                    at.clone(),
                    "'end' is the branch target that ends the run; name the step otherwise",
                );
            }
            if !seen.insert(name.clone()) {
                self.err(at, format!("another step is already named '{name}'"));
            }
        }
    }

    /// A branch target by name: the step index, `end`, or an error (`None`).
    fn target(&mut self, i: usize, field: &str, t: &str) -> Option<Target> {
        if t == "end" {
            return Some(Target::End);
        }
        if let Some(j) = self.index_of(t) {
            return Some(Target::Step(j));
        }
        let at = at_step(i, &self.def.steps[i]);
        let h = hint(t, self.step_names().chain(["end"]));
        self.err(
            at,
            format!("{field} → '{t}' — no step named '{t}'{h} (a step name or \"end\")"),
        );
        None
    }

    /// Each step's successors (by index; `n` = the end), checking targets and loops.
    fn branches(&mut self) -> Vec<Vec<usize>> {
        let n = self.def.steps.len();
        let mut succ = vec![Vec::new(); n];
        for (i, s) in self.def.steps.iter().enumerate() {
            let next = i + 1; // == n: the end
            let (branches, max_loops): (Vec<(&str, Option<&String>)>, Option<u32>) = match &s.kind {
                StepKind::Condition {
                    then,
                    otherwise,
                    max_loops,
                    ..
                } => (
                    vec![("then", then.as_ref()), ("else", otherwise.as_ref())],
                    *max_loops,
                ),
                StepKind::Approval {
                    on_reject,
                    max_loops,
                    ..
                } => {
                    // approved: the next step; rejected without on_reject: the run stops
                    succ[i].push(next);
                    (vec![("on_reject", on_reject.as_ref())], *max_loops)
                }
                _ => {
                    succ[i].push(next);
                    continue;
                }
            };
            if let Some(m) = max_loops {
                if !(1..=MAX_LOOPS).contains(&m) {
                    let at = at_step(i, s);
                    self.err(at, format!("max_loops = {m}; it must be 1 to {MAX_LOOPS}"));
                }
            }
            for (field, t) in branches {
                let Some(t) = t else {
                    if field != "on_reject" {
                        succ[i].push(next);
                    }
                    continue;
                };
                match self.target(i, field, t) {
                    Some(Target::End) => succ[i].push(n),
                    Some(Target::Step(j)) => {
                        if j <= i && max_loops.is_none() {
                            let at = at_step(i, s);
                            self.err(
                                at,
                                format!("{field} → '{t}' loops back without max_loops (add max_loops = 1 to {MAX_LOOPS})"),
                            );
                        }
                        succ[i].push(j);
                    }
                    None => {}
                }
            }
        }
        succ
    }

    fn step(&mut self, i: usize, s: &Step, dom: Option<&BTreeSet<usize>>) {
        let at = at_step(i, s);
        if s.timeout == 0 || s.timeout > MAX_TIMEOUT_S {
            self.err(
                at.clone(),
                format!(
                    "timeout = {}; it must be 1 to {MAX_TIMEOUT_S} seconds",
                    s.timeout
                ),
            );
        }
        let empty = BTreeSet::new();
        let dom = dom.unwrap_or(&empty);
        match &s.kind {
            StepKind::Prompt { prompt, tools } => {
                if prompt.trim().is_empty() {
                    self.err(at.clone(), "prompt is empty");
                }
                self.template(i, "prompt", prompt, dom);
                for t in tools.iter().flatten() {
                    if !self.ctx.tools.contains_key(t) {
                        let h = hint(t, self.ctx.tools.keys().map(String::as_str));
                        self.err(at.clone(), format!("tools: '{t}' does not exist{h}"));
                    }
                }
                if tools.is_some() && s.auto_approve {
                    // issue 10: a replay confirms every destructive call, no exception
                    self.err(
                        at.clone(),
                        "auto_approve cannot be set on a step with a tools list (its destructive calls are always confirmed)",
                    );
                }
            }
            StepKind::Message { text, to } => {
                if text.trim().is_empty() {
                    self.err(at.clone(), "text is empty");
                }
                self.template(i, "text", text, dom);
                if let Some(to) = to {
                    if to.contains("{{") {
                        self.template(i, "to", to, dom);
                    } else if to.trim().is_empty() {
                        self.err(
                            at.clone(),
                            "to is empty; use \"owner\", a member's name or Telegram id, or leave it out for the chat",
                        );
                    }
                }
            }
            StepKind::Tool { tool, args } => {
                match self.ctx.tools.get(tool) {
                    None => {
                        let h = hint(tool, self.ctx.tools.keys().map(String::as_str));
                        self.err(at.clone(), format!("tool '{tool}' does not exist{h}"));
                    }
                    Some(info) => {
                        for k in args.keys() {
                            if !info.params.contains(k) {
                                let h = hint(k, info.params.iter().map(String::as_str));
                                self.err(
                                    at.clone(),
                                    format!("tool '{tool}' has no argument '{k}'{h}"),
                                );
                            }
                        }
                        for r in &info.required {
                            if !args.contains_key(r) {
                                self.err(
                                    at.clone(),
                                    format!("tool '{tool}' needs the argument '{r}'"),
                                );
                            }
                        }
                    }
                }
                let mut texts = Vec::new();
                collect_strings(&serde_json::Value::Object(args.clone()), &mut texts);
                for t in texts {
                    self.template(i, "args", &t, dom);
                }
            }
            StepKind::Wait {
                duration,
                until,
                event,
                filters,
                event_timeout,
            } => self.wait(i, duration, until, event, filters, event_timeout, dom),
            StepKind::Condition { check, .. } => self.condition(i, check, dom),
            StepKind::Approval {
                text,
                resolvers,
                required,
                expires,
                ..
            } => {
                self.template(i, "text", text, dom);
                if !(1..=MAX_REQUIRED).contains(required) {
                    self.err(
                        at.clone(),
                        format!("required = {required}; it must be 1 to {MAX_REQUIRED}"),
                    );
                }
                if let Resolvers::Named(v) = resolvers {
                    if v.is_empty() || v.iter().any(|r| r.trim().is_empty()) {
                        self.err(
                            at.clone(),
                            "resolvers is empty; use \"others\" or a list of members",
                        );
                    } else if (*required as usize) > v.len() {
                        self.err(
                            at.clone(),
                            format!(
                                "required = {required} but only {} resolvers are named",
                                v.len()
                            ),
                        );
                    }
                }
                if let Some(e) = expires {
                    if parse_duration(e).is_none() {
                        self.err(
                            at.clone(),
                            format!("expires = '{e}' is not a duration like 1d, 2h30m or 90s"),
                        );
                    }
                }
            }
            StepKind::Routine { routine, inputs } => {
                for (k, t) in inputs {
                    self.template(i, &format!("inputs.{k}"), t, dom);
                }
                self.routine_call(i, routine, inputs);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn wait(
        &mut self,
        i: usize,
        duration: &Option<String>,
        until: &Option<String>,
        event: &Option<String>,
        filters: &BTreeMap<String, String>,
        event_timeout: &Option<String>,
        dom: &BTreeSet<usize>,
    ) {
        let at = at_step(i, &self.def.steps[i]);
        let given = [duration.is_some(), until.is_some(), event.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        if given != 1 {
            self.err(
                at.clone(),
                format!("a wait has exactly one of duration, until or event ({given} given)"),
            );
        }
        if let Some(d) = duration {
            if parse_duration(d).is_none() {
                self.err(
                    at.clone(),
                    format!(
                        "duration = '{d}' is not a duration like 1d, 2h30m or 90s (at most 90d)"
                    ),
                );
            }
        }
        if let Some(u) = until {
            if parse_hhmm(u).is_none() {
                self.err(
                    at.clone(),
                    format!("until = '{u}' is not a local time HH:MM"),
                );
            }
        }
        match event {
            Some(kind) => match event_kinds().find(|(k, _)| k == kind) {
                None => {
                    let h = hint(kind, event_kinds().map(|(k, _)| *k));
                    self.err(
                        at.clone(),
                        format!("event '{kind}' is not a hearth event{h}"),
                    );
                }
                Some((_, fields)) => {
                    for (f, t) in filters {
                        if !fields.contains(&f.as_str()) {
                            let h = hint(f, fields.iter().copied());
                            self.err(at.clone(), format!("event '{kind}' has no field '{f}'{h}"));
                        }
                        self.template(i, "filters", t, dom);
                    }
                }
            },
            None => {
                if !filters.is_empty() || event_timeout.is_some() {
                    self.err(at.clone(), "filters and event_timeout go with an event");
                }
            }
        }
        if let Some(t) = event_timeout {
            if parse_duration(t).is_none() {
                self.err(
                    at,
                    format!("event_timeout = '{t}' is not a duration like 1d, 2h30m or 90s"),
                );
            }
        }
    }

    fn condition(&mut self, i: usize, check: &Check, dom: &BTreeSet<usize>) {
        let at = at_step(i, &self.def.steps[i]);
        if let Test::Compare(c) = &check.test {
            if parse_compare(c).is_none() {
                self.err(
                    at.clone(),
                    format!("compare = '{c}' is not a comparison like \"> 3\", \"<= 10\", \"== 0\" or \"!= 2\""),
                );
            }
        }
        let Some(fact) = check.value.strip_prefix("fact:") else {
            self.template(i, "if.value", &check.value, dom);
            return;
        };
        let (name, arg) = match fact.split_once(':') {
            Some((n, a)) => (format!("{n}:"), Some(a)),
            None => (fact.to_string(), None),
        };
        if !FACTS.contains(&name.as_str()) {
            let h = hint(&name, FACTS.iter().copied());
            self.err(
                at,
                format!(
                    "'fact:{fact}' is not a fact{h} (known: {})",
                    FACTS.join(", ")
                ),
            );
            return;
        }
        match (name.as_str(), arg) {
            ("workflow_status:", Some(step)) => match self.index_of(step) {
                Some(j) if dom.contains(&j) && j != i => {}
                Some(_) => self.err(
                    at,
                    format!("fact:workflow_status:{step} — step '{step}' does not run before this one on every path"),
                ),
                None => {
                    let h = hint(step, self.step_names());
                    self.err(
                        at,
                        format!("fact:workflow_status:{step} — no step named '{step}'{h}"),
                    )
                }
            },
            (_, Some(a)) if a.trim().is_empty() => {
                self.err(at, format!("fact:{name} needs an argument after the ':'"))
            }
            (_, Some(a)) => self.template(i, "if.value", a, dom),
            _ => {}
        }
    }

    fn routine_call(&mut self, i: usize, callee: &str, inputs: &BTreeMap<String, String>) {
        let at = at_step(i, &self.def.steps[i]);
        if callee == self.ctx.name {
            self.err(
                at,
                format!("routine '{callee}' is this routine; no routine may call itself"),
            );
            return;
        }
        let Some(def) = self.ctx.routines.get(callee) else {
            let h = hint(callee, self.ctx.routines.keys().map(String::as_str));
            self.err(
                at,
                format!("routine '{callee}' does not exist in this chat{h}"),
            );
            return;
        };
        let declared: Vec<&str> = def.inputs.iter().map(|x| x.name.as_str()).collect();
        for k in inputs.keys() {
            if !declared.contains(&k.as_str()) {
                let h = hint(k, declared.iter().copied());
                self.err(
                    at.clone(),
                    format!("routine '{callee}' has no input '{k}'{h}"),
                );
            }
        }
        for inp in &def.inputs {
            if inp.required && inp.default.is_none() && !inputs.contains_key(&inp.name) {
                self.err(
                    at.clone(),
                    format!("routine '{callee}' needs the input '{}'", inp.name),
                );
            }
        }
        // walk the callee's own calls: a path back to this routine is a cycle; depth counts
        // this routine as 1
        let mut path = vec![self.ctx.name.clone(), callee.to_string()];
        if let Some(msg) = self.walk(&mut path) {
            self.err(at, msg);
        }
    }

    /// Depth-first through `routine` steps of the last routine on `path`.
    fn walk(&self, path: &mut Vec<String>) -> Option<String> {
        let last = path.last()?.clone();
        let def = self.ctx.routines.get(&last)?;
        for s in &def.steps {
            let StepKind::Routine { routine: next, .. } = &s.kind else {
                continue;
            };
            if path.contains(next) {
                return Some(format!(
                    "routine '{}' leads back to '{next}' ({} → {next}); no routine may call itself, directly or through others",
                    path[1],
                    path.join(" → ")
                ));
            }
            if path.len() as i32 >= MAX_DEPTH {
                return Some(format!(
                    "nesting {} → {next} is deeper than {MAX_DEPTH} routines",
                    path.join(" → ")
                ));
            }
            path.push(next.clone());
            let r = self.walk(path);
            path.pop();
            if r.is_some() {
                return r;
            }
        }
        None
    }

    /// Check a template's syntax and that each variable resolves before step `i`.
    fn template(&mut self, i: usize, field: &str, text: &str, dom: &BTreeSet<usize>) {
        let at = at_step(i, &self.def.steps[i]);
        let refs = match vars::referenced(text) {
            Ok(r) => r,
            Err(e) => {
                self.err(at, format!("{field} has a template error: {e}"));
                return;
            }
        };
        for r in refs {
            if let Some(msg) = self.resolve(i, &r, dom) {
                self.err(at.clone(), format!("{} — {msg}", r.braced()));
            }
        }
    }

    /// Why `r` does not resolve at step `i`, or `None` when it does.
    fn resolve(&self, i: usize, r: &VarRef, dom: &BTreeSet<usize>) -> Option<String> {
        let p = &r.parts;
        let field = |k: usize, ok: &[&str]| -> Option<String> {
            match p.get(k) {
                Some(f) if ok.contains(&f.as_str()) => None,
                Some(f) => Some(format!(
                    "'{f}' is not one of {}{}",
                    ok.join(", "),
                    hint(f, ok.iter().copied())
                )),
                None => Some(format!("name the field: {}", ok.join(", "))),
            }
        };
        match r.root() {
            "initial" => {
                let Some(x) = p.get(1) else {
                    return Some("name the input: {{initial.<name>}}".into());
                };
                if self.def.inputs.iter().any(|inp| &inp.name == x) {
                    return None;
                }
                let h = hint(x, self.def.inputs.iter().map(|inp| inp.name.as_str()));
                Some(format!("no input named '{x}'{h}"))
            }
            "steps" => {
                let Some(key) = p.get(1) else {
                    return Some("name the step: {{steps.<name>.output}}".into());
                };
                let j = if key.bytes().all(|b| b.is_ascii_digit()) {
                    match key.parse::<usize>() {
                        Ok(k) if (1..=self.def.steps.len()).contains(&k) => k - 1,
                        _ => {
                            return Some(format!(
                                "there is no step {key} (steps are numbered 1 to {})",
                                self.def.steps.len()
                            ))
                        }
                    }
                } else {
                    match self.index_of(key) {
                        Some(j) => j,
                        None => {
                            let h = hint(key, self.step_names());
                            return Some(format!("no step named '{key}'{h}"));
                        }
                    }
                };
                if j == i {
                    return Some(
                        "a step cannot use its own output (use {{retry.reason}} for why it runs again)"
                            .into(),
                    );
                }
                if j > i {
                    return Some(format!(
                        "step {} runs after this one; use an earlier step",
                        j + 1
                    ));
                }
                if !dom.contains(&j) {
                    return Some(format!(
                        "step {} does not run before this one on every path",
                        j + 1
                    ));
                }
                field(2, &["output", "reason"])
            }
            "chat" => field(1, &["name"]),
            "run" => field(1, &["id"]),
            "retry" => field(1, &["reason", "count"]),
            "date" if p.len() == 1 => None,
            other => {
                let roots = ["initial", "steps", "chat", "date", "run", "retry"];
                Some(format!(
                    "'{other}' is not a variable{}; use initial.*, steps.*, chat.name, date, run.id, retry.reason or retry.count",
                    hint(other, roots)
                ))
            }
        }
    }
}

/// Every string inside a JSON value.
fn collect_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

/// Dominators of each step (0..n; `n` is the end) in the graph `succ` from step 0: the steps
/// that run before it on every path (itself included). `None`: unreachable.
fn dominators(n: usize, succ: &[Vec<usize>]) -> Vec<Option<BTreeSet<usize>>> {
    let mut preds = vec![Vec::new(); n];
    let mut reach = vec![false; n];
    reach[0] = true;
    let mut stack = vec![0];
    while let Some(i) = stack.pop() {
        for &j in &succ[i] {
            if j < n {
                preds[j].push(i);
                if !reach[j] {
                    reach[j] = true;
                    stack.push(j);
                }
            }
        }
    }
    let all: BTreeSet<usize> = (0..n).collect();
    let mut dom: Vec<BTreeSet<usize>> = (0..n)
        .map(|i| {
            if i == 0 {
                BTreeSet::from([0])
            } else {
                all.clone()
            }
        })
        .collect();
    let mut changed = true;
    while changed {
        changed = false;
        for i in 1..n {
            if !reach[i] {
                continue;
            }
            let mut d: Option<BTreeSet<usize>> = None;
            for &p in preds[i].iter().filter(|p| reach[**p]) {
                d = Some(match d {
                    None => dom[p].clone(),
                    Some(x) => x.intersection(&dom[p]).copied().collect(),
                });
            }
            let mut d = d.unwrap_or_default();
            d.insert(i);
            if d != dom[i] {
                dom[i] = d;
                changed = true;
            }
        }
    }
    dom.into_iter()
        .zip(reach)
        .map(|(d, r)| r.then_some(d))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routines::steps::RoutineDoc;

    fn ctx() -> ValidateCtx {
        let mut tools = BTreeMap::new();
        tools.insert(
            "chore_create".to_string(),
            ToolInfo {
                destructive: false,
                params: vec!["title".into()],
                required: vec!["title".into()],
            },
        );
        let mut routines = BTreeMap::new();
        let callee: RoutineDoc = toml::from_str(
            "name='summary'\n[[inputs]]\nname='topic'\n[[steps]]\nkind='prompt'\nprompt='Sum up {{initial.topic}}'\n",
        )
        .unwrap();
        routines.insert("summary".to_string(), callee.definition);
        ValidateCtx {
            name: "me".into(),
            tools,
            routines,
        }
    }

    fn errs(toml_text: &str) -> Vec<String> {
        errs_in(toml_text, &ctx())
    }

    fn errs_in(toml_text: &str, c: &ValidateCtx) -> Vec<String> {
        let doc: RoutineDoc = toml::from_str(&format!("name='me'\n{toml_text}")).unwrap();
        match validate(&doc.definition, c) {
            Ok(()) => vec![],
            Err(v) => v.iter().map(|e| e.to_string()).collect(),
        }
    }

    const THREE: &str = r#"
[[steps]]
name = "plan"
kind = "prompt"
prompt = "Plan"
[[steps]]
name = "list"
kind = "prompt"
prompt = "List from {{steps.plan.output}}"
[[steps]]
name = "post"
kind = "message"
text = "{{steps.lsit.output}}"
"#;

    #[test]
    fn the_did_you_mean_message() {
        assert_eq!(
            errs(THREE),
            ["step 3 'post': {{steps.lsit.output}} — no step named 'lsit'; did you mean 'list'?"]
        );
        assert!(errs(&THREE.replace("lsit", "list")).is_empty());
        assert!(errs(&THREE.replace("steps.lsit", "steps.2")).is_empty());
        assert!(errs(&THREE.replace("steps.lsit", "steps['1']")).is_empty());
    }

    #[test]
    fn step_counts_and_names() {
        assert_eq!(
            errs("steps = []"),
            ["steps: 0 given; a routine has 1 to 20 steps"]
        );
        let many = "[[steps]]\nkind='prompt'\nprompt='x'\n".repeat(21);
        assert_eq!(
            errs(&many),
            ["steps: 21 given; a routine has 1 to 20 steps"]
        );
        let e = errs("[[steps]]\nname='Plan'\nkind='prompt'\nprompt='x'\n[[steps]]\nname='a'\nkind='prompt'\nprompt='x'\n[[steps]]\nname='a'\nkind='prompt'\nprompt='x'\n");
        assert!(e[0].starts_with("step 1 'Plan': a step name is"), "{e:?}");
        assert_eq!(e[1], "step 3 'a': another step is already named 'a'");
        let e = errs("[[inputs]]\nname='x'\n[[inputs]]\nname='x'\n[[steps]]\nkind='prompt'\nprompt='{{initial.x}}'\n");
        assert_eq!(e, ["input 'x': is declared twice"]);
    }

    #[test]
    fn variables_resolve_to_inputs_and_earlier_steps() {
        let e = errs("[[inputs]]\nname='prefs'\n[[steps]]\nname='a'\nkind='prompt'\nprompt='{{initial.pref}} {{steps.b.output}} {{steps.a.output}} {{chat.name}} {{date}} {{run.id}} {{retry.reason}} {{retry.count}} {{steps.1.outptu}} {{weather}}'\n[[steps]]\nname='b'\nkind='prompt'\nprompt='x'\n");
        assert_eq!(
            e,
            [
                "step 1 'a': {{initial.pref}} — no input named 'pref'; did you mean 'prefs'?",
                "step 1 'a': {{steps.1.outptu}} — a step cannot use its own output (use {{retry.reason}} for why it runs again)",
                "step 1 'a': {{steps.a.output}} — a step cannot use its own output (use {{retry.reason}} for why it runs again)",
                "step 1 'a': {{steps.b.output}} — step 2 runs after this one; use an earlier step",
                "step 1 'a': {{weather}} — 'weather' is not a variable; use initial.*, steps.*, chat.name, date, run.id, retry.reason or retry.count",
            ]
        );
        let e = errs("[[steps]]\nname='a'\nkind='prompt'\nprompt='x'\n[[steps]]\nkind='prompt'\nprompt='{{steps.a.outptu}} {{steps.7.output}}'\n");
        assert_eq!(
            e,
            [
                "step 2: {{steps.7.output}} — there is no step 7 (steps are numbered 1 to 2)",
                "step 2: {{steps.a.outptu}} — 'outptu' is not one of output, reason; did you mean 'output'?",
            ]
        );
    }

    #[test]
    fn a_step_skipped_on_some_path_is_refused() {
        // 1 cond: then → 3 (skips 2); 3 uses 2's output
        let e = errs("[[steps]]\nname='c'\nkind='condition'\nif={value='{{date}}', contains='x'}\nthen='post'\n[[steps]]\nname='maybe'\nkind='prompt'\nprompt='x'\n[[steps]]\nname='post'\nkind='message'\ntext='{{steps.maybe.output}} {{steps.c.output}}'\n");
        assert_eq!(
            e,
            ["step 3 'post': {{steps.maybe.output}} — step 2 does not run before this one on every path"]
        );
    }

    #[test]
    fn branches_and_loops() {
        let base = "[[steps]]\nname='plan'\nkind='prompt'\nprompt='x {{retry.reason}}'\n[[steps]]\nname='x2'\nkind='prompt'\nprompt='y'\n[[steps]]\nname='x3'\nkind='prompt'\nprompt='y'\n[[steps]]\nname='x4'\nkind='prompt'\nprompt='y'\n[[steps]]\nname='check'\nkind='condition'\nif={value='{{steps.plan.output}}', compare='> 3'}\nthen='end'\nelse='plan'\n";
        assert_eq!(
            errs(base),
            ["step 5 'check': else → 'plan' loops back without max_loops (add max_loops = 1 to 10)"]
        );
        assert!(errs(&format!("{base}max_loops = 2\n")).is_empty());
        assert_eq!(
            errs(&format!("{base}max_loops = 11\n")),
            ["step 5 'check': max_loops = 11; it must be 1 to 10"]
        );
        assert_eq!(
            errs(&base.replace("else='plan'", "else='plna'")),
            ["step 5 'check': else → 'plna' — no step named 'plna'; did you mean 'plan'? (a step name or \"end\")"]
        );
        let e = errs("[[steps]]\nkind='condition'\nif={value='1', equals='1'}\nthen='end'\nelse='end'\n[[steps]]\nkind='prompt'\nprompt='x'\n");
        assert_eq!(
            e,
            ["step 2: is never reached (every path before it ends or branches past it)"]
        );
        let e = errs("[[steps]]\nname='a'\nkind='prompt'\nprompt='x'\n[[steps]]\nkind='approval'\ntext='ok?'\non_reject='a'\n");
        assert_eq!(
            e,
            ["step 2: on_reject → 'a' loops back without max_loops (add max_loops = 1 to 10)"]
        );
    }

    #[test]
    fn waits() {
        for (w, ok) in [
            ("duration='1d'", true),
            ("duration='2h30m'", true),
            ("duration='90s'", true),
            ("until='07:30'", true),
            (
                "event='member_joined'\nevent_timeout='2d'\nfilters={name='x'}",
                true,
            ),
            ("event='run_failed'", true),
            ("duration='1w'", true),
            ("duration='2 weeks'", true),
            ("duration='13 weeks'", false),
            ("duration='0s'", false),
            ("duration='soon'", false),
            ("until='25:00'", false),
            ("duration='1d'\nuntil='07:00'", false),
            ("event='member_joind'", false),
            ("event='member_joined'\nfilters={nmae='x'}", false),
        ] {
            let e = errs(&format!("[[steps]]\nkind='wait'\n{w}\n"));
            assert_eq!(e.is_empty(), ok, "{w}: {e:?}");
        }
        assert_eq!(
            errs("[[steps]]\nkind='wait'\nevent='member_joind'\n"),
            ["step 1: event 'member_joind' is not a hearth event; did you mean 'member_joined'?"]
        );
        assert_eq!(parse_duration("2h30m"), Some(Duration::from_secs(9000)));
    }

    #[test]
    fn tools_messages_conditions_approvals() {
        assert_eq!(
            errs("[[steps]]\nkind='tool'\ntool='chore_creat'\n"),
            ["step 1: tool 'chore_creat' does not exist; did you mean 'chore_create'?"]
        );
        assert_eq!(
            errs("[[steps]]\nkind='tool'\ntool='chore_create'\nargs={titel='x'}\n"),
            [
                "step 1: tool 'chore_create' has no argument 'titel'; did you mean 'title'?",
                "step 1: tool 'chore_create' needs the argument 'title'"
            ]
        );
        assert!(errs(
            "[[steps]]\nkind='tool'\ntool='chore_create'\nargs={title='Shop {{date}}'}\n"
        )
        .is_empty());
        assert!(errs("[[steps]]\nkind='message'\ntext='hi'\nto='owner'\n").is_empty());
        assert!(errs("[[steps]]\nkind='message'\ntext='hi'\nto='1234'\n").is_empty());
        assert_eq!(
            errs("[[steps]]\nkind='message'\ntext='hi'\nto=' '\n").len(),
            1
        );
        for (c, ok) in [
            ("> 3", true),
            ("<= 10", true),
            ("== 0", true),
            ("!= 2", true),
            ("=> 3", false),
            ("> x", false),
        ] {
            let e = errs(&format!(
                "[[steps]]\nkind='condition'\nif={{value='fact:overdue_count', compare='{c}'}}\n"
            ));
            assert_eq!(e.is_empty(), ok, "{c}: {e:?}");
        }
        assert_eq!(
            errs("[[steps]]\nkind='condition'\nif={value='fact:overdue_cuont', compare='> 1'}\n"),
            ["step 1: 'fact:overdue_cuont' is not a fact; did you mean 'overdue_count'? (known: overdue_count, elapsed_minutes, chore_status:, workflow_status:, member_claimed:)"]
        );
        assert!(errs("[[inputs]]\nname='who'\n[[steps]]\nkind='condition'\nif={value='fact:member_claimed:{{initial.who}}', equals='yes'}\n").is_empty());
        assert_eq!(
            errs("[[steps]]\nkind='approval'\ntext='ok'\nrequired=0\n[[steps]]\nkind='approval'\ntext='ok'\nresolvers=[]\n[[steps]]\nkind='approval'\ntext='ok'\nresolvers=['a']\nrequired=2\n"),
            [
                "step 1: required = 0; it must be 1 to 10",
                "step 2: resolvers is empty; use \"others\" or a list of members",
                "step 3: required = 2 but only 1 resolvers are named"
            ]
        );
        assert_eq!(
            errs("[[steps]]\nkind='prompt'\nprompt='{{ date '\n").len(),
            1
        );
    }

    #[test]
    fn routine_steps_and_cycles() {
        assert!(
            errs("[[steps]]\nkind='routine'\nroutine='summary'\ninputs={topic='x'}\n").is_empty()
        );
        assert_eq!(
            errs("[[steps]]\nkind='routine'\nroutine='sumary'\n"),
            ["step 1: routine 'sumary' does not exist in this chat; did you mean 'summary'?"]
        );
        assert_eq!(
            errs("[[steps]]\nkind='routine'\nroutine='summary'\ninputs={topc='x'}\n"),
            [
                "step 1: routine 'summary' has no input 'topc'; did you mean 'topic'?",
                "step 1: routine 'summary' needs the input 'topic'"
            ]
        );
        assert_eq!(
            errs("[[steps]]\nkind='routine'\nroutine='me'\n"),
            ["step 1: routine 'me' is this routine; no routine may call itself"]
        );
        // me → a → b → me
        let mut c = ctx();
        let call = |n: &str| -> Definition {
            toml::from_str::<RoutineDoc>(&format!(
                "name='x'\n[[steps]]\nkind='routine'\nroutine='{n}'\n"
            ))
            .unwrap()
            .definition
        };
        c.routines.insert("a".into(), call("b"));
        c.routines.insert("b".into(), call("me"));
        assert_eq!(
            errs_in("[[steps]]\nkind='routine'\nroutine='a'\n", &c),
            ["step 1: routine 'a' leads back to 'me' (me → a → b → me); no routine may call itself, directly or through others"]
        );
        c.routines.insert("b".into(), call("summary"));
        assert_eq!(
            errs_in("[[steps]]\nkind='routine'\nroutine='a'\n", &c),
            ["step 1: nesting me → a → b → summary is deeper than 3 routines"]
        );
        c.routines.insert("b".into(), call("summary_free"));
        c.routines.insert(
            "summary_free".into(),
            toml::from_str::<RoutineDoc>("name='y'\n[[steps]]\nkind='prompt'\nprompt='x'\n")
                .unwrap()
                .definition,
        );
        c.routines.insert("a".into(), call("summary_free"));
        assert!(errs_in("[[steps]]\nkind='routine'\nroutine='a'\n", &c).is_empty());
    }
}
