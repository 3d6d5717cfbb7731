//! Services: readiness, output, failures, and that none outlives its job.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::Path;

use rota_core::workflow::{Readiness, ServiceSpec};
use rota_core::HumanDuration;
use tokio_util::sync::CancellationToken;

use super::{job, own_lines, sh, text, vars, Fixture};
use crate::shell::tests::{process_ends, read_pid, wait_for_output};
use crate::workflow::WorkflowExecutor;
use crate::{Executor, OutputBuffer, RunOutcome};

/// A port nothing listens on (right now).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Answers every connection with `hello from db` (the port is its argument).
const TCP_SERVER: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(b"hello from db\n")
    c.close()
"#;

/// Prints what the server on port `argv[1]` sends.
const TCP_CLIENT: &str = r#"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print(s.recv(100).decode().strip())
"#;

/// A service running [`TCP_SERVER`] on `port`, its pid (its group's id) written to
/// `pid_file`.
fn tcp_service(port: u16, pid_file: &Path) -> ServiceSpec {
    ServiceSpec {
        name: "db".into(),
        command: format!(
            "echo $$ > '{}'; exec python3 -c \"$SERVER\" {port}",
            pid_file.display()
        ),
        env: vars(&[("SERVER", TCP_SERVER)]),
        ready: Some(Readiness::Tcp(format!("127.0.0.1:{port}"))),
        ready_timeout: HumanDuration::from_secs(30),
    }
}

