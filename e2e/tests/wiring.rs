//! The wiring task (`wiring::runner::run`) against the real API server, with
//! the apps replaced by loopback stand-ins (the contract fakes of Sonarr,
//! Radarr and Prowlarr, built from their OpenAPI documents, and the
//! qBittorrent WebUI stand-in; the `testing` feature of the operator crate).
//! No operator process runs: the test writes `status.apps[]` the way the
//! reconcile does (server-side apply on the status subresource under the
//! reconcile's field manager), so what is checked is the task's own
//! behaviour on the server: `status.links[]` and the `Wired` condition under
//! its own field manager, the reconcile's conditions left alone, no write
//! when nothing changed, events for changed links, a failed app failing
//! only its links, and a switch turned off removing its link. The task's
//! client runs as the chart's ServiceAccount when `MEDIASTACK_OPERATOR_AS`
//! is set (e2e/test.sh), so a missing RBAC rule fails this test.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use mediastack_e2e::stack::{condition, example};
use mediastack_e2e::{TestNamespace, operator_client, wait_for};
use mediastack_operator::api::MediaStack;
use mediastack_operator::api::mediastack::LinkStatus;
use mediastack_operator::reconcile::FIELD_MANAGER as RECONCILE_MANAGER;
use mediastack_operator::wiring::runner::{self, FIELD_MANAGER as WIRING_MANAGER, RunnerConfig};
use mediastack_operator::wiring::secrets;
use mediastack_operator::wiring::testing::fake::Fault;
use mediastack_operator::wiring::testing::{
    LoopbackApps, PROWLARR_KEY, RADARR_KEY, SONARR_KEY, fast, loopback_apps,
};
use serde_json::{Value, json};

const STACK: &str = "home";
const QBIT_PASSWORD: &str = "e2e-qbit-webui-pw";
const WAIT: Duration = Duration::from_secs(60);

fn condition_json(type_: &str, status: &str, reason: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": format!("{type_} as the reconcile writes it"),
           "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1})
}

/// What the reconcile writes: its kstatus trio and `apps[]` readiness, with
/// server-side apply under its own field manager.
async fn reconcile_writes_status(api: &Api<MediaStack>, ready: &[(&str, bool)]) {
    let apps: Vec<Value> = ready
        .iter()
        .map(|(n, r)| json!({"name": n, "ready": r, "readyReplicas": i32::from(*r)}))
        .collect();
    let n_ready = ready.iter().filter(|(_, r)| *r).count();
    let patch = json!({
        "apiVersion": "mediastack.io/v1alpha1",
        "kind": "MediaStack",
        "status": {
            "observedGeneration": 1,
            "conditions": [
                condition_json("Ready", "True", "AllAppsReady"),
                condition_json("Reconciling", "False", "Reconciled"),
                condition_json("Stalled", "False", "Reconciled"),
            ],
            "appsReady": format!("{n_ready}/{}", ready.len()),
            "apps": apps,
        },
    });
    api.patch_status(
        STACK,
        &PatchParams::apply(RECONCILE_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .expect("status written as the reconcile does");
}

fn links(stack: &MediaStack) -> Vec<LinkStatus> {
    stack
        .status
        .as_ref()
        .map(|s| s.links.clone())
        .unwrap_or_default()
}

fn link<'a>(stack: &'a [LinkStatus], from: &str, to: &str) -> Option<&'a LinkStatus> {
    stack.iter().find(|l| l.from == from && l.to == to)
}

/// Waits until `check` holds for the stored stack; panics with its status.
async fn wait_stack(
    api: &Api<MediaStack>,
    what: &str,
    check: impl Fn(&MediaStack) -> bool,
) -> MediaStack {
    let res = wait_for(what, WAIT, || async { Ok(check(&api.get(STACK).await?)) }).await;
    let last = api.get(STACK).await.expect("stack read");
    if let Err(e) = res {
        panic!(
            "{e}; status: {}",
            serde_json::to_string(&last.status).unwrap_or_default()
        );
    }
    last
}

