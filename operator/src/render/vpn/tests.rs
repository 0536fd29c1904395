use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, PodSpec, PodTemplateSpec, ResourceRequirements, Secret,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;

use super::cidr::Cidr;
use super::*;
use crate::api::common::SecretRef;
use crate::api::vpngateway::{
    KillSwitch, PortForwarding, Provider, Servers, VpnGatewaySpec, VpnType,
};
use crate::catalog;
use crate::render::fixtures::{gateway, inputs, parent, wireguard_secret};

const HASH: &str = "0123456789abcdef";

fn qbittorrent() -> &'static App {
    catalog::app("qbittorrent").expect("qbittorrent is in the catalog")
}

/// A minimal qBittorrent Deployment, shaped like the workload renderer's
/// (one app container with its WebUI port, rolling strategy, 1 replica).
fn deployment() -> Deployment {
    let p = parent();
    let app = qbittorrent();
    Deployment {
        metadata: p.meta(&p.child_name(app.name), app.name, "app"),
        spec: DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(p.selector(app.name)),
                match_expressions: None,
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: None,
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(p.labels(app.name, "app")),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: app.name.into(),
                        image: Some(app.image.into()),
                        ports: Some(vec![ContainerPort {
                            name: Some("http".into()),
                            container_port: i32::from(app.port),
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

fn cluster() -> Vec<String> {
    inputs().cluster_subnets
}

fn ready() -> VpnResolution {
    inputs()
        .vpn
        .get("mullvad")
        .cloned()
        .expect("fixture resolution")
}

fn ready_with(gw: VpnGateway) -> VpnResolution {
    VpnResolution::Ready {
        gateway: Box::new(gw),
        hash: HASH.into(),
        secret_keys: vec!["addresses".into(), "privateKey".into()],
    }
}

fn unavailable(gw: Option<VpnGateway>, why: &str) -> VpnResolution {
    VpnResolution::Unavailable {
        gateway: gw.map(Box::new),
        reason: why.into(),
        message: format!("test: {why}"),
    }
}

fn gateway_with(f: impl FnOnce(&mut VpnGatewaySpec)) -> VpnGateway {
    let mut gw = gateway();
    f(&mut gw.spec);
    gw
}

fn injected(res: &VpnResolution, cluster: &[String]) -> Deployment {
    let mut d = deployment();
    inject(&parent(), qbittorrent(), &mut d, res, cluster).expect("inject");
    d
}

fn pod(d: &Deployment) -> PodSpec {
    d.spec.template.spec.clone().expect("pod spec")
}

fn gluetun(d: &Deployment) -> Container {
    pod(d)
        .init_containers
        .unwrap_or_default()
        .into_iter()
        .next()
        .expect("an init container")
}

fn env(c: &Container) -> BTreeMap<String, EnvVar> {
    c.env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.clone()))
        .collect()
}

fn value(c: &Container, name: &str) -> Option<String> {
    env(c).get(name).and_then(|e| e.value.clone())
}

fn secret_ref(c: &Container, name: &str) -> Option<(String, String, Option<bool>)> {
    env(c)
        .get(name)
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.secret_key_ref.as_ref())
        .map(|s| (s.name.clone(), s.key.clone(), s.optional))
}

fn annotations(d: &Deployment) -> BTreeMap<String, String> {
    d.spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default()
}

fn replicas(d: &Deployment) -> Option<i32> {
    d.spec.replicas
}

fn list(s: Option<String>) -> Vec<String> {
    s.map(|s| s.split(',').map(String::from).collect())
        .unwrap_or_default()
}

fn policy(res: &VpnResolution, cluster: &[String]) -> NetworkPolicy {
    let child = network_policy(&parent(), qbittorrent(), res, cluster).expect("policy");
    serde_json::from_value(serde_json::to_value(&child.object).expect("json")).expect("policy")
}

fn yaml(d: &Deployment) -> String {
    crate::render::Child::typed(d).expect("child").to_yaml()
}

fn snapshot(name: &str, yaml: String) {
    insta::with_settings!({ snapshot_path => "../snapshots" }, {
        insta::assert_snapshot!(name, yaml);
    });
}

fn secret(pairs: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some("mullvad-wireguard".into()),
            namespace: Some("media".into()),
            ..Default::default()
        },
        data: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

// ---------------------------------------------------------------- golden

#[test]
fn golden_ready_deployment() {
    snapshot("ready_deployment", yaml(&injected(&ready(), &cluster())));
}

#[test]
fn golden_fail_closed_deployment_with_gateway() {
    let res = unavailable(Some(gateway()), reason::SECRET_KEY_MISSING);
    snapshot("fail_closed_deployment", yaml(&injected(&res, &cluster())));
}

#[test]
fn golden_fail_closed_placeholder_without_gateway() {
    let res = unavailable(None, reason::GATEWAY_NOT_FOUND);
    snapshot(
        "fail_closed_placeholder_deployment",
        yaml(&injected(&res, &cluster())),
    );
}

#[test]
fn golden_network_policies() {
    let ready = network_policy(&parent(), qbittorrent(), &ready(), &cluster()).expect("policy");
    snapshot("ready_networkpolicy", ready.to_yaml());
    let closed = network_policy(
        &parent(),
        qbittorrent(),
        &unavailable(Some(gateway()), reason::SECRET_NOT_FOUND),
        &cluster(),
    )
    .expect("policy");
    snapshot("fail_closed_networkpolicy", closed.to_yaml());
}

// ---------------------------------------------------------------- sidecar

#[test]
fn sidecar_is_the_first_native_sidecar_and_the_app_stays() {
    let mut d = deployment();
    d.spec.template.spec.as_mut().expect("pod").init_containers = Some(vec![Container {
        name: "chown".into(),
        ..Default::default()
    }]);
    inject(&parent(), qbittorrent(), &mut d, &ready(), &cluster()).expect("inject");
    let pod = pod(&d);
    let init: Vec<String> = pod
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(init, ["gluetun", "chown"]);
    let g = gluetun(&d);
    assert_eq!(g.restart_policy.as_deref(), Some("Always"));
    assert_eq!(g.image.as_deref(), Some("qmcgaw/gluetun:v3.41.1"));
    assert!(g.startup_probe.is_some() && g.liveness_probe.is_some());
    assert!(g.readiness_probe.is_some());
    assert_eq!(pod.containers.len(), 1, "the app container is untouched");
    assert_eq!(pod.containers[0].name, "qbittorrent");
}

#[test]
fn credentials_are_secret_references_never_literals() {
    let g = gluetun(&injected(&ready(), &cluster()));
    assert_eq!(
        value(&g, "VPN_SERVICE_PROVIDER").as_deref(),
        Some("mullvad")
    );
    assert_eq!(value(&g, "VPN_TYPE").as_deref(), Some("wireguard"));
    let s = "mullvad-wireguard".to_string();
    assert_eq!(
        secret_ref(&g, "WIREGUARD_PRIVATE_KEY"),
        Some((s.clone(), "privateKey".into(), None))
    );
    assert_eq!(
        secret_ref(&g, "WIREGUARD_ADDRESSES"),
        Some((s.clone(), "addresses".into(), None))
    );
    assert_eq!(
        secret_ref(&g, "WIREGUARD_PRESHARED_KEY"),
        Some((s, "presharedKey".into(), Some(true)))
    );
    for (name, e) in env(&g) {
        if name.starts_with("WIREGUARD_") || name.starts_with("OPENVPN_") {
            assert!(e.value.is_none() && e.value_from.is_some(), "{name}");
        }
    }
    assert_eq!(value(&g, "WIREGUARD_PUBLIC_KEY"), None);
    assert_eq!(secret_ref(&g, "WIREGUARD_ENDPOINT_IP"), None);
}

#[test]
fn custom_provider_reads_public_key_and_endpoint_from_the_secret() {
    let gw = gateway_with(|s| s.provider = Provider::Custom);
    let g = gluetun(&injected(&ready_with(gw), &cluster()));
    assert_eq!(value(&g, "VPN_SERVICE_PROVIDER").as_deref(), Some("custom"));
    for (var, key) in [
        ("WIREGUARD_PUBLIC_KEY", "publicKey"),
        ("WIREGUARD_ENDPOINT_IP", "endpointIP"),
        ("WIREGUARD_ENDPOINT_PORT", "endpointPort"),
    ] {
        assert_eq!(
            secret_ref(&g, var),
            Some(("mullvad-wireguard".into(), key.into(), None)),
            "{var}"
        );
    }
    // Server selection means nothing to a custom server.
    assert_eq!(value(&g, "SERVER_COUNTRIES"), None);
}

#[test]
fn openvpn_reads_username_and_password_from_the_secret() {
    let gw = gateway_with(|s| {
        s.provider = Provider::Protonvpn;
        s.vpn_type = VpnType::Openvpn;
    });
    let g = gluetun(&injected(&ready_with(gw), &cluster()));
    assert_eq!(value(&g, "VPN_TYPE").as_deref(), Some("openvpn"));
    assert_eq!(
        secret_ref(&g, "OPENVPN_USER").map(|r| r.1),
        Some("username".into())
    );
    assert_eq!(
        secret_ref(&g, "OPENVPN_PASSWORD").map(|r| r.1),
        Some("password".into())
    );
    assert!(!env(&g).keys().any(|k| k.starts_with("WIREGUARD_")));
}

#[test]
fn servers_are_comma_joined_and_owned_only_is_mullvads() {
    let gw = gateway_with(|s| {
        s.servers = Some(Servers {
            countries: vec!["Sweden".into(), "Norway".into()],
            cities: vec!["Gothenburg".into()],
            hostnames: vec!["se-got-wg-001".into(), "se-got-wg-002".into()],
            owned_only: Some(true),
        })
    });
    let g = gluetun(&injected(&ready_with(gw.clone()), &cluster()));
    assert_eq!(
        value(&g, "SERVER_COUNTRIES").as_deref(),
        Some("Sweden,Norway")
    );
    assert_eq!(value(&g, "SERVER_CITIES").as_deref(), Some("Gothenburg"));
    assert_eq!(
        value(&g, "SERVER_HOSTNAMES").as_deref(),
        Some("se-got-wg-001,se-got-wg-002")
    );
    assert_eq!(value(&g, "OWNED_ONLY").as_deref(), Some("yes"));
    let mut nord = gw;
    nord.spec.provider = Provider::Nordvpn;
    let g = gluetun(&injected(&ready_with(nord), &cluster()));
    assert_eq!(value(&g, "OWNED_ONLY"), None);
}

#[test]
fn the_firewall_is_always_on() {
    for res in [
        ready(),
        unavailable(Some(gateway()), reason::SECRET_NOT_FOUND),
        unavailable(None, reason::GATEWAY_NOT_FOUND),
    ] {
        let g = gluetun(&injected(&res, &cluster()));
        assert_eq!(value(&g, "FIREWALL").as_deref(), Some("on"));
        assert_eq!(
            value(&g, "FIREWALL_ENABLED_DISABLING_IT_SHOOTS_YOU_IN_YOUR_FOOT").as_deref(),
            Some("on")
        );
    }
}

#[test]
fn outbound_subnets_are_cluster_plus_allowed_sorted_and_deduplicated() {
    let gw = gateway_with(|s| {
        s.kill_switch.allowed_subnets = vec![
            "192.168.1.7/24".into(),
            "10.96.0.0/16".into(),
            "fd00:1::/64".into(),
        ]
    });
    let g = gluetun(&injected(&ready_with(gw), &cluster()));
    assert_eq!(
        list(value(&g, "FIREWALL_OUTBOUND_SUBNETS")),
        [
            "10.96.0.0/16",
            "10.244.0.0/16",
            "192.168.1.0/24",
            "fd00:1::/64"
        ]
    );
}

#[test]
fn the_gateways_cluster_subnets_replace_the_discovered_ones() {
    let gw = gateway_with(|s| s.kill_switch.cluster_subnets = Some(vec!["10.42.0.0/16".into()]));
    let g = gluetun(&injected(&ready_with(gw), &cluster()));
    assert_eq!(
        list(value(&g, "FIREWALL_OUTBOUND_SUBNETS")),
        ["10.42.0.0/16", "192.168.1.0/24"]
    );
}

#[test]
fn input_ports_default_to_the_consumers_ports_plus_health() {
    let gw = gateway_with(|s| s.input_ports.clear());
    let mut d = deployment();
    // An exporter sidecar already on the Deployment, on a port the catalog
    // does not know.
    d.spec
        .template
        .spec
        .as_mut()
        .expect("pod")
        .containers
        .push(Container {
            name: "exporter".into(),
            ports: Some(vec![ContainerPort {
                container_port: 9101,
                ..Default::default()
            }]),
            ..Default::default()
        });
    inject(
        &parent(),
        qbittorrent(),
        &mut d,
        &ready_with(gw),
        &cluster(),
    )
    .expect("inject");
    // WebUI 8080, catalog exporter 8090, the declared 9101, health 9999.
    assert_eq!(
        list(value(&gluetun(&d), "FIREWALL_INPUT_PORTS")),
        ["8080", "8090", "9101", "9999"]
    );
}

#[test]
fn explicit_input_ports_replace_the_defaults_but_keep_exporter_and_health() {
    // The example gateway sets inputPorts: [8080].
    let g = gluetun(&injected(&ready(), &cluster()));
    assert_eq!(
        list(value(&g, "FIREWALL_INPUT_PORTS")),
        ["8080", "8090", "9999"]
    );
    assert_eq!(value(&g, "FIREWALL_VPN_INPUT_PORTS"), None);
}

#[test]
fn port_forwarding_sets_qbittorrents_listen_port() {
    let gw = gateway_with(|s| {
        s.provider = Provider::Protonvpn;
        s.port_forwarding.enabled = true;
    });
    let g = gluetun(&injected(&ready_with(gw), &cluster()));
    assert_eq!(value(&g, "VPN_PORT_FORWARDING").as_deref(), Some("on"));
    assert_eq!(value(&g, "PORT_FORWARD_ONLY").as_deref(), Some("on"));
    let cmd = value(&g, "VPN_PORT_FORWARDING_UP_COMMAND").expect("up command");
    assert!(
        cmd.starts_with("/bin/sh -c '") && cmd.ends_with('\''),
        "{cmd}"
    );
    assert_eq!(
        cmd.matches('\'').count(),
        2,
        "one single-quoted script: {cmd}"
    );
    assert!(cmd.contains("{{PORTS}}"), "{cmd}");
    assert!(
        cmd.contains("http://127.0.0.1:8080/api/v2/app/setPreferences"),
        "{cmd}"
    );
    assert!(cmd.contains("listen_port"), "{cmd}");
}

#[test]
fn mullvad_port_forwarding_enables_nothing() {
    let gw = gateway_with(|s| s.port_forwarding.enabled = true);
    assert_eq!(gw.spec.provider, Provider::Mullvad);
    let g = gluetun(&injected(&ready_with(gw), &cluster()));
    for name in [
        "VPN_PORT_FORWARDING",
        "VPN_PORT_FORWARDING_UP_COMMAND",
        "PORT_FORWARD_ONLY",
        "FIREWALL_VPN_INPUT_PORTS",
    ] {
        assert_eq!(value(&g, name), None, "{name}");
    }
}

#[test]
fn memory_limit_is_at_least_256mi() {
    let limit = |resources: Option<ResourceRequirements>| {
        let gw = gateway_with(|s| s.resources = resources);
        gluetun(&injected(&ready_with(gw), &cluster()))
            .resources
            .and_then(|r| r.limits)
            .and_then(|l| l.get("memory").map(|q| q.0.clone()))
    };
    let with_limit = |q: &str| {
        Some(ResourceRequirements {
            limits: Some(BTreeMap::from([("memory".into(), Quantity(q.into()))])),
            ..Default::default()
        })
    };
    assert_eq!(limit(None).as_deref(), Some("256Mi"));
    assert_eq!(limit(with_limit("128Mi")).as_deref(), Some("256Mi"));
    assert_eq!(limit(with_limit("200M")).as_deref(), Some("256Mi"));
    assert_eq!(limit(with_limit("bogus")).as_deref(), Some("256Mi"));
    assert_eq!(limit(with_limit("512Mi")).as_deref(), Some("512Mi"));
    assert_eq!(limit(with_limit("1Gi")).as_deref(), Some("1Gi"));
}

#[test]
fn hardening_net_admin_tun_post_start_and_recreate() {
    let d = injected(&ready(), &cluster());
    let g = gluetun(&d);
    let sc = g.security_context.clone().expect("security context");
    let caps = sc.capabilities.expect("capabilities");
    assert_eq!(caps.add, Some(vec!["NET_ADMIN".to_string()]));
    assert!(caps.drop.unwrap_or_default().contains(&"MKNOD".to_string()));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_ne!(sc.privileged, Some(true));

    let tun = pod(&d)
        .volumes
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name == "vpn-tun")
        .and_then(|v| v.host_path)
        .expect("tun volume");
    assert_eq!(
        (tun.path.as_str(), tun.type_.as_deref()),
        ("/dev/net/tun", Some("CharDevice"))
    );
    assert!(
        g.volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == "vpn-tun" && m.mount_path == "/dev/net/tun")
    );

    let hook = g
        .lifecycle
        .and_then(|l| l.post_start)
        .and_then(|h| h.exec)
        .and_then(|e| e.command)
        .expect("postStart")
        .join(" ");
    assert!(hook.contains("ip rule del table 51820"), "{hook}");
    assert!(
        hook.ends_with("exit 0"),
        "the hook tolerates failure: {hook}"
    );

    let strategy = d.spec.strategy.and_then(|s| s.type_);
    assert_eq!(strategy.as_deref(), Some("Recreate"));
}

