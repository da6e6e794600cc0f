//! `encfs-init image`: make and inspect encrypted filesystem images on a build host, without root, loop
//! devices, device-mapper or cryptsetup.
//!
//! `image create` builds an ext4 filesystem from a directory with e2fsprogs (`mkfs.ext4 -d`) into a
//! temporary plain file, writes a LUKS2 header in cryptsetup's default layout ([`crate::luks2::format`])
//! and encrypts the filesystem in userspace with aes-xts-plain64 exactly as dm-crypt will decrypt it
//! ([`crate::luks2::crypto::DataCipher`]). The result opens with `cryptsetup open --key-file KEY`, with
//! upstream's sidecar, and with encfs-init. The key file is the raw 32-byte key (upstream's rule: the key
//! released by SKR is used as the LUKS2 passphrase as is).
//!
//! `image create --verity` and `image seal` append a dm-verity hash tree over the whole image, header
//! included ([`crate::verity::tree`], see [`seal()`]), and print the `verity_root_hash` and
//! `verity_hash_offset` lines that pin it in the manifest.
//!
//! `image check` prints the header summary and says whether the key opens a keyslot, through the boot's
//! own call ([`crate::luks2::Header::open_device`]): what the boot refuses, it refuses with the same error.
//! When the key opens nothing, it explains how upstream turns a released key into the passphrase (the oct
//! and RSA-HSM rules).
#![forbid(unsafe_code)]

mod check;
mod create;
mod seal;

use crate::argv::{Arg, Args, Parsed, Usage};
use crate::exit;
use crate::luks2::format::NewKdf;
use std::path::PathBuf;

pub use check::check;
pub use create::{create, CreateArgs, Error};
pub use seal::{seal, Error as SealError, Sealed};

/// `encfs-init image --help`.
pub const HELP: &str = "\
encfs-init image: make, seal and inspect LUKS2 images (no root, no dm, no cryptsetup needed)

Usage:
  encfs-init image create --key-file KEY --from DIR [--size SIZE] [--pbkdf pbkdf2|argon2id]
                          [--sector-size 4096|512] [--verity] OUT
  encfs-init image seal   IMAGE
  encfs-init image check  --key-file KEY [--header-sha256 HEX] IMAGE

