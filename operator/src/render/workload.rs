//! Per-app Deployment, Service and config claim.
//!
//! One Deployment `<stack>-<app>` with one replica and one container named
//! after the app, a ClusterIP Service `<stack>-<app>` on the `http` port, and
//! the app's config claim. The VPN sidecar and the exporter are added later
//! by `vpn` and `monitoring`; this module renders the app alone.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, HTTPHeader, HostPathVolumeSource, PersistentVolumeClaim,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext, Service,
    TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::Parent;
use super::{Child, Inputs, RenderError, dashboard, datatree, dozzle, storage};
use crate::api::mediastack::{
    AppSpec, CacheVolume, HardwareAcceleration, Identity, MediaStackSpec,
};
use crate::catalog::{App, AppId, Health, IdentityStyle};

/// Name of the app's container port (and the Service port's target).
pub use super::meta::HTTP_PORT;
/// Pod annotation naming the app container, so `kubectl logs/exec` pick it
/// over the sidecars added later.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// Old ReplicaSets kept for `kubectl rollout undo`.
const REVISION_HISTORY: i32 = 3;

/// The objects of one app before the VPN and exporter sidecars are added.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppObjects {
    pub deployment: Deployment,
    pub service: Service,
    pub config_claim: Option<PersistentVolumeClaim>,
    /// Further objects of the app (e.g. Dozzle's Role).
    pub extra: Vec<Child>,
    /// What the app waits for (replicas stay 0 meanwhile).
    pub waiting_for: Option<String>,
}

impl AppObjects {
    /// All objects, in apply order.
    pub fn into_children(self) -> Result<Vec<Child>, RenderError> {
        let mut out = Vec::new();
        if let Some(pvc) = &self.config_claim {
            out.push(Child::typed(pvc)?);
        }
        out.push(Child::typed(&self.service)?);
        out.push(Child::typed(&self.deployment)?);
        out.extend(self.extra);
        Ok(out)
    }
}

/// Renders the Deployment, Service and config claim of `app`.
///
/// Dependency order: while a dependency of `app` (`App::depends_on`) is
/// enabled but not in `inputs.ready_apps`, the Deployment has 0 replicas and
/// `waiting_for` says what it waits for. A dependency that is not enabled
/// at all is ignored: the app cannot wait for something that is never
/// started, so it runs. Waiting only gates the *start*: an app that is
/// itself ready keeps running when its dependency restarts.
pub fn app(
    parent: &Parent,
    spec: &MediaStackSpec,
    app: &App,
    app_spec: &AppSpec,
    inputs: &Inputs,
) -> Result<AppObjects, RenderError> {
    let name = parent.child_name(app.name);
    let waiting_for = waiting_for(spec, app, inputs);
    let mut parts = PodParts::common(parent, spec, app)?;
    parts.add_app_specifics(parent, spec, app, app_spec);
    parts.env.extend(user_api_key(app, app_spec));
    let mut extra = Vec::new();
    for alias in &app_spec.service_aliases {
        extra.push(Child::typed(&alias_service(parent, app, alias))?);
    }
    Ok(AppObjects {
        deployment: deployment(
            parent,
            spec,
            app,
            app_spec,
            &name,
            parts,
            waiting_for.is_some(),
        ),
        service: http_service(parent, app, parent.meta(&name, app.name, "app")),
        config_claim: storage::config_claim(parent, spec, app),
        extra,
        waiting_for,
    })
}

/// What an app's pod is made of, collected before the pod is assembled.
#[derive(Default)]
struct PodParts {
    volumes: Vec<Volume>,
    mounts: Vec<VolumeMount>,
    /// Ours; the user's `env` is merged over it last.
    env: Vec<EnvVar>,
    annotations: BTreeMap<String, String>,
    service_account: Option<String>,
    /// `Host` header of the HTTP probes (default: the pod IP).
    probe_host: Option<String>,
    supplemental_groups: Option<Vec<i64>>,
    /// Device-plugin resources added to the limits.
    device_limits: BTreeMap<String, Quantity>,
}

impl PodParts {
    /// What every app gets: the data tree and config claim mounts, `TZ`,
    /// the identity variables of linuxserver images, and the annotation
    /// naming the app container.
    fn common(parent: &Parent, spec: &MediaStackSpec, app: &App) -> Result<Self, RenderError> {
        let mut parts = Self::default();
        if let Some(data) = &app.data {
            parts
                .volumes
                .push(storage::data_volume(parent, &spec.storage.data)?);
            parts.mounts.push(storage::data_mount(data));
        }
        if let Some(config) = storage::config_volume(parent, spec, app)? {
            parts.volumes.push(config);
            parts.mounts.extend(storage::config_mounts(spec, app));
        }
        parts.env.push(env_var("TZ", &spec.timezone));
        if app.identity == IdentityStyle::Linuxserver {
            parts
                .env
                .push(env_var("PUID", &spec.identity.uid.to_string()));
            parts
                .env
                .push(env_var("PGID", &spec.identity.gid.to_string()));
            parts.env.push(env_var("UMASK", &spec.identity.umask));
        }
        parts.annotations.insert(
            DEFAULT_CONTAINER_ANNOTATION.to_string(),
            app.name.to_string(),
        );
        Ok(parts)
    }

    /// What only some apps need.
    fn add_app_specifics(
        &mut self,
        parent: &Parent,
        spec: &MediaStackSpec,
        app: &App,
        app_spec: &AppSpec,
    ) {
        match app.id {
            AppId::Jellyfin => self.jellyfin(app_spec),
            AppId::Qbittorrent => {
                self.env.push(env_var("WEBUI_PORT", &app.port.to_string()));
                // Kept at the image default; useless with Mullvad (no port
                // forwarding), so no Service port is opened for it.
                self.env.push(env_var("TORRENTING_PORT", "6881"));
            }
            AppId::Dozzle => self.dozzle(parent),
            AppId::Dashboard => self.dashboard(parent, spec, app),
            AppId::Jellyseerr | AppId::Sonarr | AppId::Radarr | AppId::Prowlarr | AppId::Bazarr => {
            }
        }
    }

