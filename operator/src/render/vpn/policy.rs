//! The consumer pod's NetworkPolicy: the kill switch's backstop, enforced
//! by the CNI outside the pod, so it holds even if gluetun's firewall
//! inside the pod is gone.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Plan;
use super::cidr::{Cidr, minimal_cover};
use super::sidecar::{exporter_port, policy_ports};
use super::validate::custom_endpoint;
use crate::api::VpnGateway;
use crate::api::vpngateway::{Provider, VpnType};
use crate::catalog::App;
use crate::render::OperatorPeer;
use crate::render::meta::Parent;

/// Name suffix of the policy: `<stack>-<app>-vpn`.
pub const SUFFIX: &str = "vpn";

/// The UDP port gluetun connects to with WireGuard, per provider: gluetun's
/// default WireGuard port of the provider (`internal/provider/*/connection.go`;
/// a VpnGateway cannot choose another). `None`: gluetun has no WireGuard
/// support for the provider, nothing is let out and the tunnel cannot come
/// up (fail closed).
pub(super) fn wireguard_port(provider: Provider) -> Option<u16> {
    match provider {
        Provider::Airvpn => Some(1637),
        Provider::Fastestvpn
        | Provider::Mullvad
        | Provider::Nordvpn
        | Provider::Protonvpn
        | Provider::Surfshark => Some(51820),
        Provider::Ivpn => Some(58237),
        Provider::Windscribe => Some(1194),
        _ => None,
    }
}

/// The UDP ports gluetun connects to with OpenVPN (pinned to UDP by
/// `OPENVPN_PROTOCOL=udp`), per provider: gluetun's default OpenVPN UDP
/// port of the provider (`internal/provider/*/connection.go`). Private
/// Internet Access: 1198 with the `normal` encryption preset, 1197 with
/// `strong`. Empty: no OpenVPN (Mullvad, custom; refused by the CRD).
pub(super) fn openvpn_udp_ports(provider: Provider) -> &'static [u16] {
    match provider {
        Provider::Airvpn
        | Provider::Ivpn
        | Provider::Nordvpn
        | Provider::Privado
        | Provider::Privatevpn
        | Provider::Protonvpn
        | Provider::Surfshark
        | Provider::Windscribe => &[1194],
        Provider::Cyberghost
        | Provider::Giganews
        | Provider::Ipvanish
        | Provider::PerfectPrivacy
        | Provider::Vyprvpn => &[443],
        Provider::Expressvpn => &[1195],
        Provider::Fastestvpn => &[4443],
        Provider::Hidemyass => &[553],
        Provider::PrivateInternetAccess => &[1197, 1198],
        Provider::Purevpn => &[53],
        Provider::Torguard => &[1912],
        Provider::VpnSecure => &[1282],
        Provider::VpnUnlimited => &[1197],
        Provider::Mullvad | Provider::Custom => &[],
    }
}

/// Private, shared and link-local ranges: never a provider's VPN server, so
/// they are cut out of the "internet" egress rule (link-local also covers
/// cloud metadata endpoints).
const PRIVATE: [&str; 5] = [
    "10.0.0.0/8",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
];

pub(super) fn build(
    parent: &Parent,
    app: &App,
    plan: &Plan<'_>,
    operator: Option<&OperatorPeer>,
) -> NetworkPolicy {
    let name = parent.child_name(&format!("{}-{SUFFIX}", app.name));
    let (egress, ingress) = match (plan.gateway, plan.is_open()) {
        (Some(gw), true) => (egress(gw, plan), ingress(app, plan, operator)),
        // Fail closed: nothing in, nothing out.
        _ => (Vec::new(), Vec::new()),
    };
    NetworkPolicy {
        metadata: parent.meta(&name, app.name, "vpn"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(parent.selector(app.name)),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Egress".into(), "Ingress".into()]),
            egress: Some(egress),
            ingress: Some(ingress),
        }),
    }
}

/// Out: (a) the VPN transport, (b) cluster DNS, (c) the allowed subnets.
///
/// (a) is UDP only, to the port of the protocol and provider
/// ([`wireguard_port`], [`openvpn_udp_ports`]): for a `custom` server
/// exactly `spec.endpoint` (its address, `/32` or `/128`, and port); for a
/// provider any public IPv4 address (the servers' addresses change with
/// gluetun's server list), except the cluster and private ranges. IPv6 is
/// let out only where it is configured explicitly: an IPv6 `custom`
/// endpoint, or IPv6 allowed subnets.
fn egress(gw: &VpnGateway, plan: &Plan<'_>) -> Vec<NetworkPolicyEgressRule> {
    let mut rules = Vec::new();
    if let Some(rule) = transport(gw, plan) {
        rules.push(rule);
    }
    rules.push(NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(labels("kubernetes.io/metadata.name", "kube-system")),
            pod_selector: Some(labels("k8s-app", "kube-dns")),
            ip_block: None,
        }]),
        ports: Some(vec![port("UDP", Some(53)), port("TCP", Some(53))]),
    });
    if !plan.allowed.is_empty() {
        rules.push(NetworkPolicyEgressRule {
            to: Some(ip_blocks(&plan.allowed)),
            ports: None,
        });
    }
    rules
}

