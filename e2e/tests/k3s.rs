//! A cluster that already runs Traefik (k3s's bundled one in kube-system),
//! the edge in the stack's status, the generated qBittorrent WebUI login and
//! what `kubectl get mstack` shows, against a real API server.
//!
//! Its own test binary: the fake "k3s Traefik" IngressClass is
//! cluster-scoped and would turn the Traefik of stacks in other tests'
//! namespaces into an existing one; cargo runs test binaries one at a time.

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::IngressClass;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use mediastack_e2e::stack::{condition, ready_example_stack, wait_condition};
use mediastack_e2e::{TIMEOUT, TestNamespace, kubectl, kubectl_stdin, wait_for};
use mediastack_operator::api::MediaStack;
use mediastack_operator::render::vpn::{HASHED_ANNOTATION, PBKDF2_KEY, password_pbkdf2};

const K3S_TRAEFIK: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: traefik
  namespace: kube-system
  labels: {app.kubernetes.io/name: traefik, app.kubernetes.io/instance: traefik-kube-system}
spec:
  replicas: 0
  selector: {matchLabels: {app.kubernetes.io/name: traefik}}
  template:
    metadata: {labels: {app.kubernetes.io/name: traefik}}
    spec: {containers: [{name: traefik, image: rancher/mirrored-library-traefik:3.3.6}]}
"#;

fn traefik_class() -> IngressClass {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": "e2e-k3s-traefik"},
        "spec": {"controller": "traefik.io/ingress-controller"},
    }))
    .expect("IngressClass")
}

/// Any change wakes the controller (watch event) without waiting for the resync.
async fn touch(ns: &TestNamespace, value: &str) {
    let stacks: Api<MediaStack> = ns.api();
    stacks
        .patch(
            "home",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"e2e/touch": value}}})),
        )
        .await
        .expect("touch");
}

async fn status_traefik(ns: &TestNamespace) -> Option<String> {
    let stacks: Api<MediaStack> = ns.api();
    stacks
        .get("home")
        .await
        .ok()
        .and_then(|s| s.status)
        .and_then(|s| s.traefik)
}

