//! Starting a run by hand (issue 9, item 11): `/<name>` for a routine with a definition takes
//! its initial inputs inline — `/meal_plan vegetarian, no fish` (with a single input free text
//! is the whole value; with several text inputs it fills the first; with several inputs of which
//! some are typed, one word each in order: `/handover bob alice sunday`, `"quoted words"` count
//! as one and the last input takes the rest) or `key=value` pairs
//! (`budget="40 EUR"`, quotes allowed) — and asks for each missing required input in turn
//! ("Dietary preferences? (e.g. vegan)", the input's description and example), answered by the
//! member's next message in that chat (a [`TextHandler`] tried before the agent). Typed inputs
//! (issue 10: member, chore, date, number) are checked by [`super::typed`] when given, inline or
//! answered; a wrong one is asked again with why. `/cancel` stops the questions. Then
//! `runner::start_run` with `started_by` = the member.
//!
//! The state is durable (a `kv` row per chat and member, JSON, see [`AskState`]) and expires
//! after [`ASK_TTL`]: a restart between two answers loses nothing; a question left unanswered
//! lets the member's later messages go to the agent again. Generic over a list of
//! [`InputSpec`]: recorded routines (next issue) reuse [`begin`] with their own inputs.
//!
//! Uses: services (store, clock, outbox), router (traits), routines::{runner, steps}, format.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    runner::{self, StartRun, Started},
    steps::{Definition, InputSpec, InputType},
    RoutineError,
};
use crate::{
    format::escape_html as e,
    router::{Command, CommandCtx, CommandSet, TextCtx, TextHandler},
    services::Services,
    store::{Publication, RoutineRow, RoutineStatus, RunSource, StoreResult},
    types::Outbound,
};

/// How long a question waits for its answer.
pub const ASK_TTL: Duration = Duration::minutes(10);
/// Longest answer kept for one input, in characters.
pub const MAX_ANSWER: usize = 2000;

/// A pending set of questions: stored as JSON under [`key`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AskState {
    pub routine_id: i64,
    pub routine_name: String,
    /// The inputs the run will take (asked ones and defaults are added as they come).
    pub inputs: Vec<InputSpec>,
    /// Values so far.
    pub values: Map<String, Value>,
    /// The input the last question asked for.
    pub asking: String,
    /// UTC.
    pub expires_at: DateTime<Utc>,
}

/// The kv key of member `user_id`'s questions in chat `chat_id`.
pub fn key(chat_id: i64, user_id: i64) -> String {
    format!("run_ask:{chat_id}:{user_id}")
}

/// Split `key=value` pairs (values may be "double" or 'single' quoted). `None` when the text is
/// not pairs (free text).
fn pairs(text: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let k = rest[..eq].trim();
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return None;
        }
        let after = rest[eq + 1..].trim_start();
        let (v, next) = match after.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let end = after[1..].find(q)? + 1;
                (after[1..end].to_string(), &after[end + 1..])
            }
            _ => {
                // up to the next ` word=` (a value may hold spaces and commas)
                let mut cut = after.len();
                let mut idx = 0;
                for w in after.split_whitespace() {
                    let at = after[idx..].find(w).map_or(idx, |p| idx + p);
                    if at > 0
                        && w.split_once('=').is_some_and(|(k, _)| {
                            !k.is_empty()
                                && k.chars()
                                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                        })
                    {
                        cut = at;
                        break;
                    }
                    idx = at + w.len();
                }
                (after[..cut].trim().to_string(), &after[cut..])
            }
        };
        out.push((k.to_ascii_lowercase().replace('-', "_"), v));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    (!out.is_empty()).then_some(out)
}

