//! The block cache in front of a slow [`BlockSource`] (an HTTP blob): fixed-size blocks, an LRU within a
//! byte budget, several fetches in flight, sequential readahead, and write-back of dirty data.
//!
//! Contract (on top of [`BlockSource`]'s):
//! - requests may start and end anywhere and cross any number of blocks;
//! - a miss queues the block for a small pool of fetch workers; all blocks a request touches are queued
//!   at once, so one large request becomes parallel range GETs;
//! - when requests look sequential (each starts in or right after the block the furthest one so far ended
//!   in, give or take `reorder_window` blocks, as concurrent requests arrive reordered), up to `readahead` blocks beyond the request are fetched ahead, behind any demand fetch;
//! - writes modify cached blocks (a partial write to an absent block reads it first) and mark the
//!   touched byte range dirty; only dirty ranges (widened to the backend's write alignment) are uploaded;
//! - `flush` uploads every dirty range in parallel and returns after the backend acknowledged all of
//!   them (then flushes the backend); `write_at_fua` does the same for the blocks it touched. A block
//!   re-dirtied during its upload stays dirty. Dirty blocks are never evicted;
//! - a fetch or upload that panics becomes [`Error::Panic`] for its waiters, never a dead process; a
//!   failed fetch is not cached (the next read tries again);
//! - block buffers are recycled: an evicted block's buffer goes to a small free list (at most one per
//!   fetch worker) that the next fetch fills, so a steady stream of reads allocates nothing (a large
//!   allocation is an mmap, page faults and an munmap with TLB shootdowns, costly under virtualization).
//!   Memory stays within the budget plus one block per worker.
#![forbid(unsafe_code)]

use super::{check_range, panic_error, BlockSource, Error, Result};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

mod fetch;
mod slots;
mod writeback;

/// Cache sizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Block (and range request) size in bytes.
    pub block_size: u64,
    /// Byte budget for cached blocks.
    pub cache_size: u64,
    /// Fetch workers (range GETs in flight at once).
    pub workers: usize,
    /// Blocks to read ahead of a sequential reader (capped at half the cache).
    pub readahead: u64,
    /// How many blocks a request may start before, or past the end of, the furthest block read so far and
    /// still count as sequential: the kernel's NBD client and loop device send a sequential reader's
    /// requests several at a time, and they arrive slightly reordered.
    pub reorder_window: u64,
}

impl CacheConfig {
    /// Defaults for a budget: 8 fetch workers, readahead of 16 blocks (at most half the cache), a reorder
    /// window of 2 blocks.
    pub fn new(block_size: u64, cache_size: u64) -> Self {
        Self {
            block_size,
            cache_size,
            workers: 8,
            readahead: 16,
            reorder_window: 2,
        }
    }
}

/// Counters, for tests and the performance report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Blocks fetched because a request needed them.
    pub demand_fetches: u64,
    /// Blocks fetched ahead of the reader.
    pub prefetches: u64,
    /// Block lookups answered from the cache.
    pub hits: u64,
    /// Upload requests made.
    pub uploads: u64,
    /// Bytes uploaded.
    pub uploaded_bytes: u64,
}

#[derive(Debug)]
enum SlotState {
    Loading,
    /// Shared so that a reader can lend it out after the lock is released ([`BlockSource::read_lend`]);
    /// a write while it is lent copies it first.
    Ready(Arc<Vec<u8>>),
    Failed(Error),
}

#[derive(Debug)]
struct Slot {
    state: SlotState,
    tick: u64,
    /// Dirty byte range inside the block.
    dirty: Option<(usize, usize)>,
    /// Bumped on every write, so an upload knows whether it cleaned the latest data.
    generation: u64,
    waiters: u32,
}

#[derive(Debug, Default)]
struct State {
    slots: HashMap<u64, Slot>,
    lru: BTreeMap<u64, u64>,
    tick: u64,
    queue: VecDeque<(u64, bool)>,
    prefetching: u64,
    last_block: Option<u64>,
    seq_run: u32,
    shutdown: bool,
    /// Buffers of evicted blocks, for the next fetches.
    free: Vec<Vec<u8>>,
    /// Block buffers allocated and not yet dropped (cached, being filled, or free).
    buffers: usize,
    /// LRU keys of demoted blocks (below [`HOT`]).
    cold: u64,
}

/// LRU keys of blocks in use start here; demoted blocks get keys below.
const HOT: u64 = 1 << 62;

#[derive(Debug, Default)]
struct Counters {
    demand: AtomicU64,
    prefetch: AtomicU64,
    hits: AtomicU64,
    uploads: AtomicU64,
    uploaded: AtomicU64,
}

