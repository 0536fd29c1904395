//! The status stage: pure. From what the apply stage did ([`Applied`]) and
//! the children as the reconcile observed them ([`Observed`]) it computes
//! the conditions (kstatus `Ready`/`Stalled`/`Reconciling` and the
//! resource's own), the app statuses, the Warning events to publish and the
//! requeue delay. No client: the tests below build the inputs by hand.
//! Writing the result is [`super::report`]'s job.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::children::Applied;
use crate::api::condition::{ConditionType, PortForwardingState, Reason};
use crate::api::mediastack::{AppStatus, CredentialStatus, MediaStackSpec};
use crate::api::{
    IngressRoute, IngressRouteStatus, MediaStack, MediaStackStatus, VpnGateway, VpnGatewayStatus,
};
use crate::render::meta::Parent;
use crate::render::{Inputs, route, vpn};

/// A condition to set, without its timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub type_: ConditionType,
    pub status: bool,
    pub reason: Reason,
    pub message: String,
}

impl Cond {
    pub fn new(
        type_: ConditionType,
        status: bool,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// A spec problem that stops the resource until the spec (or what it
/// references) changes: reported as `Stalled` with a Warning event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stall {
    pub reason: Reason,
    pub message: String,
}

impl Stall {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// An event the write stage publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Warning (a problem for the user) or Normal.
    pub warning: bool,
    pub reason: String,
    /// The recorder folds events with the same type, reason and action into
    /// one series that keeps the first note, so distinct situations need
    /// distinct actions.
    pub action: String,
    pub message: String,
}

impl Note {
    pub fn warning(reason: impl Into<String>, action: impl Into<String>, message: String) -> Self {
        Self {
            warning: true,
            reason: reason.into(),
            action: action.into(),
            message,
        }
    }
}

/// The status stage's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Report<S> {
    pub status: S,
    /// The status differs from the stored one (in anything but timestamps):
    /// only then is it written and are the events published.
    pub changed: bool,
    pub events: Vec<Note>,
    pub requeue: Duration,
}

/// The kstatus trio for a resource that is either done, in progress or stuck.
pub fn kstatus(
    ready: bool,
    stalled: Option<(Reason, &str)>,
    progressing: Option<(Reason, &str)>,
) -> Vec<Cond> {
    use ConditionType::{Ready, Reconciling, Stalled};
    let mut out = Vec::new();
    match (stalled, progressing) {
        (Some((reason, msg)), _) => {
            out.push(Cond::new(Ready, false, reason, msg));
            out.push(Cond::new(Stalled, true, reason, msg));
            out.push(Cond::new(Reconciling, false, reason, msg));
        }
        (None, Some((reason, msg))) if !ready => {
            out.push(Cond::new(Ready, false, reason, msg));
            out.push(Cond::new(Stalled, false, Reason::Progressing, ""));
            out.push(Cond::new(Reconciling, true, reason, msg));
        }
        _ => {
            out.push(Cond::new(
                Ready,
                true,
                Reason::Ready,
                "All resources are applied and ready",
            ));
            out.push(Cond::new(Stalled, false, Reason::Ready, ""));
            out.push(Cond::new(Reconciling, false, Reason::Ready, ""));
        }
    }
    out
}

/// Merges `wanted` into `existing`: `lastTransitionTime` is kept unless the
/// status flips; every condition gets `observedGeneration`.
pub fn merge(existing: &[Condition], wanted: &[Cond], generation: Option<i64>) -> Vec<Condition> {
    merge_at(existing, wanted, generation, Time(Timestamp::now()))
}

