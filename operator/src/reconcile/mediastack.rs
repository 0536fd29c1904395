//! The MediaStack controller: resolve references -> render -> apply and
//! prune -> status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ApiResource, ListParams};
use kube::core::GroupVersionKind;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::status::{self, Cond};
use super::{Context, Error, apply};
use crate::api::mediastack::AppStatus;
use crate::api::{IngressRoute, MediaStack, MediaStackStatus, VpnGateway};
use crate::render::meta::{MANAGER, Parent, STACK_LABEL};
use crate::render::{Inputs, route, stack, storage, vpn};

/// Name of the prometheus-operator CRD whose presence turns monitoring on.
pub const SERVICE_MONITOR_CRD: &str = "servicemonitors.monitoring.coreos.com";

/// A spec problem found while resolving references: reported as `Stalled`.
struct Stall {
    reason: &'static str,
    message: String,
}

/// Reconciles one MediaStack.
pub async fn reconcile(stack: Arc<MediaStack>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_timer("MediaStack");
    let parent =
        Parent::of(stack.as_ref()).ok_or(Error::MissingMetadata("name, namespace or uid"))?;
    let ns = parent.namespace.clone();
    let client = &ctx.client;

    ctx.cache.wait_ready().await;
    let selector = [
        (STACK_LABEL, parent.name.as_str()),
        ("app.kubernetes.io/managed-by", MANAGER),
    ];
    // Readiness as the Deployment store last saw it (a LIST only when no
    // store watches Deployments).
    let live = match ctx.cache.typed_children::<Deployment>(&ns, &selector) {
        Some(d) => d,
        None => {
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            deployments
                .list(&ListParams::default().labels(&apply::selector_string(&selector)))
                .await
                .map_err(|source| Error::Read {
                    what: "Deployment list".into(),
                    source,
                })?
                .items
        }
    };
    let ready_deploy: BTreeMap<String, &Deployment> =
        live.iter().map(|d| (d.name_any(), d)).collect();

    // 1. Resolve references. A missing one stalls the stack before anything is written.
    if let Some(stall) = check_references(&stack, &ctx).await? {
        return stalled(&stack, &ctx, &parent, &ready_deploy, stall, false).await;
    }
    // `ingress.traefik.managed` unset (auto): ours unless one already runs.
    let resolved = {
        let mut s = stack.spec.clone();
        s.ingress.traefik.managed = Some(resolve_traefik(&ctx, &stack.spec).await?);
        s
    };
    // 2. The admin policy: a refused request renders nothing new, so what
    // runs keeps running unchanged.
    let mut refusals = ctx.policy.check(&resolved);
    // The gluetun image of a gateway runs in this stack's pods.
    let mut seen = BTreeSet::new();
    for (_, app_spec) in stack.spec.apps.enabled() {
        let Some(att) = &app_spec.vpn else { continue };
        if !seen.insert(att.gateway_ref.clone()) {
            continue;
        }
        if let Some(gw) = gateway(&ctx, &ns, &att.gateway_ref)
            && let Some(r) = ctx.policy.check_image(
                &format!("VpnGateway {} spec.image", att.gateway_ref),
                &gw.spec.image,
            )
        {
            refusals.push(r);
        }
    }
    if !refusals.is_empty() {
        let stall = Stall {
            reason: "NotAllowed",
            message: refusals
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        };
        return stalled(&stack, &ctx, &parent, &ready_deploy, stall, false).await;
    }
    let effective = {
        let mut s = stack.as_ref().clone();
        s.spec = ctx.policy.effective(&resolved);
        s
    };
    let inputs = gather_inputs(&stack, &ctx, &parent, &ready_deploy).await?;

    // 3. Render (pure).
    let rendered = match stack::render(&effective, &parent, &inputs) {
        Ok(mut r) => {
            stack::bind_fixed_cluster_role(&mut r.cluster_children, &ctx.node_reader_role);
            r
        }
        Err(e) => {
            let stall = Stall {
                reason: "InvalidSpec",
                message: e.to_string(),
            };
            return stalled(
                &stack,
                &ctx,
                &parent,
                &ready_deploy,
                stall,
                inputs.monitoring_crds,
            )
            .await;
        }
    };

    // 4. Claims hold user data: adopt only this stack's own (by name, so a
    // re-created stack gets its config back), never another's or the user's.
    if let Some(stall) = check_claims(&ctx, &ns, &parent, &rendered.children).await? {
        return stalled(
            &stack,
            &ctx,
            &parent,
            &ready_deploy,
            stall,
            inputs.monitoring_crds,
        )
        .await;
    }

    // Service aliases are short names a user may already have taken: a
    // Service we did not create for this stack is never taken over.
    let mut rendered = rendered;
    let alias_conflicts = drop_taken_aliases(&ctx, &ns, &parent, &mut rendered.children).await?;

    // 5. Apply: generated Secrets first (create once), then children; then prune.
    let mut writes = 0;
    for secret in &rendered.generated_secrets {
        writes += usize::from(apply::ensure_secret(client, &ns, secret, &parent.owner).await?);
    }
    for secret in &rendered.login_secrets {
        writes += usize::from(
            apply::ensure_secret_of_type(
                client,
                &ns,
                secret,
                &parent.owner,
                "kubernetes.io/basic-auth",
            )
            .await?,
        );
    }
    // The WebUI logins' hashes, before the pods that read them.
    for (app, app_spec) in effective.spec.apps.enabled() {
        if app.binds_to_tunnel && app_spec.vpn.is_some() {
            writes += usize::from(
                ensure_webui_hash(client, &ns, &vpn::webui_secret_name(&parent, app.name)).await?,
            );
        }
    }
    let mut keep = BTreeSet::new();
    for child in &rendered.children {
        keep.insert(child.id());
        writes += usize::from(apply::apply(client, &ctx.cache, child).await?);
    }
    let mut deleted = apply::prune(
        client,
        &ctx.cache,
        &ns,
        &selector,
        // The stack itself renders Traefik objects (the dashboard route).
        &owned_kinds(
            inputs.monitoring_crds,
            crd_exists(&ctx, super::ingressroute::TRAEFIK_CRD).await?,
        ),
        &keep,
        &parent.owner.uid,
    )
    .await?;
    let mut cluster_keep = BTreeSet::new();
    for child in &rendered.cluster_children {
        cluster_keep.insert(child.id());
        writes += usize::from(apply::apply(client, &ctx.cache, child).await?);
    }
    let mut cluster_selector = selector.to_vec();
    cluster_selector.push((crate::render::dozzle::NAMESPACE_LABEL, ns.as_str()));
    deleted.extend(
        apply::prune_cluster(
            client,
            &ctx.cache,
            &cluster_selector,
            &cluster_kinds(),
            &cluster_keep,
        )
        .await?,
    );
    writes += deleted.len();
    if writes > 0 {
        info!(writes, deleted = ?deleted, "applied MediaStack children");
        ctx.metrics.writes(writes);
        publish(
            &ctx,
            stack.as_ref(),
            EventType::Normal,
            "Applied",
            format!("Applied {writes} changes; pruned {}", deleted.len()),
        )
        .await;
    }

    let waiting: Vec<(String, String)> = rendered.waiting.into_iter().collect();
    finish(
        &stack,
        &ctx,
        &parent,
        &ready_deploy,
        waiting,
        None,
        inputs.monitoring_crds,
        writes,
        Some(Edge {
            spec: &effective.spec,
            inputs: &inputs,
        }),
        &alias_conflicts,
    )
    .await
}

