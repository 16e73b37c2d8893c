//! BLS signatures on BN254 exactly as EigenLayer's middleware (BN254.sol, BLSSignatureChecker.sol)
//! does them, so an L1 contract can check aggregates with the EIP-196/197 precompiles.
//!
//! Signatures live in G1 (`sigma = sk * H(m)`, `H` = `BN254.hashToG1`), public keys in G1 (what
//! the contract registers and sums into `apkG1`) and in G2 (what the pairing takes). Every point
//! crosses the wire as 32-byte big-endian words in the precompiles' order: G1 as `[x, y]`, G2 as
//! `[x.c1, x.c0, y.c1, y.c0]` (imaginary part first, EIP-197), the point at infinity as all zeros.

use std::fmt;
use std::path::Path;

use alloy::primitives::{B256, U256, keccak256, uint};
use alloy::sol_types::SolValue;
use ark_bn254::{Bn254, Fq, Fq2, Fr, G1Affine, G1Projective, G2Affine, G2Projective};
use ark_ec::pairing::Pairing;
use ark_ec::{AffineRepr, CurveGroup};
use ark_ff::{BigInt, Field, PrimeField, Zero};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The base field modulus `p` (BN254.sol `FP_MODULUS`).
pub const FP_MODULUS: U256 = uint!(21888242871839275222246405745257275088696311157297823662689037894645226208583_U256);
/// The group order `r` (BN254.sol `FR_MODULUS`).
pub const FR_MODULUS: U256 = uint!(21888242871839275222246405745257275088548364400416034343698204186575808495617_U256);
/// `(p + 1) / 4`, the exponent BN254.sol's `findYFromX` raises `x^3 + 3` to. Because `p = 3 mod 4`
/// this is a square root whenever one exists; which of the two roots it yields is part of what
/// `hashToG1` means, so it is taken literally rather than from a generic `sqrt`.
pub const SQRT_EXPONENT: U256 = uint!(0xc19139cb84c680a6e14116da060561765e05aa45a1c72a34f082305b61f3f52_U256);

/// Failure parsing a key or a point.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlsError {
    /// The secret key is not a 0x-prefixed 32-byte big-endian scalar in `1..r`. The message never
    /// contains any part of the key.
    #[error("BLS secret key: {0}")]
    BadSecretKey(&'static str),
    /// The key file could not be read.
    #[error("reading BLS key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: String,
        /// The I/O error kind.
        reason: String,
    },
    /// A point encoding is malformed: wrong length, not hex, a coordinate `>= p`, not on the curve,
    /// or (G2) not in the prime-order subgroup.
    #[error("invalid {group} point: {reason}")]
    BadPoint {
        /// `G1` or `G2`.
        group: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A BN254 BLS secret key: a scalar in `1..r`. Neither `Debug` nor errors ever show it.
pub struct SecretKey(Fr);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        // Best effort without a zeroize dependency: black_box keeps the store from being elided.
        self.0 = Fr::zero();
        std::hint::black_box(&mut self.0);
    }
}

impl SecretKey {
    /// Parses the key file's content: `0x` + 64 hex digits (surrounding whitespace from a Secret
    /// file is ignored; the prefix is optional), big-endian, and a scalar in `1..r`. Scalars `>= r`
    /// are refused rather than reduced, so one key has exactly one spelling.
    pub fn from_hex(text: &str) -> Result<Self, BlsError> {
        let s = text.trim();
        let s = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
        if s.len() != 64 {
            return Err(BlsError::BadSecretKey("expected 0x followed by 64 hex digits"));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| BlsError::BadSecretKey("not hex"))?;
        let key = Self::from_be_bytes(&bytes);
        bytes.fill(0);
        std::hint::black_box(&mut bytes);
        key
    }

    /// Reads and parses a key file (the mounted Secret).
    pub fn from_file(path: &Path) -> Result<Self, BlsError> {
        let mut bytes = std::fs::read(path).map_err(|e| BlsError::KeyFile {
            path: path.display().to_string(),
            reason: e.kind().to_string(),
        })?;
        let key = std::str::from_utf8(&bytes)
            .map_err(|_| BlsError::BadSecretKey("not hex"))
            .and_then(Self::from_hex);
        // The file's copy of the key should not outlive the parse.
        bytes.fill(0);
        std::hint::black_box(&mut bytes);
        key
    }

