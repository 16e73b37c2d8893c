//! Flashlayer rollup node: the EVM sequencer and the verifier (VITAL re-execution, MACH BLS
//! attestations), one library behind the `flashlayer-node` binary.

pub mod admin;
pub mod alerts;
pub mod block;
pub mod bls;
pub mod chain;
pub mod cli;
pub mod config;
pub mod exec;
pub mod finality;
pub mod mach;
pub mod metrics;
pub mod pool;
pub mod rpc;
pub mod sequencer;
pub mod state;
pub mod store;
pub mod verifier;
