//! `mediastack-operator`: CLI only. `run` (default) | `crd` | `version`.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};
use mediastack_operator::policy::Policy;
use mediastack_operator::runtime::{self, LeaderElection, Settings};

#[derive(Parser)]
#[command(
    name = "mediastack-operator",
    version,
    about = "Runs a self-hosted media stack from MediaStack, VpnGateway and IngressRoute resources"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers (the default).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML (what is committed under crds/).
    Crd,
    /// Print the version.
    Version,
    /// GET an http:// URL and exit 0 only on a 2xx answer. The chart's
    /// `helm test` pod checks the operator's /readyz with it (the image has
    /// no shell or HTTP client of its own).
    Probe {
        /// The URL, e.g. http://mediastack-operator.mediastack-system.svc:8080/readyz.
        url: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 10)]
        timeout_seconds: u64,
    },
}

#[derive(Args, Default)]
struct RunArgs {
    /// Address of /livez, /readyz and /metrics.
    #[arg(long, env = "MEDIASTACK_LISTEN", default_value = "0.0.0.0:8080")]
    listen: Option<SocketAddr>,
    /// Watch only this namespace (default: all).
    #[arg(long, env = "MEDIASTACK_NAMESPACE")]
    namespace: Option<String>,
    /// Pod and service CIDRs reachable outside the VPN tunnel (comma-separated);
    /// discovered from Nodes and ServiceCIDRs when unset.
    #[arg(long, env = "MEDIASTACK_CLUSTER_SUBNETS", value_delimiter = ',')]
    cluster_subnets: Vec<String>,
    /// Log as JSON.
    #[arg(long, env = "MEDIASTACK_LOG_JSON")]
    log_json: bool,
    /// Default log level (overridden by RUST_LOG).
    #[arg(long, env = "MEDIASTACK_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Elect a leader through this Lease (namespace/name); needed with more than one replica.
    #[arg(long, env = "MEDIASTACK_LEADER_LEASE")]
    leader_lease: Option<String>,
    /// Identity in the lease (default: the host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds between safety-net resyncs of healthy objects.
    #[arg(long, env = "MEDIASTACK_RESYNC_SECONDS", default_value_t = 300)]
    resync_seconds: u64,
    /// Lease duration in seconds.
    #[arg(long, env = "MEDIASTACK_LEASE_SECONDS", default_value_t = 15)]
    lease_seconds: u64,
    /// The fixed ClusterRole (shipped by the chart) granting node read, which
    /// Dozzle's ClusterRoleBinding refers to; the operator never writes ClusterRoles.
    #[arg(
        long,
        env = "MEDIASTACK_NODE_READER_ROLE",
        default_value = "mediastack-operator-node-reader"
    )]
    node_reader_role: String,
    /// The namespace the operator's pods run in (the chart sets it): the
    /// NetworkPolicies in front of the apps the wiring calls admit them.
    #[arg(long, env = "MEDIASTACK_OPERATOR_NAMESPACE")]
    operator_namespace: Option<String>,
    /// Labels of the operator's pods (comma-separated key=value), with
    /// --operator-namespace; without, every pod of that namespace is admitted.
    #[arg(long, env = "MEDIASTACK_OPERATOR_POD_LABELS", value_delimiter = ',')]
    operator_pod_labels: Vec<String>,
    #[command(flatten)]
    policy: PolicyArgs,
}

/// The admin policy (docs/security.md). Lists replace the defaults when given.
#[derive(Args, Default)]
struct PolicyArgs {
    /// Directories `storage.data.hostPath` may be (or be under), comma-separated.
    /// Default: /srv,/mnt,/media,/data,/var/mnt.
    #[arg(long, env = "MEDIASTACK_ALLOWED_HOST_PATHS", value_delimiter = ',')]
    allowed_host_path: Vec<String>,
    /// Let stacks run fail2ban (hostNetwork, NET_ADMIN; needs --allow-host-network too).
    #[arg(long, env = "MEDIASTACK_ALLOW_FAIL2BAN", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    allow_fail2ban: bool,
    /// Let pods use the node's network namespace.
    #[arg(long, env = "MEDIASTACK_ALLOW_HOST_NETWORK", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    allow_host_network: bool,
    /// Let pods mount devices of the node (`/dev/dri` for hardware transcoding).
    #[arg(long, env = "MEDIASTACK_ALLOW_HOST_DEVICES", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    allow_host_devices: bool,
    /// Let pods bind node ports (the managed Traefik's port 80).
    #[arg(long, env = "MEDIASTACK_ALLOW_HOST_PORTS", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    allow_host_ports: bool,
    /// Image repositories (or prefixes ending in `/`, or `*`) image overrides
    /// may name, comma-separated. Default: the repositories of the built-in images.
    #[arg(long, env = "MEDIASTACK_ALLOWED_IMAGES", value_delimiter = ',')]
    allowed_image: Vec<String>,
    /// Env names refused in apps' env, comma-separated. Default: DOCKER_MODS,
    /// PUID, PGID, LD_PRELOAD, LD_AUDIT, LD_LIBRARY_PATH, NODE_OPTIONS,
    /// PYTHONSTARTUP, PYTHONPATH, S6_CMD_ARG0.
    #[arg(long, env = "MEDIASTACK_REFUSED_ENV", value_delimiter = ',')]
    refused_env: Vec<String>,
    /// Env names taken out of the refused list, comma-separated.
    #[arg(long, env = "MEDIASTACK_ALLOWED_ENV", value_delimiter = ',')]
    allow_env: Vec<String>,
}

