//! Assignment of AVS operators to a rollup: deterministic, capacity-bound, selector-bound and
//! stake-aware. Pure: the reconciler passes in the candidates it read and stores the result in
//! the rollup's status, which is the one record of who verifies what.

use std::collections::BTreeMap;

use kube::core::{Selector, SelectorExt};
use sha2::{Digest, Sha256};

use crate::api::flashrollup::{AssignedOperator, VerificationSpec};

/// An AVSOperator as assignment sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub address: String,
    pub stake: u64,
    pub capacity: u32,
    /// Rollups other than this one that it verifies now.
    pub used_elsewhere: u32,
    pub ready: bool,
    pub labels: BTreeMap<String, String>,
}

/// The outcome of assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Assignment {
    /// The set in signer-bitmap order; `replaced` lists (old, new) names swapped in this round.
    Assigned {
        operators: Vec<AssignedOperator>,
        replaced: Vec<(String, String)>,
        ready_stake: u64,
    },
    /// Too few eligible operators for a first assignment.
    Insufficient { eligible: u32, wanted: u32 },
}

/// Errors in the selector itself (an operator in `matchExpressions` Kubernetes does not know).
#[derive(Debug, thiserror::Error)]
#[error("verification.operatorSelector is invalid: {0}")]
pub struct SelectorError(String);

/// Assign operators for the rollup identified by `seed` (its UID, so ties break the same way
/// every time for this rollup yet differently across rollups, spreading load).
///
/// Assigned operators that are still Ready keep their place (a verifier never moves without a
/// reason). A NotReady one is replaced in the same slot when an eligible operator is free, and
/// otherwise stays, its stake no longer counting as ready (which the lifecycle reports as
/// QuorumLost).
///
/// `frozen`: the set is registered on the L1 settlement contract, where it cannot change. Then
/// nobody is replaced and nobody is added (a raised minOperators included): a NotReady member
/// keeps its slot and only its ready stake drops.
pub fn assign(
    seed: &str,
    spec: &VerificationSpec,
    current: &[AssignedOperator],
    candidates: &[Candidate],
    frozen: bool,
) -> Result<Assignment, SelectorError> {
    let selector = match &spec.operator_selector {
        Some(s) => Selector::try_from(s.clone()).map_err(|e| SelectorError(e.to_string()))?,
        None => Selector::default(),
    };
    let by_name: BTreeMap<&str, &Candidate> = candidates.iter().map(|c| (c.name.as_str(), c)).collect();
    let is_ready = |name: &str| by_name.get(name).is_some_and(|c| c.ready);

    let mut eligible: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.ready && c.used_elsewhere < c.capacity && selector.matches(&c.labels))
        .filter(|c| !current.iter().any(|a| a.name == c.name))
        .collect();
    // Stake first (quorum is reached with fewer, stronger signers), then a per-rollup hash.
    eligible.sort_by_key(|c| (std::cmp::Reverse(c.stake), tiebreak(seed, &c.name)));
    let mut free = eligible.into_iter();

    if frozen && !current.is_empty() {
        let ready_stake = current.iter().filter(|o| is_ready(&o.name)).map(|o| o.stake).sum();
        return Ok(Assignment::Assigned {
            operators: current.to_vec(),
            replaced: Vec::new(),
            ready_stake,
        });
    }

    let wanted = spec.min_operators as usize;
    if current.is_empty() {
        let eligible_count = free.len();
        if eligible_count < wanted {
            return Ok(Assignment::Insufficient {
                eligible: eligible_count as u32,
                wanted: wanted as u32,
            });
        }
    }

    let mut operators = Vec::with_capacity(wanted);
    let mut replaced = Vec::new();
    for slot in current {
        if is_ready(&slot.name) {
            operators.push(slot.clone());
        } else if let Some(new) = free.next() {
            replaced.push((slot.name.clone(), new.name.clone()));
            operators.push(assigned(new));
        } else {
            operators.push(slot.clone());
        }
    }
    // Fill up to the wanted size (first assignment, or minOperators raised).
    while operators.len() < wanted {
        match free.next() {
            Some(c) => operators.push(assigned(c)),
            None => break,
        }
    }
    let ready_stake = operators.iter().filter(|o| is_ready(&o.name)).map(|o| o.stake).sum();
    Ok(Assignment::Assigned {
        operators,
        replaced,
        ready_stake,
    })
}

fn assigned(c: &Candidate) -> AssignedOperator {
    AssignedOperator {
        name: c.name.clone(),
        address: c.address.clone(),
        stake: c.stake,
    }
}

