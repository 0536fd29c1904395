//! Which primaries a watched object affects: pure functions over store
//! snapshots, one per relation the controllers follow.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;

use crate::api::{IngressRoute, MediaStack, VpnGateway};
use crate::render::dozzle::NAMESPACE_LABEL;
use crate::render::meta::STACK_LABEL;

/// The MediaStack that owns child `obj`: its owner reference (namespaced
/// children), or its stack and namespace labels (cluster-scoped children,
/// which cannot have a namespaced owner).
pub fn stack_of_child<K: kube::Resource>(obj: &K) -> Option<ObjectRef<MediaStack>> {
    match obj.meta().namespace.as_deref() {
        Some(ns) => obj
            .owner_references()
            .iter()
            .find(|o| {
                o.kind == "MediaStack"
                    && o.api_version.split('/').next() == Some("mediastack.io")
                    && o.controller == Some(true)
            })
            .map(|o| ObjectRef::new(&o.name).within(ns)),
        None => {
            let labels = obj.labels();
            let (ns, stack) = (labels.get(NAMESPACE_LABEL)?, labels.get(STACK_LABEL)?);
            Some(ObjectRef::new(stack).within(ns))
        }
    }
}

/// The stacks of `gw`'s namespace with an app behind `gw`.
pub fn stacks_using_gateway(
    stacks: &[Arc<MediaStack>],
    gw: &VpnGateway,
) -> Vec<ObjectRef<MediaStack>> {
    let name = gw.name_any();
    stacks
        .iter()
        .filter(|s| s.namespace() == gw.namespace())
        .filter(|s| {
            s.spec
                .apps
                .enabled()
                .any(|(_, a)| a.vpn.as_ref().is_some_and(|v| v.gateway_ref == name))
        })
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// The gateways of `secret`'s namespace whose credentials it holds.
pub fn gateways_using_secret(
    gateways: &[Arc<VpnGateway>],
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<VpnGateway>> {
    let name = secret.name_any();
    gateways
        .iter()
        .filter(|g| {
            g.namespace() == secret.namespace() && g.spec.credentials_secret_ref.name == name
        })
        .map(|g| ObjectRef::from_obj(g.as_ref()))
        .collect()
}

/// The stacks that read `secret`: the tunnel token, the Traefik dashboard
/// users, or the VPN credentials of a gateway one of their apps is behind.
pub fn stacks_using_secret(
    stacks: &[Arc<MediaStack>],
    gateways: &[Arc<VpnGateway>],
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<MediaStack>> {
    let name = secret.name_any();
    let via: Vec<String> = gateways_using_secret(gateways, secret)
        .into_iter()
        .map(|g| g.name)
        .collect();
    stacks
        .iter()
        .filter(|s| s.namespace() == secret.namespace() && stack_reads_secret(s, &name, &via))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// Whether `stack` reads Secret `name`, directly or through one of `gateways`
/// (the VpnGateways whose credentials it is).
fn stack_reads_secret(stack: &MediaStack, name: &str, gateways: &[String]) -> bool {
    let ingress = &stack.spec.ingress;
    ingress
        .tunnel
        .as_ref()
        .is_some_and(|t| t.token_secret_ref.name == name)
        || ingress
            .traefik
            .dashboard_auth_secret_ref
            .as_ref()
            .is_some_and(|r| r.name == name)
        || stack.spec.apps.enabled().any(|(_, a)| {
            a.api_key_secret_ref
                .as_ref()
                .is_some_and(|k| k.name == name)
                || a.vpn
                    .as_ref()
                    .is_some_and(|v| gateways.contains(&v.gateway_ref))
        })
}

/// The gateways of `stack`'s namespace (their consumers are its apps).
pub fn gateways_in_namespace_of(
    gateways: &[Arc<VpnGateway>],
    stack: &MediaStack,
) -> Vec<ObjectRef<VpnGateway>> {
    gateways
        .iter()
        .filter(|g| g.namespace() == stack.namespace())
        .map(|g| ObjectRef::from_obj(g.as_ref()))
        .collect()
}

/// The routes of `stack`'s namespace (a route without `stackRef` uses the
/// namespace's only stack).
pub fn routes_in_namespace_of(
    routes: &[Arc<IngressRoute>],
    stack: &MediaStack,
) -> Vec<ObjectRef<IngressRoute>> {
    routes
        .iter()
        .filter(|r| r.namespace() == stack.namespace())
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// The gateway a VPN consumer pod runs behind (its
/// [`crate::render::vpn::GATEWAY_ANNOTATION`], in its namespace): the one
/// whose `TunnelReady` the pod's readiness changes.
pub fn gateway_of_consumer_pod(
    pod: &k8s_openapi::api::core::v1::Pod,
) -> Option<ObjectRef<VpnGateway>> {
    let name = pod
        .annotations()
        .get(crate::render::vpn::GATEWAY_ANNOTATION)?;
    Some(ObjectRef::new(name).within(&pod.namespace()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::DynamicObject;
    use serde_json::json;

    fn stack(ns: &str, name: &str, mut spec: serde_json::Value) -> Arc<MediaStack> {
        spec["storage"] = json!({"data": {"hostPath": "/srv/data"}});
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "mediastack.io/v1alpha1", "kind": "MediaStack",
                "metadata": {"name": name, "namespace": ns}, "spec": spec,
            }))
            .expect("stack"),
        )
    }

    fn gateway(ns: &str, name: &str, secret: &str) -> Arc<VpnGateway> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "mediastack.io/v1alpha1", "kind": "VpnGateway",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"provider": "mullvad", "protocol": "wireguard",
                         "credentialsSecretRef": {"name": secret}},
            }))
            .expect("gateway"),
        )
    }

    fn route(ns: &str, name: &str) -> Arc<IngressRoute> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "mediastack.io/v1alpha1", "kind": "IngressRoute",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"host": "a.example.com", "service": {"name": "a", "port": 80}},
            }))
            .expect("route"),
        )
    }

    fn secret(ns: &str, name: &str) -> PartialObjectMeta<Secret> {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns},
        }))
        .expect("secret metadata")
    }

    fn names<K: kube::Resource>(refs: Vec<ObjectRef<K>>) -> Vec<String>
    where
        K::DynamicType: Eq + std::hash::Hash + Clone,
    {
        refs.into_iter()
            .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
            .collect()
    }

    fn behind(gw: &str) -> serde_json::Value {
        json!({"apps": {"qbittorrent": {"vpn": {"gatewayRef": gw}}}})
    }

    #[test]
    fn a_child_maps_to_its_controlling_stack_or_by_labels_when_cluster_scoped() {
        let owned: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "home-sonarr", "namespace": "media", "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "1", "controller": true},
                {"apiVersion": "mediastack.io/v1alpha1", "kind": "MediaStack", "name": "home", "uid": "2", "controller": true}]},
        }))
        .expect("owned");
        assert_eq!(
            names(stack_of_child(&owned).into_iter().collect()),
            ["media/home"]
        );
        // Not controlled by a MediaStack: nothing to reconcile.
        let foreign: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "x", "namespace": "media", "ownerReferences": [
                {"apiVersion": "other.io/v1", "kind": "MediaStack", "name": "home", "uid": "3", "controller": true}]},
        }))
        .expect("foreign");
        assert!(stack_of_child(&foreign).is_none());
        let binding: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "b", "labels": {"mediastack.io/stack": "home", "mediastack.io/namespace": "media"}},
        }))
        .expect("binding");
        assert_eq!(
            names(stack_of_child(&binding).into_iter().collect()),
            ["media/home"]
        );
        let unlabelled: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "b", "labels": {"mediastack.io/stack": "home"}},
        }))
        .expect("binding");
        assert!(stack_of_child(&unlabelled).is_none());
    }

    #[test]
    fn a_gateway_maps_to_the_stacks_behind_it_in_its_namespace() {
        let stacks = [
            stack("media", "home", behind("mullvad")),
            stack("media", "plain", json!({})),
            stack("media", "other-gw", behind("proton")),
            stack("elsewhere", "home", behind("mullvad")),
        ];
        let gw = gateway("media", "mullvad", "creds");
        assert_eq!(names(stacks_using_gateway(&stacks, &gw)), ["media/home"]);
        assert!(stacks_using_gateway(&stacks, &gateway("nowhere", "mullvad", "creds")).is_empty());
    }

    #[test]
    fn a_secret_maps_to_the_gateways_whose_credentials_it_holds() {
        let gateways = [
            gateway("media", "mullvad", "creds"),
            gateway("media", "proton", "other"),
            gateway("elsewhere", "mullvad", "creds"),
        ];
        assert_eq!(
            names(gateways_using_secret(&gateways, &secret("media", "creds"))),
            ["media/mullvad"]
        );
        assert!(gateways_using_secret(&gateways, &secret("media", "unused")).is_empty());
    }

    #[test]
    fn a_secret_maps_to_the_stacks_that_read_it() {
        let gateways = [gateway("media", "mullvad", "creds")];
        let stacks = [
            stack("media", "vpn", behind("mullvad")),
            stack(
                "media",
                "tunnel",
                json!({"ingress": {"tunnel": {"tokenSecretRef": {"name": "token"}}}}),
            ),
            stack(
                "media",
                "dash",
                json!({"ingress": {"traefik": {"dashboardAuthSecretRef": {"name": "users"}}}}),
            ),
            stack("media", "plain", json!({})),
            stack(
                "elsewhere",
                "tunnel",
                json!({"ingress": {"tunnel": {"tokenSecretRef": {"name": "token"}}}}),
            ),
        ];
        let hit = |s: &str| names(stacks_using_secret(&stacks, &gateways, &secret("media", s)));
        assert_eq!(hit("creds"), ["media/vpn"]);
        assert_eq!(hit("token"), ["media/tunnel"]);
        assert_eq!(hit("users"), ["media/dash"]);
        assert!(hit("unrelated").is_empty());
    }

    #[test]
    fn a_stack_maps_to_the_gateways_and_routes_of_its_namespace() {
        let gateways = [gateway("media", "a", "s"), gateway("elsewhere", "b", "s")];
        let routes = [route("media", "r"), route("elsewhere", "q")];
        let s = stack("media", "home", json!({}));
        assert_eq!(names(gateways_in_namespace_of(&gateways, &s)), ["media/a"]);
        assert_eq!(names(routes_in_namespace_of(&routes, &s)), ["media/r"]);
        let lonely = stack("empty", "home", json!({}));
        assert!(gateways_in_namespace_of(&gateways, &lonely).is_empty());
        assert!(routes_in_namespace_of(&routes, &lonely).is_empty());
    }

    #[test]
    fn a_consumer_pod_maps_to_its_own_gateway_only() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
            "metadata": {"name": "home-qbittorrent-1", "namespace": "media",
                "annotations": {crate::render::vpn::GATEWAY_ANNOTATION: "mullvad"}}
        }))
        .expect("pod");
        assert_eq!(
            gateway_of_consumer_pod(&pod),
            Some(ObjectRef::new("mullvad").within("media"))
        );
        let unannotated: k8s_openapi::api::core::v1::Pod =
            serde_json::from_value(json!({"metadata": {"name": "other", "namespace": "media"}}))
                .expect("pod");
        assert_eq!(gateway_of_consumer_pod(&unannotated), None);
    }
}
