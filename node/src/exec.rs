//! Transaction decoding and EVM execution with revm: building a block one transaction at a time
//! (the sequencer), replaying one strictly (the verifier), and read-only calls (`eth_call`,
//! `eth_estimateGas`).

use alloy::consensus::transaction::SignerRecoverable;
use alloy::consensus::{Eip658Value, Receipt, ReceiptEnvelope, Transaction as _, TxEnvelope, TxType};
use alloy::eips::eip2718::{Decodable2718, Encodable2718};
use alloy::primitives::{Address, B256, Bytes, TxKind, U256};
use revm::context::result::{EVMError, ExecutionResult, InvalidTransaction};
use revm::context::{BlockEnv, CfgEnv, Context, TxEnv};
use revm::context_interface::block::BlobExcessGasAndPrice;
use revm::handler::MainnetEvm;
use revm::primitives::eip4844::BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE;
use revm::primitives::hardfork::SpecId;
use revm::{ExecuteCommitEvm, ExecuteEvm, Journal, MainBuilder, MainContext};

use crate::config::ChainConfig;
use crate::state::{Overlay, State, StateDiff};

/// Base fee of every block, in wei. Constant: a rollup with one sequencer has no fee market to
/// price, and a constant keeps the sequencer's and verifiers' headers trivially in agreement.
pub const BASE_FEE: u64 = 1_000_000_000;
/// Tip suggested to wallets (`eth_maxPriorityFeePerGas`).
pub const SUGGESTED_TIP: u128 = 1_000_000_000;
/// Receives priority fees.
pub const COINBASE: Address = Address::ZERO;
/// The EVM rules the rollup runs (Prague: what current Solidity targets by default).
pub const SPEC: SpecId = SpecId::PRAGUE;
/// Largest encoded transaction accepted (as geth's pool: 128 KiB).
pub const MAX_TX_BYTES: usize = 128 * 1024;

/// Chain parameters execution needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainParams {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Gas limit of every block.
    pub gas_limit: u64,
}

impl From<&ChainConfig> for ChainParams {
    fn from(c: &ChainConfig) -> Self {
        Self {
            chain_id: c.chain_id,
            gas_limit: c.gas_limit,
        }
    }
}

/// The header fields a block executes under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockContext {
    /// Block number.
    pub number: u64,
    /// Seconds since the epoch.
    pub timestamp: u64,
    /// Fee recipient.
    pub beneficiary: Address,
    /// Block gas limit.
    pub gas_limit: u64,
    /// Base fee per gas.
    pub base_fee: u64,
    /// PREVRANDAO value (the header's `mixHash`).
    pub prevrandao: B256,
}

impl BlockContext {
    fn block_env(&self) -> BlockEnv {
        BlockEnv {
            number: U256::from(self.number),
            beneficiary: self.beneficiary,
            timestamp: U256::from(self.timestamp),
            gas_limit: self.gas_limit,
            basefee: self.base_fee,
            difficulty: U256::ZERO,
            prevrandao: Some(self.prevrandao),
            blob_excess_gas_and_price: Some(BlobExcessGasAndPrice::new(0, BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE)),
            ..BlockEnv::default()
        }
    }
}

/// Why a transaction was refused before or during execution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// Not a valid EIP-2718 transaction.
    #[error("invalid transaction encoding: {0}")]
    Decode(String),
    /// Blob (EIP-4844) and set-code (EIP-7702) transactions are not accepted.
    #[error("transaction type {0} not supported")]
    UnsupportedType(u8),
    /// The signature does not recover a sender.
    #[error("invalid transaction signature")]
    Signature,
    /// Signed for another chain.
    #[error("invalid chain id: expected {expected}, got {got}")]
    ChainId {
        /// This chain.
        expected: u64,
        /// The transaction's.
        got: u64,
    },
    /// Larger than the pool accepts.
    #[error("oversized transaction: {0} bytes")]
    TooLarge(usize),
    /// revm refused it (nonce, funds, gas, fee...).
    #[error("{0}")]
    Invalid(String),
    /// It does not fit in what is left of the block's gas.
    #[error("transaction gas limit exceeds what is left in the block")]
    BlockFull,
}

