//! Benchmark of the MediaStack controller against a real API server; prints
//! figures, asserts nothing. Run it on the local control plane:
//!
//! ```sh
//! cargo build --release -p mediastack-operator
//! MEDIASTACK_OPERATOR_BIN=target/release/mediastack-operator \
//!   e2e/controlplane/cluster.sh exec -- cargo run --release -p mediastack-e2e --bin bench
//! ```
//!
//! Figures: time from apply to all children created, time from apply to
//! `Ready` (KWOK makes pods ready at once), write requests per no-op resync
//! (from the audit log), and the operator's resident memory with 1 and with
//! `BENCH_STACKS` (default 100) MediaStacks.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, PostParams};
use mediastack_e2e::stack::{WIREGUARD_SECRET, condition, example};
use mediastack_e2e::{Operator, apply_yaml_in, audited_writes, client, wait_for};
use mediastack_operator::api::MediaStack;

/// The harness's `--resync-seconds`.
const RESYNC_SECONDS: u64 = 5;

async fn namespace(client: &kube::Client, name: &str) {
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace");
    let _ = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await;
}

async fn apply_stack(ns: &str) {
    for doc in [
        WIREGUARD_SECRET.to_string(),
        example("examples/vpngateway.yaml"),
        example("examples/mediastack.yaml"),
    ] {
        apply_yaml_in(ns, &doc, "bench").await.expect("apply");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client = client().await;
    let stacks_total: usize = std::env::var("BENCH_STACKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    // The harness runs the operator with a resync every RESYNC_SECONDS.
    let op = Operator::start_cluster_wide(&[]).await;

    // One stack: apply -> children -> Ready.
    let ns = "bench-1";
    namespace(&client, ns).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let stacks: Api<MediaStack> = Api::namespaced(client.clone(), ns);
    let start = Instant::now();
    apply_stack(ns).await;
    wait_for("children", Duration::from_secs(120), || async {
        Ok(deployments
            .list(&ListParams::default().labels("mediastack.io/stack=home"))
            .await?
            .items
            .len()
            >= 10)
    })
    .await?;
    let children = start.elapsed();
    wait_for("Ready", Duration::from_secs(120), || async {
        Ok(condition(&stacks.get("home").await?, "Ready").is_some_and(|c| c.0 == "True"))
    })
    .await?;
    let ready = start.elapsed();
    println!(
        "apply -> all children created: {:.2} s",
        children.as_secs_f64()
    );
    println!(
        "apply -> Ready (pods ready at once on KWOK): {:.2} s",
        ready.as_secs_f64()
    );

    // No-op resyncs.
    tokio::time::sleep(Duration::from_secs(RESYNC_SECONDS + 2)).await;
    let resyncs = 4;
    match audited_writes(ns) {
        Some(before) => {
            tokio::time::sleep(Duration::from_secs(RESYNC_SECONDS * resyncs)).await;
            let after = audited_writes(ns).unwrap_or_default();
            let writes = after.len().saturating_sub(before.len());
            println!(
                "write requests per no-op resync: {:.1} ({writes} in {resyncs} resyncs)",
                writes as f64 / resyncs as f64
            );
        }
        None => println!(
            "write requests per no-op resync: n/a (no audit log: set MEDIASTACK_AUDIT_LOG)"
        ),
    }
    let rss1 = op.rss_kib().unwrap_or(0);
    println!(
        "operator RSS with 1 MediaStack: {:.1} MiB",
        rss1 as f64 / 1024.0
    );

    // Many stacks, one per namespace.
    let start = Instant::now();
    for i in 2..=stacks_total {
        let ns = format!("bench-{i}");
        namespace(&client, &ns).await;
        apply_stack(&ns).await;
    }
    let all: Api<MediaStack> = Api::all(client.clone());
    wait_for(
        "every stack reconciled",
        Duration::from_secs(900),
        || async {
            let list = all.list(&ListParams::default()).await?;
            Ok(list.items.len() >= stacks_total
                && list.items.iter().all(|s| {
                    s.status
                        .as_ref()
                        .is_some_and(|st| st.observed_generation.is_some())
                }))
        },
    )
    .await?;
    println!(
        "{stacks_total} MediaStacks reconciled in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(RESYNC_SECONDS * 2)).await;
    let rss_n = op.rss_kib().unwrap_or(0);
    println!(
        "operator RSS with {stacks_total} MediaStacks: {:.1} MiB",
        rss_n as f64 / 1024.0
    );
    Ok(())
}
