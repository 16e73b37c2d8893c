//! The sequencer's MACH state: the aggregator fed by verifiers' attestations, the certificates it
//! produced (persisted, so a restarted sequencer still serves them), the `finalized` height, and
//! the alerts verifiers reported.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use alloy::primitives::B256;

use crate::alerts::{Alert, AlertLog, AlertReport, alert_digest};
use crate::bls;
use crate::chain::Chain;
use crate::mach::{AddOutcome, Aggregator, Attestation, Certificate, MachError, OperatorSet};
use crate::metrics::Metrics;

/// Certificates reloaded from disk at start.
const RESTORED_CERTIFICATES: usize = 64;
/// Production times remembered for the finalization-latency histogram.
const TRACKED_BLOCKS: usize = 4096;

/// Why an attestation or alert report was refused.
#[derive(Debug, thiserror::Error)]
pub enum FinalityError {
    /// The node has no usable operator set.
    #[error("MACH is disabled on this node: {0}")]
    Disabled(String),
    /// The block does not exist (yet).
    #[error("block {0} not found")]
    UnknownBlock(u64),
    /// The aggregator refused it.
    #[error(transparent)]
    Mach(#[from] MachError),
    /// The report's signature does not verify.
    #[error("alert signature does not verify")]
    BadSignature,
    /// The reported root is not the one in this node's header.
    #[error("alert for block {0} names a state root that is not this node's")]
    WrongRoot(u64),
    /// Reading the chain failed.
    #[error("store: {0}")]
    Store(String),
}

/// MACH on the sequencer.
#[derive(Debug)]
pub struct Finality {
    chain: Arc<Chain>,
    aggregator: Result<Mutex<Aggregator>, String>,
    finalized: AtomicU64,
    produced: Mutex<BTreeMap<u64, Instant>>,
    alerts: Mutex<AlertLog>,
    metrics: Metrics,
}

impl Finality {
    /// Builds the aggregator from the chain config and restores persisted certificates.
    pub fn new(chain: Arc<Chain>, metrics: Metrics) -> Self {
        let aggregator = OperatorSet::from_chain_config(&chain.config)
            .map(|set| Aggregator::new(chain.config.chain_id, chain.config.rollup_id, set))
            .map_err(|e| e.to_string());
        let mut finalized = 0;
        let aggregator = match aggregator {
            Ok(mut agg) => {
                match chain.store.certificates(RESTORED_CERTIFICATES) {
                    Ok(records) => {
                        for (number, record) in records {
                            let restored = serde_json::from_slice::<Certificate>(&record)
                                .map_err(|e| e.to_string())
                                .and_then(|c| agg.restore(c).map_err(|e| e.to_string()));
                            if let Err(e) = restored {
                                // A certificate of an earlier operator set (the set was changed):
                                // it stays on disk but is not served as this set's.
                                tracing::warn!(number, error = %e, "stored certificate not restored");
                            }
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "reading stored certificates"),
                }
                finalized = agg.finalized_height().unwrap_or(0);
                Ok(Mutex::new(agg))
            }
            Err(e) => {
                tracing::warn!(error = %e, "MACH disabled: the configured operator set is unusable");
                Err(e)
            }
        };
        metrics.finalized.set(finalized as i64);
        Self {
            chain,
            aggregator,
            finalized: AtomicU64::new(finalized),
            produced: Mutex::new(BTreeMap::new()),
            alerts: Mutex::new(AlertLog::default()),
            metrics,
        }
    }

    /// Highest certified block (0 before the first certificate): the `finalized` tag.
    pub fn finalized_height(&self) -> u64 {
        self.finalized.load(Ordering::Acquire)
    }

    /// Notes when a block was produced, for the finalization-latency histogram.
    pub fn block_produced(&self, number: u64) {
        let mut produced = self.produced.lock().unwrap_or_else(PoisonError::into_inner);
        produced.insert(number, Instant::now());
        while produced.len() > TRACKED_BLOCKS {
            produced.pop_first();
        }
    }

    fn expected(&self, number: u64) -> Result<(B256, B256), FinalityError> {
        let header = self
            .chain
            .store
            .header(number)
            .map_err(|e| FinalityError::Store(e.to_string()))?
            .ok_or(FinalityError::UnknownBlock(number))?;
        Ok((header.hash_slow(), header.state_root))
    }

    /// Takes a verifier's attestation.
    pub fn submit(&self, att: &Attestation) -> Result<AddOutcome, FinalityError> {
        let agg = self
            .aggregator
            .as_ref()
            .map_err(|e| FinalityError::Disabled(e.clone()))?;
        let result = self.expected(att.number).and_then(|expected| {
            let mut agg = agg.lock().unwrap_or_else(PoisonError::into_inner);
            agg.add(att, &expected).map_err(FinalityError::from)
        });
        let label = match &result {
            Ok(AddOutcome::Certified(_)) => "certified",
            Ok(AddOutcome::Pending { .. }) => "accepted",
            Ok(AddOutcome::Duplicate) => "duplicate",
            Ok(AddOutcome::AlreadyFinal) => "already_final",
            Err(FinalityError::Mach(e)) => e.label(),
            Err(FinalityError::UnknownBlock(_)) => "unknown_block",
            Err(_) => "error",
        };
        self.metrics.attestations.with_label_values(&[label]).inc();
        if let Ok(AddOutcome::Certified(cert)) = &result {
            self.certified(cert);
        }
        result
    }

    fn certified(&self, cert: &Certificate) {
        match serde_json::to_vec(cert) {
            Ok(record) => {
                if let Err(e) = self.chain.store.put_certificate(cert.number, &record) {
                    tracing::error!(number = cert.number, error = %e, "persisting certificate");
                }
            }
            Err(e) => tracing::error!(error = %e, "encoding certificate"),
        }
        let previous = self.finalized.fetch_max(cert.number, Ordering::AcqRel);
        self.metrics.finalized.set(previous.max(cert.number) as i64);
        let produced = self.produced.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = produced.get(&cert.number) {
            self.metrics.finalization_seconds.observe(at.elapsed().as_secs_f64());
        }
        tracing::info!(
            number = cert.number,
            signers = cert.signers.len(),
            "block certified (MACH final)"
        );
    }

    /// The certificate of block `number`, if certified.
    pub fn certificate(&self, number: u64) -> Option<Certificate> {
        let agg = self.aggregator.as_ref().ok()?;
        let agg = agg.lock().unwrap_or_else(PoisonError::into_inner);
        agg.certificate(number).cloned()
    }

    /// Takes a verifier's signed alert report.
    pub fn report_alert(&self, report: &AlertReport) -> Result<bool, FinalityError> {
        let agg = self
            .aggregator
            .as_ref()
            .map_err(|e| FinalityError::Disabled(e.clone()))?;
        let (_, header_root) = self.expected(report.number)?;
        if report.got_state_root != header_root {
            return Err(FinalityError::WrongRoot(report.number));
        }
        let address = {
            let agg = agg.lock().unwrap_or_else(PoisonError::into_inner);
            let op = agg.operator_set().resolve(&report.operator)?;
            let (_, g2) = op.keys().ok_or(FinalityError::BadSignature)?;
            let msg = alert_digest(
                self.chain.config.chain_id,
                self.chain.config.rollup_id,
                report.number,
                report.expected_state_root,
                report.got_state_root,
            );
            if !bls::verify(msg, g2, &report.signature) {
                return Err(FinalityError::BadSignature);
            }
            op.address
        };
        let alert = Alert {
            number: report.number,
            expected_state_root: report.expected_state_root,
            got_state_root: report.got_state_root,
            operator: address,
            time: jiff::Timestamp::now(),
        };
        let fresh = self.alerts.lock().unwrap_or_else(PoisonError::into_inner).push(alert);
        if fresh {
            self.metrics.alerts.inc();
            tracing::warn!(
                number = report.number,
                operator = %address,
                expected = %report.expected_state_root,
                got = %report.got_state_root,
                "verifier reported a state-root mismatch"
            );
        }
        Ok(fresh)
    }

    /// Alerts reported to this node.
    pub fn alerts(&self) -> Vec<Alert> {
        self.alerts.lock().unwrap_or_else(PoisonError::into_inner).list()
    }

    /// Number of alerts held.
    pub fn alert_count(&self) -> usize {
        self.alerts.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}
