//! The stack's PrometheusRule: alerts scoped to its namespace and jobs, each
//! with a `summary` and a runbook-style `description` (what it means, what
//! to check, what to do).
//!
//! Sources: the stack's own scrape jobs, plus what kube-prometheus-stack
//! scrapes anyway: kube-state-metrics (`kube_*`) and the kubelet
//! (`kubelet_volume_stats_*`). Only alerts whose sources the spec enables
//! are rendered.

use serde_json::{Value, json};

use super::super::meta::Parent;
use super::super::{Child, RenderError};
use super::monitors::{GROUP, VERSION, metadata};
use super::promql::{deployment_pods, eq, one_of, re, vector};
use super::{Source, SourceKind, deployments, exporter, fail2ban_enabled, job, user_entry_points};
use crate::api::mediastack::MediaStackSpec;
use crate::catalog::{self, App};

/// Percentage of a volume in use above which `MediaStackVolumeFillingUp` fires.
const VOLUME_FULL_PERCENT: u32 = 85;
/// `MediaStackAuthFailuresSustained` fires above this many clients' worth
/// of failures: `AUTH_FAILURE_SOURCES × maxRetry` within `findTime`.
const AUTH_FAILURE_SOURCES: i32 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Severity {
    /// Act now: possible traffic outside the VPN.
    Critical,
    /// Something is broken and needs a look.
    Warning,
    /// Worth knowing; nothing is down.
    Info,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One alerting rule.
struct Alert {
    name: &'static str,
    /// The app or component an alert per source is about (label `source`).
    source: Option<&'static str>,
    expr: String,
    for_: &'static str,
    severity: Severity,
    summary: String,
    description: String,
}

/// The stack's PrometheusRule `<stack>-alerts`; `None` when nothing is
/// enabled that an alert could watch.
pub(super) fn prometheus_rule(
    parent: &Parent,
    spec: &MediaStackSpec,
    sources: &[Source],
) -> Result<Option<Child>, RenderError> {
    let ctx = Ctx::new(parent, spec);
    let groups: Vec<Value> = [
        ("apps", app_alerts(&ctx, sources)),
        ("downloads", download_alerts(&ctx, sources)),
        ("edge", edge_alerts(&ctx)),
        ("storage", storage_alerts(&ctx)),
    ]
    .into_iter()
    .filter(|(_, alerts)| !alerts.is_empty())
    .map(|(group, alerts)| {
        json!({
            "name": format!("mediastack-{}-{group}", parent.name),
            "rules": alerts.iter().map(|a| a.to_json(&parent.name)).collect::<Vec<_>>(),
        })
    })
    .collect();
    if groups.is_empty() {
        return Ok(None);
    }
    let name = parent.child_name("alerts");
    let metadata = metadata(
        parent,
        &name,
        "mediastack",
        &spec.monitoring.service_monitor_labels,
    )?;
    Child::custom(
        GROUP,
        VERSION,
        "PrometheusRule",
        "prometheusrules",
        json!({ "metadata": metadata, "spec": { "groups": groups } }),
    )
    .map(Some)
}

impl Alert {
    fn to_json(&self, stack: &str) -> Value {
        let mut labels = json!({ "severity": self.severity.as_str(), "mediastack": stack });
        if let Some(source) = self.source {
            labels["source"] = source.into();
        }
        json!({
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": labels,
            "annotations": { "summary": self.summary, "description": self.description },
        })
    }
}

/// What every alert of a stack needs: its names and scope.
struct Ctx<'a> {
    parent: &'a Parent,
    spec: &'a MediaStackSpec,
    ns: &'a str,
    stack: &'a str,
    /// `namespace="<ns>"`.
    in_ns: String,
    /// Regex of the stack's Deployments.
    deployments_re: String,
    /// Regex of the stack's pods.
    pods_re: String,
}

