//! A loopback fake of an app, built from the app's published OpenAPI
//! document: it rejects (400, with the reason) every request whose path,
//! method, parameters or body do not match the document, answers only
//! schema-valid bodies (it checks its own answers, 500 if not), and keeps
//! state (REST collections and singletons) so a second pass sees the first's
//! writes. Secret fields are masked in answers as the real *arr apps do.
//!
//! It stands in for Sonarr, Radarr, Prowlarr and Jellyseerr, for which no
//! runnable image exists on our machines: it keeps their API contract (the
//! document), not their behaviour beyond storing what was written.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::wiring::MASKED;
use crate::wiring::contract::{Contract, Matched};

#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer every request with this status.
    Status(u16),
    /// Wait this long before answering (past the client's timeout).
    Delay(Duration),
}

#[derive(Default)]
pub struct State {
    /// Collections by their concrete path (after the prefix), e.g.
    /// `/api/v3/downloadclient`.
    pub collections: HashMap<String, Vec<Value>>,
    /// Singletons by path, e.g. Jellyseerr's `/settings/jellyfin`.
    pub singletons: HashMap<String, Value>,
    pub next_id: i64,
    pub requests: usize,
    pub writes: usize,
    /// Requests the contract rejected (reason).
    pub rejected: Vec<String>,
    /// Answers the fake itself got wrong (must stay empty).
    pub off_contract: Vec<String>,
    pub fault: Option<Fault>,
}

type Special = fn(&mut State, &Matched, &str, Option<&Value>) -> Option<(u16, Value)>;

pub struct Fake {
    pub contract: Contract,
    pub api_key: String,
    pub state: Mutex<State>,
    special: Special,
}

pub struct Running {
    pub fake: Arc<Fake>,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Running {
    pub fn base(&self) -> String {
        format!("http://{}{}", self.addr, self.fake.contract.prefix)
    }
    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.fake.state.lock().unwrap()
    }
}

fn no_special(_: &mut State, _: &Matched, _: &str, _: Option<&Value>) -> Option<(u16, Value)> {
    None
}

impl Fake {
    pub fn new(contract: Contract, api_key: &str) -> Self {
        Self {
            contract,
            api_key: api_key.into(),
            state: Mutex::new(State {
                next_id: 1,
                ..Default::default()
            }),
            special: no_special,
        }
    }
    pub fn with_special(mut self, special: Special) -> Self {
        self.special = special;
        self
    }
    pub fn seed(self, path: &str, items: Vec<Value>) -> Self {
        {
            let mut st = self.state.lock().unwrap();
            for mut item in items {
                if item.get("id").is_none() {
                    item["id"] = json!(st.next_id);
                }
                st.next_id = st.next_id.max(item["id"].as_i64().unwrap() + 1);
                st.collections
                    .entry(path.to_string())
                    .or_default()
                    .push(item);
            }
        }
        self
    }
    pub fn singleton(self, path: &str, value: Value) -> Self {
        self.state
            .lock()
            .unwrap()
            .singletons
            .insert(path.to_string(), value);
        self
    }
    fn prefix(&self) -> &str {
        &self.contract.prefix
    }

