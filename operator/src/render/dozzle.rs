//! Dozzle in Kubernetes mode: a ServiceAccount and the least RBAC it needs.
//!
//! What Dozzle (`DOZZLE_MODE=k8s`, `DOZZLE_NAMESPACE=<ns>`) calls, read from
//! its source (`internal/k8s`):
//! - pods: list and watch in the namespace (container list, events, the
//!   `/healthcheck` route), get (one container), `pods/log` get (streams);
//! - `metrics.k8s.io` pods: list in the namespace (CPU and memory; Dozzle's
//!   docs say metrics-server is required);
//! - nodes: list at start-up (it names the host after the first node) and,
//!   in newer releases, watch. Nodes are cluster-scoped, so this needs a
//!   ClusterRole: see [`cluster_objects`]. Without it Dozzle exits at start.
//!
//! Actions (restart/stop), shell and attach stay off: no `pods/exec`,
//! `pods/attach`, delete or write verbs are granted.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyIngressRule};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use std::collections::BTreeMap;

use super::meta::Parent;
use super::{Child, GeneratedSecret, RenderError};
use super::{netpol, rbac};
use crate::api::mediastack::MediaStackSpec;

/// Catalog name of the Dozzle app.
pub const APP: &str = "dozzle";
/// Label naming the namespace of the stack on its cluster-scoped objects
/// (which cannot carry an owner reference to the namespaced MediaStack).
pub const NAMESPACE_LABEL: &str = "mediastack.io/namespace";

/// Whether Dozzle runs.
pub fn enabled(spec: &MediaStackSpec) -> bool {
    spec.apps.get(APP).is_some_and(|s| s.enabled)
}

/// User name of the generated Dozzle login.
pub const LOGIN_USER: &str = "admin";

/// Name of the generated login Secret: `<stack>-dozzle-auth`.
pub fn login_secret_name(parent: &Parent) -> String {
    parent.child_name("dozzle-auth")
}

/// Dozzle's log view shows every container log of the namespace (first-start
/// passwords included), so its route gets a login unless the user brings
/// one (`expose.auth`) or opts out on the LAN (`expose.allowAnonymous`): a
/// `kubernetes.io/basic-auth` Secret with user [`LOGIN_USER`] and a random
/// password, created once by the reconciler and read by Traefik's basicAuth
/// Middleware (`kubectl get secret <stack>-dozzle-auth -o
/// jsonpath='{.data.password}' | base64 -d`).
pub fn login_secret(parent: &Parent, spec: &MediaStackSpec) -> Option<GeneratedSecret> {
    let app = spec.apps.get(APP).filter(|s| s.enabled)?;
    let expose = app.expose.clone().unwrap_or_default();
    let generated = expose.enabled && expose.auth.is_none() && !expose.allow_anonymous;
    generated.then(|| GeneratedSecret {
        name: login_secret_name(parent),
        random_keys: vec!["password".into()],
        templated: BTreeMap::from([("username".to_string(), LOGIN_USER.to_string())]),
        labels: parent.labels(APP, "auth"),
    })
}

/// The NetworkPolicy `<stack>-dozzle`, with the managed Traefik: Dozzle's
/// `http` port only from the stack's Traefik pods (where the login is) and
/// its dashboard pods (their health check), so no pod can read the logs
/// through the Service and skip the login. With an existing Traefik, whose
/// pods the operator does not know, there is none.
pub fn network_policy(parent: &Parent, spec: &MediaStackSpec) -> Option<NetworkPolicy> {
    if !enabled(spec) || !spec.ingress.traefik.is_managed() {
        return None;
    }
    Some(netpol::ingress_only(
        parent.meta(&parent.child_name(APP), APP, "app"),
        parent,
        APP,
        vec![NetworkPolicyIngressRule {
            ports: Some(vec![netpol::tcp_port(super::meta::HTTP_PORT)]),
            from: Some(vec![
                netpol::stack_pods(parent, super::traefik::CONTAINER),
                netpol::stack_pods(parent, super::dashboard::APP),
            ]),
        }],
    ))
}

/// Name of Dozzle's ServiceAccount, Role and RoleBinding: `<stack>-dozzle`.
pub fn service_account_name(parent: &Parent) -> String {
    parent.child_name(APP)
}

/// Name of the cluster-scoped ClusterRole and ClusterRoleBinding:
/// `mediastack:<namespace>:<stack>:dozzle`. Namespaces and object names
/// never contain `:`, so two stacks cannot collide.
pub fn cluster_role_name(parent: &Parent) -> String {
    format!("mediastack:{}:{}:{APP}", parent.namespace, parent.name)
}

