//! The dm-verity hash tree of `image create --verity` and `image seal`, with veritysetup as the oracle:
//! `veritysetup verify` (userspace: no device-mapper, no root) must accept a sealed image with the root hash
//! and offset we print, and `veritysetup format --hash-offset` given our salt and uuid over a copy of the
//! same data must write the very same bytes (superblock, tree, level order) and root hash.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod luks2_util;

use encfs_init::verity::tree;
use encfs_init::verity::{Superblock, BLOCK};
use luks2_util::*;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_encfs-init"))
}

fn veritysetup() -> Command {
    Command::new(tool("veritysetup", "cryptsetup-bin"))
}

/// The `verity_root_hash` and `verity_hash_offset` lines of a tool's stdout.
fn manifest_lines(stdout: &str) -> (String, u64) {
    let value = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(" = "))
            .unwrap_or_else(|| panic!("no {key} line in:\n{stdout}"))
            .to_string()
    };
    let root = value("verity_root_hash").trim_matches('"').to_string();
    assert_eq!(root.len(), 64, "{root}");
    (root, value("verity_hash_offset").parse().unwrap())
}

fn seal_cli(img: &Path) -> (String, u64) {
    let o = bin().args(["image", "seal"]).arg(img).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "image seal failed: {stderr}");
    assert!(stderr.contains("hash tree + superblock"), "{stderr}");
    manifest_lines(&String::from_utf8_lossy(&o.stdout))
}

fn verify(img: &Path, root: &str, offset: u64) -> Output {
    veritysetup()
        .arg("verify")
        .arg(img)
        .arg(img)
        .arg(root)
        .arg(format!("--hash-offset={offset}"))
        .output()
        .unwrap()
}

fn assert_verifies(img: &Path, root: &str, offset: u64) {
    let o = verify(img, root, offset);
    assert!(
        o.status.success(),
        "veritysetup verify refused {}: {}",
        img.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn superblock_at(img: &Path, offset: u64) -> Superblock {
    let mut b = [0u8; 512];
    std::fs::File::open(img)
        .unwrap()
        .read_exact_at(&mut b, offset)
        .unwrap();
    Superblock::parse(&b).unwrap()
}

/// `veritysetup format` over a copy of `img`'s first `offset` bytes, with `img`'s salt and uuid: the same
/// file, byte for byte, and the same root hash.
fn assert_veritysetup_writes_the_same(s: &Scratch, img: &Path, root: &str, offset: u64) {
    let sb = superblock_at(img, offset);
    assert_eq!(sb.data_blocks * u64::from(BLOCK), offset);
    let copy = s.path("oracle.img");
    let mut data = std::fs::read(img).unwrap();
    let ours = data.clone();
    data.truncate(offset as usize);
    std::fs::write(&copy, &data).unwrap();
    let out = run(veritysetup()
        .arg("format")
        .arg(&copy)
        .arg(&copy)
        .arg(format!("--hash-offset={offset}"))
        .arg(format!("--data-blocks={}", sb.data_blocks))
        .arg(format!("--salt={}", encfs_init::hex::encode(&sb.salt)))
        .arg(format!("--uuid={}", encfs_init::uuid::text(&sb.uuid))));
    let theirs_root = out
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .unwrap_or_else(|| panic!("no root hash in:\n{out}"))
        .trim();
    assert_eq!(theirs_root, root, "veritysetup's root hash differs");
    let theirs = std::fs::read(&copy).unwrap();
    assert_eq!(theirs.len(), ours.len(), "veritysetup's file size differs");
    let first_diff = ours.iter().zip(&theirs).position(|(a, b)| a != b);
    assert_eq!(
        first_diff, None,
        "veritysetup's bytes differ from ours at this offset"
    );
    std::fs::remove_file(&copy).unwrap();
}

/// An empty unlinked file for the tree (what `image seal` builds it in).
fn scratch(s: &Scratch) -> std::fs::File {
    let p = s.path("scratch");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&p)
        .unwrap();
    std::fs::remove_file(&p).unwrap();
    f
}

fn flip(img: &Path, at: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x01], at).unwrap();
}

