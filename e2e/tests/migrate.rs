//! Moving from Compose, against a real API server: an adopted config claim
//! and the user's API key are used as given and never owned or deleted;
//! service aliases never take over a Service the user made; host devices
//! follow the admin policy; misplaced fields are refused at admission.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use mediastack_e2e::stack::{WIREGUARD_SECRET, example, wait_condition, wait_event};
use mediastack_e2e::{Operator, TIMEOUT, TestNamespace, api_message, wait_for};
use mediastack_operator::api::MediaStack;
use serde_json::json;

const USERS_SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: radarr, labels: {owner: me}}\nspec:\n  selector: {app: my-radarr}\n  ports: [{name: web, port: 7878}]\n";
const USERS_CLAIM: &str = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: compose-sonarr}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n";
const SONARR_KEY: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: sonarr-key}\nstringData: {apiKey: 0123456789abcdef0123456789abcdef}\n";

fn migrated_stack() -> String {
    let yaml = example("examples/mediastack.yaml")
        .replace(
            "    sonarr: {}",
            "    sonarr: {config: {existingClaim: compose-sonarr}, apiKeySecretRef: {name: sonarr-key}, serviceAliases: [sonarr]}",
        )
        .replace("    radarr: {}", "    radarr: {serviceAliases: [radarr]}");
    assert!(yaml.contains("compose-sonarr") && yaml.contains("serviceAliases: [radarr]"));
    yaml
}

