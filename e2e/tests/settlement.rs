//! Settle-policy rollups end to end, with a real L1 and a real chain: anvil on 127.0.0.1 (1 s
//! blocks) with the settlement contract deployed from the committed artifact, the operator's
//! signer key in a Secret, and a `flashlayer-node` sequencer plus one verifier per assigned
//! operator running as local processes, configured from the rollup's own ConfigMap and Secrets
//! (the local cluster's pods run on kwok nodes, which run no containers). The operator reaches
//! that sequencer through `--node-endpoint`.
//!
//! - `settle_end_to_end`: registration before Running, a transaction finalized by the MACH
//!   quorum, expiry, seal, certificate, settle transaction, confirmation, a `Settled` Event,
//!   TornDown; the two latencies measured.
//! - `settle_exactly_once_when_the_operator_dies`: the operator exits at each step of settling
//!   (`FLASHLAYER_FAULT`) and a restarted one finishes with exactly one settlement on the L1.
//! - `settle_waits_out_an_l1_outage`: anvil stopped while settling; the rollup waits in Settling
//!   (L1Unreachable, backing off) with every workload in place, and settles once anvil is back.
//! - `settle_refuses_a_front_run_registration`: another account registered the rollup's id
//!   first; the rollup goes Failed (RegistrationConflict) instead of running a chain it could not
//!   settle.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flashlayer_e2e::l1::{self, Anvil, SIGNER, SIGNER_KEY};
use flashlayer_e2e::manifests::{L1, Rollup};
use flashlayer_e2e::nodes::{LocalChain, NodeConfig};
use flashlayer_e2e::objects::{self, condition_state, str_at, u64_at};
use flashlayer_e2e::operator::Options;
use flashlayer_e2e::process::free_port;
use flashlayer_e2e::scenario::{ROLLUP_LABEL, describe};
use flashlayer_e2e::{Check, Scenario, log, until};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::Value;

/// Receives the rollup's test transfers.
const SINK: &str = "0x000000000000000000000000000000000000dEaD";

/// A scenario with the example operators, an anvil with the contract, and the signer Secret.
struct World {
    s: Scenario,
    anvil: Anvil,
    l1: L1,
}

impl World {
    async fn new(name: &str) -> World {
        let s = Scenario::new(name).await;
        s.apply_example_operators(None).await;
        let anvil = Anvil::start(&s.installed.dir.join(format!("l1-{}", s.ns)));
        let contract = anvil.deploy_settlement(&s.installed.root);
        s.apply_ok(&l1::signer_secret("l1-signer"));
        let l1 = L1 {
            rpc_url: anvil.url.clone(),
            chain_id: l1::CHAIN_ID,
            contract,
            signer_secret: "l1-signer".into(),
        };
        World { s, anvil, l1 }
    }

    fn contract(&self) -> &str {
        &self.l1.contract
    }

    /// Operator options: the sequencer's admin API on 127.0.0.1:`admin_port`.
    fn options(admin_port: u16, fault: Option<&str>) -> Options {
        Options {
            node_endpoint: Some(format!("http://127.0.0.1:{admin_port}")),
            node_status_interval: Some("1s".into()),
            env: fault
                .map(|f| vec![("FLASHLAYER_FAULT".to_owned(), f.to_owned())])
                .unwrap_or_default(),
        }
    }

