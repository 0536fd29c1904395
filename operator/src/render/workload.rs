//! Per-app Deployment and Service. (Owner: MediaStack workloads.)

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};

use super::meta::Parent;
use super::{Child, Inputs, RenderError};
use crate::api::mediastack::{AppSpec, MediaStackSpec};
use crate::catalog::App;

/// The objects of one app before the VPN and exporter sidecars are added.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppObjects {
    pub deployment: Deployment,
    pub service: Service,
    pub config_claim: Option<PersistentVolumeClaim>,
    /// Further objects of the app (e.g. Dozzle's Role).
    pub extra: Vec<Child>,
    /// What the app waits for (replicas stay 0 meanwhile).
    pub waiting_for: Option<String>,
}

impl AppObjects {
    /// All objects, in apply order.
    pub fn into_children(self) -> Result<Vec<Child>, RenderError> {
        let mut out = Vec::new();
        if let Some(pvc) = &self.config_claim {
            out.push(Child::typed(pvc)?);
        }
        out.push(Child::typed(&self.service)?);
        out.push(Child::typed(&self.deployment)?);
        out.extend(self.extra);
        Ok(out)
    }
}

/// Renders the Deployment, Service and config claim of `app`.
pub fn app(
    _parent: &Parent,
    _spec: &MediaStackSpec,
    _app: &App,
    _app_spec: &AppSpec,
    _inputs: &Inputs,
) -> Result<AppObjects, RenderError> {
    Err(RenderError::Invalid(
        "workload rendering is not implemented yet".into(),
    ))
}
