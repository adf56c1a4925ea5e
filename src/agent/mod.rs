//! The agent: one turn = system prompt + current message → model ↔ tools loop → reply text.
//!
//! Owns: the tool-calling loop with a step cap (`llm.max_tool_steps`) and a per-turn timeout
//! (`llm.timeout`), token accounting per turn (recorded in `turns`, every model call counted,
//! silent answers included), the answer length cap (`llm.max_answer_chars`; the turn record keeps
//! the whole answer), the process-wide fair [`gate::ModelGate`] every model call passes
//! (`llm.max_concurrent_calls`), the one short user-facing message for every model failure
//! (logged once with its cause chain; when tools already ran, it says what was done), and the
//! one-DM-per-hour alert to a group's admins when the model account is out of quota or its key
//! is rejected (issue 8 item 21).
//! Uses: `llm` (the only async-openai importer), `tools`, `prompt`, `context`, store, services.

pub mod gate;
pub mod llm;
pub mod prompt;
pub mod tools;

use std::{sync::Arc, time::Instant};

use async_trait::async_trait;
use serde_json::json;

use crate::{
    context,
    services::{zone_of, Services},
    store::{NewToolCall, ToolCallStatus, TurnRecord},
    types::ChatKind,
};
use llm::{ChatMessage, ChatModel, ModelError};
use prompt::{Prompt, PromptMember, PromptVars, Section};
pub use tools::{ConfirmGate, Described, Restriction, Scope, Tool, ToolError, ToolRegistry};

/// Identical tool calls (same name, same arguments) allowed in one turn: the second is not run
/// (the model is told its result is already above); the third ends the turn as a loop.
pub const MAX_SAME_CALL: u32 = 3;

/// Longest tool result handed back to the model, in characters.
const MAX_TOOL_RESULT_CHARS: usize = 4000;
/// Least time between two admin alerts for the same group and cause (issue 8 item 21).
pub const ADMIN_ALERT_EVERY: chrono::TimeDelta = chrono::TimeDelta::hours(1);
/// Appended to an answer the server cut at `llm.max_tokens` (`finish_reason: "length"`).
pub const CUT_OFF_NOTE: &str =
    "(My answer was cut off here: it ran past my length limit. Ask me to go on, or for a shorter answer.)";

/// Adds a titled block to the system prompt for a scope (approvals, chores, …).
#[async_trait]
pub trait ContextSection: Send + Sync + 'static {
    /// The block, or `None` when there is nothing to say.
    async fn render(&self, svc: &Services, scope: &Scope) -> Option<Section>;
}

/// One turn's input.
#[derive(Debug, Clone)]
pub struct TurnRequest {
    pub scope: Scope,
    /// The current message as the model sees it, e.g. "Bob: @hearth what did Alice say?".
    pub current: String,
    /// Telegram id of the current message (left out of the window).
    pub current_tg_id: Option<i64>,
    /// "message" | "routine" (turn records).
    pub source: &'static str,
    /// `reply_mode = always` chatter: the model may answer the silent token.
    pub silent_ok: bool,
}

/// Why a turn did not produce a normal answer.
#[derive(Debug, thiserror::Error)]
pub enum TurnFailure {
    #[error("no model is configured")]
    NoModel,
    #[error("the turn timed out")]
    Timeout,
    #[error("the step cap was reached")]
    StepCap,
    /// The model asked for the same tool call with the same arguments [`MAX_SAME_CALL`] times
    /// in one turn (a small model against llama.cpp called `list_members {}` until the step cap).
    #[error("the model repeated the same tool call")]
    Loop,
    /// The model answered with no text and no tool call.
    #[error("the model's answer was empty")]
    Empty,
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("internal: {0}")]
    Internal(String),
}

