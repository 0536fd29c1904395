//! Real containers and real packets on the real node (`cluster.sh
//! --real-node`; docs/real-node.md). Every test places its pods on the
//! real node explicitly; traffic is bounded (a few connections, short
//! timeouts) and only ever goes to the test hosts (203.0.113.10,
//! 198.51.100.10, 192.0.2.10) inside the node's own network namespaces.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use mediastack_e2e::realnode::{
    BUSYBOX, INET_ADDR, QBITTORRENT, RealNode, VPN_ADDR, VPN_INET_ADDR, WGCLIENT, create_pod, exec,
    pod_ip, sleeper, wait_ready,
};
use mediastack_e2e::{TestNamespace, kubectl, kubectl_stdin};
use mediastack_operator::api::{MediaStack, MediaStackSpec, VpnGateway};
use mediastack_operator::render::meta::Parent;
use mediastack_operator::render::{Inputs, vpn, workload};
use serde_json::{Value, json};

/// Addresses no pod or node process may have a route to.
const OUTSIDE: [&str; 6] = [
    "1.1.1.1",
    "8.8.8.8",
    "9.9.9.9",
    "100.64.0.1",
    "172.16.0.1",
    "192.168.1.1",
];

/// The routing guard, run before the data-plane tests trust the network:
/// from the node's namespace and from inside a pod, every address outside
/// the test ranges is unreachable (`ip route get`, which sends nothing),
/// while the test hosts are routed.
#[tokio::test(flavor = "multi_thread")]
async fn routing_guard_nothing_can_reach_a_real_address() {
    let Some(node) = RealNode::get() else { return };
    for host in ["node", "inet", "vpn"] {
        let default = node
            .exec_in(host, &["ip", "route", "show", "default"])
            .await
            .expect("ip route");
        assert_eq!(default.trim(), "", "{host}: no default route");
        let default6 = node
            .exec_in(host, &["ip", "-6", "route", "show", "default"])
            .await
            .expect("ip -6 route");
        assert_eq!(default6.trim(), "", "{host}: no IPv6 default route");
    }
    for a in OUTSIDE {
        let r = node.exec_in("node", &["ip", "route", "get", a]).await;
        assert!(r.is_err(), "node: {a} must be unreachable: {r:?}");
    }
    node.exec_in("node", &["ip", "route", "get", INET_ADDR])
        .await
        .expect("the test internet is routed from the node");

    let ns = TestNamespace::new("rn-guard").await;
    create_pod(&ns, "probe", json!({}), sleeper(json!({})))
        .await
        .expect("pod");
    wait_ready(&ns, "probe").await.expect("ready");
    for a in OUTSIDE {
        let r = exec(&ns, "probe", "main", &["ip", "route", "get", a]).await;
        let err = format!("{r:?}");
        assert!(
            r.is_err() && err.contains("unreachable"),
            "pod: {a} must be unreachable: {err}"
        );
    }
    let via = exec(&ns, "probe", "main", &["ip", "route", "get", INET_ADDR])
        .await
        .expect("the test internet is routed from a pod");
    assert!(via.contains("via"), "through the node: {via}");
}

/// A native sidecar (an init container with `restartPolicy: Always`) really
/// starts first: the app container only starts after the sidecar's startup
/// probe passed, and both containers' logs are served by the kubelet.
#[tokio::test(flavor = "multi_thread")]
async fn native_sidecar_starts_before_the_app_and_logs_are_served() {
    let Some(_node) = RealNode::get() else { return };
    let ns = TestNamespace::new("rn-sidecar").await;
    let spec = json!({
        "terminationGracePeriodSeconds": 1,
        "volumes": [{"name": "shared", "emptyDir": {}}],
        "initContainers": [{
            "name": "sidecar", "image": BUSYBOX, "restartPolicy": "Always",
            "command": ["sh", "-c", "echo sidecar starting; sleep 2; touch /shared/up; echo sidecar up; sleep 600"],
            "startupProbe": {"exec": {"command": ["test", "-f", "/shared/up"]}, "periodSeconds": 1, "failureThreshold": 30},
            "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
        }],
        "containers": [{
            "name": "app", "image": BUSYBOX,
            "command": ["sh", "-c", "if test -f /shared/up; then echo app after sidecar; else echo app before sidecar; fi; sleep 600"],
            "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
        }],
    });
    create_pod(&ns, "pod", json!({}), spec).await.expect("pod");
    wait_ready(&ns, "pod").await.expect("ready");
    let app = kubectl(&["logs", "-n", &ns.name, "pod", "-c", "app"])
        .await
        .expect("app logs");
    assert_eq!(app.trim(), "app after sidecar");
    let side = kubectl(&["logs", "-n", &ns.name, "pod", "-c", "sidecar"])
        .await
        .expect("sidecar logs");
    assert_eq!(side.trim(), "sidecar starting\nsidecar up");
}