/// A decoded transaction with its recovered sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedTx {
    /// The signed transaction.
    pub envelope: TxEnvelope,
    /// Recovered sender.
    pub sender: Address,
    /// Transaction hash.
    pub hash: B256,
}

impl SignedTx {
    /// Decodes an EIP-2718 transaction (as `eth_sendRawTransaction` receives it), checks its type
    /// and chain id, and recovers the sender.
    pub fn decode(raw: &[u8], chain_id: u64) -> Result<Self, TxError> {
        if raw.len() > MAX_TX_BYTES {
            return Err(TxError::TooLarge(raw.len()));
        }
        let mut buf = raw;
        let envelope = TxEnvelope::decode_2718(&mut buf).map_err(|e| TxError::Decode(e.to_string()))?;
        if !buf.is_empty() {
            return Err(TxError::Decode("trailing bytes".into()));
        }
        Self::from_envelope(envelope, chain_id)
    }

    /// Checks type and chain id and recovers the sender.
    pub fn from_envelope(envelope: TxEnvelope, chain_id: u64) -> Result<Self, TxError> {
        match envelope.tx_type() {
            TxType::Legacy | TxType::Eip2930 | TxType::Eip1559 => {}
            other => return Err(TxError::UnsupportedType(other as u8)),
        }
        // Pre-EIP-155 legacy transactions carry no chain id; they are accepted like geth does
        // with --rpc.allow-unprotected-txs, because deterministic deployers depend on them.
        if let Some(got) = envelope.chain_id()
            && got != chain_id
        {
            return Err(TxError::ChainId {
                expected: chain_id,
                got,
            });
        }
        let sender = envelope.recover_signer().map_err(|_| TxError::Signature)?;
        let hash = *envelope.tx_hash();
        Ok(Self { envelope, sender, hash })
    }

    /// Transaction nonce.
    pub fn nonce(&self) -> u64 {
        self.envelope.nonce()
    }

    /// Transaction gas limit.
    pub fn gas_limit(&self) -> u64 {
        self.envelope.gas_limit()
    }

    /// Highest price per gas the sender pays (`gasPrice` or `maxFeePerGas`).
    pub fn max_fee(&self) -> u128 {
        self.envelope.max_fee_per_gas()
    }

    /// Price per gas actually paid at `base_fee`.
    pub fn effective_gas_price(&self, base_fee: u64) -> u128 {
        self.envelope.effective_gas_price(Some(base_fee))
    }

    /// The largest amount of wei the transaction can cost.
    pub fn max_cost(&self) -> U256 {
        U256::from(self.gas_limit()) * U256::from(self.max_fee()) + self.envelope.value()
    }

    /// EIP-2718 bytes.
    pub fn encoded(&self) -> Bytes {
        self.envelope.encoded_2718().into()
    }

    /// Address of the contract a creation deploys.
    pub fn created_address(&self) -> Option<Address> {
        match self.envelope.kind() {
            TxKind::Create => Some(self.sender.create(self.nonce())),
            TxKind::Call(_) => None,
        }
    }

    fn tx_env(&self) -> TxEnv {
        let e = &self.envelope;
        TxEnv {
            tx_type: e.tx_type() as u8,
            caller: self.sender,
            gas_limit: e.gas_limit(),
            gas_price: e.max_fee_per_gas(),
            kind: e.kind(),
            value: e.value(),
            data: e.input().clone(),
            nonce: e.nonce(),
            chain_id: e.chain_id(),
            access_list: e.access_list().cloned().unwrap_or_default(),
            gas_priority_fee: e.max_priority_fee_per_gas(),
            blob_hashes: Vec::new(),
            max_fee_per_blob_gas: 0,
            authorization_list: Vec::new(),
        }
    }
}

/// A transaction included in a block, with its receipt.
#[derive(Clone, Debug)]
pub struct ExecutedTx {
    /// The transaction.
    pub tx: SignedTx,
    /// Its receipt (status, cumulative gas, logs, bloom).
    pub receipt: ReceiptEnvelope,
    /// Gas this transaction used.
    pub gas_used: u64,
}

/// The outcome of executing a block's transactions.
#[derive(Debug, Default)]
pub struct ExecutedBlock {
    /// Included transactions, in order.
    pub txs: Vec<ExecutedTx>,
    /// Total gas used.
    pub gas_used: u64,
    /// The state changes.
    pub diff: StateDiff,
}

