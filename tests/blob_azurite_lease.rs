//! One writer per read-write blob, against Azurite (which implements Lease Blob as Azure does): a read-write
//! open takes the blob's lease and a second read-write open is refused with one line naming the fix, while
//! read-only opens are not stopped; the renewer keeps the lease past its duration; every write carries the
//! lease id (Azurite refuses a write without it on a leased blob, so each accepted write proves it); a lease
//! broken under a running mount is found by the next write or the next renewal, marks the lease lost and
//! fails every later write at once; dropping the blob (after the cache's final flush) releases the lease, so
//! the next writer gets in. Azurite as in tests/blob_azurite.rs (see tests/support/azurite.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use encfs_init::blob::{
    Auth, AzureBlob, BlockSource, CacheConfig, CachedSource, Error, LeaseConfig, LeaseState,
};
use encfs_init::http::Client;
use encfs_init::secret::SecretString;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::azurite::{self, Azurite};
use support::{fast_network, pattern};

/// The product's default `x-ms-version`.
const VERSION: &str = "2020-10-02";

/// Azure's shortest lease, renewed every `renew` seconds.
fn short(renew: u64) -> LeaseConfig {
    LeaseConfig {
        duration: Duration::from_secs(15),
        renew_every: Duration::from_secs(renew),
    }
}

fn open(az: &Azurite, blob: &str, rw: bool, lease: LeaseConfig) -> Result<AzureBlob, Error> {
    let token = azurite::valid_blob_sas("disks", blob, "rw");
    AzureBlob::open_with(
        Client::new(&fast_network(2)).unwrap(),
        &az.blob_url("disks", blob),
        Auth::Sas(Arc::new(SecretString::new(token))),
        VERSION,
        rw,
        lease,
    )
}

/// The blob's lease state as the service reports it (Get Blob Properties).
fn lease_state(az: &Azurite, blob: &str) -> String {
    az.properties("disks", blob)
        .header("x-ms-lease-state")
        .unwrap_or("none")
        .to_string()
}

/// A Put Page of one page without a lease id, as another writer would send it: its status and error code.
fn foreign_write(az: &Azurite, blob: &str) -> (u16, String) {
    let path = format!("/devstoreaccount1/disks/{blob}?comp=page");
    let r = az.shared_key(
        "PUT",
        &path,
        &[("x-ms-page-write", "update"), ("x-ms-range", "bytes=0-511")],
        &[9; 512],
    );
    let code = r.header("x-ms-error-code").unwrap_or("").to_string();
    (r.status, code)
}

#[test]
fn a_read_write_open_takes_the_lease_a_second_writer_is_refused_and_readers_are_not() {
    let az = Azurite::start();
    az.create_container("disks", false);
    let data = pattern(64 << 10, 1);
    az.put_page_blob("disks", "a.img", &data);

    let first = open(&az, "a.img", true, LeaseConfig::DEFAULT).unwrap();
    assert_eq!(lease_state(&az, "a.img"), "leased");
    assert_eq!(
        az.properties("disks", "a.img")
            .header("x-ms-lease-duration"),
        Some("fixed")
    );
    assert_eq!(first.lease().unwrap().state(), LeaseState::Held);
    // The service enforces it: a write without our lease id is refused...
    assert_eq!(foreign_write(&az, "a.img"), (412, "LeaseIdMissing".into()));
    // ...and ours, which carry it, are accepted.
    first.write_at(4096, &pattern(8192, 2)).unwrap();
    assert!(az.get_blob("disks", "a.img")[4096..12288] == pattern(8192, 2)[..]);

    // A second read-write open: refused at open, in one line that says why and how to get out of it.
    let err = open(&az, "a.img", true, LeaseConfig::DEFAULT).unwrap_err();
    assert!(matches!(err, Error::Leased { .. }), "{err:?}");
    let line = encfs_init::errors::chain(&err);
    assert!(!line.contains('\n'), "{line}");
    assert!(
        line.starts_with(&format!(
            "{} is leased by another writer (HTTP 409 LeaseAlreadyPresent)",
            az.blob_url("disks", "a.img")
        )),
        "{line}"
    );
    assert!(line.contains("; fix: stop the other writer"), "{line}");
    assert!(line.contains("x-ms-lease-action: break"), "{line}");
    assert!(!line.contains("sig="), "no SAS in {line}");
    // The refused writer left the lease alone.
    first.write_at(0, &pattern(512, 3)).unwrap();

    // Readers take no lease and are not stopped by one.
    let reader = open(&az, "a.img", false, LeaseConfig::DEFAULT).unwrap();
    assert!(reader.lease().is_none());
    let mut buf = vec![0u8; 512];
    reader.read_at(0, &mut buf).unwrap();
    assert!(buf == pattern(512, 3));
    drop(reader);
    assert_eq!(
        lease_state(&az, "a.img"),
        "leased",
        "a reader released nothing"
    );

    // Dropping the writer releases the lease: the next writer gets in at once.
    drop(first);
    assert_eq!(lease_state(&az, "a.img"), "available");
    let next = open(&az, "a.img", true, LeaseConfig::DEFAULT).unwrap();
    next.write_at(512, &pattern(512, 4)).unwrap();
}

