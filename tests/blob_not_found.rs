//! A blob that is not there: `AzureBlob::open` against the range server serving only another path gives
//! [`Error::NotFound`], whose message names the blob URL (never its SAS), the HTTP status and Azure's error
//! code, and says what to check; a 404 is not retried.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/range_server.rs"]
mod range_server;

use encfs_init::blob::{Auth, AzureBlob, Error};
use encfs_init::http::Client;
use encfs_init::manifest::NetworkPlan;
use encfs_init::secret::SecretString;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn a_missing_blob_is_not_found_with_the_url_and_a_fix() {
    let server = range_server::RangeServer::start(vec![0u8; 65536], "PageBlob");
    *server.faults.only_path.lock().unwrap() = Some("/c/fs.img".into());
    let client = Client::new(&NetworkPlan {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        retries: 3,
        retry_backoff_max: Duration::from_millis(20),
        ca_bundle: None,
        ca_bundle_sha256: None,
    })
    .unwrap();
    let url = format!("http://{}/c/missing.img", server.addr);
    let sas = Arc::new(SecretString::new("sv=2020-10-02&sig=SECRETSIG".into()));
    let err =
        AzureBlob::open(client.clone(), &url, Auth::Sas(sas), "2020-10-02", false).unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { url: u, code: Some(c) } if *u == url && c == "BlobNotFound"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "{url}: no such blob (HTTP 404 BlobNotFound); fix: check"
        )),
        "{msg}"
    );
    assert!(!msg.contains("SECRETSIG") && !msg.contains("sig="), "{msg}");
    assert_eq!(
        server.requests.load(Ordering::Relaxed),
        1,
        "a 404 is not retried"
    );

    // The served path still opens.
    let ok = format!("http://{}/c/fs.img", server.addr);
    let blob = AzureBlob::open(client, &ok, Auth::Anonymous, "2020-10-02", false).unwrap();
    assert_eq!(encfs_init::blob::BlockSource::size(&blob), 65536);
}