impl PolicyArgs {
    fn policy(&self) -> Policy {
        let d = Policy::default();
        let or = |given: &[String], default: Vec<String>| {
            let given: Vec<String> = given
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            if given.is_empty() { default } else { given }
        };
        Policy {
            host_path_prefixes: or(&self.allowed_host_path, d.host_path_prefixes),
            allow_fail2ban: self.allow_fail2ban,
            allow_host_ports: self.allow_host_ports,
            allow_host_network: self.allow_host_network,
            allow_host_devices: self.allow_host_devices,
            allowed_images: or(&self.allowed_image, d.allowed_images),
            refused_env: or(&self.refused_env, d.refused_env),
            allowed_env: or(&self.allow_env, Vec::new()),
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => match mediastack_operator::api::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot render CRDs: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        Some(Command::Version) => {
            println!("{}", env!("CARGO_PKG_VERSION"));
            std::process::ExitCode::SUCCESS
        }
        Some(Command::Probe {
            url,
            timeout_seconds,
        }) => probe(&url, timeout_seconds),
        Some(Command::Run(args)) => run(*args),
        None => run(RunArgs::parse_from(["run"])),
    }
}

/// `mediastack-operator probe URL`: one GET, 2xx or a failure exit code.
fn probe(url: &str, timeout_seconds: u64) -> std::process::ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(async {
                let uri: http::Uri = url.parse()?;
                let client = hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
                let answer = tokio::time::timeout(
                    std::time::Duration::from_secs(timeout_seconds),
                    client.get(uri),
                )
                .await
                .map_err(|_| anyhow::anyhow!("no answer within {timeout_seconds}s"))??;
                Ok::<_, anyhow::Error>(answer.status())
            })
        });
    match result {
        Ok(status) if status.is_success() => {
            println!("{url}: {status}");
            std::process::ExitCode::SUCCESS
        }
        Ok(status) => {
            eprintln!("{url}: {status}");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{url}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

impl RunArgs {
    fn parse_from<const N: usize>(argv: [&str; N]) -> Self {
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            args: RunArgs,
        }
        Wrap::parse_from(argv).args
    }
}

fn run(args: RunArgs) -> std::process::ExitCode {
    runtime::telemetry::init(args.log_json, &args.log_level);
    let leader_election = match args.leader_lease.as_deref().map(|l| l.split_once('/')) {
        None => None,
        Some(Some((ns, name))) => Some(LeaderElection {
            namespace: ns.into(),
            lease_name: name.into(),
            identity: args
                .identity
                .clone()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .unwrap_or_else(|| format!("mediastack-operator-{}", std::process::id())),
            duration_secs: args.lease_seconds,
        }),
        Some(None) => {
            eprintln!("--leader-lease takes namespace/name");
            return std::process::ExitCode::FAILURE;
        }
    };
    let operator = match operator_peer(args.operator_namespace.clone(), &args.operator_pod_labels) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let settings = Settings {
        listen: args
            .listen
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8080))),
        namespace: args.namespace,
        cluster_subnets: args.cluster_subnets,
        leader_election,
        resync: std::time::Duration::from_secs(args.resync_seconds),
        policy: args.policy.policy(),
        node_reader_role: args.node_reader_role.clone(),
        operator,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(runtime::run(settings)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `--operator-namespace` and `--operator-pod-labels` as a NetworkPolicy peer.
fn operator_peer(
    namespace: Option<String>,
    labels: &[String],
) -> Result<Option<mediastack_operator::render::OperatorPeer>, String> {
    let pod_labels = labels
        .iter()
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!(
                "--operator-pod-labels takes key=value pairs, not {l:?}"
            )),
        })
        .collect::<Result<std::collections::BTreeMap<_, _>, _>>()?;
    match namespace.filter(|n| !n.is_empty()) {
        Some(namespace) => Ok(Some(mediastack_operator::render::OperatorPeer {
            namespace,
            pod_labels,
        })),
        None if pod_labels.is_empty() => Ok(None),
        None => Err("--operator-pod-labels needs --operator-namespace".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::operator_peer;

    #[test]
    fn operator_peer_takes_a_namespace_and_key_value_labels() {
        let labels = [
            "app.kubernetes.io/name=mediastack-operator".to_string(),
            "app.kubernetes.io/instance=r".into(),
        ];
        let peer = operator_peer(Some("ops".into()), &labels)
            .expect("valid")
            .expect("peer");
        assert_eq!(peer.namespace, "ops");
        assert_eq!(
            peer.pod_labels.into_iter().collect::<Vec<_>>(),
            [
                ("app.kubernetes.io/instance".to_string(), "r".to_string()),
                (
                    "app.kubernetes.io/name".into(),
                    "mediastack-operator".into()
                ),
            ]
        );
        assert_eq!(operator_peer(None, &[]), Ok(None));
        assert_eq!(operator_peer(Some(String::new()), &[]), Ok(None));
        let all = operator_peer(Some("ops".into()), &[])
            .expect("valid")
            .expect("peer");
        assert!(all.pod_labels.is_empty());
        assert!(operator_peer(Some("ops".into()), &["no-equals".into()]).is_err());
        assert!(operator_peer(Some("ops".into()), &["=v".into()]).is_err());
        assert!(operator_peer(None, &labels).is_err());
    }
}
