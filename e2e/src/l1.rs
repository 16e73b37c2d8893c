//! The L1 of the settlement scenarios: a real anvil (npm `@foundry-rs/anvil-linux-amd64`) on
//! 127.0.0.1 that keeps its chain in a state file across a stop and a restart, the settlement
//! contract deployed from the committed artifact (contracts/out/FlashSettlement.json), and `cast`
//! (npm `@foundry-rs/cast-linux-amd64`) as the client, as a user would use it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cmd::{self, Output};
use crate::log;
use crate::process::{Guarded, free_port, listening};

/// anvil's chain id.
pub const CHAIN_ID: u64 = 31337;
/// anvil's dev account #0: the operator's settlement signer (a PUBLIC test key).
pub const SIGNER_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// Its address.
pub const SIGNER: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
/// anvil's dev account #8: someone else (registers a rollup id first, in the front-running
/// scenario).
pub const OTHER_KEY: &str = "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97";
/// Its address.
pub const OTHER: &str = "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f";
/// anvil's dev account #9: deploys the contract, so the signer's nonce counts only the
/// operator's transactions.
pub const DEPLOYER_KEY: &str = "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6";
/// `RollupSettled(bytes32 indexed rollupId, uint64 number, bytes32 blockHash, bytes32 stateRoot)`.
pub const ROLLUP_SETTLED: &str = "RollupSettled(bytes32,uint64,bytes32,bytes32)";

fn npm_bin(env: &str, package: &str, bin: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let p = PathBuf::from(home).join(format!(
        ".cache/flashlayer/npm/node_modules/@foundry-rs/{package}/bin/{bin}"
    ));
    assert!(
        p.exists(),
        "{bin} not found at {} (and ${env} is not set). Install it with:\n  \
         npm install --no-audit --no-fund --prefix \"$HOME/.cache/flashlayer/npm\" @foundry-rs/{package}",
        p.display()
    );
    p
}

/// The `cast` binary.
pub fn cast_bin() -> PathBuf {
    npm_bin("CAST", "cast-linux-amd64", "cast")
}

/// `cast args...`: stdout, or an error with what it printed.
pub fn cast(args: &[&str]) -> Result<String, String> {
    let bin = cast_bin();
    let out: Output = cmd::run(&bin.to_string_lossy(), args, None)?;
    out.ok(&format!("cast {}", args.first().copied().unwrap_or_default()))
        .map(|s| s.trim().to_owned())
}

/// One anvil on 127.0.0.1 with 1 s blocks, its chain kept in a state file.
#[derive(Debug)]
pub struct Anvil {
    pub url: String,
    pub port: u16,
    pub state: PathBuf,
    dir: PathBuf,
    process: Option<Guarded>,
    starts: usize,
}

impl Anvil {
    /// Start a fresh chain; its files go to `dir`.
    pub fn start(dir: &Path) -> Anvil {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let port = free_port();
        let mut anvil = Anvil {
            url: format!("http://127.0.0.1:{port}"),
            port,
            state: dir.join("anvil-state.json"),
            dir: dir.to_path_buf(),
            process: None,
            starts: 0,
        };
        let _ = std::fs::remove_file(&anvil.state);
        anvil.run();
        anvil
    }

