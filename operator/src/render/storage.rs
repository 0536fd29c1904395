//! The shared data volume and per-app config claims.

use super::meta::Parent;
use super::{Child, RenderError};
use crate::api::mediastack::MediaStackSpec;

/// Stack-wide storage objects (the data claim when `storage.data.size` is set).
pub fn shared(_parent: &Parent, _spec: &MediaStackSpec) -> Result<Vec<Child>, RenderError> {
    Ok(Vec::new())
}