#[tokio::test(flavor = "multi_thread")]
async fn k3s_traefik_serves_the_stack_and_the_status_shows_the_edge() {
    let (ns, _op, stack) = ready_example_stack("k3s").await;
    let deployments: Api<Deployment> = ns.api();

    // No Traefik in the cluster: ours runs, and it counts in EdgeReady.
    assert!(
        deployments
            .get_opt("home-traefik")
            .await
            .expect("get")
            .is_some(),
        "managed Traefik"
    );
    let st = stack.status.clone().expect("status");
    assert_eq!(st.traefik.as_deref(), Some("managed"));
    let edge = condition(&stack, "EdgeReady").expect("EdgeReady");
    assert_eq!(
        (edge.0.as_str(), edge.1.as_str()),
        ("True", "Ready"),
        "{edge:?}"
    );
    assert!(edge.2.contains("Traefik"), "{edge:?}");
    assert_eq!(st.dashboard_url.as_deref(), Some("http://dashboard.lan"));

    // The printer columns.
    let table = kubectl(&["get", "mstack", "-n", &ns.name])
        .await
        .expect("get");
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "APPS", "EDGE", "DASHBOARD", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        row[..5],
        [
            "home",
            "True",
            st.apps_ready.as_deref().unwrap_or("?"),
            "Ready",
            "http://dashboard.lan"
        ],
        "{table}"
    );

    // qBittorrent's generated WebUI login: named in status and describe,
    // hashed the way qBittorrent stores it, read by the config step.
    let cred = st
        .credentials
        .iter()
        .find(|c| c.app == "qbittorrent")
        .expect("qbittorrent credentials in status");
    assert_eq!(cred.secret_name, "home-qbittorrent-webui");
    let described = kubectl(&["describe", "mstack", "home", "-n", &ns.name])
        .await
        .expect("describe");
    assert!(described.contains("home-qbittorrent-webui"), "{described}");
    let secrets: Api<Secret> = ns.api();
    let login = secrets
        .get("home-qbittorrent-webui")
        .await
        .expect("login Secret");
    let data = login.data.clone().unwrap_or_default();
    let password = data.get("password").expect("password").0.clone();
    assert!(password.len() >= 16);
    assert_eq!(
        data.get("username").map(|u| u.0.as_slice()),
        Some(&b"admin"[..])
    );
    let stored = String::from_utf8(data.get(PBKDF2_KEY).expect("hash").0.clone()).expect("utf-8");
    let salt = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(stored.split(':').next().unwrap_or_default())
            .expect("salt b64")
    };
    assert_eq!(salt.len(), 16);
    assert_eq!(password_pbkdf2(&password, &salt), stored);
    let qbt = deployments
        .get("home-qbittorrent")
        .await
        .expect("qbittorrent");
    let step = qbt
        .spec
        .template
        .spec
        .and_then(|p| p.init_containers)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.name == "qbittorrent-config")
        .expect("config step");
    let hash_env = step
        .env
        .unwrap_or_default()
        .into_iter()
        .find(|e| e.name == "QBT_WEBUI_PBKDF2")
        .and_then(|e| e.value_from)
        .and_then(|v| v.secret_key_ref)
        .expect("hash from the Secret");
    assert_eq!(
        (hash_env.name.as_str(), hash_env.key.as_str()),
        ("home-qbittorrent-webui", PBKDF2_KEY)
    );

    // The user sets a password of their own: it is re-hashed, never replaced.
    secrets
        .patch(
            "home-qbittorrent-webui",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"data": {"password": ByteString(b"my own secret".to_vec())}}),
            ),
        )
        .await
        .expect("user password");
    touch(&ns, "password").await;
    wait_for("the user's password re-hashed", TIMEOUT, || async {
        let s = secrets.get("home-qbittorrent-webui").await?;
        let d = s.data.clone().unwrap_or_default();
        let stored = d
            .get(PBKDF2_KEY)
            .map(|h| String::from_utf8_lossy(&h.0).to_string())
            .unwrap_or_default();
        let salt = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(stored.split(':').next().unwrap_or_default())
                .unwrap_or_default()
        };
        Ok(
            d.get("password").map(|p| p.0.as_slice()) == Some(&b"my own secret"[..])
                && s.annotations().contains_key(HASHED_ANNOTATION)
                && password_pbkdf2(b"my own secret", &salt) == stored,
        )
    })
    .await
    .expect("re-hashed");

    // k3s's Traefik appears (a Deployment in kube-system and its IngressClass).
    kubectl_stdin(&["apply", "-f", "-"], K3S_TRAEFIK)
        .await
        .expect("k3s Traefik");
    let classes: Api<IngressClass> = Api::all(ns.client.clone());
    classes
        .create(&PostParams::default(), &traefik_class())
        .await
        .expect("IngressClass");
    touch(&ns, "k3s").await;
    wait_for("no second Traefik", TIMEOUT, || async {
        Ok(deployments.get_opt("home-traefik").await?.is_none()
            && status_traefik(&ns).await.as_deref() == Some("existing"))
    })
    .await
    .expect("the stack uses k3s's Traefik");
    let stack = wait_condition::<MediaStack>(&ns, "home", "Ready", "True", None).await;
    let edge = condition(&stack, "EdgeReady").expect("EdgeReady");
    assert_eq!(
        (edge.0.as_str(), edge.1.as_str()),
        ("True", "ExistingTraefik"),
        "{edge:?}"
    );
    // The routes are bound to k3s's entry points.
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("traefik.io", "v1alpha1", "IngressRoute"),
        "ingressroutes",
    );
    let routes: Api<DynamicObject> = Api::namespaced_with(ns.client.clone(), &ns.name, &ar);
    wait_for("routes on web and websecure", TIMEOUT, || async {
        let r = routes.get("home-jellyfin").await?;
        Ok(r.data["spec"]["entryPoints"] == serde_json::json!(["web", "websecure"]))
    })
    .await
    .expect("entry points");

    // `managed: true` still deploys ours next to it.
    let stacks: Api<MediaStack> = ns.api();
    stacks
        .patch(
            "home",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"ingress": {"traefik": {"managed": true}}}})),
        )
        .await
        .expect("managed: true");
    wait_for("our Traefik again with managed: true", TIMEOUT, || async {
        Ok(deployments.get_opt("home-traefik").await?.is_some()
            && status_traefik(&ns).await.as_deref() == Some("managed"))
    })
    .await
    .expect("managed");

    // Back to auto, and k3s's Traefik gone: ours stays.
    stacks
        .patch(
            "home",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"ingress": {"traefik": {"managed": null}}}})),
        )
        .await
        .expect("auto");
    classes
        .delete("e2e-k3s-traefik", &DeleteParams::default())
        .await
        .expect("delete IngressClass");
    let system_deployments: Api<Deployment> = Api::namespaced(ns.client.clone(), "kube-system");
    system_deployments
        .delete("traefik", &DeleteParams::default())
        .await
        .expect("delete k3s Traefik");
    touch(&ns, "gone").await;
    wait_for(
        "managed Traefik with none in the cluster",
        TIMEOUT,
        || async {
            Ok(deployments.get_opt("home-traefik").await?.is_some()
                && status_traefik(&ns).await.as_deref() == Some("managed"))
        },
    )
    .await
    .expect("managed again");
}

