//! The kubectl plugin against the real operator, run as a user does (`kubectl flashrollup ...`
//! with the built binary on PATH): status, extend (ttl and expiresAt), settle and logs of Discard
//! rollups on kwok nodes, the kubeconfig flags, and the errors a person gets.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use flashlayer_e2e::cmd::{self, Output};
use flashlayer_e2e::manifests::{EXAMPLE_OPERATORS, Rollup};
use flashlayer_e2e::objects::{self, assigned_operators, condition_state, time_at};
use flashlayer_e2e::plugin::{run, run_for, run_in};
use flashlayer_e2e::{Scenario, log};
use jiff::SignedDuration;
use serde_json::Value;

/// Scenario with the example operators Ready and an operator leading.
async fn ready_scenario(name: &str) -> Scenario {
    let mut s = Scenario::new(name).await;
    s.apply_example_operators(None).await;
    s.start_leader(&format!("e2e-{name}")).await;
    s.wait_operators_ready().await;
    s
}

fn show(out: &Output) -> String {
    format!(
        "exit {}\n--- stdout ---\n{}--- stderr ---\n{}",
        if out.success { "0" } else { "non-zero" },
        out.stdout,
        out.stderr
    )
}

fn ok(out: Output) -> String {
    assert!(out.success, "the plugin failed:\n{}", show(&out));
    assert!(!out.stderr.contains("panicked"), "{}", show(&out));
    out.stdout
}

/// The plugin failed cleanly: non-zero exit, one `error: ...` line, no panic.
fn err(out: Output) -> String {
    assert!(!out.success, "the plugin should have failed:\n{}", show(&out));
    assert!(!out.stderr.contains("panicked"), "{}", show(&out));
    assert!(out.stderr.starts_with("error: "), "{}", show(&out));
    log(format!("-> {}", out.stderr.trim_end()));
    out.stderr
}

/// The line of `text` that starts with `prefix`.
fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
}

