//! Monitoring objects, and a cluster without the prometheus-operator CRDs.
//!
//! Its own test binary with one test: it removes and reinstalls cluster-wide
//! CRDs, and cargo runs test binaries one after another.

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use mediastack_e2e::stack::{condition, ready_example_stack, wait_condition};
use mediastack_e2e::{TIMEOUT, TestNamespace, kubectl, repo_root, wait_for};
use mediastack_operator::api::MediaStack;
use serde_json::json;

const CRDS: [&str; 3] = [
    "servicemonitors.monitoring.coreos.com",
    "podmonitors.monitoring.coreos.com",
    "prometheusrules.monitoring.coreos.com",
];

fn monitoring(ns: &TestNamespace, kind: &str, plural: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", kind),
        plural,
    );
    Api::namespaced_with(ns.client.clone(), &ns.name, &ar)
}

fn crd_file() -> std::path::PathBuf {
    std::env::var_os("MEDIASTACK_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared"))
        .join("thirdparty/crds/monitoring-crds.yaml")
}

#[tokio::test(flavor = "multi_thread")]
async fn monitoring_objects_follow_the_apps_and_the_crds() {
    // 1. With the CRDs: monitors, alert rules and dashboards, accepted by the schemas.
    let (ns, _op, _) = ready_example_stack("mon").await;
    let monitors = monitoring(&ns, "ServiceMonitor", "servicemonitors");
    let rules = monitoring(&ns, "PrometheusRule", "prometheusrules");
    let s = wait_condition::<MediaStack>(&ns, "home", "MonitoringReady", "True", None).await;
    assert!(condition(&s, "MonitoringReady").is_some());
    for m in [
        "home-sonarr",
        "home-radarr",
        "home-prowlarr",
        "home-bazarr",
        "home-qbittorrent",
        "home-jellyfin",
        "home-traefik",
    ] {
        monitors
            .get(m)
            .await
            .unwrap_or_else(|e| panic!("ServiceMonitor {m}: {e}"));
    }
    rules.get("home-alerts").await.expect("PrometheusRule");
    let cms: Api<ConfigMap> = ns.api();
    let dash = cms
        .get("home-grafana-dashboards")
        .await
        .expect("dashboards");
    assert_eq!(
        dash.metadata
            .labels
            .unwrap_or_default()
            .get("grafana_dashboard")
            .map(String::as_str),
        Some("1")
    );

    let stacks: Api<MediaStack> = ns.api();
    let off = json!({"apiVersion": "mediastack.io/v1alpha1", "kind": "MediaStack", "spec": {"apps": {"sonarr": {"enabled": false}}}});
    stacks
        .patch(
            "home",
            &PatchParams::apply("e2e-toggle"),
            &Patch::Apply(&off),
        )
        .await
        .expect("disable sonarr");
    wait_for("sonarr's monitor removed", TIMEOUT, || async {
        Ok(monitors.get_opt("home-sonarr").await?.is_none())
    })
    .await
    .expect("pruned");

    // 2. Without the CRDs: the stack is still Ready and says why monitoring is off.
    let crds: Api<CustomResourceDefinition> = Api::all(ns.client.clone());
    for c in CRDS {
        crds.delete(c, &DeleteParams::default())
            .await
            .expect("delete CRD");
    }
    wait_for("monitoring CRDs gone", TIMEOUT, || async {
        for c in CRDS {
            if crds.get_opt(c).await?.is_some() {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await
    .expect("CRDs deleted");
    let (ns2, _op2, _) = ready_example_stack("nomon").await;
    let s = wait_condition::<MediaStack>(
        &ns2,
        "home",
        "MonitoringReady",
        "False",
        Some("CRDNotInstalled"),
    )
    .await;
    assert_eq!(
        condition(&s, "Ready").map(|c| c.0).as_deref(),
        Some("True"),
        "the stack works without monitoring"
    );

    // 3. The CRDs come back: the objects appear without restarting the operator.
    let file = crd_file();
    kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        file.to_str().unwrap_or_default(),
    ])
    .await
    .expect("reinstall CRDs");
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd",
        CRDS[0],
        CRDS[2],
        "--timeout=60s",
    ])
    .await
    .expect("established");
    let monitors2 = monitoring(&ns2, "ServiceMonitor", "servicemonitors");
    wait_for(
        "monitors created after the CRDs appear",
        std::time::Duration::from_secs(120),
        || async { Ok(monitors2.get_opt("home-radarr").await?.is_some()) },
    )
    .await
    .expect("monitors appear");
    wait_condition::<MediaStack>(&ns2, "home", "MonitoringReady", "True", None).await;
}
