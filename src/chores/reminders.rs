//! Chore reminders: due soon, overdue, the daily summary and the weekly leaderboard.
//!
//! Owns: when each reminder is due (moments computed in each group's IANA zone from the
//! clock's `now`), where it goes (the group, or with `/reminders dm` the assignee's private
//! chat; personal chores always to their owner in private), and the once-only rule: every
//! reminder has a unique key — `due_soon:<chore>:<due>`, `overdue:<chore>:<due>`,
//! `summary:<chat>:<local date>`, `leaderboard:<chat>:<ISO year-week>` — inserted into
//! `chore_reminders` *before* sending (insert-or-skip), so a restart or a second process never
//! sends it twice. A failed send is logged and not retried (at most once, never twice).
//! Archived and completed chores get nothing; a chore waiting for verification gets no overdue
//! nudge. Overdue group chores also publish `HearthEvent::ChoreOverdue` (the `overdue-nudge`
//! routine listens).
//!
//! [`run`] is a plain function the scheduler calls every minute (`app::start_scheduler`); with
//! replicas one process at a time runs it (the lease `job:chore-reminders`, `app::jobs`), and the
//! claims keep it once-only even where two runs overlap.
//! Uses: store, services, events, the chores service, `stats` (leaderboard), schedule, format.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;

use super::{is_overdue, stats, zone_of};
use crate::{
    events::HearthEvent,
    format::escape_html as e,
    services::Services,
    store::{ChatRow, ChoreRow, ChoreStatus, StoreResult},
    types::Outbound,
};

/// How long before its due time a "due soon" reminder is sent.
pub const DUE_SOON: Duration = Duration::hours(2);
/// Local time of the daily summary.
pub const SUMMARY_AT: NaiveTime = match NaiveTime::from_hms_opt(8, 0, 0) {
    Some(t) => t,
    None => panic!("valid time"),
};
/// The summary is still sent this long after [`SUMMARY_AT`] (hearth was down at 08:00);
/// later that day it is skipped rather than sent at an odd hour.
pub const SUMMARY_WINDOW: Duration = Duration::hours(4);
/// Day and local time of the weekly leaderboard (sent until midnight if hearth was down).
pub const LEADERBOARD_DAY: Weekday = Weekday::Sun;
/// Local time of the weekly leaderboard.
pub const LEADERBOARD_AT: NaiveTime = match NaiveTime::from_hms_opt(18, 0, 0) {
    Some(t) => t,
    None => panic!("valid time"),
};

/// Where a group's reminders go: "group" (default) or "dm".
pub const TO_GROUP: &str = "group";
/// Reminders to the assignee's private chat.
pub const TO_DM: &str = "dm";

/// Send every reminder due at `now` that was not sent before. Returns how many were sent
/// (claimed). Errors: storage only (delivery failures are logged).
pub async fn run(svc: &Services, now: DateTime<Utc>) -> StoreResult<usize> {
    let mut sent = 0;
    let mut zones: HashMap<i64, Tz> = HashMap::new();
    let mut chats: HashMap<i64, Option<ChatRow>> = HashMap::new();
    for c in svc.store.all_open_chores().await? {
        let Some(due) = c.next_due.filter(|_| c.status == ChoreStatus::Todo) else {
            continue;
        };
        let kind = if is_overdue(&c, now) {
            "overdue"
        } else if due - now <= DUE_SOON {
            "due_soon"
        } else {
            continue;
        };
        let key = format!("{kind}:{}:{}", c.id, due.timestamp());
        if !svc.store.claim_reminder(&key, c.chat_id, kind, now).await? {
            continue;
        }
        sent += 1;
        if let std::collections::hash_map::Entry::Vacant(v) = zones.entry(c.chat_id) {
            v.insert(zone_of(svc, c.chat_id).await?);
        }
        if let std::collections::hash_map::Entry::Vacant(v) = chats.entry(c.chat_id) {
            v.insert(svc.store.chat(c.chat_id).await?);
        }
        let zone = zones[&c.chat_id];
        let to_dm = chats[&c.chat_id]
            .as_ref()
            .is_some_and(|ch| ch.reminders == TO_DM);
        let to = destination(&c, to_dm);
        let html = chore_reminder(svc, &c, kind, due, zone, to != c.chat_id || c.personal).await?;
        if kind == "overdue" && !c.personal {
            svc.events.publish(HearthEvent::ChoreOverdue {
                chat_id: c.chat_id,
                chore_id: c.id,
                title: c.title.clone(),
                assignee_id: c.assignee_id,
            });
        }
        deliver(svc, to, html).await;
    }
    for chat in svc.store.group_chats().await? {
        let zone = crate::schedule::parse_zone(&chat.timezone).unwrap_or(svc.config.group.timezone);
        let local = now.with_timezone(&zone);
        let since_summary = local.time().signed_duration_since(SUMMARY_AT);
        if since_summary >= Duration::zero() && since_summary < SUMMARY_WINDOW {
            let key = format!("summary:{}:{}", chat.id, local.date_naive());
            let open = super::list_open(svc, chat.id, super::ListFilter::Open).await?;
            if !open.is_empty()
                && svc
                    .store
                    .claim_reminder(&key, chat.id, "summary", now)
                    .await?
            {
                sent += 1;
                let html = summary(svc, &open, now, zone).await?;
                deliver(svc, chat.id, html).await;
            }
        }
        if local.weekday() == LEADERBOARD_DAY && local.time() >= LEADERBOARD_AT {
            let w = local.iso_week();
            let key = format!("leaderboard:{}:{}-W{:02}", chat.id, w.year(), w.week());
            let any = !svc.store.open_chores(chat.id).await?.is_empty();
            if any
                && svc
                    .store
                    .claim_reminder(&key, chat.id, "leaderboard", now)
                    .await?
            {
                sent += 1;
                if let Err(err) = stats::send_leaderboard(svc, chat.id, stats::Period::Week).await {
                    tracing::warn!(chat_id = chat.id, error = %err, "weekly leaderboard not delivered");
                }
            }
        }
    }
    Ok(sent)
}

