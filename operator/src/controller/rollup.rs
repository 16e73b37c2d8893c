//! The FlashRollup reconciler, a pipeline: read (store and API) -> validate (pure) -> assign
//! operators (pure) -> decide the lifecycle step (pure) -> act (server-side apply, settlement,
//! teardown) -> patch status when it changed. kube's `finalizer()` is the only entry point.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::finalizer::{Error as FinalizerError, Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource, ResourceExt};
use rand::RngCore;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::caches::of_rollup;
use super::error::{Error, Result};
use super::events::{Kind, Publisher};
use super::register;
use super::settle::{self, NodeAccess};
use super::status::merge_conditions;
use super::{Context, teardown};
use crate::api::conditions::{self, reason};
use crate::api::flashrollup::{FlashRollupStatus, Phase, SettlementStatus, SettlementStep};
use crate::api::{AVSOperator, FIELD_MANAGER, FINALIZER, FlashRollup, SETTLE_NOW_ANNOTATION};
use crate::assignment::{self, Assignment, Candidate};
use crate::builders::{self, ADMIN_PORT, ADMIN_TOKEN_KEY, Desired, Inputs, Verifier, component};
use crate::lifecycle::{self, Action, Children, Cond, Decision, Operators};
use crate::settlement::l1::rollup_id;
use crate::validate;

const KIND: &str = "FlashRollup";
/// How often a rollup waiting for operators looks at the caches again on its own. Events wake
/// it (an operator becoming Ready, capacity freed); this only bounds the wait should an event
/// be missed across a watch restart. Reads caches only, and status is written only on a change.
const PENDING_RECHECK: Duration = Duration::from_secs(10);

/// Entry point for the controller: everything goes through the finalizer helper.
pub async fn reconcile(rollup: Arc<FlashRollup>, ctx: Arc<Context>) -> Result<Requeue> {
    let _timer = ctx.metrics.reconcile_timer(KIND);
    // Right after a start, an empty cache means "not loaded yet": judging now would see every
    // operator as gone (QuorumLost) and every workload as missing.
    ctx.caches_ready().await;
    // The expiry lane may be writing this rollup's end: wait for it, and read what it wrote.
    let _turn = ctx.turns.take(&rollup).await;
    let rollup = ctx.turns.freshest(rollup);
    // A torn-down rollup has nothing left for the finalizer to guard: it was removed, and going
    // through `finalizer()` again would put it back.
    let torn_down = rollup.status.as_ref().and_then(|s| s.phase) == Some(Phase::TornDown);
    if torn_down && rollup.metadata.deletion_timestamp.is_none() {
        return reconcile_rollup(&rollup, &ctx, false).await;
    }
    let api: Api<FlashRollup> = Api::namespaced(ctx.client.clone(), &rollup.namespace().unwrap_or_default());
    let outcome = finalizer(&api, FINALIZER, rollup, |event| async {
        match event {
            Finalizer::Apply(r) => reconcile_rollup(&r, &ctx, false).await,
            Finalizer::Cleanup(r) => reconcile_rollup(&r, &ctx, true).await,
        }
    })
    .await;
    match outcome {
        // Woken by a stale copy, the cleanup ran again on an object whose finalizer was already
        // removed, and that the API server has since deleted: done.
        Err(FinalizerError::RemoveFinalizer(kube::Error::Api(s))) if s.code == 404 => Ok(Requeue::await_change()),
        outcome => outcome.map_err(|e| Error::Finalizer(Box::new(e))),
    }
}

/// Requeue policy on errors; failures are counted and reported as Warning Events.
pub fn error_policy(rollup: Arc<FlashRollup>, error: &Error, ctx: Arc<Context>) -> Requeue {
    if error.is_failure() {
        ctx.metrics.reconcile_error(KIND, error.label());
        tracing::warn!(rollup = %rollup.name_any(), namespace = ?rollup.namespace(), error = %error, label = error.label(), "reconcile failed");
    }
    match error.retry_after() {
        Some(after) => Requeue::requeue(after),
        None => Requeue::await_change(),
    }
}

/// What reconciliation learnt about the operators.
struct Assigned {
    view: Operators,
    status: Vec<crate::api::flashrollup::AssignedOperator>,
    specs: Vec<Option<AVSOperator>>,
    replaced: Vec<(String, String)>,
}

/// What a reconciliation reads before it decides, from the caches only: whether the spec is
/// valid, the operators, and the workloads while they matter for the phase.
struct Observed {
    invalid: Option<String>,
    assigned: Assigned,
    children: Children,
}

async fn read(ctx: &Context, rollup: &FlashRollup, old: &FlashRollupStatus) -> Result<Observed> {
    let phase_before = old.phase.unwrap_or_default();
    // Validate (pure) and assign operators (pure, over the caches).
    let invalid = validate::spec(&rollup.spec).err();
    let assigned = if invalid.is_none() && matches!(phase_before, Phase::Pending | Phase::Provisioning | Phase::Running)
    {
        assign(ctx, rollup).await?
    } else {
        current_assignment(ctx, rollup, old)
    };
    let mut children = Children::default();
    if matches!(phase_before, Phase::Provisioning | Phase::Running) || assigned_first_time(old, &assigned) {
        children = observe(ctx, rollup, &assigned);
    }
    Ok(Observed {
        invalid,
        assigned,
        children,
    })
}

