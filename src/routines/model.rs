//! The routine model's rules: names, triggers (parse, stored form, next fire, description),
//! state (deep merge, 2 KB limit), event filters and prompt placeholders.
//!
//! Pure functions only: no I/O, no clock reads (callers pass `now`). Time math comes from
//! [`crate::schedule`]; every error names the field and the rule it broke.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use super::RoutineError;
use crate::{
    events::HearthEvent,
    schedule::{format_duration, parse_at, parse_every, parse_zone, CronSpec},
    store::TriggerKind,
};

/// Longest routine name, in characters.
pub const MAX_NAME_LEN: usize = 32;
/// Longest prompt template, in characters.
pub const MAX_PROMPT_CHARS: usize = 2000;
/// Triggers per routine (at least one).
pub const MAX_TRIGGERS: usize = 4;
/// Largest state, in bytes of compact JSON.
pub const MAX_STATE_BYTES: usize = 2048;
/// Highest `max_runs_per_day` (one run every 30 s for a day).
pub const MAX_RUNS_PER_DAY: i64 = 2880;
/// Highest `max_ticks`.
pub const MAX_TICKS: i64 = 1_000_000;
/// A one-off fired later than this after its time is recorded as a catch-up (hearth was down).
pub const LATE_GRACE: chrono::Duration = chrono::Duration::seconds(60);

/// Event kinds a trigger may name, with the fields its filters may test.
pub const EVENT_KINDS: &[(&str, &[&str])] = &[
    (
        "workflow_created",
        &["workflow_id", "workflow_type", "title", "requester_id"],
    ),
    (
        "workflow_resolved",
        &[
            "workflow_id",
            "workflow_type",
            "title",
            "status",
            "resolver_id",
        ],
    ),
    (
        "workflow_expired",
        &["workflow_id", "workflow_type", "title"],
    ),
    ("chore_overdue", &["chore_id", "title", "assignee_id"]),
    ("member_joined", &["user_id", "name"]),
    ("run_completed", &["routine", "run_id"]),
    ("run_failed", &["routine", "run_id", "reason"]),
];

/// Whether `b` may appear in a routine name: the characters of a Telegram bot command
/// (`a-z`, `0-9`, `_`; Bot API `BotCommand.command`), so every routine is also `/name`.
fn name_byte_ok(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
}

/// The legal name closest to `name`: lower-cased, every run of other characters ('-', spaces,
/// accents…) becomes one `_`, `_` trimmed at both ends, at most [`MAX_NAME_LEN`] bytes;
/// `"routine"` when nothing is left. `"Morning-Briefing"` → `"morning_briefing"`. The migration
/// `m20261130_000008_routine_names` applies the same rule to stored names.
pub fn fix_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii() && name_byte_ok(c as u8) {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.truncate(MAX_NAME_LEN);
    let out = out.trim_matches('_').to_string();
    if out.is_empty() {
        "routine".into()
    } else {
        out
    }
}

/// Check a routine name against `^[a-z0-9_]{1,32}$` (a Telegram command, so `/name` runs it).
///
/// Errors: `name: '<given>' can't be a Telegram command: use 1-32 characters of a-z, 0-9 and
/// _, e.g. '<fix_name(given)>'`.
pub fn validate_name(name: &str) -> Result<(), RoutineError> {
    let ok = !name.is_empty() && name.len() <= MAX_NAME_LEN && name.bytes().all(name_byte_ok);
    if ok {
        Ok(())
    } else {
        Err(RoutineError::invalid(
            "name",
            format!(
                "'{}' can't be a Telegram command: use 1-32 characters of a-z, 0-9 and _, e.g. '{}'",
                crate::context::clip(name, 40),
                fix_name(name)
            ),
        ))
    }
}

/// A name made from the prompt's first words: `"Post today's chores!"` → `"post_todays_chores"`.
/// Always valid; `"routine"` when the prompt has no latin letters or digits.
pub fn name_from_prompt(prompt: &str) -> String {
    let mut out = String::new();
    let words = prompt
        .split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_lowercase()
        })
        .filter(|w| !w.is_empty() && !w.starts_with('{'))
        .take(4);
    for w in words {
        let extra = if out.is_empty() { w.len() } else { w.len() + 1 };
        if out.len() + extra > MAX_NAME_LEN {
            break;
        }
        if !out.is_empty() {
            out.push('_');
        }
        out.push_str(&w);
    }
    if out.is_empty() {
        "routine".into()
    } else {
        out
    }
}

