//! Request inputs checked before a handler runs: path segments, query parameters,
//! session headers and JSON bodies. Each rejection is an [`ApiError`] naming the
//! parameter or header, so no input reaches a handler unchecked and no extractor
//! answers with axum's plain-text rejections.

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use rota_core::SessionKey;
use serde::de::DeserializeOwned;
use ulid::Ulid;

use crate::error::ApiError;

/// Largest request body accepted (job documents, KV values).
pub const BODY_LIMIT: usize = 1024 * 1024;

pub const CLIENT_ID_HEADER: &str = "Rota-Client-Id";
pub const REQUEST_SEQ_HEADER: &str = "Rota-Request-Seq";

/// Longest KV key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest `Rota-Client-Id`.
pub const MAX_CLIENT_ID_CHARS: usize = 128;

/// A path parameter; a segment that does not decode is a 400, not a plain-text
/// rejection.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e| ApiError::invalid("path", e.body_text()))
    }
}

/// The query string as name/value pairs, with typed accessors that name the
/// parameter on error. Unknown parameters are refused so a typo (`?limt=5`) is
/// not silently ignored.
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map(|Query(pairs)| Params { pairs })
            .map_err(|e| ApiError::invalid("query", e.body_text()))
    }
}

impl Params {
    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Params {
            pairs: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Refuses any parameter not in `allowed`.
    pub fn only(&self, allowed: &[&str]) -> Result<&Self, ApiError> {
        for (name, _) in &self.pairs {
            if !allowed.contains(&name.as_str()) {
                let accepted = if allowed.is_empty() {
                    "this route takes no query parameters".to_string()
                } else {
                    format!("accepted: {}", allowed.join(", "))
                };
                return Err(ApiError::invalid(
                    name.clone(),
                    format!("unknown query parameter; {accepted}"),
                ));
            }
        }
        Ok(self)
    }

    /// The last value given for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean flag: absent = `false`; `true`, `1` or an empty value (`?follow`)
    /// = `true`; `false` or `0` = `false`.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(false),
            Some("" | "true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(ApiError::invalid(
                name,
                format!("{other:?} is not a boolean; accepted: true, false"),
            )),
        }
    }

    pub fn u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::invalid(
                        name,
                        format!("{v:?} is not a non-negative integer (0 to {})", u64::MAX),
                    )
                })
            })
            .transpose()
    }

    /// An integer within `min..=max`, `default` when absent.
    pub fn bounded(&self, name: &str, min: u64, max: u64, default: u64) -> Result<u64, ApiError> {
        let out_of_range = || ApiError::invalid(name, format!("must be between {min} and {max}"));
        match self.get(name) {
            None => Ok(default),
            Some(v) => {
                let n = v.parse::<u64>().map_err(|_| out_of_range())?;
                if (min..=max).contains(&n) {
                    Ok(n)
                } else {
                    Err(out_of_range())
                }
            }
        }
    }

    pub fn ulid(&self, name: &str) -> Result<Option<Ulid>, ApiError> {
        self.get(name).map(|v| parse_ulid(name, v)).transpose()
    }
}

pub fn parse_ulid(field: &str, s: &str) -> Result<Ulid, ApiError> {
    Ulid::from_string(s).map_err(|_| {
        ApiError::invalid(
            field,
            format!("{s:?} is not a ULID (26 characters of Crockford base32)"),
        )
    })
}

/// Checks a KV key: 1 to 1024 bytes, no NUL.
pub fn validate_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::invalid("key", "must not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ApiError::invalid(
            "key",
            format!(
                "is {} bytes long; at most {MAX_KEY_BYTES} are accepted",
                key.len()
            ),
        ));
    }
    if key.contains('\0') {
        return Err(ApiError::invalid("key", "must not contain NUL bytes"));
    }
    Ok(())
}

/// The session headers of a write (both or neither), and the API token it is
/// made with (its name; `None` while no token exists), to which the write is
/// attributed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session(pub Option<SessionKey>, pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let token = parts
            .extensions
            .get::<crate::auth::Caller>()
            .and_then(|c| c.token.clone());
        Ok(Session(parse_session(&parts.headers)?, token))
    }
}

impl Session {
    /// `command`, attributed to the request's token when it has one.
    pub fn attribute(&self, command: rota_core::Command) -> rota_core::Command {
        match &self.1 {
            Some(token) => rota_core::Command::Attributed {
                token: token.clone(),
                command: Box::new(command),
            },
            None => command,
        }
    }

    pub fn seq(&self) -> Option<u64> {
        self.0.as_ref().map(|s| s.seq)
    }
}

