//! Exporter sidecars: exportarr next to Sonarr, Radarr, Prowlarr and
//! Bazarr; the qBittorrent exporter next to qBittorrent.
//!
//! The exporter shares the app's pod, so it reaches the app on the pod's
//! loopback (`127.0.0.1`, never an IPv6 `localhost` that a VPN firewall may
//! drop) and adds no Service of its own: the app's Service gets a `metrics`
//! port. Behind a VPN, `vpn` opens the catalog exporter's port in gluetun's
//! firewall and in the pod's NetworkPolicy.
//!
//! The exporters have a liveness probe but no readiness probe on purpose:
//! a pod is Ready only when every container is, so a slow exporter must not
//! take the app out of its Service.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, PodSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext, Service, ServicePort,
    TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::super::GeneratedSecret;
use super::super::meta::Parent;
use super::api_keys_secret_name;
use crate::catalog::App;

/// exportarr, pinned. One container per app: `exportarr <app>`.
pub const EXPORTARR_IMAGE: &str = "ghcr.io/onedr0p/exportarr:v2.3.0";
/// martabal's qBittorrent exporter, pinned.
pub const QBITTORRENT_EXPORTER_IMAGE: &str = "ghcr.io/martabal/qbittorrent-exporter:v1.12.0";
/// Name of the exporter container in the app's pod.
pub const EXPORTER_CONTAINER: &str = "exporter";
/// Name of the exporter's container port and of the Service port.
pub const METRICS_PORT: &str = "metrics";

/// Unprivileged user of the exporters (static Go binaries).
const NOBODY: i64 = 65534;

/// How an app is told the API key the operator generated for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct KeyEnv {
    /// Environment variable the app reads the key from.
    name: &'static str,
    /// Text the app needs in front of the key (none for the *arr apps).
    prefix: &'static str,
}

/// Apps without `catalog::App::api_key_env` that still take their key from
/// the environment in another way.
///
/// Bazarr reads its settings through Dynaconf, created without an
/// `envvar_prefix`, so Dynaconf's default `DYNACONF_` variables override
/// `config.yaml` at every start, nested keys joined by `__`:
/// `DYNACONF_AUTH__APIKEY` replaces `auth.apikey`. Dynaconf parses the value
/// as TOML, so an all-digit key would become a number; `@str` keeps it a
/// string. Checked against Bazarr 1.5's `bazarr/app/config.py` and Dynaconf
/// 3.2 (the version Bazarr vendors).
const KEY_ENV_FALLBACKS: &[(&str, KeyEnv)] = &[(
    "bazarr",
    KeyEnv {
        name: "DYNACONF_AUTH__APIKEY",
        prefix: "@str ",
    },
)];

/// Helper variable holding the raw key when the app's variable needs a
/// prefix (Kubernetes expands `$(VAR)` from variables defined before it).
const RAW_KEY_ENV: &str = "MEDIASTACK_API_KEY";

/// The environment variable through which `app` takes its generated API
/// key, if it has one.
pub(super) fn key_env_name(app: &App) -> Option<&'static str> {
    key_env(app).map(|k| k.name)
}

fn key_env(app: &App) -> Option<KeyEnv> {
    if let Some(name) = app.api_key_env {
        return Some(KeyEnv { name, prefix: "" });
    }
    KEY_ENV_FALLBACKS
        .iter()
        .find(|(name, _)| *name == app.name)
        .map(|(_, key)| *key)
}

/// Adds exportarr to an *arr app and gives the app the same generated API
/// key. Returns the Secret holding the key, unless the user set the app's
/// key variable themselves (then the exporter follows the user's value).
pub(super) fn attach_exportarr(
    parent: &Parent,
    app: &App,
    port: u16,
    deployment: &mut Deployment,
    service: &mut Service,
) -> Option<GeneratedSecret> {
    let (exporter_key, secret) = give_key(parent, app, deployment);
    let exporter = Container {
        image: Some(EXPORTARR_IMAGE.into()),
        args: Some(vec![app.name.into()]),
        env: Some(vec![
            plain_env("PORT", &port.to_string()),
            plain_env("URL", &format!("http://127.0.0.1:{}", app.port)),
            exporter_key,
        ]),
        liveness_probe: Some(liveness(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".into()),
                port: IntOrString::String(METRICS_PORT.into()),
                ..HTTPGetAction::default()
            }),
            ..Probe::default()
        })),
        ..Container::default()
    };
    add_exporter(deployment, service, port, exporter);
    secret
}

/// Adds `exporter` (its image, args, env and liveness probe set) beside the
/// app as container `exporter`, serving `/metrics` on `port`, with the
/// exporters' resources and security context, and opens `port` on the
/// app's Service.
fn add_exporter(
    deployment: &mut Deployment,
    service: &mut Service,
    port: u16,
    exporter: Container,
) {
    let exporter = Container {
        name: EXPORTER_CONTAINER.into(),
        image_pull_policy: Some("IfNotPresent".into()),
        ports: Some(vec![container_port(port)]),
        resources: Some(exporter_resources("128Mi")),
        security_context: Some(exporter_security()),
        ..exporter
    };
    set_container(&mut pod_spec_mut(deployment).containers, exporter);
    set_service_port(service, port);
}

