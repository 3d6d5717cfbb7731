//! Tokens and roles on every route (see [`rota_core::auth`]).
//!
//! While the store holds no token, every request is let through as `admin` (the
//! binary then listens on loopback only unless told `--insecure`), unless a first
//! admin token is configured: then only it is accepted, as admin. Once a token
//! exists, each route asks for its role ([`Need`]): a request without a valid
//! `Authorization: Bearer TOKEN` is 401, one with too small a role 403. Failed
//! attempts are counted per client address; past [`MAX_FAILURES`] within
//! [`FAILURE_WINDOW`] the address gets 429 until the window has passed.
//!
//! The caller ([`Caller`]) is put in the request's extensions for handlers that
//! look further (the WebSocket watch's commands, token creation).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rota_core::auth::Role;

use crate::error::ApiError;
use crate::AppState;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Nothing (probes, the OpenAPI document, the console's shell), or its own
    /// check (membership: the cluster secret).
    Open,
    Role(Role),
}

/// Who is calling: the token's name (`None` while no token exists) and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub token: Option<String>,
    pub role: Role,
}

impl Caller {
    /// Whether the caller may do what `need` asks; the error says why not.
    pub(crate) fn may(&self, need: Role) -> Result<(), ApiError> {
        if self.role >= need {
            return Ok(());
        }
        Err(ApiError::Forbidden {
            need,
            have: self.role,
            token: self.token.clone().unwrap_or_default(),
        })
    }
}

/// The caller's name for a peer that proved itself with the cluster secret.
pub(crate) const PEER_CALLER: &str = "cluster-peer";

/// Failed attempts one address may make within [`FAILURE_WINDOW`].
pub(crate) const MAX_FAILURES: u32 = 10;
pub(crate) const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Failed attempts per client address: (count, start of the window).
#[derive(Default)]
pub(crate) struct Failures(Mutex<HashMap<IpAddr, (u32, Instant)>>);

impl Failures {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (u32, Instant)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The seconds `ip` must still wait, when it is over the limit.
    fn blocked(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        let map = self.lock();
        let (count, since) = map.get(&ip)?;
        let left = FAILURE_WINDOW
            .checked_sub(now.duration_since(*since))
            .filter(|d| !d.is_zero())?;
        (*count >= MAX_FAILURES).then(|| left.as_secs().max(1))
    }

    fn record(&self, ip: IpAddr, now: Instant) {
        let mut map = self.lock();
        // Bounded: stale windows go first when many addresses fail.
        if map.len() > 10_000 {
            map.retain(|_, (_, since)| now.duration_since(*since) < FAILURE_WINDOW);
        }
        let entry = map.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= FAILURE_WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
    }
}

/// SHA-256 of a token, lower-case hex: what the store keeps.
pub fn hash_token(secret: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random token: `rota_` and 32 random bytes, base64url.
pub fn new_token_secret() -> Result<String, ApiError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ApiError::TokenRequired("the system's random source failed"))?;
    Ok(format!(
        "rota_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The bearer token of a request, if it sends one.
fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The middleware of one route: authenticates the caller and checks `need`.
pub(crate) async fn require(
    State((state, need)): State<(AppState, Need)>,
    mut req: Request,
    next: Next,
) -> Response {
    match authenticate(&state, need, &req) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(err) => err.into_response(),
    }
}

fn authenticate(state: &AppState, need: Need, req: &Request) -> Result<Caller, ApiError> {
    let token = bearer(req);
    let open = || Caller {
        token: None,
        role: Role::Admin,
    };
    if need == Need::Open && token.is_none() {
        return Ok(open());
    }
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let now = Instant::now();
    if let Some(wait) = ip.and_then(|ip| state.shared().auth_failures.blocked(ip, now)) {
        return Err(ApiError::TooManyAttempts {
            retry_after_s: wait,
        });
    }
    // A peer (a node fetching a run's artifacts for a workflow job) proves itself
    // with the cluster secret, when one is set; it acts as admin.
    if let Some(given) = req.headers().get(rota_cluster::CLUSTER_SECRET_HEADER) {
        if state.node.cluster_secret().is_some()
            && state.node.admits_peer(Some(given.as_bytes()), false)
        {
            return Ok(Caller {
                token: Some(PEER_CALLER.to_string()),
                role: Role::Admin,
            });
        }
        if let Some(ip) = ip {
            state.shared().auth_failures.record(ip, now);
        }
        return Err(ApiError::TokenRequired("the cluster secret is not valid"));
    }
    let hash = token.map(hash_token);
    let (any, found) = state.node.store().auth_lookup(hash.as_deref())?;
    let found = match (any, &state.admin_token_hash) {
        // No token stored yet: open, unless a first admin token is configured, in
        // which case it is the only way in.
        (false, None) => return Ok(open()),
        (false, Some(admin)) => {
            (hash.as_deref() == Some(admin.as_str())).then(|| rota_core::auth::TokenRecord {
                name: rota_core::auth::BOOTSTRAP_TOKEN_NAME.to_string(),
                role: Role::Admin,
                hash: admin.clone(),
                created_at: chrono::Utc::now(),
                created_by: None,
                revision: 0,
            })
        }
        (true, _) => found,
    };
    let caller = match (token, found) {
        (_, Some(record)) => Caller {
            token: Some(record.name),
            role: record.role,
        },
        (None, None) if need == Need::Open => return Ok(open()),
        (None, None) => {
            return Err(ApiError::TokenRequired(
                "this server requires a token: send Authorization: Bearer TOKEN (rota --token or ROTA_TOKEN)",
            ))
        }
        (Some(_), None) => {
            if let Some(ip) = ip {
                state.shared().auth_failures.record(ip, now);
            }
            tracing::info!(client = ?ip, "request with an unknown or revoked token");
            return Err(ApiError::TokenRequired(
                "the token is not valid: unknown or revoked",
            ));
        }
    };
    if let Need::Role(role) = need {
        caller.may(role)?;
    }
    Ok(caller)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_sha256_hex_and_secrets_are_random() {
        // The SHA-256 of "abc" (FIPS 180-2, appendix B.1).
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let a = new_token_secret().unwrap();
        let b = new_token_secret().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("rota_") && a.len() == 5 + 43, "{a}");
        assert!(rota_core::auth::is_token_hash(&hash_token(&a)));
    }

    #[test]
    fn an_address_is_blocked_after_too_many_failures_until_the_window_passes() {
        let failures = Failures::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            failures.record(ip, t0);
        }
        assert_eq!(failures.blocked(ip, t0), None);
        failures.record(ip, t0);
        assert_eq!(failures.blocked(ip, t0), Some(FAILURE_WINDOW.as_secs()));
        assert_eq!(failures.blocked(other, t0), None);
        assert_eq!(failures.blocked(ip, t0 + FAILURE_WINDOW), None);
        failures.record(ip, t0 + FAILURE_WINDOW);
        assert_eq!(
            failures.blocked(ip, t0 + FAILURE_WINDOW),
            None,
            "a new window"
        );
    }
}
