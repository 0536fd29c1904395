//! `ArrClient`: the operator's HTTP client for the apps' own APIs.
//!
//! Plain HTTP to in-cluster Service names (hyper-util's pooled client), a
//! timeout per attempt, a bounded number of retries with exponential backoff
//! (backon) on connection errors, timeouts, 5xx and 429, and the app's API key
//! in the `X-Api-Key` header. The key never appears in `Debug`, errors or logs.

use std::sync::Mutex;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, StatusCode, header};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// An app's API key. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Body of a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    Json(Value),
    /// `application/x-www-form-urlencoded` (qBittorrent's WebUI API).
    Form(Vec<(String, String)>),
}

/// One typed request, as plans produce them. `path` is relative to the
/// client's base (e.g. `/api/v3/downloadclient`).
#[derive(Clone, Debug, PartialEq)]
pub struct ApiRequest {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Option<Body>,
}

impl ApiRequest {
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            query: Vec::new(),
            body: None,
        }
    }
    pub fn post(path: impl Into<String>, body: Value) -> Self {
        Self {
            method: Method::POST,
            path: path.into(),
            query: Vec::new(),
            body: Some(Body::Json(body)),
        }
    }
    pub fn put(path: impl Into<String>, body: Value) -> Self {
        Self {
            method: Method::PUT,
            path: path.into(),
            query: Vec::new(),
            body: Some(Body::Json(body)),
        }
    }
    pub fn form(path: impl Into<String>, fields: &[(&str, &str)]) -> Self {
        Self {
            method: Method::POST,
            path: path.into(),
            query: Vec::new(),
            body: Some(Body::Form(
                fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )),
        }
    }
    /// The JSON body, if any.
    pub fn json(&self) -> Option<&Value> {
        match &self.body {
            Some(Body::Json(v)) => Some(v),
            _ => None,
        }
    }
    /// `METHOD path`, for messages (never carries a body or a key).
    pub fn describe(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// A 2xx answer.
#[derive(Clone, Debug)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub body: Bytes,
    pub set_cookie: Vec<String>,
}

impl ApiResponse {
    pub fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, WiringError> {
        serde_json::from_slice(&self.body).map_err(|source| WiringError::Decode {
            what: what.to_string(),
            source,
        })
    }
}

/// Why a call to an app failed.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error("invalid base URL {url:?}: {reason}")]
    BaseUrl { url: String, reason: String },
    #[error("{request}: no answer within {timeout:?} (after {attempts} attempts)")]
    Timeout {
        request: String,
        timeout: Duration,
        attempts: usize,
    },
    #[error("{request}: connection failed (after {attempts} attempts): {reason}")]
    Connect {
        request: String,
        attempts: usize,
        reason: String,
    },
    #[error("{request}: HTTP {status} (after {attempts} attempts): {body}")]
    Status {
        request: String,
        status: StatusCode,
        attempts: usize,
        body: String,
    },
    #[error("unreadable answer for {what}: {source}")]
    Decode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    Refused(String),
}

impl WiringError {
    fn retryable(&self) -> bool {
        match self {
            WiringError::Timeout { .. } | WiringError::Connect { .. } => true,
            WiringError::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            _ => false,
        }
    }
    fn set_attempts(&mut self, n: usize) {
        match self {
            WiringError::Timeout { attempts, .. }
            | WiringError::Connect { attempts, .. }
            | WiringError::Status { attempts, .. } => *attempts = n,
            _ => {}
        }
    }
}

/// Timeouts and retries of a client.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Per attempt, for the whole exchange (connect, request, body).
    pub timeout: Duration,
    /// Retries after the first attempt (so at most `retries + 1` attempts).
    pub retries: usize,
    /// First backoff delay; doubles per retry, capped at `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retries: 3,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }
}

/// Client for one app (Sonarr, Radarr, Prowlarr, Jellyseerr, qBittorrent).
pub struct ArrClient {
    http: Client<HttpConnector, Full<Bytes>>,
    /// `http://host:port` plus the app's API prefix, without a trailing `/`.
    base: String,
    api_key: Option<ApiKey>,
    cookie: Mutex<Option<String>>,
    /// `METHOD path` of every attempt sent on the wire (retries included),
    /// never a body or a key: what tests count writes with.
    sent: Mutex<Vec<String>>,
    config: ClientConfig,
}

