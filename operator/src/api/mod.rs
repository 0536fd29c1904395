//! The custom resources of group `mediastack.io`, version `v1alpha1`. Types
//! only: no client code lives here.

pub mod common;
pub mod condition;
pub mod ingressroute;
pub mod mediastack;
pub mod vpngateway;

pub use common::{GROUP, LocalRef, SecretRef, VERSION};
pub use ingressroute::{IngressRoute, IngressRouteSpec, IngressRouteStatus};
pub use mediastack::{AppSpec, MediaStack, MediaStackSpec, MediaStackStatus};
pub use vpngateway::{VpnGateway, VpnGatewaySpec, VpnGatewayStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD of the operator, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![MediaStack::crd(), VpnGateway::crd(), IngressRoute::crd()]
}

/// The CRDs as one multi-document YAML stream, as committed under `crds/`.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
