//! Pure checks of a VpnGateway and its credentials Secret, and the
//! [`VpnResolution`] the reconciler hands to the renderer.
//!
//! Nothing here talks to the API server: the reconciler fetches the gateway
//! and the Secret and calls [`resolve_for_cluster`] (or [`validate`] for the
//! gateway's own status). Messages name keys, Secrets and subnets, never a
//! credential value.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Secret;
use sha2::{Digest, Sha256};

use super::cidr::Cidr;
use crate::api::VpnGateway;
use crate::api::vpngateway::{Provider, VpnType};
use crate::render::VpnResolution;

/// Machine-readable reasons of [`Invalid`] and of
/// [`VpnResolution::Unavailable`]; used as condition reasons and event
/// reasons.
pub mod reason {
    /// The credentials Secret does not exist.
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    /// A key the gateway needs is missing from the Secret, or empty.
    pub const SECRET_KEY_MISSING: &str = "SecretKeyMissing";
    /// A key has a value gluetun cannot use (e.g. `addresses` that are not CIDRs).
    pub const SECRET_KEY_INVALID: &str = "SecretKeyInvalid";
    /// An allowed or cluster subnet overlaps the tunnel address.
    pub const SUBNET_OVERLAPS_TUNNEL: &str = "SubnetOverlapsTunnel";
    /// A subnet is not a CIDR.
    pub const INVALID_SUBNET: &str = "InvalidSubnet";
    /// A subnet is not inside a private range (RFC 1918, CGNAT, link-local,
    /// ULA): public addresses would bypass the tunnel.
    pub const SUBNET_NOT_PRIVATE: &str = "SubnetNotPrivate";
    /// A `custom` gateway has no usable `spec.endpoint`.
    pub const ENDPOINT_INVALID: &str = "EndpointInvalid";
    /// No cluster pod/service range is known, so replies to the cluster
    /// (WebUI, probes, DNS) would be routed into the tunnel.
    pub const CLUSTER_SUBNETS_UNKNOWN: &str = "ClusterSubnetsUnknown";
    /// The referenced VpnGateway does not exist.
    pub const GATEWAY_NOT_FOUND: &str = "VpnGatewayNotFound";
    /// The referenced VpnGateway is being deleted.
    pub const GATEWAY_DELETING: &str = "VpnGatewayDeleting";
}

/// Why a gateway cannot be used. Its consumers are rendered fail-closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// One of the [`reason`] constants.
    pub reason: &'static str,
    /// What is wrong and what to change, for conditions and events. Never
    /// contains a credential.
    pub message: String,
}

