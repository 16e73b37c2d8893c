//! The FlashRollup resource: one ephemeral rollup, its lifetime, verification, settlement and
//! teardown policy. Validation that can be expressed in the schema lives here, as CEL rules with
//! messages a person understands, so `kubectl apply` refuses a bad spec before the operator sees it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::core::Duration;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of a FlashRollup: an application-specific EVM rollup that lives for a bounded
/// time, is verified by a quorum of restaked AVS operators, settles its final state on an L1 and
/// then disappears.
#[allow(clippy::duplicated_attributes)] // several printcolumn(...) share keys by design
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "rollups.flashlayer.dev",
    version = "v1alpha1",
    kind = "FlashRollup",
    plural = "flashrollups",
    singular = "flashrollup",
    shortname = "fr",
    category = "flashlayer",
    namespaced,
    status = "FlashRollupStatus",
    cel,
    validation = Rule::new("size(self.metadata.name) <= 40")
        .message("metadata.name must be at most 40 characters: it prefixes the names of the rollup's workloads"),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Lifecycle phase"
    ),
    printcolumn(
        name = "Height",
        type_ = "integer",
        json_path = ".status.height",
        description = "Latest block number"
    ),
    printcolumn(
        name = "Finalized",
        type_ = "integer",
        json_path = ".status.finalizedHeight",
        description = "Latest block finalized by the MACH quorum"
    ),
    printcolumn(
        name = "Expires",
        type_ = "string",
        json_path = ".status.expiresAt",
        description = "When the rollup starts settling"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.ttl) != has(self.expiresAt)")
    .message("set exactly one of spec.ttl (a duration such as 48h) or spec.expiresAt (an RFC 3339 time)"))]
pub struct FlashRollupSpec {
    /// How long the rollup runs once it is Running, as a duration such as `90s`, `30m` or `48h`
    /// (between 1m and 720h, i.e. 30 days). Patching it while Running moves `status.expiresAt`.
    /// Exactly one of `ttl` and `expiresAt` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new(r"self.matches('^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$')")
            .message("ttl must be a duration such as 90s, 30m or 48h"),
        validation = Rule::new(r"!self.matches('^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$') || (duration(self) >= duration('1m') && duration(self) <= duration('720h'))")
            .message("ttl must be between 1m and 720h (30 days)")
    )]
    pub ttl: Option<Duration>,

    /// The instant at which the rollup starts settling, in RFC 3339 (e.g. `2026-12-24T18:00:00Z`).
    /// Exactly one of `ttl` and `expiresAt` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,

    /// The chain itself. Immutable once created: a different chain is a different FlashRollup.
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message("spec.chain is immutable after creation; create a new FlashRollup to change chainId, blockTime, gasLimit or genesis"))]
    pub chain: ChainSpec,

    /// The sequencer that orders transactions and produces blocks.
    #[serde(default)]
    pub sequencer: SequencerSpec,

    /// Which AVS operators verify the rollup, and how much of their stake must sign a block
    /// for it to be final.
    pub verification: VerificationSpec,

    /// What happens to the final state when the rollup's time is up.
    pub settlement: SettlementSpec,

    /// What is left behind after settlement.
    #[serde(default)]
    pub teardown: TeardownSpec,
}

/// Chain parameters, fixed for the rollup's whole life.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChainSpec {
    /// EIP-155 chain id the rollup answers to (`eth_chainId`); signed transactions must carry it.
    #[x_kube(validation = Rule::new("self > 0").message("chainId must be greater than 0"))]
    pub chain_id: u64,

    /// Time between blocks, a duration such as `500ms` or `2s` (at least 50ms, at most 1m).
    #[serde(default = "default_block_time")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new(r"self.matches('^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$')")
            .message("blockTime must be a duration such as 500ms or 2s"),
        validation = Rule::new(r"!self.matches('^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$') || (duration(self) >= duration('50ms') && duration(self) <= duration('1m'))")
            .message("blockTime must be between 50ms and 1m")
    )]
    pub block_time: Duration,

    /// Gas limit of every block.
    #[serde(default = "default_gas_limit")]
    #[x_kube(validation = Rule::new("self >= 21000 && self <= 1000000000")
        .message("gasLimit must be between 21000 (one transfer) and 1000000000"))]
    pub gas_limit: u64,

    /// Genesis state.
    #[serde(default)]
    pub genesis: Genesis,
}

