//! Extraction (issue 10, item 4): one model call, no tools offered, turns a recorded turn — the
//! member's request and the tool calls that ran — into a routine: a prompt template with
//! `{{param}}` placeholders, typed parameters, the tools it may use and which are destructive.
//!
//! The answer is checked here, never trusted ([`Extraction::check`]): the JSON shape, every
//! placeholder has a parameter and every parameter is used, the tools exist and were called by
//! the recording, the destructive ones are among them. A bad answer is retried once with the
//! error told to the model; a second bad answer is an [`ExtractError`] and nothing is stored.
//! The call's tokens are recorded as a turn with source `extraction`.
//!
//! Uses: agent (its model through the gate, its tool registry), store (turns), routines::steps.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::super::steps::{
    Definition, InputSpec, InputType, RecordedCall, Recording, RoutineDoc, Step, StepKind,
    DEFAULT_TIMEOUT_S,
};
use crate::{
    agent::{llm::ChatMessage, Agent},
    services::Services,
    store::{NewTurn, ToolCallRow, ToolCallStatus, TurnRow},
};

/// Characters of one recorded result shown to the model.
const RESULT_CLIP: usize = 600;
/// Longest prompt template, in characters (as `routines` prompts).
const MAX_PROMPT: usize = 2000;
/// Most parameters of one recorded routine.
const MAX_PARAMS: usize = 8;
/// The member's request kept in the routine, in characters.
const MAX_REQUEST: usize = 2000;

const SYSTEM: &str = "You turn a task a member did once in a chat into a reusable routine.\n\
You get the member's request and the tool calls that did it (tool, arguments, result).\n\
Answer with ONE JSON object and nothing else, in this shape:\n\
{\"name_suggestion\": \"short_name\", \"description\": \"one sentence\", \
\"prompt\": \"the instruction to do the same task again, with {{param}} placeholders for what changes next time\", \
\"params\": [{\"name\": \"param\", \"type\": \"text|member|chore|date|number\", \"description\": \"the question to ask for it, e.g. Whose chores?\", \"required\": true, \"example\": \"the value used this time\"}], \
\"tools\": [\"the tools the routine may use: only tools called below\"], \
\"destructive\": [\"those of tools that change something\"]}\n\
Rules: names use a-z, 0-9 and _ (the name starts with a letter); every {{placeholder}} is a parameter and every parameter appears in the prompt; \
use type member for a person of the group, chore for a chore, date for a day or time, number for a quantity, text otherwise.";

/// One parameter as the model returns it (keys it adds beyond these are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Param {
    pub name: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default = "yes")]
    pub required: bool,
    #[serde(default)]
    pub example: Option<Value>,
}

fn yes() -> bool {
    true
}

/// The model's answer (see the module). `prompt` uses `{{param}}`. Lenient in what it reads:
/// keys beyond these are ignored, missing optional ones default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extraction {
    #[serde(default)]
    pub name_suggestion: Option<String>,
    #[serde(default)]
    pub description: String,
    pub prompt: String,
    #[serde(default)]
    pub params: Vec<Param>,
    pub tools: Vec<String>,
    #[serde(default)]
    pub destructive: Vec<String>,
}

/// Why no routine came out of a recording (said to the member as "I couldn't turn that into a
/// routine: {0}; nothing was saved").
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ExtractError(pub String);

/// `{{ name }}` placeholders of `prompt`, in order (inner text trimmed).
pub fn placeholders(prompt: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = prompt;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            return Err("the prompt has a '{{' without its '}}'".into());
        };
        out.push(after[..j].trim().to_string());
        rest = &after[j + 2..];
    }
    Ok(out)
}

fn input_type(s: Option<&str>) -> Option<InputType> {
    Some(match s.unwrap_or("text").trim() {
        "text" | "" => InputType::Text,
        "member" => InputType::Member,
        "chore" => InputType::Chore,
        "date" => InputType::Date,
        "number" => InputType::Number,
        _ => return None,
    })
}

/// The text of an example value ("Bob", 3 → "3"); `None` for null or an empty string.
fn example_text(v: &Option<Value>) -> Option<String> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(crate::context::clip(s.trim(), 200)),
        Some(other) => Some(crate::context::clip(&other.to_string(), 200)),
    }
}

