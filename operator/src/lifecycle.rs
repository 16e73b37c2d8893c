//! The FlashRollup lifecycle as a pure state machine: from what was observed (spec, status,
//! children, operators, the clock) to what to do (next phase, actions, conditions, when to wake
//! up). No I/O happens here, so every transition is unit-tested with plain values.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::api::conditions::{self, reason};
use crate::api::flashrollup::{
    FlashRollupSpec, FlashRollupStatus, Phase, SettlementPolicy, SettlementStep, TeardownPolicy,
};

/// What the reconciler observed, all of it read before the decision.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    pub spec: &'a FlashRollupSpec,
    pub status: &'a FlashRollupStatus,
    /// `metadata.generation`: a change since `status.observedGeneration` retries a Failed rollup.
    pub generation: Option<i64>,
    /// The object carries a deletionTimestamp.
    pub deleting: bool,
    /// The settle-now annotation is present.
    pub settle_now: bool,
    /// The spec failed the operator's own validation (message for the condition).
    pub invalid: Option<String>,
    pub operators: Operators,
    pub children: Children,
    pub now: Timestamp,
}

/// Operators assigned to the rollup, as the assignment step left them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operators {
    /// Not enough Ready operators with free capacity match the selector.
    Insufficient { eligible: u32, wanted: u32 },
    /// The assigned set, with how much of its stake is Ready now.
    Assigned {
        count: u32,
        ready_stake: u64,
        total_stake: u64,
    },
}

/// What exists of the rollup's workloads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Children {
    /// Sequencer replicas ready / wanted.
    pub sequencers_ready: i32,
    pub sequencers_wanted: i32,
    /// Verifier workloads ready / wanted.
    pub verifiers_ready: u32,
    pub verifiers_wanted: u32,
    /// Objects owned by the rollup still present: counted by a teardown pass, `None` before one.
    pub remaining: Option<usize>,
}

impl Children {
    fn all_ready(&self) -> bool {
        self.sequencers_wanted > 0
            && self.sequencers_ready >= self.sequencers_wanted
            && self.verifiers_ready >= self.verifiers_wanted
    }
}

/// Something the reconciler must do, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Assign operators and apply the desired child objects (a no-op when nothing changed).
    ApplyWorkloads,
    /// Register the assigned operator set on the L1 settlement contract (policy Settle), or
    /// follow the registration already under way.
    Register,
    /// Run this step of settlement (seal, certificate, submit, confirm).
    Settle(SettlementStep),
    /// Delete every workload (and the data volume per policy); count what is left.
    TearDown,
    /// Let the object go: remove the finalizer.
    RemoveFinalizer,
    /// `teardown.policy: Delete`: delete the FlashRollup itself.
    DeleteObject,
}

/// A condition as the state machine wants it; the reconciler keeps lastTransitionTime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

/// The decision for one reconciliation.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub phase: Phase,
    pub actions: Vec<Action>,
    /// Wake up at this instant at the latest (exactly at expiry while Running).
    pub wake_at: Option<Timestamp>,
    pub conditions: Vec<Cond>,
    pub running_since: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    /// Why the lifetime ended, while the reason still holds (for Events and the TTL-lag metric).
    pub end_reason: Option<&'static str>,
}

