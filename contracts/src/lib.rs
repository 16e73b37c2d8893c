//! Flashlayer's L1 settlement contract, `FlashSettlement` (src/FlashSettlement.sol): its compiled
//! artifact (out/FlashSettlement.json, produced by `contracts/compile` with the pinned npm `solc`
//! and checked against a fresh compile by tests/artifact.rs) and Rust bindings for its full ABI,
//! including the custom errors it reverts with.
//!
//! The operator's client (`flashlayer_operator::settlement::l1::IFlashSettlement`) declares the
//! subset it calls; tests/artifact.rs checks that subset against this artifact.

use std::collections::BTreeMap;

use alloy::primitives::{Bytes, keccak256};
use alloy::sol_types::SolInterface;

/// The committed artifact: `{ contractName, source, compiler, abi, bytecode, deployedBytecode }`.
pub const ARTIFACT_JSON: &str = include_str!("../out/FlashSettlement.json");
/// The Solidity source the artifact was compiled from.
pub const SOURCE: &str = include_str!("FlashSettlement.sol");
/// The solc version the artifact is pinned to (npm `solc@0.8.30`).
pub const SOLC_VERSION: &str = "0.8.30";
/// The npm command that installs that compiler where `contracts/compile` looks for it.
pub const SOLC_INSTALL: &str = "npm install --no-audit --no-fund --prefix \"$HOME/.cache/flashlayer/npm\" solc@0.8.30";

alloy::sol! {
    /// The full ABI of src/FlashSettlement.sol (tests/artifact.rs checks it against the artifact).
    #[sol(all_derives)]
    interface FlashSettlement {
        event RollupSettled(bytes32 indexed rollupId, uint64 number, bytes32 blockHash, bytes32 stateRoot);
        event RollupRegistered(bytes32 indexed rollupId, address indexed registrar, uint64 chainId, uint16 quorumBps, uint256 operatorCount, uint256 totalStake);

        error AlreadyRegistered(bytes32 rollupId);
        error EmptyOperatorSet();
        error TooManyOperators(uint256 count);
        error LengthMismatch(uint256 keys, uint256 stakes);
        error BadQuorum(uint16 quorumBps);
        error InvalidPublicKey(uint256 index);
        error ZeroTotalStake();
        error OperatorSetNotStored();
        error UnknownRollup(bytes32 rollupId);
        error NotRegistrar(bytes32 rollupId, address caller);
        error AlreadySettled(bytes32 rollupId, uint64 number);
        error BadBitmap(uint256 signerBitmap, uint256 operatorCount);
        error SignerWithoutKey(uint256 index);
        error QuorumNotMet(uint256 signedStake, uint256 totalStake, uint16 quorumBps);
        error InvalidCertificatePoint();
        error BadSignature();
        error NoSuchOperator(uint256 index, uint256 operatorCount);
        error PrecompileFailed(uint8 precompile);

        function MAX_OPERATORS() view returns (uint256);
        function registerRollup(bytes32 rollupId, uint64 chainId, uint256[2][] g1PublicKeys, uint96[] stakes, uint16 quorumBps);
        function settle(bytes32 rollupId, uint64 number, bytes32 blockHash, bytes32 stateRoot, uint256 signerBitmap, uint256[4] apkG2, uint256[2] sigma);
        function settlement(bytes32 rollupId) view returns (bool settled, uint64 number, bytes32 blockHash, bytes32 stateRoot);
        function isRegistered(bytes32 rollupId) view returns (bool);
        function rollup(bytes32 rollupId) view returns (address registrar, uint64 chainId, uint16 quorumBps, uint16 operatorCount, uint256 totalStake);
        function operatorAt(bytes32 rollupId, uint256 index) view returns (uint256[2] g1, uint96 stake);
        function attestationDigest(uint64 chainId, bytes32 rollupId, uint64 number, bytes32 blockHash, bytes32 stateRoot) pure returns (bytes32);
        function hashToG1(bytes32 msgHash) view returns (uint256 x, uint256 y);
    }
}

/// The parsed artifact.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// The JSON ABI as solc emitted it.
    pub abi: serde_json::Value,
    /// Creation code (what a deployment transaction carries; the contract has no constructor
    /// arguments).
    pub bytecode: Bytes,
    /// Runtime code (what `eth_getCode` returns after deployment).
    pub deployed_bytecode: Bytes,
    /// Full solc version string, e.g. `0.8.30+commit.73712a01.Emscripten.clang`.
    pub compiler_version: String,
}

