//! The web dashboard's generated configuration.

use super::meta::Parent;
use super::{Child, RenderError};
use crate::api::mediastack::MediaStackSpec;

/// The dashboard's ConfigMap when the dashboard is enabled.
pub fn objects(_parent: &Parent, _spec: &MediaStackSpec) -> Result<Vec<Child>, RenderError> {
    Ok(Vec::new())
}
