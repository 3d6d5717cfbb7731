//! Tokens and roles against a real single-node cluster (see [`Harness`]): every
//! route × role, 401 without or with a bad token, 403 with too small a role, and
//! the first token made while none exists.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::auth::Need;
use crate::tests::{Answer, Harness};
use rota_core::auth::Role;

async fn as_token(
    h: &Harness,
    token: Option<&str>,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> Answer {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    h.send_with(method, uri, &headers, body).await
}

async fn create(h: &Harness, by: Option<&str>, name: &str, role: &str) -> String {
    let a = as_token(
        h,
        by,
        Method::POST,
        "/v1/tokens",
        Some(json!({"name": name, "role": role})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(a.body["role"], role);
    a.body["token"]
        .as_str()
        .expect("the secret, once")
        .to_string()
}

/// A concrete URI for a route's path.
fn uri(path: &str) -> String {
    path.replace("{*key}", "app/k")
        .replace("{*path}", "a.txt")
        .replace("{name}", "x")
        .replace("{key}", "log")
        .replace("{id}", "01J0000000000000000000000A")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_asks_for_its_role() {
    let h = Harness::start().await;
    // No token yet: everyone is admin (the binary keeps such a node on loopback).
    let me = h.get("/v1/whoami").await;
    assert_eq!(
        me.body,
        json!({"token": null, "role": "admin", "auth": false}),
        "{}",
        me.text
    );
    let root = create(&h, None, "root", "admin").await;
    let viewer = create(&h, Some(&root), "dash", "viewer").await;
    let operator = create(&h, Some(&root), "oncall", "operator").await;
    // From now on a token is needed, and only an admin may make one.
    let a = as_token(
        &h,
        None,
        Method::POST,
        "/v1/tokens",
        Some(json!({"name": "x", "role": "admin"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text);
    let a = as_token(
        &h,
        Some(&operator),
        Method::POST,
        "/v1/tokens",
        Some(json!({"name": "x", "role": "admin"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
    assert_eq!(a.body["error"]["code"], "forbidden");
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("admin role"),
        "{}",
        a.text
    );

    let me = as_token(&h, Some(&operator), Method::GET, "/v1/whoami", None).await;
    assert_eq!(
        me.body,
        json!({"token": "oncall", "role": "operator", "auth": true})
    );

    let tokens = [
        (Role::Viewer, &viewer),
        (Role::Operator, &operator),
        (Role::Admin, &root),
    ];
    let mut checked = 0;
    for route in crate::routes::routes() {
        if route.path == "/v1/watch"
            || route.path == "/v1/watch/ws"
            || route.path.ends_with("/output")
        {
            // Streams: their authorisation is the same middleware; checked below
            // without opening a stream.
            if route.need != Need::Role(Role::Viewer) {
                panic!("{} should take a viewer", route.path);
            }
            continue;
        }
        let uri = uri(route.path);
        let method = route.method.clone();
        let body = (method != Method::GET && method != Method::DELETE).then(|| json!({}));
        let none = as_token(&h, None, method.clone(), &uri, body.clone()).await;
        let bad = as_token(
            &h,
            Some("rota_not-a-token"),
            method.clone(),
            &uri,
            body.clone(),
        )
        .await;
        match route.need {
            Need::Open => {
                assert_ne!(
                    none.status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {uri}: {}",
                    none.text
                );
            }
            Need::Role(need) => {
                assert_eq!(
                    none.status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {uri} without a token"
                );
                assert_eq!(none.body["error"]["code"], "unauthorized");
                assert_eq!(
                    bad.status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {uri} with a bad token"
                );
                for (role, token) in &tokens {
                    let a = as_token(&h, Some(token), method.clone(), &uri, body.clone()).await;
                    if *role >= need {
                        assert!(
                            a.status != StatusCode::UNAUTHORIZED
                                && a.status != StatusCode::FORBIDDEN,
                            "{method} {uri} as {role}: {} {}",
                            a.status,
                            a.text
                        );
                    } else {
                        assert_eq!(
                            a.status,
                            StatusCode::FORBIDDEN,
                            "{method} {uri} as {role}: {}",
                            a.text
                        );
                    }
                }
            }
        }
        checked += 1;
    }
    assert!(checked > 50, "only {checked} routes checked");

    // What the roles mean, on the routes people use most.
    let job =
        json!({"schedule": {"manual": true}, "executor": {"type": "shell", "command": "true"}});
    let a = as_token(
        &h,
        Some(&operator),
        Method::PUT,
        "/v1/jobs/j",
        Some(job.clone()),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "a shell job needs admin");
    let a = as_token(&h, Some(&root), Method::PUT, "/v1/jobs/j", Some(job)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let a = as_token(&h, Some(&viewer), Method::POST, "/v1/jobs/j/run", None).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = as_token(&h, Some(&operator), Method::POST, "/v1/jobs/j/run", None).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    // The run records who asked for it; the job's creation event, who made it.
    let id = a.body["id"].as_str().expect("execution id").to_string();
    let e = as_token(
        &h,
        Some(&viewer),
        Method::GET,
        &format!("/v1/executions/{id}"),
        None,
    )
    .await;
    assert_eq!(e.body["triggered_by"], "oncall", "{}", e.text);
    let created = h
        .node
        .store()
        .events_after(0, &|e| e.event_type == "job.created" && e.key == "j", 10)
        .unwrap()
        .events
        .into_iter()
        .next()
        .expect("job.created");
    assert_eq!(created.data["by"], "root");
    let a = as_token(&h, Some(&viewer), Method::GET, "/v1/jobs/j", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        h.get("/healthz").await.status,
        StatusCode::OK,
        "probes need no token"
    );

    // Listing shows names and roles, never a secret or a hash.
    let list = as_token(&h, Some(&root), Method::GET, "/v1/tokens", None).await;
    let names: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dash", "oncall", "root"]);
    assert_eq!(list.body["next"], Value::Null);
    let first = as_token(&h, Some(&root), Method::GET, "/v1/tokens?limit=2", None).await;
    assert_eq!(first.body["items"][1]["name"], "oncall", "{}", first.text);
    assert_eq!(first.body["next"], "oncall", "{}", first.text);
    let rest = as_token(
        &h,
        Some(&root),
        Method::GET,
        "/v1/tokens?limit=2&after=oncall",
        None,
    )
    .await;
    assert_eq!(rest.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(rest.body["items"][0]["name"], "root", "{}", rest.text);
    assert_eq!(rest.body["next"], Value::Null);
    assert!(
        !list.text.contains(&viewer) && !list.text.contains("hash"),
        "{}",
        list.text
    );
    assert_eq!(list.body["items"][0]["created_by"], "root");

    // A taken name is refused; a revoked token stops working at once.
    let a = as_token(
        &h,
        Some(&root),
        Method::POST,
        "/v1/tokens",
        Some(json!({"name": "dash", "role": "viewer"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    let a = as_token(
        &h,
        Some(&root),
        Method::POST,
        "/v1/tokens",
        Some(json!({"name": "z", "role": "root"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert!(a.text.contains("viewer, operator, admin"), "{}", a.text);
    let a = as_token(&h, Some(&root), Method::DELETE, "/v1/tokens/dash", None).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text);
    let a = as_token(&h, Some(&viewer), Method::GET, "/v1/jobs", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = as_token(&h, Some(&root), Method::DELETE, "/v1/tokens/dash", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    h.stop().await;
}
