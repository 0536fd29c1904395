//! Routes. Two layers:
//!
//! - [`app_routes`]: the MediaStack renders one of OUR `mediastack.io`
//!   IngressRoutes per exposed app, owned by the stack.
//! - [`traefik_objects`]: each of our IngressRoutes (the app routes and the
//!   ones users write) renders Traefik's `traefik.io/v1alpha1` IngressRoute(s)
//!   and the Middlewares they use, owned by our IngressRoute.
//!
//! Client addresses: LAN clients reach Traefik's HTTP entry point through a
//! hostPort, which keeps their source address, so Traefik sees the real
//! client there (and, trusting nobody's `X-Forwarded-*` headers on that entry
//! point, cannot be fooled by them). Tunnel traffic comes from the cloudflared
//! pod. With the managed Traefik it arrives on a separate, cluster-internal
//! `tunnel` entry point that only the cloudflared pods may connect to (a
//! NetworkPolicy, see `traefik`) and that trusts forwarded headers only from
//! the pod range, so public hosts are routed only there, their allow list
//! reads the client from `X-Forwarded-For` (the address Cloudflare appended,
//! `ipStrategy.depth: 1`) and their rate limit counts per `CF-Connecting-IP`.
//! With an existing Traefik there is no such entry point: public hosts share
//! the HTTP entry point, and an allow list sees the cloudflared pod for tunnel
//! traffic (reported by [`warnings`]).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use super::meta::{HTTP_PORT, OWNER_LABEL, Parent};
use super::traefik_crd::{
    TUNNEL_ENTRY_POINT, host_rule, traefik_ingress_route, traefik_middleware,
};
use super::{Child, RenderError};
use crate::api::IngressRoute;
use crate::api::common::{LocalRef, SecretRef};
use crate::api::ingressroute::{IngressRouteSpec, RouteAuth, ServiceTarget};
use crate::api::mediastack::{Expose, MediaStackSpec};

/// Max-age of the `Strict-Transport-Security` header on public hosts (one year).
const STS_SECONDS: i64 = 31_536_000;
/// Header in which Cloudflare passes the visitor's address to the origin.
pub const VISITOR_HEADER: &str = "CF-Connecting-IP";
/// Requests per second one tunnel visitor may average on a public host.
pub const TUNNEL_RATE_AVERAGE: i64 = 50;
/// Requests one tunnel visitor may send at once above the average.
pub const TUNNEL_RATE_BURST: i64 = 200;

/// Facts about the stack that serves a route, resolved by the reconciler from
/// the referenced MediaStack (see [`RouteContext::for_stack`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteContext {
    /// The stack's local domain, e.g. `lan`.
    pub local_domain: String,
    /// The stack's public domain, e.g. `example.org`, if any.
    pub public_domain: Option<String>,
    /// Traefik entry points of local hosts: the managed Traefik's HTTP entry
    /// point on port 80, or an existing Traefik's `existingEntryPoints`.
    pub entry_points: Vec<String>,
    /// Traefik entry point the tunnel connects to (the managed Traefik's
    /// `tunnel` entry point). Public hosts are routed only there. `None` with
    /// an existing Traefik: public hosts share `entry_points`.
    pub tunnel_entry_point: Option<String>,
    /// cloudflared runs for the stack (tunnel configured and its token present).
    pub tunnel_ready: bool,
}

impl RouteContext {
    /// The context of routes served by the stack with this spec.
    /// `tunnel_ready` is whether the stack's cloudflared runs (a tunnel is
    /// configured and its token Secret is complete).
    pub fn for_stack(spec: &MediaStackSpec, tunnel_ready: bool) -> Self {
        let traefik = &spec.ingress.traefik;
        Self {
            local_domain: spec.domain.local.clone(),
            public_domain: spec.domain.public.clone(),
            entry_points: if traefik.is_managed() {
                vec![traefik.entry_point.clone()]
            } else {
                traefik.existing_entry_points.clone()
            },
            tunnel_entry_point: traefik.is_managed().then(|| TUNNEL_ENTRY_POINT.to_string()),
            tunnel_ready,
        }
    }
}

/// One of our IngressRoutes per enabled app whose exposure is on (the
/// default), named `<stack>-<app>`, for the app's Service port `http`.
pub fn app_routes(parent: &Parent, spec: &MediaStackSpec) -> Result<Vec<Child>, RenderError> {
    let mut out = Vec::new();
    for (app, app_spec) in spec.apps.enabled() {
        if let Some(route) = app_route(parent, spec, app.name, app_spec) {
            out.push(Child::typed(&route)?);
        }
    }
    Ok(out)
}

