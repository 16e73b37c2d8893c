//! The verifier (VITAL + MACH): follows the sequencer over JSON-RPC, re-executes every block on its
//! own state, and compares the result with the sequencer's header. On a match it signs the block
//! with its BLS key and posts the attestation to the sequencer; on a mismatch it raises an alert
//! (log, metric, its own alert list, a signed report to the sequencer), signs nothing, and stops
//! following: nothing built on a wrong state can be attested.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use alloy::eips::eip2718::Encodable2718;
use alloy::primitives::{Address, B256, keccak256};
use alloy::rpc::types::{Block as RpcBlock, BlockTransactions};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::alerts::{Alert, AlertLog, AlertReport, alert_digest};
use crate::block::{Block, assemble, context_of};
use crate::bls::SecretKey;
use crate::chain::{Chain, ChainError};
use crate::exec::{BASE_FEE, BlockBuilder, COINBASE, SignedTx};
use crate::mach::{Attestation, OperatorRef};
use crate::metrics::Metrics;

/// How long one request to the sequencer may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JSON-RPC response read (a full block of 30M gas of calldata stays well below).
const MAX_RESPONSE_BYTES: usize = 32 << 20;
/// An attestation not yet reflected in the sequencer's `finalized` is re-sent after this long
/// (the sequencer may have restarted and lost its partial aggregates).
const RESEND_AFTER: Duration = Duration::from_secs(2);
/// Longest wait between polls while the sequencer is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Why the verifier could not start or talk to the sequencer.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// `--operator` is not in the configured set.
    #[error("operator {0:?} is not in the rollup's operator set")]
    UnknownOperator(String),
    /// The key file's key is not the one the config publishes for this operator.
    #[error("the BLS key does not match the public key configured for operator {0:?}")]
    KeyMismatch(String),
    /// The sequencer could not be reached or answered nonsense.
    #[error("sequencer: {0}")]
    Rpc(String),
    /// The local chain failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

/// What re-executing one block found.
#[derive(Debug)]
enum Refusal {
    /// Our state root differs from the header's.
    StateRoot {
        /// Ours.
        expected: B256,
        /// The header's.
        got: B256,
    },
    /// The block is wrong in some other way (bad transaction, other header field, not our parent).
    Invalid(String),
}

/// The verifier role.
#[derive(Debug)]
pub struct Verifier {
    /// Its own copy of the chain.
    pub chain: Arc<Chain>,
    /// Metrics.
    pub metrics: Metrics,
    key: SecretKey,
    index: usize,
    address: Address,
    url: String,
    http: reqwest::Client,
    alerts: Mutex<AlertLog>,
    /// Why it stopped following (set once, on the first refused block).
    halted: Mutex<Option<String>>,
    pending_report: Mutex<Option<AlertReport>>,
    last_attested: Mutex<Option<(Attestation, Instant)>>,
    sequencer_finalized: AtomicU64,
    caught_up: AtomicBool,
}

