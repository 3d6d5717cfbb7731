//! The web console: a page shell at `/` and its static files under `/ui/`, all
//! compiled into the binary from the workspace's `web/` folder, so every node
//! serves the same console with nothing to install beside it.
//!
//! The console is plain JavaScript modules and CSS that run as they are (no build
//! step). It talks to the API like any client, with the token the user signs in
//! with; the files themselves need no token, they hold no data.
//!
//! The files keep their names across releases, so they are served with
//! `Cache-Control: no-cache` and an `ETag` (a hash of the content): a browser
//! revalidates each load and gets a 304 until an upgrade changes a file.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// One embedded file.
pub(crate) struct Asset {
    /// Its name under `/ui/` (and under `web/`).
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../../../../web/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of `web/` (a test checks the folder and this list agree).
pub(crate) const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("watch.js", JS),
    asset!("dom.js", JS),
    asset!("charts.js", JS),
    asset!("format.js", JS),
    asset!("pages/cluster.js", JS),
    asset!("pages/jobs.js", JS),
    asset!("pages/job.js", JS),
    asset!("pages/execution.js", JS),
    asset!("pages/workflows.js", JS),
    asset!("pages/targets.js", JS),
    asset!("pages/ci.js", JS),
    asset!("pages/signin.js", JS),
];

/// The shell's policy: only this origin's scripts, styles and API, so a string
/// from the store that slipped into the page could neither run nor send the
/// token anywhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; \
     style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'none'";

/// `GET /`: the console's page shell.
pub(crate) async fn index(headers: HeaderMap) -> Response {
    serve(
        find("index.html").expect("index.html is embedded"),
        &headers,
    )
}

/// `GET /ui/{path}`: one of the console's files, or 404.
pub(crate) async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match find(&path) {
        Some(asset) => serve(asset, &headers),
        None => ApiError::not_found(format!("console file {path:?}")).into_response(),
    }
}

pub(crate) fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The quoted content hash of `asset`, computed once per process.
fn etag(asset: &Asset) -> &'static str {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    let etags = ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = ring::digest::digest(&ring::digest::SHA256, a.body);
                let hex: String = digest.as_ref()[..12]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("\"{hex}\"")
            })
            .collect()
    });
    let i = ASSETS
        .iter()
        .position(|a| a.name == asset.name)
        .expect("an embedded asset");
    &etags[i]
}

fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let etag = etag(asset);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, HeaderValue::from_static(etag));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.name == "index.html" {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
    }
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    (StatusCode::OK, headers, asset.body).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::{Path as FsPath, PathBuf};

    use super::*;

    fn web_dir() -> PathBuf {
        FsPath::new(env!("CARGO_MANIFEST_DIR")).join("../../web")
    }

    fn files_under(dir: &FsPath, prefix: &str, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("web/ is readable") {
            let entry = entry.expect("entry");
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type().expect("file type").is_dir() {
                files_under(&entry.path(), &format!("{name}/"), out);
            } else {
                out.insert(name);
            }
        }
    }

    #[test]
    fn every_file_of_web_is_embedded_and_nothing_else() {
        let mut on_disk = BTreeSet::new();
        files_under(&web_dir(), "", &mut on_disk);
        let embedded: BTreeSet<String> = ASSETS.iter().map(|a| a.name.to_string()).collect();
        assert_eq!(embedded.len(), ASSETS.len(), "a file is listed twice");
        assert_eq!(on_disk, embedded, "web/ and the embedded list differ");
    }

    /// The `/ui/...` paths a file refers to: `src=`/`href=` in HTML, and the
    /// relative `import ... from "./x.js"` of the modules.
    fn references(asset: &Asset) -> Vec<String> {
        let text = std::str::from_utf8(asset.body).expect("UTF-8");
        let dir = asset.name.rsplit_once('/').map_or("", |(d, _)| d);
        let mut found = Vec::new();
        for quote in ['"', '\''] {
            for part in text.split(quote).skip(1).step_by(2) {
                if let Some(p) = part.strip_prefix("/ui/") {
                    found.push(p.to_string());
                } else if asset.content_type == JS
                    && (part.starts_with("./") || part.starts_with("../"))
                    && part.ends_with(".js")
                {
                    found.push(join(dir, part));
                }
            }
        }
        found
    }

    fn join(dir: &str, relative: &str) -> String {
        let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
        for seg in relative.split('/') {
            match seg {
                "." => {}
                ".." => {
                    parts.pop();
                }
                s => parts.push(s),
            }
        }
        parts.join("/")
    }

    #[test]
    fn every_file_a_page_or_module_refers_to_is_served() {
        let index = find("index.html").unwrap();
        let from_index = references(index);
        assert!(
            from_index.iter().any(|r| r == "app.js") && from_index.iter().any(|r| r == "style.css"),
            "index.html should load app.js and style.css: {from_index:?}"
        );
        let mut missing = Vec::new();
        for asset in ASSETS {
            for r in references(asset) {
                if find(&r).is_none() {
                    missing.push(format!("{} -> {r}", asset.name));
                }
            }
        }
        assert!(missing.is_empty(), "referenced but not served: {missing:?}");
        // Every module is reachable from app.js, so none is dead weight.
        let mut reached = BTreeSet::from(["app.js".to_string()]);
        let mut todo = vec!["app.js".to_string()];
        while let Some(name) = todo.pop() {
            for r in references(find(&name).unwrap()) {
                if reached.insert(r.clone()) {
                    todo.push(r);
                }
            }
        }
        let unreached: Vec<_> = ASSETS
            .iter()
            .filter(|a| a.content_type == JS && !reached.contains(a.name))
            .map(|a| a.name)
            .collect();
        assert!(
            unreached.is_empty(),
            "modules nothing imports: {unreached:?}"
        );
    }

    #[tokio::test]
    async fn files_are_served_with_their_type_and_revalidated_by_etag() {
        for asset in ASSETS {
            let resp = super::asset(Path(asset.name.to_string()), HeaderMap::new()).await;
            assert_eq!(resp.status(), StatusCode::OK, "{}", asset.name);
            let h = resp.headers();
            assert_eq!(
                h[header::CONTENT_TYPE],
                asset.content_type,
                "{}",
                asset.name
            );
            assert_eq!(h[header::CACHE_CONTROL], "no-cache");
            let etag = h[header::ETAG].clone();
            let mut again = HeaderMap::new();
            again.insert(header::IF_NONE_MATCH, etag);
            let resp = super::asset(Path(asset.name.to_string()), again).await;
            assert_eq!(resp.status(), StatusCode::NOT_MODIFIED, "{}", asset.name);
        }
        let shell = index(HeaderMap::new()).await;
        assert_eq!(shell.status(), StatusCode::OK);
        assert!(shell.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(shell
            .headers()
            .contains_key(header::CONTENT_SECURITY_POLICY));
        for unknown in ["nope.js", "../Cargo.toml", "pages", ""] {
            let resp = super::asset(Path(unknown.to_string()), HeaderMap::new()).await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{unknown:?}");
        }
    }
}
