//! Server-side apply of children, pruning, and create-once Secrets.
//!
//! A child is written only when the live object differs from the desired
//! one, so a resync with nothing to do sends no write request.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams,
    PostParams,
};
use serde_json::Value;

use tracing::debug;

use super::cache::{Cache, has_labels};
use super::{Error, FIELD_MANAGER};
use crate::render::{Child, GeneratedSecret, child_id};

/// Label that protects a child from pruning (config and data claims: user data).
pub const KEEP_LABEL: &str = "mediastack.io/keep";

fn api_for(client: &Client, ns: &str, ar: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, ar)
}

/// Applies `child` with server-side apply unless the live object already
/// matches. The live object comes from `cache` (a GET only when no store
/// watches its kind). Returns whether a write was made.
pub async fn apply(client: &Client, cache: &Cache, child: &Child) -> Result<bool, Error> {
    let name = child
        .object
        .metadata
        .name
        .as_deref()
        .ok_or(Error::MissingMetadata("name"))?;
    let ns = child.object.metadata.namespace.as_deref();
    // Cluster-scoped children (no namespace) use a cluster-wide API.
    let api = match ns {
        Some(ns) => api_for(client, ns, &child.api),
        None => Api::all_with(client.clone(), &child.api),
    };
    // A watched kind's store has listed before any reconcile runs: a child
    // it lacks is created (server-side apply creates or takes over alike;
    // an object of the same name outside the label selection differs from
    // the desired one at least in its labels, so it would be written
    // anyway). Only a kind no store watches yet is read.
    let live = match cache.child(&child.api, ns, name) {
        Some(stored) => stored,
        None => api
            .get_opt(name)
            .await
            .map_err(|source| Error::Read {
                what: child.key(),
                source,
            })?
            .map(std::sync::Arc::new),
    };
    let desired = serde_json::to_value(&child.object)
        .map_err(|e| Error::Render(crate::render::RenderError::Serialize(e)))?;
    let reason = match &live {
        None => "created".to_string(),
        Some(live) => {
            let owned = owned_fields(live);
            let live = serde_json::to_value(live.as_ref())
                .map_err(|e| Error::Render(crate::render::RenderError::Serialize(e)))?;
            // Skip only when nothing would change: every desired value is
            // live, and every field the operator applied before is still
            // desired (a field dropped from the render, e.g. a route's
            // `auth`, is removed by the next apply).
            let changed = changed_fields(&desired, &live, "");
            let removed = owned
                .as_ref()
                .map(|o| removed_fields(o, &desired, ""))
                .unwrap_or_default();
            if changed.is_empty() && removed.is_empty() {
                return Ok(false);
            }
            format!("changed fields {changed:?}, removed fields {removed:?}")
        }
    };
    debug!(child = %child.id(), %reason, "applying");
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let applied = api
        .patch(name, &pp, &Patch::Apply(&desired))
        .await
        .map_err(|source| Error::Apply {
            what: child.key(),
            source,
        })?;
    cache.applied(&child.api, applied);
    Ok(true)
}

/// The paths of `desired` whose value `live` does not have (see [`is_subset`]).
fn changed_fields(desired: &Value, live: &Value, at: &str) -> Vec<String> {
    if is_subset(desired, live) {
        return Vec::new();
    }
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d
            .iter()
            .flat_map(|(k, dv)| {
                changed_fields(dv, l.get(k).unwrap_or(&Value::Null), &format!("{at}.{k}"))
            })
            .collect(),
        _ => vec![if at.is_empty() {
            ".".into()
        } else {
            at.to_string()
        }],
    }
}

/// The paths the operator applied before (FieldsV1 `owned`) that `desired`
/// no longer sets (see [`still_desired`]).
fn removed_fields(owned: &Value, desired: &Value, at: &str) -> Vec<String> {
    let Value::Object(owned) = owned else {
        return Vec::new();
    };
    owned
        .iter()
        .flat_map(|(key, sub)| match key.strip_prefix("f:") {
            Some(name) => match desired.get(name) {
                None | Some(Value::Null) => vec![format!("{at}.{name}")],
                Some(d @ Value::Object(_)) => removed_fields(sub, d, &format!("{at}.{name}")),
                Some(_) => Vec::new(),
            },
            None => Vec::new(),
        })
        .collect()
}

/// Whether every field set in `desired` has the same value in `live`.
/// Fields the API server adds (defaults, status, managed fields) are ignored;
/// empty values in `desired` match absent ones (the server drops them).
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(k, dv)| match l.get(k) {
            Some(lv) => is_subset(dv, lv),
            None => is_empty(dv),
        }),
        (Value::Object(d), Value::Null) => d.values().all(is_empty),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| is_subset(dv, lv))
        }
        (Value::Array(d), Value::Null) => d.is_empty(),
        (Value::Number(d), Value::Number(l)) => d.as_f64() == l.as_f64(),
        (Value::Null, _) => true,
        (d, l) => d == l,
    }
}

