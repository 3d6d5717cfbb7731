//! The dns provider against a real (tiny) name server on loopback: a UDP socket
//! that answers from a table the test changes between refreshes. Each wait has a
//! timeout so a missing update fails instead of hanging.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, SRV};
use hickory_resolver::proto::rr::{Name, Record};
use rota_core::targets::TargetSetState;
use rota_core::HumanDuration;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::*;
use crate::Manager;

const WAIT: Duration = Duration::from_secs(10);
const REFRESH: Duration = Duration::from_millis(100);
const QUERY_TIMEOUT: Duration = Duration::from_millis(200);

/// What the server answers for a name and type.
#[derive(Debug, Clone)]
enum Answer {
    Records(Vec<RData>),
    ServFail,
    /// Never answers: the client times out.
    Silent,
}

type Zone = Arc<Mutex<HashMap<(String, RecordType), Answer>>>;

/// A name server on 127.0.0.1: names not in its zone are NXDOMAIN, a name in it
/// asked for another type answers NOERROR with no records.
struct FakeDns {
    addr: SocketAddr,
    zone: Zone,
    task: JoinHandle<()>,
}

impl FakeDns {
    async fn start() -> FakeDns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let zone: Zone = Arc::default();
        let task = tokio::spawn(serve(socket, zone.clone()));
        FakeDns { addr, zone, task }
    }

    fn set(&self, name: &str, record_type: RecordType, answer: Answer) {
        self.zone
            .lock()
            .unwrap()
            .insert((name.to_string(), record_type), answer);
    }

    fn spec(&self, names: &[&str], record: DnsRecord, port: Option<u16>) -> DnsSpec {
        DnsSpec {
            names: names.iter().map(|n| n.to_string()).collect(),
            record,
            port,
            refresh_interval: HumanDuration::from_secs(30),
            nameservers: vec![self.addr.to_string()],
        }
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(socket: UdpSocket, zone: Zone) {
    let mut buf = vec![0; 4096];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            return;
        };
        let Ok(request) = Message::from_vec(&buf[..len]) else {
            continue;
        };
        let Some(query) = request.queries.first().cloned() else {
            continue;
        };
        let key = (
            query.name().to_ascii().trim_end_matches('.').to_lowercase(),
            query.query_type(),
        );
        let known_name = zone.lock().unwrap().keys().any(|(n, _)| *n == key.0);
        let answer = zone.lock().unwrap().get(&key).cloned();
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.message_type = MessageType::Response;
        response.metadata.authoritative = true;
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        response.add_query(query.clone());
        match answer {
            Some(Answer::Silent) => continue,
            Some(Answer::ServFail) => response.metadata.response_code = ResponseCode::ServFail,
            Some(Answer::Records(records)) => {
                for rdata in records {
                    response.add_answer(Record::from_rdata(query.name().clone(), 0, rdata));
                }
            }
            None if known_name => {} // NOERROR, no records of this type
            None => response.metadata.response_code = ResponseCode::NXDomain,
        }
        let _ = socket.send_to(&response.to_vec().unwrap(), peer).await;
    }
}

fn srv(target: &str, port: u16) -> RData {
    RData::SRV(SRV::new(0, 0, port, Name::from_str(target).unwrap()))
}

fn a(ip: &str) -> RData {
    RData::A(A(ip.parse::<Ipv4Addr>().unwrap()))
}

fn aaaa(ip: &str) -> RData {
    RData::AAAA(AAAA(ip.parse::<Ipv6Addr>().unwrap()))
}

