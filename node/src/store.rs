//! The chain on disk (redb in `--data-dir`): headers, bodies, receipts, the transaction index, the
//! current state (written as each block's diff, in the block's own transaction), and the seal.
//! A reopened store gives back the same head and the same state root.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use alloy::consensus::{Header, ReceiptEnvelope, TxEnvelope};
use alloy::eips::eip2718::{Decodable2718, Encodable2718};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy_rlp::{Decodable, Encodable};
use redb::{Database, ReadableDatabase, TableDefinition};
use revm::bytecode::Bytecode;
use serde::{Deserialize, Serialize};

use crate::block::Block;
use crate::exec::SignedTx;
use crate::state::{AccountBasics, BLOCK_HASH_WINDOW, State, StateDiff};

const HEADERS: TableDefinition<u64, &[u8]> = TableDefinition::new("headers");
const HASH_TO_NUMBER: TableDefinition<&[u8], u64> = TableDefinition::new("hash_to_number");
const BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("bodies");
const SENDERS: TableDefinition<u64, &[u8]> = TableDefinition::new("senders");
const RECEIPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("receipts");
const TX_INDEX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tx_index");
const ACCOUNTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("accounts");
const STORAGE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("storage");
const CODE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("code");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const CERTIFICATES: TableDefinition<u64, &[u8]> = TableDefinition::new("certificates");

/// Decoded blocks kept by [`Store::block_shared`] (a written block never changes).
const RECENT_BLOCKS: usize = 16;

const META_HEAD: &str = "head";
const META_STATE_ROOT: &str = "state_root";
const META_SEALED: &str = "sealed";

/// Storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed.
    #[error("database: {0}")]
    Db(#[from] redb::Error),
    /// The data directory could not be prepared.
    #[error("data directory: {0}")]
    Io(#[from] std::io::Error),
    /// Stored bytes do not decode (corruption or a foreign file).
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                Self::Db(e.into())
            }
        }
    )*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The last block of a sealed chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FinalBlock {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// State root in its header.
    pub state_root: B256,
}

/// Where a transaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxLocation {
    /// Block number.
    pub block: u64,
    /// Position in the block.
    pub index: u32,
}

/// The chain database.
#[derive(Debug)]
pub struct Store {
    db: Database,
    recent: Mutex<VecDeque<Arc<Block>>>,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

fn storage_key(address: &Address, slot: &U256) -> [u8; 52] {
    let mut k = [0u8; 52];
    k[..20].copy_from_slice(address.as_slice());
    k[20..].copy_from_slice(&slot.to_be_bytes::<32>());
    k
}

fn encode_account(a: &AccountBasics) -> [u8; 72] {
    let mut v = [0u8; 72];
    v[..8].copy_from_slice(&a.nonce.to_be_bytes());
    v[8..40].copy_from_slice(&a.balance.to_be_bytes::<32>());
    v[40..].copy_from_slice(a.code_hash.as_slice());
    v
}

fn decode_account(v: &[u8]) -> Result<AccountBasics, StoreError> {
    if v.len() != 72 {
        return Err(corrupt("account"));
    }
    let mut nonce = [0u8; 8];
    nonce.copy_from_slice(&v[..8]);
    Ok(AccountBasics {
        nonce: u64::from_be_bytes(nonce),
        balance: U256::from_be_slice(&v[8..40]),
        code_hash: B256::from_slice(&v[40..]),
    })
}

impl Store {
    /// Opens (or creates) `dir/chain.redb`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let db = Database::create(dir.join("chain.redb"))?;
        // Create every table up front so readers never see "table does not exist".
        let tx = db.begin_write()?;
        tx.open_table(HEADERS)?;
        tx.open_table(HASH_TO_NUMBER)?;
        tx.open_table(BODIES)?;
        tx.open_table(SENDERS)?;
        tx.open_table(RECEIPTS)?;
        tx.open_table(TX_INDEX)?;
        tx.open_table(ACCOUNTS)?;
        tx.open_table(STORAGE)?;
        tx.open_table(CODE)?;
        tx.open_table(META)?;
        tx.open_table(CERTIFICATES)?;
        tx.commit()?;
        Ok(Self {
            db,
            recent: Mutex::new(VecDeque::with_capacity(RECENT_BLOCKS)),
        })
    }

