//! Chore stats and the leaderboard of a group, per period.
//!
//! Owns: the period arithmetic (week = ISO week, month = calendar month, both in the group's
//! zone; all), the per-member figures (completions, on-time rate, points, currently overdue
//! chores) and their HTML rendering, and the leaderboard chart's bars. Only group chores count:
//! personal chores live in their owner's private chat and never reach these queries.
//! Uses: store, services, the chores service (zone, overdue rule), format, `chart`.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveTime, Utc};
use chrono_tz::Tz;

use super::{is_overdue, week_start, zone_of};
use crate::{
    format::escape_html as e,
    schedule::resolve_local,
    services::Services,
    store::{ChoreRow, CompletionRow, StoreResult},
};

/// The span stats cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Since Monday 00:00 in the group's zone.
    Week,
    /// Since the 1st 00:00 in the group's zone.
    Month,
    /// Everything recorded.
    All,
}

impl Period {
    /// "week" | "month" | "all" (also "" → week). Unknown words → `None`.
    pub fn parse(s: &str) -> Option<Period> {
        match s.trim().to_lowercase().as_str() {
            "" | "week" | "this week" => Some(Period::Week),
            "month" | "this month" => Some(Period::Month),
            "all" | "ever" | "all time" => Some(Period::All),
            _ => None,
        }
    }

    /// "this week" | "this month" | "all time".
    pub fn label(self) -> &'static str {
        match self {
            Period::Week => "this week",
            Period::Month => "this month",
            Period::All => "all time",
        }
    }

    /// The period's start (UTC) at `now` in `zone`; `None` for all time.
    pub fn start(self, now: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        match self {
            Period::Week => Some(week_start(now, zone)),
            Period::Month => {
                let d = now.with_timezone(&zone).date_naive().with_day(1)?;
                Some(resolve_local(d.and_time(NaiveTime::MIN), zone))
            }
            Period::All => None,
        }
    }
}

/// One member's figures for a period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberStats {
    pub user_id: i64,
    pub completions: u32,
    /// Completions done at or before their due time.
    pub on_time: u32,
    pub points: i64,
    /// Open chores assigned to them that are overdue now.
    pub overdue: u32,
}

impl MemberStats {
    /// On-time completions in percent of completions (rounded down); `None` when there were no
    /// completions: a rate over nothing is not 100%.
    pub fn on_time_pct(&self) -> Option<u32> {
        (self.on_time * 100).checked_div(self.completions)
    }
}

/// Per-member figures from `completions` (already limited to the period) and the group's open
/// `chores` at `now`; best first (points, then completions, then user id).
pub fn compute(
    completions: &[CompletionRow],
    chores: &[ChoreRow],
    now: DateTime<Utc>,
) -> Vec<MemberStats> {
    let mut by: BTreeMap<i64, MemberStats> = BTreeMap::new();
    for c in completions {
        let m = by.entry(c.user_id).or_insert_with(|| MemberStats {
            user_id: c.user_id,
            ..Default::default()
        });
        m.completions += 1;
        m.on_time += u32::from(c.on_time);
        m.points += i64::from(c.points);
    }
    for c in chores.iter().filter(|c| !c.personal && is_overdue(c, now)) {
        if let Some(a) = c.assignee_id {
            by.entry(a)
                .or_insert_with(|| MemberStats {
                    user_id: a,
                    ..Default::default()
                })
                .overdue += 1;
        }
    }
    let mut v: Vec<MemberStats> = by.into_values().collect();
    v.sort_by(|a, b| {
        b.points
            .cmp(&a.points)
            .then(b.completions.cmp(&a.completions))
            .then(a.user_id.cmp(&b.user_id))
    });
    v
}

/// The figures of group `chat_id` for `period` at the clock's now.
pub async fn group_stats(
    svc: &Services,
    chat_id: i64,
    period: Period,
) -> StoreResult<Vec<MemberStats>> {
    let now = svc.clock.now();
    let since = period.start(now, zone_of(svc, chat_id).await?);
    let done: Vec<CompletionRow> = svc.store.completions(chat_id, since).await?;
    let chores = svc.store.open_chores(chat_id).await?;
    Ok(compute(&done, &chores, now))
}

