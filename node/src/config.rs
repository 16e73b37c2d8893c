//! The chain configuration the operator writes to `/etc/flashlayer/chain.json` (docs/node-api.md):
//! chain parameters, the genesis allocation, and the MACH operator set in signer-bitmap order.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use alloy::primitives::{Address, B256, Bytes, U256};
use serde::Deserialize;

/// Why a chain config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// Path of the file.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file is not the JSON docs/node-api.md describes.
    #[error("parsing chain config: {0}")]
    Json(#[from] serde_json::Error),
    /// A field is present but its value is unusable.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// JSON path of the field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// One genesis account.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct GenesisAccount {
    /// Balance in wei.
    pub balance: U256,
    /// Account nonce.
    pub nonce: u64,
    /// Runtime bytecode (empty for an externally owned account).
    pub code: Bytes,
    /// Storage slots (zero values are dropped: they do not exist in the trie).
    pub storage: BTreeMap<U256, U256>,
}

/// A BN254 public key as the operator publishes it: G1 `x‖y` (64 bytes) and G2
/// `x.c1‖x.c0‖y.c1‖y.c0` (128 bytes), big-endian.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlsPublicKeyBytes {
    /// G1 point, 64 bytes.
    pub g1: [u8; 64],
    /// G2 point, 128 bytes.
    pub g2: [u8; 128],
}

/// One member of the MACH operator set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorConfig {
    /// Position in the signer bitmap.
    pub index: usize,
    /// AVSOperator name (what verifiers pass as `--operator`).
    pub name: String,
    /// Operator address, reported in certificates and alerts.
    pub address: Address,
    /// Restaked stake (weight in the quorum).
    pub stake: u64,
    /// BLS public key; `None` while the AVSOperator has not published one (it cannot sign then).
    pub bls_public_key: Option<BlsPublicKeyBytes>,
}

/// The parsed, validated chain configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainConfig {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Rollup id on the settlement contract.
    pub rollup_id: B256,
    /// Target time between blocks.
    pub block_time_ms: u64,
    /// Gas limit of every block.
    pub gas_limit: u64,
    /// Genesis allocation, ordered by address so genesis is built the same way everywhere.
    pub alloc: BTreeMap<Address, GenesisAccount>,
    /// Share of the total stake that must sign before a block is final.
    pub quorum_stake_percent: u8,
    /// The operator set in signer-bitmap order.
    pub operators: Vec<OperatorConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    chain_id: u64,
    rollup_id: String,
    block_time_ms: u64,
    gas_limit: u64,
    #[serde(default)]
    genesis: RawGenesis,
    quorum_stake_percent: u8,
    #[serde(default)]
    operators: Vec<RawOperator>,
}

#[derive(Deserialize, Default)]
struct RawGenesis {
    #[serde(default)]
    alloc: BTreeMap<String, RawAccount>,
}

#[derive(Deserialize)]
struct RawAccount {
    balance: String,
    #[serde(default)]
    nonce: Option<u64>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    storage: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOperator {
    index: usize,
    name: String,
    address: String,
    stake: u64,
    #[serde(default)]
    bls_public_key: Option<RawBlsKey>,
}

#[derive(Deserialize)]
struct RawBlsKey {
    g1: String,
    g2: String,
}

/// Largest contract code allowed in genesis (EIP-170), as the CRD also enforces.
const MAX_CODE_SIZE: usize = 24 * 1024;

impl ChainConfig {
    /// Reads and validates the file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and validates the JSON text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_json::from_str(text)?;
        if raw.chain_id == 0 {
            return Err(invalid("chainId", "must be greater than 0"));
        }
        if raw.block_time_ms == 0 {
            return Err(invalid("blockTimeMs", "must be greater than 0"));
        }
        if raw.gas_limit < 21_000 {
            return Err(invalid("gasLimit", "must be at least 21000"));
        }
        if !(1..=100).contains(&raw.quorum_stake_percent) {
            return Err(invalid("quorumStakePercent", "must be between 1 and 100"));
        }
        let rollup_id =
            B256::from_str(&raw.rollup_id).map_err(|_| invalid("rollupId", "must be 0x followed by 64 hex digits"))?;

