//! Routine chat commands: `/every`, `/cron`, `/at`, `/routines`, `/routine_pause`,
//! `/routine_resume`, `/routine_delete`, `/routine_show`, `/routine_edit` ([`super::manage`]), `/routine_run`, `/routine_history`, `/routine_install`,
//! and `/<name>` for any routine of the chat (names are command-safe, `[a-z0-9_]{1,32}`).
//!
//! Parses the command text, calls the routine service functions and replies through the outbox
//! in Telegram HTML (user text escaped). Bad input gets the service's message naming the field
//! and the rule. Uses: routines (service, model, templates), router (context, traits), format.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{
    describe_trigger, model::TriggerSpec, next_fire, templates, zone_of, Actor, CreateRequest,
    Created, RoutineError,
};
use crate::{
    format::escape_html as e,
    router::{Command, CommandCtx, CommandSet},
    services::{zone_of as chat_zone, Services},
    store::RoutineStatus,
    types::ChatKind,
};

/// Run history lines shown by `/routine_history`.
const HISTORY_LINES: u64 = 10;

/// The routine commands for the command menu and /help.
pub const COMMANDS: &[(&str, &str)] = &[
    (
        "every",
        "Repeat a prompt, e.g. /every 30m check the washing",
    ),
    (
        "cron",
        "Cron schedule, e.g. /cron 0 8 * * 1-5 post today's chores",
    ),
    (
        "at",
        "Once, e.g. /at tomorrow 09:00 renew the car insurance",
    ),
    ("routines", "List this chat's routines"),
    ("routine_pause", "Pause a routine: /routine_pause <name>"),
    ("routine_resume", "Resume a routine: /routine_resume <name>"),
    (
        "routine_show",
        "A routine's template, parameters and tools: /routine_show <name>",
    ),
    (
        "routine_edit",
        "Change a routine: /routine_edit <name> prompt … or param <name> description …",
    ),
    ("routine_delete", "Delete a routine: /routine_delete <name>"),
    ("routine_run", "Run a routine now: /routine_run <name>"),
    (
        "routine_history",
        "A routine's recent runs: /routine_history <name>",
    ),
    (
        "routine_install",
        "Install a built-in routine, e.g. /routine_install morning_briefing",
    ),
];

/// The routine commands as a registered [`CommandSet`].
pub struct RoutineCommands;

#[async_trait::async_trait]
impl CommandSet for RoutineCommands {
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
    /// Routines that followed the chat's zone move with it.
    async fn rezone(&self, svc: &Services, chat_id: i64, old: Tz, new: Tz) -> anyhow::Result<()> {
        super::rezone(svc, chat_id, old, new).await?;
        Ok(())
    }
}

/// Handle a routine command; `None` when `cmd` is not one of them.
pub async fn handle(
    svc: &Services,
    ctx: &CommandCtx<'_>,
    cmd: &Command,
) -> Option<anyhow::Result<()>> {
    let args = cmd.args.as_str();
    let html = match cmd.name.as_str() {
        "every" => create_from(svc, ctx, args, "every", 6, "/every 30m check the washing").await,
        "cron" => cron(svc, ctx, args).await,
        "at" => {
            create_from(
                svc,
                ctx,
                args,
                "at",
                7,
                "/at tomorrow 09:00 renew the car insurance",
            )
            .await
        }
        "routines" => list(svc, ctx, args).await,
        "routine_pause" => pause(svc, ctx, args, true).await,
        "routine_resume" => pause(svc, ctx, args, false).await,
        "routine_delete" => delete(svc, ctx, args).await,
        "routine_show" => super::manage::show(svc, ctx.chat.id, args).await,
        "routine_edit" => super::manage::edit(svc, ctx.chat.id, actor(ctx), args).await,
        "routine_run" => run(svc, ctx, args).await,
        "routine_history" => history(svc, ctx, args).await,
        "routine_install" => install(svc, ctx, args).await,
        // `/<routine name>` runs it now, like /routine_run (tried after every other command)
        name => match super::find(svc, ctx.chat.id, name).await {
            // a routine with steps takes or asks its inputs (ask.rs); else it runs as before
            Ok(r) if r.name == name => match super::ask::start(svc, asker(ctx), &r, args).await {
                Some(res) => res,
                None => run(svc, ctx, name).await,
            },
            Ok(_) | Err(RoutineError::NotFound(_)) => return None,
            Err(err) => Err(err),
        },
    };
    let html = match html {
        Ok(h) => h,
        Err(RoutineError::Store(err)) => return Some(Err(err.into())),
        Err(other) => e(&other.to_string()),
    };
    Some(
        svc.outbox
            .send(ctx.reply(html))
            .await
            .map(|_| ())
            .map_err(Into::into),
    )
}

