//! Shared harness of the contract tests: a real anvil (npm `@foundry-rs/anvil-linux-amd64`) on
//! 127.0.0.1, the compiled artifact deployed with alloy, and operator sets and certificates built
//! with `flashlayer_node`'s BLS keys and MACH aggregator.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use flashlayer_contracts::FlashSettlement;
use flashlayer_node::bls::{self, G1Point, G2Point, SecretKey};
use flashlayer_node::mach::{AddOutcome, Aggregator, Attestation, Certificate, Member, OperatorRef, OperatorSet};

/// anvil's first dev account: the registrar in these tests.
pub const REGISTRAR_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// anvil's second dev account: someone else.
pub const OTHER_KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
/// anvil's default chain id.
pub const L1_CHAIN_ID: u64 = 31337;
/// The rollup's chain id (bound into the signed message).
pub const ROLLUP_CHAIN_ID: u64 = 901337;

pub fn anvil_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ANVIL") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let p = PathBuf::from(home).join(".cache/flashlayer/npm/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    assert!(
        p.exists(),
        "anvil not found at {} (and $ANVIL is not set). Install it with:\n  \
         npm install --no-audit --no-fund --prefix \"$HOME/.cache/flashlayer/npm\" @foundry-rs/anvil-linux-amd64",
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

/// One anvil process on 127.0.0.1 (automine: every transaction is mined at once). Killed on drop.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    pub url: String,
    log: PathBuf,
}

