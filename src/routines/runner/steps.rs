//! Executing one step of a claimed run: each step kind (prompt, routine, message, tool, wait,
//! condition, approval), the gate a gated step opens, the agent scope a prompt step runs in, and
//! the single-prompt routine's one step.
//!
//! Uses: the run executor's types and helpers (`super`), `super::facts` (variables, conditions),
//! `super::resume::next_local`, services, agent, store, routines::{steps, gate, progress, model},
//! format.

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use chrono::Duration;
use serde_json::{json, Map, Value};

use super::{
    done,
    facts::{check_value, context, parse_span, render, render_value, test},
    failed, latest_at, new_step_run, next_of, notice,
    resume::next_local,
    start_run, Ctx, Flow, StartRun, Started, Target, SNIPPET_CHARS,
};
use crate::routines::{
    gate::{self, GateRequest},
    model::{render_prompt, PromptVars},
    run_cost,
    steps::{Definition, Resolvers, Step, StepKind, MAX_DEPTH},
    zone_of, RoutineError, QUIET_TOKEN,
};
use crate::{
    agent::{Restriction, Scope, TurnFailure, TurnRequest},
    events::HearthEvent,
    format,
    services::Services,
    store::{
        RoutineRow, RunRow, RunSource, RunStatus, StepChange, StepStatus, StepType, StoreResult,
        ToolCallStatus,
    },
    types::{ChatKind, Outbound},
};

/// Run step `idx` afresh (a new attempt). `gated`: its `require_approval` gate was approved.
pub(super) async fn run_step(ctx: &Ctx<'_>, idx: usize, gated: bool) -> StoreResult<Flow> {
    let step = ctx.snap.def.steps[idx].clone();
    if step.require_approval && !gated && !matches!(step.kind, StepKind::Approval { .. }) {
        let text = format!(
            "Run {} of '{}' wants to go on with {}. Approve?",
            ctx.run.id,
            ctx.routine.name,
            ctx.label(idx)
        );
        return open_gate(ctx, idx, text, Resolvers::Others, 1, None).await;
    }
    let limit = std::time::Duration::from_secs(step.timeout.max(1) as u64);
    let svc = ctx.svc;
    let t0 = Instant::now();
    let kind = step.kind.step_type();
    match &step.kind {
        // waits are bounded by their own deadlines; a single-prompt routine's turn by
        // `llm.timeout`, as before runs had steps
        StepKind::Wait { .. } | StepKind::Approval { .. } | StepKind::Routine { .. } => {
            exec_kind(ctx, idx, &step, t0).await
        }
        _ if ctx.snap.single => exec_kind(ctx, idx, &step, t0).await,
        _ => {
            // bounded execution: the step's own work, not its waits
            match tokio::time::timeout(limit, exec_kind(ctx, idx, &step, t0)).await {
                Ok(f) => f,
                Err(_) => {
                    let now = svc.clock.now();
                    match latest_at(ctx, idx).await? {
                        Some(s) if s.status == StepStatus::Running && s.kind == kind => Ok(failed(
                            s.id,
                            format!("timeout: over {} s", step.timeout),
                            t0,
                            now,
                        )),
                        _ => Ok(Flow::Fail {
                            step: None,
                            reason: format!("timeout: over {} s", step.timeout),
                        }),
                    }
                }
            }
        }
    }
}

