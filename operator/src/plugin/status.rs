//! `kubectl flashrollup status`: a FlashRollup and the clock, rendered as the text a person reads
//! at a glance (phase, heights, time left, operators, settlement, conditions). Pure, so every
//! line is tested with fixed objects and a fixed "now".

use std::fmt::Write as _;

use jiff::Timestamp;
use kube::ResourceExt;

use super::duration::{go, human};
use crate::api::flashrollup::{SettlementPolicy, SettlementStatus};
use crate::api::{FlashRollup, SETTLE_NOW_ANNOTATION};
use crate::lifecycle::lifetime_end;

/// Width of the label column ("Running since: " is the longest label).
const LABEL: usize = 16;

/// The instant the rollup starts (or started) settling: the operator's `status.expiresAt`, else
/// what the spec implies (an absolute `expiresAt`, or `runningSince + ttl`). `None` while a ttl
/// has not started counting.
pub fn expiry(fr: &FlashRollup) -> Option<Timestamp> {
    let status = fr.status.as_ref();
    status
        .and_then(|s| s.expires_at.as_ref())
        .map(|t| t.0)
        .or_else(|| lifetime_end(&fr.spec, status.and_then(|s| s.running_since.as_ref()).map(|t| t.0)))
}

/// "4m12s left" before `expires`, "expired 10s ago" from then on.
pub fn time_left(expires: Timestamp, now: Timestamp) -> String {
    let d = expires.duration_since(now);
    if d.is_positive() {
        format!("{} left", human(d))
    } else {
        format!("expired {} ago", human(d))
    }
}

/// When the rollup's lifetime ended (settle-now, expiry, deletion), if it has.
pub fn ended_at(fr: &FlashRollup) -> Option<Timestamp> {
    fr.status.as_ref().and_then(|s| s.ended_at.as_ref()).map(|t| t.0)
}

fn line(out: &mut String, label: &str, value: impl std::fmt::Display) {
    let label = format!("{label}:");
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{label:<LABEL$}{value}");
}

/// Rows as columns padded to their widest cell, each line indented by `indent`; the last
/// column is left unpadded so that long messages do not trail spaces.
pub fn table(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut text = String::from(indent);
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ", width = widths[c]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_owned())
}

