//! The managed Traefik of a stack: ServiceAccount, namespaced RBAC,
//! Deployment, Service, and the dashboard route.
//!
//! Entry points:
//! - `<ingress.traefik.entryPoint>` (default `web`) on :80, published on the
//!   node with hostPort 80 (the single-node cluster serves `*.lan`). It trusts
//!   no forwarded headers: `X-Forwarded-*` sent by clients are stripped, so
//!   `ClientHost` in the access log is the real peer (fail2ban relies on it).
//! - `tunnel` on :8000, Service-only (no hostPort): cloudflared's origin.
//!   A NetworkPolicy (`<stack>-traefik`) admits this port only from the
//!   stack's cloudflared pods, and the entry point trusts forwarded headers
//!   (the visitor's address in `X-Forwarded-For`, `X-Forwarded-Proto:
//!   https`) only from the cluster's pod and service ranges
//!   (`forwardedHeaders.trustedIPs`; nobody when they are unknown). So no
//!   other pod can forge `X-Forwarded-For` or `CF-Connecting-IP` to pass an
//!   allow list, dodge the rate limit or get someone else banned. Public
//!   hosts are routed only here (see `route`).
//! - `traefik` on :8080, Service-only: `/ping` and `/metrics`. The dashboard
//!   (`api@internal`) is not served insecurely; it has its own route with
//!   basic auth at `traefik.<domain.local>` when a secret is given.
//!
//! The kubernetescrd provider watches only the stack's namespace with
//! cluster-scope lookups off, so a Role suffices. What it reads (Traefik v3,
//! `pkg/provider/kubernetes/crd/client.go`): the `traefik.io` kinds, Services,
//! EndpointSlices, ConfigMaps and Secrets of the namespace.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, PodSecurityContext, PodSpec, ServiceAccount, Sysctl,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyIngressRule};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde_json::json;

use super::meta::Parent;
use super::traefik_crd::{host_rule, traefik_ingress_route, traefik_middleware};
use super::{Child, Inputs, RenderError};
use super::{pod, rbac};
use crate::api::mediastack::MediaStackSpec;

/// Image of the managed Traefik unless `ingress.traefik.image` is set.
pub const DEFAULT_IMAGE: &str = "traefik:v3.6.2";
/// Entry point (and Service port name) cloudflared connects to.
pub use super::traefik_crd::TUNNEL_ENTRY_POINT;
/// Port of the tunnel entry point (container and Service).
pub const TUNNEL_PORT: i32 = 8000;
/// Entry point (and port name) of `/ping` and `/metrics`; ServiceMonitors select it.
pub const INTERNAL_ENTRY_POINT: &str = "traefik";
/// Port of the `traefik` entry point.
pub const INTERNAL_PORT: i32 = 8080;
/// Port of the HTTP entry point, in the container and on the node.
pub const WEB_PORT: i32 = 80;
/// Name of the HTTP container and Service port (the entry point's name may differ).
pub const WEB_PORT_NAME: &str = "web";
/// Path of the Prometheus metrics on the `traefik` port.
pub const METRICS_PATH: &str = "/metrics";
/// Name of the Traefik container: fail2ban reads its log directory.
pub const CONTAINER: &str = "traefik";
/// Non-root user of the managed Traefik.
const RUN_AS: i64 = 65532;
const COMPONENT: &str = "ingress";

/// Name of the Deployment, Service, ServiceAccount, Role and RoleBinding: `<stack>-traefik`.
pub fn name(parent: &Parent) -> String {
    parent.child_name(CONTAINER)
}

/// In-cluster URL cloudflared should forward public hostnames to.
pub fn tunnel_origin(parent: &Parent) -> String {
    format!(
        "http://{}.{}.svc:{TUNNEL_PORT}",
        name(parent),
        parent.namespace
    )
}

/// Traefik entry point names must be plain words: they end up in arguments
/// and in fail2ban regexes.
pub fn validate_entry_point(entry_point: &str) -> Result<(), RenderError> {
    let ok = !entry_point.is_empty()
        && entry_point
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(RenderError::Invalid(format!(
            "ingress.traefik.entryPoint {entry_point:?} may contain only letters, digits, '-' and '_'"
        )));
    }
    if entry_point == TUNNEL_ENTRY_POINT || entry_point == INTERNAL_ENTRY_POINT {
        return Err(RenderError::Invalid(format!(
            "ingress.traefik.entryPoint {entry_point:?} is reserved for the managed Traefik"
        )));
    }
    Ok(())
}