/// The rendered edge, for `EdgeReady`, the URLs and the credentials.
struct Edge<'a> {
    /// The spec as rendered (auto Traefik resolved, policy applied).
    spec: &'a crate::api::mediastack::MediaStackSpec,
    inputs: &'a Inputs,
}

/// IngressClass controller name of Traefik (k3s's bundled Traefik has one).
pub const TRAEFIK_INGRESS_CONTROLLER: &str = super::cache::TRAEFIK_INGRESS_CONTROLLER;

/// Whether the stack runs its own Traefik: `ingress.traefik.managed`, or
/// with auto (unset) true unless [`existing_traefik`] finds one.
pub async fn resolve_traefik(
    ctx: &Context,
    spec: &crate::api::mediastack::MediaStackSpec,
) -> Result<bool, Error> {
    match spec.ingress.traefik.managed {
        Some(m) => Ok(m),
        None => Ok(!existing_traefik(ctx).await?),
    }
}

/// A Traefik already serves the cluster: the `traefik.io` CRDs are installed
/// and an IngressClass names Traefik's controller. Both from watches: a
/// Traefik installed later re-renders the stacks at once. IngressClasses
/// rather than Deployments, because a namespaced operator cannot list
/// Deployments in kube-system.
pub async fn existing_traefik(ctx: &Context) -> Result<bool, Error> {
    Ok(ctx.cache.crd_exists(super::ingressroute::TRAEFIK_CRD) && ctx.cache.traefik_ingress_class())
}

