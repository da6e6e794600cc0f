//! The SEV-SNP attestation report: our own tolerant parser (upstream-spec §5.2, AMD SEV-SNP ABI
//! `ATTESTATION_REPORT`).
//!
//! Wire contract: exactly 1184 bytes, little-endian integers. Versions 2 to 5 are accepted (version 1
//! only in test mode's fake reports, see [`Report::parse_lenient`]); unknown CPU families are not an error
//! (the `sev` crate rejects some valid reports, so we read the fields ourselves). The ECDSA P-384/SHA-384
//! signature covers bytes `[0, 0x2A0)`; R and S are stored little-endian in 72-byte slots.
//!
//! | offset | field | | offset | field |
//! |---:|---|---|---:|---|
//! | 0x000 | version | | 0x140 | report_id |
//! | 0x004 | guest_svn | | 0x160 | report_id_ma |
//! | 0x008 | policy | | 0x180 | reported_tcb |
//! | 0x010 | family_id | | 0x188 | cpuid fam/mod/step (v3+) |
//! | 0x020 | image_id | | 0x1A0 | chip_id |
//! | 0x030 | vmpl | | 0x1E0 | committed_tcb |
//! | 0x034 | signature_algo | | 0x1E8 | current/committed versions |
//! | 0x038 | current_tcb | | 0x1F0 | launch_tcb |
//! | 0x040 | platform_info | | 0x1F8 | launch_mit_vector (v5) |
//! | 0x048 | key flags | | 0x200 | current_mit_vector (v5) |
//! | 0x050 | report_data | | 0x2A0 | signature |
//! | 0x090 | measurement | | | |
//! | 0x0C0 | host_data | | | |
//! | 0x0E0 | id_key_digest | | | |
//! | 0x110 | author_key_digest | | | |
#![forbid(unsafe_code)]

use std::fmt;

/// Size of a report.
pub const REPORT_LEN: usize = 1184;
/// End of the signed region.
pub const SIGNED_LEN: usize = 0x2A0;
/// The only signature algorithm SNP defines: ECDSA P-384 with SHA-384.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

/// A malformed report.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// Not 1184 bytes.
    Length(usize),
    /// A version we do not know.
    Version(u32),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Length(n) => write!(f, "SNP report is {n} bytes, expected {REPORT_LEN}"),
            ParseError::Version(v) => {
                write!(f, "SNP report version {v} is not supported (2 to 5 are)")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// How a TCB u64 is laid out. Milan and Genoa share one layout; Turin (family 0x1A) adds an FMC SPL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcbLayout {
    /// byte0 bl, byte1 tee, byte6 snp, byte7 ucode.
    MilanGenoa,
    /// byte0 fmc, byte1 bl, byte2 tee, byte3 snp, byte7 ucode.
    Turin,
}

/// A decoded TCB version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tcb {
    /// The raw u64 as stored in the report.
    pub raw: u64,
    /// Boot loader SPL.
    pub bl: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// Microcode SPL.
    pub ucode: u8,
    /// FMC SPL (Turin only).
    pub fmc: Option<u8>,
}

impl Tcb {
    /// Decode `raw` with `layout`.
    pub fn decode(raw: u64, layout: TcbLayout) -> Self {
        let b = raw.to_le_bytes();
        match layout {
            TcbLayout::MilanGenoa => Tcb {
                raw,
                bl: b[0],
                tee: b[1],
                snp: b[6],
                ucode: b[7],
                fmc: None,
            },
            TcbLayout::Turin => Tcb {
                raw,
                fmc: Some(b[0]),
                bl: b[1],
                tee: b[2],
                snp: b[3],
                ucode: b[7],
            },
        }
    }
}

impl fmt::Display for Tcb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:016x} (ucode {:#04x}, snp {}, tee {}, bl {}",
            self.raw, self.ucode, self.snp, self.tee, self.bl
        )?;
        if let Some(fmc) = self.fmc {
            write!(f, ", fmc {fmc}")?;
        }
        f.write_str(")")
    }
}

/// Which key signed the report (bits 2..4 of the key flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKey {
    /// Versioned chip endorsement key.
    Vcek,
    /// Versioned loaded endorsement key.
    Vlek,
    /// Unsigned.
    None,
    /// A reserved value.
    Reserved(u8),
}

