//! Scheduled routines: named prompts that fire on `every`, `cron`, `at`, `event` and `api`
//! triggers; each fire is a normal agent turn in the owning chat whose reply goes straight to
//! that chat.
//!
//! Owns: the routine rules ([`model`]), the service functions below (create, pause, resume,
//! delete, state, manual runs, listing; authorization lives here, never in prompts), the sweep
//! and run execution ([`engine`]), the api trigger route ([`api`]), agent tools ([`tools`]),
//! built-in templates ([`templates`]) and chat commands ([`commands`]).
//! Uses: services (store, clock, outbox, chat locks, events), agent, schedule, format.
//! The source of truth for a schedule is each trigger's persisted `next_fire_at` (UTC).

pub mod api;
pub mod ask;
pub mod commands;
pub mod conditions;
pub mod doc;
pub mod dryrun;
pub mod engine;
pub mod gate;
pub mod manage;
pub mod menu;
pub mod model;
pub mod playbooks;
pub mod progress;
pub mod recorded;
pub mod run_buttons;
pub mod run_cli;
pub mod run_commands;
pub mod runner;
pub mod runs;
pub mod steps;
pub mod templates;
pub mod tools;
pub mod typed;
pub mod validate;
pub mod vars;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rand::RngCore;
use sha2::{Digest, Sha256};

pub use engine::RoutineEngine;
use model::TriggerSpec;

use crate::{
    services::Services,
    store::{
        NewRoutine, NewTrigger, RoutineRow, RoutineStatus, RunRow, RunSource, StoreError,
        TriggerKind, TriggerRow,
    },
};

/// A quiet routine's reply that is exactly this (after trimming) is recorded `silent` and not sent.
pub const QUIET_TOKEN: &str = "[~]";
/// Run records kept per routine.
pub const KEEP_RUNS: u64 = 50;