impl<'a> Ctx<'a> {
    fn new(parent: &'a Parent, spec: &'a MediaStackSpec) -> Self {
        let deployments = deployments(parent, spec);
        Self {
            parent,
            spec,
            ns: &parent.namespace,
            stack: &parent.name,
            in_ns: eq("namespace", &parent.namespace),
            deployments_re: if deployments.is_empty() {
                String::new()
            } else {
                one_of(&deployments)
            },
            pods_re: if deployments.is_empty() {
                String::new()
            } else {
                deployment_pods(&deployments)
            },
        }
    }

    /// `metric{namespace="<ns>", job="<stack>-<source>", extra...}`.
    fn of_job(&self, metric: &str, source: &str, extra: &[String]) -> String {
        let mut matchers = vec![self.in_ns.clone(), eq("job", &job(self.parent, source))];
        matchers.extend_from_slice(extra);
        vector(metric, &matchers)
    }

    /// Replaces `{ns}`, `{stack}` and the given placeholders. Go template
    /// actions (`{{ $labels.x }}`) are left alone.
    fn text(&self, template: &str, vars: &[(&str, &str)]) -> String {
        let mut out = template
            .replace("{ns}", self.ns)
            .replace("{stack}", self.stack);
        for (key, value) in vars {
            out = out.replace(&format!("{{{key}}}"), value);
        }
        out
    }
}

fn app_alerts(ctx: &Ctx, sources: &[Source]) -> Vec<Alert> {
    let mut out = Vec::new();
    if !ctx.deployments_re.is_empty() {
        let by = "max by (namespace, deployment)";
        let sel = [ctx.in_ns.clone(), re("deployment", &ctx.deployments_re)];
        out.push(Alert {
            name: "MediaStackAppUnavailable",
            source: None,
            expr: format!(
                "{by} ({})\n  > {by} ({})",
                vector("kube_deployment_spec_replicas", &sel),
                vector("kube_deployment_status_replicas_available", &sel),
            ),
            for_: "5m",
            severity: Severity::Warning,
            summary: "{{ $labels.deployment }} has been unavailable for 5 minutes".into(),
            description: ctx.text(
                "The Deployment {{ $labels.deployment }} of MediaStack {ns}/{stack} has fewer \
                 available replicas than it wants, so the app is down or not ready. Check the \
                 pods and their events (`kubectl -n {ns} get pods -l \
                 app.kubernetes.io/instance={stack}`, `kubectl -n {ns} describe pod <pod>`), the \
                 logs (`kubectl -n {ns} logs deploy/{{ $labels.deployment }} --all-containers`) \
                 and the MediaStack's status (`kubectl -n {ns} get mediastack {stack} -o yaml`). \
                 Usual causes: a failing readiness probe, a volume that cannot be mounted, an \
                 image that cannot be pulled, a missing Secret (API keys, VPN credentials). Fix \
                 the cause; Kubernetes restarts the pod by itself.",
                &[],
            ),
        });
    }
    if !sources.is_empty() {
        let jobs: Vec<String> = sources.iter().map(|s| job(ctx.parent, s.name)).collect();
        out.push(Alert {
            name: "MediaStackMetricsNotScraped",
            source: None,
            expr: format!(
                "absent({})",
                vector("up", &[ctx.in_ns.clone(), re("job", &one_of(&jobs))])
            ),
            for_: "15m",
            severity: Severity::Warning,
            summary: "Prometheus scrapes none of MediaStack {ns}/{stack}'s metrics endpoints"
                .replace("{ns}", ctx.ns)
                .replace("{stack}", ctx.stack),
            description: ctx.text(
                "Prometheus has no scrape target for any of the stack's ServiceMonitors, so \
                 every other metrics-based alert of this stack is blind. Prometheus only picks \
                 up monitors that match its serviceMonitorSelector in namespaces its \
                 serviceMonitorNamespaceSelector allows: with \
                 kube-prometheus-stack set spec.monitoring.serviceMonitorLabels to \
                 `release: <helm release>`, or install it with \
                 serviceMonitorSelectorNilUsesHelmValues=false. Check: `kubectl -n {ns} get \
                 servicemonitors -l mediastack.io/stack={stack} --show-labels` and \
                 Prometheus' Status > Targets page. The operator updates the monitors when the \
                 MediaStack changes; nothing needs a restart.",
                &[],
            ),
        });
    }
    for source in sources {
        match source.kind {
            SourceKind::Exportarr => out.push(exportarr_failing(ctx, source)),
            SourceKind::Qbittorrent => out.push(qbittorrent_exporter_failing(ctx, source)),
            SourceKind::Native { path } => out.push(target_down(
                ctx,
                source,
                Severity::Info,
                "15m",
                &format!(
                    "Prometheus cannot scrape {{title}}'s {path} on its http port. Jellyfin \
                     serves metrics only once they are enabled: set \
                     `<EnableMetrics>true</EnableMetrics>` in /config/config/system.xml (on the \
                     app's config volume) and restart it (`kubectl -n {{ns}} rollout restart \
                     deploy/{{stack}}-{{app}}`). If they are enabled, check that the app is up \
                     (MediaStackAppUnavailable). The app's availability is watched by \
                     MediaStackAppUnavailable; this alert only means its own metrics are missing."
                ),
            )),
            SourceKind::Traefik => out.push(target_down(
                ctx,
                source,
                Severity::Warning,
                "5m",
                "Prometheus cannot scrape Traefik's /metrics on the `traefik` entry point \
                 (Service {stack}-traefik, port traefik), so the request, error and \
                 failed-login figures are blind. Check Traefik's pods and log (`kubectl -n {ns} \
                 logs deploy/{stack}-traefik`), that it runs with --metrics.prometheus=true and \
                 that the Service has the port (`kubectl -n {ns} get svc {stack}-traefik -o \
                 yaml`).",
            )),
            SourceKind::Cloudflared => out.push(target_down(
                ctx,
                source,
                Severity::Warning,
                "5m",
                "Prometheus cannot scrape cloudflared's metrics server (Service \
                 {stack}-cloudflared, port metrics), so the tunnel alert is blind. Check the pod \
                 and its log (`kubectl -n {ns} get pods -l \
                 app.kubernetes.io/name=cloudflared,app.kubernetes.io/instance={stack}`, \
                 `kubectl -n {ns} logs deploy/{stack}-cloudflared`) and that the Service has the \
                 port (`kubectl -n {ns} get svc {stack}-cloudflared -o yaml`).",
            )),
        }
    }
    out
}

