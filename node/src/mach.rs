//! MACH fast finality on the sequencer: verify verifiers' BLS attestations against the configured
//! operator set, aggregate them per block, and keep the quorum certificate (docs/node-api.md) once
//! the signers hold the quorum's share of stake. Pure and synchronous; the caller owns locking,
//! persistence and HTTP.

use std::collections::BTreeMap;

use alloy::primitives::{Address, B256, U256, keccak256};
use ark_bn254::{G1Projective, G2Projective};
use ark_ec::{AdditiveGroup, CurveGroup};
use ark_ff::Zero;
use revm::precompile::{bn254, modexp};
use serde::{Deserialize, Serialize};

use crate::bls::{self, G1Point, G2Point, SecretKey};

/// The signer bitmap is a uint256 on L1.
pub const MAX_OPERATORS: usize = 256;
/// Blocks with attestations but no quorum yet that are kept; beyond it the oldest is dropped, so
/// verifiers signing while the quorum is unreachable cannot grow memory without bound.
pub const MAX_PENDING_BLOCKS: usize = 1024;
/// Certificates kept by default (the newest ones). The operator only ever asks for the final
/// block's, which is always the newest.
pub const DEFAULT_CERTIFICATE_RETENTION: usize = 4096;
/// Gas BLSSignatureChecker hands the pairing precompile (`PAIRING_EQUALITY_CHECK_GAS`).
pub const PAIRING_GAS_LIMIT: u64 = 120_000;

/// Why an attestation, an operator set or a certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MachError {
    /// The configured operator set cannot be used for MACH at all.
    #[error("MACH operator set: {0}")]
    BadSet(String),
    /// The attestation names an operator that is not in the set.
    #[error("operator {0} is not in this rollup's operator set")]
    UnknownOperator(String),
    /// The address is listed for several operators; the attestation must use the index.
    #[error("address {0} belongs to more than one operator of the set; attest by index")]
    AmbiguousOperator(Address),
    /// Hash or state root differ from the sequencer's own block of that number.
    #[error("attestation for block {number} does not match the sequencer's block hash and state root")]
    WrongBlock {
        /// Attested block number.
        number: u64,
    },
    /// The operator's configured public keys are missing, malformed, or do not belong together.
    #[error("operator {index} cannot attest: {reason}")]
    UnusableKey {
        /// Bit index of the operator.
        index: usize,
        /// What is wrong with its keys.
        reason: String,
    },
    /// The BLS signature does not verify against the operator's keys.
    #[error("signature of operator {index} on block {number} does not verify")]
    BadSignature {
        /// Bit index of the operator.
        index: usize,
        /// Attested block number.
        number: u64,
    },
    /// A certificate (restored or checked) is not valid for this set.
    #[error("certificate rejected: {0}")]
    BadCertificate(String),
}

impl MachError {
    /// Stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::BadSet(_) => "bad_set",
            Self::UnknownOperator(_) => "unknown_operator",
            Self::AmbiguousOperator(_) => "ambiguous_operator",
            Self::WrongBlock { .. } => "wrong_block",
            Self::UnusableKey { .. } => "unusable_key",
            Self::BadSignature { .. } => "bad_signature",
            Self::BadCertificate(_) => "bad_certificate",
        }
    }
}

/// One member as the chain config lists it, before its keys are checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// AVSOperator name (for messages only).
    pub name: String,
    /// Operator address, reported in certificates.
    pub address: Address,
    /// Stake (weight).
    pub stake: u64,
    /// `(g1 = x‖y, g2 = x.c1‖x.c0‖y.c1‖y.c0)`, big-endian; `None` if not published.
    pub bls_public_key: Option<([u8; 64], [u8; 128])>,
}

/// A member of the set with its keys checked.
#[derive(Clone, Debug)]
pub struct Operator {
    /// Bit in the signer bitmap.
    pub index: usize,
    /// AVSOperator name.
    pub name: String,
    /// Operator address.
    pub address: Address,
    /// Stake (weight).
    pub stake: u64,
    keys: Result<(G1Point, G2Point), String>,
}

impl Operator {
    /// `(G1 key, G2 key)` if they are valid points of one secret.
    pub fn keys(&self) -> Option<(&G1Point, &G2Point)> {
        self.keys.as_ref().ok().map(|(a, b)| (a, b))
    }

    /// Why this operator cannot attest, if it cannot.
    pub fn unusable_reason(&self) -> Option<&str> {
        self.keys.as_ref().err().map(String::as_str)
    }

    fn usable_keys(&self) -> Result<(G1Point, G2Point), MachError> {
        self.keys.clone().map_err(|reason| MachError::UnusableKey {
            index: self.index,
            reason,
        })
    }
}

/// Which operator an attestation is from: its bit index or its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OperatorRef {
    /// Position in the set (bit of the signer bitmap).
    Index(u64),
    /// Operator address.
    Address(Address),
}

/// The operator set a rollup was configured with, in signer-bitmap order.
///
/// An operator whose keys are missing, malformed, or whose G1 and G2 keys are not of one secret
/// stays in the set (its bit and stake count) but cannot attest: a typo in one AVSOperator must
/// not stop the sequencer, it only removes that operator's stake from what can sign.
#[derive(Clone, Debug)]
pub struct OperatorSet {
    operators: Vec<Operator>,
    quorum_stake_percent: u8,
    total_stake: U256,
}

impl OperatorSet {
    /// Checks the structure (1..=256 operators, nonzero total stake, quorum 1..=100 %) and every
    /// operator's keys (one pairing each).
    pub fn new(quorum_stake_percent: u8, members: Vec<Member>) -> Result<Self, MachError> {
        if members.is_empty() {
            return Err(MachError::BadSet("no operators: MACH cannot finalize anything".into()));
        }
        if members.len() > MAX_OPERATORS {
            return Err(MachError::BadSet(format!(
                "{} operators, but the signer bitmap holds {MAX_OPERATORS}",
                members.len()
            )));
        }
        if !(1..=100).contains(&quorum_stake_percent) {
            return Err(MachError::BadSet(format!(
                "quorumStakePercent {quorum_stake_percent} is not in 1..=100"
            )));
        }
        let total_stake: U256 = members.iter().map(|m| U256::from(m.stake)).sum();
        if total_stake.is_zero() {
            return Err(MachError::BadSet("total stake is zero".into()));
        }
        let operators = members
            .into_iter()
            .enumerate()
            .map(|(index, m)| Operator {
                index,
                keys: check_keys(m.bls_public_key.as_ref()),
                name: m.name,
                address: m.address,
                stake: m.stake,
            })
            .collect();
        Ok(Self {
            operators,
            quorum_stake_percent,
            total_stake,
        })
    }

