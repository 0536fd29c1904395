//! The IngressRoute controller: our route -> Traefik IngressRoute and
//! Middlewares, with host-clash detection and status. Stages: resolve the
//! stack and the other routes -> check the host (pure) -> render (pure) ->
//! apply (per child) and prune -> check the backend -> status (pure) ->
//! write status and events.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;

use super::children::Applied;
use super::resolve::{crd_exists, resolve_traefik, stored_or_get, traefik_kinds};
use super::status::{self, Cond, RouteInput, Stall};
use super::{Context, Error, apply, report};
use crate::api::IngressRoute;
use crate::api::condition::{ConditionType, Reason};
use crate::render::meta::{MANAGER, Parent, STACK_LABEL};
use crate::render::route::{self, RouteContext};

pub use super::resolve::TRAEFIK_CRD;

/// Reconciles one of our IngressRoutes.
#[tracing::instrument(
    name = "reconcile",
    skip_all,
    fields(kind = "IngressRoute", namespace = %route.namespace().unwrap_or_default(), name = %route.name_any())
)]
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
            RouteOutcome {
                problem: Some((Reason::StackNotFound, msg)),
                ..Default::default()
            },
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
        s.ingress.traefik.managed = Some(resolve_traefik(&ctx, &stack.spec));
        s
    };
    let rctx = RouteContext::for_stack(&resolved, tunnel_ready);
    let hosts = route::hosts(&route, &rctx);
    let urls = route::urls(&route, &rctx);

    if !crd_exists(&ctx, TRAEFIK_CRD) {
        let msg = "The traefik.io CRDs are not installed; install Traefik's CRDs".to_string();
        return finish(
            &route,
            &ctx,
            RouteOutcome {
                hosts,
                urls,
                problem: Some((Reason::TraefikCrdNotInstalled, msg)),
                ..Default::default()
            },
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
            !s.conditions.is_empty()
                && !status::was_true(&s.conditions, ConditionType::Stalled, Reason::HostConflict)
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
    let mut applied = Applied::default();
    let mut problem = None;
    let mut keep = BTreeSet::new();
    if let Some((other, host)) = clash {
        problem = Some((
            Reason::HostConflict,
            format!(
                "host {host} is already served by IngressRoute {other}; this route is not applied"
            ),
        ));
    } else {
        match route::traefik_objects(&route, &parent, &rctx) {
            Ok(children) => {
                keep = children.iter().map(|c| c.id()).collect();
                applied.apply_all(&ctx.client, &ctx.cache, &children).await;
            }
            Err(e) => problem = Some((Reason::InvalidSpec, e.to_string())),
        }
    }
    // The keep set holds every desired child, applied or not: a child whose
    // apply failed keeps its previous version.
    applied.record_prune(
        apply::prune(
            &ctx.client,
            &ctx.cache,
            &ns,
            &selector,
            &traefik_kinds(),
            &keep,
            &parent.owner.uid,
        )
        .await,
    );
    if applied.changes() > 0 {
        ctx.metrics.writes(applied.changes());
    }

    let mut extra = Vec::new();
    let svc = &route.spec.service.name;
    if problem.is_none() && stored_or_get::<Service>(&ctx, &ns, svc).await?.is_none() {
        problem = Some((
            Reason::ServiceNotFound,
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
                Reason::AuthSecretNotFound,
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
        extra.push(Cond::new(
            ConditionType::Insecure,
            true,
            warning_reason(reason),
            message,
        ));
    }
    finish(
        &route,
        &ctx,
        RouteOutcome {
            hosts,
            urls,
            problem,
            extra,
            applied,
        },
    )
    .await
}

/// What the route's reconcile found and did, for the status stage.
#[derive(Debug, Default)]
struct RouteOutcome {
    hosts: Vec<String>,
    urls: Vec<String>,
    problem: Option<(Reason, String)>,
    extra: Vec<Cond>,
    applied: Applied,
}

/// The [`Reason`] of a warning of `route::warnings` (written as its string
/// by the pure render layer).
fn warning_reason(reason: &str) -> Reason {
    Reason::parse(reason).unwrap_or(Reason::PublicWithoutAuth)
}

/// The status stage (pure, [`status::ingressroute`]), then writing it.
async fn finish(
    route: &IngressRoute,
    ctx: &Context,
    outcome: RouteOutcome,
) -> Result<Action, Error> {
    let report = status::ingressroute(&RouteInput {
        route,
        hosts: outcome.hosts,
        urls: outcome.urls,
        problem: outcome.problem.map(|(r, m)| Stall::new(r, m)),
        extra: outcome.extra,
        applied: &outcome.applied,
        resync: ctx.resync,
    });
    report::send(ctx, route, &report).await?;
    if let Some(e) = outcome.applied.retry {
        return Err(e);
    }
    Ok(Action::requeue(report.requeue))
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
