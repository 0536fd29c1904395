//! Pure plans: what is written, to which object, and that nothing else is.

use hyper::Method;
use serde_json::{Value, json};

use super::qbit;
use crate::wiring::arr::{self, Arr};
use crate::wiring::jellyseerr::{self, JellyfinPlan, JellyfinWant, ServerWant};
use crate::wiring::prowlarr::{self, ArrTarget};
use crate::wiring::{Endpoint, MASKED, qbittorrent};

fn field<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .map(|f| &f["value"])
        .unwrap_or(&Value::Null)
}

/// What Sonarr answers after the plan's POST (secrets masked).
fn as_stored(mut body: Value, id: i64) -> Value {
    body["id"] = json!(id);
    for f in body["fields"].as_array_mut().unwrap() {
        if f["name"] == "password" || f["name"] == "apiKey" {
            f["value"] = json!(MASKED);
        }
    }
    body
}

#[test]
fn download_client_is_created_named_mediastack_with_the_arrs_category() {
    for (which, field_name, category) in [
        (Arr::Sonarr, "tvCategory", "tv"),
        (Arr::Radarr, "movieCategory", "movies"),
    ] {
        let writes = arr::plan_download_client(which, &[], &qbit());
        assert_eq!(writes.len(), 1);
        let w = &writes[0];
        assert_eq!(
            (w.method.clone(), w.path.as_str()),
            (Method::POST, "/api/v3/downloadclient")
        );
        let b = w.json().unwrap();
        assert_eq!(b["name"], "mediastack");
        assert_eq!(b["implementation"], "QBittorrent");
        assert_eq!(b["protocol"], "torrent");
        assert_eq!(field(b, "host"), "media-qbittorrent");
        assert_eq!(field(b, "port"), 8080);
        assert_eq!(field(b, "username"), "admin");
        assert_eq!(field(b, "password"), "s3cret-qbit-password");
        assert_eq!(field(b, field_name), category);
        // One /data tree: no remote path mapping is ever planned.
        assert!(writes.iter().all(|w| !w.path.contains("remotepathmapping")));
    }
}

#[test]
fn download_client_second_pass_plans_no_write_even_with_masked_password() {
    let first = arr::plan_download_client(Arr::Sonarr, &[], &qbit());
    let stored = as_stored(first[0].json().unwrap().clone(), 7);
    assert!(arr::plan_download_client(Arr::Sonarr, &[stored], &qbit()).is_empty());
}

#[test]
fn download_client_drift_is_put_back_keeping_the_users_tuning() {
    let first = arr::plan_download_client(Arr::Sonarr, &[], &qbit());
    let mut stored = as_stored(first[0].json().unwrap().clone(), 7);
    stored["priority"] = json!(5); // the user's choice, not ours
    for f in stored["fields"].as_array_mut().unwrap() {
        if f["name"] == "host" {
            f["value"] = json!("old-host");
        }
    }
    let writes = arr::plan_download_client(Arr::Sonarr, &[stored], &qbit());
    assert_eq!(writes.len(), 1);
    assert_eq!(
        (writes[0].method.clone(), writes[0].path.as_str()),
        (Method::PUT, "/api/v3/downloadclient/7")
    );
    let b = writes[0].json().unwrap();
    assert_eq!(field(b, "host"), "media-qbittorrent");
    assert_eq!(b["priority"], 5);
}

#[test]
fn the_users_own_download_clients_are_never_written() {
    let users = json!({"id": 3, "name": "qBittorrent", "implementation": "QBittorrent",
        "fields": [{"name": "host", "value": "192.168.1.10"}]});
    let writes = arr::plan_download_client(Arr::Radarr, std::slice::from_ref(&users), &qbit());
    assert_eq!(writes.len(), 1);
    assert_eq!(
        writes[0].method,
        Method::POST,
        "ours is added beside theirs, theirs is not edited"
    );
    assert!(writes.iter().all(|w| !w.path.ends_with("/3")));
}

#[test]
fn root_folder_is_added_once_and_others_are_left() {
    let theirs = json!({"id": 1, "path": "/mnt/old-tv"});
    let w = arr::plan_root_folder(Arr::Sonarr, std::slice::from_ref(&theirs));
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].json().unwrap(), &json!({"path": "/data/media/tv"}));
    assert_eq!(
        arr::plan_root_folder(Arr::Radarr, &[])[0].json().unwrap(),
        &json!({"path": "/data/media/movies"})
    );
    // The arrs answer paths with a trailing slash.
    let ours = json!({"id": 2, "path": "/data/media/tv/"});
    assert!(arr::plan_root_folder(Arr::Sonarr, &[theirs, ours]).is_empty());
}

fn target(which: Arr) -> ArrTarget {
    ArrTarget {
        arr: which,
        endpoint: Endpoint::new(format!("media-{}", which.app()), 8989),
        api_key: "k".repeat(32),
    }
}

#[test]
fn prowlarr_applications_are_named_full_sync_with_in_cluster_urls() {
    let prowlarr_ep = Endpoint::new("media-prowlarr", 9696);
    let w = prowlarr::plan_application(&[], &prowlarr_ep, &target(Arr::Sonarr));
    assert_eq!(w.len(), 1);
    let b = w[0].json().unwrap();
    assert_eq!(w[0].path, "/api/v1/applications");
    assert_eq!(b["name"], "mediastack-sonarr");
    assert_eq!(b["implementation"], "Sonarr");
    assert_eq!(b["syncLevel"], "fullSync");
    assert_eq!(field(b, "prowlarrUrl"), "http://media-prowlarr:9696");
    assert_eq!(field(b, "baseUrl"), "http://media-sonarr:8989");
    assert_eq!(field(b, "apiKey"), &json!("k".repeat(32)));
    let stored = as_stored(b.clone(), 4);
    assert!(
        prowlarr::plan_application(
            std::slice::from_ref(&stored),
            &prowlarr_ep,
            &target(Arr::Sonarr)
        )
        .is_empty()
    );
    // Radarr's application is another object: planned beside Sonarr's.
    let w = prowlarr::plan_application(&[stored], &prowlarr_ep, &target(Arr::Radarr));
    assert_eq!(w[0].json().unwrap()["name"], "mediastack-radarr");
    assert_eq!(w[0].method, Method::POST);
}