    /// Jellyfin: its own `/cache` volume, and the hardware transcoding the
    /// spec asks for (the host's `/dev/dri` with the render group, or a
    /// device-plugin resource).
    fn jellyfin(&mut self, app_spec: &AppSpec) {
        self.volumes.push(cache_volume(app_spec.cache.as_ref()));
        self.mounts.push(mount(CACHE_VOLUME, CACHE_DIR, None));
        match &app_spec.hardware_acceleration {
            Some(HardwareAcceleration { dri: Some(dri), .. }) => {
                self.volumes.push(Volume {
                    name: DRI_VOLUME.into(),
                    host_path: Some(HostPathVolumeSource {
                        path: DRI_DIR.into(),
                        type_: Some("Directory".into()),
                    }),
                    ..Default::default()
                });
                self.mounts.push(mount(DRI_VOLUME, DRI_DIR, None));
                self.supplemental_groups = Some(vec![dri.render_group]);
            }
            Some(HardwareAcceleration {
                device_plugin: Some(plugin),
                ..
            }) => {
                self.device_limits
                    .insert(plugin.resource.clone(), Quantity(plugin.count.to_string()));
            }
            _ => {}
        }
    }

    /// Dozzle: Kubernetes mode in the stack's namespace, through its own
    /// ServiceAccount.
    fn dozzle(&mut self, parent: &Parent) {
        self.env.push(env_var("DOZZLE_MODE", "k8s"));
        self.env
            .push(env_var("DOZZLE_NAMESPACE", &parent.namespace));
        self.env.push(env_var("DOZZLE_ENABLE_ACTIONS", "false"));
        self.env.push(env_var("DOZZLE_NO_ANALYTICS", "true"));
        // `/healthcheck` is always served; nothing to switch on. Settings
        // in /data are rebuilt on restart: an emptyDir is enough.
        self.volumes.push(empty_dir("dozzle-data"));
        self.mounts.push(mount("dozzle-data", "/data", None));
        self.service_account = Some(dozzle::service_account_name(parent));
    }

    /// The dashboard: its generated files over a writable config dir, a
    /// hash of them on the pod (a change rolls it), and probes with a
    /// `Host` it allows.
    fn dashboard(&mut self, parent: &Parent, spec: &MediaStackSpec, app: &App) {
        if let Some(hosts) = dashboard::allowed_hosts(app, spec) {
            self.env.push(env_var("HOMEPAGE_ALLOWED_HOSTS", &hosts));
        }
        self.env.push(env_var("LOG_TARGETS", "stdout"));
        let files = dashboard::config_files(parent, spec);
        self.annotations.insert(
            dashboard::CONFIG_HASH_ANNOTATION.into(),
            super::pod::config_hash(&files),
        );
        // A writable /app/config (Homepage copies default files it
        // misses there) with each generated file mounted over it.
        self.volumes.push(empty_dir("dashboard-dir"));
        self.mounts
            .push(mount("dashboard-dir", dashboard::CONFIG_DIR, None));
        self.volumes.push(Volume {
            name: "dashboard-config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: dashboard::config_map_name(parent),
                ..Default::default()
            }),
            ..Default::default()
        });
        for file in files.keys() {
            let path = format!("{}/{file}", dashboard::CONFIG_DIR);
            self.mounts.push(VolumeMount {
                read_only: Some(true),
                ..mount("dashboard-config", &path, Some(file))
            });
        }
        // Homepage answers 400 to a `Host` it does not allow; the
        // kubelet would send the pod IP.
        self.probe_host = Some(format!("localhost:{}", app.port));
    }
}

/// The user's existing API key (`apiKeySecretRef`) in the app's own
/// variable; the exporter reads the same variable.
fn user_api_key(app: &App, app_spec: &AppSpec) -> Option<EnvVar> {
    let (key, name) = (app_spec.api_key_secret_ref.as_ref()?, app.api_key_env?);
    Some(EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: key.name.clone(),
                key: key.key.clone(),
                optional: None,
            }),
            ..Default::default()
        }),
    })
}

