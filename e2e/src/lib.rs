//! Harness for cluster tests. Works against any cluster reachable through
//! `KUBECONFIG`: the local control plane (`e2e/controlplane/cluster.sh`) or kind.
//!
//! Each test gets a fresh namespace that is deleted when the test ends, even
//! when it panics. Waits poll with a timeout; there are no bare sleeps.

pub mod realnode;
pub mod stack;

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};

/// Default time a wait may take.
pub const TIMEOUT: Duration = Duration::from_secs(90);

/// A client from `KUBECONFIG` (or in-cluster config).
pub async fn client() -> Client {
    Client::try_default().await.expect(
        "a cluster reachable through KUBECONFIG (start one with e2e/controlplane/cluster.sh)",
    )
}

/// A namespace that is deleted on drop.
pub struct TestNamespace {
    pub name: String,
    pub client: Client,
}

impl TestNamespace {
    /// Creates `e2e-<prefix>-<random>`.
    pub async fn new(prefix: &str) -> Self {
        let client = client().await;
        let suffix: u32 = std::process::id()
            ^ (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0));
        let name = format!("e2e-{prefix}-{:x}", suffix & 0xffffff);
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": {"mediastack.io/e2e": "true"}}})).expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create test namespace");
        // The namespace is usable for pods once its default ServiceAccount exists.
        let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), &name);
        wait_for("default ServiceAccount", TIMEOUT, || async {
            Ok(sa.get_opt("default").await?.is_some())
        })
        .await
        .expect("default ServiceAccount");
        Self { name, client }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Applies a YAML manifest (one or more documents) into this namespace
    /// with server-side apply under `manager` (as `kubectl apply --server-side`).
    pub async fn apply_yaml(&self, yaml: &str, manager: &str) -> anyhow::Result<String> {
        apply_yaml_in(&self.name, yaml, manager).await
    }

    /// Creates a manifest (as `kubectl create`, with strict field validation);
    /// the error carries the API server's message.
    pub async fn create_yaml(&self, yaml: &str) -> anyhow::Result<String> {
        kubectl_stdin(
            &["create", "-n", &self.name, "-f", "-"],
            &without_namespace(yaml),
        )
        .await
    }
}

/// The manifest without the examples' `namespace: media`, so they land in
/// the test's namespace.
pub fn without_namespace(yaml: &str) -> String {
    yaml.replace(", namespace: media}", "}")
        .replace("\n  namespace: media\n", "\n")
}

/// `kubectl apply --server-side` of `yaml` into namespace `ns` under `manager`.
pub async fn apply_yaml_in(ns: &str, yaml: &str, manager: &str) -> anyhow::Result<String> {
    kubectl_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager",
            manager,
            "-n",
            ns,
            "-f",
            "-",
        ],
        &without_namespace(yaml),
    )
    .await
}

