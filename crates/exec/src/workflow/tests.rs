//! Tests with real processes, real services on the loopback interface and a real
//! HTTP server for the artifacts a job receives. This module runs steps; services
//! and artifacts have their own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use rota_core::workflow::{Step, WorkflowJobSpec};
use rota_core::{ExecStatus, ExecutorSpec, HttpSpec, ShellSpec};
use tokio_util::sync::CancellationToken;
use ulid::Ulid;

use super::WorkflowExecutor;
use crate::{test_request, Executor, OutputBuffer, RunOutcome, RunRequest, WorkflowContext};

mod artifacts;
mod services;

/// A temporary directory holding an attempt's directories.
struct Fixture {
    dir: tempfile::TempDir,
    ctx: WorkflowContext,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical tempdir");
        let ctx = WorkflowContext {
            run: Ulid::from_parts(1_700_000_000_000, 7),
            workspace: root.join("work/ws-1"),
            artifacts_dir: root.join("artifacts"),
            inputs_dir: root.join("work/inputs-1"),
            inputs: Vec::new(),
            fetch_headers: Vec::new(),
        };
        Self { dir, ctx }
    }

    /// A path outside the attempt's directories.
    fn outside(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn request(&self, spec: WorkflowJobSpec, timeout: Option<Duration>) -> RunRequest {
        let mut req = test_request(ExecutorSpec::WorkflowJob(Box::new(spec)), timeout);
        req.workflow = Some(self.ctx.clone());
        req
    }

    /// Runs the job; the outcome's `usage` is left out (see
    /// `usage_adds_up_the_shell_steps` for it), so that outcomes compare whole.
    async fn run(&self, spec: WorkflowJobSpec) -> (RunOutcome, String) {
        let (outcome, out) = self.run_with_usage(spec).await;
        (outcome.with_usage(None), out)
    }

    async fn run_with_usage(&self, spec: WorkflowJobSpec) -> (RunOutcome, String) {
        let output = OutputBuffer::new(1 << 20);
        let outcome = WorkflowExecutor
            .run(
                self.request(spec, None),
                output.clone(),
                CancellationToken::new(),
            )
            .await;
        (outcome, text(&output))
    }

    fn assert_cleaned_up(&self) {
        assert!(!self.ctx.workspace.exists(), "workspace left behind");
        assert!(!self.ctx.inputs_dir.exists(), "inputs left behind");
    }
}

fn text(output: &OutputBuffer) -> String {
    String::from_utf8_lossy(&output.snapshot().0).into_owned()
}

/// The lines of `out` that are not services' (which come in whenever they come).
fn own_lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| !l.starts_with("[service "))
        .collect()
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sh(name: &str, command: &str) -> Step {
    Step {
        name: name.into(),
        executor: ExecutorSpec::Shell(ShellSpec {
            command: command.into(),
            args: None,
            env: BTreeMap::new(),
            cwd: None,
        }),
    }
}

fn job(steps: Vec<Step>) -> WorkflowJobSpec {
    WorkflowJobSpec {
        workflow: "wf".into(),
        job: "build".into(),
        env: BTreeMap::new(),
        steps,
        services: Vec::new(),
        artifacts: Vec::new(),
        needs: Vec::new(),
    }
}

/// Serves `app` on the loopback interface.
async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn steps_run_in_order_in_the_workspace_with_the_job_env() {
    let fx = Fixture::new();
    let mut spec = job(vec![
        sh("where", "pwd -P > where.txt"),
        sh(
            "show",
            "cat where.txt; printf '%s|%s|%s|%s|%s|%s\\n' \"$ROTA_WORKSPACE\" \"$ROTA_RUN\" \
             \"$ROTA_WORKFLOW\" \"$ROTA_ARTIFACTS_DIR\" \"$ROTA_JOB\" \"$GREETING\"",
        ),
    ]);
    spec.env = vars(&[("GREETING", "hello")]);
    let (outcome, out) = fx.run(spec).await;
    assert_eq!(outcome, RunOutcome::succeeded(), "{out}");
    let ws = fx.ctx.workspace.display();
    let expected = format!(
        "==> step where\n==> step show\n{ws}\n{ws}|{}|wf|{}|test-job|hello\n",
        fx.ctx.run,
        fx.ctx.inputs_dir.display()
    );
    assert_eq!(out, expected);
    fx.assert_cleaned_up();
}

#[tokio::test]
async fn usage_adds_up_the_shell_steps() {
    let fx = Fixture::new();
    let burn = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done";
    let (one, out) = fx.run_with_usage(job(vec![sh("a", burn)])).await;
    assert_eq!(one.status, ExecStatus::Succeeded, "{out}");
    let one = one.usage.expect("usage of one step");
    assert!(one.cpu_user_ms > 0, "{one:?}");
    let fx = Fixture::new();
    let (three, out) = fx
        .run_with_usage(job(vec![sh("a", burn), sh("b", burn), sh("c", "exit 2")]))
        .await;
    assert_eq!(three.status, ExecStatus::Failed, "{out}");
    // Kept when a step fails (how steps add up: ResourceUsage::then).
    let three = three.usage.expect("usage of the steps");
    assert!(three.cpu_user_ms > 0, "{three:?}");
}