#[test]
fn probes_use_the_health_server_reachable_from_the_kubelet() {
    let g = gluetun(&injected(&ready(), &cluster()));
    assert_eq!(value(&g, "HEALTH_SERVER_ADDRESS").as_deref(), Some(":9999"));
    assert_eq!(value(&g, "HEALTH_RESTART_VPN").as_deref(), Some("on"));
    assert!(value(&g, "HEALTH_TARGET_ADDRESSES").is_some());
    let startup = g.startup_probe.expect("startup");
    let get = startup.http_get.expect("http probe");
    assert_eq!(get.port, IntOrString::Int(9999));
    let budget = startup.period_seconds.unwrap_or(10) * startup.failure_threshold.unwrap_or(3);
    assert!(
        budget >= 300,
        "a slow tunnel only delays the app: {budget}s"
    );
}

#[test]
fn dns_keeps_gluetuns_resolver_and_never_the_pods_nameserver() {
    let g = gluetun(&injected(&ready(), &cluster()));
    assert_eq!(value(&g, "DNS_SERVER").as_deref(), Some("on"));
    for leaky in [
        "DNS_KEEP_NAMESERVER",
        "DNS_ADDRESS",
        "DNS_UPSTREAM_PLAIN_ADDRESSES",
    ] {
        assert!(!env(&g).contains_key(leaky), "{leaky}");
    }
}

