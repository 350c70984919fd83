//! `standard_webhooks`: the Standard Webhooks specification, which Svix implements.
//!
//! Headers `webhook-id`, `webhook-timestamp`, `webhook-signature` (or their `svix-*`
//! aliases). The signed content is `<id>.<timestamp>.<body>`. The signature header is a
//! space-separated list of `v1,<base64 HMAC-SHA256>` (keyed with the base64-decoded
//! `whsec_` secret) and `v1a,<base64 ed25519 signature>` (checked with a `whpk_` public
//! key); one valid entry for one configured secret is enough.
//!
//! The list holds at most [`super::MAX_SIGNATURE_ENTRIES`] entries. Entries of another version,
//! or whose signature does not decode to the length of its algorithm, are dropped without
//! hashing; a header left with none is refused before the body is read. The HMAC is
//! computed once per secret and compared with every `v1` entry.

use std::time::{Duration, SystemTime};

use base64::{
    Engine,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig, general_purpose::STANDARD},
};
use ed25519_dalek::{Signature, VerifyingKey};
use hooklake_schemas::config::{ConfigError, Secret};
use http::HeaderMap;

use super::{
    AuthError, bounded, check_timestamp, header_any,
    secret::{HmacSha256, KeyBytes, any_candidate_matches, hmac_of},
};

/// Standard base64 that accepts padded and unpadded input, as the Svix libraries do.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub(super) const ID_HEADERS: &[&str] = &["webhook-id", "svix-id"];
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
    signatures: Candidates,
}

/// The usable entries of a signature header, decoded.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Candidates {
    /// `v1,` entries: HMAC-SHA256 digests.
    pub(super) v1: Vec<[u8; HMAC_LEN]>,
    /// `v1a,` entries: ed25519 signatures, without repeats.
    pub(super) v1a: Vec<[u8; ED25519_LEN]>,
}

const HMAC_LEN: usize = 32;
const ED25519_LEN: usize = 64;
/// The longest base64 text of an entry we can use (64 bytes, padded); longer ones are
/// dropped before decoding.
const MAX_ENTRY_B64: usize = ED25519_LEN.div_ceil(3) * 4;

/// Parses a signature header: at most [`super::MAX_SIGNATURE_ENTRIES`] space-separated
/// entries, of which the `v1,` and `v1a,` ones of the right length are kept. `Err` when
/// there are too many, or none is usable.
pub(super) fn parse_signatures(value: &str) -> Result<Candidates, AuthError> {
    let mut found = Candidates::default();
    for entry in bounded(value.split_ascii_whitespace())? {
        let Some((version, b64)) = entry.split_once(',') else { continue };
        match version {
            "v1" => found.v1.extend(decode_fixed::<HMAC_LEN>(b64)),
            "v1a" => found.v1a.extend(decode_fixed::<ED25519_LEN>(b64)),
            _ => {}
        }
    }
    found.v1a.sort_unstable();
    found.v1a.dedup();
    if found.v1.is_empty() && found.v1a.is_empty() {
        return Err(AuthError::Invalid("the signature header has no usable v1 or v1a entry"));
    }
    Ok(found)
}

/// `b64` decoded, when it is exactly `N` bytes.
fn decode_fixed<const N: usize>(b64: &str) -> Option<[u8; N]> {
    if b64.is_empty() || b64.len() > MAX_ENTRY_B64 {
        return None;
    }
    let mut out = [0u8; MAX_ENTRY_B64];
    let len = LENIENT.decode_slice(b64, &mut out).ok()?;
    out[..len].try_into().ok()
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
            signatures: parse_signatures(header_any(headers, SIGNATURE_HEADERS)?)?,
        };
        check_timestamp(signed.timestamp, now, self.tolerance)?;
        Ok(signed)
    }

    /// Checks `body` against what [`Self::check_headers`] read.
    pub(super) fn verify(&self, s: &Signed<'_>, body: &[u8]) -> Result<(), AuthError> {
        let parts: [&[u8]; 5] = [s.id.as_bytes(), b".", s.timestamp.as_bytes(), b".", body];
        // `|`, not `||`: both kinds are checked, whichever matched.
        let matched = self.hmac_matches(&parts, &s.signatures.v1) | self.ed25519_matches(&parts, &s.signatures.v1a);
        if matched { Ok(()) } else { Err(AuthError::Invalid("no signature matches")) }
    }

    /// One HMAC per secret, compared with every `v1` entry.
    fn hmac_matches(&self, parts: &[&[u8]], entries: &[[u8; HMAC_LEN]]) -> bool {
        if entries.is_empty() {
            return false;
        }
        let macs: Vec<Vec<u8>> = self.hmac_keys.iter().map(|k| hmac_of::<HmacSha256>(&k.0, parts)).collect();
        let entries: Vec<&[u8]> = entries.iter().map(|e| e.as_slice()).collect();
        any_candidate_matches(&macs, &entries)
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

    /// Each `v1a` entry against each public key. ed25519 hashes the message with the
    /// signature's `R`, so this work is per entry; the entries are bounded and without
    /// repeats, and the message is joined once.
    fn ed25519_matches(&self, parts: &[&[u8]], entries: &[[u8; ED25519_LEN]]) -> bool {
        if entries.is_empty() || self.public_keys.is_empty() {
            return false;
        }
        let message = parts.concat();
        let mut found = false;
        for sig in entries.iter().map(Signature::from_bytes) {
            found |= self.public_keys.iter().fold(false, |f, key| key.verify_strict(&message, &sig).is_ok() | f);
        }
        found
    }
}
