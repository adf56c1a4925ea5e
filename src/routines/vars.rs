//! Step templates: rendering `{{initial.x}}`, `{{steps.<name>.output}}` … with minijinja in
//! strict mode (an undefined variable is an error, never an empty string), and listing the
//! variables a template references (for [`super::validate`]).
//!
//! The context (issue 9 contract, "Step outputs for templates"):
//!
//! | variable | value |
//! | --- | --- |
//! | `initial.<x>` | the run's initial input `x` |
//! | `steps.<name>.output`, `steps.<name>.reason` | a named step's latest completed output / reason |
//! | `steps["<N>"].output` (also `steps.N.output`) | the same by 1-based step number |
//! | `chat.name` | the chat's title |
//! | `date` | local `YYYY-MM-DD` in the routine's zone |
//! | `run.id` | the run's id |
//! | `retry.reason`, `retry.count` | why this step runs again ("" / 0 on the first pass) |
//!
//! `steps.1.output` parses in minijinja (an integer attribute); since step outputs are keyed by
//! strings, the number is looked up as the string `"1"` as well, so `steps.1.output`,
//! `steps["1"].output` and `steps[1].output` all work.
//!
//! Uses: minijinja. Pure: no I/O.

use std::collections::BTreeMap;

use minijinja::value::{Object, Value};

/// Template instructions one step render may execute (minijinja fuel), like
/// `model::render_prompt`: far above any real template, low enough that a runaway loop stops
/// in milliseconds.
pub const STEP_FUEL: u64 = 50_000;

/// The longest rendered text, in bytes (a loop that doubles a string stops here).
pub const MAX_RENDERED_BYTES: usize = 64 * 1024;

/// What a step template may not do: parse, or render (an undefined variable, out of fuel).
/// `Display` is the minijinja message, e.g. "undefined value (in <string>:1)".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

impl From<minijinja::Error> for RenderError {
    fn from(e: minijinja::Error) -> Self {
        let mut s = e.to_string();
        // minijinja appends the source name; the template is always a string here
        for tail in [" (in <string>)", " (in <template>)"] {
            if let Some(x) = s.strip_suffix(tail) {
                s = x.to_string();
            }
        }
        RenderError(s)
    }
}

/// One step's result as templates see it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StepVars {
    /// The step's output (model text, message sent, tool result JSON, "approved", …).
    pub output: String,
    /// An approval's rejection reason, or "".
    pub reason: String,
}

/// The variables of one render, built by the executor (one per step run).
///
/// ```
/// use hearth::routines::vars::{render, Vars};
/// let v = Vars::new("Flat 3", "2026-11-29", 7)
///     .initial("preferences", "vegetarian")
///     .step(1, Some("plan"), "Pasta, curry", "");
/// assert_eq!(render("{{steps.plan.output}} / {{steps.1.output}}", &v).unwrap(), "Pasta, curry / Pasta, curry");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Vars {
    initial: BTreeMap<String, String>,
    /// By name and by 1-based number ("1", "2", …).
    steps: BTreeMap<String, StepVars>,
    chat_name: String,
    date: String,
    run_id: i64,
    retry_reason: String,
    retry_count: u32,
}

impl Vars {
    /// The chat's name, the local date (`YYYY-MM-DD`) and the run id; no inputs, no steps.
    pub fn new(chat_name: impl Into<String>, date: impl Into<String>, run_id: i64) -> Self {
        Vars {
            chat_name: chat_name.into(),
            date: date.into(),
            run_id,
            ..Vars::default()
        }
    }

    /// Add the initial input `name`.
    pub fn initial(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.initial.insert(name.into(), value.into());
        self
    }

    /// Add a finished step: `number` is 1-based; `name` its name, if any. A later call for the
    /// same step replaces the earlier (the latest completed step run counts).
    pub fn step(
        mut self,
        number: usize,
        name: Option<&str>,
        output: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        let v = StepVars {
            output: output.into(),
            reason: reason.into(),
        };
        if let Some(n) = name {
            self.steps.insert(n.to_string(), v.clone());
        }
        self.steps.insert(number.to_string(), v);
        self
    }

