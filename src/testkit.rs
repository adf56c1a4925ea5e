//! Test doubles shared by the integration tests and the benchmarks: a [`RecordingMessenger`]
//! (remembers every outbound call) and a [`ScriptedModel`] (answers from a queue, records every
//! request). Not used by the daemon, and not part of the public library surface: compiled only
//! with the `testkit` cargo feature, which the crate's own dev-dependency on itself turns on for
//! tests and benches (`Cargo.toml`).

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc, Mutex,
    },
};

use async_trait::async_trait;

use crate::{
    agent::llm::{ChatMessage, ChatModel, ModelError, ModelReply, ToolCall, ToolSpec},
    format::html_to_plain,
    messenger::{Messenger, SendError, Sent},
    types::{Button, Outbound},
};

/// One outbound call seen by [`RecordingMessenger`].
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    Send(Outbound),
    Edit {
        chat_id: i64,
        message_id: i64,
        html: String,
        buttons: Vec<Vec<Button>>,
    },
    Callback {
        id: String,
        text: Option<String>,
        alert: bool,
    },
    Photo {
        chat_id: i64,
        caption: String,
        bytes: usize,
    },
}

/// A messenger that records instead of delivering.
#[derive(Clone, Default)]
pub struct RecordingMessenger {
    calls: Arc<Mutex<Vec<Recorded>>>,
    next_id: Arc<AtomicI64>,
    /// Files members "sent", served by `download` (file id → bytes).
    files: Arc<Mutex<std::collections::HashMap<String, Vec<u8>>>>,
}

impl RecordingMessenger {
    /// Every call so far.
    pub fn calls(&self) -> Vec<Recorded> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// The messages sent so far.
    pub fn sent(&self) -> Vec<Outbound> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Recorded::Send(o) => Some(o),
                _ => None,
            })
            .collect()
    }
    /// Plain texts sent to `chat_id`.
    pub fn texts_to(&self, chat_id: i64) -> Vec<String> {
        self.sent()
            .into_iter()
            .filter(|o| o.chat_id == chat_id)
            .map(|o| html_to_plain(&o.html))
            .collect()
    }
    /// Serve `bytes` as the file `file_id` (a document a member sent).
    pub fn add_file(&self, file_id: &str, bytes: impl Into<Vec<u8>>) {
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(file_id.to_string(), bytes.into());
    }
    /// Forget everything recorded.
    pub fn clear(&self) {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
    fn push(&self, r: Recorded) {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push(r);
    }
}

#[async_trait]
impl Messenger for RecordingMessenger {
    async fn download(&self, file_id: &str, max: usize) -> Result<Vec<u8>, SendError> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        match files.get(file_id) {
            Some(b) if b.len() <= max => Ok(b.clone()),
            Some(_) => Err(SendError("file too large".into())),
            None => Err(SendError(format!("no file {file_id}"))),
        }
    }
    async fn send(&self, msg: &Outbound) -> Result<Vec<Sent>, SendError> {
        self.push(Recorded::Send(msg.clone()));
        let id = 100_000 + self.next_id.fetch_add(1, Ordering::SeqCst);
        Ok(vec![Sent {
            message_id: id,
            text: html_to_plain(&msg.html),
        }])
    }
    async fn edit(
        &self,
        chat_id: i64,
        message_id: i64,
        html: &str,
        buttons: &[Vec<Button>],
    ) -> Result<(), SendError> {
        self.push(Recorded::Edit {
            chat_id,
            message_id,
            html: html.to_string(),
            buttons: buttons.to_vec(),
        });
        Ok(())
    }
    async fn answer_callback(
        &self,
        id: &str,
        text: Option<&str>,
        alert: bool,
    ) -> Result<(), SendError> {
        self.push(Recorded::Callback {
            id: id.to_string(),
            text: text.map(str::to_string),
            alert,
        });
        Ok(())
    }
    /// No command menu here (the fake Bot API records Telegram's).
    async fn set_chat_commands(
        &self,
        _chat_id: i64,
        _commands: &[(String, String)],
    ) -> Result<bool, SendError> {
        Ok(false)
    }
    async fn typing(&self, _chat_id: i64) -> Result<(), SendError> {
        Ok(())
    }
    async fn send_photo(
        &self,
        chat_id: i64,
        png: Vec<u8>,
        caption_html: &str,
    ) -> Result<Sent, SendError> {
        self.push(Recorded::Photo {
            chat_id,
            caption: caption_html.to_string(),
            bytes: png.len(),
        });
        let id = 100_000 + self.next_id.fetch_add(1, Ordering::SeqCst);
        Ok(Sent {
            message_id: id,
            text: html_to_plain(caption_html),
        })
    }
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Script {
    /// A final text answer.
    Text(String),
    /// A final text answer the server cut at `max_tokens` (`finish_reason: "length"`).
    Cut(String),
    /// Tool calls: (name, JSON arguments text).
    Tools(Vec<(String, String)>),
    /// A failure.
    Fail(fn() -> ModelError),
    /// A bug: the model call panics (tests that one bad handler cannot stop a chat).
    Panic,
}

