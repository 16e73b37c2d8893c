//! FlashSettlement on a real anvil (127.0.0.1 only; each test starts its own anvil and kills it
//! when it ends): registration, settlement with certificates built by the node's MACH code, every
//! refusal with its custom error, agreement with the node's `mach::l1_check`, and gas.

mod common;

use alloy::primitives::{B256, U256, keccak256};
use alloy::providers::Provider;
use alloy::sol_types::{SolCall, SolError, SolEvent};
use common::*;
use flashlayer_contracts::FlashSettlement;
use flashlayer_node::bls::{self, FP_MODULUS, G1Point};
use flashlayer_node::mach::{self, Certificate};

async fn settled(
    provider: &impl Provider,
    contract: alloy::primitives::Address,
    rid: B256,
) -> FlashSettlement::settlementReturn {
    view(provider, contract, FlashSettlement::settlementCall { rollupId: rid }).await
}

#[tokio::test]
async fn valid_certificate_settles_once() {
    let anvil = Anvil::start().await;
    let p = anvil.provider(REGISTRAR_KEY);
    let contract = deploy(&p).await;
    let set = TestSet::new(1, &[100, 100, 100, 100], 67);
    let rid = rollup_id("settles-once");

    assert!(!view(&p, contract, FlashSettlement::isRegisteredCall { rollupId: rid }).await);
    let reg = send(&p, contract, set.register_call(rid)).await;
    assert!(reg.status());
    assert!(view(&p, contract, FlashSettlement::isRegisteredCall { rollupId: rid }).await);
    let info = view(&p, contract, FlashSettlement::rollupCall { rollupId: rid }).await;
    assert_eq!(info.registrar, address_of(REGISTRAR_KEY));
    assert_eq!(
        (info.chainId, info.quorumBps, info.operatorCount),
        (ROLLUP_CHAIN_ID, 6700, 4)
    );
    assert_eq!(info.totalStake, U256::from(400));

    // What the sequencer certifies once three of four have attested.
    let b = block(77);
    let cert = set.certify(rid, b, &[2, 0, 3, 1]);
    assert_eq!(cert.signer_bitmap, U256::from(0b1101));
    mach::l1_check(&set.set, &cert).expect("the node's L1 check accepts it");

    let receipt = send(&p, contract, settle_call(rid, &cert)).await;
    assert!(receipt.status(), "settle reverted");
    println!("settle gas (4 operators, 3 signers): {}", receipt.gas_used);

    // The event.
    let logs = receipt.inner.logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].address(), contract);
    let ev = FlashSettlement::RollupSettled::decode_log_data(logs[0].data()).expect("RollupSettled");
    assert_eq!(logs[0].topics()[1], rid, "rollupId is indexed");
    assert_eq!(
        (ev.rollupId, ev.number, ev.blockHash, ev.stateRoot),
        (rid, 77, b.hash, b.state_root)
    );

    // The view.
    let s = settled(&p, contract, rid).await;
    assert_eq!(
        (s.settled, s.number, s.blockHash, s.stateRoot),
        (true, 77, b.hash, b.state_root)
    );

    // The storage itself: mapping slot 0, struct fields at base + 1 (settled, number), + 3, + 4.
    let base = U256::from_be_bytes(keccak256([rid.as_slice(), &[0u8; 32]].concat()).0);
    let pr = &p;
    let slot = |k: u64| async move {
        pr.get_storage_at(contract, base + U256::from(k))
            .await
            .expect("storage")
    };
    assert_eq!(B256::from(slot(3).await), b.hash);
    assert_eq!(B256::from(slot(4).await), b.state_root);
    let packed = slot(1).await;
    assert_eq!((packed >> 160) & U256::from(0xff), U256::from(1), "settled flag");
    assert_eq!((packed >> 168) & U256::from(u64::MAX), U256::from(77), "number");

    // A second, later valid certificate for the same rollup is refused.
    let later = set.certify(rid, block(78), &[0, 1, 2]);
    mach::l1_check(&set.set, &later).expect("valid on its own");
    let err = call(&p, address_of(REGISTRAR_KEY), contract, settle_call(rid, &later))
        .await
        .expect_err("refused");
    assert_eq!(error_name(&err), "AlreadySettled");
    let decoded = FlashSettlement::AlreadySettled::abi_decode(&err).expect("decode");
    assert_eq!((decoded.rollupId, decoded.number), (rid, 77));

    // The same certificate again (a replay), mined: the transaction fails and nothing changes.
    let replay = send_unchecked(&p, contract, settle_call(rid, &cert)).await;
    assert!(!replay.status(), "replay must revert");
    assert!(replay.inner.logs().is_empty());
    let err = call(&p, address_of(REGISTRAR_KEY), contract, settle_call(rid, &cert))
        .await
        .expect_err("replay");
    assert_eq!(error_name(&err), "AlreadySettled");
    let s = settled(&p, contract, rid).await;
    assert_eq!((s.settled, s.number, s.stateRoot), (true, 77, b.state_root));
}

