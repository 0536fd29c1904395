//! fail2ban in front of Traefik: a hostNetwork DaemonSet (`crazymax/fail2ban`)
//! that reads Traefik's JSON access log from the node's pod log files and
//! bans in the raw table's PREROUTING chain, before NAT.
//!
//! Files (crazymax layout, `/data/{jail.d,filter.d,action.d}`), from one
//! ConfigMap `<stack>-fail2ban`:
//! - `jail.d/mediastack.local`: jails `traefik-auth` (401/403) and
//!   `traefik-botsearch` (404 on paths scanners probe), from `jail.conf`;
//! - `filter.d/mediastack-traefik-{auth,botsearch}.conf`, from `filter.conf`
//!   ([`auth_filter`], [`botsearch_filter`]);
//! - `action.d/mediastack-raw-drop.conf`, `action.conf` as is.
//!
//! The templates sit next to this file.
//!
//! The image links only regular files from `/data/filter.d` and
//! `/data/action.d` into `/etc/fail2ban`, and a ConfigMap volume holds
//! symlinks, so every file is mounted on its own with `subPath`. The pod
//! template carries a hash of the files: a change rolls the pods.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PodSpec, Probe, SecurityContext, Volume, VolumeMount,
};
use sha2::{Digest, Sha256};

use super::meta::Parent;
use super::pod;
use super::traefik;
use super::traefik_crd::TUNNEL_ENTRY_POINT;
use super::{Child, Inputs, RenderError};
use crate::api::mediastack::{Fail2ban, Jail, MediaStackSpec};

/// fail2ban image unless `security.fail2ban.image` is set.
pub const DEFAULT_IMAGE: &str = "crazymax/fail2ban:1.1.0";
/// Jail of failed logins (401 and 403).
pub const AUTH_JAIL: &str = "traefik-auth";
/// Jail of scanners (404 on well-known probe paths).
pub const BOTSEARCH_JAIL: &str = "traefik-botsearch";
/// Pod annotation with the hash of the configuration files.
pub use super::pod::CONFIG_HASH_ANNOTATION;
/// Always ignored, before the cluster ranges and `ignoreCIDRs`.
pub const LOOPBACK: &[&str] = &["127.0.0.1/8", "::1"];
/// Node ports whose traffic a ban drops (Traefik's HTTP, and HTTPS for an
/// existing Traefik that serves it).
pub const BANNED_PORTS: &str = "80,443";
/// Last path segments (case-insensitive regexes) that only scanners ask for.
pub const BOT_PATHS: &[&str] = &[
    r"wp-login\.php",
    r"wp-admin",
    r"wp-content",
    r"wp-includes",
    r"xmlrpc\.php",
    r"\.env",
    r"\.git",
    r"\.aws",
    r"\.ssh",
    r"\.htpasswd",
    r"phpmyadmin",
    r"pma",
    r"myadmin",
    r"adminer(?:\.php)?",
    r"phpinfo\.php",
    r"setup\.php",
    r"cgi-bin",
    r"boaform",
    r"hnap1",
    r"vendor/phpunit",
    r"actuator",
];

const FILTER_TEMPLATE: &str = include_str!("filter.conf");
const JAIL_TEMPLATE: &str = include_str!("jail.conf");
const ACTION: &str = include_str!("action.conf");
const LOGWATCH_TEMPLATE: &str = include_str!("logwatch.sh");

const CONTAINER: &str = "fail2ban";
const COMPONENT: &str = "security";
const JAIL_KEY: &str = "mediastack.local";
const AUTH_FILTER: &str = "mediastack-traefik-auth";
const BOTSEARCH_FILTER: &str = "mediastack-traefik-botsearch";
const ACTION_KEY: &str = "mediastack-raw-drop.conf";
const PLACEHOLDER_KEY: &str = "empty.log";
const PLACEHOLDER_PATH: &str = "/data/empty.log";
const POD_LOGS: &str = "/var/log/pods";
const RUN_DIR: &str = "/var/run/fail2ban";
/// The host's iptables lock file.
pub const XTABLES_LOCK: &str = "/run/xtables.lock";

/// Whether fail2ban runs: `security.fail2ban.enabled`, by default on
/// exactly when Traefik is managed.
pub fn enabled(spec: &MediaStackSpec) -> bool {
    spec.security
        .fail2ban
        .enabled
        .unwrap_or(spec.ingress.traefik.is_managed())
}

/// Name of the ConfigMap and the DaemonSet: `<stack>-fail2ban`.
pub fn name(parent: &Parent) -> String {
    parent.child_name(CONTAINER)
}

/// Filter of failed logins: 401 and 403 answers, from the direct client on
/// `entry_point` or the tunnel visitor on the tunnel entry point.
pub fn auth_filter(entry_point: &str) -> String {
    filter(
        AUTH_FILTER,
        "failed logins and refused requests (HTTP 401, 403)",
        "40[13]",
        "",
        entry_point,
    )
}

/// Filter of scanners: 404 answers for one of [`BOT_PATHS`].
pub fn botsearch_filter(entry_point: &str) -> String {
    let path = format!(
        r#""RequestPath":"(?:/[^"?]*)?/(?i:{})(?:[/?.][^"]*)?",.*"#,
        BOT_PATHS.join("|")
    );
    filter(
        BOTSEARCH_FILTER,
        "scanners probing for well-known paths (HTTP 404)",
        "404",
        &path,
        entry_point,
    )
}

fn filter(name: &str, title: &str, status: &str, path: &str, entry_point: &str) -> String {
    FILTER_TEMPLATE
        .replace("{{FILTER}}", name)
        .replace("{{TITLE}}", title)
        .replace("{{STATUS}}", status)
        .replace("{{PATH}}", path)
        .replace("{{ENTRY_POINT}}", entry_point)
        .replace("{{TUNNEL}}", TUNNEL_ENTRY_POINT)
}

/// One character of a generated name part (a ReplicaSet's
/// pod-template-hash, a pod's random suffix: `k8s.io/apimachinery/pkg/util/rand`
/// letters and digits): anything but `-` and `_`, in glob syntax that both
/// Python's `glob` (fail2ban) and `sh` (the logwatch sidecar) read.
const NAME_ALPHABET: &str = "[!-_]";
/// A pod UID as the kubelet writes it in the log directory name.
const UID_GLOB: &str = "????????-????-????-????-????????????";
/// Longest pod-template-hash: a 32-bit hash in decimal, one character per digit.
const MAX_TEMPLATE_HASH: usize = 10;