/// Dozzle's ServiceAccount, Role and RoleBinding when Dozzle is enabled, and
/// its [`network_policy`].
pub fn objects(parent: &Parent, spec: &MediaStackSpec) -> Result<Vec<Child>, RenderError> {
    if !enabled(spec) {
        return Ok(Vec::new());
    }
    let name = service_account_name(parent);
    let meta = || parent.meta(&name, APP, "rbac");
    let sa = ServiceAccount {
        metadata: meta(),
        ..Default::default()
    };
    let role = Role {
        metadata: meta(),
        rules: Some(vec![
            rbac::rule("", &["pods"], &["get", "list", "watch"]),
            rbac::rule("", &["pods/log"], &["get"]),
            rbac::rule("metrics.k8s.io", &["pods"], &["get", "list"]),
        ]),
    };
    let binding = RoleBinding {
        metadata: meta(),
        role_ref: rbac::role_ref("Role", &name),
        subjects: Some(vec![subject(parent)]),
    };
    let mut out = vec![
        Child::typed(&sa)?,
        Child::typed(&role)?,
        Child::typed(&binding)?,
    ];
    if let Some(np) = network_policy(parent, spec) {
        out.push(Child::typed(&np)?);
    }
    Ok(out)
}

/// The cluster-scoped part of Dozzle's RBAC when Dozzle is enabled: read
/// access to nodes (get/list/watch, nothing else).
///
/// These objects have no namespace and NO owner reference (a cluster-scoped
/// object cannot be owned by a namespaced one). They carry the stack labels
/// plus [`NAMESPACE_LABEL`]; the reconciler must apply them cluster-wide,
/// prune them by those labels when Dozzle is disabled and sweep them away
/// once their MediaStack is gone (`reconcile::mediastack::sweep_cluster_children`).
pub fn cluster_objects(parent: &Parent, spec: &MediaStackSpec) -> Result<Vec<Child>, RenderError> {
    if !enabled(spec) {
        return Ok(Vec::new());
    }
    let name = cluster_role_name(parent);
    let meta = || {
        let mut labels = parent.labels(APP, "rbac");
        labels.insert(NAMESPACE_LABEL.into(), parent.namespace.clone());
        ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels),
            ..Default::default()
        }
    };
    let role = ClusterRole {
        metadata: meta(),
        rules: Some(vec![rbac::rule("", &["nodes"], &["get", "list", "watch"])]),
        aggregation_rule: None,
    };
    let binding = ClusterRoleBinding {
        metadata: meta(),
        role_ref: rbac::role_ref("ClusterRole", &name),
        subjects: Some(vec![subject(parent)]),
    };
    Ok(vec![Child::typed(&role)?, Child::typed(&binding)?])
}

