//! The kernel features the boot needs: a transport (NBD, or FUSE + loop), dm-crypt, dm-verity when an image
//! pins its tree, the keyring (dm-crypt's key by reference; without it the key goes in the table), and which
//! transport `auto` chooses: [`crate::transport::choose`], the boot's own decision, on the boot's own probe.
#![forbid(unsafe_code)]

use super::Finding;
use crate::manifest::{Plan, TransportChoice};
use crate::transport::{choose, Probe};
use std::path::Path;

const FIX_DM: &str = "use a kernel with CONFIG_BLK_DEV_DM and CONFIG_DM_CRYPT (in a VM: list \"dm-crypt\" in kernel_modules when it is a module); in a container, run privileged so /dev/mapper/control is there";
const FIX_VERITY: &str = "use a kernel with CONFIG_DM_VERITY (in a VM: list \"dm-verity\" in kernel_modules), or drop verity_root_hash from the manifest";

/// What the kernel offers besides the transports: device-mapper and its targets, the modules it could load,
/// the keyring.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// The device-mapper targets loaded now.
    pub dm_targets: Vec<String>,
    /// Why device-mapper could not be asked (no control node, no permission), if so.
    pub dm_error: Option<String>,
    /// Modules this kernel could load (in `modules.dep` or built in), normalized names, of those asked.
    pub modules: Vec<String>,
    /// What adding a logon key to the thread keyring gave.
    pub keyring: Keyring,
}

/// The keyring probe's outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Keyring {
    /// A logon key was added (and removed).
    #[default]
    Works,
    /// The kernel has no keyring (ENOSYS / EOPNOTSUPP): the error.
    Absent(String),
    /// Another failure (seccomp, quota): the error.
    Failed(String),
}

impl Features {
    /// Look at this kernel.
    pub fn look() -> Features {
        let (dm_targets, dm_error) = match crate::dm::targets() {
            Ok(t) => (t, None),
            Err(e) => (Vec::new(), Some(crate::errors::chain(&e))),
        };
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let dir = Path::new("/lib/modules").join(release.trim());
        let modules = ["dm_crypt", "dm_verity", "nbd", "fuse", "loop"]
            .into_iter()
            .filter(|m| module_available(&dir, m))
            .map(str::to_string)
            .collect();
        let keyring = match crate::dm::keyring::LogonKey::add("encfs-init:doctor-probe", b"probe") {
            Ok(k) => {
                drop(k);
                Keyring::Works
            }
            Err(e) if crate::dm::keyring::unsupported(&e) => Keyring::Absent(e.to_string()),
            Err(e) => Keyring::Failed(e.to_string()),
        };
        Features {
            dm_targets,
            dm_error,
            modules,
            keyring,
        }
    }

    fn has_module(&self, m: &str) -> bool {
        self.modules.iter().any(|x| x == m)
    }
}

/// Whether `name` is in `dir`'s modules.dep or modules.builtin.
fn module_available(dir: &Path, name: &str) -> bool {
    use crate::init::modules::{parse_builtin, ModulesDep};
    let builtin = std::fs::read_to_string(dir.join("modules.builtin"))
        .map(|t| parse_builtin(&t))
        .unwrap_or_default();
    if builtin.contains(name) {
        return true;
    }
    std::fs::read_to_string(dir.join("modules.dep"))
        .ok()
        .and_then(|t| ModulesDep::parse(&t).ok())
        .is_some_and(|d| d.load_order(&[name.to_string()], &builtin, dir).is_ok())
}

/// The transports the plan asks for (`auto` when it has no filesystem: what a filesystem would get).
fn wanted(plan: &Plan) -> Vec<TransportChoice> {
    let mut w: Vec<TransportChoice> = Vec::new();
    for fs in &plan.filesystems {
        if !w.contains(&fs.transport) {
            w.push(fs.transport);
        }
    }
    if w.is_empty() {
        w.push(TransportChoice::Auto);
    }
    w
}

