//! The gluetun container, its volumes and the ports its firewall opens.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, ExecAction, HostPathVolumeSource, KeyToPath,
    Lifecycle, LifecycleHandler, PodSpec, Probe, ResourceRequirements, SecretKeySelector,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::Plan;
use super::validate::{
    KEY_ADDRESSES, KEY_PASSWORD, KEY_PRESHARED_KEY, KEY_PRIVATE_KEY, KEY_PUBLIC_KEY, KEY_USERNAME,
    custom_endpoint,
};
use crate::api::VpnGateway;
use crate::api::vpngateway::{DEFAULT_GLUETUN_IMAGE, Provider, VpnType};
use crate::catalog::{App, Exporter};

/// Name of the sidecar in `initContainers`.
pub const CONTAINER_NAME: &str = "gluetun";
/// gluetun's health server (200 when the tunnel works, 500 otherwise),
/// bound to the pod's loopback: only containers of the pod reach it.
pub const HEALTH_PORT: u16 = 9999;
/// gluetun's control server, bound to the pod's loopback: reachable only
/// from inside the pod (and `kubectl port-forward`).
pub const CONTROL_PORT: u16 = 8000;
/// The tunnel interface gluetun creates (`VPN_INTERFACE`), and the only
/// interface qBittorrent is allowed to use.
pub const TUNNEL_INTERFACE: &str = "tun0";
/// The command gluetun's image ships for its own health check: asks the
/// health server at `HEALTH_SERVER_ADDRESS`, exits non-zero unless healthy.
const HEALTHCHECK_COMMAND: &str = "/gluetun-entrypoint";
/// Where the control server's role file is mounted.
pub const CONTROL_DIR: &str = "/gluetun/auth";
/// Key of the control Secret holding the role file, and its file name.
pub const CONTROL_FILE: &str = "config.toml";
/// The smallest memory limit gluetun gets.
pub const MIN_MEMORY: &str = "256Mi";
const MIN_MEMORY_BYTES: f64 = 256.0 * 1024.0 * 1024.0;
/// Volumes the sidecar adds to the pod.
pub const TUN_VOLUME: &str = "vpn-tun";
pub const CONTROL_VOLUME: &str = "vpn-control";
/// Sites gluetun's health check dials through the tunnel (its defaults,
/// pinned so an image upgrade does not change the probe silently).
const HEALTH_TARGETS: &str = "cloudflare.com:443,github.com:443";
/// Routing table of gluetun's WireGuard rules; a crash can leave a rule
/// behind that breaks the next start.
const WIREGUARD_TABLE: &str = "51820";

