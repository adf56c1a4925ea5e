//! The save dialogue (issue 10, items 2 and 3): "💾 Save as routine" (`rsave:<turn_id>`) or
//! `/save [name]` → authorize (only the member the turn acted for, an active member of the
//! group) → extraction (one model call, [`super::extract`]) → the name (asked, with a
//! suggestion, unless given; `[a-z0-9_]{1,32}`, free in the target chat, not a built-in
//! command) → in a group, shared or personal (buttons) → a preview with Save / Cancel → saved
//! through `doc::save_doc_from` with the source turn. A routine recorded in a DM is personal;
//! a personal routine lives in the member's DM chat (private chat id = user id).
//!
//! The dialogue is one durable `kv` row per chat and member ([`SaveState`], JSON, expires after
//! [`DIALOGUE_TTL`]); every answer is a compare-and-swap on it, and Save takes it
//! (compare-and-delete), so a double-tapped Save stores once and a restart between two answers
//! loses nothing. `/cancel` ends it.
//!
//! Callback data (≤ 64 bytes): `rsave:<turn>` start, `rsave:n:<turn>` take the suggested name,
//! `rsave:g:<turn>` share with the group, `rsave:m:<turn>` just for me, `rsave:s:<turn>` Save,
//! `rsave:x:<turn>` Cancel.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{
    extract::{self, Extraction},
    is_reserved,
};
use crate::{
    agent::Agent,
    format::escape_html as e,
    routines::{
        doc::{self, SaveError},
        model, Actor,
    },
    services::Services,
    store::{StoreResult, ToolCallStatus},
    types::Button,
};

/// Callback data prefix of the save buttons.
pub const PREFIX: &str = "rsave:";
/// How long the dialogue waits for the member's next answer.
pub const DIALOGUE_TTL: Duration = Duration::minutes(30);
/// Tool calls that ran a turn needs before it can be saved.
pub const MIN_CALLS: usize = 2;
/// Turns `/save` looks back through for the member's last multi-step task.
const LOOK_BACK: u64 = 10;

const STALE: &str = "This button is no longer active.";

/// Where the dialogue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Waiting for a name (the member's next message, or the suggestion's button).
    Name,
    /// Waiting for "Share with the group" / "Just for me".
    Share,
    /// The preview is shown; waiting for Save / Cancel.
    Preview,
}

/// One member's save dialogue in one chat, stored as JSON under [`key`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaveState {
    /// The recorded turn.
    pub turn_id: i64,
    /// The chat the dialogue runs in (where the turn was recorded).
    pub chat_id: i64,
    pub user_id: i64,
    /// The chat is a group (else a DM: the routine is personal).
    pub group: bool,
    pub stage: Stage,
    /// A name that passed the rules, once given.
    pub name: Option<String>,
    /// Offered with the name question.
    pub suggestion: Option<String>,
    /// `Some(true)`: shared with the group; `Some(false)`: personal; `None`: not asked yet.
    pub shared: Option<bool>,
    pub extraction: Extraction,
    /// The tools confirmed before each call ([`confirm_list`]).
    pub confirm: Vec<String>,
    /// UTC.
    pub expires_at: DateTime<Utc>,
}

impl SaveState {
    /// The chat the routine will belong to: the group when shared, else the member's DM.
    pub fn target_chat(&self) -> i64 {
        if self.shared == Some(true) {
            self.chat_id
        } else {
            self.user_id
        }
    }
}

/// The kv key of member `user_id`'s dialogue in chat `chat_id`.
pub fn key(chat_id: i64, user_id: i64) -> String {
    format!("rsave_dialogue:{chat_id}:{user_id}")
}

/// A button tap of the dialogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tap {
    Start,
    UseName,
    Share,
    Mine,
    Save,
    Cancel,
}

impl Tap {
    fn word(self) -> &'static str {
        match self {
            Tap::Start => "",
            Tap::UseName => "n:",
            Tap::Share => "g:",
            Tap::Mine => "m:",
            Tap::Save => "s:",
            Tap::Cancel => "x:",
        }
    }

    /// The callback data for turn `turn_id`.
    pub fn data(self, turn_id: i64) -> String {
        format!("{PREFIX}{}{turn_id}", self.word())
    }
}

/// Parse `rsave:12` / `rsave:s:12`.
pub fn parse_data(data: &str) -> Option<(Tap, i64)> {
    let rest = data.strip_prefix(PREFIX)?;
    let (tap, id) = match rest.split_once(':') {
        None => (Tap::Start, rest),
        Some(("n", id)) => (Tap::UseName, id),
        Some(("g", id)) => (Tap::Share, id),
        Some(("m", id)) => (Tap::Mine, id),
        Some(("s", id)) => (Tap::Save, id),
        Some(("x", id)) => (Tap::Cancel, id),
        _ => return None,
    };
    let id: i64 = id.parse().ok().filter(|n| *n > 0)?;
    Some((tap, id))
}