/// Parse inline inputs for `specs` (see the module): `key=value` pairs naming known inputs, or
/// free text for the first input. Empty text gives no values.
///
/// Errors: [`RoutineError::Invalid`] naming an unknown key and the accepted ones, or free text
/// for a routine without inputs.
pub fn parse_inline(
    specs: &[InputSpec],
    routine: &str,
    text: &str,
) -> Result<Map<String, Value>, RoutineError> {
    let text = text.trim();
    let mut m = Map::new();
    if text.is_empty() {
        return Ok(m);
    }
    let names = || {
        specs
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(ps) = pairs(text) {
        if ps.iter().any(|(k, _)| specs.iter().any(|s| &s.name == k)) || specs.len() != 1 {
            for (k, v) in ps {
                if !specs.iter().any(|s| s.name == k) {
                    return Err(RoutineError::invalid(
                        "input",
                        if specs.is_empty() {
                            format!("{routine} takes no inputs")
                        } else {
                            format!(
                                "'{}' is not an input of {routine}; its inputs are {}",
                                crate::context::clip(&k, 32),
                                names()
                            )
                        },
                    ));
                }
                m.insert(k, Value::String(crate::context::clip(&v, MAX_ANSWER)));
            }
            return Ok(m);
        }
    }
    match specs.first() {
        // several inputs of which some are typed (member, chore, date, number: issue 10, item 5):
        // one word each, in order ("bob alice sunday"; "quoted words" are one; the last input
        // takes the rest). Text-only inputs keep issue 9's rule (the text fills the first).
        Some(_) if specs.len() > 1 && specs.iter().any(|s| s.kind != InputType::Text) => {
            let words = positional(text, specs.len());
            for (spec, w) in specs.iter().zip(words) {
                m.insert(spec.name.clone(), Value::String(clip_answer(&w)));
            }
            Ok(m)
        }
        Some(first) => {
            m.insert(first.name.clone(), Value::String(clip_answer(text)));
            Ok(m)
        }
        None => Err(RoutineError::invalid(
            "input",
            format!("{routine} takes no inputs; send /{routine} alone"),
        )),
    }
}

/// `text` as at most `n` values: whitespace-separated words ("double quoted" words are one),
/// the last value taking the rest of the text.
fn positional(text: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() && out.len() + 1 < n {
        let (word, next) = match rest.strip_prefix('"').and_then(|r| r.split_once('"')) {
            Some((w, next)) => (w, next),
            None => rest.split_once(char::is_whitespace).unwrap_or((rest, "")),
        };
        out.push(word.trim().to_string());
        rest = next.trim_start();
    }
    if !rest.is_empty() {
        let r = rest.trim();
        let r = r
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .unwrap_or(r);
        out.push(r.to_string());
    }
    out
}

fn clip_answer(s: &str) -> String {
    super::progress::clip_block(s, MAX_ANSWER)
}

/// The first required input without a value (defaults count as values).
fn next_missing<'a>(specs: &'a [InputSpec], values: &Map<String, Value>) -> Option<&'a InputSpec> {
    specs
        .iter()
        .find(|s| s.required && s.default.is_none() && !values.contains_key(&s.name))
}

/// The question for `spec`: its description, else "What is <name>?", with the input's example
/// ("e.g. Bob"); after a wrong answer, `why` first ("I don't know a member called 'bobby' here —
/// whose chores?").
fn question(st: &AskState, spec: &InputSpec, why: Option<&str>) -> String {
    let required = st.inputs.iter().filter(|s| s.required).count();
    let mut q = if spec.description.trim().is_empty() {
        format!("What is {}?", spec.name.replace('_', " "))
    } else {
        spec.description.trim().to_string()
    };
    if let Some(why) = why {
        let mut c = q.chars();
        let lowered = match c.next() {
            Some(f) => f.to_lowercase().chain(c).collect(),
            None => q.clone(),
        };
        q = format!("{why} — {lowered}");
    }
    if let Some(ex) = spec.example.as_deref().filter(|x| !x.trim().is_empty()) {
        q = format!("{q} (e.g. {})", crate::context::clip(ex.trim(), 60));
    }
    format!(
        "<b>{}</b> · {} ({}/{}): {}\nAnswer with your next message, or /cancel.",
        e(&st.routine_name),
        e(&spec.name),
        st.values.len().min(required.saturating_sub(1)) + 1,
        required.max(1),
        e(&q)
    )
}

