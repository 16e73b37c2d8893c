//! Process-level tests: one sequencer and four verifiers of the real `flashlayer-node` binary on
//! 127.0.0.1, driven with the real `cast` (npm `@foundry-rs/cast-linux-amd64`). Everything listens
//! on loopback only.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::consensus::{SignableTransaction, TxEip2930, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::eips::eip2930::{AccessList, AccessListItem};
use alloy::network::TxSignerSync;
use alloy::primitives::{Address, B256, Bytes, TxKind, U256};
use alloy::signers::local::PrivateKeySigner;
use flashlayer_node::bls::SecretKey;
use serde_json::{Value, json};

/// anvil's first dev account: funded in genesis.
const DEV_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const CHAIN_ID: u64 = 901337;
const TOKEN: &str = "test-admin-token";
const VERIFIERS: usize = 4;

/// Clusters use most of the two cores; run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn cast() -> PathBuf {
    if let Ok(p) = std::env::var("CAST") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let p = PathBuf::from(home).join(".cache/flashlayer/npm/node_modules/@foundry-rs/cast-linux-amd64/bin/cast");
    assert!(
        p.exists(),
        "cast not found at {} (and $CAST is not set). Install it with:\n  \
         npm install --prefix $HOME/.cache/flashlayer/npm @foundry-rs/cast-linux-amd64 @foundry-rs/anvil-linux-amd64",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn bls_key(i: usize) -> String {
    // Fixed scalars well below the BN254 group order.
    format!("0x{:02x}{}", i + 1, "2a".repeat(31))
}

struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Cluster {
    dir: PathBuf,
    config: PathBuf,
    rpc_port: u16,
    admin_port: u16,
    metrics_port: u16,
    seq_args: Vec<String>,
    sequencer: Option<Proc>,
    verifiers: Vec<Proc>,
    verifier_admin_ports: Vec<u16>,
    verifier_metrics_ports: Vec<u16>,
    http: reqwest::Client,
}

impl Cluster {
    fn new(name: &str, extra_seq_args: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("flashlayer-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let dev: PrivateKeySigner = DEV_KEY.parse().expect("key");
        let operators: Vec<Value> = (0..VERIFIERS)
            .map(|i| {
                let sk = SecretKey::from_hex(&bls_key(i)).expect("bls key");
                json!({
                    "index": i, "name": format!("op-{i}"),
                    "address": format!("{:#x}", Address::with_last_byte(0xa0 + i as u8)),
                    "stake": 100,
                    "blsPublicKey": { "g1": sk.public_g1().to_hex(), "g2": sk.public_g2().to_hex() },
                })
            })
            .collect();
        let config = json!({
            "chainId": CHAIN_ID,
            "rollupId": format!("{:#x}", B256::repeat_byte(0x42)),
            "blockTimeMs": 200,
            "gasLimit": 30000000,
            "genesis": { "alloc": { format!("{:#x}", dev.address()): { "balance": "1000000000000000000000" } } },
            "quorumStakePercent": 67,
            "operators": operators,
        });
        let config_path = dir.join("chain.json");
        std::fs::write(&config_path, serde_json::to_string_pretty(&config).expect("json")).expect("write");
        std::fs::write(dir.join("token"), format!("{TOKEN}\n")).expect("token");
        for i in 0..VERIFIERS {
            std::fs::write(dir.join(format!("bls-{i}.key")), format!("{}\n", bls_key(i))).expect("key");
        }
        let (rpc_port, admin_port, metrics_port) = (free_port(), free_port(), free_port());
        let seq_args = [
            "sequencer".to_owned(),
            format!("--config={}", config_path.display()),
            format!("--data-dir={}", dir.join("seq-data").display()),
            format!("--admin-token-file={}", dir.join("token").display()),
            format!("--rpc-addr=127.0.0.1:{rpc_port}"),
            format!("--admin-addr=127.0.0.1:{admin_port}"),
            format!("--metrics-addr=127.0.0.1:{metrics_port}"),
        ]
        .into_iter()
        .chain(extra_seq_args.iter().map(|s| (*s).to_owned()))
        .collect();
        Self {
            dir,
            config: config_path,
            rpc_port,
            admin_port,
            metrics_port,
            seq_args,
            sequencer: None,
            verifiers: Vec::new(),
            verifier_admin_ports: (0..VERIFIERS).map(|_| free_port()).collect(),
            verifier_metrics_ports: (0..VERIFIERS).map(|_| free_port()).collect(),
            http: reqwest::Client::builder().no_proxy().build().expect("http"),
        }
    }

    fn spawn(&self, name: &str, args: &[String]) -> Proc {
        let log = self.dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_flashlayer-node"))
            .arg("--log-format=text")
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawn flashlayer-node");
        Proc {
            name: name.to_owned(),
            child,
            log,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rpc_port)
    }

    async fn start_sequencer(&mut self) {
        let p = self.spawn("sequencer", &self.seq_args);
        self.sequencer = Some(p);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.rpc("eth_chainId", json!([])).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("sequencer did not start:\n{}", self.logs());
    }

    fn stop_sequencer(&mut self) {
        if let Some(mut p) = self.sequencer.take() {
            p.kill();
        }
    }

    fn start_verifiers(&mut self) {
        for i in 0..VERIFIERS {
            let args = vec![
                "verifier".to_owned(),
                format!("--config={}", self.config.display()),
                format!("--operator=op-{i}"),
                format!("--bls-key-file={}", self.dir.join(format!("bls-{i}.key")).display()),
                format!("--sequencer-url={}", self.url()),
                format!("--data-dir={}", self.dir.join(format!("verifier-{i}")).display()),
                format!("--metrics-addr=127.0.0.1:{}", self.verifier_metrics_ports[i]),
                format!("--admin-addr=127.0.0.1:{}", self.verifier_admin_ports[i]),
                format!("--admin-token-file={}", self.dir.join("token").display()),
            ];
            let p = self.spawn(&format!("verifier-{i}"), &args);
            self.verifiers.push(p);
        }
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for p in self.sequencer.iter().chain(self.verifiers.iter()) {
            let text = std::fs::read_to_string(&p.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            out.push_str(&format!("--- {} ({})\n", p.name, p.log.display()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    async fn rpc(&self, method: &str, params: Value) -> Result<Value, String> {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let resp = self
            .http
            .post(self.url())
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let v: Value = resp.json().await.map_err(|e| e.to_string())?;
        match v.get("error") {
            Some(e) => Err(e.to_string()),
            None => Ok(v["result"].clone()),
        }
    }

    async fn admin(&self, method: reqwest::Method, path: &str, port: u16) -> (u16, Value) {
        let resp = self
            .http
            .request(method, format!("http://127.0.0.1:{port}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("admin request");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    fn cast(&self, args: &[&str]) -> String {
        let out = Command::new(cast())
            .args(args)
            .env("FOUNDRY_DISABLE_NIGHTLY_WARNING", "1")
            .output()
            .expect("run cast");
        assert!(
            out.status.success(),
            "cast {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn cast_json(&self, args: &[&str]) -> Value {
        let text = self.cast(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("cast {args:?} printed non-JSON ({e}): {text}"))
    }

    async fn head(&self) -> u64 {
        let v = self.rpc("eth_blockNumber", json!([])).await.expect("blockNumber");
        u64::from_str_radix(v.as_str().unwrap_or("0x0").trim_start_matches("0x"), 16).expect("hex")
    }

    async fn block(&self, tag: &str) -> Value {
        self.rpc("eth_getBlockByNumber", json!([tag, false]))
            .await
            .expect("block")
    }

    async fn finalized(&self) -> u64 {
        let b = self.block("finalized").await;
        u64::from_str_radix(b["number"].as_str().unwrap_or("0x0").trim_start_matches("0x"), 16).expect("hex")
    }

    async fn wait_finalized(&self, at_least: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.finalized().await >= at_least {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "finalized did not reach {at_least} (is {}):\n{}",
            self.finalized().await,
            self.logs()
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_sequencer();
        self.verifiers.clear();
        // Logs stay behind when a test fails, or when asked to (FLASHLAYER_KEEP_TEST_DIR=1).
        if !std::thread::panicking() && std::env::var_os("FLASHLAYER_KEEP_TEST_DIR").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn hex_u64(v: &Value) -> u64 {
    match v {
        Value::String(s) => u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex quantity"),
        Value::Number(n) => n.as_u64().expect("u64"),
        other => panic!("not a quantity: {other}"),
    }
}

/// A counter contract: every call increments slot 0, logs the new value and returns it.
fn counter_init_code() -> String {
    let topic = "11".repeat(32);
    let runtime = format!("600054600101806000556000527f{topic}60206000a160206000f3");
    let len = runtime.len() / 2;
    format!("0x60{len:02x}600c60003960{len:02x}6000f3{runtime}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cast_transactions_finalize_seal_and_restart() {
    let _serial = SERIAL.lock().await;
    let cast_path = cast();
    assert!(cast_path.exists());
    let mut c = Cluster::new("main", &[]);
    c.start_sequencer().await;
    c.start_verifiers();
    let url = c.url();
    let to = "0x00000000000000000000000000000000000000bb";

    // EIP-1559 transfer, then a legacy one, with cast; receipts checked.
    let r = c.cast_json(&[
        "send",
        "--rpc-url",
        &url,
        "--private-key",
        DEV_KEY,
        "--json",
        to,
        "--value",
        "12345",
    ]);
    assert_eq!(r["status"], "0x1", "{r}");
    assert_eq!(r["type"], "0x2");
    let first_block = hex_u64(&r["blockNumber"]);
    let r = c.cast_json(&[
        "send",
        "--rpc-url",
        &url,
        "--private-key",
        DEV_KEY,
        "--json",
        "--legacy",
        to,
        "--value",
        "5",
    ]);
    assert_eq!(r["status"], "0x1", "{r}");
    assert_eq!(r["type"], "0x0");
    assert_eq!(c.cast(&["balance", "--rpc-url", &url, to]), "12350");

    // EIP-2930, signed here and published with cast.
    let signer: PrivateKeySigner = DEV_KEY.parse().expect("key");
    let nonce: u64 = c
        .cast(&["nonce", "--rpc-url", &url, &format!("{:#x}", signer.address())])
        .parse()
        .expect("nonce");
    let mut tx = TxEip2930 {
        chain_id: CHAIN_ID,
        nonce,
        gas_price: 2_000_000_000,
        gas_limit: 50_000,
        to: TxKind::Call(to.parse().expect("addr")),
        value: U256::from(1),
        input: Bytes::new(),
        access_list: AccessList(vec![AccessListItem {
            address: to.parse().expect("addr"),
            storage_keys: vec![B256::ZERO],
        }]),
    };
    let sig = signer.sign_transaction_sync(&mut tx).expect("sign");
    let env: TxEnvelope = tx.into_signed(sig).into();
    let raw = format!("0x{}", hex::encode(env.encoded_2718()));
    let r = c.cast_json(&["publish", "--rpc-url", &url, "--json", &raw]);
    let hash = r["transactionHash"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| r.to_string());
    let r = c.cast_json(&["receipt", "--rpc-url", &url, "--json", hash.trim_matches('"')]);
    assert_eq!(r["status"], "0x1", "{r}");
    assert_eq!(r["type"], "0x1");

    // A contract: deploy, call, read state and logs back.
    let r = c.cast_json(&[
        "send",
        "--rpc-url",
        &url,
        "--private-key",
        DEV_KEY,
        "--json",
        "--create",
        &counter_init_code(),
    ]);
    assert_eq!(r["status"], "0x1", "{r}");
    let contract = r["contractAddress"].as_str().expect("contractAddress").to_owned();
    let r = c.cast_json(&["send", "--rpc-url", &url, "--private-key", DEV_KEY, "--json", &contract]);
    assert_eq!(r["status"], "0x1", "{r}");
    assert_eq!(r["logs"].as_array().map(Vec::len), Some(1), "{r}");
    let call_block = hex_u64(&r["blockNumber"]);
    assert_eq!(c.cast(&["call", "--rpc-url", &url, &contract, "f()(uint256)"]), "2");
    assert_eq!(
        c.cast(&["storage", "--rpc-url", &url, &contract, "0"]),
        format!("0x{:064x}", 1)
    );

    // MACH: the block with the contract call becomes finalized, with a certificate.
    c.wait_finalized(call_block).await;
    assert!(first_block <= call_block);
    let fin = c.cast_json(&["block", "--rpc-url", &url, "finalized", "--json"]);
    let fin_number = hex_u64(&fin["number"]);
    let (status, cert) = c
        .admin(
            reqwest::Method::GET,
            &format!("/admin/v1/certificate/{fin_number}"),
            c.admin_port,
        )
        .await;
    assert_eq!(status, 200, "{cert}");
    assert_eq!(cert["blockHash"], fin["hash"]);
    assert_eq!(cert["stateRoot"], fin["stateRoot"]);
    assert!(cert["signers"].as_array().map_or(0, Vec::len) >= 3, "{cert}");

    // Restart (kill -9) before sealing: same head, same root, and blocks continue.
    let head_before = c.head().await;
    let block_before = c
        .rpc("eth_getBlockByNumber", json!([format!("{head_before:#x}"), false]))
        .await
        .expect("b");
    c.stop_sequencer();
    c.start_sequencer().await;
    let again = c
        .rpc("eth_getBlockByNumber", json!([format!("{head_before:#x}"), false]))
        .await
        .expect("b");
    assert_eq!(again["hash"], block_before["hash"]);
    assert_eq!(again["stateRoot"], block_before["stateRoot"]);
    assert!(c.head().await >= head_before);
    assert_eq!(c.cast(&["balance", "--rpc-url", &url, to]), "12351");
    let r = c.cast_json(&[
        "send",
        "--rpc-url",
        &url,
        "--private-key",
        DEV_KEY,
        "--json",
        to,
        "--value",
        "1",
    ]);
    assert_eq!(r["status"], "0x1", "{r}");
    c.wait_finalized(hex_u64(&r["blockNumber"])).await;

    // Seal: final block, idempotent, transactions refused, certificate of the final block.
    let (status, sealed) = c.admin(reqwest::Method::POST, "/admin/v1/seal", c.admin_port).await;
    assert_eq!(status, 200, "{sealed}");
    let (status, again) = c.admin(reqwest::Method::POST, "/admin/v1/seal", c.admin_port).await;
    assert_eq!(status, 200);
    assert_eq!(sealed, again);
    let final_number = sealed["number"].as_u64().expect("number");
    let out = Command::new(cast())
        .args(["send", "--rpc-url", &url, "--private-key", DEV_KEY, to, "--value", "1"])
        .output()
        .expect("cast");
    assert!(!out.status.success(), "a sealed rollup accepted a transaction");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sealed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.wait_finalized(final_number).await;
    let (status, cert) = c
        .admin(
            reqwest::Method::GET,
            &format!("/admin/v1/certificate/{final_number}"),
            c.admin_port,
        )
        .await;
    assert_eq!(status, 200, "{cert}");
    assert_eq!(cert["stateRoot"], sealed["stateRoot"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(c.head().await, final_number, "blocks after the seal");

    // Restart after the seal: still sealed, same final block, certificate still served.
    c.stop_sequencer();
    c.start_sequencer().await;
    let (status, st) = c.admin(reqwest::Method::GET, "/admin/v1/status", c.admin_port).await;
    assert_eq!(status, 200);
    assert_eq!(st["role"], "sequencer");
    assert_eq!(st["sealed"], true);
    assert_eq!(st["finalBlock"], sealed);
    assert_eq!(st["height"], final_number);
    assert!(st["finalizedHeight"].as_u64() >= Some(final_number), "{st}");
    assert_eq!(st["alerts"], 0);
    let (status, _) = c.admin(reqwest::Method::POST, "/admin/v1/seal", c.admin_port).await;
    assert_eq!(status, 200);
    let (status, cert2) = c
        .admin(
            reqwest::Method::GET,
            &format!("/admin/v1/certificate/{final_number}"),
            c.admin_port,
        )
        .await;
    assert_eq!((status, &cert2), (200, &cert));

    // Metrics.
    let text = c
        .http
        .get(format!("http://127.0.0.1:{}/metrics", c.metrics_port))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(text.contains("flashlayer_block_build_seconds_bucket"), "{text}");
    let vtext = c
        .http
        .get(format!("http://127.0.0.1:{}/metrics", c.verifier_metrics_ports[0]))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(vtext.contains("flashlayer_blocks_total"), "{vtext}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_state_root_is_refused_by_verifiers() {
    let _serial = SERIAL.lock().await;
    cast();
    const BAD: u64 = 4;
    let mut c = Cluster::new("fault", &["--fault-corrupt-state-root-at=4"]);
    c.start_sequencer().await;
    c.start_verifiers();
    let url = c.url();
    // Some real traffic before the fault.
    let r = c.cast_json(&[
        "send",
        "--rpc-url",
        &url,
        "--private-key",
        DEV_KEY,
        "--json",
        "0x00000000000000000000000000000000000000cc",
        "--value",
        "7",
    ]);
    assert_eq!(r["status"], "0x1");

    // Every verifier reports the corrupted block to the sequencer; none certifies it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let alerts = loop {
        let (status, alerts) = c.admin(reqwest::Method::GET, "/admin/v1/alerts", c.admin_port).await;
        assert_eq!(status, 200);
        if alerts.as_array().map_or(0, Vec::len) >= VERIFIERS {
            break alerts;
        }
        assert!(Instant::now() < deadline, "alerts: {alerts}\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let bad_block = c.block(&format!("{BAD:#x}")).await;
    for a in alerts.as_array().into_iter().flatten() {
        assert_eq!(a["number"], BAD, "{a}");
        assert_eq!(a["gotStateRoot"], bad_block["stateRoot"], "{a}");
        assert_ne!(a["expectedStateRoot"], a["gotStateRoot"]);
    }
    let (status, st) = c.admin(reqwest::Method::GET, "/admin/v1/status", c.admin_port).await;
    assert_eq!(status, 200);
    assert_eq!(st["alerts"], VERIFIERS);

    // The chain goes on but nothing at or past the bad block is ever final.
    while c.head().await < BAD + 4 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(c.finalized().await < BAD, "finalized past the corrupted block");
    for n in BAD..BAD + 4 {
        let (status, _) = c
            .admin(
                reqwest::Method::GET,
                &format!("/admin/v1/certificate/{n}"),
                c.admin_port,
            )
            .await;
        assert_eq!(status, 404, "block {n} was certified");
    }

    // Each verifier holds its own alert, and counts it in its metrics.
    let (status, own) = c
        .admin(reqwest::Method::GET, "/admin/v1/alerts", c.verifier_admin_ports[0])
        .await;
    assert_eq!(status, 200);
    assert_eq!(own.as_array().map(Vec::len), Some(1), "{own}");
    assert_eq!(own[0]["operator"], format!("{:#x}", Address::with_last_byte(0xa0)));
    let (status, vst) = c
        .admin(reqwest::Method::GET, "/admin/v1/status", c.verifier_admin_ports[0])
        .await;
    assert_eq!(status, 200);
    assert_eq!(vst["role"], "verifier");
    assert_eq!(vst["alerts"], 1);
    let text = c
        .http
        .get(format!("http://127.0.0.1:{}/metrics", c.verifier_metrics_ports[0]))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(text.contains("flashlayer_alerts_total 1"), "{text}");
    // A verifier has nothing to seal.
    let (status, _) = c
        .admin(reqwest::Method::POST, "/admin/v1/seal", c.verifier_admin_ports[0])
        .await;
    assert_eq!(status, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_and_admin_refuse_bad_input() {
    let _serial = SERIAL.lock().await;
    let mut c = Cluster::new("input", &["--skip-empty-blocks"]);
    c.start_sequencer().await;
    let post = |body: Vec<u8>| {
        let http = c.http.clone();
        let url = c.url();
        async move {
            let resp = http
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("post");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, v) = post(b"{not json".to_vec()).await;
    assert_eq!((s, v["error"]["code"].as_i64()), (200, Some(-32700)));
    let (_, v) = post(br#"{"jsonrpc":"2.0","id":7,"method":"eth_nope","params":[]}"#.to_vec()).await;
    assert_eq!((v["id"].as_i64(), v["error"]["code"].as_i64()), (Some(7), Some(-32601)));
    let (_, v) = post(br#"{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x12"]}"#.to_vec()).await;
    assert_eq!(v["error"]["code"].as_i64(), Some(-32602));
    let (_, v) =
        post(br#"{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["0xdeadbeef"]}"#.to_vec()).await;
    assert!(v["error"]["code"].is_i64(), "{v}");
    let (_, v) = post(br#"[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},{"jsonrpc":"2.0","id":2,"method":"net_version","params":[]},5]"#.to_vec()).await;
    assert_eq!(v[0]["result"], format!("{CHAIN_ID:#x}"));
    assert_eq!(v[1]["result"], CHAIN_ID.to_string());
    assert_eq!(v[2]["error"]["code"].as_i64(), Some(-32600));
    let (_, v) = post(b"[]".to_vec()).await;
    assert_eq!(v["error"]["code"].as_i64(), Some(-32600));
    // The server answers 413 without reading the body and closes the connection: a client of its
    // own, so that the shared pool never reuses that dead connection for the next request.
    let oversized = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let s = oversized
        .post(c.url())
        .header("content-type", "application/json")
        .body(vec![b' '; 2 << 20])
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or_else(|e| panic!("oversized post: {e}"));
    assert_eq!(s, 413);
    for tag in ["latest", "safe", "finalized", "earliest", "pending"] {
        let b = c.block(tag).await;
        assert_eq!(b["number"], "0x0", "{tag}: {b}");
    }
    // --skip-empty-blocks: an idle chain stays at genesis.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(c.head().await, 0);

    let admin = format!("http://127.0.0.1:{}", c.admin_port);
    let r = c
        .http
        .get(format!("{admin}/admin/v1/status"))
        .send()
        .await
        .expect("status");
    assert_eq!(r.status().as_u16(), 401);
    let r = c
        .http
        .get(format!("{admin}/admin/v1/status"))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("status");
    assert_eq!(r.status().as_u16(), 401);
    let (s, v) = c
        .admin(reqwest::Method::GET, "/admin/v1/certificate/abc", c.admin_port)
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].is_string());
    let (s, _) = c
        .admin(reqwest::Method::GET, "/admin/v1/certificate/0", c.admin_port)
        .await;
    assert_eq!(s, 404);
    let (s, _) = c.admin(reqwest::Method::GET, "/admin/v1/seal", c.admin_port).await;
    assert_eq!(s, 405);
    let r = oversized
        .post(format!("{admin}/admin/v1/seal"))
        .bearer_auth(TOKEN)
        .body(vec![0u8; 70 << 10])
        .send()
        .await
        .expect("seal");
    assert_eq!(r.status().as_u16(), 413);
    let (s, st) = c.admin(reqwest::Method::GET, "/admin/v1/status", c.admin_port).await;
    assert_eq!(s, 200);
    assert_eq!(st["sealed"], false);
    assert_eq!(st["finalBlock"], Value::Null);
    assert_eq!(st["chainId"], CHAIN_ID);
}
