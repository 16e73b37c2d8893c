//! Teardown: delete every object a rollup owns and count what is still there. Idempotent, and a
//! 404 counts as done. Garbage collection through ownerReferences would get there too; the
//! explicit pass makes "nothing left" something we check rather than hope for.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, PropagationPolicy};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::error::{Error, Result};
use crate::api::FlashRollup;
use crate::api::flashrollup::VolumePolicy;
use crate::builders::{admin_secret_name, children_selector};

/// Delete what is left of the rollup's children; return how many objects still exist.
pub async fn tear_down(client: &Client, rollup: &FlashRollup) -> Result<usize> {
    let ns = rollup.namespace().unwrap_or_default();
    let selector = children_selector(&rollup.name_any());
    let mut remaining = 0;
    remaining += sweep::<StatefulSet>(client, &ns, &selector, true).await?;
    remaining += sweep::<Deployment>(client, &ns, &selector, true).await?;
    remaining += sweep::<Service>(client, &ns, &selector, true).await?;
    remaining += sweep::<ConfigMap>(client, &ns, &selector, true).await?;
    remaining += sweep::<NetworkPolicy>(client, &ns, &selector, true).await?;
    remaining += sweep::<PodDisruptionBudget>(client, &ns, &selector, true).await?;
    // ReplicaSets and Pods belong to the workloads above; they go with them.
    remaining += sweep::<ReplicaSet>(client, &ns, &selector, false).await?;
    remaining += sweep::<Pod>(client, &ns, &selector, false).await?;
    if rollup.spec.teardown.volume == VolumePolicy::Delete {
        remaining += sweep::<PersistentVolumeClaim>(client, &ns, &selector, true).await?;
    }
    // The operator may not list Secrets (least privilege), so the one it made goes by name.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let name = admin_secret_name(rollup);
    match secrets.delete(&name, &DeleteParams::background()).await {
        Ok(either) => remaining += usize::from(either.is_left()),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(source) => {
            return Err(Error::Delete {
                what: format!("Secret {name}"),
                source,
            });
        }
    }
    Ok(remaining)
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
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
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
