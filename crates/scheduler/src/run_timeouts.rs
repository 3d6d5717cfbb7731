//! The worker `run-timeouts`: while its node leads, it ends workflow runs whose
//! `timeout` has passed (`Command::CancelRun` with `timed_out`). The deadline is
//! stored on the run when it starts, so a new leader enforces the same one; a run
//! found overdue after a leader change ends at once.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rota_background::{Runner, WorkerContext};
use rota_cluster::Node;
use rota_core::workflow::{RunStatus, WorkflowRun};
use rota_core::{ClientRequest, Command, EventKind};
use tokio::sync::broadcast::error::RecvError;
use tracing::{info, warn};

/// Wait after a failed read or commit before trying again; also the longest
/// sleep, so a clock that jumped is noticed.
const RECHECK: Duration = Duration::from_secs(1);

/// Starts the worker `run-timeouts` of `workers`.
pub fn spawn(node: Arc<Node>, workers: &Runner) {
    workers.spawn("run-timeouts", move |ctx| async move {
        let mut leadership = node.leadership();
        loop {
            ctx.set_detail("following");
            if *leadership.borrow_and_update() {
                lead(&node, &ctx, &mut leadership).await;
            }
            tokio::select! {
                () = ctx.stopping() => return Ok(()),
                changed = leadership.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    });
}

async fn lead(
    node: &Arc<Node>,
    ctx: &WorkerContext,
    leadership: &mut tokio::sync::watch::Receiver<bool>,
) {
    let mut events = node.store().subscribe_without_kv();
    loop {
        let next = match node.store().active_runs() {
            Ok(runs) => end_overdue(node, runs).await,
            Err(err) => {
                warn!(error = %rota_core::error::chain(&err), "cannot read the active workflow runs");
                Some(RECHECK)
            }
        };
        ctx.set_detail(match next {
            Some(wait) => format!(
                "leading: next deadline in {}",
                rota_core::HumanDuration(wait)
            ),
            None => "leading: no run with a deadline".to_string(),
        });
        let sleep = next.unwrap_or(Duration::MAX).min(RECHECK * 60);
        tokio::select! {
            () = ctx.stopping() => return,
            changed = leadership.changed() => {
                if changed.is_err() || !*leadership.borrow_and_update() {
                    return;
                }
            }
            event = events.recv() => match event {
                Ok(e) if matches!(e.kind, EventKind::Run(_) | EventKind::Reset) => {}
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            () = tokio::time::sleep(sleep) => {}
        }
    }
}

/// Ends the runs past their deadline; answers how long until the next deadline.
async fn end_overdue(node: &Arc<Node>, runs: Vec<WorkflowRun>) -> Option<Duration> {
    let now = Utc::now();
    let mut next: Option<Duration> = None;
    for run in runs {
        let Some(deadline) = run.deadline else {
            continue;
        };
        if run.status != RunStatus::Running || run.ending.is_some() {
            continue;
        }
        if deadline > now {
            let wait = (deadline - now).to_std().unwrap_or(Duration::ZERO);
            next = Some(next.map_or(wait, |n| n.min(wait)));
            continue;
        }
        let took = run
            .started_at
            .and_then(|s| (deadline - s).to_std().ok())
            .map(rota_core::HumanDuration);
        let reason = match took {
            Some(t) => format!("the run timed out after {t}"),
            None => "the run timed out".to_string(),
        };
        let request = ClientRequest {
            session: None,
            at: now,
            command: Command::CancelRun {
                id: run.id,
                status: RunStatus::TimedOut,
                reason: Some(reason),
            },
        };
        // Repeating it after a leader change changes nothing: an ending run stays so.
        match node.write(request).await {
            Ok(_) => info!(run = %run.id, workflow = %run.workflow, "workflow run timed out"),
            Err(err) => {
                warn!(run = %run.id, error = %rota_core::error::chain(&err), "cannot end a timed-out run");
                next = Some(RECHECK);
            }
        }
    }
    next
}
