//! `github`: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
//!
//! One signature per header: anything but 64 hex digits after `sha256=` (an empty value,
//! a list) is refused before the body is read, without hashing.

use hooklake_schemas::config::Secret;
use http::HeaderMap;

use super::{
    AuthError, header,
    secret::{HmacSha256, KeyBytes, any_key_matches, hmac_of},
};

const SIGNATURE_HEADER: &str = "x-hub-signature-256";

#[derive(Debug)]
pub(super) struct Github {
    secrets: Vec<KeyBytes>,
}

impl Github {
    pub(super) fn new(secrets: &[Secret]) -> Self {
        Self { secrets: secrets.iter().map(|s| KeyBytes(s.expose().as_bytes().to_vec())).collect() }
    }

    pub(super) fn check_headers(&self, headers: &HeaderMap) -> Result<[u8; 32], AuthError> {
        let value = header(headers, SIGNATURE_HEADER)?;
        let hex_sig =
            value.strip_prefix("sha256=").ok_or(AuthError::Invalid("signature does not start with sha256="))?;
        let mut signature = [0u8; 32];
        if hex_sig.len() != 2 * signature.len() {
            return Err(AuthError::Invalid("signature has the wrong length"));
        }
        hex::decode_to_slice(hex_sig, &mut signature).map_err(|_| AuthError::Invalid("signature is not hex"))?;
        Ok(signature)
    }

    /// Checks `body` against the signature [`Self::check_headers`] read.
    pub(super) fn verify(&self, signature: &[u8; 32], body: &[u8]) -> Result<(), AuthError> {
        if any_key_matches::<HmacSha256>(&self.secrets, &[body], signature) {
            Ok(())
        } else {
            Err(AuthError::Invalid("signature does not match"))
        }
    }

    /// `X-Hub-Signature-256: sha256=<hex>` with the first secret, and a delivery id.
    pub(super) fn sign(&self, delivery: &str, body: &[u8]) -> Result<Vec<(&'static str, String)>, String> {
        let key = self.secrets.first().ok_or("no secret is configured")?;
        let sig = hmac_of::<HmacSha256>(&key.0, &[body]);
        Ok(vec![(SIGNATURE_HEADER, format!("sha256={}", hex::encode(sig))), ("x-github-delivery", delivery.to_owned())])
    }
}
