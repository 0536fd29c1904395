//! One table of per-app facts. Adding an app is adding a row here (and a
//! field in `api::mediastack::Apps`).

use crate::api::mediastack::{AppSpec, Apps};

/// How an image takes the user and group to run as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityStyle {
    /// linuxserver.io images: start as root, drop to `PUID`/`PGID`, honour `UMASK`.
    Linuxserver,
    /// Images that ignore `PUID`/`PGID`: `runAsUser`/`runAsGroup`/`fsGroup`.
    RunAs,
}

/// How the app's health is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// `GET` on this path of the app port answers 2xx without auth.
    Http(&'static str),
    /// No health route: a TCP connect to the app port.
    Tcp,
}

/// A directory of the config volume mounted into the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigMount {
    /// Sub-directory of the app's config claim.
    pub sub_path: &'static str,
    /// Where the app expects it.
    pub mount_path: &'static str,
}

/// How the shared data volume is mounted (once per pod, so hardlinks work).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataMount {
    /// Sub-tree of the data volume; empty for the whole tree.
    pub sub_path: &'static str,
    /// Mount path in the container.
    pub mount_path: &'static str,
    pub read_only: bool,
}

/// A Prometheus exporter that runs next to the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exporter {
    /// exportarr, `exportarr <app>` on this port, with the app's API key.
    Exportarr { port: u16 },
    /// A qBittorrent exporter on this port, logging in to the WebUI.
    Qbittorrent { port: u16 },
    /// The app serves `/metrics` on its own port.
    Native { path: &'static str },
}

/// Every app the operator knows. Code that treats one app differently
/// matches on this, never on the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AppId {
    Jellyfin,
    Jellyseerr,
    Sonarr,
    Radarr,
    Prowlarr,
    Bazarr,
    Qbittorrent,
    Dozzle,
    Dashboard,
}

/// Facts about one app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct App {
    pub id: AppId,
    /// Key under `spec.apps`, also the `app.kubernetes.io/name` label.
    pub name: &'static str,
    /// Human name, for the dashboard.
    pub title: &'static str,
    /// The dashboard group it is listed under.
    pub group: &'static str,
    /// Its line on the dashboard; empty for none.
    pub description: &'static str,
    /// Default image: a pinned tag, never `latest`.
    pub image: &'static str,
    /// HTTP port of the web UI.
    pub port: u16,
    pub health: Health,
    pub identity: IdentityStyle,
    /// Config directories, all on the app's config claim. Empty: no claim.
    pub config: &'static [ConfigMount],
    pub data: Option<DataMount>,
    /// Default memory limit (the compose setup's) and request.
    pub memory_limit: &'static str,
    pub memory_request: &'static str,
    pub cpu_request: &'static str,
    /// Apps that must be ready before this one starts.
    pub depends_on: &'static [&'static str],
    pub exporter: Option<Exporter>,
    /// Environment variable through which the app takes its API key, if it has one.
    pub api_key_env: Option<&'static str>,
    /// Runs only behind a VpnGateway: the renderer refuses to render its
    /// pod without the gluetun sidecar (`render::vpn::ensure_sidecar`).
    pub vpn_only: bool,
    /// Gets the qBittorrent config step that binds its session to the
    /// tunnel interface (`render::vpn`).
    pub binds_to_tunnel: bool,
}

const CONFIG: &[ConfigMount] = &[ConfigMount {
    sub_path: "config",
    mount_path: "/config",
}];