/// [`merge`] with the time of a transition given.
pub fn merge_at(
    existing: &[Condition],
    wanted: &[Cond],
    generation: Option<i64>,
    now: Time,
) -> Vec<Condition> {
    wanted
        .iter()
        .map(|w| {
            let status = if w.status { "True" } else { "False" }.to_string();
            let old = existing.iter().find(|c| c.type_ == w.type_.as_str());
            let last_transition_time = match old {
                Some(o) if o.status == status => o.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: w.type_.as_str().to_string(),
                status,
                reason: w.reason.as_str().to_string(),
                message: w.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// True when the conditions differ in anything but timestamps.
pub fn same(a: &[Condition], b: &[Condition]) -> bool {
    let key = |c: &Condition| {
        (
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
            c.observed_generation,
        )
    };
    let mut ka: Vec<_> = a.iter().map(key).collect();
    let mut kb: Vec<_> = b.iter().map(key).collect();
    ka.sort();
    kb.sort();
    ka == kb
}

/// Whether `type_` was already `True` with `reason` (so a Warning event for
/// it was already published).
pub fn was_true(conditions: &[Condition], type_: ConditionType, reason: Reason) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_.as_str() && c.status == "True" && c.reason == reason.as_str())
}

/// Whether `type_` was already `True` with exactly this message.
fn was_true_with(conditions: &[Condition], type_: ConditionType, message: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_.as_str() && c.status == "True" && c.message == message)
}

fn is_ready(conds: &[Cond]) -> bool {
    conds
        .iter()
        .any(|c| c.type_ == ConditionType::Ready && c.status)
}

// ---------------------------------------------------------------------------
// Observed children

/// The children as the reconcile observed them, by name.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub deployments: BTreeMap<String, Deployment>,
    pub daemonsets: BTreeMap<String, DaemonSet>,
}

impl Observed {
    fn deployment_ready(&self, name: &str) -> bool {
        self.deployments.get(name).is_some_and(deployment_ready)
    }
}

/// All replicas of the current generation ready, and not being deleted (a
/// Deployment deleted with foreground propagation keeps its last status
/// until its pods are gone: the app is going away, not running).
pub fn deployment_ready(d: &Deployment) -> bool {
    let want = d.spec.replicas.unwrap_or(1);
    let st = d.status.clone().unwrap_or_default();
    d.metadata.deletion_timestamp.is_none()
        && want > 0
        && st.ready_replicas.unwrap_or(0) >= want
        && st.updated_replicas.unwrap_or(0) >= want
        && st.observed_generation >= d.metadata.generation
}

/// A pod ready on every node it is scheduled to, of the current generation,
/// and not being deleted.
pub fn daemonset_ready(ds: &DaemonSet) -> bool {
    let st = ds.status.clone().unwrap_or_default();
    ds.metadata.deletion_timestamp.is_none()
        && st.desired_number_scheduled > 0
        && st.number_ready >= st.desired_number_scheduled
        && st.updated_number_scheduled.unwrap_or(0) >= st.desired_number_scheduled
        && st.observed_generation >= ds.metadata.generation
}

// ---------------------------------------------------------------------------
// MediaStack

/// How far a MediaStack's reconcile got.
#[derive(Debug)]
pub enum StackProgress {
    /// Stopped before anything was applied (a reference, the policy, the
    /// render or a claim): nothing written, no edge rendered.
    Stalled(Stall),
    /// Rendered and applied (perhaps with failures).
    Applied(Box<StackApplied>),
}

/// What a stack that reached the apply stage rendered and applied.
#[derive(Debug)]
pub struct StackApplied {
    /// The spec as rendered (auto Traefik resolved, policy applied).
    pub spec: MediaStackSpec,
    pub inputs: Inputs,
    /// Apps not started, with what they wait for.
    pub waiting: BTreeMap<String, String>,
    /// Service aliases left alone because their name is taken.
    pub alias_conflicts: Vec<String>,
    pub applied: Applied,
}

/// Everything the MediaStack status is computed from.
pub struct StackInput<'a> {
    pub stack: &'a MediaStack,
    pub parent: &'a Parent,
    pub observed: &'a Observed,
    pub progress: &'a StackProgress,
    /// The prometheus-operator CRDs are installed.
    pub monitoring_crds: bool,
    /// Safety-net resync period.
    pub resync: Duration,
}

/// The status stage of a MediaStack.
pub fn mediastack(input: &StackInput<'_>) -> Report<MediaStackStatus> {
    mediastack_at(input, Time(Timestamp::now()))
}

