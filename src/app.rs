//! Wiring and lifecycle: builds the services, the agent and the core, starts the adapters and the
//! scheduler, and shuts everything down in order on SIGTERM / Ctrl-C (in-flight turns finish,
//! bounded by [`SHUTDOWN_GRACE`], then exit 0).

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::{
    agent::{
        llm::{ChatModel, OpenAiModel},
        prompt::Prompt,
        Agent, ToolRegistry,
    },
    clock::{SharedClock, SystemClock},
    config::{Config, TelegramMode},
    console::{Console, ConsoleMessenger, BOT_USERNAME},
    core::Hearth,
    events::EventBus,
    http::{self, Readiness},
    messenger::Messenger,
    outbox::Outbox,
    router::Router,
    routines::RoutineEngine,
    scheduler::Scheduler,
    services::{BotIdentity, ChatLocks, Services},
    store::Store,
    telegram,
    workflow::WorkflowTargets,
};

pub mod jobs;

/// How long in-flight turns may run after a stop signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Connect the store named by the config.
pub async fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    Store::connect(
        &cfg.database.url,
        cfg.database.max_connections,
        cfg.database.busy_timeout,
    )
    .await
    .with_context(|| "opening the database (database.url)".to_string())
}

/// The model client, or `None` when no model is configured.
pub fn model(cfg: &Config) -> Option<Arc<dyn ChatModel>> {
    cfg.model_configured()
        .then(|| Arc::new(OpenAiModel::new(&cfg.llm)) as Arc<dyn ChatModel>)
}

/// The agent with every tool and context section.
pub fn agent(
    cfg: &Config,
    model: Option<Arc<dyn ChatModel>>,
    prompts_dir: &Path,
) -> anyhow::Result<Agent> {
    let prompt = Prompt::load(prompts_dir)?;
    let mut tools = ToolRegistry::foundation();
    tools.add(crate::workflow::tools::RespondToWorkflow);
    tools.add(crate::workflow::tools::BatchRespondToWorkflows);
    tools.add(crate::chores::tools::ChoreCreate);
    tools.add(crate::chores::tools::ChoreList);
    tools.add(crate::chores::tools::ChoreClaim);
    tools.add(crate::chores::tools::ChoreRequestDeletion);
    tools.add(crate::chores::tools::ChoreUpdate);
    crate::routines::tools::register(&mut tools);
    crate::routines::playbooks::register(&mut tools);
    Ok(Agent::new(model, tools, prompt)
        .with_gate(crate::agent::gate::ModelGate::new(
            cfg.llm.max_concurrent_calls,
        ))
        .with_section(crate::workflow::render::ApprovalsSection)
        .with_confirm_gate(crate::workflow::confirm::Gate))
}

/// The domains' command sets and text steps, in the order the router tries them: chores'
/// "done dishes" claim before approval replies (as before the router took registrations).
/// A new domain registers here; the core is not touched.
pub fn router() -> Router {
    Router::new()
        // `/cancel` stops a member's pending input questions before it means a workflow
        .commands(crate::routines::ask::AskCancel)
        .commands(crate::workflow::commands::WorkflowCommands)
        .commands(crate::chores::commands::ChoreCommands)
        .commands(crate::routines::playbooks::PlaybookCommands)
        // `/admin`: the web admin's sign-in link (issue 11), before any `/<routine name>`
        .commands(crate::http::admin::AdminCommands)
        // before the routine commands: `/run_*` never reach the `/<routine name>` fallback
        .commands(crate::routines::run_commands::RunCommands)
        .commands(crate::routines::commands::RoutineCommands)
        // a member's answer to a run's input question comes first
        .text(crate::routines::ask::AskReplies)
        .text(crate::chores::commands::ChoreClaims)
        .text(crate::workflow::commands::ApprovalReplies)
}

/// Build the core over a messenger with the domains of [`router`].
pub fn core(
    cfg: Arc<Config>,
    store: Store,
    clock: SharedClock,
    messenger: Arc<dyn Messenger>,
    bot: BotIdentity,
    agent: Agent,
) -> Arc<Hearth> {
    core_with(cfg, store, clock, messenger, bot, agent, router())
}