/// The "💾 Save as routine" button for turn `turn_id`.
pub fn save_button(turn_id: i64) -> Vec<Vec<Button>> {
    vec![vec![Button {
        label: "💾 Save as routine".into(),
        data: Tap::Start.data(turn_id),
    }]]
}

/// What a step of the dialogue answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Said {
    /// A refusal: a toast for a tap, a reply for a command or message. Nothing changed.
    Refused(String),
    /// A message to the chat (HTML) with its buttons.
    Message(String, Vec<Vec<Button>>),
}

fn msg(html: impl Into<String>) -> Said {
    Said::Message(html.into(), vec![])
}

/// Who acts, and where.
#[derive(Debug, Clone, Copy)]
pub struct Who {
    pub chat_id: i64,
    pub user_id: i64,
    /// The chat is a group.
    pub group: bool,
}

/// Start saving turn `turn_id` (a tap) or, when `None`, the member's last multi-step task here
/// (`/save`); `name` was given with `/save`. Authorizes first: the turn must be this chat's,
/// made for this member, with [`MIN_CALLS`] calls that ran, and the member active in the group.
/// Then extracts (a model call) and asks what is missing.
///
/// Errors: storage.
pub async fn start(
    svc: &Services,
    agent: &Agent,
    who: Who,
    turn_id: Option<i64>,
    name: Option<&str>,
) -> StoreResult<Said> {
    if who.group {
        match svc.store.member(who.chat_id, who.user_id).await? {
            Some(m) if m.active => {}
            _ => {
                return Ok(Said::Refused(
                    "Only members of this group can save routines here.".into(),
                ))
            }
        }
    }
    let (turn, calls) = match turn_id {
        Some(id) => {
            let Some(turn) = svc
                .store
                .turn(id)
                .await?
                .filter(|t| t.chat_id == who.chat_id)
            else {
                return Ok(Said::Refused(
                    "I can't find that task in this chat; nothing to save.".into(),
                ));
            };
            if turn.actor_id != Some(who.user_id) {
                return Ok(Said::Refused(
                    "Only the member who asked for this can save it as a routine.".into(),
                ));
            }
            let calls = svc.store.tool_calls(id).await?;
            if ran(&calls) < MIN_CALLS {
                return Ok(Said::Refused(
                    "That task took fewer than two steps; there is nothing to save.".into(),
                ));
            }
            (turn, calls)
        }
        None => {
            let mut found = None;
            for t in svc
                .store
                .tool_turns_of(who.chat_id, who.user_id, LOOK_BACK)
                .await?
            {
                let calls = svc.store.tool_calls(t.id).await?;
                if ran(&calls) >= MIN_CALLS {
                    found = Some((t, calls));
                    break;
                }
            }
            match found {
                Some(f) => f,
                None => {
                    return Ok(Said::Refused(
                        "I don't see a task of yours here that took two or more steps. Ask me to do it once, then /save.".into(),
                    ))
                }
            }
        }
    };
    super::suggest::close(svc, who.user_id).await?;
    // a second tap while this task's dialogue is open asks the open question again (no new
    // extraction)
    if let Some((mut st, raw)) = pending(svc, who.chat_id, who.user_id).await? {
        if st.turn_id == turn.id {
            let said = advance(svc, &mut st, String::new()).await?;
            svc.store
                .kv_swap(&key(who.chat_id, who.user_id), &raw, &to_json(&st))
                .await?;
            return Ok(said);
        }
    }
    let x = match extract::extract(svc, agent, &turn, &calls).await {
        Ok(x) => x,
        Err(err) => {
            return Ok(msg(format!(
                "I couldn't turn that into a routine: {}; nothing was saved.",
                e(&err.0)
            )))
        }
    };
    let suggestion = suggest_name(svc, who.chat_id, &x).await?;
    let mut st = SaveState {
        turn_id: turn.id,
        chat_id: who.chat_id,
        user_id: who.user_id,
        group: who.group,
        stage: Stage::Name,
        name: None,
        suggestion,
        shared: (!who.group).then_some(false),
        confirm: confirm_list(agent, &x),
        extraction: x,
        expires_at: svc.clock.now() + DIALOGUE_TTL,
    };
    let mut lead = String::new();
    if let Some(n) = name.map(str::trim).filter(|n| !n.is_empty()) {
        match check_name(svc, who.chat_id, n).await? {
            Ok(()) => st.name = Some(n.to_string()),
            Err(why) => lead = format!("{}\n", e(&why)),
        }
    }
    let said = advance(svc, &mut st, lead).await?;
    svc.store
        .kv_set(&key(who.chat_id, who.user_id), &to_json(&st))
        .await?;
    tracing::info!(
        chat_id = who.chat_id,
        turn_id = st.turn_id,
        "recorded routine dialogue started"
    );
    Ok(said)
}

