//! Tests of the wiring layer: pure plans, the contract checker itself, and the
//! whole flow against loopback fakes built from the apps' OpenAPI documents.

mod contract_checks;
mod fake;
mod flows;
mod plans;
mod qbit_flow;
mod runner;

use std::time::Duration;

use super::arr::QbittorrentTarget;
use super::contract::Contract;
use super::{ApiKey, ArrClient, ClientConfig, Endpoint};

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