/// A model that answers from a queue (then repeats `fallback`) and records every request.
#[derive(Clone)]
pub struct ScriptedModel {
    queue: Arc<Mutex<VecDeque<Script>>>,
    fallback: Arc<Mutex<Option<Script>>>,
    requests: Arc<Mutex<Vec<Vec<ChatMessage>>>>,
    tools_seen: Arc<Mutex<Vec<Vec<ToolSpec>>>>,
}

impl ScriptedModel {
    /// Answers `script` in order, then "ok" forever.
    pub fn new(script: Vec<Script>) -> Self {
        Self {
            queue: Arc::new(Mutex::new(script.into())),
            fallback: Arc::new(Mutex::new(Some(Script::Text("ok".into())))),
            requests: Default::default(),
            tools_seen: Default::default(),
        }
    }
    /// Append answers.
    pub fn push(&self, s: Script) {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(s);
    }
    /// What to answer once the queue is empty.
    pub fn set_fallback(&self, s: Script) {
        *self.fallback.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
    }
    /// Every request's messages.
    pub fn requests(&self) -> Vec<Vec<ChatMessage>> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    /// Every request's tool list.
    pub fn tools_seen(&self) -> Vec<Vec<ToolSpec>> {
        self.tools_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    /// Number of requests made.
    pub fn calls(&self) -> usize {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

#[async_trait]
impl ChatModel for ScriptedModel {
    async fn complete(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
    ) -> Result<ModelReply, ModelError> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(messages.to_vec());
        self.tools_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tools.to_vec());
        let next = self
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
        let s = next
            .or_else(|| {
                self.fallback
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
            })
            .unwrap_or(Script::Text("ok".into()));
        let n = self.calls() as i64;
        match s {
            Script::Text(t) => Ok(ModelReply {
                content: Some(t),
                tool_calls: vec![],
                prompt_tokens: 10,
                completion_tokens: 2,
                truncated: false,
            }),
            Script::Cut(t) => Ok(ModelReply {
                content: Some(t),
                tool_calls: vec![],
                prompt_tokens: 10,
                completion_tokens: 2,
                truncated: true,
            }),
            Script::Tools(calls) => Ok(ModelReply {
                content: None,
                tool_calls: calls
                    .into_iter()
                    .enumerate()
                    .map(|(i, (name, arguments))| ToolCall {
                        id: format!("call_{n}_{i}"),
                        name,
                        arguments,
                    })
                    .collect(),
                prompt_tokens: 10,
                completion_tokens: 2,
                truncated: false,
            }),
            Script::Fail(f) => Err(f()),
            Script::Panic => panic!("scripted panic"),
        }
    }
    fn name(&self) -> &str {
        "scripted"
    }
}