/// Traefik's ServiceAccount, Role, RoleBinding, Service, Deployment and the
/// dashboard route, when `ingress.traefik.managed`; nothing otherwise.
pub fn objects(
    parent: &Parent,
    spec: &MediaStackSpec,
    inputs: &Inputs,
) -> Result<Vec<Child>, RenderError> {
    let traefik = &spec.ingress.traefik;
    if !traefik.is_managed() {
        return Ok(Vec::new());
    }
    validate_entry_point(&traefik.entry_point)?;
    let name = name(parent);
    let meta = || parent.meta(&name, CONTAINER, COMPONENT);

    let account = ServiceAccount {
        metadata: meta(),
        ..Default::default()
    };
    let role = Role {
        metadata: meta(),
        rules: Some(vec![
            rbac::rule(
                "",
                &["configmaps", "secrets", "services"],
                &["get", "list", "watch"],
            ),
            rbac::rule("discovery.k8s.io", &["endpointslices"], &["list", "watch"]),
            rbac::rule(
                "traefik.io",
                &[
                    "ingressroutes",
                    "ingressroutetcps",
                    "ingressrouteudps",
                    "middlewares",
                    "middlewaretcps",
                    "serverstransports",
                    "serverstransporttcps",
                    "tlsoptions",
                    "tlsstores",
                    "traefikservices",
                ],
                &["get", "list", "watch"],
            ),
        ]),
    };
    let binding = RoleBinding {
        metadata: meta(),
        role_ref: rbac::role_ref("Role", &name),
        subjects: Some(vec![rbac::service_account(&name, &parent.namespace)]),
    };
    let service = pod::service(
        meta(),
        parent,
        CONTAINER,
        vec![
            pod::service_port(WEB_PORT_NAME, WEB_PORT),
            pod::service_port(TUNNEL_ENTRY_POINT, TUNNEL_PORT),
            pod::service_port(INTERNAL_ENTRY_POINT, INTERNAL_PORT),
        ],
    );
    let trusted = trusted_ips(&inputs.cluster_subnets)?;
    let deployment = deployment(parent, spec, &trusted)?;

    let mut out = vec![
        Child::typed(&account)?,
        Child::typed(&role)?,
        Child::typed(&binding)?,
        Child::typed(&service)?,
        Child::typed(&network_policy(parent))?,
        Child::typed(&deployment)?,
    ];
    out.extend(dashboard_route(parent, spec)?);
    Ok(out)
}

/// The sources whose forwarded headers the tunnel entry point trusts: the
/// cluster's pod and service ranges (cloudflared's pod address is in the
/// pod range; no packet comes from a service address). Only CIDRs or
/// addresses: the list ends up in a command-line argument.
pub fn trusted_ips(cluster_subnets: &[String]) -> Result<Vec<String>, RenderError> {
    cluster_subnets
        .iter()
        .map(|c| {
            if c.parse::<std::net::IpAddr>().is_ok() || cidr(c) {
                Ok(c.clone())
            } else {
                Err(RenderError::Invalid(format!(
                    "cluster range {c:?} is not an IP address or CIDR"
                )))
            }
        })
        .collect()
}

fn cidr(c: &str) -> bool {
    let Some((ip, len)) = c.split_once('/') else {
        return false;
    };
    match (ip.parse::<std::net::IpAddr>(), len.parse::<u8>()) {
        (Ok(std::net::IpAddr::V4(_)), Ok(l)) => l <= 32,
        (Ok(std::net::IpAddr::V6(_)), Ok(l)) => l <= 128,
        _ => false,
    }
}

/// The NetworkPolicy `<stack>-traefik`: the HTTP and `traefik` ports stay
/// open (LAN clients, kubelet probes, Prometheus), the tunnel port admits
/// only the stack's cloudflared pods.
pub fn network_policy(parent: &Parent) -> NetworkPolicy {
    use super::netpol::{ingress_only, stack_pods, tcp_port};
    ingress_only(
        parent.meta(&name(parent), CONTAINER, COMPONENT),
        parent,
        CONTAINER,
        vec![
            NetworkPolicyIngressRule {
                ports: Some(vec![
                    tcp_port(WEB_PORT_NAME),
                    tcp_port(INTERNAL_ENTRY_POINT),
                ]),
                from: None,
            },
            NetworkPolicyIngressRule {
                ports: Some(vec![tcp_port(TUNNEL_ENTRY_POINT)]),
                from: Some(vec![stack_pods(parent, super::tunnel::CONTAINER)]),
            },
        ],
    )
}

