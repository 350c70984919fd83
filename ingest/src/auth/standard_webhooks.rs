//! `standard_webhooks`: the Standard Webhooks specification, which Svix implements.
//!
//! Headers `webhook-id`, `webhook-timestamp`, `webhook-signature` (or their `svix-*`
//! aliases). The signed content is `<id>.<timestamp>.<body>`. The signature header is a
//! space-separated list of `v1,<base64 HMAC-SHA256>` (keyed with the base64-decoded
//! `whsec_` secret) and `v1a,<base64 ed25519 signature>` (checked with a `whpk_` public
//! key); one valid entry for one configured secret is enough.

use std::time::{Duration, SystemTime};

use base64::{
    Engine,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig, general_purpose::STANDARD},
};
use ed25519_dalek::{Signature, VerifyingKey};
use hooklake_schemas::config::{ConfigError, Secret};
use http::HeaderMap;

use super::{
    AuthError, check_timestamp, header_any,
    secret::{HmacSha256, KeyBytes, any_key_matches, hmac_of},
};

/// Standard base64 that accepts padded and unpadded input, as the Svix libraries do.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

const ID_HEADERS: &[&str] = &["webhook-id", "svix-id"];
const TIMESTAMP_HEADERS: &[&str] = &["webhook-timestamp", "svix-timestamp"];
const SIGNATURE_HEADERS: &[&str] = &["webhook-signature", "svix-signature"];

#[derive(Debug)]
pub(super) struct StandardWebhooks {
    hmac_keys: Vec<KeyBytes>,
    public_keys: Vec<VerifyingKey>,
    tolerance: Duration,
}

pub(super) struct Signed<'h> {
    id: &'h str,
    timestamp: &'h str,
    signatures: &'h str,
}

impl StandardWebhooks {
    pub(super) fn new(key: &str, secrets: &[Secret], tolerance: Duration) -> Result<Self, ConfigError> {
        let mut hmac_keys = Vec::new();
        let mut public_keys = Vec::new();
        for (i, secret) in secrets.iter().enumerate() {
            let at = || format!("{key}.secrets[{i}]");
            let text = secret.expose().trim();
            if let Some(b64) = text.strip_prefix("whpk_") {
                let bytes = STANDARD.decode(b64).map_err(|_| ConfigError::invalid(at(), "whpk_ key is not base64"))?;
                let bytes: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| ConfigError::invalid(at(), "whpk_ key is not a 32-byte ed25519 public key"))?;
                let vk = VerifyingKey::from_bytes(&bytes)
                    .map_err(|_| ConfigError::invalid(at(), "whpk_ key is not a valid ed25519 public key"))?;
                public_keys.push(vk);
            } else if text.starts_with("whsk_") {
                return Err(ConfigError::invalid(
                    at(),
                    "whsk_ is a signing (private) key; configure the sender's whpk_ public key",
                ));
            } else {
                // Like the Svix libraries, accept the secret with or without its prefix.
                let b64 = text.strip_prefix("whsec_").unwrap_or(text);
                let bytes = LENIENT
                    .decode(b64)
                    .map_err(|_| ConfigError::invalid(at(), "not a whsec_ secret (base64 after the prefix)"))?;
                if bytes.is_empty() {
                    return Err(ConfigError::invalid(at(), "the secret is empty"));
                }
                hmac_keys.push(KeyBytes(bytes));
            }
        }
        Ok(Self { hmac_keys, public_keys, tolerance })
    }

    pub(super) fn check_headers<'h>(&self, headers: &'h HeaderMap, now: SystemTime) -> Result<Signed<'h>, AuthError> {
        let signed = Signed {
            id: header_any(headers, ID_HEADERS)?,
            timestamp: header_any(headers, TIMESTAMP_HEADERS)?,
            signatures: header_any(headers, SIGNATURE_HEADERS)?,
        };
        check_timestamp(signed.timestamp, now, self.tolerance)?;
        Ok(signed)
    }

    pub(super) fn verify(&self, headers: &HeaderMap, body: &[u8], now: SystemTime) -> Result<(), AuthError> {
        let s = self.check_headers(headers, now)?;
        let parts: [&[u8]; 5] = [s.id.as_bytes(), b".", s.timestamp.as_bytes(), b".", body];
        let mut matched = false;
        for entry in s.signatures.split_whitespace() {
            let Some((version, b64)) = entry.split_once(',') else { continue };
            let Ok(sig) = LENIENT.decode(b64) else { continue };
            matched |= match version {
                "v1" => any_key_matches::<HmacSha256>(&self.hmac_keys, &parts, &sig),
                "v1a" => self.ed25519_matches(&parts.concat(), &sig),
                _ => false,
            };
        }
        if matched { Ok(()) } else { Err(AuthError::Invalid("no signature matches")) }
    }

    /// Headers that sign `body` as the sender would: `v1,<base64 HMAC>` with the first
    /// `whsec_` secret. Public `whpk_` keys cannot sign.
    pub(super) fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> Result<Vec<(&'static str, String)>, String> {
        let key =
            self.hmac_keys.first().ok_or("only whpk_ public keys are configured: signing needs a whsec_ secret")?;
        let ts = timestamp.to_string();
        let sig = hmac_of::<HmacSha256>(&key.0, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
        Ok(vec![
            (ID_HEADERS[0], id.to_owned()),
            (TIMESTAMP_HEADERS[0], ts),
            (SIGNATURE_HEADERS[0], format!("v1,{}", STANDARD.encode(sig))),
        ])
    }

    fn ed25519_matches(&self, message: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = Signature::from_slice(sig) else { return false };
        self.public_keys.iter().fold(false, |found, key| key.verify_strict(message, &sig).is_ok() | found)
    }
}
