//! One file_sd file's text to targets.

use crate::error::DiscoveryError;
use rota_core::targets::{normalize, Group, GroupProblem, Target};

/// The label every file_sd target carries: the file it was read from.
pub const META_FILEPATH: &str = "__meta_filepath";

/// How a file is read, by the end of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.json`
    Json,
    /// `.yml`, `.yaml`
    Yaml,
}

impl Format {
    /// The format of the file at `path`, by its extension.
    pub fn of(path: &str) -> Option<Format> {
        if path.ends_with(".json") {
            Some(Format::Json)
        } else if path.ends_with(".yml") || path.ends_with(".yaml") {
            Some(Format::Yaml)
        } else {
            None
        }
    }
}

/// The targets of the file `path` whose contents are `bytes`: every group's
/// targets with the group's labels plus `__meta_filepath`, sorted and without
/// duplicates.
pub fn parse(path: &str, bytes: &[u8]) -> Result<Vec<Target>, DiscoveryError> {
    let format = Format::of(path).ok_or_else(|| DiscoveryError::UnknownFormat {
        path: path.to_string(),
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        // Often a file caught half-written: keeping the last good targets is safer
        // than dropping them all.
        return Err(DiscoveryError::Empty {
            path: path.to_string(),
        });
    }
    let items: Vec<Option<Group>> = match format {
        Format::Json => serde_json::from_slice(bytes).map_err(|source| DiscoveryError::Json {
            path: path.to_string(),
            source,
        })?,
        Format::Yaml => {
            serde_yaml_ng::from_slice(bytes).map_err(|source| DiscoveryError::Yaml {
                path: path.to_string(),
                source,
            })?
        }
    };
    let mut targets = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let Some(group) = item else {
            return Err(DiscoveryError::NullItem {
                path: path.to_string(),
                index,
            });
        };
        match group.problem() {
            None => {}
            Some(GroupProblem::EmptyAddress(target)) => {
                return Err(DiscoveryError::EmptyAddress {
                    path: path.to_string(),
                    index,
                    target,
                })
            }
            Some(GroupProblem::LabelName(name)) => {
                return Err(DiscoveryError::LabelName {
                    path: path.to_string(),
                    index,
                    name,
                })
            }
        }
        targets.extend(group.expand(&[(META_FILEPATH, path)]));
    }
    Ok(normalize(targets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rota_core::error::chain;

    fn error(path: &str, text: &str) -> String {
        chain(&parse(path, text.as_bytes()).unwrap_err())
    }

    #[test]
    fn json_and_yaml_read_the_same_groups() {
        let json =
            r#"[{"targets": ["b:2", "a:1"], "labels": {"env": "prod"}}, {"targets": ["c:3"]}]"#;
        let yaml = "- targets: [b:2, a:1]\n  labels:\n    env: prod\n- targets:\n  - c:3\n";
        let from_json = parse("sd/a.json", json.as_bytes()).unwrap();
        assert!(
            parse("sd/a.json", yaml.as_bytes()).is_err(),
            "the extension decides: YAML in a .json file is not read"
        );
        let from_yml = parse("sd/a.yml", yaml.as_bytes()).unwrap();
        let from_yaml = parse("sd/a.yaml", yaml.as_bytes()).unwrap();
        let addresses: Vec<_> = from_json.iter().map(|t| t.address.as_str()).collect();
        assert_eq!(addresses, ["a:1", "b:2", "c:3"]);
        assert_eq!(from_json[0].labels["env"], "prod");
        assert_eq!(from_json[0].labels[META_FILEPATH], "sd/a.json");
        assert!(!from_json[2].labels.contains_key("env"));
        assert_eq!(from_yml[2].labels[META_FILEPATH], "sd/a.yml");
        assert_eq!(from_yaml.len(), 3);
        assert_eq!(parse("sd/a.json", b"[]").unwrap(), vec![]);
    }

    #[test]
    fn a_null_item_is_an_error_naming_it() {
        assert_eq!(
            error(
                "sd/a.json",
                r#"[{"targets": ["a:1"]}, {"targets": []}, null]"#
            ),
            "sd/a.json: item 2 is null (items are counted from 0)"
        );
        assert_eq!(
            error("sd/a.yaml", "- targets: [a:1]\n- ~\n"),
            "sd/a.yaml: item 1 is null (items are counted from 0)"
        );
    }

    #[test]
    fn unknown_fields_are_errors_with_their_place() {
        let err = error("sd/a.json", r#"[{"targets": ["a:1"], "lables": {}}]"#);
        assert!(
            err.starts_with("sd/a.json is not a file_sd JSON list"),
            "{err}"
        );
        assert!(err.contains("unknown field `lables`"), "{err}");
        assert!(err.contains("line 1"), "{err}");
        let err = error("sd/a.yml", "- targets: [a:1]\n  extra: 1\n");
        assert!(
            err.starts_with("sd/a.yml is not a file_sd YAML list"),
            "{err}"
        );
        assert!(err.contains("unknown field `extra`"), "{err}");
    }

    #[test]
    fn other_mistakes_are_named() {
        for (path, text, expected) in [
            ("sd/a.json", "", "sd/a.json is empty"),
            ("sd/a.yml", "  \n", "sd/a.yml is empty"),
            (
                "sd/a.json",
                "[{\"targets\": [\"a:1\"]}",
                "sd/a.json is not a file_sd JSON list",
            ),
            (
                "sd/a.json",
                "{\"targets\": []}",
                "sd/a.json is not a file_sd JSON list",
            ),
            (
                "sd/a.json",
                "[{\"targets\": [\"\"]}]",
                "sd/a.json: item 0: targets[0] is empty",
            ),
            (
                "sd/a.json",
                "[{\"targets\": [], \"labels\": {\"a.b\": \"x\"}}]",
                "sd/a.json: item 0: label \"a.b\" is not a label name",
            ),
            ("sd/a.txt", "[]", "sd/a.txt: unknown format"),
        ] {
            let err = error(path, text);
            assert!(err.starts_with(expected), "{text:?}: {err}");
        }
    }
}