    /// Apply `rollup` (Settle on this world's L1), start its chain once the operator has
    /// written its configuration, and wait until it is Running, registered on the L1, with a
    /// transfer finalized by the MACH quorum. Returns the chain and the rollup id.
    async fn run_rollup(&self, rollup: Rollup, admin_port: u16) -> (LocalChain, String) {
        let s = &self.s;
        let name = rollup.name.clone();
        s.apply_ok(&rollup.settle(&self.l1).yaml());
        let config = until(
            &format!("{name}: its chain.json and admin token"),
            Duration::from_secs(30),
            || async {
                match NodeConfig::read(&s.client, &s.ns, &name).await {
                    Ok(Some(c)) => Check::Done(c),
                    Ok(None) => Check::Waiting("not written yet".into()),
                    Err(e) => Check::Waiting(e),
                }
            },
        )
        .await;
        let dir = s.installed.dir.join(format!("chain-{}-{name}", s.ns));
        let mut chain = LocalChain::new(&s.installed.root, &dir, admin_port);
        chain.start(&config);
        let rid = config.rollup_id();

        let running = s.wait_phase(&name, "Running", Duration::from_secs(60)).await;
        let settlement = &running["status"]["settlement"];
        assert_eq!(
            settlement["registered"], true,
            "Running only once registered: {settlement}"
        );
        assert_eq!(
            str_at(&running, "/status/settlement/rollupId").map(str::to_lowercase),
            Some(rid.clone()),
            "the rollup id in status is the chain's"
        );
        let reg_tx = str_at(&running, "/status/settlement/registeredTx")
            .expect("status.settlement.registeredTx")
            .to_owned();
        let receipt = self.anvil.receipt(&reg_tx).expect("the registration receipt");
        assert_eq!(receipt["status"], "0x1", "registration reverted: {receipt}");
        let registration = self.anvil.registration(self.contract(), &rid).expect("rollup(bytes32)");
        assert_eq!(
            registration[0].to_lowercase(),
            SIGNER.to_lowercase(),
            "registrar: {registration:?}"
        );
        // chain id 901337, 67 % = 6700 bps, the three gold operators with 100 + 100 + 50.
        assert_eq!(&registration[1..], ["901337", "6700", "3", "250"], "{registration:?}");
        log(format!("{name}: registered in L1 tx {reg_tx}, rollup id {rid}"));

        // A transfer on the rollup, final through the MACH quorum (the sequencer's `finalized`
        // tag, and the operator's status).
        let block = chain.send_transfer(SIGNER_KEY, SINK).expect("cast send on the rollup");
        until(
            &format!("{name}: block {block} finalized"),
            Duration::from_secs(30),
            || async {
                match chain.block_number("finalized") {
                    Ok(f) if f >= block => Check::Done(()),
                    Ok(f) => Check::Waiting(format!("finalized {f}")),
                    Err(e) => Check::Waiting(e),
                }
            },
        )
        .await;
        s.wait_rollup(
            &name,
            &format!("status.finalizedHeight >= {block}"),
            Duration::from_secs(15),
            |r| u64_at(r, "/status/finalizedHeight").is_some_and(|f| f >= block),
        )
        .await;
        (chain, rid)
    }