/// A parsed report. Field names follow the AMD ABI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The whole report as received.
    pub raw: Vec<u8>,
    /// Report format version.
    pub version: u32,
    /// Guest SVN.
    pub guest_svn: u32,
    /// Guest policy (bit 19: debug allowed).
    pub policy: u64,
    /// Family id.
    pub family_id: [u8; 16],
    /// Image id.
    pub image_id: [u8; 16],
    /// VMPL the report was requested at.
    pub vmpl: u32,
    /// Signature algorithm (1 = ECDSA P-384/SHA-384).
    pub signature_algo: u32,
    /// Current TCB (raw).
    pub current_tcb: u64,
    /// Platform info flags.
    pub platform_info: u64,
    /// Key flags word at 0x48: author_key_en, mask_chip_key, signing_key.
    pub key_flags: u32,
    /// The guest's 64 bytes.
    pub report_data: [u8; 64],
    /// Launch measurement.
    pub measurement: [u8; 48],
    /// Host data (on ACI: SHA-256 of the security policy).
    pub host_data: [u8; 32],
    /// ID key digest.
    pub id_key_digest: [u8; 48],
    /// Author key digest.
    pub author_key_digest: [u8; 48],
    /// Report id.
    pub report_id: [u8; 32],
    /// Migration agent report id.
    pub report_id_ma: [u8; 32],
    /// The TCB the report is signed for (the VCEK's TCB).
    pub reported_tcb: u64,
    /// CPUID family (v3+).
    pub cpuid_fam_id: Option<u8>,
    /// CPUID model (v3+).
    pub cpuid_mod_id: Option<u8>,
    /// CPUID stepping (v3+).
    pub cpuid_step: Option<u8>,
    /// Chip id (zero when masked).
    pub chip_id: [u8; 64],
    /// Committed TCB.
    pub committed_tcb: u64,
    /// Current firmware build, minor, major.
    pub current_version: (u8, u8, u8),
    /// Committed firmware build, minor, major.
    pub committed_version: (u8, u8, u8),
    /// TCB at launch.
    pub launch_tcb: u64,
    /// Launch mitigation vector (v5).
    pub launch_mit_vector: Option<u64>,
    /// Current mitigation vector (v5).
    pub current_mit_vector: Option<u64>,
    /// R, big-endian, 48 bytes.
    pub sig_r: [u8; 48],
    /// S, big-endian, 48 bytes.
    pub sig_s: [u8; 48],
    /// The unused high bytes of R/S slots and the signature's tail are not all zero.
    pub sig_padding_nonzero: bool,
}

fn arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[off..off + N]);
    a
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(arr(b, off))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(arr(b, off))
}

/// A 72-byte little-endian scalar slot → 48 big-endian bytes; also says whether the high 24 bytes were zero.
fn scalar(b: &[u8], off: usize) -> ([u8; 48], bool) {
    let mut be: [u8; 48] = arr(b, off);
    be.reverse();
    let high_zero = b[off + 48..off + 72].iter().all(|&x| x == 0);
    (be, high_zero)
}

