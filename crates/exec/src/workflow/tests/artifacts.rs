//! Artifacts: the ones a job keeps and the ones it receives.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Path as UrlPath;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use rota_core::workflow::{ArtifactFile, ArtifactRecord, ArtifactSpec};
use rota_core::ExecStatus;

use super::{job, serve, sh, vars, Fixture};
use crate::{ArtifactInput, RunOutcome};

fn sha256sum(content: &str) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("printf %s \"$CONTENT\" | sha256sum")
        .env("CONTENT", content)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn artifacts_keep_files_and_directories() {
    let fx = Fixture::new();
    let make = "mkdir -p cov/sub out && printf alpha > cov/a.txt && \
                printf beta-beta > cov/sub/b.txt && ln -s a.txt cov/link && \
                printf report > out/report.txt";
    let mut spec = job(vec![sh("make", make)]);
    spec.artifacts = vec![
        ArtifactSpec {
            name: "coverage".into(),
            path: "cov/".into(),
        },
        ArtifactSpec {
            name: "report".into(),
            path: "out/report.txt".into(),
        },
    ];
    let (outcome, out) = fx.run(spec).await;
    assert_eq!(outcome.status, ExecStatus::Succeeded, "{outcome:?} {out}");
    let file = |path: &str, content: &str| ArtifactFile {
        path: path.into(),
        size: content.len() as u64,
        sha256: sha256sum(content),
    };
    let record = |name: &str, files: Vec<ArtifactFile>| ArtifactRecord {
        name: name.into(),
        job: "build".into(),
        node: "n1".into(),
        size: files.iter().map(|f| f.size).sum(),
        files,
    };
    assert_eq!(
        outcome.artifacts,
        vec![
            record(
                "coverage",
                vec![file("a.txt", "alpha"), file("sub/b.txt", "beta-beta")]
            ),
            record("report", vec![file("report.txt", "report")]),
        ]
    );
    let kept = |path: &str| std::fs::read_to_string(fx.ctx.artifacts_dir.join(path)).ok();
    assert_eq!(kept("coverage/a.txt").as_deref(), Some("alpha"));
    assert_eq!(kept("coverage/sub/b.txt").as_deref(), Some("beta-beta"));
    assert_eq!(kept("report/report.txt").as_deref(), Some("report"));
    assert!(!fx.ctx.artifacts_dir.join("coverage/link").exists());
    assert!(
        out.contains("==> artifact coverage: skipped link (a symbolic link, not a regular file)\n"),
        "{out}"
    );
    assert!(
        out.contains("==> artifact coverage: 2 files, 14 bytes kept\n"),
        "{out}"
    );
    assert!(
        out.contains("==> artifact report: 1 files, 6 bytes kept\n"),
        "{out}"
    );
    fx.assert_cleaned_up();
}

#[tokio::test]
async fn a_missing_artifact_fails_the_job() {
    let fx = Fixture::new();
    let mut spec = job(vec![sh("make", "true")]);
    spec.artifacts = vec![ArtifactSpec {
        name: "coverage".into(),
        path: "coverage/".into(),
    }];
    let (outcome, _) = fx.run(spec).await;
    assert_eq!(
        outcome,
        RunOutcome::failed(
            None,
            "artifact coverage: coverage/ does not exist in the workspace"
        )
    );
    fx.assert_cleaned_up();
}

#[tokio::test]
async fn an_artifact_path_outside_the_workspace_is_refused() {
    let fx = Fixture::new();
    let outside = fx.outside("secret");
    std::fs::write(&outside, "secret").expect("write");
    for path in ["../../secret".to_string(), outside.display().to_string()] {
        let mut spec = job(vec![sh("make", "true")]);
        spec.artifacts = vec![ArtifactSpec {
            name: "leak".into(),
            path: path.clone(),
        }];
        let (outcome, _) = fx.run(spec).await;
        let expected = format!(
            "artifact leak: {path:?} is not a relative path inside the workspace, without .."
        );
        assert_eq!(outcome, RunOutcome::failed(None, expected));
        assert!(!fx.ctx.artifacts_dir.join("leak").exists());
    }
}

/// Serves `files` under `/files/{path}`.
async fn file_server(files: &[(&str, &str)]) -> SocketAddr {
    let files: Arc<BTreeMap<String, String>> = Arc::new(vars(files));
    let app = Router::new().route(
        "/files/{*path}",
        get(move |UrlPath(path): UrlPath<String>| {
            let files = Arc::clone(&files);
            async move {
                match files.get(&path) {
                    Some(content) => Ok(content.clone()),
                    None => Err(StatusCode::NOT_FOUND),
                }
            }
        }),
    );
    serve(app).await
}

fn input(addr: SocketAddr, files: &[(&str, &str)]) -> ArtifactInput {
    ArtifactInput {
        name: "build".into(),
        base_url: format!("http://{addr}/files"),
        files: files
            .iter()
            .map(|(path, content)| ArtifactFile {
                path: path.to_string(),
                size: content.len() as u64,
                sha256: sha256sum(content),
            })
            .collect(),
    }
}

#[tokio::test]
async fn inputs_are_fetched_for_the_steps() {
    let files = [("dir/a b.txt", "first file"), ("bin/tool", "#!/bin/sh\n")];
    let addr = file_server(&files).await;
    let mut fx = Fixture::new();
    fx.ctx.inputs = vec![input(addr, &files)];
    let spec = job(vec![sh(
        "read",
        "cat \"$ROTA_ARTIFACTS_DIR/build/dir/a b.txt\"; echo; wc -c < \"$ROTA_ARTIFACTS_DIR/build/bin/tool\"",
    )]);
    let (outcome, out) = fx.run(spec).await;
    assert_eq!(outcome, RunOutcome::succeeded(), "{out}");
    assert_eq!(
        out,
        "==> artifact build: 2 files, 20 bytes fetched\n==> step read\nfirst file\n10\n"
    );
    fx.assert_cleaned_up();
}

#[tokio::test]
async fn a_received_file_that_does_not_match_its_record_fails_the_job() {
    let addr = file_server(&[("x.txt", "served"), ("y.txt", "yy")]).await;
    let marker_fx = Fixture::new();
    let marker = marker_fx.outside("ran");
    let step = sh("step", &format!("touch '{}'", marker.display()));
    let cases = [
        (
            {
                let mut input = input(addr, &[("x.txt", "served")]);
                input.files[0].sha256 = sha256sum("expected");
                input
            },
            format!(
                "artifact build: file x.txt: sha256 is {}, {} recorded",
                sha256sum("served"),
                sha256sum("expected")
            ),
        ),
        (
            input(addr, &[("y.txt", "y")]),
            "artifact build: file y.txt: 2 bytes received, 1 recorded".to_string(),
        ),
        (
            input(addr, &[("gone.txt", "")]),
            format!("artifact build: file gone.txt: GET http://{addr}/files/gone.txt answered 404"),
        ),
        (
            input(addr, &[("../x.txt", "")]),
            "artifact build: file path \"../x.txt\" is not a relative path inside the artifact \
             (no leading /, no empty, . or .. parts)"
                .to_string(),
        ),
    ];
    for (input, error) in cases {
        let mut fx = Fixture::new();
        fx.ctx.inputs = vec![input];
        let (outcome, out) = fx.run(job(vec![step.clone()])).await;
        assert_eq!(out, format!("==> {error}\n"));
        assert_eq!(outcome, RunOutcome::failed(None, error));
        assert!(!marker.exists(), "a step ran");
        fx.assert_cleaned_up();
    }
}
