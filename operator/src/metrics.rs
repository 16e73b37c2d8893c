//! Prometheus metrics of the operator: reconciliations, rollup phases, settlement and TTL timing.

use std::collections::BTreeMap;
use std::time::Instant;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::api::Phase;

/// Reconciles are usually a few API calls; anything beyond 10s is a stuck call, not a slow one.
const RECONCILE_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Settlement waits for L1 inclusion and confirmations, which ranges from seconds to minutes.
const SETTLEMENT_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];
/// A healthy operator wakes within milliseconds of expiry; seconds mean a backlog or a stall.
const TTL_LAG_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0];

/// All operator metrics, registered in a registry of their own so tests and several instances in
/// one process never collide on the global default registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    pub reconciliations: IntCounterVec,
    pub reconcile_errors: IntCounterVec,
    pub reconcile_duration: HistogramVec,
    pub rollups: IntGaugeVec,
    pub phase_transitions: IntCounterVec,
    pub settlement_duration: Histogram,
    pub settlement_failures: IntCounterVec,
    pub ttl_lag: Histogram,
    pub operators_ready: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric. Fails only if two metrics share a name, which is a
    /// programming error caught by the unit tests.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();

        let reconciliations = IntCounterVec::new(
            Opts::new(
                "flashlayer_reconciliations_total",
                "Reconciliations started, by resource kind.",
            ),
            &["kind"],
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "flashlayer_reconcile_errors_total",
                "Reconciliations that ended in an error, by resource kind and error label.",
            ),
            &["kind", "error"],
        )?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "flashlayer_reconcile_duration_seconds",
                "Time spent in one reconciliation, by resource kind.",
            )
            .buckets(RECONCILE_BUCKETS.to_vec()),
            &["kind"],
        )?;
        let rollups = IntGaugeVec::new(
            Opts::new("flashlayer_rollups", "FlashRollups currently in each phase."),
            &["phase"],
        )?;
        let phase_transitions = IntCounterVec::new(
            Opts::new(
                "flashlayer_phase_transitions_total",
                "FlashRollup phase transitions, by previous and new phase.",
            ),
            &["from", "to"],
        )?;
        let settlement_duration = Histogram::with_opts(
            HistogramOpts::new(
                "flashlayer_settlement_duration_seconds",
                "Time from entering Settling to the final state being confirmed on the L1.",
            )
            .buckets(SETTLEMENT_BUCKETS.to_vec()),
        )?;
        let settlement_failures = IntCounterVec::new(
            Opts::new(
                "flashlayer_settlement_failures_total",
                "Failed settlement attempts, by reason.",
            ),
            &["reason"],
        )?;
        let ttl_lag = Histogram::with_opts(
            HistogramOpts::new(
                "flashlayer_ttl_lag_seconds",
                "How late the operator acted on a FlashRollup after its status.expiresAt.",
            )
            .buckets(TTL_LAG_BUCKETS.to_vec()),
        )?;
        let operators_ready = IntGauge::new("flashlayer_avs_operators_ready", "AVSOperators currently Ready.")?;

        registry.register(Box::new(reconciliations.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(rollups.clone()))?;
        registry.register(Box::new(phase_transitions.clone()))?;
        registry.register(Box::new(settlement_duration.clone()))?;
        registry.register(Box::new(settlement_failures.clone()))?;
        registry.register(Box::new(ttl_lag.clone()))?;
        registry.register(Box::new(operators_ready.clone()))?;

        let metrics = Self {
            registry,
            reconciliations,
            reconcile_errors,
            reconcile_duration,
            rollups,
            phase_transitions,
            settlement_duration,
            settlement_failures,
            ttl_lag,
            operators_ready,
        };
        // Every phase shows up from the first scrape, so dashboards and alerts see 0 rather than
        // a missing series before the first rollup exists.
        metrics.set_phase_counts(&BTreeMap::new());
        Ok(metrics)
    }

    /// Sets the per-phase gauge from a full count; phases missing from `counts` are set to 0 so a
    /// phase that emptied out does not keep its last value.
    pub fn set_phase_counts(&self, counts: &BTreeMap<Phase, i64>) {
        for phase in Phase::ALL {
            let n = counts.get(&phase).copied().unwrap_or(0);
            self.rollups.with_label_values(&[phase.as_str()]).set(n);
        }
    }

    /// Counts one phase transition.
    pub fn phase_transition(&self, from: Phase, to: Phase) {
        self.phase_transitions
            .with_label_values(&[from.as_str(), to.as_str()])
            .inc();
    }

    /// Counts a failed reconciliation. `error` must be a stable, low-cardinality label such as
    /// "apply" or "node_unreachable", never an error message.
    pub fn reconcile_error(&self, kind: &str, error: &str) {
        self.reconcile_errors.with_label_values(&[kind, error]).inc();
    }

    /// Counts a reconciliation now and observes its duration when the returned guard is dropped,
    /// so early returns and `?` are timed too.
    pub fn reconcile_timer(&self, kind: &str) -> ReconcileTimer {
        self.reconciliations.with_label_values(&[kind]).inc();
        ReconcileTimer {
            histogram: self.reconcile_duration.with_label_values(&[kind]),
            start: Instant::now(),
        }
    }

    /// The registry in the Prometheus text exposition format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(err) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            // A scrape must never take the operator down; a partial page plus a log is enough.
            tracing::warn!(error = %err, "encoding metrics failed");
        }
        out
    }
}

