//! The MediaStack controller, one stage per step:
//!
//! observe -> resolve references -> validate (pure) -> render (pure) ->
//! guard (claims, aliases) -> apply (per child) -> status (pure) -> write
//! status and events.
//!
//! A stage that finds a spec problem returns a [`Stall`]; the status stage
//! reports it. A child the API server refuses does not stop the others:
//! the apply stage records it in [`Applied`] and pruning and status still
//! run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding};
use kube::ResourceExt;
use kube::api::{Api, ApiResource, ListParams};
use kube::core::GroupVersionKind;
use kube::runtime::controller::Action;
use tracing::info;

use super::children::Applied;
use super::resolve::{
    TRAEFIK_CRD, cluster_subnets, crd_exists, gateway, get_opt, has_key, resolve_traefik,
    stored_or_get,
};
use super::status::{self, Observed, StackApplied, StackInput, StackProgress, Stall};
use super::{Context, Error, apply, report};
use crate::api::condition::Reason;
use crate::api::mediastack::MediaStackSpec;
use crate::api::{IngressRoute, MediaStack, VpnGateway};
use crate::policy::Policy;
use crate::render::meta::{MANAGER, Parent, STACK_LABEL};
use crate::render::stack::Rendered;
use crate::render::{Inputs, stack, storage, vpn};

pub use super::resolve::SERVICE_MONITOR_CRD;

/// Reconciles one MediaStack: the stages in order.
#[tracing::instrument(
    name = "reconcile",
    skip_all,
    fields(kind = "MediaStack", namespace = %stack.namespace().unwrap_or_default(), name = %stack.name_any())
)]
pub async fn reconcile(stack: Arc<MediaStack>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_timer("MediaStack");
    let parent =
        Parent::of(stack.as_ref()).ok_or(Error::MissingMetadata("name, namespace or uid"))?;
    let mut observed = observe(&ctx, &parent).await?;

    // Monitoring counts as installed only once the stack got to rendering.
    let mut monitoring_crds = false;
    let progress = 'stages: {
        let resolved = match resolve(&stack, &ctx, &parent, &observed).await? {
            Ok(r) => r,
            Err(stall) => break 'stages StackProgress::Stalled(stall),
        };
        let effective = match validate(&ctx.policy, &stack, &resolved) {
            Ok(e) => e,
            Err(stall) => break 'stages StackProgress::Stalled(stall),
        };
        monitoring_crds = resolved.inputs.monitoring_crds;
        let mut desired = match render(&effective, &parent, &resolved.inputs, &ctx) {
            Ok(d) => d,
            Err(stall) => break 'stages StackProgress::Stalled(stall),
        };
        let alias_conflicts = match guard(&ctx, &parent, &mut desired).await? {
            Ok(c) => c,
            Err(stall) => break 'stages StackProgress::Stalled(stall),
        };
        let applied = apply_children(&ctx, &parent, &effective.spec, &desired, &resolved).await;
        StackProgress::Applied(Box::new(StackApplied {
            spec: effective.spec,
            inputs: resolved.inputs,
            waiting: desired.waiting,
            alias_conflicts,
            applied,
        }))
    };
    observe_edge(&ctx, &parent, &progress, &mut observed).await?;

    let report = status::mediastack(&StackInput {
        stack: &stack,
        parent: &parent,
        observed: &observed,
        progress: &progress,
        monitoring_crds,
        resync: ctx.resync,
    });
    report::send(&ctx, stack.as_ref(), &report).await?;
    // A transient failure is retried with the controller's back-off, after
    // the status says what failed.
    if let StackProgress::Applied(done) = progress
        && let Some(e) = done.applied.retry
    {
        return Err(e);
    }
    Ok(Action::requeue(report.requeue))
}