/// Globs of Traefik's container log files on the node. For the managed
/// Traefik, exactly the pods of `<stack>-traefik`'s ReplicaSets: the kubelet
/// names each pod's directory `<ns>_<pod>_<uid>` and a Deployment's pod is
/// `<deployment>-<template hash>-<5 characters>`, none of them `-`, so one
/// glob per hash length (1 to 10) matches these pods and no other (not
/// those of a stack named `<stack>-traefik-x`). For an existing Traefik:
/// any pod named `traefik-*` (k3s's).
pub fn log_globs(parent: &Parent, spec: &MediaStackSpec) -> Vec<String> {
    if spec.ingress.traefik.is_managed() {
        let suffix = NAME_ALPHABET.repeat(5);
        (1..=MAX_TEMPLATE_HASH)
            .map(|n| {
                format!(
                    "{POD_LOGS}/{}_{}-{}-{suffix}_{UID_GLOB}/{}/*.log",
                    parent.namespace,
                    traefik::name(parent),
                    NAME_ALPHABET.repeat(n),
                    traefik::CONTAINER
                )
            })
            .collect()
    } else {
        vec![format!("{POD_LOGS}/*_traefik-*/traefik/*.log")]
    }
}

/// Name of the iptables chain of `jail` for this stack:
/// `f2b-<8 hex digits of SHA-256 over "<namespace>/<stack>">-<auth|bots>`,
/// 17 characters (iptables allows 28). Each stack's fail2ban creates,
/// flushes and deletes only its own chains.
pub fn chain_name(parent: &Parent, jail: &str) -> String {
    let digest = Sha256::digest(format!("{}/{}", parent.namespace, parent.name).as_bytes());
    let short = digest.iter().take(4).fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    });
    let kind = if jail == AUTH_JAIL { "auth" } else { "bots" };
    format!("f2b-{short}-{kind}")
}

/// Environment variable of the fail2ban container holding the Cloudflare
/// API token (from `security.fail2ban.cloudflare.tokenSecretRef`).
pub const CLOUDFLARE_TOKEN_ENV: &str = "CF_API_TOKEN";
/// Key of the API token in the Cloudflare Secret.
pub const CLOUDFLARE_TOKEN_KEY: &str = "apiToken";

/// The second action of a jail when `security.fail2ban.cloudflare` is set:
/// fail2ban's stock `cloudflare-token` action (an IP access rule in the
/// zone per ban). The token stays out of the ConfigMap: the action's
/// command line names the environment variable and the shell expands it.
fn cloudflare_action(parent: &Parent, spec: &MediaStackSpec, jail: &str) -> String {
    match &spec.security.fail2ban.cloudflare {
        Some(cf) => format!(
            "\n         cloudflare-token[cfzone=\"{}\", cftoken=\"${CLOUDFLARE_TOKEN_ENV}\", notes=\"mediastack-{}\"]",
            cf.zone_id,
            chain_name(parent, jail)
        ),
        None => String::new(),
    }
}

/// Addresses never banned: loopback, the cluster's pod and service ranges
/// (cloudflared's pod among them, so the tunnel itself is never banned) and
/// `security.fail2ban.ignoreCIDRs`.
pub fn ignore_ip(spec: &MediaStackSpec, inputs: &Inputs) -> Result<Vec<String>, RenderError> {
    let mut out: Vec<String> = LOOPBACK.iter().map(|s| s.to_string()).collect();
    for cidr in inputs
        .cluster_subnets
        .iter()
        .chain(&spec.security.fail2ban.ignore_cidrs)
    {
        let ok = !cidr.is_empty()
            && cidr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '/'));
        if !ok {
            return Err(RenderError::Invalid(format!(
                "fail2ban ignore entry {cidr:?} is not an IP address or CIDR"
            )));
        }
        if !out.contains(cidr) {
            out.push(cidr.clone());
        }
    }
    Ok(out)
}

/// The files of the ConfigMap, by key.
pub fn config_files(
    parent: &Parent,
    spec: &MediaStackSpec,
    inputs: &Inputs,
) -> Result<BTreeMap<String, String>, RenderError> {
    let f2b = &spec.security.fail2ban;
    let entry_point = &spec.ingress.traefik.entry_point;
    traefik::validate_entry_point(entry_point)?;
    let ignore = ignore_ip(spec, inputs)?.join(" ");
    let globs = log_globs(parent, spec).join("\n          ");
    let mut jails = format!(
        "# fail2ban jails of MediaStack {}/{}.\n# Rendered by mediastack-operator; edits are overwritten.\n",
        parent.namespace, parent.name
    );
    for (jail, filter, title, settings) in [
        (
            AUTH_JAIL,
            AUTH_FILTER,
            "failed logins and refused requests",
            &f2b.auth_jail,
        ),
        (
            BOTSEARCH_JAIL,
            BOTSEARCH_FILTER,
            "scanners probing for well-known paths",
            &f2b.botsearch_jail,
        ),
    ] {
        let find_time = duration(&settings.find_time)?;
        let ban_time = duration(&settings.ban_time)?;
        jails.push_str(
            &JAIL_TEMPLATE
                .replace("{{JAIL}}", jail)
                .replace("{{TITLE}}", title)
                .replace("{{FILTER}}", filter)
                .replace("{{IGNOREIP}}", &ignore)
                .replace("{{LOGPATH}}", &globs)
                .replace("{{CHAIN}}", &chain_name(parent, jail))
                .replace("{{CLOUDFLARE}}", &cloudflare_action(parent, spec, jail))
                .replace("{{PLACEHOLDER}}", PLACEHOLDER_PATH)
                .replace("{{MAXRETRY}}", &settings.max_retry.to_string())
                .replace("{{FINDTIME}}", &find_time.0)
                .replace("{{BANTIME}}", &ban_time.0)
                .replace("{{PORTS}}", BANNED_PORTS),
        );
    }
    Ok(BTreeMap::from([
        (JAIL_KEY.to_string(), jails),
        (format!("{AUTH_FILTER}.conf"), auth_filter(entry_point)),
        (
            format!("{BOTSEARCH_FILTER}.conf"),
            botsearch_filter(entry_point),
        ),
        (ACTION_KEY.to_string(), ACTION.to_string()),
        (PLACEHOLDER_KEY.to_string(), String::new()),
    ]))
}

/// Seconds between two looks of the logwatch sidecar at the log files.
pub const LOGWATCH_INTERVAL: u32 = 30;

