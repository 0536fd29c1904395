//! The web dashboard (Homepage) and its generated configuration.
//!
//! Homepage reads `services.yaml`, `settings.yaml`, `bookmarks.yaml`,
//! `widgets.yaml` and `kubernetes.yaml` from `/app/config`. The operator
//! writes them into the ConfigMap `<stack>-dashboard`: one entry per enabled
//! app with its title, its local URL and a `siteMonitor` on the app's health
//! route through its in-cluster Service. Kubernetes discovery is disabled
//! (`mode: disabled`), so the dashboard needs no API access at all.
//!
//! The text is written by hand, in catalog order, so the same spec always
//! gives the same bytes and the same `mediastack.io/config-hash`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::ConfigMap;

use super::meta::Parent;
use super::{Child, RenderError};
use crate::api::mediastack::{AppSpec, Domain, MediaStackSpec};
use crate::catalog::{App, AppId, Health};

/// Catalog name of the dashboard app.
pub const APP: &str = "dashboard";
/// Directory Homepage reads its configuration from.
pub const CONFIG_DIR: &str = "/app/config";
/// Pod annotation carrying the hash of the ConfigMap, so a config change
/// rolls the dashboard pod (its files are mounted with `subPath`, which the
/// kubelet never refreshes in place).
pub const CONFIG_HASH_ANNOTATION: &str = "mediastack.io/config-hash";

/// Name of the dashboard's ConfigMap: `<stack>-dashboard`.
pub fn config_map_name(parent: &Parent) -> String {
    parent.child_name(APP)
}

/// Whether the dashboard runs.
pub fn enabled(spec: &MediaStackSpec) -> bool {
    spec.apps.get(APP).is_some_and(|s| s.enabled)
}

/// The dashboard's ConfigMap when the dashboard is enabled.
pub fn objects(parent: &Parent, spec: &MediaStackSpec) -> Result<Vec<Child>, RenderError> {
    if !enabled(spec) {
        return Ok(Vec::new());
    }
    let cm = ConfigMap {
        metadata: parent.meta(&config_map_name(parent), APP, "config"),
        data: Some(config_files(parent, spec)),
        ..Default::default()
    };
    Ok(vec![Child::typed(&cm)?])
}

/// The Homepage configuration files, keyed by file name.
pub fn config_files(parent: &Parent, spec: &MediaStackSpec) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("bookmarks.yaml".to_string(), "[]\n".to_string()),
        (
            "kubernetes.yaml".to_string(),
            "mode: disabled\n".to_string(),
        ),
        ("services.yaml".to_string(), services_yaml(parent, spec)),
        ("settings.yaml".to_string(), SETTINGS.to_string()),
        ("widgets.yaml".to_string(), "[]\n".to_string()),
    ])
}

/// The host an app is served at on the LAN: `expose.host`, or
/// `<app>.<domain.local>`. `None` when exposure is switched off. An app
/// without an `expose` block is exposed (the default).
pub fn local_host(app: &App, app_spec: &AppSpec, domain: &Domain) -> Option<String> {
    match &app_spec.expose {
        None => Some(format!("{}.{}", app.name, domain.local)),
        Some(e) if e.enabled => Some(
            e.host
                .clone()
                .unwrap_or_else(|| format!("{}.{}", app.name, domain.local)),
        ),
        Some(_) => None,
    }
}

/// The host an app is served at through the tunnel, `<app>.<domain.public>`,
/// when it is exposed with `public: true` and a public domain is set.
pub fn public_host(app: &App, app_spec: &AppSpec, domain: &Domain) -> Option<String> {
    let expose = app_spec.expose.as_ref()?;
    let public = domain.public.as_ref()?;
    (expose.enabled && expose.public).then(|| format!("{}.{public}", app.name))
}

