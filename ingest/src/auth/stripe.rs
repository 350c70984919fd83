//! `stripe`: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`, HMAC-SHA256 of
//! `<t>.<body>` keyed with the endpoint secret's text (Stripe does not base64-decode it).
//!
//! Besides its one `t=`, the header holds at most [`MAX_SIGNATURE_ENTRIES`]
//! elements. `v1=` elements that are not 64 hex digits, and elements of other schemes
//! (`v0=`), are dropped without hashing; a header left with no `v1=` is refused before the
//! body is read. The HMAC is computed once per secret and compared with every `v1=`.

use std::time::{Duration, SystemTime};

use hooklake_schemas::config::Secret;
use http::HeaderMap;

use super::{
    AuthError, MAX_SIGNATURE_ENTRIES, TOO_MANY_ENTRIES, check_timestamp, header,
    secret::{HmacSha256, KeyBytes, any_candidate_matches, hmac_of},
};

const SIGNATURE_HEADER: &str = "stripe-signature";
const HMAC_LEN: usize = 32;

#[derive(Debug)]
pub(super) struct Stripe {
    secrets: Vec<KeyBytes>,
    tolerance: Duration,
}

/// A `Stripe-Signature` header, parsed.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Parsed<'h> {
    pub(super) timestamp: &'h str,
    pub(super) signatures: Vec<[u8; HMAC_LEN]>,
}

/// Parses the header's value: exactly one `t=`, at most [`MAX_SIGNATURE_ENTRIES`] other
/// elements, at least one usable `v1=`.
pub(super) fn parse_header(value: &str) -> Result<Parsed<'_>, AuthError> {
    let mut timestamp = None;
    let mut others = Vec::new();
    for item in value.split(',').map(str::trim) {
        match item.strip_prefix("t=") {
            Some(_) if timestamp.is_some() => return Err(AuthError::Invalid("Stripe-Signature has more than one t=")),
            Some(t) => timestamp = Some(t),
            None if others.len() == MAX_SIGNATURE_ENTRIES => return Err(AuthError::Invalid(TOO_MANY_ENTRIES)),
            None => others.push(item),
        }
    }
    let timestamp = timestamp.ok_or(AuthError::Invalid("Stripe-Signature has no t="))?;
    let signatures: Vec<_> = others.iter().filter_map(|item| item.strip_prefix("v1=").and_then(decode_hex)).collect();
    if signatures.is_empty() {
        return Err(AuthError::Invalid("Stripe-Signature has no v1= signature"));
    }
    Ok(Parsed { timestamp, signatures })
}

fn decode_hex(text: &str) -> Option<[u8; HMAC_LEN]> {
    let mut out = [0u8; HMAC_LEN];
    (text.len() == 2 * HMAC_LEN && hex::decode_to_slice(text, &mut out).is_ok()).then_some(out)
}

impl Stripe {
    pub(super) fn new(secrets: &[Secret], tolerance: Duration) -> Self {
        Self { secrets: secrets.iter().map(|s| KeyBytes(s.expose().as_bytes().to_vec())).collect(), tolerance }
    }

    pub(super) fn check_headers<'h>(&self, headers: &'h HeaderMap, now: SystemTime) -> Result<Parsed<'h>, AuthError> {
        let parsed = parse_header(header(headers, SIGNATURE_HEADER)?)?;
        check_timestamp(parsed.timestamp, now, self.tolerance)?;
        Ok(parsed)
    }

    /// Checks `body` against what [`Self::check_headers`] read.
    pub(super) fn verify(&self, parsed: &Parsed<'_>, body: &[u8]) -> Result<(), AuthError> {
        let parts: [&[u8]; 3] = [parsed.timestamp.as_bytes(), b".", body];
        let macs: Vec<Vec<u8>> = self.secrets.iter().map(|k| hmac_of::<HmacSha256>(&k.0, &parts)).collect();
        let candidates: Vec<&[u8]> = parsed.signatures.iter().map(|s| s.as_slice()).collect();
        if any_candidate_matches(&macs, &candidates) {
            Ok(())
        } else {
            Err(AuthError::Invalid("signature does not match"))
        }
    }

    /// `Stripe-Signature: t=<timestamp>,v1=<hex>` with the first secret.
    pub(super) fn sign(&self, timestamp: i64, body: &[u8]) -> Result<Vec<(&'static str, String)>, String> {
        let key = self.secrets.first().ok_or("no secret is configured")?;
        let ts = timestamp.to_string();
        let sig = hmac_of::<HmacSha256>(&key.0, &[ts.as_bytes(), b".", body]);
        Ok(vec![(SIGNATURE_HEADER, format!("t={ts},v1={}", hex::encode(sig)))])
    }
}