#[derive(Debug)]
struct Inner<S> {
    src: S,
    bs: u64,
    size: u64,
    capacity: usize,
    readahead: u64,
    reorder_window: u64,
    workers: usize,
    state: Mutex<State>,
    changed: Condvar,
    work: Condvar,
    counters: Counters,
    /// Held by a write-back from its snapshot of the dirty ranges until every upload is acknowledged: two
    /// write-backs must not overlap, or an older snapshot of a block could reach the blob after a newer one
    /// (which already marked it clean), and the newer data would be lost.
    writing_back: Mutex<()>,
}

/// A block lent to a reader, and the wanted range of it.
type Lent = (Arc<Vec<u8>>, usize, usize);

/// A caching [`BlockSource`] over `S`.
#[derive(Debug)]
pub struct CachedSource<S: BlockSource + 'static> {
    inner: Arc<Inner<S>>,
    threads: Vec<JoinHandle<()>>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<S: BlockSource + 'static> CachedSource<S> {
    /// Put a cache in front of `src` and start its fetch workers.
    pub fn new(src: S, config: CacheConfig) -> Result<Self> {
        let bs = config.block_size;
        if bs == 0 || bs % src.write_alignment() != 0 || usize::try_from(bs).is_err() {
            return Err(Error::Unsupported(format!(
                "block size {bs} must be a non-zero multiple of {}",
                src.write_alignment()
            )));
        }
        let blocks = (config.cache_size / bs).max(2);
        let capacity = usize::try_from(blocks).unwrap_or(usize::MAX);
        let inner = Arc::new(Inner {
            size: src.size(),
            src,
            bs,
            capacity,
            readahead: config.readahead.min(blocks / 2),
            reorder_window: config.reorder_window,
            workers: config.workers.max(1),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            work: Condvar::new(),
            counters: Counters::default(),
            writing_back: Mutex::new(()),
        });
        let mut threads = Vec::new();
        for i in 0..inner.workers {
            let inner = Arc::clone(&inner);
            let t = std::thread::Builder::new()
                .name(format!("blob-fetch-{i}"))
                .spawn(move || inner.worker())
                .map_err(|e| Error::Unsupported(format!("cannot start fetch worker: {e}")))?;
            threads.push(t);
        }
        Ok(Self { inner, threads })
    }

    /// The backend.
    pub fn source(&self) -> &S {
        &self.inner.src
    }

    /// Counters so far.
    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.counters;
        CacheStats {
            demand_fetches: c.demand.load(Ordering::Relaxed),
            prefetches: c.prefetch.load(Ordering::Relaxed),
            hits: c.hits.load(Ordering::Relaxed),
            uploads: c.uploads.load(Ordering::Relaxed),
            uploaded_bytes: c.uploaded.load(Ordering::Relaxed),
        }
    }

    /// Number of blocks holding unflushed data.
    pub fn dirty_blocks(&self) -> usize {
        lock(&self.inner.state)
            .slots
            .values()
            .filter(|s| s.dirty.is_some())
            .count()
    }
}

impl<S: BlockSource + 'static> Drop for CachedSource<S> {
    fn drop(&mut self) {
        let dirty = self.dirty_blocks();
        if dirty > 0 {
            log::warn!(
                "block cache dropped with {dirty} unflushed blocks: what the application wrote to them never reached the blob"
            );
        }
        lock(&self.inner.state).shutdown = true;
        self.inner.work.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl<S: BlockSource + 'static> BlockSource for CachedSource<S> {
    fn size(&self) -> u64 {
        self.inner.size
    }

    fn read_only(&self) -> bool {
        self.inner.src.read_only()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.inner.read(offset, buf)
    }

    fn read_lend(
        &self,
        offset: u64,
        len: usize,
        _scratch: &mut Vec<u8>,
        sink: &mut dyn FnMut(&[&[u8]]),
    ) -> Result<()> {
        let parts = self.inner.lend(offset, len)?;
        let slices: Vec<&[u8]> = parts.iter().map(|(b, lo, hi)| &b[*lo..*hi]).collect();
        sink(&slices);
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.inner.write(offset, data).map(|_| ())
    }

    fn flush(&self) -> Result<()> {
        self.inner.write_back(None)
    }

    fn write_at_fua(&self, offset: u64, data: &[u8]) -> Result<()> {
        let range = self.inner.write(offset, data)?;
        self.inner.write_back(Some(range))
    }
}

#[cfg(test)]
mod tests;