/// CoreDNS resolves a Service name and kube-proxy carries a connection to
/// its ClusterIP from another pod to the backend.
#[tokio::test(flavor = "multi_thread")]
async fn a_service_answers_another_pod_by_name() {
    let Some(_node) = RealNode::get() else { return };
    let ns = TestNamespace::new("rn-svc").await;
    let token = format!("token-{}", ns.name);
    let server = json!({
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": BUSYBOX,
            "command": ["sh", "-c", format!("mkdir -p /w && echo {token} > /w/t && exec httpd -f -p 8080 -h /w")],
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}],
    });
    create_pod(&ns, "server", json!({"app": "server"}), server)
        .await
        .expect("server");
    kubectl_stdin(
        &["create", "-n", &ns.name, "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "server"}, "ports": [{"port": 80, "targetPort": "http"}]}})
        .to_string(),
    )
    .await
    .expect("service");
    create_pod(&ns, "client", json!({}), sleeper(json!({})))
        .await
        .expect("client");
    wait_ready(&ns, "server").await.expect("server ready");
    wait_ready(&ns, "client").await.expect("client ready");

    let name = format!("web.{}.svc.cluster.local", ns.name);
    let cluster_ip = kubectl(&[
        "get",
        "svc",
        "-n",
        &ns.name,
        "web",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ])
    .await
    .expect("clusterIP");
    let lookup = exec(&ns, "client", "main", &["nslookup", &name])
        .await
        .expect("nslookup");
    assert!(lookup.contains(&cluster_ip), "{lookup}");
    // The Service's endpoints may lag the pod's readiness: a few tries.
    let url = format!("http://web.{}.svc:80/t", ns.name);
    let mut body = String::new();
    for _ in 0..20 {
        if let Ok(b) = exec(
            &ns,
            "client",
            "main",
            &["timeout", "3", "wget", "-q", "-O", "-", &url],
        )
        .await
        {
            body = b;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(body.trim(), token);
}

/// `wget` of `url` from `pod`: Ok(body) or the error, bounded by `timeout`
/// (BusyBox 1.35's own `wget -T` crashes).
async fn fetch(ns: &TestNamespace, pod: &str, url: &str) -> anyhow::Result<String> {
    exec(
        ns,
        pod,
        "main",
        &["timeout", "3", "wget", "-q", "-O", "-", url],
    )
    .await
}

/// NetworkPolicies are enforced for real (kube-router's firewall): an
/// ingress policy lets only the labelled client in, with real TCP
/// connections; the test internet records each pod's own source address.
#[tokio::test(flavor = "multi_thread")]
async fn network_policies_are_enforced_and_test_hosts_tell_sources_apart() {
    let Some(node) = RealNode::get() else { return };
    let ns = TestNamespace::new("rn-netpol").await;
    let server = json!({
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": BUSYBOX,
            "command": ["sh", "-c", "mkdir -p /w && echo ok > /w/t && exec httpd -f -p 8080 -h /w"],
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}],
    });
    create_pod(&ns, "server", json!({"app": "server"}), server)
        .await
        .expect("server");
    for c in ["allowed", "denied"] {
        create_pod(&ns, c, json!({"role": c}), sleeper(json!({})))
            .await
            .expect("client");
    }
    for p in ["server", "allowed", "denied"] {
        wait_ready(&ns, p).await.expect("ready");
    }
    let url = format!("http://{}:8080/t", pod_ip(&ns, "server").await.expect("ip"));
    for c in ["allowed", "denied"] {
        assert_eq!(
            fetch(&ns, c, &url)
                .await
                .expect("open before any policy")
                .trim(),
            "ok"
        );
    }

    // Sources: each client's own pod IP reaches the test internet.
    for c in ["allowed", "denied"] {
        let hello = fetch(&ns, c, &format!("http://{INET_ADDR}/"))
            .await
            .expect("the test internet answers");
        assert_eq!(hello.trim(), format!("hello from {INET_ADDR}"));
        let ip = pod_ip(&ns, c).await.expect("ip");
        assert_eq!(
            node.recorded_from("inet", &ip).len(),
            1,
            "{c} ({ip}) recorded once by the test internet"
        );
    }

    kubectl_stdin(
        &["create", "-n", &ns.name, "-f", "-"],
        &json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "only-allowed"},
            "spec": {"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "allowed"}}}],
                    "ports": [{"port": 8080, "protocol": "TCP"}]}]}})
        .to_string(),
    )
    .await
    .expect("policy");
    // The firewall syncs on policy events; wait until the denied client is cut.
    let mut cut = false;
    for _ in 0..20 {
        if fetch(&ns, "denied", &url).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(cut, "the policy drops the unlabelled client");
    assert_eq!(
        fetch(&ns, "allowed", &url)
            .await
            .expect("the labelled client still gets in")
            .trim(),
        "ok"
    );
}

/// A `custom` WireGuard VpnGateway `testvpn` whose `spec.endpoint` is the
/// test VPN host's UDP echo (198.51.100.10:51821), and its key Secret,
/// resolved as the operator resolves them.
fn custom_gateway(ns: &TestNamespace) -> mediastack_operator::render::VpnResolution {
    let gateway: VpnGateway = serde_json::from_value(json!({
        "apiVersion": "mediastack.io/v1alpha1", "kind": "VpnGateway",
        "metadata": {"name": "testvpn", "namespace": ns.name},
        "spec": {"provider": "custom", "type": "wireguard",
            "credentialsSecretRef": {"name": "testvpn-keys"},
            "endpoint": {"ip": VPN_ADDR, "port": VPN_ECHO_PORT}},
    }))
    .expect("gateway");
    let key = "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE=";
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("testvpn-keys".into()),
            namespace: Some(ns.name.clone()),
            ..Default::default()
        },
        data: Some(
            [
                ("privateKey", key),
                ("addresses", "10.64.0.2/32"),
                ("publicKey", key),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect(),
        ),
        ..Default::default()
    };
    let resolution = vpn::resolve(Some(&gateway), Some(&secret));
    assert!(
        matches!(
            resolution,
            mediastack_operator::render::VpnResolution::Ready { .. }
        ),
        "{resolution:?}"
    );
    resolution
}

/// The test VPN host's UDP echo: the custom gateway's endpoint port.
const VPN_ECHO_PORT: u16 = 51821;
/// A UDP port at the endpoint's address that is not the endpoint.
const OTHER_UDP_PORT: u16 = 9;
/// The cluster ranges the tests render with.
const CLUSTER: [&str; 2] = ["10.244.0.0/16", "10.96.0.0/16"];