/// Runs `kubectl` with `input` on stdin; returns stdout, or the error with stderr.
pub async fn kubectl_stdin(args: &[&str], input: &str) -> anyhow::Result<String> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("kubectl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("kubectl on PATH")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!(
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var_os("E2E_KEEP_NAMESPACES").is_some() {
            eprintln!("keeping namespace {}", self.name);
            return;
        }
        // Deletion is asynchronous in the API server; fire it from a fresh thread
        // (Drop may run inside a runtime).
        let (client, name) = (self.client.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async move {
                    let _ = Api::<Namespace>::all(client)
                        .delete(&name, &DeleteParams::background())
                        .await;
                });
            }
        })
        .join();
    }
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let start = tokio::time::Instant::now();
    let mut last_err = None;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        if start.elapsed() > timeout {
            bail!(
                "timed out after {:?} waiting for {what}{}",
                timeout,
                last_err
                    .map(|e| format!(" (last error: {e:#})"))
                    .unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `kubectl` with the test's KUBECONFIG; returns stdout, or the error with stderr.
pub async fn kubectl(args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("kubectl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .context("kubectl on PATH")?;
    if !out.status.success() {
        bail!(
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The message of an API error (what a user sees from kubectl).
pub fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// An operator process watching one namespace, stopped on drop. With
/// `MEDIASTACK_E2E_OPERATOR=external` (kind: the chart runs the operator)
/// nothing is started.
pub struct Operator {
    child: Option<tokio::process::Child>,
    pub metrics_url: Option<String>,
    /// The process's log (stdout and stderr), when it runs here.
    pub log_path: Option<PathBuf>,
}

impl Operator {
    pub async fn start(ns: &TestNamespace) -> Self {
        Self::start_with(ns, &[]).await
    }

    /// Like [`Operator::start`] with extra `run` arguments.
    pub async fn start_with(ns: &TestNamespace, extra: &[&str]) -> Self {
        let mut args = vec!["--namespace", ns.name.as_str()];
        args.extend_from_slice(extra);
        Self::spawn(&ns.name, &args).await
    }

    /// An operator watching every namespace (benchmarks).
    pub async fn start_cluster_wide(extra: &[&str]) -> Self {
        Self::spawn("cluster-wide", extra).await
    }

    /// A local operator process even when the cluster runs its own (kind):
    /// for tests about the processes themselves, such as leader election.
    pub async fn start_local(ns: &TestNamespace, extra: &[&str]) -> Self {
        let mut args = vec!["--namespace", ns.name.as_str()];
        args.extend_from_slice(extra);
        Self::spawn_process(&ns.name, &args).await
    }

    async fn spawn(log_name: &str, extra: &[&str]) -> Self {
        if std::env::var("MEDIASTACK_E2E_OPERATOR").as_deref() == Ok("external") {
            return Self {
                child: None,
                metrics_url: None,
                log_path: None,
            };
        }
        Self::spawn_process(log_name, extra).await
    }

    async fn spawn_process(log_name: &str, extra: &[&str]) -> Self {
        let bin = std::env::var("MEDIASTACK_OPERATOR_BIN").unwrap_or_else(|_| {
            repo_root()
                .join("target/debug/mediastack-operator")
                .display()
                .to_string()
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let log_path = std::env::temp_dir().join(format!("{log_name}-operator-{port}.log"));
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut cmd = tokio::process::Command::new(&bin);
        if let Some(kubeconfig) = operator_kubeconfig() {
            cmd.env("KUBECONFIG", kubeconfig);
        }
        let child = cmd
            .args(["run", "--listen", &format!("127.0.0.1:{port}")])
            // Fast resyncs unless the test chooses.
            .args(if extra.contains(&"--resync-seconds") {
                &[][..]
            } else {
                &["--resync-seconds", "5"][..]
            })
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("E2E_OPERATOR_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        let url = format!("http://127.0.0.1:{port}");
        let ready = format!("{url}/readyz");
        wait_for("operator /readyz", TIMEOUT, || {
            let ready = ready.clone();
            async move {
                Ok(http_get(&ready)
                    .await
                    .map(|(code, _)| code == 200)
                    .unwrap_or(false))
            }
        })
        .await
        .expect("operator ready");
        Self {
            child: Some(child),
            metrics_url: Some(format!("{url}/metrics")),
            log_path: Some(log_path),
        }
    }

    /// Resident memory of the process in KiB (Linux), if it runs here.
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the process, if it runs here.
    pub fn signal(&self, signal: &str) {
        let Some(pid) = self.child.as_ref().and_then(|c| c.id()) else {
            return;
        };
        let ok = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {pid}");
    }

    /// Whether the process has exited (it runs here and is gone).
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some())
    }

    /// Kills the process (as a crash would) and waits for it to exit.
    pub async fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill().await;
        }
    }

    /// The operator's own metrics text (empty for an external operator).
    pub async fn metrics(&self) -> String {
        match &self.metrics_url {
            Some(u) => http_get(u).await.map(|(_, body)| body).unwrap_or_default(),
            None => String::new(),
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
    }
}

/// The identity the operator runs as, e.g.
/// `system:serviceaccount:mediastack-system:mediastack-operator`, with the
/// RBAC of the chart installed by e2e/test.sh. Unset: the tests' own (admin)
/// credentials.
pub const OPERATOR_AS: &str = "MEDIASTACK_OPERATOR_AS";

/// A copy of `KUBECONFIG` whose users impersonate `$MEDIASTACK_OPERATOR_AS`
/// (and its ServiceAccount groups), so a missing RBAC rule in the chart fails
/// the tests that need it.
fn operator_kubeconfig() -> Option<PathBuf> {
    static PATH: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let user = std::env::var(OPERATOR_AS).ok()?;
        let source =
            std::env::var("KUBECONFIG").expect("KUBECONFIG is set when MEDIASTACK_OPERATOR_AS is");
        let source = source.split(':').next().unwrap_or_default().to_string();
        let mut cfg: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&source).expect("read KUBECONFIG"))
                .expect("KUBECONFIG is YAML");
        let mut groups = vec![
            "system:serviceaccounts".to_string(),
            "system:authenticated".to_string(),
        ];
        if let Some(ns) = user
            .strip_prefix("system:serviceaccount:")
            .and_then(|r| r.split(':').next())
        {
            groups.push(format!("system:serviceaccounts:{ns}"));
        }
        for u in cfg["users"].as_sequence_mut().into_iter().flatten() {
            u["user"]["as"] = user.clone().into();
            u["user"]["as-groups"] = serde_yaml::to_value(&groups).expect("groups");
        }
        let path = std::env::temp_dir().join(format!(
            "mediastack-e2e-operator-{}.kubeconfig",
            std::process::id()
        ));
        std::fs::write(&path, serde_yaml::to_string(&cfg).expect("kubeconfig"))
            .expect("write kubeconfig");
        Some(path)
    })
    .clone()
}

/// A minimal HTTP/1.0 GET against a loopback address: (status code, body).
pub async fn http_get(url: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").context("http URL")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = tokio::net::TcpStream::connect(host).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("status line")?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// Sum of a counter in Prometheus text over the series whose labels satisfy `filter`.
pub fn sum_counter(text: &str, metric: &str, filter: impl Fn(&str) -> bool) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']))
        .filter(|l| filter(l))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// The API server's own metrics.
pub async fn apiserver_metrics(client: &Client) -> anyhow::Result<String> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    Ok(client.request_text(req).await?)
}

/// Whether an audit event's verb writes (the audit log also records reads).
pub fn is_write_verb(verb: &str) -> bool {
    matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    )
}

/// Write requests (create, update, patch, delete) in namespace `ns` recorded in
/// the local control plane's audit log by clients other than the cluster's own
/// components (controller-manager, scheduler, kwok), as `verb resource/name`.
/// `None` when the cluster has no audit log we can read (e.g. kind).
pub fn audited_writes(ns: &str) -> Option<Vec<String>> {
    let path = std::env::var_os("MEDIASTACK_AUDIT_LOG")?;
    let text = std::fs::read_to_string(path).ok()?;
    let components = ["kube-controller-manager", "kube-scheduler", "kwok"];
    Some(
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["stage"] == "ResponseComplete" && e["objectRef"]["namespace"] == ns)
            .filter(|e| is_write_verb(e["verb"].as_str().unwrap_or("")))
            .filter(|e| {
                !components
                    .iter()
                    .any(|c| e["userAgent"].as_str().unwrap_or("").starts_with(c))
            })
            .map(|e| {
                let r = &e["objectRef"];
                let sub = r["subresource"]
                    .as_str()
                    .map(|s| format!("/{s}"))
                    .unwrap_or_default();
                format!(
                    "{} {}{}/{}",
                    e["verb"].as_str().unwrap_or(""),
                    r["resource"].as_str().unwrap_or(""),
                    sub,
                    r["name"].as_str().unwrap_or("")
                )
            })
            .collect(),
    )
}

