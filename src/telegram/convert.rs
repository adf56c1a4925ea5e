//! Telegram update → hearth [`InboundEvent`]s. Pure; the only place that reads teloxide types
//! of incoming updates.

use teloxide::types::{
    Chat, MaybeInaccessibleMessage, MediaKind, Message, MessageEntityKind, MessageKind, Update,
    UpdateKind, User,
};

use crate::{
    services::BotIdentity,
    types::{
        CallbackQuery, ChatKind, ChatRef, Content, InboundEvent, InboundMessage, ReplyRef, UserRef,
    },
};

/// Convert one update. Channels, edits, inline queries and other kinds give no event.
pub fn events(update: &Update, bot: &BotIdentity) -> Vec<InboundEvent> {
    let update_id = i64::from(update.id.0);
    match &update.kind {
        UpdateKind::Message(m) => message_events(m, bot, Some(update_id)),
        UpdateKind::CallbackQuery(q) => {
            let (Some(data), Some(msg)) = (&q.data, &q.message) else {
                return vec![];
            };
            let chat = match msg {
                MaybeInaccessibleMessage::Regular(m) => &m.chat,
                MaybeInaccessibleMessage::Inaccessible(i) => &i.chat,
            };
            let Some(chat) = chat_ref(chat) else {
                return vec![];
            };
            vec![InboundEvent::Callback(CallbackQuery {
                id: q.id.0.clone(),
                from: user_ref(&q.from),
                chat,
                message_id: i64::from(msg.id().0),
                data: data.clone(),
            })]
        }
        UpdateKind::ChatMember(u) => {
            let Some(chat) = chat_ref(&u.chat) else {
                return vec![];
            };
            let user = user_ref(&u.new_chat_member.user);
            let was = u.old_chat_member.kind.is_present();
            let is = u.new_chat_member.kind.is_present();
            match (was, is) {
                (false, true) => vec![InboundEvent::MemberJoined { chat, user }],
                (true, false) => vec![InboundEvent::MemberLeft { chat, user }],
                _ => vec![],
            }
        }
        _ => vec![],
    }
}

fn message_events(m: &Message, bot: &BotIdentity, update_id: Option<i64>) -> Vec<InboundEvent> {
    let Some(chat) = chat_ref(&m.chat) else {
        return vec![];
    };
    if let Some(users) = m.new_chat_members() {
        return users
            .iter()
            .filter(|u| u.id.0 as i64 != bot.id)
            .map(|u| InboundEvent::MemberJoined {
                chat: chat.clone(),
                user: user_ref(u),
            })
            .collect();
    }
    if let Some(u) = m.left_chat_member() {
        return vec![InboundEvent::MemberLeft {
            chat,
            user: user_ref(u),
        }];
    }
    let Some(from) = m.from.as_ref() else {
        return vec![];
    };
    if !matches!(m.kind, MessageKind::Common(_)) {
        return vec![]; // pins, title changes and other service messages
    }
    let document = match &m.kind {
        MessageKind::Common(c) => match &c.media_kind {
            // a `.toml` document may be a playbook; other documents stay as before
            MediaKind::Document(d)
                if d.document
                    .file_name
                    .as_deref()
                    .is_some_and(|n| n.to_ascii_lowercase().ends_with(".toml")) =>
            {
                Some(Content::Document {
                    file_id: d.document.file.id.0.clone(),
                    file_name: d.document.file_name.clone().unwrap_or_default(),
                    size: u64::from(d.document.file.size),
                })
            }
            _ => None,
        },
        _ => None,
    };
    let content = match (document, m.text(), m.caption()) {
        (Some(d), _, _) => d,
        (None, Some(t), _) => Content::Text {
            text: t.to_string(),
        },
        (None, None, Some(c)) => Content::Text {
            text: c.to_string(),
        },
        _ => Content::Unsupported {
            kind: media_kind(m).to_string(),
        },
    };
    let text = m.text().or(m.caption()).unwrap_or("");
    let entities = m.entities().or(m.caption_entities()).unwrap_or(&[]);
    let mentions_bot = entities.iter().any(|e| match &e.kind {
        MessageEntityKind::TextMention { user } => user.id.0 as i64 == bot.id,
        _ => false,
    }) || mentions_username(text, &bot.username);
    let reply_to = m.reply_to_message().map(|r| ReplyRef {
        message_id: i64::from(r.id.0),
        to_bot: r.from.as_ref().is_some_and(|u| u.id.0 as i64 == bot.id),
    });
    vec![InboundEvent::Message(InboundMessage {
        update_id,
        chat,
        from: user_ref(from),
        message_id: i64::from(m.id.0),
        content,
        reply_to,
        mentions_bot,
        date: m.date,
    })]
}

/// True when `text` contains `@username` as a whole word (case-insensitive).
pub fn mentions_username(text: &str, username: &str) -> bool {
    if username.is_empty() {
        return false;
    }
    let needle = format!("@{}", username.to_ascii_lowercase());
    let hay = text.to_lowercase();
    let mut start = 0;
    while let Some(i) = hay[start..].find(&needle) {
        let end = start + i + needle.len();
        let next = hay[end..].chars().next();
        if !next.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            return true;
        }
        start = end;
    }
    false
}

fn media_kind(m: &Message) -> &'static str {
    match &m.kind {
        MessageKind::Common(c) => match &c.media_kind {
            MediaKind::Sticker(_) => "sticker",
            MediaKind::Photo(_) => "photo",
            MediaKind::Voice(_) => "voice message",
            MediaKind::Video(_) => "video",
            MediaKind::VideoNote(_) => "video note",
            MediaKind::Audio(_) => "audio file",
            MediaKind::Document(_) => "document",
            MediaKind::Animation(_) => "GIF",
            MediaKind::Location(_) => "location",
            MediaKind::Contact(_) => "contact",
            MediaKind::Poll(_) => "poll",
            _ => "message of this kind",
        },
        _ => "message of this kind",
    }
}

fn chat_ref(c: &Chat) -> Option<ChatRef> {
    if c.is_private() {
        Some(ChatRef {
            id: c.id.0,
            kind: ChatKind::Private,
            title: c.first_name().unwrap_or("DM").to_string(),
        })
    } else if c.is_group() || c.is_supergroup() {
        Some(ChatRef {
            id: c.id.0,
            kind: ChatKind::Group,
            title: c.title().unwrap_or("group").to_string(),
        })
    } else {
        None
    }
}

fn user_ref(u: &User) -> UserRef {
    UserRef {
        id: u.id.0 as i64,
        first_name: u.first_name.clone(),
        username: u.username.clone(),
        is_bot: u.is_bot,
    }
}

#[cfg(test)]
mod tests {
    use super::mentions_username;

    #[test]
    fn mention_is_a_whole_word() {
        assert!(mentions_username("hi @Hearth_Bot!", "hearth_bot"));
        assert!(!mentions_username("hi @hearth_bot2", "hearth_bot"));
        assert!(!mentions_username("hi", ""));
    }
}