/// The kill switch's NetworkPolicy layer alone, as the operator renders it
/// for a `custom` WireGuard gateway with `spec.endpoint`, with real packets
/// from a pod it selects: UDP to the endpoint gets through (the VPN host
/// records it); UDP to the test internet and UDP to another port of the
/// endpoint's address are dropped (the internet records nothing, a capture
/// at the VPN host sees nothing on that port); a TCP connection to the test
/// internet is dropped. Before the policy, the same TCP and UDP get
/// through, so each check can fail.
#[tokio::test(flavor = "multi_thread")]
async fn the_rendered_vpn_policy_lets_only_the_tunnel_transport_out() {
    let Some(node) = RealNode::get() else { return };
    let ns = TestNamespace::new("rn-vpnpol").await;
    let resolution = custom_gateway(&ns);
    let parent = Parent {
        name: "home".into(),
        namespace: ns.name.clone(),
        owner: OwnerReference::default(),
    };
    let app = mediastack_operator::catalog::app("qbittorrent").expect("catalog");
    let cluster = CLUSTER.map(String::from);
    let child = vpn::network_policy(&parent, app, &resolution, &cluster).expect("render");
    let mut policy = serde_json::to_value(&child.object).expect("json");
    // Stand-alone in the test namespace: no owner (it does not exist here).
    policy["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("ownerReferences");
    let selector = policy["spec"]["podSelector"]["matchLabels"].clone();
    assert!(selector.is_object(), "{policy}");

    create_pod(&ns, "consumer", selector, sleeper(json!({})))
        .await
        .expect("pod");
    wait_ready(&ns, "consumer").await.expect("ready");
    let ip = pod_ip(&ns, "consumer").await.expect("ip");
    // Every UDP datagram from the pod that reaches the VPN host (bounded).
    let pcap = node.state.join(format!("{}.pcap", ns.name));
    let pcap_s = pcap.display().to_string();
    let filter = format!("udp and src host {ip}");
    let _capture = node
        .spawn_in(
            "vpn",
            &[
                "timeout", "240", "tcpdump", "-U", "-n", "-i", "any", "-c", "2000", "-w", &pcap_s,
                &filter,
            ],
        )
        .expect("tcpdump");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let to_port = |port: u16| {
        let pcap_s = pcap_s.clone();
        async move {
            let out = tokio::process::Command::new("tcpdump")
                .args(["-n", "-r", &pcap_s, &format!("udp dst port {port}")])
                .output()
                .await
                .expect("tcpdump -r");
            String::from_utf8_lossy(&out.stdout).lines().count()
        }
    };
    // One UDP datagram (BusyBox's nc has no UDP; tftp sends a read
    // request, and retries while nothing answers), bounded to 2 s.
    let udp = |to: &'static str, port: u16| {
        let ns = &ns;
        async move {
            exec(
                ns,
                "consumer",
                "main",
                &[
                    "sh",
                    "-c",
                    &format!("timeout 2 tftp -g -r wg -l /tmp/wg {to} {port}; true"),
                ],
            )
            .await
            .expect("tftp");
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    };
    let inet_udp = || {
        node.recorded_from("inet", &ip)
            .into_iter()
            .filter(|l| l.starts_with("udp "))
            .count()
    };
    // Control: without the policy the pod reaches the internet directly,
    // by TCP and UDP, and the other port at the endpoint's address.
    let hello = fetch(&ns, "consumer", &format!("http://{INET_ADDR}/")).await;
    assert!(hello.is_ok(), "no policy yet: {hello:?}");
    assert_eq!(node.recorded_from("inet", &ip).len(), 1);
    udp(INET_ADDR, 9).await;
    assert!(inet_udp() > 0, "no policy yet: UDP reaches the internet");
    udp(VPN_ADDR, OTHER_UDP_PORT).await;
    let other_before = to_port(OTHER_UDP_PORT).await;
    assert!(
        other_before > 0,
        "no policy yet: the capture sees UDP to port {OTHER_UDP_PORT}"
    );

    kubectl_stdin(
        &["apply", "--server-side", "-n", &ns.name, "-f", "-"],
        &policy.to_string(),
    )
    .await
    .expect("apply policy");
    let mut dropped = false;
    for _ in 0..20 {
        if fetch(&ns, "consumer", &format!("http://{INET_ADDR}/"))
            .await
            .is_err()
        {
            dropped = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(dropped, "the rendered policy drops TCP to the internet");
    let before = node.recorded_from("inet", &ip).len();
    assert!(
        fetch(&ns, "consumer", &format!("http://{INET_ADDR}/"))
            .await
            .is_err()
    );
    let sent_before = node.recorded_from("vpn", &ip).len();
    udp(VPN_ADDR, VPN_ECHO_PORT).await;
    let mut through = false;
    for _ in 0..10 {
        if node.recorded_from("vpn", &ip).len() > sent_before {
            through = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert!(through, "UDP to the WireGuard endpoint gets through");
    udp(INET_ADDR, 9).await;
    udp(VPN_ADDR, OTHER_UDP_PORT).await;
    assert_eq!(
        node.recorded_from("inet", &ip).len(),
        before,
        "nothing from the pod reached the internet, TCP or UDP"
    );
    assert_eq!(
        to_port(OTHER_UDP_PORT).await,
        other_before,
        "UDP to another port of the endpoint's address is dropped"
    );
}

/// The operator's rendered pod for `app` with `storage.data` set to
/// `data`, as a bare pod spec for the real node: the config claim becomes
/// an emptyDir (the cluster's pre-made volumes are not for real pods).
fn rendered_pod(ns: &TestNamespace, app: &str, data: Value, image: Option<&str>) -> Value {
    rendered_pod_behind(ns, app, data, image, None)
}

/// [`rendered_pod`], and with `vpn` the pod as the operator renders it
/// behind that gateway (`vpn::inject`), minus what gluetun brings: its
/// sidecar (gluetun cannot be built here), the app's liveness probe on
/// gluetun's health server and the volumes only gluetun mounts. Every other
/// container, the qBittorrent config step among them, stays as rendered.
fn rendered_pod_behind(
    ns: &TestNamespace,
    app: &str,
    data: Value,
    image: Option<&str>,
    vpn: Option<&mediastack_operator::render::VpnResolution>,
) -> Value {
    let stack: MediaStack = serde_yaml::from_str(
        &std::fs::read_to_string(mediastack_e2e::repo_root().join("examples/mediastack.yaml"))
            .expect("example"),
    )
    .expect("MediaStack");
    let mut spec: MediaStackSpec = stack.spec;
    spec.storage.data = serde_json::from_value(data).expect("data storage");
    let parent = Parent {
        name: "home".into(),
        namespace: ns.name.clone(),
        owner: OwnerReference::default(),
    };
    let facts = mediastack_operator::catalog::app(app).expect("catalog");
    let mut app_spec = spec.apps.get(app).cloned().unwrap_or_default();
    if let Some(i) = image {
        app_spec.image = Some(i.into());
    }
    let mut objs =
        workload::app(&parent, &spec, facts, &app_spec, &Inputs::default()).expect("render");
    if let Some(res) = vpn {
        let cluster = CLUSTER.map(String::from);
        vpn::inject(&parent, facts, &mut objs.deployment, res, &cluster, false).expect("inject");
    }
    let mut pod = serde_json::to_value(objs.deployment.spec.template.spec).expect("pod json");
    if vpn.is_some() {
        pod["initContainers"]
            .as_array_mut()
            .expect("init containers")
            .retain(|c| c["name"] != vpn::CONTAINER_NAME);
        for c in pod["containers"].as_array_mut().expect("containers") {
            c.as_object_mut()
                .expect("container")
                .remove("livenessProbe");
        }
        let mounted: Vec<Value> = ["initContainers", "containers"]
            .iter()
            .flat_map(|k| pod[*k].as_array().cloned().unwrap_or_default())
            .flat_map(|c| c["volumeMounts"].as_array().cloned().unwrap_or_default())
            .map(|m| m["name"].clone())
            .collect();
        pod["volumes"]
            .as_array_mut()
            .expect("volumes")
            .retain(|v| mounted.contains(&v["name"]));
    }
    for v in pod["volumes"].as_array_mut().expect("volumes") {
        if v["name"] == "config" {
            *v = json!({"name": "config", "emptyDir": {}});
        }
    }
    pod["terminationGracePeriodSeconds"] = json!(1);
    pod
}

/// A command as the app's user `abc` (uid PUID 1000, gid PGID 1000, no
/// further groups) in the app container, as the app itself runs.
async fn as_identity(
    ns: &TestNamespace,
    pod: &str,
    c: &str,
    script: &str,
) -> anyhow::Result<String> {
    exec(ns, pod, c, &["su", "-s", "/bin/sh", "abc", "-c", script]).await
}

const WRITE_AND_LINK: &str = "set -e; echo x > /data/torrents/tv/ep.mkv; \
    ln /data/torrents/tv/ep.mkv /data/media/tv/ep.mkv; echo y > /data/media/movies/m.mkv; \
    stat -c '%h %u:%g' /data/media/tv/ep.mkv; stat -c '%u:%g %a' /data/torrents/movies";

/// The data tree with real processes, on a `hostPath` data volume and on a
/// claim: the operator's rendered Sonarr pod (the uid-1000 stand-in image)
/// starts after its `data-tree` init container, the app runs as PUID 1000,
/// and uid 1000 creates, writes and hardlinks under /data/torrents and
/// /data/media. The same pod without the init container cannot write
/// there (the kubelet made the tree root-owned): the defect the init
/// container fixes.
#[tokio::test(flavor = "multi_thread")]
async fn the_data_tree_lets_the_uid_1000_app_write_and_hardlink() {
    let Some(node) = RealNode::get() else { return };
    let ns = TestNamespace::new("rn-data").await;
    let base = node.state.join(format!("data-{}", ns.name));
    std::fs::create_dir_all(&base).expect("data dir");
    let host = base.join("host");
    let claim_dir = base.join("claim");
    std::fs::create_dir_all(&claim_dir).expect("claim dir");
    // A claim bound to a volume of its own on the node.
    let pv = format!("{}-data", ns.name);
    kubectl_stdin(
        &["create", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                "storageClassName": "", "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": claim_dir.display().to_string(), "type": "Directory"}}})
        .to_string(),
    )
    .await
    .expect("pv");
    kubectl_stdin(
        &["create", "-n", &ns.name, "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "media"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv,
                "resources": {"requests": {"storage": "1Gi"}}}})
        .to_string(),
    )
    .await
    .expect("pvc");

    let cases = [
        ("host", json!({"hostPath": host.display().to_string()})),
        ("claim", json!({"claimName": "media"})),
    ];
    for (name, data) in &cases {
        let pod = rendered_pod(&ns, "sonarr", data.clone(), None);
        assert_eq!(pod["initContainers"][0]["name"], "data-tree", "{pod}");
        create_pod(&ns, name, json!({"case": name}), pod)
            .await
            .expect("pod");
    }
    for (name, _) in &cases {
        wait_ready(&ns, name).await.expect("sonarr stand-in Ready");
        let uid = exec(&ns, name, "sonarr", &["stat", "-c", "%u:%g", "/proc/1"])
            .await
            .expect("stat");
        assert_eq!(uid.trim(), "1000:1000", "{name}: the app runs as PUID:PGID");
        let out = as_identity(&ns, name, "sonarr", WRITE_AND_LINK)
            .await
            .unwrap_or_else(|e| panic!("{name}: uid 1000 writes and hardlinks: {e:#}"));
        assert_eq!(out, "2 1000:1000\n1000:1000 2775\n", "{name}");
        let logs = kubectl(&["logs", "-n", &ns.name, name, "-c", "data-tree"])
            .await
            .expect("init logs");
        assert!(logs.contains("created /data/torrents/tv"), "{name}: {logs}");
    }
    // The files are on the node's disk, where the volume says.
    let linked = std::fs::metadata(host.join("media/tv/ep.mkv")).expect("hostPath file");
    assert_eq!(std::os::unix::fs::MetadataExt::nlink(&linked), 2);
    assert!(claim_dir.join("torrents/tv/ep.mkv").is_file());

    // Without the init container: the kubelet's root-owned tree.
    let fresh = base.join("fresh");
    let mut pod = rendered_pod(
        &ns,
        "sonarr",
        json!({"hostPath": fresh.display().to_string()}),
        None,
    );
    pod.as_object_mut().expect("pod").remove("initContainers");
    create_pod(&ns, "without", json!({}), pod)
        .await
        .expect("pod");
    wait_ready(&ns, "without").await.expect("ready");
    exec(
        &ns,
        "without",
        "sonarr",
        &["mkdir", "-p", "/data/torrents/tv", "/data/media/tv"],
    )
    .await
    .expect("root makes the dirs, as the kubelet does");
    let denied = as_identity(&ns, "without", "sonarr", WRITE_AND_LINK).await;
    assert!(
        format!("{denied:?}").contains("Permission denied"),
        "without the data tree uid 1000 cannot write: {denied:?}"
    );
    let _ = kubectl(&["delete", "pv", &pv, "--wait=false"]).await;
}

