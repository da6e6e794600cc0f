//! The validated plan: what every later step takes. Built once by `manifest::load`; nothing downstream sees
//! an unchecked string. Secrets inside are redacting types, so `{:?}` of a plan is safe to log. The one
//! check of the CA bundle's pin ([`NetworkPlan::check_ca_bundle_pin`]) lives here, with the pin, for the
//! validation and for every later read of the bundle.
#![forbid(unsafe_code)]

use crate::secret::{SecretBytes, SecretString};
use std::path::PathBuf;
use std::time::Duration;

/// Where the plan came from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A TOML manifest file.
    Toml(PathBuf),
    /// Upstream's `EncfsSideCarArgs` (from the environment variable or `--legacy FILE`).
    Legacy(String),
    /// No manifest at all: encfs-init is a plain init for the command line's COMMAND.
    None,
}

/// The whole validated plan.
#[derive(Debug)]
pub struct Plan {
    /// Where it came from.
    pub origin: Origin,
    /// Test mode: allows raw keys, a fake attester and plain http. Off unless the manifest says so.
    pub test_mode: bool,
    /// Logging.
    pub log: LogPlan,
    /// The readiness file: written `1` once every filesystem is mounted and published.
    pub readiness_file: PathBuf,
    /// Kernel modules to load (with their modules.dep dependencies) when encfs-init is PID 1 of a VM.
    pub kernel_modules: Vec<String>,
    /// Whether the volume holding the mount points must propagate mounts to a sibling container.
    pub shared_volume: SharedVolume,
    /// The application to supervise, if any.
    pub app: Option<AppPlan>,
    /// Restart and shutdown policy for workers and the application.
    pub supervise: SupervisePlan,
    /// Timeouts, retries and trust for every HTTP call.
    pub network: NetworkPlan,
    /// Service endpoints upstream hard-codes.
    pub endpoints: Endpoints,
    /// API versions upstream hard-codes.
    pub api_versions: ApiVersions,
    /// Identity used for tokens (IMDS managed identity or workload identity).
    pub identity: IdentityPlan,
    /// Where fresh AMD collateral comes from when the host's is absent or stale.
    pub certcache: Option<CertCachePlan>,
    /// Attestation settings (test-mode knobs of the fake attester).
    pub attestation: AttestationPlan,
    /// The encrypted filesystems, in manifest order.
    pub filesystems: Vec<FilesystemPlan>,
    /// Keys released for the application into a tmpfs (`[secrets]`, `[[secret]]`); `None` without any.
    pub secrets: Option<SecretsPlan>,
    /// Upstream's SKR sidecar API (`[skr]`); `None` when off.
    pub skr: Option<SkrPlan>,
}

impl Plan {
    /// Every key of the plan: the filesystems' in order, then the secrets'.
    pub fn keys(&self) -> impl Iterator<Item = &KeyPlan> {
        self.filesystems.iter().map(|f| &f.key).chain(
            self.secrets
                .iter()
                .flat_map(|s| s.secrets.iter().map(|x| &x.key)),
        )
    }

    /// Every key release of the plan (its [`keys`](Self::keys) that are released, not raw).
    pub fn releases(&self) -> impl Iterator<Item = &ReleasePlan> {
        self.keys().filter_map(|k| match k {
            KeyPlan::Release(rp) => Some(rp),
            KeyPlan::Raw(_) => None,
        })
    }

    /// Whether anything in the plan releases a key (so the boot sets up attestation).
    pub fn releases_keys(&self) -> bool {
        self.releases().next().is_some()
    }
}

/// The tmpfs released secrets are written to, and the secrets.
#[derive(Debug)]
pub struct SecretsPlan {
    /// Where the tmpfs is mounted (created; its parent must exist).
    pub mount_point: PathBuf,
    /// The tmpfs's size limit in bytes.
    pub size: u64,
    /// The secrets, in manifest order.
    pub secrets: Vec<SecretPlan>,
}

/// One released secret.
#[derive(Debug)]
pub struct SecretPlan {
    /// Position in the manifest.
    pub index: usize,
    /// The file, relative to the tmpfs (normal components only).
    pub path: PathBuf,
    /// How the key is written.
    pub format: SecretFormat,
    /// File mode (permission bits).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Which key (a release; a raw key in test mode).
    pub key: KeyPlan,
}