/// Build the core over a messenger with the domains registered in `router`.
pub fn core_with(
    cfg: Arc<Config>,
    store: Store,
    clock: SharedClock,
    messenger: Arc<dyn Messenger>,
    bot: BotIdentity,
    agent: Agent,
    router: Router,
) -> Arc<Hearth> {
    let outbox = Outbox::new(messenger, store.clone(), clock.clone(), &bot.name);
    // what each workflow kind is about: the workflow service reaches its targets only here
    let mut workflow_targets = WorkflowTargets::default();
    workflow_targets.add(crate::chores::targets::ChoreTargets);
    workflow_targets.add(crate::routines::gate::GateTarget);
    workflow_targets.add(crate::workflow::confirm::ConfirmTarget::new(
        agent.tools().clone(),
    ));
    // recorded routines' `/save` and name answers need the agent's model (issue 10)
    let router = crate::routines::recorded::register(router, &agent);
    // this process's id: owner of every lease it takes (messages, chats, run steps, roles)
    let owner = crate::core::new_process_id();
    let locks = ChatLocks::leased(store.clone(), clock.clone(), owner, cfg.cluster.lease);
    let svc = Services {
        config: cfg,
        store,
        clock,
        outbox,
        bot,
        locks,
        events: EventBus::default(),
        workflow_targets,
        progress: Default::default(),
        menu: Arc::new(crate::core::commands::menu(&router)),
        run_started: Default::default(),
    };
    Hearth::new(svc, agent, router)
}

/// Cap glibc's malloc arenas at 2 (its default is 8 per core): each tokio worker and each of
/// sqlx's SQLite connection threads otherwise gets its own arena, and memory freed in one is not
/// reused by another, so the resident set grows with fragmentation rather than with live data
/// (issue 9: RSS with 10,000 waiting runs grew 31.8 MB, 25.1 MB with `MALLOC_ARENA_MAX=1`). Call it
/// first thing in `main`, before any thread starts. No-op on other C libraries.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// The routine engine over the core's services (same chat locks) and agent: records runs a
/// previous process left unfinished, and listens to hearth events until `stop`.
pub async fn routine_engine(
    hearth: &Arc<Hearth>,
    stop: &CancellationToken,
) -> anyhow::Result<Arc<RoutineEngine>> {
    // the core's process id: its heartbeat renews the engine's run leases too
    let engine =
        RoutineEngine::with_owner(hearth.svc.clone(), hearth.agent.clone(), hearth.owner());
    engine.start_up().await?;
    engine.listen(stop.clone());
    Ok(engine)
}

/// Register every [`jobs::Job`] (the system jobs and the routine sweep, every second) on a new
/// scheduler and start it. Each tick runs [`jobs::tick`]: everywhere, or under the job's lease
/// (see the table in [`jobs`]).
pub async fn start_scheduler(
    hearth: &Arc<Hearth>,
    routines: &Arc<RoutineEngine>,
) -> anyhow::Result<Scheduler> {
    let sched = Scheduler::new().await?;
    for job in jobs::Job::ALL {
        sched
            .add_with(
                job.name(),
                job.cron(),
                (hearth.clone(), routines.clone()),
                move |(h, r)| async move {
                    jobs::tick(job, &h, &r).await;
                },
            )
            .await?;
    }
    sched.start().await?;
    Ok(sched)
}

/// Expire overdue approval requests (the minute job, and once at start-up for requests that
/// expired while hearth was down). Failures are logged; the next sweep retries.
pub async fn sweep_expired(hearth: &Hearth) {
    match crate::workflow::sweep_expired(&hearth.svc).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(count = n, "requests expired"),
        Err(e) => tracing::warn!(error = %e, "expiry sweep failed"),
    }
}

/// Divide `telegram.limit_per_second` among the live processes (those whose heartbeat is
/// within `cluster.lease`, this one included) and pace `bot`'s bot-wide sends at this process's
/// share ([`telegram::TgBot::divide_rate`]; divided, not shared: see `telegram::limits`).
/// Returns the share, messages a second.
///
/// Errors: storage (the share stays as it was).
pub async fn share_rate(bot: &telegram::TgBot, hearth: &Hearth) -> crate::store::StoreResult<u32> {
    let svc = &hearth.svc;
    let lease = chrono::Duration::from_std(svc.config.cluster.lease)
        .unwrap_or(chrono::Duration::seconds(15));
    let live = svc.store.live_processes(svc.clock.now() - lease).await?;
    Ok(bot.divide_rate(live))
}

/// Every `runtime.heartbeat` until `stop`: [`share_rate`] (the heartbeat itself, which records
/// this process as live, is the core's).
fn spawn_rate_share(bot: telegram::TgBot, hearth: Arc<Hearth>, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(hearth.svc.config.runtime.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = bot.rate_per_second();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => match share_rate(&bot, &hearth).await {
                    Ok(share) if share != last => {
                        tracing::info!(per_second = share, "bot-wide send rate: this process's share");
                        last = share;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "live processes not counted; send rate unchanged"),
                },
            }
        }
    });
}

