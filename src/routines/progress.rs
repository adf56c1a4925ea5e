//! A run's progress message (issue 9, item 10): one message per run, sent at the first refresh
//! and then edited in place (its id is `routine_runs.progress_message_id`), coalesced to at most
//! one edit a second per run (Telegram's limits; OpenClaw hit 429s editing too fast). The final
//! state is always written: a refresh that comes too soon marks the run pending and one delayed
//! task writes whatever the rows say when the second is up.
//!
//! The message (HTML, user text escaped):
//!
//! ```text
//! meal_plan · run 12 · running
//! ✓ 1 Plan · 4 s · 812 tok
//!   Monday: lentil curry …            (each finished step's output, clipped)
//! ◉ 2 Shopping list…
//! ○ 3 Approval
//! 812 tok · $0.0021 · full text: /run_show 12
//! ```
//!
//! Marks: ✓ completed, ◉ running, ⏸ waiting (or the whole run paused), ✗ failed, ↷ skipped,
//! ⚠ interrupted, ○ not started. Runs of single-prompt routines (no definition) get no progress
//! message: their reply is the output.
//!
//! Uses: services (store, outbox), routines::{runs, run_buttons}, format.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::runs::{self, fmt_duration, RunView};
use crate::{
    format::escape_html as e,
    services::Services,
    store::{RunRow, RunStatus, StepStatus},
    types::{Button, Outbound},
};

/// The least time between two edits of one run's message.
pub const MIN_EDIT_INTERVAL: Duration = Duration::from_secs(1);
/// Characters of a step's output shown (before the per-message budget shrinks it).
pub const OUTPUT_CLIP: usize = 300;
/// Characters of output in one message, all steps together (Telegram's limit is 4096).
const OUTPUT_BUDGET: usize = 2400;

/// Per run: when its message was last written and what is queued.
#[derive(Debug, Default)]
struct Slot {
    last: Option<Instant>,
    /// A write is in flight.
    busy: bool,
    /// A refresh came while busy or too soon: write again.
    pending: bool,
    /// A delayed write is scheduled.
    timer: bool,
    /// Hash of what the message shows now (an identical edit is not sent).
    shown: Option<u64>,
    /// The run as its executor ended it ([`refresh_ended`]): a delayed write reads only the run
    /// row, and uses this view when the row still shows that end.
    ended: Option<Box<RunView>>,
}

/// The pacing state of one process's progress messages: per run, when its message was last
/// written and what is queued. Lives in [`Services`] (one per process core; tests build many
/// cores in one process, so a global would mix their runs).
#[derive(Clone, Default)]
pub struct Pacer(std::sync::Arc<Mutex<HashMap<i64, Slot>>>);

impl Pacer {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Slot>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forget the slots that no longer pace anything: no write in flight or scheduled, and the
    /// last write at least [`MIN_EDIT_INTERVAL`] ago (a write now would be allowed anyway). A run
    /// parked on a wait, a gate or a pause would otherwise keep its slot until it ends (issue 9:
    /// memory with 10,000 waiting runs). What is lost is only `shown`: the first refresh after
    /// the run wakes may re-send an identical edit, which the Bot API answers "message is not
    /// modified" (treated as success). Called from the engine's sweep (once a second).
    /// Returns how many slots were forgotten.
    pub fn prune(&self) -> usize {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, s| {
            s.busy
                || s.timer
                || s.pending
                || s.ended.is_some()
                || s.last.is_some_and(|l| l.elapsed() < MIN_EDIT_INTERVAL)
        });
        before - map.len()
    }

    /// Slots held (runs whose progress message is being paced).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// No slot is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What [`refresh`] should do now.
enum Now {
    Write,
    Later(Duration),
    Nothing,
}

/// Send or edit the run's progress message to match its rows now (coalesced, see the module).
/// Errors are logged, not returned: progress never stops a run.
pub async fn refresh(svc: &Services, run_id: i64) {
    refresh_known(svc, run_id, |_| None).await
}

