//! Tests with real processes. The helpers that watch output and processes are
//! shared with the workflow executor's tests.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use rota_core::{ExecStatus, ExecutorSpec, ShellSpec};
use tokio_util::sync::CancellationToken;

use super::ShellExecutor;
use crate::{test_request, Executor, OutputBuffer, RunOutcome};

fn sh(command: &str) -> ShellSpec {
    ShellSpec {
        command: command.to_string(),
        args: None,
        env: BTreeMap::new(),
        cwd: None,
    }
}

fn direct(program: &str, args: &[&str]) -> ShellSpec {
    ShellSpec {
        command: program.to_string(),
        args: Some(args.iter().map(|a| a.to_string()).collect()),
        env: BTreeMap::new(),
        cwd: None,
    }
}

async fn run_with(
    spec: ShellSpec,
    timeout: Option<Duration>,
    max_bytes: u64,
    cancel: CancellationToken,
) -> (RunOutcome, OutputBuffer) {
    let output = OutputBuffer::new(max_bytes);
    let req = test_request(ExecutorSpec::Shell(spec), timeout);
    let outcome = ShellExecutor.run(req, output.clone(), cancel).await;
    (outcome, output)
}

async fn run(spec: ShellSpec) -> (RunOutcome, String) {
    let (outcome, output) = run_with(spec, None, 1 << 20, CancellationToken::new()).await;
    (outcome, text(&output))
}

fn text(output: &OutputBuffer) -> String {
    String::from_utf8_lossy(&output.snapshot().0).into_owned()
}

/// Waits for the output to hold `needle` (an event: each new chunk wakes us).
pub(crate) async fn wait_for_output(output: &OutputBuffer, needle: &str) {
    let mut seen = Vec::new();
    loop {
        let (chunk, closed) = output.read_from(seen.len()).await;
        seen.extend_from_slice(&chunk);
        if String::from_utf8_lossy(&seen).contains(needle) {
            return;
        }
        assert!(
            !closed,
            "output ended without {needle:?}: {:?}",
            String::from_utf8_lossy(&seen)
        );
    }
}

pub(crate) fn read_pid(path: &Path) -> libc::pid_t {
    let text = std::fs::read_to_string(path).expect("pid file");
    text.trim().parse().expect("pid")
}

/// Whether the process `pid` has ended (or ends within a generous bound, which only
/// keeps a regression from hanging the suite). A pidfd becomes readable when the
/// process exits, which also covers a zombie that nobody reaps, where
/// `kill(pid, 0)` would still succeed.
pub(crate) fn process_ends(pid: libc::pid_t) -> bool {
    // SAFETY: plain syscalls on integers; the fd is closed below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
    }
    let fd = libc::c_int::try_from(fd).expect("fd fits");
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ready = loop {
        // SAFETY: one valid pollfd; fd is ours.
        let ready = unsafe { libc::poll(&mut poll, 1, 30_000) };
        // The runtime's SIGCHLD handler interrupts the wait whenever a child of
        // this test process (from any test) ends.
        if ready < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break ready;
    };
    // SAFETY: fd is ours and closed once.
    unsafe { libc::close(fd) };
    ready == 1
}