fn managers(r: &Value) -> Vec<String> {
    r.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| m["manager"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make e2e"]
async fn plugin_status_extend_settle() {
    let s = ready_scenario("plugin").await;
    let ns = s.ns.as_str();
    let name = "cli";
    s.apply_ok(&Rollup::new(name).ttl("10m").yaml());
    let running = s.wait_phase(name, "Running", Duration::from_secs(20)).await;
    let first = time_at(&running, "/status/expiresAt").expect("status.expiresAt");
    let assigned = assigned_operators(&running);
    assert_eq!(assigned.len(), 2, "{assigned:?}");

    // Heights come from the sequencer's node, which kwok pods do not run: report them as the
    // operator would, so that status has them to show.
    let out = s.kubectl(
        &[
            "patch",
            "flashrollup",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"height":42,"finalizedHeight":40}}"#,
        ],
        None,
    );
    assert!(out.success, "patching the status: {}", out.stderr);

    // status: phase, heights, time left, operators, conditions.
    let text = ok(run_in(ns, &["status", name]));
    log(format!("status:\n{text}"));
    assert_eq!(line(&text, "Name:"), format!("Name:           {name}"));
    assert_eq!(line(&text, "Namespace:"), format!("Namespace:      {ns}"));
    assert_eq!(line(&text, "Phase:"), "Phase:          Running");
    assert_eq!(line(&text, "Height:"), "Height:         42");
    assert_eq!(line(&text, "Finalized:"), "Finalized:      40");
    assert_eq!(line(&text, "Lifetime:"), "Lifetime:       ttl 10m");
    let expires = line(&text, "Expires:");
    assert!(
        expires.starts_with(&format!("Expires:        {first} (")) && expires.ends_with(" left)"),
        "{expires}"
    );
    assert!(
        expires.contains("(9m") || expires.contains("(10m"),
        "about 10 minutes left: {expires}"
    );
    let total: u64 = (0..2)
        .filter_map(|i| running["status"]["assignedOperators"][i]["stake"].as_u64())
        .sum();
    assert_eq!(
        line(&text, "Operators:"),
        format!("Operators:      2 assigned, stake {total}, quorum 67% of stake")
    );
    for (i, op) in assigned.iter().enumerate() {
        let stake = running["status"]["assignedOperators"][i]["stake"]
            .as_u64()
            .expect("a stake");
        let address = running["status"]["assignedOperators"][i]["address"]
            .as_str()
            .expect("an address");
        let row: Vec<&str> = line(&text, &format!("  {op} ")).split_whitespace().collect();
        assert_eq!(row, [op.as_str(), &stake.to_string(), address], "operator row");
    }
    assert_eq!(
        line(&text, "Settlement:"),
        "Settlement:     Discard (nothing is submitted to an L1)"
    );
    let ready: Vec<&str> = line(&text, "  Ready ").split_whitespace().take(3).collect();
    assert_eq!(ready, ["Ready", "True", "WorkloadsReady"], "Ready condition row");
    line(&text, "  QuorumMet ");
    line(&text, "  TTLAccepted ");

    // -o json and -o yaml: the object itself.
    let json: Value = serde_json::from_str(&ok(run_in(ns, &["status", name, "-o", "json"]))).expect("JSON");
    assert_eq!(json["metadata"]["name"], name);
    assert_eq!(json["status"]["height"], 42);
    assert!(
        json["metadata"].get("managedFields").is_none(),
        "managedFields are left out"
    );
    let yaml = ok(run_in(ns, &["status", name, "-o", "yaml"]));
    assert!(
        yaml.contains("kind: FlashRollup\n") && yaml.contains("phase: Running\n"),
        "{yaml}"
    );

    // The kubeconfig flags: a kubeconfig whose context names the namespace needs no -n.
    let kubeconfig = std::env::var("KUBECONFIG").expect("KUBECONFIG");
    let context = cmd::kubectl(&["config", "current-context"], None)
        .stdout
        .trim()
        .to_owned();
    // Next to the operator's kubeconfig, in this run's artifacts, readable by us only.
    let own = s.installed.dir.join(format!("{ns}.kubeconfig"));
    let raw = cmd::kubectl_ok(&["config", "view", "--raw", "--minify"], None).expect("the kubeconfig");
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&own)
        .and_then(|mut f| f.write_all(raw.as_bytes()))
        .expect("writing a kubeconfig");
    let own_str = own.to_string_lossy().into_owned();
    let out = cmd::kubectl(
        &[
            "config",
            "set-context",
            &context,
            &format!("--namespace={ns}"),
            &format!("--kubeconfig={own_str}"),
        ],
        None,
    );
    assert!(out.success, "kubectl config set-context: {}", out.stderr);
    let text = ok(run(&["status", name, "--kubeconfig", &own_str, "--context", &context]));
    assert_eq!(line(&text, "Namespace:"), format!("Namespace:      {ns}"));
    let e = err(run(&[
        "status",
        name,
        "--kubeconfig",
        &kubeconfig,
        "--context",
        "no-such-context",
    ]));
    assert!(
        e.starts_with("error: cannot load the kubeconfig: ") && e.contains("no-such-context"),
        "{e}"
    );
    let _ = std::fs::remove_file(&own);

    // extend (ttl): 10m + 5m, and status.expiresAt moves by exactly 5m.
    let want = first + SignedDuration::from_mins(5);
    let text = ok(run_in(ns, &["extend", name, "5m"]));
    log(format!("extend:\n{text}"));
    assert_eq!(
        text.lines().next(),
        Some(format!("flashrollup \"{name}\" extended by 5m: spec.ttl 10m -> 15m").as_str())
    );
    assert!(
        line(&text, "expires at ").starts_with(&format!("expires at {want} (")),
        "{text}"
    );
    let extended = s.rollup(name).await.expect("exists");
    assert_eq!(extended["spec"]["ttl"], "15m");
    assert_eq!(time_at(&extended, "/status/expiresAt"), Some(want), "status.expiresAt");
    assert_eq!(objects::phase(&extended), "Running");
    assert!(
        managers(&extended).iter().any(|m| m == "kubectl-flashrollup"),
        "field manager kubectl-flashrollup: {:?}",
        managers(&extended)
    );
    let e = err(run_in(ns, &["extend", name, "5x"]));
    assert!(e.contains("invalid duration \"5x\""), "{e}");

    // logs: kwok pods run no container, so the kubelet (kwok) has no logs: a clear error.
    let e = err(run_in(ns, &["logs", name, "--tail", "5"]));
    assert!(
        e.starts_with(&format!(
            "error: reading the logs of pod {name}-sequencer-0 (container sequencer): "
        )),
        "{e}"
    );
    let e = err(run_in(ns, &["logs", name, "--verifier", &assigned[0]]));
    assert!(
        e.starts_with(&format!("error: reading the logs of pod {name}-verifier-"))
            && e.contains("(container verifier): "),
        "{e}"
    );
    let unassigned = EXAMPLE_OPERATORS
        .iter()
        .find(|o| !assigned.iter().any(|a| a == *o))
        .expect("one example operator is not assigned");
    let e = err(run_in(ns, &["logs", name, "--verifier", unassigned]));
    assert_eq!(
        e,
        format!(
            "error: operator \"{unassigned}\" is not assigned to flashrollup \"{name}\" (assigned: {})\n",
            assigned.join(", ")
        )
    );
    let follow = run_for(&["logs", name, "-f", "-n", ns], Duration::from_secs(5));
    err(follow);

    // settle: the annotation, then (Discard) straight to TornDown.
    let text = ok(run_in(ns, &["settle", name, "--wait", "--timeout", "60s"]));
    log(format!("settle:\n{text}"));
    assert_eq!(
        text.lines().next(),
        Some(
            format!(
                "flashrollup \"{name}\": settle-now requested; settlement.policy is Discard: it is torn down without settling"
            )
            .as_str()
        )
    );
    assert_eq!(text.lines().last(), Some("torn down without settlement"), "{text}");
    assert!(text.lines().any(|l| l == "phase TornDown"), "{text}");
    let torn = s.rollup(name).await.expect("retained");
    assert_eq!(objects::phase(&torn), "TornDown");
    assert_eq!(
        torn["metadata"]["annotations"]["rollups.flashlayer.dev/settle-now"], "true",
        "the settle-now annotation"
    );
    assert_eq!(
        condition_state(&torn, "Settled"),
        Some(("False".into(), "Discarded".into()))
    );
    let ended = time_at(&torn, "/status/endedAt").expect("status.endedAt");
    assert!(ended < want, "ended at {ended}, before the expiry {want}");
    s.assert_nothing_left(name).await;

    let text = ok(run_in(ns, &["status", name]));
    assert_eq!(line(&text, "Phase:"), "Phase:          TornDown");
    assert!(
        line(&text, "Ended:").starts_with(&format!("Ended:          {ended} (")),
        "{text}"
    );
    assert_eq!(
        line(&text, "Expires:"),
        format!("Expires:        {want} (not reached: the rollup ended early)")
    );

    // After the end: extend refused, settle has nothing to do, no pod to read.
    let e = err(run_in(ns, &["extend", name, "5m"]));
    assert_eq!(
        e,
        format!(
            "error: flashrollup \"{name}\" already ended at {ended} and is TornDown: its lifetime cannot be extended (a ttl or expiresAt change cannot reopen a sealed chain)\n"
        )
    );
    assert_eq!(s.rollup(name).await.expect("exists")["spec"]["ttl"], "15m", "unchanged");
    let text = ok(run_in(ns, &["settle", name]));
    assert_eq!(
        text,
        format!("flashrollup \"{name}\" already ended at {ended} and is TornDown: nothing to settle\n")
    );
    let e = err(run_in(ns, &["logs", name]));
    assert_eq!(
        e,
        format!(
            "error: flashrollup \"{name}\" in namespace \"{ns}\" has no sequencer pod (phase TornDown: its workloads are gone)\n"
        )
    );

    // A name that does not exist.
    for args in [
        vec!["status", "nope"],
        vec!["extend", "nope", "1m"],
        vec!["settle", "nope"],
        vec!["logs", "nope"],
    ] {
        let e = err(run_in(ns, &args));
        assert_eq!(
            e,
            format!("error: flashrollup \"nope\" not found in namespace \"{ns}\"\n"),
            "{args:?}"
        );
    }
}