/// Guard returned by [`Metrics::reconcile_timer`]; observes the elapsed time on drop.
#[derive(Debug)]
pub struct ReconcileTimer {
    histogram: Histogram,
    start: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn encode_contains_every_metric_and_a_counted_reconcile() {
        let metrics = Metrics::new().unwrap();
        {
            let _timer = metrics.reconcile_timer("FlashRollup");
        }
        metrics.reconcile_error("FlashRollup", "apply");
        metrics.phase_transition(Phase::Running, Phase::Settling);
        metrics.settlement_duration.observe(12.0);
        metrics.settlement_failures.with_label_values(&["reverted"]).inc();
        metrics.ttl_lag.observe(0.002);
        metrics.operators_ready.set(3);

        let text = metrics.encode();
        for name in [
            "flashlayer_reconciliations_total",
            "flashlayer_reconcile_errors_total",
            "flashlayer_reconcile_duration_seconds",
            "flashlayer_rollups",
            "flashlayer_phase_transitions_total",
            "flashlayer_settlement_duration_seconds",
            "flashlayer_settlement_failures_total",
            "flashlayer_ttl_lag_seconds",
            "flashlayer_avs_operators_ready",
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name} missing:\n{text}");
        }
        assert!(text.contains(r#"flashlayer_reconciliations_total{kind="FlashRollup"} 1"#));
        assert!(text.contains(r#"flashlayer_reconcile_duration_seconds_count{kind="FlashRollup"} 1"#));
        assert!(text.contains(r#"flashlayer_reconcile_errors_total{error="apply",kind="FlashRollup"} 1"#));
        assert!(text.contains(r#"flashlayer_phase_transitions_total{from="Running",to="Settling"} 1"#));
        assert!(text.contains("flashlayer_avs_operators_ready 3"));
    }

    #[test]
    fn phase_counts_cover_every_phase_and_reset_missing_ones() {
        let metrics = Metrics::new().unwrap();
        metrics.set_phase_counts(&BTreeMap::from([(Phase::Running, 2), (Phase::Failed, 1)]));
        metrics.set_phase_counts(&BTreeMap::from([(Phase::Running, 4)]));

        for phase in Phase::ALL {
            let expected = if phase == Phase::Running { 4 } else { 0 };
            assert_eq!(
                metrics.rollups.with_label_values(&[phase.as_str()]).get(),
                expected,
                "{phase}"
            );
        }
        assert!(metrics.encode().contains(r#"flashlayer_rollups{phase="TornDown"} 0"#));
    }
}
