//! `image check`: the header summary and whether a key opens it.

use super::create::read_key;
use crate::errors::chain;
use crate::exit;
use crate::luks2::{self, Error, Header, Priority, SegmentSize};
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Two copies of the largest header: enough to parse any header.
const PARSE_BYTES: u64 = 8 << 20;
/// Largest metadata (both copies + the largest keyslots area) that unlocking may need.
const MAX_METADATA: u64 = PARSE_BYTES + luks2::validate::MAX_KEYSLOTS_SIZE;

const HINT: &str = "\
hint: the key file must hold the exact bytes used as the LUKS2 passphrase: the raw 32-byte key, not hex,
      no trailing newline. How upstream (and encfs-init) turns a released key into those bytes:
  - oct / oct-HSM key: the JWK's \"k\" value, base64url-decoded; it must be exactly 32 bytes.
  - RSA-HSM key: HKDF-SHA256 with IKM = the RSA private exponent d as minimal big-endian bytes (no
    leading zeros), salt = hex-decoded key_derivation.salt (empty salt if none), info =
    key_derivation.label or \"Symmetric Encryption Key\", 32 bytes of output.
    Known trap (upstream issue #233): `importkey -out` with no salt in its config derives with a RANDOM
    salt (and prints it), while the sidecar derives with an EMPTY salt, so the image's key and the
    released key differ. Fix: put the salt importkey printed into the manifest's key_derivation.salt (and
    the same label), or re-create the image from a key derived with the manifest's salt and label.";

fn read_head(path: &Path, n: u64) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    File::open(path)?.take(n).read_to_end(&mut v)?;
    Ok(v)
}

/// Print the summary of `h` for a device of `device_size` bytes.
pub fn summary(h: &Header, device_size: u64) -> String {
    let b = &h.binary;
    let s = &h.segment;
    let mut out = format!(
        "LUKS2 header (version 2, seqid {}, hdr_size {}, from the {})\n  uuid:          {}\n",
        b.seqid, b.hdr_size, b.copy, b.uuid
    );
    if !b.label.is_empty() {
        out += &format!("  label:         {}\n", b.label);
    }
    out += &format!(
        "  header_sha256: {}\n",
        crate::hex::encode(&h.header_sha256)
    );
    let size = match (s.size, h.data_range(device_size)) {
        (SegmentSize::Dynamic, Ok((_, len))) => format!("dynamic ({len} bytes on this device)"),
        (SegmentSize::Dynamic, Err(e)) => format!("dynamic ({})", chain(&e)),
        (SegmentSize::Fixed(n), Ok(_)) => format!("{n} bytes"),
        (SegmentSize::Fixed(n), Err(e)) => format!("{n} bytes ({})", chain(&e)),
    };
    out += &format!(
        "  data segment:  {}, {}-bit key, {}-byte sectors, offset {}, size {}, iv_tweak {}\n",
        s.cipher,
        s.key_size * 8,
        s.sector_size,
        s.offset,
        size,
        s.iv_tweak
    );
    for k in &h.keyslots {
        let prio = match k.priority {
            Priority::Ignore => "ignore",
            Priority::Normal => "normal",
            Priority::High => "high",
        };
        out += &format!(
            "  keyslot {}:     {}{}, priority {prio}, area {}+{} {} ({}-bit)\n",
            k.id,
            k.kdf,
            if k.bound { "" } else { ", UNBOUND" },
            k.area_offset,
            k.area_size,
            k.area_cipher,
            k.area_key_size * 8
        );
    }
    for w in &h.warnings {
        out += &format!("  warning: {w}\n");
    }
    out
}

/// A line on the dm-verity tree `image seal` leaves at the image's end, if there is one.
fn verity_summary(image: &Path, size: u64) -> String {
    match sealed(image, size) {
        Ok(Some(line)) => format!("  verity:        {line}\n"),
        Ok(None) => String::new(),
        Err(e) => format!("  verity:        {}\n", chain(&*e)),
    }
}

