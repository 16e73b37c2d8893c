//! `mach-latency`: one sequencer and four verifiers on loopback, blocks carrying a few transfers;
//! for each block, the time from the moment it is first visible (`eth_blockNumber`) to the moment
//! it is MACH-final (the `finalized` tag reaches it: its own certificate or a descendant's).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use serde_json::json;

use crate::common::{
    ADMIN_TOKEN, Proc, Res, Rpc, Scratch, Tools, account, bls_key_hex, chain_json, free_port, quantity, sign_transfers,
    start_sequencer, summary,
};

const VERIFIERS: usize = 4;

/// Options of the benchmark.
#[derive(Clone, Debug, clap::Args)]
pub struct Opts {
    /// Blocks measured.
    #[arg(long, default_value_t = 100)]
    pub blocks: usize,
    /// Block time, milliseconds.
    #[arg(long, default_value_t = 250)]
    pub block_ms: u64,
    /// Transfers sent per block time.
    #[arg(long, default_value_t = 4)]
    pub txs_per_block: usize,
    /// The verifiers' --poll-interval-ms (the node's default is 50).
    #[arg(long, default_value_t = 50)]
    pub verifier_poll_ms: u64,
    /// How often the client polls eth_blockNumber and the `finalized` tag, milliseconds.
    #[arg(long, default_value_t = 5)]
    pub poll_ms: u64,
}