fn exportarr_failing(ctx: &Ctx, source: &Source) -> Alert {
    let app = source.name;
    let key_env = catalog::app(app)
        .and_then(exporter::key_env_name)
        .unwrap_or("(none: set the key in the app by hand, see docs/monitoring.md)");
    Alert {
        name: "MediaStackExporterFailing",
        source: Some(source.name),
        expr: format!(
            "{} == 0\n  or {} == 0",
            ctx.of_job("up", app, &[]),
            ctx.of_job(&format!("{app}_system_status"), app, &[]),
        ),
        for_: "10m",
        severity: Severity::Warning,
        summary: ctx.text(
            "The {title} exporter cannot read {title}",
            &[("title", source.title)],
        ),
        description: ctx.text(
            "exportarr (container `exporter` in the {title} pod) fails to read {title}'s API: \
             its scrape errors (up == 0) or {app}_system_status is 0. Check its log: `kubectl \
             -n {ns} logs deploy/{stack}-{app} -c exporter`. A 401 means the API keys differ: \
             {title} and the exporter both read key `{app}` of Secret {stack}-api-keys ({title} \
             through {env}); a key changed in {title}'s UI is replaced by the Secret's at the \
             next start, so restart the pod (`kubectl -n {ns} rollout restart \
             deploy/{stack}-{app}`). A refused connection means {title} itself is down (see \
             MediaStackAppUnavailable). Scrapes timing out on a large library: raise \
             spec.monitoring.interval (the scrape timeout follows it).",
            &[("title", source.title), ("app", app), ("env", key_env)],
        ),
    }
}

