use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, PodSpec, PodTemplateSpec, ResourceRequirements, Secret,
    VolumeMount,
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
    Endpoint, KillSwitch, PortForwarding, Provider, Servers, VpnGatewaySpec, VpnType,
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
                        volume_mounts: Some(vec![VolumeMount {
                            name: "config".into(),
                            mount_path: "/config".into(),
                            sub_path: Some("config".into()),
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

fn custom_gateway() -> VpnGateway {
    gateway_with(|s| {
        s.provider = Provider::Custom;
        s.endpoint = Some(Endpoint {
            ip: "203.0.113.7".into(),
            port: 51999,
        });
    })
}

fn gateway_with(f: impl FnOnce(&mut VpnGatewaySpec)) -> VpnGateway {
    let mut gw = gateway();
    f(&mut gw.spec);
    gw
}

fn injected(res: &VpnResolution, cluster: &[String]) -> Deployment {
    let mut d = deployment();
    inject(&parent(), qbittorrent(), &mut d, res, cluster, false).expect("inject");
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
    let child = network_policy(&parent(), qbittorrent(), res, cluster, None).expect("policy");
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
    let ready =
        network_policy(&parent(), qbittorrent(), &ready(), &cluster(), None).expect("policy");
    snapshot("ready_networkpolicy", ready.to_yaml());
    let closed = network_policy(
        &parent(),
        qbittorrent(),
        &unavailable(Some(gateway()), reason::SECRET_NOT_FOUND),
        &cluster(),
        None,
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
    inject(
        &parent(),
        qbittorrent(),
        &mut d,
        &ready(),
        &cluster(),
        false,
    )
    .expect("inject");
    let pod = pod(&d);
    let init: Vec<String> = pod
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(init, ["gluetun", "qbittorrent-config", "chown"]);
    let g = gluetun(&d);
    assert_eq!(g.restart_policy.as_deref(), Some("Always"));
    assert_eq!(g.image.as_deref(), Some("qmcgaw/gluetun:v3.41.1"));
    assert!(g.startup_probe.is_some() && g.liveness_probe.is_some());
    assert!(g.readiness_probe.is_some());
    assert_eq!(pod.containers.len(), 1, "no container added");
    assert_eq!(pod.containers[0].name, "qbittorrent");
}

// ------------------------------------------------- qBittorrent, the app side

fn config_step(d: &Deployment) -> Container {
    pod(d)
        .init_containers
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.name == CONFIG_CONTAINER)
        .expect("the config step")
}

#[test]
fn qbittorrent_is_bound_to_the_tunnel_with_monitoring_on_or_off() {
    for (monitoring, port_forwarding, localhost_auth) in [
        (false, false, false),
        (true, false, true),
        (false, true, true),
    ] {
        let gw = gateway_with(|s| {
            s.provider = Provider::Protonvpn;
            s.port_forwarding.enabled = port_forwarding;
        });
        let mut d = deployment();
        inject(
            &parent(),
            qbittorrent(),
            &mut d,
            &ready_with(gw),
            &cluster(),
            monitoring,
        )
        .expect("inject");
        let step = config_step(&d);
        let settings = env(&step)
            .get("QBT_SETTINGS")
            .and_then(|e| e.value.clone())
            .expect("settings");
        for line in [
            "set\tBitTorrent\tSession\\Interface\ttun0\t\n",
            "set\tBitTorrent\tSession\\InterfaceName\ttun0\t\n",
            "set\tBitTorrent\tSession\\InterfaceAddress\t\t\n",
            "default\tBitTorrent\tSession\\DefaultSavePath\t/data/torrents/\t/downloads/\n",
            "default\tBitTorrent\tSession\\TempPath\t/data/torrents/incomplete/\t/downloads/incomplete/\n",
            "legacy\tPreferences\tConnection\\Interface\ttun0\t\n",
            "legacydefault\tPreferences\tDownloads\\SavePath\t/data/torrents/\t/downloads/\n",
        ] {
            assert!(settings.contains(line), "{line:?} in {settings:?}");
        }
        assert_eq!(
            settings.contains("WebUI\\LocalHostAuth\tfalse"),
            localhost_auth,
            "monitoring {monitoring}, port forwarding {port_forwarding}: {settings:?}"
        );
        // The app's image and config mount, nothing else.
        assert_eq!(step.image.as_deref(), Some(qbittorrent().image));
        let mounts = step.volume_mounts.clone().unwrap_or_default();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].mount_path, "/config");
    }
    // Without a gateway (fail closed) the step is still there.
    let d = injected(&unavailable(None, reason::GATEWAY_NOT_FOUND), &cluster());
    config_step(&d);
}

/// Runs the config step's script on a copy of `conf` (None: fresh volume)
/// with `sh` and `awk` (and busybox when installed), returns the result.
fn run_config_step(conf: Option<&str>, localhost_auth: bool, shell: &[&str]) -> String {
    run_config_step_env(conf, localhost_auth, &[], shell)
}

/// [`run_config_step`] with extra environment (the WebUI login's keys).
fn run_config_step_env(
    conf: Option<&str>,
    localhost_auth: bool,
    env: &[(&str, &str)],
    shell: &[&str],
) -> String {
    let dir = std::env::temp_dir().join(format!(
        "qbt-config-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let root = dir.join("config");
    std::fs::create_dir_all(root.join("qBittorrent")).expect("dir");
    if let Some(conf) = conf {
        std::fs::write(root.join("qBittorrent/qBittorrent.conf"), conf).expect("write");
    }
    let script = qbittorrent::script().replace("/config", root.to_str().expect("utf-8"));
    let status = std::process::Command::new(shell[0])
        .args(&shell[1..])
        .arg("-c")
        .arg(&script)
        .env(
            "QBT_SETTINGS",
            qbittorrent::settings_for_test(localhost_auth),
        )
        .envs(env.iter().copied())
        .status()
        .expect("run the script");
    assert!(status.success(), "{shell:?}: {status}");
    let out = std::fs::read_to_string(root.join("qBittorrent/qBittorrent.conf")).expect("read");
    std::fs::remove_dir_all(&dir).ok();
    out
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn shells() -> Vec<Vec<&'static str>> {
    let mut out = vec![vec!["sh"]];
    if std::process::Command::new("busybox")
        .arg("true")
        .status()
        .is_ok_and(|s| s.success())
    {
        out.push(vec!["busybox", "sh"]);
    }
    out
}

#[test]
fn the_config_step_binds_the_session_and_keeps_the_users_choices() {
    // The linuxserver image's /defaults/qBittorrent.conf (pre-4.4 keys,
    // which qBittorrent migrates at its first start).
    let image_file = "[AutoRun]\nenabled=false\nprogram=\n\n[LegalNotice]\nAccepted=true\n\n\
         [Preferences]\nConnection\\UPnP=false\nConnection\\PortRangeMin=6881\n\
         Downloads\\SavePath=/downloads/\nDownloads\\TempPath=/downloads/incomplete/\n\
         WebUI\\Address=*\nWebUI\\ServerDomains=*\n";
    // A file qBittorrent 5 has written (new keys, image defaults kept).
    let image_default = "[BitTorrent]\nSession\\DefaultSavePath=/downloads/\nSession\\Port=6881\n\
         Session\\TempPath=/downloads/incomplete/\n\n[LegalNotice]\nAccepted=true\n\n\
         [Preferences]\nWebUI\\Address=*\nWebUI\\ServerDomains=*\n";
    // A user's file: own save path, an interface of their own, LocalHostAuth on.
    let user = "[BitTorrent]\nSession\\DefaultSavePath=/data/torrents/films/\n\
         Session\\Interface=eth0\nSession\\InterfaceName=eth0\n\
         Session\\InterfaceAddress=10.42.0.7\nSession\\TempPath=/data/torrents/tmp/\n\n\
         [Preferences]\nConnection\\Interface=eth0\nDownloads\\SavePath=/data/torrents/films/\n\
         WebUI\\LocalHostAuth=true\nWebUI\\Port=8080\n";
    for shell in shells() {
        let out = run_config_step(Some(image_file), false, &shell);
        for line in [
            "[BitTorrent]",
            "Session\\Interface=tun0",
            "Session\\DefaultSavePath=/data/torrents/",
            "Downloads\\SavePath=/data/torrents/",
            "Downloads\\TempPath=/data/torrents/incomplete/",
            "Connection\\UPnP=false",
            "WebUI\\ServerDomains=*",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "{shell:?}: {line} in\n{out}"
            );
        }
        // Legacy keys are only rewritten, never added.
        assert!(!out.contains("Connection\\Interface"), "{out}");
        assert!(!out.contains("/downloads/"), "{out}");

        let out = run_config_step(Some(image_default), false, &shell);
        for line in [
            "Session\\Interface=tun0",
            "Session\\InterfaceName=tun0",
            "Session\\InterfaceAddress=",
            "Session\\DefaultSavePath=/data/torrents/",
            "Session\\TempPath=/data/torrents/incomplete/",
            "Session\\Port=6881",
            "Accepted=true",
            "WebUI\\ServerDomains=*",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "{shell:?}: {line} in\n{out}"
            );
        }
        assert!(!out.contains("/downloads/"), "{out}");
        assert!(
            !out.contains("LocalHostAuth"),
            "untouched without monitoring: {out}"
        );
        // The session keys land in [BitTorrent], not after [Preferences].
        let bt = out.find("[BitTorrent]").expect("section");
        let prefs = out.find("[Preferences]").expect("section");
        let iface = out.find("Session\\Interface=tun0").expect("key");
        assert!(bt < iface && iface < prefs, "{out}");
        // Idempotent.
        let again = run_config_step(Some(&out), false, &shell);
        assert_eq!(again, out, "{shell:?}");

        let out = run_config_step(Some(user), true, &shell);
        for line in [
            "Session\\Interface=tun0",
            "Session\\InterfaceName=tun0",
            "Session\\InterfaceAddress=",
            "Session\\DefaultSavePath=/data/torrents/films/",
            "Session\\TempPath=/data/torrents/tmp/",
            "WebUI\\LocalHostAuth=false",
            "WebUI\\Port=8080",
            "Connection\\Interface=tun0",
            "Downloads\\SavePath=/data/torrents/films/",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "{shell:?}: {line} in\n{out}"
            );
        }
        assert!(!out.contains("eth0") && !out.contains("10.42.0.7"), "{out}");

        // A fresh volume (no /defaults in this test): sections created.
        let out = run_config_step(None, true, &shell);
        assert!(
            out.contains("[BitTorrent]\nSession\\Interface=tun0\n"),
            "{out}"
        );
        assert!(
            out.contains("[Preferences]\nWebUI\\LocalHostAuth=false\n"),
            "{out}"
        );
    }
}

