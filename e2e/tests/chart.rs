//! The Helm chart and the generated reference: the chart ships the CRDs the
//! operator generates, lints clean, renders objects the API server accepts,
//! and grants the operator's ServiceAccount what the operator needs to write
//! everything it renders (Kubernetes refuses a Role that grants more than its
//! creator holds). `docs/reference.md` matches the CRD schemas.
//!
//! The tests without a cluster need only `helm`; the others need KUBECONFIG
//! (`e2e/controlplane/cluster.sh exec -- cargo test -p mediastack-e2e --test chart`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;

use kube::api::Api;
use mediastack_e2e::{TIMEOUT, TestNamespace, kubectl, kubectl_stdin, repo_root, wait_for};
use mediastack_operator::api::MediaStack;
use mediastack_operator::render::meta::Parent;
use mediastack_operator::render::{Child, Inputs, dozzle, stack};
use serde::Deserialize as _;
use serde_json::Value;

const CHART: &str = "charts/mediastack-operator";

fn chart_dir() -> PathBuf {
    repo_root().join(CHART)
}

/// Runs `helm`; panics with its stderr, or with how to get it when it is missing.
fn helm(args: &[&str]) -> String {
    let out = std::process::Command::new("helm")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run helm ({e}): put it on PATH, e.g. `export PATH=$(e2e/controlplane/build.sh):$PATH`")
        });
    assert!(
        out.status.success(),
        "helm {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The pinned Kubernetes version (e2e/controlplane/versions.env). `helm
/// template` is given it: a helm built with `go install` assumes 1.20, below
/// the chart's kubeVersion.
fn kube_version() -> String {
    let versions = std::fs::read_to_string(repo_root().join("e2e/controlplane/versions.env"))
        .expect("versions.env");
    versions
        .lines()
        .find_map(|l| l.strip_prefix("KUBERNETES_VERSION="))
        .expect("KUBERNETES_VERSION in versions.env")
        .to_string()
}

/// `helm template <release> <chart> --namespace <ns> --kube-version <pinned> <extra...>`.
fn template(release: &str, ns: &str, extra: &[&str]) -> String {
    let chart = chart_dir().display().to_string();
    let kube = kube_version();
    let mut args = vec![
        "template",
        release,
        chart.as_str(),
        "--namespace",
        ns,
        "--kube-version",
        kube.as_str(),
    ];
    args.extend_from_slice(extra);
    helm(&args)
}

/// The non-empty documents of a YAML stream.
fn documents(yaml: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde_yaml::Value::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn chart_crds_are_the_generated_crds() {
    let generated = repo_root().join("crds/mediastack.io.yaml");
    let shipped = chart_dir().join("files/crds/mediastack.io.yaml");
    let a = std::fs::read(&generated).expect("crds/mediastack.io.yaml");
    let b = std::fs::read(&shipped).expect("the chart's files/crds/mediastack.io.yaml");
    assert!(
        a == b,
        "{} differs from {}: run `cp crds/mediastack.io.yaml {CHART}/files/crds/`",
        shipped.display(),
        generated.display()
    );
    // Helm's crds/ directory is installed once and never upgraded, and no
    // value can switch it off: the chart must not have one.
    assert!(
        !chart_dir().join("crds").exists(),
        "the chart has a crds/ directory; the CRDs are templates/crds.yaml"
    );
    // What the template renders is the generated CRDs, plus labels and the
    // keep policy.
    let generated_docs = documents(&String::from_utf8(a).expect("UTF-8"));
    let rendered = documents(&template(
        "r",
        "ns",
        &["--show-only", "templates/crds.yaml"],
    ));
    assert_eq!(rendered.len(), 3, "three CRDs");
    for (want, got) in generated_docs.iter().zip(&rendered) {
        let name = want["metadata"]["name"].as_str().expect("name");
        assert_eq!(got["metadata"]["name"].as_str(), Some(name));
        assert_eq!(want["spec"], got["spec"], "{name}: spec as generated");
        assert_eq!(
            got["metadata"]["annotations"]["helm.sh/resource-policy"].as_str(),
            Some("keep"),
            "{name}"
        );
        assert_eq!(
            got["metadata"]["labels"]["app.kubernetes.io/managed-by"].as_str(),
            Some("Helm"),
            "{name}"
        );
    }
}

/// The objects of `kind` in a rendered chart.
fn of_kind<'a>(docs: &'a [serde_yaml::Value], kind: &str) -> Vec<&'a serde_yaml::Value> {
    docs.iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect()
}