#[tokio::test]
async fn bad_certificates_and_callers_are_refused_with_their_errors() {
    let anvil = Anvil::start().await;
    let p = anvil.provider(REGISTRAR_KEY);
    let contract = deploy(&p).await;
    let registrar = address_of(REGISTRAR_KEY);
    let set = TestSet::new(2, &[100, 100, 100, 100], 67);
    let rid = rollup_id("refusals");
    let other_rid = rollup_id("refusals-other");
    assert!(send(&p, contract, set.register_call(rid)).await.status());
    assert!(send(&p, contract, set.register_call(other_rid)).await.status());
    let b = block(9);
    let good = set.certify(rid, b, &[0, 1, 2]);

    let refused = |cert: Certificate, from: alloy::primitives::Address, target: B256| {
        let p = p.clone();
        async move {
            let err = call(&p, from, contract, settle_call(target, &cert))
                .await
                .expect_err("must revert");
            error_name(&err)
        }
    };

    // Wrong state root (the signatures are over the real one).
    let mut t = good.clone();
    t.state_root = B256::repeat_byte(0x66);
    assert_eq!(refused(t, registrar, rid).await, "BadSignature", "wrong state root");
    // Wrong block hash and number, likewise.
    let mut t = good.clone();
    t.block_hash = B256::repeat_byte(0x67);
    assert_eq!(refused(t, registrar, rid).await, "BadSignature", "wrong block hash");
    let mut t = good.clone();
    t.number += 1;
    assert_eq!(refused(t, registrar, rid).await, "BadSignature", "wrong number");

    // A forged signature: operator 2's share signed by a key outside the set.
    let msg = bls::attestation_digest(ROLLUP_CHAIN_ID, rid, b.number, b.hash, b.state_root);
    let real: Vec<G1Point> = [0, 1, 2].iter().map(|&i| bls_key(2, i).sign(msg)).collect();
    let mut forged = real.clone();
    forged[2] = bls_key(99, 0).sign(msg);
    let mut t = good.clone();
    t.sigma = bls::aggregate_g1(&forged).to_words();
    assert_eq!(refused(t, registrar, rid).await, "BadSignature", "forged signature");
    // A G2 key that matches a forged signature, but not the registered G1 keys (the gamma check).
    let mut t = good.clone();
    let forger = bls_key(99, 1);
    t.sigma = forger.sign(msg).to_words();
    t.apk_g2 = forger.public_g2().to_words();
    assert_eq!(refused(t, registrar, rid).await, "BadSignature", "rogue apkG2");
    // The bitmap claims a signer whose share is not in sigma, or drops one whose share is.
    let mut t = good.clone();
    t.signer_bitmap = U256::from(0b1111);
    assert_eq!(refused(t, registrar, rid).await, "BadSignature", "extra bit");
    let mut t = good.clone();
    t.signer_bitmap = U256::from(0b0011);
    assert_eq!(refused(t, registrar, rid).await, "QuorumNotMet", "dropped bit");

    // A short quorum with a valid aggregate signature: 2 of 4 equal stakes is 50 % < 67 %.
    let short = set.aggregate(rid, b, &[0, 3]);
    let short_apk = bls::G2Point::from_words(&short.apk_g2).expect("apkG2");
    assert!(bls::verify(
        msg,
        &short_apk,
        &G1Point::from_words(&short.sigma).expect("sigma")
    ));
    assert_eq!(
        refused(short.clone(), registrar, rid).await,
        "QuorumNotMet",
        "short quorum"
    );
    let err = call(&p, registrar, contract, settle_call(rid, &short))
        .await
        .expect_err("short");
    let q = FlashSettlement::QuorumNotMet::abi_decode(&err).expect("decode");
    assert_eq!(
        (q.signedStake, q.totalStake, q.quorumBps),
        (U256::from(200), U256::from(400), 6700)
    );

    // A bit beyond the set.
    let mut t = good.clone();
    t.signer_bitmap |= U256::from(1) << 4;
    assert_eq!(refused(t, registrar, rid).await, "BadBitmap", "non-member bit");

    // Malformed points: sigma off the curve, apkG2 with a coordinate >= p.
    let mut t = good.clone();
    t.sigma.swap(0, 1);
    assert_eq!(
        refused(t, registrar, rid).await,
        "InvalidCertificatePoint",
        "sigma off curve"
    );
    let mut t = good.clone();
    t.apk_g2[1] += FP_MODULUS;
    assert_eq!(
        refused(t, registrar, rid).await,
        "InvalidCertificatePoint",
        "apkG2 >= p"
    );

    // An unregistered rollup.
    assert_eq!(
        refused(good.clone(), registrar, rollup_id("never-registered")).await,
        "UnknownRollup"
    );
    // A caller that is not the registrar, even with a valid certificate.
    assert_eq!(refused(good.clone(), address_of(OTHER_KEY), rid).await, "NotRegistrar");
    // The certificate of one rollup replayed for another rollup with the same operator set.
    assert_eq!(
        refused(good.clone(), registrar, other_rid).await,
        "BadSignature",
        "cross-rollup replay"
    );

    // None of this settled anything; the valid certificate still does.
    assert!(!settled(&p, contract, rid).await.settled);
    assert!(send(&p, contract, settle_call(rid, &good)).await.status());
    assert!(settled(&p, contract, rid).await.settled);
    assert!(!settled(&p, contract, other_rid).await.settled);
}

