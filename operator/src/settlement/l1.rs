//! Client for the L1 settlement contract (`IFlashSettlement`, docs/node-api.md): prepare, sign and
//! broadcast the settlement transaction as separate steps so the intent can be recorded first.

use std::fmt;
use std::time::Duration;

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::network::{Ethereum, TxSignerSync};
use alloy::primitives::aliases::U96;
use alloy::primitives::{Address, B256, Bytes, TxKind, U256, keccak256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{Panic, Revert, SolCall, SolError, SolInterface, SolValue};
use alloy::transports::{RpcError, TransportErrorKind};

use super::node::Certificate;

alloy::sol! {
    /// The L1 settlement contract, as documented in docs/node-api.md.
    #[sol(all_derives)]
    interface IFlashSettlement {
        error AlreadyRegistered(bytes32 rollupId);
        error InvalidPublicKey(uint256 index);
        error UnknownRollup(bytes32 rollupId);
        error NotRegistrar(bytes32 rollupId, address caller);
        error AlreadySettled(bytes32 rollupId, uint64 number);
        error BadBitmap(uint256 signerBitmap, uint256 operatorCount);
        error SignerWithoutKey(uint256 index);
        error QuorumNotMet(uint256 signedStake, uint256 totalStake, uint16 quorumBps);
        error InvalidCertificatePoint();
        error BadSignature();

        event RollupSettled(bytes32 indexed rollupId, uint64 number, bytes32 blockHash, bytes32 stateRoot);

        function registerRollup(bytes32 rollupId, uint64 chainId, uint256[2][] g1PublicKeys, uint96[] stakes, uint16 quorumBps);
        function settle(bytes32 rollupId, uint64 number, bytes32 blockHash, bytes32 stateRoot, uint256 signerBitmap, uint256[4] apkG2, uint256[2] sigma);
        function settlement(bytes32 rollupId) view returns (bool settled, uint64 number, bytes32 blockHash, bytes32 stateRoot);
        function isRegistered(bytes32 rollupId) view returns (bool);
        function rollup(bytes32 rollupId) view returns (address registrar, uint64 chainId, uint16 quorumBps, uint16 operatorCount, uint256 totalStake);
        function operatorAt(bytes32 rollupId, uint256 index) view returns (uint256[2] g1, uint96 stake);
    }
}

/// Margin over `eth_estimateGas`: the signed transaction cannot be changed once its intent is
/// recorded, so it must not run out of gas if state shifts slightly before inclusion.
const GAS_HEADROOM_PERCENT: u64 = 20;
/// RPC error messages land in conditions and logs; keep them short.
const MAX_MESSAGE_CHARS: usize = 300;

/// Failure talking to the L1 or preparing a transaction for it.
#[derive(Debug, thiserror::Error)]
pub enum L1Error {
    /// Connection failed, timed out, or the endpoint is overloaded (HTTP 429/5xx).
    #[error("L1 RPC unreachable: {0}")]
    Unreachable(String),
    /// The endpoint serves another chain than the FlashRollup names.
    #[error("L1 RPC serves chain {got}, expected {expected}: refusing to sign")]
    WrongChain {
        /// Chain id from the FlashRollup.
        expected: u64,
        /// Chain id the endpoint reported.
        got: u64,
    },
    /// The contract call would revert (found while estimating gas), with its reason.
    #[error("transaction would revert: {0}")]
    Reverted(String),
    /// The node already has a transaction with this nonce mined: look for the receipt.
    #[error("nonce too low: {0}")]
    NonceTooLow(String),
    /// The signer key is unusable. Never carries any part of the key.
    #[error("L1 signer key is invalid: {0}")]
    BadKey(&'static str),
    /// Any other RPC failure.
    #[error("L1 RPC error: {0}")]
    Rpc(String),
}

impl L1Error {
    /// Stable label for metrics and condition reasons.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "l1_unreachable",
            Self::WrongChain { .. } => "l1_wrong_chain",
            Self::Reverted(_) => "l1_reverted",
            Self::NonceTooLow(_) => "l1_nonce_too_low",
            Self::BadKey(_) => "l1_bad_key",
            Self::Rpc(_) => "l1_rpc",
        }
    }

    /// Whether retrying the same call later may succeed without anyone changing the spec or
    /// the Secret. RPC error responses count as transient: most are node-side conditions
    /// (rate limits, missing headers, an unfunded signer that someone tops up).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable(_) | Self::Rpc(_))
    }
}

/// A signed transaction that has not been sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedTx {
    /// Nonce it uses.
    pub nonce: u64,
    /// Its hash (known before sending).
    pub tx_hash: B256,
    /// EIP-2718 encoding, ready for `eth_sendRawTransaction`.
    pub raw: Bytes,
    /// Address that signed it.
    pub signer: Address,
}

/// What the operator needs from a receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiptInfo {
    /// Block that included the transaction.
    pub block_number: u64,
    /// Whether it executed without reverting.
    pub success: bool,
    /// Gas it used.
    pub gas_used: u64,
}

/// The final state the contract recorded for a rollup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SettledRecord {
    /// Final block number.
    pub number: u64,
    /// Final block hash.
    pub block_hash: B256,
    /// Final state root.
    pub state_root: B256,
}

/// A rollup's registration as the contract holds it (`rollup(bytes32)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The account that registered it, the only one that may settle it.
    pub registrar: Address,
    /// The rollup's chain id, bound into the signed message.
    pub chain_id: u64,
    /// Quorum in basis points.
    pub quorum_bps: u16,
    /// Size of the registered operator set.
    pub operator_count: u16,
    /// Sum of the registered stakes.
    pub total_stake: U256,
}