        let mut alloc = BTreeMap::new();
        for (key, acct) in raw.genesis.alloc {
            let field = format!("genesis.alloc[{key}]");
            let address = parse_address(&key).map_err(|r| invalid(&field, r))?;
            let balance = parse_u256(&acct.balance).map_err(|r| invalid(format!("{field}.balance"), r))?;
            let code = match acct.code.as_deref() {
                None | Some("") | Some("0x") => Bytes::new(),
                Some(c) => {
                    let bytes = parse_hex(c).map_err(|r| invalid(format!("{field}.code"), r))?;
                    if bytes.len() > MAX_CODE_SIZE {
                        return Err(invalid(format!("{field}.code"), "larger than 24 KiB (EIP-170)"));
                    }
                    Bytes::from(bytes)
                }
            };
            let mut storage = BTreeMap::new();
            for (k, v) in acct.storage {
                let slot = parse_u256(&k).map_err(|r| invalid(format!("{field}.storage key"), r))?;
                let value = parse_u256(&v).map_err(|r| invalid(format!("{field}.storage[{k}]"), r))?;
                if !value.is_zero() {
                    storage.insert(slot, value);
                }
            }
            let account = GenesisAccount {
                balance,
                nonce: acct.nonce.unwrap_or(0),
                code,
                storage,
            };
            if alloc.insert(address, account).is_some() {
                return Err(invalid(&field, "address listed twice (keys differ only in case)"));
            }
        }

        let mut operators = Vec::with_capacity(raw.operators.len());
        for (pos, op) in raw.operators.into_iter().enumerate() {
            let field = format!("operators[{pos}]");
            if op.index != pos {
                return Err(invalid(
                    format!("{field}.index"),
                    "operators must be listed in signer-bitmap order",
                ));
            }
            if pos >= 256 {
                return Err(invalid("operators", "at most 256 operators fit the signer bitmap"));
            }
            let address = parse_address(&op.address).map_err(|r| invalid(format!("{field}.address"), r))?;
            let bls_public_key = match op.bls_public_key {
                None => None,
                Some(k) => {
                    let g1 = parse_hex(&k.g1)
                        .ok()
                        .and_then(|b| <[u8; 64]>::try_from(b).ok())
                        .ok_or_else(|| invalid(format!("{field}.blsPublicKey.g1"), "must be 0x + 128 hex digits"))?;
                    let g2 = parse_hex(&k.g2)
                        .ok()
                        .and_then(|b| <[u8; 128]>::try_from(b).ok())
                        .ok_or_else(|| invalid(format!("{field}.blsPublicKey.g2"), "must be 0x + 256 hex digits"))?;
                    Some(BlsPublicKeyBytes { g1, g2 })
                }
            };
            operators.push(OperatorConfig {
                index: pos,
                name: op.name,
                address,
                stake: op.stake,
                bls_public_key,
            });
        }

        Ok(Self {
            chain_id: raw.chain_id,
            rollup_id,
            block_time_ms: raw.block_time_ms,
            gas_limit: raw.gas_limit,
            alloc,
            quorum_stake_percent: raw.quorum_stake_percent,
            operators,
        })
    }

    /// The operator with this AVSOperator name.
    pub fn operator_by_name(&self, name: &str) -> Option<&OperatorConfig> {
        self.operators.iter().find(|o| o.name == name)
    }
}

fn parse_address(s: &str) -> Result<Address, String> {
    let hex = s.strip_prefix("0x").ok_or("must be 0x-prefixed")?;
    if hex.len() != 40 {
        return Err("must be 0x followed by 40 hex digits".into());
    }
    Address::from_str(hex).map_err(|e| e.to_string())
}

fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let h = s.strip_prefix("0x").ok_or("must be 0x-prefixed")?;
    hex::decode(h).map_err(|e| e.to_string())
}