struct Running {
    rx: mpsc::Receiver<Update>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

fn start(spec: &DnsSpec) -> Running {
    let provider = DnsProvider::new(spec)
        .with_refresh_interval(REFRESH)
        .with_query_timeout(QUERY_TIMEOUT, 1);
    let (tx, rx) = mpsc::channel(64);
    let stop = CancellationToken::new();
    let task = tokio::spawn(Box::new(provider).run(tx, stop.clone()));
    Running { rx, stop, task }
}

impl Running {
    /// The next update for `source`, skipping others.
    async fn next_for(&mut self, source: &str) -> Result<Vec<Target>, String> {
        tokio::time::timeout(WAIT, async {
            loop {
                let update = self.rx.recv().await.expect("the provider ended");
                if update.source == source {
                    return update.targets;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no update for {source} within {WAIT:?}"))
    }

    /// The first update for `source` that satisfies `want`.
    async fn until(
        &mut self,
        source: &str,
        want: impl Fn(&Result<Vec<Target>, String>) -> bool,
    ) -> Result<Vec<Target>, String> {
        tokio::time::timeout(WAIT, async {
            loop {
                let targets = self.next_for(source).await;
                if want(&targets) {
                    return targets;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no update as wanted within {WAIT:?}"))
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

fn addresses(targets: &[Target]) -> Vec<&str> {
    targets.iter().map(|t| t.address.as_str()).collect()
}

const SVC: &str = "_http._tcp.gw.test";

#[tokio::test]
async fn srv_answers_become_targets_with_labels_and_follow_changes() {
    let dns = FakeDns::start().await;
    dns.set(
        SVC,
        RecordType::SRV,
        Answer::Records(vec![srv("b.gw.test.", 8081), srv("a.gw.test.", 8080)]),
    );
    let mut p = start(&dns.spec(&[SVC], DnsRecord::Srv, None));
    let targets = p.next_for(SVC).await.unwrap();
    assert_eq!(addresses(&targets), ["a.gw.test:8080", "b.gw.test:8081"]);
    let labels = &targets[0].labels;
    assert_eq!(labels[META_DNS_NAME], SVC);
    assert_eq!(labels[META_SRV_TARGET], "a.gw.test");
    assert_eq!(labels[META_SRV_PORT], "8080");

    // The answers change between refreshes: the next round sees it, cache or not.
    dns.set(
        SVC,
        RecordType::SRV,
        Answer::Records(vec![srv("c.gw.test.", 9000), srv(".", 1)]),
    );
    let targets = p
        .until(SVC, |t| t.as_ref().is_ok_and(|t| t.len() == 1))
        .await
        .unwrap();
    assert_eq!(
        addresses(&targets),
        ["c.gw.test:9000"],
        "a \".\" target is skipped"
    );
    p.stop().await;
}

#[tokio::test]
async fn a_and_aaaa_answers_take_the_spec_s_port() {
    let dns = FakeDns::start().await;
    dns.set(
        "gw.test",
        RecordType::A,
        Answer::Records(vec![a("10.0.0.2"), a("10.0.0.1")]),
    );
    dns.set(
        "gw.test",
        RecordType::AAAA,
        Answer::Records(vec![aaaa("fd00::1")]),
    );
    let mut p = start(&dns.spec(&["gw.test"], DnsRecord::A, Some(80)));
    let targets = p.next_for("gw.test").await.unwrap();
    assert_eq!(addresses(&targets), ["10.0.0.1:80", "10.0.0.2:80"]);
    assert_eq!(targets[0].labels[META_DNS_NAME], "gw.test");
    assert!(!targets[0].labels.contains_key(META_SRV_TARGET));
    p.stop().await;

    let mut p = start(&dns.spec(&["gw.test"], DnsRecord::Aaaa, Some(8443)));
    let targets = p.next_for("gw.test").await.unwrap();
    assert_eq!(addresses(&targets), ["[fd00::1]:8443"]);
    p.stop().await;
}

#[tokio::test]
async fn a_name_without_records_has_no_targets() {
    let dns = FakeDns::start().await;
    dns.set(
        "gw.test",
        RecordType::A,
        Answer::Records(vec![a("10.0.0.1")]),
    );
    // NXDOMAIN, and a name that exists without SRV records: both answer "none".
    let mut p = start(&dns.spec(&["missing.test", "gw.test"], DnsRecord::Srv, None));
    assert_eq!(p.next_for("missing.test").await, Ok(vec![]));
    assert_eq!(p.next_for("gw.test").await, Ok(vec![]));
    p.stop().await;
}

#[tokio::test]
async fn a_servfail_is_an_error_naming_the_name() {
    let dns = FakeDns::start().await;
    dns.set(SVC, RecordType::SRV, Answer::ServFail);
    let mut p = start(&dns.spec(&[SVC], DnsRecord::Srv, None));
    let err = p.next_for(SVC).await.unwrap_err();
    assert!(
        err.starts_with(&format!("dns: resolving SRV {SVC}: ")),
        "{err}"
    );
    assert!(
        err.contains("SERVFAIL") || err.contains("Server Failure"),
        "{err}"
    );
    p.stop().await;
}

#[tokio::test]
async fn a_name_that_stops_answering_keeps_its_last_targets_and_shows_an_error() {
    let dns = FakeDns::start().await;
    let other = "_http._tcp.other.test";
    dns.set(
        SVC,
        RecordType::SRV,
        Answer::Records(vec![srv("a.gw.test.", 80)]),
    );
    dns.set(
        other,
        RecordType::SRV,
        Answer::Records(vec![srv("o.other.test.", 80)]),
    );
    let provider = DnsProvider::new(&dns.spec(&[SVC, other], DnsRecord::Srv, None))
        .with_refresh_interval(REFRESH)
        .with_query_timeout(QUERY_TIMEOUT, 1);
    let (out_tx, mut out) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let task = tokio::spawn(crate::discover(
        Box::new(provider),
        Manager::new("gw", Duration::ZERO),
        out_tx,
        stop.clone(),
    ));
    let both = ["a.gw.test:80", "o.other.test:80"];
    let state = until(&mut out, |s| addresses(&s.targets) == both).await;
    assert_eq!(state.error, None);

    dns.set(SVC, RecordType::SRV, Answer::Silent);
    let state = until(&mut out, |s| s.error.is_some()).await;
    assert_eq!(
        addresses(&state.targets),
        both,
        "the silent name's targets stay"
    );
    let err = state.error.unwrap();
    assert!(
        err.starts_with(&format!("dns: resolving SRV {SVC}: ")),
        "{err}"
    );
    assert!(err.contains("timed out"), "{err}");

    dns.set(
        SVC,
        RecordType::SRV,
        Answer::Records(vec![srv("b.gw.test.", 80)]),
    );
    let state = until(&mut out, |s| s.error.is_none()).await;
    assert_eq!(
        addresses(&state.targets),
        ["b.gw.test:80", "o.other.test:80"]
    );

    stop.cancel();
    task.await.unwrap();
}

/// The first state from `out` that satisfies `want`.
async fn until(
    out: &mut mpsc::Receiver<TargetSetState>,
    want: impl Fn(&TargetSetState) -> bool,
) -> TargetSetState {
    tokio::time::timeout(WAIT, async {
        loop {
            let state = out.recv().await.expect("the manager ended");
            if want(&state) {
                return state;
            }
        }
    })
    .await
    .expect("the state within the wait")
}