#[test]
fn control_server_reads_the_generated_role_file() {
    let d = injected(&ready(), &cluster());
    let g = gluetun(&d);
    assert_eq!(
        value(&g, "HTTP_CONTROL_SERVER_ADDRESS").as_deref(),
        Some(":8000")
    );
    assert_eq!(
        value(&g, "HTTP_CONTROL_SERVER_AUTH_CONFIG_FILEPATH").as_deref(),
        Some("/gluetun/auth/config.toml")
    );
    let secret = control_secret(&parent(), qbittorrent());
    let vol = pod(&d)
        .volumes
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name == "vpn-control")
        .and_then(|v| v.secret)
        .expect("control volume");
    assert_eq!(vol.secret_name.as_deref(), Some(secret.name.as_str()));
    assert!(
        g.volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == "vpn-control" && m.mount_path == "/gluetun/auth")
    );
    // Not reachable from outside the pod.
    assert!(!list(value(&g, "FIREWALL_INPUT_PORTS")).contains(&"8000".to_string()));
}

#[test]
fn control_secret_grants_read_only_routes_to_a_random_key() {
    let s = control_secret(&parent(), qbittorrent());
    assert_eq!(s.name, "home-qbittorrent-gluetun-control");
    assert_eq!(s.random_keys, ["apikey"]);
    let toml = s.templated.get("config.toml").expect("role file");
    assert!(toml.contains("[[roles]]"), "{toml}");
    assert!(toml.contains("auth = \"apikey\""), "{toml}");
    assert!(toml.contains("apikey = \"{{apikey}}\""), "{toml}");
    assert!(toml.contains("\"GET /v1/portforward\""), "{toml}");
    assert!(
        !toml.contains("PUT ") && !toml.contains("settings"),
        "{toml}"
    );
    assert_eq!(
        s.labels
            .get("app.kubernetes.io/component")
            .map(String::as_str),
        Some("vpn")
    );
}