/// Execute the kind of step `idx`.
async fn exec_kind(ctx: &Ctx<'_>, idx: usize, step: &Step, t0: Instant) -> StoreResult<Flow> {
    let svc = ctx.svc;
    let vars = context(ctx, idx).await?;
    let kind = step.kind.step_type();
    match &step.kind {
        StepKind::Prompt { prompt, .. } => {
            if ctx.snap.single {
                return single_prompt(ctx, idx, prompt).await;
            }
            let text = match render(prompt, &vars) {
                Ok(t) => t,
                Err(e) => {
                    let id = new_step_run(ctx, idx, kind, StepStatus::Running, None).await?;
                    return Ok(failed(id, e, t0, svc.clock.now()));
                }
            };
            let id = new_step_run(ctx, idx, kind, StepStatus::Running, Some(text.clone())).await?;
            prompt_step(ctx, idx, step, id, &text, t0).await
        }
        StepKind::Message { text, to } => {
            let id = new_step_run(ctx, idx, kind, StepStatus::Running, None).await?;
            let body = match render(text, &vars) {
                Ok(t) => t,
                Err(e) => return Ok(failed(id, e, t0, svc.clock.now())),
            };
            let target = match to.as_deref() {
                None | Some("") | Some("chat") => Some(ctx.chat_id()),
                Some("owner") => Some(ctx.run_owner()),
                Some(who) => {
                    let who = render(who, &vars).unwrap_or_else(|_| who.to_string());
                    find_member(svc, ctx.chat_id(), &who).await?
                }
            };
            let Some(target) = target else {
                return Ok(failed(
                    id,
                    format!(
                        "message: no member '{}' in this chat",
                        to.clone().unwrap_or_default()
                    ),
                    t0,
                    svc.clock.now(),
                ));
            };
            let sent = svc
                .outbox
                .send(Outbound {
                    chat_id: target,
                    html: format::markdown_to_html(&body),
                    buttons: vec![],
                    reply_to: None,
                })
                .await;
            let now = svc.clock.now();
            Ok(match sent {
                Ok(_) => Flow::Next {
                    step: done(id, body, t0, now),
                    next: next_of(idx),
                    loops: None,
                },
                Err(e) => failed(id, format!("delivery: {e}"), t0, now),
            })
        }
        StepKind::Tool { tool, args } => {
            let mut rendered = Map::new();
            let mut bad = None;
            for (k, v) in args {
                match render_value(v, &vars) {
                    Ok(v) => {
                        rendered.insert(k.clone(), v);
                    }
                    Err(e) => bad = Some(e),
                }
            }
            let input = json!({ "tool": tool, "args": rendered }).to_string();
            let id = new_step_run(ctx, idx, kind, StepStatus::Running, Some(input)).await?;
            if let Some(e) = bad {
                return Ok(failed(id, e, t0, svc.clock.now()));
            }
            let Some(t) = ctx.eng.agent().tools().get(tool).cloned() else {
                return Ok(failed(
                    id,
                    format!("no tool named '{tool}'"),
                    t0,
                    svc.clock.now(),
                ));
            };
            let Some(scope) = scope_for(ctx, false).await? else {
                return Ok(failed(id, "the chat is unknown", t0, svc.clock.now()));
            };
            let res = t.call(svc, &scope, Value::Object(rendered)).await;
            let now = svc.clock.now();
            Ok(match res {
                Ok(v) => {
                    if let Some(err) = v.get("error") {
                        let e = err.as_str().map(str::to_string).unwrap_or(err.to_string());
                        failed(id, format!("{tool}: {e}"), t0, now)
                    } else {
                        let out = match &v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        Flow::Next {
                            step: done(id, out, t0, now),
                            next: next_of(idx),
                            loops: None,
                        }
                    }
                }
                Err(e) => failed(id, format!("{tool}: {e}"), t0, now),
            })
        }
        StepKind::Wait {
            duration,
            until,
            event,
            filters,
            event_timeout,
        } => {
            let now = svc.clock.now();
            let (waiting_for, wake_at, input) = if let Some(d) = duration {
                let Some(d) = parse_span(d) else {
                    let id = new_step_run(ctx, idx, kind, StepStatus::Running, None).await?;
                    return Ok(failed(
                        id,
                        format!("wait: duration '{d}' not understood"),
                        t0,
                        now,
                    ));
                };
                (
                    "timer".to_string(),
                    now + d,
                    json!({ "duration": duration }),
                )
            } else if let Some(u) = until {
                let Some(at) = next_local(u, now, zone_of(&ctx.routine)) else {
                    let id = new_step_run(ctx, idx, kind, StepStatus::Running, None).await?;
                    return Ok(failed(
                        id,
                        format!("wait: until '{u}' is not HH:MM"),
                        t0,
                        now,
                    ));
                };
                ("until".to_string(), at, json!({ "until": u }))
            } else if let Some(ev) = event {
                let timeout = event_timeout
                    .as_deref()
                    .and_then(parse_span)
                    .unwrap_or(Duration::days(1));
                let mut f = Map::new();
                for (k, v) in filters {
                    f.insert(
                        k.clone(),
                        Value::String(render(v, &vars).unwrap_or_else(|_| v.clone())),
                    );
                }
                (
                    format!("event:{ev}"),
                    now + timeout,
                    json!({ "event": ev, "filters": f }),
                )
            } else {
                let id = new_step_run(ctx, idx, kind, StepStatus::Running, None).await?;
                return Ok(failed(id, "wait: needs duration, until or event", t0, now));
            };
            let id =
                new_step_run(ctx, idx, kind, StepStatus::Waiting, Some(input.to_string())).await?;
            Ok(Flow::Wait {
                step: Some(StepChange {
                    status: StepStatus::Waiting,
                    output: None,
                    finished_at: None,
                    ..done(id, "", t0, now)
                }),
                waiting_for,
                wake_at: Some(wake_at),
            })
        }
        StepKind::Condition {
            check,
            then,
            otherwise,
            max_loops,
        } => {
            let id = new_step_run(ctx, idx, kind, StepStatus::Running, None).await?;
            let now = svc.clock.now();
            let value = match check_value(ctx, check, &vars).await? {
                Ok(v) => v,
                Err(e) => return Ok(failed(id, e, t0, now)),
            };
            let yes = match test(&check.test, &value) {
                Ok(b) => b,
                Err(e) => return Ok(failed(id, e, t0, now)),
            };
            let branch = if yes { then } else { otherwise };
            let mut ch = done(id, if yes { "then" } else { "else" }, t0, now);
            ch.reason = Some(crate::context::clip(&value, SNIPPET_CHARS));
            branch_to(ctx, idx, branch.as_deref(), *max_loops, ch, t0)
        }
        StepKind::Approval {
            text,
            resolvers,
            required,
            expires,
            ..
        } => {
            let text = match render(text, &vars) {
                Ok(t) => t,
                Err(e) => {
                    let id = new_step_run(ctx, idx, kind, StepStatus::Running, None).await?;
                    return Ok(failed(id, e, t0, svc.clock.now()));
                }
            };
            let expires = expires.as_deref().and_then(parse_span);
            open_gate(ctx, idx, text, resolvers.clone(), *required, expires).await
        }
        StepKind::Routine { routine, inputs } => {
            let mut rendered = Map::new();
            for (k, v) in inputs {
                match render(v, &vars) {
                    Ok(s) => {
                        rendered.insert(k.clone(), Value::String(s));
                    }
                    Err(e) => {
                        let id = new_step_run(ctx, idx, kind, StepStatus::Running, None).await?;
                        return Ok(failed(id, e, t0, svc.clock.now()));
                    }
                }
            }
            let input = json!({ "routine": routine, "inputs": rendered }).to_string();
            let id = new_step_run(ctx, idx, kind, StepStatus::Running, Some(input)).await?;
            let now = svc.clock.now();
            if ctx.run.depth + 1 > MAX_DEPTH {
                return Ok(failed(
                    id,
                    format!("routine '{routine}': nesting deeper than {MAX_DEPTH}"),
                    t0,
                    now,
                ));
            }
            let Some(child) = svc.store.routine_by_name(ctx.chat_id(), routine).await? else {
                return Ok(failed(id, format!("no routine named '{routine}'"), t0, now));
            };
            let started = start_run(
                svc,
                StartRun {
                    routine_id: child.id,
                    source: RunSource::Manual,
                    trigger_id: None,
                    started_by: ctx.run_owner(),
                    inputs: rendered,
                    scheduled_for: None,
                    catch_up: false,
                    parent_run_id: Some(ctx.run.id),
                    depth: ctx.run.depth + 1,
                },
            )
            .await;
            match started {
                Ok(Started::Run(cid)) => {
                    ctx.eng.kick();
                    Ok(Flow::Wait {
                        step: Some(StepChange {
                            status: StepStatus::Waiting,
                            output: None,
                            finished_at: None,
                            ..done(id, "", t0, now)
                        }),
                        waiting_for: format!("child:{cid}"),
                        wake_at: None,
                    })
                }
                Ok(Started::Skipped(_, reason)) => Ok(failed(
                    id,
                    format!("routine '{routine}' skipped: {reason}"),
                    t0,
                    now,
                )),
                Err(RoutineError::Store(e)) => Err(e),
                Err(e) => Ok(failed(id, format!("routine '{routine}': {e}"), t0, now)),
            }
        }
    }
}