    /// A key from its 32-byte big-endian scalar; `0` and values `>= r` are refused.
    pub fn from_be_bytes(bytes: &[u8; 32]) -> Result<Self, BlsError> {
        let value = U256::from_be_bytes(*bytes);
        if value.is_zero() {
            return Err(BlsError::BadSecretKey("the zero scalar is not a key"));
        }
        let scalar = Fr::from_bigint(BigInt::new(value.into_limbs()))
            .ok_or(BlsError::BadSecretKey("scalar is not below the group order r"))?;
        Ok(Self(scalar))
    }

    /// `sk * G1`: the key the L1 contract registers.
    pub fn public_g1(&self) -> G1Point {
        G1Point((G1Affine::generator() * self.0).into_affine())
    }

    /// `sk * G2`: the key aggregated into a certificate's `apkG2`.
    pub fn public_g2(&self) -> G2Point {
        G2Point((G2Affine::generator() * self.0).into_affine())
    }

    /// `sk * H(msg_hash)`.
    pub fn sign(&self, msg_hash: B256) -> G1Point {
        G1Point((hash_to_g1(msg_hash).0 * self.0).into_affine())
    }
}

/// A point of G1 (public key in G1, signature, `H(m)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct G1Point(pub G1Affine);

/// A point of G2 (public key in G2, aggregate key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct G2Point(pub G2Affine);

impl G1Point {
    /// The generator `(1, 2)`.
    pub fn generator() -> Self {
        Self(G1Affine::generator())
    }

    /// `[x, y]`, `[0, 0]` for the point at infinity (the precompiles' convention).
    pub fn to_words(&self) -> [U256; 2] {
        match self.0.xy() {
            Some((x, y)) => [fq_to_u256(x), fq_to_u256(y)],
            None => [U256::ZERO; 2],
        }
    }

    /// Inverse of [`Self::to_words`]; refuses coordinates `>= p` and points off the curve, as
    /// the precompiles do.
    pub fn from_words(words: &[U256; 2]) -> Result<Self, BlsError> {
        const fn bad(reason: &'static str) -> BlsError {
            BlsError::BadPoint { group: "G1", reason }
        }
        if words.iter().all(U256::is_zero) {
            return Ok(Self(G1Affine::identity()));
        }
        let x = u256_to_fq(words[0]).ok_or(bad("coordinate not below p"))?;
        let y = u256_to_fq(words[1]).ok_or(bad("coordinate not below p"))?;
        let p = G1Affine::new_unchecked(x, y);
        // G1 has cofactor 1: on the curve means in the group.
        if !p.is_on_curve() {
            return Err(bad("not on the curve"));
        }
        Ok(Self(p))
    }

    /// 64 bytes: `x ‖ y`, big-endian.
    pub fn to_bytes(&self) -> [u8; 64] {
        words_to_bytes(&self.to_words())
    }

    /// Parses 64 bytes `x ‖ y`.
    pub fn from_bytes(bytes: &[u8; 64]) -> Result<Self, BlsError> {
        Self::from_words(&bytes_to_words(bytes))
    }

    /// `0x` + 128 hex digits, the AVSOperator `blsPublicKey.g1` format.
    pub fn to_hex(&self) -> String {
        format!("0x{}", hex::encode(self.to_bytes()))
    }

    /// Parses the `0x` + 128 hex digit format.
    pub fn from_hex(s: &str) -> Result<Self, BlsError> {
        Self::from_words(&hex_to_words(s, "G1")?)
    }

    /// Whether this is the point at infinity.
    pub fn is_infinity(&self) -> bool {
        self.0.is_zero()
    }
}

impl G2Point {
    /// The generator, BN254.sol's `generatorG2()`.
    pub fn generator() -> Self {
        Self(G2Affine::generator())
    }

    /// `[x.c1, x.c0, y.c1, y.c0]` (EIP-197 order), all zeros for the point at infinity.
    pub fn to_words(&self) -> [U256; 4] {
        match self.0.xy() {
            Some((x, y)) => [fq_to_u256(x.c1), fq_to_u256(x.c0), fq_to_u256(y.c1), fq_to_u256(y.c0)],
            None => [U256::ZERO; 4],
        }
    }

    /// Inverse of [`Self::to_words`]; refuses coordinates `>= p`, points off the twist, and points
    /// outside the prime-order subgroup (the precompile refuses those too).
    pub fn from_words(words: &[U256; 4]) -> Result<Self, BlsError> {
        const fn bad(reason: &'static str) -> BlsError {
            BlsError::BadPoint { group: "G2", reason }
        }
        if words.iter().all(U256::is_zero) {
            return Ok(Self(G2Affine::identity()));
        }
        let mut f = [Fq::zero(); 4];
        for (slot, word) in f.iter_mut().zip(words) {
            *slot = u256_to_fq(*word).ok_or(bad("coordinate not below p"))?;
        }
        let p = G2Affine::new_unchecked(Fq2::new(f[1], f[0]), Fq2::new(f[3], f[2]));
        if !p.is_on_curve() {
            return Err(bad("not on the curve"));
        }
        if !p.is_in_correct_subgroup_assuming_on_curve() {
            return Err(bad("not in the prime-order subgroup"));
        }
        Ok(Self(p))
    }

