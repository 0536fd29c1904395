//! mediastack-operator: runs a self-hosted media stack from a few custom resources.
//!
//! Data flows one way: `api` (types) -> `render` (pure: spec + resolved
//! inputs -> desired objects) -> `reconcile` (I/O: resolve, apply, prune,
//! status) -> `runtime` (controllers, health, leader election); `metrics`
//! is shared by `reconcile` and `runtime`.

// Several `#[x_kube(validation = ...)]` rules on one item are intended.
#[allow(clippy::duplicated_attributes)]
pub mod api;
pub mod catalog;
pub mod metrics;
pub mod policy;
pub mod reconcile;
pub mod render;
pub mod runtime;
pub mod wiring;
