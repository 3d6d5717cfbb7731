//! Many loopback targets in one process: each listener answers `GET /v1/synced`
//! with 200 (and anything else with 404), as a replica that has synced would.

use std::path::Path;

use anyhow::Context;
use axum::http::header::CONNECTION;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

pub(crate) async fn serve(count: usize, addresses: &Path, close: bool) -> anyhow::Result<()> {
    let app = if close {
        Router::new().route(
            "/v1/synced",
            get(|| async { ([(CONNECTION, "close")], StatusCode::OK).into_response() }),
        )
    } else {
        Router::new().route("/v1/synced", get(|| async { StatusCode::OK }))
    };
    let mut listed = String::new();
    let mut servers = Vec::with_capacity(count);
    for _ in 0..count {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding a loopback port")?;
        listed.push_str(&listener.local_addr()?.to_string());
        listed.push('\n');
        let app = app.clone();
        servers.push(tokio::spawn(
            async move { axum::serve(listener, app).await },
        ));
    }
    // Written whole, then renamed: whoever waits for the file reads every address.
    let tmp = addresses.with_extension("tmp");
    std::fs::write(&tmp, listed).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, addresses)
        .with_context(|| format!("renaming {} to {}", tmp.display(), addresses.display()))?;
    eprintln!(
        "listening on {count} loopback ports{}",
        if close { " (Connection: close)" } else { "" }
    );
    for server in servers {
        server.await?.context("serving targets")?;
    }
    Ok(())
}