    /// The set from the parsed chain config (`operators`, `quorumStakePercent`).
    pub fn from_chain_config(cfg: &crate::config::ChainConfig) -> Result<Self, MachError> {
        let members = cfg
            .operators
            .iter()
            .map(|o| Member {
                name: o.name.clone(),
                address: o.address,
                stake: o.stake,
                bls_public_key: o.bls_public_key.as_ref().map(|k| (k.g1, k.g2)),
            })
            .collect();
        Self::new(cfg.quorum_stake_percent, members)
    }

    /// Operators in bit order.
    pub fn operators(&self) -> &[Operator] {
        &self.operators
    }

    /// Number of operators.
    pub fn len(&self) -> usize {
        self.operators.len()
    }

    /// Never true for a constructed set; present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.operators.is_empty()
    }

    /// Sum of all stakes.
    pub fn total_stake(&self) -> U256 {
        self.total_stake
    }

    /// The quorum as configured, in percent.
    pub fn quorum_stake_percent(&self) -> u8 {
        self.quorum_stake_percent
    }

    /// The quorum in basis points, as `registerRollup` takes it.
    pub fn quorum_bps(&self) -> u16 {
        u16::from(self.quorum_stake_percent) * 100
    }

    /// `signed * 10000 >= total * quorumBps`, the contract's rule (same as `signed * 100 >=
    /// total * percent`).
    pub fn quorum_met(&self, signed_stake: U256) -> bool {
        signed_stake * U256::from(10_000u32) >= self.total_stake * U256::from(self.quorum_bps())
    }

    /// The operator an attestation names.
    pub fn resolve(&self, who: &OperatorRef) -> Result<&Operator, MachError> {
        match *who {
            OperatorRef::Index(i) => usize::try_from(i)
                .ok()
                .and_then(|i| self.operators.get(i))
                .ok_or_else(|| MachError::UnknownOperator(format!("#{i}"))),
            OperatorRef::Address(a) => {
                let mut hits = self.operators.iter().filter(|o| o.address == a);
                match (hits.next(), hits.next()) {
                    (Some(o), None) => Ok(o),
                    (Some(_), Some(_)) => Err(MachError::AmbiguousOperator(a)),
                    (None, _) => Err(MachError::UnknownOperator(a.to_string())),
                }
            }
        }
    }

    /// Checks a certificate as the contract would, with the field library: bitmap within the set,
    /// the signer list and stakes as the bitmap implies, quorum, and the gamma pairing check.
    pub fn verify_certificate(&self, cert: &Certificate) -> Result<(), MachError> {
        let bad = |m: &str| Err(MachError::BadCertificate(m.to_string()));
        let members = self.members_of(cert.signer_bitmap)?;
        if members.is_empty() {
            return bad("no signers");
        }
        let signers: Vec<Address> = members.iter().map(|o| o.address).collect();
        if cert.signers != signers {
            return bad("signers do not match the bitmap");
        }
        let signed: U256 = members.iter().map(|o| U256::from(o.stake)).sum();
        if cert.signed_stake != signed || cert.total_stake != self.total_stake {
            return bad("stakes do not match the operator set");
        }
        if !self.quorum_met(signed) {
            return bad("quorum not met");
        }
        let mut apk_g1 = G1Projective::zero();
        for o in &members {
            apk_g1 += o.usable_keys()?.0.0;
        }
        let apk_g2 = G2Point::from_words(&cert.apk_g2).map_err(|e| MachError::BadCertificate(e.to_string()))?;
        let sigma = G1Point::from_words(&cert.sigma).map_err(|e| MachError::BadCertificate(e.to_string()))?;
        if !bls::verify_aggregate(cert.msg_hash(), &G1Point(apk_g1.into_affine()), &apk_g2, &sigma) {
            return bad("aggregate signature does not verify");
        }
        Ok(())
    }

    fn members_of(&self, bitmap: U256) -> Result<Vec<&Operator>, MachError> {
        if self.operators.len() < MAX_OPERATORS && !(bitmap >> self.operators.len()).is_zero() {
            return Err(MachError::BadCertificate("bitmap names a non-member".into()));
        }
        Ok(self.operators.iter().filter(|o| bitmap.bit(o.index)).collect())
    }
}

/// Both keys must be valid, not the identity, and of one secret: `e(pk1, G2) == e(G1, pk2)`.
fn check_keys(key: Option<&([u8; 64], [u8; 128])>) -> Result<(G1Point, G2Point), String> {
    let (g1, g2) = key.ok_or("no BLS public key published")?;
    let g1 = G1Point::from_bytes(g1).map_err(|e| format!("blsPublicKey.g1: {e}"))?;
    let g2 = G2Point::from_bytes(g2).map_err(|e| format!("blsPublicKey.g2: {e}"))?;
    if g1.is_infinity() || g2.is_infinity() {
        return Err("public key is the point at infinity".into());
    }
    if !bls::keys_match(&g1, &g2) {
        return Err("blsPublicKey.g1 and blsPublicKey.g2 are not of the same secret key".into());
    }
    Ok((g1, g2))
}

/// What a verifier POSTs to `/mach/v1/attestations` (docs/node-api.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attestation {
    /// The attesting operator: index in the set or address.
    pub operator: OperatorRef,
    /// Block number.
    pub number: u64,
    /// Block hash the verifier re-executed.
    pub block_hash: B256,
    /// State root the verifier computed.
    pub state_root: B256,
    /// `sk * H(attestation_digest(...))`, `[x, y]`.
    pub signature: G1Point,
}

