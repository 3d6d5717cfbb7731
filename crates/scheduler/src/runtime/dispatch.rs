//! Runs on this node: handing an attempt to its executor, and taking the outcome
//! (or the panic) back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use rota_core::workflow::WorkflowJobSpec;
use rota_core::{ExecutorSpec, Timestamp, Trigger};
use rota_engine::Completion;
use rota_exec::{
    run_attempt, ArtifactInput, OutputBuffer, RunOutcome, RunRequest, WorkflowContext,
};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};
use ulid::Ulid;

use super::{lock, LiveRun, Runtime};

/// A run placed here ahead of its instant whose task did not hear from the loop
/// this long after the instant hands itself over.
const LAUNCH_FALLBACK: Duration = Duration::from_millis(100);

/// What a run placed ahead hands to its executor: taken once, by the loop at the
/// instant or by the run's own task after [`LAUNCH_FALLBACK`].
type LaunchSlot = Arc<Mutex<Option<(RunRequest, CancellationToken)>>>;

/// An executor's future for one attempt (what `run_attempt` answers).
type AttemptRun = std::pin::Pin<Box<dyn std::future::Future<Output = RunOutcome> + Send>>;

/// A run waiting for its instant, and where its task learns it was handed over
/// (when, and the executor's future).
pub(super) struct Launch {
    slot: LaunchSlot,
    output: OutputBuffer,
    go: oneshot::Sender<(Timestamp, AttemptRun)>,
}

/// Why a run placed ahead did not run after all: its node had been out of touch
/// and, asked again, the record no longer placed the attempt there.
const NOT_CONFIRMED: &str =
    "not started: this node was out of touch and the attempt is no longer placed here";

/// How long to wait between tries to confirm a start while no leader answers.
const CONFIRM_RETRY: Duration = Duration::from_millis(200);

/// What a run placed ahead needs to commit its start before it runs.
struct ConfirmStart {
    node: Arc<rota_cluster::Node>,
    me: String,
    contact: super::Contact,
    /// A node whose last committed write is older than this (half the node
    /// timeout) may have been judged dead meanwhile.
    out_of_touch: Duration,
}

impl ConfirmStart {
    /// Commits the start of attempt `attempt` of `id` on this node, and answers its
    /// time once this node's replica shows the attempt running here; `None` when
    /// the record moved on (the leader judged this node dead and the attempt lost,
    /// a cancel) or the run was stopped meanwhile.
    ///
    /// A node placed a run ahead of its instant hands it over at the instant and
    /// commits the start afterwards, which is safe while the leader hears from it.
    /// A node that was out of touch (frozen, cut off) for about the node timeout
    /// may have had the attempt judged lost and retried elsewhere, and its launch
    /// timer fires as it wakes, before the news reaches it: the start goes first.
    async fn start(&self, id: Ulid, attempt: u32, cancel: &CancellationToken) -> Option<Timestamp> {
        loop {
            let at = Utc::now();
            let request = rota_core::ClientRequest {
                session: None,
                at,
                command: rota_core::Command::Start {
                    starts: vec![rota_core::Start {
                        id,
                        attempt,
                        node: self.me.clone(),
                        at,
                    }],
                },
            };
            let written = tokio::select! {
                () = cancel.cancelled() => return None,
                written = self.node.write(request) => written,
            };
            let index = match written {
                Ok((index, _)) => index,
                Err(err) => {
                    debug!(execution = %id, attempt, error = %err, "confirming a late start failed; trying again");
                    tokio::select! {
                        () = cancel.cancelled() => return None,
                        () = tokio::time::sleep(CONFIRM_RETRY) => continue,
                    }
                }
            };
            while let Err(err) = self.node.wait_applied(index).await {
                debug!(execution = %id, error = %err, "waiting for a confirmed start to apply here");
                tokio::select! {
                    () = cancel.cancelled() => return None,
                    () = tokio::time::sleep(CONFIRM_RETRY) => {}
                }
            }
            let record = self.node.store().get_execution(id).ok().flatten()?;
            let started = record.status == rota_core::ExecStatus::Running
                && record.attempt == attempt
                && record.node.as_deref() == Some(self.me.as_str());
            info!(execution = %id, attempt, started, "a run placed here while this node was out of touch: its start was put to the leader first");
            return started.then_some(at);
        }
    }
}