#[tokio::test]
async fn registration_rules() {
    let anvil = Anvil::start().await;
    let p = anvil.provider(REGISTRAR_KEY);
    let contract = deploy(&p).await;
    let registrar = address_of(REGISTRAR_KEY);
    let set = TestSet::new(3, &[10, 20, 30], 51);
    let rid = rollup_id("registration");
    assert!(send(&p, contract, set.register_call(rid)).await.status());

    let reg = |rid: B256, keys: Vec<[U256; 2]>, stakes: Vec<u64>, bps: u16| {
        FlashSettlement::registerRollupCall {
            rollupId: rid,
            chainId: ROLLUP_CHAIN_ID,
            g1PublicKeys: keys,
            stakes: stakes.into_iter().map(alloy::primitives::aliases::U96::from).collect(),
            quorumBps: bps,
        }
        .abi_encode()
    };
    let refused = |data: Vec<u8>, from| {
        let p = p.clone();
        async move { error_name(&call(&p, from, contract, data).await.expect_err("must revert")) }
    };
    let keys = set.g1_words();
    let fresh = rollup_id("registration-2");

    // Once per id, whoever asks.
    assert_eq!(refused(set.register_call(rid), registrar).await, "AlreadyRegistered");
    assert_eq!(
        refused(set.register_call(rid), address_of(OTHER_KEY)).await,
        "AlreadyRegistered"
    );
    assert_eq!(
        refused(reg(fresh, vec![], vec![], 6700), registrar).await,
        "EmptyOperatorSet"
    );
    assert_eq!(
        refused(reg(fresh, vec![keys[0]; 257], vec![1; 257], 6700), registrar).await,
        "TooManyOperators"
    );
    assert_eq!(
        refused(reg(fresh, keys.clone(), vec![1, 2], 6700), registrar).await,
        "LengthMismatch"
    );
    assert_eq!(
        refused(reg(fresh, keys.clone(), vec![1, 2, 3], 0), registrar).await,
        "BadQuorum"
    );
    assert_eq!(
        refused(reg(fresh, keys.clone(), vec![1, 2, 3], 10_001), registrar).await,
        "BadQuorum"
    );
    assert_eq!(
        refused(reg(fresh, keys.clone(), vec![0, 0, 0], 6700), registrar).await,
        "ZeroTotalStake"
    );
    let mut off_curve = keys.clone();
    off_curve[1][1] += U256::from(1);
    let err = call(&p, registrar, contract, reg(fresh, off_curve, vec![1, 2, 3], 6700))
        .await
        .expect_err("off curve");
    assert_eq!(
        FlashSettlement::InvalidPublicKey::abi_decode(&err)
            .expect("decode")
            .index,
        U256::from(1)
    );
    let mut not_reduced = keys.clone();
    not_reduced[2][0] += FP_MODULUS;
    assert_eq!(
        refused(reg(fresh, not_reduced, vec![1, 2, 3], 6700), registrar).await,
        "InvalidPublicKey"
    );
    // 256 operators is the limit and fits; [0, 0] means "no key".
    let many = reg(fresh, vec![[U256::ZERO; 2]; 256], vec![1; 256], 10_000);
    let receipt = send(&p, contract, many).await;
    assert!(receipt.status());
    println!("registerRollup gas (256 keyless operators): {}", receipt.gas_used);

    // What was stored reads back.
    for (i, (k, s)) in keys.iter().zip([10u64, 20, 30]).enumerate() {
        let op = view(
            &p,
            contract,
            FlashSettlement::operatorAtCall {
                rollupId: rid,
                index: U256::from(i),
            },
        )
        .await;
        assert_eq!((op.g1, op.stake), (*k, alloy::primitives::aliases::U96::from(s)));
    }
    let err = call(
        &p,
        registrar,
        contract,
        FlashSettlement::operatorAtCall {
            rollupId: rid,
            index: U256::from(3),
        }
        .abi_encode(),
    )
    .await
    .expect_err("out of range");
    assert_eq!(error_name(&err), "NoSuchOperator");
    let info = view(&p, contract, FlashSettlement::rollupCall { rollupId: fresh }).await;
    assert_eq!(
        (info.operatorCount, info.totalStake, info.quorumBps),
        (256, U256::from(256), 10_000)
    );
}

