//! What every benchmark shares: processes on 127.0.0.1 (killed on drop), free ports, tool paths,
//! a small JSON-RPC client, pre-signed transfers, and percentiles.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::network::TxSignerSync;
use alloy::primitives::{Address, B256, TxKind, U256, keccak256};
use alloy::signers::local::PrivateKeySigner;
use flashlayer_node::bls::SecretKey;
use serde_json::{Value, json};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Res<T> = Result<T, BoxError>;

/// The rollup's chain id; anvil gets the same one so the same signed bytes are valid on both.
pub const CHAIN_ID: u64 = 901_337;
pub const GAS_LIMIT: u64 = 30_000_000;
pub const ADMIN_TOKEN: &str = "bench-admin-token";
/// Fee cap of every benchmark transaction: far above both chains' base fee (1 gwei at start).
const MAX_FEE: u128 = 20_000_000_000;
const TIP: u128 = 1_000_000_000;

/// Where the binaries are.
#[derive(Clone, Debug)]
pub struct Tools {
    pub node: PathBuf,
    pub bench_bls: PathBuf,
    pub anvil: PathBuf,
}

impl Tools {
    /// `flashlayer-node` and `bench-bls` next to this executable (target/release), anvil from
    /// `$ANVIL` or the npm cache the node tests use.
    pub fn locate() -> Self {
        let dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        let anvil = std::env::var_os("ANVIL").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/flashlayer/npm/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
        });
        Self {
            node: std::env::var_os("FLASHLAYER_NODE").map_or_else(|| dir.join("flashlayer-node"), PathBuf::from),
            bench_bls: dir.join("bench-bls"),
            anvil,
        }
    }

    pub fn require(path: &Path, hint: &str) -> Res<()> {
        if path.exists() {
            Ok(())
        } else {
            Err(format!("{} not found; {hint}", path.display()).into())
        }
    }

    pub fn require_node(&self) -> Res<()> {
        Self::require(
            &self.node,
            "build it first: cargo build --release -p flashlayer-node -p flashlayer-bench (or use bench/run)",
        )
    }

    pub fn require_anvil(&self) -> Res<()> {
        Self::require(
            &self.anvil,
            "install it: npm install --no-audit --no-fund --prefix \"$HOME/.cache/flashlayer/npm\" \
             @foundry-rs/anvil-linux-amd64 (or set $ANVIL)",
        )
    }
}

/// A scratch directory removed on drop (kept with FLASHLAYER_BENCH_KEEP=1).
#[derive(Debug)]
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Res<Self> {
        let dir = std::env::temp_dir().join(format!("flashlayer-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("FLASHLAYER_BENCH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            eprintln!("kept {}", self.0.display());
        }
    }
}

/// A child process, killed (and reaped) when dropped, also on error paths and panics.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, program: &Path, args: &[String], envs: &[(&str, &str)], log: PathBuf) -> Res<Self> {
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", program.display()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process already exited (with the tail of its log).
    pub fn check_alive(&mut self) -> Res<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Err(format!("{} exited ({status}):\n{}", self.name, tail(&self.log, 20)).into());
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

pub fn free_port() -> Res<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A JSON-RPC client (one per target; the same code for the sequencer and anvil).
#[derive(Clone, Debug)]
pub struct Rpc {
    http: reqwest::Client,
    pub url: String,
}

