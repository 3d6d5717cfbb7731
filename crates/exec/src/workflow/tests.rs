//! The workflow job executor with real processes, real files and a real HTTP
//! server for the needs' artifacts.

use std::collections::BTreeMap;
use std::path::Path;

use rota_core::workflow::{
    ArtifactFile, ArtifactSpec, Readiness, ServiceSpec, Step, WorkflowJobSpec,
};
use rota_core::{ExecStatus, ExecutorSpec, HumanDuration, ShellSpec};
use tokio_util::sync::CancellationToken;
use ulid::Ulid;

use super::*;
use crate::{test_request, ArtifactInput};

fn shell(command: &str) -> ExecutorSpec {
    ExecutorSpec::Shell(ShellSpec {
        command: command.into(),
        args: None,
        env: BTreeMap::new(),
        cwd: None,
    })
}

fn step(name: &str, command: &str) -> Step {
    Step {
        name: name.into(),
        executor: shell(command),
    }
}

fn job(steps: Vec<Step>) -> WorkflowJobSpec {
    WorkflowJobSpec {
        workflow: "ci".into(),
        job: "test".into(),
        env: BTreeMap::from([("GREETING".to_string(), "hello".to_string())]),
        steps,
        services: vec![],
        artifacts: vec![],
        needs: vec![],
    }
}

struct Run {
    outcome: RunOutcome,
    output: String,
    ctx: WorkflowContext,
}

fn context(root: &Path) -> WorkflowContext {
    WorkflowContext {
        run: Ulid::from_parts(1_700_000_000_000, 7),
        workspace: root.join("ws/attempt-1"),
        artifacts_dir: root.join("artifacts/run"),
        inputs_dir: root.join("ws/attempt-1.inputs"),
        inputs: vec![],
    }
}

async fn run_in(root: &Path, spec: WorkflowJobSpec, ctx: WorkflowContext) -> Run {
    run_with(root, spec, ctx, CancellationToken::new()).await
}

async fn run_with(
    _root: &Path,
    spec: WorkflowJobSpec,
    ctx: WorkflowContext,
    cancel: CancellationToken,
) -> Run {
    let mut req = test_request(ExecutorSpec::WorkflowJob(Box::new(spec)), None);
    req.workflow = Some(ctx.clone());
    let output = OutputBuffer::new(1 << 20);
    let outcome = WorkflowExecutor.run(req, output.clone(), cancel).await;
    let (bytes, _) = output.snapshot();
    Run {
        outcome,
        output: String::from_utf8_lossy(&bytes).into_owned(),
        ctx,
    }
}

fn sha256_of(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn steps_run_in_order_in_the_workspace_and_the_first_failure_ends_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("marker");
    let spec = job(vec![
        step("where", "pwd > here; echo \"$ROTA_WORKSPACE $ROTA_RUN $ROTA_WORKFLOW ${{ env.GREETING }} $GREETING\""),
        step("check", "test \"$(cat here)\" = \"$ROTA_WORKSPACE\" && echo same"),
        step("fail", "echo failing; exit 3"),
        step("never", &format!("touch {}", marker.display())),
    ]);
    let run = run_in(tmp.path(), spec, context(tmp.path())).await;
    assert_eq!(run.outcome.status, ExecStatus::Failed, "{}", run.output);
    assert_eq!(run.outcome.exit_code, Some(3));
    assert_eq!(
        run.outcome.error.as_deref(),
        Some("step fail: exit status 3")
    );
    assert!(!marker.exists(), "a step after the failure ran");
    let ws = run.ctx.workspace.to_string_lossy().into_owned();
    assert!(
        run.output
            .contains(&format!("{ws} {} ci hello hello", run.ctx.run)),
        "{}",
        run.output
    );
    assert!(
        run.output.contains("==> step check\nsame\n"),
        "{}",
        run.output
    );
    assert!(!run.ctx.workspace.exists(), "the workspace is removed");
    assert!(!run.ctx.inputs_dir.exists());
}

#[tokio::test]
async fn an_unknown_variable_fails_the_step_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let run = run_in(
        tmp.path(),
        job(vec![step("migrate", "echo ${{ env.NOPE }}")]),
        context(tmp.path()),
    )
    .await;
    assert_eq!(
        run.outcome.error.as_deref(),
        Some("step migrate: ${{ env.NOPE }} is not set (set: GREETING)")
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn service(name: &str, command: &str, ready: Option<Readiness>) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        command: command.into(),
        env: BTreeMap::new(),
        ready,
        ready_timeout: HumanDuration::from_millis(20_000),
    }
}

fn listener_script(port: u16) -> String {
    format!(
        "exec python3 -c 'import socket,time\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ntime.sleep(0.3); s.bind((\"127.0.0.1\", {port})); s.listen(16); print(\"listening\", flush=True)\nwhile True: s.accept()[0].close()'"
    )
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test]
async fn a_service_is_ready_before_the_steps_and_gone_after_them() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut spec = job(vec![step(
        "connect",
        &format!("python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port})); print(\"connected\")'"),
    )]);
    spec.services = vec![service(
        "db",
        &listener_script(port),
        Some(Readiness::Tcp(format!("127.0.0.1:{port}"))),
    )];
    let run = run_in(tmp.path(), spec, context(tmp.path())).await;
    assert_eq!(run.outcome.status, ExecStatus::Succeeded, "{}", run.output);
    assert!(
        run.output.contains("==> service db ready"),
        "{}",
        run.output
    );
    assert!(
        run.output.contains("[service db] listening"),
        "{}",
        run.output
    );
    assert!(run.output.contains("connected"), "{}", run.output);
    assert!(
        run.output.contains("==> service db stopped"),
        "{}",
        run.output
    );
    assert!(!port_open(port), "the service still listens");
}

