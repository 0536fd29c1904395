//! Builders shared by every pod the operator renders (the apps, Traefik,
//! cloudflared, fail2ban, the exporters, the init steps): security
//! contexts, resources, probes, environment, volumes and mounts, ports, the
//! pod template and the Deployment around it. Each module says what its pod
//! needs; how that is spelled in a Kubernetes object is written once, here.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    ExecAction, HTTPGetAction, HostPathVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext, Service,
    ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use super::meta::Parent;

/// Capabilities of a root init step that only fixes owners and modes of
/// files it does not own (the data tree, qBittorrent's config step).
pub const FILE_OWNER_CAPS: &[&str] = &["CHOWN", "DAC_OVERRIDE", "FOWNER"];

/// Pod template annotation with a hash of configuration files mounted with
/// `subPath` (which the kubelet never refreshes): a change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "mediastack.io/config-hash";

// ---- security -------------------------------------------------------------

/// The container runtime's default seccomp profile.
pub fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

/// Pod security of an image that never runs as root: `runAsNonRoot` and the
/// runtime's default seccomp profile.
pub fn non_root_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..Default::default()
    }
}

/// Container security that keeps only the capabilities in `add`: every
/// other one is dropped and privilege escalation is off.
pub fn drop_all_but(add: &[&str]) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: (!add.is_empty()).then(|| add.iter().map(|c| c.to_string()).collect()),
        }),
        ..Default::default()
    }
}

/// Container security of a distroless-style image: user and group `uid`,
/// non-root, a read-only root file system, no capabilities but `add`, no
/// privilege escalation.
pub fn non_root_container(uid: i64, add: &[&str]) -> SecurityContext {
    SecurityContext {
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        ..drop_all_but(add)
    }
}

// ---- resources ------------------------------------------------------------

/// Resource quantities from `(name, quantity)` pairs.
pub fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(name, q)| (name.to_string(), Quantity(q.to_string())))
        .collect()
}

/// A CPU and memory request and a memory limit. No CPU limit: throttling
/// helps nobody on a home server.
pub fn resources(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(quantities(&[("cpu", cpu), ("memory", memory)])),
        limits: Some(quantities(&[("memory", memory_limit)])),
        claims: None,
    }
}

// ---- probes ---------------------------------------------------------------

/// An HTTP GET probe of `path` on the named container `port`, 3 s timeout.
pub fn http_probe(path: &str, port: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(port.into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

/// A probe that runs `command` in the container (no timing set).
pub fn exec_probe(command: &[&str]) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(command.iter().map(|c| c.to_string()).collect()),
        }),
        ..Default::default()
    }
}

// ---- environment ----------------------------------------------------------

/// A variable with a literal value.
pub fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// A reference to `key` of the Secret `secret`; `optional` as the
/// selector's field (`None`: not set, which Kubernetes reads as required).
pub fn secret_key_ref(secret: &str, key: &str, optional: Option<bool>) -> EnvVarSource {
    EnvVarSource {
        secret_key_ref: Some(SecretKeySelector {
            name: secret.into(),
            key: key.into(),
            optional,
        }),
        ..Default::default()
    }
}

/// A variable taken from `key` of the Secret `secret`: credentials are
/// always referenced, never copied into the pod spec.
pub fn secret_env(name: &str, secret: &str, key: &str, optional: Option<bool>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(secret_key_ref(secret, key, optional)),
    }
}

// ---- volumes and mounts ---------------------------------------------------

/// An emptyDir volume without a size limit.
pub fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

/// A volume of the ConfigMap `config_map`.
pub fn config_map_volume(name: &str, config_map: &str) -> Volume {
    Volume {
        name: name.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A hostPath volume of `path`, with the kubelet's check `type_`
/// (`Directory`, `DirectoryOrCreate`, `FileOrCreate`).
pub fn host_path_volume(name: &str, path: &str, type_: &str) -> Volume {
    Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource {
            path: path.into(),
            type_: Some(type_.into()),
        }),
        ..Default::default()
    }
}

/// A read-write mount of the whole volume at `path`.
pub fn mount(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        ..Default::default()
    }
}

/// A mount of `sub_path` of the volume at `path`, read-only when asked.
pub fn sub_path_mount(volume: &str, path: &str, sub_path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        sub_path: Some(sub_path.into()),
        read_only: read_only.then_some(true),
        ..mount(volume, path)
    }
}

// ---- ports and Services ---------------------------------------------------

/// A named TCP container port.
pub fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// A TCP Service port that targets the container port of the same name.
pub fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// A Service selecting the pods of component `app` of the stack
/// ([`Parent::selector`]), of the cluster's default type.
pub fn service(
    metadata: ObjectMeta,
    parent: &Parent,
    app: &str,
    ports: Vec<ServicePort>,
) -> Service {
    Service {
        metadata,
        spec: Some(ServiceSpec {
            selector: Some(parent.selector(app)),
            ports: Some(ports),
            ..Default::default()
        }),
        status: None,
    }
}

// ---- pod template and Deployment ------------------------------------------

/// The pod template of component `app`: its labels ([`Parent::labels`]),
/// `annotations` and `spec`.
pub fn template(
    parent: &Parent,
    app: &str,
    component: &str,
    annotations: Option<BTreeMap<String, String>>,
    spec: PodSpec,
) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(parent.labels(app, component)),
            annotations,
            ..Default::default()
        }),
        spec: Some(spec),
    }
}

/// A one-replica Deployment `name` of component `app`, selecting its pods by
/// [`Parent::selector`]. Callers set the strategy and anything else on top.
pub fn deployment(
    parent: &Parent,
    name: &str,
    app: &str,
    component: &str,
    template: PodTemplateSpec,
) -> Deployment {
    Deployment {
        metadata: parent.meta(name, app, component),
        spec: DeploymentSpec {
            replicas: Some(1),
            selector: parent.label_selector(app),
            template,
            ..Default::default()
        },
        status: None,
    }
}

/// SHA-256 of configuration files (names and contents, in name order), as
/// lower-case hex: the value of [`CONFIG_HASH_ANNOTATION`].
pub fn config_hash(files: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    for (name, content) in files {
        hasher.update(name.as_bytes());
        hasher.update([0u8]);
        hasher.update(content.as_bytes());
        hasher.update([0u8]);
    }
    hasher
        .finalize()
        .iter()
        .fold(String::with_capacity(64), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}
