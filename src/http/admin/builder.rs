//! The playbook builder (issue 11, item 3): a linear list of steps to add, remove, reorder and
//! edit, for a new multi-step routine (`/admin/g/{chat}/routines/new`) or the steps of an
//! existing one (`/admin/g/{chat}/routines/{rid}/steps`).
//!
//! No JavaScript: the whole draft (name, description, status, initial inputs, every step's
//! fields) travels in the form, and each submit button (`name="action"`) re-renders the page
//! with the draft changed; nothing is stored until `save`. Actions (indexes 1-based, like the
//! element ids `step-<i>-<field>`): `add` (a step of the kind in `new-step-kind`),
//! `remove:<i>`, `up:<i>`, `down:<i>`, `add-input`, `remove-input:<i>`, `declare:<name>` (declare
//! an input the steps use), `insert:<field id>` (append the variable chosen in
//! `<field id>-var` to that field), `refresh` (re-render, e.g. after choosing a tool), `save`.
//!
//! Save goes through the chat's own service: [`routines::doc::save_doc`] with the session's
//! user as an admin [`Actor`] (the same validation as a TOML upload or the chat), then 303 to
//! the routine's detail page. Validation errors are shown next to the field they concern
//! (`<p class="error" id="error-<field id>">`); nothing is stored while any remains. A new
//! routine never replaces an existing one of the same name (`save_doc` would update it).
//!
//! Uses: pages (scope, render), routines (doc, validate, vars, steps), store (rows).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::LazyLock,
};

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::get,
    Router,
};
use minijinja::context;
use serde::Serialize;

use super::{
    pages::{self, Scope},
    AdminState,
};
use crate::{
    routines::{
        doc::{self, SaveError},
        steps::{
            Check, Definition, InputSpec, InputType, Resolvers, RoutineDoc, Step, StepKind, Test,
            DEFAULT_TIMEOUT_S, MAX_STEPS,
        },
        validate::{validate, DefinitionError, ValidateCtx},
        vars, Actor, RoutineError,
    },
    store::RoutineRow,
};

/// The step kinds, as `new-step-kind` offers them: (value, label).
pub const KINDS: &[(&str, &str)] = &[
    ("prompt", "Prompt (an agent turn)"),
    ("message", "Message (post text)"),
    ("tool", "Tool (call one hearth tool)"),
    ("routine", "Routine (run another routine)"),
    ("wait", "Wait"),
    ("condition", "Condition (if / else)"),
    ("approval", "Approval gate"),
];

/// Most initial inputs a draft may hold (a guard on the form, not a routine rule).
const MAX_INPUTS: usize = 20;

/// The builder's routes (merged in [`pages::router`]).
pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/g/{chat}/routines/new", get(new_page).post(new_post))
        .route(
            "/admin/g/{chat}/routines/{rid}/steps",
            get(steps_page).post(steps_post),
        )
}

/// A hearth tool's parameters as the builder shows them: (name, JSON type, required).
struct ToolMeta {
    params: Vec<(String, String, bool)>,
    destructive: bool,
}

