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
            // Admit the operator only when a wanted link calls this app.
            let operator = inputs
                .operator
                .as_ref()
                .filter(|_| crate::wiring::runner::calls_app(spec, app.name));
            out.children.push(super::vpn::network_policy(
                parent,
                app,
                &resolution,
                &inputs.cluster_subnets,
                operator,
            )?);
            out.generated_secrets
                .push(super::vpn::control_secret(parent, app));
            if app.binds_to_tunnel {
                out.login_secrets.push(webui_login(parent, app.name));
            }
        }
        let exportarr = matches!(
            app.exporter,
            Some(crate::catalog::Exporter::Exportarr { .. })
        );
        let wiring_key = crate::wiring::runner::needs_api_key(spec, app.name);
        if spec.monitoring.enabled || wiring_key {
            ensure_key_kept(spec, app, &objs.deployment)?;
        }
        if wiring_key
            && !(spec.monitoring.enabled && exportarr)
            && let Some(secret) = super::monitoring::give_api_key(parent, app, &mut objs.deployment)
        {
            out.generated_secrets.push(secret);
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
    unique_service_names(&out.children)?;
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

/// Monitoring and wiring give an *arr app a generated API key through its environment,
/// which overrides the key in its `config.xml`. For an adopted config
/// (`apps.<app>.config`) that would replace the key other apps and scripts
/// already use, so it is refused: the user names the existing key
/// (`apiKeySecretRef`) or sets the app's key variable in `env`.
fn ensure_key_kept(
    spec: &crate::api::MediaStackSpec,
    app: &crate::catalog::App,
    deployment: &k8s_openapi::api::apps::v1::Deployment,
) -> Result<(), RenderError> {
    let Some(var) = super::monitoring::key_env_name(app) else {
        return Ok(());
    };
    if !matches!(
        app.exporter,
        Some(crate::catalog::Exporter::Exportarr { .. })
    ) || super::storage::adopted_config(spec, app).is_none()
    {
        return Ok(());
    }
    let set = deployment
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|p| p.containers.iter().find(|c| c.name == app.name))
        .and_then(|c| c.env.as_ref())
        .is_some_and(|env| env.iter().any(|e| e.name == var));
    if set {
        return Ok(());
    }
    let how = if app.api_key_env.is_some() {
        format!(
            "set apps.{}.apiKeySecretRef to a Secret with its existing key",
            app.name
        )
    } else {
        format!("set {var} in apps.{}.env to its existing key", app.name)
    };
    Err(RenderError::Invalid(format!(
        "apps.{}.config adopts an existing config whose API key monitoring would replace with a generated one: {how} (the <ApiKey> of its config), or set monitoring.enabled: false and turn off the spec.wiring links that use it",
        app.name
    )))
}

