//! The `MediaStack` resource: the apps of a media stack and what they share.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::SecretRef;
use super::ingressroute::RouteAuth;

/// A complete self-hosted media stack: the apps, their shared storage and
/// identity, the domains they are served on, the edge (Traefik, Cloudflare
/// tunnel, fail2ban) and monitoring.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mediastack.io",
    version = "v1alpha1",
    kind = "MediaStack",
    namespaced,
    derive = "PartialEq",
    status = "MediaStackStatus",
    shortname = "mstack",
    category = "media",
    doc = "A self-hosted media stack: apps, shared storage, identity, domains, edge and monitoring.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Apps",
        type_ = "string",
        description = "Ready apps / enabled apps",
        json_path = ".status.appsReady"
    ),
    printcolumn(
        name = "Edge",
        type_ = "string",
        description = "EdgeReady reason: Traefik, cloudflared and fail2ban",
        json_path = ".status.conditions[?(@.type==\"EdgeReady\")].reason"
    ),
    printcolumn(
        name = "Dashboard",
        type_ = "string",
        json_path = ".status.dashboardURL"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MediaStackSpec {
    /// IANA time zone given to every app as `TZ`, for example `Europe/Amsterdam`.
    #[serde(default = "default_timezone")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")
    )]
    pub timezone: String,
    /// The user and group the apps run as, and the umask for files they write.
    #[serde(default)]
    pub identity: Identity,
    /// The shared data volume (downloads and library on one filesystem, so
    /// imports are hardlinks) and the per-app config volumes.
    pub storage: Storage,
    /// Domains the apps are served on.
    #[serde(default)]
    pub domain: Domain,
    /// The apps of the stack. An app runs when its key is present and
    /// `enabled` is not false.
    #[serde(default)]
    pub apps: Apps,
    /// Traefik and the Cloudflare tunnel.
    #[serde(default)]
    pub ingress: Ingress,
    /// Host-level protection of the edge.
    #[serde(default)]
    pub security: Security,
    /// ServiceMonitors, alert rules and dashboards for prometheus-operator.
    #[serde(default)]
    pub monitoring: Monitoring,
    /// Which links between the apps the operator sets up through their own
    /// APIs (docs/wiring.md). Each is on by default.
    #[serde(default)]
    pub wiring: Wiring,
}

/// The links the operator sets up between the apps (docs/wiring.md). A link
/// runs only when `enabled` and its own switch are true and both of its apps
/// are enabled and Ready. Turning a link off stops the operator from
/// touching it; what it already set in the apps is kept.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Wiring {
    /// Every link at once: false turns them all off.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Sonarr, Radarr -> qBittorrent: a download client named `mediastack`.
    #[serde(default = "default_true")]
    pub download_clients: bool,
    /// Sonarr and Radarr: the root folders `/data/media/tv` and `/data/media/movies`.
    #[serde(default = "default_true")]
    pub root_folders: bool,
    /// Prowlarr -> Sonarr, Radarr: applications `mediastack-sonarr` and `mediastack-radarr` (full sync).
    #[serde(default = "default_true")]
    pub prowlarr_applications: bool,
    /// qBittorrent: categories `tv` and `movies` under `/data/torrents` and the default save path.
    #[serde(default = "default_true")]
    pub qbittorrent_categories: bool,
}

impl Default for Wiring {
    fn default() -> Self {
        Self {
            enabled: true,
            download_clients: true,
            root_folders: true,
            prowlarr_applications: true,
            qbittorrent_categories: true,
        }
    }
}

fn default_timezone() -> String {
    "UTC".into()
}
fn default_true() -> bool {
    true
}

/// The identity the apps run as.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// User ID: `PUID` for linuxserver images, `runAsUser` for the others.
    #[serde(default = "default_id")]
    #[schemars(range(min = 1, max = 2147483647))]
    pub uid: i64,
    /// Group ID: `PGID` for linuxserver images, `runAsGroup` and `fsGroup` for the others.
    #[serde(default = "default_id")]
    #[schemars(range(min = 1, max = 2147483647))]
    pub gid: i64,
    /// Octal umask for files the apps create, for example "002" so the group can write.
    #[serde(default = "default_umask")]
    #[schemars(regex(pattern = r"^0?[0-7]{3}$"))]
    pub umask: String,
}

