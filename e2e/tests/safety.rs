//! Safe by default, against a real API server (with the garbage collector of
//! kube-controller-manager): config claims outlive their stack and are
//! adopted again only by a stack of the same name; the admin policy refuses
//! what it does not allow without touching what runs.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use mediastack_e2e::stack::{
    example, example_stack, ready_example_stack, wait_condition, wait_event,
};
use mediastack_e2e::{Operator, TIMEOUT, TestNamespace, wait_for};
use mediastack_operator::api::MediaStack;
use serde_json::json;

/// Apps of the example stack that have a config claim.
const WITH_CONFIG: [&str; 7] = [
    "jellyfin",
    "jellyseerr",
    "sonarr",
    "radarr",
    "prowlarr",
    "bazarr",
    "qbittorrent",
];

/// Claim name -> UID of every config claim of stack `home`.
async fn config_claims(pvcs: &Api<PersistentVolumeClaim>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for app in WITH_CONFIG {
        let name = format!("home-{app}-config");
        if let Some(c) = pvcs.get_opt(&name).await.expect("read claim") {
            out.insert(name, c.metadata.uid.unwrap_or_default());
        }
    }
    out
}

/// The claim an app's Deployment mounts as `config`.
fn config_claim_of(d: &Deployment) -> Option<String> {
    let v = serde_json::to_value(d).ok()?;
    v["spec"]["template"]["spec"]["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == "config")?["persistentVolumeClaim"]["claimName"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn config_claims_survive_deleting_the_stack_and_are_adopted_again() {
    let (ns, _op, _) = ready_example_stack("keep").await;
    let pvcs: Api<PersistentVolumeClaim> = ns.api();
    let before = config_claims(&pvcs).await;
    assert_eq!(before.len(), WITH_CONFIG.len(), "{before:?}");
    for name in before.keys() {
        let c = pvcs.get(name).await.expect("claim");
        assert!(
            c.metadata.owner_references.unwrap_or_default().is_empty(),
            "{name} is not owned by the stack"
        );
    }

    let stacks: Api<MediaStack> = ns.api();
    stacks
        .delete("home", &DeleteParams::foreground())
        .await
        .expect("delete stack");
    let deployments: Api<Deployment> = ns.api();
    wait_for(
        "the stack and its Deployments are gone (garbage collector)",
        Duration::from_secs(120),
        || async {
            let left = deployments
                .list(&ListParams::default().labels("mediastack.io/stack=home"))
                .await?
                .items
                .len();
            Ok(left == 0 && stacks.get_opt("home").await?.is_none())
        },
    )
    .await
    .expect("stack deleted");
    assert_eq!(
        config_claims(&pvcs).await,
        before,
        "every config claim still exists, same UID"
    );

    ns.apply_yaml(&example("examples/mediastack.yaml"), "e2e")
        .await
        .expect("re-apply stack");
    wait_condition::<MediaStack>(&ns, "home", "Ready", "True", None).await;
    assert_eq!(
        config_claims(&pvcs).await,
        before,
        "the re-created stack adopted the same claims"
    );
    for app in WITH_CONFIG {
        let d = deployments
            .get(&format!("home-{app}"))
            .await
            .expect("Deployment");
        assert_eq!(
            config_claim_of(&d).as_deref(),
            Some(format!("home-{app}-config").as_str()),
            "{app} mounts its old claim"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_with_app_makes_config_claims_disposable() {
    let ns = TestNamespace::new("disposable").await;
    let _op = Operator::start(&ns).await;
    let yaml = example("examples/mediastack.yaml").replace(
        "config: {size: 1Gi}",
        "config: {size: 1Gi, deleteWithApp: true}",
    );
    assert!(yaml.contains("deleteWithApp: true"));
    example_stack(&ns).await;
    ns.apply_yaml(&yaml, "e2e").await.expect("stack");
    wait_condition::<MediaStack>(&ns, "home", "Ready", "True", None).await;
    let pvcs: Api<PersistentVolumeClaim> = ns.api();
    wait_for("disposable claims owned by the stack", TIMEOUT, || async {
        Ok(pvcs
            .get("home-sonarr-config")
            .await?
            .metadata
            .owner_references
            .is_some_and(|o| o.iter().any(|r| r.kind == "MediaStack")))
    })
    .await
    .expect("owned");
    let stacks: Api<MediaStack> = ns.api();
    stacks
        .patch(
            "home",
            &PatchParams::apply("e2e-toggle"),
            &Patch::Apply(json!({"apiVersion": "mediastack.io/v1alpha1", "kind": "MediaStack", "spec": {"apps": {"sonarr": {"enabled": false}}}})),
        )
        .await
        .expect("disable sonarr");
    wait_for("sonarr's claim deleted with the app", TIMEOUT, || async {
        Ok(pvcs
            .get_opt("home-sonarr-config")
            .await?
            .is_none_or(|c| c.metadata.deletion_timestamp.is_some()))
    })
    .await
    .expect("deleted with the app");
    assert!(
        pvcs.get_opt("home-radarr-config")
            .await
            .expect("read")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stack_never_adopts_claims_that_are_not_its_own() {
    let ns = TestNamespace::new("conflict").await;
    let _op = Operator::start(&ns).await;
    // A claim the user made, and one another stack (`cinema`) made, under the
    // names stack `home` would use.
    let claim = |name: &str, labels: serde_json::Value| {
        format!(
            "{{\"apiVersion\": \"v1\", \"kind\": \"PersistentVolumeClaim\", \"metadata\": {{\"name\": \"{name}\", \"labels\": {labels}}}, \"spec\": {{\"accessModes\": [\"ReadWriteOnce\"], \"resources\": {{\"requests\": {{\"storage\": \"1Gi\"}}}}}}}}"
        )
    };
    ns.apply_yaml(&claim("home-sonarr-config", json!({})), "e2e")
        .await
        .expect("user's claim");
    ns.apply_yaml(
        &claim(
            "home-radarr-config",
            json!({"app.kubernetes.io/managed-by": "mediastack-operator", "mediastack.io/stack": "cinema"}),
        ),
        "e2e",
    )
    .await
    .expect("another stack's claim");
    example_stack(&ns).await;
    let stack =
        wait_condition::<MediaStack>(&ns, "home", "Stalled", "True", Some("ClaimConflict")).await;
    let (_, _, message) =
        mediastack_e2e::stack::condition(&stack, "Stalled").expect("Stalled condition");
    assert!(message.contains("home-sonarr-config"), "{message}");
    assert!(
        message.contains("belongs to MediaStack cinema"),
        "{message}"
    );
    wait_event(&ns, "ClaimConflict", "home-radarr-config").await;
    let deployments: Api<Deployment> = ns.api();
    assert!(
        deployments
            .list(&ListParams::default().labels("mediastack.io/stack=home"))
            .await
            .expect("list")
            .items
            .is_empty(),
        "nothing was started on claims that are not the stack's"
    );
    let pvcs: Api<PersistentVolumeClaim> = ns.api();
    let users = pvcs.get("home-sonarr-config").await.expect("claim");
    assert!(
        users.metadata.labels.unwrap_or_default().is_empty(),
        "the user's claim was not relabelled"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_request_keeps_what_runs_and_says_which_flag_allows_it() {
    let (ns, _op, _) = ready_example_stack("policy").await;
    let deployments: Api<Deployment> = ns.api();
    let before = deployments.get("home-sonarr").await.expect("sonarr");
    let stacks: Api<MediaStack> = ns.api();
    let patch = |spec: serde_json::Value| json!({"apiVersion": "mediastack.io/v1alpha1", "kind": "MediaStack", "spec": spec});
    stacks
        .patch(
            "home",
            &PatchParams::apply("e2e-hostile"),
            &Patch::Apply(patch(json!({"apps": {"sonarr": {"env": [{"name": "DOCKER_MODS", "value": "linuxserver/mods:universal-package-install"}]}}}))),
        )
        .await
        .expect("admission accepts it (the operator's policy decides)");
    let stack =
        wait_condition::<MediaStack>(&ns, "home", "Stalled", "True", Some("NotAllowed")).await;
    let (_, _, message) = mediastack_e2e::stack::condition(&stack, "Stalled").expect("Stalled");
    assert!(message.contains("apps.sonarr.env"), "{message}");
    assert!(message.contains("--allow-env DOCKER_MODS"), "{message}");
    wait_event(&ns, "NotAllowed", "DOCKER_MODS").await;
    let after = deployments
        .get("home-sonarr")
        .await
        .expect("sonarr still runs");
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "the running Deployment was not touched"
    );

    // Withdrawn: the stack is reconciled again.
    stacks
        .patch(
            "home",
            &PatchParams::apply("e2e-hostile"),
            &Patch::Apply(patch(json!({}))),
        )
        .await
        .expect("withdraw");
    wait_condition::<MediaStack>(&ns, "home", "Ready", "True", None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_image_the_policy_refuses_stalls_the_stacks_that_use_it() {
    let ns = TestNamespace::new("gw-image").await;
    let _op = Operator::start(&ns).await;
    ns.apply_yaml(mediastack_e2e::stack::WIREGUARD_SECRET, "e2e")
        .await
        .expect("secret");
    let gateway = example("examples/vpngateway.yaml").replace(
        "image: qmcgaw/gluetun:v3.41.1",
        "image: evil.example/gluetun:1",
    );
    assert!(gateway.contains("evil.example/gluetun:1"));
    ns.apply_yaml(&gateway, "e2e").await.expect("gateway");
    ns.apply_yaml(&example("examples/mediastack.yaml"), "e2e")
        .await
        .expect("stack");
    let stack =
        wait_condition::<MediaStack>(&ns, "home", "Stalled", "True", Some("NotAllowed")).await;
    let (_, _, message) = mediastack_e2e::stack::condition(&stack, "Stalled").expect("Stalled");
    assert!(
        message.contains("VpnGateway mullvad spec.image"),
        "{message}"
    );
    assert!(message.contains("--allowed-image"), "{message}");
    wait_event(&ns, "NotAllowed", "evil.example/gluetun").await;
    let deployments: Api<Deployment> = ns.api();
    assert!(
        deployments
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty(),
        "nothing rendered"
    );
}