    /// 128 bytes: `x.c1 ‖ x.c0 ‖ y.c1 ‖ y.c0`, big-endian.
    pub fn to_bytes(&self) -> [u8; 128] {
        words_to_bytes(&self.to_words())
    }

    /// Parses 128 bytes `x.c1 ‖ x.c0 ‖ y.c1 ‖ y.c0`.
    pub fn from_bytes(bytes: &[u8; 128]) -> Result<Self, BlsError> {
        Self::from_words(&bytes_to_words(bytes))
    }

    /// `0x` + 256 hex digits, the AVSOperator `blsPublicKey.g2` format.
    pub fn to_hex(&self) -> String {
        format!("0x{}", hex::encode(self.to_bytes()))
    }

    /// Parses the `0x` + 256 hex digit format.
    pub fn from_hex(s: &str) -> Result<Self, BlsError> {
        Self::from_words(&hex_to_words(s, "G2")?)
    }

    /// Whether this is the point at infinity.
    pub fn is_infinity(&self) -> bool {
        self.0.is_zero()
    }
}

impl Serialize for G1Point {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        words::serialize(&self.to_words(), s)
    }
}

impl<'de> Deserialize<'de> for G1Point {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w: [U256; 2] = words::deserialize(d)?;
        Self::from_words(&w).map_err(serde::de::Error::custom)
    }
}

impl Serialize for G2Point {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        words::serialize(&self.to_words(), s)
    }
}

impl<'de> Deserialize<'de> for G2Point {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w: [U256; 4] = words::deserialize(d)?;
        Self::from_words(&w).map_err(serde::de::Error::custom)
    }
}

/// Serde for `[U256; N]` as JSON arrays of `0x` + 64 hex digit words (docs/node-api.md: curve
/// coordinates are full 32-byte words). Deserializing accepts any `0x` hex up to 64 digits.
pub mod words {
    use alloy::primitives::{B256, U256};
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes `[U256; N]` as `["0x…64 hex", …]`.
    pub fn serialize<S: Serializer, const N: usize>(v: &[U256; N], s: S) -> Result<S::Ok, S::Error> {
        let strings: Vec<String> = v.iter().map(|w| B256::from(*w).to_string()).collect();
        s.collect_seq(strings)
    }

    /// Deserializes an array of exactly `N` hex words.
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<[U256; N], D::Error> {
        let strings = Vec::<String>::deserialize(d)?;
        if strings.len() != N {
            return Err(D::Error::invalid_length(strings.len(), &format!("{N} words").as_str()));
        }
        let mut out = [U256::ZERO; N];
        for (slot, s) in out.iter_mut().zip(&strings) {
            let digits = s
                .strip_prefix("0x")
                .ok_or_else(|| D::Error::custom("word must start with 0x"))?;
            if digits.is_empty() || digits.len() > 64 {
                return Err(D::Error::custom("word must have 1 to 64 hex digits"));
            }
            *slot = U256::from_str_radix(digits, 16).map_err(|_| D::Error::custom("word is not hex"))?;
        }
        Ok(out)
    }
}

/// EigenLayer's `BN254.hashToG1`: `x = msg_hash mod p`; `beta = x^3 + 3`; `y = beta^((p+1)/4)`;
/// if `y^2 == beta` the point is `(x, y)`, else `x += 1` and try again. Not constant time, which
/// is fine: the input is public.
pub fn hash_to_g1(msg_hash: B256) -> G1Point {
    let three = Fq::from(3u64);
    let mut x = Fq::from_be_bytes_mod_order(msg_hash.as_slice());
    loop {
        let beta = x.square() * x + three;
        let y = beta.pow(SQRT_EXPONENT.as_limbs());
        if y.square() == beta {
            return G1Point(G1Affine::new_unchecked(x, y));
        }
        x += Fq::ONE;
    }
}

