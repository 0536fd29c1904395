//! Reads that more than one controller makes while resolving what a spec
//! references: CRD presence, the cluster's ranges, whether a Traefik
//! already runs. Shared here so the controllers do not depend on each
//! other.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Node, Secret};
use k8s_openapi::api::networking::v1::{IngressClass, ServiceCIDR};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Resource;
use kube::api::{Api, ApiResource, ListParams};
use kube::core::GroupVersionKind;
use tracing::warn;

use super::{Context, Error};

/// Name of the prometheus-operator CRD whose presence turns monitoring on.
pub const SERVICE_MONITOR_CRD: &str = "servicemonitors.monitoring.coreos.com";

/// CRD that must exist before Traefik objects can be applied.
pub const TRAEFIK_CRD: &str = "ingressroutes.traefik.io";

/// IngressClass controller name of Traefik (k3s's bundled Traefik has one).
pub const TRAEFIK_INGRESS_CONTROLLER: &str = "traefik.io/ingress-controller";

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
/// and an IngressClass names Traefik's controller. A cheap list of the
/// (few, cluster-scoped) IngressClasses per reconcile, not a watch: a
/// Traefik installed later is picked up at the next resync. IngressClasses
/// rather than Deployments, because a namespaced operator cannot list
/// Deployments in kube-system.
pub async fn existing_traefik(ctx: &Context) -> Result<bool, Error> {
    if !crd_exists(ctx, TRAEFIK_CRD).await? {
        return Ok(false);
    }
    let classes: Api<IngressClass> = Api::all(ctx.client.clone());
    match classes.list(&ListParams::default()).await {
        Ok(list) => Ok(list.items.iter().any(|c| {
            c.spec.as_ref().and_then(|s| s.controller.as_deref())
                == Some(TRAEFIK_INGRESS_CONTROLLER)
        })),
        Err(kube::Error::Api(e)) if e.code == 403 || e.code == 404 => {
            warn!(
                "cannot list IngressClasses ({}): assuming no Traefik runs",
                e.message
            );
            Ok(false)
        }
        Err(source) => Err(Error::Read {
            what: "IngressClass list".into(),
            source,
        }),
    }
}

/// The pod and service ranges: from the command line, or discovered from the
/// Nodes' `podCIDRs` and the `ServiceCIDR` objects.
pub async fn cluster_subnets(ctx: &Context) -> Result<Vec<String>, Error> {
    if !ctx.cluster_subnets.is_empty() {
        return Ok(ctx.cluster_subnets.clone());
    }
    let mut out = BTreeSet::new();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let list = nodes
        .list(&ListParams::default())
        .await
        .map_err(|source| Error::Read {
            what: "Node list".into(),
            source,
        })?;
    for n in list.items {
        let spec = n.spec.unwrap_or_default();
        out.extend(spec.pod_cidrs.unwrap_or_default());
        out.extend(spec.pod_cidr);
    }
    let cidrs: Api<ServiceCIDR> = Api::all(ctx.client.clone());
    match cidrs.list(&ListParams::default()).await {
        Ok(list) => out.extend(
            list.items
                .into_iter()
                .flat_map(|c| c.spec.and_then(|s| s.cidrs).unwrap_or_default()),
        ),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 403 => {
            warn!("cannot list ServiceCIDRs: {}", e.message)
        }
        Err(source) => {
            return Err(Error::Read {
                what: "ServiceCIDR list".into(),
                source,
            });
        }
    }
    Ok(out.into_iter().collect())
}

/// Whether a CRD is installed and established.
pub async fn crd_exists(ctx: &Context, name: &str) -> Result<bool, Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
    Ok(get_opt(&crds, name).await?.is_some())
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