/// The state the chain starts from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Genesis {
    /// Pre-funded accounts and pre-deployed contracts, keyed by 0x-prefixed 20-byte address.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 1000))]
    #[x_kube(validation = Rule::new(r"self.all(a, a.matches('^0x[0-9a-fA-F]{40}$'))")
        .message("genesis.alloc keys must be 0x-prefixed 20-byte hex addresses"))]
    pub alloc: BTreeMap<String, GenesisAccount>,
}

/// One account in the genesis state.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GenesisAccount {
    /// Balance in wei, decimal (`1000000000000000000`) or 0x-prefixed hex.
    #[schemars(length(max = 80))]
    #[x_kube(validation = Rule::new(r"self.matches('^(0x[0-9a-fA-F]{1,64}|[0-9]{1,78})$')")
        .message("balance must be a decimal or 0x-prefixed hex number of wei"))]
    pub balance: String,

    /// Nonce of the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<u64>,

    /// Runtime bytecode, 0x-prefixed hex (at most 24 KiB, EIP-170). Checked by a pattern, not a
    /// CEL rule: a regex over 1000 accounts of 48 KiB each would exceed the API server's CEL budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 49154), regex(pattern = r"^0x([0-9a-fA-F]{2})*$"))]
    pub code: Option<String>,

    /// Storage slots, 0x-prefixed 32-byte hex keys and values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 256))]
    pub storage: BTreeMap<String, String>,
}

/// How blocks are produced.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode == 'Squad' || !has(self.replicas) || self.replicas == 1")
    .message("sequencer.replicas can only be more than 1 in mode Squad"))]
pub struct SequencerSpec {
    /// `Single`: one sequencer. `Squad`: a set of sequencers (see `replicas`).
    #[serde(default)]
    pub mode: SequencerMode,

    /// Number of sequencers in mode Squad (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 7").message("sequencer.replicas must be between 1 and 7"))]
    pub replicas: Option<i32>,

    /// Container image of the node (`flashlayer-node`), used for the sequencer and the default
    /// for verifiers.
    #[serde(default = "default_node_image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,

    /// Image pull policy: Always, IfNotPresent or Never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,

    /// CPU and memory for the sequencer container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Size of the chain data volume (a PersistentVolumeClaim per sequencer).
    #[serde(default = "default_storage")]
    pub storage: Quantity,

    /// StorageClass of the chain data volume; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// Sequencer topology.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SequencerMode {
    /// One sequencer.
    #[default]
    Single,
    /// A set of sequencers.
    Squad,
}

/// Kubernetes image pull policy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// Verification by AVS operators (VITAL re-execution and MACH fast finality).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VerificationSpec {
    /// Which AVSOperators (in the rollup's namespace) may verify this rollup. All when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_selector: Option<LabelSelector>,

    /// How many operators are assigned. The rollup waits in Pending until that many Ready
    /// operators with free capacity match the selector.
    #[serde(default = "default_min_operators")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100")
        .message("minOperators must be between 1 and 100: a rollup needs at least one verifier to finalize blocks"))]
    pub min_operators: u32,

    /// Share of the assigned stake, in percent, whose signatures make a block final.
    #[serde(default = "default_quorum")]
    #[x_kube(validation = Rule::new("self >= 51 && self <= 100")
        .message("quorumStakePercent must be between 51 and 100: below a majority of stake two conflicting blocks could both be final"))]
    pub quorum_stake_percent: u32,
}

/// Settlement of the final state on the base layer.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.policy != 'Settle' || has(self.l1)")
    .message("settlement.l1 is required when settlement.policy is Settle (use policy Discard for a devnet without an L1)"))]