#[tokio::test]
async fn a_service_that_exits_or_is_never_ready_fails_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = job(vec![step("never", "true")]);
    spec.services = vec![service(
        "db",
        "exit 3",
        Some(Readiness::Tcp("127.0.0.1:1".into())),
    )];
    let run = run_in(tmp.path(), spec, context(tmp.path())).await;
    assert_eq!(
        run.outcome.error.as_deref(),
        Some("service db exited with status 3 before it was ready")
    );

    let mut spec = job(vec![step("never", "true")]);
    let mut slow = service("db", "sleep 30", Some(Readiness::Command("false".into())));
    slow.ready_timeout = HumanDuration::from_millis(300);
    spec.services = vec![slow];
    let run = run_in(tmp.path(), spec, context(tmp.path())).await;
    assert_eq!(
        run.outcome.error.as_deref(),
        Some("service db was not ready after 300ms")
    );
    assert!(!run.output.contains("==> step never"), "{}", run.output);
}

#[tokio::test]
async fn a_cancel_stops_the_step_and_the_services() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let started = tmp.path().join("started");
    let mut spec = job(vec![step(
        "wait",
        &format!("touch {}; sleep 30", started.display()),
    )]);
    spec.services = vec![service(
        "db",
        &listener_script(port),
        Some(Readiness::Tcp(format!("127.0.0.1:{port}"))),
    )];
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let watched = started.clone();
    tokio::spawn(async move {
        // The step's own file says it runs; cancel then.
        while !watched.exists() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        trigger.cancel();
    });
    let run = run_with(tmp.path(), spec, context(tmp.path()), cancel).await;
    assert_eq!(run.outcome.status, ExecStatus::Cancelled, "{}", run.output);
    assert!(!port_open(port), "the service outlived the cancel");
}

#[tokio::test]
async fn artifacts_are_kept_with_sizes_and_hashes_and_fetched_by_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = job(vec![step(
        "build",
        "mkdir -p cov/html && printf 'lines: 87%%\\n' > cov/summary.txt && printf '<html/>' > cov/html/index.html && echo done > report.txt",
    )]);
    spec.artifacts = vec![
        ArtifactSpec {
            name: "coverage".into(),
            path: "cov/".into(),
        },
        ArtifactSpec {
            name: "report".into(),
            path: "report.txt".into(),
        },
    ];
    let ctx = context(tmp.path());
    let run = run_in(tmp.path(), spec, ctx.clone()).await;
    assert_eq!(run.outcome.status, ExecStatus::Succeeded, "{}", run.output);
    let records = &run.outcome.artifacts;
    assert_eq!(records.len(), 2);
    let coverage = &records[0];
    assert_eq!(
        (
            coverage.name.as_str(),
            coverage.job.as_str(),
            coverage.node.as_str()
        ),
        ("coverage", "test", "n1")
    );
    let paths: Vec<&str> = coverage.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["html/index.html", "summary.txt"]);
    let kept = ctx.artifacts_dir.join("coverage/summary.txt");
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "lines: 87%\n");
    assert_eq!(coverage.files[1].sha256, sha256_of(&kept));
    assert_eq!(coverage.files[1].size, 11);
    assert_eq!(coverage.size, 11 + 7);
    assert_eq!(records[1].files[0].path, "report.txt");
    assert!(
        run.output
            .contains("==> artifact coverage: 2 files, 18 bytes kept"),
        "{}",
        run.output
    );

    // A later job fetches them from an HTTP server that serves the kept files.
    let root = ctx.artifacts_dir.clone();
    let app = axum::Router::new().route(
        "/coverage/{*path}",
        axum::routing::get(
            move |axum::extract::Path(path): axum::extract::Path<String>| {
                let file = root.join("coverage").join(path);
                async move { std::fs::read(file).map_err(|_| axum::http::StatusCode::NOT_FOUND) }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/coverage", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut downstream = context(&tmp.path().join("down"));
    downstream.inputs = vec![ArtifactInput {
        name: "coverage".into(),
        base_url: base.clone(),
        files: coverage.files.clone(),
    }];
    let reader = job(vec![step("read", "cat \"$ROTA_ARTIFACTS_DIR/coverage/summary.txt\" \"$ROTA_ARTIFACTS_DIR/coverage/html/index.html\"")]);
    let run = run_in(tmp.path(), reader.clone(), downstream.clone()).await;
    assert_eq!(run.outcome.status, ExecStatus::Succeeded, "{}", run.output);
    assert!(run.output.contains("lines: 87%\n<html/>"), "{}", run.output);
    assert!(run
        .output
        .contains("==> artifact coverage: 2 files, 18 bytes received"));

    // A file that does not match its record fails the job, naming it.
    let mut wrong = downstream;
    wrong.inputs[0].files[1] = ArtifactFile {
        sha256: "00".repeat(32),
        ..coverage.files[1].clone()
    };
    let run = run_in(tmp.path(), reader, wrong).await;
    let error = run.outcome.error.unwrap_or_default();
    assert!(
        error.starts_with("artifact coverage: summary.txt does not match its record"),
        "{error}"
    );
}

#[tokio::test]
async fn a_missing_artifact_path_fails_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = job(vec![step("build", "true")]);
    spec.artifacts = vec![ArtifactSpec {
        name: "coverage".into(),
        path: "coverage/".into(),
    }];
    let run = run_in(tmp.path(), spec, context(tmp.path())).await;
    assert_eq!(
        run.outcome.error.as_deref(),
        Some("artifact coverage: coverage/ does not exist in the workspace")
    );
}
