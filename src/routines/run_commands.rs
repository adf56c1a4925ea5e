//! Run commands (issue 9, items 8 and 12): `/runs`, `/run_show <id>`, `/run_history <name>`,
//! `/run_pause <id>`, `/run_resume <id>`, `/run_cancel <id>`, `/run_retry <id>`,
//! `/run_again <id>`. Registered in `app::router()` BEFORE the routine commands, so `/run_*`
//! never reach the `/<routine name>` fallback. Runs of other chats are invisible ("no run 12 in
//! this chat"). Replies are Telegram HTML with user text escaped; outputs in `/run_show` are in
//! `<pre>` blocks (one tap copies them).
//!
//! Uses: routines::{runs, progress}, router, format.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{
    progress::{clip_block, status_word},
    runner::Started,
    runs::{self, fmt_duration, user_message, RunView},
    zone_of, Actor, RoutineError,
};
use crate::{
    format::escape_html as e,
    router::{Command, CommandCtx, CommandSet},
    services::Services,
    store::StepStatus,
    types::ChatKind,
};

/// Runs listed by `/run_history`.
const HISTORY_LINES: u64 = 10;
/// Characters of one step's output in `/run_show` (the message is split beyond 4096).
const SHOW_CLIP: usize = 3000;

/// The run commands for the command menu and /help.
pub const COMMANDS: &[(&str, &str)] = &[
    ("runs", "Active runs in this chat"),
    ("run_show", "A run's inputs and outputs: /run_show <id>"),
    ("run_history", "A routine's last runs: /run_history <name>"),
    ("run_pause", "Pause a run: /run_pause <id>"),
    ("run_resume", "Resume a paused run: /run_resume <id>"),
    ("run_cancel", "Cancel a run: /run_cancel <id>"),
    (
        "run_retry",
        "Retry a failed run from its failed step: /run_retry <id>",
    ),
    (
        "run_again",
        "Run it again with the same inputs: /run_again <id>",
    ),
];

/// The run commands as a registered [`CommandSet`].
pub struct RunCommands;

#[async_trait::async_trait]
impl CommandSet for RunCommands {
    fn menu(&self) -> &'static [(&'static str, &'static str)] {
        COMMANDS
    }

    async fn handle(
        &self,
        svc: &Services,
        ctx: &CommandCtx<'_>,
        cmd: &Command,
    ) -> Option<anyhow::Result<()>> {
        handle(svc, ctx, cmd).await
    }

    fn help_note(&self) -> Option<String> {
        Some(
            "Runs: only the member who started a run or a group admin can pause, resume, cancel, retry or rerun it."
                .into(),
        )
    }
}

