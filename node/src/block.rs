//! Blocks as Ethereum defines them: transactions and receipts roots (ordered tries keyed by
//! `rlp(index)`), the logs bloom, and the header whose `keccak256(rlp(header))` is the block hash.

use alloy::consensus::proofs::{calculate_receipt_root, calculate_transaction_root};
use alloy::consensus::{EMPTY_OMMER_ROOT_HASH, Header, ReceiptEnvelope, TxEnvelope, TxReceipt};
use alloy::eips::eip7685::EMPTY_REQUESTS_HASH;
use alloy::primitives::{B256, Bloom, Bytes};
use alloy_trie::EMPTY_ROOT_HASH;

use crate::config::ChainConfig;
use crate::exec::{BASE_FEE, BlockContext, COINBASE, ExecutedBlock, SignedTx};

/// A block with its transactions and receipts.
#[derive(Clone, Debug)]
pub struct Block {
    /// The header.
    pub header: Header,
    /// `keccak256(rlp(header))`.
    pub hash: B256,
    /// Transactions, in order.
    pub txs: Vec<SignedTx>,
    /// One receipt per transaction.
    pub receipts: Vec<ReceiptEnvelope>,
}

impl Block {
    /// Seals a header: computes its hash.
    pub fn new(header: Header, txs: Vec<SignedTx>, receipts: Vec<ReceiptEnvelope>) -> Self {
        let hash = header.hash_slow();
        Self {
            header,
            hash,
            txs,
            receipts,
        }
    }

    /// Block number.
    pub fn number(&self) -> u64 {
        self.header.number
    }
}

/// Root of the transactions trie.
pub fn transactions_root(txs: &[SignedTx]) -> B256 {
    let envelopes: Vec<&TxEnvelope> = txs.iter().map(|t| &t.envelope).collect();
    calculate_transaction_root(&envelopes)
}

/// Root of the receipts trie.
pub fn receipts_root(receipts: &[ReceiptEnvelope]) -> B256 {
    calculate_receipt_root(receipts)
}

/// Union of the receipts' blooms.
pub fn logs_bloom(receipts: &[ReceiptEnvelope]) -> Bloom {
    let mut bloom = Bloom::ZERO;
    for r in receipts {
        bloom.accrue_bloom(&r.bloom());
    }
    bloom
}

/// Header fields every block shares: post-merge, post-Prague shape with no withdrawals, blobs,
/// beacon root or requests (a rollup has none of them).
fn base_header() -> Header {
    Header {
        ommers_hash: EMPTY_OMMER_ROOT_HASH,
        beneficiary: COINBASE,
        transactions_root: EMPTY_ROOT_HASH,
        receipts_root: EMPTY_ROOT_HASH,
        base_fee_per_gas: Some(BASE_FEE),
        withdrawals_root: Some(EMPTY_ROOT_HASH),
        blob_gas_used: Some(0),
        excess_blob_gas: Some(0),
        parent_beacon_block_root: Some(B256::ZERO),
        requests_hash: Some(EMPTY_REQUESTS_HASH),
        ..Header::default()
    }
}

/// Genesis header of the configured chain. `extraData` carries the rollup id, so two rollups with
/// the same allocation still have different genesis hashes.
pub fn genesis_header(config: &ChainConfig, state_root: B256) -> Header {
    Header {
        state_root,
        gas_limit: config.gas_limit,
        extra_data: Bytes::copy_from_slice(config.rollup_id.as_slice()),
        ..base_header()
    }
}

/// Execution context of the block after `parent`.
pub fn next_context(parent: &Header, parent_hash: B256, gas_limit: u64, now_secs: u64) -> BlockContext {
    BlockContext {
        number: parent.number + 1,
        // Several blocks a second share a timestamp; it never goes backwards.
        timestamp: now_secs.max(parent.timestamp),
        beneficiary: COINBASE,
        gas_limit,
        base_fee: BASE_FEE,
        // A deterministic PREVRANDAO the verifiers can reproduce; nothing here is random.
        prevrandao: parent_hash,
    }
}

/// Execution context a received header describes (what a verifier replays under).
pub fn context_of(header: &Header) -> BlockContext {
    BlockContext {
        number: header.number,
        timestamp: header.timestamp,
        beneficiary: header.beneficiary,
        gas_limit: header.gas_limit,
        base_fee: header.base_fee_per_gas.unwrap_or(BASE_FEE),
        prevrandao: header.mix_hash,
    }
}

