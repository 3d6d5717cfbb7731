//! The route table: the one list of (method, path, handler) the router is built
//! from. The OpenAPI test walks the same list, so a route cannot be added without
//! the document noticing (and the reverse).

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{self, MethodRouter};

use rota_core::auth::Role;

use crate::auth::Need;
use crate::handlers::{
    check, cluster, config, console, executions, jobs, kv, notify, runs, sinks, system, targets,
    tokens, workflows,
};
use crate::watch;
use crate::AppState;

pub(crate) struct Route {
    /// Also encoded in `handler`; kept for the OpenAPI drift test.
    #[cfg_attr(not(test), allow(dead_code))]
    pub method: Method,
    /// axum syntax: `{name}` for a segment, `{*key}` for the rest of the path.
    pub path: &'static str,
    pub handler: MethodRouter<AppState>,
    /// The role it takes (checked by [`crate::auth::require`]).
    pub need: Need,
}

pub(crate) fn routes() -> Vec<Route> {
    use Role::{Admin, Operator};
    vec![
        // The web console's shell and files: they hold no data (the console asks
        // the API with the user's token).
        get("/", console::index).open(),
        get("/ui/{*path}", console::asset).open(),
        // Scraped by Prometheus, which sends no token (as etcd and Nomad serve it).
        get("/metrics", system::metrics).open(),
        get("/v1/health", system::health),
        get("/healthz", system::healthz).open(),
        get("/readyz", system::readyz).open(),
        get("/v1/openapi.json", system::openapi).open(),
        get("/v1/jobs", jobs::list),
        post("/v1/jobs", jobs::apply),
        get("/v1/jobs/{name}", jobs::get),
        put("/v1/jobs/{name}", jobs::put),
        delete("/v1/jobs/{name}", jobs::delete),
        post("/v1/jobs/{name}/run", jobs::run).needs(Operator),
        post("/v1/jobs/{name}/pause", jobs::pause).needs(Operator),
        post("/v1/jobs/{name}/resume", jobs::resume).needs(Operator),
        get("/v1/jobs/{name}/executions", jobs::executions),
        get("/v1/executions", executions::list),
        get("/v1/executions/{id}", executions::get),
        get("/v1/executions/{id}/output", executions::output),
        post("/v1/executions/{id}/cancel", executions::cancel).needs(Operator),
        get("/v1/kv", kv::list),
        get("/v1/kv/{*key}", kv::get),
        put("/v1/kv/{*key}", kv::put).needs(Operator),
        delete("/v1/kv/{*key}", kv::delete).needs(Operator),
        get("/v1/watch", watch::watch),
        get("/v1/watch/ws", watch::watch_ws),
        post("/v1/events", watch::publish).needs(Operator),
        get("/v1/cluster", cluster::status),
        // Membership has its own check, the cluster secret, which a joining node
        // holds and a token does not.
        post("/v1/cluster/members", cluster::join).open(),
        delete("/v1/cluster/members/{id}", cluster::leave).open(),
        get("/v1/webhooks", notify::list),
        get("/v1/webhooks/{name}", notify::get),
        put("/v1/webhooks/{name}", notify::put),
        delete("/v1/webhooks/{name}", notify::delete),
        get("/v1/deliveries", notify::deliveries),
        get("/v1/workflows", workflows::list),
        get("/v1/workflows/{name}", workflows::get),
        put("/v1/workflows/{name}", workflows::put),
        delete("/v1/workflows/{name}", workflows::delete),
        post("/v1/workflows/{name}/run", workflows::run).needs(Operator),
        get("/v1/workflows/{name}/runs", workflows::runs),
        // Runs the probe now, against every target.
        get("/v1/jobs/{name}/check", check::check).needs(Operator),
        get("/v1/targets", targets::list),
        get("/v1/targets/{name}", targets::get),
        put("/v1/targets/{name}", targets::put),
        delete("/v1/targets/{name}", targets::delete),
        get("/v1/config", config::list),
        post("/v1/config/reset", config::reset),
        get("/v1/config/{key}", config::get),
        put("/v1/config/{key}", config::put),
        delete("/v1/config/{key}", config::delete),
        get("/v1/sinks", sinks::list),
        get("/v1/sinks/{name}", sinks::get),
        put("/v1/sinks/{name}", sinks::put),
        delete("/v1/sinks/{name}", sinks::delete),
        get("/v1/tokens", tokens::list).needs(Admin),
        post("/v1/tokens", tokens::create),
        delete("/v1/tokens/{name}", tokens::revoke),
        get("/v1/whoami", tokens::whoami),
        get("/v1/runs/{id}", runs::get),
        post("/v1/runs/{id}/cancel", runs::cancel).needs(Operator),
        get("/v1/runs/{id}/artifacts", runs::artifacts),
        get(
            "/v1/runs/{id}/artifacts/{name}/{*path}",
            runs::artifact_file,
        ),
    ]
}