fn input<'a>(
    rollup: &'a FlashRollup,
    old: &'a FlashRollupStatus,
    seen: &Observed,
    deleting: bool,
    now: Timestamp,
) -> lifecycle::Input<'a> {
    lifecycle::Input {
        spec: &rollup.spec,
        status: old,
        generation: rollup.metadata.generation,
        deleting,
        settle_now: rollup.annotations().contains_key(SETTLE_NOW_ANNOTATION),
        invalid: seen.invalid.clone(),
        operators: seen.assigned.view.clone(),
        children: seen.children.clone(),
        now,
    }
}

/// The expiry lane's write: the end of a rollup that `expiry::due` found due, decided as a
/// reconciliation would decide it, with its Event. The rest (settle, tear down) is the
/// controller's, woken by this write.
pub async fn record_expiry(ctx: &Context, rollup: &FlashRollup) -> Result<()> {
    let now = Timestamp::now();
    let old = rollup.status.clone().unwrap_or_default();
    let seen = read(ctx, rollup, &old).await?;
    let decision = lifecycle::decide(&input(rollup, &old, &seen, false, now));
    if decision.ended_at.is_none() {
        return Ok(());
    }
    let mut status = old.clone();
    finish_status(&mut status, &decision, &[], rollup, now);
    patch_status_via(ctx, &ctx.lane.client, rollup, &status).await?;
    observe_transition(ctx, &ctx.lane.events, rollup, &old, &status, &decision, now).await;
    Ok(())
}

