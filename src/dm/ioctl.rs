//! A failed device-mapper ioctl of the devicemapper crate, worded briefly.
#![forbid(unsafe_code)]

/// A failed device-mapper call of the devicemapper crate, worded briefly: the ioctl's name and the OS
/// error (`DM_DEV_CREATE: Device or resource busy (os error 16)`), not the crate's dump of both headers.
#[derive(Debug)]
pub struct Ioctl(pub devicemapper::DmError);

impl Ioctl {
    /// The OS error of a failed ioctl.
    pub fn errno(&self) -> Option<nix::errno::Errno> {
        match &self.0 {
            devicemapper::DmError::Core(devicemapper::errors::Error::Ioctl(_, _, _, e)) => {
                Some(**e)
            }
            _ => None,
        }
    }
}

impl From<devicemapper::DmError> for Ioctl {
    fn from(e: devicemapper::DmError) -> Self {
        Ioctl(e)
    }
}

impl std::fmt::Display for Ioctl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            devicemapper::DmError::Core(devicemapper::errors::Error::Ioctl(op, _, _, e)) => {
                write!(f, "{}: {}", ioctl_name(*op), std::io::Error::from(**e))
            }
            other => write!(f, "{other}"),
        }
    }
}

// The OS error is part of the text above: there is no further cause to print.
impl std::error::Error for Ioctl {}

/// The name of dm ioctl number `op` (`enum` of `<linux/dm-ioctl.h>`).
fn ioctl_name(op: u8) -> String {
    const NAMES: [&str; 18] = [
        "DM_VERSION",
        "DM_REMOVE_ALL",
        "DM_LIST_DEVICES",
        "DM_DEV_CREATE",
        "DM_DEV_REMOVE",
        "DM_DEV_RENAME",
        "DM_DEV_SUSPEND",
        "DM_DEV_STATUS",
        "DM_DEV_WAIT",
        "DM_TABLE_LOAD",
        "DM_TABLE_CLEAR",
        "DM_TABLE_DEPS",
        "DM_TABLE_STATUS",
        "DM_LIST_VERSIONS",
        "DM_TARGET_MSG",
        "DM_DEV_SET_GEOMETRY",
        "DM_DEV_ARM_POLL",
        "DM_GET_TARGET_VERSION",
    ];
    NAMES
        .get(usize::from(op))
        .map_or_else(|| format!("dm ioctl {op}"), |n| (*n).to_string())
}
