//! Our IngressRoute -> Traefik IngressRoute and Middlewares; the stack's app routes.

use super::meta::Parent;
use super::{Child, RenderError};
use crate::api::mediastack::MediaStackSpec;

/// One of our IngressRoutes per exposed app, owned by the stack.
pub fn app_routes(_parent: &Parent, _spec: &MediaStackSpec) -> Result<Vec<Child>, RenderError> {
    Ok(Vec::new())
}
