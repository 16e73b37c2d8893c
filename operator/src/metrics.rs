//! Prometheus metrics of the operator: reconciliations, rollup phases, settlement, TTL and launch
//! timing, and per-rollup gauges (phase, conditions, heights, end of life) that the alerts and the
//! dashboard shipped in the chart (charts/flashlayer/files/) are built on.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use prometheus::core::Collector;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::api::flashrollup::FlashRollupStatus;
use crate::api::{FlashRollup, Phase};

/// Reconciles are usually a few API calls; anything beyond 10s is a stuck call, not a slow one.
const RECONCILE_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Settlement waits for L1 inclusion and confirmations, which ranges from seconds to minutes.
const SETTLEMENT_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];
/// A healthy operator wakes within milliseconds of expiry; seconds mean a backlog or a stall.
const TTL_LAG_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// A launch is seconds when operators are free and images are cached, minutes when pods wait for
/// nodes or images, and longer only while it waits for operators.
const LAUNCH_BUCKETS: &[f64] = &[1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

/// Labels of the per-rollup series. `namespace` is the rollup's namespace (the chart's
/// ServiceMonitor sets honorLabels so the scrape target's namespace does not overwrite it).
const ROLLUP_LABELS: [&str; 2] = ["namespace", "rollup"];

/// What kind of series a metric exposes, for [`Metrics::series_names`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// One series name (counters and gauges).
    Plain,
    /// `<name>_bucket`, `<name>_sum` and `<name>_count`.
    Histogram,
}

/// Registers collectors and remembers their names and kinds.
struct Registrar {
    registry: Registry,
    names: Vec<(String, Kind)>,
}

impl Registrar {
    fn add<C: Collector + Clone + 'static>(&mut self, collector: C, kind: Kind) -> Result<C, prometheus::Error> {
        for desc in collector.desc() {
            self.names.push((desc.fq_name.clone(), kind));
        }
        self.registry.register(Box::new(collector.clone()))?;
        Ok(collector)
    }
}

/// The per-rollup series exported for one rollup, so that an update removes exactly the series
/// that no longer hold and a teardown removes all of them (label cardinality stays bounded by
/// the rollups that are not torn down yet).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Exported {
    phase: Option<&'static str>,
    /// `(type, reason)` of each condition.
    conditions: Vec<(String, String)>,
    height: bool,
    finalized: bool,
    ended: bool,
    expires: bool,
}

/// All operator metrics, registered in a registry of their own so tests and several instances in
/// one process never collide on the global default registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    names: Arc<Vec<(String, Kind)>>,
    pub reconciliations: IntCounterVec,
    pub reconcile_errors: IntCounterVec,
    pub reconcile_duration: HistogramVec,
    pub rollups: IntGaugeVec,
    pub phase_transitions: IntCounterVec,
    pub settlement_duration: Histogram,
    pub settlement_failures: IntCounterVec,
    pub ttl_lag: Histogram,
    pub operators_ready: IntGauge,
    pub launch_duration: Histogram,
    pub rollup_phase: IntGaugeVec,
    pub rollup_condition: IntGaugeVec,
    pub rollup_height: IntGaugeVec,
    pub rollup_finalized_height: IntGaugeVec,
    pub rollup_ended: GaugeVec,
    pub rollup_expires: GaugeVec,
    exported: Arc<Mutex<HashMap<(String, String), Exported>>>,
}