/// The fields a manager owns in the status subresource, as JSON text.
fn owned_by(stack: &MediaStack, manager: &str) -> String {
    stack
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.manager.as_deref() == Some(manager) && m.subresource.as_deref() == Some("status")
        })
        .filter_map(|m| m.fields_v1.as_ref())
        .map(|f| f.0.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Events the task published about the stack with `reason`: their notes.
async fn events(ns: &TestNamespace, reason: &str) -> Vec<(String, String)> {
    let api: Api<Event> = ns.api();
    api.list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.reporting_controller.as_deref() == Some(WIRING_MANAGER)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(STACK)
        })
        .map(|e| (e.type_.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

async fn wait_event(ns: &TestNamespace, reason: &str, type_: &str, note_starts: &str) {
    wait_for(
        &format!("{type_} event {reason} starting {note_starts:?}"),
        WAIT,
        || async {
            Ok(events(ns, reason)
                .await
                .iter()
                .any(|(t, n)| t == type_ && n.starts_with(note_starts)))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "stringData": data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    }))
    .expect("secret")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wiring_task_writes_links_and_wired_under_its_own_manager_and_nothing_when_unchanged() {
    let ns = TestNamespace::new("wiring").await;
    ns.apply_yaml(&example("examples/mediastack.yaml"), "e2e-user")
        .await
        .expect("stack applied");
    let secrets_api: Api<Secret> = ns.api();
    for s in [
        secret(
            &secrets::api_keys_secret(STACK),
            &[
                ("sonarr", SONARR_KEY),
                ("radarr", RADARR_KEY),
                ("prowlarr", PROWLARR_KEY),
            ],
        ),
        secret(
            &secrets::qbittorrent_secret(STACK),
            &[("username", "admin"), ("password", QBIT_PASSWORD)],
        ),
    ] {
        secrets_api
            .create(&PostParams::default(), &s)
            .await
            .expect("secret");
    }
    let stacks: Api<MediaStack> = ns.api();
    // Radarr not Ready yet.
    let mut ready = vec![
        ("jellyfin", true),
        ("jellyseerr", true),
        ("sonarr", true),
        ("radarr", false),
        ("prowlarr", true),
        ("bazarr", true),
        ("qbittorrent", true),
        ("dozzle", true),
        ("dashboard", true),
    ];
    reconcile_writes_status(&stacks, &ready).await;

    let LoopbackApps {
        sonarr,
        radarr,
        prowlarr,
        qbit,
        addressing,
    } = loopback_apps(QBIT_PASSWORD).await;

    // The task as the operator runs it: the operator's identity, a store of
    // the stacks fed by a watch.
    let client = operator_client().await;
    let watched: Api<MediaStack> = Api::namespaced(client.clone(), &ns.name);
    let (reader, writer) = reflector::store();
    let watch = tokio::spawn(
        reflector(writer, watcher(watched, watcher::Config::default()))
            .applied_objects()
            .for_each(|_| async {}),
    );
    reader.wait_until_ready().await.expect("store ready");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let config = RunnerConfig {
        tick: Duration::from_millis(200),
        connected_period: Duration::from_secs(1),
        pending_period: Duration::from_millis(500),
        min_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(2),
        client: fast(),
    };
    let task = tokio::spawn(runner::run(
        client,
        reader,
        async move {
            let _ = stop_rx.await;
        },
        std::sync::Arc::new(addressing),
        config,
    ));

    // First: every link that can run is Connected, Radarr's are Pending.
    let stack = wait_stack(&stacks, "7 links, Radarr's pending", |s| {
        let l = links(s);
        l.len() == 7
            && l.iter().all(|x| {
                let radarr = x.from == "radarr" || x.to == "radarr";
                x.state == if radarr { "Pending" } else { "Connected" }
            })
    })
    .await;
    let l = links(&stack);
    assert_eq!(
        link(&l, "radarr", "qbittorrent").map(|x| x.message.as_str()),
        Some("waiting for radarr to be Ready")
    );
    assert!(l.iter().all(|x| x.last_transition_time.is_some()));
    let (status, reason, message) = condition(&stack, "Wired").expect("Wired");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Pending"));
    assert!(message.contains("radarr -> qbittorrent"), "{message}");
    // The reconcile's conditions are as it wrote them, and each manager owns
    // only its own fields.
    for (t, st) in [
        ("Ready", "True"),
        ("Reconciling", "False"),
        ("Stalled", "False"),
    ] {
        let (s, r, m) = condition(&stack, t).unwrap_or_else(|| panic!("{t} kept"));
        assert_eq!(s, st, "{t}");
        assert_ne!(r, "", "{t}");
        assert_eq!(m, format!("{t} as the reconcile writes it"));
    }
    let wiring_owns = owned_by(&stack, WIRING_MANAGER);
    let reconcile_owns = owned_by(&stack, RECONCILE_MANAGER);
    assert!(
        wiring_owns.contains("f:links") && wiring_owns.contains(r#"k:{\"type\":\"Wired\"}"#),
        "{wiring_owns}"
    );
    for other in ["Ready", "Reconciling", "Stalled"] {
        assert!(
            !wiring_owns.contains(&format!(r#"k:{{\"type\":\"{other}\"}}"#)),
            "{wiring_owns}"
        );
        assert!(
            reconcile_owns.contains(&format!(r#"k:{{\"type\":\"{other}\"}}"#)),
            "{reconcile_owns}"
        );
    }
    assert!(
        !reconcile_owns.contains("f:links") && !reconcile_owns.contains("Wired"),
        "{reconcile_owns}"
    );
    wait_event(&ns, "LinkConnected", "Normal", "sonarr -> qbittorrent: ").await;
    assert!(
        events(&ns, "LinkConnected")
            .await
            .iter()
            .all(|(_, n)| !n.contains(SONARR_KEY) && !n.contains(QBIT_PASSWORD))
    );

    // Radarr becomes Ready: the reconcile writes its status again (without
    // the task's fields, which it does not own: they stay), and Radarr's
    // links connect, with an event each.
    ready[3].1 = true;
    reconcile_writes_status(&stacks, &ready).await;
    let stack = wait_stack(&stacks, "Wired True", |s| {
        condition(s, "Wired").is_some_and(|(st, r, _)| st == "True" && r == "Connected")
    })
    .await;
    let l = links(&stack);
    assert_eq!(l.len(), 7);
    assert!(l.iter().all(|x| x.state == "Connected"), "{l:?}");
    wait_event(&ns, "LinkConnected", "Normal", "radarr -> qbittorrent: ").await;
    wait_event(&ns, "LinkConnected", "Normal", "prowlarr -> radarr: ").await;

    // Settled: further passes (each logs in to qBittorrent) write nothing,
    // neither to the API server nor to the apps.
    let rv = stack.metadata.resource_version.clone();
    let app_writes = || {
        [
            sonarr.state().writes,
            radarr.state().writes,
            prowlarr.state().writes,
            qbit.state().writes,
        ]
    };
    let writes_before = app_writes();
    let logins = qbit.state().logins;
    wait_for("two more passes", WAIT, || async {
        Ok(qbit.state().logins >= logins + 4)
    })
    .await
    .expect("the task keeps passing");
    let after = stacks.get(STACK).await.expect("stack");
    assert_eq!(
        after.metadata.resource_version, rv,
        "a pass with nothing changed wrote the stack"
    );
    assert_eq!(app_writes(), writes_before, "no write to the apps either");

    // Sonarr breaks: its two links fail with the message, the others stay
    // Connected, a Warning event is published, and the stack is not Stalled.
    sonarr.state().fault = Some(Fault::Status(500));
    let stack = wait_stack(&stacks, "Sonarr's links Failed", |s| {
        let l = links(s);
        ["qbittorrent", "sonarr"]
            .iter()
            .all(|to| link(&l, "sonarr", to).is_some_and(|x| x.state == "Failed"))
    })
    .await;
    let l = links(&stack);
    let failed = link(&l, "sonarr", "qbittorrent").expect("link");
    assert!(failed.message.contains("HTTP 500"), "{}", failed.message);
    for (f, t) in [
        ("radarr", "qbittorrent"),
        ("radarr", "radarr"),
        ("prowlarr", "sonarr"),
        ("prowlarr", "radarr"),
        ("qbittorrent", "qbittorrent"),
    ] {
        assert_eq!(
            link(&l, f, t).map(|x| x.state.as_str()),
            Some("Connected"),
            "{f} -> {t}"
        );
    }
    let (status, reason, _) = condition(&stack, "Wired").expect("Wired");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "LinkFailed"));
    assert_eq!(
        condition(&stack, "Stalled").map(|c| c.0),
        Some("False".into())
    );
    assert_eq!(condition(&stack, "Ready").map(|c| c.0), Some("True".into()));
    wait_event(&ns, "LinkFailed", "Warning", "sonarr -> qbittorrent: ").await;

    // Sonarr recovers: retried, Connected again.
    sonarr.state().fault = None;
    wait_stack(&stacks, "Wired True again", |s| {
        condition(s, "Wired").is_some_and(|(st, _, _)| st == "True")
    })
    .await;

    // A switch turned off: its link leaves status.links (the task's own
    // list entry, removed by its apply).
    stacks
        .patch(
            STACK,
            // Another manager: an apply under "e2e-user" without the rest
            // of the spec would drop it.
            &PatchParams::apply("e2e-switch"),
            &Patch::Apply(json!({
                "apiVersion": "mediastack.io/v1alpha1", "kind": "MediaStack",
                "metadata": {"name": STACK},
                "spec": {"wiring": {"qbittorrentCategories": false}},
            })),
        )
        .await
        .expect("switch off");
    let stack = wait_stack(&stacks, "6 links", |s| links(s).len() == 6).await;
    assert!(link(&links(&stack), "qbittorrent", "qbittorrent").is_none());

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the task stops")
        .expect("the task did not panic");
    watch.abort();
}
