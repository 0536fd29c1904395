//! The CRDs are served, the examples are accepted, bad manifests are
//! rejected at admission with our messages, and the cluster runs pods.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use mediastack_e2e::{TIMEOUT, TestNamespace, client, kubectl, repo_root, wait_for};

const EXAMPLES: [&str; 3] = [
    "examples/mediastack.yaml",
    "examples/vpngateway.yaml",
    "examples/ingressroute.yaml",
];

fn example(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).expect("example exists")
}

#[tokio::test(flavor = "multi_thread")]
async fn crds_are_established_and_documented() {
    let crds: Api<CustomResourceDefinition> = Api::all(client().await);
    for name in [
        "mediastacks.mediastack.io",
        "vpngateways.mediastack.io",
        "ingressroutes.mediastack.io",
    ] {
        wait_for(name, TIMEOUT, || async {
            let crd = crds.get(name).await?;
            Ok(crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True"))
        })
        .await
        .expect("CRD established");
    }
    let explain = kubectl(&["explain", "mediastack.spec"])
        .await
        .expect("kubectl explain");
    assert!(
        explain.contains("The apps of the stack"),
        "kubectl explain shows our field docs:\n{explain}"
    );
    let explain = kubectl(&["explain", "ingressroutes.mediastack.io.spec.host"])
        .await
        .expect("kubectl explain");
    assert!(explain.contains("Full host name"), "{explain}");
    let all = kubectl(&["api-resources", "--categories=media", "-o", "name"])
        .await
        .expect("api-resources");
    for r in [
        "mediastacks.mediastack.io",
        "vpngateways.mediastack.io",
        "ingressroutes.mediastack.io",
    ] {
        assert!(all.contains(r), "category media lists {r}: {all}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn example_manifests_are_accepted_unchanged() {
    let ns = TestNamespace::new("examples").await;
    for path in EXAMPLES {
        let objs = ns
            .apply_yaml(&example(path), "e2e")
            .await
            .unwrap_or_else(|e| panic!("{path} rejected: {e}"));
        assert!(objs.contains("serverside-applied"), "{objs}");
    }
    // Server-side defaults are visible to users.
    let stack = kubectl(&[
        "get",
        "mediastack",
        "home",
        "-n",
        &ns.name,
        "-o",
        "jsonpath={.spec.apps.jellyfin.enabled} {.spec.ingress.traefik.entryPoint}",
    ])
    .await
    .expect("get");
    // `ingress.traefik.managed` has no default: unset means auto.
    assert_eq!(stack.trim(), "true web");
}

/// Each case: a mutation of an example, and the message the API server must answer with.
fn invalid_cases() -> Vec<(&'static str, String, &'static str)> {
    let stack = example("examples/mediastack.yaml");
    let gw = example("examples/vpngateway.yaml");
    let route = example("examples/ingressroute.yaml");
    vec![
        (
            "bad enum",
            gw.replace("provider: mullvad ", "provider: acmevpn "),
            "Unsupported value: \"acmevpn\"",
        ),
        (
            "missing required field",
            gw.replace("  credentialsSecretRef: {name: mullvad-wireguard}", ""),
            "credentialsSecretRef: Required value",
        ),
        (
            "CEL: two data sources",
            stack.replace(
                "data: {hostPath: /srv/data}",
                "data: {hostPath: /srv/data, claimName: data}",
            ),
            "storage.data needs exactly one of hostPath, claimName or size",
        ),
        (
            "CEL: qBittorrent without VPN",
            stack.replace(
                "qbittorrent: {vpn: {gatewayRef: mullvad}}",
                "qbittorrent: {}",
            ),
            "qBittorrent only runs behind a VpnGateway",
        ),
        (
            "CEL: Mullvad with OpenVPN",
            gw.replace("type: wireguard ", "type: openvpn "),
            "Mullvad supports only WireGuard",
        ),
        (
            "CEL: default route bypasses the tunnel",
            gw.replace("[192.168.1.0/24]", "[0.0.0.0/0]"),
            "would bypass the tunnel",
        ),
        (
            "out-of-range number",
            stack.replace("uid: 1000", "uid: 0"),
            "should be greater than or equal to 1",
        ),
        (
            "out-of-range port",
            gw.replace("inputPorts: [8080]", "inputPorts: [70000]"),
            "should be less than or equal to 65535",
        ),
        (
            "malformed host name",
            route.replace("host: ha.lan ", "host: Bad_Host! "),
            "spec.host: Invalid value",
        ),
        (
            "CEL: host and subdomain",
            route.replace("host: ha.lan ", "host: ha.lan\n  subdomain: ha\n  #"),
            "set exactly one of host or subdomain",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_manifests_are_rejected_at_admission() {
    let ns = TestNamespace::new("invalid").await;
    let cases = invalid_cases();
    assert!(cases.len() >= 5);
    for (what, yaml, message) in cases {
        match ns.create_yaml(&yaml).await {
            Ok(_) => panic!("{what}: accepted, but must be rejected:\n{yaml}"),
            Err(e) => {
                let got = e.to_string();
                assert!(
                    got.contains(message),
                    "{what}: expected a message containing {message:?}, got: {got}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_app_names_are_rejected_by_strict_validation() {
    let ns = TestNamespace::new("unknown").await;
    let yaml = example("examples/mediastack.yaml")
        .replace("    dashboard: {}", "    dashboard: {}\n    plex: {}");
    let err = ns.create_yaml(&yaml).await.expect_err("plex is not an app");
    assert!(
        err.to_string().contains("unknown field \"spec.apps.plex\""),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_runs_deployment_and_daemonset_pods() {
    let ns = TestNamespace::new("pods").await;
    let deploy: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "registry.k8s.io/pause:3.10",
                "readinessProbe": {"tcpSocket": {"port": 80}}}]}}}
    }))
    .expect("deployment");
    let ds: DaemonSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {
            "metadata": {"labels": {"app": "agent"}},
            "spec": {"hostNetwork": true, "containers": [{"name": "agent", "image": "registry.k8s.io/pause:3.10"}]}}}
    }))
    .expect("daemonset");
    let deployments: Api<Deployment> = ns.api();
    let daemonsets: Api<DaemonSet> = ns.api();
    deployments
        .create(&PostParams::default(), &deploy)
        .await
        .expect("create deployment");
    daemonsets
        .create(&PostParams::default(), &ds)
        .await
        .expect("create daemonset");
    wait_for("deployment pod ready", TIMEOUT, || async {
        Ok(deployments
            .get("web")
            .await?
            .status
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
            == 1)
    })
    .await
    .expect("deployment ready");
    wait_for("daemonset pod scheduled and ready", TIMEOUT, || async {
        let s = daemonsets.get("agent").await?.status.unwrap_or_default();
        Ok(s.desired_number_scheduled >= 1 && s.number_ready == s.desired_number_scheduled)
    })
    .await
    .expect("daemonset ready");
}
