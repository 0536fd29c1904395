//! gluetun as a native sidecar of a VPN consumer (qBittorrent), with the
//! kill switch. See `docs/vpn.md` for the design and how to verify it.
//!
//! The rule above all: a consumer never runs without its gluetun sidecar,
//! and a broken VPN configuration fails closed. The kill switch has layers,
//! each meant to hold when another fails:
//!
//! 1. **Bound to the tunnel.** qBittorrent's config step
//!    ([`CONFIG_CONTAINER`]) binds its session to [`TUNNEL_INTERFACE`].
//! 2. **Start order and restarts.** gluetun is the first `initContainers`
//!    entry with `restartPolicy: Always` (a native sidecar), so the kubelet
//!    starts the app containers only after gluetun's startup probe passes,
//!    which needs a working tunnel; the app's liveness probe fails while
//!    gluetun's health server does not answer healthy, so the app container
//!    is restarted rather than outliving a broken tunnel.
//! 3. **gluetun's firewall**, pinned on: outbound only through the tunnel,
//!    except `FIREWALL_OUTBOUND_SUBNETS` (cluster ranges + allowed subnets).
//! 4. **A NetworkPolicy** ([`network_policy`]), enforced outside the pod:
//!    only the protocol's transport to the provider's port (a `custom`
//!    server: its exact endpoint), cluster DNS and the allowed subnets.
//! 5. **Private ranges only** bypass the tunnel (CRD rules, re-checked
//!    here), and never a provider's documented tunnel range.
//! 6. **Render-level fail closed** ([`ensure_sidecar`]): a VPN-only app is
//!    never rendered without the sidecar.
//! 7. **gluetun's own servers** (health, control) listen on loopback only.
//! 8. **Fail closed.** When the gateway is missing or invalid
//!    ([`VpnResolution::Unavailable`]), or a range or the endpoint is
//!    unusable, the Deployment has 0 replicas, the pod template keeps the
//!    sidecar with the firewall on and a startup probe that never passes,
//!    the policy denies all traffic, and the template says why in
//!    `mediastack.io/vpn-blocked`.
//!
//! Credentials reach gluetun as `secretKeyRef` environment variables, never
//! as literal values. Env vars rather than `<NAME>_SECRETFILE` files,
//! because: gluetun reads secret files for only some variables (not
//! `WIREGUARD_PUBLIC_KEY` or the endpoint of a `custom` server), so files
//! would mean two mechanisms; a `secretKeyRef` maps one Secret key to one
//! variable and expresses optional keys (`presharedKey`) directly; the
//! kubelet refuses to start the container when a required key is missing
//! (one more fail-closed layer); gluetun unsets these variables after
//! reading them; and the app containers cannot see them (separate
//! containers, no shared process namespace).

mod cidr;
mod policy;
mod qbittorrent;
mod sidecar;
#[cfg(test)]
mod tests;
mod validate;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStrategy};

use self::cidr::Cidr;
use super::meta::Parent;
use super::{Child, GeneratedSecret, RenderError, VpnResolution};
use crate::api::VpnGateway;
use crate::catalog::App;

pub use self::qbittorrent::{
    CONFIG_CONTAINER, HASHED_ANNOTATION, KEEP_KEY, PBKDF2_KEY, SALT_LEN, SAVE_PATH, TEMP_PATH,
    password_pbkdf2, webui_secret_name,
};
pub use self::sidecar::{
    CONTAINER_NAME, CONTROL_DIR, CONTROL_FILE, CONTROL_PORT, HEALTH_PORT, MIN_MEMORY,
    TUNNEL_INTERFACE,
};
pub use self::validate::{
    Invalid, KEY_ADDRESSES, KEY_PASSWORD, KEY_PRESHARED_KEY, KEY_PRIVATE_KEY, KEY_PUBLIC_KEY,
    KEY_USERNAME, check_cluster_subnets, custom_endpoint, provider_tunnel_ranges, reason,
    required_keys, resolution_hash, resolve, resolve_for_cluster, validate,
};