/// The operator container's arguments in the rendered Deployment.
fn operator_args(docs: &[serde_yaml::Value]) -> Vec<String> {
    of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

/// `helm template` that is expected to fail; returns its stderr.
fn template_fails(extra: &[&str]) -> String {
    let chart = chart_dir().display().to_string();
    let out = std::process::Command::new("helm")
        .args(["template", "r", chart.as_str(), "--namespace", "ns"])
        .args(["--kube-version", &kube_version()])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("helm");
    assert!(!out.status.success(), "helm template {extra:?} must fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn chart_crds_install_and_keep_values() {
    let crds = |extra: &[&str]| {
        let docs = documents(&template("r", "ns", extra));
        of_kind(&docs, "CustomResourceDefinition")
            .into_iter()
            .map(|c| {
                (
                    c["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    c["metadata"]["annotations"]["helm.sh/resource-policy"]
                        .as_str()
                        .map(str::to_string),
                )
            })
            .collect::<Vec<_>>()
    };
    let keep = Some("keep".to_string());
    assert_eq!(
        crds(&[]),
        [
            ("mediastacks.mediastack.io".to_string(), keep.clone()),
            ("vpngateways.mediastack.io".to_string(), keep.clone()),
            ("ingressroutes.mediastack.io".to_string(), keep),
        ]
    );
    assert!(
        crds(&["--set", "crds.keep=false"])
            .iter()
            .all(|(_, policy)| policy.is_none()),
        "crds.keep=false: no resource policy"
    );
    assert_eq!(crds(&["--set", "crds.install=false"]), []);
}

#[test]
fn chart_name_overrides() {
    let names = |extra: &[&str]| {
        let docs = documents(&template("rel", "ns", extra));
        let d = of_kind(&docs, "Deployment")[0].clone();
        let svc = of_kind(&docs, "Service")[0].clone();
        let args = operator_args(&docs);
        let lease = args
            .iter()
            .find_map(|a| a.strip_prefix("--leader-lease=").map(str::to_string))
            .expect("a leader lease");
        (
            d["metadata"]["name"].as_str().expect("name").to_string(),
            d["metadata"]["labels"]["app.kubernetes.io/name"]
                .as_str()
                .expect("label")
                .to_string(),
            svc["metadata"]["name"].as_str().expect("name").to_string(),
            lease,
        )
    };
    assert_eq!(
        names(&[]),
        (
            "rel-mediastack-operator".into(),
            "mediastack-operator".into(),
            "rel-mediastack-operator".into(),
            "ns/rel-mediastack-operator".into()
        )
    );
    assert_eq!(
        names(&["--set", "nameOverride=msop"]),
        (
            "rel-msop".into(),
            "msop".into(),
            "rel-msop".into(),
            "ns/rel-msop".into()
        )
    );
    assert_eq!(
        names(&["--set", "fullnameOverride=media-op"]),
        (
            "media-op".into(),
            "mediastack-operator".into(),
            "media-op".into(),
            "ns/media-op".into()
        )
    );
    // Not a DNS label: refused by the values schema.
    template_fails(&["--set", "fullnameOverride=Media_Op"]);
}

/// The chart tells the operator where its own pods run, for the
/// NetworkPolicies in front of the apps its wiring calls
/// (`--operator-namespace`, `--operator-pod-labels`): the release namespace
/// and labels that select exactly the Deployment's pods, whatever the names;
/// and the operator binary accepts those arguments.
#[test]
fn chart_tells_the_operator_its_own_pods() {
    for extra in [&[][..], &["--set", "nameOverride=msop"][..]] {
        let docs = documents(&template("rel", "media-ops", extra));
        let d = of_kind(&docs, "Deployment")[0].clone();
        let args = operator_args(&docs);
        let arg = |name: &str| {
            args.iter()
                .find_map(|a| a.strip_prefix(name).map(str::to_string))
                .unwrap_or_else(|| panic!("{name} in {args:?}"))
        };
        assert_eq!(arg("--operator-namespace="), "media-ops");
        let labels: std::collections::BTreeMap<String, String> = arg("--operator-pod-labels=")
            .split(',')
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("key=value");
                (k.to_string(), v.to_string())
            })
            .collect();
        let selector: std::collections::BTreeMap<String, String> =
            serde_yaml::from_value(d["spec"]["selector"]["matchLabels"].clone()).expect("selector");
        assert_eq!(labels, selector, "the Deployment's own selector");
        let pod: std::collections::BTreeMap<String, String> =
            serde_yaml::from_value(d["spec"]["template"]["metadata"]["labels"].clone())
                .expect("pod labels");
        assert!(labels.iter().all(|(k, v)| pod.get(k) == Some(v)), "{pod:?}");

        // The binary parses them (it then fails only for want of a cluster).
        let bin = std::env::var("MEDIASTACK_OPERATOR_BIN").unwrap_or_else(|_| {
            repo_root()
                .join("target/debug/mediastack-operator")
                .display()
                .to_string()
        });
        let ours: Vec<&String> = args
            .iter()
            .filter(|a| a.starts_with("--operator-") || a.as_str() == "run")
            .collect();
        let out = std::process::Command::new(&bin)
            .args(&ours)
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .output()
            .unwrap_or_else(|e| panic!("{bin}: {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(2), "a usage error: {stderr}");
        assert!(
            !stderr.contains("--operator-pod-labels") && !stderr.contains("--operator-namespace"),
            "{stderr}"
        );
    }
}

#[test]
fn chart_security_context_is_restricted_by_default_and_configurable() {
    let docs = documents(&template("r", "ns", &[]));
    let pods: Vec<&serde_yaml::Value> = of_kind(&docs, "Deployment")
        .into_iter()
        .map(|d| &d["spec"]["template"]["spec"])
        .chain(of_kind(&docs, "Pod").into_iter().map(|p| &p["spec"]))
        .collect();
    assert_eq!(pods.len(), 2, "the operator and the test pod");
    for pod in pods {
        let psc = &pod["securityContext"];
        assert_eq!(psc["runAsNonRoot"].as_bool(), Some(true), "{psc:?}");
        assert_eq!(
            psc["seccompProfile"]["type"].as_str(),
            Some("RuntimeDefault"),
            "{psc:?}"
        );
        let csc = &pod["containers"][0]["securityContext"];
        assert_eq!(csc["allowPrivilegeEscalation"].as_bool(), Some(false));
        assert_eq!(csc["readOnlyRootFilesystem"].as_bool(), Some(true));
        assert_eq!(
            csc["capabilities"]["drop"],
            serde_yaml::to_value(["ALL"]).expect("yaml")
        );
    }
    let docs = documents(&template(
        "r",
        "ns",
        &[
            "--set",
            "podSecurityContext.fsGroup=2000",
            "--set",
            "securityContext.readOnlyRootFilesystem=false",
        ],
    ));
    let pod = &of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["fsGroup"].as_i64(), Some(2000));
    assert_eq!(
        pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(false)
    );
}

#[test]
fn chart_pod_disruption_budget_only_with_more_than_one_replica() {
    let pdbs = |extra: &[&str]| {
        let docs = documents(&template("r", "ns", extra));
        of_kind(&docs, "PodDisruptionBudget")
            .into_iter()
            .map(|p| p["spec"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(pdbs(&[]), Vec::<serde_yaml::Value>::new());
    let two = pdbs(&["--set", "replicas=2"]);
    assert_eq!(two.len(), 1);
    assert_eq!(two[0]["minAvailable"].as_i64(), Some(1));
    assert_eq!(
        two[0]["selector"]["matchLabels"]["app.kubernetes.io/instance"].as_str(),
        Some("r")
    );
    let max = pdbs(&[
        "--set",
        "replicas=3",
        "--set",
        "podDisruptionBudget.maxUnavailable=1",
    ]);
    assert_eq!(max[0]["maxUnavailable"].as_i64(), Some(1));
    assert!(max[0]["minAvailable"].is_null(), "{:?}", max[0]);
}

#[test]
fn chart_leader_election_toggle() {
    let render = |extra: &[&str]| documents(&template("r", "ns", extra));
    let lease_arg = |docs: &[serde_yaml::Value]| {
        operator_args(docs)
            .iter()
            .any(|a| a.starts_with("--leader-lease="))
    };
    let lease_role = |docs: &[serde_yaml::Value]| {
        of_kind(docs, "Role").iter().any(|r| {
            r["metadata"]["name"].as_str() == Some("r-mediastack-operator-leader-election")
        })
    };
    let on = render(&[]);
    assert!(lease_arg(&on) && lease_role(&on));
    assert!(of_kind(&on, "Deployment")[0]["spec"]["strategy"].is_null());
    let off = render(&["--set", "leaderElection.enabled=false"]);
    assert!(!lease_arg(&off), "no --leader-lease");
    assert!(!lease_role(&off), "no Lease RBAC");
    assert!(
        of_kind(&off, "RoleBinding").is_empty(),
        "no Lease RoleBinding"
    );
    assert_eq!(
        of_kind(&off, "Deployment")[0]["spec"]["strategy"]["type"].as_str(),
        Some("Recreate")
    );
    let err = template_fails(&[
        "--set",
        "leaderElection.enabled=false",
        "--set",
        "replicas=2",
    ]);
    assert!(
        err.contains("leaderElection.enabled=false needs replicas <= 1"),
        "{err}"
    );
}

#[test]
fn chart_helm_test_probes_the_operators_readyz() {
    let docs = documents(&template(
        "r",
        "ns",
        &["--set", "service.port=9090", "--set", "image.tag=1.2.3"],
    ));
    let pods = of_kind(&docs, "Pod");
    assert_eq!(pods.len(), 1, "one test pod");
    let pod = pods[0];
    assert_eq!(
        pod["metadata"]["annotations"]["helm.sh/hook"].as_str(),
        Some("test")
    );
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["image"].as_str(), Some("mediastack-operator:1.2.3"));
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    // The Service's name, namespace and port; the Service's targetPort is the
    // container port whose probe is /readyz.
    let svc = of_kind(&docs, "Service")[0];
    assert_eq!(
        svc["metadata"]["name"].as_str(),
        Some("r-mediastack-operator")
    );
    assert_eq!(svc["spec"]["ports"][0]["port"].as_i64(), Some(9090));
    assert_eq!(
        args[..2],
        ["probe", "http://r-mediastack-operator.ns.svc:9090/readyz"]
    );
    let d = of_kind(&docs, "Deployment")[0];
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"]
            .as_str(),
        Some("/readyz")
    );
    let off = documents(&template("r", "ns", &["--set", "test.enabled=false"]));
    assert!(of_kind(&off, "Pod").is_empty());
}

#[test]
fn chart_kube_version_is_the_minimum_the_code_needs() {
    // Chart.yaml's kubeVersion and the minimum control plane that e2e/test.sh
    // runs the API-level tests against are the same minor.
    let chart: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml is YAML");
    let kube = chart["kubeVersion"].as_str().expect("kubeVersion");
    assert_eq!(kube, ">=1.33.0-0");
    let versions = std::fs::read_to_string(repo_root().join("e2e/controlplane/versions.env"))
        .expect("versions.env");
    let min = versions
        .lines()
        .find_map(|l| l.strip_prefix("MIN_KUBERNETES_VERSION="))
        .expect("MIN_KUBERNETES_VERSION in versions.env");
    assert!(min.starts_with("v1.33."), "{min}");
    // The last --kube-version given wins.
    let err = template_fails(&["--kube-version", "1.32.9"]);
    assert!(err.contains("kubeVersion"), "{err}");
    template("r", "ns", &["--kube-version", "1.33.0"]);
}

// A cluster test: `helm install --dry-run` takes the cluster's version (it has
// no --kube-version) and needs the API server for it.
#[tokio::test(flavor = "multi_thread")]
async fn packaged_chart_installs_and_its_notes_need_no_checkout() {
    let ns = TestNamespace::new("chart-notes").await;
    let dir = tempfile_dir();
    let chart = chart_dir().display().to_string();
    let dest = dir.display().to_string();
    helm(&["package", &chart, "--destination", &dest]);
    let tgz = dir.join("mediastack-operator-0.1.0.tgz");
    let tgz = tgz.display().to_string();
    // The packaged chart holds the CRD file the template reads.
    let kube = kube_version();
    let docs = documents(&helm(&[
        "template",
        "r",
        &tgz,
        "--namespace",
        "ns",
        "--kube-version",
        &kube,
    ]));
    assert_eq!(of_kind(&docs, "CustomResourceDefinition").len(), 3);
    let out = helm(&[
        "install",
        "r",
        &tgz,
        "--namespace",
        &ns.name,
        "--dry-run=server",
        // The test cluster has the CRDs already, not owned by a release;
        // Helm refuses to adopt them (the chart README says how to).
        "--set",
        "crds.install=false",
    ]);
    let notes = out.split("NOTES:").nth(1).expect("NOTES in the output");
    for (bad, why) in [
        ("examples/", "a file of the repository"),
        ("crds/", "a directory of the repository"),
        ("ingressroute/", "Traefik's kind on k3s"),
        ("get ingressroute ", "Traefik's kind on k3s"),
    ] {
        assert!(!notes.contains(bad), "NOTES name {bad} ({why}):\n{notes}");
    }
    for want in [
        "rollout status deployment/r-mediastack-operator".to_string(),
        format!("helm test r --namespace {}", ns.name),
        "--for=condition=Ready".to_string(),
        "kubectl get mroute".to_string(),
    ] {
        assert!(notes.contains(&want), "NOTES lack {want:?}:\n{notes}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn chart_readme_lists_every_value() {
    let values: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("values.yaml")).expect("values.yaml"),
    )
    .expect("values.yaml is YAML");
    let readme = std::fs::read_to_string(chart_dir().join("README.md")).expect("chart README");
    // Leaf keys, except below `policy` (one `policy.*` row points at
    // docs/security.md) and inside empty-by-default maps.
    fn leaves(prefix: &str, v: &serde_yaml::Value, out: &mut Vec<String>) {
        match v.as_mapping() {
            Some(m)
                if !m.is_empty()
                    && prefix != "policy"
                    && !prefix.ends_with("SecurityContext")
                    && prefix != "securityContext"
                    && prefix != "resources" =>
            {
                for (k, v) in m {
                    let k = k.as_str().expect("string keys");
                    let key = if prefix.is_empty() {
                        k.to_string()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&key, v, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
    let mut keys = Vec::new();
    leaves("", &values, &mut keys);
    assert!(keys.len() > 30, "{keys:?}");
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| {
            let k = if k.as_str() == "policy" {
                "policy.*"
            } else {
                k.as_str()
            };
            !readme.contains(&format!("| `{k}` |"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "values missing from the chart README's table: {missing:?}"
    );
}

/// A fresh directory under the target dir's tmp (no extra crate).
fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mediastack-chart-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn chart_lints_clean() {
    let chart = chart_dir().display().to_string();
    let out = helm(&["lint", "--strict", &chart]);
    assert!(out.contains("0 chart(s) failed"), "{out}");
    assert!(
        !out.contains("[WARNING]") && !out.contains("[ERROR]"),
        "{out}"
    );
    // Bad values are refused by the values schema.
    let bad = std::process::Command::new("helm")
        .args(["lint", &chart, "--set", "logFormat=xml"])
        .output()
        .expect("helm");
    assert!(!bad.status.success(), "logFormat=xml must be rejected");
}

// multi_thread: TestNamespace's Drop deletes the namespace from a blocked
// thread with a client whose background task lives on the test's runtime; a
// current-thread runtime would deadlock there.
#[tokio::test(flavor = "multi_thread")]
async fn rendered_chart_is_accepted_by_the_api_server() {
    let release_ns = TestNamespace::new("chart").await;
    let watched = TestNamespace::new("chart-watched").await;
    // A release name of its own, so cluster-scoped names cannot meet an
    // installed release (on kind the chart is installed for real).
    let release = release_ns.name.clone();
    let watch = format!("watchNamespace={}", watched.name);
    let cases: [(&str, Vec<&str>); 3] = [
        ("default values", vec![]),
        (
            "two replicas, a ServiceMonitor, one watched namespace",
            vec![
                "--set",
                "replicas=2",
                "--set",
                "serviceMonitor.enabled=true",
                "--set",
                "serviceMonitor.labels.release=kps",
                "--set",
                &watch,
            ],
        ),
        (
            "JSON logs, fixed subnets, no ServiceAccount created",
            vec![
                "--set",
                "logFormat=json",
                "--set",
                r"clusterSubnets=10.244.0.0/16\,10.96.0.0/12",
                "--set",
                "serviceAccount.create=false",
                "--set",
                "serviceAccount.name=default",
            ],
        ),
    ];
    for (what, extra) in cases {
        let manifest = template(&release, &release_ns.name, &extra);
        let docs = documents(&manifest);
        let out = kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &manifest)
            .await
            .unwrap_or_else(|e| {
                panic!("{what}: the API server rejects the chart's output: {e:#}\n{manifest}")
            });
        let accepted = out
            .lines()
            // The CRDs exist already in the test cluster: "configured".
            .filter(|l| {
                l.ends_with("created (server dry run)")
                    || l.ends_with("configured (server dry run)")
                    || l.ends_with("unchanged (server dry run)")
            })
            .count();
        assert_eq!(
            accepted,
            docs.len(),
            "{what}: every object is created (dry run):\n{out}"
        );
        let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        assert!(
            kinds.contains("Deployment") && kinds.contains("Service"),
            "{what}: {kinds:?}"
        );
        assert_eq!(
            kinds.contains("ServiceMonitor"),
            what.contains("ServiceMonitor"),
            "{what}: {kinds:?}"
        );
        assert_eq!(
            kinds.contains("ServiceAccount"),
            !what.contains("no ServiceAccount"),
            "{what}: {kinds:?}"
        );
    }
}

/// Deletes what a test created outside its namespaces on drop: the release's
/// ClusterRoles and bindings, and Dozzle's of the test stack.
struct ClusterScoped {
    release: String,
    stack_ns: String,
}

impl Drop for ClusterScoped {
    fn drop(&mut self) {
        for selector in [
            format!("app.kubernetes.io/instance={}", self.release),
            format!("{}={}", dozzle::NAMESPACE_LABEL, self.stack_ns),
        ] {
            let _ = std::process::Command::new("kubectl")
                .args([
                    "delete",
                    "clusterrole,clusterrolebinding",
                    "-l",
                    &selector,
                    "--ignore-not-found",
                    "--wait=false",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The example stack (examples/stack-complete.yaml) without its Namespace,
/// moved into `ns`.
fn example_stack(ns: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join("examples/stack-complete.yaml"))
        .expect("examples/stack-complete.yaml");
    let mut docs = Vec::new();
    for mut doc in documents(&text) {
        if doc["kind"].as_str() == Some("Namespace") {
            continue;
        }
        doc["metadata"]["namespace"] = ns.into();
        docs.push(doc);
    }
    list(&docs)
}

/// Objects as one `v1` List in JSON, for `kubectl -f -`.
fn list<T: serde::Serialize>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<Value> = items
        .into_iter()
        .map(|i| serde_json::to_value(i).expect("JSON"))
        .collect();
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

/// Installs the chart's ServiceAccount and RBAC (release namespace
/// `release_ns`, optional watchNamespace), applies the example stack into
/// `stack_ns`, then, as the operator's ServiceAccount, writes every object the
/// operator renders for it and checks every read it makes. Returns the
/// ServiceAccount's `--as` flag and the guard of the cluster-scoped objects.
async fn operator_account_can_do_its_work(
    release_ns: &TestNamespace,
    stack_ns: &TestNamespace,
    extra: &[&str],
) -> (String, ClusterScoped) {
    let release = release_ns.name.clone();
    let cleanup = ClusterScoped {
        release: release.clone(),
        stack_ns: stack_ns.name.clone(),
    };
    let manifest = template(
        &release,
        &release_ns.name,
        &[
            extra,
            &[
                "--show-only",
                "templates/serviceaccount.yaml",
                "--show-only",
                "templates/rbac.yaml",
            ],
        ]
        .concat(),
    );
    kubectl_stdin(&["apply", "-f", "-"], &manifest)
        .await
        .expect("install the chart's RBAC");
    let fullname = format!("{release}-mediastack-operator");
    let sa = format!("system:serviceaccount:{}:{fullname}", release_ns.name);
    let as_sa = format!("--as={sa}");
    wait_for("the operator's RBAC to take effect", TIMEOUT, || {
        let (ns, as_sa) = (stack_ns.name.clone(), as_sa.clone());
        async move {
            Ok(kubectl(&[
                "auth",
                "can-i",
                "create",
                "deployments.apps",
                "-n",
                &ns,
                &as_sa,
            ])
            .await
            .is_ok_and(|o| o.trim() == "yes"))
        }
    })
    .await
    .expect("RBAC in effect");

    // The example, applied as a user would (kubectl validates fields strictly).
    kubectl_stdin(
        &["apply", "--server-side", "--field-manager=e2e", "-f", "-"],
        &example_stack(&stack_ns.name),
    )
    .await
    .expect("examples/stack-complete.yaml is accepted");
    let stack: MediaStack = Api::namespaced(stack_ns.client.clone(), &stack_ns.name)
        .get("home")
        .await
        .expect("MediaStack home");
    let parent = Parent::of(&stack).expect("stored object");
    let inputs = Inputs {
        cluster_subnets: vec!["10.244.0.0/16".into(), "10.96.0.0/16".into()],
        monitoring_crds: true,
        tunnel_token_ready: true,
        ..Default::default()
    };
    let mut rendered = stack::render(&stack, &parent, &inputs).expect("render the example stack");
    // As the reconciler does: bind the chart's fixed node-reader role.
    stack::bind_fixed_cluster_role(
        &mut rendered.cluster_children,
        &format!("{release}-mediastack-operator-node-reader"),
    );
    let mut children: Vec<Child> = rendered.children.clone();
    children.extend(rendered.cluster_children.iter().cloned());
    let kinds: BTreeSet<String> = children.iter().map(|c| c.api.kind.clone()).collect();
    for kind in [
        "Deployment",
        "Service",
        "Role",
        "RoleBinding",
        "ClusterRoleBinding",
    ] {
        assert!(
            kinds.contains(kind),
            "the example renders a {kind}: {kinds:?}"
        );
    }
    // Write every child as the operator does: server-side apply, its field
    // manager. For real, not a dry run: a RoleBinding is only allowed once the
    // Role it grants exists and is held by the writer.
    // JSON, not YAML: kubectl reads YAML 1.1, where an unquoted `on` (a
    // gluetun setting, as serde_yaml writes it) is a boolean.
    let children_json = list(children.iter().map(|c| &c.object));
    kubectl_stdin(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=mediastack-operator",
            &as_sa,
            "-f",
            "-",
        ],
        &children_json,
    )
    .await
    .unwrap_or_else(|e| {
        panic!("the operator's ServiceAccount cannot write what the operator renders: {e:#}")
    });

    // Generated Secrets are created once with POST.
    for secret in &rendered.generated_secrets {
        let yaml = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": secret.name, "namespace": stack_ns.name, "labels": secret.labels},
            "stringData": secret.random_keys.iter().map(|k| (k.clone(), Value::from("x"))).collect::<serde_json::Map<_, _>>(),
        });
        kubectl_stdin(
            &["create", "--dry-run=server", &as_sa, "-f", "-"],
            &yaml.to_string(),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot create Secret {}: {e:#}", secret.name));
    }

    // Status writes, Events and the leader Lease.
    kubectl(&[
        "patch",
        "mediastack",
        "home",
        "-n",
        &stack_ns.name,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"observedGeneration":1}}"#,
        "--dry-run=server",
        &as_sa,
    ])
    .await
    .expect("patch MediaStack status");
    let event = serde_json::json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "home.e2e", "namespace": stack_ns.name},
        "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "mediastack-operator", "reportingInstance": "e2e",
        "action": "Reconcile", "reason": "Applied", "type": "Normal", "note": "e2e",
        "regarding": {"apiVersion": "mediastack.io/v1alpha1", "kind": "MediaStack", "name": "home", "namespace": stack_ns.name},
    });
    kubectl_stdin(
        &["create", "--dry-run=server", &as_sa, "-f", "-"],
        &event.to_string(),
    )
    .await
    .expect("create an Event");
    let lease = serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": fullname, "namespace": release_ns.name},
        "spec": {"holderIdentity": "e2e"},
    });
    kubectl_stdin(
        &["create", "--dry-run=server", &as_sa, "-f", "-"],
        &lease.to_string(),
    )
    .await
    .expect("create the leader Lease");

    // Reads: what the controllers watch and what a reconcile looks up.
    let reads_in_ns = [
        "mediastacks.mediastack.io",
        "vpngateways.mediastack.io",
        "ingressroutes.mediastack.io",
        "deployments.apps",
        "daemonsets.apps",
        "services",
        "persistentvolumeclaims",
        "configmaps",
        "serviceaccounts",
        "secrets",
        "networkpolicies.networking.k8s.io",
        "roles.rbac.authorization.k8s.io",
        "rolebindings.rbac.authorization.k8s.io",
        "ingressroutes.traefik.io",
        "middlewares.traefik.io",
        "servicemonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
    ];
    let cluster_reads = [
        "nodes",
        "servicecidrs.networking.k8s.io",
        "customresourcedefinitions.apiextensions.k8s.io",
    ];
    let mut denied = Vec::new();
    for verb in ["get", "list", "watch"] {
        for r in reads_in_ns {
            if kubectl(&["auth", "can-i", verb, r, "-n", &stack_ns.name, &as_sa])
                .await
                .is_err()
            {
                denied.push(format!("{verb} {r} in {}", stack_ns.name));
            }
        }
        for r in cluster_reads {
            if kubectl(&["auth", "can-i", verb, r, &as_sa]).await.is_err() {
                denied.push(format!("{verb} {r} (cluster)"));
            }
        }
    }
    assert!(
        denied.is_empty(),
        "the operator's ServiceAccount may not: {denied:#?}"
    );
    (as_sa, cleanup)
}

#[tokio::test(flavor = "multi_thread")]
async fn chart_rbac_lets_the_operator_work_in_all_namespaces() {
    let ns = TestNamespace::new("chart-rbac").await;
    let _cleanup = operator_account_can_do_its_work(&ns, &ns, &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chart_rbac_lets_the_operator_work_in_its_watched_namespace() {
    let release_ns = TestNamespace::new("chart-rbac-op").await;
    let stack_ns = TestNamespace::new("chart-rbac-media").await;
    let other = TestNamespace::new("chart-rbac-other").await;
    let watch = format!("watchNamespace={}", stack_ns.name);
    let (as_sa, _cleanup) =
        operator_account_can_do_its_work(&release_ns, &stack_ns, &["--set", &watch]).await;
    for verb in ["create", "list"] {
        let out = kubectl(&[
            "auth",
            "can-i",
            verb,
            "deployments.apps",
            "-n",
            &other.name,
            &as_sa,
        ])
        .await;
        assert!(
            out.is_err(),
            "with watchNamespace the operator may not {verb} Deployments elsewhere: {out:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// docs/reference.md, generated from the CRD schemas.

#[test]
fn reference_docs_are_current() {
    let path = repo_root().join("docs/reference.md");
    let generated = reference_markdown();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).expect("write docs/reference.md");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/reference.md is out of date with the CRDs: run `UPDATE_DOCS=1 cargo test -p mediastack-e2e --test chart reference_docs_are_current`"
    );
}

fn reference_markdown() -> String {
    let mut md = String::from(
        "# API reference\n\n\
         <!-- Generated from the CRD schemas by `UPDATE_DOCS=1 cargo test -p mediastack-e2e --test chart reference_docs_are_current`. Do not edit. -->\n\n\
         Every field of the custom resources of group `mediastack.io`. Defaults are applied by the API server; \
         validation is enforced at admission, so a rejected manifest names the rule it broke.\n",
    );
    for crd in mediastack_operator::api::crds() {
        let crd = serde_json::to_value(&crd).expect("CRD as JSON");
        let spec = &crd["spec"];
        for version in spec["versions"].as_array().into_iter().flatten() {
            let schema = &version["schema"]["openAPIV3Schema"];
            let kind = spec["names"]["kind"].as_str().unwrap_or_default();
            md.push_str(&format!("\n## {kind}\n\n"));
            md.push_str(&format!(
                "`apiVersion: {}/{}`, namespaced: {}, short names: {}.\n\n",
                spec["group"].as_str().unwrap_or_default(),
                version["name"].as_str().unwrap_or_default(),
                if spec["scope"] == "Namespaced" {
                    "yes"
                } else {
                    "no"
                },
                spec["names"]["shortNames"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .filter_map(Value::as_str)
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", "))
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "none".into())
            ));
            if let Some(d) = schema["description"].as_str() {
                md.push_str(&format!("{}\n\n", d.trim()));
            }
            md.push_str(
                "| Field | Type | Default | Description | Validation |\n|---|---|---|---|---|\n",
            );
            let mut seen = Vec::new();
            for top in ["spec", "status"] {
                if !schema["properties"][top].is_null() {
                    let required = required_of(schema).contains(top);
                    rows(
                        &mut md,
                        top,
                        &schema["properties"][top],
                        required,
                        &mut seen,
                    );
                }
            }
        }
    }
    md
}

fn required_of(schema: &Value) -> BTreeSet<&str> {
    schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// The schema without its own description: equal for the same type used twice.
fn shape(schema: &Value) -> String {
    let mut s = schema.clone();
    if let Some(o) = s.as_object_mut() {
        o.remove("description");
    }
    s.to_string()
}

/// Appends the row of `path` and of every field under it. A type already
/// documented at another path (the nine apps share one) is referenced, not repeated.
fn rows(
    md: &mut String,
    path: &str,
    schema: &Value,
    required: bool,
    seen: &mut Vec<(String, String)>,
) {
    let nested = !schema["properties"].is_null()
        || schema["items"]["properties"].is_object()
        || schema["additionalProperties"]["properties"].is_object();
    let same_as = if nested {
        seen.iter()
            .find(|(s, _)| *s == shape(schema))
            .map(|(_, p)| p.clone())
    } else {
        None
    };
    let mut description = cell(schema["description"].as_str().unwrap_or_default());
    if let Some(p) = &same_as {
        description.push_str(&format!("<br>Fields as under `{p}`."));
    }
    md.push_str(&format!(
        "| `{path}` | {} | {} | {} | {} |\n",
        type_of(schema),
        schema
            .get("default")
            .map(|d| code(&d.to_string()))
            .unwrap_or_default(),
        description,
        validation(schema, required)
    ));
    if same_as.is_some() {
        return;
    }
    if nested {
        seen.push((shape(schema), path.to_string()));
    }
    let required = required_of(schema);
    for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
        rows(
            md,
            &format!("{path}.{name}"),
            prop,
            required.contains(name.as_str()),
            seen,
        );
    }
    if schema["items"].is_object() {
        let items = &schema["items"];
        let required = required_of(items);
        for (name, prop) in items["properties"].as_object().into_iter().flatten() {
            rows(
                md,
                &format!("{path}[].{name}"),
                prop,
                required.contains(name.as_str()),
                seen,
            );
        }
    }
    if schema["additionalProperties"].is_object() {
        let values = &schema["additionalProperties"];
        let required = required_of(values);
        for (name, prop) in values["properties"].as_object().into_iter().flatten() {
            rows(
                md,
                &format!("{path}.<key>.{name}"),
                prop,
                required.contains(name.as_str()),
                seen,
            );
        }
    }
}

fn type_of(schema: &Value) -> String {
    if schema["x-kubernetes-int-or-string"] == true {
        return "integer or string".into();
    }
    let t = schema["type"].as_str().unwrap_or(
        if schema["x-kubernetes-preserve-unknown-fields"] == true {
            "any"
        } else {
            "object"
        },
    );
    let t = match schema["format"].as_str() {
        Some(f) => format!("{t} ({f})"),
        None => t.to_string(),
    };
    match t.as_str() {
        "array" => format!("[]{}", type_of(&schema["items"])),
        "object" if schema["additionalProperties"].is_object() => {
            format!("map[string]{}", type_of(&schema["additionalProperties"]))
        }
        _ => t,
    }
}

fn validation(schema: &Value, required: bool) -> String {
    let mut v = Vec::new();
    if required {
        v.push("required".to_string());
    }
    if let Some(e) = schema["enum"].as_array() {
        v.push(format!(
            "one of {}",
            e.iter()
                .map(|x| code(
                    &x.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| x.to_string())
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    match (schema.get("minimum"), schema.get("maximum")) {
        (Some(a), Some(b)) => v.push(format!("{a} to {b}")),
        (Some(a), None) => v.push(format!("at least {a}")),
        (None, Some(b)) => v.push(format!("at most {b}")),
        (None, None) => {}
    }
    match (schema.get("minLength"), schema.get("maxLength")) {
        (Some(a), Some(b)) => v.push(format!("{a} to {b} characters")),
        (Some(a), None) => v.push(format!("at least {a} characters")),
        (None, Some(b)) => v.push(format!("at most {b} characters")),
        (None, None) => {}
    }
    if let Some(p) = schema["pattern"].as_str() {
        v.push(format!("matches {}", code(p)));
    }
    match (schema.get("minItems"), schema.get("maxItems")) {
        (Some(a), Some(b)) => v.push(format!("{a} to {b} items")),
        (Some(a), None) => v.push(format!("at least {a} items")),
        (None, Some(b)) => v.push(format!("at most {b} items")),
        (None, None) => {}
    }
    if schema["x-kubernetes-list-type"] == "map" {
        let keys: Vec<String> = schema["x-kubernetes-list-map-keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(code)
            .collect();
        v.push(format!("unique by {}", keys.join(", ")));
    } else if schema["x-kubernetes-list-type"] == "set" {
        v.push("unique items".into());
    }
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let r = code(rule["rule"].as_str().unwrap_or_default());
        match rule["message"].as_str() {
            Some(m) => v.push(format!("{r}: {}", cell(m))),
            None => v.push(r),
        }
    }
    v.join("<br>")
}

/// Inline code in a table cell.
fn code(s: &str) -> String {
    let s = s.replace('|', "\\|");
    if s.contains('`') {
        format!("`` {s} ``")
    } else {
        format!("`{s}`")
    }
}

/// Prose in a table cell: one line, paragraphs kept as `<br>`, HTML-like
/// text outside code spans escaped.
fn cell(s: &str) -> String {
    let escape = |p: &str| -> String {
        let p = p.split_whitespace().collect::<Vec<_>>().join(" ");
        p.split('`')
            .enumerate()
            .map(|(i, part)| {
                if i % 2 == 0 {
                    part.replace('<', "&lt;").replace('>', "&gt;")
                } else {
                    part.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("`")
            .replace('|', "\\|")
    };
    s.trim()
        .split("\n\n")
        .map(escape)
        .collect::<Vec<_>>()
        .join("<br>")
}

// Least privilege: every rule the chart grants, in both RBAC layouts, is on
// this list with the reason it is needed. A new rule fails the test until it
// is listed (and reviewed); the cluster tests run the operator as this
// ServiceAccount, so a missing one fails them.

/// `(apiGroup, resource, verbs, why)`. Verbs not listed are not allowed.
const RBAC_ALLOWLIST: &[(&str, &str, &[&str], &str)] = &[
    (
        "mediastack.io",
        "mediastacks",
        &["get", "list", "watch"],
        "the primary resource",
    ),
    (
        "mediastack.io",
        "vpngateways",
        &["get", "list", "watch"],
        "the primary resource",
    ),
    (
        "mediastack.io",
        "ingressroutes",
        &[
            "get", "list", "watch", "create", "patch", "update", "delete",
        ],
        "primary resource, and children of a MediaStack (its app routes)",
    ),
    (
        "mediastack.io",
        "mediastacks/status",
        &["get", "patch", "update"],
        "status conditions",
    ),
    (
        "mediastack.io",
        "vpngateways/status",
        &["get", "patch", "update"],
        "status conditions",
    ),
    (
        "mediastack.io",
        "ingressroutes/status",
        &["get", "patch", "update"],
        "status conditions",
    ),
    (
        "apps",
        "deployments",
        &[
            "get", "list", "watch", "create", "patch", "update", "delete",
        ],
        "app workloads (server-side apply, prune)",
    ),
    (
        "apps",
        "daemonsets",
        &[
            "get", "list", "watch", "create", "patch", "update", "delete",
        ],
        "fail2ban (when the policy allows it)",
    ),
    (
        "",
        "services",
        &[
            "get", "list", "watch", "create", "patch", "update", "delete",
        ],
        "app Services",
    ),
    (
        "",
        "persistentvolumeclaims",
        &[
            "get", "list", "watch", "create", "patch", "update", "delete",
        ],
        "config/data claims (delete only with deleteWithApp, kept otherwise)",
    ),
    (
        "",
        "configmaps",
        &[
            "get", "list", "watch", "create", "patch", "update", "delete",
        ],
        "dashboard, Traefik, fail2ban, Grafana configuration",
    ),
    (
        "",
        "serviceaccounts",
        &[
            "get", "list", "watch", "create", "patch", "update", "delete",
        ],
        "Dozzle's and Traefik's ServiceAccounts",
    ),
    (
        "networking.k8s.io",
        "networkpolicies",
        &[
            "get", "list", "watch", "create", "patch", "update", "delete",
        ],
        "VPN kill switch",
    ),
    (
        "traefik.io",
        "ingressroutes",
        &[
            "get", "list", "watch", "create", "patch", "update", "delete",
        ],
        "routes to Traefik",
    ),
    (
        "traefik.io",
        "middlewares",
        &[
            "get", "list", "watch", "create", "patch", "update", "delete",
        ],
        "allow-lists, auth, headers",
    ),
    (
        "monitoring.coreos.com",
        "servicemonitors",
        &[
            "get", "list", "watch", "create", "patch", "update", "delete",
        ],
        "monitoring",
    ),
    (
        "monitoring.coreos.com",
        "prometheusrules",
        &[
            "get", "list", "watch", "create", "patch", "update", "delete",
        ],
        "alert rules",
    ),
    (
        "rbac.authorization.k8s.io",
        "roles",
        &[
            "get", "list", "watch", "create", "patch", "update", "delete",
        ],
        "Dozzle's and Traefik's namespaced Roles",
    ),
    (
        "rbac.authorization.k8s.io",
        "rolebindings",
        &[
            "get", "list", "watch", "create", "patch", "update", "delete",
        ],
        "bindings of those Roles",
    ),
    (
        "",
        "secrets",
        &["get", "list", "watch", "create", "patch"],
        "read credentials; create generated API keys once, add keys (never update or delete)",
    ),
    ("", "events", &["create", "patch"], "Events (core API)"),
    ("events.k8s.io", "events", &["create", "patch"], "Events"),
    (
        "",
        "pods",
        &["get", "list", "watch"],
        "held to create Dozzle's Role (escalation check)",
    ),
    (
        "",
        "pods/log",
        &["get"],
        "held to create Dozzle's Role (escalation check)",
    ),
    (
        "metrics.k8s.io",
        "pods",
        &["get", "list"],
        "held to create Dozzle's Role (escalation check)",
    ),
    (
        "discovery.k8s.io",
        "endpointslices",
        &["list", "watch"],
        "held to create Traefik's Role",
    ),
    (
        "traefik.io",
        "ingressroutetcps",
        &["get", "list", "watch"],
        "held to create Traefik's Role",
    ),
    (
        "traefik.io",
        "ingressrouteudps",
        &["get", "list", "watch"],
        "held to create Traefik's Role",
    ),
    (
        "traefik.io",
        "middlewaretcps",
        &["get", "list", "watch"],
        "held to create Traefik's Role",
    ),
    (
        "traefik.io",
        "serverstransports",
        &["get", "list", "watch"],
        "held to create Traefik's Role",
    ),
    (
        "traefik.io",
        "serverstransporttcps",
        &["get", "list", "watch"],
        "held to create Traefik's Role",
    ),
    (
        "traefik.io",
        "tlsoptions",
        &["get", "list", "watch"],
        "held to create Traefik's Role",
    ),
    (
        "traefik.io",
        "tlsstores",
        &["get", "list", "watch"],
        "held to create Traefik's Role",
    ),
    (
        "traefik.io",
        "traefikservices",
        &["get", "list", "watch"],
        "held to create Traefik's Role",
    ),
    (
        "",
        "nodes",
        &["get", "list", "watch"],
        "pod ranges (podCIDRs) for the VPN bypass; the node-reader role Dozzle is bound to",
    ),
    (
        "networking.k8s.io",
        "servicecidrs",
        &["get", "list", "watch"],
        "service ranges for the VPN bypass",
    ),
    (
        "networking.k8s.io",
        "ingressclasses",
        &["get", "list", "watch"],
        "whether a Traefik already serves the cluster (ingress.traefik.managed auto), watched so a new one re-renders the stacks",
    ),
    (
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        &["get", "list", "watch"],
        "whether Traefik / prometheus-operator CRDs are installed",
    ),
    (
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        &[
            "get", "list", "watch", "create", "patch", "update", "delete",
        ],
        "bind the fixed node-reader role to Dozzle (cluster-scoped: nodes)",
    ),
    (
        "rbac.authorization.k8s.io",
        "clusterroles",
        &["bind"],
        "bind only the chart's node-reader role (resourceNames)",
    ),
    (
        "coordination.k8s.io",
        "leases",
        &["create", "get", "update", "patch"],
        "leader election (get/update/patch limited to the chart's Lease)",
    ),
];

/// Every `(kind, group, resource, verb, resourceNames)` the chart grants.
fn granted(yaml: &str) -> Vec<(String, String, String, String, Vec<String>)> {
    let mut out = Vec::new();
    for doc in documents(yaml) {
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        if kind != "Role" && kind != "ClusterRole" {
            continue;
        }
        for rule in doc["rules"].as_sequence().into_iter().flatten() {
            let strs = |k: &str| -> Vec<String> {
                rule[k]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            };
            for g in strs("apiGroups") {
                for r in strs("resources") {
                    for v in strs("verbs") {
                        out.push((kind.clone(), g.clone(), r.clone(), v, strs("resourceNames")));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn chart_rbac_grants_only_the_allowlist() {
    for (layout, extra) in [
        ("all namespaces", &[][..]),
        ("watchNamespace", &["--set", "watchNamespace=media"][..]),
    ] {
        let yaml = template(
            "mediastack-operator",
            "mediastack-system",
            &[extra, &["--show-only", "templates/rbac.yaml"]].concat(),
        );
        let rules = granted(&yaml);
        assert!(rules.len() > 20, "{layout}: rules found: {}", rules.len());
        let mut outside = Vec::new();
        for (kind, group, resource, verb, names) in &rules {
            let listed = RBAC_ALLOWLIST.iter().any(|(g, r, verbs, _)| {
                g == group && r == resource && verbs.contains(&verb.as_str())
            });
            if !listed {
                outside.push(format!("{kind}: {verb} {group}/{resource}"));
            }
            // Hard limits, whatever the list says.
            let forbidden = verb == "*"
                || resource == "*"
                || group == "*"
                || verb == "escalate"
                || verb == "impersonate"
                || resource == "pods/exec"
                || resource == "pods/attach"
                || (resource == "nodes" && !["get", "list", "watch"].contains(&verb.as_str()))
                || (resource == "clusterroles" && verb != "bind")
                || (resource == "clusterroles"
                    && names != &["mediastack-operator-node-reader".to_string()]);
            assert!(
                !forbidden,
                "{layout}: {kind} grants {verb} {group}/{resource} {names:?}"
            );
            if resource == "leases" && verb != "create" {
                assert_eq!(
                    names,
                    &vec!["mediastack-operator".to_string()],
                    "{layout}: lease {verb}"
                );
            }
            // watchNamespace: namespaced permissions come from a Role there only.
            if *layout == *"watchNamespace" && kind == "ClusterRole" {
                let cluster_scoped = [
                    "nodes",
                    "servicecidrs",
                    "ingressclasses",
                    "customresourcedefinitions",
                    "clusterrolebindings",
                    "clusterroles",
                ];
                assert!(
                    cluster_scoped.contains(&resource.as_str()),
                    "{layout}: namespaced {group}/{resource} granted cluster-wide"
                );
            }
        }
        assert!(
            outside.is_empty(),
            "{layout}: rules outside the allowlist: {outside:#?}"
        );
    }
}

/// Deletes the test's admission policy and binding on drop.
struct AdmissionPolicy(String);

impl Drop for AdmissionPolicy {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kubectl")
            .args([
                "delete",
                "validatingadmissionpolicy,validatingadmissionpolicybinding",
                &self.0,
                "--ignore-not-found",
                "--wait=false",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chart_admission_policy_makes_kubectl_apply_fail_with_the_reason() {
    let ns = TestNamespace::new("chart-vap").await;
    // Bound to this test's namespace only: the other tests run beside it.
    let selector = format!(
        r#"policy.admission.namespaceSelector={{"matchLabels":{{"kubernetes.io/metadata.name":"{}"}}}}"#,
        ns.name
    );
    let manifest = template(
        &ns.name,
        &ns.name,
        &[
            "--set-json",
            &selector,
            "--set-json",
            r#"policy.allowedImages=["lscr.io/linuxserver/","jellyfin/jellyfin"]"#,
            "--show-only",
            "templates/admission-policy.yaml",
        ],
    );
    let name = format!("{}-mediastack-operator-policy", ns.name);
    let _cleanup = AdmissionPolicy(name.clone());
    kubectl_stdin(&["apply", "-f", "-"], &manifest)
        .await
        .expect("the API server accepts the ValidatingAdmissionPolicy");

    let stack = |patch: Value| {
        let text =
            std::fs::read_to_string(repo_root().join("examples/mediastack.yaml")).expect("example");
        let mut doc: Value = serde_yaml::from_str(&text).expect("YAML");
        doc["metadata"]["namespace"] = ns.name.clone().into();
        if let (Some(spec), Some(p)) = (doc["spec"].as_object_mut(), patch.as_object()) {
            for (k, v) in p {
                spec.insert(k.clone(), v.clone());
            }
        }
        doc.to_string()
    };
    let apply = |doc: String| async move {
        kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &doc).await
    };
    let home = stack(serde_json::json!({"storage": {"data": {"hostPath": "/home/me/media"}}}));
    // The policy takes effect once the API server has loaded it.
    wait_for("the admission policy denies", TIMEOUT, || {
        let home = home.clone();
        async move { Ok(apply(home).await.is_err()) }
    })
    .await
    .expect("policy active");
    let cases = [
        (
            home,
            vec![
                "spec.storage.data.hostPath",
                "/home/me/media",
                "policy.allowedHostPaths",
            ],
        ),
        (
            stack(serde_json::json!({"security": {"fail2ban": {"enabled": true}}})),
            vec!["spec.security.fail2ban.enabled", "policy.allowFail2ban"],
        ),
        (
            stack(
                serde_json::json!({"apps": {"radarr": {"env": [{"name": "DOCKER_MODS", "value": "x"}]}}}),
            ),
            vec!["spec.apps.radarr.env", "DOCKER_MODS", "policy.allowedEnv"],
        ),
        (
            stack(serde_json::json!({"apps": {"sonarr": {"image": "evil.example/sonarr:4"}}})),
            vec!["spec.apps.sonarr.image", "policy.allowedImages"],
        ),
    ];
    for (doc, needles) in cases {
        let err = apply(doc).await.expect_err("denied at admission");
        let text = format!("{err:#}");
        assert!(text.contains(&name), "names the policy: {text}");
        for n in needles {
            assert!(text.contains(n), "{n} in: {text}");
        }
    }
    // What the policy allows passes: the example, and allowed overrides.
    apply(stack(serde_json::json!({})))
        .await
        .expect("the example is allowed");
    apply(stack(serde_json::json!({"apps": {"sonarr": {"image": "lscr.io/linuxserver/sonarr:4.0.17"}, "jellyfin": {"image": "jellyfin/jellyfin:10.11.6"}}})))
        .await
        .expect("allowed repositories pass");
}