fn qbittorrent_exporter_failing(ctx: &Ctx, source: &Source) -> Alert {
    Alert {
        name: "MediaStackExporterFailing",
        source: Some(source.name),
        expr: format!("{} == 0", ctx.of_job("up", source.name, &[])),
        for_: "10m",
        severity: Severity::Warning,
        summary: ctx.text(
            "The {title} exporter cannot read {title}",
            &[("title", source.title)],
        ),
        description: ctx.text(
            "The qBittorrent exporter (container `exporter` in the {title} pod) cannot read \
             the WebUI API, or Prometheus cannot reach the exporter. The exporter logs in over \
             the pod's loopback and relies on qBittorrent's 'Bypass authentication for clients \
             on localhost' (WebUI\\LocalHostAuth=false), which the init container \
             qbittorrent-config sets before every start. Check: `kubectl -n {ns} logs \
             deploy/{stack}-{app} -c exporter` (and `-c qbittorrent-config`). \
             'Authentication Error' or 403: the bypass was turned off in the WebUI since the \
             last start, or qBittorrent banned 127.0.0.1 after failed logins; restart the pod \
             (`kubectl -n {ns} rollout restart deploy/{stack}-{app}`). Refused connection: \
             {title} is down. Scrape timeouts: the VPN sidecar's firewall must list the \
             exporter's port in FIREWALL_INPUT_PORTS and the pod's NetworkPolicy must admit \
             Prometheus.",
            &[("title", source.title), ("app", source.name)],
        ),
    }
}

fn target_down(
    ctx: &Ctx,
    source: &Source,
    severity: Severity,
    for_: &'static str,
    description: &str,
) -> Alert {
    Alert {
        name: "MediaStackMetricsTargetDown",
        source: Some(source.name),
        expr: format!("{} == 0", ctx.of_job("up", source.name, &[])),
        for_,
        severity,
        summary: ctx.text(
            "Prometheus cannot scrape {title} of MediaStack {ns}/{stack}",
            &[("title", source.title)],
        ),
        description: ctx.text(
            description,
            &[("title", source.title), ("app", source.name)],
        ),
    }
}

fn download_alerts(ctx: &Ctx, sources: &[Source]) -> Vec<Alert> {
    let mut out = Vec::new();
    for (app, app_spec) in ctx.spec.apps.enabled() {
        if app_spec.vpn.is_some() {
            out.push(vpn_tunnel_down(ctx, app));
        }
    }
    if let Some(source) = sources.iter().find(|s| s.kind == SourceKind::Qbittorrent) {
        out.push(Alert {
            name: "MediaStackTorrentClientDisconnected",
            source: Some(source.name),
            expr: format!(
                "max by (namespace) ({}) == 1",
                ctx.of_job(
                    "qbittorrent_transfer_connection_status",
                    source.name,
                    &[eq("connection_status", "disconnected")],
                )
            ),
            for_: "15m",
            severity: Severity::Warning,
            summary: ctx.text(
                "{title} of MediaStack {ns}/{stack} reports no network connection",
                &[("title", source.title)],
            ),
            description: ctx.text(
                "{title}'s own connection status has been 'disconnected' for 15 minutes: it \
                 reaches neither peers nor the DHT, even if the VPN sidecar reports the tunnel \
                 healthy. ('firewalled' is normal without port forwarding, as with Mullvad, and \
                 does not raise this alert.) Check gluetun's log (`kubectl -n {ns} logs \
                 deploy/{stack}-{app} -c gluetun`), that {title} is not bound to a network \
                 interface that no longer exists (Options > Advanced > Network interface: \
                 'Any interface' is right behind gluetun), and the VPN provider's status page.",
                &[("title", source.title), ("app", source.name)],
            ),
        });
    }
    out
}