/// Assembles the block an execution produced.
pub fn assemble(parent_hash: B256, ctx: &BlockContext, executed: &ExecutedBlock, state_root: B256) -> Block {
    let txs: Vec<SignedTx> = executed.txs.iter().map(|t| t.tx.clone()).collect();
    let receipts: Vec<ReceiptEnvelope> = executed.txs.iter().map(|t| t.receipt.clone()).collect();
    let header = Header {
        parent_hash,
        beneficiary: ctx.beneficiary,
        state_root,
        transactions_root: transactions_root(&txs),
        receipts_root: receipts_root(&receipts),
        logs_bloom: logs_bloom(&receipts),
        number: ctx.number,
        gas_limit: ctx.gas_limit,
        gas_used: executed.gas_used,
        timestamp: ctx.timestamp,
        mix_hash: ctx.prevrandao,
        base_fee_per_gas: Some(ctx.base_fee),
        ..base_header()
    };
    Block::new(header, txs, receipts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::b256;

    #[test]
    fn empty_roots() {
        assert_eq!(
            transactions_root(&[]),
            b256!("56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421")
        );
        assert_eq!(receipts_root(&[]), EMPTY_ROOT_HASH);
        assert_eq!(logs_bloom(&[]), Bloom::ZERO);
    }
}

/// Vectors produced by anvil 1.7.1 (`--init` with the genesis below, `--hardfork cancun
/// --disable-default-create2-deployer` so that it adds no system contracts, coinbase zero): an
/// empty block 1 has the genesis state root; block 2 (base fee 0.875 gwei after the empty block)
/// with the two transactions has the roots below.
#[cfg(test)]
mod anvil_vectors {
    use super::*;
    use crate::config::ChainConfig;
    use crate::exec::{BlockBuilder, ChainParams};
    use crate::state::State;
    use alloy::primitives::{b256, hex};

    fn config() -> ChainConfig {
        ChainConfig::parse(
            r#"{"chainId": 901337, "rollupId": "0x0000000000000000000000000000000000000000000000000000000000000001",
              "blockTimeMs": 500, "gasLimit": 30000000, "quorumStakePercent": 67,
              "genesis": {"alloc": {
                "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266": {"balance": "0x3635c9adc5dea00000"},
                "0x00000000000000000000000000000000000000cc": {"balance": "1", "nonce": 2, "code": "0x6001600055",
                  "storage": {"0x0000000000000000000000000000000000000000000000000000000000000001":
                              "0x0000000000000000000000000000000000000000000000000000000000000002"}}}}}"#,
        )
        .expect("config")
    }

    const TX_1559: &str = "02f86d830dc0d980843b9aca0084b2d05e008252089400000000000000000000000000000000000000bb0580c001a06d436f6f370fb62d355b3026f09234460918f6c4824389c6c57d9582f4a40862a00ec5fb7f20dd0ce79790aaff0ae7110ecbf4d5db672fb8bb559884206c5f1a80";
    const TX_LEGACY: &str = "f8670184b2d05e00830186a09400000000000000000000000000000000000000cc8080831b81d6a09f1cf9121a00fbecbed79e24e4b962d1d8fe38372511913595228e3db2120340a0168884f33fecee0b08c52bb28aaf9252b5881e233c38337ff647ae61048c0010";

    #[test]
    fn genesis_state_root_matches_anvil() {
        let mut state = State::from_genesis(&config().alloc);
        assert_eq!(
            state.state_root(),
            b256!("74ad28454e7293b28c48f0ff00ba17003cc104129c683613bb524b1c925035bd")
        );
    }

    #[test]
    fn block_roots_match_anvil() {
        let config = config();
        let mut state = State::from_genesis(&config.alloc);
        let genesis = Block::new(genesis_header(&config, state.state_root()), vec![], vec![]);
        let ctx = BlockContext {
            base_fee: 875_000_000,
            ..next_context(&genesis.header, genesis.hash, config.gas_limit, 6)
        };
        let executed = {
            let mut b = BlockBuilder::new(&state, &ChainParams::from(&config), &ctx);
            for raw in [TX_1559, TX_LEGACY] {
                let tx = SignedTx::decode(&hex::decode(raw).expect("hex"), 901337).expect("decode");
                b.push(tx).expect("execute");
            }
            b.finish()
        };
        state.apply(&executed.diff);
        let block = assemble(genesis.hash, &ctx, &executed, state.state_root());
        assert_eq!(block.header.gas_used, 0xfa6a);
        assert_eq!(
            block.header.transactions_root,
            b256!("a0a7fdb92127acda81180076ba82f9a4f2c7988ff998abe473401335812b80da")
        );
        assert_eq!(
            block.header.receipts_root,
            b256!("8b350e11e20aff45fea06cbb71f1cb6937ca64167a7240e29342fa19b7b42e58")
        );
        assert_eq!(
            block.header.state_root,
            b256!("99d46757b2e7ccfef242c671b24724f61fddc9018b73813d0fa810253ed5d332")
        );
    }
}
