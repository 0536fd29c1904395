//! One watch per type, shared: each watched type has one reflector task
//! that fills its store in [`Cache`] and tells the controllers which of
//! their objects a change affects (through the pure [`super::mappers`]).
//!
//! A watch that the API server answers with 410 Gone (its resourceVersion
//! is too old, e.g. after an API-server restart) lists again from scratch
//! ([`relisting_watcher`]), with a consistent list (`MostRecent`): a list
//! served from a just-restarted server's watch cache can return a
//! resourceVersion that its watch then rejects as too old again.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use k8s_openapi::api::networking::v1::{IngressClass, ServiceCIDR};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::watcher::ListSemantic;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use super::mappers;
use crate::api::{IngressRoute, MediaStack, VpnGateway};
use crate::reconcile::cache::{Cache, group_kind};
use crate::reconcile::mediastack;
use crate::reconcile::resolve;
use crate::render::meta::MANAGER;
use crate::render::vpn;

/// A watch of `api` that lists again (a fresh watcher) whenever the API
/// server answers 410 Gone, also when it answers so to the start of a watch
/// (kube's watcher retries that start with the same resourceVersion).
pub fn relisting_watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let config = config.list_semantic(ListSemantic::MostRecent);
    let fresh = move || watcher(api.clone(), config.clone()).boxed();
    futures::stream::unfold((fresh(), fresh), |(mut inner, fresh)| async move {
        let item = inner.next().await?;
        if is_gone(&item) {
            info!("watch expired (410 Gone): listing again");
            inner = fresh();
        }
        Some((item, (inner, fresh)))
    })
}

/// Whether `item` is a 410 Gone that kube's watcher would not recover from
/// by listing again (it does for a 410 inside a running watch).
fn is_gone<T>(item: &watcher::Result<T>) -> bool {
    matches!(
        item,
        Err(watcher::Error::WatchStartFailed(kube::Error::Api(s))) if s.code == 410
    )
}

/// Something that reacts to every event of one watch (after the store has it).
type Listener<K> = Box<dyn FnMut(&watcher::Event<K>, &Store<K>) + Send>;

/// Runs the reflector of one watch: fills `writer`'s store and calls every
/// listener. Errors are logged; the watch backs off and goes on.
fn spawn_reflector<K, S>(
    what: String,
    writer: Writer<K>,
    stream: S,
    mut listeners: Vec<Listener<K>>,
) where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
    S: Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
{
    let store = writer.as_reader();
    tokio::spawn(async move {
        let mut events = Box::pin(reflector::reflector(writer, stream.default_backoff()));
        while let Some(ev) = events.next().await {
            match ev {
                Ok(ev) => {
                    for l in listeners.iter_mut() {
                        l(&ev, &store);
                    }
                }
                Err(e) => warn!(watch = %what, "watch failed: {e}"),
            }
        }
    });
}

/// Calls `on_change` with every object applied or deleted after the first
/// list, and `on_list` once each list (the first, or after a 410) is complete.
fn listener<K, C, L>(mut on_change: C, mut on_list: L) -> Listener<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
    C: FnMut(&K) + Send + 'static,
    L: FnMut(&Store<K>) + Send + 'static,
{
    Box::new(move |ev, store| match ev {
        watcher::Event::Apply(o) | watcher::Event::Delete(o) => on_change(o),
        watcher::Event::InitDone => on_list(store),
        watcher::Event::Init | watcher::Event::InitApply(_) => {}
    })
}

/// Requests to a controller: "reconcile these" and "reconcile all".
pub struct Queue<K: Resource>
where
    K::DynamicType: Eq + Hash + Clone,
{
    pub one: mpsc::UnboundedSender<ObjectRef<K>>,
    pub all: mpsc::UnboundedSender<()>,
}

impl<K: Resource> Clone for Queue<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    fn clone(&self) -> Self {
        Self {
            one: self.one.clone(),
            all: self.all.clone(),
        }
    }
}