type BlockEvm<'a> = MainnetEvm<Context<BlockEnv, TxEnv, CfgEnv, Overlay<'a>, Journal<Overlay<'a>>, ()>>;

fn cfg(params: &ChainParams) -> CfgEnv {
    CfgEnv::new_with_spec(SPEC).with_chain_id(params.chain_id)
}

fn invalid(e: EVMError<std::convert::Infallible, InvalidTransaction>) -> TxError {
    match e {
        EVMError::Transaction(t) => TxError::Invalid(t.to_string()),
        other => TxError::Invalid(other.to_string()),
    }
}

/// Executes transactions one by one on top of a state, committing each to the block's overlay.
#[allow(missing_debug_implementations)] // the revm instance has no useful Debug
pub struct BlockBuilder<'a> {
    evm: BlockEvm<'a>,
    gas_limit: u64,
    gas_used: u64,
    txs: Vec<ExecutedTx>,
}

impl<'a> BlockBuilder<'a> {
    /// Starts a block on `state`.
    pub fn new(state: &'a State, params: &ChainParams, block: &BlockContext) -> Self {
        let evm = Context::mainnet()
            .with_db(state.overlay())
            .with_cfg(cfg(params))
            .with_block(block.block_env())
            .build_mainnet();
        Self {
            evm,
            gas_limit: block.gas_limit,
            gas_used: 0,
            txs: Vec::new(),
        }
    }

    /// Gas left in the block.
    pub fn gas_left(&self) -> u64 {
        self.gas_limit.saturating_sub(self.gas_used)
    }

    /// Executes one transaction; on `Err` nothing changed and it is not part of the block.
    pub fn push(&mut self, tx: SignedTx) -> Result<&ExecutedTx, TxError> {
        if tx.gas_limit() > self.gas_left() {
            return Err(TxError::BlockFull);
        }
        let result = self.evm.transact(tx.tx_env()).map_err(invalid)?;
        self.evm.commit(result.state);
        let outcome = result.result;
        let gas_used = outcome.tx_gas_used();
        self.gas_used += gas_used;
        let success = outcome.is_success();
        let logs = outcome.into_logs();
        let receipt = Receipt {
            status: Eip658Value::Eip658(success),
            cumulative_gas_used: self.gas_used,
            logs,
        };
        let receipt = ReceiptEnvelope::from_typed(tx.envelope.tx_type(), receipt.with_bloom());
        self.txs.push(ExecutedTx { tx, receipt, gas_used });
        self.txs
            .last()
            .ok_or(TxError::Invalid("internal: no transaction".into()))
    }

    /// Ends the block.
    pub fn finish(self) -> ExecutedBlock {
        let diff = self.evm.ctx.journaled_state.database.into_diff();
        ExecutedBlock {
            txs: self.txs,
            gas_used: self.gas_used,
            diff,
        }
    }
}

/// A read-only call (`eth_call` / `eth_estimateGas`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallRequest {
    /// Caller (zero address when absent).
    pub from: Option<Address>,
    /// Callee; `None` = contract creation.
    pub to: Option<Address>,
    /// Gas limit; the block gas limit when absent.
    pub gas: Option<u64>,
    /// Price per gas; zero when absent (no fee charged).
    pub gas_price: Option<u128>,
    /// Value sent.
    pub value: Option<U256>,
    /// Calldata / init code.
    pub input: Bytes,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The EVM refused the call before running it.
    #[error("{0}")]
    Invalid(String),
    /// The call ran and reverted (data = revert output).
    #[error("execution reverted")]
    Reverted(Bytes),
    /// The call halted (out of gas, invalid opcode...).
    #[error("execution halted: {0}")]
    Halted(String),
}