/// Check the prompt template: 1 to 2000 characters after trimming.
pub fn validate_prompt(prompt: &str) -> Result<(), RoutineError> {
    let n = prompt.trim().chars().count();
    if n == 0 {
        return Err(RoutineError::invalid("prompt", "is missing"));
    }
    if n > MAX_PROMPT_CHARS {
        return Err(RoutineError::invalid(
            "prompt",
            format!("is {n} characters; the limit is {MAX_PROMPT_CHARS}"),
        ));
    }
    Ok(())
}

/// Check an optional positive limit (`max_ticks`, `max_runs_per_day`) against `1..=max`.
pub fn validate_limit(field: &str, v: Option<i64>, max: i64) -> Result<Option<i32>, RoutineError> {
    match v {
        None => Ok(None),
        Some(n) if (1..=max).contains(&n) => Ok(Some(n as i32)),
        Some(n) => Err(RoutineError::invalid(
            field,
            format!("{n} is out of range; it must be 1 to {max}"),
        )),
    }
}

/// The rule for a word after a cron expression being its zone: an IANA-style name with a '/'
/// ("Europe/London") or "UTC". Anything else is not a zone (in `/cron` it starts the prompt).
pub fn looks_like_zone(w: &str) -> bool {
    w.contains('/') || w.eq_ignore_ascii_case("utc")
}

/// One trigger, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerSpec {
    /// Every `Duration` (30 s..=24 h), re-anchored from each fire time.
    Every(Duration),
    /// A 5-field cron expression evaluated in `zone`.
    Cron { spec: CronSpec, zone: Tz },
    /// A one-off instant (UTC); spent after it fires.
    At(DateTime<Utc>),
    /// A hearth event of `kind`, with `key=value` filters that must all match.
    Event {
        kind: String,
        filters: Vec<(String, String)>,
    },
    /// `POST /routines/{id}/trigger`; `args`: the JSON body reaches `{apiArgs}`.
    Api { args: bool },
    /// A fact of the chat crossing a threshold, evaluated each minute (`when overdue > 3`).
    Condition(super::conditions::Condition),
}

/// The trigger grammar, for error messages and tool descriptions.
pub const TRIGGER_HELP: &str = "'every 30m', 'cron 0 8 * * 1-5 [Zone/Name]', 'at tomorrow 09:00', 'event chore_overdue [key=value]', 'when overdue > 3', 'when a chore overdue 4h', 'api' or 'api args'";

