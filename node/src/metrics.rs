//! Prometheus metrics of both roles, served as text on `GET /metrics`.

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Every metric the node exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Blocks produced (sequencer) or verified (verifier).
    pub blocks: IntCounter,
    /// Transactions included / re-executed.
    pub txs: IntCounter,
    /// Gas used by those blocks.
    pub gas: IntCounter,
    /// Head block number.
    pub head: IntGauge,
    /// Highest MACH-certified block.
    pub finalized: IntGauge,
    /// Transactions in the pool.
    pub pool_size: IntGauge,
    /// Time to execute and persist one block.
    pub block_build_seconds: Histogram,
    /// Block produced -> MACH certificate.
    pub finalization_seconds: Histogram,
    /// Attestations received (sequencer) or sent (verifier), by result.
    pub attestations: IntCounterVec,
    /// State-root mismatches raised (verifier) or reported to this node (sequencer).
    pub alerts: IntCounter,
    /// JSON-RPC requests by method (unknown methods counted as `other`).
    pub rpc_requests: IntCounterVec,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| -> Result<Histogram, prometheus::Error> {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let counter_vec = |name: &str, help: &str, label: &str| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let latency = vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0];
        Ok(Self {
            blocks: counter(
                "flashlayer_blocks_total",
                "Blocks produced (sequencer) or verified (verifier)",
            )?,
            txs: counter("flashlayer_transactions_total", "Transactions included or re-executed")?,
            gas: counter("flashlayer_gas_used_total", "Gas used by produced or verified blocks")?,
            head: gauge("flashlayer_head_block", "Head block number")?,
            finalized: gauge("flashlayer_finalized_block", "Highest MACH-certified block")?,
            pool_size: gauge("flashlayer_txpool_transactions", "Transactions waiting in the pool")?,
            block_build_seconds: histogram(
                "flashlayer_block_build_seconds",
                "Time to execute, root and persist one block",
                latency.clone(),
            )?,
            finalization_seconds: histogram(
                "flashlayer_finalization_latency_seconds",
                "Time from block production to its MACH certificate",
                latency,
            )?,
            attestations: counter_vec(
                "flashlayer_attestations_total",
                "Attestations received (sequencer) or sent (verifier), by result",
                "result",
            )?,
            alerts: counter("flashlayer_alerts_total", "State-root mismatches raised or reported")?,
            rpc_requests: counter_vec("flashlayer_rpc_requests_total", "JSON-RPC requests by method", "method")?,
            registry,
        })
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_all_families() {
        let m = Metrics::new().expect("metrics");
        m.blocks.inc();
        m.block_build_seconds.observe(0.01);
        m.attestations.with_label_values(&["accepted"]).inc();
        let text = m.render();
        for name in [
            "flashlayer_blocks_total 1",
            "flashlayer_block_build_seconds_bucket",
            "flashlayer_finalization_latency_seconds_count 0",
            "flashlayer_attestations_total{result=\"accepted\"} 1",
            "flashlayer_gas_used_total",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }
}
