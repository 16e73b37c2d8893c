//! The operator's own validation of a FlashRollup spec: the same rules as the CRD schema, checked
//! again because an object may predate the current CRD or come from a server that skipped CEL.
//! Pure; the message is what the Failed condition shows.

use std::time::Duration;

use crate::api::FlashRollupSpec;
use crate::api::flashrollup::SettlementPolicy;

/// Check a spec; `Err` carries a message for a person.
pub fn spec(spec: &FlashRollupSpec) -> Result<(), String> {
    match (&spec.ttl, &spec.expires_at) {
        (Some(_), Some(_)) | (None, None) => {
            return Err("set exactly one of spec.ttl or spec.expiresAt".into());
        }
        _ => {}
    }
    if let Some(ttl) = spec.ttl {
        if ttl.is_negative() {
            return Err("ttl must be between 1m and 720h (30 days)".into());
        }
        let ttl: Duration = ttl.into();
        if ttl < Duration::from_secs(60) || ttl > Duration::from_secs(720 * 3600) {
            return Err("ttl must be between 1m and 720h (30 days)".into());
        }
    }
    let block_time: Duration = spec.chain.block_time.into();
    if spec.chain.block_time.is_negative()
        || block_time < Duration::from_millis(50)
        || block_time > Duration::from_secs(60)
    {
        return Err("blockTime must be between 50ms and 1m".into());
    }
    if spec.chain.chain_id == 0 {
        return Err("chainId must be greater than 0".into());
    }
    let v = &spec.verification;
    if !(1..=100).contains(&v.min_operators) {
        return Err("minOperators must be between 1 and 100".into());
    }
    if !(51..=100).contains(&v.quorum_stake_percent) {
        return Err("quorumStakePercent must be between 51 and 100".into());
    }
    if spec.settlement.policy == SettlementPolicy::Settle {
        let Some(l1) = &spec.settlement.l1 else {
            return Err("settlement.l1 is required when settlement.policy is Settle".into());
        };
        if l1.contract.parse::<alloy::primitives::Address>().is_err() {
            return Err("l1.contract must be a 0x-prefixed 20-byte hex address".into());
        }
        if !(l1.rpc_url.starts_with("http://") || l1.rpc_url.starts_with("https://")) {
            return Err("l1.rpcUrl must be an http:// or https:// URL".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> FlashRollupSpec {
        serde_yaml::from_str(&format!("chain: {{ chainId: 7 }}\nverification: {{}}\n{extra}")).expect("parses")
    }

    #[test]
    fn accepts_a_good_spec_and_names_what_is_wrong() {
        assert_eq!(spec(&parse("ttl: 10m\nsettlement: { policy: Discard }")), Ok(()));
        let cases = [
            ("settlement: { policy: Discard }", "exactly one of"),
            ("ttl: 10s\nsettlement: { policy: Discard }", "ttl must be between"),
            ("ttl: 10m\nsettlement: { policy: Settle }", "settlement.l1 is required"),
            (
                "ttl: 10m\nsettlement: { policy: Settle, l1: { rpcUrl: 'http://x', chainId: 1, contract: '0x1', signerSecretRef: { name: s } } }",
                "l1.contract",
            ),
        ];
        for (extra, want) in cases {
            let got = spec(&parse(extra)).expect_err(extra);
            assert!(got.contains(want), "{extra}: {got}");
        }
        let mut s = parse("ttl: 10m\nsettlement: { policy: Discard }");
        s.chain.block_time = Duration::from_millis(10).into();
        assert!(spec(&s).is_err_and(|e| e.contains("blockTime")));
    }
}
