//! qBittorrent's flow (login cookie, form bodies) against a loopback stand-in
//! for its WebUI API v2. qBittorrent publishes no OpenAPI document; this
//! stand-in keeps the documented shapes of the endpoints the flow uses
//! (`auth/login` answering `Ok.`/`Fails.` with an `SID` cookie, 403 without
//! it, categories as an object keyed by name, `createCategory` 409 on an
//! existing name, `editCategory` 409 on a missing one, preferences as JSON
//! and `setPreferences` taking a `json` form field). The same flow runs
//! against the real `qbittorrent-nox` on the real node in
//! `e2e/tests/realnode.rs`
//! (`qbittorrent_wiring_flow_sets_categories_and_save_path_on_the_real_app`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, to_bytes};
use axum::http::{Request, Response};
use serde_json::{Value, json};

use crate::wiring::{ArrClient, LinkState, flow};

const SID: &str = "SID=0a1b2c3d4e5f";

struct Qbit {
    categories: Value,
    preferences: Value,
    writes: usize,
    forms: Vec<HashMap<String, String>>,
}

async fn handle(st: Arc<Mutex<Qbit>>, req: Request<Body>) -> Response<Body> {
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
    if method == "POST" && !form_type {
        return reply(415, "form bodies only".into());
    }
    if path == "/api/v2/auth/login" {
        return if form.get("username").map(String::as_str) == Some("admin")
            && form.get("password").map(String::as_str) == Some("qbit-pw")
        {
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
    let mut st = st.lock().unwrap();
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
            st.preferences.as_object_mut().unwrap().extend(p);
            reply(200, String::new())
        }
        _ => reply(404, "Not Found".into()),
    }
}

async fn start(st: Arc<Mutex<Qbit>>) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move |req: Request<Body>| handle(st.clone(), req));
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), task)
}

#[tokio::test]
async fn qbittorrent_gets_categories_and_save_path_and_a_second_pass_writes_nothing() {
    let st = Arc::new(Mutex::new(Qbit {
        categories: json!({"linux-isos": {"name": "linux-isos", "savePath": "/isos"}}),
        preferences: json!({"save_path": "/downloads/", "listen_port": 6881}),
        writes: 0,
        forms: Vec::new(),
    }));
    let (base, task) = start(st.clone()).await;
    let c = ArrClient::new(&base, None, super::fast()).unwrap();
    let o = flow::qbittorrent(&c, "admin", "qbit-pw").await;
    assert_eq!(o.result.state, LinkState::Connected, "{:?}", o.result);
    assert_eq!(o.writes, 3);
    {
        let s = st.lock().unwrap();
        assert_eq!(s.categories["tv"]["savePath"], "/data/torrents/tv");
        assert_eq!(s.categories["movies"]["savePath"], "/data/torrents/movies");
        assert_eq!(
            s.categories["linux-isos"]["savePath"], "/isos",
            "the user's category is unchanged"
        );
        assert_eq!(
            s.preferences,
            json!({"save_path": "/data/torrents", "listen_port": 6881})
        );
    }
    let o = flow::qbittorrent(&c, "admin", "qbit-pw").await;
    assert_eq!((o.result.state, o.writes), (LinkState::Connected, 0));
    assert_eq!(
        st.lock().unwrap().writes,
        3,
        "the second pass sent no write"
    );

    let wrong = ArrClient::new(&base, None, super::fast()).unwrap();
    let o = flow::qbittorrent(&wrong, "admin", "guess").await;
    assert_eq!(o.result.state, LinkState::Failed);
    assert!(
        o.result.message.contains("refused the login") && !o.result.message.contains("guess"),
        "{}",
        o.result.message
    );
    task.abort();
}
