//! Approve / Reject (and a confirmation's Confirm / Cancel) buttons: callback data
//! (`wf:a:<id>` / `wf:r:<id>` / `wf:c:<id>`, far below Telegram's 64 bytes) and the tap
//! handler. Every tap is authorized against the workflow through [`super::decide`] /
//! [`super::cancel`] (OpenClaw and zeroclaw honoured taps from anyone) against the tapper's
//! current membership — a tap registers nobody — answered with a short toast, and a
//! redelivered tap never resolves twice (the transition is conditional).
//! Uses: services, types, the workflow service.

use super::{cancel, decide, render, Decide, Outcome, Via};
use crate::{
    services::Services,
    store::StoreResult,
    types::{Button, CallbackQuery},
};

/// Callback data prefix of workflow buttons.
pub const PREFIX: &str = super::parse::CALLBACK_PREFIX;

/// The button row of a request message.
pub fn for_request(workflow_id: i64) -> Vec<Vec<Button>> {
    vec![vec![
        Button {
            label: "✅ Approve".into(),
            data: format!("{PREFIX}a:{workflow_id}"),
        },
        Button {
            label: "❌ Reject".into(),
            data: format!("{PREFIX}r:{workflow_id}"),
        },
    ]]
}

/// The button row of a confirmation (only its requester may tap): Confirm approves it, Cancel
/// cancels it.
pub fn for_confirmation(workflow_id: i64) -> Vec<Vec<Button>> {
    vec![vec![
        Button {
            label: "✅ Confirm".into(),
            data: format!("{PREFIX}a:{workflow_id}"),
        },
        Button {
            label: "✖️ Cancel".into(),
            data: format!("{PREFIX}c:{workflow_id}"),
        },
    ]]
}

/// Parse workflow callback data: `wf:a:12` → (Decide(Approve), 12), `wf:c:12` → (Cancel, 12).
pub use super::parse::{parse_callback_data as parse_data, Tap};

/// Handle a tap when its data is a workflow button: decide, answer the callback at once with
/// the outcome as a toast (the request message is edited by the service). Returns false when
/// the data is not a workflow button (the caller answers it).
///
/// Errors: storage (the callback is still answered).
pub async fn on_callback(svc: &Services, c: &CallbackQuery) -> StoreResult<bool> {
    if !c.data.starts_with(PREFIX) {
        return Ok(false);
    }
    let Some((tap, id)) = parse_data(&c.data) else {
        answer(svc, c, "This button is no longer active.").await;
        return Ok(true);
    };
    let outcome = match tap {
        Tap::Decide(decision) => {
            decide(
                svc,
                Decide {
                    workflow_id: id,
                    actor_id: c.from.id,
                    decision,
                    reason: None,
                    via: Via::Button,
                    origin_chat: c.chat.id,
                },
            )
            .await
        }
        Tap::Cancel => cancel(svc, id, c.from.id, Via::Button, c.chat.id).await,
    };
    match outcome {
        Ok(o) => {
            let text = render::outcome_plain(&o);
            answer(svc, c, &text).await;
            if let Outcome::Done(_) = o {
                tracing::debug!(workflow_id = id, "resolved by button");
            }
            Ok(true)
        }
        Err(e) => {
            answer(svc, c, "Sorry, that didn't work. Please try again.").await;
            Err(e)
        }
    }
}

async fn answer(svc: &Services, c: &CallbackQuery, text: &str) {
    if let Err(e) = svc
        .outbox
        .messenger()
        .answer_callback(&c.id, Some(text), false)
        .await
    {
        tracing::warn!(error = %e, "callback not answered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::Decision;

    #[test]
    fn data_round_trips_and_fits() {
        let b = for_request(i64::MAX);
        for btn in &b[0] {
            assert!(btn.data.len() <= 64, "{}", btn.data);
        }
        assert_eq!(
            parse_data(&b[0][0].data),
            Some((Tap::Decide(Decision::Approve), i64::MAX))
        );
        assert_eq!(
            parse_data(&b[0][1].data),
            Some((Tap::Decide(Decision::Reject), i64::MAX))
        );
        let c = for_confirmation(i64::MAX);
        assert!(c[0][1].data.len() <= 64);
        assert_eq!(parse_data(&c[0][1].data), Some((Tap::Cancel, i64::MAX)));
        for bad in [
            "wf:x:1",
            "wf:a:",
            "wf:a:-3",
            "wf:a:0",
            "wf:a:1:2",
            "wf:",
            "x:a:1",
            "wf:a:99999999999999999999",
        ] {
            assert_eq!(parse_data(bad), None, "{bad}");
        }
    }
}
