//! Pure builders of the objects a FlashRollup owns: from the rollup and its assigned operators to
//! the exact desired StatefulSet, Deployments, Services, ConfigMap, NetworkPolicies and
//! PodDisruptionBudget. No client here: the reconciler applies what these return.

mod network;
mod sequencer;
pub mod verifier;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, PodSecurityContext, PodSpec, PodTemplateSpec,
    SeccompProfile, Secret, SecurityContext, Service, Volume,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::api::flashrollup::AssignedOperator;
use crate::api::{AVSOperatorSpec, FlashRollup};

pub use network::{client_service, headless_service, network_policies, pod_disruption_budget};
pub use sequencer::statefulset;
pub use verifier::deployment as verifier_deployment;

/// Port of the Ethereum JSON-RPC (and MACH attestation intake).
pub const RPC_PORT: i32 = 8545;
/// Port of the authenticated admin API.
pub const ADMIN_PORT: i32 = 8551;
/// Port of the Prometheus metrics and health endpoints.
pub const METRICS_PORT: i32 = 9100;
/// UID and GID the node runs as (distroless "nonroot").
pub const RUN_AS: i64 = 65532;

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Name of the owning FlashRollup; every child carries it, teardown lists by it.
pub const LABEL_ROLLUP: &str = "rollups.flashlayer.dev/rollup";
/// Short hash of the AVSOperator name a verifier runs for (names may be too long for a label).
pub const LABEL_OPERATOR: &str = "rollups.flashlayer.dev/operator-hash";
/// The AVSOperator a verifier runs for, in full.
pub const ANNOTATION_OPERATOR: &str = "rollups.flashlayer.dev/operator";
/// Value of `app.kubernetes.io/managed-by` on every child.
pub const MANAGED_BY: &str = "flashlayer-operator";
/// Label of the operator's own pods; NetworkPolicies admit the admin port from them only.
pub const OPERATOR_POD_LABEL: (&str, &str) = ("rollups.flashlayer.dev/role", "operator");

/// Component names (label values and name suffixes).
pub mod component {
    pub const SEQUENCER: &str = "sequencer";
    pub const VERIFIER: &str = "verifier";
    pub const CHAIN_CONFIG: &str = "chain-config";
    pub const ADMIN_TOKEN: &str = "admin-token";
    pub const RPC: &str = "rpc";
}

/// One assigned operator and, when it still exists, its AVSOperator spec.
#[derive(Clone, Debug)]
pub struct Verifier<'a> {
    pub assigned: &'a AssignedOperator,
    pub spec: Option<&'a AVSOperatorSpec>,
}

/// Everything the builders need, read once by the reconciler.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    pub rollup: &'a FlashRollup,
    pub verifiers: Vec<Verifier<'a>>,
    /// 0x-prefixed rollup id on the settlement contract.
    pub rollup_id: String,
}

/// All desired children except the admin-token Secret, which is created once and never
/// re-applied (re-applying would rotate the token under the running node).
#[derive(Clone, Debug, Serialize)]
pub struct Desired {
    pub config_map: ConfigMap,
    pub headless_service: Service,
    pub client_service: Service,
    pub statefulset: StatefulSet,
    pub verifiers: Vec<Deployment>,
    pub network_policies: Vec<NetworkPolicy>,
    pub pdb: PodDisruptionBudget,
}

impl Desired {
    /// Build every desired child of the rollup.
    pub fn build(inputs: &Inputs<'_>) -> Desired {
        let config_map = chain_config_map(inputs);
        let config_hash = short_hash(&config_map.data);
        Desired {
            headless_service: headless_service(inputs.rollup),
            client_service: client_service(inputs.rollup),
            statefulset: statefulset(inputs.rollup, &config_hash),
            verifiers: inputs
                .verifiers
                .iter()
                .filter_map(|v| {
                    v.spec
                        .map(|spec| verifier_deployment(inputs.rollup, v.assigned, spec, &config_hash))
                })
                .collect(),
            network_policies: network_policies(inputs.rollup),
            pdb: pod_disruption_budget(inputs.rollup),
            config_map,
        }
    }

    /// A stable digest of the desired state: children are re-applied only when it changes.
    pub fn hash(&self) -> String {
        short_hash(self)
    }
}

/// First 16 hex digits of the SHA-256 of the JSON form of `value`.
pub fn short_hash<T: Serialize>(value: &T) -> String {
    // Serializing plain data to a Vec cannot fail; an empty digest input would still be stable.
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    hex::encode(&Sha256::digest(bytes)[..8])
}

/// Name of a child: `<rollup>-<suffix>`. The CRD limits rollup names to 40 characters so that
/// every child name stays a valid DNS label.
pub fn child_name(rollup: &FlashRollup, suffix: &str) -> String {
    format!("{}-{suffix}", rollup.name_any())
}

