//! The IngressRoute controller: our route -> Traefik IngressRoute and
//! Middlewares, with host-clash detection and status.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::ResourceExt;
use kube::api::{Api, ApiResource};
use kube::core::GroupVersionKind;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::mediastack::{crd_exists, publish};
use super::status::{self, Cond};
use super::{Context, Error, apply};
use crate::api::{IngressRoute, IngressRouteStatus};
use crate::render::meta::{MANAGER, Parent, STACK_LABEL};
use crate::render::route::{self, RouteContext};

/// CRD that must exist before Traefik objects can be applied.
pub const TRAEFIK_CRD: &str = "ingressroutes.traefik.io";

/// The Traefik kinds the operator creates.
pub(crate) fn traefik_kinds() -> Vec<ApiResource> {
    ["IngressRoute:ingressroutes", "Middleware:middlewares"]
        .iter()
        .filter_map(|k| k.split_once(':'))
        .map(|(kind, plural)| {
            ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("traefik.io", "v1alpha1", kind),
                plural,
            )
        })
        .collect()
}

/// Reconciles one of our IngressRoutes.
pub async fn reconcile(route: Arc<IngressRoute>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_timer("IngressRoute");
    let parent =
        Parent::of(route.as_ref()).ok_or(Error::MissingMetadata("name, namespace or uid"))?;
    let ns = parent.namespace.clone();

    ctx.cache.wait_ready().await;
    // The stack whose Traefik serves the route (the stack store).
    let stack = match &route.spec.stack_ref {
        Some(r) => ctx
            .cache
            .stacks
            .get(&kube::runtime::reflector::ObjectRef::new(&r.name).within(&ns))
            .map(|s| s.as_ref().clone()),
        None => {
            let all = ctx.cache.stacks_in(&ns);
            if all.len() == 1 {
                all.first().map(|s| s.as_ref().clone())
            } else {
                None
            }
        }
    };
    let Some(stack) = stack else {
        let msg = match &route.spec.stack_ref {
            Some(r) => format!("MediaStack {} not found in namespace {ns}", r.name),
            None => {
                format!("stackRef is required: namespace {ns} does not have exactly one MediaStack")
            }
        };
        return finish(
            &route,
            &ctx,
            Vec::new(),
            Vec::new(),
            Some(("StackNotFound", msg)),
            Vec::new(),
        )
        .await;
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let tunnel_ready = match &stack.spec.ingress.tunnel {
        Some(t) => secrets
            .get_opt(&t.token_secret_ref.name)
            .await
            .map_err(|source| Error::Read {
                what: format!("Secret/{}", t.token_secret_ref.name),
                source,
            })?
            .and_then(|s| s.data)
            .is_some_and(|d| d.get("token").is_some_and(|v| !v.0.is_empty())),
        None => false,
    };
    let resolved = {
        let mut s = stack.spec.clone();
        s.ingress.traefik.managed =
            Some(super::mediastack::resolve_traefik(&ctx, &stack.spec).await?);
        s
    };
    let rctx = RouteContext::for_stack(&resolved, tunnel_ready);
    let hosts = route::hosts(&route, &rctx);
    let urls = route::urls(&route, &rctx);

    if !crd_exists(&ctx, TRAEFIK_CRD).await? {
        let msg = "The traefik.io CRDs are not installed; install Traefik's CRDs".to_string();
        return finish(
            &route,
            &ctx,
            hosts,
            urls,
            Some(("TraefikCRDNotInstalled", msg)),
            Vec::new(),
        )
        .await;
    }

    // Host clash: a route that is applied keeps its host; among the others
    // the oldest (then the first by name) wins. Creation times have
    // one-second resolution, so without the first rule a new route could
    // take a host from one already serving it.
    let all: Vec<IngressRoute> = ctx
        .cache
        .routes
        .state()
        .iter()
        .filter(|r| r.namespace().as_deref() == Some(ns.as_str()))
        .map(|r| r.as_ref().clone())
        .collect();
    let mine: BTreeSet<&String> = hosts.iter().collect();
    let key = |r: &IngressRoute| {
        let applied = r.status.as_ref().is_some_and(|s| {
            !s.conditions.is_empty() && !status::was_true(&s.conditions, "Stalled", "HostConflict")
        });
        (
            !applied,
            r.metadata.creation_timestamp.clone().map(|t| t.0),
            r.name_any(),
        )
    };
    let clash = all
        .iter()
        .filter(|o| o.uid() != route.uid() && key(o) < key(&route))
        .find_map(|o| {
            route::hosts(o, &rctx)
                .into_iter()
                .find(|h| mine.contains(h))
                .map(|h| (o.name_any(), h))
        });

    let selector = [
        (STACK_LABEL, parent.name.as_str()),
        ("app.kubernetes.io/managed-by", MANAGER),
    ];
    let mut keep = BTreeSet::new();
    let mut writes = 0;
    let mut problem = None;
    if let Some((other, host)) = clash {
        problem = Some((
            "HostConflict",
            format!(
                "host {host} is already served by IngressRoute {other}; this route is not applied"
            ),
        ));
    } else {
        let children = route::traefik_objects(&route, &parent, &rctx).map_err(Error::Render)?;
        for child in &children {
            keep.insert(child.id());
            writes += usize::from(apply::apply(&ctx.client, &ctx.cache, child).await?);
        }
    }
    writes += apply::prune(
        &ctx.client,
        &ctx.cache,
        &ns,
        &selector,
        &traefik_kinds(),
        &keep,
        &parent.owner.uid,
    )
    .await?
    .len();
    if writes > 0 {
        ctx.metrics.writes(writes);
    }

    let mut extra = Vec::new();
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    let svc = &route.spec.service.name;
    if problem.is_none()
        && services
            .get_opt(svc)
            .await
            .map_err(|source| Error::Read {
                what: format!("Service/{svc}"),
                source,
            })?
            .is_none()
    {
        problem = Some((
            "ServiceNotFound",
            format!(
                "Service {svc} does not exist in namespace {ns}; Traefik answers 404 until it does"
            ),
        ));
    }
    // A basic-auth Secret that is missing or unusable: Traefik refuses the
    // route's requests until it is fixed (fail closed), so say why.
    if problem.is_none()
        && let Some(secret) = route
            .spec
            .auth
            .as_ref()
            .and_then(|a| a.basic_auth_secret_ref.as_ref())
    {
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
        let found = secrets
            .get_opt(&secret.name)
            .await
            .map_err(|source| Error::Read {
                what: format!("Secret/{}", secret.name),
                source,
            })?;
        if !usable_basic_auth(found.as_ref()) {
            problem = Some((
                "AuthSecretNotFound",
                format!(
                    "auth.basicAuthSecretRef: Secret {} does not exist in namespace {ns} or has                      neither an htpasswd `users` key nor (type kubernetes.io/basic-auth)                      `username` and `password`; Traefik refuses the route's requests until it does",
                    secret.name
                ),
            ));
        }
    }
    // Conditions are keyed by type: all warnings go into one `Insecure`,
    // with the first reason and every message.
    let warnings = route::warnings(&route, &rctx);
    if let Some((reason, _)) = warnings.first() {
        let message = warnings
            .iter()
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        extra.push(Cond::new("Insecure", true, *reason, message));
    }
    finish(&route, &ctx, hosts, urls, problem, extra).await
}

/// Whether Traefik's basicAuth can read users from `secret`: an htpasswd
/// `users` key, or a `kubernetes.io/basic-auth` Secret with both keys.
fn usable_basic_auth(secret: Option<&Secret>) -> bool {
    let Some(secret) = secret else {
        return false;
    };
    let has = |k: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .is_some_and(|v| !v.0.is_empty())
    };
    has("users")
        || (secret.type_.as_deref() == Some("kubernetes.io/basic-auth")
            && has("username")
            && has("password"))
}