pub struct SettlementSpec {
    /// `Settle`: seal, certify and submit the final state root to the L1 before teardown.
    /// `Discard`: a throwaway devnet; nothing is submitted.
    pub policy: SettlementPolicy,

    /// The L1 and its settlement contract. Required with policy Settle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l1: Option<L1Spec>,

    /// L1 blocks to wait for after the settlement transaction is included.
    #[serde(default = "default_confirmations")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 64").message("confirmations must be between 1 and 64"))]
    pub confirmations: u32,
}

/// Settlement policy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettlementPolicy {
    /// Submit the final state to the L1, then tear down.
    Settle,
    /// Tear down without settling.
    Discard,
}

/// Where and how to settle.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct L1Spec {
    /// JSON-RPC endpoint of the L1, http:// or https://.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new(r"self.matches('^https?://[^\\s]+$')")
        .message("l1.rpcUrl must be an http:// or https:// URL"))]
    pub rpc_url: String,

    /// Chain id of the L1; the operator refuses to sign for another chain.
    #[x_kube(validation = Rule::new("self > 0").message("l1.chainId must be greater than 0"))]
    pub chain_id: u64,

    /// Address of the settlement contract, 0x-prefixed.
    #[schemars(length(max = 42))]
    #[x_kube(validation = Rule::new(r"self.matches('^0x[0-9a-fA-F]{40}$')")
        .message("l1.contract must be a 0x-prefixed 20-byte hex address"))]
    pub contract: String,

    /// Secret holding the private key that signs the settlement transaction. The key is read
    /// when it is needed and never copied anywhere.
    pub signer_secret_ref: SecretKeyRef,
}

/// A key in a Secret of the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret (default `privateKey`).
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// What is left behind after settlement.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TeardownSpec {
    /// `Retain` keeps this FlashRollup object in phase TornDown (so GitOps self-heal does not
    /// recreate the chain); `Delete` removes it once torn down.
    #[serde(default)]
    pub policy: TeardownPolicy,

    /// `Delete` removes the chain data volume with the workloads; `Retain` keeps it.
    #[serde(default)]
    pub volume: VolumePolicy,
}

/// Fate of the FlashRollup object after teardown.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TeardownPolicy {
    #[default]
    Retain,
    Delete,
}

/// Fate of the chain data volume after teardown.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VolumePolicy {
    #[default]
    Delete,
    Retain,
}

/// Lifecycle phase.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Phase {
    /// Waiting for enough Ready AVS operators.
    #[default]
    Pending,
    /// Workloads created, waiting for them to be ready.
    Provisioning,
    /// Producing blocks.
    Running,
    /// Sealing, certifying and submitting the final state.
    Settling,
    /// The final state is confirmed on the L1 (or was discarded by policy).
    Settled,
    /// Every workload is gone.
    TornDown,
    /// Stopped on an error that needs a person; see the conditions.
    Failed,
}

impl Phase {
    /// Every phase, for metrics that report a gauge per phase.
    pub const ALL: [Phase; 7] = [
        Phase::Pending,
        Phase::Provisioning,
        Phase::Running,
        Phase::Settling,
        Phase::Settled,
        Phase::TornDown,
        Phase::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Provisioning => "Provisioning",
            Phase::Running => "Running",
            Phase::Settling => "Settling",
            Phase::Settled => "Settled",
            Phase::TornDown => "TornDown",
            Phase::Failed => "Failed",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Observed state of a FlashRollup.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FlashRollupStatus {
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// Ready, QuorumMet, Settled, Degraded, TTLAccepted, Settling.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Latest block number the sequencer reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,

    /// Latest block finalized by the MACH quorum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalized_height: Option<u64>,

    /// When the rollup entered Running; the TTL counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_since: Option<Time>,

    /// When the rollup starts (or started) settling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,

    /// When the lifetime ended and settling (or teardown) began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Time>,

    /// Operators verifying this rollup, in signer-bitmap order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assigned_operators: Vec<AssignedOperator>,

    /// In-cluster JSON-RPC endpoint of the sequencer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_endpoint: Option<String>,

    /// Hash of the desired child objects last applied; children are re-applied only when it
    /// changes or a child goes missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_hash: Option<String>,

    /// Progress and result of settlement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement: Option<SettlementStatus>,
}

/// One operator assigned to a rollup.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AssignedOperator {
    /// Name of the AVSOperator.
    pub name: String,
    /// Its operator address.
    pub address: String,
    /// Its stake (weight) when it was assigned.
    pub stake: u64,
}

/// Step of the Settling phase.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SettlementStep {
    /// Asking the sequencer to stop taking transactions and produce its final block.
    #[default]
    Sealing,
    /// Waiting for the quorum's certificate of the final block.
    AwaitingCertificate,
    /// Sending the settlement transaction (intent recorded before it is sent).
    Submitting,
    /// Waiting for the receipt and confirmations.
    Confirming,
    /// Confirmed on the L1.
    Done,
}

