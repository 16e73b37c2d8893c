//! `kubectl flashrollup extend`: the patch that lengthens a rollup's life, and how to read the
//! operator's answer to it. The lifecycle takes the lifetime from the spec (`ttl` counted from
//! `status.runningSince`, or an absolute `expiresAt`) and refuses any change once the life has
//! ended (condition TTLAccepted=False, reason ExtensionRefused), so the plan moves whichever of
//! the two fields the rollup uses and refuses up front what the operator would refuse.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde_json::{Value, json};

use super::duration::go;
use super::error::PluginError;
use super::status::{ended_at, expiry};
use crate::api::conditions::{self, reason};
use crate::api::{FlashRollup, Phase};

/// The longest ttl the CRD accepts (its CEL rule: between 1m and 720h).
pub const MAX_TTL: Duration = Duration::from_secs(720 * 3600);

/// A planned extension: the merge patch and what it changes.
#[derive(Clone, Debug, PartialEq)]
pub struct Extension {
    /// JSON merge patch of the spec field, guarded by the resourceVersion that was read so that
    /// two extensions at once both count (the second one conflicts, re-reads and adds up).
    pub patch: Value,
    /// `spec.ttl` or `spec.expiresAt`.
    pub field: &'static str,
    pub from: String,
    pub to: String,
    /// The `status.expiresAt` the operator should arrive at, when it is known (a ttl before
    /// Running only starts counting then).
    pub expected_expires_at: Option<Timestamp>,
}

/// Plan lengthening the life of `fr` by `by`, at `now`.
pub fn plan(fr: &FlashRollup, by: Duration, now: Timestamp) -> Result<Extension, PluginError> {
    let name = fr.name_any();
    let status = fr.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or_default();
    let ended = ended_at(fr);
    if ended.is_some() || matches!(phase, Phase::Settling | Phase::Settled | Phase::TornDown) {
        return Err(PluginError::Ended {
            name,
            phase,
            ended_at: ended,
        });
    }
    // At expiry the operator is already ending it (it wakes exactly then). A Failed rollup is
    // different: a spec change is what retries it, and a later expiry is what lets it run again.
    if phase != Phase::Failed
        && let Some(at) = expiry(fr)
        && at <= now
    {
        return Err(PluginError::Expired { name, expired_at: at });
    }
    let by_signed = SignedDuration::try_from(by).map_err(|e| PluginError::Usage(format!("duration too long: {e}")))?;
    let running_since = status.running_since.as_ref().map(|t| t.0);

    let (field, from, to, value, expected) = match (&fr.spec.ttl, &fr.spec.expires_at) {
        (Some(ttl), _) => {
            let old: Duration = (*ttl).into();
            let new = old
                .checked_add(by)
                .filter(|d| *d <= MAX_TTL)
                .ok_or_else(|| PluginError::TtlTooLong {
                    ttl: go(old.saturating_add(by)),
                })?;
            let expected = running_since.and_then(|since| {
                SignedDuration::try_from(new)
                    .ok()
                    .and_then(|d| since.checked_add(d).ok())
            });
            ("spec.ttl", go(old), go(new), json!({ "ttl": go(new) }), expected)
        }
        (None, Some(at)) => {
            let moved =
                at.0.checked_add(by_signed)
                    .map_err(|e| PluginError::Usage(format!("cannot move expiresAt {} by {}: {e}", at.0, go(by))))?;
            // The API keeps whole seconds: expect exactly what it will store.
            let new = Timestamp::from_second(moved.as_second()).unwrap_or(moved);
            let value = serde_json::to_value(Time(new))
                .map_err(|e| PluginError::Usage(format!("cannot write expiresAt {new}: {e}")))?;
            (
                "spec.expiresAt",
                at.0.to_string(),
                new.to_string(),
                json!({ "expiresAt": value }),
                Some(new),
            )
        }
        (None, None) => return Err(PluginError::NoLifetime(name)),
    };
    let mut patch = json!({ "spec": value });
    if let Some(rv) = &fr.metadata.resource_version {
        patch["metadata"] = json!({ "resourceVersion": rv });
    }
    Ok(Extension {
        patch,
        field,
        from,
        to,
        expected_expires_at: expected,
    })
}

/// What the operator made of the patched spec, as its status says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It has not reconciled the new generation yet.
    NotObserved,
    /// The new lifetime is in force; `status.expiresAt` (none while a ttl waits for Running).
    Accepted { expires_at: Option<Timestamp> },
    /// It refused: the condition TTLAccepted=False.
    Refused { reason: String, message: String },
}

