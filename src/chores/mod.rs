//! Chores: recurring group chores with rotation, claims and verification, personal chores with
//! an accountability partner, and what happens to chores when a member leaves.
//!
//! Owns: the chore rules — creating a chore from what a member typed (title, recurrence, `@`
//! assignees, rotation), when the next occurrence is due (in the group's IANA zone, from the
//! previous due date or from the completion: choresir forgot to reset recurring chores), who
//! does it next ([`rotation`]), finding a chore from what a member typed (id, exact, words,
//! fuzzy; ambiguity is an answer, never a guess), claims ("I did it" → a verification request;
//! someone else's chore is a *swap*, see [`MAX_SWAPS_PER_WEEK`]), assigning, editing, skipping,
//! deletion requests, and the chore changes the workflow service applies inside its
//! transitions ([`completion_change`], [`reopen_change`], [`archive_change`], handed over by
//! the chore kinds' `WorkflowTarget` hook in [`targets`]).
//! Personal chores live in the owner's private chat (`chat_id` = the owner's user id), so no
//! group query ever returns them.
//!
//! Submodules: `commands` and `tools` (the two front doors over the same functions),
//! `reminders` (the minute job), `stats` (stats and leaderboard; its PNG is drawn by `crate::plots`),
//! `rotation` (pure), `targets` (the workflow hooks). Uses: store, services, schedule (time math), workflow (to open and cancel
//! requests), events, format.

/// The leaderboard PNG, drawn in [`crate::plots`] (kept under this name for callers).
pub use crate::plots::leaderboard as chart;
pub mod commands;
pub mod reminders;
pub mod rotation;
pub mod stats;
pub mod targets;
pub mod tools;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, Days, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

pub use crate::schedule::Recurrence;
use crate::{
    schedule::{self, resolve_local, split_title_recurrence},
    services::Services,
    store::{
        ChoreChange, ChoreEdit, ChoreRow, ChoreStatus, CreateGuard, CreateRefused, NewChore,
        NewCompletion, StoreError, StoreResult, UserRow, WorkflowRow,
    },
    workflow::{self, Kind, NewRequest},
};
use rotation::Rotation;

/// Longest chore title, in characters.
pub const MAX_TITLE_CHARS: usize = 100;
/// Minimum similarity (normalized Damerau-Levenshtein) for a fuzzy title match.
const FUZZY_MIN: f64 = 0.75;
/// Fuzzy candidates within this margin of the best one make the match ambiguous.
const FUZZY_MARGIN: f64 = 0.1;
/// Local time of day a chore is due when its recurrence names none ("every 3 days" → 20:00
/// in the group's zone: household chores are done by the evening).
pub const DEFAULT_DUE_TIME: NaiveTime = match NaiveTime::from_hms_opt(20, 0, 0) {
    Some(t) => t,
    None => panic!("valid time"),
};
/// Most swaps (claiming a chore assigned to someone else) one member may make per ISO week
/// (Monday 00:00 to Monday 00:00 in the group's zone), pending claims included.
///
/// Credit rule for a swap: the member who did it gets the completion and the points; the
/// rotation does not move, so the original assignee keeps their turn for the next occurrence.
pub const MAX_SWAPS_PER_WEEK: usize = 2;
/// Most points a chore may be worth.
pub const MAX_POINTS: i32 = 100;

/// What the next due date counts from (per chore; stored by `store`).
pub use crate::store::Anchor;

/// The recurrence stored with the first chores (`{"every_days":n}`), still read.
#[derive(Deserialize)]
struct LegacyRecurrence {
    every_days: u32,
}

/// The chore's recurrence (`None` for one-off chores and unreadable values). Reads the
/// `schedule::Recurrence` JSON and the legacy `{"every_days":n}` form.
pub fn recurrence_of(c: &ChoreRow) -> Option<Recurrence> {
    let s = c.recurrence.as_deref()?;
    serde_json::from_str::<Recurrence>(s).ok().or_else(|| {
        serde_json::from_str::<LegacyRecurrence>(s)
            .ok()
            .map(|l| Recurrence::EveryDays {
                n: l.every_days.max(1),
                at: None,
            })
    })
}

/// Whether the recurrence repeats (anything but `Once`).
pub fn repeats(r: &Recurrence) -> bool {
    !matches!(r, Recurrence::Once { .. })
}

/// The first due instant (UTC) of a chore created at `now` in `zone`: the next occurrence after
/// `now`; for a one-off chore its due time, if any.
pub fn first_due(r: &Recurrence, now: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
    match r {
        Recurrence::Once { due } => due.map(|d| resolve_local(d, zone)),
        r => r.next_after(now, zone, DEFAULT_DUE_TIME),
    }
}

/// The next due instant (UTC) after a completion at `done_at`, computed in `zone`.
///
/// * [`Anchor::Completion`]: the first occurrence after `done_at`.
/// * [`Anchor::Due`]: occurrences after the previous due date `previous`; occurrences that
///   passed while the chore was late are skipped (the first one after `done_at`), so a late
///   completion never leaves the chore overdue at once and never counts twice.
///
/// `None` for a one-off chore. DST is handled by `schedule` (a daily chore is due once per
/// local day across both changes).
pub fn next_due(
    r: &Recurrence,
    anchor: Anchor,
    previous: Option<DateTime<Utc>>,
    done_at: DateTime<Utc>,
    zone: Tz,
) -> Option<DateTime<Utc>> {
    if !repeats(r) {
        return None;
    }
    let mut t = match (anchor, previous) {
        (Anchor::Due, Some(p)) => p,
        _ => done_at,
    };
    // bounded: a daily chore 27 years late is still found
    for _ in 0..10_000 {
        t = r.next_after(t, zone, DEFAULT_DUE_TIME)?;
        if t > done_at {
            return Some(t);
        }
    }
    None
}

/// A chat's zone: its stored IANA name, or the configured default (`group.timezone`).
pub async fn zone_of(svc: &Services, chat_id: i64) -> StoreResult<Tz> {
    Ok(svc
        .store
        .chat(chat_id)
        .await?
        .and_then(|c| schedule::parse_zone(&c.timezone).ok())
        .unwrap_or(svc.config.group.timezone))
}

/// The start (UTC) of the ISO week containing `now`, in `zone` (Monday 00:00 local).
pub fn week_start(now: DateTime<Utc>, zone: Tz) -> DateTime<Utc> {
    let local = now.with_timezone(&zone).date_naive();
    let monday = local
        .checked_sub_days(Days::new(u64::from(local.weekday().num_days_from_monday())))
        .unwrap_or(local);
    resolve_local(monday.and_time(NaiveTime::MIN), zone)
}

/// The start (UTC) of the ISO week after the one containing `now`, in `zone` (next Monday
/// 00:00 local; across a DST change it is still local midnight).
pub fn next_week_start(now: DateTime<Utc>, zone: Tz) -> DateTime<Utc> {
    let local = now.with_timezone(&zone).date_naive();
    let next_monday = local
        .checked_add_days(Days::new(u64::from(
            7 - local.weekday().num_days_from_monday(),
        )))
        .unwrap_or(local);
    resolve_local(next_monday.and_time(NaiveTime::MIN), zone)
}

/// When the weekly swap limit ([`MAX_SWAPS_PER_WEEK`]) resets, for people: the next ISO week's
/// start in the group's zone, "Mon 30 Nov 00:00 (Europe/London)".
pub fn swap_limit_resets(now: DateTime<Utc>, zone: Tz) -> String {
    format!(
        "{} ({})",
        next_week_start(now, zone)
            .with_timezone(&zone)
            .format("%a %-d %b %H:%M"),
        zone.name()
    )
}