/// `hearth run`: the Telegram daemon.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let cfg = Arc::new(cfg);
    let token = cfg.require_token()?.clone();
    let store = open_store(&cfg).await?;
    let bot = telegram::bot_with(&token, &cfg.telegram)?;
    let stop = CancellationToken::new();
    spawn_signal_handler(stop.clone());

    let Some(me) = telegram::connect(&bot, &stop).await? else {
        return Ok(()); // stopped while waiting for Telegram
    };
    tracing::info!(bot = %me.username, id = me.id, "connected to Telegram");

    let clock: SharedClock = Arc::new(SystemClock);
    let messenger: Arc<dyn Messenger> = Arc::new(telegram::TelegramMessenger::new(bot.clone()));
    let agent = agent(&cfg, model(&cfg), Path::new("prompts"))?;
    let hearth = core(
        cfg.clone(),
        store.clone(),
        clock,
        messenger,
        me.clone(),
        agent,
    );

    match telegram::sync_commands(&bot, &store, &me, &hearth.menu()).await {
        Ok(true) => tracing::info!("command menu updated"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "setMyCommands failed; will retry at next start"),
    }
    // each chat's own menu (its routines): what changed while hearth was down or failed before
    crate::routines::menu::sync_all(&hearth.svc).await;
    tracing::info!(
        process = hearth.owner(),
        "process identity (owner of its leases)"
    );
    let recovery_started = std::time::Instant::now();
    let recovered = hearth.recover().await?;
    tracing::info!(
        queued = recovered,
        ms = recovery_started.elapsed().as_millis() as u64,
        "start-up recovery done"
    );
    hearth.spawn_lease_tasks(stop.clone());
    spawn_rate_share(bot.clone(), hearth.clone(), stop.clone());
    sweep_expired(&hearth).await;
    let routines = routine_engine(&hearth, &stop).await?;
    let sched = start_scheduler(&hearth, &routines).await?;

    let ready = Readiness::default();
    let mut http_task = None;
    if cfg.http_enabled() {
        let mut app = http::router(store.clone(), ready.clone())
            .merge(crate::routines::api::router(routines.clone()));
        app = app.merge(http::admin::router(http::admin::AdminState::new(
            routines.clone(),
            cfg.http.public_url.as_deref(),
        )));
        if cfg.telegram.mode == TelegramMode::Webhook {
            let secret = cfg
                .telegram
                .webhook_secret
                .clone()
                .context("telegram.webhook_secret")?;
            app = app.merge(telegram::webhook_router(hearth.clone(), me.clone(), secret));
        }
        app = http::with_metrics(app, &cfg.metrics, store.clone());
        let (_addr, task) = http::serve(cfg.http.listen, app, stop.clone())
            .await
            .with_context(|| format!("binding http.listen {}", cfg.http.listen))?;
        http_task = Some(task);
    }

    if let (true, Some(addr)) = (cfg.metrics.enabled, cfg.metrics.listen) {
        let app = http::metrics_router(store.clone(), None);
        http::serve(addr, app, stop.clone())
            .await
            .with_context(|| format!("binding metrics.listen {addr}"))?;
    }

    match cfg.telegram.mode {
        TelegramMode::Polling => {
            ready.set(true);
            telegram::run_polling(
                bot.clone(),
                hearth.clone(),
                me.clone(),
                cfg.telegram.poll_timeout,
                stop.clone(),
            )
            .await;
        }
        TelegramMode::Webhook => {
            telegram::set_webhook(&bot, &cfg).await?;
            ready.set(true);
            tracing::info!("webhook registered");
            stop.cancelled().await;
        }
    }

    tracing::info!("stopping: finishing in-flight turns");
    sched.shutdown().await;
    hearth.shutdown(SHUTDOWN_GRACE).await;
    routines.shutdown(SHUTDOWN_GRACE).await;
    if let Some(t) = http_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// `hearth console`: the same core behind a terminal.
pub async fn console(cfg: Config) -> anyhow::Result<()> {
    let cfg = Arc::new(cfg);
    let store = open_store(&cfg).await?;
    let clock: SharedClock = Arc::new(SystemClock);
    let messenger = ConsoleMessenger::new(Box::new(std::io::stdout()))
        .with_image_dir(crate::console::image_dir(&cfg.database.url));
    let me = BotIdentity {
        id: 1,
        username: BOT_USERNAME.into(),
        name: "hearth".into(),
    };
    let agent = agent(&cfg, model(&cfg), Path::new("prompts"))?;
    if !agent.has_model() {
        println!("(no model configured: commands work; for chat set HEARTH_LLM__BASE_URL, e.g. http://localhost:11434/v1 for Ollama, and HEARTH_LLM__MODEL)");
    }
    let hearth = core(cfg, store, clock, Arc::new(messenger.clone()), me, agent);
    hearth.recover().await?;
    let stop = CancellationToken::new();
    hearth.spawn_lease_tasks(stop.clone());
    sweep_expired(&hearth).await;
    let routines = routine_engine(&hearth, &stop).await?;
    let sched = start_scheduler(&hearth, &routines).await?;
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    Console::new(hearth.clone(), messenger).run(stdin).await;
    sched.shutdown().await;
    stop.cancel();
    hearth.shutdown(SHUTDOWN_GRACE).await;
    routines.shutdown(SHUTDOWN_GRACE).await;
    Ok(())
}