/// Hand-overs pause this long before the starts noted meanwhile are committed.
const HANDED_QUIET: Duration = Duration::from_millis(10);
/// Longest a noted start waits for its commit while hand-overs go on.
const HANDED_MAX_WAIT: Duration = Duration::from_millis(250);

impl Runtime {
    pub(super) fn dispatch(
        &mut self,
        id: Ulid,
        attempt: u32,
        job: String,
        scheduled_at: Timestamp,
        trigger: Trigger,
    ) {
        // The lag of a scheduled first attempt is measured where `started_at` is
        // taken: when its executor gets it, in the run's own task below.
        let observe_lag = attempt == 1 && matches!(trigger, Trigger::Schedule | Trigger::Catchup);
        let record = match self.node.store().get_job(&job) {
            Ok(Some(record)) => record,
            Ok(None) => {
                return self.cannot_run(id, attempt, format!("job {job:?} no longer exists"))
            }
            Err(err) => return self.cannot_run(id, attempt, format!("reading job {job:?}: {err}")),
        };
        let spec = record.spec;
        let workflow = match &spec.executor {
            ExecutorSpec::WorkflowJob(job) => match self.workflow_context(id, attempt, job) {
                Ok(context) => Some(context),
                Err(why) => return self.cannot_run(id, attempt, why),
            },
            _ => None,
        };
        // A probe names its set in the executor, a fan-out on the job; either is
        // read from this node's replica of the store, as committed by discovery.
        let set_name = match &spec.executor {
            ExecutorSpec::Probe(probe) => Some(probe.targets.clone()),
            _ => spec.targets.clone(),
        };
        let targets = match set_name {
            None => None,
            Some(name) => match self.node.store().get_target_set(&name) {
                Ok(Some(set)) if set.refreshed_at.is_none() => {
                    return self.cannot_run(
                        id,
                        attempt,
                        format!("target set {name:?} has not been discovered yet"),
                    )
                }
                Ok(Some(set)) => Some(set.targets),
                Ok(None) => {
                    return self.cannot_run(
                        id,
                        attempt,
                        format!("target set {name:?} does not exist"),
                    )
                }
                Err(err) => {
                    return self.cannot_run(
                        id,
                        attempt,
                        format!("reading target set {name:?}: {err}"),
                    )
                }
            },
        };
        let parallelism = spec
            .fan_out_parallelism()
            .unwrap_or(rota_core::job::DEFAULT_PARALLELISM);
        let output = OutputBuffer::new(spec.max_output_bytes);
        let cancel = CancellationToken::new();
        lock(&self.shared.live).insert(
            id,
            LiveRun {
                job: job.clone(),
                attempt,
                output: output.clone(),
                cancel: cancel.clone(),
                handed_at: None,
                completion: None,
            },
        );
        // A prow run names its sink in the executor (or uses the job's); every run
        // of a job with `sink` also sends an `execution` point when it ends.
        let sink_name = match &spec.executor {
            ExecutorSpec::Prow(prow) => prow.sink.clone().or_else(|| spec.sink.clone()),
            _ => spec.sink.clone(),
        };
        let sink = match (&sink_name, &self.cfg.sinks) {
            (Some(name), Some(registry)) => match registry.handle(name).or_else(|| {
                let record = self.node.store().get_sink(name).ok().flatten()?;
                Some(registry.start(&record))
            }) {
                Some(sink) => Some(sink),
                None if matches!(spec.executor, ExecutorSpec::Prow(_)) => {
                    return self.cannot_run(id, attempt, format!("sink {name:?} does not exist"))
                }
                None => {
                    warn!(job = %job, sink = %name, "the job's sink does not exist; its records are dropped");
                    None
                }
            },
            _ => None,
        };
        let execution_sink = spec.sink.as_ref().and(sink.clone());
        let probe_counter = matches!(spec.executor, ExecutorSpec::Probe(_))
            .then(|| self.cfg.telemetry.clone())
            .flatten();
        let node_name = self.cfg.node_name.clone();
        let shared = self.shared.clone();
        let request = RunRequest {
            execution_id: id,
            job: job.clone(),
            scheduled_at,
            attempt,
            node: self.cfg.node_name.clone(),
            timeout: spec.timeout.map(|t| t.0),
            spec: spec.executor,
            workflow,
            targets,
            parallelism,
            forward_headers: Default::default(),
            sink,
        };
        let tx = self.completions_tx.clone();
        let handed_tx = self.handed_tx.clone();
        debug!(job = %job, execution = %id, attempt, executor = request.spec.type_name(), "run started");
        // The attempt's span, exported when the node sends traces: a root of its
        // own, as whatever made the scheduler dispatch is not its cause.
        let span = tracing::info_span!(
            target: rota_core::TRACE_TARGET,
            parent: None,
            "execution",
            otel.status_code = tracing::field::Empty,
            job = %job,
            execution.id = %id,
            attempt,
            trigger = trigger.as_str(),
            executor = request.spec.type_name(),
            node = %node_name,
            status = tracing::field::Empty,
            exit_code = tracing::field::Empty,
        );
        let attempt_span = span.clone();
        // A run placed here ahead of its instant is handed over by the runtime's
        // loop at the instant (`launch_due`), together with the others due then,
        // before any of them goes on; its task waits for that.
        let job_name = job.clone();
        let slot: LaunchSlot = Arc::new(Mutex::new(Some((request, cancel.clone()))));
        let go = (scheduled_at > Utc::now()).then(|| {
            let (go_tx, go_rx) = oneshot::channel();
            self.launch_seq += 1;
            self.launches.insert(
                (scheduled_at, self.launch_seq),
                Launch {
                    slot: slot.clone(),
                    output: output.clone(),
                    go: go_tx,
                },
            );
            go_rx
        });
        // A run placed ahead, whose node may have been out of touch long enough to
        // be judged dead when its instant comes, confirms its start first (see
        // `ConfirmStart::start`).
        let confirm = go.is_some().then(|| ConfirmStart {
            node: self.node.clone(),
            me: self.cfg.node_name.clone(),
            contact: self.contact.clone(),
            out_of_touch: self.liveness.node_timeout / 2,
        });
        let run = async move {
            let cancelled_early = || Completion {
                id,
                attempt,
                outcome: RunOutcome {
                    error: Some("cancelled before its instant".into()),
                    ..RunOutcome::cancelled()
                },
                output: String::new(),
                output_truncated: false,
                started_at: None,
            };
            let (mut handed_at, attempt_run) = match go {
                None => {
                    let Some((request, cancel)) = lock(&slot).take() else {
                        return;
                    };
                    // The attempt's real start: reported with its outcome as
                    // `started_at`.
                    (Utc::now(), run_attempt(request, output.clone(), cancel))
                }
                Some(mut go) => {
                    // Should the loop be busy at the instant (an engine loading), the
                    // run is handed over from here a little after it.
                    let fallback =
                        (scheduled_at - Utc::now()).to_std().unwrap_or_default() + LAUNCH_FALLBACK;
                    tokio::select! {
                        () = cancel.cancelled() => {
                            // Not handed over, or handed over and not begun: either
                            // way nothing ran.
                            lock(&slot).take();
                            let _ = tx.send(cancelled_early());
                            return;
                        }
                        got = &mut go => match got {
                            Ok(launched) => launched,
                            Err(_) => {
                                let _ = tx.send(cancelled_early());
                                return;
                            }
                        },
                        () = tokio::time::sleep(fallback) => {
                            let taken = lock(&slot).take();
                            match taken {
                                Some((request, cancel)) => {
                                    (Utc::now(), run_attempt(request, output.clone(), cancel))
                                }
                                // The loop took it first: its future is on the way.
                                None => match go.await {
                                    Ok(launched) => launched,
                                    Err(_) => {
                                        let _ = tx.send(cancelled_early());
                                        return;
                                    }
                                },
                            }
                        }
                    }
                }
            };
            if let Some(confirm) = confirm.filter(|c| c.contact.older_than(c.out_of_touch)) {
                match confirm.start(id, attempt, &cancel).await {
                    Some(at) => handed_at = at,
                    None => {
                        let _ = tx.send(Completion {
                            outcome: RunOutcome {
                                error: Some(NOT_CONFIRMED.into()),
                                ..RunOutcome::cancelled()
                            },
                            ..cancelled_early()
                        });
                        return;
                    }
                }
            }
            if let Some(run) = lock(&shared.live).get_mut(&id) {
                if run.attempt == attempt {
                    run.handed_at = Some(handed_at);
                }
            }
            let _ = handed_tx.send((id, attempt, handed_at));
            if observe_lag {
                let lag = handed_at
                    .signed_duration_since(scheduled_at)
                    .to_std()
                    .unwrap_or(Duration::ZERO);
                lock(&shared.stats).dispatch_lag.observe(lag.as_secs_f64());
            }
            // `run_attempt` picked fan-out when the request carries targets.
            let outcome = attempt_run.await;
            attempt_span.record("status", outcome.status.as_str());
            if let Some(code) = outcome.exit_code {
                attempt_span.record("exit_code", code);
            }
            if outcome.status != rota_core::ExecStatus::Succeeded {
                attempt_span.record("otel.status_code", "error");
            }
            if let (Some(telemetry), Some(result)) = (&probe_counter, &outcome.result) {
                telemetry.probe_result(&job_name, result.status.as_str());
            }
            if let Some(sink) = execution_sink {
                sink.send(vec![execution_point(
                    &job_name,
                    &node_name,
                    &outcome,
                    attempt,
                    scheduled_at,
                    handed_at,
                )]);
            }
            output.close();
            let (bytes, truncated) = output.snapshot();
            // The receiver lives as long as the runtime; after it, nobody records.
            let _ = tx.send(Completion {
                id,
                attempt,
                outcome,
                output: String::from_utf8_lossy(&bytes).into_owned(),
                output_truncated: truncated,
                started_at: Some(handed_at),
            });
        };
        let handle = self.runs.spawn(run.instrument(span));
        self.run_ids.insert(handle.id(), (id, attempt));
    }

