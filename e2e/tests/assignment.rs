//! Assignment of AVS operators: capacity and selector bound it, a suspended operator is
//! replaced by a free one, and without a free one the quorum is reported lost.

use std::time::Duration;

use flashlayer_e2e::manifests::{EXAMPLE_OPERATORS, Rollup};
use flashlayer_e2e::objects::{self, assigned_operators, condition_state};
use flashlayer_e2e::scenario::describe;
use flashlayer_e2e::wait::{stays, within};
use flashlayer_e2e::{Check, Scenario, log, until};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::ListParams;
use serde_json::json;

/// The AVSOperators the rollup's verifier Deployments run for (their operator annotation).
async fn verifier_operators(s: &Scenario, rollup: &str) -> Vec<String> {
    let api: Api<Deployment> = Api::namespaced(s.client.clone(), &s.ns);
    let selector = format!("rollups.flashlayer.dev/rollup={rollup},app.kubernetes.io/component=verifier");
    let mut ops: Vec<String> = api
        .list(&ListParams::default().labels(&selector))
        .await
        .expect("listing verifier Deployments")
        .items
        .into_iter()
        .filter(|d| d.metadata.deletion_timestamp.is_none())
        .filter_map(|d| d.metadata.annotations?.get("rollups.flashlayer.dev/operator").cloned())
        .collect();
    ops.sort();
    ops
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn assigned_count(s: &Scenario, op: &str) -> u64 {
    let o = s.avs_operator(op).await.expect("the operator exists");
    objects::u64_at(&o, "/status/assignedCount").unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make e2e"]
async fn assignment() {
    let mut s = Scenario::new("assignment").await;
    // Three gold operators (stakes 100, 100, 50), each able to verify one rollup at a time.
    s.apply_example_operators(Some(1)).await;
    s.start_leader("e2e-assignment").await;
    s.wait_operators_ready().await;

    // The first rollup takes two of the three.
    s.apply_ok(&Rollup::new("first").yaml());
    let first = s.wait_phase("first", "Running", Duration::from_secs(20)).await;
    let taken = sorted(assigned_operators(&first));
    assert_eq!(
        taken,
        ["avs-gold-1", "avs-gold-2"],
        "the two largest stakes are assigned first"
    );
    let free = "avs-gold-3";

    // The second needs two more: only one is free, so it waits.
    s.apply_ok(&Rollup::new("second").yaml());
    // A selector that matches no operator waits too, even for one.
    s.apply_ok(&Rollup::new("nomatch").tier("platinum").min_operators(1).yaml());
    for name in ["second", "nomatch"] {
        s.wait_rollup(
            name,
            "QuorumMet=False WaitingForOperators",
            Duration::from_secs(10),
            |r| condition_state(r, "QuorumMet") == Some(("False".into(), "WaitingForOperators".into())),
        )
        .await;
    }
    stays(
        "second and nomatch to stay Pending with nothing assigned",
        Duration::from_secs(3),
        || async {
            for name in ["second", "nomatch"] {
                let r = s.rollup(name).await.expect("exists");
                if objects::phase(&r) != "Pending" || !assigned_operators(&r).is_empty() {
                    return Check::Waiting(format!("{name}: {}", describe(&r)));
                }
                if !s.children(name).await.is_empty() {
                    return Check::Waiting(format!("{name} has children"));
                }
            }
            Check::Done(())
        },
    )
    .await;
    assert_eq!(assigned_count(&s, free).await, 0, "{free} verifies nothing yet");

    // Suspend an assigned operator: the free one replaces it, and its verifier goes away.
    let suspended = "avs-gold-1";
    s.patch_avs_operator(suspended, json!({"spec": {"suspend": true}}))
        .await;
    let want = sorted(vec!["avs-gold-2".into(), free.into()]);
    let replaced = s
        .wait_rollup(
            "first",
            &format!("assignedOperators {want:?}"),
            Duration::from_secs(15),
            |r| sorted(assigned_operators(r)) == want,
        )
        .await;
    assert_eq!(
        objects::phase(&replaced),
        "Running",
        "still Running after the replacement"
    );
    until(
        "the verifiers to follow the assignment",
        Duration::from_secs(15),
        || async {
            let ops = verifier_operators(&s, "first").await;
            if ops == want {
                Check::Done(())
            } else {
                Check::Waiting(format!("verifiers for {ops:?}"))
            }
        },
    )
    .await;
    let events = s.events("first").await;
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "OperatorReplaced" && m.contains(suspended) && m.contains(free)),
        "no OperatorReplaced event naming {suspended} and {free}: {events:?}"
    );
    // Checked without stopping the scenario, so that one run reports every problem.
    let mut problems = Vec::new();
    let counts = within(
        "assignedCount to follow the replacement",
        Duration::from_secs(10),
        || async {
            let counts = [
                assigned_count(&s, suspended).await,
                assigned_count(&s, "avs-gold-2").await,
                assigned_count(&s, free).await,
            ];
            if counts == [0, 1, 1] {
                Check::Done(())
            } else {
                Check::Waiting(format!("counts (1,2,3) {counts:?}"))
            }
        },
    )
    .await;
    problems.extend(counts.err());
    let second = s.rollup("second").await.expect("exists");
    assert_eq!(
        objects::phase(&second),
        "Pending",
        "second still Pending: {}",
        describe(&second)
    );

    // Suspend another with no free operator left: it stays assigned, and the Ready stake (50 of
    // 150) is below the 67% quorum.
    s.patch_avs_operator("avs-gold-2", json!({"spec": {"suspend": true}}))
        .await;
    let lost = s
        .wait_rollup("first", "QuorumMet=False QuorumLost", Duration::from_secs(15), |r| {
            condition_state(r, "QuorumMet") == Some(("False".into(), "QuorumLost".into()))
        })
        .await;
    assert_eq!(
        sorted(assigned_operators(&lost)),
        want,
        "no replacement without a free operator"
    );
    log(format!("first: {}", describe(&lost)));

    // Resuming the first operator makes it free again: it takes the suspended one's place and
    // the quorum is back.
    s.patch_avs_operator(suspended, json!({"spec": {"suspend": false}}))
        .await;
    let resumed = sorted(vec![suspended.into(), free.into()]);
    let back = within(
        "first: a resumed operator to restore the quorum",
        Duration::from_secs(15),
        || async {
            let r = s.rollup("first").await.expect("exists");
            let met = condition_state(&r, "QuorumMet").map(|(st, _)| st) == Some("True".into());
            if met && sorted(assigned_operators(&r)) == resumed {
                Check::Done(())
            } else {
                Check::Waiting(describe(&r))
            }
        },
    )
    .await;
    problems.extend(back.err());

    // The end of "first" frees its operators: "second" gets two of them and runs.
    s.patch_rollup(
        "first",
        json!({"metadata": {"annotations": {"rollups.flashlayer.dev/settle-now": "true"}}}),
    )
    .await;
    s.wait_phase("first", "TornDown", Duration::from_secs(15)).await;
    let second = within(
        "second: Running on the freed operators",
        Duration::from_secs(20),
        || async {
            let r = s.rollup("second").await.expect("exists");
            match objects::phase(&r) {
                "Running" => Check::Done(r),
                _ => Check::Waiting(describe(&r)),
            }
        },
    )
    .await;
    match second {
        Ok(second) => assert_eq!(
            sorted(assigned_operators(&second)),
            resumed,
            "second takes the two Ready operators (avs-gold-2 is still suspended)"
        ),
        Err(e) => problems.push(format!("capacity is not released at teardown: {e}")),
    }
    let nomatch = s.rollup("nomatch").await.expect("exists");
    assert_eq!(
        objects::phase(&nomatch),
        "Pending",
        "nomatch still waits: {}",
        describe(&nomatch)
    );
    for name in EXAMPLE_OPERATORS {
        log(format!("{name}: assignedCount {}", assigned_count(&s, name).await));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