/// [`refresh`] by a caller that already holds the run's routine, snapshot and step runs (the
/// executor): when the message is written now, only the run row is read and `known(run)` gives
/// the view (`None`: read it all, e.g. when the run left the caller's hands meanwhile). A
/// delayed write reads everything when it happens.
pub async fn refresh_known(
    svc: &Services,
    run_id: i64,
    known: impl FnOnce(RunRow) -> Option<RunView>,
) {
    let k = run_id;
    let decision = {
        let mut map = svc.progress.lock();
        let slot = map.entry(k).or_default();
        if slot.busy || slot.timer {
            slot.pending = true;
            Now::Nothing
        } else {
            match slot.last.map(|l| l.elapsed()) {
                Some(since) if since < MIN_EDIT_INTERVAL => {
                    slot.timer = true;
                    slot.pending = false;
                    Now::Later(MIN_EDIT_INTERVAL - since)
                }
                _ => {
                    slot.busy = true;
                    Now::Write
                }
            }
        }
    };
    match decision {
        Now::Nothing => {}
        Now::Later(d) => schedule(svc.clone(), run_id, d),
        Now::Write => write_and_settle(svc, run_id, Some(known)).await,
    }
}

/// [`refresh`] by the executor that just ended the run: `view` is the run as it ended it
/// (`view.run.status` the end status it wrote; its step runs as written). Whether the message is
/// written now or later, only the run row is read, and the view is used while the row still
/// shows that end (else everything is read: the run was retried meanwhile).
pub async fn refresh_ended(svc: &Services, view: RunView) {
    let run_id = view.run.id;
    let status = view.run.status;
    svc.progress.lock().entry(run_id).or_default().ended = Some(Box::new(view.clone()));
    let mut view = Some(view);
    refresh_known(svc, run_id, |run| {
        if run.status != status {
            return None;
        }
        view.take().map(|v| RunView { run, ..v })
    })
    .await;
}

/// Write once, then: schedule one more write when refreshes came meanwhile, else forget the
/// run's slot when the run has ended (the map holds only live runs).
async fn write_and_settle(
    svc: &Services,
    run_id: i64,
    known: Option<impl FnOnce(RunRow) -> Option<RunView>>,
) {
    let (ended, wrote) = write(svc, run_id, known).await;
    let k = run_id;
    let again = {
        let mut map = svc.progress.lock();
        let slot = map.entry(k).or_default();
        slot.busy = false;
        if wrote {
            slot.last = Some(Instant::now());
        }
        if slot.pending {
            slot.pending = false;
            slot.timer = true;
            true
        } else {
            if ended && !slot.timer {
                map.remove(&k);
            }
            false
        }
    };
    if again {
        schedule(svc.clone(), run_id, MIN_EDIT_INTERVAL);
    }
}

fn schedule(svc: Services, run_id: i64, after: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        {
            let mut map = svc.progress.lock();
            let slot = map.entry(run_id).or_default();
            slot.timer = false;
            slot.pending = false;
            slot.busy = true;
        }
        write_and_settle(&svc, run_id, None::<fn(RunRow) -> Option<RunView>>).await;
    });
}

