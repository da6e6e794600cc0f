//! T1: LUKS2 images across the two implementations, on a real kernel (run in the VM rig: `cargo xtask vmtest
//! root-luks`). An image made by `encfs-init image create` (on the host, by the scenario's prepare.sh) opens
//! with real cryptsetup, passes `fsck.ext4 -n` and shows its files; an image made by cryptsetup in the guest
//! (with ext4 written through cryptsetup's own mapping) opens through our path (LUKS2 reader, NBD over a
//! file source, our dm-crypt) and shows its files, and so does one made on a virtio disk (our dm-crypt over
//! /dev/vda); removal leaves no dm device.

#[cfg(test)]
mod root {
    use encfs_init::blob::{BlockSource, FileSource};
    use encfs_init::dm::{self, CryptDevice, CryptParams};
    use encfs_init::luks2::Header;
    use encfs_init::nbd::kernel;
    use encfs_init::secret::SecretBytes;
    use std::fs;
    use std::path::Path;
    use std::process::Command;
    use std::sync::Arc;

    const TEXT: &str = "This is a file inside the filesystem.\n";

    fn sh(cmd: &str) -> String {
        let out = Command::new("/bin/sh").arg("-c").arg(cmd).output().unwrap();
        assert!(
            out.status.success(),
            "`{cmd}`: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[test]
    #[ignore = "root+kernel: run via cargo xtask vmtest root-luks"]
    fn root_luks_our_image_opens_with_cryptsetup() {
        let img = "/images/ours.img";
        assert!(Path::new(img).exists(), "prepare.sh packs {img}");
        sh(&format!(
            "/usr/sbin/cryptsetup open --readonly --key-file /images/key.bin {img} theirs"
        ));
        sh("/usr/sbin/fsck.ext4 -n /dev/mapper/theirs");
        fs::create_dir_all("/mnt/theirs").unwrap();
        sh("mount -t ext4 -o ro,noload /dev/mapper/theirs /mnt/theirs");
        assert_eq!(fs::read_to_string("/mnt/theirs/test.txt").unwrap(), TEXT);
        sh("umount /mnt/theirs");
        sh("/usr/sbin/cryptsetup close theirs");
    }

    #[test]
    #[ignore = "root+kernel: run via cargo xtask vmtest root-luks"]
    fn root_luks_cryptsetup_image_opens_through_our_path() {
        let dir = Path::new("/run/luks-t");
        fs::create_dir_all(dir).unwrap();
        let img = dir.join("cs.img");
        fs::File::create(&img).unwrap().set_len(40 << 20).unwrap();
        let key = [0x5cu8; 32];
        fs::write(dir.join("key"), key).unwrap();
        let i = img.display();
        let k = dir.join("key");
        let k = k.display();
        sh(&format!(
            "/usr/sbin/cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
             --sector-size 4096 --key-file {k} {i}"
        ));
        sh(&format!("/usr/sbin/cryptsetup open --key-file {k} {i} cs"));
        sh("/usr/sbin/mke2fs -q -t ext4 /dev/mapper/cs");
        fs::create_dir_all("/mnt/cs").unwrap();
        sh("mount -t ext4 /dev/mapper/cs /mnt/cs");
        fs::write("/mnt/cs/test.txt", TEXT).unwrap();
        sh("umount /mnt/cs");
        sh("/usr/sbin/cryptsetup close cs");

        // Our path: the header from the image, the key opens a keyslot, NBD over the file, our dm-crypt.
        let src: Arc<dyn BlockSource> = Arc::new(FileSource::open(&img, false).unwrap());
        let mut head = vec![0u8; 16 << 20];
        src.read_at(0, &mut head).unwrap();
        let header = Header::parse(&head).unwrap();
        let vk = header.unlock(&head, &key).unwrap();
        let (offset, len) = header.data_range(src.size()).unwrap();
        let att = kernel::attach(src, true).unwrap();
        let params = CryptParams {
            cipher: header.segment.cipher.clone(),
            iv_offset: header.segment.iv_tweak,
            device: att.device().to_path_buf(),
            offset_sectors: offset / 512,
            size_sectors: len / 512,
            sector_size: header.segment.sector_size,
            read_only: true,
        };
        let dev = CryptDevice::open(
            "ours-luks",
            None,
            &params,
            &SecretBytes::new(vk.expose().to_vec()),
        )
        .unwrap();
        fs::create_dir_all("/mnt/ours").unwrap();
        sh(&format!(
            "mount -t ext4 -o ro,noload {} /mnt/ours",
            dev.node().display()
        ));
        assert_eq!(fs::read_to_string("/mnt/ours/test.txt").unwrap(), TEXT);
        sh("umount /mnt/ours");
        dev.remove().unwrap();
        att.detach().unwrap();
        assert!(
            dm::list().unwrap().is_empty(),
            "no dm device left: {:?}",
            dm::list()
        );
    }

    #[test]
    #[ignore = "root+kernel: run via cargo xtask vmtest root-luks"]
    fn root_luks_cryptsetup_image_on_a_virtio_disk_opens_with_our_dm() {
        use std::io::Read;
        let disk = "/dev/vda";
        assert!(
            Path::new(disk).exists(),
            "the scenario attaches a virtio disk"
        );
        let key = [0x3au8; 32];
        fs::write("/run/vda.key", key).unwrap();
        sh(&format!(
            "/usr/sbin/cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
             --sector-size 4096 --key-file /run/vda.key {disk}"
        ));
        sh(&format!(
            "/usr/sbin/cryptsetup open --key-file /run/vda.key {disk} vda-cs"
        ));
        sh("/usr/sbin/mke2fs -q -t ext4 /dev/mapper/vda-cs");
        fs::create_dir_all("/mnt/vda").unwrap();
        sh("mount -t ext4 /dev/mapper/vda-cs /mnt/vda");
        fs::write("/mnt/vda/test.txt", TEXT).unwrap();
        sh("umount /mnt/vda");
        sh("/usr/sbin/cryptsetup close vda-cs");

        let mut head = vec![0u8; 16 << 20];
        fs::File::open(disk).unwrap().read_exact(&mut head).unwrap();
        let header = Header::parse(&head).unwrap();
        let vk = header.unlock(&head, &key).unwrap();
        let sectors: u64 = fs::read_to_string("/sys/block/vda/size")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let (offset, len) = header.data_range(sectors * 512).unwrap();
        let params = CryptParams {
            cipher: header.segment.cipher.clone(),
            iv_offset: header.segment.iv_tweak,
            device: disk.into(),
            offset_sectors: offset / 512,
            size_sectors: len / 512,
            sector_size: header.segment.sector_size,
            read_only: true,
        };
        let dev = CryptDevice::open(
            "ours-vda",
            None,
            &params,
            &SecretBytes::new(vk.expose().to_vec()),
        )
        .unwrap();
        sh(&format!(
            "mount -t ext4 -o ro,noload {} /mnt/vda",
            dev.node().display()
        ));
        assert_eq!(fs::read_to_string("/mnt/vda/test.txt").unwrap(), TEXT);
        sh("umount /mnt/vda");
        dev.remove().unwrap();
        assert!(
            !dm::list().unwrap().contains(&"ours-vda".to_string()),
            "removed"
        );
    }
}
