//! The sequencer: admits transactions to the pool, produces a block every `blockTimeMs`, and seals
//! the chain (final block, persisted, idempotent) when the operator asks.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, B256, keccak256};
use tokio::sync::{mpsc, oneshot};

use crate::block::{Block, assemble, next_context};
use crate::chain::{Chain, ChainError};
use crate::exec::{BlockBuilder, SignedTx, TxError};
use crate::finality::Finality;
use crate::metrics::Metrics;
use crate::pool::{Pool, PoolError};
use crate::store::{FinalBlock, StoreError};

/// Candidates considered for one block.
const MAX_CANDIDATES: usize = 10_000;
/// Blocks the seal may produce to drain the pool before giving up on the rest.
const MAX_SEAL_BLOCKS: usize = 64;

/// Sequencer settings from the command line.
#[derive(Clone, Copy, Debug, Default)]
pub struct SequencerOptions {
    /// Produce no block when the pool is empty.
    pub skip_empty_blocks: bool,
    /// Test fault: block N's header carries a wrong state root (the state itself stays right).
    pub fault_corrupt_state_root_at: Option<u64>,
    /// Pool capacity.
    pub pool_capacity: usize,
}

/// Why producing or sealing failed.
#[derive(Debug, thiserror::Error)]
pub enum SequencerError {
    /// The chain refused the block.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The block loop is gone.
    #[error("sequencer is shutting down")]
    Stopped,
    /// The pool could not be drained into final blocks.
    #[error("pool could not be drained within {0} blocks")]
    SealIncomplete(usize),
}

/// Why `eth_sendRawTransaction` refused a transaction.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Not decodable or not acceptable on its own.
    #[error(transparent)]
    Tx(#[from] TxError),
    /// The pool refused it.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The chain is sealed (or being sealed).
    #[error("rollup is sealed: no more transactions are accepted")]
    Sealed,
}

type SealReply = oneshot::Sender<Result<FinalBlock, String>>;

/// The sequencer role.
#[derive(Debug)]
pub struct Sequencer {
    /// The chain.
    pub chain: Arc<Chain>,
    /// MACH state.
    pub finality: Finality,
    /// Metrics.
    pub metrics: Metrics,
    pool: Mutex<Pool>,
    accepting: AtomicBool,
    opts: SequencerOptions,
    seal_tx: mpsc::Sender<SealReply>,
    seal_rx: Mutex<Option<mpsc::Receiver<SealReply>>>,
}