fn tiebreak(seed: &str, name: &str) -> [u8; 8] {
    let digest = Sha256::new()
        .chain_update(seed)
        .chain_update([0])
        .chain_update(name)
        .finalize();
    let mut out = [0; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(name: &str, stake: u64, capacity: u32, used: u32, ready: bool, tier: &str) -> Candidate {
        Candidate {
            name: name.into(),
            address: format!("0x{:040x}", stake),
            stake,
            capacity,
            used_elsewhere: used,
            ready,
            labels: [("tier".to_owned(), tier.to_owned())].into(),
        }
    }

    fn spec(min: u32, tier: Option<&str>) -> VerificationSpec {
        let selector = tier
            .map(|t| format!("operatorSelector: {{ matchLabels: {{ tier: {t} }} }}"))
            .unwrap_or_default();
        serde_yaml::from_str(&format!("{{ minOperators: {min}, {selector} }}")).expect("spec parses")
    }

    fn names(a: &Assignment) -> Vec<String> {
        match a {
            Assignment::Assigned { operators, .. } => operators.iter().map(|o| o.name.clone()).collect(),
            Assignment::Insufficient { .. } => vec![],
        }
    }

    #[test]
    fn picks_highest_stake_matching_ready_operators_with_capacity() {
        let c = vec![
            cand("a", 10, 1, 0, true, "gold"),
            cand("b", 50, 1, 0, true, "gold"),
            cand("c", 90, 1, 1, true, "gold"),   // full
            cand("d", 80, 2, 0, false, "gold"),  // not ready
            cand("e", 99, 2, 0, true, "silver"), // wrong tier
            cand("f", 40, 3, 2, true, "gold"),
        ];
        let a = assign("uid-1", &spec(3, Some("gold")), &[], &c, false).expect("valid selector");
        assert_eq!(names(&a), ["b", "f", "a"]);
    }

    #[test]
    fn insufficient_operators_assign_nothing() {
        let c = vec![cand("a", 10, 1, 0, true, "gold"), cand("b", 10, 1, 1, true, "gold")];
        let a = assign("uid", &spec(2, Some("gold")), &[], &c, false).expect("valid selector");
        assert_eq!(a, Assignment::Insufficient { eligible: 1, wanted: 2 });
    }

    #[test]
    fn deterministic_for_a_rollup_and_spread_across_rollups() {
        let c: Vec<_> = (0..8)
            .map(|i| cand(&format!("op{i}"), 100, 10, 0, true, "gold"))
            .collect();
        let first = names(&assign("uid-x", &spec(2, None), &[], &c, false).expect("ok"));
        assert_eq!(
            first,
            names(&assign("uid-x", &spec(2, None), &[], &c, false).expect("ok"))
        );
        let distinct: std::collections::BTreeSet<_> = (0..20)
            .map(|i| names(&assign(&format!("uid-{i}"), &spec(2, None), &[], &c, false).expect("ok")))
            .collect();
        assert!(
            distinct.len() > 5,
            "equal-stake ties spread over operators: {distinct:?}"
        );
    }

    #[test]
    fn ready_assignees_stay_and_not_ready_ones_are_replaced_in_place() {
        let c = vec![
            cand("a", 100, 1, 0, true, "gold"),
            cand("b", 100, 1, 0, false, "gold"),
            cand("c", 30, 1, 0, true, "gold"),
        ];
        let current = vec![assigned(&c[0]), assigned(&c[1])];
        let a = assign("uid", &spec(2, None), &current, &c, false).expect("ok");
        let Assignment::Assigned {
            operators,
            replaced,
            ready_stake,
        } = a
        else {
            panic!("assigned")
        };
        assert_eq!(
            operators.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
            ["a", "c"]
        );
        assert_eq!(replaced, [("b".to_owned(), "c".to_owned())]);
        assert_eq!(ready_stake, 130);
    }

    #[test]
    fn without_a_replacement_the_stake_is_lost() {
        let c = vec![cand("a", 100, 1, 0, true, "gold"), cand("b", 100, 1, 0, false, "gold")];
        let current = vec![assigned(&c[0]), assigned(&c[1])];
        let a = assign("uid", &spec(2, None), &current, &c, false).expect("ok");
        let Assignment::Assigned {
            operators,
            replaced,
            ready_stake,
        } = a
        else {
            panic!("assigned")
        };
        assert_eq!(operators.len(), 2);
        assert!(replaced.is_empty());
        assert_eq!(ready_stake, 100);
    }

    #[test]
    fn a_frozen_set_keeps_its_members_and_loses_stake_instead() {
        let c = vec![
            cand("a", 100, 1, 0, true, "gold"),
            cand("b", 100, 1, 0, false, "gold"),
            cand("c", 30, 1, 0, true, "gold"),
            cand("d", 30, 1, 0, true, "gold"),
        ];
        let current = vec![assigned(&c[0]), assigned(&c[1])];
        // minOperators raised to 3 as well: a registered set grows no more than it is replaced.
        let a = assign("uid", &spec(3, None), &current, &c, true).expect("ok");
        assert_eq!(
            a,
            Assignment::Assigned {
                operators: current.clone(),
                replaced: vec![],
                ready_stake: 100,
            }
        );
        // Not frozen, the same round replaces b and fills the third slot.
        let a = assign("uid", &spec(3, None), &current, &c, false).expect("ok");
        assert_eq!(names(&a).len(), 3);
        assert!(!names(&a).contains(&"b".to_owned()));
        // Frozen with nothing assigned yet cannot happen, but would assign normally.
        let a = assign("uid", &spec(2, None), &[], &c, true).expect("ok");
        assert_eq!(names(&a).len(), 2);
    }

    #[test]
    fn a_deleted_operator_counts_as_not_ready() {
        let c = vec![cand("a", 100, 1, 0, true, "gold"), cand("z", 5, 1, 0, true, "gold")];
        let gone = AssignedOperator {
            name: "gone".into(),
            address: "0x0".into(),
            stake: 100,
        };
        let a = assign("uid", &spec(2, None), &[assigned(&c[0]), gone], &c, false).expect("ok");
        assert_eq!(names(&a), ["a", "z"]);
    }
}
