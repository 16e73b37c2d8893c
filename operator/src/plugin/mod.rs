//! The kubectl plugin `kubectl-flashrollup` (`kubectl flashrollup status|extend|settle|logs`):
//! what a person asks of a FlashRollup from the terminal, built on the API types of this crate.
//! The parts that decide (rendering, the extension patch, durations, picking a pod) are pure and
//! tested here; `cli` does the I/O.

pub mod cli;
pub mod duration;
pub mod error;
pub mod extend;
pub mod logs;
pub mod settle;
pub mod status;

#[cfg(test)]
mod fixtures;

pub use cli::{Cli, main};
pub use error::PluginError;

/// Field manager of every change the plugin makes, so `managedFields` tells who extended a
/// rollup or asked it to settle.
pub const FIELD_MANAGER: &str = "kubectl-flashrollup";
