//! A routine's definition: its initial inputs and its 1..20 steps, as authored in TOML
//! (`hearth routines import`, a `.toml` document sent to the bot, the playbook library) and
//! stored as JSON in `routines.definition` and in each run's `snapshot`.
//!
//! Owns the shapes only (serde, both formats). Flattened structs cannot deny unknown fields in
//! serde, so a typo'd key is caught by the importer (`serde_ignored`), not here; validation lives in [`super::validate`],
//! rendering in [`super::vars`], execution in [`super::runner`].
//! Uses: serde, store (the step type names).
//!
//! A TOML document (one routine):
//!
//! ```toml
//! name = "meal_plan"
//! description = "Sunday dinner plan and shopping list"
//! status = "published"            # or "draft"
//! concurrent = false
//! triggers = ["cron 0 17 * * 0"]  # the trigger strings of `/routine_new`
//!
//! [[inputs]]
//! name = "preferences"
//! description = "diets, dislikes, budget"
//! required = true
//!
//! [[steps]]
//! name = "plan"
//! kind = "prompt"
//! prompt = "Propose five dinners for {{initial.preferences}}."
//!
//! [[steps]]
//! name = "gate"
//! kind = "approval"
//! text = "Is this plan fine?\n{{steps.plan.output}}"
//! resolvers = "others"            # or a list of member names / ids
//! required = 1
//! on_reject = "plan"              # a step name, or "end" (default: stop the run)
//! max_loops = 2
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::store::StepType;

/// Most steps in one routine.
pub const MAX_STEPS: usize = 20;
/// Deepest nesting of `routine` steps (a top-level run is depth 0).
pub const MAX_DEPTH: i32 = 3;
/// A step's timeout when none is given, in seconds.
pub const DEFAULT_TIMEOUT_S: u32 = 60;

fn default_timeout() -> u32 {
    DEFAULT_TIMEOUT_S
}

fn is_default_timeout(v: &u32) -> bool {
    *v == DEFAULT_TIMEOUT_S
}

fn is_false(v: &bool) -> bool {
    !*v
}

fn default_true() -> bool {
    true
}

fn is_true(v: &bool) -> bool {
    *v
}

fn default_required() -> u32 {
    1
}

fn is_one(v: &u32) -> bool {
    *v == 1
}

/// One routine as a document: the routine's own fields plus its [`Definition`].
/// `hearth routines export NAME` writes this; import reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutineDoc {
    /// `[a-z0-9_]{1,32}`, unique per chat.
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// "draft" | "published" (default).
    #[serde(default = "default_status", skip_serializing_if = "is_published")]
    pub status: String,
    /// Trigger strings as `/routine_new` takes them ("every 2h", "cron 0 8 * * 1-5",
    /// "event member_joined", "api", "when overdue > 3"); empty: manual only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<String>,
    /// A quiet routine's prompt steps may answer the quiet token to say nothing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub quiet: bool,
    #[serde(flatten)]
    pub definition: Definition,
}

fn default_status() -> String {
    "published".into()
}

fn is_published(s: &String) -> bool {
    s == "published"
}

/// What runs: the initial inputs a run needs and the steps, in order. Stored as JSON.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Definition {
    /// More than one active run per chat (default: a fire while a run is active is skipped).
    #[serde(default, skip_serializing_if = "is_false")]
    pub concurrent: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputSpec>,
    pub steps: Vec<Step>,
    /// Set for a recorded routine (issue 10): what it was saved from. Its `prompt` step has a
    /// `tools` list and every destructive call of a run is confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded: Option<Recording>,
}

/// What a recorded routine was saved from (issue 10): the member's request and the shapes of
/// the calls the recording made, and the tools it confirms before each call.
///
/// ```toml
/// [recorded]
/// request = "move all of Bob's chores to Alice until Sunday and tell her"
/// confirm = ["chore_update"]
/// [[recorded.calls]]
/// tool = "chore_update"
/// keys = ["assignee", "id"]
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recording {
    /// The member's original request (plain text, clipped to 2,000 characters).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request: String,
    /// Tools confirmed before each call besides those that say they are destructive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confirm: Vec<String>,
    /// The recorded calls, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<RecordedCall>,
}

/// One recorded call's shape: the tool and its sorted argument keys (values are not kept).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedCall {
    pub tool: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}