/// Pods of `app` in `ns` (by the stack's recommended labels).
async fn pods_of(ns: &TestNamespace, app: &str) -> usize {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = ns.api();
    pods.list(&kube::api::ListParams::default().labels(&format!("app.kubernetes.io/name={app}")))
        .await
        .map(|l| l.items.len())
        .unwrap_or(0)
}

/// The Pod Security level docs/pod-security.md states: with the default
/// example stack (qBittorrent behind gluetun with NET_ADMIN, the managed
/// Traefik on host port 80) the namespace needs `privileged`; `baseline`
/// refuses exactly those pods and admits the others (the data-tree step's
/// CHOWN/FOWNER/DAC_OVERRIDE are within baseline).
#[tokio::test(flavor = "multi_thread")]
async fn the_namespace_needs_privileged_pod_security_for_the_vpn_and_traefik() {
    let baseline = TestNamespace::new("psa-base").await;
    let privileged = TestNamespace::new("psa-priv").await;
    for (ns, level) in [(&baseline, "baseline"), (&privileged, "privileged")] {
        kubectl(&[
            "label",
            "namespace",
            &ns.name,
            &format!("pod-security.kubernetes.io/enforce={level}"),
        ])
        .await
        .expect("label");
    }
    let _op1 = mediastack_e2e::Operator::start(&baseline).await;
    let _op2 = mediastack_e2e::Operator::start(&privileged).await;
    for ns in [&baseline, &privileged] {
        mediastack_e2e::stack::example_stack(ns).await;
        // Not raced by the other test's cluster-wide IngressClass.
        touch_managed(ns).await;
    }
    // baseline refuses hostPath volumes: the data on a claim there.
    let stacks: Api<MediaStack> = baseline.api();
    stacks
        .patch(
            "home",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"storage": {"data": {"hostPath": null, "size": "10Gi"}}}})),
        )
        .await
        .expect("data on a claim");
    wait_condition::<MediaStack>(&privileged, "home", "Ready", "True", None).await;
    for app in ["jellyfin", "sonarr", "qbittorrent", "traefik"] {
        assert!(
            pods_of(&privileged, app).await > 0,
            "privileged: {app} has pods"
        );
    }
    let replicasets: Api<k8s_openapi::api::apps::v1::ReplicaSet> = baseline.api();
    for app in ["qbittorrent", "traefik"] {
        wait_for(&format!("{app} refused by baseline"), TIMEOUT, || async {
            let list = replicasets
                .list(
                    &kube::api::ListParams::default()
                        .labels(&format!("app.kubernetes.io/name={app}")),
                )
                .await?;
            Ok(list.items.iter().any(|rs| {
                rs.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| {
                        c.iter().any(|c| {
                            c.type_.as_deref() == Some("ReplicaFailure")
                                && c.message.as_deref().unwrap_or("").contains("PodSecurity")
                        })
                    })
            }))
        })
        .await
        .expect("refused");
        assert_eq!(pods_of(&baseline, app).await, 0, "baseline: {app}");
    }
    let admitted = wait_for("baseline admits the other apps", TIMEOUT, || async {
        Ok(pods_of(&baseline, "jellyfin").await > 0 && pods_of(&baseline, "sonarr").await > 0)
    })
    .await;
    if let Err(e) = admitted {
        let why: Vec<String> = replicasets
            .list(&kube::api::ListParams::default().labels("app.kubernetes.io/name=jellyfin"))
            .await
            .map(|l| {
                l.items
                    .iter()
                    .flat_map(|rs| {
                        rs.status
                            .clone()
                            .and_then(|s| s.conditions)
                            .unwrap_or_default()
                    })
                    .filter_map(|c| c.message)
                    .collect()
            })
            .unwrap_or_default();
        panic!("{e}: {why:?}");
    }
}

async fn touch_managed(ns: &TestNamespace) {
    let stacks: Api<MediaStack> = ns.api();
    stacks
        .patch(
            "home",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"ingress": {"traefik": {"managed": true}}}})),
        )
        .await
        .expect("managed: true");
}
