//! Prometheus metrics (issue 11 item 5).
//!
//! Owns: the name, help text, labels and unit of every metric hearth exports, the one registry
//! they live in (process-wide, created on first use), the recording functions the layers call
//! at the place an event happens (one line each), and the text exposition served by `/metrics`
//! (OpenMetrics 1.0 text, which Prometheus scrapes natively). Uses: prometheus-client, and
//! `routines::run_cost` for the price of a turn.
//!
//! Counters only ever grow, so several cores in one process (tests) add to the same series;
//! gauges that describe one database ([`set_inbound_depth`]) are refreshed by the scrape handler
//! from the store it serves. Label values are bounded sets (sources, outcomes, stored kinds and
//! statuses, Bot API method names); never a chat id, user id or text.

use std::sync::LazyLock;

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

/// Label sets: (label name, value) pairs.
type Labels = Vec<(&'static str, String)>;

/// Every metric hearth exports.
struct Metrics {
    registry: Registry,
    /// `hearth_turns_total{source, outcome}`: model turns by source ("message", "routine",
    /// "extraction", …) and outcome ("ok" or the failure cause).
    turns: Family<Labels, Counter>,
    /// `hearth_turn_duration_seconds`: wall time of one turn, all model calls and tools.
    turn_seconds: Histogram,
    /// `hearth_model_tokens_total{kind}`: tokens by kind ("prompt", "completion").
    tokens: Family<Labels, Counter>,
    /// `hearth_model_cost_usd_total`: model cost in US dollars at the configured prices.
    cost: Counter<f64, std::sync::atomic::AtomicU64>,
    /// `hearth_routine_fires_total{trigger, status}`: routine fires by trigger kind (the run
    /// source: every, cron, at, event, api, condition, manual, …) and status.
    fires: Family<Labels, Counter>,
    /// `hearth_routine_runs_total{status}`: runs by the status they ended in.
    runs: Family<Labels, Counter>,
    /// `hearth_approvals_total{kind, outcome}`: requests resolved by kind and final status.
    approvals: Family<Labels, Counter>,
    /// `hearth_inbound_queue_depth`: inbound messages persisted and not yet finished.
    inbound_depth: Gauge,
    /// `hearth_telegram_api_calls_total{method, outcome}`: Bot API attempts by method and
    /// outcome ("ok", "rate_limited" (429), "transient", "error").
    bot_api: Family<Labels, Counter>,
    /// `hearth_db_pool_wait_seconds`: how long each statement waited for a database
    /// connection from this process's pool (issue 12: a replica's pool must not be the
    /// bottleneck; p99 ≤ 10 ms).
    pool_wait: Histogram,
}

/// Upper bounds of the pool wait buckets, seconds (0.1 ms … 5 s).
const POOL_BUCKETS: [f64; 13] = [
    0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Upper bounds of the turn duration buckets, seconds.
const TURN_BUCKETS: [f64; 11] = [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0];

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("hearth");
    let m = Metrics {
        registry: Registry::default(),
        turns: Family::default(),
        turn_seconds: Histogram::new(TURN_BUCKETS.into_iter()),
        tokens: Family::default(),
        cost: Counter::default(),
        fires: Family::default(),
        runs: Family::default(),
        approvals: Family::default(),
        inbound_depth: Gauge::default(),
        bot_api: Family::default(),
        pool_wait: Histogram::new(POOL_BUCKETS.into_iter()),
    };
    registry.register(
        "turns",
        "Model turns by source and outcome",
        m.turns.clone(),
    );
    registry.register_with_unit(
        "turn_duration",
        "Wall time of one model turn",
        Unit::Seconds,
        m.turn_seconds.clone(),
    );
    registry.register(
        "model_tokens",
        "Model tokens by kind (prompt, completion)",
        m.tokens.clone(),
    );
    registry.register(
        "model_cost_usd",
        "Model cost in US dollars at the configured prices, silent runs included",
        m.cost.clone(),
    );
    registry.register(
        "routine_fires",
        "Routine fires by trigger kind and status (fired, skipped, capped, silent)",
        m.fires.clone(),
    );
    registry.register(
        "routine_runs",
        "Routine runs by the status they ended in",
        m.runs.clone(),
    );
    registry.register(
        "approvals",
        "Approval requests resolved, by kind and outcome",
        m.approvals.clone(),
    );
    registry.register(
        "inbound_queue_depth",
        "Inbound messages persisted and not yet finished",
        m.inbound_depth.clone(),
    );
    registry.register(
        "telegram_api_calls",
        "Bot API call attempts by method and outcome (ok, rate_limited, transient, error)",
        m.bot_api.clone(),
    );
    registry.register_with_unit(
        "db_pool_wait",
        "Wait for a database connection from this process's pool, per acquisition",
        Unit::Seconds,
        m.pool_wait.clone(),
    );
    Metrics { registry, ..m }
});

fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.into_iter().map(|(k, v)| (k, v.to_string())).collect()
}

/// Make sure the registry exists (called at start-up so an idle hearth exports its gauges).
pub fn install() {
    LazyLock::force(&METRICS);
}

/// One model turn ended: `source` is the turn source, `outcome` "ok" or the failure cause,
/// `elapsed` its wall time; tokens as the model counted them in `out`, priced by
/// [`crate::routines::run_cost`] (the same rule as run costs).
pub fn turn(
    cfg: &crate::config::Config,
    source: &str,
    outcome: &str,
    elapsed: std::time::Duration,
    out: &crate::agent::TurnOutcome,
) {
    let (prompt_tokens, completion_tokens) = (out.prompt_tokens, out.completion_tokens);
    let cost_usd = crate::routines::run_cost(cfg, prompt_tokens, completion_tokens);
    let seconds = elapsed.as_secs_f64();
    let m = &*METRICS;
    m.turns
        .get_or_create(&labels([("source", source), ("outcome", outcome)]))
        .inc();
    m.turn_seconds.observe(seconds);
    m.tokens
        .get_or_create(&labels([("kind", "prompt")]))
        .inc_by(u64::from(prompt_tokens));
    m.tokens
        .get_or_create(&labels([("kind", "completion")]))
        .inc_by(u64::from(completion_tokens));
    if cost_usd.is_finite() && cost_usd > 0.0 {
        m.cost.inc_by(cost_usd);
    }
}

/// A routine fired (`trigger`: the run source's stored name) with `status` "fired",
/// "skipped", "capped" (daily cap reached) or "silent" (the run ended with nothing to say).
pub fn fire(trigger: &str, status: &str) {
    METRICS
        .fires
        .get_or_create(&labels([("trigger", trigger), ("status", status)]))
        .inc();
}

/// A routine run ended (or was recorded skipped) in `status` (its stored name).
pub fn run_ended(status: &str) {
    METRICS
        .runs
        .get_or_create(&labels([("status", status)]))
        .inc();
}

/// An approval request of `kind` was resolved with `outcome` (its final stored status).
pub fn approval(kind: &str, outcome: &str) {
    METRICS
        .approvals
        .get_or_create(&labels([("kind", kind), ("outcome", outcome)]))
        .inc();
}

/// One Bot API attempt of `method` ended with `outcome` ("ok", "rate_limited", "transient",
/// "error").
pub fn bot_api_call(method: &str, outcome: &str) {
    METRICS
        .bot_api
        .get_or_create(&labels([("method", method), ("outcome", outcome)]))
        .inc();
}

/// Set the inbound queue depth (pending inbound rows).
pub fn set_inbound_depth(n: u64) {
    METRICS
        .inbound_depth
        .set(i64::try_from(n).unwrap_or(i64::MAX));
}

/// The OpenMetrics text exposition of every metric (ends with `# EOF`).
pub fn render() -> String {
    let mut out = String::new();
    // writing to a String cannot fail
    let _ = encode(&mut out, &METRICS.registry);
    out
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A statement waited `seconds` for a pooled database connection.
pub fn pool_wait(seconds: f64) {
    METRICS.pool_wait.observe(seconds);
}

/// The `tracing` target sqlx reports each pool acquisition on (with `acquired_after_secs`),
/// when the pool's `acquire_time_level` is on (`store::Store::connect` turns it on at TRACE).
pub const POOL_ACQUIRE_TARGET: &str = "sqlx::pool::acquire";

/// A `tracing` layer that records sqlx's pool acquisition events into
/// `hearth_db_pool_wait_seconds`. Install it with a per-layer filter on
/// [`POOL_ACQUIRE_TARGET`] at TRACE (the log output's own filter stays as configured).
pub struct PoolWaitLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for PoolWaitLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Secs(Option<f64>);
        impl tracing::field::Visit for Secs {
            fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
                if field.name() == "acquired_after_secs" {
                    self.0 = Some(value);
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        if event.metadata().target() != POOL_ACQUIRE_TARGET {
            return;
        }
        let mut secs = Secs(None);
        event.record(&mut secs);
        if let Some(s) = secs.0 {
            pool_wait(s);
        }
    }
}