/// The rotation members stored with a chore (rotation order).
pub fn rotation_members(c: &ChoreRow) -> Vec<i64> {
    c.rotation_members
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

/// The change that completes `chore` (done by `by` at `now`: for a verified claim, when it was
/// claimed), from one of `from`, with its
/// completion record: a one-off chore becomes "completed"; a recurring one goes back to "todo"
/// with its next due date ([`next_due`]) and its next assignee ([`rotation::next_assignee`];
/// a swap leaves the assignee alone, see [`MAX_SWAPS_PER_WEEK`]).
pub async fn completion_change(
    svc: &Services,
    chore: &ChoreRow,
    by: i64,
    now: DateTime<Utc>,
    from: &'static [ChoreStatus],
) -> StoreResult<ChoreChange> {
    let zone = zone_of(svc, chore.chat_id).await?;
    let rec = recurrence_of(chore).filter(repeats);
    let next = rec
        .as_ref()
        .and_then(|r| next_due(r, chore.anchor, chore.next_due, now, zone));
    let swap = !chore.personal && chore.assignee_id.is_some_and(|a| a != by);
    let assignee = if next.is_some() && !swap && !chore.personal {
        Some(next_assignee(svc, chore, Some(by), None).await?)
    } else {
        None
    };
    let (status, next_due) = match next {
        Some(n) => (ChoreStatus::Todo, Some(Some(n))),
        None => (ChoreStatus::Completed, None),
    };
    Ok(ChoreChange {
        chore_id: chore.id,
        expect: from,
        status,
        next_due,
        completed_by: Some(by),
        archive: false,
        assignee,
        record: Some(NewCompletion {
            chore_id: chore.id,
            chat_id: chore.chat_id,
            user_id: by,
            assignee_id: chore.assignee_id,
            points: chore.points,
            due_at: chore.next_due,
            completed_at: now,
            on_time: chore.next_due.is_none_or(|d| now <= d),
            swap,
        }),
    })
}

/// Who does `chore` next by its rotation, counting one more completion by `just_done` (when a
/// completion is being applied) and never choosing `leaving`.
async fn next_assignee(
    svc: &Services,
    chore: &ChoreRow,
    just_done: Option<i64>,
    leaving: Option<i64>,
) -> StoreResult<Option<i64>> {
    let mode = chore.rotation;
    let active: HashSet<i64> = svc
        .store
        .members(chore.chat_id)
        .await?
        .into_iter()
        .filter(|m| m.active && Some(m.user_id) != leaving)
        .map(|m| m.user_id)
        .collect();
    let mut done: HashMap<i64, usize> = HashMap::new();
    if mode == Rotation::LeastCompleted {
        for c in svc.store.chore_completions(chore.id).await? {
            *done.entry(c.user_id).or_default() += 1;
        }
        if let Some(u) = just_done {
            *done.entry(u).or_default() += 1;
        }
    }
    Ok(rotation::next_assignee(
        mode,
        &rotation_members(chore),
        chore.assignee_id,
        |u| active.contains(&u),
        &done,
    ))
}

/// The change that puts a chore pending verification back to to-do (rejection, expiry,
/// cancellation: choresir's expired verification left the chore stuck forever).
pub fn reopen_change(chore_id: i64) -> ChoreChange {
    ChoreChange {
        chore_id,
        expect: &[ChoreStatus::Pending],
        status: ChoreStatus::Todo,
        next_due: None,
        completed_by: None,
        archive: false,
        assignee: None,
        record: None,
    }
}

/// The change that archives (deletes) a chore.
pub fn archive_change(chore_id: i64) -> ChoreChange {
    ChoreChange {
        chore_id,
        expect: DELETABLE,
        status: ChoreStatus::Archived,
        next_due: None,
        completed_by: None,
        archive: true,
        assignee: None,
        record: None,
    }
}

/// Statuses in which a chore may be deleted.
const DELETABLE: &[ChoreStatus] = &[
    ChoreStatus::Todo,
    ChoreStatus::Pending,
    ChoreStatus::Completed,
];

/// What a member did wrong, or a storage failure. The Display text of every variant but
/// `Store` is a short user-facing sentence (plain text; escape before putting it in HTML).
#[derive(Debug, thiserror::Error)]
pub enum ChoreError {
    #[error("Give the chore a title, e.g. /addchore Water plants.")]
    EmptyTitle,
    #[error("That title is too long (at most {MAX_TITLE_CHARS} characters).")]
    TitleTooLong,
    #[error("Say which chore, e.g. /done dishes.")]
    NoQuery,
    #[error("No chore matches '{0}'. /chores lists them.")]
    NotFound(String),
    #[error("'{query}' could mean {}. Say which, e.g. #{}.", .options.join(", "), .first_id)]
    Ambiguous {
        query: String,
        /// "#3 Wash dishes" …
        options: Vec<String>,
        first_id: i64,
    },
    #[error("'{0}' is already waiting for verification.")]
    AlreadyPending(String),
    #[error("'{0}' is already done.")]
    AlreadyDone(String),
    #[error("A request to delete '{title}' is already pending.")]
    DuplicateDeletion { title: String, workflow_id: i64 },
    #[error("I don't know @{0} yet: they need to write in a group I'm in, or message me, first.")]
    UnknownPartner(String),
    #[error("Your accountability partner must be someone else.")]
    PartnerIsSelf,
    #[error("Your accountability partner must be a member of a group you share with me.")]
    PartnerNotShared,
    #[error(
        "Group chores live in a group: use this command there. In a private chat use /addpersonal."
    )]
    GroupOnly,
    #[error("Personal chores are kept in our private chat: send me this there.")]
    PrivateOnly,
    #[error("I can't read the schedule: {0}")]
    BadSchedule(String),
    #[error("'{0}' isn't a member of this group I know. They need to write here first.")]
    UnknownMember(String),
    /// `resets`: when the next ISO week starts in the group's zone, e.g. "Mon 30 Nov 00:00
    /// (Europe/London)" (see [`swap_limit_resets`]), and when pending claims count too, that
    /// they do until decided.
    #[error("You've already done {MAX_SWAPS_PER_WEEK} of other people's chores this week (the limit); '{title}' stays with its assignee. The limit resets {resets}.")]
    SwapLimit { title: String, resets: String },
    #[error("'{0}' doesn't repeat, so there is no occurrence to skip.")]
    NotRecurring(String),
    #[error("{0}")]
    BadEdit(String),
    #[error("storage failure")]
    Store(#[from] StoreError),
}

impl From<schedule::ScheduleError> for ChoreError {
    fn from(e: schedule::ScheduleError) -> Self {
        ChoreError::BadSchedule(e.to_string())
    }
}
/// The result of [`find`].
#[derive(Debug, PartialEq)]
pub enum Lookup<'a> {
    One(&'a ChoreRow),
    None,
    Many(Vec<&'a ChoreRow>),
}

/// Lower-case words of `s` (letters and digits only).
fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !matches!(w.as_str(), "the" | "a" | "an"))
        .collect()
}