fn asker(ctx: &CommandCtx<'_>) -> super::ask::Asker {
    super::ask::Asker {
        chat_id: ctx.chat.id,
        user_id: ctx.from.id,
    }
}

fn actor(ctx: &CommandCtx<'_>) -> Actor {
    Actor {
        user_id: ctx.from.id,
        admin: ctx.chat_kind == ChatKind::Private || ctx.member.is_some_and(|m| m.is_admin()),
    }
}

fn request(ctx: &CommandCtx<'_>, prompt: String, triggers: Vec<String>) -> CreateRequest {
    CreateRequest {
        chat_id: ctx.chat.id,
        chat_zone: chat_zone(ctx.chat),
        owner_id: ctx.from.id,
        name: None,
        prompt,
        triggers,
        quiet: false,
        max_ticks: None,
        max_runs_per_day: None,
    }
}

/// Split `args` into the longest leading run of words (at most `max_words`) that parses as a
/// `kind` trigger, and the rest (the prompt). When no prefix parses, the most specific error is
/// returned (a broken rule beats "could not understand").
fn split_trigger(
    args: &str,
    kind: &str,
    max_words: usize,
    now: DateTime<Utc>,
    zone: Tz,
) -> Result<(String, String), RoutineError> {
    let words: Vec<&str> = args.split_whitespace().collect();
    // (error, vague?) — a broken rule ("10s is too short") beats "could not understand"
    let mut best: Option<(RoutineError, bool)> = None;
    for n in (1..=words.len().min(max_words)).rev() {
        let t = format!("{kind} {}", words[..n].join(" "));
        match TriggerSpec::parse(&t, now, zone) {
            Ok(_) => return Ok((t, words[n..].join(" "))),
            Err(err) => {
                let vague = err.to_string().contains("could not understand");
                if best.as_ref().is_none_or(|(_, b_vague)| *b_vague && !vague) {
                    best = Some((err, vague));
                }
            }
        }
    }
    Err(best
        .map(|(err, _)| err)
        .unwrap_or_else(|| RoutineError::invalid("trigger", format!("is missing after /{kind}"))))
}

async fn create_from(
    svc: &Services,
    ctx: &CommandCtx<'_>,
    args: &str,
    kind: &str,
    max_words: usize,
    example: &str,
) -> Result<String, RoutineError> {
    if args.trim().is_empty() {
        return Err(RoutineError::invalid(
            "trigger",
            format!("is missing; for example {example}"),
        ));
    }
    let (trigger, prompt) =
        split_trigger(args, kind, max_words, svc.clock.now(), chat_zone(ctx.chat))?;
    if prompt.trim().is_empty() {
        return Err(RoutineError::invalid(
            "prompt",
            format!("is missing; for example {example}"),
        ));
    }
    let c = super::create(svc, request(ctx, prompt, vec![trigger])).await?;
    Ok(created_text(&c))
}

async fn cron(svc: &Services, ctx: &CommandCtx<'_>, args: &str) -> Result<String, RoutineError> {
    let words: Vec<&str> = args.split_whitespace().collect();
    if words.len() < 6 {
        return Err(RoutineError::invalid(
            "cron",
            "needs 5 fields and a prompt, e.g. /cron 0 8 * * 1-5 post today's chores (optionally a zone after the fields: /cron 0 8 * * 1-5 Europe/London …)",
        ));
    }
    // an IANA zone may follow the five fields
    let (trigger, rest) = if words.len() > 6 && super::model::looks_like_zone(words[5]) {
        (format!("cron {}", words[..6].join(" ")), &words[6..])
    } else {
        (format!("cron {}", words[..5].join(" ")), &words[5..])
    };
    let c = super::create(svc, request(ctx, rest.join(" "), vec![trigger])).await?;
    Ok(created_text(&c))
}

/// "Routine <name> created: <triggers> · next <time>." plus how to manage it.
fn created_text(c: &Created) -> String {
    let zone = zone_of(&c.routine);
    let triggers: Vec<String> = c
        .triggers
        .iter()
        .map(|t| describe_trigger(t, zone))
        .collect();
    let next = next_fire(&c.triggers)
        .map(|t| format!(" · next {}", local(t, zone)))
        .unwrap_or_default();
    let api = if c.api_token.is_some() {
        format!(
            "\nApi: POST /routines/{}/trigger; the token was sent to you privately.",
            c.routine.id
        )
    } else {
        String::new()
    };
    format!(
        "Routine <b>{}</b> created: {}{}.\nPause it with /routine_pause {}, run it now with /{}.{api}",
        e(&c.routine.name),
        e(&triggers.join(", ")),
        e(&next),
        e(&c.routine.name),
        e(&c.routine.name),
    )
}