/// Render and send or edit. Returns (the run has ended or is gone, a message was sent or
/// edited).
async fn write(
    svc: &Services,
    run_id: i64,
    known: Option<impl FnOnce(RunRow) -> Option<RunView>>,
) -> (bool, bool) {
    let view = match known {
        Some(k) => match svc.store.run(run_id).await {
            Ok(Some(run)) => match k(run) {
                Some(v) => Ok(Some(v)),
                None => runs::load(svc, run_id).await,
            },
            Ok(None) => Ok(None),
            Err(e) => Err(e.into()),
        },
        None => {
            let stash = svc
                .progress
                .lock()
                .get_mut(&run_id)
                .and_then(|s| s.ended.take());
            match stash {
                Some(v) => match svc.store.run(run_id).await {
                    Ok(Some(run)) if run.status == v.run.status => Ok(Some(RunView { run, ..*v })),
                    Ok(Some(_)) => runs::load(svc, run_id).await,
                    Ok(None) => Ok(None),
                    Err(e) => Err(e.into()),
                },
                None => runs::load(svc, run_id).await,
            }
        }
    };
    let v = match view {
        Ok(Some(v)) => v,
        Ok(None) => return (true, false),
        Err(err) => {
            tracing::warn!(run_id, error = %err, "progress: could not load the run");
            return (false, false);
        }
    };
    let ended = !v.run.status.is_active();
    // a single-prompt routine's run: its reply is the output
    if v.routine.definition.is_none() || v.definition.is_none() {
        return (ended, false);
    }
    let html = render(&v);
    let buttons = super::run_buttons::for_run(&v.run);
    let chat_id = v.chat_id();
    let fingerprint = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        html.hash(&mut h);
        for b in buttons.iter().flatten() {
            b.data.hash(&mut h);
        }
        h.finish()
    };
    {
        let mut map = svc.progress.lock();
        let slot = map.entry(run_id).or_default();
        if v.run.progress_message_id.is_some() && slot.shown == Some(fingerprint) {
            return (ended, false); // Telegram refuses an edit that changes nothing
        }
        slot.shown = Some(fingerprint);
    }
    match v.run.progress_message_id {
        Some(mid) => {
            if let Err(err) = svc.outbox.edit(chat_id, mid, &html, &buttons).await {
                tracing::warn!(run_id, error = %err, "progress message not edited");
                // not shown: the next refresh tries again even with the same text
                let mut map = svc.progress.lock();
                if let Some(slot) = map.get_mut(&run_id) {
                    slot.shown = None;
                }
            }
        }
        None => {
            let out = Outbound {
                chat_id,
                html,
                buttons,
                reply_to: None,
            };
            match svc.outbox.send_notice(out).await {
                Ok(sent) => {
                    if let Some(first) = sent.first() {
                        if let Err(err) = svc
                            .store
                            .set_progress_message(run_id, first.message_id)
                            .await
                        {
                            tracing::warn!(run_id, error = %err, "progress message id not stored");
                        }
                    }
                }
                Err(err) => tracing::warn!(run_id, error = %err, "progress message not sent"),
            }
        }
    }
    (ended, true)
}

/// The status word of a run for headers ("running", "waiting", "failed: cost limit").
pub fn status_word(v: &RunView) -> String {
    match (&v.run.status, &v.run.reason) {
        (RunStatus::Failed, Some(r)) => format!("failed: {r}"),
        (s, _) => s.to_string(),
    }
}

/// The mark of the step at `position` given the run's state.
fn mark(v: &RunView, position: usize) -> &'static str {
    match v.latest(position).map(|s| s.status) {
        Some(StepStatus::Completed) => "✓",
        Some(StepStatus::Running) if v.run.status == RunStatus::Paused => "⏸",
        Some(StepStatus::Running) => "◉",
        Some(StepStatus::Waiting) => "⏸",
        Some(StepStatus::Failed) => "✗",
        Some(StepStatus::Skipped) => "↷",
        Some(StepStatus::Interrupted) => "⚠",
        Some(StepStatus::Pending) => "○",
        None if !v.run.status.is_active() => "↷",
        None if position as i32 == v.run.current_step && v.run.status == RunStatus::Running => "◉",
        None => "○",
    }
}

