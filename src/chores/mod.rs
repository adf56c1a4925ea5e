//! Chores: the minimum the approval workflows need (the full chores issue extends this module
//! and its table).
//!
//! Owns: adding group chores and personal chores (owner + optional accountability partner),
//! listing, finding a chore from what a member typed (id, exact, words, fuzzy; ambiguity is an
//! answer, never a guess), the claim ("I did it" → a verification request), deletion requests,
//! and how a chore's state changes when a request is approved, rejected, expired or cancelled
//! ([`completion_change`], [`reopen_change`], [`archive_change`]; the workflow service applies
//! them inside its transitions). Uses: store, services, workflow (to open requests), format.

pub mod commands;
pub mod tools;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    services::Services,
    store::{
        ChoreChange, ChoreRow, CreateGuard, CreateRefused, NewChore, StoreError, UserRow,
        WorkflowRow, CHORE_ARCHIVED, CHORE_COMPLETED, CHORE_PENDING, CHORE_TODO,
    },
    workflow::{self, Kind, NewRequest},
};

/// Longest chore title, in characters.
pub const MAX_TITLE_CHARS: usize = 100;
/// Longest interval of a recurring chore, in days.
pub const MAX_EVERY_DAYS: u32 = 366;
/// Minimum similarity (normalized Damerau-Levenshtein) for a fuzzy title match.
const FUZZY_MIN: f64 = 0.75;
/// Fuzzy candidates within this margin of the best one make the match ambiguous.
const FUZZY_MARGIN: f64 = 0.1;

/// How a chore repeats. Stored as JSON in `chores.recurrence`, e.g. `{"every_days":7}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recurrence {
    /// Interval in days (1..=[`MAX_EVERY_DAYS`]).
    pub every_days: u32,
}

impl Recurrence {
    /// Split a trailing recurrence off a title: "Water plants every 3 days" →
    /// ("Water plants", every 3 days). Understands "daily", "weekly", "every day",
    /// "every week", "every N days", "every N weeks" (case-insensitive). Anything else is left
    /// in the title.
    pub fn split_title(input: &str) -> (String, Option<Recurrence>) {
        let t = input.trim();
        let words: Vec<&str> = t.split_whitespace().collect();
        let lower: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
        let n = words.len();
        let keep = |k: usize| words[..n - k].join(" ");
        let mk = |d: u64| {
            (d >= 1 && d <= MAX_EVERY_DAYS as u64).then_some(Recurrence {
                every_days: d as u32,
            })
        };
        if n >= 2 {
            match lower[n - 1].as_str() {
                "daily" => return (keep(1), mk(1)),
                "weekly" => return (keep(1), mk(7)),
                _ => {}
            }
        }
        if n >= 3 && lower[n - 2] == "every" {
            match lower[n - 1].as_str() {
                "day" => return (keep(2), mk(1)),
                "week" => return (keep(2), mk(7)),
                _ => {}
            }
        }
        if n >= 4 && lower[n - 3] == "every" {
            if let Ok(k) = lower[n - 2].parse::<u64>() {
                let days = match lower[n - 1].as_str() {
                    "days" | "day" => Some(k),
                    "weeks" | "week" => k.checked_mul(7),
                    _ => None,
                };
                if let Some(r) = days.and_then(mk) {
                    return (keep(3), Some(r));
                }
            }
        }
        (t.to_string(), None)
    }

    /// The next due instant after a completion at `done_at`: the previous due date moved on by
    /// whole intervals until it is after `done_at` (a late completion does not shift the rhythm),
    /// or `done_at` + one interval when there was none.
    pub fn next_due(
        &self,
        previous: Option<DateTime<Utc>>,
        done_at: DateTime<Utc>,
    ) -> DateTime<Utc> {
        let step = Duration::days(self.every_days.max(1) as i64);
        match previous {
            Some(p) if p > done_at => p + step,
            Some(p) => {
                let behind = (done_at - p).num_seconds() / step.num_seconds() + 1;
                p + step * (behind as i32)
            }
            None => done_at + step,
        }
    }