/// Find the chore a member means by `query`: `#12` / `12` (id), then exact title, then the
/// query's words appearing in order in a title ("dishes" → "Wash dishes"), then a fuzzy match
/// (similarity ≥ 0.75, unambiguous within 0.1). Ties give [`Lookup::Many`].
pub fn find<'a>(chores: &'a [ChoreRow], query: &str) -> Lookup<'a> {
    let q = query.trim();
    let idq = q.strip_prefix('#').unwrap_or(q);
    if !idq.is_empty() && idq.len() <= 18 && idq.chars().all(|c| c.is_ascii_digit()) {
        if let Ok(id) = idq.parse::<i64>() {
            if let Some(c) = chores.iter().find(|c| c.id == id) {
                return Lookup::One(c);
            }
        }
    }
    let qw = words(q);
    if qw.is_empty() {
        return Lookup::None;
    }
    let pick = |v: Vec<&'a ChoreRow>| match v.len() {
        0 => None,
        1 => Some(Lookup::One(v[0])),
        _ => Some(Lookup::Many(v)),
    };
    let exact: Vec<&ChoreRow> = chores.iter().filter(|c| words(&c.title) == qw).collect();
    if let Some(l) = pick(exact) {
        return l;
    }
    let contains: Vec<&ChoreRow> = chores
        .iter()
        .filter(|c| {
            let tw = words(&c.title);
            tw.windows(qw.len()).any(|w| w == qw.as_slice())
        })
        .collect();
    if let Some(l) = pick(contains) {
        return l;
    }
    let qs = qw.join(" ");
    if qs.chars().count() < 4 {
        return Lookup::None;
    }
    let mut scored: Vec<(f64, &ChoreRow)> = chores
        .iter()
        .map(|c| {
            let ts = words(&c.title).join(" ");
            (strsim::normalized_damerau_levenshtein(&qs, &ts), c)
        })
        .filter(|(s, _)| *s >= FUZZY_MIN)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    match scored.first() {
        None => Lookup::None,
        Some(&(best, _)) => pick(
            scored
                .iter()
                .filter(|(s, _)| best - *s < FUZZY_MARGIN)
                .map(|(_, c)| *c)
                .collect(),
        )
        .unwrap_or(Lookup::None),
    }
}

/// Resolve `query` among `chores` or explain why not.
fn find_one<'a>(chores: &'a [ChoreRow], query: &str) -> Result<&'a ChoreRow, ChoreError> {
    let q = query.trim();
    if q.is_empty() {
        return Err(ChoreError::NoQuery);
    }
    match find(chores, q) {
        Lookup::One(c) => Ok(c),
        Lookup::None => Err(ChoreError::NotFound(crate::context::clip(q, 60))),
        Lookup::Many(v) => Err(ChoreError::Ambiguous {
            query: crate::context::clip(q, 60),
            first_id: v[0].id,
            options: v
                .iter()
                .take(5)
                .map(|c| format!("#{} {}", c.id, c.title))
                .collect(),
        }),
    }
}

/// A validated title: trimmed, one line, 1..=[`MAX_TITLE_CHARS`] characters.
fn clean_title(t: &str) -> Result<String, ChoreError> {
    let t = crate::context::clip(t.trim(), usize::MAX);
    let t = t.trim();
    if t.is_empty() {
        return Err(ChoreError::EmptyTitle);
    }
    if t.chars().count() > MAX_TITLE_CHARS {
        return Err(ChoreError::TitleTooLong);
    }
    Ok(t.to_string())
}

/// What a member typed to create a chore: "Water plants every 3 days @bob @carol least".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChoreSpec {
    pub title: String,
    pub recurrence: Option<Recurrence>,
    /// Assignee names as typed (without `@`), in rotation order.
    pub assignees: Vec<String>,
    /// "rotate" (every active member takes turns) was given.
    pub rotate_all: bool,
    /// "least" (least-completed rotation) was given.
    pub least: bool,
}

/// Split trailing `@name` mentions and the words "rotate" / "least" off `input` (any order at
/// the end). Returns the rest and what was found.
fn split_people(input: &str) -> (String, Vec<String>, bool, bool) {
    let mut words: Vec<&str> = input.split_whitespace().collect();
    let (mut names, mut rotate, mut least) = (Vec::new(), false, false);
    while let Some(last) = words.last() {
        let l = last.to_lowercase();
        if let Some(u) = last.strip_prefix('@').filter(|u| !u.is_empty()) {
            names.insert(0, u.trim_end_matches([',', '.']).to_string());
        } else if l == "rotate" || l == "rotating" {
            rotate = true;
        } else if l == "least" || l == "least-completed" {
            least = true;
        } else if l == "for" || l == "and" || l == "," {
            // "for @alice", "@a and @b"
        } else {
            break;
        }
        words.pop();
    }
    (words.join(" "), names, rotate, least)
}

impl ChoreSpec {
    /// The row for this spec in `chat_id`, created by `created_by` at `now`: a group chore with
    /// a fixed, unassigned rotation, 1 point, anchored on the due date, first due computed in
    /// `zone`. Callers override what differs (assignee and rotation, or the personal fields).
    fn new_chore(
        &self,
        chat_id: i64,
        created_by: i64,
        now: DateTime<Utc>,
        zone: Tz,
    ) -> NewChore<'_> {
        NewChore {
            chat_id,
            title: &self.title,
            description: None,
            personal: false,
            owner_id: None,
            partner_id: None,
            assignee_id: None,
            recurrence: self
                .recurrence
                .as_ref()
                .and_then(|r| serde_json::to_string(r).ok()),
            next_due: self
                .recurrence
                .as_ref()
                .and_then(|r| first_due(r, now, zone)),
            points: 1,
            created_by,
            created_at: now,
            anchor: Anchor::Due,
            rotation: Rotation::Fixed,
            rotation_members: None,
        }
    }
}

/// Parse a chore: title, optional trailing recurrence phrase (see
/// [`schedule::split_title_recurrence`]: "every 3 days", "every monday and thursday at 19:00",
/// "daily at 8", "first of the month", "weekdays", a 5-field cron), then `@` assignees and the
/// words "rotate" / "least". A one-off chore may end "by <time>" ("by tomorrow 18:00").
///
/// Errors: empty or over-long title, an invalid recurrence or due time (named).
pub fn parse_spec(input: &str, now: DateTime<Utc>, zone: Tz) -> Result<ChoreSpec, ChoreError> {
    let (rest, assignees, rotate_all, least) = split_people(input.trim());
    let (title, mut recurrence) = match split_title_recurrence(&rest) {
        Ok(x) => x,
        Err(schedule::ScheduleError::TitleMissing) => return Err(ChoreError::EmptyTitle),
        Err(e) => return Err(e.into()),
    };
    let mut title = title;
    if recurrence.is_none() {
        // offsets into `title` itself, never into a lower-cased copy (issue 8, item 24)
        if let Some(by) = crate::casefold::Folded::new(&title).rfind(" by ") {
            let at = schedule::parse_at(&title[by.end..], now, zone)?;
            recurrence = Some(Recurrence::Once {
                due: Some(at.with_timezone(&zone).naive_local()),
            });
            title.truncate(by.start);
        }
    }
    Ok(ChoreSpec {
        title: clean_title(&title)?,
        recurrence,
        assignees,
        rotate_all,
        least,
    })
}

/// The active member of `chat_id` a member meant by `name` (`@username` or first name,
/// case-insensitive; a first name must be unique).
pub async fn resolve_member(
    svc: &Services,
    chat_id: i64,
    name: &str,
) -> Result<crate::store::MemberRow, ChoreError> {
    let n = name.trim().trim_start_matches('@');
    let members = svc.store.members(chat_id).await?;
    let active = members.iter().filter(|m| m.active);
    let by_username: Vec<_> = active
        .clone()
        .filter(|m| {
            m.username
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(n))
        })
        .collect();
    let by_name: Vec<_> = active
        .filter(|m| m.first_name.eq_ignore_ascii_case(n))
        .collect();
    match (by_username.as_slice(), by_name.as_slice()) {
        ([m], _) | ([], [m]) => Ok((*m).clone()),
        _ => Err(ChoreError::UnknownMember(crate::context::clip(n, 40))),
    }
}

/// Who does a chore and how it rotates, from names and keywords.
struct Assignment {
    assignee: Option<i64>,
    rotation: Rotation,
    members: Option<String>,
}

