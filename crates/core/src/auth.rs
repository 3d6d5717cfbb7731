//! Who may do what: API tokens and their roles.
//!
//! A token is a random secret shown once when it is created; the store keeps only
//! its SHA-256 (hex), keyed by it, so a request is matched with one lookup and a
//! stolen state file reveals no usable token. Roles are ordered: `viewer` reads
//! and watches, `operator` also runs, pauses, resumes and cancels, writes KV and
//! publishes events, `admin` also changes jobs, workflows, targets, sinks,
//! webhooks, settings, tokens and membership.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Timestamp, ValidationError};

/// A caller's role; each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                ValidationError::new(
                    "role",
                    format!("{s:?} is not a role; roles are viewer, operator, admin"),
                )
            })
    }
}

/// A token as the store keeps it (never the secret itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Unique; `[a-z0-9][a-z0-9_-]{0,62}`.
    pub name: String,
    pub role: Role,
    /// SHA-256 of the secret, lower-case hex.
    pub hash: String,
    pub created_at: Timestamp,
    /// The token that created it; `None` for the bootstrap admin token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// The log index of its creation.
    pub revision: u64,
}

impl TokenRecord {
    /// What the API shows: everything but the hash.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "role": self.role,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "revision": self.revision,
        })
    }
}

/// The name of the token `ROTA_AUTH_ADMIN_TOKEN` brings into an empty store.
pub const BOOTSTRAP_TOKEN_NAME: &str = "admin";

/// Whether `hash` looks like what [`TokenRecord::hash`] holds.
pub fn is_token_hash(hash: &str) -> bool {
    hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_read_back() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        let err = "root".parse::<Role>().unwrap_err().to_string();
        assert!(
            err.contains("role") && err.contains("viewer, operator, admin"),
            "{err}"
        );
    }

    #[test]
    fn hashes_are_lower_hex_sha256() {
        assert!(is_token_hash(&"a1".repeat(32)));
        assert!(!is_token_hash(&"A1".repeat(32)));
        assert!(!is_token_hash("abc"));
    }
}