/// Read the operator's answer to the spec generation `generation` from `fr`'s status.
pub fn outcome(fr: &FlashRollup, generation: i64) -> Outcome {
    let Some(status) = &fr.status else {
        return Outcome::NotObserved;
    };
    if status.observed_generation.is_none_or(|g| g < generation) {
        return Outcome::NotObserved;
    }
    let refused = status.conditions.iter().find(|c| {
        c.type_ == conditions::TTL_ACCEPTED
            && c.status == "False"
            && c.reason == reason::EXTENSION_REFUSED
            && c.observed_generation.is_none_or(|g| g >= generation)
    });
    match refused {
        Some(c) => Outcome::Refused {
            reason: c.reason.clone(),
            message: c.message.clone(),
        },
        None => Outcome::Accepted {
            expires_at: status.expires_at.as_ref().map(|t| t.0),
        },
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::plugin::fixtures::{condition, rollup, running, t};

    const NOW: &str = "2026-11-21T10:05:00Z";

    #[test]
    fn ttl_grows_by_the_duration_and_the_expiry_follows() {
        let fr = running("ttl: 10m", "Discard");
        let ext = plan(&fr, Duration::from_secs(5 * 60), t(NOW)).expect("a plan");
        assert_eq!(
            ext,
            Extension {
                patch: json!({"metadata": {"resourceVersion": "41"}, "spec": {"ttl": "15m"}}),
                field: "spec.ttl",
                from: "10m".into(),
                to: "15m".into(),
                expected_expires_at: Some(t("2026-11-21T10:15:00Z")),
            }
        );
    }

    #[test]
    fn ttl_before_running_has_no_expiry_yet() {
        let fr = rollup("ttl: 1h", "Discard");
        let ext = plan(&fr, Duration::from_secs(90), t(NOW)).expect("a plan");
        assert_eq!(ext.patch["spec"], json!({"ttl": "1h1m30s"}));
        assert_eq!(ext.expected_expires_at, None);
    }

    #[test]
    fn expires_at_moves_by_the_duration_to_the_second() {
        let mut fr = running("expiresAt: \"2026-11-21T10:10:00Z\"", "Discard");
        fr.metadata.resource_version = None;
        let ext = plan(&fr, Duration::from_millis(90_700), t(NOW)).expect("a plan");
        assert_eq!(
            ext,
            Extension {
                patch: json!({"spec": {"expiresAt": "2026-11-21T10:11:30Z"}}),
                field: "spec.expiresAt",
                from: "2026-11-21T10:10:00Z".into(),
                to: "2026-11-21T10:11:30Z".into(),
                expected_expires_at: Some(t("2026-11-21T10:11:30Z")),
            }
        );
    }

    #[test]
    fn the_ttl_cap_of_the_crd_is_checked_first() {
        let fr = running("ttl: 700h", "Discard");
        let err = plan(&fr, Duration::from_secs(21 * 3600), t(NOW)).expect_err("over 720h");
        assert_eq!(
            err.to_string(),
            "the new ttl 721h would exceed the maximum of 720h (30 days) that spec.ttl allows"
        );
        assert!(
            plan(&fr, Duration::from_secs(20 * 3600), t(NOW)).is_ok(),
            "exactly 720h"
        );
    }

    #[test]
    fn an_ended_rollup_cannot_be_extended() {
        let mut fr = running("ttl: 10m", "Discard");
        if let Some(s) = fr.status.as_mut() {
            s.phase = Some(Phase::TornDown);
            s.ended_at = Some(Time(t("2026-11-21T10:03:00Z")));
        }
        let err = plan(&fr, Duration::from_secs(60), t(NOW)).expect_err("ended");
        assert_eq!(
            err.to_string(),
            "flashrollup \"devnet\" already ended at 2026-11-21T10:03:00Z and is TornDown: its lifetime cannot be extended (a ttl or expiresAt change cannot reopen a sealed chain)"
        );
        // Still Running in the status, but the end is recorded (a Discard teardown under way).
        if let Some(s) = fr.status.as_mut() {
            s.phase = Some(Phase::Running);
        }
        assert!(matches!(
            plan(&fr, Duration::from_secs(60), t(NOW)),
            Err(PluginError::Ended {
                phase: Phase::Running,
                ..
            })
        ));
    }

    #[test]
    fn an_expired_rollup_cannot_be_extended() {
        let fr = running("ttl: 10m", "Discard");
        let err = plan(&fr, Duration::from_secs(60), t("2026-11-21T10:10:00Z")).expect_err("expired");
        assert_eq!(
            err.to_string(),
            "flashrollup \"devnet\" expired at 2026-11-21T10:10:00Z and is being ended by the operator: it is too late to extend it"
        );
        assert!(plan(&fr, Duration::from_secs(60), t("2026-11-21T10:09:59Z")).is_ok());
    }

    #[test]
    fn a_failed_rollup_may_be_given_more_time() {
        let mut fr = running("ttl: 10m", "Discard");
        if let Some(s) = fr.status.as_mut() {
            s.phase = Some(Phase::Failed);
        }
        let ext = plan(&fr, Duration::from_secs(600), t("2026-11-21T10:12:00Z")).expect("a plan");
        assert_eq!(ext.to, "20m");
    }

    #[test]
    fn outcome_waits_for_the_new_generation() {
        let mut fr = running("ttl: 15m", "Discard");
        assert_eq!(outcome(&fr, 2), Outcome::NotObserved, "observedGeneration 1");
        if let Some(s) = fr.status.as_mut() {
            s.observed_generation = Some(2);
            s.expires_at = Some(Time(t("2026-11-21T10:15:00Z")));
        }
        assert_eq!(
            outcome(&fr, 2),
            Outcome::Accepted {
                expires_at: Some(t("2026-11-21T10:15:00Z"))
            }
        );
        fr.status = None;
        assert_eq!(outcome(&fr, 2), Outcome::NotObserved, "no status");
    }

    #[test]
    fn outcome_reports_the_refusal_condition() {
        let mut fr = running("ttl: 15m", "Discard");
        let message =
            "the lifetime ended at 2026-11-21T10:03:00Z and is TornDown; a ttl or expiresAt change cannot reopen it";
        if let Some(s) = fr.status.as_mut() {
            s.observed_generation = Some(2);
            let mut refused = condition("TTLAccepted", "False", "ExtensionRefused", NOW, message);
            refused.observed_generation = Some(2);
            s.conditions.retain(|c| c.type_ != "TTLAccepted");
            s.conditions.push(refused);
        }
        assert_eq!(
            outcome(&fr, 2),
            Outcome::Refused {
                reason: "ExtensionRefused".into(),
                message: message.into()
            }
        );
        // A refusal of an older generation is not the answer to this one.
        assert!(matches!(outcome(&fr, 3), Outcome::NotObserved));
    }
}
