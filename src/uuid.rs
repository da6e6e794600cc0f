//! Version-4 UUIDs (a LUKS2 header's uuid, Azure's `x-ms-client-request-id`): the one formatter.
#![forbid(unsafe_code)]

/// The version-4 UUID made of 16 random bytes (version and variant bits set), lowercase and hyphenated.
pub fn v4(random: [u8; 16]) -> String {
    text(&v4_bytes(random))
}

/// 16 random bytes with the version-4 and variant bits set (a dm-verity superblock's binary uuid).
pub fn v4_bytes(mut random: [u8; 16]) -> [u8; 16] {
    random[6] = (random[6] & 0x0f) | 0x40;
    random[8] = (random[8] & 0x3f) | 0x80;
    random
}

/// A binary UUID as text, lowercase and hyphenated.
pub fn text(uuid: &[u8; 16]) -> String {
    let h = crate::hex::encode(uuid);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn sets_version_and_variant() {
        let u = super::v4([0xff; 16]);
        assert_eq!(u, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let u = super::v4([0; 16]);
        assert_eq!(u, "00000000-0000-4000-8000-000000000000");
    }
}
