//! cloudflared for the stack's public routes.
//!
//! The tunnel is token-run (`cloudflared tunnel run` with `TUNNEL_TOKEN`):
//! its public hostnames and their origin are configured in the Cloudflare
//! dashboard, pointing at the managed Traefik's `tunnel` entry point
//! ([`super::traefik::tunnel_origin`]). cloudflared only dials out, so it
//! needs no Service for traffic; the Service exposes its metrics server
//! (`/metrics`, and `/ready`, which answers 200 only while connected to the
//! Cloudflare edge) for a ServiceMonitor.
//!
//! That server also serves Go's profiler (`/debug/pprof`), so a NetworkPolicy (`<stack>-cloudflared`)
//! admits its port only from the monitoring side: pods matching
//! `monitoring.scrapeFrom.podSelector` in namespaces matching
//! `monitoring.scrapeFrom.namespaceSelector`. Nothing else may connect to the
//! pod (it only dials out). Kubelet probes come from the node, which
//! NetworkPolicy implementations admit to local pods.

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::meta::Parent;
use super::pod;
use super::{Child, Inputs, RenderError};
use crate::api::mediastack::{MediaStackSpec, Tunnel};

/// cloudflared image unless `ingress.tunnel.image` is set.
pub const DEFAULT_IMAGE: &str = "cloudflare/cloudflared:2025.11.1";
/// Name of the container, and of the Deployment and Service after the stack.
pub const CONTAINER: &str = "cloudflared";
/// Port of the metrics server (`/metrics`, `/ready`).
pub const METRICS_PORT: i32 = 2000;
/// Name of the metrics port; ServiceMonitors select it.
pub const METRICS_PORT_NAME: &str = "metrics";
/// Key of the tunnel token in `ingress.tunnel.tokenSecretRef`.
pub const TOKEN_KEY: &str = "token";
/// The distroless image's non-root user.
const RUN_AS: i64 = 65532;
const COMPONENT: &str = "tunnel";

/// Name of the Deployment and Service: `<stack>-cloudflared`.
pub fn name(parent: &Parent) -> String {
    parent.child_name(CONTAINER)
}

/// Whether cloudflared runs: a tunnel is configured and its token Secret has
/// the key `token`.
pub fn enabled(spec: &MediaStackSpec, inputs: &Inputs) -> bool {
    spec.ingress.tunnel.is_some() && inputs.tunnel_token_ready
}

/// The cloudflared Deployment and its metrics Service, when [`enabled`].
pub fn objects(
    parent: &Parent,
    spec: &MediaStackSpec,
    inputs: &Inputs,
) -> Result<Vec<Child>, RenderError> {
    let Some(tunnel) = spec
        .ingress
        .tunnel
        .as_ref()
        .filter(|_| enabled(spec, inputs))
    else {
        return Ok(Vec::new());
    };
    let name = name(parent);
    let pod = PodSpec {
        containers: vec![container(tunnel)],
        // cloudflared does not talk to the API server.
        automount_service_account_token: Some(false),
        security_context: Some(pod::non_root_pod()),
        ..Default::default()
    };
    let deployment = pod::deployment(
        parent,
        &name,
        CONTAINER,
        COMPONENT,
        pod::template(parent, CONTAINER, COMPONENT, None, pod),
    );
    let service = pod::service(
        parent.meta(&name, CONTAINER, COMPONENT),
        parent,
        CONTAINER,
        vec![pod::service_port(METRICS_PORT_NAME, METRICS_PORT)],
    );
    Ok(vec![
        Child::typed(&service)?,
        Child::typed(&network_policy(parent, spec))?,
        Child::typed(&deployment)?,
    ])
}