#[test]
fn pod_template_carries_the_vpn_hash() {
    let d = injected(&ready(), &cluster());
    let a = annotations(&d);
    assert_eq!(a.get(HASH_ANNOTATION).map(String::as_str), Some(HASH));
    assert!(!a.contains_key(BLOCKED_ANNOTATION));
    assert_eq!(replicas(&d), Some(1));
}

#[test]
fn unavailable_fails_closed_with_the_sidecar_and_the_reason() {
    for (res, image) in [
        (
            unavailable(Some(gateway()), reason::SECRET_KEY_MISSING),
            "qmcgaw/gluetun:v3.41.1",
        ),
        (
            unavailable(None, reason::GATEWAY_NOT_FOUND),
            crate::api::vpngateway::DEFAULT_GLUETUN_IMAGE,
        ),
    ] {
        let d = injected(&res, &cluster());
        assert_eq!(replicas(&d), Some(0));
        let a = annotations(&d);
        let VpnResolution::Unavailable { reason, .. } = &res else {
            unreachable!()
        };
        assert_eq!(a.get(BLOCKED_ANNOTATION), Some(reason));
        assert!(!a.contains_key(HASH_ANNOTATION));
        let g = gluetun(&d);
        assert_eq!(g.name, "gluetun");
        assert_eq!(g.restart_policy.as_deref(), Some("Always"));
        assert_eq!(g.image.as_deref(), Some(image));
        assert_eq!(value(&g, "FIREWALL").as_deref(), Some("on"));
        let startup = g.startup_probe.expect("startup probe");
        assert_eq!(
            startup.exec.and_then(|e| e.command),
            Some(vec!["/bin/false".to_string()]),
            "a startup probe that can never pass"
        );
    }
    let placeholder = gluetun(&injected(&unavailable(None, "x"), &cluster()));
    assert!(
        !env(&placeholder)
            .keys()
            .any(|k| k.starts_with("WIREGUARD_"))
    );
    assert_eq!(
        list(value(&placeholder, "FIREWALL_OUTBOUND_SUBNETS")),
        ["10.96.0.0/16", "10.244.0.0/16"]
    );
}

