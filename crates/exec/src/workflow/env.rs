//! `${{ env.NAME }}` substitution in the texts of a workflow job's steps and
//! services.
//!
//! A reference is `${{`, optional whitespace, `env.NAME`, optional whitespace, `}}`;
//! it is replaced by NAME's value, once (a value that itself holds `${{ ... }}` is
//! not substituted again). The values come from the job's `env` (the workflow's
//! overlaid with the job's) and, for a step's or service's command, arguments,
//! directory and readiness check, its own `env` too; its own `env` values are
//! substituted from the job's alone. Not the server's environment: what a job
//! means must not depend on the node it lands on.
//!
//! Anything else between `${{` and `}}`, an unknown name or a `${{` without its
//! `}}` is an error rather than left as it is, so a typo does not quietly reach a
//! command line or a request.

use std::collections::BTreeMap;

use rota_core::workflow::{Readiness, ServiceSpec};
use rota_core::ExecutorSpec;

use crate::texts::{map_http, map_shell};
use crate::ExecError;

/// Variable names to values.
pub(crate) type Vars = BTreeMap<String, String>;

/// `text` with every `${{ env.NAME }}` replaced by NAME's value in `vars`.
pub(crate) fn substitute(text: &str, vars: &Vars) -> Result<String, ExecError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let inside = &rest[start + 3..];
        let Some(end) = inside.find("}}") else {
            return Err(ExecError::UnclosedExpression {
                text: text.to_string(),
            });
        };
        let expression = inside[..end].trim();
        let name = expression
            .strip_prefix("env.")
            .filter(|name| is_variable_name(name))
            .ok_or_else(|| ExecError::UnknownExpression {
                expression: expression.to_string(),
            })?;
        let value = vars.get(name).ok_or_else(|| ExecError::UnsetVariable {
            name: name.to_string(),
            set: vars.keys().cloned().collect(),
        })?;
        out.push_str(value);
        rest = &inside[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Letters, digits and `_`, not starting with a digit (what workflow validation
/// accepts as an `env` key).
fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Each value substituted from `vars`.
fn substitute_values(values: &Vars, vars: &Vars) -> Result<Vars, ExecError> {
    values
        .iter()
        .map(|(name, value)| Ok((name.clone(), substitute(value, vars)?)))
        .collect()
}

/// `base` overlaid with `over`.
pub(crate) fn overlay(base: &Vars, over: &Vars) -> Vars {
    let mut merged = base.clone();
    merged.extend(over.iter().map(|(k, v)| (k.clone(), v.clone())));
    merged
}

/// A step's executor with its texts substituted; for a shell step, its `env` holds
/// its own variables, substituted.
pub(crate) fn substitute_step(
    executor: &ExecutorSpec,
    job_env: &Vars,
) -> Result<ExecutorSpec, ExecError> {
    Ok(match executor {
        ExecutorSpec::Shell(shell) => {
            let env = substitute_values(&shell.env, job_env)?;
            let vars = overlay(job_env, &env);
            let mut shell = map_shell(shell, &mut |text| substitute(text, &vars))?;
            shell.env = env;
            ExecutorSpec::Shell(shell)
        }
        ExecutorSpec::Http(http) => {
            ExecutorSpec::Http(map_http(http, &mut |text| substitute(text, job_env))?)
        }
        other => other.clone(),
    })
}

/// A service with its texts substituted; its `env` holds its own variables,
/// substituted.
pub(crate) fn substitute_service(
    service: &ServiceSpec,
    job_env: &Vars,
) -> Result<ServiceSpec, ExecError> {
    let env = substitute_values(&service.env, job_env)?;
    let vars = overlay(job_env, &env);
    let ready = match &service.ready {
        None => None,
        Some(Readiness::Tcp(addr)) => Some(Readiness::Tcp(substitute(addr, &vars)?)),
        Some(Readiness::Http(url)) => Some(Readiness::Http(substitute(url, &vars)?)),
        Some(Readiness::Command(cmd)) => Some(Readiness::Command(substitute(cmd, &vars)?)),
    };
    Ok(ServiceSpec {
        name: service.name.clone(),
        command: substitute(&service.command, &vars)?,
        env,
        ready,
        ready_timeout: service.ready_timeout,
    })
}

#[cfg(test)]
mod tests {
    use rota_core::{HttpSpec, HumanDuration, ShellSpec};

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn error_text(err: ExecError) -> String {
        err.chain()
    }

    #[test]
    fn both_spellings_are_substituted() {
        let vars = vars(&[("HOST", "db.local"), ("PORT", "5432")]);
        let got = substitute("${{ env.HOST }}:${{env.PORT}}/${{   env.HOST\t}}", &vars);
        assert_eq!(got.ok().as_deref(), Some("db.local:5432/db.local"));
    }

    #[test]
    fn text_without_references_is_unchanged() {
        let text = "echo $HOME ${PATH} {{ not one }} $ { {";
        assert_eq!(substitute(text, &Vars::new()).ok().as_deref(), Some(text));
    }

    #[test]
    fn values_are_not_substituted_again() {
        let vars = vars(&[("A", "${{ env.B }}"), ("B", "b")]);
        assert_eq!(
            substitute("x${{ env.A }}y", &vars).ok().as_deref(),
            Some("x${{ env.B }}y")
        );
    }

    #[test]
    fn an_unknown_variable_names_what_is_set() {
        let vars = vars(&[("B", "1"), ("A", "2")]);
        let err = substitute("run ${{env.NOPE}}", &vars).err().map(error_text);
        assert_eq!(
            err.as_deref(),
            Some("${{ env.NOPE }} is not set (set: A, B)")
        );
        let err = substitute("${{ env.NOPE }}", &Vars::new())
            .err()
            .map(error_text);
        assert_eq!(
            err.as_deref(),
            Some("${{ env.NOPE }} is not set (no variable is set)")
        );
    }

    #[test]
    fn other_expressions_and_unclosed_ones_are_errors() {
        let err = substitute("${{ secrets.TOKEN }}", &Vars::new())
            .err()
            .map(error_text);
        assert_eq!(
            err.as_deref(),
            Some("${{ secrets.TOKEN }} is not understood; only ${{ env.NAME }} is substituted")
        );
        let err = substitute("${{ env.A-B }}", &vars(&[("A", "1")]))
            .err()
            .map(error_text);
        assert!(
            err.as_deref()
                .is_some_and(|e| e.starts_with("${{ env.A-B }} is not understood")),
            "{err:?}"
        );
        let err = substitute("echo ${{ env.A", &vars(&[("A", "1")]))
            .err()
            .map(error_text);
        assert_eq!(
            err.as_deref(),
            Some("\"${{\" without a closing \"}}\" in \"echo ${{ env.A\"")
        );
    }

    #[test]
    fn shell_steps_are_substituted_with_their_own_env() {
        let job = vars(&[("DIR", "/srv"), ("NAME", "job")]);
        let step = ExecutorSpec::Shell(ShellSpec {
            command: "migrate ${{ env.NAME }} ${{ env.LEVEL }}".into(),
            args: Some(vec!["--to=${{env.DIR}}".into(), "${{ env.LEVEL }}".into()]),
            env: vars(&[("LEVEL", "${{ env.NAME }}-3"), ("NAME", "step")]),
            cwd: Some("${{ env.DIR }}/app".into()),
        });
        let Ok(ExecutorSpec::Shell(got)) = substitute_step(&step, &job) else {
            panic!("not substituted");
        };
        // The step's own values come from the job's env; its texts see both, its
        // own first.
        assert_eq!(got.env, vars(&[("LEVEL", "job-3"), ("NAME", "step")]));
        assert_eq!(got.command, "migrate step job-3");
        assert_eq!(
            got.args,
            Some(vec!["--to=/srv".to_string(), "job-3".to_string()])
        );
        assert_eq!(got.cwd.as_deref(), Some("/srv/app"));
    }

    #[test]
    fn http_steps_are_substituted_in_url_headers_and_body() {
        let job = vars(&[("API", "http://127.0.0.1:8080"), ("TOKEN", "s3cret")]);
        let step = ExecutorSpec::Http(HttpSpec {
            method: "POST".into(),
            url: "${{ env.API }}/v1/deploy".into(),
            headers: vars(&[("Authorization", "Bearer ${{env.TOKEN}}")]),
            body: Some(r#"{"token": "${{ env.TOKEN }}"}"#.into()),
            expect_status: vec![201],
        });
        let Ok(ExecutorSpec::Http(got)) = substitute_step(&step, &job) else {
            panic!("not substituted");
        };
        assert_eq!(got.url, "http://127.0.0.1:8080/v1/deploy");
        assert_eq!(got.headers, vars(&[("Authorization", "Bearer s3cret")]));
        assert_eq!(got.body.as_deref(), Some(r#"{"token": "s3cret"}"#));
        assert_eq!(got.method, "POST");
        assert_eq!(got.expect_status, vec![201]);
    }

    #[test]
    fn a_step_with_an_unknown_variable_fails() {
        let step = ExecutorSpec::Http(HttpSpec {
            method: "GET".into(),
            url: "http://x/".into(),
            headers: vars(&[("X-Id", "${{ env.ID }}")]),
            body: None,
            expect_status: vec![],
        });
        let err = substitute_step(&step, &vars(&[("A", "1")]))
            .err()
            .map(error_text);
        assert_eq!(err.as_deref(), Some("${{ env.ID }} is not set (set: A)"));
    }

    #[test]
    fn services_are_substituted_in_command_and_readiness() {
        let job = vars(&[("PORT", "5432")]);
        let service = ServiceSpec {
            name: "db".into(),
            command: "postgres -p ${{ env.PORT }} -D ${{ env.DATA }}".into(),
            env: vars(&[("DATA", "/tmp/pg-${{ env.PORT }}")]),
            ready: Some(Readiness::Tcp("127.0.0.1:${{ env.PORT }}".into())),
            ready_timeout: HumanDuration::from_secs(5),
        };
        let got = substitute_service(&service, &job).ok();
        let got = got.as_ref();
        assert_eq!(
            got.map(|s| s.command.as_str()),
            Some("postgres -p 5432 -D /tmp/pg-5432")
        );
        assert_eq!(
            got.and_then(|s| s.ready.clone()),
            Some(Readiness::Tcp("127.0.0.1:5432".into()))
        );
        for (ready, expected) in [
            (
                Readiness::Http("http://127.0.0.1:${{env.PORT}}/health".into()),
                Readiness::Http("http://127.0.0.1:5432/health".into()),
            ),
            (
                Readiness::Command("pg_isready -p ${{ env.PORT }}".into()),
                Readiness::Command("pg_isready -p 5432".into()),
            ),
        ] {
            let service = ServiceSpec {
                ready: Some(ready),
                ..service.clone()
            };
            let got = substitute_service(&service, &job)
                .ok()
                .and_then(|s| s.ready);
            assert_eq!(got, Some(expected));
        }
    }
}
