//! A write sent to a follower while the leader is frozen (`SIGSTOP`): how long the
//! follower takes to answer it, and how that compares with the moment a new leader
//! exists.
//!
//! One run is one repetition: the caller (the benchmark script) waited until the
//! cluster was settled and names the leader and its process. [`run_frozen`] stops
//! that process, at once sends one write to a follower (a client that stays with
//! that node: no retry elsewhere, redirects not followed), and meanwhile polls the
//! surviving nodes' status until one of them leads. Once the write was answered (or
//! timed out) and a new leader exists (or the wait ran out), the old leader is
//! continued (`SIGCONT`) and the run waits until every node caught up again. The
//! answer is classified: `ok` (the write committed), `redirect` (an answer naming
//! another node as the leader: a 3xx with a `Location`, or rota's `not_leader`
//! with a `leader` URL other than the frozen node's), `error` (any other answer),
//! `no answer` (nothing within the request timeout).

use std::time::Duration;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use serde_json::{json, Value};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::client::unique_client_id;
use crate::cluster::{node_view, wait_settled, Settled};
use crate::error::BenchError;
use crate::kv::Target;
use crate::result::{Measurement, Outcome, Probe};
use crate::stats::Summary;

/// Pause between two rounds of status requests to the surviving nodes.
const POLL: Duration = Duration::from_millis(10);
/// Longest a status request may take.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);

/// Parameters of [`run_frozen`].
#[derive(Debug, Clone)]
pub struct FrozenRun {
    pub target: Target,
    /// Every node of the cluster.
    pub urls: Vec<String>,
    /// The leader, as its 1-based position in `urls`.
    pub leader: usize,
    /// The leader's process, stopped and continued by the run.
    pub pid: u32,
    /// The follower the write goes to (1-based); `None`: the node after the leader.
    pub follower: Option<usize>,
    /// Which repetition this is (from 1).
    pub rep: usize,
    /// Longest wait for the write's answer, and for a new leader.
    pub timeout: Duration,
    /// Longest wait for the cluster to be whole again after `SIGCONT`.
    pub settle_timeout: Duration,
}

/// How the follower answered the write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `ok`, `redirect`, `error` or `no answer`.
    pub kind: &'static str,
    pub status: Option<u16>,
    /// The leader the answer names, or the error's message (shortened).
    pub detail: String,
}

/// Classifies an HTTP answer to the write. `frozen_url` is the stopped leader's.
pub fn classify(
    target: Target,
    status: u16,
    location: Option<&str>,
    body: &str,
    frozen_url: &str,
) -> Answer {
    let short = |s: &str| s.chars().take(200).collect::<String>();
    let v: Option<Value> = serde_json::from_str(body).ok();
    if (300..400).contains(&status) {
        return Answer {
            kind: "redirect",
            status: Some(status),
            detail: location.map_or_else(|| short(body), str::to_string),
        };
    }
    match target {
        Target::Rota => {
            if (200..300).contains(&status) {
                return Answer {
                    kind: "ok",
                    status: Some(status),
                    detail: String::new(),
                };
            }
            let error = v.as_ref().and_then(|v| v.get("error"));
            let code = error.and_then(|e| e.get("code")).and_then(Value::as_str);
            let leader = error.and_then(|e| e.get("leader")).and_then(Value::as_str);
            let same = |a: &str| a.trim_end_matches('/') == frozen_url.trim_end_matches('/');
            match (code, leader) {
                (Some("not_leader"), Some(l)) if !same(l) => Answer {
                    kind: "redirect",
                    status: Some(status),
                    detail: l.to_string(),
                },
                _ => Answer {
                    kind: "error",
                    status: Some(status),
                    detail: short(body),
                },
            }
        }
        Target::Etcd => {
            // The gateway answers some failures with 200 and an error object.
            let failed = v
                .as_ref()
                .is_some_and(|v| v.get("error").is_some() || v.get("code").is_some());
            if (200..300).contains(&status) && !failed {
                Answer {
                    kind: "ok",
                    status: Some(status),
                    detail: String::new(),
                }
            } else {
                let message = v
                    .as_ref()
                    .and_then(|v| v.get("error").or_else(|| v.get("message")))
                    .and_then(Value::as_str)
                    .map_or_else(|| short(body), short);
                Answer {
                    kind: "error",
                    status: Some(status),
                    detail: message,
                }
            }
        }
    }
}