#[test]
fn the_renewer_keeps_the_lease_past_its_duration() {
    let az = Azurite::start();
    az.create_container("disks", false);
    az.put_page_blob("disks", "r.img", &pattern(8192, 5));
    let blob = open(&az, "r.img", true, short(3)).unwrap();
    // Past the 15 s duration: only renewals keep it.
    std::thread::sleep(Duration::from_secs(17));
    assert_eq!(lease_state(&az, "r.img"), "leased");
    assert_eq!(blob.lease().unwrap().state(), LeaseState::Held);
    blob.write_at(0, &pattern(512, 6)).unwrap();
    let err = open(&az, "r.img", true, short(3)).unwrap_err();
    assert!(matches!(err, Error::Leased { .. }), "{err:?}");
}

#[test]
fn without_renewal_the_lease_expires_and_the_next_write_reports_it_lost() {
    // The control for the renewal test: the same wait without a renewal loses the lease.
    let az = Azurite::start();
    az.create_container("disks", false);
    az.put_page_blob("disks", "x.img", &pattern(8192, 7));
    let blob = open(&az, "x.img", true, short(3600)).unwrap();
    std::thread::sleep(Duration::from_secs(16));
    assert_eq!(lease_state(&az, "x.img"), "expired");
    let err = blob.write_at(0, &pattern(512, 8)).unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err:?}");
    assert_eq!(blob.lease().unwrap().state(), LeaseState::Lost);
}

#[test]
fn a_broken_lease_is_found_by_the_next_write_and_every_later_write_fails_at_once() {
    let az = Azurite::start();
    az.create_container("disks", false);
    az.put_page_blob("disks", "b.img", &pattern(8192, 9));
    // No renewal during the test: the write finds it.
    let blob = open(&az, "b.img", true, short(3600)).unwrap();
    blob.write_at(0, &pattern(512, 10)).unwrap();
    let r = az.lease(
        "disks",
        "b.img",
        "break",
        &[("x-ms-lease-break-period", "0")],
    );
    assert_eq!(r.status, 202, "{r:?}");

    let t = Instant::now();
    let err = blob.write_at(512, &pattern(512, 11)).unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "not retried: {:?}",
        t.elapsed()
    );
    assert!(matches!(err, Error::LeaseLost { .. }), "{err:?}");
    let line = encfs_init::errors::chain(&err);
    assert!(
        line.contains("our write lease on the blob is lost (a write answered HTTP 412 LeaseNotPresentWithBlobOperation)"),
        "{line}"
    );
    assert!(
        line.contains("; fix: make sure only one encfs-init"),
        "{line}"
    );
    assert_eq!(blob.lease().unwrap().state(), LeaseState::Lost);
    assert!(az.get_blob("disks", "b.img")[512..1024] == pattern(8192, 9)[512..1024]);

    // Every later write fails the same way, through the cache too; reads go on.
    let cache = CachedSource::new(blob, CacheConfig::new(4096, 16 * 4096)).unwrap();
    cache.write_at(1024, &pattern(512, 12)).unwrap();
    let err = cache.flush().unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err:?}");
    let mut buf = vec![0u8; 512];
    cache.read_at(4096, &mut buf).unwrap();
}

#[test]
fn a_broken_lease_is_found_by_the_renewer_without_a_write() {
    let az = Azurite::start();
    az.create_container("disks", false);
    az.put_page_blob("disks", "c.img", &pattern(8192, 13));
    let blob = open(&az, "c.img", true, short(1)).unwrap();
    let watch = blob.lease().unwrap();
    let r = az.lease(
        "disks",
        "c.img",
        "break",
        &[("x-ms-lease-break-period", "0")],
    );
    assert_eq!(r.status, 202, "{r:?}");
    let t = Instant::now();
    while watch.state() == LeaseState::Held && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(watch.state(), LeaseState::Lost);
    // The write then fails without asking the service.
    let err = blob.write_at(0, &pattern(512, 14)).unwrap_err();
    let line = encfs_init::errors::chain(&err);
    assert!(
        line.contains("(renewing it answered HTTP 409 LeaseIsBrokenAndCannotBeRenewed)"),
        "{line}"
    );
    // A lost lease is not ours to release: dropping the blob leaves the broken lease as it is.
    drop(blob);
    assert_eq!(lease_state(&az, "c.img"), "broken");
}

#[test]
fn the_lease_is_released_after_the_caches_final_flush() {
    let az = Azurite::start();
    az.create_container("disks", false);
    let mut model = pattern(64 << 10, 15);
    az.put_page_blob("disks", "f.img", &model);
    let cache = CachedSource::new(
        open(&az, "f.img", true, LeaseConfig::DEFAULT).unwrap(),
        CacheConfig::new(16 << 10, 4 * (16 << 10)),
    )
    .unwrap();
    cache.write_at(20_000, &[0xab; 3000]).unwrap();
    model[20_000..23_000].fill(0xab);
    cache.flush().unwrap();
    drop(cache);
    assert_eq!(lease_state(&az, "f.img"), "available");
    assert!(az.get_blob("disks", "f.img") == model);
    // Another writer now gets the lease (and a foreign write is refused again while it holds it).
    let next = open(&az, "f.img", true, LeaseConfig::DEFAULT).unwrap();
    assert_eq!(foreign_write(&az, "f.img").0, 412);
    drop(next);
    assert_eq!(foreign_write(&az, "f.img").0, 201, "released again");
}