/// The sidecar. `pod` is the pod as rendered so far, read for the ports the
/// firewall must let in.
pub(super) fn container(plan: &Plan<'_>, app: &App, pod: &PodSpec) -> Container {
    let gateway = plan.gateway;
    let mut mounts = vec![VolumeMount {
        name: TUN_VOLUME.into(),
        mount_path: "/dev/net/tun".into(),
        ..Default::default()
    }];
    if gateway.is_some() {
        mounts.push(VolumeMount {
            name: CONTROL_VOLUME.into(),
            mount_path: CONTROL_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    Container {
        name: CONTAINER_NAME.into(),
        image: Some(
            gateway
                .map(|g| g.spec.image.clone())
                .unwrap_or_else(|| DEFAULT_GLUETUN_IMAGE.into()),
        ),
        image_pull_policy: Some("IfNotPresent".into()),
        // A native sidecar: started before the app containers, kept running
        // (and restarted alone) for the life of the pod.
        restart_policy: Some("Always".into()),
        env: Some(env(plan, app, pod)),
        resources: Some(resources(gateway)),
        startup_probe: Some(if plan.is_open() {
            startup_probe()
        } else {
            closed_startup_probe()
        }),
        liveness_probe: Some(liveness_probe()),
        readiness_probe: Some(readiness_probe()),
        lifecycle: Some(lifecycle()),
        security_context: Some(security_context()),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

/// The pod volumes of the sidecar: `/dev/net/tun` from the node, and the
/// control server's role file (only when there is a gateway to configure).
pub(super) fn volumes(plan: &Plan<'_>, control_secret: &str) -> Vec<Volume> {
    let mut out = vec![Volume {
        name: TUN_VOLUME.into(),
        host_path: Some(HostPathVolumeSource {
            path: "/dev/net/tun".into(),
            type_: Some("CharDevice".into()),
        }),
        ..Default::default()
    }];
    if plan.gateway.is_some() {
        out.push(Volume {
            name: CONTROL_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(control_secret.into()),
                items: Some(vec![KeyToPath {
                    key: CONTROL_FILE.into(),
                    path: CONTROL_FILE.into(),
                    ..Default::default()
                }]),
                default_mode: Some(0o400),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    out
}

/// Whether the gateway asks for port forwarding and gluetun can do it with
/// its provider (Mullvad cannot).
pub(super) fn port_forwarding_active(gateway: &VpnGateway) -> bool {
    gateway.spec.port_forwarding.enabled && gateway.spec.provider.supports_port_forwarding()
}

/// The metrics port of the app's exporter, if the catalog gives it one.
/// Operator-managed, so always open (like the health port) whatever
/// `inputPorts` says; nothing listens on it when monitoring is off.
pub(super) fn exporter_port(app: &App) -> Option<u16> {
    match app.exporter {
        Some(Exporter::Exportarr { port }) | Some(Exporter::Qbittorrent { port }) => Some(port),
        Some(Exporter::Native { .. }) | None => None,
    }
}

/// The ports reachable from the cluster side: `spec.inputPorts` when set,
/// else the app's web UI port; plus the exporter port. The NetworkPolicy
/// opens these (it cannot see the Deployment).
pub(super) fn policy_ports(plan: &Plan<'_>, app: &App) -> BTreeSet<u16> {
    let mut ports = plan
        .gateway
        .and_then(explicit_ports)
        .unwrap_or_else(|| BTreeSet::from([app.port]));
    ports.extend(exporter_port(app));
    ports
}

fn explicit_ports(gateway: &VpnGateway) -> Option<BTreeSet<u16>> {
    let ports: BTreeSet<u16> = gateway
        .spec
        .input_ports
        .iter()
        .filter_map(|p| u16::try_from(*p).ok())
        .filter(|p| *p > 0)
        .collect();
    (!ports.is_empty()).then_some(ports)
}

/// `FIREWALL_INPUT_PORTS`: `spec.inputPorts` when set; else the app's web
/// UI port plus every port declared by the pod's other containers at this
/// point. Always the exporter port (so an exporter added after this
/// sidecar is covered). Nothing of gluetun's own: its health and control
/// servers listen on loopback, and every probe is an exec.
fn firewall_input_ports(plan: &Plan<'_>, app: &App, pod: &PodSpec) -> BTreeSet<u16> {
    let mut ports = match plan.gateway.and_then(explicit_ports) {
        Some(ports) => ports,
        None => {
            let mut ports = BTreeSet::from([app.port]);
            ports.extend(
                pod.containers
                    .iter()
                    .chain(pod.init_containers.iter().flatten())
                    .filter(|c| c.name != CONTAINER_NAME)
                    .flat_map(|c| c.ports.iter().flatten())
                    .filter_map(|p| u16::try_from(p.container_port).ok())
                    .filter(|p| *p > 0),
            );
            ports
        }
    };
    ports.extend(exporter_port(app));
    ports
}

fn env(plan: &Plan<'_>, app: &App, pod: &PodSpec) -> Vec<EnvVar> {
    let mut env = Vec::new();
    if let Some(gw) = plan.gateway {
        let spec = &gw.spec;
        let secret = spec.credentials_secret_ref.name.as_str();
        env.push(value("VPN_SERVICE_PROVIDER", spec.provider.gluetun_name()));
        env.push(value(
            "VPN_TYPE",
            match spec.vpn_type {
                VpnType::Wireguard => "wireguard",
                VpnType::Openvpn => "openvpn",
            },
        ));
        match spec.vpn_type {
            VpnType::Wireguard => {
                env.push(from_secret(
                    "WIREGUARD_PRIVATE_KEY",
                    secret,
                    KEY_PRIVATE_KEY,
                    false,
                ));
                env.push(from_secret(
                    "WIREGUARD_ADDRESSES",
                    secret,
                    KEY_ADDRESSES,
                    false,
                ));
                env.push(from_secret(
                    "WIREGUARD_PRESHARED_KEY",
                    secret,
                    KEY_PRESHARED_KEY,
                    true,
                ));
                if spec.provider == Provider::Custom {
                    env.push(from_secret(
                        "WIREGUARD_PUBLIC_KEY",
                        secret,
                        KEY_PUBLIC_KEY,
                        false,
                    ));
                    // Not secret: the NetworkPolicy opens exactly this.
                    if let Some((ip, port)) = custom_endpoint(gw) {
                        env.push(value("WIREGUARD_ENDPOINT_IP", ip.to_string()));
                        env.push(value("WIREGUARD_ENDPOINT_PORT", port.to_string()));
                    }
                }
            }
            VpnType::Openvpn => {
                env.push(from_secret("OPENVPN_USER", secret, KEY_USERNAME, false));
                env.push(from_secret("OPENVPN_PASSWORD", secret, KEY_PASSWORD, false));
                // Pinned (gluetun's default): the NetworkPolicy lets out
                // only the provider's OpenVPN UDP port.
                env.push(value("OPENVPN_PROTOCOL", "udp"));
            }
        }
        // Server selection means nothing to a custom server.
        if let (Some(servers), false) = (&spec.servers, spec.provider == Provider::Custom) {
            for (name, list) in [
                ("SERVER_COUNTRIES", &servers.countries),
                ("SERVER_CITIES", &servers.cities),
                ("SERVER_HOSTNAMES", &servers.hostnames),
            ] {
                if !list.is_empty() {
                    env.push(value(name, list.join(",")));
                }
            }
            // A Mullvad filter; gluetun rejects it for other providers.
            if let (Some(owned), Provider::Mullvad) = (servers.owned_only, spec.provider) {
                env.push(value("OWNED_ONLY", if owned { "yes" } else { "no" }));
            }
        }
    }

    // The kill switch, pinned on so no default or image change can turn
    // the firewall off (gluetun v3.41 reads this name; `FIREWALL` is not
    // read any more).
    env.push(value(
        "FIREWALL_ENABLED_DISABLING_IT_SHOOTS_YOU_IN_YOUR_FOOT",
        "on",
    ));
    let outbound = plan.outbound();
    if !outbound.is_empty() {
        env.push(value(
            "FIREWALL_OUTBOUND_SUBNETS",
            outbound
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ));
    }
    env.push(value(
        "FIREWALL_INPUT_PORTS",
        join_ports(&firewall_input_ports(plan, app, pod)),
    ));

    // gluetun's own resolver (DNS over TLS through the tunnel). Names that
    // are local (no dot, or `.local` such as `svc.cluster.local`) go to the
    // private nameserver gluetun found in the pod's resolv.conf at start:
    // kube-dns. `DNS_KEEP_NAMESERVER` is never set: it leaks every query.
    env.push(value("DNS_SERVER", "on"));

    env.push(value("VPN_INTERFACE", TUNNEL_INTERFACE));
    env.push(value(
        "HEALTH_SERVER_ADDRESS",
        format!("127.0.0.1:{HEALTH_PORT}"),
    ));
    env.push(value("HEALTH_TARGET_ADDRESSES", HEALTH_TARGETS));
    env.push(value("HEALTH_RESTART_VPN", "on"));

    if let Some(gw) = plan.gateway {
        env.push(value(
            "HTTP_CONTROL_SERVER_ADDRESS",
            format!("127.0.0.1:{CONTROL_PORT}"),
        ));
        env.push(value(
            "HTTP_CONTROL_SERVER_AUTH_CONFIG_FILEPATH",
            format!("{CONTROL_DIR}/{CONTROL_FILE}"),
        ));
        if port_forwarding_active(gw) {
            env.push(value("VPN_PORT_FORWARDING", "on"));
            if matches!(
                gw.spec.provider,
                Provider::PrivateInternetAccess | Provider::Protonvpn
            ) {
                // Only servers that can forward a port.
                env.push(value("PORT_FORWARD_ONLY", "on"));
            }
            env.push(value(
                "VPN_PORT_FORWARDING_UP_COMMAND",
                up_command(app.port),
            ));
        }
    }
    env
}

/// Run by gluetun each time a port is forwarded (`{{PORTS}}`: the ports,
/// comma separated): makes the first one qBittorrent's listen port through
/// its WebUI API on localhost. Retries for two minutes, as qBittorrent
/// starts only after gluetun is healthy. Needs qBittorrent's "bypass
/// authentication for clients on localhost". The JSON body is URL-encoded so
/// the script needs no nested quotes (gluetun splits the command itself).
fn up_command(webui_port: u16) -> String {
    let script = format!(
        "p={{{{PORTS}}}}; p=${{p%%,*}}; n=0; \
         until wget -q -O /dev/null -T 5 --post-data \"json=%7B%22listen_port%22%3A$p%7D\" \
         http://127.0.0.1:{webui_port}/api/v2/app/setPreferences; \
         do n=$((n+1)); [ $n -ge 24 ] && exit 1; sleep 5; done"
    );
    format!("/bin/sh -c '{script}'")
}

fn join_ports(ports: &BTreeSet<u16>) -> String {
    ports
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn value(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// A credential: always a reference to the Secret, never a literal value.
fn from_secret(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: optional.then_some(true),
            }),
            ..Default::default()
        }),
    }
}

/// gluetun's own check of its health server on loopback (an exec: the
/// server is not reachable from the node).
fn health_check() -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec![HEALTHCHECK_COMMAND.into(), "healthcheck".into()]),
        }),
        timeout_seconds: Some(3),
        ..Default::default()
    }
}

