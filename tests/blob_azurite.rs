//! The Azure Blob client against Azurite, the real Azure Storage emulator (`azurite-blob`, installed by
//! `cargo xtask setup`; see tests/support/azurite.rs). Each test starts its own emulator on a free loopback
//! port, sets blobs up with Shared Key requests, and drives `AzureBlob` (and the block cache on top) as the
//! product does: page and block blobs opened from their properties, ranged reads including a short last
//! block, Put Page read back two ways, SAS (valid, wrong signature, expired), the pinned ETag catching a blob
//! replaced under a running mount, read-write refused on a block blob, anonymous access to a public
//! container, and bearer tokens over HTTPS (Azurite's `--oauth basic` checks their lifetime, issuer and
//! audience). Without Azurite installed these tests fail, naming `cargo xtask setup`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use encfs_init::blob::{
    Auth, AzureBlob, BearerSource, BlobType, BlockSource, CacheConfig, CachedSource, Error,
    LeaseState,
};
use encfs_init::http::Client;
use encfs_init::secret::SecretString;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::azurite::{self, Azurite};
use support::{fast_network, pattern};

/// The product's default `x-ms-version` (manifest `api_versions.blob`).
const VERSION: &str = "2020-10-02";
/// Cache block size in these tests; blob sizes are chosen not to be multiples of it.
const BLOCK: usize = 64 << 10;

/// The client as the product builds it for this emulator: over HTTPS, the test CA is the manifest's
/// `ca_bundle`.
fn client(az: &Azurite) -> Client {
    let mut plan = fast_network(2);
    plan.ca_bundle = az.ca_bundle().map(|p| p.to_path_buf());
    Client::new(&plan).unwrap()
}

fn open(
    az: &Azurite,
    container: &str,
    blob: &str,
    auth: Auth,
    rw: bool,
) -> Result<AzureBlob, Error> {
    AzureBlob::open(client(az), &az.blob_url(container, blob), auth, VERSION, rw)
}

fn sas(token: String) -> Auth {
    Auth::Sas(Arc::new(SecretString::new(token)))
}

/// Read the whole source through a cache of 64 KiB blocks (parallel fetches, readahead) in uneven pieces.
fn read_all_cached(src: AzureBlob) -> Vec<u8> {
    let size = src.size() as usize;
    let cache = CachedSource::new(
        src,
        CacheConfig {
            block_size: BLOCK as u64,
            cache_size: 4 * BLOCK as u64,
            workers: 3,
            readahead: 2,
            reorder_window: 2,
        },
    )
    .unwrap();
    let mut out = vec![0u8; size];
    let mut off = 0;
    while off < size {
        let n = (50_000 + off % 30_000).min(size - off);
        cache.read_at(off as u64, &mut out[off..off + n]).unwrap();
        off += n;
    }
    out
}

#[test]
fn page_blob_opens_with_size_and_type_and_reads_ranges_including_the_short_last_block() {
    let az = Azurite::start();
    az.create_container("disks", false);
    let size = 5 * BLOCK + 1536; // page-aligned, not block-aligned: the last block is 1536 bytes
    let data = pattern(size, 11);
    az.put_page_blob("disks", "page.img", &data);
    let sas = azurite::valid_blob_sas("disks", "page.img", "r");

    let blob = open(&az, "disks", "page.img", self::sas(sas), false).unwrap();
    assert_eq!(blob.size(), size as u64);
    assert_eq!(blob.blob_type(), BlobType::PageBlob);
    assert!(blob.read_only());
    assert_eq!(
        blob.etag(),
        az.properties("disks", "page.img").header("etag").unwrap()
    );

    // Ranged reads straight from the client: the first bytes, one crossing a block boundary, the short
    // last block exactly, and the very last byte.
    for (off, len) in [
        (0, 512),
        (BLOCK - 100, 300),
        (5 * BLOCK, 1536),
        (size - 1, 1),
        (777, 3 * BLOCK),
    ] {
        let mut buf = vec![0u8; len];
        blob.read_at(off as u64, &mut buf).unwrap();
        assert!(buf == data[off..off + len], "range {off}+{len} differs");
    }
    // Past the end is refused locally, before any request.
    let mut buf = vec![0u8; 2];
    assert!(matches!(
        blob.read_at(size as u64 - 1, &mut buf),
        Err(Error::OutOfRange { .. })
    ));

    // Through the block cache: every block, the short last one clipped to the blob's end.
    assert!(read_all_cached(blob) == data, "cached read differs");
}

