use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use rota_core::trace::hex;
use serde_json::json;
use tokio::sync::mpsc;
use tracing_subscriber::layer::SubscriberExt;

use super::encode::{export_request, Resource};
use super::*;

/// Runs `f` with a [`TraceLayer`] (queue of `capacity`) installed, and answers the
/// spans it closed, in closing order, and how many it dropped.
fn traced(capacity: usize, f: impl FnOnce()) -> (Vec<SpanRecord>, u64) {
    let (tx, mut rx) = mpsc::channel(capacity);
    let dropped = Arc::new(AtomicU64::new(0));
    let layer = TraceLayer {
        spans: tx,
        dropped: dropped.clone(),
        ids: IdGenerator::new(),
    };
    let subscriber = tracing_subscriber::registry().with(layer.filtered());
    tracing::subscriber::with_default(subscriber, f);
    let mut spans = Vec::new();
    while let Ok(span) = rx.try_recv() {
        spans.push(span);
    }
    (spans, dropped.load(Ordering::Relaxed))
}

fn attr<'a>(span: &'a SpanRecord, key: &str) -> Option<&'a AttrValue> {
    span.attributes
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn resource() -> Resource {
    Resource {
        service_name: "rota".into(),
        service_version: "1.2.3".into(),
        instance: "n1".into(),
    }
}

#[test]
fn a_child_span_shares_the_trace_and_names_its_parent() {
    let (spans, dropped) = traced(16, || {
        let outer = tracing::info_span!(target: rota_core::TRACE_TARGET, "outer");
        let _outer = outer.enter();
        // Not traced: skipped, so the inner span's parent is the outer one.
        let between = tracing::info_span!("between");
        let _between = between.enter();
        tracing::info_span!(target: rota_core::TRACE_TARGET, "inner").in_scope(|| {});
    });
    assert_eq!(dropped, 0);
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["inner", "outer"],
        "only traced spans, as they close"
    );
    let (inner, outer) = (&spans[0], &spans[1]);
    assert_eq!(inner.trace_id, outer.trace_id);
    assert_eq!(inner.parent_span_id, Some(outer.span_id));
    assert_eq!(outer.parent_span_id, None);
    assert_ne!(inner.span_id, outer.span_id);
    assert!(outer.start_unix_nanos <= inner.start_unix_nanos);
    assert!(inner.end_unix_nanos <= outer.end_unix_nanos);
    assert!(outer.start_unix_nanos <= outer.end_unix_nanos);
}

#[test]
fn separate_roots_get_separate_traces_and_an_explicit_root_ignores_the_current_span() {
    let (spans, _) = traced(16, || {
        tracing::info_span!(target: rota_core::TRACE_TARGET, "a").in_scope(|| {
            tracing::info_span!(target: rota_core::TRACE_TARGET, parent: None, "b").in_scope(|| {});
        });
    });
    let (b, a) = (&spans[0], &spans[1]);
    assert_eq!(b.parent_span_id, None);
    assert_ne!(a.trace_id, b.trace_id);
}