/// Go to `branch` ("end", a step name, or the next step). A branch back to this step or an
/// earlier one counts as a loop for step `idx`; past `max_loops` (default 0) the run fails
/// "loop limit".
pub(super) fn branch_to(
    ctx: &Ctx<'_>,
    idx: usize,
    branch: Option<&str>,
    max_loops: Option<u32>,
    ch: StepChange,
    t0: Instant,
) -> StoreResult<Flow> {
    let now = ctx.svc.clock.now();
    let target = match branch.map(str::trim) {
        None | Some("") | Some("next") => next_of(idx),
        Some("end") => Target::End,
        Some(name) => match ctx
            .snap
            .def
            .steps
            .iter()
            .position(|s| s.name.as_deref() == Some(name))
        {
            Some(i) => Target::Step(i),
            None => return Ok(failed(ch.id, format!("no step named '{name}'"), t0, now)),
        },
    };
    let mut loops = None;
    if let Target::Step(i) = target {
        if i <= idx {
            let mut m: BTreeMap<String, u32> =
                serde_json::from_str(&ctx.run.loops).unwrap_or_default();
            let n = m.entry(idx.to_string()).or_default();
            *n += 1;
            if *n > max_loops.unwrap_or(0) {
                return Ok(Flow::Fail {
                    step: Some(ch),
                    reason: "loop limit".into(),
                });
            }
            loops = Some(serde_json::to_string(&m).unwrap_or_else(|_| "{}".into()));
        }
    }
    Ok(Flow::Next {
        step: ch,
        next: target,
        loops,
    })
}

