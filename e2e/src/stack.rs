//! Shared steps of the MediaStack, VPN, edge and monitoring cluster tests.

use std::fmt::Debug;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Event;
use kube::Resource;
use kube::api::{Api, ListParams};
use mediastack_operator::api::MediaStack;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Operator, TestNamespace, repo_root, wait_for};

/// The text of a file of the repository, e.g. `examples/mediastack.yaml`.
pub fn example(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).expect("example exists")
}

/// The apps of examples/mediastack.yaml, written out (tests assert what a
/// user expects, not what the catalog computes).
pub const EXAMPLE_APPS: [&str; 9] = [
    "jellyfin",
    "jellyseerr",
    "sonarr",
    "radarr",
    "prowlarr",
    "bazarr",
    "qbittorrent",
    "dozzle",
    "dashboard",
];

/// WireGuard credentials for the example VpnGateway (the tunnel never comes
/// up on KWOK; the keys only have to be present).
pub const WIREGUARD_SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: mullvad-wireguard}\nstringData: {privateKey: a2V5, addresses: 10.64.0.2/32}\n";

/// Applies the example gateway, its Secret and the example stack.
pub async fn example_stack(ns: &TestNamespace) {
    ns.apply_yaml(WIREGUARD_SECRET, "e2e")
        .await
        .expect("secret");
    ns.apply_yaml(&example("examples/vpngateway.yaml"), "e2e")
        .await
        .expect("gateway");
    ns.apply_yaml(&example("examples/mediastack.yaml"), "e2e")
        .await
        .expect("stack");
}

/// A fresh namespace with an operator and the example stack, once it is Ready.
pub async fn ready_example_stack(prefix: &str) -> (TestNamespace, Operator, MediaStack) {
    ready_example_stack_with(prefix, &[]).await
}

/// Like [`ready_example_stack`], the operator started with `extra` flags
/// (e.g. the admin policy's `--allow-fail2ban`).
pub async fn ready_example_stack_with(
    prefix: &str,
    extra: &[&str],
) -> (TestNamespace, Operator, MediaStack) {
    let ns = TestNamespace::new(prefix).await;
    let op = Operator::start_with(&ns, extra).await;
    example_stack(&ns).await;
    let stack = wait_condition::<MediaStack>(&ns, "home", "Ready", "True", None).await;
    (ns, op, stack)
}

/// `(status, reason, message)` of condition `type_` of any of our resources.
pub fn condition<K: Serialize>(obj: &K, type_: &str) -> Option<(String, String, String)> {
    let v = serde_json::to_value(obj).ok()?;
    let c = v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?
        .clone();
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    Some((s("status"), s("reason"), s("message")))
}

/// Waits until object `name` has condition `type_` with `status` (and
/// `reason`, when given); returns the object.
pub async fn wait_condition<K>(
    ns: &TestNamespace,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
) -> K
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug,
{
    let api: Api<K> = ns.api();
    let res = wait_for(
        &format!("{name} {type_}={status} {reason:?}"),
        Duration::from_secs(120),
        || async {
            let o = api.get(name).await?;
            Ok(condition(&o, type_)
                .is_some_and(|(st, r, _)| st == status && reason.is_none_or(|x| x == r)))
        },
    )
    .await;
    let last = api.get(name).await.expect("object read");
    res.unwrap_or_else(|e| {
        let status = serde_json::to_value(&last)
            .map(|v| v["status"].to_string())
            .unwrap_or_default();
        panic!("{e}; status: {status}")
    });
    last
}

/// Messages of the Warning events with `reason` in the test namespace.
pub async fn warning_events(ns: &TestNamespace, reason: &str) -> Vec<String> {
    let events: Api<Event> = ns.api();
    events
        .list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter(|e| {
                    e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason)
                })
                .filter_map(|e| e.message)
                .collect()
        })
        .unwrap_or_default()
}

/// Waits for a Warning event with `reason` whose message contains `text`.
pub async fn wait_event(ns: &TestNamespace, reason: &str, text: &str) {
    wait_for(
        &format!("Warning event {reason} containing {text:?}"),
        crate::TIMEOUT,
        || async {
            Ok(warning_events(ns, reason)
                .await
                .iter()
                .any(|m| m.contains(text)))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}