    /// Where a workflow job's attempt works, and where the artifacts of its needs are
    /// fetched from (the API of the node that keeps each).
    fn workflow_context(
        &self,
        id: Ulid,
        attempt: u32,
        job: &WorkflowJobSpec,
    ) -> Result<WorkflowContext, String> {
        let store = self.node.store();
        let exec = store
            .get_execution(id)
            .map_err(|e| format!("reading execution {id}: {e}"))?
            .ok_or_else(|| format!("execution {id} no longer exists"))?;
        let run_id = exec
            .run
            .ok_or_else(|| format!("execution {id} belongs to no workflow run"))?;
        let run = store
            .get_run(run_id)
            .map_err(|e| format!("reading run {run_id}: {e}"))?
            .ok_or_else(|| format!("run {run_id} no longer exists"))?;
        let nodes = store
            .nodes()
            .map_err(|e| format!("reading the nodes: {e}"))?;
        let mut inputs = Vec::new();
        let data_dir = &self.node.config().data_dir;
        let here = &self.node.config().node_name;
        for artifact in run.artifacts.iter().filter(|a| job.needs.contains(&a.job)) {
            if &artifact.node == here {
                // Kept on this node: read from its own disk.
                let dir = std::path::absolute(
                    crate::artifacts_dir(data_dir, run_id).join(&artifact.name),
                )
                .map_err(|e| format!("the artifacts directory: {e}"))?;
                let base = reqwest::Url::from_directory_path(&dir)
                    .map_err(|()| format!("{} is not a usable path", dir.display()))?;
                inputs.push(ArtifactInput {
                    name: artifact.name.clone(),
                    base_url: base.as_str().trim_end_matches('/').to_string(),
                    files: artifact.files.clone(),
                });
                continue;
            }
            let url = nodes
                .iter()
                .find(|n| n.node == artifact.node)
                .and_then(|n| n.url.clone())
                .ok_or_else(|| {
                    format!(
                        "artifact {} is kept on node {}, whose address is unknown",
                        artifact.name, artifact.node
                    )
                })?;
            inputs.push(ArtifactInput {
                name: artifact.name.clone(),
                base_url: format!(
                    "{}/v1/runs/{run_id}/artifacts/{}",
                    url.trim_end_matches('/'),
                    artifact.name
                ),
                files: artifact.files.clone(),
            });
        }
        let workspace = crate::workspace_dir(data_dir, id, attempt);
        Ok(WorkflowContext {
            run: run_id,
            inputs_dir: workspace.with_extension("inputs"),
            workspace,
            artifacts_dir: crate::artifacts_dir(data_dir, run_id),
            inputs,
            fetch_headers: self
                .node
                .cluster_secret()
                .map(|secret| {
                    (
                        rota_cluster::CLUSTER_SECRET_HEADER.to_string(),
                        secret.to_string(),
                    )
                })
                .into_iter()
                .collect(),
        })
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
            started_at: None,
        });
    }

    /// Notes attempts just handed to their executor (`first` and whatever else is
    /// waiting). Their starts are committed together once the hand-overs pause
    /// ([`HANDED_QUIET`]) or [`HANDED_MAX_WAIT`] after the first, so that a burst of
    /// runs due at one instant is handed over before any start is committed.
    pub(super) fn handed_over(&mut self, first: super::Handed) {
        let now = tokio::time::Instant::now();
        self.handed_buf.push(first);
        while let Ok(next) = self.handed.try_recv() {
            self.handed_buf.push(next);
        }
        let since = self.handed_since.get_or_insert(now);
        self.handed_flush = Some((*since + HANDED_MAX_WAIT).min(now + HANDED_QUIET));
    }

    /// When the next run placed ahead is due.
    pub(super) fn next_launch(&self) -> Option<Timestamp> {
        self.launches.keys().next().map(|(at, _)| *at)
    }

    /// Hands every run placed ahead whose instant came to its executor, all of
    /// them before any goes on (their tasks run the executors' futures).
    pub(super) fn launch_due(&mut self) {
        let now = Utc::now();
        while let Some(entry) = self.launches.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let launch = entry.remove();
            let Some((request, cancel)) = lock(&launch.slot).take() else {
                continue; // cancelled, or handed over by its own task
            };
            let handed_at = Utc::now();
            let attempt_run = run_attempt(request, launch.output, cancel);
            let _ = launch.go.send((handed_at, attempt_run));
        }
    }

    /// Commits the starts noted by [`Runtime::handed_over`] (when it is time).
    pub(super) fn flush_handed(&mut self) {
        self.handed_flush = None;
        self.handed_since = None;
        let handed = std::mem::take(&mut self.handed_buf);
        self.commit_starts(handed);
    }

    /// Commits again the start of local runs handed over whose record still shows
    /// them placed here (the commit failed, for instance while no leader was
    /// elected); one round at a time.
    pub(super) fn retry_starts(&mut self) {
        if !self.commits.is_empty() {
            return;
        }
        let handed: Vec<super::Handed> = lock(&self.shared.live)
            .iter()
            .filter(|(_, r)| r.completion.is_none())
            .filter_map(|(id, r)| r.handed_at.map(|at| (*id, r.attempt, at)))
            .collect();
        self.commit_starts(handed);
    }

    fn commit_starts(&mut self, handed: Vec<super::Handed>) {
        let store = self.node.store().clone();
        let me = self.cfg.node_name.clone();
        let mut starts = Vec::new();
        for (id, attempt, at) in handed {
            match store.get_execution(id) {
                Ok(Some(e))
                    if e.is_placed_ahead()
                        && e.attempt == attempt
                        && e.node.as_deref() == Some(me.as_str()) =>
                {
                    starts.push(rota_core::Start {
                        id,
                        attempt,
                        node: me.clone(),
                        at,
                    });
                }
                Ok(_) => {}
                Err(err) => warn!(execution = %id, error = %err, "reading an execution failed"),
            }
        }
        if !starts.is_empty() {
            debug!(
                starts = starts.len(),
                "committing the start of runs placed here ahead"
            );
            self.commit_unfenced(rota_core::Command::Start { starts });
        }
    }

    /// Notes a run's end in the live map (its output stays readable there). A run
    /// whose record is gone (its job was deleted) has nothing to record: it leaves
    /// the live map at once, and the answer is true. Only a stopped run can be one
    /// (a job's deletion stops its runs here, and so does a reconcile that finds
    /// the record gone), so only for those is the record read.
    pub(super) fn completed(&mut self, c: &Completion) -> bool {
        debug!(execution = %c.id, attempt = c.attempt, status = c.outcome.status.as_str(), "run ended");
        let stopped = {
            let mut live = lock(&self.shared.live);
            let Some(run) = live.get_mut(&c.id).filter(|r| r.attempt == c.attempt) else {
                return false;
            };
            run.completion = Some(c.clone());
            run.cancel.is_cancelled()
        };
        if !stopped {
            return false;
        }
        match self.node.store().get_execution(c.id) {
            Ok(None) => {
                debug!(execution = %c.id, "the record of an ended run is gone: nothing to record");
                lock(&self.shared.live).remove(&c.id);
                self.shared.runs_left.notify_waiters();
                true
            }
            Ok(Some(_)) => false,
            Err(err) => {
                warn!(execution = %c.id, error = %err, "reading an execution failed");
                false
            }
        }
    }

    /// Stops the runs of a deleted job going on (or waiting for their instant)
    /// here: their records went with the job, so they must not run, and their
    /// ends are not recorded ([`Runtime::completed`]).
    pub(super) fn job_deleted(&mut self, job: &str) {
        let doomed: Vec<(Ulid, CancellationToken)> = lock(&self.shared.live)
            .iter()
            .filter(|(_, r)| r.job == job && r.completion.is_none())
            .map(|(id, r)| (*id, r.cancel.clone()))
            .collect();
        for (id, token) in doomed {
            info!(execution = %id, job, "the job of a local run was deleted: stopping it");
            token.cancel();
        }
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

/// The `execution` point of an attempt that ended: tags `job`, `status`, `node`;
/// fields `duration_s` (from the hand-over to the executor to now), `lag_ms` (from
/// the instant it was for to the hand-over) and `attempt`; at the hand-over time.
fn execution_point(
    job: &str,
    node: &str,
    outcome: &RunOutcome,
    attempt: u32,
    scheduled_at: Timestamp,
    handed_at: Timestamp,
) -> rota_sink::Point {
    let duration = (Utc::now() - handed_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
    let lag = (handed_at - scheduled_at).num_microseconds().unwrap_or(0) as f64 / 1e3;
    rota_sink::Point::new(
        "execution",
        handed_at.timestamp_nanos_opt().unwrap_or_default(),
    )
    .tag("job", job)
    .tag("status", outcome.status.as_str())
    .tag("node", node)
    .field("duration_s", duration.max(0.0))
    .field("lag_ms", lag.max(0.0))
    .field("attempt", i64::from(attempt))
}
