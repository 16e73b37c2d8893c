//! In-memory world state (accounts, storage, code, recent block hashes) with the Ethereum state
//! root, and the per-block overlay revm executes against, whose contents are the block's state diff.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy_rlp::Encodable;
use alloy_trie::{EMPTY_ROOT_HASH, HashBuilder, KECCAK_EMPTY, Nibbles, TrieAccount};
use revm::bytecode::Bytecode;
use revm::primitives::AddressMap;
use revm::state::{Account, AccountInfo};
use revm::{Database, DatabaseCommit};

use crate::config::GenesisAccount;

/// How many past block hashes BLOCKHASH can see.
pub const BLOCK_HASH_WINDOW: u64 = 256;

/// One account. Storage is keyed by `keccak256(slot)` so the trie walk needs no sorting.
#[derive(Clone, Debug, Default)]
pub struct AccountState {
    /// Account nonce.
    pub nonce: u64,
    /// Balance in wei.
    pub balance: U256,
    /// Hash of the runtime code (`KECCAK_EMPTY` for none).
    pub code_hash: B256,
    /// `keccak256(slot) -> (slot, value)`, zero values absent.
    storage: BTreeMap<B256, (U256, U256)>,
    /// Storage root, cached until the storage changes.
    storage_root: Option<B256>,
}

impl AccountState {
    fn new(nonce: u64, balance: U256, code_hash: B256) -> Self {
        Self {
            nonce,
            balance,
            code_hash,
            storage: BTreeMap::new(),
            storage_root: Some(EMPTY_ROOT_HASH),
        }
    }

    /// Value of a storage slot (zero when unset).
    pub fn storage(&self, slot: U256) -> U256 {
        self.storage
            .get(&keccak256(slot.to_be_bytes::<32>()))
            .map_or(U256::ZERO, |(_, v)| *v)
    }

    fn set_storage(&mut self, slot: U256, value: U256) {
        let key = keccak256(slot.to_be_bytes::<32>());
        if value.is_zero() {
            self.storage.remove(&key);
        } else {
            self.storage.insert(key, (slot, value));
        }
        self.storage_root = None;
    }

    /// All non-zero slots, in no particular order.
    pub fn storage_slots(&self) -> impl Iterator<Item = (U256, U256)> + '_ {
        self.storage.values().copied()
    }

    fn storage_root(&mut self) -> B256 {
        if let Some(root) = self.storage_root {
            return root;
        }
        let mut hb = HashBuilder::default();
        let mut buf = Vec::with_capacity(33);
        for (hashed, (_, value)) in &self.storage {
            buf.clear();
            value.encode(&mut buf);
            hb.add_leaf(Nibbles::unpack(hashed), &buf);
        }
        let root = hb.root();
        self.storage_root = Some(root);
        root
    }

    fn is_empty(&self) -> bool {
        self.nonce == 0 && self.balance.is_zero() && self.code_hash == KECCAK_EMPTY
    }
}

/// The world state after some block.
#[derive(Debug, Default)]
pub struct State {
    accounts: HashMap<Address, AccountState>,
    /// `keccak256(address) -> address`: the account trie's key order.
    order: BTreeMap<B256, Address>,
    code: HashMap<B256, Bytecode>,
    block_hashes: BTreeMap<u64, B256>,
}

impl State {
    /// The state of a genesis allocation.
    pub fn from_genesis(alloc: &BTreeMap<Address, GenesisAccount>) -> Self {
        let mut state = Self::default();
        for (address, acct) in alloc {
            let code_hash = if acct.code.is_empty() {
                KECCAK_EMPTY
            } else {
                let bytecode = Bytecode::new_raw(acct.code.clone());
                let hash = bytecode.hash_slow();
                state.code.insert(hash, bytecode);
                hash
            };
            let mut account = AccountState::new(acct.nonce, acct.balance, code_hash);
            for (slot, value) in &acct.storage {
                account.set_storage(*slot, *value);
            }
            state.insert_account(*address, account);
        }
        state
    }

    fn insert_account(&mut self, address: Address, account: AccountState) {
        self.order.insert(keccak256(address), address);
        self.accounts.insert(address, account);
    }

    fn remove_account(&mut self, address: &Address) {
        if self.accounts.remove(address).is_some() {
            self.order.remove(&keccak256(address));
        }
    }

    /// The account at `address`, if it exists.
    pub fn account(&self, address: &Address) -> Option<&AccountState> {
        self.accounts.get(address)
    }

    /// Every account, in no particular order.
    pub fn accounts(&self) -> impl Iterator<Item = (&Address, &AccountState)> {
        self.accounts.iter()
    }

    /// Code by hash (empty bytecode when unknown).
    pub fn code(&self, hash: &B256) -> Option<&Bytecode> {
        self.code.get(hash)
    }

    /// Every stored contract code.
    pub fn codes(&self) -> impl Iterator<Item = (&B256, &Bytecode)> {
        self.code.iter()
    }