fn subject(parent: &Parent) -> Subject {
    rbac::service_account(&service_account_name(parent), &parent.namespace)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{parent, stack};
    use super::*;
    use crate::api::mediastack::AppSpec;
    use std::collections::BTreeMap;

    /// The rules of a rendered Role or ClusterRole, as `(group, resource) -> verbs`.
    fn granted(child: &Child) -> BTreeMap<(String, String), Vec<String>> {
        let mut out = BTreeMap::new();
        let rules = child.object.data["rules"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let strs = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        for r in &rules {
            for g in strs(&r["apiGroups"]) {
                for res in strs(&r["resources"]) {
                    out.entry((g.clone(), res))
                        .or_insert_with(Vec::new)
                        .extend(strs(&r["verbs"]));
                }
            }
        }
        out
    }

    fn key(g: &str, r: &str) -> (String, String) {
        (g.to_string(), r.to_string())
    }

    #[test]
    fn a_login_secret_unless_the_user_brings_auth_or_opts_out() {
        let p = parent();
        let mut spec = stack().spec;
        let secret = login_secret(&p, &spec).expect("generated by default");
        assert_eq!(secret.name, "home-dozzle-auth");
        assert_eq!(secret.random_keys, ["password"]);
        assert_eq!(
            secret.templated,
            BTreeMap::from([("username".to_string(), "admin".to_string())])
        );
        spec.apps.dozzle = Some(AppSpec {
            expose: Some(crate::api::mediastack::Expose {
                allow_anonymous: true,
                ..Default::default()
            }),
            ..AppSpec::default()
        });
        assert!(login_secret(&p, &spec).is_none());
        spec.apps.dozzle = None;
        assert!(login_secret(&p, &spec).is_none(), "no Dozzle, no login");
    }

    #[test]
    fn only_traefik_and_the_dashboard_reach_dozzle() {
        let p = parent();
        let mut spec = stack().spec;
        let np = serde_json::to_value(network_policy(&p, &spec).expect("a policy")).expect("json");
        assert_eq!(
            np["spec"]["podSelector"]["matchLabels"],
            serde_json::json!({"app.kubernetes.io/name": "dozzle", "app.kubernetes.io/instance": "home"})
        );
        assert_eq!(
            np["spec"]["ingress"],
            serde_json::json!([{
                "ports": [{"port": "http", "protocol": "TCP"}],
                "from": [
                    {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "traefik", "app.kubernetes.io/instance": "home"}}},
                    {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "dashboard", "app.kubernetes.io/instance": "home"}}}
                ]
            }])
        );
        assert!(
            objects(&p, &spec)
                .expect("render")
                .iter()
                .any(|c| c.key() == "NetworkPolicy/home-dozzle")
        );
        spec.ingress.traefik.managed = Some(false);
        assert!(network_policy(&p, &spec).is_none());
    }

    #[test]
    fn rbac_snapshots() {
        let (p, spec) = (parent(), stack().spec);
        let all: Vec<Child> = objects(&p, &spec)
            .expect("render")
            .into_iter()
            .chain(cluster_objects(&p, &spec).expect("render"))
            .collect();
        let keys: Vec<String> = all.iter().map(Child::key).collect();
        assert_eq!(
            keys,
            [
                "ServiceAccount/home-dozzle",
                "Role/home-dozzle",
                "RoleBinding/home-dozzle",
                "NetworkPolicy/home-dozzle",
                "ClusterRole/mediastack:media:home:dozzle",
                "ClusterRoleBinding/mediastack:media:home:dozzle",
            ]
        );
        for child in &all {
            let snap = format!("dozzle_{}", child.api.kind.to_lowercase());
            insta::assert_snapshot!(snap, child.to_yaml());
        }
    }

    #[test]
    fn role_only_reads_pods_and_their_logs() {
        let children = objects(&parent(), &stack().spec).expect("render");
        let role = children
            .iter()
            .find(|c| c.api.kind == "Role")
            .expect("Role");
        let expected = BTreeMap::from([
            (
                key("", "pods"),
                vec!["get".to_string(), "list".into(), "watch".into()],
            ),
            (key("", "pods/log"), vec!["get".to_string()]),
            (
                key("metrics.k8s.io", "pods"),
                vec!["get".to_string(), "list".into()],
            ),
        ]);
        assert_eq!(granted(role), expected);
    }

    #[test]
    fn cluster_role_only_reads_nodes_and_is_not_owned() {
        let children = cluster_objects(&parent(), &stack().spec).expect("render");
        let role = children
            .iter()
            .find(|c| c.api.kind == "ClusterRole")
            .expect("ClusterRole");
        assert_eq!(
            granted(role),
            BTreeMap::from([(
                key("", "nodes"),
                vec!["get".to_string(), "list".into(), "watch".into()]
            )])
        );
        for child in &children {
            assert!(
                child.object.metadata.namespace.is_none(),
                "{} is namespaced",
                child.key()
            );
            assert!(child.object.metadata.owner_references.is_none());
            let labels = child.object.metadata.labels.clone().unwrap_or_default();
            assert_eq!(
                labels.get(NAMESPACE_LABEL).map(String::as_str),
                Some("media")
            );
            assert_eq!(
                labels
                    .get(super::super::meta::STACK_LABEL)
                    .map(String::as_str),
                Some("home")
            );
        }
    }

    #[test]
    fn bindings_grant_to_dozzles_service_account_only() {
        let (p, spec) = (parent(), stack().spec);
        for child in objects(&p, &spec)
            .expect("render")
            .iter()
            .chain(cluster_objects(&p, &spec).expect("render").iter())
            .filter(|c| c.api.kind.ends_with("Binding"))
        {
            let subjects = child.object.data["subjects"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert_eq!(subjects.len(), 1, "{}", child.key());
            assert_eq!(subjects[0]["kind"], "ServiceAccount");
            assert_eq!(subjects[0]["name"], "home-dozzle");
            assert_eq!(subjects[0]["namespace"], "media");
        }
    }

    #[test]
    fn nothing_when_dozzle_is_off() {
        let mut spec = stack().spec;
        spec.apps.dozzle = Some(AppSpec {
            enabled: false,
            ..Default::default()
        });
        assert!(objects(&parent(), &spec).expect("render").is_empty());
        assert!(
            cluster_objects(&parent(), &spec)
                .expect("render")
                .is_empty()
        );
    }
}
