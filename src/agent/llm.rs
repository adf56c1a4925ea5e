//! The model boundary: the only file that imports async-openai. Converts hearth's plain
//! [`ChatMessage`]s and [`ToolSpec`]s to an OpenAI-compatible chat completion request and
//! classifies failures into [`ModelError`]. Works with any OpenAI-compatible server (OpenAI,
//! Ollama, vLLM, OpenRouter).
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
        ChatCompletionRequestUserMessage, ChatCompletionTool, ChatCompletionTools,
        CreateChatCompletionRequest, FunctionCall, FunctionObject,
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
}

/// Why a model call failed (after retries).
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("the model endpoint rate-limited us (HTTP 429): {0}")]
    RateLimited(String),
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
    model: String,
}

impl OpenAiModel {
    /// Build from `[llm]` config. The HTTP timeout per request is `llm.timeout`.
    pub fn new(cfg: &LlmConfig) -> Self {
        let mut oc = OpenAIConfig::new().with_api_base(cfg.base_url.trim_end_matches('/'));
        if let Some(k) = &cfg.api_key {
            oc = oc.with_api_key(k.expose_secret());
        } else {
            // local servers ignore the key, but some reject an empty Authorization header
            oc = oc.with_api_key("none");
        }
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            client: Client::with_config(oc).with_http_client(http),
            model: cfg.model.clone(),
        }
    }

    /// Ask the endpoint for its model list (`hearth check --online`). Returns model ids.
    pub async fn list_models(&self) -> Result<Vec<String>, ModelError> {
        let r = self.client.models().list().await.map_err(classify)?;
        Ok(r.data.into_iter().map(|m| m.id).collect())
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
            ..Default::default()
        }
    }
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
            let msg = ChatCompletionRequestAssistantMessage {
                content: content.as_deref().map(Into::into),
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
    })
}

fn classify(e: OpenAIError) -> ModelError {
    match e {
        OpenAIError::ApiError(r) => {
            let status = r.status_code.as_u16();
            let message = r.api_error.message.clone();
            match status {
                429 => ModelError::RateLimited(message),
                500..=599 => ModelError::Server { status, message },
                _ => ModelError::Refused { status, message },
            }
        }
        OpenAIError::Reqwest(e) => {
            if let Some(s) = e.status() {
                let status = s.as_u16();
                if status == 429 {
                    return ModelError::RateLimited(e.to_string());
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
