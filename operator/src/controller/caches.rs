//! One watch and one cache per kind, shared by every controller that reads the kind, trimmed
//! before it is stored, and fanned out to the controllers as triggers.
//!
//! Why not kube's `store_shared` + `subscribe()`: its subscribers never see deletions (a deleted
//! AVSOperator must wake the rollups it verified), and its bounded broadcast stalls the watch
//! while a subscriber is not yet polled. Here the watch task sends each change to unbounded
//! channels, deletions included, and a trigger can be narrowed to the fields its consumer reads:
//! an AVSOperator's assigned count changing (a status write) need not wake a thousand Running
//! rollups.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::api::flashrollup::Phase;
use crate::api::{AVSOperator, FlashRollup, SETTLE_NOW_ANNOTATION};
use crate::builders::LABEL_ROLLUP;

/// Stream of changed objects, as the shared-stream controller API takes them.
pub type Changes<K> = mpsc::UnboundedReceiver<Arc<K>>;

/// Whether a cache holds its first full list. Not `Store::wait_until_ready`: its one-shot
/// channel wakes only the last of several tasks waiting on it at once, and every reconciliation
/// waits here.
#[derive(Clone, Debug)]
pub struct Loaded(watch::Receiver<bool>);

impl Loaded {
    pub async fn wait(&self) {
        let _ = self.0.clone().wait_for(|loaded| *loaded).await;
    }
}

/// Which changes a consumer hears of: every one, or those that change a digest of the fields it
/// reads (a deletion always counts).
pub type Relevance<K> = fn(&K) -> u64;

struct Output<K: Resource> {
    tx: mpsc::UnboundedSender<Arc<K>>,
    relevance: Option<Relevance<K>>,
    /// The digest each object had when this consumer last heard of it.
    seen: HashMap<ObjectRef<K>, u64>,
}

/// A watch being set up: its consumers are added before it runs.
pub struct Shared<K: Resource> {
    api: Api<K>,
    config: watcher::Config,
    trim: fn(&mut K),
    outputs: Vec<Output<K>>,
}

impl<K: Resource> Debug for Shared<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("kind", &std::any::type_name::<K>())
            .field("consumers", &self.outputs.len())
            .finish_non_exhaustive()
    }
}

impl<K> Shared<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    pub fn new(api: Api<K>, config: watcher::Config, trim: fn(&mut K)) -> Self {
        Self {
            api,
            config,
            trim,
            outputs: Vec::new(),
        }
    }

    /// A consumer that hears of every change.
    pub fn every_change(&mut self) -> Changes<K> {
        self.output(None)
    }

    /// A consumer that hears of a change only when `relevance` of the object changes.
    pub fn changes_of(&mut self, relevance: Relevance<K>) -> Changes<K> {
        self.output(Some(relevance))
    }

    fn output(&mut self, relevance: Option<Relevance<K>>) -> Changes<K> {
        let (tx, rx) = mpsc::unbounded();
        self.outputs.push(Output {
            tx,
            relevance,
            seen: HashMap::new(),
        });
        rx
    }

    /// The cache, whether it holds its first full list yet, and the task that keeps it and
    /// feeds the consumers (it must be polled).
    pub fn run(self) -> (Store<K>, Loaded, impl Future<Output = ()> + Send + 'static) {
        let (reader, writer) = reflector::store();
        let (loaded_tx, loaded) = watch::channel(false);
        let Shared {
            api,
            config,
            trim,
            mut outputs,
        } = self;
        let events = reflector(writer, watcher(api, config).default_backoff().modify(trim));
        let task = async move {
            futures::pin_mut!(events);
            // A (re)list's objects enter the cache all at once, when the list is complete: the
            // consumers hear of them only then, or a reconciler would look them up in vain.
            let mut listed: Vec<Arc<K>> = Vec::new();
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::Init) => listed.clear(),
                    Ok(watcher::Event::InitApply(obj)) => listed.push(Arc::new(obj)),
                    Ok(watcher::Event::InitDone) => {
                        for obj in listed.drain(..) {
                            send(&mut outputs, &obj);
                        }
                        loaded_tx.send_replace(true);
                    }
                    Ok(watcher::Event::Apply(obj)) => send(&mut outputs, &Arc::new(obj)),
                    Ok(watcher::Event::Delete(obj)) => {
                        let obj = Arc::new(obj);
                        for out in &mut outputs {
                            out.seen.remove(&ObjectRef::from_obj(&*obj));
                            let _ = out.tx.unbounded_send(obj.clone());
                        }
                    }
                    // The watcher retries (with backoff); the cache keeps its last state meanwhile.
                    Err(e) => tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying"),
                }
            }
        };
        (reader, Loaded(loaded), task)
    }
}