/// Open an approval gate for step `idx` (an `approval` step or a `require_approval` one).
async fn open_gate(
    ctx: &Ctx<'_>,
    idx: usize,
    text: String,
    resolvers: Resolvers,
    required: u32,
    expires: Option<Duration>,
) -> StoreResult<Flow> {
    let svc = ctx.svc;
    let t0 = Instant::now();
    let id = new_step_run(
        ctx,
        idx,
        StepType::Approval,
        StepStatus::Waiting,
        Some(text.clone()),
    )
    .await?;
    let opened = gate::open(
        svc,
        GateRequest {
            chat_id: ctx.chat_id(),
            run_id: ctx.run.id,
            step_run_id: id,
            owner_id: ctx.run_owner(),
            routine_name: ctx.routine.name.clone(),
            step_label: ctx.label(idx),
            text,
            resolvers,
            required: required.max(1),
            expires,
        },
    )
    .await;
    ctx.forget_steps(); // the gate wrote its step run
    let now = svc.clock.now();
    match opened {
        Ok(wf) => Ok(Flow::Wait {
            step: Some(StepChange {
                status: StepStatus::Waiting,
                output: None,
                workflow_id: Some(wf.id),
                finished_at: None,
                ..done(id, "", t0, now)
            }),
            waiting_for: format!("approval:{}", wf.id),
            wake_at: Some(wf.expires_at + Duration::minutes(1)),
        }),
        Err(RoutineError::Store(e)) => Err(e),
        Err(e) => Ok(failed(id, e.to_string(), t0, now)),
    }
}

/// The turn's scope acting for the run owner (`member_turn`: destructive calls wait for the
/// owner's confirmation). `None` when the chat is unknown.
async fn scope_for(ctx: &Ctx<'_>, member_turn: bool) -> StoreResult<Option<Scope>> {
    let Some(chat) = ctx.chat().await? else {
        return Ok(None);
    };
    let chat_kind = if chat.kind == "private" {
        ChatKind::Private
    } else {
        ChatKind::Group
    };
    let actor = ctx.run_owner();
    let member = if chat_kind == ChatKind::Group {
        ctx.owner_member(chat.id).await?
    } else {
        None
    };
    let actor_name = match (&member, chat_kind) {
        (Some(m), _) => m.first_name.clone(),
        (None, ChatKind::Private) => chat.title.clone(),
        _ => "the routine's owner".into(),
    };
    Ok(Some(Scope {
        chat,
        chat_kind,
        actor_id: Some(actor),
        actor_name,
        member,
        window_start_id: None,
        addressed: true,
        member_turn,
        restriction: None,
    }))
}

