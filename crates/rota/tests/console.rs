//! The web console in a real headless Chromium against real `rota server`
//! processes: signing in, running a job and following its output live, role
//! gating, a leader change seen on the cluster page, and a phone-sized screen.
//! Plus the console's files as the binary serves them.
//!
//! Every wait polls a condition in the page (or the API) with a deadline; nothing
//! asserts on timing. Screenshots go to `target/console-screenshots/`.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::time::Duration;

use browser::{Browser, Page};
use common::{
    agreed_leader, caught_up, client, eventually, free_port, launch_member, peers_arg, ports,
    Server,
};
use serde_json::{json, Value};
use tracing::info;

const DEADLINE: Duration = Duration::from_secs(60);
const ADMIN: &str = "admin-secret-for-the-console-test";

/// A single node that requires tokens, with the harness using the admin's.
async fn secured_server(dir: &std::path::Path) -> Server {
    let mut server = Server::launch(dir, free_port(), &["--auth-admin-token", ADMIN]);
    server.use_token(ADMIN);
    server.wait_ready().await;
    server
}

async fn create_token(server: &Server, name: &str, role: &str) -> String {
    let (code, body) = server
        .send(
            "POST",
            "/v1/tokens",
            Some(json!({"name": name, "role": role})),
        )
        .await;
    assert_eq!(code, 201, "create token {name}: {body}");
    body["token"].as_str().expect("token secret").to_string()
}

async fn put_job(server: &Server, name: &str, job: Value) {
    let (code, body) = server
        .send("PUT", &format!("/v1/jobs/{name}"), Some(job))
        .await;
    assert!(code == 201 || code == 200, "PUT job {name}: {body}");
}

/// Opens `url`, signs in with `token` on the sign-in page and waits until the
/// header shows `role`.
async fn sign_in(page: &Page, url: &str, token: &str, role: &str) {
    page.goto(url).await;
    page.wait_for("the sign-in page", "!!document.querySelector('#token')")
        .await;
    page.type_into("#token", token).await;
    page.click("#signin").await;
    page.wait_for(
        &format!("the header to show the {role} role"),
        &format!("document.querySelector('#role').dataset.role === '{role}'"),
    )
    .await;
}

/// Nothing sticks out past the right edge of a `width` wide screen (boxes that
/// scroll inside themselves, like a wide graph, are fine).
async fn assert_fits_the_screen(page: &Page, width: u64, what: &str) {
    let widths = page
        .eval(
            "(() => { const w = document.documentElement.clientWidth; \
               const wider = [...document.querySelectorAll('body *')] \
                 .filter(el => el.getBoundingClientRect().right > w + 0.5) \
                 .filter(el => !el.closest('.dag-wrap, pre')) \
                 .map(el => el.tagName + '.' + el.className); \
               return {inner: window.innerWidth, client: w, scroll: document.documentElement.scrollWidth, wider}; })()",
        )
        .await;
    assert_eq!(widths["inner"], json!(width), "{what}: {widths}");
    assert!(
        widths["scroll"].as_u64() <= widths["client"].as_u64(),
        "{what} scrolls sideways: {widths}"
    );
    assert_eq!(
        widths["wider"],
        json!([]),
        "{what}: elements past the right edge: {widths}"
    );
}

