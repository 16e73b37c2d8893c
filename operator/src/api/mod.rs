//! The `rollups.flashlayer.dev/v1alpha1` API: FlashRollup and AVSOperator, their status, and the
//! names (labels, annotations, condition types and reasons) that users and tools rely on.

pub mod avsoperator;
pub mod conditions;
pub mod flashrollup;

pub use avsoperator::{AVSOperator, AVSOperatorSpec, AVSOperatorStatus};
pub use flashrollup::{FlashRollup, FlashRollupSpec, FlashRollupStatus, Phase};

/// API group of both resources.
pub const GROUP: &str = "rollups.flashlayer.dev";
/// The one served version.
pub const VERSION: &str = "v1alpha1";
/// Finalizer that holds a FlashRollup until it is settled (or discarded) and torn down.
pub const FINALIZER: &str = "rollups.flashlayer.dev/settlement";
/// Annotation that asks a Running rollup to settle now, whatever its TTL says.
pub const SETTLE_NOW_ANNOTATION: &str = "rollups.flashlayer.dev/settle-now";
/// The one field manager the operator uses for server-side apply.
pub const FIELD_MANAGER: &str = "flashlayer-operator";
