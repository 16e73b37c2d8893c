//! The expiry lane: a rollup's end of life is recorded at its `expiresAt`, not when a worker
//! of the controller comes free. When a thousand rollups tear down together the workers queue
//! behind the API server, and an end recorded there lands seconds to minutes late.
//!
//! The lane keeps one timer per rollup that has an `expiresAt` and no end yet (from a trigger
//! that hears only of those fields changing). When one fires, it takes the rollup's turn, runs
//! the same pure decision as the controller over the same caches, and writes the end (phase,
//! `endedAt`, conditions) and its Event; the status write then wakes the controller, which does
//! the rest (settle, tear down). The controller keeps its own wake-up at expiry: if the lane
//! fails, the end is only as late as before.
//!
//! Two writers of one status need two rules, kept by [`Turns`]: one acts on a rollup at a time
//! (a reconciliation and the lane's write never overlap), and each reads what the other wrote
//! even before the watch brings it (a status apply computed from the older copy would take the
//! end back: the field manager is the same).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use jiff::Timestamp;
use kube::Client;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::{OwnedMutexGuard, Semaphore};
use tokio::task::AbortHandle;

use super::caches::Changes;
use super::{Context, REPORTER, events, rollup};
use crate::api::FlashRollup;
use crate::api::flashrollup::Phase;

/// Ends the lane records at once, at most. A thousand rollups may share one `expiresAt` (one
/// manifest applied at once): unbounded, their thousand half-made writes took 42 MiB at that
/// instant, most of them waiting for a connection. The others wait as sleeping timers do.
const AT_ONCE: usize = 8;

/// What the lane writes with: a client and an Event publisher of its own, so that its writes
/// never queue behind the controller's requests (a thousand teardowns' worth at times), and
/// [`AT_ONCE`] slots, which also bound its requests in flight.
pub struct Lane {
    pub client: Client,
    pub events: events::Publisher,
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("free_slots", &self.slots.available_permits())
            .finish_non_exhaustive()
    }
}

impl Lane {
    pub fn new(client: Client, identity: &str) -> Self {
        Self {
            events: events::Publisher::new(client.clone(), REPORTER, identity),
            client,
            slots: Arc::new(Semaphore::new(AT_ONCE)),
        }
    }
}

/// A status this process wrote, with the versions of the object it replaces.
#[derive(Debug)]
struct Written {
    /// Versions older than `object`: a cache still holding one of them has not seen the write.
    stale: Vec<String>,
    object: Arc<FlashRollup>,
}

/// One actor per rollup at a time, and read-your-writes for its status (both by UID).
#[derive(Debug, Default)]
pub struct Turns {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    written: Mutex<HashMap<String, Written>>,
}

/// Versions kept per write: a rollup's status is written a few times per reconciliation at most.
const STALE_KEPT: usize = 8;

impl Turns {
    /// Wait until nobody else acts on this rollup; the turn lasts as long as the guard.
    pub async fn take(&self, rollup: &FlashRollup) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            locks.entry(uid(rollup)).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// The newest copy known: the cache's, or the one this process wrote if the cache has not
    /// caught up with it yet.
    pub fn freshest(&self, view: Arc<FlashRollup>) -> Arc<FlashRollup> {
        let mut written = self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = uid(&view);
        let Some(w) = written.get(&key) else {
            return view;
        };
        if view.resource_version().is_some_and(|v| w.stale.contains(&v)) {
            return w.object.clone();
        }
        // The cache holds the write or something newer (a spec change): it is the truth again.
        written.remove(&key);
        view
    }

    /// `view` was read, and its status write returned `now_held`.
    pub fn wrote(&self, view: &FlashRollup, now_held: FlashRollup) {
        let mut written = self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = uid(view);
        let mut stale = written
            .remove(&key)
            .map(|w| {
                let mut s = w.stale;
                s.extend(w.object.resource_version());
                s
            })
            .unwrap_or_default();
        stale.extend(view.resource_version());
        stale.retain(|v| Some(v) != now_held.metadata.resource_version.as_ref());
        let skip = stale.len().saturating_sub(STALE_KEPT);
        stale.drain(..skip);
        written.insert(
            key,
            Written {
                stale,
                object: Arc::new(now_held),
            },
        );
    }

    /// The rollup is gone: nothing more to order.
    pub fn forget(&self, rollup: &FlashRollup) {
        let key = uid(rollup);
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&key);
        self.locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&key);
    }
}

fn uid(rollup: &FlashRollup) -> String {
    rollup.metadata.uid.clone().unwrap_or_default()
}

/// When the lane must record this rollup's end: at its `expiresAt`, while it still runs (or is
/// on its way to running) and nothing ended it yet.
pub fn due(rollup: &FlashRollup) -> Option<Timestamp> {
    if rollup.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = rollup.status.as_ref()?;
    if status.ended_at.is_some() {
        return None;
    }
    match status.phase {
        Some(Phase::Pending | Phase::Provisioning | Phase::Running) => status.expires_at.as_ref().map(|t| t.0),
        _ => None,
    }
}

/// Run the lane until the changes end (the watch task stops with the operator).
pub async fn run(ctx: Arc<Context>, mut changes: Changes<FlashRollup>) {
    let mut timers: HashMap<ObjectRef<FlashRollup>, (Timestamp, AbortHandle)> = HashMap::new();
    while let Some(changed) = changes.next().await {
        let key = ObjectRef::from_obj(&*changed);
        // The cache is updated before the change is sent: absent there means deleted.
        let live = ctx.rollups.get(&key);
        let at = live.as_deref().and_then(due);
        if let (Some(at), Some((set, _))) = (at, timers.get(&key))
            && *set == at
        {
            continue;
        }
        if let Some((_, timer)) = timers.remove(&key) {
            timer.abort();
        }
        match at {
            Some(at) => {
                let timer = tokio::spawn(fire_at(ctx.clone(), key.clone(), at));
                timers.insert(key, (at, timer.abort_handle()));
            }
            None if live.is_none() => ctx.turns.forget(&changed),
            None => {}
        }
    }
    for (_, (_, timer)) in timers {
        timer.abort();
    }
}

