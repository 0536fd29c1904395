//! The data tree: an init container that lays out the data volume for the
//! stack identity before an app that mounts `/data` starts.
//!
//! The kubelet creates a `hostPath` data volume (`DirectoryOrCreate`) and the
//! `subPath` directories an app mounts as `root:root 0755`, and a fresh claim
//! is empty; the apps run as `identity.uid:gid` and could not write there.
//! The init container mounts the whole volume and makes sure each directory
//! of [`TREE`] exists, owned by `uid:gid` with mode `2775` (group-writable,
//! setgid so new entries keep the group). It only looks at those directories
//! themselves, never at anything below them, so existing files keep their
//! owner and mode, and when the tree is already right it changes nothing.
//!
//! It runs as root with only the capabilities it needs (`CHOWN`, `FOWNER`,
//! `DAC_OVERRIDE`), no privilege escalation, and uses the app's own image
//! (every image of the catalog that mounts data has a POSIX shell, `stat`,
//! `chown` and `chmod`), so no further image is pulled.

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ResourceRequirements, SecurityContext, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::storage::DATA_VOLUME;
use crate::api::mediastack::Identity;

/// Name of the init container.
pub const CONTAINER_NAME: &str = "data-tree";
/// Where the init container mounts the whole data volume.
pub const MOUNT_PATH: &str = "/data";
/// The documented layout of the data volume, parents first.
pub const TREE: &[&str] = &[
    "torrents",
    "torrents/tv",
    "torrents/movies",
    "media",
    "media/tv",
    "media/movies",
];
/// Mode of every directory of the tree: setgid, group-writable.
pub const MODE: &str = "2775";

/// The shell script the init container runs. For each directory: a symlink
/// is refused (it could point outside the volume); a missing directory is
/// created; owner and mode are set only when they differ.
pub fn script(identity: &Identity) -> String {
    let owner = format!("{}:{}", identity.uid, identity.gid);
    let dirs = TREE
        .iter()
        .map(|d| format!("{MOUNT_PATH}/{d}"))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "set -eu\n\
         for d in {dirs}; do\n\
         \x20 if [ -L \"$d\" ]; then echo \"data-tree: $d is a symlink, refusing to change it\" >&2; exit 1; fi\n\
         \x20 if [ ! -d \"$d\" ]; then mkdir \"$d\"; echo \"data-tree: created $d\"; fi\n\
         \x20 if [ \"$(stat -c %u:%g \"$d\")\" != {owner} ]; then chown {owner} \"$d\"; echo \"data-tree: $d owned by {owner}\"; fi\n\
         \x20 if [ \"$(stat -c %a \"$d\")\" != {MODE} ]; then chmod {MODE} \"$d\"; echo \"data-tree: $d mode {MODE}\"; fi\n\
         done\n"
    )
}

