//! The kill switch against a real API server: the CRD's admission rules for
//! what may bypass the tunnel, `TunnelReady` from the consumer pods'
//! gluetun readiness, and no Secret value anywhere outside a Secret.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use mediastack_e2e::stack::{example, ready_example_stack, wait_condition, wait_event};
use mediastack_e2e::{Operator, TIMEOUT, TestNamespace, api_message, kubectl, wait_for};
use mediastack_operator::api::{MediaStack, VpnGateway};
use serde_json::{Value, json};

fn gateway(name: &str, spec: Value) -> VpnGateway {
    serde_json::from_value(json!({
        "apiVersion": "mediastack.io/v1alpha1",
        "kind": "VpnGateway",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("a VpnGateway")
}

/// Creates the gateway with a server-side dry run: every schema and CEL
/// rule runs, nothing is stored.
async fn admit(api: &Api<VpnGateway>, spec: Value) -> Result<(), String> {
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    api.create(&params, &gateway("probe", spec))
        .await
        .map(|_| ())
        .map_err(|e| api_message(&e))
}

fn mullvad(kill_switch: Value) -> Value {
    json!({"provider": "mullvad", "credentialsSecretRef": {"name": "k"}, "killSwitch": kill_switch})
}

#[tokio::test(flavor = "multi_thread")]
async fn admission_lets_only_private_ranges_bypass_the_tunnel() {
    let ns = TestNamespace::new("ksadmit").await;
    let api: Api<VpnGateway> = ns.api();
    let private = "must lie inside a private range";
    let mullvad_range = "must not overlap Mullvad's tunnel range 10.64.0.0/10";
    let bad: Vec<(Value, &str, &str)> = vec![
        // Public ranges, IPv4 and IPv6, and ranges wider than a private one.
        (
            mullvad(json!({"allowedSubnets": ["1.0.0.0/8"]})),
            "killSwitch.allowedSubnets",
            private,
        ),
        (
            mullvad(json!({"allowedSubnets": ["8.8.8.0/24"]})),
            "killSwitch.allowedSubnets",
            private,
        ),
        (
            mullvad(json!({"allowedSubnets": ["0.0.0.0/0"]})),
            "killSwitch.allowedSubnets",
            private,
        ),
        (
            mullvad(json!({"allowedSubnets": ["2000::/8"]})),
            "killSwitch.allowedSubnets",
            private,
        ),
        (
            mullvad(json!({"allowedSubnets": ["::/0"]})),
            "killSwitch.allowedSubnets",
            private,
        ),
        (
            mullvad(json!({"allowedSubnets": ["10.0.0.0/7"]})),
            "killSwitch.allowedSubnets",
            private,
        ),
        (
            mullvad(json!({"allowedSubnets": ["172.32.0.0/16"]})),
            "killSwitch.allowedSubnets",
            private,
        ),
        (
            mullvad(json!({"allowedSubnets": ["100.128.0.0/16"]})),
            "killSwitch.allowedSubnets",
            private,
        ),
        (
            mullvad(json!({"allowedSubnets": ["fc00::/6"]})),
            "killSwitch.allowedSubnets",
            private,
        ),
        (
            mullvad(json!({"allowedSubnets": ["192.168.1.0/24", "203.0.113.0/24"]})),
            "killSwitch.allowedSubnets",
            private,
        ),
        (
            mullvad(json!({"clusterSubnets": ["8.8.0.0/16"]})),
            "killSwitch.clusterSubnets",
            private,
        ),
        (
            mullvad(json!({"clusterSubnets": ["2001:db8::/32"]})),
            "killSwitch.clusterSubnets",
            private,
        ),
        // Mullvad's own tunnel range.
        (
            mullvad(json!({"allowedSubnets": ["10.64.0.0/16"]})),
            "killSwitch.allowedSubnets",
            mullvad_range,
        ),
        (
            mullvad(json!({"allowedSubnets": ["10.0.0.0/8"]})),
            "killSwitch.allowedSubnets",
            mullvad_range,
        ),
        (
            mullvad(json!({"allowedSubnets": ["fc00:bbbb::/32"]})),
            "killSwitch.allowedSubnets",
            mullvad_range,
        ),
        // The custom server's endpoint: required there, only there, valid.
        (
            json!({"provider": "custom", "credentialsSecretRef": {"name": "k"}}),
            "endpoint",
            "is required with provider custom",
        ),
        (
            json!({"provider": "nordvpn", "credentialsSecretRef": {"name": "k"},
                   "endpoint": {"ip": "203.0.113.7", "port": 51820}}),
            "endpoint",
            "only for provider custom",
        ),
        (
            json!({"provider": "custom", "credentialsSecretRef": {"name": "k"},
                   "endpoint": {"ip": "vpn.example.org", "port": 51820}}),
            "endpoint.ip",
            "must be an IP address",
        ),
        (
            json!({"provider": "custom", "credentialsSecretRef": {"name": "k"},
                   "endpoint": {"ip": "203.0.113.7", "port": 70000}}),
            "endpoint.port",
            "65535",
        ),
    ];
    for (spec, field, why) in bad {
        let err = admit(&api, spec.clone())
            .await
            .expect_err(&format!("refused: {spec}"));
        assert!(
            err.contains(field) && err.contains(why),
            "{spec}: the message names {field} and says {why:?}: {err}"
        );
    }

    let good = vec![
        mullvad(json!({
            "allowedSubnets": ["192.168.1.0/24", "172.16.5.0/24", "100.64.0.0/16", "169.254.0.0/16", "fd00:1::/64", "fe80::/10"],
            // kubeadm's / kind's service range lies inside 10.64.0.0/10:
            // fine as a cluster range (checked against the real address).
            "clusterSubnets": ["10.96.0.0/12", "10.244.0.0/16", "fd00:10:96::/112"],
        })),
        json!({"provider": "nordvpn", "credentialsSecretRef": {"name": "k"},
               "killSwitch": {"allowedSubnets": ["10.64.0.0/16", "10.0.0.0/8", "fc00::/7"]}}),
        json!({"provider": "custom", "credentialsSecretRef": {"name": "k"},
               "endpoint": {"ip": "203.0.113.7", "port": 51820}}),
        json!({"provider": "custom", "credentialsSecretRef": {"name": "k"},
               "endpoint": {"ip": "2001:db8::7", "port": 443}}),
    ];
    for spec in good {
        admit(&api, spec.clone())
            .await
            .unwrap_or_else(|e| panic!("accepted: {spec}: {e}"));
    }
}

async fn replicas(deployments: &Api<Deployment>) -> Option<i32> {
    deployments
        .get("home-qbittorrent")
        .await
        .ok()
        .and_then(|d| d.spec.replicas)
}

#[tokio::test(flavor = "multi_thread")]
async fn tunnel_ready_follows_the_consumer_pods_gluetun_readiness() {
    let (ns, _op, _) = ready_example_stack("kstunnel").await;
    // KWOK reports every container ready, gluetun included.
    let gw = wait_condition::<VpnGateway>(&ns, "mullvad", "TunnelReady", "True", Some("Connected"))
        .await;
    assert_eq!(
        gw.status.map(|s| s.consumers),
        Some(vec!["home/qbittorrent".to_string()])
    );
    let table = kubectl(&["-n", &ns.name, "get", "vpngateway", "mullvad"])
        .await
        .expect("kubectl get");
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let at = header
        .iter()
        .position(|h| *h == "TUNNEL")
        .unwrap_or_else(|| panic!("a TUNNEL column: {table}"));
    assert_eq!(row.get(at), Some(&"True"), "{table}");

    // gluetun's readiness drops (its health check fails: the tunnel is
    // down), as the kubelet reports it.
    let pods: Api<Pod> = ns.api();
    let consumer = pods
        .list(&ListParams::default().labels("mediastack.io/vpn-consumer=true"))
        .await
        .expect("pods")
        .items
        .into_iter()
        .next()
        .expect("the qBittorrent pod");
    let name = consumer.metadata.name.clone().expect("name");
    let mut statuses = consumer
        .status
        .and_then(|s| s.init_container_statuses)
        .unwrap_or_default();
    for s in &mut statuses {
        if s.name == "gluetun" {
            s.ready = false;
        }
    }
    pods.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"initContainerStatuses": statuses}})),
    )
    .await
    .expect("gluetun not ready");
    let gw =
        wait_condition::<VpnGateway>(&ns, "mullvad", "TunnelReady", "False", Some("NotConnected"))
            .await;
    let message = mediastack_e2e::stack::condition(&gw, "TunnelReady")
        .map(|c| c.2)
        .unwrap_or_default();
    assert!(message.contains(&name), "{message}");
    // Ready still says the spec and the Secret are fine: the two differ.
    assert_eq!(
        mediastack_e2e::stack::condition(&gw, "Ready").map(|c| c.0),
        Some("True".to_string())
    );

    // No Secret: the consumer is held at 0 replicas, so no tunnel at all.
    let secrets: Api<Secret> = ns.api();
    secrets
        .delete("mullvad-wireguard", &DeleteParams::default())
        .await
        .expect("delete secret");
    let deployments: Api<Deployment> = ns.api();
    wait_for("qBittorrent at 0 replicas", TIMEOUT, || async {
        Ok(replicas(&deployments).await == Some(0))
    })
    .await
    .expect("fail closed");
    wait_condition::<VpnGateway>(
        &ns,
        "mullvad",
        "TunnelReady",
        "False",
        Some("NoConsumerPods"),
    )
    .await;
}