fn image_check(img: &Path, key: &Path) -> String {
    let o = bin()
        .args(["image", "check", "--key-file"])
        .arg(key)
        .arg(img)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "image check: {stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

#[test]
fn created_with_verity_is_veritysetups_own_format_and_still_opens() {
    let s = Scratch::new("verity-create");
    let src = s.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello.txt"), b"hello, verified world\n").unwrap();
    let (img, key) = (s.path("out.img"), s.path("key"));
    key_file(&key, 32);
    let o = bin()
        .args(["image", "create", "--verity", "--key-file"])
        .arg(&key)
        .arg("--from")
        .arg(&src)
        .arg(&img)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "image create --verity: {stderr}");
    assert!(stderr.contains("hash tree + superblock"), "{stderr}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("header_sha256 = \""), "{stdout}");
    let (root, offset) = manifest_lines(&stdout);
    assert_eq!(offset % 4096, 0);
    assert!(
        offset > 16 << 20,
        "the tree must follow the whole LUKS2 device"
    );

    assert_verifies(&img, &root, offset);
    assert_veritysetup_writes_the_same(&s, &img, &root, offset);
    let check = image_check(&img, &key);
    assert!(
        check.contains(&format!("superblock at byte {offset}")) && check.contains(&root),
        "{check}"
    );

    // Sealing twice is refused, naming the offset and root hash to pin; the image is left as it was.
    let before = std::fs::metadata(&img).unwrap().len();
    let o = bin().args(["image", "seal"]).arg(&img).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("already sealed")
            && stderr.contains(&format!("byte {offset}"))
            && stderr.contains(&root)
            && stderr.contains("; fix: "),
        "{stderr}"
    );
    assert_eq!(std::fs::metadata(&img).unwrap().len(), before);
    assert_verifies(&img, &root, offset);
}

#[test]
fn a_cryptsetup_image_seals_and_any_changed_byte_fails_verify() {
    let s = Scratch::new("verity-seal");
    let (img, key) = (s.path("luks.img"), s.path("key"));
    key_file(&key, 32);
    sparse(&img, 24);
    luks_format(&img, &key, FAST_PBKDF2);
    let size = std::fs::metadata(&img).unwrap().len();
    let (root, offset) = seal_cli(&img);
    assert_eq!(
        offset, size,
        "the superblock goes right after the LUKS2 device"
    );

    assert_verifies(&img, &root, offset);
    assert_veritysetup_writes_the_same(&s, &img, &root, offset);
    image_check(&img, &key);

    // A changed byte anywhere (the LUKS2 header, the encrypted data, the tree) fails verification.
    let sb = superblock_at(&img, offset);
    let layout = tree::layout(&sb, offset).unwrap();
    let data_level = layout.levels[0].first_block * 4096;
    for (what, at) in [
        ("header", 100),
        ("data", 20 << 20),
        ("top of the tree", (offset / 4096 + 1) * 4096 + 5),
        ("data's hash level", data_level + 4096 + 7),
    ] {
        let copy = s.path("flipped.img");
        std::fs::copy(&img, &copy).unwrap();
        flip(&copy, at);
        assert!(
            !verify(&copy, &root, offset).status.success(),
            "veritysetup verify accepted a changed byte in the {what}"
        );
    }
}

#[test]
fn a_changed_data_byte_changes_the_root_and_salt_and_uuid_are_fresh() {
    let s = Scratch::new("verity-root");
    let (a, b) = (s.path("a.img"), s.path("b.img"));
    let key = s.path("key");
    key_file(&key, 32);
    sparse(&a, 20);
    luks_format(&a, &key, FAST_PBKDF2);
    std::fs::copy(&a, &b).unwrap();
    // Two seals of the same image: fresh 32-byte salts and version-4 uuids, so different roots.
    let (root_a, off) = seal_cli(&a);
    let (root_b, off_b) = seal_cli(&b);
    assert_eq!(off, off_b);
    let (sa, sb) = (superblock_at(&a, off), superblock_at(&b, off));
    assert_eq!((sa.salt.len(), sb.salt.len()), (32, 32));
    assert_ne!(sa.salt, sb.salt);
    assert_ne!(sa.uuid, sb.uuid);
    assert_eq!((sa.uuid[6] >> 4, sa.uuid[8] >> 6), (4, 2));
    assert_ne!(root_a, root_b);

    // Same salt, one data byte apart: different roots (the library call `image seal` makes).
    let seal_with = |path: &Path, salt: &[u8]| {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let sb = Superblock {
            salt: salt.to_vec(),
            ..superblock_at(&a, off)
        };
        f.set_len(off).unwrap();
        tree::seal(&f, &scratch(&s), &sb, off, &mut |_| ()).unwrap()
    };
    let same = seal_with(&b, &sa.salt);
    assert_eq!(
        encfs_init::hex::encode(&same),
        root_a,
        "same data, same salt: same root"
    );
    flip(&b, 18 << 20);
    let changed = seal_with(&b, &sa.salt);
    assert_ne!(same, changed);
}

