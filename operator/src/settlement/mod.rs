//! Settlement of a sealed rollup: talking to its nodes (admin API) and to the L1 contract.

pub mod l1;
pub mod node;
