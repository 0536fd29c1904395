//! Plans for Jellyseerr: sign-in to Jellyfin (which sets Jellyfin as its media
//! server and creates the admin), and one Sonarr and one Radarr server named
//! `mediastack-sonarr` / `mediastack-radarr`. Paths are relative to
//! Jellyseerr's API prefix `/api/v1`.

use serde_json::{Map, Value, json};

use super::arr::Arr;
use super::prowlarr::application_name;
use super::{ApiRequest, Endpoint, same_or_masked};

pub const API_PREFIX: &str = "/api/v1";
pub const PUBLIC_SETTINGS_PATH: &str = "/settings/public";
pub const JELLYFIN_SETTINGS_PATH: &str = "/settings/jellyfin";
pub const JELLYFIN_AUTH_PATH: &str = "/auth/jellyfin";
pub const INITIALIZE_PATH: &str = "/settings/initialize";
/// Jellyseerr's `serverType` for Jellyfin.
pub const SERVER_TYPE_JELLYFIN: u8 = 2;

pub fn server_path(arr: Arr) -> &'static str {
    match arr {
        Arr::Sonarr => "/settings/sonarr",
        Arr::Radarr => "/settings/radarr",
    }
}

/// Jellyfin as Jellyseerr should see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JellyfinWant {
    pub endpoint: Endpoint,
    pub admin_user: String,
    pub admin_password: String,
    pub admin_email: String,
}

/// What the Jellyfin plan decided.
#[derive(Clone, Debug, PartialEq)]
pub enum JellyfinPlan {
    /// Jellyseerr already uses our Jellyfin.
    Done,
    /// Jellyseerr uses another Jellyfin the user set: kept as it is.
    KeptUsers(String),
    /// Sign in (first set-up): these requests.
    Write(Vec<ApiRequest>),
}

/// Given `GET /settings/jellyfin`.
pub fn plan_jellyfin(current: &Value, want: &JellyfinWant) -> JellyfinPlan {
    let ours = want.endpoint.url();
    match current
        .get("hostname")
        .and_then(Value::as_str)
        .map(|h| h.trim_end_matches('/'))
    {
        Some(h) if h == ours => JellyfinPlan::Done,
        Some(h) if !h.is_empty() => JellyfinPlan::KeptUsers(h.to_string()),
        _ => JellyfinPlan::Write(vec![ApiRequest::post(
            JELLYFIN_AUTH_PATH,
            json!({
                "username": want.admin_user,
                "password": want.admin_password,
                "hostname": ours,
                "email": want.admin_email,
                "serverType": SERVER_TYPE_JELLYFIN,
            }),
        )]),
    }
}

/// An arr as a Jellyseerr server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerWant {
    pub arr: Arr,
    pub endpoint: Endpoint,
    pub api_key: String,
    /// Default quality profile (id, name), from the arr's own list.
    pub profile: (i64, String),
}

fn owned(want: &ServerWant) -> Map<String, Value> {
    let Value::Object(m) = json!({
        "hostname": want.endpoint.host,
        "port": want.endpoint.port,
        "apiKey": want.api_key,
        "useSsl": false,
        "baseUrl": "",
    }) else {
        unreachable!()
    };
    m
}

/// Given `GET /settings/sonarr` (or radarr): create or fix the server named
/// `mediastack-<arr>`. The profile, folder and flags are set at creation
/// only; afterwards they are the user's to change.
pub fn plan_server(current: &[Value], want: &ServerWant) -> Vec<ApiRequest> {
    let name = application_name(want.arr);
    let path = server_path(want.arr);
    let owned = owned(want);
    match current
        .iter()
        .find(|s| s.get("name").and_then(Value::as_str) == Some(name.as_str()))
    {
        None => {
            let any_default = current
                .iter()
                .any(|s| s.get("isDefault") == Some(&Value::Bool(true)));
            let mut body = owned;
            body.insert("name".into(), json!(name));
            body.insert("activeProfileId".into(), json!(want.profile.0));
            body.insert("activeProfileName".into(), json!(want.profile.1));
            body.insert("activeDirectory".into(), json!(want.arr.root_folder()));
            body.insert("is4k".into(), json!(false));
            body.insert("isDefault".into(), json!(!any_default));
            body.insert("syncEnabled".into(), json!(true));
            match want.arr {
                Arr::Sonarr => {
                    body.insert("enableSeasonFolders".into(), json!(true));
                }
                Arr::Radarr => {
                    body.insert("minimumAvailability".into(), json!("released"));
                }
            }
            vec![ApiRequest::post(path, Value::Object(body))]
        }
        Some(have) => {
            if owned.iter().all(|(k, v)| same_or_masked(have.get(k), v)) {
                return Vec::new();
            }
            let Some(id) = have.get("id").and_then(Value::as_i64) else {
                return Vec::new();
            };
            let mut body = have.as_object().cloned().unwrap_or_default();
            body.extend(owned);
            vec![ApiRequest::put(format!("{path}/{id}"), Value::Object(body))]
        }
    }
}

/// Given `GET /settings/public`: finish Jellyseerr's set-up once.
pub fn plan_initialize(public: &Value) -> Vec<ApiRequest> {
    if public.get("initialized") == Some(&Value::Bool(true)) {
        Vec::new()
    } else {
        vec![ApiRequest {
            body: None,
            ..ApiRequest::post(INITIALIZE_PATH, Value::Null)
        }]
    }
}

/// The default profile among an arr's `GET /api/v3/qualityprofile`: the one
/// with the lowest id.
pub fn default_profile(profiles: &[Value]) -> Option<(i64, String)> {
    profiles
        .iter()
        .filter_map(|p| Some((p.get("id")?.as_i64()?, p.get("name")?.as_str()?.to_string())))
        .min_by_key(|(id, _)| *id)
}
