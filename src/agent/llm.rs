//! The model boundary: the only file that imports async-openai. Converts hearth's plain
//! [`ChatMessage`]s and [`ToolSpec`]s to an OpenAI-compatible chat completion request and
//! classifies failures into [`ModelError`]. Works with any OpenAI-compatible server (OpenAI,
//! Ollama, vLLM, OpenRouter, llama.cpp / llama-cpp-python).
//!
//! Strict in what it sends, lenient in what it reads (issue 8, found against llama-cpp-python's
//! `chatml-function-calling` server): `tool_choice: "auto"` whenever tools are offered (that
//! server ignores `tools` without it); an assistant message with `tool_calls` always carries
//! `"content": ""` (its template fails with HTTP 500 without the key); `max_tokens` on every call
//! (`llm.max_tokens`) with `finish_reason: "length"` reported as [`ModelReply::truncated`]; the
//! model list is read as plain JSON, needing only `data[].id`.
//!
//! Retries are async-openai's own (0.43 `OpenAIRetryLayer`): 429 (except `insufficient_quota`),
//! 5xx and connection failures are retried 3 times, honouring `Retry-After`, else backing off
//! 100 → 800 ms. The per-turn timeout (`llm.timeout`) bounds the whole.

use std::time::Duration;

use async_openai::{
    config::OpenAIConfig,
    error::OpenAIError,
    types::chat::{
        ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls,
        ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
        ChatCompletionRequestSystemMessage, ChatCompletionRequestToolMessage,
        ChatCompletionRequestUserMessage, ChatCompletionTool, ChatCompletionToolChoiceOption,
        ChatCompletionTools, CreateChatCompletionRequest, FinishReason, FunctionCall,
        FunctionObject, ToolChoiceOptions,
    },
    Client,
};
use async_trait::async_trait;
use secrecy::ExposeSecret;

use crate::config::LlmConfig;

/// One message of a model conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatMessage {
    System(String),
    User(String),
    Assistant {
        content: Option<String>,
        tool_calls: Vec<ToolCall>,
    },
    /// The result of one tool call, as JSON text.
    Tool {
        call_id: String,
        content: String,
    },
}

/// A tool call requested by the model. `arguments` is the raw JSON text the model produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A tool as declared to the model: name, one-line description, JSON Schema of the arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub parameters: serde_json::Value,
}

/// The model's answer to one request, with token usage (0 when the server reports none).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelReply {
    pub content: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// The server stopped at `max_tokens` (`finish_reason: "length"`): `content` is cut off.
    pub truncated: bool,
}

/// Why a model call failed (after retries).
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("the model endpoint rate-limited us (HTTP 429): {0}")]
    RateLimited(String),
    /// HTTP 429 with `insufficient_quota`: the account is out of credit; retrying won't help.
    #[error("the model account is out of quota: {0}")]
    Quota(String),
    /// HTTP 401 / 403: the API key is wrong, revoked or lacks access to the model.
    #[error("the model endpoint rejected our credentials (HTTP {status}): {message}")]
    Unauthorized { status: u16, message: String },
    #[error("the model endpoint failed (HTTP {status}): {message}")]
    Server { status: u16, message: String },
    #[error("the model endpoint refused the request (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    #[error("could not reach the model endpoint: {0}")]
    Connection(String),
    #[error("the model's answer could not be read: {0}")]
    Malformed(String),
}

impl ModelError {
    /// Short cause for turn records: "rate_limited", "server_error", …
    pub fn cause(&self) -> &'static str {
        match self {
            ModelError::RateLimited(_) => "rate_limited",
            ModelError::Quota(_) => "quota",
            ModelError::Unauthorized { .. } => "unauthorized",
            ModelError::Server { .. } => "server_error",
            ModelError::Refused { .. } => "refused",
            ModelError::Connection(_) => "unreachable",
            ModelError::Malformed(_) => "malformed",
        }
    }
}

/// A chat-completion model with tool calling.
#[async_trait]
pub trait ChatModel: Send + Sync + 'static {
    /// One completion for `messages`, offering `tools`.
    async fn complete(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
    ) -> Result<ModelReply, ModelError>;
    /// The model name, for turn records.
    fn name(&self) -> &str;
}