/// The VpnGateway `name` of `ns`, from its store.
fn gateway(ctx: &Context, ns: &str, name: &str) -> Option<VpnGateway> {
    ctx.cache
        .gateways
        .get(&kube::runtime::reflector::ObjectRef::new(name).within(ns))
        .map(|g| g.as_ref().clone())
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
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let mut conflicts = Vec::new();
    let mut taken = BTreeSet::new();
    for child in children.iter().filter(|c| is_alias(c)) {
        let name = child.object.metadata.name.clone().unwrap_or_default();
        if let Some(live) = get_opt(&services, &name).await? {
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
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let mut conflicts = Vec::new();
    for child in children
        .iter()
        .filter(|c| c.api.kind == "PersistentVolumeClaim")
    {
        let Some(name) = child.object.metadata.name.as_deref() else {
            continue;
        };
        if let Some(live) = get_opt(&pvcs, name).await?
            && let Some(why) = storage::claim_conflict(parent, &live)
        {
            conflicts.push(why);
        }
    }
    Ok((!conflicts.is_empty()).then(|| Stall {
        reason: "ClaimConflict",
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
                reason: "ClaimNotFound",
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
                    reason: "ClaimNotFound",
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
                reason: "SecretNotFound",
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
            reason: "SecretNotFound",
            message: format!(
                "ingress.traefik.dashboardAuthSecretRef: Secret {} with key users not found",
                auth.name
            ),
        }));
    }
    Ok(None)
}

/// Resolves VPN gateways, the tunnel token, cluster ranges and CRD presence.
async fn gather_inputs(
    stack: &MediaStack,
    ctx: &Context,
    parent: &Parent,
    live: &BTreeMap<String, &Deployment>,
) -> Result<Inputs, Error> {
    let ns = &parent.namespace;
    let client = &ctx.client;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let cluster_subnets = cluster_subnets(ctx).await?;
    let mut vpn_map = BTreeMap::new();
    for (_, app_spec) in stack.spec.apps.enabled() {
        if let Some(att) = &app_spec.vpn {
            if vpn_map.contains_key(&att.gateway_ref) {
                continue;
            }
            let gw = gateway(ctx, ns, &att.gateway_ref);
            let secret = match &gw {
                Some(g) => get_opt(&secrets, &g.spec.credentials_secret_ref.name).await?,
                None => None,
            };
            vpn_map.insert(
                att.gateway_ref.clone(),
                vpn::resolve_for_cluster(gw.as_ref(), secret.as_ref(), &cluster_subnets),
            );
        }
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
            live.get(&parent.child_name(app.name))
                .is_some_and(|d| deployment_ready(d))
        })
        .map(|(app, _)| app.name.to_string())
        .collect();
    Ok(Inputs {
        vpn: vpn_map,
        cluster_subnets,
        monitoring_crds: crd_exists(ctx, SERVICE_MONITOR_CRD).await?,
        tunnel_token_ready,
        ready_apps,
        operator: ctx.operator.clone(),
    })
}

