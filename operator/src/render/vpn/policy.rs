//! The consumer pod's NetworkPolicy: the kill switch's second layer,
//! enforced by the CNI outside the pod, so it holds even if gluetun's
//! firewall inside the pod is gone.

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
use crate::api::VpnGateway;
use crate::api::vpngateway::{Provider, VpnType};
use crate::catalog::App;
use crate::render::meta::Parent;

/// Name suffix of the policy: `<stack>-<app>-vpn`.
pub const SUFFIX: &str = "vpn";

/// Providers whose WireGuard servers all listen on UDP 51820 in gluetun's
/// server data (the port cannot be chosen through a VpnGateway).
const WIREGUARD_51820: [Provider; 4] = [
    Provider::Mullvad,
    Provider::Nordvpn,
    Provider::Protonvpn,
    Provider::Surfshark,
];

/// Private, shared and link-local ranges: never a provider's VPN server, so
/// they are cut out of the "internet" egress rule (link-local also covers
/// cloud metadata endpoints). A `custom` server may be private, so for it
/// only link-local is cut.
const PRIVATE: [&str; 7] = [
    "10.0.0.0/8",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
    "fe80::/10",
];
const LINK_LOCAL: [&str; 2] = ["169.254.0.0/16", "fe80::/10"];

pub(super) fn build(parent: &Parent, app: &App, plan: &Plan<'_>) -> NetworkPolicy {
    let name = parent.child_name(&format!("{}-{SUFFIX}", app.name));
    let (egress, ingress) = match (plan.gateway, plan.is_open()) {
        (Some(gw), true) => (egress(gw, plan), ingress(app, plan)),
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

/// Out: (a) the VPN transport to addresses outside the cluster and private
/// ranges, (b) cluster DNS, (c) the allowed subnets.
fn egress(gw: &VpnGateway, plan: &Plan<'_>) -> Vec<NetworkPolicyEgressRule> {
    let fixed: &[&str] = if gw.spec.provider == Provider::Custom {
        &LINK_LOCAL
    } else {
        &PRIVATE
    };
    let mut cut: Vec<Cidr> = plan.cluster.clone();
    cut.extend(fixed.iter().filter_map(|s| Cidr::parse(s)));
    let cut = minimal_cover(cut);
    let internet = |all: &str, v4: bool| NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: all.into(),
            except: Some(
                cut.iter()
                    .filter(|c| c.is_ipv4() == v4 && c.prefix() > 0)
                    .map(ToString::to_string)
                    .collect(),
            ),
        }),
        ..Default::default()
    };
    let mut rules = vec![
        NetworkPolicyEgressRule {
            to: Some(vec![internet("0.0.0.0/0", true), internet("::/0", false)]),
            ports: Some(tunnel_ports(gw)),
        },
        NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(labels("kubernetes.io/metadata.name", "kube-system")),
                pod_selector: Some(labels("k8s-app", "kube-dns")),
                ip_block: None,
            }]),
            ports: Some(vec![port("UDP", Some(53)), port("TCP", Some(53))]),
        },
    ];
    if !plan.allowed.is_empty() {
        rules.push(NetworkPolicyEgressRule {
            to: Some(ip_blocks(&plan.allowed)),
            ports: None,
        });
    }
    rules
}

/// The VPN transport: UDP 51820 where every server uses it; otherwise the
/// protocol's transport on any port (server ports vary by provider and
/// server, and gluetun's firewall already pins the exact server IP:port).
fn tunnel_ports(gw: &VpnGateway) -> Vec<NetworkPolicyPort> {
    match gw.spec.vpn_type {
        VpnType::Wireguard if WIREGUARD_51820.contains(&gw.spec.provider) => {
            vec![port("UDP", Some(51820))]
        }
        VpnType::Wireguard => vec![port("UDP", None)],
        VpnType::Openvpn => vec![port("UDP", None), port("TCP", None)],
    }
}

/// In: the input ports from pods of the namespace (Traefik, the
/// dashboard) and the allowed subnets; the exporter's metrics port from any
/// namespace (Prometheus usually runs elsewhere). The health port is not
/// opened: the kubelet probes from the node, which NetworkPolicies do not
/// filter.
fn ingress(app: &App, plan: &Plan<'_>) -> Vec<NetworkPolicyIngressRule> {
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
