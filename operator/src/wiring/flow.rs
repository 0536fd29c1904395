//! The wiring flow: read an app, plan, send the writes, report the link.
//!
//! Each function runs one link to the end and never panics or returns an
//! error: a failure becomes a `Failed` [`LinkResult`] with the message (the
//! client has already retried it within its bounds), so one broken app never
//! stops the others.

use serde_json::Value;

use super::arr::{self, Arr, QbittorrentTarget};
use super::jellyseerr::{self, JellyfinPlan, JellyfinWant, ServerWant};
use super::prowlarr::{self, ArrTarget};
use super::qbittorrent;
use super::{ApiRequest, App, ArrClient, Endpoint, LinkResult, WiringError};

/// A link's result and how many writes it sent (0 on an app already wired).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkOutcome {
    pub result: LinkResult,
    pub writes: usize,
}

async fn send_all(client: &ArrClient, writes: &[ApiRequest]) -> Result<usize, WiringError> {
    for w in writes {
        client.send(w).await?;
    }
    Ok(writes.len())
}

/// The message of a Connected link says what is set, the same whether this
/// pass wrote it or found it set: `status.links[]` describes the link, so a
/// pass that changes nothing leaves the status as it is (no status write).
/// How many writes a pass sent is logged, and counted in [`LinkOutcome`].
fn outcome(from: App, to: App, done: Result<usize, WiringError>, what: &str) -> LinkOutcome {
    match done {
        Ok(n) => {
            tracing::debug!(%from, %to, writes = n, "{what}");
            LinkOutcome {
                result: LinkResult::connected(from, to, format!("{what}: set")),
                writes: n,
            }
        }
        Err(e) => LinkOutcome {
            result: LinkResult::failed(from, to, format!("{what}: {e}")),
            writes: 0,
        },
    }
}

/// Sonarr/Radarr -> qBittorrent: the download client `mediastack`.
pub async fn download_client(
    client: &ArrClient,
    which: Arr,
    qbit: &QbittorrentTarget,
) -> LinkOutcome {
    let done = async {
        let current: Vec<Value> = client.get_json(arr::DOWNLOAD_CLIENT_PATH).await?;
        send_all(client, &arr::plan_download_client(which, &current, qbit)).await
    }
    .await;
    outcome(
        which.app(),
        App::Qbittorrent,
        done,
        "download client mediastack",
    )
}

/// Sonarr/Radarr: the root folder (reported as a link of the arr to itself).
pub async fn root_folder(client: &ArrClient, which: Arr) -> LinkOutcome {
    let done = async {
        let current: Vec<Value> = client.get_json(arr::ROOT_FOLDER_PATH).await?;
        send_all(client, &arr::plan_root_folder(which, &current)).await
    }
    .await;
    outcome(
        which.app(),
        which.app(),
        done,
        &format!("root folder {}", which.root_folder()),
    )
}

/// Prowlarr -> Sonarr/Radarr: the application `mediastack-<arr>`.
pub async fn prowlarr_application(
    client: &ArrClient,
    prowlarr: &Endpoint,
    target: &ArrTarget,
) -> LinkOutcome {
    let done = async {
        let current: Vec<Value> = client.get_json(prowlarr::APPLICATIONS_PATH).await?;
        send_all(
            client,
            &prowlarr::plan_application(&current, prowlarr, target),
        )
        .await
    }
    .await;
    let what = format!("application {}", prowlarr::application_name(target.arr));
    outcome(App::Prowlarr, target.arr.app(), done, &what)
}