struct Produced {
    block: Block,
    drained: bool,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The wrong root the fault switch puts in a header: unmistakably not the real one.
fn corrupted(root: B256) -> B256 {
    keccak256(root)
}

impl Sequencer {
    /// A sequencer on `chain`.
    pub fn new(chain: Arc<Chain>, metrics: Metrics, opts: SequencerOptions) -> Result<Arc<Self>, SequencerError> {
        let sealed = chain.store.sealed()?.is_some();
        let (seal_tx, seal_rx) = mpsc::channel(16);
        metrics.head.set(chain.head().header.number as i64);
        Ok(Arc::new(Self {
            finality: Finality::new(chain.clone(), metrics.clone()),
            chain,
            metrics,
            pool: Mutex::new(Pool::new(opts.pool_capacity)),
            accepting: AtomicBool::new(!sealed),
            opts,
            seal_tx,
            seal_rx: Mutex::new(Some(seal_rx)),
        }))
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether transactions are still accepted.
    pub fn accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    /// Validates and pools a raw transaction; returns its hash.
    pub fn submit_raw(&self, raw: &[u8]) -> Result<B256, SubmitError> {
        let tx = SignedTx::decode(raw, self.chain.config.chain_id)?;
        let (nonce, balance) = {
            let view = self.chain.read();
            view.state()
                .account(&tx.sender)
                .map_or((0, Default::default()), |a| (a.nonce, a.balance))
        };
        let hash = tx.hash;
        let mut pool = self.pool();
        // Checked under the pool lock, which the seal also takes: a transaction admitted before
        // the seal is in the pool the final block is built from.
        if !self.accepting() {
            return Err(SubmitError::Sealed);
        }
        pool.add(tx, nonce, balance, self.chain.config.gas_limit)?;
        self.metrics.pool_size.set(pool.len() as i64);
        Ok(hash)
    }

    /// A pooled (not yet included) transaction.
    pub fn pooled(&self, hash: &B256) -> Option<SignedTx> {
        self.pool().get(hash).cloned()
    }

    /// The next nonce of `sender` counting pooled transactions.
    pub fn pending_nonce(&self, sender: &Address) -> u64 {
        let nonce = self.chain.read().state().account(sender).map_or(0, |a| a.nonce);
        self.pool().pending_nonce(sender, nonce)
    }

    /// Seals the chain: idempotent, also across restarts.
    pub async fn seal(&self) -> Result<FinalBlock, String> {
        if let Some(f) = self.chain.store.sealed().map_err(|e| e.to_string())? {
            return Ok(f);
        }
        {
            let _pool = self.pool();
            self.accepting.store(false, Ordering::Release);
        }
        let (tx, rx) = oneshot::channel();
        self.seal_tx
            .send(tx)
            .await
            .map_err(|_| SequencerError::Stopped.to_string())?;
        rx.await.map_err(|_| SequencerError::Stopped.to_string())?
    }

    /// The block loop: a block every block time, seal requests in between. Returns on shutdown.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let Some(mut seal_rx) = self.seal_rx.lock().unwrap_or_else(PoisonError::into_inner).take() else {
            tracing::error!("sequencer loop started twice");
            return;
        };
        let mut tick = tokio::time::interval(Duration::from_millis(self.chain.config.block_time_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(reply) = seal_rx.recv() => {
                    let me = self.clone();
                    let result = tokio::task::spawn_blocking(move || me.seal_blocking())
                        .await
                        .unwrap_or_else(|e| Err(format!("seal task failed: {e}")));
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "sealing failed");
                    }
                    let _ = reply.send(result);
                }
                _ = tick.tick() => {
                    if !self.accepting() {
                        continue;
                    }
                    if self.opts.skip_empty_blocks && self.pool().is_empty() {
                        continue;
                    }
                    let me = self.clone();
                    match tokio::task::spawn_blocking(move || me.produce(false)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            // The in-memory state may be ahead of disk: stop producing; the pod
                            // restarts from the last persisted block.
                            tracing::error!(error = %e, "block production failed; stopping");
                            std::process::exit(1);
                        }
                        Err(e) => tracing::error!(error = %e, "block task failed"),
                    }
                }
            }
        }
    }

    fn seal_blocking(&self) -> Result<FinalBlock, String> {
        if let Some(f) = self.chain.store.sealed().map_err(|e| e.to_string())? {
            return Ok(f);
        }
        for _ in 0..MAX_SEAL_BLOCKS {
            let produced = self.produce(true).map_err(|e| e.to_string())?;
            if produced.drained {
                let f = FinalBlock {
                    number: produced.block.number(),
                    hash: produced.block.hash,
                    state_root: produced.block.header.state_root,
                };
                tracing::info!(number = f.number, hash = %f.hash, state_root = %f.state_root, "sealed");
                return Ok(f);
            }
        }
        Err(SequencerError::SealIncomplete(MAX_SEAL_BLOCKS).to_string())
    }

    /// Builds, persists and publishes the next block. With `seal`, the block is recorded as the
    /// final one if it took everything executable from the pool.
    fn produce(&self, seal: bool) -> Result<Produced, SequencerError> {
        let started = Instant::now();
        let params = self.chain.params;
        let (ctx, parent_hash, executed, invalid, left_over) = {
            let view = self.chain.read();
            let state = view.state();
            let head = view.head();
            let ctx = next_context(&head.header, head.hash, self.chain.config.gas_limit, now_secs());
            let candidates = self
                .pool()
                .candidates(|a| state.account(a).map_or(0, |x| x.nonce), MAX_CANDIDATES);
            let mut left_over = candidates.len() >= MAX_CANDIDATES;
            let mut builder = BlockBuilder::new(state, &params, &ctx);
            let mut blocked: HashSet<Address> = HashSet::new();
            let mut invalid: HashSet<B256> = HashSet::new();
            for tx in candidates {
                if blocked.contains(&tx.sender) {
                    continue;
                }
                let (sender, hash) = (tx.sender, tx.hash);
                match builder.push(tx) {
                    Ok(_) => {}
                    Err(TxError::BlockFull) => {
                        blocked.insert(sender);
                        left_over = true;
                    }
                    Err(e) => {
                        tracing::debug!(tx = %hash, error = %e, "dropping transaction that cannot execute");
                        blocked.insert(sender);
                        invalid.insert(hash);
                    }
                }
            }
            (ctx, head.hash, builder.finish(), invalid, left_over)
        };
        let fault = self.opts.fault_corrupt_state_root_at == Some(ctx.number);
        let drained = seal && !left_over;
        let block = self.chain.append(&executed.diff, |root| {
            let header_root = if fault {
                tracing::warn!(number = ctx.number, "fault switch: corrupting this block's state root");
                corrupted(root)
            } else {
                root
            };
            let block = assemble(parent_hash, &ctx, &executed, header_root);
            let seal = drained.then(|| FinalBlock {
                number: block.number(),
                hash: block.hash,
                state_root: block.header.state_root,
            });
            Ok::<_, std::convert::Infallible>((block, seal))
        })?;
        let Ok(block) = block;

        let senders: Vec<(Address, u64)> = {
            let view = self.chain.read();
            let unique: HashSet<Address> = block.txs.iter().map(|t| t.sender).collect();
            unique
                .into_iter()
                .map(|a| (a, view.state().account(&a).map_or(0, |x| x.nonce)))
                .collect()
        };
        {
            let mut pool = self.pool();
            pool.prune(senders, &invalid);
            self.metrics.pool_size.set(pool.len() as i64);
        }
        self.finality.block_produced(block.number());
        self.metrics.blocks.inc();
        self.metrics.txs.inc_by(block.txs.len() as u64);
        self.metrics.gas.inc_by(block.header.gas_used);
        self.metrics.head.set(block.number() as i64);
        self.metrics
            .block_build_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(number = block.number(), txs = block.txs.len(), hash = %block.hash, "block produced");
        Ok(Produced { block, drained })
    }
}
