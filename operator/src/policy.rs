//! The cluster admin's policy: what a MediaStack (written by whoever may
//! create one in a namespace) may ask of the node and of the images it runs.
//!
//! The policy comes from the operator's flags (chart values `policy.*`), never
//! from a MediaStack. A stack that asks for something the policy refuses is
//! not rendered at all: the operator keeps what already runs and reports
//! `Stalled` with reason `NotAllowed`, naming the flag that would allow it.
//!
//! Checks here are pure; the CRD's own validation (`..` segments and system
//! directories in `storage.data.hostPath`) rejects the worst input earlier,
//! at admission, for every policy.

use crate::api::MediaStackSpec;
use crate::catalog;

/// Host path prefixes allowed by default for `storage.data.hostPath`.
pub const DEFAULT_HOST_PATH_PREFIXES: &[&str] = &["/srv", "/mnt", "/media", "/data", "/var/mnt"];

/// Env names refused by default in `apps.<app>.env`: each one runs code of
/// the caller's choosing inside the container or changes who it runs as.
/// - `DOCKER_MODS`: linuxserver images download and run these as root at start.
/// - `PUID`, `PGID`: linuxserver images drop to these ids (0 = root);
///   `spec.identity` sets them.
/// - `LD_PRELOAD`, `LD_AUDIT`, `LD_LIBRARY_PATH`: load a library into every process.
/// - `NODE_OPTIONS`: `--require` a script into Jellyseerr and the dashboard.
/// - `PYTHONSTARTUP`, `PYTHONPATH`: load Python code into Bazarr.
/// - `S6_CMD_ARG0`: a command prefixed to the service of s6-overlay images.
pub const DEFAULT_REFUSED_ENV: &[&str] = &[
    "DOCKER_MODS",
    "PUID",
    "PGID",
    "LD_PRELOAD",
    "LD_AUDIT",
    "LD_LIBRARY_PATH",
    "NODE_OPTIONS",
    "PYTHONSTARTUP",
    "PYTHONPATH",
    "S6_CMD_ARG0",
];

/// The admin policy. [`Policy::default`] is the safe default of the chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// `storage.data.hostPath` must be one of these directories or below one.
    /// Flag `--allowed-host-path`. Empty: no hostPath at all.
    pub host_path_prefixes: Vec<String>,
    /// fail2ban may run (a hostNetwork DaemonSet with NET_ADMIN/NET_RAW that
    /// reads pod logs on the node). Flag `--allow-fail2ban`. When false,
    /// `security.fail2ban.enabled` unset means off; `true` is refused.
    pub allow_fail2ban: bool,
    /// Pods may bind node ports (the managed Traefik's port 80).
    /// Flag `--allow-host-ports` (default true).
    pub allow_host_ports: bool,
    /// Pods may use the node's network namespace (fail2ban needs it too).
    /// Flag `--allow-host-network`.
    pub allow_host_network: bool,
    /// Pods may mount a device of the node (`/dev/dri` for
    /// `apps.jellyfin.hardwareAcceleration.dri`). Flag `--allow-host-devices`.
    pub allow_host_devices: bool,
    /// Image overrides (`apps.<app>.image`, `ingress.traefik.image`,
    /// `ingress.tunnel.image`, `security.fail2ban.image`) must name one of
    /// these repositories (`lscr.io/linuxserver/sonarr`) or a repository under
    /// a prefix ending in `/` (`registry.example.com/`). `*` allows any.
    /// Flag `--allowed-image`. Default: the repositories of the built-in images
    /// (another tag of the same image is allowed).
    pub allowed_images: Vec<String>,
    /// Env names refused in `apps.<app>.env` (exact, case-sensitive).
    /// Flag `--refused-env`.
    pub refused_env: Vec<String>,
    /// Names taken out of `refused_env`. Flag `--allow-env`.
    pub allowed_env: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            host_path_prefixes: DEFAULT_HOST_PATH_PREFIXES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            allow_fail2ban: false,
            allow_host_ports: true,
            allow_host_network: false,
            allow_host_devices: false,
            allowed_images: default_images(),
            refused_env: DEFAULT_REFUSED_ENV.iter().map(|s| s.to_string()).collect(),
            allowed_env: Vec::new(),
        }
    }
}