/// The init container for an app whose image is `image`.
pub fn init_container(image: &str, identity: &Identity) -> Container {
    let small = |cpu: &str, memory: &str| {
        [
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
        ]
        .into()
    };
    Container {
        name: CONTAINER_NAME.into(),
        image: Some(image.into()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["/bin/sh".into(), "-c".into(), script(identity)]),
        volume_mounts: Some(vec![VolumeMount {
            name: DATA_VOLUME.into(),
            mount_path: MOUNT_PATH.into(),
            ..Default::default()
        }]),
        resources: Some(ResourceRequirements {
            requests: Some(small("10m", "16Mi")),
            limits: Some(small("200m", "64Mi")),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_group: Some(0),
            run_as_non_root: Some(false),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: Some(vec!["CHOWN".into(), "DAC_OVERRIDE".into(), "FOWNER".into()]),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;
    use std::process::Command;

    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(std::path::PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir()
                .join(format!("mediastack-datatree-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("temp dir");
            Self(p)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn identity() -> Identity {
        Identity {
            uid: 1500,
            gid: 1600,
            umask: "002".into(),
        }
    }

    #[test]
    fn runs_as_root_with_only_chown_fowner_dac_override() {
        let c = init_container("img:1", &identity());
        let sc = c.security_context.expect("security context");
        assert_eq!(sc.run_as_user, Some(0));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        let caps = sc.capabilities.expect("capabilities");
        assert_eq!(caps.drop, Some(vec!["ALL".to_string()]));
        let mut add = caps.add.expect("added capabilities");
        add.sort();
        assert_eq!(add, ["CHOWN", "DAC_OVERRIDE", "FOWNER"]);
        let mounts = c.volume_mounts.expect("mounts");
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].name, DATA_VOLUME);
        assert_eq!(mounts[0].mount_path, "/data");
        assert_eq!(mounts[0].sub_path, None, "the whole volume");
        assert_ne!(mounts[0].read_only, Some(true));
    }

    #[test]
    fn script_names_every_directory_the_api_doc_promises() {
        let s = script(&identity());
        for d in [
            "/data/torrents/tv",
            "/data/torrents/movies",
            "/data/media/tv",
            "/data/media/movies",
        ] {
            assert!(s.contains(d), "{d} in {s}");
        }
        assert!(s.contains("chown 1500:1600"), "{s}");
        assert!(!s.contains("-R"), "never recursive: {s}");
    }

    /// Runs the script against a real directory, with `/data` rewritten to
    /// it, as the current user (owner = the current uid:gid, so no root is
    /// needed to check what it does).
    fn run(dir: &Path, identity: &Identity) -> std::process::Output {
        let s = script(identity).replace("/data/", &format!("{}/", dir.display()));
        Command::new("/bin/sh")
            .arg("-c")
            .arg(s)
            .output()
            .expect("run /bin/sh")
    }

    /// The current user, read from `/proc/self` (owned by the process's
    /// effective uid and gid).
    fn me() -> Identity {
        let m = std::fs::metadata("/proc/self").expect("/proc/self");
        Identity {
            uid: i64::from(m.uid()),
            gid: i64::from(m.gid()),
            umask: "002".into(),
        }
    }

    #[test]
    fn script_creates_the_tree_and_leaves_existing_files_alone() {
        let tmp = TempDir::new("tree");
        let root = tmp.path();
        // A pre-existing top directory with the kubelet's mode and a file
        // below it with its own mode.
        std::fs::create_dir(root.join("media")).expect("mkdir");
        std::fs::set_permissions(root.join("media"), PermissionsExt::from_mode(0o755))
            .expect("chmod");
        std::fs::write(root.join("media/keep.mkv"), b"x").expect("write");
        std::fs::set_permissions(
            root.join("media/keep.mkv"),
            PermissionsExt::from_mode(0o600),
        )
        .expect("chmod");

        let id = me();
        let out = run(root, &id);
        assert!(out.status.success(), "{out:?}");
        for d in TREE {
            let m = std::fs::symlink_metadata(root.join(d)).expect(d);
            assert!(m.is_dir(), "{d}");
            assert_eq!(m.mode() & 0o7777, 0o2775, "{d}");
            assert_eq!(i64::from(m.uid()), id.uid, "{d}");
            assert_eq!(i64::from(m.gid()), id.gid, "{d}");
        }
        let f = std::fs::metadata(root.join("media/keep.mkv")).expect("file");
        assert_eq!(
            f.mode() & 0o7777,
            0o600,
            "a file below a top dir is not touched"
        );

        // Second run: nothing to do, nothing printed.
        let again = run(root, &id);
        assert!(again.status.success(), "{again:?}");
        assert!(again.stdout.is_empty(), "{again:?}");
    }

    #[test]
    fn script_refuses_a_symlinked_directory() {
        let tmp = TempDir::new("link");
        let outside = TempDir::new("outside");
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("torrents")).expect("ln");
        let out = run(tmp.path(), &me());
        assert!(!out.status.success(), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("symlink"),
            "{out:?}"
        );
        let m = std::fs::metadata(outside.path()).expect("outside");
        assert_ne!(
            m.mode() & 0o7777,
            0o2775,
            "the symlink's target is not changed"
        );
    }
}