/// Handle a run command; `None` when `cmd` is not one of them.
pub async fn handle(
    svc: &Services,
    ctx: &CommandCtx<'_>,
    cmd: &Command,
) -> Option<anyhow::Result<()>> {
    let args = cmd.args.as_str();
    let chat = ctx.chat.id;
    let a = actor(ctx);
    let html = match cmd.name.as_str() {
        "runs" => list(svc, chat).await,
        "run_show" => match runs::parse_id(args, "run_show") {
            Ok(id) => show(svc, chat, id).await,
            Err(err) => Err(err),
        },
        "run_history" => history(svc, chat, args).await,
        "run_pause" => {
            with_id(args, "run_pause", |id| async move {
                let v = runs::pause(svc, chat, id, a).await?;
                Ok(format!(
                    "Run {id} of <b>{}</b> paused; /run_resume {id} continues it.",
                    e(&v.routine.name)
                ))
            })
            .await
        }
        "run_resume" => {
            with_id(args, "run_resume", |id| async move {
                let v = runs::resume(svc, chat, id, a).await?;
                let how = match v.waiting_text(runs::zone(&v)) {
                    Some(w) => format!(" — {}", e(&w)),
                    None => String::new(),
                };
                Ok(format!(
                    "Run {id} of <b>{}</b> resumed{how}.",
                    e(&v.routine.name)
                ))
            })
            .await
        }
        "run_cancel" => {
            with_id(args, "run_cancel", |id| async move {
                let (v, wfs) = runs::cancel(svc, chat, id, a).await?;
                let extra = match wfs {
                    0 => String::new(),
                    1 => " Its pending request was cancelled.".into(),
                    n => format!(" Its {n} pending requests were cancelled."),
                };
                Ok(format!(
                    "Run {id} of <b>{}</b> cancelled; its remaining steps are skipped.{extra}",
                    e(&v.routine.name)
                ))
            })
            .await
        }
        "run_retry" => {
            with_id(args, "run_retry", |id| async move {
                let v = runs::retry(svc, chat, id, a).await?;
                Ok(format!(
                    "Retrying run {id} of <b>{}</b> from step {} ({}).",
                    e(&v.routine.name),
                    v.run.current_step + 1,
                    e(&v.step_label(v.run.current_step.max(0) as usize))
                ))
            })
            .await
        }
        "run_again" => {
            with_id(args, "run_again", |id| async move {
                let (v, started) = runs::again(svc, chat, id, a).await?;
                Ok(match started {
                    Started::Run(new) => format!(
                        "Started run {new} of <b>{}</b> with the inputs of run {id}.",
                        e(&v.routine.name)
                    ),
                    Started::Skipped(_, reason) => format!(
                        "<b>{}</b> did not start: {}.",
                        e(&v.routine.name),
                        e(&reason)
                    ),
                })
            })
            .await
        }
        _ => return None,
    };
    let html = match html {
        Ok(h) => h,
        Err(RoutineError::Store(err)) => return Some(Err(err.into())),
        Err(other) => e(&user_message(&other)),
    };
    Some(
        svc.outbox
            .send(ctx.reply(html))
            .await
            .map(|_| ())
            .map_err(Into::into),
    )
}

async fn with_id<F, Fut>(args: &str, command: &str, f: F) -> Result<String, RoutineError>
where
    F: FnOnce(i64) -> Fut,
    Fut: std::future::Future<Output = Result<String, RoutineError>>,
{
    f(runs::parse_id(args, command)?).await
}

fn actor(ctx: &CommandCtx<'_>) -> Actor {
    Actor {
        user_id: ctx.from.id,
        admin: ctx.chat_kind == ChatKind::Private || ctx.member.is_some_and(|m| m.is_admin()),
    }
}

fn local(t: DateTime<Utc>, zone: Tz) -> String {
    t.with_timezone(&zone).format("%a %d %b %H:%M").to_string()
}

/// `/runs`: the chat's active runs with their step, elapsed time and wait.
async fn list(svc: &Services, chat_id: i64) -> Result<String, RoutineError> {
    let now = svc.clock.now();
    let all = runs::active(svc, chat_id).await?;
    if all.is_empty() {
        return Ok(
            "No active runs. /run_history &lt;name&gt; shows a routine's last runs.".to_string(),
        );
    }
    let mut lines = vec![format!("<b>Active runs</b> ({})", all.len())];
    for v in &all {
        lines.push(active_line(v, now));
    }
    lines.push("/run_show &lt;id&gt; for details.".into());
    Ok(lines.join("\n"))
}

fn active_line(v: &RunView, now: DateTime<Utc>) -> String {
    let n = v.step_count();
    let pos = v.run.current_step.max(0) as usize;
    let step = if n > 0 {
        format!(" · step {}/{n} {}", pos + 1, e(&v.step_label(pos)))
    } else {
        String::new()
    };
    let mut line = format!(
        "• <b>{}</b> run {} · {}{step} · {}",
        e(&v.routine.name),
        v.run.id,
        v.run.status,
        fmt_duration(v.elapsed(now))
    );
    if let Some(w) = v.waiting_text(runs::zone(v)) {
        line.push_str(&format!(" · {}", e(&w)));
    }
    line
}

