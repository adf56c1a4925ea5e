//! Console adapter: the same core behind a terminal, for trying hearth without Telegram.
//!
//! One group ("Console group") and DMs. Input lines:
//! `alice: hello @hearth` (speak as alice in the current chat), plain text (the current speaker),
//! `/as bob` (switch speaker), `/dm` (private chat with the current speaker), `/group`,
//! `/press N` (tap button N of the latest message with buttons), `/quit`. Everything else that
//! starts with "/" is a hearth command. Bot replies are printed with their buttons numbered.
//! Images (the leaderboard chart) are saved as PNG files under the data folder (next to the
//! SQLite file: `data/images/` by default) and printed as their path, so they can be opened.

use std::{
    collections::HashMap,
    io::Write,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc, Mutex,
    },
};

use async_trait::async_trait;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::{
    core::Hearth,
    format::html_to_plain,
    messenger::{Messenger, SendError, Sent},
    types::{
        Button, CallbackQuery, ChatKind, ChatRef, Content, InboundEvent, InboundMessage, Outbound,
        UserRef,
    },
};

/// The console group's chat id.
pub const GROUP_ID: i64 = -1000;
/// The console bot's username (mention it as @hearth).
pub const BOT_USERNAME: &str = "hearth";

/// A button shown in the console: where it is and what it carries.
#[derive(Debug, Clone)]
struct Shown {
    chat_id: i64,
    message_id: i64,
    button: Button,
}

/// Prints bot messages to a writer (stdout by default).
#[derive(Clone)]
pub struct ConsoleMessenger {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    next_id: Arc<AtomicI64>,
    buttons: Arc<Mutex<Vec<Shown>>>,
    names: Arc<Mutex<HashMap<i64, String>>>,
    /// Where received images are saved; `None` prints their size only.
    image_dir: Option<PathBuf>,
}

/// The folder console images go to for `database_url`: `images/` next to the SQLite file
/// (`sqlite://data/hearth.db?mode=rwc` → `data/images`), or `data/images` for an in-memory or
/// Postgres database.
pub fn image_dir(database_url: &str) -> PathBuf {
    let file = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .filter(|_| !database_url.contains(":memory:"))
        .and_then(|rest| rest.split('?').next())
        .filter(|p| !p.is_empty());
    match file.map(Path::new).and_then(Path::parent) {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("images"),
        Some(_) => PathBuf::from("images"),
        None => PathBuf::from("data").join("images"),
    }
}

impl ConsoleMessenger {
    /// Print to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            out: Arc::new(Mutex::new(out)),
            next_id: Arc::new(AtomicI64::new(1)),
            buttons: Default::default(),
            names: Default::default(),
            image_dir: None,
        }
    }

    /// Save images received from the core as PNG files under `dir` (created when needed)
    /// instead of printing only their size.
    pub fn with_image_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.image_dir = Some(dir.into());
        self
    }

    /// Write `png` as `<dir>/image-<UTC time>-<id>.png`; returns its path.
    fn save_image(&self, id: i64, png: &[u8]) -> std::io::Result<Option<PathBuf>> {
        let Some(dir) = &self.image_dir else {
            return Ok(None);
        };
        std::fs::create_dir_all(dir)?;
        let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
        let path = dir.join(format!("image-{stamp}-{id}.png"));
        std::fs::write(&path, png)?;
        Ok(Some(path))
    }

    fn id(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::SeqCst)
    }

    fn where_(&self, chat_id: i64) -> String {
        if chat_id == GROUP_ID {
            "group".into()
        } else {
            let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
            format!(
                "DM {}",
                names
                    .get(&chat_id)
                    .cloned()
                    .unwrap_or_else(|| chat_id.to_string())
            )
        }
    }

    fn print(&self, line: &str) {
        let mut o = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    }

    fn show_buttons(&self, chat_id: i64, message_id: i64, buttons: &[Vec<Button>]) -> String {
        let mut shown = self.buttons.lock().unwrap_or_else(|p| p.into_inner());
        shown.clear();
        let mut labels = Vec::new();
        for b in buttons.iter().flatten() {
            shown.push(Shown {
                chat_id,
                message_id,
                button: b.clone(),
            });
            labels.push(format!("[{}] {}", shown.len(), b.label));
        }
        labels.join("  ")
    }
}

