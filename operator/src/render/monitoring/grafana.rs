//! The stack's Grafana overview dashboard, as a ConfigMap that Grafana's
//! dashboard sidecar (kube-prometheus-stack) loads by label.
//!
//! Built from the spec, so it only shows what the stack runs, and scoped by
//! namespace and job names. Deterministic: the uid is derived from the
//! stack's namespace and name, panel ids and positions from their order.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::super::meta::Parent;
use super::super::{Child, RenderError};
use super::promql::{deployment_pods, eq, escape_regex, one_of, re, vector};
use super::{
    CLOUDFLARED, Source, SourceKind, TRAEFIK, deployments, fail2ban_enabled, job, user_entry_points,
};
use crate::api::mediastack::MediaStackSpec;

/// Width of a Grafana dashboard grid.
const GRID_WIDTH: u32 = 24;

/// Name of the ConfigMap holding the stack's dashboards.
pub(super) fn config_map_name(parent: &Parent) -> String {
    parent.child_name("grafana-dashboards")
}

/// Key (file name) of the overview dashboard in the ConfigMap.
pub(super) fn overview_key(parent: &Parent) -> String {
    format!("{}-overview.json", parent.name)
}

/// The ConfigMap with the overview dashboard, labelled for the sidecar.
pub(super) fn config_map(
    parent: &Parent,
    spec: &MediaStackSpec,
    sources: &[Source],
) -> Result<Child, RenderError> {
    let dashboard = overview(parent, spec, sources);
    let text = serde_json::to_string_pretty(&dashboard).map_err(RenderError::Serialize)?;
    let mut metadata = parent.meta(&config_map_name(parent), "mediastack", "monitoring");
    let mut labels = spec.monitoring.dashboard_label.clone();
    labels.extend(metadata.labels.take().unwrap_or_default());
    metadata.labels = Some(labels);
    Child::typed(&ConfigMap {
        metadata,
        data: Some(BTreeMap::from([(overview_key(parent), text)])),
        ..ConfigMap::default()
    })
}

