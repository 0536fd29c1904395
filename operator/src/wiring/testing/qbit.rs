//! A loopback stand-in for qBittorrent's WebUI API v2. qBittorrent publishes
//! no OpenAPI document; this stand-in keeps the documented shapes of the
//! endpoints the flow uses (`auth/login` answering `Ok.`/`Fails.` with an
//! `SID` cookie, 403 without it, categories as an object keyed by name,
//! `createCategory` 409 on an existing name, `editCategory` 409 on a missing
//! one, preferences as JSON and `setPreferences` taking a `json` form field).
//! The same flow runs against the real `qbittorrent-nox` on the real node in
//! `e2e/tests/realnode.rs`
//! (`qbittorrent_wiring_flow_sets_categories_and_save_path_on_the_real_app`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{Body, to_bytes};
use axum::http::{Request, Response};
use serde_json::{Value, json};

const SID: &str = "SID=0a1b2c3d4e5f";

/// What the stand-in holds and what it was sent.
pub struct QbitState {
    /// The WebUI login it accepts.
    pub username: String,
    pub password: String,
    pub categories: Value,
    pub preferences: Value,
    /// Successful logins (a login is not a change of settings).
    pub logins: usize,
    /// POSTs other than the login.
    pub writes: usize,
    /// Their form bodies.
    pub forms: Vec<HashMap<String, String>>,
    /// Answer every request with this status (500: a broken app).
    pub fault: Option<u16>,
}

impl QbitState {
    /// A qBittorrent with login `username`/`password`, the given categories
    /// and preferences.
    pub fn new(username: &str, password: &str, categories: Value, preferences: Value) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
            categories,
            preferences,
            logins: 0,
            writes: 0,
            forms: Vec::new(),
            fault: None,
        }
    }
}

/// A running stand-in; stops when dropped.
pub struct QbitRunning {
    pub state: Arc<Mutex<QbitState>>,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for QbitRunning {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl QbitRunning {
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn state(&self) -> MutexGuard<'_, QbitState> {
        self.state.lock().unwrap()
    }
}

/// Starts the stand-in on a loopback port.
pub async fn start(state: QbitState) -> QbitRunning {
    let state = Arc::new(Mutex::new(state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let st = state.clone();
    let app = axum::Router::new().fallback(move |req: Request<Body>| handle(st.clone(), req));
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    QbitRunning { state, addr, task }
}

async fn handle(st: Arc<Mutex<QbitState>>, req: Request<Body>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let cookie = req
        .headers()
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let form_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let bytes = to_bytes(req.into_body(), 1 << 16).await.unwrap();
    let form: HashMap<String, String> = form_urlencoded::parse(&bytes).into_owned().collect();
    let reply = |status: u16, body: String| {
        Response::builder()
            .status(status)
            .body(Body::from(body))
            .unwrap()
    };
    let mut st = st.lock().unwrap();
    if let Some(status) = st.fault {
        return reply(status, "internal failure (injected)".into());
    }
    if method == "POST" && !form_type {
        return reply(415, "form bodies only".into());
    }
    if path == "/api/v2/auth/login" {
        return if form.get("username") == Some(&st.username)
            && form.get("password") == Some(&st.password)
        {
            st.logins += 1;
            Response::builder()
                .header(
                    "set-cookie",
                    format!("{SID}; HttpOnly; SameSite=Strict; path=/"),
                )
                .body(Body::from("Ok."))
                .unwrap()
        } else {
            reply(200, "Fails.".into())
        };
    }
    if cookie != SID {
        return reply(403, "Forbidden".into());
    }
    if method == "POST" {
        st.writes += 1;
        st.forms.push(form.clone());
    }
    match (method.as_str(), path.as_str()) {
        ("GET", "/api/v2/torrents/categories") => reply(200, st.categories.to_string()),
        ("GET", "/api/v2/app/preferences") => reply(200, st.preferences.to_string()),
        ("POST", "/api/v2/torrents/createCategory" | "/api/v2/torrents/editCategory") => {
            let (Some(name), Some(save)) = (form.get("category"), form.get("savePath")) else {
                return reply(400, "category and savePath".into());
            };
            let exists = st.categories.get(name).is_some();
            if exists == path.ends_with("createCategory") {
                return reply(409, "Conflict".into());
            }
            st.categories[name] = json!({"name": name, "savePath": save});
            reply(200, String::new())
        }
        ("POST", "/api/v2/app/setPreferences") => {
            let Some(Ok(Value::Object(p))) =
                form.get("json").map(|j| serde_json::from_str::<Value>(j))
            else {
                return reply(400, "json".into());
            };
            if let Some(prefs) = st.preferences.as_object_mut() {
                prefs.extend(p);
            }
            reply(200, String::new())
        }
        _ => reply(404, "Not Found".into()),
    }
}