/// Stage 0, observe: the stack's Deployments as they are (for the apps'
/// readiness, which the render uses for start order, and for status).
/// Readiness as the Deployment store last saw it (a LIST only when no
/// store watches Deployments).
async fn observe(ctx: &Context, parent: &Parent) -> Result<Observed, Error> {
    ctx.cache.wait_ready().await;
    let labels = selector(parent);
    let live = match ctx
        .cache
        .typed_children::<Deployment>(&parent.namespace, &labels)
    {
        Some(d) => d,
        None => {
            let deployments: Api<Deployment> =
                Api::namespaced(ctx.client.clone(), &parent.namespace);
            deployments
                .list(&ListParams::default().labels(&apply::selector_string(&labels)))
                .await
                .map_err(|source| Error::Read {
                    what: "Deployment list".into(),
                    source,
                })?
                .items
        }
    };
    Ok(Observed {
        deployments: live.into_iter().map(|d| (d.name_any(), d)).collect(),
        daemonsets: BTreeMap::new(),
    })
}

/// After apply: the fail2ban DaemonSet, when the edge runs one.
async fn observe_edge(
    ctx: &Context,
    parent: &Parent,
    progress: &StackProgress,
    observed: &mut Observed,
) -> Result<(), Error> {
    let StackProgress::Applied(done) = progress else {
        return Ok(());
    };
    if crate::render::fail2ban::enabled(&done.spec) && done.spec.ingress.traefik.is_managed() {
        let name = crate::render::fail2ban::name(parent);
        let ds = match ctx.cache.typed_child::<DaemonSet>(&parent.namespace, &name) {
            Some(ds) => ds,
            None => {
                let daemonsets: Api<DaemonSet> =
                    Api::namespaced(ctx.client.clone(), &parent.namespace);
                get_opt(&daemonsets, &name).await?
            }
        };
        if let Some(ds) = ds {
            observed.daemonsets.insert(name, ds);
        }
    }
    Ok(())
}

