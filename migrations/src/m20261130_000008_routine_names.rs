//! Routine data for issue 8, no schema change:
//!
//! * names become Telegram-command-safe, `[a-z0-9_]{1,32}`, so `/morning_briefing` runs a
//!   routine: lower-cased, every run of other characters ('-', spaces, accents) becomes one `_`,
//!   `_` trimmed at the ends, cut at 32, `routine` when nothing is left (the same rule as
//!   `hearth::routines::model::fix_name`); a name already taken in the chat gets `_2`, `_3`, …
//!   Legal names never change.
//! * prompts move from `{date}`-style placeholders (filled by chained replaces) to minijinja:
//!   `{date}` → `{{ date }}` for the six placeholders, and a `{` that would now open a
//!   minijinja tag (`{{`, `{%`, `{#`) becomes `{{ "{" }}`, so every old prompt renders exactly
//!   as before.
//!
//! Written with sea-query only (SQLite and Postgres). `down` is a no-op: a rename can't be
//! undone safely (the old name may have been reused since), and the new rows still load.

use std::collections::{HashMap, HashSet};

use sea_orm_migration::{prelude::*, sea_orm::ConnectionTrait};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Routines {
    Table,
    Id,
    ChatId,
    Name,
    Prompt,
}

const MAX_NAME_LEN: usize = 32;
const PLACEHOLDERS: &[&str] = &["date", "time", "tickCount", "state", "apiArgs", "event"];

fn name_byte_ok(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
}

fn legal(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.bytes().all(name_byte_ok)
}

/// The closest legal name (see the module docs).
fn fix_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii() && name_byte_ok(c as u8) {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.truncate(MAX_NAME_LEN);
    let out = out.trim_matches('_').to_string();
    if out.is_empty() {
        "routine".into()
    } else {
        out
    }
}

/// `base` made unique among `taken` with `_2`, `_3`, … (cut to fit 32 bytes).
fn unique(base: &str, taken: &HashSet<String>) -> String {
    if !taken.contains(base) {
        return base.to_string();
    }
    for n in 2.. {
        let suffix = format!("_{n}");
        let keep = &base[..base.len().min(MAX_NAME_LEN - suffix.len())];
        let cand = format!("{}{suffix}", keep.trim_end_matches('_'));
        if !taken.contains(&cand) {
            return cand;
        }
    }
    unreachable!("an unbounded range always finds a free name")
}

/// An old prompt in minijinja syntax that renders exactly as the old replaces did.
fn legacy_prompt(old: &str) -> String {
    let mut out = String::with_capacity(old.len() + 16);
    let mut rest = old;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(p) = PLACEHOLDERS
            .iter()
            .find(|p| rest[1..].starts_with(**p) && rest[1 + p.len()..].starts_with('}'))
        {
            out.push_str(&format!("{{{{ {p} }}}}"));
            rest = &rest[p.len() + 2..];
        } else if matches!(rest.as_bytes().get(1), Some(b'{' | b'%' | b'#')) {
            out.push_str("{{ \"{\" }}");
            rest = &rest[1..];
        } else {
            out.push('{');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let rows = db
            .query_all(
                &Query::select()
                    .columns([
                        Routines::Id,
                        Routines::ChatId,
                        Routines::Name,
                        Routines::Prompt,
                    ])
                    .from(Routines::Table)
                    .order_by(Routines::Id, Order::Asc)
                    .to_owned(),
            )
            .await?;
        let mut routines = Vec::with_capacity(rows.len());
        for r in rows {
            routines.push((
                r.try_get::<i64>("", "id")?,
                r.try_get::<i64>("", "chat_id")?,
                r.try_get::<String>("", "name")?,
                r.try_get::<String>("", "prompt")?,
            ));
        }
        // legal names stay, so they are taken first
        let mut taken: HashMap<i64, HashSet<String>> = HashMap::new();
        for (_, chat, name, _) in &routines {
            if legal(name) {
                taken.entry(*chat).or_default().insert(name.clone());
            }
        }
        for (id, chat, name, prompt) in &routines {
            let mut update = Query::update();
            update
                .table(Routines::Table)
                .and_where(Expr::col(Routines::Id).eq(*id));
            let mut changed = false;
            if !legal(name) {
                let set = taken.entry(*chat).or_default();
                let new = unique(&fix_name(name), set);
                set.insert(new.clone());
                update.value(Routines::Name, new);
                changed = true;
            }
            let new_prompt = legacy_prompt(prompt);
            if &new_prompt != prompt {
                update.value(Routines::Prompt, new_prompt);
                changed = true;
            }
            if changed {
                db.execute(&update).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_prompts() {
        let mut taken: HashSet<String> = ["morning_briefing".to_string()].into();
        let a = unique(&fix_name("morning-briefing"), &taken);
        assert_eq!(a, "morning_briefing_2");
        taken.insert(a);
        assert_eq!(
            unique(&fix_name("Morning Briefing"), &taken),
            "morning_briefing_3"
        );
        let long = fix_name(&"x".repeat(40));
        taken.insert(long.clone());
        let u = unique(&long, &taken);
        assert_eq!((u.len(), u.ends_with("_2")), (32, true));
        assert_eq!(fix_name("日本"), "routine");
        assert_eq!(
            legacy_prompt("{date}: {{ x }} {%y%} {#z#} {other} {state}"),
            "{{ date }}: {{ \"{\" }}{ x }} {{ \"{\" }}%y%} {{ \"{\" }}#z#} {other} {{ state }}"
        );
        assert_eq!(legacy_prompt("{{date}}"), "{{ \"{\" }}{{ date }}}");
    }
}
