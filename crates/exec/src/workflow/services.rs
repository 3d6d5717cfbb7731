//! A workflow job's services: processes started before its steps (each `sh -c`
//! leading a process group of its own, in the workspace, with the job's
//! environment), waited for until ready, and stopped after the steps (SIGTERM to
//! the group, SIGKILL after [`KILL_GRACE`]). A [`Service`] dropped early (the job
//! timed out or was cancelled) kills its group at once.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rota_core::workflow::{Readiness, ServiceSpec};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::shell::{ProcessGroup, KILL_GRACE};
use crate::OutputBuffer;

/// How often readiness is checked.
const READY_POLL: Duration = Duration::from_millis(100);
/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A started service.
pub(crate) struct Service {
    pub name: String,
    child: Child,
    /// Declared after `child`: dropped first, so an early drop kills the group.
    group: ProcessGroup,
}

/// Starts `spec` and waits until it is ready; the error says why it is not.
pub(crate) async fn start(
    spec: &ServiceSpec,
    workspace: &Path,
    env: &BTreeMap<String, String>,
    output: &OutputBuffer,
) -> Result<Service, String> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(&spec.command)
        .current_dir(workspace)
        .envs(env)
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("service {} did not start: {e}", spec.name))?;
    let group = ProcessGroup::of_leader(child.id());
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn AsyncRead + Send + Unpin>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn AsyncRead + Send + Unpin>),
    ]
    .into_iter()
    .flatten()
    {
        tokio::spawn(prefix_lines(
            pipe,
            format!("[service {}] ", spec.name),
            output.clone(),
        ));
    }
    let mut service = Service {
        name: spec.name.clone(),
        child,
        group,
    };
    let began = Instant::now();
    let deadline = began + spec.ready_timeout.0;
    loop {
        // A leader that exits 0 may have started a daemon in its group (`pg_ctl
        // start`): readiness decides. Any other exit is a failure.
        if let Some(status) = service.child.try_wait().map_err(|e| e.to_string())? {
            if !status.success() {
                return Err(format!(
                    "service {} exited with {} before it was ready",
                    spec.name,
                    describe(status)
                ));
            }
        }
        let ready = match &spec.ready {
            None => true,
            Some(check) => probe(check, workspace, env).await,
        };
        if ready {
            output.push(
                format!(
                    "==> service {} ready ({:.1}s)\n",
                    spec.name,
                    began.elapsed().as_secs_f64()
                )
                .as_bytes(),
            );
            return Ok(service);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "service {} was not ready after {}",
                spec.name, spec.ready_timeout
            ));
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}

async fn probe(check: &Readiness, workspace: &Path, env: &BTreeMap<String, String>) -> bool {
    let attempt = async {
        match check {
            Readiness::Tcp(addr) => tokio::net::TcpStream::connect(addr.as_str()).await.is_ok(),
            Readiness::Http(url) => match crate::http::client() {
                Ok(client) => client
                    .get(url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success()),
                Err(_) => false,
            },
            Readiness::Command(command) => Command::new("sh")
                .arg("-c")
                .arg(command)
                .current_dir(workspace)
                .envs(env)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .kill_on_drop(true)
                .status()
                .await
                .is_ok_and(|s| s.success()),
        }
    };
    tokio::time::timeout(PROBE_TIMEOUT, attempt)
        .await
        .unwrap_or(false)
}

impl Service {
    /// Stops the service: SIGTERM to its group, SIGKILL to what is left after
    /// [`KILL_GRACE`]. Says whether it had already ended by itself.
    pub(crate) async fn stop(mut self, output: &OutputBuffer) {
        if let Ok(Some(status)) = self.child.try_wait().map(|s| s.filter(|s| !s.success())) {
            output.push(
                format!(
                    "==> service {} had ended by itself ({})\n",
                    self.name,
                    describe(status)
                )
                .as_bytes(),
            );
        } else if self.group.signal(libc::SIGTERM) {
            // Wait for the group to empty (the leader, and a daemon it left).
            let until = Instant::now() + KILL_GRACE;
            let _ = tokio::time::timeout(KILL_GRACE, self.child.wait()).await;
            while Instant::now() < until && self.group.signal(0) {
                tokio::time::sleep(READY_POLL).await;
            }
        }
        // Whatever is left of the group (the leader, or a child it started).
        self.group.signal(libc::SIGKILL);
        let _ = self.child.wait().await;
        self.group.disarm();
        output.push(format!("==> service {} stopped\n", self.name).as_bytes());
    }
}

async fn prefix_lines(
    pipe: Box<dyn AsyncRead + Send + Unpin>,
    prefix: String,
    output: OutputBuffer,
) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        output.push(format!("{prefix}{line}\n").as_bytes());
    }
}
