//! Test harness: starts the real `rota` binary in a temp dir and talks to it over
//! HTTP and through the CLI.

#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_rota");

/// Installs the TLS provider reqwest needs (it is built without a default one).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("reqwest client")
}

/// A client that sends `token` as `Authorization: Bearer TOKEN`.
pub fn client_with_token(token: &str) -> reqwest::Client {
    client_with(Some(token), None)
}

/// A client that sends `token` (if any) and trusts only the CA of the PEM file
/// `ca` (if given).
pub fn client_with(token: Option<&str>, ca: Option<&Path>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("token header"),
        );
    }
    let mut builder = reqwest::Client::builder();
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).expect("read the CA file");
        let cert = reqwest::Certificate::from_pem(&pem).expect("a PEM CA certificate");
        builder = builder.tls_certs_only([cert]);
    }
    builder
        .timeout(Duration::from_secs(20))
        .default_headers(headers)
        .build()
        .expect("reqwest client")
}

/// A free loopback port (bound, then released for the server to take).
///
/// Ports come from just below the kernel's range of ephemeral ports, and none is
/// handed out twice in one test process. A port the kernel picks for `bind(0)`
/// lies in the ephemeral range: another test of the same binary (they run in
/// parallel) could be given it too, or a client connection take it as its local
/// port, before the server binds it. A node that then cannot listen leaves its
/// cluster without a member (no leader if it was to bootstrap), and a node of one
/// cluster that finds another's member at its peer's address disturbs both.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    const SPAN: u32 = 12_000;
    static NEXT: OnceLock<(u32, AtomicU32)> = OnceLock::new();
    let (low, next) = NEXT.get_or_init(|| {
        let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
            .unwrap_or(32_768);
        let low = ephemeral_low.saturating_sub(SPAN).max(1_024);
        // Test binaries of one run start at different places of the span.
        (
            low,
            AtomicU32::new(std::process::id().wrapping_mul(7_919) % SPAN),
        )
    });
    for _ in 0..SPAN {
        let port = low + next.fetch_add(1, Ordering::Relaxed) % SPAN;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {low} and {}", low + SPAN)
}

/// A `rota server` process on its own data dir and port.
pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub port: u16,
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    extra: Vec<String>,
    starts: u32,
    /// Stopped with SIGSTOP and not continued yet.
    paused: bool,
    http: reqwest::Client,
    /// Sent by the harness's requests and the CLI (`ROTA_TOKEN`) when set.
    token: Option<String>,
    /// The `rota` binary it runs (another release's in upgrade tests).
    bin: PathBuf,
    /// The CA the harness's requests and the CLI (`ROTA_CA_CERT`) trust, once the
    /// server serves HTTPS.
    ca: Option<PathBuf>,
}

impl Server {
    /// Starts a server with its data under `dir` and waits until it leads.
    pub async fn start(dir: &Path, extra: &[&str]) -> Server {
        let mut server = Server::launch(dir, free_port(), extra);
        server.wait_ready().await;
        server
    }

    /// Starts a server on `port` with its data under `dir`, without waiting: a
    /// cluster member only becomes ready once its peers run too.
    pub fn launch(dir: &Path, port: u16, extra: &[&str]) -> Server {
        Server::launch_bin(Path::new(BIN), dir, port, extra)
    }