/// Tell each consumer of a changed object, unless the change is irrelevant to it.
fn send<K>(outputs: &mut [Output<K>], obj: &Arc<K>)
where
    K: Resource<DynamicType = ()>,
{
    for out in outputs {
        if let Some(relevance) = out.relevance {
            let digest = relevance(obj);
            if out.seen.insert(ObjectRef::from_obj(&**obj), digest) == Some(digest) {
                continue;
            }
        }
        let _ = out.tx.unbounded_send(obj.clone());
    }
}

fn reflector<K, S>(writer: reflector::store::Writer<K>, stream: S) -> impl Stream<Item = S::Item>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
    S: Stream<Item = watcher::Result<watcher::Event<K>>>,
{
    reflector::reflector(writer, stream)
}

fn digest(value: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// Bookkeeping no reconciler reads, dropped before it is cached: managedFields (often the
/// largest part of an object) and kubectl's copy of the last applied object.
fn trim_meta(meta: &mut ObjectMeta, keep_annotations: &[&str]) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|k, _| keep_annotations.contains(&k.as_str()));
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

pub fn trim_rollup(r: &mut FlashRollup) {
    trim_meta(&mut r.metadata, &[SETTLE_NOW_ANNOTATION]);
}

pub fn trim_operator(o: &mut AVSOperator) {
    trim_meta(&mut o.metadata, &[]);
}

/// The rollup reconciler reads a child's existence, owner, labels, deletion and ready replicas:
/// the spec and the rest of the status stay out of the cache.
pub fn trim_statefulset(s: &mut StatefulSet) {
    trim_meta(&mut s.metadata, &[]);
    s.spec = None;
    if let Some(st) = s.status.as_mut() {
        st.conditions = None;
    }
}

pub fn trim_deployment(d: &mut Deployment) {
    trim_meta(&mut d.metadata, &[]);
    d.spec = None;
    if let Some(st) = d.status.as_mut() {
        st.conditions = None;
    }
}

/// A rollup's children in a cache (by its label).
pub fn of_rollup<K>(cache: &Store<K>, rollup: &FlashRollup) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    let ns = rollup.namespace();
    let name = rollup.name_any();
    cache
        .state()
        .into_iter()
        .filter(|o| o.namespace() == ns && o.labels().get(LABEL_ROLLUP) == Some(&name))
        .collect()
}

/// Teardown counts a rollup's Pods (they outlive its workloads until the garbage collector gets
/// to them): their names, labels and deletion are all it reads.
pub fn trim_pod(p: &mut Pod) {
    trim_meta(&mut p.metadata, &[]);
    p.spec = None;
    p.status = None;
}

/// A Pod matters to a rollup by being there and by going away, not by its status changing.
pub fn pod_presence(_: &Pod) -> u64 {
    0
}

/// What an AVSOperator change means to assignment: its spec, labels and readiness. Not its
/// status counts, which it rewrites whenever a rollup comes or goes.
pub fn operator_for_assignment(o: &AVSOperator) -> u64 {
    digest(&(
        o.metadata.generation,
        o.metadata.labels.as_ref(),
        o.is_ready(),
        o.metadata.deletion_timestamp.is_some(),
    ))
}

/// What an AVSOperator change means to a rollup waiting for capacity: its assigned count too.
pub fn operator_capacity(o: &AVSOperator) -> u64 {
    digest(&(operator_for_assignment(o), o.status.as_ref().map(|s| s.assigned_count)))
}

/// What a rollup change means to the expiry lane: when its lifetime ends, and whether that end
/// is still to be recorded.
pub fn rollup_expiry(r: &FlashRollup) -> u64 {
    digest(&(super::expiry::due(r), r.metadata.uid.as_deref()))
}

/// What a rollup change means to the AVSOperators' accounting: whom it names, and whether it
/// still holds them.
pub fn rollup_assignment(r: &FlashRollup) -> u64 {
    let s = r.status.as_ref();
    digest(&(
        s.map(|s| s.assigned_operators.iter().map(|a| a.name.as_str()).collect::<Vec<_>>()),
        s.and_then(|s| s.phase) == Some(Phase::TornDown),
    ))
}
