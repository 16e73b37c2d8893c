//! The lifecycle of Discard rollups: expiry, early deletion, a TTL extension and settle-now.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flashlayer_e2e::manifests::{EXAMPLE_OPERATORS, Rollup};
use flashlayer_e2e::objects::{self, assigned_operators, condition_state, finalizers, time_at};
use flashlayer_e2e::scenario::describe;
use flashlayer_e2e::scenario::{MANAGED_BY, ROLLUP_LABEL};
use flashlayer_e2e::wait::within;
use flashlayer_e2e::{Check, Scenario, log, until};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

/// Wait until each example operator's `status.assignedCount` is what `rollups` (rollup name ->
/// its assigned operators) implies, with `status.assignedRollups` naming them.
async fn wait_assigned_counts(s: &Scenario, rollups: &[(&str, Vec<String>)]) {
    until(
        "AVSOperator assignedCount to match the assignments",
        Duration::from_secs(10),
        || async {
            let mut wrong = Vec::new();
            for op in EXAMPLE_OPERATORS {
                let want: Vec<String> = rollups
                    .iter()
                    .filter(|(_, ops)| ops.iter().any(|o| o == op))
                    .map(|(r, _)| format!("{}/{r}", s.ns))
                    .collect();
                let o = s.avs_operator(op).await.expect("the operator exists");
                let count = objects::u64_at(&o, "/status/assignedCount").unwrap_or(0);
                let listed: Vec<String> = o
                    .pointer("/status/assignedRollups")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                if count != want.len() as u64 || listed != want {
                    wrong.push(format!("{op}: count {count} rollups {listed:?}, want {want:?}"));
                }
            }
            if wrong.is_empty() {
                Check::Done(())
            } else {
                Check::Waiting(wrong.join("; "))
            }
        },
    )
    .await;
}

/// Scenario with the example operators Ready and an operator leading.
async fn ready_scenario(name: &str) -> Scenario {
    let mut s = Scenario::new(name).await;
    s.apply_example_operators(None).await;
    s.start_leader(&format!("e2e-{name}")).await;
    s.wait_operators_ready().await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make e2e"]
async fn discard_lifecycle() {
    let s = ready_scenario("discard").await;
    let name = "devnet";
    let rollup = Rollup::new(name).min_operators(2).expires_in(Duration::from_secs(20));
    let expires_at = rollup.expires_at().expect("an absolute expiry");
    let phases = s.record_phases(name);
    let t0 = Instant::now();
    s.apply_ok(&rollup.yaml());

    let running = s.wait_phase(name, "Running", Duration::from_secs(20)).await;
    log(format!("Running {:.1}s after apply", t0.elapsed().as_secs_f64()));
    assert_eq!(
        time_at(&running, "/status/expiresAt"),
        Some(expires_at),
        "status.expiresAt"
    );
    assert!(
        time_at(&running, "/status/runningSince").is_some(),
        "status.runningSince is set"
    );
    let uid = running["metadata"]["uid"].as_str().expect("a uid").to_owned();
    let assigned = assigned_operators(&running);
    assert_eq!(assigned.len(), 2, "two operators assigned: {assigned:?}");

    // Every child: owned by the rollup (as its controller) and labelled.
    let children = s.children(name).await;
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for (kind, o) in &children {
        *by_kind.entry(kind).or_default() += 1;
        let child = format!("{kind}/{}", o["metadata"]["name"].as_str().unwrap_or("?"));
        let labels = &o["metadata"]["labels"];
        assert_eq!(labels[ROLLUP_LABEL], name, "{child}: label {ROLLUP_LABEL}");
        assert_eq!(labels[MANAGED_BY.0], MANAGED_BY.1, "{child}: label {}", MANAGED_BY.0);
        if matches!(*kind, "Pod" | "ReplicaSet" | "PersistentVolumeClaim") {
            continue; // owned by their workloads
        }
        let owners = o["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
        assert!(
            owners.iter().any(|r| r["kind"] == "FlashRollup"
                && r["name"] == name
                && r["uid"] == uid.as_str()
                && r["controller"] == true),
            "{child}: no controller ownerReference to the FlashRollup: {owners:?}"
        );
    }
    let want = [
        ("StatefulSet", 1),
        ("Deployment", 2),
        ("Service", 2),
        ("ConfigMap", 1),
        ("Secret", 1),
        ("NetworkPolicy", 2),
        ("PodDisruptionBudget", 1),
        ("Pod", 3),
    ];
    for (kind, n) in want {
        assert_eq!(
            by_kind.get(kind).copied().unwrap_or(0),
            n,
            "{kind} children: {by_kind:?}"
        );
    }
    let secret = s.admin_secret(name).await.expect("the admin Secret devnet-admin");
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["uid"],
        uid.as_str(),
        "admin Secret owner"
    );
    // Pods admitted under Pod Security "restricted", and running (on kwok nodes).
    for (_, pod) in children.iter().filter(|(k, _)| *k == "Pod") {
        assert_eq!(pod["status"]["phase"], "Running", "pod {}", pod["metadata"]["name"]);
    }
    log(format!("children while Running: {by_kind:?}"));
    wait_assigned_counts(&s, &[(name, assigned.clone())]).await;

    // Expiry: Running -> TornDown, at expiresAt.
    let torn = s.wait_phase(name, "TornDown", Duration::from_secs(40)).await;
    let total = t0.elapsed();
    let now = Timestamp::now();
    log(format!(
        "TornDown {:.1}s after apply, {:.1}s after expiresAt",
        total.as_secs_f64(),
        now.duration_since(expires_at).as_secs_f64()
    ));
    assert!(total < Duration::from_secs(60), "the whole life took {total:?}");
    let ended = time_at(&torn, "/status/endedAt").expect("status.endedAt");
    assert!(ended >= expires_at, "ended at {ended}, before expiresAt {expires_at}");
    assert!(
        ended.duration_since(expires_at) < SignedDuration::from_secs(3),
        "ended at {ended}, late for expiresAt {expires_at}"
    );
    assert!(
        now.duration_since(expires_at) < SignedDuration::from_secs(15),
        "TornDown late"
    );
    assert_eq!(
        condition_state(&torn, "Settled"),
        Some(("False".into(), "Discarded".into())),
        "Settled condition"
    );

    // Nothing left; the FlashRollup stays (teardown Retain), without the finalizer.
    s.assert_nothing_left(name).await;
    let kept = s.rollup(name).await.expect("the FlashRollup is retained");
    assert_eq!(objects::phase(&kept), "TornDown");
    assert!(finalizers(&kept).is_empty(), "finalizers left: {:?}", finalizers(&kept));
    wait_assigned_counts(&s, &[]).await;

    // Events tell the story.
    let events = s.events(name).await;
    let reasons: Vec<&str> = events.iter().map(|(r, _)| r.as_str()).collect();
    for want in ["Running", "TornDown"] {
        assert!(reasons.contains(&want), "no {want} event: {events:?}");
    }
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "TornDown" && m.contains("Running -> TornDown (Expired)")),
        "no 'Running -> TornDown (Expired)' event: {events:?}"
    );

    // The watch saw Pending/Provisioning, Running, TornDown, in that order.
    let seen = phases.phases();
    log(format!("phases seen: {seen:?}"));
    let running_at = seen.iter().position(|p| p == "Running").expect("Running was seen");
    assert!(
        seen[..running_at]
            .iter()
            .all(|p| matches!(p.as_str(), "" | "Pending" | "Provisioning")),
        "phases before Running: {seen:?}"
    );
    assert_eq!(
        &seen[running_at..],
        ["Running", "TornDown"],
        "phases from Running: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make e2e"]
