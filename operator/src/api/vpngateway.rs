//! The `VpnGateway` resource: a gluetun VPN definition that the operator
//! injects as a native sidecar into each consumer pod.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::SecretRef;

/// Default gluetun image: pinned, never `latest`.
pub const DEFAULT_GLUETUN_IMAGE: &str = "qmcgaw/gluetun:v3.41.1";

/// A VPN definition (gluetun). It runs no pod by itself: every app that
/// references it gets gluetun as a native sidecar sharing the pod network,
/// with gluetun's firewall as a kill switch.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mediastack.io",
    version = "v1alpha1",
    kind = "VpnGateway",
    namespaced,
    derive = "PartialEq",
    status = "VpnGatewayStatus",
    shortname = "vpngw",
    category = "media",
    doc = "A gluetun VPN definition, injected as a native sidecar with a kill switch into the apps that reference it.",
    printcolumn(name = "Provider", type_ = "string", json_path = ".spec.provider"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Port-Forwarding",
        type_ = "string",
        json_path = ".status.portForwarding"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "!(self.provider == 'mullvad' && self.type == 'openvpn')"
).message("Mullvad supports only WireGuard: set type: wireguard"))]
#[x_kube(validation = kube::core::Rule::new(
    "self.provider != 'custom' || self.type == 'wireguard'"
).message("provider custom is supported with type: wireguard only"))]
pub struct VpnGatewaySpec {
    /// VPN service provider (gluetun `VPN_SERVICE_PROVIDER`); `custom` for your own WireGuard server.
    pub provider: Provider,
    /// VPN protocol.
    #[serde(rename = "type", default)]
    pub vpn_type: VpnType,
    /// Secret with the credentials. WireGuard: `privateKey` and `addresses`
    /// (plus `publicKey`, `endpointIP` and `endpointPort` for `custom`;
    /// optional `presharedKey`);
    /// OpenVPN: `username` and `password`.
    pub credentials_secret_ref: SecretRef,
    /// Server selection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<Servers>,
    /// The kill switch: what is reachable outside the tunnel.
    #[serde(default)]
    pub kill_switch: KillSwitch,
    /// Ports reachable from the cluster on the consumer pod (WebUI, probes).
    /// Default: the consumer's own ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    #[schemars(inner(range(min = 1, max = 65535)))]
    pub input_ports: Vec<i32>,
    /// Port forwarding from the provider to the consumer's listen port.
    #[serde(default)]
    pub port_forwarding: PortForwarding,
    /// gluetun image; pinned.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^[^\s]+$"))]
    pub image: String,
    /// Resources of the gluetun sidecar; the memory limit is at least 256Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

fn default_image() -> String {
    DEFAULT_GLUETUN_IMAGE.into()
}

/// VPN providers supported by gluetun (the value is gluetun's provider name with spaces as '-').
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    Airvpn,
    Custom,
    Cyberghost,
    Expressvpn,
    Fastestvpn,
    Giganews,
    Hidemyass,
    Ipvanish,
    Ivpn,
    Mullvad,
    Nordvpn,
    PerfectPrivacy,
    Privado,
    PrivateInternetAccess,
    Privatevpn,
    Protonvpn,
    Purevpn,
    Surfshark,
    Torguard,
    VpnSecure,
    VpnUnlimited,
    Vyprvpn,
    Windscribe,
}

impl Provider {
    /// The value of gluetun's `VPN_SERVICE_PROVIDER`.
    pub fn gluetun_name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(|s| s.replace('-', " ")))
            .unwrap_or_default()
    }

    /// Whether gluetun can forward a port with this provider. Mullvad removed
    /// port forwarding in 2023.
    pub fn supports_port_forwarding(self) -> bool {
        matches!(
            self,
            Provider::PrivateInternetAccess
                | Provider::Protonvpn
                | Provider::PerfectPrivacy
                | Provider::Privatevpn
        )
    }
}

/// VPN protocol.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum VpnType {
    #[default]
    Wireguard,
    Openvpn,
}

/// Server selection (gluetun `SERVER_*` settings).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Servers {
    /// Countries, e.g. `Sweden`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    /// Cities, e.g. `Gothenburg`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cities: Vec<String>,
    /// Server host names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Only servers the provider owns (Mullvad).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned_only: Option<bool>,
}

/// The kill switch (gluetun firewall). It is always on.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KillSwitch {
    /// Subnets reachable outside the tunnel in addition to the cluster's pod
    /// and service ranges, e.g. the LAN. Must not overlap the tunnel address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = kube::core::Rule::new("self.all(c, isCIDR(c))").message("allowedSubnets entries must be CIDRs such as 192.168.1.0/24"))]
    #[x_kube(validation = kube::core::Rule::new("self.all(c, !isCIDR(c) || cidr(c).prefixLength() >= 8)").message("allowedSubnets must not contain a default route or very wide range (prefix shorter than /8): that would bypass the tunnel"))]
    #[schemars(length(max = 32), inner(length(min = 1, max = 43)))]
    pub allowed_subnets: Vec<String>,
    /// The cluster's pod and service ranges. Discovered from the Nodes'
    /// `podCIDRs` and the `ServiceCIDR` objects when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self.all(c, isCIDR(c))").message("clusterSubnets entries must be CIDRs such as 10.42.0.0/16"))]
    #[schemars(length(max = 32), inner(length(min = 1, max = 43)))]
    pub cluster_subnets: Option<Vec<String>>,
}

/// Port forwarding settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PortForwarding {
    /// Ask the provider for a forwarded port and give it to the consumer as
    /// its listen port. Not every provider supports it (Mullvad does not).
    #[serde(default)]
    pub enabled: bool,
}

/// Observed state of a VpnGateway.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VpnGatewayStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (spec valid, Secret present with the needed keys), `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Apps that use this gateway, as `<stack>/<app>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<String>,
    /// `Disabled`, `Enabled` or `Unsupported` (the provider has no port forwarding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_forwarding: Option<String>,
}
