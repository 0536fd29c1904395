//! The wiring task's pure parts: which links a spec asks for, whose API key
//! they need, the `Wired` condition, what a pass writes to the status (and
//! when it must not write), the delay before the next pass, and which apps
//! the reconcile reported Ready.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::mediastack::{AppStatus, MediaStackSpec, MediaStackStatus};
use crate::render::fixtures;
use crate::wiring::runner::{
    ArrKind, Link, RunnerConfig, needs_api_key, next_delay, ready_apps, status_update,
    wanted_links, wired_condition,
};
use crate::wiring::{App, LinkResult, WIRED_CONDITION};

use ArrKind::{Radarr, Sonarr};

fn spec() -> MediaStackSpec {
    fixtures::stack().spec
}

const ALL: [Link; 7] = [
    Link::DownloadClient(Sonarr),
    Link::DownloadClient(Radarr),
    Link::RootFolder(Sonarr),
    Link::RootFolder(Radarr),
    Link::ProwlarrApplication(Sonarr),
    Link::ProwlarrApplication(Radarr),
    Link::QbittorrentCategories,
];

fn without(links: &[Link]) -> Vec<Link> {
    ALL.iter().copied().filter(|l| !links.contains(l)).collect()
}

#[test]
fn the_example_stack_wants_every_link_once_and_sorted() {
    assert_eq!(wanted_links(&spec()), ALL);
}