/// Who starts the run and where.
#[derive(Debug, Clone, Copy)]
pub struct Asker {
    pub chat_id: i64,
    pub user_id: i64,
}

/// `/<name> [inputs]` for a routine with a definition: start now when every required input is
/// given, else store the questions and ask the first. Returns the reply (HTML); `None` when the
/// routine has no definition (a single-prompt routine: the caller runs it as before).
///
/// Errors: bad inline inputs, what `start_run` refuses, storage.
pub async fn start(
    svc: &Services,
    who: Asker,
    r: &RoutineRow,
    args: &str,
) -> Option<Result<String, RoutineError>> {
    let def: Definition = serde_json::from_str(r.definition.as_deref()?).ok()?;
    // refuse before asking anything: a draft or an ended routine would not start anyway
    if r.publication == Publication::Draft {
        return Some(Err(RoutineError::invalid(
            "name",
            format!("'{}' is a draft; it runs once it is published", r.name),
        )));
    }
    if r.status == RoutineStatus::Ended {
        return Some(Err(RoutineError::invalid(
            "name",
            format!("'{}' has ended; create it again to run it", r.name),
        )));
    }
    Some(
        match begin(svc, who, r.id, &r.name, def.inputs, args).await {
            Err(RoutineError::Store(err)) => Err(RoutineError::Store(err)),
            // the member's words, as `/run_*` say them ("no run 12 …", not "run: no run 12 …")
            Err(other) => Ok(e(&super::runs::user_message(&other))),
            ok => ok,
        },
    )
}

/// Start a run of routine `routine_id` with `specs` as its inputs, asking what `args` leaves
/// missing (see [`start`]). The reusable entry point (recorded routines call it too).
///
/// Errors: bad inline inputs, what `start_run` refuses, storage.
pub async fn begin(
    svc: &Services,
    who: Asker,
    routine_id: i64,
    routine_name: &str,
    specs: Vec<InputSpec>,
    args: &str,
) -> Result<String, RoutineError> {
    let mut values = parse_inline(&specs, routine_name, args)?;
    // typed inputs are checked now; the first wrong one is asked again with why
    let mut wrong: Option<(InputSpec, String)> = None;
    for spec in &specs {
        let Some(raw) = values
            .get(&spec.name)
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            continue;
        };
        match super::typed::check(svc, who.chat_id, spec, &raw).await? {
            Ok(v) => {
                values.insert(spec.name.clone(), Value::String(v));
            }
            Err(why) => {
                values.remove(&spec.name);
                if wrong.is_none() {
                    wrong = Some((spec.clone(), why));
                }
            }
        }
    }
    let mut st = AskState {
        routine_id,
        routine_name: routine_name.to_string(),
        inputs: specs,
        values,
        asking: String::new(),
        expires_at: svc.clock.now() + ASK_TTL,
    };
    let k = key(who.chat_id, who.user_id);
    let (ask, why) = match wrong {
        Some((spec, why)) => (Some(spec), Some(why)),
        None => (next_missing(&st.inputs, &st.values).cloned(), None),
    };
    match ask {
        None => {
            svc.store.kv_delete(&k).await?;
            launch(svc, who, &st).await
        }
        Some(spec) => {
            st.asking = spec.name.clone();
            let json = serde_json::to_string(&st).unwrap_or_default();
            svc.store.kv_set(&k, &json).await?;
            Ok(question(&st, &spec, why.as_deref()))
        }
    }
}

/// Start the run with the collected values.
async fn launch(svc: &Services, who: Asker, st: &AskState) -> Result<String, RoutineError> {
    let started = runner::start_run(
        svc,
        StartRun {
            routine_id: st.routine_id,
            source: RunSource::Manual,
            trigger_id: None,
            started_by: who.user_id,
            inputs: st.values.clone(),
            scheduled_for: None,
            catch_up: false,
            parent_run_id: None,
            depth: 0,
        },
    )
    .await?;
    tracing::info!(routine_id = st.routine_id, "run started by hand");
    if matches!(started, Started::Run(_)) {
        svc.run_started.notify_one(); // the engine sweeps now, not at its next tick
    }
    Ok(match started {
        Started::Run(id) => format!(
            "Started run {id} of <b>{}</b>. /run_show {id} shows it; /run_cancel {id} stops it.",
            e(&st.routine_name)
        ),
        Started::Skipped(_, reason) => format!(
            "<b>{}</b> did not start: {}.",
            e(&st.routine_name),
            e(&reason)
        ),
    })
}

