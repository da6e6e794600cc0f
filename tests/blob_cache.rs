//! The blob client and the block cache against our fault-injecting range server and an in-memory
//! model: data read through the cache equals the source byte for byte while faults come and go; writes
//! reach the backend only as dirty, aligned ranges; ETag pinning; read-write refused on block blobs;
//! panics become errors; a write lease the service cannot renew is lost when it expires.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use encfs_init::blob::{
    Auth, AzureBlob, BlockSource, CacheConfig, CachedSource, Error, LeaseConfig, LeaseState,
    StaticToken,
};
use encfs_init::http::Client;
use encfs_init::secret::SecretString;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::range_server::RangeServer;
use support::{fast_network, pattern};

const VERSION: &str = "2020-10-02";

fn open(server: &RangeServer, rw: bool, retries: u32) -> AzureBlob {
    let client = Client::new(&fast_network(retries)).unwrap();
    AzureBlob::open(client, &server.url(), Auth::Anonymous, VERSION, rw).unwrap()
}

#[test]
fn reads_through_cache_equal_the_source_while_faults_come_and_go() {
    let size = 24 * 65536 + 777; // short last block
    let data = pattern(size, 7);
    let server = RangeServer::start(data.clone(), "PageBlob");
    server.set_faults(12, 6, 1, 6, 1800);
    let blob = open(&server, false, 8);
    let cache = CachedSource::new(
        blob,
        CacheConfig {
            block_size: 65536,
            cache_size: 8 * 65536,
            workers: 4,
            readahead: 4,
            reorder_window: 2,
        },
    )
    .unwrap();
    let start = Instant::now();
    let mut seed = 99u64;
    for round in 0..6 {
        server.faults_on(round % 2 == 0);
        // A sequential pass in uneven pieces, then random reads crossing blocks.
        let mut off = 0usize;
        while off < size {
            let n = (37_000 + off % 50_000).min(size - off);
            let mut buf = vec![0u8; n];
            cache.read_at(off as u64, &mut buf).unwrap();
            assert!(
                buf == data[off..off + n],
                "mismatch at {off}+{n} in round {round}"
            );
            off += n;
        }
        for _ in 0..40 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let off = (seed >> 20) as usize % size;
            let n = ((seed >> 8) as usize % 200_000).min(size - off).max(1);
            let mut buf = vec![0u8; n];
            cache.read_at(off as u64, &mut buf).unwrap();
            assert!(buf == data[off..off + n], "mismatch at {off}+{n}");
        }
    }
    assert!(
        server.injected.load(Ordering::Relaxed) > 10,
        "faults were injected"
    );
    assert!(
        start.elapsed() < Duration::from_secs(90),
        "{:?}",
        start.elapsed()
    );
    let st = cache.stats();
    assert!(st.prefetches > 0, "sequential passes read ahead: {st:?}");
}

