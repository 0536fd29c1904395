//! Wiring: the apps come up connected to each other (issue 15, first layers).
//!
//! Each link (e.g. Sonarr -> qBittorrent) is a pure *plan*: a function from
//! what the app has now (its parsed API answers) and what we want to a list of
//! typed [`ApiRequest`]s. The *flow* ([`flow`]) reads the app through an
//! [`ArrClient`], asks the plan, sends the writes and turns the outcome into a
//! [`LinkResult`] ready for `status.links[]`.
//!
//! Rules every plan keeps:
//! - it creates and updates only objects the operator named (a download client
//!   called `mediastack`, Prowlarr applications `mediastack-sonarr` /
//!   `mediastack-radarr`, Jellyseerr servers of the same names, root folders
//!   and qBittorrent categories it asks for); it never changes or deletes
//!   anything else;
//! - it compares only the fields it owns, so a second pass over an app that is
//!   already wired plans no write; values the app masks in its answers
//!   (`********`) count as equal;
//! - it never puts an API key or password in a message, log or error.
//!
//! [`runner`] is the task beside the reconcile that runs the links of
//! `spec.wiring` and writes `status.links` and the `Wired` condition. Not
//! built yet (see docs/wiring.md): running Jellyseerr's flow from the task,
//! NetworkPolicies admitting the operator's calls, Jellyfin's wizard, Bazarr
//! and the dashboard widgets.

pub mod arr;
pub mod client;
pub mod flow;
pub mod jellyseerr;
pub mod prowlarr;
pub mod qbittorrent;
pub mod runner;
pub mod secrets;

#[cfg(any(test, feature = "testing"))]
pub mod contract;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use client::{ApiKey, ApiRequest, ApiResponse, ArrClient, Body, ClientConfig, WiringError};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Type of the condition the wiring task owns in `status.conditions`.
pub const WIRED_CONDITION: &str = crate::api::condition::ConditionType::Wired.as_str();

/// Name of every object the operator creates inside an app.
pub const MANAGED_NAME: &str = "mediastack";

/// Value the *arr apps answer in place of a secret field.
pub const MASKED: &str = "********";

/// The apps a link can join.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum App {
    Sonarr,
    Radarr,
    Prowlarr,
    Jellyseerr,
    Jellyfin,
    Qbittorrent,
}

impl App {
    pub fn as_str(self) -> &'static str {
        match self {
            App::Sonarr => "sonarr",
            App::Radarr => "radarr",
            App::Prowlarr => "prowlarr",
            App::Jellyseerr => "jellyseerr",
            App::Jellyfin => "jellyfin",
            App::Qbittorrent => "qbittorrent",
        }
    }
}

impl std::fmt::Display for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// State of one link, as `status.links[].state` will show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LinkState {
    /// Both ends answered and the far end is set up in the near one.
    Connected,
    /// Not attempted yet (an end is not Ready).
    Pending,
    /// Attempted and failed; `message` says why. Retried later.
    Failed,
}

/// One link's outcome, shaped for `status.links[]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinkResult {
    pub from: App,
    pub to: App,
    pub state: LinkState,
    pub message: String,
}

impl LinkResult {
    pub fn connected(from: App, to: App, message: impl Into<String>) -> Self {
        Self {
            from,
            to,
            state: LinkState::Connected,
            message: message.into(),
        }
    }
    pub fn pending(from: App, to: App, message: impl Into<String>) -> Self {
        Self {
            from,
            to,
            state: LinkState::Pending,
            message: message.into(),
        }
    }
    pub fn failed(from: App, to: App, message: impl Into<String>) -> Self {
        Self {
            from,
            to,
            state: LinkState::Failed,
            message: message.into(),
        }
    }
}

/// Where an app answers inside the cluster (its Service) and with which key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Service name (resolvable from the operator and from the other apps).
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }
    /// `http://host:port`, the in-cluster URL the apps give each other.
    pub fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }
}

/// True when `have` (from an app's answer) counts as equal to `want`:
/// equal, or masked by the app (secrets are never echoed back).
pub(crate) fn same_or_masked(have: Option<&serde_json::Value>, want: &serde_json::Value) -> bool {
    match have {
        Some(h) if h == want => true,
        Some(serde_json::Value::String(s)) if s == MASKED => true,
        _ => false,
    }
}