impl<K: Resource> Queue<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    fn send(&self, refs: impl IntoIterator<Item = ObjectRef<K>>) {
        for r in refs {
            let _ = self.one.unbounded_send(r);
        }
    }
    fn send_all(&self) {
        let _ = self.all.unbounded_send(());
    }
}

/// What a controller is fed: its queue's receiving ends.
pub struct Triggers<K: Resource>
where
    K::DynamicType: Eq + Hash + Clone,
{
    pub one: mpsc::UnboundedReceiver<ObjectRef<K>>,
    pub all: mpsc::UnboundedReceiver<()>,
}

fn queue<K: Resource>() -> (Queue<K>, Triggers<K>)
where
    K::DynamicType: Eq + Hash + Clone,
{
    let (one, one_rx) = mpsc::unbounded();
    let (all, all_rx) = mpsc::unbounded();
    (
        Queue { one, all },
        Triggers {
            one: one_rx,
            all: all_rx,
        },
    )
}

/// The three controllers' inputs.
pub struct Inputs {
    pub stacks: Triggers<MediaStack>,
    pub gateways: Triggers<VpnGateway>,
    pub routes: Triggers<IngressRoute>,
}

fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn dyn_api(
    client: &Client,
    ns: Option<&str>,
    ar: &ApiResource,
    namespaced: bool,
) -> Api<DynamicObject> {
    match (ns, namespaced) {
        (Some(ns), true) => Api::namespaced_with(client.clone(), ns, ar),
        _ => Api::all_with(client.clone(), ar),
    }
}

/// Whether the operator may list `api` (a kind it only reads when allowed:
/// IngressClasses, ServiceCIDRs). Logged once when not.
async fn listable<K>(api: &Api<K>, what: &str) -> bool
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => true,
        Err(kube::Error::Api(e)) if e.code == 403 || e.code == 404 => {
            warn!("cannot list {what} ({}): not watched", e.message);
            false
        }
        // Any other failure: watch anyway (the watch retries).
        Err(_) => true,
    }
}

/// Waits until `store` has its first complete list. The store's readiness
/// signal wakes only one waiter, so poll it with a short timeout.
pub async fn synced<K>(store: &Store<K>) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    loop {
        if let Ok(res) =
            tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await
        {
            return res.is_ok();
        }
    }
}

/// What decides a render cluster-wide: the cluster ranges, whether the
/// Traefik and prometheus-operator CRDs exist and whether a Traefik serves
/// the cluster. A change re-renders every stack and gateway.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
struct ClusterFacts {
    subnets: Vec<String>,
    traefik_crd: bool,
    monitoring_crd: bool,
    traefik_class: bool,
}

impl ClusterFacts {
    fn of(cache: &Cache) -> Self {
        Self {
            subnets: cache.cluster_subnets(),
            traefik_crd: cache.crd_exists(resolve::TRAEFIK_CRD),
            monitoring_crd: cache.crd_exists(mediastack::SERVICE_MONITOR_CRD),
            traefik_class: cache.traefik_ingress_class(),
        }
    }
}

