//! A MediaStack against a real API server with a running operator.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use mediastack_e2e::stack::{
    EXAMPLE_APPS, condition, example, ready_example_stack, wait_condition, warning_events,
};
use mediastack_e2e::{TIMEOUT, apiserver_metrics, audited_writes, kubectl, sum_counter, wait_for};
use mediastack_operator::api::MediaStack;
use serde_json::json;

/// Server-side applies `spec` to the stack `home` (manager `e2e`, forced).
async fn apply_spec(stacks: &Api<MediaStack>, spec: serde_json::Value) -> MediaStack {
    stacks
        .patch(
            "home",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(
                json!({"apiVersion": "mediastack.io/v1alpha1", "kind": "MediaStack", "spec": spec}),
            ),
        )
        .await
        .expect("patch stack")
}

const WITH_CONFIG: [&str; 7] = [
    "jellyfin",
    "jellyseerr",
    "sonarr",
    "radarr",
    "prowlarr",
    "bazarr",
    "qbittorrent",
];

#[tokio::test(flavor = "multi_thread")]
async fn the_example_stack_becomes_ready_with_every_app() {
    let (ns, _op, stack) = ready_example_stack("stack").await;
    let deployments: Api<Deployment> = ns.api();
    let services: Api<Service> = ns.api();
    let pvcs: Api<PersistentVolumeClaim> = ns.api();
    for app in EXAMPLE_APPS {
        let d = deployments
            .get(&format!("home-{app}"))
            .await
            .unwrap_or_else(|e| panic!("{app} Deployment: {e}"));
        assert_eq!(
            d.status.and_then(|s| s.ready_replicas),
            Some(1),
            "{app} is ready"
        );
        services
            .get(&format!("home-{app}"))
            .await
            .unwrap_or_else(|e| panic!("{app} Service: {e}"));
    }
    for app in WITH_CONFIG {
        pvcs.get(&format!("home-{app}-config"))
            .await
            .unwrap_or_else(|e| panic!("{app} config claim: {e}"));
    }
    let status = stack.status.expect("status");
    assert_eq!(status.apps_ready.as_deref(), Some("9/9"));
    assert_eq!(status.observed_generation, stack.metadata.generation);
    assert!(
        status
            .apps
            .iter()
            .any(|a| a.name == "jellyfin" && a.urls == vec!["http://jellyfin.lan".to_string()])
    );
    // What users and GitOps tools run:
    kubectl(&[
        "wait",
        "--for=condition=Ready",
        "mediastack/home",
        "-n",
        &ns.name,
        "--timeout=10s",
    ])
    .await
    .expect("kubectl wait returns");
}

