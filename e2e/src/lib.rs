//! Harness of Flashlayer's end-to-end tests, which run against the real local Kubernetes that
//! `e2e/cluster` starts (see `e2e/run`). The chart is installed once per test binary; the real
//! operator runs out of cluster, as child processes, with the chart's ServiceAccount token, so
//! the chart's least-privilege RBAC is what every scenario exercises.
//!
//! A scenario is: `Scenario::new` (a fresh namespace under Pod Security "restricted"), objects
//! applied with kubectl, operators started and killed, `wait::until` polling a condition. When
//! the test panics, the scenario dumps events, pods, FlashRollups, AVSOperators and the tail of
//! the operator logs, and keeps its namespace for a look.

pub mod cmd;
pub mod install;
pub mod l1;
pub mod manifests;
pub mod nodes;
pub mod objects;
pub mod operator;
pub mod plugin;
pub mod process;
pub mod scenario;
pub mod wait;

pub use objects::{AVSOPERATOR, FLASHROLLUP};
pub use scenario::Scenario;
pub use wait::{Check, until};

/// Print a progress line with the time since the test binary started.
pub fn log(message: impl std::fmt::Display) {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    eprintln!("[e2e {:>6.1}s] {message}", start.elapsed().as_secs_f64());
}