#[test]
fn block_blob_opens_with_size_and_type_and_reads_ranges_including_the_short_last_block() {
    let az = Azurite::start();
    az.create_container("images", false);
    let size = 3 * BLOCK + 12_345; // not even page-aligned: block blobs can be any size
    let data = pattern(size, 12);
    az.put_block_blob("images", "disk.img", &data);
    let sas = azurite::valid_blob_sas("images", "disk.img", "r");

    let blob = open(&az, "images", "disk.img", self::sas(sas), false).unwrap();
    assert_eq!(blob.size(), size as u64);
    assert_eq!(blob.blob_type(), BlobType::BlockBlob);
    assert!(blob.read_only());

    let mut last = vec![0u8; 12_345];
    blob.read_at(3 * BLOCK as u64, &mut last).unwrap();
    assert!(last == data[3 * BLOCK..], "short last block differs");
    let mut mid = vec![0u8; 2 * BLOCK];
    blob.read_at(BLOCK as u64 / 2, &mut mid).unwrap();
    assert!(mid == data[BLOCK / 2..BLOCK / 2 + 2 * BLOCK]);

    assert!(read_all_cached(blob) == data, "cached read differs");
}

#[test]
fn put_page_then_read_back_by_the_client_and_by_an_independent_shared_key_get() {
    let az = Azurite::start();
    az.create_container("disks", false);
    let size = (5 << 20) + 1536; // room for one write above Put Page's 4 MiB limit
    let mut expect = pattern(size, 21);
    az.put_page_blob("disks", "rw.img", &expect);
    let sas = azurite::valid_blob_sas("disks", "rw.img", "rw");
    let blob = open(&az, "disks", "rw.img", self::sas(sas), true).unwrap();
    assert!(!blob.read_only());
    let etag0 = blob.etag();

    // One page, a write crossing block boundaries, the last page, and 4.5 MiB (more than one Put Page
    // may carry, so the client splits it into two requests).
    let writes = [
        (512usize, pattern(512, 1)),
        (BLOCK - 1024, pattern(2 * BLOCK + 2048, 2)),
        (size - 512, pattern(512, 3)),
        (3 * BLOCK, pattern((4 << 20) + (512 << 10), 4)),
    ];
    for (off, chunk) in &writes {
        blob.write_at(*off as u64, chunk).unwrap();
        expect[*off..*off + chunk.len()].copy_from_slice(chunk);
    }
    // Our own writes moved the ETag, and the client follows them (no "replaced" error on its own writes).
    let now = az.properties("disks", "rw.img");
    assert_ne!(blob.etag(), etag0);
    assert_eq!(blob.etag(), now.header("etag").unwrap());

    // Read back by the client under test...
    let mut back = vec![0u8; size];
    blob.read_at(0, &mut back).unwrap();
    assert!(back == expect, "client read-back differs");
    // ...and by an independent Shared Key GET of the whole blob.
    assert!(
        az.get_blob("disks", "rw.img") == expect,
        "Shared Key read-back differs"
    );

    // Unaligned writes never reach the service.
    assert!(matches!(
        blob.write_at(100, &[1; 512]),
        Err(Error::Unaligned { align: 512, .. })
    ));
}

#[test]
fn valid_sas_works_and_a_wrong_signature_or_expired_sas_is_refused_with_403() {
    let az = Azurite::start();
    az.create_container("disks", false);
    let data = pattern(8192, 31);
    az.put_page_blob("disks", "s.img", &data);

    // A valid read SAS works.
    let good = azurite::valid_blob_sas("disks", "s.img", "r");
    let blob = open(&az, "disks", "s.img", sas(good.clone()), false).unwrap();
    let mut buf = vec![0u8; 8192];
    blob.read_at(0, &mut buf).unwrap();
    assert_eq!(buf, data);

    // The same token with its signature changed.
    let (head, sig) = good.rsplit_once("&sig=").unwrap();
    let bad_sig = format!("{head}&sig={}", azurite::encode(&"A".repeat(44)));
    assert_ne!(sig, azurite::encode(&"A".repeat(44)));
    // A correctly signed token whose validity ended an hour ago.
    let now = SystemTime::now();
    let expired = azurite::blob_sas(
        "disks",
        "s.img",
        "r",
        now - Duration::from_secs(7200),
        now - Duration::from_secs(3600),
    );
    for (what, auth) in [("wrong signature", sas(bad_sig)), ("expired", sas(expired))] {
        let err = open(&az, "disks", "s.img", auth, false).unwrap_err();
        let shown = err.to_string();
        // Refused at open (HEAD), not retried: HTTP 403 with the service's error code, on the blob's URL.
        assert!(shown.contains("HTTP 403"), "{what}: {shown}");
        assert!(shown.contains("AuthorizationFailure"), "{what}: {shown}");
        assert!(shown.contains("/disks/s.img"), "{what}: {shown}");
        // It says the SAS was refused and what to check in it.
        assert!(shown.contains("refused our SAS"), "{what}: {shown}");
        assert!(shown.contains("fix: check the SAS"), "{what}: {shown}");
        // The token itself never appears in the error.
        assert!(!shown.contains("sig="), "{what}: {shown}");
    }
}

