//! The VpnGateway controller: validates the gateway and its Secret and
//! reports consumers, whether their tunnels are up (`TunnelReady`, from the
//! consumer pods' gluetun readiness in the watch cache) and port
//! forwarding. It writes only status: the sidecars are rendered by the
//! MediaStack controller.
//!
//! Deleting a gateway that is in use is allowed; its consumers fail closed
//! (scaled to 0 with the sidecar kept in the pod template) until it is back.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;

use super::resolve::cluster_subnets;
use super::status::{self, GatewayInput, Stall};
use super::{Context, Error, report};
use crate::api::VpnGateway;
use crate::api::condition::{ConditionType, Reason};
use crate::render::vpn;

/// Reconciles one VpnGateway: resolve its Secret, the cluster's ranges and
/// its consumers -> validate (pure) -> status (pure) -> write.
#[tracing::instrument(
    name = "reconcile",
    skip_all,
    fields(kind = "VpnGateway", namespace = %gw.namespace().unwrap_or_default(), name = %gw.name_any())
)]
pub async fn reconcile(gw: Arc<VpnGateway>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_timer("VpnGateway");
    ctx.cache.wait_ready().await;
    let ns = gw.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let name = gw.name_any();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let secret_name = &gw.spec.credentials_secret_ref.name;
    let secret = secrets
        .get_opt(secret_name)
        .await
        .map_err(|source| Error::Read {
            what: format!("Secret/{secret_name}"),
            source,
        })?;
    let cluster = cluster_subnets(&ctx);
    let invalid = vpn::validate(&gw, secret.as_ref())
        .and_then(|()| vpn::check_cluster_subnets(&gw, secret.as_ref(), &cluster))
        .err()
        .map(|inv| Stall::new(validation_reason(inv.reason), inv.message));

    let mut consumers: Vec<String> = ctx
        .cache
        .stacks_in(&ns)
        .iter()
        .flat_map(|s| {
            let stack = s.name_any();
            s.spec
                .apps
                .enabled()
                .filter(|(_, a)| a.vpn.as_ref().is_some_and(|v| v.gateway_ref == name))
                .map(move |(app, _)| format!("{stack}/{}", app.name))
        })
        .collect();
    consumers.sort();

    let pods: Vec<Arc<Pod>> = ctx
        .cache
        .consumer_pods
        .state()
        .into_iter()
        .filter(|p| {
            p.namespace().as_deref() == Some(ns.as_str())
                && p.metadata.deletion_timestamp.is_none()
                && p.annotations().get(vpn::GATEWAY_ANNOTATION) == Some(&name)
        })
        .collect();
    let tunnel = tunnel_ready(&pods);

    let report = status::vpngateway(&GatewayInput {
        gateway: &gw,
        invalid,
        consumers,
        tunnel,
        resync: ctx.resync,
    });
    report::send(&ctx, gw.as_ref(), &report).await?;
    Ok(Action::requeue(report.requeue))
}

/// The [`Reason`] of a `render::vpn::reason` constant (each has a variant:
/// see the test in `api::condition`).
fn validation_reason(reason: &str) -> Reason {
    Reason::parse(reason).unwrap_or(Reason::SecretKeyInvalid)
}

/// `TunnelReady`: true when there is at least one consumer pod and gluetun
/// is ready (its health check passes: the tunnel works) in every one of
/// them. Names the pods whose tunnel is down; never reads a Secret.
pub fn tunnel_ready(pods: &[Arc<Pod>]) -> status::Cond {
    let t = ConditionType::TunnelReady;
    if pods.is_empty() {
        return status::Cond::new(
            t,
            false,
            Reason::NoConsumerPods,
            "No consumer pod is running, so no tunnel is up (a blocked consumer is held at 0 replicas)",
        );
    }
    let mut down: Vec<String> = pods
        .iter()
        .filter(|p| !gluetun_ready(p))
        .map(|p| p.name_any())
        .collect();
    down.sort();
    if down.is_empty() {
        status::Cond::new(
            t,
            true,
            Reason::Connected,
            format!(
                "gluetun reports the tunnel healthy in {} consumer pod(s)",
                pods.len()
            ),
        )
    } else {
        status::Cond::new(
            t,
            false,
            Reason::NotConnected,
            format!(
                "gluetun's health check fails in {} of {} consumer pod(s) ({}): the tunnel is not up; \
                 check the credentials and `kubectl logs <pod> -c {}`",
                down.len(),
                pods.len(),
                down.join(", "),
                vpn::CONTAINER_NAME
            ),
        )
    }
}

/// Whether the pod's gluetun sidecar (a native sidecar: an init container
/// status) is ready.
fn gluetun_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.init_container_statuses.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.name == vpn::CONTAINER_NAME && c.ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, gluetun: Option<bool>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                init_container_statuses: gluetun.map(|ready| {
                    vec![ContainerStatus {
                        name: "gluetun".into(),
                        ready,
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn tunnel_ready_needs_a_ready_gluetun_in_every_consumer_pod() {
        let none = tunnel_ready(&[]);
        assert!(!none.status);
        assert_eq!(none.reason, Reason::NoConsumerPods);

        let up = tunnel_ready(&[pod("a", Some(true)), pod("b", Some(true))]);
        assert!(up.status, "{up:?}");
        assert_eq!(up.reason, Reason::Connected);

        let down = tunnel_ready(&[pod("a", Some(true)), pod("b", Some(false)), pod("c", None)]);
        assert!(!down.status);
        assert_eq!(down.reason, Reason::NotConnected);
        assert!(down.message.contains("2 of 3"), "{}", down.message);
        assert!(down.message.contains("b, c"), "{}", down.message);
    }
}