/// The container arguments: the whole static configuration. `trusted`:
/// sources whose forwarded headers the tunnel entry point accepts.
pub fn args(parent: &Parent, entry_point: &str, trusted: &[String]) -> Vec<String> {
    let mut tunnel_trust = Vec::new();
    if !trusted.is_empty() {
        tunnel_trust.push(format!(
            "--entrypoints.{TUNNEL_ENTRY_POINT}.forwardedHeaders.trustedIPs={}",
            trusted.join(",")
        ));
    }
    [
        format!("--entrypoints.{entry_point}.address=:{WEB_PORT}/tcp"),
        format!("--entrypoints.{TUNNEL_ENTRY_POINT}.address=:{TUNNEL_PORT}/tcp"),
    ]
    .into_iter()
    .chain(tunnel_trust)
    .chain([
        format!("--entrypoints.{INTERNAL_ENTRY_POINT}.address=:{INTERNAL_PORT}/tcp"),
        "--ping=true".into(),
        format!("--ping.entryPoint={INTERNAL_ENTRY_POINT}"),
        "--api.dashboard=true".into(),
        "--api.insecure=false".into(),
        "--metrics.prometheus=true".into(),
        format!("--metrics.prometheus.entryPoint={INTERNAL_ENTRY_POINT}"),
        "--log.level=INFO".into(),
        // Access log: JSON lines on stdout, read by fail2ban from the pod's
        // log file. Every core field is kept; of the request headers only
        // CF-Connecting-IP (the visitor behind the tunnel).
        "--accesslog=true".into(),
        "--accesslog.format=json".into(),
        "--accesslog.fields.defaultMode=keep".into(),
        "--accesslog.fields.headers.defaultMode=drop".into(),
        "--accesslog.fields.headers.names.CF-Connecting-IP=keep".into(),
        "--providers.kubernetescrd=true".into(),
        format!("--providers.kubernetescrd.namespaces={}", parent.namespace),
        "--providers.kubernetescrd.allowCrossNamespace=false".into(),
        "--providers.kubernetescrd.disableClusterScopeResources=true".into(),
        "--global.checkNewVersion=false".into(),
        "--global.sendAnonymousUsage=false".into(),
    ])
    .collect()
}

fn deployment(
    parent: &Parent,
    spec: &MediaStackSpec,
    trusted: &[String],
) -> Result<Deployment, RenderError> {
    let name = name(parent);
    let pod = PodSpec {
        service_account_name: Some(name.clone()),
        containers: vec![container(parent, spec, trusted)],
        security_context: Some(PodSecurityContext {
            // NET_BIND_SERVICE alone does not reach a non-root process (no
            // ambient capabilities in Kubernetes), so let the pod's network
            // namespace bind :80 unprivileged.
            sysctls: Some(vec![Sysctl {
                name: "net.ipv4.ip_unprivileged_port_start".into(),
                value: "0".into(),
            }]),
            ..pod::non_root_pod()
        }),
        volumes: Some(vec![pod::empty_dir("tmp")]),
        ..Default::default()
    };
    let base = pod::deployment(
        parent,
        &name,
        CONTAINER,
        COMPONENT,
        pod::template(parent, CONTAINER, COMPONENT, None, pod),
    );
    Ok(Deployment {
        spec: DeploymentSpec {
            // hostPort 80: a second pod cannot start on the node while the
            // old one runs, so a rolling update would never finish.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            }),
            ..base.spec
        },
        ..base
    })
}