    /// "every day", "every week", "every 3 days".
    pub fn describe(&self) -> String {
        match self.every_days {
            1 => "every day".into(),
            7 => "every week".into(),
            d if d % 7 == 0 => format!("every {} weeks", d / 7),
            d => format!("every {d} days"),
        }
    }
}

/// The chore's recurrence (`None` for one-off chores and unreadable values).
pub fn recurrence_of(c: &ChoreRow) -> Option<Recurrence> {
    c.recurrence
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
}

/// The change that completes `chore` (done by `by` at `now`), from one of `from`: a one-off
/// chore becomes "completed"; a recurring one goes back to "todo" with its next due date.
pub fn completion_change(
    chore: &ChoreRow,
    by: i64,
    now: DateTime<Utc>,
    from: &'static [&'static str],
) -> ChoreChange {
    let (status, next_due) = match recurrence_of(chore) {
        Some(r) => (CHORE_TODO, Some(Some(r.next_due(chore.next_due, now)))),
        None => (CHORE_COMPLETED, None),
    };
    ChoreChange {
        chore_id: chore.id,
        expect: from,
        status,
        next_due,
        completed_by: Some(by),
        archive: false,
    }
}

/// The change that puts a chore pending verification back to to-do (rejection, expiry,
/// cancellation: choresir's expired verification left the chore stuck forever).
pub fn reopen_change(chore_id: i64) -> ChoreChange {
    ChoreChange {
        chore_id,
        expect: &[CHORE_PENDING],
        status: CHORE_TODO,
        next_due: None,
        completed_by: None,
        archive: false,
    }
}

/// The change that archives (deletes) a chore.
pub fn archive_change(chore_id: i64) -> ChoreChange {
    ChoreChange {
        chore_id,
        expect: DELETABLE,
        status: CHORE_ARCHIVED,
        next_due: None,
        completed_by: None,
        archive: true,
    }
}

