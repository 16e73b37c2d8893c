//! The Settling phase, one step per call: seal the sequencer, fetch the final block's MACH
//! certificate, submit it to the L1 contract, wait for confirmations. Exactly once: the signed
//! transaction (nonce, hash, raw bytes) is written to status before it is sent, so a restarted
//! operator re-broadcasts that very transaction and looks for its receipt instead of signing anew.

use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

use super::Context;
use super::error::{Error, Result};
use crate::api::FlashRollup;
use crate::api::flashrollup::{L1Spec, SettlementStatus, SettlementStep};
use crate::fault;
use crate::settlement::l1::{L1Client, L1Error};

/// How often the certificate of the final block is asked for: the quorum signs within a block
/// time or two, and every poll saved is time to the L1.
const CERTIFICATE_POLL: Duration = Duration::from_millis(100);
/// How often a sent transaction's receipt is looked for. Short, because teardown waits for it;
/// three cheap calls per poll (receipt, settlement view, re-broadcast).
pub(super) const RECEIPT_POLL: Duration = Duration::from_millis(500);

/// Where the sequencer's admin API is, and the token for it.
#[derive(Clone, Debug)]
pub struct NodeAccess {
    pub base: String,
    pub token: String,
}

/// Run the current step; on success, return how soon to run the next one.
pub async fn step(
    ctx: &Context,
    rollup: &FlashRollup,
    node: &NodeAccess,
    s: &mut SettlementStatus,
) -> Result<Duration> {
    match s.step {
        SettlementStep::Sealing => {
            let block = ctx.node.seal(&node.base, &node.token).await?;
            s.final_height = Some(block.number);
            s.block_hash = Some(block.hash.to_string());
            s.state_root = Some(block.state_root.to_string());
            s.step = SettlementStep::AwaitingCertificate;
            Ok(Duration::ZERO)
        }
        SettlementStep::AwaitingCertificate => {
            let number = s.final_height.unwrap_or_default();
            match ctx.node.certificate(&node.base, &node.token, number).await? {
                None => Err(Error::InProgress(CERTIFICATE_POLL)),
                Some(cert) => {
                    check_certificate(s, cert.block_hash, cert.state_root)?;
                    s.step = SettlementStep::Submitting;
                    Ok(Duration::ZERO)
                }
            }
        }
        SettlementStep::Submitting => {
            let l1 = l1_client(rollup)?;
            let rollup_id = rollup_id(s)?;
            // From the nonce to the send, one transaction at a time (rollups share signers).
            let _signing = ctx.l1_signing.lock().await;
            if s.raw_tx.is_none() {
                // A settlement from an earlier life of this operator whose status write was lost.
                if let Some(done) = already_settled(&l1, rollup_id, s, rollup.spec.settlement.confirmations).await? {
                    return Ok(done);
                }
                let number = s.final_height.unwrap_or_default();
                let cert = ctx
                    .node
                    .certificate(&node.base, &node.token, number)
                    .await?
                    .ok_or(Error::InProgress(CERTIFICATE_POLL))?;
                check_certificate(s, cert.block_hash, cert.state_root)?;
                let key = signer_key(ctx, rollup).await?;
                let prepared = l1.prepare_settle(&key, rollup_id, &cert).await?;
                drop(key);
                s.nonce = Some(prepared.nonce);
                s.tx_hash = Some(prepared.tx_hash.to_string());
                s.raw_tx = Some(prepared.raw.to_string());
                s.signer = Some(prepared.signer.to_string());
                // The intent is durable before anything leaves this process.
                record(ctx, rollup, s).await?;
            }
            fault::point(fault::EXIT_BEFORE_SEND);
            broadcast(&l1, s).await?;
            fault::point(fault::EXIT_AFTER_SEND);
            s.step = SettlementStep::Confirming;
            Ok(Duration::ZERO)
        }
        SettlementStep::Confirming => confirm(&l1_client(rollup)?, rollup, s).await,
        SettlementStep::Done => Ok(Duration::ZERO),
    }
}