impl TriggerSpec {
    /// Parse a trigger string: `every <interval>`, `cron <5 fields> [IANA zone]`, `at <when>`,
    /// `event <kind> [key=value …]`, `api [args]`; a bare interval (`30m`) means `every`.
    /// `now` (UTC) anchors relative one-off times; `zone` is the default zone for `cron` and the
    /// zone naive `at` times are read in.
    ///
    /// Errors name the part and the rule, e.g. `trigger: interval: 10s is too short; the minimum is 30s`.
    pub fn parse(s: &str, now: DateTime<Utc>, zone: Tz) -> Result<TriggerSpec, RoutineError> {
        let s = s.trim();
        let (head, rest) = match s.find(char::is_whitespace) {
            Some(i) => (&s[..i], s[i..].trim()),
            None => (s, ""),
        };
        let sched =
            |e: crate::schedule::ScheduleError| RoutineError::invalid("trigger", e.to_string());
        match head.to_ascii_lowercase().as_str() {
            "every" | "each" => Ok(TriggerSpec::Every(parse_every(s).map_err(sched)?)),
            "cron" => {
                let fields: Vec<&str> = rest.split_whitespace().collect();
                // a sixth word that looks like a zone name ("Europe/London", "UTC") is the zone
                let zone_like =
                    |w: &str| w.contains('/') || w.starts_with(|c: char| c.is_ascii_uppercase());
                let (expr, zone) = if fields.len() == 6 && zone_like(fields[5]) {
                    (fields[..5].join(" "), parse_zone(fields[5]).map_err(sched)?)
                } else {
                    (rest.to_string(), zone)
                };
                Ok(TriggerSpec::Cron {
                    spec: CronSpec::parse(&expr).map_err(sched)?,
                    zone,
                })
            }
            "at" => Ok(TriggerSpec::At(parse_at(rest, now, zone).map_err(sched)?)),
            "when" | "condition" if super::conditions::looks_like(rest) => Ok(
                TriggerSpec::Condition(super::conditions::Condition::parse(rest)?),
            ),
            "event" | "on" | "when" => parse_event(rest),
            "api" | "webhook" => match rest.to_ascii_lowercase().as_str() {
                "" => Ok(TriggerSpec::Api { args: false }),
                "args" | "with args" => Ok(TriggerSpec::Api { args: true }),
                other => Err(RoutineError::invalid(
                    "trigger",
                    format!(
                        "'api {}' is not understood; write 'api' or 'api args'",
                        crate::context::clip(other, 40)
                    ),
                )),
            },
            "" => Err(RoutineError::invalid(
                "trigger",
                format!("is missing; use one of {TRIGGER_HELP}"),
            )),
            _ => parse_every(s).map(TriggerSpec::Every).map_err(|_| {
                RoutineError::invalid(
                    "trigger",
                    format!(
                        "'{}' must start with every, cron, at, event, when or api, e.g. {TRIGGER_HELP}",
                        crate::context::clip(s, 40)
                    ),
                )
            }),
        }
    }

    /// The stored kind.
    pub fn kind(&self) -> TriggerKind {
        match self {
            TriggerSpec::Every(_) => TriggerKind::Every,
            TriggerSpec::Cron { .. } => TriggerKind::Cron,
            TriggerSpec::At(_) => TriggerKind::At,
            TriggerSpec::Event { .. } => TriggerKind::Event,
            TriggerSpec::Api { .. } => TriggerKind::Api,
            TriggerSpec::Condition(_) => TriggerKind::Condition,
        }
    }

    /// The stored `spec` column (see [`TriggerSpec::from_stored`]).
    pub fn stored_spec(&self) -> String {
        match self {
            TriggerSpec::Every(d) => d.as_secs().to_string(),
            TriggerSpec::Cron { spec, .. } => spec.as_str().to_string(),
            TriggerSpec::At(t) => t.to_rfc3339(),
            TriggerSpec::Event { kind, filters } => {
                let mut s = kind.clone();
                for (k, v) in filters {
                    s.push_str(&format!(" {k}={v}"));
                }
                s
            }
            TriggerSpec::Api { args } => if *args { "args" } else { "" }.to_string(),
            TriggerSpec::Condition(c) => c.stored(),
        }
    }

    /// Rebuild from the stored kind, spec and zone.
    ///
    /// Errors: a row this version cannot read (the sweep then retires the trigger).
    pub fn from_stored(
        kind: TriggerKind,
        spec: &str,
        zone: &str,
    ) -> Result<TriggerSpec, RoutineError> {
        let bad =
            || RoutineError::invalid("trigger", format!("stored {kind} '{spec}' is unreadable"));
        let tz: Tz = zone.parse().map_err(|_| bad())?;
        Ok(match kind {
            TriggerKind::Every => {
                TriggerSpec::Every(Duration::from_secs(spec.parse().map_err(|_| bad())?))
            }
            TriggerKind::Cron => TriggerSpec::Cron {
                spec: CronSpec::parse(spec).map_err(|_| bad())?,
                zone: tz,
            },
            TriggerKind::At => TriggerSpec::At(
                DateTime::parse_from_rfc3339(spec)
                    .map_err(|_| bad())?
                    .with_timezone(&Utc),
            ),
            TriggerKind::Event => parse_event(spec)?,
            TriggerKind::Api => TriggerSpec::Api {
                args: spec == "args",
            },
            TriggerKind::Condition => TriggerSpec::Condition(
                super::conditions::Condition::from_stored(spec).ok_or_else(bad)?,
            ),
        })
    }

