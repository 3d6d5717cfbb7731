//! A headless Chromium driven over the DevTools protocol (one WebSocket, flat
//! sessions): pages to open, JavaScript to evaluate, real mouse clicks and key
//! input, a viewport to set and screenshots to save.
//!
//! Chromium must be installed (Debian: `chromium chromium-driver`; `.ci/run`
//! installs them). Without it the tests fail and say so: a console test that
//! skips itself would pass without testing anything.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// How long one condition may take: headless Chromium on a busy 2-core machine
/// is slow, and a wait ends as soon as its condition holds.
pub const DEADLINE: Duration = Duration::from_secs(60);

const CANDIDATES: &[&str] = &[
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
];

/// The Chromium binary: `ROTA_CHROMIUM`, else the first of [`CANDIDATES`] on `PATH`.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("ROTA_CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in CANDIDATES {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "the console tests need a headless Chromium and found none on PATH ({}): \
         install it with `apt-get install chromium chromium-driver` (Debian), or set \
         ROTA_CHROMIUM to the browser's path",
        CANDIDATES.join(", ")
    );
}

/// Where the tests save screenshots (kept by CI): `target/console-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("create the screenshot folder");
    dir
}

type Pending = HashMap<u64, oneshot::Sender<Result<Value, Value>>>;

/// The DevTools connection: commands out, answers matched by id, and the events
/// the tests care about (uncaught exceptions, console errors) kept per session.
struct Connection {
    out: mpsc::UnboundedSender<Message>,
    pending: Arc<Mutex<Pending>>,
    next_id: AtomicU64,
    errors: Arc<Mutex<HashMap<String, Vec<String>>>>,
}

impl Connection {
    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            msg["sessionId"] = json!(session);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.out
            .send(Message::text(msg.to_string()))
            .unwrap_or_else(|_| panic!("{method}: the DevTools connection is closed"));
        match tokio::time::timeout(DEADLINE, rx).await {
            Ok(Ok(Ok(result))) => result,
            Ok(Ok(Err(error))) => panic!("{method} failed: {error}"),
            Ok(Err(_)) => panic!("{method}: the DevTools connection closed"),
            Err(_) => panic!("{method}: no answer from Chromium in {DEADLINE:?}"),
        }
    }
}

/// A running headless Chromium.
pub struct Browser {
    child: Child,
    profile: tempfile::TempDir,
    conn: Arc<Connection>,
}

impl Browser {
    /// Starts Chromium with a fresh profile and connects to it.
    pub async fn start() -> Browser {
        let bin = chromium();
        let profile = tempfile::tempdir().expect("profile dir");
        let log = std::fs::File::create(profile.path().join("chromium.log")).expect("log");
        let child = Command::new(&bin)
            .args([
                "--headless=new",
                // Containers and root (as in CI) have no sandbox to offer; the
                // browser only ever loads the test's own servers.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}; install `chromium chromium-driver`",
                    bin.display()
                )
            });
        let mut browser_child = child;
        // Chromium writes the port it took and the browser's path to this file.
        let active = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + DEADLINE;
        let url = loop {
            if let Ok(text) = std::fs::read_to_string(&active) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break format!("ws://127.0.0.1:{port}{path}");
                }
            }
            if let Ok(Some(status)) = browser_child.try_wait() {
                panic!(
                    "Chromium exited with {status} at start:\n{}",
                    std::fs::read_to_string(profile.path().join("chromium.log"))
                        .unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "Chromium did not open its DevTools port in {DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap_or_else(|e| panic!("connect to Chromium's DevTools at {url}: {e}"));
        let (mut sink, mut stream) = ws.split();
        let (out, mut outgoing) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(msg) = outgoing.recv().await {
                if sink.send(msg).await.is_err() {
                    break;
                }
            }
        });
        let pending: Arc<Mutex<Pending>> = Arc::default();
        let errors: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
        {
            let pending = pending.clone();
            let errors = errors.clone();
            tokio::spawn(async move {
                while let Some(Ok(msg)) = stream.next().await {
                    let Message::Text(text) = msg else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                        continue;
                    };
                    if let Some(id) = v["id"].as_u64() {
                        if let Some(tx) = pending.lock().unwrap().remove(&id) {
                            let answer = match v.get("error") {
                                Some(e) => Err(e.clone()),
                                None => Ok(v["result"].clone()),
                            };
                            let _ = tx.send(answer);
                        }
                        continue;
                    }
                    let session = v["sessionId"].as_str().unwrap_or_default().to_string();
                    let error = match v["method"].as_str() {
                        Some("Runtime.exceptionThrown") => {
                            let d = &v["params"]["exceptionDetails"];
                            Some(format!(
                                "uncaught: {} {}",
                                d["text"].as_str().unwrap_or_default(),
                                d["exception"]["description"].as_str().unwrap_or_default()
                            ))
                        }
                        Some("Runtime.consoleAPICalled") if v["params"]["type"] == "error" => {
                            Some(format!("console.error: {}", v["params"]["args"]))
                        }
                        Some("Log.entryAdded") if v["params"]["entry"]["level"] == "error" => {
                            Some(format!(
                                "log: {} {}",
                                v["params"]["entry"]["text"].as_str().unwrap_or_default(),
                                v["params"]["entry"]["url"].as_str().unwrap_or_default()
                            ))
                        }
                        _ => None,
                    };
                    if let Some(error) = error {
                        errors
                            .lock()
                            .unwrap()
                            .entry(session)
                            .or_default()
                            .push(error);
                    }
                }
            });
        }
        Browser {
            child: browser_child,
            profile,
            conn: Arc::new(Connection {
                out,
                pending,
                next_id: AtomicU64::new(1),
                errors,
            }),
        }
    }

    /// A new tab on `about:blank`, with the domains the helpers use enabled.
    pub async fn new_page(&self) -> Page {
        let target = self
            .conn
            .call(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let target = target["targetId"].as_str().expect("targetId").to_string();
        let attached = self
            .conn
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target, "flatten": true}),
            )
            .await;
        let session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        let page = Page {
            conn: self.conn.clone(),
            session,
        };
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            page.call(domain, json!({})).await;
        }
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.profile;
    }
}

