//! A whole pass of the wiring task (`runner::attempt`) without a cluster:
//! every link of the example stack against the contract fakes of Sonarr,
//! Radarr and Prowlarr and the qBittorrent stand-in, addressed over loopback.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::fake::Fault;
use super::{PROWLARR_KEY, RADARR_KEY, SONARR_KEY, assert_clean, fast};
use k8s_openapi::jiff::Timestamp;

use crate::api::mediastack::MediaStackStatus;
use crate::render::fixtures;
use crate::wiring::runner::{Credentials, Link, PassInputs, attempt, status_update, wanted_links};
use crate::wiring::testing::{LoopbackApps, loopback_apps};
use crate::wiring::{ApiKey, App, LinkResult, LinkState};

const QBIT_PASSWORD: &str = "qbit-webui-pw";

async fn apps() -> LoopbackApps {
    loopback_apps(QBIT_PASSWORD).await
}

fn credentials() -> Credentials {
    Credentials {
        keys: BTreeMap::from([
            ("sonarr", Ok(ApiKey::new(SONARR_KEY))),
            ("radarr", Ok(ApiKey::new(RADARR_KEY))),
            ("prowlarr", Ok(ApiKey::new(PROWLARR_KEY))),
        ]),
        qbittorrent: Some(Ok(("admin".into(), QBIT_PASSWORD.into()))),
    }
}

const ALL_READY: [App; 4] = [App::Sonarr, App::Radarr, App::Prowlarr, App::Qbittorrent];

async fn pass(
    apps: &LoopbackApps,
    links: &[Link],
    ready: &[App],
    creds: &Credentials,
) -> Vec<LinkResult> {
    attempt(&PassInputs {
        namespace: "media",
        stack: "home",
        links,
        ready,
        credentials: creds,
        addressing: &apps.addressing,
        client: &fast(),
    })
    .await
}

fn states(results: &[LinkResult]) -> Vec<(App, App, LinkState)> {
    results.iter().map(|r| (r.from, r.to, r.state)).collect()
}

/// The writes each app got so far: Sonarr, Radarr, Prowlarr, qBittorrent.
fn writes(apps: &LoopbackApps) -> [usize; 4] {
    [
        apps.sonarr.state().writes,
        apps.radarr.state().writes,
        apps.prowlarr.state().writes,
        apps.qbit.state().writes,
    ]
}

fn field(item: &Value, name: &str) -> Value {
    item["fields"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["name"] == name))
        .map(|f| f["value"].clone())
        .unwrap_or(Value::Null)
}

fn named<'a>(items: &'a [Value], name: &str) -> &'a Value {
    items
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {items:?}"))
}

#[tokio::test]
async fn every_link_of_the_example_stack_connects_and_a_second_pass_sends_no_write() {
    let apps = apps().await;
    let links = wanted_links(&fixtures::stack().spec);
    assert_eq!(links.len(), 7);
    let creds = credentials();

    let first = pass(&apps, &links, &ALL_READY, &creds).await;
    assert!(
        first.iter().all(|r| r.state == LinkState::Connected),
        "{first:#?}"
    );
    assert_eq!(
        states(&first)
            .into_iter()
            .map(|(f, t, _)| (f, t))
            .collect::<Vec<_>>(),
        [
            (App::Sonarr, App::Qbittorrent),
            (App::Radarr, App::Qbittorrent),
            (App::Sonarr, App::Sonarr),
            (App::Radarr, App::Radarr),
            (App::Prowlarr, App::Sonarr),
            (App::Prowlarr, App::Radarr),
            (App::Qbittorrent, App::Qbittorrent),
        ]
    );
    for f in [&apps.sonarr, &apps.radarr, &apps.prowlarr] {
        assert_clean(f);
    }
    // What the apps now hold: the far ends by their Service names.
    for (f, root) in [
        (&apps.sonarr, "/data/media/tv"),
        (&apps.radarr, "/data/media/movies"),
    ] {
        let st = f.state();
        let dc = named(&st.collections["/api/v3/downloadclient"], "mediastack");
        assert_eq!(field(dc, "host"), "home-qbittorrent");
        assert_eq!(field(dc, "port"), 8080);
        assert_eq!(field(dc, "password"), QBIT_PASSWORD);
        assert!(
            st.collections["/api/v3/rootfolder"]
                .iter()
                .any(|r| r["path"] == root),
            "{root}"
        );
    }
    {
        let st = apps.prowlarr.state();
        let apps_ = &st.collections["/api/v1/applications"];
        let s = named(apps_, "mediastack-sonarr");
        assert_eq!(field(s, "baseUrl"), "http://home-sonarr:8989");
        assert_eq!(field(s, "prowlarrUrl"), "http://home-prowlarr:9696");
        assert_eq!(field(s, "apiKey"), SONARR_KEY);
        let r = named(apps_, "mediastack-radarr");
        assert_eq!(field(r, "baseUrl"), "http://home-radarr:7878");
        assert_eq!(field(r, "apiKey"), RADARR_KEY);
    }
    {
        let st = apps.qbit.state();
        assert_eq!(st.categories["tv"]["savePath"], "/data/torrents/tv");
        assert_eq!(st.categories["movies"]["savePath"], "/data/torrents/movies");
        assert_eq!(st.preferences["save_path"], "/data/torrents");
    }
    let before = writes(&apps);
    assert!(before.iter().all(|w| *w > 0), "{before:?}");

    let second = pass(&apps, &links, &ALL_READY, &creds).await;
    // The same results, messages included: the status a pass writes
    // describes the links, not what this pass sent, so the task's status
    // update after the second pass finds nothing to write.
    assert_eq!(second, first);
    let stored = MediaStackStatus {
        links: status_update(None, &first, Some(1), Timestamp::now()).links,
        conditions: status_update(None, &first, Some(1), Timestamp::now())
            .wired
            .into_iter()
            .collect(),
        ..Default::default()
    };
    assert!(!status_update(Some(&stored), &second, Some(1), Timestamp::now()).differs);
    assert_eq!(writes(&apps), before, "the second pass sent no write");
    assert!(apps.qbit.state().logins >= 2, "it did look again");
}