/// The cloudflared container: `tunnel run` with the token from its Secret,
/// the metrics server on [`METRICS_PORT`], probes on `/ready`.
fn container(tunnel: &Tunnel) -> Container {
    let probe =
        |period: i32, failures: i32| pod::http_probe("/ready", METRICS_PORT_NAME, period, failures);
    Container {
        name: CONTAINER.into(),
        image: Some(tunnel.image.clone().unwrap_or_else(|| DEFAULT_IMAGE.into())),
        args: Some(
            [
                "tunnel",
                "--no-autoupdate",
                "--metrics",
                &format!("0.0.0.0:{METRICS_PORT}"),
                "run",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ),
        env: Some(vec![pod::secret_env(
            "TUNNEL_TOKEN",
            &tunnel.token_secret_ref.name,
            TOKEN_KEY,
            Some(false),
        )]),
        ports: Some(vec![pod::container_port(METRICS_PORT_NAME, METRICS_PORT)]),
        // Up to 2.5 minutes to reach the edge at start; then unready after
        // 30 s without a connection, restarted after 60 s.
        startup_probe: Some(probe(5, 30)),
        readiness_probe: Some(probe(10, 3)),
        liveness_probe: Some(probe(10, 6)),
        resources: Some(pod::resources("10m", "32Mi", "128Mi")),
        security_context: Some(pod::non_root_container(RUN_AS, &[])),
        ..Default::default()
    }
}

/// The NetworkPolicy `<stack>-cloudflared`: ingress to the metrics port from
/// `monitoring.scrapeFrom` only.
pub fn network_policy(parent: &Parent, spec: &MediaStackSpec) -> NetworkPolicy {
    let from = &spec.monitoring.scrape_from;
    let selector = |labels: &std::collections::BTreeMap<String, String>| LabelSelector {
        match_labels: (!labels.is_empty()).then(|| labels.clone()),
        match_expressions: None,
    };
    super::netpol::ingress_only(
        parent.meta(&name(parent), CONTAINER, COMPONENT),
        parent,
        CONTAINER,
        vec![NetworkPolicyIngressRule {
            ports: Some(vec![super::netpol::tcp_port(METRICS_PORT_NAME)]),
            from: Some(vec![NetworkPolicyPeer {
                // An empty selector: every namespace / every pod.
                namespace_selector: Some(selector(&from.namespace_selector)),
                pod_selector: Some(selector(&from.pod_selector)),
                ip_block: None,
            }]),
        }],
    )
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::fixtures::{inputs, parent, stack};
    use super::*;
    use crate::api::common::SecretRef;
    use crate::api::mediastack::Tunnel;

    fn with_tunnel() -> MediaStackSpec {
        let mut spec = stack().spec;
        spec.ingress.tunnel = Some(Tunnel {
            token_secret_ref: SecretRef {
                name: "cloudflare-tunnel".into(),
            },
            image: None,
        });
        spec
    }

    fn ready() -> Inputs {
        Inputs {
            tunnel_token_ready: true,
            ..inputs()
        }
    }

    #[test]
    fn cloudflared_snapshots() {
        let children = objects(&parent(), &with_tunnel(), &ready()).expect("render");
        let keys: Vec<String> = children.iter().map(Child::key).collect();
        assert_eq!(
            keys,
            [
                "Service/home-cloudflared",
                "NetworkPolicy/home-cloudflared",
                "Deployment/home-cloudflared"
            ]
        );
        for child in &children {
            let snap = format!("cloudflared_{}", child.api.kind.to_lowercase());
            insta::assert_snapshot!(snap, child.to_yaml());
        }
    }

    #[test]
    fn metrics_port_only_from_the_monitoring_side() {
        let np = |spec: &MediaStackSpec| -> Value {
            let children = objects(&parent(), spec, &ready()).expect("render");
            let np = children
                .iter()
                .find(|c| c.api.kind == "NetworkPolicy")
                .expect("a NetworkPolicy");
            serde_json::to_value(&np.object).expect("json")["spec"].clone()
        };
        let spec = np(&with_tunnel());
        assert_eq!(
            spec["podSelector"]["matchLabels"],
            json!({"app.kubernetes.io/name": "cloudflared", "app.kubernetes.io/instance": "home"})
        );
        assert_eq!(spec["policyTypes"], json!(["Ingress"]));
        // One rule: the metrics port, from Prometheus pods in any namespace.
        assert_eq!(
            spec["ingress"],
            json!([{
                "ports": [{"port": "metrics", "protocol": "TCP"}],
                "from": [{
                    "namespaceSelector": {},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
                }]
            }])
        );

        let mut narrow = with_tunnel();
        narrow.monitoring.scrape_from.namespace_selector = [(
            "kubernetes.io/metadata.name".to_string(),
            "monitoring".to_string(),
        )]
        .into();
        let spec = np(&narrow);
        assert_eq!(
            spec["ingress"][0]["from"][0]["namespaceSelector"],
            json!({"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}})
        );
    }

    #[test]
    fn no_tunnel_without_its_token_or_config() {
        assert!(
            objects(&parent(), &with_tunnel(), &inputs())
                .expect("render")
                .is_empty(),
            "token Secret not ready"
        );
        assert!(
            objects(&parent(), &stack().spec, &ready())
                .expect("render")
                .is_empty(),
            "no tunnel configured"
        );
    }

    #[test]
    fn token_from_the_secret_and_probes_on_the_metrics_port() {
        let children = objects(&parent(), &with_tunnel(), &ready()).expect("render");
        let dep = serde_json::to_value(&children[2].object).expect("json");
        let c: &Value = &dep["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], DEFAULT_IMAGE);
        assert_eq!(
            c["args"],
            json!([
                "tunnel",
                "--no-autoupdate",
                "--metrics",
                "0.0.0.0:2000",
                "run"
            ])
        );
        assert_eq!(
            c["env"],
            json!([{"name": "TUNNEL_TOKEN", "valueFrom": {"secretKeyRef": {
                "name": "cloudflare-tunnel", "key": "token", "optional": false
            }}}])
        );
        for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
            assert_eq!(c[probe]["httpGet"]["path"], "/ready", "{probe}");
            assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{probe}");
        }
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true);
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        let svc = serde_json::to_value(&children[0].object).expect("json");
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"name": "metrics", "port": 2000, "protocol": "TCP", "targetPort": "metrics"}])
        );

        let mut spec = with_tunnel();
        if let Some(t) = spec.ingress.tunnel.as_mut() {
            t.image = Some("cloudflare/cloudflared:2025.12.0".into());
        }
        let children = objects(&parent(), &spec, &ready()).expect("render");
        let dep = serde_json::to_value(&children[2].object).expect("json");
        assert_eq!(
            dep["spec"]["template"]["spec"]["containers"][0]["image"],
            "cloudflare/cloudflared:2025.12.0"
        );
    }
}
