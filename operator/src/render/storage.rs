//! The shared data volume and per-app config claims.
//!
//! Downloads and the library live on ONE filesystem (`torrents/...` and
//! `media/...`) that every pod mounts once, so an import is a hardlink, not a
//! copy. Each app with config directories gets its own claim
//! `<stack>-<app>-config`; its directories are sub-paths of that claim.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::meta::Parent;
use super::{Child, RenderError};
use crate::api::mediastack::{AppConfig, DataStorage, MediaStackSpec};
use crate::catalog::{App, DataMount};

/// Label that protects a claim from pruning: data and config are user data.
/// (Same value as `reconcile::apply::KEEP_LABEL`, which reads it.)
pub const KEEP_LABEL: &str = "mediastack.io/keep";
/// Name of the pod volume of the shared data filesystem.
pub const DATA_VOLUME: &str = "data";
/// Name of the pod volume of the app's config claim.
pub const CONFIG_VOLUME: &str = "config";

/// Access mode of the claims the operator creates. ReadWriteOnce binds a
/// volume to one *node*, not one pod: every app pod on that node can mount
/// it at once. The stack targets single-node clusters; on several nodes, give
/// `storage.data.claimName` of a ReadWriteMany claim instead of `size`.
const ACCESS_MODE: &str = "ReadWriteOnce";

/// Name of the data claim the operator creates when `storage.data.size` is set.
pub fn data_claim_name(parent: &Parent) -> String {
    parent.child_name("data")
}

/// Name of the config claim of `app`: `<stack>-<app>-config`.
pub fn config_claim_name(parent: &Parent, app: &App) -> String {
    parent.child_name(&format!("{}-config", app.name))
}

/// Stack-wide storage objects: the data claim when `storage.data.size` is set.
///
/// The data claim carries the keep label and NO owner reference: the API
/// promises that the operator never deletes it, not even when the MediaStack
/// is deleted (it holds the media library; re-creating a stack under the
/// same name adopts it again).
pub fn shared(parent: &Parent, spec: &MediaStackSpec) -> Result<Vec<Child>, RenderError> {
    let data = &spec.storage.data;
    let Some(size) = &data.size else {
        return Ok(Vec::new());
    };
    let mut meta = parent.meta(&data_claim_name(parent), "data", "storage");
    meta.owner_references = None;
    keep(&mut meta.labels);
    let pvc = PersistentVolumeClaim {
        metadata: meta,
        spec: Some(claim_spec(size, data.storage_class_name.as_ref())),
        ..Default::default()
    };
    Ok(vec![Child::typed(&pvc)?])
}

/// The pod volume `data`: the node directory, the user's claim, or the claim
/// the operator creates. `storage.data` must name exactly one source (the
/// CRD enforces it; this guards against objects that bypassed validation).
pub fn data_volume(parent: &Parent, data: &DataStorage) -> Result<Volume, RenderError> {
    let claim = |name: String| PersistentVolumeClaimVolumeSource {
        claim_name: name,
        read_only: None,
    };
    let mut volume = Volume {
        name: DATA_VOLUME.into(),
        ..Default::default()
    };
    match (&data.host_path, &data.claim_name, &data.size) {
        (Some(path), None, None) => {
            volume.host_path = Some(HostPathVolumeSource {
                path: path.clone(),
                type_: Some("DirectoryOrCreate".into()),
            });
        }
        (None, Some(name), None) => volume.persistent_volume_claim = Some(claim(name.clone())),
        (None, None, Some(_)) => {
            volume.persistent_volume_claim = Some(claim(data_claim_name(parent)))
        }
        _ => {
            return Err(RenderError::Invalid(
                "storage.data needs exactly one of hostPath, claimName or size".into(),
            ));
        }
    }
    Ok(volume)
}

/// The one mount of the data volume: a sub-tree (or the whole tree) at the
/// path the app expects.
pub fn data_mount(mount: &DataMount) -> VolumeMount {
    VolumeMount {
        name: DATA_VOLUME.into(),
        mount_path: mount.mount_path.into(),
        sub_path: (!mount.sub_path.is_empty()).then(|| mount.sub_path.into()),
        read_only: mount.read_only.then_some(true),
        ..Default::default()
    }
}