/// The Traefik container: the static configuration in [`args`], the HTTP
/// entry point on the node's port 80, non-root with a read-only root file
/// system.
fn container(parent: &Parent, spec: &MediaStackSpec, trusted: &[String]) -> Container {
    let traefik = &spec.ingress.traefik;
    let probe = |period: i32, failures: i32| {
        pod::http_probe("/ping", INTERNAL_ENTRY_POINT, period, failures)
    };
    Container {
        name: CONTAINER.into(),
        image: Some(
            traefik
                .image
                .clone()
                .unwrap_or_else(|| DEFAULT_IMAGE.into()),
        ),
        args: Some(args(parent, &traefik.entry_point, trusted)),
        ports: Some(vec![
            ContainerPort {
                host_port: Some(WEB_PORT),
                ..pod::container_port(WEB_PORT_NAME, WEB_PORT)
            },
            pod::container_port(TUNNEL_ENTRY_POINT, TUNNEL_PORT),
            pod::container_port(INTERNAL_ENTRY_POINT, INTERNAL_PORT),
        ]),
        readiness_probe: Some(probe(10, 3)),
        liveness_probe: Some(probe(10, 6)),
        resources: Some(
            traefik
                .resources
                .clone()
                .unwrap_or_else(|| pod::resources("50m", "64Mi", "256Mi")),
        ),
        security_context: Some(pod::non_root_container(RUN_AS, &["NET_BIND_SERVICE"])),
        volume_mounts: Some(vec![pod::mount("tmp", "/tmp")]),
        ..Default::default()
    }
}

