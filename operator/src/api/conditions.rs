//! Condition types and reasons, as constants: tools (Argo CD health checks, alerts, the kubectl
//! plugin) match on these strings, so they never change once released.

/// The rollup serves blocks (FlashRollup) / the operator can verify rollups (AVSOperator).
pub const READY: &str = "Ready";
/// Enough Ready stake is assigned to reach the quorum.
pub const QUORUM_MET: &str = "QuorumMet";
/// The final state root is on the L1 (or settlement was skipped by policy).
pub const SETTLED: &str = "Settled";
/// A verifier raised an alert, or a part of the rollup misbehaves while it still serves.
pub const DEGRADED: &str = "Degraded";
/// The lifetime (ttl/expiresAt) as last requested is in force.
pub const TTL_ACCEPTED: &str = "TTLAccepted";
/// Settlement is progressing; its reason names the step.
pub const SETTLING: &str = "Settling";

/// Reasons, shared by conditions and Events.
pub mod reason {
    pub const WAITING_FOR_OPERATORS: &str = "WaitingForOperators";
    pub const OPERATORS_ASSIGNED: &str = "OperatorsAssigned";
    pub const QUORUM_LOST: &str = "QuorumLost";
    pub const OPERATOR_REPLACED: &str = "OperatorReplaced";
    pub const WORKLOADS_PENDING: &str = "WorkloadsPending";
    pub const WORKLOADS_READY: &str = "WorkloadsReady";
    pub const EXPIRED: &str = "Expired";
    pub const SETTLE_REQUESTED: &str = "SettleRequested";
    pub const DELETION_REQUESTED: &str = "DeletionRequested";
    pub const REGISTERING: &str = "Registering";
    pub const REGISTRATION_CONFLICT: &str = "RegistrationConflict";
    pub const REGISTRATION_REJECTED: &str = "RegistrationRejected";
    pub const SEALING: &str = "Sealing";
    pub const AWAITING_CERTIFICATE: &str = "AwaitingCertificate";
    pub const SUBMITTING: &str = "Submitting";
    pub const CONFIRMING: &str = "Confirming";
    pub const SETTLED: &str = "Settled";
    pub const DISCARDED: &str = "Discarded";
    pub const NEVER_RAN: &str = "NeverRan";
    pub const L1_UNREACHABLE: &str = "L1Unreachable";
    pub const SETTLEMENT_REJECTED: &str = "SettlementRejected";
    pub const NODE_UNREACHABLE: &str = "NodeUnreachable";
    pub const TORN_DOWN: &str = "TornDown";
    pub const TEARING_DOWN: &str = "TearingDown";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const EXTENSION_REFUSED: &str = "ExtensionRefused";
    pub const LIFETIME_SET: &str = "LifetimeSet";
    pub const VERIFIER_ALERT: &str = "VerifierAlert";
    pub const HEALTHY: &str = "Healthy";
    pub const KEY_SECRET_MISSING: &str = "KeySecretMissing";
    pub const KEY_SECRET_FOUND: &str = "KeySecretFound";
    pub const SUSPENDED: &str = "Suspended";
}