/// Whether the process group `pgid` has no member left.
fn group_gone(pgid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks for existence; the pgid is positive.
    let found = unsafe { libc::kill(-pgid, 0) } == 0;
    !found && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

fn refuses(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

#[tokio::test]
async fn a_service_is_ready_before_the_steps_and_gone_after_the_job() {
    let fx = Fixture::new();
    let port = free_port();
    let pid_file = fx.outside("db.pid");
    let mut spec = job(vec![sh(
        "connect",
        &format!("python3 -c \"$CLIENT\" {port}"),
    )]);
    spec.env = vars(&[("CLIENT", TCP_CLIENT)]);
    spec.services = vec![tcp_service(port, &pid_file)];
    let (outcome, out) = fx.run(spec).await;
    assert_eq!(outcome, RunOutcome::succeeded(), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let at = |prefix: &str| lines.iter().position(|l| l.starts_with(prefix));
    assert!(at("==> service db started").is_some(), "{out}");
    assert!(at("==> service db ready (").is_some(), "{out}");
    assert!(at("==> service db ready") < at("==> step connect"), "{out}");
    let own = own_lines(&out);
    let step = own.iter().position(|l| *l == "==> step connect");
    assert_eq!(
        step.and_then(|at| own.get(at + 1)),
        Some(&"hello from db"),
        "{out}"
    );
    assert!(out.contains("[service db] listening\n"), "{out}");
    assert!(out.ends_with("==> service db stopped\n"), "{out}");
    let pgid = read_pid(&pid_file);
    assert!(group_gone(pgid), "service group {pgid} still exists");
    assert!(refuses(port), "port {port} still answers");
    fx.assert_cleaned_up();
}

#[tokio::test]
async fn services_become_ready_by_http_and_by_command() {
    let fx = Fixture::new();
    let port = free_port();
    let web = ServiceSpec {
        name: "web".into(),
        command: "exec python3 -m http.server ${{ env.PORT }} --bind 127.0.0.1".into(),
        env: BTreeMap::new(),
        ready: Some(Readiness::Http("http://127.0.0.1:${{ env.PORT }}/".into())),
        ready_timeout: HumanDuration::from_secs(30),
    };
    let flag = ServiceSpec {
        name: "flag".into(),
        command: "touch ready.flag; exec sleep 300".into(),
        env: BTreeMap::new(),
        ready: Some(Readiness::Command("test -f ready.flag".into())),
        ready_timeout: HumanDuration::from_secs(30),
    };
    let fetch = "python3 -c 'import urllib.request,sys; \
                 print(urllib.request.urlopen(sys.argv[1]).status)' \
                 http://127.0.0.1:${{ env.PORT }}/ && test -f ready.flag && echo flagged";
    let mut spec = job(vec![sh("fetch", fetch)]);
    spec.env = vars(&[("PORT", &port.to_string())]);
    spec.services = vec![web, flag];
    let (outcome, out) = fx.run(spec).await;
    assert_eq!(outcome, RunOutcome::succeeded(), "{out}");
    // The server logs each request, among the step's lines.
    let own = own_lines(&out);
    let step = own.iter().position(|l| *l == "==> step fetch");
    assert_eq!(
        step.and_then(|at| own.get(at + 1..at + 3)),
        Some(&["200", "flagged"][..]),
        "{out}"
    );
    // Stopped the last started first.
    let flag_stopped = out.find("==> service flag stopped");
    let web_stopped = out.find("==> service web stopped");
    assert!(
        flag_stopped.is_some() && flag_stopped < web_stopped,
        "{out}"
    );
    assert!(refuses(port), "port {port} still answers");
    fx.assert_cleaned_up();
}

#[tokio::test]
async fn a_service_that_exits_at_once_fails_the_job() {
    let fx = Fixture::new();
    let marker = fx.outside("ran");
    let mut spec = job(vec![sh("step", &format!("touch '{}'", marker.display()))]);
    spec.services = vec![ServiceSpec {
        name: "db".into(),
        command: "echo giving up; exit 3".into(),
        env: BTreeMap::new(),
        ready: Some(Readiness::Tcp(format!("127.0.0.1:{}", free_port()))),
        ready_timeout: HumanDuration::from_secs(60),
    }];
    let (outcome, out) = fx.run(spec).await;
    assert_eq!(
        outcome,
        RunOutcome::failed(None, "service db exited with status 3 before it was ready")
    );
    assert_eq!(
        out,
        "==> service db started\n[service db] giving up\n\
         ==> service db exited with status 3 before it was ready\n"
    );
    assert!(!marker.exists(), "a step ran");
    fx.assert_cleaned_up();
}

#[tokio::test]
async fn a_service_never_ready_fails_after_its_ready_timeout_and_is_stopped() {
    let fx = Fixture::new();
    let pid_file = fx.outside("db.pid");
    let mut spec = job(vec![sh("step", "true")]);
    spec.services = vec![ServiceSpec {
        name: "db".into(),
        command: format!("echo $$ > '{}'; exec sleep 300", pid_file.display()),
        env: BTreeMap::new(),
        ready: Some(Readiness::Tcp(format!("127.0.0.1:{}", free_port()))),
        ready_timeout: HumanDuration::from_millis(300),
    }];
    let (outcome, out) = fx.run(spec).await;
    assert_eq!(
        outcome,
        RunOutcome::failed(None, "service db was not ready after 300ms")
    );
    assert!(!out.contains("==> step"), "{out}");
    assert!(out.ends_with("==> service db stopped\n"), "{out}");
    let pid = read_pid(&pid_file);
    assert!(group_gone(pid), "service {pid} survived");
    fx.assert_cleaned_up();
}

#[tokio::test]
async fn a_service_that_dies_during_the_steps_is_noted_not_an_error() {
    let fx = Fixture::new();
    let mut spec = job(vec![sh(
        "kill-db",
        // Waits on a pidfd for the service's end (a zombie counts as ended).
        "pid=$(cat db.pid); kill -9 \"$pid\"; python3 -c 'import os,select,sys; \
         select.select([os.pidfd_open(int(sys.argv[1]))], [], [])' \"$pid\"",
    )]);
    spec.services = vec![ServiceSpec {
        name: "db".into(),
        command: "echo $$ > db.pid.tmp && mv db.pid.tmp db.pid; exec sleep 300".into(),
        env: BTreeMap::new(),
        ready: Some(Readiness::Command("test -f db.pid".into())),
        ready_timeout: HumanDuration::from_secs(30),
    }];
    let (outcome, out) = fx.run(spec).await;
    assert_eq!(outcome, RunOutcome::succeeded(), "{out}");
    assert!(
        out.ends_with("==> service db had already ended by itself (signal 9)\n"),
        "{out}"
    );
}

#[tokio::test]
async fn cancel_during_a_step_kills_the_step_and_the_services() {
    let fx = Fixture::new();
    let port = free_port();
    let (db_pid, step_pid) = (fx.outside("db.pid"), fx.outside("step.pid"));
    let mut spec = job(vec![sh(
        "wait",
        &format!(
            "echo $$ > '{}'; echo step-running; exec sleep 300",
            step_pid.display()
        ),
    )]);
    spec.services = vec![tcp_service(port, &db_pid)];
    let output = OutputBuffer::new(1 << 20);
    let cancel = CancellationToken::new();
    let run =
        tokio::spawn(WorkflowExecutor.run(fx.request(spec, None), output.clone(), cancel.clone()));
    wait_for_output(&output, "step-running\n").await;
    cancel.cancel();
    let outcome = run.await.expect("run task");
    assert_eq!(outcome, RunOutcome::cancelled());
    let step = read_pid(&step_pid);
    assert!(process_ends(step), "step {step} survived");
    let db = read_pid(&db_pid);
    assert!(group_gone(db), "service group {db} still exists");
    assert!(text(&output).ends_with("==> cancelled\n==> service db stopped\n"));
    fx.assert_cleaned_up();
}

#[tokio::test]
async fn dropping_the_run_kills_the_services() {
    let fx = Fixture::new();
    let port = free_port();
    let db_pid = fx.outside("db.pid");
    let mut spec = job(vec![sh("wait", "echo step-running; exec sleep 300")]);
    spec.services = vec![tcp_service(port, &db_pid)];
    let output = OutputBuffer::new(1 << 20);
    let run = tokio::spawn(WorkflowExecutor.run(
        fx.request(spec, None),
        output.clone(),
        CancellationToken::new(),
    ));
    wait_for_output(&output, "step-running\n").await;
    run.abort();
    assert!(run.await.is_err_and(|err| err.is_cancelled()));
    let db = read_pid(&db_pid);
    assert!(process_ends(db), "service {db} survived");
}