impl Attestation {
    /// Signs block `(number, block_hash, state_root)` of rollup `(chain_id, rollup_id)`.
    pub fn sign(
        key: &SecretKey,
        operator: OperatorRef,
        chain_id: u64,
        rollup_id: B256,
        number: u64,
        block_hash: B256,
        state_root: B256,
    ) -> Self {
        let msg = bls::attestation_digest(chain_id, rollup_id, number, block_hash, state_root);
        Self {
            operator,
            number,
            block_hash,
            state_root,
            signature: key.sign(msg),
        }
    }
}

/// MACH quorum certificate, exactly the JSON of `GET /admin/v1/certificate/{number}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    /// The rollup's EVM chain id (part of the signed message).
    pub chain_id: u64,
    /// Rollup id on the settlement contract.
    pub rollup_id: B256,
    /// Certified block number.
    pub number: u64,
    /// Certified block hash.
    pub block_hash: B256,
    /// Certified state root.
    pub state_root: B256,
    /// Bit i set = operator i signed.
    pub signer_bitmap: U256,
    /// Signers' addresses, ascending bit order.
    pub signers: Vec<Address>,
    /// Stake of the signers.
    pub signed_stake: U256,
    /// Stake of the whole set.
    pub total_stake: U256,
    /// Aggregate G2 key of the signers, `[x.c1, x.c0, y.c1, y.c0]`.
    #[serde(with = "bls::words")]
    pub apk_g2: [U256; 4],
    /// Aggregate signature, `[x, y]`.
    #[serde(with = "bls::words")]
    pub sigma: [U256; 2],
}

impl Certificate {
    /// The message the signers signed.
    pub fn msg_hash(&self) -> B256 {
        bls::attestation_digest(
            self.chain_id,
            self.rollup_id,
            self.number,
            self.block_hash,
            self.state_root,
        )
    }
}

/// What [`Aggregator::add`] did with an attestation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddOutcome {
    /// Counted; the block is not final yet.
    Pending {
        /// Stake that has signed this block so far.
        signed_stake: U256,
    },
    /// This attestation completed the quorum: the block is certified (and final).
    Certified(Box<Certificate>),
    /// The operator had already attested this block; nothing changed.
    Duplicate,
    /// The block is already certified, or below the finalized height; nothing to do.
    AlreadyFinal,
}

#[derive(Debug)]
struct Pending {
    block: (B256, B256),
    bitmap: U256,
    signed_stake: U256,
    sigma: G1Projective,
    apk_g2: G2Projective,
}

/// Collects attestations per block and certifies blocks that reach the quorum.
#[derive(Debug)]
pub struct Aggregator {
    chain_id: u64,
    rollup_id: B256,
    set: OperatorSet,
    pending: BTreeMap<u64, Pending>,
    certificates: BTreeMap<u64, Certificate>,
    retention: usize,
}

impl Aggregator {
    /// An aggregator for rollup `(chain_id, rollup_id)` and its operator set.
    pub fn new(chain_id: u64, rollup_id: B256, set: OperatorSet) -> Self {
        Self {
            chain_id,
            rollup_id,
            set,
            pending: BTreeMap::new(),
            certificates: BTreeMap::new(),
            retention: DEFAULT_CERTIFICATE_RETENTION,
        }
    }

    /// Keep at most `n` (at least 1) newest certificates.
    pub fn with_retention(mut self, n: usize) -> Self {
        self.retention = n.max(1);
        self
    }

    /// The operator set.
    pub fn operator_set(&self) -> &OperatorSet {
        &self.set
    }

    /// Takes one attestation. `expected` is `(block_hash, state_root)` of block `att.number` in the
    /// sequencer's own chain; the caller must not call this for blocks it does not have yet.
    ///
    /// Order of checks: operator in the set, block matches, not already final, not a duplicate
    /// (both cheap, before any curve arithmetic), the operator's keys usable, then the signature
    /// (BLSSignatureChecker's gamma check with that operator's G1 and G2 key, which also proves the
    /// two keys agree, so every signature aggregated here is one the contract will accept).
    pub fn add(&mut self, att: &Attestation, expected: &(B256, B256)) -> Result<AddOutcome, MachError> {
        let op = self.set.resolve(&att.operator)?;
        let (index, stake) = (op.index, op.stake);
        if (att.block_hash, att.state_root) != *expected {
            return Err(MachError::WrongBlock { number: att.number });
        }
        if self.finalized_height().is_some_and(|h| att.number <= h) {
            return Ok(AddOutcome::AlreadyFinal);
        }
        let known = self.pending.get(&att.number).filter(|p| p.block == *expected);
        if known.is_some_and(|p| p.bitmap.bit(index)) {
            return Ok(AddOutcome::Duplicate);
        }
        let (g1, g2) = op.usable_keys()?;
        let msg = bls::attestation_digest(
            self.chain_id,
            self.rollup_id,
            att.number,
            att.block_hash,
            att.state_root,
        );
        if !bls::verify_aggregate(msg, &g1, &g2, &att.signature) {
            return Err(MachError::BadSignature {
                index,
                number: att.number,
            });
        }

        let fresh = || Pending {
            block: *expected,
            bitmap: U256::ZERO,
            signed_stake: U256::ZERO,
            sigma: G1Projective::ZERO,
            apk_g2: G2Projective::ZERO,
        };
        let p = self.pending.entry(att.number).or_insert_with(fresh);
        if p.block != *expected {
            // The sequencer's block of this number changed (it never should): start over.
            *p = fresh();
        }
        p.bitmap.set_bit(index, true);
        p.signed_stake += U256::from(stake);
        p.sigma += att.signature.0;
        p.apk_g2 += g2.0;
        let signed_stake = p.signed_stake;

        if !self.set.quorum_met(signed_stake) {
            while self.pending.len() > MAX_PENDING_BLOCKS {
                self.pending.pop_first();
            }
            return Ok(AddOutcome::Pending { signed_stake });
        }
        let Some(p) = self.pending.remove(&att.number) else {
            return Ok(AddOutcome::Pending { signed_stake });
        };
        let cert = Certificate {
            chain_id: self.chain_id,
            rollup_id: self.rollup_id,
            number: att.number,
            block_hash: att.block_hash,
            state_root: att.state_root,
            signer_bitmap: p.bitmap,
            signers: self
                .set
                .operators
                .iter()
                .filter(|o| p.bitmap.bit(o.index))
                .map(|o| o.address)
                .collect(),
            signed_stake: p.signed_stake,
            total_stake: self.set.total_stake,
            apk_g2: G2Point(p.apk_g2.into_affine()).to_words(),
            sigma: G1Point(p.sigma.into_affine()).to_words(),
        };
        self.keep(cert.clone());
        Ok(AddOutcome::Certified(Box::new(cert)))
    }