    /// Runtime code at `address` (empty for none).
    pub fn code_at(&self, address: &Address) -> alloy::primitives::Bytes {
        self.accounts
            .get(address)
            .and_then(|a| self.code.get(&a.code_hash))
            .map(|c| c.original_bytes())
            .unwrap_or_default()
    }

    /// Remembers a block's hash for BLOCKHASH, forgetting those out of the window.
    pub fn push_block_hash(&mut self, number: u64, hash: B256) {
        self.block_hashes.insert(number, hash);
        while let Some((&oldest, _)) = self.block_hashes.first_key_value() {
            if oldest + BLOCK_HASH_WINDOW <= number {
                self.block_hashes.remove(&oldest);
            } else {
                break;
            }
        }
    }

    /// Hash of a recent block, as BLOCKHASH sees it.
    pub fn block_hash(&self, number: u64) -> Option<B256> {
        self.block_hashes.get(&number).copied()
    }

    /// The Ethereum state root: the account trie keyed by `keccak256(address)`.
    pub fn state_root(&mut self) -> B256 {
        let mut hb = HashBuilder::default();
        let mut buf = Vec::with_capacity(110);
        for (hashed, address) in &self.order {
            let Some(account) = self.accounts.get_mut(address) else {
                continue;
            };
            let trie_account = TrieAccount {
                nonce: account.nonce,
                balance: account.balance,
                storage_root: account.storage_root(),
                code_hash: account.code_hash,
            };
            buf.clear();
            trie_account.encode(&mut buf);
            hb.add_leaf(Nibbles::unpack(hashed), &buf);
        }
        hb.root()
    }

    /// Applies a block's diff.
    pub fn apply(&mut self, diff: &StateDiff) {
        for (hash, code) in &diff.code {
            self.code.insert(*hash, code.clone());
        }
        for (address, change) in &diff.accounts {
            let Some(info) = change.info else {
                self.remove_account(address);
                continue;
            };
            if !self.accounts.contains_key(address) {
                self.insert_account(*address, AccountState::new(info.nonce, info.balance, info.code_hash));
            }
            let Some(account) = self.accounts.get_mut(address) else {
                continue;
            };
            account.nonce = info.nonce;
            account.balance = info.balance;
            account.code_hash = info.code_hash;
            if change.storage_cleared && !account.storage.is_empty() {
                account.storage.clear();
                account.storage_root = None;
            }
            for (slot, value) in &change.storage {
                account.set_storage(*slot, *value);
            }
        }
    }

    /// Loads one account as the store holds it (used when reopening a data directory).
    pub fn load_account(&mut self, address: Address, info: AccountBasics, storage: Vec<(U256, U256)>) {
        let mut account = AccountState::new(info.nonce, info.balance, info.code_hash);
        for (slot, value) in storage {
            account.set_storage(slot, value);
        }
        self.insert_account(address, account);
    }

    /// Loads one contract code as the store holds it.
    pub fn load_code(&mut self, code: Bytecode) {
        self.code.insert(code.hash_slow(), code);
    }

    /// A fresh overlay for executing on top of this state.
    pub fn overlay(&self) -> Overlay<'_> {
        Overlay {
            base: self,
            diff: StateDiff::default(),
        }
    }
}

/// Nonce, balance and code hash of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountBasics {
    /// Account nonce.
    pub nonce: u64,
    /// Balance in wei.
    pub balance: U256,
    /// Hash of the runtime code.
    pub code_hash: B256,
}

/// How one account changed in a block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountChange {
    /// New nonce, balance and code hash; `None` when the account was deleted
    /// (self-destructed, or touched while empty: EIP-161).
    pub info: Option<AccountBasics>,
    /// The old storage is gone (deleted, or created anew) before `storage` applies.
    pub storage_cleared: bool,
    /// Slots written (zero = deleted).
    pub storage: HashMap<U256, U256>,
}

/// Everything a block changed: what `State::apply` and the store take.
#[derive(Clone, Debug, Default)]
pub struct StateDiff {
    /// Changed accounts.
    pub accounts: HashMap<Address, AccountChange>,
    /// Code deployed in the block.
    pub code: HashMap<B256, Bytecode>,
}

/// The state a block executes against: the committed state plus the block's own changes so far.
#[derive(Debug)]
pub struct Overlay<'a> {
    base: &'a State,
    diff: StateDiff,
}

