//! The wiring task: runs the links of every MediaStack beside the reconcile.
//!
//! [`spawn`] starts one tokio task that never blocks the controllers: it
//! reads the stacks from the controller's [`Store`], and for each stack runs
//! a *pass* in a task of its own (at most one per stack at a time). A pass
//! attempts every link of `spec.wiring` whose two apps are enabled and Ready
//! (`status.apps[].ready`, written by the reconcile), through the apps' own
//! APIs with the client's timeouts and bounded retries ([`ArrClient`]), then
//! writes `status.links[]` and the `Wired` condition with its own
//! server-side-apply field manager ([`FIELD_MANAGER`]) and publishes an event
//! for each link that changed state. The next pass of a stack comes after
//! [`RunnerConfig::connected_period`] when every link is Connected,
//! [`RunnerConfig::pending_period`] while an end is not Ready, and an
//! exponential backoff (from [`RunnerConfig::min_backoff`] to
//! [`RunnerConfig::max_backoff`]) after a failure; at once when the stack's
//! `metadata.generation` changes (a switch turned on or off).
//!
//! A failed link is reported, never an error of the stack: the `Wired`
//! condition is separate from the kstatus trio, which the reconcile owns.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::arr::{Arr, QbittorrentTarget};
use super::prowlarr::ArrTarget;
use super::secrets::{self, CredentialError};
use super::{ApiKey, App, ArrClient, ClientConfig, Endpoint, LinkResult, LinkState, flow};
use crate::api::mediastack::{LinkStatus, MediaStack, MediaStackSpec, MediaStackStatus};

/// Field manager of the wiring task's status writes: it owns
/// `status.links` and the `Wired` entry of `status.conditions`, nothing else.
pub const FIELD_MANAGER: &str = "mediastack-operator-wiring";

/// One link the operator runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Link {
    /// Sonarr/Radarr -> qBittorrent: the download client `mediastack`.
    DownloadClient(ArrKind),
    /// Sonarr/Radarr: its root folder (a link of the app to itself).
    RootFolder(ArrKind),
    /// Prowlarr -> Sonarr/Radarr: the application `mediastack-<arr>`.
    ProwlarrApplication(ArrKind),
    /// qBittorrent: categories and the default save path (to itself).
    QbittorrentCategories,
}

/// [`Arr`] with an order (for sorted link lists).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArrKind {
    Sonarr,
    Radarr,
}

impl ArrKind {
    fn arr(self) -> Arr {
        match self {
            ArrKind::Sonarr => Arr::Sonarr,
            ArrKind::Radarr => Arr::Radarr,
        }
    }
    fn app(self) -> App {
        self.arr().app()
    }
}

impl Link {
    /// `(from, to)` as in `status.links[]`.
    pub fn ends(self) -> (App, App) {
        match self {
            Link::DownloadClient(a) => (a.app(), App::Qbittorrent),
            Link::RootFolder(a) => (a.app(), a.app()),
            Link::ProwlarrApplication(a) => (App::Prowlarr, a.app()),
            Link::QbittorrentCategories => (App::Qbittorrent, App::Qbittorrent),
        }
    }
    /// Apps whose API key the operator needs for this link.
    pub fn keys(self) -> Vec<App> {
        match self {
            Link::DownloadClient(a) | Link::RootFolder(a) => vec![a.app()],
            Link::ProwlarrApplication(a) => vec![App::Prowlarr, a.app()],
            Link::QbittorrentCategories => Vec::new(),
        }
    }
    /// The app whose API the operator calls for this link.
    pub fn called(self) -> App {
        match self {
            Link::DownloadClient(a) | Link::RootFolder(a) => a.app(),
            Link::ProwlarrApplication(_) => App::Prowlarr,
            Link::QbittorrentCategories => App::Qbittorrent,
        }
    }
    /// Whether it needs qBittorrent's WebUI login.
    fn needs_qbittorrent_login(self) -> bool {
        matches!(self, Link::DownloadClient(_) | Link::QbittorrentCategories)
    }
}

fn app_enabled(spec: &MediaStackSpec, app: App) -> bool {
    spec.apps.get(app.as_str()).is_some_and(|a| a.enabled)
}

