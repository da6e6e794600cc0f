//! The block cache in front of a slow [`BlockSource`] (an HTTP blob): fixed-size blocks, an LRU within a
//! byte budget, several fetches in flight, sequential readahead, and write-back of dirty data.
//!
//! Contract (on top of [`BlockSource`]'s):
//! - requests may start and end anywhere and cross any number of blocks;
//! - a miss queues the block for a small pool of fetch workers; all blocks a request touches are queued
//!   at once, so one large request becomes parallel range GETs;
//! - when requests look sequential (each starts in or right after the block the previous one ended in),
//!   up to `readahead` blocks beyond the request are fetched ahead, behind any demand fetch;
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
}

impl CacheConfig {
    /// Defaults for a budget: 8 fetch workers, readahead of 16 blocks (at most half the cache).
    pub fn new(block_size: u64, cache_size: u64) -> Self {
        Self {
            block_size,
            cache_size,
            workers: 8,
            readahead: 16,
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
    workers: usize,
    state: Mutex<State>,
    changed: Condvar,
    work: Condvar,
    counters: Counters,
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
            workers: config.workers.max(1),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            work: Condvar::new(),
            counters: Counters::default(),
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

impl<S: BlockSource> Inner<S> {
    fn block_len(&self, idx: u64) -> usize {
        let start = idx * self.bs;
        // Bounded by the block size, which fits in usize (checked in new).
        usize::try_from(self.bs.min(self.size - start)).unwrap_or(0)
    }

    /// The LRU key of a block used now: above every demoted key.
    fn next_tick(st: &mut State) -> u64 {
        st.tick += 1;
        HOT + st.tick
    }

    fn touch(st: &mut State, idx: u64) {
        let tick = Self::next_tick(st);
        if let Some(slot) = st.slots.get_mut(&idx) {
            st.lru.remove(&slot.tick);
            slot.tick = tick;
            st.lru.insert(tick, idx);
        }
    }

    /// Drop-behind: a block a sequential reader has read to its end is the first to evict (before any
    /// block read ahead and not yet read, which plain LRU would evict first once the readahead window
    /// nears the cache size). Demoted blocks leave in the order they were consumed.
    fn demote(st: &mut State, idx: u64) {
        st.cold += 1;
        let key = st.cold;
        if let Some(slot) = st.slots.get_mut(&idx) {
            st.lru.remove(&slot.tick);
            slot.tick = key;
            st.lru.insert(key, idx);
        }
    }

    fn insert(&self, st: &mut State, idx: u64, state: SlotState) {
        let tick = Self::next_tick(st);
        st.slots.insert(
            idx,
            Slot {
                state,
                tick,
                dirty: None,
                generation: 0,
                waiters: 0,
            },
        );
        st.lru.insert(tick, idx);
        self.evict(st);
    }

    fn remove(&self, st: &mut State, idx: u64) {
        if let Some(slot) = st.slots.remove(&idx) {
            st.lru.remove(&slot.tick);
            if let SlotState::Ready(buf) = slot.state {
                match Arc::try_unwrap(buf) {
                    Ok(buf) => self.recycle(st, buf),
                    // Still lent to a reader: freed when it is done.
                    Err(_) => st.buffers = st.buffers.saturating_sub(1),
                }
            }
        }
    }

    /// Keep `buf` for a later fetch if the free list has room and the buffers stay within the budget;
    /// else drop it.
    fn recycle(&self, st: &mut State, buf: Vec<u8>) {
        if st.free.len() < self.workers
            && st.buffers <= self.capacity
            && buf.capacity() >= self.block_len(0)
        {
            st.free.push(buf);
        } else {
            st.buffers = st.buffers.saturating_sub(1);
        }
    }

    /// A buffer of `len` bytes for block data that is about to be overwritten whole: a recycled one
    /// when there is one (its old content is not cleared, only a grown tail is zeroed), else a new one.
    fn take_buffer(st: &mut State, len: usize) -> Vec<u8> {
        match st.free.pop() {
            Some(mut buf) => {
                buf.resize(len, 0);
                buf
            }
            None => {
                st.buffers += 1;
                vec![0u8; len]
            }
        }
    }

    /// Drop least recently used clean, ready blocks until within capacity.
    fn evict(&self, st: &mut State) {
        if st.slots.len() <= self.capacity {
            return;
        }
        let mut excess = st.slots.len() - self.capacity;
        let victims: Vec<u64> = st
            .lru
            .values()
            .copied()
            .filter(|idx| {
                st.slots.get(idx).is_some_and(|s| {
                    s.dirty.is_none() && s.waiters == 0 && matches!(s.state, SlotState::Ready(_))
                })
            })
            .take_while(|_| {
                let go = excess > 0;
                excess = excess.saturating_sub(1);
                go
            })
            .collect();
        for idx in victims {
            self.remove(st, idx);
        }
    }

    fn enqueue(&self, st: &mut State, idx: u64, prefetch: bool) {
        self.insert(st, idx, SlotState::Loading);
        if prefetch {
            st.prefetching += 1;
            st.queue.push_back((idx, true));
        } else {
            st.queue.push_front((idx, false));
        }
        self.work.notify_one();
    }

    fn worker(&self) {
        crate::nbd::set_io_flusher();
        loop {
            let (idx, prefetch, mut buf) = {
                let mut st = lock(&self.state);
                loop {
                    if st.shutdown {
                        return;
                    }
                    if let Some((idx, prefetch)) = st.queue.pop_front() {
                        let buf = Self::take_buffer(&mut st, self.block_len(idx));
                        break (idx, prefetch, buf);
                    }
                    st = self.work.wait(st).unwrap_or_else(|p| p.into_inner());
                }
            };
            let counter = if prefetch {
                &self.counters.prefetch
            } else {
                &self.counters.demand
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let r = catch_unwind(AssertUnwindSafe(|| {
                self.src.read_at(idx * self.bs, &mut buf)
            }))
            .unwrap_or_else(|p| Err(panic_error(&*p)));
            let mut st = lock(&self.state);
            if prefetch {
                st.prefetching = st.prefetching.saturating_sub(1);
            }
            match (st.slots.get_mut(&idx), r) {
                (Some(slot), Ok(())) => slot.state = SlotState::Ready(Arc::new(buf)),
                (Some(slot), Err(e)) if slot.waiters > 0 => {
                    slot.state = SlotState::Failed(e);
                    self.recycle(&mut st, buf);
                }
                (Some(_), Err(_)) => {
                    self.remove(&mut st, idx);
                    self.recycle(&mut st, buf);
                }
                (None, _) => self.recycle(&mut st, buf),
            }
            self.evict(&mut st);
            drop(st);
            self.changed.notify_all();
        }
    }

    /// Queue fetches for every absent block in `first..=last`, and readahead when sequential.
    fn request_blocks(&self, st: &mut State, first: u64, last: u64) {
        for idx in (first..=last).rev() {
            if !st.slots.contains_key(&idx) {
                self.enqueue(st, idx, false);
            }
        }
        // Sequential: this request starts in (or right after) the block where the previous one ended.
        // Two in a row start readahead, so random reads that happen to share a block do not.
        let sequential = st
            .last_block
            .is_some_and(|prev| first == prev || first == prev + 1);
        st.seq_run = if sequential { st.seq_run + 1 } else { 0 };
        st.last_block = Some(last);
        if st.seq_run < 2 || self.readahead == 0 {
            return;
        }
        let nblocks = self.size.div_ceil(self.bs);
        let end = (last + self.readahead).min(nblocks.saturating_sub(1));
        for idx in last + 1..=end {
            if st.prefetching >= self.readahead {
                break;
            }
            if !st.slots.contains_key(&idx) {
                self.enqueue(st, idx, true);
            }
        }
    }

    /// Wait until block `idx` is ready and run `f` on it (under the lock). Fetches it if absent.
    fn with_block<'a, T>(
        &self,
        mut st: MutexGuard<'a, State>,
        idx: u64,
        mut f: impl FnMut(&mut Slot) -> T,
    ) -> (MutexGuard<'a, State>, Result<T>) {
        let mut counted = false;
        loop {
            let Some(slot) = st.slots.get_mut(&idx) else {
                self.enqueue(&mut st, idx, false);
                counted = true;
                continue;
            };
            match &slot.state {
                SlotState::Ready(_) => {
                    if !counted {
                        self.counters.hits.fetch_add(1, Ordering::Relaxed);
                    }
                    let out = f(slot);
                    Self::touch(&mut st, idx);
                    return (st, Ok(out));
                }
                SlotState::Failed(e) => {
                    let e = e.clone();
                    if slot.waiters == 0 {
                        self.remove(&mut st, idx);
                    }
                    return (st, Err(e));
                }
                SlotState::Loading => {
                    counted = true;
                    slot.waiters += 1;
                    st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
                    if let Some(slot) = st.slots.get_mut(&idx) {
                        slot.waiters -= 1;
                    }
                }
            }
        }
    }

    fn blocks(&self, offset: u64, len: u64) -> (u64, u64) {
        (offset / self.bs, (offset + len - 1) / self.bs)
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len() as u64, self.size)?;
        if buf.is_empty() {
            return Ok(());
        }
        let (first, last) = self.blocks(offset, buf.len() as u64);
        let mut st = lock(&self.state);
        self.request_blocks(&mut st, first, last);
        let drop_behind = self.drop_behind(&st, offset + buf.len() as u64, last);
        let mut done = 0usize;
        for idx in first..=last {
            let start = usize::try_from((offset + done as u64) - idx * self.bs).unwrap_or(0);
            let (g, r) = self.with_block(st, idx, |slot| {
                let SlotState::Ready(data) = &slot.state else {
                    return 0;
                };
                let n = (data.len() - start).min(buf.len() - done);
                buf[done..done + n].copy_from_slice(&data[start..start + n]);
                n
            });
            st = g;
            done += r?;
            if idx < drop_behind {
                Self::demote(&mut st, idx);
            }
        }
        Ok(())
    }

    /// Blocks below the returned index may be demoted after a read ending at `end` (in block `last`):
    /// all the blocks it read to their end, when the reader is sequential; none otherwise.
    fn drop_behind(&self, st: &State, end: u64, last: u64) -> u64 {
        if st.seq_run == 0 {
            return 0;
        }
        if end == ((last + 1) * self.bs).min(self.size) {
            last + 1
        } else {
            last
        }
    }

    /// The blocks holding `offset..offset+len`, each with the range of it that is wanted, once all are
    /// ready (shared, not copied).
    fn lend(&self, offset: u64, len: usize) -> Result<Vec<Lent>> {
        check_range(offset, len as u64, self.size)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let (first, last) = self.blocks(offset, len as u64);
        let mut st = lock(&self.state);
        self.request_blocks(&mut st, first, last);
        let drop_behind = self.drop_behind(&st, offset + len as u64, last);
        let mut parts = Vec::new();
        let mut done = 0usize;
        for idx in first..=last {
            let start = usize::try_from((offset + done as u64) - idx * self.bs).unwrap_or(0);
            let (g, r) = self.with_block(st, idx, |slot| {
                let SlotState::Ready(data) = &slot.state else {
                    return None;
                };
                let n = (data.len() - start).min(len - done);
                Some((Arc::clone(data), start, start + n))
            });
            st = g;
            let part = r?.ok_or_else(|| Error::Protocol("block not ready".into()))?;
            done += part.2 - part.1;
            parts.push(part);
            if idx < drop_behind {
                Self::demote(&mut st, idx);
            }
        }
        Ok(parts)
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(u64, u64)> {
        if self.src.read_only() {
            return Err(Error::ReadOnly);
        }
        check_range(offset, data.len() as u64, self.size)?;
        if data.is_empty() {
            return Ok((1, 0));
        }
        let (first, last) = self.blocks(offset, data.len() as u64);
        let mut st = lock(&self.state);
        let mut done = 0usize;
        for idx in first..=last {
            let start = usize::try_from((offset + done as u64) - idx * self.bs).unwrap_or(0);
            let blen = self.block_len(idx);
            let n = (blen - start).min(data.len() - done);
            let piece = &data[done..done + n];
            if n == blen && !st.slots.contains_key(&idx) {
                // A whole-block write needs no fetch.
                let buf = Self::take_buffer(&mut st, blen);
                self.insert(&mut st, idx, SlotState::Ready(Arc::new(buf)));
            }
            let (g, r) = self.with_block(st, idx, |slot| {
                if let SlotState::Ready(block) = &mut slot.state {
                    Arc::make_mut(block)[start..start + n].copy_from_slice(piece);
                    let (lo, hi) = slot.dirty.unwrap_or((start, start + n));
                    slot.dirty = Some((lo.min(start), hi.max(start + n)));
                    slot.generation += 1;
                }
            });
            st = g;
            r?;
            done += n;
        }
        let dirty = st.slots.values().filter(|s| s.dirty.is_some()).count();
        drop(st);
        if dirty > self.capacity / 2 {
            // Keep room for clean blocks: write back now rather than grow past the budget.
            self.write_back(None)?;
        }
        Ok((first, last))
    }

    /// Upload dirty ranges (of `only` blocks, or all), in parallel; then flush the backend.
    fn write_back(&self, only: Option<(u64, u64)>) -> Result<()> {
        let align = self.src.write_alignment().max(1);
        let jobs: Vec<(u64, u64, u64, Vec<u8>)> = {
            let st = lock(&self.state);
            st.slots
                .iter()
                .filter(|(idx, _)| only.is_none_or(|(a, b)| (a..=b).contains(*idx)))
                .filter_map(|(idx, slot)| {
                    let (lo, hi) = slot.dirty?;
                    let SlotState::Ready(data) = &slot.state else {
                        return None;
                    };
                    let lo = lo as u64 / align * align;
                    let hi = (hi as u64).div_ceil(align) * align;
                    let hi = hi.min(data.len() as u64);
                    let bytes = data[usize::try_from(lo).ok()?..usize::try_from(hi).ok()?].to_vec();
                    Some((*idx, slot.generation, idx * self.bs + lo, bytes))
                })
                .collect()
        };
        let jobs = Mutex::new(jobs);
        let first_err: Mutex<Option<Error>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..self.workers {
                s.spawn(|| loop {
                    let job = jobs.lock().unwrap_or_else(|p| p.into_inner()).pop();
                    let Some((idx, generation, at, bytes)) = job else {
                        return;
                    };
                    let r = catch_unwind(AssertUnwindSafe(|| self.src.write_at(at, &bytes)))
                        .unwrap_or_else(|p| Err(panic_error(&*p)));
                    match r {
                        Ok(()) => {
                            self.counters.uploads.fetch_add(1, Ordering::Relaxed);
                            self.counters
                                .uploaded
                                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                            let mut st = lock(&self.state);
                            if let Some(slot) = st.slots.get_mut(&idx) {
                                if slot.generation == generation {
                                    slot.dirty = None;
                                }
                            }
                        }
                        Err(e) => {
                            let mut fe = first_err.lock().unwrap_or_else(|p| p.into_inner());
                            fe.get_or_insert(e);
                        }
                    }
                });
            }
        });
        if let Some(e) = first_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        catch_unwind(AssertUnwindSafe(|| self.src.flush()))
            .unwrap_or_else(|p| Err(panic_error(&*p)))
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