/// The config claim of `app`, or `None` for apps without config directories.
///
/// Config is user data (each app's database). By default the claim carries
/// the keep label and NO owner reference, like the data claim: neither
/// disabling the app nor deleting the MediaStack (or its CRD) removes it, and
/// a stack re-created under the same name adopts it again (same claim, same
/// UID). Only `storage.config.deleteWithApp: true` makes it disposable: then
/// it is owned by the stack (garbage-collected with it) and unlabelled (pruned
/// when the app is disabled).
pub fn config_claim(
    parent: &Parent,
    spec: &MediaStackSpec,
    app: &App,
) -> Option<PersistentVolumeClaim> {
    if app.config.is_empty() || adopted_config(spec, app).is_some() {
        return None;
    }
    let config = &spec.storage.config;
    let mut meta = parent.meta(&config_claim_name(parent, app), app.name, "config");
    if !config.delete_with_app {
        meta.owner_references = None;
        keep(&mut meta.labels);
    }
    Some(PersistentVolumeClaim {
        metadata: meta,
        spec: Some(claim_spec(&config.size, config.storage_class_name.as_ref())),
        ..Default::default()
    })
}

/// Why the live claim `live` may not be adopted by the stack of `parent`:
/// it was not created by this operator for a stack of that name (another
/// stack's claim, or one the user made). `None` when it may be adopted.
pub fn claim_conflict(parent: &Parent, live: &PersistentVolumeClaim) -> Option<String> {
    let labels = live.metadata.labels.clone().unwrap_or_default();
    let name = live.metadata.name.clone().unwrap_or_default();
    let managed = labels
        .get("app.kubernetes.io/managed-by")
        .map(String::as_str)
        == Some(super::meta::MANAGER);
    match labels.get(super::meta::STACK_LABEL) {
        Some(owner) if managed && owner == &parent.name => None,
        Some(owner) if managed => Some(format!(
            "PersistentVolumeClaim {name} belongs to MediaStack {owner} (label {}); it is not adopted",
            super::meta::STACK_LABEL
        )),
        _ => Some(format!(
            "PersistentVolumeClaim {name} exists and was not created by mediastack-operator for MediaStack {}; it is not adopted (rename or delete it, or use another stack name)",
            parent.name
        )),
    }
}

/// The config directory the user adopts for `app` (`apps.<app>.config`),
/// if any.
pub fn adopted_config<'a>(spec: &'a MediaStackSpec, app: &App) -> Option<&'a AppConfig> {
    if app.config.is_empty() {
        return None;
    }
    spec.apps.get(app.name).and_then(|a| a.config.as_ref())
}

/// The pod volume of the app's config: the claim the operator creates, or
/// the user's adopted claim or host directory (`apps.<app>.config`), or
/// `None` for apps without config directories. An adopted host directory
/// must exist (`Directory`): a typo fails the pod instead of starting the
/// app on an empty config.
pub fn config_volume(
    parent: &Parent,
    spec: &MediaStackSpec,
    app: &App,
) -> Result<Option<Volume>, RenderError> {
    if app.config.is_empty() {
        return Ok(None);
    }
    let mut volume = Volume {
        name: CONFIG_VOLUME.into(),
        ..Default::default()
    };
    let claim = |claim_name: String| PersistentVolumeClaimVolumeSource {
        claim_name,
        read_only: None,
    };
    match adopted_config(spec, app) {
        None => volume.persistent_volume_claim = Some(claim(config_claim_name(parent, app))),
        Some(AppConfig {
            existing_claim: Some(name),
            host_path: None,
        }) => volume.persistent_volume_claim = Some(claim(name.clone())),
        Some(AppConfig {
            existing_claim: None,
            host_path: Some(path),
        }) => {
            volume.host_path = Some(HostPathVolumeSource {
                path: path.clone(),
                type_: Some("Directory".into()),
            })
        }
        Some(_) => {
            return Err(RenderError::Invalid(format!(
                "apps.{}.config needs exactly one of existingClaim or hostPath",
                app.name
            )));
        }
    }
    Ok(Some(volume))
}

