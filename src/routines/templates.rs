//! Built-in routine templates for `/routine_install <template>`: a name, default trigger(s) and
//! a prompt. Members may give other triggers when installing (`/routine_install bin-night cron 0 20 * * 2`).
//! Uses: nothing but this module's types.

/// One built-in template.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    /// Routine name it installs as (also the template's name).
    pub name: &'static str,
    /// One line for listings.
    pub summary: &'static str,
    /// Default triggers (trigger strings; see `model::TriggerSpec::parse`).
    pub triggers: &'static [&'static str],
    pub prompt: &'static str,
    pub quiet: bool,
    /// True when installing needs arguments (`oneoff-reminder <when> <text>`).
    pub needs_args: bool,
}

/// The built-in templates.
pub const TEMPLATES: &[Template] = &[
    Template {
        name: "morning-briefing",
        summary: "weekdays 08:00: today's chores and pending approvals",
        triggers: &["cron 0 8 * * 1-5"],
        prompt: "Morning briefing for {date}: list today's chores (who does what) and the approvals still pending, in a short friendly message. If there is nothing, say so in one line.",
        quiet: false,
        needs_args: false,
    },
    Template {
        name: "weekly-leaderboard",
        summary: "Sundays 18:00: who did the most chores this week",
        triggers: &["cron 0 18 * * 0"],
        prompt: "Post this week's chore leaderboard: who completed the most chores in the last 7 days, top three first, one cheerful line each.",
        quiet: false,
        needs_args: false,
    },
    Template {
        name: "bin-night",
        summary: "Wednesdays 19:00: which bins go out (tell me which; I keep it in the state)",
        triggers: &["cron 0 19 * * 3"],
        prompt: "It's bin night ({date}). Remind the group which bins go out. Bins noted so far: {state}. If none are noted, ask the group to tell me which bins go out (store them with routine_set_state on bin-night).",
        quiet: false,
        needs_args: false,
    },
    Template {
        name: "overdue-nudge",
        summary: "when a chore goes overdue: nudge the assignee",
        triggers: &["event chore_overdue"],
        prompt: "A chore just went overdue: {event}. Nudge its assignee by name in one kind line (or the group if nobody is assigned).",
        quiet: false,
        needs_args: false,
    },
    Template {
        name: "oneoff-reminder",
        summary: "/routine_install oneoff-reminder <when> <text>: remind once",
        triggers: &[],
        prompt: "Remind the chat, in one line: ",
        quiet: false,
        needs_args: true,
    },
];

/// The template called `name` (case-insensitive).
pub fn find(name: &str) -> Option<&'static Template> {
    TEMPLATES
        .iter()
        .find(|t| t.name.eq_ignore_ascii_case(name.trim()))
}