/// Pod-template annotation with [`resolution_hash`]: a change to the
/// gateway or its Secret rolls the consumer's pods.
pub const HASH_ANNOTATION: &str = "mediastack.io/vpn-hash";
/// Pod-template annotation with the reason the consumer is held closed.
pub const BLOCKED_ANNOTATION: &str = "mediastack.io/vpn-blocked";
/// Pod-template label of every VPN consumer pod; the VpnGateway controller
/// watches pods by it (for `TunnelReady`).
pub const CONSUMER_LABEL: &str = "mediastack.io/vpn-consumer";
/// Pod-template annotation naming the consumer's VpnGateway (names may be
/// longer than a label value allows).
pub const GATEWAY_ANNOTATION: &str = "mediastack.io/vpn-gateway";
/// Key of the control Secret's random API key.
pub const CONTROL_API_KEY: &str = "apikey";

/// The read-only control-server routes the role may call: the public IP,
/// the forwarded port and the VPN status.
const CONTROL_ROLE: &str = r#"[[roles]]
name = "mediastack-operator"
routes = ["GET /v1/publicip/ip", "GET /v1/portforward", "GET /v1/vpn/status"]
auth = "apikey"
apikey = "{{apikey}}"
"#;

/// What the sidecar is rendered from: the gateway (if any), whether the
/// consumer may run, and the subnets kept outside the tunnel.
struct Plan<'a> {
    gateway: Option<&'a VpnGateway>,
    hash: Option<&'a str>,
    /// `Some(reason)`: fail closed.
    blocked: Option<String>,
    /// The cluster ranges in effect (`killSwitch.clusterSubnets`, else the
    /// discovered ones): valid, private, canonical.
    cluster: Vec<Cidr>,
    /// `killSwitch.allowedSubnets`: valid, private, canonical.
    allowed: Vec<Cidr>,
}

impl<'a> Plan<'a> {
    /// Decides from the resolution and re-checks what the renderer is given:
    /// a `Ready` resolution with an unusable subnet (not a CIDR, public, an
    /// allowed one in the provider's tunnel range), with no cluster range at
    /// all, or a
    /// `custom` gateway without a usable endpoint, is still rendered closed.
    fn new(resolution: &'a VpnResolution, cluster_subnets: &[String]) -> Self {
        let (gateway, hash, mut blocked) = match resolution {
            VpnResolution::Ready { gateway, hash, .. } => {
                (Some(gateway.as_ref()), Some(hash.as_str()), None)
            }
            VpnResolution::Unavailable {
                gateway, reason, ..
            } => (gateway.as_deref(), None, Some(reason.clone())),
        };
        let cluster_raw = gateway
            .and_then(|g| g.spec.kill_switch.cluster_subnets.as_deref())
            .unwrap_or(cluster_subnets);
        let allowed_raw = gateway
            .map(|g| g.spec.kill_switch.allowed_subnets.as_slice())
            .unwrap_or_default();
        let tunnel: Vec<Cidr> = gateway
            .map(|g| provider_tunnel_ranges(g.spec.provider))
            .unwrap_or_default()
            .iter()
            .filter_map(|r| Cidr::parse(r))
            .collect();
        let (cluster, cluster_problem) = usable(cluster_raw, &[]);
        let (allowed, allowed_problem) = usable(allowed_raw, &tunnel);
        let endpoint_problem = gateway
            .filter(|g| {
                g.spec.provider == crate::api::vpngateway::Provider::Custom
                    && custom_endpoint(g).is_none()
            })
            .map(|_| reason::ENDPOINT_INVALID);
        if blocked.is_none() {
            blocked = cluster_problem
                .or(allowed_problem)
                .or(endpoint_problem)
                .or(cluster
                    .is_empty()
                    .then_some(reason::CLUSTER_SUBNETS_UNKNOWN))
                .map(String::from);
        }
        Self {
            gateway,
            hash,
            blocked,
            cluster,
            allowed,
        }
    }

    fn is_open(&self) -> bool {
        self.blocked.is_none() && self.gateway.is_some()
    }

