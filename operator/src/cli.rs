//! Command line of `flashlayer-operator`: `run` (the controller) and `crd` (print the CRDs).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::controller::{self, Config};
use crate::telemetry::{self, LogFormat};

/// Kubernetes operator for ephemeral (flash) rollups.
#[derive(Debug, Parser)]
#[command(name = "flashlayer-operator", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller against the cluster of the current kubeconfig or service account.
    Run(RunArgs),
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Address of the /metrics, /healthz and /readyz server.
    #[arg(long, default_value = "0.0.0.0:8080", env = "FLASHLAYER_METRICS_ADDR")]
    pub metrics_addr: SocketAddr,
    /// Reconciliations of each kind that may run at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// API requests in flight at most (more wait in the operator, first come first served):
    /// each holds a connection of its own, with its buffers, until the API server answers.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub max_api_requests: u16,
    /// How often a Running rollup's height is read from its sequencer (0s disables it).
    #[arg(long, default_value = "10s")]
    pub node_status_interval: kube::core::Duration,
    /// Sequencer admin URL override with {namespace} and {name} placeholders (tests,
    /// port-forwards); by default the sequencer pod's own IP.
    #[arg(long)]
    pub node_endpoint: Option<String>,
    /// Watch only this namespace (all namespaces when unset).
    #[arg(long, env = "FLASHLAYER_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Elect a leader on a Lease so that several replicas can run safely.
    #[arg(long, action = ArgAction::Set, default_value_t = false)]
    pub leader_election: bool,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "flashlayer-operator")]
    pub lease_name: String,
    /// Identity in the Lease (the pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

/// Run a parsed command line.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Crd => {
            print!("{}", crate::crdgen::all_yaml());
            ExitCode::SUCCESS
        }
        Command::Run(args) => {
            telemetry::init(args.log_format);
            let identity = args.identity.unwrap_or_else(default_identity);
            let config = Config {
                metrics_addr: args.metrics_addr,
                concurrency: args.concurrency,
                max_api_requests: args.max_api_requests,
                node_status_interval: args.node_status_interval.into(),
                node_endpoint: args.node_endpoint,
                watch_namespace: args.watch_namespace,
                leader_election: args.leader_election,
                lease_namespace: args.lease_namespace,
                lease_name: args.lease_name,
                identity,
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("flashlayer-operator: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(controller::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "operator stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Hostname plus PID: unique enough among replicas run by hand.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}