/// The contract accepts exactly the certificates the node's `mach::l1_check` accepts: the same
/// verdict on a valid certificate and on every tampered variant, including the 256-operator edge
/// (bit 255) and signers registered without a key.
#[tokio::test]
async fn contract_agrees_with_the_nodes_l1_check() {
    let anvil = Anvil::start().await;
    let p = anvil.provider(REGISTRAR_KEY);
    let contract = deploy(&p).await;
    let registrar = address_of(REGISTRAR_KEY);

    // Set A: five operators with uneven stakes, operator 4 without a key.
    let a = TestSet::with_keys(4, &[100, 40, 50, 30, 60], 67, |i| i != 4);
    let rid_a = rollup_id("agree-a");
    assert!(send(&p, contract, a.register_call(rid_a)).await.status());
    // Set B: 256 operators; only 0, 7 and 255 have keys, and 255 alone holds the quorum.
    let mut stakes = vec![1u64; 256];
    stakes[255] = 1000;
    let big = TestSet::with_keys(5, &stakes, 67, |i| matches!(i, 0 | 7 | 255));
    let rid_b = rollup_id("agree-b");
    assert!(send(&p, contract, big.register_call(rid_b)).await.status());

    let b = block(5);
    // 30 + 100 + 50 = 180 of 280 is short of 67 %; with operator 1 (40) the quorum is met.
    let good_a = a.certify(rid_a, b, &[3, 0, 2, 1]);
    assert_eq!(good_a.signer_bitmap, U256::from(0b1111));
    let good_b = big.certify(rid_b, b, &[255]);
    assert_eq!(good_b.signer_bitmap, U256::from(1) << 255);

    let mut cases: Vec<(&str, &TestSet, B256, Certificate)> = vec![
        ("valid A", &a, rid_a, good_a.clone()),
        ("valid B, bit 255", &big, rid_b, good_b.clone()),
        (
            "B: 255 with 0 and 7",
            &big,
            rid_b,
            big.aggregate(rid_b, b, &[0, 7, 255]),
        ),
        ("B: short", &big, rid_b, big.aggregate(rid_b, b, &[0, 7])),
        ("A: 0, 1, 2", &a, rid_a, a.aggregate(rid_a, b, &[0, 1, 2])),
        ("A: short", &a, rid_a, a.aggregate(rid_a, b, &[0, 3])),
        ("A: empty bitmap", &a, rid_a, a.aggregate(rid_a, b, &[])),
    ];
    let mut tamper = |name: &'static str, base: &Certificate, set: &'static str, f: &dyn Fn(&mut Certificate)| {
        let mut c = base.clone();
        f(&mut c);
        let (s, r) = if set == "A" { (&a, rid_a) } else { (&big, rid_b) };
        cases.push((name, s, r, c));
    };
    tamper("A: keyless operator 4 claimed", &good_a, "A", &|c| {
        c.signer_bitmap.set_bit(4, true)
    });
    tamper("A: bit 5 beyond set", &good_a, "A", &|c| {
        c.signer_bitmap.set_bit(5, true)
    });
    tamper("A: bit 3 dropped, quorum kept", &good_a, "A", &|c| {
        c.signer_bitmap.set_bit(3, false)
    });
    tamper("A: bit 0 dropped, quorum lost", &good_a, "A", &|c| {
        c.signer_bitmap.set_bit(0, false)
    });
    tamper("A: root", &good_a, "A", &|c| c.state_root = B256::repeat_byte(1));
    tamper("A: hash", &good_a, "A", &|c| c.block_hash = B256::repeat_byte(1));
    tamper("A: number", &good_a, "A", &|c| c.number = 6);
    tamper("A: sigma = G1", &good_a, "A", &|c| {
        c.sigma = G1Point::generator().to_words()
    });
    tamper("A: sigma = 0", &good_a, "A", &|c| c.sigma = [U256::ZERO; 2]);
    tamper("A: sigma off curve", &good_a, "A", &|c| c.sigma[1] += U256::from(1));
    tamper("A: sigma.y + p", &good_a, "A", &|c| c.sigma[1] += FP_MODULUS);
    tamper("A: apkG2 = 0", &good_a, "A", &|c| c.apk_g2 = [U256::ZERO; 4]);
    tamper("A: apkG2 c0/c1 swapped", &good_a, "A", &|c| c.apk_g2.swap(0, 1));
    tamper("A: apkG2 negated", &good_a, "A", &|c| {
        c.apk_g2[2] = FP_MODULUS - c.apk_g2[2];
        c.apk_g2[3] = FP_MODULUS - c.apk_g2[3];
    });
    tamper("A: sigma negated", &good_a, "A", &|c| {
        c.sigma[1] = FP_MODULUS - c.sigma[1]
    });
    tamper("B: bit 254 (keyless) added", &good_b, "B", &|c| {
        c.signer_bitmap.set_bit(254, true)
    });
    tamper("B: root", &good_b, "B", &|c| c.state_root = B256::repeat_byte(2));

    let mut accepted = 0;
    for (name, set, rid, cert) in &cases {
        let node = mach::l1_check(&set.set, cert);
        let chain = call(&p, registrar, contract, settle_call(*rid, cert)).await;
        let chain_verdict = chain.as_ref().map(|_| ()).map_err(|e| error_name(e));
        assert_eq!(
            node.is_ok(),
            chain_verdict.is_ok(),
            "{name}: node says {node:?}, contract says {chain_verdict:?}"
        );
        accepted += usize::from(node.is_ok());
    }
    assert_eq!(accepted, 4, "the four valid certificates");

    // And a 256-operator settlement really lands.
    let receipt = send(&p, contract, settle_call(rid_b, &good_b)).await;
    assert!(receipt.status());
    println!("settle gas (256 operators, 1 signer at bit 255): {}", receipt.gas_used);
}

