//! Teardown: delete every object a rollup owns and count what is still there. Idempotent, and a
//! 404 counts as done. Garbage collection through ownerReferences would get there too; the
//! explicit pass makes "nothing left" something we check rather than hope for.
//!
//! A thousand rollups expiring together must not flood the API server: the first pass lists
//! and deletes every kind; later passes (once a second until nothing is left) read the
//! workloads from the caches and list only the first kind that still has objects, in the order
//! they go away (Pods last), so a pass usually costs one small LIST.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, PropagationPolicy};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::Context;
use super::error::{Error, Result};
use crate::api::FlashRollup;
use crate::api::flashrollup::VolumePolicy;
use crate::builders::{LABEL_ROLLUP, admin_secret_name, children_selector};

/// Delete what is left of the rollup's children; return how many objects still exist (on a
/// later pass, those of the first kind not yet empty: the rollup is done when it says 0).
pub async fn tear_down(ctx: &Context, rollup: &FlashRollup) -> Result<usize> {
    let client = &ctx.client;
    let ns = rollup.namespace().unwrap_or_default();
    let selector = children_selector(&rollup.name_any());
    let volumes = rollup.spec.teardown.volume == VolumePolicy::Delete;
    let mut remaining = 0;
    remaining += delete_cached(&ctx.statefulsets, client, rollup).await?;
    remaining += delete_cached(&ctx.deployments, client, rollup).await?;

    let uid = rollup.metadata.uid.clone().unwrap_or_default();
    let first = ctx.teardowns.lock().await.insert(uid);
    if first {
        remaining += sweep::<Service>(client, &ns, &selector, true).await?;
        remaining += sweep::<ConfigMap>(client, &ns, &selector, true).await?;
        remaining += sweep::<NetworkPolicy>(client, &ns, &selector, true).await?;
        remaining += sweep::<PodDisruptionBudget>(client, &ns, &selector, true).await?;
        // ReplicaSets and Pods belong to the workloads above; they go with them.
        remaining += sweep::<ReplicaSet>(client, &ns, &selector, false).await?;
        remaining += sweep::<Pod>(client, &ns, &selector, false).await?;
        if volumes {
            remaining += sweep::<PersistentVolumeClaim>(client, &ns, &selector, true).await?;
        }
        remaining += delete_secret(client, rollup).await?;
        return Ok(remaining);
    }
    // The workloads' Pods outlive them: while a workload is there, so are they.
    if remaining > 0 {
        return Ok(remaining);
    }
    let left = sweep::<Pod>(client, &ns, &selector, false).await?;
    if left > 0 {
        return Ok(left);
    }
    let left = sweep::<ReplicaSet>(client, &ns, &selector, false).await?;
    if left > 0 {
        return Ok(left);
    }
    if volumes {
        let left = sweep::<PersistentVolumeClaim>(client, &ns, &selector, true).await?;
        if left > 0 {
            return Ok(left);
        }
    }
    // Deleted on the first pass and gone at once (no finalizers): these lists find nothing,
    // unless a delete failed or something new appeared, which they delete.
    let left = sweep::<Service>(client, &ns, &selector, true).await?
        + sweep::<ConfigMap>(client, &ns, &selector, true).await?
        + sweep::<NetworkPolicy>(client, &ns, &selector, true).await?
        + sweep::<PodDisruptionBudget>(client, &ns, &selector, true).await?;
    if left > 0 {
        return Ok(left);
    }
    delete_secret(client, rollup).await
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
async fn delete_cached<K>(cache: &Store<K>, client: &Client, rollup: &FlashRollup) -> Result<usize>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let ns = rollup.namespace();
    let name = rollup.name_any();
    let mine: Vec<_> = cache
        .state()
        .into_iter()
        .filter(|o| o.namespace() == ns && o.labels().get(LABEL_ROLLUP) == Some(&name))
        .collect();
    let api: Api<K> = Api::namespaced(client.clone(), ns.as_deref().unwrap_or_default());
    for o in mine.iter().filter(|o| o.meta().deletion_timestamp.is_none()) {
        let child = o.name_any();
        match api.delete(&child, &background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(Error::Delete {
                    what: format!("{} {child}", K::kind(&())),
                    source,
                });
            }
        }
    }
    Ok(mine.len())
}

fn background() -> DeleteParams {
    DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    }
}

/// List one kind by the rollup's labels, delete each (if `delete`), count what is there.
async fn sweep<K>(client: &Client, ns: &str, selector: &str, delete: bool) -> Result<usize>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let kind = K::kind(&());
    let list = api
        .list_metadata(&ListParams::default().labels(selector))
        .await
        .map_err(|source| Error::Read {
            what: "children",
            source,
        })?;
    let count = list.items.len();
    if delete {
        let params = background();
        for item in list.items.iter().filter(|i| i.metadata.deletion_timestamp.is_none()) {
            let name = item.name_any();
            match api.delete(&name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => {
                    return Err(Error::Delete {
                        what: format!("{kind} {name}"),
                        source,
                    });
                }
            }
        }
    }
    Ok(count)
}
