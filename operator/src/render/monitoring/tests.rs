use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, PodSpec, PodTemplateSpec, Service, ServicePort,
    ServiceSpec, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value;

use super::super::fixtures::{parent, stack};
use super::super::{Child, GeneratedSecret};
use super::*;
use crate::api::SecretRef;
use crate::api::mediastack::{MediaStackSpec, Tunnel};
use crate::catalog::{self, App};

// ---------------------------------------------------------------- helpers

fn app(name: &str) -> &'static App {
    catalog::app(name).expect("known app")
}

/// The example stack with every metrics source on: the apps of the example,
/// the managed Traefik with fail2ban, a Cloudflare tunnel, and the labels
/// kube-prometheus-stack selects by.
fn full_spec() -> MediaStackSpec {
    let mut spec = stack().spec;
    spec.ingress.tunnel = Some(Tunnel {
        token_secret_ref: SecretRef {
            name: "cloudflare-tunnel".into(),
        },
        image: None,
    });
    spec.monitoring.service_monitor_labels =
        BTreeMap::from([("release".to_string(), "kube-prometheus-stack".to_string())]);
    spec
}

fn render(spec: &MediaStackSpec) -> Vec<Child> {
    objects(&parent(), spec).expect("monitoring renders")
}

fn find<'a>(children: &'a [Child], kind: &str, name: &str) -> Option<&'a Child> {
    children
        .iter()
        .find(|c| c.api.kind == kind && c.object.metadata.name.as_deref() == Some(name))
}

fn names_of(children: &[Child], kind: &str) -> Vec<String> {
    children
        .iter()
        .filter(|c| c.api.kind == kind)
        .filter_map(|c| c.object.metadata.name.clone())
        .collect()
}

fn spec_of(child: &Child) -> &Value {
    &child.object.data["spec"]
}