fn run_call(
    state: &State,
    params: &ChainParams,
    block: &BlockContext,
    req: &CallRequest,
    gas: u64,
) -> Result<ExecutionResult, CallError> {
    let mut cfg = cfg(params);
    // Calls simulate: no nonce to match, and a caller needs no funds for fees it does not pay.
    cfg.disable_nonce_check = true;
    cfg.disable_base_fee = true;
    cfg.disable_balance_check = true;
    let mut evm = Context::mainnet()
        .with_db(state.overlay())
        .with_cfg(cfg)
        .with_block(block.block_env())
        .build_mainnet();
    let gas_price = req.gas_price.unwrap_or(0);
    let tx = TxEnv {
        tx_type: 0,
        caller: req.from.unwrap_or_default(),
        gas_limit: gas,
        gas_price,
        kind: req.to.map_or(TxKind::Create, TxKind::Call),
        value: req.value.unwrap_or_default(),
        data: req.input.clone(),
        chain_id: Some(params.chain_id),
        ..TxEnv::default()
    };
    let result = evm
        .transact(tx)
        .map_err(|e| CallError::Invalid(invalid(e).to_string()))?;
    Ok(result.result)
}

/// Runs a call against `state` without committing it; returns the output.
pub fn call(
    state: &State,
    params: &ChainParams,
    block: &BlockContext,
    req: &CallRequest,
) -> Result<(Bytes, u64), CallError> {
    let gas = req.gas.unwrap_or(block.gas_limit).min(block.gas_limit);
    match run_call(state, params, block, req, gas)? {
        ExecutionResult::Success { output, gas, .. } => Ok((output.into_data(), gas.tx_gas_used())),
        ExecutionResult::Revert { output, .. } => Err(CallError::Reverted(output)),
        ExecutionResult::Halt { reason, .. } => Err(CallError::Halted(format!("{reason:?}"))),
    }
}