/// Reads `Rota-Client-Id` (1-128 printable ASCII characters) and `Rota-Request-Seq`
/// (an integer >= 1). One without the other is refused: half a session would
/// silently lose the retry guarantee the client asked for.
pub fn parse_session(headers: &HeaderMap) -> Result<Option<SessionKey>, ApiError> {
    let single = |name: &'static str| -> Result<Option<&str>, ApiError> {
        let mut values = headers.get_all(name).iter();
        let Some(first) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(ApiError::invalid(name, "given more than once"));
        }
        first
            .to_str()
            .map(Some)
            .map_err(|_| ApiError::invalid(name, "must be printable ASCII"))
    };
    let client_id = single(CLIENT_ID_HEADER)?;
    let seq = single(REQUEST_SEQ_HEADER)?;
    match (client_id, seq) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(ApiError::invalid(
            REQUEST_SEQ_HEADER,
            format!("missing; {CLIENT_ID_HEADER} and {REQUEST_SEQ_HEADER} go together"),
        )),
        (None, Some(_)) => Err(ApiError::invalid(
            CLIENT_ID_HEADER,
            format!("missing; {CLIENT_ID_HEADER} and {REQUEST_SEQ_HEADER} go together"),
        )),
        (Some(client_id), Some(seq)) => {
            let printable = client_id.bytes().all(|b| (0x20..=0x7e).contains(&b));
            if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID_CHARS || !printable {
                return Err(ApiError::invalid(
                    CLIENT_ID_HEADER,
                    format!("must be 1 to {MAX_CLIENT_ID_CHARS} printable ASCII characters"),
                ));
            }
            let seq = seq
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    ApiError::invalid(
                        REQUEST_SEQ_HEADER,
                        format!("{seq:?} is not an integer from 1 to {}", u64::MAX),
                    )
                })?;
            Ok(Some(SessionKey {
                client_id: client_id.to_string(),
                seq,
            }))
        }
    }
}

/// Deepest nesting of arrays and objects a body may have. What a body holds is
/// stored inside records and carried inside log entries and Raft messages, each a
/// few levels deeper, and all of them are read back by a parser that stops at 128
/// levels: a body accepted at 127 would be a job or event nobody could read again.
pub const MAX_JSON_DEPTH: usize = 64;

/// Turns the body extractor's outcome into bytes or the contract's error (413 when
/// over [`BODY_LIMIT`], 400 when nested deeper than [`MAX_JSON_DEPTH`]).
pub fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit: BODY_LIMIT }
        } else {
            ApiError::UnreadableBody(e)
        }
    })?;
    if nests_deeper_than(&bytes, MAX_JSON_DEPTH) {
        return Err(ApiError::invalid(
            "",
            format!(
                "the body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep, \
                 the most accepted"
            ),
        ));
    }
    Ok(bytes)
}

/// Whether the JSON text `bytes` opens more than `limit` arrays and objects inside
/// one another (brackets inside strings do not count). Malformed text is left to
/// the parser.
fn nests_deeper_than(bytes: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Parses a JSON body: malformed JSON is `invalid_json`; well-formed JSON of the
/// wrong shape is `invalid`, naming the field when serde can tell.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => ApiError::InvalidJson(e),
            // serde's text is the human message here ("missing field `value`"), meant
            // for the client as it is; `Invalid` carries field and message, no source.
            Category::Data => ApiError::invalid(field_of(&e.to_string()), e.to_string()),
        }
    })
}

/// serde names a missing or unknown field in backticks (`missing field `value``);
/// that name is the best `field` available without a path-tracking deserializer.
fn field_of(message: &str) -> String {
    message
        .split('`')
        .nth(1)
        .filter(|f| !f.is_empty())
        .unwrap_or("")
        .to_string()
}

