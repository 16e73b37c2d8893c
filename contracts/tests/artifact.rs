//! The committed artifact is what the pinned compiler makes of the committed source, and the ABI
//! both Rust sides use (this crate's bindings, the operator's `IFlashSettlement`) is the contract's.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use alloy::primitives::{B256, U256, keccak256};
use alloy::sol_types::{SolCall, SolEvent};
use flashlayer_contracts::{AbiKind, FlashSettlement, SOLC_INSTALL, abi_signatures, artifact, selector};
use flashlayer_operator::settlement::l1::{IFlashSettlement, settle_calldata};

/// Drift check: compiles src/FlashSettlement.sol with `contracts/compile --stdout` and compares.
/// `FLASHLAYER_UPDATE_GENERATED=1` rewrites the committed artifact instead.
#[test]
fn committed_artifact_matches_a_fresh_compile() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("node")
        .arg(dir.join("compile"))
        .arg("--stdout")
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `node contracts/compile` ({e}): Node.js and solc-js are needed. Install solc with:\n  {SOLC_INSTALL}")
        });
    assert!(
        out.status.success(),
        "contracts/compile failed:\n{}\n(solc-js is installed with: {SOLC_INSTALL})",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = String::from_utf8(out.stdout).expect("utf-8 artifact");
    let committed_path = dir.join("out/FlashSettlement.json");
    if std::env::var_os("FLASHLAYER_UPDATE_GENERATED").is_some() {
        std::fs::write(&committed_path, &fresh).expect("write artifact");
        return;
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == fresh,
        "contracts/out/FlashSettlement.json is out of date with contracts/src/FlashSettlement.sol: \
         run `contracts/compile` (or FLASHLAYER_UPDATE_GENERATED=1 cargo test -p flashlayer-contracts \
         --test artifact) and commit the result"
    );
    // The crate embeds the same file.
    assert_eq!(flashlayer_contracts::ARTIFACT_JSON, committed);
}

fn ours() -> BTreeMap<String, AbiKind> {
    let mut m = BTreeMap::new();
    for s in FlashSettlement::FlashSettlementCalls::SIGNATURES {
        m.insert(s.to_string(), AbiKind::Function);
    }
    for s in FlashSettlement::FlashSettlementErrors::SIGNATURES {
        m.insert(s.to_string(), AbiKind::Error);
    }
    for s in FlashSettlement::FlashSettlementEvents::SIGNATURES {
        m.insert(s.to_string(), AbiKind::Event);
    }
    m
}

#[test]
fn rust_bindings_are_exactly_the_artifact_abi() {
    let abi = artifact().expect("artifact").abi;
    assert_same(&abi_signatures(&abi), &ours());
}

fn assert_same(a: &BTreeMap<String, AbiKind>, b: &BTreeMap<String, AbiKind>) {
    let only_a: Vec<_> = a.iter().filter(|(k, v)| b.get(*k) != Some(v)).collect();
    let only_b: Vec<_> = b.iter().filter(|(k, v)| a.get(*k) != Some(v)).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "artifact only: {only_a:?}\nbindings only: {only_b:?}"
    );
}

