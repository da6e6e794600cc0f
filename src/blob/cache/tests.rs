//! Tests of the block cache: readahead, buffer recycling, write-back ordering, fetch counts.

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
