//! `encfs-init image create` / `image check`, with cryptsetup and e2fsprogs as the oracles:
//! cryptsetup must accept our header (`luksDump`, `open --test-passphrase`), agree on the volume key, and
//! decrypt our payload (an offline `cryptsetup reencrypt` re-keys the image: it reads our ciphertext with
//! its own implementation); the ext4 inside must be clean (`e2fsck -fn`) and hold the source files
//! (`debugfs -R cat`). Nothing here needs root, loop or dm.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod luks2_util;

use encfs_init::image::{create, CreateArgs};
use encfs_init::luks2::crypto::DataCipher;
use encfs_init::luks2::format::NewKdf;
use encfs_init::luks2::{self, Header};
use luks2_util::*;
use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_encfs-init"))
}

fn source(s: &Scratch) -> std::path::PathBuf {
    let src = s.path("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::write(src.join("hello.txt"), b"hello, confidential world\n").unwrap();
    let mut blob = vec![0u8; 3 << 20];
    getrandom::fill(&mut blob).unwrap();
    std::fs::write(src.join("sub/deeper/blob.bin"), &blob).unwrap();
    std::os::unix::fs::symlink("hello.txt", src.join("link")).unwrap();
    src
}

/// Re-key `img` with cryptsetup (offline: it decrypts our data with its own code), then decrypt the
/// payload with cryptsetup's new volume key and check the ext4 and its files against `src`.
fn cryptsetup_reads_the_payload(s: &Scratch, img: &Path, key: &Path, src: &Path) {
    run(Command::new(cryptsetup())
        .args(["reencrypt", "-q", "--force-offline-reencrypt", "--key-file"])
        .arg(key)
        .args(FAST_PBKDF2)
        .arg(img));
    let buf = std::fs::read(img).unwrap();
    let h = Header::parse(&buf).unwrap();
    let vk = dump_volume_key(img, key);
    let (off, len) = h.data_range(buf.len() as u64).unwrap();
    let mut data = buf[off as usize..(off + len) as usize].to_vec();
    DataCipher::new(&vk, &h.segment)
        .unwrap()
        .decrypt(&mut data, 0);
    let fs = s.path("fs.ext4");
    std::fs::write(&fs, &data).unwrap();
    run(Command::new(tool("e2fsck", "e2fsprogs"))
        .args(["-fn"])
        .arg(&fs));
    for f in ["hello.txt", "sub/deeper/blob.bin"] {
        let got = Command::new(tool("debugfs", "e2fsprogs"))
            .args(["-R", &format!("cat /{f}")])
            .arg(&fs)
            .output()
            .unwrap()
            .stdout;
        assert!(
            got == std::fs::read(src.join(f)).unwrap(),
            "{f} differs inside the image"
        );
    }
}

#[test]
fn created_image_is_accepted_by_cryptsetup_and_holds_the_files() {
    let s = Scratch::new("create");
    let src = source(&s);
    let (img, key) = (s.path("out.img"), s.path("key"));
    let pass = key_file(&key, 32);
    let out = bin()
        .args(["image", "create", "--key-file"])
        .arg(&key)
        .arg("--from")
        .arg(&src)
        .arg(&img)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dump = run(Command::new(cryptsetup()).arg("luksDump").arg(&img));
    assert!(
        dump.contains("Version:       \t2") && dump.contains("sector: 4096 [bytes]"),
        "{dump}"
    );
    assert!(dump.contains("PBKDF:      pbkdf2"), "{dump}");
    run(Command::new(cryptsetup())
        .args(["open", "--test-passphrase", "--key-file"])
        .arg(&key)
        .arg(&img));

    let buf = std::fs::read(&img).unwrap();
    assert_eq!(buf.len() % (1 << 20), 0, "size is whole MiB");
    let h = Header::parse(&buf).unwrap();
    assert!(
        stdout.contains(&format!(
            "header_sha256 = \"{}\"",
            encfs_init::hex::encode(&h.header_sha256)
        )),
        "{stdout}"
    );
    let vk = luks2::unlock_pinned(&buf, &pass, Some(&h.header_sha256)).unwrap();
    assert_eq!(vk.expose(), dump_volume_key(&img, &key).as_slice());
    assert_eq!(vk.len(), 64);

    // image check: opens (0); a wrong key does not (1) and explains the key rules.
    let ok = bin()
        .args(["image", "check", "--key-file"])
        .arg(&key)
        .arg(&img)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{text}");
    assert!(
        text.contains("opens keyslot 0")
            && text.contains("aes-xts-plain64, 512-bit key, 4096-byte sectors"),
        "{text}"
    );
    let wrong = s.path("wrong");
    key_file(&wrong, 32);
    let bad = bin()
        .args(["image", "check", "--key-file"])
        .arg(&wrong)
        .arg(&img)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{text}");
    assert!(
        text.contains("opens none of the keyslots tried (0)"),
        "{text}"
    );
    assert!(
        text.contains("RSA-HSM") && text.contains("#233") && text.contains("oct"),
        "{text}"
    );
    // A pin that does not match is refused (1); a missing image is a usage error (2).
    let pin = "00".repeat(32);
    let o = bin()
        .args(["image", "check", "--header-sha256", &pin, "--key-file"])
        .arg(&key)
        .arg(&img)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("does not match the pinned header_sha256"));
    let o = bin()
        .args(["image", "check", "--key-file"])
        .arg(&key)
        .arg(s.path("nope"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));

    cryptsetup_reads_the_payload(&s, &img, &key, &src);
}