/// The `/stats` message: one line per member ("Alice: 2 done, 50% on time, 3 pts, 1 overdue";
/// a member with no completions in the period reads "nothing done, 1 overdue", never a rate),
/// then the chores overdue now by name ("#3 Bins (Bob)"), so "1 overdue" can be acted on.
pub async fn stats_html(svc: &Services, chat_id: i64, period: Period) -> StoreResult<String> {
    let rows = group_stats(svc, chat_id, period).await?;
    let now = svc.clock.now();
    let overdue: Vec<ChoreRow> = svc
        .store
        .open_chores(chat_id)
        .await?
        .into_iter()
        .filter(|c| !c.personal && is_overdue(c, now))
        .collect();
    if rows.is_empty() && overdue.is_empty() {
        return Ok(format!("No chores done {} yet.", period.label()));
    }
    let ids: Vec<i64> = rows
        .iter()
        .map(|r| r.user_id)
        .chain(overdue.iter().filter_map(|c| c.assignee_id))
        .collect();
    let names = crate::workflow::render::names(svc, &ids).await?;
    let name = |id: i64| e(names.get(&id).map(String::as_str).unwrap_or("?"));
    let mut s = format!("<b>Chore stats, {}</b>\n", period.label());
    for r in &rows {
        let done = match r.on_time_pct() {
            Some(pct) => format!("{} done, {pct}% on time, {} pts", r.completions, r.points),
            None => "nothing done".to_string(),
        };
        let late = if r.overdue > 0 {
            format!(", {} overdue", r.overdue)
        } else {
            String::new()
        };
        s.push_str(&format!("{}: {done}{late}\n", name(r.user_id)));
    }
    if rows.iter().all(|r| r.completions == 0) {
        s.push_str(&format!("No chores done {} yet.\n", period.label()));
    }
    if !overdue.is_empty() {
        let list: Vec<String> = overdue
            .iter()
            .map(|c| {
                let who = c
                    .assignee_id
                    .map(name)
                    .unwrap_or_else(|| "unassigned".into());
                format!("#{} {} ({who})", c.id, e(&c.title))
            })
            .collect();
        s.push_str(&format!("⚠️ Overdue now: {}\n", list.join(", ")));
    }
    Ok(s.trim_end().to_string())
}

/// The leaderboard: (HTML text, names with points best first) for `period`.
pub async fn leaderboard(
    svc: &Services,
    chat_id: i64,
    period: Period,
) -> StoreResult<(String, Vec<(String, u32)>)> {
    let rows = group_stats(svc, chat_id, period).await?;
    let rows: Vec<&MemberStats> = rows.iter().filter(|r| r.completions > 0).collect();
    let ids: Vec<i64> = rows.iter().map(|r| r.user_id).collect();
    let names = crate::workflow::render::names(svc, &ids).await?;
    let bars: Vec<(String, u32)> = rows
        .iter()
        .map(|r| {
            (
                names.get(&r.user_id).cloned().unwrap_or_else(|| "?".into()),
                u32::try_from(r.points.max(0)).unwrap_or(u32::MAX),
            )
        })
        .collect();
    if bars.is_empty() {
        return Ok((format!("🏆 No chores done {} yet.", period.label()), bars));
    }
    let mut s = format!("🏆 <b>Leaderboard, {}</b>\n", period.label());
    for (i, (n, p)) in bars.iter().enumerate() {
        let medal = ["🥇", "🥈", "🥉"].get(i).copied().unwrap_or("•");
        s.push_str(&format!("{medal} {}: {p} pts\n", e(n)));
    }
    Ok((s.trim_end().to_string(), bars))
}

/// Send the leaderboard to `chat_id`: a chart image with the text as its caption (the text
/// alone when the chart can't be drawn or sent).
pub async fn send_leaderboard(svc: &Services, chat_id: i64, period: Period) -> anyhow::Result<()> {
    let (html, bars) = leaderboard(svc, chat_id, period).await?;
    if !bars.is_empty() {
        let title = format!("Leaderboard, {}", period.label());
        // Drawing (fonts, rasterising, PNG encoding) is CPU work of tens of milliseconds: it runs
        // on the blocking pool so the async workers keep serving other chats meanwhile.
        let drawn = tokio::task::spawn_blocking(move || {
            let chart_bars: Vec<crate::plots::leaderboard::Bar<'_>> = bars
                .iter()
                .map(|(n, p)| crate::plots::leaderboard::Bar {
                    label: n,
                    value: *p,
                })
                .collect();
            crate::plots::leaderboard::leaderboard_png(&title, &chart_bars, 640, 360)
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|join| Err(format!("chart task failed: {join}")));
        match drawn {
            Ok(png) => match svc.outbox.send_photo(chat_id, png, &html).await {
                Ok(()) => return Ok(()),
                Err(err) => tracing::warn!(chat_id, error = %err, "leaderboard chart not sent"),
            },
            Err(err) => tracing::warn!(chat_id, error = %err, "leaderboard chart not drawn"),
        }
    }
    svc.outbox
        .send(crate::types::Outbound::html(chat_id, html))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_start_in_the_group_zone() {
        let z = chrono_tz::Europe::London;
        let now: DateTime<Utc> = "2026-11-21T10:00:00Z".parse().unwrap();
        assert_eq!(
            Period::Week.start(now, z),
            Some("2026-11-16T00:00:00Z".parse().unwrap())
        );
        assert_eq!(
            Period::Month.start(now, z),
            Some("2026-11-01T00:00:00Z".parse().unwrap())
        );
        assert_eq!(Period::All.start(now, z), None);
        assert_eq!(Period::parse("Month"), Some(Period::Month));
        assert_eq!(Period::parse("fortnight"), None);
    }
}