impl Rpc {
    pub fn new(url: String) -> Res<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(512)
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { http, url })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Posts a ready JSON body; returns the decoded response.
    pub async fn post(&self, body: String) -> Res<Value> {
        let resp = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        Ok(resp.json::<Value>().await?)
    }

    pub async fn call(&self, method: &str, params: Value) -> Res<Value> {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }).to_string();
        let v = self.post(body).await?;
        match v.get("error") {
            Some(e) => Err(format!("{method}: {e}").into()),
            None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
        }
    }

    /// A batch; the answers in call order (an error object becomes `Err`).
    pub async fn batch(&self, calls: &[(&str, Value)]) -> Res<Vec<Result<Value, String>>> {
        let body: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, (m, p))| json!({ "jsonrpc": "2.0", "id": i, "method": m, "params": p }))
            .collect();
        let v = self.post(Value::Array(body).to_string()).await?;
        let items = v.as_array().ok_or_else(|| format!("batch answered {v}"))?;
        let mut out: Vec<Result<Value, String>> = vec![Err("no answer".into()); calls.len()];
        for item in items {
            let Some(i) = item.get("id").and_then(Value::as_u64).map(|i| i as usize) else {
                continue;
            };
            if let Some(slot) = out.get_mut(i) {
                *slot = match item.get("error") {
                    Some(e) => Err(e.to_string()),
                    None => Ok(item.get("result").cloned().unwrap_or(Value::Null)),
                };
            }
        }
        Ok(out)
    }

    pub async fn block_number(&self) -> Res<u64> {
        quantity(&self.call("eth_blockNumber", json!([])).await?)
    }

    /// Waits until `eth_chainId` answers (the process is up).
    pub async fn wait_ready(&self, proc_: &mut Proc, within: Duration) -> Res<u64> {
        let deadline = Instant::now() + within;
        loop {
            proc_.check_alive()?;
            if let Ok(v) = self.call("eth_chainId", json!([])).await {
                return quantity(&v);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not answer within {within:?}:\n{}",
                    proc_.name,
                    tail(&proc_.log, 20)
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn quantity(v: &Value) -> Res<u64> {
    match v {
        Value::String(s) => Ok(u64::from_str_radix(s.trim_start_matches("0x"), 16)?),
        Value::Number(n) => n.as_u64().ok_or_else(|| format!("not a u64: {n}").into()),
        other => Err(format!("not a quantity: {other}").into()),
    }
}

/// A deterministic funded account.
pub fn account(label: &str, i: usize) -> Res<PrivateKeySigner> {
    let seed = keccak256(format!("flashlayer-bench/{label}/{i}"));
    Ok(PrivateKeySigner::from_bytes(&seed)?)
}

/// A fresh recipient per transfer (so every block also inserts new accounts into the trie).
fn recipient(label: &str, i: usize) -> Address {
    Address::from_slice(&keccak256(format!("flashlayer-bench/to/{label}/{i}"))[12..])
}

/// One pre-signed EIP-1559 transfer.
#[derive(Clone, Debug)]
pub struct Transfer {
    pub hash: B256,
    pub raw_hex: String,
}

/// `per_sender` transfers from each of `senders`, ordered nonce-major (every sender's nonce 0,
/// then every sender's nonce 1, ...) so a bounded window of concurrent sends never holds two
/// transactions of one sender when `senders` > concurrency.
pub fn sign_transfers(label: &str, senders: &[PrivateKeySigner], per_sender: usize) -> Res<Vec<Transfer>> {
    let mut out = Vec::with_capacity(senders.len() * per_sender);
    for nonce in 0..per_sender {
        for signer in senders {
            let i = out.len();
            let mut tx = TxEip1559 {
                chain_id: CHAIN_ID,
                nonce: nonce as u64,
                gas_limit: 21_000,
                max_fee_per_gas: MAX_FEE,
                max_priority_fee_per_gas: TIP,
                to: TxKind::Call(recipient(label, i)),
                value: U256::from(1),
                access_list: Default::default(),
                input: Default::default(),
            };
            let sig = signer.sign_transaction_sync(&mut tx)?;
            let env: TxEnvelope = tx.into_signed(sig).into();
            out.push(Transfer {
                hash: *env.tx_hash(),
                raw_hex: format!("0x{}", hex::encode(env.encoded_2718())),
            });
        }
    }
    Ok(out)
}

/// The BLS key of benchmark operator `i` (fixed scalars, as in node/tests/cluster.rs).
pub fn bls_key_hex(i: usize) -> String {
    format!("0x{:02x}{}", i + 1, "2a".repeat(31))
}

/// chain.json for the node (docs/node-api.md): `funded` get 10^24 wei each; `operators` BLS
/// operators with equal stake.
pub fn chain_json(block_ms: u64, funded: &[Address], operators: usize) -> Res<String> {
    let alloc: serde_json::Map<String, Value> = funded
        .iter()
        .map(|a| (format!("{a:#x}"), json!({ "balance": "1000000000000000000000000" })))
        .collect();
    let ops = (0..operators)
        .map(|i| {
            let sk = SecretKey::from_hex(&bls_key_hex(i))?;
            Ok(json!({
                "index": i, "name": format!("op-{i}"),
                "address": format!("{:#x}", Address::with_last_byte(0xa0 + i as u8)),
                "stake": 100,
                "blsPublicKey": { "g1": sk.public_g1().to_hex(), "g2": sk.public_g2().to_hex() },
            }))
        })
        .collect::<Res<Vec<Value>>>()?;
    let config = json!({
        "chainId": CHAIN_ID,
        "rollupId": format!("{:#x}", B256::repeat_byte(0x42)),
        "blockTimeMs": block_ms,
        "gasLimit": GAS_LIMIT,
        "genesis": { "alloc": alloc },
        "quorumStakePercent": 67,
        "operators": ops,
    });
    Ok(serde_json::to_string_pretty(&config)?)
}

/// RUST_LOG of the nodes: `info` (their default), or `$FLASHLAYER_BENCH_NODE_LOG`.
pub fn node_log_filter() -> String {
    std::env::var("FLASHLAYER_BENCH_NODE_LOG").unwrap_or_else(|_| "info".to_owned())
}

/// Arguments of a `flashlayer-node sequencer` on loopback.
pub struct SequencerPorts {
    pub rpc: u16,
    pub admin: u16,
    pub metrics: u16,
}

pub fn start_sequencer(tools: &Tools, dir: &Path, chain_json: &str, extra: &[&str]) -> Res<(Proc, SequencerPorts)> {
    std::fs::write(dir.join("chain.json"), chain_json)?;
    std::fs::write(dir.join("token"), format!("{ADMIN_TOKEN}\n"))?;
    let ports = SequencerPorts {
        rpc: free_port()?,
        admin: free_port()?,
        metrics: free_port()?,
    };
    let mut args = vec![
        "--log-format=text".to_owned(),
        "sequencer".to_owned(),
        format!("--config={}", dir.join("chain.json").display()),
        format!("--data-dir={}", dir.join("seq-data").display()),
        format!("--admin-token-file={}", dir.join("token").display()),
        format!("--rpc-addr=127.0.0.1:{}", ports.rpc),
        format!("--admin-addr=127.0.0.1:{}", ports.admin),
        format!("--metrics-addr=127.0.0.1:{}", ports.metrics),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let p = Proc::spawn(
        "sequencer",
        &tools.node,
        &args,
        &[("RUST_LOG", &node_log_filter())],
        dir.join("sequencer.log"),
    )?;
    Ok((p, ports))
}

/// Sorted latencies -> (p50, p99, max, mean) in milliseconds.
pub fn summary(mut v: Vec<Duration>) -> Option<(f64, f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| ms(v[(((v.len() as f64) * q).ceil() as usize).clamp(1, v.len()) - 1]);
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
    Some((at(0.50), at(0.99), ms(v[v.len() - 1]), mean))
}

/// The sequencer's Prometheus text, as a lookup of plain (unlabelled) sample values.
pub async fn scrape_metrics(http: &reqwest::Client, port: u16) -> Res<impl Fn(&str) -> f64> {
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(move |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    })
}
