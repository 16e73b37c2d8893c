//! The CEL rules of the CRDs, evaluated client-side with kube's CEL support: each invalid spec is
//! refused with the message a user sees from `kubectl apply`, and the valid examples pass.

use flashlayer_operator::api::{AVSOperator, FlashRollup};
use kube::CustomResourceExt;
use kube::core::cel::Validator;
use serde_json::Value;

const VALID_ROLLUP: &str = r#"
apiVersion: rollups.flashlayer.dev/v1alpha1
kind: FlashRollup
metadata: { name: r, namespace: ns }
spec:
  ttl: 48h
  chain:
    chainId: 901337
    blockTime: 500ms
    gasLimit: 30000000
    genesis:
      alloc:
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266": { balance: "1000000000000000000000" }
  verification: { minOperators: 3, quorumStakePercent: 67 }
  settlement:
    policy: Settle
    l1: { rpcUrl: "http://127.0.0.1:8545", chainId: 31337, contract: "0x5FbDB2315678afecb367f032d93F642f64180aa3", signerSecretRef: { name: l1-signer } }
"#;

const VALID_OPERATOR: &str = r#"
apiVersion: rollups.flashlayer.dev/v1alpha1
kind: AVSOperator
metadata: { name: op, namespace: ns }
spec:
  address: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
  blsPublicKey:
    g1: "0x1111111111111111111111111111111111111111111111111111111111111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    g2: "0x1111111111111111111111111111111111111111111111111111111111111111222222222222222222222222222222222222222222222222222222222222222233333333333333333333333333333333333333333333333333333333333333334444444444444444444444444444444444444444444444444444444444444444"
  blsKey: { secretRef: { name: op-bls } }
  stake: 100
"#;

/// `base` with `edit` merged into its spec, as the JSON the API server would see. Untyped on
/// purpose: a bad duration must reach the CEL rules as it would from kubectl.
fn edited(base: &str, edit: &str) -> Value {
    let mut value: serde_yaml::Value = serde_yaml::from_str(base).expect("base parses");
    let patch: serde_yaml::Value = serde_yaml::from_str(edit).expect("edit parses");
    merge(&mut value["spec"], patch);
    serde_json::to_value(value).expect("YAML converts to JSON")
}

fn schema_of<K: CustomResourceExt>() -> Value {
    let crd = K::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref());
    serde_json::to_value(schema.expect("CRD has a schema")).expect("schema converts to JSON")
}

fn check_rollup(edit: &str, old: Option<&str>) -> String {
    let old = old.map(|o| edited(VALID_ROLLUP, o));
    errors_of(Validator::new().validate(&schema_of::<FlashRollup>(), &edited(VALID_ROLLUP, edit), old.as_ref()))
}

fn check_operator(edit: &str) -> String {
    errors_of(Validator::new().validate(&schema_of::<AVSOperator>(), &edited(VALID_OPERATOR, edit), None))
}

/// JSON-merge-patch semantics: maps merge, null deletes, anything else replaces.
fn merge(target: &mut serde_yaml::Value, patch: serde_yaml::Value) {
    match (target, patch) {
        (serde_yaml::Value::Mapping(t), serde_yaml::Value::Mapping(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge(t.entry(k).or_insert(serde_yaml::Value::Null), v);
                }
            }
        }
        (t, p) => *t = p,
    }
}