#[test]
fn unusable_cluster_subnets_fail_closed() {
    for (subnets, why) in [
        (vec![], reason::CLUSTER_SUBNETS_UNKNOWN),
        (
            vec!["10.244.0.0/16".to_string(), "bogus".into()],
            reason::INVALID_SUBNET,
        ),
        (vec!["0.0.0.0/0".to_string()], reason::SUBNET_TOO_WIDE),
    ] {
        let d = injected(&ready(), &subnets);
        assert_eq!(replicas(&d), Some(0), "{subnets:?}");
        assert_eq!(
            annotations(&d).get(BLOCKED_ANNOTATION).map(String::as_str),
            Some(why)
        );
        let outbound = list(value(&gluetun(&d), "FIREWALL_OUTBOUND_SUBNETS"));
        assert!(!outbound.iter().any(|s| s.ends_with("/0")), "{outbound:?}");
        let np = policy(&ready(), &subnets);
        let spec = np.spec.expect("spec");
        assert_eq!(spec.egress, Some(vec![]));
    }
}

#[test]
fn inject_is_idempotent() {
    let once = injected(&ready(), &cluster());
    let mut twice = once.clone();
    inject(&parent(), qbittorrent(), &mut twice, &ready(), &cluster()).expect("inject");
    assert_eq!(yaml(&once), yaml(&twice));
    // And switching from closed to ready leaves no trace of the closed state.
    let mut reopened = injected(&unavailable(Some(gateway()), "x"), &cluster());
    reopened.spec.replicas = Some(1);
    inject(
        &parent(),
        qbittorrent(),
        &mut reopened,
        &ready(),
        &cluster(),
    )
    .expect("inject");
    assert_eq!(yaml(&once), yaml(&reopened));
}

#[test]
fn rendering_is_deterministic() {
    let render = || {
        let d = injected(&ready(), &cluster());
        let p = network_policy(&parent(), qbittorrent(), &ready(), &cluster()).expect("policy");
        (yaml(&d), p.to_yaml())
    };
    assert_eq!(render(), render());
    // Input order of the subnets does not matter.
    let mut reversed = cluster();
    reversed.reverse();
    assert_eq!(
        yaml(&injected(&ready(), &reversed)),
        yaml(&injected(&ready(), &cluster()))
    );
}

// ---------------------------------------------------------------- policy

