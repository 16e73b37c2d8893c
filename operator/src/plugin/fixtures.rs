//! Test fixtures shared by the plugin's unit tests: FlashRollups as the API returns them, built
//! from YAML the way users write them, with a fixed clock.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::FlashRollup;
use crate::api::flashrollup::{AssignedOperator, FlashRollupStatus, Phase};

pub fn t(s: &str) -> Timestamp {
    s.parse().expect("a timestamp")
}

/// A rollup `devnet` in namespace `games` without status, as the API returns it; `spec_life` is
/// the ttl or expiresAt line, `policy` Settle or Discard.
pub fn rollup(spec_life: &str, policy: &str) -> FlashRollup {
    let settlement = if policy == "Settle" {
        "policy: Settle\n    l1: {rpcUrl: \"http://127.0.0.1:8545\", chainId: 31337, contract: \"0x5FbDB2315678afecb367f032d93F642f64180aa3\", signerSecretRef: {name: l1-signer}}\n    confirmations: 2".to_owned()
    } else {
        format!("policy: {policy}")
    };
    let yaml = format!(
        "apiVersion: rollups.flashlayer.dev/v1alpha1
kind: FlashRollup
metadata: {{name: devnet, namespace: games, generation: 1, resourceVersion: \"41\"}}
spec:
  {spec_life}
  chain: {{chainId: 901337, blockTime: 500ms}}
  verification: {{minOperators: 2, quorumStakePercent: 67}}
  settlement:
    {settlement}
"
    );
    serde_yaml::from_str(&yaml).expect("a FlashRollup")
}

pub fn condition(type_: &str, status: &str, reason: &str, at: &str, message: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: Some(1),
        last_transition_time: Time(t(at)),
    }
}

pub fn operators() -> Vec<AssignedOperator> {
    vec![
        AssignedOperator {
            name: "avs-gold-1".into(),
            address: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
            stake: 100,
        },
        AssignedOperator {
            name: "avs-gold-3".into(),
            address: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC".into(),
            stake: 50,
        },
    ]
}

/// [`rollup`] Running since 10:00:00 with expiresAt 10:10:00, two operators, three conditions.
pub fn running(spec_life: &str, policy: &str) -> FlashRollup {
    let mut fr = rollup(spec_life, policy);
    fr.status = Some(FlashRollupStatus {
        phase: Some(Phase::Running),
        observed_generation: Some(1),
        height: Some(1234),
        finalized_height: Some(1230),
        running_since: Some(Time(t("2026-11-21T10:00:00Z"))),
        expires_at: Some(Time(t("2026-11-21T10:10:00Z"))),
        assigned_operators: operators(),
        rpc_endpoint: Some("http://devnet-rpc.games.svc:8545".into()),
        conditions: vec![
            condition(
                "QuorumMet",
                "True",
                "OperatorsAssigned",
                "2026-11-21T09:59:50Z",
                "150 of 150 assigned stake is Ready across 2 operators; the quorum is 67%",
            ),
            condition(
                "Ready",
                "True",
                "WorkloadsReady",
                "2026-11-21T10:00:00Z",
                "the sequencer and all verifiers are ready",
            ),
            condition(
                "TTLAccepted",
                "True",
                "LifetimeSet",
                "2026-11-21T10:00:00Z",
                "the rollup settles at 2026-11-21T10:10:00Z",
            ),
        ],
        ..FlashRollupStatus::default()
    });
    fr
}