/// The page's errors beyond failed requests (a 401 before signing in, a
/// stream cut by a killed node are expected): uncaught exceptions, console
/// errors, and what the browser refused (such as a Content-Security-Policy
/// violation).
fn uncaught(page: &Page) -> Vec<String> {
    page.errors()
        .into_iter()
        .filter(|e| !e.starts_with("log: Failed to load resource"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_runs_a_job_and_follows_its_output_live() {
    let tmp = tempfile::tempdir().unwrap();
    let server = secured_server(&tmp.path().join("node")).await;
    let operator = create_token(&server, "ops", "operator").await;
    // The job prints a line, then waits for a file the test creates: the first
    // line must be on the page while the run still runs.
    let gate = tmp.path().join("gate");
    let command = format!(
        "echo first line; while [ ! -e '{}' ]; do sleep 0.1; done; echo second line",
        gate.display()
    );
    put_job(
        &server,
        "greet",
        json!({"schedule": {"manual": true}, "executor": {"type": "shell", "command": command}}),
    )
    .await;

    info!("--- sign in as the operator on the job's page");
    let browser = Browser::start().await;
    let page = browser.new_page().await;
    page.viewport(1280, 900, false).await;
    sign_in(
        &page,
        &format!("{}/#/jobs/greet", server.url),
        &operator,
        "operator",
    )
    .await;
    page.wait_for(
        "the job page",
        "document.querySelector('#job h1')?.textContent.includes('greet')",
    )
    .await;
    page.wait_for(
        "the live event stream",
        "document.querySelector('#live').dataset.state === 'live'",
    )
    .await;
    assert_eq!(
        page.eval("document.querySelectorAll('#job .timeline .tick').length")
            .await,
        json!(0)
    );

    info!("--- run now: the execution appears from the watch stream");
    page.click("#job button[data-action=run][data-job=greet]")
        .await;
    let id = page
        .wait_for(
            "the execution in the job's timeline",
            "document.querySelector('#job .timeline .tick')?.dataset.id",
        )
        .await;
    let id = id.as_str().unwrap().to_string();
    let history = server.history("greet", 10).await;
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["id"], json!(id));
    assert_eq!(history[0]["trigger"], "manual");

    info!("--- the execution's page follows its output while it runs");
    page.click(&format!("#job .timeline .tick[data-id='{id}']"))
        .await;
    page.wait_for(
        "the first line while the run still runs",
        "(() => { const o = document.querySelector('#output'); \
           const st = document.querySelector('#execution .page-head .chip'); \
           return !!o && !!st && st.dataset.status === 'running' && o.dataset.state === 'following' \
             && o.textContent.includes('first line') && !o.textContent.includes('second line'); })()",
    )
    .await;
    let (_, running) = server.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(running["status"], "running", "{running}");
    assert_eq!(
        page.eval("!!document.querySelector('#execution button[data-action=cancel]')")
            .await,
        json!(true),
        "an operator gets a cancel button on a running execution"
    );
    page.screenshot("execution-following").await;

    std::fs::write(&gate, b"go").unwrap();
    page.wait_for(
        "the second line and the end of the run",
        "(() => { const o = document.querySelector('#output'); \
           const st = document.querySelector('#execution .page-head .chip'); \
           return o.textContent.includes('first line\\nsecond line') && st.dataset.status === 'succeeded'; })()",
    )
    .await;
    assert_eq!(
        page.eval("!!document.querySelector('#execution button[data-action=cancel]')")
            .await,
        json!(false),
        "no cancel button once it ended"
    );
    page.screenshot("execution-finished").await;

    info!("--- pause and resume from the job's page");
    page.click("#execution .crumbs a[href='#/jobs/greet']")
        .await;
    page.click("#job button[data-action=pause]").await;
    page.wait_for(
        "the paused badge and a resume button",
        "!!document.querySelector('#job h1 .badge.paused') \
           && !!document.querySelector('#job button[data-action=resume]')",
    )
    .await;
    let (_, job) = server.get("/v1/jobs/greet").await;
    assert_eq!(job["paused"], true, "{job}");
    page.click("#job button[data-action=resume]").await;
    page.wait_for(
        "the pause button again",
        "!document.querySelector('#job h1 .badge.paused') \
           && !!document.querySelector('#job button[data-action=pause]')",
    )
    .await;
    let (_, job) = server.get("/v1/jobs/greet").await;
    // `paused` is left out of a job that is not paused.
    assert_ne!(job["paused"], true, "{job}");
    assert!(
        uncaught(&page).is_empty(),
        "page errors: {:?}",
        page.errors()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_gets_no_buttons_and_the_server_refuses_its_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let server = secured_server(&tmp.path().join("node")).await;
    let viewer = create_token(&server, "looker", "viewer").await;
    let gate = tmp.path().join("gate");
    let command = format!(
        "echo working; while [ ! -e '{}' ]; do sleep 0.1; done",
        gate.display()
    );
    put_job(
        &server,
        "report",
        json!({"schedule": {"every": "1h"}, "executor": {"type": "shell", "command": command}}),
    )
    .await;
    let (code, running) = server.send("POST", "/v1/jobs/report/run", None).await;
    assert_eq!(code, 202, "{running}");
    let id = running["id"].as_str().unwrap().to_string();

    info!("--- the viewer sees the job but no run, pause or resume button");
    let browser = Browser::start().await;
    let page = browser.new_page().await;
    page.viewport(1280, 900, false).await;
    sign_in(&page, &format!("{}/#/jobs", server.url), &viewer, "viewer").await;
    page.wait_for(
        "the job's row",
        "!!document.querySelector('#jobs tr[data-job=report] a.name')",
    )
    .await;
    assert_eq!(
        page.eval("document.querySelectorAll('#jobs button[data-action]').length")
            .await,
        json!(0),
        "a viewer got action buttons"
    );
    page.screenshot("jobs-viewer").await;

    page.goto(&format!("{}/#/jobs/report", server.url)).await;
    page.wait_for(
        "the job page",
        "document.querySelector('#job h1')?.textContent.includes('report')",
    )
    .await;
    assert_eq!(
        page.eval("document.querySelectorAll('button[data-action]').length")
            .await,
        json!(0)
    );

    info!("--- and no cancel button on its running execution");
    page.goto(&format!("{}/#/executions/{id}", server.url))
        .await;
    page.wait_for(
        "the running execution with its output",
        "document.querySelector('#execution .page-head .chip')?.dataset.status === 'running' \
           && document.querySelector('#output').textContent.includes('working')",
    )
    .await;
    assert_eq!(
        page.eval("document.querySelectorAll('button[data-action]').length")
            .await,
        json!(0)
    );

    info!("--- the server refuses the viewer's writes all the same");
    let as_viewer = common::client_with_token(&viewer);
    for path in [
        "/v1/jobs/report/run".to_string(),
        "/v1/jobs/report/pause".to_string(),
        format!("/v1/executions/{id}/cancel"),
    ] {
        let resp = as_viewer
            .post(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 403, "POST {path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "forbidden", "{body}");
    }
    assert_eq!(server.history("report", 10).await.len(), 1);
    // The run ends before the server goes: a server killed first would leave its
    // shell polling for a gate removed with the test's directory.
    std::fs::write(&gate, b"go").unwrap();
    eventually(DEADLINE, "the run to end", || async {
        let runs = server.history("report", 10).await;
        (runs.len() == 1 && runs[0]["status"] == "succeeded").then_some(())
    })
    .await;
    assert!(
        uncaught(&page).is_empty(),
        "page errors: {:?}",
        page.errors()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_page_shows_the_new_leader_after_the_leader_is_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let p = ports(3);
    let peers = peers_arg(&p);
    let mut servers: Vec<Server> = (0..3)
        .map(|i| launch_member(tmp.path(), i as u64 + 1, p[i], &peers, &[]))
        .collect();
    let leader = eventually(DEADLINE, "a leader", || agreed_leader(&servers)).await;
    let follower = (leader + 1) % 3;

    info!("--- the follower's console shows the leader (no tokens: no sign-in)");
    let browser = Browser::start().await;
    let page = browser.new_page().await;
    page.viewport(1280, 900, false).await;
    page.goto(&format!("{}/#/cluster", servers[follower].url))
        .await;
    page.wait_for(
        "the admin badge of a server without tokens",
        "document.querySelector('#role')?.dataset.role === 'admin' \
           && document.querySelector('#role').textContent.includes('no auth')",
    )
    .await;
    page.wait_for(
        "the leader on the cluster page",
        &format!(
            "document.querySelector('#cluster-facts')?.dataset.leader === '{}' \
               && document.querySelectorAll('#cluster tr[data-member]').length === 3",
            leader + 1
        ),
    )
    .await;
    page.screenshot("cluster").await;

    info!("--- kill -9 the leader");
    servers[leader].kill9();
    let new_leader = eventually(DEADLINE, "a new leader", || agreed_leader(&servers)).await;
    assert_ne!(new_leader, leader);
    page.wait_for(
        "the new leader on the cluster page",
        &format!(
            "document.querySelector('#cluster-facts')?.dataset.leader === '{}'",
            new_leader + 1
        ),
    )
    .await;
    let marked = page
        .eval("[...document.querySelectorAll('#cluster tr[data-leader=true]')].map(r => r.dataset.member)")
        .await;
    assert_eq!(marked, json!([(new_leader + 1).to_string()]));
    page.screenshot("cluster-new-leader").await;
    assert!(
        uncaught(&page).is_empty(),
        "page errors: {:?}",
        page.errors()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_page_fits_a_phone_screen() {
    let tmp = tempfile::tempdir().unwrap();
    let server = secured_server(&tmp.path().join("node")).await;
    let jobs = [
        (
            "nightly-database-backup-of-the-production-cluster",
            "0 30 2 * * *",
        ),
        ("rotate-logs", "@hourly"),
        ("sync-artifacts-to-the-mirror", "*/5 * * * *"),
        ("weekly-report", "0 9 * * 1"),
    ];
    for (i, (name, cron)) in jobs.iter().enumerate() {
        put_job(
            &server,
            name,
            json!({
                "description": "A job with a long description that would push a careless layout wider than a phone's screen",
                "schedule": {"cron": cron, "timezone": "Europe/Berlin"},
                "overlap": "allow",
                // The last one fails, so the page shows both colours.
                "executor": {"type": "shell", "command": format!("sleep 0.{i}; echo run of {name}; exit $(( {i} / 3 ))")},
            }),
        )
        .await;
    }
    // A few runs each, so the sparklines have something to draw.
    for (name, _) in &jobs {
        for _ in 0..3 {
            let (code, body) = server
                .send("POST", &format!("/v1/jobs/{name}/run"), None)
                .await;
            assert_eq!(code, 202, "{body}");
        }
    }
    for (name, _) in &jobs {
        eventually(DEADLINE, "the runs to end", || async {
            let history = server.history(name, 10).await;
            let want = if *name == "weekly-report" {
                "failed"
            } else {
                "succeeded"
            };
            // The schedules are real ones: an instant may fire during the test
            // (`*/5` at a five-minute mark), so the three manual runs are counted.
            let manual: Vec<&Value> = history
                .iter()
                .filter(|e| e["trigger"] == "manual")
                .collect();
            (manual.len() == 3 && manual.iter().all(|e| e["status"] == want)).then_some(())
        })
        .await;
    }

    let browser = Browser::start().await;
    let page = browser.new_page().await;
    info!("--- a desktop screen first (the README's picture)");
    page.viewport(1280, 720, false).await;
    sign_in(&page, &format!("{}/#/jobs", server.url), ADMIN, "admin").await;
    // At least the 12 manual runs (a scheduled instant may add one).
    let all_drawn = "document.querySelectorAll('#jobs tr[data-job]').length === 4 \
         && document.querySelectorAll('#jobs svg.spark circle').length >= 12";
    page.wait_for("every job with its sparkline", all_drawn)
        .await;
    page.screenshot("jobs-desktop").await;

    info!("--- a phone: 390x844");
    page.viewport(390, 844, true).await;
    page.goto(&format!("{}/#/jobs", server.url)).await;
    page.wait_for("every job with its sparkline on the phone", all_drawn)
        .await;
    assert_fits_the_screen(&page, 390, "the jobs page").await;
    page.screenshot("jobs-phone").await;

    info!("--- a job's page and an execution's page on the phone");
    page.goto(&format!("{}/#/jobs/weekly-report", server.url))
        .await;
    page.wait_for(
        "the job's timeline and chart",
        "document.querySelectorAll('#job .timeline .tick').length >= 3 \
           && !!document.querySelector('#job svg.chart')",
    )
    .await;
    assert_fits_the_screen(&page, 390, "a job's page").await;
    page.screenshot("job-phone").await;
    page.click("#job .timeline .tick").await;
    page.wait_for(
        "the execution's output",
        "document.querySelector('#output')?.textContent.includes('run of weekly-report')",
    )
    .await;
    assert_fits_the_screen(&page, 390, "an execution's page").await;
    assert!(
        uncaught(&page).is_empty(),
        "page errors: {:?}",
        page.errors()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_files_are_served_without_a_token_with_their_types() {
    let tmp = tempfile::tempdir().unwrap();
    let server = secured_server(&tmp.path().join("node")).await;
    let http = client();
    let shell = http.get(format!("{}/", server.url)).send().await.unwrap();
    assert_eq!(shell.status().as_u16(), 200);
    assert_eq!(shell.headers()["content-type"], "text/html; charset=utf-8");
    assert!(shell.headers().contains_key("content-security-policy"));
    let html = shell.text().await.unwrap();
    let mut referenced = Vec::new();
    for part in html.split('"') {
        if let Some(path) = part.strip_prefix("/ui/") {
            referenced.push(path.to_string());
        }
    }
    assert!(referenced.contains(&"app.js".to_string()), "{html}");
    for path in &referenced {
        let resp = http
            .get(format!("{}/ui/{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "/ui/{path}");
        assert_eq!(resp.headers()["cache-control"], "no-cache", "/ui/{path}");
        let etag = resp.headers()["etag"].clone();
        let again = http
            .get(format!("{}/ui/{path}", server.url))
            .header("If-None-Match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status().as_u16(), 304, "/ui/{path} revalidated");
    }
    let js = http
        .get(format!("{}/ui/pages/jobs.js", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let missing = http
        .get(format!("{}/ui/no-such-file.js", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    // The data itself still needs a token.
    let jobs = http
        .get(format!("{}/v1/jobs", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(jobs.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_shows_what_the_api_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let server = secured_server(&tmp.path().join("node")).await;
    put_job(
        &server,
        "hello",
        json!({"schedule": {"every": "1h"}, "executor": {"type": "shell", "command": "echo hello"}}),
    )
    .await;
    // A Prow collector whose deck does not answer: its runs fail.
    put_job(
        &server,
        "oadp-builds",
        json!({"schedule": {"manual": true},
               "executor": {"type": "prow", "url": "http://127.0.0.1:9/?job=*oadp*"}}),
    )
    .await;
    let (code, body) = server
        .send("PUT", "/v1/workflows/ci", Some(json!({
            "schedule": {"manual": true},
            "jobs": {
                "lint": {"executor": {"type": "shell", "command": "echo lint"}},
                "test": {"needs": ["lint"],
                         "executor": {"type": "shell", "command": "mkdir -p report && echo ok > report/result.txt"},
                         "artifacts": [{"name": "report", "path": "report"}]},
                // After `test`: it receives the kept artifact on a node that
                // requires tokens.
                "summary": {"needs": ["test"],
                            "executor": {"type": "shell", "command": "cat \"$ROTA_ARTIFACTS_DIR/report/result.txt\""}}
            }
        })))
        .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = server
        .send(
            "PUT",
            "/v1/targets/gateways",
            Some(json!({"provider": "static", "groups": [
                {"targets": ["127.0.0.1:8081", "127.0.0.1:8082"], "labels": {"zone": "a"}}]})),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let (code, run) = server.send("POST", "/v1/workflows/ci/run", None).await;
    assert_eq!(code, 202, "{run}");
    let run = run["id"].as_str().unwrap().to_string();
    let (code, body) = server.send("POST", "/v1/jobs/oadp-builds/run", None).await;
    assert_eq!(code, 202, "{body}");
    eventually(DEADLINE, "the run and the collector to end", || async {
        let (_, r) = server.get(&format!("/v1/runs/{run}")).await;
        let prow = server.history("oadp-builds", 1).await;
        (r["status"] == "succeeded" && prow.first()?["status"] == "failed").then_some(())
    })
    .await;

    let browser = Browser::start().await;
    let page = browser.new_page().await;
    page.viewport(1280, 900, false).await;
    sign_in(
        &page,
        &format!("{}/#/workflows", server.url),
        ADMIN,
        "admin",
    )
    .await;
    page.wait_for(
        "the workflow with its latest run",
        "document.querySelector('#workflows tr[data-workflow=ci] .chip')?.dataset.status === 'succeeded'",
    )
    .await;

    info!("--- a run: its jobs as a graph, its artifact");
    page.goto(&format!("{}/#/runs/{run}", server.url)).await;
    let nodes = page
        .wait_for(
            "the run's graph",
            "(() => { const n = [...document.querySelectorAll('#run svg.dag g.node')]; \
               return n.length === 3 ? n.map(g => g.dataset.job + '=' + g.dataset.status) : null; })()",
        )
        .await;
    assert_eq!(
        nodes,
        json!(["lint=succeeded", "summary=succeeded", "test=succeeded"])
    );
    assert_eq!(
        page.eval("document.querySelectorAll('#run svg.dag path.edge').length")
            .await,
        json!(2)
    );
    page.wait_for(
        "the artifact's file",
        "[...document.querySelectorAll('#run td button')].some(b => b.textContent === 'result.txt')",
    )
    .await;
    page.screenshot("workflow-run").await;

    info!("--- target sets");
    page.goto(&format!("{}/#/targets", server.url)).await;
    page.wait_for(
        "the static set's targets",
        "document.querySelectorAll('#targets section[data-set=gateways] tbody tr').length === 2",
    )
    .await;

    info!("--- CI: the Prow collector and where the build history lives");
    page.goto(&format!("{}/#/ci", server.url)).await;
    page.wait_for(
        "the collector's failed run and the note on InfluxDB",
        "document.querySelector('#ci .timeline .tick')?.dataset.status === 'failed' \
           && document.querySelector('main .note').textContent.includes('InfluxDB') \
           && document.querySelector('main .note').textContent.includes('deploy/grafana/ci-builds.json')",
    )
    .await;
    page.screenshot("ci").await;

    info!("--- the jobs page leaves out the workflow's internal jobs");
    page.goto(&format!("{}/#/jobs", server.url)).await;
    let rows = page
        .wait_for(
            "the two jobs",
            "(() => { const r = [...document.querySelectorAll('#jobs tr[data-job]')].map(r => r.dataset.job); \
               return r.length === 2 ? r : null; })()",
        )
        .await;
    assert_eq!(rows, json!(["hello", "oadp-builds"]));
    info!("--- the filter box");
    page.type_into("#filter", "oadp").await;
    page.wait_for(
        "only the matching job",
        "[...document.querySelectorAll('#jobs tr[data-job]')].map(r => r.dataset.job).join() === 'oadp-builds'",
    )
    .await;
    assert!(
        uncaught(&page).is_empty(),
        "page errors: {:?}",
        page.errors()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_resumes_after_its_node_restarts_without_losing_events() {
    let tmp = tempfile::tempdir().unwrap();
    let p = ports(3);
    let peers = peers_arg(&p);
    let mut servers: Vec<Server> = (0..3)
        .map(|i| launch_member(tmp.path(), i as u64 + 1, p[i], &peers, &[]))
        .collect();
    let leader = eventually(DEADLINE, "a leader", || agreed_leader(&servers)).await;
    let follower = (leader + 1) % 3;
    put_job(
        &servers[leader],
        "before",
        json!({"schedule": {"manual": true}, "executor": {"type": "shell", "command": "true"}}),
    )
    .await;

    let browser = Browser::start().await;
    let page = browser.new_page().await;
    page.viewport(1280, 900, false).await;
    page.goto(&format!("{}/#/jobs", servers[follower].url))
        .await;
    page.wait_for(
        "the job list, live",
        "document.querySelector('#live').dataset.state === 'live' \
           && !!document.querySelector('#jobs tr[data-job=before]')",
    )
    .await;

    info!("--- the console's node goes away, and the browser off the network");
    servers[follower].kill9();
    page.wait_for(
        "the console to notice the drop",
        "document.querySelector('#live').dataset.state !== 'live'",
    )
    .await;
    page.offline(true).await;

    info!("--- a job is made meanwhile; the node comes back and catches up");
    put_job(
        &servers[leader],
        "while-away",
        json!({"schedule": {"manual": true}, "executor": {"type": "shell", "command": "true"}}),
    )
    .await;
    servers[follower].relaunch();
    caught_up(&servers, DEADLINE, follower, leader).await;
    assert!(page
        .eval("!document.querySelector('#jobs tr[data-job=while-away]')")
        .await
        .as_bool()
        .unwrap());

    info!("--- back on the network: the stream resumes after the last event seen");
    page.offline(false).await;
    // The node had applied the new job before the console reconnected, so only
    // the replay after Last-Event-ID can tell the page of it (the page does not
    // read the list again on reconnect).
    page.wait_for(
        "the job made while the console was away",
        "document.querySelector('#live').dataset.state === 'live' \
           && !!document.querySelector('#jobs tr[data-job=while-away]')",
    )
    .await;
    assert!(
        uncaught(&page).is_empty(),
        "page errors: {:?}",
        page.errors()
    );
}