/// The VPN transport rule; `None` when the provider has no known port for
/// the protocol (nothing goes out: fail closed).
fn transport(gw: &VpnGateway, plan: &Plan<'_>) -> Option<NetworkPolicyEgressRule> {
    if gw.spec.provider == Provider::Custom {
        let (ip, p) = custom_endpoint(gw)?;
        let host = Cidr::parse_host_or_subnet(&ip.to_string())?;
        return Some(NetworkPolicyEgressRule {
            to: Some(ip_blocks(&[host])),
            ports: Some(vec![port("UDP", Some(p))]),
        });
    }
    let ports: Vec<u16> = match gw.spec.vpn_type {
        VpnType::Wireguard => wireguard_port(gw.spec.provider).into_iter().collect(),
        VpnType::Openvpn => openvpn_udp_ports(gw.spec.provider).to_vec(),
    };
    if ports.is_empty() {
        return None;
    }
    let mut cut: Vec<Cidr> = plan.cluster.iter().copied().filter(Cidr::is_ipv4).collect();
    cut.extend(PRIVATE.iter().filter_map(|s| Cidr::parse(s)));
    let cut = minimal_cover(cut);
    Some(NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: "0.0.0.0/0".into(),
                except: Some(
                    cut.iter()
                        .filter(|c| c.prefix() > 0)
                        .map(ToString::to_string)
                        .collect(),
                ),
            }),
            ..Default::default()
        }]),
        ports: Some(ports.iter().map(|p| port("UDP", Some(*p))).collect()),
    })
}

/// In: the input ports from pods of the namespace (Traefik, the
/// dashboard) and the allowed subnets; the exporter's metrics port from any
/// namespace (Prometheus usually runs elsewhere). The health port is not
/// opened: the kubelet probes from the node, which NetworkPolicies do not
/// filter.
fn ingress(
    app: &App,
    plan: &Plan<'_>,
    operator: Option<&OperatorPeer>,
) -> Vec<NetworkPolicyIngressRule> {
    let ports = policy_ports(plan, app);
    let metrics = exporter_port(app).filter(|p| ports.contains(p));
    let web: Vec<u16> = ports
        .iter()
        .copied()
        .filter(|p| Some(*p) != metrics)
        .collect();
    let mut rules = Vec::new();
    if !web.is_empty() {
        let mut from = vec![NetworkPolicyPeer {
            pod_selector: Some(LabelSelector::default()),
            ..Default::default()
        }];
        from.extend(ip_blocks(&plan.allowed));
        // The operator's wiring calls the app's web API from its own
        // namespace (fail closed still admits nothing: no rule at all).
        if let Some(op) = operator {
            from.push(NetworkPolicyPeer {
                namespace_selector: Some(labels("kubernetes.io/metadata.name", &op.namespace)),
                pod_selector: Some(LabelSelector {
                    match_labels: (!op.pod_labels.is_empty()).then(|| op.pod_labels.clone()),
                    match_expressions: None,
                }),
                ..Default::default()
            });
        }
        rules.push(NetworkPolicyIngressRule {
            from: Some(from),
            ports: Some(web.iter().map(|p| port("TCP", Some(*p))).collect()),
        });
    }
    if let Some(m) = metrics {
        rules.push(NetworkPolicyIngressRule {
            from: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector::default()),
                ..Default::default()
            }]),
            ports: Some(vec![port("TCP", Some(m))]),
        });
    }
    rules
}

fn ip_blocks(cidrs: &[Cidr]) -> Vec<NetworkPolicyPeer> {
    cidrs
        .iter()
        .map(|c| NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: c.to_string(),
                except: None,
            }),
            ..Default::default()
        })
        .collect()
}

fn labels(key: &str, value: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(key.to_string(), value.to_string())])),
        match_expressions: None,
    }
}

fn port(protocol: &str, number: Option<u16>) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(protocol.into()),
        port: number.map(|n| IntOrString::Int(i32::from(n))),
        end_port: None,
    }
}