async fn reconcile_rollup(rollup: &FlashRollup, ctx: &Context, deleting: bool) -> Result<Requeue> {
    let now = Timestamp::now();
    let old = rollup.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let seen = read(ctx, rollup, &old).await?;
    let assigned = &seen.assigned;
    let mut input = input(rollup, &old, &seen, deleting, now);
    let mut decision = lifecycle::decide(&input);
    // What the API server holds, for "patch only what changed".
    let mut written = old.clone();
    if decision.actions.contains(&Action::TearDown) {
        // The end of life is recorded before the first teardown pass (round trips of its own,
        // slow when the API server is busy): the moment a rollup stops is its expiry, not its
        // expiry plus a teardown pass. (At expiry the lane has usually recorded it already.)
        if old.ended_at.is_none() && decision.ended_at.is_some() {
            finish_status(&mut written, &decision, &[], rollup, now);
            if written != old {
                patch_status(ctx, rollup, &written).await?;
            }
        }
        input.children.remaining = Some(teardown::tear_down(ctx, rollup).await?);
        decision = lifecycle::decide(&input);
    }

    // Act.
    let mut extra: Vec<Cond> = Vec::new();
    // An error only a person can resolve, with the Ready reason to report it under.
    let mut failure: Option<(Error, &'static str)> = None;
    // Registration first: when it completes, this reconciliation moves on at once (to Running
    // when the workloads are ready) instead of waiting for the next one.
    let mut register_wait: Option<Duration> = None;
    let retry_wait = retry_wait(&old, now);
    if decision.actions.contains(&Action::Register)
        && let Some(wait) = retry_wait
    {
        // Backing off after a failure: keep its condition (Ready) as it is, and wait.
        register_wait = Some(wait);
        decision.conditions.retain(|c| c.type_ != conditions::READY);
    } else if decision.actions.contains(&Action::Register) {
        match run_registration(ctx, rollup, assigned, &mut status).await {
            Ok(None) => {
                let registered = FlashRollupStatus {
                    settlement: status.settlement.clone(),
                    ..old.clone()
                };
                decision = lifecycle::decide(&lifecycle::Input {
                    status: &registered,
                    ..input.clone()
                });
            }
            Ok(Some(wait)) => register_wait = Some(wait),
            Err(e) if e.is_failure() && !is_transient(&e) => {
                let reason = match e {
                    Error::Registration(_) => reason::REGISTRATION_CONFLICT,
                    _ => reason::REGISTRATION_REJECTED,
                };
                // Nothing more is built for a rollup that could never settle.
                decision.actions.clear();
                failure = Some((e, reason));
            }
            Err(Error::InProgress(after)) => register_wait = Some(after),
            Err(e) => {
                let wait = record_failure(status.settlement.get_or_insert_default(), now);
                tracing::warn!(rollup = %rollup.name_any(), namespace = ?rollup.namespace(), error = %e, retry_in = ?wait, "registering the operator set on the L1 failed; retrying");
                register_wait = Some(wait);
                extra.push(Cond {
                    type_: conditions::READY,
                    status: false,
                    reason: match &e {
                        Error::L1(_) => reason::L1_UNREACHABLE,
                        _ => reason::REGISTERING,
                    },
                    message: format!("registering the operator set on the L1 (retrying): {e}"),
                });
                ctx.metrics.settlement_failures.with_label_values(&[e.label()]).inc();
            }
        }
    }
    let mut requeue = decision.wake_at.map(|at| until(now, at));
    if let Some(wait) = register_wait {
        requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
    }
    for action in decision.actions.clone() {
        match action {
            Action::ApplyWorkloads => {
                status.assigned_operators = assigned.status.clone();
                apply_workloads(ctx, rollup, assigned, &mut status).await?;
                for (old_op, new_op) in &assigned.replaced {
                    publish(
                        &ctx.events,
                        rollup,
                        Kind::Normal,
                        reason::OPERATOR_REPLACED,
                        format!("{old_op} is not Ready; {new_op} verifies in its place"),
                    )
                    .await;
                }
            }
            // Done before the other actions (above).
            Action::Register => {}
            Action::Settle(_) if retry_wait.is_some() => {
                // Backing off after a failure: its condition (Settling) stays as it is.
                requeue = retry_wait;
                decision.conditions.retain(|c| c.type_ != conditions::SETTLING);
            }
            Action::Settle(_) => match run_settlement(ctx, rollup, &mut status, &mut extra).await {
                Ok(after) => requeue = Some(after),
                Err(e) if e.is_failure() && !is_transient(&e) => failure = Some((e, reason::SETTLEMENT_REJECTED)),
                Err(Error::InProgress(after)) => requeue = Some(after),
                Err(e) => {
                    let backoff = record_failure(status.settlement.get_or_insert_default(), now);
                    tracing::warn!(rollup = %rollup.name_any(), namespace = ?rollup.namespace(), error = %e, retry_in = ?backoff, "settlement step failed; retrying");
                    extra.push(Cond {
                        type_: conditions::SETTLING,
                        status: true,
                        reason: settle_reason(&e),
                        message: e.to_string(),
                    });
                    ctx.metrics.settlement_failures.with_label_values(&[e.label()]).inc();
                    requeue = Some(backoff);
                }
            },
            Action::TearDown => {
                if input.children.remaining != Some(0) {
                    requeue = Some(teardown_poll(now, decision.ended_at));
                }
            }
            Action::DeleteObject => {
                let api: Api<FlashRollup> =
                    Api::namespaced(ctx.client.clone(), &rollup.namespace().unwrap_or_default());
                match api.delete(&rollup.name_any(), &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(source) => {
                        return Err(Error::Delete {
                            what: "FlashRollup".into(),
                            source,
                        });
                    }
                }
            }
            // While deleting, `finalizer()` removes it once we return Ok.
            Action::RemoveFinalizer if !deleting => remove_finalizer(ctx, rollup).await?,
            Action::RemoveFinalizer => {}
        }
    }

    // A settlement the L1 refused, a certificate that does not match, a rollup id registered
    // by someone else: a person must look.
    if let Some((e, reason)) = &failure {
        decision.phase = Phase::Failed;
        decision.conditions.push(Cond {
            type_: conditions::READY,
            status: false,
            reason,
            message: e.to_string(),
        });
        ctx.metrics.settlement_failures.with_label_values(&[e.label()]).inc();
        requeue = None;
    }

    // Both controllers share one cache per kind, updated before the event that wakes a waiting
    // rollup is sent, so the event path suffices; see PENDING_RECHECK for the rest.
    if decision.phase == Phase::Pending && matches!(assigned.view, Operators::Insufficient { .. }) {
        requeue = Some(requeue.map_or(PENDING_RECHECK, |r| r.min(PENDING_RECHECK)));
    }
    if decision.phase == Phase::Running
        && decision.ended_at.is_none()
        && ctx.config.node_status_interval > Duration::ZERO
    {
        refresh_from_node(ctx, rollup, &mut status, &mut extra).await;
        requeue = Some(requeue.map_or(ctx.config.node_status_interval, |r| {
            r.min(ctx.config.node_status_interval)
        }));
    }

    // Status.
    finish_status(&mut status, &decision, &extra, rollup, now);
    if status != written {
        patch_status(ctx, rollup, &status).await?;
    }
    observe_transition(ctx, &ctx.events, rollup, &old, &status, &decision, now).await;
    if decision.phase == Phase::TornDown {
        let key = format!("{}/{}", rollup.namespace().unwrap_or_default(), rollup.name_any());
        ctx.reservations.lock().await.remove(&key);
        teardown::done(ctx, rollup).await;
    }

    if deleting {
        return if decision.actions.contains(&Action::RemoveFinalizer) {
            Ok(Requeue::await_change())
        } else {
            Err(Error::InProgress(requeue.unwrap_or(Duration::from_secs(1))))
        };
    }
    Ok(requeue.map_or_else(Requeue::await_change, Requeue::requeue))
}

fn is_transient(e: &Error) -> bool {
    match e {
        Error::L1(l1) => l1.is_transient(),
        Error::Certificate(_) | Error::InvalidSpec(_) | Error::Registration(_) => false,
        _ => true,
    }
}

/// Retry delay after `failed_attempts` transient failures in a row: 2 s, 4 s, ... up to 64 s.
fn backoff(failed_attempts: u32) -> Duration {
    Duration::from_secs(1 << failed_attempts.clamp(1, 6))
}

/// Count a transient failure of the current step and set when it is tried again; returns the
/// delay. The instant is recorded in status because the status write itself wakes the
/// controller: without it, every failure would be retried at once.
fn record_failure(s: &mut SettlementStatus, now: Timestamp) -> Duration {
    s.failed_attempts = s.failed_attempts.saturating_add(1);
    let delay = backoff(s.failed_attempts);
    s.next_attempt_at = jiff::SignedDuration::try_from(delay)
        .ok()
        .and_then(|d| now.checked_add(d).ok())
        .map(Time);
    delay
}

/// How long until the step that failed may be tried again, if that is still ahead.
fn retry_wait(status: &FlashRollupStatus, now: Timestamp) -> Option<Duration> {
    let s = status.settlement.as_ref()?;
    let at = s.next_attempt_at.as_ref()?.0;
    (s.failed_attempts > 0 && at > now).then(|| until(now, at))
}

fn settle_reason(e: &Error) -> &'static str {
    match e {
        Error::L1(_) => reason::L1_UNREACHABLE,
        Error::Node(_) => reason::NODE_UNREACHABLE,
        _ => reason::SUBMITTING,
    }
}

