//! The gluetun native sidecar, the kill switch and failing closed, against a
//! real API server.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use mediastack_e2e::stack::{WIREGUARD_SECRET, ready_example_stack, wait_condition, wait_event};
use mediastack_e2e::{TIMEOUT, wait_for};
use mediastack_operator::api::VpnGateway;
use serde_json::json;

fn env<'a>(c: &'a Container, name: &str) -> Option<&'a k8s_openapi::api::core::v1::EnvVar> {
    c.env.as_ref()?.iter().find(|e| e.name == name)
}

async fn replicas(deployments: &Api<Deployment>) -> Option<i32> {
    deployments
        .get("home-qbittorrent")
        .await
        .ok()
        .and_then(|d| d.spec.replicas)
}

#[tokio::test(flavor = "multi_thread")]
async fn qbittorrent_runs_behind_a_native_gluetun_sidecar_with_the_kill_switch() {
    let (ns, _op, _) = ready_example_stack("vpn").await;
    let deployments: Api<Deployment> = ns.api();
    let d = deployments
        .get("home-qbittorrent")
        .await
        .expect("deployment");
    assert_eq!(
        d.status.as_ref().and_then(|s| s.ready_replicas),
        Some(1),
        "the pod is Ready on the KWOK node"
    );
    let pod = d.spec.template.spec.expect("pod spec");
    let gluetun = pod
        .init_containers
        .as_ref()
        .and_then(|i| i.first())
        .expect("an init container");
    assert_eq!(
        gluetun.name, "gluetun",
        "gluetun is the first init container"
    );
    assert_eq!(
        gluetun.restart_policy.as_deref(),
        Some("Always"),
        "a native sidecar"
    );
    assert!(
        gluetun.startup_probe.is_some()
            && gluetun.liveness_probe.is_some()
            && gluetun.readiness_probe.is_some()
    );
    let outbound = env(gluetun, "FIREWALL_OUTBOUND_SUBNETS")
        .and_then(|e| e.value.clone())
        .unwrap_or_default();
    // Discovered from the Node's podCIDR (allocated by the controller-manager) and the ServiceCIDR.
    for subnet in ["10.244.0.0/24", "10.96.0.0/16", "192.168.1.0/24"] {
        assert!(
            outbound.split(',').any(|s| s == subnet),
            "{subnet} in FIREWALL_OUTBOUND_SUBNETS={outbound}"
        );
    }
    let key = env(gluetun, "WIREGUARD_PRIVATE_KEY").expect("private key env");
    assert!(
        key.value.is_none(),
        "no literal credential in the Deployment"
    );
    let from = key
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("from the Secret");
    assert_eq!(
        (from.name.as_str(), from.key.as_str()),
        ("mullvad-wireguard", "privateKey")
    );
    assert!(pod.containers.iter().any(|c| c.name == "qbittorrent"));
    let policies: Api<NetworkPolicy> = ns.api();
    let policy = policies
        .get("home-qbittorrent-vpn")
        .await
        .expect("NetworkPolicy");
    assert!(
        policy
            .spec
            .and_then(|s| s.policy_types)
            .unwrap_or_default()
            .contains(&"Egress".to_string())
    );

    let gw = wait_condition::<VpnGateway>(&ns, "mullvad", "Ready", "True", None).await;
    let st = gw.status.expect("status");
    assert_eq!(st.consumers, vec!["home/qbittorrent".to_string()]);
    // The layers inside the pod.
    assert_eq!(
        env(gluetun, "HEALTH_SERVER_ADDRESS").and_then(|e| e.value.as_deref()),
        Some("127.0.0.1:9999")
    );
    assert_eq!(
        env(gluetun, "HTTP_CONTROL_SERVER_ADDRESS").and_then(|e| e.value.as_deref()),
        Some("127.0.0.1:8000")
    );
    let inits: Vec<&str> = pod
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(inits.get(1), Some(&"qbittorrent-config"), "{inits:?}");
    let app = pod
        .containers
        .iter()
        .find(|c| c.name == "qbittorrent")
        .expect("app");
    assert!(
        app.liveness_probe
            .as_ref()
            .and_then(|p| p.exec.as_ref())
            .and_then(|e| e.command.as_ref())
            .is_some_and(|c| c.join(" ").contains("127.0.0.1:9999")),
        "qBittorrent's liveness follows gluetun's health"
    );
    assert_eq!(st.port_forwarding.as_deref(), Some("Disabled"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_secret_or_an_overlapping_subnet_fails_closed() {
    let (ns, _op, _) = ready_example_stack("vpnfail").await;
    let deployments: Api<Deployment> = ns.api();
    let secrets: Api<Secret> = ns.api();
    let gateways: Api<VpnGateway> = ns.api();

    secrets
        .delete("mullvad-wireguard", &DeleteParams::default())
        .await
        .expect("delete secret");
    wait_for("qBittorrent at 0 replicas", TIMEOUT, || async {
        Ok(replicas(&deployments).await == Some(0))
    })
    .await
    .expect("fail closed");
    let d = deployments
        .get("home-qbittorrent")
        .await
        .expect("deployment");
    let inits = d
        .spec
        .template
        .spec
        .and_then(|s| s.init_containers)
        .unwrap_or_default();
    assert_eq!(
        inits.first().map(|c| c.name.as_str()),
        Some("gluetun"),
        "the sidecar stays in the template"
    );
    let gw = wait_condition::<VpnGateway>(&ns, "mullvad", "Ready", "False", Some("SecretNotFound"))
        .await;
    assert!(
        mediastack_e2e::stack::condition(&gw, "Ready")
            .is_some_and(|c| c.2.contains("mullvad-wireguard"))
    );
    wait_event(&ns, "SecretNotFound", "held at 0 replicas").await;

    ns.apply_yaml(WIREGUARD_SECRET, "e2e")
        .await
        .expect("restore secret");
    wait_for("qBittorrent back", TIMEOUT, || async {
        Ok(replicas(&deployments).await == Some(1))
    })
    .await
    .expect("restored");
    wait_condition::<VpnGateway>(&ns, "mullvad", "Ready", "True", None).await;

    // The tunnel address 10.64.0.2 inside a cluster range would bypass the
    // tunnel. (An allowed subnet in Mullvad's 10.64.0.0/10 is refused at
    // admission already: tests/killswitch.rs.)
    let patch = json!({"apiVersion": "mediastack.io/v1alpha1", "kind": "VpnGateway",
        "spec": {"killSwitch": {"clusterSubnets": ["10.64.0.0/24", "10.244.0.0/16", "10.96.0.0/16"]}}});
    gateways
        .patch(
            "mullvad",
            &PatchParams::apply("e2e-lan").force(),
            &Patch::Apply(&patch),
        )
        .await
        .expect("patch gateway");
    let gw = wait_condition::<VpnGateway>(
        &ns,
        "mullvad",
        "Ready",
        "False",
        Some("SubnetOverlapsTunnel"),
    )
    .await;
    let msg = mediastack_e2e::stack::condition(&gw, "Ready")
        .map(|c| c.2)
        .unwrap_or_default();
    assert!(
        msg.contains("10.64.0.0/24") && msg.contains("key addresses"),
        "{msg}"
    );
    assert!(
        !msg.contains("10.64.0.2"),
        "the address is not echoed: {msg}"
    );
    wait_for("qBittorrent closed again", TIMEOUT, || async {
        Ok(replicas(&deployments).await == Some(0))
    })
    .await
    .expect("closed");
}

#[tokio::test(flavor = "multi_thread")]
async fn mullvad_port_forwarding_is_reported_unsupported() {
    let (ns, _op, _) = ready_example_stack("vpnpf").await;
    let gateways: Api<VpnGateway> = ns.api();
    let patch = json!({"apiVersion": "mediastack.io/v1alpha1", "kind": "VpnGateway", "spec": {"portForwarding": {"enabled": true}}});
    gateways
        .patch(
            "mullvad",
            &PatchParams::apply("e2e-pf").force(),
            &Patch::Apply(&patch),
        )
        .await
        .expect("patch gateway");
    let gw = wait_condition::<VpnGateway>(
        &ns,
        "mullvad",
        "PortForwarding",
        "False",
        Some("Unsupported"),
    )
    .await;
    assert_eq!(
        gw.status.and_then(|s| s.port_forwarding).as_deref(),
        Some("Unsupported")
    );
    let deployments: Api<Deployment> = ns.api();
    let d = deployments
        .get("home-qbittorrent")
        .await
        .expect("deployment");
    let gluetun = d
        .spec
        .template
        .spec
        .and_then(|s| s.init_containers)
        .and_then(|i| i.into_iter().next())
        .expect("gluetun");
    assert!(
        env(&gluetun, "VPN_PORT_FORWARDING").is_none(),
        "nothing pretends to forward a port"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn new_credentials_roll_qbittorrent_without_waiting_for_a_resync() {
    let ns = mediastack_e2e::TestNamespace::new("vpnroll").await;
    // A resync far away: only the Secret watch can trigger the roll in time.
    let _op = mediastack_e2e::Operator::start_with(&ns, &["--resync-seconds", "600"]).await;
    mediastack_e2e::stack::example_stack(&ns).await;
    wait_condition::<mediastack_operator::api::MediaStack>(&ns, "home", "Ready", "True", None)
        .await;
    let deployments: Api<Deployment> = ns.api();
    let hash = |d: Deployment| {
        d.spec
            .template
            .metadata
            .and_then(|m| m.annotations)
            .and_then(|a| a.get("mediastack.io/vpn-hash").cloned())
    };
    let before = hash(
        deployments
            .get("home-qbittorrent")
            .await
            .expect("deployment"),
    )
    .expect("a VPN hash");
    let secrets: Api<Secret> = ns.api();
    secrets
        .patch(
            "mullvad-wireguard",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"privateKey": "bmV3LWtleQ=="}})),
        )
        .await
        .expect("new key");
    wait_for(
        "the pod template rolls",
        std::time::Duration::from_secs(30),
        || async {
            Ok(hash(deployments.get("home-qbittorrent").await?).is_some_and(|h| h != before))
        },
    )
    .await
    .expect("rolled");
}
