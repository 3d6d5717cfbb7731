//! A workflow job's services: processes started before its steps, waited for until
//! ready, and stopped after them.
//!
//! Each service is `sh -c command` in the workspace, stdin `/dev/null`, leading a
//! process group of its own like a shell run; its stdout and stderr lines go into
//! the job's output as `[service NAME] line`. [`Services`] owns what was started:
//! [`Services::stop_all`] stops the groups in reverse order (SIGTERM, then SIGKILL
//! after [`KILL_GRACE`]), and dropping it SIGKILLs whatever is still running, so a
//! service never outlives its job, even when the job's future is dropped.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rota_core::workflow::{Readiness, ServiceSpec};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::env::Vars;
use super::note;
use crate::shell::{ProcessGroup, KILL_GRACE};
use crate::{ExecError, OutputBuffer};

/// Time between two readiness checks.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A service line longer than this is cut into several lines.
const MAX_LINE_BYTES: u64 = 16 * 1024;

/// The services a job started, in the order they started.
pub(crate) struct Services {
    started: Vec<Service>,
    output: OutputBuffer,
}

/// One started service.
struct Service {
    name: String,
    // Declared before `child` so that it drops first: on an early drop the group gets
    // SIGKILL, then `kill_on_drop` reaps the leader.
    group: ProcessGroup,
    child: Child,
    /// Copies the pipes into the job's output until they close.
    pump: Option<JoinHandle<()>>,
    /// Its end was already told (it ended before it was ready).
    end_reported: bool,
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(pump) = &self.pump {
            pump.abort();
        }
    }
}

impl Services {
    /// No service yet; their lines and notes go to `output`.
    pub(crate) fn new(output: OutputBuffer) -> Self {
        Self {
            started: Vec::new(),
            output,
        }
    }

    /// Starts `spec` (already substituted) with the process environment `env` in
    /// `workspace`, and waits until it is ready. A service that failed to become
    /// ready stays among the started ones, to be stopped with them.
    pub(crate) async fn start(
        &mut self,
        spec: &ServiceSpec,
        env: &Vars,
        workspace: &Path,
    ) -> Result<(), ExecError> {
        let began = Instant::now();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&spec.command)
            .envs(env)
            .current_dir(workspace)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ExecError::Service {
                service: spec.name.clone(),
                source: Box::new(ExecError::Spawn {
                    program: "sh".into(),
                    source,
                }),
            })?;
        let group = ProcessGroup::of_leader(child.id());
        debug!(service = %spec.name, pid = child.id(), "service started");
        let prefix = format!("[service {}] ", spec.name);
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let output = self.output.clone();
        let pump = tokio::spawn(async move {
            tokio::join!(
                pump_lines(stdout, &prefix, &output),
                pump_lines(stderr, &prefix, &output)
            );
        });
        note(&self.output, format_args!("service {} started", spec.name));
        let mut service = Service {
            name: spec.name.clone(),
            group,
            child,
            pump: Some(pump),
            end_reported: false,
        };
        let ready = match &spec.ready {
            Some(ready) => {
                service
                    .wait_ready(ready, spec.ready_timeout.0, env, workspace)
                    .await
            }
            None => {
                self.started.push(service);
                return Ok(());
            }
        };
        self.started.push(service);
        ready?;
        note(
            &self.output,
            format_args!(
                "service {} ready ({:.1}s)",
                spec.name,
                began.elapsed().as_secs_f64()
            ),
        );
        Ok(())
    }

    /// Stops every started service, the last started first.
    pub(crate) async fn stop_all(&mut self) {
        while let Some(mut service) = self.started.pop() {
            service.stop(&self.output).await;
        }
    }
}

impl Service {
    /// Checks `ready` every [`POLL_INTERVAL`] until it passes, the service's process
    /// ends, or `timeout` runs out.
    async fn wait_ready(
        &mut self,
        ready: &Readiness,
        timeout: Duration,
        env: &Vars,
        workspace: &Path,
    ) -> Result<(), ExecError> {
        // A timeout too large to represent as an instant never comes.
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let attempt = async {
                let passed = check(ready, env, workspace).await;
                if !passed {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                passed
            };
            tokio::select! {
                biased;
                ended = self.child.wait() => {
                    self.end_reported = true;
                    // Its last words come before the verdict (what outlives the
                    // leader and holds the pipes is not waited for long).
                    if let Some(pump) = &mut self.pump {
                        if tokio::time::timeout(KILL_GRACE, pump).await.is_ok() {
                            self.pump = None;
                        }
                    }
                    return Err(match ended {
                        Ok(status) => ExecError::ServiceExited {
                            service: self.name.clone(),
                            how: how_it_ended(status),
                        },
                        Err(source) => ExecError::Service {
                            service: self.name.clone(),
                            source: Box::new(ExecError::Wait(source)),
                        },
                    });
                }
                passed = attempt => if passed {
                    return Ok(());
                },
                () = sleep_until(deadline) => {
                    return Err(ExecError::ServiceNotReady {
                        service: self.name.clone(),
                        after: timeout.into(),
                    });
                }
            }
        }
    }