async fn assignment(
    svc: &Services,
    chat_id: i64,
    names: &[String],
    rotate_all: bool,
    least: bool,
) -> Result<Assignment, ChoreError> {
    let mut ids = Vec::new();
    for n in names {
        let m = resolve_member(svc, chat_id, n).await?;
        if !ids.contains(&m.user_id) {
            ids.push(m.user_id);
        }
    }
    if ids.is_empty() && (rotate_all || least) {
        ids = svc
            .store
            .members(chat_id)
            .await?
            .into_iter()
            .filter(|m| m.active)
            .map(|m| m.user_id)
            .collect();
    }
    let rotation = match (ids.len(), least) {
        (0 | 1, false) if !rotate_all => Rotation::Fixed,
        (_, true) => Rotation::LeastCompleted,
        _ => Rotation::RoundRobin,
    };
    Ok(Assignment {
        assignee: ids.first().copied(),
        members: (rotation != Rotation::Fixed)
            .then(|| serde_json::to_string(&ids).unwrap_or_default()),
        rotation,
    })
}

/// Add a group chore from `input` ("Water plants every 3 days @bob"; see [`parse_spec`]); the
/// group is `chat_id`. The first due date is computed in the group's zone.
pub async fn add(
    svc: &Services,
    chat_id: i64,
    actor_id: i64,
    input: &str,
) -> Result<ChoreRow, ChoreError> {
    let now = svc.clock.now();
    let zone = zone_of(svc, chat_id).await?;
    let spec = parse_spec(input, now, zone)?;
    let a = assignment(svc, chat_id, &spec.assignees, spec.rotate_all, spec.least).await?;
    let chore = NewChore {
        assignee_id: a.assignee,
        rotation: a.rotation,
        rotation_members: a.members,
        ..spec.new_chore(chat_id, actor_id, now, zone)
    };
    Ok(svc.store.insert_chore(chore).await?)
}
/// Split "<title> [partner] @username" into the title and the partner's username.
pub fn split_partner(input: &str) -> (String, Option<String>) {
    let t = input.trim();
    let mut words: Vec<&str> = t.split_whitespace().collect();
    let Some(last) = words.last() else {
        return (String::new(), None);
    };
    if let Some(u) = last.strip_prefix('@').filter(|u| !u.is_empty()) {
        let u = u.to_string();
        words.pop();
        if words
            .last()
            .is_some_and(|w| w.eq_ignore_ascii_case("partner") || w.eq_ignore_ascii_case("with"))
        {
            words.pop();
        }
        return (words.join(" "), Some(u));
    }
    (t.to_string(), None)
}

/// Add a personal chore for `owner_id` (kept in their private chat, `chat_id` = the owner's
/// private chat id) with an optional accountability partner given as `@username`, who must be
/// someone else sharing a group with the owner. Returns the chore and the partner.
pub async fn add_personal(
    svc: &Services,
    chat_id: i64,
    owner_id: i64,
    input: &str,
) -> Result<(ChoreRow, Option<UserRow>), ChoreError> {
    let (rest, partner_name) = split_partner(input);
    let now = svc.clock.now();
    let zone = zone_of(svc, chat_id).await?;
    let spec = parse_spec(&rest, now, zone)?;
    let partner = match partner_name {
        Some(u) => Some(partner_for(svc, owner_id, &u).await?),
        None => None,
    };
    let chore = NewChore {
        personal: true,
        owner_id: Some(owner_id),
        partner_id: partner.as_ref().map(|p| p.id),
        assignee_id: Some(owner_id),
        ..spec.new_chore(chat_id, owner_id, now, zone)
    };
    let chore = svc.store.insert_chore(chore).await?;
    Ok((chore, partner))
}

/// The partner `username` for `owner_id`'s personal chore: known, not the owner, and an active
/// member of a group the owner is in.
async fn partner_for(svc: &Services, owner_id: i64, username: &str) -> Result<UserRow, ChoreError> {
    let p = svc
        .store
        .user_by_username(username.trim_start_matches('@'))
        .await?
        .ok_or_else(|| ChoreError::UnknownPartner(crate::context::clip(username, 40)))?;
    if p.id == owner_id {
        return Err(ChoreError::PartnerIsSelf);
    }
    if !share_group(svc, owner_id, p.id).await? {
        return Err(ChoreError::PartnerNotShared);
    }
    Ok(p)
}

/// Whether two users are both active members of some group.
async fn share_group(svc: &Services, a: i64, b: i64) -> StoreResult<bool> {
    let ga: HashSet<i64> = svc
        .store
        .groups_of_user(a)
        .await?
        .into_iter()
        .map(|g| g.id)
        .collect();
    Ok(svc
        .store
        .groups_of_user(b)
        .await?
        .iter()
        .any(|g| ga.contains(&g.id)))
}
/// The chores of a chat that are not archived (a group's chores, or the personal chores kept in
/// a private chat), oldest first.
pub async fn list(svc: &Services, chat_id: i64) -> Result<Vec<ChoreRow>, StoreError> {
    svc.store.open_chores(chat_id).await
}

/// What a claim did.
#[derive(Debug)]
pub enum Claimed {
    /// A verification request was opened; `delivered` is false when its message could not be
    /// sent (e.g. the partner never started a private chat with the bot).
    Requested {
        workflow: WorkflowRow,
        delivered: bool,
    },
    /// A personal chore without a partner: completed at once (self-verified).
    Completed(ChoreRow),
}

/// "I did it": claim the chore `query` of chat `chat_id` for `actor_id`. A group chore (and a
/// personal chore with a partner) moves to pending verification and a request is opened; a
/// personal chore without a partner is completed at once. A chore already pending
/// verification can't be claimed again (checked in the claiming transaction). Claiming a group
/// chore assigned to someone else is a swap, refused beyond [`MAX_SWAPS_PER_WEEK`].
pub async fn claim(
    svc: &Services,
    chat_id: i64,
    actor_id: i64,
    query: &str,
) -> Result<Claimed, ChoreError> {
    let chores = list(svc, chat_id).await?;
    let chore = find_one(&chores, query)?.clone();
    check_claimable(&chore)?;
    if chore.personal {
        if chore.owner_id != Some(actor_id) {
            return Err(ChoreError::NotFound(crate::context::clip(query, 60)));
        }
        if chore.partner_id.is_none() {
            let now = svc.clock.now();
            let change =
                completion_change(svc, &chore, actor_id, now, &[ChoreStatus::Todo]).await?;
            if !svc.store.apply_chore_change(&change, now).await? {
                return Err(claim_refusal(svc, chore.id, &chore.title).await);
            }
            let after = svc.store.chore(chore.id).await?.unwrap_or(chore);
            return Ok(Claimed::Completed(after));
        }
    } else if chore.assignee_id.is_some_and(|a| a != actor_id) {
        let (done, pending) = swap_counts(svc, chat_id, actor_id).await?;
        if done + pending >= MAX_SWAPS_PER_WEEK {
            let zone = zone_of(svc, chat_id).await?;
            let mut resets = swap_limit_resets(svc.clock.now(), zone);
            if pending > 0 {
                resets.push_str(&format!(
                    "; your {pending} claim{} waiting for verification count{} until decided",
                    if pending == 1 { "" } else { "s" },
                    if pending == 1 { "s" } else { "" },
                ));
            }
            return Err(ChoreError::SwapLimit {
                title: chore.title,
                resets,
            });
        }
    }
    let kind = if chore.personal {
        Kind::PersonalVerification
    } else {
        Kind::ChoreVerification
    };
    let opened = workflow::open(
        svc,
        NewRequest {
            chat_id,
            kind,
            requester_id: actor_id,
            target_id: Some(chore.id),
            target_title: &chore.title,
            partner_id: chore.partner_id.filter(|_| chore.personal),
            metadata: None,
        },
        CreateGuard::MoveChore {
            chore_id: chore.id,
            from: &[ChoreStatus::Todo],
            to: ChoreStatus::Pending,
        },
    )
    .await?;
    match opened {
        Ok(o) => Ok(Claimed::Requested {
            workflow: o.workflow,
            delivered: o.delivered,
        }),
        Err(_) => Err(claim_refusal(svc, chore.id, &chore.title).await),
    }
}