    pub async fn start(self) -> Running {
        let fake = Arc::new(self);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let f = fake.clone();
        let app = axum::Router::new().fallback(move |req: Request<Body>| {
            let f = f.clone();
            async move { f.handle(req).await }
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Running { fake, addr, task }
    }

    async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        let query: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_lowercase(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let fault = {
            let mut st = self.state.lock().unwrap();
            st.requests += 1;
            st.fault.clone()
        };
        match fault {
            Some(Fault::Status(s)) => {
                return reply(s, json!({"message": "internal failure (injected)"}));
            }
            Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
            None => {}
        }
        let key = headers
            .iter()
            .find(|(k, _)| k == "x-api-key")
            .map(|(_, v)| v.as_str());
        if key != Some(self.api_key.as_str()) {
            return reply(401, json!({"message": "wrong or missing X-Api-Key"}));
        }
        let bytes = to_bytes(req.into_body(), 1 << 20).await.unwrap();
        let body: Option<Value> = if bytes.is_empty() {
            None
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => Some(v),
                Err(e) => return reply(400, json!({"message": format!("body is not JSON: {e}")})),
            }
        };
        let matched =
            match self
                .contract
                .check_request(&method, &path, &query, &headers, body.as_ref())
            {
                Ok(m) => m,
                Err(reason) => {
                    self.state.lock().unwrap().rejected.push(reason.clone());
                    return reply(400, json!({"message": reason}));
                }
            };
        let rel = path
            .strip_prefix(self.prefix())
            .unwrap_or(&path)
            .trim_end_matches('/')
            .to_string();
        let (status, answer) = {
            let mut st = self.state.lock().unwrap();
            if method != "GET" {
                st.writes += 1;
            }
            let special = (self.special)(&mut st, &matched, &rel, body.as_ref());
            special.unwrap_or_else(|| self.rest(&mut st, &method, &rel, &matched, body))
        };
        let status = if status == 0 {
            self.contract.success_status(&method, &path)
        } else {
            status
        };
        if (200..300).contains(&status)
            && let Err(e) = self
                .contract
                .check_response(&method, &path, status, &answer)
        {
            self.state.lock().unwrap().off_contract.push(e.clone());
            return reply(
                500,
                json!({"message": format!("fake answered off-contract: {e}")}),
            );
        }
        reply(status, answer)
    }

    /// Generic REST over collections and singletons. Status 0: the
    /// operation's documented success status.
    fn rest(
        &self,
        st: &mut State,
        method: &str,
        rel: &str,
        matched: &Matched,
        body: Option<Value>,
    ) -> (u16, Value) {
        if let Some(v) = st.singletons.get(rel).cloned() {
            return match method {
                "GET" => (0, v),
                _ => {
                    let mut merged = v;
                    if let (Some(m), Some(Value::Object(b))) = (merged.as_object_mut(), body) {
                        m.extend(b);
                    }
                    st.singletons.insert(rel.to_string(), merged.clone());
                    (0, merged)
                }
            };
        }
        let item_id = matched
            .template
            .ends_with('}')
            .then(|| rel.rsplit_once('/').unwrap());
        match (method, item_id) {
            ("GET", None) => (
                0,
                Value::Array(
                    st.collections
                        .get(rel)
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(mask)
                        .collect(),
                ),
            ),
            ("POST", None) => {
                let mut item = body.unwrap_or(json!({}));
                item["id"] = json!(st.next_id);
                st.next_id += 1;
                st.collections
                    .entry(rel.to_string())
                    .or_default()
                    .push(item.clone());
                (0, mask(&item))
            }
            (m, Some((coll, id))) => {
                let id: i64 = id.parse().unwrap_or(-1);
                let items = st.collections.entry(coll.to_string()).or_default();
                let Some(pos) = items.iter().position(|i| i["id"].as_i64() == Some(id)) else {
                    return (404, json!({"message": "not found"}));
                };
                match m {
                    "GET" => (0, mask(&items[pos])),
                    "PUT" => {
                        let mut item = body.unwrap_or(json!({}));
                        item["id"] = json!(id);
                        // A masked secret sent back means "unchanged".
                        unmask(&mut item, &items[pos]);
                        items[pos] = item.clone();
                        (0, mask(&item))
                    }
                    "DELETE" => {
                        items.remove(pos);
                        (0, Value::Null)
                    }
                    _ => (405, json!({"message": "method"})),
                }
            }
            _ => (405, json!({"message": "method"})),
        }
    }
}

const SECRET_FIELDS: [&str; 2] = ["password", "apiKey"];

fn mask(item: &Value) -> Value {
    let mut item = item.clone();
    if let Some(fields) = item.get_mut("fields").and_then(Value::as_array_mut) {
        for f in fields {
            if SECRET_FIELDS.contains(&f["name"].as_str().unwrap_or_default()) {
                f["value"] = json!(MASKED);
            }
        }
    }
    item
}

fn unmask(item: &mut Value, old: &Value) {
    if let Some(fields) = item.get_mut("fields").and_then(Value::as_array_mut) {
        for f in fields {
            if f["value"] == json!(MASKED) {
                let name = f["name"].clone();
                if let Some(o) = old["fields"]
                    .as_array()
                    .and_then(|o| o.iter().find(|o| o["name"] == name))
                {
                    f["value"] = o["value"].clone();
                }
            }
        }
    }
}

fn reply(status: u16, body: Value) -> Response<Body> {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(&body).unwrap()
    };
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .body(Body::from(bytes))
        .unwrap()
}

/// Jellyseerr's own behaviour the flow relies on: signing in to Jellyfin sets
/// the server, `initialize` flips the public flag.
pub fn jellyseerr_special(
    st: &mut State,
    m: &Matched,
    rel: &str,
    body: Option<&Value>,
) -> Option<(u16, Value)> {
    match (m.method.as_str(), rel) {
        ("POST", "/auth/jellyfin") => {
            let b = body?;
            let jf = st
                .singletons
                .entry("/settings/jellyfin".into())
                .or_insert(json!({}));
            jf["hostname"] = b["hostname"].clone();
            jf["adminUser"] = b["username"].clone();
            Some((
                200,
                json!({"id": 1, "email": b["email"], "username": b["username"],
                       "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z"}),
            ))
        }
        ("POST", "/settings/initialize") => {
            let p = st
                .singletons
                .entry("/settings/public".into())
                .or_insert(json!({}));
            p["initialized"] = json!(true);
            Some((200, p.clone()))
        }
        _ => None,
    }
}
