//! One test's world: a fresh namespace under Pod Security "restricted", the operator processes
//! it started, helpers to apply and read objects, and the failure dump. Dropping the scenario
//! cleans up after a passing test and dumps (and keeps the namespace) after a failing one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cmd::{self, Output};
use crate::install::{Installed, LEASE, NAMESPACE, installed};
use crate::objects::{self, AVSOPERATOR, FLASHROLLUP, custom_api, get_json};
use crate::operator::Operator;
use crate::wait::{Check, until};
use crate::{log, manifests};

/// Label every child of a rollup carries, with the rollup's name.
pub const ROLLUP_LABEL: &str = "rollups.flashlayer.dev/rollup";
/// `app.kubernetes.io/managed-by` value on every child.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "flashlayer-operator");

/// A test's namespace, client and operators.
pub struct Scenario {
    pub ns: String,
    pub client: Client,
    pub installed: &'static Installed,
    pub rollups: Api<DynamicObject>,
    pub avs: Api<DynamicObject>,
    operators: Vec<Operator>,
}

impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scenario")
            .field("ns", &self.ns)
            .field("operators", &self.operators)
            .finish_non_exhaustive()
    }
}

impl Scenario {
    /// Install once, then create the namespace `e2e-<name>-<suffix>`, labelled
    /// `pod-security.kubernetes.io/enforce=restricted`.
    pub async fn new(name: &str) -> Scenario {
        let installed = installed();
        let client = Client::try_default()
            .await
            .expect("a Kubernetes client from KUBECONFIG");
        let suffix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() % 0x10000)
            .unwrap_or_default();
        let ns = format!("e2e-{name}-{suffix:04x}");
        let manifest = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels:\n    \
             pod-security.kubernetes.io/enforce: restricted\n    pod-security.kubernetes.io/enforce-version: latest\n"
        );
        cmd::kubectl_ok(&["apply", "-f", "-"], Some(&manifest)).expect("creating the test namespace");
        log(format!("scenario {name}: namespace {ns}"));
        Scenario {
            rollups: custom_api(&client, &ns, FLASHROLLUP),
            avs: custom_api(&client, &ns, AVSOPERATOR),
            ns,
            client,
            installed,
            operators: Vec::new(),
        }
    }

    // ---- operators ------------------------------------------------------------------------

    /// Start an operator process with this identity; returns its index.
    pub fn start_operator(&mut self, identity: &str) -> usize {
        let op = Operator::start(self.installed, identity).expect("starting the operator");
        self.operators.push(op);
        self.operators.len() - 1
    }

    /// Start an operator process with this identity and `options`; returns its index.
    pub fn start_operator_with(&mut self, identity: &str, options: &crate::operator::Options) -> usize {
        let op = Operator::start_with(self.installed, identity, options).expect("starting the operator");
        self.operators.push(op);
        self.operators.len() - 1
    }

    /// Like [`Scenario::start_leader`], with `options`.
    pub async fn start_leader_with(&mut self, identity: &str, options: &crate::operator::Options) -> usize {
        let i = self.start_operator_with(identity, options);
        self.wait_leader(identity, Duration::from_secs(30)).await;
        i
    }

    /// Start an operator and wait until it holds the Lease (a previous process released it).
    pub async fn start_leader(&mut self, identity: &str) -> usize {
        let i = self.start_operator(identity);
        self.wait_leader(identity, Duration::from_secs(30)).await;
        i
    }

    /// The operator process at `index`.
    pub fn operator(&mut self, index: usize) -> &mut Operator {
        &mut self.operators[index]
    }

    /// `spec.holderIdentity` of the chart's Lease.
    pub async fn lease_holder(&self) -> Option<String> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), NAMESPACE);
        leases
            .get_opt(LEASE)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    }

    /// Wait until `identity` holds the Lease.
    pub async fn wait_leader(&self, identity: &str, timeout: Duration) {
        until(&format!("{identity} to hold the Lease"), timeout, || async {
            match self.lease_holder().await {
                Some(h) if h == identity => Check::Done(()),
                other => Check::Waiting(format!("holder {other:?}")),
            }
        })
        .await;
    }

    // ---- objects --------------------------------------------------------------------------

    /// `kubectl <args> -n <ns>`.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-n", &self.ns]);
        cmd::kubectl(&all, stdin)
    }

    /// Ends a rollup now, as a user does: the settle-now annotation.
    pub fn settle_now(&self, name: &str) {
        let out = self.kubectl(
            &[
                "annotate",
                "flashrollup",
                name,
                "rollups.flashlayer.dev/settle-now=true",
            ],
            None,
        );
        assert!(out.success, "kubectl annotate {name} settle-now: {}", out.stderr);
    }

    /// `kubectl apply -f -` into the namespace: stdout, or the error kubectl printed.
    pub fn apply(&self, yaml: &str) -> Result<String, String> {
        self.kubectl(&["apply", "-f", "-"], Some(yaml)).ok("kubectl apply")
    }

    /// Apply, failing the test on error.
    pub fn apply_ok(&self, yaml: &str) -> String {
        self.apply(yaml)
            .unwrap_or_else(|e| panic!("{e}\n--- manifest ---\n{yaml}"))
    }

    /// The three example AVSOperators (and their key Secrets), with `capacity` when given.
    pub async fn apply_example_operators(&self, capacity: Option<u32>) {
        let mut yaml = manifests::example_avs_operators(&self.installed.root);
        if let Some(c) = capacity {
            yaml = yaml.replace("capacity: 4", &format!("capacity: {c}"));
        }
        self.apply_ok(&yaml);
    }

    /// Wait until the three example operators are reported Ready by the operator.
    pub async fn wait_operators_ready(&self) {
        self.wait_avs_operators_ready(&manifests::EXAMPLE_OPERATORS, Duration::from_secs(20))
            .await;
    }

    /// Wait until the named AVSOperators are reported Ready by the operator.
    pub async fn wait_avs_operators_ready(&self, names: &[&str], timeout: Duration) {
        until("the AVSOperators to be Ready", timeout, || async {
            let mut not_ready = Vec::new();
            for name in names {
                match self.avs_operator(name).await {
                    Some(o) if objects::str_at(&o, "/status/ready") == Some("True") => {}
                    _ => not_ready.push(*name),
                }
            }
            if not_ready.is_empty() {
                Check::Done(())
            } else {
                Check::Waiting(format!("not Ready: {not_ready:?}"))
            }
        })
        .await;
    }

    /// A FlashRollup as JSON; `None` when it does not exist.
    pub async fn rollup(&self, name: &str) -> Option<Value> {
        get_json(&self.rollups, name).await.expect("reading a FlashRollup")
    }

    /// An AVSOperator as JSON; `None` when it does not exist.
    pub async fn avs_operator(&self, name: &str) -> Option<Value> {
        get_json(&self.avs, name).await.expect("reading an AVSOperator")
    }

    /// Wait until the rollup satisfies `done`; returns it.
    pub async fn wait_rollup(&self, name: &str, what: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        until(&format!("{name}: {what}"), timeout, || async {
            match get_json(&self.rollups, name).await {
                Ok(Some(r)) if done(&r) => Check::Done(r),
                Ok(Some(r)) => Check::Waiting(describe(&r)),
                Ok(None) => Check::Waiting("does not exist".into()),
                Err(e) => Check::Waiting(e),
            }
        })
        .await
    }

    /// Wait for `status.phase == phase`; fails early if the rollup goes Failed.
    pub async fn wait_phase(&self, name: &str, phase: &str, timeout: Duration) -> Value {
        let r = self
            .wait_rollup(name, &format!("phase {phase}"), timeout, |r| {
                objects::phase(r) == phase || objects::phase(r) == "Failed"
            })
            .await;
        assert_eq!(objects::phase(&r), phase, "{name} went Failed: {}", describe(&r));
        r
    }

    /// Merge-patch a FlashRollup.
    pub async fn patch_rollup(&self, name: &str, patch: Value) {
        self.rollups
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("patching FlashRollup {name} with {patch}: {e}"));
    }

    /// Merge-patch an AVSOperator.
    pub async fn patch_avs_operator(&self, name: &str, patch: Value) {
        self.avs
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("patching AVSOperator {name} with {patch}: {e}"));
    }

    /// Every object labelled as a child of `rollup`, as `(kind, object)`, across the kinds a
    /// rollup owns (Secrets cannot be listed by the operator; see [`Scenario::admin_secret`]).
    pub async fn children(&self, rollup: &str) -> Vec<(&'static str, Value)> {
        let selector = format!("{ROLLUP_LABEL}={rollup}");
        let mut all = Vec::new();
        all.extend(self.labelled::<StatefulSet>(&selector).await);
        all.extend(self.labelled::<Deployment>(&selector).await);
        all.extend(self.labelled::<ReplicaSet>(&selector).await);
        all.extend(self.labelled::<Pod>(&selector).await);
        all.extend(self.labelled::<Service>(&selector).await);
        all.extend(self.labelled::<ConfigMap>(&selector).await);
        all.extend(self.labelled::<NetworkPolicy>(&selector).await);
        all.extend(self.labelled::<PodDisruptionBudget>(&selector).await);
        all.extend(self.labelled::<PersistentVolumeClaim>(&selector).await);
        all.extend(self.labelled::<Secret>(&selector).await);
        all
    }

    async fn labelled<K>(&self, selector: &str) -> Vec<(&'static str, Value)>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Serialize
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.ns);
        let kind: &'static str = match K::kind(&()) {
            std::borrow::Cow::Borrowed(k) => k,
            std::borrow::Cow::Owned(_) => "?",
        };
        api.list(&ListParams::default().labels(selector))
            .await
            .unwrap_or_else(|e| panic!("listing {kind} by {selector}: {e}"))
            .items
            .into_iter()
            .map(|o| (kind, serde_json::to_value(o).unwrap_or_default()))
            .collect()
    }

    /// Children of `rollup` that still exist, across kinds, as `Kind/name` (the admin Secret
    /// is looked up by name too).
    pub async fn leftovers(&self, rollup: &str) -> Vec<String> {
        let mut left: Vec<String> = self
            .children(rollup)
            .await
            .iter()
            .map(|(kind, o)| format!("{kind}/{}", o["metadata"]["name"].as_str().unwrap_or("?")))
            .collect();
        let secret = format!("Secret/{rollup}-admin");
        if self.admin_secret(rollup).await.is_some() && !left.contains(&secret) {
            left.push(secret);
        }
        left
    }

    /// Fail the test if any child of `rollup` is left.
    pub async fn assert_nothing_left(&self, rollup: &str) {
        let left = self.leftovers(rollup).await;
        assert!(left.is_empty(), "{rollup}: objects left behind: {left:?}");
    }

    /// The rollup's admin-token Secret `<rollup>-admin`, if it exists.
    pub async fn admin_secret(&self, rollup: &str) -> Option<Value> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.ns);
        api.get_opt(&format!("{rollup}-admin"))
            .await
            .expect("reading the admin Secret")
            .map(|s| serde_json::to_value(s).unwrap_or_default())
    }

    /// `(reason, message)` of the Events about the FlashRollup `name`, oldest first.
    pub async fn events(&self, name: &str) -> Vec<(String, String)> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        let fields = format!("involvedObject.kind=FlashRollup,involvedObject.name={name}");
        let mut events = api
            .list(&ListParams::default().fields(&fields))
            .await
            .expect("listing Events")
            .items;
        events.sort_by_key(|e| {
            e.event_time
                .as_ref()
                .map(|t| t.0)
                .or(e.last_timestamp.as_ref().map(|t| t.0))
                .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
        });
        events
            .into_iter()
            .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect()
    }

    /// Record every phase the rollup goes through, from a watch (nothing is missed, however
    /// short). Needs a multi-thread runtime to keep recording while the test blocks.
    pub fn record_phases(&self, name: &str) -> PhaseLog {
        self.record(name, |r| objects::phase(r).to_owned())
    }

    /// Record each distinct value of `summary(rollup)` that a watch of the rollup sees.
    pub fn record(&self, name: &str, summary: fn(&Value) -> String) -> PhaseLog {
        let entries: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let sink = entries.clone();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let stream = watcher(self.rollups.clone(), config).applied_objects();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let Ok(obj) = event else { continue };
                let Ok(value) = serde_json::to_value(&obj) else {
                    continue;
                };
                let seen = summary(&value);
                let mut e = sink.lock().unwrap_or_else(|p| p.into_inner());
                if e.last().map(|(p, _)| p) != Some(&seen) {
                    e.push((seen, Instant::now()));
                }
            }
        });
        PhaseLog { entries, task }
    }

    // ---- failure dump and cleanup ---------------------------------------------------------

    /// Print what a person needs to see why the test failed.
    pub fn dump(&self) {
        let ns = self.ns.as_str();
        let show = |title: &str, args: &[&str]| {
            let out = cmd::kubectl(args, None);
            eprintln!("===== {title} =====\n{}{}", out.stdout, out.stderr);
        };
        show("events", &["get", "events", "-n", ns, "-o", "wide"]);
        show("pods", &["get", "pods", "-n", ns, "-o", "wide"]);
        show(
            "workloads",
            &[
                "get",
                "statefulsets,deployments,services,configmaps,networkpolicies,poddisruptionbudgets,persistentvolumeclaims",
                "-n",
                ns,
            ],
        );
        show("FlashRollups", &["get", "flashrollups", "-n", ns, "-o", "yaml"]);
        show("AVSOperators", &["get", "avsoperators", "-n", ns, "-o", "yaml"]);
        show("Lease", &["get", "lease", LEASE, "-n", NAMESPACE, "-o", "yaml"]);
        for op in &self.operators {
            eprintln!(
                "===== operator {} log (tail; whole log in {}) =====\n{}",
                op.identity,
                op.log.display(),
                op.log_tail(80)
            );
        }
    }

    /// Delete the rollups (letting a running operator tear them down), then the namespace.
    fn cleanup(&mut self) {
        let ns = self.ns.clone();
        let _ = cmd::kubectl(&["delete", "flashrollups", "--all", "-n", &ns, "--wait=false"], None);
        let operator_running = self.operators.iter_mut().any(Operator::is_running);
        let deadline = Instant::now() + Duration::from_secs(if operator_running { 30 } else { 0 });
        let left = loop {
            let out = cmd::kubectl(&["get", "flashrollups", "-n", &ns, "-o", "name"], None);
            let left: Vec<String> = out.stdout.lines().map(str::to_owned).collect();
            if left.is_empty() || Instant::now() >= deadline {
                break left;
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        for r in &left {
            // No operator left to finalize it: let the namespace go anyway.
            let _ = cmd::kubectl(
                &[
                    "patch",
                    r,
                    "-n",
                    &ns,
                    "--type=merge",
                    "-p",
                    r#"{"metadata":{"finalizers":null}}"#,
                ],
                None,
            );
        }
        let _ = cmd::kubectl(&["delete", "namespace", &ns, "--wait=false"], None);
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump();
            log(format!("FAILED: namespace {} kept for inspection", self.ns));
        } else {
            self.cleanup();
        }
        // The operators stop when the fields drop, after the dump and the cleanup.
    }
}

/// Phases (or other summaries) of a rollup, in the order a watch saw them.
#[derive(Debug)]
pub struct PhaseLog {
    entries: Arc<Mutex<Vec<(String, Instant)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PhaseLog {
    /// The distinct values in order ("" is the rollup before its first status).
    pub fn phases(&self) -> Vec<String> {
        self.entries().into_iter().map(|(p, _)| p).collect()
    }

    fn entries(&self) -> Vec<(String, Instant)> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for PhaseLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One line about a rollup: phase, conditions, assigned operators.
pub fn describe(r: &Value) -> String {
    let conditions: Vec<String> = r
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    format!(
                        "{}={}({})",
                        c["type"].as_str().unwrap_or("?"),
                        c["status"].as_str().unwrap_or("?"),
                        c["reason"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "phase {:?} conditions [{}] assigned {:?}",
        objects::phase(r),
        conditions.join(" "),
        objects::assigned_operators(r)
    )
}
