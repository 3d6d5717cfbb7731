//! docs/API.md must list every route the router serves.

use crate::routes::routes;

const DOC: &str = include_str!("../../../docs/API.md");

#[test]
fn every_route_is_in_the_api_reference() {
    let missing: Vec<String> = routes()
        .iter()
        .map(|r| format!("`{} {}`", r.method, r.path.replace("{*", "{")))
        .filter(|line| !DOC.contains(line.as_str()))
        .collect();
    assert!(missing.is_empty(), "docs/API.md does not list {missing:?}");
}