/// The pod and service ranges: from the command line, or discovered from the
/// Nodes' `podCIDRs` and the `ServiceCIDR` objects (their stores).
pub async fn cluster_subnets(ctx: &Context) -> Result<Vec<String>, Error> {
    if !ctx.cluster_subnets.is_empty() {
        return Ok(ctx.cluster_subnets.clone());
    }
    Ok(ctx.cache.cluster_subnets())
}

/// Whether a CRD is installed (the CRD store).
pub async fn crd_exists(ctx: &Context, name: &str) -> Result<bool, Error> {
    Ok(ctx.cache.crd_exists(name))
}

async fn get_opt<K>(api: &Api<K>, name: &str) -> Result<Option<K>, Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.map_err(|source| Error::Read {
        what: format!(
            "{}/{name}",
            std::any::type_name::<K>()
                .rsplit("::")
                .next()
                .unwrap_or("object")
        ),
        source,
    })
}

fn has_key(secret: Option<&Secret>, key: &str) -> bool {
    secret
        .and_then(|s| s.data.as_ref())
        .and_then(|d| d.get(key))
        .is_some_and(|v| !v.0.is_empty())
}

fn deployment_ready(d: &Deployment) -> bool {
    let want = d.spec.replicas.unwrap_or(1);
    let st = d.status.clone().unwrap_or_default();
    want > 0
        && st.ready_replicas.unwrap_or(0) >= want
        && st.updated_replicas.unwrap_or(0) >= want
        && st.observed_generation >= d.metadata.generation
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
        kinds.extend(super::ingressroute::traefik_kinds());
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

/// Status of a stack stalled before anything was applied: nothing written,
/// no edge rendered, no alias served.
async fn stalled(
    stack: &MediaStack,
    ctx: &Context,
    parent: &Parent,
    live: &BTreeMap<String, &Deployment>,
    stall: Stall,
    monitoring_crds: bool,
) -> Result<Action, Error> {
    finish(
        stack,
        ctx,
        parent,
        live,
        Vec::new(),
        Some(stall),
        monitoring_crds,
        0,
        None,
        &[],
    )
    .await
}

/// Computes and writes the status (only when it changed) and picks the requeue.
#[allow(clippy::too_many_arguments)]
async fn finish(
    stack: &MediaStack,
    ctx: &Context,
    parent: &Parent,
    live: &BTreeMap<String, &Deployment>,
    waiting: Vec<(String, String)>,
    stall: Option<Stall>,
    monitoring_crds: bool,
    writes: usize,
    edge: Option<Edge<'_>>,
    alias_conflicts: &[String],
) -> Result<Action, Error> {
    let spec = edge.as_ref().map_or(&stack.spec, |e| e.spec);
    let waiting: BTreeMap<_, _> = waiting.into_iter().collect();
    let rctx = route::RouteContext::for_stack(
        spec,
        edge.as_ref()
            .is_some_and(|e| crate::render::tunnel::enabled(e.spec, e.inputs)),
    );
    let apps: Vec<AppStatus> = spec
        .apps
        .enabled()
        .map(|(app, app_spec)| {
            let d = live.get(&parent.child_name(app.name));
            AppStatus {
                name: app.name.to_string(),
                ready: d.is_some_and(|d| deployment_ready(d)),
                ready_replicas: d
                    .and_then(|d| d.status.as_ref())
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0),
                image: Some(
                    app_spec
                        .image
                        .clone()
                        .unwrap_or_else(|| app.image.to_string()),
                ),
                urls: route::app_route(parent, spec, app.name, app_spec)
                    .map(|r| route::urls(&r, &rctx))
                    .unwrap_or_default(),
                waiting_for: waiting.get(app.name).cloned(),
            }
        })
        .collect();
    let ready_count = apps.iter().filter(|a| a.ready).count();
    let edge_cond = edge_condition(ctx, parent, live, edge.as_ref()).await?;
    let all_ready = ready_count == apps.len() && writes == 0 && edge_cond.status;
    let progress_msg = if !waiting.is_empty() {
        waiting
            .iter()
            .map(|(a, w)| format!("{a} waits for {w}"))
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        let mut not_ready: Vec<_> = apps
            .iter()
            .filter(|a| !a.ready)
            .map(|a| a.name.as_str())
            .collect();
        if !edge_cond.status {
            not_ready.push("the edge");
        }
        format!(
            "Waiting for {} to become ready",
            if not_ready.is_empty() {
                "changes to settle".to_string()
            } else {
                not_ready.join(", ")
            }
        )
    };
    let progress_reason = if waiting.values().any(|w| w.starts_with("VpnGateway")) {
        "VpnUnavailable"
    } else {
        "Progressing"
    };
    let mut conds = status::kstatus(
        all_ready && stall.is_none(),
        stall.as_ref().map(|s| (s.reason, s.message.as_str())),
        Some((progress_reason, progress_msg.as_str())),
    );
    conds.push(if !spec.monitoring.enabled {
        Cond::new("MonitoringReady", true, "Disabled", "spec.monitoring.enabled is false")
    } else if monitoring_crds {
        Cond::new("MonitoringReady", true, "Applied", "ServiceMonitors, alert rules and dashboards are applied")
    } else {
        Cond::new("MonitoringReady", false, "CRDNotInstalled", "The monitoring.coreos.com CRDs are not installed; monitoring objects are skipped until they are")
    });
    conds.push(edge_cond);
    let insecure = insecure_condition(parent, spec);
    conds.push(insecure.clone());
    let alias_cond = spec
        .apps
        .enabled()
        .any(|(_, a)| !a.service_aliases.is_empty())
        .then(|| {
            if alias_conflicts.is_empty() {
                Cond::new(
                    "ServiceAliasConflict",
                    false,
                    "NoConflict",
                    "Every service alias is served",
                )
            } else {
                Cond::new(
                    "ServiceAliasConflict",
                    true,
                    "ServiceExists",
                    alias_conflicts.join("; "),
                )
            }
        });
    conds.extend(alias_cond.clone());
    let old = stack.status.clone().unwrap_or_default();
    let dashboard_url = apps
        .iter()
        .find(|a| a.name == crate::render::dashboard::APP)
        .and_then(|a| a.urls.first().cloned());
    let credentials = credentials(parent, spec);
    let new = MediaStackStatus {
        observed_generation: stack.metadata.generation,
        conditions: status::merge(&old.conditions, &conds, stack.metadata.generation),
        apps_ready: Some(format!("{ready_count}/{}", apps.len())),
        apps,
        traefik: edge.as_ref().map(|e| {
            if e.spec.ingress.traefik.is_managed() {
                "managed".to_string()
            } else {
                "existing".to_string()
            }
        }),
        dashboard_url,
        credentials,
        // `links` and the `Wired` condition belong to the wiring task (its
        // own field manager): never sent here, so never taken over.
        links: Vec::new(),
    };
    let old_own: Vec<_> = old
        .conditions
        .iter()
        .filter(|c| c.type_ != crate::wiring::WIRED_CONDITION)
        .cloned()
        .collect();
    if !(old.observed_generation == new.observed_generation
        && status::same(&old_own, &new.conditions)
        && old.apps == new.apps
        && old.apps_ready == new.apps_ready
        && old.traefik == new.traefik
        && old.dashboard_url == new.dashboard_url
        && old.credentials == new.credentials)
    {
        if let Some(s) = &stall {
            let was = status::was_true(&old.conditions, "Stalled", s.reason);
            if !was {
                publish(ctx, stack, EventType::Warning, s.reason, s.message.clone()).await;
            }
        }
        let was_insecure = old
            .conditions
            .iter()
            .any(|c| c.type_ == "Insecure" && c.status == "True" && c.message == insecure.message);
        if insecure.status && !was_insecure {
            publish_as(
                ctx,
                stack,
                EventType::Warning,
                &insecure.reason,
                "Expose",
                insecure.message.clone(),
            )
            .await;
        }
        if let Some(alias) = alias_cond.as_ref().filter(|c| c.status) {
            let was = old.conditions.iter().any(|c| {
                c.type_ == "ServiceAliasConflict"
                    && c.status == "True"
                    && c.message == alias.message
            });
            if !was {
                publish(
                    ctx,
                    stack,
                    EventType::Warning,
                    "ServiceAliasConflict",
                    alias.message.clone(),
                )
                .await;
            }
        }
        for (app, w) in &waiting {
            if old
                .apps
                .iter()
                .find(|a| &a.name == app)
                .and_then(|a| a.waiting_for.as_ref())
                != Some(w)
            {
                // One series per app: its waits are not folded into another app's.
                publish_as(
                    ctx,
                    stack,
                    EventType::Warning,
                    "Waiting",
                    &format!("Start-{app}"),
                    format!("{app} is not started: it waits for {w}"),
                )
                .await;
            }
        }
        status::write(ctx, stack, &new).await?;
    }
    Ok(
        if stall.is_some() || !waiting.is_empty() || !new_ready(&conds) {
            Action::requeue(Duration::from_secs(
                if stall.is_some() || !waiting.is_empty() {
                    30
                } else {
                    60
                },
            ))
        } else if spec.monitoring.enabled && !monitoring_crds {
            // CRDs are not watched: look again soon so monitoring starts
            // shortly after they are installed, without a restart.
            Action::requeue(ctx.resync.min(Duration::from_secs(30)))
        } else {
            Action::requeue(ctx.resync)
        },
    )
}

