//! `kubectl flashrollup settle`: the settle-now annotation, and what it will do to the rollup
//! as the lifecycle decides (settle on the L1, tear down without settling, or nothing yet).

use jiff::Timestamp;
use kube::ResourceExt;
use serde_json::{Value, json};

use super::status::ended_at;
use crate::api::flashrollup::SettlementPolicy;
use crate::api::{FlashRollup, Phase, SETTLE_NOW_ANNOTATION};

/// What `settle` does to a rollup.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Set the annotation with this merge patch; `note` says what follows.
    Annotate { patch: Value, note: String },
    /// The annotation is already there and the rollup is still ending; `note` as above.
    AlreadyRequested { note: String },
    /// The life has already ended: nothing to ask.
    AlreadyEnded { phase: Phase, ended_at: Option<Timestamp> },
}

/// The merge patch that sets the settle-now annotation (the operator looks for its presence).
pub fn patch() -> Value {
    json!({ "metadata": { "annotations": { SETTLE_NOW_ANNOTATION: "true" } } })
}

/// Plan `settle` for `fr`.
pub fn plan(fr: &FlashRollup) -> Plan {
    let status = fr.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or_default();
    let ended = ended_at(fr);
    if ended.is_some() || matches!(phase, Phase::Settling | Phase::Settled | Phase::TornDown) {
        return Plan::AlreadyEnded { phase, ended_at: ended };
    }
    let note = note(fr, phase);
    if fr.annotations().contains_key(SETTLE_NOW_ANNOTATION) {
        Plan::AlreadyRequested { note }
    } else {
        Plan::Annotate { patch: patch(), note }
    }
}

/// What the lifecycle does on settle-now in `phase`.
fn note(fr: &FlashRollup, phase: Phase) -> String {
    match (phase, fr.spec.settlement.policy) {
        (Phase::Failed, _) => {
            "it is Failed: the operator holds it until its spec changes or it is deleted (see its conditions)".into()
        }
        (Phase::Running, SettlementPolicy::Settle) => {
            let chain = fr
                .spec
                .settlement
                .l1
                .as_ref()
                .map(|l1| format!(" (chain {})", l1.chain_id))
                .unwrap_or_default();
            format!("it stops taking transactions, settles its final state on the L1{chain}, then is torn down")
        }
        (Phase::Running, SettlementPolicy::Discard) => {
            "settlement.policy is Discard: it is torn down without settling".into()
        }
        _ => {
            format!("it never reached Running ({phase}): it is torn down without settling, there is no state to settle")
        }
    }
}

/// Whether `settle --wait` is over: the rollup is TornDown, Failed, or gone (teardown Delete).
pub fn finished(fr: Option<&FlashRollup>) -> bool {
    fr.is_none_or(|fr| {
        matches!(
            fr.status.as_ref().and_then(|s| s.phase),
            Some(Phase::TornDown | Phase::Failed)
        )
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::plugin::fixtures::{rollup, running, t};

    #[test]
    fn the_patch_sets_the_annotation_the_operator_reads() {
        assert_eq!(
            patch(),
            json!({"metadata": {"annotations": {"rollups.flashlayer.dev/settle-now": "true"}}})
        );
    }

    #[test]
    fn running_rollups_are_annotated_with_what_follows() {
        assert_eq!(
            plan(&running("ttl: 10m", "Settle")),
            Plan::Annotate {
                patch: patch(),
                note:
                    "it stops taking transactions, settles its final state on the L1 (chain 31337), then is torn down"
                        .into()
            }
        );
        assert_eq!(
            plan(&running("ttl: 10m", "Discard")),
            Plan::Annotate {
                patch: patch(),
                note: "settlement.policy is Discard: it is torn down without settling".into()
            }
        );
        assert_eq!(
            plan(&rollup("ttl: 10m", "Settle")),
            Plan::Annotate {
                patch: patch(),
                note:
                    "it never reached Running (Pending): it is torn down without settling, there is no state to settle"
                        .into()
            }
        );
    }

    #[test]
    fn a_second_request_changes_nothing() {
        let mut fr = running("ttl: 10m", "Discard");
        fr.metadata
            .annotations
            .get_or_insert_default()
            .insert(SETTLE_NOW_ANNOTATION.into(), "yes".into());
        assert!(matches!(plan(&fr), Plan::AlreadyRequested { .. }), "{:?}", plan(&fr));
    }

    #[test]
    fn an_ended_rollup_has_nothing_to_settle() {
        let mut fr = running("ttl: 10m", "Settle");
        if let Some(s) = fr.status.as_mut() {
            s.phase = Some(Phase::Settling);
            s.ended_at = Some(Time(t("2026-11-21T10:10:00Z")));
        }
        assert_eq!(
            plan(&fr),
            Plan::AlreadyEnded {
                phase: Phase::Settling,
                ended_at: Some(t("2026-11-21T10:10:00Z"))
            }
        );
    }

    #[test]
    fn waiting_ends_at_torn_down_failed_or_gone() {
        let mut fr = running("ttl: 10m", "Discard");
        assert!(!finished(Some(&fr)));
        for (phase, done) in [
            (Phase::Settling, false),
            (Phase::Settled, false),
            (Phase::TornDown, true),
            (Phase::Failed, true),
        ] {
            if let Some(s) = fr.status.as_mut() {
                s.phase = Some(phase);
            }
            assert_eq!(finished(Some(&fr)), done, "{phase}");
        }
        assert!(finished(None), "deleted (teardown Delete)");
    }
}