/// When to count again what a teardown has left: every second at first (one usually takes a
/// second or two), then less often as it drags on, up to 10 s. A thousand teardowns held up by a
/// busy kube-controller-manager would otherwise fill the queue every second, ahead of the
/// rollups whose lifetime ends now. Its StatefulSet, Deployments and Pods going wake it anyway.
fn teardown_poll(now: Timestamp, ended_at: Option<Timestamp>) -> Duration {
    let dragging = ended_at.map_or(0.0, |e| now.duration_since(e).as_secs_f64());
    Duration::from_secs_f64((dragging / 4.0).clamp(1.0, 10.0))
}

/// Time from `now` until `at`, rounded up to the next millisecond so that the wake-up never
/// lands just before the instant (and finds nothing to do).
pub(super) fn until(now: Timestamp, at: Timestamp) -> Duration {
    let d = at.duration_since(now);
    if d.is_negative() {
        return Duration::ZERO;
    }
    let d = d.unsigned_abs();
    Duration::from_millis(d.as_millis() as u64 + u64::from(!d.subsec_nanos().is_multiple_of(1_000_000)))
}

fn assigned_first_time(old: &FlashRollupStatus, assigned: &Assigned) -> bool {
    old.assigned_operators.is_empty() && matches!(assigned.view, Operators::Assigned { .. })
}

/// Candidates from the AVSOperator cache, with usage from the FlashRollup cache, and the
/// deterministic assignment over them. Serialized so that two rollups never take the last slot
/// of one operator at once.
async fn assign(ctx: &Context, rollup: &FlashRollup) -> Result<Assigned> {
    let ns = rollup.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", rollup.name_any());
    let current = rollup
        .status
        .as_ref()
        .map(|s| s.assigned_operators.clone())
        .unwrap_or_default();
    let mut reservations = ctx.reservations.lock().await;

    let mut usage: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    for other in ctx.rollups.state() {
        let other_key = format!("{}/{}", other.namespace().unwrap_or_default(), other.name_any());
        if other_key == key || other.namespace().as_deref() != Some(&ns) {
            continue;
        }
        // A torn-down rollup holds nothing, whatever it reserved.
        if other.status.as_ref().is_some_and(|s| s.phase == Some(Phase::TornDown)) {
            continue;
        }
        let names: Vec<String> = match reservations.get(&other_key) {
            Some(reserved) => reserved.clone(),
            None => other
                .status
                .iter()
                .flat_map(|s| s.assigned_operators.iter().map(|o| o.name.clone()))
                .collect(),
        };
        for n in names {
            *usage.entry(n).or_default() += 1;
        }
    }
    let operators: Vec<Arc<AVSOperator>> = ctx
        .operators
        .state()
        .into_iter()
        .filter(|o| o.namespace().as_deref() == Some(&ns))
        .collect();
    let candidates: Vec<Candidate> = operators
        .iter()
        .map(|o| Candidate {
            name: o.name_any(),
            address: o.spec.address.clone(),
            stake: o.spec.stake,
            capacity: o.spec.capacity,
            used_elsewhere: usage.get(&o.name_any()).copied().unwrap_or(0),
            ready: o.is_ready() && !o.spec.suspend,
            labels: o.labels().clone(),
        })
        .collect();
    let seed = rollup.metadata.uid.clone().unwrap_or_else(|| key.clone());
    // A set registered on the L1 is fixed there: no replacement, QuorumLost instead.
    let frozen = rollup
        .status
        .as_ref()
        .is_some_and(|s| lifecycle::set_is_frozen(&rollup.spec, s));
    let outcome = assignment::assign(&seed, &rollup.spec.verification, &current, &candidates, frozen)
        .map_err(|e| Error::InvalidSpec(e.to_string()))?;
    Ok(match outcome {
        Assignment::Insufficient { eligible, wanted } => {
            reservations.remove(&key);
            Assigned {
                view: Operators::Insufficient { eligible, wanted },
                status: current,
                specs: vec![],
                replaced: vec![],
            }
        }
        Assignment::Assigned {
            operators: chosen,
            replaced,
            ready_stake,
        } => {
            reservations.insert(key, chosen.iter().map(|o| o.name.clone()).collect());
            let total_stake = chosen.iter().map(|o| o.stake).sum();
            let specs = chosen
                .iter()
                .map(|a| operators.iter().find(|o| o.name_any() == a.name).map(|o| (**o).clone()))
                .collect();
            Assigned {
                view: Operators::Assigned {
                    count: chosen.len() as u32,
                    ready_stake,
                    total_stake,
                },
                status: chosen,
                specs,
                replaced,
            }
        }
    })
}