/// The liveness probe of the consumer's own container: fails when
/// gluetun's health server (same pod network, loopback) does not answer
/// 200, or when the app's port does not answer at all. The kubelet then
/// restarts that container (not the pod), and as long as the tunnel is
/// down the restarted app is killed again; together with the interface
/// binding nothing of it outlives a broken tunnel for long. The image must
/// have `curl` (linuxserver images do).
pub(super) fn consumer_liveness_probe(app_port: u16) -> Probe {
    let script = format!(
        "curl -fsS -o /dev/null -m 3 http://127.0.0.1:{HEALTH_PORT}/ && \
         curl -sS -o /dev/null -m 3 http://127.0.0.1:{app_port}/"
    );
    Probe {
        exec: Some(ExecAction {
            command: Some(vec!["/bin/sh".into(), "-c".into(), script]),
        }),
        // The app starts only after gluetun's startup probe passed; a short
        // grace for the app itself.
        initial_delay_seconds: Some(30),
        period_seconds: Some(15),
        timeout_seconds: Some(8),
        failure_threshold: Some(2),
        ..Default::default()
    }
}

/// Passes once the tunnel works; only then does the kubelet start the app
/// containers. Up to 10 minutes for a slow provider: a slow tunnel delays
/// the app, it never starts it early.
fn startup_probe() -> Probe {
    Probe {
        period_seconds: Some(2),
        failure_threshold: Some(300),
        ..health_check()
    }
}

