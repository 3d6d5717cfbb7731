//! The texts of an executor spec, rewritten one by one: what `${{ env.NAME }}`
//! (workflows, [`crate::workflow`]) and `{{target.address}}` (fan-out,
//! [`crate::fanout`]) substitution share.
//!
//! The texts are a shell spec's command, arguments, `env` values and directory, an
//! http spec's URL, header values and body, and a record spec's path. Names (env
//! variables, headers), the method and statuses are left alone.

use std::collections::BTreeMap;

use rota_core::targets::Target;
use rota_core::{ExecutorSpec, HttpSpec, RecordSpec, ShellSpec};

use crate::ExecError;

/// A function applied to every text of a spec.
pub(crate) type Rewrite<'a> = dyn FnMut(&str) -> Result<String, ExecError> + 'a;

fn map_values(
    values: &BTreeMap<String, String>,
    f: &mut Rewrite<'_>,
) -> Result<BTreeMap<String, String>, ExecError> {
    values
        .iter()
        .map(|(name, value)| Ok((name.clone(), f(value)?)))
        .collect()
}

/// A shell spec with `f` applied to its command, arguments and directory (not its
/// `env`, which callers treat on their own terms).
pub(crate) fn map_shell(shell: &ShellSpec, f: &mut Rewrite<'_>) -> Result<ShellSpec, ExecError> {
    Ok(ShellSpec {
        command: f(&shell.command)?,
        args: shell
            .args
            .as_ref()
            .map(|args| args.iter().map(|a| f(a)).collect())
            .transpose()?,
        cwd: shell.cwd.as_ref().map(|cwd| f(cwd)).transpose()?,
        env: shell.env.clone(),
    })
}

/// An http spec with `f` applied to its URL, header values and body.
pub(crate) fn map_http(http: &HttpSpec, f: &mut Rewrite<'_>) -> Result<HttpSpec, ExecError> {
    Ok(HttpSpec {
        method: http.method.clone(),
        url: f(&http.url)?,
        headers: map_values(&http.headers, f)?,
        body: http.body.as_ref().map(|body| f(body)).transpose()?,
        expect_status: http.expect_status.clone(),
    })
}

/// `spec` with `f` applied to every text: shell (command, arguments, `env` values,
/// directory), http (URL, header values, body), record (path). Other kinds are
/// returned as they are.
pub(crate) fn map_texts(
    spec: &ExecutorSpec,
    f: &mut Rewrite<'_>,
) -> Result<ExecutorSpec, ExecError> {
    Ok(match spec {
        ExecutorSpec::Shell(shell) => {
            let mut mapped = map_shell(shell, f)?;
            mapped.env = map_values(&shell.env, f)?;
            ExecutorSpec::Shell(mapped)
        }
        ExecutorSpec::Http(http) => ExecutorSpec::Http(map_http(http, f)?),
        ExecutorSpec::Record(record) => ExecutorSpec::Record(RecordSpec {
            path: f(&record.path)?,
        }),
        other => other.clone(),
    })
}

/// `text` with every `{{target.address}}` and `{{target.labels.NAME}}` (spaces
/// inside the braces allowed) replaced from `target`, once.
///
/// Other `{{ ... }}` are left as they are (a shell command may well hold a Go
/// template or `${{ ... }}`); `{{target.` followed by anything else, or a label the
/// target lacks, is an error, so that a typo does not reach a command line.
pub(crate) fn substitute_target(text: &str, target: &Target) -> Result<String, ExecError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let inside = &rest[start + 2..];
        let Some(end) = inside.find("}}") else {
            break;
        };
        let expression = inside[..end].trim();
        let Some(field) = expression.strip_prefix("target.") else {
            // Not ours: keep `{{` and look again after it.
            out.push_str(&rest[..start + 2]);
            rest = inside;
            continue;
        };
        out.push_str(&rest[..start]);
        if field == "address" {
            out.push_str(&target.address);
        } else if let Some(label) = field.strip_prefix("labels.") {
            let value = target
                .labels
                .get(label)
                .ok_or_else(|| ExecError::UnknownLabel {
                    label: label.to_string(),
                    address: target.address.clone(),
                    labels: target.labels.keys().cloned().collect(),
                })?;
            out.push_str(value);
        } else {
            return Err(ExecError::UnknownTargetField {
                expression: expression.to_string(),
            });
        }
        rest = &inside[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            address: "10.0.0.1:8080".into(),
            labels: BTreeMap::from([
                ("zone".to_string(), "eu-1".to_string()),
                ("role".to_string(), "{{target.address}}".to_string()),
            ]),
        }
    }

    #[test]
    fn address_and_labels_are_substituted_once() {
        let got = substitute_target(
            "curl {{target.address}}/x?z={{ target.labels.zone }}&r={{target.labels.role}}",
            &target(),
        );
        assert_eq!(
            got.ok().as_deref(),
            Some("curl 10.0.0.1:8080/x?z=eu-1&r={{target.address}}")
        );
    }

    #[test]
    fn other_braces_are_left_alone() {
        let text = "docker inspect -f '{{.State}}' ${{ env.X }} {{ oops";
        assert_eq!(
            substitute_target(text, &target()).ok().as_deref(),
            Some(text)
        );
        assert_eq!(
            substitute_target("{{.A}}{{target.address}}", &target())
                .ok()
                .as_deref(),
            Some("{{.A}}10.0.0.1:8080")
        );
    }

    #[test]
    fn an_unknown_label_or_field_is_an_error() {
        let err = substitute_target("echo {{target.labels.region}}", &target())
            .err()
            .map(|e| e.chain());
        assert_eq!(
            err.as_deref(),
            Some("{{target.labels.region}}: target 10.0.0.1:8080 has no label \"region\" (labels: role, zone)")
        );
        let err = substitute_target("{{ target.host }}", &target())
            .err()
            .map(|e| e.chain());
        assert_eq!(
            err.as_deref(),
            Some("{{target.host}} is not understood; accepted: {{target.address}}, {{target.labels.NAME}}")
        );
    }

    #[test]
    fn every_text_of_a_spec_is_mapped() {
        let shell = ExecutorSpec::Shell(ShellSpec {
            command: "a".into(),
            args: Some(vec!["b".into()]),
            env: BTreeMap::from([("K".to_string(), "c".to_string())]),
            cwd: Some("d".into()),
        });
        let upper = |t: &str| Ok(t.to_uppercase());
        let Ok(ExecutorSpec::Shell(got)) = map_texts(&shell, &mut { upper }) else {
            panic!("not mapped");
        };
        assert_eq!(
            (got.command.as_str(), got.args, got.cwd.as_deref()),
            ("A", Some(vec!["B".to_string()]), Some("D"))
        );
        assert_eq!(
            got.env,
            BTreeMap::from([("K".to_string(), "C".to_string())])
        );
        let record = ExecutorSpec::Record(RecordSpec { path: "p".into() });
        assert_eq!(
            map_texts(&record, &mut { upper }).ok(),
            Some(ExecutorSpec::Record(RecordSpec { path: "P".into() }))
        );
    }
}
