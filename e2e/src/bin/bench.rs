//! Benchmark of the operator against a real API server; prints figures,
//! asserts nothing. Run it on the local control plane, with a simulated node
//! per stack (each stack's Traefik binds host port 80, so one per node), room
//! for every pod and a volume for every config claim:
//!
//! ```sh
//! cargo build -p mediastack-operator -p mediastack-e2e --bin bench
//! MEDIASTACK_KWOK_NODES=101 MEDIASTACK_KWOK_NODE_PODS=500 MEDIASTACK_PV_COUNT=1000 \
//!   MEDIASTACK_OPERATOR_BIN=target/debug/mediastack-operator \
//!   e2e/controlplane/cluster.sh exec -- target/debug/bench
//! ```
//!
//! Requests are counted from the API server's audit log (the harness audits
//! every verb), by the operator's user agent; durations come from the
//! operator's `/metrics`. Settings (environment):
//! - `BENCH_STACKS` (default 100): MediaStacks, one per namespace;
//! - `BENCH_RESYNC_SECONDS` (default 300, the operator's default): resync of
//!   the operator that reconciles the many stacks;
//! - `BENCH_NOOP_RESYNC_SECONDS` (default 5): resync of the first operator,
//!   which measures one stack and its no-op resyncs (6 of them);
//! - `BENCH_IDLE_SECONDS` (default 300): the idle window with every stack;
//! - `BENCH_WIRING=off`: the stacks turn the wiring task off (see
//!   [`apply_stack`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, PostParams};
use mediastack_e2e::stack::{WIREGUARD_SECRET, condition, example};
use mediastack_e2e::{AuditEvent, AuditLog, Operator, apply_yaml_in, client, wait_for};
use mediastack_operator::api::{MediaStack, VpnGateway};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn namespace(client: &kube::Client, name: &str) {
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace");
    let _ = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await;
}

async fn apply_gateway(ns: &str) {
    for doc in [
        WIREGUARD_SECRET.to_string(),
        example("examples/vpngateway.yaml"),
    ] {
        apply_yaml_in(ns, &doc, "bench").await.expect("apply");
    }
}

/// The example stack; with `BENCH_WIRING=off`, `spec.wiring.enabled:
/// false` (on the simulated nodes no app answers, so the wiring task's
/// failing links and their retries would be counted with the reconcile's
/// requests).
async fn apply_stack(ns: &str) {
    let mut stack: serde_json::Value =
        serde_yaml::from_str(&example("examples/mediastack.yaml")).expect("example YAML");
    if std::env::var("BENCH_WIRING").as_deref() == Ok("off") {
        stack["spec"]["wiring"] = serde_json::json!({"enabled": false});
    }
    let yaml = serde_yaml::to_string(&stack).expect("YAML");
    apply_yaml_in(ns, &yaml, "bench").await.expect("apply");
}

fn by_operator(e: &AuditEvent) -> bool {
    e.user_agent.starts_with("mediastack-operator/")
}

/// `verb resource` -> count.
fn tally<'a>(events: impl IntoIterator<Item = &'a AuditEvent>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in events {
        *out.entry(format!("{} {}", e.verb, e.resource)).or_insert(0) += 1;
    }
    out
}

fn by_verb<'a>(events: impl IntoIterator<Item = &'a AuditEvent>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in events {
        *out.entry(e.verb.clone()).or_insert(0) += 1;
    }
    out
}

fn is_read(verb: &str) -> bool {
    matches!(verb, "get" | "list" | "watch")
}

fn verbs_line(m: &BTreeMap<String, usize>, per: f64) -> String {
    let total: usize = m.values().sum();
    let parts: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k} {}", fmt(*v as f64 / per)))
        .collect();
    format!("{} ({})", fmt(total as f64 / per), parts.join(", "))
}