/// The contract's `hashToG1` and `attestationDigest` are the node's, on pinned and random inputs.
#[tokio::test]
async fn hash_to_g1_and_digest_match_the_node() {
    let anvil = Anvil::start().await;
    let p = anvil.provider(REGISTRAR_KEY);
    let contract = deploy(&p).await;
    let mut inputs = vec![
        B256::ZERO,
        B256::repeat_byte(0x04),
        B256::repeat_byte(0xff),
        B256::repeat_byte(0x11),
    ];
    inputs.extend((0u8..12).map(|i| keccak256([b"flashlayer-contracts".as_slice(), &[i]].concat())));
    for m in inputs {
        let got = view(&p, contract, FlashSettlement::hashToG1Call { msgHash: m }).await;
        assert_eq!([got.x, got.y], bls::hash_to_g1(m).to_words(), "hashToG1({m})");
    }
    let (rid, b) = (B256::repeat_byte(0x33), block(42));
    let digest = view(
        &p,
        contract,
        FlashSettlement::attestationDigestCall {
            chainId: ROLLUP_CHAIN_ID,
            rollupId: rid,
            number: b.number,
            blockHash: b.hash,
            stateRoot: b.state_root,
        },
    )
    .await;
    assert_eq!(
        digest,
        bls::attestation_digest(ROLLUP_CHAIN_ID, rid, b.number, b.hash, b.state_root)
    );
    assert_eq!(
        digest,
        flashlayer_operator::settlement::l1::attestation_digest(ROLLUP_CHAIN_ID, rid, b.number, b.hash, b.state_root)
    );
}