#[tokio::test(flavor = "multi_thread")]
async fn adopted_config_and_keys_are_used_as_given_and_aliases_take_nothing_over() {
    let ns = TestNamespace::new("migrate").await;
    let _op = Operator::start(&ns).await;
    ns.apply_yaml(USERS_SERVICE, "e2e")
        .await
        .expect("user's Service");
    ns.apply_yaml(WIREGUARD_SECRET, "e2e")
        .await
        .expect("secret");
    ns.apply_yaml(&example("examples/vpngateway.yaml"), "e2e")
        .await
        .expect("gateway");
    ns.apply_yaml(&migrated_stack(), "e2e")
        .await
        .expect("stack");

    // The adopted claim is missing: nothing is started on an empty config.
    let stack =
        wait_condition::<MediaStack>(&ns, "home", "Stalled", "True", Some("ClaimNotFound")).await;
    let (_, _, message) = mediastack_e2e::stack::condition(&stack, "Stalled").expect("Stalled");
    assert!(
        message.contains("apps.sonarr.config.existingClaim") && message.contains("compose-sonarr"),
        "{message}"
    );
    let deployments: Api<Deployment> = ns.api();
    assert!(
        deployments
            .get_opt("home-sonarr")
            .await
            .expect("get")
            .is_none(),
        "sonarr is not started without its config"
    );

    ns.apply_yaml(USERS_CLAIM, "e2e").await.expect("claim");
    ns.apply_yaml(SONARR_KEY, "e2e").await.expect("key");
    let stack = wait_condition::<MediaStack>(&ns, "home", "Ready", "True", None).await;

    // Sonarr runs on the user's claim, mounted whole at /config, with the user's key.
    let d = deployments.get("home-sonarr").await.expect("sonarr");
    let pod = serde_json::to_value(d.spec.template.spec.expect("pod")).expect("json");
    let config = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "config")
        .expect("config volume");
    assert_eq!(
        config["persistentVolumeClaim"]["claimName"],
        "compose-sonarr"
    );
    let containers = pod["containers"].as_array().expect("containers");
    let sonarr = containers
        .iter()
        .find(|c| c["name"] == "sonarr")
        .expect("sonarr");
    let mount = sonarr["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["name"] == "config")
        .expect("config mount");
    assert_eq!(mount["mountPath"], "/config");
    assert!(mount.get("subPath").is_none(), "{mount}");
    let users_key = json!({"secretKeyRef": {"name": "sonarr-key", "key": "apiKey"}});
    let var = |c: &serde_json::Value, name: &str| {
        c["env"]
            .as_array()
            .and_then(|e| e.iter().find(|v| v["name"] == name).cloned())
            .unwrap_or_else(|| panic!("{name} in {c}"))
    };
    assert_eq!(var(sonarr, "SONARR__AUTH__APIKEY")["valueFrom"], users_key);
    let exporter = containers
        .iter()
        .find(|c| c["name"] == "exporter")
        .expect("exporter");
    assert_eq!(var(exporter, "API_KEY")["valueFrom"], users_key);
    let pvcs: Api<PersistentVolumeClaim> = ns.api();
    assert!(
        pvcs.get_opt("home-sonarr-config")
            .await
            .expect("get")
            .is_none(),
        "no config claim of the operator's for an adopted config"
    );

    // The free alias is served; the taken one is left to its owner and reported.
    let services: Api<Service> = ns.api();
    let alias = services.get("sonarr").await.expect("alias Service sonarr");
    let selector = alias
        .spec
        .clone()
        .and_then(|s| s.selector)
        .unwrap_or_default();
    assert_eq!(
        selector.get("app.kubernetes.io/name").map(String::as_str),
        Some("sonarr")
    );
    let theirs = services.get("radarr").await.expect("user's Service");
    let labels = theirs.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("owner").map(String::as_str), Some("me"));
    assert!(
        !labels.contains_key("app.kubernetes.io/managed-by"),
        "{labels:?}"
    );
    assert_eq!(
        theirs
            .spec
            .and_then(|s| s.selector)
            .unwrap_or_default()
            .get("app")
            .map(String::as_str),
        Some("my-radarr"),
        "the user's Service was not taken over"
    );
    let (status, reason, message) =
        mediastack_e2e::stack::condition(&stack, "ServiceAliasConflict").expect("condition");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "ServiceExists")
    );
    assert!(message.contains("Service radarr"), "{message}");
    wait_event(&ns, "ServiceAliasConflict", "Service radarr").await;

    // Deleting the stack removes its alias, never the user's claim or Service.
    let stacks: Api<MediaStack> = ns.api();
    stacks
        .delete("home", &DeleteParams::foreground())
        .await
        .expect("delete");
    wait_for(
        "alias Service sonarr is garbage-collected",
        TIMEOUT,
        || async { Ok(services.get_opt("sonarr").await?.is_none()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    wait_for("the stack is gone", TIMEOUT, || async {
        Ok(stacks.get_opt("home").await?.is_none())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let claim = pvcs.get("compose-sonarr").await.expect("user's claim kept");
    assert!(claim.metadata.deletion_timestamp.is_none());
    assert!(claim.metadata.owner_references.is_none());
    assert!(services.get_opt("radarr").await.expect("get").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn host_devices_follow_the_policy_and_misplaced_fields_are_refused_at_admission() {
    let ns = TestNamespace::new("hwaccel").await;
    let _op = Operator::start(&ns).await;
    ns.apply_yaml(WIREGUARD_SECRET, "e2e")
        .await
        .expect("secret");
    ns.apply_yaml(&example("examples/vpngateway.yaml"), "e2e")
        .await
        .expect("gateway");
    let stacks: Api<MediaStack> = ns.api();
    let with_apps = |apps: serde_json::Value| {
        let mut v: serde_json::Value =
            serde_yaml::from_str(&example("examples/mediastack.yaml")).expect("example");
        v["metadata"]["namespace"] = json!(ns.name);
        for (k, a) in apps.as_object().expect("apps") {
            v["spec"]["apps"][k] = a.clone();
        }
        v
    };

    // The CRD refuses the fields on apps they do not apply to.
    for (apps, rule) in [
        (
            json!({"sonarr": {"cache": {"sizeLimit": "1Gi"}}}),
            "apply to apps.jellyfin only",
        ),
        (
            json!({"jellyfin": {"apiKeySecretRef": {"name": "k"}}}),
            "apiKeySecretRef applies to apps.sonarr",
        ),
        (
            json!({"sonarr": {"config": {"hostPath": "/etc/sonarr"}}}),
            "must not be a system directory",
        ),
        (
            json!({"sonarr": {"config": {"existingClaim": "a", "hostPath": "/srv/a"}}}),
            "exactly one of existingClaim or hostPath",
        ),
        (
            json!({"jellyfin": {"hardwareAcceleration": {"devicePlugin": {"resource": "amd.com/gpu"}}}}),
            "hardwareAcceleration.devicePlugin.resource",
        ),
    ] {
        let err = stacks
            .patch(
                "home",
                &PatchParams::apply("e2e"),
                &Patch::Apply(with_apps(apps.clone())),
            )
            .await
            .expect_err(&format!("{apps} is refused"));
        let msg = api_message(&err);
        assert!(msg.contains(rule), "{apps}: {msg}");
    }

    // /dev/dri is a host device: refused by the default policy, by name.
    stacks
        .patch(
            "home",
            &PatchParams::apply("e2e"),
            &Patch::Apply(with_apps(
                json!({"jellyfin": {"hardwareAcceleration": {"dri": {"renderGroup": 105}}}}),
            )),
        )
        .await
        .expect("admission accepts it (the operator's policy decides)");
    let stack =
        wait_condition::<MediaStack>(&ns, "home", "Stalled", "True", Some("NotAllowed")).await;
    let (_, _, message) = mediastack_e2e::stack::condition(&stack, "Stalled").expect("Stalled");
    assert!(
        message.contains("apps.jellyfin.hardwareAcceleration.dri")
            && message.contains("--allow-host-devices"),
        "{message}"
    );
    wait_event(&ns, "NotAllowed", "--allow-host-devices").await;

    // A device-plugin GPU needs no host access: rendered into the limits.
    stacks
        .patch(
            "home",
            &PatchParams::apply("e2e"),
            &Patch::Apply(with_apps(json!({"jellyfin": {"hardwareAcceleration": {"devicePlugin": {"resource": "gpu.intel.com/i915"}}, "cache": {"sizeLimit": "20Gi"}}}))),
        )
        .await
        .expect("device plugin");
    let deployments: Api<Deployment> = ns.api();
    wait_for("jellyfin asks for the Intel GPU", TIMEOUT, || async {
        let Some(d) = deployments.get_opt("home-jellyfin").await? else {
            return Ok(false);
        };
        let pod = serde_json::to_value(d.spec.template.spec)?;
        let limit = &pod["containers"][0]["resources"]["limits"]["gpu.intel.com/i915"];
        let cache = pod["volumes"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["name"] == "cache").cloned())
            .unwrap_or_default();
        Ok(limit == "1" && cache["emptyDir"]["sizeLimit"] == "20Gi")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}