pub async fn run(tools: &Tools, opts: &Opts) -> Res<bool> {
    tools.require_node()?;
    let scratch = Scratch::new("mach")?;
    let dir = &scratch.0;
    let senders: Vec<_> = (0..8).map(|i| account("mach", i)).collect::<Res<_>>()?;
    let funded: Vec<Address> = senders.iter().map(|s| s.address()).collect();
    let per_block = opts.txs_per_block;
    let total_blocks = opts.blocks + 40;
    let txs = sign_transfers(
        "mach",
        &senders,
        (total_blocks * per_block).div_ceil(senders.len()).max(1),
    )?;

    let (mut seq, ports) = start_sequencer(tools, dir, &chain_json(opts.block_ms, &funded, VERIFIERS)?, &[])?;
    let rpc = Rpc::new(format!("http://127.0.0.1:{}", ports.rpc))?;
    rpc.wait_ready(&mut seq, Duration::from_secs(30)).await?;
    let mut verifiers: Vec<Proc> = Vec::new();
    for i in 0..VERIFIERS {
        let key = dir.join(format!("bls-{i}.key"));
        std::fs::write(&key, format!("{}\n", bls_key_hex(i)))?;
        let args = vec![
            "--log-format=text".to_owned(),
            "verifier".to_owned(),
            format!("--config={}", dir.join("chain.json").display()),
            format!("--operator=op-{i}"),
            format!("--bls-key-file={}", key.display()),
            format!("--sequencer-url={}", rpc.url),
            format!("--data-dir={}", dir.join(format!("verifier-{i}")).display()),
            format!("--metrics-addr=127.0.0.1:{}", free_port()?),
            format!("--admin-addr=127.0.0.1:{}", free_port()?),
            format!("--admin-token-file={}", dir.join("token").display()),
            format!("--poll-interval-ms={}", opts.verifier_poll_ms),
        ];
        verifiers.push(Proc::spawn(
            &format!("verifier-{i}"),
            &tools.node,
            &args,
            &[("RUST_LOG", &crate::common::node_log_filter())],
            dir.join(format!("verifier-{i}.log")),
        )?);
    }

    // Transfers: `per_block` every block time, for the whole run (stopped when this returns).
    let feeder = AbortOnDrop({
        let rpc = rpc.clone();
        let every = Duration::from_millis(opts.block_ms);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            for chunk in txs.chunks(per_block.max(1)) {
                tick.tick().await;
                let sends = chunk
                    .iter()
                    .map(|t| rpc.call("eth_sendRawTransaction", json!([t.raw_hex])));
                for r in futures::future::join_all(sends).await {
                    if let Err(e) = r {
                        eprintln!("mach-latency: a transfer was refused: {e}");
                    }
                }
            }
        })
    });

    // Warm-up: every verifier has caught up and blocks are being finalized.
    let warm_deadline = Instant::now() + Duration::from_secs(60);
    loop {
        seq.check_alive()?;
        for v in &mut verifiers {
            v.check_alive()?;
        }
        if finalized(&rpc).await.unwrap_or(0) >= 5 {
            break;
        }
        if Instant::now() > warm_deadline {
            return Err(format!("no block finalized within 60 s:\n{}", crate::common::tail(&seq.log, 20)).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Measure.
    let start_head = rpc.block_number().await?;
    let mut seen: BTreeMap<u64, Instant> = BTreeMap::new();
    let mut final_at: BTreeMap<u64, Instant> = BTreeMap::new();
    let mut last_head = start_head;
    let limit = Duration::from_millis(opts.block_ms * (opts.blocks as u64 + 20)) + Duration::from_secs(30);
    let deadline = Instant::now() + limit;
    let poll = Duration::from_millis(opts.poll_ms);
    while Instant::now() < deadline {
        let answers = rpc
            .batch(&[
                ("eth_blockNumber", json!([])),
                ("eth_getBlockByNumber", json!(["finalized", false])),
            ])
            .await?;
        let now = Instant::now();
        let mut it = answers.into_iter();
        let head = it.next().and_then(Result::ok).map(|v| quantity(&v)).transpose()?;
        let fin = it
            .next()
            .and_then(Result::ok)
            .map(|b| quantity(&b["number"]))
            .transpose()?;
        if let Some(head) = head {
            for n in last_head + 1..=head {
                if seen.len() < opts.blocks {
                    seen.insert(n, now);
                }
            }
            last_head = last_head.max(head);
        }
        if let Some(fin) = fin {
            for (&n, _) in seen.range(..=fin) {
                final_at.entry(n).or_insert(now);
            }
        }
        if seen.len() >= opts.blocks && final_at.len() >= seen.len() {
            break;
        }
        tokio::time::sleep(poll).await;
    }
    drop(feeder);
    seq.check_alive()?;

    // Which blocks got a certificate of their own, and how many transfers they carried.
    let mut own_certs = 0;
    let mut txs_in_blocks = 0;
    for &n in seen.keys() {
        let r = rpc
            .http()
            .get(format!("http://127.0.0.1:{}/admin/v1/certificate/{n}", ports.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?;
        if r.status().is_success() {
            own_certs += 1;
        }
        let b = rpc
            .call("eth_getBlockByNumber", json!([format!("{n:#x}"), false]))
            .await?;
        txs_in_blocks += b["transactions"].as_array().map_or(0, Vec::len);
    }
    let node_hist = node_histogram(rpc.http(), ports.metrics).await.unwrap_or_default();
    let lat: Vec<Duration> = seen
        .iter()
        .filter_map(|(n, s)| final_at.get(n).map(|f| f.saturating_duration_since(*s)))
        .collect();
    let missing = seen.len() - lat.len();
    drop(verifiers);
    drop(seq);

    println!(
        "== mach-latency: 1 sequencer + {VERIFIERS} verifiers (stake 100 each, quorum 67% = 3 signers), block time {} ms, \
         verifier poll {} ms, {} blocks from #{} ({:.1} transfers/block), client polls every {} ms",
        opts.block_ms,
        opts.verifier_poll_ms,
        seen.len(),
        start_head + 1,
        txs_in_blocks as f64 / seen.len().max(1) as f64,
        opts.poll_ms
    );
    let Some((p50, p99, max, mean)) = summary(lat) else {
        return Err("no block was finalized".into());
    };
    println!(
        "{:<44} | {:>8} | {:>8} | {:>8} | {:>8}",
        "block visible -> finalized tag covers it", "p50 ms", "p99 ms", "max ms", "mean ms"
    );
    println!(
        "{:<44} | {p50:>8.1} | {p99:>8.1} | {max:>8.1} | {mean:>8.1}",
        "measured by the client"
    );
    println!(
        "  {own_certs} of {} blocks have their own certificate (GET /admin/v1/certificate/{{n}} 200), the rest became final \
         through a descendant's; {missing} never finalized within the run",
        seen.len()
    );
    if !node_hist.is_empty() {
        println!("  {node_hist}");
    }
    let ok = p50 <= 300.0 && p99 <= 1000.0 && missing == 0;
    println!(
        "  goal: p50 <= 300 ms ({}), p99 <= 1000 ms ({}) -> {}",
        if p50 <= 300.0 { "met" } else { "missed" },
        if p99 <= 1000.0 { "met" } else { "missed" },
        if ok { "MET" } else { "MISSED" }
    );
    Ok(ok)
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn finalized(rpc: &Rpc) -> Res<u64> {
    let b = rpc.call("eth_getBlockByNumber", json!(["finalized", false])).await?;
    quantity(&b["number"])
}

/// The sequencer's own produce -> certified histogram (blocks with their own certificate).
async fn node_histogram(http: &reqwest::Client, port: u16) -> Res<String> {
    let get = crate::common::scrape_metrics(http, port).await?;
    let sum = get("flashlayer_finalization_latency_seconds_sum");
    let count = get("flashlayer_finalization_latency_seconds_count");
    let build_sum = get("flashlayer_block_build_seconds_sum");
    let build_count = get("flashlayer_block_build_seconds_count");
    Ok(format!(
        "sequencer's own histograms (whole run): produced -> certified mean {:.1} ms over {count} certificates; \
         block build mean {:.1} ms over {build_count} blocks",
        sum / count.max(1.0) * 1e3,
        build_sum / build_count.max(1.0) * 1e3
    ))
}
