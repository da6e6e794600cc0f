//! Sizes ("64MiB") and durations ("10s") as the manifest writes them, parsed while deserializing so that a
//! bad value is reported at its own line and column; the command line reads sizes the same way
//! (`image create --size`, `nbd serve --block-size`). A refusal is a [`Error`] naming the text and the fix.
#![forbid(unsafe_code)]

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// A byte count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

/// A duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

const SIZE_HINT: &str =
    "a byte count or a number with a unit B, KiB, MiB, GiB or TiB, e.g. \"64MiB\"";
const DUR_HINT: &str = "a number with a unit ms, s, m or h, e.g. \"10s\" or \"500ms\"";

/// Why a size or duration text is refused (a leaf: each names the text and how to write it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No number where a size belongs.
    #[error("\"{text}\" is not a size; use {}", SIZE_HINT)]
    NotASize {
        /// The text as written.
        text: String,
    },
    /// A decimal-looking unit ("MB"): refused rather than guessed.
    #[error(
        "\"{text}\" is ambiguous (decimal or binary?); use a binary unit such as \"{n}{binary}\""
    )]
    Ambiguous {
        /// The text as written.
        text: String,
        /// Its number.
        n: u64,
        /// The binary unit it probably meant.
        binary: &'static str,
    },
    /// A size unit we do not know.
    #[error("unknown size unit \"{unit}\" in \"{text}\"; use {}", SIZE_HINT)]
    SizeUnit {
        /// The unit.
        unit: String,
        /// The text as written.
        text: String,
    },
    /// More bytes than fit in 64 bits.
    #[error("\"{text}\" is too large")]
    TooLarge {
        /// The text as written.
        text: String,
    },
    /// No number where a duration belongs.
    #[error("\"{text}\" is not a duration; use {}", DUR_HINT)]
    NotADuration {
        /// The text as written.
        text: String,
    },
    /// A bare number: seconds or milliseconds?
    #[error("\"{text}\" has no unit; use {}", DUR_HINT)]
    NoUnit {
        /// The text as written.
        text: String,
    },
    /// A duration unit we do not know.
    #[error("unknown duration unit \"{unit}\" in \"{text}\"; use {}", DUR_HINT)]
    DurationUnit {
        /// The unit.
        unit: String,
        /// The text as written.
        text: String,
    },
}

/// Parse "64MiB", "512 KiB", "4096", "4096B". Binary units only: "MB" is refused rather than guessed.
pub fn parse_size(text: &str) -> Result<u64, Error> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| Error::NotASize { text: text.into() })?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "K" | "KB" | "k" | "kB" | "M" | "MB" | "G" | "GB" | "T" | "TB" => {
            return Err(Error::Ambiguous {
                text: text.into(),
                n,
                binary: match unit.trim().chars().next() {
                    Some('K' | 'k') => "KiB",
                    Some('M') => "MiB",
                    Some('G') => "GiB",
                    _ => "TiB",
                },
            })
        }
        other => {
            return Err(Error::SizeUnit {
                unit: other.into(),
                text: text.into(),
            })
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| Error::TooLarge { text: text.into() })
}

/// Parse "10s", "500ms", "2m", "1h". A unit is required: a bare number is ambiguous.
pub fn parse_duration(text: &str) -> Result<Duration, Error> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| Error::NotADuration { text: text.into() })?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "" => return Err(Error::NoUnit { text: text.into() }),
        other => {
            return Err(Error::DurationUnit {
                unit: other.into(),
                text: text.into(),
            })
        }
    };
    Ok(d)
}

/// Render a duration the way the manifest writes it.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 3_600_000 == 0 && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Render a size the way the manifest writes it.
pub fn fmt_size(n: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n % (1 << shift) == 0 {
            return format!("{}{unit}", n >> shift);
        }
    }
    format!("{n}B")
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(SIZE_HINT)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v).map(Size).map_err(|_| {
                    E::custom(format!("a size cannot be negative ({v}); use {SIZE_HINT}"))
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(DUR_HINT)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse_duration(v).map(Dur).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("64MB")
            .unwrap_err()
            .to_string()
            .contains("64MiB"));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999TiB")
            .unwrap_err()
            .to_string()
            .contains("too large"));
        assert_eq!(fmt_size(64 << 20), "64MiB");
        assert_eq!(fmt_size(1000), "1000B");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("10")
            .unwrap_err()
            .to_string()
            .contains("no unit"));
        assert!(parse_duration("ten s").is_err());
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(fmt_duration(Duration::from_secs(120)), "2m");
    }
}