impl Report {
    /// Parse a report of version 2 to 5.
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let r = Self::parse_lenient(bytes)?;
        if !(2..=5).contains(&r.version) {
            return Err(ParseError::Version(r.version));
        }
        Ok(r)
    }

    /// Parse any version (the test-mode fake report is version 1). Only the length is checked.
    pub fn parse_lenient(b: &[u8]) -> Result<Self, ParseError> {
        if b.len() != REPORT_LEN {
            return Err(ParseError::Length(b.len()));
        }
        let version = u32_at(b, 0x00);
        let v3 = version >= 3;
        let v5 = version >= 5;
        let (sig_r, r_ok) = scalar(b, 0x2A0);
        let (sig_s, s_ok) = scalar(b, 0x2A0 + 72);
        let tail_zero = b[0x2A0 + 144..].iter().all(|&x| x == 0);
        Ok(Report {
            raw: b.to_vec(),
            version,
            guest_svn: u32_at(b, 0x04),
            policy: u64_at(b, 0x08),
            family_id: arr(b, 0x10),
            image_id: arr(b, 0x20),
            vmpl: u32_at(b, 0x30),
            signature_algo: u32_at(b, 0x34),
            current_tcb: u64_at(b, 0x38),
            platform_info: u64_at(b, 0x40),
            key_flags: u32_at(b, 0x48),
            report_data: arr(b, 0x50),
            measurement: arr(b, 0x90),
            host_data: arr(b, 0xC0),
            id_key_digest: arr(b, 0xE0),
            author_key_digest: arr(b, 0x110),
            report_id: arr(b, 0x140),
            report_id_ma: arr(b, 0x160),
            reported_tcb: u64_at(b, 0x180),
            cpuid_fam_id: v3.then_some(b[0x188]),
            cpuid_mod_id: v3.then_some(b[0x189]),
            cpuid_step: v3.then_some(b[0x18A]),
            chip_id: arr(b, 0x1A0),
            committed_tcb: u64_at(b, 0x1E0),
            current_version: (b[0x1E8], b[0x1E9], b[0x1EA]),
            committed_version: (b[0x1EC], b[0x1ED], b[0x1EE]),
            launch_tcb: u64_at(b, 0x1F0),
            launch_mit_vector: v5.then(|| u64_at(b, 0x1F8)),
            current_mit_vector: v5.then(|| u64_at(b, 0x200)),
            sig_r,
            sig_s,
            sig_padding_nonzero: !(r_ok && s_ok && tail_zero),
        })
    }

    /// The signed bytes `[0, 0x2A0)`.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.raw[..SIGNED_LEN]
    }

    /// Debugging allowed (policy bit 19): MAA's `x-ms-sevsnpvm-is-debuggable`.
    pub fn is_debuggable(&self) -> bool {
        self.policy & (1 << 19) != 0
    }

    /// Which key signed the report.
    pub fn signing_key(&self) -> SigningKey {
        match (self.key_flags >> 2) & 0x7 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            7 => SigningKey::None,
            // Masked to three bits: the cast cannot truncate.
            n => SigningKey::Reserved(n as u8),
        }
    }

    /// The chip id was masked (MASK_CHIP_ID, bit 1 of the key flags, or all zero).
    pub fn chip_id_masked(&self) -> bool {
        self.key_flags & 0b10 != 0 || self.chip_id.iter().all(|&b| b == 0)
    }

    /// TCB layout from the CPUID family (v3+); reports without it (v2) are Milan or Genoa.
    pub fn tcb_layout(&self) -> TcbLayout {
        match self.cpuid_fam_id {
            Some(0x1A) => TcbLayout::Turin,
            _ => TcbLayout::MilanGenoa,
        }
    }

    /// The product name for AMD KDS / AzCache URLs, when the CPUID says (v3+). Unknown models give `None`.
    pub fn product(&self) -> Option<&'static str> {
        match (self.cpuid_fam_id?, self.cpuid_mod_id?) {
            (0x19, 0x00..=0x0F) => Some("Milan"),
            (0x19, 0x10..=0x1F) | (0x19, 0xA0..=0xAF) => Some("Genoa"),
            (0x1A, 0x00..=0x11) => Some("Turin"),
            _ => None,
        }
    }

    /// The reported TCB, decoded.
    pub fn reported(&self) -> Tcb {
        Tcb::decode(self.reported_tcb, self.tcb_layout())
    }

    /// Lowercase hex of the chip id (the exact string in collateral URLs).
    pub fn chip_id_hex(&self) -> String {
        crate::hex::encode(&self.chip_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(version: u32) -> Vec<u8> {
        let mut b = vec![0u8; REPORT_LEN];
        b[0..4].copy_from_slice(&version.to_le_bytes());
        b[0x180..0x188].copy_from_slice(&0xdb18_0000_0000_0004u64.to_le_bytes());
        b[0x188] = 0x19;
        b[0x189] = 0x01;
        b[0x1F8] = 7;
        b[0x2A0] = 0x01; // R's least significant byte
        b
    }

    #[test]
    fn offsets_and_versions() {
        let r = Report::parse(&sample(3)).unwrap();
        assert_eq!(r.reported().ucode, 0xdb);
        assert_eq!(r.reported().snp, 0x18);
        assert_eq!(r.reported().bl, 4);
        assert_eq!(r.product(), Some("Milan"));
        assert_eq!(r.sig_r[47], 1);
        assert_eq!(r.launch_mit_vector, None);
        let r5 = Report::parse(&sample(5)).unwrap();
        assert_eq!(r5.launch_mit_vector, Some(7));
        let r2 = Report::parse(&sample(2)).unwrap();
        assert_eq!(r2.cpuid_fam_id, None);
        assert_eq!(Report::parse(&sample(1)), Err(ParseError::Version(1)));
        assert_eq!(Report::parse(&sample(6)), Err(ParseError::Version(6)));
        assert!(Report::parse_lenient(&sample(1)).is_ok());
        assert_eq!(Report::parse(&[0; 10]), Err(ParseError::Length(10)));
    }

    #[test]
    fn unknown_cpu_is_tolerated() {
        let mut b = sample(3);
        b[0x188] = 0x42;
        let r = Report::parse(&b).unwrap();
        assert_eq!(r.product(), None);
        assert_eq!(r.tcb_layout(), TcbLayout::MilanGenoa);
    }

    #[test]
    fn turin_layout() {
        let t = Tcb::decode(0x4800_0000_1803_0201, TcbLayout::Turin);
        assert_eq!(
            (t.fmc, t.bl, t.tee, t.snp, t.ucode),
            (Some(1), 2, 3, 0x18, 0x48)
        );
    }
}