/// Gas of `registerRollup` and `settle` for 4 and 32 operators (equal stakes, 67 % quorum): the
/// certificate the sequencer produces (the first quorum of signers) and one signed by all.
#[tokio::test]
async fn gas_per_settlement_for_4_and_32_operators() {
    let anvil = Anvil::start().await;
    let p = anvil.provider(REGISTRAR_KEY);
    let contract = deploy(&p).await;
    let hardfork = anvil.hardfork().await;
    let mut report = Vec::new();
    for n in [4usize, 32] {
        let set = TestSet::new(6 + n as u8, &vec![100; n], 67);
        let all: Vec<usize> = (0..n).collect();
        for (label, quorum_only) in [("quorum", true), ("all", false)] {
            let rid = rollup_id(&format!("gas-{n}-{label}"));
            let reg = send(&p, contract, set.register_call(rid)).await;
            assert!(reg.status());
            let b = block(1000 + n as u64);
            let cert = if quorum_only {
                set.certify(rid, b, &all)
            } else {
                set.aggregate(rid, b, &all)
            };
            let signers = cert.signer_bitmap.count_ones();
            mach::l1_check(&set.set, &cert).expect("valid");
            let receipt = send(&p, contract, settle_call(rid, &cert)).await;
            assert!(receipt.status());
            assert!(settled(&p, contract, rid).await.settled);
            report.push(format!(
                "{n:>3} operators, {signers:>2} signers ({label:>6}): settle {:>7} gas, registerRollup {:>8} gas",
                receipt.gas_used, reg.gas_used
            ));
        }
    }
    println!("FlashSettlement gas on anvil (hardfork {hardfork}):");
    for line in &report {
        println!("  {line}");
    }
}