#[tokio::test]
async fn a_failing_step_stops_the_job_and_names_the_step() {
    let fx = Fixture::new();
    let marker = fx.outside("after-ran");
    let spec = job(vec![
        sh("first", "echo one"),
        sh("check", "echo failing; exit 4"),
        sh("after", &format!("touch '{}'", marker.display())),
    ]);
    let (outcome, out) = fx.run(spec).await;
    assert_eq!(
        outcome,
        RunOutcome::failed(Some(4), "step check: exit status 4")
    );
    assert!(!marker.exists(), "a step after the failing one ran");
    assert_eq!(
        out,
        "==> step first\none\n==> step check\nfailing\n==> step check failed: exit status 4\n"
    );
    fx.assert_cleaned_up();
}

#[tokio::test]
async fn substitution_reaches_shell_and_http_steps() {
    let fx = Fixture::new();
    let echo = |headers: HeaderMap, body: String| async move {
        let token = headers.get("x-token").and_then(|v| v.to_str().ok());
        format!("token={} body={body}", token.unwrap_or("-"))
    };
    let app = Router::new().route("/deploy/{target}", post(echo));
    let addr = serve(app).await;
    let sub = fx.outside("sub");
    std::fs::create_dir(&sub).expect("mkdir");
    let mut spec = job(vec![
        Step {
            name: "args".into(),
            executor: ExecutorSpec::Shell(ShellSpec {
                command: "sh".into(),
                args: Some(vec![
                    "-c".into(),
                    "printf '%s|%s|%s\\n' \"$1\" \"$LEVEL\" \"$(pwd -P)\"".into(),
                    "argv0".into(),
                    "${{ env.NAME }} x".into(),
                ]),
                env: vars(&[("LEVEL", "${{env.NAME}}-3")]),
                cwd: Some("${{ env.DIR }}".into()),
            }),
        },
        Step {
            name: "deploy".into(),
            executor: ExecutorSpec::Http(HttpSpec {
                method: "POST".into(),
                url: "${{ env.API }}/deploy/prod".into(),
                headers: vars(&[("X-Token", "t-${{ env.TOKEN }}")]),
                body: Some("{\"name\": \"${{ env.NAME }}\"}".into()),
                expect_status: vec![],
            }),
        },
    ]);
    spec.env = vars(&[
        ("API", &format!("http://{addr}")),
        ("DIR", &sub.to_string_lossy()),
        ("NAME", "rota"),
        ("TOKEN", "s3cret"),
    ]);
    let (outcome, out) = fx.run(spec).await;
    assert_eq!(outcome, RunOutcome::succeeded(), "{out}");
    assert_eq!(
        out,
        format!(
            "==> step args\nrota x|rota-3|{}\n==> step deploy\nHTTP 200\ntoken=t-s3cret body={{\"name\": \"rota\"}}",
            sub.display()
        )
    );
}

#[tokio::test]
async fn an_unknown_variable_fails_the_step_before_it_runs() {
    let fx = Fixture::new();
    let marker = fx.outside("ran");
    let mut spec = job(vec![
        sh("first", &format!("touch '{}'", marker.display())),
        sh("migrate", "migrate --url ${{ env.NOPE }}"),
    ]);
    spec.env = vars(&[("B", "2"), ("A", "1")]);
    let (outcome, _) = fx.run(spec).await;
    assert_eq!(
        outcome,
        RunOutcome::failed(None, "step migrate: ${{ env.NOPE }} is not set (set: A, B)")
    );
    assert!(marker.exists(), "the step before ran");
    fx.assert_cleaned_up();
}

#[tokio::test]
async fn the_timeout_covers_the_whole_job() {
    let fx = Fixture::new();
    let spec = job(vec![sh("slow", "exec sleep 300")]);
    let output = OutputBuffer::new(1 << 20);
    let req = fx.request(spec, Some(Duration::from_millis(500)));
    let outcome = WorkflowExecutor
        .run(req, output.clone(), CancellationToken::new())
        .await;
    assert_eq!(outcome, RunOutcome::timed_out(Duration::from_millis(500)));
    assert!(text(&output).ends_with("==> timed out after 500ms\n"));
    fx.assert_cleaned_up();
}

#[tokio::test]
async fn what_cannot_run_is_refused() {
    let fx = Fixture::new();
    let mut trigger = job(Vec::new());
    trigger.job = "@trigger".into();
    let (outcome, _) = fx.run(trigger).await;
    assert_eq!(
        outcome,
        RunOutcome::failed(None, "the trigger of workflow wf does not run as a job")
    );
    let (outcome, _) = fx.run(job(Vec::new())).await;
    assert_eq!(outcome, RunOutcome::failed(None, "job has no steps"));
    assert!(!fx.ctx.workspace.exists());

    let mut req = fx.request(job(vec![sh("step", "true")]), None);
    req.workflow = None;
    let outcome = WorkflowExecutor
        .run(req, OutputBuffer::new(100), CancellationToken::new())
        .await;
    assert_eq!(
        outcome,
        RunOutcome::failed(
            None,
            "the workflow context is missing: a workflow job needs its workspace and artifact directories"
        )
    );

    let req = test_request(
        ExecutorSpec::Shell(ShellSpec {
            command: "true".into(),
            args: None,
            env: BTreeMap::new(),
            cwd: None,
        }),
        None,
    );
    let outcome = WorkflowExecutor
        .run(req, OutputBuffer::new(100), CancellationToken::new())
        .await;
    assert_eq!(
        outcome,
        RunOutcome::failed(None, "the workflow_job executor cannot run a shell spec")
    );
}