impl TurnFailure {
    /// Short cause for turn records.
    pub fn cause(&self) -> &'static str {
        match self {
            TurnFailure::NoModel => "no_model",
            TurnFailure::Timeout => "timeout",
            TurnFailure::StepCap => "step_cap",
            TurnFailure::Loop => "loop",
            TurnFailure::Empty => "empty",
            TurnFailure::Model(e) => e.cause(),
            TurnFailure::Internal(_) => "internal",
        }
    }

    /// The one short plain message the user sees.
    pub fn user_message(&self) -> &'static str {
        match self {
            TurnFailure::NoModel => "No model is configured, so I can only run commands (try /help). To chat, set HEARTH_LLM__BASE_URL and HEARTH_LLM__MODEL, e.g. Ollama: http://localhost:11434/v1 and llama3.1, or OPENAI_API_KEY for OpenAI.",
            TurnFailure::Timeout => "Sorry, the model took too long to answer. Please try again in a moment.",
            TurnFailure::StepCap => "Sorry, that took more steps than I'm allowed. Could you ask in a simpler way?",
            TurnFailure::Loop => "Sorry, I got stuck repeating the same step. Could you ask in another way?",
            TurnFailure::Empty => "I couldn't come up with an answer to that. Could you ask again, maybe in other words?",
            TurnFailure::Model(ModelError::RateLimited(_)) => "The model is busy right now (rate limited). Please try again in a minute.",
            TurnFailure::Model(ModelError::Quota(_)) => "I can't answer right now: the model account has run out of credit, and an admin needs to top it up. Commands still work (try /help).",
            TurnFailure::Model(ModelError::Unauthorized { .. }) => "I can't answer right now: the model service rejected my API key, and an admin needs to fix it. Commands still work (try /help).",
            TurnFailure::Model(ModelError::Server { .. }) => "The model service is having trouble right now. Please try again later.",
            TurnFailure::Model(ModelError::Connection(_)) => "I can't reach the model service right now. Please try again later.",
            TurnFailure::Model(ModelError::Refused { .. }) => "The model service refused the request. An admin should check the model name and API key.",
            TurnFailure::Model(ModelError::Malformed(_)) => "The model sent an answer I couldn't read. Please try again.",
            TurnFailure::Internal(_) => "Sorry, something went wrong on my side. Please try again.",
        }
    }
}

/// The result of one turn.
#[derive(Debug)]
pub struct TurnOutcome {
    /// The model's final text (Markdown), or the failure.
    pub result: Result<String, TurnFailure>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Model calls made.
    pub steps: u32,
    /// Names of the tools called, in order.
    pub tools_called: Vec<String>,
    /// What the tool calls that succeeded and changed something did, as past-tense clauses
    /// ("approved request 1"), in order. See [`Tool::done_summary`].
    pub done: Vec<String>,
    /// The answer was longer than `llm.max_answer_chars` and `result` holds the cut version.
    pub capped: bool,
    /// Every tool call the model asked for, in order, as recorded in `tool_calls`.
    pub calls: Vec<NewToolCall>,
    /// The turn's record (`turns.id`); `None` when it could not be written or no model ran.
    pub turn_id: Option<i64>,
}

impl TurnOutcome {
    /// Tool calls that ran and succeeded.
    pub fn calls_ran(&self) -> usize {
        self.calls
            .iter()
            .filter(|c| c.status == ToolCallStatus::Ran)
            .count()
    }
}

impl TurnOutcome {
    /// The message a member sees for a failed turn: the failure's own sentence, or, when tools
    /// already changed something, what was done first ("I approved request 1, then lost the
    /// model — nothing else was changed."). `None` for a successful turn.
    pub fn failure_message(&self) -> Option<String> {
        let e = self.result.as_ref().err()?;
        if self.done.is_empty() {
            return Some(e.user_message().to_string());
        }
        let done = tools::join_and(&self.done);
        let then = match e {
            TurnFailure::Empty => return Some(format!("Done: I {done}.")),
            TurnFailure::Timeout => "then the model took too long to finish",
            TurnFailure::StepCap => "then ran out of steps",
            TurnFailure::Loop => "then got stuck repeating a step",
            TurnFailure::Model(_) => "then lost the model",
            TurnFailure::NoModel | TurnFailure::Internal(_) => {
                "then something went wrong on my side"
            }
        };
        Some(format!(
            "I {done}, {then} — nothing else was changed. Ask again if there was more to do."
        ))
    }
}