/// Every rule of the stack's PrometheusRule.
fn alerts(children: &[Child]) -> Vec<Value> {
    find(children, "PrometheusRule", "home-alerts")
        .map(|rule| {
            spec_of(rule)["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

fn alert_names(children: &[Child]) -> Vec<String> {
    alerts(children)
        .iter()
        .filter_map(|a| a["alert"].as_str().map(String::from))
        .collect()
}

/// The overview dashboard, parsed.
fn dashboard(children: &[Child]) -> Value {
    let cm = find(children, "ConfigMap", "home-grafana-dashboards").expect("dashboard ConfigMap");
    let text = cm.object.data["data"]["home-overview.json"]
        .as_str()
        .expect("dashboard JSON in the ConfigMap");
    serde_json::from_str(text).expect("dashboard is valid JSON")
}

/// Every query of the dashboard, as Grafana sends it to Prometheus (its
/// `$__rate_interval` replaced by a duration).
fn dashboard_queries(children: &[Child]) -> Vec<String> {
    dashboard(children)["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| {
            t["expr"]
                .as_str()
                .map(|e| e.replace("$__rate_interval", "5m"))
        })
        .collect()
}

/// A Deployment and Service shaped like workload.rs renders them: container
/// named after the app with port `http`, config mounted at /config.
fn app_objects(app: &App) -> (Deployment, Service) {
    let parent = parent();
    let name = parent.child_name(app.name);
    let container = Container {
        name: app.name.into(),
        image: Some(app.image.into()),
        env: Some(vec![EnvVar {
            name: "TZ".into(),
            value: Some("Europe/Amsterdam".into()),
            ..EnvVar::default()
        }]),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: i32::from(app.port),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        volume_mounts: Some(vec![VolumeMount {
            name: "config".into(),
            mount_path: "/config".into(),
            sub_path: Some("config".into()),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    let deployment = Deployment {
        metadata: parent.meta(&name, app.name, "app"),
        spec: DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(parent.selector(app.name)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(parent.labels(app.name, "app")),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    };
    let service = Service {
        metadata: parent.meta(&name, app.name, "app"),
        spec: Some(ServiceSpec {
            selector: Some(parent.selector(app.name)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: i32::from(app.port),
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    (deployment, service)
}

/// Adds a gluetun native sidecar as vpn.rs does (vpn opens the exporter's
/// port itself).
fn with_gluetun(deployment: &mut Deployment, input_ports: &str) {
    let pod = deployment.spec.template.spec.as_mut().expect("pod spec");
    pod.init_containers = Some(vec![Container {
        name: "gluetun".into(),
        image: Some("qmcgaw/gluetun:v3.41.0".into()),
        restart_policy: Some("Always".into()),
        env: Some(vec![EnvVar {
            name: "FIREWALL_INPUT_PORTS".into(),
            value: Some(input_ports.into()),
            ..EnvVar::default()
        }]),
        ..Container::default()
    }]);
}

fn attach(app: &App) -> (Deployment, Service, Option<GeneratedSecret>) {
    let (mut deployment, mut service) = app_objects(app);
    let secret = attach_exporter(&parent(), app, &mut deployment, &mut service);
    (deployment, service, secret)
}

fn pod(deployment: &Deployment) -> &PodSpec {
    deployment.spec.template.spec.as_ref().expect("pod spec")
}

fn container<'a>(deployment: &'a Deployment, name: &str) -> &'a Container {
    pod(deployment)
        .containers
        .iter()
        .chain(pod(deployment).init_containers.iter().flatten())
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("container {name}"))
}

fn env<'a>(container: &'a Container, name: &str) -> Option<&'a EnvVar> {
    container.env.iter().flatten().find(|e| e.name == name)
}

fn secret_ref(var: &EnvVar) -> Option<(String, String)> {
    let r = var.value_from.as_ref()?.secret_key_ref.as_ref()?;
    Some((r.name.clone(), r.key.clone()))
}

fn service_port(service: &Service, name: &str) -> Option<ServicePort> {
    service
        .spec
        .as_ref()?
        .ports
        .as_ref()?
        .iter()
        .find(|p| p.name.as_deref() == Some(name))
        .cloned()
}

fn parse(expr: &str) -> Expr {
    promql_parser::parser::parse(expr).unwrap_or_else(|e| panic!("{e}\nin:\n{expr}"))
}

/// Collects the vector selectors of an expression.
#[derive(Default)]
struct Selectors(Vec<promql_parser::parser::VectorSelector>);

impl ExprVisitor for Selectors {
    type Error = ();
    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, ()> {
        match expr {
            Expr::VectorSelector(vs) => self.0.push(vs.clone()),
            Expr::MatrixSelector(ms) => self.0.push(ms.vs.clone()),
            _ => {}
        }
        Ok(true)
    }
}

// ---------------------------------------------------------------- exporters

#[test]
fn exportarr_and_the_app_read_the_same_generated_key() {
    let (deployment, service, secret) = attach(app("sonarr"));

    let exporter = container(&deployment, EXPORTER_CONTAINER);
    assert_eq!(exporter.image.as_deref(), Some(EXPORTARR_IMAGE));
    assert_eq!(exporter.args, Some(vec!["sonarr".to_string()]));
    assert_eq!(
        env(exporter, "URL").and_then(|e| e.value.as_deref()),
        Some("http://127.0.0.1:8989")
    );
    assert_eq!(
        env(exporter, "PORT").and_then(|e| e.value.as_deref()),
        Some("9707")
    );
    let key = ("home-api-keys".to_string(), "sonarr".to_string());
    assert_eq!(
        env(exporter, "API_KEY").and_then(secret_ref),
        Some(key.clone())
    );
    let sonarr = container(&deployment, "sonarr");
    assert_eq!(
        env(sonarr, "SONARR__AUTH__APIKEY").and_then(secret_ref),
        Some(key)
    );

    let port = service_port(&service, METRICS_PORT).expect("metrics Service port");
    assert_eq!(port.port, 9707);
    assert_eq!(
        port.target_port,
        Some(IntOrString::String(METRICS_PORT.into()))
    );
    assert!(service_port(&service, "http").is_some(), "app port kept");

    let secret = secret.expect("API-key Secret");
    assert_eq!(secret.name, "home-api-keys");
    assert_eq!(secret.random_keys, vec!["sonarr".to_string()]);
    assert_eq!(
        secret.labels.get("mediastack.io/stack").map(String::as_str),
        Some("home")
    );
}

#[test]
fn every_arr_app_gets_its_own_key_in_the_shared_secret() {
    for (name, env_name) in [
        ("sonarr", "SONARR__AUTH__APIKEY"),
        ("radarr", "RADARR__AUTH__APIKEY"),
        ("prowlarr", "PROWLARR__AUTH__APIKEY"),
    ] {
        let (deployment, _, secret) = attach(app(name));
        let secret = secret.expect("API-key Secret");
        assert_eq!(secret.name, "home-api-keys", "{name}");
        assert_eq!(secret.random_keys, vec![name.to_string()], "{name}");
        let app_key = env(container(&deployment, name), env_name).and_then(secret_ref);
        let exporter_key =
            env(container(&deployment, EXPORTER_CONTAINER), "API_KEY").and_then(secret_ref);
        assert_eq!(app_key, exporter_key, "{name}");
        assert_eq!(
            app_key,
            Some(("home-api-keys".to_string(), name.to_string())),
            "{name}"
        );
    }
}

#[test]
fn bazarr_takes_the_generated_key_through_dynaconf() {
    let (deployment, _, secret) = attach(app("bazarr"));
    let bazarr = container(&deployment, "bazarr");
    let vars: Vec<&str> = bazarr
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    let raw = vars.iter().position(|n| *n == "MEDIASTACK_API_KEY");
    let dynaconf = vars.iter().position(|n| *n == "DYNACONF_AUTH__APIKEY");
    assert!(
        matches!((raw, dynaconf), (Some(r), Some(d)) if r < d),
        "the raw key is defined before the variable that expands it: {vars:?}"
    );
    assert_eq!(
        env(bazarr, "DYNACONF_AUTH__APIKEY").and_then(|e| e.value.as_deref()),
        Some("@str $(MEDIASTACK_API_KEY)")
    );
    let key = Some(("home-api-keys".to_string(), "bazarr".to_string()));
    assert_eq!(
        env(bazarr, "MEDIASTACK_API_KEY").and_then(secret_ref),
        key.clone()
    );
    assert_eq!(
        env(container(&deployment, EXPORTER_CONTAINER), "API_KEY").and_then(secret_ref),
        key
    );
    assert_eq!(
        secret.map(|s| s.random_keys),
        Some(vec!["bazarr".to_string()])
    );
}

#[test]
fn a_key_the_user_sets_is_followed_by_the_exporter() {
    let sonarr = app("sonarr");
    let (mut deployment, mut service) = app_objects(sonarr);
    let user_key = EnvVar {
        name: "SONARR__AUTH__APIKEY".into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(k8s_openapi::api::core::v1::SecretKeySelector {
                name: "my-keys".into(),
                key: "sonarr".into(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    if let Some(pod) = deployment.spec.template.spec.as_mut() {
        pod.containers[0]
            .env
            .get_or_insert_with(Vec::new)
            .push(user_key.clone());
    }
    let secret = attach_exporter(&parent(), sonarr, &mut deployment, &mut service);
    assert_eq!(secret, None, "no generated key needed");
    assert_eq!(
        env(container(&deployment, "sonarr"), "SONARR__AUTH__APIKEY"),
        Some(&user_key),
        "the user's variable is kept"
    );
    assert_eq!(
        env(container(&deployment, EXPORTER_CONTAINER), "API_KEY").and_then(secret_ref),
        Some(("my-keys".to_string(), "sonarr".to_string()))
    );
}

#[test]
fn qbittorrent_exporter_logs_in_through_the_localhost_bypass() {
    let qbittorrent = app("qbittorrent");
    let (mut deployment, mut service) = app_objects(qbittorrent);
    with_gluetun(&mut deployment, "8080");
    let secret = attach_exporter(&parent(), qbittorrent, &mut deployment, &mut service);
    assert_eq!(secret, None, "no credentials: localhost bypass");

    let exporter = container(&deployment, EXPORTER_CONTAINER);
    assert_eq!(exporter.image.as_deref(), Some(QBITTORRENT_EXPORTER_IMAGE));
    assert_eq!(
        env(exporter, "QBITTORRENT_BASE_URL").and_then(|e| e.value.as_deref()),
        Some("http://127.0.0.1:8080")
    );
    assert_eq!(
        env(exporter, "EXPORTER_PORT").and_then(|e| e.value.as_deref()),
        Some("8090")
    );
    assert!(env(exporter, "QBITTORRENT_PASSWORD").is_none());

    // The localhost bypass is the VPN config step's (`vpn`, which knows
    // monitoring is on); the exporter adds no init container of its own.
    let inits = pod(&deployment).init_containers.clone().unwrap_or_default();
    assert_eq!(
        inits.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        vec!["gluetun"],
        "the VPN sidecar stays first"
    );

    assert_eq!(
        service_port(&service, METRICS_PORT).map(|p| p.port),
        Some(8090)
    );
}

#[test]
fn jellyfin_serves_its_own_metrics() {
    let jellyfin = app("jellyfin");
    let (before, service_before) = app_objects(jellyfin);
    let (after, service_after, secret) = attach(jellyfin);
    assert_eq!(secret, None);
    assert_eq!(before, after);
    assert_eq!(service_before, service_after);
}

#[test]
fn attaching_twice_changes_nothing() {
    for name in ["sonarr", "bazarr", "qbittorrent"] {
        let app = app(name);
        let (mut deployment, mut service) = app_objects(app);
        with_gluetun(&mut deployment, "8080");
        let first = attach_exporter(&parent(), app, &mut deployment, &mut service);
        let (d1, s1) = (deployment.clone(), service.clone());
        let second = attach_exporter(&parent(), app, &mut deployment, &mut service);
        assert_eq!(first, second, "{name}");
        assert_eq!(d1, deployment, "{name}");
        assert_eq!(s1, service, "{name}");
    }
}

// ---------------------------------------------------------------- monitors

#[test]
fn one_monitor_per_metrics_source() {
    let children = render(&full_spec());
    assert_eq!(
        names_of(&children, "ServiceMonitor"),
        vec![
            "home-jellyfin",
            "home-sonarr",
            "home-radarr",
            "home-prowlarr",
            "home-bazarr",
            "home-qbittorrent",
            "home-traefik",
            "home-cloudflared",
        ]
    );

    let sonarr = find(&children, "ServiceMonitor", "home-sonarr").expect("sonarr monitor");
    let spec = spec_of(sonarr);
    assert_eq!(
        spec["selector"]["matchLabels"],
        serde_json::to_value(parent().selector("sonarr")).expect("labels")
    );
    let endpoint = &spec["endpoints"][0];
    assert_eq!(endpoint["port"], "metrics");
    assert_eq!(endpoint["interval"], "30s");
    assert_eq!(endpoint["relabelings"][0]["targetLabel"], "job");
    assert_eq!(endpoint["relabelings"][0]["replacement"], "home-sonarr");

    let jellyfin = find(&children, "ServiceMonitor", "home-jellyfin").expect("jellyfin monitor");
    assert_eq!(spec_of(jellyfin)["endpoints"][0]["port"], "http");
    assert_eq!(spec_of(jellyfin)["endpoints"][0]["path"], "/metrics");

    let traefik = find(&children, "ServiceMonitor", "home-traefik").expect("traefik monitor");
    assert_eq!(spec_of(traefik)["endpoints"][0]["port"], "traefik");
    assert_eq!(
        spec_of(traefik)["selector"]["matchLabels"],
        serde_json::to_value(parent().selector("traefik")).expect("labels")
    );

    let cloudflared =
        find(&children, "ServiceMonitor", "home-cloudflared").expect("cloudflared monitor");
    assert_eq!(spec_of(cloudflared)["endpoints"][0]["port"], "metrics");
    assert_eq!(
        spec_of(cloudflared)["selector"]["matchLabels"],
        serde_json::to_value(parent().selector("cloudflared")).expect("labels")
    );
}

#[test]
fn the_scrape_interval_comes_from_the_spec() {
    let mut spec = full_spec();
    spec.monitoring.interval = "1m".into();
    let children = render(&spec);
    for child in children.iter().filter(|c| c.api.kind == "ServiceMonitor") {
        assert_eq!(
            spec_of(child)["endpoints"][0]["interval"],
            "1m",
            "{}",
            child.key()
        );
    }
}

#[test]
fn monitors_and_rules_carry_the_prometheus_selector_labels() {
    let mut spec = full_spec();
    // A user label that clashes with one the operator prunes by loses.
    spec.monitoring
        .service_monitor_labels
        .insert("mediastack.io/stack".into(), "other".into());
    let children = render(&spec);
    let selected: Vec<&Child> = children
        .iter()
        .filter(|c| ["ServiceMonitor", "PrometheusRule"].contains(&c.api.kind.as_str()))
        .collect();
    assert_eq!(selected.len(), 9);
    for child in selected {
        let labels = child.object.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get("release").map(String::as_str),
            Some("kube-prometheus-stack"),
            "{}",
            child.key()
        );
        assert_eq!(
            labels.get("mediastack.io/stack").map(String::as_str),
            Some("home"),
            "{}",
            child.key()
        );
        assert_eq!(
            child.object.metadata.owner_references,
            Some(vec![parent().owner]),
            "{}",
            child.key()
        );
    }
}

#[test]
fn a_disabled_app_has_no_monitor_and_no_alert() {
    let mut spec = full_spec();
    if let Some(sonarr) = spec.apps.sonarr.as_mut() {
        sonarr.enabled = false;
    }
    let children = render(&spec);
    assert!(find(&children, "ServiceMonitor", "home-sonarr").is_none());
    let rules = serde_json::to_string(&alerts(&children)).expect("rules");
    assert!(!rules.contains("home-sonarr"), "{rules}");
    let queries = dashboard_queries(&children).join("\n");
    assert!(!queries.contains("home-sonarr"), "{queries}");
    assert!(find(&children, "ServiceMonitor", "home-radarr").is_some());
}

#[test]
fn an_unmanaged_traefik_is_not_monitored() {
    let mut spec = full_spec();
    spec.ingress.traefik.managed = Some(false);
    let children = render(&spec);
    assert!(find(&children, "ServiceMonitor", "home-traefik").is_none());
    let names = alert_names(&children);
    assert!(!names.contains(&"MediaStackAuthFailuresSustained".to_string()));
    let rules = serde_json::to_string(&alerts(&children)).expect("rules");
    assert!(!rules.contains("home-traefik"), "{rules}");
}

#[test]
fn no_tunnel_no_cloudflared_monitor_or_alert() {
    let children = render(&stack().spec);
    assert!(find(&children, "ServiceMonitor", "home-cloudflared").is_none());
    assert!(!alert_names(&children).contains(&"MediaStackTunnelDisconnected".to_string()));
    assert!(
        alert_names(&render(&full_spec())).contains(&"MediaStackTunnelDisconnected".to_string())
    );
}

#[test]
fn no_vpn_consumer_no_vpn_alert() {
    let mut spec = full_spec();
    if let Some(q) = spec.apps.qbittorrent.as_mut() {
        q.enabled = false;
    }
    let names = alert_names(&render(&spec));
    assert!(!names.contains(&"MediaStackVpnTunnelDown".to_string()));
    assert!(!names.contains(&"MediaStackTorrentClientDisconnected".to_string()));
    let names = alert_names(&render(&full_spec()));
    assert!(names.contains(&"MediaStackVpnTunnelDown".to_string()));
}

#[test]
fn fail2ban_alert_follows_the_auth_jail() {
    let mut spec = full_spec();
    spec.security.fail2ban.auth_jail.max_retry = 3;
    spec.security.fail2ban.auth_jail.find_time = "15m".into();
    let rules = alerts(&render(&spec));
    let alert = rules
        .iter()
        .find(|a| a["alert"] == "MediaStackAuthFailuresSustained")
        .expect("auth failure alert");
    let expr = alert["expr"].as_str().unwrap_or_default();
    assert!(expr.contains("[15m]"), "{expr}");
    assert!(expr.ends_with("> 30"), "{expr}");
    assert!(
        expr.contains(r#"entrypoint=~"(web|tunnel)""#),
        "tunnel traffic counts too: {expr}"
    );

    spec.security.fail2ban.enabled = Some(false);
    assert!(!alert_names(&render(&spec)).contains(&"MediaStackAuthFailuresSustained".to_string()));
}

#[test]
fn a_stack_without_apps_still_renders() {
    let mut spec = stack().spec;
    spec.apps = Default::default();
    spec.ingress.traefik.managed = Some(false);
    let children = render(&spec);
    assert!(names_of(&children, "ServiceMonitor").is_empty());
    assert!(find(&children, "PrometheusRule", "home-alerts").is_none());
    assert!(dashboard(&children)["panels"].is_array());
}

// ---------------------------------------------------------------- alerts

#[test]
fn promql_parser_rejects_broken_expressions() {
    // Guard: the checks below mean something only if the parser is strict.
    for broken in [
        "sum(rate(up[5m])",
        "up{job=\"a\" == 0",
        "up == ",
        "rate(up)[5m]",
        "max by namespace (up)",
        "up{job=~\"(a|b\"}",
    ] {
        assert!(
            promql_parser::parser::parse(broken).is_err(),
            "{broken} should not parse"
        );
    }
}

#[test]
fn every_alert_expression_parses_and_is_scoped_to_the_stack() {
    for spec in [stack().spec, full_spec()] {
        let rules = alerts(&render(&spec));
        assert!(!rules.is_empty());
        for rule in &rules {
            let name = rule["alert"].as_str().unwrap_or_default();
            let expr = rule["expr"].as_str().unwrap_or_default();
            let mut selectors = Selectors::default();
            let _ = walk_expr(&mut selectors, &parse(expr));
            assert!(!selectors.0.is_empty(), "{name}");
            for vs in selectors.0 {
                let scoped =
                    vs.matchers.matchers.iter().any(|m| {
                        m.name == "namespace" && m.op == MatchOp::Equal && m.value == "media"
                    });
                assert!(
                    scoped,
                    "{name}: {:?} is not scoped to namespace media",
                    vs.name
                );
            }
        }
    }
}

#[test]
fn every_alert_has_a_severity_summary_and_runbook() {
    for rule in alerts(&render(&full_spec())) {
        let name = rule["alert"].as_str().unwrap_or_default();
        assert!(name.starts_with("MediaStack"), "{name}");
        assert!(
            ["critical", "warning", "info"]
                .contains(&rule["labels"]["severity"].as_str().unwrap_or("")),
            "{name}"
        );
        assert_eq!(rule["labels"]["mediastack"], "home", "{name}");
        assert!(
            rule["for"].as_str().is_some_and(|f| !f.is_empty()),
            "{name}"
        );
        for key in ["summary", "description"] {
            let text = rule["annotations"][key].as_str().unwrap_or_default();
            assert!(!text.is_empty(), "{name}: {key}");
            assert_eq!(
                text.matches("{{").count(),
                text.matches("}}").count(),
                "{name}: unbalanced template in {key}"
            );
            assert!(
                !text.contains("{ns}") && !text.contains("{stack}") && !text.contains("{title}"),
                "{name}: unfilled placeholder in {key}: {text}"
            );
        }
        let description = rule["annotations"]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(
            description.contains("Check") || description.contains("check"),
            "{name}: a runbook says what to check"
        );
    }
}

#[test]
fn alerts_cover_the_stack() {
    let names = alert_names(&render(&full_spec()));
    for expected in [
        "MediaStackAppUnavailable",
        "MediaStackMetricsNotScraped",
        "MediaStackExporterFailing",
        "MediaStackMetricsTargetDown",
        "MediaStackVpnTunnelDown",
        "MediaStackTorrentClientDisconnected",
        "MediaStackAuthFailuresSustained",
        "MediaStackTunnelDisconnected",
        "MediaStackVolumeFillingUp",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    // One exporter alert per exporter: four exportarr plus qBittorrent.
    assert_eq!(
        names
            .iter()
            .filter(|n| *n == "MediaStackExporterFailing")
            .count(),
        5
    );
}

/// An alert expected to fire: the rule's `source` label (to pick the rule),
/// the series labels, and `$value | humanizePercentage` if the rule uses it.
type Firing = (
    Option<&'static str>,
    &'static [(&'static str, &'static str)],
    Option<&'static str>,
);

/// One `promtool test rules` scenario: input series, and the alerts (with
/// their labels beyond the rule's own) expected to fire at `eval`.
struct Scenario {
    name: &'static str,
    series: &'static [(&'static str, &'static str)],
    eval: &'static str,
    alert: &'static str,
    firing: &'static [Firing],
}

const QBIT_POD: &str = "home-qbittorrent-5d9f7c6b8-x2k4q";

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "an app below its desired replicas; a waiting app and another namespace are not",
        series: &[
            (
                "kube_deployment_spec_replicas{namespace=\"media\",deployment=\"home-sonarr\"}",
                "1x10",
            ),
            (
                "kube_deployment_status_replicas_available{namespace=\"media\",deployment=\"home-sonarr\"}",
                "0x10",
            ),
            (
                "kube_deployment_spec_replicas{namespace=\"media\",deployment=\"home-jellyseerr\"}",
                "0x10",
            ),
            (
                "kube_deployment_status_replicas_available{namespace=\"media\",deployment=\"home-jellyseerr\"}",
                "0x10",
            ),
            (
                "kube_deployment_spec_replicas{namespace=\"other\",deployment=\"home-sonarr\"}",
                "1x10",
            ),
            (
                "kube_deployment_status_replicas_available{namespace=\"other\",deployment=\"home-sonarr\"}",
                "0x10",
            ),
        ],
        eval: "6m",
        alert: "MediaStackAppUnavailable",
        firing: &[(
            None,
            &[("namespace", "media"), ("deployment", "home-sonarr")],
            None,
        )],
    },
    Scenario {
        name: "qBittorrent with gluetun not ready, and without gluetun; healthy pods and other stacks are not",
        series: &[
            (
                "kube_pod_container_status_running{namespace=\"media\",pod=\"home-qbittorrent-5d9f7c6b8-x2k4q\",container=\"qbittorrent\"}",
                "1x10",
            ),
            (
                "kube_pod_init_container_status_ready{namespace=\"media\",pod=\"home-qbittorrent-5d9f7c6b8-x2k4q\",container=\"gluetun\"}",
                "1 1 1 0 0 0 0 0 0 0 0",
            ),
            (
                "kube_pod_container_status_running{namespace=\"media\",pod=\"home-qbittorrent-5d9f7c6b8-bbbbb\",container=\"qbittorrent\"}",
                "1x10",
            ),
            (
                "kube_pod_container_status_running{namespace=\"media\",pod=\"home-qbittorrent-5d9f7c6b8-aaaaa\",container=\"qbittorrent\"}",
                "1x10",
            ),
            (
                "kube_pod_init_container_status_ready{namespace=\"media\",pod=\"home-qbittorrent-5d9f7c6b8-aaaaa\",container=\"gluetun\"}",
                "1x10",
            ),
            (
                "kube_pod_container_status_running{namespace=\"media\",pod=\"home-qbittorrent-5d9f7c6b8-ccccc\",container=\"qbittorrent\"}",
                "1x10",
            ),
            (
                "kube_pod_container_status_ready{namespace=\"media\",pod=\"home-qbittorrent-5d9f7c6b8-ccccc\",container=\"gluetun\"}",
                "1x10",
            ),
            (
                "kube_pod_container_status_running{namespace=\"media\",pod=\"home2-qbittorrent-5d9f7c6b8-ddddd\",container=\"qbittorrent\"}",
                "1x10",
            ),
        ],
        eval: "7m",
        alert: "MediaStackVpnTunnelDown",
        firing: &[
            (
                Some("qbittorrent"),
                &[("namespace", "media"), ("pod", QBIT_POD)],
                None,
            ),
            (
                Some("qbittorrent"),
                &[
                    ("namespace", "media"),
                    ("pod", "home-qbittorrent-5d9f7c6b8-bbbbb"),
                ],
                None,
            ),
        ],
    },
    Scenario {
        name: "exportarr reaching the exporter but not the app, and a failing scrape",
        series: &[
            ("up{namespace=\"media\",job=\"home-sonarr\"}", "1x20"),
            (
                "sonarr_system_status{namespace=\"media\",job=\"home-sonarr\"}",
                "0x20",
            ),
            ("up{namespace=\"media\",job=\"home-radarr\"}", "0x20"),
            ("up{namespace=\"media\",job=\"home-prowlarr\"}", "1x20"),
            (
                "prowlarr_system_status{namespace=\"media\",job=\"home-prowlarr\"}",
                "1x20",
            ),
        ],
        eval: "15m",
        alert: "MediaStackExporterFailing",
        firing: &[
            (
                Some("sonarr"),
                &[("namespace", "media"), ("job", "home-sonarr")],
                None,
            ),
            (
                Some("radarr"),
                &[("namespace", "media"), ("job", "home-radarr")],
                None,
            ),
        ],
    },
    Scenario {
        name: "Prometheus scrapes nothing of the stack",
        series: &[("up{namespace=\"media\",job=\"somebody-else\"}", "1x30")],
        eval: "20m",
        alert: "MediaStackMetricsNotScraped",
        firing: &[(None, &[("namespace", "media")], None)],
    },
    Scenario {
        name: "failed logins above 10 x maxRetry per findTime",
        series: &[
            (
                "traefik_entrypoint_requests_total{namespace=\"media\",job=\"home-traefik\",entrypoint=\"web\",code=\"401\"}",
                "0+10x30",
            ),
            (
                "traefik_entrypoint_requests_total{namespace=\"media\",job=\"home-traefik\",entrypoint=\"web\",code=\"200\"}",
                "0+1000x30",
            ),
        ],
        eval: "20m",
        alert: "MediaStackAuthFailuresSustained",
        firing: &[(Some("traefik"), &[("namespace", "media")], None)],
    },
    Scenario {
        name: "failed logins below the limit",
        series: &[(
            "traefik_entrypoint_requests_total{namespace=\"media\",job=\"home-traefik\",entrypoint=\"web\",code=\"401\"}",
            "0+2x30",
        )],
        eval: "20m",
        alert: "MediaStackAuthFailuresSustained",
        firing: &[],
    },
    Scenario {
        name: "the tunnel loses its connections",
        series: &[(
            "cloudflared_tunnel_ha_connections{namespace=\"media\",job=\"home-cloudflared\"}",
            "4 4 0 0 0 0 0 0 0 0",
        )],
        eval: "9m",
        alert: "MediaStackTunnelDisconnected",
        firing: &[(Some("cloudflared"), &[("namespace", "media")], None)],
    },
    Scenario {
        name: "a claim of the stack 90% full; claims of other pods are not watched",
        series: &[
            (
                "kubelet_volume_stats_used_bytes{namespace=\"media\",persistentvolumeclaim=\"home-sonarr-config\"}",
                "90x20",
            ),
            (
                "kubelet_volume_stats_capacity_bytes{namespace=\"media\",persistentvolumeclaim=\"home-sonarr-config\"}",
                "100x20",
            ),
            (
                "kube_pod_spec_volumes_persistentvolumeclaims_info{namespace=\"media\",pod=\"home-sonarr-7c9d8f-abcde\",volume=\"config\",persistentvolumeclaim=\"home-sonarr-config\"}",
                "1x20",
            ),
            (
                "kubelet_volume_stats_used_bytes{namespace=\"media\",persistentvolumeclaim=\"unrelated\"}",
                "99x20",
            ),
            (
                "kubelet_volume_stats_capacity_bytes{namespace=\"media\",persistentvolumeclaim=\"unrelated\"}",
                "100x20",
            ),
            (
                "kube_pod_spec_volumes_persistentvolumeclaims_info{namespace=\"media\",pod=\"someone-7c9d8f-abcde\",volume=\"x\",persistentvolumeclaim=\"unrelated\"}",
                "1x20",
            ),
        ],
        eval: "16m",
        alert: "MediaStackVolumeFillingUp",
        firing: &[(
            None,
            &[
                ("namespace", "media"),
                ("persistentvolumeclaim", "home-sonarr-config"),
            ],
            Some("90%"),
        )],
    },
    Scenario {
        name: "qBittorrent disconnected (firewalled alone is fine)",
        series: &[
            (
                "qbittorrent_transfer_connection_status{namespace=\"media\",job=\"home-qbittorrent\",connection_status=\"disconnected\"}",
                "1x20",
            ),
            (
                "qbittorrent_transfer_connection_status{namespace=\"media\",job=\"home-qbittorrent\",connection_status=\"firewalled\"}",
                "1x20",
            ),
        ],
        eval: "16m",
        alert: "MediaStackTorrentClientDisconnected",
        firing: &[(Some("qbittorrent"), &[("namespace", "media")], None)],
    },
];

/// Expands the Go template actions our annotations use.
fn expand(text: &str, labels: &[(&str, &str)], value: Option<&str>) -> String {
    let mut out = text.to_string();
    for (k, v) in labels {
        out = out.replace(&format!("{{{{ $labels.{k} }}}}"), v);
    }
    if let Some(v) = value {
        out = out.replace("{{ $value | humanizePercentage }}", v);
    }
    out
}

/// `promtool check rules` and behaviour tests (`promtool test rules`) on the
/// rendered rules, when promtool is installed (`PROMTOOL=/path/to/promtool`
/// or on PATH). Skipped otherwise.
#[test]
fn rules_pass_promtool_when_available() {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    if std::process::Command::new(&promtool)
        .arg("--version")
        .output()
        .is_err()
    {
        // e2e/test.sh (and so CI) provides promtool and requires the check.
        assert!(
            std::env::var_os("MEDIASTACK_REQUIRE_TOOLS").is_none(),
            "promtool is required but not found"
        );
        eprintln!("promtool not found: skipped (set PROMTOOL to run it)");
        return;
    }
    let children = render(&full_spec());
    let rule = find(&children, "PrometheusRule", "home-alerts").expect("rule");
    let rules = alerts(&children);
    let dir = std::env::temp_dir().join(format!("mediastack-promtool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let rules_file = dir.join("rules.yaml");
    std::fs::write(
        &rules_file,
        serde_yaml::to_string(spec_of(rule)).expect("yaml"),
    )
    .expect("write rules");

    let tests: Vec<Value> = SCENARIOS
        .iter()
        .map(|s| {
            let firing: Vec<Value> = s
                .firing
                .iter()
                .map(|(source, labels, value)| {
                    let rule = rules
                        .iter()
                        .find(|r| {
                            r["alert"] == s.alert
                                && r["labels"]["source"].as_str() == *source
                        })
                        .unwrap_or_else(|| panic!("{}: no rule {} {source:?}", s.name, s.alert));
                    let mut exp_labels = rule["labels"].clone();
                    for (k, v) in *labels {
                        exp_labels[*k] = (*v).into();
                    }
                    let annotations: BTreeMap<String, String> = rule["annotations"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), expand(v.as_str().unwrap_or(""), labels, *value)))
                        .collect();
                    serde_json::json!({ "exp_labels": exp_labels, "exp_annotations": annotations })
                })
                .collect();
            serde_json::json!({
                "name": s.name,
                "interval": "1m",
                "input_series": s.series.iter()
                    .map(|(series, values)| serde_json::json!({ "series": series, "values": values }))
                    .collect::<Vec<_>>(),
                "alert_rule_test": [{ "eval_time": s.eval, "alertname": s.alert, "exp_alerts": firing }],
            })
        })
        .collect();
    let test_file = dir.join("tests.yaml");
    let suite = serde_json::json!({
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": tests,
    });
    std::fs::write(&test_file, serde_yaml::to_string(&suite).expect("yaml")).expect("write tests");

    let run = |args: &[&str], file: &std::path::Path| {
        let out = std::process::Command::new(&promtool)
            .args(args)
            .arg(file)
            .current_dir(&dir)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        &["check", "rules", "--lint=all", "--lint-fatal"],
        &rules_file,
    );
    run(&["test", "rules"], &test_file);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- dashboard

#[test]
fn every_dashboard_query_parses() {
    for spec in [stack().spec, full_spec()] {
        let queries = dashboard_queries(&render(&spec));
        assert!(queries.len() >= 5, "{queries:?}");
        for query in queries {
            assert!(!query.contains('$'), "unknown Grafana variable in {query}");
            parse(&query);
        }
    }
}

#[test]
fn the_dashboard_is_labelled_for_the_grafana_sidecar() {
    let mut spec = full_spec();
    spec.monitoring.dashboard_label = BTreeMap::from([("grafana_dashboard".into(), "yes".into())]);
    let children = render(&spec);
    let cm = find(&children, "ConfigMap", "home-grafana-dashboards").expect("ConfigMap");
    let labels = cm.object.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("grafana_dashboard").map(String::as_str),
        Some("yes")
    );
    assert_eq!(
        labels.get("mediastack.io/stack").map(String::as_str),
        Some("home")
    );
    let default = render(&stack().spec);
    let cm = find(&default, "ConfigMap", "home-grafana-dashboards").expect("ConfigMap");
    assert_eq!(
        cm.object
            .metadata
            .labels
            .clone()
            .unwrap_or_default()
            .get("grafana_dashboard")
            .map(String::as_str),
        Some("1")
    );
}

#[test]
fn the_dashboard_is_deterministic_and_unique_per_stack() {
    let a = dashboard(&render(&full_spec()));
    let b = dashboard(&render(&full_spec()));
    assert_eq!(a, b);
    let uid = a["uid"].as_str().unwrap_or_default().to_string();
    assert!(uid.len() <= 40 && uid.starts_with("mediastack-"), "{uid}");

    let mut other = parent();
    other.namespace = "media2".into();
    let c = objects(&other, &full_spec()).expect("renders");
    let other_uid = dashboard_of(&c, "home-grafana-dashboards")["uid"].clone();
    assert_ne!(Value::from(uid), other_uid);

    // Panel ids are unique; panels do not overlap.
    let panels = a["panels"].as_array().cloned().unwrap_or_default();
    let mut ids: Vec<i64> = panels.iter().filter_map(|p| p["id"].as_i64()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), panels.len());
    let cells: Vec<(u64, u64, u64, u64)> = panels
        .iter()
        .map(|p| {
            let g = &p["gridPos"];
            let n = |k: &str| g[k].as_u64().unwrap_or(0);
            (n("x"), n("y"), n("w"), n("h"))
        })
        .collect();
    for (i, a) in cells.iter().enumerate() {
        assert!(a.0 + a.2 <= 24, "panel {i} is wider than the grid");
        for b in &cells[i + 1..] {
            let apart =
                a.0 + a.2 <= b.0 || b.0 + b.2 <= a.0 || a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1;
            assert!(apart, "panels overlap: {a:?} {b:?}");
        }
    }
}

fn dashboard_of(children: &[Child], name: &str) -> Value {
    let cm = find(children, "ConfigMap", name).expect("ConfigMap");
    let data = cm.object.data["data"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let text = data.values().next().and_then(Value::as_str).unwrap_or("{}");
    serde_json::from_str(text).expect("valid JSON")
}

// ---------------------------------------------------------------- schema

/// Checks a value against a CRD's OpenAPI v3 schema: known fields, types,
/// enums, patterns and required fields.
fn check_schema(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if schema["x-kubernetes-int-or-string"] == Value::Bool(true) {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            errors.push(format!("{path}: not int-or-string"));
        }
        return;
    }
    match schema["type"].as_str() {
        Some("object") => {
            let Some(object) = value.as_object() else {
                errors.push(format!("{path}: not an object"));
                return;
            };
            for required in schema["required"].as_array().into_iter().flatten() {
                if let Some(key) = required.as_str()
                    && !object.contains_key(key)
                {
                    errors.push(format!("{path}.{key}: required"));
                }
            }
            let properties = schema["properties"].as_object();
            for (key, v) in object {
                let sub = format!("{path}.{key}");
                match properties.and_then(|p| p.get(key)) {
                    Some(s) => check_schema(s, v, &sub, errors),
                    None if schema["additionalProperties"].is_object() => {
                        check_schema(&schema["additionalProperties"], v, &sub, errors)
                    }
                    None if schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true) => {
                    }
                    None => errors.push(format!("{sub}: unknown field")),
                }
            }
        }
        Some("array") => match value.as_array() {
            Some(items) => {
                for (i, v) in items.iter().enumerate() {
                    check_schema(&schema["items"], v, &format!("{path}[{i}]"), errors);
                }
            }
            None => errors.push(format!("{path}: not an array")),
        },
        Some("string") => {
            let Some(s) = value.as_str() else {
                errors.push(format!("{path}: not a string"));
                return;
            };
            if let Some(options) = schema["enum"].as_array()
                && !options.iter().any(|o| o.as_str() == Some(s))
            {
                errors.push(format!("{path}: {s} not in {options:?}"));
            }
            if let Some(pattern) = schema["pattern"].as_str() {
                match regex::Regex::new(pattern) {
                    Ok(re) if re.is_match(s) => {}
                    Ok(_) => errors.push(format!("{path}: {s} does not match {pattern}")),
                    Err(e) => errors.push(format!("{path}: pattern {pattern}: {e}")),
                }
            }
        }
        Some("boolean") if !value.is_boolean() => errors.push(format!("{path}: not a boolean")),
        Some("integer") if !(value.is_i64() || value.is_u64()) => {
            errors.push(format!("{path}: not an integer"))
        }
        _ => {}
    }
}

/// The rendered ServiceMonitors and PrometheusRule against the
/// prometheus-operator CRDs in shared/thirdparty (skipped when absent).
#[test]
fn monitoring_objects_match_the_prometheus_operator_crds() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/thirdparty/crds/monitoring-crds.yaml"
    );
    let Ok(text) = std::fs::read_to_string(path) else {
        eprintln!("{path} not found: CRD schema check skipped");
        return;
    };
    let mut schemas = BTreeMap::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let crd: Value = match serde::Deserialize::deserialize(doc) {
            Ok(v) => v,
            Err(e) => panic!("CRD file: {e}"),
        };
        let kind = crd["spec"]["names"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for version in crd["spec"]["versions"].as_array().into_iter().flatten() {
            if version["name"] == "v1" {
                schemas.insert(
                    kind.clone(),
                    version["schema"]["openAPIV3Schema"]["properties"]["spec"].clone(),
                );
            }
        }
    }
    let children = render(&full_spec());
    let mut checked = 0;
    for child in &children {
        let Some(schema) = schemas.get(&child.api.kind) else {
            continue;
        };
        assert_eq!(child.api.api_version, "monitoring.coreos.com/v1");
        let mut errors = Vec::new();
        check_schema(schema, spec_of(child), &child.key(), &mut errors);
        assert!(errors.is_empty(), "{errors:#?}");
        checked += 1;
    }
    assert_eq!(checked, 9, "every monitor and the rule were checked");
}

// ---------------------------------------------------------------- golden

fn snapshot(name: &str, yaml: String) {
    insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => true }, {
        insta::assert_snapshot!(name.to_string(), yaml);
    });
}

#[test]
fn golden_monitoring_objects() {
    for child in render(&full_spec()) {
        let name = format!(
            "{}_{}",
            child.api.kind.to_lowercase(),
            child.object.metadata.name.as_deref().unwrap_or_default()
        );
        snapshot(&name, child.to_yaml());
    }
}

#[test]
fn golden_apps_with_exporters() {
    for name in ["sonarr", "bazarr", "qbittorrent"] {
        let app = app(name);
        let (mut deployment, mut service) = app_objects(app);
        if name == "qbittorrent" {
            with_gluetun(&mut deployment, "8080");
        }
        attach_exporter(&parent(), app, &mut deployment, &mut service);
        let deployment = Child::typed(&deployment).expect("deployment");
        let service = Child::typed(&service).expect("service");
        snapshot(
            &format!("{name}_deployment_with_exporter"),
            deployment.to_yaml(),
        );
        snapshot(&format!("{name}_service_with_exporter"), service.to_yaml());
    }
}

#[test]
fn rendering_twice_gives_identical_yaml() {
    let a: Vec<String> = render(&full_spec()).iter().map(Child::to_yaml).collect();
    let b: Vec<String> = render(&full_spec()).iter().map(Child::to_yaml).collect();
    assert_eq!(a, b);
}
