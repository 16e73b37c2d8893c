//! Ethereum JSON-RPC on the sequencer (HTTP POST `/`, single and batch), answering with alloy's
//! RPC types so `cast`, viem and ethers parse the responses; plus the MACH endpoints verifiers
//! post to (`/mach/v1/attestations`, `/mach/v1/alerts`). Bodies and concurrency are bounded and
//! malformed input gets a JSON-RPC error, never a panic.

use std::sync::Arc;
use std::time::Duration;

use alloy::consensus::transaction::Recovered;
use alloy::consensus::{BlockBody, Transaction as _};
use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::primitives::{Address, B256, Bytes, TxKind, U256};
use alloy::rpc::types::{
    Block as RpcBlock, BlockTransactions, FeeHistory, Header as RpcHeader, Log as RpcLog,
    Transaction as RpcTransaction, TransactionReceipt, TransactionRequest,
};
use alloy_rlp::Encodable;
use axum::Router;
use axum::body::Bytes as BodyBytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::alerts::AlertReport;
use crate::block::{Block, next_context};
use crate::exec::{BASE_FEE, CallError, CallRequest, SUGGESTED_TIP, call, estimate_gas};
use crate::finality::FinalityError;
use crate::mach::{AddOutcome, Attestation};
use crate::sequencer::{Sequencer, SubmitError};

/// Largest JSON-RPC request body.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Largest MACH request body.
pub const MAX_MACH_BODY_BYTES: usize = 64 << 10;
/// Requests served at once; others wait up to [`QUEUE_TIMEOUT`].
pub const MAX_CONCURRENT: usize = 64;
/// Calls in one batch.
pub const MAX_BATCH: usize = 100;
/// Blocks one `eth_feeHistory` covers.
const MAX_FEE_HISTORY: u64 = 1024;
const QUEUE_TIMEOUT: Duration = Duration::from_secs(2);

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// Error code.
    pub code: i64,
    /// Message.
    pub message: String,
    /// Extra data (revert output).
    pub data: Option<Value>,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }
    fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(-32602, message)
    }
    fn server(message: impl Into<String>) -> Self {
        Self::new(-32000, message)
    }
    fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(error = %message, "JSON-RPC internal error");
        Self::new(-32603, "internal error")
    }
    fn to_json(&self, id: &Value) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(data) = &self.data {
            error["data"] = data.clone();
        }
        json!({ "jsonrpc": "2.0", "id": id, "error": error })
    }
}

impl From<CallError> for RpcError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Reverted(data) => Self {
                code: 3,
                message: "execution reverted".into(),
                data: Some(Value::String(data.to_string())),
            },
            other => Self::server(other.to_string()),
        }
    }
}

#[derive(Debug)]
struct Ctx {
    seq: Arc<Sequencer>,
    limit: Arc<Semaphore>,
}

/// The sequencer's JSON-RPC and MACH router.
pub fn router(seq: Arc<Sequencer>) -> Router {
    let ctx = Arc::new(Ctx {
        seq,
        limit: Arc::new(Semaphore::new(MAX_CONCURRENT)),
    });
    let mach = Router::new()
        .route("/mach/v1/attestations", post(attestation))
        .route("/mach/v1/alerts", post(alert))
        .layer(DefaultBodyLimit::max(MAX_MACH_BODY_BYTES));
    Router::new()
        .route("/", post(rpc))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .merge(mach)
        .with_state(ctx)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn rpc(State(ctx): State<Arc<Ctx>>, body: BodyBytes) -> Response {
    let Ok(Ok(permit)) = tokio::time::timeout(QUEUE_TIMEOUT, ctx.limit.clone().acquire_owned()).await else {
        let err = RpcError::new(-32005, "too many concurrent requests").to_json(&Value::Null);
        return json_response(StatusCode::SERVICE_UNAVAILABLE, &err);
    };
    let seq = ctx.seq.clone();
    // Sending a transaction is a signature recovery and a pool insert (tens of microseconds):
    // answered right here, since a hop to the blocking pool costs more than the work itself.
    if is_send_raw(&body) {
        let v = handle_body(&seq, &body);
        drop(permit);
        return json_response(StatusCode::OK, &v);
    }
    // Other handlers may take the chain's lock for long and run the EVM: keep them off the async
    // workers.
    let result = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        handle_body(&seq, &body)
    })
    .await;
    match result {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => json_response(StatusCode::OK, &RpcError::internal(e).to_json(&Value::Null)),
    }
}