/// Why the rollup stops running.
fn end_trigger(input: &Input<'_>, expires_at: Option<Timestamp>) -> Option<&'static str> {
    if input.deleting {
        Some(reason::DELETION_REQUESTED)
    } else if input.settle_now {
        Some(reason::SETTLE_REQUESTED)
    } else if expires_at.is_some_and(|e| input.now >= e) {
        Some(reason::EXPIRED)
    } else {
        None
    }
}

/// The instant the lifetime ends, from the spec as it is now.
pub fn lifetime_end(spec: &FlashRollupSpec, running_since: Option<Timestamp>) -> Option<Timestamp> {
    if let Some(at) = &spec.expires_at {
        return Some(at.0);
    }
    let ttl: Duration = spec.ttl?.into();
    let since = running_since?;
    since.checked_add(SignedDuration::try_from(ttl).ok()?).ok()
}

fn ts(t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}

fn cond(type_: &'static str, status: bool, reason: &'static str, message: impl Into<String>) -> Cond {
    Cond {
        type_,
        status,
        reason,
        message: message.into(),
    }
}

/// Decide the next step of the lifecycle.
pub fn decide(input: &Input<'_>) -> Decision {
    let status = input.status;
    let phase = status.phase.unwrap_or_default();
    let mut d = Decision {
        phase,
        actions: Vec::new(),
        wake_at: None,
        conditions: Vec::new(),
        running_since: ts(&status.running_since),
        expires_at: ts(&status.expires_at),
        ended_at: ts(&status.ended_at),
        end_reason: None,
    };

    if let Some(message) = &input.invalid
        && !matches!(phase, Phase::Settled | Phase::TornDown)
    {
        return invalid(input, d, message);
    }

    match phase {
        Phase::Pending | Phase::Provisioning => before_running(input, d),
        Phase::Running => running(input, d),
        Phase::Settling => {
            refuse_extension(input, &mut d);
            settling(input, d)
        }
        Phase::Settled => {
            refuse_extension(input, &mut d);
            tear_down(input, d, Phase::TornDown)
        }
        Phase::TornDown => {
            refuse_extension(input, &mut d);
            torn_down(input, d)
        }
        Phase::Failed => failed(input, d),
    }
}

fn invalid(input: &Input<'_>, mut d: Decision, message: &str) -> Decision {
    d.conditions
        .push(cond(conditions::READY, false, reason::INVALID_SPEC, message));
    if input.deleting {
        // Nothing valid to settle: let the user delete it.
        return tear_down(input, d, Phase::TornDown);
    }
    d.phase = Phase::Failed;
    d
}

/// Pending and Provisioning: the chain has not produced a block a user relied on, so an end of
/// life (deletion, settle-now, expiry) tears down without settling.
fn before_running(input: &Input<'_>, mut d: Decision) -> Decision {
    let end = lifetime_end(input.spec, None);
    let trigger = end_trigger(input, end);
    if trigger.is_some() || d.ended_at.is_some() {
        d.end_reason = trigger;
        d.ended_at.get_or_insert(input.now);
        let why = trigger.unwrap_or(reason::TEARING_DOWN);
        d.conditions.push(cond(
            conditions::SETTLED,
            false,
            reason::NEVER_RAN,
            format!("the rollup never reached Running ({why}); there is no state to settle"),
        ));
        return tear_down(input, d, Phase::TornDown);
    }
    d.wake_at = end;
    // An absolute expiresAt is known before the rollup runs: show it.
    d.expires_at = end;

    match input.operators {
        Operators::Insufficient { eligible, wanted } => {
            d.phase = Phase::Pending;
            d.conditions.push(cond(
                conditions::QUORUM_MET,
                false,
                reason::WAITING_FOR_OPERATORS,
                format!(
                    "{eligible} of the {wanted} required AVSOperators are Ready, match verification.operatorSelector and have free capacity"
                ),
            ));
            d.conditions.push(cond(
                conditions::READY,
                false,
                reason::WAITING_FOR_OPERATORS,
                "waiting for AVS operators",
            ));
            d
        }
        Operators::Assigned { count, .. } => {
            let quorum_met = quorum_condition(input, &mut d);
            d.actions.push(Action::ApplyWorkloads);
            // Policy Settle: the set is registered on the L1 before the chain runs, as soon as it
            // holds the quorum (a NotReady member may still be replaced until then), and in
            // parallel with the workloads starting. Once the intent is recorded it is followed
            // whatever the quorum does: the transaction may be mined.
            let registering = needs_registration(input);
            let in_flight = input
                .status
                .settlement
                .as_ref()
                .is_some_and(|s| s.registered_tx.is_some());
            if registering && (quorum_met || in_flight) {
                d.actions.push(Action::Register);
            }
            if input.children.all_ready() && registering {
                d.phase = Phase::Provisioning;
                let message = if quorum_met || in_flight {
                    format!(
                        "the workloads are ready; registering the operator set ({count} operators) on the L1 settlement contract"
                    )
                } else {
                    "the workloads are ready; waiting for the quorum before registering the operator set on the L1"
                        .to_owned()
                };
                d.conditions
                    .push(cond(conditions::READY, false, reason::REGISTERING, message));
            } else if input.children.all_ready() {
                d.phase = Phase::Running;
                d.running_since = Some(input.now);
                d.expires_at = lifetime_end(input.spec, Some(input.now));
                d.wake_at = d.expires_at;
                d.conditions.push(cond(
                    conditions::READY,
                    true,
                    reason::WORKLOADS_READY,
                    "the sequencer and all verifiers are ready",
                ));
                lifetime_condition(&mut d);
            } else {
                d.phase = Phase::Provisioning;
                let c = &input.children;
                let registration = if registering {
                    "; registering the operator set on the L1"
                } else {
                    ""
                };
                d.conditions.push(cond(
                    conditions::READY,
                    false,
                    reason::WORKLOADS_PENDING,
                    format!(
                        "sequencers ready {}/{}, verifiers ready {}/{} ({count} operators assigned){registration}",
                        c.sequencers_ready, c.sequencers_wanted, c.verifiers_ready, c.verifiers_wanted
                    ),
                ));
            }
            d
        }
    }
}

/// Policy Settle and the operator set is not registered on the L1 yet.
pub fn needs_registration(input: &Input<'_>) -> bool {
    input.spec.settlement.policy == SettlementPolicy::Settle
        && !input.status.settlement.as_ref().is_some_and(|s| s.registered)
}

/// Whether the operator set may no longer change: policy Settle and its registration on the L1
/// is recorded (sent, or about to be). The contract's set is fixed, so a replacement would make
/// the chain's certificates unverifiable there.
pub fn set_is_frozen(spec: &FlashRollupSpec, status: &FlashRollupStatus) -> bool {
    spec.settlement.policy == SettlementPolicy::Settle
        && status
            .settlement
            .as_ref()
            .is_some_and(|s| s.registered || s.registered_tx.is_some())
}

/// Push QuorumMet; whether it is met.
fn quorum_condition(input: &Input<'_>, d: &mut Decision) -> bool {
    let mut quorum_met = false;
    if let Operators::Assigned {
        count,
        ready_stake,
        total_stake,
    } = input.operators
    {
        let quorum = u128::from(input.spec.verification.quorum_stake_percent);
        let met = total_stake > 0 && u128::from(ready_stake) * 100 >= quorum * u128::from(total_stake);
        let message = format!(
            "{ready_stake} of {total_stake} assigned stake is Ready across {count} operators; the quorum is {quorum}%"
        );
        let reason = if met {
            reason::OPERATORS_ASSIGNED
        } else {
            reason::QUORUM_LOST
        };
        d.conditions.push(cond(conditions::QUORUM_MET, met, reason, message));
        quorum_met = met;
    }
    quorum_met
}

fn lifetime_condition(d: &mut Decision) {
    if let Some(at) = d.expires_at {
        d.conditions.push(cond(
            conditions::TTL_ACCEPTED,
            true,
            reason::LIFETIME_SET,
            format!("the rollup settles at {at}"),
        ));
    }
}

fn running(input: &Input<'_>, mut d: Decision) -> Decision {
    let already_ended = d.ended_at.is_some();
    if !already_ended {
        // The spec is the source of the lifetime: a patched ttl or expiresAt moves it.
        d.expires_at = lifetime_end(input.spec, d.running_since).or(d.expires_at);
        lifetime_condition(&mut d);
    }
    quorum_condition(input, &mut d);

    // Once the end is recorded it stands: a trigger that goes away during a Discard teardown (the
    // annotation removed, the ttl extended) must not bring the workloads back with an empty chain.
    let trigger = end_trigger(input, d.expires_at);
    if trigger.is_some() || already_ended {
        if already_ended {
            refuse_extension(input, &mut d);
        }
        d.end_reason = trigger;
        d.ended_at.get_or_insert(input.now);
        return match input.spec.settlement.policy {
            SettlementPolicy::Settle => {
                d.phase = Phase::Settling;
                d.conditions.push(cond(
                    conditions::READY,
                    false,
                    trigger.unwrap_or(reason::SEALING),
                    "the rollup stopped taking transactions and is settling",
                ));
                d.conditions.push(cond(
                    conditions::SETTLING,
                    true,
                    reason::SEALING,
                    "sealing the sequencer",
                ));
                d.actions.push(Action::Settle(SettlementStep::Sealing));
                d
            }
            SettlementPolicy::Discard => {
                d.conditions.push(cond(
                    conditions::SETTLED,
                    false,
                    reason::DISCARDED,
                    "settlement.policy is Discard: the final state is not settled",
                ));
                tear_down(input, d, Phase::TornDown)
            }
        };
    }

    d.actions.push(Action::ApplyWorkloads);
    d.wake_at = d.expires_at;
    d
}

/// A lifetime change after the end is refused: the chain is sealed, nothing can reopen it.
fn refuse_extension(input: &Input<'_>, d: &mut Decision) {
    let (Some(ended), Some(asked)) = (d.ended_at, lifetime_end(input.spec, d.running_since)) else {
        return;
    };
    let recorded = d.expires_at.unwrap_or(ended);
    if asked > recorded && asked > ended {
        d.conditions.push(cond(
            conditions::TTL_ACCEPTED,
            false,
            reason::EXTENSION_REFUSED,
            format!(
                "the lifetime ended at {ended} and the rollup is {}; a ttl or expiresAt change cannot reopen it",
                d.phase
            ),
        ));
    }
}

fn settling(input: &Input<'_>, mut d: Decision) -> Decision {
    let step = input.status.settlement.as_ref().map(|s| s.step).unwrap_or_default();
    if step == SettlementStep::Done {
        d.conditions.push(cond(
            conditions::SETTLING,
            false,
            reason::SETTLED,
            "settlement is confirmed on the L1",
        ));
        d.conditions.push(cond(
            conditions::SETTLED,
            true,
            reason::SETTLED,
            "the final state root is confirmed on the L1",
        ));
        // Teardown starts in the same reconciliation: nothing waits between the two. The phase
        // shows Settled until the workloads are gone.
        d.phase = Phase::Settled;
        return tear_down(input, d, Phase::TornDown);
    }
    let (reason, message) = match step {
        SettlementStep::Sealing => (reason::SEALING, "sealing the sequencer"),
        SettlementStep::AwaitingCertificate => (
            reason::AWAITING_CERTIFICATE,
            "waiting for the quorum certificate of the final block",
        ),
        SettlementStep::Submitting => (reason::SUBMITTING, "submitting the settlement transaction"),
        SettlementStep::Confirming | SettlementStep::Done => (reason::CONFIRMING, "waiting for L1 confirmations"),
    };
    d.conditions.push(cond(conditions::SETTLING, true, reason, message));
    d.actions.push(Action::Settle(step));
    d
}

/// Delete the workloads; when nothing is left, move to `done` and let go of the object.
fn tear_down(input: &Input<'_>, mut d: Decision, done: Phase) -> Decision {
    d.actions.push(Action::TearDown);
    if input.children.remaining == Some(0) {
        d.phase = done;
        d.conditions.push(cond(
            conditions::READY,
            false,
            reason::TORN_DOWN,
            "every workload of the rollup is gone",
        ));
        finish(input, &mut d);
    } else {
        let message = match input.children.remaining {
            Some(left) => format!("deleting workloads, {left} objects left"),
            None => "deleting the workloads".to_owned(),
        };
        d.conditions
            .push(cond(conditions::READY, false, reason::TEARING_DOWN, message));
    }
    d
}

/// Nothing is left to guard: let go of the finalizer, and of the object itself when the
/// teardown policy says Delete (Retain keeps it, TornDown, for GitOps tools to see).
fn finish(input: &Input<'_>, d: &mut Decision) {
    d.actions.push(Action::RemoveFinalizer);
    if !input.deleting && input.spec.teardown.policy == TeardownPolicy::Delete {
        d.actions.push(Action::DeleteObject);
    }
}

fn torn_down(input: &Input<'_>, mut d: Decision) -> Decision {
    finish(input, &mut d);
    d
}

/// Failed holds until a person acts: a spec change retries (settlement resumes where it was),
/// and a deletion lets the object go.
fn failed(input: &Input<'_>, d: Decision) -> Decision {
    if input.deleting {
        return tear_down(input, d, Phase::TornDown);
    }
    if input.generation == input.status.observed_generation {
        return d;
    }
    // Settlement had begun (the lifetime ended with a settlement record): resume it where it
    // was. A registration alone (or a failure before it) starts over from Pending.
    let resume = if input.status.settlement.is_some() && input.status.ended_at.is_some() {
        Phase::Settling
    } else {
        Phase::Pending
    };
    let status = FlashRollupStatus {
        phase: Some(resume),
        ..input.status.clone()
    };
    decide(&Input {
        status: &status,
        ..input.clone()
    })
}

#[cfg(test)]
mod tests;