/// The logwatch sidecar's script (`logwatch.sh`): keeps each jail's
/// watched files equal to the files behind [`log_globs`] (plus the
/// placeholder) with `fail2ban-client set <jail> addlogpath|dellogpath`,
/// commands the running server carries out without any configuration in
/// the sidecar. A `reload` would not do: fail2ban-client parses the jail
/// files in its own container, which has none of them, and the server is
/// left without jails.
pub fn logwatch_script(parent: &Parent, spec: &MediaStackSpec) -> String {
    LOGWATCH_TEMPLATE
        .replace("{{JAILS}}", &format!("{AUTH_JAIL} {BOTSEARCH_JAIL}"))
        .replace("{{GLOBS}}", &log_globs(parent, spec).join(" "))
        .replace("{{INTERVAL}}", &LOGWATCH_INTERVAL.to_string())
}

/// The ConfigMap and the DaemonSet, when [`enabled`].
pub fn objects(
    parent: &Parent,
    spec: &MediaStackSpec,
    inputs: &Inputs,
) -> Result<Vec<Child>, RenderError> {
    if !enabled(spec) {
        return Ok(Vec::new());
    }
    let name = name(parent);
    let files = config_files(parent, spec, inputs)?;
    let hash = pod::config_hash(&files);
    let config_map = ConfigMap {
        metadata: parent.meta(&name, CONTAINER, COMPONENT),
        data: Some(files),
        ..Default::default()
    };
    let daemon_set = daemon_set(parent, spec, &hash)?;
    Ok(vec![Child::typed(&config_map)?, Child::typed(&daemon_set)?])
}

/// The DaemonSet: one hostNetwork pod per node with the fail2ban server
/// and its logwatch sidecar; `hash` (of the config files) rolls the pods.
fn daemon_set(
    parent: &Parent,
    spec: &MediaStackSpec,
    hash: &str,
) -> Result<DaemonSet, RenderError> {
    let f2b = &spec.security.fail2ban;
    let image = f2b.image.clone().unwrap_or_else(|| DEFAULT_IMAGE.into());
    let pod = PodSpec {
        host_network: Some(true),
        dns_policy: Some("ClusterFirstWithHostNet".into()),
        automount_service_account_token: Some(false),
        containers: vec![
            server_container(spec, &image, purge_age(f2b)?),
            logwatch_container(parent, spec, &image),
        ],
        volumes: Some(volumes(parent)),
        ..Default::default()
    };
    let annotations = BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_string(), hash.to_string())]);
    Ok(DaemonSet {
        metadata: parent.meta(&name(parent), CONTAINER, COMPONENT),
        spec: DaemonSetSpec {
            selector: parent.label_selector(CONTAINER),
            template: pod::template(parent, CONTAINER, COMPONENT, Some(annotations), pod),
            ..Default::default()
        },
        status: None,
    })
}

/// Seconds after which bans are not restored after a restart: the longest
/// ban time, at least a day.
fn purge_age(f2b: &Fail2ban) -> Result<u64, RenderError> {
    Ok([&f2b.auth_jail, &f2b.botsearch_jail]
        .into_iter()
        .map(|j: &Jail| duration(&j.ban_time).map(|d| d.1))
        .collect::<Result<Vec<u64>, _>>()?
        .into_iter()
        .fold(86_400, u64::max))
}

/// `fail2ban-client ping` every `period` seconds.
fn ping(period: i32, failures: i32) -> Probe {
    Probe {
        period_seconds: Some(period),
        timeout_seconds: Some(10),
        failure_threshold: Some(failures),
        ..pod::exec_probe(&["fail2ban-client", "ping"])
    }
}

/// A file of the config volume, mounted read-only at `/data/<dir><key>`.
fn config_mount(dir: &str, key: &str) -> VolumeMount {
    pod::sub_path_mount("config", &format!("/data/{dir}{key}"), key, true)
}

/// A read-only mount of the node's pod logs.
fn pod_logs_mount() -> VolumeMount {
    VolumeMount {
        read_only: Some(true),
        ..pod::mount("pod-logs", POD_LOGS)
    }
}

/// The fail2ban server: jails from the config volume, bans in iptables.
fn server_container(spec: &MediaStackSpec, image: &str, purge_age: u64) -> Container {
    let f2b = &spec.security.fail2ban;
    Container {
        name: CONTAINER.into(),
        image: Some(image.into()),
        env: Some(
            vec![
                // Matches the UTC timestamps of the CRI log lines.
                pod::env("TZ", "UTC"),
                pod::env("F2B_LOG_TARGET", "STDOUT"),
                pod::env("F2B_LOG_LEVEL", "INFO"),
                pod::env("F2B_DB_PURGE_AGE", &purge_age.to_string()),
                pod::env("IPTABLES_MODE", "auto"),
            ]
            .into_iter()
            .chain(f2b.cloudflare.as_ref().map(|cf| {
                pod::secret_env(
                    CLOUDFLARE_TOKEN_ENV,
                    &cf.token_secret_ref.name,
                    CLOUDFLARE_TOKEN_KEY,
                    Some(false),
                )
            }))
            .collect(),
        ),
        volume_mounts: Some(vec![
            config_mount("jail.d/", JAIL_KEY),
            config_mount("filter.d/", &format!("{AUTH_FILTER}.conf")),
            config_mount("filter.d/", &format!("{BOTSEARCH_FILTER}.conf")),
            config_mount("action.d/", ACTION_KEY),
            config_mount("", PLACEHOLDER_KEY),
            pod::mount("db", "/data/db"),
            pod_logs_mount(),
            pod::mount("run", RUN_DIR),
            // iptables -w waits on the host's lock, shared with kube-proxy
            // and the CNI, so concurrent rule changes do not clobber each other.
            pod::mount("xtables-lock", XTABLES_LOCK),
        ]),
        startup_probe: Some(ping(5, 24)),
        readiness_probe: Some(ping(10, 3)),
        liveness_probe: Some(ping(30, 3)),
        resources: Some(pod::resources("10m", "64Mi", "256Mi")),
        // Runs as root (it edits its config at start and drives iptables)
        // with only the network capabilities.
        security_context: Some(pod::drop_all_but(&["NET_ADMIN", "NET_RAW"])),
        ..Default::default()
    }
}