    /// Puts back a certificate from the sequencer's store after a restart, after checking it
    /// belongs to this rollup and verifies against this set.
    pub fn restore(&mut self, cert: Certificate) -> Result<(), MachError> {
        if cert.chain_id != self.chain_id || cert.rollup_id != self.rollup_id {
            return Err(MachError::BadCertificate("certificate of another rollup".into()));
        }
        self.set.verify_certificate(&cert)?;
        self.keep(cert);
        Ok(())
    }

    /// The certificate of block `number`, once certified (and still retained).
    pub fn certificate(&self, number: u64) -> Option<&Certificate> {
        self.certificates.get(&number)
    }

    /// The newest certificate.
    pub fn latest_certificate(&self) -> Option<&Certificate> {
        self.certificates.last_key_value().map(|(_, c)| c)
    }

    /// Highest certified block: the `finalized` tag. `None` before the first certificate.
    pub fn finalized_height(&self) -> Option<u64> {
        self.certificates.last_key_value().map(|(n, _)| *n)
    }

    /// Stake that has signed block `number` so far (`None` if nobody has, or it is final).
    pub fn signed_stake(&self, number: u64) -> Option<U256> {
        self.pending.get(&number).map(|p| p.signed_stake)
    }

    fn keep(&mut self, cert: Certificate) {
        let number = cert.number;
        self.certificates.insert(number, cert);
        // Blocks up to a final one are final by ancestry; their partial aggregates are moot.
        self.pending.retain(|n, _| *n > number);
        while self.certificates.len() > self.retention {
            self.certificates.pop_first();
        }
    }
}

/// What the gas-free L1 check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L1Check {
    /// The 384 bytes `settle` hands the ecPairing precompile.
    pub pairing_input: Vec<u8>,
    /// Gas the precompile calls would cost (modexp, ecAdd, ecMul, ecPairing), for information.
    pub precompile_gas: u64,
}

/// Replays what the settlement contract's `settle` does with this certificate, using revm's
/// implementations of the precompiles the contract calls (0x05 modexp in `hashToG1`, 0x06 ecAdd,
/// 0x07 ecMul, 0x08 ecPairing) on exactly the words it would pass, with the set's registered G1
/// keys and stakes. Only the arguments `settle` receives are used (bitmap, apkG2, sigma, block);
/// the certificate's `signers`/`signedStake` fields are informational to the contract.
pub fn l1_check(set: &OperatorSet, cert: &Certificate) -> Result<L1Check, MachError> {
    let reject = |m: String| MachError::BadCertificate(format!("L1 would revert: {m}"));
    let n = set.len();
    if n < MAX_OPERATORS && !(cert.signer_bitmap >> n).is_zero() {
        return Err(reject("bitmap names a non-member".into()));
    }
    let mut gas = 0u64;
    let mut apk = [0u8; 64];
    let mut signed = U256::ZERO;
    for o in set.operators().iter().filter(|o| cert.signer_bitmap.bit(o.index)) {
        signed += U256::from(o.stake);
        let g1 = o.usable_keys().map_err(|e| reject(e.to_string()))?.0;
        apk = ec_add(&apk, &g1.to_bytes(), &mut gas).map_err(reject)?;
    }
    if signed * U256::from(10_000u32) < set.total_stake() * U256::from(set.quorum_bps()) {
        return Err(reject("quorum not met".into()));
    }
    let msg_hash = cert.msg_hash();
    let mut packed = Vec::with_capacity(9 * 32);
    packed.extend_from_slice(msg_hash.as_slice());
    packed.extend_from_slice(&apk);
    for w in cert.apk_g2.iter().chain(&cert.sigma) {
        packed.extend_from_slice(&w.to_be_bytes::<32>());
    }
    let gamma = U256::from_be_bytes(keccak256(&packed).0).reduce_mod(bls::FR_MODULUS);
    let sigma: Vec<u8> = cert.sigma.iter().flat_map(|w| w.to_be_bytes::<32>()).collect();
    let lhs = ec_add(&sigma, &ec_mul(&apk, gamma, &mut gas).map_err(reject)?, &mut gas).map_err(reject)?;
    let h = hash_to_g1_via_modexp(msg_hash, &mut gas).map_err(reject)?;
    let gen_g1 = [U256::from(1), U256::from(2)];
    let g_gamma = ec_mul(&words_bytes(&gen_g1), gamma, &mut gas).map_err(reject)?;
    let rhs = ec_add(&words_bytes(&h), &g_gamma, &mut gas).map_err(reject)?;

    // BN254.sol's negGeneratorG2, as the contract spells it (decimal, x.c1 first).
    let neg_g2 = [
        alloy::primitives::uint!(11559732032986387107991004021392285783925812861821192530917403151452391805634_U256),
        alloy::primitives::uint!(10857046999023057135944570762232829481370756359578518086990519993285655852781_U256),
        alloy::primitives::uint!(17805874995975841540914202342111839520379459829704422454583296818431106115052_U256),
        alloy::primitives::uint!(13392588948715843804641432497768002650278120570034223513918757245338268106653_U256),
    ];
    let mut input = Vec::with_capacity(384);
    input.extend_from_slice(&lhs);
    input.extend_from_slice(&words_bytes(&neg_g2));
    input.extend_from_slice(&rhs);
    input.extend_from_slice(&words_bytes(&cert.apk_g2));
    let out = bn254::run_pair(
        &input,
        bn254::pair::ISTANBUL_PAIR_PER_POINT,
        bn254::pair::ISTANBUL_PAIR_BASE,
        PAIRING_GAS_LIMIT,
    )
    .map_err(|e| reject(format!("ecPairing failed: {e:?}")))?;
    gas += out.gas_used;
    if U256::from_be_slice(&out.bytes) != U256::from(1) {
        return Err(reject("pairing check is false".into()));
    }
    Ok(L1Check {
        pairing_input: input,
        precompile_gas: gas,
    })
}