/// Jellyseerr -> Jellyfin: sign in with the admin (first set-up only).
pub async fn jellyseerr_jellyfin(client: &ArrClient, want: &JellyfinWant) -> LinkOutcome {
    let done = async {
        let current: Value = client.get_json(jellyseerr::JELLYFIN_SETTINGS_PATH).await?;
        match jellyseerr::plan_jellyfin(&current, want) {
            JellyfinPlan::Done => Ok(Ok(0)),
            JellyfinPlan::KeptUsers(h) => Ok(Err(h)),
            JellyfinPlan::Write(writes) => {
                for w in &writes {
                    let resp = client.send(w).await?;
                    client.remember_cookie(&resp);
                }
                Ok(Ok(writes.len()))
            }
        }
    }
    .await;
    match done {
        Ok(Err(host)) => LinkOutcome {
            result: LinkResult::connected(
                App::Jellyseerr,
                App::Jellyfin,
                format!("Jellyseerr uses the Jellyfin at {host} set by the user; kept"),
            ),
            writes: 0,
        },
        Ok(Ok(n)) => outcome(App::Jellyseerr, App::Jellyfin, Ok(n), "Jellyfin sign-in"),
        Err(e) => outcome(App::Jellyseerr, App::Jellyfin, Err(e), "Jellyfin sign-in"),
    }
}

/// The far end of a Jellyseerr server link: the arr, its client (to read its
/// quality profiles), its Service and key.
pub struct JellyseerrArr<'a> {
    pub arr: Arr,
    pub client: &'a ArrClient,
    pub endpoint: Endpoint,
    pub api_key: String,
}

/// Jellyseerr -> Sonarr/Radarr: the server `mediastack-<arr>`.
pub async fn jellyseerr_server(client: &ArrClient, far: &JellyseerrArr<'_>) -> LinkOutcome {
    let done = async {
        let profiles: Vec<Value> = far.client.get_json(arr::QUALITY_PROFILE_PATH).await?;
        let profile = jellyseerr::default_profile(&profiles).ok_or_else(|| {
            WiringError::Refused(format!(
                "{} has no quality profile to default to",
                far.arr.app()
            ))
        })?;
        let want = ServerWant {
            arr: far.arr,
            endpoint: far.endpoint.clone(),
            api_key: far.api_key.clone(),
            profile,
        };
        let current: Vec<Value> = client.get_json(jellyseerr::server_path(far.arr)).await?;
        send_all(client, &jellyseerr::plan_server(&current, &want)).await
    }
    .await;
    let what = format!("server {}", prowlarr::application_name(far.arr));
    outcome(App::Jellyseerr, far.arr.app(), done, &what)
}

/// All of Jellyseerr's links; marks its set-up finished once Jellyfin is in.
pub async fn jellyseerr(
    client: &ArrClient,
    jellyfin: &JellyfinWant,
    arrs: &[JellyseerrArr<'_>],
) -> Vec<LinkOutcome> {
    let mut out = vec![jellyseerr_jellyfin(client, jellyfin).await];
    for far in arrs {
        out.push(jellyseerr_server(client, far).await);
    }
    if out[0].result.state == super::LinkState::Connected {
        let done = async {
            let public: Value = client.get_json(jellyseerr::PUBLIC_SETTINGS_PATH).await?;
            send_all(client, &jellyseerr::plan_initialize(&public)).await
        }
        .await;
        match done {
            Ok(n) => out[0].writes += n,
            Err(e) => out[0] = outcome(App::Jellyseerr, App::Jellyfin, Err(e), "finishing set-up"),
        }
    }
    out
}

/// qBittorrent: log in, categories, default save path (reported as a link of
/// qBittorrent to itself).
pub async fn qbittorrent(client: &ArrClient, username: &str, password: &str) -> LinkOutcome {
    let done = async {
        let resp = client.send(&qbittorrent::login(username, password)).await?;
        // qBittorrent answers 200 "Fails." to a wrong password.
        if resp.body.as_ref() != b"Ok." {
            return Err(WiringError::Refused("qBittorrent refused the login".into()));
        }
        client.remember_cookie(&resp);
        let categories: Value = client.get_json(qbittorrent::CATEGORIES_PATH).await?;
        let mut writes =
            qbittorrent::plan_categories(&categories, &qbittorrent::wanted_categories());
        let prefs: Value = client.get_json(qbittorrent::PREFERENCES_PATH).await?;
        writes.extend(qbittorrent::plan_preferences(&prefs));
        send_all(client, &writes).await
    }
    .await;
    outcome(
        App::Qbittorrent,
        App::Qbittorrent,
        done,
        "categories and save path",
    )
}