fn default_id() -> i64 {
    1000
}
fn default_umask() -> String {
    "002".into()
}

impl Default for Identity {
    fn default() -> Self {
        Self {
            uid: default_id(),
            gid: default_id(),
            umask: default_umask(),
        }
    }
}

/// Storage of the stack.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// The one data filesystem, laid out as `torrents/{tv,movies}` and
    /// `media/{tv,movies}`. Each pod mounts it once.
    pub data: DataStorage,
    /// Template of the per-app config volume.
    #[serde(default)]
    pub config: ConfigStorage,
}

/// Where the shared data lives: exactly one of `hostPath`, `claimName` or `size`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "[has(self.hostPath), has(self.claimName), has(self.size)].filter(x, x).size() == 1"
).message("storage.data needs exactly one of hostPath, claimName or size"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.storageClassName) || has(self.size)"
).message("storage.data.storageClassName only applies with size (a claim the operator creates)"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.hostPath) || !self.hostPath.matches('(^|/)[.][.]?(/|$)')"
).message("storage.data.hostPath must not contain '.' or '..' segments").field_path(".hostPath"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.hostPath) || !(self.hostPath in ['/', '/var', '/var/lib', '/usr', '/home']) && !['/etc', '/proc', '/sys', '/dev', '/run', '/var/run', '/root', '/boot', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/usr/bin', '/usr/sbin', '/usr/lib', '/var/lib/kubelet', '/var/lib/containerd', '/var/lib/docker', '/var/lib/etcd', '/var/lib/rancher', '/var/log', '/etc/kubernetes'].exists(p, self.hostPath == p || self.hostPath.startsWith(p + '/'))"
).message("storage.data.hostPath must not be a system directory (/, /etc, /proc, /sys, /dev, /run, /var/run, /root, /boot, /var/lib/kubelet, /var/lib/containerd, /var/log and the like) or below one").field_path(".hostPath"))]
pub struct DataStorage {
    /// An absolute directory on the node (single-node clusters). The cluster
    /// admin's policy limits it to allowed prefixes (default `/srv`, `/mnt`,
    /// `/media`, `/data`, `/var/mnt`); system directories and `..` segments
    /// are rejected at admission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/([^/\x00]+/?)*$"), length(max = 4096))]
    pub host_path: Option<String>,
    /// An existing PersistentVolumeClaim (ReadWriteMany if apps may land on different nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: Option<String>,
    /// Size of a PersistentVolumeClaim the operator creates and never deletes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Quantity>,
    /// StorageClass of the claim the operator creates (with `size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// The per-app config volume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigStorage {
    /// Size of each app's config PersistentVolumeClaim.
    #[serde(default = "default_config_size")]
    pub size: Quantity,
    /// StorageClass of the config claims; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Make the config claims disposable: delete an app's claim when the app
    /// is disabled, and all of them when the MediaStack is deleted (they are
    /// then owned by it). Off by default: config is user data, kept (label
    /// `mediastack.io/keep`, no owner) and adopted again by a stack re-created
    /// under the same name.
    #[serde(default)]
    pub delete_with_app: bool,
}

fn default_config_size() -> Quantity {
    Quantity("1Gi".into())
}

impl Default for ConfigStorage {
    fn default() -> Self {
        Self {
            size: default_config_size(),
            storage_class_name: None,
            delete_with_app: false,
        }
    }
}

/// Domains of the stack.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Domain {
    /// Local domain suffix: apps are served at `<app>.<local>`, e.g. `jellyfin.lan`.
    #[serde(default = "default_local_domain")]
    #[schemars(
        length(min = 1, max = 200),
        regex(
            pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"
        )
    )]
    pub local: String,
    /// Public domain served through the Cloudflare tunnel; optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 200),
        regex(
            pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)+$"
        )
    )]
    pub public: Option<String>,
}

fn default_local_domain() -> String {
    "lan".into()
}

impl Default for Domain {
    fn default() -> Self {
        Self {
            local: default_local_domain(),
            public: None,
        }
    }
}