    /// Set `retry.reason` and `retry.count` (this step runs again because of `reason`).
    pub fn retry(mut self, reason: impl Into<String>, count: u32) -> Self {
        self.retry_reason = reason.into();
        self.retry_count = count;
        self
    }

    fn context(&self) -> Value {
        minijinja::context! {
            initial => Value::from_serialize(&self.initial),
            steps => Value::from_object(Steps(self.steps.clone())),
            chat => minijinja::context! { name => self.chat_name },
            date => self.date,
            run => minijinja::context! { id => self.run_id },
            retry => minijinja::context! { reason => self.retry_reason, count => self.retry_count },
        }
    }
}

/// `steps`: a map keyed by name and by number string that also answers integer keys
/// (`steps.1` → `steps["1"]`).
#[derive(Debug)]
struct Steps(BTreeMap<String, StepVars>);

impl Object for Steps {
    fn get_value(self: &std::sync::Arc<Self>, key: &Value) -> Option<Value> {
        let k = match key.as_str() {
            Some(s) => s.to_string(),
            None => i64::try_from(key.clone()).ok()?.to_string(),
        };
        self.0.get(&k).map(Value::from_serialize)
    }
}

/// The environment step templates render in: no HTML escaping (text for the model or the
/// chat's own escaping), undefined variables are errors, [`STEP_FUEL`] per render.
fn env() -> &'static minijinja::Environment<'static> {
    static ENV: std::sync::OnceLock<minijinja::Environment<'static>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_fuel(Some(STEP_FUEL));
        env.set_keep_trailing_newline(true);
        env
    })
}

/// Render a step template with `v`. Values are inserted once, as text: an output that contains
/// `{{ date }}` is never expanded.
///
/// Errors: the template does not parse, uses an undefined variable (strict), runs out of fuel,
/// or renders over [`MAX_RENDERED_BYTES`].
pub fn render(template: &str, v: &Vars) -> Result<String, RenderError> {
    let out = env().render_str(template, v.context())?;
    if out.len() > MAX_RENDERED_BYTES {
        return Err(RenderError(format!(
            "the rendered text is {} bytes; the limit is {MAX_RENDERED_BYTES}",
            out.len()
        )));
    }
    Ok(out)
}

/// Check that a template parses.
///
/// Errors: minijinja's syntax error, e.g. "syntax error: unexpected end of input, expected end
/// of variable block".
pub fn check_syntax(template: &str) -> Result<(), RenderError> {
    env().template_from_str(template)?;
    Ok(())
}

/// A variable a template uses, as a dotted path split in parts: `steps.plan.output` →
/// `["steps", "plan", "output"]`. `steps["1"].output` and `steps.1.output` both give
/// `["steps", "1", "output"]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct VarRef {
    pub parts: Vec<String>,
}

impl VarRef {
    /// `{{a.b.c}}` as written back for messages.
    pub fn braced(&self) -> String {
        format!("{{{{{}}}}}", self.parts.join("."))
    }

    /// The first part (`steps`, `initial`, `chat`, …).
    pub fn root(&self) -> &str {
        &self.parts[0]
    }
}

