//! The watch caches the reconcilers read instead of the API server.
//!
//! Every watched type has one reflector store (filled by `runtime::stores`),
//! shared by every controller and lookup. A reconcile reads its children,
//! references and cluster facts from here; it sends a GET only for what no
//! store holds (a kind not watched, an object outside the label selection,
//! a store not synced yet) and for Secret data, which is never cached.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use k8s_openapi::api::networking::v1::{IngressClass, ServiceCIDR};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::api::{IngressRoute, MediaStack, VpnGateway};

/// IngressClass controller name of Traefik (k3s's bundled Traefik has one).
pub const TRAEFIK_INGRESS_CONTROLLER: &str = "traefik.io/ingress-controller";

/// `group/kind` of an API resource: the key of its store.
pub fn group_kind(ar: &ApiResource) -> String {
    format!("{}/{}", ar.group, ar.kind)
}

/// The stores of every watched type.
pub struct Cache {
    pub stacks: Store<MediaStack>,
    pub gateways: Store<VpnGateway>,
    pub routes: Store<IngressRoute>,
    /// Secrets by metadata only: the operator never caches Secret data.
    pub secrets: Store<PartialObjectMeta<Secret>>,
    /// VPN consumer pods (label `mediastack.io/vpn-consumer`), for the
    /// VpnGateway's `TunnelReady`.
    pub consumer_pods: Store<Pod>,
    /// CRDs by metadata: whether the Traefik and prometheus-operator kinds exist.
    pub crds: Store<PartialObjectMeta<CustomResourceDefinition>>,
    /// IngressClasses, when the operator may list them.
    pub ingress_classes: Option<Store<IngressClass>>,
    /// Nodes (status dropped) and ServiceCIDRs: the cluster ranges, unless
    /// given on the command line.
    pub nodes: Option<Store<Node>>,
    pub service_cidrs: Option<Store<ServiceCIDR>>,
    /// The operator's children (label `app.kubernetes.io/managed-by`), by
    /// [`group_kind`]. Kinds of third-party CRDs join once their CRD exists.
    pub(crate) children: RwLock<HashMap<String, Store<DynamicObject>>>,
    /// What the last apply of a child returned, until its store has caught
    /// up: a reconcile that runs before the watch event does not apply the
    /// same child twice.
    pub(crate) applied: Mutex<HashMap<String, Arc<DynamicObject>>>,
    /// True once every store has its first complete list.
    pub ready: tokio::sync::watch::Receiver<bool>,
}

impl Default for Cache {
    /// Empty stores that nothing fills (tests; see `runtime::stores` for the real ones).
    fn default() -> Self {
        fn empty<K>() -> Store<K>
        where
            K: Resource + Clone + 'static,
            K::DynamicType: Eq + std::hash::Hash + Clone + Default,
        {
            Writer::<K>::default().as_reader()
        }
        Self {
            stacks: empty(),
            gateways: empty(),
            routes: empty(),
            secrets: empty(),
            consumer_pods: empty(),
            crds: empty(),
            ingress_classes: None,
            nodes: None,
            service_cidrs: None,
            children: RwLock::default(),
            applied: Mutex::default(),
            ready: tokio::sync::watch::channel(true).1,
        }
    }
}

fn key_of(ar: &ApiResource, ns: Option<&str>, name: &str) -> String {
    format!("{}/{}/{name}", group_kind(ar), ns.unwrap_or(""))
}

fn rv(obj: &DynamicObject) -> Option<u64> {
    obj.metadata.resource_version.as_deref()?.parse().ok()
}

impl Cache {
    /// Registers the store of a child kind (once it has synced).
    pub fn add_child_store(&self, ar: &ApiResource, store: Store<DynamicObject>) {
        if let Ok(mut m) = self.children.write() {
            m.insert(group_kind(ar), store);
        }
    }

    /// Waits until every store has listed once (at start-up): a reconcile
    /// never reads a store that is still filling.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.clone();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// The store of a child kind, when one is watched and synced.
    pub fn child_store(&self, ar: &ApiResource) -> Option<Store<DynamicObject>> {
        self.children.read().ok()?.get(&group_kind(ar)).cloned()
    }

    /// Whether `ar` is our own IngressRoute, read from the routes' store.
    fn is_our_route(ar: &ApiResource) -> bool {
        ar.group == IngressRoute::group(&()) && ar.kind == IngressRoute::kind(&())
    }

    /// Every cached child of kind `ar` (in `ns`, when given); `None` when
    /// no store watches the kind.
    pub fn children_of(
        &self,
        ar: &ApiResource,
        ns: Option<&str>,
    ) -> Option<Vec<Arc<DynamicObject>>> {
        let in_ns =
            |m: &kube::api::ObjectMeta| ns.is_none_or(|n| m.namespace.as_deref() == Some(n));
        if Self::is_our_route(ar) {
            return Some(
                self.routes
                    .state()
                    .iter()
                    .filter(|r| in_ns(&r.metadata))
                    .filter_map(|r| to_dynamic(r.as_ref()))
                    .map(Arc::new)
                    .collect(),
            );
        }
        Some(
            self.child_store(ar)?
                .state()
                .into_iter()
                .filter(|o| in_ns(&o.metadata))
                .collect(),
        )
    }

