//! Flashlayer operator: reconciles FlashRollup and AVSOperator resources into sequencer and
//! verifier workloads, drives their lifecycle (TTL, settlement on an L1, teardown).

pub mod api;
pub mod assignment;
pub mod builders;
pub mod cli;
pub mod controller;
pub mod crdgen;
pub mod fault;
pub mod http;
pub mod leader;
pub mod lifecycle;
pub mod metrics;
pub mod plugin;
pub mod settlement;
pub mod telemetry;
pub mod validate;

/// Node image used when a FlashRollup does not name one.
pub const DEFAULT_NODE_IMAGE: &str = "ghcr.io/flashlayer/flashlayer-node:0.1.0";