/// The apps of the stack. Unknown app names are rejected.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.qbittorrent) || (has(self.qbittorrent.enabled) && !self.qbittorrent.enabled) || has(self.qbittorrent.vpn)"
).message("apps.qbittorrent.vpn.gatewayRef is required: qBittorrent only runs behind a VpnGateway"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.dozzle) || !has(self.dozzle.expose) || !has(self.dozzle.expose.allowAnonymous) || !self.dozzle.expose.allowAnonymous || !has(self.dozzle.expose.public) || !self.dozzle.expose.public"
).message("apps.dozzle.expose.public needs a login: Dozzle shows every log of the namespace; drop allowAnonymous (a login is generated) or set expose.auth"))]
#[x_kube(validation = kube::core::Rule::new(
    "(!has(self.jellyseerr) || (!has(self.jellyseerr.cache) && !has(self.jellyseerr.hardwareAcceleration))) && (!has(self.sonarr) || (!has(self.sonarr.cache) && !has(self.sonarr.hardwareAcceleration))) && (!has(self.radarr) || (!has(self.radarr.cache) && !has(self.radarr.hardwareAcceleration))) && (!has(self.prowlarr) || (!has(self.prowlarr.cache) && !has(self.prowlarr.hardwareAcceleration))) && (!has(self.bazarr) || (!has(self.bazarr.cache) && !has(self.bazarr.hardwareAcceleration))) && (!has(self.qbittorrent) || (!has(self.qbittorrent.cache) && !has(self.qbittorrent.hardwareAcceleration))) && (!has(self.dozzle) || (!has(self.dozzle.cache) && !has(self.dozzle.hardwareAcceleration))) && (!has(self.dashboard) || (!has(self.dashboard.cache) && !has(self.dashboard.hardwareAcceleration)))"
).message("cache and hardwareAcceleration apply to apps.jellyfin only"))]
#[x_kube(validation = kube::core::Rule::new(
    "(!has(self.jellyfin) || !has(self.jellyfin.apiKeySecretRef)) && (!has(self.jellyseerr) || !has(self.jellyseerr.apiKeySecretRef)) && (!has(self.bazarr) || !has(self.bazarr.apiKeySecretRef)) && (!has(self.qbittorrent) || !has(self.qbittorrent.apiKeySecretRef)) && (!has(self.dozzle) || !has(self.dozzle.apiKeySecretRef)) && (!has(self.dashboard) || !has(self.dashboard.apiKeySecretRef))"
).message("apiKeySecretRef applies to apps.sonarr, apps.radarr and apps.prowlarr only (the apps that read their API key from the environment)"))]
#[x_kube(validation = kube::core::Rule::new(
    "(!has(self.dozzle) || !has(self.dozzle.config)) && (!has(self.dashboard) || !has(self.dashboard.config))"
).message("apps.dozzle and apps.dashboard keep no config to adopt"))]
pub struct Apps {
    /// Jellyfin media server (port 8096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jellyfin: Option<AppSpec>,
    /// Jellyseerr / Seerr request manager (port 5055); starts after Jellyfin is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jellyseerr: Option<AppSpec>,
    /// Sonarr, TV series (port 8989).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sonarr: Option<AppSpec>,
    /// Radarr, movies (port 7878).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radarr: Option<AppSpec>,
    /// Prowlarr, indexers (port 9696).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prowlarr: Option<AppSpec>,
    /// Bazarr, subtitles (port 6767).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bazarr: Option<AppSpec>,
    /// qBittorrent (WebUI 8080); always behind the VpnGateway named in `vpn.gatewayRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qbittorrent: Option<AppSpec>,
    /// Dozzle live logs (port 8080), reading pod logs of this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dozzle: Option<AppSpec>,
    /// Web dashboard listing every enabled app with its URL and health (port 3000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard: Option<AppSpec>,
}

