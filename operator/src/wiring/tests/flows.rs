//! The whole wiring flow against loopback fakes that enforce the apps'
//! published OpenAPI documents.

use std::time::Duration;

use serde_json::json;

use super::fake::{Fake, Fault, jellyseerr_special};
use super::{
    JELLYSEERR_KEY, PROWLARR_KEY, RADARR_KEY, SONARR_KEY, arr_fake, assert_clean, client,
    jellyseerr, prowlarr, qbit,
};
use crate::wiring::arr::Arr;
use crate::wiring::flow::{self, JellyseerrArr};
use crate::wiring::jellyseerr::JellyfinWant;
use crate::wiring::prowlarr::ArrTarget;
use crate::wiring::{ApiKey, ApiRequest, App, ArrClient, Endpoint, LinkState};

#[tokio::test]
async fn sonarr_and_radarr_get_download_client_and_root_folder_and_a_second_pass_writes_nothing() {
    for (which, key, category) in [
        (Arr::Sonarr, SONARR_KEY, "tvCategory"),
        (Arr::Radarr, RADARR_KEY, "movieCategory"),
    ] {
        let f = arr_fake(which).await;
        let c = client(&f.base(), key);
        let before_user = f.state().collections["/api/v3/downloadclient"][0].clone();

        let dc = flow::download_client(&c, which, &qbit()).await;
        let rf = flow::root_folder(&c, which).await;
        assert_eq!(dc.result.state, LinkState::Connected, "{:?}", dc.result);
        assert_eq!(
            (dc.result.from, dc.result.to),
            (which.app(), App::Qbittorrent)
        );
        assert_eq!(rf.result.state, LinkState::Connected, "{:?}", rf.result);
        assert_eq!((dc.writes, rf.writes), (1, 1));
        assert_clean(&f);
        {
            let st = f.state();
            let clients = &st.collections["/api/v3/downloadclient"];
            assert_eq!(clients.len(), 2);
            assert_eq!(
                clients[0], before_user,
                "the user's download client is unchanged"
            );
            let ours = clients.iter().find(|c| c["name"] == "mediastack").unwrap();
            let fields = ours["fields"].as_array().unwrap();
            let get = |n: &str| fields.iter().find(|f| f["name"] == n).unwrap()["value"].clone();
            assert_eq!(get("host"), "media-qbittorrent");
            assert_eq!(get("password"), "s3cret-qbit-password");
            assert_eq!(get(category), which.category());
            let roots: Vec<&str> = st.collections["/api/v3/rootfolder"]
                .iter()
                .map(|r| r["path"].as_str().unwrap())
                .collect();
            assert_eq!(roots, ["/mnt/old/", which.root_folder()]);
        }

        let writes_before = f.state().writes;
        let dc2 = flow::download_client(&c, which, &qbit()).await;
        let rf2 = flow::root_folder(&c, which).await;
        assert_eq!(
            (dc2.result.state, rf2.result.state),
            (LinkState::Connected, LinkState::Connected)
        );
        assert_eq!((dc2.writes, rf2.writes), (0, 0));
        assert_eq!(
            f.state().writes,
            writes_before,
            "the second pass sent no write"
        );
        assert_clean(&f);
    }
}

