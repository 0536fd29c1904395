//! The `IngressRoute` resource (`ingressroutes.mediastack.io`): a service
//! exposed on the local domain and optionally through the tunnel. Not to be
//! confused with Traefik's `ingressroutes.traefik.io`, which it renders.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{LocalRef, SecretRef};

/// Exposes a Service at a host name on the stack's Traefik, optionally also
/// through the Cloudflare tunnel, with optional auth and IP allow list.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mediastack.io",
    version = "v1alpha1",
    kind = "IngressRoute",
    namespaced,
    derive = "PartialEq",
    status = "IngressRouteStatus",
    shortname = "mroute",
    category = "media",
    doc = "A Service exposed through the stack's Traefik on the local domain and optionally through the tunnel.",
    printcolumn(name = "Host", type_ = "string", json_path = ".status.hosts[0]"),
    printcolumn(name = "Public", type_ = "boolean", json_path = ".spec.public"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.host) != has(self.subdomain)").message("set exactly one of host or subdomain"))]
pub struct IngressRouteSpec {
    /// Full host name, e.g. `ha.lan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(
            pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"
        )
    )]
    pub host: Option<String>,
    /// A DNS label placed before the stack's local domain: `ha` gives `ha.lan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    )]
    pub subdomain: Option<String>,
    /// The backend Service in this namespace.
    pub service: ServiceTarget,
    /// Also publish through the stack's tunnel at `<first label>.<domain.public>`.
    #[serde(default)]
    pub public: bool,
    /// The MediaStack whose Traefik and tunnel serve the route; optional when
    /// the namespace has exactly one MediaStack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_ref: Option<LocalRef>,
    /// Authentication in front of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<RouteAuth>,
    /// Only these client ranges may reach the route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = kube::core::Rule::new("self.all(c, isCIDR(c) || isIP(c))").message("allowCIDRs entries must be IP addresses or CIDRs such as 192.168.0.0/16"))]
    #[schemars(length(max = 32), inner(length(min = 1, max = 43)))]
    #[serde(rename = "allowCIDRs")]
    pub allow_cidrs: Vec<String>,
}

/// The backend Service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "type(self.port) == string || (self.port >= 1 && self.port <= 65535)"
).message("service.port must be a port number from 1 to 65535 or a port name"))]
pub struct ServiceTarget {
    /// Service name.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
    )]
    pub name: String,
    /// Service port number or name.
    pub port: IntOrString,
}

/// Authentication of a route: exactly one of basic auth or forward auth.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.basicAuthSecretRef) != has(self.forwardAuth)").message("auth needs exactly one of basicAuthSecretRef or forwardAuth"))]
pub struct RouteAuth {
    /// Secret with an htpasswd `users` key (Traefik basic auth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth_secret_ref: Option<SecretRef>,
    /// An external authentication service (Traefik forward auth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_auth: Option<ForwardAuth>,
}

/// Traefik forward auth.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ForwardAuth {
    /// URL of the authentication service, e.g. `http://authelia:9091/api/verify`.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub address: String,
    /// Response headers copied to the request, e.g. `Remote-User`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth_response_headers: Vec<String>,
}

/// Observed state of an IngressRoute.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IngressRouteStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`, and `Insecure` for public routes without auth.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Host names served.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// URLs the service is reachable at.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}
