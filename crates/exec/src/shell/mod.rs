//! The `shell` executor: runs a process, `sh -c command`, or `command` executed
//! directly with `args` when they are given (no shell, so spaces and `$` in an
//! argument stay literal).
//!
//! The process inherits the server's environment plus the spec's `env` and the
//! `ROTA_*` variables that tell it which run it is; its stdin is `/dev/null`. It
//! leads a process group of its own, and the run owns that group: on timeout or
//! cancel the whole group gets SIGTERM, then SIGKILL after [`KILL_GRACE`]; whatever
//! is left of it when the run ends, or when the run's future is dropped, is killed.
//! So nothing a run starts outlives it, not even a background grandchild.
//!
//! stdout and stderr go, interleaved as they arrive, into the run's
//! [`OutputBuffer`]. After the leader exits, the pipes are read until EOF, for at
//! most [`KILL_GRACE`] while a leftover process still holds them open.

#[cfg(test)]
pub(crate) mod tests;

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use chrono::SecondsFormat;
use futures_util::future::BoxFuture;
use rota_core::{ExecutorSpec, ShellSpec};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{ChildStderr, ChildStdout, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{ExecError, Executor, OutputBuffer, RunOutcome, RunRequest};

/// How long a process group gets between SIGTERM and SIGKILL, and how long output
/// pipes are still read after the leader exited while something holds them open.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// Bytes read from a pipe at a time.
const PIPE_CHUNK: usize = 16 * 1024;

/// Runs [`ShellSpec`]s. Stateless: every run is its own process group.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShellExecutor;

impl Executor for ShellExecutor {
    fn run(
        &self,
        req: RunRequest,
        output: OutputBuffer,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, RunOutcome> {
        Box::pin(async move {
            let ExecutorSpec::Shell(spec) = &req.spec else {
                return ExecError::outcome(&ExecError::SpecMismatch {
                    executor: "shell",
                    spec: req.spec.type_name(),
                });
            };
            run_process(&req, spec, output, cancel).await
        })
    }
}

/// Why the wait for the leader ended.
enum Ending {
    Exited(io::Result<ExitStatus>),
    TimedOut(Duration),
    Cancelled,
}

async fn run_process(
    req: &RunRequest,
    spec: &ShellSpec,
    output: OutputBuffer,
    cancel: CancellationToken,
) -> RunOutcome {
    if cancel.is_cancelled() {
        return RunOutcome::cancelled();
    }
    let mut child = match command_for(req, spec).spawn() {
        Ok(child) => child,
        Err(source) => {
            let err = spawn_error(spec, source);
            warn!(job = %req.job, execution = %req.execution_id, attempt = req.attempt,
                error = %err.chain(), "process did not start");
            return ExecError::outcome(&err);
        }
    };
    // Declared after `child` so that it drops first: on an early drop the group gets
    // SIGKILL, then `kill_on_drop` reaps the leader.
    let mut group = ProcessGroup::of_leader(child.id());
    info!(job = %req.job, execution = %req.execution_id, attempt = req.attempt,
        pid = child.id(), "process started");

    let pump = pump_output(child.stdout.take(), child.stderr.take(), output);
    tokio::pin!(pump);
    let mut pump_done = false;
    // A timeout too large to represent as an instant never comes.
    let deadline = req
        .timeout
        .and_then(|after| Some((after, Instant::now().checked_add(after)?)));

    let ending = loop {
        tokio::select! {
            // An exit that coincides with the deadline or a cancel counts as an exit.
            biased;
            status = child.wait() => break Ending::Exited(status),
            () = &mut pump, if !pump_done => pump_done = true,
            () = cancel.cancelled() => break Ending::Cancelled,
            () = sleep_until(deadline.map(|(_, at)| at)) => {
                break Ending::TimedOut(deadline.map(|(after, _)| after).unwrap_or_default());
            }
        }
    };

    let mut leader_exited = match &ending {
        Ending::Exited(_) => true,
        Ending::TimedOut(_) | Ending::Cancelled => {
            let reason = if matches!(ending, Ending::Cancelled) {
                "cancel"
            } else {
                "timeout"
            };
            info!(job = %req.job, execution = %req.execution_id, attempt = req.attempt,
                reason, "stopping process group");
            group.signal(libc::SIGTERM);
            false
        }
    };

    // Give the group the grace to finish (after SIGTERM) or to let go of the pipes
    // (after a normal exit); stop waiting as soon as both the leader and the pipes
    // are done.
    let grace_end = Instant::now() + KILL_GRACE;
    while !leader_exited || !pump_done {
        tokio::select! {
            biased;
            _ = child.wait(), if !leader_exited => leader_exited = true,
            () = &mut pump, if !pump_done => pump_done = true,
            () = tokio::time::sleep_until(grace_end) => break,
        }
    }

    // While any member lives, the kernel keeps the pgid from being handed out
    // again, so this reaches only what this run started; once the group is empty the
    // call finds nobody (short of the pid numbers wrapping around in between).
    if group.signal(libc::SIGKILL) {
        debug!(job = %req.job, execution = %req.execution_id,
            "killed what was left of the process group");
    }
    if !leader_exited {
        // SIGKILL cannot be ignored: the leader ends now.
        let _ = child.wait().await;
    }
    group.disarm();
    if !pump_done && tokio::time::timeout(KILL_GRACE, &mut pump).await.is_err() {
        warn!(job = %req.job, execution = %req.execution_id,
            "output pipes held open by a process outside the run's group; stopped reading them");
    }

    let outcome = match ending {
        Ending::Exited(Ok(status)) => outcome_of_exit(status),
        Ending::Exited(Err(source)) => ExecError::outcome(&ExecError::Wait(source)),
        Ending::TimedOut(after) => RunOutcome::timed_out(after),
        Ending::Cancelled => RunOutcome::cancelled(),
    };
    info!(job = %req.job, execution = %req.execution_id, attempt = req.attempt,
        status = outcome.status.as_str(), exit_code = outcome.exit_code,
        error = outcome.error.as_deref(), "process ended");
    outcome
}

fn command_for(req: &RunRequest, spec: &ShellSpec) -> Command {
    let mut cmd = match &spec.args {
        Some(args) => {
            let mut cmd = Command::new(&spec.command);
            cmd.args(args);
            cmd
        }
        None => {
            let mut cmd = Command::new("sh");
            cmd.arg("-c").arg(&spec.command);
            cmd
        }
    };
    // The `ROTA_*` variables come last so that a spec cannot make a run lie about
    // which run it is.
    cmd.envs(&spec.env)
        .envs(run_vars(req))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    cmd
}

/// The variables that tell a process which run it belongs to: `ROTA_JOB`,
/// `ROTA_EXECUTION_ID`, `ROTA_SCHEDULED_AT`, `ROTA_ATTEMPT`, `ROTA_NODE`.
pub(crate) fn run_vars(req: &RunRequest) -> [(&'static str, String); 5] {
    [
        ("ROTA_JOB", req.job.clone()),
        ("ROTA_EXECUTION_ID", req.execution_id.to_string()),
        (
            "ROTA_SCHEDULED_AT",
            req.scheduled_at
                .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        ),
        ("ROTA_ATTEMPT", req.attempt.to_string()),
        ("ROTA_NODE", req.node.clone()),
    ]
}

/// Names the culprit of a failed spawn: the OS says "No such file or directory"
/// both for a missing program and for a missing working directory.
fn spawn_error(spec: &ShellSpec, source: io::Error) -> ExecError {
    if let Some(cwd) = &spec.cwd {
        let cwd_problem = match std::fs::metadata(cwd) {
            Err(err) => Some(err),
            Ok(meta) if !meta.is_dir() => Some(io::Error::from_raw_os_error(libc::ENOTDIR)),
            Ok(_) => None,
        };
        if let Some(source) = cwd_problem {
            return ExecError::WorkingDirectory {
                cwd: cwd.clone(),
                source,
            };
        }
    }
    let program = match spec.args {
        Some(_) => spec.command.clone(),
        None => "sh".to_string(),
    };
    ExecError::Spawn { program, source }
}

fn outcome_of_exit(status: ExitStatus) -> RunOutcome {
    match (status.code(), status.signal()) {
        (Some(0), _) => RunOutcome {
            exit_code: Some(0),
            ..RunOutcome::succeeded()
        },
        (Some(code), _) => RunOutcome::failed(Some(code), format!("exit status {code}")),
        (None, Some(signal)) => RunOutcome::failed(None, format!("killed by signal {signal}")),
        (None, None) => RunOutcome::failed(None, format!("process ended: {status}")),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Copies both pipes into `output` as chunks arrive, until both reach EOF.
async fn pump_output(
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    output: OutputBuffer,
) {
    let (mut stdout, mut stderr) = (stdout, stderr);
    let mut out_buf = vec![0u8; PIPE_CHUNK];
    let mut err_buf = vec![0u8; PIPE_CHUNK];
    while stdout.is_some() || stderr.is_some() {
        tokio::select! {
            read = read_open(&mut stdout, &mut out_buf) => {
                take_read(read, &mut stdout, &out_buf, "stdout", &output);
            }
            read = read_open(&mut stderr, &mut err_buf) => {
                take_read(read, &mut stderr, &err_buf, "stderr", &output);
            }
        }
    }
}

/// Keeps what one read from `pipe` got; closes the pipe at EOF or on an error.
fn take_read<R>(
    read: io::Result<usize>,
    pipe: &mut Option<R>,
    buf: &[u8],
    name: &'static str,
    output: &OutputBuffer,
) {
    match read {
        Ok(0) => *pipe = None,
        // Read on even when the buffer is full, so the process never blocks on a
        // full pipe.
        Ok(n) => output.push(&buf[..n]),
        Err(err) => {
            warn!(pipe = name, error = %err, "reading process output failed");
            *pipe = None;
        }
    }
}

/// Reads from the pipe while it is open; never finishes once it is closed.
async fn read_open<R: AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut [u8],
) -> io::Result<usize> {
    match pipe {
        Some(pipe) => pipe.read(buf).await,
        None => std::future::pending().await,
    }
}

/// The process group a run's leader heads (its pgid is the leader's pid). Until
/// disarmed, dropping it SIGKILLs the whole group. Workflow services use it too.
pub(crate) struct ProcessGroup {
    pgid: Option<libc::pid_t>,
}

impl ProcessGroup {
    pub(crate) fn of_leader(pid: Option<u32>) -> Self {
        Self {
            pgid: pid
                .and_then(|pid| libc::pid_t::try_from(pid).ok())
                .filter(|pid| *pid > 0),
        }
    }

    /// Sends `signal` to every process of the group; false when none was left.
    pub(crate) fn signal(&self, signal: libc::c_int) -> bool {
        match self.pgid {
            // SAFETY: kill(2) has no memory effects; a negative pid addresses the
            // group, and the pgid is positive, so this never means "every process".
            Some(pgid) => unsafe { libc::kill(-pgid, signal) == 0 },
            None => false,
        }
    }

    /// Stops the drop from signalling: the group has been dealt with, and its pgid
    /// may be reused once it is empty.
    pub(crate) fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}