#[tokio::test(flavor = "multi_thread")]
async fn disabling_an_app_keeps_its_config_and_deleting_the_stack_collects_everything() {
    let (ns, _op, _) = ready_example_stack("prune").await;
    let stacks: Api<MediaStack> = ns.api();
    stacks
        .patch("home", &PatchParams::apply("e2e-toggle"), &Patch::Apply(json!({"apiVersion": "mediastack.io/v1alpha1", "kind": "MediaStack", "spec": {"apps": {"sonarr": {"enabled": false}}}})))
        .await
        .expect("disable sonarr");
    let deployments: Api<Deployment> = ns.api();
    let services: Api<Service> = ns.api();
    let pvcs: Api<PersistentVolumeClaim> = ns.api();
    wait_for("sonarr Deployment and Service removed", TIMEOUT, || async {
        Ok(deployments.get_opt("home-sonarr").await?.is_none()
            && services.get_opt("home-sonarr").await?.is_none())
    })
    .await
    .expect("pruned");
    assert!(
        pvcs.get_opt("home-sonarr-config")
            .await
            .expect("read")
            .is_some(),
        "config is user data: kept"
    );
    assert!(
        deployments
            .get_opt("home-radarr")
            .await
            .expect("read")
            .is_some(),
        "other apps untouched"
    );

    let cluster_binding: Api<ClusterRoleBinding> = Api::all(ns.client.clone());
    let binding = cluster_binding
        .get(&format!("mediastack:{}:home:dozzle", ns.name))
        .await
        .expect("Dozzle reads nodes through a ClusterRoleBinding");
    assert_eq!(
        binding.role_ref.name, "mediastack-operator-node-reader",
        "bound to the chart's fixed ClusterRole (the operator writes none)"
    );
    let cluster_role: Api<ClusterRole> = Api::all(ns.client.clone());
    assert!(
        cluster_role
            .get_opt(&format!("mediastack:{}:home:dozzle", ns.name))
            .await
            .expect("read")
            .is_none(),
        "no per-stack ClusterRole"
    );
    stacks
        .delete("home", &DeleteParams::foreground())
        .await
        .expect("delete stack");
    wait_for(
        "garbage collection of the stack's children",
        Duration::from_secs(120),
        || async {
            let left = deployments
                .list(&ListParams::default().labels("mediastack.io/stack=home"))
                .await?
                .items
                .len();
            Ok(left == 0 && services.get_opt("home-jellyfin").await?.is_none())
        },
    )
    .await
    .expect("children collected");
    // Dozzle's ClusterRoleBinding cannot be owned by the stack: the
    // operator sweeps it once the stack is gone.
    let bindings: Api<ClusterRoleBinding> = Api::all(ns.client.clone());
    let name = format!("mediastack:{}:home:dozzle", ns.name);
    wait_for(
        "Dozzle's cluster RBAC removed",
        Duration::from_secs(60),
        || async { Ok(bindings.get_opt(&name).await?.is_none()) },
    )
    .await
    .expect("cluster-scoped children swept");
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_is_repaired() {
    let (ns, _op, _) = ready_example_stack("drift").await;
    let deployments: Api<Deployment> = ns.api();
    deployments
        .delete("home-radarr", &DeleteParams::default())
        .await
        .expect("delete by hand");
    deployments
        .patch("home-sonarr", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "sonarr", "image": "example.org/evil:1"}]}}}})))
        .await
        .expect("edit by hand");
    wait_for(
        "deleted Deployment restored",
        Duration::from_secs(30),
        || async { Ok(deployments.get_opt("home-radarr").await?.is_some()) },
    )
    .await
    .expect("restored");
    wait_for("edited image restored", Duration::from_secs(30), || async {
        let d = deployments.get("home-sonarr").await?;
        let image = d
            .spec
            .template
            .spec
            .and_then(|s| s.containers.into_iter().find(|c| c.name == "sonarr"))
            .and_then(|c| c.image);
        Ok(image.is_some_and(|i| i.starts_with("lscr.io/linuxserver/sonarr:")))
    })
    .await
    .expect("image restored");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_settled_stack_resyncs_without_writes() {
    let (ns, op, _) = ready_example_stack("noop").await;
    // The wiring task has attempted every link (docs/wiring.md; here the
    // apps are not reachable, so they fail and are retried with backoff):
    // its first status write is done before the window below, and a retry
    // that falls inside the window must write nothing either.
    let stacks: Api<MediaStack> = ns.api();
    wait_for(
        "every wiring link attempted",
        Duration::from_secs(180),
        || async {
            let s = stacks.get("home").await?;
            Ok(condition(&s, "Wired").is_some_and(|(_, r, _)| r != "Pending"))
        },
    )
    .await
    .expect("the Wired condition past Pending");
    // Let the last status write and controller-manager updates settle.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let runs = |t: &str| {
        sum_counter(t, "mediastack_operator_reconcile_runs_total", |l| {
            l.contains("MediaStack")
        })
    };
    let runs_before = runs(&op.metrics().await);
    // At least 16 s, and at least two resyncs (5 s apart, longer on a loaded
    // machine) in the window whose writes are counted.
    let window = async {
        tokio::time::sleep(Duration::from_secs(16)).await;
        if op.metrics_url.is_some() {
            wait_for(
                "two resyncs of the settled stack",
                Duration::from_secs(60),
                || async { Ok(runs(&op.metrics().await) >= runs_before + 2.0) },
            )
            .await
            .expect("the stack was resynced at least twice");
        }
    };
    if let Some(before) = audited_writes(&ns.name) {
        // The local control plane audits every write with its client and namespace.
        window.await;
        let after = audited_writes(&ns.name).unwrap_or_default();
        let new: Vec<_> = after.iter().skip(before.len()).collect();
        assert!(
            new.is_empty(),
            "write requests during no-op resyncs: {new:?}"
        );
    } else {
        // Elsewhere (kind): the API server's counters, which count every
        // client, so this needs no other test writing at the same time.
        let client = mediastack_e2e::client().await;
        let is_write = |l: &str| {
            [
                "verb=\"POST\"",
                "verb=\"PUT\"",
                "verb=\"PATCH\"",
                "verb=\"APPLY\"",
                "verb=\"DELETE\"",
            ]
            .iter()
            .any(|v| l.contains(v))
                && [
                    "\"mediastacks\"",
                    "\"vpngateways\"",
                    "\"ingressroutes\"",
                    "\"services\"",
                    "\"configmaps\"",
                    "\"secrets\"",
                    "\"networkpolicies\"",
                    "\"persistentvolumeclaims\"",
                ]
                .iter()
                .any(|r| l.contains(&format!("resource={r}")))
        };
        let before = sum_counter(
            &apiserver_metrics(&client).await.expect("metrics"),
            "apiserver_request_total",
            is_write,
        );
        window.await;
        let after = sum_counter(
            &apiserver_metrics(&client).await.expect("metrics"),
            "apiserver_request_total",
            is_write,
        );
        assert_eq!(after - before, 0.0, "write requests during no-op resyncs");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gives_conditions_and_events_and_loses_nothing() {
    let (ns, _op, _) = ready_example_stack("bad").await;
    let deployments: Api<Deployment> = ns.api();
    let stacks: Api<MediaStack> = ns.api();
    let base = serde_yaml::from_str::<serde_json::Value>(&example("examples/mediastack.yaml"))
        .expect("yaml")["spec"]
        .clone();

    // 1. A data claim that does not exist: stalled, nothing torn down.
    let mut spec = base.clone();
    spec["storage"]["data"] = json!({"claimName": "nope"});
    apply_spec(&stacks, spec).await;
    let s =
        wait_condition::<MediaStack>(&ns, "home", "Stalled", "True", Some("ClaimNotFound")).await;
    assert!(
        condition(&s, "Stalled")
            .is_some_and(|c| c.2.contains("PersistentVolumeClaim nope does not exist"))
    );
    assert!(
        !warning_events(&ns, "ClaimNotFound").await.is_empty()
            || wait_for("event", TIMEOUT, || async {
                Ok(!warning_events(&ns, "ClaimNotFound").await.is_empty())
            })
            .await
            .is_ok()
    );
    let d = deployments.get("home-jellyfin").await.expect("still there");
    assert_eq!(
        d.spec.replicas,
        Some(1),
        "running apps are not touched by bad input"
    );

    // 2. Dashboard auth Secret missing: stalled with its own reason.
    let mut spec = base.clone();
    spec["ingress"] = json!({"traefik": {"dashboardAuthSecretRef": {"name": "missing-users"}}});
    apply_spec(&stacks, spec).await;
    let s =
        wait_condition::<MediaStack>(&ns, "home", "Stalled", "True", Some("SecretNotFound")).await;
    assert!(condition(&s, "Ready").is_some_and(|c| c.0 == "False"));
    wait_for("SecretNotFound event", TIMEOUT, || async {
        Ok(!warning_events(&ns, "SecretNotFound").await.is_empty())
    })
    .await
    .expect("event");

    // 3. Back to valid: Ready again.
    apply_spec(&stacks, base.clone()).await;
    wait_condition::<MediaStack>(&ns, "home", "Ready", "True", None).await;

    // 4. The VPN Secret loses a key: qBittorrent fails closed, others keep running.
    let secrets: Api<Secret> = ns.api();
    secrets
        .patch(
            "mullvad-wireguard",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"privateKey": null}})),
        )
        .await
        .expect("remove key");
    wait_for("qBittorrent scaled to 0", TIMEOUT, || async {
        Ok(deployments.get("home-qbittorrent").await?.spec.replicas == Some(0))
    })
    .await
    .expect("fail closed");
    let s =
        wait_condition::<MediaStack>(&ns, "home", "Ready", "False", Some("VpnUnavailable")).await;
    let qb = s
        .status
        .as_ref()
        .and_then(|st| st.apps.iter().find(|a| a.name == "qbittorrent").cloned())
        .expect("qbittorrent status");
    assert!(
        qb.waiting_for
            .as_deref()
            .is_some_and(|w| w.contains("privateKey")),
        "{qb:?}"
    );
    let d = deployments
        .get("home-qbittorrent")
        .await
        .expect("deployment");
    let init = d
        .spec
        .template
        .spec
        .and_then(|s| s.init_containers)
        .unwrap_or_default();
    assert!(
        init.iter().any(|c| c.name == "gluetun"),
        "the sidecar stays in the pod template"
    );
    assert_eq!(
        deployments
            .get("home-sonarr")
            .await
            .expect("sonarr")
            .spec
            .replicas,
        Some(1)
    );

    // 5. The VpnGateway is deleted: still closed, with its own message.
    secrets
        .patch(
            "mullvad-wireguard",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"privateKey": "a2V5"}})),
        )
        .await
        .expect("restore key");
    wait_for("qBittorrent back", TIMEOUT, || async {
        Ok(deployments.get("home-qbittorrent").await?.spec.replicas == Some(1))
    })
    .await
    .expect("restored");
    kubectl(&["delete", "vpngateway", "mullvad", "-n", &ns.name])
        .await
        .expect("delete gateway");
    wait_for("qBittorrent closed again", TIMEOUT, || async {
        Ok(deployments.get("home-qbittorrent").await?.spec.replicas == Some(0))
    })
    .await
    .expect("closed");
    wait_for("Waiting event naming the gateway", TIMEOUT, || async {
        Ok(warning_events(&ns, "Waiting")
            .await
            .iter()
            .any(|m| m.contains("VpnGateway mullvad")))
    })
    .await
    .expect("event");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_enabled_later_gets_its_api_key_and_existing_keys_stay() {
    let ns = mediastack_e2e::TestNamespace::new("later").await;
    let _op = mediastack_e2e::Operator::start(&ns).await;
    ns.apply_yaml(mediastack_e2e::stack::WIREGUARD_SECRET, "e2e")
        .await
        .expect("secret");
    ns.apply_yaml(&example("examples/vpngateway.yaml"), "e2e")
        .await
        .expect("gateway");
    let without_radarr = example("examples/mediastack.yaml").replace("    radarr: {}\n", "");
    ns.apply_yaml(&without_radarr, "e2e").await.expect("stack");
    wait_condition::<MediaStack>(&ns, "home", "Ready", "True", None).await;
    let secrets: Api<Secret> = ns.api();
    let keys = |s: Secret| s.data.unwrap_or_default();
    let before = keys(secrets.get("home-api-keys").await.expect("API keys"));
    assert!(before.contains_key("sonarr") && !before.contains_key("radarr"));

    ns.apply_yaml(&example("examples/mediastack.yaml"), "e2e")
        .await
        .expect("enable radarr");
    wait_for("radarr's API key", TIMEOUT, || async {
        Ok(keys(secrets.get("home-api-keys").await?).contains_key("radarr"))
    })
    .await
    .expect("key added");
    let after = keys(secrets.get("home-api-keys").await.expect("API keys"));
    assert_eq!(
        after.get("sonarr"),
        before.get("sonarr"),
        "an existing key never changes"
    );
    wait_condition::<MediaStack>(&ns, "home", "Ready", "True", None).await;
}