/// Fail closed: a probe that can never pass, so the app containers never
/// start even if someone scales the Deployment up by hand.
fn closed_startup_probe() -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec!["/bin/false".into()]),
        }),
        period_seconds: Some(60),
        failure_threshold: Some(1440),
        ..Default::default()
    }
}

/// Restarts gluetun alone (the pod and its network namespace stay, so the
/// app is not stranded) when it is unhealthy for 5 minutes; before that,
/// `HEALTH_RESTART_VPN` restarts the tunnel inside gluetun.
fn liveness_probe() -> Probe {
    Probe {
        period_seconds: Some(30),
        failure_threshold: Some(10),
        timeout_seconds: Some(5),
        ..health_check()
    }
}

/// Takes the pod out of its Service while the tunnel is down; also what the
/// VpnGateway's `TunnelReady` condition reads.
fn readiness_probe() -> Probe {
    Probe {
        period_seconds: Some(10),
        failure_threshold: Some(3),
        ..health_check()
    }
}

/// Deletes WireGuard `ip rule`s a crashed gluetun left in the pod's network
/// namespace (they make the next start fail). Each missing rule ends its
/// loop; the hook always succeeds, so it never kills the container.
fn lifecycle() -> Lifecycle {
    let script = format!(
        "for i in 1 2 3 4; do ip rule del table {WIREGUARD_TABLE} 2>/dev/null || break; done; \
         for i in 1 2 3 4; do ip -6 rule del table {WIREGUARD_TABLE} 2>/dev/null || break; done; \
         exit 0"
    );
    Lifecycle {
        post_start: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec!["/bin/sh".into(), "-c".into(), script]),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Root with `NET_ADMIN` (iptables, routes, the tunnel), nothing else
/// added. Dropped from the runtime's default set: what gluetun never uses.
/// Kept: `NET_BIND_SERVICE` (its DNS server on :53), `NET_RAW` (ICMP health
/// checks), `CHOWN`/`DAC_OVERRIDE`/`FOWNER`/`SETUID`/`SETGID`/`KILL` (files
/// it writes for `PUID`, the OpenVPN process user). `MKNOD` is not needed:
/// `/dev/net/tun` comes from the node.
fn security_context() -> SecurityContext {
    SecurityContext {
        run_as_user: Some(0),
        run_as_group: Some(0),
        run_as_non_root: Some(false),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            add: Some(vec!["NET_ADMIN".into()]),
            drop: Some(
                [
                    "AUDIT_WRITE",
                    "FSETID",
                    "MKNOD",
                    "SETFCAP",
                    "SETPCAP",
                    "SYS_CHROOT",
                ]
                .map(String::from)
                .to_vec(),
            ),
        }),
        ..Default::default()
    }
}