/// The app runs while the pod's gluetun sidecar is not ready, or while the
/// pod has no gluetun at all. gluetun is a native sidecar (an init container
/// with `restartPolicy: Always`); a plain sidecar container counts too.
fn vpn_tunnel_down(ctx: &Ctx, app: &App) -> Alert {
    let pods = [
        ctx.in_ns.clone(),
        re("pod", &deployment_pods(&[ctx.parent.child_name(app.name)])),
    ];
    let with = |container: &str| {
        let mut m = pods.to_vec();
        m.push(eq("container", container));
        m
    };
    let by = "max by (namespace, pod)";
    Alert {
        name: "MediaStackVpnTunnelDown",
        source: Some(app.name),
        expr: format!(
            "{by} ({}) == 1\nunless on (namespace, pod) (\n  {by} ({}) == 1\n  or {by} ({}) == 1\n)",
            vector("kube_pod_container_status_running", &with(app.name)),
            vector("kube_pod_init_container_status_ready", &with("gluetun")),
            vector("kube_pod_container_status_ready", &with("gluetun")),
        ),
        for_: "2m",
        severity: Severity::Critical,
        summary: ctx.text(
            "{title} is running without a healthy VPN tunnel",
            &[("title", app.title)],
        ),
        description: ctx.text(
            "In pod {{ $labels.pod }} the {title} container is running while its gluetun \
             sidecar is not ready, or the pod has no gluetun container at all. While gluetun is \
             up but its tunnel is down, its kill switch and the pod's NetworkPolicy keep \
             {title}'s traffic off the open internet and downloads stall; a pod without gluetun \
             has no kill switch inside the pod. Check the containers (`kubectl -n {ns} get pod \
             {{ $labels.pod }} -o jsonpath='{.spec.initContainers[*].name} \
             {.spec.containers[*].name}'`; gluetun must be listed) and gluetun's log (`kubectl \
             -n {ns} logs {{ $labels.pod }} -c gluetun`: WireGuard handshake, DNS and health \
             check errors). No gluetun: the VpnGateway in spec.apps.{app}.vpn.gatewayRef is \
             missing or invalid (see the MediaStack's status and events); set \
             spec.apps.{app}.enabled to false until it is fixed. gluetun not ready: check the \
             VpnGateway's credentials Secret and the provider's status; gluetun restarts the \
             tunnel by itself.",
            &[("title", app.title), ("app", app.name)],
        ),
    }
}