/// Cut `text` to at most `max` characters (Unicode scalar values), preferring a line or word
/// break in the last fifth, and say so. Returns the text unchanged when it fits.
pub fn cap_answer(text: &str, max: usize) -> (String, bool) {
    let total = text.chars().count();
    if total <= max {
        return (text.to_string(), false);
    }
    let note =
        format!("\n\n(Cut here: my answer was {total} characters long and I post at most {max}.)");
    let keep = max.saturating_sub(note.chars().count()).max(1);
    let end = text
        .char_indices()
        .nth(keep)
        .map(|(i, _)| i)
        .unwrap_or(text.len());
    let head = &text[..end];
    let floor = head.len() - head.len() / 5;
    let cut = head
        .rfind('\n')
        .filter(|&i| i >= floor)
        .or_else(|| head.rfind(' ').filter(|&i| i >= floor))
        .unwrap_or(end);
    (format!("{}{note}", text[..cut].trim_end()), true)
}

/// The agent: a model, tools, the prompt template and context sections.
#[derive(Clone)]
pub struct Agent {
    model: Option<Arc<dyn ChatModel>>,
    tools: ToolRegistry,
    prompt: Arc<Prompt>,
    sections: Vec<Arc<dyn ContextSection>>,
    gate: gate::ModelGate,
    /// Where destructive calls of ordinary turns wait for the member (see [`Agent::call_tool`]).
    confirm_gate: Option<Arc<dyn ConfirmGate>>,
}

impl Agent {
    /// An agent with `model` (`None`: commands only) and `tools`.
    pub fn new(model: Option<Arc<dyn ChatModel>>, tools: ToolRegistry, prompt: Prompt) -> Self {
        Self {
            model,
            tools,
            prompt: Arc::new(prompt),
            sections: Vec::new(),
            gate: gate::ModelGate::new(4),
            confirm_gate: None,
        }
    }

    /// Use `gate` for every model call (one per process: `llm.max_concurrent_calls`).
    pub fn with_gate(mut self, gate: gate::ModelGate) -> Self {
        self.gate = gate;
        self
    }

    /// The gate every model call passes.
    pub fn gate(&self) -> &gate::ModelGate {
        &self.gate
    }

    /// Set where destructive calls of ordinary turns wait for the member's confirmation.
    pub fn with_confirm_gate(mut self, g: impl ConfirmGate) -> Self {
        self.confirm_gate = Some(Arc::new(g));
        self
    }

    /// Add a context section provider (rendered in registration order).
    pub fn with_section(mut self, s: impl ContextSection) -> Self {
        self.sections.push(Arc::new(s));
        self
    }

    /// True when a model is configured.
    pub fn has_model(&self) -> bool {
        self.model.is_some()
    }

    /// The tool registry.
    pub fn tools(&self) -> &ToolRegistry {
        &self.tools
    }

    /// The configured model's name (turn records), `None` without a model.
    pub fn model_name(&self) -> Option<&str> {
        self.model.as_deref().map(|m| m.name())
    }

