// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title FlashSettlement: the L1 settlement contract of Flashlayer's ephemeral rollups.
/// @notice Per rollup id it holds the registered operator set (BN254 G1 public keys and stakes),
/// the rollup's chain id and quorum, and the registrar that may settle it. `settle` checks a MACH
/// certificate (an aggregated BLS signature of the operators named by a bitmap) the way
/// EigenLayer's BLSSignatureChecker does, with the EIP-196/197 precompiles, and records the
/// rollup's final block exactly once. docs/node-api.md describes the signed message and the
/// certificate; the node's `mach::l1_check` replays this contract's precompile calls.
///
/// Only the registrar may settle. The sequencer verifies every attestation individually (with
/// the operator's own G1 and G2 key) before aggregating, and only the registrar (the Flashlayer
/// operator) submits, so no third party can submit a certificate built from rogue keys.
contract FlashSettlement {
    // ------------------------------------------------------------------------------------------
    // Curve constants (BN254 / alt_bn128)
    // ------------------------------------------------------------------------------------------

    /// Base field modulus p.
    uint256 internal constant FP_MODULUS =
        21888242871839275222246405745257275088696311157297823662689037894645226208583;
    /// Group order r.
    uint256 internal constant FR_MODULUS =
        21888242871839275222246405745257275088548364400416034343698204186575808495617;
    /// (p + 1) / 4: since p = 3 mod 4, beta^((p+1)/4) is a square root of beta whenever one exists.
    /// Spelled as a literal because inline assembly only takes literal constants.
    uint256 internal constant SQRT_EXPONENT = 0xc19139cb84c680a6e14116da060561765e05aa45a1c72a34f082305b61f3f52;

    /// The negated G2 generator, in precompile order (x.c1, x.c0, y.c1, y.c0).
    uint256 internal constant NEG_G2_X_C1 =
        11559732032986387107991004021392285783925812861821192530917403151452391805634;
    uint256 internal constant NEG_G2_X_C0 =
        10857046999023057135944570762232829481370756359578518086990519993285655852781;
    uint256 internal constant NEG_G2_Y_C1 =
        17805874995975841540914202342111839520379459829704422454583296818431106115052;
    uint256 internal constant NEG_G2_Y_C0 =
        13392588948715843804641432497768002650278120570034223513918757245338268106653;

    /// Gas handed to the pairing precompile (two pairs cost 113,000 since Istanbul).
    uint256 internal constant PAIRING_GAS = 120_000;

    /// The signer bitmap is a uint256.
    uint256 public constant MAX_OPERATORS = 256;
    /// Basis points in 100 %.
    uint256 internal constant BPS = 10_000;

    /// Bytes per operator in a set's data contract: G1 key x (32), y (32), stake (12, uint96).
    uint256 internal constant RECORD_SIZE = 76;
    /// The data contract's code starts with a STOP byte so that calling it does nothing.
    uint256 internal constant DATA_OFFSET = 1;

    // ------------------------------------------------------------------------------------------
    // Storage
    // ------------------------------------------------------------------------------------------

    struct Rollup {
        // slot 0
        address registrar; // msg.sender of registerRollup; zero = not registered
        uint64 chainId; // the rollup's EVM chain id, bound into the signed message
        uint16 quorumBps; // 1..=10000
        uint16 operatorCount; // 1..=256
        // slot 1
        address operatorData; // code = STOP ‖ operatorCount records of RECORD_SIZE bytes
        bool settled;
        uint64 number;
        // slot 2
        uint256 totalStake;
        // slots 3, 4
        bytes32 blockHash;
        bytes32 stateRoot;
    }

    mapping(bytes32 rollupId => Rollup) internal rollups;

    // ------------------------------------------------------------------------------------------
    // Events and errors
    // ------------------------------------------------------------------------------------------

    /// A rollup's final block was settled.
    event RollupSettled(bytes32 indexed rollupId, uint64 number, bytes32 blockHash, bytes32 stateRoot);
    /// A rollup's operator set was registered.
    event RollupRegistered(
        bytes32 indexed rollupId,
        address indexed registrar,
        uint64 chainId,
        uint16 quorumBps,
        uint256 operatorCount,
        uint256 totalStake
    );

    /// The rollup id is already registered (registration happens once per id).
    error AlreadyRegistered(bytes32 rollupId);
    /// The operator set is empty.
    error EmptyOperatorSet();
    /// More operators than the signer bitmap can name.
    error TooManyOperators(uint256 count);
    /// `g1PublicKeys` and `stakes` differ in length.
    error LengthMismatch(uint256 keys, uint256 stakes);
    /// The quorum is not in 1..=10000 basis points.
    error BadQuorum(uint16 quorumBps);
    /// Operator `index`'s G1 key has a coordinate >= p or is not on the curve. `[0, 0]` is
    /// accepted and means "no key": the operator's stake counts in the total, but it cannot sign.
    error InvalidPublicKey(uint256 index);
    /// The stakes sum to zero.
    error ZeroTotalStake();
    /// Creating the contract that holds the operator set failed (out of gas).
    error OperatorSetNotStored();
    /// The rollup id was never registered.
    error UnknownRollup(bytes32 rollupId);
    /// Only the registrar of the rollup may settle it.
    error NotRegistrar(bytes32 rollupId, address caller);
    /// The rollup was settled already (with block `number`).
    error AlreadySettled(bytes32 rollupId, uint64 number);
    /// The bitmap names an operator index at or beyond the set's size.
    error BadBitmap(uint256 signerBitmap, uint256 operatorCount);
    /// The bitmap names operator `index`, which was registered without a key.
    error SignerWithoutKey(uint256 index);
    /// signedStake * 10000 < quorumBps * totalStake.
    error QuorumNotMet(uint256 signedStake, uint256 totalStake, uint16 quorumBps);
    /// A precompile refused the certificate's points: sigma or apkG2 has a coordinate >= p, is
    /// not on its curve, or apkG2 is not in the G2 subgroup.
    error InvalidCertificatePoint();
    /// The pairing check is false: the signature does not verify for these signers and message.
    error BadSignature();
    /// `operatorAt` was asked for an index at or beyond the set's size.
    error NoSuchOperator(uint256 index, uint256 operatorCount);
    /// A precompile (0x05 modexp, 0x06 ecAdd) failed on inputs this contract produced itself.
    error PrecompileFailed(uint8 precompile);

    // ------------------------------------------------------------------------------------------
    // Registration
    // ------------------------------------------------------------------------------------------

    /// @notice Registers the operator set of `rollupId`, once. `g1PublicKeys[i]` = [X, Y] of
    /// operator i (bit i of the signer bitmap), `stakes[i]` its weight. The caller becomes the
    /// rollup's registrar, the only account that may settle it.
    function registerRollup(
        bytes32 rollupId,
        uint64 chainId,
        uint256[2][] calldata g1PublicKeys,
        uint96[] calldata stakes,
        uint16 quorumBps
    ) external {
        Rollup storage r = rollups[rollupId];
        if (r.registrar != address(0)) revert AlreadyRegistered(rollupId);
        uint256 n = g1PublicKeys.length;
        if (n == 0) revert EmptyOperatorSet();
        if (n > MAX_OPERATORS) revert TooManyOperators(n);
        if (stakes.length != n) revert LengthMismatch(n, stakes.length);
        if (quorumBps == 0 || quorumBps > BPS) revert BadQuorum(quorumBps);

        // Init code (10 bytes) that returns the runtime appended to it, then the runtime.
        uint256 runtimeSize = DATA_OFFSET + n * RECORD_SIZE;
        bytes memory init = new bytes(10 + runtimeSize);
        uint256 total;
        assembly ("memory-safe") {
            let p := add(init, 0x20)
            // PUSH2 runtimeSize, DUP1, PUSH1 10, RETURNDATASIZE, CODECOPY, RETURNDATASIZE, RETURN
            mstore(p, or(shl(248, 0x61), or(shl(232, runtimeSize), shl(176, 0x80600a3d393df3))))
            // p + 10 is the STOP byte: already zero.
        }
        for (uint256 i = 0; i < n; ++i) {
            uint256 x = g1PublicKeys[i][0];
            uint256 y = g1PublicKeys[i][1];
            if ((x | y) != 0 && !_onCurve(x, y)) revert InvalidPublicKey(i);
            uint96 stake = stakes[i];
            total += stake;
            assembly ("memory-safe") {
                let rec := add(add(init, 0x20), add(11, mul(i, RECORD_SIZE)))
                mstore(rec, x)
                mstore(add(rec, 0x20), y)
                // 12 bytes of stake. The 20 zero bytes after it are overwritten by the next record;
                // after the last record they land past `init`, in scratch memory nobody reads.
                mstore(add(rec, 0x40), shl(160, stake))
            }
        }
        if (total == 0) revert ZeroTotalStake();

        address data;
        assembly ("memory-safe") {
            data := create(0, add(init, 0x20), mload(init))
        }
        if (data == address(0)) revert OperatorSetNotStored();

        r.registrar = msg.sender;
        r.chainId = chainId;
        r.quorumBps = quorumBps;
        r.operatorCount = uint16(n);
        r.operatorData = data;
        r.totalStake = total;
        emit RollupRegistered(rollupId, msg.sender, chainId, quorumBps, n, total);
    }

    // ------------------------------------------------------------------------------------------
    // Settlement
    // ------------------------------------------------------------------------------------------

    /// @notice Verifies the MACH certificate of block `number` and records it as the rollup's
    /// final state. `signerBitmap` bit i = operator i signed; `apkG2` = the signers' aggregate G2
    /// key [x.c1, x.c0, y.c1, y.c0]; `sigma` = the aggregate signature [x, y] in G1.
    function settle(
        bytes32 rollupId,
        uint64 number,
        bytes32 blockHash,
        bytes32 stateRoot,
        uint256 signerBitmap,
        uint256[4] calldata apkG2,
        uint256[2] calldata sigma
    ) external {
        Rollup storage r = rollups[rollupId];
        address registrar = r.registrar;
        if (registrar == address(0)) revert UnknownRollup(rollupId);
        if (msg.sender != registrar) revert NotRegistrar(rollupId, msg.sender);
        if (r.settled) revert AlreadySettled(rollupId, r.number);

        (uint256 apkX, uint256 apkY) = _tally(r, signerBitmap);
        bytes32 msgHash = attestationDigest(r.chainId, rollupId, number, blockHash, stateRoot);
        _checkSignature(msgHash, apkX, apkY, apkG2, sigma);

        r.settled = true;
        r.number = number;
        r.blockHash = blockHash;
        r.stateRoot = stateRoot;
        emit RollupSettled(rollupId, number, blockHash, stateRoot);
    }

    // ------------------------------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------------------------------

    /// @notice The recorded final state; `settled` is false (and the rest zero) until settlement.
    function settlement(bytes32 rollupId)
        external
        view
        returns (bool settled, uint64 number, bytes32 blockHash, bytes32 stateRoot)
    {
        Rollup storage r = rollups[rollupId];
        return (r.settled, r.number, r.blockHash, r.stateRoot);
    }

    /// @notice Whether `rollupId` has a registered operator set.
    function isRegistered(bytes32 rollupId) external view returns (bool) {
        return rollups[rollupId].registrar != address(0);
    }

    /// @notice The registration of `rollupId` (all zero if it is not registered). A registrar
    /// should compare this with what it meant to register before relying on `isRegistered`.
    function rollup(bytes32 rollupId)
        external
        view
        returns (address registrar, uint64 chainId, uint16 quorumBps, uint16 operatorCount, uint256 totalStake)
    {
        Rollup storage r = rollups[rollupId];
        return (r.registrar, r.chainId, r.quorumBps, r.operatorCount, r.totalStake);
    }

    /// @notice Operator `index` of the registered set: its G1 key [X, Y] and stake.
    function operatorAt(bytes32 rollupId, uint256 index) external view returns (uint256[2] memory g1, uint96 stake) {
        Rollup storage r = rollups[rollupId];
        if (r.registrar == address(0)) revert UnknownRollup(rollupId);
        if (index >= r.operatorCount) revert NoSuchOperator(index, r.operatorCount);
        address data = r.operatorData;
        uint256 x;
        uint256 y;
        uint256 s;
        assembly ("memory-safe") {
            let buf := mload(0x40)
            extcodecopy(data, buf, add(DATA_OFFSET, mul(index, RECORD_SIZE)), RECORD_SIZE)
            x := mload(buf)
            y := mload(add(buf, 0x20))
            s := shr(160, mload(add(buf, 0x40)))
        }
        return ([x, y], uint96(s));
    }

    /// @notice What the operators sign for a block:
    /// keccak256(abi.encode(chainId, rollupId, number, blockHash, stateRoot)).
    function attestationDigest(uint64 chainId, bytes32 rollupId, uint64 number, bytes32 blockHash, bytes32 stateRoot)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(chainId, rollupId, number, blockHash, stateRoot));
    }

    /// @notice BN254 hash-to-curve by try-and-increment, as EigenLayer's BN254.hashToG1:
    /// x = msgHash mod p; while x^3 + 3 has no square root, x = x + 1; y = (x^3 + 3)^((p+1)/4).
    function hashToG1(bytes32 msgHash) public view returns (uint256 x, uint256 y) {
        x = uint256(msgHash) % FP_MODULUS;
        while (true) {
            uint256 beta = addmod(mulmod(mulmod(x, x, FP_MODULUS), x, FP_MODULUS), 3, FP_MODULUS);
            y = _sqrtCandidate(beta);
            if (mulmod(y, y, FP_MODULUS) == beta) return (x, y);
            x = addmod(x, 1, FP_MODULUS);
        }
    }

    // ------------------------------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------------------------------

    /// Checks the bitmap against the set, sums the signers' keys and stakes, and requires the
    /// quorum. Returns the signers' aggregate G1 key.
    function _tally(Rollup storage r, uint256 signerBitmap) private view returns (uint256 apkX, uint256 apkY) {
        uint256 n = r.operatorCount;
        if (n < MAX_OPERATORS && (signerBitmap >> n) != 0) revert BadBitmap(signerBitmap, n);
        uint256 signedStake;
        (apkX, apkY, signedStake) = _signers(r.operatorData, n, signerBitmap);
        uint256 totalStake = r.totalStake;
        uint16 quorumBps = r.quorumBps;
        if (signedStake * BPS < uint256(quorumBps) * totalStake) {
            revert QuorumNotMet(signedStake, totalStake, quorumBps);
        }
    }

    /// Sums the G1 keys (ecAdd, from the point at infinity) and stakes of the operators whose bit
    /// is set, in ascending bit order.
    function _signers(address data, uint256 n, uint256 bitmap)
        private
        view
        returns (uint256 apkX, uint256 apkY, uint256 signedStake)
    {
        uint256 keyless; // index + 1 of the first signer without a key
        bool ok = true;
        assembly ("memory-safe") {
            // Scratch beyond the free memory pointer: [0, 64) running sum, [64, 140) one record.
            let buf := mload(0x40)
            mstore(buf, 0)
            mstore(add(buf, 0x20), 0)
            for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                if and(shr(i, bitmap), 1) {
                    extcodecopy(data, add(buf, 0x40), add(DATA_OFFSET, mul(i, RECORD_SIZE)), RECORD_SIZE)
                    if iszero(or(mload(add(buf, 0x40)), mload(add(buf, 0x60)))) {
                        keyless := add(i, 1)
                        break
                    }
                    signedStake := add(signedStake, shr(160, mload(add(buf, 0x80))))
                    if iszero(staticcall(gas(), 0x06, buf, 0x80, buf, 0x40)) {
                        ok := 0
                        break
                    }
                }
            }
            apkX := mload(buf)
            apkY := mload(add(buf, 0x20))
        }
        if (keyless != 0) revert SignerWithoutKey(keyless - 1);
        // Keys were checked at registration, so this cannot happen; refuse rather than assume.
        if (!ok) revert PrecompileFailed(0x06);
    }

    /// BLSSignatureChecker's aggregate check: with
    /// gamma = keccak256(msgHash ‖ apkG1 ‖ apkG2 ‖ sigma) mod r,
    /// e(sigma + gamma * apkG1, -G2) * e(H(m) + gamma * G1, apkG2) == 1.
    /// Besides the signature, this proves apkG1 (summed here from registered keys) and apkG2
    /// (from the certificate) hold the same secret.
    function _checkSignature(
        bytes32 msgHash,
        uint256 apkX,
        uint256 apkY,
        uint256[4] calldata apkG2,
        uint256[2] calldata sigma
    ) private view {
        uint256 gamma = uint256(
            keccak256(
                abi.encodePacked(msgHash, apkX, apkY, apkG2[0], apkG2[1], apkG2[2], apkG2[3], sigma[0], sigma[1])
            )
        ) % FR_MODULUS;

        (uint256 hX, uint256 hY) = hashToG1(msgHash);
        bool ok;
        uint256 result;
        assembly ("memory-safe") {
            let m := mload(0x40)
            // Pairing input layout (384 bytes at m + 0x80): lhs ‖ -G2 ‖ rhs ‖ apkG2.
            let pin := add(m, 0x80)

            // lhs = sigma + gamma * apkG1
            mstore(m, apkX)
            mstore(add(m, 0x20), apkY)
            mstore(add(m, 0x40), gamma)
            ok := staticcall(gas(), 0x07, m, 0x60, add(m, 0x40), 0x40) // m+0x40: gamma*apk
            calldatacopy(m, sigma, 0x40) // m: sigma
            ok := and(ok, staticcall(gas(), 0x06, m, 0x80, pin, 0x40))

            // -G2
            mstore(add(pin, 0x40), NEG_G2_X_C1)
            mstore(add(pin, 0x60), NEG_G2_X_C0)
            mstore(add(pin, 0x80), NEG_G2_Y_C1)
            mstore(add(pin, 0xa0), NEG_G2_Y_C0)

            // rhs = H(m) + gamma * G1
            mstore(m, 1)
            mstore(add(m, 0x20), 2)
            mstore(add(m, 0x40), gamma)
            ok := and(ok, staticcall(gas(), 0x07, m, 0x60, add(m, 0x40), 0x40)) // m+0x40: gamma*G1
            mstore(m, hX)
            mstore(add(m, 0x20), hY)
            ok := and(ok, staticcall(gas(), 0x06, m, 0x80, add(pin, 0xc0), 0x40))

            // apkG2
            calldatacopy(add(pin, 0x100), apkG2, 0x80)

            if ok {
                ok := staticcall(PAIRING_GAS, 0x08, pin, 0x180, m, 0x20)
                result := mload(m)
            }
        }
        if (!ok) revert InvalidCertificatePoint();
        if (result != 1) revert BadSignature();
    }

    /// beta^((p+1)/4) mod p with the modexp precompile.
    function _sqrtCandidate(uint256 beta) private view returns (uint256 y) {
        bool ok;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, 0x20)
            mstore(add(m, 0x20), 0x20)
            mstore(add(m, 0x40), 0x20)
            mstore(add(m, 0x60), beta)
            mstore(add(m, 0x80), SQRT_EXPONENT)
            mstore(add(m, 0xa0), FP_MODULUS)
            ok := staticcall(gas(), 0x05, m, 0xc0, m, 0x20)
            y := mload(m)
        }
        if (!ok) revert PrecompileFailed(0x05);
    }

    /// y^2 == x^3 + 3 (mod p) with both coordinates below p. G1 has cofactor 1.
    function _onCurve(uint256 x, uint256 y) private pure returns (bool) {
        if (x >= FP_MODULUS || y >= FP_MODULUS) return false;
        return mulmod(y, y, FP_MODULUS) == addmod(mulmod(mulmod(x, x, FP_MODULUS), x, FP_MODULUS), 3, FP_MODULUS);
    }
}