impl Verifier {
    /// A verifier for operator `name` with `key`, following `sequencer_url`.
    pub fn new(
        chain: Arc<Chain>,
        metrics: Metrics,
        name: &str,
        key: SecretKey,
        sequencer_url: &str,
    ) -> Result<Arc<Self>, VerifierError> {
        let op = chain
            .config
            .operator_by_name(name)
            .ok_or_else(|| VerifierError::UnknownOperator(name.to_owned()))?;
        let published = op.bls_public_key.as_ref().map(|k| k.g1);
        if published != Some(key.public_g1().to_bytes()) {
            return Err(VerifierError::KeyMismatch(name.to_owned()));
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            // The sequencer is reached directly inside the cluster (or on loopback in tests).
            .no_proxy()
            .build()
            .map_err(|e| VerifierError::Rpc(e.to_string()))?;
        metrics.head.set(chain.head().header.number as i64);
        Ok(Arc::new(Self {
            index: op.index,
            address: op.address,
            chain,
            metrics,
            key,
            url: sequencer_url.trim_end_matches('/').to_owned(),
            http,
            alerts: Mutex::new(AlertLog::default()),
            halted: Mutex::new(None),
            pending_report: Mutex::new(None),
            last_attested: Mutex::new(None),
            sequencer_finalized: AtomicU64::new(0),
            caught_up: AtomicBool::new(false),
        }))
    }

    /// The operator address this verifier attests as.
    pub fn address(&self) -> Address {
        self.address
    }

    /// Alerts this verifier raised.
    pub fn alerts(&self) -> Vec<Alert> {
        self.alerts.lock().unwrap_or_else(PoisonError::into_inner).list()
    }

    /// Number of alerts held.
    pub fn alert_count(&self) -> usize {
        self.alerts.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// The sequencer's finalized height as last seen.
    pub fn sequencer_finalized(&self) -> u64 {
        self.sequencer_finalized.load(Ordering::Acquire)
    }

    /// Whether it has caught up with the sequencer at least once (readiness).
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    /// Why it stopped following, if it did.
    pub fn halted(&self) -> Option<String> {
        self.halted.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Follows the sequencer until shutdown.
    pub async fn run(self: Arc<Self>, poll: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        loop {
            let delay = match self.step().await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(failures, "sequencer reachable again");
                    }
                    failures = 0;
                    poll
                }
                Err(e) => {
                    // An unreachable sequencer (restarting pod) is expected now and then: back
                    // off, and log the first failure and then every 20th instead of every poll.
                    if failures.is_multiple_of(20) {
                        tracing::warn!(error = %e, failures, "following the sequencer");
                    }
                    failures = failures.saturating_add(1);
                    (poll * 2u32.saturating_pow(failures.min(6))).min(MAX_BACKOFF)
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn step(self: &Arc<Self>) -> Result<(), VerifierError> {
        if self.halted().is_some() {
            self.send_pending_report().await;
            return Ok(());
        }
        let remote: alloy::primitives::U64 = self.rpc("eth_blockNumber", json!([])).await?;
        let remote = remote.to::<u64>();
        loop {
            let local = self.chain.head().header.number;
            if local >= remote {
                break;
            }
            let number = local + 1;
            let block: Option<RpcBlock> = self
                .rpc("eth_getBlockByNumber", json!([format!("{number:#x}"), true]))
                .await?;
            let Some(block) = block else { break };
            let me = self.clone();
            let latest = number == remote;
            let verdict = tokio::task::spawn_blocking(move || me.verify(block))
                .await
                .map_err(|e| VerifierError::Rpc(format!("verification task: {e}")))?;
            match verdict {
                Ok(block) => {
                    self.metrics.blocks.inc();
                    self.metrics.txs.inc_by(block.txs.len() as u64);
                    self.metrics.gas.inc_by(block.header.gas_used);
                    self.metrics.head.set(block.number() as i64);
                    // Finality is by ancestry: while catching up only the newest block needs a
                    // signature, which keeps a late verifier from flooding the aggregator.
                    if latest {
                        self.attest(&block).await;
                    }
                }
                Err(refusal) => {
                    self.refuse(number, refusal).await;
                    return Ok(());
                }
            }
        }
        self.caught_up.store(true, Ordering::Release);
        self.resend_if_stale().await;
        Ok(())
    }

    fn verify(&self, rpc: RpcBlock) -> Result<Block, Refusal> {
        let header = rpc.header.inner;
        let claimed = rpc.header.hash;
        let number = header.number;
        if header.hash_slow() != claimed {
            return Err(Refusal::Invalid(format!(
                "block {number}: hash does not match its header"
            )));
        }
        let head = self.chain.head();
        if number != head.header.number + 1 || header.parent_hash != head.hash {
            return Err(Refusal::Invalid(format!(
                "block {number} does not extend our block {} ({})",
                head.header.number, head.hash
            )));
        }
        if header.base_fee_per_gas != Some(BASE_FEE)
            || header.gas_limit != self.chain.config.gas_limit
            || header.beneficiary != COINBASE
        {
            return Err(Refusal::Invalid(format!(
                "block {number}: base fee, gas limit or coinbase differ from the chain's"
            )));
        }
        let BlockTransactions::Full(rpc_txs) = rpc.transactions else {
            return Err(Refusal::Invalid(format!("block {number}: transactions not included")));
        };
        let mut txs = Vec::with_capacity(rpc_txs.len());
        for t in rpc_txs {
            let envelope = t.inner.into_inner();
            // The hash in the JSON is not trusted: the transaction is what its bytes say.
            let hash = keccak256(envelope.encoded_2718());
            if hash != *envelope.tx_hash() {
                return Err(Refusal::Invalid(format!("block {number}: transaction hash mismatch")));
            }
            let tx = SignedTx::from_envelope(envelope, self.chain.config.chain_id)
                .map_err(|e| Refusal::Invalid(format!("block {number}: transaction {hash}: {e}")))?;
            txs.push(tx);
        }

        let ctx = context_of(&header);
        let executed = {
            let view = self.chain.read();
            let mut builder = BlockBuilder::new(view.state(), &self.chain.params, &ctx);
            for tx in txs {
                let hash = tx.hash;
                builder
                    .push(tx)
                    .map_err(|e| Refusal::Invalid(format!("block {number}: transaction {hash} cannot execute: {e}")))?;
            }
            builder.finish()
        };
        let appended = self.chain.append(&executed.diff, |root| {
            if root != header.state_root {
                return Err(Refusal::StateRoot {
                    expected: root,
                    got: header.state_root,
                });
            }
            let ours = assemble(head.hash, &ctx, &executed, root);
            if ours.hash != claimed {
                return Err(Refusal::Invalid(format!(
                    "block {number}: state root agrees but the header does not (transactions root, receipts \
                     root, bloom or gas used differ)"
                )));
            }
            Ok((ours, None))
        });
        match appended {
            Ok(result) => result,
            Err(e) => Err(Refusal::Invalid(format!("block {number}: {e}"))),
        }
    }

    async fn attest(&self, block: &Block) {
        let att = Attestation::sign(
            &self.key,
            OperatorRef::Index(self.index as u64),
            self.chain.config.chain_id,
            self.chain.config.rollup_id,
            block.number(),
            block.hash,
            block.header.state_root,
        );
        self.post_attestation(&att).await;
        *self.last_attested.lock().unwrap_or_else(PoisonError::into_inner) = Some((att, Instant::now()));
    }

    async fn post_attestation(&self, att: &Attestation) {
        let result = self
            .http
            .post(format!("{}/mach/v1/attestations", self.url))
            .json(att)
            .send()
            .await;
        let label = match result {
            Ok(r) if r.status().is_success() => {
                let body: Value = r.json().await.unwrap_or(Value::Null);
                if matches!(body["status"].as_str(), Some("certified" | "alreadyFinal")) {
                    let seen = self
                        .sequencer_finalized
                        .fetch_max(att.number, Ordering::AcqRel)
                        .max(att.number);
                    self.metrics.finalized.set(seen as i64);
                }
                "sent"
            }
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                tracing::warn!(number = att.number, %status, body = %body.chars().take(200).collect::<String>(), "attestation refused");
                "refused"
            }
            Err(e) => {
                tracing::warn!(number = att.number, error = %e, "attestation not delivered");
                "unreachable"
            }
        };
        self.metrics.attestations.with_label_values(&[label]).inc();
    }

    async fn resend_if_stale(&self) {
        let due = {
            let last = self.last_attested.lock().unwrap_or_else(PoisonError::into_inner);
            match &*last {
                Some((att, at)) if at.elapsed() >= RESEND_AFTER => Some(att.clone()),
                _ => None,
            }
        };
        let Some(att) = due else { return };
        let finalized: Option<RpcBlock> = self
            .rpc("eth_getBlockByNumber", json!(["finalized", false]))
            .await
            .ok()
            .flatten();
        let finalized = finalized.map_or(0, |b| b.header.inner.number);
        self.sequencer_finalized.store(finalized, Ordering::Release);
        self.metrics.finalized.set(finalized as i64);
        if finalized < att.number {
            self.post_attestation(&att).await;
        }
        *self.last_attested.lock().unwrap_or_else(PoisonError::into_inner) = Some((att, Instant::now()));
    }

    async fn refuse(&self, number: u64, refusal: Refusal) {
        let reason = match &refusal {
            Refusal::StateRoot { expected, got } => {
                format!("block {number}: state root mismatch: re-execution gives {expected}, header has {got}")
            }
            Refusal::Invalid(why) => why.clone(),
        };
        tracing::error!(number, reason = %reason, "refusing the sequencer's block; not signing and no longer following");
        self.metrics.alerts.inc();
        let (expected, got) = match refusal {
            Refusal::StateRoot { expected, got } => (expected, got),
            // No root of ours to compare: the alert names the header's root against zero.
            Refusal::Invalid(_) => (B256::ZERO, self.header_root(number).await.unwrap_or_default()),
        };
        self.alerts.lock().unwrap_or_else(PoisonError::into_inner).push(Alert {
            number,
            expected_state_root: expected,
            got_state_root: got,
            operator: self.address,
            time: jiff::Timestamp::now(),
        });
        let digest = alert_digest(
            self.chain.config.chain_id,
            self.chain.config.rollup_id,
            number,
            expected,
            got,
        );
        *self.pending_report.lock().unwrap_or_else(PoisonError::into_inner) = Some(AlertReport {
            operator: OperatorRef::Index(self.index as u64),
            number,
            expected_state_root: expected,
            got_state_root: got,
            signature: self.key.sign(digest),
        });
        *self.halted.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
        self.send_pending_report().await;
    }

    async fn header_root(&self, number: u64) -> Option<B256> {
        let block: Option<RpcBlock> = self
            .rpc("eth_getBlockByNumber", json!([format!("{number:#x}"), false]))
            .await
            .ok()
            .flatten();
        block.map(|b| b.header.inner.state_root)
    }

    /// Reports the alert to the sequencer until it is recorded there.
    async fn send_pending_report(&self) {
        let Some(report) = self
            .pending_report
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        else {
            return;
        };
        let result = self
            .http
            .post(format!("{}/mach/v1/alerts", self.url))
            .json(&report)
            .send()
            .await;
        match result {
            Ok(r) if r.status().is_success() => {
                *self.pending_report.lock().unwrap_or_else(PoisonError::into_inner) = None;
            }
            Ok(r) if r.status().is_client_error() => {
                // Refused for good (the sequencer does not recognise the root): keep our own alert.
                tracing::warn!(status = %r.status(), "sequencer refused the alert report");
                *self.pending_report.lock().unwrap_or_else(PoisonError::into_inner) = None;
            }
            Ok(r) => tracing::warn!(status = %r.status(), "alert report not recorded yet"),
            Err(e) => tracing::warn!(error = %e, "alert report not delivered yet"),
        }
    }

    async fn rpc<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T, VerifierError> {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let mut resp = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| VerifierError::Rpc(format!("{method}: {}", error_chain(&e))))?;
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| VerifierError::Rpc(e.to_string()))? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(VerifierError::Rpc(format!("{method}: response too large")));
            }
            bytes.extend_from_slice(&chunk);
        }
        let mut v: Value =
            serde_json::from_slice(&bytes).map_err(|e| VerifierError::Rpc(format!("{method}: bad JSON: {e}")))?;
        if let Some(err) = v.get("error") {
            return Err(VerifierError::Rpc(format!("{method}: {err}")));
        }
        let result = v.get_mut("result").map(Value::take).unwrap_or(Value::Null);
        serde_json::from_value(result).map_err(|e| VerifierError::Rpc(format!("{method}: unexpected result: {e}")))
    }
}

/// `error: cause: cause`, so "error sending request" says why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