/// Every app the operator knows, in start order.
pub const APPS: &[App] = &[
    App {
        id: AppId::Jellyfin,
        name: "jellyfin",
        title: "Jellyfin",
        group: "Media",
        description: "Watch movies and series",
        image: "jellyfin/jellyfin:10.11.5",
        port: 8096,
        health: Health::Http("/health"),
        identity: IdentityStyle::RunAs,
        // `/cache` (transcodes, image cache) is its own volume
        // (`render::workload`, `apps.jellyfin.cache`), not on the config claim.
        config: CONFIG,
        data: Some(DataMount {
            sub_path: "media",
            mount_path: "/data/media",
            read_only: true,
        }),
        memory_limit: "2Gi",
        memory_request: "512Mi",
        cpu_request: "250m",
        depends_on: &[],
        exporter: Some(Exporter::Native { path: "/metrics" }),
        api_key_env: None,
        vpn_only: false,
        binds_to_tunnel: false,
    },
    App {
        id: AppId::Jellyseerr,
        name: "jellyseerr",
        title: "Jellyseerr",
        group: "Media",
        description: "Request movies and series",
        image: "ghcr.io/seerr-team/seerr:v3.0.1",
        port: 5055,
        health: Health::Http("/api/v1/status"),
        identity: IdentityStyle::RunAs,
        config: &[ConfigMount {
            sub_path: "config",
            mount_path: "/app/config",
        }],
        data: None,
        memory_limit: "512Mi",
        memory_request: "128Mi",
        cpu_request: "50m",
        depends_on: &["jellyfin"],
        exporter: None,
        api_key_env: None,
        vpn_only: false,
        binds_to_tunnel: false,
    },
    App {
        id: AppId::Sonarr,
        name: "sonarr",
        title: "Sonarr",
        group: "Library",
        description: "Series",
        image: "lscr.io/linuxserver/sonarr:4.0.16",
        port: 8989,
        health: Health::Http("/ping"),
        identity: IdentityStyle::Linuxserver,
        config: CONFIG,
        data: Some(DataMount {
            sub_path: "",
            mount_path: "/data",
            read_only: false,
        }),
        memory_limit: "1Gi",
        memory_request: "256Mi",
        cpu_request: "100m",
        depends_on: &[],
        exporter: Some(Exporter::Exportarr { port: 9707 }),
        api_key_env: Some("SONARR__AUTH__APIKEY"),
        vpn_only: false,
        binds_to_tunnel: false,
    },
    App {
        id: AppId::Radarr,
        name: "radarr",
        title: "Radarr",
        group: "Library",
        description: "Movies",
        image: "lscr.io/linuxserver/radarr:6.0.4",
        port: 7878,
        health: Health::Http("/ping"),
        identity: IdentityStyle::Linuxserver,
        config: CONFIG,
        data: Some(DataMount {
            sub_path: "",
            mount_path: "/data",
            read_only: false,
        }),
        memory_limit: "512Mi",
        memory_request: "192Mi",
        cpu_request: "100m",
        depends_on: &[],
        exporter: Some(Exporter::Exportarr { port: 9708 }),
        api_key_env: Some("RADARR__AUTH__APIKEY"),
        vpn_only: false,
        binds_to_tunnel: false,
    },
    App {
        id: AppId::Prowlarr,
        name: "prowlarr",
        title: "Prowlarr",
        group: "Library",
        description: "Indexers",
        image: "lscr.io/linuxserver/prowlarr:2.3.0",
        port: 9696,
        health: Health::Http("/ping"),
        identity: IdentityStyle::Linuxserver,
        config: CONFIG,
        data: None,
        memory_limit: "256Mi",
        memory_request: "128Mi",
        cpu_request: "50m",
        depends_on: &[],
        exporter: Some(Exporter::Exportarr { port: 9710 }),
        api_key_env: Some("PROWLARR__AUTH__APIKEY"),
        vpn_only: false,
        binds_to_tunnel: false,
    },
    App {
        id: AppId::Bazarr,
        name: "bazarr",
        title: "Bazarr",
        group: "Library",
        description: "Subtitles",
        image: "lscr.io/linuxserver/bazarr:1.5.3",
        port: 6767,
        // `/ping` is not a Bazarr route; this is (v1.5.2+).
        health: Health::Http("/api/system/ping"),
        identity: IdentityStyle::Linuxserver,
        config: CONFIG,
        data: Some(DataMount {
            sub_path: "media",
            mount_path: "/data/media",
            read_only: false,
        }),
        memory_limit: "512Mi",
        memory_request: "128Mi",
        cpu_request: "50m",
        depends_on: &[],
        exporter: Some(Exporter::Exportarr { port: 9712 }),
        api_key_env: None,
        vpn_only: false,
        binds_to_tunnel: false,
    },
    App {
        id: AppId::Qbittorrent,
        name: "qbittorrent",
        title: "qBittorrent",
        group: "Downloads",
        description: "Downloads, through the VPN",
        image: "lscr.io/linuxserver/qbittorrent:5.1.4",
        port: 8080,
        health: Health::Tcp,
        identity: IdentityStyle::Linuxserver,
        config: CONFIG,
        data: Some(DataMount {
            sub_path: "torrents",
            mount_path: "/data/torrents",
            read_only: false,
        }),
        memory_limit: "4Gi",
        memory_request: "512Mi",
        cpu_request: "100m",
        depends_on: &[],
        exporter: Some(Exporter::Qbittorrent { port: 8090 }),
        api_key_env: None,
        vpn_only: true,
        binds_to_tunnel: true,
    },
    App {
        id: AppId::Dozzle,
        name: "dozzle",
        title: "Dozzle",
        group: "System",
        description: "Live logs",
        image: "amir20/dozzle:v8.14.0",
        port: 8080,
        health: Health::Http("/healthcheck"),
        identity: IdentityStyle::RunAs,
        config: &[],
        data: None,
        memory_limit: "128Mi",
        memory_request: "32Mi",
        cpu_request: "10m",
        depends_on: &[],
        exporter: None,
        api_key_env: None,
        vpn_only: false,
        binds_to_tunnel: false,
    },
    App {
        id: AppId::Dashboard,
        name: "dashboard",
        title: "Dashboard",
        group: "Apps",
        description: "",
        image: "ghcr.io/gethomepage/homepage:v1.7.0",
        port: 3000,
        health: Health::Http("/api/healthcheck"),
        identity: IdentityStyle::RunAs,
        config: &[],
        data: None,
        memory_limit: "256Mi",
        memory_request: "64Mi",
        cpu_request: "10m",
        depends_on: &[],
        exporter: None,
        api_key_env: None,
        vpn_only: false,
        binds_to_tunnel: false,
    },
];