/// The whole `status` text of `fr` at `now`.
pub fn render(fr: &FlashRollup, now: Timestamp) -> String {
    let mut out = String::new();
    let status = fr.status.clone().unwrap_or_default();
    let ended = ended_at(fr);

    line(&mut out, "Name", fr.name_any());
    line(&mut out, "Namespace", fr.namespace().unwrap_or_default());
    line(
        &mut out,
        "Phase",
        status
            .phase
            .map(|p| p.to_string())
            .unwrap_or_else(|| "- (the operator has not reconciled it yet)".to_owned()),
    );
    line(&mut out, "Height", or_dash(status.height));
    line(&mut out, "Finalized", or_dash(status.finalized_height));

    // Lifetime: what the spec asks, when it ends, how long is left.
    let asked = match (&fr.spec.ttl, &fr.spec.expires_at) {
        (Some(ttl), _) => format!("ttl {}", go((*ttl).into())),
        (None, Some(at)) => format!("expiresAt {}", at.0),
        (None, None) => "-".to_owned(),
    };
    line(&mut out, "Lifetime", asked);
    if let Some(since) = &status.running_since {
        line(
            &mut out,
            "Running since",
            format!("{} ({} ago)", since.0, human(now.duration_since(since.0))),
        );
    }
    match expiry(fr) {
        Some(at) if ended.is_some() && at > now => line(
            &mut out,
            "Expires",
            format!("{at} (not reached: the rollup ended early)"),
        ),
        Some(at) => line(&mut out, "Expires", format!("{at} ({})", time_left(at, now))),
        None => line(&mut out, "Expires", "not yet: the ttl counts from Running"),
    }
    if let Some(e) = ended {
        line(&mut out, "Ended", format!("{e} ({} ago)", human(now.duration_since(e))));
    } else if fr.annotations().contains_key(SETTLE_NOW_ANNOTATION) {
        line(
            &mut out,
            "Settle now",
            format!("requested (annotation {SETTLE_NOW_ANNOTATION})"),
        );
    }
    if let Some(rpc) = &status.rpc_endpoint {
        line(&mut out, "RPC", rpc);
    }

    // Operators.
    let verification = &fr.spec.verification;
    if status.assigned_operators.is_empty() {
        line(
            &mut out,
            "Operators",
            format!(
                "none assigned (wants {}, quorum {}% of stake)",
                verification.min_operators, verification.quorum_stake_percent
            ),
        );
    } else {
        let stake: u64 = status.assigned_operators.iter().map(|o| o.stake).sum();
        line(
            &mut out,
            "Operators",
            format!(
                "{} assigned, stake {stake}, quorum {}% of stake",
                status.assigned_operators.len(),
                verification.quorum_stake_percent
            ),
        );
        let mut rows = vec![vec!["NAME".to_owned(), "STAKE".to_owned(), "ADDRESS".to_owned()]];
        rows.extend(
            status
                .assigned_operators
                .iter()
                .map(|o| vec![o.name.clone(), o.stake.to_string(), o.address.clone()]),
        );
        out.push_str(&table(&rows, "  "));
    }

    // Settlement.
    let settlement = &fr.spec.settlement;
    match (settlement.policy, &settlement.l1) {
        (SettlementPolicy::Discard, _) => line(&mut out, "Settlement", "Discard (nothing is submitted to an L1)"),
        (SettlementPolicy::Settle, Some(l1)) => line(
            &mut out,
            "Settlement",
            format!(
                "Settle on L1 chain {}, contract {}, {} confirmation{}",
                l1.chain_id,
                l1.contract,
                settlement.confirmations,
                if settlement.confirmations == 1 { "" } else { "s" }
            ),
        ),
        (SettlementPolicy::Settle, None) => line(&mut out, "Settlement", "Settle (no settlement.l1)"),
    }
    if let Some(s) = &status.settlement {
        out.push_str(&settlement_lines(s, now));
    }

    // Conditions.
    if status.conditions.is_empty() {
        line(&mut out, "Conditions", "none yet");
    } else {
        line(&mut out, "Conditions", "");
        let mut rows = vec![vec![
            "TYPE".to_owned(),
            "STATUS".to_owned(),
            "REASON".to_owned(),
            "AGE".to_owned(),
            "MESSAGE".to_owned(),
        ]];
        rows.extend(status.conditions.iter().map(|c| {
            vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                human(now.duration_since(c.last_transition_time.0)),
                c.message.clone(),
            ]
        }));
        out.push_str(&table(&rows, "  "));
    }
    // The empty value of "Conditions:" leaves the label's padding behind.
    out.lines().map(str::trim_end).fold(String::new(), |mut acc, l| {
        acc.push_str(l);
        acc.push('\n');
        acc
    })
}