/// A rollup with an absolute `expiresAt`: extend moves that instant, and the operator follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make e2e"]
async fn plugin_extend_expires_at() {
    let s = ready_scenario("plugin-abs").await;
    let ns = s.ns.as_str();
    let name = "abs";
    let rollup = Rollup::new(name).expires_in(Duration::from_secs(300));
    let at = rollup.expires_at().expect("an absolute expiry");
    s.apply_ok(&rollup.yaml());
    let running = s.wait_phase(name, "Running", Duration::from_secs(20)).await;
    assert_eq!(time_at(&running, "/status/expiresAt"), Some(at));

    let want = at + SignedDuration::from_secs(90);
    let text = ok(run_in(ns, &["extend", name, "1m30s"]));
    log(format!("extend:\n{text}"));
    assert_eq!(
        text,
        format!(
            "flashrollup \"{name}\" extended by 1m30s: spec.expiresAt {at} -> {want}\n{}",
            line(&text, "expires at ")
        ) + "\n"
    );
    assert!(
        line(&text, "expires at ").starts_with(&format!("expires at {want} (")),
        "{text}"
    );
    let r = s.rollup(name).await.expect("exists");
    assert_eq!(time_at(&r, "/spec/expiresAt"), Some(want), "spec.expiresAt");
    assert_eq!(time_at(&r, "/status/expiresAt"), Some(want), "status.expiresAt");
    let text = ok(run_in(ns, &["status", name]));
    assert_eq!(line(&text, "Lifetime:"), format!("Lifetime:       expiresAt {want}"));
}
