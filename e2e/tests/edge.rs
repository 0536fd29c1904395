//! Routes to Traefik, the managed Traefik, the tunnel and fail2ban, against a
//! real API server with the Traefik CRDs installed.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret, Service};
use k8s_openapi::api::networking::v1::{NetworkPolicy, ServiceCIDR};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use mediastack_e2e::stack::{
    EXAMPLE_APPS, condition, example, ready_example_stack, ready_example_stack_with,
    wait_condition, wait_event,
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
    wait_for(
        "fail2ban scheduled on every simulated node",
        TIMEOUT,
        || async {
            Ok(daemonsets
                .get("home-fail2ban")
                .await?
                .status
                .is_some_and(|s| {
                    s.desired_number_scheduled >= 1
                        && s.current_number_scheduled == s.desired_number_scheduled
                }))
        },
    )
    .await
    .expect("fail2ban scheduled");
    let cms: Api<ConfigMap> = ns.api();
    let f2b = cms.get("home-fail2ban").await.expect("fail2ban ConfigMap");
    // The stack's own iptables chains, and only its Traefik pods' logs.
    let jails = f2b
        .data
        .unwrap_or_default()
        .remove("mediastack.local")
        .unwrap_or_default();
    let chains: Vec<&str> = jails
        .lines()
        .filter_map(|l| l.split("chain=").nth(1))
        .filter_map(|rest| rest.split(',').next())
        .collect();
    assert_eq!(chains.len(), 2, "{jails}");
    assert!(
        chains
            .iter()
            .all(|c| c.starts_with("f2b-") && c.len() <= 28 && *c != "f2b-traefik-auth"),
        "{chains:?}"
    );
    assert!(!jails.contains("traefik-*/"), "no open-ended glob: {jails}");
    let ds = daemonsets.get("home-fail2ban").await.expect("DaemonSet");
    let pod = ds.spec.template.spec.expect("pod spec");
    assert!(
        pod.volumes.unwrap_or_default().iter().any(|v| v
            .host_path
            .as_ref()
            .is_some_and(|h| h.path == "/run/xtables.lock")),
        "the host's iptables lock is shared"
    );

    // The tunnel entry point trusts forwarded headers from the cluster's
    // ranges only (as the API server reports them), and only cloudflared
    // may connect to it.
    let mut ranges = std::collections::BTreeSet::new();
    let nodes: Api<Node> = Api::all(ns.client.clone());
    for n in nodes
        .list(&ListParams::default())
        .await
        .expect("nodes")
        .items
    {
        let spec = n.spec.unwrap_or_default();
        ranges.extend(spec.pod_cidrs.unwrap_or_default());
        ranges.extend(spec.pod_cidr);
    }
    let cidrs: Api<ServiceCIDR> = Api::all(ns.client.clone());
    for c in cidrs
        .list(&ListParams::default())
        .await
        .expect("ServiceCIDRs")
        .items
    {
        ranges.extend(c.spec.and_then(|s| s.cidrs).unwrap_or_default());
    }
    let traefik_args = deployments
        .get("home-traefik")
        .await
        .expect("Traefik")
        .spec
        .template
        .spec
        .map(|p| p.containers[0].args.clone().unwrap_or_default())
        .unwrap_or_default();
    assert!(
        !traefik_args
            .iter()
            .any(|a| a.contains("forwardedHeaders.insecure")),
        "{traefik_args:?}"
    );
    let trusted: Vec<String> = traefik_args
        .iter()
        .filter_map(|a| a.strip_prefix("--entrypoints.tunnel.forwardedHeaders.trustedIPs="))
        .flat_map(|v| v.split(',').map(String::from))
        .collect();
    assert_eq!(
        trusted,
        ranges.iter().cloned().collect::<Vec<_>>(),
        "{traefik_args:?}"
    );
    let policies: Api<NetworkPolicy> = ns.api();
    let np = policies
        .get("home-traefik")
        .await
        .expect("Traefik NetworkPolicy");
    let np = serde_json::to_value(np.spec).expect("json");
    let tunnel_rules: Vec<&serde_json::Value> = np["ingress"]
        .as_array()
        .expect("rules")
        .iter()
        .filter(|r| r["ports"].to_string().contains("\"tunnel\""))
        .collect();
    assert_eq!(
        tunnel_rules
            .iter()
            .map(|r| r["from"].clone())
            .collect::<Vec<_>>(),
        [serde_json::json!([{"podSelector": {"matchLabels": {
            "app.kubernetes.io/instance": "home",
            "app.kubernetes.io/name": "cloudflared"
        }}}])],
        "{np}"
    );
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
    // cloudflared's metrics (and pprof) port: only from Prometheus pods.
    let np = policies
        .get("home-cloudflared")
        .await
        .expect("cloudflared NetworkPolicy");
    assert_eq!(
        serde_json::to_value(np.spec).expect("json")["ingress"],
        serde_json::json!([{
            "ports": [{"port": "metrics", "protocol": "TCP"}],
            "from": [{"namespaceSelector": {},
                      "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
        }])
    );
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

/// Server-side applies a partial MediaStack `spec` to stack `home` under `manager`.
async fn patch_stack(ns: &TestNamespace, manager: &str, spec: serde_json::Value) {
    let stacks: Api<MediaStack> = ns.api();
    let patch = serde_json::json!({"apiVersion": "mediastack.io/v1alpha1", "kind": "MediaStack", "spec": spec});
    stacks
        .patch(
            "home",
            &kube::api::PatchParams::apply(manager),
            &kube::api::Patch::Apply(&patch),
        )
        .await
        .unwrap_or_else(|e| panic!("patch by {manager}: {e}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn dozzle_is_behind_a_generated_login_and_never_public_without_one() {
    let (ns, _op, stack) = ready_example_stack("dozzle").await;
    assert_eq!(
        condition(&stack, "Insecure").map(|c| (c.0, c.1)),
        Some(("False".to_string(), "Secure".to_string())),
        "the example stack has nothing open"
    );
    // The login: a basic-auth Secret with a random password, read by
    // Traefik's basicAuth Middleware in front of Dozzle.
    let secrets: Api<Secret> = ns.api();
    let login = secrets.get("home-dozzle-auth").await.expect("login Secret");
    assert_eq!(login.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    let data = login.data.unwrap_or_default();
    assert_eq!(
        data.get("username").map(|v| v.0.clone()),
        Some(b"admin".to_vec())
    );
    let password = data.get("password").map(|v| v.0.len()).unwrap_or(0);
    assert!(password >= 32, "a long random password ({password} bytes)");
    let middlewares = traefik(&ns, "Middleware", "middlewares");
    let mw = middlewares
        .get("home-dozzle-auth")
        .await
        .expect("Dozzle's auth Middleware");
    assert_eq!(
        mw.data["spec"],
        serde_json::json!({"basicAuth": {"secret": "home-dozzle-auth"}})
    );
    let route = traefik(&ns, "IngressRoute", "ingressroutes")
        .get("home-dozzle")
        .await
        .expect("Dozzle's Traefik route");
    assert_eq!(
        route.data["spec"]["routes"][0]["middlewares"],
        serde_json::json!([{"name": "home-dozzle-auth"}])
    );

    // The Service does not bypass the login: only Traefik (and the
    // dashboard's health check) may connect to Dozzle.
    let policies: Api<NetworkPolicy> = ns.api();
    let np = policies
        .get("home-dozzle")
        .await
        .expect("Dozzle's NetworkPolicy");
    let from = serde_json::to_value(np.spec).expect("json")["ingress"][0]["from"].clone();
    assert_eq!(
        from,
        serde_json::json!([
            {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "home", "app.kubernetes.io/name": "traefik"}}},
            {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "home", "app.kubernetes.io/name": "dashboard"}}}
        ])
    );

    // Admission refuses a public Dozzle without a login, and a login that
    // is both given and waived.
    for (expose, wanted) in [
        (
            "{public: true, allowAnonymous: true}",
            "apps.dozzle.expose.public needs a login",
        ),
        (
            "{allowAnonymous: true, auth: {basicAuthSecretRef: {name: users}}}",
            "expose.allowAnonymous and expose.auth exclude each other",
        ),
    ] {
        let bad = format!(
            "apiVersion: mediastack.io/v1alpha1\nkind: MediaStack\nmetadata: {{name: bad}}\nspec:\n  storage: {{data: {{hostPath: /srv/data}}}}\n  apps: {{dozzle: {{expose: {expose}}}}}\n"
        );
        let err = ns
            .create_yaml(&bad)
            .await
            .expect_err("rejected at admission");
        assert!(err.to_string().contains(wanted), "{expose}: {err}");
    }
    let stacks: Api<MediaStack> = ns.api();
    assert!(stacks.get_opt("bad").await.expect("read").is_none());

    // Opting out on the LAN works, and is flagged on the stack with an event.
    patch_stack(
        &ns,
        "e2e-dozzle",
        serde_json::json!({"apps": {"dozzle": {"expose": {"allowAnonymous": true}}}}),
    )
    .await;
    let s =
        wait_condition::<MediaStack>(&ns, "home", "Insecure", "True", Some("DozzleWithoutAuth"))
            .await;
    let msg = condition(&s, "Insecure").map(|c| c.2).unwrap_or_default();
    assert!(msg.contains("dozzle"), "{msg}");
    wait_event(&ns, "DozzleWithoutAuth", "dozzle").await;
    let ours: Api<IngressRoute> = ns.api();
    let pruned = wait_for("Dozzle's auth Middleware pruned", TIMEOUT, || async {
        Ok(middlewares.get_opt("home-dozzle-auth").await?.is_none())
    })
    .await;
    let route = ours.get("home-dozzle").await.expect("our route");
    assert!(pruned.is_ok(), "{pruned:?}: {:?}", route);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_public_app_without_auth_is_flagged_on_the_stack_and_auth_clears_it() {
    let (ns, _op, _) = ready_example_stack("public").await;
    patch_stack(
        &ns,
        "e2e-public",
        serde_json::json!({"apps": {"jellyfin": {"expose": {"public": true}}}}),
    )
    .await;
    let s =
        wait_condition::<MediaStack>(&ns, "home", "Insecure", "True", Some("PublicWithoutAuth"))
            .await;
    let msg = condition(&s, "Insecure").map(|c| c.2).unwrap_or_default();
    assert!(msg.contains("jellyfin"), "{msg}");
    assert!(!msg.contains("dozzle"), "Dozzle has its login: {msg}");
    wait_event(&ns, "PublicWithoutAuth", "jellyfin").await;
    // The public host is served on the tunnel entry point with a limit per
    // visitor, which the Traefik CRD accepts.
    let middlewares = traefik(&ns, "Middleware", "middlewares");
    wait_for("rate limit of the public host", TIMEOUT, || async {
        Ok(middlewares
            .get_opt("home-jellyfin-ratelimit")
            .await?
            .is_some())
    })
    .await
    .expect("rate limit");
    let rl = middlewares
        .get("home-jellyfin-ratelimit")
        .await
        .expect("read");
    assert_eq!(
        rl.data["spec"]["rateLimit"]["sourceCriterion"],
        serde_json::json!({"requestHeaderName": "CF-Connecting-IP"})
    );
    let public = traefik(&ns, "IngressRoute", "ingressroutes")
        .get("home-jellyfin-public")
        .await
        .expect("public route");
    assert_eq!(
        public.data["spec"]["entryPoints"],
        serde_json::json!(["tunnel"])
    );

    // Basic auth from the user's Secret: a Middleware, and the flag clears.
    ns.apply_yaml(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: jf-users}\nstringData: {users: 'admin:$apr1$abc$def'}\n",
        "e2e",
    )
    .await
    .expect("users");
    patch_stack(
        &ns,
        "e2e-public",
        serde_json::json!({"apps": {"jellyfin": {"expose": {"public": true,
            "auth": {"basicAuthSecretRef": {"name": "jf-users"}}}}}}),
    )
    .await;
    wait_condition::<MediaStack>(&ns, "home", "Insecure", "False", Some("Secure")).await;
    wait_for("Jellyfin's auth Middleware", TIMEOUT, || async {
        Ok(middlewares
            .get_opt("home-jellyfin-auth")
            .await?
            .is_some_and(|m| m.data["spec"]["basicAuth"]["secret"] == "jf-users"))
    })
    .await
    .expect("auth Middleware");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_whose_auth_secret_is_missing_says_so_until_it_exists() {
    let (ns, _op, _) = ready_example_stack("authsecret").await;
    ns.apply_yaml(
        "apiVersion: v1\nkind: Service\nmetadata: {name: home-assistant}\nspec: {ports: [{port: 8123}]}\n",
        "e2e",
    )
    .await
    .expect("backend");
    let route = "apiVersion: mediastack.io/v1alpha1\nkind: IngressRoute\nmetadata: {name: ha}\nspec: {subdomain: ha, service: {name: home-assistant, port: 8123}, stackRef: {name: home}, auth: {basicAuthSecretRef: {name: ha-login}}}\n";
    ns.apply_yaml(route, "e2e").await.expect("route");
    let r = wait_condition::<IngressRoute>(
        &ns,
        "ha",
        "Reconciling",
        "True",
        Some("AuthSecretNotFound"),
    )
    .await;
    let msg = condition(&r, "Ready").map(|c| c.2).unwrap_or_default();
    assert!(msg.contains("ha-login"), "{msg}");
    wait_event(&ns, "AuthSecretNotFound", "ha-login").await;
    // A kubernetes.io/basic-auth Secret is what Traefik reads as well.
    ns.apply_yaml(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: ha-login}\ntype: kubernetes.io/basic-auth\nstringData: {username: admin, password: a-long-password}\n",
        "e2e",
    )
    .await
    .expect("secret");
    // Secrets are not watched: the route's periodic retry (30 s) picks it up.
    wait_condition::<IngressRoute>(&ns, "ha", "Ready", "True", None).await;
}
