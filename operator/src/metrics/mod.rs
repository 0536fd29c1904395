//! Prometheus metrics of the operator itself: reconciles (runs, failures,
//! duration, in flight) and the API requests it sends ([`requests`]).
//!
//! Outside `runtime` so `reconcile` can count without depending on the
//! controller wiring.

pub mod requests;

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub controller: String,
    pub category: String,
}

/// Labels of one API request: see [`requests::classify`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    /// API group; `core` for the legacy `/api/v1` group.
    pub group: String,
    /// Resource (plural), with `/subresource` (`mediastacks/status`);
    /// empty for discovery and other non-resource paths.
    pub resource: String,
    /// `2xx`, `3xx`, `4xx`, `5xx`, or `error` when no response came back.
    pub code: String,
}

/// Buckets of the reconcile-duration histogram: from 5 ms, doubling.
pub const DURATION_BUCKETS: u16 = 14;

/// Reconcile counts, failures by category, durations, reconciles in
/// flight, API requests and writes.
pub struct Metrics {
    pub registry: Registry,
    reconciles: Family<ControllerLabel, Counter>,
    failures: Family<FailureLabels, Counter>,
    duration: Family<ControllerLabel, Histogram>,
    in_flight: Family<ControllerLabel, Gauge>,
    requests: Family<RequestLabels, Counter>,
    writes: Counter<u64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mediastack_operator");
        let reconciles = Family::<ControllerLabel, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        // 5 ms to 41 s: a reconcile of a large stack on a loaded API server
        // takes seconds, and the top bucket must stay above the p99.
        let duration = Family::<ControllerLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, DURATION_BUCKETS))
        });
        let in_flight = Family::<ControllerLabel, Gauge>::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let writes = Counter::default();
        registry.register("reconcile_runs", "Reconciles started", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by error category",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            duration.clone(),
        );
        registry.register(
            "reconciles_in_flight",
            "Reconciles running now (kube's controller queue itself is not observable)",
            in_flight.clone(),
        );
        registry.register(
            "api_requests",
            "Requests sent to the API server, by verb, resource and response code class",
            requests.clone(),
        );
        registry.register(
            "api_writes",
            "Write requests sent to the API server",
            writes.clone(),
        );
        Self {
            registry,
            reconciles,
            failures,
            duration,
            in_flight,
            requests,
            writes,
        }
    }
}

impl Metrics {
    /// Counts a reconcile and times it until the guard drops.
    pub fn reconcile_timer(&self, controller: &str) -> ReconcileTimer<'_> {
        let label = ControllerLabel {
            controller: controller.into(),
        };
        self.reconciles.get_or_create(&label).inc();
        self.in_flight.get_or_create(&label).inc();
        ReconcileTimer {
            metrics: self,
            label,
            start: Instant::now(),
        }
    }

    pub fn failure(&self, controller: &str, category: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                controller: controller.into(),
                category: category.into(),
            })
            .inc();
    }

    /// Counts one API request (see [`requests::CountLayer`]).
    pub fn request(&self, labels: &RequestLabels) {
        self.requests.get_or_create(labels).inc();
    }

    pub fn writes(&self, n: usize) {
        self.writes.inc_by(n as u64);
    }

    /// Total writes so far (for benchmarks and tests).
    pub fn write_count(&self) -> u64 {
        self.writes.get()
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Observes the reconcile duration and ends the in-flight count on drop.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    label: ControllerLabel,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&self.label)
            .observe(self.start.elapsed().as_secs_f64());
        self.metrics.in_flight.get_or_create(&self.label).dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconcile_is_in_flight_until_its_timer_drops() {
        let m = Metrics::default();
        let gauge = |m: &Metrics| {
            m.encode()
                .lines()
                .find(|l| l.starts_with("mediastack_operator_reconciles_in_flight{"))
                .and_then(|l| l.rsplit(' ').next().map(str::to_string))
        };
        let timer = m.reconcile_timer("MediaStack");
        let second = m.reconcile_timer("MediaStack");
        assert_eq!(gauge(&m).as_deref(), Some("2"));
        drop(second);
        drop(timer);
        assert_eq!(gauge(&m).as_deref(), Some("0"));
        let text = m.encode();
        assert!(
            text.contains("mediastack_operator_reconcile_runs_total{controller=\"MediaStack\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "mediastack_operator_reconcile_duration_seconds_count{controller=\"MediaStack\"} 2"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_duration_histogram_reaches_past_forty_seconds() {
        let m = Metrics::default();
        drop(m.reconcile_timer("MediaStack"));
        let text = m.encode();
        let bounds: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with("mediastack_operator_reconcile_duration_seconds_bucket{"))
            .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next()?.parse().ok())
            .filter(|b: &f64| b.is_finite())
            .collect();
        assert_eq!(bounds.len(), usize::from(DURATION_BUCKETS), "{text}");
        assert_eq!(bounds.first().copied(), Some(0.005));
        assert!(
            bounds.last().is_some_and(|b| *b > 40.0),
            "top finite bucket {:?}",
            bounds.last()
        );
    }
}
