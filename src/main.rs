//! The `hearth` binary: parses the command line, loads the configuration (exit 2 on a
//! configuration error), sets up logging and runs a subcommand.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use hearth::config::{Config, ConfigError, LogFormat};

#[derive(Parser)]
#[command(
    name = "hearth",
    version,
    about = "A group-chat agent for households and teams"
)]
struct Cli {
    /// Configuration file (default: config/default.toml when present, else built-in defaults).
    #[arg(long, global = true, env = "HEARTH_CONFIG_FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the Telegram daemon.
    Run,
    /// Try hearth in the terminal: one group and DMs, no Telegram needed.
    Console,
    /// Apply database migrations and exit.
    Migrate,
    /// Validate the configuration; --online also calls getMe and the model endpoint.
    Check {
        #[arg(long)]
        online: bool,
    },
    /// Import or export a routine as a TOML document.
    Routines {
        #[command(subcommand)]
        cmd: RoutinesCmd,
    },
    /// Routine runs: list them or show one in full.
    Runs {
        #[command(subcommand)]
        action: RunsCmd,
    },
}

#[derive(Subcommand)]
enum RoutinesCmd {
    /// Validate a TOML document and save it in a chat (create, or update the routine of that name).
    Import {
        file: PathBuf,
        /// The chat's Telegram id (groups are negative: --chat -1001234).
        #[arg(long, allow_hyphen_values = true)]
        chat: i64,
        /// The owner (Telegram user id); default: the chat's first admin.
        #[arg(long = "as")]
        as_user: Option<i64>,
    },
    /// Print a routine of a chat as a TOML document.
    Export {
        name: String,
        #[arg(long, allow_hyphen_values = true)]
        chat: i64,
    },
}

#[derive(Subcommand)]
enum RunsCmd {
    /// Runs, newest first (tab-separated).
    List {
        /// Only runs of the routine with this name.
        #[arg(long)]
        routine: Option<String>,
        /// Only runs in this chat (Telegram chat id).
        #[arg(long, allow_hyphen_values = true)]
        chat: Option<i64>,
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// One run: inputs and every step's full output.
    Show { id: i64 },
}

fn main() -> ExitCode {
    hearth::app::tune_allocator();
    let cli = Cli::parse();
    let env = std::env::vars().filter(|(k, _)| k != "HEARTH_CONFIG_FILE");
    let cfg = match Config::load(cli.config.as_deref(), env) {
        Ok(c) => c,
        Err(e) => return config_exit(&e),
    };
    let console = matches!(cli.command, Cmd::Console);
    init_logging(&cfg, console);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Cmd::Run => {
                if let Err(e) = cfg.require_token() {
                    return Err(anyhow::Error::new(e));
                }
                hearth::app::run(cfg).await
            }
            Cmd::Console => hearth::app::console(cfg).await,
            Cmd::Migrate => {
                let n = hearth::store::Store::migrate_only(&cfg.database.url).await?;
                println!("migrations applied: {n}");
                Ok(())
            }
            Cmd::Routines { cmd } => {
                use hearth::routines::doc::CliCommand;
                let cmd = match cmd {
                    RoutinesCmd::Import {
                        file,
                        chat,
                        as_user,
                    } => CliCommand::Import {
                        file,
                        chat,
                        as_user,
                    },
                    RoutinesCmd::Export { name, chat } => CliCommand::Export { name, chat },
                };
                print!("{}", hearth::app::routines_cli(cfg, cmd).await?);
                Ok(())
            }
            Cmd::Runs { action } => {
                let store = hearth::app::open_store(&cfg).await?;
                let now = chrono::Utc::now();
                let out = match action {
                    RunsCmd::List {
                        routine,
                        chat,
                        limit,
                    } => {
                        hearth::routines::run_cli::list(
                            &store,
                            routine.as_deref(),
                            chat,
                            limit,
                            now,
                        )
                        .await?
                    }
                    RunsCmd::Show { id } => {
                        hearth::routines::run_cli::show(&store, id, now).await?
                    }
                };
                print!("{out}");
                Ok(())
            }
            Cmd::Check { online } => {
                let (lines, ok) = hearth::app::check(&cfg, online).await;
                for l in lines {
                    println!("{l}");
                }
                if ok {
                    Ok(())
                } else {
                    anyhow::bail!("some checks failed")
                }
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(c) = e.downcast_ref::<ConfigError>() {
                return config_exit(c);
            }
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn config_exit(e: &ConfigError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

fn init_logging(cfg: &Config, console: bool) {
    use tracing_subscriber::{fmt, EnvFilter};
    let default = if console {
        "warn"
    } else {
        cfg.log.level.as_str()
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default))
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // async-openai logs a whole response body at ERROR when it can't parse one; bodies may
        // hold conversation text, and hearth reports the failure itself (issue 8)
        .add_directive("async_openai=off".parse().expect("static directive"));
    use tracing_subscriber::{
        filter::Targets, layer::SubscriberExt, util::SubscriberInitExt, Layer,
    };
    // the pool's acquisition events feed `hearth_db_pool_wait_seconds` whatever the log level
    let pool_wait = hearth::metrics::PoolWaitLayer.with_filter(
        Targets::new().with_target(hearth::metrics::POOL_ACQUIRE_TARGET, tracing::Level::TRACE),
    );
    let registry = tracing_subscriber::registry().with(pool_wait);
    let _ = match cfg.log.format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .try_init(),
    };
}
