//! `sequencer-vs-anvil`: the same pre-signed EIP-1559 transfers sent to our sequencer and to
//! anvil (same chain id, same funded accounts, same block time, same gas limit), one after the
//! other, with the same client: accepted tx/s, included tx/s, send -> receipt latency.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::common::{
    CHAIN_ID, GAS_LIMIT, Proc, Res, Rpc, Scratch, Tools, Transfer, account, chain_json, free_port, sign_transfers,
    start_sequencer, summary,
};

/// Options of the benchmark.
#[derive(Clone, Debug, clap::Args)]
pub struct Opts {
    /// Measured transfers per side.
    #[arg(long, default_value_t = 5000)]
    pub txs: usize,
    /// Funded sender accounts the measured transfers are spread over.
    #[arg(long, default_value_t = 250)]
    pub senders: usize,
    /// eth_sendRawTransaction requests in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Block time of both chains, milliseconds.
    #[arg(long, default_value_t = 100)]
    pub block_ms: u64,
    /// Warm-up transfers per side (from other accounts), not measured.
    #[arg(long, default_value_t = 500)]
    pub warmup: usize,
    /// How often the client polls for new blocks (then fetches their receipts), milliseconds.
    #[arg(long, default_value_t = 5)]
    pub poll_ms: u64,
    /// Rounds (each round runs anvil, then the sequencer).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Sequencer,
    Anvil,
}

/// What one load run measured.
#[derive(Debug, Default)]
struct LoadResult {
    sent: usize,
    accepted: usize,
    receipts: usize,
    failed_status: usize,
    errors: BTreeMap<String, usize>,
    accept_secs: f64,
    include_secs: f64,
    latencies: Vec<Duration>,
    blocks: usize,
    max_block_txs: usize,
    node_note: String,
}

impl LoadResult {
    fn accepted_tps(&self) -> f64 {
        self.accepted as f64 / self.accept_secs.max(1e-9)
    }
    fn included_tps(&self) -> f64 {
        self.receipts as f64 / self.include_secs.max(1e-9)
    }
}

type Receipts = Arc<Mutex<Vec<Option<(Instant, bool)>>>>;

struct Watched {
    blocks: usize,
    max_block_txs: usize,
    last: Option<Instant>,
}