    /// [`Server::launch`] with another `rota` binary (another release's).
    pub fn launch_bin(bin: &Path, dir: &Path, port: u16, extra: &[&str]) -> Server {
        std::fs::create_dir_all(dir).expect("server dir");
        let mut server = Server {
            child: None,
            url: format!("http://127.0.0.1:{port}"),
            port,
            dir: dir.to_path_buf(),
            data_dir: dir.join("data"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            starts: 0,
            paused: false,
            http: client(),
            token: None,
            bin: bin.to_path_buf(),
            ca: None,
        };
        server.spawn();
        server
    }

    /// Starts the process again (after [`Server::kill9`]) on the same data, without
    /// waiting for it.
    pub fn relaunch(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Whether the process runs (it was not killed and has not exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Whether the process was started and not killed since (it may have exited).
    pub fn is_launched(&self) -> bool {
        self.child.is_some()
    }

    /// `/v1/health`, or `None` while the server does not answer.
    pub async fn health(&self) -> Option<Value> {
        let resp = self
            .http
            .get(format!("{}/v1/health", self.url))
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("server-{}.log", self.starts)))
            .expect("server log");
        let child = Command::new(&self.bin)
            .arg("server")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra)
            // `ROTA_TEST_LOG` raises it for a diagnosis (a soak that failed).
            .env(
                "RUST_LOG",
                std::env::var("ROTA_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn rota server");
        self.child = Some(child);
    }

    /// Waits until `/v1/health` answers with this node as leader.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("server exited with {status} during start:\n{}", self.logs());
                }
            }
            if let Ok(resp) = self
                .http
                .get(format!("{}/v1/health", self.url))
                .send()
                .await
            {
                if resp.status().is_success() {
                    let body: Value = resp.json().await.unwrap_or(Value::Null);
                    if body["role"] == "leader" {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "server not ready in 60s:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9` the server.
    pub fn kill9(&mut self) {
        self.paused = false;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    /// Freezes the process with SIGSTOP: it keeps its sockets, so peers and
    /// clients see a node that accepts connections and never answers.
    pub fn pause(&mut self) {
        if let Some(child) = &self.child {
            self.paused = true;
            unsafe {
                libc::kill(child.id() as i32, libc::SIGSTOP);
            }
        }
    }

    /// Lets a process frozen by [`Server::pause`] go on (SIGCONT).
    pub fn resume(&mut self) {
        if let Some(child) = &self.child {
            unsafe {
                libc::kill(child.id() as i32, libc::SIGCONT);
            }
        }
        self.paused = false;
    }

    /// Whether the process is frozen by [`Server::pause`].
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// SIGTERM and wait for a graceful exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        child.wait().expect("wait")
    }

    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn();
        self.wait_ready().await;
    }

    /// Runs `bin` from the next start on (another release's binary).
    pub fn use_bin(&mut self, bin: &Path) {
        self.bin = bin.to_path_buf();
    }

    /// Sends SIGTERM without waiting for the exit.
    pub fn terminate(&mut self) {
        if let Some(child) = &self.child {
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
        }
    }

    /// Waits up to `timeout` for the process to exit; answers how it did.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().expect("server launched");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit within {timeout:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the process again after it exited, on the same data, without waiting.
    pub fn respawn(&mut self) {
        assert!(self.child.is_none(), "the server still runs");
        self.spawn();
    }

    /// Waits until `/readyz` answers 200 (a member that has a leader and caught up).
    pub async fn wait_readyz(&self, timeout: Duration) {
        let http = self.http.clone();
        let url = format!("{}/readyz", self.url);
        eventually(timeout, "the node to be ready", || {
            let http = http.clone();
            let url = url.clone();
            async move {
                let resp = http.get(&url).send().await.ok()?;
                resp.status().is_success().then_some(())
            }
        })
        .await;
    }

    /// All server logs so far (for failure messages).
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for i in 1..=self.starts {
            let p = self.dir.join(format!("server-{i}.log"));
            all.push_str(&format!("--- server start {i}\n"));
            all.push_str(&std::fs::read_to_string(p).unwrap_or_default());
        }
        all
    }

    /// Makes the harness's requests and CLI runs send `token` from now on.
    pub fn use_token(&mut self, token: &str) {
        self.token = Some(token.to_string());
        self.http = client_with(self.token.as_deref(), self.ca.as_deref());
    }

    /// Makes the harness talk `https://` to this server (started with TLS),
    /// trusting the CA of the PEM file `ca`; the CLI gets it as `ROTA_CA_CERT`.
    pub fn use_tls(&mut self, ca: &Path) {
        self.url = self.url.replacen("http://", "https://", 1);
        self.ca = Some(ca.to_path_buf());
        self.http = client_with(self.token.as_deref(), self.ca.as_deref());
    }

    /// Runs the CLI against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        if let Some(token) = &self.token {
            cmd.env("ROTA_TOKEN", token);
        } else {
            cmd.env_remove("ROTA_TOKEN");
        }
        match &self.ca {
            Some(ca) => cmd.env("ROTA_CA_CERT", ca),
            None => cmd.env_remove("ROTA_CA_CERT"),
        };
        cmd.args(args)
            .env("ROTA_SERVER", &self.url)
            .current_dir(&self.dir)
            .output()
            .expect("run rota cli")
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        )
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The job's executions, newest first.
    pub async fn history(&self, job: &str, limit: usize) -> Vec<Value> {
        let (status, body) = self
            .get(&format!("/v1/jobs/{job}/executions?limit={limit}"))
            .await;
        assert_eq!(status, 200, "history of {job}: {body}");
        match body {
            Value::Array(items) => items,
            Value::Object(ref map) if map.contains_key("items") => {
                body["items"].as_array().cloned().unwrap_or_default()
            }
            other => panic!("unexpected history body {other}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `n` distinct free loopback ports.
pub fn ports(n: usize) -> Vec<u16> {
    // Distinct: `free_port` never hands a port out twice.
    (0..n).map(|_| free_port()).collect()
}

/// The `--peers` value of a cluster whose node `i + 1` listens on `ports[i]`.
pub fn peers_arg(ports: &[u16]) -> String {
    ports
        .iter()
        .enumerate()
        .map(|(i, port)| format!("{}=http://127.0.0.1:{port}", i + 1))
        .collect::<Vec<_>>()
        .join(",")
}

/// Launches node `id` of a `--peers` cluster, its files under `dir/n{id}`.
pub fn launch_member(dir: &Path, id: u64, port: u16, peers: &str, extra: &[&str]) -> Server {
    let id = id.to_string();
    let mut args = vec!["--node-id", &id, "--peers", peers];
    args.extend_from_slice(extra);
    Server::launch(&dir.join(format!("n{id}")), port, &args)
}

/// [`launch_member`] with another `rota` binary (another release's).
pub fn launch_member_bin(
    bin: &Path,
    dir: &Path,
    id: u64,
    port: u16,
    peers: &str,
    extra: &[&str],
) -> Server {
    let id = id.to_string();
    let mut args = vec!["--node-id", &id, "--peers", peers];
    args.extend_from_slice(extra);
    Server::launch_bin(bin, &dir.join(format!("n{id}")), port, &args)
}

/// Every execution of `job` still on record, newest first, page by page; `None`
/// while `server` does not answer.
pub async fn full_history(server: &Server, job: &str) -> Option<Vec<Value>> {
    let mut all = Vec::new();
    let mut before = String::new();
    loop {
        let (status, page) = server
            .get(&format!("/v1/jobs/{job}/executions?limit=1000{before}"))
            .await;
        if status != 200 {
            return None;
        }
        all.extend(page["items"].as_array()?.iter().cloned());
        match page["next_before"].as_str() {
            Some(next) => before = format!("&before={next}"),
            None => return Some(all),
        }
    }
}

/// The index of the leader every running, unfrozen node agrees on (and that
/// calls itself leader); node ids are indexes + 1.
pub async fn agreed_leader(servers: &[Server]) -> Option<usize> {
    let mut leaders = std::collections::BTreeSet::new();
    let mut leading = Vec::new();
    for s in servers.iter().filter(|s| s.is_launched() && !s.is_paused()) {
        let health = s.health().await?;
        leaders.insert(health["leader"].as_u64()?);
        if health["role"] == "leader" {
            leading.push(health["node_id"].as_u64()?);
        }
    }
    match (leaders.len(), leading.as_slice()) {
        (1, [one]) if leaders.contains(one) => usize::try_from(one - 1).ok(),
        _ => None,
    }
}

/// Sends through whichever launched node answers 2xx (a follower forwards),
/// trying them in turn for up to `timeout`.
pub async fn send_anywhere(
    servers: &[Server],
    timeout: Duration,
    method: &str,
    path: &str,
    body: Value,
) -> Value {
    let mut turn = 0usize;
    eventually(timeout, &format!("{method} {path}"), || {
        turn += 1;
        let server = &servers[turn % servers.len()];
        let body = body.clone();
        async move {
            if !server.is_launched() || server.is_paused() {
                return None;
            }
            server.health().await?;
            let (status, answer) = server.send(method, path, Some(body)).await;
            (200..300).contains(&status).then_some(answer)
        }
    })
    .await
}

/// Waits up to `timeout` until `servers[node]` answers and has applied what
/// `servers[leader]` had applied when called.
pub async fn caught_up(servers: &[Server], timeout: Duration, node: usize, leader: usize) {
    let target = servers[leader]
        .health()
        .await
        .and_then(|h| h["last_applied"].as_u64())
        .unwrap_or(0);
    let restarted = &servers[node];
    eventually(timeout, "the restarted node to catch up", || async move {
        let applied = restarted.health().await?["last_applied"].as_u64()?;
        (applied >= target).then_some(())
    })
    .await;
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// How long [`runs_go_on`] waits: generous for elections and restarts on a loaded
/// 2-core machine.
pub const RUNS_DEADLINE: Duration = Duration::from_secs(60);

/// Lines of the sink: `(job, scheduled_at, attempt, node)`.
pub fn sink_lines(path: &Path) -> Vec<(String, String, u32, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let job = parts.next()?.to_string();
            let at = parts.next()?.to_string();
            let attempt = parts.next()?.parse().ok()?;
            let node = parts.next()?.to_string();
            Some((job, at, attempt, node))
        })
        .collect()
}

pub fn instant(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&chrono::Utc)
}

/// Waits until the sink holds `more` lines beyond `after`.
pub async fn runs_go_on(sink: &Path, after: usize, more: usize) -> usize {
    eventually(RUNS_DEADLINE, "runs to go on", || async move {
        let n = sink_lines(sink).len();
        (n >= after + more).then_some(n)
    })
    .await
}

/// Each of `jobs`' whole history as the agreed leader has it, once none of their
/// executions is queued or running any more (after the jobs were paused).
pub async fn settled_histories(
    servers: &[Server],
    jobs: &[&'static str],
    timeout: Duration,
) -> std::collections::BTreeMap<&'static str, Vec<Value>> {
    eventually(timeout, "no active execution left", || async move {
        let leader = agreed_leader(servers).await?;
        let mut all = std::collections::BTreeMap::new();
        for job in jobs {
            let history = full_history(&servers[leader], job).await?;
            let active = history
                .iter()
                .any(|e| e["status"] == "queued" || e["status"] == "running");
            if active {
                return None;
            }
            all.insert(*job, history);
        }
        Some(all)
    })
    .await
}