impl Invalid {
    fn new(reason: &'static str, message: String) -> Self {
        Self { reason, message }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for Invalid {}

/// Secret keys of the WireGuard private key, interface addresses and the
/// optional pre-shared key.
pub const KEY_PRIVATE_KEY: &str = "privateKey";
pub const KEY_ADDRESSES: &str = "addresses";
pub const KEY_PRESHARED_KEY: &str = "presharedKey";
/// `custom` provider only: the server's public key. (The endpoint is
/// `spec.endpoint`: not a secret, and the NetworkPolicy needs it.)
pub const KEY_PUBLIC_KEY: &str = "publicKey";
/// OpenVPN credentials.
pub const KEY_USERNAME: &str = "username";
pub const KEY_PASSWORD: &str = "password";

/// The Secret keys `gateway` cannot work without (optional keys excluded).
pub fn required_keys(gateway: &VpnGateway) -> Vec<&'static str> {
    match gateway.spec.vpn_type {
        VpnType::Wireguard => {
            let mut keys = vec![KEY_PRIVATE_KEY, KEY_ADDRESSES];
            if gateway.spec.provider == Provider::Custom {
                keys.push(KEY_PUBLIC_KEY);
            }
            keys
        }
        VpnType::Openvpn => vec![KEY_USERNAME, KEY_PASSWORD],
    }
}

/// Checks `gateway` against its credentials Secret (`None`: not found).
/// First what the spec alone decides (so it is reported before the Secret
/// exists, and whatever the API server let through):
///
/// 1. a `custom` gateway has a `spec.endpoint` with an IP and a port
///    (`EndpointInvalid`);
/// 2. every `killSwitch.allowedSubnets` entry and every
///    `killSwitch.clusterSubnets` override is a CIDR (`InvalidSubnet`)
///    inside a private range (`SubnetNotPrivate`) and outside the
///    provider's documented tunnel range (`SubnetOverlapsTunnel`);
///
/// then the Secret:
///
/// 3. it exists (`SecretNotFound`);
/// 4. every key of [`required_keys`] is present and not blank
///    (`SecretKeyMissing`, naming the key and the Secret);
/// 5. WireGuard `addresses` is a comma-separated list of CIDRs
///    (`SecretKeyInvalid`);
/// 6. no subnet of 2. overlaps a tunnel address (`SubnetOverlapsTunnel`,
///    naming the subnet and the Secret key, never the address).
///
/// Discovered cluster ranges are not known here: [`check_cluster_subnets`]
/// checks those, and [`resolve_for_cluster`] runs both.
pub fn validate(gateway: &VpnGateway, secret: Option<&Secret>) -> Result<(), Invalid> {
    let secret_name = &gateway.spec.credentials_secret_ref.name;
    if gateway.spec.provider == Provider::Custom && custom_endpoint(gateway).is_none() {
        return Err(Invalid::new(
            reason::ENDPOINT_INVALID,
            "a custom gateway needs spec.endpoint with the IP address and UDP port of the \
             WireGuard server"
                .into(),
        ));
    }
    let ks = &gateway.spec.kill_switch;
    check_subnets(gateway, ALLOWED, &ks.allowed_subnets, &[])?;
    if let Some(cluster) = &ks.cluster_subnets {
        check_subnets(gateway, CLUSTER, cluster, &[])?;
    }
    let Some(secret) = secret else {
        return Err(Invalid::new(
            reason::SECRET_NOT_FOUND,
            format!("credentials Secret {secret_name} not found"),
        ));
    };
    let data = secret_data(secret);
    for key in required_keys(gateway) {
        let present = data
            .get(key)
            .is_some_and(|v| !String::from_utf8_lossy(v).trim().is_empty());
        if !present {
            return Err(Invalid::new(
                reason::SECRET_KEY_MISSING,
                format!(
                    "Secret {secret_name} has no key {key} (or it is empty); a {} gateway needs the keys {}",
                    type_name(gateway),
                    required_keys(gateway).join(", ")
                ),
            ));
        }
    }
    let tunnel = tunnel_addresses(gateway, &data)?;
    check_subnets(gateway, ALLOWED, &ks.allowed_subnets, &tunnel)?;
    if let Some(cluster) = &ks.cluster_subnets {
        check_subnets(gateway, CLUSTER, cluster, &tunnel)?;
    }
    Ok(())
}

/// The `custom` server's address and port from `spec.endpoint`, if usable.
pub fn custom_endpoint(gateway: &VpnGateway) -> Option<(std::net::IpAddr, u16)> {
    let ep = gateway.spec.endpoint.as_ref()?;
    let ip = ep.ip.trim().parse().ok()?;
    let port = u16::try_from(ep.port).ok().filter(|p| *p > 0)?;
    Some((ip, port))
}

/// Tunnel ranges a provider documents for its WireGuard interface
/// addresses: Mullvad gives every device an address in 10.64.0.0/10 and
/// fc00:bbbb:bbbb:bb01::/64 (and its resolver is 10.64.0.1). An allowed
/// subnet must not overlap them (the same list as the CRD's CEL rule).
/// Cluster ranges are checked against the Secret's actual address instead.
pub fn provider_tunnel_ranges(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::Mullvad => &["10.64.0.0/10", "fc00:bbbb:bbbb:bb01::/64"],
        _ => &[],
    }
}

