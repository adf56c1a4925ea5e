//! Saving recorded routines (issue 10, items 2, 3, 4 and 8): a task a member did once in chat
//! with two or more tool calls becomes a routine they replay by `/name`.
//!
//! Owns: the "💾 Save as routine" button on a member turn's reply ([`reply_buttons`]) and the
//! suggestion after the third matching task ([`after_turn`], [`suggest`]); the save dialogue
//! ([`save`]: authorization, name, shared or personal, preview, Save / Cancel; callback prefix
//! `rsave:`, `/save [name]`, `/cancel` while it is open); the extraction ([`extract`]: one model
//! call, validated, retried once, tokens recorded). Replaying, listing and the command menu are
//! not here (runner, ask, commands, menu).
//!
//! May use: agent (the model through its gate — no tools offered —, the tool registry), store
//! (turns, tool calls, kv, chats, routines), routines::{doc, model, steps}, router (traits),
//! services. Registered by the wiring ([`register`], where the agent is at hand) and called by
//! the core after a member turn and for `rsave:` taps.

pub mod extract;
pub mod save;
pub mod suggest;

use crate::{
    agent::{Agent, TurnOutcome},
    format::escape_html as e,
    router::{Command, CommandCtx, CommandSet, MenuEntry, Router, TextCtx, TextHandler},
    services::Services,
    store::StoreResult,
    types::{Button, CallbackQuery, ChatKind, Outbound},
};
use save::{Said, Tap, Who};

/// The `/save` command in the menu.
pub const COMMANDS: &[MenuEntry] = &[(
    "save",
    "Save your last multi-step task as a routine: /save [name]",
)];

/// Names a routine may not take (issue 10, item 3): every command of the menu (foundation and
/// each registered set, `app::router`) plus `start`, `help`, `cancel` and `save`. A unit test
/// keeps it equal to the wiring's menu.
pub fn is_reserved(name: &str) -> bool {
    // core commands, `/save`, and the web admin's `/admin` (an adapter: named here, not imported)
    const OWN: &[&str] = &[
        "start", "help", "members", "timezone", "cancel", "save", "admin",
    ];
    OWN.contains(&name)
        || [
            crate::workflow::commands::COMMANDS,
            crate::chores::commands::COMMANDS,
            super::playbooks::COMMANDS,
            super::run_commands::COMMANDS,
            super::commands::COMMANDS,
            COMMANDS,
        ]
        .iter()
        .any(|set| set.iter().any(|(c, _)| *c == name))
}

/// The buttons a member turn's reply carries: "💾 Save as routine" when the turn is recorded
/// and [`save::MIN_CALLS`] of its tool calls ran; else none.
pub fn reply_buttons(outcome: &TurnOutcome) -> Vec<Vec<Button>> {
    match outcome.turn_id {
        Some(id) if outcome.calls_ran() >= save::MIN_CALLS => save::save_button(id),
        _ => vec![],
    }
}

/// After a member turn's reply: offer to save the task when it is the third matching one
/// ([`suggest`]). Never calls the model; failures are logged, never shown.
pub async fn after_turn(svc: &Services, chat_id: i64, user_id: i64, outcome: &TurnOutcome) {
    let Some(turn_id) = outcome.turn_id else {
        return;
    };
    let Some(fp) = crate::store::fingerprint(&outcome.calls) else {
        return;
    };
    match suggest::offer(svc, chat_id, user_id, turn_id, &fp, outcome.calls_ran()).await {
        Ok(Some(out)) => {
            if let Err(err) = svc.outbox.send(out).await {
                tracing::warn!(chat_id, error = %err, "suggestion not delivered");
            }
        }
        Ok(None) => {}
        Err(err) => tracing::warn!(chat_id, error = %err, "suggestion not checked"),
    }
}

/// Register `/save`, `/cancel` of an open dialogue and the name answers before every other set
/// and text step (a name answer is the member's next message, like a run's input answer).
pub fn register(router: Router, agent: &Agent) -> Router {
    router
        .commands_first(SaveCommands {
            agent: agent.clone(),
        })
        .text_first(SaveReplies)
}

