//! Loopback stand-ins for the apps, shared by the unit tests and the cluster
//! tests (`e2e/tests/wiring.rs`, through the `testing` feature): fakes of
//! Sonarr, Radarr and Prowlarr (and Jellyseerr) built from their published
//! OpenAPI documents ([`fake`], [`super::contract`]), a qBittorrent WebUI
//! stand-in ([`qbit`]), and an [`Addressing`] that points the wiring task at
//! them. Not part of the operator binary.

pub mod fake;
pub mod qbit;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::arr::{Arr, QbittorrentTarget};
use super::contract::Contract;
use super::runner::Addressing;
use super::{ApiKey, App, ArrClient, ClientConfig, Endpoint};
use fake::{Fake, Running};

pub const SONARR_KEY: &str = "0123456789abcdef0123456789abcdef";
pub const RADARR_KEY: &str = "fedcba9876543210fedcba9876543210";
pub const PROWLARR_KEY: &str = "00112233445566778899aabbccddeeff";
pub const JELLYSEERR_KEY: &str = "MTcwMDAwMDAwMDAwMGplbGx5c2VlcnI=";

pub fn sonarr() -> Contract {
    Contract::load("sonarr-v3.json", "")
}
pub fn radarr() -> Contract {
    Contract::load("radarr-v3.json", "")
}
pub fn prowlarr() -> Contract {
    Contract::load("prowlarr-v1.json", "")
}
pub fn jellyseerr() -> Contract {
    Contract::load("jellyseerr-api.yml", "/api/v1")
}

pub fn qbit() -> QbittorrentTarget {
    QbittorrentTarget {
        endpoint: Endpoint::new("media-qbittorrent", 8080),
        username: "admin".into(),
        password: "s3cret-qbit-password".into(),
    }
}

/// Short timeouts and backoff so failure tests finish fast.
pub fn fast() -> ClientConfig {
    ClientConfig {
        timeout: Duration::from_millis(300),
        retries: 2,
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
    }
}

pub fn client(base: &str, key: &str) -> ArrClient {
    ArrClient::new(base, Some(ApiKey::new(key)), fast()).unwrap()
}

/// A download client of the user's own (the operator must leave it alone).
pub fn users_client() -> Value {
    json!({"name": "my-qbit", "implementation": "QBittorrent", "configContract": "QBittorrentSettings",
           "protocol": "torrent", "enable": true, "priority": 2,
           "fields": [{"name": "host", "value": "192.168.1.10"}, {"name": "password", "value": "theirs"}]})
}

/// A Sonarr or Radarr fake with a download client and a root folder of the
/// user's, and two quality profiles.
pub async fn arr_fake(which: Arr) -> Running {
    let (contract, key) = match which {
        Arr::Sonarr => (sonarr(), SONARR_KEY),
        Arr::Radarr => (radarr(), RADARR_KEY),
    };
    Fake::new(contract, key)
        .seed("/api/v3/downloadclient", vec![users_client()])
        .seed(
            "/api/v3/rootfolder",
            vec![json!({"path": "/mnt/old/", "accessible": true})],
        )
        .seed(
            "/api/v3/qualityprofile",
            vec![
                json!({"id": 4, "name": "HD-1080p"}),
                json!({"id": 1, "name": "Any"}),
            ],
        )
        .start()
        .await
}

/// A Prowlarr fake with an application of the user's.
pub async fn prowlarr_fake() -> Running {
    let users = json!({"name": "Lidarr", "implementation": "Lidarr", "configContract": "LidarrSettings",
                       "syncLevel": "addOnly", "fields": [{"name": "baseUrl", "value": "http://lidarr:8686"}]});
    Fake::new(prowlarr(), PROWLARR_KEY)
        .seed("/api/v1/applications", vec![users])
        .start()
        .await
}

/// Panics when the contract rejected a request or the fake answered off
/// its own contract.
pub fn assert_clean(f: &Running) {
    let st = f.state();
    assert!(
        st.rejected.is_empty(),
        "{}: contract rejected {:?}",
        f.fake.contract.name,
        st.rejected
    );
    assert!(
        st.off_contract.is_empty(),
        "{}: fake answered off-contract {:?}",
        f.fake.contract.name,
        st.off_contract
    );
}

/// Points every app at a loopback base URL, whatever the stack; an app
/// without one gets a closed port (connection refused).
#[derive(Clone, Debug, Default)]
pub struct Loopback(pub HashMap<App, String>);

impl Addressing for Loopback {
    fn base(&self, _namespace: &str, _stack: &str, app: App) -> String {
        self.0
            .get(&app)
            .cloned()
            .unwrap_or_else(|| "http://127.0.0.1:9".into())
    }
}

/// The apps a pass of the example stack calls, each a loopback fake
/// (Sonarr, Radarr, Prowlarr from their contracts; the qBittorrent
/// stand-in with WebUI user `admin`), and the addressing that points the
/// wiring at them.
pub struct LoopbackApps {
    pub sonarr: Running,
    pub radarr: Running,
    pub prowlarr: Running,
    pub qbit: qbit::QbitRunning,
    pub addressing: Loopback,
}

/// Starts [`LoopbackApps`]; qBittorrent's WebUI password is `qbit_password`
/// and its save path the image default `/downloads/`.
pub async fn loopback_apps(qbit_password: &str) -> LoopbackApps {
    let sonarr = arr_fake(Arr::Sonarr).await;
    let radarr = arr_fake(Arr::Radarr).await;
    let prowlarr = prowlarr_fake().await;
    let qbit = qbit::start(qbit::QbitState::new(
        "admin",
        qbit_password,
        json!({}),
        json!({"save_path": "/downloads/"}),
    ))
    .await;
    let addressing = Loopback(HashMap::from([
        (App::Sonarr, sonarr.base()),
        (App::Radarr, radarr.base()),
        (App::Prowlarr, prowlarr.base()),
        (App::Qbittorrent, qbit.base()),
    ]));
    LoopbackApps {
        sonarr,
        radarr,
        prowlarr,
        qbit,
        addressing,
    }
}