/// The mounts of the app's config volume. The operator's claim holds one
/// sub-path per config directory; an adopted claim or directory IS the
/// app's (first) config directory, mounted whole, as a Compose bind mount
/// of `./sonarr:/config` was.
pub fn config_mounts(spec: &MediaStackSpec, app: &App) -> Vec<VolumeMount> {
    if adopted_config(spec, app).is_some() {
        return app
            .config
            .first()
            .map(|c| VolumeMount {
                name: CONFIG_VOLUME.into(),
                mount_path: c.mount_path.into(),
                ..Default::default()
            })
            .into_iter()
            .collect();
    }
    app.config
        .iter()
        .map(|c| VolumeMount {
            name: CONFIG_VOLUME.into(),
            mount_path: c.mount_path.into(),
            sub_path: Some(c.sub_path.into()),
            ..Default::default()
        })
        .collect()
}

fn keep(labels: &mut Option<BTreeMap<String, String>>) {
    labels
        .get_or_insert_with(BTreeMap::new)
        .insert(KEEP_LABEL.into(), "true".into());
}

fn claim_spec(size: &Quantity, storage_class: Option<&String>) -> PersistentVolumeClaimSpec {
    PersistentVolumeClaimSpec {
        access_modes: Some(vec![ACCESS_MODE.into()]),
        resources: Some(VolumeResourceRequirements {
            requests: Some(BTreeMap::from([("storage".to_string(), size.clone())])),
            limits: None,
        }),
        storage_class_name: storage_class.cloned(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{parent, stack};
    use super::*;
    use crate::catalog;
    use crate::render::meta::STACK_LABEL as STACK;

    fn with_data(data: DataStorage) -> MediaStackSpec {
        let mut spec = stack().spec;
        spec.storage.data = data;
        spec
    }

    fn sized() -> DataStorage {
        DataStorage {
            size: Some(Quantity("2Ti".into())),
            storage_class_name: Some("bulk".into()),
            ..Default::default()
        }
    }

    #[test]
    fn host_path_and_claim_name_create_no_data_claim() {
        assert!(shared(&parent(), &stack().spec).expect("render").is_empty());
        let by_claim = with_data(DataStorage {
            claim_name: Some("media-nfs".into()),
            ..Default::default()
        });
        assert!(shared(&parent(), &by_claim).expect("render").is_empty());
    }

    #[test]
    fn size_creates_a_kept_unowned_data_claim() {
        let children = shared(&parent(), &with_data(sized())).expect("render");
        assert_eq!(children.len(), 1);
        let pvc = &children[0];
        assert_eq!(pvc.key(), "PersistentVolumeClaim/home-data");
        let labels = pvc.object.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(KEEP_LABEL).map(String::as_str), Some("true"));
        // Deleting the MediaStack must not garbage-collect the media library.
        assert!(pvc.object.metadata.owner_references.is_none());
        let spec = &pvc.object.data["spec"];
        assert_eq!(spec["resources"]["requests"]["storage"], "2Ti");
        assert_eq!(spec["storageClassName"], "bulk");
        assert_eq!(spec["accessModes"][0], "ReadWriteOnce");
        insta::assert_snapshot!("data_claim", pvc.to_yaml());
    }

    #[test]
    fn data_volume_follows_the_chosen_source() {
        let p = parent();
        let host = data_volume(&p, &stack().spec.storage.data).expect("hostPath");
        let hp = host.host_path.expect("hostPath source");
        assert_eq!(hp.path, "/srv/data");
        assert_eq!(hp.type_.as_deref(), Some("DirectoryOrCreate"));

        let claim = DataStorage {
            claim_name: Some("media-nfs".into()),
            ..Default::default()
        };
        let vol = data_volume(&p, &claim).expect("claimName");
        assert_eq!(
            vol.persistent_volume_claim.map(|c| c.claim_name).as_deref(),
            Some("media-nfs")
        );

        let vol = data_volume(&p, &sized()).expect("size");
        assert_eq!(
            vol.persistent_volume_claim.map(|c| c.claim_name).as_deref(),
            Some("home-data")
        );
    }

    #[test]
    fn data_volume_without_exactly_one_source_is_invalid() {
        assert!(data_volume(&parent(), &DataStorage::default()).is_err());
        let both = DataStorage {
            host_path: Some("/srv/data".into()),
            claim_name: Some("x".into()),
            ..Default::default()
        };
        assert!(data_volume(&parent(), &both).is_err());
    }

    #[test]
    fn config_claims_are_kept_and_unowned_unless_delete_with_app() {
        let sonarr = catalog::app("sonarr").expect("sonarr");
        let mut spec = stack().spec;
        let kept = config_claim(&parent(), &spec, sonarr).expect("claim");
        assert_eq!(kept.metadata.name.as_deref(), Some("home-sonarr-config"));
        let labels = kept.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(KEEP_LABEL).map(String::as_str), Some("true"));
        assert_eq!(labels.get(STACK).map(String::as_str), Some("home"));
        // Deleting the MediaStack must not garbage-collect an app's database.
        assert!(kept.metadata.owner_references.is_none());

        spec.storage.config.delete_with_app = true;
        spec.storage.config.storage_class_name = Some("fast".into());
        let disposable = config_claim(&parent(), &spec, sonarr).expect("claim");
        let labels = disposable.metadata.labels.clone().unwrap_or_default();
        assert!(!labels.contains_key(KEEP_LABEL));
        // Opted in: pruned with the app, garbage-collected with the stack.
        assert_eq!(
            disposable.metadata.owner_references,
            Some(vec![parent().owner])
        );
        let pvc_spec = disposable.spec.expect("spec");
        assert_eq!(pvc_spec.storage_class_name.as_deref(), Some("fast"));
    }

    #[test]
    fn only_this_stacks_claims_are_adopted() {
        let sonarr = catalog::app("sonarr").expect("sonarr");
        let ours = config_claim(&parent(), &stack().spec, sonarr).expect("claim");
        assert_eq!(claim_conflict(&parent(), &ours), None);

        let mut other = ours.clone();
        other
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(STACK.into(), "cinema".into());
        let why = claim_conflict(&parent(), &other).expect("conflict");
        assert!(why.contains("belongs to MediaStack cinema"), "{why}");

        let mut users = ours;
        users.metadata.labels = None;
        let why = claim_conflict(&parent(), &users).expect("conflict");
        assert!(why.contains("not created by mediastack-operator"), "{why}");
    }

    #[test]
    fn adopted_config_replaces_the_operators_claim_and_is_mounted_whole() {
        let sonarr = catalog::app("sonarr").expect("sonarr");
        let mut spec = stack().spec;
        spec.apps.sonarr.as_mut().expect("sonarr").config = Some(AppConfig {
            existing_claim: Some("compose-sonarr".into()),
            host_path: None,
        });
        // No claim of ours: nothing the operator could ever prune or delete.
        assert!(config_claim(&parent(), &spec, sonarr).is_none());
        let vol = config_volume(&parent(), &spec, sonarr)
            .expect("render")
            .expect("volume");
        assert_eq!(
            vol.persistent_volume_claim.map(|c| c.claim_name).as_deref(),
            Some("compose-sonarr")
        );
        let mounts = config_mounts(&spec, sonarr);
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].mount_path, "/config");
        assert_eq!(mounts[0].sub_path, None);

        let seerr = catalog::app("jellyseerr").expect("jellyseerr");
        spec.apps.jellyseerr = Some(crate::api::mediastack::AppSpec {
            config: Some(AppConfig {
                existing_claim: None,
                host_path: Some("/srv/compose/jellyseerr".into()),
            }),
            ..Default::default()
        });
        assert!(config_claim(&parent(), &spec, seerr).is_none());
        let vol = config_volume(&parent(), &spec, seerr)
            .expect("render")
            .expect("volume");
        let hp = vol.host_path.expect("hostPath");
        assert_eq!(hp.path, "/srv/compose/jellyseerr");
        assert_eq!(hp.type_.as_deref(), Some("Directory"));
        assert_eq!(config_mounts(&spec, seerr)[0].mount_path, "/app/config");

        // Other apps keep the operator's claim with sub-paths.
        let radarr = catalog::app("radarr").expect("radarr");
        assert!(config_claim(&parent(), &spec, radarr).is_some());
        assert_eq!(
            config_mounts(&spec, radarr)[0].sub_path.as_deref(),
            Some("config")
        );

        spec.apps.sonarr.as_mut().expect("sonarr").config = Some(AppConfig::default());
        assert!(config_volume(&parent(), &spec, sonarr).is_err());
    }

    #[test]
    fn apps_without_config_dirs_have_no_config_claim() {
        for name in ["dozzle", "dashboard"] {
            let app = catalog::app(name).expect("known app");
            assert!(config_claim(&parent(), &stack().spec, app).is_none());
            assert!(
                config_volume(&parent(), &stack().spec, app)
                    .expect("render")
                    .is_none()
            );
        }
    }
}