/// What an input's answer must be (issue 10, item 5): checked when given, asked again if not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    /// Any text.
    #[default]
    Text,
    /// A member of the chat the run starts in (first name, @username or Telegram id).
    Member,
    /// A chore of the chat (title or number).
    Chore,
    /// A date hearth can parse ("sunday", "6 Dec", "2026-12-06"), in the chat's zone.
    Date,
    /// A number.
    Number,
}

impl InputType {
    fn is_text(&self) -> bool {
        *self == InputType::Text
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            InputType::Text => "text",
            InputType::Member => "member",
            InputType::Chore => "chore",
            InputType::Date => "date",
            InputType::Number => "number",
        }
    }
}

/// An initial input, `{{initial.<name>}}`; asked for in turn when a member starts the run by hand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// `[a-z][a-z0-9_]{0,31}`.
    pub name: String,
    /// The question asked for it, e.g. "Any dietary preferences?".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub required: bool,
    /// Used when the input is not given (a fired run asks nobody).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// What the answer must be (default `text`).
    #[serde(default, rename = "type", skip_serializing_if = "InputType::is_text")]
    pub kind: InputType,
    /// The value the recording used, shown as an example ("e.g. Bob").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<String>,
}

/// One step: common fields plus the kind's fields (`kind = "prompt"`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// `[a-z][a-z0-9_]{0,31}`; referenced as `{{steps.<name>.output}}` and by branches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Seconds the step may run (a wait's own duration is separate).
    #[serde(
        default = "default_timeout",
        skip_serializing_if = "is_default_timeout"
    )]
    pub timeout: u32,
    /// An approval gate (any other member) before the step runs.
    #[serde(default, skip_serializing_if = "is_false")]
    pub require_approval: bool,
    /// A `prompt` step's destructive tool calls run without the run owner's confirmation.
    #[serde(default, skip_serializing_if = "is_false")]
    pub auto_approve: bool,
    #[serde(flatten)]
    pub kind: StepKind,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepKind {
    /// An agent turn; the output is the model's final text. With `tools`, the turn is
    /// restricted in the runtime to those tools (a recorded routine's replay, issue 10).
    Prompt {
        prompt: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tools: Option<Vec<String>>,
    },
    /// Another saved routine, run as a child run with mapped inputs (templates).
    Routine {
        routine: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        inputs: BTreeMap<String, String>,
    },
    /// Posts `text` (a template) to the chat, or to a member's DM (`to` = a member's name or
    /// Telegram id, or "owner" for the run owner).
    Message {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    /// Calls one hearth tool; string values in `args` are templates.
    Tool {
        tool: String,
        #[serde(default)]
        args: serde_json::Map<String, serde_json::Value>,
    },
    /// Waits: exactly one of `duration` ("1d", "2h30m", "90s"), `until` (local "HH:MM" in the
    /// routine's zone, the next such time) or `event` (a hearth event kind, with `filters` on its
    /// fields and a `timeout` duration, default "1d"; the event's fields become the output).
    Wait {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<String>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        filters: BTreeMap<String, String>,
        #[serde(
            default,
            rename = "event_timeout",
            skip_serializing_if = "Option::is_none"
        )]
        event_timeout: Option<String>,
    },
    /// If/else: `then` and `else` name the next step or "end" (default: the next step).
    Condition {
        #[serde(rename = "if")]
        check: Check,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        then: Option<String>,
        #[serde(default, rename = "else", skip_serializing_if = "Option::is_none")]
        otherwise: Option<String>,
        /// Loop-backs allowed through a branch that points to an earlier step.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_loops: Option<u32>,
    },
    /// An approval gate: a workflow of kind `routine_gate`.
    Approval {
        /// What is asked (a template).
        text: String,
        /// Who may decide (default: any member other than the run owner).
        #[serde(default, skip_serializing_if = "Resolvers::is_others")]
        resolvers: Resolvers,
        /// Distinct approvals needed (quorum); one rejection decides.
        #[serde(default = "default_required", skip_serializing_if = "is_one")]
        required: u32,
        /// On rejection: a step name to go to, or "end"; default: the run stops (`failed`,
        /// reason "rejected").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        on_reject: Option<String>,
        /// Loop-backs allowed through `on_reject` when it points to an earlier step.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_loops: Option<u32>,
        /// How long the request stays pending ("2d"; default `workflows.expiry`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires: Option<String>,
    },
}

