//! Bad and hostile manifests against the real API server, one table.
//!
//! Each row is a manifest (an example with a JSON merge patch) and what must
//! happen to it: rejected at admission with a message naming the field, or
//! accepted and reported by the operator as a condition plus a Warning event
//! naming the field. Either way no workload is rendered for it. Add a case by
//! adding a row to [`cases`].

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use mediastack_e2e::stack::{WIREGUARD_SECRET, condition, example};
use mediastack_e2e::{Operator, TestNamespace, kubectl_stdin, wait_for};
use mediastack_operator::api::MediaStack;
use serde_json::{Value, json};

/// The manifest a case starts from.
#[derive(Clone, Copy, Debug)]
enum Base {
    /// examples/mediastack.yaml
    Stack,
    /// examples/ingressroute.yaml
    Route,
    /// examples/vpngateway.yaml
    Gateway,
}

/// What must happen.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// `kubectl create` fails; the error names `field`.
    Rejected { field: &'static str },
    /// Accepted; the MediaStack becomes `Stalled` with `reason`, and both the
    /// condition and a Warning event (same reason) name `field`.
    Stalled {
        reason: &'static str,
        field: &'static str,
    },
}
use Expect::{Rejected, Stalled};

/// One row: a name, the merge patch applied to `base` (the object's name is
/// set from the row), and the outcome.
struct Case {
    name: &'static str,
    base: Base,
    patch: Value,
    expect: Expect,
}

fn stack(name: &'static str, spec: Value, expect: Expect) -> Case {
    Case {
        name,
        base: Base::Stack,
        patch: json!({ "spec": spec }),
        expect,
    }
}

fn host_path(name: &'static str, path: &str, expect: Expect) -> Case {
    stack(
        name,
        json!({"storage": {"data": {"hostPath": path}}}),
        expect,
    )
}

const HOST_PATH: Expect = Rejected {
    field: "storage.data.hostPath",
};
const NOT_ALLOWED_PATH: Expect = Stalled {
    reason: "NotAllowed",
    field: "storage.data.hostPath",
};

fn env(app: &'static str, name: &str, value: &str) -> Value {
    json!({"apps": {app: {"env": [{"name": name, "value": value}]}}})
}