/// `hearth routines import|export`: the routine service over the configured database, no
/// adapter; what would be a direct message (an api trigger's token) is printed on stderr.
pub async fn routines_cli(
    cfg: Config,
    cmd: crate::routines::doc::CliCommand,
) -> anyhow::Result<String> {
    let cfg = Arc::new(cfg);
    let store = open_store(&cfg).await?;
    let clock: SharedClock = Arc::new(SystemClock);
    let messenger: Arc<dyn Messenger> =
        Arc::new(ConsoleMessenger::new(Box::new(std::io::stderr())));
    let bot = BotIdentity {
        id: 1,
        username: BOT_USERNAME.into(),
        name: "hearth".into(),
    };
    let outbox = Outbox::new(messenger, store.clone(), clock.clone(), &bot.name);
    let svc = Services {
        config: cfg,
        store,
        clock,
        outbox,
        bot,
        locks: ChatLocks::default(),
        events: EventBus::default(),
        workflow_targets: WorkflowTargets::default(),
        progress: Default::default(),
        menu: Arc::new(crate::core::commands::menu(&router())),
        run_started: Default::default(),
    };
    crate::routines::doc::run_cli(&svc, cmd).await
}

/// `hearth check`: validate the configuration; with `online`, also call getMe and the model.
/// Returns the report lines and whether everything checked works.
pub async fn check(cfg: &Config, online: bool) -> (Vec<String>, bool) {
    let mut lines = vec!["configuration: ok".to_string()];
    let mut ok = true;
    match &cfg.telegram.token {
        Some(_) => lines.push("telegram.token: set".into()),
        None => lines.push("telegram.token: not set (needed by `hearth run`)".into()),
    }
    lines.push(format!(
        "model: {}",
        if cfg.model_configured() {
            format!("{} at {}", cfg.llm.model, cfg.llm.base_url)
        } else {
            "not configured (commands only)".into()
        }
    ));
    if !online {
        return (lines, ok);
    }
    match &cfg.telegram.token {
        Some(t) => match telegram::bot_with(t, &cfg.telegram) {
            Ok(bot) => {
                match tokio::time::timeout(Duration::from_secs(15), telegram::identity(&bot)).await
                {
                    Ok(Ok(me)) => {
                        lines.push(format!("telegram: ok, bot @{} (id {})", me.username, me.id))
                    }
                    Ok(Err(e)) => {
                        ok = false;
                        lines.push(format!("telegram: getMe failed: {e}"));
                    }
                    Err(_) => {
                        ok = false;
                        lines.push("telegram: getMe timed out".into());
                    }
                }
            }
            Err(e) => {
                ok = false;
                lines.push(format!("telegram: {e}"));
            }
        },
        None => {
            ok = false;
            lines.push("telegram: skipped (no token)".into());
        }
    }
    if cfg.model_configured() {
        let m = OpenAiModel::new(&cfg.llm);
        match tokio::time::timeout(Duration::from_secs(15), m.list_models()).await {
            Ok(Ok(models)) => {
                let has = models.iter().any(|x| x == &cfg.llm.model);
                // llama.cpp's and llama-cpp-python's servers list their one model by file path
                // and answer to any model name: not listed there is not an error
                let single = models.len() == 1;
                lines.push(format!(
                    "model endpoint: ok ({} models{})",
                    models.len(),
                    if has {
                        format!(", {} available", cfg.llm.model)
                    } else if single {
                        format!(
                            ", serves one model ({}); {} is sent as given",
                            crate::context::clip(&models[0], 80),
                            cfg.llm.model
                        )
                    } else {
                        format!(", {} NOT listed", cfg.llm.model)
                    }
                ));
                ok &= has || single;
            }
            Ok(Err(e)) => {
                ok = false;
                lines.push(format!("model endpoint: {e}"));
            }
            Err(_) => {
                ok = false;
                lines.push("model endpoint: timed out".into());
            }
        }
    } else {
        lines.push("model endpoint: skipped (not configured)".into());
    }
    (lines, ok)
}

/// Cancel `stop` on SIGTERM or Ctrl-C.
pub fn spawn_signal_handler(stop: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                        stop.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("stop signal received");
        stop.cancel();
    });
}