    /// SIGTERM to the group, SIGKILL to what is left of it after [`KILL_GRACE`].
    async fn stop(&mut self, output: &OutputBuffer) {
        let ended_before = match self.child.try_wait() {
            Ok(Some(status)) => {
                if !self.end_reported {
                    note(
                        output,
                        format_args!(
                            "service {} had already ended by itself ({})",
                            self.name,
                            status_text(status)
                        ),
                    );
                }
                true
            }
            Ok(None) | Err(_) => {
                self.group.signal(libc::SIGTERM);
                false
            }
        };
        let grace_end = Instant::now() + KILL_GRACE;
        let leader_ended = ended_before
            || tokio::time::timeout_at(grace_end, self.child.wait())
                .await
                .is_ok();
        let mut pump_done = false;
        if let Some(pump) = &mut self.pump {
            pump_done = tokio::time::timeout_at(grace_end, pump).await.is_ok();
        }
        // Whatever the leader left behind in its group goes too. While any member
        // lives the pgid cannot be handed out again, so this reaches only this
        // service's processes.
        self.group.signal(libc::SIGKILL);
        if !leader_ended {
            // SIGKILL cannot be ignored: the leader ends now.
            let _ = self.child.wait().await;
            note(
                output,
                format_args!(
                    "service {} did not stop within {}s of SIGTERM; killed",
                    self.name,
                    KILL_GRACE.as_secs()
                ),
            );
        }
        self.group.disarm();
        if let Some(pump) = self.pump.as_mut().filter(|_| !pump_done) {
            if tokio::time::timeout(KILL_GRACE, pump).await.is_err() {
                warn!(service = %self.name,
                    "service output held open by a process outside its group; stopped reading it");
            }
        }
        if !ended_before {
            note(output, format_args!("service {} stopped", self.name));
        }
        debug!(service = %self.name, "service stopped");
    }
}

/// `exited with status 1`, `was killed by signal 9`.
fn how_it_ended(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended ({status})"),
    }
}

/// `exit status 1`, `signal 9`.
fn status_text(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => status.to_string(),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One readiness check.
async fn check(ready: &Readiness, env: &Vars, workspace: &Path) -> bool {
    match ready {
        Readiness::Tcp(addr) => tokio::net::TcpStream::connect(addr.as_str()).await.is_ok(),
        Readiness::Http(url) => match crate::http::client() {
            Ok(client) => client
                .get(url)
                .send()
                .await
                .is_ok_and(|answer| answer.status().is_success()),
            Err(err) => {
                warn!(error = %err.chain(), "no HTTP client for a readiness check");
                false
            }
        },
        Readiness::Command(cmd) => {
            let spawned = Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .envs(env)
                .current_dir(workspace)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .kill_on_drop(true)
                .spawn();
            let mut child = match spawned {
                Ok(child) => child,
                Err(err) => {
                    warn!(error = %err, "readiness command did not start");
                    return false;
                }
            };
            // A check cut short (the service ended, the wait timed out) takes its
            // whole group with it.
            let mut group = ProcessGroup::of_leader(child.id());
            let passed = child.wait().await.is_ok_and(|status| status.success());
            group.signal(libc::SIGKILL);
            group.disarm();
            passed
        }
    }
}

/// Copies a pipe into `output` line by line, each line prefixed, until it closes.
async fn pump_lines<R: AsyncRead + Unpin>(pipe: Option<R>, prefix: &str, output: &OutputBuffer) {
    let Some(pipe) = pipe else {
        return;
    };
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Read on even when the buffer is full, so the service never blocks on a
        // full pipe.
        match (&mut reader)
            .take(MAX_LINE_BYTES)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) => return,
            Ok(_) => {
                let mut text = Vec::with_capacity(prefix.len() + line.len() + 1);
                text.extend_from_slice(prefix.as_bytes());
                text.extend_from_slice(&line);
                if !text.ends_with(b"\n") {
                    text.push(b'\n');
                }
                output.push_line(&text);
            }
            Err(err) => {
                warn!(error = %err, "reading service output failed");
                return;
            }
        }
    }
}
