//! `hmac`: a generic HMAC of the body in one header — configurable algorithm (sha1,
//! sha256, sha512), encoding (hex or base64) and prefix (e.g. `sha256=`).
//!
//! One signature per header: a value that does not decode to the algorithm's digest
//! length (empty, a list, another algorithm) is refused before the body is read, without
//! hashing.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::SimpleHmac;
use hooklake_schemas::config::{ConfigError, HmacAlgorithm, Secret, SignatureEncoding};
use http::{HeaderMap, HeaderName};
use sha1::Sha1;
use sha2::{Sha256, Sha512};

use super::{
    AuthError,
    secret::{KeyBytes, any_key_matches, hmac_of},
};

#[derive(Debug)]
pub(super) struct GenericHmac {
    header: HeaderName,
    algorithm: HmacAlgorithm,
    encoding: SignatureEncoding,
    prefix: Option<String>,
    secrets: Vec<KeyBytes>,
}

impl GenericHmac {
    pub(super) fn new(
        key: &str,
        header: &str,
        algorithm: HmacAlgorithm,
        encoding: SignatureEncoding,
        prefix: Option<String>,
        secrets: &[Secret],
    ) -> Result<Self, ConfigError> {
        let header = HeaderName::try_from(header.to_ascii_lowercase())
            .map_err(|_| ConfigError::invalid(format!("{key}.header"), "not a valid HTTP header name"))?;
        let secrets = secrets.iter().map(|s| KeyBytes(s.expose().as_bytes().to_vec())).collect();
        Ok(Self { header, algorithm, encoding, prefix, secrets })
    }

    pub(super) fn check_headers(&self, headers: &HeaderMap) -> Result<Vec<u8>, AuthError> {
        let value = headers.get(&self.header).ok_or(AuthError::Missing("signature header"))?;
        let value = value.to_str().map_err(|_| AuthError::Invalid("signature header is not visible ASCII"))?.trim();
        let sig = match &self.prefix {
            Some(p) => value.strip_prefix(p.as_str()).ok_or(AuthError::Invalid("signature lacks its prefix"))?,
            None => value,
        };
        let len = digest_len(self.algorithm);
        // Checked before decoding, so that a long value is never decoded.
        let encoded_len = match self.encoding {
            SignatureEncoding::Hex => 2 * len,
            SignatureEncoding::Base64 => len.div_ceil(3) * 4,
        };
        if sig.len() != encoded_len {
            return Err(AuthError::Invalid("signature has the wrong length"));
        }
        let decoded = match self.encoding {
            SignatureEncoding::Hex => hex::decode(sig).map_err(|_| AuthError::Invalid("signature is not hex"))?,
            SignatureEncoding::Base64 => {
                STANDARD.decode(sig).map_err(|_| AuthError::Invalid("signature is not base64"))?
            }
        };
        // Base64 of 33 bytes is as long as that of 32 (padded).
        if decoded.len() != len {
            return Err(AuthError::Invalid("signature has the wrong length"));
        }
        Ok(decoded)
    }

    /// Checks `body` against the signature [`Self::check_headers`] read.
    pub(super) fn verify(&self, sig: &[u8], body: &[u8]) -> Result<(), AuthError> {
        let parts: [&[u8]; 1] = [body];
        let ok = match self.algorithm {
            HmacAlgorithm::Sha1 => any_key_matches::<SimpleHmac<Sha1>>(&self.secrets, &parts, sig),
            HmacAlgorithm::Sha256 => any_key_matches::<SimpleHmac<Sha256>>(&self.secrets, &parts, sig),
            HmacAlgorithm::Sha512 => any_key_matches::<SimpleHmac<Sha512>>(&self.secrets, &parts, sig),
        };
        if ok { Ok(()) } else { Err(AuthError::Invalid("signature does not match")) }
    }

    /// The configured header with `<prefix><encoded HMAC of the body>`, first secret.
    pub(super) fn sign(&self, body: &[u8]) -> Result<Vec<(HeaderName, String)>, String> {
        let key = &self.secrets.first().ok_or("no secret is configured")?.0;
        let sig = match self.algorithm {
            HmacAlgorithm::Sha1 => hmac_of::<SimpleHmac<Sha1>>(key, &[body]),
            HmacAlgorithm::Sha256 => hmac_of::<SimpleHmac<Sha256>>(key, &[body]),
            HmacAlgorithm::Sha512 => hmac_of::<SimpleHmac<Sha512>>(key, &[body]),
        };
        let encoded = match self.encoding {
            SignatureEncoding::Hex => hex::encode(sig),
            SignatureEncoding::Base64 => STANDARD.encode(sig),
        };
        Ok(vec![(self.header.clone(), format!("{}{encoded}", self.prefix.as_deref().unwrap_or_default()))])
    }
}

/// Bytes of the algorithm's MAC.
fn digest_len(algorithm: HmacAlgorithm) -> usize {
    match algorithm {
        HmacAlgorithm::Sha1 => 20,
        HmacAlgorithm::Sha256 => 32,
        HmacAlgorithm::Sha512 => 64,
    }
}
