//! The body of `POST /v1/traces` in OTLP's JSON encoding: an
//! `ExportTraceServiceRequest` as protobuf's JSON mapping writes it, with the
//! exceptions OTLP makes (trace and span ids as hex, not base64; enums as numbers).
//! 64-bit integers are strings, as the JSON mapping writes them.

use rota_core::trace::hex;
use serde_json::{json, Value};

use super::{AttrValue, SpanRecord, Status};

/// Who sends the spans: OTLP's `Resource`.
#[derive(Debug, Clone)]
pub(crate) struct Resource {
    pub service_name: String,
    pub service_version: String,
    /// `service.instance.id`: the node's name.
    pub instance: String,
}

/// The instrumentation scope every span is reported under.
pub(crate) const SCOPE: &str = "rota";

/// One request carrying `spans`.
pub(crate) fn export_request(resource: &Resource, spans: &[SpanRecord]) -> Value {
    let resource_attributes = [
        ("service.name", &resource.service_name),
        ("service.version", &resource.service_version),
        ("service.instance.id", &resource.instance),
    ]
    .map(|(key, value)| attribute(key, &AttrValue::String(value.clone())));
    json!({
        "resourceSpans": [{
            "resource": { "attributes": resource_attributes },
            "scopeSpans": [{
                "scope": { "name": SCOPE, "version": resource.service_version },
                "spans": spans.iter().map(span).collect::<Vec<_>>(),
            }],
        }],
    })
}

fn span(span: &SpanRecord) -> Value {
    let mut out = json!({
        "traceId": hex(&span.trace_id),
        "spanId": hex(&span.span_id),
        "name": span.name,
        "kind": span.kind as i32,
        "startTimeUnixNano": span.start_unix_nanos.to_string(),
        "endTimeUnixNano": span.end_unix_nanos.to_string(),
        "attributes": span
            .attributes
            .iter()
            .map(|(key, value)| attribute(key, value))
            .collect::<Vec<_>>(),
        "status": { "code": span.status as i32 },
    });
    if let Some(parent) = &span.parent_span_id {
        out["parentSpanId"] = json!(hex(parent));
    }
    if let (Some(message), Status::Error) = (&span.status_message, span.status) {
        out["status"]["message"] = json!(message);
    }
    out
}

fn attribute(key: &str, value: &AttrValue) -> Value {
    let value = match value {
        AttrValue::String(s) => json!({ "stringValue": s }),
        AttrValue::Int(i) => json!({ "intValue": i.to_string() }),
        AttrValue::Bool(b) => json!({ "boolValue": b }),
        // JSON has no NaN or infinities; protobuf's mapping writes them as strings.
        AttrValue::Double(d) if d.is_nan() => json!({ "doubleValue": "NaN" }),
        AttrValue::Double(d) if d.is_infinite() => {
            json!({ "doubleValue": if *d > 0.0 { "Infinity" } else { "-Infinity" } })
        }
        AttrValue::Double(d) => json!({ "doubleValue": d }),
    };
    json!({ "key": key, "value": value })
}