impl Extraction {
    /// Parse the model's text: the JSON object, alone or in a ```json fence.
    ///
    /// Errors: not JSON, or not this shape (serde's message, which names the field).
    pub fn parse(text: &str) -> Result<Extraction, String> {
        let t = text.trim();
        let t = t
            .strip_prefix("```json")
            .or_else(|| t.strip_prefix("```"))
            .map(|s| s.trim_end().trim_end_matches("```"))
            .unwrap_or(t)
            .trim();
        let t = match (t.find('{'), t.rfind('}')) {
            (Some(a), Some(b)) if a < b => &t[a..=b],
            _ => return Err("the answer is not a JSON object".into()),
        };
        serde_json::from_str(t).map_err(|e| format!("the JSON does not have the asked shape: {e}"))
    }

    /// Check the answer against the rules (module doc). `recorded` = the tools the recording
    /// called; `known` says whether a tool exists.
    ///
    /// Errors: the first broken rule, in words the model (and the member) can act on.
    pub fn check(
        &self,
        recorded: &BTreeSet<String>,
        known: impl Fn(&str) -> bool,
    ) -> Result<(), String> {
        let prompt = self.prompt.trim();
        if prompt.is_empty() {
            return Err("the prompt is empty".into());
        }
        if prompt.chars().count() > MAX_PROMPT {
            return Err(format!("the prompt is longer than {MAX_PROMPT} characters"));
        }
        if self.params.len() > MAX_PARAMS {
            return Err(format!("more than {MAX_PARAMS} parameters"));
        }
        let mut names = BTreeSet::new();
        for p in &self.params {
            if !crate::routines::validate::valid_name(&p.name) {
                return Err(format!(
                    "parameter name '{}' must be a-z, 0-9 and _ starting with a letter",
                    crate::context::clip(&p.name, 40)
                ));
            }
            if !names.insert(p.name.as_str()) {
                return Err(format!("parameter '{}' is listed twice", p.name));
            }
            if input_type(p.kind.as_deref()).is_none() {
                return Err(format!(
                    "parameter '{}' has type '{}'; use text, member, chore, date or number",
                    p.name,
                    crate::context::clip(p.kind.as_deref().unwrap_or(""), 20)
                ));
            }
        }
        let used = placeholders(prompt)?;
        for u in &used {
            if !names.contains(u.as_str()) {
                return Err(format!(
                    "the prompt uses {{{{{}}}}} but no parameter has that name",
                    crate::context::clip(u, 40)
                ));
            }
        }
        for n in &names {
            if !used.iter().any(|u| u == n) {
                return Err(format!(
                    "parameter '{n}' is not used in the prompt (write it as {{{{{n}}}}})"
                ));
            }
        }
        if self.tools.is_empty() {
            return Err("no tools are listed".into());
        }
        for t in &self.tools {
            if !known(t) {
                return Err(format!(
                    "tool '{}' does not exist",
                    crate::context::clip(t, 40)
                ));
            }
            if !recorded.contains(t) {
                return Err(format!("tool '{t}' was not called in the recording"));
            }
        }
        for d in &self.destructive {
            if !self.tools.contains(d) {
                return Err(format!(
                    "destructive tool '{}' is not among the tools",
                    crate::context::clip(d, 40)
                ));
            }
        }
        Ok(())
    }

    /// The prompt with each `{{ x }}` written `{{x}}` (what the preview shows).
    pub fn display_prompt(&self) -> String {
        rewrite(self.prompt.trim(), "")
    }

    /// The parameters as the routine's inputs (`type` parsed, descriptions defaulted).
    pub fn inputs(&self) -> Vec<InputSpec> {
        self.params
            .iter()
            .map(|p| InputSpec {
                name: p.name.clone(),
                description: if p.description.trim().is_empty() {
                    format!("What is {}?", p.name.replace('_', " "))
                } else {
                    crate::context::clip(p.description.trim(), 200)
                },
                required: p.required,
                default: None,
                kind: input_type(p.kind.as_deref()).unwrap_or_default(),
                example: example_text(&p.example),
            })
            .collect()
    }
}