/// The chat a chore's reminder goes to: a personal chore's own private chat; with `to_dm`, an
/// assigned group chore's assignee in private; otherwise the group.
fn destination(c: &ChoreRow, to_dm: bool) -> i64 {
    match (c.personal, to_dm, c.assignee_id) {
        (false, true, Some(a)) => a,
        _ => c.chat_id,
    }
}

/// "⏰ “Bins” is due at 19:00 — Bob." / "⚠️ “Bins” is overdue (due Mon 19:00) — Bob."
async fn chore_reminder(
    svc: &Services,
    c: &ChoreRow,
    kind: &str,
    due: DateTime<Utc>,
    zone: Tz,
    private: bool,
) -> StoreResult<String> {
    let local = due.with_timezone(&zone);
    let who = match (private, c.assignee_id) {
        (false, Some(a)) => crate::workflow::render::names(svc, &[a])
            .await?
            .remove(&a)
            .map(|n| format!(" — {}", e(&n)))
            .unwrap_or_default(),
        _ => String::new(),
    };
    Ok(if kind == "overdue" {
        format!(
            "⚠️ “{}” is overdue (due {}){who}. Say /done {} when it's done.",
            e(&c.title),
            local.format("%a %H:%M"),
            e(&c.title)
        )
    } else {
        format!(
            "⏰ “{}” is due at {}{who}.",
            e(&c.title),
            local.format("%H:%M")
        )
    })
}

/// The daily summary: overdue chores and those due today (local), with assignees.
async fn summary(
    svc: &Services,
    open: &[ChoreRow],
    now: DateTime<Utc>,
    zone: Tz,
) -> StoreResult<String> {
    let ids: Vec<i64> = open.iter().filter_map(|c| c.assignee_id).collect();
    let names = crate::workflow::render::names(svc, &ids).await?;
    let today = now.with_timezone(&zone).date_naive();
    let line = |c: &ChoreRow| {
        let who = c
            .assignee_id
            .and_then(|a| names.get(&a))
            .map(|n| format!(" — {}", e(n)))
            .unwrap_or_default();
        format!("• {}{who}\n", e(&c.title))
    };
    let (mut overdue, mut due_today) = (String::new(), String::new());
    for c in open {
        if is_overdue(c, now) {
            overdue.push_str(&line(c));
        } else if c
            .next_due
            .is_some_and(|d| d.with_timezone(&zone).date_naive() == today)
        {
            due_today.push_str(&line(c));
        }
    }
    let mut s = String::from("☀️ <b>Today's chores</b>\n");
    if !overdue.is_empty() {
        s.push_str(&format!("<b>Overdue</b>\n{overdue}"));
    }
    if !due_today.is_empty() {
        s.push_str(&format!("<b>Due today</b>\n{due_today}"));
    }
    if overdue.is_empty() && due_today.is_empty() {
        s.push_str("Nothing due today. /chores lists everything.\n");
    }
    Ok(s.trim_end().to_string())
}

async fn deliver(svc: &Services, chat_id: i64, html: String) {
    if let Err(err) = svc.outbox.send(Outbound::html(chat_id, html)).await {
        tracing::warn!(chat_id, error = %err, "chore reminder not delivered");
    }
}