/// The fields the operator's field manager applied to `obj` (FieldsV1).
fn owned_fields(obj: &DynamicObject) -> Option<Value> {
    obj.metadata
        .managed_fields
        .as_ref()?
        .iter()
        .find(|m| {
            m.manager.as_deref() == Some(FIELD_MANAGER)
                && m.operation.as_deref() == Some("Apply")
                && m.subresource.is_none()
        })
        .and_then(|m| m.fields_v1.as_ref())
        .map(|f| f.0.clone())
}

/// Whether every map field in `owned` (FieldsV1: `f:<name>` keys) is set in
/// `desired`. List items (`k:`, `v:`, `i:` keys) are not followed: lists
/// are compared whole by [`is_subset`].
pub fn still_desired(owned: &Value, desired: &Value) -> bool {
    let Value::Object(owned) = owned else {
        return true;
    };
    owned.iter().all(|(key, sub)| match key.strip_prefix("f:") {
        Some(name) => match desired.get(name) {
            None | Some(Value::Null) => false,
            Some(d @ Value::Object(_)) => still_desired(sub, d),
            Some(_) => true,
        },
        None => true,
    })
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.values().all(is_empty),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Deletes children of `kinds` matching `selector` and controlled by
/// `owner_uid` that are not in `keep` ([`crate::render::Child::id`] keys)
/// and do not carry the keep label; from the stores (a LIST only for a kind
/// no store watches). Returns the deleted keys.
pub async fn prune(
    client: &Client,
    cache: &Cache,
    ns: &str,
    selector: &[(&str, &str)],
    kinds: &[ApiResource],
    keep: &BTreeSet<String>,
    owner_uid: &str,
) -> Result<Vec<String>, Error> {
    let mut deleted = Vec::new();
    for ar in kinds {
        let api = api_for(client, ns, ar);
        deleted.extend(
            delete_unwanted(cache, &api, ar, Some(ns), selector, keep, |meta| {
                let owned = meta
                    .owner_references
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|r| r.uid == owner_uid));
                let protected = meta
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(KEEP_LABEL))
                    .is_some_and(|v| v == "true");
                owned && !protected
            })
            .await?,
        );
    }
    Ok(deleted)
}

/// Deletes cluster-scoped children of `kinds` matching `selector` (they
/// cannot have a namespaced owner) that are not in `keep`.
pub async fn prune_cluster(
    client: &Client,
    cache: &Cache,
    selector: &[(&str, &str)],
    kinds: &[ApiResource],
    keep: &BTreeSet<String>,
) -> Result<Vec<String>, Error> {
    let mut deleted = Vec::new();
    for ar in kinds {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
        deleted.extend(delete_unwanted(cache, &api, ar, None, selector, keep, |_| true).await?);
    }
    Ok(deleted)
}

/// `k=v,k=v` of `labels`.
pub fn selector_string(labels: &[(&str, &str)]) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Metadata of the children of kind `ar` in `ns` (all namespaces when
/// `None`) matching `selector`: from the watch store, or one metadata LIST
/// when the kind is not watched.
pub async fn child_metas(
    cache: &Cache,
    api: &Api<DynamicObject>,
    ar: &ApiResource,
    ns: Option<&str>,
    selector: &[(&str, &str)],
) -> Result<Vec<ObjectMeta>, Error> {
    Ok(match cache.children_of(ar, ns) {
        Some(objs) => objs
            .iter()
            .filter(|o| has_labels(o, selector))
            .map(|o| o.metadata.clone())
            .collect(),
        None => api
            .list_metadata(&ListParams::default().labels(&selector_string(selector)))
            .await
            .map_err(|source| Error::Read {
                what: format!("{} list", ar.kind),
                source,
            })?
            .items
            .into_iter()
            .map(|o| o.metadata)
            .collect(),
    })
}

/// Deletes the objects of `api` matching `selector` that are not in `keep`,
/// not already being deleted, and that `prunable` accepts.
async fn delete_unwanted(
    cache: &Cache,
    api: &Api<DynamicObject>,
    ar: &ApiResource,
    ns: Option<&str>,
    selector: &[(&str, &str)],
    keep: &BTreeSet<String>,
    prunable: impl Fn(&ObjectMeta) -> bool,
) -> Result<Vec<String>, Error> {
    let metas = child_metas(cache, api, ar, ns, selector).await?;
    let mut deleted = Vec::new();
    for meta in metas {
        let Some(name) = meta.name.as_deref() else {
            continue;
        };
        if keep.contains(&child_id(ar, name))
            || meta.deletion_timestamp.is_some()
            || !prunable(&meta)
        {
            continue;
        }
        let key = format!("{}/{}", ar.kind, name);
        debug!(child = %child_id(ar, name), "pruning: no longer rendered");
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => deleted.push(key),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => return Err(Error::Delete { what: key, source }),
        }
        cache.deleted(ar, ns, name);
    }
    Ok(deleted)
}

/// Creates `secret` with fresh random values if it does not exist, and adds
/// random keys it lacks (an app enabled later). Existing values are never
/// changed: they are in use, and GitOps-stable. Returns whether it wrote.
pub async fn ensure_secret(
    client: &Client,
    ns: &str,
    secret: &GeneratedSecret,
    owner: &OwnerReference,
) -> Result<bool, Error> {
    ensure_secret_of_type(client, ns, secret, owner, "Opaque").await
}

