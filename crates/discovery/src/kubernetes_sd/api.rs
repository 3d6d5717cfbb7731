//! The few fields of the Kubernetes objects the provider reads, and what it
//! makes of them. Unknown fields are ignored: API objects carry many more.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use rota_core::targets::{normalize, Target};
use serde::Deserialize;

/// The annotation that numbers a Deployment's revisions (and says which
/// revision each of its ReplicaSets is).
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The label the Deployment controller gives a ReplicaSet and its pods: the hash
/// of the pod template.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// The label of the pod's namespace.
pub const META_NAMESPACE: &str = "__meta_kubernetes_namespace";
/// The label of the pod's name.
pub const META_POD_NAME: &str = "__meta_kubernetes_pod_name";
/// The label of the node the pod runs on.
pub const META_POD_NODE_NAME: &str = "__meta_kubernetes_pod_node_name";
/// The prefix of the pod's own labels, each name sanitized to a label name.
pub const META_POD_LABEL_PREFIX: &str = "__meta_kubernetes_pod_label_";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub owner_references: Vec<OwnerReference>,
    #[serde(default)]
    pub deletion_timestamp: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OwnerReference {
    pub kind: String,
    pub uid: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Deployment {
    pub metadata: ObjectMeta,
    pub spec: DeploymentSpec,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeploymentSpec {
    pub selector: LabelSelector,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<SelectorRequirement>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct List<T> {
    pub items: Vec<T>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReplicaSet {
    pub metadata: ObjectMeta,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Pod {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodSpec,
    #[serde(default)]
    pub status: PodStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub node_name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default, rename = "podIP")]
    pub pod_ip: Option<String>,
    #[serde(default)]
    pub conditions: Vec<PodCondition>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PodCondition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
}

/// An API error's body (`kind: Status`), for its message.
#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub message: String,
}

impl LabelSelector {
    /// The selector in the `labelSelector` query syntax (`a=b,c in (d,e)`),
    /// plus `extra` equalities; `Err` names an operator it does not know.
    pub fn to_query(&self, extra: &[(&str, &str)]) -> Result<String, String> {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for requirement in &self.match_expressions {
            let key = &requirement.key;
            let values = requirement.values.join(",");
            parts.push(match requirement.operator.as_str() {
                "In" => format!("{key} in ({values})"),
                "NotIn" => format!("{key} notin ({values})"),
                "Exists" => key.clone(),
                "DoesNotExist" => format!("!{key}"),
                other => {
                    return Err(format!(
                        "selector operator {other:?} of key {key:?} is unknown; accepted: In, NotIn, Exists, DoesNotExist"
                    ))
                }
            });
        }
        parts.extend(extra.iter().map(|(k, v)| format!("{k}={v}")));
        Ok(parts.join(","))
    }
}

/// The ReplicaSet of `deployment`'s current revision (`revision`): owned by the
/// Deployment (kind and uid) and annotated with the same revision.
pub fn current_replica_set<'a>(
    deployment: &Deployment,
    revision: &str,
    replica_sets: &'a [ReplicaSet],
) -> Option<&'a ReplicaSet> {
    replica_sets.iter().find(|rs| {
        rs.metadata
            .owner_references
            .iter()
            .any(|o| o.kind == "Deployment" && o.uid == deployment.metadata.uid)
            && rs
                .metadata
                .annotations
                .get(REVISION_ANNOTATION)
                .map(String::as_str)
                == Some(revision)
    })
}

/// Whether the pod takes traffic: Running, with an IP, `Ready=True`, and not
/// being deleted (a terminating pod may still say Ready for a moment).
fn is_serving(pod: &Pod) -> bool {
    pod.status.phase.as_deref() == Some("Running")
        && pod
            .status
            .pod_ip
            .as_deref()
            .is_some_and(|ip| !ip.is_empty())
        && pod
            .status
            .conditions
            .iter()
            .any(|c| c.kind == "Ready" && c.status == "True")
        && pod.metadata.deletion_timestamp.is_none()
}

/// `name` with every character that may not be in a label name replaced by `_`.
pub fn sanitize_label_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The targets among `pods`: the serving ones, as `podIP:port` with their labels.
pub fn targets(namespace: &str, pods: &[Pod], port: u16) -> Vec<Target> {
    let targets = pods
        .iter()
        .filter(|pod| is_serving(pod))
        .map(|pod| {
            let ip = pod.status.pod_ip.as_deref().unwrap_or_default();
            let address = match ip.parse::<IpAddr>() {
                Ok(ip) => SocketAddr::new(ip, port).to_string(),
                Err(_) => format!("{ip}:{port}"),
            };
            let mut labels = BTreeMap::from([
                (META_NAMESPACE.to_string(), namespace.to_string()),
                (META_POD_NAME.to_string(), pod.metadata.name.clone()),
            ]);
            if let Some(node) = &pod.spec.node_name {
                labels.insert(META_POD_NODE_NAME.to_string(), node.clone());
            }
            for (name, value) in &pod.metadata.labels {
                labels.insert(
                    format!("{META_POD_LABEL_PREFIX}{}", sanitize_label_name(name)),
                    value.clone(),
                );
            }
            Target { address, labels }
        })
        .collect();
    normalize(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_become_query_syntax() {
        let selector: LabelSelector = serde_json::from_str(
            r#"{"matchLabels": {"app": "gw", "tier": "edge"},
                "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod", "canary"]},
                    {"key": "legacy", "operator": "DoesNotExist"},
                    {"key": "team", "operator": "Exists"},
                    {"key": "zone", "operator": "NotIn", "values": ["z9"]}]}"#,
        )
        .unwrap();
        assert_eq!(
            selector.to_query(&[(POD_TEMPLATE_HASH, "abc")]).unwrap(),
            "app=gw,tier=edge,env in (prod,canary),!legacy,team,zone notin (z9),pod-template-hash=abc"
        );
        let bad: LabelSelector =
            serde_json::from_str(r#"{"matchExpressions": [{"key": "a", "operator": "Gt"}]}"#)
                .unwrap();
        assert!(bad.to_query(&[]).unwrap_err().contains("\"Gt\""));
    }

    #[test]
    fn label_names_are_sanitized() {
        assert_eq!(
            sanitize_label_name("app.kubernetes.io/name"),
            "app_kubernetes_io_name"
        );
        assert_eq!(
            sanitize_label_name("pod-template-hash"),
            "pod_template_hash"
        );
    }

    #[test]
    fn ipv6_pod_ips_are_bracketed() {
        let pod: Pod = serde_json::from_str(
            r#"{"metadata": {"name": "p"}, "status": {"phase": "Running", "podIP": "fd00::5",
                "conditions": [{"type": "Ready", "status": "True"}]}}"#,
        )
        .unwrap();
        let targets = targets("gw", &[pod], 8080);
        assert_eq!(targets[0].address, "[fd00::5]:8080");
        assert!(!targets[0].labels.contains_key(META_POD_NODE_NAME));
    }
}