#[async_trait]
impl Messenger for ConsoleMessenger {
    async fn send(&self, msg: &Outbound) -> Result<Vec<Sent>, SendError> {
        let id = self.id();
        let text = html_to_plain(&msg.html);
        self.print(&format!("hearth → {}: {}", self.where_(msg.chat_id), text));
        if !msg.buttons.is_empty() {
            let labels = self.show_buttons(msg.chat_id, id, &msg.buttons);
            self.print(&format!("    {labels}   (/press N)"));
        }
        Ok(vec![Sent {
            message_id: id,
            text,
        }])
    }

    async fn edit(
        &self,
        chat_id: i64,
        message_id: i64,
        html: &str,
        buttons: &[Vec<Button>],
    ) -> Result<(), SendError> {
        self.print(&format!(
            "hearth ✎ {} (message {message_id}): {}",
            self.where_(chat_id),
            html_to_plain(html)
        ));
        if buttons.is_empty() {
            self.buttons
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|s| !(s.chat_id == chat_id && s.message_id == message_id));
        } else {
            let labels = self.show_buttons(chat_id, message_id, buttons);
            self.print(&format!("    {labels}"));
        }
        Ok(())
    }

    async fn answer_callback(
        &self,
        _id: &str,
        text: Option<&str>,
        _alert: bool,
    ) -> Result<(), SendError> {
        if let Some(t) = text {
            self.print(&format!("    ({t})"));
        }
        Ok(())
    }

    async fn typing(&self, _chat_id: i64) -> Result<(), SendError> {
        Ok(())
    }

    /// No Telegram menu in a terminal: nothing is set (and nothing remembered as sent).
    async fn set_chat_commands(
        &self,
        _chat_id: i64,
        _commands: &[(String, String)],
    ) -> Result<bool, SendError> {
        Ok(false)
    }

    async fn send_photo(
        &self,
        chat_id: i64,
        png: Vec<u8>,
        caption_html: &str,
    ) -> Result<Sent, SendError> {
        let id = self.id();
        let text = html_to_plain(caption_html);
        let shown = match self.save_image(id, &png) {
            Ok(Some(path)) => format!("[image {} ({} bytes)]", path.display(), png.len()),
            Ok(None) => format!("[image, {} bytes]", png.len()),
            Err(e) => format!("[image, {} bytes; could not save it: {e}]", png.len()),
        };
        self.print(&format!(
            "hearth → {}: {shown} {}",
            self.where_(chat_id),
            text
        ));
        Ok(Sent {
            message_id: id,
            text,
        })
    }
}

/// The console session state: who speaks, where.
pub struct Console {
    hearth: Arc<Hearth>,
    messenger: ConsoleMessenger,
    users: HashMap<String, UserRef>,
    speaker: String,
    private: bool,
}

impl Console {
    /// A session over a running core whose messenger is `messenger`.
    pub fn new(hearth: Arc<Hearth>, messenger: ConsoleMessenger) -> Self {
        Self {
            hearth,
            messenger,
            users: HashMap::new(),
            speaker: "alice".into(),
            private: false,
        }
    }

    fn user(&mut self, name: &str) -> UserRef {
        let key = name.to_lowercase();
        let n = self.users.len() as i64;
        let u = self.users.entry(key.clone()).or_insert_with(|| {
            let mut first = key.clone();
            if let Some(c) = first.get_mut(0..1) {
                c.make_ascii_uppercase();
            }
            UserRef {
                id: 1001 + n,
                first_name: first,
                username: Some(key.clone()),
                is_bot: false,
            }
        });
        let u = u.clone();
        self.messenger
            .names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(u.id, u.first_name.clone());
        u
    }

    fn chat(&mut self) -> ChatRef {
        if self.private {
            let u = self.user(&self.speaker.clone());
            ChatRef {
                id: u.id,
                kind: ChatKind::Private,
                title: u.first_name,
            }
        } else {
            ChatRef {
                id: GROUP_ID,
                kind: ChatKind::Group,
                title: "Console group".into(),
            }
        }
    }

