//! `hearth runs list [--routine NAME] [--chat ID] [--limit N]` and `hearth runs show ID`: runs as
//! plain text for operators (issue 9, item 12). Reads the store only.
//!
//! Uses: store, routines::{runs, progress}.

use chrono::{DateTime, Utc};

use super::{
    progress::status_word,
    runs::{self, fmt_duration},
};
use crate::store::{RunFilter, Store};

/// One line per run, newest first: id, routine, chat, status, start (UTC), duration, tokens,
/// cost, step; with `routine`, then each matching routine's analytics ([`runs::Stats`]).
/// `routine` may match routines of several chats (narrow with `chat`).
///
/// Errors: an unknown routine name, storage.
pub async fn list(
    store: &Store,
    routine: Option<&str>,
    chat: Option<i64>,
    limit: u64,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    let mut routine_ids: Vec<Option<i64>> = vec![None];
    let mut summaries = String::new();
    if let Some(name) = routine {
        let found: Vec<_> = store
            .routines_named(name)
            .await?
            .into_iter()
            .filter(|r| chat.is_none_or(|c| r.chat_id == c))
            .collect();
        if found.is_empty() {
            anyhow::bail!("no routine named '{name}'");
        }
        for r in &found {
            let st = runs::stats(store, r, now).await?;
            summaries.push_str(&format!(
                "{} in chat {}: {}\n",
                r.name,
                r.chat_id,
                st.summary()
            ));
        }
        routine_ids = found.into_iter().map(|r| Some(r.id)).collect();
    }
    let mut rows = Vec::new();
    for rid in routine_ids {
        rows.extend(
            store
                .runs_where(&RunFilter {
                    routine_id: rid,
                    chat_id: chat,
                    active_only: false,
                    limit,
                })
                .await?,
        );
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.id));
    rows.truncate(limit as usize);
    if rows.is_empty() {
        return Ok(format!("{summaries}no runs\n"));
    }
    let mut out =
        String::from("id\troutine\tchat\tstatus\tstarted (UTC)\tduration\ttokens\tcost\tstep\n");
    for r in rows {
        let Some(v) = runs::load_from(store, r.id).await? else {
            continue;
        };
        let (pt, ct) = v.tokens();
        let step = if v.step_count() > 0 {
            let p = v.run.current_step.max(0) as usize;
            format!("{}/{} {}", p + 1, v.step_count(), v.step_label(p))
        } else {
            "-".into()
        };
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t${:.4}\t{}\n",
            v.run.id,
            v.routine.name,
            v.chat_id(),
            status_word(&v),
            v.run.started_at.format("%Y-%m-%d %H:%M:%S"),
            fmt_duration(v.elapsed(now)),
            pt + ct,
            v.cost(),
            step
        ));
    }
    out.push_str(&summaries);
    Ok(out)
}

/// A run in full: header, inputs, then every step run (all attempts) with its whole output.
///
/// Errors: no such run, storage.
pub async fn show(store: &Store, id: i64, now: DateTime<Utc>) -> anyhow::Result<String> {
    let Some(v) = runs::load_from(store, id).await? else {
        anyhow::bail!("no run {id}");
    };
    let (pt, ct) = v.tokens();
    let mut out = format!(
        "run {id} of {} (routine {}, chat {})\nstatus: {}\nsource: {}\nstarted: {} UTC\nduration: {}\ntokens: {} prompt + {} completion\ncost: ${:.4}\n",
        v.routine.name,
        v.routine.id,
        v.chat_id(),
        status_word(&v),
        v.run.source,
        v.run.started_at.format("%Y-%m-%d %H:%M:%S"),
        fmt_duration(v.elapsed(now)),
        pt,
        ct,
        v.cost()
    );
    if let Some(w) = v.waiting_text(chrono_tz::Tz::UTC) {
        out.push_str(&format!("{w}\n"));
    }
    out.push_str(&format!(
        "inputs: {}\n",
        v.run.input.as_deref().unwrap_or("{}")
    ));
    for s in &v.steps {
        out.push_str(&format!(
            "\n== step {} {} (attempt {}) — {} · {} · {} tok · ${:.4}\n",
            s.position + 1,
            v.step_label(s.position.max(0) as usize),
            s.attempt,
            s.status,
            fmt_duration(chrono::Duration::milliseconds(s.duration_ms)),
            s.prompt_tokens as i64 + s.completion_tokens as i64,
            s.cost_usd
        ));
        if let Some(i) = &s.input {
            out.push_str(&format!("input:\n{i}\n"));
        }
        if let Some(o) = &s.output {
            out.push_str(&format!("output:\n{o}\n"));
        }
        if let Some(r) = &s.reason {
            out.push_str(&format!("reason: {r}\n"));
        }
        if let Some(e) = &s.error {
            out.push_str(&format!("error: {e}\n"));
        }
    }
    Ok(out)
}