async fn early_delete() {
    let s = ready_scenario("early-delete").await;
    let name = "early";
    s.apply_ok(&Rollup::new(name).ttl("10m").yaml());
    let running = s.wait_phase(name, "Running", Duration::from_secs(20)).await;
    assert!(!s.children(name).await.is_empty(), "children exist while Running");
    wait_assigned_counts(&s, &[(name, assigned_operators(&running))]).await;

    let t0 = Instant::now();
    let out = s.kubectl(&["delete", "flashrollup", name, "--timeout=60s"], None);
    assert!(out.success, "kubectl delete: {}{}", out.stdout, out.stderr);
    log(format!(
        "kubectl delete returned after {:.1}s",
        t0.elapsed().as_secs_f64()
    ));
    assert!(s.rollup(name).await.is_none(), "the FlashRollup is gone");
    s.assert_nothing_left(name).await;
    wait_assigned_counts(&s, &[]).await;
    let events = s.events(name).await;
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "TornDown" && m.contains("(DeletionRequested)")),
        "no TornDown (DeletionRequested) event: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make e2e"]
async fn ttl_extension() {
    let s = ready_scenario("ttl").await;
    let name = "extend";
    s.apply_ok(&Rollup::new(name).ttl("2m").yaml());
    let running = s.wait_phase(name, "Running", Duration::from_secs(20)).await;
    let since = time_at(&running, "/status/runningSince").expect("status.runningSince");
    let first = time_at(&running, "/status/expiresAt").expect("status.expiresAt");
    assert_eq!(
        first,
        since + SignedDuration::from_mins(2),
        "expiresAt = runningSince + 2m"
    );

    s.patch_rollup(name, serde_json::json!({"spec": {"ttl": "5m"}})).await;
    let want = since + SignedDuration::from_mins(5);
    let extended = s
        .wait_rollup(name, &format!("expiresAt {want}"), Duration::from_secs(10), |r| {
            time_at(r, "/status/expiresAt") == Some(want)
        })
        .await;
    assert_eq!(
        time_at(&extended, "/status/expiresAt").map(|t| t.duration_since(first)),
        Some(SignedDuration::from_mins(3)),
        "expiresAt moved by 3m"
    );
    assert_eq!(
        objects::phase(&extended),
        "Running",
        "still Running after the extension"
    );
    assert_eq!(
        condition_state(&extended, "TTLAccepted").map(|(st, _)| st),
        Some("True".into()),
        "TTLAccepted"
    );

    // settle-now ends it at once (Discard: straight to teardown).
    let t0 = Instant::now();
    s.settle_now(name);
    let torn = s.wait_phase(name, "TornDown", Duration::from_secs(15)).await;
    log(format!("TornDown {:.1}s after settle-now", t0.elapsed().as_secs_f64()));
    let ended = time_at(&torn, "/status/endedAt").expect("status.endedAt");
    assert!(ended < want, "ended at {ended}, not before expiresAt {want}");
    s.assert_nothing_left(name).await;
    let events = s.events(name).await;
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "TornDown" && m.contains("(SettleRequested)")),
        "no TornDown (SettleRequested) event: {events:?}"
    );
}

