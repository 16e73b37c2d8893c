//! Command line (docs/node-api.md "How the operator starts the node") and the two role runners.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::{self, Node};
use crate::bls::SecretKey;
use crate::chain::Chain;
use crate::config::ChainConfig;
use crate::metrics::Metrics;
use crate::pool::DEFAULT_CAPACITY;
use crate::rpc;
use crate::sequencer::{Sequencer, SequencerOptions};
use crate::verifier::Verifier;

/// `flashlayer-node`: the Flashlayer rollup node.
#[derive(Debug, Parser)]
#[command(name = "flashlayer-node", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, default_value = "json", value_parser = ["json", "text"])]
    pub log_format: String,
    /// The role to run.
    #[command(subcommand)]
    pub role: Role,
}

/// The two roles.
#[derive(Debug, Subcommand)]
pub enum Role {
    /// Execute transactions, produce blocks, serve JSON-RPC, aggregate MACH attestations.
    Sequencer(SequencerArgs),
    /// Follow the sequencer, re-execute its blocks, sign attestations, raise alerts.
    Verifier(VerifierArgs),
}

/// `flashlayer-node sequencer`.
#[derive(Debug, Args)]
pub struct SequencerArgs {
    /// Chain configuration (chain.json).
    #[arg(long, default_value = "/etc/flashlayer/chain.json")]
    pub config: PathBuf,
    /// Where the chain is stored.
    #[arg(long, default_value = "/data")]
    pub data_dir: PathBuf,
    /// File holding the admin bearer token.
    #[arg(long)]
    pub admin_token_file: PathBuf,
    /// JSON-RPC listen address.
    #[arg(long, default_value = "0.0.0.0:8545")]
    pub rpc_addr: SocketAddr,
    /// Admin API listen address.
    #[arg(long, default_value = "0.0.0.0:8551")]
    pub admin_addr: SocketAddr,
    /// Metrics and health listen address.
    #[arg(long, default_value = "0.0.0.0:9100")]
    pub metrics_addr: SocketAddr,
    /// Produce no block while the pool is empty.
    #[arg(long)]
    pub skip_empty_blocks: bool,
    /// Pool capacity (transactions).
    #[arg(long, default_value_t = DEFAULT_CAPACITY)]
    pub pool_capacity: usize,
    /// Test fault: block N's header carries a wrong state root (verifiers must refuse it).
    #[arg(long, value_name = "N")]
    pub fault_corrupt_state_root_at: Option<u64>,
}