/// The operator set to register for a rollup, in signer-bitmap order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorSetRegistration {
    /// The rollup's EVM chain id (`spec.chain.chainId`).
    pub chain_id: u64,
    /// `[X, Y]` of each operator's G1 key; `[0, 0]` for an operator without a usable key.
    pub g1_public_keys: Vec<[U256; 2]>,
    /// Each operator's stake.
    pub stakes: Vec<U96>,
    /// `quorumStakePercent * 100`.
    pub quorum_bps: u16,
}

impl OperatorSetRegistration {
    /// Whether the contract's record is this set, as far as `rollup(bytes32)` shows it.
    pub fn matches(&self, r: &Registration) -> bool {
        let total: U256 = self.stakes.iter().map(|s| U256::from(*s)).sum();
        r.chain_id == self.chain_id
            && r.quorum_bps == self.quorum_bps
            && usize::from(r.operator_count) == self.stakes.len()
            && r.total_stake == total
    }
}

/// Parses a G1 public key as an AVSOperator spec holds it (`0x` + x ‖ y, 32 bytes each).
pub fn parse_g1(hex: &str) -> Option<[U256; 2]> {
    let s = hex.trim().strip_prefix("0x")?;
    let bytes: [u8; 64] = alloy::hex::decode_to_array(s).ok()?;
    Some([U256::from_be_slice(&bytes[..32]), U256::from_be_slice(&bytes[32..])])
}

/// The address of a signer key, without keeping the key.
pub fn signer_address(key_hex: &str) -> Result<Address, L1Error> {
    parse_key(key_hex).map(|k| k.address())
}

/// Rollup id on the settlement contract. The UID makes a re-created object with the same name a
/// different rollup, so an old settlement can never be mistaken for the new one.
pub fn rollup_id(namespace: &str, name: &str, uid: &str) -> B256 {
    keccak256(format!("flashlayer/v1/{namespace}/{name}/{uid}"))
}

/// The message verifiers sign for a block:
/// `keccak256(abi.encode(chainId, rollupId, number, blockHash, stateRoot))`.
pub fn attestation_digest(chain_id: u64, rollup_id: B256, number: u64, block_hash: B256, state_root: B256) -> B256 {
    keccak256((chain_id, rollup_id, number, block_hash, state_root).abi_encode_params())
}

/// Calldata of `settle` for a certificate.
pub fn settle_calldata(rollup_id: B256, cert: &Certificate) -> Bytes {
    IFlashSettlement::settleCall {
        rollupId: rollup_id,
        number: cert.number,
        blockHash: cert.block_hash,
        stateRoot: cert.state_root,
        signerBitmap: cert.signer_bitmap,
        apkG2: cert.apk_g2,
        sigma: cert.sigma,
    }
    .abi_encode()
    .into()
}

/// Parses a hex private key (optional `0x`, surrounding whitespace from a Secret file ignored).
fn parse_key(key_hex: &str) -> Result<PrivateKeySigner, L1Error> {
    let s = key_hex.trim();
    let s = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    const SHAPE: &str = "expected 32 bytes as 64 hex digits";
    if s.len() != 64 {
        return Err(L1Error::BadKey(SHAPE));
    }
    // Decoding errors are replaced, not wrapped: hex errors quote the offending character.
    let bytes: [u8; 32] = alloy::hex::decode_to_array(s).map_err(|_| L1Error::BadKey(SHAPE))?;
    PrivateKeySigner::from_bytes(&B256::from(bytes)).map_err(|_| L1Error::BadKey("not a valid secp256k1 private key"))
}

/// Client for one L1 endpoint and one settlement contract.
#[derive(Clone)]
pub struct L1Client {
    provider: RootProvider<Ethereum>,
    chain_id: u64,
    contract: Address,
    /// The full URL may hold an API key in its path or query; errors show only this.
    endpoint: String,
    full_url: String,
}

impl fmt::Debug for L1Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("L1Client")
            .field("endpoint", &self.endpoint)
            .field("chain_id", &self.chain_id)
            .field("contract", &self.contract)
            .finish()
    }
}