/// How a released key is written for the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretFormat {
    /// The bytes as released (oct: the key; RSA, EC: PKCS#8 DER).
    Raw,
    /// Standard base64 of the raw bytes.
    Base64,
    /// A private JWK (JSON).
    Jwk,
    /// PEM, PKCS#8 (RSA and EC keys).
    Pem,
}

impl SecretFormat {
    /// The manifest's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretFormat::Raw => "raw",
            SecretFormat::Base64 => "base64",
            SecretFormat::Jwk => "jwk",
            SecretFormat::Pem => "pem",
        }
    }
}

/// The SKR API server.
#[derive(Debug, Clone)]
pub struct SkrPlan {
    /// A loopback address.
    pub listen: std::net::SocketAddr,
    /// Connections served at once; more wait in the kernel's backlog or are answered 503.
    pub max_connections: usize,
    /// Time for one request to arrive and be answered.
    pub request_timeout: Duration,
    /// Largest request body in bytes.
    pub max_body: usize,
}

/// Attestation settings.
#[derive(Debug, Default)]
pub struct AttestationPlan {
    /// Test mode only: the key (PKCS#8 DER of a P-384 key, checked) the fake attester signs with, and
    /// the file it came from. Without it the fake attester signs with a fresh random key.
    pub fake_vcek_key: Option<(PathBuf, SecretBytes)>,
    /// Test mode only: SHA-256 of the SubjectPublicKeyInfo of one more ARK to trust, and its file.
    pub test_ark_pin: Option<(PathBuf, [u8; 32])>,
    /// The User-Agent of MAA requests (default: the client's, `encfs-init/<version>`).
    pub maa_user_agent: Option<String>,
}

/// Log settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPlan {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: log::LevelFilter,
    /// Also append the log to this file (mode 0600).
    pub file: Option<PathBuf>,
}

/// The supervised application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPlan {
    /// argv; `argv[0]` is looked up in PATH when it has no slash.
    pub argv: Vec<String>,
    /// What to do when it exits.
    pub restart: RestartMode,
}

/// When the application is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartMode {
    /// Never: its exit ends encfs-init with its exit code (tini's behaviour). The default.
    Never,
    /// When it exits non-zero or dies of a signal.
    OnFailure,
    /// Whenever it exits.
    Always,
}

/// Restart backoff and shutdown grace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupervisePlan {
    /// After SIGTERM is forwarded, how long to wait before SIGKILL.
    pub grace_period: Duration,
    /// First restart delay; doubled on each failure up to `backoff_max`.
    pub backoff_initial: Duration,
    /// Longest restart delay.
    pub backoff_max: Duration,
    /// A run at least this long resets the backoff and the restart count.
    pub stable_after: Duration,
    /// Restarts allowed in a row (without a stable run) before giving up.
    pub max_restarts: u32,
    /// How often a block of every filesystem is read through the whole stack (dm-crypt → NBD → blob).
    pub health_interval: Duration,
}

/// HTTP behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPlan {
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Retries after the first attempt, for transient failures (connect errors, 429, 5xx).
    pub retries: u32,
    /// Longest delay between retries (exponential backoff with jitter up to this).
    pub retry_backoff_max: Duration,
    /// Extra PEM CA bundle trusted in addition to the compiled-in web roots (for TLS and for the key-release
    /// JWS chain).
    pub ca_bundle: Option<PathBuf>,
    /// SHA-256 the `ca_bundle` file must have, checked every time it is read.
    pub ca_bundle_sha256: Option<[u8; 32]>,
}

impl NetworkPlan {
    /// The one check of `ca_bundle_sha256`: `Err` when it is set and `bundle` (the file's bytes) does not
    /// hash to it. Run when the manifest is validated and on every later read of the bundle.
    pub fn check_ca_bundle_pin(&self, bundle: &[u8]) -> Result<(), CaBundlePinMismatch> {
        use sha2::Digest as _;
        let Some(pinned) = self.ca_bundle_sha256 else {
            return Ok(());
        };
        let actual: [u8; 32] = sha2::Sha256::digest(bundle).into();
        if actual == pinned {
            return Ok(());
        }
        Err(CaBundlePinMismatch { actual, pinned })
    }
}