impl Route {
    /// Served without a token.
    fn open(mut self) -> Route {
        self.need = Need::Open;
        self
    }

    fn needs(mut self, role: Role) -> Route {
        self.need = Need::Role(role);
        self
    }
}

/// Reads need `viewer`.
fn get<H: Handler<T, AppState>, T: 'static>(path: &'static str, h: H) -> Route {
    Route {
        method: Method::GET,
        path,
        handler: routing::get(h),
        need: Need::Role(Role::Viewer),
    }
}

/// Writes need `admin` unless the route says less.
fn put<H: Handler<T, AppState>, T: 'static>(path: &'static str, h: H) -> Route {
    Route {
        method: Method::PUT,
        path,
        handler: routing::put(h),
        need: Need::Role(Role::Admin),
    }
}

fn post<H: Handler<T, AppState>, T: 'static>(path: &'static str, h: H) -> Route {
    Route {
        method: Method::POST,
        path,
        handler: routing::post(h),
        need: Need::Role(Role::Admin),
    }
}

fn delete<H: Handler<T, AppState>, T: 'static>(path: &'static str, h: H) -> Route {
    Route {
        method: Method::DELETE,
        path,
        handler: routing::delete(h),
        need: Need::Role(Role::Admin),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::handlers::system::OPENAPI;

    /// `{*key}` (axum) is `{key}` in OpenAPI.
    fn openapi_path(axum_path: &str) -> String {
        axum_path.replace("{*", "{")
    }

    fn document() -> Value {
        serde_json::from_str(OPENAPI).expect("openapi.json is valid JSON")
    }

    #[test]
    fn every_route_is_documented_and_every_documented_route_exists() {
        let doc = document();
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1")),
            "not an OpenAPI 3.1 document"
        );
        let served: BTreeSet<(String, String)> = routes()
            .iter()
            .map(|r| (r.method.as_str().to_lowercase(), openapi_path(r.path)))
            .collect();
        assert_eq!(served.len(), routes().len(), "a route is listed twice");
        let methods = ["get", "put", "post", "delete", "patch", "head", "options"];
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in methods {
                if item.get(method).is_some() {
                    documented.insert((method.to_string(), path.clone()));
                }
            }
        }
        let missing: Vec<_> = served.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&served).collect();
        assert!(
            missing.is_empty(),
            "routes missing from openapi.json: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "openapi.json documents routes that do not exist: {extra:?}"
        );
    }

    #[test]
    fn every_operation_documents_its_path_parameters_and_answers() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            let in_path: BTreeSet<String> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                .map(str::to_string)
                .collect();
            for (method, op) in item.as_object().expect("path item") {
                if method == "parameters" {
                    continue;
                }
                let mut declared = BTreeSet::new();
                for p in op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .chain(item["parameters"].as_array().into_iter().flatten())
                {
                    let p = resolve(&doc, p);
                    if p["in"] == "path" {
                        declared.insert(p["name"].as_str().unwrap_or_default().to_string());
                    }
                }
                assert_eq!(declared, in_path, "{method} {path}: path parameters");
                let responses = op["responses"].as_object();
                assert!(
                    responses.is_some_and(|r| !r.is_empty()),
                    "{method} {path}: no responses"
                );
                assert!(
                    op["operationId"].as_str().is_some(),
                    "{method} {path}: no operationId"
                );
            }
        }
    }

    #[test]
    fn every_reference_resolves() {
        fn walk(doc: &Value, v: &Value, bad: &mut Vec<String>) {
            match v {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        if lookup(doc, r).is_none() {
                            bad.push(r.clone());
                        }
                    }
                    map.values().for_each(|v| walk(doc, v, bad));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(doc, v, bad)),
                _ => {}
            }
        }
        let doc = document();
        let mut bad = Vec::new();
        walk(&doc, &doc, &mut bad);
        assert!(bad.is_empty(), "dangling $refs: {bad:?}");
    }

    fn lookup<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
        let pointer = reference.strip_prefix('#')?;
        doc.pointer(pointer)
    }

    fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => lookup(doc, r).unwrap_or(v),
            None => v,
        }
    }
}