async fn confirm(l1: &L1Client, rollup: &FlashRollup, s: &mut SettlementStatus) -> Result<Duration> {
    let hash: B256 = parse(s.tx_hash.as_deref(), "tx hash")?;
    let rollup_id = rollup_id(s)?;
    let required = rollup.spec.settlement.confirmations;
    match l1.receipt(hash).await? {
        Some(receipt) if receipt.success => confirmed(l1, s, receipt.block_number, required).await,
        Some(receipt) => {
            if let Some(done) = already_settled(l1, rollup_id, s, required).await? {
                return Ok(done);
            }
            Err(Error::L1(L1Error::Reverted(format!(
                "settlement transaction {hash} reverted in L1 block {}",
                receipt.block_number
            ))))
        }
        None => {
            if let Some(done) = already_settled(l1, rollup_id, s, required).await? {
                return Ok(done);
            }
            // Another transaction of the signer took our nonce: ours can never be mined, so a
            // new one is signed (still exactly once: the contract is not settled, checked above).
            let signer: Address = parse(s.signer.as_deref(), "signer address")?;
            let nonce = s
                .nonce
                .ok_or_else(|| Error::Certificate("status.settlement has no nonce".into()))?;
            if l1.is_superseded(hash, signer, nonce).await? {
                tracing::warn!(
                    rollup = %rollup.name_any(),
                    tx = %hash,
                    nonce,
                    "the settlement transaction's nonce was taken by another transaction; signing a new one"
                );
                s.raw_tx = None;
                s.tx_hash = None;
                s.nonce = None;
                s.step = SettlementStep::Submitting;
                return Ok(Duration::ZERO);
            }
            // Not mined yet, or dropped from the pool: sending the same bytes again is harmless.
            broadcast(l1, s).await?;
            Err(Error::InProgress(RECEIPT_POLL))
        }
    }
}

/// The settlement is in L1 block `block`: record where, and finish once it has `required`
/// confirmations.
async fn confirmed(l1: &L1Client, s: &mut SettlementStatus, block: u64, required: u32) -> Result<Duration> {
    let head = l1.block_number().await?;
    let confirmations = head.saturating_sub(block) + 1;
    s.l1_block_number = Some(block);
    s.confirmations = Some(confirmations);
    if confirmations >= u64::from(required) {
        fault::point(fault::EXIT_AFTER_RECEIPT);
        s.step = SettlementStep::Done;
        s.settled_at = Some(Time(jiff::Timestamp::now()));
        Ok(Duration::ZERO)
    } else {
        Err(Error::InProgress(RECEIPT_POLL))
    }
}

/// If the contract already holds this rollup's settlement, finish with it when it is ours
/// (after its confirmations, located by our transaction's receipt or else by the contract's
/// `RollupSettled` log), or fail loudly when it is not: someone settled a different root.
async fn already_settled(
    l1: &L1Client,
    rollup_id: B256,
    s: &mut SettlementStatus,
    required: u32,
) -> Result<Option<Duration>> {
    let Some(record) = l1.settlement_of(rollup_id).await? else {
        return Ok(None);
    };
    let ours = s.state_root.as_deref() == Some(&record.state_root.to_string())
        && s.block_hash.as_deref() == Some(&record.block_hash.to_string());
    if !ours {
        return Err(Error::Certificate(format!(
            "the contract already holds a settlement of this rollup at block {} with state root {}, not ours",
            record.number, record.state_root
        )));
    }
    if let Some(hash) = s.tx_hash.as_deref().and_then(|h| h.parse::<B256>().ok())
        && let Some(receipt) = l1.receipt(hash).await?
        && receipt.success
    {
        return confirmed(l1, s, receipt.block_number, required).await.map(Some);
    }
    // A settlement whose transaction this status does not know (its intent was never
    // recorded): find it by its log. Best effort: some RPC providers refuse whole-chain scans.
    match l1.settled_log(rollup_id).await {
        Ok(Some((tx, block))) => {
            s.tx_hash = Some(tx.to_string());
            confirmed(l1, s, block, required).await.map(Some)
        }
        _ => {
            s.step = SettlementStep::Done;
            s.settled_at = Some(Time(jiff::Timestamp::now()));
            Ok(Some(Duration::ZERO))
        }
    }
}

