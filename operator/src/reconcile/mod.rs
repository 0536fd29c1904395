//! I/O: resolve references, apply and prune children, write status.
//! One module per controller (`mediastack`, `vpngateway`, `ingressroute`)
//! plus the stages they share: `resolve` (reads several controllers make),
//! `apply` and `children` (the apply stage and its result), `status` (the
//! pure status stage) and `report` (writing status and events). The
//! controllers depend on the shared modules, never on each other.

pub mod apply;
pub mod cache;
pub mod children;
pub mod ingressroute;
pub mod mediastack;
pub mod report;
pub mod resolve;
pub mod status;
pub mod vpngateway;

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};

use crate::metrics::Metrics;
use crate::render::RenderError;

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "mediastack-operator";

/// Shared state of the controllers.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Pod and service ranges given on the command line; discovered when empty.
    pub cluster_subnets: Vec<String>,
    /// Safety-net resync period after a successful reconcile.
    pub resync: Duration,
    /// The cluster admin's policy (operator flags).
    pub policy: crate::policy::Policy,
    /// The fixed ClusterRole (from the chart) that cluster-scoped bindings use.
    pub node_reader_role: String,
    /// The watch caches every reconcile reads (see [`cache`]).
    pub cache: Arc<cache::Cache>,
    /// The operator's own pods, for the NetworkPolicies in front of the apps
    /// its wiring calls (`--operator-namespace`, `--operator-pod-labels`).
    pub operator: Option<crate::render::OperatorPeer>,
}

impl Context {
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        cluster_subnets: Vec<String>,
        cache: Arc<cache::Cache>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            cluster_subnets,
            resync: Duration::from_secs(300),
            policy: crate::policy::Policy::default(),
            node_reader_role: crate::render::stack::DEFAULT_NODE_READER_ROLE.into(),
            cache,
            operator: None,
        }
    }
}

/// Errors of a reconcile. Each variant is one failed operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot apply {what}: {source}")]
    Apply {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot delete {what}: {source}")]
    Delete {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot write the status of {what}: {source}")]
    Status {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot render the desired objects: {0}")]
    Render(#[source] RenderError),
    #[error("the object has no {0}")]
    MissingMetadata(&'static str),
}

impl Error {
    /// Static category, used as a metric label and event reason.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Read { .. } => "ReadFailed",
            Error::Apply { .. } => "ApplyFailed",
            Error::Delete { .. } => "DeleteFailed",
            Error::Status { .. } => "StatusFailed",
            Error::Render(_) => "RenderFailed",
            Error::MissingMetadata(_) => "InvalidObject",
        }
    }
}

/// Requeue delay after a failure: transient errors back off, bounded.
pub fn backoff(attempt: u32) -> Action {
    let secs = 2u64.saturating_pow(attempt.min(8)).min(300);
    Action::requeue(Duration::from_secs(secs))
}