impl L1Client {
    /// Client for `rpc_url` (http or https) that only ever signs for `chain_id`.
    pub fn new(rpc_url: &str, chain_id: u64, contract: Address) -> Result<Self, L1Error> {
        let url = reqwest::Url::parse(rpc_url).map_err(|e| L1Error::Rpc(format!("invalid L1 RPC URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(L1Error::Rpc("L1 RPC URL must be http or https".into()));
        }
        let endpoint = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default())
            + &url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            // A redirect would resend the signed transaction and the URL's credentials elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| L1Error::Rpc(format!("building HTTP client: {e}")))?;
        let full_url = url.to_string();
        let provider = RootProvider::new(RpcClient::new_http_with_client(http, url));
        Ok(Self {
            provider,
            chain_id,
            contract,
            endpoint,
            full_url,
        })
    }

    /// The expected L1 chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The settlement contract.
    pub fn contract(&self) -> Address {
        self.contract
    }

    /// Builds, checks (chain, nonce, gas: refuses if it would revert, fees) and signs the
    /// `settle` transaction for `cert`, without sending it.
    pub async fn prepare_settle(
        &self,
        signer_key_hex: &str,
        rollup_id: B256,
        cert: &Certificate,
    ) -> Result<PreparedTx, L1Error> {
        let signer = parse_key(signer_key_hex)?;
        self.check_chain().await?;
        self.prepare(&signer, settle_calldata(rollup_id, cert)).await
    }

    /// `eth_sendRawTransaction`. A node that already has the transaction counts as success, so
    /// re-sending a recorded intent after a restart is safe.
    pub async fn broadcast(&self, raw: &Bytes) -> Result<B256, L1Error> {
        // EIP-2718 typed transactions hash to keccak256 of their envelope.
        let local_hash = keccak256(raw);
        match self.provider.send_raw_transaction(raw).await {
            Ok(pending) => Ok(*pending.tx_hash()),
            Err(RpcError::ErrorResp(p)) => {
                let msg = p.message.to_lowercase();
                if msg.contains("already known")
                    || msg.contains("known transaction")
                    || msg.contains("already imported")
                {
                    Ok(local_hash)
                } else if msg.contains("nonce too low") {
                    Err(L1Error::NonceTooLow(truncate(&p.message)))
                } else {
                    Err(L1Error::Rpc(truncate(&format!("{} (code {})", p.message, p.code))))
                }
            }
            Err(e) => Err(self.map_err(e)),
        }
    }

    /// Receipt of a transaction; `None` while it is not included.
    pub async fn receipt(&self, tx_hash: B256) -> Result<Option<ReceiptInfo>, L1Error> {
        let receipt = self
            .provider
            .get_transaction_receipt(tx_hash)
            .await
            .map_err(|e| self.map_err(e))?;
        Ok(receipt.and_then(|r| {
            r.block_number.map(|block_number| ReceiptInfo {
                block_number,
                success: r.status(),
                gas_used: r.gas_used,
            })
        }))
    }

    /// Transactions of `address` mined so far (its nonce at the latest block).
    pub async fn mined_nonce(&self, address: Address) -> Result<u64, L1Error> {
        self.provider
            .get_transaction_count(address)
            .latest()
            .await
            .map_err(|e| self.map_err(e))
    }

    /// Whether a signed transaction that has no receipt can never be mined any more: its
    /// signer's nonce has moved past it (another transaction took the nonce). Reads the nonce
    /// first and the receipt again after, so our own transaction mined in between is not
    /// mistaken for another.
    pub async fn is_superseded(&self, tx_hash: B256, signer: Address, nonce: u64) -> Result<bool, L1Error> {
        if self.mined_nonce(signer).await? <= nonce {
            return Ok(false);
        }
        Ok(self.receipt(tx_hash).await?.is_none())
    }

    /// Latest L1 block number (for counting confirmations).
    pub async fn block_number(&self) -> Result<u64, L1Error> {
        self.provider.get_block_number().await.map_err(|e| self.map_err(e))
    }

    /// What the contract recorded for the rollup, `None` if it is not settled.
    pub async fn settlement_of(&self, rollup_id: B256) -> Result<Option<SettledRecord>, L1Error> {
        // "Settled" ends the rollup's life; it must come from the chain the spec names.
        self.check_chain().await?;
        let out = self
            .view(IFlashSettlement::settlementCall { rollupId: rollup_id })
            .await?;
        Ok(out.settled.then_some(SettledRecord {
            number: out.number,
            block_hash: out.blockHash,
            state_root: out.stateRoot,
        }))
    }

    /// The `RollupSettled` log of the rollup, if any: `(transaction hash, L1 block)`. Scans the
    /// whole chain, so it is only a fallback for a settlement whose transaction is not known.
    pub async fn settled_log(&self, rollup_id: B256) -> Result<Option<(B256, u64)>, L1Error> {
        use alloy::sol_types::SolEvent;
        let filter = alloy::rpc::types::Filter::new()
            .address(self.contract)
            .event_signature(IFlashSettlement::RollupSettled::SIGNATURE_HASH)
            .topic1(rollup_id)
            .from_block(0u64);
        let logs = self.provider.get_logs(&filter).await.map_err(|e| self.map_err(e))?;
        Ok(logs
            .into_iter()
            .find_map(|l| Some((l.transaction_hash?, l.block_number?))))
    }

    /// Whether the rollup is registered on the contract.
    pub async fn is_registered(&self, rollup_id: B256) -> Result<bool, L1Error> {
        self.view(IFlashSettlement::isRegisteredCall { rollupId: rollup_id })
            .await
    }

    /// The rollup's registration, `None` if the id is not registered. The registrar tells whose
    /// registration it is: an id registered by another account is not ours to settle.
    pub async fn registrar_of(&self, rollup_id: B256) -> Result<Option<Registration>, L1Error> {
        self.check_chain().await?;
        let out = self.view(IFlashSettlement::rollupCall { rollupId: rollup_id }).await?;
        Ok((out.registrar != Address::ZERO).then_some(Registration {
            registrar: out.registrar,
            chain_id: out.chainId,
            quorum_bps: out.quorumBps,
            operator_count: out.operatorCount,
            total_stake: out.totalStake,
        }))
    }

    /// Operator `index` of a registered set: its G1 key and stake.
    pub async fn operator_at(&self, rollup_id: B256, index: u64) -> Result<([U256; 2], U96), L1Error> {
        let out = self
            .view(IFlashSettlement::operatorAtCall {
                rollupId: rollup_id,
                index: U256::from(index),
            })
            .await?;
        Ok((out.g1, out.stake))
    }

    /// Builds, checks (chain, nonce, gas: refuses if it would revert, fees) and signs the
    /// `registerRollup` transaction for `set`, without sending it.
    pub async fn prepare_register(
        &self,
        signer_key_hex: &str,
        rollup_id: B256,
        set: &OperatorSetRegistration,
    ) -> Result<PreparedTx, L1Error> {
        let signer = parse_key(signer_key_hex)?;
        self.check_chain().await?;
        let calldata = IFlashSettlement::registerRollupCall {
            rollupId: rollup_id,
            chainId: set.chain_id,
            g1PublicKeys: set.g1_public_keys.clone(),
            stakes: set.stakes.clone(),
            quorumBps: set.quorum_bps,
        }
        .abi_encode();
        self.prepare(&signer, calldata.into()).await
    }

    /// Registers the rollup's operator set unless it already is (`Ok(None)`); otherwise signs
    /// and sends `registerRollup` and returns its hash. The caller waits for that receipt
    /// before calling again, or a second transaction would be sent and revert.
    pub async fn register_rollup(
        &self,
        signer_key_hex: &str,
        rollup_id: B256,
        rollup_chain_id: u64,
        g1_public_keys: &[[U256; 2]],
        stakes: &[U96],
        quorum_bps: u16,
    ) -> Result<Option<B256>, L1Error> {
        let signer = parse_key(signer_key_hex)?;
        self.check_chain().await?;
        if self.is_registered(rollup_id).await? {
            return Ok(None);
        }
        let calldata = IFlashSettlement::registerRollupCall {
            rollupId: rollup_id,
            chainId: rollup_chain_id,
            g1PublicKeys: g1_public_keys.to_vec(),
            stakes: stakes.to_vec(),
            quorumBps: quorum_bps,
        }
        .abi_encode();
        let tx = self.prepare(&signer, calldata.into()).await?;
        self.broadcast(&tx.raw).await.map(Some)
    }

    /// Nonce, gas, fees and signature; the caller has already checked the chain id, which the
    /// signature commits to.
    async fn prepare(&self, signer: &PrivateKeySigner, calldata: Bytes) -> Result<PreparedTx, L1Error> {
        let from = signer.address();
        let nonce = self
            .provider
            .get_transaction_count(from)
            .pending()
            .await
            .map_err(|e| self.map_err(e))?;
        let request = TransactionRequest::default()
            .from(from)
            .to(self.contract)
            .input(calldata.clone().into());
        let estimate = self
            .provider
            .estimate_gas(request)
            .await
            .map_err(|e| self.map_revert(e))?;
        let fees = self
            .provider
            .estimate_eip1559_fees()
            .await
            .map_err(|e| self.map_err(e))?;
        let mut tx = TxEip1559 {
            chain_id: self.chain_id,
            nonce,
            gas_limit: estimate.saturating_add(estimate.saturating_mul(GAS_HEADROOM_PERCENT) / 100),
            max_fee_per_gas: fees.max_fee_per_gas,
            max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
            to: TxKind::Call(self.contract),
            value: U256::ZERO,
            access_list: Default::default(),
            input: calldata,
        };
        let signature = signer
            .sign_transaction_sync(&mut tx)
            .map_err(|_| L1Error::BadKey("signing failed"))?;
        let envelope = TxEnvelope::from(tx.into_signed(signature));
        Ok(PreparedTx {
            nonce,
            tx_hash: *envelope.tx_hash(),
            raw: envelope.encoded_2718().into(),
            signer: from,
        })
    }

    async fn check_chain(&self) -> Result<(), L1Error> {
        let got = self.provider.get_chain_id().await.map_err(|e| self.map_err(e))?;
        if got != self.chain_id {
            return Err(L1Error::WrongChain {
                expected: self.chain_id,
                got,
            });
        }
        Ok(())
    }

    async fn view<C: SolCall>(&self, call: C) -> Result<C::Return, L1Error> {
        let request = TransactionRequest::default()
            .to(self.contract)
            .input(Bytes::from(call.abi_encode()).into());
        // "latest": a view must describe mined state (a node may default to "pending", where a
        // transaction still in the pool already shows as settled).
        let out = self
            .provider
            .call(request)
            .latest()
            .await
            .map_err(|e| self.map_err(e))?;
        C::abi_decode_returns(&out).map_err(|e| {
            L1Error::Rpc(format!(
                "unexpected return data from {} (is {} the settlement contract?): {e}",
                C::SIGNATURE,
                self.contract
            ))
        })
    }

    /// Like `map_err`, but an error response that reports a revert becomes `Reverted` with the
    /// decoded reason.
    fn map_revert(&self, e: RpcError<TransportErrorKind>) -> L1Error {
        if let RpcError::ErrorResp(p) = &e
            && p.message.to_lowercase().contains("revert")
        {
            let reason = match p.as_revert_data() {
                Some(data) => revert_reason(&data),
                None => p.message.to_string(),
            };
            return L1Error::Reverted(truncate(&reason));
        }
        self.map_err(e)
    }

    fn map_err(&self, e: RpcError<TransportErrorKind>) -> L1Error {
        match e {
            RpcError::ErrorResp(p) => L1Error::Rpc(truncate(&format!("{} (code {})", p.message, p.code))),
            RpcError::Transport(TransportErrorKind::HttpError(h)) if h.status == 429 || h.status >= 500 => {
                L1Error::Unreachable(format!("HTTP {}", h.status))
            }
            RpcError::Transport(TransportErrorKind::HttpError(h)) => L1Error::Rpc(format!("HTTP {}", h.status)),
            RpcError::Transport(TransportErrorKind::HttpErrorWithRetryAfter { error, .. }) => {
                L1Error::Unreachable(format!("HTTP {}", error.status))
            }
            RpcError::Transport(kind) => L1Error::Unreachable(truncate(&self.redact(&root_cause(&kind)))),
            // The body of a malformed response may be huge or echo the request; leave it out.
            RpcError::DeserError { err, .. } => L1Error::Rpc(format!("malformed response: {err}")),
            RpcError::NullResp => L1Error::Rpc("null response".into()),
            other => L1Error::Rpc(truncate(&self.redact(&other.to_string()))),
        }
    }

    fn redact(&self, msg: &str) -> String {
        msg.replace(&self.full_url, &self.endpoint)
            .replace(self.full_url.trim_end_matches('/'), &self.endpoint)
    }
}

fn revert_reason(data: &[u8]) -> String {
    if let Ok(r) = Revert::abi_decode(data) {
        return r.reason;
    }
    if let Ok(p) = Panic::abi_decode(data) {
        return match p.kind() {
            Some(kind) => format!("panic: {kind}"),
            None => format!("panic: code {}", p.code),
        };
    }
    if let Ok(e) = IFlashSettlement::IFlashSettlementErrors::abi_decode(data) {
        // `Variant(Variant { fields })`: keep the inner part, and the selector for searching.
        let shown = format!("{e:?}");
        let inner = match shown.split_once('(') {
            Some((_, inner)) => inner.strip_suffix(')').unwrap_or(inner).to_owned(),
            None => shown,
        };
        return format!("{inner} (custom error 0x{})", alloy::hex::encode(&data[..4]));
    }
    match data.get(..4) {
        Some(selector) => format!("custom error 0x{}", alloy::hex::encode(selector)),
        None => "no reason given".into(),
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if std::ptr::addr_eq(cause, e) {
        e.to_string()
    } else {
        format!("{e}: {cause}")
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(MAX_MESSAGE_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::eips::eip2718::Decodable2718;
    use axum::Router;
    use axum::extract::State;
    use axum::routing::post;
    use serde_json::{Value, json};
    use std::sync::{Arc, Mutex};

    /// anvil's first dev account; public knowledge, never used outside tests.
    const KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    const KEY_ADDRESS: Address = alloy::primitives::address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    const CONTRACT: Address = Address::repeat_byte(0xcc);

    type Handler = dyn Fn(&str, &Value) -> Result<Value, Value> + Send + Sync;

    struct Fake {
        handler: Box<Handler>,
        calls: Mutex<Vec<String>>,
    }

    /// A JSON-RPC endpoint that answers each method through `handler` and records the calls.
    async fn fake_rpc(
        handler: impl Fn(&str, &Value) -> Result<Value, Value> + Send + Sync + 'static,
    ) -> (String, Arc<Fake>) {
        let fake = Arc::new(Fake {
            handler: Box::new(handler),
            calls: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route(
                "/",
                post(|State(fake): State<Arc<Fake>>, body: String| async move {
                    let req: Value = serde_json::from_str(&body).expect("json request");
                    let method = req["method"].as_str().unwrap_or_default().to_string();
                    fake.calls.lock().expect("lock").push(method.clone());
                    let mut resp = json!({ "jsonrpc": "2.0", "id": req["id"] });
                    match (fake.handler)(&method, &req["params"]) {
                        Ok(v) => resp["result"] = v,
                        Err(e) => resp["error"] = e,
                    }
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        resp.to_string(),
                    )
                }),
            )
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        (format!("http://{addr}"), fake)
    }

    fn calls(fake: &Fake) -> Vec<String> {
        fake.calls.lock().expect("lock").clone()
    }

    fn cert() -> Certificate {
        Certificate {
            chain_id: 901337,
            rollup_id: B256::repeat_byte(0x33),
            number: 42,
            block_hash: B256::repeat_byte(0x11),
            state_root: B256::repeat_byte(0x22),
            signer_bitmap: U256::from(0b101),
            signers: vec![Address::repeat_byte(1), Address::repeat_byte(3)],
            signed_stake: U256::from(200),
            total_stake: U256::from(300),
            apk_g2: [U256::from(1), U256::from(2), U256::from(3), U256::from(4)],
            sigma: [U256::from(5), U256::from(6)],
        }
    }

    /// Answers a well-behaved L1 on chain 31337 would give up to (not including) sending.
    fn healthy(method: &str, _params: &Value) -> Result<Value, Value> {
        match method {
            "eth_chainId" => Ok(json!("0x7a69")),
            "eth_getTransactionCount" => Ok(json!("0x7")),
            "eth_estimateGas" => Ok(json!("0x186a0")),
            "eth_feeHistory" => Ok(json!({
                "oldestBlock": "0x1",
                "baseFeePerGas": ["0x3b9aca00", "0x3b9aca00"],
                "gasUsedRatio": [0.5],
                "reward": [["0x3b9aca00"]],
            })),
            m => Err(json!({ "code": -32601, "message": format!("no {m}") })),
        }
    }

    #[test]
    fn rollup_id_is_keccak_of_path_and_depends_on_uid() {
        let a = rollup_id("games", "mint-weekend", "uid-1");
        assert_eq!(a, keccak256("flashlayer/v1/games/mint-weekend/uid-1"));
        assert_eq!(a, rollup_id("games", "mint-weekend", "uid-1"));
        assert_ne!(a, rollup_id("games", "mint-weekend", "uid-2"));
    }

    #[test]
    fn settle_calldata_matches_abi() {
        let sig = "settle(bytes32,uint64,bytes32,bytes32,uint256,uint256[4],uint256[2])";
        assert_eq!(IFlashSettlement::settleCall::SIGNATURE, sig);
        let data = settle_calldata(B256::repeat_byte(0x33), &cert());
        assert_eq!(data[..4], keccak256(sig)[..4]);
        // All parameters are static: 11 words after the selector, in declaration order.
        assert_eq!(data.len(), 4 + 11 * 32);
        let word = |i: usize| &data[4 + 32 * i..4 + 32 * (i + 1)];
        assert_eq!(word(0), B256::repeat_byte(0x33).as_slice());
        assert_eq!(U256::from_be_slice(word(1)), U256::from(42));
        assert_eq!(word(3), B256::repeat_byte(0x22).as_slice());
        assert_eq!(U256::from_be_slice(word(4)), U256::from(5));
        assert_eq!(U256::from_be_slice(word(8)), U256::from(4));
        assert_eq!(U256::from_be_slice(word(10)), U256::from(6));
        let decoded = IFlashSettlement::settleCall::abi_decode(&data).expect("decode");
        assert_eq!(decoded.sigma, cert().sigma);
    }

    #[test]
    fn other_selectors_match_abi() {
        assert_eq!(
            IFlashSettlement::registerRollupCall::SIGNATURE,
            "registerRollup(bytes32,uint64,uint256[2][],uint96[],uint16)"
        );
        assert_eq!(IFlashSettlement::settlementCall::SIGNATURE, "settlement(bytes32)");
        assert_eq!(IFlashSettlement::isRegisteredCall::SIGNATURE, "isRegistered(bytes32)");
        assert_eq!(IFlashSettlement::rollupCall::SIGNATURE, "rollup(bytes32)");
        assert_eq!(
            IFlashSettlement::operatorAtCall::SIGNATURE,
            "operatorAt(bytes32,uint256)"
        );
        use alloy::sol_types::SolEvent;
        assert_eq!(
            IFlashSettlement::RollupSettled::SIGNATURE_HASH,
            keccak256("RollupSettled(bytes32,uint64,bytes32,bytes32)")
        );
    }

    #[test]
    fn attestation_digest_is_abi_encode_of_five_words() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&U256::from(901337).to_be_bytes::<32>());
        buf.extend_from_slice(B256::repeat_byte(0x33).as_slice());
        buf.extend_from_slice(&U256::from(42).to_be_bytes::<32>());
        buf.extend_from_slice(B256::repeat_byte(0x11).as_slice());
        buf.extend_from_slice(B256::repeat_byte(0x22).as_slice());
        let c = cert();
        assert_eq!(
            attestation_digest(c.chain_id, c.rollup_id, c.number, c.block_hash, c.state_root),
            keccak256(&buf)
        );
    }

    #[test]
    fn key_formats_accepted() {
        for k in [
            KEY.to_string(),
            format!("0x{KEY}"),
            format!("0X{KEY}\n"),
            format!("  {}  ", KEY.to_uppercase()),
        ] {
            assert_eq!(parse_key(&k).expect("valid").address(), KEY_ADDRESS);
        }
    }

    #[test]
    fn bad_keys_are_rejected_without_leaking() {
        let mut nonhex = KEY.to_string();
        nonhex.replace_range(10..11, "z");
        let bad = [
            KEY[..63].to_string(),
            format!("{KEY}00"),
            nonhex,
            "0".repeat(64),
            "f".repeat(64),
        ];
        for k in &bad {
            let err = parse_key(k).expect_err("invalid");
            assert_eq!(err.label(), "l1_bad_key");
            assert!(!err.is_transient());
            let shown = format!("{err} {err:?}");
            // No 8-character window of the key may appear.
            for w in k.as_bytes().windows(8) {
                let w = std::str::from_utf8(w).expect("ascii");
                assert!(!shown.contains(w), "{shown} leaks {w}");
            }
        }
    }

    #[tokio::test]
    async fn bad_key_fails_before_any_rpc() {
        let (url, fake) = fake_rpc(healthy).await;
        let l1 = L1Client::new(&url, 31337, CONTRACT).expect("client");
        let err = l1
            .prepare_settle("0xnot-a-key", B256::ZERO, &cert())
            .await
            .expect_err("bad key");
        assert_eq!(err.label(), "l1_bad_key");
        assert!(!format!("{err:?}").contains("not-a-key"));
        assert!(calls(&fake).is_empty());
    }

    #[tokio::test]
    async fn wrong_chain_is_refused_before_signing() {
        let (url, fake) = fake_rpc(|m, p| match m {
            "eth_chainId" => Ok(json!("0x1")),
            _ => healthy(m, p),
        })
        .await;
        let l1 = L1Client::new(&url, 31337, CONTRACT).expect("client");
        let err = l1
            .prepare_settle(KEY, B256::ZERO, &cert())
            .await
            .expect_err("wrong chain");
        assert!(matches!(
            err,
            L1Error::WrongChain {
                expected: 31337,
                got: 1
            }
        ));
        assert_eq!(err.label(), "l1_wrong_chain");
        assert_eq!(calls(&fake), ["eth_chainId"]);
    }

    #[tokio::test]
    async fn prepare_settle_signs_without_sending() {
        let (url, fake) = fake_rpc(healthy).await;
        let l1 = L1Client::new(&url, 31337, CONTRACT).expect("client");
        let rid = B256::repeat_byte(0x33);
        let tx = l1.prepare_settle(KEY, rid, &cert()).await.expect("prepared");
        assert_eq!(tx.nonce, 7);
        assert_eq!(tx.signer, KEY_ADDRESS);
        assert_eq!(tx.tx_hash, keccak256(&tx.raw));
        assert!(!calls(&fake).iter().any(|m| m == "eth_sendRawTransaction"));

        let envelope = TxEnvelope::decode_2718(&mut tx.raw.as_ref()).expect("2718");
        let signed = envelope.as_eip1559().expect("eip1559");
        let inner = signed.tx();
        assert_eq!(inner.chain_id, 31337);
        assert_eq!(inner.nonce, 7);
        assert_eq!(inner.gas_limit, 120_000);
        assert_eq!(inner.to, TxKind::Call(CONTRACT));
        assert_eq!(inner.input, settle_calldata(rid, &cert()));
        assert!(inner.max_fee_per_gas >= inner.max_priority_fee_per_gas);
        let from = signed
            .signature()
            .recover_address_from_prehash(&signed.signature_hash())
            .expect("recover");
        assert_eq!(from, KEY_ADDRESS);
    }

    #[tokio::test]
    async fn revert_during_estimate_is_refused_with_reason() {
        let (url, _) = fake_rpc(|m, p| match m {
            "eth_estimateGas" => Err(json!({
                "code": 3,
                "message": "execution reverted: already settled",
                "data": Bytes::from(Revert::from("already settled").abi_encode()),
            })),
            _ => healthy(m, p),
        })
        .await;
        let l1 = L1Client::new(&url, 31337, CONTRACT).expect("client");
        let err = l1.prepare_settle(KEY, B256::ZERO, &cert()).await.expect_err("revert");
        assert_eq!(err.label(), "l1_reverted");
        assert!(!err.is_transient());
        assert_eq!(err.to_string(), "transaction would revert: already settled");
    }

    #[test]
    fn revert_reasons_decode() {
        assert_eq!(revert_reason(&Revert::from("quorum").abi_encode()), "quorum");
        assert_eq!(
            revert_reason(&Panic::from(0x11).abi_encode()),
            "panic: arithmetic underflow or overflow"
        );
        assert_eq!(revert_reason(&[1, 2, 3, 4, 5]), "custom error 0x01020304");
        let settled = IFlashSettlement::AlreadySettled {
            rollupId: B256::repeat_byte(0x33),
            number: 12,
        }
        .abi_encode();
        let shown = revert_reason(&settled);
        assert!(shown.starts_with("AlreadySettled {"), "{shown}");
        assert!(shown.contains("number: 12"), "{shown}");
        assert!(
            shown.ends_with(&format!(
                "(custom error 0x{})",
                alloy::hex::encode(IFlashSettlement::AlreadySettled::SELECTOR)
            )),
            "{shown}"
        );
        assert_eq!(
            revert_reason(&IFlashSettlement::BadSignature {}.abi_encode()),
            format!(
                "BadSignature (custom error 0x{})",
                alloy::hex::encode(IFlashSettlement::BadSignature::SELECTOR)
            )
        );
        assert_eq!(revert_reason(&[]), "no reason given");
    }

    #[tokio::test]
    async fn broadcast_maps_known_and_nonce_errors() {
        let (url, _) = fake_rpc(|_, p| match p[0].as_str() {
            Some("0x01") => Err(json!({ "code": -32000, "message": "already known" })),
            Some("0x02") => Err(json!({ "code": -32000, "message": "Known transaction: abc" })),
            Some("0x03") => Err(json!({ "code": -32003, "message": "nonce too low: next nonce 8, tx nonce 7" })),
            Some("0x04") => Err(json!({ "code": -32000, "message": "insufficient funds for gas" })),
            _ => Ok(json!(B256::repeat_byte(0xab))),
        })
        .await;
        let l1 = L1Client::new(&url, 31337, CONTRACT).expect("client");
        for raw in [[1u8], [2u8]] {
            let raw = Bytes::copy_from_slice(&raw);
            assert_eq!(l1.broadcast(&raw).await.expect("known"), keccak256(&raw));
        }
        let err = l1.broadcast(&Bytes::from_static(&[3])).await.expect_err("nonce");
        assert_eq!(err.label(), "l1_nonce_too_low");
        assert!(!err.is_transient());
        let err = l1.broadcast(&Bytes::from_static(&[4])).await.expect_err("funds");
        assert_eq!(err.label(), "l1_rpc");
        let hash = l1.broadcast(&Bytes::from_static(&[9])).await.expect("sent");
        assert_eq!(hash, B256::repeat_byte(0xab));
    }

    #[tokio::test]
    async fn views_decode() {
        let settled = (true, 42u64, B256::repeat_byte(0x11), B256::repeat_byte(0x22)).abi_encode_params();
        let (url, _) = fake_rpc(move |m, p| match m {
            "eth_call" => {
                let input = p[0]["input"].as_str().or(p[0]["data"].as_str()).unwrap_or_default();
                let selector = alloy::hex::encode(IFlashSettlement::isRegisteredCall::SELECTOR);
                if input.starts_with(&format!("0x{selector}")) {
                    Ok(json!(Bytes::from(true.abi_encode())))
                } else {
                    Ok(json!(Bytes::from(settled.clone())))
                }
            }
            "eth_blockNumber" => Ok(json!("0x10")),
            "eth_getTransactionReceipt" => Ok(Value::Null),
            m => healthy(m, p),
        })
        .await;
        let l1 = L1Client::new(&url, 31337, CONTRACT).expect("client");
        let rec = l1.settlement_of(B256::ZERO).await.expect("view").expect("settled");
        assert_eq!(rec.number, 42);
        assert_eq!(rec.state_root, B256::repeat_byte(0x22));
        assert!(l1.is_registered(B256::ZERO).await.expect("view"));
        assert_eq!(
            l1.register_rollup(KEY, B256::ZERO, 901337, &[], &[], 6700)
                .await
                .expect("idempotent"),
            None
        );
        assert_eq!(l1.block_number().await.expect("number"), 16);
        assert_eq!(l1.receipt(B256::ZERO).await.expect("receipt"), None);
    }

    #[test]
    fn g1_keys_parse_as_the_avsoperator_holds_them() {
        let hex = format!("0x{}{}", "00".repeat(31) + "01", "00".repeat(31) + "02");
        assert_eq!(parse_g1(&hex), Some([U256::from(1), U256::from(2)]));
        assert_eq!(parse_g1(&hex[2..]), None, "0x prefix required");
        assert_eq!(parse_g1("0x1234"), None);
        assert_eq!(parse_g1(&format!("0x{}", "zz".repeat(64))), None);
        assert_eq!(signer_address(KEY).expect("key"), KEY_ADDRESS);
    }

    fn set() -> OperatorSetRegistration {
        OperatorSetRegistration {
            chain_id: 901337,
            g1_public_keys: vec![[U256::from(1), U256::from(2)], [U256::ZERO; 2]],
            stakes: vec![U96::from(100), U96::from(50)],
            quorum_bps: 6700,
        }
    }

    #[test]
    fn a_registration_matches_only_its_own_set() {
        let found = Registration {
            registrar: KEY_ADDRESS,
            chain_id: 901337,
            quorum_bps: 6700,
            operator_count: 2,
            total_stake: U256::from(150),
        };
        assert!(set().matches(&found));
        for other in [
            Registration { chain_id: 1, ..found },
            Registration {
                quorum_bps: 5100,
                ..found
            },
            Registration {
                operator_count: 3,
                ..found
            },
            Registration {
                total_stake: U256::from(151),
                ..found
            },
        ] {
            assert!(!set().matches(&other), "{other:?}");
        }
    }

    #[tokio::test]
    async fn registrar_of_decodes_the_rollup_view() {
        let registrar = Address::repeat_byte(0x77);
        let registered = (registrar, 901337u64, 6700u16, 2u16, U256::from(150)).abi_encode_params();
        let (url, _) = fake_rpc(move |m, p| match m {
            "eth_call" => {
                let input = p[0]["input"].as_str().or(p[0]["data"].as_str()).unwrap_or_default();
                let rollup = alloy::hex::encode(IFlashSettlement::rollupCall::SELECTOR);
                let id = alloy::hex::encode(B256::repeat_byte(0x01));
                if input.starts_with(&format!("0x{rollup}")) && input.ends_with(&id) {
                    Ok(json!(Bytes::from(registered.clone())))
                } else {
                    Ok(json!(Bytes::from(
                        (Address::ZERO, 0u64, 0u16, 0u16, U256::ZERO).abi_encode_params()
                    )))
                }
            }
            m => healthy(m, p),
        })
        .await;
        let l1 = L1Client::new(&url, 31337, CONTRACT).expect("client");
        let found = l1
            .registrar_of(B256::repeat_byte(0x01))
            .await
            .expect("view")
            .expect("registered");
        assert_eq!(found.registrar, registrar);
        assert_eq!(found.chain_id, 901337);
        assert_eq!(found.quorum_bps, 6700);
        assert_eq!(found.operator_count, 2);
        assert_eq!(found.total_stake, U256::from(150));
        assert_eq!(l1.registrar_of(B256::repeat_byte(0x02)).await.expect("view"), None);
    }

    #[tokio::test]
    async fn prepare_register_signs_the_set_without_sending() {
        let (url, fake) = fake_rpc(healthy).await;
        let l1 = L1Client::new(&url, 31337, CONTRACT).expect("client");
        let rid = B256::repeat_byte(0x33);
        let tx = l1.prepare_register(KEY, rid, &set()).await.expect("prepared");
        assert_eq!(tx.nonce, 7);
        assert_eq!(tx.signer, KEY_ADDRESS);
        assert!(!calls(&fake).iter().any(|m| m == "eth_sendRawTransaction"));
        let envelope = TxEnvelope::decode_2718(&mut tx.raw.as_ref()).expect("2718");
        let call = IFlashSettlement::registerRollupCall::abi_decode(&envelope.as_eip1559().expect("1559").tx().input)
            .expect("registerRollup calldata");
        assert_eq!(call.rollupId, rid);
        assert_eq!(call.chainId, 901337);
        assert_eq!(call.g1PublicKeys, set().g1_public_keys);
        assert_eq!(call.stakes, set().stakes);
        assert_eq!(call.quorumBps, 6700);
    }

    #[tokio::test]
    async fn unsettled_is_none() {
        let unsettled = (false, 0u64, B256::ZERO, B256::ZERO).abi_encode_params();
        let (url, _) = fake_rpc(move |m, p| match m {
            "eth_call" => Ok(json!(Bytes::from(unsettled.clone()))),
            m => healthy(m, p),
        })
        .await;
        let l1 = L1Client::new(&url, 31337, CONTRACT).expect("client");
        assert_eq!(l1.settlement_of(B256::ZERO).await.expect("view"), None);
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_transient_and_hides_url_secrets() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let url = format!("http://{addr}/v3/super-secret-api-key?token=abc123");
        let l1 = L1Client::new(&url, 31337, CONTRACT).expect("client");
        let err = l1.block_number().await.expect_err("closed");
        assert_eq!(err.label(), "l1_unreachable");
        assert!(err.is_transient());
        let shown = format!("{err} {err:?} {l1:?}");
        assert!(!shown.contains("super-secret-api-key"), "{shown}");
        assert!(!shown.contains("abc123"), "{shown}");
    }

    #[test]
    fn new_rejects_non_http_urls() {
        assert_eq!(
            L1Client::new("ws://127.0.0.1:8545", 1, CONTRACT)
                .expect_err("ws")
                .label(),
            "l1_rpc"
        );
        assert!(L1Client::new("not a url", 1, CONTRACT).is_err());
    }
}