/// Repositories of every image the operator runs by default.
pub fn default_images() -> Vec<String> {
    let mut out: Vec<String> = catalog::APPS
        .iter()
        .map(|a| a.image)
        .chain([
            crate::render::traefik::DEFAULT_IMAGE,
            crate::render::tunnel::DEFAULT_IMAGE,
            crate::render::fail2ban::DEFAULT_IMAGE,
            crate::api::vpngateway::DEFAULT_GLUETUN_IMAGE,
        ])
        .map(repository)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The repository of an image reference, normalised the way a container
/// runtime reads it: no tag or digest, `docker.io/` and `library/` implied.
/// `Sonarr:4`, `docker.io/library/traefik:v3` -> `traefik`.
pub fn repository(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap_or(image);
    // A tag is after the last ':' that follows the last '/' (a ':' before it is a registry port).
    let last_slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    let no_tag = match no_digest[last_slash..].find(':') {
        Some(i) => &no_digest[..last_slash + i],
        None => no_digest,
    };
    let lower = no_tag.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("docker.io/")
        .or_else(|| lower.strip_prefix("index.docker.io/"))
        .unwrap_or(&lower);
    rest.strip_prefix("library/").unwrap_or(rest).to_string()
}

/// A request the policy refuses: the field, what it asked, and the flag that
/// would allow it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The spec field, e.g. `storage.data.hostPath`.
    pub field: String,
    /// Why, naming the value asked for.
    pub reason: String,
    /// The operator flag (chart value) that would allow it.
    pub allow_with: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}; allowed only with {}",
            self.field, self.reason, self.allow_with
        )
    }
}

impl Policy {
    /// Every request of `spec` that this policy refuses (empty: allowed).
    pub fn check(&self, spec: &MediaStackSpec) -> Vec<Refusal> {
        let mut out = Vec::new();
        if let Some(path) = &spec.storage.data.host_path
            && !self.host_path_allowed(path)
        {
            out.push(Refusal {
                field: "storage.data.hostPath".into(),
                reason: format!(
                    "{path} is not under an allowed prefix ({})",
                    self.prefixes_text()
                ),
                allow_with: "--allowed-host-path (chart value policy.allowedHostPaths)".into(),
            });
        }
        for (app, a) in spec.apps.enabled() {
            if let Some(path) = a.config.as_ref().and_then(|c| c.host_path.as_ref())
                && !self.host_path_allowed(path)
            {
                out.push(Refusal {
                    field: format!("apps.{}.config.hostPath", app.name),
                    reason: format!(
                        "{path} is not under an allowed prefix ({})",
                        self.prefixes_text()
                    ),
                    allow_with: "--allowed-host-path (chart value policy.allowedHostPaths)".into(),
                });
            }
            if a.hardware_acceleration
                .as_ref()
                .is_some_and(|h| h.dri.is_some())
                && !self.allow_host_devices
            {
                out.push(Refusal {
                    field: format!("apps.{}.hardwareAcceleration.dri", app.name),
                    reason: "mounts the node's /dev/dri into the pod (a host device)".into(),
                    allow_with: "--allow-host-devices (chart value policy.allowHostDevices); or use hardwareAcceleration.devicePlugin".into(),
                });
            }
        }
        if spec.security.fail2ban.enabled == Some(true) {
            if !self.allow_fail2ban {
                out.push(Refusal {
                    field: "security.fail2ban.enabled".into(),
                    reason: "fail2ban runs on the node's network with NET_ADMIN and reads pod logs of the node".into(),
                    allow_with: "--allow-fail2ban (chart value policy.allowFail2ban)".into(),
                });
            }
            if !self.allow_host_network {
                out.push(Refusal {
                    field: "security.fail2ban.enabled".into(),
                    reason: "fail2ban needs hostNetwork".into(),
                    allow_with: "--allow-host-network (chart value policy.allowHostNetwork)".into(),
                });
            }
        }
        if spec.ingress.traefik.is_managed() && !self.allow_host_ports {
            out.push(Refusal {
                field: "ingress.traefik.managed".into(),
                reason: "the managed Traefik binds host port 80 of the node".into(),
                allow_with: "--allow-host-ports (chart value policy.allowHostPorts); or set ingress.traefik.managed: false".into(),
            });
        }
        let mut images: Vec<(String, &String)> = spec
            .apps
            .enabled()
            .filter_map(|(app, a)| {
                a.image
                    .as_ref()
                    .map(|i| (format!("apps.{}.image", app.name), i))
            })
            .collect();
        if let Some(i) = &spec.ingress.traefik.image {
            images.push(("ingress.traefik.image".into(), i));
        }
        if let Some(i) = spec.ingress.tunnel.as_ref().and_then(|t| t.image.as_ref()) {
            images.push(("ingress.tunnel.image".into(), i));
        }
        if let Some(i) = &spec.security.fail2ban.image {
            images.push(("security.fail2ban.image".into(), i));
        }
        out.extend(
            images
                .into_iter()
                .filter_map(|(field, image)| self.check_image(&field, image)),
        );
        for (app, a) in spec.apps.enabled() {
            for env in &a.env {
                if self.env_refused(&env.name) {
                    out.push(Refusal {
                        field: format!("apps.{}.env", app.name),
                        reason: format!("env {} is refused", env.name),
                        allow_with: format!(
                            "--allow-env {} (chart value policy.allowedEnv)",
                            env.name
                        ),
                    });
                }
            }
        }
        out
    }