#[test]
fn argon2id_with_512_byte_sectors() {
    let s = Scratch::new("create-argon");
    let src = source(&s);
    let (img, key) = (s.path("a.img"), s.path("key"));
    let pass = key_file(&key, 32);
    // Small Argon2 memory: the debug-build KDF is slow; the CLI's default is 64 MiB.
    let kdf = NewKdf::Argon2id {
        time: 4,
        memory_kib: 4096,
        cpus: 1,
    };
    let a = CreateArgs {
        key_file: key.clone(),
        from: src.clone(),
        size: Some(40 << 20),
        kdf,
        sector_size: 512,
        verity: false,
        out: img.clone(),
    };
    create(&a).unwrap();
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 40 << 20);
    let dump = run(Command::new(cryptsetup()).arg("luksDump").arg(&img));
    assert!(
        dump.contains("PBKDF:      argon2id") && dump.contains("sector: 512 [bytes]"),
        "{dump}"
    );
    run(Command::new(cryptsetup())
        .args(["open", "--test-passphrase", "--key-file"])
        .arg(&key)
        .arg(&img));
    let buf = std::fs::read(&img).unwrap();
    assert_eq!(
        luks2::unlock(&buf, &pass).unwrap().expose(),
        dump_volume_key(&img, &key).as_slice()
    );
    cryptsetup_reads_the_payload(&s, &img, &key, &src);
}

#[test]
fn refusals() {
    let s = Scratch::new("create-refuse");
    let src = source(&s);
    let key = s.path("key");
    key_file(&key, 32);
    let args = |out: &str, size: Option<u64>| CreateArgs {
        key_file: key.clone(),
        from: src.clone(),
        size,
        kdf: NewKdf::Pbkdf2 { iterations: 1000 },
        sector_size: 4096,
        verity: false,
        out: s.path(out),
    };
    // OUT exists: never overwritten.
    std::fs::write(s.path("exists.img"), b"precious").unwrap();
    // The error as a person reads it: the one chain printer (src/errors.rs).
    let text = |e: encfs_init::image::Error| encfs_init::errors::chain(&e);
    assert!(text(create(&args("exists.img", None)).unwrap_err()).contains("exists"));
    assert_eq!(std::fs::read(s.path("exists.img")).unwrap(), b"precious");
    // A size the content does not fit in.
    let e = text(create(&args("small.img", Some(19 << 20))).unwrap_err());
    assert!(e.contains("mkfs.ext4"), "{e}");
    assert!(!s.path("small.img").exists());
    // A key file that is not 32 raw bytes (hex text with a newline).
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    assert!(text(create(&args("hex.img", None)).unwrap_err()).contains("raw 32-byte key"));
    // No temporary files left behind.
    let left: Vec<_> = std::fs::read_dir(&s.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.iter().all(|n| !n.to_string_lossy().starts_with('.')),
        "{left:?}"
    );
}