/// The runtime limits of a `prompt` step with a `tools` list (a recorded routine's replay,
/// issue 10): only those tools, the recording's `confirm` list and call shapes. `None` for a
/// prompt step without `tools` (all tools, the ordinary confirmation rules).
fn restriction_of(def: &Definition, step: &Step) -> Option<Arc<Restriction>> {
    let StepKind::Prompt {
        tools: Some(tools), ..
    } = &step.kind
    else {
        return None;
    };
    let rec = def.recorded.clone().unwrap_or_default();
    Some(Arc::new(Restriction {
        tools: tools.iter().cloned().collect(),
        confirm: rec.confirm.into_iter().collect(),
        recorded: rec
            .calls
            .into_iter()
            .map(|c| {
                let mut keys = c.keys;
                keys.sort();
                (c.tool, keys)
            })
            .collect(),
    }))
}

/// A multi-step run's `prompt` step: an agent turn in the chat under the chat lock (held only
/// for the turn). The output is the model's final text; destructive calls wait for the run
/// owner's confirmation unless the step is `auto_approve`.
async fn prompt_step(
    ctx: &Ctx<'_>,
    idx: usize,
    step: &Step,
    id: i64,
    text: &str,
    t0: Instant,
) -> StoreResult<Flow> {
    let svc = ctx.svc;
    let started = svc.clock.now();
    let lock = svc.locks.lock(ctx.chat_id()).await;
    let Some(mut scope) = scope_for(ctx, !step.auto_approve).await? else {
        return Ok(failed(id, "the chat is unknown", t0, started));
    };
    scope.restriction = restriction_of(&ctx.snap.def, step);
    let current = format!(
        "[Routine '{}', run {}, {} of {}]\n{text}",
        ctx.routine.name,
        ctx.run.id,
        ctx.label(idx),
        ctx.snap.def.steps.len()
    );
    let req = TurnRequest {
        scope,
        current,
        current_tg_id: None,
        source: "routine",
        silent_ok: false,
    };
    let agent = ctx.eng.agent();
    // the turn is recorded with the step's commit (one statement less per step), except a
    // replay's: its failure and confirmation paths read the turn back (issue 10)
    let outcome = if ctx.snap.def.recorded.is_some() {
        agent.run_turn(svc, req).await
    } else {
        let (outcome, record) = agent.run_turn_unrecorded(svc, req).await;
        if let Some(t) = record {
            ctx.keep_turn(t).await;
        }
        outcome
    };
    // only a call the turn held opened a confirmation (the chat lock keeps other turns of this
    // chat out meanwhile): no query for the common turn
    let held = outcome
        .calls
        .iter()
        .any(|c| c.status == ToolCallStatus::Held);
    let confirmations = if step.auto_approve || !held {
        vec![]
    } else {
        svc.store
            .confirmations_since(ctx.chat_id(), ctx.run_owner(), started)
            .await?
    };
    drop(lock);
    let now = svc.clock.now();
    let cost = run_cost(
        &svc.config,
        outcome.prompt_tokens,
        outcome.completion_tokens,
    );
    let tokens = |mut c: StepChange| {
        c.prompt_tokens = outcome.prompt_tokens as i32;
        c.completion_tokens = outcome.completion_tokens as i32;
        c.cost_usd = cost;
        c
    };
    Ok(match &outcome.result {
        Ok(out) if !confirmations.is_empty() => {
            let expiry = Duration::from_std(svc.config.agent.confirm_expiry)
                .unwrap_or(Duration::minutes(10));
            let ids: Vec<String> = confirmations.iter().map(i64::to_string).collect();
            Flow::Wait {
                step: Some(tokens(StepChange {
                    status: StepStatus::Waiting,
                    finished_at: None,
                    workflow_id: confirmations.first().copied(),
                    ..done(id, out.clone(), t0, now)
                })),
                waiting_for: format!("confirm:{}", ids.join(",")),
                wake_at: Some(now + expiry + Duration::minutes(1)),
            }
        }
        Ok(out) => Flow::Next {
            step: tokens(done(id, out.clone(), t0, now)),
            next: next_of(idx),
            loops: None,
        },
        Err(e) => {
            let error = match e {
                TurnFailure::Loop => "loop: the same tool call three times".to_string(),
                other => other.user_message().to_string(),
            };
            // a replay says what it had done and what not, and its held calls never run once it
            // failed (issue 10)
            let error = if ctx.snap.def.recorded.is_some() {
                super::resume::cancel_pending(svc, &confirmations, "the routine's run failed")
                    .await?;
                super::replay::failure_text(&error, &outcome.calls)
            } else {
                error
            };
            match failed(id, error, t0, now) {
                Flow::Fail { step, reason } => Flow::Fail {
                    step: step.map(tokens),
                    reason,
                },
                f => f,
            }
        }
    })
}

