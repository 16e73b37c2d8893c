//! GitOps: a FlashRollup kept in Git and synced by Argo CD. After the rollup's life is over,
//! self-heal applies the same manifest again; with `teardown.policy: Retain` the object is still
//! there, TornDown, so the re-apply changes nothing and no second chain starts. Argo CD's view of
//! it is checked too: the health check from manifests/argocd-cm-patch.yaml, merged into an
//! argocd-cm as the README says, run by Lua 5.1 on the live object. And the operator's metrics
//! show one launch and no per-rollup series after teardown.

use std::io::{Read, Write};
use std::time::Duration;

use flashlayer_e2e::manifests::Rollup;
use flashlayer_e2e::objects::{self, str_at};
use flashlayer_e2e::wait::stays;
use flashlayer_e2e::{Check, Scenario, cmd, log, until};
use serde_json::Value;

const CM_PATCH: &str = "manifests/argocd/argocd-cm-patch.yaml";
const HARNESS: &str = "manifests/argocd/check-health.lua";
const FLASHROLLUP_HEALTH_KEY: &str = "resource.customizations.health.rollups.flashlayer.dev_FlashRollup";

/// The operator's /metrics page.
fn scrape(addr: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a read timeout");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read the response");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "GET /metrics: {head}");
    body.to_owned()
}

/// The samples of `name` whose labels include all of `labels`, as `(line, value)`.
fn samples(page: &str, name: &str, labels: &[(&str, &str)]) -> Vec<(String, f64)> {
    page.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .map(|l| {
            let value = l.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
            (l.to_owned(), value)
        })
        .collect()
}

/// The sum of the samples of `name` with `labels` (0 when there is none).
fn total(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(page, name, labels).iter().map(|(_, v)| v).sum()
}