/// Checks the cluster ranges the consumer will keep outside the tunnel: the
/// gateway's `killSwitch.clusterSubnets` when set, else `discovered` (Node
/// `podCIDRs` and `ServiceCIDR`s). They must not be empty
/// (`ClusterSubnetsUnknown`), must be CIDRs inside private ranges, and must
/// not overlap a tunnel range or address (`SubnetOverlapsTunnel`).
pub fn check_cluster_subnets(
    gateway: &VpnGateway,
    secret: Option<&Secret>,
    discovered: &[String],
) -> Result<(), Invalid> {
    let (field, subnets) = match &gateway.spec.kill_switch.cluster_subnets {
        Some(own) => (CLUSTER, own.as_slice()),
        None => ("discovered cluster subnet", discovered),
    };
    if subnets.is_empty() {
        return Err(Invalid::new(
            reason::CLUSTER_SUBNETS_UNKNOWN,
            "the cluster's pod and service ranges are unknown (no Node podCIDRs or ServiceCIDRs \
             found); set spec.killSwitch.clusterSubnets on the VpnGateway"
                .into(),
        ));
    }
    let tunnel = match secret {
        Some(s) => tunnel_addresses(gateway, &secret_data(s))?,
        None => Vec::new(),
    };
    check_subnets(gateway, field, subnets, &tunnel)
}

/// What the renderer may use: `Ready` when the gateway exists, is not being
/// deleted and [`validate`] passes, else `Unavailable` (fail closed) with the
/// reason. Does not check discovered cluster ranges; prefer
/// [`resolve_for_cluster`].
pub fn resolve(gateway: Option<&VpnGateway>, secret: Option<&Secret>) -> VpnResolution {
    resolve_with(gateway, secret, |gw| validate(gw, secret))
}

/// [`resolve`] plus [`check_cluster_subnets`] with the cluster ranges the
/// renderer will be given (`Inputs::cluster_subnets`), so a tunnel address
/// inside a pod or service range shows up in the status instead of only as
/// a blocked pod.
pub fn resolve_for_cluster(
    gateway: Option<&VpnGateway>,
    secret: Option<&Secret>,
    cluster_subnets: &[String],
) -> VpnResolution {
    resolve_with(gateway, secret, |gw| {
        validate(gw, secret)?;
        check_cluster_subnets(gw, secret, cluster_subnets)
    })
}

fn resolve_with(
    gateway: Option<&VpnGateway>,
    secret: Option<&Secret>,
    check: impl Fn(&VpnGateway) -> Result<(), Invalid>,
) -> VpnResolution {
    let Some(gw) = gateway else {
        return VpnResolution::Unavailable {
            gateway: None,
            reason: reason::GATEWAY_NOT_FOUND.into(),
            message: "the VpnGateway does not exist".into(),
        };
    };
    if gw.metadata.deletion_timestamp.is_some() {
        return VpnResolution::Unavailable {
            gateway: Some(Box::new(gw.clone())),
            reason: reason::GATEWAY_DELETING.into(),
            message: "the VpnGateway is being deleted".into(),
        };
    }
    match (check(gw), secret) {
        (Ok(()), Some(secret)) => VpnResolution::Ready {
            gateway: Box::new(gw.clone()),
            hash: resolution_hash(gw, secret),
            secret_keys: secret_data(secret).into_keys().collect(),
        },
        (Err(inv), _) => VpnResolution::Unavailable {
            gateway: Some(Box::new(gw.clone())),
            reason: inv.reason.into(),
            message: inv.message,
        },
        // `validate` rejects a missing Secret; kept for totality.
        (Ok(()), None) => VpnResolution::Unavailable {
            gateway: Some(Box::new(gw.clone())),
            reason: reason::SECRET_NOT_FOUND.into(),
            message: format!(
                "credentials Secret {} not found",
                gw.spec.credentials_secret_ref.name
            ),
        },
    }
}