/// Parses [`ARTIFACT_JSON`].
pub fn artifact() -> Result<Artifact, String> {
    let v: serde_json::Value = serde_json::from_str(ARTIFACT_JSON).map_err(|e| format!("artifact JSON: {e}"))?;
    let hex_field = |name: &str| -> Result<Bytes, String> {
        v[name]
            .as_str()
            .ok_or_else(|| format!("artifact has no {name}"))?
            .parse::<Bytes>()
            .map_err(|e| format!("artifact {name}: {e}"))
    };
    Ok(Artifact {
        abi: v["abi"].clone(),
        bytecode: hex_field("bytecode")?,
        deployed_bytecode: hex_field("deployedBytecode")?,
        compiler_version: v["compiler"]["version"]
            .as_str()
            .ok_or("artifact has no compiler.version")?
            .to_string(),
    })
}

/// Kind of a JSON ABI entry that has a selector or topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AbiKind {
    /// A function: 4-byte selector.
    Function,
    /// A custom error: 4-byte selector.
    Error,
    /// An event: 32-byte topic 0.
    Event,
}

/// Canonical signatures (`name(type,...)`) of the functions, errors and events of a JSON ABI,
/// keyed by signature, with their kind. Tuple parameters are expanded as `(a,b)`.
pub fn abi_signatures(abi: &serde_json::Value) -> BTreeMap<String, AbiKind> {
    fn param_type(p: &serde_json::Value) -> String {
        let ty = p["type"].as_str().unwrap_or_default();
        match ty.strip_prefix("tuple") {
            Some(suffix) => {
                let inner: Vec<String> = p["components"]
                    .as_array()
                    .map(|c| c.iter().map(param_type).collect())
                    .unwrap_or_default();
                format!("({}){suffix}", inner.join(","))
            }
            None => ty.to_string(),
        }
    }
    let mut out = BTreeMap::new();
    for entry in abi.as_array().into_iter().flatten() {
        let kind = match entry["type"].as_str() {
            Some("function") => AbiKind::Function,
            Some("error") => AbiKind::Error,
            Some("event") => AbiKind::Event,
            _ => continue,
        };
        let inputs: Vec<String> = entry["inputs"]
            .as_array()
            .map(|i| i.iter().map(param_type).collect())
            .unwrap_or_default();
        let name = entry["name"].as_str().unwrap_or_default();
        out.insert(format!("{name}({})", inputs.join(",")), kind);
    }
    out
}

/// The 4-byte selector of a function or error signature.
pub fn selector(signature: &str) -> [u8; 4] {
    let h = keccak256(signature.as_bytes());
    [h[0], h[1], h[2], h[3]]
}

/// Decodes revert data of the contract into its custom error, if it is one.
pub fn decode_error(data: &[u8]) -> Option<FlashSettlement::FlashSettlementErrors> {
    FlashSettlement::FlashSettlementErrors::abi_decode(data).ok()
}

/// A readable form of the contract's revert data, e.g.
/// `AlreadySettled { rollupId: 0x…, number: 12 }`; `None` if it is not one of its custom errors.
pub fn describe_error(data: &[u8]) -> Option<String> {
    let debug = format!("{:?}", decode_error(data)?);
    // `Variant(Variant { .. })` or `Variant(Variant)`: keep the inner part.
    Some(match debug.split_once('(') {
        Some((_, inner)) => inner.strip_suffix(')').unwrap_or(inner).to_string(),
        None => debug,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::B256;
    use alloy::sol_types::SolError;

    #[test]
    fn artifact_parses_and_is_pinned() {
        let a = artifact().expect("artifact");
        assert!(
            a.compiler_version.starts_with(&format!("{SOLC_VERSION}+")),
            "{}",
            a.compiler_version
        );
        assert!(a.bytecode.len() > 1000);
        assert!(a.deployed_bytecode.len() > 1000);
        // EIP-170: runtime code at most 24,576 bytes.
        assert!(a.deployed_bytecode.len() <= 24_576);
    }

    #[test]
    fn errors_decode_readably() {
        let data = FlashSettlement::AlreadySettled {
            rollupId: B256::repeat_byte(0x33),
            number: 12,
        }
        .abi_encode();
        let shown = describe_error(&data).expect("known error");
        assert!(shown.starts_with("AlreadySettled {"), "{shown}");
        assert!(shown.contains("number: 12"), "{shown}");
        assert_eq!(
            describe_error(&FlashSettlement::BadSignature {}.abi_encode()).as_deref(),
            Some("BadSignature")
        );
        assert_eq!(describe_error(&[1, 2, 3, 4]), None);
    }

    #[test]
    fn signatures_expand_tuples() {
        let abi = serde_json::json!([
            { "type": "function", "name": "f", "inputs": [
                { "type": "tuple[]", "components": [{ "type": "uint256" }, { "type": "bytes32" }] },
                { "type": "uint256[2][]" }
            ] },
            { "type": "constructor", "inputs": [] },
            { "type": "error", "name": "E", "inputs": [] }
        ]);
        let s = abi_signatures(&abi);
        assert_eq!(s.get("f((uint256,bytes32)[],uint256[2][])"), Some(&AbiKind::Function));
        assert_eq!(s.get("E()"), Some(&AbiKind::Error));
        assert_eq!(s.len(), 2);
    }
}