/// Settings of one app.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppSpec {
    /// Run the app. Defaults to true when the app's key is present.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Container image; defaults to a pinned, tested tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^[^\s]+$"))]
    pub image: Option<String>,
    /// CPU and memory; defaults to the limits of the compose setup, with requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra environment variables for the app container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub env: Vec<EnvVar>,
    /// How the app is exposed through Traefik.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose: Option<Expose>,
    /// Route all of the app's traffic through a VpnGateway (gluetun sidecar with kill switch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpn: Option<VpnAttachment>,
    /// Adopt an existing config directory instead of the claim the operator
    /// creates: the app's config directory (`/config`, Jellyseerr's
    /// `/app/config`) is the whole claim or host directory. The operator
    /// never deletes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<AppConfig>,
    /// Jellyfin only: its `/cache` (transcodes, image cache). Default: an
    /// emptyDir limited to 10Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheVolume>,
    /// Jellyfin only: hardware transcoding through the node's `/dev/dri`
    /// (needs the admin policy's `--allow-host-devices`) or a device-plugin
    /// resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_acceleration: Option<HardwareAcceleration>,
    /// Sonarr, Radarr, Prowlarr only: a Secret key holding the app's existing
    /// API key (its `config.xml` `<ApiKey>`). The app and its exporter use it
    /// instead of a generated key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
    /// Extra Service names selecting the app's pods (e.g. `sonarr`, or
    /// `gluetun` for qBittorrent), so URLs in migrated configs keep working.
    /// None by default. A name taken by a Service the operator did not create
    /// for this app is left alone and reported (`ServiceAliasConflict`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 8),
        inner(
            length(min = 1, max = 63),
            regex(pattern = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
        )
    )]
    pub service_aliases: Vec<String>,
}

/// A config directory the user already has: exactly one of `existingClaim`
/// or `hostPath`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "has(self.existingClaim) != has(self.hostPath)"
).message("config needs exactly one of existingClaim or hostPath"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.hostPath) || !self.hostPath.matches('(^|/)[.][.]?(/|$)')"
).message("config.hostPath must not contain '.' or '..' segments").field_path(".hostPath"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.hostPath) || !(self.hostPath in ['/', '/var', '/var/lib', '/usr', '/home']) && !['/etc', '/proc', '/sys', '/dev', '/run', '/var/run', '/root', '/boot', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/usr/bin', '/usr/sbin', '/usr/lib', '/var/lib/kubelet', '/var/lib/containerd', '/var/lib/docker', '/var/lib/etcd', '/var/lib/rancher', '/var/log', '/etc/kubernetes'].exists(p, self.hostPath == p || self.hostPath.startsWith(p + '/'))"
).message("config.hostPath must not be a system directory (/, /etc, /proc, /sys, /dev, /run, /var/run, /root, /boot, /var/lib/kubelet, /var/lib/containerd, /var/log and the like) or below one").field_path(".hostPath"))]
pub struct AppConfig {
    /// An existing PersistentVolumeClaim in the stack's namespace holding the
    /// config directory at its root. Missing: the stack stalls (`ClaimNotFound`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub existing_claim: Option<String>,
    /// An existing directory on the node (type `Directory`: it must exist).
    /// Limited by the admin policy's host path prefixes, like `storage.data.hostPath`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/([^/\x00]+/?)*$"), length(max = 4096))]
    pub host_path: Option<String>,
}

/// Jellyfin's cache volume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "!(has(self.sizeLimit) && has(self.claimName))"
).message("cache takes sizeLimit (emptyDir) or claimName, not both"))]
pub struct CacheVolume {
    /// Size limit of the emptyDir (default 10Gi); the kubelet evicts the pod
    /// when the cache grows past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<Quantity>,
    /// An existing PersistentVolumeClaim to keep the cache on instead
    /// (missing: the stack stalls with `ClaimNotFound`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: Option<String>,
}

/// Hardware transcoding: exactly one of `dri` or `devicePlugin`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "has(self.dri) != has(self.devicePlugin)"
).message("hardwareAcceleration needs exactly one of dri or devicePlugin"))]
pub struct HardwareAcceleration {
    /// Mount the node's `/dev/dri` (a hostPath to a device: the admin policy
    /// must allow host devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dri: Option<DriDevices>,
    /// Ask a device plugin for the GPU in `resources.limits`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_plugin: Option<DevicePlugin>,
}

/// The node's `/dev/dri`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DriDevices {
    /// Group ID owning `/dev/dri/renderD*` on the node (`stat -c %g
    /// /dev/dri/renderD128`), added to the pod's `supplementalGroups`.
    #[schemars(range(min = 1, max = 2147483647))]
    pub render_group: i64,
}

/// A GPU from a device plugin.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DevicePlugin {
    /// Extended resource of the plugin: `gpu.intel.com/i915` (Intel GPU
    /// plugin) or `nvidia.com/gpu` (NVIDIA device plugin).
    #[schemars(regex(pattern = r"^(gpu\.intel\.com/i915|nvidia\.com/gpu)$"))]
    pub resource: String,
    /// How many (default 1).
    #[serde(default = "default_one")]
    #[schemars(range(min = 1, max = 8))]
    pub count: i32,
}

