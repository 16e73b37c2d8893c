//! The running operator: shared context, the two controllers and what they watch, leader
//! election, the metrics and health server, and graceful shutdown.

pub mod avsoperator;
pub mod caches;
pub mod error;
pub mod events;
pub mod expiry;
pub mod register;
pub mod rollup;
pub mod settle;
pub mod status;
pub mod teardown;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::client::ClientBuilder;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::sync::Mutex;
use tower::limit::ConcurrencyLimitLayer;

use caches::Shared;

use crate::api::flashrollup::Phase;
use crate::api::{AVSOperator, FlashRollup};
use crate::builders::{LABEL_MANAGED_BY, LABEL_ROLLUP, MANAGED_BY};
use crate::http::{self, Health};
use crate::leader::LeaderElector;
use crate::metrics::Metrics;
use crate::settlement::node::NodeClient;

/// Settings of a running operator (from the command line).
#[derive(Clone, Debug)]
pub struct Config {
    pub metrics_addr: SocketAddr,
    pub concurrency: u16,
    /// API requests in flight at most, besides the expiry lane's.
    pub max_api_requests: u16,
    /// How often a Running rollup's height is read from its sequencer; zero disables it.
    pub node_status_interval: Duration,
    /// Override of the sequencer admin URL, with `{namespace}` and `{name}` placeholders.
    pub node_endpoint: Option<String>,
    /// Watch one namespace only; all when unset.
    pub watch_namespace: Option<String>,
    pub leader_election: bool,
    pub lease_namespace: String,
    pub lease_name: String,
    pub identity: String,
}

/// What every reconciliation shares.
pub struct Context {
    /// Every request but the expiry lane's: at most `max_api_requests` in flight.
    pub client: Client,
    /// What the expiry lane writes with.
    pub lane: expiry::Lane,
    pub config: Config,
    pub metrics: Metrics,
    pub events: events::Publisher,
    pub node: NodeClient,
    /// Cache of every FlashRollup (one watch, shared by both controllers).
    pub rollups: Store<FlashRollup>,
    /// Cache of every AVSOperator (one watch, shared by both controllers).
    pub operators: Store<AVSOperator>,
    /// The rollups' sequencer StatefulSets and verifier Deployments (by label, trimmed to what
    /// readiness needs): workloads are observed here, not with a GET per reconciliation.
    pub statefulsets: Store<StatefulSet>,
    pub deployments: Store<Deployment>,
    /// The Pods of those workloads, metadata only: a teardown waits for them from here, woken
    /// as each goes, instead of listing them again and again.
    pub pods: Store<Pod>,
    /// Whether each of the five caches holds its first full list.
    pub loaded: [caches::Loaded; 5],
    /// Rollups (by UID) whose children this process has already sent deletes for: later passes
    /// of a teardown only count what is left.
    pub teardowns: Mutex<HashSet<String>>,
    /// Assignments made but perhaps not yet visible in the cache, by `namespace/name`.
    pub reservations: Mutex<HashMap<String, Vec<String>>>,
    /// Admin tokens read from Secrets, by rollup UID (they never change).
    pub tokens: Mutex<HashMap<String, String>>,
    /// Held from choosing an L1 transaction's nonce until it is sent: rollups that share a
    /// signer key must not sign two transactions with one nonce.
    pub l1_signing: Mutex<()>,
    /// The rollup controller and the expiry lane act on a rollup one at a time, and each reads
    /// the status the other wrote.
    pub turns: expiry::Turns,
}