async fn broadcast(l1: &L1Client, s: &SettlementStatus) -> Result<()> {
    let raw: Bytes = parse(s.raw_tx.as_deref(), "raw transaction")?;
    rebroadcast(l1, &raw).await
}

/// Send signed bytes whose intent is recorded; a nonce already used is not an error (the
/// receipt, or the contract's record, tells whether it was this transaction).
pub(super) async fn rebroadcast(l1: &L1Client, raw: &Bytes) -> Result<()> {
    match l1.broadcast(raw).await {
        // Nonce used: either our transaction was mined, or another took the nonce; the receipt
        // (and the contract's record) tells which.
        Ok(_) | Err(L1Error::NonceTooLow(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn check_certificate(s: &SettlementStatus, hash: B256, root: B256) -> Result<()> {
    if s.block_hash.as_deref() != Some(&hash.to_string()) || s.state_root.as_deref() != Some(&root.to_string()) {
        return Err(Error::Certificate(format!(
            "the certificate is for block {hash} with root {root}, but the sealed block is {} with root {}",
            s.block_hash.as_deref().unwrap_or("?"),
            s.state_root.as_deref().unwrap_or("?")
        )));
    }
    Ok(())
}

fn l1_spec(rollup: &FlashRollup) -> Result<&L1Spec> {
    rollup
        .spec
        .settlement
        .l1
        .as_ref()
        .ok_or_else(|| Error::InvalidSpec("settlement.l1 is required when settlement.policy is Settle".into()))
}

pub(super) fn l1_client(rollup: &FlashRollup) -> Result<L1Client> {
    let l1 = l1_spec(rollup)?;
    let contract: Address = l1
        .contract
        .parse()
        .map_err(|_| Error::InvalidSpec(format!("settlement.l1.contract {:?} is not an address", l1.contract)))?;
    Ok(L1Client::new(&l1.rpc_url, l1.chain_id, contract)?)
}

pub(super) fn rollup_id(s: &SettlementStatus) -> Result<B256> {
    parse(s.rollup_id.as_deref(), "rollup id")
}

pub(super) fn parse<T: std::str::FromStr>(value: Option<&str>, what: &'static str) -> Result<T> {
    value
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::Certificate(format!("status.settlement has no valid {what}")))
}

/// Read the signer key from its Secret. It lives in memory only for the signing call.
pub(super) async fn signer_key(ctx: &Context, rollup: &FlashRollup) -> Result<String> {
    let r = &l1_spec(rollup)?.signer_secret_ref;
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &rollup.namespace().unwrap_or_default());
    let missing = |problem| Error::SignerSecret {
        name: r.name.clone(),
        problem,
    };
    let secret = api.get_opt(&r.name).await.map_err(|source| Error::Read {
        what: "signer secret",
        source,
    })?;
    let secret = secret.ok_or_else(|| missing("not found"))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .ok_or_else(|| missing("has no such key"))?;
    let key = std::str::from_utf8(&bytes.0).map_err(|_| missing("key is not text"))?;
    Ok(key.trim().to_owned())
}

/// Write `status.settlement` now (a merge patch of that field alone).
pub async fn record(ctx: &Context, rollup: &FlashRollup, s: &SettlementStatus) -> Result<()> {
    let api: Api<FlashRollup> = Api::namespaced(ctx.client.clone(), &rollup.namespace().unwrap_or_default());
    let patch = serde_json::json!({ "status": { "settlement": s } });
    api.patch_status(&rollup.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::Status)?;
    Ok(())
}
