//! LUKS2 errors: one enum of findings, each a leaf (no `source()`).
//!
//! Every refusal names the header copy or the JSON field it is about (`segments.0.encryption`,
//! `keyslots.3.kdf.type`), so a message can be acted on without a hex dump. Messages never contain key
//! material: only public header fields, sizes and digests of the header itself. The few findings that come
//! from a library (the JSON parser's detail, Argon2 refusing its parameters, the random source failing) say
//! what it said in their own text, once; callers print these errors with `{e}`.

use std::fmt;

/// Result alias for the LUKS2 layer.
pub type Result<T> = std::result::Result<T, Error>;

/// Which of the two binary header copies a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    /// The primary header at offset 0.
    Primary,
    /// The secondary header at offset `hdr_size`.
    Secondary,
}

impl fmt::Display for Copy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Copy::Primary => "primary header",
            Copy::Secondary => "secondary header",
        })
    }
}

/// A LUKS2 header that cannot be used, or a key that opens none of its keyslots.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The input ends before a structure it must hold.
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed (from the start of the input).
        need: u64,
        /// Bytes available.
        have: u64,
    },
    /// No `LUKS\xba\xbe` (primary) / `SKUL\xba\xbe` (secondary) magic.
    BadMagic(Copy),
    /// A version other than 2 (LUKS1 is not supported).
    Version(Copy, u16),
    /// `hdr_size` is not one of 16 KiB .. 4 MiB (powers of two).
    HdrSize(Copy, u64),
    /// `hdr_offset` does not say where this copy actually is.
    HdrOffset {
        /// The copy.
        copy: Copy,
        /// Where it was read.
        expected: u64,
        /// What it says.
        found: u64,
    },
    /// `checksum_alg` other than `sha256`.
    ChecksumAlg(Copy, String),
    /// The SHA-256 over the header area does not match the stored checksum.
    Checksum(Copy),
    /// The two copies are both unusable.
    BothCopiesBad {
        /// Why the primary is unusable.
        primary: Box<Error>,
        /// Why the secondary is unusable.
        secondary: Box<Error>,
    },
    /// Both copies are valid, have the same seqid and differ: no copy can be trusted to win.
    SeqidConflict(u64),
    /// The two valid copies disagree on `hdr_size`.
    HdrSizeMismatch {
        /// The primary's value.
        primary: u64,
        /// The secondary's value.
        secondary: u64,
    },
    /// The JSON area has no terminating NUL.
    JsonUnterminated(Copy),
    /// Something other than NUL follows the JSON text in its area.
    JsonPadding(Copy),
    /// The JSON text is not a well-formed LUKS2 document (syntax, wrong type, unknown or missing field).
    Json {
        /// The field (`segments.0`), or `json` for the document.
        field: String,
        /// What the parser said.
        detail: String,
    },
    /// A number outside its allowed range (counts, sizes, iterations, memory, salts).
    Range {
        /// The field.
        field: String,
        /// The value found.
        value: String,
        /// The allowed range, in words.
        allowed: &'static str,
    },
    /// A cipher outside the allowlist (`cipher_null` and anything with "null" are always refused).
    Cipher {
        /// The field.
        field: String,
        /// The cipher found.
        value: String,
    },
    /// A hash outside the allowlist.
    Hash {
        /// The field.
        field: String,
        /// The hash found.
        value: String,
    },
    /// A KDF, keyslot, area, AF, digest or segment `type` outside the allowlist.
    Type {
        /// The field.
        field: String,
        /// The type found.
        value: String,
    },
    /// A key size that does not fit the cipher (or differs between keyslot and segment).
    KeySize {
        /// The field.
        field: String,
        /// The size found, bytes.
        value: u64,
    },
    /// A sector size other than 512 or 4096.
    SectorSize {
        /// The field.
        field: String,
        /// The size found.
        value: u64,
    },
    /// AF stripes other than 4000.
    Stripes {
        /// The field.
        field: String,
        /// The stripes found.
        value: u64,
    },
    /// An area or segment that lies outside where it must be, or is misaligned.
    Offset {
        /// The field.
        field: String,
        /// What is wrong.
        detail: String,
    },
    /// Two areas overlap.
    Overlap {
        /// One area.
        a: String,
        /// The other.
        b: String,
    },
    /// A segment count other than one.
    SegmentCount(usize),
    /// A digest count other than one.
    DigestCount(usize),
    /// A feature that is valid LUKS2 but that we refuse for now (integrity, reencryption, requirements).
    NotSupported {
        /// The field.
        field: String,
        /// What it is.
        what: String,
    },
    /// A reference to a keyslot or segment that does not exist, or a missing one.
    Reference {
        /// The field.
        field: String,
        /// What is wrong.
        detail: String,
    },
    /// The header area's SHA-256 differs from the manifest's `header_sha256`.
    HeaderPin {
        /// The pinned digest (hex).
        expected: String,
        /// The header's digest (hex).
        actual: String,
    },
    /// A KDF refused its parameters (they passed our checks, so this is unexpected).
    Kdf {
        /// The keyslot.
        keyslot: u32,
        /// What the KDF said.
        cause: argon2::Error,
    },
    /// The system's random source failed while a new header was being made.
    Random(getrandom::Error),
    /// Trying every keyslot (each KDF and its digest check) would cost more than the work budget.
    Work {
        /// The fields that set the cost (`keyslots.0,1.kdf, digests.0.iterations`).
        fields: String,
        /// What makes up the cost, in words with numbers.
        detail: String,
    },
    /// An Argon2 keyslot needs more memory than the machine can spare.
    Memory {
        /// The field (`keyslots.N.kdf.memory`).
        field: String,
        /// What it asks for, KiB.
        need_kib: u64,
        /// What may be allocated, KiB (`MemAvailable` less headroom).
        have_kib: u64,
    },
    /// The unlock's wall-time deadline passed before every keyslot was tried.
    Deadline {
        /// The keyslots tried, in order (none opened).
        tried: Vec<u32>,
        /// The keyslots not started.
        untried: Vec<u32>,
        /// The deadline, seconds.
        secs: u64,
    },
    /// The passphrase opens none of the keyslots that were tried.
    NoKeyslotOpened {
        /// The keyslots tried, in order.
        tried: Vec<u32>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { what, need, have } => {
                write!(f, "LUKS2 input too short for the {what}: need {need} bytes, have {have}")
            }
            Error::BadMagic(c) => write!(f, "{c}: no LUKS2 magic (not a LUKS device?)"),
            Error::Version(c, v) => write!(f, "{c}: version {v} is not supported (LUKS2 only)"),
            Error::HdrSize(c, s) => write!(f, "{c}: hdr_size {s} is not a power of two in 16 KiB..4 MiB"),
            Error::HdrOffset { copy, expected, found } => {
                write!(f, "{copy}: hdr_offset says {found}, but it was read at {expected}")
            }
            Error::ChecksumAlg(c, a) => write!(f, "{c}: checksum_alg \"{a}\" is not supported (sha256 only)"),
            Error::Checksum(c) => write!(f, "{c}: checksum mismatch (corrupt or tampered)"),
            Error::BothCopiesBad { primary, secondary } => {
                write!(f, "both LUKS2 header copies are unusable: {primary}; {secondary}")
            }
            Error::SeqidConflict(s) => {
                write!(f, "the two LUKS2 header copies differ but have the same seqid {s}")
            }
            Error::HdrSizeMismatch { primary, secondary } => write!(
                f,
                "the LUKS2 header copies disagree on hdr_size: primary {primary}, secondary {secondary}"
            ),
            Error::JsonUnterminated(c) => write!(f, "{c}: JSON area is not NUL-terminated"),
            Error::JsonPadding(c) => write!(f, "{c}: bytes after the JSON text are not NUL"),
            Error::Json { field, detail } => write!(f, "{field}: malformed LUKS2 JSON: {detail}"),
            Error::Range { field, value, allowed } => {
                write!(f, "{field}: {value} is out of range (allowed: {allowed})")
            }
            Error::Cipher { field, value } => write!(
                f,
                "{field}: cipher \"{value}\" is refused (allowed: aes-xts-plain64)"
            ),
            Error::Hash { field, value } => write!(
                f,
                "{field}: hash \"{value}\" is refused (allowed: sha1, sha256, sha512)"
            ),
            Error::Type { field, value } => write!(f, "{field}: type \"{value}\" is not supported"),
            Error::KeySize { field, value } => {
                write!(f, "{field}: key size {value} bytes is refused (aes-xts: 32 or 64)")
            }
            Error::SectorSize { field, value } => {
                write!(f, "{field}: sector size {value} is refused (512 or 4096)")
            }
            Error::Stripes { field, value } => {
                write!(f, "{field}: {value} AF stripes is refused (4000, as cryptsetup writes)")
            }
            Error::Offset { field, detail } => write!(f, "{field}: {detail}"),
            Error::Overlap { a, b } => write!(f, "{a} overlaps {b}"),
            Error::SegmentCount(n) => write!(f, "segments: {n} segments, exactly one crypt segment is supported"),
            Error::DigestCount(n) => write!(f, "digests: {n} digests, exactly one is supported"),
            Error::NotSupported { field, what } => write!(f, "{field}: {what} is not supported yet"),
            Error::Reference { field, detail } => write!(f, "{field}: {detail}"),
            Error::HeaderPin { expected, actual } => write!(
                f,
                "LUKS2 header does not match the pinned header_sha256: expected {expected}, actual {actual}"
            ),
            Error::Kdf { keyslot, cause } => write!(f, "keyslots.{keyslot}.kdf: {cause}"),
            Error::Random(cause) => write!(f, "LUKS2 format: random bytes: {cause}"),
            Error::Work { fields, detail } => write!(
                f,
                "{fields}: unlocking costs too much: {detail}; fix: re-create the image with cryptsetup's default \
                 KDF costs or `encfs-init image create` (or remove keyslots), and pin header_sha256: a header \
                 you did not make this way may have been tampered with"
            ),
            Error::Memory { field, need_kib, have_kib } => write!(
                f,
                "{field}: argon2 needs {need_kib} KiB, this machine can spare {have_kib} KiB (MemAvailable less \
                 headroom); fix: give the VM more memory or re-create the keyslot with less memory \
                 (cryptsetup luksConvertKey --pbkdf-memory)"
            ),
            Error::Deadline { tried, untried, secs } => write!(
                f,
                "keyslots: the key opened none of keyslots {} within the unlock's {secs} s deadline; not tried: {}; \
                 fix: re-create the image with cryptsetup's default KDF costs, or check the key",
                join(tried),
                join(untried)
            ),
            Error::NoKeyslotOpened { tried } => {
                write!(f, "the key opens none of the keyslots tried ({})", join(tried))
            }
        }
    }
}

fn join(ids: &[u32]) -> String {
    ids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl std::error::Error for Error {}
