//! Each filesystem's blob, read but not changed (no lease taken, no key used): its properties (HEAD: size,
//! type, ETag, lease), its LUKS2 header read and checked as the boot checks it ([`Header::parse_pinned`]:
//! the parameter allowlist, both copies, the `header_sha256` pin; the data segment placed on the device),
//! and, when the manifest pins `verity_root_hash`, the superblock at `verity_hash_offset` and the whole
//! hash tree against the pinned root (the boot's check before it maps dm-verity).
#![forbid(unsafe_code)]

use super::Finding;
use crate::blob::{self, AzureBlob, BlockSource};
use crate::http::Client;
use crate::init::filesystems::VerityError;
use crate::luks2::{Header, HeaderRead};
use crate::manifest::{FilesystemPlan, Plan};

/// How requests to `fs`'s blob are authorized: the boot's way ([`crate::init::filesystems::blob_auth`]).
fn auth(fs: &FilesystemPlan, plan: &Plan, client: &Client) -> Result<blob::Auth, Finding> {
    crate::init::filesystems::blob_auth(fs, plan, client, None).map_err(|e| {
        Finding::error(
            format!("blob[{}] head", fs.index),
            &e,
            "fix the identity settings",
        )
    })
}

/// The blob's properties.
pub fn head(fs: &FilesystemPlan, a: blob::Auth, client: &Client, version: &str) -> Finding {
    let check = format!("blob[{}] head", fs.index);
    let url = crate::redact::url(&fs.url.url);
    let p = match blob::azure::head(client.clone(), &fs.url.url, a, version) {
        Ok(p) => p,
        Err(e) => {
            return Finding::error(
                check,
                &e,
                "check the blob URL and its access in the manifest",
            )
        }
    };
    let lease = match (&p.lease_state, &p.lease_status) {
        (Some(s), Some(st)) => format!("lease {s} ({st})"),
        (Some(s), None) => format!("lease {s}"),
        _ => "no lease headers".to_string(),
    };
    let what = format!(
        "{url}: {} bytes, {}, ETag {}, {lease}",
        p.size, p.blob_type, p.etag
    );
    if fs.read_write && p.blob_type != "PageBlob" {
        return Finding::problem(
            check,
            format!("{what}: read-write needs a page blob"),
            "mount it read-only, or upload the image as a page blob",
        );
    }
    if fs.read_write && p.lease_state.as_deref() == Some("leased") {
        return Finding::problem(
            check,
            format!("{what}: another writer holds its lease"),
            &format!(
                "stop the other writer, or {}",
                crate::blob::azure::lease::break_hint(&fs.url.url)
            ),
        );
    }
    Finding::ok(check, what)
}

/// The LUKS2 header on `src` (a device of `device_size` bytes: the blob, or the verified part of it).
pub fn luks2(
    index: usize,
    src: &dyn BlockSource,
    device_size: u64,
    pin: Option<&[u8; 32]>,
) -> Finding {
    let check = format!("blob[{index}] luks2");
    let read = |len: u64| -> Result<Vec<u8>, Finding> {
        let len = len.min(src.size());
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
        src.read_at(0, &mut buf)
            .map_err(|e| Finding::error(check.clone(), &e, "check the blob's access"))?;
        Ok(buf)
    };
    let h = match Header::read_pinned(read, pin) {
        Ok(h) => h,
        Err(HeaderRead::Read(f)) => return f,
        Err(HeaderRead::Header(e)) => {
            return Finding::error(check, &e, crate::init::filesystems::HEADER_FIX)
        }
    };
    if let Err(e) = h.data_range(device_size) {
        return Finding::error(check, &e, crate::init::filesystems::HEADER_FIX);
    }
    let s = &h.segment;
    let mut what = format!(
        "LUKS2 uuid {}, {} {}-bit, {} keyslot(s), header_sha256 {}{}",
        h.binary.uuid,
        s.cipher,
        s.key_size * 8,
        h.keyslots.len(),
        crate::hex::encode(&h.header_sha256),
        if pin.is_some() {
            " (matches the pin)"
        } else {
            ""
        }
    );
    for w in &h.warnings {
        what.push_str(&format!("; warning: {w}"));
    }
    Finding::ok(check, what)
}

/// The verity superblock at `offset` and the hash tree against `root`: what the boot checks before it maps
/// the blob ([`crate::init::filesystems::checked_superblock`]).
pub fn verity(index: usize, src: &dyn BlockSource, offset: u64, root: &[u8; 32]) -> Finding {
    let name = format!("blob[{index}] verity");
    match crate::init::filesystems::checked_superblock(src, offset, root) {
        Ok(sb) => Finding::ok(
            name,
            format!(
                "superblock at byte {offset}, {} data blocks; every hash tree block matches verity_root_hash {}",
                sb.data_blocks,
                crate::hex::encode(root)
            ),
        ),
        Err(VerityError::SuperblockRead(e)) => Finding::error(name, &*e, "check the blob's access"),
        Err(VerityError::Superblock(e)) => Finding::error(
            name,
            &e,
            "check verity_hash_offset (`encfs-init image seal` prints it) and that the blob is the sealed image",
        ),
        Err(e) => Finding::error(name, &e, ""),
    }
}

/// Every blob finding for `plan`.
pub fn check(plan: &Plan, client: &Client) -> Vec<Finding> {
    let mut out = Vec::new();
    let version = &plan.api_versions.blob;
    for fs in &plan.filesystems {
        let i = fs.index;
        let a = match auth(fs, plan, client) {
            Ok(a) => a,
            Err(f) => {
                out.push(f);
                continue;
            }
        };
        let h = head(fs, a.clone(), client, version);
        let ok = h.status == super::Status::Ok;
        out.push(h);
        if !ok {
            out.push(Finding::skipped(
                format!("blob[{i}] luks2"),
                "the blob's HEAD failed",
            ));
            if fs.verity.is_some() {
                out.push(Finding::skipped(
                    format!("blob[{i}] verity"),
                    "the blob's HEAD failed",
                ));
            }
            continue;
        }
        // Read-only, so no lease is taken and nothing is written.
        let src = match AzureBlob::open(client.clone(), &fs.url.url, a, version, false) {
            Ok(b) => b,
            Err(e) => {
                out.push(Finding::error(
                    format!("blob[{i}] luks2"),
                    &e,
                    "check the blob's access",
                ));
                continue;
            }
        };
        let device_size = fs
            .verity
            .as_ref()
            .map_or(src.size(), |v| v.hash_offset.min(src.size()));
        out.push(luks2(i, &src, device_size, fs.header_sha256.as_ref()));
        if let Some(v) = &fs.verity {
            out.push(verity(i, &src, v.hash_offset, &v.root_hash));
        }
    }
    out
}