fn default_one() -> i32 {
    1
}

/// A key of a Secret in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Key in the Secret (default `apiKey`).
    #[serde(default = "default_api_key_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_api_key_key() -> String {
    "apiKey".into()
}

impl Default for AppSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            image: None,
            resources: None,
            env: Vec::new(),
            expose: None,
            vpn: None,
            config: None,
            cache: None,
            hardware_acceleration: None,
            api_key_secret_ref: None,
            service_aliases: Vec::new(),
        }
    }
}

/// Exposure of an app's web UI.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.allowAnonymous) || !self.allowAnonymous || !has(self.auth)"
).message("expose.allowAnonymous and expose.auth exclude each other"))]
pub struct Expose {
    /// Serve the app at `<app>.<domain.local>` (or `host`). On by default.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Also serve it at `<app>.<domain.public>` through the Cloudflare tunnel.
    #[serde(default)]
    pub public: bool,
    /// Host name instead of `<app>.<domain.local>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(
            pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"
        )
    )]
    pub host: Option<String>,
    /// Login in front of the app: Traefik basic auth from a Secret
    /// (`basicAuthSecretRef`, htpasswd `users` or a `kubernetes.io/basic-auth`
    /// Secret) or forward auth (`forwardAuth.address`). Without it, a public
    /// app sets the MediaStack's `Insecure` condition, and Dozzle gets a
    /// generated login (Secret `<stack>-dozzle-auth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<RouteAuth>,
    /// Dozzle only: serve it on the LAN without the generated login (sets
    /// `Insecure`). Refused together with `public` or `auth`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_anonymous: bool,
}

impl Default for Expose {
    fn default() -> Self {
        Self {
            enabled: true,
            public: false,
            host: None,
            auth: None,
            allow_anonymous: false,
        }
    }
}

/// Attachment of an app to a VpnGateway.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VpnAttachment {
    /// Name of a VpnGateway in the same namespace.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub gateway_ref: String,
}

/// Traefik and the Cloudflare tunnel.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Ingress {
    /// The Traefik instance that serves the stack.
    #[serde(default)]
    pub traefik: Traefik,
    /// The Cloudflare tunnel for public routes; no tunnel when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<Tunnel>,
}

/// Traefik settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Traefik {
    /// Deploy Traefik for this stack (host port 80). Unset (auto, the
    /// default): deploy it unless a Traefik already runs in the cluster, seen
    /// as an IngressClass with controller `traefik.io/ingress-controller`
    /// (k3s's bundled Traefik has one) while the `traefik.io` CRDs are
    /// installed; that Traefik then serves the routes on `existingEntryPoints`.
    /// true: always deploy ours. false: never; an existing Traefik that
    /// watches `traefik.io` IngressRoutes in this namespace serves the routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<bool>,
    /// Traefik image of the managed instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^[^\s]+$"))]
    pub image: Option<String>,
    /// Entry point of the routes (the HTTP entry point on port 80).
    #[serde(default = "default_entry_point")]
    #[schemars(length(min = 1, max = 63))]
    pub entry_point: String,
    /// Entry points of an existing Traefik (not managed) the local routes
    /// are bound to; k3s names its HTTP and HTTPS entry points `web` and
    /// `websecure`.
    #[serde(default = "default_existing_entry_points")]
    #[schemars(
        length(min = 1, max = 8),
        inner(length(min = 1, max = 63), regex(pattern = r"^[A-Za-z0-9_-]+$"))
    )]
    pub existing_entry_points: Vec<String>,
    /// Secret with an htpasswd `users` key. The Traefik dashboard is served at
    /// `traefik.<domain.local>` only when this is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_auth_secret_ref: Option<SecretRef>,
    /// Resources of the managed Traefik.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

fn default_entry_point() -> String {
    "web".into()
}
fn default_existing_entry_points() -> Vec<String> {
    vec!["web".into(), "websecure".into()]
}

impl Traefik {
    /// Whether the stack runs its own Traefik: `managed`, with auto (unset)
    /// taken as true. The reconciler resolves auto from the cluster before
    /// rendering (see `reconcile::resolve::resolve_traefik`).
    pub fn is_managed(&self) -> bool {
        self.managed.unwrap_or(true)
    }
}

