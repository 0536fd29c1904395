//! The qBittorrent config step: an init container, run before every start
//! of a qBittorrent pod (monitoring on or off), that edits linuxserver's
//! `/config/qBittorrent/qBittorrent.conf`:
//!
//! - `[BitTorrent]` `Session\Interface=tun0`, `Session\InterfaceName=tun0`,
//!   `Session\InterfaceAddress=` (every address of tun0): qBittorrent's
//!   session is bound to the tunnel interface, so with the tunnel down it
//!   sends nothing, even with gluetun's firewall rules gone (the kill
//!   switch's innermost layer). Always written: a user's change is undone.
//! - `Session\DefaultSavePath=/data/torrents/` and
//!   `Session\TempPath=/data/torrents/incomplete/`: where the shared data
//!   tree is mounted. Written only while the file has no value or the
//!   image's default (`/downloads/...`), so a user's choice is kept.
//! - `[Preferences]` `WebUI\LocalHostAuth=false` only when something in the
//!   pod logs in over loopback: the exporter (monitoring) or gluetun's
//!   port-forwarding command. Otherwise the key is left as it is.
//!
//! Key names as in qBittorrent's source (`BitTorrent/Session/Interface`,
//! `.../InterfaceName`, `.../InterfaceAddress`, `.../DefaultSavePath`,
//! `.../TempPath`, `Preferences/WebUI/LocalHostAuth`), which QSettings
//! writes as `[BitTorrent]` `Session\Interface=...`.

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, PodSpec, ResourceRequirements, SecurityContext, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::sidecar::{CONTAINER_NAME, TUNNEL_INTERFACE};
use crate::catalog::App;

/// Name of the init container.
pub const CONFIG_CONTAINER: &str = "qbittorrent-config";
/// Where the app container mounts its config directory.
const CONFIG_DIR: &str = "/config";
/// Where finished and incomplete downloads go (the data tree's torrents
/// directory, mounted at the same path in qBittorrent and the *arr apps).
pub const SAVE_PATH: &str = "/data/torrents/";
pub const TEMP_PATH: &str = "/data/torrents/incomplete/";
/// The linuxserver image's defaults, replaced by the above.
const IMAGE_SAVE_PATH: &str = "/downloads/";
const IMAGE_TEMP_PATH: &str = "/downloads/incomplete/";

/// One setting: section, key, value, and the values it may replace
/// (`None`: always written; `Some(list)`: only an absent or empty value or
/// one of `list`).
struct Setting {
    section: &'static str,
    key: &'static str,
    value: &'static str,
    replaces: Option<&'static str>,
}

fn settings(localhost_auth: bool) -> Vec<Setting> {
    let mut out = vec![
        Setting {
            section: "BitTorrent",
            key: r"Session\Interface",
            value: TUNNEL_INTERFACE,
            replaces: None,
        },
        Setting {
            section: "BitTorrent",
            key: r"Session\InterfaceName",
            value: TUNNEL_INTERFACE,
            replaces: None,
        },
        Setting {
            section: "BitTorrent",
            key: r"Session\InterfaceAddress",
            value: "",
            replaces: None,
        },
        Setting {
            section: "BitTorrent",
            key: r"Session\DefaultSavePath",
            value: SAVE_PATH,
            replaces: Some(IMAGE_SAVE_PATH),
        },
        Setting {
            section: "BitTorrent",
            key: r"Session\TempPath",
            value: TEMP_PATH,
            replaces: Some(IMAGE_TEMP_PATH),
        },
    ];
    if localhost_auth {
        out.push(Setting {
            section: "Preferences",
            key: r"WebUI\LocalHostAuth",
            value: "false",
            replaces: None,
        });
    }
    out
}

/// The settings as the script reads them: one per line, tab-separated
/// `mode section key value [replaced]`.
fn settings_env(localhost_auth: bool) -> String {
    settings(localhost_auth)
        .iter()
        .map(|s| match s.replaces {
            None => format!("set\t{}\t{}\t{}\n", s.section, s.key, s.value),
            Some(old) => format!("default\t{}\t{}\t{}\t{old}\n", s.section, s.key, s.value),
        })
        .collect()
}