/// A tap on an `rsave:` button; false when the data is not one (the caller goes on). Answered
/// at once: a refusal as a toast, a next question as a message in the chat.
///
/// Errors: storage (the callback is still answered).
pub async fn on_callback(svc: &Services, agent: &Agent, c: &CallbackQuery) -> StoreResult<bool> {
    if !c.data.starts_with(save::PREFIX) {
        return Ok(false);
    }
    let who = Who {
        chat_id: c.chat.id,
        user_id: c.from.id,
        group: c.chat.kind == ChatKind::Group,
    };
    let said = match save::parse_data(&c.data) {
        None => Ok(Said::Refused("This button is no longer active.".into())),
        Some((Tap::Start, turn)) => save::start(svc, agent, who, Some(turn), None).await,
        Some((tap, turn)) => save::tap(svc, who, tap, turn).await,
    };
    let said = match said {
        Ok(s) => s,
        Err(err) => {
            answer(svc, c, Some("Sorry, that didn't work. Please try again.")).await;
            return Err(err);
        }
    };
    match said {
        Said::Refused(text) => answer(svc, c, Some(&text)).await,
        Said::Message(html, buttons) => {
            answer(svc, c, None).await;
            let out = Outbound {
                chat_id: c.chat.id,
                html,
                buttons,
                reply_to: None,
            };
            if let Err(err) = svc.outbox.send(out).await {
                tracing::warn!(chat_id = c.chat.id, error = %err, "save dialogue not delivered");
            }
        }
    }
    Ok(true)
}

async fn answer(svc: &Services, c: &CallbackQuery, text: Option<&str>) {
    if let Err(err) = svc
        .outbox
        .messenger()
        .answer_callback(&c.id, text, false)
        .await
    {
        tracing::warn!(error = %err, "callback not answered");
    }
}

fn said_html(said: Said) -> (String, Vec<Vec<Button>>) {
    match said {
        Said::Refused(t) => (e(&t), vec![]),
        Said::Message(h, b) => (h, b),
    }
}

/// `/save [name]` and `/cancel` while a save dialogue is open.
pub struct SaveCommands {
    agent: Agent,
}

#[async_trait::async_trait]
impl CommandSet for SaveCommands {
    fn menu(&self) -> &'static [MenuEntry] {
        COMMANDS
    }

    async fn handle(
        &self,
        svc: &Services,
        ctx: &CommandCtx<'_>,
        cmd: &Command,
    ) -> Option<anyhow::Result<()>> {
        let who = Who {
            chat_id: ctx.chat.id,
            user_id: ctx.from.id,
            group: ctx.chat_kind == ChatKind::Group,
        };
        let said = match cmd.name.as_str() {
            "save" => {
                let name = cmd.args.split_whitespace().next();
                match save::start(svc, &self.agent, who, None, name).await {
                    Ok(s) => s,
                    Err(err) => return Some(Err(err.into())),
                }
            }
            "cancel" if cmd.args.trim().is_empty() => {
                match save::cancel(svc, who.chat_id, who.user_id).await {
                    Ok(true) => Said::Message("Stopped: the routine was not saved.".into(), vec![]),
                    Ok(false) => return None,
                    Err(err) => return Some(Err(err.into())),
                }
            }
            _ => return None,
        };
        let (html, buttons) = said_html(said);
        let out = Outbound {
            buttons,
            ..ctx.reply(html)
        };
        Some(svc.outbox.send(out).await.map(|_| ()).map_err(Into::into))
    }

    fn help_note(&self) -> Option<String> {
        Some(
            "Routines from your tasks: after I do something for you in two or more steps, tap 💾 Save as routine (or /save [name]); only you can save your own task."
                .into(),
        )
    }
}

/// The member's next message while the dialogue asks for a name. Declines otherwise.
pub struct SaveReplies;

#[async_trait::async_trait]
impl TextHandler for SaveReplies {
    fn name(&self) -> &'static str {
        "routine_name"
    }

    async fn handle(&self, svc: &Services, msg: &TextCtx<'_>) -> StoreResult<bool> {
        let who = Who {
            chat_id: msg.chat.id,
            user_id: msg.from.id,
            group: msg.chat_kind == ChatKind::Group,
        };
        // "@hearth_bot handover" names "handover"
        let text: Vec<&str> = msg
            .text
            .split_whitespace()
            .filter(|w| !w.starts_with('@'))
            .collect();
        let Some(said) = save::answer_name(svc, who, &text.join(" ")).await? else {
            return Ok(false);
        };
        let (html, buttons) = said_html(said);
        let out = Outbound {
            buttons,
            ..msg.reply(html)
        };
        if let Err(err) = svc.outbox.send(out).await {
            tracing::warn!(chat_id = msg.chat.id, error = %err, "save dialogue not delivered");
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_menu_command_is_reserved() {
        let router = crate::app::router().commands(SaveCommands {
            agent: crate::agent::Agent::new(
                None,
                crate::agent::ToolRegistry::foundation(),
                crate::agent::prompt::Prompt::builtin(),
            ),
        });
        for (c, _) in crate::core::commands::menu(&router) {
            assert!(is_reserved(c), "/{c} is not reserved");
        }
        for c in ["start", "help", "cancel", "save"] {
            assert!(is_reserved(c));
        }
        assert!(!is_reserved("handover"));
    }
}
