//! Writing: dirty ranges in cached blocks and their parallel upload on flush and FUA.

use super::*;

impl<S: BlockSource> Inner<S> {
    pub(super) fn write(&self, offset: u64, data: &[u8]) -> Result<(u64, u64)> {
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
    pub(super) fn write_back(&self, only: Option<(u64, u64)>) -> Result<()> {
        // One write-back at a time (see `writing_back`): a later one snapshots after this one's uploads.
        let _serial = self
            .writing_back
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