/// The member's pending questions in the chat (expired ones are deleted and not returned),
/// with the stored JSON (for the compare-and-delete).
async fn pending(svc: &Services, who: Asker) -> StoreResult<Option<(AskState, String)>> {
    let k = key(who.chat_id, who.user_id);
    let Some(raw) = svc.store.kv_get(&k).await? else {
        return Ok(None);
    };
    match serde_json::from_str::<AskState>(&raw) {
        Ok(st) if st.expires_at > svc.clock.now() => Ok(Some((st, raw))),
        _ => {
            svc.store.kv_take(&k, &raw).await?;
            Ok(None)
        }
    }
}

/// Take `text` as the answer to the pending question; returns the reply, `None` when the member
/// has no pending question here (or another process took this answer).
///
/// Errors: what `start_run` refuses (the questions are over either way), storage.
pub async fn answer(
    svc: &Services,
    who: Asker,
    text: &str,
) -> Result<Option<String>, RoutineError> {
    let Some((mut st, raw)) = pending(svc, who).await? else {
        return Ok(None);
    };
    let k = key(who.chat_id, who.user_id);
    let answer = clip_answer(text);
    if let Some(spec) = st.inputs.iter().find(|s| s.name == st.asking).cloned() {
        match super::typed::check(svc, who.chat_id, &spec, &answer).await? {
            Ok(v) => {
                st.values.insert(st.asking.clone(), Value::String(v));
            }
            Err(why) => {
                // asked again, with why; the questions stay open
                st.expires_at = svc.clock.now() + ASK_TTL;
                let next = serde_json::to_string(&st).unwrap_or_default();
                if !svc.store.kv_swap(&k, &raw, &next).await? {
                    return Ok(None);
                }
                return Ok(Some(question(&st, &spec, Some(&why))));
            }
        }
    } else {
        st.values.insert(st.asking.clone(), Value::String(answer));
    }
    // one answer is taken once: the stored state must still be the one we read (a duplicate
    // delivery or a second process finds it changed and declines)
    match next_missing(&st.inputs, &st.values).cloned() {
        None => {
            if !svc.store.kv_take(&k, &raw).await? {
                return Ok(None);
            }
            launch(svc, who, &st).await.map(Some)
        }
        Some(spec) => {
            st.asking = spec.name.clone();
            st.expires_at = svc.clock.now() + ASK_TTL;
            let next = serde_json::to_string(&st).unwrap_or_default();
            if !svc.store.kv_swap(&k, &raw, &next).await? {
                return Ok(None);
            }
            Ok(Some(question(&st, &spec, None)))
        }
    }
}

/// Stop the member's questions; the routine's name when there were any.
///
/// Errors: storage.
pub async fn cancel(svc: &Services, who: Asker) -> StoreResult<Option<String>> {
    let Some((st, raw)) = pending(svc, who).await? else {
        return Ok(None);
    };
    if !svc
        .store
        .kv_take(&key(who.chat_id, who.user_id), &raw)
        .await?
    {
        return Ok(None);
    }
    Ok(Some(st.routine_name))
}

/// The member's next message answers their pending question (before chores, approvals and the
/// agent). Declines (false, nothing sent) when there is none.
pub struct AskReplies;

#[async_trait::async_trait]
impl TextHandler for AskReplies {
    fn name(&self) -> &'static str {
        "run_inputs"
    }

    async fn handle(&self, svc: &Services, msg: &TextCtx<'_>) -> StoreResult<bool> {
        let who = Asker {
            chat_id: msg.chat.id,
            user_id: msg.from.id,
        };
        let html = match answer(svc, who, msg.text).await {
            Ok(None) => return Ok(false),
            Ok(Some(h)) => h,
            Err(RoutineError::Store(err)) => return Err(err),
            Err(other) => e(&super::runs::user_message(&other)),
        };
        if let Err(err) = svc.outbox.send(msg.reply(html)).await {
            tracing::warn!(chat_id = msg.chat.id, error = %err, "input question not sent");
        }
        Ok(true)
    }
}

