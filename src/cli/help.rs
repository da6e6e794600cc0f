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
  encfs-init doctor [--manifest PATH | --legacy FILE] [--policy FILE] [--json]
  encfs-init nbd serve SOURCE (--socket PATH | --listen 127.0.0.1:PORT) [OPTIONS]
  encfs-init image create|seal|check ...             (LUKS2 images; `encfs-init image --help`)
  encfs-init report [--data HEX] [--raw | --json]
  encfs-init report decode FILE [--raw | --json]
  encfs-init policy-digest (-p BASE64 | -f FILE)
  encfs-init key import --config FILE [OPTIONS]     (upstream importkey; `encfs-init help key`)
  encfs-init key policy --config FILE
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

Exit 0 when the readiness file says ready (every filesystem mounted and published) and every filesystem is
well: its state is ready (not restarting or down), its latest health read succeeded, its write lease is held
and its dm-verity mapping saw no corrupted block; 1 otherwise, printing why. For exec probes in a scratch
image, which has no shell: `[\"/encfs-init\", \"probe\"]`.

Options:
  --manifest PATH         read readiness_file from this manifest
  --readiness-file PATH   check this file directly
  -h, --help              this text
";

/// `help doctor`.
pub(super) const DOCTOR_HELP: &str = "\
encfs-init doctor [--manifest PATH | --legacy FILE] [--policy FILE] [--json]

Check this platform against the manifest before deploying, without releasing any key or changing anything:
the kernel (NBD, FUSE, loop, dm-crypt, dm-verity, keyring; the transport `auto` chooses), the evidence
(the SEV-SNP interface; a fresh report verified against the pinned AMD roots: chip, TCB, VMPL, debug
policy), host_data against --policy, the UVM information, DNS / TCP / TLS to every endpoint the manifest
names, the identity tokens (their audience; never printed), MAA, and each blob (HEAD: size, type, ETag,
lease; its LUKS2 header; its dm-verity tree when pinned). Without a manifest, the platform checks only.

One line per check: `ok|problem|skipped  CHECK: what was found[; fix: ...]` (skipped says why; it is not a
failure), then a summary line. Exit 0 when no check found a problem, 1 otherwise, 2 for usage or manifest
errors.

Options:
  --manifest PATH   TOML manifest
  --legacy FILE     upstream's EncfsSideCarArgs value read from FILE, `-` = stdin
  --policy FILE     the base64 CCE policy (as `policy-digest -f`): host_data must be its SHA-256
  --json            one JSON array of {check, status, detail, fix} instead of the lines
  -h, --help        this text
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

/// `help key`.
pub(super) const KEY_HELP: &str = "\
encfs-init key import --config FILE [--key-file FILE | --rsa-key PEM] [--imds | --workload-identity]
                      [--random-salt] [--disk-key-out FILE] [--private-key-out FILE] [--ca-bundle PEM]
encfs-init key policy --config FILE

import: upstream importkey's job. Make an oct-HSM key (32 random bytes, or --key-file) or an RSA-HSM key
        (a new RSA-2048, or --rsa-key), build its release policy from the config's claims, and import it
        (PUT <vault>/keys/<kid>) into Key Vault or a managed HSM, exportable, with that policy. Prints the
        policy, the new key id, how the boot derives the disk key, and the manifest lines for the key.
policy: print the release policy JSON and its base64url `data` value, for review; imports nothing.

FILE is our TOML (kid, kty, key_ops, vault, authority, api_version, bearer_token | bearer_token_file,
policy_digest | cce_policy_file | claims, [key_derivation] salt, label, [identity] client_id, [network]
ca_bundle, [endpoints] imds; see config/key-import.toml) or upstream's config.json as is. Without claims the
policy wants x-ms-sevsnpvm-hostdata = the policy digest (policy_digest, or the SHA-256 of cce_policy_file's
base64 policy, as `encfs-init policy-digest` prints it), x-ms-compliance-status = azure-compliant-uvm,
x-ms-sevsnpvm-is-debuggable = false and x-ms-sevsnpvm-vmpl = 0.

The disk key: an oct-HSM key is the disk key. An RSA-HSM key gives HKDF-SHA256(salt, D, label); the salt
is the config's, else empty (what the boot uses when the manifest gives none), or with --random-salt 32
new random bytes, printed with the `salt = \"...\"` line for [filesystem.key_derivation].

Options:
  --config FILE           the config (TOML, or upstream's JSON)
  --key-file FILE         oct-HSM: the key, 32 raw bytes or 64 hex digits (- reads stdin)
  --rsa-key PEM           RSA-HSM: a PKCS#8 PEM private key
  --imds                  get the vault token from the managed identity (IMDS) instead of the config
  --workload-identity     get it by AKS workload identity (AZURE_CLIENT_ID, AZURE_TENANT_ID,
                          AZURE_FEDERATED_TOKEN_FILE, AZURE_AUTHORITY_HOST, as the webhook sets them)
  --random-salt           RSA-HSM: a random HKDF salt (printed)
  --disk-key-out FILE     write the 32-byte disk key, for `encfs-init image create --key-file`
  --private-key-out FILE  write a generated RSA key (PKCS#8 PEM)
  --ca-bundle PEM         extra trusted CAs (instead of the config's [network] ca_bundle)
  -h, --help              this text
Files are written 0600 and never over an existing file, before the import (removed if it fails). There
is no option taking the key itself: argv is readable by every process.

Exit codes: 0 imported (or policy printed); 1 the import or a file failed; 2 usage or config errors.
";
