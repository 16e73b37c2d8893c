//! The sequencer's transaction pool: bounded, per-sender nonce order, first-come first-served
//! across senders, and a minimal replacement rule (same nonce needs a 10% higher fee).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use alloy::consensus::Transaction as _;
use alloy::primitives::{Address, B256, U256};

use crate::exec::{BASE_FEE, SignedTx};

/// Default number of transactions the pool holds.
pub const DEFAULT_CAPACITY: usize = 20_000;
/// How far ahead of the account nonce a transaction may be queued.
pub const MAX_NONCE_GAP: u64 = 1_000;
/// Transactions cheaper than a plain transfer can never execute.
const MIN_GAS: u64 = 21_000;

/// Why the pool refused a transaction. Messages follow geth's, which wallets recognise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The same transaction is already pooled.
    #[error("already known")]
    AlreadyKnown,
    /// Its nonce was already used.
    #[error("nonce too low: next nonce {expected}, tx nonce {got}")]
    NonceTooLow {
        /// The account's nonce.
        expected: u64,
        /// The transaction's.
        got: u64,
    },
    /// Its nonce is too far ahead of the account's.
    #[error("nonce too high: next nonce {expected}, tx nonce {got}")]
    NonceTooHigh {
        /// The account's nonce.
        expected: u64,
        /// The transaction's.
        got: u64,
    },
    /// A transaction with that nonce is pooled and this one does not pay enough more.
    #[error("replacement transaction underpriced")]
    ReplacementUnderpriced,
    /// Its fee cap is below the base fee.
    #[error("max fee per gas less than block base fee: maxFeePerGas: {max_fee}, baseFee: {base_fee}")]
    FeeTooLow {
        /// The transaction's fee cap.
        max_fee: u128,
        /// The base fee.
        base_fee: u64,
    },
    /// The sender cannot pay `gas * price + value`.
    #[error("insufficient funds for gas * price + value: balance {balance}, tx cost {cost}")]
    InsufficientFunds {
        /// Sender balance.
        balance: U256,
        /// Maximum cost.
        cost: U256,
    },
    /// More gas than a block holds.
    #[error("exceeds block gas limit")]
    GasLimitTooHigh,
    /// Less gas than any transaction needs.
    #[error("intrinsic gas too low")]
    IntrinsicGas,
    /// The pool is full.
    #[error("txpool is full")]
    Full,
}

#[derive(Debug, Clone)]
struct Pooled {
    tx: SignedTx,
    seq: u64,
}

/// The pool.
#[derive(Debug)]
pub struct Pool {
    by_sender: HashMap<Address, BTreeMap<u64, Pooled>>,
    by_hash: HashMap<B256, (Address, u64)>,
    next_seq: u64,
    capacity: usize,
}

impl Pool {
    /// An empty pool holding at most `capacity` transactions.
    pub fn new(capacity: usize) -> Self {
        Self {
            by_sender: HashMap::new(),
            by_hash: HashMap::new(),
            next_seq: 0,
            capacity: capacity.max(1),
        }
    }

    /// Number of pooled transactions.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// True when nothing is pooled.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// A pooled transaction by hash.
    pub fn get(&self, hash: &B256) -> Option<&SignedTx> {
        let (sender, nonce) = self.by_hash.get(hash)?;
        self.by_sender.get(sender)?.get(nonce).map(|p| &p.tx)
    }