/// Every store, and the controllers' inputs. The watches start at once;
/// `Cache::ready` turns true when every store has listed.
pub async fn start(
    client: &Client,
    ns: Option<&str>,
    discover_subnets: bool,
) -> (Arc<Cache>, Inputs) {
    let (stack_q, stack_in) = queue::<MediaStack>();
    let (gw_q, gw_in) = queue::<VpnGateway>();
    let (route_q, route_in) = queue::<IngressRoute>();

    let (stacks, stacks_w) = reflector::store::<MediaStack>();
    let (gateways, gateways_w) = reflector::store::<VpnGateway>();
    let (routes, routes_w) = reflector::store::<IngressRoute>();
    let (secrets, secrets_w) = reflector::store::<PartialObjectMeta<Secret>>();
    let (pods, pods_w) = reflector::store::<Pod>();
    let (crds, crds_w) = reflector::store::<PartialObjectMeta<CustomResourceDefinition>>();
    let classes_api: Api<IngressClass> = Api::all(client.clone());
    let (classes, classes_w) = if listable(&classes_api, "IngressClasses").await {
        let (s, w) = reflector::store::<IngressClass>();
        (Some(s), Some(w))
    } else {
        (None, None)
    };
    let (nodes, nodes_w) = if discover_subnets {
        let (s, w) = reflector::store::<Node>();
        (Some(s), Some(w))
    } else {
        (None, None)
    };
    let cidrs_api: Api<ServiceCIDR> = Api::all(client.clone());
    let (cidrs, cidrs_w) = if discover_subnets && listable(&cidrs_api, "ServiceCIDRs").await {
        let (s, w) = reflector::store::<ServiceCIDR>();
        (Some(s), Some(w))
    } else {
        (None, None)
    };
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let cache = Arc::new(Cache {
        stacks: stacks.clone(),
        gateways: gateways.clone(),
        routes: routes.clone(),
        secrets: secrets.clone(),
        consumer_pods: pods.clone(),
        crds: crds.clone(),
        ingress_classes: classes.clone(),
        nodes: nodes.clone(),
        service_cidrs: cidrs.clone(),
        ready: ready_rx,
        ..Cache::default()
    });
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));

    // MediaStacks: their own controller; the gateways and routes of their namespace.
    {
        let (sq, gq, rq) = (stack_q.clone(), gw_q.clone(), route_q.clone());
        let (gws, rts) = (gateways.clone(), routes.clone());
        let (gq2, rq2, sq2) = (gw_q.clone(), route_q.clone(), stack_q.clone());
        spawn_reflector(
            "MediaStack".into(),
            stacks_w,
            relisting_watcher(api::<MediaStack>(client, ns), watcher::Config::default()),
            vec![listener(
                move |s: &MediaStack| {
                    sq.send([ObjectRef::from_obj(s)]);
                    gq.send(mappers::gateways_in_namespace_of(&gws.state(), s));
                    rq.send(mappers::routes_in_namespace_of(&rts.state(), s));
                },
                move |_| {
                    sq2.send_all();
                    gq2.send_all();
                    rq2.send_all();
                },
            )],
        );
    }
    // VpnGateways: their own controller; the stacks behind them.
    {
        let (gq, sq, sts) = (gw_q.clone(), stack_q.clone(), stacks.clone());
        let (gq2, sq2) = (gw_q.clone(), stack_q.clone());
        spawn_reflector(
            "VpnGateway".into(),
            gateways_w,
            relisting_watcher(api::<VpnGateway>(client, ns), watcher::Config::default()),
            vec![listener(
                move |g: &VpnGateway| {
                    gq.send([ObjectRef::from_obj(g)]);
                    sq.send(mappers::stacks_using_gateway(&sts.state(), g));
                },
                move |_| {
                    gq2.send_all();
                    sq2.send_all();
                },
            )],
        );
    }
    // Our IngressRoutes: their own controller, and the owning stack (children).
    {
        let (rq, rq2, sq, sq2) = (
            route_q.clone(),
            route_q.clone(),
            stack_q.clone(),
            stack_q.clone(),
        );
        spawn_reflector(
            "IngressRoute".into(),
            routes_w,
            relisting_watcher(api::<IngressRoute>(client, ns), watcher::Config::default()),
            vec![listener(
                move |r: &IngressRoute| {
                    rq.send([ObjectRef::from_obj(r)]);
                    sq.send(mappers::stack_of_child(r));
                },
                move |_| {
                    rq2.send_all();
                    sq2.send_all();
                },
            )],
        );
    }
    // Secrets (metadata only): the gateways and stacks that read them.
    {
        let (gq, sq, gws, sts) = (
            gw_q.clone(),
            stack_q.clone(),
            gateways.clone(),
            stacks.clone(),
        );
        spawn_reflector(
            "Secret".into(),
            secrets_w,
            relisting_watcher(
                api::<PartialObjectMeta<Secret>>(client, ns),
                watcher::Config::default(),
            ),
            vec![listener(
                move |s: &PartialObjectMeta<Secret>| {
                    let g = gws.state();
                    gq.send(mappers::gateways_using_secret(&g, s));
                    sq.send(mappers::stacks_using_secret(&sts.state(), &g, s));
                },
                |_| {},
            )],
        );
    }
    // VPN consumer pods: the TunnelReady of the gateway each runs behind
    // (after a new list, every gateway's).
    {
        let (gq, gq2) = (gw_q.clone(), gw_q.clone());
        spawn_reflector(
            "Pod".into(),
            pods_w,
            relisting_watcher(
                api::<Pod>(client, ns),
                watcher::Config::default().labels(&format!("{}=true", vpn::CONSUMER_LABEL)),
            )
            .modify(|p: &mut Pod| p.metadata.managed_fields = None),
            vec![listener(
                move |p: &Pod| gq.send(mappers::gateway_of_consumer_pod(p)),
                move |_| gq2.send_all(),
            )],
        );
    }
    // Cluster facts: a change re-renders every stack, gateway and route.
    let facts = {
        let cache = cache.clone();
        let (sq, gq, rq) = (stack_q.clone(), gw_q.clone(), route_q.clone());
        let last = std::sync::Mutex::new(ClusterFacts::of(&cache));
        Arc::new(move || {
            let now = ClusterFacts::of(&cache);
            let Ok(mut last) = last.lock() else { return };
            if *last != now {
                debug!(?now, "cluster facts changed: reconciling everything");
                *last = now;
                sq.send_all();
                gq.send_all();
                rq.send_all();
            }
        })
    };
    {
        let (f1, f2) = (facts.clone(), facts.clone());
        spawn_reflector(
            "CustomResourceDefinition".into(),
            crds_w,
            relisting_watcher(
                Api::<PartialObjectMeta<CustomResourceDefinition>>::all(client.clone()),
                watcher::Config::default(),
            ),
            vec![listener(
                move |_: &PartialObjectMeta<_>| f1(),
                move |_| f2(),
            )],
        );
    }
    if let Some(w) = classes_w {
        let (f1, f2) = (facts.clone(), facts.clone());
        spawn_reflector(
            "IngressClass".into(),
            w,
            relisting_watcher(classes_api, watcher::Config::default()),
            vec![listener(move |_: &IngressClass| f1(), move |_| f2())],
        );
    }
    if let Some(w) = nodes_w {
        let (f1, f2) = (facts.clone(), facts.clone());
        spawn_reflector(
            "Node".into(),
            w,
            // Only the spec's ranges are read: the status (images,
            // conditions, heartbeats) is not kept.
            relisting_watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).modify(
                |n: &mut Node| {
                    n.status = None;
                    n.metadata.managed_fields = None;
                    n.metadata.annotations = None;
                },
            ),
            vec![listener(move |_: &Node| f1(), move |_| f2())],
        );
    }
    if let Some(w) = cidrs_w {
        let (f1, f2) = (facts.clone(), facts.clone());
        spawn_reflector(
            "ServiceCIDR".into(),
            w,
            relisting_watcher(cidrs_api, watcher::Config::default()),
            vec![listener(move |_: &ServiceCIDR| f1(), move |_| f2())],
        );
    }

    // Children: full objects (apply compares their content), one store per
    // kind, each registered once synced. A change reconciles the owner; a
    // new list (which may have missed deletions) reconciles every stack.
    let mut child_stores = Vec::new();
    for (ar, namespaced) in child_kinds() {
        let store = watch_children(client, ns, &ar, namespaced, owned.clone(), &stack_q);
        child_stores.push((ar, store));
    }
    // Third-party kinds: watched once their CRD exists.
    {
        let (client, ns, cache, q, owned) = (
            client.clone(),
            ns.map(str::to_string),
            cache.clone(),
            stack_q.clone(),
            owned.clone(),
        );
        tokio::spawn(async move {
            let mut pending = third_party_kinds();
            loop {
                pending.retain(|(crd, ar)| {
                    if !cache.crd_exists(crd) {
                        return true;
                    }
                    let store = watch_children(&client, ns.as_deref(), ar, true, owned.clone(), &q);
                    let (cache, ar) = (cache.clone(), ar.clone());
                    tokio::spawn(async move {
                        if synced(&store).await {
                            cache.add_child_store(&ar, store);
                        }
                    });
                    false
                });
                if pending.is_empty() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
    }

    {
        let cache = cache.clone();
        tokio::spawn(async move {
            let mut ok = synced(&stacks).await
                & synced(&gateways).await
                & synced(&routes).await
                & synced(&secrets).await
                & synced(&pods).await
                & synced(&crds).await;
            for s in classes.iter() {
                ok &= synced(s).await;
            }
            for s in nodes.iter() {
                ok &= synced(s).await;
            }
            for s in cidrs.iter() {
                ok &= synced(s).await;
            }
            for (ar, s) in child_stores {
                ok &= synced(&s).await;
                cache.add_child_store(&ar, s);
            }
            if ok {
                let _ = ready_tx.send(true);
            }
        });
    }
    (
        cache,
        Inputs {
            stacks: stack_in,
            gateways: gw_in,
            routes: route_in,
        },
    )
}

/// Starts the watch of one child kind; returns its store.
fn watch_children(
    client: &Client,
    ns: Option<&str>,
    ar: &ApiResource,
    namespaced: bool,
    config: watcher::Config,
    stacks: &Queue<MediaStack>,
) -> Store<DynamicObject> {
    let writer = Writer::<DynamicObject>::new(ar.clone());
    let store = writer.as_reader();
    let (q1, q2) = (stacks.clone(), stacks.clone());
    spawn_reflector(
        group_kind(ar),
        writer,
        // A list's items carry no apiVersion/kind (a watch event's do):
        // set them, or the diff would see every listed child as changed.
        relisting_watcher(dyn_api(client, ns, ar, namespaced), config).modify({
            let types = kube::api::TypeMeta {
                api_version: ar.api_version.clone(),
                kind: ar.kind.clone(),
            };
            move |o: &mut DynamicObject| o.types = Some(types.clone())
        }),
        vec![listener(
            move |o: &DynamicObject| q1.send(mappers::stack_of_child(o)),
            move |_| q2.send_all(),
        )],
    );
    store
}

/// The built-in kinds a stack creates (and whether they are namespaced):
/// what apply and prune read.
pub fn child_kinds() -> Vec<(ApiResource, bool)> {
    let mut out: Vec<(ApiResource, bool)> = mediastack::owned_kinds(false, false)
        .into_iter()
        .filter(|ar| ar.group != "mediastack.io")
        .map(|ar| (ar, true))
        .collect();
    out.extend(
        mediastack::cluster_kinds()
            .into_iter()
            .map(|ar| (ar, false)),
    );
    // Our IngressRoutes (a stack's app routes) are read from the
    // IngressRoute controller's store: one watch per type.
    out
}

/// The third-party kinds the operator creates, with the CRD each needs.
fn third_party_kinds() -> Vec<(&'static str, ApiResource)> {
    let mut out: Vec<(&'static str, ApiResource)> = mediastack::owned_kinds(true, false)
        .into_iter()
        .filter(|ar| ar.group == "monitoring.coreos.com")
        .map(|ar| (mediastack::SERVICE_MONITOR_CRD, ar))
        .collect();
    out.extend(
        resolve::traefik_kinds()
            .into_iter()
            .map(|ar| (resolve::TRAEFIK_CRD, ar)),
    );
    out
}