/// An OpenAI-compatible endpoint through async-openai.
pub struct OpenAiModel {
    client: Client<OpenAIConfig>,
    http: reqwest::Client,
    base_url: String,
    api_key: String,
    model: String,
    max_tokens: u32,
}

impl OpenAiModel {
    /// Build from `[llm]` config. The HTTP timeout per request is `llm.timeout`.
    pub fn new(cfg: &LlmConfig) -> Self {
        let base_url = cfg.base_url.trim_end_matches('/').to_string();
        // local servers ignore the key, but some reject an empty Authorization header
        let api_key = cfg
            .api_key
            .as_ref()
            .map(|k| k.expose_secret().to_string())
            .unwrap_or_else(|| "none".into());
        let oc = OpenAIConfig::new()
            .with_api_base(&base_url)
            .with_api_key(&api_key);
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            client: Client::with_config(oc).with_http_client(http.clone()),
            http,
            base_url,
            api_key,
            model: cfg.model.clone(),
            max_tokens: cfg.max_tokens,
        }
    }

    /// Ask the endpoint for its model list (`hearth check --online`). Returns model ids.
    ///
    /// Lenient: `GET {base_url}/models` read as plain JSON, only `data[].id` is needed (local
    /// servers leave out `created`, `owned_by`, …). A body that is not such a list is
    /// [`ModelError::Malformed`] with the parse error only, never the body (it is not logged).
    pub async fn list_models(&self) -> Result<Vec<String>, ModelError> {
        let resp = self
            .http
            .get(format!("{}/models", self.base_url))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .map_err(|e| ModelError::Connection(error_chain(&e)))?;
        let status = resp.status().as_u16();
        let body: serde_json::Value = match resp.json().await {
            Ok(v) => v,
            Err(e) if status < 400 => return Err(ModelError::Malformed(e.to_string())),
            Err(_) => serde_json::Value::Null,
        };
        if status >= 400 {
            let message = body
                .pointer("/error/message")
                .and_then(|m| m.as_str())
                .unwrap_or("")
                .chars()
                .take(200)
                .collect();
            let code = body
                .pointer("/error/code")
                .or_else(|| body.pointer("/error/type"))
                .and_then(|c| c.as_str());
            return Err(classify_status(status, code, message));
        }
        model_ids(&body)
            .ok_or_else(|| ModelError::Malformed("expected {\"data\": [{\"id\": …}]}".into()))
    }

    fn request(&self, messages: &[ChatMessage], tools: &[ToolSpec]) -> CreateChatCompletionRequest {
        CreateChatCompletionRequest {
            model: self.model.clone(),
            messages: messages.iter().map(to_openai).collect(),
            tools: (!tools.is_empty()).then(|| {
                tools
                    .iter()
                    .map(|t| {
                        ChatCompletionTools::Function(ChatCompletionTool {
                            function: FunctionObject {
                                name: t.name.to_string(),
                                description: Some(t.description.to_string()),
                                parameters: Some(t.parameters.clone()),
                                strict: None,
                            },
                        })
                    })
                    .collect()
            }),
            tool_choice: (!tools.is_empty()).then_some(ChatCompletionToolChoiceOption::Mode(
                ToolChoiceOptions::Auto,
            )),
            #[allow(deprecated)]
            max_tokens: Some(self.max_tokens),
            ..Default::default()
        }
    }
}

/// The ids of a `/models` answer: `{"data": [{"id": "…"}, …]}`; entries without an id are
/// skipped. `None` when there is no `data` array.
fn model_ids(body: &serde_json::Value) -> Option<Vec<String>> {
    let data = body.get("data")?.as_array()?;
    Some(
        data.iter()
            .filter_map(|m| m.get("id").and_then(|i| i.as_str()).map(str::to_string))
            .collect(),
    )
}

#[async_trait]
impl ChatModel for OpenAiModel {
    async fn complete(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
    ) -> Result<ModelReply, ModelError> {
        let req = self.request(messages, tools);
        match self.client.chat().create(req).await {
            Ok(resp) => from_response(resp),
            Err(e) => Err(classify(e)),
        }
    }