    /// Everything that must hold once the rollup is TornDown: status, the contract, the logs,
    /// the signer's nonce, the Event, nothing left.
    async fn check_settled(&self, name: &str, rid: &str, chain: &LocalChain, nonce_before: u64) -> Value {
        let s = &self.s;
        let r = s.rollup(name).await.expect("the rollup is retained");
        assert_eq!(objects::phase(&r), "TornDown", "{}", describe(&r));
        let st = &r["status"]["settlement"];
        assert_eq!(st["step"], "Done", "{st}");
        let tx = st["txHash"].as_str().expect("settlement.txHash");
        let l1_block = st["l1BlockNumber"].as_u64().expect("settlement.l1BlockNumber");
        let height = st["finalHeight"].as_u64().expect("settlement.finalHeight");
        let root = st["stateRoot"].as_str().expect("settlement.stateRoot").to_lowercase();
        let hash = st["blockHash"].as_str().expect("settlement.blockHash").to_lowercase();
        assert!(st["settledAt"].is_string(), "settledAt: {st}");
        assert_eq!(
            condition_state(&r, "Settled"),
            Some(("True".into(), "Settled".into())),
            "Settled condition"
        );

        // The contract's record is the sequencer's final block.
        let on_l1 = self
            .anvil
            .settlement(self.contract(), rid)
            .expect("settlement(bytes32)");
        assert!(on_l1.settled, "the contract holds no settlement: {on_l1:?}");
        assert_eq!(on_l1.number, height, "final height");
        assert_eq!(on_l1.state_root, root, "state root on the L1 vs status");
        assert_eq!(on_l1.block_hash, hash, "block hash on the L1 vs status");
        let seq_root = chain.block_field(height, "stateRoot").expect("the final block");
        assert_eq!(seq_root, root, "the sequencer's final state root");
        assert_eq!(
            chain.block_number("latest").expect("latest"),
            height,
            "sealed: the final block is the last"
        );
        let receipt = self.anvil.receipt(tx).expect("the settlement receipt");
        assert_eq!(receipt["status"], "0x1", "{receipt}");
        assert_eq!(
            u64::from_str_radix(
                receipt["blockNumber"]
                    .as_str()
                    .unwrap_or("0x0")
                    .trim_start_matches("0x"),
                16
            )
            .ok(),
            Some(l1_block),
            "l1BlockNumber"
        );

        // Exactly once: one RollupSettled for the id, one transaction of the signer's.
        let logs = self.anvil.settled_logs(self.contract(), rid).expect("cast logs");
        assert_eq!(logs.len(), 1, "RollupSettled logs for {rid}: {logs:#?}");
        assert_eq!(
            logs[0]["transactionHash"].as_str().map(str::to_lowercase),
            Some(tx.to_lowercase()),
            "the log is of the recorded transaction"
        );
        let nonce = self.anvil.nonce(SIGNER).expect("nonce");
        assert_eq!(
            nonce,
            nonce_before + 1,
            "the signer sent exactly one transaction to settle"
        );

        let events = s.events(name).await;
        // The `Settled` Event of the settlement (the phase change to Settled has one too).
        let settled: Vec<&(String, String)> = events
            .iter()
            .filter(|(r, m)| r == "Settled" && m.contains("settled in L1 transaction"))
            .collect();
        assert_eq!(settled.len(), 1, "one Settled Event for the settlement: {events:#?}");
        assert!(settled[0].1.contains(tx), "the Settled Event names the tx: {settled:?}");
        s.assert_nothing_left(name).await;
        log(format!(
            "{name}: settled block {height} root {root} in L1 tx {tx} (block {l1_block}); nonce {nonce_before} -> {nonce}"
        ));
        r
    }
}