/// The gateway's resources with a memory limit of at least [`MIN_MEMORY`]
/// (a lower or unreadable limit is raised: gluetun is OOM-killed below it);
/// by default a small request and the minimum limit.
fn resources(gateway: Option<&VpnGateway>) -> ResourceRequirements {
    let mut res = gateway
        .and_then(|g| g.spec.resources.clone())
        .unwrap_or_else(|| ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("10m".into())),
                ("memory".to_string(), Quantity("64Mi".into())),
            ])),
            ..Default::default()
        });
    let limits = res.limits.get_or_insert_with(BTreeMap::new);
    let enough = limits
        .get("memory")
        .and_then(|q| quantity_bytes(&q.0))
        .is_some_and(|b| b >= MIN_MEMORY_BYTES);
    if !enough {
        limits.insert("memory".into(), Quantity(MIN_MEMORY.into()));
    }
    res
}

/// The value of a Kubernetes quantity (`256Mi`, `1G`, `0.5Gi`, `300e6`, `512000k`).
pub(super) fn quantity_bytes(q: &str) -> Option<f64> {
    let q = q.trim();
    let end = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(end);
    let num: f64 = num.parse().ok()?;
    let bytes = match suffix {
        "" => num,
        "Ki" => num * 1024f64,
        "Mi" => num * 1024f64.powi(2),
        "Gi" => num * 1024f64.powi(3),
        "Ti" => num * 1024f64.powi(4),
        "Pi" => num * 1024f64.powi(5),
        "Ei" => num * 1024f64.powi(6),
        "n" => num / 1e9,
        "u" => num / 1e6,
        "m" => num / 1e3,
        "k" => num * 1e3,
        "M" => num * 1e6,
        "G" => num * 1e9,
        "T" => num * 1e12,
        "P" => num * 1e15,
        "E" => num * 1e18,
        exp if exp.starts_with(['e', 'E']) => num * 10f64.powi(exp[1..].parse().ok()?),
        _ => return None,
    };
    bytes.is_finite().then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_read_like_the_api_server() {
        let mi = 1024.0 * 1024.0;
        for (q, want) in [
            ("256Mi", 256.0 * mi),
            ("0.25Gi", 256.0 * mi),
            ("268435456", 256.0 * mi),
            ("300M", 300e6),
            ("300e6", 300e6),
            ("1E3", 1e3),
            ("512000k", 512e6),
            ("128974848000m", 128974848.0),
        ] {
            assert_eq!(quantity_bytes(q), Some(want), "{q}");
        }
        for bad in ["", "Mi", "12XB", "1e", "abc"] {
            assert_eq!(quantity_bytes(bad), None, "{bad}");
        }
    }
}
