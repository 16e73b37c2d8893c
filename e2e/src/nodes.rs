//! The rollup's chain, for real: a `flashlayer-node` sequencer and one verifier per assigned
//! operator, as local processes on 127.0.0.1, configured exactly as the pods would be — the
//! chain.json of the rollup's ConfigMap, the admin token of its Secret, each operator's BLS key
//! from its Secret. (The local cluster's pods run on kwok nodes, which run no containers; the
//! operator reaches this sequencer through `--node-endpoint`.)

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};
use serde_json::Value;

use crate::l1::cast;
use crate::log;
use crate::process::{Guarded, free_port, listening};

/// `$FLASHLAYER_NODE_BIN`, else `<target dir>/debug/flashlayer-node`, built (or found up to
/// date) with `cargo build -p flashlayer-node` once per test binary.
pub fn node_binary(root: &Path) -> PathBuf {
    let bin = match std::env::var_os("FLASHLAYER_NODE_BIN") {
        Some(b) => PathBuf::from(b),
        None => {
            static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
            let built = BUILT.get_or_init(|| {
                log("cargo build -p flashlayer-node");
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
                let out = crate::cmd::run(&cargo, &["build", "-q", "-p", "flashlayer-node"], None)?;
                out.ok("cargo build -p flashlayer-node").map(drop)
            });
            if let Err(e) = built {
                panic!("{e}");
            }
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target"))
                .join("debug/flashlayer-node")
        }
    };
    assert!(
        bin.is_file(),
        "{} does not exist: run `cargo build -p flashlayer-node` first (e2e/run does)",
        bin.display()
    );
    bin
}

/// What the rollup's objects tell a node: its chain.json, the admin token, and the BLS key of
/// each assigned operator.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub chain_json: String,
    pub token: String,
    /// `(AVSOperator name, BLS private key)` in signer-bitmap order.
    pub verifiers: Vec<(String, String)>,
}

impl NodeConfig {
    /// Read it from the cluster: ConfigMap `<rollup>-chain`, Secret `<rollup>-admin`, and the
    /// Secret each AVSOperator names (`blsKey.secretRef`). `None` while one is missing.
    pub async fn read(client: &Client, ns: &str, rollup: &str) -> Result<Option<NodeConfig>, String> {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        let Some(cm) = cms
            .get_opt(&format!("{rollup}-chain"))
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let Some(chain_json) = cm.data.and_then(|d| d.get("chain.json").cloned()) else {
            return Ok(None);
        };
        let Some(token) = secret_value(&secrets, &format!("{rollup}-admin"), "token").await? else {
            return Ok(None);
        };
        let chain: Value = serde_json::from_str(&chain_json).map_err(|e| format!("chain.json: {e}"))?;
        let avs = crate::objects::custom_api(client, ns, crate::AVSOPERATOR);
        let mut verifiers = Vec::new();
        for op in chain["operators"].as_array().cloned().unwrap_or_default() {
            let name = op["name"].as_str().unwrap_or_default().to_owned();
            let Some(o) = crate::objects::get_json(&avs, &name).await? else {
                return Err(format!("AVSOperator {name} of chain.json does not exist"));
            };
            let secret = crate::objects::str_at(&o, "/spec/blsKey/secretRef/name").unwrap_or_default();
            let key = crate::objects::str_at(&o, "/spec/blsKey/secretRef/key").unwrap_or("bls.key");
            let Some(bls) = secret_value(&secrets, secret, key).await? else {
                return Err(format!("the BLS key Secret {secret} of {name} does not exist"));
            };
            verifiers.push((name, bls));
        }
        Ok(Some(NodeConfig {
            chain_json,
            token,
            verifiers,
        }))
    }

    /// `rollupId` of the chain.json.
    pub fn rollup_id(&self) -> String {
        let v: Value = serde_json::from_str(&self.chain_json).unwrap_or_default();
        v["rollupId"].as_str().unwrap_or_default().to_lowercase()
    }
}

async fn secret_value(secrets: &Api<Secret>, name: &str, key: &str) -> Result<Option<String>, String> {
    let s = secrets.get_opt(name).await.map_err(|e| e.to_string())?;
    Ok(s.and_then(|s| s.data)
        .and_then(|d| d.get(key).map(|b| String::from_utf8_lossy(&b.0).trim().to_owned())))
}

/// A sequencer and its verifiers on 127.0.0.1.
#[derive(Debug)]
pub struct LocalChain {
    pub dir: PathBuf,
    pub rpc_port: u16,
    pub admin_port: u16,
    bin: PathBuf,
    sequencer: Option<Guarded>,
    verifiers: Vec<Guarded>,
}

impl LocalChain {
    /// A chain whose sequencer will serve its admin API on `admin_port` (the port the operator
    /// was given with `--node-endpoint`); files under `dir`.
    pub fn new(root: &Path, dir: &Path, admin_port: u16) -> LocalChain {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        LocalChain {
            dir: dir.to_path_buf(),
            rpc_port: free_port(),
            admin_port,
            bin: node_binary(root),
            sequencer: None,
            verifiers: Vec::new(),
        }
    }