/// The links `spec` asks for: `spec.wiring.enabled`, the link's switch, and
/// both of its apps enabled. Sorted, without duplicates.
pub fn wanted_links(spec: &MediaStackSpec) -> Vec<Link> {
    let w = &spec.wiring;
    if !w.enabled {
        return Vec::new();
    }
    let mut out = Vec::new();
    for a in [ArrKind::Sonarr, ArrKind::Radarr] {
        if w.download_clients {
            out.push(Link::DownloadClient(a));
        }
        if w.root_folders {
            out.push(Link::RootFolder(a));
        }
        if w.prowlarr_applications {
            out.push(Link::ProwlarrApplication(a));
        }
    }
    if w.qbittorrent_categories {
        out.push(Link::QbittorrentCategories);
    }
    out.retain(|l| {
        let (from, to) = l.ends();
        app_enabled(spec, from) && app_enabled(spec, to)
    });
    out.sort();
    out
}

/// Whether a wanted link needs `app`'s API key (so the key Secret is
/// generated and the app is given the key even without monitoring).
pub fn needs_api_key(spec: &MediaStackSpec, app: &str) -> bool {
    wanted_links(spec)
        .iter()
        .any(|l| l.keys().iter().any(|k| k.as_str() == app))
}

/// Whether a wanted link has the operator call `app`'s API (so a
/// NetworkPolicy in front of `app` must admit the operator).
pub fn calls_app(spec: &MediaStackSpec, app: &str) -> bool {
    wanted_links(spec)
        .iter()
        .any(|l| l.called().as_str() == app)
}

/// Where the operator reaches a stack's apps, and how they name each other.
pub trait Addressing: Send + Sync {
    /// Base URL of `app`'s API for the operator's own calls.
    fn base(&self, namespace: &str, stack: &str, app: App) -> String;
}

/// In-cluster addressing: the app's Service `<stack>-<app>` in the stack's
/// namespace, on the app's web port.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClusterAddressing;

impl Addressing for ClusterAddressing {
    fn base(&self, namespace: &str, stack: &str, app: App) -> String {
        format!("http://{stack}-{app}.{namespace}.svc:{}", port(app))
    }
}

fn port(app: App) -> u16 {
    crate::catalog::app(app.as_str()).map_or(80, |a| a.port)
}

/// How one app names another in its own settings: the Service's short name
/// (the apps run in the stack's namespace) and the web port.
pub fn service_endpoint(stack: &str, app: App) -> Endpoint {
    Endpoint::new(format!("{stack}-{app}"), port(app))
}

/// The credentials one pass found. A missing one fails only the links that
/// need it.
#[derive(Debug, Default)]
pub struct Credentials {
    pub keys: BTreeMap<&'static str, Result<ApiKey, String>>,
    pub qbittorrent: Option<Result<(String, String), String>>,
}

impl Credentials {
    fn key(&self, app: App) -> Result<ApiKey, String> {
        self.keys
            .get(app.as_str())
            .cloned()
            .unwrap_or_else(|| Err(format!("no API key for {app}")))
    }
}

/// Reads what `links` need from the stack's Secrets.
pub async fn credentials(
    secrets: &Api<Secret>,
    stack: &str,
    spec: &MediaStackSpec,
    links: &[Link],
) -> Credentials {
    let mut out = Credentials::default();
    for app in links.iter().flat_map(|l| l.keys()) {
        if out.keys.contains_key(app.as_str()) {
            continue;
        }
        let key = secrets::api_key(secrets, stack, spec, app.as_str())
            .await
            .map_err(|e| describe(app, e));
        out.keys.insert(app.as_str(), key);
    }
    if links.iter().any(|l| l.needs_qbittorrent_login()) {
        out.qbittorrent = Some(
            secrets::qbittorrent_login(secrets, stack)
                .await
                .map_err(|e| match e {
                    CredentialError::Missing(s) => format!(
                        "qBittorrent's WebUI login Secret {s} does not exist (the operator creates it when qBittorrent runs behind a VpnGateway)"
                    ),
                    other => other.to_string(),
                }),
        );
    }
    out
}

fn describe(app: App, e: CredentialError) -> String {
    format!("{app}'s API key: {e}")
}

/// Everything a pass over one stack needs besides the network.
pub struct PassInputs<'a> {
    pub namespace: &'a str,
    pub stack: &'a str,
    pub links: &'a [Link],
    /// Apps whose Deployment is Ready.
    pub ready: &'a [App],
    pub credentials: &'a Credentials,
    pub addressing: &'a dyn Addressing,
    pub client: &'a ClientConfig,
}