/// The CA bundle's SHA-256 is not the one `[network] ca_bundle_sha256` pins.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}; fix: {}", self.problem(), Self::FIX)]
pub struct CaBundlePinMismatch {
    /// What the file hashes to.
    pub actual: [u8; 32],
    /// What the manifest pins.
    pub pinned: [u8; 32],
}

impl CaBundlePinMismatch {
    /// The finding without its fix.
    pub fn problem(&self) -> String {
        format!(
            "its SHA-256 is {} but [network] ca_bundle_sha256 pins {}",
            crate::hex::encode(&self.actual),
            crate::hex::encode(&self.pinned)
        )
    }

    /// What to do about it.
    pub const FIX: &'static str =
        "ship the bundle the manifest was written for at this path in the image, \
                                   or set ca_bundle_sha256 to the new file's sha256sum";
}

/// An endpoint base URL, normalized: scheme, host, optional port and path, no trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint(pub String);

/// Endpoints upstream hard-codes, overridable for sovereign clouds and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// IMDS base (tokens, THIM): `http://169.254.169.254`.
    pub imds: Endpoint,
    /// THIM certification URL.
    pub thim: Endpoint,
    /// AzCache (Azure's AMD collateral cache).
    pub azcache: Endpoint,
    /// AMD Key Distribution Service.
    pub amd_kds: Endpoint,
    /// Entra ID login authority for workload identity.
    pub login_authority: Endpoint,
}

/// API versions upstream hard-codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersions {
    /// MAA attest API.
    pub maa: String,
    /// Key Vault / managed HSM release API.
    pub akv: String,
    /// IMDS identity token API.
    pub imds: String,
    /// Blob `x-ms-version`.
    pub blob: String,
}

/// Identity for AAD tokens.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentityPlan {
    /// User-assigned managed identity client id; `None` = system-assigned (or workload identity from env).
    pub client_id: Option<String>,
}

/// Kind of AMD collateral cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertCacheKind {
    /// AMD KDS.
    Amd,
    /// Azure's AzCache.
    AzCache,
    /// The host-local THIM service.
    LocalThim,
}

/// upstream's `azure_info.certcache`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertCachePlan {
    /// Which service.
    pub kind: CertCacheKind,
    /// Base URL (upstream gives a host without scheme; https is assumed).
    pub endpoint: Endpoint,
    /// TEE type / product name, e.g. `SevSnpVM` or `Milan`.
    pub tee_type: Option<String>,
    /// api-version value (without `api-version=`).
    pub api_version: Option<String>,
    /// client id value (without `clientId=`).
    pub client_id: Option<String>,
}

/// How the blob is reached.
#[derive(Debug)]
pub enum Access {
    /// A bearer token from the identity (upstream `azure_url_private: true`).
    Private,
    /// No credentials.
    Anonymous,
    /// A shared access signature query string (without the leading `?`).
    Sas(SecretString),
}

/// A blob URL without its query (a SAS lives in [`Access::Sas`], never in the URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobUrl {
    /// `https://account.blob.core.windows.net/container/path/to/blob`.
    pub url: String,
}

/// What kind of vault releases the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaultKind {
    /// Azure Key Vault (`*.vault.azure.net`).
    KeyVault,
    /// Managed HSM (the host contains `managedhsm`).
    ManagedHsm,
}

/// The disk key's source.
#[derive(Debug)]
pub enum KeyPlan {
    /// Secure key release after attestation.
    Release(ReleasePlan),
    /// A raw 32-byte key (test mode only).
    Raw(SecretBytes),
}

