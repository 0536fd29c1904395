//! The VpnGateway controller: validates the gateway and its Secret and
//! reports consumers and port forwarding. It writes only status: the
//! sidecars are rendered by the MediaStack controller.
//!
//! Deleting a gateway that is in use is allowed; its consumers fail closed
//! (scaled to 0 with the sidecar kept in the pod template) until it is back.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::mediastack::publish;
use super::status;
use super::{Context, Error};
use crate::api::{MediaStack, VpnGateway, VpnGatewayStatus};
use crate::render::vpn;

/// Reconciles one VpnGateway.
pub async fn reconcile(gw: Arc<VpnGateway>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_timer("VpnGateway");
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
    let cluster = super::mediastack::cluster_subnets(&ctx).await?;
    let verdict = vpn::validate(&gw, secret.as_ref())
        .and_then(|()| vpn::check_cluster_subnets(&gw, secret.as_ref(), &cluster));

    let stacks: Api<MediaStack> = Api::namespaced(ctx.client.clone(), &ns);
    let list = stacks
        .list(&ListParams::default())
        .await
        .map_err(|source| Error::Read {
            what: "MediaStack list".into(),
            source,
        })?;
    let mut consumers: Vec<String> = list
        .items
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

    let port_forwarding = if !gw.spec.port_forwarding.enabled {
        "Disabled"
    } else if gw.spec.provider.supports_port_forwarding() {
        "Enabled"
    } else {
        "Unsupported"
    };
    let mut conds = match &verdict {
        Ok(()) => status::kstatus(true, None, None),
        Err(inv) => status::kstatus(false, Some((inv.reason, inv.message.as_str())), None),
    };
    conds.push(match port_forwarding {
        "Unsupported" => status::Cond::new(
            "PortForwarding",
            false,
            "Unsupported",
            format!(
                "{:?} does not support port forwarding; no port is forwarded",
                gw.spec.provider
            ),
        ),
        "Enabled" => status::Cond::new(
            "PortForwarding",
            true,
            "Enabled",
            "The forwarded port is set as the consumer's listen port",
        ),
        _ => status::Cond::new(
            "PortForwarding",
            false,
            "Disabled",
            "portForwarding.enabled is false",
        ),
    });

    let old = gw.status.clone().unwrap_or_default();
    let new = VpnGatewayStatus {
        observed_generation: gw.metadata.generation,
        conditions: status::merge(&old.conditions, &conds, gw.metadata.generation),
        consumers,
        port_forwarding: Some(port_forwarding.to_string()),
    };
    let changed = !(old.observed_generation == new.observed_generation
        && status::same(&old.conditions, &new.conditions)
        && old.consumers == new.consumers
        && old.port_forwarding == new.port_forwarding);
    if changed {
        if let Err(inv) = &verdict {
            let was = status::was_true(&old.conditions, "Stalled", inv.reason);
            if !was {
                let note = format!(
                    "{}; consumers {} are held at 0 replicas (fail closed)",
                    inv.message,
                    if new.consumers.is_empty() {
                        "(none)".to_string()
                    } else {
                        new.consumers.join(", ")
                    }
                );
                publish(&ctx, gw.as_ref(), EventType::Warning, inv.reason, note).await;
            }
        }
        status::write(&ctx, gw.as_ref(), &new).await?;
    }
    Ok(Action::requeue(if verdict.is_ok() {
        ctx.resync
    } else {
        Duration::from_secs(30)
    }))
}