/// One tab.
pub struct Page {
    conn: Arc<Connection>,
    session: String,
}

impl Page {
    pub async fn call(&self, method: &str, params: Value) -> Value {
        self.conn.call(Some(&self.session), method, params).await
    }

    /// Loads `url` (the wait for what it shows is the caller's).
    pub async fn goto(&self, url: &str) {
        let answer = self.call("Page.navigate", json!({"url": url})).await;
        assert!(
            answer.get("errorText").is_none(),
            "navigate to {url}: {answer}"
        );
    }

    /// A phone- or desktop-sized viewport.
    pub async fn viewport(&self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": if mobile { 2 } else { 1 }, "mobile": mobile}),
        )
        .await;
    }

    /// Cuts the tab off the network (every request fails) or lets it back on.
    pub async fn offline(&self, offline: bool) {
        self.call("Network.enable", json!({})).await;
        self.call(
            "Network.emulateNetworkConditions",
            json!({"offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}),
        )
        .await;
    }

    /// Evaluates `expr` (awaiting a promise) and returns its value; a thrown
    /// exception is an `Err` with its description.
    pub async fn try_eval(&self, expr: &str) -> Result<Value, String> {
        let answer = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(details) = answer.get("exceptionDetails") {
            return Err(details["exception"]["description"]
                .as_str()
                .or(details["text"].as_str())
                .unwrap_or("exception")
                .to_string());
        }
        Ok(answer["result"]["value"].clone())
    }

    pub async fn eval(&self, expr: &str) -> Value {
        self.try_eval(expr)
            .await
            .unwrap_or_else(|e| panic!("evaluating {expr}: {e}"))
    }

    /// Polls `expr` until it is truthy and returns its value; after [`DEADLINE`]
    /// saves a screenshot and fails with `what`, the page's text and its errors.
    pub async fn wait_for(&self, what: &str, expr: &str) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let last = match self.try_eval(expr).await {
                Ok(v) if truthy(&v) => return v,
                other => other,
            };
            if Instant::now() > deadline {
                let shot = self.screenshot(&format!("failed-{}", slug(what))).await;
                let text = self
                    .try_eval("document.body ? document.body.innerText : ''")
                    .await
                    .unwrap_or_default();
                let text: String = text
                    .as_str()
                    .unwrap_or_default()
                    .chars()
                    .take(3000)
                    .collect();
                panic!(
                    "timed out after {DEADLINE:?} waiting for {what}\n\
                     condition: {expr}\nlast value: {last:?}\nscreenshot: {}\n\
                     page errors: {:?}\npage text:\n{text}",
                    shot.display(),
                    self.errors()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A real left click in the middle of the first element `selector` matches
    /// (scrolled into view first).
    pub async fn click(&self, selector: &str) {
        let sel = serde_json::to_string(selector).unwrap();
        let at = self
            .wait_for(
                &format!("{selector} to be clickable"),
                &format!(
                    "(() => {{ const el = document.querySelector({sel}); if (!el) return null; \
                     el.scrollIntoView({{block: 'center'}}); const r = el.getBoundingClientRect(); \
                     if (r.width === 0 || r.height === 0) return null; \
                     return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
                ),
            )
            .await;
        let (x, y) = (at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            )
            .await;
        }
    }

    /// Focuses `selector` and types `text` into it.
    pub async fn type_into(&self, selector: &str, text: &str) {
        let sel = serde_json::to_string(selector).unwrap();
        self.wait_for(
            &format!("{selector} to take input"),
            &format!(
                "(() => {{ const el = document.querySelector({sel}); if (!el) return false; \
                 el.focus(); return document.activeElement === el; }})()"
            ),
        )
        .await;
        self.call("Input.insertText", json!({"text": text})).await;
    }

    /// Saves a PNG of the viewport as `target/console-screenshots/NAME.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": false}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("screenshot is base64");
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Uncaught exceptions and console errors of this tab so far.
    pub fn errors(&self) -> Vec<String> {
        self.conn
            .errors
            .lock()
            .unwrap()
            .get(&self.session)
            .cloned()
            .unwrap_or_default()
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

fn slug(what: &str) -> String {
    what.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(60)
        .collect()
}
