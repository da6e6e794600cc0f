//! Bad manifests, TOML and upstream's JSON: each must make `encfs-init check` exit 2 with one error line
//! that names the place, the field, the problem and the fix.

mod common;

use common::{b64, run, scratch};

/// A valid filesystem table that cases modify.
const FS: &str = r#"
[[filesystem]]
mount_point = "/mnt/remote/a"
url = "https://acct.blob.core.windows.net/c/a.img"
[filesystem.key]
kid = "k1"
authority = "sharedeus.eus.attest.azure.net"
vault = "v.vault.azure.net"
"#;

/// A valid dm-verity pin that cases modify.
const VERITY: &str = "verity_root_hash = \"abababababababababababababababababababababababababababababababab\"\nverity_hash_offset = 16777216\n";

/// `(name, manifest text, words the error must contain)`.
fn toml_cases() -> Vec<(&'static str, String, Vec<&'static str>)> {
    let fs = FS.to_string();
    vec![
        (
            "syntax error",
            "[[filesystem]\nmount_point = \"/a\"\n".into(),
            vec![":1:", "TOML syntax error"],
        ),
        (
            "unknown top-level field",
            format!("tset_mode = true\n{fs}"),
            vec![":1:1:", "tset_mode", "did you mean `test_mode`"],
        ),
        (
            "unknown filesystem field",
            fs.replace("mount_point = ", "mount_pont = \"/x\"\nmount_point = "),
            vec![
                ":3:1:",
                "filesystem[0].mount_pont",
                "did you mean `mount_point`",
            ],
        ),
        (
            "unknown key field",
            fs.replace("kid = ", "kidd = \"x\"\nkid = "),
            vec!["filesystem[0].key.kidd", "did you mean `kid`"],
        ),
        (
            "wrong type",
            fs.replace("[filesystem.key]", "read_write = \"yes\"\n[filesystem.key]"),
            vec![
                ":5:14:",
                "filesystem[0].read_write",
                "invalid type",
                "boolean",
            ],
        ),
        (
            "relative mount point",
            fs.replace("/mnt/remote/a", "mnt/remote/a"),
            vec![
                ":3:15:",
                "filesystem[0].mount_point",
                "not an absolute path",
            ],
        ),
        (
            "dot-dot mount point",
            fs.replace("/mnt/remote/a", "/mnt/../etc"),
            vec!["filesystem[0].mount_point", "not a normalized path"],
        ),
        (
            "system mount point",
            fs.replace("/mnt/remote/a", "/proc/x"),
            vec!["filesystem[0].mount_point", "system path"],
        ),
        (
            "duplicate mount points",
            format!("{fs}{}", fs.replace("a.img", "b.img")),
            vec![
                ":11:15:",
                "filesystem[1].mount_point",
                "used twice",
                "filesystem[0]",
            ],
        ),
        (
            "nested mount points",
            format!(
                "{fs}{}",
                fs.replace("/mnt/remote/a\"", "/mnt/remote/a/inner\"")
            ),
            vec!["filesystem[1].mount_point", "nests with", "sibling"],
        ),
        (
            "missing mount_point",
            fs.replace("mount_point = \"/mnt/remote/a\"\n", ""),
            vec!["missing field `mount_point`"],
        ),
        (
            "missing key table",
            fs.split("[filesystem.key]")
                .next()
                .unwrap_or_default()
                .to_string(),
            vec!["filesystem[0].key", "no key"],
        ),
        (
            "missing key material",
            fs.replace("kid = \"k1\"\n", ""),
            vec!["filesystem[0].key.kid", "key material missing"],
        ),
        (
            "http without test_mode",
            fs.replace("https://acct", "http://acct"),
            vec!["filesystem[0].url", "plain http", "test_mode"],
        ),
        (
            "raw key without test_mode",
            fs.replace(
                "kid = \"k1\"",
                &format!("raw_key = \"{}\"", "ab".repeat(32)),
            ),
            vec!["filesystem[0].key.raw_key", "only in test mode"],
        ),
        (
            "raw key of the wrong length",
            format!(
                "test_mode = true\n{}",
                fs.replace(
                    "kid = \"k1\"",
                    &format!("raw_key = \"{}\"", "ab".repeat(16))
                )
            ),
            vec!["filesystem[0].key.raw_key", "16 bytes", "exactly 32"],
        ),
        (
            "raw key not hex",
            format!(
                "test_mode = true\n{}",
                fs.replace("kid = \"k1\"", "raw_key = \"zz\"")
            ),
            vec!["filesystem[0].key.raw_key", "not hex"],
        ),
        (
            "read_write on an anonymous blob",
            fs.replace(
                "[filesystem.key]",
                "access = \"anonymous\"\nread_write = true\n[filesystem.key]",
            ),
            vec!["filesystem[0].read_write", "anonymous", "write access"],
        ),
        (
            "sas without a signature",
            fs.replace("[filesystem.key]", "access = \"sas\"\n[filesystem.key]"),
            vec!["filesystem[0].access", "no SAS"],
        ),
        (
            "sas in URL with private access",
            fs.replace("a.img", "a.img?sv=1&sig=SECRETSIG")
                .replace("[filesystem.key]", "access = \"private\"\n[filesystem.key]"),
            vec!["filesystem[0].access", "carries a SAS"],
        ),
        (
            "access typo",
            fs.replace("[filesystem.key]", "access = \"privat\"\n[filesystem.key]"),
            vec!["unknown access", "did you mean \"private\""],
        ),
        (
            "block size not a power of two",
            fs.replace(
                "[filesystem.key]",
                "block_size = \"3MiB\"\n[filesystem.key]",
            ),
            vec!["filesystem[0].block_size", "power of two"],
        ),
        (
            "cache smaller than 4 blocks",
            fs.replace(
                "[filesystem.key]",
                "cache_size = \"2MiB\"\n[filesystem.key]",
            ),
            vec!["filesystem[0].cache_size", "out of range"],
        ),
        (
            "ambiguous size unit",
            fs.replace(
                "[filesystem.key]",
                "cache_size = \"64MB\"\n[filesystem.key]",
            ),
            vec!["filesystem[0].cache_size", "ambiguous", "64MiB"],
        ),
        (
            "duration without unit",
            format!("[supervise]\ngrace_period = \"10\"\n{fs}"),
            vec![":2:16:", "supervise.grace_period", "no unit"],
        ),
        (
            "URL without a blob",
            fs.replace("/c/a.img", "/c"),
            vec!["filesystem[0].url", "no container and blob"],
        ),
        (
            "EC key type",
            fs.replace("kid = \"k1\"", "kid = \"k1\"\nkty = \"EC-HSM\""),
            vec!["filesystem[0].key.kty", "cannot be a disk key"],
        ),
        (
            "bad vault endpoint",
            fs.replace("v.vault.azure.net", "my vault"),
            vec!["filesystem[0].key.vault", "not a valid endpoint"],
        ),
        (
            "MAA user agent with a line break",
            format!("[attestation]\nmaa_user_agent = \"a\\r\\nX-Evil: 1\"\n{fs}"),
            vec![
                "attestation.maa_user_agent",
                "cannot be a User-Agent",
                "printable ASCII",
            ],
        ),
        (
            "empty MAA user agent",
            format!("[attestation]\nmaa_user_agent = \"\"\n{fs}"),
            vec!["attestation.maa_user_agent", "cannot be a User-Agent"],
        ),
        (
            "unknown log level",
            format!("[log]\nlevel = \"verbose\"\n{fs}"),
            vec!["log.level", "unknown log level"],
        ),
        (
            "unknown restart mode",
            format!("[app]\ncommand = [\"/bin/true\"]\nrestart = \"sometimes\"\n{fs}"),
            vec!["app.restart", "never"],
        ),
        (
            "empty app command",
            format!("[app]\ncommand = []\n{fs}"),
            vec!["app.command", "empty"],
        ),
        (
            "missing bearer token file",
            fs.replace(
                "kid = \"k1\"",
                "kid = \"k1\"\nbearer_token_file = \"/nonexistent/token\"",
            ),
            vec![
                "filesystem[0].key.bearer_token_file",
                "cannot read bearer token file",
            ],
        ),
        (
            "unknown shared_volume",
            format!("shared_volume = \"requried\"\n{fs}"),
            vec![
                ":1:17:",
                "shared_volume",
                "unknown shared_volume \"requried\"",
                "did you mean \"required\"",
            ],
        ),
        (
            "bad kernel module name",
            format!("kernel_modules = [\"../evil\"]\n{fs}"),
            vec!["kernel_modules[0]", "not a module name"],
        ),
        (
            "bad header pin",
            fs.replace(
                "[filesystem.key]",
                "header_sha256 = \"1234\"\n[filesystem.key]",
            ),
            vec!["filesystem[0].header_sha256", "2 bytes"],
        ),
        (
            "verity root hash on a read-write filesystem",
            fs.replace(
                "[filesystem.key]",
                &format!("read_write = true\n{VERITY}[filesystem.key]"),
            ),
            vec![
                "filesystem[0].verity_root_hash",
                "read_write = true",
                "read-only",
            ],
        ),
        (
            "verity root hash not 64 hex digits",
            fs.replace(
                "[filesystem.key]",
                &(VERITY.replacen(&"ab".repeat(32), &"ab".repeat(31), 1) + "[filesystem.key]"),
            ),
            vec![
                "filesystem[0].verity_root_hash",
                "31 bytes",
                "64 hex digits",
            ],
        ),
        (
            "verity hash offset not a multiple of 4096",
            fs.replace(
                "[filesystem.key]",
                &(VERITY.replace("16777216", "16777000") + "[filesystem.key]"),
            ),
            vec![
                "filesystem[0].verity_hash_offset",
                "16777000 is not a positive multiple of 4096",
                "image seal",
            ],
        ),
        (
            "verity hash offset zero",
            fs.replace(
                "[filesystem.key]",
                &(VERITY.replace("16777216", "0") + "[filesystem.key]"),
            ),
            vec![
                "filesystem[0].verity_hash_offset",
                "0 is not a positive multiple",
            ],
        ),
        (
            "verity root hash without its offset",
            fs.replace(
                "[filesystem.key]",
                &(VERITY.replace("verity_hash_offset = 16777216\n", "") + "[filesystem.key]"),
            ),
            vec![
                "filesystem[0].verity_hash_offset",
                "verity_root_hash is set but verity_hash_offset is not",
            ],
        ),
        (
            "verity offset without a root hash",
            fs.replace(
                "[filesystem.key]",
                "verity_hash_offset = 16777216\n[filesystem.key]",
            ),
            vec!["filesystem[0].verity_root_hash", "nothing pins the image"],
        ),
        (
            "fake VCEK key outside test mode",
            format!("[attestation]\nfake_vcek_key_file = \"/proc/version\"\n{fs}"),
            vec![
                ":2:22:",
                "attestation.fake_vcek_key_file",
                "allowed only in test mode",
            ],
        ),
        (
            "fake VCEK key that is not a key",
            format!(
                "test_mode = true\n[attestation]\nfake_vcek_key_file = \"/proc/version\"\n{fs}"
            ),
            vec![
                "attestation.fake_vcek_key_file",
                "/proc/version is not a P-384 private key",
            ],
        ),
        (
            "test ARK outside test mode",
            format!("[attestation]\ntest_ark_file = \"/proc/version\"\n{fs}"),
            vec![
                ":2:17:",
                "attestation.test_ark_file",
                "allowed only in test mode",
            ],
        ),
        (
            "test ARK that is not a certificate",
            format!("test_mode = true\n[attestation]\ntest_ark_file = \"/proc/version\"\n{fs}"),
            vec![
                "attestation.test_ark_file",
                "/proc/version is not one X.509 certificate",
            ],
        ),
        (
            "NBD timeout not above the io deadline",
            fs.replace(
                "[filesystem.key]",
                "io_deadline = \"30s\"\nnbd_timeout = \"20s\"\n[filesystem.key]",
            ),
            vec![
                "filesystem[0].nbd_timeout",
                "is not longer than io_deadline 30s",
                "make nbd_timeout longer than io_deadline",
            ],
        ),
        (
            "unknown on_failure",
            fs.replace(
                "[filesystem.key]",
                "on_failure = \"reboot\"\n[filesystem.key]",
            ),
            vec![
                "filesystem[0].on_failure",
                "reboot",
                "\"restart\"",
                "stay-down",
            ],
        ),
        (
            "restart_limit of 0",
            fs.replace("[filesystem.key]", "restart_limit = 0\n[filesystem.key]"),
            vec![
                "filesystem[0].restart_limit",
                "restart_limit 0 is out of range",
                "use 1 to 1000",
            ],
        ),
        (
            "dead_after of 0",
            fs.replace("[filesystem.key]", "dead_after = \"0s\"\n[filesystem.key]"),
            vec!["filesystem[0].dead_after", "is out of range"],
        ),
        (
            "http login authority without test_mode",
            format!("[endpoints]\nlogin_authority = \"http://login.example\"\n{fs}"),
            vec![
                ":2:19:",
                "endpoints.login_authority",
                "plain http",
                "allowed only with test_mode = true",
            ],
        ),
        (
            "http azcache without test_mode",
            format!("[endpoints]\nazcache = \"http://global.acccache.azure.net\"\n{fs}"),
            vec![":2:11:", "endpoints.azcache", "plain http", "test_mode"],
        ),
        (
            "http AMD KDS without test_mode",
            format!("[endpoints]\namd_kds = \"http://kdsintf.amd.com\"\n{fs}"),
            vec![":2:11:", "endpoints.amd_kds", "plain http", "test_mode"],
        ),
        (
            "http IMDS off the link-local address without test_mode",
            format!("[endpoints]\nimds = \"http://10.0.0.5\"\n{fs}"),
            vec![
                ":2:8:",
                "endpoints.imds",
                "plain http",
                "only to Azure's link-local 169.254.169.254",
            ],
        ),
        (
            "http THIM off the link-local address without test_mode",
            format!("[endpoints]\nthim = \"http://169.254.169.253/metadata/THIM\"\n{fs}"),
            vec![":2:8:", "endpoints.thim", "plain http"],
        ),
        (
            "CA bundle pin that is not hex",
            format!("[network]\nca_bundle = \"/proc/version\"\nca_bundle_sha256 = \"xyz\"\n{fs}"),
            vec![":3:20:", "network.ca_bundle_sha256", "is not hex"],
        ),
        (
            "CA bundle pin of the wrong length",
            format!("[network]\nca_bundle = \"/proc/version\"\nca_bundle_sha256 = \"abcd\"\n{fs}"),
            vec!["network.ca_bundle_sha256", "2 bytes", "64 hex digits"],
        ),
        (
            "CA bundle pin without a CA bundle",
            format!(
                "[network]\nca_bundle_sha256 = \"{}\"\n{fs}",
                "ab".repeat(32)
            ),
            vec![
                ":2:20:",
                "network.ca_bundle_sha256",
                "no ca_bundle to check",
                "set [network] ca_bundle",
            ],
        ),
        (
            "unknown transport",
            fs.replace("[filesystem.key]", "transport = \"nbdd\"\n[filesystem.key]"),
            vec![
                ":5:13:",
                "filesystem[0].transport",
                "unknown transport \"nbdd\"",
                "did you mean \"nbd\"?",
                "\"auto\"",
            ],
        ),
        (
            "transport of the wrong type",
            fs.replace("[filesystem.key]", "transport = 1\n[filesystem.key]"),
            vec!["filesystem[0].transport", "invalid type", "string"],
        ),
        (
            "relative readiness file",
            format!("readiness_file = \"ready\"\n{fs}"),
            vec![":1:18:", "readiness_file", "absolute"],
        ),
    ]
}