fn errors_of(result: Result<(), impl std::fmt::Display>) -> String {
    match result {
        Ok(()) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn valid_specs_pass() {
    // The valid manifests also deserialize into the operator's types.
    let _: FlashRollup = serde_yaml::from_str(VALID_ROLLUP).expect("rollup parses");
    let _: AVSOperator = serde_yaml::from_str(VALID_OPERATOR).expect("operator parses");
    assert_eq!(check_rollup("{}", None), "");
    assert_eq!(check_operator("{}"), "");
    assert_eq!(check_rollup("{ settlement: { policy: Discard, l1: null } }", None), "");
    assert_eq!(
        check_rollup("{ ttl: null, expiresAt: '2026-12-24T18:00:00Z' }", None),
        ""
    );
    assert_eq!(check_rollup("{ ttl: 1h30m }", None), "");
}

#[test]
fn invalid_rollups_are_refused_with_a_clear_message() {
    let cases = [
        ("{ ttl: null }", "set exactly one of spec.ttl"),
        ("{ expiresAt: '2026-12-24T18:00:00Z' }", "set exactly one of spec.ttl"),
        ("{ ttl: 30s }", "ttl must be between 1m and 720h"),
        ("{ ttl: 721h }", "ttl must be between 1m and 720h"),
        ("{ ttl: 2d }", "ttl must be a duration such as 90s, 30m or 48h"),
        ("{ chain: { chainId: 0 } }", "chainId must be greater than 0"),
        (
            "{ chain: { blockTime: 10ms } }",
            "blockTime must be between 50ms and 1m",
        ),
        ("{ chain: { blockTime: soon } }", "blockTime must be a duration"),
        ("{ chain: { gasLimit: 100 } }", "gasLimit must be between 21000"),
        (
            "{ chain: { genesis: { alloc: { '0x123': { balance: '1' } } } } }",
            "genesis.alloc keys must be 0x-prefixed 20-byte hex addresses",
        ),
        (
            "{ chain: { genesis: { alloc: { '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266': { balance: 'lots' } } } } }",
            "balance must be a decimal or 0x-prefixed hex number of wei",
        ),
        (
            "{ verification: { minOperators: 0 } }",
            "minOperators must be between 1 and 100",
        ),
        (
            "{ verification: { quorumStakePercent: 50 } }",
            "quorumStakePercent must be between 51 and 100",
        ),
        (
            "{ verification: { quorumStakePercent: 101 } }",
            "quorumStakePercent must be between 51 and 100",
        ),
        (
            "{ settlement: { l1: null } }",
            "settlement.l1 is required when settlement.policy is Settle",
        ),
        (
            "{ settlement: { l1: { rpcUrl: 'ftp://l1' } } }",
            "l1.rpcUrl must be an http:// or https:// URL",
        ),
        (
            "{ settlement: { l1: { contract: '0xabc' } } }",
            "l1.contract must be a 0x-prefixed 20-byte hex address",
        ),
        (
            "{ settlement: { confirmations: 0 } }",
            "confirmations must be between 1 and 64",
        ),
        (
            "{ sequencer: { replicas: 3 } }",
            "sequencer.replicas can only be more than 1 in mode Squad",
        ),
    ];
    for (edit, message) in cases {
        let errors = check_rollup(edit, None);
        assert!(errors.contains(message), "{edit}: expected {message:?}, got {errors:?}");
    }
}

#[test]
fn long_names_are_refused() {
    let mut rollup = edited(VALID_ROLLUP, "{}");
    rollup["metadata"]["name"] = "r".repeat(41).into();
    let errors = errors_of(Validator::new().validate(&schema_of::<FlashRollup>(), &rollup, None));
    assert!(
        errors.contains("metadata.name must be at most 40 characters"),
        "{errors}"
    );
    let mut op = edited(VALID_OPERATOR, "{}");
    op["metadata"]["name"] = "o".repeat(64).into();
    let errors = errors_of(Validator::new().validate(&schema_of::<AVSOperator>(), &op, None));
    assert!(
        errors.contains("metadata.name must be at most 63 characters"),
        "{errors}"
    );
}

#[test]
fn chain_is_immutable() {
    assert_eq!(check_rollup("{ ttl: 72h }", Some("{}")), "", "a ttl change is allowed");
    let errors = check_rollup("{ chain: { chainId: 5 } }", Some("{}"));
    assert!(errors.contains("spec.chain is immutable after creation"), "{errors}");
}

#[test]
fn invalid_operators_are_refused_with_a_clear_message() {
    let cases = [
        (
            "{ address: '0x12' }",
            "address must be a 0x-prefixed 20-byte hex address",
        ),
        (
            "{ blsKey: { secretRef: null } }",
            "the BLS private key can only come from a Secret",
        ),
        (
            "{ blsPublicKey: { g1: '0x00' } }",
            "blsPublicKey.g1 must be 0x followed by 128 hex digits",
        ),
        (
            "{ blsPublicKey: { g2: '0x00' } }",
            "blsPublicKey.g2 must be 0x followed by 256 hex digits",
        ),
        ("{ stake: 0 }", "stake must be at least 1"),
        ("{ capacity: 0 }", "capacity must be between 1 and 1000"),
    ];
    for (edit, message) in cases {
        let errors = check_operator(edit);
        assert!(errors.contains(message), "{edit}: expected {message:?}, got {errors:?}");
    }
}