/// Value of `HOMEPAGE_ALLOWED_HOSTS`: the hosts the dashboard itself is
/// served at (Homepage rejects requests for any other `Host`, besides
/// `localhost:3000`). `None` when the dashboard is not exposed.
pub fn allowed_hosts(dashboard: &App, spec: &MediaStackSpec) -> Option<String> {
    let app_spec = spec.apps.get(dashboard.name)?;
    let hosts: Vec<String> = local_host(dashboard, app_spec, &spec.domain)
        .into_iter()
        .chain(public_host(dashboard, app_spec, &spec.domain))
        .collect();
    (!hosts.is_empty()).then(|| hosts.join(","))
}

const SETTINGS: &str = "title: \"Media stack\"\nstatusStyle: \"basic\"\ndisableUpdateCheck: true\n";

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// `services.yaml`: every enabled app except the dashboard itself, grouped,
/// in catalog order. The dashboard is left out: Homepage rejects requests
/// whose `Host` is not an allowed host, so a monitor of its own Service
/// would always show it as down.
fn services_yaml(parent: &Parent, spec: &MediaStackSpec) -> String {
    let mut groups: Vec<(&'static str, String)> = Vec::new();
    for (app, app_spec) in spec
        .apps
        .enabled()
        .filter(|(a, _)| a.id != AppId::Dashboard)
    {
        let mut entry = format!("    - {}:\n", quoted(app.title));
        let _ = writeln!(
            entry,
            "        icon: {}",
            quoted(&format!("{}.png", app.name))
        );
        if let Some(host) = local_host(app, app_spec, &spec.domain) {
            let _ = writeln!(entry, "        href: {}", quoted(&format!("http://{host}")));
        }
        if !app.description.is_empty() {
            let _ = writeln!(entry, "        description: {}", quoted(app.description));
        }
        let path = match app.health {
            Health::Http(path) => path,
            Health::Tcp => "/",
        };
        let monitor = format!(
            "http://{}.{}.svc:{}{path}",
            parent.child_name(app.name),
            parent.namespace,
            app.port
        );
        let _ = writeln!(entry, "        siteMonitor: {}", quoted(&monitor));
        let name = app.group;
        match groups.iter_mut().find(|(g, _)| *g == name) {
            Some((_, body)) => body.push_str(&entry),
            None => groups.push((name, entry)),
        }
    }
    if groups.is_empty() {
        return "[]\n".into();
    }
    groups
        .into_iter()
        .map(|(g, body)| format!("- {}:\n{body}", quoted(g)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{parent, stack};
    use super::*;
    use crate::api::mediastack::Expose;
    use crate::catalog;
    use crate::render::pod::config_hash;

    fn dashboard() -> &'static App {
        catalog::app(APP).expect("dashboard in catalog")
    }

    fn services(spec: &MediaStackSpec) -> serde_yaml::Value {
        let files = config_files(&parent(), spec);
        serde_yaml::from_str(&files["services.yaml"]).expect("services.yaml is YAML")
    }

    /// The service entry titled `title`, wherever it is grouped.
    fn entry(services: &serde_yaml::Value, title: &str) -> Option<serde_yaml::Value> {
        services.as_sequence()?.iter().find_map(|group| {
            let (_, items) = group.as_mapping()?.iter().next()?;
            items
                .as_sequence()?
                .iter()
                .find_map(|item| item.as_mapping()?.get(title).cloned())
        })
    }

    #[test]
    fn config_map_snapshot() {
        let children = objects(&parent(), &stack().spec).expect("render");
        assert_eq!(children.len(), 1);
        assert_eq!(children[0].key(), "ConfigMap/home-dashboard");
        insta::assert_snapshot!("dashboard_configmap", children[0].to_yaml());
    }

    #[test]
    fn every_config_file_is_valid_yaml() {
        for (name, text) in config_files(&parent(), &stack().spec) {
            serde_yaml::from_str::<serde_yaml::Value>(&text)
                .unwrap_or_else(|e| panic!("{name} is not YAML: {e}"));
        }
    }

    #[test]
    fn lists_enabled_apps_with_local_url_and_in_cluster_health() {
        let s = services(&stack().spec);
        let jellyfin = entry(&s, "Jellyfin").expect("Jellyfin listed");
        assert_eq!(jellyfin["href"], "http://jellyfin.lan");
        assert_eq!(
            jellyfin["siteMonitor"],
            "http://home-jellyfin.media.svc:8096/health"
        );
        let bazarr = entry(&s, "Bazarr").expect("Bazarr listed");
        assert_eq!(
            bazarr["siteMonitor"],
            "http://home-bazarr.media.svc:6767/api/system/ping"
        );
        // qBittorrent has no health route: its WebUI answers on `/`.
        let qbit = entry(&s, "qBittorrent").expect("qBittorrent listed");
        assert_eq!(
            qbit["siteMonitor"],
            "http://home-qbittorrent.media.svc:8080/"
        );
        for title in ["Jellyseerr", "Sonarr", "Radarr", "Prowlarr", "Dozzle"] {
            assert!(entry(&s, title).is_some(), "{title} missing");
        }
        assert!(
            entry(&s, "Dashboard").is_none(),
            "the dashboard lists itself"
        );
    }

    #[test]
    fn expose_host_and_disabled_apps_change_the_list() {
        let mut spec = stack().spec;
        spec.apps.jellyfin = Some(AppSpec {
            expose: Some(Expose {
                host: Some("tv.home.arpa".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        spec.apps.sonarr = Some(AppSpec {
            enabled: false,
            ..Default::default()
        });
        spec.apps.radarr = Some(AppSpec {
            expose: Some(Expose {
                enabled: false,
                ..Default::default()
            }),
            ..Default::default()
        });
        let s = services(&spec);
        assert_eq!(
            entry(&s, "Jellyfin").expect("listed")["href"],
            "http://tv.home.arpa"
        );
        assert!(entry(&s, "Sonarr").is_none());
        let radarr = entry(&s, "Radarr").expect("still listed for its health");
        assert!(radarr.get("href").is_none());
    }

    #[test]
    fn kubernetes_discovery_is_disabled() {
        let files = config_files(&parent(), &stack().spec);
        let k8s: serde_yaml::Value = serde_yaml::from_str(&files["kubernetes.yaml"]).expect("yaml");
        assert_eq!(k8s["mode"], "disabled");
        for required in [
            "services.yaml",
            "settings.yaml",
            "bookmarks.yaml",
            "widgets.yaml",
        ] {
            assert!(files.contains_key(required), "{required} missing");
        }
    }

    #[test]
    fn hash_is_stable_and_follows_the_app_list() {
        let spec = stack().spec;
        let a = config_hash(&config_files(&parent(), &spec));
        assert_eq!(a, config_hash(&config_files(&parent(), &spec)));
        let mut fewer = spec.clone();
        fewer.apps.bazarr = None;
        assert_ne!(a, config_hash(&config_files(&parent(), &fewer)));
    }

    #[test]
    fn allowed_hosts_are_the_dashboard_hosts() {
        let mut spec = stack().spec;
        assert_eq!(
            allowed_hosts(dashboard(), &spec).as_deref(),
            Some("dashboard.lan")
        );
        spec.apps.dashboard = Some(AppSpec {
            expose: Some(Expose {
                public: true,
                host: Some("home.lan".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            allowed_hosts(dashboard(), &spec).as_deref(),
            Some("home.lan,dashboard.example.org")
        );
        spec.apps.dashboard = Some(AppSpec {
            expose: Some(Expose {
                enabled: false,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(allowed_hosts(dashboard(), &spec), None);
    }

    #[test]
    fn nothing_when_the_dashboard_is_off() {
        let mut spec = stack().spec;
        spec.apps.dashboard = Some(AppSpec {
            enabled: false,
            ..Default::default()
        });
        assert!(objects(&parent(), &spec).expect("render").is_empty());
        spec.apps.dashboard = None;
        assert!(objects(&parent(), &spec).expect("render").is_empty());
    }
}