fn cases() -> Vec<Case> {
    let long = "a".repeat(600);
    vec![
        // Path traversal and system directories: rejected by the CRD.
        host_path("root", "/", HOST_PATH),
        host_path("traversal", "/srv/../etc", HOST_PATH),
        host_path("traversal-end", "/srv/data/..", HOST_PATH),
        host_path("dot-segment", "/srv/./data", HOST_PATH),
        host_path("etc", "/etc", HOST_PATH),
        host_path("etc-kubernetes", "/etc/kubernetes/pki", HOST_PATH),
        host_path("proc", "/proc/1/root", HOST_PATH),
        host_path("sys", "/sys/fs/cgroup", HOST_PATH),
        host_path("dev", "/dev", HOST_PATH),
        host_path("var-run", "/var/run/containerd", HOST_PATH),
        host_path("run", "/run/containerd/containerd.sock", HOST_PATH),
        host_path("root-home", "/root/.ssh", HOST_PATH),
        host_path("boot", "/boot", HOST_PATH),
        host_path("kubelet", "/var/lib/kubelet/pods", HOST_PATH),
        host_path("containerd", "/var/lib/containerd", HOST_PATH),
        host_path("var-log", "/var/log/pods", HOST_PATH),
        host_path("var", "/var", HOST_PATH),
        host_path("relative", "srv/data", HOST_PATH),
        host_path("double-slash", "/srv//data", HOST_PATH),
        host_path(
            "oversized-path",
            &format!("/srv/{}", "a/".repeat(2100)),
            HOST_PATH,
        ),
        // Allowed by the CRD, refused by the admin policy.
        host_path("home-dir", "/home/me/media", NOT_ALLOWED_PATH),
        host_path("opt", "/opt/media", NOT_ALLOWED_PATH),
        host_path("prefix-lookalike", "/srvx/media", NOT_ALLOWED_PATH),
        stack(
            "fail2ban",
            json!({"security": {"fail2ban": {"enabled": true}}}),
            Stalled {
                reason: "NotAllowed",
                field: "security.fail2ban.enabled",
            },
        ),
        stack(
            "foreign-image",
            json!({"apps": {"sonarr": {"image": "evil.example/sonarr:4"}}}),
            Stalled {
                reason: "NotAllowed",
                field: "apps.sonarr.image",
            },
        ),
        stack(
            "lookalike-image",
            json!({"apps": {"radarr": {"image": "lscr.io/linuxserver/radarr-evil@sha256:0000000000000000000000000000000000000000000000000000000000000000"}}}),
            Stalled {
                reason: "NotAllowed",
                field: "apps.radarr.image",
            },
        ),
        stack(
            "traefik-image",
            json!({"ingress": {"traefik": {"image": "evil/traefik:v3"}}}),
            Stalled {
                reason: "NotAllowed",
                field: "ingress.traefik.image",
            },
        ),
        stack(
            "fail2ban-image",
            json!({"security": {"fail2ban": {"image": "evil/fail2ban:1"}}}),
            Stalled {
                reason: "NotAllowed",
                field: "security.fail2ban.image",
            },
        ),
        stack(
            "docker-mods",
            env(
                "radarr",
                "DOCKER_MODS",
                "linuxserver/mods:universal-package-install",
            ),
            Stalled {
                reason: "NotAllowed",
                field: "apps.radarr.env",
            },
        ),
        stack(
            "puid-root",
            env("sonarr", "PUID", "0"),
            Stalled {
                reason: "NotAllowed",
                field: "apps.sonarr.env",
            },
        ),
        stack(
            "ld-preload",
            env("jellyfin", "LD_PRELOAD", "/config/evil.so"),
            Stalled {
                reason: "NotAllowed",
                field: "apps.jellyfin.env",
            },
        ),
        stack(
            "node-options",
            env(
                "jellyseerr",
                "NODE_OPTIONS",
                "--require /app/config/evil.js",
            ),
            Stalled {
                reason: "NotAllowed",
                field: "apps.jellyseerr.env",
            },
        ),
        // References that resolve to nothing in the namespace.
        stack(
            "missing-claim",
            json!({"storage": {"data": {"hostPath": null, "claimName": "data-of-another-namespace"}}}),
            Stalled {
                reason: "ClaimNotFound",
                field: "storage.data.claimName",
            },
        ),
        stack(
            "missing-dashboard-users",
            json!({"ingress": {"traefik": {"dashboardAuthSecretRef": {"name": "kube-system-admin"}}}}),
            Stalled {
                reason: "SecretNotFound",
                field: "ingress.traefik.dashboardAuthSecretRef",
            },
        ),
        stack(
            "gateway-other-namespace",
            json!({"apps": {"qbittorrent": {"vpn": {"gatewayRef": "other-ns/mullvad"}}}}),
            Rejected {
                field: "apps.qbittorrent.vpn.gatewayRef",
            },
        ),
        // Injection into shell, Traefik rules, PromQL and jail files; oversized values.
        stack(
            "timezone-shell",
            json!({"timezone": "UTC; rm -rf /"}),
            Rejected { field: "timezone" },
        ),
        stack(
            "timezone-oversized",
            json!({"timezone": "A".repeat(65)}),
            Rejected { field: "timezone" },
        ),
        stack(
            "umask-shell",
            json!({"identity": {"umask": "022 && id"}}),
            Rejected {
                field: "identity.umask",
            },
        ),
        stack(
            "uid-root",
            json!({"identity": {"uid": 0}}),
            Rejected {
                field: "identity.uid",
            },
        ),
        stack(
            "gid-negative",
            json!({"identity": {"gid": -1}}),
            Rejected {
                field: "identity.gid",
            },
        ),
        stack(
            "local-domain-rule",
            json!({"domain": {"local": "lan`) || Host(`evil"}}),
            Rejected {
                field: "domain.local",
            },
        ),
        stack(
            "public-domain-rule",
            json!({"domain": {"public": "example.org`) || PathPrefix(`/"}}),
            Rejected {
                field: "domain.public",
            },
        ),
        stack(
            "expose-host-rule",
            json!({"apps": {"sonarr": {"expose": {"host": "x`) || HostRegexp(`.+"}}}}),
            Rejected {
                field: "apps.sonarr.expose.host",
            },
        ),
        stack(
            "image-whitespace",
            json!({"apps": {"sonarr": {"image": "sonarr:4 --privileged"}}}),
            Rejected {
                field: "apps.sonarr.image",
            },
        ),
        stack(
            "image-oversized",
            json!({"apps": {"sonarr": {"image": long}}}),
            Rejected {
                field: "apps.sonarr.image",
            },
        ),
        stack(
            "jail-newline",
            json!({"security": {"fail2ban": {"authJail": {"maxRetry": 5, "findTime": "10m\nbanaction = evil", "banTime": "1h"}}}}),
            Rejected {
                field: "security.fail2ban.authJail.findTime",
            },
        ),
        stack(
            "jail-zero-retries",
            json!({"security": {"fail2ban": {"botsearchJail": {"maxRetry": 0, "findTime": "10m", "banTime": "1h"}}}}),
            Rejected {
                field: "security.fail2ban.botsearchJail.maxRetry",
            },
        ),
        stack(
            "ignore-cidr-injection",
            json!({"security": {"fail2ban": {"ignoreCIDRs": ["10.0.0.0/8 ; iptables -F"]}}}),
            Rejected {
                field: "security.fail2ban.ignoreCIDRs",
            },
        ),
        stack(
            "ignore-cidrs-oversized",
            json!({"security": {"fail2ban": {"ignoreCIDRs": (0..33).map(|i| format!("10.0.{i}.0/24")).collect::<Vec<_>>()}}}),
            Rejected {
                field: "security.fail2ban.ignoreCIDRs",
            },
        ),
        stack(
            "promql-interval",
            json!({"monitoring": {"interval": "30s\"} or vector(1) #"}}),
            Rejected {
                field: "monitoring.interval",
            },
        ),
        stack(
            "entry-point-oversized",
            json!({"ingress": {"traefik": {"entryPoint": "e".repeat(64)}}}),
            Rejected {
                field: "ingress.traefik.entryPoint",
            },
        ),
        stack(
            "unknown-app",
            json!({"apps": {"cryptominer": {"image": "miner:1"}}}),
            Rejected {
                field: "apps.cryptominer",
            },
        ),
        stack(
            "two-data-sources",
            json!({"storage": {"data": {"claimName": "data"}}}),
            Rejected {
                field: "storage.data",
            },
        ),
        stack(
            "qbittorrent-without-vpn",
            json!({"apps": {"qbittorrent": {"vpn": null}}}),
            Rejected {
                field: "apps.qbittorrent.vpn",
            },
        ),
        // Other kinds.
        Case {
            name: "route-host-rule",
            base: Base::Route,
            patch: json!({"spec": {"host": "ha.lan`) || Host(`bank.example"}}),
            expect: Rejected { field: "spec.host" },
        },
        Case {
            name: "route-allow-everyone-injection",
            base: Base::Route,
            patch: json!({"spec": {"allowCIDRs": ["0.0.0.0/0`"]}}),
            expect: Rejected {
                field: "spec.allowCIDRs",
            },
        },
        Case {
            name: "route-service-other-namespace",
            base: Base::Route,
            patch: json!({"spec": {"service": {"name": "kube-system/kube-dns", "port": 53}}}),
            expect: Rejected {
                field: "spec.service.name",
            },
        },
        Case {
            name: "route-forward-auth-not-http",
            base: Base::Route,
            patch: json!({"spec": {"auth": {"basicAuthSecretRef": null, "forwardAuth": {"address": "file:///etc/shadow"}}}}),
            expect: Rejected {
                field: "spec.auth.forwardAuth.address",
            },
        },
        Case {
            name: "gateway-image-whitespace",
            base: Base::Gateway,
            patch: json!({"spec": {"image": "qmcgaw/gluetun:v3 --privileged"}}),
            expect: Rejected {
                field: "spec.image",
            },
        },
    ]
}

