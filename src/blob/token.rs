//! Bearer tokens for private blobs. The identity tokens' module ([`crate::keyrelease::token::BlobToken`]:
//! IMDS, workload identity) implements [`BearerSource`] with refresh; [`StaticToken`] serves a token given
//! up front.
#![forbid(unsafe_code)]

use super::Result;
use crate::secret::SecretString;
use std::fmt;

/// Something that hands out a currently valid bearer token. Called once per request: implementations
/// cache and refresh ahead of expiry themselves.
pub trait BearerSource: Send + Sync + fmt::Debug {
    /// A valid token (without the `Bearer ` prefix).
    fn token(&self) -> Result<SecretString>;
}

/// A fixed token.
pub struct StaticToken(SecretString);

impl StaticToken {
    /// Wrap `token`.
    pub fn new(token: SecretString) -> Self {
        Self(token)
    }
}

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StaticToken({:?})", self.0)
    }
}

impl BearerSource for StaticToken {
    fn token(&self) -> Result<SecretString> {
        Ok(SecretString::new(self.0.expose().to_string()))
    }
}
