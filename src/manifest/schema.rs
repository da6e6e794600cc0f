//! The TOML manifest as written by users: serde structs, every table `deny_unknown_fields`.
//!
//! Nothing here is trusted yet: `validate` turns a [`Manifest`] into a [`super::Plan`]. Field names are the
//! documented ones (README, "Manifest reference"); upstream's JSON (`EncfsSideCarArgs`) is mapped onto the
//! same structs by `legacy`.
#![forbid(unsafe_code)]

use super::units::{Dur, Size};
use serde::Deserialize;

/// The whole manifest.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Allows raw keys, a fake attester and plain http; logged loudly.
    #[serde(default)]
    pub test_mode: bool,
    /// Readiness file path.
    pub readiness_file: Option<String>,
    /// Modules to load when PID 1 of a VM.
    #[serde(default)]
    pub kernel_modules: Vec<String>,
    /// auto | required | off: must the volume of the mount points propagate mounts?
    pub shared_volume: Option<String>,
    /// `[log]`
    #[serde(default)]
    pub log: Log,
    /// `[app]`
    pub app: Option<App>,
    /// `[supervise]`
    #[serde(default)]
    pub supervise: Supervise,
    /// `[network]`
    #[serde(default)]
    pub network: Network,
    /// `[endpoints]`
    #[serde(default)]
    pub endpoints: Endpoints,
    /// `[api_versions]`
    #[serde(default)]
    pub api_versions: ApiVersions,
    /// `[identity]`
    #[serde(default)]
    pub identity: Identity,
    /// `[certcache]`
    pub certcache: Option<CertCache>,
    /// `[attestation]`
    #[serde(default)]
    pub attestation: Attestation,
    /// `[[filesystem]]`
    #[serde(default)]
    pub filesystem: Vec<Filesystem>,
    /// `[secrets]`: the tmpfs released secrets are written to.
    pub secrets: Option<Secrets>,
    /// `[[secret]]`: keys released for the application.
    #[serde(default)]
    pub secret: Vec<Secret>,
    /// `[skr]`: upstream's SKR sidecar API on loopback.
    pub skr: Option<Skr>,
}

/// `[secrets]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    /// Absolute path where encfs-init mounts the secrets' tmpfs (on a volume the application shares).
    pub mount_point: Option<String>,
    /// The tmpfs's size limit, e.g. "1MiB".
    pub size: Option<Size>,
}

/// `[[secret]]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    /// The file's path inside the tmpfs (relative).
    pub path: String,
    /// raw | base64 | jwk | pem
    pub format: Option<String>,
    /// Octal file mode, e.g. "0400".
    pub mode: Option<String>,
    /// `uid` or `uid:gid`.
    pub owner: Option<String>,
    /// `[secret.key]`, as `[filesystem.key]`.
    pub key: Option<Key>,
}

/// `[skr]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Skr {
    /// Loopback address and port, e.g. "127.0.0.1:8080".
    pub listen: Option<String>,
    /// Connections served at once.
    pub max_connections: Option<u32>,
    /// How long one request may take to arrive and be answered, e.g. "30s".
    pub request_timeout: Option<Dur>,
    /// Largest request body, e.g. "64KiB".
    pub max_body: Option<Size>,
}

/// `[log]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// error | warn | info | debug | trace
    pub level: Option<String>,
    /// Append the log here too.
    pub file: Option<String>,
}

/// `[app]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// argv of the application.
    pub command: Vec<String>,
    /// never | on-failure | always
    pub restart: Option<String>,
}

/// `[supervise]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Supervise {
    /// Duration, e.g. "10s".
    pub grace_period: Option<Dur>,
    /// Duration.
    pub backoff_initial: Option<Dur>,
    /// Duration.
    pub backoff_max: Option<Dur>,
    /// Duration.
    pub stable_after: Option<Dur>,
    /// Count.
    pub max_restarts: Option<u32>,
    /// Duration between health reads, e.g. "30s".
    pub health_interval: Option<Dur>,
}

/// `[network]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Duration.
    pub connect_timeout: Option<Dur>,
    /// Duration.
    pub request_timeout: Option<Dur>,
    /// Count.
    pub retries: Option<u32>,
    /// Duration.
    pub retry_backoff_max: Option<Dur>,
    /// PEM file.
    pub ca_bundle: Option<String>,
    /// Hex SHA-256 of the `ca_bundle` file.
    pub ca_bundle_sha256: Option<String>,
}