    fn run(&mut self) {
        self.starts += 1;
        let log_path = self.dir.join(format!("anvil-{}.log", self.starts));
        let args: Vec<String> = [
            "--host",
            "127.0.0.1",
            "--port",
            &self.port.to_string(),
            "--chain-id",
            &CHAIN_ID.to_string(),
            "--block-time",
            "1",
            "--state",
            &self.state.to_string_lossy(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let bin = npm_bin("ANVIL", "anvil-linux-amd64", "anvil");
        let p = Guarded::start("anvil", &log_path, &bin, &args, &[]).expect("starting anvil");
        let deadline = Instant::now() + Duration::from_secs(30);
        while cast(&["chain-id", "--rpc-url", &self.url]).is_err() {
            assert!(
                Instant::now() < deadline && !p.has_exited(),
                "anvil did not start on {}:\n{}",
                self.url,
                p.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        log(format!(
            "anvil {} on {} (pid {}, state {})",
            if self.starts == 1 { "started" } else { "restarted" },
            self.url,
            p.pid,
            self.state.display()
        ));
        self.process = Some(p);
    }

    /// Stop it (SIGTERM: it writes its chain to the state file). The port refuses connections
    /// from then on.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
            log(format!("anvil on {} stopped", self.url));
        }
        assert!(!listening(self.port), "nothing may answer on {} any more", self.url);
    }

    /// Start it again on the same port, from the state file.
    pub fn restart(&mut self) {
        assert!(self.process.is_none(), "anvil is running");
        self.run();
    }

    /// Deploy the settlement contract from the committed artifact (with the deployer account);
    /// returns its address.
    pub fn deploy_settlement(&self, root: &Path) -> String {
        let artifact = root.join("contracts/out/FlashSettlement.json");
        let text = std::fs::read_to_string(&artifact).unwrap_or_else(|e| panic!("reading {}: {e}", artifact.display()));
        let json: Value = serde_json::from_str(&text).expect("the artifact is JSON");
        let bytecode = json["bytecode"].as_str().expect("the artifact has a bytecode");
        let out = cast(&[
            "send",
            "--rpc-url",
            &self.url,
            "--private-key",
            DEPLOYER_KEY,
            "--json",
            "--create",
            bytecode,
        ])
        .expect("deploying FlashSettlement");
        let receipt: Value = serde_json::from_str(&out).expect("cast send --json prints the receipt");
        assert_eq!(receipt["status"], "0x1", "deployment reverted: {receipt}");
        let address = receipt["contractAddress"]
            .as_str()
            .expect("a contract address")
            .to_owned();
        log(format!("FlashSettlement deployed at {address}"));
        address
    }

    /// `cast call <contract> <sig> <args>`: the output lines, first word of each (cast adds
    /// `[1e6]`-style hints after numbers).
    pub fn call(&self, contract: &str, sig: &str, args: &[&str]) -> Result<Vec<String>, String> {
        let mut all = vec!["call", "--rpc-url", &self.url, contract, sig];
        all.extend_from_slice(args);
        Ok(cast(&all)?
            .lines()
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
            .collect())
    }

    /// The contract's `settlement(rollupId)`: `(settled, number, blockHash, stateRoot)`.
    pub fn settlement(&self, contract: &str, rollup_id: &str) -> Result<Settlement, String> {
        let v = self.call(
            contract,
            "settlement(bytes32)(bool,uint64,bytes32,bytes32)",
            &[rollup_id],
        )?;
        match v.as_slice() {
            [settled, number, hash, root] => Ok(Settlement {
                settled: settled == "true",
                number: number.parse().map_err(|e| format!("number {number:?}: {e}"))?,
                block_hash: hash.to_lowercase(),
                state_root: root.to_lowercase(),
            }),
            other => Err(format!("settlement(bytes32) printed {other:?}")),
        }
    }

    /// The contract's `rollup(rollupId)`: `(registrar, chainId, quorumBps, operatorCount, totalStake)`.
    pub fn registration(&self, contract: &str, rollup_id: &str) -> Result<Vec<String>, String> {
        self.call(
            contract,
            "rollup(bytes32)(address,uint64,uint16,uint16,uint256)",
            &[rollup_id],
        )
    }

    /// The `RollupSettled` logs the contract emitted for `rollup_id`.
    pub fn settled_logs(&self, contract: &str, rollup_id: &str) -> Result<Vec<Value>, String> {
        let out = cast(&[
            "logs",
            "--rpc-url",
            &self.url,
            "--from-block",
            "0",
            "--to-block",
            "latest",
            "--address",
            contract,
            "--json",
            ROLLUP_SETTLED,
            rollup_id,
        ])?;
        let v: Value = serde_json::from_str(&out).map_err(|e| format!("cast logs printed {out:?}: {e}"))?;
        // Filtered here too: the indexed rollup id is topic 1.
        let id = rollup_id.to_lowercase();
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter(|l| l["topics"][1].as_str().map(str::to_lowercase) == Some(id.clone()))
            .cloned()
            .collect())
    }

    /// `cast send <to> <sig> <args>` signed by `key` (a plain transfer of 1 wei when `sig` is
    /// empty); waits for the receipt and fails if it reverted.
    pub fn send(&self, key: &str, to: &str, sig: &str, args: &[&str]) -> Result<Value, String> {
        let mut all = vec!["send", "--rpc-url", &self.url, "--private-key", key, "--json", to];
        if sig.is_empty() {
            all.extend(["--value", "1"]);
        } else {
            all.push(sig);
            all.extend_from_slice(args);
        }
        let out = cast(&all)?;
        let receipt: Value = serde_json::from_str(&out).map_err(|e| format!("cast send printed {out:?}: {e}"))?;
        if receipt["status"] != "0x1" {
            return Err(format!("{sig} reverted: {receipt}"));
        }
        Ok(receipt)
    }

    /// The account's nonce (transactions it sent that are mined).
    pub fn nonce(&self, address: &str) -> Result<u64, String> {
        let n = cast(&["nonce", "--rpc-url", &self.url, address])?;
        n.parse().map_err(|e| format!("nonce {n:?}: {e}"))
    }

    /// The receipt of a transaction, as `cast receipt --json` prints it.
    pub fn receipt(&self, tx: &str) -> Result<Value, String> {
        let out = cast(&["receipt", "--rpc-url", &self.url, "--json", tx])?;
        serde_json::from_str(&out).map_err(|e| format!("cast receipt printed {out:?}: {e}"))
    }
}

/// What the contract holds for a rollup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    pub settled: bool,
    pub number: u64,
    pub block_hash: String,
    pub state_root: String,
}

/// The signer Secret `name` (key `privateKey`) holding anvil's dev key #0.
pub fn signer_secret(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: Opaque\nstringData:\n  \
         # anvil's dev account #0: a PUBLIC TEST KEY.\n  privateKey: \"{SIGNER_KEY}\"\n"
    )
}