fn edge_alerts(ctx: &Ctx) -> Vec<Alert> {
    let mut out = Vec::new();
    let spec = ctx.spec;
    if spec.ingress.traefik.is_managed() && fail2ban_enabled(spec) {
        let jail = &spec.security.fail2ban.auth_jail;
        let entry_points = user_entry_points(spec);
        let limit = AUTH_FAILURE_SOURCES.saturating_mul(jail.max_retry);
        out.push(Alert {
            name: "MediaStackAuthFailuresSustained",
            source: Some(super::TRAEFIK),
            expr: format!(
                "sum by (namespace) (increase({}[{}])) > {limit}",
                ctx.of_job(
                    "traefik_entrypoint_requests_total",
                    super::TRAEFIK,
                    &[
                        re("entrypoint", &one_of(&entry_points)),
                        re("code", "401|403"),
                    ],
                ),
                jail.find_time,
            ),
            for_: "5m",
            severity: Severity::Warning,
            summary: ctx.text(
                "Unusually many failed logins at MediaStack {ns}/{stack}'s Traefik",
                &[],
            ),
            description: ctx.text(
                "Traefik answered more than {limit} requests on entry points {ep} with 401 or \
                 403 within {find}: the failures of more than {sources} clients that each reach \
                 fail2ban's auth jail limit ({max} failures in {find}). fail2ban bans single \
                 addresses, so a rate this high for 5 minutes means bans are not stopping it. \
                 There is no fail2ban exporter: this alert is derived from Traefik's metrics and \
                 counts failed requests, not bans. Check fail2ban's log and jails (`kubectl -n \
                 {ns} logs -l app.kubernetes.io/name=fail2ban,app.kubernetes.io/instance={stack} \
                 -c fail2ban`, and `fail2ban-client status traefik-auth` in that container) and \
                 Traefik's access log for the client addresses. Usual causes: requests through \
                 the Cloudflare tunnel (a ban on the node cannot stop them, they reach Traefik \
                 from the cloudflared pod: block them at Cloudflare, \
                 e.g. WAF rules or Access), many distinct addresses, a filter that does not match \
                 Traefik's log format, or one of your own clients retrying a wrong password.",
                &[
                    ("limit", &limit.to_string()),
                    ("ep", &entry_points.join(", ")),
                    ("find", &jail.find_time),
                    ("sources", &AUTH_FAILURE_SOURCES.to_string()),
                    ("max", &jail.max_retry.to_string()),
                ],
            ),
        });
    }
    if spec.ingress.tunnel.is_some() {
        let public = spec
            .domain
            .public
            .as_deref()
            .map(|d| format!("*.{d}"))
            .unwrap_or_else(|| "the public domain".into());
        out.push(Alert {
            name: "MediaStackTunnelDisconnected",
            source: Some(super::CLOUDFLARED),
            expr: format!(
                "max by (namespace) ({}) < 1",
                ctx.of_job("cloudflared_tunnel_ha_connections", super::CLOUDFLARED, &[])
            ),
            for_: "5m",
            severity: Severity::Warning,
            summary: ctx.text(
                "The Cloudflare tunnel of MediaStack {ns}/{stack} is disconnected",
                &[],
            ),
            description: ctx.text(
                "cloudflared runs but holds no connection to Cloudflare's edge, so the public \
                 routes ({public}) are unreachable; LAN access through Traefik still works. \
                 Check cloudflared's log (`kubectl -n {ns} logs deploy/{stack}-cloudflared`): an \
                 invalid or revoked token (create a new one in the Cloudflare dashboard and put \
                 it in the Secret named by spec.ingress.tunnel.tokenSecretRef), outbound port \
                 7844 blocked (UDP for QUIC, TCP for the HTTP/2 fallback), or DNS failures in \
                 the cluster. cloudflared reconnects by itself once the cause is gone.",
                &[("public", &public)],
            ),
        });
    }
    out
}

fn storage_alerts(ctx: &Ctx) -> Vec<Alert> {
    if ctx.pods_re.is_empty() {
        return Vec::new();
    }
    let by = "max by (namespace, persistentvolumeclaim)";
    let in_ns = [ctx.in_ns.clone()];
    vec![Alert {
        name: "MediaStackVolumeFillingUp",
        source: None,
        expr: format!(
            "{by} (\n  {}\n  / {}\n) > {}\nand on (namespace, persistentvolumeclaim)\n  {}",
            vector("kubelet_volume_stats_used_bytes", &in_ns),
            vector("kubelet_volume_stats_capacity_bytes", &in_ns),
            f64::from(VOLUME_FULL_PERCENT) / 100.0,
            vector(
                "kube_pod_spec_volumes_persistentvolumeclaims_info",
                &[ctx.in_ns.clone(), re("pod", &ctx.pods_re)],
            ),
        ),
        for_: "15m",
        severity: Severity::Warning,
        summary: "Volume {{ $labels.persistentvolumeclaim }} is {{ $value | humanizePercentage }} full"
            .into(),
        description: ctx.text(
            "The PersistentVolumeClaim {{ $labels.persistentvolumeclaim }}, mounted by \
             MediaStack {ns}/{stack}, is more than {percent}% full. Apps fail in odd ways on a full \
             disk: the *arr apps' SQLite databases can corrupt, downloads stop, imports fail. \
             Check what grows (`kubectl -n {ns} exec deploy/{stack}-<app> -- du -xsh /config \
             /data/*`: downloads under /data/torrents, the library under /data/media, logs and \
             backups under /config). Then remove finished torrents or unwanted media, lower the \
             apps' backup retention, or grow the claim (`kubectl -n {ns} edit pvc {{ \
             $labels.persistentvolumeclaim }}`, spec.resources.requests.storage) if its \
             StorageClass allows expansion. hostPath volumes are not measured by the kubelet and \
             never raise this alert.",
            &[("percent", &VOLUME_FULL_PERCENT.to_string())],
        ),
    }]
}