/// The labels that select the stack's children.
fn selector(parent: &Parent) -> [(&'static str, &str); 2] {
    [
        (STACK_LABEL, parent.name.as_str()),
        ("app.kubernetes.io/managed-by", MANAGER),
    ]
}

/// What the spec references, read from the cluster.
#[derive(Debug)]
struct Resolved {
    /// The spec with `ingress.traefik.managed` resolved (auto: ours unless
    /// one already runs).
    spec: MediaStackSpec,
    /// Every VpnGateway an app names (`None`: not found).
    gateways: BTreeMap<String, Option<VpnGateway>>,
    /// What the render needs beyond the spec.
    inputs: Inputs,
    /// The traefik.io CRDs are installed (the stack's Traefik objects are
    /// then applied and pruned).
    traefik_crd: bool,
}

/// Stage 1, resolve references. A missing claim or Secret stalls the stack
/// before anything is written.
async fn resolve(
    stack: &MediaStack,
    ctx: &Context,
    parent: &Parent,
    observed: &Observed,
) -> Result<Result<Resolved, Stall>, Error> {
    if let Some(stall) = check_references(stack, ctx).await? {
        return Ok(Err(stall));
    }
    let mut spec = stack.spec.clone();
    spec.ingress.traefik.managed = Some(resolve_traefik(ctx, &stack.spec));
    let mut gateways = BTreeMap::new();
    for (_, app_spec) in stack.spec.apps.enabled() {
        if let Some(att) = &app_spec.vpn
            && !gateways.contains_key(&att.gateway_ref)
        {
            let gw = gateway(ctx, &parent.namespace, &att.gateway_ref);
            gateways.insert(att.gateway_ref.clone(), gw);
        }
    }
    let inputs = gather_inputs(stack, ctx, parent, observed, &gateways).await?;
    Ok(Ok(Resolved {
        spec,
        gateways,
        inputs,
        traefik_crd: crd_exists(ctx, TRAEFIK_CRD),
    }))
}

/// Stage 2, validate (pure): the admin policy. A refused request renders
/// nothing new, so what runs keeps running unchanged. Returns the stack
/// with the effective spec (policy defaults applied).
fn validate(policy: &Policy, stack: &MediaStack, resolved: &Resolved) -> Result<MediaStack, Stall> {
    let mut refusals = policy.check(&resolved.spec);
    // The gluetun image of a gateway runs in this stack's pods.
    for (name, gw) in &resolved.gateways {
        if let Some(gw) = gw
            && let Some(r) =
                policy.check_image(&format!("VpnGateway {name} spec.image"), &gw.spec.image)
        {
            refusals.push(r);
        }
    }
    if !refusals.is_empty() {
        return Err(Stall::new(
            Reason::NotAllowed,
            refusals
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        ));
    }
    let mut effective = stack.clone();
    effective.spec = policy.effective(&resolved.spec);
    Ok(effective)
}

/// Stage 3, render (pure): the desired objects.
fn render(
    effective: &MediaStack,
    parent: &Parent,
    inputs: &Inputs,
    ctx: &Context,
) -> Result<Rendered, Stall> {
    match stack::render(effective, parent, inputs) {
        Ok(mut r) => {
            stack::bind_fixed_cluster_role(&mut r.cluster_children, &ctx.node_reader_role);
            Ok(r)
        }
        Err(e) => Err(Stall::new(Reason::InvalidSpec, e.to_string())),
    }
}

/// Stage 4, guard what the render would take over. Claims hold user data:
/// adopt only this stack's own (by name, so a re-created stack gets its
/// config back), never another's or the user's. Service aliases are short
/// names a user may already have taken: a Service we did not create for
/// this stack is never taken over (dropped from `desired`, reported).
async fn guard(
    ctx: &Context,
    parent: &Parent,
    desired: &mut Rendered,
) -> Result<Result<Vec<String>, Stall>, Error> {
    let ns = &parent.namespace;
    if let Some(stall) = check_claims(ctx, ns, parent, &desired.children).await? {
        return Ok(Err(stall));
    }
    Ok(Ok(drop_taken_aliases(
        ctx,
        ns,
        parent,
        &mut desired.children,
    )
    .await?))
}

/// Stage 5, apply: generated Secrets first (create once), the WebUI
/// logins' hashes before the pods that read them, then every child, then
/// prune. Each object on its own: a failure is recorded and the next one
/// is written. The keep sets hold every desired child, applied or not, so
/// the previous version of a child whose apply failed is never pruned.
async fn apply_children(
    ctx: &Context,
    parent: &Parent,
    spec: &MediaStackSpec,
    desired: &Rendered,
    resolved: &Resolved,
) -> Applied {
    let client = &ctx.client;
    let ns = &parent.namespace;
    let mut applied = Applied::default();
    for secret in &desired.generated_secrets {
        applied.record(
            format!("Secret/{}", secret.name),
            apply::ensure_secret(client, ns, secret, &parent.owner).await,
        );
    }
    for secret in &desired.login_secrets {
        applied.record(
            format!("Secret/{}", secret.name),
            apply::ensure_secret_of_type(
                client,
                ns,
                secret,
                &parent.owner,
                "kubernetes.io/basic-auth",
            )
            .await,
        );
    }
    for (app, app_spec) in spec.apps.enabled() {
        if app.binds_to_tunnel && app_spec.vpn.is_some() {
            let name = vpn::webui_secret_name(parent, app.name);
            applied.record(
                format!("Secret/{name}"),
                ensure_webui_hash(client, ns, &name).await,
            );
        }
    }
    let selector = selector(parent);
    let keep: BTreeSet<String> = desired.children.iter().map(|c| c.id()).collect();
    applied
        .apply_all(client, &ctx.cache, &desired.children)
        .await;
    applied.record_prune(
        apply::prune(
            client,
            &ctx.cache,
            ns,
            &selector,
            // The stack itself renders Traefik objects (the dashboard route).
            &owned_kinds(resolved.inputs.monitoring_crds, resolved.traefik_crd),
            &keep,
            &parent.owner.uid,
        )
        .await,
    );
    let cluster_keep: BTreeSet<String> = desired.cluster_children.iter().map(|c| c.id()).collect();
    applied
        .apply_all(client, &ctx.cache, &desired.cluster_children)
        .await;
    let mut cluster_selector = selector.to_vec();
    cluster_selector.push((crate::render::dozzle::NAMESPACE_LABEL, ns.as_str()));
    applied.record_prune(
        apply::prune_cluster(
            client,
            &ctx.cache,
            &cluster_selector,
            &cluster_kinds(),
            &cluster_keep,
        )
        .await,
    );
    if applied.changes() > 0 {
        info!(
            written = ?applied.written,
            deleted = ?applied.pruned,
            unchanged = applied.unchanged,
            failed = applied.failed.len(),
            "applied MediaStack children"
        );
        ctx.metrics.writes(applied.changes());
    }
    applied
}

/// Adds the PBKDF2 hash of the login Secret's `password` under
/// `passwordPBKDF2` (qBittorrent's stored form, new random salt), when it
/// is missing or was computed from another password (the SHA-256 in the
/// annotation differs: the user changed the password). Whether it wrote.
async fn ensure_webui_hash(client: &kube::Client, ns: &str, name: &str) -> Result<bool, Error> {
    use sha2::Digest as _;
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let Some(secret) = get_opt(&api, name).await? else {
        return Ok(false);
    };
    let Some(password) = secret
        .data
        .as_ref()
        .and_then(|d| d.get("password"))
        .filter(|p| !p.0.is_empty())
    else {
        return Ok(false);
    };
    let fingerprint: String = sha2::Sha256::digest(&password.0)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let hashed = secret
        .annotations()
        .get(vpn::HASHED_ANNOTATION)
        .is_some_and(|a| *a == fingerprint)
        && secret
            .data
            .as_ref()
            .is_some_and(|d| d.contains_key(vpn::PBKDF2_KEY));
    if hashed {
        return Ok(false);
    }
    let salt: [u8; vpn::SALT_LEN] = rand::random();
    let hash = vpn::password_pbkdf2(&password.0, &salt);
    let patch = serde_json::json!({
        "metadata": {
            "resourceVersion": secret.metadata.resource_version,
            "annotations": {vpn::HASHED_ANNOTATION: fingerprint},
        },
        "data": {vpn::PBKDF2_KEY: k8s_openapi::ByteString(hash.into_bytes())},
    });
    let pp = kube::api::PatchParams {
        field_manager: Some(super::FIELD_MANAGER.into()),
        ..Default::default()
    };
    api.patch(name, &pp, &kube::api::Patch::Merge(&patch))
        .await
        .map_err(|source| Error::Apply {
            what: format!("Secret/{name}"),
            source,
        })?;
    Ok(true)
}

/// Removes from `children` every alias Service (`apps.<app>.serviceAliases`)
/// whose name is taken by a Service that this operator did not create for
/// this stack; returns what was left alone, for the `ServiceAliasConflict`
/// condition.
async fn drop_taken_aliases(
    ctx: &Context,
    ns: &str,
    parent: &Parent,
    children: &mut Vec<crate::render::Child>,
) -> Result<Vec<String>, Error> {
    let mut conflicts = Vec::new();
    let mut taken = BTreeSet::new();
    for child in children.iter().filter(|c| is_alias(c)) {
        let name = child.object.metadata.name.clone().unwrap_or_default();
        if let Some(live) = stored_or_get::<Service>(ctx, ns, &name).await? {
            let labels = live.metadata.labels.clone().unwrap_or_default();
            let ours = labels
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str)
                == Some(MANAGER)
                && labels.get(STACK_LABEL) == Some(&parent.name);
            if !ours {
                conflicts.push(format!(
                    "Service {name} already exists and was not created by mediastack-operator for MediaStack {}; the alias is not applied",
                    parent.name
                ));
                taken.insert(name);
            }
        }
    }
    children.retain(|c| {
        !(is_alias(c) && taken.contains(c.object.metadata.name.as_deref().unwrap_or_default()))
    });
    Ok(conflicts)
}

