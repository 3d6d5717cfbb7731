//! docs/ARCHITECTURE.md against the code: the crate edges it lists are exactly the
//! internal `[dependencies]` of each crate, the storage tables it lists are exactly
//! the redb tables the code defines, and the pure engine's whole dependency tree
//! holds no async runtime, socket, HTTP or storage crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The rows of the first markdown table under `heading`, as cells.
fn table_rows(doc: &str, heading: &str) -> Vec<Vec<String>> {
    let start = doc
        .lines()
        .position(|l| l.trim() == heading)
        .unwrap_or_else(|| panic!("docs/ARCHITECTURE.md has no {heading:?} section"));
    doc.lines()
        .skip(start + 1)
        .take_while(|l| !l.starts_with('#'))
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// Names in backticks in one cell.
fn ticked(cell: &str) -> BTreeSet<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn manifest(dir: &Path) -> toml::Table {
    read(&dir.join("Cargo.toml"))
        .parse()
        .unwrap_or_else(|e| panic!("{}/Cargo.toml: {e}", dir.display()))
}

/// Every crate under `crates/`: name → (its directory, its normal dependencies).
fn crates() -> BTreeMap<String, (PathBuf, BTreeSet<String>)> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(root().join("crates")).expect("crates/") {
        let dir = entry.expect("dir entry").path();
        if !dir.join("Cargo.toml").exists() {
            continue;
        }
        let m = manifest(&dir);
        let name = m["package"]["name"]
            .as_str()
            .expect("package.name")
            .to_string();
        let deps = m
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|d| d.keys().cloned().collect())
            .unwrap_or_default();
        out.insert(name, (dir, deps));
    }
    out
}

#[test]
fn the_crate_edges_in_the_architecture_are_the_code_s() {
    let doc = read(&root().join("docs/ARCHITECTURE.md"));
    let documented: BTreeMap<String, BTreeSet<String>> = table_rows(&doc, "### Crate edges")
        .into_iter()
        .map(|row| {
            let name = ticked(&row[0]).into_iter().next().expect("a crate name");
            (name, row.get(1).map(|c| ticked(c)).unwrap_or_default())
        })
        .collect();
    let actual: BTreeMap<String, BTreeSet<String>> = crates()
        .into_iter()
        .map(|(name, (_, deps))| {
            let internal = deps.into_iter().filter(|d| d.starts_with("rota")).collect();
            (name, internal)
        })
        .collect();
    assert_eq!(
        documented, actual,
        "docs/ARCHITECTURE.md's crate edges (left) differ from the crates' [dependencies] (right)"
    );
}

#[test]
fn the_engine_depends_on_no_runtime_socket_http_or_storage_crate() {
    let crates = crates();
    let lock: toml::Table = read(&root().join("Cargo.lock"))
        .parse()
        .expect("Cargo.lock");
    // Registry packages in the lock file list their normal dependencies only.
    let locked: BTreeMap<String, Vec<String>> = lock["package"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let name = p["name"].as_str().expect("name").to_string();
            let deps = p
                .get("dependencies")
                .and_then(|d| d.as_array())
                .map(|d| {
                    d.iter()
                        .filter_map(|v| v.as_str())
                        .map(|s| s.split(' ').next().unwrap_or(s).to_string())
                        .collect()
                })
                .unwrap_or_default();
            (name, deps)
        })
        .collect();
    let mut seen = BTreeSet::new();
    let mut todo = vec!["rota-engine".to_string()];
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        // A workspace crate's lock entry also lists its dev-dependencies: read its
        // manifest instead.
        let next: Vec<String> = match crates.get(&name) {
            Some((_, deps)) => deps.iter().cloned().collect(),
            None => locked.get(&name).cloned().unwrap_or_default(),
        };
        todo.extend(next);
    }
    assert!(
        seen.contains("rota-core"),
        "the walk reached nothing: {seen:?}"
    );
    for banned in [
        "tokio", "mio", "reqwest", "hyper", "axum", "redb", "openraft",
    ] {
        assert!(
            !seen.contains(banned),
            "rota-engine depends on {banned} (whole tree: {seen:?})"
        );
    }
}

/// `TableDefinition::new("NAME")` in every source file under `dir`.
fn defined_tables(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            defined_tables(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = read(&path);
            for part in text.split("TableDefinition::new(\"").skip(1) {
                if let Some(name) = part.split('"').next() {
                    out.insert(name.to_string());
                }
            }
        }
    }
}

#[test]
fn the_tables_in_the_architecture_are_the_code_s() {
    let doc = read(&root().join("docs/ARCHITECTURE.md"));
    let documented: BTreeSet<String> = table_rows(&doc, "### Tables")
        .into_iter()
        .flat_map(|row| ticked(&row[0]))
        .collect();
    let mut actual = BTreeSet::new();
    for (_, (dir, _)) in crates() {
        defined_tables(&dir.join("src"), &mut actual);
    }
    assert!(actual.contains("jobs"), "no table found at all: {actual:?}");
    assert_eq!(
        documented, actual,
        "docs/ARCHITECTURE.md's tables (left) differ from the redb tables in the code (right)"
    );
}