/// Gives `app` its generated API key through its own key variable (unless
/// the user set that variable: then the user's value stays). Returns the
/// variable an exporter reads the same key from, and the key Secret to
/// create once, when the generated key is used. Monitoring and wiring
/// (`wiring::runner::needs_api_key`) share the key.
pub(crate) fn give_key(
    parent: &Parent,
    app: &App,
    deployment: &mut Deployment,
) -> (EnvVar, Option<GeneratedSecret>) {
    let secret = api_keys_secret_name(parent);
    let generated = secret_key(&secret, app.name);
    let pod = pod_spec_mut(deployment);

    let mut exporter_key = EnvVar {
        name: "API_KEY".into(),
        value_from: Some(generated.clone()),
        ..EnvVar::default()
    };
    let mut needs_secret = true;
    if let (Some(key), Some(container)) = (key_env(app), app_container_mut(pod, app)) {
        let ours = app_key_env(key, &generated);
        let env = container.env.get_or_insert_with(Vec::new);
        match env.iter().find(|e| e.name == key.name) {
            Some(user) if !ours.contains(user) => {
                // The user manages the app's key: the exporter reads the same.
                exporter_key.value = user
                    .value
                    .as_deref()
                    .map(|v| v.strip_prefix(key.prefix).unwrap_or(v).to_string());
                exporter_key.value_from = user.value_from.clone();
                needs_secret = false;
            }
            _ => {
                for var in ours {
                    set_env(env, var);
                }
            }
        }
    }
    let secret = needs_secret.then(|| GeneratedSecret {
        name: secret,
        random_keys: vec![app.name.to_string()],
        templated: Default::default(),
        labels: parent.labels("api-keys", "monitoring"),
    });
    (exporter_key, secret)
}

/// The app-side variables that carry the generated key.
fn app_key_env(key: KeyEnv, generated: &EnvVarSource) -> Vec<EnvVar> {
    if key.prefix.is_empty() {
        return vec![EnvVar {
            name: key.name.into(),
            value_from: Some(generated.clone()),
            ..EnvVar::default()
        }];
    }
    vec![
        EnvVar {
            name: RAW_KEY_ENV.into(),
            value_from: Some(generated.clone()),
            ..EnvVar::default()
        },
        plain_env(key.name, &format!("{}$({RAW_KEY_ENV})", key.prefix)),
    ]
}

/// Adds the qBittorrent exporter. It logs in to the WebUI over the pod's
/// loopback; qBittorrent's "bypass authentication for clients on localhost"
/// (`WebUI\LocalHostAuth=false`) lets it in without a password. The VPN's
/// qBittorrent config step (`vpn`, init container `qbittorrent-config`)
/// turns that on before qBittorrent starts when monitoring is enabled (the
/// linuxserver image offers no environment variable for it, and its WebUI
/// password is random until the user sets one). Only processes inside the
/// pod are on its loopback: Traefik and everything else still log in.
pub(super) fn attach_qbittorrent(
    app: &App,
    port: u16,
    deployment: &mut Deployment,
    service: &mut Service,
) {
    let exporter = Container {
        image: Some(QBITTORRENT_EXPORTER_IMAGE.into()),
        env: Some(vec![
            plain_env(
                "QBITTORRENT_BASE_URL",
                &format!("http://127.0.0.1:{}", app.port),
            ),
            plain_env("EXPORTER_PORT", &port.to_string()),
        ]),
        liveness_probe: Some(liveness(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String(METRICS_PORT.into()),
                ..TCPSocketAction::default()
            }),
            ..Probe::default()
        })),
        ..Container::default()
    };
    add_exporter(deployment, service, port, exporter);
}

fn pod_spec_mut(deployment: &mut Deployment) -> &mut PodSpec {
    deployment
        .spec
        .template
        .spec
        .get_or_insert_with(Default::default)
}

/// The app's container: the one named after the app, else the first.
fn app_container_mut<'a>(pod: &'a mut PodSpec, app: &App) -> Option<&'a mut Container> {
    let index = pod
        .containers
        .iter()
        .position(|c| c.name == app.name)
        .or_else(|| (!pod.containers.is_empty()).then_some(0))?;
    pod.containers.get_mut(index)
}

fn set_container(containers: &mut Vec<Container>, container: Container) {
    match containers.iter_mut().find(|c| c.name == container.name) {
        Some(existing) => *existing = container,
        None => containers.push(container),
    }
}

fn set_env(env: &mut Vec<EnvVar>, var: EnvVar) {
    match env.iter_mut().find(|e| e.name == var.name) {
        Some(existing) => *existing = var,
        None => env.push(var),
    }
}

fn set_service_port(service: &mut Service, port: u16) {
    let ports = service
        .spec
        .get_or_insert_with(Default::default)
        .ports
        .get_or_insert_with(Vec::new);
    ports.retain(|p| p.name.as_deref() != Some(METRICS_PORT));
    ports.push(ServicePort {
        name: Some(METRICS_PORT.into()),
        port: i32::from(port),
        target_port: Some(IntOrString::String(METRICS_PORT.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    });
}

fn secret_key(secret: &str, key: &str) -> EnvVarSource {
    EnvVarSource {
        secret_key_ref: Some(SecretKeySelector {
            name: secret.into(),
            key: key.into(),
            optional: Some(false),
        }),
        ..EnvVarSource::default()
    }
}

fn plain_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn container_port(port: u16) -> ContainerPort {
    ContainerPort {
        name: Some(METRICS_PORT.into()),
        container_port: i32::from(port),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

/// Restart a hung exporter; tolerant timing, it is not on the request path.
fn liveness(handler: Probe) -> Probe {
    Probe {
        initial_delay_seconds: Some(10),
        period_seconds: Some(30),
        timeout_seconds: Some(5),
        failure_threshold: Some(3),
        ..handler
    }
}

fn exporter_resources(memory_limit: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(
            [
                ("cpu".to_string(), Quantity("10m".into())),
                ("memory".to_string(), Quantity("32Mi".into())),
            ]
            .into(),
        ),
        limits: Some([("memory".to_string(), Quantity(memory_limit.into()))].into()),
        ..ResourceRequirements::default()
    }
}

fn exporter_security() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(NOBODY),
        run_as_group: Some(NOBODY),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}