impl Default for Traefik {
    fn default() -> Self {
        Self {
            managed: None,
            image: None,
            entry_point: default_entry_point(),
            existing_entry_points: default_existing_entry_points(),
            dashboard_auth_secret_ref: None,
            resources: None,
        }
    }
}

/// The Cloudflare tunnel (cloudflared).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Tunnel {
    /// Secret holding the tunnel token under `token`.
    pub token_secret_ref: SecretRef,
    /// cloudflared image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^[^\s]+$"))]
    pub image: Option<String>,
}

/// Host-level protection.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Security {
    /// fail2ban in front of Traefik.
    #[serde(default)]
    pub fail2ban: Fail2ban,
}

/// fail2ban settings: a hostNetwork DaemonSet that reads Traefik's access
/// log and bans before NAT.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Fail2ban {
    /// Run fail2ban. Unset: on when Traefik is managed and the admin policy
    /// allows fail2ban and hostNetwork (off with the default policy); true
    /// where the policy refuses it stalls the stack (`NotAllowed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// fail2ban image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^[^\s]+$"))]
    pub image: Option<String>,
    /// Jail for failed logins (HTTP 401 and 403).
    #[serde(default = "Jail::auth")]
    pub auth_jail: Jail,
    /// Jail for scanners probing for well-known paths.
    #[serde(default = "Jail::botsearch")]
    pub botsearch_jail: Jail,
    /// Addresses never banned, in addition to loopback, the pod and service
    /// ranges and the tunnel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = kube::core::Rule::new("self.all(c, isCIDR(c) || isIP(c))").message("ignoreCIDRs entries must be IP addresses or CIDRs"))]
    #[schemars(length(max = 32), inner(length(min = 1, max = 43)))]
    #[serde(rename = "ignoreCIDRs")]
    pub ignore_cidrs: Vec<String>,
    /// Also ban at Cloudflare's edge through its API (fail2ban's
    /// `cloudflare-token` action): the only ban that reaches tunnel
    /// visitors, whose packets never enter the node. Off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudflare: Option<CloudflareBan>,
}

/// fail2ban's Cloudflare ban action: an IP access rule (`mode: block`) per
/// ban in the zone, removed on unban.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CloudflareBan {
    /// Zone ID (32 hex digits, from the zone's overview page).
    #[schemars(regex(pattern = r"^[0-9a-f]{32}$"))]
    #[serde(rename = "zoneID")]
    pub zone_id: String,
    /// Secret with an API token (permission Zone > Firewall Services > Edit)
    /// under `apiToken`; passed to fail2ban as an environment variable, never
    /// written into its configuration.
    pub token_secret_ref: SecretRef,
}

impl Default for Fail2ban {
    fn default() -> Self {
        Self {
            enabled: None,
            image: None,
            auth_jail: Jail::auth(),
            botsearch_jail: Jail::botsearch(),
            ignore_cidrs: Vec::new(),
            cloudflare: None,
        }
    }
}

/// One fail2ban jail: ban after `maxRetry` matches within `findTime`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Jail {
    /// Matches within `findTime` that trigger a ban.
    #[schemars(range(min = 1, max = 1000))]
    pub max_retry: i32,
    /// Window in which matches are counted, e.g. `10m`.
    #[schemars(regex(pattern = r"^[0-9]+[smhdw]$"))]
    pub find_time: String,
    /// Ban duration, e.g. `1h`.
    #[schemars(regex(pattern = r"^[0-9]+[smhdw]$"))]
    pub ban_time: String,
}

impl Jail {
    fn auth() -> Self {
        Self {
            max_retry: 5,
            find_time: "10m".into(),
            ban_time: "1h".into(),
        }
    }
    fn botsearch() -> Self {
        Self {
            max_retry: 3,
            find_time: "10m".into(),
            ban_time: "24h".into(),
        }
    }
}