    /// `FIREWALL_OUTBOUND_SUBNETS`: cluster ranges and allowed subnets,
    /// sorted (IPv4 first, then by address and prefix), without duplicates.
    fn outbound(&self) -> Vec<Cidr> {
        let mut all: Vec<Cidr> = self.cluster.iter().chain(&self.allowed).copied().collect();
        all.sort();
        all.dedup();
        all
    }
}

/// The usable subnets of `raw` (private, outside `tunnel`), and the reason
/// of the first unusable one.
fn usable(raw: &[String], tunnel: &[Cidr]) -> (Vec<Cidr>, Option<&'static str>) {
    let mut problem = None;
    let mut out = Vec::new();
    for s in raw {
        match Cidr::parse(s) {
            Some(c) if c.is_public() => {
                problem = problem.or(Some(reason::SUBNET_NOT_PRIVATE));
            }
            Some(c) if tunnel.iter().any(|t| t.overlaps(&c)) => {
                problem = problem.or(Some(reason::SUBNET_OVERLAPS_TUNNEL));
            }
            Some(c) => out.push(c),
            None => problem = problem.or(Some(reason::INVALID_SUBNET)),
        }
    }
    (out, problem)
}

/// Adds gluetun to the consumer's Deployment as a native sidecar: the first
/// `initContainers` entry, `restartPolicy: Always`, so it shares the pod
/// network and is healthy before the app starts. Also sets the `Recreate`
/// strategy (two pods must never hold the same tunnel keys), the
/// `/dev/net/tun` and control-file volumes, and the pod-template annotation
/// ([`HASH_ANNOTATION`] or [`BLOCKED_ANNOTATION`]).
///
/// `FIREWALL_INPUT_PORTS` is `spec.inputPorts`, or by default the app's
/// web UI port plus every port declared by the Deployment's containers at
/// this point; in both cases plus the catalog exporter's port and the
/// health port. Order assumption: containers that listen should be added
/// before this is called (the catalog exporter is covered either way), and
/// nothing should be inserted before gluetun afterwards. Idempotent: an
/// existing gluetun sidecar is replaced.
///
/// Fails closed (replicas 0, startup probe that never passes) for an
/// `Unavailable` resolution, and for a `Ready` one whose cluster ranges are
/// empty, not CIDRs or wider than /8. Never leaves the pod without the
/// sidecar.
///
/// Also, for the consumer's own container: a liveness probe that fails when
/// gluetun's health server does not answer healthy
/// (`sidecar::consumer_liveness_probe`); for qBittorrent the config step
/// ([`CONFIG_CONTAINER`], right after gluetun) that binds its session to
/// [`TUNNEL_INTERFACE`]. `monitoring`: the stack's exporter logs in over
/// loopback (qBittorrent's localhost bypass is turned on, as it is for
/// port forwarding).
pub fn inject(
    parent: &Parent,
    app: &App,
    deployment: &mut Deployment,
    vpn: &VpnResolution,
    cluster_subnets: &[String],
    monitoring: bool,
) -> Result<(), RenderError> {
    let plan = Plan::new(vpn, cluster_subnets);
    let control = control_secret_name(parent, app);
    let spec = &mut deployment.spec;
    let template = &mut spec.template;
    let pod = template.spec.get_or_insert_with(Default::default);

    let gluetun = sidecar::container(&plan, app, pod);
    let init = pod.init_containers.get_or_insert_with(Vec::new);
    init.retain(|c| c.name != CONTAINER_NAME);
    init.insert(0, gluetun);

    if app.binds_to_tunnel {
        let localhost_auth =
            monitoring || plan.gateway.is_some_and(sidecar::port_forwarding_active);
        let webui = qbittorrent::webui_secret_name(parent, app.name);
        if let Some(step) = qbittorrent::config_init(pod, app, localhost_auth, &webui) {
            qbittorrent::insert(pod, step);
        }
    }
    if let Some(c) = pod.containers.iter_mut().find(|c| c.name == app.name) {
        c.liveness_probe = Some(sidecar::consumer_liveness_probe(app.port));
    }

    let ours = sidecar::volumes(&plan, &control);
    let volumes = pod.volumes.get_or_insert_with(Vec::new);
    volumes.retain(|v| v.name != sidecar::TUN_VOLUME && v.name != sidecar::CONTROL_VOLUME);
    volumes.extend(ours);

    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(CONSUMER_LABEL.into(), "true".into());
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    annotations.remove(HASH_ANNOTATION);
    annotations.remove(BLOCKED_ANNOTATION);
    annotations.remove(GATEWAY_ANNOTATION);
    if let Some(gw) = plan.gateway {
        annotations.insert(GATEWAY_ANNOTATION.into(), kube::ResourceExt::name_any(gw));
    }
    match (&plan.blocked, plan.hash) {
        (None, Some(hash)) if plan.is_open() => {
            annotations.insert(HASH_ANNOTATION.into(), hash.into());
        }
        (blocked, _) => {
            let why = blocked
                .clone()
                .unwrap_or_else(|| reason::GATEWAY_NOT_FOUND.into());
            annotations.insert(BLOCKED_ANNOTATION.into(), why);
            spec.replicas = Some(0);
        }
    }

    spec.strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    Ok(())
}