/// [`ensure_secret`] for a Secret of `type_` (e.g. `kubernetes.io/basic-auth`).
pub async fn ensure_secret_of_type(
    client: &Client,
    ns: &str,
    secret: &GeneratedSecret,
    owner: &OwnerReference,
    type_: &str,
) -> Result<bool, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let existing = api
        .get_opt(&secret.name)
        .await
        .map_err(|source| Error::Read {
            what: format!("Secret/{}", secret.name),
            source,
        })?;
    if let Some(existing) = existing {
        // Keys of apps enabled later are added; existing values never change.
        let missing: BTreeMap<String, ByteString> = secret
            .random_keys
            .iter()
            .filter(|k| !existing.data.as_ref().is_some_and(|d| d.contains_key(*k)))
            .map(|k| (k.clone(), ByteString(random_hex().into_bytes())))
            .collect();
        if missing.is_empty() {
            return Ok(false);
        }
        // The resourceVersion makes a concurrent writer fail (409, retried)
        // instead of replacing a key that was just added.
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": existing.metadata.resource_version},
            "data": missing,
        });
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        api.patch(&secret.name, &pp, &Patch::Merge(&patch))
            .await
            .map_err(|source| Error::Apply {
                what: format!("Secret/{}", secret.name),
                source,
            })?;
        return Ok(true);
    }
    let values: BTreeMap<String, String> = secret
        .random_keys
        .iter()
        .map(|k| (k.clone(), random_hex()))
        .collect();
    let mut data: BTreeMap<String, ByteString> = values
        .iter()
        .map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes())))
        .collect();
    for (k, template) in &secret.templated {
        let mut text = template.clone();
        for (rk, rv) in &values {
            text = text.replace(&format!("{{{{{rk}}}}}"), rv);
        }
        data.insert(k.clone(), ByteString(text.into_bytes()));
    }
    let obj = Secret {
        metadata: ObjectMeta {
            name: Some(secret.name.clone()),
            namespace: Some(ns.to_string()),
            labels: Some(secret.labels.clone()),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        data: Some(data),
        type_: Some(type_.into()),
        ..Default::default()
    };
    match api
        .create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &obj,
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(source) => Err(Error::Apply {
            what: format!("Secret/{}", secret.name),
            source,
        }),
    }
}

/// 32 hex characters from the OS random generator.
fn random_hex() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_defaults_do_not_count_as_drift() {
        let desired = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a", "image": "x:1"}]}}}});
        let live = json!({"spec": {"replicas": 1, "progressDeadlineSeconds": 600,
            "template": {"spec": {"containers": [{"name": "a", "image": "x:1", "imagePullPolicy": "IfNotPresent"}]}}}});
        assert!(is_subset(&desired, &live));
    }

    #[test]
    fn a_hand_edited_image_is_drift() {
        let desired = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x:1"}]}}}});
        let live = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x:2"}]}}}});
        assert!(!is_subset(&desired, &live));
    }

    #[test]
    fn an_extra_list_item_is_drift_and_empty_values_match_absent_ones() {
        assert!(!is_subset(&json!({"a": [1]}), &json!({"a": [1, 2]})));
        assert!(is_subset(
            &json!({"a": {}, "b": [], "c": {"d": {}}}),
            &json!({})
        ));
        assert!(!is_subset(&json!({"a": {"b": 1}}), &json!({})));
    }

    #[test]
    fn a_field_the_operator_applied_and_no_longer_renders_is_not_desired() {
        let owned = json!({"f:metadata": {"f:labels": {"f:a": {}}},
            "f:spec": {"f:host": {}, "f:auth": {"f:basicAuthSecretRef": {"f:name": {}}},
                       "f:ports": {"k:{\"port\":80}": {".": {}, "f:port": {}}}}});
        let desired = json!({"metadata": {"labels": {"a": "x"}},
            "spec": {"host": "h", "auth": {"basicAuthSecretRef": {"name": "s"}}, "ports": [{"port": 80}]}});
        assert!(still_desired(&owned, &desired));
        // `auth` dropped from the render: the next apply must remove it.
        let dropped = json!({"metadata": {"labels": {"a": "x"}},
            "spec": {"host": "h", "ports": [{"port": 80}]}});
        assert!(!still_desired(&owned, &dropped));
        // A nested field dropped.
        let nested = json!({"metadata": {"labels": {"a": "x"}},
            "spec": {"host": "h", "auth": {}, "ports": [{"port": 80}]}});
        assert!(!still_desired(&owned, &nested));
        // Empty values the operator sends stay desired (no endless re-apply).
        assert!(still_desired(
            &json!({"f:spec": {"f:ports": {}, "f:flag": {}}}),
            &json!({"spec": {"ports": [], "flag": false}})
        ));
    }

    #[test]
    fn random_values_are_distinct_hex() {
        let (a, b) = (random_hex(), random_hex());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