/// The logwatch sidecar ([`logwatch_script`]), no capabilities.
fn logwatch_container(parent: &Parent, spec: &MediaStackSpec, image: &str) -> Container {
    Container {
        name: "logwatch".into(),
        image: Some(image.into()),
        command: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            logwatch_script(parent, spec),
        ]),
        volume_mounts: Some(vec![
            pod_logs_mount(),
            pod::mount("run", RUN_DIR),
            // The jails watch it too: it exists here, so it is never removed.
            config_mount("", PLACEHOLDER_KEY),
        ]),
        resources: Some(pod::resources("1m", "16Mi", "64Mi")),
        security_context: Some(SecurityContext {
            read_only_root_filesystem: Some(true),
            ..pod::drop_all_but(&[])
        }),
        ..Default::default()
    }
}

/// The config files, the ban database on the node (per stack), the node's
/// pod logs, the server's socket directory and the host's xtables lock.
fn volumes(parent: &Parent) -> Vec<Volume> {
    vec![
        pod::config_map_volume("config", &name(parent)),
        pod::host_path_volume(
            "db",
            &format!(
                "/var/lib/mediastack/{}-{}/fail2ban",
                parent.namespace, parent.name
            ),
            "DirectoryOrCreate",
        ),
        pod::host_path_volume("pod-logs", POD_LOGS, "Directory"),
        pod::empty_dir("run"),
        pod::host_path_volume("xtables-lock", XTABLES_LOCK, "FileOrCreate"),
    ]
}