    /// A refusal when `image` (given in `field`) names a repository the
    /// policy does not allow. Also used for the gluetun image of the
    /// VpnGateways a stack uses (it runs in the stack's pods).
    pub fn check_image(&self, field: &str, image: &str) -> Option<Refusal> {
        (!self.image_allowed(image)).then(|| Refusal {
            field: field.to_string(),
            reason: format!("image repository {} is not allowed", repository(image)),
            allow_with: "--allowed-image (chart value policy.allowedImages)".into(),
        })
    }

    /// The spec as rendered under this policy: fail2ban left unset follows
    /// the policy (off unless fail2ban and hostNetwork are allowed).
    pub fn effective(&self, spec: &MediaStackSpec) -> MediaStackSpec {
        let mut spec = spec.clone();
        if spec.security.fail2ban.enabled.is_none() {
            spec.security.fail2ban.enabled = Some(
                self.allow_fail2ban && self.allow_host_network && spec.ingress.traefik.is_managed(),
            );
        }
        spec
    }

    fn prefixes_text(&self) -> String {
        if self.host_path_prefixes.is_empty() {
            "none".to_string()
        } else {
            self.host_path_prefixes.join(", ")
        }
    }

    /// Whether `path` is an allowed prefix or below one, compared by whole
    /// path components (`/srv` allows `/srv/media`, not `/srvx`).
    pub fn host_path_allowed(&self, path: &str) -> bool {
        if path.split('/').any(|c| c == ".." || c == ".") {
            return false;
        }
        let path = path.trim_end_matches('/');
        self.host_path_prefixes.iter().any(|p| {
            let p = p.trim_end_matches('/');
            !p.is_empty() && (path == p || path.starts_with(&format!("{p}/")))
        })
    }

    /// Whether `image` names an allowed repository.
    pub fn image_allowed(&self, image: &str) -> bool {
        let repo = repository(image);
        self.allowed_images.iter().any(|a| {
            a == "*"
                || if a.ends_with('/') {
                    repo.starts_with(&repository_prefix(a))
                } else {
                    repo == repository(a)
                }
        })
    }

    /// Whether env `name` is refused.
    pub fn env_refused(&self, name: &str) -> bool {
        self.refused_env.iter().any(|r| r == name) && !self.allowed_env.iter().any(|a| a == name)
    }
}