#[test]
fn bad_toml_manifests_exit_2_with_a_located_error() {
    let dir = scratch("bad-toml");
    let cases = toml_cases();
    assert!(cases.len() >= 25);
    for (name, text, words) in cases {
        let path = dir.join(format!("{}.toml", name.replace(' ', "_")));
        std::fs::write(&path, &text).unwrap();
        let out = run(&["check", path.to_str().unwrap()], &[], "");
        assert_eq!(out.code, 2, "{name}: exit code\n{}", out.stderr);
        assert!(
            out.stdout.is_empty(),
            "{name}: nothing on stdout for an invalid manifest: {}",
            out.stdout
        );
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains("manifest:"))
            .unwrap_or_else(|| panic!("{name}: no manifest error in {}", out.stderr));
        assert!(
            line.contains(path.to_str().unwrap()),
            "{name}: the error names the file: {line}"
        );
        for w in words {
            assert!(line.contains(w), "{name}: expected {w:?} in: {line}");
        }
        if !line.contains("syntax") {
            assert!(
                line.contains("; fix: "),
                "{name}: the error says how to fix it: {line}"
            );
        }
    }
}

#[test]
fn plain_http_is_allowed_to_azures_link_local_address_and_in_test_mode() {
    let dir = scratch("http-ok");
    let link_local = "[endpoints]\nimds = \"http://169.254.169.254\"\nthim = \"http://169.254.169.254/metadata/THIM/amd/certification\"\n";
    let test_mode = "test_mode = true\n[endpoints]\nlogin_authority = \"http://127.0.0.1:1\"\nazcache = \"http://127.0.0.1:2\"\namd_kds = \"http://127.0.0.1:3\"\nimds = \"http://127.0.0.1:4\"\n";
    for (name, text) in [("link-local", link_local), ("test-mode", test_mode)] {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, format!("{text}{FS}")).unwrap();
        let out = run(&["check", path.to_str().unwrap()], &[], "");
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
    }
}