/// The app's container: image, port, env (the user's merged over ours),
/// resources, probes, mounts, security context.
fn container(app: &App, app_spec: &AppSpec, image: String, parts: &mut PodParts) -> Container {
    let (startup, liveness, readiness) = probes(app, parts.probe_host.as_deref());
    let mounts = std::mem::take(&mut parts.mounts);
    Container {
        name: app.name.into(),
        image: Some(image),
        image_pull_policy: Some("IfNotPresent".into()),
        ports: Some(vec![ContainerPort {
            name: Some(HTTP_PORT.into()),
            container_port: i32::from(app.port),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        env: Some(merge_env(std::mem::take(&mut parts.env), &app_spec.env)),
        resources: Some(with_device_limits(
            app_spec
                .resources
                .clone()
                .unwrap_or_else(|| default_resources(app)),
            std::mem::take(&mut parts.device_limits),
        )),
        startup_probe: Some(startup),
        liveness_probe: Some(liveness),
        readiness_probe: Some(readiness),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        security_context: container_security(app),
        ..Default::default()
    }
}

/// The app's Deployment: one replica (none while it waits), its pod with
/// the data-tree init step when it mounts the data tree.
fn deployment(
    parent: &Parent,
    spec: &MediaStackSpec,
    app: &App,
    app_spec: &AppSpec,
    name: &str,
    mut parts: PodParts,
    waits: bool,
) -> Deployment {
    let image = app_spec
        .image
        .clone()
        .unwrap_or_else(|| app.image.to_string());
    // The data tree is laid out for the stack identity before the app starts.
    let init_containers = app
        .data
        .is_some()
        .then(|| vec![datatree::init_container(&image, &spec.identity)]);
    let container = container(app, app_spec, image, &mut parts);
    let pod = PodSpec {
        containers: vec![container],
        init_containers,
        volumes: (!parts.volumes.is_empty()).then_some(parts.volumes),
        security_context: Some(PodSecurityContext {
            supplemental_groups: parts.supplemental_groups,
            ..pod_security(app, &spec.identity)
        }),
        service_account_name: parts.service_account,
        automount_service_account_token: Some(app.id == AppId::Dozzle),
        enable_service_links: Some(false),
        ..Default::default()
    };
    Deployment {
        metadata: parent.meta(name, app.name, "app"),
        spec: DeploymentSpec {
            replicas: Some(if waits { 0 } else { 1 }),
            revision_history_limit: Some(REVISION_HISTORY),
            selector: LabelSelector {
                match_labels: Some(parent.selector(app.name)),
                match_expressions: None,
            },
            strategy: Some(strategy(app)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(parent.labels(app.name, "app")),
                    annotations: Some(parts.annotations),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A ClusterIP Service with `metadata` selecting the app's pods on its
/// `http` port: the app's own Service and its aliases.
fn http_service(parent: &Parent, app: &App, metadata: ObjectMeta) -> Service {
    let mut service = super::pod::service(
        metadata,
        parent,
        app.name,
        vec![super::pod::service_port(HTTP_PORT, i32::from(app.port))],
    );
    if let Some(spec) = service.spec.as_mut() {
        spec.type_ = Some("ClusterIP".into());
    }
    service
}

/// Value of `app.kubernetes.io/component` on the alias Services.
pub const ALIAS_COMPONENT: &str = "alias";

/// A Service `alias` (`apps.<app>.serviceAliases`) selecting the app's pods
/// on its `http` port, so `http://sonarr:8989` in a migrated config still
/// resolves in the stack's namespace.
pub fn alias_service(parent: &Parent, app: &App, alias: &str) -> Service {
    http_service(parent, app, parent.meta(alias, app.name, ALIAS_COMPONENT))
}

/// What `app` waits for before it starts, if anything (see [`app`]).
fn waiting_for(spec: &MediaStackSpec, app: &App, inputs: &Inputs) -> Option<String> {
    let ready = |name: &str| inputs.ready_apps.iter().any(|r| r == name);
    if ready(app.name) {
        return None;
    }
    let missing: Vec<&str> = app
        .depends_on
        .iter()
        .copied()
        .filter(|dep| spec.apps.get(dep).is_some_and(|s| s.enabled) && !ready(dep))
        .collect();
    (!missing.is_empty()).then(|| format!("{} to be ready", missing.join(" and ")))
}

/// `Recreate` for apps with a config claim: their databases allow one
/// writer, and a ReadWriteOnce claim cannot be shared by two pods on
/// different nodes. `RollingUpdate` (never below one pod) otherwise.
fn strategy(app: &App) -> DeploymentStrategy {
    if app.config.is_empty() {
        DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::Int(1)),
                max_unavailable: Some(IntOrString::Int(0)),
            }),
        }
    } else {
        DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        }
    }
}

/// Operator-set variables first, then the user's; a user variable replaces
/// the operator's of the same name.
fn merge_env(mut ours: Vec<EnvVar>, user: &[EnvVar]) -> Vec<EnvVar> {
    ours.retain(|e| !user.iter().any(|u| u.name == e.name));
    ours.extend(user.iter().cloned());
    ours
}

/// Name of Jellyfin's cache volume, mounted at [`CACHE_DIR`].
pub const CACHE_VOLUME: &str = "cache";
/// Where Jellyfin keeps transcodes and its image cache.
pub const CACHE_DIR: &str = "/cache";
/// Size limit of the cache emptyDir when `apps.jellyfin.cache` sets none.
pub const DEFAULT_CACHE_LIMIT: &str = "10Gi";
const DRI_VOLUME: &str = "dri";
const DRI_DIR: &str = "/dev/dri";

/// Jellyfin's `/cache`: an emptyDir with a size limit (default
/// [`DEFAULT_CACHE_LIMIT`]), or the user's claim.
fn cache_volume(cache: Option<&CacheVolume>) -> Volume {
    if let Some(claim) = cache.and_then(|c| c.claim_name.as_ref()) {
        return Volume {
            name: CACHE_VOLUME.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: None,
            }),
            ..Default::default()
        };
    }
    let limit = cache
        .and_then(|c| c.size_limit.clone())
        .unwrap_or_else(|| Quantity(DEFAULT_CACHE_LIMIT.into()));
    Volume {
        name: CACHE_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(limit),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Adds device-plugin resources (`nvidia.com/gpu: 1`) to the limits; an
/// extended resource is requested as much as it is limited.
fn with_device_limits(
    mut resources: ResourceRequirements,
    devices: BTreeMap<String, Quantity>,
) -> ResourceRequirements {
    if !devices.is_empty() {
        resources
            .limits
            .get_or_insert_with(BTreeMap::new)
            .extend(devices);
    }
    resources
}

/// Memory limit and request and a CPU request from the catalog (the
/// compose setup's limits). No CPU limit: throttling a transcode or an
/// import helps nobody on a home server.
fn default_resources(app: &App) -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_string());
    ResourceRequirements {
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            q(app.memory_limit),
        )])),
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), q(app.cpu_request)),
            ("memory".to_string(), q(app.memory_request)),
        ])),
        claims: None,
    }
}

/// Startup, liveness and readiness probes on the app's health check.
///
/// The startup probe allows 15 minutes (5 s x 180): Jellyfin and the *arr
/// apps migrate their databases on the first start after an upgrade, and a
/// liveness kill in the middle of a migration can corrupt it. Liveness only
/// restarts after 2.5 minutes of failures.
fn probes(app: &App, host: Option<&str>) -> (Probe, Probe, Probe) {
    let check = || match app.health {
        Health::Http(path) => Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path.into()),
                port: IntOrString::String(HTTP_PORT.into()),
                http_headers: host.map(|h| {
                    vec![HTTPHeader {
                        name: "Host".into(),
                        value: h.into(),
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        Health::Tcp => Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String(HTTP_PORT.into()),
                host: None,
            }),
            ..Default::default()
        },
    };
    let startup = Probe {
        period_seconds: Some(5),
        timeout_seconds: Some(3),
        failure_threshold: Some(180),
        ..check()
    };
    let liveness = Probe {
        period_seconds: Some(30),
        timeout_seconds: Some(5),
        failure_threshold: Some(5),
        ..check()
    };
    let readiness = Probe {
        period_seconds: Some(10),
        timeout_seconds: Some(5),
        failure_threshold: Some(3),
        ..check()
    };
    (startup, liveness, readiness)
}