fn ran(calls: &[crate::store::ToolCallRow]) -> usize {
    calls
        .iter()
        .filter(|c| c.status == ToolCallStatus::Ran)
        .count()
}

fn to_json(st: &SaveState) -> String {
    serde_json::to_string(st).unwrap_or_default()
}

/// A free, legal name: the extraction's suggestion, else the first tool's name, else either
/// with a number.
async fn suggest_name(svc: &Services, chat_id: i64, x: &Extraction) -> StoreResult<Option<String>> {
    let mut bases: Vec<String> = Vec::new();
    if let Some(s) = x
        .name_suggestion
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    {
        bases.push(model::fix_name(s));
    }
    if let Some(t) = x.tools.first() {
        bases.push(model::fix_name(t));
    }
    let mut candidates = bases.clone();
    for b in &bases {
        for n in 2..5 {
            let mut c = b.clone();
            c.truncate(model::MAX_NAME_LEN - 2);
            candidates.push(format!("{c}_{n}"));
        }
    }
    for c in candidates {
        if check_name(svc, chat_id, &c).await?.is_ok() {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// The name rules (issue 10, item 3): `[a-z0-9_]{1,32}`, not a built-in command, free in
/// `chat_id`. `Err` holds the sentence for the member.
///
/// Errors (outer): storage.
pub async fn check_name(
    svc: &Services,
    chat_id: i64,
    name: &str,
) -> StoreResult<Result<(), String>> {
    if let Err(err) = model::validate_name(name) {
        return Ok(Err(format!(
            "That name won't work: {}.",
            err.to_string().trim_start_matches("name: ")
        )));
    }
    if is_reserved(name) {
        return Ok(Err(format!(
            "That name won't work: /{name} is one of my own commands."
        )));
    }
    if svc.store.routine_by_name(chat_id, name).await?.is_some() {
        return Ok(Err(format!(
            "That name won't work: /{name} is already a routine in {}.",
            if chat_id > 0 {
                "our private chat"
            } else {
                "this group"
            }
        )));
    }
    Ok(Ok(()))
}

/// Ask what is missing next (name → share → preview), updating `st.stage`. `lead` (HTML) comes
/// first, e.g. why the last name was refused.
async fn advance(svc: &Services, st: &mut SaveState, lead: String) -> StoreResult<Said> {
    st.expires_at = svc.clock.now() + DIALOGUE_TTL;
    let Some(name) = st.name.clone() else {
        st.stage = Stage::Name;
        let mut html = format!(
            "{lead}What should I call this routine? It will run as /<i>name</i>: a-z, 0-9 and _, up to 32 characters. Send the name, or /cancel."
        );
        let mut buttons = vec![];
        if let Some(s) = &st.suggestion {
            html.push_str(&format!("\nSuggestion: /{}", e(s)));
            buttons.push(vec![Button {
                label: format!("Call it /{s}"),
                data: Tap::UseName.data(st.turn_id),
            }]);
        }
        return Ok(Said::Message(html, buttons));
    };
    let Some(shared) = st.shared else {
        st.stage = Stage::Share;
        let html = format!(
            "{lead}Share /{} with the group, or keep it just for you (it then runs only in our private chat)?",
            e(&name)
        );
        let buttons = vec![vec![
            Button {
                label: "Share with the group".into(),
                data: Tap::Share.data(st.turn_id),
            },
            Button {
                label: "Just for me".into(),
                data: Tap::Mine.data(st.turn_id),
            },
        ]];
        return Ok(Said::Message(html, buttons));
    };
    // the name must be free where the routine will live
    let target = st.target_chat();
    if !shared {
        ensure_dm(svc, st.user_id).await?;
    }
    if target != st.chat_id {
        if let Err(why) = check_name(svc, target, &name).await? {
            st.name = None;
            return Box::pin(advance(svc, st, format!("{}\n", e(&why)))).await;
        }
    }
    st.stage = Stage::Preview;
    Ok(Said::Message(
        format!("{lead}{}", preview(st)),
        vec![vec![
            Button {
                label: "💾 Save".into(),
                data: Tap::Save.data(st.turn_id),
            },
            Button {
                label: "Cancel".into(),
                data: Tap::Cancel.data(st.turn_id),
            },
        ]],
    ))
}

/// The member's DM chat row (private chat id = user id), created when missing.
async fn ensure_dm(svc: &Services, user_id: i64) -> StoreResult<()> {
    if svc.store.chat(user_id).await?.is_some() {
        return Ok(());
    }
    let title = svc
        .store
        .users(&[user_id])
        .await?
        .into_iter()
        .next()
        .map(|u| u.first_name)
        .unwrap_or_default();
    let zone = svc.config.group.timezone.name();
    svc.store
        .upsert_chat(
            user_id,
            crate::types::ChatKind::Private.as_str(),
            &title,
            zone,
            svc.clock.now(),
        )
        .await?;
    Ok(())
}

/// The tools confirmed before each call: the model's destructive list plus the tools flagged
/// destructive, in the routine's tool order.
pub fn confirm_list(agent: &Agent, x: &Extraction) -> Vec<String> {
    x.tools
        .iter()
        .filter(|t| {
            x.destructive.contains(t) || agent.tools().get(t).is_some_and(|tool| tool.destructive())
        })
        .cloned()
        .collect()
}

/// "/handover — Move {{from}}'s chores to {{to}}. Asks for: from (member), to (member).
/// Confirms before: chore_update." (HTML), and where it will live.
fn preview(st: &SaveState) -> String {
    let x = &st.extraction;
    let asks = if x.params.is_empty() {
        "nothing".to_string()
    } else {
        x.inputs()
            .iter()
            .map(|p| format!("{} ({})", p.name, p.kind.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let confirms = if st.confirm.is_empty() {
        "nothing (it only reads)".to_string()
    } else {
        st.confirm.join(", ")
    };
    let prompt = x.display_prompt();
    let end = if prompt.ends_with(['.', '!', '?']) {
        ""
    } else {
        "."
    };
    format!(
        "<b>/{}</b> — {}{end} Asks for: {}. Confirms before: {}.\n{}\nSave it?",
        e(st.name.as_deref().unwrap_or_default()),
        e(&prompt),
        e(&asks),
        e(&confirms),
        if st.shared == Some(true) {
            "Shared with the group: every member can run it here."
        } else {
            "Personal: only you can run it, in our private chat."
        }
    )
}

/// The member's open dialogue in the chat (an expired one is deleted), with its stored JSON.
async fn pending(
    svc: &Services,
    chat_id: i64,
    user_id: i64,
) -> StoreResult<Option<(SaveState, String)>> {
    let k = key(chat_id, user_id);
    let Some(raw) = svc.store.kv_get(&k).await? else {
        return Ok(None);
    };
    match serde_json::from_str::<SaveState>(&raw) {
        Ok(st) if st.expires_at > svc.clock.now() => Ok(Some((st, raw))),
        _ => {
            svc.store.kv_take(&k, &raw).await?;
            Ok(None)
        }
    }
}

/// The member's next message while a name is asked: the name. `None` when no name is asked of
/// this member here (the message goes on to the other handlers).
///
/// Errors: storage.
pub async fn answer_name(svc: &Services, who: Who, text: &str) -> StoreResult<Option<Said>> {
    let Some((mut st, raw)) = pending(svc, who.chat_id, who.user_id).await? else {
        return Ok(None);
    };
    if st.stage != Stage::Name {
        return Ok(None);
    }
    let name = text.trim().trim_start_matches('/');
    let name = name.split('@').next().unwrap_or(name).trim();
    let lead = match check_name(svc, who.chat_id, name).await? {
        Ok(()) => {
            st.name = Some(name.to_string());
            String::new()
        }
        Err(why) => format!("{}\n", e(&why)),
    };
    let said = advance(svc, &mut st, lead).await?;
    if !svc
        .store
        .kv_swap(&key(who.chat_id, who.user_id), &raw, &to_json(&st))
        .await?
    {
        return Ok(None);
    }
    Ok(Some(said))
}

/// `/cancel` while a dialogue is open: end it. `false` when there was none.
///
/// Errors: storage.
pub async fn cancel(svc: &Services, chat_id: i64, user_id: i64) -> StoreResult<bool> {
    let Some((_, raw)) = pending(svc, chat_id, user_id).await? else {
        return Ok(false);
    };
    svc.store.kv_take(&key(chat_id, user_id), &raw).await
}

/// A tap on a dialogue button (not Start). Only the member whose dialogue it is finds it.
///
/// Errors: storage.
pub async fn tap(svc: &Services, who: Who, tap: Tap, turn_id: i64) -> StoreResult<Said> {
    let Some((mut st, raw)) = pending(svc, who.chat_id, who.user_id)
        .await?
        .filter(|(st, _)| st.turn_id == turn_id)
    else {
        // someone else's dialogue, or an old one
        let theirs = svc
            .store
            .turn(turn_id)
            .await?
            .is_some_and(|t| t.chat_id == who.chat_id && t.actor_id != Some(who.user_id));
        return Ok(Said::Refused(if theirs {
            "Only the member who asked for this can save it as a routine.".into()
        } else {
            STALE.into()
        }));
    };
    let k = key(who.chat_id, who.user_id);
    let said = match (tap, st.stage) {
        (Tap::UseName, Stage::Name) => {
            let Some(s) = st.suggestion.clone() else {
                return Ok(Said::Refused(STALE.into()));
            };
            let lead = match check_name(svc, who.chat_id, &s).await? {
                Ok(()) => {
                    st.name = Some(s);
                    String::new()
                }
                Err(why) => format!("{}\n", e(&why)),
            };
            advance(svc, &mut st, lead).await?
        }
        (Tap::Share | Tap::Mine, Stage::Share) => {
            st.shared = Some(tap == Tap::Share);
            advance(svc, &mut st, String::new()).await?
        }
        (Tap::Cancel, _) => {
            if !svc.store.kv_take(&k, &raw).await? {
                return Ok(Said::Refused(STALE.into()));
            }
            return Ok(msg("Not saved; nothing was stored."));
        }
        (Tap::Save, Stage::Preview) => {
            // taken once: a second tap (or process) finds it gone
            if !svc.store.kv_take(&k, &raw).await? {
                return Ok(Said::Refused(STALE.into()));
            }
            return save(svc, &st).await;
        }
        _ => return Ok(Said::Refused(STALE.into())),
    };
    if !svc.store.kv_swap(&k, &raw, &to_json(&st)).await? {
        return Ok(Said::Refused(STALE.into()));
    }
    Ok(said)
}

/// Store the routine of a finished dialogue (already taken from kv).
async fn save(svc: &Services, st: &SaveState) -> StoreResult<Said> {
    let Some(name) = st.name.as_deref() else {
        return Ok(Said::Refused(STALE.into()));
    };
    let Some(turn) = svc.store.turn(st.turn_id).await? else {
        return Ok(msg("I can't find that task any more; nothing was saved."));
    };
    let calls = svc.store.tool_calls(st.turn_id).await?;
    let target = st.target_chat();
    if target != st.chat_id {
        ensure_dm(svc, st.user_id).await?;
    }
    let document = extract::to_doc(name, &st.extraction, &turn, &calls, st.confirm.clone());
    if svc.store.routine_by_name(target, name).await?.is_some() {
        return Ok(msg(format!(
            "I couldn't save it: /{} is already a routine there; nothing was saved. Tap 💾 Save as routine again to pick another name.",
            e(name)
        )));
    }
    let actor = Actor {
        user_id: st.user_id,
        admin: false,
    };
    match doc::save_doc_from(svc, target, actor, &document, Some(st.turn_id)).await {
        Ok(saved) => {
            tracing::info!(
                chat_id = target,
                routine_id = saved.routine.id,
                turn_id = st.turn_id,
                "recorded routine saved"
            );
            let whereto = if st.shared == Some(true) {
                "Every member can run it here.".to_string()
            } else if st.group {
                "It is personal: run it in our private chat.".to_string()
            } else {
                "It is personal: only you can run it, here.".to_string()
            };
            Ok(msg(format!(
                "Saved: /{} {}",
                e(&saved.routine.name),
                whereto
            )))
        }
        Err(SaveError::Routine(crate::routines::RoutineError::Store(err))) => Err(err),
        Err(other) => Ok(msg(format!(
            "I couldn't save it: {}; nothing was saved.",
            e(&other.to_string())
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_round_trips_and_fits() {
        for t in [
            Tap::Start,
            Tap::UseName,
            Tap::Share,
            Tap::Mine,
            Tap::Save,
            Tap::Cancel,
        ] {
            let d = t.data(i64::MAX);
            assert!(d.len() <= 64, "{d}");
            assert_eq!(parse_data(&d), Some((t, i64::MAX)));
        }
        for bad in ["rsave:", "rsave:0", "rsave:q:1", "rsave:s:-1", "run:go:1"] {
            assert_eq!(parse_data(bad), None, "{bad}");
        }
    }
}
