//! Helpers for the tests that run real containers on the real node
//! (`cluster.sh --real-node`, see docs/real-node.md).
//!
//! A pod lands on the real node only when it asks for it: the node is
//! tainted `mediastack.io/real-node` and labelled
//! `mediastack.io/real-node=true`; [`on_real_node`] adds both the selector
//! and the toleration. Everything else keeps running on the KWOK node.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::{TestNamespace, kubectl, kubectl_stdin, wait_for};

/// Label and taint key of the real node.
pub const NODE_KEY: &str = "mediastack.io/real-node";
/// The test internet's address (RFC 5737) and the VPN host's two addresses.
pub const INET_ADDR: &str = "203.0.113.10";
pub const VPN_ADDR: &str = "198.51.100.10";
pub const VPN_INET_ADDR: &str = "192.0.2.1";
/// The busybox tools image imported into the node's containerd.
pub const BUSYBOX: &str = "mediastack.local/busybox:1";
/// The qBittorrent stand-in (Debian's qbittorrent-nox, e2e/images).
pub const QBITTORRENT: &str = "mediastack.local/qbittorrent:1";
/// Our WireGuard client sidecar image (not gluetun, e2e/images/wgclient).
pub const WGCLIENT: &str = "mediastack.local/wgclient:1";
/// Debian's fail2ban (e2e/images/fail2ban), standing in for the DaemonSet's image.
pub const FAIL2BAN: &str = "mediastack.local/fail2ban:1";
/// How long a pod on the real node may take to become Ready.
pub const POD_TIMEOUT: Duration = Duration::from_secs(120);

/// The real node of this cluster.
pub struct RealNode {
    /// Index I of `ms<I>-node`, `ms<I>-inet`, `ms<I>-vpn`.
    pub index: String,
    /// `<state>/node`: the test hosts' logs `inet.log` and `vpn.log`.
    pub state: PathBuf,
}

impl RealNode {
    /// The real node, from the variables `cluster.sh --real-node` exports.
    /// `None` only against an existing cluster (kind), which has no real
    /// node of ours: the caller then says so and returns. Against the local
    /// control plane a missing real node is a failure.
    pub fn get() -> Option<Self> {
        match (
            std::env::var("MEDIASTACK_REAL_NODE_INDEX"),
            std::env::var("MEDIASTACK_REAL_NODE_STATE"),
        ) {
            (Ok(index), Ok(state)) => Some(Self {
                index,
                state: state.into(),
            }),
            _ if std::env::var("MEDIASTACK_E2E_CLUSTER").as_deref() == Ok("existing") => {
                eprintln!("no real node on an existing cluster: real-node test not run");
                None
            }
            _ => panic!(
                "no real node: run the cluster tests with e2e/controlplane/cluster.sh exec --real-node"
            ),
        }
    }

    pub fn netns(&self, host: &str) -> String {
        format!("ms{}-{host}", self.index)
    }

    /// Runs a command in one of the node's namespaces (`node`, `inet`, `vpn`).
    pub async fn exec_in(&self, host: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = tokio::process::Command::new("ip")
            .args(["netns", "exec", &self.netns(host)])
            .args(args)
            .output()
            .await
            .context("ip netns exec")?;
        if !out.status.success() {
            bail!(
                "{} in {host}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts a long-running command in one of the node's namespaces; it is
    /// killed when the returned child is dropped (and at teardown, which
    /// kills whatever runs in the namespaces).
    pub fn spawn_in(&self, host: &str, args: &[&str]) -> anyhow::Result<tokio::process::Child> {
        tokio::process::Command::new("ip")
            .args(["netns", "exec", &self.netns(host)])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("ip netns exec")
    }

    /// A node binary (wireguard-go...) from `build.sh node`.
    pub fn bin(&self, name: &str) -> String {
        let dir = std::env::var("MEDIASTACK_REAL_NODE_BIN")
            .expect("cluster.sh --real-node exports MEDIASTACK_REAL_NODE_BIN");
        format!("{dir}/{name}")
    }

    /// Lines a test host recorded (`inet` or `vpn`) that came from `src`.
    pub fn recorded_from(&self, host: &str, src: &str) -> Vec<String> {
        let text =
            std::fs::read_to_string(self.state.join(format!("{host}.log"))).unwrap_or_default();
        text.lines()
            .filter(|l| {
                l.split_whitespace()
                    .nth(2)
                    .and_then(|s| s.rsplit_once(':'))
                    .is_some_and(|(a, _)| a == src)
            })
            .map(str::to_string)
            .collect()
    }
}

/// `pod_spec` with the real node's selector and toleration added.
pub fn on_real_node(mut pod_spec: Value) -> Value {
    pod_spec["nodeSelector"] = json!({ NODE_KEY: "true" });
    let tolerations = pod_spec["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut t = tolerations;
    t.push(json!({"key": NODE_KEY, "operator": "Exists", "effect": "NoSchedule"}));
    pod_spec["tolerations"] = Value::Array(t);
    pod_spec
}

/// Creates pod `name` with `labels` and `spec` (placed on the real node).
pub async fn create_pod(
    ns: &TestNamespace,
    name: &str,
    labels: Value,
    spec: Value,
) -> anyhow::Result<()> {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": on_real_node(spec),
    });
    kubectl_stdin(
        &["create", "-n", &ns.name, "-f", "-"],
        &serde_json::to_string(&pod)?,
    )
    .await?;
    Ok(())
}

/// A busybox pod that sleeps, for running commands from.
pub fn sleeper(extra: Value) -> Value {
    let mut spec = json!({
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": BUSYBOX, "command": ["sleep", "600"]}],
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    spec
}

/// Waits until pod `name` is Ready; on timeout the error carries its describe.
pub async fn wait_ready(ns: &TestNamespace, name: &str) -> anyhow::Result<()> {
    let r = wait_for(&format!("pod {name} Ready"), POD_TIMEOUT, || async {
        let out = kubectl(&[
            "get",
            "pod",
            "-n",
            &ns.name,
            name,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ])
        .await?;
        Ok(out == "True")
    })
    .await;
    if let Err(e) = r {
        let d = kubectl(&["describe", "pod", "-n", &ns.name, name])
            .await
            .unwrap_or_default();
        bail!("{e:#}\n{d}");
    }
    Ok(())
}

/// `kubectl exec` in `container` of `pod`; the result carries stdout, the
/// error stdout and stderr.
pub async fn exec(
    ns: &TestNamespace,
    pod: &str,
    container: &str,
    cmd: &[&str],
) -> anyhow::Result<String> {
    let mut args = vec!["exec", "-n", &ns.name, pod, "-c", container, "--"];
    args.extend_from_slice(cmd);
    let out = tokio::process::Command::new("kubectl")
        .args(&args)
        .output()
        .await
        .context("kubectl on PATH")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{}: {stdout}{}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// The pod's IP.
pub async fn pod_ip(ns: &TestNamespace, name: &str) -> anyhow::Result<String> {
    kubectl(&[
        "get",
        "pod",
        "-n",
        &ns.name,
        name,
        "-o",
        "jsonpath={.status.podIP}",
    ])
    .await
}