/// The IngressRoute `<stack>-<app>` of one app, `None` when its exposure is off.
pub fn app_route(
    parent: &Parent,
    spec: &MediaStackSpec,
    app: &str,
    app_spec: &crate::api::mediastack::AppSpec,
) -> Option<IngressRoute> {
    let expose = app_spec.expose.clone().unwrap_or_default();
    if !expose.enabled {
        return None;
    }
    let name = parent.child_name(app);
    let host = expose
        .host
        .clone()
        .unwrap_or_else(|| format!("{app}.{}", spec.domain.local));
    Some(IngressRoute {
        metadata: parent.meta(&name, app, "route"),
        spec: IngressRouteSpec {
            host: Some(host),
            subdomain: None,
            service: ServiceTarget {
                name: name.clone(),
                port: IntOrString::String(HTTP_PORT.into()),
            },
            public: expose.public,
            stack_ref: Some(LocalRef {
                name: parent.name.clone(),
            }),
            auth: app_auth(parent, app, &expose),
            allow_cidrs: Vec::new(),
        },
        status: None,
    })
}

/// The login in front of an app: `expose.auth`, else for Dozzle (unless
/// `expose.allowAnonymous`) basic auth from its generated Secret
/// ([`super::dozzle::login_secret`]), else none.
pub fn app_auth(parent: &Parent, app: &str, expose: &Expose) -> Option<RouteAuth> {
    if let Some(auth) = &expose.auth {
        return Some(auth.clone());
    }
    (app == super::dozzle::APP && !expose.allow_anonymous).then(|| RouteAuth {
        basic_auth_secret_ref: Some(SecretRef {
            name: super::dozzle::login_secret_name(parent),
        }),
        forward_auth: None,
    })
}

/// Apps served without a login where one is expected, for the MediaStack's
/// `Insecure` condition: exposed apps with `expose.public` and no
/// `expose.auth`, and Dozzle with `expose.allowAnonymous`.
pub fn insecure_apps(parent: &Parent, spec: &MediaStackSpec) -> Vec<String> {
    spec.apps
        .enabled()
        .filter_map(|(app, app_spec)| {
            let expose = app_spec.expose.clone().unwrap_or_default();
            let open = expose.enabled
                && app_auth(parent, app.name, &expose).is_none()
                && (expose.public || app.name == super::dozzle::APP);
            open.then(|| app.name.to_string())
        })
        .collect()
}

/// The host on the local domain: `spec.host`, or `<subdomain>.<local>`.
pub fn local_host(route: &IngressRoute, ctx: &RouteContext) -> Option<String> {
    match (&route.spec.host, &route.spec.subdomain) {
        (Some(host), _) => Some(host.clone()),
        (None, Some(sub)) => Some(format!("{sub}.{}", ctx.local_domain)),
        (None, None) => None,
    }
}

/// The host on the public domain, `<first label of the local host>.<public>`,
/// when the route is public and the stack has a public domain.
pub fn public_host(route: &IngressRoute, ctx: &RouteContext) -> Option<String> {
    if !route.spec.public {
        return None;
    }
    let public = ctx.public_domain.as_deref()?;
    let local = local_host(route, ctx)?;
    let label = local.split('.').next().unwrap_or(&local);
    Some(format!("{label}.{public}"))
}

/// Host names the route is served at (local first), for status.
pub fn hosts(route: &IngressRoute, ctx: &RouteContext) -> Vec<String> {
    local_host(route, ctx)
        .into_iter()
        .chain(public_host(route, ctx))
        .collect()
}

/// URLs the route is reachable at, for status: `http://<local>` on the LAN
/// and, while the tunnel runs, `https://<public>` (Cloudflare terminates TLS).
pub fn urls(route: &IngressRoute, ctx: &RouteContext) -> Vec<String> {
    let local = local_host(route, ctx).map(|h| format!("http://{h}"));
    let public = public_host(route, ctx)
        .filter(|_| ctx.tunnel_ready)
        .map(|h| format!("https://{h}"));
    local.into_iter().chain(public).collect()
}