/// Who may decide a verification request, in words for its requester: the partner's first name
/// for a personal verification ("Bob"; "your partner" when unknown), else "anyone in the group
/// but you" (the workflow service's rule: every other current member of the group).
pub async fn verifier(svc: &Services, wf: &WorkflowRow) -> StoreResult<String> {
    match wf
        .partner_id
        .filter(|_| wf.kind == Kind::PersonalVerification.as_str())
    {
        Some(p) => Ok(workflow::render::names(svc, &[p])
            .await?
            .remove(&p)
            .unwrap_or_else(|| "your partner".into())),
        None => Ok("anyone in the group but you".into()),
    }
}

/// Swaps `user_id` made in `chat_id` this ISO week (group zone): approved swap completions
/// plus pending verification claims of chores assigned to someone else.
pub async fn swaps_this_week(svc: &Services, chat_id: i64, user_id: i64) -> StoreResult<usize> {
    let (done, pending) = swap_counts(svc, chat_id, user_id).await?;
    Ok(done + pending)
}

/// (approved swaps this ISO week, pending swap claims of any age) of `user_id` in `chat_id`.
async fn swap_counts(svc: &Services, chat_id: i64, user_id: i64) -> StoreResult<(usize, usize)> {
    let now = svc.clock.now();
    let since = week_start(now, zone_of(svc, chat_id).await?);
    let done = svc
        .store
        .completions(chat_id, Some(since))
        .await?
        .iter()
        .filter(|c| c.swap && c.user_id == user_id)
        .count();
    let mut pending = 0;
    for wf in svc
        .store
        .pending_by_requester(user_id, Some(chat_id), svc.clock.now())
        .await?
    {
        if wf.kind != Kind::ChoreVerification {
            continue;
        }
        if let Some(c) = match wf.target_id {
            Some(t) => svc.store.chore(t).await?,
            None => None,
        } {
            if c.assignee_id.is_some_and(|a| a != user_id) {
                pending += 1;
            }
        }
    }
    Ok((done, pending))
}

/// The chores of `chats` a viewer may claim with a bare "done <title>": to-do chores (for a
/// personal chore, only its owner's).
fn claimable_by(chores: &[ChoreRow], user_id: i64) -> Vec<&ChoreRow> {
    chores
        .iter()
        .filter(|c| c.status == ChoreStatus::Todo && (!c.personal || c.owner_id == Some(user_id)))
        .collect()
}

/// Core routing: a message that is clearly a claim — it starts with "done", "did" or
/// "finished" and the rest fuzzy-matches exactly one open chore of this chat the sender may
/// claim ("done dishes"), or failing that exactly one chore they can see (one already waiting
/// for verification: the `/done` answer explains) — returns that chore's id; anything else
/// returns `None` and goes on to the agent. No model call.
pub async fn text_claim(
    svc: &Services,
    chat_id: i64,
    user_id: i64,
    text: &str,
) -> StoreResult<Option<i64>> {
    let t = text.trim();
    if t.ends_with('?') {
        return Ok(None); // "did the dishes?" is a question
    }
    let t = t.trim_end_matches(['!', '.']);
    let Some(rest) = ["done ", "did ", "finished "]
        .iter()
        .find_map(|p| crate::casefold::strip_prefix_ci(t, p))
    else {
        return Ok(None);
    };
    let rest = rest.trim();
    if rest.is_empty() || rest.split_whitespace().count() > 8 {
        return Ok(None);
    }
    let chores = list(svc, chat_id).await?;
    let open: Vec<ChoreRow> = claimable_by(&chores, user_id)
        .into_iter()
        .cloned()
        .collect();
    if let Lookup::One(c) = find(&open, rest) {
        return Ok(Some(c.id));
    }
    // "done bathroom" for a chore already waiting for verification (or done) is still a claim:
    // the caller answers it as `/done` does ("already waiting…") instead of staying silent
    // (issue 8, item 13). Personal chores stay their owner's.
    let visible: Vec<ChoreRow> = chores
        .iter()
        .filter(|c| !c.personal || c.owner_id == Some(user_id))
        .cloned()
        .collect();
    Ok(match find(&visible, rest) {
        Lookup::One(c) => Some(c.id),
        _ => None,
    })
}
fn check_claimable(chore: &ChoreRow) -> Result<(), ChoreError> {
    match chore.status {
        ChoreStatus::Pending => Err(ChoreError::AlreadyPending(chore.title.clone())),
        ChoreStatus::Completed => Err(ChoreError::AlreadyDone(chore.title.clone())),
        _ => Ok(()),
    }
}

/// Why a claim lost its race (the chore moved between lookup and the transaction).
async fn claim_refusal(svc: &Services, chore_id: i64, title: &str) -> ChoreError {
    match svc.store.chore(chore_id).await {
        Ok(Some(c)) => check_claimable(&c)
            .err()
            .unwrap_or_else(|| ChoreError::NotFound(title.to_string())),
        Ok(None) => ChoreError::NotFound(title.to_string()),
        Err(e) => ChoreError::Store(e),
    }
}

/// What a deletion request did.
#[derive(Debug)]
pub enum Deletion {
    /// A deletion request was opened in the group.
    Requested {
        workflow: WorkflowRow,
        delivered: bool,
    },
    /// A personal chore: archived at once by its owner.
    Archived(ChoreRow),
}

/// Ask to delete the chore `query` of chat `chat_id`. A group chore needs another member's
/// approval (a second pending deletion of the same chore is refused); a personal chore is
/// archived by its owner at once.
pub async fn request_deletion(
    svc: &Services,
    chat_id: i64,
    actor_id: i64,
    query: &str,
) -> Result<Deletion, ChoreError> {
    let chores = list(svc, chat_id).await?;
    let chore = find_one(&chores, query)?.clone();
    if chore.personal {
        if chore.owner_id != Some(actor_id) {
            return Err(ChoreError::NotFound(crate::context::clip(query, 60)));
        }
        let now = svc.clock.now();
        svc.store
            .apply_chore_change(&archive_change(chore.id), now)
            .await?;
        // a pending verification of an archived chore has nothing left to verify
        for wf in svc.store.pending_for_target(chore.id).await? {
            if wf.kind == Kind::PersonalVerification {
                workflow::cancel_by_system(svc, &wf, "chore deleted").await?;
            }
        }
        let after = svc.store.chore(chore.id).await?.unwrap_or(chore);
        return Ok(Deletion::Archived(after));
    }
    let opened = workflow::open(
        svc,
        NewRequest {
            chat_id,
            kind: Kind::ChoreDeletion,
            requester_id: actor_id,
            target_id: Some(chore.id),
            target_title: &chore.title,
            partner_id: None,
            metadata: None,
        },
        CreateGuard::SoleRequest {
            chore_id: chore.id,
            statuses: DELETABLE,
        },
    )
    .await?;
    match opened {
        Ok(o) => Ok(Deletion::Requested {
            workflow: o.workflow,
            delivered: o.delivered,
        }),
        Err(CreateRefused::Duplicate { workflow_id }) => Err(ChoreError::DuplicateDeletion {
            title: chore.title,
            workflow_id,
        }),
        Err(CreateRefused::TargetNotOpen) => Err(ChoreError::NotFound(chore.title)),
    }
}

/// Which chores a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFilter {
    /// Every open chore (to-do or waiting for verification).
    Open,
    /// Open chores assigned to this user.
    AssignedTo(i64),
    /// Open chores whose due time has passed.
    Overdue,
}