/// Labels every child carries.
pub fn labels(rollup: &FlashRollup, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), "flashlayer-node".to_owned()),
        (LABEL_INSTANCE.to_owned(), rollup.name_any()),
        (LABEL_COMPONENT.to_owned(), component.to_owned()),
        (LABEL_PART_OF.to_owned(), "flashlayer".to_owned()),
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_ROLLUP.to_owned(), rollup.name_any()),
    ])
}

/// Labels that select a component's pods (a subset of [`labels`], stable for the object's life).
pub fn selector_labels(rollup: &FlashRollup, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_INSTANCE.to_owned(), rollup.name_any()),
        (LABEL_COMPONENT.to_owned(), component.to_owned()),
        (LABEL_ROLLUP.to_owned(), rollup.name_any()),
    ])
}

/// The label selector that finds every child of a rollup, across kinds.
pub fn children_selector(rollup_name: &str) -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_ROLLUP}={rollup_name}")
}

fn owner_reference(rollup: &FlashRollup) -> OwnerReference {
    OwnerReference {
        api_version: FlashRollup::api_version(&()).into_owned(),
        kind: FlashRollup::kind(&()).into_owned(),
        name: rollup.name_any(),
        uid: rollup.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Metadata of a child: name, namespace, labels, and the controller ownerReference that lets
/// garbage collection remove it with the rollup.
pub fn child_meta(rollup: &FlashRollup, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: rollup.namespace(),
        labels: Some(labels(rollup, component)),
        owner_references: Some(vec![owner_reference(rollup)]),
        ..ObjectMeta::default()
    }
}

/// Pod security context that passes Pod Security "restricted".
pub fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        fs_group: Some(RUN_AS),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// Container security context that passes Pod Security "restricted".
pub fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

/// The chain configuration the node reads: chain parameters, genesis, and the operator set in
/// signer-bitmap order with the public keys MACH checks signatures against.
pub fn chain_config_map(inputs: &Inputs<'_>) -> ConfigMap {
    let rollup = inputs.rollup;
    let chain = &rollup.spec.chain;
    let block_time: std::time::Duration = chain.block_time.into();
    let operators: Vec<serde_json::Value> = inputs
        .verifiers
        .iter()
        .enumerate()
        .map(|(index, v)| {
            serde_json::json!({
                "index": index,
                "name": v.assigned.name,
                "address": v.assigned.address,
                "stake": v.assigned.stake,
                "blsPublicKey": v.spec.map(|s| &s.bls_public_key),
            })
        })
        .collect();
    let config = serde_json::json!({
        "chainId": chain.chain_id,
        "rollupId": inputs.rollup_id,
        "blockTimeMs": block_time.as_millis() as u64,
        "gasLimit": chain.gas_limit,
        "genesis": chain.genesis,
        "quorumStakePercent": rollup.spec.verification.quorum_stake_percent,
        "operators": operators,
    });
    // Pretty JSON: people read this ConfigMap when they debug a chain.
    let json = serde_json::to_string_pretty(&config).unwrap_or_default();
    ConfigMap {
        metadata: child_meta(rollup, child_name(rollup, "chain"), component::CHAIN_CONFIG),
        data: Some(BTreeMap::from([("chain.json".to_owned(), json)])),
        ..ConfigMap::default()
    }
}

/// Pod template shared by sequencers and verifiers: restricted security, no service-account
/// token, the chain config mounted, and whatever else the component mounts.
pub fn pod_template(
    rollup: &FlashRollup,
    labels: BTreeMap<String, String>,
    config_hash: &str,
    container: Container,
    extra_volumes: Vec<Volume>,
) -> PodTemplateSpec {
    let mut volumes = vec![Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: child_name(rollup, "chain"),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }];
    volumes.extend(extra_volumes);
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            // Rolls the pods when the chain config (e.g. the operator set) changes.
            annotations: Some(BTreeMap::from([(
                CONFIG_HASH_ANNOTATION.to_owned(),
                config_hash.to_owned(),
            )])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            security_context: Some(pod_security_context()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            // The node flushes its store and exits on SIGTERM well within this.
            termination_grace_period_seconds: Some(10),
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
    }
}

/// Annotation on pod templates that rolls the pods when the chain config changes.
pub const CONFIG_HASH_ANNOTATION: &str = "rollups.flashlayer.dev/config-hash";

/// Selector of a rollup's verifier Deployments.
pub fn verifier_selector(rollup_name: &str) -> String {
    format!(
        "{},{LABEL_COMPONENT}={}",
        children_selector(rollup_name),
        component::VERIFIER
    )
}

/// Name of the admin-token Secret.
pub fn admin_secret_name(rollup: &FlashRollup) -> String {
    child_name(rollup, "admin")
}

/// Key of the token in the admin-token Secret.
pub const ADMIN_TOKEN_KEY: &str = "token";

/// The admin-token Secret, with a token generated by the caller (created once, never updated).
pub fn admin_secret(rollup: &FlashRollup, token: String) -> Secret {
    Secret {
        metadata: child_meta(rollup, admin_secret_name(rollup), component::ADMIN_TOKEN),
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([(ADMIN_TOKEN_KEY.to_owned(), token)])),
        immutable: Some(true),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests;
