//! Monitoring of a stack through prometheus-operator: exporter sidecars,
//! one ServiceMonitor per metrics source, one PrometheusRule with
//! runbook-style alerts and a Grafana overview dashboard.
//!
//! - [`attach_exporter`] adds an app's exporter to its Deployment and
//!   Service (exportarr for the *arr apps, the qBittorrent exporter next to
//!   qBittorrent) and names the API-key Secret it needs.
//! - [`objects`] renders the monitoring objects; the reconciler only asks
//!   for them when the `monitoring.coreos.com` CRDs are installed.
//!
//! Every source is scraped under a fixed `job` label, `<stack>-<source>`
//! (`home-sonarr`, `home-traefik`, ...), so alerts and dashboard queries
//! never depend on Service or pod names. Objects of other modules are
//! referred to by their conventions: Deployment and Service `<stack>-<app>`
//! with a container named after the app and a port `http`; Service
//! `<stack>-traefik` with the port `traefik` (Traefik's internal entry point
//! serving `/metrics`); Service `<stack>-cloudflared` with the port `metrics`;
//! the VPN sidecar's container `gluetun`, which opens the exporter's port in
//! its firewall and NetworkPolicy itself (`vpn`).

mod exporter;
mod grafana;
mod monitors;
mod rules;
#[cfg(test)]
mod tests;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;

use super::meta::Parent;
use super::traefik_crd::TUNNEL_ENTRY_POINT;
use super::{Child, GeneratedSecret, RenderError};
use crate::api::mediastack::MediaStackSpec;
use crate::catalog::{App, Exporter};

pub use exporter::{EXPORTARR_IMAGE, EXPORTER_CONTAINER, METRICS_PORT, QBITTORRENT_EXPORTER_IMAGE};

/// Name of the Secret with one generated API key per *arr app (key = app
/// name). The app and its exporter read the same key, so nothing is copied
/// by hand.
pub fn api_keys_secret_name(parent: &Parent) -> String {
    parent.child_name("api-keys")
}

/// The environment variable through which `app` takes its API key (the
/// generated one, or the user's `apiKeySecretRef`), if it has one.
pub fn key_env_name(app: &App) -> Option<&'static str> {
    exporter::key_env_name(app)
}

/// Adds the app's exporter (container and Service port); returns the API-key
/// Secret it needs, if any. Apps without an exporter, or whose exporter is
/// the app itself (Jellyfin), are left unchanged.
pub fn attach_exporter(
    parent: &Parent,
    app: &App,
    deployment: &mut Deployment,
    service: &mut Service,
) -> Option<GeneratedSecret> {
    match app.exporter? {
        Exporter::Exportarr { port } => {
            exporter::attach_exportarr(parent, app, port, deployment, service)
        }
        Exporter::Qbittorrent { port } => {
            exporter::attach_qbittorrent(app, port, deployment, service);
            None
        }
        Exporter::Native { .. } => None,
    }
}

/// ServiceMonitors, the PrometheusRule and the dashboard ConfigMap of the
/// stack.
pub fn objects(parent: &Parent, spec: &MediaStackSpec) -> Result<Vec<Child>, RenderError> {
    let sources = sources(spec);
    let mut out = Vec::with_capacity(sources.len() + 2);
    for source in &sources {
        out.push(monitors::monitor(parent, spec, source)?);
    }
    if let Some(rule) = rules::prometheus_rule(parent, spec, &sources)? {
        out.push(rule);
    }
    out.push(grafana::config_map(parent, spec, &sources)?);
    Ok(out)
}