async fn finish(
    route: &IngressRoute,
    ctx: &Context,
    hosts: Vec<String>,
    urls: Vec<String>,
    problem: Option<(&'static str, String)>,
    extra: Vec<Cond>,
) -> Result<Action, Error> {
    let mut conds = match &problem {
        // A missing Service is expected to resolve by itself (apps start later): not stalled.
        Some((r @ ("ServiceNotFound" | "AuthSecretNotFound"), m)) => {
            status::kstatus(false, None, Some((r, m.as_str())))
        }
        Some((r, m)) => status::kstatus(false, Some((r, m.as_str())), None),
        None => status::kstatus(true, None, None),
    };
    if extra.is_empty() {
        conds.push(Cond::new(
            "Insecure",
            false,
            "Secure",
            "The route has auth or is not public",
        ));
    } else {
        conds.extend(extra);
    }
    let old = route.status.clone().unwrap_or_default();
    let new = IngressRouteStatus {
        observed_generation: route.metadata.generation,
        conditions: status::merge(&old.conditions, &conds, route.metadata.generation),
        hosts,
        urls,
    };
    if !(old.observed_generation == new.observed_generation
        && status::same(&old.conditions, &new.conditions)
        && old.hosts == new.hosts
        && old.urls == new.urls)
    {
        // A missing auth Secret is not stalled (it may be created next) but
        // is the user's to fix: it gets its Warning too.
        for c in conds.iter().filter(|c| {
            c.status
                && (c.type_ == "Stalled"
                    || c.type_ == "Insecure"
                    || (c.type_ == "Reconciling" && c.reason == "AuthSecretNotFound"))
        }) {
            if !status::was_true(&old.conditions, c.type_, &c.reason) {
                publish(ctx, route, EventType::Warning, &c.reason, c.message.clone()).await;
            }
        }
        status::write(ctx, route, &new).await?;
    }
    Ok(match problem {
        Some(_) => Action::requeue(Duration::from_secs(30)),
        None => Action::requeue(ctx.resync),
    })
}