/// Starts the operator's rendered qBittorrent pod (Debian's qbittorrent-nox
/// behind the linuxserver contract, the stand-in image) on the real node,
/// rendered behind a VpnGateway so its `qbittorrent-config` step runs, with
/// the WebUI login Secret the reconciler would write for `password` and a
/// Service `qbittorrent`; returns once the pod is Ready.
async fn start_qbittorrent(node: &RealNode, ns: &TestNamespace, password: &str) {
    let data = node.state.join(format!("data-{}", ns.name));
    let resolution = custom_gateway(ns);
    let pod = rendered_pod_behind(
        ns,
        "qbittorrent",
        json!({"hostPath": data.display().to_string()}),
        Some(QBITTORRENT),
        Some(&resolution),
    );
    let inits: Vec<&str> = pod["initContainers"]
        .as_array()
        .expect("init containers")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(inits, [vpn::CONFIG_CONTAINER, "data-tree"], "{pod}");
    // The WebUI login Secret the config step reads, as the reconciler writes
    // it (username, password and its PBKDF2 hash): this test renders the pod
    // without the reconciler.
    let secret = vpn::webui_secret_name(
        &Parent {
            name: "home".into(),
            namespace: ns.name.clone(),
            owner: OwnerReference::default(),
        },
        "qbittorrent",
    );
    let mut login = serde_json::Map::new();
    login.insert("username".into(), json!("admin"));
    login.insert("password".into(), json!(password));
    login.insert(
        vpn::PBKDF2_KEY.into(),
        json!(vpn::password_pbkdf2(
            password.as_bytes(),
            &[7u8; vpn::SALT_LEN]
        )),
    );
    kubectl_stdin(
        &["create", "-n", &ns.name, "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret},
            "stringData": login})
        .to_string(),
    )
    .await
    .expect("WebUI login Secret");
    create_pod(ns, "qbittorrent", json!({"app": "qbittorrent"}), pod)
        .await
        .expect("pod");
    kubectl_stdin(
        &["create", "-n", &ns.name, "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "qbittorrent"},
            "spec": {"selector": {"app": "qbittorrent"}, "ports": [{"port": 8080, "targetPort": "http"}]}})
        .to_string(),
    )
    .await
    .expect("service");
    wait_ready(ns, "qbittorrent")
        .await
        .expect("qBittorrent Ready (its probes passed)");
}