/// Parses a JSON object document whose `name` may be omitted (then the path's is
/// used) but must not contradict the path. `kind` names it in errors ("workflow");
/// `example` shows its shape.
pub fn named_document(
    kind: &str,
    name: &str,
    bytes: &[u8],
    example: &str,
) -> Result<serde_json::Value, ApiError> {
    let mut doc: serde_json::Value = parse_json(bytes)?;
    let Some(obj) = doc.as_object_mut() else {
        return Err(ApiError::invalid(
            "",
            format!("a {kind} document is a JSON object, e.g. {example}"),
        ));
    };
    match obj.get("name") {
        None => {
            obj.insert("name".into(), serde_json::Value::String(name.to_string()));
        }
        Some(serde_json::Value::String(n)) if n == name => {}
        Some(other) => {
            return Err(ApiError::invalid(
                "name",
                format!("the body names the {kind} {other} but the path names it {name:?}; omit it or make them match"),
            ));
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn nesting_is_counted_outside_strings_only() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(!nests_deeper_than(nested(3).as_bytes(), 3));
        assert!(nests_deeper_than(nested(4).as_bytes(), 3));
        assert!(nests_deeper_than(br#"{"a": {"b": [{"c": 1}]}}"#, 3));
        assert!(!nests_deeper_than(
            br#"{"a": "[[[[{{{{", "b": ["\"]]]"]}"#,
            2
        ));
        assert!(!nests_deeper_than(br#"{"a": "\\", "b": [1]}"#, 2));
        // Closing more than was opened never wraps around.
        assert!(!nests_deeper_than(b"]]]]{}", 1));
    }

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_bytes(v).expect("header value"));
        }
        h
    }

    fn field(e: ApiError) -> String {
        match e {
            ApiError::Invalid { field, .. } => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn session_both_or_neither() {
        assert_eq!(parse_session(&HeaderMap::new()).unwrap(), None);
        let ok = parse_session(&headers(&[
            ("rota-client-id", b"cli-01H"),
            ("rota-request-seq", b"7"),
        ]))
        .unwrap();
        assert_eq!(
            ok,
            Some(SessionKey {
                client_id: "cli-01H".into(),
                seq: 7
            })
        );
        let e = parse_session(&headers(&[("rota-client-id", b"c")])).unwrap_err();
        assert_eq!(field(e), REQUEST_SEQ_HEADER);
        let e = parse_session(&headers(&[("rota-request-seq", b"1")])).unwrap_err();
        assert_eq!(field(e), CLIENT_ID_HEADER);
    }

    #[test]
    fn session_values_are_checked() {
        let long = "x".repeat(129);
        let max = "x".repeat(128);
        assert!(parse_session(&headers(&[
            ("rota-client-id", max.as_bytes()),
            ("rota-request-seq", b"1")
        ]))
        .is_ok());
        let bad_ids: [&[u8]; 3] = [b"", long.as_bytes(), b"caf\xc3\xa9"];
        for id in bad_ids {
            let e = parse_session(&headers(&[
                ("rota-client-id", id),
                ("rota-request-seq", b"1"),
            ]))
            .unwrap_err();
            assert_eq!(field(e), CLIENT_ID_HEADER, "{id:?}");
        }
        let bad_seqs: [&[u8]; 4] = [b"0", b"-1", b"x", b"18446744073709551616"];
        for seq in bad_seqs {
            let e = parse_session(&headers(&[
                ("rota-client-id", b"c"),
                ("rota-request-seq", seq),
            ]))
            .unwrap_err();
            assert_eq!(field(e), REQUEST_SEQ_HEADER, "{seq:?}");
        }
        let e = parse_session(&headers(&[
            ("rota-client-id", b"c"),
            ("rota-request-seq", b"1"),
            ("rota-request-seq", b"2"),
        ]))
        .unwrap_err();
        assert_eq!(field(e), REQUEST_SEQ_HEADER);
    }

    #[test]
    fn query_parameters_name_themselves() {
        let p = Params::from_pairs(&[("limit", "0"), ("before", "nope"), ("follow", "yes")]);
        assert_eq!(field(p.bounded("limit", 1, 1000, 20).unwrap_err()), "limit");
        assert_eq!(field(p.ulid("before").unwrap_err()), "before");
        assert_eq!(field(p.flag("follow").unwrap_err()), "follow");
        assert_eq!(field(p.only(&["limit"]).unwrap_err()), "before");
        assert_eq!(p.u64("limit").unwrap(), Some(0));

        let p = Params::from_pairs(&[("limit", "1000"), ("stale", ""), ("if_revision", "x")]);
        assert_eq!(p.bounded("limit", 1, 1000, 20).unwrap(), 1000);
        assert_eq!(p.bounded("other", 1, 1000, 20).unwrap(), 20);
        assert!(p.flag("stale").unwrap());
        assert!(!p.flag("follow").unwrap());
        assert_eq!(field(p.u64("if_revision").unwrap_err()), "if_revision");
        assert_eq!(
            field(
                Params::from_pairs(&[("limit", "1001")])
                    .bounded("limit", 1, 1000, 20)
                    .unwrap_err()
            ),
            "limit"
        );
        let id = Ulid::generate();
        let p = Params::from_pairs(&[("before", &id.to_string())]);
        assert_eq!(p.ulid("before").unwrap(), Some(id));
        assert!(p.only(&["before"]).is_ok());
    }

    #[test]
    fn keys_are_checked() {
        assert!(validate_key("app/color").is_ok());
        assert!(validate_key(&"k".repeat(1024)).is_ok());
        for bad in ["", "a\0b", &"k".repeat(1025)] {
            assert_eq!(field(validate_key(bad).unwrap_err()), "key");
        }
    }

    #[test]
    fn json_errors_are_classified() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Body {
            value: String,
        }
        assert!(matches!(
            parse_json::<Body>(b"{not json"),
            Err(ApiError::InvalidJson(_))
        ));
        assert!(matches!(
            parse_json::<Body>(b""),
            Err(ApiError::InvalidJson(_))
        ));
        assert_eq!(field(parse_json::<Body>(b"{}").unwrap_err()), "value");
        assert_eq!(
            field(parse_json::<Body>(br#"{"value": "a", "vlaue": 1}"#).unwrap_err()),
            "vlaue"
        );
        assert_eq!(parse_json::<Body>(br#"{"value": "a"}"#).unwrap().value, "a");
    }
}