/// Runs every link of a pass: Pending when an end is not Ready, else the
/// link's flow. Never fails as a whole.
pub async fn attempt(inputs: &PassInputs<'_>) -> Vec<LinkResult> {
    let mut out = Vec::with_capacity(inputs.links.len());
    for link in inputs.links {
        let (from, to) = link.ends();
        let waiting: Vec<String> = [from, to]
            .into_iter()
            .filter(|a| !inputs.ready.contains(a))
            .map(|a| a.to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !waiting.is_empty() {
            out.push(LinkResult::pending(
                from,
                to,
                format!("waiting for {} to be Ready", waiting.join(" and ")),
            ));
            continue;
        }
        out.push(run_link(*link, inputs).await);
    }
    out
}

fn client_for(inputs: &PassInputs<'_>, app: App, key: Option<ApiKey>) -> Result<ArrClient, String> {
    let base = inputs.addressing.base(inputs.namespace, inputs.stack, app);
    ArrClient::new(&base, key, inputs.client.clone()).map_err(|e| e.to_string())
}

async fn run_link(link: Link, inputs: &PassInputs<'_>) -> LinkResult {
    let (from, to) = link.ends();
    let creds = inputs.credentials;
    let qbit_login = || -> Result<(String, String), String> {
        creds
            .qbittorrent
            .clone()
            .unwrap_or_else(|| Err("no qBittorrent login".into()))
    };
    let result = async {
        match link {
            Link::DownloadClient(a) => {
                let key = creds.key(a.app())?;
                let (username, password) = qbit_login()?;
                let client = client_for(inputs, a.app(), Some(key))?;
                let target = QbittorrentTarget {
                    endpoint: service_endpoint(inputs.stack, App::Qbittorrent),
                    username,
                    password,
                };
                Ok(flow::download_client(&client, a.arr(), &target)
                    .await
                    .result)
            }
            Link::RootFolder(a) => {
                let client = client_for(inputs, a.app(), Some(creds.key(a.app())?))?;
                Ok(flow::root_folder(&client, a.arr()).await.result)
            }
            Link::ProwlarrApplication(a) => {
                let prowlarr_key = creds.key(App::Prowlarr)?;
                let arr_key = creds.key(a.app())?;
                let client = client_for(inputs, App::Prowlarr, Some(prowlarr_key))?;
                let target = ArrTarget {
                    arr: a.arr(),
                    endpoint: service_endpoint(inputs.stack, a.app()),
                    api_key: arr_key.expose().to_string(),
                };
                let prowlarr = service_endpoint(inputs.stack, App::Prowlarr);
                Ok(flow::prowlarr_application(&client, &prowlarr, &target)
                    .await
                    .result)
            }
            Link::QbittorrentCategories => {
                let (username, password) = qbit_login()?;
                let client = client_for(inputs, App::Qbittorrent, None)?;
                Ok(flow::qbittorrent(&client, &username, &password)
                    .await
                    .result)
            }
        }
    }
    .await;
    result.unwrap_or_else(|message: String| LinkResult::failed(from, to, message))
}

/// The status a pass writes, and what changed since the last one.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusUpdate {
    pub links: Vec<LinkStatus>,
    /// `None` when no link is wanted: the task's entries are removed.
    pub wired: Option<Condition>,
    /// Links whose state changed (new results), for events.
    pub changed: Vec<LinkResult>,
    /// Whether anything differs from the stored status (besides timestamps).
    pub differs: bool,
}

fn state_str(s: LinkState) -> &'static str {
    match s {
        LinkState::Connected => "Connected",
        LinkState::Pending => "Pending",
        LinkState::Failed => "Failed",
    }
}