/// `flashlayer-node verifier`.
#[derive(Debug, Args)]
pub struct VerifierArgs {
    /// Chain configuration (chain.json).
    #[arg(long, default_value = "/etc/flashlayer/chain.json")]
    pub config: PathBuf,
    /// Name of the AVSOperator this verifier signs for.
    #[arg(long)]
    pub operator: String,
    /// File holding the BLS secret key (0x + 64 hex digits).
    #[arg(long)]
    pub bls_key_file: PathBuf,
    /// The sequencer's JSON-RPC URL.
    #[arg(long)]
    pub sequencer_url: String,
    /// Where the verified chain is kept.
    #[arg(long, default_value = "/data")]
    pub data_dir: PathBuf,
    /// Metrics and health listen address.
    #[arg(long, default_value = "0.0.0.0:9100")]
    pub metrics_addr: SocketAddr,
    /// Optional admin API (status, alerts); needs --admin-token-file.
    #[arg(long, requires = "admin_token_file")]
    pub admin_addr: Option<SocketAddr>,
    /// File holding the admin bearer token (with --admin-addr).
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
    /// How often to poll the sequencer for new blocks.
    #[arg(long, default_value_t = 50)]
    pub poll_interval_ms: u64,
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Chain config unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Chain could not be opened.
    #[error(transparent)]
    Chain(#[from] crate::chain::ChainError),
    /// Sequencer could not start.
    #[error(transparent)]
    Sequencer(#[from] crate::sequencer::SequencerError),
    /// Verifier could not start.
    #[error(transparent)]
    Verifier(#[from] crate::verifier::VerifierError),
    /// BLS key unusable (the message never contains the key).
    #[error("BLS key: {0}")]
    Key(#[from] crate::bls::BlsError),
    /// Admin token unusable.
    #[error("admin token file {path}: {reason}")]
    Token {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A listener could not bind.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

fn read_token(path: &Path) -> Result<String, StartError> {
    let token = std::fs::read_to_string(path).map_err(|e| StartError::Token {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let token = token.trim_end().to_owned();
    if token.is_empty() {
        return Err(StartError::Token {
            path: path.display().to_string(),
            reason: "empty".into(),
        });
    }
    Ok(token)
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

fn serve(listener: TcpListener, app: axum::Router, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
            tracing::error!(error = %e, "server failed");
        }
    });
}

fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "installing SIGTERM handler");
                    let _ = ctrl_c.await;
                    let _ = tx.send(true);
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

/// Runs the sequencer until SIGTERM/SIGINT.
pub async fn run_sequencer(args: SequencerArgs) -> Result<(), StartError> {
    let config = ChainConfig::load(&args.config)?;
    let token = read_token(&args.admin_token_file)?;
    let chain = Arc::new(Chain::open(config, &args.data_dir)?);
    let metrics = Metrics::new()?;
    let opts = SequencerOptions {
        skip_empty_blocks: args.skip_empty_blocks,
        fault_corrupt_state_root_at: args.fault_corrupt_state_root_at,
        pool_capacity: args.pool_capacity,
    };
    let seq = Sequencer::new(chain.clone(), metrics.clone(), opts)?;
    let rpc_listener = bind(args.rpc_addr).await?;
    let admin_listener = bind(args.admin_addr).await?;
    let metrics_listener = bind(args.metrics_addr).await?;
    let shutdown = shutdown_signal();
    serve(rpc_listener, rpc::router(seq.clone()), shutdown.clone());
    serve(
        admin_listener,
        admin::router(Node::Sequencer(seq.clone()), &token),
        shutdown.clone(),
    );
    serve(
        metrics_listener,
        admin::metrics_router(metrics, Arc::new(|| true)),
        shutdown.clone(),
    );
    let head = chain.head();
    tracing::info!(
        chain_id = chain.config.chain_id,
        head = head.header.number,
        hash = %head.hash,
        genesis = %chain.genesis_hash(),
        rpc = %args.rpc_addr,
        admin = %args.admin_addr,
        metrics = %args.metrics_addr,
        "sequencer started"
    );
    seq.run(shutdown).await;
    Ok(())
}

/// Runs the verifier until SIGTERM/SIGINT.
pub async fn run_verifier(args: VerifierArgs) -> Result<(), StartError> {
    let config = ChainConfig::load(&args.config)?;
    let key = SecretKey::from_file(&args.bls_key_file)?;
    let chain = Arc::new(Chain::open(config, &args.data_dir)?);
    let metrics = Metrics::new()?;
    let verifier = Verifier::new(chain.clone(), metrics.clone(), &args.operator, key, &args.sequencer_url)?;
    let shutdown = shutdown_signal();
    let metrics_listener = bind(args.metrics_addr).await?;
    let ready = verifier.clone();
    serve(
        metrics_listener,
        admin::metrics_router(metrics, Arc::new(move || ready.caught_up())),
        shutdown.clone(),
    );
    if let (Some(addr), Some(file)) = (args.admin_addr, args.admin_token_file.as_deref()) {
        let token = read_token(file)?;
        let listener = bind(addr).await?;
        serve(
            listener,
            admin::router(Node::Verifier(verifier.clone()), &token),
            shutdown.clone(),
        );
    }
    tracing::info!(
        operator = %args.operator,
        address = %verifier.address(),
        sequencer = %args.sequencer_url,
        head = chain.head().header.number,
        "verifier started"
    );
    verifier
        .run(Duration::from_millis(args.poll_interval_ms.max(10)), shutdown)
        .await;
    Ok(())
}

/// Parses nothing; runs the role `cli` names.
pub async fn run(cli: Cli) -> Result<(), StartError> {
    match cli.role {
        Role::Sequencer(args) => run_sequencer(args).await,
        Role::Verifier(args) => run_verifier(args).await,
    }
}