/// Whether the body is one `eth_sendRawTransaction` call (a cheap look at the bytes; the body is
/// parsed properly by `handle_body`).
fn is_send_raw(body: &[u8]) -> bool {
    body.len() < 256 * 1024
        && body.first().is_some_and(|b| *b == b'{')
        && body.windows(22).any(|w| w == b"\"eth_sendRawTransaction")
}

/// Answers a JSON-RPC body (single request or batch).
pub fn handle_body(seq: &Sequencer, body: &[u8]) -> Value {
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return RpcError::new(-32700, "parse error").to_json(&Value::Null),
    };
    match parsed {
        Value::Array(items) => {
            if items.is_empty() {
                return RpcError::new(-32600, "empty batch").to_json(&Value::Null);
            }
            if items.len() > MAX_BATCH {
                return RpcError::new(-32600, format!("batch larger than {MAX_BATCH} calls")).to_json(&Value::Null);
            }
            Value::Array(items.iter().map(|item| handle_one(seq, item)).collect())
        }
        other => handle_one(seq, &other),
    }
}

fn handle_one(seq: &Sequencer, req: &Value) -> Value {
    let Some(obj) = req.as_object() else {
        return RpcError::new(-32600, "invalid request").to_json(&Value::Null);
    };
    let id = obj.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = obj.get("method").and_then(Value::as_str) else {
        return RpcError::new(-32600, "invalid request: no method").to_json(&id);
    };
    let params = match obj.get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return RpcError::invalid_params("params must be an array").to_json(&id),
    };
    let known = dispatch(seq, method, &params);
    let label = if matches!(&known, Err(e) if e.code == -32601) {
        "other"
    } else {
        method
    };
    seq.metrics.rpc_requests.with_label_values(&[label]).inc();
    match known {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(e) => e.to_json(&id),
    }
}

fn param<T: DeserializeOwned>(params: &[Value], i: usize, name: &str) -> Result<T, RpcError> {
    let v = params.get(i).cloned().unwrap_or(Value::Null);
    serde_json::from_value(v).map_err(|e| RpcError::invalid_params(format!("invalid {name}: {e}")))
}

fn opt_param<T: DeserializeOwned>(params: &[Value], i: usize, name: &str) -> Result<Option<T>, RpcError> {
    match params.get(i) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => param(params, i, name).map(Some),
    }
}

fn to_value<T: serde::Serialize>(v: T) -> Result<Value, RpcError> {
    serde_json::to_value(v).map_err(RpcError::internal)
}

fn quantity(n: impl Into<u128>) -> Value {
    Value::String(format!("{:#x}", n.into()))
}

fn quantity_u256(n: U256) -> Value {
    Value::String(format!("{n:#x}"))
}