/// `prompt` with each placeholder's inner text trimmed and prefixed by `prefix`.
fn rewrite(prompt: &str, prefix: &str) -> String {
    let mut out = String::new();
    let mut rest = prompt;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else { break };
        out.push_str(&rest[..i]);
        out.push_str(&format!("{{{{{prefix}{}}}}}", after[..j].trim()));
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    out
}

/// The calls shown to the model and kept as the routine's recorded shapes: those that ran or
/// were held for a confirmation (refused, failed and repeated calls did not do the task).
pub fn task_calls(calls: &[ToolCallRow]) -> Vec<&ToolCallRow> {
    calls
        .iter()
        .filter(|c| matches!(c.status, ToolCallStatus::Ran | ToolCallStatus::Held))
        .collect()
}

/// The user message: the request and the calls with clipped results.
fn describe(turn: &TurnRow, calls: &[&ToolCallRow]) -> String {
    let mut s = format!(
        "The member's request:\n{}\n\nThe tool calls that did it, in order:\n",
        turn.request.as_deref().unwrap_or("(not recorded)")
    );
    for (i, c) in calls.iter().enumerate() {
        s.push_str(&format!(
            "{}. {} {} → {}\n",
            i + 1,
            c.name,
            c.arguments,
            crate::context::clip(&c.result, RESULT_CLIP)
        ));
    }
    s
}

/// Ask the model for the routine of `turn` (retry once on a bad answer; see the module) and
/// record the call's tokens as a turn with source `extraction`.
///
/// Errors: [`ExtractError`] with the reason (the model failed, or answered badly twice).
pub async fn extract(
    svc: &Services,
    agent: &Agent,
    turn: &TurnRow,
    calls: &[ToolCallRow],
) -> Result<Extraction, ExtractError> {
    let task = task_calls(calls);
    let recorded: BTreeSet<String> = task.iter().map(|c| c.name.clone()).collect();
    let mut messages = vec![
        ChatMessage::System(SYSTEM.to_string()),
        ChatMessage::User(describe(turn, &task)),
    ];
    let started_at = svc.clock.now();
    let t0 = std::time::Instant::now();
    let (mut pt, mut ct, mut steps) = (0u32, 0u32, 0u32);
    let mut last_text = String::new();
    let mut result = Err(ExtractError("the model gave no answer".into()));
    for attempt in 0..2 {
        steps += 1;
        let reply = match agent.complete_plain(svc, turn.chat_id, &messages).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(
                    chat_id = turn.chat_id,
                    turn_id = turn.id,
                    cause = e.cause(),
                    "extraction call failed"
                );
                result = Err(ExtractError(format!(
                    "the model did not answer ({})",
                    e.cause().replace('_', " ")
                )));
                break;
            }
        };
        pt += reply.prompt_tokens;
        ct += reply.completion_tokens;
        last_text = reply.content.unwrap_or_default();
        let checked = Extraction::parse(&last_text).and_then(|x| {
            x.check(&recorded, |t| agent.tools().get(t).is_some())
                .map(|_| x)
        });
        match checked {
            Ok(x) => {
                result = Ok(x);
                break;
            }
            Err(why) => {
                tracing::info!(
                    chat_id = turn.chat_id,
                    turn_id = turn.id,
                    attempt,
                    "extraction answer refused"
                );
                result = Err(ExtractError(format!(
                    "the model's answer was not usable twice ({why})"
                )));
                messages.push(ChatMessage::Assistant {
                    content: Some(last_text.clone()),
                    tool_calls: vec![],
                });
                messages.push(ChatMessage::User(format!(
                    "That answer is not valid: {why}. Answer again with the corrected JSON object only."
                )));
            }
        }
    }
    if steps > 0 {
        let outcome = if result.is_ok() { "ok" } else { "invalid" };
        let recorded = svc
            .store
            .record_turn(NewTurn {
                chat_id: turn.chat_id,
                source: "extraction",
                model: agent.model_name().unwrap_or(""),
                prompt_tokens: pt,
                completion_tokens: ct,
                steps,
                outcome,
                started_at,
                duration_ms: t0.elapsed().as_millis() as i64,
                reply_text: (!last_text.is_empty()).then_some(last_text.as_str()),
                actor_id: turn.actor_id,
                request: None,
                calls: &[],
            })
            .await;
        if let Err(e) = recorded {
            tracing::warn!(chat_id = turn.chat_id, error = %e, "extraction turn not recorded");
        }
    }
    result
}

