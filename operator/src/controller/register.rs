//! Registration of a Settle-policy rollup's operator set on the L1 settlement contract, before
//! the chain runs: the G1 keys of the assigned AVSOperators in signer-bitmap order, the stakes of
//! the assignment, the quorum in basis points and the rollup's chain id. With the same
//! discipline as settlement: the signed `registerRollup` transaction is recorded in status before
//! it is sent, so a restarted operator follows that transaction instead of signing another, and
//! a registration found on the contract counts only when this operator's signer made it with this
//! very set (an id registered by someone else is a conflict, never "ours").

use std::time::Duration;

use alloy::primitives::aliases::U96;
use alloy::primitives::{Address, B256, Bytes, U256};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

use super::Context;
use super::error::{Error, Result};
use super::settle::{self, RECEIPT_POLL};
use crate::api::flashrollup::{AssignedOperator, SettlementStatus};
use crate::api::{AVSOperator, FlashRollup};
use crate::fault;
use crate::settlement::l1::{L1Client, L1Error, OperatorSetRegistration, Registration, parse_g1, signer_address};

/// What `registerRollup` is called with for this rollup and its assigned set. An operator whose
/// AVSOperator is gone, or whose G1 key does not parse, is registered without a key (`[0, 0]`):
/// its stake counts in the total, but it cannot sign (as the node treats it).
pub fn operator_set(
    rollup: &FlashRollup,
    operators: &[AssignedOperator],
    specs: &[Option<AVSOperator>],
) -> OperatorSetRegistration {
    let g1_public_keys = operators
        .iter()
        .enumerate()
        .map(|(i, _)| {
            specs
                .get(i)
                .and_then(Option::as_ref)
                .and_then(|o| parse_g1(&o.spec.bls_public_key.g1))
                .unwrap_or([U256::ZERO; 2])
        })
        .collect();
    OperatorSetRegistration {
        chain_id: rollup.spec.chain.chain_id,
        g1_public_keys,
        stakes: operators.iter().map(|o| U96::from(o.stake)).collect(),
        // 51..=100 percent by validation, so at most 10000.
        quorum_bps: (rollup.spec.verification.quorum_stake_percent.min(100) * 100) as u16,
    }
}