/// Whether `c` is open and its due time is at or before `now`.
pub fn is_overdue(c: &ChoreRow, now: DateTime<Utc>) -> bool {
    c.status == ChoreStatus::Todo && c.next_due.is_some_and(|d| d <= now)
}

/// The open chores of a chat matching `filter`, oldest first. For a group these never include
/// personal chores (they live in their owner's private chat).
pub async fn list_open(
    svc: &Services,
    chat_id: i64,
    filter: ListFilter,
) -> StoreResult<Vec<ChoreRow>> {
    let now = svc.clock.now();
    Ok(list(svc, chat_id)
        .await?
        .into_iter()
        .filter(|c| c.status == ChoreStatus::Todo || c.status == ChoreStatus::Pending)
        .filter(|c| match filter {
            ListFilter::Open => true,
            ListFilter::AssignedTo(u) => c.assignee_id == Some(u),
            ListFilter::Overdue => is_overdue(c, now),
        })
        .collect())
}

/// `/assign <chore> @a [@b …] [least|rotate]` or `/assign <chore> nobody`: set who does a group
/// chore. One name: a fixed assignee; several: they take turns (round-robin, or
/// least-completed with "least"); "rotate" alone: every active member takes turns.
pub async fn assign(svc: &Services, chat_id: i64, input: &str) -> Result<ChoreRow, ChoreError> {
    let (rest, names, rotate, least) = split_people(input.trim());
    let (query, nobody) = match crate::casefold::strip_suffix_ci(&rest, " nobody") {
        Some(q) => (q.to_string(), true),
        None => (rest, false),
    };
    let chores = list(svc, chat_id).await?;
    let chore = find_one(&chores, &query)?.clone();
    if chore.personal {
        return Err(ChoreError::BadEdit(
            "A personal chore is always its owner's.".into(),
        ));
    }
    let a = if nobody {
        Assignment {
            assignee: None,
            rotation: Rotation::Fixed,
            members: None,
        }
    } else if names.is_empty() && !rotate && !least {
        return Err(ChoreError::BadEdit(
            "Say who, e.g. /assign dishes @bob (several @names take turns; add 'least' for least-done first).".into(),
        ));
    } else {
        assignment(svc, chat_id, &names, rotate, least).await?
    };
    let edit = ChoreEdit {
        assignee: Some(a.assignee),
        rotation: Some(a.rotation),
        rotation_members: Some(a.members),
        ..Default::default()
    };
    apply_edit(svc, &chore, &edit).await
}

async fn apply_edit(
    svc: &Services,
    chore: &ChoreRow,
    e: &ChoreEdit,
) -> Result<ChoreRow, ChoreError> {
    if !svc.store.edit_chore(chore.id, e, svc.clock.now()).await? {
        return Err(ChoreError::NotFound(chore.title.clone()));
    }
    Ok(svc
        .store
        .chore(chore.id)
        .await?
        .unwrap_or_else(|| chore.clone()))
}

/// Fields `/editchore` understands, in the order they are looked for.
const EDIT_FIELDS: &[&str] = &[
    "title",
    "points",
    "repeat",
    "anchor",
    "due",
    "description",
    "partner",
];

/// `/editchore <chore> <field> <value>`: `title <text>`, `points <0-100>`,
/// `repeat <phrase|never>` (next due recomputed in the group's zone), `anchor due|completion`,
/// `due <time>` (e.g. "tomorrow 18:00"), `description <text>`, and for a personal chore
/// `partner @username|none`. Nothing changes on an error.
pub async fn edit(
    svc: &Services,
    chat_id: i64,
    actor_id: i64,
    input: &str,
) -> Result<ChoreRow, ChoreError> {
    let words: Vec<&str> = input.split_whitespace().collect();
    let usage = || {
        ChoreError::BadEdit(format!(
            "Say which chore and what to change, e.g. /editchore dishes points 2. Fields: {}.",
            EDIT_FIELDS.join(", ")
        ))
    };
    let at = words
        .iter()
        .enumerate()
        .skip(1)
        .find(|(_, w)| EDIT_FIELDS.contains(&w.to_lowercase().as_str()))
        .map(|(i, _)| i)
        .ok_or_else(usage)?;
    let query = words[..at].join(" ");
    let field = words[at].to_lowercase();
    let value = words[at + 1..].join(" ");
    let chores = list(svc, chat_id).await?;
    let chore = find_one(&chores, &query)?.clone();
    if chore.personal && chore.owner_id != Some(actor_id) {
        return Err(ChoreError::NotFound(query));
    }
    let now = svc.clock.now();
    let zone = zone_of(svc, chat_id).await?;
    let mut e = ChoreEdit::default();
    match field.as_str() {
        "title" => e.title = Some(clean_title(&value)?),
        "points" => match value.parse::<i32>() {
            Ok(p) if (0..=MAX_POINTS).contains(&p) => e.points = Some(p),
            _ => {
                return Err(ChoreError::BadEdit(format!(
                    "Points must be a whole number from 0 to {MAX_POINTS}."
                )))
            }
        },
        "repeat" if matches!(value.to_lowercase().as_str(), "never" | "once" | "none") => {
            e.recurrence = Some(None);
        }
        "repeat" => {
            let r = Recurrence::parse(&value)?;
            e.next_due = Some(first_due(&r, now, zone));
            e.recurrence = Some(serde_json::to_string(&r).ok());
        }
        "anchor" => match Anchor::parse(&value.to_lowercase()) {
            Some(a) => e.anchor = Some(a),
            None => return Err(ChoreError::BadEdit(
                "Anchor is 'due' (keep the rhythm) or 'completion' (count from when it was done)."
                    .into(),
            )),
        },
        "due" => e.next_due = Some(Some(schedule::parse_at(&value, now, zone)?)),
        "description" => {
            let d = crate::context::clip(value.trim(), 500);
            e.description = Some((!d.is_empty()).then_some(d));
        }
        "partner" if !chore.personal => {
            return Err(ChoreError::BadEdit(
                "Only personal chores have a partner.".into(),
            ))
        }
        "partner" if matches!(value.to_lowercase().as_str(), "none" | "nobody") => {
            e.partner = Some(None)
        }
        "partner" => e.partner = Some(Some(partner_for(svc, actor_id, &value).await?.id)),
        _ => return Err(usage()),
    }
    apply_edit(svc, &chore, &e).await
}

/// `/skip <chore>`: skip the current occurrence of a recurring to-do chore; the next due date
/// is the occurrence after the current one (the assignee stays).
pub async fn skip(
    svc: &Services,
    chat_id: i64,
    actor_id: i64,
    query: &str,
) -> Result<ChoreRow, ChoreError> {
    let chores = list(svc, chat_id).await?;
    let chore = find_one(&chores, query)?.clone();
    if chore.personal && chore.owner_id != Some(actor_id) {
        return Err(ChoreError::NotFound(crate::context::clip(query, 60)));
    }
    check_claimable(&chore)?;
    let zone = zone_of(svc, chat_id).await?;
    let now = svc.clock.now();
    let next = recurrence_of(&chore)
        .filter(repeats)
        .and_then(|r| r.next_after(chore.next_due.unwrap_or(now), zone, DEFAULT_DUE_TIME))
        .ok_or_else(|| ChoreError::NotRecurring(chore.title.clone()))?;
    let e = ChoreEdit {
        next_due: Some(Some(next)),
        ..Default::default()
    };
    apply_edit(svc, &chore, &e).await
}

