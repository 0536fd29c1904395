//! The managed Traefik of a stack.

use super::meta::Parent;
use super::{Child, RenderError};
use crate::api::mediastack::MediaStackSpec;

/// Traefik's ServiceAccount, Role, Deployment, Service (when managed).
pub fn objects(_parent: &Parent, _spec: &MediaStackSpec) -> Result<Vec<Child>, RenderError> {
    Ok(Vec::new())
}
