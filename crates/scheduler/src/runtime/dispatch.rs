//! Runs on this node: handing an attempt to its executor, and taking the outcome
//! (or the panic) back.

use std::time::Duration;

use chrono::Utc;
use rota_core::{Timestamp, Trigger};
use rota_engine::Completion;
use rota_exec::{executor_for, OutputBuffer, RunOutcome, RunRequest};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use ulid::Ulid;

use super::{lock, LiveRun, Runtime};

impl Runtime {
    pub(super) fn dispatch(
        &mut self,
        id: Ulid,
        attempt: u32,
        job: String,
        scheduled_at: Timestamp,
        trigger: Trigger,
    ) {
        let now = Utc::now();
        if attempt == 1 && matches!(trigger, Trigger::Schedule | Trigger::Catchup) {
            let lag = now
                .signed_duration_since(scheduled_at)
                .to_std()
                .unwrap_or(Duration::ZERO);
            lock(&self.shared.stats)
                .dispatch_lag
                .observe(lag.as_secs_f64());
        }
        let record = match self.node.store().get_job(&job) {
            Ok(Some(record)) => record,
            Ok(None) => {
                return self.cannot_run(id, attempt, format!("job {job:?} no longer exists"))
            }
            Err(err) => return self.cannot_run(id, attempt, format!("reading job {job:?}: {err}")),
        };
        let spec = record.spec;
        let output = OutputBuffer::new(spec.max_output_bytes);
        let cancel = CancellationToken::new();
        lock(&self.shared.live).insert(
            id,
            LiveRun {
                attempt,
                output: output.clone(),
                cancel: cancel.clone(),
                completion: None,
            },
        );
        let request = RunRequest {
            execution_id: id,
            job: job.clone(),
            scheduled_at,
            attempt,
            node: self.cfg.node_name.clone(),
            timeout: spec.timeout.map(|t| t.0),
            spec: spec.executor,
            workflow: None,
        };
        let executor = executor_for(&request.spec);
        let tx = self.completions_tx.clone();
        info!(job = %job, execution = %id, attempt, executor = request.spec.type_name(), "run started");
        let handle = self.runs.spawn(async move {
            let outcome = executor.run(request, output.clone(), cancel).await;
            output.close();
            let (bytes, truncated) = output.snapshot();
            // The receiver lives as long as the runtime; after it, nobody records.
            let _ = tx.send(Completion {
                id,
                attempt,
                outcome,
                output: String::from_utf8_lossy(&bytes).into_owned(),
                output_truncated: truncated,
            });
        });
        self.run_ids.insert(handle.id(), (id, attempt));
    }

    /// A dispatched attempt that cannot be handed to an executor fails at once.
    fn cannot_run(&mut self, id: Ulid, attempt: u32, why: String) {
        warn!(execution = %id, attempt, error = %why, "cannot run");
        let _ = self.completions_tx.send(Completion {
            id,
            attempt,
            outcome: RunOutcome::failed(None, why),
            output: String::new(),
            output_truncated: false,
        });
    }

    /// Notes a run's end in the live map (its output stays readable there).
    pub(super) fn completed(&mut self, c: &Completion) {
        if let Some(run) = lock(&self.shared.live).get_mut(&c.id) {
            if run.attempt == c.attempt {
                run.completion = Some(c.clone());
            }
        }
        info!(execution = %c.id, attempt = c.attempt, status = c.outcome.status.as_str(), "run ended");
    }

    /// An executor task ended; one that panicked still gets an outcome.
    pub(super) fn reaped(&mut self, joined: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        let (task, panicked) = match joined {
            Ok((task, ())) => (task, None),
            Err(err) => (err.id(), Some(err)),
        };
        let Some((id, attempt)) = self.run_ids.remove(&task) else {
            return;
        };
        if let Some(err) = panicked {
            if let Some(run) = lock(&self.shared.live).get(&id) {
                run.output.close();
            }
            self.cannot_run(id, attempt, format!("the executor task failed: {err}"));
        }
    }
}
