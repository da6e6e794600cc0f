//! The LUKS2 JSON document as serde types: exactly the fields cryptsetup writes, nothing else
//! (`deny_unknown_fields`), so a field we do not understand cannot silently change the meaning.
//!
//! ```text
//! { "keyslots": { "<id>": { "type": "luks2", "key_size": 64,
//!                           "af":   { "type": "luks1", "stripes": 4000, "hash": "sha256" },
//!                           "area": { "type": "raw", "offset": "32768", "size": "258048",
//!                                     "encryption": "aes-xts-plain64", "key_size": 64 },
//!                           "kdf":  { "type": "pbkdf2", "hash": "sha256", "iterations": 1000, "salt": "<b64>" }
//!                                 | { "type": "argon2id", "time": 4, "memory": 1048576, "cpus": 4, "salt": "<b64>" },
//!                           "priority": 1 (optional) } },
//!   "tokens": { ... },
//!   "segments": { "0": { "type": "crypt", "offset": "16777216", "size": "dynamic", "iv_tweak": "0",
//!                        "encryption": "aes-xts-plain64", "sector_size": 4096 } },
//!   "digests": { "0": { "type": "pbkdf2", "keyslots": ["0"], "segments": ["0"], "hash": "sha256",
//!                       "iterations": 1000, "salt": "<b64>", "digest": "<b64>" } },
//!   "config": { "json_size": "12288", "keyslots_size": "16744448" } }
//! ```
//!
//! 64-bit quantities (offsets, sizes) are decimal strings; small ones are JSON numbers. Objects are first
//! read as `serde_json::Value` and then converted one by one, so an error names its field.

use super::error::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;

/// A u64 written as a decimal string (`"16777216"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct U64Str(pub u64);

/// Parse a plain decimal u64 (digits only: no sign, no spaces, at most 20 digits).
pub fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl<'de> Deserialize<'de> for U64Str {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_decimal(&s).map(U64Str).ok_or_else(|| {
            serde::de::Error::custom(format!("\"{s:.24}\" is not a decimal u64 string"))
        })
    }
}

impl Serialize for U64Str {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

/// The whole document; `K`, `S`, `D`, `C` are `Value` when reading and typed structs when writing (so a
/// written document keeps cryptsetup's field order).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document<K = Value, S = Value, D = Value, C = Value> {
    /// Keyslots by id.
    pub keyslots: BTreeMap<String, K>,
    /// Tokens by id (not used, kept only to be written back empty).
    pub tokens: BTreeMap<String, Value>,
    /// Segments by id.
    pub segments: BTreeMap<String, S>,
    /// Digests by id.
    pub digests: BTreeMap<String, D>,
    /// Global configuration.
    pub config: C,
}

/// A `luks2` keyslot.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeyslot {
    /// `luks2`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Size of the volume key this slot holds, bytes.
    pub key_size: u64,
    /// Anti-forensic splitter.
    pub af: RawAf,
    /// Where the encrypted key material lives.
    pub area: RawArea,
    /// How the passphrase becomes the area key.
    pub kdf: Value,
    /// 0 ignore, 1 normal (default), 2 high.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u64>,
}

/// The AF splitter of a keyslot.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAf {
    /// `luks1`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Number of stripes.
    pub stripes: u64,
    /// Diffuser hash.
    pub hash: String,
}

/// A keyslot's area.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArea {
    /// `raw`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Offset from the device start, bytes.
    pub offset: U64Str,
    /// Size, bytes.
    pub size: U64Str,
    /// Cipher of the area.
    pub encryption: String,
    /// Key size of that cipher, bytes.
    pub key_size: u64,
}

/// A PBKDF2 keyslot KDF.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPbkdf2 {
    /// `pbkdf2`.
    #[serde(rename = "type")]
    pub kind: String,
    /// PRF hash.
    pub hash: String,
    /// Iterations.
    pub iterations: u64,
    /// Base64 salt.
    pub salt: String,
}

/// An Argon2i/Argon2id keyslot KDF.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArgon2 {
    /// `argon2i` or `argon2id`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Passes.
    pub time: u64,
    /// Memory, KiB.
    pub memory: u64,
    /// Lanes.
    pub cpus: u64,
    /// Base64 salt.
    pub salt: String,
}

/// A data segment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSegment {
    /// `crypt`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Offset from the device start, bytes.
    pub offset: U64Str,
    /// `dynamic` or a decimal size in bytes.
    pub size: String,
    /// IV offset, 512-byte sectors.
    pub iv_tweak: U64Str,
    /// Cipher.
    pub encryption: String,
    /// Encryption sector size.
    pub sector_size: u64,
    /// dm-integrity parameters (refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<Value>,
    /// Segment flags (refused when present: they mark reencryption states).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<Vec<String>>,
}

/// A PBKDF2 digest of the volume key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDigest {
    /// `pbkdf2`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Keyslot ids whose key this digest checks.
    pub keyslots: Vec<String>,
    /// Segment ids it applies to.
    pub segments: Vec<String>,
    /// PRF hash.
    pub hash: String,
    /// Iterations.
    pub iterations: u64,
    /// Base64 salt.
    pub salt: String,
    /// Base64 digest.
    pub digest: String,
}

/// The `config` object.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Size of the JSON area (`hdr_size - 4096`).
    pub json_size: U64Str,
    /// Size of the keyslots area after the two header copies.
    pub keyslots_size: U64Str,
    /// Activation flags (informational; `allow-discards` etc.).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<Vec<String>>,
    /// Requirements (any mandatory requirement is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements: Option<Value>,
}

/// Parse the JSON text into a document of `Value`s.
pub fn parse_document(text: &[u8]) -> Result<Document> {
    serde_json::from_slice(text).map_err(|e| Error::Json {
        field: "json".into(),
        detail: e.to_string(),
    })
}

/// Convert one object, naming `field` on failure.
pub fn typed<T: for<'de> Deserialize<'de>>(v: &Value, field: &str) -> Result<T> {
    T::deserialize(v).map_err(|e| Error::Json {
        field: field.to_string(),
        detail: e.to_string(),
    })
}

/// The `type` string of an object (so an unsupported type is reported as such, not as unknown fields).
pub fn type_of<'v>(v: &'v Value, field: &str) -> Result<&'v str> {
    v.get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Json {
            field: format!("{field}.type"),
            detail: "missing or not a string".into(),
        })
}