/// The level geometry at its edges (no level, one, two, three), against `veritysetup format` on plain files
/// through the library call.
#[test]
fn tree_geometry_matches_veritysetup_at_level_edges() {
    let s = Scratch::new("verity-geometry");
    let salt: Vec<u8> = (0u8..32).collect();
    for blocks in [1u64, 2, 128, 129, 16384, 16385] {
        let img = s.path(&format!("{blocks}.img"));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&img)
            .unwrap();
        f.set_len(blocks * 4096).unwrap();
        for i in [0, blocks / 2, blocks - 1] {
            f.write_all_at(format!("block {i} of {blocks}").as_bytes(), i * 4096 + 9)
                .unwrap();
        }
        let offset = blocks * 4096;
        let sb = Superblock {
            uuid: encfs_init::uuid::v4_bytes([blocks as u8; 16]),
            algorithm: "sha256".into(),
            data_block_size: BLOCK,
            hash_block_size: BLOCK,
            data_blocks: blocks,
            salt: salt.clone(),
        };
        let root = encfs_init::hex::encode(
            &tree::seal(&f, &scratch(&s), &sb, offset, &mut |_| ()).unwrap(),
        );
        drop(f);
        assert_veritysetup_writes_the_same(&s, &img, &root, offset);
        assert_verifies(&img, &root, offset);
        std::fs::remove_file(&img).unwrap();
    }
}

/// A 1 GiB image seals with its address space limited to 128 MiB: the tree is built streaming, one level
/// at a time from the file, never holding the image.
#[test]
fn a_sparse_gigabyte_image_seals_in_bounded_memory() {
    let s = Scratch::new("verity-big");
    let (img, key) = (s.path("big.img"), s.path("key"));
    key_file(&key, 32);
    sparse(&img, 1024);
    luks_format(&img, &key, FAST_PBKDF2);
    let o = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 131072 && exec \"$0\" image seal \"$1\"")
        .arg(env!("CARGO_BIN_EXE_encfs-init"))
        .arg(&img)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "image seal under ulimit -v 128 MiB: {stderr}"
    );
    let (root, offset) = manifest_lines(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(offset, 1 << 30);
    // 262144 data blocks: 2048 + 16 + 1 tree blocks after the superblock's block.
    let size = std::fs::metadata(&img).unwrap().len();
    assert_eq!(size, offset + (1 + 2048 + 16 + 1) * 4096);
    assert_verifies(&img, &root, offset);
}

/// An image whose size is not a multiple of 4096 is sealed as if padded with zeros to the next block: the
/// superblock goes there, and the padded image still opens.
#[test]
fn an_odd_sized_image_is_padded_to_the_next_block() {
    let s = Scratch::new("verity-odd");
    let (img, key) = (s.path("odd.img"), s.path("key"));
    key_file(&key, 32);
    let size = (20 << 20) + 1000;
    std::fs::File::create(&img).unwrap().set_len(size).unwrap();
    luks_format(&img, &key, FAST_PBKDF2);
    let (root, offset) = seal_cli(&img);
    assert_eq!(offset, size.div_ceil(4096) * 4096);
    assert_verifies(&img, &root, offset);
    assert_veritysetup_writes_the_same(&s, &img, &root, offset);
    image_check(&img, &key);

    // A file that is not a LUKS2 image is refused and left as it was.
    let plain = s.path("plain.img");
    std::fs::write(&plain, vec![7u8; 1 << 20]).unwrap();
    let o = bin().args(["image", "seal"]).arg(&plain).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not a LUKS2 image"), "{stderr}");
    assert_eq!(std::fs::metadata(&plain).unwrap().len(), 1 << 20);
}

/// A seal killed while hashing leaves the image as it was (the tree is built in an unlinked scratch file
/// and appended only at the end) and leaves no file behind.
#[test]
fn a_seal_killed_while_hashing_leaves_the_image_as_it_was() {
    use std::io::{BufRead, BufReader};
    let s = Scratch::new("verity-kill");
    let (img, key) = (s.path("big.img"), s.path("key"));
    key_file(&key, 32);
    sparse(&img, 4096);
    luks_format(&img, &key, FAST_PBKDF2);
    let before = std::fs::read_dir(&s.0).unwrap().count();
    let mut child = bin()
        .args(["image", "seal"])
        .arg(&img)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(first.contains("image: hashed"), "{first}");
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 4 << 30);
    assert_eq!(std::fs::read_dir(&s.0).unwrap().count(), before);
}
