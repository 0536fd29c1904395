//! Routes to Traefik, the managed Traefik, the tunnel and fail2ban, against a
//! real API server with the Traefik CRDs installed.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject};
use kube::core::GroupVersionKind;
use mediastack_e2e::stack::{
    EXAMPLE_APPS, example, ready_example_stack, ready_example_stack_with, wait_condition,
};
use mediastack_e2e::{TIMEOUT, TestNamespace, wait_for};
use mediastack_operator::api::{IngressRoute, MediaStack};

fn traefik(ns: &TestNamespace, kind: &str, plural: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("traefik.io", "v1alpha1", kind),
        plural,
    );
    Api::namespaced_with(ns.client.clone(), &ns.name, &ar)
}

const BACKEND: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: home-assistant}\nspec: {ports: [{port: 8123}]}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: ha-users}\nstringData: {users: 'admin:$apr1$abc$def'}\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_route_becomes_traefik_objects_that_go_with_it() {
    let (ns, _op, _) = ready_example_stack("route").await;
    ns.apply_yaml(BACKEND, "e2e").await.expect("backend");
    ns.apply_yaml(&example("examples/ingressroute.yaml"), "e2e")
        .await
        .expect("route");
    let route = wait_condition::<IngressRoute>(&ns, "home-assistant", "Ready", "True", None).await;
    assert_eq!(
        route.status.map(|s| s.hosts),
        Some(vec!["ha.lan".to_string()])
    );
    let routes = traefik(&ns, "IngressRoute", "ingressroutes");
    let middlewares = traefik(&ns, "Middleware", "middlewares");
    // Accepted by the Traefik CRD schema: the API server stored them.
    let tr = routes
        .get("home-assistant")
        .await
        .expect("Traefik IngressRoute");
    assert!(
        tr.data["spec"]["routes"][0]["match"]
            .as_str()
            .unwrap_or_default()
            .contains("Host(`ha.lan`)"),
        "{}",
        tr.data
    );
    for m in ["home-assistant-auth", "home-assistant-allow"] {
        middlewares
            .get(m)
            .await
            .unwrap_or_else(|e| panic!("Middleware {m}: {e}"));
    }

    let ours: Api<IngressRoute> = ns.api();
    ours.delete("home-assistant", &DeleteParams::foreground())
        .await
        .expect("delete route");
    wait_for("Traefik objects garbage-collected", TIMEOUT, || async {
        Ok(routes.get_opt("home-assistant").await?.is_none()
            && middlewares.get_opt("home-assistant-auth").await?.is_none())
    })
    .await
    .expect("collected");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_second_route_for_a_host_is_not_applied() {
    let (ns, _op, _) = ready_example_stack("clash").await;
    ns.apply_yaml(BACKEND, "e2e").await.expect("backend");
    ns.apply_yaml(&example("examples/ingressroute.yaml"), "e2e")
        .await
        .expect("first route");
    wait_condition::<IngressRoute>(&ns, "home-assistant", "Ready", "True", None).await;
    let second = example("examples/ingressroute.yaml").replace(
        "metadata: {name: home-assistant,",
        "metadata: {name: ha-copy,",
    );
    ns.apply_yaml(&second, "e2e").await.expect("second route");
    let r = wait_condition::<IngressRoute>(&ns, "ha-copy", "Stalled", "True", Some("HostConflict"))
        .await;
    let msg = mediastack_e2e::stack::condition(&r, "Stalled")
        .map(|c| c.2)
        .unwrap_or_default();
    assert!(
        msg.contains("ha.lan") && msg.contains("home-assistant"),
        "{msg}"
    );
    assert!(
        traefik(&ns, "IngressRoute", "ingressroutes")
            .get_opt("ha-copy")
            .await
            .expect("read")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stack_gets_routes_traefik_fail2ban_and_with_a_token_the_tunnel() {
    // fail2ban is off unless the admin policy allows it (docs/security.md).
    let (ns, _op, _) =
        ready_example_stack_with("edge", &["--allow-fail2ban", "--allow-host-network"]).await;
    for app in EXAMPLE_APPS {
        let name = format!("home-{app}");
        let r = wait_condition::<IngressRoute>(&ns, &name, "Ready", "True", None).await;
        assert_eq!(
            r.status.map(|s| s.hosts),
            Some(vec![format!("{app}.lan")]),
            "{name}"
        );
    }
    let deployments: Api<Deployment> = ns.api();
    let services: Api<Service> = ns.api();
    deployments
        .get("home-traefik")
        .await
        .expect("Traefik Deployment");
    services.get("home-traefik").await.expect("Traefik Service");
    let daemonsets: Api<DaemonSet> = ns.api();
    wait_for("fail2ban scheduled on the node", TIMEOUT, || async {
        Ok(daemonsets
            .get("home-fail2ban")
            .await?
            .status
            .is_some_and(|s| s.current_number_scheduled == 1))
    })
    .await
    .expect("fail2ban scheduled");
    let cms: Api<ConfigMap> = ns.api();
    cms.get("home-fail2ban").await.expect("fail2ban ConfigMap");
    assert!(
        deployments
            .get_opt("home-cloudflared")
            .await
            .expect("read")
            .is_none(),
        "no tunnel without a token"
    );

    ns.apply_yaml(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: tunnel-token}\nstringData: {token: abc}\n",
        "e2e",
    )
    .await
    .expect("token");
    let stacks: Api<MediaStack> = ns.api();
    let patch = serde_json::json!({"apiVersion": "mediastack.io/v1alpha1", "kind": "MediaStack",
        "spec": {"ingress": {"tunnel": {"tokenSecretRef": {"name": "tunnel-token"}}}}});
    stacks
        .patch(
            "home",
            &kube::api::PatchParams::apply("e2e-tunnel"),
            &kube::api::Patch::Apply(&patch),
        )
        .await
        .expect("enable tunnel");
    wait_for("cloudflared Deployment", TIMEOUT, || async {
        Ok(deployments.get_opt("home-cloudflared").await?.is_some())
    })
    .await
    .expect("tunnel");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_public_route_without_auth_or_tunnel_is_flagged_once() {
    let (ns, _op, _) = ready_example_stack("insecure").await;
    ns.apply_yaml(BACKEND, "e2e").await.expect("backend");
    let public = "apiVersion: mediastack.io/v1alpha1\nkind: IngressRoute\nmetadata: {name: open}\nspec: {subdomain: open, service: {name: home-assistant, port: 8123}, public: true, stackRef: {name: home}}\n";
    ns.apply_yaml(public, "e2e").await.expect("route");
    // Both warnings (no auth, no tunnel) land in the one `Insecure` condition.
    let r =
        wait_condition::<IngressRoute>(&ns, "open", "Insecure", "True", Some("PublicWithoutAuth"))
            .await;
    let conditions = r.status.map(|s| s.conditions).unwrap_or_default();
    assert_eq!(
        conditions.iter().filter(|c| c.type_ == "Insecure").count(),
        1
    );
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
}