/// The dashboard at `traefik.<domain.local>` behind basic auth, when
/// `ingress.traefik.dashboardAuthSecretRef` is set: a Traefik IngressRoute to
/// the internal `api@internal` service (the dashboard is never served on a
/// port without auth) and its basicAuth Middleware.
fn dashboard_route(parent: &Parent, spec: &MediaStackSpec) -> Result<Vec<Child>, RenderError> {
    let traefik = &spec.ingress.traefik;
    let Some(secret) = &traefik.dashboard_auth_secret_ref else {
        return Ok(Vec::new());
    };
    let route_name = parent.child_name("traefik-dashboard");
    let auth_name = parent.child_name("traefik-dashboard-auth");
    let host = format!("traefik.{}", spec.domain.local);
    let middleware = traefik_middleware(json!({
        "metadata": parent.meta(&auth_name, CONTAINER, "route"),
        "spec": {"basicAuth": {"secret": secret.name}},
    }))?;
    let route = traefik_ingress_route(json!({
        "metadata": parent.meta(&route_name, CONTAINER, "route"),
        "spec": {
            "entryPoints": [traefik.entry_point],
            "routes": [{
                "kind": "Rule",
                "match": host_rule(&[host.as_str()]),
                "middlewares": [{"name": auth_name}],
                "services": [{"kind": "TraefikService", "name": "api@internal"}],
            }],
        },
    }))?;
    Ok(vec![middleware, route])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::super::fixtures::{inputs, parent, stack};
    use super::super::traefik_crd::traefik_schema;
    use super::*;
    use crate::api::common::SecretRef;

    fn with_dashboard() -> MediaStackSpec {
        let mut spec = stack().spec;
        spec.ingress.traefik.dashboard_auth_secret_ref = Some(SecretRef {
            name: "traefik-dashboard-users".into(),
        });
        spec
    }

    fn by_key(children: &[Child]) -> BTreeMap<String, Value> {
        children
            .iter()
            .map(|c| (c.key(), serde_json::to_value(&c.object).expect("json")))
            .collect()
    }

    fn container(objs: &BTreeMap<String, Value>) -> Value {
        objs["Deployment/home-traefik"]["spec"]["template"]["spec"]["containers"][0].clone()
    }

    fn args_of(objs: &BTreeMap<String, Value>) -> Vec<String> {
        serde_json::from_value(container(objs)["args"].clone()).expect("args")
    }

    #[test]
    fn managed_traefik_snapshots() {
        let children = objects(&parent(), &with_dashboard(), &inputs()).expect("render");
        let keys: Vec<String> = children.iter().map(Child::key).collect();
        assert_eq!(
            keys,
            [
                "ServiceAccount/home-traefik",
                "Role/home-traefik",
                "RoleBinding/home-traefik",
                "Service/home-traefik",
                "NetworkPolicy/home-traefik",
                "Deployment/home-traefik",
                "Middleware/home-traefik-dashboard-auth",
                "IngressRoute/home-traefik-dashboard",
            ]
        );
        traefik_schema::assert_valid(&children);
        for child in &children {
            let snap = format!("traefik_{}", child.api.kind.to_lowercase());
            insta::assert_snapshot!(snap, child.to_yaml());
        }
    }

    #[test]
    fn nothing_when_not_managed() {
        let mut spec = with_dashboard();
        spec.ingress.traefik.managed = Some(false);
        assert!(
            objects(&parent(), &spec, &inputs())
                .expect("render")
                .is_empty()
        );
    }

    #[test]
    fn dashboard_only_with_its_secret_and_behind_basic_auth() {
        let objs = by_key(&objects(&parent(), &stack().spec, &inputs()).expect("render"));
        assert!(!objs.keys().any(|k| k.contains("dashboard")));
        let args = args_of(&objs);
        assert!(args.contains(&"--api.insecure=false".to_string()));

        let objs = by_key(&objects(&parent(), &with_dashboard(), &inputs()).expect("render"));
        let route = &objs["IngressRoute/home-traefik-dashboard"]["spec"];
        assert_eq!(route["routes"][0]["match"], "Host(`traefik.lan`)");
        assert_eq!(
            route["routes"][0]["services"],
            serde_json::json!([{"kind": "TraefikService", "name": "api@internal"}])
        );
        assert_eq!(
            route["routes"][0]["middlewares"],
            serde_json::json!([{"name": "home-traefik-dashboard-auth"}])
        );
        assert_eq!(
            objs["Middleware/home-traefik-dashboard-auth"]["spec"],
            serde_json::json!({"basicAuth": {"secret": "traefik-dashboard-users"}})
        );
    }

    #[test]
    fn rbac_is_namespaced_and_read_only() {
        let children = objects(&parent(), &stack().spec, &inputs()).expect("render");
        assert!(
            children.iter().all(|c| !c.api.kind.starts_with("Cluster")),
            "no cluster-scoped RBAC"
        );
        let objs = by_key(&children);
        let mut granted = BTreeMap::new();
        for rule in objs["Role/home-traefik"]["rules"]
            .as_array()
            .expect("rules")
        {
            let verbs: Vec<String> = serde_json::from_value(rule["verbs"].clone()).expect("verbs");
            for group in rule["apiGroups"].as_array().expect("groups") {
                for res in rule["resources"].as_array().expect("resources") {
                    granted.insert(
                        format!(
                            "{}/{}",
                            group.as_str().unwrap_or(""),
                            res.as_str().unwrap_or("")
                        ),
                        verbs.clone(),
                    );
                }
            }
        }
        let read = ["get", "list", "watch"];
        let expected: BTreeMap<String, Vec<String>> = [
            ("/configmaps", &read[..]),
            ("/secrets", &read[..]),
            ("/services", &read[..]),
            ("discovery.k8s.io/endpointslices", &read[1..]),
            ("traefik.io/ingressroutes", &read[..]),
            ("traefik.io/ingressroutetcps", &read[..]),
            ("traefik.io/ingressrouteudps", &read[..]),
            ("traefik.io/middlewares", &read[..]),
            ("traefik.io/middlewaretcps", &read[..]),
            ("traefik.io/serverstransports", &read[..]),
            ("traefik.io/serverstransporttcps", &read[..]),
            ("traefik.io/tlsoptions", &read[..]),
            ("traefik.io/tlsstores", &read[..]),
            ("traefik.io/traefikservices", &read[..]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
        .collect();
        assert_eq!(granted, expected);
        let binding = &objs["RoleBinding/home-traefik"];
        assert_eq!(binding["roleRef"]["kind"], "Role");
        assert_eq!(binding["subjects"][0]["name"], "home-traefik");
        assert_eq!(
            objs["Deployment/home-traefik"]["spec"]["template"]["spec"]["serviceAccountName"],
            "home-traefik"
        );
        // The provider stays within the Role's reach.
        let args = args_of(&objs);
        for arg in [
            "--providers.kubernetescrd.namespaces=media",
            "--providers.kubernetescrd.allowCrossNamespace=false",
            "--providers.kubernetescrd.disableClusterScopeResources=true",
        ] {
            assert!(args.contains(&arg.to_string()), "{arg}");
        }
    }

    #[test]
    fn entry_points_probes_ports_and_access_log() {
        let objs = by_key(&objects(&parent(), &stack().spec, &inputs()).expect("render"));
        let args = args_of(&objs);
        for arg in [
            "--entrypoints.web.address=:80/tcp",
            "--entrypoints.tunnel.address=:8000/tcp",
            "--entrypoints.tunnel.forwardedHeaders.trustedIPs=10.244.0.0/16,10.96.0.0/16",
            "--entrypoints.traefik.address=:8080/tcp",
            "--ping=true",
            "--metrics.prometheus=true",
            "--metrics.prometheus.entryPoint=traefik",
            "--accesslog=true",
            "--accesslog.format=json",
            "--accesslog.fields.headers.names.CF-Connecting-IP=keep",
        ] {
            assert!(args.contains(&arg.to_string()), "{arg}");
        }
        // The LAN entry point trusts no forwarded headers, the tunnel's
        // only the cluster ranges: never anyone's.
        assert!(
            !args
                .iter()
                .any(|a| a.starts_with("--entrypoints.web.forwardedHeaders"))
        );
        assert!(!args.iter().any(|a| a.contains("forwardedHeaders.insecure")));

        let c = container(&objs);
        assert_eq!(c["image"], DEFAULT_IMAGE);
        assert_eq!(c["ports"][0]["hostPort"], 80);
        assert_eq!(c["ports"][0]["containerPort"], 80);
        for probe in ["readinessProbe", "livenessProbe"] {
            assert_eq!(c[probe]["httpGet"]["path"], "/ping", "{probe}");
            assert_eq!(c[probe]["httpGet"]["port"], "traefik", "{probe}");
        }
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true);
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(
            sc["capabilities"]["add"],
            serde_json::json!(["NET_BIND_SERVICE"])
        );
        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));

        let ports: Vec<(String, i64)> = objs["Service/home-traefik"]["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or("").to_string(),
                    p["port"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            ports,
            [
                ("web".into(), 80),
                ("tunnel".into(), 8000),
                ("traefik".into(), 8080)
            ]
        );
        assert_eq!(
            tunnel_origin(&parent()),
            "http://home-traefik.media.svc:8000"
        );
    }

    #[test]
    fn tunnel_entry_point_trusts_only_the_cluster_ranges_and_cloudflared() {
        // Unknown ranges: trust nobody's forwarded headers.
        let mut none = inputs();
        none.cluster_subnets.clear();
        let objs = by_key(&objects(&parent(), &stack().spec, &none).expect("render"));
        assert!(
            !args_of(&objs)
                .iter()
                .any(|a| a.starts_with("--entrypoints.tunnel.forwardedHeaders"))
        );
        // A range that is not a CIDR never reaches the command line.
        let mut bad = inputs();
        bad.cluster_subnets
            .push("0.0.0.0/0 --api.insecure=true".into());
        assert!(matches!(
            objects(&parent(), &stack().spec, &bad),
            Err(RenderError::Invalid(_))
        ));

        let objs = by_key(&objects(&parent(), &stack().spec, &inputs()).expect("render"));
        let np = &objs["NetworkPolicy/home-traefik"]["spec"];
        assert_eq!(
            np["podSelector"]["matchLabels"],
            serde_json::json!({"app.kubernetes.io/name": "traefik", "app.kubernetes.io/instance": "home"})
        );
        assert_eq!(np["policyTypes"], serde_json::json!(["Ingress"]));
        let rules = np["ingress"].as_array().expect("rules");
        let tunnel: Vec<&Value> = rules
            .iter()
            .filter(|r| {
                r["ports"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|p| p["port"] == "tunnel"))
            })
            .collect();
        assert_eq!(tunnel.len(), 1, "one rule names the tunnel port");
        assert_eq!(
            tunnel[0]["from"],
            serde_json::json!([{"podSelector": {"matchLabels": {
                "app.kubernetes.io/name": "cloudflared",
                "app.kubernetes.io/instance": "home"
            }}}])
        );
        // The open rule does not include the tunnel port.
        let open: Vec<&Value> = rules.iter().filter(|r| r.get("from").is_none()).collect();
        assert_eq!(
            open[0]["ports"],
            serde_json::json!([
                {"port": "web", "protocol": "TCP"},
                {"port": "traefik", "protocol": "TCP"}
            ])
        );
    }

    #[test]
    fn image_and_entry_point_from_spec() {
        let mut spec = stack().spec;
        spec.ingress.traefik.image = Some("traefik:v3.6.4".into());
        spec.ingress.traefik.entry_point = "http".into();
        let objs = by_key(&objects(&parent(), &spec, &inputs()).expect("render"));
        assert_eq!(container(&objs)["image"], "traefik:v3.6.4");
        assert!(args_of(&objs).contains(&"--entrypoints.http.address=:80/tcp".to_string()));

        for bad in ["tunnel", "traefik", "web sec", "a.b", ""] {
            spec.ingress.traefik.entry_point = bad.into();
            assert!(
                matches!(
                    objects(&parent(), &spec, &inputs()),
                    Err(RenderError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
    }
}
