//! Controller wiring, health and metrics server, leader election, telemetry.

pub mod fence;
pub mod server;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::{StreamExt, future};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::api::{IngressRoute, MediaStack, VpnGateway};
use crate::metrics::Metrics;
use crate::reconcile::{self, Context, Error};
use crate::render::meta::MANAGER;
use crate::render::vpn;
use server::Health;

/// Settings of `mediastack-operator run`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Address of `/livez`, `/readyz`, `/metrics`.
    pub listen: SocketAddr,
    /// Namespace to watch; all when `None`.
    pub namespace: Option<String>,
    /// Pod and service ranges; discovered when empty.
    pub cluster_subnets: Vec<String>,
    /// Lease for leader election; no election when `None`.
    pub leader_election: Option<LeaderElection>,
    /// Periodic resync of healthy objects (a safety net; changes trigger reconciles).
    pub resync: Duration,
    /// The cluster admin's policy.
    pub policy: crate::policy::Policy,
    /// The chart's fixed node-reader ClusterRole.
    pub node_reader_role: String,
}

#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub duration_secs: u64,
}

fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the operator until SIGTERM/SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let config = kube::Config::infer().await?;
    let identity = settings
        .leader_election
        .as_ref()
        .map_or_else(|| "standalone".to_string(), |l| l.identity.clone());
    // Without election this process is the only writer; with it, only while
    // its lease is fresh (see `fence`).
    let fence = if settings.leader_election.is_some() {
        fence::Fence::closed()
    } else {
        fence::Fence::always_open()
    };
    let metrics = Arc::new(Metrics::default());
    let client = kube::client::ClientBuilder::try_from(config.clone())?
        // Inside the fence: counts only requests that are sent.
        .with_layer(&crate::metrics::requests::CountLayer {
            metrics: metrics.clone(),
        })
        .with_layer(&fence::FenceLayer {
            fence: fence.clone(),
            identity: identity.clone(),
        })
        .build();
    let health = Arc::new(Health::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            info!("shutdown requested");
            let _ = stop_tx.send(true);
        });
    }
    let stopped = {
        let rx = stop_rx.clone();
        move || {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        }
    };
    let server = tokio::spawn(server::serve(
        settings.listen,
        health.clone(),
        metrics.clone(),
        stopped(),
    ));

    // Leader election: only the lease holder runs the controllers.
    let mut lost_leadership: Option<watch::Receiver<bool>> = None;
    let mut lease_task = None;
    if let Some(le) = &settings.leader_election {
        // The lease manager's own client (never fenced) opens the fence on
        // each renewal, for a little less than the lease duration.
        let lease_client = kube::client::ClientBuilder::try_from(config.clone())?
            .with_layer(&fence::RenewLayer {
                fence: fence.clone(),
                identity: identity.clone(),
                valid: Duration::from_secs(le.duration_secs)
                    .saturating_sub(Duration::from_secs(le.duration_secs) / 5),
            })
            .build();
        let manager = kube_lease_manager::LeaseManagerBuilder::new(lease_client, &le.lease_name)
            .with_namespace(&le.namespace)
            .with_identity(&le.identity)
            .with_duration(le.duration_secs)
            .with_grace(le.duration_secs / 3)
            .build()
            .await?;
        let (mut rx, task) = manager.watch().await;
        // The fence follows the lease manager's verdict at once: a lost
        // lease stops every write, in flight or not.
        {
            let (mut rx, fence, health) = (rx.clone(), fence.clone(), health.clone());
            tokio::spawn(async move {
                loop {
                    let leader = *rx.borrow_and_update();
                    fence.set_leader(leader);
                    if !leader && health.leading.load(Ordering::Relaxed) {
                        health.ready.store(false, Ordering::Relaxed);
                    }
                    if rx.changed().await.is_err() {
                        fence.set_leader(false);
                        return;
                    }
                }
            });
        }
        // A standby is ready (it serves its purpose: waiting).
        health.ready.store(true, Ordering::Relaxed);
        info!(identity = %le.identity, lease = %le.lease_name, "waiting to become leader");
        let mut stop = stop_rx.clone();
        tokio::select! {
            r = rx.wait_for(|l| *l) => { r?; }
            _ = stop.wait_for(|s| *s) => { let _ = server.await; return Ok(()); }
        }
        info!("became leader");
        // Not ready again until this replica's caches have synced.
        health.leading.store(true, Ordering::Relaxed);
        health.ready.store(false, Ordering::Relaxed);
        lost_leadership = Some(rx);
        lease_task = Some(task);
    }

    let mut ctx = Context::new(
        client.clone(),
        metrics.clone(),
        settings.cluster_subnets.clone(),
    );
    ctx.resync = settings.resync;
    ctx.policy = settings.policy.clone();
    ctx.node_reader_role = settings.node_reader_role.clone();
    info!(policy = ?ctx.policy, "admin policy");
    let ns = &settings.namespace;
    // VPN consumer pods, cached for the VpnGateway's TunnelReady: every
    // change re-runs the gateway controller (after the cache has it).
    let (pod_store, pod_writer) = kube::runtime::reflector::store::<Pod>();
    ctx.consumer_pods = Some(pod_store);
    let pod_events = kube::runtime::reflector(
        pod_writer,
        watcher(
            api::<Pod>(&client, ns),
            watcher::Config::default().labels(&format!("{}=true", vpn::CONSUMER_LABEL)),
        )
        .default_backoff(),
    )
    .touched_objects()
    .filter_map(|r| future::ready(r.ok().map(|_| ())));
    let ctx = Arc::new(ctx);
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));

    let gateways = Controller::new(api::<VpnGateway>(&client, ns), watcher::Config::default());
    let gw_store = gateways.store();

    let stacks = Controller::new(api::<MediaStack>(&client, ns), watcher::Config::default());
    let stack_store = stacks.store();
    let by_gateway = stack_store.clone();
    let (secret_stacks, secret_gateways) = (stack_store.clone(), gw_store.clone());
    let stacks = stacks
        .owns(api::<Deployment>(&client, ns), owned.clone())
        .owns(api::<Service>(&client, ns), owned.clone())
        .owns(api::<PersistentVolumeClaim>(&client, ns), owned.clone())
        .owns(api::<ConfigMap>(&client, ns), owned.clone())
        .owns(api::<DaemonSet>(&client, ns), owned.clone())
        .owns(api::<NetworkPolicy>(&client, ns), owned.clone())
        .owns(api::<IngressRoute>(&client, ns), owned.clone())
        .watches(
            api::<VpnGateway>(&client, ns),
            watcher::Config::default(),
            move |gw: VpnGateway| {
                let (name, gw_ns) = (gw.name_any(), gw.namespace());
                by_gateway
                    .state()
                    .into_iter()
                    .filter(|s| {
                        s.namespace() == gw_ns
                            && s.spec
                                .apps
                                .enabled()
                                .any(|(_, a)| a.vpn.as_ref().is_some_and(|v| v.gateway_ref == name))
                    })
                    .map(|s| ObjectRef::from_obj(s.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        // A changed Secret a stack uses (VPN credentials through its gateways,
        // tunnel token, dashboard users) re-renders it at once: the VPN hash
        // rolls qBittorrent. Metadata only: Secret data is never cached.
        .watches(
            api::<PartialObjectMeta<Secret>>(&client, ns),
            watcher::Config::default(),
            move |secret| {
                let (name, s_ns) = (secret.name_any(), secret.namespace());
                let gateways: Vec<String> = secret_gateways
                    .state()
                    .into_iter()
                    .filter(|g| g.namespace() == s_ns && g.spec.credentials_secret_ref.name == name)
                    .map(|g| g.name_any())
                    .collect();
                secret_stacks
                    .state()
                    .into_iter()
                    .filter(|s| s.namespace() == s_ns && stack_uses_secret(s, &name, &gateways))
                    .map(|s| ObjectRef::from_obj(s.as_ref()))
                    .collect::<Vec<_>>()
            },
        );

    let by_secret = gw_store.clone();
    let by_stack = gw_store.clone();
    // Secrets are watched by metadata only: the operator never caches their data.
    let gateways = gateways
        .watches(
            api::<PartialObjectMeta<Secret>>(&client, ns),
            watcher::Config::default(),
            move |s| {
                let (name, s_ns) = (s.name_any(), s.namespace());
                by_secret
                    .state()
                    .into_iter()
                    .filter(|g| g.namespace() == s_ns && g.spec.credentials_secret_ref.name == name)
                    .map(|g| ObjectRef::from_obj(g.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .watches(
            api::<MediaStack>(&client, ns),
            watcher::Config::default(),
            move |s: MediaStack| {
                by_stack
                    .state()
                    .into_iter()
                    .filter(|g| g.namespace() == s.namespace())
                    .map(|g| ObjectRef::from_obj(g.as_ref()))
                    .collect::<Vec<_>>()
            },
        );

    let routes = Controller::new(api::<IngressRoute>(&client, ns), watcher::Config::default());
    let route_store = routes.store();
    let routes_by_stack = route_store.clone();
    let routes = routes.watches(
        api::<MediaStack>(&client, ns),
        watcher::Config::default(),
        move |s: MediaStack| {
            routes_by_stack
                .state()
                .into_iter()
                .filter(|r| r.namespace() == s.namespace())
                .map(|r| ObjectRef::from_obj(r.as_ref()))
                .collect::<Vec<_>>()
        },
    );

    // Ready once every primary cache has synced.
    {
        let (health, a, b, c) = (
            health.clone(),
            stack_store.clone(),
            gw_store.clone(),
            route_store.clone(),
        );
        tokio::spawn(async move {
            let ra = synced(&a).await;
            let rb = synced(&b).await;
            let rc = synced(&c).await;
            if ra.is_ok() && rb.is_ok() && rc.is_ok() {
                info!("caches synced");
                health.ready.store(true, Ordering::Relaxed);
            }
        });
    }

    // Cluster-scoped children outlive their stack unless swept (no owner reference).
    {
        let (client, store, watched) = (
            client.clone(),
            stack_store.clone(),
            settings.namespace.clone(),
        );
        let every = settings.resync.min(Duration::from_secs(60));
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            if synced(&store).await.is_err() {
                return;
            }
            loop {
                let exists =
                    |ns: &str, name: &str| store.get(&ObjectRef::new(name).within(ns)).is_some();
                match reconcile::mediastack::sweep_cluster_children(
                    &client,
                    watched.as_deref(),
                    exists,
                )
                .await
                {
                    Ok(deleted) if !deleted.is_empty() => info!(
                        ?deleted,
                        "removed cluster-scoped children of deleted stacks"
                    ),
                    Ok(_) => {}
                    Err(e) => warn!("sweep of cluster-scoped children failed: {e}"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
    }

    let shutdown = {
        let stopped = stopped();
        let lost = lost_leadership.clone();
        async move {
            match lost {
                Some(mut rx) => {
                    tokio::select! {
                        _ = stopped => {}
                        _ = rx.wait_for(|l| !*l) => { warn!("lost leadership: stopping controllers"); }
                    }
                }
                None => stopped.await,
            }
        }
    };
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let attempts = Attempts::default();

    let c1 = stacks
        .graceful_shutdown_on(shutdown.clone())
        .run(
            reconcile::mediastack::reconcile,
            error_policy::<MediaStack>("MediaStack", attempts.clone()),
            ctx.clone(),
        )
        .for_each(|r| {
            report(
                &attempts,
                r.map(|(o, _)| (o.namespace.unwrap_or_default(), o.name)),
            )
        });
    let c2 = gateways
        .reconcile_all_on(pod_events)
        .graceful_shutdown_on(shutdown.clone())
        .run(
            reconcile::vpngateway::reconcile,
            error_policy::<VpnGateway>("VpnGateway", attempts.clone()),
            ctx.clone(),
        )
        .for_each(|r| {
            report(
                &attempts,
                r.map(|(o, _)| (o.namespace.unwrap_or_default(), o.name)),
            )
        });
    let c3 = routes
        .graceful_shutdown_on(shutdown.clone())
        .run(
            reconcile::ingressroute::reconcile,
            error_policy::<IngressRoute>("IngressRoute", attempts.clone()),
            ctx.clone(),
        )
        .for_each(|r| {
            report(
                &attempts,
                r.map(|(o, _)| (o.namespace.unwrap_or_default(), o.name)),
            )
        });
    future::join3(c1, c2, c3).await;

    let lost = lost_leadership.as_ref().is_some_and(|rx| !*rx.borrow());
    if let Some(task) = lease_task {
        task.abort();
    }
    health.ready.store(false, Ordering::Relaxed);
    let requested = *stop_rx.borrow();
    // Stop the health server too: a replica that lost its lease exits (the
    // Deployment restarts it as a fresh standby).
    let _ = stop_tx.send(true);
    let _ = server.await;
    if lost && !requested {
        anyhow::bail!("lost leadership");
    }
    info!("stopped");
    Ok(())
}

/// Waits until `store` has its first complete list. The store's readiness
/// signal wakes only one waiter (the controller's own), so poll it with a
/// short timeout; once ready, every new call returns at once.
async fn synced<K>(
    store: &kube::runtime::reflector::Store<K>,
) -> Result<(), kube::runtime::reflector::store::WriterDropped>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if let Ok(res) =
            tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await
        {
            return res;
        }
    }
}

/// Whether `stack` reads Secret `name`, directly or through one of `gateways`
/// (the VpnGateways whose credentials it is).
fn stack_uses_secret(stack: &MediaStack, name: &str, gateways: &[String]) -> bool {
    let ingress = &stack.spec.ingress;
    ingress
        .tunnel
        .as_ref()
        .is_some_and(|t| t.token_secret_ref.name == name)
        || ingress
            .traefik
            .dashboard_auth_secret_ref
            .as_ref()
            .is_some_and(|r| r.name == name)
        || stack.spec.apps.enabled().any(|(_, a)| {
            a.vpn
                .as_ref()
                .is_some_and(|v| gateways.contains(&v.gateway_ref))
        })
}

/// Consecutive failures per object (`namespace/name`), for the backoff; a
/// success clears the count.
type Attempts = Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>;

fn report<E: std::fmt::Display>(
    attempts: &Attempts,
    r: Result<(String, String), E>,
) -> future::Ready<()> {
    match r {
        Ok((ns, name)) => {
            if let Ok(mut m) = attempts.lock() {
                m.remove(&format!("{ns}/{name}"));
            }
        }
        Err(e) => warn!("reconcile failed: {e}"),
    }
    future::ready(())
}

/// Transient failures requeue with a growing, bounded delay.
fn error_policy<K: kube::Resource>(
    controller: &'static str,
    attempts: Attempts,
) -> impl Fn(Arc<K>, &Error, Arc<Context>) -> Action {
    move |obj, err, ctx| {
        ctx.metrics.failure(controller, err.category());
        error!(controller, name = %obj.meta().name.clone().unwrap_or_default(), category = err.category(), "reconcile error: {err}");
        let key = format!(
            "{}/{}",
            obj.meta().namespace.clone().unwrap_or_default(),
            obj.meta().name.clone().unwrap_or_default()
        );
        let n = attempts.lock().map(|mut m| {
            let e = m.entry(key).or_insert(0);
            *e += 1;
            *e
        });
        match n {
            Ok(n) => reconcile::backoff(n),
            Err(_) => Action::requeue(Duration::from_secs(30)),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
