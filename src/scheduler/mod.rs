//! The tick engine: the only module that imports tokio-cron-scheduler.
//!
//! It drives fixed system jobs (inbound cleanup now; approval expiry and the routine sweep
//! register here too). It is used as a tick engine only: user schedules keep their own persisted
//! `next_fire_at` computed by hearth in the trigger's IANA zone, because tokio-cron-scheduler
//! 0.15 keeps a fixed UTC offset across DST (its issue #87), loses stored jobs' code on restart,
//! and `Repeated` jobs can stop after a lag (issue #113).

use std::{future::Future, pin::Pin, sync::Arc};

use tokio_cron_scheduler::{Job, JobScheduler};

/// A boxed job body.
pub type JobFn = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A scheduler failure (bad cron for a system job, engine start-up).
#[derive(Debug, thiserror::Error)]
#[error("scheduler: {0}")]
pub struct SchedulerError(String);

/// Running system jobs.
pub struct Scheduler {
    inner: JobScheduler,
}

impl Scheduler {
    /// A stopped scheduler.
    pub async fn new() -> Result<Self, SchedulerError> {
        let inner = JobScheduler::new()
            .await
            .map_err(|e| SchedulerError(e.to_string()))?;
        Ok(Self { inner })
    }

    /// Add a job. `cron6` uses tokio-cron-scheduler's 6-field syntax with seconds, in UTC
    /// (e.g. "0 * * * * *" = every minute). Runs of one job never overlap: a tick that finds the
    /// previous run still going is skipped.
    pub async fn add(
        &self,
        name: &'static str,
        cron6: &str,
        f: JobFn,
    ) -> Result<(), SchedulerError> {
        let busy = Arc::new(tokio::sync::Mutex::new(()));
        let job = Job::new_async(cron6, move |_id, _l| {
            let f = f.clone();
            let busy = busy.clone();
            Box::pin(async move {
                let Ok(_g) = busy.try_lock() else {
                    tracing::debug!(job = name, "previous run still going; tick skipped");
                    return;
                };
                f().await;
            })
        })
        .map_err(|e| SchedulerError(format!("{name}: {e}")))?;
        self.inner
            .add(job)
            .await
            .map_err(|e| SchedulerError(format!("{name}: {e}")))?;
        Ok(())
    }

    /// [`add`](Self::add) for a job that runs `f(ctx.clone())` on each tick: the usual shape,
    /// where `ctx` is the state the job needs (an engine, the core, the store).
    pub async fn add_with<T, F, Fut>(
        &self,
        name: &'static str,
        cron6: &str,
        ctx: T,
        f: F,
    ) -> Result<(), SchedulerError>
    where
        T: Clone + Send + Sync + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let f = Arc::new(f);
        self.add(
            name,
            cron6,
            Arc::new(move || {
                let (ctx, f) = (ctx.clone(), f.clone());
                Box::pin(async move { f(ctx).await })
            }),
        )
        .await
    }

    /// Start ticking.
    pub async fn start(&self) -> Result<(), SchedulerError> {
        self.inner
            .start()
            .await
            .map_err(|e| SchedulerError(e.to_string()))
    }

    /// Stop ticking.
    pub async fn shutdown(mut self) {
        if let Err(e) = self.inner.shutdown().await {
            tracing::warn!(error = %e, "scheduler shutdown");
        }
    }
}