/// The generated login Secrets the user reads: qBittorrent's WebUI login,
/// Dozzle's.
fn credentials(
    parent: &Parent,
    spec: &crate::api::mediastack::MediaStackSpec,
) -> Vec<crate::api::mediastack::CredentialStatus> {
    let mut out: Vec<_> = spec
        .apps
        .enabled()
        .filter(|(app, s)| app.binds_to_tunnel && s.vpn.is_some())
        .map(|(app, _)| crate::api::mediastack::CredentialStatus {
            app: app.name.to_string(),
            secret_name: vpn::webui_secret_name(parent, app.name),
        })
        .collect();
    out.extend(crate::render::dozzle::login_secret(parent, spec).map(|s| {
        crate::api::mediastack::CredentialStatus {
            app: crate::render::dozzle::APP.to_string(),
            secret_name: s.name,
        }
    }));
    out
}

/// `EdgeReady`: the stack's Traefik (when managed), cloudflared (when it
/// runs) and fail2ban (when enabled) have all their pods ready. False
/// (`NotRendered`) while the stack is stalled before rendering.
async fn edge_condition(
    ctx: &Context,
    parent: &Parent,
    live: &BTreeMap<String, &Deployment>,
    edge: Option<&Edge<'_>>,
) -> Result<Cond, Error> {
    let Some(edge) = edge else {
        return Ok(Cond::new(
            "EdgeReady",
            false,
            "NotRendered",
            "the edge is not rendered while the stack is stalled",
        ));
    };
    let spec = edge.spec;
    let managed = spec.ingress.traefik.is_managed();
    let mut parts: Vec<(&str, bool)> = Vec::new();
    if managed {
        let d = live.get(&crate::render::traefik::name(parent));
        parts.push(("Traefik", d.is_some_and(|d| deployment_ready(d))));
    }
    if crate::render::tunnel::enabled(spec, edge.inputs) {
        let d = live.get(&crate::render::tunnel::name(parent));
        parts.push(("cloudflared", d.is_some_and(|d| deployment_ready(d))));
    }
    if crate::render::fail2ban::enabled(spec) && managed {
        let name = crate::render::fail2ban::name(parent);
        let ds = match ctx.cache.typed_child::<DaemonSet>(&parent.namespace, &name) {
            Some(ds) => ds,
            None => {
                let daemonsets: Api<DaemonSet> =
                    Api::namespaced(ctx.client.clone(), &parent.namespace);
                get_opt(&daemonsets, &name).await?
            }
        };
        parts.push(("fail2ban", ds.as_ref().is_some_and(daemonset_ready)));
    }
    let waiting: Vec<&str> = parts.iter().filter(|p| !p.1).map(|p| p.0).collect();
    let names: Vec<&str> = parts.iter().map(|p| p.0).collect();
    let traefik = if managed {
        "the stack's Traefik"
    } else {
        "an existing Traefik (not managed)"
    };
    Ok(if let Some(first) = waiting.first() {
        Cond::new(
            "EdgeReady",
            false,
            format!("{}NotReady", capitalize(first)),
            format!(
                "not ready yet: {}; routes served by {traefik}",
                waiting.join(", ")
            ),
        )
    } else {
        Cond::new(
            "EdgeReady",
            true,
            if managed { "Ready" } else { "ExistingTraefik" },
            if names.is_empty() {
                format!("routes served by {traefik}")
            } else {
                format!("{} ready; routes served by {traefik}", names.join(", "))
            },
        )
    })
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn daemonset_ready(ds: &DaemonSet) -> bool {
    let st = ds.status.clone().unwrap_or_default();
    st.desired_number_scheduled > 0
        && st.number_ready >= st.desired_number_scheduled
        && st.updated_number_scheduled.unwrap_or(0) >= st.desired_number_scheduled
        && st.observed_generation >= ds.metadata.generation
}

/// `Insecure`: True, naming the apps, when an app is served without a login
/// where one is expected (a public app without `expose.auth`, Dozzle with
/// `expose.allowAnonymous`).
fn insecure_condition(parent: &Parent, spec: &crate::api::mediastack::MediaStackSpec) -> Cond {
    let apps = route::insecure_apps(parent, spec);
    if apps.is_empty() {
        return Cond::new(
            "Insecure",
            false,
            "Secure",
            "Every public app and Dozzle are behind a login",
        );
    }
    let public: Vec<&str> = apps
        .iter()
        .map(String::as_str)
        .filter(|a| {
            spec.apps
                .get(a)
                .and_then(|s| s.expose.as_ref())
                .is_some_and(|e| e.public)
        })
        .collect();
    let reason = if public.is_empty() {
        "DozzleWithoutAuth"
    } else {
        "PublicWithoutAuth"
    };
    Cond::new(
        "Insecure",
        true,
        reason,
        format!(
            "served without a login: {}; set apps.<app>.expose.auth (basicAuthSecretRef or forwardAuth){}",
            apps.join(", "),
            if apps.iter().any(|a| a == crate::render::dozzle::APP) {
                ", or drop apps.dozzle.expose.allowAnonymous"
            } else {
                ""
            }
        ),
    )
}

fn new_ready(conds: &[Cond]) -> bool {
    conds.iter().any(|c| c.type_ == "Ready" && c.status)
}

/// Publishes an event about `obj`; failures are logged, never fatal.
pub async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    publish_as(ctx, obj, type_, reason, "Reconcile", note).await
}

/// Like [`publish`] with an explicit action. The recorder folds events with
/// the same type, reason and action into one series that keeps the first
/// note, so distinct situations need distinct actions.
pub async fn publish_as<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
        warn!("cannot publish event: {e}");
    }
}