create: ext4 from DIR (mkfs.ext4 -d, e2fsprogs >= 1.43), then LUKS2 (aes-xts-plain64, 512-bit volume key,
        4096-byte sectors by default, one keyslot) encrypted in userspace. KEY is the raw 32-byte key
        used as the passphrase, as upstream. SIZE (e.g. 256MiB) is the whole image; default: computed from
        DIR. Prints the header_sha256 to pin in the manifest. --pbkdf: pbkdf2 (sha256, 1000 iterations,
        upstream's format) or argon2id (4 passes, 64 MiB). --verity: then seal OUT, as `seal` does.
seal:   appends a dm-verity hash tree over the whole LUKS2 image, header included (veritysetup's format:
        sha256, 4096-byte blocks, a random 32-byte salt; the superblock at the image size rounded up to
        4096, the tree after it), for an image made by create, generatefs.sh or cryptsetup. Prints the
        manifest lines to pin it, verity_root_hash = \"HEX\" and verity_hash_offset = BYTES, and the tree's
        size on stderr. Refuses an image that is already sealed (it names its offset and root hash) or
        that is more than its LUKS2 device. Check with:
        veritysetup verify IMAGE IMAGE ROOT_HASH --hash-offset=BYTES
check:  prints the header and whether KEY opens a keyslot, with every check the boot makes (the data
        segment must lie on IMAGE; the unlock must fit the work budget, this machine's memory and the
        deadline). Exit 0 if it opens, 1 if not or if the header is refused (the boot's error line), 2 on
        usage or I/O errors.
";

/// A parsed `image` command.
#[derive(Debug, PartialEq, Eq)]
pub enum ImageCommand {
    /// `image create`.
    Create(CreateArgs),
    /// `image seal`.
    Seal(PathBuf),
    /// `image check`.
    Check {
        /// Key file.
        key_file: PathBuf,
        /// Image.
        image: PathBuf,
        /// Optional pin, hex.
        pin: Option<[u8; 32]>,
    },
}

/// Parse the arguments after `image`.
pub fn parse(args: &[String]) -> Result<Parsed<ImageCommand>, Usage> {
    let (sub, create, seal) = match args.first().map(String::as_str) {
        None | Some("-h" | "--help" | "help") => return Ok(Parsed::Help(HELP)),
        Some("create") => ("image create", true, false),
        Some("check") => ("image check", false, false),
        Some("seal") => ("image seal", false, true),
        Some(other) => {
            return Err(Usage(format!(
                "unknown image command \"{other}\"; use create, seal or check"
            )))
        }
    };
    let mut a = Args::new(sub, "encfs-init help image", &args[1..]);
    let mut key_file = None;
    let mut from = None;
    let mut size = None;
    let mut kdf = NewKdf::Pbkdf2 { iterations: 1000 };
    let mut sector_size = 4096;
    let mut pin = None;
    let mut verity = false;
    let mut positional = Vec::new();
    while let Some(arg) = a.next_arg()? {
        let opt = match arg {
            Arg::Help => return Ok(Parsed::Help(HELP)),
            Arg::Value(v) => {
                positional.push(PathBuf::from(v));
                continue;
            }
            Arg::Opt(opt) => opt,
        };
        if seal {
            return Err(a.unexpected(Arg::Opt(opt)));
        }
        match (opt.as_str(), create) {
            ("--verity", true) => verity = true,
            ("--key-file", _) => key_file = Some(a.path()?),
            ("--from", true) => from = Some(a.path()?),
            ("--size", true) => {
                let v = a.value()?;
                size = Some(crate::manifest::units::parse_size(&v).map_err(|e| a.bad_value(e))?);
            }
            ("--pbkdf", true) => {
                kdf = match a.value()?.as_str() {
                    "pbkdf2" => NewKdf::Pbkdf2 { iterations: 1000 },
                    "argon2id" => NewKdf::Argon2id {
                        time: 4,
                        memory_kib: 65536,
                        cpus: 1,
                    },
                    other => return Err(a.bad_value(format!("{other}: use pbkdf2 or argon2id"))),
                }
            }
            ("--sector-size", true) => {
                sector_size = match a.value()?.as_str() {
                    "4096" => 4096,
                    "512" => 512,
                    other => return Err(a.bad_value(format!("{other}: use 4096 or 512"))),
                }
            }
            ("--header-sha256", false) => {
                let v = a.value()?;
                pin =
                    Some(crate::hex::decode_array(&v).ok_or_else(|| {
                        a.bad_value(format!("needs 64 hex digits, got \"{v:.80}\""))
                    })?);
            }
            _ => return Err(a.unexpected(Arg::Opt(opt))),
        }
    }
    let [path] = <[PathBuf; 1]>::try_from(positional).map_err(|_| {
        a.plain(format!(
            "give exactly one {}",
            if create { "OUT" } else { "IMAGE" }
        ))
    })?;
    if seal {
        return Ok(Parsed::Run(ImageCommand::Seal(path)));
    }
    let key_file = key_file.ok_or_else(|| a.plain("--key-file KEY is required"))?;
    Ok(Parsed::Run(if create {
        ImageCommand::Create(CreateArgs {
            key_file,
            from: from.ok_or_else(|| a.plain("--from DIR is required"))?,
            size,
            kdf,
            sector_size,
            verity,
            out: path,
        })
    } else {
        ImageCommand::Check {
            key_file,
            image: path,
            pin,
        }
    }))
}

/// Run `encfs-init image ...` (the arguments after `image`); returns the exit code.
pub fn main(args: &[String]) -> i32 {
    match parse(args) {
        Ok(Parsed::Help(text)) => {
            print!("{text}");
            exit::OK
        }
        Ok(Parsed::Run(ImageCommand::Create(a))) => match create(&a) {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("encfs-init image create: {}", crate::errors::chain(&e));
                1
            }
        },
        Ok(Parsed::Run(ImageCommand::Seal(image))) => match seal(&image) {
            Ok(sealed) => {
                use std::io::Write as _;
                eprintln!("encfs-init image seal: {}", sealed.overhead());
                let _ = std::io::stdout().write_all(sealed.manifest_lines().as_bytes());
                exit::OK
            }
            Err(e) => {
                eprintln!("encfs-init image seal: {}", crate::errors::chain(&e));
                1
            }
        },
        Ok(Parsed::Run(ImageCommand::Check {
            key_file,
            image,
            pin,
        })) => check(&key_file, &image, pin.as_ref()),
        Err(e) => crate::argv::fail(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn create_and_check_parse() {
        let c = parse(&s(&[
            "create",
            "--key-file",
            "k",
            "--from",
            "d",
            "--size",
            "64MiB",
            "--pbkdf",
            "argon2id",
            "o",
        ]))
        .unwrap();
        let Parsed::Run(ImageCommand::Create(a)) = c else {
            panic!("{c:?}")
        };
        assert_eq!(
            (a.size, a.sector_size, a.out),
            (Some(64 << 20), 4096, PathBuf::from("o"))
        );
        assert!(matches!(a.kdf, NewKdf::Argon2id { .. }));
        let c = parse(&s(&["check", "--key-file", "k", "img"])).unwrap();
        assert_eq!(
            c,
            Parsed::Run(ImageCommand::Check {
                key_file: "k".into(),
                image: "img".into(),
                pin: None
            })
        );
        assert!(parse(&s(&["check", "img"])).is_err());
        assert!(parse(&s(&["create", "--key-file", "k", "o"])).is_err());
        assert!(parse(&s(&[
            "create",
            "--key-file",
            "k",
            "--from",
            "d",
            "--size",
            "64MB",
            "o"
        ]))
        .is_err());
        assert!(parse(&s(&[
            "check",
            "--key-file",
            "k",
            "--header-sha256",
            "zz",
            "i"
        ]))
        .is_err());
        assert!(parse(&s(&["check", "--key-file", "k", "a", "b"])).is_err());
        assert!(parse(&s(&["frobnicate", "--key-file", "k", "a"])).is_err());
        assert_eq!(
            parse(&s(&["seal", "img"])).unwrap(),
            Parsed::Run(ImageCommand::Seal("img".into()))
        );
        assert!(parse(&s(&["seal", "--key-file", "k", "img"])).is_err());
        assert!(parse(&s(&["seal"])).is_err());
        assert!(parse(&s(&["check", "--verity", "--key-file", "k", "img"])).is_err());
        let c = parse(&s(&[
            "create",
            "--key-file",
            "k",
            "--from",
            "d",
            "--verity",
            "o",
        ]))
        .unwrap();
        assert!(matches!(
            c,
            Parsed::Run(ImageCommand::Create(CreateArgs { verity: true, .. }))
        ));
    }
}