/// Advance the registration; `Ok(None)` once it is registered (and `s.registered` is set),
/// `Ok(Some(wait))` while its transaction is on its way.
pub async fn register(
    ctx: &Context,
    rollup: &FlashRollup,
    operators: &[AssignedOperator],
    set: &OperatorSetRegistration,
    s: &mut SettlementStatus,
) -> Result<Option<Duration>> {
    if s.registered {
        return Ok(None);
    }
    let l1 = settle::l1_client(rollup)?;
    let rollup_id = settle::rollup_id(s)?;

    if let Some(hash) = s.registered_tx.clone() {
        // An intent from this or an earlier life of the operator: follow that transaction.
        let hash: B256 = settle::parse(Some(&hash), "registration tx hash")?;
        let signer: Address = settle::parse(s.signer.as_deref(), "signer address")?;
        match l1.receipt(hash).await? {
            Some(receipt) if receipt.success => {
                let found = l1.registrar_of(rollup_id).await?;
                check_ours(&l1, rollup_id, found, signer, set).await?;
                s.registered = true;
                s.registered_l1_block_number = Some(receipt.block_number);
                Ok(None)
            }
            Some(receipt) => match l1.registrar_of(rollup_id).await? {
                // Reverted because it was registered in between: by us (another transaction of
                // ours cannot exist, but the record decides) or by someone else.
                Some(found) => {
                    check_ours(&l1, rollup_id, Some(found), signer, set).await?;
                    s.registered = true;
                    Ok(None)
                }
                None => Err(Error::L1(L1Error::Reverted(format!(
                    "registration transaction {hash} reverted in L1 block {}",
                    receipt.block_number
                )))),
            },
            None => {
                if let Some(found) = l1.registrar_of(rollup_id).await? {
                    check_ours(&l1, rollup_id, Some(found), signer, set).await?;
                    s.registered = true;
                    return Ok(None);
                }
                // Another transaction of the signer took our nonce: ours can never be mined;
                // the next round signs a new one (the id is still unregistered, checked above).
                if let Some(nonce) = s.registered_nonce
                    && l1.is_superseded(hash, signer, nonce).await?
                {
                    tracing::warn!(
                        rollup = %rollup.name_any(),
                        tx = %hash,
                        nonce,
                        "the registration transaction's nonce was taken by another transaction; signing a new one"
                    );
                    s.registered_tx = None;
                    s.registered_raw_tx = None;
                    s.registered_nonce = None;
                    return Ok(Some(Duration::ZERO));
                }
                // Not mined yet, or dropped: the same bytes again.
                let raw: Bytes = settle::parse(s.registered_raw_tx.as_deref(), "registration raw transaction")?;
                settle::rebroadcast(&l1, &raw).await?;
                Ok(Some(RECEIPT_POLL))
            }
        }
    } else {
        // From the nonce to the send, one transaction at a time (rollups share signers).
        let _signing = ctx.l1_signing.lock().await;
        let key = settle::signer_key(ctx, rollup).await?;
        let signer = signer_address(&key)?;
        if let Some(found) = l1.registrar_of(rollup_id).await? {
            // Registered by our signer in an earlier life whose status write was lost, or by
            // someone else (a front-run of the id): only the first is ours.
            check_ours(&l1, rollup_id, Some(found), signer, set).await?;
            s.registered = true;
            s.signer = Some(signer.to_string());
            return Ok(None);
        }
        let prepared = match l1.prepare_register(&key, rollup_id, set).await {
            Ok(p) => p,
            Err(L1Error::Reverted(reason)) => {
                // Registered between the view and the estimate? Then say by whom.
                let found = l1.registrar_of(rollup_id).await?;
                if found.is_some() {
                    check_ours(&l1, rollup_id, found, signer, set).await?;
                    s.registered = true;
                    s.signer = Some(signer.to_string());
                    return Ok(None);
                }
                return Err(Error::L1(L1Error::Reverted(format!(
                    "the settlement contract refuses to register the operator set: {reason}"
                ))));
            }
            Err(e) => return Err(e.into()),
        };
        drop(key);
        s.signer = Some(prepared.signer.to_string());
        s.registered_nonce = Some(prepared.nonce);
        s.registered_tx = Some(prepared.tx_hash.to_string());
        s.registered_raw_tx = Some(prepared.raw.to_string());
        // The intent is durable before anything leaves this process, with the set it freezes.
        record(ctx, rollup, operators, s).await?;
        fault::point(fault::EXIT_BEFORE_REGISTER_SEND);
        settle::rebroadcast(&l1, &prepared.raw).await?;
        tracing::info!(
            rollup = %rollup.name_any(),
            namespace = ?rollup.namespace(),
            tx = %prepared.tx_hash,
            operators = set.stakes.len(),
            "registering the operator set on the L1"
        );
        Ok(Some(RECEIPT_POLL))
    }
}

/// Write `status.settlement` and `status.assignedOperators` now (a merge patch of those two).
async fn record(
    ctx: &Context,
    rollup: &FlashRollup,
    operators: &[AssignedOperator],
    s: &SettlementStatus,
) -> Result<()> {
    let api: Api<FlashRollup> = Api::namespaced(ctx.client.clone(), &rollup.namespace().unwrap_or_default());
    let patch = serde_json::json!({ "status": { "settlement": s, "assignedOperators": operators } });
    api.patch_status(&rollup.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::Status)?;
    Ok(())
}

/// The contract's registration of `rollup_id` is ours: made by `signer`, with this set.
async fn check_ours(
    l1: &L1Client,
    rollup_id: B256,
    found: Option<Registration>,
    signer: Address,
    set: &OperatorSetRegistration,
) -> Result<()> {
    let Some(found) = found else {
        return Err(Error::L1(L1Error::Rpc(format!(
            "the registration transaction succeeded but the contract has no registration of {rollup_id}"
        ))));
    };
    if found.registrar != signer {
        return Err(Error::Registration(format!(
            "rollup id {rollup_id} is already registered on the settlement contract by {}, not by this rollup's signer {signer}; refusing to run a rollup whose settlement someone else controls",
            found.registrar
        )));
    }
    let mismatch = |what: &str| {
        Error::Registration(format!(
            "rollup id {rollup_id} is registered by this signer, but with a different {what} than the assigned operator set"
        ))
    };
    if !set.matches(&found) {
        return Err(mismatch("chain id, quorum, operator count or total stake"));
    }
    for (i, (g1, stake)) in set.g1_public_keys.iter().zip(&set.stakes).enumerate() {
        let (on_chain_g1, on_chain_stake) = l1.operator_at(rollup_id, i as u64).await?;
        if on_chain_g1 != *g1 || on_chain_stake != *stake {
            return Err(mismatch(&format!("key or stake for operator {i}")));
        }
    }
    Ok(())
}
