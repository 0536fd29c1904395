//! Everything a MediaStack renders, composed from the per-concern modules.

use std::collections::BTreeMap;

use super::meta::Parent;
use super::{Child, GeneratedSecret, Inputs, RenderError};
use crate::api::MediaStack;

/// The desired state of one MediaStack.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rendered {
    /// Objects to apply, in apply order.
    pub children: Vec<Child>,
    /// Cluster-scoped objects (no namespace, no owner reference), pruned by label.
    pub cluster_children: Vec<Child>,
    /// Secrets to create once if absent.
    pub generated_secrets: Vec<GeneratedSecret>,
    /// `kubernetes.io/basic-auth` Secrets (logins) to create once if absent.
    pub login_secrets: Vec<GeneratedSecret>,
    /// App -> what it waits for before it is started (replicas 0 meanwhile).
    pub waiting: BTreeMap<String, String>,
}

/// Renders every child of `stack`.
pub fn render(
    stack: &MediaStack,
    parent: &Parent,
    inputs: &Inputs,
) -> Result<Rendered, RenderError> {
    let spec = &stack.spec;
    let mut out = Rendered::default();
    out.children.extend(super::storage::shared(parent, spec)?);
    for (app, app_spec) in spec.apps.enabled() {
        let mut objs = super::workload::app(parent, spec, app, app_spec, inputs)?;
        if let Some(waiting) = objs.waiting_for.take() {
            out.waiting.insert(app.name.to_string(), waiting);
        }
        if let Some(vpn) = &app_spec.vpn {
            let resolution = inputs
                .vpn
                .get(&vpn.gateway_ref)
                .cloned()
                .unwrap_or_else(|| super::VpnResolution::Unavailable {
                    gateway: None,
                    reason: "VpnGatewayNotFound".into(),
                    message: format!("VpnGateway {} not found", vpn.gateway_ref),
                });
            if let super::VpnResolution::Unavailable { message, .. } = &resolution {
                out.waiting.insert(
                    app.name.to_string(),
                    format!("VpnGateway {}: {message}", vpn.gateway_ref),
                );
            }
            super::vpn::inject(
                parent,
                app,
                &mut objs.deployment,
                &resolution,
                &inputs.cluster_subnets,
                spec.monitoring.enabled,
            )?;
            out.children.push(super::vpn::network_policy(
                parent,
                app,
                &resolution,
                &inputs.cluster_subnets,
            )?);
            out.generated_secrets
                .push(super::vpn::control_secret(parent, app));
            if app.binds_to_tunnel {
                out.login_secrets.push(webui_login(parent, app.name));
            }
        }
        if spec.monitoring.enabled
            && let Some(secret) = super::monitoring::attach_exporter(
                parent,
                app,
                &mut objs.deployment,
                &mut objs.service,
            )
        {
            out.generated_secrets.push(secret);
        }
        super::vpn::ensure_sidecar(app, &objs.deployment)?;
        out.children.extend(objs.into_children()?);
    }
    out.children.extend(super::dozzle::objects(parent, spec)?);
    out.login_secrets
        .extend(super::dozzle::login_secret(parent, spec));
    out.cluster_children
        .extend(super::dozzle::cluster_objects(parent, spec)?);
    out.children
        .extend(super::dashboard::objects(parent, spec)?);
    out.children.extend(super::route::app_routes(parent, spec)?);
    out.children
        .extend(super::traefik::objects(parent, spec, inputs)?);
    out.children
        .extend(super::tunnel::objects(parent, spec, inputs)?);
    out.children
        .extend(super::fail2ban::objects(parent, spec, inputs)?);
    if spec.monitoring.enabled && inputs.monitoring_crds {
        out.children
            .extend(super::monitoring::objects(parent, spec)?);
    }
    dedup_secrets(&mut out.generated_secrets);
    Ok(out)
}

/// qBittorrent's WebUI login, created once (user `admin`, a random
/// password); the reconciler adds the hash its config step writes.
pub fn webui_login(parent: &Parent, app: &str) -> GeneratedSecret {
    GeneratedSecret {
        name: super::vpn::webui_secret_name(parent, app),
        random_keys: vec!["password".into()],
        templated: BTreeMap::from([("username".to_string(), "admin".to_string())]),
        labels: parent.labels(app, "auth"),
    }
}

/// Name of the fixed ClusterRole (shipped by the chart) that grants read
/// access to nodes, when the operator is not told otherwise.
pub const DEFAULT_NODE_READER_ROLE: &str = "mediastack-operator-node-reader";

/// The operator never writes ClusterRoles (its RBAC cannot): a cluster-scoped
/// role a child needs is the fixed one the chart ships, and the rendered
/// ClusterRoleBindings are pointed at it. Drops rendered ClusterRoles (their
/// only rule, node read, is what `role` grants) and rewrites the bindings'
/// `roleRef`.
pub fn bind_fixed_cluster_role(children: &mut Vec<Child>, role: &str) {
    children.retain(|c| c.api.kind != "ClusterRole");
    for c in children
        .iter_mut()
        .filter(|c| c.api.kind == "ClusterRoleBinding")
    {
        c.object.data["roleRef"] = serde_json::json!({
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role,
        });
    }
}

fn dedup_secrets(secrets: &mut Vec<GeneratedSecret>) {
    secrets.sort_by(|a, b| a.name.cmp(&b.name));
    secrets.dedup_by(|a, b| {
        if a.name == b.name {
            b.random_keys.append(&mut a.random_keys);
            b.random_keys.sort();
            b.random_keys.dedup();
            b.templated.extend(std::mem::take(&mut a.templated));
            true
        } else {
            false
        }
    });
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{inputs, parent, stack};
    use super::*;

    #[test]
    fn cluster_children_only_bind_the_fixed_node_reader_role() {
        let mut out = render(&stack(), &parent(), &inputs()).expect("render");
        assert!(
            out.cluster_children
                .iter()
                .any(|c| c.api.kind == "ClusterRole")
        );
        bind_fixed_cluster_role(&mut out.cluster_children, "ops-node-reader");
        let kinds: Vec<_> = out
            .cluster_children
            .iter()
            .map(|c| c.api.kind.clone())
            .collect();
        assert_eq!(kinds, vec!["ClusterRoleBinding"]);
        let binding = &out.cluster_children[0].object.data;
        assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
        assert_eq!(binding["roleRef"]["name"], "ops-node-reader");
        assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
    }
}
