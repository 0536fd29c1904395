//! mediastack-operator: runs a self-hosted media stack from a few custom resources.
//!
//! Data flows one way: `api` (types) -> `render` (pure: spec + resolved
//! inputs -> desired objects) -> `reconcile` (I/O: resolve, apply, prune,
//! status) -> `runtime` (controllers, health, metrics, leader election).

pub mod api;
pub mod catalog;
#[cfg(feature = "wip")]
pub mod reconcile;
pub mod render;
#[cfg(feature = "wip")]
pub mod runtime;