/// RFC 7386 merge patch (null deletes, objects merge, anything else replaces).
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn manifest(case: &Case, ns: &str) -> Value {
    let path = match case.base {
        Base::Stack => "examples/mediastack.yaml",
        Base::Route => "examples/ingressroute.yaml",
        Base::Gateway => "examples/vpngateway.yaml",
    };
    let mut obj: Value = serde_yaml::from_str(&example(path)).expect("example parses");
    merge(&mut obj, &case.patch);
    obj["metadata"] = json!({"name": format!("h-{}", case.name), "namespace": ns});
    obj
}

/// Messages of Warning events with `reason` about MediaStack `name`.
async fn warnings_about(ns: &TestNamespace, name: &str, reason: &str) -> Vec<String> {
    let events: Api<Event> = ns.api();
    events
        .list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter(|e| {
                    e.type_.as_deref() == Some("Warning")
                        && e.reason.as_deref() == Some(reason)
                        && e.involved_object.name.as_deref() == Some(name)
                })
                .filter_map(|e| e.message)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_manifests_are_rejected_or_reported_and_render_nothing() {
    let table = cases();
    assert!(table.len() >= 40, "{} cases", table.len());
    let mut names: Vec<_> = table.iter().map(|c| c.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), table.len(), "case names are unique");

    let ns = TestNamespace::new("hostile").await;
    let _op = Operator::start(&ns).await;
    ns.apply_yaml(WIREGUARD_SECRET, "e2e")
        .await
        .expect("secret");
    ns.apply_yaml(&example("examples/vpngateway.yaml"), "e2e")
        .await
        .expect("gateway");

    let mut failures = Vec::new();
    for case in &table {
        let obj = manifest(case, &ns.name);
        // kubectl validates strictly (unknown fields are errors), as users see it.
        let created = kubectl_stdin(&["create", "-f", "-"], &obj.to_string()).await;
        match (case.expect, created) {
            (Rejected { field }, Err(e)) => {
                let text = format!("{e:#}");
                if !text.contains(field) {
                    failures.push(format!(
                        "{}: rejected without naming {field}: {text}",
                        case.name
                    ));
                }
            }
            (Rejected { .. }, Ok(_)) => {
                failures.push(format!("{}: accepted, should be rejected", case.name))
            }
            (Stalled { .. }, Err(e)) => failures.push(format!(
                "{}: rejected, should be accepted: {e:#}",
                case.name
            )),
            (Stalled { .. }, Ok(_)) => {}
        }
    }

    let stacks: Api<MediaStack> = ns.api();
    for case in &table {
        let Stalled { reason, field } = case.expect else {
            continue;
        };
        let name = format!("h-{}", case.name);
        let reported = wait_for(
            &format!("{name}: Stalled {reason} and a Warning event naming {field}"),
            Duration::from_secs(60),
            || async {
                let s = stacks.get(&name).await?;
                let cond = condition(&s, "Stalled")
                    .is_some_and(|(st, r, m)| st == "True" && r == reason && m.contains(field));
                let event = warnings_about(&ns, &name, reason)
                    .await
                    .iter()
                    .any(|m| m.contains(field));
                Ok(cond && event)
            },
        )
        .await;
        if let Err(e) = reported {
            let status = stacks
                .get(&name)
                .await
                .map(|s| serde_json::to_string(&s.status).unwrap_or_default())
                .unwrap_or_default();
            failures.push(format!("{}: {e}; status {status}", case.name));
        }
    }

    // None produced a workload (so no hostPath, hostNetwork, foreign image or env).
    let deployments: Api<Deployment> = ns.api();
    let daemonsets: Api<DaemonSet> = ns.api();
    for case in &table {
        let selector = format!("mediastack.io/stack=h-{}", case.name);
        let lp = ListParams::default().labels(&selector);
        let d = deployments.list(&lp).await.expect("list").items.len();
        let ds = daemonsets.list(&lp).await.expect("list").items.len();
        if d + ds > 0 {
            failures.push(format!(
                "{}: rendered {d} Deployments and {ds} DaemonSets",
                case.name
            ));
        }
    }
    assert!(
        deployments
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty(),
        "no Deployment at all in the namespace"
    );
    assert!(failures.is_empty(), "{failures:#?}");
}
