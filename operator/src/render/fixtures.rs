//! Test fixtures built from the example manifests (the ones the issues
//! require to apply unchanged), plus resolved inputs.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;

use super::meta::Parent;
use super::{Inputs, VpnResolution};
use crate::api::{IngressRoute, MediaStack, VpnGateway};

/// The example MediaStack `media/home`, as stored by the API server (with a UID).
pub fn stack() -> MediaStack {
    let mut s: MediaStack = serde_yaml::from_str(include_str!("../../../examples/mediastack.yaml"))
        .expect("example MediaStack parses");
    s.metadata.uid = Some("00000000-0000-0000-0000-000000000001".into());
    s.metadata.generation = Some(1);
    s
}

/// The example VpnGateway `media/mullvad`.
pub fn gateway() -> VpnGateway {
    let mut g: VpnGateway = serde_yaml::from_str(include_str!("../../../examples/vpngateway.yaml"))
        .expect("example VpnGateway parses");
    g.metadata.uid = Some("00000000-0000-0000-0000-000000000002".into());
    g
}

/// The example IngressRoute `media/home-assistant`.
pub fn route() -> IngressRoute {
    let mut r: IngressRoute =
        serde_yaml::from_str(include_str!("../../../examples/ingressroute.yaml"))
            .expect("example IngressRoute parses");
    r.metadata.uid = Some("00000000-0000-0000-0000-000000000003".into());
    r
}

/// A WireGuard credentials Secret with every key the example gateway needs.
pub fn wireguard_secret() -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some("mullvad-wireguard".into()),
            namespace: Some("media".into()),
            ..Default::default()
        },
        data: Some(
            [
                ("privateKey", "cHJpdmF0ZQ=="),
                ("addresses", "10.64.0.2/32"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect(),
        ),
        ..Default::default()
    }
}

/// The parent of the example stack's children.
pub fn parent() -> Parent {
    Parent::of(&stack()).expect("example stack has name, namespace and uid")
}

/// Inputs with the example gateway ready, the CRDs present and Jellyfin ready.
pub fn inputs() -> Inputs {
    Inputs {
        vpn: [(
            "mullvad".to_string(),
            VpnResolution::Ready {
                gateway: Box::new(gateway()),
                hash: "0123456789abcdef".into(),
                secret_keys: vec!["addresses".into(), "privateKey".into()],
            },
        )]
        .into(),
        cluster_subnets: vec!["10.244.0.0/16".into(), "10.96.0.0/16".into()],
        monitoring_crds: true,
        tunnel_token_ready: false,
        ready_apps: vec!["jellyfin".into()],
        operator: None,
    }
}
