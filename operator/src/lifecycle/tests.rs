//! Table-driven tests of every lifecycle transition, including the clock edges.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::api::flashrollup::SettlementStatus;

const T0: &str = "2026-11-21T10:00:00Z";

fn t(offset_secs: i64) -> Timestamp {
    let base: Timestamp = T0.parse().expect("valid timestamp");
    base + SignedDuration::from_secs(offset_secs)
}

fn spec(extra: &str) -> FlashRollupSpec {
    let yaml = format!("chain: {{ chainId: 901337 }}\nverification: {{ minOperators: 2 }}\n{extra}");
    serde_yaml::from_str(&yaml).expect("test spec parses")
}

fn discard() -> FlashRollupSpec {
    spec("ttl: 60s\nsettlement: { policy: Discard }")
}

fn settle() -> FlashRollupSpec {
    spec(
        "ttl: 60s\nsettlement: { policy: Settle, l1: { rpcUrl: 'http://127.0.0.1:8545', chainId: 31337, contract: '0x5FbDB2315678afecb367f032d93F642f64180aa3', signerSecretRef: { name: l1 } } }",
    )
}

fn status(phase: Phase) -> FlashRollupStatus {
    FlashRollupStatus {
        phase: Some(phase),
        observed_generation: Some(1),
        ..Default::default()
    }
}

/// A rollup that went Running at t(0) with a 60 s ttl.
fn running_status() -> FlashRollupStatus {
    FlashRollupStatus {
        running_since: Some(Time(t(0))),
        expires_at: Some(Time(t(60))),
        ..status(Phase::Running)
    }
}

fn settling_status(step: SettlementStep) -> FlashRollupStatus {
    FlashRollupStatus {
        ended_at: Some(Time(t(60))),
        settlement: Some(SettlementStatus {
            step,
            ..Default::default()
        }),
        ..FlashRollupStatus {
            phase: Some(Phase::Settling),
            ..running_status()
        }
    }
}

/// A Settle rollup before Running, with its registration as far as `registered` / `tx` say.
fn registration(phase: Phase, registered: bool, tx: Option<&str>) -> FlashRollupStatus {
    FlashRollupStatus {
        settlement: Some(SettlementStatus {
            rollup_id: Some(format!("0x{}", "33".repeat(32))),
            registered,
            registered_tx: tx.map(str::to_owned),
            ..Default::default()
        }),
        ..status(phase)
    }
}

const TX: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";

const BELOW_QUORUM: Operators = Operators::Assigned {
    count: 3,
    ready_stake: 100,
    total_stake: 250,
};

const ASSIGNED: Operators = Operators::Assigned {
    count: 2,
    ready_stake: 200,
    total_stake: 200,
};
const READY: Children = Children {
    sequencers_ready: 1,
    sequencers_wanted: 1,
    verifiers_ready: 2,
    verifiers_wanted: 2,
    remaining: Some(0),
};
const NOT_READY: Children = Children {
    sequencers_ready: 0,
    sequencers_wanted: 1,
    verifiers_ready: 1,
    verifiers_wanted: 2,
    remaining: Some(0),
};
const LEFTOVERS: Children = Children {
    sequencers_ready: 1,
    sequencers_wanted: 1,
    verifiers_ready: 2,
    verifiers_wanted: 2,
    remaining: Some(5),
};

struct Case {
    name: &'static str,
    spec: FlashRollupSpec,
    status: FlashRollupStatus,
    deleting: bool,
    settle_now: bool,
    invalid: Option<&'static str>,
    generation: i64,
    operators: Operators,
    children: Children,
    now: Timestamp,
    phase: Phase,
    actions: Vec<Action>,
    wake_at: Option<Timestamp>,
    /// (type, status, reason) that must be among the conditions.
    conds: Vec<(&'static str, bool, &'static str)>,
}

fn case(name: &'static str, spec: FlashRollupSpec, status: FlashRollupStatus) -> Case {
    Case {
        name,
        spec,
        status,
        deleting: false,
        settle_now: false,
        invalid: None,
        generation: 1,
        operators: ASSIGNED,
        children: READY,
        now: t(10),
        phase: Phase::Pending,
        actions: vec![],
        wake_at: None,
        conds: vec![],
    }
}