#[test]
fn a_pinned_ca_bundle_loads_when_its_digest_matches_and_fails_closed_when_not() {
    use sha2::Digest;
    let dir = scratch("ca-pin");
    let ca = dir.join("ca.pem");
    let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    std::fs::write(&ca, pem).unwrap();
    let digest: String = sha2::Sha256::digest(pem.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = dir.join("m.toml");
    let manifest = |pin: &str| {
        format!(
            "[network]\nca_bundle = \"{}\"\nca_bundle_sha256 = \"{pin}\"\n{FS}",
            ca.display()
        )
    };

    std::fs::write(&path, manifest(&digest.to_uppercase())).unwrap();
    let out = run(&["check", path.to_str().unwrap()], &[], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "trust: web roots + {} (sha256 {digest})",
            ca.display()
        )),
        "check shows the pin: {}",
        out.stdout
    );

    let other = "0".repeat(64);
    std::fs::write(&path, manifest(&other)).unwrap();
    let out = run(&["check", path.to_str().unwrap()], &[], "");
    assert_eq!(out.code, 2, "{}", out.stderr);
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("manifest:"))
        .unwrap();
    for w in [
        ":3:20:",
        "network.ca_bundle_sha256",
        &format!(
            "CA bundle {}: its SHA-256 is {digest} but [network] ca_bundle_sha256 pins {other}",
            ca.display()
        ),
        "; fix: ship the bundle the manifest was written for",
    ] {
        assert!(line.contains(w), "expected {w:?} in: {line}");
    }
}