/// The variables `template` references (sorted, unique), without minijinja's globals (`range`,
/// `namespace`, …) and without names the template itself binds (`{% set %}`, loop variables).
///
/// minijinja reports dotted paths for `a.b.c`; a subscript with a literal (`steps["1"]`,
/// `steps[1]`, and `steps.1`, which minijinja parses as an integer subscript) is reported as its
/// base only, so those paths are read from the template's source here.
///
/// Errors: the template does not parse.
pub fn referenced(template: &str) -> Result<Vec<VarRef>, RenderError> {
    let t = env().template_from_str(template)?;
    let mut out: Vec<VarRef> = t
        .undeclared_variables(true)
        .into_iter()
        .filter(|v| {
            !env()
                .globals()
                .any(|(g, _)| g == v.split('.').next().unwrap_or(""))
        })
        .map(|v| VarRef {
            parts: v.split('.').map(str::to_string).collect(),
        })
        .collect();
    // `steps["1"].output`, `steps[1].output`, `steps.1.output`: minijinja gives only `steps`
    // for a subscript with a literal; the full path is read from the source instead
    let subs = subscripted_steps(template);
    if !subs.is_empty() {
        out.retain(|v| v.parts != ["steps"]);
        out.extend(subs);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `steps[<literal>]` and `steps.<digits>` followed by `.field` in the source, as paths.
fn subscripted_steps(template: &str) -> Vec<VarRef> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find("steps") {
        let before_ok = template.len() - rest.len() + i == 0
            || !rest[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        rest = &rest[i + 5..];
        if !before_ok {
            continue;
        }
        let key = if let Some(r) = rest.strip_prefix('[') {
            let Some(close) = r.find(']') else { break };
            let key = r[..close].trim().trim_matches(|c| c == '"' || c == '\'');
            let key = key.to_string();
            rest = &r[close + 1..];
            key
        } else if let Some(r) = rest.strip_prefix('.') {
            let digits: String = r.chars().take_while(char::is_ascii_digit).collect();
            if digits.is_empty() {
                continue;
            }
            rest = &r[digits.len()..];
            digits
        } else {
            continue;
        };
        let mut parts = vec!["steps".to_string(), key];
        if let Some(after) = rest.strip_prefix('.') {
            let field: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !field.is_empty() {
                parts.push(field);
            }
        }
        out.push(VarRef { parts });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v() -> Vars {
        Vars::new("Flat 3", "2026-11-29", 42)
            .initial("preferences", "vegetarian")
            .step(1, Some("plan"), "Pasta; curry", "")
            .step(2, None, "rejected", "too much pasta")
            .retry("no fish", 1)
    }

    #[test]
    fn renders_the_whole_context() {
        let out = render(
            "{{initial.preferences}}|{{steps.plan.output}}|{{steps.1.output}}|{{steps[\"1\"].output}}|{{steps[2].reason}}|{{chat.name}}|{{date}}|{{run.id}}|{{retry.reason}}|{{retry.count}}",
            &v(),
        )
        .unwrap();
        assert_eq!(
            out,
            "vegetarian|Pasta; curry|Pasta; curry|Pasta; curry|too much pasta|Flat 3|2026-11-29|42|no fish|1"
        );
        let cond = render(
            "{% if retry.reason %}Fix: {{retry.reason}}{% endif %}",
            &Vars::new("c", "d", 1),
        )
        .unwrap();
        assert_eq!(cond, "");
    }

    #[test]
    fn strict_undefined_is_an_error() {
        for bad in [
            "{{initial.budget}}",
            "{{steps.list.output}}",
            "{{steps.9.output}}",
            "{{nothing}}",
        ] {
            let e = render(bad, &v()).unwrap_err();
            assert!(e.0.contains("undefined"), "{bad}: {e}");
        }
    }

    #[test]
    fn values_are_not_expanded_twice() {
        let v = Vars::new("c", "d", 1).step(1, Some("a"), "{{ date }}", "");
        assert_eq!(render("{{steps.a.output}}", &v).unwrap(), "{{ date }}");
    }

    #[test]
    fn fuel_stops_a_runaway_loop() {
        let e = render(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            &v(),
        )
        .unwrap_err();
        assert!(e.0.contains("fuel") || e.0.contains("range"), "{e}");
    }

    #[test]
    fn lists_references() {
        let r = referenced(
            "{{steps.plan.output}} {{ steps.1.output }} {{steps[\"2\"].reason}} {{initial.x}} {{ retry.reason }} {% for i in range(2) %}{{i}}{% endfor %} {% set y = 1 %}{{y}}",
        )
        .unwrap();
        let paths: Vec<String> = r.iter().map(|v| v.parts.join(".")).collect();
        assert_eq!(
            paths,
            [
                "initial.x",
                "retry.reason",
                "steps.1.output",
                "steps.2.reason",
                "steps.plan.output"
            ]
        );
        assert!(referenced("{{ steps.plan.output ").is_err());
    }
}
