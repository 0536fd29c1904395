//! Two operator replicas: only the lease holder reconciles, and the other
//! takes over when it dies.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use mediastack_e2e::stack::{example_stack, wait_condition};
use mediastack_e2e::{Operator, TestNamespace, sum_counter, wait_for};
use mediastack_operator::api::MediaStack;
use serde_json::json;

const LEASE_SECONDS: u64 = 6;

/// The chart's lease: its Role allows exactly this one.
const LEASE: &str = "mediastack-operator";

fn release_namespace() -> String {
    std::env::var("MEDIASTACK_RELEASE_NAMESPACE").unwrap_or_else(|_| "mediastack-system".into())
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("mediastack-operator")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_lease_holder_reconciles_and_the_standby_takes_over() {
    let ns = TestNamespace::new("leader").await;
    let release_ns = release_namespace();
    let namespaces: Api<Namespace> = Api::all(ns.client.clone());
    if namespaces
        .get_opt(&release_ns)
        .await
        .expect("read namespace")
        .is_none()
    {
        let obj: Namespace =
            serde_json::from_value(json!({"metadata": {"name": release_ns}})).expect("namespace");
        namespaces
            .create(&PostParams::default(), &obj)
            .await
            .expect("create release namespace");
    }
    let leases: Api<Lease> = Api::namespaced(ns.client.clone(), &release_ns);
    // A fresh election: no holder left over from an earlier run.
    let _ = leases.delete(LEASE, &DeleteParams::default()).await;
    let lease = format!("{release_ns}/{LEASE}");
    let secs = LEASE_SECONDS.to_string();
    let mut a = Operator::start_local(
        &ns,
        &[
            "--leader-lease",
            &lease,
            "--identity",
            "replica-a",
            "--lease-seconds",
            &secs,
        ],
    )
    .await;
    let mut b = Operator::start_local(
        &ns,
        &[
            "--leader-lease",
            &lease,
            "--identity",
            "replica-b",
            "--lease-seconds",
            &secs,
        ],
    )
    .await;
    wait_for("a lease holder", Duration::from_secs(30), || async {
        Ok(holder(&leases).await.is_some())
    })
    .await
    .expect("leader elected");
    let first = holder(&leases).await.unwrap_or_default();

    example_stack(&ns).await;
    wait_condition::<MediaStack>(&ns, "home", "Ready", "True", None).await;
    let runs = |t: String| sum_counter(&t, "mediastack_operator_reconcile_runs_total", |_| true);
    let (leader, standby) = if first == "replica-a" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert!(runs(leader.metrics().await) > 0.0, "the leader reconciles");
    assert_eq!(runs(standby.metrics().await), 0.0, "the standby does not");

    leader.kill().await;
    wait_for(
        "the standby holds the lease",
        Duration::from_secs(LEASE_SECONDS * 4),
        || async { Ok(holder(&leases).await.is_some_and(|h| h != first)) },
    )
    .await
    .expect("takeover");
    let stacks: Api<MediaStack> = ns.api();
    let off = json!({"apiVersion": "mediastack.io/v1alpha1", "kind": "MediaStack", "spec": {"apps": {"dozzle": {"enabled": false}}}});
    stacks
        .patch(
            "home",
            &PatchParams::apply("e2e-toggle"),
            &Patch::Apply(&off),
        )
        .await
        .expect("disable dozzle");
    let deployments: Api<Deployment> = ns.api();
    wait_for(
        "the new leader reconciles the change",
        Duration::from_secs(60),
        || async { Ok(deployments.get_opt("home-dozzle").await?.is_none()) },
    )
    .await
    .expect("new leader works");
    assert!(runs(standby.metrics().await) > 0.0);
}