/// Problems worth a Warning event and a condition: `(reason, message)`.
pub fn warnings(route: &IngressRoute, ctx: &RouteContext) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let spec = &route.spec;
    if !spec.public {
        return out;
    }
    if spec.auth.is_none() {
        out.push((
            "PublicWithoutAuth",
            "the route is public but has no auth: anyone on the internet can reach the service; \
             set spec.auth (basicAuthSecretRef or forwardAuth)"
                .to_string(),
        ));
    }
    match &ctx.public_domain {
        None => out.push((
            "NoPublicDomain",
            "the route is public but its MediaStack has no domain.public: it is served on the \
             local domain only"
                .to_string(),
        )),
        Some(_) if !ctx.tunnel_ready => out.push((
            "TunnelNotConfigured",
            "the route is public but the MediaStack's tunnel does not run (no ingress.tunnel, \
             or its token Secret lacks the key `token`): the public host is unreachable"
                .to_string(),
        )),
        Some(_) => {}
    }
    if !spec.allow_cidrs.is_empty() && ctx.tunnel_entry_point.is_none() {
        out.push((
            "AllowListSeesTunnel",
            "with an existing (unmanaged) Traefik, tunnel traffic reaches Traefik from the \
             cloudflared pod, so allowCIDRs judges the pod's address, not the visitor's"
                .to_string(),
        ));
    }
    out
}

/// Traefik's IngressRoute(s) and Middlewares for our `route`, in apply order
/// (Middlewares first). `parent` is the route itself.
///
/// - `<route>`: the local host on `ctx.entry_points` (plus the public host
///   when there is no tunnel entry point).
/// - `<route>-public`: the public host on the tunnel entry point.
/// - Middlewares `<route>-allow` (ipAllowList on the client address),
///   `<route>-allow-public` (ipAllowList on the visitor address from
///   `X-Forwarded-For`), `<route>-headers` (security headers of public hosts),
///   `<route>-ratelimit` (per tunnel visitor, keyed on `CF-Connecting-IP`,
///   on the tunnel entry point only), `<route>-auth` (basic or forward auth).
pub fn traefik_objects(
    route: &IngressRoute,
    parent: &Parent,
    ctx: &RouteContext,
) -> Result<Vec<Child>, RenderError> {
    let spec = &route.spec;
    let local = local_host(route, ctx).ok_or_else(|| {
        RenderError::Invalid(format!(
            "IngressRoute {} sets neither host nor subdomain",
            parent.name
        ))
    })?;
    let public = public_host(route, ctx);
    let tunnel_ep = ctx
        .tunnel_entry_point
        .as_deref()
        .filter(|ep| !ctx.entry_points.iter().any(|e| e == ep));

    let mut middlewares: Vec<Child> = Vec::new();
    let mut add = |suffix: &str, spec: Value| -> Result<String, RenderError> {
        let name = parent.child_name(suffix);
        middlewares.push(middleware(parent, &name, spec)?);
        Ok(name)
    };

    let allow = if spec.allow_cidrs.is_empty() {
        None
    } else {
        Some(add(
            "allow",
            json!({"ipAllowList": {"sourceRange": spec.allow_cidrs}}),
        )?)
    };
    let allow_public = match (&public, tunnel_ep) {
        (Some(_), Some(_)) if !spec.allow_cidrs.is_empty() => Some(add(
            "allow-public",
            json!({"ipAllowList": {
                "sourceRange": spec.allow_cidrs,
                // The tunnel entry point trusts X-Forwarded-For; Cloudflare
                // appends the visitor's address as its last element.
                "ipStrategy": {"depth": 1},
            }}),
        )?),
        _ => None,
    };
    let headers = match &public {
        Some(_) => Some(add(
            "headers",
            json!({"headers": {
                "stsSeconds": STS_SECONDS,
                // Traefik only sees plain HTTP from cloudflared; browsers
                // ignore the header on http:// responses of the LAN host.
                "forceSTSHeader": true,
                "frameDeny": true,
                "contentTypeNosniff": true,
                "browserXssFilter": true,
                "referrerPolicy": "strict-origin-when-cross-origin",
            }}),
        )?),
        None => None,
    };

    // Per-visitor limit on the tunnel entry point: every request there comes
    // from cloudflared (the NetworkPolicy of the managed Traefik admits no
    // other pod), so CF-Connecting-IP is the visitor's address as Cloudflare
    // set it, and each visitor gets its own bucket.
    let rate_limit = match (&public, tunnel_ep) {
        (Some(_), Some(_)) => Some(add(
            "ratelimit",
            json!({"rateLimit": {
                "average": TUNNEL_RATE_AVERAGE,
                "burst": TUNNEL_RATE_BURST,
                "period": "1s",
                "sourceCriterion": {"requestHeaderName": VISITOR_HEADER},
            }}),
        )?),
        _ => None,
    };
    let auth = match &spec.auth {
        Some(auth) => match (&auth.basic_auth_secret_ref, &auth.forward_auth) {
            (Some(secret), _) => Some(add("auth", json!({"basicAuth": {"secret": secret.name}}))?),
            (None, Some(fwd)) => {
                let mut fa = json!({"address": fwd.address, "trustForwardHeader": false});
                if !fwd.auth_response_headers.is_empty() {
                    fa["authResponseHeaders"] = json!(fwd.auth_response_headers);
                }
                Some(add("auth", json!({ "forwardAuth": fa }))?)
            }
            (None, None) => {
                return Err(RenderError::Invalid(format!(
                    "IngressRoute {}: auth needs basicAuthSecretRef or forwardAuth",
                    parent.name
                )));
            }
        },
        None => None,
    };
    let service = json!({"name": spec.service.name, "port": spec.service.port});
    let mut routes = Vec::new();
    match (&public, tunnel_ep) {
        (Some(public), Some(tunnel_ep)) => {
            routes.push(ingress_route(
                parent,
                &parent.name,
                &ctx.entry_points,
                &[local.as_str()],
                [&allow, &auth],
                &service,
            )?);
            routes.push(ingress_route(
                parent,
                &parent.child_name("public"),
                &[tunnel_ep.to_string()],
                &[public.as_str()],
                [&rate_limit, &allow_public, &headers, &auth],
                &service,
            )?);
        }
        (Some(public), None) => routes.push(ingress_route(
            parent,
            &parent.name,
            &ctx.entry_points,
            &[local.as_str(), public.as_str()],
            [&allow, &headers, &auth],
            &service,
        )?),
        (None, _) => routes.push(ingress_route(
            parent,
            &parent.name,
            &ctx.entry_points,
            &[local.as_str()],
            [&allow, &None, &auth],
            &service,
        )?),
    }
    middlewares.extend(routes);
    Ok(middlewares)
}