#[test]
fn qbittorrent_restarts_when_the_tunnel_is_unhealthy() {
    let d = injected(&ready(), &cluster());
    let app = pod(&d)
        .containers
        .into_iter()
        .find(|c| c.name == "qbittorrent")
        .expect("app");
    let probe = app.liveness_probe.expect("liveness");
    let cmd = probe.exec.and_then(|e| e.command).expect("exec").join(" ");
    assert!(
        cmd.contains("curl -fsS -o /dev/null -m 3 http://127.0.0.1:9999/"),
        "{cmd}"
    );
    assert!(cmd.contains("http://127.0.0.1:8080/"), "{cmd}");
    // Fails within a minute of the tunnel going down.
    let window = probe.period_seconds.unwrap_or(10) * probe.failure_threshold.unwrap_or(3);
    assert!(window <= 60, "{window}s");
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
fn custom_provider_reads_the_public_key_from_the_secret_and_the_endpoint_from_the_spec() {
    let gw = custom_gateway();
    let g = gluetun(&injected(&ready_with(gw), &cluster()));
    assert_eq!(value(&g, "VPN_SERVICE_PROVIDER").as_deref(), Some("custom"));
    assert_eq!(
        secret_ref(&g, "WIREGUARD_PUBLIC_KEY"),
        Some(("mullvad-wireguard".into(), "publicKey".into(), None))
    );
    assert_eq!(
        value(&g, "WIREGUARD_ENDPOINT_IP").as_deref(),
        Some("203.0.113.7")
    );
    assert_eq!(
        value(&g, "WIREGUARD_ENDPOINT_PORT").as_deref(),
        Some("51999")
    );
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
        // Not read by gluetun v3.41: not rendered, so nobody relies on it.
        assert_eq!(value(&g, "FIREWALL"), None);
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
fn input_ports_default_to_the_consumers_ports_only() {
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
        false,
    )
    .expect("inject");
    // WebUI 8080, catalog exporter 8090, the declared 9101; nothing of
    // gluetun's own (health and control servers are on loopback).
    assert_eq!(
        list(value(&gluetun(&d), "FIREWALL_INPUT_PORTS")),
        ["8080", "8090", "9101"]
    );
}

#[test]
fn explicit_input_ports_replace_the_defaults_but_keep_the_exporter() {
    // The example gateway sets inputPorts: [8080].
    let g = gluetun(&injected(&ready(), &cluster()));
    assert_eq!(list(value(&g, "FIREWALL_INPUT_PORTS")), ["8080", "8090"]);
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
fn probes_exec_gluetuns_healthcheck_against_its_loopback_server() {
    let d = injected(&ready(), &cluster());
    let g = gluetun(&d);
    assert_eq!(
        value(&g, "HEALTH_SERVER_ADDRESS").as_deref(),
        Some("127.0.0.1:9999")
    );
    assert_eq!(value(&g, "HEALTH_RESTART_VPN").as_deref(), Some("on"));
    assert_eq!(value(&g, "VPN_INTERFACE").as_deref(), Some("tun0"));
    assert!(value(&g, "HEALTH_TARGET_ADDRESSES").is_some());
    let healthcheck = Some(vec![
        "/gluetun-entrypoint".to_string(),
        "healthcheck".to_string(),
    ]);
    for probe in [&g.startup_probe, &g.liveness_probe, &g.readiness_probe] {
        let probe = probe.clone().expect("probe");
        assert!(probe.http_get.is_none() && probe.tcp_socket.is_none());
        assert_eq!(probe.exec.and_then(|e| e.command), healthcheck);
    }
    let startup = g.startup_probe.expect("startup");
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
        Some("127.0.0.1:8000")
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
        assert_eq!(
            value(&g, "FIREWALL_ENABLED_DISABLING_IT_SHOOTS_YOU_IN_YOUR_FOOT").as_deref(),
            Some("on")
        );
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
        (vec!["0.0.0.0/0".to_string()], reason::SUBNET_NOT_PRIVATE),
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
    inject(
        &parent(),
        qbittorrent(),
        &mut twice,
        &ready(),
        &cluster(),
        false,
    )
    .expect("inject");
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
        false,
    )
    .expect("inject");
    assert_eq!(yaml(&once), yaml(&reopened));
}

#[test]
fn rendering_is_deterministic() {
    let render = || {
        let d = injected(&ready(), &cluster());
        let p =
            network_policy(&parent(), qbittorrent(), &ready(), &cluster(), None).expect("policy");
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
    assert_eq!(
        tunnel.to.as_ref().expect("to").len(),
        1,
        "no IPv6 peer: IPv6 is not configured"
    );
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
fn network_policy_of_a_custom_server_lets_out_exactly_its_endpoint() {
    let np = policy(&ready_with(custom_gateway()), &cluster());
    let egress = np.spec.and_then(|s| s.egress).expect("egress");
    let tunnel = &egress[0];
    let ports = tunnel.ports.clone().expect("ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].protocol.as_deref(), Some("UDP"));
    assert_eq!(ports[0].port, Some(IntOrString::Int(51999)));
    let to = tunnel.to.clone().expect("to");
    assert_eq!(to.len(), 1);
    let block = to[0].ip_block.clone().expect("ip block");
    assert_eq!(block.cidr, "203.0.113.7/32");
    assert_eq!(block.except, None);

    // A server on the LAN, or on IPv6: still exactly that address.
    for (ip, cidr) in [
        ("192.168.1.10", "192.168.1.10/32"),
        ("2001:db8::7", "2001:db8::7/128"),
    ] {
        let gw = gateway_with(|s| {
            s.provider = Provider::Custom;
            s.endpoint = Some(Endpoint {
                ip: ip.into(),
                port: 51820,
            });
        });
        let np = policy(&ready_with(gw), &cluster());
        let egress = np.spec.and_then(|s| s.egress).expect("egress");
        let block = egress[0].to.clone().expect("to")[0]
            .ip_block
            .clone()
            .expect("ip block");
        assert_eq!(block.cidr, cidr);
    }

    // Without an endpoint (a CRD without the rule): closed.
    let gw = gateway_with(|s| s.provider = Provider::Custom);
    let np = policy(&ready_with(gw.clone()), &cluster());
    assert_eq!(np.spec.and_then(|s| s.egress), Some(vec![]));
    let d = injected(&ready_with(gw), &cluster());
    assert_eq!(replicas(&d), Some(0));
    assert_eq!(
        annotations(&d).get(BLOCKED_ANNOTATION).map(String::as_str),
        Some(reason::ENDPOINT_INVALID)
    );
}

#[test]
fn network_policy_lets_out_only_the_providers_documented_port() {
    for (provider, vpn_type, want) in [
        (Provider::Mullvad, VpnType::Wireguard, vec![51820]),
        (Provider::Airvpn, VpnType::Wireguard, vec![1637]),
        (Provider::Ivpn, VpnType::Wireguard, vec![58237]),
        (Provider::Protonvpn, VpnType::Openvpn, vec![1194]),
        (Provider::Expressvpn, VpnType::Openvpn, vec![1195]),
        (
            Provider::PrivateInternetAccess,
            VpnType::Openvpn,
            vec![1197, 1198],
        ),
        (Provider::Cyberghost, VpnType::Openvpn, vec![443]),
    ] {
        let gw = gateway_with(|s| {
            s.provider = provider;
            s.vpn_type = vpn_type;
        });
        let np = policy(&ready_with(gw.clone()), &cluster());
        let egress = np.spec.and_then(|s| s.egress).expect("egress");
        let ports: Vec<(Option<String>, Option<IntOrString>)> = egress[0]
            .ports
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.protocol, p.port))
            .collect();
        let want: Vec<(Option<String>, Option<IntOrString>)> = want
            .iter()
            .map(|p| (Some("UDP".to_string()), Some(IntOrString::Int(*p))))
            .collect();
        assert_eq!(ports, want, "{provider:?} {vpn_type:?}");
        if vpn_type == VpnType::Openvpn {
            let g = gluetun(&injected(&ready_with(gw), &cluster()));
            assert_eq!(value(&g, "OPENVPN_PROTOCOL").as_deref(), Some("udp"));
        }
    }
    // WireGuard with a provider gluetun has no WireGuard port for: no
    // transport rule at all (the tunnel cannot come up; nothing leaks).
    let gw = gateway_with(|s| s.provider = Provider::Cyberghost);
    let np = policy(&ready_with(gw), &cluster());
    let egress = np.spec.and_then(|s| s.egress).expect("egress");
    assert!(
        egress.iter().all(|r| r
            .to
            .iter()
            .flatten()
            .all(|p| p.ip_block.as_ref().is_none_or(|b| b.cidr != "0.0.0.0/0"))),
        "{egress:?}"
    );
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
fn validate_rejects_an_allowed_subnet_overlapping_the_tunnel_without_echoing_it() {
    // A provider that documents no tunnel range: only the Secret's address.
    let gw = gateway_with(|s| {
        s.provider = Provider::Nordvpn;
        s.kill_switch.allowed_subnets = vec!["10.5.0.0/16".into()];
    });
    let s = secret(&[("privateKey", "k"), ("addresses", "10.5.0.2/32")]);
    let err = validate(&gw, Some(&s)).expect_err("overlap");
    assert_eq!(err.reason, "SubnetOverlapsTunnel");
    assert!(err.message.contains("10.5.0.0/16"), "{}", err.message);
    assert!(err.message.contains("key addresses"), "{}", err.message);
    assert!(!err.message.contains("10.5.0.2"), "{}", err.message);
    // IPv6 too.
    let gw = gateway_with(|s| {
        s.provider = Provider::Nordvpn;
        s.kill_switch.allowed_subnets = vec!["fd00:aaaa::/32".into()];
    });
    let s = secret(&[
        ("privateKey", "k"),
        ("addresses", "10.5.0.2/32,fd00:aaaa::1/128"),
    ]);
    let err = validate(&gw, Some(&s)).expect_err("v6 overlap");
    assert_eq!(err.reason, "SubnetOverlapsTunnel");
    assert!(!err.message.contains("fd00:aaaa::1"), "{}", err.message);
}

#[test]
fn mullvads_tunnel_range_is_refused_before_the_secret_exists() {
    for subnet in ["10.64.0.0/16", "10.0.0.0/8", "fc00:bbbb::/32"] {
        let gw = gateway_with(|s| s.kill_switch.allowed_subnets = vec![subnet.into()]);
        let err = validate(&gw, None).expect_err("provider range");
        assert_eq!(err.reason, "SubnetOverlapsTunnel", "{subnet}");
        assert!(err.message.contains(subnet), "{}", err.message);
        // The renderer holds it closed too, whatever admission let through.
        let d = injected(&ready_with(gw), &cluster());
        assert_eq!(replicas(&d), Some(0), "{subnet}");
    }
    // Another provider may use 10.100.0.0/16 (inside 10.64.0.0/10) on the LAN.
    let gw = gateway_with(|s| {
        s.provider = Provider::Nordvpn;
        s.kill_switch.allowed_subnets = vec!["10.100.0.0/16".into()];
    });
    assert_eq!(validate(&gw, Some(&wireguard_secret())), Ok(()));
}

#[test]
fn validate_checks_the_gateways_own_cluster_subnets() {
    let s = secret(&[("privateKey", "k"), ("addresses", "10.42.7.2/32")]);
    let overlap =
        gateway_with(|s| s.kill_switch.cluster_subnets = Some(vec!["10.42.0.0/16".into()]));
    let err = validate(&overlap, Some(&s)).expect_err("overlap");
    assert_eq!(err.reason, "SubnetOverlapsTunnel");
    for public in ["0.0.0.0/1", "1.0.0.0/8", "2000::/8"] {
        let gw = gateway_with(|s| s.kill_switch.cluster_subnets = Some(vec![public.into()]));
        let err = validate(&gw, None).expect_err("public");
        assert_eq!(err.reason, "SubnetNotPrivate", "{public}");
    }
    // kubeadm's and kind's service range lies inside Mullvad's 10.64.0.0/10
    // without touching the device's address: fine as a cluster range.
    let kind = gateway_with(|s| s.kill_switch.cluster_subnets = Some(vec!["10.96.0.0/12".into()]));
    assert_eq!(validate(&kind, Some(&wireguard_secret())), Ok(()));
}

#[test]
fn validate_rejects_unusable_key_values_without_echoing_them() {
    let s = secret(&[("privateKey", "k"), ("addresses", "not-an-address")]);
    let err = validate(&gateway(), Some(&s)).expect_err("bad addresses");
    assert_eq!(err.reason, "SecretKeyInvalid");
    assert!(!err.message.contains("not-an-address"), "{}", err.message);

    let custom = custom_gateway();
    let err = validate(&custom, Some(&wireguard_secret())).expect_err("custom keys");
    assert_eq!(err.reason, "SecretKeyMissing");
    assert!(err.message.contains("publicKey"), "{}", err.message);
    let full = secret(&[
        ("privateKey", "k"),
        ("addresses", "10.64.0.2/32"),
        ("publicKey", "p"),
    ]);
    assert_eq!(validate(&custom, Some(&full)), Ok(()));
    for endpoint in [
        None,
        Some(Endpoint {
            ip: "203.0.113.7".into(),
            port: 70000,
        }),
        Some(Endpoint {
            ip: "example.org".into(),
            port: 51820,
        }),
    ] {
        let mut gw = custom.clone();
        gw.spec.endpoint = endpoint;
        let err = validate(&gw, Some(&full)).expect_err("endpoint");
        assert_eq!(err.reason, "EndpointInvalid");
    }
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
fn resolution_hash_follows_spec_and_secret_version_never_its_data() {
    let versioned = |uid: &str, rv: &str, pairs: &[(&str, &str)]| {
        let mut s = secret(pairs);
        s.metadata.uid = Some(uid.into());
        s.metadata.resource_version = Some(rv.into());
        s
    };
    let one = versioned(
        "u-1",
        "100",
        &[("privateKey", "a2V5"), ("addresses", "10.64.0.2/32")],
    );
    let base = resolution_hash(&gateway(), &one);
    assert_eq!(base.len(), 16);
    assert!(base.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(base, resolution_hash(&gateway(), &one));

    // Same data, another version (written again) or another Secret: rolls.
    let rewritten = versioned(
        "u-1",
        "101",
        &[("privateKey", "a2V5"), ("addresses", "10.64.0.2/32")],
    );
    assert_ne!(base, resolution_hash(&gateway(), &rewritten));
    let recreated = versioned(
        "u-2",
        "100",
        &[("privateKey", "a2V5"), ("addresses", "10.64.0.2/32")],
    );
    assert_ne!(base, resolution_hash(&gateway(), &recreated));
    let moved = gateway_with(|s| s.servers = None);
    assert_ne!(base, resolution_hash(&moved, &one));
    // The data is not an input: guessing a key against the hash is useless.
    let other_data = versioned(
        "u-1",
        "100",
        &[("privateKey", "b3RoZXI="), ("addresses", "10.1.0.2/32")],
    );
    assert_eq!(base, resolution_hash(&gateway(), &other_data));
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

/// Any subnet, public or private (the renderer must refuse the public
/// ones whatever the API server let through).
fn subnet() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => (any::<u32>(), 0u8..=32).prop_map(|(a, p)| format!("{}/{p}", Ipv4Addr::from(a))),
        3 => (prop::sample::select(vec![10u32 << 24, (172 << 24) | (16 << 16), (192 << 24) | (168 << 16), (100 << 24) | (64 << 16)]), any::<u16>(), 16u8..=32)
            .prop_map(|(base, low, p)| format!("{}/{p}", Ipv4Addr::from(base | u32::from(low)))),
        1 => (any::<u128>(), 0u8..=128).prop_map(|(a, p)| format!("{}/{p}", Ipv6Addr::from(a))),
        1 => (any::<u64>(), 48u8..=128).prop_map(|(a, p)| format!("{}/{p}", Ipv6Addr::from((0xfd00u128 << 112) | u128::from(a)))),
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
        endpoint in prop::option::of((any::<u32>(), 0i32..=70000)),
    ) -> VpnGatewaySpec {
        VpnGatewaySpec {
            provider,
            vpn_type: if openvpn { VpnType::Openvpn } else { VpnType::Wireguard },
            credentials_secret_ref: SecretRef { name: "creds".into() },
            endpoint: endpoint.map(|(ip, port)| Endpoint { ip: Ipv4Addr::from(ip).to_string(), port }),
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

/// Whether `s` may stay outside the tunnel of a `provider` gateway: a
/// private CIDR outside the provider's tunnel range.
fn may_bypass(s: &str, provider: Provider) -> bool {
    Cidr::parse(s).is_some_and(|c| {
        !c.is_public()
            && !provider_tunnel_ranges(provider)
                .iter()
                .filter_map(|r| Cidr::parse(r))
                .any(|r| r.overlaps(&c))
    })
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
        prop_assert!(ensure_sidecar(qbittorrent(), &d).is_ok());

        // The firewall is never off; its own servers only on loopback.
        prop_assert_eq!(
            value(&g, "FIREWALL_ENABLED_DISABLING_IT_SHOOTS_YOU_IN_YOUR_FOOT"),
            Some("on".to_string())
        );
        for (name, e) in env(&g) {
            prop_assert!(e.value.as_deref() != Some("off"), "{} is off", name);
        }
        prop_assert_eq!(value(&g, "HEALTH_SERVER_ADDRESS"), Some("127.0.0.1:9999".to_string()));
        if with_gateway {
            prop_assert_eq!(value(&g, "HTTP_CONTROL_SERVER_ADDRESS"), Some("127.0.0.1:8000".to_string()));
        }
        let input = list(value(&g, "FIREWALL_INPUT_PORTS"));
        prop_assert!(!input.contains(&"9999".to_string()) || gw.spec.input_ports.contains(&9999));
        prop_assert!(!input.contains(&"8000".to_string()) || gw.spec.input_ports.contains(&8000));

        // qBittorrent is bound to the tunnel, with or without a gateway.
        let inits = pod(&d).init_containers.unwrap_or_default();
        prop_assert_eq!(inits.get(1).map(|c| c.name.as_str()), Some(CONFIG_CONTAINER));

        // What bypasses the tunnel: only private ranges outside the
        // provider's tunnel range, and all of the cluster's and the
        // allowed ones when open.
        let outbound = list(value(&g, "FIREWALL_OUTBOUND_SUBNETS"));
        let provider = gw.spec.provider;
        let bypass_ok = |s: &String| may_bypass(s, provider);
        for s in &outbound {
            prop_assert!(Cidr::parse(s).is_some_and(|c| !c.is_public()), "{} bypasses the tunnel", s);
        }
        let cluster_in_effect = match gw.spec.kill_switch.cluster_subnets.clone() {
            Some(own) if with_gateway => own,
            _ => discovered.clone(),
        };
        for s in &gw.spec.kill_switch.allowed_subnets {
            let also_cluster = cluster_in_effect.iter().any(|c| canonical(c) == canonical(s));
            if with_gateway && !bypass_ok(s) && !also_cluster {
                prop_assert!(!outbound.contains(&canonical(s)), "{} bypasses the tunnel", s);
            }
        }
        let cluster = match gw.spec.kill_switch.cluster_subnets.clone() {
            Some(own) if with_gateway => own,
            _ => discovered.clone(),
        };
        let allowed = if with_gateway { gw.spec.kill_switch.allowed_subnets.clone() } else { vec![] };
        let private = |s: &String| Cidr::parse(s).is_some_and(|c| !c.is_public());
        let all_usable = cluster.iter().all(private) && allowed.iter().all(bypass_ok);
        let endpoint_ok = provider != Provider::Custom || custom_endpoint(&gw).is_some();
        let open = kind == 0 && !cluster.is_empty() && all_usable && endpoint_ok;
        if open {
            for s in cluster.iter().chain(&allowed) {
                prop_assert!(outbound.contains(&canonical(s)), "{} missing from {:?}", s, outbound);
            }
        }

        // No credential is a literal value.
        for (name, e) in env(&g) {
            if (name.starts_with("WIREGUARD_") && !name.starts_with("WIREGUARD_ENDPOINT_"))
                || name.starts_with("OPENVPN_USER") || name.starts_with("OPENVPN_PASSWORD")
            {
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

        // Unavailable, or anything unusable: 0 replicas.
        if open {
            prop_assert_eq!(replicas(&d), Some(1));
            prop_assert!(annotations(&d).contains_key(HASH_ANNOTATION));
        } else {
            prop_assert_eq!(replicas(&d), Some(0));
            prop_assert!(annotations(&d).contains_key(BLOCKED_ANNOTATION));
        }

        // Deterministic and idempotent.
        let mut again = d.clone();
        inject(&parent(), qbittorrent(), &mut again, &res, &discovered, false).expect("inject");
        prop_assert_eq!(yaml(&again), yaml(&d));

        // The policy: every `except` lies strictly inside its block; the
        // transport is UDP to one known port (or nothing); no IPv6 block
        // to the internet; everything else is DNS or a usable subnet.
        let np = policy(&res, &discovered);
        let egress = np.spec.and_then(|s| s.egress).unwrap_or_default();
        if !open {
            prop_assert!(egress.is_empty());
        }
        for rule in egress {
            for peer in rule.to.clone().unwrap_or_default() {
                if let Some(block) = peer.ip_block {
                    let outer = Cidr::parse(&block.cidr).expect("cidr");
                    prop_assert!(block.cidr != "::/0", "IPv6 to the internet");
                    for e in block.except.clone().unwrap_or_default() {
                        let inner = Cidr::parse(&e).expect("except cidr");
                        prop_assert!(outer.contains(&inner) && outer != inner, "{} in {}", e, block.cidr);
                    }
                    if outer.is_public() {
                        // Only the tunnel transport reaches public addresses.
                        let ports = rule.ports.clone().unwrap_or_default();
                        prop_assert!(!ports.is_empty());
                        for p in ports {
                            prop_assert_eq!(p.protocol.as_deref(), Some("UDP"));
                            prop_assert!(p.port.is_some() && p.end_port.is_none());
                        }
                        if provider == Provider::Custom {
                            prop_assert_eq!(outer.prefix(), if outer.is_ipv4() { 32 } else { 128 });
                        }
                    }
                }
            }
        }
    }

    /// Render-level fail closed: a stack whose qBittorrent has no `vpn`
    /// (as an object stored before the CRD's rule would) renders nothing;
    /// with one, the qBittorrent Deployment always has the sidecar.
    #[test]
    fn a_vpn_only_app_is_never_rendered_without_its_sidecar(
        with_vpn in any::<bool>(),
        gateway_known in any::<bool>(),
        monitoring in any::<bool>(),
    ) {
        let mut stack = crate::render::fixtures::stack();
        stack.spec.monitoring.enabled = monitoring;
        let q = stack.spec.apps.qbittorrent.as_mut().expect("example has qBittorrent");
        if !with_vpn {
            q.vpn = None;
        }
        let mut inp = inputs();
        if !gateway_known {
            inp.vpn.clear();
        }
        match crate::render::stack::render(&stack, &parent(), &inp) {
            Err(crate::render::RenderError::VpnRequired { app }) => {
                prop_assert!(!with_vpn);
                prop_assert_eq!(app.as_str(), "qbittorrent");
            }
            Err(other) => prop_assert!(false, "unexpected error {}", other),
            Ok(rendered) => {
                prop_assert!(with_vpn, "rendered qBittorrent without vpn");
                let d = rendered
                    .children
                    .iter()
                    .find(|c| c.key() == "Deployment/home-qbittorrent")
                    .expect("qBittorrent Deployment");
                let d: Deployment = serde_json::from_value(serde_json::to_value(&d.object).expect("json")).expect("deployment");
                let g = gluetun(&d);
                prop_assert_eq!(g.name.as_str(), "gluetun");
                let inits: Vec<String> = pod(&d).init_containers.unwrap_or_default().into_iter().map(|c| c.name).collect();
                prop_assert_eq!(inits.get(1).map(String::as_str), Some(CONFIG_CONTAINER));
                // The exporter's login: the bypass exactly when monitoring is on.
                let settings = env(&config_step(&d)).get("QBT_SETTINGS").and_then(|e| e.value.clone()).unwrap_or_default();
                prop_assert_eq!(settings.contains("WebUI\\LocalHostAuth\tfalse"), monitoring);
            }
        }
    }
}

/// A vector computed independently (Python's `hashlib.pbkdf2_hmac("sha512",
/// b"adminadmin", bytes(range(16)), 100000, 64)`, base64 of salt and key
/// joined by `:`), the form qBittorrent stores after `@ByteArray(`.
#[test]
fn webui_password_hash_is_qbittorrents_pbkdf2_form() {
    let salt: Vec<u8> = (0u8..16).collect();
    assert_eq!(salt.len(), crate::render::vpn::SALT_LEN);
    assert_eq!(
        crate::render::vpn::password_pbkdf2(b"adminadmin", &salt),
        "AAECAwQFBgcICQoLDA0ODw==:UC4grCR8uxnR4Gzyoule02IP9X8mRb7SaEfCylvs19kyzc76Vdb/0xQlSKu43sz2Dl4vz2SIZymUO3PvTxIfVQ=="
    );
    // Another password, another key.
    assert_ne!(
        crate::render::vpn::password_pbkdf2(b"adminadmim", &salt),
        crate::render::vpn::password_pbkdf2(b"adminadmin", &salt)
    );
}

#[test]
fn the_config_step_takes_the_webui_login_from_its_secret() {
    let d = injected(&ready(), &cluster());
    let step = config_step(&d);
    let env = step.env.clone().unwrap_or_default();
    let from_secret = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value_from.as_ref())
            .and_then(|v| v.secret_key_ref.clone())
            .unwrap_or_else(|| panic!("{name} from a Secret"))
    };
    let hash = from_secret("QBT_WEBUI_PBKDF2");
    assert_eq!(hash.name, "home-qbittorrent-webui");
    assert_eq!(hash.key, crate::render::vpn::PBKDF2_KEY);
    assert_eq!(hash.optional, Some(false));
    assert_eq!(from_secret("QBT_WEBUI_USERNAME").key, "username");
    assert_eq!(from_secret("QBT_WEBUI_KEEP").optional, Some(true));

    let users = "[Preferences]\nWebUI\\Port=8080\nWebUI\\Username=me\n\
         WebUI\\Password_PBKDF2=\"@ByteArray(b2xk:b2xk)\"\n";
    let ours = "WebUI\\Password_PBKDF2=\"@ByteArray(c2FsdA==:a2V5)\"";
    for shell in shells() {
        let login = [
            ("QBT_WEBUI_USERNAME", "admin"),
            ("QBT_WEBUI_PBKDF2", "c2FsdA==:a2V5"),
        ];
        // Fresh volume and the user's file: the Secret's login is written.
        for conf in [None, Some(users)] {
            let out = run_config_step_env(conf, false, &login, &shell);
            assert!(out.contains(ours), "{shell:?}: {out}");
            assert!(out.contains("WebUI\\Username=admin\n"), "{shell:?}: {out}");
            assert_eq!(out.matches("Password_PBKDF2").count(), 1, "{out}");
        }
        // keepExisting: the user's login stays; a missing one is written.
        let keep = [login[0], login[1], ("QBT_WEBUI_KEEP", "true")];
        let out = run_config_step_env(Some(users), false, &keep, &shell);
        assert!(out.contains("@ByteArray(b2xk:b2xk)"), "{out}");
        assert!(out.contains("WebUI\\Username=me\n"), "{out}");
        assert!(!out.contains(ours), "{out}");
        let out = run_config_step_env(None, false, &keep, &shell);
        assert!(out.contains(ours), "{out}");
        // A value that would break the file is refused.
        let bad = [("QBT_WEBUI_USERNAME", "a\nb"), login[1]];
        let dir = std::env::temp_dir().join(format!("qbt-bad-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("config/qBittorrent")).expect("dir");
        let script =
            qbittorrent::script().replace("/config", dir.join("config").to_str().expect("utf-8"));
        let status = std::process::Command::new(shell[0])
            .args(&shell[1..])
            .arg("-c")
            .arg(&script)
            .env("QBT_SETTINGS", qbittorrent::settings_for_test(false))
            .envs(bad.iter().copied())
            .status()
            .expect("run");
        std::fs::remove_dir_all(&dir).ok();
        assert!(!status.success(), "{shell:?}");
    }
}

fn operator_peer() -> crate::render::OperatorPeer {
    crate::render::OperatorPeer {
        namespace: "mediastack-system".into(),
        pod_labels: [
            ("app.kubernetes.io/name", "mediastack-operator"),
            ("app.kubernetes.io/instance", "mediastack-operator"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    }
}

fn as_policy(child: crate::render::Child) -> NetworkPolicy {
    serde_json::from_value(serde_json::to_value(&child.object).expect("json")).expect("policy")
}

#[test]
fn network_policy_admits_the_operators_pods_to_the_web_ui_port_only() {
    let op = operator_peer();
    let with = as_policy(
        network_policy(&parent(), qbittorrent(), &ready(), &cluster(), Some(&op)).expect("policy"),
    );
    let without = policy(&ready(), &cluster());
    let ingress = with.spec.clone().and_then(|s| s.ingress).expect("ingress");
    let before = without
        .spec
        .clone()
        .and_then(|s| s.ingress)
        .expect("ingress");
    assert_eq!(ingress.len(), before.len(), "no rule added, one peer added");

    // The web UI rule: the namespace's pods, the allowed subnets, and now
    // the operator's pods in its own namespace.
    let web = &ingress[0];
    assert_eq!(
        web.ports.as_ref().expect("ports")[0].port,
        Some(IntOrString::Int(8080))
    );
    let from = web.from.as_ref().expect("from");
    let old_from = before[0].from.as_ref().expect("from");
    assert_eq!(
        &from[..old_from.len()],
        &old_from[..],
        "the others unchanged"
    );
    assert_eq!(from.len(), old_from.len() + 1);
    let peer = from.last().expect("peer");
    assert_eq!(
        peer.namespace_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone()),
        Some(
            [(
                "kubernetes.io/metadata.name".to_string(),
                "mediastack-system".to_string()
            )]
            .into()
        )
    );
    assert_eq!(
        peer.pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone()),
        Some(op.pod_labels.clone())
    );
    assert!(peer.ip_block.is_none());
    // The exporter rule is as before (open to every namespace anyway).
    assert_eq!(ingress[1], before[1]);
    // Egress is untouched.
    assert_eq!(
        with.spec.and_then(|s| s.egress),
        without.spec.and_then(|s| s.egress)
    );

    // Fail closed admits nothing, operator or not.
    let closed = as_policy(
        network_policy(
            &parent(),
            qbittorrent(),
            &unavailable(Some(gateway()), reason::SECRET_NOT_FOUND),
            &cluster(),
            Some(&op),
        )
        .expect("policy"),
    );
    let spec = closed.spec.expect("spec");
    assert_eq!(spec.ingress, Some(Vec::new()));
    assert_eq!(spec.egress, Some(Vec::new()));
}