#[test]
fn etag_change_is_detected_when_a_page_blob_is_overwritten_after_open() {
    let az = Azurite::start();
    az.create_container("disks", false);
    let size = 2 * BLOCK;
    let data = pattern(size, 41);
    az.put_page_blob("disks", "e.img", &data);
    let blob = open(
        &az,
        "disks",
        "e.img",
        sas(azurite::valid_blob_sas("disks", "e.img", "r")),
        false,
    )
    .unwrap();
    let mut buf = vec![0u8; BLOCK];
    blob.read_at(0, &mut buf).unwrap();
    assert!(buf == data[..BLOCK]);

    // Someone else writes pages (Shared Key) while we have it open.
    az.write_pages("disks", "e.img", BLOCK as u64, &pattern(BLOCK, 42));
    let mut buf = vec![0u8; BLOCK];
    let err = blob.read_at(BLOCK as u64, &mut buf).unwrap_err();
    assert!(matches!(err, Error::Changed { .. }), "{err:?}");
    assert!(err.to_string().contains("replaced"), "{err}");
    assert!(buf.iter().all(|&b| b == 0), "no new data was handed out");
    // Also for ranges that did not change: the whole blob is no longer the one we opened.
    let err = blob.read_at(0, &mut buf).unwrap_err();
    assert!(matches!(err, Error::Changed { .. }), "{err:?}");
}

#[test]
fn etag_change_is_detected_when_a_block_blob_is_replaced_after_open() {
    let az = Azurite::start();
    az.create_container("images", false);
    let data = pattern(100_000, 51);
    az.put_block_blob("images", "r.img", &data);
    let blob = open(
        &az,
        "images",
        "r.img",
        sas(azurite::valid_blob_sas("images", "r.img", "r")),
        false,
    )
    .unwrap();
    // Replaced by a blob of the same size: only the ETag tells.
    az.put_block_blob("images", "r.img", &pattern(100_000, 52));
    let mut buf = vec![0u8; 4096];
    let err = blob.read_at(0, &mut buf).unwrap_err();
    assert!(matches!(err, Error::Changed { .. }), "{err:?}");
    assert!(err.to_string().contains("replaced"), "{err}");
}

#[test]
fn read_write_on_a_block_blob_is_refused_at_open() {
    let az = Azurite::start();
    az.create_container("images", false);
    az.put_block_blob("images", "b.img", &pattern(4096, 61));
    let token = azurite::valid_blob_sas("images", "b.img", "rw");
    let err = open(&az, "images", "b.img", sas(token.clone()), true).unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains("BlockBlob"), "{shown}");
    assert!(
        shown.contains("read-write mounts need a page blob"),
        "{shown}"
    );
    // Read-only is fine.
    assert!(open(&az, "images", "b.img", sas(token), false).is_ok());
}

#[test]
fn anonymous_access_to_a_public_container_reads_and_a_private_one_is_refused() {
    let az = Azurite::start();
    az.create_container("public", true);
    az.create_container("private", false);
    let data = pattern(3 * 512, 71);
    az.put_page_blob("public", "p.img", &data);
    az.put_page_blob("private", "p.img", &data);

    let blob = open(&az, "public", "p.img", Auth::Anonymous, false).unwrap();
    assert_eq!(blob.size(), data.len() as u64);
    assert_eq!(blob.blob_type(), BlobType::PageBlob);
    let mut buf = vec![0u8; 1000];
    blob.read_at(300, &mut buf).unwrap();
    assert!(buf == data[300..1300]);

    // Azure hides private containers from anonymous callers (404); Azurite answers 403. Either way: no data.
    let err = open(&az, "private", "p.img", Auth::Anonymous, false).unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("403") || shown.contains("404"), "{shown}");
}

/// A token source as the identity module is to the blob client: asked for a token before every request. It
/// mints `mint(n)` for the n-th call (from 0) and counts the calls.
struct MintedTokens {
    calls: AtomicUsize,
    mint: Box<dyn Fn(usize) -> String + Send + Sync>,
}

impl std::fmt::Debug for MintedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MintedTokens")
    }
}