/// Metadata of a child of one of our IngressRoutes: the route's metadata
/// (`parent.meta`, whose `mediastack.io/stack` label names the route, as the
/// IngressRoute controller's prune selector expects) plus
/// `mediastack.io/owner: <route>`.
pub fn route_child_meta(parent: &Parent, name: &str) -> ObjectMeta {
    let mut meta = parent.meta(name, "traefik-route", "route");
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(OWNER_LABEL.into(), parent.name.clone());
    meta
}

/// A `traefik.io/v1alpha1` Middleware.
fn middleware(parent: &Parent, name: &str, spec: Value) -> Result<Child, RenderError> {
    traefik_middleware(json!({"metadata": route_child_meta(parent, name), "spec": spec}))
}

/// A `traefik.io/v1alpha1` IngressRoute with one route matching `hosts`.
fn ingress_route<const N: usize>(
    parent: &Parent,
    name: &str,
    entry_points: &[String],
    hosts: &[&str],
    middlewares: [&Option<String>; N],
    service: &Value,
) -> Result<Child, RenderError> {
    let mut route = json!({
        "kind": "Rule",
        "match": host_rule(hosts),
        "services": [service],
    });
    let refs: Vec<Value> = middlewares
        .iter()
        .filter_map(|m| m.as_ref().map(|n| json!({ "name": n })))
        .collect();
    if !refs.is_empty() {
        route["middlewares"] = Value::Array(refs);
    }
    traefik_ingress_route(json!({
        "metadata": route_child_meta(parent, name),
        "spec": {"entryPoints": entry_points, "routes": [route]},
    }))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{parent, route, stack};
    use super::*;
    use crate::api::ingressroute::ForwardAuth;
    use crate::api::mediastack::AppSpec;

    fn ctx() -> RouteContext {
        RouteContext::for_stack(&stack().spec, false)
    }

    fn route_parent(r: &IngressRoute) -> Parent {
        Parent::of(r).expect("route has name, namespace and uid")
    }

    /// A public route behind forward auth with an allow list, served by the
    /// example stack with its managed Traefik and a running tunnel.
    fn public_route() -> IngressRoute {
        let mut r = route();
        r.metadata.name = Some("grafana".into());
        r.spec.host = None;
        r.spec.subdomain = Some("grafana".into());
        r.spec.service = ServiceTarget {
            name: "grafana".into(),
            port: IntOrString::String("http".into()),
        };
        r.spec.public = true;
        r.spec.auth = Some(RouteAuth {
            basic_auth_secret_ref: None,
            forward_auth: Some(ForwardAuth {
                address: "http://authelia.auth.svc:9091/api/verify?rd=https://auth.example.org"
                    .into(),
                auth_response_headers: vec!["Remote-User".into(), "Remote-Groups".into()],
            }),
        });
        r.spec.allow_cidrs = vec!["192.168.0.0/16".into(), "198.51.100.0/24".into()];
        r
    }

    fn by_key(children: &[Child]) -> BTreeMap<String, Value> {
        children
            .iter()
            .map(|c| (c.key(), serde_json::to_value(&c.object).expect("json")))
            .collect()
    }

    fn snapshot_all(prefix: &str, children: &[Child]) {
        for child in children {
            let snap = format!(
                "{prefix}_{}_{}",
                child.api.kind.to_lowercase(),
                child.object.metadata.name.as_deref().unwrap_or_default()
            );
            insta::assert_snapshot!(snap, child.to_yaml());
        }
    }

    #[test]
    fn app_routes_snapshots() {
        let routes = app_routes(&parent(), &stack().spec).expect("render");
        let keys: Vec<String> = routes.iter().map(Child::key).collect();
        assert_eq!(
            keys,
            [
                "IngressRoute/home-jellyfin",
                "IngressRoute/home-jellyseerr",
                "IngressRoute/home-sonarr",
                "IngressRoute/home-radarr",
                "IngressRoute/home-prowlarr",
                "IngressRoute/home-bazarr",
                "IngressRoute/home-qbittorrent",
                "IngressRoute/home-dozzle",
                "IngressRoute/home-dashboard",
            ]
        );
        assert!(routes.iter().all(|r| r.api.group == "mediastack.io"));
        snapshot_all("app_route", &routes);
    }

    #[test]
    fn app_routes_follow_expose() {
        let mut s = stack();
        s.spec.apps.sonarr = Some(AppSpec {
            expose: Some(Expose {
                enabled: false,
                ..Expose::default()
            }),
            ..AppSpec::default()
        });
        s.spec.apps.jellyfin = Some(AppSpec {
            expose: Some(Expose {
                enabled: true,
                public: true,
                host: Some("tv.home.arpa".into()),
                ..Expose::default()
            }),
            ..AppSpec::default()
        });
        s.spec.apps.radarr = Some(AppSpec {
            enabled: false,
            ..AppSpec::default()
        });
        let routes = by_key(&app_routes(&parent(), &s.spec).expect("render"));
        assert!(!routes.contains_key("IngressRoute/home-sonarr"));
        assert!(!routes.contains_key("IngressRoute/home-radarr"));
        let jf = &routes["IngressRoute/home-jellyfin"]["spec"];
        assert_eq!(jf["host"], "tv.home.arpa");
        assert_eq!(jf["public"], true);
        assert_eq!(
            jf["service"],
            json!({"name": "home-jellyfin", "port": "http"})
        );
        assert_eq!(jf["stackRef"], json!({"name": "home"}));
        let bazarr = &routes["IngressRoute/home-bazarr"]["spec"];
        assert_eq!(bazarr["host"], "bazarr.lan");
        assert_eq!(bazarr["public"], false);
    }

    #[test]
    fn app_routes_carry_expose_auth_and_dozzle_has_a_login_by_default() {
        let p = parent();
        let mut s = stack();
        let routes = by_key(&app_routes(&p, &s.spec).expect("render"));
        // Dozzle: basic auth from the generated Secret.
        assert_eq!(
            routes["IngressRoute/home-dozzle"]["spec"]["auth"],
            json!({"basicAuthSecretRef": {"name": "home-dozzle-auth"}})
        );
        assert!(
            routes["IngressRoute/home-sonarr"]["spec"]
                .get("auth")
                .is_none()
        );
        assert!(
            insecure_apps(&p, &s.spec).is_empty(),
            "nothing public, Dozzle has a login"
        );

        // A public app without auth, and Dozzle opted out: both flagged.
        s.spec.apps.jellyfin = Some(AppSpec {
            expose: Some(Expose {
                public: true,
                ..Expose::default()
            }),
            ..AppSpec::default()
        });
        s.spec.apps.dozzle = Some(AppSpec {
            expose: Some(Expose {
                allow_anonymous: true,
                ..Expose::default()
            }),
            ..AppSpec::default()
        });
        assert_eq!(insecure_apps(&p, &s.spec), ["jellyfin", "dozzle"]);
        let routes = by_key(&app_routes(&p, &s.spec).expect("render"));
        assert!(
            routes["IngressRoute/home-dozzle"]["spec"]
                .get("auth")
                .is_none()
        );

        // The user's own auth is passed to the route and clears the flag.
        let forward = RouteAuth {
            basic_auth_secret_ref: None,
            forward_auth: Some(ForwardAuth {
                address: "http://authelia.auth.svc:9091/api/verify".into(),
                auth_response_headers: Vec::new(),
            }),
        };
        for app in [&mut s.spec.apps.jellyfin, &mut s.spec.apps.dozzle] {
            if let Some(e) = app.as_mut().and_then(|a| a.expose.as_mut()) {
                e.auth = Some(forward.clone());
                e.allow_anonymous = false;
            }
        }
        let routes = by_key(&app_routes(&p, &s.spec).expect("render"));
        for name in ["IngressRoute/home-jellyfin", "IngressRoute/home-dozzle"] {
            assert_eq!(
                routes[name]["spec"]["auth"],
                serde_json::to_value(&forward).expect("json"),
                "{name}"
            );
        }
        assert!(insecure_apps(&p, &s.spec).is_empty());
        // No generated login when the user brings one.
        assert!(super::super::dozzle::login_secret(&p, &s.spec).is_none());
    }

    #[test]
    fn example_route_renders_traefik_objects() {
        let mut r = route();
        // As in examples/ingressroute.yaml (set here as well: the API type
        // currently reads the field as `allowCidrs`).
        r.spec.allow_cidrs = vec!["192.168.0.0/16".into()];
        let children = traefik_objects(&r, &route_parent(&r), &ctx()).expect("render");
        let keys: Vec<String> = children.iter().map(Child::key).collect();
        assert_eq!(
            keys,
            [
                "Middleware/home-assistant-allow",
                "Middleware/home-assistant-auth",
                "IngressRoute/home-assistant",
            ]
        );
        let objs = by_key(&children);
        let ir = &objs["IngressRoute/home-assistant"];
        assert_eq!(ir["apiVersion"], "traefik.io/v1alpha1");
        assert_eq!(ir["spec"]["entryPoints"], json!(["web"]));
        let rt = &ir["spec"]["routes"][0];
        assert_eq!(rt["match"], "Host(`ha.lan`)");
        assert_eq!(
            rt["middlewares"],
            json!([{"name": "home-assistant-allow"}, {"name": "home-assistant-auth"}])
        );
        assert_eq!(
            rt["services"],
            json!([{"name": "home-assistant", "port": 8123}])
        );
        assert_eq!(
            objs["Middleware/home-assistant-allow"]["spec"],
            json!({"ipAllowList": {"sourceRange": ["192.168.0.0/16"]}})
        );
        // Owned by the route and labelled with it.
        let meta = &ir["metadata"];
        assert_eq!(meta["ownerReferences"][0]["kind"], "IngressRoute");
        assert_eq!(meta["ownerReferences"][0]["name"], "home-assistant");
        assert_eq!(meta["labels"][OWNER_LABEL], "home-assistant");
        super::super::traefik_crd::traefik_schema::assert_valid(&children);
        snapshot_all("example_route", &children);
    }

    #[test]
    fn public_route_with_forward_auth_renders_traefik_objects() {
        let r = public_route();
        let c = RouteContext::for_stack(&stack().spec, true);
        let children = traefik_objects(&r, &route_parent(&r), &c).expect("render");
        let keys: Vec<String> = children.iter().map(Child::key).collect();
        assert_eq!(
            keys,
            [
                "Middleware/grafana-allow",
                "Middleware/grafana-allow-public",
                "Middleware/grafana-headers",
                "Middleware/grafana-ratelimit",
                "Middleware/grafana-auth",
                "IngressRoute/grafana",
                "IngressRoute/grafana-public",
            ]
        );
        let objs = by_key(&children);
        // The LAN host on the HTTP entry point, the public host only on the tunnel's.
        let local = &objs["IngressRoute/grafana"]["spec"];
        assert_eq!(local["entryPoints"], json!(["web"]));
        assert_eq!(local["routes"][0]["match"], "Host(`grafana.lan`)");
        assert_eq!(
            local["routes"][0]["middlewares"],
            json!([{"name": "grafana-allow"}, {"name": "grafana-auth"}])
        );
        let public = &objs["IngressRoute/grafana-public"]["spec"];
        assert_eq!(public["entryPoints"], json!(["tunnel"]));
        assert_eq!(public["routes"][0]["match"], "Host(`grafana.example.org`)");
        assert_eq!(
            public["routes"][0]["middlewares"],
            json!([
                {"name": "grafana-ratelimit"},
                {"name": "grafana-allow-public"},
                {"name": "grafana-headers"},
                {"name": "grafana-auth"}
            ])
        );
        // Each tunnel visitor gets its own bucket, keyed on the address
        // Cloudflare sets; the LAN route has no limit.
        assert_eq!(
            objs["Middleware/grafana-ratelimit"]["spec"],
            json!({"rateLimit": {
                "average": 50, "burst": 200, "period": "1s",
                "sourceCriterion": {"requestHeaderName": "CF-Connecting-IP"}
            }})
        );
        assert_eq!(
            public["routes"][0]["services"],
            json!([{"name": "grafana", "port": "http"}])
        );
        assert_eq!(
            objs["Middleware/grafana-auth"]["spec"],
            json!({"forwardAuth": {
                "address": "http://authelia.auth.svc:9091/api/verify?rd=https://auth.example.org",
                "authResponseHeaders": ["Remote-User", "Remote-Groups"],
                "trustForwardHeader": false,
            }})
        );
        // The LAN allow list judges the peer, the public one the visitor.
        assert!(
            objs["Middleware/grafana-allow"]["spec"]["ipAllowList"]
                .get("ipStrategy")
                .is_none()
        );
        assert_eq!(
            objs["Middleware/grafana-allow-public"]["spec"]["ipAllowList"]["ipStrategy"],
            json!({"depth": 1})
        );
        let headers = &objs["Middleware/grafana-headers"]["spec"]["headers"];
        for flag in ["frameDeny", "contentTypeNosniff", "browserXssFilter"] {
            assert_eq!(headers[flag], true, "{flag}");
        }
        assert_eq!(headers["stsSeconds"], 31_536_000);
        assert!(headers["referrerPolicy"].is_string());
        super::super::traefik_crd::traefik_schema::assert_valid(&children);
        snapshot_all("public_route", &children);
    }

    #[test]
    fn public_route_on_an_existing_traefik_shares_the_entry_point() {
        let r = public_route();
        let mut s = stack();
        s.spec.ingress.traefik.managed = Some(false);
        let c = RouteContext::for_stack(&s.spec, true);
        assert_eq!(c.tunnel_entry_point, None);
        let children = traefik_objects(&r, &route_parent(&r), &c).expect("render");
        let objs = by_key(&children);
        assert!(!objs.contains_key("IngressRoute/grafana-public"));
        assert!(!objs.contains_key("Middleware/grafana-allow-public"));
        // An existing Traefik (k3s's) is bound on its `web` and `websecure`.
        assert_eq!(
            objs["IngressRoute/grafana"]["spec"]["entryPoints"],
            json!(["web", "websecure"])
        );
        let rt = &objs["IngressRoute/grafana"]["spec"]["routes"][0];
        assert_eq!(
            rt["match"],
            "Host(`grafana.lan`) || Host(`grafana.example.org`)"
        );
        assert_eq!(
            rt["middlewares"],
            json!([{"name": "grafana-allow"}, {"name": "grafana-headers"}, {"name": "grafana-auth"}])
        );
        let reasons: Vec<&str> = warnings(&r, &c).into_iter().map(|w| w.0).collect();
        assert_eq!(reasons, ["AllowListSeesTunnel"]);
        super::super::traefik_crd::traefik_schema::assert_valid(&children);

        // Configured entry points; the managed Traefik keeps its one.
        s.spec.ingress.traefik.existing_entry_points = vec!["http".into()];
        assert_eq!(
            RouteContext::for_stack(&s.spec, true).entry_points,
            ["http"]
        );
        s.spec.ingress.traefik.managed = None;
        assert_eq!(RouteContext::for_stack(&s.spec, true).entry_points, ["web"]);
    }

    #[test]
    fn middlewares_for_each_auth_kind() {
        let mut r = route();
        r.spec.allow_cidrs.clear();
        let p = route_parent(&r);

        r.spec.auth = Some(RouteAuth {
            basic_auth_secret_ref: Some(SecretRef {
                name: "ha-users".into(),
            }),
            forward_auth: None,
        });
        let objs = by_key(&traefik_objects(&r, &p, &ctx()).expect("render"));
        assert_eq!(
            objs["Middleware/home-assistant-auth"]["spec"],
            json!({"basicAuth": {"secret": "ha-users"}})
        );

        r.spec.auth = Some(RouteAuth {
            basic_auth_secret_ref: None,
            forward_auth: Some(ForwardAuth {
                address: "http://auth:9091/verify".into(),
                auth_response_headers: Vec::new(),
            }),
        });
        let objs = by_key(&traefik_objects(&r, &p, &ctx()).expect("render"));
        assert_eq!(
            objs["Middleware/home-assistant-auth"]["spec"],
            json!({"forwardAuth": {"address": "http://auth:9091/verify", "trustForwardHeader": false}})
        );

        r.spec.auth = None;
        let children = traefik_objects(&r, &p, &ctx()).expect("render");
        assert_eq!(
            children.iter().map(Child::key).collect::<Vec<_>>(),
            ["IngressRoute/home-assistant"]
        );
        let ir = serde_json::to_value(&children[0].object).expect("json");
        assert!(ir["spec"]["routes"][0].get("middlewares").is_none());
    }

    #[test]
    fn hosts_and_urls() {
        let mut r = route();
        let c = ctx();
        assert_eq!(hosts(&r, &c), ["ha.lan"]);
        assert_eq!(urls(&r, &c), ["http://ha.lan"]);

        r.spec.host = None;
        r.spec.subdomain = Some("assistant".into());
        r.spec.public = true;
        assert_eq!(hosts(&r, &c), ["assistant.lan", "assistant.example.org"]);
        // The public URL only while the tunnel runs.
        assert_eq!(urls(&r, &c), ["http://assistant.lan"]);
        let ready = RouteContext {
            tunnel_ready: true,
            ..c.clone()
        };
        assert_eq!(
            urls(&r, &ready),
            ["http://assistant.lan", "https://assistant.example.org"]
        );

        // The first label of a full host name goes to the public domain.
        r.spec.subdomain = None;
        r.spec.host = Some("ha.home.arpa".into());
        assert_eq!(hosts(&r, &ready), ["ha.home.arpa", "ha.example.org"]);

        // No public domain: served locally only.
        let no_public = RouteContext {
            public_domain: None,
            ..ready
        };
        assert_eq!(hosts(&r, &no_public), ["ha.home.arpa"]);
    }

    #[test]
    fn warnings_for_public_routes() {
        let reasons = |r: &IngressRoute, c: &RouteContext| -> Vec<&'static str> {
            warnings(r, c).into_iter().map(|w| w.0).collect()
        };
        let mut r = route();
        assert!(reasons(&r, &ctx()).is_empty(), "a private route is fine");

        r.spec.public = true;
        r.spec.allow_cidrs.clear();
        let ready = RouteContext::for_stack(&stack().spec, true);
        assert!(
            reasons(&r, &ready).is_empty(),
            "public, with auth and a tunnel"
        );
        assert_eq!(reasons(&r, &ctx()), ["TunnelNotConfigured"]);

        r.spec.auth = None;
        assert_eq!(reasons(&r, &ready), ["PublicWithoutAuth"]);
        assert_eq!(
            reasons(&r, &ctx()),
            ["PublicWithoutAuth", "TunnelNotConfigured"]
        );
        let no_domain = RouteContext {
            public_domain: None,
            ..ready
        };
        assert_eq!(
            reasons(&r, &no_domain),
            ["PublicWithoutAuth", "NoPublicDomain"]
        );
    }

    #[test]
    fn a_route_without_host_is_invalid() {
        let mut r = route();
        r.spec.host = None;
        let err = traefik_objects(&r, &route_parent(&r), &ctx());
        assert!(matches!(err, Err(RenderError::Invalid(_))));
    }
}
