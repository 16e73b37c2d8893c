//! The AVSOperator resource: one restaked operator that verifies rollups (re-executes their
//! blocks and signs attestations with its BLS key). Its private key only ever lives in a Secret;
//! the resource holds the public identity, the stake and the capacity.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::flashrollup::PullPolicy;

/// Desired state of an AVSOperator.
#[allow(clippy::duplicated_attributes)] // several printcolumn(...) share keys by design
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "rollups.flashlayer.dev",
    version = "v1alpha1",
    kind = "AVSOperator",
    plural = "avsoperators",
    singular = "avsoperator",
    shortname = "avsop",
    category = "flashlayer",
    namespaced,
    status = "AVSOperatorStatus",
    cel,
    validation = Rule::new("size(self.metadata.name) <= 63")
        .message("metadata.name must be at most 63 characters: it is recorded in labels and annotations"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.ready",
        description = "Whether the operator can verify rollups"
    ),
    printcolumn(
        name = "Stake",
        type_ = "integer",
        json_path = ".spec.stake",
        description = "Restaked stake (weight)"
    ),
    printcolumn(
        name = "Assigned",
        type_ = "integer",
        json_path = ".status.assignedCount",
        description = "Rollups it verifies now"
    ),
    printcolumn(
        name = "Capacity",
        type_ = "integer",
        json_path = ".spec.capacity",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AVSOperatorSpec {
    /// The operator's Ethereum address (0x-prefixed, 20 bytes), as registered on the L1.
    #[schemars(length(max = 42))]
    #[x_kube(validation = Rule::new(r"self.matches('^0x[0-9a-fA-F]{40}$')")
        .message("address must be a 0x-prefixed 20-byte hex address"))]
    pub address: String,

    /// The operator's BLS public key on BN254. Public material only.
    pub bls_public_key: BlsPublicKey,

    /// Where the BLS private key is. It can only come from a Secret: the verifier pod mounts
    /// that Secret read-only, and the operator never reads or copies the key.
    #[x_kube(validation = Rule::new("has(self.secretRef)")
        .message("the BLS private key can only come from a Secret: set blsKey.secretRef.name (never put key material in an AVSOperator)"))]
    pub bls_key: BlsKeySource,

    /// Restaked stake, the operator's weight in quorums.
    #[x_kube(validation = Rule::new("self >= 1").message("stake must be at least 1"))]
    pub stake: u64,

    /// How many rollups this operator may verify at once.
    #[serde(default = "default_capacity")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000").message("capacity must be between 1 and 1000"))]
    pub capacity: u32,

    /// Take the operator out of service: it gets no new assignments, and rollups it verifies
    /// get a replacement.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,

    /// The verifier container this operator runs for each rollup it verifies.
    #[serde(default)]
    pub verifier: VerifierSpec,
}

/// A BN254 BLS public key, as the L1 contract registers it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BlsPublicKey {
    /// G1 point, 0x-prefixed 64 bytes (x, y), big-endian.
    #[schemars(length(max = 130))]
    #[x_kube(validation = Rule::new(r"self.matches('^0x[0-9a-fA-F]{128}$')")
        .message("blsPublicKey.g1 must be 0x followed by 128 hex digits (x and y, 32 bytes each)"))]
    pub g1: String,
    /// G2 point, 0x-prefixed 128 bytes (x.c1, x.c0, y.c1, y.c0), big-endian.
    #[schemars(length(max = 258))]
    #[x_kube(validation = Rule::new(r"self.matches('^0x[0-9a-fA-F]{256}$')")
        .message("blsPublicKey.g2 must be 0x followed by 256 hex digits (4 coordinates, 32 bytes each)"))]
    pub g2: String,
}

/// Source of the BLS private key.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BlsKeySource {
    /// Secret in the operator's namespace, and the key in it (default `bls.key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<BlsSecretRef>,
}

/// A key in a Secret of the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BlsSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[serde(default = "default_bls_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// The verifier container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VerifierSpec {
    /// Image of the verifier (`flashlayer-node`); the rollup's node image when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Image pull policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// CPU and memory of the verifier container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// Observed state of an AVSOperator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AVSOperatorStatus {
    /// "True" when the operator can verify rollups (key Secret present, not suspended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// Ready and other conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Number of rollups it verifies now.
    #[serde(default)]
    pub assigned_count: u32,
    /// Rollups it verifies now, as `namespace/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assigned_rollups: Vec<String>,
    /// Latest attestation seen from this operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attestation: Option<Attestation>,
    /// Alerts its verifiers raised (state-root mismatches), oldest first, at most 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<VerifierAlert>,
}

/// An attestation (a BLS signature over a block) by this operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Attestation {
    /// The rollup, `namespace/name`.
    pub rollup: String,
    /// Block number.
    pub number: u64,
    /// When it was seen.
    pub time: Time,
}

/// A state-root mismatch raised by a verifier.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VerifierAlert {
    /// The rollup, `namespace/name`.
    pub rollup: String,
    /// Block number.
    pub number: u64,
    /// What the verifier found.
    pub message: String,
    /// When it was seen.
    pub time: Time,
}

fn default_capacity() -> u32 {
    1
}
fn default_bls_key() -> String {
    "bls.key".to_owned()
}

impl AVSOperator {
    /// Whether the status says Ready.
    pub fn is_ready(&self) -> bool {
        self.status.as_ref().and_then(|s| s.ready.as_deref()) == Some("True")
    }
}
