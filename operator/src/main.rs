//! `mediastack-operator`: CLI only. `run` (default) | `crd` | `version`.

use clap::{Parser, Subcommand};

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
    /// Print the CustomResourceDefinitions as YAML (what is committed under crds/).
    Crd,
    /// Print the version.
    Version,
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
        None => std::process::ExitCode::SUCCESS,
    }
}
