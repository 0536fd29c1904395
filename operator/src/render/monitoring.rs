//! Exporters, ServiceMonitors, PrometheusRule and Grafana dashboards.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;

use super::meta::Parent;
use super::{Child, GeneratedSecret, RenderError};
use crate::api::mediastack::MediaStackSpec;
use crate::catalog::App;

/// Adds the app's exporter (container and Service port); returns the API-key
/// Secret it needs, if any.
pub fn attach_exporter(
    _parent: &Parent,
    _app: &App,
    _deployment: &mut Deployment,
    _service: &mut Service,
) -> Option<GeneratedSecret> {
    None
}

/// ServiceMonitors, the PrometheusRule and dashboard ConfigMaps.
pub fn objects(_parent: &Parent, _spec: &MediaStackSpec) -> Result<Vec<Child>, RenderError> {
    Ok(Vec::new())
}