    /// The zone stored with the trigger (`cron` carries its own; others use the routine's).
    pub fn zone_or(&self, routine_zone: Tz) -> Tz {
        match self {
            TriggerSpec::Cron { zone, .. } => *zone,
            _ => routine_zone,
        }
    }

    /// The first fire (UTC) for a trigger created at `now`; `None` for event and api triggers.
    pub fn first_fire(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            TriggerSpec::At(t) => Some(*t),
            _ => self.next_after(now),
        }
    }

    /// The next slot strictly after `t` (UTC): `t + interval` for `every`, the cron's next match
    /// in its zone for `cron`; `None` for the others (a one-off has no next slot).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            TriggerSpec::Every(d) => chrono::Duration::from_std(*d).ok().map(|d| t + d),
            TriggerSpec::Cron { spec, zone } => spec.next_after(t, *zone),
            _ => None,
        }
    }

    /// Advance a claimed slot `old` fired at `now`: returns (`next_fire_at`, catch-up?).
    ///
    /// The rule (one function for it): `every` re-anchors from the fire time (`now + interval`);
    /// `cron` takes the next match after `now`; so after downtime the missed slots collapse into
    /// one run. It is a catch-up when a later slot than `old` had also passed (`every`, `cron`)
    /// or, for a one-off, when it fires more than [`LATE_GRACE`] late. A one-off is then spent.
    pub fn advance(&self, old: DateTime<Utc>, now: DateTime<Utc>) -> (Option<DateTime<Utc>>, bool) {
        match self {
            TriggerSpec::At(_) => (None, now - old > LATE_GRACE),
            _ => {
                let catch_up = self.next_after(old).is_some_and(|s| s <= now);
                (self.next_after(now), catch_up)
            }
        }
    }

    /// Human form, e.g. "every 30m", "cron 0 8 * * 1-5 (Europe/London)", "at 2026-12-01 09:00 UTC".
    pub fn describe(&self, routine_zone: Tz) -> String {
        match self {
            TriggerSpec::Every(d) => format!("every {}", format_duration(*d)),
            TriggerSpec::Cron { spec, zone } => format!("cron {} ({})", spec.as_str(), zone.name()),
            TriggerSpec::At(t) => format!(
                "at {} {}",
                t.with_timezone(&routine_zone).format("%Y-%m-%d %H:%M"),
                routine_zone.name()
            ),
            TriggerSpec::Event { .. } => format!("event {}", self.stored_spec()),
            TriggerSpec::Api { args } => if *args { "api (args)" } else { "api" }.to_string(),
            TriggerSpec::Condition(c) => c.describe(),
        }
    }

    /// True when `ev` fires this (event) trigger: same kind and every filter equal
    /// (case-insensitive; numbers compared as text).
    pub fn matches_event(&self, ev: &HearthEvent) -> bool {
        let TriggerSpec::Event { kind, filters } = self else {
            return false;
        };
        if kind != ev.kind() {
            return false;
        }
        let v = serde_json::to_value(ev).unwrap_or(Value::Null);
        filters.iter().all(|(k, want)| {
            let got = match v.get(k) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => "none".into(),
                Some(other) => other.to_string(),
            };
            got.eq_ignore_ascii_case(want)
        })
    }
}

