//! A bounded cursor over untrusted bytes (rustls's `Reader` discipline): every read names what it reads, and
//! running out of input is an error, never a panic or a short read.

use super::error::{Error, Result};

/// A cursor over a byte slice.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(Error::Truncated {
                what,
                need: (self.pos as u64).saturating_add(n as u64),
                have: self.buf.len() as u64,
            }),
        }
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    /// A big-endian u16.
    pub fn u16_be(&mut self, what: &'static str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    /// A big-endian u64.
    pub fn u64_be(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }
}

/// `buf[offset .. offset + len]`, or [`Error::Truncated`] naming `what`.
pub fn slice<'a>(buf: &'a [u8], offset: u64, len: u64, what: &'static str) -> Result<&'a [u8]> {
    let end = offset.checked_add(len);
    match end {
        Some(end) if end <= buf.len() as u64 => {
            // Both fit in usize: they are at most buf.len().
            let (o, e) = (usize::try_from(offset), usize::try_from(end));
            match (o, e) {
                (Ok(o), Ok(e)) => Ok(&buf[o..e]),
                _ => Err(Error::Truncated {
                    what,
                    need: end,
                    have: buf.len() as u64,
                }),
            }
        }
        _ => Err(Error::Truncated {
            what,
            need: end.unwrap_or(u64::MAX),
            have: buf.len() as u64,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_an_error_naming_the_field() {
        let mut r = Reader::new(&[0, 1, 2]);
        assert_eq!(r.u16_be("version").unwrap(), 1);
        let e = r.u64_be("hdr_size").unwrap_err();
        assert_eq!(
            e,
            Error::Truncated {
                what: "hdr_size",
                need: 10,
                have: 3
            }
        );
        assert_eq!(r.position(), 2);
        assert!(slice(&[0; 4], 2, 3, "x").is_err());
        assert!(slice(&[0; 4], u64::MAX, 3, "x").is_err());
        assert_eq!(slice(&[1, 2, 3, 4], 1, 2, "x").unwrap(), &[2, 3]);
    }
}