    /// The live child `name` of kind `ar`: `None` when no store watches the
    /// kind (the caller GETs it), `Some(None)` when the store does not hold it.
    pub fn child(
        &self,
        ar: &ApiResource,
        ns: Option<&str>,
        name: &str,
    ) -> Option<Option<Arc<DynamicObject>>> {
        let cached = if Self::is_our_route(ar) {
            let mut r = ObjectRef::<IngressRoute>::new(name);
            if let Some(ns) = ns {
                r = r.within(ns);
            }
            self.routes
                .get(&r)
                .and_then(|r| to_dynamic(r.as_ref()))
                .map(Arc::new)
        } else {
            let store = self.child_store(ar)?;
            let mut r = ObjectRef::<DynamicObject>::new_with(name, ar.clone());
            if let Some(ns) = ns {
                r = r.within(ns);
            }
            store.get(&r)
        };
        let key = key_of(ar, ns, name);
        let Ok(mut applied) = self.applied.lock() else {
            return Some(cached);
        };
        let Some(mine) = applied.get(&key).cloned() else {
            return Some(cached);
        };
        match &cached {
            // The store has caught up with (or passed) the last apply.
            Some(c) if rv(c) >= rv(&mine) => {
                applied.remove(&key);
                Some(cached)
            }
            _ => Some(Some(mine)),
        }
    }

    /// Records what the API server returned for an apply of a child.
    pub fn applied(&self, ar: &ApiResource, obj: DynamicObject) {
        let (ns, name) = (obj.metadata.namespace.clone(), obj.name_any());
        if let Ok(mut m) = self.applied.lock() {
            m.insert(key_of(ar, ns.as_deref(), &name), Arc::new(obj));
        }
    }

    /// Forgets a deleted child's last apply.
    pub fn deleted(&self, ar: &ApiResource, ns: Option<&str>, name: &str) {
        if let Ok(mut m) = self.applied.lock() {
            m.remove(&key_of(ar, ns, name));
        }
    }

    /// A typed child from its kind's store (see [`Cache::child`]).
    pub fn typed_child<K>(&self, ns: &str, name: &str) -> Option<Option<K>>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let ar = ApiResource::erase::<K>(&());
        Some(
            self.child(&ar, Some(ns), name)?
                .and_then(|o| o.as_ref().clone().try_parse::<K>().ok()),
        )
    }

    /// Typed children of kind `K` in `ns` whose labels include `labels`.
    pub fn typed_children<K>(&self, ns: &str, labels: &[(&str, &str)]) -> Option<Vec<K>>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        Some(
            self.children_of(&ApiResource::erase::<K>(&()), Some(ns))?
                .into_iter()
                .filter(|o| has_labels(o, labels))
                .filter_map(|o| o.as_ref().clone().try_parse::<K>().ok())
                .collect(),
        )
    }

    /// Whether CRD `name` is installed.
    pub fn crd_exists(&self, name: &str) -> bool {
        self.crds.get(&ObjectRef::new(name)).is_some()
    }

    /// Whether an IngressClass names Traefik's controller (unknown, so
    /// false, when the operator may not list IngressClasses).
    pub fn traefik_ingress_class(&self) -> bool {
        self.ingress_classes.as_ref().is_some_and(|s| {
            s.state().iter().any(|c| {
                c.spec.as_ref().and_then(|s| s.controller.as_deref())
                    == Some(TRAEFIK_INGRESS_CONTROLLER)
            })
        })
    }

    /// The pod and service ranges: the Nodes' `podCIDRs` and the
    /// `ServiceCIDR`s, sorted and deduplicated.
    pub fn cluster_subnets(&self) -> Vec<String> {
        let mut out = BTreeSet::new();
        for n in self.nodes.iter().flat_map(|s| s.state()) {
            if let Some(spec) = &n.spec {
                out.extend(spec.pod_cidrs.iter().flatten().cloned());
                out.extend(spec.pod_cidr.clone());
            }
        }
        for c in self.service_cidrs.iter().flat_map(|s| s.state()) {
            out.extend(
                c.spec
                    .iter()
                    .flat_map(|s| s.cidrs.iter().flatten().cloned()),
            );
        }
        out.into_iter().collect()
    }

    /// Whether Secret `name` exists in `ns` (metadata store).
    pub fn secret_exists(&self, ns: &str, name: &str) -> bool {
        self.secrets.get(&ObjectRef::new(name).within(ns)).is_some()
    }

    /// The MediaStacks of `ns`.
    pub fn stacks_in(&self, ns: &str) -> Vec<Arc<MediaStack>> {
        self.stacks
            .state()
            .into_iter()
            .filter(|s| s.namespace().as_deref() == Some(ns))
            .collect()
    }
}

/// Whether `obj` carries every label of `labels`.
pub fn has_labels(obj: &DynamicObject, labels: &[(&str, &str)]) -> bool {
    let own = obj.metadata.labels.as_ref();
    labels
        .iter()
        .all(|(k, v)| own.and_then(|l| l.get(*k)).map(String::as_str) == Some(*v))
}

/// A typed object as a [`DynamicObject`] (for the diff, which compares JSON).
fn to_dynamic<K: Resource<DynamicType = ()> + serde::Serialize>(obj: &K) -> Option<DynamicObject> {
    let mut v = serde_json::to_value(obj).ok()?;
    v["apiVersion"] = K::api_version(&()).into();
    v["kind"] = K::kind(&()).into();
    serde_json::from_value(v).ok()
}