/// A change to the spec, and the links it must remove.
type SwitchCase = (fn(&mut MediaStackSpec), &'static [Link]);

#[test]
fn each_switch_off_removes_its_links_and_only_those() {
    let cases: [SwitchCase; 4] = [
        (
            |s| s.wiring.download_clients = false,
            &[Link::DownloadClient(Sonarr), Link::DownloadClient(Radarr)],
        ),
        (
            |s| s.wiring.root_folders = false,
            &[Link::RootFolder(Sonarr), Link::RootFolder(Radarr)],
        ),
        (
            |s| s.wiring.prowlarr_applications = false,
            &[
                Link::ProwlarrApplication(Sonarr),
                Link::ProwlarrApplication(Radarr),
            ],
        ),
        (
            |s| s.wiring.qbittorrent_categories = false,
            &[Link::QbittorrentCategories],
        ),
    ];
    for (turn_off, removed) in cases {
        let mut s = spec();
        turn_off(&mut s);
        assert_eq!(wanted_links(&s), without(removed), "off: {removed:?}");
    }
    let mut s = spec();
    s.wiring.enabled = false;
    assert_eq!(wanted_links(&s), Vec::<Link>::new());
}

#[test]
fn a_disabled_or_absent_app_gives_no_links() {
    // Disabled with `enabled: false`.
    let mut s = spec();
    s.apps.radarr.as_mut().unwrap().enabled = false;
    assert_eq!(
        wanted_links(&s),
        without(&[
            Link::DownloadClient(Radarr),
            Link::RootFolder(Radarr),
            Link::ProwlarrApplication(Radarr),
        ])
    );
    // Absent from the spec.
    let mut s = spec();
    s.apps.qbittorrent = None;
    assert_eq!(
        wanted_links(&s),
        without(&[
            Link::DownloadClient(Sonarr),
            Link::DownloadClient(Radarr),
            Link::QbittorrentCategories,
        ])
    );
    let mut s = spec();
    s.apps.prowlarr.as_mut().unwrap().enabled = false;
    assert_eq!(
        wanted_links(&s),
        without(&[
            Link::ProwlarrApplication(Sonarr),
            Link::ProwlarrApplication(Radarr),
        ])
    );
    let mut s = spec();
    s.apps.sonarr = None;
    s.apps.radarr = None;
    assert_eq!(wanted_links(&s), [Link::QbittorrentCategories]);
}

#[test]
fn api_keys_are_needed_only_by_the_apps_of_wanted_links() {
    let keyed = |s: &MediaStackSpec| {
        [
            "sonarr",
            "radarr",
            "prowlarr",
            "qbittorrent",
            "jellyfin",
            "jellyseerr",
        ]
        .into_iter()
        .filter(|a| needs_api_key(s, a))
        .collect::<Vec<_>>()
    };
    assert_eq!(keyed(&spec()), ["sonarr", "radarr", "prowlarr"]);

    let mut s = spec();
    s.wiring.prowlarr_applications = false;
    assert_eq!(keyed(&s), ["sonarr", "radarr"]);

    // Only qBittorrent's own settings: it logs in with its WebUI password.
    let mut s = spec();
    s.wiring.download_clients = false;
    s.wiring.root_folders = false;
    s.wiring.prowlarr_applications = false;
    assert_eq!(keyed(&s), Vec::<&str>::new());

    let mut s = spec();
    s.apps.sonarr.as_mut().unwrap().enabled = false;
    assert_eq!(keyed(&s), ["radarr", "prowlarr"]);

    let mut s = spec();
    s.wiring.enabled = false;
    assert_eq!(keyed(&s), Vec::<&str>::new());
}

fn connected(from: App, to: App) -> LinkResult {
    LinkResult::connected(from, to, format!("{from} knows {to}"))
}

#[test]
fn wired_is_true_only_when_every_link_is_connected_and_names_the_others() {
    let ok = [
        connected(App::Sonarr, App::Qbittorrent),
        connected(App::Prowlarr, App::Sonarr),
    ];
    assert_eq!(
        wired_condition(&ok),
        (true, "Connected", "2 links connected".to_string())
    );

    let pending = [
        connected(App::Sonarr, App::Qbittorrent),
        LinkResult::pending(App::Radarr, App::Qbittorrent, "waiting for radarr"),
    ];
    assert_eq!(
        wired_condition(&pending),
        (
            false,
            "Pending",
            "pending: radarr -> qbittorrent".to_string()
        )
    );

    // A failure wins over a pending link and names only the failed ones.
    let failed = [
        LinkResult::failed(App::Sonarr, App::Qbittorrent, "HTTP 500"),
        LinkResult::pending(App::Radarr, App::Qbittorrent, "waiting for radarr"),
        LinkResult::failed(App::Prowlarr, App::Radarr, "timed out"),
        connected(App::Sonarr, App::Sonarr),
    ];
    assert_eq!(
        wired_condition(&failed),
        (
            false,
            "LinkFailed",
            "failed: sonarr -> qbittorrent, prowlarr -> radarr (retried)".to_string()
        )
    );
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

/// The status as the API server would store it after a write of `update`.
fn stored(update: &crate::wiring::runner::StatusUpdate) -> MediaStackStatus {
    MediaStackStatus {
        links: update.links.clone(),
        conditions: update.wired.iter().cloned().collect(),
        ..Default::default()
    }
}

#[test]
fn a_first_pass_writes_every_link_and_the_wired_condition() {
    let results = [
        connected(App::Sonarr, App::Qbittorrent),
        LinkResult::pending(App::Radarr, App::Qbittorrent, "waiting for radarr"),
    ];
    let u = status_update(None, &results, Some(3), at(0));
    assert!(u.differs);
    assert_eq!(u.changed, results);
    let rows: Vec<(&str, &str, &str, &str)> = u
        .links
        .iter()
        .map(|l| {
            (
                l.from.as_str(),
                l.to.as_str(),
                l.state.as_str(),
                l.message.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                "sonarr",
                "qbittorrent",
                "Connected",
                "sonarr knows qbittorrent"
            ),
            ("radarr", "qbittorrent", "Pending", "waiting for radarr"),
        ]
    );
    assert!(
        u.links
            .iter()
            .all(|l| l.last_transition_time == Some(Time(at(0))))
    );
    let w = u.wired.unwrap();
    assert_eq!(
        (
            w.type_.as_str(),
            w.status.as_str(),
            w.reason.as_str(),
            w.observed_generation
        ),
        (WIRED_CONDITION, "False", "Pending", Some(3))
    );
    assert_eq!(w.last_transition_time, Time(at(0)));
}

#[test]
fn nothing_changed_means_no_write_and_the_times_are_kept() {
    let results = [
        connected(App::Sonarr, App::Qbittorrent),
        LinkResult::failed(App::Prowlarr, App::Sonarr, "HTTP 500 from prowlarr"),
    ];
    let first = status_update(None, &results, Some(1), at(0));
    let second = status_update(Some(&stored(&first)), &results, Some(1), at(60));
    assert!(!second.differs, "{second:?}");
    assert!(second.changed.is_empty());
    assert_eq!(second.links, first.links, "transition times kept");
    assert_eq!(second.wired, first.wired);
}

#[test]
fn changed_lists_only_the_links_whose_state_changed() {
    let before = [
        connected(App::Sonarr, App::Qbittorrent),
        LinkResult::pending(App::Radarr, App::Qbittorrent, "waiting for radarr"),
        LinkResult::failed(App::Prowlarr, App::Sonarr, "HTTP 500"),
    ];
    let first = status_update(None, &before, Some(1), at(0));
    let after = [
        connected(App::Sonarr, App::Qbittorrent),
        connected(App::Radarr, App::Qbittorrent),
        // Same state, other message: written, but not a change (no event).
        LinkResult::failed(App::Prowlarr, App::Sonarr, "timed out"),
    ];
    let u = status_update(Some(&stored(&first)), &after, Some(1), at(60));
    assert!(u.differs);
    assert_eq!(u.changed, [connected(App::Radarr, App::Qbittorrent)]);
    let times: Vec<Option<Time>> = u
        .links
        .iter()
        .map(|l| l.last_transition_time.clone())
        .collect();
    assert_eq!(
        times,
        [Some(Time(at(0))), Some(Time(at(60))), Some(Time(at(0)))]
    );
    assert_eq!(u.links[2].message, "timed out");
    // Wired stays False (still a failed link): its transition time is kept.
    let w = u.wired.clone().unwrap();
    assert_eq!(
        (w.status.as_str(), w.reason.as_str()),
        ("False", "LinkFailed")
    );
    assert_eq!(w.last_transition_time, Time(at(0)));

    // Everything Connected: Wired flips, with a new transition time.
    let all = [
        connected(App::Sonarr, App::Qbittorrent),
        connected(App::Radarr, App::Qbittorrent),
        connected(App::Prowlarr, App::Sonarr),
    ];
    let prev = MediaStackStatus {
        links: u.links.clone(),
        conditions: u.wired.iter().cloned().collect(),
        ..Default::default()
    };
    let v = status_update(Some(&prev), &all, Some(1), at(120));
    assert_eq!(v.changed, [connected(App::Prowlarr, App::Sonarr)]);
    let w = v.wired.unwrap();
    assert_eq!(
        (w.status.as_str(), w.reason.as_str()),
        ("True", "Connected")
    );
    assert_eq!(w.last_transition_time, Time(at(120)));
}

#[test]
fn a_new_generation_or_a_link_turned_off_is_written() {
    let results = [connected(App::Sonarr, App::Qbittorrent)];
    let first = status_update(None, &results, Some(1), at(0));
    let old = stored(&first);

    let u = status_update(Some(&old), &results, Some(2), at(60));
    assert!(u.differs, "observedGeneration of Wired follows the stack");
    assert!(u.changed.is_empty());

    // The link was turned off: no links, and the task's condition goes.
    let u = status_update(Some(&old), &[], Some(2), at(60));
    assert!(u.differs);
    assert!(u.links.is_empty() && u.wired.is_none());

    // Nothing wanted and nothing stored: no write.
    let u = status_update(Some(&MediaStackStatus::default()), &[], Some(2), at(60));
    assert!(!u.differs);
    let u = status_update(None, &[], None, at(60));
    assert!(!u.differs);
}

#[test]
fn the_reconciles_own_conditions_do_not_count_as_the_tasks() {
    let results = [connected(App::Sonarr, App::Qbittorrent)];
    let first = status_update(None, &results, Some(1), at(0));
    let mut old = stored(&first);
    let mut ready = first.wired.clone().unwrap();
    ready.type_ = "Ready".into();
    ready.reason = "AllAppsReady".into();
    old.conditions.insert(0, ready);
    let u = status_update(Some(&old), &results, Some(1), at(60));
    assert!(!u.differs, "{u:?}");
}

fn cfg() -> RunnerConfig {
    RunnerConfig {
        connected_period: Duration::from_secs(600),
        pending_period: Duration::from_secs(15),
        min_backoff: Duration::from_secs(30),
        max_backoff: Duration::from_secs(300),
        ..Default::default()
    }
}

#[test]
fn the_next_pass_comes_by_state_with_a_doubling_bounded_backoff() {
    let ok = [connected(App::Sonarr, App::Qbittorrent)];
    let pending = [
        connected(App::Sonarr, App::Qbittorrent),
        LinkResult::pending(App::Radarr, App::Qbittorrent, "waiting"),
    ];
    let failed = [
        LinkResult::pending(App::Radarr, App::Qbittorrent, "waiting"),
        LinkResult::failed(App::Sonarr, App::Qbittorrent, "HTTP 500"),
    ];
    assert_eq!(next_delay(&ok, 0, &cfg()), Duration::from_secs(600));
    assert_eq!(next_delay(&[], 0, &cfg()), Duration::from_secs(600));
    assert_eq!(next_delay(&pending, 0, &cfg()), Duration::from_secs(15));
    let backoff: Vec<u64> = (1..=6)
        .map(|n| next_delay(&failed, n, &cfg()).as_secs())
        .collect();
    assert_eq!(backoff, [30, 60, 120, 240, 300, 300]);
    assert_eq!(
        next_delay(&failed, u32::MAX, &cfg()),
        Duration::from_secs(300)
    );
}

fn app(name: &str, ready: bool) -> AppStatus {
    AppStatus {
        name: name.into(),
        ready,
        ready_replicas: i32::from(ready),
        ..Default::default()
    }
}

#[test]
fn ready_apps_are_those_the_reconcile_reported_ready() {
    let mut stack = fixtures::stack();
    assert_eq!(ready_apps(&stack), Vec::<App>::new());
    stack.status = Some(MediaStackStatus {
        apps: vec![
            app("sonarr", true),
            app("radarr", false),
            app("qbittorrent", true),
            app("dozzle", true),
            app("prowlarr", true),
        ],
        ..Default::default()
    });
    assert_eq!(
        ready_apps(&stack),
        [App::Sonarr, App::Prowlarr, App::Qbittorrent]
    );
}