fn signal(pid: u32, sig: libc::c_int) -> Result<(), BenchError> {
    let raw = libc::pid_t::try_from(pid).map_err(|_| BenchError::Signal {
        pid,
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let r = unsafe { libc::kill(raw, sig) };
    if r == 0 {
        Ok(())
    } else {
        Err(BenchError::Signal {
            pid,
            source: std::io::Error::last_os_error(),
        })
    }
}

fn now_ns() -> i128 {
    i128::from(chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default())
}

/// Sends the write once, to `url`, and waits for its answer.
async fn write_once(
    http: &reqwest::Client,
    target: Target,
    url: &str,
    key: &str,
    frozen_url: &str,
) -> Answer {
    let base = url.trim_end_matches('/');
    let req = match target {
        Target::Rota => http
            .put(format!("{base}/v1/kv/{key}"))
            .header("Rota-Client-Id", unique_client_id("frozen", 0))
            .header("Rota-Request-Seq", 1)
            .json(&json!({"value": "frozen-leader"})),
        Target::Etcd => http.post(format!("{base}/v3/kv/put")).json(&json!({
            "key": BASE64_STANDARD.encode(key),
            "value": BASE64_STANDARD.encode("frozen-leader"),
        })),
    };
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_string);
            let body = resp.text().await.unwrap_or_default();
            classify(target, status, location.as_deref(), &body, frozen_url)
        }
        Err(e) if e.is_timeout() => Answer {
            kind: "no answer",
            status: None,
            detail: "request timed out".to_string(),
        },
        Err(e) => Answer {
            kind: "error",
            status: None,
            detail: crate::kv::error_chain(&e),
        },
    }
}

