//! `stripe`: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`, HMAC-SHA256 of
//! `<t>.<body>` keyed with the endpoint secret's text (Stripe does not base64-decode it).

use std::time::{Duration, SystemTime};

use hooklake_schemas::config::Secret;
use http::HeaderMap;

use super::{
    AuthError, check_timestamp, header,
    secret::{HmacSha256, KeyBytes, any_key_matches, hmac_of},
};

const SIGNATURE_HEADER: &str = "stripe-signature";

#[derive(Debug)]
pub(super) struct Stripe {
    secrets: Vec<KeyBytes>,
    tolerance: Duration,
}

struct Parsed<'h> {
    timestamp: &'h str,
    signatures: Vec<Vec<u8>>,
}

impl Stripe {
    pub(super) fn new(secrets: &[Secret], tolerance: Duration) -> Self {
        Self { secrets: secrets.iter().map(|s| KeyBytes(s.expose().as_bytes().to_vec())).collect(), tolerance }
    }

    fn parse<'h>(&self, headers: &'h HeaderMap, now: SystemTime) -> Result<Parsed<'h>, AuthError> {
        let value = header(headers, SIGNATURE_HEADER)?;
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for item in value.split(',') {
            match item.trim().split_once('=') {
                Some(("t", t)) => timestamp = Some(t),
                Some(("v1", sig)) => signatures.push(hex::decode(sig).unwrap_or_default()),
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or(AuthError::Invalid("Stripe-Signature has no t="))?;
        if signatures.is_empty() {
            return Err(AuthError::Invalid("Stripe-Signature has no v1= signature"));
        }
        check_timestamp(timestamp, now, self.tolerance)?;
        Ok(Parsed { timestamp, signatures })
    }

    pub(super) fn check_headers(&self, headers: &HeaderMap, now: SystemTime) -> Result<(), AuthError> {
        self.parse(headers, now).map(drop)
    }

    pub(super) fn verify(&self, headers: &HeaderMap, body: &[u8], now: SystemTime) -> Result<(), AuthError> {
        let parsed = self.parse(headers, now)?;
        let parts: [&[u8]; 3] = [parsed.timestamp.as_bytes(), b".", body];
        let matched = parsed
            .signatures
            .iter()
            .fold(false, |found, sig| any_key_matches::<HmacSha256>(&self.secrets, &parts, sig) | found);
        if matched { Ok(()) } else { Err(AuthError::Invalid("signature does not match")) }
    }

    /// `Stripe-Signature: t=<timestamp>,v1=<hex>` with the first secret.
    pub(super) fn sign(&self, timestamp: i64, body: &[u8]) -> Result<Vec<(&'static str, String)>, String> {
        let key = self.secrets.first().ok_or("no secret is configured")?;
        let ts = timestamp.to_string();
        let sig = hmac_of::<HmacSha256>(&key.0, &[ts.as_bytes(), b".", body]);
        Ok(vec![(SIGNATURE_HEADER, format!("t={ts},v1={}", hex::encode(sig)))])
    }
}
