//! Reading `rota.toml`: every key is optional, unknown keys are refused, and a
//! rejected value names its key and its line.

use std::path::Path;

use super::keys::{FileKeys, Settings};
use crate::error::ConfigError;

impl Settings {
    /// Parses and checks the text of a config file; `origin` (its path) only names
    /// it in errors.
    pub fn from_file(text: &str, origin: &Path) -> Result<Settings, ConfigError> {
        let fail = |key: String, message: String, span: Option<std::ops::Range<usize>>| {
            ConfigError::File {
                path: origin.to_path_buf(),
                key,
                line: span.map(|s| line_of(text, s.start)),
                message,
            }
        };
        let de = toml::Deserializer::parse(text)
            .map_err(|e| fail(String::new(), e.message().to_string(), e.span()))?;
        let keys: FileKeys = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            // An unknown key is reported at the top level ("."), its name is in the message.
            let key = if key == "." { String::new() } else { key };
            fail(key, inner.message().to_string(), inner.span())
        })?;
        keys.check(|key, message, span| fail(key.to_string(), message, Some(span)))
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}