/// Service names of the stack must be unique: an alias may not repeat
/// another alias or name one of the stack's own Services.
fn unique_service_names(children: &[Child]) -> Result<(), RenderError> {
    let mut seen = std::collections::BTreeSet::new();
    for c in children.iter().filter(|c| c.api.kind == "Service") {
        let name = c.object.metadata.name.clone().unwrap_or_default();
        if !seen.insert(name.clone()) {
            return Err(RenderError::Invalid(format!(
                "Service name {name} is used twice: a serviceAliases entry repeats another alias or one of the stack's Services"
            )));
        }
    }
    Ok(())
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

    use crate::api::mediastack::{AppConfig, SecretKeyRef};

    fn env_of(r: &Rendered, deployment: &str, container: &str) -> Vec<serde_json::Value> {
        let d = r
            .children
            .iter()
            .find(|c| c.key() == format!("Deployment/{deployment}"))
            .expect("deployment");
        d.object.data["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .find(|c| c["name"] == container)
            .expect("container")["env"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The `from` peers of qBittorrent's VPN policy's web UI rule.
    fn qbittorrent_web_peers(r: &Rendered) -> Vec<serde_json::Value> {
        let p = r
            .children
            .iter()
            .find(|c| c.key() == "NetworkPolicy/home-qbittorrent-vpn")
            .expect("qBittorrent's VPN policy");
        p.object.data["spec"]["ingress"][0]["from"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn qbittorrents_policy_admits_the_operator_only_while_a_link_calls_it() {
        let operator = crate::render::OperatorPeer {
            namespace: "mediastack-system".into(),
            pod_labels: [(
                "app.kubernetes.io/name".to_string(),
                "mediastack-operator".to_string(),
            )]
            .into(),
        };
        let with_operator = Inputs {
            operator: Some(operator),
            ..inputs()
        };
        let operator_peer = serde_json::json!({
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mediastack-system"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "mediastack-operator"}},
        });
        let s = stack();
        let peers = qbittorrent_web_peers(&render(&s, &parent(), &with_operator).expect("render"));
        assert_eq!(peers.last(), Some(&operator_peer), "{peers:?}");
        let plain = qbittorrent_web_peers(&render(&s, &parent(), &inputs()).expect("render"));
        assert_eq!(peers[..peers.len() - 1], plain[..]);
        assert!(!plain.contains(&operator_peer));

        // Only qBittorrent's own link calls qBittorrent (the download
        // clients are set in Sonarr and Radarr): with it off, or all wiring
        // off, the operator is not admitted.
        for off in [
            |s: &mut MediaStack| s.spec.wiring.qbittorrent_categories = false,
            |s: &mut MediaStack| s.spec.wiring.enabled = false,
        ] {
            let mut s = stack();
            off(&mut s);
            let peers =
                qbittorrent_web_peers(&render(&s, &parent(), &with_operator).expect("render"));
            assert_eq!(peers, plain);
        }
        let mut s = stack();
        s.spec.wiring.download_clients = false;
        let peers = qbittorrent_web_peers(&render(&s, &parent(), &with_operator).expect("render"));
        assert_eq!(peers.last(), Some(&operator_peer));
    }

    #[test]
    fn adopted_config_never_gets_a_generated_api_key() {
        let mut s = stack();
        s.spec.apps.sonarr.as_mut().expect("sonarr").config = Some(AppConfig {
            existing_claim: Some("compose-sonarr".into()),
            host_path: None,
        });
        let err = render(&s, &parent(), &inputs()).expect_err("refused");
        let msg = err.to_string();
        assert!(msg.contains("apps.sonarr.apiKeySecretRef"), "{msg}");

        // With the user's key, the app and its exporter both read it.
        s.spec
            .apps
            .sonarr
            .as_mut()
            .expect("sonarr")
            .api_key_secret_ref = Some(SecretKeyRef {
            name: "sonarr-key".into(),
            key: "apiKey".into(),
        });
        let r = render(&s, &parent(), &inputs()).expect("render");
        let from_user =
            serde_json::json!({"secretKeyRef": {"name": "sonarr-key", "key": "apiKey"}});
        let app = env_of(&r, "home-sonarr", "sonarr");
        let key = app
            .iter()
            .find(|e| e["name"] == "SONARR__AUTH__APIKEY")
            .expect("key var");
        assert_eq!(key["valueFrom"], from_user);
        let exporter = env_of(&r, "home-sonarr", "exporter");
        let key = exporter
            .iter()
            .find(|e| e["name"] == "API_KEY")
            .expect("API_KEY");
        assert_eq!(key["valueFrom"], from_user);
        // No claim of ours for the adopted config.
        assert!(
            r.children
                .iter()
                .all(|c| c.key() != "PersistentVolumeClaim/home-sonarr-config")
        );

        // Bazarr has no apiKeySecretRef: its key variable in env does the same.
        let mut s = stack();
        s.spec.apps.bazarr.as_mut().expect("bazarr").config = Some(AppConfig {
            existing_claim: None,
            host_path: Some("/srv/compose/bazarr".into()),
        });
        let msg = render(&s, &parent(), &inputs())
            .expect_err("refused")
            .to_string();
        assert!(msg.contains("DYNACONF_AUTH__APIKEY"), "{msg}");
        s.spec.monitoring.enabled = false;
        assert!(render(&s, &parent(), &inputs()).is_ok());
    }

    #[test]
    fn service_aliases_must_not_repeat_a_stack_service() {
        let mut s = stack();
        s.spec.apps.sonarr.as_mut().expect("sonarr").service_aliases = vec!["sonarr".into()];
        s.spec.apps.radarr.as_mut().expect("radarr").service_aliases = vec!["sonarr".into()];
        let msg = render(&s, &parent(), &inputs())
            .expect_err("dup")
            .to_string();
        assert!(msg.contains("Service name sonarr is used twice"), "{msg}");
        s.spec.apps.radarr.as_mut().expect("radarr").service_aliases = vec!["home-sonarr".into()];
        assert!(render(&s, &parent(), &inputs()).is_err());
        s.spec.apps.radarr.as_mut().expect("radarr").service_aliases = vec!["radarr".into()];
        let r = render(&s, &parent(), &inputs()).expect("render");
        assert!(r.children.iter().any(|c| c.key() == "Service/radarr"));
    }

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
