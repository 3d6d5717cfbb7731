//! A time series point and its InfluxDB line protocol.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::Error;

/// One field value. Line protocol writes floats plain (`1.5`), integers with an
/// `i` suffix, unsigned integers with a `u` suffix (InfluxDB 2.x; 1.x only when
/// built with unsigned support), booleans as `true`/`false` and strings quoted.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Str(String),
}

impl From<f64> for FieldValue {
    fn from(v: f64) -> Self {
        FieldValue::Float(v)
    }
}
impl From<i64> for FieldValue {
    fn from(v: i64) -> Self {
        FieldValue::Int(v)
    }
}
impl From<u64> for FieldValue {
    fn from(v: u64) -> Self {
        FieldValue::UInt(v)
    }
}
impl From<bool> for FieldValue {
    fn from(v: bool) -> Self {
        FieldValue::Bool(v)
    }
}
impl From<String> for FieldValue {
    fn from(v: String) -> Self {
        FieldValue::Str(v)
    }
}
impl From<&str> for FieldValue {
    fn from(v: &str) -> Self {
        FieldValue::Str(v.to_string())
    }
}

/// A measurement at one instant: tags (indexed, strings) and fields (values).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub measurement: String,
    /// A tag with an empty value is left out of the line (line protocol has no
    /// empty tag values).
    pub tags: BTreeMap<String, String>,
    /// At least one; written in this order.
    pub fields: Vec<(String, FieldValue)>,
    /// Nanoseconds since the Unix epoch.
    pub time_ns: i64,
}

impl Point {
    /// A point without tags or fields yet.
    pub fn new(measurement: impl Into<String>, time_ns: i64) -> Self {
        Self {
            measurement: measurement.into(),
            tags: BTreeMap::new(),
            fields: Vec::new(),
            time_ns,
        }
    }

    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    pub fn field(mut self, key: impl Into<String>, value: impl Into<FieldValue>) -> Self {
        self.fields.push((key.into(), value.into()));
        self
    }

