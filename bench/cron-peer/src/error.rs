//! Why the tokio-cron-scheduler harness could not produce a result.

/// Failures of the harness, named by cause.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("tokio-cron-scheduler refused: {0}")]
    Scheduler(#[from] tokio_cron_scheduler::JobSchedulerError),

    #[error(transparent)]
    Bench(#[from] loadgen::BenchError),

    #[error(
        "registering {jobs} jobs did not finish before their fire time in {attempts} attempts"
    )]
    RegistrationOverran { jobs: usize, attempts: u32 },
}