/// A short hash of everything the sidecar depends on: the gateway spec (as
/// JSON) and the Secret's identity and version (`metadata.uid` and
/// `metadata.resourceVersion`, which changes with every write of the
/// data). Put on the consumer's pod template, so changing either rolls the
/// pods. SHA-256, hex, first 16 characters. The Secret's data is not an
/// input: the hash is no guessing aid for the credentials.
pub fn resolution_hash(gateway: &VpnGateway, secret: &Secret) -> String {
    let mut h = Sha256::new();
    let spec = serde_json::to_vec(&gateway.spec).unwrap_or_default();
    let uid = secret.metadata.uid.as_deref().unwrap_or_default();
    let version = secret
        .metadata
        .resource_version
        .as_deref()
        .unwrap_or_default();
    // Length-prefixed fields, so no two inputs hash the same bytes.
    for part in [spec.as_slice(), uid.as_bytes(), version.as_bytes()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The Secret's data, keys sorted, `stringData` (only set on objects not yet
/// stored) taking precedence like the API server does.
fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.as_bytes().to_vec());
    }
    out
}

fn text(data: &BTreeMap<String, Vec<u8>>, key: &str) -> String {
    data.get(key)
        .map(|v| String::from_utf8_lossy(v).trim().to_string())
        .unwrap_or_default()
}

fn type_name(gateway: &VpnGateway) -> &'static str {
    match (gateway.spec.vpn_type, gateway.spec.provider) {
        (VpnType::Wireguard, Provider::Custom) => "custom WireGuard",
        (VpnType::Wireguard, _) => "WireGuard",
        (VpnType::Openvpn, _) => "OpenVPN",
    }
}

/// The WireGuard interface addresses from `addresses` (empty for OpenVPN,
/// whose address the server assigns at connect time).
fn tunnel_addresses(
    gateway: &VpnGateway,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<Cidr>, Invalid> {
    if gateway.spec.vpn_type != VpnType::Wireguard {
        return Ok(Vec::new());
    }
    let raw = text(data, KEY_ADDRESSES);
    let parsed: Option<Vec<Cidr>> = raw
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(Cidr::parse_host_or_subnet)
        .collect();
    match parsed {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(Invalid::new(
            reason::SECRET_KEY_INVALID,
            format!(
                "key {KEY_ADDRESSES} of Secret {} is not a comma-separated list of CIDRs such as 10.64.0.2/32",
                gateway.spec.credentials_secret_ref.name
            ),
        )),
    }
}

const ALLOWED: &str = "killSwitch.allowedSubnets";
const CLUSTER: &str = "killSwitch.clusterSubnets";

fn check_subnets(
    gateway: &VpnGateway,
    field: &str,
    subnets: &[String],
    tunnel: &[Cidr],
) -> Result<(), Invalid> {
    let secret_name = &gateway.spec.credentials_secret_ref.name;
    let provider_ranges: Vec<Cidr> = if field == ALLOWED {
        provider_tunnel_ranges(gateway.spec.provider)
            .iter()
            .filter_map(|r| Cidr::parse(r))
            .collect()
    } else {
        Vec::new()
    };
    for raw in subnets {
        let Some(subnet) = Cidr::parse(raw) else {
            return Err(Invalid::new(
                reason::INVALID_SUBNET,
                format!("{field} entry {raw:?} is not a CIDR such as 192.168.1.0/24"),
            ));
        };
        if subnet.is_public() {
            return Err(Invalid::new(
                reason::SUBNET_NOT_PRIVATE,
                format!(
                    "{field} entry {subnet} is not inside a private range ({}): it would route \
                     public traffic around the tunnel",
                    super::cidr::PRIVATE_RANGES.join(", ")
                ),
            ));
        }
        if let Some(r) = provider_ranges.iter().find(|r| r.overlaps(&subnet)) {
            return Err(Invalid::new(
                reason::SUBNET_OVERLAPS_TUNNEL,
                format!(
                    "{field} entry {subnet} overlaps {r}, the range {:?} assigns tunnel addresses \
                     from; traffic to it would bypass the tunnel or break it",
                    gateway.spec.provider.gluetun_name()
                ),
            ));
        }
        if tunnel.iter().any(|t| t.overlaps(&subnet)) {
            // The address itself comes from the Secret: never echoed.
            return Err(Invalid::new(
                reason::SUBNET_OVERLAPS_TUNNEL,
                format!(
                    "{field} entry {subnet} overlaps a tunnel address (key {KEY_ADDRESSES} of \
                     Secret {secret_name}); traffic to it would bypass the tunnel or break it"
                ),
            ));
        }
    }
    Ok(())
}