/// Render-level fail closed: a VPN-only app (`App::vpn_only`) is never
/// rendered without its gluetun sidecar, whatever the API server let
/// through (an object stored before the CRD's rule, a CRD not upgraded).
/// `Err(RenderError::VpnRequired)` unless the pod's first init container is
/// gluetun as a native sidecar.
pub fn ensure_sidecar(app: &App, deployment: &Deployment) -> Result<(), RenderError> {
    if !app.vpn_only {
        return Ok(());
    }
    let first = deployment
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|p| p.init_containers.as_ref())
        .and_then(|i| i.first());
    match first {
        Some(c) if c.name == CONTAINER_NAME && c.restart_policy.as_deref() == Some("Always") => {
            Ok(())
        }
        _ => Err(RenderError::VpnRequired {
            app: app.name.to_string(),
        }),
    }
}

/// The consumer pod's NetworkPolicy `<stack>-<app>-vpn`, the backstop of
/// the kill switch (enforced by the CNI, outside the pod):
///
/// - egress: the VPN transport, UDP to one port: a `custom` server's exact
///   `spec.endpoint`; else the provider's WireGuard or OpenVPN UDP port
///   (gluetun's defaults) to public IPv4 addresses (the cluster and
///   private ranges cut out); no IPv6 unless configured (an IPv6 endpoint
///   or allowed subnet); DNS to kube-dns (UDP/TCP 53); the allowed subnets;
/// - ingress: the input ports (`spec.inputPorts`, else the web UI port) from
///   pods of the namespace, the allowed subnets and, when `operator` is
///   given, the operator's pods (its wiring calls the app's API); the
///   exporter port from any namespace;
/// - fail closed: no rule at all, so nothing in or out.
///
/// NetworkPolicies add up: another policy can let more in (e.g. a Traefik
/// in another namespace).
pub fn network_policy(
    parent: &Parent,
    app: &App,
    vpn: &VpnResolution,
    cluster_subnets: &[String],
    operator: Option<&crate::render::OperatorPeer>,
) -> Result<Child, RenderError> {
    let plan = Plan::new(vpn, cluster_subnets);
    Child::typed(&policy::build(parent, app, &plan, operator))
}

/// The control-server credentials of the consumer's gluetun: created once by
/// the reconciler with a random [`CONTROL_API_KEY`] and a gluetun role file
/// (`config.toml`) granting that key read-only routes. Mounted at
/// [`CONTROL_DIR`]; the server listens on [`CONTROL_PORT`], reachable from
/// inside the pod only.
pub fn control_secret(parent: &Parent, app: &App) -> GeneratedSecret {
    GeneratedSecret {
        name: control_secret_name(parent, app),
        random_keys: vec![CONTROL_API_KEY.into()],
        templated: BTreeMap::from([(CONTROL_FILE.to_string(), CONTROL_ROLE.to_string())]),
        labels: parent.labels(app.name, "vpn"),
    }
}

fn control_secret_name(parent: &Parent, app: &App) -> String {
    parent.child_name(&format!("{}-gluetun-control", app.name))
}