/// The routine document for `x` named `name`: one `prompt` step over the template (placeholders
/// as `{{initial.x}}`) restricted to `x.tools`, the recording (request, `confirm` = the
/// destructive tools — the model's and those flagged destructive —, the calls' shapes).
pub fn to_doc(
    name: &str,
    x: &Extraction,
    turn: &TurnRow,
    calls: &[ToolCallRow],
    confirm: Vec<String>,
) -> RoutineDoc {
    let shapes = task_calls(calls)
        .into_iter()
        .map(|c| RecordedCall {
            tool: c.name.clone(),
            keys: serde_json::from_str::<Value>(&c.arguments)
                .ok()
                .and_then(|v| {
                    v.as_object().map(|o| {
                        let mut k: Vec<String> = o.keys().cloned().collect();
                        k.sort();
                        k
                    })
                })
                .unwrap_or_default(),
        })
        .collect();
    RoutineDoc {
        name: name.to_string(),
        description: crate::context::clip(x.description.trim(), 400),
        status: "published".into(),
        triggers: vec![],
        quiet: false,
        definition: Definition {
            concurrent: false,
            inputs: x.inputs(),
            steps: vec![Step {
                name: None,
                timeout: DEFAULT_TIMEOUT_S,
                require_approval: false,
                auto_approve: false,
                kind: StepKind::Prompt {
                    prompt: rewrite(x.prompt.trim(), "initial."),
                    tools: Some(x.tools.clone()),
                },
            }],
            recorded: Some(Recording {
                request: crate::context::clip(
                    turn.request.as_deref().unwrap_or_default(),
                    MAX_REQUEST,
                ),
                confirm,
                calls: shapes,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(prompt: &str, params: &[&str], tools: &[&str]) -> Extraction {
        Extraction {
            name_suggestion: None,
            description: String::new(),
            prompt: prompt.into(),
            params: params
                .iter()
                .map(|n| Param {
                    name: n.to_string(),
                    kind: Some("member".into()),
                    description: String::new(),
                    required: true,
                    example: Some(Value::String("Bob".into())),
                })
                .collect(),
            tools: tools.iter().map(|s| s.to_string()).collect(),
            destructive: vec![],
        }
    }

    #[test]
    fn check_rules() {
        let rec: BTreeSet<String> = ["chore_list".to_string(), "chore_update".to_string()].into();
        let known = |t: &str| t.starts_with("chore_");
        assert!(x(
            "Move {{ from }} to {{to}}",
            &["from", "to"],
            &["chore_update"]
        )
        .check(&rec, known)
        .is_ok());
        let e = |p: &str, ps: &[&str], ts: &[&str]| x(p, ps, ts).check(&rec, known).unwrap_err();
        assert!(e("Move {{who}}", &["from"], &["chore_update"]).contains("{{who}}"));
        assert!(e("Move {{from}}", &["from", "to"], &["chore_update"]).contains("'to' is not used"));
        assert!(e("Move {{from}}", &["from"], &["nope"]).contains("does not exist"));
        assert!(e("Move {{from}}", &["from"], &["chore_create"]).contains("not called"));
        assert!(e("Move {{from", &["from"], &["chore_list"]).contains("without"));
        assert!(e("x", &[], &[]).contains("no tools"));
        assert_eq!(
            rewrite("Move {{ from }} to {{to}}.", "initial."),
            "Move {{initial.from}} to {{initial.to}}."
        );
    }

    #[test]
    fn parse_takes_fenced_json_and_names_bad_fields() {
        let ok = Extraction::parse("```json\n{\"prompt\":\"a\",\"tools\":[\"t\"]}\n```").unwrap();
        assert_eq!(ok.tools, vec!["t".to_string()]);
        assert!(Extraction::parse("sure! here").is_err());
        assert!(Extraction::parse("{\"prompt\":\"a\"}")
            .unwrap_err()
            .contains("tools"));
    }
}
