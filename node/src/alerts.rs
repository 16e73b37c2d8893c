//! VITAL alerts: a verifier's state root disagreeing with the sequencer's header. Kept (bounded)
//! by the verifier that raised them and by the sequencer they are reported to, which accepts a
//! report only with a valid BLS signature of an operator of its set.

use std::collections::{HashSet, VecDeque};

use alloy::primitives::{Address, B256, keccak256};
use serde::{Deserialize, Serialize};

use crate::bls::G1Point;
use crate::mach::OperatorRef;

/// Alerts kept (the newest), as docs/node-api.md promises.
pub const MAX_ALERTS: usize = 1000;

/// One alert, the JSON of `GET /admin/v1/alerts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// Block whose re-execution disagreed.
    pub number: u64,
    /// Root the verifier computed.
    pub expected_state_root: B256,
    /// Root in the sequencer's header.
    pub got_state_root: B256,
    /// The reporting AVS operator.
    pub operator: Address,
    /// When it was raised.
    pub time: jiff::Timestamp,
}

/// What a verifier POSTs to the sequencer's `/mach/v1/alerts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertReport {
    /// The reporting operator: index in the set or address.
    pub operator: OperatorRef,
    /// Block number.
    pub number: u64,
    /// Root the verifier computed.
    pub expected_state_root: B256,
    /// Root in the sequencer's header.
    pub got_state_root: B256,
    /// BLS signature over [`alert_digest`], so nobody else can fill the operator's alert list.
    pub signature: G1Point,
}

/// The message an alert report signs. Domain-separated from attestations: an alert signature can
/// never be replayed as an attestation (or the reverse).
pub fn alert_digest(chain_id: u64, rollup_id: B256, number: u64, expected: B256, got: B256) -> B256 {
    let mut buf = Vec::with_capacity(19 + 8 + 32 + 8 + 64);
    buf.extend_from_slice(b"flashlayer/v1/alert");
    buf.extend_from_slice(&chain_id.to_be_bytes());
    buf.extend_from_slice(rollup_id.as_slice());
    buf.extend_from_slice(&number.to_be_bytes());
    buf.extend_from_slice(expected.as_slice());
    buf.extend_from_slice(got.as_slice());
    keccak256(buf)
}

/// The bounded alert list, one alert per (operator, block).
#[derive(Debug, Default)]
pub struct AlertLog {
    alerts: VecDeque<Alert>,
    seen: HashSet<(Address, u64)>,
}

impl AlertLog {
    /// Records an alert; `false` if that operator already reported that block.
    pub fn push(&mut self, alert: Alert) -> bool {
        if !self.seen.insert((alert.operator, alert.number)) {
            return false;
        }
        self.alerts.push_back(alert);
        while self.alerts.len() > MAX_ALERTS {
            if let Some(old) = self.alerts.pop_front() {
                self.seen.remove(&(old.operator, old.number));
            }
        }
        true
    }

    /// All kept alerts, oldest first.
    pub fn list(&self) -> Vec<Alert> {
        self.alerts.iter().cloned().collect()
    }

    /// Number of kept alerts.
    pub fn len(&self) -> usize {
        self.alerts.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(n: u64) -> Alert {
        Alert {
            number: n,
            expected_state_root: B256::repeat_byte(1),
            got_state_root: B256::repeat_byte(2),
            operator: Address::repeat_byte(3),
            time: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn bounded_and_deduplicated() {
        let mut log = AlertLog::default();
        assert!(log.push(alert(1)));
        assert!(!log.push(alert(1)));
        for n in 2..=1500 {
            log.push(alert(n));
        }
        assert_eq!(log.len(), MAX_ALERTS);
        assert_eq!(log.list()[0].number, 501);
        let json = serde_json::to_value(alert(7)).expect("json");
        assert_eq!(json["time"], "1970-01-01T00:00:00Z");
        assert!(json["expectedStateRoot"].as_str().is_some_and(|s| s.len() == 66));
    }

    #[test]
    fn digest_binds_every_field() {
        let base = alert_digest(1, B256::ZERO, 2, B256::ZERO, B256::ZERO);
        assert_ne!(base, alert_digest(2, B256::ZERO, 2, B256::ZERO, B256::ZERO));
        assert_ne!(base, alert_digest(1, B256::ZERO, 3, B256::ZERO, B256::ZERO));
        assert_ne!(base, alert_digest(1, B256::ZERO, 2, B256::ZERO, B256::repeat_byte(1)));
    }
}