impl Anvil {
    pub async fn start() -> Self {
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let log =
                std::env::temp_dir().join(format!("flashlayer-contracts-anvil-{}-{port}.log", std::process::id()));
            let file = std::fs::File::create(&log).expect("anvil log");
            let mut cmd = Command::new(anvil_bin());
            cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()]);
            // Default: anvil's latest hardfork. Set e.g. `prague` to measure gas under another.
            if let Some(fork) = std::env::var_os("FLASHLAYER_ANVIL_HARDFORK") {
                cmd.arg("--hardfork").arg(fork);
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(file.try_clone().expect("log"))
                .stderr(file)
                .spawn()
                .expect("spawn anvil");
            let mut anvil = Self {
                child,
                url: format!("http://127.0.0.1:{port}"),
                log,
            };
            if anvil.wait_ready().await {
                return anvil;
            }
            last_log = std::fs::read_to_string(&anvil.log).unwrap_or_default();
            // Dropping kills it; another process may have taken the port: try another.
        }
        panic!("anvil did not start on 127.0.0.1:\n{last_log}");
    }

    async fn wait_ready(&mut self) -> bool {
        let provider = ProviderBuilder::new().connect_http(self.url.parse().expect("url"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if provider.get_chain_id().await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// A provider that signs with `key` (fills nonce, gas and fees).
    pub fn provider(&self, key: &str) -> impl Provider + Clone + use<> {
        let signer: PrivateKeySigner = key.parse().expect("dev key");
        ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect_http(self.url.parse().expect("url"))
    }

    /// The hardfork anvil runs (for the gas report).
    pub async fn hardfork(&self) -> String {
        let provider = ProviderBuilder::new().connect_http(self.url.parse().expect("url"));
        let info: serde_json::Value = provider
            .raw_request("anvil_nodeInfo".into(), ())
            .await
            .unwrap_or_default();
        info["hardFork"].as_str().unwrap_or("unknown").to_string()
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

pub fn address_of(key: &str) -> Address {
    key.parse::<PrivateKeySigner>().expect("key").address()
}

/// Deploys the committed artifact; returns the contract address.
pub async fn deploy(provider: &impl Provider) -> Address {
    let artifact = flashlayer_contracts::artifact().expect("artifact");
    let receipt = provider
        .send_transaction(TransactionRequest::default().with_deploy_code(artifact.bytecode))
        .await
        .expect("send deployment")
        .get_receipt()
        .await
        .expect("deployment receipt");
    assert!(receipt.status(), "deployment reverted");
    let address = receipt.contract_address.expect("contract address");
    let code = provider.get_code_at(address).await.expect("code");
    assert_eq!(
        code, artifact.deployed_bytecode,
        "runtime code is the artifact's deployedBytecode"
    );
    address
}

/// Sends a call and waits for its receipt (gas estimated: fails if the call would revert).
pub async fn send(provider: &impl Provider, to: Address, data: Vec<u8>) -> TransactionReceipt {
    provider
        .send_transaction(TransactionRequest::default().to(to).input(Bytes::from(data).into()))
        .await
        .expect("send")
        .get_receipt()
        .await
        .expect("receipt")
}

/// Sends a call with a fixed gas limit (no estimate), so a reverting call is mined as a failure.
pub async fn send_unchecked(provider: &impl Provider, to: Address, data: Vec<u8>) -> TransactionReceipt {
    provider
        .send_transaction(
            TransactionRequest::default()
                .to(to)
                .input(Bytes::from(data).into())
                .gas_limit(2_000_000),
        )
        .await
        .expect("send")
        .get_receipt()
        .await
        .expect("receipt")
}

/// `eth_call` from `from`: `Ok(output)` or `Err(revert data)`.
pub async fn call(provider: &impl Provider, from: Address, to: Address, data: Vec<u8>) -> Result<Bytes, Bytes> {
    let tx = TransactionRequest::default()
        .from(from)
        .to(to)
        .input(Bytes::from(data).into());
    match provider.call(tx).await {
        Ok(out) => Ok(out),
        Err(e) => Err(e
            .as_error_resp()
            .and_then(|p| p.as_revert_data())
            .unwrap_or_else(|| panic!("eth_call failed without revert data: {e}"))),
    }
}

/// A typed view call.
pub async fn view<C: SolCall>(provider: &impl Provider, to: Address, c: C) -> C::Return {
    let out = call(provider, Address::ZERO, to, c.abi_encode())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{} reverted: {:?}",
                C::SIGNATURE,
                flashlayer_contracts::describe_error(&e)
            )
        });
    C::abi_decode_returns(&out).expect("decode return")
}

/// The name of the contract's custom error in revert data (panics on anything else).
pub fn error_name(data: &[u8]) -> String {
    let shown = flashlayer_contracts::describe_error(data)
        .unwrap_or_else(|| panic!("revert data is not a FlashSettlement error: {data:?}"));
    shown.split([' ', '{']).next().unwrap_or_default().to_string()
}

/// A BLS key for test operator `i` of set `seed`.
pub fn bls_key(seed: u8, i: usize) -> SecretKey {
    let mut b = [0u8; 32];
    b[0] = 0x0b;
    b[1] = seed;
    b[24..].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    SecretKey::from_be_bytes(&b).expect("test key")
}

/// An operator set: keys (None = registered without a key), stakes, quorum, and the node's view
/// of it (`OperatorSet`, which the sequencer aggregates with and `mach::l1_check` checks with).
#[derive(Debug)]
pub struct TestSet {
    pub keys: Vec<Option<SecretKey>>,
    pub stakes: Vec<u64>,
    pub quorum_percent: u8,
    pub set: OperatorSet,
}

impl TestSet {
    /// `stakes.len()` operators, all with keys.
    pub fn new(seed: u8, stakes: &[u64], quorum_percent: u8) -> Self {
        Self::with_keys(seed, stakes, quorum_percent, |_| true)
    }

    /// Operators for which `has_key(i)` is false are registered with `[0, 0]`.
    pub fn with_keys(seed: u8, stakes: &[u64], quorum_percent: u8, has_key: impl Fn(usize) -> bool) -> Self {
        let keys: Vec<Option<SecretKey>> = (0..stakes.len())
            .map(|i| has_key(i).then(|| bls_key(seed, i)))
            .collect();
        let members = keys
            .iter()
            .zip(stakes)
            .enumerate()
            .map(|(i, (k, stake))| Member {
                name: format!("avs-{i}"),
                address: Address::left_padding_from(&(i as u64 + 1).to_be_bytes()),
                stake: *stake,
                bls_public_key: k.as_ref().map(|k| (k.public_g1().to_bytes(), k.public_g2().to_bytes())),
            })
            .collect();
        let set = OperatorSet::new(quorum_percent, members).expect("operator set");
        Self {
            keys,
            stakes: stakes.to_vec(),
            quorum_percent,
            set,
        }
    }

    pub fn g1_words(&self) -> Vec<[U256; 2]> {
        self.keys
            .iter()
            .map(|k| k.as_ref().map_or([U256::ZERO; 2], |k| k.public_g1().to_words()))
            .collect()
    }

    pub fn register_call(&self, rollup_id: B256) -> Vec<u8> {
        FlashSettlement::registerRollupCall {
            rollupId: rollup_id,
            chainId: ROLLUP_CHAIN_ID,
            g1PublicKeys: self.g1_words(),
            stakes: self
                .stakes
                .iter()
                .map(|s| alloy::primitives::aliases::U96::from(*s))
                .collect(),
            quorumBps: self.set.quorum_bps(),
        }
        .abi_encode()
    }

    fn key(&self, i: usize) -> &SecretKey {
        self.keys[i].as_ref().expect("operator has a key")
    }

    /// What the sequencer produces: attestations signed by operators `order` (in that order) fed
    /// to the node's `Aggregator` until it certifies the block.
    pub fn certify(&self, rollup_id: B256, block: Block, order: &[usize]) -> Certificate {
        let mut agg = Aggregator::new(ROLLUP_CHAIN_ID, rollup_id, self.set.clone());
        for &i in order {
            let att = Attestation::sign(
                self.key(i),
                OperatorRef::Index(i as u64),
                ROLLUP_CHAIN_ID,
                rollup_id,
                block.number,
                block.hash,
                block.state_root,
            );
            match agg
                .add(&att, &(block.hash, block.state_root))
                .expect("attestation accepted")
            {
                AddOutcome::Certified(c) => return *c,
                AddOutcome::Pending { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        panic!("operators {order:?} do not reach the quorum");
    }

    /// A certificate aggregated directly from `signers`' signatures, whatever their stake (the
    /// node would not certify a short quorum; an attacker could still build one).
    pub fn aggregate(&self, rollup_id: B256, block: Block, signers: &[usize]) -> Certificate {
        let msg = bls::attestation_digest(ROLLUP_CHAIN_ID, rollup_id, block.number, block.hash, block.state_root);
        let sigs: Vec<G1Point> = signers.iter().map(|&i| self.key(i).sign(msg)).collect();
        let g2: Vec<G2Point> = signers.iter().map(|&i| self.key(i).public_g2()).collect();
        let mut bitmap = U256::ZERO;
        for &i in signers {
            bitmap.set_bit(i, true);
        }
        let signed: u64 = signers.iter().map(|&i| self.stakes[i]).sum();
        Certificate {
            chain_id: ROLLUP_CHAIN_ID,
            rollup_id,
            number: block.number,
            block_hash: block.hash,
            state_root: block.state_root,
            signer_bitmap: bitmap,
            signers: vec![],
            signed_stake: U256::from(signed),
            total_stake: self.set.total_stake(),
            apk_g2: bls::aggregate_g2(&g2).to_words(),
            sigma: bls::aggregate_g1(&sigs).to_words(),
        }
    }
}

/// A rollup block: number, hash, state root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub number: u64,
    pub hash: B256,
    pub state_root: B256,
}

pub fn block(number: u64) -> Block {
    Block {
        number,
        hash: alloy::primitives::keccak256(format!("block {number}")),
        state_root: alloy::primitives::keccak256(format!("root {number}")),
    }
}

pub fn settle_call(rollup_id: B256, cert: &Certificate) -> Vec<u8> {
    FlashSettlement::settleCall {
        rollupId: rollup_id,
        number: cert.number,
        blockHash: cert.block_hash,
        stateRoot: cert.state_root,
        signerBitmap: cert.signer_bitmap,
        apkG2: cert.apk_g2,
        sigma: cert.sigma,
    }
    .abi_encode()
}

pub fn rollup_id(name: &str) -> B256 {
    alloy::primitives::keccak256(format!("flashlayer/v1/test/{name}/uid"))
}