/// `[endpoints]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    /// IMDS base URL.
    pub imds: Option<String>,
    /// THIM certification URL.
    pub thim: Option<String>,
    /// AzCache base URL.
    pub azcache: Option<String>,
    /// AMD KDS base URL.
    pub amd_kds: Option<String>,
    /// Login authority base URL.
    pub login_authority: Option<String>,
}

/// `[api_versions]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiVersions {
    /// MAA.
    pub maa: Option<String>,
    /// Key Vault / mHSM.
    pub akv: Option<String>,
    /// IMDS token.
    pub imds: Option<String>,
    /// Blob x-ms-version.
    pub blob: Option<String>,
}

/// `[identity]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// User-assigned managed identity client id.
    pub client_id: Option<String>,
}

/// `[attestation]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    /// Test mode only: the fake attester signs with this P-384 key (PKCS#8, PEM or DER), a fake VCEK's.
    pub fake_vcek_key_file: Option<String>,
    /// Test mode only: also trust this ARK certificate (PEM or DER) as an AMD root, so that a fake secure
    /// processor's reports go through local verification.
    pub test_ark_file: Option<String>,
    /// The User-Agent of MAA requests (upstream SKR's `maaconfig.user_agent`).
    pub maa_user_agent: Option<String>,
}

/// `[certcache]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertCache {
    /// AMD | AzCache | LocalTHIM
    pub endpoint_type: String,
    /// host[/path] or URL.
    pub endpoint: String,
    /// e.g. SevSnpVM, Milan.
    pub tee_type: Option<String>,
    /// api-version (with or without `api-version=`).
    pub api_version: Option<String>,
    /// client id (with or without `clientId=`).
    pub client_id: Option<String>,
}

/// `[[filesystem]]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filesystem {
    /// Absolute path where the application sees the filesystem.
    pub mount_point: String,
    /// Blob URL (a SAS query is allowed with access = "sas").
    pub url: String,
    /// private | anonymous | sas
    pub access: Option<String>,
    /// SAS token from a file instead of the URL.
    pub sas_token_file: Option<String>,
    /// Mount read-write.
    #[serde(default)]
    pub read_write: bool,
    /// Size, e.g. "64MiB".
    pub cache_size: Option<Size>,
    /// Size, e.g. "1MiB".
    pub block_size: Option<Size>,
    /// How long one block request retries transient blob failures before it fails, e.g. "60s".
    pub io_deadline: Option<Dur>,
    /// The kernel's per-request timeout on /dev/nbdN, e.g. "90s".
    pub nbd_timeout: Option<Dur>,
    /// How the blob becomes a block device: auto | nbd | fuse.
    pub transport: Option<String>,
    /// When the mount is dead: restart | stay-down.
    pub on_failure: Option<String>,
    /// How long health reads must fail before the mount counts as dead, e.g. "60s".
    pub dead_after: Option<Dur>,
    /// Re-open attempts per death before it stays down.
    pub restart_limit: Option<u32>,
    /// Hex SHA-256 of the LUKS2 header area.
    pub header_sha256: Option<String>,
    /// Hex root hash of the dm-verity tree over the image (read-only filesystems).
    pub verity_root_hash: Option<String>,
    /// Byte offset of the dm-verity superblock in the blob (the end of the verified data).
    pub verity_hash_offset: Option<Size>,
    /// `[filesystem.key]`
    pub key: Option<Key>,
    /// `[filesystem.key_derivation]`
    pub key_derivation: Option<KeyDerivation>,
}

/// `[filesystem.key]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    /// Key name in the vault (`name` or `name/version`).
    pub kid: Option<String>,
    /// oct-HSM | RSA-HSM (informational).
    pub kty: Option<String>,
    /// MAA endpoint (host or https URL).
    pub authority: Option<String>,
    /// Key Vault or managed HSM endpoint (host or https URL).
    pub vault: Option<String>,
    /// Static bearer token for the vault.
    pub bearer_token: Option<String>,
    /// File holding the bearer token.
    pub bearer_token_file: Option<String>,
    /// Raw key, 64 hex digits (test_mode only).
    pub raw_key: Option<String>,
    /// File holding the raw key: 32 bytes, or 64 hex digits (test_mode only).
    pub raw_key_file: Option<String>,
}

/// `[filesystem.key_derivation]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyDerivation {
    /// Hex salt.
    pub salt: Option<String>,
    /// Label; default "Symmetric Encryption Key".
    pub label: Option<String>,
}
