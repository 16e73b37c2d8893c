//! Status bookkeeping: conditions merged so that lastTransitionTime only moves when a condition's
//! status flips, and status patched only when something really changed.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::lifecycle::Cond;

/// Merge the conditions the state machine wants into the ones the object has.
pub fn merge_conditions(
    existing: &[Condition],
    wanted: &[Cond],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = existing.to_vec();
    for w in wanted {
        let status = if w.status { "True" } else { "False" };
        let transition = match out.iter().find(|c| c.type_ == w.type_) {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => Time(now),
        };
        let condition = Condition {
            type_: w.type_.to_owned(),
            status: status.to_owned(),
            reason: w.reason.to_owned(),
            message: w.message.clone(),
            observed_generation: generation,
            last_transition_time: transition,
        };
        match out.iter_mut().find(|c| c.type_ == w.type_) {
            Some(slot) => *slot = condition,
            None => out.push(condition),
        }
    }
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// Server-side apply of `status` (one fixed field manager) to `object`'s status subresource;
/// returns the object as the API server now holds it.
pub async fn apply_status<K, S>(client: &kube::Client, object: &K, status: &S) -> super::error::Result<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: serde::Serialize,
{
    use kube::ResourceExt;
    let api: kube::Api<K> = kube::Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let params = kube::api::PatchParams::apply(crate::api::FIELD_MANAGER).force();
    api.patch_status(&object.name_any(), &params, &kube::api::Patch::Apply(&patch))
        .await
        .map_err(super::error::Error::Status)
}

/// The condition of `type_`, if any.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(type_: &'static str, status: bool, reason: &'static str) -> Cond {
        Cond {
            type_,
            status,
            reason,
            message: format!("{reason} message"),
        }
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let t0: Timestamp = "2026-11-21T10:00:00Z".parse().expect("time");
        let t1: Timestamp = "2026-11-21T10:05:00Z".parse().expect("time");
        let first = merge_conditions(&[], &[want("Ready", false, "WorkloadsPending")], Some(1), t0);
        let same = merge_conditions(&first, &[want("Ready", false, "WaitingForOperators")], Some(2), t1);
        assert_eq!(same[0].last_transition_time, Time(t0));
        assert_eq!(same[0].reason, "WaitingForOperators");
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = merge_conditions(&same, &[want("Ready", true, "WorkloadsReady")], Some(2), t1);
        assert_eq!(flipped[0].last_transition_time, Time(t1));
    }

    #[test]
    fn other_conditions_are_kept_and_order_is_stable() {
        let t0: Timestamp = "2026-11-21T10:00:00Z".parse().expect("time");
        let a = merge_conditions(
            &[],
            &[want("Settled", false, "NeverRan"), want("Ready", true, "x")],
            None,
            t0,
        );
        let b = merge_conditions(&a, &[want("QuorumMet", true, "y")], None, t0);
        let types: Vec<_> = b.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["QuorumMet", "Ready", "Settled"]);
    }
}
