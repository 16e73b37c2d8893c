//! The operator process dies: a restart picks up where it left off (deadlines included), and a
//! standby replica takes the Lease over from a crashed leader.

use std::time::{Duration, Instant};

use flashlayer_e2e::manifests::Rollup;
use flashlayer_e2e::objects::{self, time_at};
use flashlayer_e2e::wait::stays;
use flashlayer_e2e::{Check, Scenario, log, until};
use jiff::{SignedDuration, Timestamp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make e2e"]
async fn restart() {
    let mut s = Scenario::new("restart").await;
    s.apply_example_operators(None).await;
    let op = s.start_leader("e2e-restart").await;
    s.wait_operators_ready().await;

    // Two rollups: "missed" expires while the operator is down, "later" after it is back.
    let missed = Rollup::new("missed").expires_in(Duration::from_secs(14));
    let later = Rollup::new("later").expires_in(Duration::from_secs(26));
    s.apply_ok(&missed.yaml());
    s.apply_ok(&later.yaml());
    for name in ["missed", "later"] {
        s.wait_phase(name, "Running", Duration::from_secs(20)).await;
    }
    let before = s.rollup("later").await.expect("exists");
    // What "later" reports about its operators, across the restart.
    let quorum = s.record("later", |r| {
        let (status, reason) = objects::condition_state(r, "QuorumMet").unwrap_or_default();
        format!(
            "{} QuorumMet={status}({reason}) {:?}",
            objects::phase(r),
            objects::assigned_operators(r)
        )
    });
    s.operator(op).kill();

    // Nobody reconciles while it is down: "missed" passes its expiry still Running.
    let missed_at = missed.expires_at().expect("absolute expiry");
    let pause = missed_at.duration_since(Timestamp::now()) + SignedDuration::from_secs(2);
    tokio::time::sleep(Duration::try_from(pause).unwrap_or_default()).await;
    let r = s.rollup("missed").await.expect("exists");
    assert_eq!(
        objects::phase(&r),
        "Running",
        "nothing tears down while the operator is down"
    );

    // Restarted (same identity: it renews its own Lease at once), it catches up and then keeps
    // the next deadline.
    let restarted = s.start_leader("e2e-restart").await;
    let back = Instant::now();
    s.wait_phase("missed", "TornDown", Duration::from_secs(10)).await;
    log(format!(
        "missed: TornDown {:.1}s after the restart",
        back.elapsed().as_secs_f64()
    ));
    s.assert_nothing_left("missed").await;

    let later_at = later.expires_at().expect("absolute expiry");
    let torn = s.wait_phase("later", "TornDown", Duration::from_secs(30)).await;
    let lag = Timestamp::now().duration_since(later_at);
    log(format!("later: TornDown {:.1}s after its expiresAt", lag.as_secs_f64()));
    let ended = time_at(&torn, "/status/endedAt").expect("status.endedAt");
    assert!(
        ended >= later_at,
        "later ended at {ended}, before its expiresAt {later_at}"
    );
    assert!(
        lag < SignedDuration::from_secs(10),
        "later torn down {lag} after its expiry"
    );
    s.assert_nothing_left("later").await;
    assert!(
        s.operator(restarted).is_running(),
        "the restarted operator is still running"
    );

    // A restart changes nothing for a healthy Running rollup: same operators, quorum kept.
    let seen = quorum.phases();
    log(format!("later, as the watch saw it: {seen:#?}"));
    let want = format!(
        "Running QuorumMet=True(OperatorsAssigned) {:?}",
        objects::assigned_operators(&before)
    );
    let running: Vec<&String> = seen.iter().filter(|q| q.starts_with("Running")).collect();
    assert!(
        running.iter().all(|q| **q == want),
        "while Running, later went through {running:#?}; expected only {want:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make e2e"]
async fn leader_election() {
    let mut s = Scenario::new("leader").await;
    s.apply_example_operators(None).await;
    let a = s.start_operator("e2e-leader-a");
    let b = s.start_operator("e2e-leader-b");

    // Exactly one holds the Lease, and keeps it.
    let holder = until("one of the two to hold the Lease", Duration::from_secs(30), || async {
        match s.lease_holder().await {
            Some(h) if h.starts_with("e2e-leader-") => Check::Done(h),
            other => Check::Waiting(format!("holder {other:?}")),
        }
    })
    .await;
    stays(
        &format!("{holder} to keep the Lease"),
        Duration::from_secs(6),
        || async {
            match s.lease_holder().await {
                Some(h) if h == holder => Check::Done(()),
                other => Check::Waiting(format!("holder {other:?}")),
            }
        },
    )
    .await;
    let (leader, standby) = if holder == "e2e-leader-a" { (a, b) } else { (b, a) };
    let standby_id = s.operator(standby).identity.clone();
    assert!(
        s.operator(standby).log_text().contains("standing by"),
        "the standby says it stands by:\n{}",
        s.operator(standby).log_tail(20)
    );
    assert!(
        !s.operator(standby).log_text().contains("became leader"),
        "the standby must not lead while {holder} does:\n{}",
        s.operator(standby).log_tail(20)
    );

    // The leader reconciles.
    s.wait_operators_ready().await;
    s.apply_ok(&Rollup::new("before").yaml());
    s.wait_phase("before", "Running", Duration::from_secs(20)).await;

    // Crash the leader: the standby takes over once the Lease expires (15 s).
    s.operator(leader).kill();
    let killed = Instant::now();
    s.wait_leader(&standby_id, Duration::from_secs(25)).await;
    let took = killed.elapsed();
    log(format!(
        "{standby_id} took the Lease over {:.1}s after the crash",
        took.as_secs_f64()
    ));
    assert!(took <= Duration::from_secs(22), "take-over took {took:?}");

    // And the new leader reconciles: a new rollup runs, the old one is still Running.
    s.apply_ok(&Rollup::new("after").min_operators(1).yaml());
    s.wait_phase("after", "Running", Duration::from_secs(20)).await;
    let before = s.rollup("before").await.expect("exists");
    assert_eq!(objects::phase(&before), "Running", "the first rollup still runs");
    s.patch_rollup(
        "before",
        serde_json::json!({"metadata": {"annotations": {"rollups.flashlayer.dev/settle-now": "true"}}}),
    )
    .await;
    s.wait_phase("before", "TornDown", Duration::from_secs(15)).await;
}