    fn name(&self) -> &str {
        &self.model
    }
}

fn to_openai(m: &ChatMessage) -> ChatCompletionRequestMessage {
    match m {
        ChatMessage::System(s) => ChatCompletionRequestMessage::System(
            ChatCompletionRequestSystemMessage::from(s.as_str()),
        ),
        ChatMessage::User(s) => {
            ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage::from(s.as_str()))
        }
        ChatMessage::Assistant {
            content,
            tool_calls,
        } => {
            #[allow(deprecated)]
            // llama.cpp's chat template needs the `content` key next to `tool_calls`
            let content = match content {
                None if !tool_calls.is_empty() => Some(""),
                c => c.as_deref(),
            };
            let msg = ChatCompletionRequestAssistantMessage {
                content: content.map(Into::into),
                tool_calls: (!tool_calls.is_empty()).then(|| {
                    tool_calls
                        .iter()
                        .map(|c| {
                            ChatCompletionMessageToolCalls::Function(
                                ChatCompletionMessageToolCall {
                                    id: c.id.clone(),
                                    function: FunctionCall {
                                        name: c.name.clone(),
                                        arguments: c.arguments.clone(),
                                    },
                                },
                            )
                        })
                        .collect()
                }),
                ..Default::default()
            };
            ChatCompletionRequestMessage::Assistant(msg)
        }
        ChatMessage::Tool { call_id, content } => {
            ChatCompletionRequestMessage::Tool(ChatCompletionRequestToolMessage {
                content: content.as_str().into(),
                tool_call_id: call_id.clone(),
            })
        }
    }
}

fn from_response(
    resp: async_openai::types::chat::CreateChatCompletionResponse,
) -> Result<ModelReply, ModelError> {
    let (prompt_tokens, completion_tokens) = resp
        .usage
        .as_ref()
        .map(|u| (u.prompt_tokens, u.completion_tokens))
        .unwrap_or((0, 0));
    let choice = resp
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| ModelError::Malformed("no choices in the response".into()))?;
    let tool_calls = choice
        .message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| match c {
            ChatCompletionMessageToolCalls::Function(f) => Some(ToolCall {
                id: f.id,
                name: f.function.name,
                arguments: f.function.arguments,
            }),
            ChatCompletionMessageToolCalls::Custom(_) => None,
        })
        .collect();
    Ok(ModelReply {
        content: choice.message.content,
        tool_calls,
        prompt_tokens,
        completion_tokens,
        truncated: choice.finish_reason == Some(FinishReason::Length),
    })
}

fn classify(e: OpenAIError) -> ModelError {
    match e {
        OpenAIError::ApiError(r) => {
            let status = r.status_code.as_u16();
            let code = r
                .api_error
                .code
                .as_deref()
                .or(r.api_error.r#type.as_deref());
            classify_status(status, code, r.api_error.message.clone())
        }
        OpenAIError::Reqwest(e) => {
            if let Some(s) = e.status() {
                let status = s.as_u16();
                if status == 429 || status == 401 || status == 403 {
                    return classify_status(status, None, e.to_string());
                }
                if s.is_server_error() {
                    return ModelError::Server {
                        status,
                        message: e.to_string(),
                    };
                }
            }
            ModelError::Connection(error_chain(&e))
        }
        OpenAIError::JSONDeserialize(e, _) => ModelError::Malformed(e.to_string()),
        other => ModelError::Malformed(other.to_string()),
    }
}

/// An HTTP error status (and the error's `code`/`type`) → [`ModelError`].
fn classify_status(status: u16, code: Option<&str>, message: String) -> ModelError {
    match status {
        429 if code == Some("insufficient_quota") => ModelError::Quota(message),
        429 => ModelError::RateLimited(message),
        401 | 403 => ModelError::Unauthorized { status, message },
        500..=599 => ModelError::Server { status, message },
        _ => ModelError::Refused { status, message },
    }
}

/// "outer: inner: root" for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
