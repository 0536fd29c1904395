//! Plans for Sonarr and Radarr: the qBittorrent download client and the root
//! folder. Also the generic "provider" plan (download clients, Prowlarr
//! applications: objects with a `name`, an `implementation` and `fields`).

use serde_json::{Map, Value, json};

use super::{ApiRequest, Endpoint, MANAGED_NAME, same_or_masked};

/// Sonarr or Radarr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arr {
    Sonarr,
    Radarr,
}

impl Arr {
    pub fn app(self) -> super::App {
        match self {
            Arr::Sonarr => super::App::Sonarr,
            Arr::Radarr => super::App::Radarr,
        }
    }
    /// The arr's download-client field that names the qBittorrent category.
    pub fn category_field(self) -> &'static str {
        match self {
            Arr::Sonarr => "tvCategory",
            Arr::Radarr => "movieCategory",
        }
    }
    /// The qBittorrent category this arr files its downloads under.
    pub fn category(self) -> &'static str {
        match self {
            Arr::Sonarr => "tv",
            Arr::Radarr => "movies",
        }
    }
    /// Its root folder in the one `/data` tree.
    pub fn root_folder(self) -> &'static str {
        match self {
            Arr::Sonarr => "/data/media/tv",
            Arr::Radarr => "/data/media/movies",
        }
    }
    /// Prowlarr's `implementation` / `configContract` for this arr.
    pub fn prowlarr_implementation(self) -> (&'static str, &'static str) {
        match self {
            Arr::Sonarr => ("Sonarr", "SonarrSettings"),
            Arr::Radarr => ("Radarr", "RadarrSettings"),
        }
    }
}

pub const DOWNLOAD_CLIENT_PATH: &str = "/api/v3/downloadclient";
pub const ROOT_FOLDER_PATH: &str = "/api/v3/rootfolder";
pub const QUALITY_PROFILE_PATH: &str = "/api/v3/qualityprofile";

/// What a provider object (download client, Prowlarr application) should be.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderWant {
    pub name: String,
    /// Top-level keys the operator owns: compared on every pass.
    pub owned: Map<String, Value>,
    /// Entries of `fields[]` the operator owns, by name.
    pub fields: Vec<(String, Value)>,
    /// Top-level keys set only when the object is created (the user may
    /// tune them afterwards).
    pub on_create: Map<String, Value>,
}

/// Plan for one named provider in the collection at `path`, given the
/// collection's current members. Other members are never touched.
pub fn plan_provider(path: &str, current: &[Value], want: &ProviderWant) -> Vec<ApiRequest> {
    let ours = current
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(want.name.as_str()));
    match ours {
        None => {
            let mut body = want.on_create.clone();
            body.extend(want.owned.clone());
            body.insert("name".into(), Value::String(want.name.clone()));
            body.insert(
                "fields".into(),
                Value::Array(
                    want.fields
                        .iter()
                        .map(|(n, v)| json!({"name": n, "value": v}))
                        .collect(),
                ),
            );
            vec![ApiRequest::post(path, Value::Object(body))]
        }
        Some(have) => {
            if provider_matches(have, want) {
                return Vec::new();
            }
            let Some(id) = have.get("id").and_then(Value::as_i64) else {
                // Without an id it cannot be updated in place; never recreate
                // (that would leave a duplicate).
                return Vec::new();
            };
            let mut body = have.as_object().cloned().unwrap_or_default();
            body.extend(want.owned.clone());
            let mut fields: Vec<Value> = body
                .get("fields")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (name, value) in &want.fields {
                match fields
                    .iter_mut()
                    .find(|f| f.get("name").and_then(Value::as_str) == Some(name.as_str()))
                {
                    Some(f) => {
                        f["value"] = value.clone();
                    }
                    None => fields.push(json!({"name": name, "value": value})),
                }
            }
            body.insert("fields".into(), Value::Array(fields));
            vec![ApiRequest::put(format!("{path}/{id}"), Value::Object(body))]
        }
    }
}

fn provider_matches(have: &Value, want: &ProviderWant) -> bool {
    let top = want.owned.iter().all(|(k, v)| have.get(k) == Some(v));
    let fields = want.fields.iter().all(|(name, value)| {
        let f = have.get("fields").and_then(Value::as_array).and_then(|fs| {
            fs.iter()
                .find(|f| f.get("name").and_then(Value::as_str) == Some(name.as_str()))
        });
        same_or_masked(f.and_then(|f| f.get("value")), value)
    });
    top && fields
}

/// qBittorrent as seen from the arrs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QbittorrentTarget {
    pub endpoint: Endpoint,
    pub username: String,
    pub password: String,
}

/// The download client `mediastack` for `arr`: qBittorrent at its Service,
/// with its credentials and the arr's category. No remote path mapping: the
/// arr and qBittorrent see the same `/data` tree.
pub fn download_client_want(arr: Arr, qbit: &QbittorrentTarget) -> ProviderWant {
    let owned = obj(json!({
        "implementation": "QBittorrent",
        "configContract": "QBittorrentSettings",
        "protocol": "torrent",
        "enable": true,
    }));
    let on_create = obj(json!({
        "priority": 1,
        "removeCompletedDownloads": true,
        "removeFailedDownloads": true,
        "tags": [],
    }));
    ProviderWant {
        name: MANAGED_NAME.to_string(),
        owned,
        fields: vec![
            ("host".into(), json!(qbit.endpoint.host)),
            ("port".into(), json!(qbit.endpoint.port)),
            ("useSsl".into(), json!(false)),
            ("urlBase".into(), json!("")),
            ("username".into(), json!(qbit.username)),
            ("password".into(), json!(qbit.password)),
            (arr.category_field().into(), json!(arr.category())),
        ],
        on_create,
    }
}

/// Plan for the download client, given `GET /api/v3/downloadclient`.
pub fn plan_download_client(
    arr: Arr,
    current: &[Value],
    qbit: &QbittorrentTarget,
) -> Vec<ApiRequest> {
    plan_provider(
        DOWNLOAD_CLIENT_PATH,
        current,
        &download_client_want(arr, qbit),
    )
}

/// Plan for the arr's root folder, given `GET /api/v3/rootfolder`. Adds it
/// when missing; other root folders are left alone.
pub fn plan_root_folder(arr: Arr, current: &[Value]) -> Vec<ApiRequest> {
    let want = arr.root_folder();
    let present = current
        .iter()
        .filter_map(|f| f.get("path").and_then(Value::as_str))
        .any(|p| p.trim_end_matches('/') == want);
    if present {
        Vec::new()
    } else {
        vec![ApiRequest::post(ROOT_FOLDER_PATH, json!({ "path": want }))]
    }
}

pub(crate) fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