/// After the end of life the set is frozen: report it as it stands.
fn current_assignment(ctx: &Context, rollup: &FlashRollup, old: &FlashRollupStatus) -> Assigned {
    let ns = rollup.namespace();
    // One snapshot of the cache, not one per assigned operator.
    let operators = ctx.operators.state();
    let find = |name: &str| {
        operators
            .iter()
            .find(|o| o.namespace() == ns && o.name_any() == name)
            .map(|o| (**o).clone())
    };
    let specs: Vec<Option<AVSOperator>> = old.assigned_operators.iter().map(|a| find(&a.name)).collect();
    let ready_stake = old
        .assigned_operators
        .iter()
        .zip(&specs)
        .filter(|(_, s)| s.as_ref().is_some_and(|s| s.is_ready() && !s.spec.suspend))
        .map(|(a, _)| a.stake)
        .sum();
    Assigned {
        view: Operators::Assigned {
            count: old.assigned_operators.len() as u32,
            ready_stake,
            total_stake: old.assigned_operators.iter().map(|a| a.stake).sum(),
        },
        status: old.assigned_operators.clone(),
        specs,
        replaced: vec![],
    }
}

/// Remove our finalizer from a torn-down rollup that stays (teardown policy Retain). The
/// resourceVersion makes the patch fail rather than drop a finalizer someone added meanwhile.
async fn remove_finalizer(ctx: &Context, rollup: &FlashRollup) -> Result<()> {
    if !rollup.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let api: Api<FlashRollup> = Api::namespaced(ctx.client.clone(), &rollup.namespace().unwrap_or_default());
    let kept: Vec<&String> = rollup.finalizers().iter().filter(|f| *f != FINALIZER).collect();
    let patch = serde_json::json!({
        "metadata": { "finalizers": kept, "resourceVersion": rollup.resource_version() }
    });
    api.patch(&rollup.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| Error::Apply {
            what: "FlashRollup finalizers".into(),
            source,
        })?;
    Ok(())
}

/// Readiness of the sequencer StatefulSet and the verifier Deployments, from the caches (the
/// watches wake the rollup when they change).
fn observe(ctx: &Context, rollup: &FlashRollup, assigned: &Assigned) -> Children {
    let ns = rollup.namespace().unwrap_or_default();
    let seq = ctx
        .statefulsets
        .get(&ObjectRef::new(&builders::child_name(rollup, component::SEQUENCER)).within(&ns));
    let ready = assigned
        .status
        .iter()
        .filter_map(|a| {
            ctx.deployments
                .get(&ObjectRef::new(&builders::verifier::deployment_name(rollup, &a.name)).within(&ns))
        })
        .filter(|d| d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0) >= 1)
        .count();
    Children {
        sequencers_ready: seq
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
        sequencers_wanted: rollup.spec.sequencer_replicas(),
        verifiers_ready: ready as u32,
        verifiers_wanted: assigned.status.len() as u32,
        remaining: None,
    }
}

/// Whether an applied workload is gone (deleted by someone): the cache says so, and a GET
/// confirms it, since the cache may not have seen a workload applied a moment ago.
async fn workload_missing(ctx: &Context, rollup: &FlashRollup, desired: &Desired) -> Result<bool> {
    let ns = rollup.namespace().unwrap_or_default();
    let read = |source| Error::Read {
        what: "workloads",
        source,
    };
    let sts = desired.statefulset.name_any();
    if ctx.statefulsets.get(&ObjectRef::new(&sts).within(&ns)).is_none() {
        let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
        if api.get_metadata_opt(&sts).await.map_err(read)?.is_none() {
            return Ok(true);
        }
    }
    for d in &desired.verifiers {
        let name = d.name_any();
        if ctx.deployments.get(&ObjectRef::new(&name).within(&ns)).is_none() {
            let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
            if api.get_metadata_opt(&name).await.map_err(read)?.is_none() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Apply the desired children with server-side apply, only when they changed or went missing.
async fn apply_workloads(
    ctx: &Context,
    rollup: &FlashRollup,
    assigned: &Assigned,
    status: &mut FlashRollupStatus,
) -> Result<()> {
    let ns = rollup.namespace().unwrap_or_default();
    let id = rollup_id(
        &ns,
        &rollup.name_any(),
        rollup.metadata.uid.as_deref().unwrap_or_default(),
    );
    let verifiers = assigned
        .status
        .iter()
        .zip(&assigned.specs)
        .map(|(a, s)| Verifier {
            assigned: a,
            spec: s.as_ref().map(|o| &o.spec),
        })
        .collect();
    let desired = Desired::build(&Inputs {
        rollup,
        verifiers,
        rollup_id: id.to_string(),
    });
    let hash = desired.hash();
    if status.applied_hash.as_deref() == Some(hash.as_str()) && !workload_missing(ctx, rollup, &desired).await? {
        return Ok(());
    }

    ensure_admin_secret(ctx, rollup).await?;
    apply(ctx, &ns, &desired.config_map).await?;
    apply(ctx, &ns, &desired.headless_service).await?;
    apply(ctx, &ns, &desired.client_service).await?;
    for np in &desired.network_policies {
        apply(ctx, &ns, np).await?;
    }
    apply(ctx, &ns, &desired.pdb).await?;
    apply(ctx, &ns, &desired.statefulset).await?;
    for d in &desired.verifiers {
        apply(ctx, &ns, d).await?;
    }
    prune_verifiers(ctx, rollup, &desired).await?;

    status.applied_hash = Some(hash);
    status.rpc_endpoint = Some(format!(
        "http://{}.{ns}.svc:{}",
        builders::child_name(rollup, component::RPC),
        builders::RPC_PORT
    ));
    Ok(())
}

async fn apply<K>(ctx: &Context, ns: &str, object: &K) -> Result<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object))
        .await
        .map_err(|source| Error::Apply {
            what: format!("{} {name}", K::kind(&())),
            source,
        })?;
    Ok(())
}

