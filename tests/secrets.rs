//! Secrets never reach the output: a manifest full of them, checked and run at trace level, with a log file;
//! neither stdout, stderr nor the log file may contain any secret (nor its hex or base64 forms).

mod common;

use common::{b64, run, scratch};

const BEARER: &str = "eyJhbGciOiJSUzI1NiJ9.BEARER-SECRET-PAYLOAD.sig123";
const BEARER_IN_FILE: &str = "FILE-BEARER-SECRET-7f3a9c";
const SAS_SIG: &str = "SASSIGSECRET0123456789abcdef%3D";
const SAS_IN_FILE: &str = "sv=2022-11-02&sp=r&sig=FILESASSECRET99";
const RAW_HEX: &str = "5ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e7aaaa";

fn forbidden() -> Vec<String> {
    let raw_file_key = [0xC7u8; 32];
    vec![
        BEARER.into(),
        "BEARER-SECRET-PAYLOAD".into(),
        BEARER_IN_FILE.into(),
        SAS_SIG.into(),
        "SASSIGSECRET".into(),
        "FILESASSECRET99".into(),
        RAW_HEX.into(),
        RAW_HEX.to_uppercase(),
        "5ec2e75ec2e7".into(),
        "c7c7c7c7c7c7c7c7".into(),
        b64(&raw_file_key)[..16].to_string(),
    ]
}

fn assert_clean(what: &str, text: &str) {
    for s in forbidden() {
        assert!(!text.contains(&s), "{what} leaks a secret ({s}):\n{text}");
    }
}

#[test]
fn check_and_run_never_print_a_secret() {
    let dir = scratch("secrets");
    std::fs::write(dir.join("bearer.txt"), format!("{BEARER_IN_FILE}\n")).unwrap();
    std::fs::write(dir.join("sas.txt"), SAS_IN_FILE).unwrap();
    std::fs::write(dir.join("key.bin"), [0xC7u8; 32]).unwrap();
    let log_file = dir.join("encfs.log");
    let manifest = format!(
        r#"
test_mode = true
readiness_file = "{ready}"
[log]
level = "trace"
file = "{log}"

[[filesystem]]
mount_point = "/mnt/s/a"
url = "https://acct.blob.core.windows.net/c/a.img?sv=2022-11-02&sig={SAS_SIG}"
[filesystem.key]
kid = "k1"
authority = "sharedeus.eus.attest.azure.net"
vault = "v.vault.azure.net"
bearer_token = "{BEARER}"

[[filesystem]]
mount_point = "/mnt/s/b"
url = "https://acct.blob.core.windows.net/c/b.img"
sas_token_file = "sas.txt"
[filesystem.key]
kid = "k2"
authority = "sharedeus.eus.attest.azure.net"
vault = "v.vault.azure.net"
bearer_token_file = "bearer.txt"

[[filesystem]]
mount_point = "/mnt/s/c"
url = "https://acct.blob.core.windows.net/c/c.img"
[filesystem.key]
raw_key = "{RAW_HEX}"

[[filesystem]]
mount_point = "/mnt/s/d"
url = "https://acct.blob.core.windows.net/c/d.img"
[filesystem.key]
raw_key_file = "key.bin"
"#,
        ready = dir.join("ready").display(),
        log = log_file.display(),
    );
    let path = dir.join("secrets.toml");
    std::fs::write(&path, manifest).unwrap();
    let p = path.to_str().unwrap();

    let env = [("RUST_LOG", "trace"), ("LogLevel", "trace")];
    let check = run(&["check", p], &env, "");
    assert_eq!(check.code, 0, "{}", check.stderr);
    // The plan is printed in full, secrets only as their length.
    assert!(
        check.stdout.contains(&format!(
            "static bearer token <redacted, {} chars>",
            BEARER.len()
        )),
        "{}",
        check.stdout
    );
    assert!(
        check.stdout.contains("raw key <redacted, 32 bytes>"),
        "{}",
        check.stdout
    );
    assert!(check.stdout.contains("SAS <redacted"), "{}", check.stdout);
    assert!(
        check.stderr.contains("TEST MODE IS ON"),
        "test mode is logged loudly: {}",
        check.stderr
    );
    assert_clean("check stdout", &check.stdout);
    assert_clean("check stderr", &check.stderr);

    let run_out = run(&["run", "--manifest", p, "--", "/bin/true"], &env, "");
    assert_clean("run stdout", &run_out.stdout);
    assert_clean("run stderr", &run_out.stderr);
    assert!(
        !run_out.stderr.is_empty(),
        "run logs something at trace level"
    );

    let logged = std::fs::read_to_string(&log_file).expect("the manifest's log file is written");
    assert!(!logged.is_empty());
    assert_clean("log file", &logged);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&log_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the log file is private");
}

#[test]
fn legacy_bearer_token_is_never_printed_even_on_error() {
    let json = format!(
        r#"{{"azure_filesystems":[{{"mount_point":"relative","azure_url":"https://a.blob.core.windows.net/c/b?sig={SAS_SIG}",
        "key":{{"kid":"k","authority":{{"endpoint":"m.attest.azure.net"}},"akv":{{"endpoint":"v.vault.azure.net","bearer_token":"{BEARER}"}}}}}}]}}"#
    );
    let out = run(
        &["check"],
        &[
            ("EncfsSideCarArgs", b64(json.as_bytes()).as_str()),
            ("RUST_LOG", "trace"),
        ],
        "",
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("azure_filesystems[0].mount_point"),
        "{}",
        out.stderr
    );
    assert_clean("legacy check", &format!("{}{}", out.stdout, out.stderr));
    // A URL error shows the URL with its query redacted.
    let json = json.replace(
        "https://a.blob.core.windows.net/c/b",
        "https://a.blob.core.windows.net/c",
    );
    let out = run(
        &["check"],
        &[("EncfsSideCarArgs", b64(json.as_bytes()).as_str())],
        "",
    );
    assert!(out.stderr.contains("?<redacted>"), "{}", out.stderr);
    assert_clean("legacy URL error", &out.stderr);
}
