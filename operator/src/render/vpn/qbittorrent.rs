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
//! - `[Preferences]` `WebUI\Username` and `WebUI\Password_PBKDF2` from
//!   the generated login Secret `<stack>-<app>-webui` (keys `username`,
//!   `password`, and `passwordPBKDF2`, the hash the operator computes with
//!   [`password_pbkdf2`]): the Secret is the source of truth, so the WebUI
//!   never starts with the image's temporary password. Always written,
//!   unless the Secret has `keepExisting: "true"` (the user's say-so): then
//!   a username or password already in the file is kept and only missing
//!   ones are written.
//!
//! Key names as in qBittorrent's source (`BitTorrent/Session/Interface`,
//! `.../InterfaceName`, `.../InterfaceAddress`, `.../DefaultSavePath`,
//! `.../TempPath`, `Preferences/WebUI/LocalHostAuth`), which QSettings
//! writes as `[BitTorrent]` `Session\Interface=...`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, PodSpec, ResourceRequirements,
    SecretKeySelector, SecurityContext, VolumeMount,
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

/// Key of the WebUI login Secret holding the hash written to the config.
pub const PBKDF2_KEY: &str = "passwordPBKDF2";
/// Optional key of the WebUI login Secret: `"true"` keeps a username and
/// password already in qBittorrent.conf.
pub const KEEP_KEY: &str = "keepExisting";
/// Annotation on the login Secret: SHA-256 (hex) of the `password` the
/// stored hash was computed from, so a changed password is re-hashed.
pub const HASHED_ANNOTATION: &str = "mediastack.io/hashed-password-sha256";
/// qBittorrent's parameters (`src/base/utils/password.cpp`): PBKDF2 with
/// HMAC-SHA512, 100000 rounds, 16-byte salt, 64-byte key.
pub const PBKDF2_ROUNDS: u32 = 100_000;
pub const SALT_LEN: usize = 16;
const KEY_LEN: usize = 64;

/// Name of the generated WebUI login Secret of `app`: `<stack>-<app>-webui`.
pub fn webui_secret_name(parent: &super::super::meta::Parent, app: &str) -> String {
    parent.child_name(&format!("{app}-webui"))
}

/// qBittorrent's stored form of `password` with `salt`: `<salt b64>:<key b64>`
/// (written to the config as `"@ByteArray(...)"`).
pub fn password_pbkdf2(password: &[u8], salt: &[u8]) -> String {
    let key = pbkdf2::pbkdf2_hmac_array::<sha2::Sha512, KEY_LEN>(password, salt, PBKDF2_ROUNDS);
    format!("{}:{}", BASE64.encode(salt), BASE64.encode(key))
}