#[test]
fn network_policy_selects_the_consumer_and_lets_out_only_tunnel_dns_and_lan() {
    let np = policy(&ready(), &cluster());
    assert_eq!(np.metadata.name.as_deref(), Some("home-qbittorrent-vpn"));
    let spec = np.spec.expect("spec");
    assert_eq!(
        spec.pod_selector.and_then(|s| s.match_labels),
        Some(parent().selector("qbittorrent"))
    );
    assert_eq!(
        spec.policy_types,
        Some(vec!["Egress".to_string(), "Ingress".into()])
    );
    let egress = spec.egress.expect("egress");
    assert_eq!(egress.len(), 3, "tunnel, DNS, allowed subnets");

    let tunnel = &egress[0];
    let ports = tunnel.ports.clone().expect("ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].protocol.as_deref(), Some("UDP"));
    assert_eq!(ports[0].port, Some(IntOrString::Int(51820)));
    let v4 = tunnel.to.as_ref().expect("to")[0]
        .ip_block
        .clone()
        .expect("ip block");
    assert_eq!(v4.cidr, "0.0.0.0/0");
    let except = v4.except.unwrap_or_default();
    // The cluster ranges (inside 10.0.0.0/8 here) and private ranges are cut.
    assert!(except.contains(&"10.0.0.0/8".to_string()), "{except:?}");
    assert!(except.contains(&"192.168.0.0/16".to_string()), "{except:?}");

    let dns = &egress[1];
    let peer = &dns.to.as_ref().expect("to")[0];
    assert_eq!(
        peer.pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .and_then(|l| l.get("k8s-app"))
            .map(String::as_str),
        Some("kube-dns")
    );
    assert!(
        dns.ports
            .iter()
            .flatten()
            .all(|p| p.port == Some(IntOrString::Int(53)))
    );

    let lan = &egress[2];
    assert_eq!(
        lan.to.as_ref().expect("to")[0]
            .ip_block
            .as_ref()
            .map(|b| b.cidr.as_str()),
        Some("192.168.1.0/24")
    );
    assert!(lan.ports.is_none());

    let ingress = spec.ingress.expect("ingress");
    let ports: Vec<IntOrString> = ingress
        .iter()
        .flat_map(|r| r.ports.iter().flatten())
        .filter_map(|p| p.port.clone())
        .collect();
    assert_eq!(
        ports,
        [IntOrString::Int(8080), IntOrString::Int(8090)],
        "the input ports and the exporter, not health"
    );
}

#[test]
fn network_policy_of_a_custom_server_allows_private_endpoints() {
    let gw = gateway_with(|s| s.provider = Provider::Custom);
    let np = policy(&ready_with(gw), &cluster());
    let egress = np.spec.and_then(|s| s.egress).expect("egress");
    let tunnel = &egress[0];
    assert_eq!(
        tunnel.ports.clone().expect("ports")[0].port,
        None,
        "any UDP port: the endpoint port is in the Secret"
    );
    let except = tunnel.to.as_ref().expect("to")[0]
        .ip_block
        .clone()
        .and_then(|b| b.except)
        .unwrap_or_default();
    assert_eq!(except, ["10.96.0.0/16", "10.244.0.0/16", "169.254.0.0/16"]);
}

#[test]
fn network_policy_opens_the_exporter_to_every_namespace() {
    let np = policy(&ready(), &cluster());
    let ingress = np.spec.and_then(|s| s.ingress).expect("ingress");
    assert_eq!(ingress.len(), 2);
    let metrics = &ingress[1];
    assert_eq!(
        metrics.ports.clone().expect("ports")[0].port,
        Some(IntOrString::Int(8090))
    );
    assert!(
        metrics.from.as_ref().expect("from")[0]
            .namespace_selector
            .is_some()
    );
}

#[test]
fn network_policy_fails_closed_to_deny_all() {
    for res in [
        unavailable(Some(gateway()), reason::SECRET_NOT_FOUND),
        unavailable(None, reason::GATEWAY_NOT_FOUND),
    ] {
        let spec = policy(&res, &cluster()).spec.expect("spec");
        assert_eq!(spec.egress, Some(vec![]));
        assert_eq!(spec.ingress, Some(vec![]));
        assert_eq!(
            spec.policy_types,
            Some(vec!["Egress".to_string(), "Ingress".into()])
        );
    }
}

// ---------------------------------------------------------------- validate

#[test]
fn validate_accepts_the_example() {
    assert_eq!(validate(&gateway(), Some(&wireguard_secret())), Ok(()));
}

#[test]
fn validate_rejects_a_missing_secret() {
    let err = validate(&gateway(), None).expect_err("no secret");
    assert_eq!(err.reason, "SecretNotFound");
    assert!(err.message.contains("mullvad-wireguard"), "{}", err.message);
}

#[test]
fn validate_rejects_a_missing_or_empty_key_naming_it() {
    for s in [
        secret(&[("addresses", "10.64.0.2/32")]),
        secret(&[("addresses", "10.64.0.2/32"), ("privateKey", "  ")]),
    ] {
        let err = validate(&gateway(), Some(&s)).expect_err("missing key");
        assert_eq!(err.reason, "SecretKeyMissing");
        assert!(err.message.contains("privateKey"), "{}", err.message);
        assert!(err.message.contains("mullvad-wireguard"), "{}", err.message);
    }
    let openvpn = gateway_with(|s| {
        s.provider = Provider::Protonvpn;
        s.vpn_type = VpnType::Openvpn;
    });
    let err = validate(&openvpn, Some(&secret(&[("username", "u")]))).expect_err("password");
    assert!(err.message.contains("password"), "{}", err.message);
    assert_eq!(
        validate(
            &openvpn,
            Some(&secret(&[("username", "u"), ("password", "p")]))
        ),
        Ok(())
    );
}

#[test]
fn validate_rejects_an_allowed_subnet_overlapping_the_tunnel() {
    let gw = gateway_with(|s| s.kill_switch.allowed_subnets = vec!["10.64.0.0/16".into()]);
    let err = validate(&gw, Some(&wireguard_secret())).expect_err("overlap");
    assert_eq!(err.reason, "SubnetOverlapsTunnel");
    assert!(err.message.contains("10.64.0.0/16"), "{}", err.message);
    assert!(err.message.contains("10.64.0.2/32"), "{}", err.message);
    // IPv6 too.
    let gw = gateway_with(|s| s.kill_switch.allowed_subnets = vec!["fc00:bbbb::/32".into()]);
    let s = secret(&[
        ("privateKey", "k"),
        ("addresses", "10.64.0.2/32,fc00:bbbb:bbbb:bb01::1/128"),
    ]);
    let err = validate(&gw, Some(&s)).expect_err("v6 overlap");
    assert_eq!(err.reason, "SubnetOverlapsTunnel");
}

#[test]
fn validate_checks_the_gateways_own_cluster_subnets() {
    let overlap =
        gateway_with(|s| s.kill_switch.cluster_subnets = Some(vec!["10.64.0.0/10".into()]));
    let err = validate(&overlap, Some(&wireguard_secret())).expect_err("overlap");
    assert_eq!(err.reason, "SubnetOverlapsTunnel");
    let wide = gateway_with(|s| s.kill_switch.cluster_subnets = Some(vec!["0.0.0.0/1".into()]));
    let err = validate(&wide, Some(&wireguard_secret())).expect_err("too wide");
    assert_eq!(err.reason, "SubnetTooWide");
}

#[test]
fn validate_rejects_unusable_key_values_without_echoing_them() {
    let s = secret(&[("privateKey", "k"), ("addresses", "not-an-address")]);
    let err = validate(&gateway(), Some(&s)).expect_err("bad addresses");
    assert_eq!(err.reason, "SecretKeyInvalid");
    assert!(!err.message.contains("not-an-address"), "{}", err.message);

    let custom = gateway_with(|s| s.provider = Provider::Custom);
    let err = validate(&custom, Some(&wireguard_secret())).expect_err("custom keys");
    assert_eq!(err.reason, "SecretKeyMissing");
    assert!(err.message.contains("publicKey"), "{}", err.message);
    let full = |port: &str| {
        secret(&[
            ("privateKey", "k"),
            ("addresses", "10.64.0.2/32"),
            ("publicKey", "p"),
            ("endpointIP", "203.0.113.7"),
            ("endpointPort", port),
        ])
    };
    assert_eq!(validate(&custom, Some(&full("51820"))), Ok(()));
    let err = validate(&custom, Some(&full("70000"))).expect_err("port");
    assert_eq!(err.reason, "SecretKeyInvalid");
}

#[test]
fn discovered_cluster_subnets_are_checked_against_the_tunnel() {
    let s = secret(&[("privateKey", "k"), ("addresses", "10.99.1.2/32")]);
    let err = check_cluster_subnets(&gateway(), Some(&s), &["10.96.0.0/12".to_string()])
        .expect_err("overlap");
    assert_eq!(err.reason, "SubnetOverlapsTunnel");
    let err = check_cluster_subnets(&gateway(), Some(&s), &[]).expect_err("unknown");
    assert_eq!(err.reason, "ClusterSubnetsUnknown");
    assert_eq!(
        check_cluster_subnets(&gateway(), Some(&wireguard_secret()), &cluster()),
        Ok(())
    );
    let res = resolve_for_cluster(Some(&gateway()), Some(&s), &["10.96.0.0/12".to_string()]);
    assert!(matches!(
        res,
        VpnResolution::Unavailable { ref reason, .. } if reason == "SubnetOverlapsTunnel"
    ));
}

// ---------------------------------------------------------------- resolve

#[test]
fn resolve_combines_gateway_and_secret() {
    let VpnResolution::Unavailable {
        gateway: None,
        reason,
        ..
    } = resolve(None, None)
    else {
        panic!("no gateway must be unavailable");
    };
    assert_eq!(reason, "VpnGatewayNotFound");

    let VpnResolution::Unavailable {
        gateway: Some(_),
        reason,
        message,
    } = resolve(
        Some(&gateway()),
        Some(&secret(&[("addresses", "10.64.0.2/32")])),
    )
    else {
        panic!("a missing key must be unavailable");
    };
    assert_eq!(reason, "SecretKeyMissing");
    assert!(message.contains("privateKey"));

    let VpnResolution::Ready {
        gateway: gw,
        hash,
        secret_keys,
    } = resolve(Some(&gateway()), Some(&wireguard_secret()))
    else {
        panic!("the example must be ready");
    };
    assert_eq!(gw.metadata.name.as_deref(), Some("mullvad"));
    assert_eq!(hash, resolution_hash(&gateway(), &wireguard_secret()));
    assert_eq!(secret_keys, ["addresses", "privateKey"]);

    let mut deleting = gateway();
    deleting.metadata.deletion_timestamp = Some(Time(Default::default()));
    assert!(matches!(
        resolve(Some(&deleting), Some(&wireguard_secret())),
        VpnResolution::Unavailable { ref reason, .. } if reason == "VpnGatewayDeleting"
    ));
}

#[test]
fn resolution_hash_follows_spec_and_secret_and_hides_the_values() {
    let base = resolution_hash(&gateway(), &wireguard_secret());
    assert_eq!(base.len(), 16);
    assert!(base.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(base, resolution_hash(&gateway(), &wireguard_secret()));

    let rotated = secret(&[("privateKey", "b3RoZXI="), ("addresses", "10.64.0.2/32")]);
    assert_ne!(base, resolution_hash(&gateway(), &rotated));
    let moved = gateway_with(|s| s.servers = None);
    assert_ne!(base, resolution_hash(&moved, &wireguard_secret()));
    // Key and value boundaries matter.
    let a = secret(&[("ab", "c")]);
    let b = secret(&[("a", "bc")]);
    assert_ne!(
        resolution_hash(&gateway(), &a),
        resolution_hash(&gateway(), &b)
    );
    // The value never shows in what the renderer emits.
    let d = injected(&ready(), &cluster());
    assert!(!yaml(&d).contains("cHJpdmF0ZQ=="));
}

// ---------------------------------------------------------------- property

const PROVIDERS: [Provider; 23] = [
    Provider::Airvpn,
    Provider::Custom,
    Provider::Cyberghost,
    Provider::Expressvpn,
    Provider::Fastestvpn,
    Provider::Giganews,
    Provider::Hidemyass,
    Provider::Ipvanish,
    Provider::Ivpn,
    Provider::Mullvad,
    Provider::Nordvpn,
    Provider::PerfectPrivacy,
    Provider::Privado,
    Provider::PrivateInternetAccess,
    Provider::Privatevpn,
    Provider::Protonvpn,
    Provider::Purevpn,
    Provider::Surfshark,
    Provider::Torguard,
    Provider::VpnSecure,
    Provider::VpnUnlimited,
    Provider::Vyprvpn,
    Provider::Windscribe,
];

fn subnet() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (any::<u32>(), 8u8..=32).prop_map(|(a, p)| format!("{}/{p}", Ipv4Addr::from(a))),
        1 => (any::<u128>(), 8u8..=128).prop_map(|(a, p)| format!("{}/{p}", Ipv6Addr::from(a))),
    ]
}

