//! Built-in routine templates for `/routine_install <template>`: a name, default trigger(s) and
//! a prompt. Members may give other triggers when installing (`/routine_install bin_night cron 0 20 * * 2`).
//! Uses: nothing but this module's types.

/// One built-in template.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    /// Routine name it installs as (also the template's name; command-safe, so `/morning_briefing`
    /// runs it).
    pub name: &'static str,
    /// One line for listings.
    pub summary: &'static str,
    /// Default triggers (trigger strings; see `model::TriggerSpec::parse`).
    pub triggers: &'static [&'static str],
    /// minijinja syntax (`{{ date }}`, see `model::PLACEHOLDERS`).
    pub prompt: &'static str,
    pub quiet: bool,
    /// True when installing needs arguments (`oneoff_reminder <when> <text>`).
    pub needs_args: bool,
}

/// The built-in templates.
pub const TEMPLATES: &[Template] = &[
    Template {
        name: "morning_briefing",
        summary: "weekdays 08:00: today's chores and pending approvals",
        triggers: &["cron 0 8 * * 1-5"],
        prompt: "Morning briefing for {{ date }}: list today's chores (who does what) and the approvals still pending, in a short friendly message. If there is nothing, say so in one line.",
        quiet: false,
        needs_args: false,
    },
    Template {
        name: "weekly_leaderboard",
        summary: "Sundays 18:00: who did the most chores this week",
        triggers: &["cron 0 18 * * 0"],
        prompt: "Post this week's chore leaderboard: who completed the most chores in the last 7 days, top three first, one cheerful line each.",
        quiet: false,
        needs_args: false,
    },
    Template {
        name: "bin_night",
        summary: "Wednesdays 19:00: which bins go out (tell me which; I keep it in the state)",
        triggers: &["cron 0 19 * * 3"],
        prompt: "It's bin night ({{ date }}). Remind the group which bins go out. Bins noted so far: {{ state }}. If none are noted, ask the group to tell me which bins go out (store them with routine_set_state on bin_night).",
        quiet: false,
        needs_args: false,
    },
    Template {
        name: "overdue_nudge",
        summary: "when a chore goes overdue: nudge the assignee",
        triggers: &["event chore_overdue"],
        prompt: "A chore just went overdue: {{ event }}. Nudge its assignee by name in one kind line (or the group if nobody is assigned).",
        quiet: false,
        needs_args: false,
    },
    Template {
        name: "oneoff_reminder",
        summary: "/routine_install oneoff_reminder <when> <text>: remind once",
        triggers: &[],
        prompt: "Remind the chat, in one line: ",
        quiet: false,
        needs_args: true,
    },
];

/// The template called `name` (case-insensitive; the older hyphenated names such as
/// "morning-briefing" still find theirs).
pub fn find(name: &str) -> Option<&'static Template> {
    let name = super::model::fix_name(name);
    TEMPLATES.iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routines::model::{render_prompt, validate_name, validate_template, PromptVars};

    #[test]
    fn every_template_is_a_command_and_renders() {
        let v = PromptVars {
            date: "Mon 2026-11-23".into(),
            time: "08:00".into(),
            tick_count: 1,
            state: r#"{"bins":"{{ date }} {event}"}"#.into(),
            api_args: String::new(),
            event: r#"{"title":"{state}"}"#.into(),
        };
        for t in TEMPLATES {
            validate_name(t.name).unwrap();
            validate_template(t.prompt).unwrap_or_else(|e| panic!("{}: {e}", t.name));
            let out = render_prompt(t.prompt, &v).unwrap();
            assert!(
                !out.contains("{{ date }}") || t.prompt.contains("state"),
                "{}: {out}",
                t.name
            );
            assert!(
                !out.contains("{{ event }}") && !out.contains("{{ state }}"),
                "{}: {out}",
                t.name
            );
            assert_eq!(
                find(&t.name.replace('_', "-")).map(|f| f.name),
                Some(t.name)
            );
        }
        let out = render_prompt(find("bin_night").unwrap().prompt, &v).unwrap();
        assert!(
            out.contains(r#"Bins noted so far: {"bins":"{{ date }} {event}"}."#),
            "{out}"
        );
    }
}