/// Follows new blocks from `from` on, and for each of our transactions in them fetches the
/// receipt (JSON-RPC batches of 100) and notes when it arrived and whether its status is 1.
async fn watch(
    rpc: Rpc,
    index: Arc<HashMap<B256, usize>>,
    receipts: Receipts,
    expected: Arc<AtomicUsize>,
    from: u64,
    poll: Duration,
    deadline: Instant,
) -> Res<Watched> {
    let mut next = from + 1;
    let mut pending: Vec<B256> = Vec::new();
    let mut got = 0usize;
    let mut w = Watched {
        blocks: 0,
        max_block_txs: 0,
        last: None,
    };
    loop {
        if got >= expected.load(Ordering::Acquire) || Instant::now() > deadline {
            return Ok(w);
        }
        if let Ok(head) = rpc.block_number().await {
            while next <= head {
                let b = rpc
                    .call("eth_getBlockByNumber", json!([format!("{next:#x}"), false]))
                    .await?;
                let ours: Vec<B256> = b["transactions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|h| h.as_str()?.parse::<B256>().ok())
                    .filter(|h| index.contains_key(h))
                    .collect();
                if !ours.is_empty() {
                    w.blocks += 1;
                    w.max_block_txs = w.max_block_txs.max(ours.len());
                }
                pending.extend(ours);
                next += 1;
            }
        }
        let mut retry = Vec::new();
        for chunk in pending.chunks(100) {
            let calls: Vec<(&str, Value)> = chunk
                .iter()
                .map(|h| ("eth_getTransactionReceipt", json!([format!("{h:#x}")])))
                .collect();
            let answers = rpc.batch(&calls).await?;
            let now = Instant::now();
            let mut r = receipts.lock().unwrap_or_else(PoisonError::into_inner);
            for (h, a) in chunk.iter().zip(answers) {
                match a {
                    Ok(v) if !v.is_null() => {
                        if let Some(&i) = index.get(h)
                            && r[i].is_none()
                        {
                            r[i] = Some((now, v["status"] == "0x1"));
                            got += 1;
                            w.last = Some(now);
                        }
                    }
                    _ => retry.push(*h),
                }
            }
        }
        pending = retry;
        tokio::time::sleep(poll).await;
    }
}

/// Sends `txs` with at most `concurrency` requests in flight and waits for their receipts.
async fn load(rpc: &Rpc, txs: &[Transfer], concurrency: usize, poll: Duration, limit: Duration) -> Res<LoadResult> {
    let index: Arc<HashMap<B256, usize>> = Arc::new(txs.iter().enumerate().map(|(i, t)| (t.hash, i)).collect());
    let receipts: Receipts = Arc::new(Mutex::new(vec![None; txs.len()]));
    let expected = Arc::new(AtomicUsize::new(usize::MAX));
    let from = rpc.block_number().await?;
    let deadline = Instant::now() + limit;
    let watcher = tokio::spawn(watch(
        rpc.clone(),
        index.clone(),
        receipts.clone(),
        expected.clone(),
        from,
        poll,
        deadline,
    ));
    let bodies: Vec<String> = txs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                r#"{{"jsonrpc":"2.0","id":{i},"method":"eth_sendRawTransaction","params":["{}"]}}"#,
                t.raw_hex
            )
        })
        .collect();
    let t0 = Instant::now();
    let sends: Vec<(usize, Instant, Result<(), String>)> = futures::stream::iter(bodies.into_iter().enumerate())
        .map(|(i, body)| {
            let rpc = rpc.clone();
            async move {
                let start = Instant::now();
                let r = match rpc.post(body).await {
                    Ok(v) if v.get("result").is_some_and(Value::is_string) => Ok(()),
                    Ok(v) => Err(v["error"]["message"].as_str().unwrap_or("no result").to_owned()),
                    Err(e) => Err(e.to_string()),
                };
                (i, start, r)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let accept_secs = t0.elapsed().as_secs_f64();
    let mut out = LoadResult {
        sent: txs.len(),
        accept_secs,
        ..Default::default()
    };
    let mut started = vec![None; txs.len()];
    for (i, start, r) in sends {
        match r {
            Ok(()) => {
                out.accepted += 1;
                started[i] = Some(start);
            }
            Err(e) => {
                let key: String = e.chars().take(70).collect();
                *out.errors.entry(key).or_default() += 1;
            }
        }
    }
    expected.store(out.accepted, Ordering::Release);
    let watched = watcher.await.map_err(|e| e.to_string())??;
    out.blocks = watched.blocks;
    out.max_block_txs = watched.max_block_txs;
    out.include_secs = watched.last.map_or(0.0, |l| (l - t0).as_secs_f64());
    let r = receipts.lock().unwrap_or_else(PoisonError::into_inner);
    for (i, slot) in r.iter().enumerate() {
        if let (Some((at, ok)), Some(start)) = (slot, started[i]) {
            out.receipts += 1;
            if !ok {
                out.failed_status += 1;
            }
            out.latencies.push(*at - start);
        }
    }
    Ok(out)
}

const FUND_HEX: &str = "0xd3c21bcecceda1000000"; // 10^24 wei, as in the node's genesis alloc

async fn run_side(
    side: Side,
    tools: &Tools,
    opts: &Opts,
    funded: &[Address],
    warm: &[Transfer],
    measured: &[Transfer],
) -> Res<LoadResult> {
    let scratch = Scratch::new(match side {
        Side::Sequencer => "seq",
        Side::Anvil => "anvil",
    })?;
    let (mut proc_, rpc, metrics_port) = match side {
        Side::Sequencer => {
            let config = chain_json(opts.block_ms, funded, 4)?;
            let (p, ports) = start_sequencer(tools, &scratch.0, &config, &[])?;
            (
                p,
                Rpc::new(format!("http://127.0.0.1:{}", ports.rpc))?,
                Some(ports.metrics),
            )
        }
        Side::Anvil => {
            let port = free_port()?;
            let args = vec![
                "--host".to_owned(),
                "127.0.0.1".to_owned(),
                "--port".to_owned(),
                port.to_string(),
                "--chain-id".to_owned(),
                CHAIN_ID.to_string(),
                "--block-time".to_owned(),
                format!("{}", opts.block_ms as f64 / 1000.0),
                "--gas-limit".to_owned(),
                GAS_LIMIT.to_string(),
                "--quiet".to_owned(),
            ];
            let p = Proc::spawn("anvil", &tools.anvil, &args, &[], scratch.0.join("anvil.log"))?;
            (p, Rpc::new(format!("http://127.0.0.1:{port}"))?, None)
        }
    };
    let chain_id = rpc.wait_ready(&mut proc_, Duration::from_secs(30)).await?;
    if chain_id != CHAIN_ID {
        return Err(format!("{} reports chain id {chain_id}", proc_.name).into());
    }
    if side == Side::Anvil {
        for chunk in funded.chunks(100) {
            let calls: Vec<(&str, Value)> = chunk
                .iter()
                .map(|a| ("anvil_setBalance", json!([format!("{a:#x}"), FUND_HEX])))
                .collect();
            for r in rpc.batch(&calls).await? {
                r.map_err(|e| format!("anvil_setBalance: {e}"))?;
            }
        }
    }
    let poll = Duration::from_millis(opts.poll_ms);
    let w = load(&rpc, warm, opts.concurrency, poll, Duration::from_secs(60)).await?;
    if w.receipts != warm.len() {
        return Err(format!(
            "{}: warm-up got {} of {} receipts ({:?})",
            proc_.name,
            w.receipts,
            warm.len(),
            w.errors
        )
        .into());
    }
    let mut r = load(&rpc, measured, opts.concurrency, poll, Duration::from_secs(120)).await?;
    proc_.check_alive()?;
    if let Some(port) = metrics_port {
        r.node_note = build_time_note(rpc.http(), port).await.unwrap_or_default();
    }
    Ok(r)
}

/// Mean block build time from the sequencer's own histogram.
async fn build_time_note(http: &reqwest::Client, port: u16) -> Res<String> {
    let get = crate::common::scrape_metrics(http, port).await?;
    let (sum, count) = (
        get("flashlayer_block_build_seconds_sum"),
        get("flashlayer_block_build_seconds_count"),
    );
    Ok(format!(
        "sequencer's own histogram: {count} blocks built, mean build (execute + state root + persist) {:.1} ms",
        sum / count.max(1.0) * 1e3
    ))
}

pub async fn run(tools: &Tools, opts: &Opts) -> Res<bool> {
    tools.require_node()?;
    tools.require_anvil()?;
    let senders: Vec<_> = (0..opts.senders.max(1))
        .map(|i| account("sender", i))
        .collect::<Res<_>>()?;
    let warm_senders: Vec<_> = (0..50).map(|i| account("warm", i)).collect::<Res<_>>()?;
    let per_sender = opts.txs.div_ceil(senders.len());
    let signing = Instant::now();
    let mut measured = sign_transfers("m", &senders, per_sender)?;
    measured.truncate(opts.txs);
    let warm = sign_transfers("w", &warm_senders, opts.warmup.div_ceil(warm_senders.len()).max(1))?;
    let funded: Vec<Address> = senders.iter().chain(&warm_senders).map(|s| s.address()).collect();
    let anvil_version = std::process::Command::new(&tools.anvil)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_owned))
        .unwrap_or_default();
    println!(
        "== sequencer-vs-anvil: {} pre-signed EIP-1559 transfers ({} signed in {:.1} s) from {} senders, \
         {} requests in flight, block time {} ms, gas limit {} on both, {} warm-up transfers first; {}",
        measured.len(),
        measured.len() + warm.len(),
        signing.elapsed().as_secs_f64(),
        senders.len(),
        opts.concurrency,
        opts.block_ms,
        GAS_LIMIT,
        warm.len(),
        anvil_version
    );
    let mut ratios = Vec::new();
    for round in 1..=opts.rounds.max(1) {
        let anvil = run_side(Side::Anvil, tools, opts, &funded, &warm, &measured).await?;
        let ours = run_side(Side::Sequencer, tools, opts, &funded, &warm, &measured).await?;
        print_round(round, &ours, &anvil);
        ratios.push((
            ours.accepted_tps() / anvil.accepted_tps().max(1e-9),
            ours.included_tps() / anvil.included_tps().max(1e-9),
            ours.errors.is_empty() && ours.receipts == ours.accepted && ours.failed_status == 0,
        ));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let accepted = median(ratios.iter().map(|r| r.0).collect());
    let included = median(ratios.iter().map(|r| r.1).collect());
    let ok = accepted >= 3.0 && ratios.iter().all(|r| r.2);
    println!(
        "goal: accepted throughput >= 3x anvil: median over {} round(s) {accepted:.2}x (included {included:.2}x) -> {}",
        ratios.len(),
        if ok { "MET" } else { "MISSED" }
    );
    Ok(ok)
}

fn print_round(round: usize, ours: &LoadResult, anvil: &LoadResult) {
    let (lo, la) = (summary(ours.latencies.clone()), summary(anvil.latencies.clone()));
    let ratio = |a: f64, b: f64| if b > 0.0 { format!("{:.2}x", a / b) } else { "-".into() };
    println!("-- round {round}");
    println!(
        "{:<34} | {:>12} | {:>12} | {:>11}",
        "", "flashlayer", "anvil", "ours/anvil"
    );
    let row = |name: &str, a: f64, b: f64, digits: usize| {
        println!("{name:<34} | {a:>12.digits$} | {b:>12.digits$} | {:>11}", ratio(a, b));
    };
    row(
        "accepted tx/s (send phase)",
        ours.accepted_tps(),
        anvil.accepted_tps(),
        0,
    );
    row(
        "included tx/s (to last receipt)",
        ours.included_tps(),
        anvil.included_tps(),
        0,
    );
    if let (Some(o), Some(a)) = (lo, la) {
        row("send->receipt p50 ms", o.0, a.0, 1);
        row("send->receipt p99 ms", o.1, a.1, 1);
        row("send->receipt max ms", o.2, a.2, 1);
    }
    println!(
        "{:<34} | {:>12} | {:>12} |",
        "accepted/sent",
        format!("{}/{}", ours.accepted, ours.sent),
        format!("{}/{}", anvil.accepted, anvil.sent)
    );
    println!(
        "{:<34} | {:>12} | {:>12} |",
        "receipts (status 0x1)",
        ours.receipts - ours.failed_status,
        anvil.receipts - anvil.failed_status
    );
    println!(
        "{:<34} | {:>12} | {:>12} |",
        "blocks used / most txs in one",
        format!("{} / {}", ours.blocks, ours.max_block_txs),
        format!("{} / {}", anvil.blocks, anvil.max_block_txs)
    );
    for (who, r) in [("flashlayer", ours), ("anvil", anvil)] {
        for (e, n) in &r.errors {
            println!("  {who} refused {n}: {e}");
        }
    }
    if !ours.node_note.is_empty() {
        println!("  {}", ours.node_note);
    }
}