/// Every window of `n` characters of `value`.
fn windows(value: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() < n {
        return vec![value.to_string()];
    }
    chars.windows(n).map(|w| w.iter().collect()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_value_leaves_a_secret() {
    let ns = TestNamespace::new("ksleak").await;
    // A local process, so its log can be read (also on kind).
    let op = Operator::start_local(&ns, &[]).await;
    let values = [
        ("privateKey", "yP4r9vQk2LmN8sT1wX6zA3bC5dE7fG0hJuKiOlMnPq8="),
        ("addresses", "10.71.33.77/32"),
        ("presharedKey", "Qm9vUHNrLTk4NzY1NDMyMTAtcHJlc2hhcmVkWlo="),
    ];
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "mullvad-wireguard"},
        "stringData": values.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    }))
    .expect("secret");
    let secrets: Api<Secret> = ns.api();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    ns.apply_yaml(&example("examples/vpngateway.yaml"), "e2e")
        .await
        .expect("gateway");
    ns.apply_yaml(&example("examples/mediastack.yaml"), "e2e")
        .await
        .expect("stack");
    wait_condition::<MediaStack>(&ns, "home", "Ready", "True", None).await;
    wait_condition::<VpnGateway>(&ns, "mullvad", "Ready", "True", None).await;

    // Statuses and events about the tunnel address: a cluster range that
    // contains it.
    let gateways: Api<VpnGateway> = ns.api();
    let patch = json!({"apiVersion": "mediastack.io/v1alpha1", "kind": "VpnGateway",
        "spec": {"killSwitch": {"clusterSubnets": ["10.71.0.0/16"]}}});
    gateways
        .patch(
            "mullvad",
            &PatchParams::apply("e2e-leak").force(),
            &Patch::Apply(&patch),
        )
        .await
        .expect("patch gateway");
    wait_condition::<VpnGateway>(
        &ns,
        "mullvad",
        "Ready",
        "False",
        Some("SubnetOverlapsTunnel"),
    )
    .await;
    wait_event(&ns, "SubnetOverlapsTunnel", "10.71.0.0/16").await;
    let deployments: Api<Deployment> = ns.api();
    wait_for("qBittorrent closed", TIMEOUT, || async {
        Ok(replicas(&deployments).await == Some(0))
    })
    .await
    .expect("closed");

    // Everything but Secrets: every listable namespaced kind, the
    // operator's cluster-scoped objects, the namespace, the log.
    let kinds = kubectl(&[
        "api-resources",
        "--verbs=list",
        "--namespaced",
        "-o",
        "name",
    ])
    .await
    .expect("api-resources");
    let mut haystacks: Vec<(String, String)> = Vec::new();
    for kind in kinds.lines().map(str::trim).filter(|k| !k.is_empty()) {
        if kind == "secrets" {
            continue;
        }
        let text = kubectl(&["-n", &ns.name, "get", kind, "-o", "json"])
            .await
            .unwrap_or_else(|e| panic!("get {kind}: {e}"));
        haystacks.push((kind.to_string(), text));
    }
    for extra in [
        vec![
            "get",
            "clusterroles,clusterrolebindings",
            "-l",
            "app.kubernetes.io/managed-by=mediastack-operator",
            "-o",
            "json",
        ],
        vec!["get", "namespace", ns.name.as_str(), "-o", "json"],
    ] {
        let text = kubectl(&extra).await.expect("cluster objects");
        haystacks.push((extra.join(" "), text));
    }
    let log_path = op.log_path.clone().expect("a local operator has a log");
    let log = std::fs::read_to_string(&log_path).expect("operator log");
    assert!(
        log.contains("SubnetOverlapsTunnel") || log.lines().count() > 3,
        "the log has content: {log}"
    );
    haystacks.push(("operator log".into(), log));
    // The run above produced the objects the check is about.
    let all: String = haystacks.iter().map(|(_, t)| t.as_str()).collect();
    for expected in [
        "home-qbittorrent",
        "SubnetOverlapsTunnel",
        "mediastack.io/vpn-hash",
    ] {
        assert!(all.contains(expected), "{expected} was rendered/reported");
    }

    for (key, value) in values {
        for needle in windows(value, 8) {
            for (what, text) in &haystacks {
                assert!(
                    !text.contains(&needle),
                    "{needle:?} of Secret key {key} appears in {what}"
                );
            }
        }
    }
}
