//! Controller wiring (stores and mappers), health and metrics server,
//! leader election, telemetry.

pub mod fence;
pub mod mappers;
pub mod server;
pub mod stores;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::{StreamExt, future};
use kube::Client;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::api::{IngressRoute, MediaStack, VpnGateway};
use crate::metrics::Metrics;
use crate::reconcile::cache::Cache;
use crate::reconcile::{self, Context, Error};
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
    let stop = Stop::on_signal();
    let server = tokio::spawn(server::serve(
        settings.listen,
        health.clone(),
        metrics.clone(),
        stop.stopped(),
    ));

    let mut lease = None;
    if let Some(le) = &settings.leader_election {
        match elect(&config, le, &fence, &health, &stop).await? {
            Some(l) => lease = Some(l),
            None => {
                let _ = server.await;
                return Ok(());
            }
        }
    }
    let lost_leadership = lease.as_ref().map(|l| l.0.clone());

    let (cache, inputs) = stores::start(
        &client,
        settings.namespace.as_deref(),
        settings.cluster_subnets.is_empty(),
    )
    .await;
    let mut ctx = Context::new(
        client.clone(),
        metrics.clone(),
        settings.cluster_subnets.clone(),
        cache.clone(),
    );
    ctx.resync = settings.resync;
    ctx.policy = settings.policy.clone();
    ctx.node_reader_role = settings.node_reader_role.clone();
    info!(policy = ?ctx.policy, "admin policy");
    let ctx = Arc::new(ctx);

    // Ready once every store has synced.
    {
        let (health, cache) = (health.clone(), cache.clone());
        tokio::spawn(async move {
            cache.wait_ready().await;
            info!("caches synced");
            health.ready.store(true, Ordering::Relaxed);
        });
    }
    spawn_sweeper(&client, &cache, &settings, &stop);

    let shutdown = {
        let stopped = stop.stopped();
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
    run_controllers(ctx, &cache, inputs, shutdown).await;

    let lost = lost_leadership.as_ref().is_some_and(|rx| !*rx.borrow());
    if let Some((_, task)) = lease {
        task.abort();
    }
    health.ready.store(false, Ordering::Relaxed);
    let requested = stop.requested();
    // Stop the health server too: a replica that lost its lease exits (the
    // Deployment restarts it as a fresh standby).
    stop.stop();
    let _ = server.await;
    if lost && !requested {
        anyhow::bail!("lost leadership");
    }
    info!("stopped");
    Ok(())
}

/// The stop signal: SIGTERM/SIGINT, or the operator's own decision.
#[derive(Clone)]
struct Stop {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Stop {
    fn on_signal() -> Self {
        let (tx, rx) = watch::channel(false);
        let tx = Arc::new(tx);
        {
            let tx = tx.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                info!("shutdown requested");
                let _ = tx.send(true);
            });
        }
        Self { tx, rx }
    }

    /// Resolves once a stop is requested.
    fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    fn requested(&self) -> bool {
        *self.rx.borrow()
    }

    fn stop(&self) {
        let _ = self.tx.send(true);
    }
}

/// The lease manager's verdict (true while leading) and its task.
type Lease<T> = (watch::Receiver<bool>, tokio::task::JoinHandle<T>);

/// Leader election: waits until this replica holds the lease (`None` when
/// stopped first). The fence follows the lease from then on.
async fn elect(
    config: &kube::Config,
    le: &LeaderElection,
    fence: &fence::Fence,
    health: &Arc<Health>,
    stop: &Stop,
) -> anyhow::Result<Option<Lease<impl Send + 'static>>> {
    // The lease manager's own client (never fenced) opens the fence on
    // each renewal, for a little less than the lease duration.
    let lease_client = kube::client::ClientBuilder::try_from(config.clone())?
        .with_layer(&fence::RenewLayer {
            fence: fence.clone(),
            identity: le.identity.clone(),
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
    tokio::select! {
        r = rx.wait_for(|l| *l) => { r?; }
        _ = stop.stopped() => { task.abort(); return Ok(None); }
    }
    info!("became leader");
    // Not ready again until this replica's caches have synced.
    health.leading.store(true, Ordering::Relaxed);
    health.ready.store(false, Ordering::Relaxed);
    Ok(Some((rx, task)))
}

/// Runs the three controllers, fed by the stores' triggers, until `shutdown`.
async fn run_controllers(
    ctx: Arc<Context>,
    cache: &Cache,
    inputs: stores::Inputs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let attempts = Attempts::default();
    let stacks = controller(cache.stacks.clone(), inputs.stacks)
        .graceful_shutdown_on(shutdown.clone())
        .run(
            reconcile::mediastack::reconcile,
            error_policy::<MediaStack>("MediaStack", attempts.clone()),
            ctx.clone(),
        )
        .for_each(|r| report(&attempts, r));
    let gateways = controller(cache.gateways.clone(), inputs.gateways)
        .graceful_shutdown_on(shutdown.clone())
        .run(
            reconcile::vpngateway::reconcile,
            error_policy::<VpnGateway>("VpnGateway", attempts.clone()),
            ctx.clone(),
        )
        .for_each(|r| report(&attempts, r));
    let routes = controller(cache.routes.clone(), inputs.routes)
        .graceful_shutdown_on(shutdown.clone())
        .run(
            reconcile::ingressroute::reconcile,
            error_policy::<IngressRoute>("IngressRoute", attempts.clone()),
            ctx.clone(),
        )
        .for_each(|r| report(&attempts, r));
    future::join3(stacks, gateways, routes).await;
}

/// A controller over the shared store `reader`, reconciling what `triggers`
/// name (no watch of its own).
fn controller<K>(reader: Store<K>, triggers: stores::Triggers<K>) -> Controller<K>
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + std::fmt::Debug + Unpin + Send + Sync,
{
    Controller::for_shared_stream(futures::stream::empty::<Arc<K>>(), reader)
        .reconcile_on(triggers.one)
        .reconcile_all_on(triggers.all)
}

/// Cluster-scoped children outlive their stack unless swept (no owner
/// reference): every `resync` (at most a minute), from the stores.
fn spawn_sweeper(client: &Client, cache: &Arc<Cache>, settings: &Settings, stop: &Stop) {
    let (client, cache, watched) = (client.clone(), cache.clone(), settings.namespace.clone());
    let every = settings.resync.min(Duration::from_secs(60));
    let stopped = stop.stopped();
    tokio::spawn(async move {
        cache.wait_ready().await;
        let sweep = async {
            loop {
                match reconcile::mediastack::sweep_cluster_children(
                    &client,
                    &cache,
                    watched.as_deref(),
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
                tokio::time::sleep(every).await;
            }
        };
        tokio::select! {
            _ = sweep => {}
            _ = stopped => {}
        }
    });
}

/// Consecutive failures per object (`namespace/name`), for the backoff; a
/// success clears the count.
type Attempts = Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>;

fn report<K, E>(
    attempts: &Attempts,
    r: Result<(ObjectRef<K>, Action), kube::runtime::controller::Error<E, watcher::Error>>,
) -> future::Ready<()>
where
    K: kube::Resource,
    K::DynamicType: Eq + std::hash::Hash + Clone,
    E: std::error::Error + 'static,
{
    use kube::runtime::controller::Error as CError;
    match r {
        Ok((o, _)) => {
            if let Ok(mut m) = attempts.lock() {
                m.remove(&format!("{}/{}", o.namespace.unwrap_or_default(), o.name));
            }
        }
        // A trigger for an object deleted meanwhile: nothing to do.
        Err(CError::ObjectNotFound(o)) => debug!(object = %o, "not reconciled: gone"),
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