/// A single-prompt routine's one step, exactly as before runs had steps: the header, the
/// catch-up and quiet notes, `{placeholders}`, the reply posted to the chat, the quiet token, a
/// failure notice once (not on every failing tick).
async fn single_prompt(ctx: &Ctx<'_>, idx: usize, prompt: &str) -> StoreResult<Flow> {
    let svc = ctx.svc;
    let t0 = Instant::now();
    let r = &ctx.routine;
    let run = &ctx.run;
    let id = new_step_run(ctx, idx, StepType::Prompt, StepStatus::Running, None).await?;
    let started = svc.clock.now();
    let local = started.with_timezone(&zone_of(r));
    let tick = r.tick_count as i64 + 1;
    let input = run.input.clone().unwrap_or_default();
    let vars = PromptVars {
        date: local.format("%a %Y-%m-%d").to_string(),
        time: local.format("%H:%M").to_string(),
        tick_count: tick,
        state: r.state.clone(),
        api_args: if run.source == RunSource::Api && r.api_args {
            api_args_text(&input)
        } else {
            String::new()
        },
        event: if run.source == RunSource::Event {
            event_text(&input)
        } else {
            String::new()
        },
    };
    let body = render_prompt(prompt, &vars).unwrap_or_else(|err| {
        tracing::warn!(routine_id = r.id, error = %err, "routine prompt not rendered");
        prompt.to_string()
    });
    let trigger = match run.trigger_id {
        Some(tid) => svc
            .store
            .routine_triggers(r.id)
            .await?
            .into_iter()
            .find(|t| t.id == tid)
            .map(|t| crate::routines::describe_trigger(&t, zone_of(r))),
        None => None,
    };
    let current = routine_message(r, run, trigger.as_deref(), tick, &body);
    let lock = svc.locks.lock(ctx.chat_id()).await;
    // the routine's own turn acts for its owner (who set it up)
    let Some(mut scope) = scope_for(ctx, false).await? else {
        drop(lock);
        return Ok(failed(id, "chat unknown", t0, started));
    };
    if scope.actor_id != Some(r.owner_id) {
        scope.actor_id = Some(r.owner_id);
        scope.member = if scope.chat_kind == ChatKind::Group {
            svc.store.member(scope.chat.id, r.owner_id).await?
        } else {
            None
        };
        if let Some(m) = &scope.member {
            scope.actor_name = m.first_name.clone();
        }
    }
    let chat_id = scope.chat.id;
    let outcome = ctx
        .eng
        .agent()
        .run_turn(
            svc,
            TurnRequest {
                scope,
                current,
                current_tg_id: None,
                source: "routine",
                silent_ok: false,
            },
        )
        .await;
    let cost = run_cost(
        &svc.config,
        outcome.prompt_tokens,
        outcome.completion_tokens,
    );
    let now = svc.clock.now();
    let with_tokens = |mut c: StepChange| {
        c.prompt_tokens = outcome.prompt_tokens as i32;
        c.completion_tokens = outcome.completion_tokens as i32;
        c.cost_usd = cost;
        c
    };
    let flow = match &outcome.result {
        Ok(text) if r.quiet && text.trim() == QUIET_TOKEN => Flow::Silent {
            step: with_tokens(done(id, text.clone(), t0, now)),
        },
        Ok(text) => {
            let sent = svc
                .outbox
                .send(Outbound {
                    chat_id,
                    html: format::markdown_to_html(text),
                    buttons: vec![],
                    reply_to: None,
                })
                .await;
            match sent {
                Ok(_) => Flow::Next {
                    step: with_tokens(done(id, text.clone(), t0, now)),
                    next: next_of(idx),
                    loops: None,
                },
                Err(e) => match failed(id, format!("delivery: {e}"), t0, now) {
                    Flow::Fail { step, reason } => Flow::Fail {
                        step: step.map(|mut s| {
                            s.output = Some(text.clone());
                            with_tokens(s)
                        }),
                        reason,
                    },
                    f => f,
                },
            }
        }
        Err(e) => {
            // Tell the chat once (not on every failing tick): only after a non-failed run.
            let prev = svc.store.routine_runs(r.id, 2).await?;
            let last_was_error = prev
                .iter()
                .find(|x| x.id != run.id)
                .is_some_and(|x| x.status == RunStatus::Failed);
            if !last_was_error {
                let html = format!(
                    "Routine <b>{}</b> could not run: {} (I'll keep trying on schedule; /routine_history {} shows runs.)",
                    format::escape_html(&r.name),
                    format::escape_html(e.user_message()),
                    format::escape_html(&r.name),
                );
                notice(svc, chat_id, html, vec![]).await;
            }
            match failed(id, e.cause(), t0, now) {
                Flow::Fail { step, reason } => Flow::Fail {
                    step: step.map(with_tokens),
                    reason,
                },
                f => f,
            }
        }
    };
    drop(lock);
    Ok(flow)
}