/// The smallest gas limit with which the call succeeds (binary search, as geth does).
pub fn estimate_gas(
    state: &State,
    params: &ChainParams,
    block: &BlockContext,
    req: &CallRequest,
) -> Result<u64, CallError> {
    let mut hi = req.gas.unwrap_or(block.gas_limit).min(block.gas_limit);
    let (_, used) = call(
        state,
        params,
        block,
        &CallRequest {
            gas: Some(hi),
            ..req.clone()
        },
    )?;
    // A plain transfer to an account without code needs exactly the intrinsic gas.
    if req.input.is_empty()
        && let Some(to) = req.to
        && state.code_at(&to).is_empty()
    {
        return Ok(used);
    }
    let succeeds = |gas: u64| matches!(run_call(state, params, block, req, gas), Ok(r) if r.is_success());
    // Refunds and the 63/64 rule make the needed limit larger than what was used; try a
    // generous guess first so most estimates take two executions.
    let mut lo = used.saturating_sub(1);
    let guess = used.saturating_add(used / 63 * 2).saturating_add(2_300).min(hi);
    if guess < hi && succeeds(guess) {
        hi = guess;
    }
    while hi - lo > 1 && (hi - lo) * 1000 > hi {
        let mid = lo + (hi - lo) / 2;
        if succeeds(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::GenesisAccount;
    use alloy::consensus::{SignableTransaction, TxEip1559, TxLegacy};
    use alloy::network::TxSignerSync;
    use alloy::primitives::{address, bytes};
    use alloy::signers::local::PrivateKeySigner;
    use std::collections::BTreeMap;

    pub(crate) fn dev_signer() -> PrivateKeySigner {
        // anvil's first dev account
        "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
            .parse()
            .expect("key")
    }

    pub(crate) fn sign_1559(signer: &PrivateKeySigner, nonce: u64, to: TxKind, value: U256, input: Bytes) -> SignedTx {
        let mut tx = TxEip1559 {
            chain_id: 901337,
            nonce,
            gas_limit: 1_000_000,
            max_fee_per_gas: 3_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            to,
            value,
            access_list: Default::default(),
            input,
        };
        let sig = signer.sign_transaction_sync(&mut tx).expect("sign");
        let env: TxEnvelope = tx.into_signed(sig).into();
        SignedTx::decode(&env.encoded_2718(), 901337).expect("decode")
    }

    fn genesis() -> State {
        let mut alloc = BTreeMap::new();
        alloc.insert(
            dev_signer().address(),
            GenesisAccount {
                balance: U256::from(10u128.pow(21)),
                ..Default::default()
            },
        );
        State::from_genesis(&alloc)
    }

    fn ctx() -> BlockContext {
        BlockContext {
            number: 1,
            timestamp: 1_700_000_000,
            beneficiary: COINBASE,
            gas_limit: 30_000_000,
            base_fee: BASE_FEE,
            prevrandao: B256::ZERO,
        }
    }

    const PARAMS: ChainParams = ChainParams {
        chain_id: 901337,
        gas_limit: 30_000_000,
    };

    #[test]
    fn transfer_and_contract_with_logs() {
        let mut state = genesis();
        let signer = dev_signer();
        let to = address!("00000000000000000000000000000000000000bb");
        // init code returning runtime `LOG0(0,0); STOP` = 0x60006000a000
        let runtime = bytes!("60006000a000");
        let init = bytes!("6006600c60003960066000f3" "60006000a000");
        let (diff, txs) = {
            let mut b = BlockBuilder::new(&state, &PARAMS, &ctx());
            b.push(sign_1559(&signer, 0, TxKind::Call(to), U256::from(5), Bytes::new()))
                .expect("transfer");
            let created = b
                .push(sign_1559(&signer, 1, TxKind::Create, U256::ZERO, init))
                .expect("create")
                .tx
                .created_address()
                .expect("address");
            b.push(sign_1559(&signer, 2, TxKind::Call(created), U256::ZERO, Bytes::new()))
                .expect("call");
            // a replayed nonce is refused and leaves no trace
            assert!(matches!(
                b.push(sign_1559(&signer, 2, TxKind::Call(to), U256::ZERO, Bytes::new())),
                Err(TxError::Invalid(_))
            ));
            let done = b.finish();
            (done.diff, done.txs)
        };
        assert_eq!(txs.len(), 3);
        assert_eq!(txs[0].gas_used, 21_000);
        assert!(txs.iter().all(|t| t.receipt.status()));
        assert_eq!(txs[2].receipt.logs().len(), 1);
        assert_eq!(
            txs[2].receipt.cumulative_gas_used(),
            txs.iter().map(|t| t.gas_used).sum::<u64>()
        );
        state.apply(&diff);
        assert_eq!(state.account(&to).map(|a| a.balance), Some(U256::from(5)));
        let created = signer.address().create(1);
        assert_eq!(state.code_at(&created), runtime);
        assert_eq!(state.account(&signer.address()).map(|a| a.nonce), Some(3));
    }

    #[test]
    fn legacy_wrong_chain_and_garbage_refused() {
        let signer = dev_signer();
        let mut tx = TxLegacy {
            chain_id: Some(1),
            nonce: 0,
            gas_price: 2_000_000_000,
            gas_limit: 21_000,
            to: TxKind::Call(Address::ZERO),
            value: U256::ZERO,
            input: Bytes::new(),
        };
        let sig = signer.sign_transaction_sync(&mut tx).expect("sign");
        let env: TxEnvelope = tx.into_signed(sig).into();
        assert!(matches!(
            SignedTx::decode(&env.encoded_2718(), 901337),
            Err(TxError::ChainId {
                expected: 901337,
                got: 1
            })
        ));
        assert!(matches!(
            SignedTx::decode(&[0x02, 0xc0], 901337),
            Err(TxError::Decode(_))
        ));
        assert!(matches!(SignedTx::decode(&[], 901337), Err(TxError::Decode(_))));
    }

    #[test]
    fn call_and_estimate() {
        let state = genesis();
        let req = CallRequest {
            from: Some(dev_signer().address()),
            to: Some(address!("00000000000000000000000000000000000000bb")),
            value: Some(U256::from(1)),
            ..Default::default()
        };
        assert_eq!(estimate_gas(&state, &PARAMS, &ctx(), &req), Ok(21_000));
        // init code that reverts with 0x2a
        let revert = CallRequest {
            input: bytes!("602a60005260206000fd"),
            ..Default::default()
        };
        assert!(matches!(
            call(&state, &PARAMS, &ctx(), &revert),
            Err(CallError::Reverted(_))
        ));
        // a creation returning 1 byte: estimate covers intrinsic + execution + deposit
        let create = CallRequest {
            input: bytes!("600160005360016000f3"),
            ..Default::default()
        };
        let g = estimate_gas(&state, &PARAMS, &ctx(), &create).expect("estimate");
        assert!(g > 53_000, "{g}");
    }
}
