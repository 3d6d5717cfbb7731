//! Trace context shared by the crates that open traced spans and the exporter that
//! sends them: the `tracing` target of those spans, a span's OpenTelemetry ids and
//! their W3C `traceparent` form, and a hook through which a crate finds the ids of
//! the current span without knowing how the exporter keeps them.

use std::sync::OnceLock;

/// The `tracing` target of the spans that are exported as OpenTelemetry traces (one
/// per API request, per Raft commit, per execution attempt). The exporter takes
/// only spans of this target, and the log output leaves them out, so a node
/// without a trace endpoint pays nothing for them. They are `info` spans: the
/// exporter takes no span below that level.
pub const TRACE_TARGET: &str = "rota_trace";

/// The W3C trace context header, carried by writes a follower forwards.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// A span's OpenTelemetry identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

impl SpanContext {
    /// `00-{trace id}-{span id}-01` (version 0, sampled: every traced span is sent).
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-01", hex(&self.trace_id), hex(&self.span_id))
    }

    /// Reads a `traceparent` header: `None` when it is malformed, of the invalid
    /// version `ff`, or has an all-zero id (the W3C rules say to ignore it then).
    pub fn from_traceparent(text: &str) -> Option<SpanContext> {
        let mut parts = text.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        // Version 00 has exactly four parts; later versions may append more.
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        unhex::<1>(version)?;
        unhex::<1>(flags)?;
        let context = SpanContext {
            trace_id: unhex(trace)?,
            span_id: unhex(span)?,
        };
        (context.trace_id != [0; 16] && context.span_id != [0; 8]).then_some(context)
    }
}

/// Lower-case hex, as W3C and OTLP write ids.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// Exactly `N` bytes from `2N` lower-case hex digits.
fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = digit(digits[2 * i])? << 4 | digit(digits[2 * i + 1])?;
    }
    Some(out)
}

static CURRENT: OnceLock<fn() -> Option<SpanContext>> = OnceLock::new();

/// Installs how [`current`] finds the current span's context: the exporter's
/// business, set once when it starts. Later calls change nothing.
pub fn set_current_hook(hook: fn() -> Option<SpanContext>) {
    let _ = CURRENT.set(hook);
}

/// The context of the innermost traced span the calling code runs in; `None`
/// when traces are not exported or no traced span encloses the caller.
pub fn current() -> Option<SpanContext> {
    CURRENT.get().and_then(|hook| hook())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_bad_ones_are_ignored() {
        let context = SpanContext {
            trace_id: [0x4b; 16],
            span_id: [0, 1, 2, 3, 4, 5, 6, 0xf7],
        };
        let text = context.traceparent();
        assert_eq!(
            text,
            "00-4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b-00010203040506f7-01"
        );
        assert_eq!(SpanContext::from_traceparent(&text), Some(context));
        let future = format!("01{}-extra", &text[2..]);
        assert_eq!(SpanContext::from_traceparent(&future), Some(context));
        for bad in [
            "",
            "00-4b4b-00010203040506f7-01",
            "ff-4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b-00010203040506f7-01",
            "00-00000000000000000000000000000000-00010203040506f7-01",
            "00-4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b-0000000000000000-01",
            "00-4B4B4B4B4B4B4B4B4B4B4B4B4B4B4B4B-00010203040506f7-01",
            "00-4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b-00010203040506f7-01-x",
            "00-4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b-00010203040506f7-zz",
        ] {
            assert_eq!(SpanContext::from_traceparent(bad), None, "{bad:?}");
        }
    }
}