fn is_alias(c: &crate::render::Child) -> bool {
    c.api.kind == "Service"
        && c.object
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app.kubernetes.io/component"))
            .map(String::as_str)
            == Some(crate::render::workload::ALIAS_COMPONENT)
}

/// A claim the stack would apply that already exists and is not its own
/// (see [`storage::claim_conflict`]): reported as `Stalled`/`ClaimConflict`.
async fn check_claims(
    ctx: &Context,
    ns: &str,
    parent: &Parent,
    children: &[crate::render::Child],
) -> Result<Option<Stall>, Error> {
    let mut conflicts = Vec::new();
    for child in children
        .iter()
        .filter(|c| c.api.kind == "PersistentVolumeClaim")
    {
        let Some(name) = child.object.metadata.name.as_deref() else {
            continue;
        };
        if let Some(live) = stored_or_get::<PersistentVolumeClaim>(ctx, ns, name).await?
            && let Some(why) = storage::claim_conflict(parent, &live)
        {
            conflicts.push(why);
        }
    }
    Ok((!conflicts.is_empty()).then(|| Stall {
        reason: Reason::ClaimConflict,
        message: conflicts.join("; "),
    }))
}

/// Checks the references that stall the whole stack when broken.
async fn check_references(stack: &MediaStack, ctx: &Context) -> Result<Option<Stall>, Error> {
    let ns = stack.namespace().unwrap_or_default();
    let spec = &stack.spec;
    if let Some(claim) = &spec.storage.data.claim_name {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
        if get_opt(&pvcs, claim).await?.is_none() {
            return Ok(Some(Stall {
                reason: Reason::ClaimNotFound,
                message: format!(
                    "storage.data.claimName: PersistentVolumeClaim {claim} does not exist in namespace {ns}"
                ),
            }));
        }
    }
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    for (app, a) in spec.apps.enabled() {
        let claims = [
            (
                "config.existingClaim",
                a.config.as_ref().and_then(|c| c.existing_claim.as_ref()),
            ),
            (
                "cache.claimName",
                a.cache.as_ref().and_then(|c| c.claim_name.as_ref()),
            ),
        ];
        for (field, claim) in claims {
            if let Some(claim) = claim
                && get_opt(&pvcs, claim).await?.is_none()
            {
                return Ok(Some(Stall {
                    reason: Reason::ClaimNotFound,
                    message: format!(
                        "apps.{}.{field}: PersistentVolumeClaim {claim} does not exist in namespace {ns}",
                        app.name
                    ),
                }));
            }
        }
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    for (app, a) in spec.apps.enabled() {
        if let Some(key) = &a.api_key_secret_ref
            && !has_key(get_opt(&secrets, &key.name).await?.as_ref(), &key.key)
        {
            return Ok(Some(Stall {
                reason: Reason::SecretNotFound,
                message: format!(
                    "apps.{}.apiKeySecretRef: Secret {} with key {} not found",
                    app.name, key.name, key.key
                ),
            }));
        }
    }
    if let Some(auth) = &spec.ingress.traefik.dashboard_auth_secret_ref
        && !has_key(get_opt(&secrets, &auth.name).await?.as_ref(), "users")
    {
        return Ok(Some(Stall {
            reason: Reason::SecretNotFound,
            message: format!(
                "ingress.traefik.dashboardAuthSecretRef: Secret {} with key users not found",
                auth.name
            ),
        }));
    }
    Ok(None)
}

/// Resolves the VPN gateways' Secrets, the tunnel token, cluster ranges and
/// CRD presence for the render.
async fn gather_inputs(
    stack: &MediaStack,
    ctx: &Context,
    parent: &Parent,
    observed: &Observed,
    gateways: &BTreeMap<String, Option<VpnGateway>>,
) -> Result<Inputs, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &parent.namespace);
    let cluster_subnets = cluster_subnets(ctx);
    let mut vpn_map = BTreeMap::new();
    for (name, gw) in gateways {
        let secret = match gw {
            Some(g) => get_opt(&secrets, &g.spec.credentials_secret_ref.name).await?,
            None => None,
        };
        vpn_map.insert(
            name.clone(),
            vpn::resolve_for_cluster(gw.as_ref(), secret.as_ref(), &cluster_subnets),
        );
    }
    let tunnel_token_ready = match &stack.spec.ingress.tunnel {
        Some(t) => has_key(
            get_opt(&secrets, &t.token_secret_ref.name).await?.as_ref(),
            "token",
        ),
        None => false,
    };
    let ready_apps = stack
        .spec
        .apps
        .enabled()
        .filter(|(app, _)| {
            observed
                .deployments
                .get(&parent.child_name(app.name))
                .is_some_and(status::deployment_ready)
        })
        .map(|(app, _)| app.name.to_string())
        .collect();
    Ok(Inputs {
        vpn: vpn_map,
        cluster_subnets,
        monitoring_crds: crd_exists(ctx, SERVICE_MONITOR_CRD),
        tunnel_token_ready,
        ready_apps,
        operator: ctx.operator.clone(),
    })
}