/// Every kernel finding for `plan` from what was probed.
pub fn check(p: &Probe, f: &Features, plan: &Plan) -> Vec<Finding> {
    let want = wanted(plan);
    let nbd = p.nbd_netlink || p.nbd_device;
    let fuse = p.fuse && p.loop_control;
    let mut out = Vec::new();
    let nbd_seen = match (p.nbd_netlink, p.nbd_device) {
        (true, true) => "the nbd generic-netlink family and /dev/nbd0",
        (true, false) => "the nbd generic-netlink family",
        (false, true) => "/dev/nbd0",
        (false, false) => "no nbd generic-netlink family, no /dev/nbd0",
    };
    out.push(if nbd {
        Finding::ok("kernel nbd", format!("present ({nbd_seen})"))
    } else if fuse && !want.contains(&TransportChoice::Nbd) {
        Finding::ok(
            "kernel nbd",
            format!("absent ({nbd_seen}); not needed: FUSE + loop serve the blob"),
        )
    } else {
        Finding::problem(
            "kernel nbd",
            format!("absent ({nbd_seen})"),
            "load the nbd module (in a VM: list \"nbd\" in kernel_modules) or use a kernel with CONFIG_BLK_DEV_NBD",
        )
    });
    let needs_fuse = !nbd || want.contains(&TransportChoice::Fuse);
    for (check, present, dev) in [
        ("kernel fuse", p.fuse, crate::fuse::DEV_FUSE),
        ("kernel loop", p.loop_control, crate::loopdev::LOOP_CONTROL),
    ] {
        out.push(if present {
            Finding::ok(check, format!("{dev} present"))
        } else if !needs_fuse {
            Finding::ok(check, format!("{dev} absent; not needed: NBD serves the blob"))
        } else {
            Finding::problem(check, format!("{dev} absent"), "use a kernel with CONFIG_FUSE_FS and CONFIG_BLK_DEV_LOOP (in a VM: list \"fuse\" and \"loop\" in kernel_modules), and in a container pass the devices in")
        });
    }
    let verity_needed = plan.filesystems.iter().any(|fs| fs.verity.is_some());
    for (check, target, module, needed, fix) in [
        ("kernel dm-crypt", "crypt", "dm_crypt", true, FIX_DM),
        (
            "kernel dm-verity",
            "verity",
            "dm_verity",
            verity_needed,
            FIX_VERITY,
        ),
    ] {
        out.push(match (&f.dm_error, &f.dm_targets) {
            (Some(_), _) if !needed => Finding::ok(
                check,
                "device-mapper unavailable; not needed: no filesystem pins verity_root_hash",
            ),
            (Some(e), _) => Finding::from_line(check, &format!("device-mapper: {e}"), FIX_DM),
            (None, t) if t.iter().any(|x| x == target) => {
                Finding::ok(check, format!("the {target} target is loaded"))
            }
            _ if f.has_module(module) => Finding::ok(
                check,
                format!("the {target} target is not loaded; module {module} is available (loaded on first use, or listed in kernel_modules)"),
            ),
            _ if !needed => Finding::ok(
                check,
                format!("no {target} target; not needed: no filesystem pins verity_root_hash"),
            ),
            (None, t) => Finding::problem(
                check,
                format!("no {target} target (loaded: {}) and no {module} module", t.join(", ")),
                fix,
            ),
        });
    }
    out.push(match &f.keyring {
        Keyring::Works => Finding::ok("kernel keyring", "logon keys can be added (dm-crypt gets the key by reference)"),
        Keyring::Absent(e) => Finding::ok(
            "kernel keyring",
            format!("absent ({e}); the key goes into the dm-crypt table instead (as on Azure's UVM kernels)"),
        ),
        Keyring::Failed(e) => Finding::problem(
            "kernel keyring",
            format!("adding a logon key failed: {e}"),
            "allow the add_key system call (seccomp profile) or run with the keyring available",
        ),
    });
    for w in want {
        out.push(match choose(w, p) {
            Ok((kind, why)) => Finding::ok(
                format!("transport {}", w.as_str()),
                format!("{} ({why})", kind.as_str()),
            ),
            Err(e) => Finding::error(format!("transport {}", w.as_str()), &e, ""),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features() -> Features {
        Features {
            dm_targets: vec!["crypt".into(), "linear".into()],
            dm_error: None,
            modules: vec![],
            keyring: Keyring::Absent("Function not implemented".into()),
        }
    }

    #[test]
    fn an_azure_uvm_kernel_without_nbd_is_fine_with_fuse_and_auto_chooses_it() {
        let plan = crate::manifest::empty_plan().unwrap();
        let p = Probe {
            nbd_netlink: false,
            nbd_device: false,
            fuse: true,
            loop_control: true,
        };
        let out = check(&p, &features(), &plan);
        assert!(
            out.iter().all(|f| f.status == super::super::Status::Ok),
            "{out:?}"
        );
        assert!(out[0].detail.starts_with("absent"), "{:?}", out[0]);
        let t = out.last().unwrap();
        assert_eq!(t.check, "transport auto");
        assert!(
            t.detail.starts_with("fuse (auto: the kernel has no NBD"),
            "{t:?}"
        );
    }

    #[test]
    fn neither_transport_is_a_problem_with_the_boots_own_words() {
        let plan = crate::manifest::empty_plan().unwrap();
        let f = Features {
            dm_targets: vec![],
            ..features()
        };
        let out = check(&Probe::default(), &f, &plan);
        let bad: Vec<&str> = out
            .iter()
            .filter(|f| f.status == super::super::Status::Problem)
            .map(|f| f.check.as_str())
            .collect();
        assert_eq!(
            bad,
            [
                "kernel nbd",
                "kernel fuse",
                "kernel loop",
                "kernel dm-crypt",
                "transport auto"
            ]
        );
        assert!(out
            .last()
            .unwrap()
            .detail
            .starts_with("this kernel has neither NBD"));
        assert!(out
            .last()
            .unwrap()
            .fix
            .as_deref()
            .unwrap()
            .starts_with("use a kernel with"));
    }
}
