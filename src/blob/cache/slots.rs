//! The LRU bookkeeping: block slots, their keys, eviction within the budget, and the buffer free list.

use super::*;

impl<S: BlockSource> Inner<S> {
    pub(super) fn block_len(&self, idx: u64) -> usize {
        let start = idx * self.bs;
        // Bounded by the block size, which fits in usize (checked in new).
        usize::try_from(self.bs.min(self.size - start)).unwrap_or(0)
    }

    /// The LRU key of a block used now: above every demoted key.
    pub(super) fn next_tick(st: &mut State) -> u64 {
        st.tick += 1;
        HOT + st.tick
    }

    pub(super) fn touch(st: &mut State, idx: u64) {
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
    pub(super) fn demote(st: &mut State, idx: u64) {
        st.cold += 1;
        let key = st.cold;
        if let Some(slot) = st.slots.get_mut(&idx) {
            st.lru.remove(&slot.tick);
            slot.tick = key;
            st.lru.insert(key, idx);
        }
    }

    pub(super) fn insert(&self, st: &mut State, idx: u64, state: SlotState) {
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

    pub(super) fn remove(&self, st: &mut State, idx: u64) {
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
    pub(super) fn recycle(&self, st: &mut State, buf: Vec<u8>) {
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
    pub(super) fn take_buffer(st: &mut State, len: usize) -> Vec<u8> {
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
    pub(super) fn evict(&self, st: &mut State) {
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
}
