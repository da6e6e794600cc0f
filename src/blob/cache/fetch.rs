//! Reading: fetch workers, demand and readahead queueing, waiting for a block, drop-behind, lending.

use super::*;

impl<S: BlockSource> Inner<S> {
    pub(super) fn enqueue(&self, st: &mut State, idx: u64, prefetch: bool) {
        self.insert(st, idx, SlotState::Loading);
        if prefetch {
            st.prefetching += 1;
            st.queue.push_back((idx, true));
        } else {
            st.queue.push_front((idx, false));
        }
        self.work.notify_one();
    }

    pub(super) fn worker(&self) {
        crate::io_flusher::set_io_flusher();
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

    /// Queue fetches for every absent block in `first..=last`, and readahead when sequential (see
    /// [`CacheConfig::reorder_window`]).
    pub(super) fn request_blocks(&self, st: &mut State, first: u64, last: u64) {
        for idx in (first..=last).rev() {
            if !st.slots.contains_key(&idx) {
                self.enqueue(st, idx, false);
            }
        }
        // Sequential: this request starts near the block where the furthest request so far ended, within
        // `reorder_window` blocks either way: the kernel's NBD client and loop device issue a sequential
        // reader's requests concurrently, and they arrive slightly out of order; an exact "starts in or
        // right after" test then sees random reads and stops reading ahead. Two in a row start readahead,
        // so random reads that happen to share a block do not.
        let sequential = st.last_block.is_some_and(|prev| {
            first <= prev.saturating_add(1 + self.reorder_window)
                && first + self.reorder_window >= prev
        });
        st.seq_run = if sequential { st.seq_run + 1 } else { 0 };
        let last = match st.last_block {
            Some(prev) if sequential => prev.max(last),
            _ => last,
        };
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
    pub(super) fn with_block<'a, T>(
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

    pub(super) fn blocks(&self, offset: u64, len: u64) -> (u64, u64) {
        (offset / self.bs, (offset + len - 1) / self.bs)
    }

    pub(super) fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
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
    pub(super) fn drop_behind(&self, st: &State, end: u64, last: u64) -> u64 {
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
    pub(super) fn lend(&self, offset: u64, len: usize) -> Result<Vec<Lent>> {
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
}