/// `/run_show <id>`: inputs and every step's output.
async fn show(svc: &Services, chat_id: i64, id: i64) -> Result<String, RoutineError> {
    let v = runs::in_chat(svc, chat_id, id).await?;
    let now = svc.clock.now();
    let zone = runs::zone(&v);
    let (pt, ct) = v.tokens();
    let mut out = vec![format!(
        "<b>{}</b> · run {id} · {}\nStarted {} ({}) · {} · {} tok · ${:.4}",
        e(&v.routine.name),
        e(&status_word(&v)),
        e(&local(v.run.started_at, zone)),
        v.run.source,
        fmt_duration(v.elapsed(now)),
        pt + ct,
        v.cost()
    )];
    if let Some(w) = v.waiting_text(zone) {
        out.push(e(&w));
    }
    let inputs = v
        .run
        .input
        .as_deref()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        .and_then(|x| x.as_object().cloned())
        .unwrap_or_default();
    if !inputs.is_empty() {
        out.push("<b>Inputs</b>".into());
        for (k, val) in &inputs {
            let s = match val {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push(format!("{}: <code>{}</code>", e(k), e(&s)));
        }
    }
    for p in 0..v.step_count() {
        let label = v.step_label(p);
        let Some(s) = v.latest(p) else {
            out.push(format!("<b>{} {}</b> — not run", p + 1, e(&label)));
            continue;
        };
        let mut head = format!("<b>{} {}</b> — {}", p + 1, e(&label), s.status);
        if s.attempt > 1 {
            head.push_str(&format!(" (attempt {})", s.attempt));
        }
        if s.status == StepStatus::Completed || s.status == StepStatus::Failed {
            head.push_str(&format!(
                " · {}",
                fmt_duration(chrono::Duration::milliseconds(s.duration_ms))
            ));
            let tok = s.prompt_tokens as i64 + s.completion_tokens as i64;
            if tok > 0 {
                head.push_str(&format!(" · {tok} tok · ${:.4}", s.cost_usd));
            }
        }
        out.push(head);
        if let Some(o) = s.output.as_deref().filter(|o| !o.trim().is_empty()) {
            out.push(format!("<pre>{}</pre>", e(&clip_block(o, SHOW_CLIP))));
        }
        if let Some(r) = s.reason.as_deref().filter(|r| !r.trim().is_empty()) {
            out.push(format!("Reason: {}", e(r)));
        }
        if let Some(err) = s.error.as_deref().filter(|r| !r.trim().is_empty()) {
            out.push(format!("Error: <code>{}</code>", e(&clip_block(err, 500))));
        }
    }
    if v.run.status.is_active() {
        out.push(format!(
            "/run_pause {id} · /run_resume {id} · /run_cancel {id}"
        ));
    } else if v.run.status == crate::store::RunStatus::Failed {
        out.push(format!("/run_retry {id} · /run_again {id}"));
    } else {
        out.push(format!("/run_again {id}"));
    }
    Ok(out.join("\n"))
}

/// `/run_history <name>`: the routine's last runs and its analytics.
async fn history(svc: &Services, chat_id: i64, args: &str) -> Result<String, RoutineError> {
    let name = args.split_whitespace().next().unwrap_or("");
    if name.is_empty() {
        return Err(RoutineError::invalid(
            "name",
            "is missing: /run_history <name> (see /routines)",
        ));
    }
    let now = svc.clock.now();
    let (r, all) = runs::history(svc, chat_id, name, HISTORY_LINES).await?;
    if all.is_empty() {
        return Ok(format!("<b>{}</b> has not run yet.", e(&r.name)));
    }
    let zone = zone_of(&r);
    let st = runs::stats(&svc.store, &r, now).await?;
    let mut lines = vec![format!("<b>{}</b> — last {} runs", e(&r.name), all.len())];
    for v in &all {
        let (pt, ct) = v.tokens();
        let mut parts = vec![
            format!("run {}", v.run.id),
            local(v.run.started_at, zone),
            status_word(v),
            fmt_duration(v.elapsed(now)),
        ];
        if pt + ct > 0 {
            parts.push(format!("{} tok", pt + ct));
            parts.push(format!("${:.4}", v.cost()));
        }
        lines.push(format!("• {}", e(&parts.join(" · "))));
    }
    lines.push(e(&st.summary()));
    Ok(lines.join("\n"))
}