/// How a setting is written.
#[derive(Clone, Copy)]
enum Mode {
    /// Always; appended to its section when missing.
    Set,
    /// Only over an empty value or `old` (the image's default); appended
    /// when missing.
    Default { old: &'static str },
    /// A legacy key qBittorrent migrates into the one above at its first
    /// start: replaced when present (always), never added.
    Legacy,
    /// A legacy key, replaced only over an empty value or `old`, never added.
    LegacyDefault { old: &'static str },
}

/// One setting: section, key, value, how it is written.
struct Setting {
    section: &'static str,
    key: &'static str,
    value: &'static str,
    mode: Mode,
}

const fn setting(
    section: &'static str,
    key: &'static str,
    value: &'static str,
    mode: Mode,
) -> Setting {
    Setting {
        section,
        key,
        value,
        mode,
    }
}

fn settings(localhost_auth: bool) -> Vec<Setting> {
    let mut out = vec![
        setting(
            "BitTorrent",
            r"Session\Interface",
            TUNNEL_INTERFACE,
            Mode::Set,
        ),
        setting(
            "BitTorrent",
            r"Session\InterfaceName",
            TUNNEL_INTERFACE,
            Mode::Set,
        ),
        setting("BitTorrent", r"Session\InterfaceAddress", "", Mode::Set),
        setting(
            "BitTorrent",
            r"Session\DefaultSavePath",
            SAVE_PATH,
            Mode::Default {
                old: IMAGE_SAVE_PATH,
            },
        ),
        setting(
            "BitTorrent",
            r"Session\TempPath",
            TEMP_PATH,
            Mode::Default {
                old: IMAGE_TEMP_PATH,
            },
        ),
        // The linuxserver image's defaults file still has the pre-4.4 keys
        // (`Preferences/Downloads/SavePath`, ...), which qBittorrent moves
        // over the new ones at its first start: they get the same values,
        // so the migration cannot undo the binding or the paths.
        setting(
            "Preferences",
            r"Connection\Interface",
            TUNNEL_INTERFACE,
            Mode::Legacy,
        ),
        setting(
            "Preferences",
            r"Connection\InterfaceName",
            TUNNEL_INTERFACE,
            Mode::Legacy,
        ),
        setting(
            "Preferences",
            r"Connection\InterfaceAddress",
            "",
            Mode::Legacy,
        ),
        setting(
            "Preferences",
            r"Downloads\SavePath",
            SAVE_PATH,
            Mode::LegacyDefault {
                old: IMAGE_SAVE_PATH,
            },
        ),
        setting(
            "Preferences",
            r"Downloads\TempPath",
            TEMP_PATH,
            Mode::LegacyDefault {
                old: IMAGE_TEMP_PATH,
            },
        ),
    ];
    if localhost_auth {
        out.push(setting(
            "Preferences",
            r"WebUI\LocalHostAuth",
            "false",
            Mode::Set,
        ));
    }
    out
}

/// The settings as the script reads them: one per line, tab-separated
/// `mode section key value [replaced]`.
fn settings_env(localhost_auth: bool) -> String {
    settings(localhost_auth)
        .iter()
        .map(|s| {
            let (mode, old) = match s.mode {
                Mode::Set => ("set", ""),
                Mode::Default { old } => ("default", old),
                Mode::Legacy => ("legacy", ""),
                Mode::LegacyDefault { old } => ("legacydefault", old),
            };
            format!("{mode}\t{}\t{}\t{}\t{old}\n", s.section, s.key, s.value)
        })
        .collect()
}

/// Rewrites the INI file: in each section, a listed key's line is replaced
/// (modes `set` and `legacy` always, `default` and `legacydefault` while the
/// value is empty or the image's), a listed `set`/`default` key the section
/// lacks is appended to it, a missing section is appended with its keys. Every other line is kept as it is. The
/// settings come through the environment (`ENVIRON`, not `awk -v`, which
/// would eat the backslashes of the key names). Creates the
/// file from the image's defaults on a fresh volume, as the image's own
/// init does. Idempotent; POSIX sh and awk (busybox or GNU).
const SCRIPT: &str = r#"set -eu
conf=/config/qBittorrent/qBittorrent.conf
if [ -n "${QBT_WEBUI_PBKDF2:-}" ]; then
  tab=$(printf '\t'); nl='
'
  case "$QBT_WEBUI_PBKDF2$QBT_WEBUI_USERNAME" in
    *"$tab"*|*"$nl"*|*'"'*) echo "qbittorrent-config: the WebUI login Secret holds a tab, newline or quote" >&2; exit 1 ;;
  esac
  mode=set
  if [ "${QBT_WEBUI_KEEP:-}" = true ]; then mode=default; fi
  QBT_SETTINGS="$QBT_SETTINGS$(printf '%s\tPreferences\t%s\t%s\t\n%s\tPreferences\t%s\t%s\t' \
    "$mode" 'WebUI\Username' "$QBT_WEBUI_USERNAME" \
    "$mode" 'WebUI\Password_PBKDF2' "\"@ByteArray($QBT_WEBUI_PBKDF2)\"")"
  export QBT_SETTINGS
fi
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
    if (sec[k] == s && !(k in done) && mode[k] !~ /^legacy/) { print name[k] "=" want[k]; done[k] = 1 }
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
      if (mode[k] == "set" || mode[k] == "legacy" || v == "" || v == old[k]) { print name[k] "=" want[k] } else { print }
      next
    }
  }
  print
}
END {
  flush(cur)
  for (j = 1; j <= m; j++) {
    k = order[j]; s = sec[k]
    if (!(s in seen) && mode[k] !~ /^legacy/) { print ""; print "[" s "]"; seen[s] = 1; flush(s) }
  }
}' "$conf" > "$conf.new"
mv "$conf.new" "$conf"
"#;

/// The init container, with the app's image and config mount; `None` when
/// the app container mounts no `/config`.
pub(super) fn config_init(
    pod: &PodSpec,
    app: &App,
    localhost_auth: bool,
    webui_secret: &str,
) -> Option<Container> {
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
        env: Some(vec![
            EnvVar {
                name: "QBT_SETTINGS".into(),
                value: Some(settings_env(localhost_auth)),
                value_from: None,
            },
            // Not optional: the pod waits until the operator has hashed the password.
            secret_env("QBT_WEBUI_USERNAME", webui_secret, "username", false),
            secret_env("QBT_WEBUI_PBKDF2", webui_secret, PBKDF2_KEY, false),
            secret_env("QBT_WEBUI_KEEP", webui_secret, KEEP_KEY, true),
        ]),
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

fn secret_env(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(optional),
            }),
            ..Default::default()
        }),
    }
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