/// A legacy filesystem entry shaped like upstream's examples.
fn legacy_fs(mount_point: &str, url: &str, private: &str, kid: &str) -> String {
    format!(
        r#"{{"mount_point":"{mount_point}","azure_url":"{url}","azure_url_private":{private},
        "key":{{"kid":"{kid}","kty":"oct-HSM","authority":{{"endpoint":"sharedeus.eus.attest.azure.net"}},
        "akv":{{"endpoint":"v.vault.azure.net"}}}}}}"#
    )
}

#[test]
fn bad_legacy_manifests_exit_2_with_the_json_path() {
    let ok_url = "https://acct.blob.core.windows.net/c/a.img";
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "bad base64",
            "!!!not*base64!!!".into(),
            vec!["EncfsSideCarArgs", "not valid base64"],
        ),
        (
            "truncated JSON",
            b64(br#"{"azure_filesystems":[{"mount_point":"/a""#),
            vec!["truncated JSON"],
        ),
        (
            "not JSON at all",
            b64(b"mount_point=/a"),
            vec!["invalid JSON"],
        ),
        (
            "top level is an array",
            b64(b"[1,2]"),
            vec!["expected an object", "an array"],
        ),
        (
            "string where a bool belongs",
            b64(format!(
                "{{\"azure_filesystems\":[{}]}}",
                legacy_fs("/m/a", ok_url, "\"true\"", "k")
            )
            .as_bytes()),
            vec![
                "azure_filesystems[0].azure_url_private",
                "expected true or false",
                "a string",
            ],
        ),
        (
            "relative mount point",
            b64(format!(
                "{{\"azure_filesystems\":[{}]}}",
                legacy_fs("m/a", ok_url, "true", "k")
            )
            .as_bytes()),
            vec!["azure_filesystems[0].mount_point", "not an absolute path"],
        ),
        (
            "empty kid",
            b64(format!(
                "{{\"azure_filesystems\":[{}]}}",
                legacy_fs("/m/a", ok_url, "true", "")
            )
            .as_bytes()),
            vec!["azure_filesystems[0].key.kid", "key material missing"],
        ),
        (
            "http URL",
            b64(format!(
                "{{\"azure_filesystems\":[{}]}}",
                legacy_fs("/m/a", "http://acct/c/a.img", "true", "k")
            )
            .as_bytes()),
            vec!["azure_filesystems[0].azure_url", "plain http"],
        ),
        (
            "azure_filesystems not an array",
            b64(br#"{"azure_filesystems":{"mount_point":"/a"}}"#),
            vec!["azure_filesystems", "expected an array"],
        ),
    ];
    for (name, value, words) in cases {
        let out = run(&["check"], &[("EncfsSideCarArgs", value.as_str())], "");
        assert_eq!(out.code, 2, "{name}: exit code\n{}", out.stderr);
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains("manifest:"))
            .unwrap_or_else(|| panic!("{name}: no manifest error in {}", out.stderr));
        for w in words {
            assert!(line.contains(w), "{name}: expected {w:?} in: {line}");
        }
    }
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let dir = scratch("many");
    let text = FS
        .replace("/mnt/remote/a", "rel")
        .replace("https://acct", "http://acct");
    let path = dir.join("m.toml");
    std::fs::write(&path, text).unwrap();
    let out = run(&["check", path.to_str().unwrap()], &[], "");
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("not an absolute path"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("plain http"), "{}", out.stderr);
}