static TOOLS: LazyLock<BTreeMap<String, ToolMeta>> = LazyLock::new(|| {
    let reg = doc::hearth_tools();
    reg.specs(true, None)
        .into_iter()
        .map(|s| {
            let p = &s.parameters;
            let required: Vec<&str> = p["required"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            let params = p["properties"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| {
                            let ty = v["type"].as_str().unwrap_or("string").to_string();
                            (k.clone(), ty, required.contains(&k.as_str()))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let destructive = reg.get(s.name).is_some_and(|t| t.destructive());
            (
                s.name.to_string(),
                ToolMeta {
                    params,
                    destructive,
                },
            )
        })
        .collect()
});

// ---------------------------------------------------------------------------------------------
// The draft: the form's values as typed (so a bad number survives a re-render).

#[derive(Debug, Clone, Default, PartialEq)]
struct DraftInput {
    name: String,
    description: String,
    kind: String,
    required: bool,
    default: String,
    example: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct DraftStep {
    kind: String,
    /// Field key (`prompt`, `timeout`, `arg-title`, `input-preferences`, …) → value as typed;
    /// a checked checkbox is "on".
    vals: BTreeMap<String, String>,
}

impl DraftStep {
    fn get(&self, k: &str) -> &str {
        self.vals.get(k).map(|s| s.as_str()).unwrap_or("")
    }

    fn trimmed(&self, k: &str) -> Option<String> {
        let v = self.get(k).trim();
        (!v.is_empty()).then(|| v.to_string())
    }

    fn on(&self, k: &str) -> bool {
        !self.get(k).is_empty()
    }

    fn new(kind: &str) -> Self {
        let mut s = DraftStep {
            kind: kind.to_string(),
            vals: BTreeMap::new(),
        };
        s.vals
            .insert("timeout".into(), DEFAULT_TIMEOUT_S.to_string());
        match kind {
            "condition" => {
                s.vals.insert("test".into(), "contains".into());
            }
            "approval" => {
                s.vals.insert("resolvers".into(), "others".into());
                s.vals.insert("required".into(), "1".into());
            }
            "wait" => {
                s.vals.insert("duration".into(), "1h".into());
            }
            _ => {}
        }
        s
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Draft {
    name: String,
    description: String,
    status: String,
    inputs: Vec<DraftInput>,
    steps: Vec<DraftStep>,
}

type Form = HashMap<String, String>;

fn form_of(body: &[u8]) -> Form {
    url::form_urlencoded::parse(body).into_owned().collect()
}

impl Draft {
    fn from_form(f: &Form) -> Draft {
        let get = |k: &str| f.get(k).cloned().unwrap_or_default();
        let mut d = Draft {
            name: get("name").trim().to_string(),
            description: get("description"),
            status: get("status"),
            ..Draft::default()
        };
        for i in 1..=MAX_INPUTS {
            let p = format!("input-{i}-");
            if !f.contains_key(&format!("{p}name")) {
                break;
            }
            d.inputs.push(DraftInput {
                name: get(&format!("{p}name")).trim().to_string(),
                description: get(&format!("{p}description")),
                kind: get(&format!("{p}type")),
                required: f.contains_key(&format!("{p}required")),
                default: get(&format!("{p}default")),
                example: get(&format!("{p}example")),
            });
        }
        for i in 1..=MAX_STEPS {
            let p = format!("step-{i}-");
            let Some(kind) = f.get(&format!("{p}kind")) else {
                break;
            };
            let vals = f
                .iter()
                .filter_map(|(k, v)| {
                    let key = k.strip_prefix(&p)?;
                    (key != "kind" && !key.ends_with("-var")).then(|| (key.to_string(), v.clone()))
                })
                .collect();
            d.steps.push(DraftStep {
                kind: kind.clone(),
                vals,
            });
        }
        d
    }

    /// The draft of a stored routine.
    fn of_routine(r: &RoutineRow, def: &Definition) -> Draft {
        Draft {
            name: r.name.clone(),
            description: r.description.clone(),
            status: r.publication.as_str().to_string(),
            inputs: def.inputs.iter().map(input_draft).collect(),
            steps: def.steps.iter().map(step_draft).collect(),
        }
    }

    /// Apply an action; `Err` is a note for the page (the draft is unchanged).
    fn apply(&mut self, action: &str, f: &Form) -> Result<(), String> {
        let idx = |s: &str, len: usize| -> Result<usize, String> {
            s.parse::<usize>()
                .ok()
                .filter(|i| (1..=len).contains(i))
                .map(|i| i - 1)
                .ok_or_else(|| "That item no longer exists; the page was refreshed.".to_string())
        };
        let (verb, arg) = action.split_once(':').unwrap_or((action, ""));
        match verb {
            "add" => {
                if self.steps.len() >= MAX_STEPS {
                    return Err(format!("A routine has at most {MAX_STEPS} steps."));
                }
                let kind = f.get("new-step-kind").map(String::as_str).unwrap_or("");
                if !KINDS.iter().any(|(k, _)| *k == kind) {
                    return Err("Choose the kind of the new step.".into());
                }
                self.steps.push(DraftStep::new(kind));
            }
            "remove" => {
                let i = idx(arg, self.steps.len())?;
                self.steps.remove(i);
            }
            "up" => {
                let i = idx(arg, self.steps.len())?;
                if i > 0 {
                    self.steps.swap(i, i - 1);
                }
            }
            "down" => {
                let i = idx(arg, self.steps.len())?;
                if i + 1 < self.steps.len() {
                    self.steps.swap(i, i + 1);
                }
            }
            "add-input" => {
                if self.inputs.len() >= MAX_INPUTS {
                    return Err(format!("At most {MAX_INPUTS} inputs."));
                }
                self.inputs.push(DraftInput {
                    required: true,
                    kind: "text".into(),
                    ..DraftInput::default()
                });
            }
            "remove-input" => {
                let i = idx(arg, self.inputs.len())?;
                self.inputs.remove(i);
            }
            "declare" => {
                if self.inputs.len() >= MAX_INPUTS {
                    return Err(format!("At most {MAX_INPUTS} inputs."));
                }
                if !self.inputs.iter().any(|x| x.name == arg) {
                    self.inputs.push(DraftInput {
                        name: arg.to_string(),
                        required: true,
                        kind: "text".into(),
                        ..DraftInput::default()
                    });
                }
            }
            "insert" => {
                // arg: a field id `step-<i>-<key>`
                let var = f
                    .get(&format!("{arg}-var"))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default();
                let Some((i, key)) = arg
                    .strip_prefix("step-")
                    .and_then(|r| r.split_once('-'))
                    .and_then(|(i, k)| Some((idx(i, self.steps.len()).ok()?, k)))
                else {
                    return Err("That field no longer exists; the page was refreshed.".into());
                };
                if var.is_empty()
                    || !var
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
                {
                    return Err("Choose a variable to insert.".into());
                }
                let v = self.steps[i].vals.entry(key.to_string()).or_default();
                if !v.is_empty() && !v.ends_with(char::is_whitespace) {
                    v.push(' ');
                }
                v.push_str(&format!("{{{{{var}}}}}"));
            }
            _ => {}
        }
        Ok(())
    }

    /// The step names in order (`None` for an unnamed step).
    fn step_name(&self, i: usize) -> Option<&str> {
        self.steps[i]
            .vals
            .get("name")
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }

    /// The variables step `i` (0-based) may use: (variable, label).
    fn available(&self, i: usize) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for x in self.inputs.iter().filter(|x| !x.name.is_empty()) {
            out.push((
                format!("initial.{}", x.name),
                format!("initial.{} (initial input)", x.name),
            ));
        }
        for j in 0..i.min(self.steps.len()) {
            let key = self
                .step_name(j)
                .map(str::to_string)
                .unwrap_or_else(|| (j + 1).to_string());
            out.push((
                format!("steps.{key}.output"),
                format!("steps.{key}.output (output of step {})", j + 1),
            ));
            if self.steps[j].kind == "approval" {
                out.push((
                    format!("steps.{key}.reason"),
                    format!("steps.{key}.reason (rejection reason of step {})", j + 1),
                ));
            }
        }
        for (v, l) in [
            ("chat.name", "chat.name (the chat's title)"),
            ("date", "date (local YYYY-MM-DD)"),
            ("run.id", "run.id (the run's number)"),
        ] {
            out.push((v.into(), l.into()));
        }
        out
    }

    /// The initial inputs the steps reference (`{{initial.x}}`), in order of first use.
    fn needed_inputs(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in &self.steps {
            for (k, v) in &s.vals {
                if !is_template_key(&s.kind, k) {
                    continue;
                }
                let refs = match vars::referenced(v) {
                    Ok(r) => r,
                    Err(_) => continue,
                };
                for r in refs {
                    if r.root() == "initial" {
                        if let Some(x) = r.parts.get(1) {
                            if !out.contains(x) {
                                out.push(x.clone());
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// Whether field `key` of a step of `kind` is a template (gets a variable select).
fn is_template_key(kind: &str, key: &str) -> bool {
    match kind {
        "prompt" => key == "prompt",
        "message" => key == "text" || key == "to",
        "approval" => key == "text",
        "condition" => key == "if_value",
        "tool" => key.starts_with("arg-"),
        "routine" => key.starts_with("input-"),
        "wait" => key == "filters",
        _ => false,
    }
}

fn input_draft(x: &InputSpec) -> DraftInput {
    DraftInput {
        name: x.name.clone(),
        description: x.description.clone(),
        kind: x.kind.as_str().to_string(),
        required: x.required,
        default: x.default.clone().unwrap_or_default(),
        example: x.example.clone().unwrap_or_default(),
    }
}

fn step_draft(s: &Step) -> DraftStep {
    let mut v: BTreeMap<String, String> = BTreeMap::new();
    let mut put = |k: &str, val: String| {
        v.insert(k.to_string(), val);
    };
    put("name", s.name.clone().unwrap_or_default());
    put("timeout", s.timeout.to_string());
    if s.require_approval {
        put("require_approval", "on".into());
    }
    if s.auto_approve {
        put("auto_approve", "on".into());
    }
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    let num = |o: &Option<u32>| o.map(|n| n.to_string()).unwrap_or_default();
    match &s.kind {
        StepKind::Prompt { prompt, tools } => {
            put("prompt", prompt.clone());
            put(
                "tools",
                tools.as_ref().map(|t| t.join(", ")).unwrap_or_default(),
            );
        }
        StepKind::Routine { routine, inputs } => {
            put("routine", routine.clone());
            for (k, t) in inputs {
                put(&format!("input-{k}"), t.clone());
            }
        }
        StepKind::Message { text, to } => {
            put("text", text.clone());
            put("to", opt(to));
        }
        StepKind::Tool { tool, args } => {
            put("tool", tool.clone());
            for (k, a) in args {
                let text = match a {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                put(&format!("arg-{k}"), text);
            }
        }
        StepKind::Wait {
            duration,
            until,
            event,
            filters,
            event_timeout,
        } => {
            put("duration", opt(duration));
            put("until", opt(until));
            put("event", opt(event));
            put(
                "filters",
                filters
                    .iter()
                    .map(|(k, t)| format!("{k} = {t}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
            put("event_timeout", opt(event_timeout));
        }
        StepKind::Condition {
            check,
            then,
            otherwise,
            max_loops,
        } => {
            put("if_value", check.value.clone());
            let (t, x) = match &check.test {
                Test::Contains(x) => ("contains", x),
                Test::Equals(x) => ("equals", x),
                Test::Compare(x) => ("compare", x),
            };
            put("test", t.into());
            put("test_value", x.clone());
            put("then", opt(then));
            put("else", opt(otherwise));
            put("max_loops", num(max_loops));
        }
        StepKind::Approval {
            text,
            resolvers,
            required,
            on_reject,
            max_loops,
            expires,
        } => {
            put("text", text.clone());
            put(
                "resolvers",
                match resolvers {
                    Resolvers::Others => "others".into(),
                    Resolvers::Named(n) => n.join(", "),
                },
            );
            put("required", required.to_string());
            put("on_reject", opt(on_reject));
            put("max_loops", num(max_loops));
            put("expires", opt(expires));
        }
    }
    DraftStep {
        kind: s.kind.step_type().as_str().to_string(),
        vals: v,
    }
}

// ---------------------------------------------------------------------------------------------
// Draft → definition, with the errors of fields that do not even parse.

/// Field id → error messages.
type Errors = BTreeMap<String, Vec<String>>;

fn push(errors: &mut Errors, id: impl Into<String>, msg: impl Into<String>) {
    errors.entry(id.into()).or_default().push(msg.into());
}

fn parse_num(s: &DraftStep, i: usize, key: &str, errors: &mut Errors) -> Option<u32> {
    let v = s.get(key).trim();
    if v.is_empty() {
        return None;
    }
    match v.parse::<u32>() {
        Ok(n) => Some(n),
        Err(_) => {
            push(
                errors,
                format!("step-{}-{key}", i + 1),
                format!("'{v}' is not a whole number"),
            );
            None
        }
    }
}

/// `key = value` lines (blank lines skipped).
fn parse_lines(
    s: &DraftStep,
    i: usize,
    key: &str,
    errors: &mut Errors,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in s.get(key).lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                out.insert(k.trim().to_string(), v.trim().to_string());
            }
            _ => push(
                errors,
                format!("step-{}-{key}", i + 1),
                format!("'{line}' is not a line like field = value"),
            ),
        }
    }
    out
}

/// A tool argument's value from its text: JSON for non-string parameters when it parses,
/// else the text (a template).
fn arg_value(tool: &str, param: &str, text: &str) -> serde_json::Value {
    let ty = TOOLS
        .get(tool)
        .and_then(|t| t.params.iter().find(|(p, _, _)| p == param))
        .map(|(_, ty, _)| ty.as_str())
        .unwrap_or("string");
    if ty != "string" && !text.contains("{{") {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(text.trim()) {
            return v;
        }
    }
    serde_json::Value::String(text.to_string())
}

fn to_step(s: &DraftStep, i: usize, errors: &mut Errors) -> Step {
    let timeout = parse_num(s, i, "timeout", errors).unwrap_or(DEFAULT_TIMEOUT_S);
    let kind = match s.kind.as_str() {
        "prompt" => StepKind::Prompt {
            prompt: s.get("prompt").to_string(),
            tools: s.trimmed("tools").map(|t| {
                t.split([',', ' '])
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect()
            }),
        },
        "routine" => StepKind::Routine {
            routine: s.get("routine").trim().to_string(),
            inputs: s
                .vals
                .iter()
                .filter_map(|(k, v)| {
                    let k = k.strip_prefix("input-")?;
                    (!v.trim().is_empty()).then(|| (k.to_string(), v.clone()))
                })
                .collect(),
        },
        "message" => StepKind::Message {
            text: s.get("text").to_string(),
            to: s.trimmed("to"),
        },
        "tool" => {
            let tool = s.get("tool").trim().to_string();
            let args = s
                .vals
                .iter()
                .filter_map(|(k, v)| {
                    let k = k.strip_prefix("arg-")?;
                    (!v.trim().is_empty()).then(|| (k.to_string(), arg_value(&tool, k, v)))
                })
                .collect();
            StepKind::Tool { tool, args }
        }
        "wait" => StepKind::Wait {
            duration: s.trimmed("duration"),
            until: s.trimmed("until"),
            event: s.trimmed("event"),
            filters: parse_lines(s, i, "filters", errors),
            event_timeout: s.trimmed("event_timeout"),
        },
        "condition" => {
            let x = s.get("test_value").to_string();
            let test = match s.get("test") {
                "equals" => Test::Equals(x),
                "compare" => Test::Compare(x),
                _ => Test::Contains(x),
            };
            StepKind::Condition {
                check: Check {
                    value: s.get("if_value").to_string(),
                    test,
                },
                then: s.trimmed("then"),
                otherwise: s.trimmed("else"),
                max_loops: parse_num(s, i, "max_loops", errors),
            }
        }
        "approval" => {
            let r = s.get("resolvers").trim();
            let resolvers = if r.is_empty() || r == "others" {
                Resolvers::Others
            } else {
                Resolvers::Named(
                    r.split(',')
                        .map(str::trim)
                        .filter(|x| !x.is_empty())
                        .map(str::to_string)
                        .collect(),
                )
            };
            StepKind::Approval {
                text: s.get("text").to_string(),
                resolvers,
                required: parse_num(s, i, "required", errors).unwrap_or(1),
                on_reject: s.trimmed("on_reject"),
                max_loops: parse_num(s, i, "max_loops", errors),
                expires: s.trimmed("expires"),
            }
        }
        other => {
            push(
                errors,
                format!("step-{}", i + 1),
                format!("'{other}' is not a step kind"),
            );
            StepKind::Message {
                text: String::new(),
                to: None,
            }
        }
    };
    Step {
        name: s.trimmed("name"),
        timeout,
        require_approval: s.on("require_approval"),
        auto_approve: s.on("auto_approve"),
        kind,
    }
}

/// The draft as a document over `base` (the stored routine's document when editing: its
/// triggers, quiet flag, concurrency and recording are kept).
fn to_doc(d: &Draft, base: Option<RoutineDoc>, errors: &mut Errors) -> RoutineDoc {
    let mut inputs = Vec::new();
    for (i, x) in d.inputs.iter().enumerate() {
        let kind =
            match serde_json::from_value::<InputType>(serde_json::Value::String(x.kind.clone())) {
                Ok(k) => k,
                Err(_) if x.kind.is_empty() => InputType::Text,
                Err(_) => {
                    push(
                        errors,
                        format!("input-{}-type", i + 1),
                        format!("'{}' is not an input type", x.kind),
                    );
                    InputType::Text
                }
            };
        inputs.push(InputSpec {
            name: x.name.clone(),
            description: x.description.trim().to_string(),
            required: x.required,
            default: (!x.default.is_empty()).then(|| x.default.clone()),
            kind,
            example: (!x.example.is_empty()).then(|| x.example.clone()),
        });
    }
    let steps = d
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| to_step(s, i, errors))
        .collect();
    let mut doc = base.unwrap_or_else(|| RoutineDoc {
        name: d.name.clone(),
        description: String::new(),
        status: "published".into(),
        triggers: Vec::new(),
        quiet: false,
        definition: Definition::default(),
    });
    doc.description = d.description.trim().to_string();
    if !d.status.is_empty() {
        doc.status = d.status.clone();
    }
    doc.definition.inputs = inputs;
    doc.definition.steps = steps;
    doc
}

// ---------------------------------------------------------------------------------------------
// Errors from validation → the field they concern.

/// The field a validation error belongs to: `name`, `description`, `status`,
/// `input-<i>-name`, `step-<i>-<key>`, `step-<i>` (the step as a whole), `step-list`, or `form`.
fn field_of(d: &Draft, e: &DefinitionError) -> String {
    let at = e.at.as_str();
    let msg = e.message.as_str();
    match at {
        "name" | "description" | "status" => return at.to_string(),
        "steps" => return "step-list".into(),
        _ => {}
    }
    if let Some(rest) = at.strip_prefix("input '") {
        let name = rest.trim_end_matches('\'');
        let mut hits = d
            .inputs
            .iter()
            .enumerate()
            .filter(|(_, x)| x.name == name)
            .map(|(i, _)| i);
        let first = hits.next();
        // "is declared twice": the later one
        let i = if msg.contains("twice") {
            hits.next().or(first)
        } else {
            first
        };
        return match i {
            Some(i) => format!("input-{}-name", i + 1),
            None => "form".into(),
        };
    }
    let Some(n) = at
        .strip_prefix("step ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| (1..=d.steps.len()).contains(n))
    else {
        return "form".into();
    };
    let s = &d.steps[n - 1];
    let id = |k: &str| format!("step-{n}-{k}");
    // a variable that does not resolve: the template field that uses it
    if let Some(var) = msg
        .strip_prefix("{{")
        .and_then(|r| r.split_once("}}"))
        .map(|(v, _)| v)
    {
        let found = s
            .vals
            .iter()
            .filter(|(k, _)| is_template_key(&s.kind, k))
            .find(|(_, v)| v.contains(var) || v.replace(' ', "").contains(var))
            .map(|(k, _)| id(k));
        return found.unwrap_or_else(|| format!("step-{n}"));
    }
    let quoted = |prefix: &str| -> Option<String> {
        let r = msg.split_once(prefix)?.1;
        Some(r.split('\'').next()?.to_string())
    };
    let first = msg.split([' ', ':']).next().unwrap_or("");
    let key: Option<String> = match first {
        "prompt" | "text" | "to" | "duration" | "until" | "event_timeout" | "required"
        | "resolvers" | "expires" | "max_loops" | "timeout" | "then" | "else" | "on_reject"
        | "tools" | "auto_approve" | "filters" => Some(first.to_string()),
        "args" => None,
        "if.value" => Some("if_value".into()),
        "compare" => Some("test_value".into()),
        "a" if msg.starts_with("a step name") => Some("name".into()),
        "a" if msg.starts_with("a wait") => Some("duration".into()),
        "'end'" | "another" => Some("name".into()),
        "'fact" | "fact" => Some("if_value".into()),
        "event" if msg.contains("has no field") => Some("filters".into()),
        "event" => Some("event".into()),
        "tool" => match (quoted("no argument '"), quoted("needs the argument '")) {
            (Some(a), _) | (_, Some(a)) if s.vals.contains_key(&format!("arg-{a}")) => {
                Some(format!("arg-{a}"))
            }
            _ => Some("tool".into()),
        },
        "routine" => match (quoted("has no input '"), quoted("needs the input '")) {
            (Some(a), _) | (_, Some(a)) if s.vals.contains_key(&format!("input-{a}")) => {
                Some(format!("input-{a}"))
            }
            _ => Some("routine".into()),
        },
        f if f.starts_with("inputs.") => Some(format!("input-{}", &f[7..])),
        _ => None,
    };
    match key {
        Some(k) => id(&k),
        None => format!("step-{n}"),
    }
}

fn add_errors(d: &Draft, list: &[DefinitionError], errors: &mut Errors) {
    for e in list {
        let f = field_of(d, e);
        // the whole form or a whole step: say where; a field: its message next to it
        let whole_step = f
            .strip_prefix("step-")
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        let text = if f == "form" || whole_step {
            e.to_string()
        } else {
            e.message.clone()
        };
        push(errors, f, text);
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering.

#[derive(Serialize)]
struct Opt {
    value: String,
    label: String,
    selected: bool,
}

fn opts<'a>(list: impl IntoIterator<Item = (&'a str, &'a str)>, current: &str) -> Vec<Opt> {
    list.into_iter()
        .map(|(v, l)| Opt {
            value: v.to_string(),
            label: l.to_string(),
            selected: v == current,
        })
        .collect()
}

/// One form field as the template draws it.
#[derive(Serialize)]
struct Field {
    id: String,
    label: String,
    /// `text`, `textarea`, `select`, `checkbox`, `number`.
    input: &'static str,
    value: String,
    checked: bool,
    options: Vec<Opt>,
    help: String,
    /// The joined error messages ("" when none).
    error: String,
    /// The variables this template field may use (empty: not a template).
    vars: Vec<Opt>,
}

struct FieldCtx<'a> {
    i: usize,
    step: &'a DraftStep,
    errors: &'a Errors,
    vars: &'a [(String, String)],
}

impl FieldCtx<'_> {
    fn make(&self, key: &str, label: &str, input: &'static str, help: &str) -> Field {
        let id = format!("step-{}-{key}", self.i + 1);
        let vars = if is_template_key(&self.step.kind, key) {
            self.vars
                .iter()
                .map(|(v, l)| Opt {
                    value: v.clone(),
                    label: l.clone(),
                    selected: false,
                })
                .collect()
        } else {
            Vec::new()
        };
        Field {
            error: self
                .errors
                .get(&id)
                .map(|v| v.join(" "))
                .unwrap_or_default(),
            value: self.step.get(key).to_string(),
            checked: self.step.on(key),
            id,
            label: label.to_string(),
            input,
            options: Vec::new(),
            help: help.to_string(),
            vars,
        }
    }

    fn select(&self, key: &str, label: &str, options: Vec<(String, String)>, help: &str) -> Field {
        let mut f = self.make(key, label, "select", help);
        let cur = f.value.clone();
        let mut o: Vec<Opt> = options
            .into_iter()
            .map(|(v, l)| Opt {
                selected: v == cur,
                value: v,
                label: l,
            })
            .collect();
        if !cur.is_empty() && !o.iter().any(|x| x.selected) {
            o.push(Opt {
                value: cur.clone(),
                label: format!("{cur} (unknown)"),
                selected: true,
            });
        }
        f.options = o;
        f
    }
}

/// The fields of step `i` in the order they are drawn.
fn step_fields(c: &FieldCtx<'_>, routines: &BTreeMap<String, Definition>) -> Vec<Field> {
    let s = c.step;
    let mut out = vec![c.make(
        "name",
        "Step name",
        "text",
        "a-z, 0-9 and _; later steps use its output as {{steps.<name>.output}} (optional)",
    )];
    match s.kind.as_str() {
        "prompt" => {
            out.push(c.make(
                "prompt",
                "Prompt",
                "textarea",
                "What the agent is asked; its final text is the step's output.",
            ));
            out.push(c.make(
                "tools",
                "Tools (optional)",
                "text",
                "Restrict the turn to these tools, separated by commas.",
            ));
            out.push(c.make(
                "auto_approve",
                "Run destructive tool calls without the run owner's confirmation",
                "checkbox",
                "",
            ));
        }
        "message" => {
            out.push(c.make(
                "text",
                "Text",
                "textarea",
                "Posted to the chat (a template).",
            ));
            out.push(c.make(
                "to",
                "To (optional)",
                "text",
                "\"owner\", a member's name or Telegram id; empty: the chat.",
            ));
        }
        "tool" => {
            let mut tools: Vec<(String, String)> =
                vec![(String::new(), "— choose a tool —".into())];
            tools.extend(TOOLS.iter().map(|(n, m)| {
                let label = if m.destructive {
                    format!("{n} (changes data)")
                } else {
                    n.clone()
                };
                (n.clone(), label)
            }));
            out.push(c.select(
                "tool",
                "Tool",
                tools,
                "Press “Show fields” after choosing, to see its arguments.",
            ));
            let tool = s.get("tool").trim();
            let mut shown = BTreeSet::new();
            if let Some(meta) = TOOLS.get(tool) {
                for (p, ty, req) in &meta.params {
                    let key = format!("arg-{p}");
                    let label = format!("{p}{}", if *req { "" } else { " (optional)" });
                    out.push(c.make(
                        &key,
                        &label,
                        "text",
                        &format!("{ty}; text may use variables"),
                    ));
                    shown.insert(key);
                }
            }
            // arguments kept from before (another tool, or an unknown one)
            for k in s
                .vals
                .keys()
                .filter(|k| k.starts_with("arg-") && !shown.contains(*k))
            {
                out.push(c.make(
                    k,
                    &format!("{} (not an argument of this tool)", &k[4..]),
                    "text",
                    "",
                ));
            }
        }
        "routine" => {
            let mut list: Vec<(String, String)> =
                vec![(String::new(), "— choose a routine —".into())];
            list.extend(routines.keys().map(|n| (n.clone(), n.clone())));
            out.push(c.select(
                "routine",
                "Routine to run",
                list,
                "Press “Show fields” after choosing, to map its inputs.",
            ));
            let mut shown = BTreeSet::new();
            if let Some(def) = routines.get(s.get("routine").trim()) {
                for x in &def.inputs {
                    let key = format!("input-{}", x.name);
                    let req = x.required && x.default.is_none();
                    let label = format!("Input {}{}", x.name, if req { "" } else { " (optional)" });
                    out.push(c.make(&key, &label, "text", &x.description));
                    shown.insert(key);
                }
            }
            for k in s
                .vals
                .keys()
                .filter(|k| k.starts_with("input-") && !shown.contains(*k))
            {
                out.push(c.make(
                    k,
                    &format!("Input {} (not an input of this routine)", &k[6..]),
                    "text",
                    "",
                ));
            }
        }
        "wait" => {
            out.push(c.make(
                "duration",
                "Duration",
                "text",
                "Like 1d, 2h30m or 90s. Give exactly one of duration, until or event.",
            ));
            out.push(c.make("until", "Until (local time HH:MM)", "text", ""));
            out.push(c.make(
                "event",
                "Until the event",
                "text",
                "A hearth event kind, e.g. member_joined, run_completed.",
            ));
            out.push(c.make(
                "filters",
                "Event filters",
                "textarea",
                "One field = value a line.",
            ));
            out.push(c.make("event_timeout", "Event timeout", "text", "Default 1d."));
        }
        "condition" => {
            out.push(c.make("if_value", "Value tested", "text", "A template like {{steps.plan.output}}, or fact:overdue_count, fact:elapsed_minutes, …"));
            out.push(c.select(
                "test",
                "Test",
                vec![
                    ("contains".into(), "contains".into()),
                    ("equals".into(), "equals".into()),
                    ("compare".into(), "compares as a number".into()),
                ],
                "",
            ));
            out.push(c.make(
                "test_value",
                "Compared with",
                "text",
                "For a number: > 3, <= 10, == 0 or != 2.",
            ));
            out.push(c.make(
                "then",
                "Then go to",
                "text",
                "A step name or end; empty: the next step.",
            ));
            out.push(c.make(
                "else",
                "Else go to",
                "text",
                "A step name or end; empty: the next step.",
            ));
            out.push(c.make(
                "max_loops",
                "Max loops",
                "number",
                "Needed when a branch goes back to an earlier step (1 to 10).",
            ));
        }
        "approval" => {
            out.push(c.make(
                "text",
                "Question",
                "textarea",
                "What the approvers are asked (a template).",
            ));
            out.push(c.make(
                "resolvers",
                "Who decides",
                "text",
                "\"others\" (any member but the run owner) or names separated by commas.",
            ));
            out.push(c.make("required", "Approvals needed", "number", ""));
            out.push(c.make(
                "on_reject",
                "On rejection go to",
                "text",
                "A step name or end; empty: the run stops.",
            ));
            out.push(c.make(
                "max_loops",
                "Max loops",
                "number",
                "Needed when on rejection goes back (1 to 10).",
            ));
            out.push(c.make(
                "expires",
                "Expires after",
                "text",
                "Like 2d; empty: the default.",
            ));
        }
        _ => {}
    }
    out.push(c.make("timeout", "Timeout (seconds)", "number", ""));
    out.push(c.make(
        "require_approval",
        "Ask for approval before this step",
        "checkbox",
        "",
    ));
    out
}

/// What a page needs besides the draft.
struct PageCtx<'a> {
    sc: &'a Scope,
    /// `None`: a new routine; `Some`: the routine whose steps are edited.
    routine: Option<&'a RoutineRow>,
    routines: BTreeMap<String, Definition>,
    notes: Vec<String>,
}

fn render_page(p: &PageCtx<'_>, d: &Draft, errors: &Errors, status: StatusCode) -> Response {
    let err = |id: &str| errors.get(id).map(|v| v.join(" ")).unwrap_or_default();
    let inputs: Vec<minijinja::Value> = d
        .inputs
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let n = i + 1;
            context! {
                n,
                name => x.name,
                description => x.description,
                types => opts(
                    ["text", "member", "chore", "date", "number"].iter().map(|t| (*t, *t)),
                    if x.kind.is_empty() { "text" } else { &x.kind },
                ),
                required => x.required,
                default => x.default,
                example => x.example,
                error_name => err(&format!("input-{n}-name")),
                error_type => err(&format!("input-{n}-type")),
            }
        })
        .collect();
    let steps: Vec<minijinja::Value> = d
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let vars = d.available(i);
            let c = FieldCtx {
                i,
                step: s,
                errors,
                vars: &vars,
            };
            let label = KINDS
                .iter()
                .find(|(k, _)| *k == s.kind)
                .map(|(_, l)| *l)
                .unwrap_or("Unknown kind");
            context! {
                n => i + 1,
                kind => s.kind,
                kind_label => label,
                name => d.step_name(i),
                fields => step_fields(&c, &p.routines),
                error => err(&format!("step-{}", i + 1)),
                first => i == 0,
                last => i + 1 == d.steps.len(),
            }
        })
        .collect();
    let declared: BTreeSet<&str> = d.inputs.iter().map(|x| x.name.as_str()).collect();
    let needed: Vec<minijinja::Value> = d
        .needed_inputs()
        .into_iter()
        .map(|n| context! { declared => declared.contains(n.as_str()), name => n })
        .collect();
    let (action, heading) = match p.routine {
        None => (
            format!("/admin/g/{}/routines/new", p.sc.chat.id),
            "New playbook".to_string(),
        ),
        Some(r) => (
            format!("/admin/g/{}/routines/{}/steps", p.sc.chat.id, r.id),
            format!("Steps of {}", r.name),
        ),
    };
    let status_value = if d.status.is_empty() {
        "published"
    } else {
        d.status.as_str()
    };
    pages::render(
        status,
        "builder.html",
        context! {
            heading,
            title => p.sc.title(),
            action,
            is_new => p.routine.is_none(),
            routine_id => p.routine.map(|r| r.id),
            name => d.name,
            description => d.description,
            statuses => opts([("published", "published (runs and fires)"), ("draft", "draft (neither fires nor runs)")], status_value),
            inputs,
            steps,
            needed,
            kinds => opts(KINDS.iter().copied(), "prompt"),
            notes => p.notes,
            error_form => err("form"),
            error_name => err("name"),
            error_description => err("description"),
            error_status => err("status"),
            error_steps => err("step-list"),
            has_errors => !errors.is_empty(),
            ..p.sc.base()
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Handlers.

fn actor(sc: &Scope) -> Actor {
    // the scope admitted only a group the user administers, or their own DM (where the chat
    // treats them as admin, like `commands::actor`)
    Actor {
        user_id: sc.session.user_id,
        admin: true,
    }
}

async fn load_routines(
    st: &AdminState,
    chat_id: i64,
    own: &str,
) -> Result<BTreeMap<String, Definition>, Response> {
    match ValidateCtx::load(st.svc(), chat_id, own).await {
        Ok(c) => Ok(c.routines),
        Err(RoutineError::Store(e)) => Err(pages::failed(e)),
        Err(e) => {
            tracing::warn!(chat_id, error = %e, "builder: a stored routine does not read");
            Ok(BTreeMap::new())
        }
    }
}

async fn new_page(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path(chat): Path<String>,
) -> Response {
    let sc = match pages::scope(&st, &headers, &chat).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let routines = match load_routines(&st, sc.chat.id, "").await {
        Ok(r) => r,
        Err(r) => return r,
    };
    // no step yet: `add` appends the first (the browser test adds three to a blank page)
    let d = Draft {
        status: "published".into(),
        ..Draft::default()
    };
    let p = PageCtx {
        sc: &sc,
        routine: None,
        routines,
        notes: Vec::new(),
    };
    render_page(&p, &d, &Errors::new(), StatusCode::OK)
}

async fn new_post(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path(chat): Path<String>,
    body: Bytes,
) -> Response {
    let form = form_of(&body);
    let sc =
        match pages::scope_post(&st, &headers, &chat, form.get("csrf").map(String::as_str)).await {
            Ok(sc) => sc,
            Err(r) => return r,
        };
    let d = Draft::from_form(&form);
    handle(&st, &sc, None, d, &form).await
}

async fn steps_page(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path((chat, rid)): Path<(String, String)>,
) -> Response {
    let sc = match pages::scope(&st, &headers, &chat).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let r = match pages::routine_in(&st, &sc, &rid).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let routines = match load_routines(&st, sc.chat.id, &r.name).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let p = PageCtx {
        sc: &sc,
        routine: Some(&r),
        routines,
        notes: Vec::new(),
    };
    match doc::definition_of(&r) {
        Ok(def) => render_page(
            &p,
            &Draft::of_routine(&r, &def),
            &Errors::new(),
            StatusCode::OK,
        ),
        Err(e) => {
            let mut errors = Errors::new();
            push(
                &mut errors,
                "form",
                format!("The stored steps do not read ({e}); saving replaces them."),
            );
            let d = Draft {
                name: r.name.clone(),
                description: r.description.clone(),
                status: r.publication.as_str().into(),
                ..Draft::default()
            };
            render_page(&p, &d, &errors, StatusCode::OK)
        }
    }
}

async fn steps_post(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path((chat, rid)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let form = form_of(&body);
    let sc =
        match pages::scope_post(&st, &headers, &chat, form.get("csrf").map(String::as_str)).await {
            Ok(sc) => sc,
            Err(r) => return r,
        };
    let r = match pages::routine_in(&st, &sc, &rid).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let mut d = Draft::from_form(&form);
    d.name = r.name.clone(); // the name is not edited here
    handle(&st, &sc, Some(&r), d, &form).await
}

/// Apply the form's action to the draft and re-render, or validate and save.
async fn handle(
    st: &AdminState,
    sc: &Scope,
    routine: Option<&RoutineRow>,
    mut d: Draft,
    form: &Form,
) -> Response {
    let own = routine
        .map(|r| r.name.as_str())
        .unwrap_or(d.name.as_str())
        .to_string();
    let routines = match load_routines(st, sc.chat.id, &own).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let mut p = PageCtx {
        sc,
        routine,
        routines,
        notes: Vec::new(),
    };
    let action = form.get("action").map(String::as_str).unwrap_or("refresh");
    if action != "save" {
        if let Err(note) = d.apply(action, form) {
            p.notes.push(note);
        }
        return render_page(&p, &d, &Errors::new(), StatusCode::OK);
    }
    match save(st, sc, routine, &d).await {
        Ok(id) => Redirect::to(&format!("/admin/g/{}/routines/{id}", sc.chat.id)).into_response(),
        Err(Ok(errors)) => render_page(&p, &d, &errors, StatusCode::UNPROCESSABLE_ENTITY),
        Err(Err(resp)) => resp,
    }
}

/// Validate and save the draft through [`doc::save_doc`]; the routine's id, or the errors by
/// field (`Err(Ok)`), or a response (storage failure).
async fn save(
    st: &AdminState,
    sc: &Scope,
    routine: Option<&RoutineRow>,
    d: &Draft,
) -> Result<i64, Result<Errors, Response>> {
    let svc = st.svc();
    let chat_id = sc.chat.id;
    let mut errors = Errors::new();
    let base = match routine {
        Some(r) => match doc::doc_of(svc, r).await {
            Ok(doc) => Some(doc),
            Err(RoutineError::Store(e)) => return Err(Err(pages::failed(e))),
            Err(e) => {
                push(&mut errors, "form", e.to_string());
                None
            }
        },
        None => None,
    };
    if routine.is_none() && !d.name.is_empty() {
        match st.store.routine_by_name(chat_id, &d.name).await {
            Ok(Some(_)) => push(
                &mut errors,
                "name",
                format!(
                    "'{}' is already used in this chat; choose another name",
                    d.name
                ),
            ),
            Ok(None) => {}
            Err(e) => return Err(Err(pages::failed(e))),
        }
    }
    let doc = to_doc(d, base, &mut errors);
    if !errors.is_empty() {
        // something does not parse, or the name is taken: show everything validation says too,
        // and store nothing
        if let Ok(ctx) = ValidateCtx::load(svc, chat_id, &doc.name).await {
            if let Err(list) = validate(&doc.definition, &ctx) {
                add_errors(d, &list, &mut errors);
            }
        }
        if routine.is_none() {
            if let Err(e) = crate::routines::model::validate_name(&doc.name) {
                push(
                    &mut errors,
                    "name",
                    e.to_string().trim_start_matches("name: ").to_string(),
                );
            }
        }
        return Err(Ok(errors));
    }
    match doc::save_doc(svc, chat_id, actor(sc), &doc).await {
        Ok(saved) => {
            tracing::info!(
                chat_id,
                routine = saved.routine.id,
                user = sc.session.user_id,
                "routine saved from the builder"
            );
            Ok(saved.routine.id)
        }
        Err(SaveError::Invalid(list)) => {
            add_errors(d, &list, &mut errors);
            Err(Ok(errors))
        }
        Err(SaveError::Routine(RoutineError::Store(e))) => Err(Err(pages::failed(e))),
        Err(SaveError::Routine(RoutineError::Invalid { field, rule })) => {
            let f = if field == "name" { "name" } else { "form" };
            push(
                &mut errors,
                f,
                if f == "name" {
                    rule
                } else {
                    format!("{field}: {rule}")
                },
            );
            Err(Ok(errors))
        }
        Err(SaveError::Routine(e)) => {
            push(&mut errors, "form", e.to_string());
            Err(Ok(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Form {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn three() -> Draft {
        Draft::from_form(&form(&[
            ("name", "x"),
            ("input-1-name", "who"),
            ("step-1-kind", "prompt"),
            ("step-1-name", "a"),
            ("step-1-prompt", "Hi {{initial.who}}"),
            ("step-2-kind", "approval"),
            ("step-2-name", "gate"),
            ("step-2-text", "OK?"),
            ("step-3-kind", "message"),
            ("step-3-text", "{{ steps.gate.reason }}"),
            // a gap ends the list: step 5 without step 4 is not read
            ("step-5-kind", "prompt"),
        ]))
    }

    #[test]
    fn actions_change_the_draft_and_refuse_what_no_longer_exists() {
        let mut d = three();
        assert_eq!(d.steps.len(), 3);
        assert!(d.apply("remove:4", &Form::new()).is_err());
        assert!(d.apply("up:0", &Form::new()).is_err());
        assert!(d.apply("add", &form(&[("new-step-kind", "nope")])).is_err());
        assert_eq!(d, three(), "a refused action changes nothing");
        d.apply("down:3", &Form::new()).unwrap(); // the last stays last
        d.apply("up:1", &Form::new()).unwrap(); // the first stays first
        assert_eq!(d, three());
        d.apply("up:3", &Form::new()).unwrap();
        assert_eq!(d.steps[1].kind, "message");
        d.apply(
            "insert:step-1-prompt",
            &form(&[("step-1-prompt-var", "date")]),
        )
        .unwrap();
        assert_eq!(d.steps[0].get("prompt"), "Hi {{initial.who}} {{date}}");
        // only variable names are inserted, never markup
        assert!(d
            .apply(
                "insert:step-1-prompt",
                &form(&[("step-1-prompt-var", "x}}{% raw %}")])
            )
            .is_err());
        d.apply("declare:when", &Form::new()).unwrap();
        d.apply("declare:when", &Form::new()).unwrap();
        assert_eq!(d.inputs.len(), 2);
        for _ in 0..MAX_STEPS {
            let _ = d.apply("add", &form(&[("new-step-kind", "wait")]));
        }
        assert_eq!(d.steps.len(), MAX_STEPS);
    }

    #[test]
    fn variables_offered_and_inputs_needed() {
        let d = three();
        let at = |i: usize| -> Vec<String> { d.available(i).into_iter().map(|(v, _)| v).collect() };
        assert_eq!(at(0), ["initial.who", "chat.name", "date", "run.id"]);
        assert_eq!(
            at(2),
            [
                "initial.who",
                "steps.a.output",
                "steps.gate.output",
                "steps.gate.reason",
                "chat.name",
                "date",
                "run.id"
            ]
        );
        assert_eq!(d.needed_inputs(), ["who"]);
    }

    #[test]
    fn errors_land_on_their_field() {
        let d = three();
        let e = |at: &str, message: &str| {
            field_of(
                &d,
                &DefinitionError {
                    at: at.into(),
                    message: message.into(),
                },
            )
        };
        assert_eq!(e("name", "bad"), "name");
        assert_eq!(e("steps", "0 given"), "step-list");
        assert_eq!(e("input 'who'", "is declared twice"), "input-1-name");
        assert_eq!(e("step 1 'a'", "prompt is empty"), "step-1-prompt");
        assert_eq!(
            e("step 3", "{{steps.gate.reason}} — no step named 'gate'"),
            "step-3-text"
        );
        assert_eq!(
            e("step 2 'gate'", "on_reject → 'x' — no step named 'x'"),
            "step-2-on_reject"
        );
        assert_eq!(
            e("step 2 'gate'", "another step is already named 'gate'"),
            "step-2-name"
        );
        assert_eq!(e("step 2 'gate'", "is never reached"), "step-2");
        assert_eq!(e("step 9", "prompt is empty"), "form");
        assert_eq!(e("recorded", "tool 'x' does not exist"), "form");
    }
}
