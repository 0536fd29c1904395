//! The operator survives a restart of the API server (as k3s does on every
//! service restart and upgrade): `kill -9` of kube-apiserver, started again
//! with the same flags, etcd kept. Its watches must list again and resume,
//! so a child deleted afterwards is restored by the watch event (within
//! seconds, not by the 300 s resync), and the status says the app is missing
//! while it is.
//!
//! This test restarts the API server of the cluster it runs against, so it
//! runs alone in a control plane of its own (e2e/test.sh), which
//! `cluster.sh exec` names in `MEDIASTACK_CLUSTER_STATE`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams};
use kube::runtime::{WatchStreamExt, watcher};
use mediastack_e2e::stack::{condition, ready_example_stack_with};
use mediastack_e2e::{audited_writes, repo_root, wait_for};
use mediastack_operator::api::MediaStack;
use mediastack_operator::runtime::stores::relisting_watcher;

/// Lines of the operator's log that report a failure.
fn failures(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect()
}

/// Waits until the log at `path` has gained no failure line for `quiet`;
/// panics with the last failures after `timeout`.
async fn wait_quiet(path: &std::path::Path, quiet: Duration, timeout: Duration) {
    let start = Instant::now();
    let mut seen = failures(&std::fs::read_to_string(path).unwrap_or_default()).len();
    let mut last_failure = Instant::now();
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        let lines = failures(&log);
        if lines.len() > seen {
            seen = lines.len();
            last_failure = Instant::now();
        }
        if last_failure.elapsed() >= quiet {
            eprintln!(
                "operator quiet {:.1} s after the restart",
                start.elapsed().as_secs_f64()
            );
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "the operator kept failing for {timeout:?} after the API server restart:\n{}",
            lines[lines.len().saturating_sub(20)..].join("\n")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn after_an_api_server_restart_a_deleted_child_is_restored_and_reported() {
    let state = std::env::var("MEDIASTACK_CLUSTER_STATE").expect(
        "MEDIASTACK_CLUSTER_STATE: run this test alone in its own control plane \
         (e2e/controlplane/cluster.sh exec, as e2e/test.sh does): it restarts the API server",
    );
    // The default resync: a child restored within a minute was restored by
    // a watch event, not by the resync.
    let (ns, op, _) = ready_example_stack_with("restart", &["--resync-seconds", "300"]).await;
    let log_path = op.log_path.clone().expect("the operator runs here");

    let out = tokio::process::Command::new(repo_root().join("e2e/controlplane/cluster.sh"))
        .args(["restart-apiserver", &state])
        .output()
        .await
        .expect("cluster.sh restart-apiserver");
    assert!(
        out.status.success(),
        "restart-apiserver failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The restarted server's watch caches start empty: for some seconds
    // every watch, including ones the operator has just started again, ends
    // with 410 Expired (each store lists again, once or twice; the CRD-based
    // kinds' caches come up last). Wait until the operator's log has had no
    // failure for 10 s. An error loop (the defect this test guards against:
    // watches failing for minutes) never gets there and fails the test.
    wait_quiet(&log_path, Duration::from_secs(10), Duration::from_secs(120)).await;

    // Every Ready status of the stack from now on, as the API server saw it.
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stacks: Api<MediaStack> = ns.api();
    let recorder = {
        let (stacks, seen) = (stacks.clone(), seen.clone());
        tokio::spawn(async move {
            // The operator's own watch (lists again on 410 Gone).
            let mut events = relisting_watcher(
                stacks,
                watcher::Config::default().fields("metadata.name=home"),
            )
            .default_backoff()
            .applied_objects()
            .boxed();
            while let Some(ev) = events.next().await {
                if let Ok(s) = ev {
                    let ready = condition(&s, "Ready").map(|c| c.0).unwrap_or_default();
                    let apps = s
                        .status
                        .as_ref()
                        .and_then(|st| st.apps_ready.clone())
                        .unwrap_or_default();
                    seen.lock().expect("lock").push((ready, apps));
                }
            }
        })
    };
    // The recorder's first event is the stack as it is (Ready): from then
    // on it sees every change.
    wait_for(
        "the recorder's first event",
        Duration::from_secs(60),
        || async { Ok(!seen.lock().expect("lock").is_empty()) },
    )
    .await
    .expect("watch of the stack after the restart");

    let deployments: Api<Deployment> = ns.api();
    let name = "home-sonarr";
    let old_uid = deployments
        .get(name)
        .await
        .expect("the Deployment exists")
        .metadata
        .uid;
    deployments
        .delete(name, &DeleteParams::foreground())
        .await
        .expect("delete the Deployment");
    let deleted = Instant::now();
    wait_for(
        "the deleted Deployment restored after the API server restart",
        Duration::from_secs(60),
        || async {
            Ok(deployments.get_opt(name).await?.is_some_and(|d| {
                d.metadata.uid != old_uid && d.metadata.deletion_timestamp.is_none()
            }))
        },
    )
    .await
    .unwrap_or_else(|e| {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        panic!("{e}; operator log:\n{log}")
    });
    eprintln!(
        "restored {:.1} s after the delete",
        deleted.elapsed().as_secs_f64()
    );

    // The status said the app was missing (Ready=False, fewer apps ready),
    // then Ready again once the new Deployment is. Waiting for `Ready=True`
    // alone could pass on the status from before the delete.
    let reported = wait_for(
        "the stack reported the missing app, then Ready again",
        Duration::from_secs(120),
        || async {
            let history = seen.lock().expect("lock").clone();
            Ok(history
                .iter()
                .position(|(ready, apps)| ready == "False" && apps != "9/9")
                .is_some_and(|i| history[i..].iter().any(|(ready, _)| ready == "True")))
        },
    )
    .await;
    let history = seen.lock().expect("lock").clone();
    assert!(
        reported.is_ok(),
        "the stack never reported the missing app and recovered: {history:?}"
    );

    // No error loop once the server is back: nothing fails, and nothing is
    // written (the stores after a new list diff like before), in a quiet window.
    let before = std::fs::read_to_string(&log_path).unwrap_or_default();
    let writes_before = audited_writes(&ns.name).expect("the local control plane's audit log");
    tokio::time::sleep(Duration::from_secs(20)).await;
    let writes_after = audited_writes(&ns.name).unwrap_or_default();
    let new_writes: Vec<_> = writes_after.iter().skip(writes_before.len()).collect();
    assert!(
        new_writes.is_empty(),
        "writes of a settled stack after the restart: {new_writes:?}"
    );
    let after = std::fs::read_to_string(&log_path).unwrap_or_default();
    let new = &after[before.len().min(after.len())..];
    let loop_lines = failures(new);
    assert!(
        loop_lines.is_empty(),
        "the operator still fails after the API server is back:\n{}",
        loop_lines.join("\n")
    );
    recorder.abort();
}