    /// Whether line protocol can carry this point as it is: a measurement, at
    /// least one field, non-empty keys, finite floats, no line breaks in names or
    /// tag values, and no backslash where the protocol would read it as an escape
    /// (at the end of a name, or before a comma, `=` or space), which InfluxDB
    /// answers with a 400 for the whole batch.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| Error::InvalidPoint {
            measurement: self.measurement.clone(),
            reason,
        };
        if self.measurement.is_empty() {
            return Err(invalid("the measurement is empty".into()));
        }
        check_name(|| "measurement".into(), &self.measurement).map_err(invalid)?;
        if self.fields.is_empty() {
            return Err(invalid("it has no fields".into()));
        }
        for (key, value) in &self.tags {
            if key.is_empty() {
                return Err(invalid("a tag key is empty".into()));
            }
            check_name(|| format!("tag key {key:?}"), key).map_err(invalid)?;
            check_name(|| format!("tag {key:?}"), value).map_err(invalid)?;
        }
        for (key, value) in &self.fields {
            if key.is_empty() {
                return Err(invalid("a field key is empty".into()));
            }
            check_name(|| format!("field key {key:?}"), key).map_err(invalid)?;
            if let FieldValue::Float(f) = value {
                if !f.is_finite() {
                    return Err(invalid(format!(
                        "field {key:?} is {f}; line protocol takes finite numbers only"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The point as one line of line protocol, without a line end:
    /// `measurement,tag=v field=1.5,n=3i,s="text" 1700000000000000000`.
    ///
    /// Measurements escape commas and spaces; tag keys, tag values and field keys
    /// escape commas, `=` and spaces; string values escape `"` and `\`. Tags come
    /// in key order, which is what InfluxDB prefers. Call [`Point::validate`]
    /// first: a point it refuses (no fields, say) gives a line InfluxDB refuses.
    pub fn line(&self) -> String {
        let mut line = String::with_capacity(128);
        escape_into(&mut line, &self.measurement, &[',', ' ']);
        for (key, value) in &self.tags {
            if value.is_empty() {
                continue;
            }
            line.push(',');
            escape_into(&mut line, key, &[',', '=', ' ']);
            line.push('=');
            escape_into(&mut line, value, &[',', '=', ' ']);
        }
        for (i, (key, value)) in self.fields.iter().enumerate() {
            line.push(if i == 0 { ' ' } else { ',' });
            escape_into(&mut line, key, &[',', '=', ' ']);
            line.push('=');
            match value {
                // Writing to a String cannot fail.
                FieldValue::Float(f) => {
                    let _ = write!(line, "{f}");
                }
                FieldValue::Int(n) => {
                    let _ = write!(line, "{n}i");
                }
                FieldValue::UInt(n) => {
                    let _ = write!(line, "{n}u");
                }
                FieldValue::Bool(b) => line.push_str(if *b { "true" } else { "false" }),
                FieldValue::Str(s) => {
                    line.push('"');
                    escape_into(&mut line, s, &['"', '\\']);
                    line.push('"');
                }
            }
        }
        let _ = write!(line, " {}", self.time_ns);
        line
    }
}

/// Names and tag values: no line breaks (they cannot be escaped), no backslash
/// the protocol would take for an escape.
fn check_name(what: impl Fn() -> String, s: &str) -> Result<(), String> {
    // Every character that matters is ASCII: look at bytes, and only build a
    // message for a name that is refused (valid points allocate nothing here).
    let bytes = s.as_bytes();
    if bytes.iter().any(|&b| b == b'\n' || b == b'\r') {
        return Err(format!("{} contains a line break", what()));
    }
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\\' && matches!(bytes.get(i + 1), None | Some(b',' | b'=' | b' ')) {
            return Err(format!(
                "{} has a backslash at its end or before a comma, `=` or space, which line protocol cannot carry",
                what()
            ));
        }
    }
    Ok(())
}

/// `special` characters get a backslash; line breaks, which no escape can carry,
/// become spaces (only in points [`Point::validate`] refuses).
fn escape_into(out: &mut String, s: &str, special: &[char]) {
    if !s.contains(|c: char| special.contains(&c) || c == '\n' || c == '\r') {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\n' | '\r' if !special.contains(&'"') => out.push(' '),
            c if special.contains(&c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_kind_and_escape() {
        let p = Point::new("my build,x", 1_767_323_045_000_000_000)
            .tag("job name", "a,b=c d")
            .tag("empty", "")
            .tag("a=b", "v\\w")
            .field("f,1", 61.5)
            .field("n", -3i64)
            .field("u", 7u64)
            .field("ok", true)
            .field("s", "say \"hi\" \\ bye\nnext")
            .field("whole", 5865.0);
        p.validate().unwrap();
        assert_eq!(
            p.line(),
            "my\\ build\\,x,a\\=b=v\\w,job\\ name=a\\,b\\=c\\ d \
             f\\,1=61.5,n=-3i,u=7u,ok=true,s=\"say \\\"hi\\\" \\\\ bye\nnext\",whole=5865 \
             1767323045000000000"
        );
    }

    #[test]
    fn what_line_protocol_cannot_carry_is_refused() {
        let ok = Point::new("m", 0).field("f", 1i64);
        ok.validate().unwrap();
        let reason = |p: Point| match p.validate().unwrap_err() {
            Error::InvalidPoint { reason, .. } => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(reason(Point::new("m", 0)), "it has no fields");
        assert_eq!(
            reason(Point::new("", 0).field("f", 1i64)),
            "the measurement is empty"
        );
        assert!(reason(ok.clone().field("g", f64::NAN)).contains("finite"));
        assert!(reason(ok.clone().field("", 1i64)).contains("field key is empty"));
        assert!(reason(ok.clone().tag("", "v")).contains("tag key is empty"));
        assert!(reason(ok.clone().tag("t", "a\nb")).contains("line break"));
        assert!(reason(ok.clone().tag("t", "a\\")).contains("backslash"));
        assert!(reason(ok.clone().tag("t", "a\\,b")).contains("backslash"));
        ok.clone().tag("t", "a\\b").validate().unwrap();
    }
}