impl Metrics {
    /// Creates and registers every metric. Fails only if two metrics share a name, which is a
    /// programming error caught by the unit tests.
    pub fn new() -> Result<Self, prometheus::Error> {
        let mut r = Registrar {
            registry: Registry::new(),
            names: Vec::new(),
        };

        let reconciliations = r.add(
            IntCounterVec::new(
                Opts::new(
                    "flashlayer_reconciliations_total",
                    "Reconciliations started, by resource kind.",
                ),
                &["kind"],
            )?,
            Kind::Plain,
        )?;
        let reconcile_errors = r.add(
            IntCounterVec::new(
                Opts::new(
                    "flashlayer_reconcile_errors_total",
                    "Reconciliations that ended in an error, by resource kind and error label.",
                ),
                &["kind", "error"],
            )?,
            Kind::Plain,
        )?;
        let reconcile_duration = r.add(
            HistogramVec::new(
                HistogramOpts::new(
                    "flashlayer_reconcile_duration_seconds",
                    "Time spent in one reconciliation, by resource kind.",
                )
                .buckets(RECONCILE_BUCKETS.to_vec()),
                &["kind"],
            )?,
            Kind::Histogram,
        )?;
        let rollups = r.add(
            IntGaugeVec::new(
                Opts::new("flashlayer_rollups", "FlashRollups currently in each phase."),
                &["phase"],
            )?,
            Kind::Plain,
        )?;
        let phase_transitions = r.add(
            IntCounterVec::new(
                Opts::new(
                    "flashlayer_phase_transitions_total",
                    "FlashRollup phase transitions, by previous and new phase.",
                ),
                &["from", "to"],
            )?,
            Kind::Plain,
        )?;
        let settlement_duration = r.add(
            Histogram::with_opts(
                HistogramOpts::new(
                    "flashlayer_settlement_duration_seconds",
                    "Time from entering Settling to the final state being confirmed on the L1.",
                )
                .buckets(SETTLEMENT_BUCKETS.to_vec()),
            )?,
            Kind::Histogram,
        )?;
        let settlement_failures = r.add(
            IntCounterVec::new(
                Opts::new(
                    "flashlayer_settlement_failures_total",
                    "Failed settlement attempts, by reason.",
                ),
                &["reason"],
            )?,
            Kind::Plain,
        )?;
        let ttl_lag = r.add(
            Histogram::with_opts(
                HistogramOpts::new(
                    "flashlayer_ttl_lag_seconds",
                    "How late the operator acted on a FlashRollup after its status.expiresAt.",
                )
                .buckets(TTL_LAG_BUCKETS.to_vec()),
            )?,
            Kind::Histogram,
        )?;
        let operators_ready = r.add(
            IntGauge::new("flashlayer_avs_operators_ready", "AVSOperators currently Ready.")?,
            Kind::Plain,
        )?;
        let launch_duration = r.add(
            Histogram::with_opts(
                HistogramOpts::new(
                    "flashlayer_launch_duration_seconds",
                    "Time from a FlashRollup's creation to its status.runningSince (waiting for operators included).",
                )
                .buckets(LAUNCH_BUCKETS.to_vec()),
            )?,
            Kind::Histogram,
        )?;
        let rollup_phase = r.add(
            IntGaugeVec::new(
                Opts::new(
                    "flashlayer_rollup_phase",
                    "1 for the current phase of each FlashRollup that is not torn down (one series per rollup).",
                ),
                &["namespace", "rollup", "phase"],
            )?,
            Kind::Plain,
        )?;
        let rollup_condition = r.add(
            IntGaugeVec::new(
                Opts::new(
                    "flashlayer_rollup_condition",
                    "Each status condition of a FlashRollup that is not torn down: 1 when True, 0 otherwise, with its reason.",
                ),
                &["namespace", "rollup", "type", "reason"],
            )?,
            Kind::Plain,
        )?;
        let rollup_height = r.add(
            IntGaugeVec::new(
                Opts::new(
                    "flashlayer_rollup_height",
                    "Latest block number the sequencer reported (status.height).",
                ),
                &ROLLUP_LABELS,
            )?,
            Kind::Plain,
        )?;
        let rollup_finalized_height = r.add(
            IntGaugeVec::new(
                Opts::new(
                    "flashlayer_rollup_finalized_height",
                    "Latest block finalized by the MACH quorum (status.finalizedHeight).",
                ),
                &ROLLUP_LABELS,
            )?,
            Kind::Plain,
        )?;
        let rollup_ended = r.add(
            GaugeVec::new(
                Opts::new(
                    "flashlayer_rollup_ended_timestamp_seconds",
                    "When the rollup's lifetime ended and settling or teardown began (status.endedAt), Unix time.",
                ),
                &ROLLUP_LABELS,
            )?,
            Kind::Plain,
        )?;
        let rollup_expires = r.add(
            GaugeVec::new(
                Opts::new(
                    "flashlayer_rollup_expires_timestamp_seconds",
                    "When the rollup starts settling (status.expiresAt), Unix time.",
                ),
                &ROLLUP_LABELS,
            )?,
            Kind::Plain,
        )?;

        let metrics = Self {
            registry: r.registry,
            names: Arc::new(r.names),
            reconciliations,
            reconcile_errors,
            reconcile_duration,
            rollups,
            phase_transitions,
            settlement_duration,
            settlement_failures,
            ttl_lag,
            operators_ready,
            launch_duration,
            rollup_phase,
            rollup_condition,
            rollup_height,
            rollup_finalized_height,
            rollup_ended,
            rollup_expires,
            exported: Arc::default(),
        };
        // Every phase shows up from the first scrape, so dashboards and alerts see 0 rather than
        // a missing series before the first rollup exists.
        metrics.set_phase_counts(&BTreeMap::new());
        Ok(metrics)
    }