/// Watches that no workload of the rollup is deleted before its settlement is recorded as
/// confirmed (step Done): reads the workloads, then the status, so a deletion seen before a
/// status that is not Done is a violation.
struct NoEarlyTeardown {
    violations: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl NoEarlyTeardown {
    fn start(client: &Client, ns: &str, name: &str, expected: usize) -> NoEarlyTeardown {
        let violations: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (v, st) = (violations.clone(), stop.clone());
        let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
        let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
        let rollups = objects::custom_api(client, ns, flashlayer_e2e::FLASHROLLUP);
        let name = name.to_owned();
        let task = tokio::spawn(async move {
            let lp = ListParams::default().labels(&format!("{ROLLUP_LABEL}={name}"));
            while !st.load(Ordering::Relaxed) {
                let live = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
                    meta.deletion_timestamp.is_none()
                };
                let (Ok(a), Ok(b)) = (sts.list(&lp).await, deploys.list(&lp).await) else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let present = a.items.iter().filter(|o| live(&o.metadata)).count()
                    + b.items.iter().filter(|o| live(&o.metadata)).count();
                if present < expected
                    && let Ok(Some(r)) = objects::get_json(&rollups, &name).await
                {
                    let step = str_at(&r, "/status/settlement/step").unwrap_or("");
                    if step != "Done" {
                        let mut v = v.lock().unwrap_or_else(|p| p.into_inner());
                        v.push(format!(
                            "{present}/{expected} workloads left while settlement step is {step:?}: {}",
                            describe(&r)
                        ));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        NoEarlyTeardown { violations, stop, task }
    }

    async fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let v = self.violations.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert!(
            v.is_empty(),
            "workloads deleted before settlement was confirmed: {v:#?}"
        );
    }
}

/// One StatefulSet and one Deployment per assigned operator (3).
const WORKLOADS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make e2e"]
async fn settle_end_to_end() {
    let mut w = World::new("settle").await;
    let admin_port = free_port();
    w.s.start_leader_with("e2e-settle", &World::options(admin_port, None))
        .await;
    w.s.wait_operators_ready().await;
    let name = "mint";
    let rollup = Rollup::new(name).min_operators(3).expires_in(Duration::from_secs(30));
    let expires_at = rollup.expires_at().expect("an absolute expiry");
    let phases = w.s.record(name, |r| {
        let ready = condition_state(r, "Ready")
            .map(|(_, reason)| reason)
            .unwrap_or_default();
        format!("{}/{ready}", objects::phase(r))
    });
    let (chain, rid) = w.run_rollup(rollup, admin_port).await;
    let nonce_before = w.anvil.nonce(SIGNER).expect("nonce");
    let guard = NoEarlyTeardown::start(&w.s.client, &w.s.ns, name, WORKLOADS);
    let left = expires_at.duration_since(Timestamp::now());
    log(format!(
        "{name}: ready to settle, {:.1}s before expiresAt",
        left.as_secs_f64()
    ));
    assert!(left.is_positive(), "the setup took longer than the rollup's life");

    // Expiry -> the settlement on the L1, polled every 50 ms.
    let deadline = Instant::now() + Duration::from_secs(left.as_secs().unsigned_abs() + 30);
    let (l1_seen, l1_latency) = loop {
        if w.anvil.settlement(w.contract(), &rid).is_ok_and(|s| s.settled) {
            break (Instant::now(), Timestamp::now().duration_since(expires_at));
        }
        assert!(
            Instant::now() < deadline,
            "no settlement on the L1 30 s after expiry: {}",
            describe(&w.s.rollup(name).await.unwrap_or_default())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    log(format!(
        "{name}: expiry -> settlement on the L1: {:.2}s",
        l1_latency.as_secs_f64()
    ));

    // Settlement -> every workload gone.
    let gone = until(
        &format!("{name}: every workload gone"),
        Duration::from_secs(30),
        || async {
            let left = w.s.leftovers(name).await;
            if left.is_empty() {
                Check::Done(l1_seen.elapsed())
            } else {
                Check::Waiting(format!("{} objects left", left.len()))
            }
        },
    )
    .await;
    log(format!(
        "{name}: settlement on the L1 -> all workloads gone: {:.2}s",
        gone.as_secs_f64()
    ));
    w.s.wait_phase(name, "TornDown", Duration::from_secs(15)).await;
    guard.finish().await;
    let r = w.check_settled(name, &rid, &chain, nonce_before).await;
    let ended = objects::time_at(&r, "/status/endedAt").expect("endedAt");
    assert!(ended >= expires_at, "ended at {ended}, before expiresAt {expires_at}");

    let seen = phases.phases();
    log(format!("{name}: phase/Ready seen: {seen:?}"));
    let order: Vec<&str> = seen.iter().map(|p| p.split('/').next().unwrap_or("")).collect();
    let pos = |p: &str| order.iter().position(|o| *o == p);
    let (running, settling, torn) = (
        pos("Running").expect("Running seen"),
        pos("Settling").expect("Settling seen"),
        pos("TornDown").expect("TornDown seen"),
    );
    assert!(running < settling && settling < torn, "phase order: {seen:?}");
    assert!(
        order[..running]
            .iter()
            .all(|p| matches!(*p, "" | "Pending" | "Provisioning")),
        "before Running: {seen:?}"
    );

    println!(
        "SETTLEMENT LATENCY: expiry -> L1 settlement {:.2}s (goal < 3s); L1 settlement -> workloads gone {:.2}s (goal < 10s)",
        l1_latency.as_secs_f64(),
        gone.as_secs_f64()
    );
    assert!(
        l1_latency.as_secs_f64() < 3.0,
        "expiry -> L1 settlement took {l1_latency}"
    );
    assert!(gone < Duration::from_secs(10), "teardown took {gone:?}");
}

/// Where the operator dies, and what the world looks like while it is dead.
#[derive(Clone, Copy, Debug)]
enum Fault {
    BeforeSend,
    /// Before send, and while the operator is dead another transaction of the signer takes the
    /// recorded transaction's nonce: the restarted operator must sign a new one, once.
    BeforeSendNonceTaken,
    AfterSend,
    AfterReceipt,
}

impl Fault {
    fn point(self) -> &'static str {
        match self {
            Fault::BeforeSend | Fault::BeforeSendNonceTaken => "exit-before-send",
            Fault::AfterSend => "exit-after-send",
            Fault::AfterReceipt => "exit-after-receipt",
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make e2e"]
async fn settle_exactly_once_when_the_operator_dies() {
    let mut w = World::new("once").await;
    let identity = "e2e-once";
    let mut operators_ready = false;
    for (round, fault) in [
        Fault::BeforeSend,
        Fault::AfterSend,
        Fault::AfterReceipt,
        Fault::BeforeSendNonceTaken,
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("once-{}", round + 1);
        let point = fault.point();
        log(format!("---- {name}: the operator exits at {point} ----"));
        let admin_port = free_port();
        let faulty =
            w.s.start_leader_with(identity, &World::options(admin_port, Some(point)))
                .await;
        if !operators_ready {
            w.s.wait_operators_ready().await;
            operators_ready = true;
        }
        let (chain, rid) = w.run_rollup(Rollup::new(&name).min_operators(3), admin_port).await;
        let nonce_before = w.anvil.nonce(SIGNER).expect("nonce");
        let guard = NoEarlyTeardown::start(&w.s.client, &w.s.ns, &name, WORKLOADS);
        w.s.settle_now(&name);

        let pid = w.s.operator(faulty).pid;
        until(
            &format!("{name}: the operator to exit at {point}"),
            Duration::from_secs(60),
            || async {
                if flashlayer_e2e::process::exited(pid) {
                    Check::Done(())
                } else {
                    Check::Waiting("running".into())
                }
            },
        )
        .await;
        let said = w.s.operator(faulty).log_text();
        assert!(
            said.contains(&format!("exit(1) at {point}")),
            "the operator died elsewhere than {point}:\n{}",
            w.s.operator(faulty).log_tail(30)
        );
        w.s.operator(faulty).stop();

        // The world while it is dead.
        let r = w.s.rollup(&name).await.expect("exists");
        assert_eq!(objects::phase(&r), "Settling", "{}", describe(&r));
        let st = r["status"]["settlement"].clone();
        let tx = st["txHash"].as_str().map(str::to_owned);
        match fault {
            Fault::BeforeSend | Fault::BeforeSendNonceTaken | Fault::AfterSend => {
                assert_eq!(st["step"], "Submitting", "{st}");
                assert!(st["rawTx"].is_string() && tx.is_some(), "intent recorded: {st}");
            }
            Fault::AfterReceipt => {
                assert_eq!(st["step"], "Confirming", "{st}");
            }
        }
        let tx = tx.expect("the intent's tx hash is in status");
        let mut nonce_before = nonce_before;
        match fault {
            Fault::BeforeSend | Fault::BeforeSendNonceTaken => {
                // Nothing was sent: give the L1 two blocks to prove it.
                tokio::time::sleep(Duration::from_secs(2)).await;
                let on_l1 = w.anvil.settlement(w.contract(), &rid).expect("view");
                assert!(!on_l1.settled, "settled although nothing was sent: {on_l1:?}");
                assert_eq!(w.anvil.nonce(SIGNER).expect("nonce"), nonce_before, "nonce moved");
                if matches!(fault, Fault::BeforeSendNonceTaken) {
                    w.anvil
                        .send(SIGNER_KEY, SINK, "", &[])
                        .expect("another transaction of the signer");
                    assert_eq!(
                        w.anvil.nonce(SIGNER).expect("nonce"),
                        nonce_before + 1,
                        "the recorded nonce is taken"
                    );
                    nonce_before += 1;
                }
            }
            Fault::AfterSend | Fault::AfterReceipt => {
                until(
                    &format!("{name}: the sent transaction mined while the operator is dead"),
                    Duration::from_secs(10),
                    || async {
                        match w.anvil.settlement(w.contract(), &rid) {
                            Ok(s) if s.settled => Check::Done(()),
                            other => Check::Waiting(format!("{other:?}")),
                        }
                    },
                )
                .await;
            }
        }
        assert_eq!(
            w.s.children(&name)
                .await
                .iter()
                .filter(
                    |(k, o)| matches!(*k, "StatefulSet" | "Deployment") && o["metadata"]["deletionTimestamp"].is_null()
                )
                .count(),
            WORKLOADS,
            "every workload is still there"
        );

        // A restarted operator (same identity: it takes its Lease back at once) finishes.
        let restarted = Instant::now();
        let clean = w.s.start_leader_with(identity, &World::options(admin_port, None)).await;
        w.s.wait_phase(&name, "TornDown", Duration::from_secs(60)).await;
        log(format!(
            "{name}: TornDown {:.1}s after the restart",
            restarted.elapsed().as_secs_f64()
        ));
        guard.finish().await;
        let r = w.check_settled(&name, &rid, &chain, nonce_before).await;
        let settled_by = str_at(&r, "/status/settlement/txHash");
        if matches!(fault, Fault::BeforeSendNonceTaken) {
            assert_ne!(
                settled_by,
                Some(tx.as_str()),
                "the recorded transaction can never be mined; a new one settled"
            );
        } else {
            assert_eq!(
                settled_by,
                Some(tx.as_str()),
                "the restarted operator finished the recorded transaction, not a new one"
            );
        }
        w.s.operator(clean).stop();
        drop(chain);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make e2e"]
async fn settle_waits_out_an_l1_outage() {
    let mut w = World::new("outage").await;
    let admin_port = free_port();
    w.s.start_leader_with("e2e-outage", &World::options(admin_port, None))
        .await;
    w.s.wait_operators_ready().await;
    let name = "outage";
    let (chain, rid) = w.run_rollup(Rollup::new(name).min_operators(3), admin_port).await;
    let nonce_before = w.anvil.nonce(SIGNER).expect("nonce");
    let guard = NoEarlyTeardown::start(&w.s.client, &w.s.ns, name, WORKLOADS);
    let attempts = w.s.record(name, |r| {
        let (st, reason) = condition_state(r, "Settling").unwrap_or_default();
        format!(
            "{} Settling={st}({reason}) failedAttempts={}",
            objects::phase(r),
            u64_at(r, "/status/settlement/failedAttempts").unwrap_or(0)
        )
    });

    w.anvil.stop();
    w.s.settle_now(name);
    let outage = Instant::now();
    let r =
        w.s.wait_rollup(
            name,
            "Settling with reason L1Unreachable",
            Duration::from_secs(30),
            |r| condition_state(r, "Settling") == Some(("True".into(), "L1Unreachable".into())),
        )
        .await;
    let message = objects::condition(&r, "Settling")
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_owned();
    log(format!("{name}: Settling condition while the L1 is down: {message}"));
    assert!(message.contains("unreachable"), "a clear message: {message}");

    // Stays there, backing off, with every workload in place.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let r = w.s.rollup(name).await.expect("exists");
    assert_eq!(objects::phase(&r), "Settling", "{}", describe(&r));
    assert_eq!(
        condition_state(&r, "Settling"),
        Some(("True".into(), "L1Unreachable".into()))
    );
    let failed = u64_at(&r, "/status/settlement/failedAttempts").unwrap_or(0);
    let next = str_at(&r, "/status/settlement/nextAttemptAt").map(str::to_owned);
    log(format!(
        "{name}: after {:.1}s of outage: {failed} failed attempts, next at {next:?}",
        outage.elapsed().as_secs_f64()
    ));
    // Backoff 2 s, 4 s, 8 s: attempts at 0, 2, 6 (and 14) s. Without backoff there would be
    // hundreds (every status write wakes the controller).
    assert!((2..=4).contains(&failed), "{failed} failed attempts in ~10 s");
    assert!(next.is_some(), "status.settlement.nextAttemptAt");

    w.anvil.restart();
    let back = Instant::now();
    w.s.wait_phase(name, "TornDown", Duration::from_secs(60)).await;
    log(format!(
        "{name}: TornDown {:.1}s after the L1 came back",
        back.elapsed().as_secs_f64()
    ));
    guard.finish().await;
    w.check_settled(name, &rid, &chain, nonce_before).await;
    let seen = attempts.phases();
    log(format!("{name}: as the watch saw it: {seen:#?}"));
    assert!(
        seen.iter().any(|p| p.contains("L1Unreachable")),
        "L1Unreachable seen: {seen:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make e2e"]
async fn settle_refuses_a_front_run_registration() {
    let mut w = World::new("frontrun").await;
    let name = "taken";
    // Applied while no operator runs: its id is known (it derives from the UID) before the
    // operator can register it, and someone else registers it first.
    w.s.apply_ok(&Rollup::new(name).min_operators(3).settle(&w.l1).yaml());
    let r = w.s.rollup(name).await.expect("applied");
    let uid = r["metadata"]["uid"].as_str().expect("a uid").to_owned();
    let rid = l1::cast(&["keccak", &format!("flashlayer/v1/{}/{name}/{uid}", w.s.ns)])
        .expect("cast keccak")
        .to_lowercase();
    w.anvil
        .send(
            l1::OTHER_KEY,
            w.contract(),
            "registerRollup(bytes32,uint64,uint256[2][],uint96[],uint16)",
            &[&rid, "901337", "[[0,0]]", "[1]", "6700"],
        )
        .expect("the front-running registration");
    let nonce_before = w.anvil.nonce(SIGNER).expect("nonce");

    w.s.start_leader_with("e2e-frontrun", &World::options(free_port(), None))
        .await;
    let failed =
        w.s.wait_rollup(name, "phase Failed", Duration::from_secs(30), |r| {
            objects::phase(r) == "Failed"
        })
        .await;
    assert_eq!(
        condition_state(&failed, "Ready"),
        Some(("False".into(), "RegistrationConflict".into())),
        "{}",
        describe(&failed)
    );
    let message = objects::condition(&failed, "Ready")
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_owned();
    log(format!("{name}: {message}"));
    assert!(
        message.to_lowercase().contains(&l1::OTHER.to_lowercase()),
        "the condition names the other registrar: {message}"
    );
    assert_ne!(
        failed.pointer("/status/settlement/registered"),
        Some(&Value::Bool(true)),
        "not treated as ours"
    );
    // Nothing was sent, and no chain was built for a rollup that could not settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        w.anvil.nonce(SIGNER).expect("nonce"),
        nonce_before,
        "the signer sent nothing"
    );
    let workloads: Vec<String> =
        w.s.children(name)
            .await
            .into_iter()
            .filter(|(k, _)| matches!(*k, "StatefulSet" | "Deployment"))
            .map(|(k, o)| format!("{k}/{}", o["metadata"]["name"].as_str().unwrap_or("?")))
            .collect();
    assert!(
        workloads.is_empty(),
        "workloads of a rollup that cannot settle: {workloads:?}"
    );
    let r = w.s.rollup(name).await.expect("exists");
    assert_eq!(objects::phase(&r), "Failed", "Failed holds: {}", describe(&r));
    let events = w.s.events(name).await;
    assert!(
        events
            .iter()
            .any(|(reason, m)| reason == "Failed" && m.contains("registered")),
        "a Failed Event: {events:#?}"
    );
}