/// What a verifier signs for a block (docs/node-api.md "What a verifier signs"):
/// `keccak256(abi.encode(uint64 chainId, bytes32 rollupId, uint64 number, bytes32 blockHash,
/// bytes32 stateRoot))`, byte for byte the operator's `settlement::l1::attestation_digest`.
pub fn attestation_digest(chain_id: u64, rollup_id: B256, number: u64, block_hash: B256, state_root: B256) -> B256 {
    keccak256((chain_id, rollup_id, number, block_hash, state_root).abi_encode_params())
}

/// Sum of G1 points (aggregate signature, aggregate G1 key).
pub fn aggregate_g1<'a>(points: impl IntoIterator<Item = &'a G1Point>) -> G1Point {
    let sum: G1Projective = points.into_iter().map(|p| p.0).sum();
    G1Point(sum.into_affine())
}

/// Sum of G2 points (aggregate G2 key).
pub fn aggregate_g2<'a>(points: impl IntoIterator<Item = &'a G2Point>) -> G2Point {
    let sum: G2Projective = points.into_iter().map(|p| p.0).sum();
    G2Point(sum.into_affine())
}

/// Plain BLS check `e(sigma, -G2) * e(H(m), pk) == 1` against a G2 key alone. It does not tie the
/// G2 key to a G1 key; the contract only knows G1 keys, so MACH uses [`verify_aggregate`] instead.
pub fn verify(msg_hash: B256, pk_g2: &G2Point, sigma: &G1Point) -> bool {
    let h = hash_to_g1(msg_hash);
    let neg_g2 = -G2Affine::generator();
    Bn254::multi_pairing([sigma.0, h.0], [neg_g2, pk_g2.0]).is_zero()
}

/// Whether a G1 and a G2 key hold the same secret: `e(pk1, G2) == e(G1, pk2)`.
pub fn keys_match(pk_g1: &G1Point, pk_g2: &G2Point) -> bool {
    Bn254::multi_pairing([pk_g1.0, -G1Affine::generator()], [G2Affine::generator(), pk_g2.0]).is_zero()
}

/// `gamma = uint256(keccak256(abi.encodePacked(msgHash, apk.X, apk.Y, apkG2.X[0], apkG2.X[1],
/// apkG2.Y[0], apkG2.Y[1], sigma.X, sigma.Y))) mod r`, as BLSSignatureChecker derives it.
pub fn gamma(msg_hash: B256, apk_g1: &G1Point, apk_g2: &G2Point, sigma: &G1Point) -> Fr {
    let mut packed = Vec::with_capacity(32 * 9);
    packed.extend_from_slice(msg_hash.as_slice());
    for w in apk_g1
        .to_words()
        .iter()
        .chain(&apk_g2.to_words())
        .chain(&sigma.to_words())
    {
        packed.extend_from_slice(&w.to_be_bytes::<32>());
    }
    Fr::from_be_bytes_mod_order(keccak256(&packed).as_slice())
}

/// BLSSignatureChecker's `trySignatureAndApkVerification`:
/// `e(sigma + gamma*apkG1, -G2) * e(H(m) + gamma*G1, apkG2) == 1`. Besides the signature it proves
/// that `apkG1` and `apkG2` hold the same secret (the contract sums registered G1 keys; the
/// certificate carries the G2 sum). With one signer's keys it is that signer's check.
pub fn verify_aggregate(msg_hash: B256, apk_g1: &G1Point, apk_g2: &G2Point, sigma: &G1Point) -> bool {
    let g = gamma(msg_hash, apk_g1, apk_g2, sigma);
    let lhs = (sigma.0 + apk_g1.0 * g).into_affine();
    let rhs = (hash_to_g1(msg_hash).0 + G1Affine::generator() * g).into_affine();
    let neg_g2 = -G2Affine::generator();
    Bn254::multi_pairing([lhs, rhs], [neg_g2, apk_g2.0]).is_zero()
}

fn fq_to_u256(f: Fq) -> U256 {
    U256::from_limbs(f.into_bigint().0)
}

/// `None` for values `>= p` (both are little-endian 64-bit limbs).
fn u256_to_fq(u: U256) -> Option<Fq> {
    Fq::from_bigint(BigInt::new(u.into_limbs()))
}

fn words_to_bytes<const N: usize, const B: usize>(words: &[U256; N]) -> [u8; B] {
    let mut out = [0u8; B];
    for (chunk, w) in out.chunks_exact_mut(32).zip(words) {
        chunk.copy_from_slice(&w.to_be_bytes::<32>());
    }
    out
}

fn bytes_to_words<const N: usize>(bytes: &[u8]) -> [U256; N] {
    let mut out = [U256::ZERO; N];
    for (slot, chunk) in out.iter_mut().zip(bytes.chunks_exact(32)) {
        *slot = U256::from_be_slice(chunk);
    }
    out
}