/// Kinds the stack owns, for pruning (third-party kinds only when their CRDs exist).
pub fn owned_kinds(monitoring: bool, traefik: bool) -> Vec<ApiResource> {
    let mut kinds = vec![
        ApiResource::erase::<Deployment>(&()),
        ApiResource::erase::<Service>(&()),
        ApiResource::erase::<PersistentVolumeClaim>(&()),
        ApiResource::erase::<ConfigMap>(&()),
        ApiResource::erase::<DaemonSet>(&()),
        ApiResource::erase::<NetworkPolicy>(&()),
        ApiResource::erase::<ServiceAccount>(&()),
        ApiResource::erase::<Role>(&()),
        ApiResource::erase::<RoleBinding>(&()),
        ApiResource::erase::<IngressRoute>(&()),
    ];
    if monitoring {
        kinds.push(ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
            "servicemonitors",
        ));
        kinds.push(ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "PrometheusRule"),
            "prometheusrules",
        ));
    }
    if traefik {
        kinds.extend(super::resolve::traefik_kinds());
    }
    kinds
}

/// Deletes cluster-scoped children (which no namespaced stack can own, so
/// garbage collection never removes them) whose MediaStack no longer exists.
/// Children and stacks come from the stores; only stacks in `watched`
/// namespaces (all when `None`) are considered.
pub async fn sweep_cluster_children(
    client: &kube::Client,
    cache: &super::cache::Cache,
    watched: Option<&str>,
) -> Result<Vec<String>, Error> {
    let mut deleted = Vec::new();
    for ar in cluster_kinds() {
        let api: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &ar);
        let objs = apply::child_metas(
            cache,
            &api,
            &ar,
            None,
            &[("app.kubernetes.io/managed-by", MANAGER)],
        )
        .await?;
        for meta in objs {
            let labels = meta.labels.clone().unwrap_or_default();
            let (Some(ns), Some(stack), Some(name)) = (
                labels.get(crate::render::dozzle::NAMESPACE_LABEL),
                labels.get(STACK_LABEL),
                meta.name.as_deref(),
            ) else {
                continue;
            };
            let exists = cache
                .stacks
                .get(&kube::runtime::reflector::ObjectRef::new(stack).within(ns))
                .is_some();
            if watched.is_some_and(|w| w != ns) || exists || meta.deletion_timestamp.is_some() {
                continue;
            }
            match api
                .delete(name, &kube::api::DeleteParams::background())
                .await
            {
                Ok(_) => deleted.push(format!("{}/{name}", ar.kind)),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => {
                    return Err(Error::Delete {
                        what: format!("{}/{name}", ar.kind),
                        source,
                    });
                }
            }
        }
    }
    Ok(deleted)
}

/// Cluster-scoped kinds a stack may create: bindings of the fixed node
/// reader role (Dozzle reads nodes). The operator never writes ClusterRoles.
pub fn cluster_kinds() -> Vec<ApiResource> {
    vec![ApiResource::erase::<ClusterRoleBinding>(&())]
}