/// Verifiers of operators no longer assigned (replaced) go away.
fn stale_verifiers(ctx: &Context, rollup: &FlashRollup, desired: &Desired) -> Vec<String> {
    of_rollup(&ctx.deployments, rollup)
        .iter()
        .filter(|d| d.metadata.deletion_timestamp.is_none())
        .filter(|d| d.labels().get(builders::LABEL_COMPONENT).map(String::as_str) == Some(component::VERIFIER))
        .map(|d| d.name_any())
        .filter(|n| desired.verifiers.iter().all(|v| v.metadata.name.as_deref() != Some(n)))
        .collect()
}

async fn prune_verifiers(ctx: &Context, rollup: &FlashRollup, desired: &Desired) -> Result<()> {
    let ns = rollup.namespace().unwrap_or_default();
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    for name in stale_verifiers(ctx, rollup, desired) {
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(Error::Delete {
                    what: format!("Deployment {name}"),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// The admin token is generated once; an existing Secret is never touched, so the token never
/// changes under a running node.
async fn ensure_admin_secret(ctx: &Context, rollup: &FlashRollup) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &rollup.namespace().unwrap_or_default());
    let name = builders::admin_secret_name(rollup);
    if api
        .get_metadata_opt(&name)
        .await
        .map_err(|source| Error::Read {
            what: "admin secret",
            source,
        })?
        .is_some()
    {
        return Ok(());
    }
    let mut token = [0u8; 32];
    rand::rng().fill_bytes(&mut token);
    let secret = builders::admin_secret(rollup, hex::encode(token));
    match api
        .create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PostParams::default()
            },
            &secret,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(source) => Err(Error::Apply {
            what: format!("Secret {name}"),
            source,
        }),
    }
}

/// Where the sequencer's admin API is: the override template (tests, out-of-cluster runs behind
/// a port-forward) or the first sequencer pod's own address.
async fn node_access(ctx: &Context, rollup: &FlashRollup) -> Result<NodeAccess> {
    let ns = rollup.namespace().unwrap_or_default();
    let base = match &ctx.config.node_endpoint {
        Some(template) => template
            .replace("{namespace}", &ns)
            .replace("{name}", &rollup.name_any()),
        None => {
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
            let pod = format!("{}-0", builders::child_name(rollup, component::SEQUENCER));
            let ip = pods
                .get_opt(&pod)
                .await
                .map_err(|source| Error::Read {
                    what: "sequencer pod",
                    source,
                })?
                .and_then(|p| p.status.and_then(|s| s.pod_ip))
                .ok_or_else(|| {
                    Error::Node(crate::settlement::node::NodeError::Unreachable(format!(
                        "pod {pod} has no IP"
                    )))
                })?;
            let host = if ip.contains(':') { format!("[{ip}]") } else { ip };
            format!("http://{host}:{ADMIN_PORT}")
        }
    };
    Ok(NodeAccess {
        base,
        token: admin_token(ctx, rollup).await?,
    })
}

async fn admin_token(ctx: &Context, rollup: &FlashRollup) -> Result<String> {
    let uid = rollup.metadata.uid.clone().unwrap_or_default();
    if let Some(t) = ctx.tokens.lock().await.get(&uid) {
        return Ok(t.clone());
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &rollup.namespace().unwrap_or_default());
    let name = builders::admin_secret_name(rollup);
    let secret = api.get_opt(&name).await.map_err(|source| Error::Read {
        what: "admin secret",
        source,
    })?;
    let token = secret
        .and_then(|s| s.data)
        .and_then(|d| {
            d.get(ADMIN_TOKEN_KEY)
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        })
        .ok_or_else(|| Error::Node(crate::settlement::node::NodeError::Unauthorized))?;
    ctx.tokens.lock().await.insert(uid, token.clone());
    Ok(token)
}

/// `status.settlement`, created with the rollup id on first use.
fn settlement_record<'a>(rollup: &FlashRollup, status: &'a mut FlashRollupStatus) -> &'a mut SettlementStatus {
    let s = status.settlement.get_or_insert_default();
    if s.rollup_id.is_none() {
        let ns = rollup.namespace().unwrap_or_default();
        let id = rollup_id(
            &ns,
            &rollup.name_any(),
            rollup.metadata.uid.as_deref().unwrap_or_default(),
        );
        s.rollup_id = Some(id.to_string());
    }
    s
}

/// Register the assigned set on the L1 (or follow the registration under way): `Ok(None)`
/// once registered, else when to look again.
async fn run_registration(
    ctx: &Context,
    rollup: &FlashRollup,
    assigned: &Assigned,
    status: &mut FlashRollupStatus,
) -> Result<Option<Duration>> {
    let set = register::operator_set(rollup, &assigned.status, &assigned.specs);
    let s = settlement_record(rollup, status);
    let out = register::register(ctx, rollup, &assigned.status, &set, s).await?;
    s.failed_attempts = 0;
    s.next_attempt_at = None;
    if out.is_none() {
        tracing::info!(rollup = %rollup.name_any(), namespace = ?rollup.namespace(), tx = ?s.registered_tx, "operator set registered on the L1");
    }
    Ok(out)
}

