//! Pure rendering: (spec, resolved references) -> desired child objects.
//!
//! Nothing here talks to the API server. Rendering the same inputs twice
//! gives byte-identical objects (no random values, no timestamps), so GitOps
//! tools and server-side apply see no drift.

pub mod dashboard;
pub mod datatree;
pub mod dozzle;
pub mod fail2ban;
#[cfg(test)]
pub mod fixtures;
pub mod meta;
pub mod monitoring;
pub mod netpol;
pub mod pod;
pub mod rbac;
pub mod route;
pub mod stack;
pub mod storage;
pub mod traefik;
pub mod traefik_crd;
pub mod tunnel;
pub mod vpn;
pub mod workload;

use std::collections::BTreeMap;

use kube::api::{ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use serde::Serialize;

use crate::api::VpnGateway;

/// One desired child object, ready for server-side apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Child {
    /// Where the object lives in the API (group, version, kind, plural).
    pub api: ApiResource,
    /// The object, with `apiVersion`/`kind`, name, namespace, labels and owner reference set.
    pub object: DynamicObject,
}

impl Child {
    /// Wraps a typed object (a `k8s-openapi` type).
    pub fn typed<K>(obj: &K) -> Result<Self, RenderError>
    where
        K: kube::Resource<DynamicType = ()> + Serialize,
    {
        let api = ApiResource::erase::<K>(&());
        let mut value = serde_json::to_value(obj).map_err(RenderError::Serialize)?;
        value["apiVersion"] = api.api_version.clone().into();
        value["kind"] = api.kind.clone().into();
        let object = serde_json::from_value(value).map_err(RenderError::Serialize)?;
        Ok(Self { api, object })
    }

    /// Wraps an object of a third-party CRD given as JSON (Traefik, prometheus-operator).
    pub fn custom(
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        mut value: serde_json::Value,
    ) -> Result<Self, RenderError> {
        let api =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        value["apiVersion"] = api.api_version.clone().into();
        value["kind"] = api.kind.clone().into();
        let object = serde_json::from_value(value).map_err(RenderError::Serialize)?;
        Ok(Self { api, object })
    }

    /// `Kind/name`, for messages and snapshot names.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.api.kind,
            self.object.metadata.name.as_deref().unwrap_or("")
        )
    }

    /// `group/Kind/name`: the child's identity (a `traefik.io` and a
    /// `mediastack.io` IngressRoute of one name are different children).
    pub fn id(&self) -> String {
        child_id(
            &self.api,
            self.object.metadata.name.as_deref().unwrap_or(""),
        )
    }

    /// The object as YAML, for golden snapshots.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(&self.object).unwrap_or_default()
    }
}

/// `group/Kind/name` of an object of `api` (see [`Child::id`]); the core
/// group has no prefix (`Service/name`).
pub fn child_id(api: &ApiResource, name: &str) -> String {
    if api.group.is_empty() {
        format!("{}/{name}", api.kind)
    } else {
        format!("{}/{}/{name}", api.group, api.kind)
    }
}

/// Errors of the pure render step. They mean the spec cannot be rendered
/// as given; the reconciler reports them as a `Stalled` condition.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot serialize a rendered object: {0}")]
    Serialize(#[source] serde_json::Error),
    #[error("invalid spec: {0}")]
    Invalid(String),
    /// A VPN-only app would be rendered without its VPN sidecar: nothing is
    /// applied for the stack.
    #[error("apps.{app} runs only behind a VpnGateway: set apps.{app}.vpn.gatewayRef")]
    VpnRequired { app: String },
}

/// What a VPN consumer may use, resolved by the reconciler from the
/// VpnGateway and its Secret.
#[derive(Clone, Debug, PartialEq)]
pub enum VpnResolution {
    /// The gateway exists, is valid and its Secret has every needed key.
    Ready {
        gateway: Box<VpnGateway>,
        /// Hash of the gateway spec and the Secret's data: a change rolls the consumer pods.
        hash: String,
        /// Keys present in the credentials Secret.
        secret_keys: Vec<String>,
    },
    /// The gateway cannot be used: the consumer is rendered fail-closed.
    Unavailable {
        /// The gateway, if it exists (its sidecar is still rendered).
        gateway: Option<Box<VpnGateway>>,
        /// Machine-readable reason, e.g. `VpnGatewayNotFound`.
        reason: String,
        /// What is wrong, for status and events.
        message: String,
    },
}

/// Everything the render step needs beyond the MediaStack itself: the
/// resolved references and facts about the cluster. Gathered by the
/// reconciler; plain data, so tests build it by hand.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Inputs {
    /// VPN resolution per gateway name referenced by an app.
    pub vpn: BTreeMap<String, VpnResolution>,
    /// The cluster's pod and service ranges (reachable outside the tunnel).
    pub cluster_subnets: Vec<String>,
    /// The `monitoring.coreos.com` CRDs are installed.
    pub monitoring_crds: bool,
    /// The tunnel token Secret exists with its `token` key.
    pub tunnel_token_ready: bool,
    /// Names of apps whose Deployment currently has all replicas ready
    /// (drives dependency order: Jellyseerr waits for Jellyfin).
    pub ready_apps: Vec<String>,
    /// Where the operator's own pods run, so that the NetworkPolicy in front
    /// of an app the wiring calls admits them. `None` when not known (the
    /// operator runs outside the cluster, or without `--operator-namespace`).
    pub operator: Option<OperatorPeer>,
}

/// The operator's pods, as a NetworkPolicy peer: pods with `pod_labels`
/// (all pods when empty) in namespace `namespace`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OperatorPeer {
    pub namespace: String,
    pub pod_labels: BTreeMap<String, String>,
}

/// A Secret with random values that the reconciler creates once, if absent,
/// and never updates (API keys, control-server credentials). Rendering only
/// names it, so the rendered objects stay deterministic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedSecret {
    pub name: String,
    /// Keys that get a random 32-character hex value.
    pub random_keys: Vec<String>,
    /// Keys with fixed content (may refer to the random ones as `{{key}}`).
    pub templated: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn children_of_one_kind_name_in_two_groups_have_distinct_ids() {
        let ours = Child::custom(
            "mediastack.io",
            "v1alpha1",
            "IngressRoute",
            "ingressroutes",
            json!({"metadata": {"name": "home-sonarr"}}),
        )
        .expect("ours");
        let traefik = Child::custom(
            "traefik.io",
            "v1alpha1",
            "IngressRoute",
            "ingressroutes",
            json!({"metadata": {"name": "home-sonarr"}}),
        )
        .expect("traefik");
        assert_eq!(ours.key(), traefik.key());
        assert_ne!(ours.id(), traefik.id());
        assert_eq!(traefik.id(), "traefik.io/IngressRoute/home-sonarr");
        let keep: std::collections::BTreeSet<String> = [ours.id()].into();
        assert!(
            !keep.contains(&traefik.id()),
            "the keep set tells them apart"
        );
        let svc = Child::typed(&k8s_openapi::api::core::v1::Service {
            metadata: kube::api::ObjectMeta {
                name: Some("a".into()),
                ..Default::default()
            },
            ..Default::default()
        })
        .expect("service");
        assert_eq!(svc.id(), "Service/a");
    }
}
