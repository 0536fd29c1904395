//! The last stage: write the status computed by [`super::status`] and
//! publish its events.

use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::warn;

use super::status::{Note, Report};
use super::{Context, Error, FIELD_MANAGER};

/// Publishes the report's events, then writes its status when it changed.
pub async fn send<K, S>(ctx: &Context, obj: &K, report: &Report<S>) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize,
{
    for note in &report.events {
        publish_note(ctx, obj, note).await;
    }
    if report.changed {
        write(ctx, obj, &report.status).await?;
    }
    Ok(())
}

/// Publishes `note` about `obj`.
pub async fn publish_note<K: Resource<DynamicType = ()>>(ctx: &Context, obj: &K, note: &Note) {
    let type_ = if note.warning {
        EventType::Warning
    } else {
        EventType::Normal
    };
    publish_as(
        ctx,
        obj,
        type_,
        &note.reason,
        &note.action,
        note.message.clone(),
    )
    .await
}

/// Publishes an event about `obj`; failures are logged, never fatal.
pub async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    publish_as(ctx, obj, type_, reason, "Reconcile", note).await
}

/// Like [`publish`] with an explicit action. The recorder folds events with
/// the same type, reason and action into one series that keeps the first
/// note, so distinct situations need distinct actions.
pub async fn publish_as<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
        warn!("cannot publish event: {e}");
    }
}

/// Writes `status` to `obj`'s status subresource with server-side apply
/// under the operator's field manager.
pub async fn write<K>(ctx: &Context, obj: &K, status: &impl Serialize) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingMetadata("name"))?;
    let ns = obj
        .meta()
        .namespace
        .clone()
        .ok_or(Error::MissingMetadata("namespace"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::Status {
        what: format!("{}/{name}", K::kind(&())),
        source,
    })?;
    ctx.metrics.writes(1);
    Ok(())
}