fn fmt(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Cumulative buckets `(le, count)` of histogram `name` for `controller`.
fn buckets(text: &str, name: &str, controller: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut out: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(&format!("controller=\"{controller}\"")))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The q-quantile of a cumulative histogram, interpolated linearly inside
/// the bucket (as PromQL's `histogram_quantile`); `None` without samples.
fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let within = if count > prev.1 {
                (rank - prev.1) / (count - prev.1)
            } else {
                0.0
            };
            return Some(prev.0 + (le - prev.0) * within);
        }
        prev = (le, count);
    }
    Some(prev.0)
}

fn durations(text: &str, rows: &mut Vec<(String, String)>, when: &str) {
    for controller in ["MediaStack", "VpnGateway", "IngressRoute"] {
        let b = buckets(
            text,
            "mediastack_operator_reconcile_duration_seconds",
            controller,
        );
        let n = b.last().map_or(0.0, |x| x.1);
        if let (Some(p50), Some(p99)) = (quantile(&b, 0.5), quantile(&b, 0.99)) {
            rows.push((
                format!("{controller} reconcile duration p50 / p99 ({when})"),
                format!("{:.3} s / {:.3} s ({n} reconciles)", p50, p99),
            ));
        }
    }
}

/// The operator's own count of API requests by verb, when it exports one.
fn operator_requests(text: &str) -> Option<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for l in text
        .lines()
        .filter(|l| l.starts_with("mediastack_operator_api_requests_total{"))
    {
        let verb = l.split("verb=\"").nth(1)?.split('"').next()?.to_string();
        let v: f64 = l.rsplit(' ').next()?.parse().ok()?;
        *out.entry(verb).or_insert(0.0) += v;
    }
    (!out.is_empty()).then_some(out)
}