#[tokio::test]
async fn an_app_that_answers_500_or_never_fails_only_its_own_links() {
    let apps = apps().await;
    let links = wanted_links(&fixtures::stack().spec);
    let creds = credentials();
    apps.sonarr.state().fault = Some(Fault::Status(500));
    // Past the client's 300 ms timeout on every attempt.
    apps.radarr.state().fault = Some(Fault::Delay(Duration::from_secs(5)));

    let results = pass(&apps, &links, &ALL_READY, &creds).await;
    let by = |from: App, to: App| {
        results
            .iter()
            .find(|r| (r.from, r.to) == (from, to))
            .unwrap_or_else(|| panic!("{from} -> {to} in {results:?}"))
    };
    for to in [App::Qbittorrent, App::Sonarr] {
        let r = by(App::Sonarr, to);
        assert_eq!(r.state, LinkState::Failed, "{r:?}");
        assert!(
            r.message.contains("HTTP 500") && r.message.contains("injected"),
            "{}",
            r.message
        );
    }
    for to in [App::Qbittorrent, App::Radarr] {
        let r = by(App::Radarr, to);
        assert_eq!(r.state, LinkState::Failed, "{r:?}");
        assert!(
            r.message.contains("no answer within 300ms"),
            "{}",
            r.message
        );
    }
    // Prowlarr's applications are set in Prowlarr alone; qBittorrent's own
    // settings in qBittorrent.
    for (from, to) in [
        (App::Prowlarr, App::Sonarr),
        (App::Prowlarr, App::Radarr),
        (App::Qbittorrent, App::Qbittorrent),
    ] {
        assert_eq!(by(from, to).state, LinkState::Connected, "{results:?}");
    }
    assert!(
        results
            .iter()
            .all(|r| !r.message.contains(SONARR_KEY) && !r.message.contains(QBIT_PASSWORD))
    );

    // qBittorrent broken too: its two dependants and its own link fail.
    apps.sonarr.state().fault = None;
    apps.radarr.state().fault = None;
    apps.qbit.state().fault = Some(500);
    let results = pass(&apps, &links, &ALL_READY, &creds).await;
    let failed: Vec<(App, App)> = results
        .iter()
        .filter(|r| r.state == LinkState::Failed)
        .map(|r| (r.from, r.to))
        .collect();
    assert_eq!(
        failed,
        [(App::Qbittorrent, App::Qbittorrent)],
        "{results:?}"
    );
    // The arrs' download clients are set in the arrs (qBittorrent is not
    // called for them), so they connect.
    assert_eq!(
        results
            .iter()
            .filter(|r| r.state == LinkState::Connected)
            .count(),
        6
    );
}

#[tokio::test]
async fn links_wait_for_both_ends_and_call_nothing_meanwhile() {
    let apps = apps().await;
    let links = wanted_links(&fixtures::stack().spec);
    let creds = credentials();
    let requests_before = apps.radarr.state().requests;
    let results = pass(
        &apps,
        &links,
        &[App::Sonarr, App::Prowlarr, App::Qbittorrent],
        &creds,
    )
    .await;
    for r in &results {
        if r.from == App::Radarr || r.to == App::Radarr {
            assert_eq!(r.state, LinkState::Pending, "{r:?}");
            assert_eq!(r.message, "waiting for radarr to be Ready");
        } else {
            assert_eq!(r.state, LinkState::Connected, "{r:?}");
        }
    }
    assert_eq!(
        results
            .iter()
            .filter(|r| r.state == LinkState::Pending)
            .count(),
        3
    );
    assert_eq!(apps.radarr.state().requests, requests_before);
}

#[tokio::test]
async fn a_missing_credential_fails_only_the_links_that_need_it() {
    let apps = apps().await;
    let links = wanted_links(&fixtures::stack().spec);
    let mut creds = credentials();
    creds.keys.insert(
        "prowlarr",
        Err("prowlarr's API key: Secret home-api-keys does not exist yet".into()),
    );
    let results = pass(&apps, &links, &ALL_READY, &creds).await;
    for r in &results {
        if r.from == App::Prowlarr {
            assert_eq!(
                (r.state, r.message.as_str()),
                (
                    LinkState::Failed,
                    "prowlarr's API key: Secret home-api-keys does not exist yet"
                )
            );
        } else {
            assert_eq!(r.state, LinkState::Connected, "{r:?}");
        }
    }
    assert_eq!(apps.prowlarr.state().requests, 0);
}