fn dispatch(seq: &Sequencer, method: &str, p: &[Value]) -> Result<Value, RpcError> {
    let chain = &seq.chain;
    match method {
        "web3_clientVersion" => Ok(json!(concat!("flashlayer-node/", env!("CARGO_PKG_VERSION")))),
        "eth_chainId" => Ok(quantity(chain.config.chain_id)),
        "net_version" => Ok(json!(chain.config.chain_id.to_string())),
        "net_listening" => Ok(json!(true)),
        "eth_syncing" => Ok(json!(false)),
        "eth_mining" => Ok(json!(false)),
        "eth_accounts" => Ok(json!([])),
        "eth_blockNumber" => Ok(quantity(chain.head().header.number)),
        "eth_gasPrice" => Ok(quantity(u128::from(BASE_FEE) + SUGGESTED_TIP)),
        "eth_maxPriorityFeePerGas" => Ok(quantity(SUGGESTED_TIP)),
        "eth_blobBaseFee" => Ok(quantity(1u64)),
        "eth_feeHistory" => fee_history(seq, p),
        "eth_getBalance" => {
            let address: Address = param(p, 0, "address")?;
            let view = state_at(seq, p.get(1))?;
            Ok(quantity_u256(
                view.state().account(&address).map_or(U256::ZERO, |a| a.balance),
            ))
        }
        "eth_getTransactionCount" => {
            let address: Address = param(p, 0, "address")?;
            let pending = matches!(
                opt_param::<BlockId>(p, 1, "block")?,
                Some(BlockId::Number(BlockNumberOrTag::Pending))
            );
            if pending {
                return Ok(quantity(seq.pending_nonce(&address)));
            }
            let view = state_at(seq, p.get(1))?;
            Ok(quantity(view.state().account(&address).map_or(0, |a| a.nonce)))
        }
        "eth_getCode" => {
            let address: Address = param(p, 0, "address")?;
            let view = state_at(seq, p.get(1))?;
            to_value(view.state().code_at(&address))
        }
        "eth_getStorageAt" => {
            let address: Address = param(p, 0, "address")?;
            let slot: U256 = param(p, 1, "slot")?;
            let view = state_at(seq, p.get(2))?;
            let value = view.state().account(&address).map_or(U256::ZERO, |a| a.storage(slot));
            to_value(B256::from(value))
        }
        "eth_call" => {
            let req = call_request(p)?;
            let view = state_at(seq, p.get(1))?;
            let head = view.head();
            let ctx = next_context(&head.header, head.hash, chain.config.gas_limit, head.header.timestamp);
            let (output, _) = call(view.state(), &chain.params, &ctx, &req)?;
            to_value(output)
        }
        "eth_estimateGas" => {
            let req = call_request(p)?;
            let view = state_at(seq, p.get(1))?;
            let head = view.head();
            let ctx = next_context(&head.header, head.hash, chain.config.gas_limit, head.header.timestamp);
            Ok(quantity(estimate_gas(view.state(), &chain.params, &ctx, &req)?))
        }
        "eth_sendRawTransaction" => {
            let raw: Bytes = param(p, 0, "transaction")?;
            match seq.submit_raw(&raw) {
                Ok(hash) => to_value(hash),
                Err(SubmitError::Tx(e)) => Err(RpcError::invalid_params(e.to_string())),
                Err(e) => Err(RpcError::server(e.to_string())),
            }
        }
        "eth_getTransactionByHash" => {
            let hash: B256 = param(p, 0, "hash")?;
            if let Some(loc) = chain.store.tx_location(&hash).map_err(RpcError::internal)?
                && let Some(block) = chain.store.block_shared(loc.block).map_err(RpcError::internal)?
            {
                return to_value(rpc_tx(&block, loc.index as usize));
            }
            match seq.pooled(&hash) {
                Some(tx) => to_value(RpcTransaction {
                    inner: Recovered::new_unchecked(tx.envelope, tx.sender),
                    block_hash: None,
                    block_number: None,
                    transaction_index: None,
                    effective_gas_price: None,
                    block_timestamp: None,
                }),
                None => Ok(Value::Null),
            }
        }
        "eth_getTransactionReceipt" => {
            let hash: B256 = param(p, 0, "hash")?;
            let Some(loc) = chain.store.tx_location(&hash).map_err(RpcError::internal)? else {
                return Ok(Value::Null);
            };
            match chain.store.block_shared(loc.block).map_err(RpcError::internal)? {
                Some(block) => to_value(rpc_receipt(&block, loc.index as usize)),
                None => Ok(Value::Null),
            }
        }
        "eth_getBlockByNumber" => {
            let tag: BlockNumberOrTag = param(p, 0, "block")?;
            let full = opt_param::<bool>(p, 1, "full")?.unwrap_or(false);
            let number = resolve(seq, tag);
            match chain.store.block_shared(number).map_err(RpcError::internal)? {
                Some(block) => to_value(rpc_block(&block, full)),
                None => Ok(Value::Null),
            }
        }
        "eth_getBlockByHash" => {
            let hash: B256 = param(p, 0, "hash")?;
            let full = opt_param::<bool>(p, 1, "full")?.unwrap_or(false);
            let Some(number) = chain.store.number_of(&hash).map_err(RpcError::internal)? else {
                return Ok(Value::Null);
            };
            match chain.store.block_shared(number).map_err(RpcError::internal)? {
                Some(block) => to_value(rpc_block(&block, full)),
                None => Ok(Value::Null),
            }
        }
        "eth_getBlockTransactionCountByNumber" => {
            let tag: BlockNumberOrTag = param(p, 0, "block")?;
            match chain
                .store
                .block_shared(resolve(seq, tag))
                .map_err(RpcError::internal)?
            {
                Some(block) => Ok(quantity(block.txs.len() as u64)),
                None => Ok(Value::Null),
            }
        }
        _ => Err(RpcError::new(
            -32601,
            format!("the method {method} does not exist/is not available"),
        )),
    }
}