/// Registration of the operator set on the L1 contract, then progress and result of
/// settlement. The intent (nonce and hash of each signed transaction) is recorded before the
/// transaction is sent, so a restarted operator looks for its receipt instead of sending a second
/// one.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SettlementStatus {
    /// Current step.
    #[serde(default)]
    pub step: SettlementStep,
    /// Rollup id on the settlement contract (0x-prefixed 32 bytes), derived from the object's UID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollup_id: Option<String>,
    /// The assigned operator set is registered on the settlement contract, by this operator's
    /// signer. From then on the set is fixed: a NotReady operator is no longer replaced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub registered: bool,
    /// Hash of the `registerRollup` transaction. Recorded (with its raw bytes) before it is
    /// sent, so a restarted operator looks for that transaction instead of signing another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_tx: Option<String>,
    /// The signed `registerRollup` transaction (0x-prefixed), re-broadcast until it is mined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_raw_tx: Option<String>,
    /// Nonce of the `registerRollup` transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_nonce: Option<u64>,
    /// L1 block that included the registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_l1_block_number: Option<u64>,
    /// Number of the final block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_height: Option<u64>,
    /// Hash of the final block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_hash: Option<String>,
    /// State root of the final block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_root: Option<String>,
    /// Address that signs the registration and settlement transactions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Nonce of the settlement transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<u64>,
    /// The signed settlement transaction (0x-prefixed RLP), kept so that a restarted operator
    /// re-broadcasts the very same transaction instead of signing a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_tx: Option<String>,
    /// Hash of the settlement transaction on the L1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<String>,
    /// L1 block that included it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l1_block_number: Option<u64>,
    /// Confirmations seen so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmations: Option<u64>,
    /// When settlement was confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<Time>,
    /// Attempts of the current step that failed in a row.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_attempts: u32,
    /// After a failed attempt: when the step is tried again (exponential backoff, 2 s to 64 s).
    /// Reconciliations before then (this status write triggers one) wait for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Time>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn default_block_time() -> Duration {
    std::time::Duration::from_secs(1).into()
}
fn default_gas_limit() -> u64 {
    30_000_000
}
fn default_storage() -> Quantity {
    Quantity("1Gi".to_owned())
}
fn default_node_image() -> String {
    crate::DEFAULT_NODE_IMAGE.to_owned()
}
fn default_min_operators() -> u32 {
    1
}
fn default_quorum() -> u32 {
    67
}
fn default_confirmations() -> u32 {
    1
}
fn default_secret_key() -> String {
    "privateKey".to_owned()
}

impl Default for SequencerSpec {
    fn default() -> Self {
        SequencerSpec {
            mode: SequencerMode::Single,
            replicas: None,
            image: default_node_image(),
            image_pull_policy: None,
            resources: None,
            storage: default_storage(),
            storage_class_name: None,
        }
    }
}

impl FlashRollupSpec {
    /// Number of sequencer replicas the spec asks for.
    pub fn sequencer_replicas(&self) -> i32 {
        match self.sequencer.mode {
            SequencerMode::Single => 1,
            SequencerMode::Squad => self.sequencer.replicas.unwrap_or(3),
        }
    }
}