/// Stable dashboard uid: `mediastack-` and 16 hex digits of
/// SHA-256(`<namespace>/<name>`), within Grafana's 40 characters.
fn uid(parent: &Parent) -> String {
    let digest = Sha256::digest(format!("{}/{}", parent.namespace, parent.name).as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("mediastack-{hex}")
}

/// The overview dashboard of one stack.
fn overview(parent: &Parent, spec: &MediaStackSpec, sources: &[Source]) -> Value {
    let ns = parent.namespace.as_str();
    let in_ns = eq("namespace", ns);
    let of_job = |metric: &str, source: &str, extra: &[String]| {
        let mut m = vec![in_ns.clone(), eq("job", &job(parent, source))];
        m.extend_from_slice(extra);
        vector(metric, &m)
    };
    let mut grid = Grid::default();

    // Availability.
    let deployments = deployments(parent, spec);
    grid.row("Availability");
    if !deployments.is_empty() {
        let sel = [in_ns.clone(), re("deployment", &one_of(&deployments))];
        grid.add(
            12,
            6,
            stat(
                "Apps available",
                "Each Deployment of the stack: Up when all its replicas are available.",
                vec![target(
                    &format!(
                        "max by (deployment) ({})\n  >= bool max by (deployment) ({})",
                        vector("kube_deployment_status_replicas_available", &sel),
                        vector("kube_deployment_spec_replicas", &sel),
                    ),
                    "{{deployment}}",
                )],
                up_down(),
            ),
        );
    }
    if !sources.is_empty() {
        let jobs: Vec<String> = sources.iter().map(|s| job(parent, s.name)).collect();
        grid.add(
            12,
            6,
            stat(
                "Metrics endpoints",
                "Whether Prometheus scrapes each exporter and metrics endpoint of the stack.",
                vec![target(
                    &format!(
                        "max by (job) ({})",
                        vector("up", &[in_ns.clone(), re("job", &one_of(&jobs))])
                    ),
                    "{{job}}",
                )],
                up_down(),
            ),
        );
    }

    // VPN and downloads.
    let vpn_apps: Vec<String> = spec
        .apps
        .enabled()
        .filter(|(_, s)| s.vpn.is_some())
        .map(|(a, _)| parent.child_name(a.name))
        .collect();
    let qbittorrent = sources.iter().find(|s| s.kind == SourceKind::Qbittorrent);
    if !vpn_apps.is_empty() || qbittorrent.is_some() {
        grid.row("VPN and downloads");
    }
    if !vpn_apps.is_empty() {
        let gluetun = |metric: &str| {
            vector(
                metric,
                &[
                    in_ns.clone(),
                    re("pod", &deployment_pods(&vpn_apps)),
                    eq("container", "gluetun"),
                ],
            )
        };
        grid.add(
            12,
            5,
            stat(
                "VPN tunnel",
                "gluetun's readiness in each VPN consumer pod: Up while its health check \
                 reaches the internet through the tunnel.",
                vec![target(
                    &format!(
                        "max by (pod) ({})\n  or max by (pod) ({})",
                        gluetun("kube_pod_init_container_status_ready"),
                        gluetun("kube_pod_container_status_ready"),
                    ),
                    "{{pod}}",
                )],
                up_down(),
            ),
        );
    }
    if let Some(source) = qbittorrent {
        let mut status = stat(
            "qBittorrent connection",
            "qBittorrent's own view: connected, firewalled (normal without port \
             forwarding) or disconnected.",
            vec![target(
                &format!(
                    "max by (connection_status) ({}) == 1",
                    of_job("qbittorrent_transfer_connection_status", source.name, &[])
                ),
                "{{connection_status}}",
            )],
            json!([]),
        );
        status["options"]["textMode"] = "name".into();
        status["options"]["colorMode"] = "none".into();
        grid.add(12, 5, status);
        grid.add(
            24,
            8,
            timeseries(
                "Download and upload speed",
                "qBittorrent's total transfer rate.",
                "Bps",
                vec![
                    target(
                        &format!(
                            "sum({})",
                            of_job("qbittorrent_global_download_speed_bytes", source.name, &[])
                        ),
                        "download",
                    ),
                    target(
                        &format!(
                            "sum({})",
                            of_job("qbittorrent_global_upload_speed_bytes", source.name, &[])
                        ),
                        "upload",
                    ),
                ],
            ),
        );
    }

    // Traffic through Traefik, by routed service (`<ns>-<stack>-<app>-<port>`).
    // Traefik labels the routed service `service` (kept by honorLabels on the
    // stack's own ServiceMonitor).
    grid.row("Traffic");
    let routed = re(
        "service",
        &format!("{}-{}-.+", escape_regex(ns), escape_regex(&parent.name)),
    );
    let rate = |extra: &[String]| {
        let mut m = vec![routed.clone()];
        m.extend_from_slice(extra);
        format!(
            "sum by (service) (rate({}[$__rate_interval]))",
            vector("traefik_service_requests_total", &m)
        )
    };
    grid.add(
        12,
        8,
        timeseries(
            "Requests per route",
            "Requests Traefik routed to each app of the stack.",
            "reqps",
            vec![target(&rate(&[]), "{{service}}")],
        ),
    );
    grid.add(
        12,
        8,
        timeseries(
            "Server errors (5xx) per route",
            "Responses with a 5xx status, per app.",
            "reqps",
            vec![target(&rate(&[re("code", "5..")]), "{{service}}")],
        ),
    );
    if spec.ingress.traefik.is_managed() && fail2ban_enabled(spec) {
        grid.add(
            24,
            8,
            timeseries(
                "Rejected requests at the entry point (fail2ban's input)",
                "There is no fail2ban exporter: these are the responses fail2ban's jails \
                 match (401/403 for failed logins, 404 for scanners). A sustained high rate \
                 means bans are not stopping it.",
                "reqps",
                vec![target(
                    &format!(
                        "sum by (code) (rate({}[$__rate_interval]))",
                        of_job(
                            "traefik_entrypoint_requests_total",
                            TRAEFIK,
                            &[
                                re("entrypoint", &one_of(&user_entry_points(spec))),
                                re("code", "401|403|404|429"),
                            ],
                        )
                    ),
                    "{{code}}",
                )],
            ),
        );
    }

    if spec.ingress.tunnel.is_some() {
        grid.row("Cloudflare tunnel");
        let mut connections = stat(
            "Tunnel connections",
            "Connections cloudflared holds to Cloudflare's edge (normally 4).",
            vec![target(
                &format!(
                    "sum({})",
                    of_job("cloudflared_tunnel_ha_connections", CLOUDFLARED, &[])
                ),
                "connections",
            )],
            json!([]),
        );
        connections["fieldConfig"]["defaults"]["thresholds"] =
            thresholds(&[("red", None), ("orange", Some(1.0)), ("green", Some(4.0))]);
        grid.add(8, 8, connections);
        grid.add(
            16,
            8,
            timeseries(
                "Tunnel requests",
                "Requests cloudflared proxied, and the ones that failed to reach Traefik.",
                "reqps",
                vec![
                    target(
                        &format!(
                            "sum(rate({}[$__rate_interval]))",
                            of_job("cloudflared_tunnel_total_requests", CLOUDFLARED, &[])
                        ),
                        "requests",
                    ),
                    target(
                        &format!(
                            "sum(rate({}[$__rate_interval]))",
                            of_job("cloudflared_tunnel_request_errors", CLOUDFLARED, &[])
                        ),
                        "errors",
                    ),
                ],
            ),
        );
    }

    if !deployments.is_empty() {
        grid.row("Storage");
        let in_ns_only = [in_ns.clone()];
        let mut usage = panel(
            "bargauge",
            "Volume usage",
            "Share of each claim mounted by the stack's pods in use (hostPath volumes are \
             not measured).",
            vec![target(
                &format!(
                    "max by (persistentvolumeclaim) (\n  ({}\n    / {})\n  and on (namespace, persistentvolumeclaim) {}\n)",
                    vector("kubelet_volume_stats_used_bytes", &in_ns_only),
                    vector("kubelet_volume_stats_capacity_bytes", &in_ns_only),
                    vector(
                        "kube_pod_spec_volumes_persistentvolumeclaims_info",
                        &[in_ns.clone(), re("pod", &deployment_pods(&deployments))],
                    ),
                ),
                "{{persistentvolumeclaim}}",
            )],
        );
        usage["fieldConfig"]["defaults"]["unit"] = "percentunit".into();
        usage["fieldConfig"]["defaults"]["min"] = 0.into();
        usage["fieldConfig"]["defaults"]["max"] = 1.into();
        usage["fieldConfig"]["defaults"]["thresholds"] =
            thresholds(&[("green", None), ("orange", Some(0.75)), ("red", Some(0.85))]);
        usage["options"] = json!({
            "orientation": "horizontal",
            "displayMode": "gradient",
            "showUnfilled": true,
            "reduceOptions": { "calcs": ["lastNotNull"], "fields": "", "values": false },
        });
        grid.add(24, 8, usage);
    }

    json!({
        "uid": uid(parent),
        "title": format!("MediaStack {}/{}", ns, parent.name),
        "description": format!(
            "Apps, VPN, downloads, traffic and storage of MediaStack {}/{} (generated by \
             mediastack-operator; edits are overwritten).",
            ns, parent.name
        ),
        "tags": ["mediastack"],
        "timezone": "browser",
        "editable": true,
        "graphTooltip": 1,
        "refresh": "1m",
        "schemaVersion": 39,
        "version": 1,
        "time": { "from": "now-6h", "to": "now" },
        "annotations": { "list": [] },
        "links": [],
        "templating": { "list": [{
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "includeAll": false,
            "multi": false,
            "options": [],
            "refresh": 1,
            "regex": "",
        }]},
        "panels": grid.panels,
    })
}

/// Lays panels out left to right, top to bottom; a row starts a new line.
#[derive(Default)]
struct Grid {
    panels: Vec<Value>,
    x: u32,
    y: u32,
    /// Height of the current line.
    line: u32,
}

impl Grid {
    fn next_id(&self) -> usize {
        self.panels.len() + 1
    }

    fn newline(&mut self) {
        self.y += self.line;
        self.x = 0;
        self.line = 0;
    }

    fn row(&mut self, title: &str) {
        self.newline();
        self.panels.push(json!({
            "id": self.next_id(),
            "type": "row",
            "title": title,
            "collapsed": false,
            "panels": [],
            "gridPos": { "h": 1, "w": GRID_WIDTH, "x": 0, "y": self.y },
        }));
        self.y += 1;
    }

    fn add(&mut self, w: u32, h: u32, mut panel: Value) {
        if self.x + w > GRID_WIDTH {
            self.newline();
        }
        panel["id"] = self.next_id().into();
        panel["gridPos"] = json!({ "h": h, "w": w, "x": self.x, "y": self.y });
        self.panels.push(panel);
        self.x += w;
        self.line = self.line.max(h);
    }
}

fn datasource() -> Value {
    json!({ "type": "prometheus", "uid": "${datasource}" })
}

fn target(expr: &str, legend: &str) -> Value {
    json!({ "datasource": datasource(), "expr": expr, "legendFormat": legend })
}

fn panel(kind: &str, title: &str, description: &str, targets: Vec<Value>) -> Value {
    let targets: Vec<Value> = targets
        .into_iter()
        .zip('A'..='Z')
        .map(|(mut t, id)| {
            t["refId"] = id.to_string().into();
            t
        })
        .collect();
    json!({
        "type": kind,
        "title": title,
        "description": description,
        "datasource": datasource(),
        "targets": targets,
        "fieldConfig": { "defaults": {}, "overrides": [] },
        "options": {},
    })
}

fn stat(title: &str, description: &str, targets: Vec<Value>, mappings: Value) -> Value {
    let targets = targets
        .into_iter()
        .map(|mut t| {
            t["instant"] = true.into();
            t
        })
        .collect();
    let mut p = panel("stat", title, description, targets);
    p["fieldConfig"]["defaults"] = json!({
        "mappings": mappings,
        "thresholds": thresholds(&[("red", None), ("green", Some(1.0))]),
        "unit": "none",
    });
    p["options"] = json!({
        "reduceOptions": { "calcs": ["lastNotNull"], "fields": "", "values": false },
        "colorMode": "background",
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": "value_and_name",
    });
    p
}

fn timeseries(title: &str, description: &str, unit: &str, targets: Vec<Value>) -> Value {
    let mut p = panel("timeseries", title, description, targets);
    p["fieldConfig"]["defaults"] = json!({
        "unit": unit,
        "min": 0,
        "custom": { "fillOpacity": 10, "lineWidth": 1, "showPoints": "never" },
    });
    p["options"] = json!({
        "legend": { "displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"] },
        "tooltip": { "mode": "multi", "sort": "desc" },
    });
    p
}

/// 1 = Up (green), 0 = Down (red).
fn up_down() -> Value {
    json!([{
        "type": "value",
        "options": {
            "0": { "text": "Down", "color": "red", "index": 0 },
            "1": { "text": "Up", "color": "green", "index": 1 },
        },
    }])
}

fn thresholds(steps: &[(&str, Option<f64>)]) -> Value {
    json!({
        "mode": "absolute",
        "steps": steps
            .iter()
            .map(|(color, value)| json!({ "color": color, "value": value }))
            .collect::<Vec<_>>(),
    })
}