fn repository_prefix(prefix: &str) -> String {
    let lower = prefix.to_ascii_lowercase();
    let rest = lower.strip_prefix("docker.io/").unwrap_or(&lower);
    rest.strip_prefix("library/").unwrap_or(rest).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::stack;
    use k8s_openapi::api::core::v1::EnvVar;

    fn fields(p: &Policy, spec: &MediaStackSpec) -> Vec<String> {
        p.check(spec).into_iter().map(|r| r.field).collect()
    }

    #[test]
    fn the_example_stack_passes_the_default_policy() {
        assert_eq!(Policy::default().check(&stack().spec), Vec::new());
    }

    #[test]
    fn host_paths_outside_the_prefixes_are_refused_by_component() {
        let p = Policy::default();
        for ok in [
            "/srv",
            "/srv/",
            "/srv/media",
            "/mnt/disk1/data",
            "/var/mnt/x",
        ] {
            assert!(p.host_path_allowed(ok), "{ok}");
        }
        for bad in [
            "/",
            "/srvx",
            "/etc",
            "/srv/../etc",
            "/home/me",
            "/var",
            "/srv/./x",
        ] {
            assert!(!p.host_path_allowed(bad), "{bad}");
        }
        let mut spec = stack().spec;
        spec.storage.data.host_path = Some("/home/me".into());
        let r = p.check(&spec);
        assert_eq!(r.len(), 1);
        assert!(r[0].to_string().contains("storage.data.hostPath"));
        assert!(r[0].to_string().contains("--allowed-host-path"));
        let none = Policy {
            host_path_prefixes: Vec::new(),
            ..Policy::default()
        };
        assert!(!none.host_path_allowed("/srv/data"));
    }

    #[test]
    fn fail2ban_follows_the_policy_and_explicit_requests_are_refused() {
        let p = Policy::default();
        let mut spec = stack().spec;
        spec.security.fail2ban.enabled = None;
        assert_eq!(p.effective(&spec).security.fail2ban.enabled, Some(false));
        spec.security.fail2ban.enabled = Some(true);
        let r = fields(&p, &spec);
        assert_eq!(r, vec!["security.fail2ban.enabled"; 2]);
        let allowed = Policy {
            allow_fail2ban: true,
            allow_host_network: true,
            ..Policy::default()
        };
        assert!(allowed.check(&spec).is_empty());
        spec.security.fail2ban.enabled = None;
        assert_eq!(
            allowed.effective(&spec).security.fail2ban.enabled,
            Some(true)
        );
    }

    #[test]
    fn adopted_config_host_paths_and_host_devices_follow_the_policy() {
        use crate::api::mediastack::{AppConfig, DriDevices, HardwareAcceleration};
        let p = Policy::default();
        let mut spec = stack().spec;
        spec.apps.sonarr.as_mut().expect("sonarr").config = Some(AppConfig {
            host_path: Some("/srv/compose/sonarr".into()),
            ..Default::default()
        });
        assert!(p.check(&spec).is_empty());
        spec.apps.sonarr.as_mut().expect("sonarr").config = Some(AppConfig {
            host_path: Some("/home/me/sonarr".into()),
            ..Default::default()
        });
        let r = p.check(&spec);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].field, "apps.sonarr.config.hostPath");
        assert!(r[0].to_string().contains("--allowed-host-path"), "{}", r[0]);
        spec.apps.sonarr.as_mut().expect("sonarr").config = None;

        spec.apps
            .jellyfin
            .as_mut()
            .expect("jellyfin")
            .hardware_acceleration = Some(HardwareAcceleration {
            dri: Some(DriDevices { render_group: 105 }),
            device_plugin: None,
        });
        assert_eq!(
            fields(&p, &spec),
            vec!["apps.jellyfin.hardwareAcceleration.dri"]
        );
        let allowed = Policy {
            allow_host_devices: true,
            ..Policy::default()
        };
        assert!(allowed.check(&spec).is_empty());
    }

    #[test]
    fn host_ports_can_be_refused() {
        let p = Policy {
            allow_host_ports: false,
            ..Policy::default()
        };
        let mut spec = stack().spec;
        assert_eq!(fields(&p, &spec), vec!["ingress.traefik.managed"]);
        spec.ingress.traefik.managed = Some(false);
        assert!(p.check(&spec).is_empty());
    }

    #[test]
    fn images_are_compared_by_normalised_repository() {
        assert_eq!(repository("docker.io/library/traefik:v3.6.2"), "traefik");
        assert_eq!(
            repository("registry:5000/team/sonarr:4@sha256:abc"),
            "registry:5000/team/sonarr"
        );
        assert_eq!(repository("Jellyfin/Jellyfin"), "jellyfin/jellyfin");
        let p = Policy::default();
        assert!(p.image_allowed("lscr.io/linuxserver/sonarr:4.0.17"));
        assert!(p.image_allowed("docker.io/jellyfin/jellyfin:10.12.0"));
        assert!(!p.image_allowed("evil.example/sonarr:4"));
        assert!(!p.image_allowed("lscr.io/linuxserver/sonarr-evil:4"));
        assert!(p.image_allowed("qmcgaw/gluetun:v3.42.0"));
        assert!(
            p.check_image("VpnGateway x spec.image", "evil/gluetun:1")
                .is_some()
        );
        let prefix = Policy {
            allowed_images: vec!["registry.example.com/".into()],
            ..Policy::default()
        };
        assert!(prefix.image_allowed("registry.example.com/media/sonarr:1"));
        assert!(!prefix.image_allowed("registry.example.com.evil/sonarr:1"));
        let any = Policy {
            allowed_images: vec!["*".into()],
            ..Policy::default()
        };
        assert!(any.image_allowed("anything/at:all"));

        let mut spec = stack().spec;
        spec.apps.sonarr.as_mut().expect("sonarr").image = Some("evil.example/sonarr:4".into());
        spec.ingress.traefik.image = Some("evil/traefik:1".into());
        assert_eq!(
            fields(&p, &spec),
            vec!["apps.sonarr.image", "ingress.traefik.image"]
        );
    }

    #[test]
    fn refused_env_names_unless_allowed() {
        let mut spec = stack().spec;
        spec.apps.radarr.as_mut().expect("radarr").env = vec![
            EnvVar {
                name: "DOCKER_MODS".into(),
                value: Some("linuxserver/mods:universal-package-install".into()),
                ..Default::default()
            },
            EnvVar {
                name: "MY_SETTING".into(),
                value: Some("1".into()),
                ..Default::default()
            },
        ];
        let r = Policy::default().check(&spec);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].field, "apps.radarr.env");
        assert!(r[0].to_string().contains("--allow-env DOCKER_MODS"));
        let allowed = Policy {
            allowed_env: vec!["DOCKER_MODS".into()],
            ..Policy::default()
        };
        assert!(allowed.check(&spec).is_empty());
    }
}
