//! `${{ env.X }}` in a workflow job's specs: replaced by `X` from the job's
//! environment (the workflow's `env` overlaid with the job's and the step's).

use std::collections::BTreeMap;

use rota_core::workflow::{Readiness, ServiceSpec};
use rota_core::ExecutorSpec;

/// `text` with every `${{ env.X }}` (spaces inside the braces optional) replaced;
/// an unknown `X`, or anything but `env.X`, is an error saying what is set.
pub(crate) fn substitute(text: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 3..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("{:?} opens ${{{{ without closing it", text))?;
        let expr = after[..end].trim();
        let name = expr.strip_prefix("env.").ok_or_else(|| {
            format!("${{{{ {expr} }}}} is not understood; write ${{{{ env.NAME }}}}")
        })?;
        let value = env.get(name).ok_or_else(|| {
            let set: Vec<&str> = env.keys().map(String::as_str).collect();
            format!(
                "${{{{ env.{name} }}}} is not set (set: {})",
                if set.is_empty() {
                    "none".to_string()
                } else {
                    set.join(", ")
                }
            )
        })?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn in_map(
    map: &BTreeMap<String, String>,
    env: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    map.iter()
        .map(|(k, v)| Ok((k.clone(), substitute(v, env)?)))
        .collect()
}

/// `spec` with `env` substituted in its command, arguments, environment values,
/// working directory, URL, header values and body.
pub(crate) fn executor(
    spec: &ExecutorSpec,
    env: &BTreeMap<String, String>,
) -> Result<ExecutorSpec, String> {
    Ok(match spec {
        ExecutorSpec::Shell(shell) => {
            let mut shell = shell.clone();
            shell.command = substitute(&shell.command, env)?;
            if let Some(args) = &mut shell.args {
                for arg in args.iter_mut() {
                    *arg = substitute(arg, env)?;
                }
            }
            shell.env = in_map(&shell.env, env)?;
            shell.cwd = shell
                .cwd
                .as_deref()
                .map(|c| substitute(c, env))
                .transpose()?;
            ExecutorSpec::Shell(shell)
        }
        ExecutorSpec::Http(http) => {
            let mut http = http.clone();
            http.url = substitute(&http.url, env)?;
            http.headers = in_map(&http.headers, env)?;
            http.body = http
                .body
                .as_deref()
                .map(|b| substitute(b, env))
                .transpose()?;
            ExecutorSpec::Http(http)
        }
        ExecutorSpec::Record(record) => {
            let mut record = record.clone();
            record.path = substitute(&record.path, env)?;
            ExecutorSpec::Record(record)
        }
        ExecutorSpec::WorkflowJob(_) => {
            return Err("a workflow job cannot run another as a step".to_string())
        }
    })
}

/// `service` with `env` substituted in its command, environment values and
/// readiness target.
pub(crate) fn service(
    service: &ServiceSpec,
    env: &BTreeMap<String, String>,
) -> Result<ServiceSpec, String> {
    let mut service = service.clone();
    service.command = substitute(&service.command, env)?;
    service.env = in_map(&service.env, env)?;
    service.ready = match &service.ready {
        Some(Readiness::Tcp(a)) => Some(Readiness::Tcp(substitute(a, env)?)),
        Some(Readiness::Http(u)) => Some(Readiness::Http(substitute(u, env)?)),
        Some(Readiness::Command(c)) => Some(Readiness::Command(substitute(c, env)?)),
        None => None,
    };
    Ok(service)
}

#[cfg(test)]
mod tests {
    use rota_core::HttpSpec;

    use super::*;

    fn env() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("HOST".to_string(), "db.local".to_string()),
            ("PORT".to_string(), "5432".to_string()),
        ])
    }

    #[test]
    fn both_spellings_are_replaced() {
        assert_eq!(
            substitute("${{ env.HOST }}:${{env.PORT}} and $PLAIN", &env()).unwrap(),
            "db.local:5432 and $PLAIN"
        );
        assert_eq!(substitute("no braces", &env()).unwrap(), "no braces");
    }

    #[test]
    fn unknown_and_malformed_expressions_are_errors() {
        assert_eq!(
            substitute("x ${{ env.NOPE }}", &env()).unwrap_err(),
            "${{ env.NOPE }} is not set (set: HOST, PORT)"
        );
        assert!(substitute("${{ secrets.X }}", &env())
            .unwrap_err()
            .contains("not understood"));
        assert!(substitute("${{ env.HOST", &env())
            .unwrap_err()
            .contains("without closing"));
    }

    #[test]
    fn http_specs_are_substituted_everywhere() {
        let spec = ExecutorSpec::Http(HttpSpec {
            method: "POST".into(),
            url: "http://${{ env.HOST }}:${{ env.PORT }}/x".into(),
            headers: BTreeMap::from([("X-Port".into(), "${{ env.PORT }}".into())]),
            body: Some("{\"host\": \"${{ env.HOST }}\"}".into()),
            expect_status: vec![],
        });
        let ExecutorSpec::Http(done) = executor(&spec, &env()).unwrap() else {
            panic!("http expected");
        };
        assert_eq!(done.url, "http://db.local:5432/x");
        assert_eq!(done.headers["X-Port"], "5432");
        assert_eq!(done.body.as_deref(), Some("{\"host\": \"db.local\"}"));
    }
}
