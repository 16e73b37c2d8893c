//! The operator's own L1 client (`flashlayer_operator::settlement::l1::L1Client`) against the
//! deployed contract on a real anvil: it registers, settles a certificate that went through the
//! node's JSON and the operator's decoding, reads the settlement back, and sees refusals as
//! reverts before signing.

mod common;

use std::time::{Duration, Instant};

use alloy::primitives::aliases::U96;
use alloy::primitives::{B256, U256};
use alloy::sol_types::SolError;
use common::*;
use flashlayer_contracts::FlashSettlement;
use flashlayer_operator::settlement::l1::{L1Client, L1Error, ReceiptInfo, SettledRecord};
use flashlayer_operator::settlement::node::Certificate as OperatorCertificate;

async fn wait_receipt(l1: &L1Client, hash: B256) -> ReceiptInfo {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(r) = l1.receipt(hash).await.expect("receipt") {
            return r;
        }
        assert!(Instant::now() < deadline, "no receipt for {hash}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn reverted_with<E: SolError>(err: &L1Error) {
    let sel = alloy::hex::encode(E::SELECTOR);
    assert!(
        matches!(err, L1Error::Reverted(m) if m.contains(&sel)),
        "expected a revert with {} (0x{sel}), got {err:?}",
        E::SIGNATURE
    );
}

#[tokio::test]
async fn operator_client_registers_and_settles_on_the_contract() {
    let anvil = Anvil::start().await;
    let contract = deploy(&anvil.provider(REGISTRAR_KEY)).await;
    let l1 = L1Client::new(&anvil.url, L1_CHAIN_ID, contract).expect("client");
    let set = TestSet::new(21, &[100, 100, 50], 67);
    let rid = flashlayer_operator::settlement::l1::rollup_id("games", "mint-weekend", "uid-1");
    let stakes: Vec<U96> = set.stakes.iter().map(|s| U96::from(*s)).collect();

    // Registration through the operator's client, idempotent.
    assert!(!l1.is_registered(rid).await.expect("view"));
    let tx = l1
        .register_rollup(
            REGISTRAR_KEY,
            rid,
            ROLLUP_CHAIN_ID,
            &set.g1_words(),
            &stakes,
            set.set.quorum_bps(),
        )
        .await
        .expect("register")
        .expect("a transaction");
    assert!(wait_receipt(&l1, tx).await.success);
    assert!(l1.is_registered(rid).await.expect("view"));
    assert_eq!(
        l1.register_rollup(
            REGISTRAR_KEY,
            rid,
            ROLLUP_CHAIN_ID,
            &set.g1_words(),
            &stakes,
            set.set.quorum_bps()
        )
        .await
        .expect("idempotent"),
        None
    );
    assert_eq!(l1.settlement_of(rid).await.expect("view"), None);

    // The sequencer's certificate, as JSON from the node's admin API into the operator's type.
    let b = block(1201);
    let node_cert = set.certify(rid, b, &[1, 0]);
    let json = serde_json::to_value(&node_cert).expect("node JSON");
    let cert: OperatorCertificate = serde_json::from_value(json).expect("operator decodes it");

    // Someone else's key: refused at gas estimation, before anything is signed or sent.
    let err = l1
        .prepare_settle(OTHER_KEY, rid, &cert)
        .await
        .expect_err("not the registrar");
    reverted_with::<FlashSettlement::NotRegistrar>(&err);
    // A tampered root likewise.
    let mut bad = cert.clone();
    bad.state_root = B256::repeat_byte(0x99);
    reverted_with::<FlashSettlement::BadSignature>(
        &l1.prepare_settle(REGISTRAR_KEY, rid, &bad).await.expect_err("bad"),
    );

    // Prepare, broadcast, confirm, read back.
    let prepared = l1.prepare_settle(REGISTRAR_KEY, rid, &cert).await.expect("prepare");
    assert_eq!(prepared.signer, address_of(REGISTRAR_KEY));
    let hash = l1.broadcast(&prepared.raw).await.expect("broadcast");
    assert_eq!(hash, prepared.tx_hash);
    let receipt = wait_receipt(&l1, hash).await;
    assert!(receipt.success, "settle reverted");
    println!(
        "settle gas via the operator's client (3 operators, 2 signers): {}",
        receipt.gas_used
    );
    assert_eq!(
        l1.settlement_of(rid).await.expect("view"),
        Some(SettledRecord {
            number: 1201,
            block_hash: b.hash,
            state_root: b.state_root,
        })
    );

    // Exactly once: the next attempt is refused before signing.
    let err = l1
        .prepare_settle(REGISTRAR_KEY, rid, &cert)
        .await
        .expect_err("already settled");
    reverted_with::<FlashSettlement::AlreadySettled>(&err);
    assert!(!err.is_transient());
    assert_eq!(node_cert.signer_bitmap, U256::from(0b011));
}