fn words_bytes(words: &[U256]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_be_bytes::<32>()).collect()
}

fn ec_add(a: &[u8], b: &[u8], gas: &mut u64) -> Result<[u8; 64], String> {
    let input = [a, b].concat();
    let out = bn254::run_add(&input, bn254::add::ISTANBUL_ADD_GAS_COST, u64::MAX)
        .map_err(|e| format!("ecAdd failed: {e:?}"))?;
    *gas += out.gas_used;
    out.bytes
        .as_ref()
        .try_into()
        .map_err(|_| "ecAdd output length".to_string())
}

fn ec_mul(p: &[u8], s: U256, gas: &mut u64) -> Result<[u8; 64], String> {
    let input = [p, &s.to_be_bytes::<32>()].concat();
    let out = bn254::run_mul(&input, bn254::mul::ISTANBUL_MUL_GAS_COST, u64::MAX)
        .map_err(|e| format!("ecMul failed: {e:?}"))?;
    *gas += out.gas_used;
    out.bytes
        .as_ref()
        .try_into()
        .map_err(|_| "ecMul output length".to_string())
}

/// BN254.sol's `hashToG1`/`findYFromX` with Solidity arithmetic and the modexp precompile.
fn hash_to_g1_via_modexp(msg_hash: B256, gas: &mut u64) -> Result<[U256; 2], String> {
    let p = bls::FP_MODULUS;
    let mut x = U256::from_be_bytes(msg_hash.0).reduce_mod(p);
    loop {
        let beta = x.mul_mod(x, p).mul_mod(x, p).add_mod(U256::from(3), p);
        let mut input = Vec::with_capacity(192);
        for w in [
            U256::from(32),
            U256::from(32),
            U256::from(32),
            beta,
            bls::SQRT_EXPONENT,
            p,
        ] {
            input.extend_from_slice(&w.to_be_bytes::<32>());
        }
        let out = modexp::berlin_run(&input, u64::MAX).map_err(|e| format!("modexp failed: {e:?}"))?;
        *gas += out.gas_used;
        let y = U256::from_be_slice(&out.bytes);
        if beta == y.mul_mod(y, p) {
            return Ok([x, y]);
        }
        x = x.add_mod(U256::from(1), p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    const CHAIN: u64 = 901337;
    const ROLLUP: B256 = B256::repeat_byte(0x33);

    fn key(i: usize) -> SecretKey {
        let mut b = [0u8; 32];
        b[0] = 0x0a;
        b[24..].copy_from_slice(&(i as u64 + 7).to_be_bytes());
        SecretKey::from_be_bytes(&b).expect("test key")
    }

    fn member(i: usize, stake: u64) -> Member {
        let k = key(i);
        Member {
            name: format!("avs-{i}"),
            address: Address::with_last_byte(i as u8 + 1),
            stake,
            bls_public_key: Some((k.public_g1().to_bytes(), k.public_g2().to_bytes())),
        }
    }

    fn set(quorum: u8, stakes: &[u64]) -> OperatorSet {
        let members = stakes.iter().enumerate().map(|(i, s)| member(i, *s)).collect();
        OperatorSet::new(quorum, members).expect("set")
    }

    fn block(n: u64) -> (B256, B256) {
        (
            B256::from(U256::from(n)),
            B256::from(U256::from(n) << 128 | U256::from(0x20)),
        )
    }

    fn att(i: usize, n: u64) -> Attestation {
        let (h, r) = block(n);
        Attestation::sign(&key(i), OperatorRef::Index(i as u64), CHAIN, ROLLUP, n, h, r)
    }

    fn agg(quorum: u8, stakes: &[u64]) -> Aggregator {
        Aggregator::new(CHAIN, ROLLUP, set(quorum, stakes))
    }

    fn certified(out: AddOutcome) -> Certificate {
        match out {
            AddOutcome::Certified(c) => *c,
            other => panic!("expected a certificate, got {other:?}"),
        }
    }

    #[test]
    fn quorum_67_with_stakes_100_100_50() {
        // total 250; 67 % needs signed * 100 >= 16750, i.e. >= 167.5: 200 and 250 certify, 150
        // and less do not.
        let s = set(67, &[100, 100, 50]);
        for (subset, ok) in [
            (&[0usize][..], false),
            (&[2], false),
            (&[0, 2], false),
            (&[1, 2], false),
            (&[0, 1], true),
            (&[0, 1, 2], true),
        ] {
            let signed: U256 = subset.iter().map(|i| U256::from(s.operators()[*i].stake)).sum();
            assert_eq!(s.quorum_met(signed), ok, "{subset:?}");
            let mut a = Aggregator::new(CHAIN, ROLLUP, s.clone());
            let outs: Vec<AddOutcome> = subset
                .iter()
                .map(|i| a.add(&att(*i, 1), &block(1)).expect("ok"))
                .collect();
            let certs = outs.iter().filter(|o| matches!(o, AddOutcome::Certified(_))).count();
            assert_eq!(certs, usize::from(ok), "{subset:?}");
            assert_eq!(a.finalized_height(), ok.then_some(1));
        }
        // Once certified by {0, 1}, the third signature is not needed.
        let mut a = Aggregator::new(CHAIN, ROLLUP, s);
        a.add(&att(0, 1), &block(1)).expect("0");
        let cert = certified(a.add(&att(1, 1), &block(1)).expect("1"));
        assert_eq!(cert.signer_bitmap, U256::from(0b011));
        assert_eq!(cert.signed_stake, U256::from(200));
        assert_eq!(cert.total_stake, U256::from(250));
        assert_eq!(a.add(&att(2, 1), &block(1)), Ok(AddOutcome::AlreadyFinal));
    }

    #[test]
    fn quorum_exact_boundary() {
        assert!(set(67, &[67, 33]).quorum_met(U256::from(67)));
        assert!(!set(67, &[66, 34]).quorum_met(U256::from(66)));
        assert!(set(100, &[1, 1]).quorum_met(U256::from(2)));
        assert!(!set(100, &[1, 1]).quorum_met(U256::from(1)));
        assert_eq!(set(67, &[1]).quorum_bps(), 6700);
        // Stakes near u64::MAX do not overflow the arithmetic.
        let big = set(51, &[u64::MAX, u64::MAX]);
        assert!(big.quorum_met(U256::from(u64::MAX) + U256::from(u64::MAX)));
        assert!(!big.quorum_met(U256::from(u64::MAX)));
    }

    #[test]
    fn duplicates_are_ignored() {
        let mut a = agg(67, &[100, 100, 50]);
        assert_eq!(
            a.add(&att(0, 1), &block(1)),
            Ok(AddOutcome::Pending {
                signed_stake: U256::from(100)
            })
        );
        assert_eq!(a.add(&att(0, 1), &block(1)), Ok(AddOutcome::Duplicate));
        // Same operator by address is the same signer.
        let mut by_addr = att(0, 1);
        by_addr.operator = OperatorRef::Address(Address::with_last_byte(1));
        assert_eq!(a.add(&by_addr, &block(1)), Ok(AddOutcome::Duplicate));
        assert_eq!(a.signed_stake(1), Some(U256::from(100)));
        assert_eq!(a.finalized_height(), None);
    }

    #[test]
    fn operator_outside_the_set_is_refused() {
        let mut a = agg(67, &[100, 100, 50]);
        let mut stranger = att(7, 1);
        assert!(matches!(
            a.add(&stranger, &block(1)),
            Err(MachError::UnknownOperator(_))
        ));
        stranger.operator = OperatorRef::Address(Address::repeat_byte(0xee));
        assert!(matches!(
            a.add(&stranger, &block(1)),
            Err(MachError::UnknownOperator(_))
        ));
        // An outsider's signature claimed under a member's index fails the signature check.
        stranger.operator = OperatorRef::Index(1);
        assert_eq!(
            a.add(&stranger, &block(1)),
            Err(MachError::BadSignature { index: 1, number: 1 })
        );
        assert_eq!(a.signed_stake(1), None);
    }

    #[test]
    fn bad_signature_is_refused() {
        let mut a = agg(67, &[100, 100, 50]);
        let mut bad = att(0, 1);
        bad.signature = att(0, 2).signature; // a valid signature, of another block
        assert_eq!(
            a.add(&bad, &block(1)),
            Err(MachError::BadSignature { index: 0, number: 1 })
        );
        bad.signature = G1Point::generator();
        assert!(matches!(a.add(&bad, &block(1)), Err(MachError::BadSignature { .. })));
        assert_eq!(a.signed_stake(1), None);
        // The refused attempt does not make the real one a duplicate.
        assert!(matches!(a.add(&att(0, 1), &block(1)), Ok(AddOutcome::Pending { .. })));
    }

    #[test]
    fn attestation_for_another_block_is_refused() {
        let mut a = agg(67, &[100, 100, 50]);
        let (h, _) = block(1);
        let other_root = Attestation::sign(
            &key(0),
            OperatorRef::Index(0),
            CHAIN,
            ROLLUP,
            1,
            h,
            B256::repeat_byte(9),
        );
        assert_eq!(a.add(&other_root, &block(1)), Err(MachError::WrongBlock { number: 1 }));
        let mut other_hash = att(0, 1);
        other_hash.block_hash = B256::repeat_byte(8);
        assert_eq!(a.add(&other_hash, &block(1)), Err(MachError::WrongBlock { number: 1 }));
        // Signed for another rollup: right block, wrong message.
        let (h, r) = block(1);
        let foreign = Attestation::sign(&key(0), OperatorRef::Index(0), CHAIN, B256::repeat_byte(0x34), 1, h, r);
        assert!(matches!(
            a.add(&foreign, &block(1)),
            Err(MachError::BadSignature { .. })
        ));
    }

    #[test]
    fn unusable_keys_stay_in_the_set_but_cannot_sign() {
        let mut members: Vec<Member> = (0..3).map(|i| member(i, 100)).collect();
        members[1].bls_public_key = None;
        // G1 key of operator 2 with the G2 key of operator 0: valid points, not one secret.
        if let Some((_, g2)) = &mut members[2].bls_public_key {
            *g2 = key(0).public_g2().to_bytes();
        }
        let s = OperatorSet::new(67, members).expect("set");
        assert!(s.operators()[0].keys().is_some());
        assert!(s.operators()[1].unusable_reason().is_some());
        assert!(
            s.operators()[2]
                .unusable_reason()
                .expect("mismatch")
                .contains("same secret")
        );
        assert_eq!(s.total_stake(), U256::from(300));
        let mut a = Aggregator::new(CHAIN, ROLLUP, s);
        assert!(matches!(
            a.add(&att(1, 1), &block(1)),
            Err(MachError::UnusableKey { index: 1, .. })
        ));
        assert!(matches!(
            a.add(&att(2, 1), &block(1)),
            Err(MachError::UnusableKey { index: 2, .. })
        ));
    }

    #[test]
    fn bad_sets_are_refused() {
        assert!(OperatorSet::new(67, vec![]).is_err());
        assert!(OperatorSet::new(0, vec![member(0, 1)]).is_err());
        assert!(OperatorSet::new(101, vec![member(0, 1)]).is_err());
        assert!(OperatorSet::new(67, vec![member(0, 0)]).is_err());
        let many = (0..257)
            .map(|i| Member {
                bls_public_key: None,
                ..member(0, i)
            })
            .collect();
        assert!(OperatorSet::new(67, many).is_err());
        let s = OperatorSet::new(67, vec![member(0, 1), member(0, 1)]).expect("dup address");
        assert_eq!(
            s.resolve(&OperatorRef::Address(Address::with_last_byte(1)))
                .map(|o| o.index),
            Err(MachError::AmbiguousOperator(Address::with_last_byte(1)))
        );
        assert_eq!(s.resolve(&OperatorRef::Index(1)).map(|o| o.index), Ok(1));
    }

    #[test]
    fn certificate_verifies_and_passes_the_l1_check() {
        // total 220, 67 % needs >= 147.4: 30 + 100 = 130 is short, + 50 = 180 certifies.
        let s = set(67, &[100, 40, 50, 30]);
        let mut a = Aggregator::new(CHAIN, ROLLUP, s.clone());
        for i in [3, 0] {
            assert!(matches!(a.add(&att(i, 5), &block(5)), Ok(AddOutcome::Pending { .. })));
        }
        let cert = certified(a.add(&att(2, 5), &block(5)).expect("quorum"));
        assert_eq!(cert.signer_bitmap, U256::from(0b1101));
        assert_eq!(
            cert.signers,
            [1u8, 3, 4].map(Address::with_last_byte).to_vec(),
            "ascending bit order"
        );
        assert_eq!(cert.signed_stake, U256::from(180));
        assert_eq!((cert.number, (cert.block_hash, cert.state_root)), (5, block(5)));
        assert_eq!(a.certificate(5), Some(&cert));
        assert_eq!(a.finalized_height(), Some(5));

        // The aggregate pairing check with apkG1 summed from the registered G1 keys.
        s.verify_certificate(&cert).expect("verifies");
        let apk_g1 = bls::aggregate_g1(
            s.operators()
                .iter()
                .filter(|o| cert.signer_bitmap.bit(o.index))
                .map(|o| o.keys().expect("keys").0),
        );
        let apk_g2 = G2Point::from_words(&cert.apk_g2).expect("apk");
        let sigma = G1Point::from_words(&cert.sigma).expect("sigma");
        assert!(bls::verify_aggregate(cert.msg_hash(), &apk_g1, &apk_g2, &sigma));

        // Replayed through revm's precompiles exactly as `settle` would call them.
        let l1 = l1_check(&s, &cert).expect("L1 accepts");
        assert_eq!(l1.pairing_input.len(), 384);
        // lhs ‖ -G2 ‖ rhs ‖ apkG2, and lhs/rhs agree with the field-library computation.
        let gamma = bls::gamma(cert.msg_hash(), &apk_g1, &apk_g2, &sigma);
        let lhs = G1Point((sigma.0 + apk_g1.0 * gamma).into_affine());
        let rhs = G1Point((bls::hash_to_g1(cert.msg_hash()).0 + G1Point::generator().0 * gamma).into_affine());
        let neg_g2 = G2Point(-G2Point::generator().0);
        assert_eq!(&l1.pairing_input[..64], &lhs.to_bytes()[..]);
        assert_eq!(&l1.pairing_input[64..192], &neg_g2.to_bytes()[..]);
        assert_eq!(&l1.pairing_input[192..256], &rhs.to_bytes()[..]);
        assert_eq!(&l1.pairing_input[256..], &apk_g2.to_bytes()[..]);
        assert!(l1.precompile_gas > 113_000, "{}", l1.precompile_gas);

        // Tampering is caught by both checks.
        let mut t = cert.clone();
        t.state_root = B256::repeat_byte(0x77);
        assert!(s.verify_certificate(&t).is_err());
        assert!(l1_check(&s, &t).is_err());
        let mut t = cert.clone();
        t.signer_bitmap = U256::from(0b1111); // claims operator 1 too
        assert!(l1_check(&s, &t).is_err());
        let mut t = cert.clone();
        t.signer_bitmap = U256::from(0b10000); // a non-member bit
        assert!(l1_check(&s, &t).is_err());
        assert!(s.verify_certificate(&t).is_err());
        let mut t = cert.clone();
        t.signer_bitmap = U256::from(0b0101); // drops operator 3 but keeps its signature
        assert!(l1_check(&s, &t).is_err());
        let mut t = cert.clone();
        t.signers.reverse();
        assert!(s.verify_certificate(&t).is_err());
    }

    #[test]
    fn l1_check_refuses_quorum_short_certificates_even_if_the_pairing_holds() {
        let s = set(67, &[100, 100, 50]);
        let m = Certificate {
            chain_id: CHAIN,
            rollup_id: ROLLUP,
            number: 1,
            block_hash: block(1).0,
            state_root: block(1).1,
            signer_bitmap: U256::from(0b101),
            signers: vec![],
            signed_stake: U256::ZERO,
            total_stake: U256::ZERO,
            apk_g2: [U256::ZERO; 4],
            sigma: [U256::ZERO; 2],
        };
        let sigs = [att(0, 1).signature, att(2, 1).signature];
        let cert = Certificate {
            apk_g2: bls::aggregate_g2(&[key(0).public_g2(), key(2).public_g2()]).to_words(),
            sigma: bls::aggregate_g1(&sigs).to_words(),
            ..m
        };
        let err = l1_check(&s, &cert).expect_err("150 of 250 is short of 67 %");
        assert!(err.to_string().contains("quorum"), "{err}");
        // With a 51 % quorum the same signatures settle.
        l1_check(&set(51, &[100, 100, 50]), &cert).expect("51 %");
    }

    /// The operator's `settlement::node::Certificate`, copied (the node does not depend on the
    /// operator crate): what the node serves must decode into it field for field.
    #[derive(Debug, PartialEq, Eq, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct OperatorCertificate {
        chain_id: u64,
        rollup_id: B256,
        number: u64,
        block_hash: B256,
        state_root: B256,
        signer_bitmap: U256,
        signers: Vec<Address>,
        signed_stake: U256,
        total_stake: U256,
        apk_g2: [U256; 4],
        sigma: [U256; 2],
    }

    #[test]
    fn certificate_json_is_what_the_operator_reads() {
        let mut a = agg(67, &[100, 100, 50]);
        a.add(&att(0, 9), &block(9)).expect("0");
        let cert = certified(a.add(&att(1, 9), &block(9)).expect("1"));
        let json = serde_json::to_value(&cert).expect("json");
        assert_eq!(json["signerBitmap"], "0x3");
        assert_eq!(json["signedStake"], "0xc8");
        assert_eq!(json["totalStake"], "0xfa");
        assert_eq!(json["number"], 9);
        assert_eq!(json["chainId"], CHAIN);
        for w in json["apkG2"]
            .as_array()
            .expect("apkG2")
            .iter()
            .chain(json["sigma"].as_array().expect("sigma"))
        {
            assert_eq!(w.as_str().map(str::len), Some(66), "0x + 64 hex digits: {w}");
        }
        let theirs: OperatorCertificate = serde_json::from_value(json.clone()).expect("operator decodes it");
        assert_eq!(theirs.apk_g2, cert.apk_g2);
        assert_eq!(theirs.sigma, cert.sigma);
        assert_eq!(theirs.signer_bitmap, cert.signer_bitmap);
        assert_eq!(theirs.signers, cert.signers);
        assert_eq!(
            (theirs.signed_stake, theirs.total_stake),
            (cert.signed_stake, cert.total_stake)
        );
        assert_eq!(
            (
                theirs.chain_id,
                theirs.rollup_id,
                theirs.number,
                theirs.block_hash,
                theirs.state_root
            ),
            (
                cert.chain_id,
                cert.rollup_id,
                cert.number,
                cert.block_hash,
                cert.state_root
            )
        );
        let back: Certificate = serde_json::from_value(json).expect("round trip");
        assert_eq!(back, cert);
    }

    #[test]
    fn attestation_json_format() {
        let a = att(2, 3);
        let json = serde_json::to_value(&a).expect("json");
        assert_eq!(json["operator"], 2);
        assert_eq!(json["number"], 3);
        assert_eq!(json["blockHash"], block(3).0.to_string());
        assert_eq!(json["signature"].as_array().map(Vec::len), Some(2));
        assert_eq!(serde_json::from_value::<Attestation>(json).expect("back"), a);
        let by_address = serde_json::json!({
            "operator": "0x0000000000000000000000000000000000000003",
            "number": 3,
            "blockHash": block(3).0,
            "stateRoot": block(3).1,
            "signature": a.signature,
            "futureField": true,
        });
        let parsed: Attestation = serde_json::from_value(by_address).expect("by address");
        assert_eq!(parsed.operator, OperatorRef::Address(Address::with_last_byte(3)));
        let mut agg = agg(67, &[100, 100, 50]);
        assert!(matches!(agg.add(&parsed, &block(3)), Ok(AddOutcome::Pending { .. })));
        let off_curve = serde_json::json!({
            "operator": 0, "number": 1, "blockHash": block(1).0, "stateRoot": block(1).1,
            "signature": ["0x1", "0x3"],
        });
        assert!(serde_json::from_value::<Attestation>(off_curve).is_err());
    }

    #[test]
    fn finalized_height_pruning_and_restore() {
        let mut a = agg(67, &[100, 100, 50]).with_retention(2);
        a.add(&att(0, 1), &block(1)).expect("pending 1");
        a.add(&att(0, 2), &block(2)).expect("pending 2");
        for n in [2, 3, 4] {
            a.add(&att(0, n), &block(n)).ok();
            assert!(matches!(a.add(&att(1, n), &block(n)), Ok(AddOutcome::Certified(_))));
        }
        assert_eq!(a.finalized_height(), Some(4));
        assert_eq!(a.certificate(2), None, "retention 2 keeps 3 and 4");
        assert_eq!(a.signed_stake(1), None, "pending below a final block is dropped");
        assert_eq!(a.add(&att(1, 1), &block(1)), Ok(AddOutcome::AlreadyFinal));
        let latest = a.latest_certificate().cloned().expect("latest");

        let mut restarted = agg(67, &[100, 100, 50]);
        restarted.restore(latest.clone()).expect("restore");
        assert_eq!(restarted.finalized_height(), Some(4));
        let mut forged = latest.clone();
        forged.block_hash = B256::repeat_byte(0x99);
        assert!(restarted.restore(forged).is_err());
        let mut other = agg(67, &[100, 100, 50]);
        other.rollup_id = B256::repeat_byte(0x35);
        assert!(other.restore(latest).is_err());
    }

    #[test]
    fn pending_blocks_are_bounded() {
        let mut a = agg(67, &[100, 100, 50]);
        let sig = att(0, 1);
        for n in 1..=(MAX_PENDING_BLOCKS as u64 + 5) {
            // Reuse one signature so the test stays fast: the stored pending state is what counts.
            let p = a.pending.entry(n).or_insert(Pending {
                block: block(n),
                bitmap: U256::from(1),
                signed_stake: U256::from(100),
                sigma: sig.signature.0.into(),
                apk_g2: G2Projective::ZERO,
            });
            p.bitmap.set_bit(0, true);
        }
        a.add(&att(0, 2000), &block(2000)).expect("adds");
        assert_eq!(a.pending.len(), MAX_PENDING_BLOCKS);
        assert_eq!(a.pending.first_key_value().map(|(n, _)| *n), Some(7));
    }

    #[test]
    fn from_chain_config_reads_the_operator_set() {
        let k = key(0);
        let json = serde_json::json!({
            "chainId": CHAIN, "rollupId": ROLLUP, "blockTimeMs": 500, "gasLimit": 30_000_000,
            "genesis": { "alloc": {} }, "quorumStakePercent": 67,
            "operators": [
                { "index": 0, "name": "a", "address": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "stake": 100,
                  "blsPublicKey": { "g1": k.public_g1().to_hex(), "g2": k.public_g2().to_hex() } },
                { "index": 1, "name": "b", "address": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", "stake": 50,
                  "blsPublicKey": null },
            ],
        });
        let cfg = crate::config::ChainConfig::parse(&json.to_string()).expect("config");
        let s = OperatorSet::from_chain_config(&cfg).expect("set");
        assert_eq!(s.len(), 2);
        assert_eq!(s.total_stake(), U256::from(150));
        assert_eq!(s.operators()[0].keys().map(|(g1, _)| *g1), Some(k.public_g1()));
        assert!(s.operators()[1].unusable_reason().is_some());
    }
}