fn rss_mib(op: &Operator) -> String {
    op.rss_kib()
        .map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client = client().await;
    let stacks_total = setting("BENCH_STACKS", 100).max(1) as usize;
    let resync = setting("BENCH_RESYNC_SECONDS", 300);
    let noop_resync = setting("BENCH_NOOP_RESYNC_SECONDS", 5).max(1);
    let idle = setting("BENCH_IDLE_SECONDS", 300).max(1);
    let mut audit = AuditLog::open();
    if audit.is_none() {
        println!("(no audit log: set MEDIASTACK_AUDIT_LOG; request counts are n/a)");
    }
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut details: Vec<String> = Vec::new();

    // Part 1: one stack, with an operator that resyncs every few seconds.
    let noop = noop_resync.to_string();
    let op = Operator::start_cluster_wide(&["--resync-seconds", &noop]).await;
    let ns = "bench-1";
    namespace(&client, ns).await;
    apply_gateway(ns).await;
    let gateways: Api<VpnGateway> = Api::namespaced(client.clone(), ns);
    wait_for("gateway reconciled", Duration::from_secs(120), || async {
        Ok(gateways
            .get("mullvad")
            .await?
            .status
            .is_some_and(|s| s.observed_generation.is_some()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Some(a) = audit.as_mut() {
        let startup = a.read_new();
        details.push(format!(
            "operator start + gateway: {} requests ({})",
            startup.iter().filter(|e| by_operator(e)).count(),
            verbs_line(&by_verb(startup.iter().filter(|e| by_operator(e))), 1.0)
        ));
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let stacks: Api<MediaStack> = Api::namespaced(client.clone(), ns);
    let start = Instant::now();
    apply_stack(ns).await;
    wait_for("children", Duration::from_secs(120), || async {
        Ok(deployments
            .list(&ListParams::default().labels("mediastack.io/stack=home"))
            .await?
            .items
            .len()
            >= 10)
    })
    .await?;
    let children = start.elapsed();
    wait_for("Ready", Duration::from_secs(180), || async {
        Ok(condition(&stacks.get("home").await?, "Ready").is_some_and(|c| c.0 == "True"))
    })
    .await?;
    let ready = start.elapsed();
    rows.push((
        "one stack: apply -> all 10 Deployments seen by a client".into(),
        format!("{:.2} s", children.as_secs_f64()),
    ));
    rows.push((
        "one stack: apply -> Ready (KWOK pods are ready at once)".into(),
        format!("{:.2} s", ready.as_secs_f64()),
    ));

    if let Some(a) = audit.as_mut() {
        let events = a.read_new();
        let applied = events.iter().find(|e| {
            !by_operator(e) && e.resource == "mediastacks" && e.namespace == ns && e.name == "home"
        });
        let status = events.iter().find(|e| {
            by_operator(e)
                && e.resource == "mediastacks/status"
                && e.namespace == ns
                && e.verb != "get"
        });
        if let (Some(applied), Some(status)) = (applied, status) {
            let first: Vec<&AuditEvent> = events
                .iter()
                .filter(|e| {
                    by_operator(e)
                        && e.received >= applied.received
                        && e.received <= status.received
                })
                .collect();
            let last_child = first
                .iter()
                .filter(|e| !is_read(&e.verb) && !e.resource.ends_with("/status"))
                .filter(|e| e.resource != "events")
                .map(|e| e.received)
                .max();
            if let Some(t) = last_child {
                let d = t.duration_since(applied.received);
                rows.push((
                    "one stack: apply -> last child written (audit log)".into(),
                    format!("{:.2} s", d.as_secs_f64()),
                ));
            }
            let writes: Vec<&&AuditEvent> = first.iter().filter(|e| !is_read(&e.verb)).collect();
            let reads: Vec<&&AuditEvent> = first.iter().filter(|e| is_read(&e.verb)).collect();
            let other_reads: Vec<&&AuditEvent> = reads
                .iter()
                .copied()
                .filter(|e| !(e.verb == "get" && e.resource == "secrets"))
                .collect();
            rows.push((
                "first reconcile of one stack (apply -> first status write): requests".into(),
                verbs_line(&by_verb(first.iter().copied()), 1.0),
            ));
            rows.push((
                "  of which writes (children + status + events)".into(),
                writes.len().to_string(),
            ));
            rows.push((
                "  of which reads other than Secret GETs".into(),
                other_reads.len().to_string(),
            ));
            details.push(format!(
                "first reconcile, every request by verb and resource: {:?}",
                tally(first.iter().copied())
            ));
        } else {
            rows.push((
                "first reconcile of one stack".into(),
                "n/a (no stack apply or status write in the audit log)".into(),
            ));
        }
    }

    // No-op resyncs of the settled stack.
    tokio::time::sleep(Duration::from_secs(noop_resync * 2 + 2)).await;
    let periods = 6;
    if let Some(a) = audit.as_mut() {
        let _ = a.read_new();
        let runs_before = op.metrics().await;
        tokio::time::sleep(Duration::from_secs(noop_resync * periods)).await;
        let events: Vec<AuditEvent> = a.read_new().into_iter().filter(by_operator).collect();
        let runs_after = op.metrics().await;
        let runs = |t: &str, c: &str| {
            mediastack_e2e::sum_counter(t, "mediastack_operator_reconcile_runs_total", |l| {
                l.contains(&format!("\"{c}\""))
            })
        };
        rows.push((
            format!("requests per no-op resync ({noop_resync} s resync, {periods} periods)"),
            verbs_line(&by_verb(&events), periods as f64),
        ));
        let non_secret_reads = events
            .iter()
            .filter(|e| is_read(&e.verb) && !(e.verb == "get" && e.resource == "secrets"))
            .count();
        rows.push((
            "  reads other than Secret GETs per no-op resync".into(),
            fmt(non_secret_reads as f64 / periods as f64),
        ));
        details.push(format!(
            "no-op window: reconciles MediaStack {}, VpnGateway {}, IngressRoute {}; requests {:?}",
            runs(&runs_after, "MediaStack") - runs(&runs_before, "MediaStack"),
            runs(&runs_after, "VpnGateway") - runs(&runs_before, "VpnGateway"),
            runs(&runs_after, "IngressRoute") - runs(&runs_before, "IngressRoute"),
            tally(&events)
        ));
    }
    rows.push(("operator RSS with 1 MediaStack".into(), rss_mib(&op)));
    durations(&op.metrics().await, &mut rows, "one stack");
    drop(op);

    // Part 2: many stacks, one per namespace, with the default resync.
    let resync_arg = resync.to_string();
    let op = Operator::start_cluster_wide(&["--resync-seconds", &resync_arg]).await;
    for i in 2..=stacks_total {
        let ns = format!("bench-{i}");
        namespace(&client, &ns).await;
        apply_gateway(&ns).await;
    }
    if let Some(a) = audit.as_mut() {
        let _ = a.read_new();
    }
    let first_apply = Instant::now();
    for i in 2..=stacks_total {
        apply_stack(&format!("bench-{i}")).await;
    }
    let last_apply = Instant::now();
    let all: Api<MediaStack> = Api::all(client.clone());
    let ready_count = || async {
        let list = all.list(&ListParams::default()).await?;
        Ok::<_, kube::Error>(
            list.items
                .iter()
                .filter(|s| condition(*s, "Ready").is_some_and(|c| c.0 == "True"))
                .count(),
        )
    };
    let converged = wait_for("every stack Ready", Duration::from_secs(1800), || async {
        Ok(ready_count().await? >= stacks_total)
    })
    .await;
    match converged {
        Ok(()) => rows.push((
            format!("{stacks_total} stacks: last apply -> all Ready ({resync} s resync)"),
            format!(
                "{:.1} s (first apply -> all Ready {:.1} s)",
                last_apply.elapsed().as_secs_f64(),
                first_apply.elapsed().as_secs_f64()
            ),
        )),
        Err(e) => {
            let pending = Api::<Pod>::all(client.clone())
                .list(&ListParams::default().fields("status.phase=Pending"))
                .await
                .map(|l| l.items.len())
                .unwrap_or(0);
            rows.push((
                format!("{stacks_total} stacks: last apply -> all Ready ({resync} s resync)"),
                format!(
                    "not reached: {e}; {} Ready, {pending} pods Pending",
                    ready_count().await.unwrap_or(0)
                ),
            ));
        }
    }
    if let Some(a) = audit.as_mut() {
        let events: Vec<AuditEvent> = a.read_new().into_iter().filter(by_operator).collect();
        rows.push((
            format!("{stacks_total} stacks: requests from first apply to all Ready"),
            verbs_line(&by_verb(&events), 1.0),
        ));
    }

    // Idle: every stack settled.
    tokio::time::sleep(Duration::from_secs(10)).await;
    if let Some(a) = audit.as_mut() {
        let _ = a.read_new();
    }
    tokio::time::sleep(Duration::from_secs(idle)).await;
    if let Some(a) = audit.as_mut() {
        let events: Vec<AuditEvent> = a.read_new().into_iter().filter(by_operator).collect();
        rows.push((
            format!("requests per minute, {stacks_total} idle stacks ({idle} s window)"),
            verbs_line(&by_verb(&events), idle as f64 / 60.0),
        ));
        details.push(format!("idle window requests: {:?}", tally(&events)));
    }
    rows.push((
        format!("operator RSS with {stacks_total} MediaStacks"),
        rss_mib(&op),
    ));
    let text = op.metrics().await;
    durations(&text, &mut rows, &format!("{stacks_total} stacks"));
    if let Some(reqs) = operator_requests(&text) {
        details.push(format!(
            "operator's own mediastack_operator_api_requests_total by verb (part 2): {reqs:?}"
        ));
    }

    println!("\n| Figure | Value |\n|---|---|");
    for (k, v) in &rows {
        println!("| {k} | {v} |");
    }
    println!();
    for d in &details {
        println!("{d}");
    }
    Ok(())
}
