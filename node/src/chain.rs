//! A node's chain: the store on disk plus the in-memory state and head, shared by the JSON-RPC
//! readers and the one writer (the sequencer's block loop or the verifier's follower).

use std::path::Path;
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use alloy::consensus::Header;
use alloy::primitives::B256;
use tokio::sync::watch;

use crate::block::{Block, genesis_header};
use crate::config::ChainConfig;
use crate::exec::ChainParams;
use crate::state::{State, StateDiff, full_diff};
use crate::store::{FinalBlock, Store, StoreError};

/// Why a chain could not be opened or extended.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The data directory holds another chain.
    #[error("data directory holds another chain: genesis {stored} on disk, {expected} from the config")]
    GenesisMismatch {
        /// Genesis hash on disk.
        stored: B256,
        /// Genesis hash of the configured chain.
        expected: B256,
    },
    /// The state rebuilt from disk does not have the root recorded with it.
    #[error("stored state has root {computed}, expected {recorded}")]
    StateMismatch {
        /// Root of the loaded state.
        computed: B256,
        /// Root recorded with the head.
        recorded: B256,
    },
    /// The block does not extend the head.
    #[error("block {number} does not extend the head {head}")]
    NotNext {
        /// Block number offered.
        number: u64,
        /// Current head.
        head: u64,
    },
    /// A previous write failed half-way; the in-memory state can no longer be trusted.
    #[error("chain state is poisoned by an earlier failure; restart the node")]
    Poisoned,
}

/// The head block.
#[derive(Clone, Debug)]
pub struct Head {
    /// Header of the head block.
    pub header: Header,
    /// Its hash.
    pub hash: B256,
}

#[derive(Debug)]
struct Inner {
    state: State,
    head: Head,
    poisoned: bool,
}

/// The chain of one node.
#[derive(Debug)]
pub struct Chain {
    /// The configuration it was opened with.
    pub config: ChainConfig,
    /// Execution parameters.
    pub params: ChainParams,
    /// The store.
    pub store: Store,
    genesis_hash: B256,
    inner: RwLock<Inner>,
    head_tx: watch::Sender<u64>,
}

/// Read access to the state and the head it belongs to.
#[derive(Debug)]
pub struct ReadView<'a> {
    guard: RwLockReadGuard<'a, Inner>,
}

impl ReadView<'_> {
    /// The state after the head block.
    pub fn state(&self) -> &State {
        &self.guard.state
    }

    /// The head block.
    pub fn head(&self) -> &Head {
        &self.guard.head
    }
}

impl Chain {
    /// Opens the chain in `data_dir`, writing genesis if the directory is new.
    pub fn open(config: ChainConfig, data_dir: &Path) -> Result<Self, ChainError> {
        let store = Store::open(data_dir)?;
        let mut genesis_state = State::from_genesis(&config.alloc);
        let genesis_root = genesis_state.state_root();
        let genesis = Block::new(genesis_header(&config, genesis_root), vec![], vec![]);

        let (state, head) = match store.head()? {
            None => {
                store.commit_block(&genesis, &full_diff(&genesis_state), genesis_root, None)?;
                genesis_state.push_block_hash(0, genesis.hash);
                let head = Head {
                    header: genesis.header.clone(),
                    hash: genesis.hash,
                };
                (genesis_state, head)
            }
            Some(number) => {
                let stored = store
                    .header(0)?
                    .ok_or_else(|| StoreError::Corrupt("missing genesis".into()))?
                    .hash_slow();
                if stored != genesis.hash {
                    return Err(ChainError::GenesisMismatch {
                        stored,
                        expected: genesis.hash,
                    });
                }
                let header = store
                    .header(number)?
                    .ok_or_else(|| StoreError::Corrupt("missing head header".into()))?;
                let mut state = store.load_state()?;
                let computed = state.state_root();
                let recorded = store.state_root()?.unwrap_or(header.state_root);
                if computed != recorded {
                    return Err(ChainError::StateMismatch { computed, recorded });
                }
                let hash = header.hash_slow();
                (state, Head { header, hash })
            }
        };
        let (head_tx, _) = watch::channel(head.header.number);
        Ok(Self {
            params: ChainParams::from(&config),
            config,
            store,
            genesis_hash: genesis.hash,
            inner: RwLock::new(Inner {
                state,
                head,
                poisoned: false,
            }),
            head_tx,
        })
    }

    /// Hash of block 0.
    pub fn genesis_hash(&self) -> B256 {
        self.genesis_hash
    }

    /// A read view of the state and head. Holding it delays the next block: keep it short.
    pub fn read(&self) -> ReadView<'_> {
        ReadView {
            guard: self.inner.read().unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// The head block.
    pub fn head(&self) -> Head {
        self.read().head().clone()
    }

    /// Follows the head number.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.head_tx.subscribe()
    }

    /// Applies a block's diff, lets `make_block` build the block from the resulting state root,
    /// and persists both. If `make_block` refuses (a verifier's mismatch) or the store fails, the
    /// in-memory state has moved past the head and the chain is poisoned: the caller must stop
    /// extending it (a restart reloads the state from disk).
    pub fn append<E>(
        &self,
        diff: &StateDiff,
        make_block: impl FnOnce(B256) -> Result<(Block, Option<FinalBlock>), E>,
    ) -> Result<Result<Block, E>, ChainError> {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if inner.poisoned {
            return Err(ChainError::Poisoned);
        }
        inner.state.apply(diff);
        let root = inner.state.state_root();
        let (block, seal) = match make_block(root) {
            Ok(b) => b,
            Err(e) => {
                inner.poisoned = true;
                return Ok(Err(e));
            }
        };
        let head = inner.head.header.number;
        if block.number() != head + 1 || block.header.parent_hash != inner.head.hash {
            inner.poisoned = true;
            return Err(ChainError::NotNext {
                number: block.number(),
                head,
            });
        }
        if let Err(e) = self.store.commit_block(&block, diff, root, seal.as_ref()) {
            inner.poisoned = true;
            return Err(e.into());
        }
        inner.state.push_block_hash(block.number(), block.hash);
        inner.head = Head {
            header: block.header.clone(),
            hash: block.hash,
        };
        drop(inner);
        self.head_tx.send_replace(block.number());
        Ok(Ok(block))
    }
}