/// `/cancel` while questions are pending stops them (a hidden command tried before the
/// workflow commands' `/cancel`, which it leaves alone otherwise).
pub struct AskCancel;

#[async_trait::async_trait]
impl CommandSet for AskCancel {
    fn menu(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    async fn handle(
        &self,
        svc: &Services,
        ctx: &CommandCtx<'_>,
        cmd: &Command,
    ) -> Option<anyhow::Result<()>> {
        if cmd.name != "cancel" || !cmd.args.trim().is_empty() {
            return None;
        }
        let who = Asker {
            chat_id: ctx.chat.id,
            user_id: ctx.from.id,
        };
        let name = match cancel(svc, who).await {
            Ok(Some(n)) => n,
            Ok(None) => return None,
            Err(err) => return Some(Err(err.into())),
        };
        let html = format!("Stopped: <b>{}</b> was not started.", e(&name));
        Some(
            svc.outbox
                .send(Outbound {
                    reply_to: ctx.reply_to,
                    ..Outbound::html(ctx.chat.id, html)
                })
                .await
                .map(|_| ())
                .map_err(Into::into),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(name: &str) -> InputSpec {
        InputSpec {
            name: name.into(),
            description: String::new(),
            required: true,
            default: None,
            kind: Default::default(),
            example: None,
        }
    }

    #[test]
    fn inline_inputs() {
        let one = [spec("preferences")];
        let two = [spec("bills"), spec("note")];
        let v = parse_inline(&one, "meal_plan", "vegetarian, no fish").unwrap();
        assert_eq!(v["preferences"], "vegetarian, no fish");
        // a single input takes the whole text, even with '=' in it
        let v = parse_inline(&one, "meal_plan", "a=b please").unwrap();
        assert_eq!(v["preferences"], "a=b please");
        let v = parse_inline(&one, "meal_plan", "preferences=vegan").unwrap();
        assert_eq!(v["preferences"], "vegan");
        let v = parse_inline(
            &two,
            "bills",
            r#"bills="rent 900, power 80" note=split evenly"#,
        )
        .unwrap();
        assert_eq!(v["bills"], "rent 900, power 80");
        assert_eq!(v["note"], "split evenly");
        let v = parse_inline(&two, "bills", "bills=rent 900, power 80 note='x y'").unwrap();
        assert_eq!(v["bills"], "rent 900, power 80");
        assert_eq!(v["note"], "x y");
        let err = parse_inline(&two, "bills", "budget=3")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "input: 'budget' is not an input of bills; its inputs are bills, note"
        );
        // several text inputs: free text fills the first
        let v = parse_inline(&two, "bills", "rent 900").unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v["bills"], "rent 900");
        // several inputs, some typed: one word each in order, the last takes the rest
        let typed = |name: &str, kind| InputSpec { kind, ..spec(name) };
        let two = [typed("who", InputType::Member), spec("note")];
        let v = parse_inline(&two, "x", "bob").unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v["who"], "bob");
        let v = parse_inline(&two, "x", "bob split evenly").unwrap();
        assert_eq!(
            (&v["who"], &v["note"]),
            (&json!("bob"), &json!("split evenly"))
        );
        let three = [
            typed("from", InputType::Member),
            typed("to", InputType::Member),
            typed("until", InputType::Date),
        ];
        let v = parse_inline(&three, "handover", "bob \"Ann Lee\" next sunday").unwrap();
        assert_eq!(v["from"], "bob");
        assert_eq!(v["to"], "Ann Lee");
        assert_eq!(v["until"], "next sunday");
        assert!(parse_inline(&[], "x", "hello").is_err());
        assert!(parse_inline(&[], "x", "").unwrap().is_empty());
    }
}