/// Statuses in which a chore may be deleted.
const DELETABLE: &[&str] = &[CHORE_TODO, CHORE_PENDING, CHORE_COMPLETED];

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
    #[error(
        "Group chores live in a group: use this command there. In a private chat use /addpersonal."
    )]
    GroupOnly,
    #[error("Personal chores are kept in our private chat: send me this there.")]
    PrivateOnly,
    #[error("storage failure")]
    Store(#[from] StoreError),
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

/// Add a group chore from `input` ("Water plants every 3 days"); the group is `chat_id`.
pub async fn add(
    svc: &Services,
    chat_id: i64,
    actor_id: i64,
    input: &str,
) -> Result<ChoreRow, ChoreError> {
    let (title, rec) = Recurrence::split_title(input);
    let title = clean_title(&title)?;
    let now = svc.clock.now();
    Ok(svc
        .store
        .insert_chore(NewChore {
            chat_id,
            title: &title,
            description: None,
            personal: false,
            owner_id: None,
            partner_id: None,
            assignee_id: None,
            recurrence: rec.and_then(|r| serde_json::to_string(&r).ok()),
            next_due: rec.map(|r| now + Duration::days(r.every_days as i64)),
            points: 1,
            created_by: actor_id,
            created_at: now,
        })
        .await?)
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
/// private chat id) with an optional accountability partner given as `@username`.
/// Returns the chore and the partner.
pub async fn add_personal(
    svc: &Services,
    chat_id: i64,
    owner_id: i64,
    input: &str,
) -> Result<(ChoreRow, Option<UserRow>), ChoreError> {
    let (rest, partner_name) = split_partner(input);
    let (title, rec) = Recurrence::split_title(&rest);
    let title = clean_title(&title)?;
    let partner = match partner_name {
        Some(u) => {
            let p = svc
                .store
                .user_by_username(&u)
                .await?
                .ok_or_else(|| ChoreError::UnknownPartner(crate::context::clip(&u, 40)))?;
            if p.id == owner_id {
                return Err(ChoreError::PartnerIsSelf);
            }
            Some(p)
        }
        None => None,
    };
    let now = svc.clock.now();
    let chore = svc
        .store
        .insert_chore(NewChore {
            chat_id,
            title: &title,
            description: None,
            personal: true,
            owner_id: Some(owner_id),
            partner_id: partner.as_ref().map(|p| p.id),
            assignee_id: Some(owner_id),
            recurrence: rec.and_then(|r| serde_json::to_string(&r).ok()),
            next_due: rec.map(|r| now + Duration::days(r.every_days as i64)),
            points: 1,
            created_by: owner_id,
            created_at: now,
        })
        .await?;
    Ok((chore, partner))
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
    /// A personal chore without a partner: completed at once.
    Completed(ChoreRow),
}

/// "I did it": claim the chore `query` of chat `chat_id` for `actor_id`. A group chore (and a
/// personal chore with a partner) moves to pending verification and a request is opened; a
/// personal chore without a partner is completed at once. A chore already pending
/// verification can't be claimed again (checked in the claiming transaction).
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
            let change = completion_change(&chore, actor_id, now, &[CHORE_TODO]);
            if !svc.store.apply_chore_change(&change, now).await? {
                return Err(claim_refusal(svc, chore.id, &chore.title).await);
            }
            let after = svc.store.chore(chore.id).await?.unwrap_or(chore);
            return Ok(Claimed::Completed(after));
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
            target_id: chore.id,
            target_title: &chore.title,
            partner_id: chore.partner_id.filter(|_| chore.personal),
        },
        CreateGuard::MoveChore {
            chore_id: chore.id,
            from: &[CHORE_TODO],
            to: CHORE_PENDING,
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

fn check_claimable(chore: &ChoreRow) -> Result<(), ChoreError> {
    match chore.status.as_str() {
        CHORE_PENDING => Err(ChoreError::AlreadyPending(chore.title.clone())),
        CHORE_COMPLETED => Err(ChoreError::AlreadyDone(chore.title.clone())),
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
            if wf.kind == Kind::PersonalVerification.as_str() {
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
            target_id: chore.id,
            target_title: &chore.title,
            partner_id: None,
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
            status: CHORE_TODO.into(),
            recurrence: None,
            next_due: None,
            points: 1,
            created_by: 1,
            created_at: t,
            updated_at: t,
            completed_at: None,
            completed_by: None,
            archived_at: None,
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

    #[test]
    fn splits_recurrence_and_partner() {
        assert_eq!(
            Recurrence::split_title("Water plants every 3 days"),
            ("Water plants".into(), Some(Recurrence { every_days: 3 }))
        );
        assert_eq!(
            Recurrence::split_title("Bins weekly"),
            ("Bins".into(), Some(Recurrence { every_days: 7 }))
        );
        assert_eq!(
            Recurrence::split_title("Every day"),
            ("Every day".into(), None),
            "a title that is only a recurrence stays a title"
        );
        assert_eq!(
            Recurrence::split_title("Rest every 99999999999999999999 days").1,
            None
        );
        assert_eq!(
            split_partner("Go running partner @Bob"),
            ("Go running".into(), Some("Bob".into()))
        );
        assert_eq!(split_partner("Read @ home"), ("Read @ home".into(), None));
    }

    #[test]
    fn next_due_keeps_the_rhythm() {
        let r = Recurrence { every_days: 7 };
        let t = Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap();
        assert_eq!(r.next_due(None, t), t + Duration::days(7));
        // done early: next is one interval after the due date
        assert_eq!(
            r.next_due(Some(t + Duration::days(2)), t),
            t + Duration::days(9)
        );
        // done 10 days late: the next slot after now on the same rhythm
        assert_eq!(
            r.next_due(Some(t - Duration::days(10)), t),
            t + Duration::days(4)
        );
    }
}
