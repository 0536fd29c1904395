//! Counts every request a kube [`Client`](kube::Client) sends, by verb,
//! resource and response code class: a tower layer, like the write fence.
//!
//! The verb is the API server's own (as in its audit log and RBAC):
//! `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
//! `deletecollection`, from the method, whether the path names an object,
//! and `?watch=true`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use kube::client::Body;
use tower::{BoxError, Layer, Service};

use super::{Metrics, RequestLabels};

/// What an API path and method address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    pub verb: &'static str,
    /// `core` for `/api/v1`; empty for a non-resource path.
    pub group: String,
    /// `deployments`, `mediastacks/status`; empty for a non-resource path.
    pub resource: String,
}

/// Parses `method` and `path` (with its query) the way the API server does
/// for its request info: `/api/v1[/namespaces/{ns}]/{resource}[/{name}[/{sub}]]`
/// and `/apis/{group}/{version}[/namespaces/{ns}]/{resource}[/{name}[/{sub}]]`.
/// Anything else (discovery, `/version`) is a non-resource request.
pub fn classify(method: &Method, path_and_query: &str) -> Classified {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let watch_query = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let (group, mut rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("core".to_string(), rest),
        ["apis", group, _version, rest @ ..] => (group.to_string(), rest),
        _ => (String::new(), &[][..]),
    };
    // The deprecated `/watch/` prefix.
    let mut watch_path = false;
    if rest.first() == Some(&"watch") {
        watch_path = true;
        rest = &rest[1..];
    }
    // `namespaces/{ns}/...` scopes a resource, unless it is the Namespace
    // itself (`namespaces`, `namespaces/{name}`, `namespaces/{name}/status`).
    if let ["namespaces", _ns, resource, ..] = rest
        && !matches!(*resource, "status" | "finalize")
    {
        rest = &rest[2..];
    }
    let (resource, named) = match rest {
        [] => (String::new(), false),
        [resource] => (resource.to_string(), false),
        [resource, _name] => (resource.to_string(), true),
        [resource, _name, sub, ..] => (format!("{resource}/{sub}"), true),
    };
    let verb = if resource.is_empty() {
        match *method {
            Method::GET | Method::HEAD => "get",
            _ => "other",
        }
    } else {
        match *method {
            Method::GET | Method::HEAD if watch_path || watch_query => "watch",
            Method::GET | Method::HEAD if named => "get",
            Method::GET | Method::HEAD => "list",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE if named => "delete",
            Method::DELETE => "deletecollection",
            _ => "other",
        }
    };
    let group = if resource.is_empty() {
        String::new()
    } else {
        group
    };
    Classified {
        verb,
        group,
        resource,
    }
}

/// The class of a status code: `2xx` ... `5xx`.
fn code_class(status: http::StatusCode) -> String {
    format!("{}xx", status.as_u16() / 100)
}

/// Counts each request in [`Metrics`] when its response (or error) arrives.
#[derive(Clone)]
pub struct CountLayer {
    pub metrics: Arc<Metrics>,
}

impl<S> Layer<S> for CountLayer {
    type Service = CountService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CountService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct CountService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<Body>> for CountService<S>
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

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let target = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
        let c = classify(req.method(), &target);
        let metrics = self.metrics.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await.map_err(Into::into);
            let code = match &result {
                Ok(resp) => code_class(resp.status()),
                Err(_) => "error".to_string(),
            };
            metrics.request(&RequestLabels {
                verb: c.verb.to_string(),
                group: c.group,
                resource: c.resource,
                code,
            });
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(method: Method, path: &str) -> (&'static str, String, String) {
        let c = classify(&method, path);
        (c.verb, c.group, c.resource)
    }

    fn t(verb: &'static str, group: &str, resource: &str) -> (&'static str, String, String) {
        (verb, group.to_string(), resource.to_string())
    }