#[tokio::test]
async fn prowlarr_gets_one_application_per_arr_and_a_second_pass_writes_nothing() {
    let users = json!({"name": "Lidarr", "implementation": "Lidarr", "configContract": "LidarrSettings",
                       "syncLevel": "addOnly", "fields": [{"name": "baseUrl", "value": "http://lidarr:8686"}]});
    let f = Fake::new(prowlarr(), PROWLARR_KEY)
        .seed("/api/v1/applications", vec![users.clone()])
        .start()
        .await;
    let c = client(&f.base(), PROWLARR_KEY);
    let me = Endpoint::new("media-prowlarr", 9696);
    let targets = [
        ArrTarget {
            arr: Arr::Sonarr,
            endpoint: Endpoint::new("media-sonarr", 8989),
            api_key: SONARR_KEY.into(),
        },
        ArrTarget {
            arr: Arr::Radarr,
            endpoint: Endpoint::new("media-radarr", 7878),
            api_key: RADARR_KEY.into(),
        },
    ];
    for t in &targets {
        let o = flow::prowlarr_application(&c, &me, t).await;
        assert_eq!(o.result.state, LinkState::Connected, "{:?}", o.result);
        assert_eq!(
            (o.result.from, o.result.to, o.writes),
            (App::Prowlarr, t.arr.app(), 1)
        );
    }
    assert_clean(&f);
    {
        let st = f.state();
        let apps = &st.collections["/api/v1/applications"];
        let names: Vec<&str> = apps.iter().map(|a| a["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Lidarr", "mediastack-sonarr", "mediastack-radarr"]);
        assert_eq!(
            apps[0]["syncLevel"], users["syncLevel"],
            "the user's application is unchanged"
        );
        assert!(apps[1..].iter().all(|a| a["syncLevel"] == "fullSync"));
    }
    let writes = f.state().writes;
    for t in &targets {
        assert_eq!(flow::prowlarr_application(&c, &me, t).await.writes, 0);
    }
    assert_eq!(f.state().writes, writes);
    assert_clean(&f);
}

#[tokio::test]
async fn jellyseerr_gets_jellyfin_and_both_arrs_and_a_second_pass_writes_nothing() {
    let son = arr_fake(Arr::Sonarr).await;
    let rad = arr_fake(Arr::Radarr).await;
    let js = Fake::new(jellyseerr(), JELLYSEERR_KEY)
        .with_special(jellyseerr_special)
        .singleton("/settings/jellyfin", json!({"hostname": ""}))
        .singleton("/settings/public", json!({"initialized": false}))
        .start()
        .await;
    let c = client(&js.base(), JELLYSEERR_KEY);
    let son_c = client(&son.base(), SONARR_KEY);
    let rad_c = client(&rad.base(), RADARR_KEY);
    let jellyfin = JellyfinWant {
        endpoint: Endpoint::new("media-jellyfin", 8096),
        admin_user: "admin".into(),
        admin_password: "jf-admin-pw".into(),
        admin_email: "admin@mediastack.invalid".into(),
    };
    let arrs = [
        JellyseerrArr {
            arr: Arr::Sonarr,
            client: &son_c,
            endpoint: Endpoint::new("media-sonarr", 8989),
            api_key: SONARR_KEY.into(),
        },
        JellyseerrArr {
            arr: Arr::Radarr,
            client: &rad_c,
            endpoint: Endpoint::new("media-radarr", 7878),
            api_key: RADARR_KEY.into(),
        },
    ];
    let out = flow::jellyseerr(&c, &jellyfin, &arrs).await;
    let links: Vec<_> = out.iter().map(|o| (o.result.to, o.result.state)).collect();
    assert_eq!(
        links,
        [
            (App::Jellyfin, LinkState::Connected),
            (App::Sonarr, LinkState::Connected),
            (App::Radarr, LinkState::Connected)
        ],
        "{out:?}"
    );
    assert_eq!(
        out.iter().map(|o| o.writes).collect::<Vec<_>>(),
        [2, 1, 1],
        "sign-in + initialize, one per server"
    );
    assert_clean(&js);
    {
        let st = js.state();
        assert_eq!(
            st.singletons["/settings/jellyfin"]["hostname"],
            "http://media-jellyfin:8096"
        );
        assert_eq!(st.singletons["/settings/public"]["initialized"], true);
        let s = &st.collections["/settings/sonarr"][0];
        assert_eq!(
            (
                s["name"].as_str(),
                s["hostname"].as_str(),
                s["port"].as_i64()
            ),
            (Some("mediastack-sonarr"), Some("media-sonarr"), Some(8989))
        );
        assert_eq!(
            (
                s["activeProfileId"].as_i64(),
                s["activeProfileName"].as_str()
            ),
            (Some(1), Some("Any"))
        );
        assert_eq!(
            st.collections["/settings/radarr"][0]["activeDirectory"],
            "/data/media/movies"
        );
    }
    let writes = js.state().writes;
    let again = flow::jellyseerr(&c, &jellyfin, &arrs).await;
    assert!(
        again
            .iter()
            .all(|o| o.result.state == LinkState::Connected && o.writes == 0),
        "{again:?}"
    );
    assert_eq!(js.state().writes, writes, "the second pass sent no write");
    assert_clean(&js);
}