fn run(c: &Case) -> Decision {
    let invalid = c.invalid.map(str::to_owned);
    decide(&Input {
        spec: &c.spec,
        status: &c.status,
        generation: Some(c.generation),
        deleting: c.deleting,
        settle_now: c.settle_now,
        invalid,
        operators: c.operators.clone(),
        children: c.children.clone(),
        now: c.now,
    })
}

fn cases() -> Vec<Case> {
    use Action::*;
    use SettlementStep as S;
    vec![
        Case {
            operators: Operators::Insufficient { eligible: 1, wanted: 2 },
            phase: Phase::Pending,
            conds: vec![("QuorumMet", false, "WaitingForOperators")],
            ..case("pending waits for operators", discard(), FlashRollupStatus::default())
        },
        Case {
            children: NOT_READY,
            phase: Phase::Provisioning,
            actions: vec![ApplyWorkloads],
            conds: vec![
                ("QuorumMet", true, "OperatorsAssigned"),
                ("Ready", false, "WorkloadsPending"),
            ],
            ..case(
                "pending with operators provisions",
                discard(),
                FlashRollupStatus::default(),
            )
        },
        Case {
            now: t(0),
            phase: Phase::Running,
            actions: vec![ApplyWorkloads],
            wake_at: Some(t(60)),
            conds: vec![("Ready", true, "WorkloadsReady"), ("TTLAccepted", true, "LifetimeSet")],
            ..case(
                "provisioning becomes running and wakes exactly at expiry",
                discard(),
                status(Phase::Provisioning),
            )
        },
        Case {
            operators: Operators::Insufficient { eligible: 0, wanted: 2 },
            phase: Phase::Pending,
            wake_at: Some(t(3600)),
            ..case(
                "pending with an absolute expiresAt wakes at it",
                spec("expiresAt: '2026-11-21T11:00:00Z'\nsettlement: { policy: Discard }"),
                FlashRollupStatus::default(),
            )
        },
        Case {
            now: t(3600),
            children: LEFTOVERS,
            phase: Phase::Provisioning,
            actions: vec![TearDown],
            conds: vec![("Settled", false, "NeverRan"), ("Ready", false, "TearingDown")],
            ..case(
                "expiry while provisioning tears down without settling",
                spec("expiresAt: '2026-11-21T11:00:00Z'\nsettlement: { policy: Discard }"),
                status(Phase::Provisioning),
            )
        },
        Case {
            now: t(3601),
            phase: Phase::TornDown,
            actions: vec![TearDown, RemoveFinalizer],
            conds: vec![("Settled", false, "NeverRan"), ("Ready", false, "TornDown")],
            ..case(
                "expiry while provisioning, nothing left: torn down, object retained",
                spec(
                    "expiresAt: '2026-11-21T11:00:00Z'\nsettlement: { policy: Settle, l1: { rpcUrl: 'http://127.0.0.1:8545', chainId: 1, contract: '0x5FbDB2315678afecb367f032d93F642f64180aa3', signerSecretRef: { name: l1 } } }",
                ),
                status(Phase::Provisioning),
            )
        },
        Case {
            deleting: true,
            phase: Phase::TornDown,
            actions: vec![TearDown, RemoveFinalizer],
            ..case(
                "deleting while pending lets go at once",
                settle(),
                FlashRollupStatus::default(),
            )
        },
        Case {
            now: t(59),
            phase: Phase::Running,
            actions: vec![ApplyWorkloads],
            wake_at: Some(t(60)),
            ..case("running before expiry sleeps until expiry", settle(), running_status())
        },
        Case {
            now: t(59),
            phase: Phase::Running,
            actions: vec![ApplyWorkloads],
            wake_at: Some(t(300)),
            conds: vec![("TTLAccepted", true, "LifetimeSet")],
            ..case(
                "ttl patched while running moves expiresAt later",
                spec("ttl: 5m\nsettlement: { policy: Discard }"),
                running_status(),
            )
        },
        Case {
            now: t(30),
            phase: Phase::Settling,
            actions: vec![Settle(S::Sealing)],
            conds: vec![("Settling", true, "Sealing")],
            ..case(
                "ttl shortened below the elapsed time settles at once",
                spec(
                    "ttl: 20s\nsettlement: { policy: Settle, l1: { rpcUrl: 'http://127.0.0.1:8545', chainId: 1, contract: '0x5FbDB2315678afecb367f032d93F642f64180aa3', signerSecretRef: { name: l1 } } }",
                ),
                running_status(),
            )
        },
        Case {
            now: t(60),
            phase: Phase::Settling,
            actions: vec![Settle(S::Sealing)],
            conds: vec![("Ready", false, "Expired"), ("Settling", true, "Sealing")],
            ..case(
                "expiry at the exact instant starts settling",
                settle(),
                running_status(),
            )
        },
        Case {
            settle_now: true,
            phase: Phase::Settling,
            actions: vec![Settle(S::Sealing)],
            conds: vec![("Ready", false, "SettleRequested")],
            ..case(
                "settle-now annotation starts settling early",
                settle(),
                running_status(),
            )
        },
        Case {
            deleting: true,
            phase: Phase::Settling,
            actions: vec![Settle(S::Sealing)],
            conds: vec![("Ready", false, "DeletionRequested")],
            ..case(
                "deletion while running settles first (policy Settle)",
                settle(),
                running_status(),
            )
        },
        Case {
            deleting: true,
            children: LEFTOVERS,
            phase: Phase::Running,
            actions: vec![TearDown],
            conds: vec![("Settled", false, "Discarded"), ("Ready", false, "TearingDown")],
            ..case(
                "deletion while running goes straight to teardown (policy Discard)",
                discard(),
                running_status(),
            )
        },
        Case {
            deleting: true,
            phase: Phase::TornDown,
            actions: vec![TearDown, RemoveFinalizer],
            ..case(
                "discarded and deleted, nothing left: finalizer removed",
                discard(),
                running_status(),
            )
        },
        Case {
            now: t(61),
            phase: Phase::TornDown,
            actions: vec![TearDown, RemoveFinalizer],
            conds: vec![("Settled", false, "Discarded"), ("Ready", false, "TornDown")],
            ..case(
                "expiry with Discard and Retain keeps the object",
                discard(),
                running_status(),
            )
        },
        Case {
            now: t(61),
            phase: Phase::TornDown,
            actions: vec![TearDown, RemoveFinalizer, DeleteObject],
            ..case(
                "expiry with Discard and teardown Delete removes the object",
                spec("ttl: 60s\nsettlement: { policy: Discard }\nteardown: { policy: Delete }"),
                running_status(),
            )
        },
        Case {
            operators: Operators::Assigned {
                count: 3,
                ready_stake: 100,
                total_stake: 250,
            },
            phase: Phase::Running,
            actions: vec![ApplyWorkloads],
            wake_at: Some(t(60)),
            conds: vec![("QuorumMet", false, "QuorumLost")],
            ..case(
                "an operator lost below quorum while running",
                settle(),
                running_status(),
            )
        },
        Case {
            now: t(70),
            phase: Phase::Settling,
            actions: vec![Settle(S::Submitting)],
            conds: vec![("Settling", true, "Submitting")],
            ..case(
                "settling resumes at its recorded step",
                settle(),
                settling_status(S::Submitting),
            )
        },
        Case {
            now: t(70),
            deleting: true,
            phase: Phase::Settling,
            actions: vec![Settle(S::Confirming)],
            ..case(
                "deletion during settling does not skip settlement",
                settle(),
                settling_status(S::Confirming),
            )
        },
        Case {
            now: t(70),
            phase: Phase::Settling,
            actions: vec![Settle(S::AwaitingCertificate)],
            conds: vec![("TTLAccepted", false, "ExtensionRefused")],
            ..case(
                "extension after expiry is refused with a condition",
                spec(
                    "ttl: 10m\nsettlement: { policy: Settle, l1: { rpcUrl: 'http://127.0.0.1:8545', chainId: 1, contract: '0x5FbDB2315678afecb367f032d93F642f64180aa3', signerSecretRef: { name: l1 } } }",
                ),
                settling_status(S::AwaitingCertificate),
            )
        },
        Case {
            now: t(70),
            children: LEFTOVERS,
            phase: Phase::Settled,
            actions: vec![TearDown],
            conds: vec![("Settled", true, "Settled"), ("Ready", false, "TearingDown")],
            ..case("confirmed settlement tears down", settle(), settling_status(S::Done))
        },
        Case {
            now: t(70),
            phase: Phase::TornDown,
            actions: vec![TearDown, RemoveFinalizer],
            conds: vec![("Settled", true, "Settled")],
            ..case(
                "confirmed settlement with nothing left is torn down",
                settle(),
                settling_status(S::Done),
            )
        },
        Case {
            now: t(80),
            phase: Phase::TornDown,
            actions: vec![TearDown, RemoveFinalizer],
            ..case(
                "settled rollup finishes teardown",
                settle(),
                FlashRollupStatus {
                    phase: Some(Phase::Settled),
                    ..settling_status(S::Done)
                },
            )
        },
        Case {
            now: t(90),
            phase: Phase::TornDown,
            actions: vec![RemoveFinalizer],
            ..case(
                "torn down and retained stays, without finalizer",
                settle(),
                FlashRollupStatus {
                    phase: Some(Phase::TornDown),
                    ..settling_status(S::Done)
                },
            )
        },
        Case {
            now: t(90),
            deleting: true,
            phase: Phase::TornDown,
            actions: vec![RemoveFinalizer],
            ..case(
                "torn down object deleted by the user lets go",
                settle(),
                FlashRollupStatus {
                    phase: Some(Phase::TornDown),
                    ..settling_status(S::Done)
                },
            )
        },
        Case {
            invalid: Some("blockTime must be between 50ms and 1m"),
            phase: Phase::Failed,
            conds: vec![("Ready", false, "InvalidSpec")],
            ..case(
                "an invalid spec fails and waits for a change",
                discard(),
                FlashRollupStatus::default(),
            )
        },
        Case {
            phase: Phase::Failed,
            ..case(
                "failed with the same generation holds",
                discard(),
                status(Phase::Failed),
            )
        },
        Case {
            generation: 2,
            children: NOT_READY,
            phase: Phase::Provisioning,
            actions: vec![ApplyWorkloads],
            ..case("failed with a changed spec retries", discard(), status(Phase::Failed))
        },
        Case {
            now: t(70),
            generation: 2,
            phase: Phase::Settling,
            actions: vec![Settle(S::Submitting)],
            ..case(
                "failed settlement with a changed spec resumes settling",
                settle(),
                FlashRollupStatus {
                    phase: Some(Phase::Failed),
                    ..settling_status(S::Submitting)
                },
            )
        },
        Case {
            deleting: true,
            phase: Phase::TornDown,
            actions: vec![TearDown, RemoveFinalizer],
            ..case("failed and deleted lets go", settle(), status(Phase::Failed))
        },
        // Registration of the operator set on the L1 (policy Settle).
        Case {
            children: NOT_READY,
            phase: Phase::Provisioning,
            actions: vec![ApplyWorkloads, Register],
            conds: vec![
                ("QuorumMet", true, "OperatorsAssigned"),
                ("Ready", false, "WorkloadsPending"),
            ],
            ..case(
                "settle: registration starts with the workloads",
                settle(),
                FlashRollupStatus::default(),
            )
        },
        Case {
            now: t(0),
            phase: Phase::Provisioning,
            actions: vec![ApplyWorkloads, Register],
            conds: vec![("Ready", false, "Registering")],
            ..case(
                "settle: ready workloads wait in Provisioning until registered",
                settle(),
                status(Phase::Provisioning),
            )
        },
        Case {
            now: t(0),
            phase: Phase::Provisioning,
            actions: vec![ApplyWorkloads, Register],
            conds: vec![("Ready", false, "Registering")],
            ..case(
                "settle: a registration in flight is followed",
                settle(),
                registration(Phase::Provisioning, false, Some(TX)),
            )
        },
        Case {
            now: t(0),
            phase: Phase::Running,
            actions: vec![ApplyWorkloads],
            wake_at: Some(t(60)),
            conds: vec![("Ready", true, "WorkloadsReady"), ("TTLAccepted", true, "LifetimeSet")],
            ..case(
                "settle: registered and ready runs",
                settle(),
                registration(Phase::Provisioning, true, Some(TX)),
            )
        },
        Case {
            now: t(0),
            children: NOT_READY,
            phase: Phase::Provisioning,
            actions: vec![ApplyWorkloads],
            conds: vec![("Ready", false, "WorkloadsPending")],
            ..case(
                "settle: registered but workloads not ready keeps provisioning",
                settle(),
                registration(Phase::Provisioning, true, Some(TX)),
            )
        },
        Case {
            now: t(0),
            operators: BELOW_QUORUM,
            phase: Phase::Provisioning,
            actions: vec![ApplyWorkloads],
            conds: vec![("QuorumMet", false, "QuorumLost"), ("Ready", false, "Registering")],
            ..case(
                "settle: below quorum the set is not registered yet (it may still be replaced)",
                settle(),
                status(Phase::Provisioning),
            )
        },
        Case {
            now: t(0),
            operators: BELOW_QUORUM,
            phase: Phase::Provisioning,
            actions: vec![ApplyWorkloads, Register],
            conds: vec![("QuorumMet", false, "QuorumLost"), ("Ready", false, "Registering")],
            ..case(
                "settle: a registration already sent is followed even below quorum",
                settle(),
                registration(Phase::Provisioning, false, Some(TX)),
            )
        },
        Case {
            now: t(0),
            phase: Phase::Running,
            actions: vec![ApplyWorkloads],
            wake_at: Some(t(60)),
            ..case(
                "discard: no registration, ready runs",
                discard(),
                status(Phase::Provisioning),
            )
        },
        Case {
            now: t(3600),
            children: LEFTOVERS,
            phase: Phase::Provisioning,
            actions: vec![TearDown],
            conds: vec![("Settled", false, "NeverRan")],
            ..case(
                "settle: expiry while registering tears down without settling",
                spec(
                    "expiresAt: '2026-11-21T11:00:00Z'\nsettlement: { policy: Settle, l1: { rpcUrl: 'http://127.0.0.1:8545', chainId: 1, contract: '0x5FbDB2315678afecb367f032d93F642f64180aa3', signerSecretRef: { name: l1 } } }",
                ),
                registration(Phase::Provisioning, false, Some(TX)),
            )
        },
        Case {
            phase: Phase::Failed,
            ..case(
                "settle: a failed registration holds",
                settle(),
                registration(Phase::Failed, false, Some(TX)),
            )
        },
        Case {
            generation: 2,
            children: NOT_READY,
            phase: Phase::Provisioning,
            actions: vec![ApplyWorkloads, Register],
            ..case(
                "settle: a failed registration with a changed spec starts over, not in Settling",
                settle(),
                registration(Phase::Failed, false, Some(TX)),
            )
        },
        Case {
            now: t(30),
            operators: BELOW_QUORUM,
            phase: Phase::Running,
            actions: vec![ApplyWorkloads],
            wake_at: Some(t(60)),
            conds: vec![("QuorumMet", false, "QuorumLost")],
            ..case(
                "settle: a registered running rollup that loses an operator reports QuorumLost",
                settle(),
                FlashRollupStatus {
                    settlement: registration(Phase::Running, true, Some(TX)).settlement,
                    ..running_status()
                },
            )
        },
        Case {
            now: t(60),
            phase: Phase::Settling,
            actions: vec![Settle(S::Sealing)],
            conds: vec![("Ready", false, "Expired"), ("Settling", true, "Sealing")],
            ..case(
                "settle: a registered rollup settles at expiry from its registration record",
                settle(),
                FlashRollupStatus {
                    settlement: registration(Phase::Running, true, Some(TX)).settlement,
                    ..running_status()
                },
            )
        },
    ]
}

