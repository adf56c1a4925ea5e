//! Who does a chore next: the rotation rules, pure (no I/O).
//!
//! Owns: the rules of the [`Rotation`] modes and [`next_assignee`]. The chores service feeds it
//! the chore's rotation members, who is active in the group and how often each member completed
//! the chore. Uses: std, and the `Rotation` enum the store defines (a plain value).

use std::collections::HashMap;

/// How the next assignee is chosen when a completion is approved (stored by `store`).
pub use crate::store::Rotation;

impl Rotation {
    /// A few words for lists: "", "rotating", "rotating, least done first".
    pub fn describe(self) -> &'static str {
        match self {
            Rotation::Fixed => "",
            Rotation::RoundRobin => "rotating",
            Rotation::LeastCompleted => "rotating, least done first",
        }
    }
}

/// The next assignee after a completion (or after `current` left the group).
///
/// * `members`: rotation order (user ids); members for whom `active` is false are skipped.
/// * `current`: the assignee whose turn just ended (`None`: unassigned).
/// * `done`: completions of this chore per user (for [`Rotation::LeastCompleted`]).
///
/// `Fixed` keeps `current` when active, else `None`. The rotating modes give `None` only when
/// no member is active.
pub fn next_assignee(
    mode: Rotation,
    members: &[i64],
    current: Option<i64>,
    active: impl Fn(i64) -> bool,
    done: &HashMap<i64, usize>,
) -> Option<i64> {
    let candidates: Vec<i64> = members.iter().copied().filter(|m| active(*m)).collect();
    // the rotation order starting after `current`
    let start = current
        .and_then(|c| members.iter().position(|m| *m == c))
        .map(|i| i + 1)
        .unwrap_or(0);
    let order: Vec<i64> = (0..members.len())
        .map(|k| members[(start + k) % members.len()])
        .filter(|m| active(*m))
        .collect();
    match mode {
        Rotation::Fixed => current.filter(|c| active(*c)),
        Rotation::RoundRobin => order.first().copied(),
        Rotation::LeastCompleted => {
            let least = candidates
                .iter()
                .map(|m| done.get(m).copied().unwrap_or(0))
                .min()?;
            order
                .into_iter()
                .find(|m| done.get(m).copied().unwrap_or(0) == least)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_wraps_and_skips_inactive() {
        let m = [1, 2, 3];
        let none = HashMap::new();
        let all = |_| true;
        let mut cur = Some(1);
        let mut seen = vec![];
        for _ in 0..4 {
            cur = next_assignee(Rotation::RoundRobin, &m, cur, all, &none);
            seen.push(cur.unwrap());
        }
        assert_eq!(seen, vec![2, 3, 1, 2]);
        assert_eq!(
            next_assignee(Rotation::RoundRobin, &m, Some(1), |u| u != 2, &none),
            Some(3)
        );
        assert_eq!(
            next_assignee(Rotation::RoundRobin, &m, None, all, &none),
            Some(1)
        );
        assert_eq!(
            next_assignee(Rotation::RoundRobin, &m, Some(2), |_| false, &none),
            None
        );
    }

    #[test]
    fn least_completed_breaks_ties_in_rotation_order() {
        let m = [1, 2, 3];
        let done = HashMap::from([(1, 3), (2, 1), (3, 1)]);
        assert_eq!(
            next_assignee(Rotation::LeastCompleted, &m, Some(2), |_| true, &done),
            Some(3)
        );
        assert_eq!(
            next_assignee(Rotation::LeastCompleted, &m, Some(3), |_| true, &done),
            Some(2)
        );
        let done = HashMap::from([(1, 0), (2, 1)]);
        assert_eq!(
            next_assignee(Rotation::LeastCompleted, &m, Some(1), |_| true, &done),
            Some(3),
            "no completions counts as zero"
        );
    }

    #[test]
    fn fixed_keeps_an_active_assignee() {
        let none = HashMap::new();
        assert_eq!(
            next_assignee(Rotation::Fixed, &[], Some(5), |_| true, &none),
            Some(5)
        );
        assert_eq!(
            next_assignee(Rotation::Fixed, &[], Some(5), |_| false, &none),
            None
        );
    }
}
