//! The agent: one turn = system prompt + current message → model ↔ tools loop → reply text.
//!
//! Owns: the tool-calling loop with a step cap (`llm.max_tool_steps`) and a per-turn timeout
//! (`llm.timeout`), token accounting per turn (recorded in `turns`), and the one short
//! user-facing message for every model failure (logged once with its cause chain).
//! Uses: `llm` (the only async-openai importer), `tools`, `prompt`, `context`, store, services.

pub mod llm;
pub mod prompt;
pub mod tools;

use std::{sync::Arc, time::Instant};

use async_trait::async_trait;
use serde_json::json;

use crate::{
    context,
    services::{zone_of, Services},
    store::NewTurn,
    types::ChatKind,
};
use llm::{ChatMessage, ChatModel, ModelError};
use prompt::{Prompt, PromptMember, PromptVars, Section};
pub use tools::{ConfirmGate, Described, Scope, Tool, ToolError, ToolRegistry};

/// Longest tool result handed back to the model, in characters.
const MAX_TOOL_RESULT_CHARS: usize = 4000;

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
            TurnFailure::Model(ModelError::RateLimited(_)) => "The model is busy right now (rate limited). Please try again in a minute.",
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
}

/// The agent: a model, tools, the prompt template and context sections.
#[derive(Clone)]
pub struct Agent {
    model: Option<Arc<dyn ChatModel>>,
    tools: ToolRegistry,
    prompt: Arc<Prompt>,
    sections: Vec<Arc<dyn ContextSection>>,
    /// Where destructive calls of ordinary turns wait for the member (see [`Agent::call_tool`]).
    gate: Option<Arc<dyn ConfirmGate>>,
}

impl Agent {
    /// An agent with `model` (`None`: commands only) and `tools`.
    pub fn new(model: Option<Arc<dyn ChatModel>>, tools: ToolRegistry, prompt: Prompt) -> Self {
        Self {
            model,
            tools,
            prompt: Arc::new(prompt),
            sections: Vec::new(),
            gate: None,
        }
    }

    /// Set where destructive calls of ordinary turns wait for the member's confirmation.
    pub fn with_confirm_gate(mut self, g: impl ConfirmGate) -> Self {
        self.gate = Some(Arc::new(g));
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
    pub async fn run_turn(&self, svc: &Services, mut req: TurnRequest) -> TurnOutcome {
        let started_at = svc.clock.now();
        let t0 = Instant::now();
        let mut out = TurnOutcome {
            result: Err(TurnFailure::NoModel),
            prompt_tokens: 0,
            completion_tokens: 0,
            steps: 0,
            tools_called: vec![],
        };
        let Some(model) = self.model.clone() else {
            return out;
        };
        if req.scope.window_start_id.is_none() {
            // filled by the loop below from the window; recall reads before it
        }
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
        }
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.cause(),
        };
        let _ = svc
            .store
            .record_turn(NewTurn {
                chat_id: req.scope.chat.id,
                source: req.source,
                model: model.name(),
                prompt_tokens: out.prompt_tokens,
                completion_tokens: out.completion_tokens,
                steps: out.steps,
                outcome,
                started_at,
                duration_ms: t0.elapsed().as_millis() as i64,
            })
            .await;
        out.result = result;
        out
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
        let specs = self.tools.specs(req.scope.addressed);
        let max_steps = svc.config.llm.max_tool_steps;
        for _ in 0..max_steps {
            out.steps += 1;
            let reply = model.complete(&messages, &specs).await?;
            out.prompt_tokens += reply.prompt_tokens;
            out.completion_tokens += reply.completion_tokens;
            if reply.tool_calls.is_empty() {
                let text = reply.content.unwrap_or_default();
                let text = text.trim();
                return Ok(if text.is_empty() {
                    "🤷".to_string()
                } else {
                    text.to_string()
                });
            }
            messages.push(ChatMessage::Assistant {
                content: reply.content.clone(),
                tool_calls: reply.tool_calls.clone(),
            });
            for call in reply.tool_calls {
                out.tools_called.push(call.name.clone());
                let result = self
                    .call_tool(svc, &req.scope, &call.name, &call.arguments)
                    .await;
                let mut content = result.to_string();
                if content.len() > MAX_TOOL_RESULT_CHARS {
                    content = context::clip(&content, MAX_TOOL_RESULT_CHARS);
                }
                messages.push(ChatMessage::Tool {
                    call_id: call.id,
                    content,
                });
            }
        }
        Err(TurnFailure::StepCap)
    }

    /// Run one tool call; every failure becomes `{"error": …}` for the model to correct.
    ///
    /// The model never decides a destructive action alone: in an ordinary turn
    /// ([`Scope::member_turn`]) with `agent.confirm_destructive` on, a destructive call is
    /// described ([`Tool::describe`], which also refuses calls that would fail) and handed to
    /// the confirmation gate instead of running; the model is told it awaits the member's
    /// confirmation. Without a gate such a call is refused (fail closed).
    async fn call_tool(
        &self,
        svc: &Services,
        scope: &Scope,
        name: &str,
        raw: &str,
    ) -> serde_json::Value {
        let Some(tool) = self.tools.get(name) else {
            tracing::info!(tool = name, "model asked for an unknown tool");
            return json!({"error": format!("unknown tool '{name}'")});
        };
        if tool.destructive() && !scope.addressed {
            return json!({"error": "not allowed: this tool needs a message addressed to the bot"});
        }
        let raw = if raw.trim().is_empty() { "{}" } else { raw };
        let args: serde_json::Value = match serde_json::from_str(raw) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            Ok(_) => return json!({"error": "invalid arguments: expected a JSON object"}),
            Err(e) => {
                tracing::info!(tool = name, error = %e, "model sent invalid tool arguments");
                return json!({"error": format!("invalid arguments: not valid JSON ({e})")});
            }
        };
        if tool.destructive() && scope.member_turn && svc.config.agent.confirm_destructive {
            let Some(gate) = &self.gate else {
                return json!({"error": "not allowed: this action needs the member's confirmation, which is unavailable"});
            };
            let held = match tool.describe(svc, scope, args).await {
                Ok(call) => gate.hold(svc, scope, tool.spec().name, call).await,
                Err(e) => Err(e),
            };
            return held.unwrap_or_else(|e| json!({"error": e.to_string()}));
        }
        match tool.call(svc, scope, args).await {
            Ok(v) => v,
            Err(e) => json!({"error": e.to_string()}),
        }
    }
}
