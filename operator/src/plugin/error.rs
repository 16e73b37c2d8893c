//! Errors of the kubectl plugin, worded for the person at the terminal: each names the object,
//! the namespace and what to do, because the plugin prints it as its whole output.

use jiff::Timestamp;

use crate::api::Phase;

/// Everything that makes a plugin command fail (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No kubeconfig could be read, or it lacks the context asked for.
    #[error("cannot load the kubeconfig: {0}")]
    Kubeconfig(String),
    /// The FlashRollup does not exist.
    #[error("flashrollup \"{name}\" not found in namespace \"{namespace}\"")]
    NotFound { name: String, namespace: String },
    /// The API server refused or failed a request.
    #[error("{what}: {message}")]
    Api { what: String, message: String },
    /// A command-line value is malformed.
    #[error("{0}")]
    Usage(String),
    /// The lifetime cannot be extended any more: the rollup has ended.
    #[error(
        "flashrollup \"{name}\" already ended{at} and is {phase}: its lifetime cannot be extended (a ttl or expiresAt change cannot reopen a sealed chain)",
        at = ended_at.map(|t| format!(" at {t}")).unwrap_or_default()
    )]
    Ended {
        name: String,
        phase: Phase,
        ended_at: Option<Timestamp>,
    },
    /// The rollup's expiry has passed; the operator is ending it right now.
    #[error(
        "flashrollup \"{name}\" expired at {expired_at} and is being ended by the operator: it is too late to extend it"
    )]
    Expired { name: String, expired_at: Timestamp },
    /// The extended ttl would exceed what the CRD allows.
    #[error("the new ttl {ttl} would exceed the maximum of 720h (30 days) that spec.ttl allows")]
    TtlTooLong { ttl: String },
    /// The spec has neither ttl nor expiresAt (the schema forbids it; only a broken object has it).
    #[error("flashrollup \"{0}\" has neither spec.ttl nor spec.expiresAt: there is no lifetime to extend")]
    NoLifetime(String),
    /// The operator recorded that it refused the change (condition TTLAccepted=False).
    #[error("the operator refused the extension of flashrollup \"{name}\": {reason}: {message}")]
    Refused {
        name: String,
        reason: String,
        message: String,
    },
    /// No pod to read logs from.
    #[error("{0}")]
    NoPod(String),
    /// Something did not happen in time.
    #[error("{0}")]
    Timeout(String),
    /// Writing the output failed (a closed pipe, a full disk).
    #[error("writing the output: {0}")]
    Output(String),
}

impl PluginError {
    /// An API error while doing `what`, with the server's own message when it sent one.
    pub fn api(what: impl Into<String>, e: &kube::Error) -> PluginError {
        let message = match e {
            kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
            other => other.to_string(),
        };
        PluginError::Api {
            what: what.into(),
            message,
        }
    }
}

/// Whether `e` is the API server's 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 404)
}

/// Whether `e` is the API server's 409 (the object changed since it was read).
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 409)
}