/// [`mediastack`] at a given time (for transitions).
pub fn mediastack_at(input: &StackInput<'_>, now: Time) -> Report<MediaStackStatus> {
    let StackInput {
        stack,
        parent,
        observed,
        progress,
        monitoring_crds,
        resync,
    } = *input;
    let done = match progress {
        StackProgress::Applied(d) => Some(d.as_ref()),
        StackProgress::Stalled(_) => None,
    };
    let spec = done.map_or(&stack.spec, |d| &d.spec);
    let empty = BTreeMap::new();
    let waiting = done.map_or(&empty, |d| &d.waiting);
    let rctx = route::RouteContext::for_stack(
        spec,
        done.is_some_and(|d| crate::render::tunnel::enabled(&d.spec, &d.inputs)),
    );
    let apps: Vec<AppStatus> = spec
        .apps
        .enabled()
        .map(|(app, app_spec)| {
            let d = observed.deployments.get(&parent.child_name(app.name));
            AppStatus {
                name: app.name.to_string(),
                ready: d.is_some_and(deployment_ready),
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
    let edge_cond = edge_condition(parent, observed, done);

    // A child the server refused stalls the stack like a broken reference.
    let stall = match progress {
        StackProgress::Stalled(s) => Some(s.clone()),
        StackProgress::Applied(d) => {
            let rejected: Vec<String> = d.applied.rejected().map(|f| f.describe()).collect();
            (!rejected.is_empty()).then(|| Stall::new(Reason::ApplyFailed, rejected.join("; ")))
        }
    };
    let applied = done.map(|d| &d.applied);
    let all_ready = ready_count == apps.len()
        && applied.is_none_or(|a| a.changes() == 0 && a.complete())
        && edge_cond.status;
    let (progress_reason, progress_msg) = progress_of(applied, waiting, &apps, edge_cond.status);
    let mut conds = kstatus(
        all_ready && stall.is_none(),
        stall.as_ref().map(|s| (s.reason, s.message.as_str())),
        Some((progress_reason, progress_msg.as_str())),
    );
    conds.push(monitoring_condition(spec, monitoring_crds));
    conds.push(edge_cond);
    let insecure = insecure_condition(parent, spec);
    conds.push(insecure.clone());
    let alias_cond = alias_condition(spec, done.map_or(&[][..], |d| &d.alias_conflicts));
    conds.extend(alias_cond.clone());

    let old = stack.status.clone().unwrap_or_default();
    let dashboard_url = apps
        .iter()
        .find(|a| a.name == crate::render::dashboard::APP)
        .and_then(|a| a.urls.first().cloned());
    let new = MediaStackStatus {
        observed_generation: stack.metadata.generation,
        conditions: merge_at(&old.conditions, &conds, stack.metadata.generation, now),
        apps_ready: Some(format!("{ready_count}/{}", apps.len())),
        apps,
        traefik: done.map(|d| {
            if d.spec.ingress.traefik.is_managed() {
                "managed".to_string()
            } else {
                "existing".to_string()
            }
        }),
        dashboard_url,
        credentials: credentials(parent, spec),
        // `links` and the `Wired` condition belong to the wiring task (its
        // own field manager): never sent here, so never taken over.
        links: Vec::new(),
    };
    let changed = !(old.observed_generation == new.observed_generation && status_same(&old, &new));

    let mut events = Vec::new();
    if let Some(d) = done.filter(|d| d.applied.changes() > 0) {
        events.push(Note {
            warning: false,
            reason: "Applied".into(),
            action: "Reconcile".into(),
            message: format!(
                "Applied {} changes; pruned {}",
                d.applied.changes(),
                d.applied.pruned.len()
            ),
        });
    }
    if changed {
        if let Some(s) = &stall {
            // A refused child is reported again when another child (or
            // another message) is refused; other stalls once per reason.
            let (published, action) = if s.reason == Reason::ApplyFailed {
                (
                    was_true_with(&old.conditions, ConditionType::Stalled, &s.message),
                    "Apply",
                )
            } else {
                (
                    was_true(&old.conditions, ConditionType::Stalled, s.reason),
                    "Reconcile",
                )
            };
            if !published {
                events.push(Note::warning(s.reason.as_str(), action, s.message.clone()));
            }
        }
        if let Some(d) = done {
            // Transient failures are not stalls, but the user sees them too.
            for f in d.applied.failed.iter().filter(|f| !f.rejected) {
                events.push(Note::warning(
                    Reason::ApplyFailed.as_str(),
                    "Apply",
                    f.describe(),
                ));
            }
        }
        if insecure.status
            && !was_true_with(&old.conditions, ConditionType::Insecure, &insecure.message)
        {
            events.push(Note::warning(
                insecure.reason.as_str(),
                "Expose",
                insecure.message.clone(),
            ));
        }
        if let Some(alias) = alias_cond.as_ref().filter(|c| c.status)
            && !was_true_with(
                &old.conditions,
                ConditionType::ServiceAliasConflict,
                &alias.message,
            )
        {
            events.push(Note::warning(
                ConditionType::ServiceAliasConflict.as_str(),
                "Reconcile",
                alias.message.clone(),
            ));
        }
        for (app, w) in waiting {
            let before = old
                .apps
                .iter()
                .find(|a| &a.name == app)
                .and_then(|a| a.waiting_for.as_ref());
            if before != Some(w) {
                // One series per app: its waits are not folded into another app's.
                events.push(Note::warning(
                    "Waiting",
                    format!("Start-{app}"),
                    format!("{app} is not started: it waits for {w}"),
                ));
            }
        }
    }

    let requeue = if stall.is_some() || !waiting.is_empty() {
        Duration::from_secs(30)
    } else if !is_ready(&conds) {
        Duration::from_secs(60)
    } else if spec.monitoring.enabled && !monitoring_crds {
        // CRDs are not watched: look again soon so monitoring starts
        // shortly after they are installed, without a restart.
        resync.min(Duration::from_secs(30))
    } else {
        resync
    };
    Report {
        status: new,
        changed,
        events,
        requeue,
    }
}

fn status_same(old: &MediaStackStatus, new: &MediaStackStatus) -> bool {
    // `Wired` belongs to the wiring task (its own field manager): never
    // rendered here, so never a difference.
    let own: Vec<Condition> = old
        .conditions
        .iter()
        .filter(|c| c.type_ != ConditionType::Wired.as_str())
        .cloned()
        .collect();
    same(&own, &new.conditions)
        && old.apps == new.apps
        && old.apps_ready == new.apps_ready
        && old.traefik == new.traefik
        && old.dashboard_url == new.dashboard_url
        && old.credentials == new.credentials
}

/// Reason and message of `Reconciling` while the stack is not ready.
fn progress_of(
    applied: Option<&Applied>,
    waiting: &BTreeMap<String, String>,
    apps: &[AppStatus],
    edge_ready: bool,
) -> (Reason, String) {
    if let Some(a) = applied
        && !a.complete()
    {
        let mut parts: Vec<String> = a
            .failed
            .iter()
            .filter(|f| !f.rejected)
            .map(|f| f.describe())
            .collect();
        parts.extend(a.prune_failed.iter().map(|m| format!("cannot prune: {m}")));
        if !parts.is_empty() {
            let reason = if a.failed.iter().any(|f| !f.rejected) {
                Reason::ApplyFailed
            } else {
                Reason::PruneFailed
            };
            return (reason, format!("{}; retrying", parts.join("; ")));
        }
    }
    if !waiting.is_empty() {
        let msg = waiting
            .iter()
            .map(|(a, w)| format!("{a} waits for {w}"))
            .collect::<Vec<_>>()
            .join("; ");
        let reason = if waiting.values().any(|w| w.starts_with("VpnGateway")) {
            Reason::VpnUnavailable
        } else {
            Reason::Progressing
        };
        return (reason, msg);
    }
    let mut not_ready: Vec<_> = apps
        .iter()
        .filter(|a| !a.ready)
        .map(|a| a.name.as_str())
        .collect();
    if !edge_ready {
        not_ready.push("the edge");
    }
    (
        Reason::Progressing,
        format!(
            "Waiting for {} to become ready",
            if not_ready.is_empty() {
                "changes to settle".to_string()
            } else {
                not_ready.join(", ")
            }
        ),
    )
}

fn monitoring_condition(spec: &MediaStackSpec, monitoring_crds: bool) -> Cond {
    let t = ConditionType::MonitoringReady;
    if !spec.monitoring.enabled {
        Cond::new(
            t,
            true,
            Reason::Disabled,
            "spec.monitoring.enabled is false",
        )
    } else if monitoring_crds {
        Cond::new(
            t,
            true,
            Reason::Applied,
            "ServiceMonitors, alert rules and dashboards are applied",
        )
    } else {
        Cond::new(
            t,
            false,
            Reason::CrdNotInstalled,
            "The monitoring.coreos.com CRDs are not installed; monitoring objects are skipped until they are",
        )
    }
}

/// `ServiceAliasConflict`, when any app asks for aliases.
fn alias_condition(spec: &MediaStackSpec, conflicts: &[String]) -> Option<Cond> {
    let t = ConditionType::ServiceAliasConflict;
    spec.apps
        .enabled()
        .any(|(_, a)| !a.service_aliases.is_empty())
        .then(|| {
            if conflicts.is_empty() {
                Cond::new(
                    t,
                    false,
                    Reason::NoConflict,
                    "Every service alias is served",
                )
            } else {
                Cond::new(t, true, Reason::ServiceExists, conflicts.join("; "))
            }
        })
}

/// The generated login Secrets the user reads: qBittorrent's WebUI login,
/// Dozzle's.
pub fn credentials(parent: &Parent, spec: &MediaStackSpec) -> Vec<CredentialStatus> {
    let mut out: Vec<_> = spec
        .apps
        .enabled()
        .filter(|(app, s)| app.binds_to_tunnel && s.vpn.is_some())
        .map(|(app, _)| CredentialStatus {
            app: app.name.to_string(),
            secret_name: vpn::webui_secret_name(parent, app.name),
        })
        .collect();
    out.extend(
        crate::render::dozzle::login_secret(parent, spec).map(|s| CredentialStatus {
            app: crate::render::dozzle::APP.to_string(),
            secret_name: s.name,
        }),
    );
    out
}

/// The parts of the edge `EdgeReady` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EdgePart {
    Traefik,
    Cloudflared,
    Fail2ban,
}

impl EdgePart {
    fn name(self) -> &'static str {
        match self {
            Self::Traefik => "Traefik",
            Self::Cloudflared => "cloudflared",
            Self::Fail2ban => "fail2ban",
        }
    }

    fn not_ready(self) -> Reason {
        match self {
            Self::Traefik => Reason::TraefikNotReady,
            Self::Cloudflared => Reason::CloudflaredNotReady,
            Self::Fail2ban => Reason::Fail2banNotReady,
        }
    }
}

/// `EdgeReady`: the stack's Traefik (when managed), cloudflared (when it
/// runs) and fail2ban (when enabled) have all their pods ready. False
/// (`NotRendered`) while the stack is stalled before rendering.
pub fn edge_condition(parent: &Parent, observed: &Observed, done: Option<&StackApplied>) -> Cond {
    let t = ConditionType::EdgeReady;
    let Some(done) = done else {
        return Cond::new(
            t,
            false,
            Reason::NotRendered,
            "the edge is not rendered while the stack is stalled",
        );
    };
    let spec = &done.spec;
    let managed = spec.ingress.traefik.is_managed();
    let mut parts: Vec<(EdgePart, bool)> = Vec::new();
    if managed {
        parts.push((
            EdgePart::Traefik,
            observed.deployment_ready(&crate::render::traefik::name(parent)),
        ));
    }
    if crate::render::tunnel::enabled(spec, &done.inputs) {
        parts.push((
            EdgePart::Cloudflared,
            observed.deployment_ready(&crate::render::tunnel::name(parent)),
        ));
    }
    if crate::render::fail2ban::enabled(spec) && managed {
        parts.push((
            EdgePart::Fail2ban,
            observed
                .daemonsets
                .get(&crate::render::fail2ban::name(parent))
                .is_some_and(daemonset_ready),
        ));
    }
    let waiting: Vec<EdgePart> = parts.iter().filter(|p| !p.1).map(|p| p.0).collect();
    let names: Vec<&str> = parts.iter().map(|p| p.0.name()).collect();
    let traefik = if managed {
        "the stack's Traefik"
    } else {
        "an existing Traefik (not managed)"
    };
    if let Some(first) = waiting.first() {
        Cond::new(
            t,
            false,
            first.not_ready(),
            format!(
                "not ready yet: {}; routes served by {traefik}",
                waiting
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    } else {
        Cond::new(
            t,
            true,
            if managed {
                Reason::Ready
            } else {
                Reason::ExistingTraefik
            },
            if names.is_empty() {
                format!("routes served by {traefik}")
            } else {
                format!("{} ready; routes served by {traefik}", names.join(", "))
            },
        )
    }
}

/// `Insecure`: True, naming the apps, when an app is served without a login
/// where one is expected (a public app without `expose.auth`, Dozzle with
/// `expose.allowAnonymous`).
pub fn insecure_condition(parent: &Parent, spec: &MediaStackSpec) -> Cond {
    let t = ConditionType::Insecure;
    let apps = route::insecure_apps(parent, spec);
    if apps.is_empty() {
        return Cond::new(
            t,
            false,
            Reason::Secure,
            "Every public app and Dozzle are behind a login",
        );
    }
    let public = apps.iter().any(|a| {
        spec.apps
            .get(a)
            .and_then(|s| s.expose.as_ref())
            .is_some_and(|e| e.public)
    });
    let reason = if public {
        Reason::PublicWithoutAuth
    } else {
        Reason::DozzleWithoutAuth
    };
    Cond::new(
        t,
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

// ---------------------------------------------------------------------------
// IngressRoute

/// Everything an IngressRoute's status is computed from.
pub struct RouteInput<'a> {
    pub route: &'a IngressRoute,
    pub hosts: Vec<String>,
    pub urls: Vec<String>,
    /// What stops or delays the route (a missing Service or auth Secret
    /// only delays it: `Reconciling`, not `Stalled`).
    pub problem: Option<Stall>,
    /// `Insecure` when the route has warnings.
    pub extra: Vec<Cond>,
    pub applied: &'a Applied,
    pub resync: Duration,
}

/// Problems of a route expected to resolve by themselves (apps start
/// later, a Secret is created next): `Reconciling`, not `Stalled`.
fn route_waits(reason: Reason) -> bool {
    matches!(reason, Reason::ServiceNotFound | Reason::AuthSecretNotFound)
}

/// The status stage of an IngressRoute.
pub fn ingressroute(input: &RouteInput<'_>) -> Report<IngressRouteStatus> {
    let route = input.route;
    let applied = input.applied;
    let rejected: Vec<String> = applied.rejected().map(|f| f.describe()).collect();
    // A refused Traefik object stalls the route unless it is stalled already.
    let problem = match &input.problem {
        Some(p) if !route_waits(p.reason) => Some(p.clone()),
        _ if !rejected.is_empty() => Some(Stall::new(Reason::ApplyFailed, rejected.join("; "))),
        p => p.clone(),
    };
    let retrying = progress_of(Some(applied), &BTreeMap::new(), &[], true);
    let mut conds = match &problem {
        Some(p) if route_waits(p.reason) => {
            kstatus(false, None, Some((p.reason, p.message.as_str())))
        }
        Some(p) => kstatus(false, Some((p.reason, p.message.as_str())), None),
        None if !applied.complete() => {
            kstatus(false, None, Some((retrying.0, retrying.1.as_str())))
        }
        None => kstatus(true, None, None),
    };
    if input.extra.is_empty() {
        conds.push(Cond::new(
            ConditionType::Insecure,
            false,
            Reason::Secure,
            "The route has auth or is not public",
        ));
    } else {
        conds.extend(input.extra.iter().cloned());
    }
    let old = route.status.clone().unwrap_or_default();
    let new = IngressRouteStatus {
        observed_generation: route.metadata.generation,
        conditions: merge(&old.conditions, &conds, route.metadata.generation),
        hosts: input.hosts.clone(),
        urls: input.urls.clone(),
    };
    let changed = !(old.observed_generation == new.observed_generation
        && same(&old.conditions, &new.conditions)
        && old.hosts == new.hosts
        && old.urls == new.urls);
    let mut events = Vec::new();
    if changed {
        // A missing auth Secret is not stalled (it may be created next) but
        // is the user's to fix: it gets its Warning too.
        for c in conds.iter().filter(|c| {
            c.status
                && (c.type_ == ConditionType::Stalled
                    || c.type_ == ConditionType::Insecure
                    || (c.type_ == ConditionType::Reconciling
                        && c.reason == Reason::AuthSecretNotFound))
        }) {
            let published = if c.reason == Reason::ApplyFailed {
                was_true_with(&old.conditions, c.type_, &c.message)
            } else {
                was_true(&old.conditions, c.type_, c.reason)
            };
            if !published {
                events.push(Note::warning(
                    c.reason.as_str(),
                    "Reconcile",
                    c.message.clone(),
                ));
            }
        }
        for f in applied.failed.iter().filter(|f| !f.rejected) {
            events.push(Note::warning(
                Reason::ApplyFailed.as_str(),
                "Apply",
                f.describe(),
            ));
        }
    }
    Report {
        status: new,
        changed,
        events,
        requeue: if problem.is_some() {
            Duration::from_secs(30)
        } else {
            input.resync
        },
    }
}

// ---------------------------------------------------------------------------
// VpnGateway

/// Everything a VpnGateway's status is computed from.
pub struct GatewayInput<'a> {
    pub gateway: &'a VpnGateway,
    /// Why the gateway cannot be used, if it cannot.
    pub invalid: Option<Stall>,
    /// `<stack>/<app>` of every app that uses the gateway, sorted.
    pub consumers: Vec<String>,
    /// `TunnelReady`, from the consumer pods' store.
    pub tunnel: Cond,
    pub resync: Duration,
}

/// The status stage of a VpnGateway.
pub fn vpngateway(input: &GatewayInput<'_>) -> Report<VpnGatewayStatus> {
    let gw = input.gateway;
    let pf = PortForwardingState::of(&gw.spec);
    let mut conds = match &input.invalid {
        None => kstatus(true, None, None),
        Some(inv) => kstatus(false, Some((inv.reason, inv.message.as_str())), None),
    };
    let t = ConditionType::PortForwarding;
    conds.push(match pf {
        PortForwardingState::Unsupported => Cond::new(
            t,
            false,
            pf.reason(),
            format!(
                "{:?} does not support port forwarding; no port is forwarded",
                gw.spec.provider
            ),
        ),
        PortForwardingState::Enabled => Cond::new(
            t,
            true,
            pf.reason(),
            "The forwarded port is set as the consumer's listen port",
        ),
        PortForwardingState::Disabled => {
            Cond::new(t, false, pf.reason(), "portForwarding.enabled is false")
        }
    });
    conds.push(input.tunnel.clone());
    let old = gw.status.clone().unwrap_or_default();
    let new = VpnGatewayStatus {
        observed_generation: gw.metadata.generation,
        conditions: merge(&old.conditions, &conds, gw.metadata.generation),
        consumers: input.consumers.clone(),
        port_forwarding: Some(pf.as_str().to_string()),
    };
    let changed = !(old.observed_generation == new.observed_generation
        && same(&old.conditions, &new.conditions)
        && old.consumers == new.consumers
        && old.port_forwarding == new.port_forwarding);
    let mut events = Vec::new();
    if changed
        && let Some(inv) = &input.invalid
        && !was_true(&old.conditions, ConditionType::Stalled, inv.reason)
    {
        let note = format!(
            "{}; consumers {} are held at 0 replicas (fail closed)",
            inv.message,
            if new.consumers.is_empty() {
                "(none)".to_string()
            } else {
                new.consumers.join(", ")
            }
        );
        events.push(Note::warning(inv.reason.as_str(), "Reconcile", note));
    }
    Report {
        status: new,
        changed,
        events,
        requeue: if input.invalid.is_none() {
            input.resync
        } else {
            Duration::from_secs(30)
        },
    }
}

#[cfg(test)]
mod tests;