fn process_runs(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[tokio::test]
async fn exit_zero_succeeds() {
    let (outcome, _) = run(sh("true")).await;
    assert_eq!(outcome.status, ExecStatus::Succeeded);
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(outcome.error, None);
}

#[tokio::test]
async fn an_unreachable_timeout_is_no_timeout() {
    let (outcome, _) = run_with(
        sh("true"),
        Some(Duration::MAX),
        100,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(outcome.status, ExecStatus::Succeeded);
}

#[tokio::test]
async fn non_zero_exit_fails_with_the_code() {
    let (outcome, _) = run(sh("exit 3")).await;
    assert_eq!(
        outcome.clone().with_usage(None),
        RunOutcome::failed(Some(3), "exit status 3"),
        "{outcome:?}"
    );
    assert!(outcome.usage.is_some(), "{outcome:?}");
}

#[tokio::test]
async fn death_by_signal_fails_without_code() {
    let (outcome, _) = run(sh("kill -9 $$")).await;
    assert_eq!(
        outcome.with_usage(None),
        RunOutcome::failed(None, "killed by signal 9")
    );
}

#[tokio::test]
async fn environment_names_the_run() {
    let mut spec = sh(
        "printf '%s|%s|%s|%s|%s|%s|%s' \"$ROTA_JOB\" \"$ROTA_EXECUTION_ID\" \
         \"$ROTA_SCHEDULED_AT\" \"$ROTA_ATTEMPT\" \"$ROTA_NODE\" \"$EXTRA\" \"$PATH\"",
    );
    spec.env.insert("EXTRA".into(), "extra value".into());
    // A spec cannot override who the run is.
    spec.env.insert("ROTA_JOB".into(), "impostor".into());
    let (outcome, out) = run(spec).await;
    assert_eq!(outcome.status, ExecStatus::Succeeded, "{outcome:?}");
    let req = test_request(ExecutorSpec::Shell(sh("")), None);
    let path = std::env::var("PATH").unwrap_or_default();
    assert_eq!(
        out,
        format!(
            "test-job|{}|2026-11-22T10:00:01Z|1|n1|extra value|{path}",
            req.execution_id
        )
    );
}

#[tokio::test]
async fn scheduled_at_keeps_its_precision() {
    let output = OutputBuffer::new(1000);
    let mut req = test_request(
        ExecutorSpec::Shell(sh("printf %s \"$ROTA_SCHEDULED_AT\"")),
        None,
    );
    req.scheduled_at += chrono::Duration::milliseconds(250);
    let outcome = ShellExecutor
        .run(req, output.clone(), CancellationToken::new())
        .await;
    assert_eq!(outcome.status, ExecStatus::Succeeded);
    assert_eq!(text(&output), "2026-11-22T10:00:01.250Z");
}

#[tokio::test]
async fn stdin_is_empty() {
    let (outcome, out) = run(sh("wc -c")).await;
    assert_eq!(outcome.status, ExecStatus::Succeeded);
    assert_eq!(out.trim(), "0");
}

#[tokio::test]
async fn runs_in_the_working_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = sh("pwd -P");
    spec.cwd = Some(dir.path().to_string_lossy().into_owned());
    let (outcome, out) = run(spec).await;
    assert_eq!(outcome.status, ExecStatus::Succeeded);
    let expected = dir.path().canonicalize().expect("canonical");
    assert_eq!(out.trim_end(), expected.to_string_lossy());
}

#[tokio::test]
async fn missing_working_directory_fails_naming_it() {
    let mut spec = sh("true");
    spec.cwd = Some("/nonexistent/rota-test-dir".into());
    let (outcome, _) = run(spec).await;
    assert_eq!(outcome.status, ExecStatus::Failed);
    assert_eq!(outcome.exit_code, None);
    let error = outcome.error.unwrap_or_default();
    assert!(
        error.starts_with("working directory \"/nonexistent/rota-test-dir\" is not usable: "),
        "{error}"
    );
    assert!(error.contains("os error 2"), "{error}");
}

#[tokio::test]
async fn missing_program_fails_with_the_os_error() {
    let (outcome, _) = run(direct("/nonexistent/rota-test-program", &[])).await;
    assert_eq!(outcome.status, ExecStatus::Failed);
    assert_eq!(outcome.exit_code, None);
    let error = outcome.error.unwrap_or_default();
    assert!(
        error.starts_with("cannot start \"/nonexistent/rota-test-program\": "),
        "{error}"
    );
    assert!(error.contains("os error 2"), "{error}");
}

#[tokio::test]
async fn args_are_passed_without_a_shell() {
    let (outcome, out) = run(direct("printf", &["%s|%s", "a b", "$HOME `id`"])).await;
    assert_eq!(outcome.status, ExecStatus::Succeeded, "{outcome:?}");
    assert_eq!(out, "a b|$HOME `id`");
}

#[tokio::test]
async fn captures_stdout_and_stderr() {
    let (outcome, out) = run(sh("echo to-out; echo to-err >&2; echo more-out")).await;
    assert_eq!(outcome.status, ExecStatus::Succeeded);
    let mut lines: Vec<&str> = out.lines().collect();
    // The two pipes are read concurrently, so only each stream's own order is fixed.
    let out_lines: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("out"))
        .collect();
    assert_eq!(out_lines, ["to-out", "more-out"]);
    lines.sort_unstable();
    assert_eq!(lines, ["more-out", "to-err", "to-out"]);
}

