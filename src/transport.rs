//! The block device under dm-crypt: which transport serves the blob to the kernel, and the attached device.
//!
//! Two front ends on the same [`BlockSource`] engine:
//! - **NBD** ([`crate::nbd`]): the kernel's NBD client on a socketpair with our NBD server, `/dev/nbdN`;
//!   reconnects after the serving side died (generic netlink).
//! - **FUSE + loop** ([`crate::fuse`]): one regular file in a FUSE filesystem we serve, a loop device over
//!   it, `/dev/loopN`. For kernels without NBD: Microsoft's UVM kernels (Azure Linux `kernel-uvm` has no
//!   `CONFIG_BLK_DEV_NBD`), Kata's confidential guest kernels.
//!
//! `transport = "auto"` (the default) takes NBD where the kernel has it (the `nbd` generic-netlink family,
//! or `/dev/nbd0`; probed after the plan's kernel modules were loaded), else FUSE + loop (`/dev/fuse` and
//! `/dev/loop-control`). A transport forced in the manifest that the kernel lacks fails the filesystem
//! with one line: what is missing and the fix. [`choose`] is the pure decision; [`Probe::kernel`] looks.
#![forbid(unsafe_code)]

use crate::blob::BlockSource;
use crate::manifest::TransportChoice;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The transport in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/dev/nbdN`.
    Nbd,
    /// A FUSE file on `/dev/loopN`.
    Fuse,
}

impl Kind {
    /// As the readiness file and the logs say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Nbd => "nbd",
            Kind::Fuse => "fuse",
        }
    }
}

/// What the running kernel offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Probe {
    /// The `nbd` generic-netlink family resolves.
    pub nbd_netlink: bool,
    /// `/dev/nbd0` exists.
    pub nbd_device: bool,
    /// `/dev/fuse` exists.
    pub fuse: bool,
    /// `/dev/loop-control` exists.
    pub loop_control: bool,
}

impl Probe {
    /// Look at this kernel (and this `/dev`).
    pub fn kernel() -> Probe {
        Probe {
            nbd_netlink: crate::nbd::netlink::Nbd::open().is_ok(),
            nbd_device: Path::new("/dev/nbd0").exists(),
            fuse: Path::new(crate::fuse::DEV_FUSE).exists(),
            loop_control: Path::new(crate::loopdev::LOOP_CONTROL).exists(),
        }
    }

    fn has_nbd(&self) -> bool {
        self.nbd_netlink || self.nbd_device
    }

    fn has_fuse(&self) -> bool {
        self.fuse && self.loop_control
    }

    fn nbd_seen(&self) -> &'static str {
        match (self.nbd_netlink, self.nbd_device) {
            (true, true) => "the nbd generic-netlink family and /dev/nbd0",
            (true, false) => "the nbd generic-netlink family",
            (false, true) => "/dev/nbd0",
            (false, false) => "no nbd generic-netlink family, no /dev/nbd0",
        }
    }

    fn fuse_missing(&self) -> String {
        let mut m = Vec::new();
        if !self.fuse {
            m.push(crate::fuse::DEV_FUSE);
        }
        if !self.loop_control {
            m.push(crate::loopdev::LOOP_CONTROL);
        }
        m.join(" and ")
    }
}

/// The fix for a kernel without NBD.
const FIX_NBD: &str = "load the nbd module (in a VM: list \"nbd\" in kernel_modules) or use a kernel with CONFIG_BLK_DEV_NBD; or set transport = \"auto\" to use FUSE + loop";
/// The fix for a kernel or container without FUSE or loop.
const FIX_FUSE: &str = "use a kernel with CONFIG_FUSE_FS and CONFIG_BLK_DEV_LOOP (in a VM: list \"fuse\" and \"loop\" in kernel_modules when they are modules), and in a container pass both devices in (privileged); or set transport = \"auto\" to use NBD";

/// Why no transport could be chosen, or attaching or detaching failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `transport = "nbd"` on a kernel without NBD.
    #[error("transport = \"nbd\" but this kernel has no NBD client ({seen}); fix: {FIX_NBD}")]
    NoNbd {
        /// What the probe saw of NBD.
        seen: &'static str,
    },
    /// `transport = "fuse"` without FUSE or loop.
    #[error("transport = \"fuse\" but {missing} missing; fix: {FIX_FUSE}")]
    NoFuse {
        /// The missing devices.
        missing: String,
    },
    /// `transport = "auto"` on a kernel with neither.
    #[error("this kernel has neither NBD ({seen}) nor FUSE + loop ({missing} missing); fix: use a kernel with CONFIG_BLK_DEV_NBD, or with CONFIG_FUSE_FS and CONFIG_BLK_DEV_LOOP (in a VM, list the modules in kernel_modules; in a container, pass the devices in)")]
    Neither {
        /// What the probe saw of NBD.
        seen: &'static str,
        /// The missing devices.
        missing: String,
    },
    /// The NBD transport.
    #[error(transparent)]
    Nbd(#[from] crate::nbd::kernel::Error),
    /// The FUSE + loop transport.
    #[error(transparent)]
    Fuse(#[from] crate::fuse::Error),
}

/// Decide: the transport and why (one phrase for the log), or why none can run (one line, with the fix).
pub fn choose(want: TransportChoice, p: &Probe) -> Result<(Kind, String), Error> {
    match want {
        TransportChoice::Nbd if p.has_nbd() => {
            Ok((Kind::Nbd, format!("transport = \"nbd\" ({})", p.nbd_seen())))
        }
        TransportChoice::Nbd => Err(Error::NoNbd { seen: p.nbd_seen() }),
        TransportChoice::Fuse if p.has_fuse() => Ok((
            Kind::Fuse,
            "transport = \"fuse\" (/dev/fuse and /dev/loop-control present)".to_string(),
        )),
        TransportChoice::Fuse => Err(Error::NoFuse {
            missing: p.fuse_missing(),
        }),
        TransportChoice::Auto if p.has_nbd() => Ok((
            Kind::Nbd,
            format!("auto: the kernel has NBD ({})", p.nbd_seen()),
        )),
        TransportChoice::Auto if p.has_fuse() => Ok((
            Kind::Fuse,
            format!(
                "auto: the kernel has no NBD ({}); /dev/fuse and /dev/loop-control present",
                p.nbd_seen()
            ),
        )),
        TransportChoice::Auto => Err(Error::Neither {
            seen: p.nbd_seen(),
            missing: p.fuse_missing(),
        }),
    }
}

/// An attached block device of either transport.
#[derive(Debug)]
pub enum Backing {
    /// NBD.
    Nbd(crate::nbd::kernel::Attached),
    /// FUSE + loop.
    Fuse(crate::fuse::Attached),
}

/// Per-filesystem settings for [`attach`].
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// Read-only device.
    pub read_only: bool,
    /// NBD's kernel timeouts.
    pub nbd_timeouts: crate::nbd::kernel::Timeouts,
    /// FUSE's private mount directory.
    pub fuse_dir: PathBuf,
}

/// Attach `src` with the chosen transport.
pub fn attach(
    kind: Kind,
    src: Arc<dyn BlockSource>,
    opts: &AttachOptions,
) -> Result<Backing, Error> {
    Ok(match kind {
        Kind::Nbd => Backing::Nbd(crate::nbd::kernel::attach_with(
            src,
            opts.read_only,
            opts.nbd_timeouts,
        )?),
        Kind::Fuse => Backing::Fuse(crate::fuse::attach(
            src,
            &crate::fuse::Config::new(opts.fuse_dir.clone(), opts.read_only),
        )?),
    })
}

impl Backing {
    /// Which transport.
    pub fn kind(&self) -> Kind {
        match self {
            Backing::Nbd(_) => Kind::Nbd,
            Backing::Fuse(_) => Kind::Fuse,
        }
    }

    /// `/dev/nbdN` or `/dev/loopN`.
    pub fn device(&self) -> &Path {
        match self {
            Backing::Nbd(a) => a.device(),
            Backing::Fuse(a) => a.device(),
        }
    }

    /// Fault injection: end (NBD) or crash (FUSE) the serving side; it is replaced. False when this
    /// attachment cannot recover (NBD attached by ioctls).
    pub fn sever(&self) -> bool {
        match self {
            Backing::Nbd(a) => a.sever(),
            Backing::Fuse(a) => a.sever(),
        }
    }

    /// Why the serving side is gone for good (it kept dying and is no longer restarted), if it is: the
    /// supervisor then gives up.
    pub fn gave_up(&self) -> Option<String> {
        match self {
            Backing::Nbd(a) => a.gave_up(),
            Backing::Fuse(a) => a.gave_up(),
        }
    }

    /// Detach: every write flushed to the source, the device released.
    pub fn detach(self) -> Result<(), Error> {
        match self {
            Backing::Nbd(a) => a.detach()?,
            Backing::Fuse(a) => a.detach()?,
        }
        Ok(())
    }

    /// [`Backing::detach`] while the device is still held open from above (a filesystem detached lazily,
    /// its dm device removed only at the last close): the serving side is ended at once instead of waiting
    /// for the kernel to let go, which it does only when that last user closes.
    pub fn detach_held(self) -> Result<(), Error> {
        match self {
            Backing::Nbd(a) => a.detach_held()?,
            Backing::Fuse(a) => a.detach_held()?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NBD: Probe = Probe {
        nbd_netlink: true,
        nbd_device: true,
        fuse: true,
        loop_control: true,
    };
    const FUSE_ONLY: Probe = Probe {
        nbd_netlink: false,
        nbd_device: false,
        fuse: true,
        loop_control: true,
    };
    const NEITHER: Probe = Probe {
        nbd_netlink: false,
        nbd_device: false,
        fuse: false,
        loop_control: false,
    };

    #[test]
    fn auto_prefers_nbd_then_fuse() {
        let (k, why) = choose(TransportChoice::Auto, &NBD).unwrap();
        assert_eq!(k, Kind::Nbd);
        assert!(why.starts_with("auto: the kernel has NBD"), "{why}");
        // Either sign of NBD is enough.
        for p in [
            Probe {
                nbd_device: false,
                ..NBD
            },
            Probe {
                nbd_netlink: false,
                fuse: false,
                ..NBD
            },
        ] {
            assert_eq!(choose(TransportChoice::Auto, &p).unwrap().0, Kind::Nbd);
        }
        let (k, why) = choose(TransportChoice::Auto, &FUSE_ONLY).unwrap();
        assert_eq!(k, Kind::Fuse);
        assert!(why.contains("no NBD"), "{why}");
    }

    #[test]
    fn auto_with_neither_fails_naming_both() {
        let e = choose(TransportChoice::Auto, &NEITHER)
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\n'));
        assert!(e.contains("no /dev/nbd0"), "{e}");
        assert!(e.contains("/dev/fuse and /dev/loop-control missing"), "{e}");
        assert!(e.contains("fix:"), "{e}");
        // FUSE without loop is not FUSE + loop.
        let e = choose(
            TransportChoice::Auto,
            &Probe {
                loop_control: false,
                ..FUSE_ONLY
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("(/dev/loop-control missing)"), "{e}");
    }

    #[test]
    fn forced_transports_are_used_when_there_and_fail_closed_when_not() {
        assert_eq!(choose(TransportChoice::Fuse, &NBD).unwrap().0, Kind::Fuse);
        assert_eq!(choose(TransportChoice::Nbd, &NBD).unwrap().0, Kind::Nbd);
        let e = choose(TransportChoice::Nbd, &FUSE_ONLY)
            .unwrap_err()
            .to_string();
        assert_eq!(e.lines().count(), 1);
        assert!(
            e.starts_with("transport = \"nbd\" but this kernel has no NBD client"),
            "{e}"
        );
        assert!(e.contains("fix: load the nbd module"), "{e}");
        let e = choose(TransportChoice::Fuse, &Probe { fuse: false, ..NBD })
            .unwrap_err()
            .to_string();
        assert_eq!(e.lines().count(), 1);
        assert!(
            e.starts_with("transport = \"fuse\" but /dev/fuse missing; fix:"),
            "{e}"
        );
        let e = choose(TransportChoice::Fuse, &NEITHER)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/dev/fuse and /dev/loop-control missing"), "{e}");
    }

    #[test]
    fn an_attach_failure_prints_its_os_error_once() {
        let denied = || std::io::Error::from_raw_os_error(nix::libc::EACCES);
        let fuse = Error::from(crate::fuse::Error::from(crate::loopdev::Error::Open {
            path: crate::loopdev::LOOP_CONTROL.into(),
            source: denied(),
        }));
        assert_eq!(
            crate::errors::chain(&fuse),
            "open /dev/loop-control: Permission denied (os error 13)"
        );
        let nbd = Error::from(crate::nbd::kernel::Error::NoFreeDevice {
            last: Some(Box::new(crate::nbd::kernel::Error::Device {
                path: "/dev/nbd3".into(),
                source: std::io::Error::from_raw_os_error(nix::libc::EBUSY),
            })),
        });
        assert_eq!(
            crate::errors::chain(&nbd),
            "no free NBD device: /dev/nbd3: Device or resource busy (os error 16); fix: load nbd with a larger nbds_max"
        );
        let fuse = Error::from(crate::fuse::Error::OpenDev(denied()));
        let line = crate::errors::chain(&fuse);
        assert!(line.starts_with("open /dev/fuse: Permission denied (os error 13); fix: the kernel needs CONFIG_FUSE_FS"), "{line}");
    }
}