/// What a routine operation can fail with. `Display` is the message for the user or the model.
#[derive(Debug, thiserror::Error)]
pub enum RoutineError {
    /// Bad input: names the field and the rule, e.g. `name: 'X' can't be a Telegram command: …`.
    #[error("{field}: {rule}")]
    Invalid { field: String, rule: String },
    /// No routine with that name in this chat.
    #[error("no routine named '{0}' in this chat; /routines lists them")]
    NotFound(String),
    /// The actor may not do this.
    #[error("not allowed: {0}")]
    Denied(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RoutineError {
    /// An input error for `field` breaking `rule`.
    pub fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Self {
        RoutineError::Invalid {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

/// Who is acting: the member (or DM user) and whether they administer the chat.
#[derive(Debug, Clone, Copy)]
pub struct Actor {
    pub user_id: i64,
    pub admin: bool,
}

/// The rule for managing a routine: its owner or a group admin.
pub fn can_manage(r: &RoutineRow, actor: Actor) -> bool {
    r.owner_id == actor.user_id || actor.admin
}

/// A new routine as asked for by a command, a tool or a template.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub chat_id: i64,
    /// The chat's zone: default for `cron` and `at`, and the routine's zone.
    pub chat_zone: Tz,
    pub owner_id: i64,
    /// `None`: made from the prompt (made unique with a suffix).
    pub name: Option<String>,
    pub prompt: String,
    /// 1–4 trigger strings (see [`model::TriggerSpec::parse`]).
    pub triggers: Vec<String>,
    pub quiet: bool,
    pub max_ticks: Option<i64>,
    pub max_runs_per_day: Option<i64>,
}

/// A created routine. `api_token` is the bearer token, shown once (only its hash is stored).
#[derive(Debug, Clone)]
pub struct Created {
    pub routine: RoutineRow,
    pub triggers: Vec<TriggerRow>,
    pub api_token: Option<String>,
}

/// Validate and create a routine. Nothing is written unless everything is valid.
///
/// Errors: [`RoutineError::Invalid`] naming the field (`prompt`, `trigger`, `triggers`, `name`,
/// `max_ticks`, `max_runs_per_day`, `routines`) and the rule.
pub async fn create(svc: &Services, req: CreateRequest) -> Result<Created, RoutineError> {
    let now = svc.clock.now();
    model::validate_prompt(&req.prompt)?;
    let prompt = model::normalize_prompt(req.prompt.trim());
    model::validate_template(&prompt)?;
    if req.triggers.is_empty() || req.triggers.len() > model::MAX_TRIGGERS {
        return Err(RoutineError::invalid(
            "triggers",
            format!(
                "{} given; a routine has 1 to {} triggers",
                req.triggers.len(),
                model::MAX_TRIGGERS
            ),
        ));
    }
    let mut specs = Vec::new();
    for t in &req.triggers {
        specs.push(TriggerSpec::parse(t, now, req.chat_zone)?);
    }
    let max_ticks = model::validate_limit("max_ticks", req.max_ticks, model::MAX_TICKS)?;
    if let Some(n) = &req.name {
        model::validate_name(n.trim())?;
        if svc
            .store
            .routine_by_name(req.chat_id, n.trim())
            .await?
            .is_some()
        {
            return Err(name_taken(n.trim()));
        }
    }
    let max_per_day = model::validate_limit(
        "max_runs_per_day",
        req.max_runs_per_day,
        model::MAX_RUNS_PER_DAY,
    )?;
    let limit = svc.config.routines.max_per_chat as u64;
    if svc.store.count_active_routines(req.chat_id).await? >= limit {
        return Err(RoutineError::invalid(
            "routines",
            format!("this chat already has {limit} active routines (routines.max_per_chat); delete one first"),
        ));
    }
    let api = specs.iter().find_map(|s| match s {
        TriggerSpec::Api { args } => Some(*args),
        _ => None,
    });
    let api_token = api.map(|_| new_token());
    let zone = req.chat_zone;
    let triggers: Vec<NewTrigger> = specs
        .iter()
        .map(|s| NewTrigger {
            kind: s.kind(),
            spec: s.stored_spec(),
            zone: s.zone_or(zone).name().into(),
            next_fire_at: s.first_fire(now),
        })
        .collect();
    let (base, generated) = match &req.name {
        Some(n) => {
            let n = n.trim().to_string();
            model::validate_name(&n)?;
            (n, false)
        }
        None => (model::name_from_prompt(&req.prompt), true),
    };
    for attempt in 1..=20 {
        let name = if attempt == 1 {
            base.clone()
        } else {
            let suffix = format!("_{attempt}");
            let keep = model::MAX_NAME_LEN - suffix.len();
            format!("{}{suffix}", &base[..base.len().min(keep)])
        };
        let new = NewRoutine {
            chat_id: req.chat_id,
            name: name.clone(),
            owner_id: req.owner_id,
            prompt: prompt.clone(),
            zone: zone.name().into(),
            quiet: req.quiet,
            api_args: api.unwrap_or(false),
            api_token_hash: api_token.as_deref().map(token_hash),
            max_ticks,
            max_runs_per_day: max_per_day,
            created_at: now,
        };
        if let Some(id) = svc.store.insert_routine(new, triggers.clone()).await? {
            let routine = svc
                .store
                .routine(id)
                .await?
                .ok_or_else(|| RoutineError::NotFound(name.clone()))?;
            let triggers = svc.store.routine_triggers(id).await?;
            if let Some(token) = &api_token {
                deliver_token(svc, &routine, token).await?;
            }
            tracing::info!(chat_id = req.chat_id, routine = %name, id, "routine created");
            return Ok(Created {
                routine,
                triggers,
                api_token,
            });
        }
        if !generated {
            return Err(name_taken(&name));
        }
    }
    Err(RoutineError::invalid(
        "name",
        format!("'{base}' and its numbered variants are taken; give a name"),
    ))
}

/// The chat moved from zone `old` to `new` (`/timezone`): routines and cron triggers that
/// followed the chat's zone move with it (a cron "0 8 * * *" keeps meaning 08:00 local), and
/// their next fire is recomputed in the new zone. Triggers given another zone explicitly, and
/// one-off `at` instants, stay as they are. Returns how many triggers moved.
pub async fn rezone(svc: &Services, chat_id: i64, old: Tz, new: Tz) -> Result<usize, RoutineError> {
    let now = svc.clock.now();
    let mut moved = 0;
    for r in svc.store.routines_of_chat(chat_id).await? {
        if r.zone == old.name() {
            svc.store.set_routine_zone(r.id, new.name()).await?;
        }
        for t in svc.store.routine_triggers(r.id).await? {
            if t.kind != TriggerKind::Cron || t.zone != old.name() {
                continue;
            }
            let spec = TriggerSpec::from_stored(t.kind, &t.spec, new.name())?;
            let next = t.next_fire_at.and_then(|_| spec.next_after(now));
            svc.store.set_trigger_zone(t.id, new.name(), next).await?;
            moved += 1;
        }
    }
    Ok(moved)
}

/// Send an api token to the owner's DM (never through the model or the group). When the owner
/// cannot be messaged the routine is deleted again, so no routine exists with a lost token.
async fn deliver_token(svc: &Services, r: &RoutineRow, token: &str) -> Result<(), RoutineError> {
    let html = format!(
        "Api token for routine <b>{}</b> (shown once):\n<code>{token}</code>\nPOST /routines/{}/trigger with the header <code>Authorization: Bearer &lt;token&gt;</code>.",
        crate::format::escape_html(&r.name),
        r.id
    );
    let dm = crate::types::Outbound {
        chat_id: r.owner_id,
        html,
        buttons: vec![],
        reply_to: None,
    };
    if svc.outbox.send_secret(dm).await.is_err() {
        svc.store.delete_routine(r.id).await?;
        return Err(RoutineError::invalid(
            "triggers",
            "an api trigger's token is sent by direct message and I cannot message the owner; open a private chat with me first (nothing was created)",
        ));
    }
    Ok(())
}

fn name_taken(name: &str) -> RoutineError {
    RoutineError::invalid(
        "name",
        format!("'{name}' is already used in this chat; pick another or /routine_delete {name}"),
    )
}

/// A fresh api bearer token: "hrt_" + 64 hex characters (256 random bits).
fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    format!("hrt_{}", hex::encode(b))
}

/// SHA-256 hex of a token: the only form stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The routine called `name` in `chat_id`.
///
/// Errors: [`RoutineError::NotFound`].
/// The name may be given as it was before names became command-safe ("morning-briefing" finds
/// `morning_briefing`, see [`model::fix_name`]).
pub async fn find(svc: &Services, chat_id: i64, name: &str) -> Result<RoutineRow, RoutineError> {
    let given = name.trim().trim_start_matches(['@', '/']);
    svc.store
        .routine_by_name(chat_id, &model::fix_name(given))
        .await?
        .ok_or(RoutineError::NotFound(crate::context::clip(given, 40)))
}

async fn find_managed(
    svc: &Services,
    chat_id: i64,
    name: &str,
    actor: Actor,
) -> Result<RoutineRow, RoutineError> {
    let r = find(svc, chat_id, name).await?;
    if !can_manage(&r, actor) {
        return Err(RoutineError::Denied(format!(
            "only the owner of '{}' or a group admin can change it",
            r.name
        )));
    }
    Ok(r)
}

/// Pause (`true`) or resume (`false`). Paused fires are recorded `skipped: paused`.
pub async fn set_paused(
    svc: &Services,
    chat_id: i64,
    name: &str,
    actor: Actor,
    paused: bool,
) -> Result<RoutineRow, RoutineError> {
    let r = find_managed(svc, chat_id, name, actor).await?;
    svc.store.set_routine_paused(r.id, paused).await?;
    Ok(RoutineRow { paused, ..r })
}

/// Delete a routine with its triggers and history.
pub async fn delete(
    svc: &Services,
    chat_id: i64,
    name: &str,
    actor: Actor,
) -> Result<RoutineRow, RoutineError> {
    let r = find_managed(svc, chat_id, name, actor).await?;
    svc.store.delete_routine(r.id).await?;
    tracing::info!(chat_id, routine = %r.name, "routine deleted");
    menu::sync(svc, chat_id).await;
    Ok(r)
}

/// Deep-merge `patch` into the routine's state (see [`model::merge_state`]); returns the new state.
/// Refused whole when the result is over 2 KB.
pub async fn set_state(
    svc: &Services,
    chat_id: i64,
    name: &str,
    actor: Actor,
    patch: &serde_json::Value,
) -> Result<String, RoutineError> {
    let r = find_managed(svc, chat_id, name, actor).await?;
    let merged = model::merge_state(&r.state, patch)?;
    svc.store.set_routine_state(r.id, &merged).await?;
    Ok(merged)
}

/// Start a manual run (works while paused and over the daily cap); the engine's sweep starts it
/// within a tick. Returns the run id.
///
/// Errors: as [`runner::start_run`]; a run skipped (e.g. "already running") is
/// [`RoutineError::Invalid`] saying why.
pub async fn queue_manual_run(
    svc: &Services,
    chat_id: i64,
    name: &str,
    actor: Actor,
) -> Result<(RoutineRow, i64), RoutineError> {
    let r = find_managed(svc, chat_id, name, actor).await?;
    if r.status != RoutineStatus::Active {
        return Err(RoutineError::invalid(
            "name",
            format!("'{}' has ended; create it again to run it", r.name),
        ));
    }
    let started = runner::start_run(
        svc,
        runner::StartRun {
            routine_id: r.id,
            source: RunSource::Manual,
            trigger_id: None,
            started_by: actor.user_id,
            inputs: Default::default(),
            scheduled_for: None,
            catch_up: false,
            parent_run_id: None,
            depth: 0,
        },
    )
    .await?;
    match started {
        runner::Started::Run(id) => Ok((r, id)),
        runner::Started::Skipped(id, reason) => Err(RoutineError::invalid(
            "name",
            format!("'{}' was not run: {reason} (run {id})", r.name),
        )),
    }
}

/// A routine with its triggers, for listings.
#[derive(Debug, Clone)]
pub struct Listed {
    pub routine: RoutineRow,
    pub triggers: Vec<TriggerRow>,
}

/// The chat's routines with their triggers, oldest first.
pub async fn list(svc: &Services, chat_id: i64) -> Result<Vec<Listed>, RoutineError> {
    let mut out = Vec::new();
    for routine in svc.store.routines_of_chat(chat_id).await? {
        let triggers = svc.store.routine_triggers(routine.id).await?;
        out.push(Listed { routine, triggers });
    }
    Ok(out)
}

/// The newest `limit` runs of the routine called `name`.
pub async fn history(
    svc: &Services,
    chat_id: i64,
    name: &str,
    limit: u64,
) -> Result<(RoutineRow, Vec<RunRow>), RoutineError> {
    let r = find(svc, chat_id, name).await?;
    let runs = svc.store.routine_runs(r.id, limit).await?;
    Ok((r, runs))
}

/// The routine's zone (UTC when the stored name is unknown).
pub fn zone_of(r: &RoutineRow) -> Tz {
    r.zone.parse().unwrap_or(Tz::UTC)
}

/// How a trigger reads to people: its description and next fire in the routine's zone.
pub fn describe_trigger(t: &TriggerRow, zone: Tz) -> String {
    match TriggerSpec::from_stored(t.kind, &t.spec, &t.zone) {
        Ok(s) => s.describe(zone),
        Err(_) => format!("{} (unreadable)", t.kind),
    }
}

/// The earliest upcoming fire among `triggers` (UTC).
pub fn next_fire(triggers: &[TriggerRow]) -> Option<DateTime<Utc>> {
    triggers.iter().filter_map(|t| t.next_fire_at).min()
}

/// Cost in US dollars of tokens at the configured model's prices: `llm.prices."<llm.model>"`,
/// else `llm.prompt_price_per_mtok` / `llm.completion_price_per_mtok` (USD per million tokens).
pub fn run_cost(cfg: &crate::config::Config, prompt_tokens: u32, completion_tokens: u32) -> f64 {
    let (p, c) = match cfg.llm.prices.get(&cfg.llm.model) {
        Some(m) => (m.prompt, m.completion),
        None => (
            cfg.llm.prompt_price_per_mtok,
            cfg.llm.completion_price_per_mtok,
        ),
    };
    prompt_tokens as f64 * p / 1e6 + completion_tokens as f64 * c / 1e6
}
