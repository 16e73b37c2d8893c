//! Teardown: delete every object a rollup owns and count what is still there. Idempotent, and a
//! 404 counts as done. Garbage collection through ownerReferences would get there too; the
//! explicit pass makes "nothing left" something we check rather than hope for.
//!
//! A thousand rollups expiring together must not flood the API server, nor hold the workers
//! that record other rollups' expiry: the first pass sends every kind's deletes at once, so it
//! takes about two round trips however many kinds there are, and it sends as few as it can:
//! one `deletecollection` by label per kind (not Services: older API servers refuse it for
//! them), no list of the ReplicaSets the Deployment takes with it. Then the workloads and their
//! Pods go away in the garbage collector's time, which the caches follow (each Pod gone wakes
//! the rollup): later passes ask the API server nothing until the caches hold none of them,
//! and then ask about every kind once, at once, to make sure.

use futures::future::{try_join, try_join_all};
use futures::try_join;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, PropagationPolicy};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::Context;
use super::caches::of_rollup;
use super::error::{Error, Result};
use crate::api::FlashRollup;
use crate::api::flashrollup::VolumePolicy;
use crate::builders::{admin_secret_name, children_selector};

/// Delete what is left of the rollup's children; return how many objects still exist (on a
/// later pass, those the caches hold, else those the API server lists: the rollup is done when
/// it says 0).
pub async fn tear_down(ctx: &Context, rollup: &FlashRollup) -> Result<usize> {
    let client = &ctx.client;
    let ns = rollup.namespace().unwrap_or_default();
    let selector = children_selector(&rollup.name_any());
    let volumes = rollup.spec.teardown.volume == VolumePolicy::Delete;
    let workloads = || async {
        let (sts, deploy) = try_join(
            delete_cached(&ctx.statefulsets, client, rollup),
            delete_cached(&ctx.deployments, client, rollup),
        )
        .await?;
        Ok::<_, Error>(sts + deploy)
    };
    let volume_claims = || async {
        if volumes {
            clear::<PersistentVolumeClaim>(client, &ns, &selector).await
        } else {
            Ok(0)
        }
    };

    let pods = of_rollup(&ctx.pods, rollup).len();

    let uid = rollup.metadata.uid.clone().unwrap_or_default();
    let first = ctx.teardowns.lock().await.insert(uid);
    if first {
        // ReplicaSets and Pods belong to the workloads; they go with them.
        let (workloads, services, maps, policies, budgets, claims, secret) = try_join!(
            workloads(),
            sweep::<Service>(client, &ns, &selector, true),
            clear::<ConfigMap>(client, &ns, &selector),
            clear::<NetworkPolicy>(client, &ns, &selector),
            clear::<PodDisruptionBudget>(client, &ns, &selector),
            volume_claims(),
            delete_secret(client, rollup),
        )?;
        let found = workloads + pods + services + maps + policies + budgets + claims + secret;
        // Nothing found at all: only the check below can tell that nothing is left (a
        // ReplicaSet whose Deployment is already gone, say).
        if found > 0 {
            return Ok(found);
        }
    } else {
        // The workloads' Pods outlive them: while either is in the caches, there is nothing to
        // ask.
        let left = workloads().await? + pods;
        if left > 0 {
            return Ok(left);
        }
    }
    // The caches hold none: the API server confirms for every kind, and whatever a failed
    // delete or a late write left behind is deleted now.
    let (pods, sets, claims, services, maps, policies, budgets) = try_join!(
        sweep::<Pod>(client, &ns, &selector, false),
        sweep::<ReplicaSet>(client, &ns, &selector, false),
        volume_claims(),
        sweep::<Service>(client, &ns, &selector, true),
        clear::<ConfigMap>(client, &ns, &selector),
        clear::<NetworkPolicy>(client, &ns, &selector),
        clear::<PodDisruptionBudget>(client, &ns, &selector),
    )?;
    let left = pods + sets + claims + services + maps + policies + budgets;
    if left > 0 {
        return Ok(left);
    }
    delete_secret(client, rollup).await
}

/// A namespaced kind a rollup owns, as the API calls here need it.
trait Child:
    Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug
{
}

impl<K> Child for K where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
{
}

/// Forget a rollup whose teardown is over.
pub async fn done(ctx: &Context, rollup: &FlashRollup) {
    if let Some(uid) = &rollup.metadata.uid {
        ctx.teardowns.lock().await.remove(uid);
    }
}

/// The operator may not list Secrets (least privilege), so the one it made goes by name.
async fn delete_secret(client: &Client, rollup: &FlashRollup) -> Result<usize> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &rollup.namespace().unwrap_or_default());
    let name = admin_secret_name(rollup);
    match secrets.delete(&name, &DeleteParams::background()).await {
        Ok(either) => Ok(usize::from(either.is_left())),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(0),
        Err(source) => Err(Error::Delete {
            what: format!("Secret {name}"),
            source,
        }),
    }
}

/// Delete the rollup's objects of a cached kind (by its label), count them.
async fn delete_cached<K: Child>(cache: &Store<K>, client: &Client, rollup: &FlashRollup) -> Result<usize> {
    let mine = of_rollup(cache, rollup);
    let api: Api<K> = Api::namespaced(client.clone(), &rollup.namespace().unwrap_or_default());
    let live = mine.iter().filter(|o| o.meta().deletion_timestamp.is_none());
    try_join_all(live.map(|o| delete_one(&api, o.name_any()))).await?;
    Ok(mine.len())
}

/// Delete one object in the background (its dependents go with it); gone already counts as done.
async fn delete_one<K>(api: &Api<K>, name: String) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(&name, &background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(Error::Delete {
            what: format!("{} {name}", K::kind(&())),
            source,
        }),
    }
}

fn background() -> DeleteParams {
    DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    }
}

/// Delete every object of one kind with the rollup's labels in one request; count what was
/// there. The API server lists and deletes them itself: one round trip, one request to admit.
async fn clear<K: Child>(client: &Client, ns: &str, selector: &str) -> Result<usize> {
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    match api
        .delete_collection(&background(), &ListParams::default().labels(selector))
        .await
    {
        // Built-in kinds answer with the objects deleted; a bare Status (which they do not
        // send) names none.
        Ok(deleted) => Ok(deleted.left().map_or(0, |list| list.items.len())),
        Err(source) => Err(Error::Delete {
            what: format!("{}s labelled {selector}", K::kind(&())),
            source,
        }),
    }
}

/// List one kind by the rollup's labels, delete each (if `delete`), count what is there. For
/// Services (older API servers have no `deletecollection` for them) and the kinds this operator
/// only reads.
async fn sweep<K: Child>(client: &Client, ns: &str, selector: &str, delete: bool) -> Result<usize> {
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let list = api
        .list_metadata(&ListParams::default().labels(selector))
        .await
        .map_err(|source| Error::Read {
            what: "children",
            source,
        })?;
    if delete {
        let live = list.items.iter().filter(|i| i.metadata.deletion_timestamp.is_none());
        try_join_all(live.map(|i| delete_one(&api, i.name_any()))).await?;
    }
    Ok(list.items.len())
}