/// The chat's zone changed from `old` to `new` (`/timezone`): every open chore keeps its local
/// due wall time ("Mon 19:00" stays Mon 19:00 in the new zone). Returns how many moved.
pub async fn rezone(svc: &Services, chat_id: i64, old: Tz, new: Tz) -> StoreResult<usize> {
    let mut n = 0;
    for c in svc.store.open_chores(chat_id).await? {
        let Some(due) = c.next_due else { continue };
        let moved = resolve_local(due.with_timezone(&old).naive_local(), new);
        if moved != due {
            let e = ChoreEdit {
                next_due: Some(Some(moved)),
                ..Default::default()
            };
            if svc.store.edit_chore(c.id, &e, svc.clock.now()).await? {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// What [`on_member_left`] did, for the group notice.
#[derive(Debug, Default)]
pub struct LeftReport {
    /// (chore title, new assignee) for chores the member was assigned.
    pub reassigned: Vec<(String, Option<i64>)>,
    /// Titles of the member's pending requests that were cancelled.
    pub cancelled: Vec<String>,
}

/// A member left group `chat_id` (already deactivated): their chores go to the next member by
/// rotation (a fixed chore becomes unassigned), they leave every rotation, their pending
/// requests in the group are cancelled (restoring the chores), and personal chores naming them
/// as partner become self-verified when the owner no longer shares a group with them (the
/// owner is told in private). The group gets one notice listing what changed.
pub async fn on_member_left(svc: &Services, chat_id: i64, user_id: i64) -> StoreResult<LeftReport> {
    let mut report = LeftReport::default();
    for wf in svc
        .store
        .pending_by_requester(user_id, Some(chat_id), svc.clock.now())
        .await?
    {
        if workflow::cancel_by_system(svc, &wf, "the requester left the group").await? {
            report.cancelled.push(wf.target_title.clone());
        }
    }
    for chore in svc.store.open_chores(chat_id).await? {
        let members = rotation_members(&chore);
        let in_rotation = members.contains(&user_id);
        if chore.personal || (chore.assignee_id != Some(user_id) && !in_rotation) {
            continue;
        }
        let mut e = ChoreEdit::default();
        if chore.assignee_id == Some(user_id) {
            let next = next_assignee(svc, &chore, None, Some(user_id)).await?;
            e.assignee = Some(next);
            report.reassigned.push((chore.title.clone(), next));
        }
        if in_rotation {
            let rest: Vec<i64> = members.into_iter().filter(|m| *m != user_id).collect();
            e.rotation_members = Some(serde_json::to_string(&rest).ok());
        }
        svc.store.edit_chore(chore.id, &e, svc.clock.now()).await?;
    }
    partner_left(svc, user_id).await?;
    if !report.reassigned.is_empty() || !report.cancelled.is_empty() {
        let ids: Vec<i64> = report
            .reassigned
            .iter()
            .filter_map(|(_, a)| *a)
            .chain([user_id])
            .collect();
        let names = crate::workflow::render::names(svc, &ids).await?;
        let who = names
            .get(&user_id)
            .cloned()
            .unwrap_or_else(|| "A member".into());
        let mut html = format!("{} left the group.", crate::format::escape_html(&who));
        for (t, a) in &report.reassigned {
            let to = a
                .and_then(|a| names.get(&a).cloned())
                .unwrap_or_else(|| "nobody yet (/assign)".into());
            html.push_str(&format!(
                "\n• “{}” now goes to {}",
                crate::format::escape_html(t),
                crate::format::escape_html(&to)
            ));
        }
        for t in &report.cancelled {
            html.push_str(&format!(
                "\n• their request about “{}” was cancelled",
                crate::format::escape_html(t)
            ));
        }
        if let Err(err) = svc
            .outbox
            .send(crate::types::Outbound::html(chat_id, html))
            .await
        {
            tracing::warn!(chat_id, error = %err, "member-left notice not delivered");
        }
    }
    Ok(report)
}

/// Personal chores naming `partner_id` whose owner no longer shares a group with them become
/// self-verified: the partner is cleared, a pending verification is cancelled (the chore goes
/// back to to-do) and the owner is told in private.
async fn partner_left(svc: &Services, partner_id: i64) -> StoreResult<()> {
    for chore in svc.store.personal_chores_with_partner(partner_id).await? {
        let Some(owner) = chore.owner_id else {
            continue;
        };
        if share_group(svc, owner, partner_id).await? {
            continue;
        }
        let e = ChoreEdit {
            partner: Some(None),
            ..Default::default()
        };
        svc.store.edit_chore(chore.id, &e, svc.clock.now()).await?;
        for wf in svc.store.pending_for_target(chore.id).await? {
            if wf.kind == Kind::PersonalVerification {
                workflow::cancel_by_system(svc, &wf, "the partner left").await?;
            }
        }
        let html = format!(
            "Your accountability partner for “{}” is no longer in a group with you, so it is now self-verified: /done completes it.",
            crate::format::escape_html(&chore.title)
        );
        if let Err(err) = svc
            .outbox
            .send(crate::types::Outbound::html(chore.chat_id, html))
            .await
        {
            tracing::warn!(chore_id = chore.id, error = %err, "owner not told");
        }
    }
    Ok(())
}
#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn chore(id: i64, title: &str) -> ChoreRow {
        let t = Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap();
        ChoreRow {
            id,
            chat_id: -1,
            title: title.into(),
            description: None,
            personal: false,
            owner_id: None,
            partner_id: None,
            assignee_id: None,
            status: ChoreStatus::Todo,
            recurrence: None,
            next_due: None,
            points: 1,
            created_by: 1,
            created_at: t,
            updated_at: t,
            completed_at: None,
            completed_by: None,
            archived_at: None,
            anchor: Anchor::Due,
            rotation: Rotation::Fixed,
            rotation_members: None,
        }
    }

    #[test]
    fn finds_by_id_exact_words_and_fuzzy() {
        let cs = vec![
            chore(1, "Wash dishes"),
            chore(2, "Dry dishes"),
            chore(3, "Water plants"),
            chore(4, "Take out the bins"),
        ];
        assert_eq!(find(&cs, "#3"), Lookup::One(&cs[2]));
        assert_eq!(find(&cs, "water plants"), Lookup::One(&cs[2]));
        assert_eq!(find(&cs, "plants"), Lookup::One(&cs[2]));
        assert_eq!(find(&cs, "take out bins"), Lookup::One(&cs[3]));
        assert_eq!(find(&cs, "watr plants"), Lookup::One(&cs[2]));
        assert!(matches!(find(&cs, "dishes"), Lookup::Many(v) if v.len() == 2));
        assert_eq!(find(&cs, "vacuum"), Lookup::None);
        assert_eq!(find(&cs, "   "), Lookup::None);
        assert_eq!(find(&cs, "#99"), Lookup::None);
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn parses_the_common_phrases() {
        use chrono::Weekday::*;
        let now = utc("2026-11-21T10:00:00Z");
        let z = chrono_tz::Europe::London;
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0);
        let cases: Vec<(&str, &str, Option<Recurrence>)> = vec![
            (
                "Water plants every 3 days",
                "Water plants",
                Some(Recurrence::EveryDays { n: 3, at: None }),
            ),
            (
                "Bins every monday and thursday at 19:00",
                "Bins",
                Some(Recurrence::Weekly {
                    days: vec![Mon, Thu],
                    at: t(19, 0),
                }),
            ),
            (
                "Dishes daily at 8",
                "Dishes",
                Some(Recurrence::Daily { at: t(8, 0) }),
            ),
            (
                "Pay rent first of the month",
                "Pay rent",
                Some(Recurrence::Monthly { day: 1, at: None }),
            ),
            (
                "Standup weekdays",
                "Standup",
                Some(Recurrence::Weekly {
                    days: vec![Mon, Tue, Wed, Thu, Fri],
                    at: None,
                }),
            ),
            (
                "Backup cron 0 19 * * 1",
                "Backup",
                Some(Recurrence::Cron {
                    expr: "0 19 * * 1".into(),
                }),
            ),
            ("Fix the shed", "Fix the shed", None),
        ];
        for (input, title, rec) in cases {
            let s = parse_spec(input, now, z).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!((s.title.as_str(), s.recurrence), (title, rec), "{input}");
        }
        let s = parse_spec("Water plants every 3 days @bob @carol least", now, z).unwrap();
        assert_eq!(s.assignees, vec!["bob", "carol"]);
        assert!(s.least && !s.rotate_all);
        let s = parse_spec("Renew passport by 2026-12-01 18:00", now, z).unwrap();
        assert_eq!(s.title, "Renew passport");
        let due = first_due(s.recurrence.as_ref().unwrap(), now, z).unwrap();
        assert_eq!(due, utc("2026-12-01T18:00:00Z"));
        // bad input names the problem
        let e = parse_spec("Bins every 0 days", now, z)
            .unwrap_err()
            .to_string();
        assert!(e.contains("every 0 days"), "{e}");
        assert!(matches!(
            parse_spec("every day", now, z),
            Err(ChoreError::EmptyTitle)
        ));
        assert!(matches!(
            parse_spec("Bins cron 99 * * * *", now, z),
            Err(ChoreError::BadSchedule(_))
        ));
    }

    /// Complete a chore on time `n` times in a row; the due instants.
    fn chain(r: &Recurrence, zone: Tz, start: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut due = first_due(r, start, zone).unwrap();
        let mut out = vec![due];
        for _ in 1..n {
            // done a minute before it was due
            due = next_due(
                r,
                Anchor::Due,
                Some(due),
                due - chrono::Duration::minutes(1),
                zone,
            )
            .unwrap();
            out.push(due);
        }
        out
    }

    #[test]
    fn daily_chores_are_due_once_per_local_day_across_both_dst_changes() {
        use chrono_tz::{America::New_York, Europe::London};
        let at = NaiveTime::from_hms_opt(1, 30, 0);
        for (zone, start, days) in [
            (London, "2026-10-20T12:00:00Z", 14),   // fall back 2026-10-25
            (London, "2027-03-23T12:00:00Z", 14),   // spring forward 2027-03-28 (01:30 missing)
            (New_York, "2026-10-28T12:00:00Z", 14), // fall back 2026-11-01
            (New_York, "2027-03-09T12:00:00Z", 14), // spring forward 2027-03-14
        ] {
            let r = Recurrence::Daily { at };
            let dues = chain(&r, zone, utc(start), days);
            let dates: Vec<_> = dues
                .iter()
                .map(|d| d.with_timezone(&zone).date_naive())
                .collect();
            for w in dates.windows(2) {
                assert_eq!(
                    w[1],
                    w[0].succ_opt().unwrap(),
                    "{zone}: one occurrence per local day, none lost: {dates:?}"
                );
            }
            for d in &dues {
                let l = d.with_timezone(&zone);
                let hm = l.format("%H:%M").to_string();
                assert!(
                    hm == "01:30" || hm == "02:00", // 01:30 is in London's 2027-03-28 gap: due at its end
                    "{zone} {l}"
                );
            }
        }
        // 19:00 every Monday keeps 19:00 local across the London change
        let r = Recurrence::Weekly {
            days: vec![chrono::Weekday::Mon],
            at: NaiveTime::from_hms_opt(19, 0, 0),
        };
        let dues = chain(&r, London, utc("2026-10-14T12:00:00Z"), 3);
        assert_eq!(
            dues,
            vec![
                utc("2026-10-19T18:00:00Z"),
                utc("2026-10-26T19:00:00Z"),
                utc("2026-11-02T19:00:00Z")
            ]
        );
    }

    #[test]
    fn month_ends_clamp_and_cron_is_zoned() {
        let z = chrono_tz::Europe::London;
        let r = Recurrence::Monthly {
            day: 31,
            at: NaiveTime::from_hms_opt(9, 0, 0),
        };
        let dues = chain(&r, z, utc("2027-01-02T00:00:00Z"), 4);
        let days: Vec<_> = dues
            .iter()
            .map(|d| d.with_timezone(&z).format("%m-%d").to_string())
            .collect();
        assert_eq!(days, vec!["01-31", "02-28", "03-31", "04-30"]);
        let r = Recurrence::parse("0 19 * * 1").unwrap();
        let dues = chain(
            &r,
            chrono_tz::America::New_York,
            utc("2026-10-20T00:00:00Z"),
            2,
        );
        // 19:00 EDT then 19:00 EST
        assert_eq!(
            dues,
            vec![utc("2026-10-26T23:00:00Z"), utc("2026-11-03T00:00:00Z")]
        );
    }

    #[test]
    fn anchors_due_and_completion() {
        let z = chrono_tz::Europe::London;
        let r = Recurrence::EveryDays {
            n: 3,
            at: NaiveTime::from_hms_opt(20, 0, 0),
        };
        let due = utc("2026-11-21T20:00:00Z");
        // done two days late: the due anchor keeps the rhythm and skips the missed occurrence
        let late = utc("2026-11-23T21:00:00Z");
        assert_eq!(
            next_due(&r, Anchor::Due, Some(due), late, z),
            Some(utc("2026-11-24T20:00:00Z"))
        );
        assert_eq!(
            next_due(&r, Anchor::Completion, Some(due), late, z),
            Some(utc("2026-11-26T20:00:00Z"))
        );
        // done early: the next one counts from the due date
        let early = utc("2026-11-20T09:00:00Z");
        assert_eq!(
            next_due(&r, Anchor::Due, Some(due), early, z),
            Some(utc("2026-11-24T20:00:00Z"))
        );
        assert_eq!(
            next_due(
                &Recurrence::Once { due: None },
                Anchor::Due,
                Some(due),
                early,
                z
            ),
            None
        );
        // the first chores' JSON is still read
        let mut c = chore(1, "x");
        c.recurrence = Some(r#"{"every_days":7}"#.into());
        assert_eq!(
            recurrence_of(&c),
            Some(Recurrence::EveryDays { n: 7, at: None })
        );
    }

    #[test]
    fn splits_people_and_partner() {
        assert_eq!(
            split_people("Dishes daily @alice and @bob rotate"),
            (
                "Dishes daily".into(),
                vec!["alice".into(), "bob".into()],
                true,
                false
            )
        );
        assert_eq!(
            split_partner("Go running partner @Bob"),
            ("Go running".into(), Some("Bob".into()))
        );
        assert_eq!(split_partner("Read @ home"), ("Read @ home".into(), None));
    }

    #[test]
    fn swap_limit_resets_at_the_next_local_monday() {
        let z = chrono_tz::America::New_York;
        // Sunday 29 Nov 23:30 local
        let now = utc("2026-11-30T04:30:00Z");
        assert_eq!(next_week_start(now, z), utc("2026-11-30T05:00:00Z"));
        assert_eq!(
            swap_limit_resets(now, z),
            "Mon 30 Nov 00:00 (America/New_York)"
        );
        // a Monday resets the Monday after
        let now = utc("2026-11-30T12:00:00Z");
        assert_eq!(next_week_start(now, z), utc("2026-12-07T05:00:00Z"));
    }

    #[test]
    fn week_starts_on_local_monday() {
        let z = chrono_tz::America::New_York;
        assert_eq!(
            week_start(utc("2026-11-25T12:00:00Z"), z),
            utc("2026-11-23T05:00:00Z")
        );
        // Monday 02:00 UTC is still Sunday in New York
        assert_eq!(
            week_start(utc("2026-11-23T02:00:00Z"), z),
            utc("2026-11-16T05:00:00Z")
        );
    }
}