    /// Handle one input line; returns false on `/quit`.
    pub async fn line(&mut self, line: &str) -> bool {
        let line = line.trim();
        if line.is_empty() {
            return true;
        }
        let (cmd, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match cmd {
            "/quit" | "/exit" => return false,
            "/as" => {
                let name = rest.trim();
                if valid_name(name) {
                    self.speaker = name.to_lowercase();
                    self.messenger
                        .print(&format!("(now speaking as {})", self.speaker));
                } else {
                    self.messenger.print("(usage: /as NAME, letters only)");
                }
                return true;
            }
            "/dm" => {
                self.private = true;
                self.messenger
                    .print(&format!("(private chat with {})", self.speaker));
                return true;
            }
            "/group" => {
                self.private = false;
                self.messenger.print("(group chat)");
                return true;
            }
            "/press" => {
                self.press(rest.trim()).await;
                return true;
            }
            _ => {}
        }
        let text = match line.split_once(':') {
            Some((name, text)) if valid_name(name.trim()) && !name.contains(' ') => {
                self.speaker = name.trim().to_lowercase();
                text.trim().to_string()
            }
            _ => line.to_string(),
        };
        let from = self.user(&self.speaker.clone());
        let chat = self.chat();
        let message_id = self.messenger.id();
        let mentions_bot = crate::telegram::convert::mentions_username(&text, BOT_USERNAME);
        let ev = InboundEvent::Message(InboundMessage {
            update_id: None,
            chat,
            from,
            message_id,
            content: Content::Text { text },
            reply_to: None,
            mentions_bot,
            date: self.hearth.svc.clock.now(),
        });
        self.submit(ev).await;
        true
    }

    async fn press(&mut self, n: &str) {
        let shown = self
            .messenger
            .buttons
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(s) = n
            .parse::<usize>()
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| shown.get(i))
            .cloned()
        else {
            self.messenger
                .print(&format!("(no button {n}; {} shown)", shown.len()));
            return;
        };
        let from = self.user(&self.speaker.clone());
        let chat = if s.chat_id == GROUP_ID {
            ChatRef {
                id: GROUP_ID,
                kind: ChatKind::Group,
                title: "Console group".into(),
            }
        } else {
            ChatRef {
                id: s.chat_id,
                kind: ChatKind::Private,
                title: from.first_name.clone(),
            }
        };
        let ev = InboundEvent::Callback(CallbackQuery {
            id: format!("console-{}", self.messenger.id()),
            from,
            chat,
            message_id: s.message_id,
            data: s.button.data,
        });
        self.submit(ev).await;
    }

    async fn submit(&self, ev: InboundEvent) {
        if let Err(e) = self.hearth.accept(ev).await {
            self.messenger
                .print(&format!("(could not store the message: {e})"));
        }
        self.hearth.idle().await;
    }

    /// Read lines until EOF or `/quit`.
    pub async fn run(mut self, input: impl AsyncBufRead + Unpin) {
        self.messenger.print(
            "hearth console. Speak as `alice: hello @hearth`; /as NAME, /dm, /group, /press N, /help, /quit.",
        );
        let mut lines = input.lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if !self.line(&l).await {
                break;
            }
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.chars().all(|c| c.is_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::image_dir;
    use std::path::PathBuf;

    #[test]
    fn images_go_next_to_the_sqlite_file() {
        assert_eq!(
            image_dir("sqlite://data/hearth.db?mode=rwc"),
            PathBuf::from("data/images")
        );
        assert_eq!(
            image_dir("sqlite:///var/lib/hearth/h.db"),
            PathBuf::from("/var/lib/hearth/images")
        );
        assert_eq!(image_dir("sqlite://h.db"), PathBuf::from("images"));
        assert_eq!(image_dir("sqlite::memory:"), PathBuf::from("data/images"));
        assert_eq!(
            image_dir("postgres://u:p@host/db"),
            PathBuf::from("data/images")
        );
    }
}