fn names() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[A-Za-z][a-z-]{0,8}", 0..3)
}

prop_compose! {
    fn spec()(
        provider in prop::sample::select(PROVIDERS.to_vec()),
        openvpn in any::<bool>(),
        allowed in prop::collection::vec(subnet(), 0..4),
        cluster_override in prop::option::of(prop::collection::vec(subnet(), 0..3)),
        input_ports in prop::collection::vec(1i32..=65535, 0..4),
        servers in prop::option::of((names(), names(), names(), prop::option::of(any::<bool>()))),
        port_forwarding in any::<bool>(),
        memory in prop::option::of(prop::sample::select(vec!["64Mi", "128M", "256Mi", "1Gi", "junk"])),
    ) -> VpnGatewaySpec {
        VpnGatewaySpec {
            provider,
            vpn_type: if openvpn { VpnType::Openvpn } else { VpnType::Wireguard },
            credentials_secret_ref: SecretRef { name: "creds".into() },
            servers: servers.map(|(countries, cities, hostnames, owned_only)| Servers {
                countries, cities, hostnames, owned_only,
            }),
            kill_switch: KillSwitch { allowed_subnets: allowed, cluster_subnets: cluster_override },
            input_ports,
            port_forwarding: PortForwarding { enabled: port_forwarding },
            image: "qmcgaw/gluetun:v3.41.1".into(),
            resources: memory.map(|m| ResourceRequirements {
                limits: Some(BTreeMap::from([("memory".to_string(), Quantity(m.into()))])),
                ..Default::default()
            }),
        }
    }
}