/// Block number a tag stands for: `finalized` and `safe` are the MACH-finalized height.
fn resolve(seq: &Sequencer, tag: BlockNumberOrTag) -> u64 {
    match tag {
        BlockNumberOrTag::Latest | BlockNumberOrTag::Pending => seq.chain.head().header.number,
        BlockNumberOrTag::Safe | BlockNumberOrTag::Finalized => seq.finality.finalized_height(),
        BlockNumberOrTag::Earliest => 0,
        BlockNumberOrTag::Number(n) => n,
    }
}

/// The state for a block parameter. Only the head's state is kept (a flash rollup has no
/// archive); asking for an older block is an error rather than a silently wrong answer.
fn state_at<'a>(seq: &'a Sequencer, block: Option<&Value>) -> Result<crate::chain::ReadView<'a>, RpcError> {
    let id: Option<BlockId> = match block {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            serde_json::from_value(v.clone()).map_err(|e| RpcError::invalid_params(format!("invalid block: {e}")))?,
        ),
    };
    let view = seq.chain.read();
    let head = view.head();
    let ok = match id {
        None => true,
        Some(BlockId::Number(tag)) => match tag {
            BlockNumberOrTag::Latest | BlockNumberOrTag::Pending => true,
            other => resolve_without_head(seq, other).is_none_or(|n| n == head.header.number),
        },
        Some(BlockId::Hash(h)) => h.block_hash == head.hash,
    };
    if !ok {
        return Err(RpcError::server(format!(
            "state of that block is not available: only the latest state (block {}) is kept",
            head.header.number
        )));
    }
    Ok(view)
}

fn resolve_without_head(seq: &Sequencer, tag: BlockNumberOrTag) -> Option<u64> {
    match tag {
        BlockNumberOrTag::Safe | BlockNumberOrTag::Finalized => Some(seq.finality.finalized_height()),
        BlockNumberOrTag::Earliest => Some(0),
        BlockNumberOrTag::Number(n) => Some(n),
        BlockNumberOrTag::Latest | BlockNumberOrTag::Pending => None,
    }
}

fn call_request(p: &[Value]) -> Result<CallRequest, RpcError> {
    let req: TransactionRequest = param(p, 0, "transaction")?;
    let gas_price = req.gas_price.or(req.max_fee_per_gas);
    Ok(CallRequest {
        from: req.from,
        to: match req.to {
            Some(TxKind::Call(a)) => Some(a),
            Some(TxKind::Create) | None => None,
        },
        gas: req.gas,
        gas_price,
        value: req.value,
        input: req.input.input().cloned().unwrap_or_default(),
    })
}

fn fee_history(seq: &Sequencer, p: &[Value]) -> Result<Value, RpcError> {
    let count: U256 = param(p, 0, "blockCount")?;
    let count = count.saturating_to::<u64>().clamp(1, MAX_FEE_HISTORY);
    let newest: BlockNumberOrTag = param(p, 1, "newestBlock")?;
    let percentiles: Vec<f64> = opt_param(p, 2, "rewardPercentiles")?.unwrap_or_default();
    let head = seq.chain.head().header.number;
    let newest = resolve(seq, newest).min(head);
    let oldest = newest.saturating_sub(count - 1);
    let mut gas_used_ratio = Vec::new();
    let mut reward = Vec::new();
    for n in oldest..=newest {
        let header = seq.chain.store.header(n).map_err(RpcError::internal)?;
        let ratio = header.map_or(0.0, |h| h.gas_used as f64 / h.gas_limit.max(1) as f64);
        gas_used_ratio.push(ratio);
        reward.push(vec![SUGGESTED_TIP; percentiles.len()]);
    }
    let blocks = (newest - oldest + 1) as usize;
    to_value(FeeHistory {
        base_fee_per_gas: vec![u128::from(BASE_FEE); blocks + 1],
        gas_used_ratio,
        base_fee_per_blob_gas: vec![1; blocks + 1],
        blob_gas_used_ratio: vec![0.0; blocks],
        oldest_block: oldest,
        reward: (!percentiles.is_empty()).then_some(reward),
    })
}

/// The RPC form of a block.
pub fn rpc_block(block: &Block, full: bool) -> RpcBlock {
    let transactions = if full {
        BlockTransactions::Full((0..block.txs.len()).filter_map(|i| rpc_tx(block, i)).collect())
    } else {
        BlockTransactions::Hashes(block.txs.iter().map(|t| t.hash).collect())
    };
    let body = BlockBody {
        transactions: block.txs.iter().map(|t| t.envelope.clone()).collect::<Vec<_>>(),
        ommers: Vec::new(),
        withdrawals: Some(Default::default()),
    };
    let size = alloy::consensus::Block {
        header: block.header.clone(),
        body,
    }
    .length();
    RpcBlock {
        header: RpcHeader {
            hash: block.hash,
            inner: block.header.clone(),
            total_difficulty: Some(U256::ZERO),
            size: Some(U256::from(size)),
        },
        uncles: Vec::new(),
        transactions,
        withdrawals: Some(Default::default()),
    }
}