/// qBittorrent for real: the operator's rendered pod starts on the real
/// node after its data tree, passes its probes, runs as PUID 1000, and its
/// WebUI answers through its Service from another pod (login and API). The
/// pod is rendered behind a VpnGateway, so its `qbittorrent-config` step
/// runs before the app: the real qbittorrent-nox then reports (Web API
/// `app/preferences`) its save path under /data/torrents and its network
/// interface tun0.
#[tokio::test(flavor = "multi_thread")]
async fn qbittorrent_webui_answers_through_its_service() {
    let Some(node) = RealNode::get() else { return };
    let ns = TestNamespace::new("rn-qbt").await;
    create_pod(&ns, "client", json!({}), sleeper(json!({})))
        .await
        .expect("client");
    start_qbittorrent(&node, &ns, "adminadmin").await;
    wait_ready(&ns, "client").await.expect("client");
    let uid = exec(
        &ns,
        "qbittorrent",
        "qbittorrent",
        &["stat", "-c", "%u:%g", "/proc/1"],
    )
    .await
    .expect("stat");
    assert_eq!(uid.trim(), "1000:1000", "qbittorrent-nox runs as PUID:PGID");

    let base = format!("http://qbittorrent.{}.svc:8080", ns.name);
    let script = format!(
        "set -e; sid=$(timeout 5 wget -S -q -O /dev/null --post-data 'username=admin&password=adminadmin' \
         {base}/api/v2/auth/login 2>&1 | sed -n 's/.*SID=\\([^;]*\\).*/\\1/p'); \
         test -n \"$sid\"; timeout 5 wget -q -O - --header \"Cookie: SID=$sid\" {base}/api/v2/app/version; echo; \
         timeout 5 wget -q -O - --header \"Cookie: SID=$sid\" {base}/api/v2/app/defaultSavePath; echo; \
         timeout 5 wget -q -O - --header \"Cookie: SID=$sid\" {base}/api/v2/app/preferences"
    );
    let mut out = Err(anyhow::anyhow!("not tried"));
    for _ in 0..20 {
        out = exec(&ns, "client", "main", &["sh", "-c", &script]).await;
        if out.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let out = out.expect("login and API through the Service");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("v4.5.2"), "{out}");
    let save = lines.next().unwrap_or_default();
    assert!(
        save.trim_end_matches('/').starts_with("/data/torrents"),
        "the default save path is in the data tree: {out}"
    );
    let prefs: Value = serde_json::from_str(lines.next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("preferences: {e}: {out}"));
    let pref_save = prefs["save_path"].as_str().unwrap_or_default();
    assert!(
        pref_save.starts_with("/data/torrents"),
        "save_path: {prefs}"
    );
    assert!(
        prefs["temp_path"]
            .as_str()
            .unwrap_or_default()
            .starts_with("/data/torrents"),
        "temp_path: {prefs}"
    );
    assert_eq!(
        prefs["current_network_interface"], "tun0",
        "the session is bound to the tunnel: {prefs}"
    );
}

/// A password as the reconciler generates one: 32 random hex characters.
fn generated_password() -> String {
    use std::hash::{BuildHasher, Hasher};
    let half = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos(),
        );
        format!("{:016x}", h.finish())
    };
    format!("{}{}", half(), half())
}

/// Runs `work` on a thread of its own inside the network namespace `netns`
/// (a file under /run/netns), on a runtime of that thread: sockets it opens
/// are in that namespace. The rest of the test process stays where it is.
fn in_netns<F, Fut, T>(netns: &str, work: F) -> T
where
    F: FnOnce() -> Fut + Send,
    Fut: std::future::Future<Output = T>,
    T: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = std::fs::File::open(netns).expect("network namespace");
                let rc = unsafe {
                    libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET)
                };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(work())
            })
            .join()
            .expect("thread in the node's namespace")
    })
}

/// What one pass of the wiring flow did against the real qBittorrent.
struct QbitPass {
    outcome: mediastack_operator::wiring::flow::LinkOutcome,
    /// Non-GET requests the client put on the wire (login included).
    writes: Vec<String>,
}

