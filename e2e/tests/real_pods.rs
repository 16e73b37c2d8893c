//! Scenarios on pods that really run: the real node of `e2e/cluster up --real` (containerd,
//! runc, CNI bridge, kubelet, kube-proxy, CoreDNS), the operator in the cluster from the Helm
//! chart with its image, and the node image for the sequencer and verifiers.
//!
//! They run only with `FLASHLAYER_REAL=1` (`e2e/run --real` sets it, after building and
//! loading the images); in any other run they return at once, as the kwok suite has no real
//! node. Run as root (they read /proc and ask containerd what is left on the node).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use flashlayer_e2e::cmd::{self, helm_ok, kubectl_ok};
use flashlayer_e2e::manifests::Rollup;
use flashlayer_e2e::objects;
use flashlayer_e2e::{Check, Scenario, log, until};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde_json::Value;

/// Name of the real node (`e2e/cluster`).
const NODE: &str = "flashlayer-real";
/// anvil's dev account #0: a PUBLIC TEST KEY, funded in the rollup's genesis.
const DEV_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// The operator image e2e/images/build makes (the chart's default repository and appVersion).
const OPERATOR_REPOSITORY: &str = "ghcr.io/flashlayer/flashlayer-operator";
const OPERATOR_TAG: &str = env!("CARGO_PKG_VERSION");

/// The scenario needs the real node: run by `e2e/run --real`, which sets FLASHLAYER_REAL=1 (the
/// kwok run skips it by name). Anywhere else it fails rather than pass without running.
fn require_real_mode() {
    assert_eq!(
        std::env::var("FLASHLAYER_REAL").as_deref(),
        Ok("1"),
        "needs the real node: run it with e2e/run --real"
    );
}

/// The run dir of the cluster: where the admin kubeconfig is.
fn run_dir() -> PathBuf {
    let kubeconfig = PathBuf::from(std::env::var_os("KUBECONFIG").expect("KUBECONFIG is set"));
    kubeconfig.parent().expect("the kubeconfig's directory").to_path_buf()
}

fn cast_bin() -> String {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let p = PathBuf::from(home).join(".cache/flashlayer/npm/node_modules/@foundry-rs/cast-linux-amd64/bin/cast");
    assert!(
        p.exists(),
        "{} is missing (.ci/run installs it from npm: @foundry-rs/cast-linux-amd64)",
        p.display()
    );
    p.to_string_lossy().into_owned()
}

/// `cast args...`: stdout, or the error.
fn cast(args: &[&str]) -> Result<String, String> {
    cmd::run(&cast_bin(), args, None)?
        .ok(&format!("cast {}", args.join(" ")))
        .map(|s| s.trim().to_owned())
}

fn cast_json(args: &[&str]) -> Value {
    let out = cast(args).unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("cast {args:?} printed {out:?}: {e}"))
}