/// The operator's `IFlashSettlement` (operator/src/settlement/l1.rs) must be a subset of the
/// contract's ABI with identical selectors, return shapes and event topics.
#[test]
fn operator_interface_matches_the_contract() {
    let abi = artifact().expect("artifact").abi;
    let contract = abi_signatures(&abi);
    for sig in IFlashSettlement::IFlashSettlementCalls::SIGNATURES {
        assert_eq!(
            contract.get(*sig),
            Some(&AbiKind::Function),
            "operator calls {sig}, the contract has no such function"
        );
    }
    for sig in IFlashSettlement::IFlashSettlementEvents::SIGNATURES {
        assert_eq!(
            contract.get(*sig),
            Some(&AbiKind::Event),
            "operator expects event {sig}"
        );
    }
    // Selectors, spelled out for the four calls the operator makes.
    let pairs: [(&str, [u8; 4]); 4] = [
        (
            IFlashSettlement::registerRollupCall::SIGNATURE,
            IFlashSettlement::registerRollupCall::SELECTOR,
        ),
        (
            IFlashSettlement::settleCall::SIGNATURE,
            IFlashSettlement::settleCall::SELECTOR,
        ),
        (
            IFlashSettlement::settlementCall::SIGNATURE,
            IFlashSettlement::settlementCall::SELECTOR,
        ),
        (
            IFlashSettlement::isRegisteredCall::SIGNATURE,
            IFlashSettlement::isRegisteredCall::SELECTOR,
        ),
    ];
    for (sig, sel) in pairs {
        assert_eq!(selector(sig), sel, "{sig}");
    }
    assert_eq!(
        FlashSettlement::settleCall::SELECTOR,
        IFlashSettlement::settleCall::SELECTOR
    );
    assert_eq!(
        FlashSettlement::registerRollupCall::SELECTOR,
        IFlashSettlement::registerRollupCall::SELECTOR
    );
    assert_eq!(
        IFlashSettlement::RollupSettled::SIGNATURE_HASH,
        FlashSettlement::RollupSettled::SIGNATURE_HASH
    );

    // Return shapes and the indexed event parameter, from the artifact itself.
    let entry = |kind: &str, name: &str| -> serde_json::Value {
        abi.as_array()
            .and_then(|a| a.iter().find(|e| e["type"] == kind && e["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{kind} {name} not in the artifact"))
    };
    let types = |v: &serde_json::Value, key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| p["type"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        types(&entry("function", "settlement"), "outputs"),
        ["bool", "uint64", "bytes32", "bytes32"]
    );
    assert_eq!(types(&entry("function", "isRegistered"), "outputs"), ["bool"]);
    assert_eq!(types(&entry("function", "settle"), "outputs"), Vec::<String>::new());
    assert_eq!(entry("function", "settlement")["stateMutability"], "view");
    let ev = entry("event", "RollupSettled");
    let indexed: Vec<bool> = ev["inputs"]
        .as_array()
        .map(|a| a.iter().map(|p| p["indexed"] == true).collect())
        .unwrap_or_default();
    assert_eq!(indexed, [true, false, false, false]);
    assert_eq!(
        IFlashSettlement::RollupSettled::SIGNATURE_HASH,
        keccak256("RollupSettled(bytes32,uint64,bytes32,bytes32)")
    );
}

/// The operator's `settle` calldata decodes as the contract's `settle` call, field for field.
#[test]
fn operator_settle_calldata_decodes_as_the_contracts_call() {
    let json = serde_json::json!({
        "chainId": 901337, "rollupId": B256::repeat_byte(0x33), "number": 42,
        "blockHash": B256::repeat_byte(0x11), "stateRoot": B256::repeat_byte(0x22),
        "signerBitmap": "0x5", "signers": [], "signedStake": "0x1", "totalStake": "0x2",
        "apkG2": ["0x1", "0x2", "0x3", "0x4"], "sigma": ["0x5", "0x6"],
    });
    let cert: flashlayer_operator::settlement::node::Certificate = serde_json::from_value(json).expect("certificate");
    let data = settle_calldata(B256::repeat_byte(0x44), &cert);
    let call = FlashSettlement::settleCall::abi_decode(&data).expect("decodes");
    assert_eq!(call.rollupId, B256::repeat_byte(0x44));
    assert_eq!(call.number, 42);
    assert_eq!(call.blockHash, B256::repeat_byte(0x11));
    assert_eq!(call.stateRoot, B256::repeat_byte(0x22));
    assert_eq!(call.signerBitmap, U256::from(5));
    assert_eq!(call.apkG2, [1, 2, 3, 4].map(U256::from));
    assert_eq!(call.sigma, [5, 6].map(U256::from));
}