    /// Admits a transaction, given the sender's current nonce and balance.
    pub fn add(&mut self, tx: SignedTx, account_nonce: u64, balance: U256, gas_limit: u64) -> Result<(), PoolError> {
        if self.by_hash.contains_key(&tx.hash) {
            return Err(PoolError::AlreadyKnown);
        }
        let nonce = tx.nonce();
        if nonce < account_nonce {
            return Err(PoolError::NonceTooLow {
                expected: account_nonce,
                got: nonce,
            });
        }
        if nonce > account_nonce.saturating_add(MAX_NONCE_GAP) {
            return Err(PoolError::NonceTooHigh {
                expected: account_nonce,
                got: nonce,
            });
        }
        if tx.gas_limit() > gas_limit {
            return Err(PoolError::GasLimitTooHigh);
        }
        if tx.gas_limit() < MIN_GAS {
            return Err(PoolError::IntrinsicGas);
        }
        if tx.max_fee() < u128::from(BASE_FEE) {
            return Err(PoolError::FeeTooLow {
                max_fee: tx.max_fee(),
                base_fee: BASE_FEE,
            });
        }
        let cost = tx.max_cost();
        if cost > balance {
            return Err(PoolError::InsufficientFunds { balance, cost });
        }
        let sender = tx.sender;
        let existing = self.by_sender.get(&sender).and_then(|q| q.get(&nonce));
        if let Some(old) = existing {
            let bumped = |old: u128| old.saturating_add(old / 10);
            let old_tip = old.tx.envelope.max_priority_fee_per_gas().unwrap_or(old.tx.max_fee());
            let new_tip = tx.envelope.max_priority_fee_per_gas().unwrap_or(tx.max_fee());
            if tx.max_fee() < bumped(old.tx.max_fee()) || new_tip < bumped(old_tip) {
                return Err(PoolError::ReplacementUnderpriced);
            }
            let old_hash = old.tx.hash;
            self.by_hash.remove(&old_hash);
        } else if self.by_hash.len() >= self.capacity {
            return Err(PoolError::Full);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_hash.insert(tx.hash, (sender, nonce));
        self.by_sender
            .entry(sender)
            .or_default()
            .insert(nonce, Pooled { tx, seq });
        Ok(())
    }

    /// The nonce the sender's next transaction should use (`eth_getTransactionCount` `pending`).
    pub fn pending_nonce(&self, sender: &Address, account_nonce: u64) -> u64 {
        let mut next = account_nonce;
        if let Some(queue) = self.by_sender.get(sender) {
            while queue.contains_key(&next) {
                next += 1;
            }
        }
        next
    }

    /// Executable transactions in inclusion order: each sender's run of consecutive nonces from
    /// its account nonce, senders interleaved by arrival. Stops after `max` transactions.
    pub fn candidates(&self, nonce_of: impl Fn(&Address) -> u64, max: usize) -> Vec<SignedTx> {
        let mut heap = BinaryHeap::new();
        for (sender, queue) in &self.by_sender {
            let nonce = nonce_of(sender);
            if let Some(p) = queue.get(&nonce) {
                heap.push(Reverse((p.seq, *sender, nonce)));
            }
        }
        let mut out = Vec::new();
        while let Some(Reverse((_, sender, nonce))) = heap.pop() {
            let Some(queue) = self.by_sender.get(&sender) else {
                continue;
            };
            let Some(p) = queue.get(&nonce) else { continue };
            out.push(p.tx.clone());
            if out.len() >= max {
                break;
            }
            if let Some(next) = queue.get(&(nonce + 1)) {
                heap.push(Reverse((next.seq, sender, nonce + 1)));
            }
        }
        out
    }

    /// Drops what a new block made stale: transactions whose nonce is now used, and `invalid` ones.
    pub fn prune(&mut self, senders: impl IntoIterator<Item = (Address, u64)>, invalid: &HashSet<B256>) {
        for (sender, account_nonce) in senders {
            let Some(queue) = self.by_sender.get_mut(&sender) else {
                continue;
            };
            let stale: Vec<u64> = queue.range(..account_nonce).map(|(n, _)| *n).collect();
            for n in stale {
                if let Some(p) = queue.remove(&n) {
                    self.by_hash.remove(&p.tx.hash);
                }
            }
            if queue.is_empty() {
                self.by_sender.remove(&sender);
            }
        }
        for hash in invalid {
            if let Some((sender, nonce)) = self.by_hash.remove(hash)
                && let Some(queue) = self.by_sender.get_mut(&sender)
            {
                queue.remove(&nonce);
                if queue.is_empty() {
                    self.by_sender.remove(&sender);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::tests::{dev_signer, sign_1559};
    use alloy::primitives::{Bytes, TxKind};
    use alloy::signers::local::PrivateKeySigner;

    fn tx(signer: &PrivateKeySigner, nonce: u64) -> SignedTx {
        sign_1559(signer, nonce, TxKind::Call(Address::ZERO), U256::from(1), Bytes::new())
    }

    const RICH: U256 = U256::from_limbs([0, 0, 1, 0]);

    #[test]
    fn nonce_order_and_interleaving() {
        let a = dev_signer();
        let b = PrivateKeySigner::random();
        let mut pool = Pool::new(10);
        pool.add(tx(&a, 1), 0, RICH, 30_000_000).expect("a1 queued");
        pool.add(tx(&b, 0), 0, RICH, 30_000_000).expect("b0");
        pool.add(tx(&a, 0), 0, RICH, 30_000_000).expect("a0");
        assert_eq!(pool.pending_nonce(&a.address(), 0), 2);
        let order: Vec<(Address, u64)> = pool
            .candidates(|_| 0, 100)
            .iter()
            .map(|t| (t.sender, t.nonce()))
            .collect();
        assert_eq!(order, vec![(b.address(), 0), (a.address(), 0), (a.address(), 1)]);
        assert_eq!(pool.add(tx(&a, 0), 0, RICH, 30_000_000), Err(PoolError::AlreadyKnown));
        pool.prune([(a.address(), 1)], &HashSet::new());
        assert_eq!(pool.len(), 2);
        assert!(matches!(
            pool.add(tx(&a, 0), 1, RICH, 30_000_000),
            Err(PoolError::NonceTooLow { expected: 1, got: 0 })
        ));
    }

    #[test]
    fn limits_and_funds() {
        let a = dev_signer();
        let mut pool = Pool::new(1);
        assert!(matches!(
            pool.add(tx(&a, 0), 0, U256::from(1), 30_000_000),
            Err(PoolError::InsufficientFunds { .. })
        ));
        assert_eq!(pool.add(tx(&a, 0), 0, RICH, 100_000), Err(PoolError::GasLimitTooHigh));
        pool.add(tx(&a, 0), 0, RICH, 30_000_000).expect("first");
        assert_eq!(pool.add(tx(&a, 1), 0, RICH, 30_000_000), Err(PoolError::Full));
        // same nonce, same fee: not a replacement
        let same = sign_1559(&a, 0, TxKind::Call(Address::ZERO), U256::from(2), Bytes::new());
        assert_eq!(
            pool.add(same, 0, RICH, 30_000_000),
            Err(PoolError::ReplacementUnderpriced)
        );
        assert!(matches!(
            pool.add(tx(&a, 5_000), 0, RICH, 30_000_000),
            Err(PoolError::NonceTooHigh { .. })
        ));
    }
}
