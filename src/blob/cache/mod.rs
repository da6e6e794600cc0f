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
            log::warn!("block cache dropped with {dirty} unflushed blocks");
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
mod tests {
    use super::*;

    /// An in-memory source that counts reads.
    struct Mem(Mutex<Vec<u8>>, AtomicU64);

    impl BlockSource for Mem {
        fn size(&self) -> u64 {
            lock_vec(&self.0).len() as u64
        }
        fn read_only(&self) -> bool {
            false
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
            self.1.fetch_add(1, Ordering::Relaxed);
            let d = lock_vec(&self.0);
            let o = usize::try_from(offset).unwrap_or(usize::MAX);
            buf.copy_from_slice(&d[o..o + buf.len()]);
            Ok(())
        }
        fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
            let mut d = lock_vec(&self.0);
            let o = usize::try_from(offset).unwrap_or(usize::MAX);
            d[o..o + data.len()].copy_from_slice(data);
            Ok(())
        }
        fn flush(&self) -> Result<()> {
            Ok(())
        }
    }

    fn lock_vec(m: &Mutex<Vec<u8>>) -> MutexGuard<'_, Vec<u8>> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sequential requests that arrive slightly reordered (as the kernel's NBD client and loop device send
    /// them, several in flight) still count as sequential and start readahead.
    #[test]
    fn reordered_sequential_requests_start_readahead() {
        let bs = 4096u64;
        let prefetches = |reorder_window| {
            let mem = Mem(Mutex::new(vec![7u8; 64 * 4096]), AtomicU64::new(0));
            let config = CacheConfig {
                block_size: bs,
                cache_size: 64 * bs,
                workers: 2,
                readahead: 4,
                reorder_window,
            };
            let cache = CachedSource::new(mem, config).expect("cache");
            let mut buf = vec![0u8; 4096];
            for block in [0u64, 2, 1, 3, 5, 4, 6] {
                cache.read_at(block * bs, &mut buf).expect("read");
            }
            cache.stats().prefetches
        };
        assert!(
            prefetches(2) > 0,
            "no readahead for a sequential reader whose requests arrived reordered"
        );
        // Without the window the same reader looks random: this is what the window changes.
        assert_eq!(prefetches(0), 0);
    }

    /// Recycled buffers never leak old content: many passes through a small cache over a source whose
    /// last block is short, sequential and strided, reads and whole-block writes mixed.
    #[test]
    fn recycled_buffers_hold_only_their_own_block() {
        let size = 10 * 4096 + 1000;
        let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 4096) as u8).collect();
        let mem = Mem(Mutex::new(data.clone()), AtomicU64::new(0));
        let config = CacheConfig {
            block_size: 4096,
            cache_size: 3 * 4096,
            workers: 2,
            readahead: 1,
            reorder_window: 2,
        };
        let cache = CachedSource::new(mem, config).expect("cache");
        let mut expect = data;
        for pass in 0..6u64 {
            let step = [1000u64, 4096, 333, 8192, 5000, 1][usize::try_from(pass).unwrap_or(0)];
            let mut at = 0u64;
            while at < size as u64 {
                let n = step.min(size as u64 - at);
                let mut got = vec![0xAAu8; usize::try_from(n).unwrap_or(0)];
                cache.read_at(at, &mut got).expect("read");
                let a = usize::try_from(at).unwrap_or(0);
                assert_eq!(got, &expect[a..a + got.len()], "pass {pass} at {at}");
                // The same through lent blocks.
                let mut lent = Vec::new();
                cache
                    .read_lend(at, got.len(), &mut Vec::new(), &mut |parts| {
                        lent = parts.concat();
                    })
                    .expect("read_lend");
                assert_eq!(lent, got, "lent, pass {pass} at {at}");
                at += n;
            }
            // A whole-block write into an absent block takes a recycled buffer.
            let blk = 4096 * (pass + 2);
            let fill = vec![u8::try_from(pass).unwrap_or(0) + 1; 4096];
            cache.write_at(blk, &fill).expect("write");
            let b = usize::try_from(blk).unwrap_or(0);
            expect[b..b + 4096].copy_from_slice(&fill);
        }
        cache.flush().expect("flush");
        assert!(lock(&cache.inner.state).buffers <= cache.inner.capacity + config.workers);
        assert_eq!(*lock_vec(&cache.source().0), expect);
    }

    /// [`Mem`] whose first write blocks until the test opens the gate.
    struct Gated {
        mem: Mem,
        writes: AtomicU64,
        gate: (Mutex<bool>, std::sync::Condvar),
    }

    impl BlockSource for Gated {
        fn size(&self) -> u64 {
            self.mem.size()
        }
        fn read_only(&self) -> bool {
            false
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
            self.mem.read_at(offset, buf)
        }
        fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
            if self.writes.fetch_add(1, Ordering::SeqCst) == 0 {
                let (m, cv) = &self.gate;
                let mut open = m.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                while !*open {
                    open = cv
                        .wait(open)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            }
            self.mem.write_at(offset, data)
        }
        fn flush(&self) -> Result<()> {
            Ok(())
        }
    }

    /// Two flushes of the same block, the first one's upload slow: the blob must end with the newer data.
    /// (With overlapping write-backs the newer upload finished first, marked the block clean, and the
    /// older upload then overwrote it: a lost write.)
    #[test]
    fn a_slow_older_upload_never_overwrites_a_newer_one() {
        let src = Gated {
            mem: Mem(Mutex::new(vec![0u8; 4 * 4096]), AtomicU64::new(0)),
            writes: AtomicU64::new(0),
            gate: (Mutex::new(false), std::sync::Condvar::new()),
        };
        let config = CacheConfig {
            block_size: 4096,
            cache_size: 4 * 4096,
            workers: 2,
            readahead: 0,
            reorder_window: 2,
        };
        let cache = Arc::new(CachedSource::new(src, config).expect("cache"));
        cache.write_at(0, &[1u8; 512]).expect("write v1");
        let first = {
            let c = Arc::clone(&cache);
            std::thread::spawn(move || c.flush())
        };
        // The first flush's upload (v1) is now held at the gate.
        while cache.source().writes.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        cache.write_at(0, &[2u8; 512]).expect("write v2");
        let second = {
            let c = Arc::clone(&cache);
            std::thread::spawn(move || c.flush())
        };
        // Give the second flush time to run ahead if it could; then let v1 through.
        std::thread::sleep(std::time::Duration::from_millis(200));
        {
            let (m, cv) = &cache.source().gate;
            *m.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = true;
            cv.notify_all();
        }
        first.join().expect("join").expect("flush 1");
        second.join().expect("join").expect("flush 2");
        assert_eq!(
            lock_vec(&cache.source().mem.0)[..512],
            [2u8; 512],
            "the blob lost the newer write"
        );
        assert_eq!(cache.dirty_blocks(), 0);
    }

    /// A sequential reader with the readahead window at half the cache fetches every block once: blocks
    /// read to their end are evicted before blocks read ahead and not yet read.
    #[test]
    fn sequential_reads_fetch_each_block_once() {
        let bs = 4096u64;
        let blocks = 64u64;
        let data: Vec<u8> = (0..bs * blocks).map(|i| (i / 4096 + i) as u8).collect();
        let mem = Mem(Mutex::new(data.clone()), AtomicU64::new(0));
        let config = CacheConfig {
            block_size: bs,
            cache_size: 8 * bs,
            workers: 4,
            readahead: 4,
            reorder_window: 2,
        };
        let cache = CachedSource::new(mem, config).expect("cache");
        let step = 1024u64;
        for at in (0..bs * blocks).step_by(usize::try_from(step).unwrap_or(1)) {
            let mut got = vec![0u8; usize::try_from(step).unwrap_or(0)];
            cache.read_at(at, &mut got).expect("read");
            let a = usize::try_from(at).unwrap_or(0);
            assert_eq!(got, &data[a..a + got.len()]);
        }
        assert_eq!(cache.source().1.load(Ordering::Relaxed), blocks);
    }
}