#[tokio::test]
async fn a_500_fails_the_link_with_the_message_after_bounded_retries_then_recovers() {
    let f = arr_fake(Arr::Sonarr).await;
    f.state().fault = Some(Fault::Status(500));
    let c = client(&f.base(), SONARR_KEY);
    let o = flow::download_client(&c, Arr::Sonarr, &qbit()).await;
    assert_eq!(o.result.state, LinkState::Failed);
    assert!(
        o.result.message.contains("HTTP 500") && o.result.message.contains("injected"),
        "{}",
        o.result.message
    );
    assert!(
        o.result.message.contains("after 3 attempts"),
        "{}",
        o.result.message
    );
    assert_eq!(f.state().requests, 3, "1 try + 2 retries, no more");
    // Retried on the next pass once the app is back.
    f.state().fault = None;
    let o = flow::download_client(&c, Arr::Sonarr, &qbit()).await;
    assert_eq!(o.result.state, LinkState::Connected, "{:?}", o.result);
}

#[tokio::test]
async fn a_timeout_fails_the_link_after_bounded_retries() {
    let f = arr_fake(Arr::Radarr).await;
    f.state().fault = Some(Fault::Delay(Duration::from_secs(5)));
    let c = client(&f.base(), RADARR_KEY);
    let started = std::time::Instant::now();
    let o = flow::root_folder(&c, Arr::Radarr).await;
    assert_eq!(o.result.state, LinkState::Failed);
    assert!(
        o.result.message.contains("no answer within 300ms"),
        "{}",
        o.result.message
    );
    assert_eq!(f.state().requests, 3);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "gave up before the app answered"
    );
}

#[tokio::test]
async fn an_app_that_is_not_there_fails_and_a_client_error_is_not_retried() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let c = client(&format!("http://{addr}"), SONARR_KEY);
    let o = flow::root_folder(&c, Arr::Sonarr).await;
    assert_eq!(o.result.state, LinkState::Failed);
    assert!(
        o.result.message.contains("connection failed"),
        "{}",
        o.result.message
    );

    let f = arr_fake(Arr::Sonarr).await;
    let wrong = client(&f.base(), "not-the-key");
    let o = flow::download_client(&wrong, Arr::Sonarr, &qbit()).await;
    assert!(
        o.result.message.contains("HTTP 401"),
        "{}",
        o.result.message
    );
    assert_eq!(f.state().requests, 1, "4xx is not retried");
}

#[tokio::test]
async fn the_fake_rejects_an_off_contract_request_with_the_reason() {
    let f = arr_fake(Arr::Sonarr).await;
    let c = client(&f.base(), SONARR_KEY);
    let err = c
        .send(&ApiRequest::post(
            "/api/v3/downloadclient",
            json!({"name": "x", "remotePath": "/downloads"}),
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("HTTP 400") && err.contains("remotePath"),
        "{err}"
    );
    let err = c
        .send(&ApiRequest::get("/api/v3/downloadclients"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 400") && err.contains("no path"), "{err}");
    assert_eq!(f.state().rejected.len(), 2);
    assert_eq!(f.state().writes, 0, "a rejected request changes nothing");
}

#[tokio::test]
async fn the_api_key_never_shows_in_debug_or_messages() {
    let f = arr_fake(Arr::Sonarr).await;
    f.state().fault = Some(Fault::Status(503));
    let c = ArrClient::new(&f.base(), Some(ApiKey::new(SONARR_KEY)), super::fast()).unwrap();
    assert!(!format!("{c:?}").contains(SONARR_KEY));
    let o = flow::download_client(&c, Arr::Sonarr, &qbit()).await;
    let shown = format!("{o:?}");
    assert!(
        !shown.contains(SONARR_KEY) && !shown.contains("s3cret-qbit-password"),
        "{shown}"
    );
    assert!(ArrClient::new("https://sonarr:8989", None, super::fast()).is_err());
    assert!(ArrClient::new("sonarr:8989", None, super::fast()).is_err());
}
