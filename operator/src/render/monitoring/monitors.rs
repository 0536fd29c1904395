//! One ServiceMonitor per metrics source, `monitoring.coreos.com/v1`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::super::meta::{HTTP_PORT, Parent};
use super::super::{Child, RenderError};
use super::{METRICS_PORT, Source, SourceKind, job};
use crate::api::mediastack::MediaStackSpec;

pub(super) const GROUP: &str = "monitoring.coreos.com";
pub(super) const VERSION: &str = "v1";

/// Traefik's entry point serving `/metrics` (and `/ping`).
const TRAEFIK_PORT: &str = super::super::traefik::INTERNAL_ENTRY_POINT;

/// The monitor of one source.
pub(super) fn monitor(
    parent: &Parent,
    spec: &MediaStackSpec,
    source: &Source,
) -> Result<Child, RenderError> {
    let name = job(parent, source.name);
    let interval = spec.monitoring.interval.as_str();
    let mut endpoint = json!({
        "interval": interval,
        "scheme": "http",
        // A fixed job, whatever the Service or pod is called.
        "relabelings": [{
            "action": "replace",
            "targetLabel": "job",
            "replacement": name,
        }],
    });
    match source.kind {
        SourceKind::Exportarr | SourceKind::Qbittorrent => {
            endpoint["port"] = METRICS_PORT.into();
            endpoint["path"] = "/metrics".into();
            // The exporters ask the app's API on every scrape; large
            // libraries take longer than the default 10s.
            endpoint["scrapeTimeout"] = interval.into();
        }
        SourceKind::Native { path } => {
            endpoint["port"] = HTTP_PORT.into();
            endpoint["path"] = path.into();
        }
        SourceKind::Traefik => {
            endpoint["port"] = TRAEFIK_PORT.into();
            endpoint["path"] = "/metrics".into();
            // Keep Traefik's own `service` label (the routed service)
            // instead of renaming it to `exported_service`.
            endpoint["honorLabels"] = true.into();
        }
        SourceKind::Cloudflared => {
            endpoint["port"] = METRICS_PORT.into();
            endpoint["path"] = "/metrics".into();
        }
    }
    let selector = json!({ "matchLabels": parent.selector(source.name) });
    let metadata = metadata(
        parent,
        &name,
        source.name,
        &spec.monitoring.service_monitor_labels,
    )?;
    Child::custom(
        GROUP,
        VERSION,
        "ServiceMonitor",
        "servicemonitors",
        json!({
            "metadata": metadata,
            "spec": { "selector": selector, "endpoints": [endpoint] },
        }),
    )
}

/// Metadata of a monitoring object: the recommended labels plus the labels
/// that make a Prometheus select it. Ours win on a clash, since pruning
/// relies on them.
pub(super) fn metadata(
    parent: &Parent,
    name: &str,
    app: &str,
    extra_labels: &BTreeMap<String, String>,
) -> Result<Value, RenderError> {
    let mut meta = parent.meta(name, app, "monitoring");
    let mut labels = extra_labels.clone();
    labels.extend(meta.labels.take().unwrap_or_default());
    meta.labels = Some(labels);
    serde_json::to_value(meta).map_err(RenderError::Serialize)
}