fn rpc_tx(block: &Block, index: usize) -> Option<RpcTransaction> {
    let tx = block.txs.get(index)?;
    let base_fee = block.header.base_fee_per_gas.unwrap_or(BASE_FEE);
    Some(RpcTransaction {
        inner: Recovered::new_unchecked(tx.envelope.clone(), tx.sender),
        block_hash: Some(block.hash),
        block_number: Some(block.number()),
        transaction_index: Some(index as u64),
        effective_gas_price: Some(tx.effective_gas_price(base_fee)),
        block_timestamp: Some(block.header.timestamp),
    })
}

fn rpc_receipt(block: &Block, index: usize) -> Option<TransactionReceipt> {
    let tx = block.txs.get(index)?;
    let receipt = block.receipts.get(index)?;
    let previous_gas = index
        .checked_sub(1)
        .and_then(|i| block.receipts.get(i))
        .map_or(0, |r| r.cumulative_gas_used());
    let mut log_index: u64 = block.receipts[..index].iter().map(|r| r.logs().len() as u64).sum();
    let inner = receipt.clone().map_logs(|log| {
        let l = RpcLog {
            inner: log,
            block_hash: Some(block.hash),
            block_number: Some(block.number()),
            block_timestamp: Some(block.header.timestamp),
            transaction_hash: Some(tx.hash),
            transaction_index: Some(index as u64),
            log_index: Some(log_index),
            removed: false,
        };
        log_index += 1;
        l
    });
    let base_fee = block.header.base_fee_per_gas.unwrap_or(BASE_FEE);
    Some(TransactionReceipt {
        inner,
        transaction_hash: tx.hash,
        transaction_index: Some(index as u64),
        block_hash: Some(block.hash),
        block_number: Some(block.number()),
        gas_used: receipt.cumulative_gas_used() - previous_gas,
        effective_gas_price: tx.effective_gas_price(base_fee),
        blob_gas_used: None,
        blob_gas_price: None,
        from: tx.sender,
        to: tx.envelope.to(),
        contract_address: tx.created_address(),
    })
}

fn mach_error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    json_response(status, &json!({ "error": message.to_string() }))
}

fn finality_status(e: &FinalityError) -> StatusCode {
    match e {
        FinalityError::Disabled(_) => StatusCode::SERVICE_UNAVAILABLE,
        FinalityError::UnknownBlock(_) => StatusCode::NOT_FOUND,
        FinalityError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        FinalityError::Mach(_) | FinalityError::BadSignature | FinalityError::WrongRoot(_) => StatusCode::BAD_REQUEST,
    }
}

async fn attestation(State(ctx): State<Arc<Ctx>>, body: BodyBytes) -> Response {
    let att: Attestation = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return mach_error(StatusCode::BAD_REQUEST, format!("invalid attestation: {e}")),
    };
    let seq = ctx.seq.clone();
    // Signature checks are pairings (milliseconds of CPU): off the async workers.
    match tokio::task::spawn_blocking(move || seq.finality.submit(&att)).await {
        Ok(Ok(outcome)) => {
            let status = match outcome {
                AddOutcome::Certified(_) => "certified",
                AddOutcome::Pending { .. } => "accepted",
                AddOutcome::Duplicate => "duplicate",
                AddOutcome::AlreadyFinal => "alreadyFinal",
            };
            json_response(StatusCode::OK, &json!({ "status": status }))
        }
        Ok(Err(e)) => mach_error(finality_status(&e), e),
        Err(e) => mach_error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn alert(State(ctx): State<Arc<Ctx>>, body: BodyBytes) -> Response {
    let report: AlertReport = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return mach_error(StatusCode::BAD_REQUEST, format!("invalid alert report: {e}")),
    };
    let seq = ctx.seq.clone();
    match tokio::task::spawn_blocking(move || seq.finality.report_alert(&report)).await {
        Ok(Ok(fresh)) => json_response(StatusCode::OK, &json!({ "recorded": fresh })),
        Ok(Err(e)) => mach_error(finality_status(&e), e),
        Err(e) => mach_error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}
