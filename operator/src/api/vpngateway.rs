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
        name = "Tunnel",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"TunnelReady\")].status"
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
#[x_kube(validation = kube::core::Rule::new(
    "self.provider != 'custom' || has(self.endpoint)"
).message("endpoint (ip and port of your WireGuard server) is required with provider custom"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.endpoint) || self.provider == 'custom'"
).message("endpoint is only for provider custom: gluetun picks the provider's servers itself"))]
#[x_kube(validation = kube::core::Rule::new(MULLVAD_TUNNEL_RULE)
    .message("killSwitch.allowedSubnets must not overlap Mullvad's tunnel range 10.64.0.0/10 or fc00:bbbb:bbbb:bb01::/64"))]
pub struct VpnGatewaySpec {
    /// VPN service provider (gluetun `VPN_SERVICE_PROVIDER`); `custom` for your own WireGuard server.
    pub provider: Provider,
    /// VPN protocol.
    #[serde(rename = "type", default)]
    pub vpn_type: VpnType,
    /// Secret with the credentials. WireGuard: `privateKey` and `addresses`
    /// (plus `publicKey` for `custom`; optional `presharedKey`);
    /// OpenVPN: `username` and `password`.
    pub credentials_secret_ref: SecretRef,
    /// `custom` provider only (and required there): the WireGuard server's
    /// address and UDP port. Not a secret; the NetworkPolicy lets the pod
    /// reach exactly this address and port outside the tunnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Endpoint>,
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

/// CEL: with provider `mullvad`, no `allowedSubnets` entry overlaps
/// Mullvad's documented tunnel ranges (two CIDRs overlap when one contains
/// the other). Not applied to `clusterSubnets`: the default service range
/// of kubeadm and kind (10.96.0.0/12) lies inside 10.64.0.0/10 without
/// touching a device's address; cluster ranges are checked against the
/// actual tunnel address from the Secret instead.
const MULLVAD_TUNNEL_RULE: &str = "self.provider != 'mullvad' || !has(self.killSwitch) || \
     !has(self.killSwitch.allowedSubnets) || self.killSwitch.allowedSubnets.all(c, !isCIDR(c) || \
     ['10.64.0.0/10', 'fc00:bbbb:bbbb:bb01::/64'].all(t, \
     cidr(c).ip().family() != cidr(t).ip().family() || \
     !(cidr(c).containsCIDR(t) || cidr(t).containsCIDR(c))))";

/// CEL: every entry of the list is inside one of the ranges that may stay
/// outside the tunnel (RFC 1918, CGNAT 100.64.0.0/10, link-local, ULA
/// fc00::/7); this also bounds the prefix (IPv4 at least /8, IPv6 at least /7).
macro_rules! private_rule {
    () => {
        "self.all(c, !isCIDR(c) || ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', \
         '100.64.0.0/10', '169.254.0.0/16', 'fc00::/7', 'fe80::/10'].exists(r, \
         cidr(r).ip().family() == cidr(c).ip().family() && cidr(r).containsCIDR(c)))"
    };
}

/// The server of a `custom` WireGuard gateway.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// IPv4 or IPv6 address of the server (gluetun `WIREGUARD_ENDPOINT_IP`).
    #[x_kube(validation = kube::core::Rule::new("isIP(self)").message("endpoint.ip must be an IP address such as 203.0.113.7"))]
    #[schemars(length(min = 2, max = 45))]
    pub ip: String,
    /// UDP port of the server (gluetun `WIREGUARD_ENDPOINT_PORT`).
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
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
    /// and service ranges, e.g. the LAN. Only private ranges: inside
    /// 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10,
    /// 169.254.0.0/16, fc00::/7 or fe80::/10. Must not overlap the tunnel
    /// address (nor, with Mullvad, its tunnel range 10.64.0.0/10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = kube::core::Rule::new("self.all(c, isCIDR(c))").message("allowedSubnets entries must be CIDRs such as 192.168.1.0/24"))]
    #[x_kube(validation = kube::core::Rule::new(private_rule!()).message("killSwitch.allowedSubnets entries must lie inside a private range (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, 169.254.0.0/16, fc00::/7, fe80::/10): a public range would bypass the tunnel"))]
    #[schemars(length(max = 32), inner(length(min = 1, max = 43)))]
    pub allowed_subnets: Vec<String>,
    /// The cluster's pod and service ranges. Discovered from the Nodes'
    /// `podCIDRs` and the `ServiceCIDR` objects when unset. Private ranges
    /// only, like `allowedSubnets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self.all(c, isCIDR(c))").message("clusterSubnets entries must be CIDRs such as 10.42.0.0/16"))]
    #[x_kube(validation = kube::core::Rule::new(private_rule!()).message("killSwitch.clusterSubnets entries must lie inside a private range (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, 169.254.0.0/16, fc00::/7, fe80::/10): a public range would bypass the tunnel"))]
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
    /// `Ready` (spec valid, Secret present with the needed keys),
    /// `TunnelReady` (every consumer pod's gluetun is ready: the tunnel is
    /// up), `PortForwarding`, `Reconciling`, `Stalled`.
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