    /// One model call with no tools offered, for `chat_id`, through the same fair gate and
    /// bounded by `llm.timeout` (a recorded routine's extraction, issue 10). The caller records
    /// its tokens.
    ///
    /// Errors: no model, the timeout, the model's failure.
    pub async fn complete_plain(
        &self,
        svc: &Services,
        chat_id: i64,
        messages: &[ChatMessage],
    ) -> Result<llm::ModelReply, TurnFailure> {
        let model = self.model.clone().ok_or(TurnFailure::NoModel)?;
        let call = async {
            let _permit = self.gate.acquire(chat_id).await;
            model.complete(messages, &[]).await
        };
        match tokio::time::timeout(svc.config.llm.timeout, call).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(TurnFailure::Timeout),
        }
    }

    /// Gather what the system prompt needs — the window, the members, the context sections —
    /// concurrently (independent reads; the pool serves them in parallel), then render it.
    /// Returns the prompt and the window's oldest log id (where `recall_conversation` starts).
    pub async fn system_prompt(
        &self,
        svc: &Services,
        req: &TurnRequest,
    ) -> Result<(String, Option<i64>), TurnFailure> {
        let scope = &req.scope;
        let internal = |e: crate::store::StoreError| TurnFailure::Internal(e.to_string());
        let members = async {
            if scope.chat_kind == ChatKind::Group {
                svc.store.members(scope.chat.id).await
            } else {
                Ok(vec![])
            }
        };
        let sections = async {
            let mut out = Vec::new();
            for s in &self.sections {
                if let Some(sec) = s.render(svc, scope).await {
                    out.push(sec);
                }
            }
            out
        };
        let (window, members, sections) = tokio::join!(
            context::window(svc, &scope.chat, scope.chat_kind, req.current_tg_id),
            members,
            sections
        );
        let window = window.map_err(internal)?;
        let members = members
            .map_err(internal)?
            .into_iter()
            .map(|m| PromptMember {
                admin: m.is_admin(),
                name: m.first_name,
                username: m.username,
            })
            .collect();
        let zone = zone_of(&scope.chat);
        let now = svc.clock.now().with_timezone(&zone);
        let vars = PromptVars {
            bot_name: svc.bot.name.clone(),
            private: scope.chat_kind == ChatKind::Private,
            chat_title: scope.chat.title.clone(),
            user_name: scope.actor_name.clone(),
            now: format!("{} {}", now.format("%a %d %b %Y %H:%M"), zone.name()),
            members,
            sections,
            conversation: window.lines,
            silent_ok: req.silent_ok,
        };
        let prompt = self
            .prompt
            .render(&vars)
            .map_err(|e| TurnFailure::Internal(e.to_string()))?;
        Ok((prompt, window.start_id))
    }

    /// Run one turn and record it. Never panics; failures come back in `result`.
    pub async fn run_turn(&self, svc: &Services, req: TurnRequest) -> TurnOutcome {
        let (mut out, record) = self.run_turn_unrecorded(svc, req).await;
        if let Some(t) = record {
            match svc.store.record_turn(t.as_new()).await {
                Ok(id) => out.turn_id = Some(id),
                Err(e) => tracing::warn!(chat_id = t.chat_id, error = %e, "turn not recorded"),
            }
        }
        out
    }

    /// [`Agent::run_turn`] without recording the turn: returns its record for the caller to
    /// write in its own commit (a routine's prompt step records it with the step's result,
    /// saving a statement per step; `turn_id` stays `None`). `None` without a model (no turn).
    pub async fn run_turn_unrecorded(
        &self,
        svc: &Services,
        mut req: TurnRequest,
    ) -> (TurnOutcome, Option<TurnRecord>) {
        let started_at = svc.clock.now();
        let t0 = Instant::now();
        let mut out = TurnOutcome {
            result: Err(TurnFailure::NoModel),
            prompt_tokens: 0,
            completion_tokens: 0,
            steps: 0,
            tools_called: vec![],
            done: vec![],
            capped: false,
            calls: vec![],
            turn_id: None,
        };
        let Some(model) = self.model.clone() else {
            return (out, None);
        };
        let timeout = svc.config.llm.timeout;
        let result = match tokio::time::timeout(
            timeout,
            self.turn_loop(svc, model.as_ref(), &mut req, &mut out),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(TurnFailure::Timeout),
        };
        if let Err(e) = &result {
            let chain = match e {
                TurnFailure::Model(m) => llm::error_chain(m),
                other => other.to_string(),
            };
            tracing::warn!(chat_id = req.scope.chat.id, cause = e.cause(), error = %chain, "turn failed");
            if let TurnFailure::Model(
                m @ (ModelError::Quota(_) | ModelError::Unauthorized { .. }),
            ) = e
            {
                alert_admins(svc, &req.scope, m).await;
            }
        }
        let full_text = result.as_ref().ok().cloned();
        let result = result.map(|text| {
            let (text, capped) = cap_answer(&text, svc.config.llm.max_answer_chars);
            out.capped = capped;
            text
        });
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.cause(),
        };
        let record = TurnRecord {
            chat_id: req.scope.chat.id,
            source: req.source.to_string(),
            model: model.name().to_string(),
            prompt_tokens: out.prompt_tokens,
            completion_tokens: out.completion_tokens,
            steps: out.steps,
            outcome: outcome.to_string(),
            started_at,
            duration_ms: t0.elapsed().as_millis() as i64,
            reply_text: full_text,
            actor_id: req.scope.actor_id,
            request: Some(std::mem::take(&mut req.current)),
            calls: out.calls.clone(),
        };
        crate::metrics::turn(&svc.config, req.source, outcome, t0.elapsed(), &out);
        out.result = result;
        (out, Some(record))
    }

    async fn turn_loop(
        &self,
        svc: &Services,
        model: &dyn ChatModel,
        req: &mut TurnRequest,
        out: &mut TurnOutcome,
    ) -> Result<String, TurnFailure> {
        let (system, start_id) = self.system_prompt(svc, req).await?;
        req.scope.window_start_id = start_id;
        let mut messages = vec![
            ChatMessage::System(system),
            ChatMessage::User(req.current.clone()),
        ];
        let specs = self
            .tools
            .specs(req.scope.addressed, req.scope.restriction.as_deref());
        let max_steps = svc.config.llm.max_tool_steps;
        let mut same_calls: std::collections::HashMap<(String, String), u32> = Default::default();
        for _ in 0..max_steps {
            out.steps += 1;
            let reply = {
                let _permit = self.gate.acquire(req.scope.chat.id).await;
                model.complete(&messages, &specs).await?
            };
            out.prompt_tokens += reply.prompt_tokens;
            out.completion_tokens += reply.completion_tokens;
            if reply.tool_calls.is_empty() {
                let text = reply.content.unwrap_or_default();
                let text = text.trim();
                if text.is_empty() {
                    return Err(TurnFailure::Empty);
                }
                if reply.truncated {
                    return Ok(format!("{text}\n\n{CUT_OFF_NOTE}"));
                }
                return Ok(text.to_string());
            }
            messages.push(ChatMessage::Assistant {
                content: reply.content.clone(),
                tool_calls: reply.tool_calls.clone(),
            });
            for call in reply.tool_calls {
                out.tools_called.push(call.name.clone());
                // one key per call shape: arguments re-serialized (sorted keys, no spacing)
                let shape = serde_json::from_str::<serde_json::Value>(&call.arguments)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|_| call.arguments.trim().to_string());
                let seen = same_calls.entry((call.name.clone(), shape)).or_insert(0);
                *seen += 1;
                if *seen >= MAX_SAME_CALL {
                    return Err(TurnFailure::Loop);
                }
                let (result, status) = if *seen > 1 {
                    (
                        json!({"error": format!("you already called {} with these arguments in this turn; its result is above. Answer the member now.", call.name)}),
                        ToolCallStatus::Repeat,
                    )
                } else {
                    self.call_tool(svc, &req.scope, &call.name, &call.arguments)
                        .await
                };
                if let Some(done) = self.done_summary(&call.name, &call.arguments, &result) {
                    out.done.push(done);
                }
                let mut content = result.to_string();
                if content.len() > MAX_TOOL_RESULT_CHARS {
                    content = context::clip(&content, MAX_TOOL_RESULT_CHARS);
                }
                out.calls.push(NewToolCall {
                    destructive: self.tools.get(&call.name).is_some_and(|t| {
                        t.destructive()
                            || req
                                .scope
                                .restriction
                                .as_ref()
                                .is_some_and(|r| r.must_confirm(t.as_ref()))
                    }),
                    name: call.name.clone(),
                    arguments: if call.arguments.trim().is_empty() {
                        "{}".into()
                    } else {
                        call.arguments.clone()
                    },
                    result: content.clone(),
                    status,
                });
                messages.push(ChatMessage::Tool {
                    call_id: call.id,
                    content,
                });
            }
        }
        Err(TurnFailure::StepCap)
    }

    /// What a finished call did, when it succeeded and changed something. A result with an
    /// `error` key failed; one with `confirmation` only asked a member to confirm (nothing done).
    fn done_summary(&self, name: &str, raw: &str, result: &serde_json::Value) -> Option<String> {
        if result.get("error").is_some()
            || result.get("confirmation").is_some()
            || result.get("confirmation_id").is_some()
        {
            return None;
        }
        let args: serde_json::Value = serde_json::from_str(raw).unwrap_or_default();
        self.tools.get(name)?.done_summary(&args, result)
    }

    /// Run one tool call; every failure becomes `{"error": …}` for the model to correct.
    /// Returns the result the model sees and what became of the call (for `tool_calls`).
    ///
    /// The model never decides a destructive action alone: in an ordinary turn
    /// ([`Scope::member_turn`]) with `agent.confirm_destructive` on, a destructive call is
    /// described ([`Tool::describe`], which also refuses calls that would fail) and handed to
    /// the confirmation gate instead of running; the model is told it awaits the member's
    /// confirmation. Without a gate such a call is refused (fail closed). Under a replay's
    /// [`Restriction`] a tool outside its set is refused, and every call it says must be
    /// confirmed is, with no setting that turns that off (issue 10).
    async fn call_tool(
        &self,
        svc: &Services,
        scope: &Scope,
        name: &str,
        raw: &str,
    ) -> (serde_json::Value, ToolCallStatus) {
        let refused = |v: serde_json::Value| (v, ToolCallStatus::Refused);
        let Some(tool) = self.tools.get(name) else {
            tracing::info!(tool = name, "model asked for an unknown tool");
            return refused(json!({"error": format!("unknown tool '{name}'")}));
        };
        if let Some(r) = &scope.restriction {
            if !r.tools.contains(name) {
                tracing::info!(tool = name, "replay called a tool outside its set; refused");
                let allowed: Vec<&str> = r.tools.iter().map(String::as_str).collect();
                return refused(json!({"error": format!(
                    "not allowed: this routine may only use {}",
                    if allowed.is_empty() { "no tools".to_string() } else { allowed.join(", ") }
                )}));
            }
        }
        if tool.destructive() && !scope.addressed {
            return refused(
                json!({"error": "not allowed: this tool needs a message addressed to the bot"}),
            );
        }
        let raw = if raw.trim().is_empty() { "{}" } else { raw };
        let args: serde_json::Value = match serde_json::from_str(raw) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            Ok(_) => {
                return (
                    json!({"error": "invalid arguments: expected a JSON object"}),
                    ToolCallStatus::Error,
                )
            }
            Err(e) => {
                tracing::info!(tool = name, error = %e, "model sent invalid tool arguments");
                return (
                    json!({"error": format!("invalid arguments: not valid JSON ({e})")}),
                    ToolCallStatus::Error,
                );
            }
        };
        let confirm = match &scope.restriction {
            Some(r) => r.must_confirm(tool.as_ref()),
            None => tool.destructive() && scope.member_turn && svc.config.agent.confirm_destructive,
        };
        if confirm {
            let Some(gate) = &self.confirm_gate else {
                return refused(
                    json!({"error": "not allowed: this action needs the member's confirmation, which is unavailable"}),
                );
            };
            let held = match tool.describe(svc, scope, args).await {
                Ok(call) => gate.hold(svc, scope, tool.spec().name, call).await,
                Err(e) => Err(e),
            };
            return match held {
                Ok(v) => (v, ToolCallStatus::Held),
                Err(e) => (json!({"error": e.to_string()}), ToolCallStatus::Error),
            };
        }
        match tool.call(svc, scope, args).await {
            Ok(v) => (v, ToolCallStatus::Ran),
            Err(e) => (json!({"error": e.to_string()}), ToolCallStatus::Error),
        }
    }
}

