//! T1: dm-crypt through our device-mapper code, on a real kernel. Run in the VM rig (`cargo xtask vmtest
//! root-dm`), where encfs-init is PID 1 and runs this binary as its application; cryptsetup is the oracle.
//! On the host these are ignored: the host kernel has no device-mapper.

#[cfg(test)]
mod root {
    use encfs_init::dm::{self, CryptDevice, CryptParams};
    use encfs_init::secret::SecretBytes;
    use std::fs;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::path::{Path, PathBuf};
    use std::process::Command;

    const VOLUME_KEY: [u8; 64] = {
        let mut k = [0u8; 64];
        let mut i = 0;
        while i < 64 {
            k[i] = (i as u8).wrapping_mul(37).wrapping_add(11);
            i += 1;
        }
        k
    };

    fn sh(cmd: &str) -> String {
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .expect("run sh");
        assert!(
            out.status.success(),
            "`{cmd}` failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A 48 MiB LUKS2 image (aes-xts-plain64, 512-bit key, 4096-byte sectors) on a loop device, made by
    /// cryptsetup with our known volume key, holding a known 1 MiB pattern written through cryptsetup's own
    /// mapping. Returns the loop device and cryptsetup's table (for comparison).
    struct Oracle {
        dir: PathBuf,
        loop_dev: String,
        table: String,
        pattern: Vec<u8>,
    }

    impl Oracle {
        fn new(tag: &str, sector_size: u32) -> Self {
            let dir = PathBuf::from(format!("/run/root-dm-{tag}"));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("vk"), VOLUME_KEY).unwrap();
            fs::write(dir.join("pass"), b"test passphrase").unwrap();
            let img = dir.join("img");
            fs::File::create(&img).unwrap().set_len(48 << 20).unwrap();
            let d = dir.display();
            sh(&format!(
                "/usr/sbin/cryptsetup luksFormat --batch-mode --type luks2 --cipher aes-xts-plain64 --key-size 512 \
                 --sector-size {sector_size} --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
                 --volume-key-file {d}/vk --key-file {d}/pass {d}/img"
            ));
            let loop_dev = sh(&format!("/usr/sbin/losetup -f --show {d}/img"));
            sh(&format!(
                "/usr/sbin/cryptsetup open --key-file {d}/pass {loop_dev} oracle-{tag}"
            ));
            let pattern: Vec<u8> = (0..1u32 << 20)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            {
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .open(format!("/dev/mapper/oracle-{tag}"))
                    .unwrap();
                f.write_all(&pattern).unwrap();
                f.sync_all().unwrap();
            }
            let table = sh(&format!("/usr/sbin/dmsetup table oracle-{tag}"));
            sh(&format!("/usr/sbin/cryptsetup close oracle-{tag}"));
            Oracle {
                dir,
                loop_dev,
                table,
                pattern,
            }
        }

        /// cryptsetup's table fields: start, length, "crypt", cipher, key, iv_offset, device, offset, options...
        fn fields(&self) -> Vec<String> {
            self.table.split_whitespace().map(str::to_string).collect()
        }

        fn params(&self, read_only: bool) -> CryptParams {
            let f = self.fields();
            CryptParams {
                cipher: f[3].clone(),
                iv_offset: f[5].parse().unwrap(),
                device: PathBuf::from(&self.loop_dev),
                offset_sectors: f[7].parse().unwrap(),
                size_sectors: f[1].parse().unwrap(),
                sector_size: f
                    .iter()
                    .find_map(|o| o.strip_prefix("sector_size:"))
                    .map_or(512, |s| s.parse().unwrap()),
                read_only,
            }
        }
    }

    impl Drop for Oracle {
        fn drop(&mut self) {
            let _ = Command::new("/usr/sbin/losetup")
                .args(["-d", &self.loop_dev])
                .status();
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    fn read_head(node: &Path, n: usize) -> Vec<u8> {
        let mut f = fs::File::open(node).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        let mut buf = vec![0u8; n];
        f.read_exact(&mut buf).unwrap();
        buf
    }

    fn check_same_as_cryptsetup(sector_size: u32) {
        let tag = format!("s{sector_size}");
        let o = Oracle::new(&tag, sector_size);
        let name = format!("ours-{tag}");
        let dev = CryptDevice::open(
            &name,
            None,
            &o.params(true),
            &SecretBytes::new(VOLUME_KEY.to_vec()),
        )
        .unwrap();
        assert!(
            dev.node().to_string_lossy().starts_with("/dev/dm-"),
            "{}",
            dev.node().display()
        );

        let ours: Vec<String> = sh(&format!("/usr/sbin/dmsetup table {name}"))
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let theirs = o.fields();
        assert_eq!(
            ours.len(),
            theirs.len(),
            "ours {ours:?} vs cryptsetup {theirs:?}"
        );
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            match i {
                4 => {
                    assert!(
                        a.starts_with(":64:logon:encfs:"),
                        "our key field is a keyring reference: {a}"
                    );
                    assert!(!a.contains("0b30"), "no key bytes in the table: {a}");
                }
                6 => {} // the device: cryptsetup writes major:minor, we write the path
                _ => assert_eq!(
                    a, b,
                    "table field {i}: ours {ours:?} vs cryptsetup {theirs:?}"
                ),
            }
        }
        let got = read_head(dev.node(), o.pattern.len());
        if let Some(at) = got.iter().zip(&o.pattern).position(|(a, b)| a != b) {
            panic!("our mapping decrypts differently from cryptsetup's, first at byte {at}");
        }
        // The logon key lived only for the table load.
        let keys = fs::read_to_string("/proc/keys").unwrap_or_default();
        assert!(
            !keys.contains(&format!("encfs:{name}")),
            "the key was left in a keyring:\n{keys}"
        );

        dev.remove().unwrap();
        assert!(!dm::list().unwrap().contains(&name), "removed");
    }

    #[test]
    #[ignore = "root+kernel: run via cargo xtask vmtest root-dm"]
    fn root_dm_matches_cryptsetup_4096() {
        check_same_as_cryptsetup(4096);
    }

    #[test]
    #[ignore = "root+kernel: run via cargo xtask vmtest root-dm"]
    fn root_dm_matches_cryptsetup_512() {
        check_same_as_cryptsetup(512);
    }

    #[test]
    #[ignore = "root+kernel: run via cargo xtask vmtest root-dm"]
    fn root_dm_read_only_refuses_writes_and_drop_removes() {
        let o = Oracle::new("ro", 4096);
        let name = "ours-ro".to_string();
        {
            let dev = CryptDevice::open(
                &name,
                None,
                &o.params(true),
                &SecretBytes::new(VOLUME_KEY.to_vec()),
            )
            .unwrap();
            let w = fs::OpenOptions::new().write(true).open(dev.node());
            let refused = match w {
                Err(_) => true,
                Ok(mut f) => f
                    .write_all(&[0u8; 4096])
                    .and_then(|_| f.sync_all())
                    .is_err(),
            };
            assert!(refused, "a read-only mapping accepted a write");
            assert!(dm::list().unwrap().contains(&name));
        }
        assert!(
            !dm::list().unwrap().contains(&name),
            "a dropped mapping is removed"
        );
    }

    #[test]
    #[ignore = "root+kernel: run via cargo xtask vmtest root-dm"]
    fn root_dm_wrong_key_reads_garbage_not_plaintext() {
        let o = Oracle::new("wrong", 4096);
        let mut wrong = VOLUME_KEY.to_vec();
        wrong[0] ^= 1;
        let dev = CryptDevice::open(
            "ours-wrong",
            None,
            &o.params(true),
            &SecretBytes::new(wrong),
        )
        .unwrap();
        assert!(
            read_head(dev.node(), 4096) != o.pattern[..4096],
            "a wrong key must not decrypt"
        );
        dev.remove().unwrap();
    }

    #[test]
    #[ignore = "root+kernel: run via cargo xtask vmtest root-dm"]
    fn root_dm_bad_table_fails_and_leaves_nothing() {
        let o = Oracle::new("bad", 4096);
        let mut p = o.params(true);
        p.cipher = "no-such-cipher-plain64".into();
        let e = CryptDevice::open("ours-bad", None, &p, &SecretBytes::new(VOLUME_KEY.to_vec()))
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("load the crypt table of ours-bad"), "{msg}");
        assert!(
            !dm::list().unwrap().iter().any(|n| n == "ours-bad"),
            "nothing left mapped after a failure"
        );
    }
}