/// Facts about the app called `name`.
pub fn app(name: &str) -> Option<&'static App> {
    APPS.iter().find(|a| a.name == name)
}

impl Apps {
    /// The spec of the app called `name`, when its key is present.
    pub fn get(&self, name: &str) -> Option<&AppSpec> {
        app(name).and_then(|a| self.spec(a.id))
    }

    /// The spec of app `id`, when its key is present.
    pub fn spec(&self, id: AppId) -> Option<&AppSpec> {
        match id {
            AppId::Jellyfin => self.jellyfin.as_ref(),
            AppId::Jellyseerr => self.jellyseerr.as_ref(),
            AppId::Sonarr => self.sonarr.as_ref(),
            AppId::Radarr => self.radarr.as_ref(),
            AppId::Prowlarr => self.prowlarr.as_ref(),
            AppId::Bazarr => self.bazarr.as_ref(),
            AppId::Qbittorrent => self.qbittorrent.as_ref(),
            AppId::Dozzle => self.dozzle.as_ref(),
            AppId::Dashboard => self.dashboard.as_ref(),
        }
    }

    /// Enabled apps with their facts, in catalog (start) order.
    pub fn enabled(&self) -> impl Iterator<Item = (&'static App, &AppSpec)> {
        APPS.iter()
            .filter_map(|a| self.spec(a.id).filter(|s| s.enabled).map(|s| (a, s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_app_has_a_spec_field_and_a_pinned_image() {
        let all = serde_json::from_value::<Apps>(serde_json::json!({
            "jellyfin": {}, "jellyseerr": {}, "sonarr": {}, "radarr": {}, "prowlarr": {},
            "bazarr": {}, "qbittorrent": {}, "dozzle": {}, "dashboard": {}
        }))
        .expect("apps");
        for app in APPS {
            assert!(
                all.get(app.name).is_some(),
                "{} has no field in Apps",
                app.name
            );
            let tag = app.image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
            assert!(
                !tag.is_empty() && tag != "latest",
                "{} image {} is not pinned",
                app.name,
                app.image
            );
        }
        assert_eq!(all.enabled().count(), APPS.len());
    }

    #[test]
    fn bazarr_health_is_not_ping() {
        assert_eq!(
            app("bazarr").map(|a| a.health),
            Some(Health::Http("/api/system/ping"))
        );
    }

    #[test]
    fn dependencies_name_known_apps_started_earlier() {
        for (i, a) in APPS.iter().enumerate() {
            for d in a.depends_on {
                let j = APPS
                    .iter()
                    .position(|x| x.name == *d)
                    .expect("known dependency");
                assert!(j < i, "{} depends on {} which starts later", a.name, d);
            }
        }
    }
}