/// `s` cut to `max` characters (newlines kept), with "…" when cut.
pub fn clip_block(s: &str, max: usize) -> String {
    let t = s.trim();
    if t.chars().count() <= max {
        return t.to_string();
    }
    let mut out: String = t.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The progress message of run `v` (HTML), within one Telegram message: outputs are clipped to
/// [`OUTPUT_CLIP`] characters, shorter still (down to none) when many steps have output.
pub fn render(v: &RunView) -> String {
    let mut clip = OUTPUT_CLIP;
    loop {
        let html = render_clipped(v, clip);
        if clip == 0 || crate::format::visible_len(&html) <= MAX_VISIBLE {
            return html;
        }
        clip = if clip > 40 { clip / 2 } else { 0 };
    }
}

/// Room for the progress message: below Telegram's 4096 (an edit cannot be split).
const MAX_VISIBLE: usize = 3900;

fn render_clipped(v: &RunView, max_clip: usize) -> String {
    let id = v.run.id;
    let zone = runs::zone(v);
    let mut lines = vec![format!(
        "<b>{}</b> · run {id} · {}",
        e(&v.routine.name),
        e(&status_word(v))
    )];
    let n = v.step_count();
    let done = (0..n)
        .filter(|p| v.latest(*p).is_some_and(|s| s.output.is_some()))
        .count()
        .max(1);
    let clip = max_clip.min(OUTPUT_BUDGET / done);
    let mut clipped = false;
    for p in 0..n {
        let m = mark(v, p);
        let label = v.step_label(p);
        let step = v.latest(p);
        let mut line = format!("{m} {} {}", p + 1, e(&label));
        match step {
            Some(s) if s.status == StepStatus::Completed => {
                line.push_str(&format!(
                    " · {}",
                    fmt_duration(chrono::Duration::milliseconds(s.duration_ms))
                ));
                let tok = s.prompt_tokens as i64 + s.completion_tokens as i64;
                if tok > 0 {
                    line.push_str(&format!(" · {tok} tok"));
                }
            }
            Some(s) if s.status == StepStatus::Running && m == "◉" => line.push('…'),
            Some(s) if s.status == StepStatus::Waiting => {
                if let Some(w) = v.waiting_text(zone) {
                    line.push_str(&format!(" — {}", e(&w)));
                }
            }
            Some(s) if s.status == StepStatus::Interrupted => {
                line.push_str(" — interrupted: Retry or Skip?")
            }
            None if m == "◉" => line.push('…'),
            _ => {}
        }
        lines.push(line);
        if let Some(s) = step {
            let body = match s.status {
                StepStatus::Failed => s.error.as_deref().or(s.output.as_deref()),
                StepStatus::Completed => s.output.as_deref(),
                _ => None,
            };
            if let Some(b) = body.filter(|b| !b.trim().is_empty() && clip > 0) {
                let c = clip_block(b, clip);
                clipped |= c.chars().count() < b.trim().chars().count();
                lines.push(format!("<blockquote>{}</blockquote>", e(&c)));
            }
        }
    }
    if v.run.status == RunStatus::Paused {
        lines.push(format!("Paused; /run_resume {id} continues it."));
    } else if v.run.status == RunStatus::Waiting && v.run.waiting_for.is_some() {
        let waiting_on_step = v
            .latest(v.run.current_step.max(0) as usize)
            .is_some_and(|s| s.status == StepStatus::Waiting);
        if !waiting_on_step {
            if let Some(w) = v.waiting_text(zone) {
                lines.push(format!("⏸ {}", e(&w)));
            }
        }
    }
    let (pt, ct) = v.tokens();
    let mut foot = format!("{} tok · ${:.4}", pt + ct, v.cost());
    if clipped || !v.run.status.is_active() {
        foot.push_str(&format!(" · full text: /run_show {id}"));
    }
    lines.push(foot);
    lines.join("\n")
}

/// Buttons of a progress message (none unless the run waits on a cost question or an
/// interrupted step). Kept here for the renderer's callers.
pub fn buttons(v: &RunView) -> Vec<Vec<Button>> {
    super::run_buttons::for_run(&v.run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_forgets_only_slots_that_pace_nothing() {
        let pacer = Pacer::default();
        let long_ago = Instant::now()
            .checked_sub(MIN_EDIT_INTERVAL * 2)
            .expect("uptime over two seconds");
        {
            let mut map = pacer.lock();
            // parked runs written long ago, or never: forgotten
            map.insert(
                1,
                Slot {
                    last: Some(long_ago),
                    shown: Some(7),
                    ..Slot::default()
                },
            );
            map.insert(2, Slot::default());
            // still pacing: kept
            map.insert(
                3,
                Slot {
                    last: Some(Instant::now()),
                    ..Slot::default()
                },
            );
            map.insert(
                4,
                Slot {
                    last: Some(long_ago),
                    busy: true,
                    ..Slot::default()
                },
            );
            map.insert(
                5,
                Slot {
                    last: Some(long_ago),
                    timer: true,
                    ..Slot::default()
                },
            );
            map.insert(
                6,
                Slot {
                    last: Some(long_ago),
                    pending: true,
                    ..Slot::default()
                },
            );
        }
        assert_eq!(pacer.prune(), 2);
        let mut left: Vec<i64> = pacer.lock().keys().copied().collect();
        left.sort_unstable();
        assert_eq!(left, vec![3, 4, 5, 6]);
        assert_eq!(pacer.prune(), 0);
    }
}
