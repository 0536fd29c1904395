//! Builders shared by the ingress NetworkPolicies of the edge components
//! (Traefik, cloudflared, Dozzle): one policy per component that selects the
//! component's pods and admits only the listed rules.

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::Parent;

/// A TCP port, by its container port name.
pub fn tcp_port(name: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        end_port: None,
    }
}

/// The pods of one component of the stack (by its selector labels).
pub fn stack_pods(parent: &Parent, component: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(parent.label_selector(component)),
        ..Default::default()
    }
}

/// An ingress-only policy for the pods of `component`: traffic to them is
/// admitted by `rules` alone.
pub fn ingress_only(
    metadata: ObjectMeta,
    parent: &Parent,
    component: &str,
    rules: Vec<NetworkPolicyIngressRule>,
) -> NetworkPolicy {
    NetworkPolicy {
        metadata,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(parent.label_selector(component)),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(rules),
            egress: None,
        }),
    }
}
