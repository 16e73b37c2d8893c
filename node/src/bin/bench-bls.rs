//! Benchmark (not a test): BLS aggregate-verify time on BN254 for 4..100 signers, as the sequencer
//! and the L1 contract do it. Run in release: `cargo run --release -p flashlayer-node --bin
//! bench-bls [-- RUNS]`. Prints one row per signer count with the median and p90 of RUNS runs.
//!
//! "aggregate+verify" is what the sequencer pays to check a certificate: sum the signers' G1 keys,
//! then BLSSignatureChecker's gamma pairing check. "l1 replay" is the same check through revm's
//! precompiles (`mach::l1_check`), i.e. the contract's work without the EVM around it.

use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use flashlayer_node::bls::{self, G1Point, G2Point, SecretKey};
use flashlayer_node::mach::{self, Certificate, Member, OperatorSet};

const SIGNER_COUNTS: [usize; 6] = [4, 8, 16, 32, 64, 100];
const DEFAULT_RUNS: usize = 51;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs = match std::env::args().nth(1) {
        Some(s) => s.parse::<usize>()?.max(1),
        None => DEFAULT_RUNS,
    };
    let msg = bls::attestation_digest(
        901337,
        B256::repeat_byte(0x33),
        42,
        B256::repeat_byte(1),
        B256::repeat_byte(2),
    );
    println!("BLS aggregate verify, BN254, median (p90) of {runs} runs");
    println!(
        "{:>7} | {:>19} | {:>19} | {:>19} | {:>9}",
        "signers", "aggregate+verify", "verify only", "l1 replay (revm)", "L1 gas*"
    );
    for n in SIGNER_COUNTS {
        let keys: Vec<SecretKey> = (0..n).map(bench_key).collect::<Result<_, _>>()?;
        let g1: Vec<G1Point> = keys.iter().map(SecretKey::public_g1).collect();
        let g2: Vec<G2Point> = keys.iter().map(SecretKey::public_g2).collect();
        let sigs: Vec<G1Point> = keys.iter().map(|k| k.sign(msg)).collect();
        let apk_g2 = bls::aggregate_g2(&g2);
        let sigma = bls::aggregate_g1(&sigs);

        let full = measure(runs, || {
            let apk_g1 = bls::aggregate_g1(&g1);
            bls::verify_aggregate(msg, &apk_g1, &apk_g2, &sigma)
        })?;
        let apk_g1 = bls::aggregate_g1(&g1);
        let verify_only = measure(runs, || bls::verify_aggregate(msg, &apk_g1, &apk_g2, &sigma))?;

        let members = g1
            .iter()
            .zip(&g2)
            .enumerate()
            .map(|(i, (a, b))| Member {
                name: format!("op-{i}"),
                address: Address::with_last_byte(i as u8),
                stake: 1,
                bls_public_key: Some((a.to_bytes(), b.to_bytes())),
            })
            .collect();
        let set = OperatorSet::new(67, members)?;
        let cert = Certificate {
            chain_id: 901337,
            rollup_id: B256::repeat_byte(0x33),
            number: 42,
            block_hash: B256::repeat_byte(1),
            state_root: B256::repeat_byte(2),
            signer_bitmap: (U256::from(1) << n) - U256::from(1),
            signers: vec![],
            signed_stake: U256::from(n),
            total_stake: U256::from(n),
            apk_g2: apk_g2.to_words(),
            sigma: sigma.to_words(),
        };
        let gas = mach::l1_check(&set, &cert)?.precompile_gas;
        let l1 = measure(runs, || mach::l1_check(&set, &cert).is_ok())?;
        println!(
            "{n:>7} | {:>19} | {:>19} | {:>19} | {gas:>9}",
            show(&full),
            show(&verify_only),
            show(&l1)
        );
    }
    println!("* precompile gas only (modexp in hashToG1, ecAdd per signer, 2 ecMul, ecPairing), no calldata/storage");
    Ok(())
}

fn bench_key(i: usize) -> Result<SecretKey, bls::BlsError> {
    let mut b = [0u8; 32];
    b[0] = 0x1f;
    b[24..].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    SecretKey::from_be_bytes(&b)
}

/// Sorted durations of `runs` calls; fails if a check ever comes out false.
fn measure(runs: usize, mut f: impl FnMut() -> bool) -> Result<Vec<Duration>, String> {
    // One warm-up call so lazy initialisation is not timed.
    if !f() {
        return Err("aggregate signature did not verify".into());
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let ok = std::hint::black_box(f());
        times.push(start.elapsed());
        if !ok {
            return Err("aggregate signature did not verify".into());
        }
    }
    times.sort();
    Ok(times)
}

fn show(sorted: &[Duration]) -> String {
    let median = sorted[sorted.len() / 2];
    let p90 = sorted[(sorted.len() * 9 / 10).min(sorted.len() - 1)];
    format!("{:.3} ms ({:.3})", ms(median), ms(p90))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