/// Once the life of a rollup has ended, nothing brings it back: not withdrawing settle-now, not
/// a longer ttl, even while the teardown is still under way (held here by a finalizer of ours on
/// one child, as a slow pod shutdown or a stuck volume would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make e2e"]
async fn end_of_life_is_final() {
    let s = ready_scenario("final").await;
    let name = "final";
    s.apply_ok(&Rollup::new(name).ttl("10m").yaml());
    s.wait_phase(name, "Running", Duration::from_secs(20)).await;
    let hold = |finalizers: &str| {
        let patch = format!(r#"{{"metadata":{{"finalizers":{finalizers}}}}}"#);
        let out = s.kubectl(
            &[
                "patch",
                "configmap",
                &format!("{name}-chain"),
                "--type=merge",
                "-p",
                &patch,
            ],
            None,
        );
        assert!(out.success, "patching the ConfigMap's finalizers: {}", out.stderr);
    };
    hold(r#"["e2e.flashlayer.dev/hold"]"#);

    s.settle_now(name);
    s.wait_rollup(name, "teardown under way", Duration::from_secs(15), |r| {
        condition_state(r, "Ready").map(|(_, reason)| reason) == Some("TearingDown".into())
    })
    .await;
    until("the workloads to be deleted", Duration::from_secs(15), || async {
        let workloads = workloads(&s, name).await;
        if workloads.is_empty() {
            Check::Done(())
        } else {
            Check::Waiting(format!("{workloads:?}"))
        }
    })
    .await;
    let ended = time_at(&s.rollup(name).await.expect("exists"), "/status/endedAt").expect("status.endedAt");

    // Second thoughts, too late: withdraw settle-now and ask for a longer life.
    let out = s.kubectl(
        &["annotate", "flashrollup", name, "rollups.flashlayer.dev/settle-now-"],
        None,
    );
    assert!(out.success, "kubectl annotate: {}", out.stderr);
    s.patch_rollup(name, serde_json::json!({"spec": {"ttl": "20m"}})).await;
    let mut problems = Vec::new();
    let reopened = within(
        "workloads to come back (they must not)",
        Duration::from_secs(3),
        || async {
            let workloads = workloads(&s, name).await;
            if workloads.is_empty() {
                Check::Waiting("none".into())
            } else {
                Check::Done(workloads)
            }
        },
    )
    .await;
    if let Ok(workloads) = reopened {
        problems.push(format!(
            "the ended rollup was reopened: {workloads:?} were created again"
        ));
    }
    let r = s.rollup(name).await.expect("exists");
    if time_at(&r, "/status/endedAt") != Some(ended) {
        problems.push(format!(
            "status.endedAt moved from {ended} to {:?}",
            time_at(&r, "/status/endedAt")
        ));
    }

    // Let the teardown finish: TornDown, nothing left.
    hold("null");
    let timeout = Duration::from_secs(if problems.is_empty() { 20 } else { 5 });
    let torn = within("TornDown once the hold is gone", timeout, || async {
        let r = s.rollup(name).await.expect("exists");
        if objects::phase(&r) == "TornDown" {
            Check::Done(())
        } else {
            Check::Waiting(describe(&r))
        }
    })
    .await;
    match torn {
        Ok(()) => {
            let left = s.leftovers(name).await;
            if !left.is_empty() {
                problems.push(format!("objects left behind after TornDown: {left:?}"));
            }
        }
        Err(e) => problems.push(e),
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// StatefulSets and Deployments of the rollup that are not being deleted.
async fn workloads(s: &Scenario, rollup: &str) -> Vec<String> {
    s.children(rollup)
        .await
        .into_iter()
        .filter(|(kind, o)| {
            matches!(*kind, "StatefulSet" | "Deployment") && o["metadata"]["deletionTimestamp"].is_null()
        })
        .map(|(kind, o)| format!("{kind}/{}", o["metadata"]["name"].as_str().unwrap_or("?")))
        .collect()
}