/// `{apiArgs}`: the api body as it came (a non-object body is kept under "body").
fn api_args_text(input: &str) -> String {
    match serde_json::from_str::<Value>(input) {
        Ok(Value::Object(m)) if m.is_empty() => String::new(),
        Ok(Value::Object(m)) if m.len() == 1 && m.contains_key("body") => m["body"].to_string(),
        Ok(v) => v.to_string(),
        Err(_) => String::new(),
    }
}

/// `{event}`: the event as hearth publishes it (its fields in declaration order).
fn event_text(input: &str) -> String {
    serde_json::from_str::<HearthEvent>(input)
        .ok()
        .and_then(|e| serde_json::to_string(&e).ok())
        .unwrap_or_else(|| input.to_string())
}

/// The turn's current message: a one-line header (routine, trigger, run number), the catch-up
/// and quiet notes when they apply, then the filled template.
fn routine_message(
    r: &RoutineRow,
    run: &RunRow,
    trigger: Option<&str>,
    tick: i64,
    body: &str,
) -> String {
    let trigger = trigger.unwrap_or(run.source.as_str());
    let mut s = format!("[Routine '{}' ({trigger}), run {tick}]\n", r.name);
    if run.catch_up {
        let when = run
            .scheduled_for
            .map(|t| {
                t.with_timezone(&zone_of(r))
                    .format("%a %d %b %H:%M")
                    .to_string()
            })
            .unwrap_or_default();
        s.push_str(&format!(
            "[Catch-up: I was offline at the scheduled time ({when}); this one run replaces the missed ones. Mention that it is late.]\n"
        ));
    }
    if r.quiet {
        s.push_str(&format!(
            "[Quiet: if there is nothing worth saying, reply exactly {QUIET_TOKEN}]\n"
        ));
    }
    s.push_str(body);
    s
}

/// A member of `chat_id` by Telegram id, first name or username (case-insensitive).
pub(super) async fn find_member(
    svc: &Services,
    chat_id: i64,
    who: &str,
) -> StoreResult<Option<i64>> {
    let who = who.trim().trim_start_matches('@');
    if let Ok(id) = who.parse::<i64>() {
        return Ok(Some(id));
    }
    Ok(svc
        .store
        .members(chat_id)
        .await?
        .into_iter()
        .find(|m| {
            m.first_name.eq_ignore_ascii_case(who)
                || m.username
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(who))
        })
        .map(|m| m.user_id))
}