    #[test]
    fn core_and_group_paths_give_the_servers_verbs() {
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/media/secrets/vpn"),
            t("get", "core", "secrets")
        );
        assert_eq!(
            c(
                Method::GET,
                "/apis/apps/v1/namespaces/media/deployments?labelSelector=a%3Db"
            ),
            t("list", "apps", "deployments")
        );
        assert_eq!(
            c(
                Method::GET,
                "/apis/apps/v1/deployments?watch=true&resourceVersion=12&timeoutSeconds=290"
            ),
            t("watch", "apps", "deployments")
        );
        assert_eq!(
            c(
                Method::PATCH,
                "/apis/mediastack.io/v1alpha1/namespaces/media/mediastacks/home/status?fieldManager=x"
            ),
            t("patch", "mediastack.io", "mediastacks/status")
        );
        assert_eq!(
            c(Method::POST, "/api/v1/namespaces/media/events"),
            t("create", "core", "events")
        );
        assert_eq!(
            c(Method::PUT, "/api/v1/namespaces/media/configmaps/x"),
            t("update", "core", "configmaps")
        );
        assert_eq!(
            c(Method::DELETE, "/api/v1/namespaces/media/pods/p"),
            t("delete", "core", "pods")
        );
        assert_eq!(
            c(
                Method::DELETE,
                "/api/v1/namespaces/media/pods?labelSelector=x"
            ),
            t("deletecollection", "core", "pods")
        );
    }

    #[test]
    fn cluster_scoped_and_namespace_paths() {
        assert_eq!(c(Method::GET, "/api/v1/nodes"), t("list", "core", "nodes"));
        assert_eq!(
            c(
                Method::GET,
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/ingressroutes.traefik.io"
            ),
            t("get", "apiextensions.k8s.io", "customresourcedefinitions")
        );
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces"),
            t("list", "core", "namespaces")
        );
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/media"),
            t("get", "core", "namespaces")
        );
        assert_eq!(
            c(Method::PUT, "/api/v1/namespaces/media/status"),
            t("update", "core", "namespaces/status")
        );
        assert_eq!(
            c(Method::PUT, "/api/v1/namespaces/media/finalize"),
            t("update", "core", "namespaces/finalize")
        );
        assert_eq!(
            c(
                Method::PATCH,
                "/apis/rbac.authorization.k8s.io/v1/clusterroles/r"
            ),
            t("patch", "rbac.authorization.k8s.io", "clusterroles")
        );
    }

    #[test]
    fn the_watch_prefix_subresources_and_non_resource_paths() {
        assert_eq!(
            c(Method::GET, "/api/v1/watch/namespaces/media/pods"),
            t("watch", "core", "pods")
        );
        assert_eq!(
            c(
                Method::GET,
                "/api/v1/namespaces/media/pods/p/log?container=a"
            ),
            t("get", "core", "pods/log")
        );
        // `watch=false` is not a watch.
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/media/pods?watch=false"),
            t("list", "core", "pods")
        );
        assert_eq!(c(Method::GET, "/apis"), t("get", "", ""));
        assert_eq!(c(Method::GET, "/apis/apps/v1"), t("get", "", ""));
        assert_eq!(c(Method::GET, "/version"), t("get", "", ""));
        assert_eq!(c(Method::POST, "/version"), t("other", "", ""));
    }

    /// The layer on a stand-in transport: one count per request, labelled
    /// with the response's class, or `error` when the transport fails.
    #[tokio::test]
    async fn the_layer_counts_each_request_with_its_response_class() {
        use tower::ServiceExt;
        let metrics = Arc::new(Metrics::default());
        let transport = tower::service_fn(|req: Request<Body>| async move {
            match req.uri().path() {
                "/api/v1/namespaces/media/secrets/gone" => Ok(Response::builder()
                    .status(404)
                    .body(Body::empty())
                    .expect("response")),
                "/api/v1/namespaces/media/secrets/broken" => Err(BoxError::from("reset")),
                _ => Ok(Response::new(Body::empty())),
            }
        });
        let svc = CountLayer {
            metrics: metrics.clone(),
        }
        .layer(transport);
        for name in ["ok", "ok", "gone", "broken"] {
            let req = Request::get(format!("/api/v1/namespaces/media/secrets/{name}"))
                .body(Body::empty())
                .expect("request");
            let _ = svc.clone().oneshot(req).await;
        }
        let text = metrics.encode();
        let count = |code: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with("mediastack_operator_api_requests_total{")
                        && l.contains(&format!("code=\"{code}\""))
                })
                .and_then(|l| l.rsplit(' ').next().map(str::to_string))
        };
        assert_eq!(count("2xx").as_deref(), Some("2"), "{text}");
        assert_eq!(count("4xx").as_deref(), Some("1"), "{text}");
        assert_eq!(count("error").as_deref(), Some("1"), "{text}");
        assert!(
            text.contains(r#"verb="get",group="core",resource="secrets""#),
            "{text}"
        );
    }

    #[test]
    fn status_codes_are_counted_by_class() {
        assert_eq!(code_class(http::StatusCode::OK), "2xx");
        assert_eq!(code_class(http::StatusCode::CREATED), "2xx");
        assert_eq!(code_class(http::StatusCode::NOT_FOUND), "4xx");
        assert_eq!(code_class(http::StatusCode::GONE), "4xx");
        assert_eq!(code_class(http::StatusCode::SERVICE_UNAVAILABLE), "5xx");
    }
}