/// Tell a group's admins, by DM, that the model account is out of quota or its key is rejected:
/// one DM per group and cause per [`ADMIN_ALERT_EVERY`], the last time kept in the kv table
/// (`model_alert:<chat id>:<cause>`, RFC 3339) so restarts don't repeat it. DM turns alert nobody
/// (the member sees the sentence; no group's admins are implied). Failures are logged, not raised.
async fn alert_admins(svc: &Services, scope: &Scope, e: &ModelError) {
    if scope.chat_kind != ChatKind::Group {
        return;
    }
    let chat_id = scope.chat.id;
    let key = format!("model_alert:{chat_id}:{}", e.cause());
    let now = svc.clock.now();
    match svc.store.kv_get(&key).await {
        Ok(Some(v)) => {
            if let Ok(last) = chrono::DateTime::parse_from_rfc3339(&v) {
                if now.signed_duration_since(last) < ADMIN_ALERT_EVERY {
                    return;
                }
            }
        }
        Ok(None) => {}
        Err(err) => {
            tracing::warn!(chat_id, error = %err, "admin alert state unreadable; not alerting");
            return;
        }
    }
    if let Err(err) = svc.store.kv_set(&key, &now.to_rfc3339()).await {
        tracing::warn!(chat_id, error = %err, "admin alert state not saved; not alerting");
        return;
    }
    let admins = match svc.store.members(chat_id).await {
        Ok(m) => m.into_iter().filter(|m| m.is_admin()).collect::<Vec<_>>(),
        Err(err) => {
            tracing::warn!(chat_id, error = %err, "admins not listed for the model alert");
            return;
        }
    };
    let what = match e {
        ModelError::Quota(_) => {
            "the model account has run out of credit (quota exceeded)".to_string()
        }
        ModelError::Unauthorized { status, .. } => {
            format!("the model service rejected the API key (HTTP {status})")
        }
        _ => return,
    };
    let html = crate::format::escape_html(&format!(
        "Heads-up for {}: {what}, so I can't answer chat messages there (commands still work). Please check the model account and llm.api_key. I'll tell you again in an hour if it persists.",
        scope.chat.title
    ));
    tracing::warn!(
        chat_id,
        cause = e.cause(),
        admins = admins.len(),
        "alerting the group's admins about the model"
    );
    for a in admins {
        let msg = crate::types::Outbound {
            chat_id: a.user_id,
            html: html.clone(),
            buttons: vec![],
            reply_to: None,
        };
        if let Err(err) = svc.outbox.send_notice(msg).await {
            tracing::warn!(chat_id, user_id = a.user_id, error = %err, "admin alert not delivered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_answer_cuts_on_a_break_and_says_so() {
        let (t, capped) = cap_answer("short", 100);
        assert_eq!((t.as_str(), capped), ("short", false));
        let long = "line of text\n".repeat(100); // 1,300 chars
        let (t, capped) = cap_answer(&long, 200);
        assert!(capped);
        assert!(t.chars().count() <= 200, "{}", t.chars().count());
        assert!(t.starts_with("line of text\nline"));
        assert!(t.ends_with("I post at most 200.)"), "{t}");
        // multi-byte characters, no breaks at all
        let (t, _) = cap_answer(&"İ".repeat(1000), 150);
        assert!(t.chars().count() <= 150 && t.starts_with("İİ"));
    }
}