/// A secure key release.
#[derive(Debug)]
pub struct ReleasePlan {
    /// Key name (optionally `name/version`).
    pub kid: String,
    /// Informational key type from the manifest (`oct-HSM`, `RSA-HSM`); the release response decides.
    pub kty: Option<String>,
    /// MAA endpoint.
    pub authority: Endpoint,
    /// Vault or managed HSM endpoint.
    pub vault: Endpoint,
    /// Which of the two.
    pub vault_kind: VaultKind,
    /// A static bearer token for the vault (skips IMDS / workload identity).
    pub bearer_token: Option<SecretString>,
    /// HKDF salt (hex-decoded) for RSA keys.
    pub salt: Vec<u8>,
    /// HKDF label for RSA keys.
    pub label: String,
}

/// One encrypted filesystem.
#[derive(Debug)]
pub struct FilesystemPlan {
    /// Position in the manifest (names `remote-crypt-<i>` and `.filesystem-<i>`, as upstream).
    pub index: usize,
    /// Where the application finds it.
    pub mount_point: PathBuf,
    /// The blob.
    pub url: BlobUrl,
    /// How the blob is reached.
    pub access: Access,
    /// Mounted read-write (needs a page blob reachable with write access).
    pub read_write: bool,
    /// Block cache budget in bytes.
    pub cache_size: u64,
    /// Cache block (and range request) size in bytes.
    pub block_size: u64,
    /// How long a blob request of the data path retries transient failures (5xx, 429, resets, stalls)
    /// before it fails.
    pub io_deadline: Duration,
    /// The kernel's per-request timeout on /dev/nbdN: a request unanswered this long is sent again on a
    /// fresh connection; also how long requests in flight wait after the serving side died.
    pub nbd_timeout: Duration,
    /// How the blob becomes a block device.
    pub transport: TransportChoice,
    /// What happens when the mount is dead (see `crate::init::revive`).
    pub on_failure: FailurePolicy,
    /// How long health reads must fail before the mount counts as dead.
    pub dead_after: Duration,
    /// Re-open attempts per death (backoff as `[supervise]`) before it stays down.
    pub restart_limit: u32,
    /// Where the key comes from.
    pub key: KeyPlan,
    /// Optional pin: SHA-256 of the LUKS2 header area.
    pub header_sha256: Option<[u8; 32]>,
    /// Optional pin of the whole image: dm-verity under dm-crypt (read-only filesystems only).
    pub verity: Option<VerityPin>,
}

/// `verity_root_hash` + `verity_hash_offset`: the blob is mapped through dm-verity, whose root hash commits
/// to every byte below `hash_offset` (the LUKS2 header included) and to the tree's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityPin {
    /// The tree's root hash (SHA-256).
    pub root_hash: [u8; 32],
    /// Byte offset of the verity superblock in the blob: the end of the verified data, a multiple of 4096.
    pub hash_offset: u64,
}

/// `shared_volume`: whether the volume that holds the mount points must be a shared mount, so that a mount
/// made there reaches an application in another container (another mount namespace), as on ACI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SharedVolume {
    /// Checked when encfs-init supervises no application and is not a VM's PID 1 (the sidecar shape): a
    /// private volume is warned about once, and the boot goes on.
    #[default]
    Auto,
    /// Checked always: a private volume fails the boot at the step "shared volume".
    Required,
    /// Not checked.
    Off,
}

impl SharedVolume {
    /// The manifest's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            SharedVolume::Auto => "auto",
            SharedVolume::Required => "required",
            SharedVolume::Off => "off",
        }
    }
}

/// `[[filesystem]] on_failure`: what happens when the mount is dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Detach it and run the whole open sequence again (fresh attestation and key release).
    Restart,
    /// Mark it down and leave it; a serving side that gave up ends the run (exit 4).
    StayDown,
}

/// `[[filesystem]] transport`: how the blob becomes a block device under dm-crypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransportChoice {
    /// NBD where the kernel has it, else FUSE + loop (probed at boot).
    #[default]
    Auto,
    /// The kernel's NBD client on our NBD server: `/dev/nbdN`.
    Nbd,
    /// A FUSE file of our own on a loop device: `/dev/loopN`.
    Fuse,
}

impl TransportChoice {
    /// The manifest's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportChoice::Auto => "auto",
            TransportChoice::Nbd => "nbd",
            TransportChoice::Fuse => "fuse",
        }
    }
}
