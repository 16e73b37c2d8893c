//! Flashlayer benchmarks. They print figures; they are not timed tests. Every process they start
//! listens on 127.0.0.1 only, is bounded in time, and is killed when the benchmark ends.
//!
//! ```text
//! cargo build --release -p flashlayer-node -p flashlayer-bench
//! cargo run --release -p flashlayer-bench -- sequencer-vs-anvil|mach-latency|bls|all
//! bench/run [all|sequencer-vs-anvil|mach-latency|bls] [options]     # builds, then runs
//! ```

mod common;
mod cpu;
mod mach;
mod scale;
mod seq_anvil;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use common::{Res, Tools};

/// Flashlayer benchmarks.
#[derive(Debug, Parser)]
#[command(name = "flashlayer-bench")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Our sequencer vs anvil on the same pre-signed transfers: tx/s and send->receipt latency.
    SequencerVsAnvil(seq_anvil::Opts),
    /// MACH fast finality with 4 verifiers: block visible -> finalized.
    MachLatency(mach::Opts),
    /// BLS aggregate-verify time for 4..100 signers (runs node's bench-bls).
    Bls(BlsOpts),
    /// Hundreds to thousands of Discard FlashRollups on the local kwok cluster: launch time vs
    /// a plain client, peak RSS, steady-state writes, TTL accuracy, teardown (bench/run scale).
    Scale(scale::Opts),
    /// The first three, with default options (not scale: it needs the local cluster).
    All,
}

#[derive(Clone, Debug, clap::Args)]
struct BlsOpts {
    /// Runs per signer count.
    #[arg(long, default_value_t = 51)]
    runs: usize,
}

/// Longest any one benchmark may take.
const LIMIT: Duration = Duration::from_secs(600);

fn bls(tools: &Tools, opts: &BlsOpts) -> Res<bool> {
    Tools::require(
        &tools.bench_bls,
        "build it first: cargo build --release -p flashlayer-node -p flashlayer-bench (or use bench/run)",
    )?;
    println!("== bls: {} {}", tools.bench_bls.display(), opts.runs);
    let status = std::process::Command::new(&tools.bench_bls)
        .arg(opts.runs.to_string())
        .status()?;
    Ok(status.success())
}

async fn timed<F: std::future::Future<Output = Res<bool>>>(name: &str, f: F) -> Res<bool> {
    tokio::select! {
        r = tokio::time::timeout(LIMIT, f) => r.map_err(|_| format!("{name}: gave up after {LIMIT:?}"))?,
        _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
    }
}

async fn run(cli: Cli) -> Res<bool> {
    let tools = Tools::locate();
    match cli.bench {
        Bench::SequencerVsAnvil(o) => timed("sequencer-vs-anvil", seq_anvil::run(&tools, &o)).await,
        Bench::MachLatency(o) => timed("mach-latency", mach::run(&tools, &o)).await,
        Bench::Bls(o) => bls(&tools, &o),
        // Bounded by its own waits (each up to 30 min), not by LIMIT: 3,000 rollups take long.
        Bench::Scale(o) => tokio::select! {
            r = scale::run(&o) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
        },
        Bench::All => {
            let a = timed(
                "sequencer-vs-anvil",
                seq_anvil::run(&tools, &seq_anvil::Opts::parse_defaults()),
            )
            .await?;
            println!();
            let b = timed("mach-latency", mach::run(&tools, &mach::Opts::parse_defaults())).await?;
            println!();
            let c = bls(&tools, &BlsOpts { runs: 51 })?;
            Ok(a && b && c)
        }
    }
}

/// Default options of a benchmark, as if given no flags.
trait Defaults: Sized {
    fn parse_defaults() -> Self;
}

impl<T: clap::Args> Defaults for T {
    fn parse_defaults() -> Self {
        #[derive(Parser)]
        struct Wrap<A: clap::Args> {
            #[command(flatten)]
            inner: A,
        }
        match Wrap::<T>::try_parse_from(["defaults"]) {
            Ok(w) => w.inner,
            Err(e) => e.exit(),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        // A missed goal is a figure, not a failure: exit 0, the table says MISSED.
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flashlayer-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