/// The operator's qBittorrent wiring flow (`wiring::flow::qbittorrent`)
/// against the real qbittorrent-nox: it logs in with the password from the
/// generated WebUI login Secret (read as the runner reads it), adds the
/// missing category `movies`, fixes the drifted save path of `tv` and the
/// drifted default save path, and leaves the user's own category alone.
/// Reading back through the WebUI API shows exactly that; a second pass
/// sends no write (only the login). The calls go from the node's network
/// namespace to the pod's address, as the operator's would to the pod.
#[tokio::test(flavor = "multi_thread")]
async fn qbittorrent_wiring_flow_sets_categories_and_save_path_on_the_real_app() {
    use mediastack_operator::wiring::{self, ArrClient, ClientConfig, LinkState, qbittorrent};
    let Some(node) = RealNode::get() else { return };
    let ns = TestNamespace::new("rn-qbw").await;
    let password = generated_password();
    start_qbittorrent(&node, &ns, &password).await;
    let secrets: kube::Api<Secret> = kube::Api::namespaced(ns.client.clone(), &ns.name);
    let (user, from_secret) = wiring::secrets::qbittorrent_login(&secrets, "home")
        .await
        .expect("the WebUI login from its Secret");
    assert_eq!(
        (user.as_str(), from_secret.as_str()),
        ("admin", password.as_str())
    );
    let ip = pod_ip(&ns, "qbittorrent").await.expect("pod IP");
    let base = format!("http://{ip}:8080");
    let netns = format!("/run/netns/{}", node.netns("node"));
    let config = ClientConfig {
        timeout: std::time::Duration::from_secs(5),
        retries: 5,
        ..ClientConfig::default()
    };

    let (before, first, second, categories, prefs) = in_netns(&netns, || async {
        // The WebUI starts listening a moment after the pod is Ready.
        let setup = ArrClient::new(&base, None, config.clone()).expect("client");
        let mut logged_in = false;
        for _ in 0..20 {
            if let Ok(r) = setup.send(&qbittorrent::login(&user, &from_secret)).await
                && r.body.as_ref() == b"Ok."
            {
                setup.remember_cookie(&r);
                logged_in = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        assert!(logged_in, "qBittorrent takes the generated password");
        let before: Value = setup
            .get_json(qbittorrent::PREFERENCES_PATH)
            .await
            .expect("preferences");
        // The user's own category, a drifted `tv` and a drifted default save path.
        for (path, fields) in [
            (
                qbittorrent::CREATE_CATEGORY_PATH,
                [("category", "mine"), ("savePath", "/data/torrents/mine")],
            ),
            (
                qbittorrent::CREATE_CATEGORY_PATH,
                [("category", "tv"), ("savePath", "/data/elsewhere")],
            ),
        ] {
            setup
                .send(&mediastack_operator::wiring::ApiRequest::form(
                    path, &fields,
                ))
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        }
        let drift = json!({"save_path": "/data/other"}).to_string();
        setup
            .send(&mediastack_operator::wiring::ApiRequest::form(
                qbittorrent::SET_PREFERENCES_PATH,
                &[("json", &drift)],
            ))
            .await
            .expect("drift the save path");

        let mut passes = Vec::new();
        for _ in 0..2 {
            let client = ArrClient::new(&base, None, config.clone()).expect("client");
            let outcome = wiring::flow::qbittorrent(&client, &user, &from_secret).await;
            passes.push(QbitPass {
                outcome,
                writes: client.sent_writes(),
            });
        }
        let categories: Value = setup
            .get_json(qbittorrent::CATEGORIES_PATH)
            .await
            .expect("categories");
        let prefs: Value = setup
            .get_json(qbittorrent::PREFERENCES_PATH)
            .await
            .expect("preferences");
        let second = passes.pop().expect("second pass");
        let first = passes.pop().expect("first pass");
        (before, first, second, categories, prefs)
    });

    assert_eq!(
        before["save_path"]
            .as_str()
            .map(|p| p.trim_end_matches('/')),
        Some("/data/torrents"),
        "the config step set the save path before the flow ran: {before}"
    );
    assert_eq!(
        first.outcome.result.state,
        LinkState::Connected,
        "{:?}",
        first.outcome
    );
    assert_eq!(
        first.writes,
        [
            "POST /api/v2/auth/login",
            "POST /api/v2/torrents/editCategory",
            "POST /api/v2/torrents/createCategory",
            "POST /api/v2/app/setPreferences",
        ],
        "first pass: login, fix tv, add movies, fix the save path"
    );
    assert_eq!(first.outcome.writes, 3);
    assert_eq!(
        categories["tv"]["savePath"], "/data/torrents/tv",
        "{categories}"
    );
    assert_eq!(
        categories["movies"]["savePath"], "/data/torrents/movies",
        "{categories}"
    );
    assert_eq!(
        categories["mine"]["savePath"], "/data/torrents/mine",
        "the user's own category is untouched: {categories}"
    );
    assert_eq!(
        categories.as_object().map(|c| c.len()),
        Some(3),
        "{categories}"
    );
    assert_eq!(
        prefs["save_path"].as_str().map(|p| p.trim_end_matches('/')),
        Some("/data/torrents"),
        "{prefs}"
    );
    assert_eq!(
        second.outcome.result.state,
        LinkState::Connected,
        "{:?}",
        second.outcome
    );
    assert_eq!(
        second.writes,
        ["POST /api/v2/auth/login"],
        "a second pass writes nothing"
    );
    assert_eq!(second.outcome.writes, 0);
}

/// A WireGuard key pair from `wg genkey` / `wg pubkey` on the host.
async fn wg_keys() -> (String, String) {
    let private = tokio::process::Command::new("wg")
        .arg("genkey")
        .output()
        .await
        .expect("wg genkey");
    let private = String::from_utf8_lossy(&private.stdout).trim().to_string();
    let mut child = tokio::process::Command::new("wg")
        .arg("pubkey")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("wg pubkey");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(private.as_bytes()).await.expect("write");
    }
    let out = child.wait_with_output().await.expect("wg pubkey");
    (
        private,
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

/// The test VPN provider: a wireguard-go server in the VPN host's namespace
/// on UDP 51820, one peer (10.64.0.2), masquerading to the internet as
/// 192.0.2.1. Dropping the child (or `ip link del`) stops it.
async fn wg_server(node: &RealNode, dev: &str, private: &str, peer: &str) -> tokio::process::Child {
    // A socket left by a previous server would be taken for the new one.
    let sock = format!("/var/run/wireguard/{dev}.sock");
    let _ = std::fs::remove_file(&sock);
    let child = node
        .spawn_in("vpn", &[&node.bin("wireguard-go"), "-f", dev])
        .expect("wireguard-go");
    mediastack_e2e::wait_for(
        "the WireGuard server's socket",
        std::time::Duration::from_secs(10),
        || {
            let sock = sock.clone();
            async move { Ok(std::path::Path::new(&sock).exists()) }
        },
    )
    .await
    .expect("wireguard-go started");
    let key = node.state.join(format!("{dev}.key"));
    std::fs::write(&key, private).expect("key");
    let key = key.display().to_string();
    for cmd in [
        vec![
            "wg",
            "set",
            dev,
            "listen-port",
            "51820",
            "private-key",
            &key,
            "peer",
            peer,
            "allowed-ips",
            "10.64.0.2/32",
        ],
        vec!["ip", "addr", "add", "10.64.0.1/24", "dev", dev],
        vec!["ip", "link", "set", dev, "up"],
    ] {
        node.exec_in("vpn", &cmd)
            .await
            .expect("configure the server");
    }
    child
}

/// Runs `script` against qBittorrent's Web API from inside its pod (the
/// WebUI lets localhost in without a login: `WebUI\LocalHostAuth=false`).
async fn qbt_api(ns: &TestNamespace, pod: &str, script: &str) -> anyhow::Result<String> {
    exec(ns, pod, "qbittorrent", &["sh", "-c", script]).await
}

const TRACKER: &str = "http://203.0.113.10:6969/announce";

/// The layer "qBittorrent bound to the tunnel", with real processes and
/// packets: Debian's qbittorrent-nox with `Session\Interface=tun0`, in a pod
/// whose tunnel is our own WireGuard client sidecar (not gluetun, which
/// cannot be built here; so no firewall inside the pod) to the test VPN
/// provider. Its tracker announces reach the test internet only from the
/// VPN host's address; with the WireGuard server stopped, and with tun0
/// deleted in the pod, nothing from the pod reaches the internet (every
/// packet the internet sees is captured with tcpdump from before the pod
/// exists); when the server returns, announces flow through it again.
#[tokio::test(flavor = "multi_thread")]
async fn qbittorrent_bound_to_the_tunnel_sends_nothing_outside_it() {
    let Some(node) = RealNode::get() else { return };
    let ns = TestNamespace::new("rn-tunnel").await;
    let dev = format!("ms{}wg", node.index);
    let (server_key, server_pub) = wg_keys().await;
    let (client_key, client_pub) = wg_keys().await;
    node.exec_in(
        "vpn",
        &[
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            "10.64.0.0/16",
            "-o",
            "eth-inet",
            "-j",
            "MASQUERADE",
        ],
    )
    .await
    .expect("masquerade");
    let server = wg_server(&node, &dev, &server_key, &client_pub).await;

    // Every packet the internet receives, from now on (bounded).
    let pcap = node.state.join(format!("{}.pcap", ns.name));
    let pcap_s = pcap.display().to_string();
    let _capture = node
        .spawn_in(
            "inet",
            &[
                "timeout", "300", "tcpdump", "-U", "-n", "-i", "any", "-c", "20000", "-w", &pcap_s,
                "ip",
            ],
        )
        .expect("tcpdump");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;

    let conf = "[LegalNotice]\nAccepted=true\n\n[BitTorrent]\nSession\\\\Interface=tun0\nSession\\\\InterfaceName=tun0\nSession\\\\DHTEnabled=false\nSession\\\\LSDEnabled=false\nSession\\\\PeXEnabled=false\n\n[Preferences]\nWebUI\\\\Port=8080\nWebUI\\\\LocalHostAuth=false\n";
    let spec = json!({
        "terminationGracePeriodSeconds": 1,
        "volumes": [{"name": "config", "emptyDir": {}},
                    {"name": "tun", "hostPath": {"path": "/dev/net/tun", "type": "CharDevice"}}],
        "initContainers": [
            {"name": "config", "image": BUSYBOX,
             "command": ["sh", "-c", format!("mkdir -p /config/qBittorrent && printf '{conf}' > /config/qBittorrent/qBittorrent.conf")],
             "volumeMounts": [{"name": "config", "mountPath": "/config"}]},
            {"name": "wg", "image": WGCLIENT, "restartPolicy": "Always",
             "env": [{"name": "WG_PRIVATE_KEY", "value": client_key},
                     {"name": "WG_PEER_PUBLIC_KEY", "value": server_pub},
                     {"name": "WG_ENDPOINT", "value": format!("{VPN_ADDR}:51820")},
                     {"name": "WG_ADDRESS", "value": "10.64.0.2/32"}],
             "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}},
             "startupProbe": {"exec": {"command": ["sh", "-c", "ip link show tun0 | grep -q UP"]}, "periodSeconds": 1, "failureThreshold": 30},
             "volumeMounts": [{"name": "tun", "mountPath": "/dev/net/tun"}]},
        ],
        "containers": [{
            "name": "qbittorrent", "image": QBITTORRENT,
            "env": [{"name": "PUID", "value": "1000"}, {"name": "PGID", "value": "1000"}, {"name": "WEBUI_PORT", "value": "8080"}],
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
            "volumeMounts": [{"name": "config", "mountPath": "/config"}],
        }],
    });
    create_pod(&ns, "qbt", json!({}), spec).await.expect("pod");
    wait_ready(&ns, "qbt")
        .await
        .expect("qBittorrent Ready behind the tunnel");
    let ip = pod_ip(&ns, "qbt").await.expect("ip");
    let iface = qbt_api(
        &ns,
        "qbt",
        "wget -q -O - http://127.0.0.1:8080/api/v2/app/preferences",
    )
    .await
    .expect("preferences");
    assert!(
        iface.contains("\"current_network_interface\":\"tun0\""),
        "{iface}"
    );

    // A torrent whose only tracker is on the test internet.
    let magnet = format!(
        "magnet:?xt=urn:btih:{}&tr={}",
        "0123456789abcdef0123456789abcdef01234567",
        TRACKER.replace(':', "%3A").replace('/', "%2F")
    );
    qbt_api(
        &ns,
        "qbt",
        &format!(
            "wget -q -O - --post-data 'urls={}' http://127.0.0.1:8080/api/v2/torrents/add",
            magnet
                .replace('&', "%26")
                .replace('?', "%3F")
                .replace('=', "%3D")
        ),
    )
    .await
    .expect("add torrent");
    let reannounce = || {
        qbt_api(
            &ns,
            "qbt",
            "wget -q -O - --post-data 'hashes=all' http://127.0.0.1:8080/api/v2/torrents/reannounce",
        )
    };
    let tracked = |src: &str| {
        node.recorded_from("inet", src)
            .into_iter()
            .filter(|l| l.contains(":6969 "))
            .count()
    };
    let via_tunnel = |n: usize| async move {
        for _ in 0..60 {
            if tracked(VPN_INET_ADDR) > n {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        false
    };
    assert!(
        via_tunnel(0).await,
        "announces reach the tracker through the tunnel"
    );

    // Break 1: the VPN provider goes away.
    node.exec_in("vpn", &["ip", "link", "del", &dev])
        .await
        .expect("stop server");
    drop(server);
    let before = tracked(VPN_INET_ADDR);
    for _ in 0..3 {
        reannounce().await.expect("reannounce");
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
    assert_eq!(tracked(VPN_INET_ADDR), before, "no server, no announce");

    // Break 2: tun0 deleted inside the pod (the sidecar's wireguard-go
    // exits; the kubelet restarts the sidecar, whose tunnel still has no server).
    let _ = exec(&ns, "qbt", "wg", &["ip", "link", "del", "tun0"]).await;
    for _ in 0..3 {
        reannounce().await.expect("reannounce");
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }

    // The tunnel returns: announces flow through it again.
    let _server = wg_server(&node, &dev, &server_key, &client_pub).await;
    let mut resumed = false;
    for _ in 0..10 {
        reannounce().await.expect("reannounce");
        if via_tunnel(before).await {
            resumed = true;
            break;
        }
    }
    assert!(resumed, "announces resume through the tunnel");

    // Nothing from the pod ever reached the internet outside the tunnel:
    // not at start, not while broken.
    assert_eq!(tracked(&ip), 0, "no announce from the pod's own address");
    let leaked = tokio::process::Command::new("tcpdump")
        .args(["-n", "-r", &pcap_s, &format!("src host {ip}")])
        .output()
        .await
        .expect("tcpdump -r");
    let leaked = String::from_utf8_lossy(&leaked.stdout).into_owned();
    assert_eq!(leaked.trim(), "", "packets from the pod outside the tunnel");
    let tunneled = tokio::process::Command::new("tcpdump")
        .args([
            "-n",
            "-r",
            &pcap_s,
            "src host 192.0.2.1 and tcp dst port 6969",
        ])
        .output()
        .await
        .expect("tcpdump -r");
    assert!(
        !String::from_utf8_lossy(&tunneled.stdout).trim().is_empty(),
        "the capture saw the tunneled announces (it works)"
    );
}

/// Traefik's JSON access log, as a stand-in: a Python HTTP server (in the
/// fail2ban stand-in image, which has Python) that answers every request
/// with 401 and prints one access line per request in Traefik's format (a
/// JSON object with sorted keys, no spaces) with the real peer address.
const ACCESS_LOG_SERVER: &str = r#"
import http.server, json, datetime
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(401); self.send_header("Content-Length", "0"); self.end_headers()
        host, port = self.client_address[:2]
        print(json.dumps({"ClientAddr": f"{host}:{port}", "ClientHost": host, "DownstreamStatus": 401,
            "RequestPath": self.path, "entryPointName": "web", "level": "info", "msg": "",
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat()},
            sort_keys=True, separators=(",", ":")), flush=True)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("0.0.0.0", 80), H).serve_forever()
"#;

/// `curl` from the test internet to the node's port 80: the HTTP status, or
/// None when nothing answers within 3 s.
async fn from_internet(node: &RealNode) -> Option<String> {
    node.exec_in(
        "inet",
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "3",
            "http://203.0.113.1/login",
        ],
    )
    .await
    .ok()
}

/// fail2ban really bans: the operator's rendered fail2ban pod (its
/// ConfigMap: jail, filters and raw-table action; its DaemonSet's fail2ban
/// container, with Debian's fail2ban as the stand-in image; without the
/// logwatch sidecar, see below) on the real node reads a real
/// pod log file in Traefik's access-log format; a client on the test
/// internet that gets 401s is banned, its next connection to the node is
/// dropped, and unbanning it lets it in again.
#[tokio::test(flavor = "multi_thread")]
async fn fail2ban_bans_a_test_internet_client_and_unbanning_restores_it() {
    let Some(node) = RealNode::get() else { return };
    let ns = TestNamespace::new("rn-f2b").await;
    let stack: MediaStack = serde_yaml::from_str(
        &std::fs::read_to_string(mediastack_e2e::repo_root().join("examples/mediastack.yaml"))
            .expect("example"),
    )
    .expect("MediaStack");
    let parent = Parent {
        name: "home".into(),
        namespace: ns.name.clone(),
        owner: OwnerReference::default(),
    };
    let children =
        mediastack_operator::render::fail2ban::objects(&parent, &stack.spec, &Inputs::default())
            .expect("render");
    assert_eq!(children.len(), 2, "ConfigMap and DaemonSet");
    let mut config_map = serde_json::to_value(&children[0].object).expect("json");
    config_map["metadata"]
        .as_object_mut()
        .expect("meta")
        .remove("ownerReferences");
    kubectl_stdin(
        &["create", "-n", &ns.name, "-f", "-"],
        &config_map.to_string(),
    )
    .await
    .expect("configmap");
    let daemon_set = serde_json::to_value(&children[1].object).expect("json");
    let mut pod = daemon_set["spec"]["template"]["spec"].clone();
    let pod_logs = node.state.join("pod-logs").display().to_string();
    for v in pod["volumes"].as_array_mut().expect("volumes") {
        match v["name"].as_str() {
            Some("pod-logs") => v["hostPath"]["path"] = json!(pod_logs),
            // The rendered db dir is on the node's /var/lib: not for a test.
            Some("db") => *v = json!({"name": "db", "emptyDir": {}}),
            _ => {}
        }
    }
    for c in pod["containers"].as_array_mut().expect("containers") {
        c["image"] = json!(mediastack_e2e::realnode::FAIL2BAN);
        // The stand-in reads Debian's /etc/fail2ban, the rendered image /data.
        for m in c["volumeMounts"].as_array_mut().into_iter().flatten() {
            let path = m["mountPath"].as_str().unwrap_or_default().to_string();
            for dir in ["jail.d/", "filter.d/", "action.d/"] {
                if let Some(rest) = path.strip_prefix(&format!("/data/{dir}")) {
                    m["mountPath"] = json!(format!("/etc/fail2ban/{dir}{rest}"));
                }
            }
        }
    }
    pod["containers"][0]["command"] = json!(["/run-fail2ban"]);
    // Both rendered containers run: fail2ban and the logwatch sidecar (its
    // own command, as rendered).
    assert_eq!(pod["containers"][1]["name"], "logwatch", "{pod}");
    pod["terminationGracePeriodSeconds"] = json!(1);

    // "Traefik": a pod named like a pod of Deployment home-traefik, whose
    // container log file matches the jail's globs.
    let web = json!({
        "hostNetwork": true, "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "traefik", "image": mediastack_e2e::realnode::FAIL2BAN,
            "command": ["python3", "-c", ACCESS_LOG_SERVER],
            "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1}}],
    });
    let first = "home-traefik-5b6c7d8f9-x2k9p";
    create_pod(&ns, first, json!({}), web.clone())
        .await
        .expect("web");
    wait_ready(&ns, first).await.expect("web ready");
    create_pod(&ns, "fail2ban", json!({}), pod)
        .await
        .expect("fail2ban");
    wait_ready(&ns, "fail2ban")
        .await
        .expect("fail2ban ready (fail2ban-client ping)");

    assert_eq!(
        from_internet(&node).await.as_deref(),
        Some("401"),
        "open before a ban"
    );
    let jail = mediastack_operator::render::fail2ban::AUTH_JAIL;
    let banned = || async {
        exec(
            &ns,
            "fail2ban",
            "fail2ban",
            &["fail2ban-client", "status", jail],
        )
        .await
        .map(|s| s.contains(INET_ADDR))
        .unwrap_or(false)
    };
    let ban = || async {
        for _ in 0..20 {
            if banned().await {
                return true;
            }
            let _ = from_internet(&node).await;
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        false
    };
    let unban = || async {
        exec(
            &ns,
            "fail2ban",
            "fail2ban",
            &["fail2ban-client", "set", jail, "unbanip", INET_ADDR],
        )
        .await
        .expect("unban");
        assert_eq!(
            from_internet(&node).await.as_deref(),
            Some("401"),
            "unbanned: let in again"
        );
    };
    let jails = || async {
        exec(&ns, "fail2ban", "fail2ban", &["fail2ban-client", "status"])
            .await
            .expect("status")
    };
    let watched = || async {
        exec(
            &ns,
            "fail2ban",
            "fail2ban",
            &["fail2ban-client", "get", jail, "logpath"],
        )
        .await
        .unwrap_or_default()
    };
    assert!(
        ban().await,
        "the test internet client is banned after repeated 401s"
    );
    // fail2ban lists the address before its ban action has inserted the
    // rule: give the action a few seconds, then the packets must be dropped.
    let mut answer = from_internet(&node).await;
    for _ in 0..10 {
        if answer.is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        answer = from_internet(&node).await;
    }
    assert_eq!(answer, None, "a banned client's packets are dropped");
    unban().await;

    // A new Traefik pod writes a new log file: within logwatch's interval
    // the running jails watch it too (no restart of fail2ban, no reload
    // that loses the jails), and the client is banned from its lines.
    kubectl(&["delete", "pod", "-n", &ns.name, first, "--wait=true"])
        .await
        .expect("delete the first web pod");
    let second = "home-traefik-5b6c7d8f9-q7w4z";
    create_pod(&ns, second, json!({}), web).await.expect("web");
    wait_ready(&ns, second).await.expect("second web ready");
    let mut picked_up = false;
    let wait = u64::from(mediastack_operator::render::fail2ban::LOGWATCH_INTERVAL) * 2 + 15;
    for _ in 0..wait {
        if watched().await.contains(&format!("_{second}_")) {
            picked_up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let status = jails().await;
    assert!(
        status.contains("Number of jail:\t2"),
        "both jails still run: {status}"
    );
    // The same server all along: picked up while running, not by a restart.
    let restarts = kubectl(&[
        "get",
        "pod",
        "-n",
        &ns.name,
        "fail2ban",
        "-o",
        "jsonpath={.status.containerStatuses[*].restartCount}",
    ])
    .await
    .expect("restart counts");
    assert_eq!(restarts.trim(), "0 0", "no container restarted");
    assert!(
        picked_up,
        "logwatch added the new pod's log file: {}",
        watched().await
    );
    assert!(ban().await, "banned again from the new pod's log lines");
    assert_eq!(
        from_internet(&node).await,
        None,
        "a banned client's packets are dropped"
    );
    unban().await;
}
