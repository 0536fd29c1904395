//! Status conditions following the kstatus conventions.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{Context, Error, FIELD_MANAGER};

/// A condition to set, without its timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Cond {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The kstatus trio for a resource that is either done, in progress or stuck.
pub fn kstatus(
    ready: bool,
    stalled: Option<(&str, &str)>,
    progressing: Option<(&str, &str)>,
) -> Vec<Cond> {
    let mut out = Vec::new();
    match (stalled, progressing) {
        (Some((reason, msg)), _) => {
            out.push(Cond::new("Ready", false, reason, msg));
            out.push(Cond::new("Stalled", true, reason, msg));
            out.push(Cond::new("Reconciling", false, reason, msg));
        }
        (None, Some((reason, msg))) if !ready => {
            out.push(Cond::new("Ready", false, reason, msg));
            out.push(Cond::new("Stalled", false, "Progressing", ""));
            out.push(Cond::new("Reconciling", true, reason, msg));
        }
        _ => {
            out.push(Cond::new(
                "Ready",
                true,
                "Ready",
                "All resources are applied and ready",
            ));
            out.push(Cond::new("Stalled", false, "Ready", ""));
            out.push(Cond::new("Reconciling", false, "Ready", ""));
        }
    }
    out
}

/// Merges `wanted` into `existing`: `lastTransitionTime` is kept unless the
/// status flips; every condition gets `observedGeneration`.
pub fn merge(existing: &[Condition], wanted: &[Cond], generation: Option<i64>) -> Vec<Condition> {
    let now = Time(Timestamp::now());
    wanted
        .iter()
        .map(|w| {
            let status = if w.status { "True" } else { "False" }.to_string();
            let old = existing.iter().find(|c| c.type_ == w.type_);
            let last_transition_time = match old {
                Some(o) if o.status == status => o.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: w.type_.to_string(),
                status,
                reason: w.reason.clone(),
                message: w.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// True when the conditions differ in anything but timestamps.
pub fn same(a: &[Condition], b: &[Condition]) -> bool {
    let key = |c: &Condition| {
        (
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
            c.observed_generation,
        )
    };
    let mut ka: Vec<_> = a.iter().map(key).collect();
    let mut kb: Vec<_> = b.iter().map(key).collect();
    ka.sort();
    kb.sort();
    ka == kb
}

/// Whether `type_` was already `True` with `reason` (so a Warning event for
/// it was already published).
pub fn was_true(conditions: &[Condition], type_: &str, reason: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True" && c.reason == reason)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_is_kept_while_the_status_holds() {
        let first = merge(&[], &[Cond::new("Ready", false, "Waiting", "a")], Some(1));
        let mut old = first.clone();
        old[0].last_transition_time = Time(Timestamp::UNIX_EPOCH);
        let second = merge(&old, &[Cond::new("Ready", false, "Waiting", "b")], Some(2));
        assert_eq!(second[0].last_transition_time, Time(Timestamp::UNIX_EPOCH));
        assert_eq!(second[0].observed_generation, Some(2));
        let flipped = merge(&old, &[Cond::new("Ready", true, "Ready", "")], Some(2));
        assert_ne!(flipped[0].last_transition_time, Time(Timestamp::UNIX_EPOCH));
    }

    #[test]
    fn stalled_wins_over_progressing() {
        let c = kstatus(false, Some(("SecretNotFound", "x")), Some(("Waiting", "y")));
        assert!(c.iter().any(|c| c.type_ == "Stalled" && c.status));
        assert!(
            c.iter()
                .any(|c| c.type_ == "Ready" && !c.status && c.reason == "SecretNotFound")
        );
    }
}