/// A metrics endpoint of the stack that Prometheus scrapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Source {
    /// App or component name: the `app.kubernetes.io/name` of its Service
    /// or pods, and the suffix of its job (`<stack>-<name>`).
    name: &'static str,
    /// Human name, for alert texts and dashboard panels.
    title: &'static str,
    kind: SourceKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SourceKind {
    /// exportarr next to the app: Service port `metrics`.
    Exportarr,
    /// The qBittorrent exporter next to qBittorrent: Service port `metrics`.
    Qbittorrent,
    /// The app's own `http` port at this path (Jellyfin).
    Native { path: &'static str },
    /// The managed Traefik's `traefik` entry point.
    Traefik,
    /// cloudflared's metrics server: Service port `metrics`.
    Cloudflared,
}

/// Component name of the managed Traefik (its Deployment, Service and job).
const TRAEFIK: &str = super::traefik::CONTAINER;
/// Component name of cloudflared (its Deployment, Service and job).
const CLOUDFLARED: &str = super::tunnel::CONTAINER;

/// Every metrics source the spec enables, apps in catalog order, then the edge.
fn sources(spec: &MediaStackSpec) -> Vec<Source> {
    let mut out: Vec<Source> = spec
        .apps
        .enabled()
        .filter_map(|(app, _)| {
            let kind = match app.exporter? {
                Exporter::Exportarr { .. } => SourceKind::Exportarr,
                Exporter::Qbittorrent { .. } => SourceKind::Qbittorrent,
                Exporter::Native { path } => SourceKind::Native { path },
            };
            Some(Source {
                name: app.name,
                title: app.title,
                kind,
            })
        })
        .collect();
    if spec.ingress.traefik.is_managed() {
        out.push(Source {
            name: TRAEFIK,
            title: "Traefik",
            kind: SourceKind::Traefik,
        });
    }
    if spec.ingress.tunnel.is_some() {
        out.push(Source {
            name: CLOUDFLARED,
            title: "cloudflared",
            kind: SourceKind::Cloudflared,
        });
    }
    out
}

/// The Prometheus `job` label of a source.
fn job(parent: &Parent, source: &str) -> String {
    parent.child_name(source)
}

/// Names of the stack's Deployments: every enabled app, the managed Traefik
/// and cloudflared (each `<stack>-<name>`).
fn deployments(parent: &Parent, spec: &MediaStackSpec) -> Vec<String> {
    let mut out: Vec<String> = spec
        .apps
        .enabled()
        .map(|(app, _)| parent.child_name(app.name))
        .collect();
    if spec.ingress.traefik.is_managed() {
        out.push(parent.child_name(TRAEFIK));
    }
    if spec.ingress.tunnel.is_some() {
        out.push(parent.child_name(CLOUDFLARED));
    }
    out
}

/// Traefik entry points that serve the stack's users: the HTTP entry point
/// and, with a tunnel, the one cloudflared forwards to.
fn user_entry_points(spec: &MediaStackSpec) -> Vec<String> {
    let mut out = vec![spec.ingress.traefik.entry_point.clone()];
    if spec.ingress.tunnel.is_some() {
        out.push(TUNNEL_ENTRY_POINT.to_string());
    }
    out
}

/// Whether fail2ban runs (on by default when Traefik is managed).
fn fail2ban_enabled(spec: &MediaStackSpec) -> bool {
    spec.security
        .fail2ban
        .enabled
        .unwrap_or(spec.ingress.traefik.is_managed())
}

/// Small builders for PromQL text. Every value put in a query goes through
/// [`promql::string`], so a name can never break the query's syntax.
mod promql {
    /// A PromQL double-quoted string literal.
    pub fn string(value: &str) -> String {
        let mut out = String::with_capacity(value.len() + 2);
        out.push('"');
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// `label="value"`.
    pub fn eq(label: &str, value: &str) -> String {
        format!("{label}={}", string(value))
    }

    /// `label=~"regex"`.
    pub fn re(label: &str, regex: &str) -> String {
        format!("{label}=~{}", string(regex))
    }

    /// A vector selector: `metric{m1, m2}`.
    pub fn vector(metric: &str, matchers: &[String]) -> String {
        format!("{metric}{{{}}}", matchers.join(", "))
    }

    /// A regex matching exactly one of `names` (regex-escaped).
    pub fn one_of<S: AsRef<str>>(names: &[S]) -> String {
        let alternatives: Vec<String> = names.iter().map(|n| escape_regex(n.as_ref())).collect();
        format!("({})", alternatives.join("|"))
    }

    /// A regex matching the pods of these Deployments
    /// (`<deployment>-<pod-template-hash>-<suffix>`).
    pub fn deployment_pods<S: AsRef<str>>(deployments: &[S]) -> String {
        format!("{}-[a-z0-9]+-[a-z0-9]+", one_of(deployments))
    }

    /// `s` with regex metacharacters escaped.
    pub fn escape_regex(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            if "\\.+*?()|[]{}^$".contains(c) {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }
}