fn hex_to_words<const N: usize>(s: &str, group: &'static str) -> Result<[U256; N], BlsError> {
    let bad = |reason| BlsError::BadPoint { group, reason };
    let digits = s.trim().strip_prefix("0x").ok_or(bad("expected a 0x prefix"))?;
    if digits.len() != 64 * N {
        return Err(bad("wrong length"));
    }
    let bytes = hex::decode(digits).map_err(|_| bad("not hex"))?;
    Ok(bytes_to_words(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::b256;

    /// avs-gold-1's example key (public test key, manifests/examples/avs-operators.yaml).
    const SK1: &str = "0x1e3e128b9678dd0e2982d9df452c2a1766880c970a1732260d24921408371a25";

    fn key(i: u64) -> SecretKey {
        // Deterministic, distinct, nonzero keys below r; fine for tests, never for real use.
        let mut b = [0u8; 32];
        b[0] = 0x2a;
        b[8..16].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
        b[24..].copy_from_slice(&(i + 1).to_be_bytes());
        SecretKey::from_be_bytes(&b).expect("valid test key")
    }

    fn msg() -> B256 {
        attestation_digest(
            901337,
            B256::repeat_byte(0x33),
            42,
            B256::repeat_byte(0x11),
            B256::repeat_byte(0x22),
        )
    }

    #[test]
    fn constants_match_bn254_sol() {
        use ark_ff::BigInteger;
        assert_eq!(FP_MODULUS, U256::from_limbs(Fq::MODULUS.0));
        assert_eq!(FR_MODULUS, U256::from_limbs(Fr::MODULUS.0));
        assert_eq!(SQRT_EXPONENT, (FP_MODULUS + U256::from(1)) >> 2);
        assert_eq!(Fq::MODULUS.to_bytes_be(), FP_MODULUS.to_be_bytes::<32>().to_vec());
        // BN254.sol generatorG2 = ([G2x1, G2x0], [G2y1, G2y0]): imaginary part first.
        let g2 = G2Point::generator().to_words();
        assert_eq!(
            g2,
            [
                uint!(11559732032986387107991004021392285783925812861821192530917403151452391805634_U256),
                uint!(10857046999023057135944570762232829481370756359578518086990519993285655852781_U256),
                uint!(4082367875863433681332203403145435568316851327593401208105741076214120093531_U256),
                uint!(8495653923123431417604973247489272438418190587263600148770280649306958101930_U256),
            ]
        );
        // negGeneratorG2: same x, y negated.
        let ng2 = G2Point((-G2Affine::generator()).into_group().into_affine()).to_words();
        assert_eq!(
            ng2[2],
            uint!(17805874995975841540914202342111839520379459829704422454583296818431106115052_U256)
        );
        assert_eq!(
            ng2[3],
            uint!(13392588948715843804641432497768002650278120570034223513918757245338268106653_U256)
        );
        assert_eq!(G1Point::generator().to_words(), [U256::from(1), U256::from(2)]);
    }

    /// Pins the digest against an independent computation: a pure-Python Keccak-256 over the 160
    /// bytes `abi.encode(uint64 901337, bytes32 0x33.., uint64 42, bytes32 0x11.., bytes32 0x22..)`,
    /// and against the raw byte layout the operator's l1.rs test uses.
    #[test]
    fn attestation_digest_vector() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&U256::from(901337).to_be_bytes::<32>());
        buf.extend_from_slice(&[0x33; 32]);
        buf.extend_from_slice(&U256::from(42).to_be_bytes::<32>());
        buf.extend_from_slice(&[0x11; 32]);
        buf.extend_from_slice(&[0x22; 32]);
        assert_eq!(msg(), keccak256(&buf));
        assert_eq!(
            msg(),
            b256!("8234470740b2b1c3156fae5f9b358e962157efead676810528d6ad4ae78db525")
        );
        assert_ne!(
            msg(),
            attestation_digest(
                901338,
                B256::repeat_byte(0x33),
                42,
                B256::repeat_byte(0x11),
                B256::repeat_byte(0x22)
            )
        );
    }

    /// Re-derives hashToG1 step by step with plain modular arithmetic on U256 (Solidity's
    /// `mulmod`/`addmod`/modexp semantics, no field library), and checks the non-residue steps
    /// with Euler's criterion, which is independent of the `(p+1)/4` trick.
    fn reference_hash_to_g1(msg_hash: B256) -> ([U256; 2], u32) {
        let p = FP_MODULUS;
        let mut x = U256::from_be_bytes(msg_hash.0).reduce_mod(p);
        let mut increments = 0;
        loop {
            let beta = x.mul_mod(x, p).mul_mod(x, p).add_mod(U256::from(3), p);
            let y = beta.pow_mod(SQRT_EXPONENT, p);
            if y.mul_mod(y, p) == beta {
                return ([x, y], increments);
            }
            // Euler: beta^((p-1)/2) == p-1 iff beta is a non-residue.
            assert_eq!(beta.pow_mod((p - U256::from(1)) >> 1, p), p - U256::from(1));
            x = x.add_mod(U256::from(1), p);
            increments += 1;
        }
    }

    /// Known answers computed independently in Python, no curve library involved:
    /// `x = m % p; while pow(x**3+3, (p+1)//4, p)**2 % p != (x**3+3) % p: x = (x+1) % p`,
    /// `y = pow(x**3+3, (p+1)//4, p)` (the digest itself from a pure-Python Keccak-256).
    #[test]
    fn hash_to_g1_known_answers() {
        let cases: [(B256, [U256; 2], u32); 5] = [
            // Two increments, and the (p+1)/4 root here is the larger and odd one: a "canonical
            // smaller/even root" implementation would get y wrong.
            (
                B256::repeat_byte(0x04),
                [
                    uint!(0x0404040404040404040404040404040404040404040404040404040404040406_U256),
                    uint!(0x21f198a3d32bf44aaf5e4dea5cec7ab336e6da4ddd1b0374b7064345fc8ecec3_U256),
                ],
                2,
            ),
            // x = 0: beta = 3 is a non-residue; x = 1: beta = 4, 4^((p+1)/4) = 2 -> the generator.
            (B256::ZERO, [U256::from(1), U256::from(2)], 1),
            // The attestation digest above: five increments before a residue.
            (
                msg(),
                [
                    uint!(0x216baa217e4f716fa4cf22f29832dddaf2551ac80592ebeab095951d3693ba9c_U256),
                    uint!(0x16b2ef2119ec88c1f5523d96cd474522194d5d39641df80090ff23dfbd7bdaa6_U256),
                ],
                5,
            ),
            // 2^256 - 1 is reduced mod p before the search starts.
            (
                B256::repeat_byte(0xff),
                [
                    uint!(0x0e0a77c19a07df2f666ea36f7879462c0a78eb28f5c70b3dd35d438dc58f0d9c_U256),
                    uint!(0x14be43b98e05db3bee1459f626263fc7bccd58e77b8182329f8ac7453c92c0ca_U256),
                ],
                0,
            ),
            (
                B256::repeat_byte(0x11),
                [
                    uint!(0x1111111111111111111111111111111111111111111111111111111111111111_U256),
                    uint!(0x0029adde9056819a259f5a8dca80d34ee3f2cb67432ae875e5922058ab391832_U256),
                ],
                0,
            ),
        ];
        for (m, want, increments) in cases {
            let got = hash_to_g1(m);
            assert_eq!(got.to_words(), want, "hashToG1({m})");
            assert_eq!(reference_hash_to_g1(m), (want, increments), "reference for {m}");
            assert!(got.0.is_on_curve());
            // p - y is the other root of the same beta, so the pinned y is a real choice.
            let other = FP_MODULUS - want[1];
            assert_eq!(other.mul_mod(other, FP_MODULUS), want[1].mul_mod(want[1], FP_MODULUS));
            assert_ne!(other, want[1]);
        }
    }

    #[test]
    fn hash_to_g1_matches_reference_on_many_inputs() {
        for i in 0u8..64 {
            let m = keccak256([b"flashlayer".as_slice(), &[i]].concat());
            assert_eq!(hash_to_g1(m).to_words(), reference_hash_to_g1(m).0);
        }
    }

    #[test]
    fn example_key_and_signature_vector() {
        let sk = SecretKey::from_hex(SK1).expect("key");
        // Public key and signature computed independently (Python affine double-and-add on G1).
        assert_eq!(
            sk.public_g1().to_hex(),
            "0x28f2089ee5520f560e1a135eabfb180c71b4049c297e823dd4b0c876d5c968952d9d0f5e8fb6c006c4b99d085e0e514e3f8703cc9e88526a802dab4697927905"
        );
        let sig = sk.sign(msg());
        assert_eq!(
            sig.to_words(),
            [
                uint!(0x23db65edfd42d5a615f93699f352fdeda3b218129242ea581065658c3d70b14b_U256),
                uint!(0x2bfa71f0bf1bbea6bedc24d4861c0758fd36e55db164aac1d9b21eee0e19bc15_U256),
            ]
        );
        assert!(verify(msg(), &sk.public_g2(), &sig));
        assert!(verify_aggregate(msg(), &sk.public_g1(), &sk.public_g2(), &sig));
    }

    #[test]
    fn sign_verify_and_failures() {
        let (a, b) = (key(1), key(2));
        let m = msg();
        let sig = a.sign(m);
        assert!(verify(m, &a.public_g2(), &sig));
        assert!(!verify(m, &b.public_g2(), &sig), "wrong key");
        assert!(!verify(B256::repeat_byte(9), &a.public_g2(), &sig), "wrong message");
        assert!(!verify_aggregate(m, &b.public_g1(), &b.public_g2(), &sig), "wrong key");
        // G1 and G2 keys of different secrets: the plain check passes, the gamma check does not.
        assert!(!verify_aggregate(m, &b.public_g1(), &a.public_g2(), &sig));
        assert!(!verify_aggregate(
            m,
            &a.public_g1(),
            &a.public_g2(),
            &G1Point(G1Affine::identity())
        ));
    }

    fn aggregate_case(n: u64) {
        let m = msg();
        let keys: Vec<SecretKey> = (0..n).map(key).collect();
        let sigs: Vec<G1Point> = keys.iter().map(|k| k.sign(m)).collect();
        let g1: Vec<G1Point> = keys.iter().map(SecretKey::public_g1).collect();
        let g2: Vec<G2Point> = keys.iter().map(SecretKey::public_g2).collect();
        let (apk1, apk2, sigma) = (aggregate_g1(&g1), aggregate_g2(&g2), aggregate_g1(&sigs));
        assert!(verify_aggregate(m, &apk1, &apk2, &sigma), "{n} signers");
        assert!(verify(m, &apk2, &sigma));
        assert!(
            !verify_aggregate(B256::repeat_byte(7), &apk1, &apk2, &sigma),
            "wrong message"
        );
        // One forged signature (signed by a key outside the set) breaks the aggregate.
        let mut forged = sigs.clone();
        forged[0] = key(1000).sign(m);
        assert!(!verify_aggregate(m, &apk1, &apk2, &aggregate_g1(&forged)), "forged");
        // One signer missing from apkG1 only: the G1/G2 sums no longer agree.
        assert!(
            !verify_aggregate(m, &aggregate_g1(&g1[1..]), &apk2, &sigma),
            "apkG1 short"
        );
    }

    #[test]
    fn aggregate_of_4_verifies() {
        aggregate_case(4);
    }

    #[test]
    fn aggregate_of_100_verifies() {
        aggregate_case(100);
    }

    #[test]
    fn point_words_round_trip_and_validation() {
        let k = key(3);
        let (g1, g2) = (k.public_g1(), k.public_g2());
        assert_eq!(G1Point::from_words(&g1.to_words()).expect("g1"), g1);
        assert_eq!(G2Point::from_words(&g2.to_words()).expect("g2"), g2);
        assert_eq!(G1Point::from_hex(&g1.to_hex()).expect("g1 hex"), g1);
        assert_eq!(G2Point::from_hex(&g2.to_hex()).expect("g2 hex"), g2);
        assert!(G1Point::from_words(&[U256::ZERO; 2]).expect("inf").is_infinity());
        assert_eq!(G2Point(G2Affine::identity()).to_words(), [U256::ZERO; 4]);
        assert!(
            G1Point::from_words(&[U256::from(1), U256::from(3)]).is_err(),
            "off curve"
        );
        assert!(
            G1Point::from_words(&[U256::from(1), U256::from(2) + FP_MODULUS]).is_err(),
            ">= p"
        );
        let mut w = g2.to_words();
        w.swap(0, 1); // c0/c1 swapped: no longer on the twist
        assert!(G2Point::from_words(&w).is_err());
        assert!(G1Point::from_hex("0x1234").is_err());
        assert!(G2Point::from_hex(&g1.to_hex()).is_err());
        // JSON: full 64-digit words, lenient on input.
        let json = serde_json::to_value(g1).expect("json");
        assert_eq!(json[0].as_str().map(str::len), Some(66));
        let back: G1Point = serde_json::from_str(r#"["0x1", "0x2"]"#).expect("short words");
        assert_eq!(back, G1Point::generator());
        assert!(serde_json::from_str::<G1Point>(r#"["0x1", "0x3"]"#).is_err());
        assert!(serde_json::from_str::<G1Point>(r#"["0x1"]"#).is_err());
        let g2_json: G2Point = serde_json::from_value(serde_json::to_value(g2).expect("json")).expect("g2 json");
        assert_eq!(g2_json, g2);
    }

    #[test]
    fn secret_key_parsing_never_leaks() {
        let body = &SK1[2..];
        for ok in [
            SK1.to_string(),
            format!("{SK1}\n"),
            body.to_string(),
            format!("  0X{body}  "),
        ] {
            assert_eq!(
                SecretKey::from_hex(&ok).expect("valid").public_g1(),
                SecretKey::from_hex(SK1).expect("k").public_g1()
            );
        }
        let r_hex = format!("0x{}", hex::encode(FR_MODULUS.to_be_bytes::<32>()));
        let mut nonhex = SK1.to_string();
        nonhex.replace_range(10..11, "z");
        for bad in [
            &SK1[..65],
            &format!("{SK1}00"),
            &nonhex,
            &format!("0x{}", "0".repeat(64)),
            &r_hex,
        ] {
            let err = SecretKey::from_hex(bad).expect_err("invalid");
            let shown = format!("{err} {err:?}");
            for w in bad.as_bytes().windows(8).filter(|w| !w.iter().all(|c| *c == b'0')) {
                let w = std::str::from_utf8(w).expect("ascii");
                assert!(!shown.contains(w), "{shown} leaks {w}");
            }
        }
        let k = SecretKey::from_hex(SK1).expect("k");
        assert_eq!(format!("{k:?}"), "SecretKey(<redacted>)");
    }

    #[test]
    fn key_file_is_read_and_missing_file_named() {
        let dir = std::env::temp_dir().join(format!("flashlayer-bls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("bls.key");
        std::fs::write(&path, format!("{SK1}\n")).expect("write");
        let k = SecretKey::from_file(&path).expect("read");
        assert_eq!(k.public_g1(), SecretKey::from_hex(SK1).expect("k").public_g1());
        let err = SecretKey::from_file(&dir.join("missing")).expect_err("missing");
        assert!(err.to_string().contains("missing"), "{err}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    /// manifests/examples/avs-operators.yaml documents usable keys: each AVSOperator's
    /// `blsPublicKey` must be `sk * G1` / `sk * G2` of the `bls.key` in the Secret it references.
    /// Parsed line by line to avoid a YAML dev-dependency; the file is simple and ours.
    #[test]
    fn example_avs_operator_keys_match_their_secrets() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/examples/avs-operators.yaml");
        let text = std::fs::read_to_string(path).expect("examples file");
        let value = |line: &str, field: &str| -> Option<String> {
            let rest = line.trim().strip_prefix(field)?.trim();
            Some(rest.trim_matches('"').trim_matches('\'').to_string())
        };
        let mut secrets = std::collections::BTreeMap::new();
        let mut operators = Vec::new();
        for doc in text.split("\n---") {
            let Some(kind) = doc.lines().find_map(|l| value(l, "kind:")) else {
                continue; // the leading comment block
            };
            let name = doc.lines().find_map(|l| value(l, "name:")).expect("metadata.name");
            match kind.as_str() {
                "Secret" => {
                    let k = doc.lines().find_map(|l| value(l, "bls.key:")).expect("bls.key");
                    secrets.insert(name, k);
                }
                "AVSOperator" => {
                    let g1 = doc.lines().find_map(|l| value(l, "g1:")).expect("g1");
                    let g2 = doc.lines().find_map(|l| value(l, "g2:")).expect("g2");
                    let mut after_ref = doc.lines().skip_while(|l| !l.contains("secretRef:")).skip(1);
                    let secret = after_ref.find_map(|l| value(l, "name:")).expect("secretRef.name");
                    operators.push((name, g1, g2, secret));
                }
                _ => {}
            }
        }
        assert_eq!(operators.len(), 3);
        for (name, g1, g2, secret) in operators {
            let sk = SecretKey::from_hex(&secrets[&secret]).expect("example key parses");
            assert_eq!(G1Point::from_hex(&g1).expect("g1"), sk.public_g1(), "{name} g1");
            assert_eq!(G2Point::from_hex(&g2).expect("g2"), sk.public_g2(), "{name} g2");
            assert_eq!(g1.to_lowercase(), sk.public_g1().to_hex(), "{name} g1 spelling");
            assert_eq!(g2.to_lowercase(), sk.public_g2().to_hex(), "{name} g2 spelling");
        }
    }
}