/// Run settlement steps back to back until one has to wait.
async fn run_settlement(
    ctx: &Context,
    rollup: &FlashRollup,
    status: &mut FlashRollupStatus,
    extra: &mut Vec<Cond>,
) -> Result<Duration> {
    let s = settlement_record(rollup, status);
    let node = node_access(ctx, rollup).await?;
    for _ in 0..8 {
        let before = s.step;
        let wait = settle::step(ctx, rollup, &node, s).await?;
        s.failed_attempts = 0;
        s.next_attempt_at = None;
        if s.step == SettlementStep::Done {
            extra.push(Cond {
                type_: conditions::SETTLING,
                status: false,
                reason: reason::SETTLED,
                message: format!(
                    "settled in L1 transaction {}",
                    s.tx_hash.as_deref().unwrap_or("(recorded earlier)")
                ),
            });
            return Ok(Duration::ZERO);
        }
        if s.step == before || wait > Duration::ZERO {
            return Ok(wait);
        }
    }
    Ok(Duration::ZERO)
}

/// Height, finalized height and verifier alerts from the running sequencer. Best effort: an
/// unreachable node leaves the last known values.
async fn refresh_from_node(ctx: &Context, rollup: &FlashRollup, status: &mut FlashRollupStatus, extra: &mut Vec<Cond>) {
    let node = match node_access(ctx, rollup).await {
        Ok(n) => n,
        Err(e) => {
            tracing::debug!(rollup = %rollup.name_any(), error = %e, "node not reachable for status");
            return;
        }
    };
    match ctx.node.status(&node.base, &node.token).await {
        Ok(s) => {
            status.height = Some(s.height);
            status.finalized_height = Some(s.finalized_height);
            extra.push(if s.alerts > 0 {
                Cond {
                    type_: conditions::DEGRADED,
                    status: true,
                    reason: reason::VERIFIER_ALERT,
                    message: format!("verifiers raised {} state-root alerts; see /admin/v1/alerts", s.alerts),
                }
            } else {
                Cond {
                    type_: conditions::DEGRADED,
                    status: false,
                    reason: reason::HEALTHY,
                    message: "no verifier alerts".into(),
                }
            });
        }
        Err(e) => {
            tracing::debug!(rollup = %rollup.name_any(), error = %e, "node status unavailable")
        }
    }
}

fn finish_status(status: &mut FlashRollupStatus, d: &Decision, extra: &[Cond], rollup: &FlashRollup, now: Timestamp) {
    status.phase = Some(d.phase);
    status.observed_generation = rollup.metadata.generation;
    status.running_since = d.running_since.map(Time);
    status.expires_at = d.expires_at.map(Time);
    status.ended_at = d.ended_at.map(Time);
    // The sealed block is the chain's last: from then on it is the height, and once the quorum
    // has certified it (every step after AwaitingCertificate), the finalized height too.
    if let Some(s) = &status.settlement
        && let Some(last) = s.final_height
    {
        status.height = Some(last);
        if !matches!(s.step, SettlementStep::Sealing | SettlementStep::AwaitingCertificate) {
            status.finalized_height = Some(last);
        }
    }
    let mut wanted = d.conditions.clone();
    wanted.extend_from_slice(extra);
    status.conditions = merge_conditions(&status.conditions, &wanted, rollup.metadata.generation, now);
}

/// Apply the status, and remember it until the cache has it: the next reconciliation or lane
/// write must start from it, not from an older copy.
async fn patch_status(ctx: &Context, rollup: &FlashRollup, status: &FlashRollupStatus) -> Result<()> {
    patch_status_via(ctx, &ctx.client, rollup, status).await
}

async fn patch_status_via(
    ctx: &Context,
    client: &Client,
    rollup: &FlashRollup,
    status: &FlashRollupStatus,
) -> Result<()> {
    let mut now_held = super::status::apply_status(client, rollup, status).await?;
    super::caches::trim_rollup(&mut now_held);
    ctx.turns.wrote(rollup, now_held);
    Ok(())
}