#[test]
fn the_set_freezes_once_its_registration_is_recorded() {
    let s = settle();
    assert!(!set_is_frozen(&s, &status(Phase::Provisioning)));
    assert!(!set_is_frozen(&s, &registration(Phase::Provisioning, false, None)));
    assert!(set_is_frozen(&s, &registration(Phase::Provisioning, false, Some(TX))));
    assert!(set_is_frozen(&s, &registration(Phase::Running, true, Some(TX))));
    // Discard never registers, so never freezes.
    assert!(!set_is_frozen(
        &discard(),
        &registration(Phase::Running, true, Some(TX))
    ));
}

#[test]
fn every_transition() {
    for c in cases() {
        let d = run(&c);
        assert_eq!(d.phase, c.phase, "{}: phase", c.name);
        assert_eq!(d.actions, c.actions, "{}: actions", c.name);
        assert_eq!(d.wake_at, c.wake_at, "{}: wake_at", c.name);
        for (type_, status, reason) in &c.conds {
            assert!(
                d.conditions
                    .iter()
                    .any(|k| k.type_ == *type_ && k.status == *status && k.reason == *reason),
                "{}: missing condition {type_}={status} ({reason}) in {:?}",
                c.name,
                d.conditions
            );
        }
    }
}

#[test]
fn an_end_once_recorded_stands() {
    // A Discard teardown is under way (endedAt recorded) when the ttl is extended and the
    // settle-now annotation is gone: the teardown goes on, the extension is refused.
    let ending = FlashRollupStatus {
        ended_at: Some(Time(t(30))),
        ..running_status()
    };
    let c = Case {
        now: t(31),
        children: LEFTOVERS,
        ..case("", spec("ttl: 10m\nsettlement: { policy: Discard }"), ending.clone())
    };
    let d = run(&c);
    assert_eq!(d.actions, vec![Action::TearDown]);
    assert_eq!(d.ended_at, Some(t(30)));
    assert_eq!(d.end_reason, None, "no trigger holds any more");
    assert!(d.conditions.iter().any(|k| k.reason == reason::EXTENSION_REFUSED));
    // The same before Running.
    let pending = FlashRollupStatus {
        ended_at: Some(Time(t(30))),
        ..status(Phase::Provisioning)
    };
    let c = Case {
        now: t(31),
        children: LEFTOVERS,
        ..case("", discard(), pending)
    };
    assert_eq!(run(&c).actions, vec![Action::TearDown]);
}

