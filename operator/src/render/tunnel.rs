//! cloudflared for the stack's public routes.

use super::meta::Parent;
use super::{Child, Inputs, RenderError};
use crate::api::mediastack::MediaStackSpec;

/// The cloudflared Deployment when a tunnel token is configured.
pub fn objects(
    _parent: &Parent,
    _spec: &MediaStackSpec,
    _inputs: &Inputs,
) -> Result<Vec<Child>, RenderError> {
    Ok(Vec::new())
}