/// Pod security. `RunAs` images run as the stack identity from the start;
/// linuxserver images must start as root to drop to `PUID`/`PGID`
/// themselves, so they get no `runAsUser`. Both get `fsGroup` with
/// `OnRootMismatch`, so volumes are group-writable without a recursive chown
/// on every start.
fn pod_security(app: &App, identity: &Identity) -> PodSecurityContext {
    let base = PodSecurityContext {
        fs_group: Some(identity.gid),
        fs_group_change_policy: Some("OnRootMismatch".into()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    };
    match app.identity {
        IdentityStyle::Linuxserver => base,
        IdentityStyle::RunAs => PodSecurityContext {
            run_as_user: Some(identity.uid),
            run_as_group: Some(identity.gid),
            run_as_non_root: Some(true),
            ..base
        },
    }
}

/// Container security: images that never need root lose every capability
/// and privilege escalation. linuxserver images keep the defaults (their
/// init changes ownership and user as root).
fn container_security(app: &App) -> Option<SecurityContext> {
    match app.identity {
        IdentityStyle::Linuxserver => None,
        IdentityStyle::RunAs => Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..Default::default()
        }),
    }
}

fn env_var(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

fn mount(volume: &str, path: &str, sub_path: Option<&str>) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        sub_path: sub_path.map(Into::into),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{inputs, parent, stack};
    use super::*;
    use crate::api::mediastack::DataStorage;
    use crate::catalog;

    fn facts(name: &str) -> &'static App {
        catalog::app(name).expect("known app")
    }

    fn render_with(spec: &MediaStackSpec, name: &str, inputs: &Inputs) -> AppObjects {
        let app = facts(name);
        let app_spec = spec.apps.get(name).cloned().unwrap_or_default();
        super::app(&parent(), spec, app, &app_spec, inputs).expect("render")
    }

    fn render(name: &str) -> AppObjects {
        render_with(&stack().spec, name, &inputs())
    }

    fn pod(objs: &AppObjects) -> PodSpec {
        objs.deployment
            .spec
            .template
            .spec
            .clone()
            .expect("pod spec")
    }

    fn container(objs: &AppObjects) -> Container {
        pod(objs)
            .containers
            .into_iter()
            .next()
            .expect("one container")
    }

    fn env(objs: &AppObjects) -> BTreeMap<String, String> {
        container(objs)
            .env
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.name, e.value.unwrap_or_default()))
            .collect()
    }

    fn replicas(objs: &AppObjects) -> Option<i32> {
        objs.deployment.spec.replicas
    }

    fn memory_limit(objs: &AppObjects) -> Option<String> {
        container(objs)
            .resources
            .and_then(|r| r.limits)
            .and_then(|l| l.get("memory").map(|q| q.0.clone()))
    }

    const ALL: [&str; 9] = [
        "jellyfin",
        "jellyseerr",
        "sonarr",
        "radarr",
        "prowlarr",
        "bazarr",
        "qbittorrent",
        "dozzle",
        "dashboard",
    ];

    #[test]
    fn golden_objects_of_every_app() {
        let spec = stack().spec;
        assert_eq!(
            spec.apps.enabled().count(),
            ALL.len(),
            "fixture enables every app"
        );
        for (app, app_spec) in spec.apps.enabled() {
            let objs = super::app(&parent(), &spec, app, app_spec, &inputs()).expect("render");
            for child in objs.into_children().expect("children") {
                let snap = format!("{}_{}", app.name, child.api.kind.to_lowercase());
                insta::assert_snapshot!(snap, child.to_yaml());
            }
        }
    }

    #[test]
    fn rendering_twice_gives_identical_yaml() {
        let yaml = || -> Vec<String> {
            let spec = stack().spec;
            spec.apps
                .enabled()
                .flat_map(|(app, app_spec)| {
                    super::app(&parent(), &spec, app, app_spec, &inputs())
                        .and_then(AppObjects::into_children)
                        .expect("render")
                })
                .map(|c| c.to_yaml())
                .collect()
        };
        assert_eq!(yaml(), yaml());
    }

    #[test]
    fn data_is_mounted_once_per_pod_at_the_apps_sub_tree() {
        // (app, subPath, mountPath, read-only)
        let expected = [
            ("jellyfin", Some("media"), "/data/media", true),
            ("sonarr", None, "/data", false),
            ("radarr", None, "/data", false),
            ("bazarr", Some("media"), "/data/media", false),
            ("qbittorrent", Some("torrents"), "/data/torrents", false),
        ];
        for (name, sub_path, path, read_only) in expected {
            let objs = render(name);
            let data_volumes: Vec<Volume> = pod(&objs)
                .volumes
                .unwrap_or_default()
                .into_iter()
                .filter(|v| v.host_path.is_some() || v.name == "data")
                .collect();
            assert_eq!(data_volumes.len(), 1, "{name}: one data volume");
            let mounts: Vec<VolumeMount> = container(&objs)
                .volume_mounts
                .unwrap_or_default()
                .into_iter()
                .filter(|m| m.name == data_volumes[0].name)
                .collect();
            assert_eq!(mounts.len(), 1, "{name}: data mounted once");
            assert_eq!(mounts[0].sub_path.as_deref(), sub_path, "{name}");
            assert_eq!(mounts[0].mount_path, path, "{name}");
            assert_eq!(mounts[0].read_only.unwrap_or(false), read_only, "{name}");
        }
        for name in ["jellyseerr", "prowlarr", "dozzle", "dashboard"] {
            let objs = render(name);
            let volumes = pod(&objs).volumes.unwrap_or_default();
            assert!(
                volumes
                    .iter()
                    .all(|v| v.host_path.is_none() && v.name != "data"),
                "{name} mounts the data volume"
            );
        }
    }

    #[test]
    fn every_pod_that_mounts_data_lays_out_the_data_tree_first() {
        let mut spec = stack().spec;
        spec.identity.uid = 1500;
        spec.identity.gid = 1600;
        for name in ["jellyfin", "sonarr", "radarr", "bazarr", "qbittorrent"] {
            let objs = render_with(&spec, name, &Inputs::default());
            let p = pod(&objs);
            let inits = p.init_containers.clone().unwrap_or_default();
            assert_eq!(inits.len(), 1, "{name}");
            let init = &inits[0];
            assert_eq!(init.name, datatree::CONTAINER_NAME, "{name}");
            assert_eq!(
                init.image,
                container(&objs).image,
                "{name}: the app's image"
            );
            let script = init.command.as_ref().expect("command").join(" ");
            assert!(script.contains("chown 1500:1600"), "{name}: {script}");
        }
        for name in ["jellyseerr", "prowlarr", "dozzle", "dashboard"] {
            assert_eq!(pod(&render(name)).init_containers, None, "{name}");
        }
    }

    #[test]
    fn data_source_follows_the_storage_spec() {
        let source = |data: DataStorage| {
            let mut spec = stack().spec;
            spec.storage.data = data;
            let objs = render_with(&spec, "sonarr", &inputs());
            pod(&objs)
                .volumes
                .unwrap_or_default()
                .into_iter()
                .find(|v| v.name == "data")
                .expect("data volume")
        };
        let host = source(DataStorage {
            host_path: Some("/mnt/pool".into()),
            ..Default::default()
        });
        let hp = host.host_path.expect("hostPath");
        assert_eq!(hp.path, "/mnt/pool");
        assert_eq!(hp.type_.as_deref(), Some("DirectoryOrCreate"));

        let claim = source(DataStorage {
            claim_name: Some("nas".into()),
            ..Default::default()
        });
        assert_eq!(
            claim.persistent_volume_claim.expect("pvc").claim_name,
            "nas"
        );

        let created = source(DataStorage {
            size: Some(Quantity("4Ti".into())),
            ..Default::default()
        });
        assert_eq!(
            created.persistent_volume_claim.expect("pvc").claim_name,
            "home-data"
        );
    }

    #[test]
    fn config_dirs_are_sub_paths_of_one_claim() {
        let objs = render("jellyfin");
        let claim = objs.config_claim.clone().expect("config claim");
        assert_eq!(claim.metadata.name.as_deref(), Some("home-jellyfin-config"));
        let volume = pod(&objs)
            .volumes
            .unwrap_or_default()
            .into_iter()
            .find(|v| v.name == "config")
            .expect("config volume");
        assert_eq!(
            volume.persistent_volume_claim.expect("pvc").claim_name,
            "home-jellyfin-config"
        );
        let mounts: BTreeMap<String, Option<String>> = container(&objs)
            .volume_mounts
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.name == "config")
            .map(|m| (m.mount_path, m.sub_path))
            .collect();
        // `/cache` is not on the config claim: it has a volume of its own.
        assert_eq!(
            mounts,
            BTreeMap::from([("/config".to_string(), Some("config".to_string()))])
        );
        let seerr = container(&render("jellyseerr"))
            .volume_mounts
            .unwrap_or_default();
        assert!(seerr.iter().any(|m| m.mount_path == "/app/config"));
    }

    fn volume(objs: &AppObjects, name: &str) -> Option<Volume> {
        pod(objs)
            .volumes
            .unwrap_or_default()
            .into_iter()
            .find(|v| v.name == name)
    }

    fn jellyfin_with(f: impl FnOnce(&mut AppSpec)) -> AppObjects {
        let mut spec = stack().spec;
        f(spec.apps.jellyfin.as_mut().expect("jellyfin"));
        render_with(&spec, "jellyfin", &inputs())
    }

    #[test]
    fn jellyfin_cache_is_a_size_limited_empty_dir_or_the_users_claim() {
        let objs = render("jellyfin");
        let cache = volume(&objs, CACHE_VOLUME).expect("cache volume");
        let dir = cache.empty_dir.expect("emptyDir by default");
        assert_eq!(dir.size_limit, Some(Quantity(DEFAULT_CACHE_LIMIT.into())));
        let mount = container(&objs)
            .volume_mounts
            .unwrap_or_default()
            .into_iter()
            .find(|m| m.mount_path == CACHE_DIR)
            .expect("/cache mount");
        assert_eq!(mount.name, CACHE_VOLUME);
        assert_eq!(mount.sub_path, None);

        let objs = jellyfin_with(|j| {
            j.cache = Some(CacheVolume {
                size_limit: Some(Quantity("50Gi".into())),
                claim_name: None,
            })
        });
        let dir = volume(&objs, CACHE_VOLUME)
            .and_then(|v| v.empty_dir)
            .expect("emptyDir");
        assert_eq!(dir.size_limit, Some(Quantity("50Gi".into())));

        let objs = jellyfin_with(|j| {
            j.cache = Some(CacheVolume {
                size_limit: None,
                claim_name: Some("jellyfin-cache".into()),
            })
        });
        let cache = volume(&objs, CACHE_VOLUME).expect("cache volume");
        assert!(cache.empty_dir.is_none());
        assert_eq!(
            cache
                .persistent_volume_claim
                .map(|c| c.claim_name)
                .as_deref(),
            Some("jellyfin-cache")
        );
        // Other apps get no cache volume.
        assert!(volume(&render("sonarr"), CACHE_VOLUME).is_none());
    }

    #[test]
    fn hardware_acceleration_mounts_dri_with_the_render_group_or_asks_a_device_plugin() {
        use crate::api::mediastack::{DevicePlugin, DriDevices};
        let plain = render("jellyfin");
        assert!(volume(&plain, "dri").is_none());
        assert_eq!(
            pod(&plain)
                .security_context
                .and_then(|s| s.supplemental_groups),
            None
        );

        let objs = jellyfin_with(|j| {
            j.hardware_acceleration = Some(HardwareAcceleration {
                dri: Some(DriDevices { render_group: 105 }),
                device_plugin: None,
            })
        });
        let hp = volume(&objs, "dri")
            .and_then(|v| v.host_path)
            .expect("hostPath");
        assert_eq!(hp.path, "/dev/dri");
        assert_eq!(hp.type_.as_deref(), Some("Directory"));
        assert!(
            container(&objs)
                .volume_mounts
                .unwrap_or_default()
                .iter()
                .any(|m| m.name == "dri" && m.mount_path == "/dev/dri")
        );
        let sec = pod(&objs).security_context.expect("pod security");
        assert_eq!(sec.supplemental_groups, Some(vec![105]));
        // The rest of the pod security is unchanged.
        assert_eq!(sec.run_as_non_root, Some(true));
        assert_eq!(sec.fs_group, Some(1000));

        let objs = jellyfin_with(|j| {
            j.hardware_acceleration = Some(HardwareAcceleration {
                dri: None,
                device_plugin: Some(DevicePlugin {
                    resource: "nvidia.com/gpu".into(),
                    count: 1,
                }),
            })
        });
        assert!(volume(&objs, "dri").is_none());
        let limits = container(&objs)
            .resources
            .and_then(|r| r.limits)
            .expect("limits");
        assert_eq!(limits.get("nvidia.com/gpu"), Some(&Quantity("1".into())));
        assert_eq!(limits.get("memory"), Some(&Quantity("2Gi".into())));
    }

    #[test]
    fn api_key_secret_ref_feeds_the_apps_key_variable() {
        use crate::api::mediastack::SecretKeyRef;
        let mut spec = stack().spec;
        spec.apps
            .sonarr
            .as_mut()
            .expect("sonarr")
            .api_key_secret_ref = Some(SecretKeyRef {
            name: "sonarr-key".into(),
            key: "apiKey".into(),
        });
        let objs = render_with(&spec, "sonarr", &inputs());
        let var = container(&objs)
            .env
            .unwrap_or_default()
            .into_iter()
            .find(|e| e.name == "SONARR__AUTH__APIKEY")
            .expect("key variable");
        let sel = var
            .value_from
            .and_then(|v| v.secret_key_ref)
            .expect("secretKeyRef");
        assert_eq!(
            (sel.name.as_str(), sel.key.as_str()),
            ("sonarr-key", "apiKey")
        );
        assert!(var.value.is_none());
        // Without it the app alone sets no key (monitoring adds one later).
        assert!(!env(&render("sonarr")).contains_key("SONARR__AUTH__APIKEY"));
    }

    #[test]
    fn service_aliases_select_the_apps_pods() {
        let mut spec = stack().spec;
        spec.apps
            .qbittorrent
            .as_mut()
            .expect("qbittorrent")
            .service_aliases = vec!["qbittorrent".into(), "gluetun".into()];
        let objs = render_with(&spec, "qbittorrent", &inputs());
        let names: Vec<_> = objs
            .extra
            .iter()
            .filter(|c| c.api.kind == "Service")
            .map(|c| c.object.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, vec!["qbittorrent", "gluetun"]);
        let alias = &objs.extra[1].object;
        assert_eq!(
            alias.data["spec"]["selector"],
            serde_json::to_value(parent().selector("qbittorrent")).expect("json")
        );
        assert_eq!(alias.data["spec"]["ports"][0]["port"], 8080);
        assert_eq!(
            alias
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app.kubernetes.io/component"))
                .map(String::as_str),
            Some(ALIAS_COMPONENT)
        );
        // Owned by the stack like its other children (pruned when dropped).
        assert_eq!(alias.metadata.owner_references, Some(vec![parent().owner]));
        assert!(
            render("qbittorrent")
                .extra
                .iter()
                .all(|c| c.api.kind != "Service")
        );
        insta::assert_snapshot!("qbittorrent_alias_service", objs.extra[1].to_yaml());
    }

    #[test]
    fn probes_hit_the_real_health_routes() {
        for (name, path) in [
            ("bazarr", "/api/system/ping"),
            ("jellyfin", "/health"),
            ("jellyseerr", "/api/v1/status"),
            ("sonarr", "/ping"),
            ("dozzle", "/healthcheck"),
            ("dashboard", "/api/healthcheck"),
        ] {
            let c = container(&render(name));
            for probe in [c.startup_probe, c.liveness_probe, c.readiness_probe] {
                let get = probe.and_then(|p| p.http_get).expect("httpGet probe");
                assert_eq!(get.path.as_deref(), Some(path), "{name}");
                assert_eq!(get.port, IntOrString::String("http".into()), "{name}");
            }
        }
    }

    #[test]
    fn qbittorrent_is_probed_over_tcp_and_told_its_ports() {
        let objs = render("qbittorrent");
        let c = container(&objs);
        for probe in [c.startup_probe, c.liveness_probe, c.readiness_probe] {
            let probe = probe.expect("probe");
            assert!(probe.http_get.is_none());
            assert_eq!(
                probe.tcp_socket.expect("tcpSocket").port,
                IntOrString::String("http".into())
            );
        }
        let env = env(&objs);
        assert_eq!(env.get("WEBUI_PORT").map(String::as_str), Some("8080"));
        assert_eq!(env.get("TORRENTING_PORT").map(String::as_str), Some("6881"));
        // The torrent port is useless behind Mullvad: only the WebUI is served.
        let ports = objs.service.spec.and_then(|s| s.ports).unwrap_or_default();
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].port, 8080);
    }

    #[test]
    fn the_dashboard_probe_passes_homepages_host_check() {
        let c = container(&render("dashboard"));
        let headers = c
            .liveness_probe
            .and_then(|p| p.http_get)
            .and_then(|g| g.http_headers)
            .unwrap_or_default();
        assert!(
            headers
                .iter()
                .any(|h| h.name == "Host" && h.value == "localhost:3000")
        );
    }

    #[test]
    fn linuxserver_apps_get_puid_pgid_umask_and_start_as_root() {
        for name in ["sonarr", "radarr", "prowlarr", "bazarr", "qbittorrent"] {
            let objs = render(name);
            let env = env(&objs);
            assert_eq!(env.get("PUID").map(String::as_str), Some("1000"), "{name}");
            assert_eq!(env.get("PGID").map(String::as_str), Some("1000"), "{name}");
            assert_eq!(env.get("UMASK").map(String::as_str), Some("002"), "{name}");
            assert_eq!(
                env.get("TZ").map(String::as_str),
                Some("Europe/Amsterdam"),
                "{name}"
            );
            let sc = pod(&objs).security_context.expect("pod securityContext");
            assert_eq!(sc.run_as_user, None, "{name} must start as root");
            assert_eq!(sc.run_as_non_root, None, "{name}");
            assert_eq!(sc.fs_group, Some(1000), "{name}");
            assert_eq!(
                sc.fs_group_change_policy.as_deref(),
                Some("OnRootMismatch"),
                "{name}"
            );
        }
    }

    #[test]
    fn runas_apps_run_as_the_stack_identity_without_puid() {
        let mut spec = stack().spec;
        spec.identity.uid = 1500;
        spec.identity.gid = 1600;
        for name in ["jellyfin", "jellyseerr", "dozzle", "dashboard"] {
            let objs = render_with(&spec, name, &inputs());
            let env = env(&objs);
            assert!(
                !env.contains_key("PUID") && !env.contains_key("PGID"),
                "{name}"
            );
            assert_eq!(
                env.get("TZ").map(String::as_str),
                Some("Europe/Amsterdam"),
                "{name}"
            );
            let sc = pod(&objs).security_context.expect("pod securityContext");
            assert_eq!(sc.run_as_user, Some(1500), "{name}");
            assert_eq!(sc.run_as_group, Some(1600), "{name}");
            assert_eq!(sc.fs_group, Some(1600), "{name}");
            assert_eq!(sc.run_as_non_root, Some(true), "{name}");
            assert_eq!(
                sc.fs_group_change_policy.as_deref(),
                Some("OnRootMismatch"),
                "{name}"
            );
            let csc = container(&objs)
                .security_context
                .expect("container securityContext");
            assert_eq!(csc.allow_privilege_escalation, Some(false), "{name}");
            assert_eq!(
                csc.capabilities.and_then(|c| c.drop),
                Some(vec!["ALL".to_string()]),
                "{name}"
            );
        }
    }

    #[test]
    fn jellyseerr_waits_for_jellyfin_to_be_ready() {
        let spec = stack().spec;
        let not_ready = Inputs {
            ready_apps: Vec::new(),
            ..inputs()
        };
        let waiting = render_with(&spec, "jellyseerr", &not_ready);
        assert_eq!(replicas(&waiting), Some(0));
        let message = waiting.waiting_for.expect("waiting message");
        assert!(message.contains("jellyfin"), "{message}");

        let started = render_with(&spec, "jellyseerr", &inputs());
        assert_eq!(replicas(&started), Some(1));
        assert_eq!(started.waiting_for, None);
    }

    #[test]
    fn jellyseerr_runs_when_jellyfin_is_not_enabled() {
        let mut spec = stack().spec;
        spec.apps.jellyfin = Some(AppSpec {
            enabled: false,
            ..Default::default()
        });
        let none_ready = Inputs {
            ready_apps: Vec::new(),
            ..inputs()
        };
        let objs = render_with(&spec, "jellyseerr", &none_ready);
        assert_eq!(replicas(&objs), Some(1));
        assert_eq!(objs.waiting_for, None);
        spec.apps.jellyfin = None;
        assert_eq!(
            replicas(&render_with(&spec, "jellyseerr", &none_ready)),
            Some(1)
        );
    }

    #[test]
    fn a_running_jellyseerr_keeps_running_while_jellyfin_restarts() {
        let only_seerr = Inputs {
            ready_apps: vec!["jellyseerr".into()],
            ..inputs()
        };
        let objs = render_with(&stack().spec, "jellyseerr", &only_seerr);
        assert_eq!(replicas(&objs), Some(1));
        assert_eq!(objs.waiting_for, None);
    }

    #[test]
    fn apps_without_dependencies_never_wait() {
        let none_ready = Inputs {
            ready_apps: Vec::new(),
            ..inputs()
        };
        for name in ALL.iter().filter(|n| **n != "jellyseerr") {
            let objs = render_with(&stack().spec, name, &none_ready);
            assert_eq!(replicas(&objs), Some(1), "{name}");
        }
    }

    #[test]
    fn user_env_wins_and_comes_last() {
        let mut spec = stack().spec;
        spec.apps.sonarr = Some(AppSpec {
            env: vec![
                EnvVar {
                    name: "UMASK".into(),
                    value: Some("022".into()),
                    value_from: None,
                },
                EnvVar {
                    name: "EXTRA".into(),
                    value: Some("1".into()),
                    value_from: None,
                },
            ],
            ..Default::default()
        });
        let objs = render_with(&spec, "sonarr", &inputs());
        let list = container(&objs).env.unwrap_or_default();
        let umasks: Vec<&EnvVar> = list.iter().filter(|e| e.name == "UMASK").collect();
        assert_eq!(umasks.len(), 1, "no duplicate names");
        assert_eq!(umasks[0].value.as_deref(), Some("022"));
        let names: Vec<&str> = list.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names[names.len() - 2..], ["UMASK", "EXTRA"]);
        assert!(names.contains(&"PUID") && names.contains(&"TZ"));
    }

    #[test]
    fn resources_default_to_the_seed_limits() {
        for (name, limit) in [
            ("jellyfin", "2Gi"),
            ("qbittorrent", "4Gi"),
            ("sonarr", "1Gi"),
            ("radarr", "512Mi"),
            ("bazarr", "512Mi"),
            ("prowlarr", "256Mi"),
        ] {
            let objs = render(name);
            assert_eq!(memory_limit(&objs).as_deref(), Some(limit), "{name}");
            let r = container(&objs).resources.expect("resources");
            let requests = r.requests.unwrap_or_default();
            assert!(
                requests.contains_key("memory") && requests.contains_key("cpu"),
                "{name}"
            );
            assert!(
                !r.limits.unwrap_or_default().contains_key("cpu"),
                "{name}: no CPU limit"
            );
        }
    }

    #[test]
    fn user_resources_and_image_replace_the_defaults() {
        let mut spec = stack().spec;
        let resources = ResourceRequirements {
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("8Gi".into()),
            )])),
            ..Default::default()
        };
        spec.apps.jellyfin = Some(AppSpec {
            image: Some("jellyfin/jellyfin:10.11.6".into()),
            resources: Some(resources.clone()),
            ..Default::default()
        });
        let c = container(&render_with(&spec, "jellyfin", &inputs()));
        assert_eq!(c.resources, Some(resources));
        assert_eq!(c.image.as_deref(), Some("jellyfin/jellyfin:10.11.6"));
    }

    #[test]
    fn single_writer_apps_are_recreated_not_rolled() {
        for name in ALL {
            let objs = render(name);
            let kind = objs
                .deployment
                .spec
                .strategy
                .and_then(|s| s.type_)
                .expect("strategy");
            let expected = if objs.config_claim.is_some() {
                "Recreate"
            } else {
                "RollingUpdate"
            };
            assert_eq!(kind, expected, "{name}");
        }
        assert!(render("sonarr").config_claim.is_some());
        assert!(render("dozzle").config_claim.is_none());
        assert!(render("dashboard").config_claim.is_none());
    }

    #[test]
    fn only_dozzle_gets_an_api_token() {
        for name in ALL {
            let p = pod(&render(name));
            assert_eq!(
                p.automount_service_account_token,
                Some(name == "dozzle"),
                "{name}"
            );
            assert_eq!(p.enable_service_links, Some(false), "{name}");
            let sa = p.service_account_name;
            if name == "dozzle" {
                assert_eq!(sa.as_deref(), Some("home-dozzle"));
            } else {
                assert_eq!(sa, None, "{name}");
            }
        }
    }

    #[test]
    fn dozzle_reads_only_its_namespace_and_has_no_actions() {
        let objs = render("dozzle");
        let env = env(&objs);
        assert_eq!(env.get("DOZZLE_MODE").map(String::as_str), Some("k8s"));
        assert_eq!(
            env.get("DOZZLE_NAMESPACE").map(String::as_str),
            Some("media")
        );
        assert_eq!(
            env.get("DOZZLE_ENABLE_ACTIONS").map(String::as_str),
            Some("false")
        );
        let mounts = container(&objs).volume_mounts.unwrap_or_default();
        let data = mounts
            .iter()
            .find(|m| m.mount_path == "/data")
            .expect("/data mount");
        let volumes = pod(&objs).volumes.unwrap_or_default();
        let vol = volumes
            .iter()
            .find(|v| v.name == data.name)
            .expect("volume");
        assert!(vol.empty_dir.is_some());
    }

    #[test]
    fn dashboard_mounts_its_generated_config_and_rolls_when_it_changes() {
        let spec = stack().spec;
        let objs = render_with(&spec, "dashboard", &inputs());
        let env = env(&objs);
        assert_eq!(
            env.get("HOMEPAGE_ALLOWED_HOSTS").map(String::as_str),
            Some("dashboard.lan")
        );
        let mounts = container(&objs).volume_mounts.unwrap_or_default();
        for file in [
            "services.yaml",
            "settings.yaml",
            "bookmarks.yaml",
            "widgets.yaml",
            "kubernetes.yaml",
        ] {
            let path = format!("/app/config/{file}");
            let m = mounts
                .iter()
                .find(|m| m.mount_path == path)
                .expect("file mounted");
            assert_eq!(m.sub_path.as_deref(), Some(file));
        }
        let volumes = pod(&objs).volumes.unwrap_or_default();
        assert!(volumes.iter().any(|v| {
            v.config_map
                .as_ref()
                .is_some_and(|c| c.name == "home-dashboard")
        }));

        let hash = |objs: &AppObjects| -> Option<String> {
            objs.deployment
                .spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.as_ref())
                .and_then(|a| a.get(dashboard::CONFIG_HASH_ANNOTATION).cloned())
        };
        let before = hash(&objs).expect("config hash");
        let mut fewer = spec.clone();
        fewer.apps.radarr = None;
        let after = hash(&render_with(&fewer, "dashboard", &inputs())).expect("config hash");
        assert_ne!(before, after, "a changed app list must roll the dashboard");
        for name in ALL.iter().filter(|n| **n != "dashboard") {
            assert_eq!(hash(&render(name)), None, "{name} consumes no ConfigMap");
        }
    }

    #[test]
    fn service_selects_the_app_pods_on_the_http_port() {
        let objs = render("radarr");
        let svc = objs.service.spec.expect("service spec");
        assert_eq!(svc.type_.as_deref(), Some("ClusterIP"));
        let pod_labels = objs
            .deployment
            .spec
            .template
            .metadata
            .and_then(|m| m.labels)
            .unwrap_or_default();
        let selector = svc.selector.expect("selector");
        assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
        let port = &svc.ports.expect("ports")[0];
        assert_eq!(port.port, 7878);
        assert_eq!(port.target_port, Some(IntOrString::String("http".into())));
        assert_eq!(objs.service.metadata.name.as_deref(), Some("home-radarr"));
    }
}
