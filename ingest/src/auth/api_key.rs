//! `api_key`: a shared key in a header (the "API Key Header / Value" of hosted webhook
//! products). Several keys may be valid at once for rotation.

use hooklake_schemas::config::{ConfigError, Secret};
use http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AuthError;

#[derive(Debug)]
pub(super) struct ApiKey {
    header: HeaderName,
    /// SHA-256 of each accepted key: comparing fixed-length digests in constant time
    /// hides both the keys' contents and their lengths.
    digests: Vec<Digest32>,
}

#[derive(Clone, Copy)]
struct Digest32([u8; 32]);

impl std::fmt::Debug for Digest32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

fn digest(bytes: &[u8]) -> Digest32 {
    Digest32(Sha256::digest(bytes).into())
}

impl ApiKey {
    pub(super) fn new(key: &str, header: &str, keys: &[Secret]) -> Result<Self, ConfigError> {
        let header = HeaderName::try_from(header.to_ascii_lowercase())
            .map_err(|_| ConfigError::invalid(format!("{key}.header"), "not a valid HTTP header name"))?;
        Ok(Self { header, digests: keys.iter().map(|k| digest(k.expose().as_bytes())).collect() })
    }

    pub(super) fn check(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        let value = headers.get(&self.header).ok_or(AuthError::Missing("api key header"))?;
        let presented = digest(value.as_bytes());
        let matched = self.digests.iter().fold(0u8, |acc, d| acc | d.0.ct_eq(&presented.0).unwrap_u8());
        if matched == 1 { Ok(()) } else { Err(AuthError::Invalid("wrong API key")) }
    }
}