/// Monitoring through prometheus-operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Monitoring {
    /// Create ServiceMonitors, alert rules, exporters and dashboards. Skipped
    /// (with a condition) when the cluster lacks the prometheus-operator CRDs.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Labels put on ServiceMonitors and PrometheusRules so a Prometheus
    /// selects them, e.g. `release: kube-prometheus-stack`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_monitor_labels: BTreeMap<String, String>,
    /// Scrape interval, e.g. `30s`.
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub interval: String,
    /// Label that makes the Grafana sidecar load the dashboard ConfigMaps.
    #[serde(default = "default_dashboard_label")]
    pub dashboard_label: BTreeMap<String, String>,
    /// Pods allowed to scrape metrics ports that a NetworkPolicy guards
    /// (cloudflared's, which also serves pprof): pods matching `podSelector`
    /// in namespaces matching `namespaceSelector`. Default: pods labelled
    /// `app.kubernetes.io/name: prometheus` (prometheus-operator's label) in
    /// any namespace.
    #[serde(default)]
    pub scrape_from: ScrapeFrom,
}

/// Pods (by label) in namespaces (by label) that may scrape.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScrapeFrom {
    /// Labels of the namespaces; empty means every namespace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespace_selector: BTreeMap<String, String>,
    /// Labels of the scraping pods; empty means every pod of those namespaces.
    #[serde(default = "default_scraper_labels")]
    pub pod_selector: BTreeMap<String, String>,
}

fn default_scraper_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(
        "app.kubernetes.io/name".to_string(),
        "prometheus".to_string(),
    )])
}

impl Default for ScrapeFrom {
    fn default() -> Self {
        Self {
            namespace_selector: BTreeMap::new(),
            pod_selector: default_scraper_labels(),
        }
    }
}

fn default_interval() -> String {
    "30s".into()
}
fn default_dashboard_label() -> BTreeMap<String, String> {
    BTreeMap::from([("grafana_dashboard".to_string(), "1".to_string())])
}

impl Default for Monitoring {
    fn default() -> Self {
        Self {
            enabled: true,
            service_monitor_labels: BTreeMap::new(),
            interval: default_interval(),
            dashboard_label: default_dashboard_label(),
            scrape_from: ScrapeFrom::default(),
        }
    }
}

/// Observed state of a MediaStack.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MediaStackStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled` (kstatus), `MonitoringReady`,
    /// `EdgeReady` (Traefik, cloudflared and fail2ban of the stack ready;
    /// counts toward `Ready`), and `Insecure` naming the apps served without a login (public apps without
    /// `expose.auth`, Dozzle with `allowAnonymous`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Ready apps over enabled apps, e.g. `7/9`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps_ready: Option<String>,
    /// One entry per enabled app.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub apps: Vec<AppStatus>,
    /// Which Traefik serves the routes: `managed` (the stack's own) or
    /// `existing` (one already in the cluster, e.g. k3s's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traefik: Option<String>,
    /// Local URL of the dashboard app, when it is enabled and exposed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "dashboardURL")]
    pub dashboard_url: Option<String>,
    /// Secrets the operator generated for the user to read: logins of the
    /// apps (`kubectl get secret <name> -o jsonpath='{.data.password}' | base64 -d`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["app".into()]))]
    pub credentials: Vec<CredentialStatus>,
    /// One entry per link of `spec.wiring` the operator runs (written by the
    /// wiring task under its own field manager, `mediastack-operator-wiring`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["from".into(), "to".into()]))]
    pub links: Vec<LinkStatus>,
}

/// The state of one link between two apps (docs/wiring.md).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LinkStatus {
    /// The app that is told about the other, e.g. `sonarr`.
    pub from: String,
    /// The app it is told about, e.g. `qbittorrent` (the same app for a
    /// setting of its own, such as Sonarr's root folder).
    pub to: String,
    /// `Connected`, `Pending` (an end is not Ready yet) or `Failed` (retried
    /// with backoff).
    pub state: String,
    /// What was set, or why not. Never a key or password.
    #[serde(default)]
    pub message: String,
    /// When `state` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

/// A generated login Secret of an app.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CredentialStatus {
    /// App name, e.g. `qbittorrent`.
    pub app: String,
    /// Name of the Secret (keys `username` and `password`).
    pub secret_name: String,
}

/// Observed state of one app.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    /// App name, e.g. `sonarr`.
    pub name: String,
    /// Whether the app's Deployment has all its replicas ready.
    pub ready: bool,
    /// Ready replicas of the app's Deployment.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Image the app runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// URLs the app is served at.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// What the app waits for before it is started, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
}