    /// Number of the last stored block, `None` for an empty store.
    pub fn head(&self) -> Result<Option<u64>, StoreError> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        let Some(v) = meta.get(META_HEAD)? else {
            return Ok(None);
        };
        let bytes: [u8; 8] = v.value().try_into().map_err(|_| corrupt("head"))?;
        Ok(Some(u64::from_be_bytes(bytes)))
    }

    /// The state root the stored state has (the head header's, unless a fault was injected).
    pub fn state_root(&self) -> Result<Option<B256>, StoreError> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        Ok(meta.get(META_STATE_ROOT)?.map(|v| B256::from_slice(v.value())))
    }

    /// The seal, once the chain is sealed.
    pub fn sealed(&self) -> Result<Option<FinalBlock>, StoreError> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        match meta.get(META_SEALED)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(v.value()).map(Some).map_err(|_| corrupt("seal")),
        }
    }

    /// Writes a block, its state diff and the new head in one transaction. `sealed` marks it as
    /// the chain's final block in the same transaction, so a crash cannot leave one without the other.
    pub fn commit_block(
        &self,
        block: &Block,
        diff: &StateDiff,
        state_root: B256,
        sealed: Option<&FinalBlock>,
    ) -> Result<(), StoreError> {
        let number = block.number();
        let tx = self.db.begin_write()?;
        {
            let mut buf = Vec::new();
            block.header.encode(&mut buf);
            tx.open_table(HEADERS)?.insert(number, buf.as_slice())?;
            tx.open_table(HASH_TO_NUMBER)?.insert(block.hash.as_slice(), number)?;

            let raw: Vec<Bytes> = block.txs.iter().map(SignedTx::encoded).collect();
            buf.clear();
            raw.encode(&mut buf);
            tx.open_table(BODIES)?.insert(number, buf.as_slice())?;
            let senders: Vec<u8> = block.txs.iter().flat_map(|t| t.sender.0.0).collect();
            tx.open_table(SENDERS)?.insert(number, senders.as_slice())?;

            let receipts: Vec<Bytes> = block.receipts.iter().map(|r| r.encoded_2718().into()).collect();
            buf.clear();
            receipts.encode(&mut buf);
            tx.open_table(RECEIPTS)?.insert(number, buf.as_slice())?;

            let mut index = tx.open_table(TX_INDEX)?;
            for (i, t) in block.txs.iter().enumerate() {
                let mut loc = [0u8; 12];
                loc[..8].copy_from_slice(&number.to_be_bytes());
                loc[8..].copy_from_slice(&(i as u32).to_be_bytes());
                index.insert(t.hash.as_slice(), loc.as_slice())?;
            }

            let mut accounts = tx.open_table(ACCOUNTS)?;
            let mut storage = tx.open_table(STORAGE)?;
            let mut code = tx.open_table(CODE)?;
            for (hash, c) in &diff.code {
                code.insert(hash.as_slice(), c.original_byte_slice())?;
            }
            for (address, change) in &diff.accounts {
                if change.storage_cleared {
                    let lo = storage_key(address, &U256::ZERO);
                    let hi = storage_key(address, &U256::MAX);
                    storage.retain_in(lo.as_slice()..=hi.as_slice(), |_, _| false)?;
                }
                match &change.info {
                    None => {
                        accounts.remove(address.as_slice())?;
                    }
                    Some(info) => {
                        accounts.insert(address.as_slice(), encode_account(info).as_slice())?;
                        for (slot, value) in &change.storage {
                            let key = storage_key(address, slot);
                            if value.is_zero() {
                                storage.remove(key.as_slice())?;
                            } else {
                                storage.insert(key.as_slice(), value.to_be_bytes::<32>().as_slice())?;
                            }
                        }
                    }
                }
            }

            let mut meta = tx.open_table(META)?;
            meta.insert(META_HEAD, number.to_be_bytes().as_slice())?;
            meta.insert(META_STATE_ROOT, state_root.as_slice())?;
            if let Some(seal) = sealed {
                let json = serde_json::to_vec(seal).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                meta.insert(META_SEALED, json.as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Keeps an opaque certificate record (JSON) of block `number`.
    pub fn put_certificate(&self, number: u64, record: &[u8]) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        tx.open_table(CERTIFICATES)?.insert(number, record)?;
        tx.commit()?;
        Ok(())
    }

    /// The newest `limit` certificate records, oldest first.
    pub fn certificates(&self, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(CERTIFICATES)?;
        let mut out = Vec::new();
        for entry in table.range::<u64>(..)?.rev().take(limit) {
            let (k, v) = entry?;
            out.push((k.value(), v.value().to_vec()));
        }
        out.reverse();
        Ok(out)
    }

    /// Header of block `number`.
    pub fn header(&self, number: u64) -> Result<Option<Header>, StoreError> {
        let tx = self.db.begin_read()?;
        let headers = tx.open_table(HEADERS)?;
        let Some(v) = headers.get(number)? else {
            return Ok(None);
        };
        let mut bytes = v.value();
        Header::decode(&mut bytes).map(Some).map_err(|_| corrupt("header"))
    }

    /// Number of the block with this hash.
    pub fn number_of(&self, hash: &B256) -> Result<Option<u64>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(HASH_TO_NUMBER)?;
        Ok(table.get(hash.as_slice())?.map(|v| v.value()))
    }

    /// Where a transaction was included.
    pub fn tx_location(&self, hash: &B256) -> Result<Option<TxLocation>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(TX_INDEX)?;
        let Some(v) = table.get(hash.as_slice())? else {
            return Ok(None);
        };
        let v = v.value();
        if v.len() != 12 {
            return Err(corrupt("tx index"));
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(&v[..8]);
        let mut i = [0u8; 4];
        i.copy_from_slice(&v[8..]);
        Ok(Some(TxLocation {
            block: u64::from_be_bytes(n),
            index: u32::from_be_bytes(i),
        }))
    }

    /// The whole block `number`, decoded once and shared. Receipt and transaction lookups (every
    /// client polling for its receipt) and verifiers fetching the newest blocks hit the same few
    /// blocks; decoding the whole block (re-hashing every transaction) per lookup made a receipt
    /// request cost O(block size).
    pub fn block_shared(&self, number: u64) -> Result<Option<Arc<Block>>, StoreError> {
        let cached = |recent: &VecDeque<Arc<Block>>| recent.iter().find(|b| b.number() == number).cloned();
        if let Some(b) = cached(&self.recent.lock().unwrap_or_else(PoisonError::into_inner)) {
            return Ok(Some(b));
        }
        let Some(block) = self.block(number)? else {
            return Ok(None);
        };
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = cached(&recent) {
            return Ok(Some(b));
        }
        let block = Arc::new(block);
        if recent.len() >= RECENT_BLOCKS {
            recent.pop_front();
        }
        recent.push_back(block.clone());
        Ok(Some(block))
    }

    /// The whole block `number`.
    pub fn block(&self, number: u64) -> Result<Option<Block>, StoreError> {
        let tx = self.db.begin_read()?;
        let Some(header) = tx.open_table(HEADERS)?.get(number)? else {
            return Ok(None);
        };
        let header = Header::decode(&mut header.value()).map_err(|_| corrupt("header"))?;
        let body = tx
            .open_table(BODIES)?
            .get(number)?
            .ok_or_else(|| corrupt("missing body"))?;
        let raw = Vec::<Bytes>::decode(&mut body.value()).map_err(|_| corrupt("body"))?;
        let senders = tx
            .open_table(SENDERS)?
            .get(number)?
            .ok_or_else(|| corrupt("missing senders"))?;
        let senders = senders.value();
        if senders.len() != raw.len() * 20 {
            return Err(corrupt("senders"));
        }
        let mut txs = Vec::with_capacity(raw.len());
        for (i, r) in raw.iter().enumerate() {
            let envelope = TxEnvelope::decode_2718(&mut r.as_ref()).map_err(|_| corrupt("transaction"))?;
            txs.push(SignedTx {
                hash: *envelope.tx_hash(),
                envelope,
                sender: Address::from_slice(&senders[i * 20..(i + 1) * 20]),
            });
        }
        let receipts = tx
            .open_table(RECEIPTS)?
            .get(number)?
            .ok_or_else(|| corrupt("missing receipts"))?;
        let raw = Vec::<Bytes>::decode(&mut receipts.value()).map_err(|_| corrupt("receipts"))?;
        let receipts = raw
            .iter()
            .map(|r| ReceiptEnvelope::decode_2718(&mut r.as_ref()).map_err(|_| corrupt("receipt")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Block::new(header, txs, receipts)))
    }

    /// Rebuilds the in-memory state (accounts, storage, code, the last 256 block hashes).
    pub fn load_state(&self) -> Result<State, StoreError> {
        let mut state = State::default();
        let tx = self.db.begin_read()?;
        for entry in tx.open_table(CODE)?.range::<&[u8]>(..)? {
            let (_, v) = entry?;
            state.load_code(Bytecode::new_raw(Bytes::copy_from_slice(v.value())));
        }
        let storage = tx.open_table(STORAGE)?;
        for entry in tx.open_table(ACCOUNTS)?.range::<&[u8]>(..)? {
            let (k, v) = entry?;
            let address = Address::try_from(k.value()).map_err(|_| corrupt("account key"))?;
            let info = decode_account(v.value())?;
            let lo = storage_key(&address, &U256::ZERO);
            let hi = storage_key(&address, &U256::MAX);
            let mut slots = Vec::new();
            for s in storage.range(lo.as_slice()..=hi.as_slice())? {
                let (k, v) = s?;
                slots.push((U256::from_be_slice(&k.value()[20..]), U256::from_be_slice(v.value())));
            }
            state.load_account(address, info, slots);
        }
        drop(storage);
        if let Some(head) = self.head()? {
            let headers = tx.open_table(HEADERS)?;
            for entry in headers.range(head.saturating_sub(BLOCK_HASH_WINDOW - 1)..=head)? {
                let (k, v) = entry?;
                let header = Header::decode(&mut v.value()).map_err(|_| corrupt("header"))?;
                state.push_block_hash(k.value(), header.hash_slow());
            }
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{assemble, genesis_header, next_context};
    use crate::config::ChainConfig;
    use crate::exec::{BlockBuilder, ChainParams};
    use alloy::primitives::TxKind;

    fn config() -> ChainConfig {
        let signer = crate::exec::tests::dev_signer();
        ChainConfig::parse(
            &serde_json::json!({
                "chainId": 901337, "rollupId": format!("0x{}", "11".repeat(32)), "blockTimeMs": 100,
                "gasLimit": 30000000, "quorumStakePercent": 67,
                "genesis": { "alloc": { signer.address().to_string(): { "balance": "1000000000000000000000" } } }
            })
            .to_string(),
        )
        .expect("config")
    }

    #[test]
    fn reopen_resumes_at_the_same_head_and_root() {
        let dir = std::env::temp_dir().join(format!("flashlayer-store-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = config();
        let params = ChainParams::from(&config);
        let signer = crate::exec::tests::dev_signer();
        let (head_hash, root, contract) = {
            let store = Store::open(&dir).expect("open");
            let mut state = State::from_genesis(&config.alloc);
            let root = state.state_root();
            let genesis = Block::new(genesis_header(&config, root), vec![], vec![]);
            store
                .commit_block(&genesis, &crate::state::full_diff(&state), root, None)
                .expect("genesis");
            state.push_block_hash(0, genesis.hash);
            let mut parent = genesis;
            // init code deploying runtime that stores CALLVALUE at slot NUMBER: NUMBER CALLVALUE SWAP1 SSTORE
            let init = alloy::primitives::bytes!("6004600c60003960046000f3" "43349055");
            let contract = signer.address().create(0);
            for n in 1..=5u64 {
                let ctx = next_context(&parent.header, parent.hash, config.gas_limit, n);
                let executed = {
                    let mut b = BlockBuilder::new(&state, &params, &ctx);
                    let (kind, input) = if n == 1 {
                        (TxKind::Create, init.clone())
                    } else {
                        (TxKind::Call(contract), Bytes::new())
                    };
                    b.push(crate::exec::tests::sign_1559(
                        &signer,
                        n - 1,
                        kind,
                        U256::from(n),
                        input,
                    ))
                    .expect("tx");
                    b.finish()
                };
                state.apply(&executed.diff);
                let root = state.state_root();
                let block = assemble(parent.hash, &ctx, &executed, root);
                store.commit_block(&block, &executed.diff, root, None).expect("commit");
                state.push_block_hash(n, block.hash);
                parent = block;
            }
            assert_eq!(
                state.account(&contract).map(|a| a.storage(U256::from(3))),
                Some(U256::from(3))
            );
            (parent.hash, state.state_root(), contract)
        };
        let store = Store::open(&dir).expect("reopen");
        assert_eq!(store.head().expect("head"), Some(5));
        let head = store.block(5).expect("read").expect("block 5");
        assert_eq!(head.hash, head_hash);
        assert_eq!(head.txs.len(), 1);
        assert_eq!(head.receipts.len(), 1);
        assert_eq!(store.number_of(&head_hash).expect("idx"), Some(5));
        assert_eq!(
            store.tx_location(&head.txs[0].hash).expect("tx"),
            Some(TxLocation { block: 5, index: 0 })
        );
        let mut state = store.load_state().expect("state");
        assert_eq!(state.state_root(), root);
        assert_eq!(store.state_root().expect("root"), Some(root));
        assert_eq!(
            state.account(&contract).map(|a| a.storage(U256::from(5))),
            Some(U256::from(5))
        );
        assert_eq!(state.block_hash(5), Some(head_hash));
        assert!(store.sealed().expect("sealed").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