fn hex_u64(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a hex string: {v}"));
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// The chart installed as users install it, with the operator image loaded into the node, and
/// the operator Deployment available (its pod Ready on the real node).
fn install_operator_in_cluster(root: &std::path::Path) {
    let chart = root.join("charts/flashlayer");
    let t0 = Instant::now();
    helm_ok(&[
        "upgrade",
        "--install",
        "flashlayer",
        &chart.to_string_lossy(),
        "-n",
        "flashlayer-system",
        "--create-namespace",
        "--set",
        &format!("image.repository={OPERATOR_REPOSITORY},image.tag={OPERATOR_TAG},image.pullPolicy=Never"),
        "--set",
        "nodeStatusInterval=2s",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    kubectl_ok(
        &[
            "rollout",
            "status",
            "deployment/flashlayer",
            "-n",
            "flashlayer-system",
            "--timeout=120s",
        ],
        None,
    )
    .unwrap_or_else(|e| panic!("the operator Deployment did not become available: {e}"));
    log(format!(
        "operator running in the cluster ({OPERATOR_REPOSITORY}:{OPERATOR_TAG}) after {:.1}s",
        t0.elapsed().as_secs_f64()
    ));
}

/// Two of the example AVSOperators (avs-gold-1, avs-gold-2) with their key Secrets.
fn two_example_operators(root: &std::path::Path) -> String {
    let all = flashlayer_e2e::manifests::example_avs_operators(root);
    all.split("\n---\n")
        .filter(|doc| !doc.contains("avs-gold-3"))
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// Pods of a rollup, as the API has them.
async fn rollup_pods(s: &Scenario, rollup: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.ns);
    pods.list(&ListParams::default().labels(&format!("rollups.flashlayer.dev/rollup={rollup}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn pod_ready(p: &Pod) -> bool {
    let statuses = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    !statuses.is_empty() && statuses.iter().all(|c| c.ready) && p.metadata.deletion_timestamp.is_none()
}

fn pod_line(p: &Pod) -> String {
    let status = p.status.as_ref();
    format!(
        "{} {} ready={} ip={}",
        p.metadata.name.as_deref().unwrap_or("?"),
        status.and_then(|s| s.phase.as_deref()).unwrap_or("?"),
        pod_ready(p),
        status.and_then(|s| s.pod_ip.as_deref()).unwrap_or("-")
    )
}

/// What containerd holds for a namespace's pods (containers and sandboxes).
fn containers_of_namespace(ns: &str) -> Vec<String> {
    let sock = run_dir().join("containerd/containerd.sock");
    let filter = format!("labels.\"io.kubernetes.pod.namespace\"=={ns}");
    let out = cmd::run(
        "ctr",
        &[
            "--address",
            &sock.to_string_lossy(),
            "-n",
            "k8s.io",
            "containers",
            "ls",
            "-q",
            &filter,
        ],
        None,
    )
    .and_then(|o| o.ok("ctr containers ls"))
    .unwrap_or_else(|e| panic!("{e}"));
    out.lines().map(str::to_owned).collect()
}

/// Mount points that belong to any of these pod UIDs, or to a path.
fn mounts_matching(needles: &[String]) -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|m| needles.iter().any(|n| m.contains(n.as_str())))
        .map(str::to_owned)
        .collect()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn pid_file(name: &str) -> Option<u32> {
    std::fs::read_to_string(run_dir().join(format!("{name}.pid")))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Every process in a cgroup (v1) directory and below.
fn cgroup_pids(dir: &std::path::Path, out: &mut Vec<u32>) {
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                cgroup_pids(&e.path(), out);
            }
        }
    }
}

/// RSS of the node: kubelet, containerd, its shims, and every process of every pod.
fn node_memory() -> String {
    let sock = run_dir()
        .join("containerd/containerd.sock")
        .to_string_lossy()
        .into_owned();
    let kubelet = pid_file("kubelet").map(rss_kib).unwrap_or(0);
    let containerd = pid_file("containerd").map(rss_kib).unwrap_or(0);
    let mut shims = 0;
    let mut n_shims = 0;
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.starts_with("/usr/bin/containerd-shim-runc-v2") && cmdline.contains(&sock) {
                shims += rss_kib(pid);
                n_shims += 1;
            }
        }
    }
    let bridge = std::fs::read_to_string(run_dir().join("bridge")).unwrap_or_else(|_| "flbr0".into());
    let root = PathBuf::from(format!("/sys/fs/cgroup/memory/flashlayer.{}", bridge.trim()));
    let mut pids = Vec::new();
    cgroup_pids(&root, &mut pids);
    pids.sort_unstable();
    pids.dedup();
    let pods: u64 = pids.iter().map(|p| rss_kib(*p)).sum();
    let cgroup_usage = std::fs::read_to_string(root.join("memory.usage_in_bytes"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let mib = |k: u64| k as f64 / 1024.0;
    format!(
        "node memory (RSS): kubelet {:.0} MiB + containerd {:.0} MiB + {n_shims} shims {:.0} MiB + pods ({} processes) {:.0} MiB = {:.0} MiB; pods' memory cgroup usage (with page cache) {:.0} MiB",
        mib(kubelet),
        mib(containerd),
        mib(shims),
        pids.len(),
        mib(pods),
        mib(kubelet + containerd + shims + pods),
        cgroup_usage as f64 / 1048576.0
    )
}

/// On a panic: what the in-cluster operator and the node said.
struct DumpOnPanic;
impl Drop for DumpOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for args in [
                &["logs", "-n", "flashlayer-system", "deployment/flashlayer", "--tail=80"][..],
                &["get", "pods", "-A", "-o", "wide"][..],
                &["describe", "node", NODE][..],
            ] {
                let out = cmd::kubectl(args, None);
                eprintln!("===== kubectl {} =====\n{}{}", args.join(" "), out.stdout, out.stderr);
            }
            let kubelet_log = std::fs::read_to_string(run_dir().join("kubelet.log")).unwrap_or_default();
            let tail: Vec<&str> = kubelet_log.lines().rev().take(40).collect();
            eprintln!("===== kubelet.log (tail) =====");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// A Discard rollup with 2 AVS operators on the real node, driven by the operator running in
/// the cluster: first block (timed from `kubectl apply`), all containers Ready, a transaction
/// sent with `cast` through the Service's cluster IP, its block finalized by the MACH quorum,
/// the sequencer pod deleted and its replacement resuming from the volume, then TTL expiry
/// tearing everything down with nothing left on the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real node: e2e/run --real"]
async fn real_pods_discard_lifecycle() {
    require_real_mode();
    let _dump = DumpOnPanic;
    let s = Scenario::new("real").await;
    let root = s.installed.root.clone();
    install_operator_in_cluster(&root);

    s.apply_ok(&two_example_operators(&root));
    s.wait_avs_operators_ready(&["avs-gold-1", "avs-gold-2"], Duration::from_secs(30))
        .await;

    // ---- kubectl apply -> first block -------------------------------------------------
    let name = "devnet";
    let rollup = Rollup::new(name).min_operators(2).ttl("10m");
    let pods_api: Api<Pod> = Api::namespaced(s.client.clone(), &s.ns);
    let seq_pod = format!("{name}-sequencer-0");
    let t0 = Instant::now();
    s.apply_ok(&rollup.yaml());
    let first_block = until("the sequencer's first block", Duration::from_secs(120), || async {
        let pod = match pods_api.get_opt(&seq_pod).await {
            Ok(Some(p)) => p,
            _ => return Check::Waiting("no sequencer pod yet".into()),
        };
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
            return Check::Waiting(format!("pod {}", pod_line(&pod)));
        };
        match cast(&["block-number", "--rpc-url", &format!("http://{ip}:8545")]) {
            Ok(n) if n.parse::<u64>().unwrap_or(0) >= 1 => Check::Done(t0.elapsed()),
            Ok(n) => Check::Waiting(format!("pod {ip}: height {n}")),
            Err(_) => Check::Waiting(format!("pod {ip}: JSON-RPC not answering yet")),
        }
    })
    .await;
    log(format!(
        "FIGURE apply -> first block: {:.2}s",
        first_block.as_secs_f64()
    ));

    // ---- Running, every container Ready, on the real node -----------------------------
    let running = s.wait_phase(name, "Running", Duration::from_secs(60)).await;
    log(format!("FIGURE apply -> Running: {:.2}s", t0.elapsed().as_secs_f64()));
    assert_eq!(objects::assigned_operators(&running).len(), 2, "two operators assigned");
    let pods = until("3 pods with every container Ready", Duration::from_secs(60), || async {
        let pods = rollup_pods(&s, name).await;
        if pods.len() == 3 && pods.iter().all(pod_ready) {
            Check::Done(pods)
        } else {
            Check::Waiting(pods.iter().map(pod_line).collect::<Vec<_>>().join(", "))
        }
    })
    .await;
    log(format!(
        "FIGURE apply -> all 3 pods Ready: {:.2}s",
        t0.elapsed().as_secs_f64()
    ));
    for p in &pods {
        let node = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
        assert_eq!(node, Some(NODE), "{} runs on the real node", pod_line(p));
    }
    let mut pod_uids: Vec<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
    // The chain data volume (a hostPath PersistentVolume on this machine).
    let volume = kubectl_ok(
        &[
            "get",
            "pvc",
            &format!("data-{name}-sequencer-0"),
            "-n",
            &s.ns,
            "-o",
            "jsonpath={.spec.volumeName}",
        ],
        None,
    )
    .expect("the sequencer's PVC");
    let pv_paths =
        vec![kubectl_ok(&["get", "pv", &volume, "-o", "jsonpath={.spec.hostPath.path}"], None).expect("its PV")];
    log(format!("chain data volume {volume} at {pv_paths:?}"));
    log(node_memory());

    // ---- cast send through the Service's cluster IP (kube-proxy) -----------------------
    let cluster_ip = kubectl_ok(
        &[
            "get",
            "service",
            &format!("{name}-rpc"),
            "-n",
            &s.ns,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
        None,
    )
    .expect("the rpc Service");
    let url = format!("http://{cluster_ip}:8545");
    log(format!("JSON-RPC through the Service: {url}"));
    let receipt = cast_json(&[
        "send",
        "--rpc-url",
        &url,
        "--private-key",
        DEV_KEY,
        "--json",
        "0x00000000000000000000000000000000000000bb",
        "--value",
        "12345",
    ]);
    assert_eq!(receipt["status"], "0x1", "{receipt}");
    let tx_hash = receipt["transactionHash"].as_str().expect("transactionHash").to_owned();
    let tx_block = hex_u64(&receipt["blockNumber"]);
    log(format!("cast send: receipt status 0x1 in block {tx_block} ({tx_hash})"));

    // ---- the block becomes finalized (MACH quorum of the 2 verifiers) ------------------
    until(
        "the transaction's block to be finalized",
        Duration::from_secs(60),
        || async {
            match cast(&["block", "finalized", "--json", "--rpc-url", &url]) {
                Ok(out) => {
                    let b: Value = serde_json::from_str(&out).unwrap_or_default();
                    let n = b["number"].as_str().map(|_| hex_u64(&b["number"])).unwrap_or(0);
                    if n >= tx_block {
                        Check::Done(())
                    } else {
                        Check::Waiting(format!("finalized {n}"))
                    }
                }
                Err(e) => Check::Waiting(e),
            }
        },
    )
    .await;

    // ---- the kubectl plugin reads the containers' logs ------------------------------
    let seq_logs = flashlayer_e2e::plugin::run_in(&s.ns, &["logs", "devnet", "--tail", "50"]);
    assert!(seq_logs.success, "kubectl flashrollup logs devnet: {}", seq_logs.stderr);
    assert!(
        seq_logs.stdout.contains("sequencer started"),
        "the sequencer's log (kubectl flashrollup logs devnet):\n{}",
        seq_logs.stdout
    );
    let verifier_logs =
        flashlayer_e2e::plugin::run_in(&s.ns, &["logs", "devnet", "--verifier", "avs-gold-1", "--tail", "50"]);
    assert!(
        verifier_logs.success,
        "kubectl flashrollup logs --verifier: {}",
        verifier_logs.stderr
    );
    assert!(
        verifier_logs.stdout.contains("verifier started"),
        "the verifier's log (kubectl flashrollup logs devnet --verifier avs-gold-1):\n{}",
        verifier_logs.stdout
    );
    log(format!(
        "kubectl flashrollup logs: {} sequencer and {} verifier lines",
        seq_logs.stdout.lines().count(),
        verifier_logs.stdout.lines().count()
    ));

    // ---- the sequencer pod deleted: its replacement resumes from the volume -----------
    let height: u64 = cast(&["block-number", "--rpc-url", &url])
        .expect("block-number")
        .parse()
        .expect("a number");
    let before = cast_json(&["block", &height.to_string(), "--json", "--rpc-url", &url]);
    let old_uid = pods_api
        .get(&seq_pod)
        .await
        .expect("the sequencer pod")
        .metadata
        .uid
        .expect("a uid");
    let t_delete = Instant::now();
    kubectl_ok(&["delete", "pod", &seq_pod, "-n", &s.ns, "--wait=true"], None).expect("deleting the sequencer pod");
    let new_uid = until(
        "the replacement sequencer pod to be Ready",
        Duration::from_secs(90),
        || async {
            match pods_api.get_opt(&seq_pod).await {
                Ok(Some(p)) if p.metadata.uid.as_deref() != Some(old_uid.as_str()) && pod_ready(&p) => {
                    Check::Done(p.metadata.uid.clone().unwrap_or_default())
                }
                Ok(Some(p)) => Check::Waiting(pod_line(&p)),
                _ => Check::Waiting("no pod".into()),
            }
        },
    )
    .await;
    log(format!(
        "FIGURE sequencer pod delete -> replacement Ready: {:.2}s",
        t_delete.elapsed().as_secs_f64()
    ));
    pod_uids.push(new_uid);
    let after = until(
        &format!("block {height} from the replacement"),
        Duration::from_secs(30),
        || async {
            match cast(&["block", &height.to_string(), "--json", "--rpc-url", &url]) {
                Ok(out) => match serde_json::from_str::<Value>(&out) {
                    Ok(b) if b["hash"].is_string() => Check::Done(b),
                    _ => Check::Waiting(out),
                },
                Err(e) => Check::Waiting(e),
            }
        },
    )
    .await;
    assert_eq!(after["hash"], before["hash"], "block {height} hash after the restart");
    assert_eq!(
        after["stateRoot"], before["stateRoot"],
        "block {height} state root after the restart"
    );
    let resumed: u64 = cast(&["block-number", "--rpc-url", &url])
        .expect("block-number")
        .parse()
        .expect("a number");
    assert!(resumed >= height, "resumed at {resumed}, below {height}");
    let r = cast_json(&["receipt", "--json", "--rpc-url", &url, &tx_hash]);
    assert_eq!(r["status"], "0x1", "the receipt survived the restart: {r}");
    log(format!(
        "resumed from the volume: block {height} has the same hash and state root {}; height now {resumed}",
        after["stateRoot"]
    ));

    // ---- TTL expiry tears everything down; nothing left on the node --------------------
    // Shorten the life to its minimum: it ends one minute after Running began.
    s.patch_rollup(name, serde_json::json!({"spec": {"ttl": "1m"}})).await;
    let torn = s.wait_phase(name, "TornDown", Duration::from_secs(120)).await;
    log(format!("TornDown: {}", flashlayer_e2e::scenario::describe(&torn)));
    let t_torn = Instant::now();
    until(
        "no pod, container, sandbox or mount of the rollup left on the node",
        Duration::from_secs(120),
        || async {
            let pods = rollup_pods(&s, name).await;
            let containers = containers_of_namespace(&s.ns);
            let mounts = mounts_matching(&pod_uids);
            if pods.is_empty() && containers.is_empty() && mounts.is_empty() {
                Check::Done(())
            } else {
                Check::Waiting(format!(
                    "{} pods, {} containers/sandboxes, {} mounts",
                    pods.len(),
                    containers.len(),
                    mounts.len()
                ))
            }
        },
    )
    .await;
    log(format!(
        "FIGURE TornDown -> node clean (kubelet container GC runs every minute): {:.1}s",
        t_torn.elapsed().as_secs_f64()
    ));
    until(
        "the chain data volume to be deleted",
        Duration::from_secs(60),
        || async {
            let left: Vec<&String> = pv_paths.iter().filter(|p| std::path::Path::new(p).exists()).collect();
            if left.is_empty() {
                Check::Done(())
            } else {
                Check::Waiting(format!("still on disk: {left:?}"))
            }
        },
    )
    .await;
    log(node_memory());
}
