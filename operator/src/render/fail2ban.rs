//! fail2ban DaemonSet protecting Traefik.

use super::meta::Parent;
use super::{Child, Inputs, RenderError};
use crate::api::mediastack::MediaStackSpec;

/// The fail2ban DaemonSet and its ConfigMap (when enabled).
pub fn objects(
    _parent: &Parent,
    _spec: &MediaStackSpec,
    _inputs: &Inputs,
) -> Result<Vec<Child>, RenderError> {
    Ok(Vec::new())
}