/// A fail2ban time (`10m`, `1h`, ...) as given and in seconds. The CRD
/// schema already restricts it to `<digits><s|m|h|d|w>`.
fn duration(value: &str) -> Result<(String, u64), RenderError> {
    let invalid = || RenderError::Invalid(format!("fail2ban time {value:?} is not like 10m or 1h"));
    let unit = value.chars().last().ok_or_else(invalid)?;
    let number: u64 = value[..value.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| invalid())?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return Err(invalid()),
    };
    Ok((value.to_string(), number.saturating_mul(scale)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use regex::Regex;
    use serde_json::{Value, json};

    use super::super::fixtures::{inputs, parent, stack};
    use super::*;

    /// One access-log line as Traefik v3 writes it with the managed
    /// configuration (JSON, keys sorted, CF-Connecting-IP kept), wrapped by
    /// the container runtime in CRI format.
    fn line(
        time: &str,
        client: &str,
        status: u16,
        path: &str,
        ep: &str,
        cf: Option<&str>,
    ) -> String {
        let host = if ep == "tunnel" {
            "ha.example.org"
        } else {
            "ha.lan"
        };
        let cf = cf
            .map(|ip| format!(r#""request_Cf-Connecting-Ip":"{ip}","#))
            .unwrap_or_default();
        format!(
            concat!(
                r#"{time} stdout F {{"ClientAddr":"{client_addr}:51234","ClientHost":"{client}","#,
                r#""ClientPort":"51234","ClientUsername":"-","DownstreamContentSize":17,"#,
                r#""DownstreamStatus":{status},"Duration":1843302,"OriginContentSize":17,"#,
                r#""OriginDuration":1790000,"OriginStatus":{status},"Overhead":53302,"#,
                r#""RequestAddr":"{host}","RequestContentSize":0,"RequestCount":42,"#,
                r#""RequestHost":"{host}","RequestMethod":"GET","RequestPath":"{path}","#,
                r#""RequestPort":"-","RequestProtocol":"HTTP/1.1","RequestScheme":"http","#,
                r#""RetryAttempts":0,"RouterName":"media-home-assistant-6f9d@kubernetescrd","#,
                r#""ServiceAddr":"10.42.0.30:8123","#,
                r#""ServiceName":"media-home-assistant-6f9d@kubernetescrd","#,
                r#""ServiceURL":"http://10.42.0.30:8123","StartLocal":"{time}","#,
                r#""StartUTC":"{time}","entryPointName":"{ep}","level":"info","msg":"","#,
                r#"{cf}"time":"{time}"}}"#
            ),
            time = time,
            client_addr = client.split(',').next().unwrap_or(client),
            client = client,
            status = status,
            host = host,
            path = path,
            ep = ep,
            cf = cf,
        )
    }

    /// The log: which lines would be banned by which jail is asserted below.
    fn log() -> Vec<String> {
        let t = |s: u32| format!("2025-11-20T10:00:{s:02}.{:09}Z", 123_456_789 + s);
        vec![
            // LAN client failing basic auth, and refused by an allow list.
            line(&t(1), "192.168.1.50", 401, "/", "web", None),
            line(&t(2), "192.168.1.51", 403, "/api/states", "web", None),
            // Tunnel visitors: the tunnel entry point trusts X-Forwarded-For,
            // which may hold a forged first element; the visitor is CF-Connecting-IP.
            line(
                &t(3),
                "198.51.100.99, 203.0.113.7",
                401,
                "/",
                "tunnel",
                Some("203.0.113.7"),
            ),
            line(
                &t(4),
                "10.42.0.17",
                401,
                "/auth/login",
                "tunnel",
                Some("203.0.113.8"),
            ),
            // A LAN client forging CF-Connecting-IP is judged by its own address.
            line(&t(5), "192.168.1.60", 401, "/", "web", Some("203.0.113.99")),
            // Successes never count.
            line(&t(6), "192.168.1.70", 200, "/", "web", None),
            line(&t(7), "10.42.0.17", 200, "/", "tunnel", Some("203.0.113.9")),
            // Scanners.
            line(&t(8), "198.51.100.20", 404, "/wp-login.php", "web", None),
            line(
                &t(9),
                "10.42.0.17",
                404,
                "/.env",
                "tunnel",
                Some("203.0.113.30"),
            ),
            line(
                &t(10),
                "198.51.100.21",
                404,
                "/phpMyAdmin/index.php?lang=en",
                "web",
                None,
            ),
            line(&t(11), "198.51.100.22", 404, "/blog/wp-admin/", "web", None),
            // Not scanners: other 404s, a probe path that was served.
            line(&t(12), "192.168.1.80", 404, "/environment", "web", None),
            line(&t(13), "192.168.1.81", 404, "/favicon.ico", "web", None),
            line(&t(14), "192.168.1.82", 200, "/.env", "web", None),
            // Traefik's own log lines share the file.
            format!(
                r#"{} stdout F {{"level":"info","msg":"Starting provider *crd.Provider","time":"2025-11-20T10:00:15Z"}}"#,
                t(15)
            ),
        ]
    }

    fn auth_expected() -> BTreeSet<&'static str> {
        [
            "192.168.1.50",
            "192.168.1.51",
            "203.0.113.7",
            "203.0.113.8",
            "192.168.1.60",
        ]
        .into()
    }

    fn botsearch_expected() -> BTreeSet<&'static str> {
        [
            "198.51.100.20",
            "203.0.113.30",
            "198.51.100.21",
            "198.51.100.22",
        ]
        .into()
    }

    /// The value of `key` in a fail2ban config file, with continuation lines.
    fn setting(conf: &str, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut inside = false;
        for l in conf.lines() {
            if let Some(rest) = l.strip_prefix(&format!("{key} =")) {
                inside = true;
                if !rest.trim().is_empty() {
                    out.push(rest.trim().to_string());
                }
            } else if inside && l.starts_with(char::is_whitespace) && !l.trim().is_empty() {
                out.push(l.trim().to_string());
            } else {
                inside = false;
            }
        }
        out
    }

    /// fail2ban's reading of a filter, in Rust: the datepattern (with
    /// `%%` escapes and strptime directives) finds and cuts the time, then the
    /// failregex lines are tried in order and `<ADDR>` captures the address.
    struct Filter {
        date: Regex,
        fail: Vec<Regex>,
    }

    impl Filter {
        fn parse(conf: &str) -> Self {
            assert!(!conf.contains("%("), "no %(...)s interpolation expected");
            let date = setting(conf, "datepattern").join("");
            let date = date
                .replace("%%Y", r"\d{4}")
                .replace("%%m", r"\d{2}")
                .replace("%%d", r"\d{2}")
                .replace("%%H", r"\d{2}")
                .replace("%%M", r"\d{2}")
                .replace("%%S", r"\d{2}")
                .replace("%%f", r"\d{1,6}")
                .replace("%%z", r"(?:Z|UTC|GMT|[+-][01]\d(?::?\d{2})?)");
            assert!(!date.contains('%'), "untranslated directive in {date}");
            let fail = setting(conf, "failregex")
                .iter()
                .map(|re| {
                    Regex::new(&re.replace("<ADDR>", r"(?P<addr>[0-9A-Fa-f:.]+)"))
                        .expect("failregex compiles")
                })
                .collect();
            Self {
                date: Regex::new(&date).expect("datepattern compiles"),
                fail,
            }
        }

        /// The indexes of the failregex lines matching `line`, with the address.
        fn matches(&self, line: &str) -> Vec<(usize, String)> {
            let Some(date) = self.date.find(line) else {
                return Vec::new();
            };
            let rest = format!("{}{}", &line[..date.start()], &line[date.end()..]);
            self.fail
                .iter()
                .enumerate()
                .filter_map(|(i, re)| re.captures(&rest).map(|c| (i, c["addr"].to_string())))
                .collect()
        }

        fn banned(&self, log: &[String]) -> BTreeSet<String> {
            log.iter()
                .filter_map(|l| self.matches(l).into_iter().next().map(|m| m.1))
                .collect()
        }
    }

    fn as_strings(set: BTreeSet<&str>) -> BTreeSet<String> {
        set.into_iter().map(String::from).collect()
    }

    #[test]
    fn filters_pick_the_client_to_ban() {
        let auth = Filter::parse(&auth_filter("web"));
        let bots = Filter::parse(&botsearch_filter("web"));
        assert_eq!(auth.fail.len(), 2);
        assert_eq!(bots.fail.len(), 2);
        let log = log();
        assert_eq!(auth.banned(&log), as_strings(auth_expected()));
        assert_eq!(bots.banned(&log), as_strings(botsearch_expected()));
        // No line matches both failregex lines of a filter.
        for l in &log {
            assert!(auth.matches(l).len() <= 1, "{l}");
            assert!(bots.matches(l).len() <= 1, "{l}");
        }
        // Every line has a time fail2ban can read.
        assert!(log.iter().all(|l| auth.date.is_match(l)));
    }

    #[test]
    fn filters_follow_the_entry_point() {
        let auth = Filter::parse(&auth_filter("http"));
        let log = log();
        // With the HTTP entry point called `http`, `web` lines are not ours.
        assert_eq!(
            auth.banned(&log),
            as_strings(["203.0.113.7", "203.0.113.8"].into())
        );
        let renamed: Vec<String> = log
            .iter()
            .map(|l| l.replace(r#""entryPointName":"web""#, r#""entryPointName":"http""#))
            .collect();
        assert_eq!(auth.banned(&renamed), as_strings(auth_expected()));
    }

    /// The same log through fail2ban's own `fail2ban-regex` (Debian package
    /// `fail2ban`), when it is installed.
    #[test]
    fn fail2ban_regex_agrees() {
        let found = std::process::Command::new("fail2ban-regex")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            // e2e/test.sh (and so CI) installs fail2ban and requires the check.
            assert!(
                std::env::var_os("MEDIASTACK_REQUIRE_TOOLS").is_none(),
                "fail2ban-regex is required but not installed"
            );
            eprintln!("fail2ban-regex not installed: skipped (apt-get install fail2ban)");
            return;
        }
        let dir = std::env::temp_dir().join(format!("mediastack-f2b-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let log_path = dir.join("0.log");
        std::fs::write(&log_path, log().join("\n") + "\n").expect("write log");
        for (name, conf, expected) in [
            ("auth.conf", auth_filter("web"), auth_expected()),
            (
                "botsearch.conf",
                botsearch_filter("web"),
                botsearch_expected(),
            ),
        ] {
            let filter_path = dir.join(name);
            std::fs::write(&filter_path, conf).expect("write filter");
            let out = std::process::Command::new("fail2ban-regex")
                .args(["--out", "ip"])
                .arg(&log_path)
                .arg(&filter_path)
                .output()
                .expect("fail2ban-regex runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            let banned: BTreeSet<String> = stdout
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
            assert_eq!(banned, as_strings(expected), "{name}: {stdout}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Debian's fail2ban reads the rendered jails: the dump of its parsed
    /// configuration names the stack's chain in every iptables command, and
    /// the Cloudflare action gets the token only as `$CF_API_TOKEN`.
    #[test]
    fn fail2ban_client_reads_the_jails() {
        use crate::api::common::SecretRef;
        use crate::api::mediastack::CloudflareBan;
        let stock = std::path::Path::new("/etc/fail2ban");
        let found = std::process::Command::new("fail2ban-client")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
            && stock.join("action.d/cloudflare-token.conf").exists();
        if !found {
            assert!(
                std::env::var_os("MEDIASTACK_REQUIRE_TOOLS").is_none(),
                "fail2ban-client and /etc/fail2ban are required but not installed"
            );
            eprintln!("fail2ban not installed: skipped (apt-get install fail2ban)");
            return;
        }
        let dir = std::env::temp_dir().join(format!("mediastack-f2bc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let copy = std::process::Command::new("cp")
            .arg("-r")
            .arg(stock)
            .arg(&dir)
            .status()
            .expect("cp");
        assert!(copy.success());
        // Only the operator's jails: drop the distribution's enabled ones.
        for entry in std::fs::read_dir(dir.join("jail.d")).expect("jail.d") {
            std::fs::remove_file(entry.expect("entry").path()).expect("rm");
        }
        let mut spec = stack().spec;
        spec.security.fail2ban.cloudflare = Some(CloudflareBan {
            zone_id: "0123456789abcdef0123456789abcdef".into(),
            token_secret_ref: SecretRef {
                name: "cloudflare-api".into(),
            },
        });
        let files = config_files(&parent(), &spec, &inputs()).expect("render");
        let placeholder = dir.join(PLACEHOLDER_KEY);
        std::fs::write(&placeholder, "").expect("placeholder");
        for (key, content) in &files {
            let target = match key.as_str() {
                JAIL_KEY => dir.join("jail.d").join(key),
                ACTION_KEY => dir.join("action.d").join(key),
                PLACEHOLDER_KEY => continue,
                _ => dir.join("filter.d").join(key),
            };
            let content = content
                .replace(PLACEHOLDER_PATH, &placeholder.to_string_lossy())
                .replace(POD_LOGS, &dir.join("pods").to_string_lossy());
            std::fs::write(target, content).expect("write");
        }
        let out = std::process::Command::new("fail2ban-client")
            .arg("-c")
            .arg(&dir)
            .arg("-d")
            .output()
            .expect("fail2ban-client runs");
        let dump = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{dump}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for jail in [AUTH_JAIL, BOTSEARCH_JAIL] {
            let chain = chain_name(&parent(), jail);
            assert!(
                dump.contains(&format!(
                    "['actionban', '<iptables> -t raw -I {chain} 1 -s <ip> -j DROP']"
                )),
                "{jail}: {dump}"
            );
            assert!(
                dump.contains(&format!(
                    "['set', '{jail}', 'addaction', 'cloudflare-token']"
                )),
                "{jail}: {dump}"
            );
        }
        assert!(
            dump.contains("-H \"Authorization: Bearer $CF_API_TOKEN\""),
            "{dump}"
        );
        assert!(
            dump.contains("zones/0123456789abcdef0123456789abcdef/"),
            "{dump}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn by_key(children: &[Child]) -> BTreeMap<String, Value> {
        children
            .iter()
            .map(|c| (c.key(), serde_json::to_value(&c.object).expect("json")))
            .collect()
    }

    #[test]
    fn fail2ban_snapshots() {
        let children = objects(&parent(), &stack().spec, &inputs()).expect("render");
        let keys: Vec<String> = children.iter().map(Child::key).collect();
        assert_eq!(keys, ["ConfigMap/home-fail2ban", "DaemonSet/home-fail2ban"]);
        for child in &children {
            let snap = format!("fail2ban_{}", child.api.kind.to_lowercase());
            // With the other render snapshots, not under fail2ban/.
            insta::with_settings!({snapshot_path => "../snapshots"}, {
                insta::assert_snapshot!(snap, child.to_yaml());
            });
        }
    }

    #[test]
    fn enabled_by_default_only_with_the_managed_traefik() {
        let mut spec = stack().spec;
        assert!(enabled(&spec));
        spec.ingress.traefik.managed = Some(false);
        assert!(!enabled(&spec));
        assert!(
            objects(&parent(), &spec, &inputs())
                .expect("render")
                .is_empty()
        );
        spec.security.fail2ban.enabled = Some(true);
        assert!(enabled(&spec));
        let files = config_files(&parent(), &spec, &inputs()).expect("render");
        assert!(files[JAIL_KEY].contains("logpath = /var/log/pods/*_traefik-*/traefik/*.log"));
        spec.ingress.traefik.managed = Some(true);
        spec.security.fail2ban.enabled = Some(false);
        assert!(
            objects(&parent(), &spec, &inputs())
                .expect("render")
                .is_empty()
        );
    }

    #[test]
    fn jails_from_the_spec() {
        let mut spec = stack().spec;
        spec.security.fail2ban.ignore_cidrs = vec!["192.168.1.0/24".into(), "10.96.0.0/16".into()];
        spec.security.fail2ban.auth_jail.max_retry = 3;
        spec.security.fail2ban.botsearch_jail.ban_time = "1w".into();
        let files = config_files(&parent(), &spec, &inputs()).expect("render");
        let jails = &files[JAIL_KEY];
        let section = |name: &str| -> String {
            let start = jails.find(&format!("[{name}]")).expect("jail");
            let rest = &jails[start + 1..];
            rest[..rest.find("\n[").unwrap_or(rest.len())].to_string()
        };
        let auth = section(AUTH_JAIL);
        let bots = section(BOTSEARCH_JAIL);
        for (jail, filter, retry, find, ban) in [
            (&auth, AUTH_FILTER, "3", "10m", "1h"),
            (&bots, BOTSEARCH_FILTER, "3", "10m", "1w"),
        ] {
            assert_eq!(setting(jail, "filter"), [filter]);
            assert_eq!(setting(jail, "maxretry"), [retry]);
            assert_eq!(setting(jail, "findtime"), [find]);
            assert_eq!(setting(jail, "bantime"), [ban]);
            assert_eq!(
                setting(jail, "ignoreip"),
                ["127.0.0.1/8 ::1 10.244.0.0/16 10.96.0.0/16 192.168.1.0/24"]
            );
            let logpath = setting(jail, "logpath");
            assert_eq!(logpath.len(), 11, "{logpath:?}");
            assert_eq!(
                logpath[0],
                "/var/log/pods/media_home-traefik-[!-_]-[!-_][!-_][!-_][!-_][!-_]_????????-????-????-????-????????????/traefik/*.log"
            );
            assert_eq!(logpath[10], PLACEHOLDER_PATH);
            assert!(
                jail.contains("action = mediastack-raw-drop[name=traefik-"),
                "{jail}"
            );
            assert!(!jail.contains("cloudflare"), "opt-in only: {jail}");
        }
        assert!(!jails.contains("{{"), "{jails}");
        // The ban database keeps the longest ban.
        let ds = by_key(&objects(&parent(), &spec, &inputs()).expect("render"));
        let env =
            &ds["DaemonSet/home-fail2ban"]["spec"]["template"]["spec"]["containers"][0]["env"];
        assert!(
            env.as_array()
                .expect("env")
                .contains(&json!({"name": "F2B_DB_PURGE_AGE", "value": "604800"}))
        );

        spec.security.fail2ban.auth_jail.find_time = "10 m".into();
        assert!(matches!(
            config_files(&parent(), &spec, &inputs()),
            Err(RenderError::Invalid(_))
        ));
    }

    #[test]
    fn bans_before_nat() {
        let files = config_files(&parent(), &stack().spec, &inputs()).expect("render");
        let action = &files[ACTION_KEY];
        for key in [
            "actionstart",
            "actionstop",
            "actioncheck",
            "actionban",
            "actionunban",
        ] {
            let value = setting(action, key).join("\n");
            assert!(
                value.lines().all(|l| l.contains("-t raw")),
                "{key} works in the raw table: {value}"
            );
        }
        assert_eq!(
            setting(action, "actionban"),
            ["<iptables> -t raw -I <chain> 1 -s <ip> -j DROP"]
        );
        // Every rule names the stack's chain, never a shared f2b-<jail>.
        assert!(!action.contains("f2b-<name> "), "{action}");
        assert!(
            setting(action, "actionstart")
                .join(" ")
                .contains("PREROUTING")
        );
    }

    #[test]
    fn daemon_set_on_the_host_network_with_network_capabilities() {
        let children = objects(&parent(), &stack().spec, &inputs()).expect("render");
        let objs = by_key(&children);
        let pod = &objs["DaemonSet/home-fail2ban"]["spec"]["template"];
        let spec = &pod["spec"];
        assert_eq!(spec["hostNetwork"], true);
        assert_eq!(spec["dnsPolicy"], "ClusterFirstWithHostNet");
        let c = &spec["containers"][0];
        assert_eq!(c["image"], DEFAULT_IMAGE);
        assert_eq!(
            c["securityContext"]["capabilities"]["add"],
            json!(["NET_ADMIN", "NET_RAW"])
        );
        for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
            assert_eq!(
                c[probe]["exec"]["command"],
                json!(["fail2ban-client", "ping"]),
                "{probe}"
            );
        }
        let mounts: BTreeMap<String, Value> = c["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .map(|m| (m["mountPath"].as_str().unwrap_or("").to_string(), m.clone()))
            .collect();
        assert_eq!(mounts["/var/log/pods"]["readOnly"], true);
        assert_eq!(mounts["/run/xtables.lock"]["name"], "xtables-lock");
        assert!(mounts["/run/xtables.lock"].get("readOnly").is_none());
        assert_eq!(mounts["/data/db"]["name"], "db");
        // logwatch sees the log files, the server's socket and the
        // placeholder the jails watch (else it would remove it from them).
        let logwatch: BTreeMap<String, Value> = spec["containers"][1]["volumeMounts"]
            .as_array()
            .expect("logwatch mounts")
            .iter()
            .map(|m| (m["mountPath"].as_str().unwrap_or("").to_string(), m.clone()))
            .collect();
        assert_eq!(spec["containers"][1]["name"], "logwatch");
        for path in [POD_LOGS, RUN_DIR, PLACEHOLDER_PATH] {
            assert_eq!(logwatch.get(path), mounts.get(path), "{path}");
        }
        for (path, key) in [
            ("/data/jail.d/mediastack.local", JAIL_KEY),
            (
                "/data/filter.d/mediastack-traefik-auth.conf",
                "mediastack-traefik-auth.conf",
            ),
            ("/data/action.d/mediastack-raw-drop.conf", ACTION_KEY),
        ] {
            assert_eq!(mounts[path]["subPath"], key, "{path}");
        }
        let volumes: BTreeMap<String, Value> = spec["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .map(|v| (v["name"].as_str().unwrap_or("").to_string(), v.clone()))
            .collect();
        assert_eq!(
            volumes["xtables-lock"]["hostPath"],
            json!({"path": "/run/xtables.lock", "type": "FileOrCreate"})
        );
        assert_eq!(
            volumes["db"]["hostPath"],
            json!({"path": "/var/lib/mediastack/media-home/fail2ban", "type": "DirectoryOrCreate"})
        );
        // Every file the pod mounts exists in the ConfigMap.
        let data = &objs["ConfigMap/home-fail2ban"]["data"];
        for m in mounts.values() {
            if let Some(key) = m["subPath"].as_str() {
                assert!(data.get(key).is_some(), "{key}");
            }
        }
        // A config change rolls the pods.
        let hash = pod["metadata"]["annotations"][CONFIG_HASH_ANNOTATION].clone();
        let mut changed = stack().spec;
        changed.security.fail2ban.auth_jail.max_retry = 9;
        let objs = by_key(&objects(&parent(), &changed, &inputs()).expect("render"));
        assert_ne!(
            objs["DaemonSet/home-fail2ban"]["spec"]["template"]["metadata"]["annotations"]
                [CONFIG_HASH_ANNOTATION],
            hash
        );
    }

    #[test]
    fn chains_are_per_stack_and_fit_iptables() {
        let other = Parent {
            name: "home2".into(),
            ..parent()
        };
        let other_ns = Parent {
            namespace: "media2".into(),
            ..parent()
        };
        let mut names = BTreeSet::new();
        for p in [parent(), other, other_ns] {
            let files = config_files(&p, &stack().spec, &inputs()).expect("render");
            for jail in [AUTH_JAIL, BOTSEARCH_JAIL] {
                let chain = chain_name(&p, jail);
                // iptables: at most 28 characters (XT_EXTENSION_MAXNAMELEN - 1).
                assert!(chain.len() <= 28, "{chain}");
                assert!(
                    chain.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                    "{chain}"
                );
                assert!(
                    files[JAIL_KEY].contains(&format!("[name={jail}, chain={chain}, ")),
                    "{}",
                    files[JAIL_KEY]
                );
                names.insert(chain);
            }
        }
        assert_eq!(names.len(), 6, "no two stacks or jails share a chain");
    }

    #[test]
    fn log_globs_match_only_this_stacks_traefik_pods() {
        let dir = std::env::temp_dir().join(format!("mediastack-globs-{}", std::process::id()));
        let uid = "0f6a2c3e-1b2d-4e5f-8a9b-0c1d2e3f4a5b";
        let mine = [
            format!("media_home-traefik-7d9f8b6c5d-x2k9p_{uid}"),
            format!("media_home-traefik-5b-q7w4z_{uid}"),
        ];
        let others = [
            // Another stack whose name starts like this one's Traefik.
            format!("media_home-traefik-x-traefik-7d9f8b6c5d-x2k9p_{uid}"),
            // The same stack name in another namespace, and another app.
            format!("other_home-traefik-7d9f8b6c5d-x2k9p_{uid}"),
            format!("media_home-dozzle-7d9f8b6c5d-x2k9p_{uid}"),
        ];
        for d in mine.iter().chain(&others) {
            let c = dir.join(d).join("traefik");
            std::fs::create_dir_all(&c).expect("mkdir");
            std::fs::write(c.join("0.log"), "").expect("log");
        }
        let globs: Vec<String> = log_globs(&parent(), &stack().spec)
            .iter()
            .map(|g| g.replace(POD_LOGS, &dir.to_string_lossy()))
            .collect();
        let expected: BTreeSet<String> = mine
            .iter()
            .map(|d| format!("{}/{d}/traefik/0.log", dir.to_string_lossy()))
            .collect();
        // The shell of the logwatch sidecar.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("ls -1 {} 2>/dev/null; true", globs.join(" ")))
            .output()
            .expect("sh");
        let listed: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(listed, expected, "sh");
        // Python's glob, which fail2ban expands logpath with.
        let script =
            "import glob,sys\nfor g in sys.argv[1:]:\n    [print(p) for p in glob.glob(g)]\n";
        match std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(&globs)
            .output()
        {
            Ok(out) => {
                let listed: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(String::from)
                    .collect();
                assert_eq!(listed, expected, "python glob");
            }
            Err(e) => assert!(
                std::env::var_os("MEDIASTACK_REQUIRE_TOOLS").is_none(),
                "python3 is required: {e}"
            ),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// One round of the rendered logwatch script in `sh`, against a fake
    /// `fail2ban-client` that answers `get <jail> logpath` from a list and
    /// records every other call: new files behind the globs are added to
    /// both jails, a gone file is removed, the placeholder stays, and it
    /// never reloads (which would parse this container's missing jail files
    /// and leave the server with no jails).
    #[test]
    fn logwatch_hands_new_and_gone_files_to_the_running_jails() {
        let dir = std::env::temp_dir().join(format!("mediastack-logwatch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let logs = dir.join("pods");
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        let uid = "0f6a2c3e-1b2d-4e5f-8a9b-0c1d2e3f4a5b";
        let pod = logs.join(format!("media_home-traefik-7d9f8b6c5d-x2k9p_{uid}/traefik"));
        std::fs::create_dir_all(&pod).expect("pod dir");
        let kept = pod.join("0.log");
        let new = pod.join("1.log");
        std::fs::write(&kept, "").expect("log");
        std::fs::write(&new, "").expect("log");
        let gone = logs.join(format!("media_home-traefik-5b-q7w4z_{uid}/traefik/0.log"));
        let calls = dir.join("calls");
        let watched = format!(
            "{}\n{PLACEHOLDER_PATH}\n{}\n",
            kept.display(),
            gone.display()
        );
        std::fs::write(dir.join("watched"), &watched).expect("watched");
        let fake = format!(
            "#!/bin/sh\nif [ \"$1\" = get ]; then echo 'Current monitored log file(s):'; \
             sed -e '$!s/^/|- /' -e '$s/^/`- /' {w}; exit 0; fi\necho \"$*\" >> {c}\n",
            w = dir.join("watched").display(),
            c = calls.display()
        );
        // The placeholder must exist, as the ConfigMap key does in the pod.
        let script = logwatch_script(&parent(), &stack().spec)
            .replace(POD_LOGS, &logs.to_string_lossy())
            .replace(PLACEHOLDER_PATH, &dir.join("empty.log").to_string_lossy());
        std::fs::write(dir.join("empty.log"), "").expect("placeholder");
        std::fs::write(
            dir.join("watched"),
            watched.replace(PLACEHOLDER_PATH, &dir.join("empty.log").to_string_lossy()),
        )
        .expect("watched");
        for (name, body) in [
            ("fail2ban-client", fake.as_str()),
            // One round only: the first sleep ends the script.
            ("sleep", "#!/bin/sh\nkill -TERM $PPID\nexit 0\n"),
        ] {
            let path = bin.join(name);
            std::fs::write(&path, body).expect("fake");
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .expect("chmod");
        }
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("PATH", path)
            .output()
            .expect("sh");
        let calls = std::fs::read_to_string(&calls).unwrap_or_default();
        let mut expected = String::new();
        for jail in [AUTH_JAIL, BOTSEARCH_JAIL] {
            expected.push_str(&format!("set {jail} addlogpath {} head\n", new.display()));
            expected.push_str(&format!("set {jail} dellogpath {}\n", gone.display()));
        }
        assert_eq!(calls, expected, "{}", String::from_utf8_lossy(&out.stderr));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cloudflare_ban_is_opt_in_with_the_token_from_a_secret() {
        use crate::api::common::SecretRef;
        use crate::api::mediastack::CloudflareBan;
        let mut spec = stack().spec;
        spec.security.fail2ban.cloudflare = Some(CloudflareBan {
            zone_id: "0123456789abcdef0123456789abcdef".into(),
            token_secret_ref: SecretRef {
                name: "cloudflare-api".into(),
            },
        });
        let objs = by_key(&objects(&parent(), &spec, &inputs()).expect("render"));
        let jails = objs["ConfigMap/home-fail2ban"]["data"][JAIL_KEY]
            .as_str()
            .expect("jails")
            .to_string();
        for jail in [AUTH_JAIL, BOTSEARCH_JAIL] {
            let line = format!(
                "         cloudflare-token[cfzone=\"0123456789abcdef0123456789abcdef\", cftoken=\"$CF_API_TOKEN\", notes=\"mediastack-{}\"]",
                chain_name(&parent(), jail)
            );
            assert!(jails.contains(&line), "{jails}");
        }
        let env =
            &objs["DaemonSet/home-fail2ban"]["spec"]["template"]["spec"]["containers"][0]["env"];
        assert!(
            env.as_array().expect("env").contains(&json!({
                "name": "CF_API_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": "cloudflare-api", "key": "apiToken", "optional": false}}
            })),
            "{env}"
        );
        // The token value never enters the ConfigMap: only the variable's name.
        assert!(
            !objs["ConfigMap/home-fail2ban"]
                .to_string()
                .contains("apiToken")
        );
    }

    #[test]
    fn ignore_entries_must_be_addresses() {
        let mut i = inputs();
        i.cluster_subnets.push("10.0.0.0/8\n[sshd]".into());
        assert!(matches!(
            config_files(&parent(), &stack().spec, &i),
            Err(RenderError::Invalid(_))
        ));
    }
}
