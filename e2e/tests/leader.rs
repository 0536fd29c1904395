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

/// Both tests elect through the one Lease the chart's Role allows: one at a time.
static ONE_ELECTION: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    let _one = ONE_ELECTION.lock().await;
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

/// The failure leader election must survive: the leader is frozen (SIGSTOP;
/// a long GC pause or a frozen VM look the same), its lease expires, the
/// standby takes over; then the old leader wakes up with work queued (the
/// stack changed meanwhile). It must not write: the write fence closed when
/// its lease ran out, before the API server's clock let anyone else take over.
/// The new leader is held frozen meanwhile, so any write to the change is
/// the old leader's.
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_leader_that_wakes_up_after_losing_its_lease_writes_nothing() {
    let _one = ONE_ELECTION.lock().await;
    const SECS: u64 = 10;
    let ns = TestNamespace::new("fence").await;
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
        let _ = namespaces.create(&PostParams::default(), &obj).await;
    }
    let leases: Api<Lease> = Api::namespaced(ns.client.clone(), &release_ns);
    let _ = leases.delete(LEASE, &DeleteParams::default()).await;
    let lease = format!("{release_ns}/{LEASE}");
    let secs = SECS.to_string();
    let start = |id: &'static str| {
        let (ns, lease, secs) = (&ns, lease.clone(), secs.clone());
        async move {
            Operator::start_local(
                ns,
                &[
                    "--leader-lease",
                    &lease,
                    "--identity",
                    id,
                    "--lease-seconds",
                    &secs,
                ],
            )
            .await
        }
    };
    let mut a = start("fence-a").await;
    wait_for(
        "fence-a holds the lease",
        Duration::from_secs(30),
        || async { Ok(holder(&leases).await.as_deref() == Some("fence-a")) },
    )
    .await
    .expect("a leads");
    let b = start("fence-b").await;
    example_stack(&ns).await;
    wait_condition::<MediaStack>(&ns, "home", "Ready", "True", None).await;
    let deployments: Api<Deployment> = ns.api();
    assert!(
        deployments
            .get_opt("home-dozzle")
            .await
            .expect("read")
            .is_some()
    );

    // Freeze the leader; the standby takes over once the lease expired.
    a.signal("STOP");
    wait_for(
        "fence-b takes over",
        Duration::from_secs(SECS * 4),
        || async { Ok(holder(&leases).await.as_deref() == Some("fence-b")) },
    )
    .await
    .expect("takeover");
    // From here on, fence-a's lease is expired by the API server's clock.
    let expired = k8s_openapi::jiff::Timestamp::now();
    b.signal("STOP");

    // Work for whoever reconciles next: Dozzle is disabled.
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

    // The old leader wakes up: it sees the change, and must neither apply it
    // nor write anything else; it finds the lease lost and exits.
    a.signal("CONT");
    wait_for("the old leader exits", Duration::from_secs(SECS), || {
        let exited = a.exited();
        async move { Ok(exited) }
    })
    .await
    .expect("old leader exits after losing the lease");
    assert!(
        deployments
            .get_opt("home-dozzle")
            .await
            .expect("read")
            .is_some(),
        "the old leader pruned Dozzle after its lease expired"
    );
    if let Some(writes) = mediastack_e2e::audited_writes_by("(fence-a)") {
        let late: Vec<_> = writes
            .into_iter()
            .filter(|(t, _)| {
                t.parse::<k8s_openapi::jiff::Timestamp>()
                    .is_ok_and(|t| t >= expired)
            })
            .collect();
        assert!(
            late.is_empty(),
            "writes by the old leader after its lease expired: {late:#?}"
        );
    }

    // The new leader thaws and does the work.
    b.signal("CONT");
    wait_for(
        "the new leader prunes Dozzle",
        Duration::from_secs(60),
        || async { Ok(deployments.get_opt("home-dozzle").await?.is_none()) },
    )
    .await
    .expect("new leader works");
}

/// The write fence itself, on the real API server: a client whose lease
/// renewal is older than its validity sends no write (the audit log has no
/// request from it), reads still work, and a fresh renewal lets writes through.
#[tokio::test(flavor = "multi_thread")]
async fn the_write_fence_refuses_writes_once_the_renewal_is_stale() {
    use mediastack_operator::runtime::fence::{Fence, FenceLayer};
    use std::time::Instant;
    let ns = TestNamespace::new("fence-layer").await;
    let config = kube::Config::infer().await.expect("kubeconfig");
    let fence = Fence::closed();
    let client = kube::client::ClientBuilder::try_from(config)
        .expect("client")
        .with_layer(&FenceLayer {
            fence: fence.clone(),
            identity: format!("fence-layer-{}", ns.name),
        })
        .build();
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client, &ns.name);
    let cm = |name: &str| -> k8s_openapi::api::core::v1::ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("ConfigMap")
    };
    // A renewal that was valid for 1 s, 2 s ago: a replica that was paused.
    fence.set_leader(true);
    fence.open_until(Instant::now() - Duration::from_secs(1));
    let refused = cms.create(&PostParams::default(), &cm("stale")).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("does not hold the leader lease")),
        "{refused:?}"
    );
    assert!(cms.list(&Default::default()).await.is_ok(), "reads pass");
    assert_eq!(fence.refused(), 1);

    fence.open_until(Instant::now() + Duration::from_secs(30));
    cms.create(&PostParams::default(), &cm("fresh"))
        .await
        .expect("a fresh lease writes");
    fence.set_leader(false);
    assert!(cms.delete("fresh", &DeleteParams::default()).await.is_err());

    if let Some(writes) = mediastack_e2e::audited_writes_by(&format!("(fence-layer-{})", ns.name)) {
        let names: Vec<&str> = writes.iter().map(|(_, w)| w.as_str()).collect();
        assert_eq!(
            names.len(),
            1,
            "only the write under a fresh lease: {names:?}"
        );
        assert!(names[0].starts_with("create configmaps/"), "{names:?}");
    }
}