    /// Every series name the operator can expose (histograms with their `_bucket`, `_sum` and
    /// `_count` series), sorted. Alert rules and dashboards are checked against it.
    pub fn series_names(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .names
            .iter()
            .flat_map(|(name, kind)| match kind {
                Kind::Plain => vec![name.clone()],
                Kind::Histogram => ["_bucket", "_sum", "_count"]
                    .iter()
                    .map(|suffix| format!("{name}{suffix}"))
                    .collect(),
            })
            .collect();
        out.sort();
        out
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

    /// What one reconciliation of `rollup` changed in its status (`old` -> `new`): observes the
    /// launch latency when the rollup first enters Running, and sets its per-rollup series, or
    /// removes them all once it is torn down.
    pub fn observe_rollup(&self, rollup: &FlashRollup, old: &FlashRollupStatus, new: &FlashRollupStatus) {
        // Once per rollup: a rollup that already ran (a Failed one retried) keeps runningSince.
        if new.phase == Some(Phase::Running)
            && old.phase != Some(Phase::Running)
            && old.running_since.is_none()
            && let (Some(created), Some(running)) = (&rollup.metadata.creation_timestamp, &new.running_since)
        {
            let launch = running.0.duration_since(created.0).as_secs_f64().max(0.0);
            self.launch_duration.observe(launch);
        }
        let namespace = rollup.metadata.namespace.as_deref().unwrap_or_default();
        let name = rollup.metadata.name.as_deref().unwrap_or_default();
        self.export_rollup(namespace, name, new);
    }

    /// Brings the series of one rollup in line with `status`.
    fn export_rollup(&self, namespace: &str, name: &str, status: &FlashRollupStatus) {
        let key = (namespace.to_owned(), name.to_owned());
        let mut all = self.exported.lock().unwrap_or_else(|p| p.into_inner());
        let before = all.remove(&key).unwrap_or_default();
        let phase = status.phase.unwrap_or_default();
        let now = if phase == Phase::TornDown {
            Exported::default()
        } else {
            Exported {
                phase: Some(phase.as_str()),
                conditions: status
                    .conditions
                    .iter()
                    .map(|c| (c.type_.clone(), c.reason.clone()))
                    .collect(),
                height: status.height.is_some(),
                finalized: status.finalized_height.is_some(),
                ended: status.ended_at.is_some(),
                expires: status.expires_at.is_some(),
            }
        };

        // Removal errors only mean "was not there".
        let rollup = [namespace, name];
        if let Some(p) = before.phase
            && before.phase != now.phase
        {
            let _ = self.rollup_phase.remove_label_values(&[namespace, name, p]);
        }
        for (type_, reason) in before.conditions.iter().filter(|c| !now.conditions.contains(c)) {
            let _ = self
                .rollup_condition
                .remove_label_values(&[namespace, name, type_.as_str(), reason.as_str()]);
        }
        if before.height && !now.height {
            let _ = self.rollup_height.remove_label_values(&rollup);
        }
        if before.finalized && !now.finalized {
            let _ = self.rollup_finalized_height.remove_label_values(&rollup);
        }
        if before.ended && !now.ended {
            let _ = self.rollup_ended.remove_label_values(&rollup);
        }
        if before.expires && !now.expires {
            let _ = self.rollup_expires.remove_label_values(&rollup);
        }
        if now.phase.is_none() {
            return;
        }

        self.rollup_phase
            .with_label_values(&[namespace, name, phase.as_str()])
            .set(1);
        for c in &status.conditions {
            self.rollup_condition
                .with_label_values(&[namespace, name, c.type_.as_str(), c.reason.as_str()])
                .set(i64::from(c.status == "True"));
        }
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        if let Some(h) = status.height {
            self.rollup_height.with_label_values(&rollup).set(clamp(h));
        }
        if let Some(h) = status.finalized_height {
            self.rollup_finalized_height.with_label_values(&rollup).set(clamp(h));
        }
        if let Some(t) = &status.ended_at {
            self.rollup_ended.with_label_values(&rollup).set(unix_seconds(t));
        }
        if let Some(t) = &status.expires_at {
            self.rollup_expires.with_label_values(&rollup).set(unix_seconds(t));
        }
        all.insert(key, now);
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

/// A Kubernetes time as Unix seconds with millisecond precision.
fn unix_seconds(t: &Time) -> f64 {
    t.0.as_millisecond() as f64 / 1000.0
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
        metrics.launch_duration.observe(7.0);
        metrics.observe_rollup(&rollup(), &FlashRollupStatus::default(), &running(5, 4));

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
            "flashlayer_launch_duration_seconds",
            "flashlayer_rollup_phase",
            "flashlayer_rollup_condition",
            "flashlayer_rollup_height",
            "flashlayer_rollup_finalized_height",
            "flashlayer_rollup_expires_timestamp_seconds",
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

    const CREATED: &str = "2026-11-21T10:00:00Z";

    fn at(offset_secs: i64) -> Time {
        let base: jiff::Timestamp = CREATED.parse().unwrap();
        Time(base + jiff::SignedDuration::from_secs(offset_secs))
    }

    fn rollup() -> FlashRollup {
        serde_yaml::from_str(&format!(
            "apiVersion: rollups.flashlayer.dev/v1alpha1\nkind: FlashRollup\nmetadata: {{ name: mint, namespace: games, creationTimestamp: '{CREATED}' }}\nspec:\n  ttl: 1h\n  chain: {{ chainId: 901337 }}\n  verification: {{ minOperators: 1 }}\n  settlement: {{ policy: Discard }}\n"
        ))
        .unwrap()
    }

    fn condition(type_: &str, status: &str, reason: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: at(0),
        }
    }

    /// Running since `since` seconds after creation, at block `height`.
    fn running(since: i64, height: u64) -> FlashRollupStatus {
        FlashRollupStatus {
            phase: Some(Phase::Running),
            conditions: vec![
                condition("QuorumMet", "True", "OperatorsAssigned"),
                condition("Ready", "True", "WorkloadsReady"),
            ],
            height: Some(height),
            finalized_height: Some(height.saturating_sub(2)),
            running_since: Some(at(since)),
            expires_at: Some(at(since + 3600)),
            ..Default::default()
        }
    }

    /// The text lines of the series of metric `name` (exactly that name, any labels).
    fn series(metrics: &Metrics, name: &str) -> Vec<String> {
        metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn launch_latency_is_observed_once_from_creation_to_running() {
        let metrics = Metrics::new().unwrap();
        let r = rollup();
        let provisioning = FlashRollupStatus {
            phase: Some(Phase::Provisioning),
            ..Default::default()
        };
        metrics.observe_rollup(&r, &FlashRollupStatus::default(), &provisioning);
        assert_eq!(metrics.launch_duration.get_sample_count(), 0, "not Running yet");
        metrics.observe_rollup(&r, &provisioning, &running(12, 0));
        assert_eq!(metrics.launch_duration.get_sample_count(), 1);
        assert_eq!(metrics.launch_duration.get_sample_sum(), 12.0);
        // Later reconciliations of the same Running rollup, and an operator restart (old status
        // already Running), observe nothing more.
        metrics.observe_rollup(&r, &running(12, 0), &running(12, 30));
        // A Failed rollup retried until it runs again launched once already.
        let failed = FlashRollupStatus {
            phase: Some(Phase::Pending),
            ..running(12, 40)
        };
        metrics.observe_rollup(&r, &failed, &running(100, 40));
        assert_eq!(metrics.launch_duration.get_sample_count(), 1);
    }

    #[test]
    fn per_rollup_series_follow_the_status_and_go_at_teardown() {
        let metrics = Metrics::new().unwrap();
        let r = rollup();
        let run = running(5, 40);
        metrics.observe_rollup(&r, &FlashRollupStatus::default(), &run);
        assert_eq!(
            series(&metrics, "flashlayer_rollup_phase"),
            [r#"flashlayer_rollup_phase{namespace="games",phase="Running",rollup="mint"} 1"#]
        );
        assert_eq!(
            series(&metrics, "flashlayer_rollup_height"),
            [r#"flashlayer_rollup_height{namespace="games",rollup="mint"} 40"#]
        );
        assert_eq!(
            series(&metrics, "flashlayer_rollup_finalized_height"),
            [r#"flashlayer_rollup_finalized_height{namespace="games",rollup="mint"} 38"#]
        );
        let expires = at(3605).0.as_second();
        assert_eq!(
            series(&metrics, "flashlayer_rollup_expires_timestamp_seconds"),
            [format!(
                r#"flashlayer_rollup_expires_timestamp_seconds{{namespace="games",rollup="mint"}} {expires}"#
            )]
        );

        // The quorum is lost: the condition's series changes reason (the old one goes).
        let lost = FlashRollupStatus {
            conditions: vec![
                condition("QuorumMet", "False", "QuorumLost"),
                condition("Ready", "True", "WorkloadsReady"),
            ],
            ..run.clone()
        };
        metrics.observe_rollup(&r, &run, &lost);
        assert_eq!(
            series(&metrics, "flashlayer_rollup_condition"),
            [
                r#"flashlayer_rollup_condition{namespace="games",reason="QuorumLost",rollup="mint",type="QuorumMet"} 0"#,
                r#"flashlayer_rollup_condition{namespace="games",reason="WorkloadsReady",rollup="mint",type="Ready"} 1"#,
            ]
        );

        // Settling: the phase series moves, the end of life appears.
        let settling = FlashRollupStatus {
            phase: Some(Phase::Settling),
            ended_at: Some(at(3605)),
            ..lost.clone()
        };
        metrics.observe_rollup(&r, &lost, &settling);
        assert_eq!(
            series(&metrics, "flashlayer_rollup_phase"),
            [r#"flashlayer_rollup_phase{namespace="games",phase="Settling",rollup="mint"} 1"#]
        );
        assert_eq!(series(&metrics, "flashlayer_rollup_ended_timestamp_seconds").len(), 1);

        // Another rollup keeps its own series when this one is torn down.
        let other: FlashRollup = {
            let mut o = rollup();
            o.metadata.name = Some("other".into());
            o
        };
        metrics.observe_rollup(&other, &FlashRollupStatus::default(), &run);
        let torn = FlashRollupStatus {
            phase: Some(Phase::TornDown),
            ..settling.clone()
        };
        metrics.observe_rollup(&r, &settling, &torn);
        let text = metrics.encode();
        assert!(
            !text.contains(r#"rollup="mint""#),
            "series of a torn-down rollup are left:\n{text}"
        );
        assert!(text.contains(r#"flashlayer_rollup_phase{namespace="games",phase="Running",rollup="other"} 1"#));
        // A torn-down rollup reconciled again (Retain keeps the object) exports nothing.
        metrics.observe_rollup(&r, &torn, &torn);
        assert!(!metrics.encode().contains(r#"rollup="mint""#));
    }

    #[test]
    fn series_names_cover_what_is_encoded_with_histogram_suffixes() {
        let metrics = Metrics::new().unwrap();
        let names = metrics.series_names();
        for suffix in ["_bucket", "_sum", "_count"] {
            assert!(names.contains(&format!("flashlayer_launch_duration_seconds{suffix}")));
        }
        assert!(!names.contains(&"flashlayer_launch_duration_seconds".to_owned()));
        // Every series the operator can encode is named, once every metric has a value.
        {
            let _timer = metrics.reconcile_timer("FlashRollup");
        }
        metrics.reconcile_error("FlashRollup", "apply");
        metrics.phase_transition(Phase::Pending, Phase::Running);
        metrics.settlement_failures.with_label_values(&["l1"]).inc();
        let mut ended = running(5, 40);
        ended.ended_at = Some(at(30));
        metrics.observe_rollup(&rollup(), &FlashRollupStatus::default(), &ended);
        for line in metrics.encode().lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            assert!(names.iter().any(|n| n == name), "{name} is encoded but not named");
        }
    }
}