/// Events (through `events`) and metrics for what changed in this reconciliation.
async fn observe_transition(
    ctx: &Context,
    events: &Publisher,
    rollup: &FlashRollup,
    old: &FlashRollupStatus,
    new: &FlashRollupStatus,
    d: &Decision,
    now: Timestamp,
) {
    let (from, to) = (old.phase.unwrap_or_default(), new.phase.unwrap_or_default());
    ctx.metrics.observe_rollup(rollup, old, new);
    // Observed once, on the reconciliation that noticed the expiry.
    if d.end_reason == Some(reason::EXPIRED)
        && old.ended_at.is_none()
        && let Some(expires) = &old.expires_at
    {
        let lag = now.duration_since(expires.0).as_secs_f64().max(0.0);
        ctx.metrics.ttl_lag.observe(lag);
    }
    let settled_now = old.settlement.as_ref().map(|s| s.step) != Some(SettlementStep::Done)
        && new.settlement.as_ref().map(|s| s.step) == Some(SettlementStep::Done);
    if settled_now && let (Some(ended), Some(s)) = (&new.ended_at, &new.settlement) {
        ctx.metrics
            .settlement_duration
            .observe(now.duration_since(ended.0).as_secs_f64().max(0.0));
        let note = format!(
            "final block {} with state root {} settled in L1 transaction {}",
            s.final_height.unwrap_or_default(),
            s.state_root.as_deref().unwrap_or("?"),
            s.tx_hash.as_deref().unwrap_or("?")
        );
        publish(events, rollup, Kind::Normal, reason::SETTLED, note).await;
    }
    if from == to && old.phase.is_some() {
        return;
    }
    ctx.metrics.phase_transition(from, to);
    let note = new
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::READY)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let kind = if to == Phase::Failed {
        Kind::Warning
    } else {
        Kind::Normal
    };
    let why = d.end_reason.map(|r| format!(" ({r})")).unwrap_or_default();
    publish(
        events,
        rollup,
        kind,
        to.as_str(),
        format!("{from} -> {to}{why}: {note}"),
    )
    .await;
}

async fn publish(events: &Publisher, rollup: &FlashRollup, kind: Kind, reason: &str, note: String) {
    if let Err(e) = events.publish(&rollup.object_ref(&()), kind, reason, &note).await {
        tracing::warn!(error = %e, "publishing event failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_up_never_lands_before_the_instant() {
        let now: Timestamp = "2026-11-21T10:00:00Z".parse().expect("time");
        let at = now + jiff::SignedDuration::from_nanos(1_500_001);
        assert_eq!(until(now, at), Duration::from_millis(2));
        assert_eq!(
            until(now, now + jiff::SignedDuration::from_secs(60)),
            Duration::from_secs(60)
        );
        assert_eq!(until(at, now), Duration::ZERO, "an instant in the past means now");
    }

    #[test]
    fn a_dragging_teardown_is_counted_less_often() {
        let ended: Timestamp = "2026-11-21T10:00:00Z".parse().expect("time");
        let at = |secs: i64| teardown_poll(ended + jiff::SignedDuration::from_secs(secs), Some(ended));
        assert_eq!(at(0), Duration::from_secs(1));
        assert_eq!(at(4), Duration::from_secs(1));
        assert_eq!(at(20), Duration::from_secs(5));
        assert_eq!(at(600), Duration::from_secs(10));
        assert_eq!(at(-5), Duration::from_secs(1), "a clock step back");
        assert_eq!(teardown_poll(ended, None), Duration::from_secs(1), "no end recorded");
    }

    #[test]
    fn a_sealed_chain_reports_its_final_block_as_its_height() {
        let now: Timestamp = "2026-11-21T10:00:00Z".parse().expect("time");
        let rollup: FlashRollup = serde_yaml::from_str(
            "apiVersion: rollups.flashlayer.dev/v1alpha1\nkind: FlashRollup\nmetadata: { name: mint, namespace: games }\nspec:\n  ttl: 1h\n  chain: { chainId: 901337 }\n  verification: { minOperators: 1 }\n  settlement: { policy: Discard }\n",
        )
        .expect("rollup");
        let decision = Decision {
            phase: Phase::Settling,
            actions: Vec::new(),
            wake_at: None,
            conditions: Vec::new(),
            running_since: None,
            expires_at: None,
            ended_at: Some(now),
            end_reason: None,
        };
        // Polled at 41 and 40 while it ran; sealed at 42.
        let mut status = FlashRollupStatus {
            height: Some(41),
            finalized_height: Some(40),
            settlement: Some(SettlementStatus {
                step: SettlementStep::AwaitingCertificate,
                final_height: Some(42),
                ..SettlementStatus::default()
            }),
            ..FlashRollupStatus::default()
        };
        finish_status(&mut status, &decision, &[], &rollup, now);
        assert_eq!(
            (status.height, status.finalized_height),
            (Some(42), Some(40)),
            "sealed, not certified"
        );
        if let Some(s) = status.settlement.as_mut() {
            s.step = SettlementStep::Submitting;
        }
        finish_status(&mut status, &decision, &[], &rollup, now);
        assert_eq!(
            (status.height, status.finalized_height),
            (Some(42), Some(42)),
            "certified"
        );
    }

    #[test]
    fn failures_back_off_and_the_wait_survives_a_status_write() {
        let now: Timestamp = "2026-11-21T10:00:00Z".parse().expect("time");
        let mut status = FlashRollupStatus::default();
        assert_eq!(retry_wait(&status, now), None, "nothing failed");
        let s = status.settlement.get_or_insert_default();
        let delays: Vec<u64> = (0..8).map(|_| record_failure(s, now).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 64, 64, 64]);
        // The next reconciliation (woken by this very status write) waits for the instant.
        assert_eq!(retry_wait(&status, now), Some(Duration::from_secs(64)));
        let later = now + jiff::SignedDuration::from_secs(60);
        assert_eq!(retry_wait(&status, later), Some(Duration::from_secs(4)));
        assert_eq!(retry_wait(&status, now + jiff::SignedDuration::from_secs(64)), None);
        // A success clears the count: no wait, whatever the instant says.
        if let Some(s) = status.settlement.as_mut() {
            s.failed_attempts = 0;
        }
        assert_eq!(retry_wait(&status, now), None);
    }
}
