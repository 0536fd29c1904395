//! Reads that more than one controller makes while resolving what a spec
//! references: CRD presence, the cluster's ranges, whether a Traefik
//! already runs, gateways. They answer from the watch caches
//! ([`super::cache`]); shared here so the controllers do not depend on each
//! other.

use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::api::{Api, ApiResource};
use kube::core::GroupVersionKind;

use super::{Context, Error};

/// Name of the prometheus-operator CRD whose presence turns monitoring on.
pub const SERVICE_MONITOR_CRD: &str = "servicemonitors.monitoring.coreos.com";

/// CRD that must exist before Traefik objects can be applied.
pub const TRAEFIK_CRD: &str = "ingressroutes.traefik.io";

/// IngressClass controller name of Traefik (k3s's bundled Traefik has one).
pub const TRAEFIK_INGRESS_CONTROLLER: &str = super::cache::TRAEFIK_INGRESS_CONTROLLER;

/// The Traefik kinds the operator creates.
pub fn traefik_kinds() -> Vec<ApiResource> {
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

/// Whether the stack runs its own Traefik: `ingress.traefik.managed`, or
/// with auto (unset) true unless [`existing_traefik`] finds one.
pub fn resolve_traefik(ctx: &Context, spec: &crate::api::mediastack::MediaStackSpec) -> bool {
    spec.ingress
        .traefik
        .managed
        .unwrap_or_else(|| !existing_traefik(ctx))
}

/// A Traefik already serves the cluster: the `traefik.io` CRDs are installed
/// and an IngressClass names Traefik's controller. Both from watches, so a
/// Traefik installed later re-renders the stacks at once. IngressClasses
/// rather than Deployments, because a namespaced operator cannot list
/// Deployments in kube-system.
pub fn existing_traefik(ctx: &Context) -> bool {
    crd_exists(ctx, TRAEFIK_CRD) && ctx.cache.traefik_ingress_class()
}

/// The pod and service ranges: from the command line, or the Nodes'
/// `podCIDRs` and the `ServiceCIDR` objects (their stores).
pub fn cluster_subnets(ctx: &Context) -> Vec<String> {
    if ctx.cluster_subnets.is_empty() {
        ctx.cache.cluster_subnets()
    } else {
        ctx.cluster_subnets.clone()
    }
}

/// Whether a CRD is installed (the CRD store).
pub fn crd_exists(ctx: &Context, name: &str) -> bool {
    ctx.cache.crd_exists(name)
}

/// The VpnGateway `name` of `ns`, from its store.
pub fn gateway(ctx: &Context, ns: &str, name: &str) -> Option<crate::api::VpnGateway> {
    ctx.cache
        .gateways
        .get(&kube::runtime::reflector::ObjectRef::new(name).within(ns))
        .map(|g| g.as_ref().clone())
}

/// Object `name` of `ns`: from its kind's store when the store holds it
/// (the operator's own children), else one GET (an object outside the
/// label selection, such as the user's claim or Service, or one not
/// watched yet).
pub async fn stored_or_get<K>(ctx: &Context, ns: &str, name: &str) -> Result<Option<K>, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    if let Some(Some(obj)) = ctx.cache.typed_child::<K>(ns, name) {
        return Ok(Some(obj));
    }
    get_opt(&Api::namespaced(ctx.client.clone(), ns), name).await
}

/// The object, or `None` when it does not exist.
pub async fn get_opt<K>(api: &Api<K>, name: &str) -> Result<Option<K>, Error>
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

/// Whether the Secret exists and has a non-empty `key`.
pub fn has_key(secret: Option<&Secret>, key: &str) -> bool {
    secret
        .and_then(|s| s.data.as_ref())
        .and_then(|d| d.get(key))
        .is_some_and(|v| !v.0.is_empty())
}