impl Overlay<'_> {
    /// The changes committed to this overlay.
    pub fn into_diff(self) -> StateDiff {
        self.diff
    }

    fn basics(&self, address: &Address) -> Option<AccountBasics> {
        match self.diff.accounts.get(address) {
            Some(change) => change.info,
            None => self.base.accounts.get(address).map(|a| AccountBasics {
                nonce: a.nonce,
                balance: a.balance,
                code_hash: a.code_hash,
            }),
        }
    }

    fn bytecode(&self, hash: &B256) -> Option<&Bytecode> {
        self.diff.code.get(hash).or_else(|| self.base.code.get(hash))
    }

    fn commit_account(&mut self, address: Address, account: Account) {
        if !account.is_touched() {
            return;
        }
        // Spurious Dragon on (EIP-161): a touched account left empty is removed, like a destroyed one.
        if account.is_selfdestructed() || account.is_empty() {
            let existed = self.basics(&address).is_some();
            if existed || self.diff.accounts.contains_key(&address) {
                self.diff.accounts.insert(
                    address,
                    AccountChange {
                        info: None,
                        storage_cleared: true,
                        storage: HashMap::new(),
                    },
                );
            }
            return;
        }
        let info = account.info;
        if let Some(code) = &info.code
            && info.code_hash != KECCAK_EMPTY
            && !self.diff.code.contains_key(&info.code_hash)
            && !self.base.code.contains_key(&info.code_hash)
        {
            self.diff.code.insert(info.code_hash, code.clone());
        }
        let created = account.status.contains(revm::state::AccountStatus::Created);
        let deleted_earlier = self.diff.accounts.get(&address).is_some_and(|c| c.info.is_none());
        let change = self.diff.accounts.entry(address).or_default();
        if deleted_earlier || created {
            // Deleted earlier in this block, or created now: nothing of the old storage survives.
            change.storage_cleared = true;
            change.storage.clear();
        }
        change.info = Some(AccountBasics {
            nonce: info.nonce,
            balance: info.balance,
            code_hash: info.code_hash,
        });
        for (slot, value) in account.storage {
            if value.is_changed() || created {
                change.storage.insert(slot, value.present_value);
            }
        }
    }
}

impl Database for Overlay<'_> {
    type Error = Infallible;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, Infallible> {
        Ok(self.basics(&address).map(|b| AccountInfo {
            balance: b.balance,
            nonce: b.nonce,
            code_hash: b.code_hash,
            account_id: None,
            code: self.bytecode(&b.code_hash).cloned(),
        }))
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, Infallible> {
        Ok(self.bytecode(&code_hash).cloned().unwrap_or_default())
    }

    fn storage(&mut self, address: Address, index: U256) -> Result<U256, Infallible> {
        if let Some(change) = self.diff.accounts.get(&address) {
            if let Some(value) = change.storage.get(&index) {
                return Ok(*value);
            }
            if change.storage_cleared || change.info.is_none() {
                return Ok(U256::ZERO);
            }
        }
        Ok(self
            .base
            .accounts
            .get(&address)
            .map_or(U256::ZERO, |a| a.storage(index)))
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, Infallible> {
        Ok(self.base.block_hash(number).unwrap_or_default())
    }
}

impl DatabaseCommit for Overlay<'_> {
    fn commit(&mut self, changes: AddressMap<Account>) {
        for (address, account) in changes {
            self.commit_account(address, account);
        }
    }
}

/// The diff that creates `state` from nothing (how genesis is written to the store).
pub fn full_diff(state: &State) -> StateDiff {
    let accounts = state
        .accounts
        .iter()
        .map(|(address, a)| {
            let change = AccountChange {
                info: Some(AccountBasics {
                    nonce: a.nonce,
                    balance: a.balance,
                    code_hash: a.code_hash,
                }),
                storage_cleared: true,
                storage: a.storage_slots().collect(),
            };
            (*address, change)
        })
        .collect();
    StateDiff {
        accounts,
        code: state.code.clone(),
    }
}

impl StateDiff {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty() && self.code.is_empty()
    }
}

impl State {
    /// Number of accounts (for metrics and tests).
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// True when no account exists.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// Whether the account exists and is non-empty (EIP-161 sense).
    pub fn exists(&self, address: &Address) -> bool {
        self.accounts.get(address).is_some_and(|a| !a.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{address, b256};

    #[test]
    fn empty_state_has_the_empty_trie_root() {
        let mut s = State::default();
        assert_eq!(
            s.state_root(),
            b256!("56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421")
        );
    }

    #[test]
    fn diff_applies_and_deletes() {
        let a = address!("00000000000000000000000000000000000000aa");
        let mut s = State::default();
        let mut diff = StateDiff::default();
        diff.accounts.insert(
            a,
            AccountChange {
                info: Some(AccountBasics {
                    nonce: 1,
                    balance: U256::from(5),
                    code_hash: KECCAK_EMPTY,
                }),
                storage_cleared: false,
                storage: HashMap::from([(U256::from(1), U256::from(7))]),
            },
        );
        s.apply(&diff);
        assert_eq!(s.account(&a).map(|x| x.storage(U256::from(1))), Some(U256::from(7)));
        let root = s.state_root();
        assert_ne!(root, EMPTY_ROOT_HASH);

        let mut overlay = s.overlay();
        assert_eq!(overlay.storage(a, U256::from(1)), Ok(U256::from(7)));
        let mut del = StateDiff::default();
        del.accounts.insert(a, AccountChange::default());
        s.apply(&del);
        assert!(s.account(&a).is_none());
        assert_eq!(s.state_root(), EMPTY_ROOT_HASH);
    }

    #[test]
    fn block_hash_window() {
        let mut s = State::default();
        for n in 0..300 {
            s.push_block_hash(n, B256::with_last_byte(n as u8));
        }
        assert!(s.block_hash(43).is_none());
        assert!(s.block_hash(44).is_some());
        assert!(s.block_hash(299).is_some());
    }
}
