//! The AVSOperator reconciler: checks that the key Secret exists (by its metadata only: the key
//! itself is never read, let alone copied), reports Ready, and accounts the rollups it verifies.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action as Requeue;
use kube::{Api, ResourceExt};

use super::Context;
use super::error::{Error, Result};
use super::status::merge_conditions;
use crate::api::conditions::{self, reason};
use crate::api::flashrollup::Phase;
use crate::api::{AVSOperator, AVSOperatorStatus};
use crate::lifecycle::Cond;

const KIND: &str = "AVSOperator";

pub async fn reconcile(op: Arc<AVSOperator>, ctx: Arc<Context>) -> Result<Requeue> {
    let _timer = ctx.metrics.reconcile_timer(KIND);
    // The assigned count comes from the rollup cache: not from a half-loaded one.
    ctx.caches_ready().await;
    let ns = op.namespace().unwrap_or_default();
    let old = op.status.clone().unwrap_or_default();

    let secret_name = op.spec.bls_key.secret_ref.as_ref().map(|r| r.name.clone());
    let secret_exists = match &secret_name {
        Some(name) => {
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
            secrets
                .get_metadata_opt(name)
                .await
                .map_err(|source| Error::Read {
                    what: "BLS key secret",
                    source,
                })?
                .is_some()
        }
        None => false,
    };
    let ready = readiness(op.spec.suspend, secret_name.as_deref(), secret_exists);

    let mut assigned: Vec<String> = ctx
        .rollups
        .state()
        .iter()
        .filter(|r| r.namespace().as_deref() == Some(&ns))
        .filter(|r| {
            r.status.as_ref().is_some_and(|s| {
                !matches!(s.phase, Some(Phase::TornDown))
                    && s.assigned_operators.iter().any(|a| a.name == op.name_any())
            })
        })
        .map(|r| format!("{ns}/{}", r.name_any()))
        .collect();
    assigned.sort();

    let mut status = AVSOperatorStatus {
        ready: Some(if ready.status { "True" } else { "False" }.to_owned()),
        observed_generation: op.metadata.generation,
        assigned_count: assigned.len() as u32,
        assigned_rollups: assigned,
        ..old.clone()
    };
    status.conditions = merge_conditions(&old.conditions, &[ready], op.metadata.generation, Timestamp::now());
    if status != old {
        super::status::apply_status(&ctx.client, op.as_ref(), &status).await?;
    }
    // A missing Secret may appear at any time and we do not watch Secrets (least privilege):
    // look again in a while.
    Ok(if status.ready.as_deref() == Some("True") {
        Requeue::await_change()
    } else {
        Requeue::requeue(Duration::from_secs(30))
    })
}

/// Ready unless suspended or without its key Secret.
fn readiness(suspend: bool, secret: Option<&str>, exists: bool) -> Cond {
    match (suspend, secret, exists) {
        (true, _, _) => Cond {
            type_: conditions::READY,
            status: false,
            reason: reason::SUSPENDED,
            message: "spec.suspend is true: no new assignments, and rollups get a replacement".into(),
        },
        (false, Some(name), false) => Cond {
            type_: conditions::READY,
            status: false,
            reason: reason::KEY_SECRET_MISSING,
            message: format!("the BLS key Secret {name} does not exist in this namespace"),
        },
        (false, None, _) => Cond {
            type_: conditions::READY,
            status: false,
            reason: reason::KEY_SECRET_MISSING,
            message: "spec.blsKey.secretRef is not set".into(),
        },
        (false, Some(name), true) => Cond {
            type_: conditions::READY,
            status: true,
            reason: reason::KEY_SECRET_FOUND,
            message: format!("the BLS key Secret {name} exists"),
        },
    }
}

pub fn error_policy(op: Arc<AVSOperator>, error: &Error, ctx: Arc<Context>) -> Requeue {
    ctx.metrics.reconcile_error(KIND, error.label());
    tracing::warn!(operator = %op.name_any(), error = %error, "reconcile failed");
    error.retry_after().map_or_else(Requeue::await_change, Requeue::requeue)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_the_reason() {
        assert_eq!(readiness(false, Some("k"), true).reason, reason::KEY_SECRET_FOUND);
        assert!(readiness(false, Some("k"), true).status);
        assert_eq!(readiness(false, Some("k"), false).reason, reason::KEY_SECRET_MISSING);
        assert_eq!(readiness(true, Some("k"), true).reason, reason::SUSPENDED);
        assert!(!readiness(false, None, false).status);
    }
}