#[test]
fn the_end_is_decided_before_any_teardown_pass() {
    // The reconciler decides once before counting what is left (to record the end first): the
    // rollup is neither done nor given a made-up count.
    let c = Case {
        now: t(60),
        children: Children {
            remaining: None,
            ..READY
        },
        ..case("", discard(), running_status())
    };
    let d = run(&c);
    assert_eq!(d.actions, vec![Action::TearDown]);
    assert_eq!(d.phase, Phase::Running);
    assert_eq!(d.ended_at, Some(t(60)));
    assert_eq!(d.end_reason, Some(reason::EXPIRED));
    let ready = d
        .conditions
        .iter()
        .find(|k| k.type_ == conditions::READY)
        .expect("Ready");
    assert_eq!(
        (ready.reason, ready.message.as_str()),
        (reason::TEARING_DOWN, "deleting the workloads")
    );
}

#[test]
fn running_records_start_and_expiry() {
    let c = Case {
        now: t(5),
        ..case("", discard(), status(Phase::Provisioning))
    };
    let d = run(&c);
    assert_eq!(d.running_since, Some(t(5)));
    assert_eq!(d.expires_at, Some(t(65)));
}

#[test]
fn ending_records_when_and_why() {
    let c = Case {
        now: t(60),
        ..case("", settle(), running_status())
    };
    let d = run(&c);
    assert_eq!(d.ended_at, Some(t(60)));
    assert_eq!(d.end_reason, Some(reason::EXPIRED));
    // Later reconciliations keep the original end time.
    let again = Case {
        now: t(65),
        ..case("", settle(), settling_status(SettlementStep::Sealing))
    };
    assert_eq!(run(&again).ended_at, Some(t(60)));
}

#[test]
fn lifetime_end_prefers_absolute_expiry() {
    let s = spec("expiresAt: '2026-11-21T11:00:00Z'\nsettlement: { policy: Discard }");
    assert_eq!(lifetime_end(&s, Some(t(0))), Some(t(3600)));
    assert_eq!(lifetime_end(&discard(), None), None);
    assert_eq!(lifetime_end(&discard(), Some(t(1))), Some(t(61)));
}