/// Rewrites the INI file: in each section, a listed key's line is replaced
/// (mode `set`, or mode `default` while the value is empty or the image's),
/// a listed key the section lacks is appended to it, a missing section is
/// appended with its keys. Every other line is kept as it is. The
/// settings come through the environment (`ENVIRON`, not `awk -v`, which
/// would eat the backslashes of the key names). Creates the
/// file from the image's defaults on a fresh volume, as the image's own
/// init does. Idempotent; POSIX sh and awk (busybox or GNU).
const SCRIPT: &str = r#"set -eu
conf=/config/qBittorrent/qBittorrent.conf
mkdir -p /config/qBittorrent
if [ ! -f "$conf" ]; then
  if [ -f /defaults/qBittorrent.conf ]; then cp /defaults/qBittorrent.conf "$conf"; else : > "$conf"; fi
fi
awk '
BEGIN {
  n = split(ENVIRON["QBT_SETTINGS"], rows, "\n")
  for (i = 1; i <= n; i++) {
    if (rows[i] == "") continue
    split(rows[i], f, "\t")
    k = f[2] SUBSEP f[3]
    mode[k] = f[1]; sec[k] = f[2]; name[k] = f[3]; want[k] = f[4]; old[k] = f[5]
    order[++m] = k
  }
}
function flush(s,   j, k) {
  for (j = 1; j <= m; j++) {
    k = order[j]
    if (sec[k] == s && !(k in done)) { print name[k] "=" want[k]; done[k] = 1 }
  }
}
/^\[.*\]$/ { flush(cur); cur = substr($0, 2, length($0) - 2); seen[cur] = 1; print; next }
{
  eq = index($0, "=")
  if (eq > 0) {
    k = cur SUBSEP substr($0, 1, eq - 1)
    if ((k in want) && !(k in done)) {
      v = substr($0, eq + 1)
      done[k] = 1
      if (mode[k] == "set" || v == "" || v == old[k]) { print name[k] "=" want[k] } else { print }
      next
    }
  }
  print
}
END {
  flush(cur)
  for (j = 1; j <= m; j++) {
    s = sec[order[j]]
    if (!(s in seen)) { print ""; print "[" s "]"; seen[s] = 1; flush(s) }
  }
}' "$conf" > "$conf.new"
mv "$conf.new" "$conf"
"#;

/// The init container, with the app's image and config mount; `None` when
/// the app container mounts no `/config`.
pub(super) fn config_init(pod: &PodSpec, app: &App, localhost_auth: bool) -> Option<Container> {
    let container = pod
        .containers
        .iter()
        .find(|c| c.name == app.name)
        .or_else(|| pod.containers.first())?;
    let mount: VolumeMount = container
        .volume_mounts
        .as_ref()?
        .iter()
        .find(|m| m.mount_path == CONFIG_DIR)?
        .clone();
    let image = container
        .image
        .clone()
        .unwrap_or_else(|| app.image.to_string());
    Some(Container {
        name: CONFIG_CONTAINER.into(),
        image: Some(image),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["/bin/sh".into(), "-c".into(), SCRIPT.into()]),
        env: Some(vec![EnvVar {
            name: "QBT_SETTINGS".into(),
            value: Some(settings_env(localhost_auth)),
            value_from: None,
        }]),
        volume_mounts: Some(vec![mount]),
        resources: Some(ResourceRequirements {
            requests: Some(
                [
                    ("cpu".to_string(), Quantity("10m".into())),
                    ("memory".to_string(), Quantity("16Mi".into())),
                ]
                .into(),
            ),
            limits: Some([("memory".to_string(), Quantity("64Mi".into()))].into()),
            ..Default::default()
        }),
        // Root, as the linuxserver image itself starts: the file belongs to
        // PUID and the image's init chowns /config back at every start.
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: Some(vec!["CHOWN".into(), "DAC_OVERRIDE".into(), "FOWNER".into()]),
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Puts the config step right after gluetun (nothing runs before the VPN
/// sidecar), replacing an earlier one.
pub(super) fn insert(pod: &mut PodSpec, init: Container) {
    let inits = pod.init_containers.get_or_insert_with(Vec::new);
    inits.retain(|c| c.name != init.name);
    let at = inits
        .iter()
        .position(|c| c.name == CONTAINER_NAME)
        .map_or(0, |i| i + 1);
    inits.insert(at, init);
}

#[cfg(test)]
pub(super) fn script() -> &'static str {
    SCRIPT
}

#[cfg(test)]
pub(super) fn settings_for_test(localhost_auth: bool) -> String {
    settings_env(localhost_auth)
}