/// The `Wired` condition for `results`: True when every link is Connected;
/// otherwise False with reason `LinkFailed` (any failed) or `Pending`,
/// naming the links that are not connected.
pub fn wired_condition(results: &[LinkResult]) -> (bool, &'static str, String) {
    let failed: Vec<&LinkResult> = results
        .iter()
        .filter(|r| r.state == LinkState::Failed)
        .collect();
    let pending: Vec<&LinkResult> = results
        .iter()
        .filter(|r| r.state == LinkState::Pending)
        .collect();
    let names = |rs: &[&LinkResult]| {
        rs.iter()
            .map(|r| format!("{} -> {}", r.from, r.to))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !failed.is_empty() {
        (
            false,
            "LinkFailed",
            format!("failed: {} (retried)", names(&failed)),
        )
    } else if !pending.is_empty() {
        (false, "Pending", format!("pending: {}", names(&pending)))
    } else {
        (
            true,
            "Connected",
            format!("{} links connected", results.len()),
        )
    }
}

/// Builds the status of a pass from the stored status (for transition times
/// and changes) and the new results.
pub fn status_update(
    old: Option<&MediaStackStatus>,
    results: &[LinkResult],
    generation: Option<i64>,
    now: Timestamp,
) -> StatusUpdate {
    let old_links: &[LinkStatus] = old.map_or(&[], |s| s.links.as_slice());
    let old_wired = old.and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == super::WIRED_CONDITION)
    });
    let mut changed = Vec::new();
    let links: Vec<LinkStatus> = results
        .iter()
        .map(|r| {
            let (from, to) = (r.from.to_string(), r.to.to_string());
            let state = state_str(r.state).to_string();
            let prev = old_links.iter().find(|l| l.from == from && l.to == to);
            let last_transition_time = match prev {
                Some(p) if p.state == state => p.last_transition_time.clone(),
                _ => {
                    changed.push(r.clone());
                    Some(Time(now))
                }
            };
            LinkStatus {
                from,
                to,
                state,
                message: r.message.clone(),
                last_transition_time,
            }
        })
        .collect();
    let wired = (!results.is_empty()).then(|| {
        let (ok, reason, message) = wired_condition(results);
        let status = if ok { "True" } else { "False" }.to_string();
        Condition {
            last_transition_time: match old_wired {
                Some(o) if o.status == status => o.last_transition_time.clone(),
                _ => Time(now),
            },
            message,
            observed_generation: generation,
            reason: reason.into(),
            status,
            type_: super::WIRED_CONDITION.into(),
        }
    });
    let same_links = old_links.len() == links.len()
        && links.iter().zip(old_links).all(|(a, b)| {
            (&a.from, &a.to, &a.state, &a.message) == (&b.from, &b.to, &b.state, &b.message)
        });
    let same_wired = match (&wired, old_wired) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            (&a.status, &a.reason, &a.message, a.observed_generation)
                == (&b.status, &b.reason, &b.message, b.observed_generation)
        }
        _ => false,
    };
    StatusUpdate {
        links,
        wired,
        changed,
        differs: !(same_links && same_wired),
    }
}

/// Timing of the task.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// How often the task looks at the store for passes that are due.
    pub tick: Duration,
    /// Next pass when every link is Connected.
    pub connected_period: Duration,
    /// Next pass while an end is not Ready.
    pub pending_period: Duration,
    /// Backoff after a failed pass: doubles per failed pass in a row.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Timeouts and retries of each call to an app.
    pub client: ClientConfig,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(5),
            connected_period: Duration::from_secs(600),
            pending_period: Duration::from_secs(15),
            min_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(600),
            client: ClientConfig::default(),
        }
    }
}

/// Delay before the next pass of a stack, given its results and how many
/// passes in a row (this one included) had a failed link.
pub fn next_delay(results: &[LinkResult], failures_in_row: u32, cfg: &RunnerConfig) -> Duration {
    if results.iter().any(|r| r.state == LinkState::Failed) {
        let factor = 2u32.saturating_pow(failures_in_row.saturating_sub(1).min(16));
        cfg.min_backoff.saturating_mul(factor).min(cfg.max_backoff)
    } else if results.iter().any(|r| r.state == LinkState::Pending) {
        cfg.pending_period
    } else {
        cfg.connected_period
    }
}

/// Apps of the stack whose Deployment is Ready, from its status.
pub fn ready_apps(stack: &MediaStack) -> Vec<App> {
    let status = stack.status.as_ref();
    [
        App::Sonarr,
        App::Radarr,
        App::Prowlarr,
        App::Jellyseerr,
        App::Jellyfin,
        App::Qbittorrent,
    ]
    .into_iter()
    .filter(|a| status.is_some_and(|s| s.apps.iter().any(|x| x.name == a.as_str() && x.ready)))
    .collect()
}

/// Shared parts of the task.
struct Shared {
    client: kube::Client,
    recorder: Recorder,
    addressing: Arc<dyn Addressing>,
    config: RunnerConfig,
}