#[tokio::test]
async fn output_is_cut_at_the_limit_and_the_process_still_finishes() {
    // 200 kB is more than a pipe holds: the process only finishes if reading goes
    // on after the buffer is full.
    let (outcome, output) = run_with(
        sh("head -c 200000 /dev/zero | tr '\\0' x; echo done >&2"),
        None,
        1000,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(outcome.status, ExecStatus::Succeeded, "{outcome:?}");
    let (bytes, truncated) = output.snapshot();
    assert!(truncated);
    assert_eq!(bytes.len(), 1000);
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("grandchild.pid");
    let script = format!("sleep 300 & echo $! > '{}'; sleep 30", pid_file.display());
    // Long enough for the shell to write the pid file even on a loaded machine.
    let (outcome, _) = run_with(
        sh(&script),
        Some(Duration::from_secs(2)),
        1000,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(outcome.status, ExecStatus::TimedOut);
    assert_eq!(outcome.exit_code, None);
    assert_eq!(outcome.error.as_deref(), Some("timed out after 2s"));
    let grandchild = read_pid(&pid_file);
    assert!(process_ends(grandchild), "grandchild {grandchild} survived");
}

#[tokio::test]
async fn a_group_ignoring_sigterm_gets_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("grandchild.pid");
    // An ignored signal stays ignored across fork and exec: both the shell and its
    // background sleep shrug off SIGTERM.
    let script = format!(
        "trap '' TERM; sleep 300 & echo $! > '{}'; echo ready; wait",
        pid_file.display()
    );
    let cancel = CancellationToken::new();
    let output = OutputBuffer::new(1000);
    let req = test_request(ExecutorSpec::Shell(sh(&script)), None);
    let run = tokio::spawn(ShellExecutor.run(req, output.clone(), cancel.clone()));
    wait_for_output(&output, "ready").await;
    cancel.cancel();
    let outcome = run.await.expect("run task");
    assert_eq!(outcome.with_usage(None), RunOutcome::cancelled());
    let grandchild = read_pid(&pid_file);
    assert!(process_ends(grandchild), "grandchild {grandchild} survived");
}

#[tokio::test]
async fn cancel_stops_the_run() {
    let cancel = CancellationToken::new();
    let output = OutputBuffer::new(1000);
    let req = test_request(ExecutorSpec::Shell(sh("echo started; exec sleep 30")), None);
    let run = tokio::spawn(ShellExecutor.run(req, output.clone(), cancel.clone()));
    wait_for_output(&output, "started").await;
    cancel.cancel();
    let outcome = run.await.expect("run task");
    assert_eq!(outcome.with_usage(None), RunOutcome::cancelled());
    assert_eq!(text(&output), "started\n");
}

#[tokio::test]
async fn cancelled_before_start_runs_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("ran");
    let cancel = CancellationToken::new();
    cancel.cancel();
    let (outcome, _) = run_with(
        sh(&format!("touch '{}'", marker.display())),
        None,
        100,
        cancel,
    )
    .await;
    assert_eq!(outcome, RunOutcome::cancelled());
    assert!(!marker.exists());
}

#[tokio::test]
async fn output_can_be_followed_while_the_process_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("gate");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    // The script blocks reading the fifo until the test writes to it.
    let script = format!(
        "echo first; read gate < '{}'; echo \"second $gate\"",
        fifo.display()
    );
    let output = OutputBuffer::new(1000);
    let req = test_request(ExecutorSpec::Shell(sh(&script)), None);
    let run = tokio::spawn(ShellExecutor.run(req, output.clone(), CancellationToken::new()));

    let (first, closed) = output.read_from(0).await;
    assert_eq!(first, Bytes::from_static(b"first\n"));
    assert!(!closed);
    assert!(!run.is_finished(), "the process waits on the fifo");

    // Opening a fifo for writing blocks until the reader opens it.
    tokio::task::spawn_blocking(move || std::fs::write(&fifo, "open\n"))
        .await
        .expect("writer task")
        .expect("write fifo");
    let (second, _) = output.read_from(first.len()).await;
    assert_eq!(second, Bytes::from_static(b"second open\n"));
    let outcome = run.await.expect("run task");
    assert_eq!(outcome.status, ExecStatus::Succeeded);
}