/// Write requests in the local control plane's audit log whose user agent
/// contains `agent`, as `(time, "verb resource/name")`; `None` without an
/// audit log (e.g. kind).
pub fn audited_writes_by(agent: &str) -> Option<Vec<(String, String)>> {
    let path = std::env::var_os("MEDIASTACK_AUDIT_LOG")?;
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["stage"] == "ResponseComplete")
            .filter(|e| is_write_verb(e["verb"].as_str().unwrap_or("")))
            .filter(|e| e["userAgent"].as_str().unwrap_or("").contains(agent))
            .map(|e| {
                let r = &e["objectRef"];
                (
                    e["requestReceivedTimestamp"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    format!(
                        "{} {}/{} -> {}",
                        e["verb"].as_str().unwrap_or(""),
                        r["resource"].as_str().unwrap_or(""),
                        r["name"].as_str().unwrap_or(""),
                        e["responseStatus"]["code"]
                    ),
                )
            })
            .collect(),
    )
}

/// One request in the local control plane's audit log.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    pub received: k8s_openapi::jiff::Timestamp,
    pub verb: String,
    /// Resource, with `/subresource` when there is one (`mediastacks/status`).
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub user_agent: String,
    pub code: i64,
}

/// Reads the audit log (`MEDIASTACK_AUDIT_LOG`) incrementally: each
/// [`AuditLog::read_new`] returns the requests logged since the last call.
pub struct AuditLog {
    path: PathBuf,
    offset: u64,
}

impl AuditLog {
    /// `None` when the cluster has no audit log we can read (e.g. kind).
    pub fn open() -> Option<Self> {
        let path = PathBuf::from(std::env::var_os("MEDIASTACK_AUDIT_LOG")?);
        path.exists().then_some(Self { path, offset: 0 })
    }

    /// Requests logged since the previous call, each once: a watch when its
    /// response starts (it may never complete), any other request when it
    /// completes.
    pub fn read_new(&mut self) -> Vec<AuditEvent> {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_err() || f.read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        // Only whole lines: the server may be writing the last one.
        let whole = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        self.offset += whole as u64;
        buf[..whole]
            .split(|b| *b == b'\n')
            .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
            .filter(|e| {
                let watch = e["verb"] == "watch";
                (watch && e["stage"] == "ResponseStarted")
                    || (!watch && e["stage"] == "ResponseComplete")
            })
            .filter_map(|e| {
                let r = &e["objectRef"];
                let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
                let mut resource = text(&r["resource"]);
                if let Some(sub) = r["subresource"].as_str() {
                    resource = format!("{resource}/{sub}");
                }
                Some(AuditEvent {
                    received: e["requestReceivedTimestamp"].as_str()?.parse().ok()?,
                    verb: text(&e["verb"]),
                    resource,
                    namespace: text(&r["namespace"]),
                    name: text(&r["name"]),
                    user_agent: text(&e["userAgent"]),
                    code: e["responseStatus"]["code"].as_i64().unwrap_or(0),
                })
            })
            .collect()
    }
}