/// What the superblock at the image's end says (`None` when the image is not sealed).
fn sealed(image: &Path, size: u64) -> Result<Option<String>, Box<dyn std::error::Error>> {
    use crate::verity::{tree, Superblock};
    let f = File::open(image)?;
    let Some((at, raw)) = tree::find_superblock(&f, size)? else {
        return Ok(None);
    };
    let sb = match Superblock::parse(&raw) {
        Ok(sb) => sb,
        Err(e) => return Ok(Some(format!("superblock at byte {at}: {}", chain(&e)))),
    };
    let root = tree::root_hash(&f, &sb, at)?;
    Ok(Some(format!(
        "sealed: superblock at byte {at} (verity_hash_offset), {} data blocks, root hash {} (read from the \
         tree, not verified)",
        sb.data_blocks,
        crate::hex::encode(&root)
    )))
}

/// Write to stdout, ignoring a closed pipe (`image check | head` must not panic).
fn emit(text: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes()).and_then(|()| o.flush());
}

/// Run `image check`; returns the exit code (0 opens, 1 does not or header refused, 2 usage/I/O).
pub fn check(key_file: &Path, image: &Path, pin: Option<&[u8; 32]>) -> i32 {
    let io_error = |what: &dyn std::fmt::Display| {
        eprintln!("encfs-init image check: {what}");
        exit::USAGE
    };
    let key = match read_key(key_file) {
        Ok(k) => k,
        Err(e) => return io_error(&chain(&e)),
    };
    let device_size = match std::fs::metadata(image) {
        Ok(m) => m.len(),
        Err(e) => return io_error(&format!("{}: {e}", image.display())),
    };
    let mut buf = match read_head(image, PARSE_BYTES) {
        Ok(b) => b,
        Err(e) => return io_error(&format!("{}: {e}", image.display())),
    };
    let header = match Header::parse_pinned(&buf, pin) {
        Ok(h) => h,
        Err(e) => {
            emit(&format!(
                "{}: LUKS2 header refused: {}\n",
                image.display(),
                chain(&e)
            ));
            return 1;
        }
    };
    let mut out = summary(&header, device_size);
    out += &verity_summary(image, device_size);
    if let Some(p) = pin {
        out += &format!(
            "  pin:           header_sha256 matches {}\n",
            crate::hex::encode(p)
        );
    }
    if header.metadata_end() > buf.len() as u64 {
        match read_head(image, header.metadata_end().min(MAX_METADATA)) {
            Ok(b) => buf = b,
            Err(e) => return io_error(&format!("{}: {e}", image.display())),
        }
    }
    // The boot's own call (src/init/filesystems.rs): the same checks, the same refusals.
    let opened = header.open_device(
        device_size,
        key.expose(),
        &luks2::Limits::for_this_machine(),
        |offset, len| luks2::reader::slice(&buf, offset, len, "keyslot area").map(<[u8]>::to_vec),
    );
    let code = match opened {
        Ok((vk, _)) => {
            out += &format!(
                "key: {} opens keyslot {}\n",
                key_file.display(),
                vk.keyslot()
            );
            exit::OK
        }
        Err(Error::NoKeyslotOpened { tried }) => {
            let list: Vec<String> = tried.iter().map(u32::to_string).collect();
            out += &format!(
                "key: {} opens none of the keyslots tried ({})\n",
                key_file.display(),
                list.join(", ")
            );
            if key.len() != 32 {
                out += &format!(
                    "note: the key file has {} bytes; upstream's keys are exactly 32 raw bytes (hex text or a \
                     trailing newline changes the passphrase)\n",
                    key.len()
                );
            }
            out += HINT;
            out += "\n";
            1
        }
        Err(e @ Error::Deadline { .. }) => {
            out += &format!("key: {}: {}\n", key_file.display(), chain(&e));
            1
        }
        Err(e) => {
            out += &format!("{}: LUKS2 header refused: {}\n", image.display(), chain(&e));
            1
        }
    };
    emit(&out);
    code
}
