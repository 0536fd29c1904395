//! Write fencing for leader election: only a replica that still holds the
//! lease may write.
//!
//! Two tower layers on the clients:
//! - [`RenewLayer`] on the lease manager's client notes the local (monotonic)
//!   time each successful lease renewal was *sent*, and opens the [`Fence`]
//!   until that time plus a bit less than the lease duration: by then every
//!   other replica may consider the lease expired.
//! - [`FenceLayer`] on the controllers' client refuses every write request
//!   (POST, PUT, PATCH, DELETE) once that deadline has passed or the lease
//!   manager reported the lease lost, whatever the caller (a reconcile in
//!   flight, the sweep, an event). It is checked immediately before each
//!   request goes out, so a process that was paused (SIGSTOP, a long GC,
//!   a frozen VM) and wakes up after its lease expired cannot write.
//!
//! Both layers also set the `User-Agent` to `mediastack-operator/<version>
//! (<identity>)`, so the API server's audit log tells replicas apart.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Method, Request, Response};
use kube::client::Body;
use tower::{BoxError, Layer, Service};

/// Whether this replica may write. Cheap to clone; shared by both layers.
#[derive(Clone, Debug)]
pub struct Fence {
    inner: Arc<State>,
}

#[derive(Debug)]
struct State {
    origin: Instant,
    /// Writes are allowed while `now - origin` (ms) is below this.
    open_until_ms: AtomicU64,
    /// The lease manager's view: we hold the lease.
    leader: AtomicBool,
    /// Writes refused so far (each is also logged as a warning).
    refused: AtomicU64,
}

impl Default for Fence {
    fn default() -> Self {
        Self::closed()
    }
}