/// Polls the surviving nodes until one of them reports itself leader (or names a
/// leader other than the frozen node); answers the Unix ns when that was seen.
async fn wait_new_leader(
    http: &reqwest::Client,
    target: Target,
    survivors: &[String],
    frozen_id: Option<&str>,
    deadline: Instant,
) -> Option<i128> {
    loop {
        let views = futures_util::future::join_all(
            survivors.iter().map(|url| node_view(http, target, url)),
        )
        .await;
        let seen = now_ns();
        let elected = views.iter().flatten().any(|v| match v.leader.as_deref() {
            Some(l) => l == v.id || frozen_id.is_some_and(|f| f != l),
            None => false,
        });
        if elected {
            return Some(seen);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One repetition; see the module documentation.
pub async fn run_frozen(run: FrozenRun) -> Result<Outcome, BenchError> {
    let n = run.urls.len();
    if n < 3 || run.leader == 0 || run.leader > n {
        return Err(BenchError::NoEndpoint);
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let status_http = reqwest::Client::builder()
        .timeout(STATUS_TIMEOUT)
        .no_proxy()
        .build()
        .map_err(BenchError::ClientBuild)?;
    let write_http = reqwest::Client::builder()
        .http1_only()
        .tcp_nodelay(true)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(run.timeout)
        .build()
        .map_err(BenchError::ClientBuild)?;
    let follower = run.follower.unwrap_or(run.leader % n + 1);
    if follower == run.leader || follower == 0 || follower > n {
        return Err(BenchError::NoEndpoint);
    }
    let frozen_url = run.urls[run.leader - 1].clone();
    let follower_url = run.urls[follower - 1].clone();
    let survivors: Vec<String> = (1..=n)
        .filter(|i| *i != run.leader)
        .map(|i| run.urls[i - 1].clone())
        .collect();
    let frozen_id = node_view(&status_http, run.target, &frozen_url)
        .await
        .map(|v| v.id);
    let key = format!("frozen-{}-{}", run.rep, now_ns());
    let probe = Probe::start();

    let stopped_ns = now_ns();
    signal(run.pid, libc::SIGSTOP)?;
    let deadline = Instant::now() + run.timeout;
    let (answer, elected_ns) = tokio::join!(
        async {
            let a = write_once(&write_http, run.target, &follower_url, &key, &frozen_url).await;
            (a, now_ns())
        },
        wait_new_leader(
            &status_http,
            run.target,
            &survivors,
            frozen_id.as_deref(),
            deadline
        ),
    );
    let continued = signal(run.pid, libc::SIGCONT);
    let continued_ns = now_ns();
    let (answer, answered_ns) = answer;
    continued?;
    let settled = wait_settled(run.target, &run.urls, Settled::All, run.settle_timeout).await;
    let caught_up_ms = settled
        .is_ok()
        .then(|| (now_ns() - continued_ns) as f64 / 1e6);
    if let Err(e) = &settled {
        warn!(error = %e, "the cluster did not settle after SIGCONT");
    }
    let answered_ms = (answer.kind != "no answer").then(|| (answered_ns - stopped_ns) as f64 / 1e6);
    let elected_ms = elected_ns.map(|e| (e - stopped_ns) as f64 / 1e6);
    info!(
        rep = run.rep,
        answer = answer.kind,
        ?answered_ms,
        ?elected_ms,
        detail = %answer.detail,
        "frozen leader"
    );
    let mut outcome = Outcome::new(
        run.target.system(),
        &probe,
        Measurement::Frozen {
            rep: run.rep,
            frozen: run.leader,
            asked: follower,
            answer: answer.kind.to_string(),
            status: answer.status,
            detail: answer.detail,
            answered_ms,
            elected_ms,
            timeout_ms: u64::try_from(run.timeout.as_millis()).unwrap_or(u64::MAX),
            caught_up_ms,
        },
    )
    .on_nodes(n);
    // The stopped process counts as the step's; its CPU figure would be noise.
    outcome.other_cpu_cores = None;
    Ok(outcome)
}

/// The summaries the report gives per system: time from `SIGSTOP` to the answer,
/// and from the new leader's existence to the answer, over the repetitions.
pub fn frozen_summary(reps: &[&Outcome]) -> (Option<Summary>, Option<Summary>) {
    let mut answered = Vec::new();
    let mut after_leader = Vec::new();
    for o in reps {
        if let Measurement::Frozen {
            answered_ms,
            elected_ms,
            ..
        } = &o.measurement
        {
            answered.extend(*answered_ms);
            if let (Some(a), Some(e)) = (answered_ms, elected_ms) {
                after_leader.push(a - e);
            }
        }
    }
    (
        Summary::from_samples(answered),
        Summary::from_samples(after_leader),
    )
}

/// The report's section for `Frozen` outcomes.
pub fn frozen_section(of: &[&Outcome], cores: usize) -> String {
    use std::collections::{BTreeMap, BTreeSet};

    use crate::report::{load_cell, ms, Table};
    use crate::result::{ETCD, ROTA};

    let mut by_system: BTreeMap<&str, BTreeMap<usize, &Outcome>> = BTreeMap::new();
    for o in of {
        if let Measurement::Frozen { rep, .. } = o.measurement {
            // A re-run of a repetition replaces the earlier record of it.
            by_system
                .entry(o.system.as_str())
                .or_default()
                .insert(rep, o);
        }
    }
    let p50_max = |s: &Option<Summary>| match s {
        Some(s) => format!("{} / {}", ms(s.p50), ms(s.max)),
        None => "–".to_string(),
    };
    let mut t = Table::new(&[
        "system",
        "reps",
        "answers",
        "answered after SIGSTOP p50 / max ms",
        "new leader after SIGSTOP p50 / max ms",
        "answered after a new leader exists p50 / max ms",
        "others' CPU",
    ]);
    let mut each = Table::new(&[
        "system",
        "rep",
        "frozen node",
        "asked node",
        "answer",
        "answered ms",
        "new leader ms",
        "answered − new leader ms",
        "caught up after SIGCONT ms",
        "detail",
    ]);
    let mut timeouts = BTreeSet::new();
    for system in [ROTA, ETCD] {
        let Some(reps) = by_system.get(system) else {
            continue;
        };
        let list: Vec<&Outcome> = reps.values().copied().collect();
        let (answered, after) = frozen_summary(&list);
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        let mut elected = Vec::new();
        for o in &list {
            if let Measurement::Frozen {
                rep,
                frozen,
                asked,
                answer,
                status,
                detail,
                answered_ms,
                elected_ms,
                timeout_ms,
                caught_up_ms,
            } = &o.measurement
            {
                *kinds.entry(answer.clone()).or_default() += 1;
                elected.extend(*elected_ms);
                timeouts.insert(*timeout_ms);
                let opt = |v: &Option<f64>| v.map_or("–".to_string(), ms);
                each.row(vec![
                    system.to_string(),
                    rep.to_string(),
                    frozen.to_string(),
                    asked.to_string(),
                    match status {
                        Some(s) => format!("{answer} ({s})"),
                        None => answer.clone(),
                    },
                    opt(answered_ms),
                    opt(elected_ms),
                    match (answered_ms, elected_ms) {
                        (Some(a), Some(e)) => ms(a - e),
                        _ => "–".to_string(),
                    },
                    opt(caught_up_ms),
                    detail.replace('|', "/").replace('\n', " "),
                ]);
            }
        }
        let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        t.row(vec![
            system.to_string(),
            list.len().to_string(),
            kinds.join(", "),
            p50_max(&answered),
            p50_max(&Summary::from_samples(elected)),
            p50_max(&after),
            load_cell(&list[list.len() - 1..], cores),
        ]);
    }
    let timeouts: Vec<String> = timeouts.iter().map(|t| format!("{t} ms")).collect();
    format!(
        "## Write forwarded to a frozen leader (3 nodes): rota vs etcd\n\n\
         Once the cluster is settled, the leader gets `SIGSTOP` and one write goes at \
         once to a follower (rota `PUT /v1/kv/{{key}}`, etcd `POST /v3/kv/put` on the \
         gateway), from a client that stays with that node (no retry elsewhere, \
         redirects not followed, request timeout {}). Answered = from `SIGSTOP` until \
         the follower answers: ok (committed), redirect (names another node as the \
         leader) or error. New leader = from `SIGSTOP` until a surviving node reports \
         itself leader (or names a leader other than the frozen one), polled every \
         10 ms. Then the old leader gets `SIGCONT` and the cluster is waited on until \
         every node caught up. A negative \"answered − new leader\" is an answer given \
         before a new leader existed.\n\n{}\n{}",
        timeouts.join(", "),
        t.render(),
        each.render()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{ETCD, ROTA};

    const FROZEN: &str = "http://127.0.0.1:17710";

    #[test]
    fn rota_answers_are_classified() {
        let ok = classify(Target::Rota, 200, None, r#"{"index": 7}"#, FROZEN);
        assert_eq!(ok.kind, "ok");
        let moved = r#"{"error": {"code": "not_leader", "message": "m", "leader": "http://127.0.0.1:17712"}}"#;
        let a = classify(Target::Rota, 503, None, moved, FROZEN);
        assert_eq!(
            (a.kind, a.detail.as_str()),
            ("redirect", "http://127.0.0.1:17712")
        );
        // Naming the frozen node, or no node, is not a redirect.
        let same = r#"{"error": {"code": "not_leader", "message": "m", "leader": "http://127.0.0.1:17710/"}}"#;
        assert_eq!(
            classify(Target::Rota, 503, None, same, FROZEN).kind,
            "error"
        );
        let none = r#"{"error": {"code": "not_leader", "message": "m", "leader": null}}"#;
        assert_eq!(
            classify(Target::Rota, 503, None, none, FROZEN).kind,
            "error"
        );
        let r = classify(Target::Rota, 307, Some("http://x/v1/kv/k"), "", FROZEN);
        assert_eq!(
            (r.kind, r.detail.as_str()),
            ("redirect", "http://x/v1/kv/k")
        );
    }

    #[test]
    fn etcd_errors_inside_a_200_are_errors() {
        let ok = classify(
            Target::Etcd,
            200,
            None,
            r#"{"header": {"revision": "5"}}"#,
            FROZEN,
        );
        assert_eq!(ok.kind, "ok");
        let body = r#"{"error": "etcdserver: request timed out", "code": 14}"#;
        let e = classify(Target::Etcd, 200, None, body, FROZEN);
        assert_eq!(
            (e.kind, e.detail.as_str()),
            ("error", "etcdserver: request timed out")
        );
        assert_eq!(
            classify(Target::Etcd, 503, None, "oops", FROZEN).kind,
            "error"
        );
    }

    fn rep(system: &str, rep: usize, answered: Option<f64>, elected: Option<f64>) -> Outcome {
        Outcome {
            system: system.to_string(),
            load_before: Some(1.0),
            load_after: Some(1.0),
            other_cpu_cores: None,
            finished_at: "2025-01-01T00:00:00Z".to_string(),
            nodes: Some(3),
            round: None,
            measurement: Measurement::Frozen {
                rep,
                frozen: 1,
                asked: 2,
                answer: if answered.is_some() {
                    "ok"
                } else {
                    "no answer"
                }
                .to_string(),
                status: answered.map(|_| 200),
                detail: String::new(),
                answered_ms: answered,
                elected_ms: elected,
                timeout_ms: 30_000,
                caught_up_ms: Some(100.0),
            },
        }
    }

    #[test]
    fn the_section_summarises_each_system() {
        let outcomes = [
            rep(ROTA, 1, Some(700.0), Some(600.0)),
            rep(ROTA, 2, Some(900.0), Some(500.0)),
            rep(ROTA, 3, Some(800.0), Some(550.0)),
            rep(ETCD, 1, Some(7000.0), Some(1500.0)),
            rep(ETCD, 2, None, Some(1200.0)),
        ];
        let refs: Vec<&Outcome> = outcomes.iter().collect();
        let md = frozen_section(&refs, 2);
        let row = |system: &str| {
            md.lines()
                .find(|l| l.starts_with(&format!("| {system} | ")))
                .unwrap_or_else(|| panic!("{md}"))
                .to_string()
        };
        // rota: answered 700, 800, 900; new leader 500, 550, 600; after 100, 250, 400.
        assert!(
            row(ROTA).contains("| 3 | 3 ok | 800 / 900 | 550 / 600 | 250 / 400 |"),
            "{md}"
        );
        assert!(
            row(ETCD)
                .contains("| 2 | 1 no answer, 1 ok | 7000 / 7000 | 1200 / 1500 | 5500 / 5500 |"),
            "{md}"
        );
        assert!(md.contains("request timeout 30000 ms"), "{md}");
    }
}
