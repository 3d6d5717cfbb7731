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
//! The leader's exit is awaited without reaping it first (`waitid` with `WNOWAIT`),
//! so that the kernel's account of it can be read: the CPU time and peak memory of
//! the leader and of the descendants it waited for (a shell's commands) become the
//! outcome's [`ResourceUsage`]. Processes the leader left behind, killed with the
//! group, are not in that account. The kernel also charges the leader with the
//! server's own resident memory when it was started (the memory it was forked or
//! spawned from), so a peak no larger than the server's peak then is reported as
//! unknown rather than as the server's.
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
use rota_core::{ExecutorSpec, ResourceUsage, ShellSpec};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::sync::oneshot;
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
    let mut exit = LeaderExit::watch(child.id(), own_peak_rss_kib());
    debug!(job = %req.job, execution = %req.execution_id, attempt = req.attempt,
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
            status = exit.wait(&mut child) => break Ending::Exited(status),
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
            _ = exit.wait(&mut child), if !leader_exited => leader_exited = true,
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
        let _ = exit.wait(&mut child).await;
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
    }
    .with_usage(exit.usage);
    debug!(job = %req.job, execution = %req.execution_id, attempt = req.attempt,
        status = outcome.status.as_str(), exit_code = outcome.exit_code,
        error = outcome.error.as_deref(), usage = ?outcome.usage, "process ended");
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

/// The leader's exit, watched by a thread of its own that waits for it without
/// reaping it and reads its resource usage; the reaping stays with tokio's
/// [`Child`], so the pid cannot be reused while tokio still knows it.
struct LeaderExit {
    /// Answers once the leader has exited (with its usage, when it could be read);
    /// `None` once answered, or when no watcher could be started.
    watcher: Option<oneshot::Receiver<Option<ResourceUsage>>>,
    usage: Option<ResourceUsage>,
}

impl LeaderExit {
    /// `server_peak_kib`: this process's peak resident memory, read after the
    /// leader was started (the most the kernel can have charged the leader with).
    fn watch(pid: Option<u32>, server_peak_kib: Option<u64>) -> LeaderExit {
        let watcher = pid
            .and_then(|pid| libc::pid_t::try_from(pid).ok())
            .and_then(|pid| {
                let (tx, rx) = oneshot::channel();
                // A thread rather than the blocking pool: it is held for the whole
                // run, however long, and must not crowd out the store's work. Its
                // stack is reserved, not resident: 256 KiB leaves room for the
                // allocator's slow paths (jemalloc's, unoptimised in debug builds,
                // overflowed 64 KiB in this thread).
                std::thread::Builder::new()
                    .name("rota-exit-wait".into())
                    .stack_size(256 * 1024)
                    .spawn(move || {
                        let usage = exit_usage(pid).map(|usage| ResourceUsage {
                            max_rss_kib: usage
                                .max_rss_kib
                                .filter(|kib| server_peak_kib.is_some_and(|peak| *kib > peak)),
                            ..usage
                        });
                        let _ = tx.send(usage);
                    })
                    .map_err(|err| warn!(error = %err, "cannot watch the process's exit; its resource usage stays unknown"))
                    .ok()
                    .map(|_| rx)
            });
        LeaderExit {
            watcher,
            usage: None,
        }
    }

    /// Waits for the leader to exit and reaps it. Cancel-safe, like
    /// [`Child::wait`].
    async fn wait(&mut self, child: &mut Child) -> io::Result<ExitStatus> {
        if let Some(watcher) = &mut self.watcher {
            self.usage = watcher.await.ok().flatten();
            self.watcher = None;
        }
        child.wait().await
    }
}

/// Blocks until the process `pid` (a child of this process) has exited, leaving it
/// unreaped, and answers the kernel's account of it and of the children it waited
/// for; `None` when that cannot be had (it was reaped already, or not on Linux).
#[cfg(target_os = "linux")]
fn exit_usage(pid: libc::pid_t) -> Option<ResourceUsage> {
    // SAFETY: both are plain C structs for which all zeroes is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: Linux's waitid takes a fifth argument, a rusage to fill (glibc's
        // wrapper does not pass it on); both pointers are valid for the call.
        // WNOWAIT leaves the child a zombie, for tokio to reap.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_waitid,
                libc::P_PID,
                pid as libc::id_t,
                &mut info as *mut libc::siginfo_t,
                libc::WEXITED | libc::WNOWAIT,
                &mut usage as *mut libc::rusage,
            )
        };
        if rc == 0 {
            return Some(usage_of(&usage));
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return None;
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn exit_usage(_pid: libc::pid_t) -> Option<ResourceUsage> {
    None
}

#[cfg(target_os = "linux")]
fn usage_of(ru: &libc::rusage) -> ResourceUsage {
    let ms = |tv: libc::timeval| {
        u64::try_from(tv.tv_sec).unwrap_or(0) * 1000 + u64::try_from(tv.tv_usec).unwrap_or(0) / 1000
    };
    ResourceUsage {
        cpu_user_ms: ms(ru.ru_utime),
        cpu_system_ms: ms(ru.ru_stime),
        // KiB on Linux.
        max_rss_kib: u64::try_from(ru.ru_maxrss).ok(),
    }
}

/// This process's peak resident memory (`VmHWM`) in KiB, if it can be read.
fn own_peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let kib = line.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?;
        kib.trim().parse().ok()
    })
}

/// The process group a run's leader heads (its pgid is the leader's pid). Until
/// disarmed, dropping it SIGKILLs the whole group. Workflow services use it too.
pub(crate) struct ProcessGroup {
    pgid: Option<libc::pid_t>,
    /// Its record, so that a restart after a crash of this server kills it
    /// ([`crate::ledger`]); removed once the group has been dealt with.
    record: Option<crate::ledger::Entry>,
}

impl ProcessGroup {
    pub(crate) fn of_leader(pid: Option<u32>) -> Self {
        let pgid = pid
            .and_then(|pid| libc::pid_t::try_from(pid).ok())
            .filter(|pid| *pid > 0);
        Self {
            pgid,
            record: pgid.and_then(crate::ledger::record),
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
        self.record = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}