/// Argo CD's verdict on `object`: the health check `script` run by the harness with lua5.1.
fn argo_health(root: &std::path::Path, script: &std::path::Path, object: &Value) -> (String, String) {
    let harness = root.join(HARNESS);
    let out = cmd::run(
        "lua5.1",
        &[&harness.to_string_lossy(), &script.to_string_lossy(), "-"],
        Some(&object.to_string()),
    )
    .unwrap_or_else(|e| panic!("{e} (apt-get install lua5.1; .ci/run does)"));
    assert!(out.success, "the health check failed: {}", out.stderr);
    let health: Value = serde_json::from_str(&out.stdout).expect("the harness prints JSON");
    (
        health["status"].as_str().unwrap_or_default().to_owned(),
        health["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Merge argocd-cm-patch.yaml into an existing argocd-cm, as manifests/argocd/README.md says, and
/// return the FlashRollup health check Argo CD would read from it (written to a file).
fn health_check_from_argocd_cm(root: &std::path::Path, dir: &std::path::Path) -> std::path::PathBuf {
    let existing = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: argocd\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n  namespace: argocd\ndata:\n  url: https://argocd.example.com\n";
    cmd::kubectl_ok(&["apply", "-f", "-"], Some(existing)).expect("an argocd-cm to patch");
    let patch = root.join(CM_PATCH);
    cmd::kubectl_ok(
        &[
            "-n",
            "argocd",
            "patch",
            "configmap",
            "argocd-cm",
            "--patch-file",
            &patch.to_string_lossy(),
        ],
        None,
    )
    .expect("kubectl patch argocd-cm with the patch file");
    let cm: Value = serde_json::from_str(
        &cmd::kubectl_ok(&["-n", "argocd", "get", "configmap", "argocd-cm", "-o", "json"], None).expect("argocd-cm"),
    )
    .expect("JSON");
    // Gone before the next run applies it again (a terminating namespace refuses new objects).
    let _ = cmd::kubectl(&["delete", "namespace", "argocd", "--timeout=60s"], None);
    assert_eq!(
        cm["data"]["url"], "https://argocd.example.com",
        "the patch keeps argocd-cm's keys"
    );
    let script = cm["data"][FLASHROLLUP_HEALTH_KEY]
        .as_str()
        .unwrap_or_else(|| panic!("argocd-cm has no {FLASHROLLUP_HEALTH_KEY}: {cm}"));
    let committed = root.join("manifests/argocd/resource_customizations/rollups.flashlayer.dev/FlashRollup/health.lua");
    assert_eq!(
        script,
        std::fs::read_to_string(&committed).expect("health.lua"),
        "argocd-cm holds health.lua as it is"
    );
    let path = dir.join("FlashRollup-health-from-argocd-cm.lua");
    std::fs::write(&path, script).expect("write the script");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make e2e"]
async fn gitops_reapply_after_teardown_starts_no_second_chain() {
    let mut s = Scenario::new("gitops").await;
    let root = s.installed.root.clone();
    let script = health_check_from_argocd_cm(&root, &s.installed.dir);
    s.apply_example_operators(None).await;
    let op = s.start_leader("e2e-gitops").await;
    let metrics_addr = s.operator(op).metrics_addr.clone();
    s.wait_operators_ready().await;

    // The file in Git: a Discard preview chain, Retain teardown (the default), short life.
    let name = "preview";
    let manifest = Rollup::new(name)
        .min_operators(2)
        .expires_in(Duration::from_secs(20))
        .yaml();
    assert!(
        manifest.contains("policy: Retain"),
        "the manifest keeps its object:\n{manifest}"
    );
    s.apply_ok(&manifest);

    let running = s.wait_phase(name, "Running", Duration::from_secs(30)).await;
    let expires = str_at(&running, "/status/expiresAt").expect("status.expiresAt");
    assert_eq!(
        argo_health(&root, &script, &running),
        ("Healthy".into(), format!("Running; settles at {expires}")),
        "Argo CD health while Running"
    );
    let ns = s.ns.clone();
    let rollup_labels = [("namespace", ns.as_str()), ("rollup", name)];
    let page = until("the rollup's series on /metrics", Duration::from_secs(10), || async {
        let page = scrape(&metrics_addr);
        let phase = samples(&page, "flashlayer_rollup_phase", &rollup_labels);
        if phase.len() == 1 && phase[0].0.contains("phase=\"Running\"") && phase[0].1 == 1.0 {
            Check::Done(page)
        } else {
            Check::Waiting(format!("flashlayer_rollup_phase: {phase:?}"))
        }
    })
    .await;
    assert_eq!(
        total(&page, "flashlayer_rollup_expires_timestamp_seconds", &rollup_labels),
        objects::time_at(&running, "/status/expiresAt")
            .expect("expiresAt")
            .as_second() as f64,
        "flashlayer_rollup_expires_timestamp_seconds"
    );
    let launches = total(&page, "flashlayer_launch_duration_seconds_count", &[]);
    assert!(launches >= 1.0, "the launch was observed: {launches}");

    // Expiry: TornDown, nothing left, the object kept; Healthy for Argo CD.
    let torn = s.wait_phase(name, "TornDown", Duration::from_secs(60)).await;
    s.assert_nothing_left(name).await;
    let (status, message) = argo_health(&root, &script, &torn);
    assert_eq!(status, "Healthy", "Argo CD health once TornDown: {message}");
    assert_eq!(
        message,
        "TornDown: settlement.policy is Discard: the final state is not settled; every workload is gone"
    );
    let page = scrape(&metrics_addr);
    let left: Vec<&str> = page
        .lines()
        .filter(|l| l.contains(&format!("rollup=\"{name}\"")) && l.contains(&format!("namespace=\"{ns}\"")))
        .collect();
    assert!(left.is_empty(), "per-rollup series left after teardown: {left:?}");
    let to_running = [("to", "Running")];
    let runs_before = total(&page, "flashlayer_phase_transitions_total", &to_running);
    let launches_before = total(&page, "flashlayer_launch_duration_seconds_count", &[]);

    // Self-heal: Argo CD applies the same file again, client-side by default...
    let out = s.apply_ok(&manifest);
    log(format!("re-applied: {}", out.trim()));
    assert!(out.contains("unchanged"), "kubectl apply saw a difference: {out}");
    // ...or server-side (syncOptions ServerSideApply=true), as its own field manager.
    let out = s
        .kubectl(
            &["apply", "--server-side", "--field-manager=argocd-controller", "-f", "-"],
            Some(&manifest),
        )
        .ok("kubectl apply --server-side")
        .expect("a server-side re-apply");
    log(format!("re-applied server-side: {}", out.trim()));

    // It stays as it is: TornDown, same status (end time, conditions), same generation, and
    // no workload comes back.
    let generation = torn["metadata"]["generation"].clone();
    stays(
        "the rollup to stay TornDown with nothing recreated",
        Duration::from_secs(10),
        || async {
            let Some(now) = s.rollup(name).await else {
                return Check::Waiting("the FlashRollup is gone".into());
            };
            if now["status"] != torn["status"] {
                return Check::Waiting(format!("status changed: {}", now["status"]));
            }
            if now["metadata"]["generation"] != generation {
                return Check::Waiting(format!("generation {}", now["metadata"]["generation"]));
            }
            let left = s.leftovers(name).await;
            if !left.is_empty() {
                return Check::Waiting(format!("recreated: {left:?}"));
            }
            Check::Done(())
        },
    )
    .await;
    let after = s.rollup(name).await.expect("the FlashRollup is kept");
    assert_eq!(
        argo_health(&root, &script, &after).0,
        "Healthy",
        "Argo CD health after the re-apply"
    );
    let page = scrape(&metrics_addr);
    assert_eq!(
        total(&page, "flashlayer_launch_duration_seconds_count", &[]),
        launches_before,
        "no second launch"
    );
    assert_eq!(
        total(&page, "flashlayer_phase_transitions_total", &to_running),
        runs_before,
        "nothing went Running again"
    );
    let events = s.events(name).await;
    let runs = events.iter().filter(|(reason, _)| reason == "Running").count();
    assert_eq!(runs, 1, "one Running event: {events:?}");
}

/// The other side of the coin, and why the docs insist on Retain under GitOps: with
/// `teardown.policy: Delete` the finished rollup's object goes away, so the same re-apply
/// creates a new FlashRollup, and a second chain runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make e2e"]
async fn gitops_reapply_after_delete_policy_starts_a_new_chain() {
    let mut s = Scenario::new("gitops-delete").await;
    s.apply_example_operators(None).await;
    s.start_leader("e2e-gitops-delete").await;
    s.wait_operators_ready().await;

    let name = "preview";
    let retain = "teardown:\n    policy: Retain";
    let base = Rollup::new(name).min_operators(2).ttl("10m").yaml();
    assert!(base.contains(retain), "the base manifest sets teardown.policy:\n{base}");
    let manifest = base.replace(retain, "teardown:\n    policy: Delete");
    s.apply_ok(&manifest);
    let first = s.wait_phase(name, "Running", Duration::from_secs(30)).await;
    let first_uid = first["metadata"]["uid"].as_str().expect("a uid").to_owned();

    // Ended early by hand (settle-now), outside Git; Delete removes the object once torn down.
    s.settle_now(name);
    until("the FlashRollup to be deleted", Duration::from_secs(60), || async {
        match s.rollup(name).await {
            None => Check::Done(()),
            Some(r) => Check::Waiting(format!("phase {:?}", objects::phase(&r))),
        }
    })
    .await;

    // Self-heal sees it missing from the cluster and applies the file: a new rollup, a new chain.
    let out = s.apply_ok(&manifest);
    assert!(out.contains("created"), "kubectl apply: {out}");
    let second = s.wait_phase(name, "Running", Duration::from_secs(30)).await;
    assert_ne!(
        second["metadata"]["uid"].as_str(),
        Some(first_uid.as_str()),
        "a new object"
    );
    let workloads = s.leftovers(name).await;
    assert!(
        workloads.iter().any(|w| w.starts_with("StatefulSet/")),
        "the second chain has a sequencer: {workloads:?}"
    );
}