impl Context {
    /// Wait until every cache holds its first full list. Before that, a missing child or
    /// operator means "not loaded yet", not "gone".
    pub async fn caches_ready(&self) {
        for cache in &self.loaded {
            cache.wait().await;
        }
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens stay out of any debug output.
        f.debug_struct("Context")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Errors that stop the operator.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("connecting to Kubernetes: {0}")]
    Client(#[from] kube::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("node client: {0}")]
    Node(#[from] crate::settlement::node::NodeError),
    #[error("serving metrics: {0}")]
    Http(#[from] std::io::Error),
    #[error("leader election: {0}")]
    Leader(#[from] crate::leader::LeaderError),
}

fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The controller name on the Events this operator publishes.
pub const REPORTER: &str = "flashlayer-operator";

/// A client that keeps at most `limit` requests in flight; the rest wait their turn in order.
/// Over HTTP/1.1 each request in flight holds a connection of its own, with its TLS and read
/// buffers, and a teardown sends several at once: unbounded, a thousand expiries took the
/// operator from 20 open files to 183 (the new ones connections), to an API server that was
/// the bottleneck anyway. The limit counts a request until its response starts, so a watch
/// holds no place for long.
fn bounded_client(config: kube::Config, limit: usize) -> Result<Client, kube::Error> {
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&ConcurrencyLimitLayer::new(limit))
        .build())
}

/// Run the operator until a shutdown signal or the loss of leadership.
pub async fn run(config: Config) -> Result<(), RunError> {
    let kubeconfig = kube::Config::infer().await.map_err(kube::Error::InferConfig)?;
    let client = bounded_client(kubeconfig.clone(), config.max_api_requests.into())?;
    let lane = expiry::Lane::new(Client::try_from(kubeconfig)?, &config.identity);
    let metrics = Metrics::new()?;
    let health = Health::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    tokio::spawn(signal_shutdown(stop_tx.clone()));
    let server = tokio::spawn(http::serve(
        config.metrics_addr,
        metrics.clone(),
        health.clone(),
        stopped(),
    ));

    let elector = config.leader_election.then(|| {
        let leases: Api<Lease> = Api::namespaced(client.clone(), &config.lease_namespace);
        LeaderElector::new(leases, config.lease_name.clone(), config.identity.clone())
    });
    // A standby is healthy and ready: it is doing its job, which is to wait.
    health.set_ready(true);
    if let Some(elector) = &elector {
        tracing::info!(identity = %config.identity, lease = %config.lease_name, "waiting to become leader");
        tokio::select! {
            acquired = elector.acquire() => acquired?,
            _ = stopped() => { return Ok(()); }
        }
        tracing::info!(identity = %config.identity, "became leader");
    }

    let ns = config.watch_namespace.clone();
    let rollups_api: Api<FlashRollup> = api(&client, &ns);
    let operators_api: Api<AVSOperator> = api(&client, &ns);
    // Only the workloads this operator made, not every StatefulSet and Deployment of the cluster.
    let owned = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"));

    let mut rollup_watch = Shared::new(rollups_api, watcher::Config::default(), caches::trim_rollup);
    let rollup_changes = rollup_watch.every_change();
    let rollup_assignments = rollup_watch.changes_of(caches::rollup_assignment);
    let rollup_expiries = rollup_watch.changes_of(caches::rollup_expiry);
    let (rollups, rollups_loaded, rollup_watch) = rollup_watch.run();

    let mut operator_watch = Shared::new(operators_api, watcher::Config::default(), caches::trim_operator);
    let operator_changes = operator_watch.every_change();
    let operator_for_assignment = operator_watch.changes_of(caches::operator_for_assignment);
    let operator_capacity = operator_watch.changes_of(caches::operator_capacity);
    let (operators, operators_loaded, operator_watch) = operator_watch.run();

    let mut sts_watch = Shared::new(
        api::<StatefulSet>(&client, &ns),
        owned.clone(),
        caches::trim_statefulset,
    );
    let sts_changes = sts_watch.every_change();
    let (statefulsets, sts_loaded, sts_watch) = sts_watch.run();

    let mut deploy_watch = Shared::new(api::<Deployment>(&client, &ns), owned.clone(), caches::trim_deployment);
    let deploy_changes = deploy_watch.every_change();
    let (deployments, deploy_loaded, deploy_watch) = deploy_watch.run();

    let mut pod_watch = Shared::new(api::<Pod>(&client, &ns), owned, caches::trim_pod);
    let pod_changes = pod_watch.changes_of(caches::pod_presence);
    let (pods, pods_loaded, pod_watch) = pod_watch.run();

    let watches = [
        tokio::spawn(rollup_watch),
        tokio::spawn(operator_watch),
        tokio::spawn(sts_watch),
        tokio::spawn(deploy_watch),
        tokio::spawn(pod_watch),
    ];

    let ctx = Arc::new(Context {
        client: client.clone(),
        lane,
        config: config.clone(),
        metrics: metrics.clone(),
        events: events::Publisher::new(client.clone(), REPORTER, &config.identity),
        node: NodeClient::new()?,
        rollups: rollups.clone(),
        operators: operators.clone(),
        statefulsets,
        deployments,
        pods,
        loaded: [rollups_loaded, operators_loaded, sts_loaded, deploy_loaded, pods_loaded],
        teardowns: Mutex::new(HashSet::new()),
        reservations: Mutex::new(HashMap::new()),
        tokens: Mutex::new(HashMap::new()),
        l1_signing: Mutex::new(()),
        turns: expiry::Turns::default(),
    });
    let expiry_lane = tokio::spawn(expiry::run(ctx.clone(), rollup_expiries));

    // An AVSOperator change that matters to assignment (spec, labels, readiness, deletion) wakes
    // the rollups it verifies and those still waiting for operators; a change of its assigned
    // count (capacity freed or taken) wakes only the waiting ones.
    let rollups_for_operators = rollups.clone();
    let rollups_for_capacity = rollups.clone();
    let rollups_for_pods = rollups.clone();
    let rollup_controller = Controller::for_shared_stream(rollup_changes, rollups.clone())
        .with_config(ControllerConfig::default().concurrency(config.concurrency))
        .owns_shared_stream(sts_changes)
        .owns_shared_stream(deploy_changes)
        .watches_shared_stream(operator_for_assignment, move |op: Arc<AVSOperator>| {
            let ns = op.namespace();
            let name = op.name_any();
            rollups_for_operators
                .state()
                .into_iter()
                .filter(|r| r.namespace() == ns)
                .filter(|r| could_use_operator(r, &name))
                .map(|r| ObjectRef::from_obj(&*r))
                .collect::<Vec<_>>()
        })
        .watches_shared_stream(operator_capacity, move |op: Arc<AVSOperator>| {
            let ns = op.namespace();
            rollups_for_capacity
                .state()
                .into_iter()
                .filter(|r| r.namespace() == ns)
                .filter(|r| waits_for_operators(r))
                .map(|r| ObjectRef::from_obj(&*r))
                .collect::<Vec<_>>()
        })
        // A Pod going away wakes its rollup only while that rollup tears down: it may be the last.
        .watches_shared_stream(pod_changes, move |pod: Arc<Pod>| {
            let name = pod.labels().get(LABEL_ROLLUP)?;
            let rollup = ObjectRef::new(name).within(&pod.namespace()?);
            rollups_for_pods.get(&rollup).filter(|r| tears_down(r)).map(|_| rollup)
        })
        .graceful_shutdown_on(stopped())
        .run(rollup::reconcile, rollup::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));

    // A rollup's assignment changing updates the counts of the operators of its namespace: the
    // ones it names now and the ones it just let go (few, so all of them). Debounced: a burst of
    // rollup changes (a thousand launched at once) recounts each operator once.
    let operators_for_rollups = operators.clone();
    let operator_controller = Controller::for_shared_stream(operator_changes, operators.clone())
        .with_config(
            ControllerConfig::default()
                .concurrency(config.concurrency)
                .debounce(Duration::from_secs(1)),
        )
        .watches_shared_stream(rollup_assignments, move |r: Arc<FlashRollup>| {
            let ns = r.namespace();
            operators_for_rollups
                .state()
                .into_iter()
                .filter(|o| o.namespace() == ns)
                .map(|o| ObjectRef::from_obj(&*o))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(stopped())
        .run(avsoperator::reconcile, avsoperator::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));

    let gauges = tokio::spawn(phase_gauges(ctx.clone(), stopped()));
    let lost = async {
        match &elector {
            Some(e) => Some(e.renew_loop().await),
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = futures::future::join(rollup_controller, operator_controller) => {}
        lost = lost => {
            if let Some(e) = lost {
                tracing::error!(error = %e, "lost leadership; stopping so that the new leader acts alone");
                let _ = stop_tx.send(true);
                return Err(RunError::Leader(e));
            }
        }
    }
    let _ = stop_tx.send(true);
    if let Some(e) = &elector {
        e.release().await;
    }
    gauges.abort();
    expiry_lane.abort();
    for w in &watches {
        w.abort();
    }
    server.await.map_err(|e| std::io::Error::other(e.to_string()))??;
    tracing::info!("stopped");
    Ok(())
}

/// Whether an AVSOperator change may matter to a rollup: it waits for operators, it lists this
/// one, or it lacks quorum and this one might replace a NotReady member.
fn could_use_operator(rollup: &FlashRollup, operator: &str) -> bool {
    let Some(s) = rollup.status.as_ref() else {
        return true;
    };
    match s.phase {
        None | Some(Phase::Pending) => true,
        Some(Phase::Provisioning | Phase::Running) => {
            s.assigned_operators.iter().any(|a| a.name == operator)
                || status::condition(&s.conditions, crate::api::conditions::QUORUM_MET)
                    .is_some_and(|c| c.status != "True")
        }
        _ => s.assigned_operators.iter().any(|a| a.name == operator),
    }
}

/// Whether a rollup's end is recorded or its deletion asked for: its children are going.
fn tears_down(rollup: &FlashRollup) -> bool {
    rollup.metadata.deletion_timestamp.is_some() || rollup.status.as_ref().is_some_and(|s| s.ended_at.is_some())
}

/// Whether a rollup waits for operators (none assigned yet).
fn waits_for_operators(rollup: &FlashRollup) -> bool {
    matches!(
        rollup.status.as_ref().and_then(|s| s.phase),
        None | Some(Phase::Pending)
    )
}

/// Rollups by phase, counted from the cache every few seconds (not on every reconcile, which
/// would cost O(rollups) each time).
async fn phase_gauges(ctx: Arc<Context>, stopped: impl std::future::Future<Output = ()>) {
    let tick = async {
        loop {
            let mut counts: BTreeMap<Phase, i64> = BTreeMap::new();
            for r in ctx.rollups.state() {
                *counts
                    .entry(r.status.as_ref().and_then(|s| s.phase).unwrap_or_default())
                    .or_default() += 1;
            }
            ctx.metrics.set_phase_counts(&counts);
            ctx.metrics
                .operators_ready
                .set(ctx.operators.state().iter().filter(|o| o.is_ready()).count() as i64);
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    };
    tokio::select! {
        _ = tick => {}
        _ = stopped => {}
    }
}

async fn signal_shutdown(stop: tokio::sync::watch::Sender<bool>) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                let _ = ctrl_c.await;
                let _ = stop.send(true);
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
    let _ = stop.send(true);
}