impl BearerSource for MintedTokens {
    fn token(&self) -> encfs_init::blob::Result<SecretString> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(SecretString::new((self.mint)(n)))
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

const STORAGE: &str = "https://storage.azure.com";
const ENTRA: &str = "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/";

fn bearer(mint: impl Fn(usize) -> String + Send + Sync + 'static) -> (Auth, Arc<MintedTokens>) {
    let source = Arc::new(MintedTokens {
        calls: AtomicUsize::new(0),
        mint: Box::new(mint),
    });
    (Auth::Bearer(source.clone()), source)
}

#[test]
fn bearer_tokens_over_https_read_and_write_and_each_request_asks_for_a_current_token() {
    let az = Azurite::start_oauth();
    az.create_container("images", false);
    let data = pattern(5 * 512 + 4096, 91);
    az.put_page_blob("images", "p.img", &data);

    let (auth, source) = bearer(|_| {
        let t = now_secs();
        azurite::bearer_jwt(STORAGE, ENTRA, t - 60, t + 3600)
    });
    let blob = open(&az, "images", "p.img", auth, true).unwrap();
    assert_eq!(blob.size(), data.len() as u64);
    let mut buf = vec![0u8; 3000];
    blob.read_at(700, &mut buf).unwrap();
    assert!(buf == data[700..3700]);
    // Put Page under the bearer token, read back independently with Shared Key.
    let page = pattern(512, 92);
    blob.write_at(1024, &page).unwrap();
    assert!(az.get_blob("images", "p.img")[1024..1536] == page[..]);
    // The write lease, acquired and sent under the bearer token too.
    assert_eq!(blob.lease().map(|l| l.state()), Some(LeaseState::Held));
    assert_eq!(
        az.properties("images", "p.img").header("x-ms-lease-state"),
        Some("leased")
    );
    // Open (properties), one read, one write: each asked the source, none reused a token it kept.
    assert!(source.calls.load(Ordering::SeqCst) >= 3);
}

#[test]
fn bearer_token_with_the_wrong_audience_issuer_or_lifetime_is_refused_at_open_naming_it() {
    let az = Azurite::start_oauth();
    az.create_container("images", false);
    az.put_page_blob("images", "p.img", &pattern(1024, 93));
    let t = now_secs();
    let cases = [
        (
            "expired",
            azurite::bearer_jwt(STORAGE, ENTRA, t - 7200, t - 3600),
        ),
        (
            "not yet valid",
            azurite::bearer_jwt(STORAGE, ENTRA, t + 3600, t + 7200),
        ),
        (
            "vault audience",
            azurite::bearer_jwt("https://vault.azure.net", ENTRA, t - 60, t + 3600),
        ),
        (
            "foreign issuer",
            azurite::bearer_jwt(STORAGE, "https://evil.example/", t - 60, t + 3600),
        ),
    ];
    for (what, jwt) in cases {
        let (auth, _) = bearer(move |_| jwt.clone());
        let err = open(&az, "images", "p.img", auth, false).unwrap_err();
        let shown = err.to_string();
        assert!(
            matches!(
                err,
                Error::Denied {
                    status: 401 | 403,
                    ..
                }
            ),
            "{what}: {shown}"
        );
        assert!(shown.contains("bearer token"), "{what}: {shown}");
        // The fix is about the token (audience, issuer, clock), not the identity's role.
        assert!(
            shown.contains("not accepted") && shown.contains("https://storage.azure.com/"),
            "{what}: {shown}"
        );
        assert!(
            !shown.contains("not checked") && !shown.contains("eyJ"),
            "{what}: token in {shown}"
        );
    }
}

#[test]
fn a_token_that_expires_under_a_running_mount_fails_the_request_it_is_sent_with() {
    // The source hands out a valid token for the open and the first read, then only expired ones: the
    // client must send what the source gives it now (a refreshing source keeps it valid), not a token
    // kept from open, and must fail that request rather than return data.
    let az = Azurite::start_oauth();
    az.create_container("images", false);
    let data = pattern(4096, 94);
    az.put_page_blob("images", "p.img", &data);
    let (auth, _) = bearer(|n| {
        let t = now_secs();
        if n < 2 {
            azurite::bearer_jwt(STORAGE, ENTRA, t - 60, t + 3600)
        } else {
            azurite::bearer_jwt(STORAGE, ENTRA, t - 7200, t - 3600)
        }
    });
    let blob = open(&az, "images", "p.img", auth, false).unwrap();
    let mut buf = vec![0u8; 512];
    blob.read_at(0, &mut buf).unwrap();
    assert!(buf == data[..512]);
    let err = blob.read_at(512, &mut buf).unwrap_err().to_string();
    assert!(err.contains("401") || err.contains("403"), "{err}");
}

#[test]
fn support_dates_are_utc() {
    let t = UNIX_EPOCH + Duration::from_secs(1_795_994_529);
    assert_eq!(azurite::iso8601(t), "2026-11-29T23:22:09Z");
    assert_eq!(azurite::rfc1123(t), "Sun, 29 Nov 2026 23:22:09 GMT");
    assert_eq!(
        azurite::rfc1123(UNIX_EPOCH),
        "Thu, 01 Jan 1970 00:00:00 GMT"
    );
    // A leap day.
    let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
    assert_eq!(azurite::iso8601(leap), "2000-02-29T00:00:00Z");
}