/// The progress and result of settlement, indented under "Settlement:".
fn settlement_lines(s: &SettlementStatus, now: Timestamp) -> String {
    let mut rows: Vec<(&str, String)> = Vec::new();
    if s.registered || s.registered_tx.is_some() {
        let mut text = if s.registered { "yes" } else { "in progress" }.to_owned();
        if let Some(tx) = &s.registered_tx {
            let _ = write!(text, ", tx {tx}");
        }
        if let Some(block) = s.registered_l1_block_number {
            let _ = write!(text, ", L1 block {block}");
        }
        rows.push(("Registered", text));
    }
    rows.push(("Step", format!("{:?}", s.step)));
    if let Some(tx) = &s.tx_hash {
        rows.push(("Tx", tx.clone()));
    }
    if let Some(block) = s.l1_block_number {
        let confirmations = s
            .confirmations
            .map(|c| format!(" ({c} confirmation{})", if c == 1 { "" } else { "s" }))
            .unwrap_or_default();
        rows.push(("L1 block", format!("{block}{confirmations}")));
    }
    if let Some(h) = s.final_height {
        rows.push(("Final height", h.to_string()));
    }
    if let Some(hash) = &s.block_hash {
        rows.push(("Block hash", hash.clone()));
    }
    if let Some(root) = &s.state_root {
        rows.push(("State root", root.clone()));
    }
    if let Some(at) = &s.settled_at {
        rows.push(("Settled at", at.0.to_string()));
    }
    if s.failed_attempts > 0 {
        let next = s
            .next_attempt_at
            .as_ref()
            .map(|t| {
                let d = t.0.duration_since(now);
                if d.is_positive() {
                    format!(", next attempt in {}", human(d))
                } else {
                    ", next attempt due".to_owned()
                }
            })
            .unwrap_or_default();
        rows.push((
            "Retrying",
            format!("{} failed attempt(s) of this step{next}", s.failed_attempts),
        ));
    }
    let mut out = String::new();
    for (label, value) in rows {
        let label = format!("{label}:");
        let _ = writeln!(out, "  {label:<LABEL$}{value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::api::flashrollup::{Phase, SettlementStep};
    use crate::plugin::fixtures::{rollup, running, t};

    #[test]
    fn running_rollup() {
        let fr = running("ttl: 10m", "Discard");
        let text = render(&fr, t("2026-11-21T10:05:48Z"));
        assert_eq!(
            text,
            "\
Name:           devnet
Namespace:      games
Phase:          Running
Height:         1234
Finalized:      1230
Lifetime:       ttl 10m
Running since:  2026-11-21T10:00:00Z (5m48s ago)
Expires:        2026-11-21T10:10:00Z (4m12s left)
RPC:            http://devnet-rpc.games.svc:8545
Operators:      2 assigned, stake 150, quorum 67% of stake
  NAME        STAKE  ADDRESS
  avs-gold-1  100    0x70997970C51812dc3A010C7d01b50e0d17dc79C8
  avs-gold-3  50     0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC
Settlement:     Discard (nothing is submitted to an L1)
Conditions:
  TYPE         STATUS  REASON             AGE    MESSAGE
  QuorumMet    True    OperatorsAssigned  5m58s  150 of 150 assigned stake is Ready across 2 operators; the quorum is 67%
  Ready        True    WorkloadsReady     5m48s  the sequencer and all verifiers are ready
  TTLAccepted  True    LifetimeSet        5m48s  the rollup settles at 2026-11-21T10:10:00Z
"
        );
    }

    #[test]
    fn expiry_in_the_past_reads_as_expired() {
        let fr = running("ttl: 10m", "Discard");
        let text = render(&fr, t("2026-11-21T10:10:10Z"));
        assert!(
            text.contains("\nExpires:        2026-11-21T10:10:00Z (expired 10s ago)\n"),
            "{text}"
        );
    }

    #[test]
    fn settle_now_request_is_shown_until_the_end() {
        let mut fr = running("ttl: 10m", "Discard");
        fr.metadata
            .annotations
            .get_or_insert_default()
            .insert(SETTLE_NOW_ANNOTATION.into(), "true".into());
        let text = render(&fr, t("2026-11-21T10:05:00Z"));
        assert!(
            text.contains("\nSettle now:     requested (annotation rollups.flashlayer.dev/settle-now)\n"),
            "{text}"
        );
        if let Some(s) = fr.status.as_mut() {
            s.ended_at = Some(Time(t("2026-11-21T10:05:01Z")));
        }
        let text = render(&fr, t("2026-11-21T10:05:03Z"));
        assert!(!text.contains("Settle now:"), "{text}");
        assert!(
            text.contains("\nExpires:        2026-11-21T10:10:00Z (not reached: the rollup ended early)\nEnded:          2026-11-21T10:05:01Z (2s ago)\n"),
            "{text}"
        );
    }

    #[test]
    fn fresh_rollup_without_status() {
        let fr = rollup("ttl: 48h", "Discard");
        let text = render(&fr, t("2026-11-21T10:00:00Z"));
        assert_eq!(
            text,
            "\
Name:           devnet
Namespace:      games
Phase:          - (the operator has not reconciled it yet)
Height:         -
Finalized:      -
Lifetime:       ttl 48h
Expires:        not yet: the ttl counts from Running
Operators:      none assigned (wants 2, quorum 67% of stake)
Settlement:     Discard (nothing is submitted to an L1)
Conditions:     none yet
"
        );
    }

    #[test]
    fn absolute_expiry_is_known_before_running() {
        let fr = rollup("expiresAt: \"2026-12-24T18:00:00Z\"", "Discard");
        let text = render(&fr, t("2026-12-24T15:30:00Z"));
        assert!(
            text.contains("\nLifetime:       expiresAt 2026-12-24T18:00:00Z\n"),
            "{text}"
        );
        assert!(
            text.contains("\nExpires:        2026-12-24T18:00:00Z (2h30m left)\n"),
            "{text}"
        );
    }

    #[test]
    fn settled_rollup_shows_the_l1_transaction() {
        let mut fr = running("ttl: 10m", "Settle");
        if let Some(s) = fr.status.as_mut() {
            s.phase = Some(Phase::TornDown);
            s.ended_at = Some(Time(t("2026-11-21T10:10:00Z")));
            s.settlement = Some(SettlementStatus {
                step: SettlementStep::Done,
                registered: true,
                registered_tx: Some("0xaa".into()),
                registered_l1_block_number: Some(7),
                final_height: Some(1200),
                block_hash: Some("0xbb".into()),
                state_root: Some("0xcc".into()),
                tx_hash: Some("0xdd".into()),
                l1_block_number: Some(42),
                confirmations: Some(2),
                settled_at: Some(Time(t("2026-11-21T10:10:05Z"))),
                ..SettlementStatus::default()
            });
        }
        let text = render(&fr, t("2026-11-21T10:12:00Z"));
        let want = "\
Expires:        2026-11-21T10:10:00Z (expired 2m ago)
Ended:          2026-11-21T10:10:00Z (2m ago)
RPC:            http://devnet-rpc.games.svc:8545
Operators:      2 assigned, stake 150, quorum 67% of stake
  NAME        STAKE  ADDRESS
  avs-gold-1  100    0x70997970C51812dc3A010C7d01b50e0d17dc79C8
  avs-gold-3  50     0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC
Settlement:     Settle on L1 chain 31337, contract 0x5FbDB2315678afecb367f032d93F642f64180aa3, 2 confirmations
  Registered:     yes, tx 0xaa, L1 block 7
  Step:           Done
  Tx:             0xdd
  L1 block:       42 (2 confirmations)
  Final height:   1200
  Block hash:     0xbb
  State root:     0xcc
  Settled at:     2026-11-21T10:10:05Z
Conditions:
";
        assert!(text.contains(want), "{text}");
        assert!(text.contains("\nPhase:          TornDown\n"), "{text}");
    }

    #[test]
    fn settlement_retries_show_when_the_next_attempt_is() {
        let mut fr = running("ttl: 10m", "Settle");
        if let Some(s) = fr.status.as_mut() {
            s.phase = Some(Phase::Settling);
            s.settlement = Some(SettlementStatus {
                step: SettlementStep::Submitting,
                failed_attempts: 3,
                next_attempt_at: Some(Time(t("2026-11-21T10:11:08Z"))),
                ..SettlementStatus::default()
            });
        }
        let text = render(&fr, t("2026-11-21T10:11:00Z"));
        assert!(
            text.contains("\n  Step:           Submitting\n  Retrying:       3 failed attempt(s) of this step, next attempt in 8s\n"),
            "{text}"
        );
    }

    #[test]
    fn time_left_and_expired() {
        let at = t("2026-11-21T10:10:00Z");
        assert_eq!(time_left(at, t("2026-11-21T10:05:48Z")), "4m12s left");
        assert_eq!(time_left(at, t("2026-11-21T10:10:00Z")), "expired 0s ago");
        assert_eq!(time_left(at, t("2026-11-21T10:10:10Z")), "expired 10s ago");
        assert_eq!(time_left(at, t("2026-11-19T09:10:00Z")), "2d1h left");
    }

    #[test]
    fn expiry_falls_back_to_the_spec() {
        let mut fr = running("ttl: 10m", "Discard");
        if let Some(s) = fr.status.as_mut() {
            s.expires_at = None;
        }
        assert_eq!(expiry(&fr), Some(t("2026-11-21T10:10:00Z")), "runningSince + ttl");
        let fr = rollup("ttl: 10m", "Discard");
        assert_eq!(expiry(&fr), None, "a ttl before Running");
    }

    #[test]
    fn table_pads_all_but_the_last_column() {
        let rows = vec![
            vec!["A".to_owned(), "BB".to_owned(), "C".to_owned()],
            vec!["long".to_owned(), "x".to_owned(), "".to_owned()],
        ];
        assert_eq!(table(&rows, "> "), "> A     BB  C\n> long  x\n");
    }
}