fn local(t: DateTime<Utc>, zone: Tz) -> String {
    format!(
        "{} {}",
        t.with_timezone(&zone).format("%a %d %b %H:%M"),
        zone.name()
    )
}

fn name_arg<'a>(args: &'a str, command: &str) -> Result<&'a str, RoutineError> {
    let n = args.split_whitespace().next().unwrap_or("");
    if n.is_empty() {
        return Err(RoutineError::invalid(
            "name",
            format!("is missing: /{command} <name> (see /routines)"),
        ));
    }
    Ok(n)
}

async fn list(svc: &Services, ctx: &CommandCtx<'_>, filter: &str) -> Result<String, RoutineError> {
    let mut all = super::list(svc, ctx.chat.id).await?;
    // `/routines <text>`: by name or description, case-insensitive
    let filter = filter.trim().to_lowercase();
    if !filter.is_empty() {
        all.retain(|l| {
            l.routine.name.contains(&filter)
                || l.routine.description.to_lowercase().contains(&filter)
        });
        if all.is_empty() {
            return Ok(format!(
                "No routine matches “{}”; /routines lists them all.",
                e(&crate::context::clip(&filter, 40))
            ));
        }
    }
    if all.is_empty() {
        return Ok("No routines yet. Try /every 30m check the washing, /cron 0 8 * * 1-5 post today's chores, /at tomorrow 09:00 call the plumber, or /routine_install morning_briefing.".into());
    }
    let ids: Vec<i64> = all.iter().map(|l| l.routine.id).collect();
    let usage = super::manage::usage(svc, &ids).await?;
    let mut lines = vec!["<b>Routines</b>".to_string()];
    for l in all {
        let r = &l.routine;
        let zone = zone_of(r);
        let triggers: Vec<String> = l
            .triggers
            .iter()
            .map(|t| describe_trigger(t, zone))
            .collect();
        let mut flags = Vec::new();
        if r.publication == crate::store::Publication::Draft {
            flags.push("draft".to_string());
        }
        if r.status != RoutineStatus::Active {
            flags.push(r.status.to_string());
        } else if r.paused {
            flags.push("paused".to_string());
        } else if let Some(t) = next_fire(&l.triggers) {
            flags.push(format!("next {}", local(t, zone)));
        }
        if r.quiet {
            flags.push("quiet".into());
        }
        if let Some(c) = r.max_runs_per_day {
            flags.push(format!("max {c}/day"));
        }
        if let Some(m) = r.max_ticks {
            flags.push(format!("{}/{m} runs", r.tick_count));
        }
        let about = if r.description.is_empty() {
            String::new()
        } else {
            format!(" ({})", crate::context::clip(&r.description, 80))
        };
        lines.push(format!(
            "• <b>{}</b>{} — {}{}",
            e(&r.name),
            e(&about),
            e(&if triggers.is_empty() {
                "manual".to_string()
            } else {
                triggers.join(", ")
            }),
            if flags.is_empty() {
                String::new()
            } else {
                format!(" · {}", e(&flags.join(" · ")))
            }
        ));
        lines.push(super::manage::usage_line(r, usage.get(&r.id), zone));
    }
    Ok(lines.join("\n"))
}

async fn pause(
    svc: &Services,
    ctx: &CommandCtx<'_>,
    args: &str,
    paused: bool,
) -> Result<String, RoutineError> {
    let cmd = if paused {
        "routine_pause"
    } else {
        "routine_resume"
    };
    let r = super::set_paused(svc, ctx.chat.id, name_arg(args, cmd)?, actor(ctx), paused).await?;
    Ok(if paused {
        format!(
            "Routine <b>{}</b> paused; its fires are skipped until /routine_resume {}.",
            e(&r.name),
            e(&r.name)
        )
    } else {
        format!("Routine <b>{}</b> resumed.", e(&r.name))
    })
}

async fn delete(svc: &Services, ctx: &CommandCtx<'_>, args: &str) -> Result<String, RoutineError> {
    let r = super::delete(
        svc,
        ctx.chat.id,
        name_arg(args, "routine_delete")?,
        actor(ctx),
    )
    .await?;
    Ok(format!("Routine <b>{}</b> deleted.", e(&r.name)))
}

async fn run(svc: &Services, ctx: &CommandCtx<'_>, args: &str) -> Result<String, RoutineError> {
    let (r, _id) =
        super::queue_manual_run(svc, ctx.chat.id, name_arg(args, "routine_run")?, actor(ctx))
            .await?;
    Ok(format!("Running <b>{}</b> now.", e(&r.name)))
}