impl std::fmt::Debug for ArrClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrClient")
            .field("base", &self.base)
            .field("api_key", &self.api_key)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ArrClient {
    /// `base` is e.g. `http://media-sonarr:8989` or
    /// `http://media-jellyseerr:5055/api/v1`.
    pub fn new(
        base: &str,
        api_key: Option<ApiKey>,
        config: ClientConfig,
    ) -> Result<Self, WiringError> {
        let uri: hyper::Uri =
            base.parse()
                .map_err(|e: hyper::http::uri::InvalidUri| WiringError::BaseUrl {
                    url: base.to_string(),
                    reason: e.to_string(),
                })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() || uri.query().is_some() {
            return Err(WiringError::BaseUrl {
                url: base.to_string(),
                reason: "want http://host:port[/prefix]".into(),
            });
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.timeout));
        Ok(Self {
            http: Client::builder(TokioExecutor::new()).build(connector),
            base: base.trim_end_matches('/').to_string(),
            api_key,
            cookie: Mutex::new(None),
            sent: Mutex::new(Vec::new()),
            config,
        })
    }

    /// Keep a session cookie (qBittorrent's `SID`, Jellyseerr's
    /// `connect.sid`) from an answer's `Set-Cookie` for the next requests.
    pub fn remember_cookie(&self, response: &ApiResponse) {
        if let Some(c) = response.set_cookie.first() {
            let pair = c.split(';').next().unwrap_or_default().trim().to_string();
            *self.cookie.lock().expect("cookie lock") = Some(pair);
        }
    }

    /// `METHOD path` of every attempt sent so far (retries included).
    pub fn sent(&self) -> Vec<String> {
        self.sent.lock().expect("sent lock").clone()
    }

    /// The attempts sent so far that were not `GET`s (writes and logins).
    pub fn sent_writes(&self) -> Vec<String> {
        self.sent()
            .into_iter()
            .filter(|r| !r.starts_with("GET "))
            .collect()
    }

    /// Send with bounded retries; a non-2xx answer is an error.
    pub async fn send(&self, request: &ApiRequest) -> Result<ApiResponse, WiringError> {
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.config.min_backoff)
            .with_max_delay(self.config.max_backoff)
            .with_max_times(self.config.retries)
            .with_jitter();
        let result = (|| async {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.once(request).await
        })
        .retry(backoff)
        .when(WiringError::retryable)
        .notify(|err, delay| tracing::debug!(error = %err, ?delay, "retrying app API call"))
        .await;
        result.map_err(|mut e| {
            e.set_attempts(attempts.load(std::sync::atomic::Ordering::Relaxed));
            e
        })
    }

    /// `GET` and parse the JSON answer.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, WiringError> {
        self.send(&ApiRequest::get(path)).await?.json(path)
    }

    fn uri(&self, request: &ApiRequest) -> String {
        let mut uri = format!("{}{}", self.base, request.path);
        if !request.query.is_empty() {
            let q = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(request.query.iter())
                .finish();
            uri.push('?');
            uri.push_str(&q);
        }
        uri
    }

    async fn once(&self, request: &ApiRequest) -> Result<ApiResponse, WiringError> {
        let what = request.describe();
        self.sent.lock().expect("sent lock").push(what.clone());
        let mut builder = hyper::Request::builder()
            .method(request.method.clone())
            .uri(self.uri(request))
            .header(header::ACCEPT, "application/json");
        if let Some(key) = &self.api_key {
            let mut value = header::HeaderValue::from_str(key.expose()).map_err(|_| {
                WiringError::Refused("the API key is not a valid header value".into())
            })?;
            value.set_sensitive(true);
            builder = builder.header("X-Api-Key", value);
        }
        if let Some(cookie) = self.cookie.lock().expect("cookie lock").clone() {
            let mut value = header::HeaderValue::from_str(&cookie).map_err(|_| {
                WiringError::Refused("the session cookie is not a valid header value".into())
            })?;
            value.set_sensitive(true);
            builder = builder.header(header::COOKIE, value);
        }
        let body = match &request.body {
            None => Bytes::new(),
            Some(Body::Json(v)) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(v).expect("JSON values serialize"))
            }
            Some(Body::Form(fields)) => {
                builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Bytes::from(
                    form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(fields.iter())
                        .finish(),
                )
            }
        };
        let req = builder
            .body(Full::new(body))
            .map_err(|e| WiringError::Refused(format!("{what}: cannot build the request: {e}")))?;
        let exchange = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| WiringError::Connect {
                    request: what.clone(),
                    attempts: 1,
                    reason: connect_reason(&e),
                })?;
            let status = resp.status();
            let set_cookie = resp
                .headers()
                .get_all(header::SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_string))
                .collect();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| WiringError::Connect {
                    request: what.clone(),
                    attempts: 1,
                    reason: e.to_string(),
                })?
                .to_bytes();
            Ok::<_, WiringError>(ApiResponse {
                status,
                body,
                set_cookie,
            })
        };
        let resp = tokio::time::timeout(self.config.timeout, exchange)
            .await
            .map_err(|_| WiringError::Timeout {
                request: what.clone(),
                timeout: self.config.timeout,
                attempts: 1,
            })??;
        if !resp.status.is_success() {
            return Err(WiringError::Status {
                request: what,
                status: resp.status,
                attempts: 1,
                body: snippet(&resp.body),
            });
        }
        Ok(resp)
    }
}

/// The innermost cause of a connection error (hyper-util's outer message is
/// only "client error (Connect)").
fn connect_reason(e: &hyper_util::client::legacy::Error) -> String {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason = s.to_string();
        source = s.source();
    }
    reason
}

/// At most 200 characters of an error answer, on one line.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &one_line[..i]),
        None => one_line,
    }
}