fn server_want(which: Arr) -> ServerWant {
    ServerWant {
        arr: which,
        endpoint: Endpoint::new(format!("media-{}", which.app()), 7878),
        api_key: "a".repeat(32),
        profile: (1, "Any".into()),
    }
}

#[test]
fn jellyseerr_servers_are_created_then_left_alone() {
    let user_default =
        json!({"id": 0, "name": "My Radarr", "isDefault": true, "hostname": "10.0.0.2"});
    let w = jellyseerr::plan_server(
        std::slice::from_ref(&user_default),
        &server_want(Arr::Radarr),
    );
    assert_eq!(w.len(), 1);
    let b = w[0].json().unwrap();
    assert_eq!(w[0].path, "/settings/radarr");
    assert_eq!(b["name"], "mediastack-radarr");
    assert_eq!(b["activeDirectory"], "/data/media/movies");
    assert_eq!(b["activeProfileId"], 1);
    assert_eq!(
        b["isDefault"], false,
        "the user's default server stays the default"
    );
    let mut stored = b.clone();
    stored["id"] = json!(1);
    stored["activeProfileId"] = json!(6); // changed by the user afterwards
    assert!(
        jellyseerr::plan_server(
            &[user_default.clone(), stored.clone()],
            &server_want(Arr::Radarr)
        )
        .is_empty()
    );
    stored["port"] = json!(1234);
    let w = jellyseerr::plan_server(&[user_default, stored], &server_want(Arr::Radarr));
    assert_eq!(
        (w[0].method.clone(), w[0].path.as_str()),
        (Method::PUT, "/settings/radarr/1")
    );
    assert_eq!(w[0].json().unwrap()["port"], 7878);
    assert_eq!(
        w[0].json().unwrap()["activeProfileId"],
        6,
        "the user's profile choice is kept"
    );
}

#[test]
fn jellyseerr_signs_in_to_jellyfin_only_when_unset() {
    let want = JellyfinWant {
        endpoint: Endpoint::new("media-jellyfin", 8096),
        admin_user: "admin".into(),
        admin_password: "pw".into(),
        admin_email: "admin@mediastack.invalid".into(),
    };
    let JellyfinPlan::Write(w) = jellyseerr::plan_jellyfin(&json!({}), &want) else {
        panic!("expected a sign-in")
    };
    assert_eq!(w[0].path, "/auth/jellyfin");
    assert_eq!(
        w[0].json().unwrap()["hostname"],
        "http://media-jellyfin:8096"
    );
    assert_eq!(w[0].json().unwrap()["serverType"], 2);
    assert_eq!(
        jellyseerr::plan_jellyfin(&json!({"hostname": "http://media-jellyfin:8096/"}), &want),
        JellyfinPlan::Done
    );
    assert_eq!(
        jellyseerr::plan_jellyfin(&json!({"hostname": "http://jf.home:8096"}), &want),
        JellyfinPlan::KeptUsers("http://jf.home:8096".into())
    );
}

#[test]
fn qbittorrent_categories_and_save_path() {
    let wanted = qbittorrent::wanted_categories();
    assert_eq!(
        wanted,
        vec![
            ("tv".to_string(), "/data/torrents/tv".to_string()),
            ("movies".to_string(), "/data/torrents/movies".to_string())
        ]
    );
    let current = json!({"linux-isos": {"name": "linux-isos", "savePath": "/isos"},
                         "tv": {"name": "tv", "savePath": "/downloads/tv"}});
    let w = qbittorrent::plan_categories(&current, &wanted);
    let paths: Vec<&str> = w.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/v2/torrents/editCategory",
            "/api/v2/torrents/createCategory"
        ]
    );
    assert!(format!("{w:?}").contains("/data/torrents/movies"));
    assert!(
        !format!("{w:?}").contains("linux-isos"),
        "the user's category is never touched"
    );
    let done = json!({"linux-isos": {"savePath": "/isos"}, "tv": {"savePath": "/data/torrents/tv/"},
                      "movies": {"savePath": "/data/torrents/movies"}});
    assert!(qbittorrent::plan_categories(&done, &wanted).is_empty());
    let p = qbittorrent::plan_preferences(&json!({"save_path": "/downloads/"}));
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].path, "/api/v2/app/setPreferences");
    assert!(format!("{:?}", p[0].body).contains(r#"{\"save_path\":\"/data/torrents\"}"#));
    assert!(qbittorrent::plan_preferences(&json!({"save_path": "/data/torrents/"})).is_empty());
}

#[test]
fn the_default_profile_is_the_lowest_id() {
    let profiles = [
        json!({"id": 4, "name": "HD-1080p"}),
        json!({"id": 1, "name": "Any"}),
    ];
    assert_eq!(
        jellyseerr::default_profile(&profiles),
        Some((1, "Any".to_string()))
    );
    assert_eq!(jellyseerr::default_profile(&[]), None);
}