fn canonical(s: &str) -> String {
    Cidr::parse(s).map(|c| c.to_string()).unwrap_or_default()
}

proptest! {
    #[test]
    fn any_gateway_renders_a_sidecar_with_the_kill_switch(
        spec in spec(),
        kind in 0u8..3,
        discovered in prop::collection::vec(subnet(), 0..3),
    ) {
        let gw = VpnGateway::new("gw", spec);
        let res = match kind {
            0 => ready_with(gw.clone()),
            1 => unavailable(Some(gw.clone()), reason::SECRET_KEY_MISSING),
            _ => unavailable(None, reason::GATEWAY_NOT_FOUND),
        };
        let with_gateway = kind < 2;
        let d = injected(&res, &discovered);

        // The native sidecar, first, with a startup probe.
        let g = gluetun(&d);
        prop_assert_eq!(g.name.as_str(), "gluetun");
        prop_assert_eq!(g.restart_policy.as_deref(), Some("Always"));
        prop_assert!(g.startup_probe.is_some());
        prop_assert_eq!(pod(&d).containers.len(), 1);

        // The firewall is never off.
        prop_assert_eq!(value(&g, "FIREWALL"), Some("on".to_string()));
        prop_assert_eq!(
            value(&g, "FIREWALL_ENABLED_DISABLING_IT_SHOOTS_YOU_IN_YOUR_FOOT"),
            Some("on".to_string())
        );
        for (name, e) in env(&g) {
            prop_assert!(e.value.as_deref() != Some("off"), "{} is off", name);
        }

        // Every cluster range in effect and every allowed subnet stays reachable.
        let outbound = list(value(&g, "FIREWALL_OUTBOUND_SUBNETS"));
        let cluster = match gw.spec.kill_switch.cluster_subnets.clone() {
            Some(own) if with_gateway => own,
            _ => discovered.clone(),
        };
        let allowed = if with_gateway { gw.spec.kill_switch.allowed_subnets.clone() } else { vec![] };
        for s in cluster.iter().chain(&allowed) {
            prop_assert!(outbound.contains(&canonical(s)), "{} missing from {:?}", s, outbound);
        }

        // No credential is a literal value.
        for (name, e) in env(&g) {
            if name.starts_with("WIREGUARD_") || name.starts_with("OPENVPN_") {
                prop_assert!(e.value.is_none(), "{} has a literal value", name);
                prop_assert!(
                    e.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).is_some(),
                    "{} is not a secretKeyRef", name
                );
            }
        }

        // Memory never below 256Mi.
        let limit = g.resources.and_then(|r| r.limits).and_then(|l| l.get("memory").cloned());
        prop_assert!(
            limit.and_then(|q| sidecar::quantity_bytes(&q.0)).is_some_and(|b| b >= 256.0 * 1024.0 * 1024.0)
        );

        // Unavailable, or nothing known to keep outside the tunnel: 0 replicas.
        let open = kind == 0 && !cluster.is_empty();
        if open {
            prop_assert_eq!(replicas(&d), Some(1));
            prop_assert!(annotations(&d).contains_key(HASH_ANNOTATION));
        } else {
            prop_assert_eq!(replicas(&d), Some(0));
            prop_assert!(annotations(&d).contains_key(BLOCKED_ANNOTATION));
        }

        // Deterministic and idempotent.
        let mut again = d.clone();
        inject(&parent(), qbittorrent(), &mut again, &res, &discovered).expect("inject");
        prop_assert_eq!(yaml(&again), yaml(&d));

        // The policy is valid: every `except` lies strictly inside its block.
        let np = policy(&res, &discovered);
        for rule in np.spec.and_then(|s| s.egress).unwrap_or_default() {
            for peer in rule.to.unwrap_or_default() {
                if let Some(block) = peer.ip_block {
                    let outer = Cidr::parse(&block.cidr).expect("cidr");
                    for e in block.except.unwrap_or_default() {
                        let inner = Cidr::parse(&e).expect("except cidr");
                        prop_assert!(outer.contains(&inner) && outer != inner, "{} in {}", e, block.cidr);
                    }
                }
            }
        }
    }
}