/// Decimal, or `0x`-prefixed hex (at most 64 digits), as the FlashRollup spec allows.
pub fn parse_u256(s: &str) -> Result<U256, String> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if h.is_empty() || h.len() > 64 {
            return Err("hex value must have 1 to 64 digits".into());
        }
        U256::from_str_radix(h, 16).map_err(|e| e.to_string())
    } else {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err("must be a decimal or 0x-prefixed hex number".into());
        }
        U256::from_str_radix(s, 10).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        let g1 = format!("0x{}", "01".repeat(64));
        let g2 = format!("0x{}", "02".repeat(128));
        serde_json::json!({
            "chainId": 901337,
            "rollupId": format!("0x{}", "ab".repeat(32)),
            "blockTimeMs": 500,
            "gasLimit": 30000000,
            "genesis": { "alloc": {
                "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266": { "balance": "1000000000000000000" },
                "0x70997970c51812dc3a010c7d01b50e0d17dc79c8": {
                    "balance": "0x10", "nonce": 3, "code": "0x6001",
                    "storage": { "0x01": "0x02", "0x03": "0x00" }
                }
            }},
            "quorumStakePercent": 67,
            "operators": [
                { "index": 0, "name": "op-a", "address": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
                  "stake": 100, "blsPublicKey": { "g1": g1, "g2": g2 } },
                { "index": 1, "name": "op-b", "address": "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
                  "stake": 50, "blsPublicKey": null }
            ],
            "futureField": true
        })
        .to_string()
    }

    #[test]
    fn parses_the_documented_shape() {
        let c = ChainConfig::parse(&sample()).expect("parse");
        assert_eq!(c.chain_id, 901337);
        assert_eq!(c.rollup_id, B256::repeat_byte(0xab));
        assert_eq!(
            (c.block_time_ms, c.gas_limit, c.quorum_stake_percent),
            (500, 30_000_000, 67)
        );
        assert_eq!(c.alloc.len(), 2);
        let a: Address = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8".parse().expect("addr");
        let acct = &c.alloc[&a];
        assert_eq!(acct.balance, U256::from(16));
        assert_eq!(acct.nonce, 3);
        assert_eq!(acct.code.as_ref(), &[0x60, 0x01]);
        assert_eq!(acct.storage.len(), 1, "zero-valued slot dropped");
        assert_eq!(c.operators.len(), 2);
        assert_eq!(c.operators[0].stake, 100);
        assert!(c.operators[0].bls_public_key.is_some());
        assert!(c.operators[1].bls_public_key.is_none());
        assert_eq!(c.operator_by_name("op-b").map(|o| o.index), Some(1));
    }

    #[test]
    fn rejects_bad_values() {
        let mut v: serde_json::Value = serde_json::from_str(&sample()).expect("json");
        v["rollupId"] = "0xabc".into();
        assert!(matches!(
            ChainConfig::parse(&v.to_string()),
            Err(ConfigError::Invalid { .. })
        ));

        let mut v: serde_json::Value = serde_json::from_str(&sample()).expect("json");
        v["genesis"]["alloc"]["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"]["balance"] = "12x".into();
        assert!(ChainConfig::parse(&v.to_string()).is_err());

        let mut v: serde_json::Value = serde_json::from_str(&sample()).expect("json");
        v["operators"][1]["index"] = 5.into();
        assert!(ChainConfig::parse(&v.to_string()).is_err());

        assert!(matches!(ChainConfig::parse("{"), Err(ConfigError::Json(_))));
    }

    #[test]
    fn u256_decimal_and_hex() {
        assert_eq!(parse_u256("0"), Ok(U256::ZERO));
        assert_eq!(parse_u256("0xff"), Ok(U256::from(255)));
        assert_eq!(
            parse_u256("115792089237316195423570985008687907853269984665640564039457584007913129639935"),
            Ok(U256::MAX)
        );
        assert!(parse_u256("").is_err());
        assert!(parse_u256("0x").is_err());
        assert!(parse_u256("-1").is_err());
        assert!(parse_u256("115792089237316195423570985008687907853269984665640564039457584007913129639936").is_err());
    }
}
