//! gluetun as a native sidecar of a VPN consumer, with the kill switch.

use k8s_openapi::api::apps::v1::Deployment;

use super::meta::Parent;
use super::{Child, GeneratedSecret, RenderError, VpnResolution};
use crate::catalog::App;

/// Adds the gluetun native sidecar to the consumer's Deployment.
pub fn inject(
    _parent: &Parent,
    _app: &App,
    _deployment: &mut Deployment,
    _vpn: &VpnResolution,
    _cluster_subnets: &[String],
) -> Result<(), RenderError> {
    Err(RenderError::Invalid(
        "vpn rendering is not implemented yet".into(),
    ))
}

/// The consumer pod's NetworkPolicy (second layer of the kill switch).
pub fn network_policy(
    _parent: &Parent,
    _app: &App,
    _vpn: &VpnResolution,
    _cluster_subnets: &[String],
) -> Result<Child, RenderError> {
    Err(RenderError::Invalid(
        "vpn rendering is not implemented yet".into(),
    ))
}

/// The control-server credentials Secret of the consumer's gluetun.
pub fn control_secret(parent: &Parent, app: &App) -> GeneratedSecret {
    GeneratedSecret {
        name: parent.child_name(&format!("{}-gluetun-control", app.name)),
        random_keys: Vec::new(),
        templated: Default::default(),
        labels: parent.labels(app.name, "vpn"),
    }
}