    /// JSON-RPC URL of the sequencer.
    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rpc_port)
    }

    /// Write the files as the pods would mount them and start the sequencer, then the verifiers.
    pub fn start(&mut self, config: &NodeConfig) {
        let chain = self.dir.join("chain.json");
        let token = self.dir.join("admin-token");
        std::fs::write(&chain, &config.chain_json).expect("writing chain.json");
        write_private(&token, &config.token);
        let seq_args = vec![
            "--log-format=text".to_owned(),
            "sequencer".to_owned(),
            format!("--config={}", chain.display()),
            format!("--data-dir={}", self.dir.join("sequencer-data").display()),
            format!("--admin-token-file={}", token.display()),
            format!("--rpc-addr=127.0.0.1:{}", self.rpc_port),
            format!("--admin-addr=127.0.0.1:{}", self.admin_port),
            format!("--metrics-addr=127.0.0.1:{}", free_port()),
        ];
        let env = [("RUST_LOG", "info"), ("NO_COLOR", "1")];
        let seq = Guarded::start("sequencer", &self.dir.join("sequencer.log"), &self.bin, &seq_args, &env)
            .expect("starting the sequencer");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(listening(self.rpc_port) && listening(self.admin_port)) {
            assert!(
                Instant::now() < deadline && !seq.has_exited(),
                "the sequencer did not start:\n{}",
                seq.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        log(format!(
            "sequencer pid {} rpc {} admin 127.0.0.1:{}",
            seq.pid,
            self.rpc_url(),
            self.admin_port
        ));
        self.sequencer = Some(seq);
        for (name, key) in &config.verifiers {
            let key_file = self.dir.join(format!("{name}-bls.key"));
            write_private(&key_file, key);
            let args = vec![
                "--log-format=text".to_owned(),
                "verifier".to_owned(),
                format!("--config={}", chain.display()),
                format!("--operator={name}"),
                format!("--bls-key-file={}", key_file.display()),
                format!("--sequencer-url={}", self.rpc_url()),
                format!("--data-dir={}", self.dir.join(format!("{name}-data")).display()),
                format!("--metrics-addr=127.0.0.1:{}", free_port()),
            ];
            let v = Guarded::start(
                &format!("verifier-{name}"),
                &self.dir.join(format!("verifier-{name}.log")),
                &self.bin,
                &args,
                &env,
            )
            .expect("starting a verifier");
            log(format!("verifier {name} pid {}", v.pid));
            self.verifiers.push(v);
        }
    }

    /// `eth_blockNumber` of a block tag (`latest`, `finalized`) on the sequencer.
    pub fn block_number(&self, tag: &str) -> Result<u64, String> {
        let n = cast(&["block", tag, "--field", "number", "--rpc-url", &self.rpc_url()])?;
        parse_quantity(&n)
    }

    /// A field (`stateRoot`, `hash`) of block `number` on the sequencer, lower-case.
    pub fn block_field(&self, number: u64, field: &str) -> Result<String, String> {
        Ok(cast(&[
            "block",
            &number.to_string(),
            "--field",
            field,
            "--rpc-url",
            &self.rpc_url(),
        ])?
        .to_lowercase())
    }

    /// `cast send` a value transfer signed by `key` on the rollup; returns the receipt's block.
    pub fn send_transfer(&self, key: &str, to: &str) -> Result<u64, String> {
        let out = cast(&[
            "send",
            "--rpc-url",
            &self.rpc_url(),
            "--private-key",
            key,
            "--value",
            "1000000000",
            "--json",
            to,
        ])?;
        let receipt: Value = serde_json::from_str(&out).map_err(|e| format!("cast send printed {out:?}: {e}"))?;
        if receipt["status"] != "0x1" {
            return Err(format!("the transfer failed: {receipt}"));
        }
        parse_quantity(receipt["blockNumber"].as_str().unwrap_or_default())
    }

    /// The last lines of every node's log.
    pub fn log_tails(&self, lines: usize) -> String {
        self.sequencer
            .iter()
            .chain(&self.verifiers)
            .map(|p| format!("===== {} ({}) =====\n{}", p.name, p.log.display(), p.log_tail(lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stop every node.
    pub fn stop(&mut self) {
        for mut v in self.verifiers.drain(..) {
            v.stop();
        }
        if let Some(mut s) = self.sequencer.take() {
            s.stop();
        }
    }
}

impl Drop for LocalChain {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails(20));
        }
        self.stop();
    }
}

/// A decimal or 0x-hex number as cast prints it.
fn parse_quantity(s: &str) -> Result<u64, String> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("{s:?} is not a number: {e}"))
}

fn write_private(path: &Path, content: &str) {
    std::fs::write(path, format!("{content}\n")).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}