async fn history(svc: &Services, ctx: &CommandCtx<'_>, args: &str) -> Result<String, RoutineError> {
    let (r, runs) = super::history(
        svc,
        ctx.chat.id,
        name_arg(args, "routine_history")?,
        HISTORY_LINES,
    )
    .await?;
    if runs.is_empty() {
        return Ok(format!("Routine <b>{}</b> has not run yet.", e(&r.name)));
    }
    let zone = zone_of(&r);
    let mut lines = vec![format!(
        "<b>{}</b> — last {} runs (ran {} times)",
        e(&r.name),
        runs.len(),
        r.tick_count
    )];
    for x in runs {
        let mut parts = vec![
            x.started_at
                .with_timezone(&zone)
                .format("%a %d %b %H:%M")
                .to_string(),
            if x.catch_up {
                format!("{} (catch-up)", x.source)
            } else {
                x.source.to_string()
            },
            match &x.reason {
                Some(reason) => format!("{}: {reason}", x.status),
                None => x.status.to_string(),
            },
        ];
        if x.prompt_tokens + x.completion_tokens > 0 {
            parts.push(format!(
                "{:.1} s · {}+{} tokens · ${:.4}",
                x.duration_ms as f64 / 1000.0,
                x.prompt_tokens,
                x.completion_tokens,
                x.cost_usd
            ));
        }
        let snippet = x
            .output
            .as_deref()
            .map(|o| format!(" — “{}”", crate::context::clip(o, 60)))
            .unwrap_or_default();
        lines.push(format!("• {}{}", e(&parts.join(" · ")), e(&snippet)));
    }
    Ok(lines.join("\n"))
}

async fn install(svc: &Services, ctx: &CommandCtx<'_>, args: &str) -> Result<String, RoutineError> {
    let (name, rest) = match args.trim().split_once(char::is_whitespace) {
        Some((n, r)) => (n, r.trim()),
        None => (args.trim(), ""),
    };
    let Some(t) = templates::find(name) else {
        let mut s = if name.is_empty() {
            "Install a template with /routine_install &lt;template&gt;:".to_string()
        } else {
            format!(
                "template: '{}' is not a built-in template; choose one of:",
                e(&crate::context::clip(name, 40))
            )
        };
        for t in templates::TEMPLATES {
            s.push_str(&format!("\n• <b>{}</b> — {}", t.name, e(t.summary)));
        }
        return Ok(s);
    };
    let mut req = request(
        ctx,
        t.prompt.to_string(),
        t.triggers.iter().map(|s| s.to_string()).collect(),
    );
    req.name = Some(t.name.to_string());
    req.quiet = t.quiet;
    if t.needs_args {
        if rest.is_empty() {
            return Err(RoutineError::invalid(
                "template",
                format!("{} needs a time and a text: {}", t.name, t.summary),
            ));
        }
        let (trigger, text) = split_trigger(rest, "at", 7, svc.clock.now(), chat_zone(ctx.chat))?;
        if text.is_empty() {
            return Err(RoutineError::invalid(
                "prompt",
                format!("is missing: {}", t.summary),
            ));
        }
        req.triggers = vec![trigger];
        req.prompt = format!("{}{}", t.prompt, super::model::literal(&text));
        req.name = None; // several reminders may coexist: named from the text
    } else if !rest.is_empty() {
        req.triggers = vec![rest.to_string()]; // the group's own schedule
    }
    let c = super::create(svc, req).await?;
    Ok(created_text(&c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn splits_trigger_and_prompt() {
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap();
        let z = Tz::UTC;
        let ok = |a: &str, k: &str| split_trigger(a, k, 7, now, z).unwrap();
        assert_eq!(
            ok("30m check the washing", "every"),
            ("every 30m".into(), "check the washing".into())
        );
        assert_eq!(
            ok("2 hours 15 minutes water plants", "every"),
            ("every 2 hours 15 minutes".into(), "water plants".into())
        );
        assert_eq!(
            ok("in 2 weeks renew the car insurance", "at"),
            ("at in 2 weeks".into(), "renew the car insurance".into())
        );
        assert_eq!(
            ok("tomorrow 09:00 call the plumber", "at"),
            ("at tomorrow 09:00".into(), "call the plumber".into())
        );
        let err = split_trigger("10s nudge me", "every", 7, now, z)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "trigger: interval: 10s is too short; the minimum is 30s"
        );
        let err = split_trigger("2020-01-01 09:00 x", "at", 7, now, z)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("trigger: at: 2020-01-01 09:00 is in the past"),
            "{err}"
        );
    }
}