/// One pass over `stack`: returns its results (for the next delay).
async fn pass(shared: &Shared, stack: &MediaStack) -> Result<Vec<LinkResult>, kube::Error> {
    let (Some(ns), name) = (stack.namespace(), stack.name_any()) else {
        return Ok(Vec::new());
    };
    let spec = &stack.spec;
    let links = wanted_links(spec);
    let secrets: Api<Secret> = Api::namespaced(shared.client.clone(), &ns);
    let creds = credentials(&secrets, &name, spec, &links).await;
    let ready = ready_apps(stack);
    let results = attempt(&PassInputs {
        namespace: &ns,
        stack: &name,
        links: &links,
        ready: &ready,
        credentials: &creds,
        addressing: shared.addressing.as_ref(),
        client: &shared.config.client,
    })
    .await;
    let update = status_update(
        stack.status.as_ref(),
        &results,
        stack.metadata.generation,
        Timestamp::now(),
    );
    if update.differs {
        let api: Api<MediaStack> = Api::namespaced(shared.client.clone(), &ns);
        let patch = json!({
            "apiVersion": MediaStack::api_version(&()),
            "kind": MediaStack::kind(&()),
            "status": {
                "links": update.links,
                "conditions": update.wired.iter().collect::<Vec<_>>(),
            },
        });
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        for r in &update.changed {
            let (type_, reason) = match r.state {
                LinkState::Connected => (EventType::Normal, "LinkConnected"),
                LinkState::Failed => (EventType::Warning, "LinkFailed"),
                LinkState::Pending => continue,
            };
            let ev = Event {
                type_,
                reason: reason.into(),
                note: Some(format!("{} -> {}: {}", r.from, r.to, r.message)),
                action: format!("Wire-{}-{}", r.from, r.to),
                secondary: None,
            };
            if let Err(e) = shared.recorder.publish(&ev, &stack.object_ref(&())).await {
                warn!("cannot publish wiring event: {e}");
            }
        }
    }
    Ok(results)
}

/// Per-stack schedule.
#[derive(Debug, Default)]
struct Schedule {
    due: Option<tokio::time::Instant>,
    generation: Option<i64>,
    failures: u32,
    running: bool,
}

/// Starts the wiring task with the default timing and in-cluster addressing.
/// `runtime::run` calls it once the controllers start; it ends on `stop`.
pub fn spawn(
    client: kube::Client,
    stacks: Store<MediaStack>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(
        client,
        stacks,
        stop,
        Arc::new(ClusterAddressing),
        RunnerConfig::default(),
    ))
}

/// The task's loop (see the module docs).
pub async fn run(
    client: kube::Client,
    stacks: Store<MediaStack>,
    stop: impl Future<Output = ()> + Send + 'static,
    addressing: Arc<dyn Addressing>,
    config: RunnerConfig,
) {
    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let shared = Arc::new(Shared {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        addressing,
        config,
    });
    let mut schedule: HashMap<ObjectRef<MediaStack>, Schedule> = HashMap::new();
    let mut passes: JoinSet<(ObjectRef<MediaStack>, Option<Vec<LinkResult>>)> = JoinSet::new();
    let mut tick = tokio::time::interval(shared.config.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    info!("wiring task started");
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(done) = passes.join_next(), if !passes.is_empty() => {
                let Ok((key, results)) = done else { continue };
                let Some(s) = schedule.get_mut(&key) else { continue };
                s.running = false;
                let delay = match results {
                    Some(results) => {
                        if results.iter().any(|r| r.state == LinkState::Failed) {
                            s.failures = s.failures.saturating_add(1);
                        } else {
                            s.failures = 0;
                        }
                        next_delay(&results, s.failures, &shared.config)
                    }
                    // The status write failed: try again soon.
                    None => shared.config.pending_period,
                };
                s.due = Some(tokio::time::Instant::now() + delay);
            }
            _ = tick.tick() => {
                let now = tokio::time::Instant::now();
                let current = stacks.state();
                let keys: Vec<ObjectRef<MediaStack>> =
                    current.iter().map(|s| ObjectRef::from_obj(s.as_ref())).collect();
                schedule.retain(|k, _| keys.contains(k));
                for stack in current {
                    let key = ObjectRef::from_obj(stack.as_ref());
                    let s = schedule.entry(key.clone()).or_default();
                    if s.running {
                        continue;
                    }
                    let generation_changed = s.generation != stack.metadata.generation;
                    if !generation_changed && s.due.is_some_and(|d| d > now) {
                        continue;
                    }
                    if stack.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    s.generation = stack.metadata.generation;
                    s.running = true;
                    let shared = shared.clone();
                    passes.spawn(async move {
                        match pass(&shared, &stack).await {
                            Ok(r) => (key, Some(r)),
                            Err(e) => {
                                debug!(stack = %key, error = %e, "wiring status not written");
                                (key, None)
                            }
                        }
                    });
                }
            }
        }
    }
    passes.abort_all();
    info!("wiring task stopped");
}