#[tokio::test]
async fn background_process_holding_the_pipes_does_not_hang_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("grandchild.pid");
    // The leader exits at once; its background child keeps stdout open.
    let script = format!("sleep 300 & echo $! > '{}'; echo done", pid_file.display());
    let (outcome, out) = run(sh(&script)).await;
    assert_eq!(outcome.status, ExecStatus::Succeeded, "{outcome:?}");
    assert_eq!(out, "done\n");
    let grandchild = read_pid(&pid_file);
    assert!(process_ends(grandchild), "grandchild {grandchild} survived");
}

#[tokio::test]
async fn dropping_the_run_kills_the_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("grandchild.pid");
    let script = format!(
        "sleep 300 & echo $! > '{}'; echo ready; wait",
        pid_file.display()
    );
    let output = OutputBuffer::new(1000);
    let req = test_request(ExecutorSpec::Shell(sh(&script)), None);
    let run = tokio::spawn(ShellExecutor.run(req, output.clone(), CancellationToken::new()));
    wait_for_output(&output, "ready").await;
    let grandchild = read_pid(&pid_file);
    assert!(process_runs(grandchild));
    run.abort();
    let ended = run.await;
    assert!(
        ended.as_ref().is_err_and(|err| err.is_cancelled()),
        "{ended:?}"
    );
    assert!(process_ends(grandchild), "grandchild {grandchild} survived");
}

#[tokio::test]
async fn refuses_another_kind_of_spec() {
    let req = test_request(
        ExecutorSpec::Record(rota_core::RecordSpec {
            path: "/dev/null".into(),
        }),
        None,
    );
    let outcome = ShellExecutor
        .run(req, OutputBuffer::new(10), CancellationToken::new())
        .await;
    assert_eq!(
        outcome,
        RunOutcome::failed(None, "the shell executor cannot run a record spec")
    );
}

/// Bytes a child must fill to show up in `max_rss_kib`: well above this process's
/// own peak, which the kernel charges every child with (and which the executor
/// therefore reports as unknown).
fn allocation_above_our_peak() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmHWM:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .expect("VmHWM");
    // Twice the peak, for what the other tests of this process add meanwhile.
    (2 * peak_kib + 64 * 1024) * 1024
}

#[tokio::test]
async fn usage_counts_the_cpu_and_memory_of_the_process_and_what_it_waited_for() {
    // A busy loop in the shell itself, then a child that fills a buffer (dd
    // allocates its block and reads /dev/zero into it, touching every page).
    let bytes = allocation_above_our_peak();
    let (outcome, output) = run(sh(&format!(
        "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; \
         dd if=/dev/zero of=/dev/null bs={bytes} count=1 2>/dev/null; echo done"
    )))
    .await;
    assert_eq!(
        outcome.status,
        ExecStatus::Succeeded,
        "{outcome:?} {output}"
    );
    let usage = outcome.usage.expect("usage of an exited process");
    assert!(usage.cpu_user_ms > 0, "{usage:?}");
    // The child's peak, though the shell itself stays small.
    assert!(
        usage.max_rss_kib.is_some_and(|kib| kib >= bytes / 1024),
        "{usage:?} after filling {bytes} bytes"
    );
}

#[tokio::test]
async fn usage_is_the_runs_own() {
    // A run that does next to nothing is not charged with what another one did,
    // nor with the memory of the process that started it.
    let bytes = allocation_above_our_peak();
    let busy = run(sh(&format!(
        "dd if=/dev/zero of=/dev/null bs={bytes} count=1 2>/dev/null"
    )));
    let idle = run(sh("true"));
    let ((busy, _), (idle, _)) = tokio::join!(busy, idle);
    let (busy, idle) = (busy.usage.expect("busy"), idle.usage.expect("idle"));
    assert!(
        busy.max_rss_kib.is_some_and(|kib| kib >= bytes / 1024),
        "{busy:?}"
    );
    assert_eq!(idle.max_rss_kib, None, "{idle:?}");
}