#[test]
fn fields_become_typed_attributes_and_otel_fields_set_name_kind_and_status() {
    let (spans, _) = traced(16, || {
        let span = tracing::info_span!(
            target: rota_core::TRACE_TARGET,
            "http.request",
            otel.name = %format!("HTTP GET {}", "/v1/jobs/{name}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.route = "/v1/jobs/{name}",
            http.response.status_code = tracing::field::Empty,
            attempt = 2u32,
            offset = -3i64,
            huge = u64::MAX,
            forwarded = false,
            ratio = 0.5f64,
            node = %"n1",
            later = tracing::field::Empty,
        );
        span.record("http.response.status_code", 503u16);
        span.record("otel.status_code", "error");
        span.record("attempt", 3u32);
    });
    let span = &spans[0];
    assert_eq!(span.name, "HTTP GET /v1/jobs/{name}");
    assert_eq!(span.kind, SpanKind::Server);
    assert_eq!(span.status, Status::Error);
    let str_ = |s: &str| Some(AttrValue::String(s.into()));
    assert_eq!(attr(span, "http.route").cloned(), str_("/v1/jobs/{name}"));
    assert_eq!(attr(span, "node").cloned(), str_("n1"));
    assert_eq!(
        attr(span, "http.response.status_code"),
        Some(&AttrValue::Int(503))
    );
    assert_eq!(
        attr(span, "attempt"),
        Some(&AttrValue::Int(3)),
        "a later record replaces"
    );
    assert_eq!(attr(span, "offset"), Some(&AttrValue::Int(-3)));
    assert_eq!(attr(span, "huge").cloned(), str_(&u64::MAX.to_string()));
    assert_eq!(attr(span, "forwarded"), Some(&AttrValue::Bool(false)));
    assert_eq!(attr(span, "ratio"), Some(&AttrValue::Double(0.5)));
    assert_eq!(
        attr(span, "later"),
        None,
        "an unrecorded field is no attribute"
    );
    assert_eq!(attr(span, "otel.name"), None);
    assert_eq!(span.attributes.len(), 8, "{:?}", span.attributes);
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let (spans, dropped) = traced(2, || {
        for _ in 0..5 {
            tracing::info_span!(target: rota_core::TRACE_TARGET, "s").in_scope(|| {});
        }
    });
    assert_eq!(spans.len(), 2);
    assert_eq!(dropped, 3);
}

#[test]
fn the_json_body_follows_otlp() {
    let spans = vec![
        SpanRecord {
            trace_id: [0xab; 16],
            span_id: [1, 2, 3, 4, 5, 6, 7, 8],
            parent_span_id: Some([0xff, 0, 0, 0, 0, 0, 0, 1]),
            name: "raft.commit".into(),
            kind: SpanKind::Internal,
            start_unix_nanos: 1_700_000_000_000_000_001,
            end_unix_nanos: 1_700_000_000_000_000_002,
            attributes: vec![
                ("s".into(), AttrValue::String("x".into())),
                ("i".into(), AttrValue::Int(-7)),
                ("b".into(), AttrValue::Bool(true)),
                ("d".into(), AttrValue::Double(1.5)),
                ("nan".into(), AttrValue::Double(f64::NAN)),
            ],
            status: Status::Error,
            status_message: Some("no leader".into()),
        },
        SpanRecord {
            trace_id: [0; 16],
            span_id: [0; 8],
            parent_span_id: None,
            name: "root".into(),
            kind: SpanKind::Server,
            start_unix_nanos: 5,
            end_unix_nanos: 6,
            attributes: vec![],
            status: Status::Unset,
            status_message: Some("only sent with an error".into()),
        },
    ];
    let body = export_request(&resource(), &spans);
    let resource_spans = &body["resourceSpans"][0];
    assert_eq!(
        resource_spans["resource"]["attributes"],
        json!([
            {"key": "service.name", "value": {"stringValue": "rota"}},
            {"key": "service.version", "value": {"stringValue": "1.2.3"}},
            {"key": "service.instance.id", "value": {"stringValue": "n1"}},
        ])
    );
    let scope = &resource_spans["scopeSpans"][0];
    assert_eq!(scope["scope"]["name"], "rota");
    assert_eq!(
        scope["spans"][0],
        json!({
            "traceId": "abababababababababababababababab",
            "spanId": "0102030405060708",
            "parentSpanId": "ff00000000000001",
            "name": "raft.commit",
            "kind": 1,
            "startTimeUnixNano": "1700000000000000001",
            "endTimeUnixNano": "1700000000000000002",
            "attributes": [
                {"key": "s", "value": {"stringValue": "x"}},
                {"key": "i", "value": {"intValue": "-7"}},
                {"key": "b", "value": {"boolValue": true}},
                {"key": "d", "value": {"doubleValue": 1.5}},
                {"key": "nan", "value": {"doubleValue": "NaN"}},
            ],
            "status": {"code": 2, "message": "no leader"},
        })
    );
    let root = &scope["spans"][1];
    assert_eq!(root.get("parentSpanId"), None);
    assert_eq!(root["kind"], 2);
    assert_eq!(root["status"], json!({"code": 0}));
}

#[test]
fn ids_are_hex_of_the_right_length_and_distinct() {
    let ids = IdGenerator::new();
    let trace = hex(&ids.trace_id());
    let span = hex(&ids.span_id());
    assert_eq!(trace.len(), 32);
    assert_eq!(span.len(), 16);
    assert!(trace
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    let many: std::collections::HashSet<[u8; 8]> = (0..10_000).map(|_| ids.span_id()).collect();
    assert_eq!(many.len(), 10_000);
    assert!(!many.contains(&[0; 8]));
}

#[test]
fn the_traces_url_is_the_endpoint_with_v1_traces() {
    let url = |s: &str| traces_url(&reqwest::Url::parse(s).unwrap());
    assert_eq!(
        url("http://127.0.0.1:4318"),
        "http://127.0.0.1:4318/v1/traces"
    );
    assert_eq!(
        url("http://collector:4318/otlp/"),
        "http://collector:4318/otlp/v1/traces"
    );
    assert_eq!(
        url("https://c.example/v1/traces"),
        "https://c.example/v1/traces"
    );
}

#[test]
fn traced_spans_are_left_out_of_the_log_lines() {
    // The log output's filter, even at its most verbose, passes other spans only.
    let (tx, mut rx) = mpsc::channel(16);
    let layer = TraceLayer {
        spans: tx,
        dropped: Arc::default(),
        ids: IdGenerator::new(),
    };
    let filter = tracing_subscriber::EnvFilter::new("trace").add_directive(not_logged());
    let subscriber = tracing_subscriber::registry().with(layer.with_filter(filter));
    tracing::subscriber::with_default(subscriber, || {
        tracing::error_span!(target: rota_core::TRACE_TARGET, "traced").in_scope(|| {});
        tracing::trace_span!("logged").in_scope(|| {});
    });
    let names: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["logged"]);
}

#[test]
fn a_traceparent_field_makes_a_root_span_the_child_of_a_remote_one() {
    let remote = rota_core::trace::SpanContext {
        trace_id: [7; 16],
        span_id: [9; 8],
    };
    let header = remote.traceparent();
    let (spans, _) = traced(16, || {
        tracing::info_span!(target: rota_core::TRACE_TARGET, "remote child", traceparent = %header)
            .in_scope(|| {});
        // A local parent wins over the header.
        tracing::info_span!(target: rota_core::TRACE_TARGET, "local").in_scope(|| {
            tracing::info_span!(target: rota_core::TRACE_TARGET, "local child", traceparent = %header)
                .in_scope(|| {});
        });
        tracing::info_span!(target: rota_core::TRACE_TARGET, "bad header", traceparent = "00-xyz")
            .in_scope(|| {});
    });
    let by_name = |name: &str| spans.iter().find(|s| s.name == name).unwrap();
    let child = by_name("remote child");
    assert_eq!(child.trace_id, remote.trace_id);
    assert_eq!(child.parent_span_id, Some(remote.span_id));
    assert!(child.attributes.is_empty(), "{:?}", child.attributes);
    let local = by_name("local");
    assert_eq!(by_name("local child").parent_span_id, Some(local.span_id));
    assert_eq!(by_name("bad header").parent_span_id, None);
}

#[test]
fn the_current_context_is_that_of_the_innermost_traced_span() {
    let (tx, mut rx) = mpsc::channel(16);
    let layer = TraceLayer {
        spans: tx,
        dropped: Arc::default(),
        ids: IdGenerator::new(),
    };
    // Another layer sees every span, so an untraced span can be the current one.
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::sink);
    let subscriber = tracing_subscriber::registry()
        .with(logs)
        .with(layer.filtered());
    let mut seen = None;
    tracing::subscriber::with_default(subscriber, || {
        assert_eq!(current_context(), None, "no span");
        tracing::info_span!(target: rota_core::TRACE_TARGET, "traced").in_scope(|| {
            tracing::info_span!("not traced").in_scope(|| {
                assert_eq!(
                    tracing::Span::current().metadata().unwrap().name(),
                    "not traced"
                );
                seen = current_context();
            });
        });
    });
    let traced = rx.try_recv().expect("the traced span");
    let expected = rota_core::trace::SpanContext {
        trace_id: traced.trace_id,
        span_id: traced.span_id,
    };
    assert_eq!(seen, Some(expected));
    assert!(rx.try_recv().is_err(), "only the traced span is exported");
}

#[test]
fn traced_spans_below_info_are_not_exported_even_when_logs_are_verbose() {
    let (tx, mut rx) = mpsc::channel(16);
    let layer = TraceLayer {
        spans: tx,
        dropped: Arc::default(),
        ids: IdGenerator::new(),
    };
    // Logs at every level: the debug span reaches the exporter's filter.
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::sink);
    let subscriber = tracing_subscriber::registry()
        .with(logs)
        .with(layer.filtered());
    tracing::subscriber::with_default(subscriber, || {
        tracing::debug_span!(target: rota_core::TRACE_TARGET, "debug").in_scope(|| {});
        tracing::info_span!(target: rota_core::TRACE_TARGET, "info").in_scope(|| {});
    });
    let names: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["info"]);
}