/// `chore_overdue assignee_id=4` → kind and filters, checked against [`EVENT_KINDS`].
fn parse_event(s: &str) -> Result<TriggerSpec, RoutineError> {
    let mut parts = s.split_whitespace();
    let kinds = || {
        EVENT_KINDS
            .iter()
            .map(|(k, _)| *k)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(kind) = parts.next() else {
        return Err(RoutineError::invalid(
            "trigger",
            format!("event needs a kind: one of {}", kinds()),
        ));
    };
    let kind = kind.to_ascii_lowercase().replace('-', "_");
    let Some((_, fields)) = EVENT_KINDS.iter().find(|(k, _)| *k == kind) else {
        return Err(RoutineError::invalid(
            "trigger",
            format!(
                "event '{}' is unknown; use one of {}",
                crate::context::clip(&kind, 40),
                kinds()
            ),
        ));
    };
    let mut filters = Vec::new();
    for p in parts {
        let Some((k, v)) = p.split_once('=') else {
            return Err(RoutineError::invalid(
                "trigger",
                format!(
                    "event filter '{}' must be key=value",
                    crate::context::clip(p, 40)
                ),
            ));
        };
        let k = k.to_ascii_lowercase();
        if !fields.contains(&k.as_str()) || v.is_empty() {
            return Err(RoutineError::invalid(
                "trigger",
                format!(
                    "event filter '{}' must be key=value with key one of {}",
                    crate::context::clip(p, 40),
                    fields.join(", ")
                ),
            ));
        }
        filters.push((k, v.to_string()));
    }
    Ok(TriggerSpec::Event { kind, filters })
}

/// Deep-merge `patch` into the state `current` (both JSON objects): objects merge key by key,
/// `null` removes a key, anything else replaces. Returns the merged compact JSON.
///
/// Errors: `patch` is not an object; the result is over [`MAX_STATE_BYTES`] (then nothing
/// changes: the caller keeps `current`).
pub fn merge_state(current: &str, patch: &Value) -> Result<String, RoutineError> {
    if !patch.is_object() {
        return Err(RoutineError::invalid("state", "must be a JSON object"));
    }
    let mut base: Value =
        serde_json::from_str(current).unwrap_or(Value::Object(Default::default()));
    if !base.is_object() {
        base = Value::Object(Default::default());
    }
    merge_value(&mut base, patch);
    let out = base.to_string();
    if out.len() > MAX_STATE_BYTES {
        return Err(RoutineError::invalid(
            "state",
            format!(
                "would be {} bytes after the merge; the limit is {MAX_STATE_BYTES} bytes, so nothing was changed",
                out.len()
            ),
        ));
    }
    Ok(out)
}

fn merge_value(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else if let Some(slot) = b.get_mut(k) {
                    if slot.is_object() && v.is_object() {
                        merge_value(slot, v);
                    } else {
                        *slot = v.clone();
                    }
                } else {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// Values for the prompt placeholders.
#[derive(Debug, Clone, Default)]
pub struct PromptVars {
    /// `{date}`: local date, e.g. "Mon 2026-11-23".
    pub date: String,
    /// `{time}`: local time, e.g. "08:00".
    pub time: String,
    /// `{tickCount}`: the number of this run (1-based).
    pub tick_count: i64,
    /// `{state}`: the state JSON.
    pub state: String,
    /// `{apiArgs}`: the api body JSON, or empty.
    pub api_args: String,
    /// `{event}`: the event JSON, or empty.
    pub event: String,
}

/// The placeholders a prompt may use, as minijinja variables: `{{ date }}`, `{{ time }}`,
/// `{{ tickCount }}`, `{{ state }}`, `{{ apiArgs }}`, `{{ event }}`.
pub const PLACEHOLDERS: &[&str] = &["date", "time", "tickCount", "state", "apiArgs", "event"];

/// Template instructions one prompt render may execute (minijinja fuel): far above any prompt
/// (a 2,000-character prompt with a loop over the state uses a few hundred), low enough that a
/// runaway loop stops in milliseconds.
const PROMPT_FUEL: u64 = 20_000;

/// The environment prompts render in: no HTML escaping (prompts are text for the model),
/// unknown variables are errors, [`PROMPT_FUEL`] per render.
fn env() -> &'static minijinja::Environment<'static> {
    static ENV: std::sync::OnceLock<minijinja::Environment<'static>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_fuel(Some(PROMPT_FUEL));
        env.set_keep_trailing_newline(true);
        env
    })
}

/// Rewrite the first syntax, a known placeholder in single braces (`{date}`), as minijinja's
/// `{{ date }}`, in one left-to-right pass over the template only (never over values).
/// `{{ … }}`, `{% … %}` and `{# … #}` are copied as written; other braces (`{other}`) stay.
/// Routines created before minijinja are rewritten by the migration
/// `m20261130_000008_routine_names`; commands and tools still accept the single-brace form.
pub fn normalize_prompt(template: &str) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let close = match rest.as_bytes().get(1) {
            Some(b'{') => Some("}}"),
            Some(b'%') => Some("%}"),
            Some(b'#') => Some("#}"),
            _ => None,
        };
        if let Some(close) = close {
            // a jinja tag: copied through its end (or to the end of the text)
            let end = rest[2..]
                .find(close)
                .map_or(rest.len(), |j| j + 2 + close.len());
            out.push_str(&rest[..end]);
            rest = &rest[end..];
            continue;
        }
        match PLACEHOLDERS
            .iter()
            .find(|p| rest[1..].starts_with(**p) && rest[1 + p.len()..].starts_with('}'))
        {
            Some(p) => {
                out.push_str(&format!("{{{{ {p} }}}}"));
                rest = &rest[p.len() + 2..];
            }
            None => {
                out.push('{');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Text that renders as itself, for putting a member's words into a template
/// (`oneoff-reminder`): every `{` becomes `{{ "{" }}`, so nothing in it starts a tag.
pub fn literal(text: &str) -> String {
    text.replace('{', "{{ \"{\" }}")
}

/// Check a (normalized) prompt template: it parses, names only [`PLACEHOLDERS`], and renders
/// within the fuel with sample values.
///
/// Errors: `prompt: …` naming the template error or the unknown placeholder.
pub fn validate_template(template: &str) -> Result<(), RoutineError> {
    let t = env().template_from_str(template).map_err(|e| {
        RoutineError::invalid(
            "prompt",
            format!(
                "has a template error: {e}; placeholders are written {{{{ date }}}}, and a literal '{{{{' as {{{{ \"{{{{\" }}}}"
            ),
        )
    })?;
    let mut unknown: Vec<String> = t
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !PLACEHOLDERS.contains(&v.as_str()))
        .filter(|v| !env().globals().any(|(g, _)| g == v)) // range(), namespace(), …
        .collect();
    unknown.sort();
    if let Some(v) = unknown.first() {
        return Err(RoutineError::invalid(
            "prompt",
            format!(
                "'{}' is not a placeholder; use {}",
                crate::context::clip(v, 40),
                PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{{ {p} }}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    render_prompt(template, &PromptVars::default()).map(|_| ())
}

/// Render `template` (minijinja syntax, see [`normalize_prompt`]) with `v`. Values are inserted
/// once, as text: a state or event that contains `{event}` or `{{ date }}` is never expanded.
///
/// Errors: `prompt: …` when the template does not parse, names an unknown variable or runs out
/// of fuel (creation checks this first with [`validate_template`]).
pub fn render_prompt(template: &str, v: &PromptVars) -> Result<String, RoutineError> {
    let ctx = minijinja::context! {
        date => v.date,
        time => v.time,
        tickCount => v.tick_count,
        state => v.state,
        apiArgs => v.api_args,
        event => v.event,
    };
    env()
        .render_str(template, ctx)
        .map_err(|e| RoutineError::invalid("prompt", format!("can't be rendered: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap()
    }

    #[test]
    fn names() {
        for ok in ["a", "bin_night", "x1_2", &"a".repeat(32)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Bin", "bin night", "bin-night", "é", &"a".repeat(33)] {
            let e = validate_name(bad).unwrap_err().to_string();
            assert!(e.starts_with("name: "), "{e}");
        }
        assert_eq!(
            validate_name("morning-briefing").unwrap_err().to_string(),
            "name: 'morning-briefing' can't be a Telegram command: use 1-32 characters of a-z, 0-9 and _, e.g. 'morning_briefing'"
        );
        for (given, fixed) in [
            ("morning-briefing", "morning_briefing"),
            ("Bin Night!", "bin_night"),
            ("--a--b--", "a_b"),
            ("café-öl", "caf_l"),
            ("日本語", "routine"),
            ("", "routine"),
        ] {
            assert_eq!(fix_name(given), fixed, "{given}");
            assert!(validate_name(&fix_name(given)).is_ok());
        }
        assert_eq!(
            fix_name(&"abc-".repeat(20)).len(),
            31,
            "cut at 32, trailing _ trimmed"
        );
        assert_eq!(
            name_from_prompt("Post today's chores, please!"),
            "post_todays_chores_please"
        );
        assert_eq!(name_from_prompt("日本語"), "routine");
        let long = name_from_prompt("supercalifragilistic expialidocious words");
        assert!(validate_name(&long).is_ok() && long.len() <= 32, "{long}");
    }

    #[test]
    fn trigger_table() {
        let z: Tz = "Europe/London".parse().unwrap();
        let accepted: &[(&str, &str)] = &[
            ("every 30s", "every 30s"),
            ("every 1h30m", "every 1h30m"),
            ("every 25 minutes", "every 25m"),
            ("30m", "every 30m"),
            ("cron 0 8 * * 1-5", "cron 0 8 * * 1-5 (Europe/London)"),
            (
                "cron 0 8 * * 7 America/New_York",
                "cron 0 8 * * 7 (America/New_York)",
            ),
            (
                "cron */15 9-17 1,15 * mon-fri",
                "cron */15 9-17 1,15 * mon-fri (Europe/London)",
            ),
            ("at tomorrow 09:00", "at 2026-11-22 09:00 Europe/London"),
            ("at in 20m", "at 2026-11-21 10:20 Europe/London"),
            (
                "at 2027-02-21T09:00:00Z",
                "at 2027-02-21 09:00 Europe/London",
            ),
            ("event chore_overdue", "event chore_overdue"),
            (
                "event workflow-resolved status=approved",
                "event workflow_resolved status=approved",
            ),
            ("api", "api"),
            ("api args", "api (args)"),
        ];
        for (input, want) in accepted {
            let t = TriggerSpec::parse(input, now(), z).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(&t.describe(z), want, "{input}");
            // the stored form reads back the same
            let back =
                TriggerSpec::from_stored(t.kind(), &t.stored_spec(), t.zone_or(z).name()).unwrap();
            assert_eq!(back, t, "{input}");
        }
        let refused: &[(&str, &str)] = &[
            ("every 10s", "trigger: interval: 10s is too short; the minimum is 30s"),
            ("every 25h", "trigger: interval: 25h is too long; the maximum is 24h"),
            ("every often", "trigger: interval: could not understand"),
            ("cron 0 8 * *", "trigger: cron: expected 5 fields"),
            ("cron 0 0 8 * * *", "trigger: cron: expected 5 fields (minute hour day-of-month month day-of-week), got 6"),
            ("cron 61 8 * * *", "trigger: cron: minute field '61' is invalid"),
            ("cron 0 8 * * 1-5 Mars/Olympus", "trigger: zone: 'Mars/Olympus' is not an IANA time zone"),
            ("at 2020-01-01 09:00", "trigger: at: 2020-01-01 09:00 is in the past"),
            ("at whenever", "trigger: at: could not understand"),
            ("event chore_done", "trigger: event 'chore_done' is unknown"),
            ("event chore_overdue owner=4", "trigger: event filter 'owner=4' must be key=value with key one of"),
            ("event", "trigger: event needs a kind"),
            ("api please", "trigger: 'api please' is not understood"),
            ("sometimes", "trigger: 'sometimes' must start with every, cron, at, event, when or api"),
            ("", "trigger: is missing"),
        ];
        for (input, want) in refused {
            let e = TriggerSpec::parse(input, now(), z).unwrap_err().to_string();
            assert!(e.starts_with(want), "{input}: {e}");
        }
    }

    #[test]
    fn advance_rules() {
        let every = TriggerSpec::Every(Duration::from_secs(1800));
        let old = now();
        // on time: next is re-anchored from the fire time, not a catch-up
        let fired = old + chrono::Duration::seconds(1);
        assert_eq!(
            every.advance(old, fired),
            (Some(fired + chrono::Duration::minutes(30)), false)
        );
        // after 5 h down: one catch-up, next from now
        let late = old + chrono::Duration::hours(5);
        assert_eq!(
            every.advance(old, late),
            (Some(late + chrono::Duration::minutes(30)), true)
        );
        let at = TriggerSpec::At(old);
        assert_eq!(
            at.advance(old, old + chrono::Duration::seconds(2)),
            (None, false)
        );
        assert_eq!(
            at.advance(old, old + chrono::Duration::hours(2)),
            (None, true)
        );
        let cron = TriggerSpec::parse("cron 0 8 * * *", now(), Tz::UTC).unwrap();
        let slot = Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap();
        assert_eq!(
            cron.advance(slot, slot),
            (Some(slot + chrono::Duration::days(1)), false)
        );
        let (next, cu) = cron.advance(slot, slot + chrono::Duration::days(3));
        assert!(cu);
        assert_eq!(next, Some(slot + chrono::Duration::days(4)));
    }

    #[test]
    fn event_filters() {
        let t = TriggerSpec::parse("event chore_overdue assignee_id=4", now(), Tz::UTC).unwrap();
        let ev = |a: Option<i64>| HearthEvent::ChoreOverdue {
            chat_id: -1,
            chore_id: 9,
            title: "Dishes".into(),
            assignee_id: a,
        };
        assert!(t.matches_event(&ev(Some(4))));
        assert!(!t.matches_event(&ev(Some(5))));
        assert!(!t.matches_event(&ev(None)));
        let any = TriggerSpec::parse("event chore_overdue title=dishes", now(), Tz::UTC).unwrap();
        assert!(any.matches_event(&ev(None)));
        let joined = HearthEvent::MemberJoined {
            chat_id: -1,
            user_id: 4,
            name: "Dave".into(),
        };
        assert!(!any.matches_event(&joined));
    }

    #[test]
    fn state_merge() {
        let s = merge_state("{}", &serde_json::json!({"a": {"b": 1, "c": 2}, "d": "x"})).unwrap();
        let s = merge_state(&s, &serde_json::json!({"a": {"b": 5}, "d": null, "e": [1]})).unwrap();
        assert_eq!(s, r#"{"a":{"b":5,"c":2},"e":[1]}"#);
        let e = merge_state(&s, &serde_json::json!([1]))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "state: must be a JSON object");
        let big = "x".repeat(MAX_STATE_BYTES);
        let e = merge_state(&s, &serde_json::json!({ "big": big }))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("state: would be") && e.contains("nothing was changed"),
            "{e}"
        );
    }

    #[test]
    fn placeholders() {
        let v = PromptVars {
            date: "Mon 2026-11-23".into(),
            time: "08:00".into(),
            tick_count: 3,
            state: "{\"bins\":\"blue\"}".into(),
            api_args: String::new(),
            event: "{}".into(),
        };
        let t = normalize_prompt("{date} {time} #{tickCount} {state} [{apiArgs}] {event} {other}");
        assert_eq!(
            t,
            "{{ date }} {{ time }} #{{ tickCount }} {{ state }} [{{ apiArgs }}] {{ event }} {other}"
        );
        assert_eq!(normalize_prompt(&t), t, "normalizing twice changes nothing");
        assert_eq!(
            render_prompt(&t, &v).unwrap(),
            "Mon 2026-11-23 08:00 #3 {\"bins\":\"blue\"} [] {} {other}"
        );
        // values are inserted once: a state holding placeholders stays as written
        let v = PromptVars {
            state: "{event} {{ date }} {% if 1 %}x{% endif %}".into(),
            event: "{state}".into(),
            ..v
        };
        assert_eq!(
            render_prompt(&normalize_prompt("{state} | {event}"), &v).unwrap(),
            "{event} {{ date }} {% if 1 %}x{% endif %} | {state}"
        );
        // a member's words are literal
        let words = "check {{ date }} {% raw %} {#";
        let t = format!("Remind: {}", literal(words));
        validate_template(&t).unwrap();
        assert_eq!(render_prompt(&t, &v).unwrap(), format!("Remind: {words}"));
        // errors name the problem
        let e = validate_template("{{ dat }}").unwrap_err().to_string();
        assert!(
            e.starts_with("prompt: 'dat' is not a placeholder; use {{ date }}"),
            "{e}"
        );
        let e = validate_template("oops {{ date").unwrap_err().to_string();
        assert!(e.starts_with("prompt: has a template error"), "{e}");
        let e = validate_template(
            "{% for a in range(10000) %}{% for b in range(10000) %}x{% endfor %}{% endfor %}",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("prompt: can't be rendered"), "{e}");
    }
}
