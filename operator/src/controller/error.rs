//! Errors of the reconcilers, one variant per step, each with a stable label used in metrics and
//! Event reasons, and a policy: an invalid spec waits for a change, a transient fault retries soon.

use std::time::Duration;

use crate::settlement::l1::L1Error;
use crate::settlement::node::NodeError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading from the API server failed.
    #[error("reading {what}: {source}")]
    Read { what: &'static str, source: kube::Error },
    /// Server-side apply of a child failed.
    #[error("applying {what}: {source}")]
    Apply { what: String, source: kube::Error },
    /// Patching our own status failed.
    #[error("updating status: {0}")]
    Status(#[source] kube::Error),
    /// Deleting a child failed.
    #[error("deleting {what}: {source}")]
    Delete { what: String, source: kube::Error },
    /// The spec is wrong in a way the schema could not catch.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// The sequencer's admin API did not answer as it should.
    #[error("rollup node: {0}")]
    Node(#[from] NodeError),
    /// The L1 did not answer as it should.
    #[error("L1: {0}")]
    L1(#[from] L1Error),
    /// The signer Secret of `settlement.l1` is missing or lacks the key.
    #[error("signer secret {name}: {problem}")]
    SignerSecret { name: String, problem: &'static str },
    /// The rollup id's registration on the L1 contract is not ours (another registrar, another
    /// set), or the contract refuses to register the set.
    #[error("L1 registration: {0}")]
    Registration(String),
    /// The node's certificate does not certify the sealed block.
    #[error("certificate mismatch: {0}")]
    Certificate(String),
    /// A multi-step operation (settlement, teardown) is still under way; not a failure.
    #[error("still in progress, next check in {0:?}")]
    InProgress(Duration),
    /// The finalizer helper failed around our reconcile.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// Stable label for metrics and Event reasons.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Read { .. } => "read",
            Error::Apply { .. } => "apply",
            Error::Status(_) => "status",
            Error::Delete { .. } => "delete",
            Error::InvalidSpec(_) => "invalid_spec",
            Error::Node(e) => e.label(),
            Error::L1(e) => e.label(),
            Error::SignerSecret { .. } => "signer_secret",
            Error::Certificate(_) => "certificate",
            Error::Registration(_) => "registration",
            Error::InProgress(_) => "in_progress",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => {
                    e.label()
                }
                kube::runtime::finalizer::Error::AddFinalizer(_) => "add_finalizer",
                kube::runtime::finalizer::Error::RemoveFinalizer(_) => "remove_finalizer",
                _ => "finalizer",
            },
        }
    }

    /// The innermost error of ours, through the finalizer wrapper.
    pub fn inner(&self) -> &Error {
        match self {
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => {
                    e.inner()
                }
                _ => self,
            },
            _ => self,
        }
    }

    /// When to try again: never for what only a person can fix (the object's next change
    /// triggers a reconcile anyway), soon for the rest.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.inner() {
            Error::InvalidSpec(_) => None,
            Error::InProgress(after) => Some(*after),
            Error::SignerSecret { .. } => Some(Duration::from_secs(30)),
            Error::L1(e) if !e.is_transient() => Some(Duration::from_secs(60)),
            _ => Some(Duration::from_secs(5)),
        }
    }

    /// Whether it is a real failure (counted in metrics, reported as a Warning Event).
    pub fn is_failure(&self) -> bool {
        !matches!(self.inner(), Error::InProgress(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