#[test]
fn a_replaced_blob_is_a_clear_error_not_mixed_data() {
    let server = RangeServer::start(pattern(4 * 4096, 1), "PageBlob");
    let mut blob = open(&server, false, 2);
    // The supervisor's view (issue 17): nothing until the data path sees the change, then the cause.
    let watch = encfs_init::blob::FatalWatch::new();
    blob.watch_fatal(watch.clone());
    let mut buf = vec![0u8; 4096];
    blob.read_at(0, &mut buf).unwrap();
    assert_eq!(watch.get(), None);
    server.replace(pattern(4 * 4096, 2));
    let err = blob.read_at(4096, &mut buf).unwrap_err();
    assert!(matches!(err, Error::Changed { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("replaced or modified"), "{msg}");
    assert!(
        watch
            .get()
            .is_some_and(|w| w.contains("replaced or modified")),
        "{:?}",
        watch.get()
    );
}

#[test]
fn read_write_on_a_block_blob_is_refused_at_open() {
    let server = RangeServer::start(vec![0u8; 8192], "BlockBlob");
    let client = Client::new(&fast_network(1)).unwrap();
    let err = AzureBlob::open(
        client.clone(),
        &server.url(),
        Auth::Anonymous,
        VERSION,
        true,
    )
    .unwrap_err();
    assert!(err.to_string().contains("need a page blob"), "{err}");
    // Read-only works.
    let b = AzureBlob::open(client, &server.url(), Auth::Anonymous, VERSION, false).unwrap();
    assert_eq!(b.size(), 8192);
    assert_eq!(b.write_at(0, &[0u8; 512]).unwrap_err(), Error::ReadOnly);
}

#[test]
fn only_dirty_aligned_ranges_are_uploaded_and_fua_and_flush_reach_the_blob() {
    let size = 16 * 65536;
    let data = pattern(size, 3);
    let server = RangeServer::start(data.clone(), "PageBlob");
    let cache =
        CachedSource::new(open(&server, true, 3), CacheConfig::new(65536, 8 * 65536)).unwrap();
    let mut model = data.clone();
    // 100 bytes inside block 1 (crossing a page boundary): uploaded as pages 1..3 of the block only.
    cache.write_at(65536 + 1000, &[0xaa; 100]).unwrap();
    model[65536 + 1000..65536 + 1100].fill(0xaa);
    assert_eq!(
        server.blob.lock().unwrap().data,
        data,
        "nothing uploaded before flush"
    );
    cache.flush().unwrap();
    let st = cache.stats();
    assert_eq!((st.uploads, st.uploaded_bytes), (1, 1024), "{st:?}");
    assert_eq!(server.blob.lock().unwrap().data, model);
    // A FUA write crossing a block boundary is on the blob when it returns.
    cache.write_at_fua(3 * 65536 - 10, &[0x55; 20]).unwrap();
    model[3 * 65536 - 10..3 * 65536 + 10].fill(0x55);
    assert_eq!(server.blob.lock().unwrap().data, model);
    assert_eq!(cache.dirty_blocks(), 0);
    // Reads after our own writes still pass If-Match (the pinned ETag follows our writes).
    let mut all = vec![0u8; size];
    cache.read_at(0, &mut all).unwrap();
    assert!(all == model);
    // Put Page carried the protocol headers.
    let h = server.last_headers.lock().unwrap()["PUT"].clone();
    assert_eq!(h["x-ms-page-write"], "update");
    assert_eq!(h["x-ms-version"], VERSION);
    assert!(h.contains_key("if-match") && h.contains_key("x-ms-client-request-id"));
    // ...and the write lease taken at open.
    assert_eq!(
        Some(h["x-ms-lease-id"].as_str()),
        server.blob.lock().unwrap().leased()
    );
}

#[test]
fn a_lease_the_service_cannot_renew_is_lost_when_it_expires_and_writes_then_fail_without_a_request()
{
    let server = RangeServer::start(pattern(8192, 3), "PageBlob");
    let lease = LeaseConfig {
        duration: Duration::from_secs(15),
        renew_every: Duration::from_secs(2),
    };
    let client = Client::new(&fast_network(2)).unwrap();
    let blob =
        AzureBlob::open_with(client, &server.url(), Auth::Anonymous, VERSION, true, lease).unwrap();
    let watch = blob.lease().unwrap();
    // The blob service answers 503 to everything: renewals are retried while the lease lasts, then given up.
    server.set_faults(100, 0, 0, 0, 0);
    server.faults_on(true);
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(watch.state(), LeaseState::Held, "still valid: still held");
    let t = Instant::now();
    while watch.state() == LeaseState::Held && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(watch.state(), LeaseState::Lost);
    // Writes fail at once, naming why, without a request (the service is back, but the lease may have been
    // someone else's meanwhile).
    server.faults_on(false);
    let before = server.requests.load(Ordering::Relaxed);
    let err = blob.write_at(0, &[1; 512]).unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(
        shown.contains("(it expired before it could be renewed (the last attempt: "),
        "{shown}"
    );
    assert!(shown.contains("HTTP 503"), "{shown}");
    assert_eq!(server.requests.load(Ordering::Relaxed), before);
    // A lost lease is not released at drop (it is not ours any more).
    drop(blob);
    assert_eq!(server.requests.load(Ordering::Relaxed), before);
}

#[test]
fn sas_goes_in_the_query_and_never_into_errors() {
    let server = RangeServer::start(vec![1u8; 4096], "PageBlob");
    let client = Client::new(&fast_network(0)).unwrap();
    let sas = Arc::new(SecretString::new("sv=2020-10-02&sig=TOPSECRET".into()));
    let blob = AzureBlob::open(client, &server.url(), Auth::Sas(sas), VERSION, false).unwrap();
    server.set_faults(100, 0, 0, 0, 0);
    server.faults_on(true);
    let err = blob.read_at(0, &mut [0u8; 10]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("503") && msg.contains("?<redacted>"), "{msg}");
    assert!(!msg.contains("TOPSECRET") && !format!("{err:?}").contains("TOPSECRET"));
}

#[test]
fn bearer_tokens_need_https_or_loopback_and_a_recent_version() {
    let server = RangeServer::start(vec![1u8; 4096], "PageBlob");
    let client = Client::new(&fast_network(0)).unwrap();
    let tok = || {
        Auth::Bearer(Arc::new(StaticToken::new(SecretString::new(
            "tok123".into(),
        ))))
    };
    let b = AzureBlob::open(client.clone(), &server.url(), tok(), VERSION, false).unwrap();
    b.read_at(0, &mut [0u8; 16]).unwrap();
    assert_eq!(
        server.last_headers.lock().unwrap()["GET"]["authorization"],
        "Bearer tok123"
    );
    let e = AzureBlob::open(client.clone(), &server.url(), tok(), "2017-04-17", false).unwrap_err();
    assert!(e.to_string().contains("too old"), "{e}");
    let e = AzureBlob::open(client, "http://example.com/c/b", tok(), VERSION, false).unwrap_err();
    assert!(e.to_string().contains("plain http"), "{e}");
}

/// An in-memory backend with page alignment, counting what is durable.
struct Mem {
    data: Mutex<Vec<u8>>,
    align: u64,
    panic_at: Option<u64>,
}

impl BlockSource for Mem {
    fn size(&self) -> u64 {
        self.data.lock().unwrap().len() as u64
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> encfs_init::blob::Result<()> {
        if self.panic_at == Some(offset) {
            panic!("injected backend panic");
        }
        let d = self.data.lock().unwrap();
        buf.copy_from_slice(&d[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> encfs_init::blob::Result<()> {
        assert!(
            offset % self.align == 0 && data.len() as u64 % self.align == 0,
            "unaligned upload"
        );
        self.data.lock().unwrap()[offset as usize..offset as usize + data.len()]
            .copy_from_slice(data);
        Ok(())
    }
    fn flush(&self) -> encfs_init::blob::Result<()> {
        Ok(())
    }
    fn write_alignment(&self) -> u64 {
        self.align
    }
}

#[test]
fn random_request_sequences_match_a_plain_model() {
    for seed in 1..=12u64 {
        let size = 40 * 4096 + if seed % 2 == 0 { 0 } else { 1536 };
        let init = pattern(size, seed);
        let mem = Arc::new(Mem {
            data: Mutex::new(init.clone()),
            align: 512,
            panic_at: None,
        });
        let cache = CachedSource::new(
            mem.clone(),
            CacheConfig {
                block_size: 4096,
                cache_size: 6 * 4096,
                workers: 3,
                readahead: 3,
                reorder_window: 2,
            },
        )
        .unwrap();
        let mut model = init.clone();
        let mut durable = init.clone();
        let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
        let mut rnd = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for step in 0..400 {
            let op = rnd(10);
            let off = rnd(size as u64) as usize;
            let len = (rnd(3 * 4096) as usize + 1).min(size - off);
            match op {
                0..=4 => {
                    let mut buf = vec![0u8; len];
                    cache.read_at(off as u64, &mut buf).unwrap();
                    assert!(
                        buf == model[off..off + len],
                        "seed {seed} step {step}: read {off}+{len}"
                    );
                }
                5..=7 => {
                    let bytes = pattern(len, seed * 1000 + step);
                    if op == 7 {
                        cache.write_at_fua(off as u64, &bytes).unwrap();
                    } else {
                        cache.write_at(off as u64, &bytes).unwrap();
                    }
                    model[off..off + len].copy_from_slice(&bytes);
                    if op == 7 {
                        let d = mem.data.lock().unwrap();
                        assert!(
                            d[off..off + len] == bytes[..],
                            "seed {seed} step {step}: FUA not durable"
                        );
                    }
                }
                8 => {
                    cache.flush().unwrap();
                    durable.clone_from(&model);
                    assert!(
                        *mem.data.lock().unwrap() == durable,
                        "seed {seed} step {step}: flush"
                    );
                }
                _ => {
                    // Out-of-range requests fail cleanly.
                    let mut b = [0u8; 2];
                    assert!(cache.read_at(size as u64 - 1, &mut b).is_err());
                    assert!(cache.write_at(size as u64, &[1]).is_err());
                }
            }
        }
        cache.flush().unwrap();
        assert!(
            *mem.data.lock().unwrap() == model,
            "seed {seed}: final state"
        );
    }
}

#[test]
fn a_panicking_backend_becomes_an_error_and_the_cache_keeps_working() {
    let mem = Mem {
        data: Mutex::new(pattern(8 * 4096, 5)),
        align: 1,
        panic_at: Some(2 * 4096),
    };
    let cache = CachedSource::new(mem, CacheConfig::new(4096, 4 * 4096)).unwrap();
    let err = cache.read_at(2 * 4096 + 5, &mut [0u8; 10]).unwrap_err();
    assert!(matches!(err, Error::Panic(_)), "{err:?}");
    let mut b = [0u8; 100];
    cache.read_at(0, &mut b).unwrap();
    assert!(b[..] == pattern(8 * 4096, 5)[..100]);
}

/// Run `read` on a thread; its result, or `None` if it has not finished within `limit`.
fn within<T: Send + 'static>(
    limit: Duration,
    read: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(read());
    });
    rx.recv_timeout(limit).ok()
}

#[test]
fn a_503_with_retry_after_2_pow_64_fails_within_the_io_deadline_instead_of_sleeping() {
    let server = RangeServer::start(pattern(16 * 4096, 3), "PageBlob");
    *server.faults.retry_after.lock().unwrap() = Some(u64::MAX.to_string());
    server.set_faults(100, 0, 0, 0, 0);
    server.faults_on(true);

    // The data path: retries until the filesystem's io_deadline (as init/filesystems.rs sets it).
    let mut blob = open(&server, false, 5);
    let io_deadline = Duration::from_secs(2);
    blob.set_retry_policy(encfs_init::http::RetryPolicy {
        retries: u32::MAX,
        deadline: Some(io_deadline),
        ..*Client::new(&fast_network(5)).unwrap().policy()
    });
    let t = Instant::now();
    let r = within(Duration::from_secs(20), move || {
        blob.read_at(4096, &mut [0u8; 4096])
            .map_err(|e| e.to_string())
    });
    let msg = r
        .expect("the read ends (no panic, no endless sleep)")
        .unwrap_err();
    assert!(
        t.elapsed() < io_deadline + Duration::from_secs(2),
        "{:?}",
        t.elapsed()
    );
    assert!(
        msg.contains("within the 2 s deadline (the server asked to retry after 3600 s or more)"),
        "{msg}"
    );
    assert!(msg.contains("HTTP 503"), "{msg}");

    // A client without a deadline (as `nbd serve` and the boot's open use): the server's wait counts
    // only up to retry_backoff_max, so the retries run out promptly.
    let blob = open(&server, false, 3);
    let t = Instant::now();
    let r = within(Duration::from_secs(20), move || {
        blob.read_at(0, &mut [0u8; 4096]).map_err(|e| e.to_string())
    });
    let msg = r.expect("the read ends (no endless sleep)").unwrap_err();
    assert!(msg.contains("HTTP 503"), "{msg}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn a_range_reply_longer_than_the_range_is_refused_without_buffering_it() {
    let size = 4 << 20;
    let server = RangeServer::start(pattern(size, 4), "PageBlob");
    let blob = open(&server, false, 1);
    server.faults.extra_body.store(64 << 10, Ordering::Relaxed);
    let mut buf = vec![0u8; 4096];
    let msg = blob.read_at(8192, &mut buf).unwrap_err().to_string();
    // Refused by the body limit (the range), not read up to the blob's size and compared afterwards.
    assert!(
        msg.contains("response body too large: over 4096 bytes"),
        "{msg}"
    );
    server.faults.extra_body.store(0, Ordering::Relaxed);
    blob.read_at(8192, &mut buf).unwrap();
    assert_eq!(buf, pattern(size, 4)[8192..8192 + 4096]);
}

#[test]
fn a_content_range_total_other_than_the_size_at_open_is_refused_at_once() {
    let size = 16 * 4096;
    let server = RangeServer::start(pattern(size, 5), "PageBlob");
    let blob = open(&server, false, 3);
    *server.faults.claimed_size.lock().unwrap() = Some(2 * size as u64);
    let before = server.requests.load(Ordering::Relaxed);
    let err = blob.read_at(0, &mut [0u8; 4096]).unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&server.url()), "names the blob: {msg}");
    assert!(
        msg.contains("the blob is 131072 bytes, but it was 65536 bytes at open"),
        "{msg}"
    );
    assert!(msg.contains("; fix: "), "{msg}");
    assert_eq!(
        server.requests.load(Ordering::Relaxed) - before,
        1,
        "not retried: retrying cannot make the sizes agree"
    );
}