impl StepKind {
    /// The stored step type.
    pub fn step_type(&self) -> StepType {
        match self {
            StepKind::Prompt { .. } => StepType::Prompt,
            StepKind::Routine { .. } => StepType::Routine,
            StepKind::Message { .. } => StepType::Message,
            StepKind::Tool { .. } => StepType::Tool,
            StepKind::Wait { .. } => StepType::Wait,
            StepKind::Condition { .. } => StepType::Condition,
            StepKind::Approval { .. } => StepType::Approval,
        }
    }
}

/// Who may resolve an approval step. In TOML: `"others"` or a list of members.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Resolvers {
    /// "others": any member other than the run owner.
    #[default]
    Others,
    /// Named members (first names or usernames as the chat knows them, or Telegram ids).
    Named(Vec<String>),
}

impl Resolvers {
    fn is_others(&self) -> bool {
        matches!(self, Resolvers::Others)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ResolversForm {
    Word(String),
    Named(Vec<String>),
}

impl Serialize for Resolvers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Resolvers::Others => ResolversForm::Word("others".into()),
            Resolvers::Named(v) => ResolversForm::Named(v.clone()),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Resolvers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match ResolversForm::deserialize(d)? {
            ResolversForm::Word(w) if w == "others" => Ok(Resolvers::Others),
            ResolversForm::Word(w) => Err(serde::de::Error::custom(format!(
                "resolvers: \"{w}\" — use \"others\" or a list of members"
            ))),
            ResolversForm::Named(v) => Ok(Resolvers::Named(v)),
        }
    }
}

/// A condition's test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What is tested: a template over outputs (`"{{steps.plan.output}}"`), or a hearth fact:
    /// `fact:overdue_count`, `fact:chore_status:<chore title or id>`,
    /// `fact:workflow_status:<step name>` (the approval step's workflow),
    /// `fact:member_claimed:<template giving a member id or name>`, `fact:elapsed_minutes`
    /// (since the run started).
    pub value: String,
    /// The comparison.
    #[serde(flatten)]
    pub test: Test,
}

/// How a condition compares (exactly one per check).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Test {
    /// Case-insensitive substring.
    Contains(String),
    /// Case-insensitive equality after trimming.
    Equals(String),
    /// The value parsed as a number (the first number in the text) compared: `"> 3"`,
    /// `"<= 10"`, `"== 0"`, `"!= 2"`.
    Compare(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_shape_parses() {
        let doc: RoutineDoc = toml::from_str(
            r#"
name = "meal_plan"
description = "Sunday dinner plan"
triggers = ["cron 0 17 * * 0"]
[[inputs]]
name = "preferences"
[[steps]]
name = "plan"
kind = "prompt"
prompt = "Propose five dinners for {{initial.preferences}}."
[[steps]]
name = "gate"
kind = "approval"
text = "Fine?"
resolvers = ["Alice", "Bob"]
required = 2
on_reject = "plan"
max_loops = 2
[[steps]]
kind = "condition"
if = { value = "{{steps.plan.output}}", contains = "fish" }
then = "end"
"#,
        )
        .unwrap();
        assert_eq!(doc.definition.steps.len(), 3);
        assert!(doc.definition.inputs[0].required);
        assert!(matches!(
            &doc.definition.steps[1].kind,
            StepKind::Approval { resolvers: Resolvers::Named(v), required: 2, .. } if v.len() == 2
        ));
        assert!(matches!(
            &doc.definition.steps[2].kind,
            StepKind::Condition { check: Check { test: Test::Contains(s), .. }, .. } if s == "fish"
        ));
        let json = serde_json::to_string(&doc.definition).unwrap();
        let back: Definition = serde_json::from_str(&json).unwrap();
        assert_eq!(back, doc.definition);
        let again: RoutineDoc = toml::from_str(&toml::to_string(&doc).unwrap()).unwrap();
        assert_eq!(again, doc);
        let bad = toml::from_str::<RoutineDoc>("name='x'\n[[steps]]\nkind='prompt'\n");
        assert!(bad.is_err(), "a prompt step without its prompt");
    }
}