/// Sleep until `at`, wait for a slot, then record the end in a task of its own: a change that
/// arrives meanwhile aborts the wait, never a write under way.
async fn fire_at(ctx: Arc<Context>, key: ObjectRef<FlashRollup>, at: Timestamp) {
    tokio::time::sleep(rollup::until(Timestamp::now(), at)).await;
    let Ok(slot) = ctx.lane.slots.clone().acquire_owned().await else {
        return;
    };
    tokio::spawn(async move {
        let _slot = slot;
        ctx.caches_ready().await;
        let Some(view) = ctx.rollups.get(&key) else {
            return;
        };
        let _turn = ctx.turns.take(&view).await;
        // Read again under the turn: the controller may have just recorded the end itself.
        let Some(view) = ctx.rollups.get(&key) else {
            return;
        };
        let rollup = ctx.turns.freshest(view);
        if due(&rollup).is_none() {
            return;
        }
        if let Err(e) = rollup::record_expiry(&ctx, &rollup).await {
            // The controller's own wake-up at expiry records it instead.
            tracing::warn!(rollup = %rollup.name_any(), namespace = ?rollup.namespace(), error = %e, "recording an expiry failed; the controller will");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::flashrollup::FlashRollupStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn rollup(rv: &str, phase: Phase, expires: Option<&str>, ended: Option<&str>) -> FlashRollup {
        let mut r: FlashRollup = serde_json::from_value(serde_json::json!({
            "apiVersion": "rollups.flashlayer.dev/v1alpha1",
            "kind": "FlashRollup",
            "metadata": {"name": "r", "namespace": "ns", "uid": "u-1", "resourceVersion": rv},
            "spec": {
                "ttl": "10m",
                "chain": {"chainId": 901337},
                "verification": {"minOperators": 2, "quorumStakePercent": 67},
                "settlement": {"policy": "Discard"},
            },
        }))
        .expect("rollup");
        let time = |t: &str| Time(t.parse().expect("time"));
        r.status = Some(FlashRollupStatus {
            phase: Some(phase),
            expires_at: expires.map(time),
            ended_at: ended.map(time),
            ..FlashRollupStatus::default()
        });
        r
    }

    #[test]
    fn only_a_live_rollup_without_an_end_is_due() {
        let at = "2026-11-21T10:00:00Z";
        assert_eq!(
            due(&rollup("1", Phase::Running, Some(at), None)),
            Some(at.parse().expect("time"))
        );
        assert_eq!(
            due(&rollup("1", Phase::Running, Some(at), Some(at))),
            None,
            "ended already"
        );
        assert_eq!(due(&rollup("1", Phase::Running, None, None)), None, "no lifetime end");
        assert_eq!(due(&rollup("1", Phase::TornDown, Some(at), None)), None);
        assert_eq!(due(&rollup("1", Phase::Failed, Some(at), None)), None);
        let mut deleting = rollup("1", Phase::Running, Some(at), None);
        deleting.metadata.deletion_timestamp = Some(Time(at.parse().expect("time")));
        assert_eq!(due(&deleting), None, "the deletion ends it, in the controller");
    }

    #[test]
    fn a_write_is_read_back_until_the_cache_catches_up() {
        let turns = Turns::default();
        let at = "2026-11-21T10:00:00Z";
        let before = Arc::new(rollup("5", Phase::Running, Some(at), None));
        turns.wrote(&before, rollup("7", Phase::Settled, Some(at), Some(at)));
        // The cache still holds version 5: the write is what counts.
        let seen = turns.freshest(before.clone());
        assert_eq!(seen.resource_version().as_deref(), Some("7"));
        // A second write from the first one's result: both older versions are stale now.
        turns.wrote(&seen, rollup("9", Phase::Settled, Some(at), Some(at)));
        assert_eq!(turns.freshest(before.clone()).resource_version().as_deref(), Some("9"));
        assert_eq!(
            turns
                .freshest(Arc::new(rollup("7", Phase::Settled, Some(at), Some(at))))
                .resource_version()
                .as_deref(),
            Some("9")
        );
        // The cache caught up (or moved past, a spec change): it is the truth, and the record goes.
        let caught_up = Arc::new(rollup("9", Phase::Settled, Some(at), Some(at)));
        assert!(Arc::ptr_eq(&turns.freshest(caught_up.clone()), &caught_up));
        assert!(Arc::ptr_eq(&turns.freshest(before.clone()), &before), "record dropped");
    }

    #[tokio::test]
    async fn one_actor_per_rollup_at_a_time() {
        let turns = Arc::new(Turns::default());
        let r = rollup("1", Phase::Running, None, None);
        let held = turns.take(&r).await;
        let waiting = {
            let turns = turns.clone();
            let r = r.clone();
            tokio::spawn(async move { drop(turns.take(&r).await) })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the second actor waits for the first");
        drop(held);
        waiting.await.expect("second turn");
        // Another rollup is never held up by this one.
        let _held = turns.take(&r).await;
        let mut other = r.clone();
        other.metadata.uid = Some("u-2".into());
        tokio::time::timeout(std::time::Duration::from_secs(1), turns.take(&other))
            .await
            .expect("another rollup's turn is free");
    }
}