#[test]
fn no_manifest_anywhere_is_a_usage_error() {
    let out = run(&["check"], &[], "");
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("none found"), "{}", out.stderr);
    let out = run(&["run"], &[], "");
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("nothing to do"), "{}", out.stderr);
}

#[test]
fn a_malformed_rust_log_is_reported_and_ignored_and_a_text_filter_applies() {
    let out = run(&["check"], &[("RUST_LOG", "encfs_init=loud")], "");
    assert_eq!(out.code, 2);
    let warning = out
        .stderr
        .lines()
        .find(|l| l.contains("RUST_LOG"))
        .unwrap_or_else(|| panic!("no RUST_LOG warning in {}", out.stderr));
    assert!(
        warning.contains("\"encfs_init=loud\"") && warning.contains("ignored"),
        "{warning}"
    );
    // The next level source applies: the usage error still shows.
    assert!(out.stderr.contains("none found"), "{}", out.stderr);
    // `/text` keeps only messages containing it: the usage error goes, a matching one would stay.
    let out = run(&["check"], &[("RUST_LOG", "info/no such words")], "");
    assert_eq!(out.code, 2);
    assert!(!out.stderr.contains("none found"), "{}", out.stderr);
    let out = run(&["check"], &[("RUST_LOG", "info/none found")], "");
    assert!(out.stderr.contains("none found"), "{}", out.stderr);
}
