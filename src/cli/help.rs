//! The help texts of the commands `cli` parses itself (`image` and `nbd serve` keep theirs beside their
//! options: [`crate::image`], [`crate::nbd::cli`]).

/// `encfs-init help`: every command.
pub(super) const HELP: &str = "\
encfs-init: PID 1 for confidential containers. Attests the SEV-SNP guest, releases each filesystem's key
from Azure Key Vault / managed HSM, serves the encrypted blob as a block device, opens it with dm-crypt,
mounts it, then supervises the application.

Usage:
  encfs-init run   [--manifest PATH | --legacy FILE] [-- COMMAND [ARG...]]
  encfs-init check [--manifest PATH | --legacy FILE | PATH]
  encfs-init probe [--manifest PATH | --readiness-file PATH]
  encfs-init nbd serve SOURCE (--socket PATH | --listen 127.0.0.1:PORT) [OPTIONS]
  encfs-init image create|seal|check ...             (LUKS2 images; `encfs-init image --help`)
  encfs-init report [--data HEX] [--raw | --json]
  encfs-init report decode FILE [--raw | --json]
  encfs-init policy-digest (-p BASE64 | -f FILE)
  encfs-init version
  encfs-init help [COMMAND]

As PID 1 without a command, `run` is implied; arguments that are not a command are the application.

Manifest lookup: --manifest, else $ENCFS_INIT_MANIFEST, else /etc/encfs-init/manifest.toml if it exists,
else upstream's $EncfsSideCarArgs (base64 JSON). Log level: $RUST_LOG, else $LogLevel, else the manifest.

Exit codes: 0 ok; 1 probe: not ready; 2 usage or invalid manifest; 3 a boot step failed (nothing left
mounted); 4 supervision gave up; otherwise the application's own code (128+N if killed by signal N).
";

/// `help run`.
pub(super) const RUN_HELP: &str = "\
encfs-init run [--manifest PATH | --legacy FILE] [-- COMMAND [ARG...]]

Mount every filesystem of the manifest (attest, release the key, serve the blob, dm-crypt, mount, publish),
write the readiness file, then supervise COMMAND (or the manifest's [app] command): signals are forwarded to
it, orphans are reaped, and its exit code becomes ours. Without an application, wait for SIGTERM. SIGTERM
tears everything down in order.

With no manifest at all and a COMMAND, encfs-init is a plain init for COMMAND (as tini).

Options:
  --manifest PATH   TOML manifest (default: $ENCFS_INIT_MANIFEST, /etc/encfs-init/manifest.toml)
  --legacy FILE     upstream's EncfsSideCarArgs value (base64 or the JSON itself) read from FILE, `-` = stdin
  -h, --help        this text
";

/// `help check`.
pub(super) const CHECK_HELP: &str = "\
encfs-init check [--manifest PATH | --legacy FILE | PATH]

Validate the manifest and print the plan (secrets redacted). Every problem is reported on its own line with
its file:line:column (TOML) or JSON path (EncfsSideCarArgs), the field, what is wrong and how to fix it.
Exit 0 when valid, 2 otherwise. Nothing is contacted, mounted or changed.

Options:
  --manifest PATH   TOML manifest (or give PATH directly)
  --legacy FILE     upstream's EncfsSideCarArgs value read from FILE, `-` = stdin
  -h, --help        this text
";

/// `help probe`.
pub(super) const PROBE_HELP: &str = "\
encfs-init probe [--manifest PATH | --readiness-file PATH]

Exit 0 when the readiness file says ready (every filesystem mounted and published), 1 otherwise. For exec
probes in a scratch image, which has no shell: `[\"/encfs-init\", \"probe\"]`.

Options:
  --manifest PATH         read readiness_file from this manifest
  --readiness-file PATH   check this file directly
  -h, --help              this text
";

/// `help report`.
pub(super) const REPORT_HELP: &str = "\
encfs-init report [--data HEX] [--raw | --json]
encfs-init report decode FILE [--raw | --json]

Get an SEV-SNP attestation report from this guest (configfs-tsm, /dev/sev-guest or /dev/sev, VMPL 0) and
print it decoded as JSON (default) or raw (1184 bytes). --data gives report_data (up to 64 bytes of hex,
zero-padded). `report decode FILE` decodes a saved report (raw, hex or base64).

Options:
  --data HEX   report_data
  --raw        the raw report on stdout
  --json       decoded JSON (the default)
  -h, --help   this text
";

/// `help policy-digest`.
pub(super) const POLICY_DIGEST_HELP: &str = "\
encfs-init policy-digest (-p BASE64 | -f FILE)

Print the SHA-256 (hex) of a base64-encoded security policy (the ccePolicy of an ARM template): the
report's host_data and MAA's x-ms-sevsnpvm-hostdata claim, for release policies.

Options:
  -p BASE64    the policy, base64
  -f FILE      a file holding the base64 policy
  -h, --help   this text
";