/// A child the API server refuses after admission (requests above limits:
/// the CRD cannot see it, the Deployment validation does) stalls the stack
/// with the object's name and the server's message and a Warning event,
/// while every other child is still applied and pruned; fixing the spec
/// clears it.
#[tokio::test(flavor = "multi_thread")]
async fn a_child_the_server_refuses_is_named_and_the_other_children_are_still_applied() {
    let (ns, _op, _) = ready_example_stack("refuse").await;
    let deployments: Api<Deployment> = ns.api();
    let stacks: Api<MediaStack> = ns.api();
    let base = serde_yaml::from_str::<serde_json::Value>(&example("examples/mediastack.yaml"))
        .expect("yaml")["spec"]
        .clone();
    let sonarr_before = deployments.get("home-sonarr").await.expect("sonarr");

    let mut spec = base.clone();
    spec["apps"]["sonarr"] =
        json!({"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}});
    spec["apps"]["radarr"] = json!({"env": [{"name": "E2E_MARK", "value": "applied"}]});
    spec["apps"]["bazarr"] = json!({"enabled": false});
    apply_spec(&stacks, spec).await;

    let s = wait_condition::<MediaStack>(&ns, "home", "Stalled", "True", Some("ApplyFailed")).await;
    let (_, _, message) = condition(&s, "Stalled").expect("Stalled");
    assert!(
        message.contains("cannot apply apps/Deployment/home-sonarr:"),
        "the condition names the refused object: {message}"
    );
    assert!(
        message.contains("must be less than or equal to memory limit"),
        "and carries the server's message: {message}"
    );
    assert!(
        condition(&s, "Ready").is_some_and(|c| c.0 == "False" && c.1 == "ApplyFailed"),
        "Ready=False: {:?}",
        condition(&s, "Ready")
    );
    mediastack_e2e::stack::wait_event(&ns, "ApplyFailed", "apps/Deployment/home-sonarr").await;

    // The other children: radarr updated, bazarr pruned, sonarr's previous
    // version kept as it was.
    let radarr = deployments.get("home-radarr").await.expect("radarr");
    let env = radarr.spec.template.spec.as_ref().expect("pod").containers[0]
        .env
        .clone()
        .unwrap_or_default();
    assert!(
        env.iter()
            .any(|e| e.name == "E2E_MARK" && e.value.as_deref() == Some("applied")),
        "radarr was applied after sonarr was refused"
    );
    wait_for("bazarr pruned", TIMEOUT, || async {
        Ok(deployments.get_opt("home-bazarr").await?.is_none())
    })
    .await
    .expect("bazarr pruned although sonarr was refused");
    let sonarr_now = deployments.get("home-sonarr").await.expect("sonarr kept");
    assert_eq!(
        sonarr_now.metadata.generation, sonarr_before.metadata.generation,
        "the refused child keeps its previous version"
    );

    // Fixed: Ready again, the stall gone.
    apply_spec(&stacks, base).await;
    let s = wait_condition::<MediaStack>(&ns, "home", "Ready", "True", None).await;
    assert!(
        condition(&s, "Stalled").is_none_or(|c| c.0 == "False"),
        "{:?}",
        condition(&s, "Stalled")
    );
}