impl Fence {
    /// A fence that allows nothing until a renewal opens it.
    pub fn closed() -> Self {
        Self {
            inner: Arc::new(State {
                origin: Instant::now(),
                open_until_ms: AtomicU64::new(0),
                leader: AtomicBool::new(false),
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// A fence that always allows writes (no leader election).
    pub fn always_open() -> Self {
        let f = Self::closed();
        f.inner.open_until_ms.store(u64::MAX, Ordering::SeqCst);
        f.inner.leader.store(true, Ordering::SeqCst);
        f
    }

    fn ms(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.inner.origin).as_millis())
            .unwrap_or(u64::MAX)
    }

    /// Allows writes until `deadline` (never shortens an open fence).
    pub fn open_until(&self, deadline: Instant) {
        self.inner
            .open_until_ms
            .fetch_max(self.ms(deadline), Ordering::SeqCst);
    }

    /// The lease manager's verdict: holder or not.
    pub fn set_leader(&self, leader: bool) {
        self.inner.leader.store(leader, Ordering::SeqCst);
        if !leader {
            self.inner.open_until_ms.store(0, Ordering::SeqCst);
        }
    }

    /// Whether a write may be sent now.
    pub fn allows_writes(&self) -> bool {
        self.inner.leader.load(Ordering::SeqCst)
            && self.ms(Instant::now()) < self.inner.open_until_ms.load(Ordering::SeqCst)
    }

    /// Writes refused so far.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }
}

/// The error of a refused write.
#[derive(Debug, thiserror::Error)]
#[error("write refused: this replica does not hold the leader lease (or it expired)")]
pub struct NotLeader;

fn is_write(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn user_agent(identity: &str) -> http::HeaderValue {
    let text = format!(
        "mediastack-operator/{} ({identity})",
        env!("CARGO_PKG_VERSION")
    );
    http::HeaderValue::from_str(&text)
        .unwrap_or_else(|_| http::HeaderValue::from_static("mediastack-operator"))
}

/// Refuses writes the [`Fence`] does not allow.
#[derive(Clone, Debug)]
pub struct FenceLayer {
    pub fence: Fence,
    pub identity: String,
}

impl<S> Layer<S> for FenceLayer {
    type Service = FenceService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        FenceService {
            inner,
            fence: self.fence.clone(),
            agent: user_agent(&self.identity),
        }
    }
}

#[derive(Clone, Debug)]
pub struct FenceService<S> {
    inner: S,
    fence: Fence,
    agent: http::HeaderValue,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<Body>> for FenceService<S>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<B>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        if is_write(req.method()) && !self.fence.allows_writes() {
            self.fence.inner.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(method = %req.method(), uri = %req.uri(), "{NotLeader}");
            return Box::pin(async { Err(Box::new(NotLeader) as BoxError) });
        }
        req.headers_mut()
            .insert(http::header::USER_AGENT, self.agent.clone());
        let fut = self.inner.call(req);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

/// Opens the [`Fence`] after each successful lease renewal (a lease write
/// that sets `renewTime`), until `valid` after the request was sent.
#[derive(Clone, Debug)]
pub struct RenewLayer {
    pub fence: Fence,
    pub identity: String,
    /// How long after a renewal was sent writes stay allowed: less than the
    /// lease duration, so the fence closes before another replica may take over.
    pub valid: Duration,
}

impl<S> Layer<S> for RenewLayer {
    type Service = RenewService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RenewService {
            inner,
            fence: self.fence.clone(),
            agent: user_agent(&format!("{} lease", self.identity)),
            valid: self.valid,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RenewService<S> {
    inner: S,
    fence: Fence,
    agent: http::HeaderValue,
    valid: Duration,
}

/// What a lease write body does: `Some(true)` sets a `renewTime` (a renewal
/// or acquisition), `Some(false)` clears it (a release), `None` neither (e.g.
/// the transitions counter).
fn renews(body: &[u8]) -> Option<bool> {
    let v = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    match v.get("spec")?.get("renewTime")? {
        serde_json::Value::String(_) => Some(true),
        serde_json::Value::Null => Some(false),
        _ => None,
    }
}

impl<S, B> Service<Request<Body>> for RenewService<S>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<B>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        req.headers_mut()
            .insert(http::header::USER_AGENT, self.agent.clone());
        let lease_write = is_write(req.method()) && req.uri().path().contains("/leases/");
        let body = if lease_write {
            req.body().try_clone()
        } else {
            None
        };
        let sent = Instant::now();
        let fut = self.inner.call(req);
        let (fence, valid) = (self.fence.clone(), self.valid);
        Box::pin(async move {
            let resp = fut.await.map_err(Into::into)?;
            if let Some(body) = body
                && resp.status().is_success()
            {
                let bytes = body.collect_bytes().await.unwrap_or_default();
                match renews(&bytes) {
                    Some(true) => fence.open_until(sent + valid),
                    Some(false) => fence.set_leader(false),
                    None => {}
                }
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_fence_refuses_and_an_expired_one_closes() {
        let f = Fence::closed();
        assert!(!f.allows_writes());
        f.set_leader(true);
        assert!(!f.allows_writes(), "leader, but no renewal yet");
        f.open_until(Instant::now() + Duration::from_secs(60));
        assert!(f.allows_writes());
        f.set_leader(false);
        assert!(!f.allows_writes(), "lease lost");
        f.set_leader(true);
        f.open_until(Instant::now());
        assert!(!f.allows_writes(), "renewal too old");
        assert!(Fence::always_open().allows_writes());
    }

    #[test]
    fn renewals_and_releases_are_told_apart() {
        assert_eq!(
            renews(
                br#"{"spec":{"renewTime":"2026-01-01T00:00:00.000000Z","leaseDurationSeconds":15}}"#
            ),
            Some(true)
        );
        assert_eq!(
            renews(br#"{"spec":{"renewTime":null,"holderIdentity":null}}"#),
            Some(false)
        );
        assert_eq!(renews(br#"{"spec":{"leaseTransitions":3}}"#), None);
    }
}
