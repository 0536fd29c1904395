//! Plans for qBittorrent's WebUI API (v2): log in, the categories the arrs
//! use (`tv`, `movies`) with save paths under `/data/torrents`, and the
//! default save path. Other categories and preferences are never touched.

use serde_json::{Value, json};

use super::ApiRequest;
use super::arr::Arr;

pub const LOGIN_PATH: &str = "/api/v2/auth/login";
pub const CATEGORIES_PATH: &str = "/api/v2/torrents/categories";
pub const CREATE_CATEGORY_PATH: &str = "/api/v2/torrents/createCategory";
pub const EDIT_CATEGORY_PATH: &str = "/api/v2/torrents/editCategory";
pub const PREFERENCES_PATH: &str = "/api/v2/app/preferences";
pub const SET_PREFERENCES_PATH: &str = "/api/v2/app/setPreferences";
pub const SAVE_PATH: &str = "/data/torrents";

pub fn login(username: &str, password: &str) -> ApiRequest {
    ApiRequest::form(
        LOGIN_PATH,
        &[("username", username), ("password", password)],
    )
}

/// The categories the operator manages: one per arr.
pub fn wanted_categories() -> Vec<(String, String)> {
    [Arr::Sonarr, Arr::Radarr]
        .into_iter()
        .map(|a| {
            (
                a.category().to_string(),
                format!("{SAVE_PATH}/{}", a.category()),
            )
        })
        .collect()
}

fn same_path(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Given `GET /api/v2/torrents/categories` (an object keyed by name).
pub fn plan_categories(current: &Value, wanted: &[(String, String)]) -> Vec<ApiRequest> {
    wanted
        .iter()
        .filter_map(|(name, save_path)| {
            match current.get(name).map(|c| {
                c.get("savePath")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            }) {
                None => Some(ApiRequest::form(
                    CREATE_CATEGORY_PATH,
                    &[("category", name), ("savePath", save_path)],
                )),
                Some(have) if !same_path(have, save_path) => Some(ApiRequest::form(
                    EDIT_CATEGORY_PATH,
                    &[("category", name), ("savePath", save_path)],
                )),
                Some(_) => None,
            }
        })
        .collect()
}

/// Given `GET /api/v2/app/preferences`: the default save path.
pub fn plan_preferences(current: &Value) -> Vec<ApiRequest> {
    match current.get("save_path").and_then(Value::as_str) {
        Some(p) if same_path(p, SAVE_PATH) => Vec::new(),
        _ => {
            let prefs = json!({ "save_path": SAVE_PATH }).to_string();
            vec![ApiRequest::form(SET_PREFERENCES_PATH, &[("json", &prefs)])]
        }
    }
}
