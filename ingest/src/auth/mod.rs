//! Request authentication. A handler can only publish a [`Verified`] body, and the only way
//! to make one is [`Checked::verify`] (or [`Verifier::verify`], which checks the headers
//! first): the headers are read once, before the body, and the body is then checked against
//! what they said. One file per scheme; every scheme accepts several secrets at once
//! (rotation), compares in constant time and works on the raw bytes.
//!
//! Signature headers come from strangers, so their cost is bounded before any secret is
//! used: at most [`MAX_SIGNATURE_ENTRIES`] entries per header, empty or undecodable entries
//! are dropped without hashing, and each scheme computes its MAC once per secret and
//! compares every candidate with it in constant time.

mod api_key;
mod github;
mod hmac_generic;
mod secret;
mod standard_webhooks;
mod stripe;

use std::time::SystemTime;

use bytes::Bytes;
use hooklake_schemas::config::{AuthConfig, ConfigError, Secret};
use http::HeaderMap;

/// Most entries a signature header may hold (`webhook-signature`'s space-separated list,
/// `Stripe-Signature`'s comma-separated elements besides `t=`). A sender signs with one
/// entry per secret it rotates through; a longer list is refused before the body is read.
pub const MAX_SIGNATURE_ENTRIES: usize = 32;

/// The [`AuthError::Invalid`] text of a header over [`MAX_SIGNATURE_ENTRIES`].
const TOO_MANY_ENTRIES: &str = "the signature header has more than 32 entries";

/// A body that passed its source's verifier.
#[derive(Debug)]
pub struct Verified<T> {
    body: T,
    scheme: &'static str,
}

impl<T> Verified<T> {
    pub fn body(&self) -> &T {
        &self.body
    }
    /// The scheme that accepted it (`verified_by` in the envelope).
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }
}

/// Why a request was not authenticated. The texts name headers, never their values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A credential header is absent (401).
    #[error("missing header {0}")]
    Missing(&'static str),
    /// Credentials are present but wrong (403).
    #[error("{0}")]
    Invalid(&'static str),
}

/// The verifier of one source.
#[derive(Debug)]
pub struct Verifier {
    scheme: Scheme,
}

#[derive(Debug)]
enum Scheme {
    ApiKey(api_key::ApiKey),
    StandardWebhooks(standard_webhooks::StandardWebhooks),
    Github(github::Github),
    Stripe(stripe::Stripe),
    Hmac(hmac_generic::GenericHmac),
    None,
}

impl Verifier {
    /// Builds the verifier of `auth`; `key` (`sources.<name>.auth`) names errors.
    pub fn from_config(key: &str, auth: &AuthConfig) -> Result<Self, ConfigError> {
        let scheme = match auth {
            AuthConfig::ApiKey { header, keys } => Scheme::ApiKey(api_key::ApiKey::new(key, header, keys)?),
            AuthConfig::StandardWebhooks { secrets, tolerance } => {
                Scheme::StandardWebhooks(standard_webhooks::StandardWebhooks::new(key, secrets, tolerance.get())?)
            }
            AuthConfig::Github { secrets } => Scheme::Github(github::Github::new(secrets)),
            AuthConfig::Stripe { secrets, tolerance } => Scheme::Stripe(stripe::Stripe::new(secrets, tolerance.get())),
            AuthConfig::Hmac { header, algorithm, encoding, prefix, secrets } => Scheme::Hmac(
                hmac_generic::GenericHmac::new(key, header, *algorithm, *encoding, prefix.clone(), secrets)?,
            ),
            AuthConfig::None {} => Scheme::None,
        };
        Ok(Self { scheme })
    }

    /// The scheme's name as stored in `verified_by`.
    pub fn scheme_name(&self) -> &'static str {
        match self.scheme {
            Scheme::ApiKey(_) => "api_key",
            Scheme::StandardWebhooks(_) => "standard_webhooks",
            Scheme::Github(_) => "github",
            Scheme::Stripe(_) => "stripe",
            Scheme::Hmac(_) => "hmac",
            Scheme::None => "none",
        }
    }

    /// The headers whose value the scheme signs as the message id, in the order the
    /// verifier reads them (the first present one is the signed one). Empty for schemes
    /// that do not sign an id: their `webhook-id` could be set by anyone.
    pub fn signed_id_headers(&self) -> &'static [&'static str] {
        match self.scheme {
            Scheme::StandardWebhooks(_) => standard_webhooks::ID_HEADERS,
            _ => &[],
        }
    }

    /// Checks what the headers alone can tell (presence, API keys, timestamps, signatures
    /// that decode), so that unauthenticated requests are turned away before their body is
    /// read; what it read is kept for [`Checked::verify`].
    pub fn check<'v, 'h>(&'v self, headers: &'h HeaderMap, now: SystemTime) -> Result<Checked<'v, 'h>, AuthError> {
        let read = match &self.scheme {
            Scheme::ApiKey(s) => s.check(headers).map(|()| Read::Complete)?,
            Scheme::StandardWebhooks(s) => Read::StandardWebhooks(s, s.check_headers(headers, now)?),
            Scheme::Github(s) => Read::Github(s, s.check_headers(headers)?),
            Scheme::Stripe(s) => Read::Stripe(s, s.check_headers(headers, now)?),
            Scheme::Hmac(s) => Read::Hmac(s, s.check_headers(headers)?),
            Scheme::None => Read::Complete,
        };
        Ok(Checked { read, scheme: self.scheme_name() })
    }

    /// [`Self::check`] without keeping what it read (the tests compare its errors).
    #[cfg(test)]
    pub(crate) fn check_headers(&self, headers: &HeaderMap, now: SystemTime) -> Result<(), AuthError> {
        self.check(headers, now).map(drop)
    }

    /// Verifies the whole request over the body bytes exactly as received (after any
    /// Content-Encoding is undone): [`Self::check`], then [`Checked::verify`].
    pub fn verify(&self, headers: &HeaderMap, body: Bytes, now: SystemTime) -> Result<Verified<Bytes>, AuthError> {
        self.check(headers, now)?.verify(body)
    }
}

/// A request whose headers passed [`Verifier::check`], with what they said: its body is
/// then checked with [`Checked::verify`].
pub struct Checked<'v, 'h> {
    read: Read<'v, 'h>,
    scheme: &'static str,
}

/// What a scheme read from the headers, with the scheme that checks the body against it.
enum Read<'v, 'h> {
    /// Nothing is left to check with the body (API keys, no authentication).
    Complete,
    StandardWebhooks(&'v standard_webhooks::StandardWebhooks, standard_webhooks::Signed<'h>),
    Github(&'v github::Github, [u8; 32]),
    Stripe(&'v stripe::Stripe, stripe::Parsed<'h>),
    Hmac(&'v hmac_generic::GenericHmac, Vec<u8>),
}

impl std::fmt::Debug for Checked<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checked").field("scheme", &self.scheme).finish_non_exhaustive()
    }
}

impl Checked<'_, '_> {
    /// Checks the body bytes exactly as received (after any Content-Encoding is undone)
    /// against the signature the headers carried.
    pub fn verify(self, body: Bytes) -> Result<Verified<Bytes>, AuthError> {
        match &self.read {
            Read::Complete => {}
            Read::StandardWebhooks(s, signed) => s.verify(signed, &body)?,
            Read::Github(s, signature) => s.verify(signature, &body)?,
            Read::Stripe(s, parsed) => s.verify(parsed, &body)?,
            Read::Hmac(s, signature) => s.verify(signature, &body)?,
        }
        Ok(Verified { body, scheme: self.scheme })
    }
}

/// Signs requests the way a source's [`Verifier`] expects, with the first configured secret
/// (`hooklake send`, the `hooklake dev` banner, tests). `whpk_` public keys cannot sign.
#[derive(Debug)]
pub struct Signer {
    verifier: Verifier,
    /// Verifiers keep only digests of API keys; the signer needs the key itself.
    api_key: Option<(http::HeaderName, Secret)>,
}

impl Signer {
    pub fn from_config(key: &str, auth: &AuthConfig) -> Result<Self, ConfigError> {
        let api_key = match auth {
            AuthConfig::ApiKey { header, keys } => {
                let name = http::HeaderName::try_from(header.to_ascii_lowercase())
                    .map_err(|_| ConfigError::invalid(format!("{key}.header"), "not a valid HTTP header name"))?;
                let first = keys.first().ok_or_else(|| ConfigError::invalid(format!("{key}.keys"), "no key"))?;
                Some((name, first.clone()))
            }
            _ => None,
        };
        Ok(Self { verifier: Verifier::from_config(key, auth)?, api_key })
    }

    /// The authentication headers of one request carrying `body`, signed at `now`.
    /// `message_id` goes into the id header of schemes that carry one.
    pub fn sign(&self, message_id: &str, body: &[u8], now: SystemTime) -> Result<HeaderMap, String> {
        let unix = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let pairs: Vec<(http::HeaderName, String)> = match &self.verifier.scheme {
            Scheme::ApiKey(_) => {
                let (name, key) = self.api_key.as_ref().ok_or("no API key")?;
                vec![(name.clone(), key.expose().to_owned())]
            }
            Scheme::StandardWebhooks(s) => named(s.sign(message_id, unix, body)?),
            Scheme::Github(s) => named(s.sign(message_id, body)?),
            Scheme::Stripe(s) => named(s.sign(unix, body)?),
            Scheme::Hmac(s) => s.sign(body)?,
            Scheme::None => Vec::new(),
        };
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            let value = http::HeaderValue::try_from(value).map_err(|_| format!("{name}: not a valid header value"))?;
            headers.insert(name, value);
        }
        Ok(headers)
    }
}

fn named(pairs: Vec<(&'static str, String)>) -> Vec<(http::HeaderName, String)> {
    pairs.into_iter().map(|(n, v)| (http::HeaderName::from_static(n), v)).collect()
}

/// The value of header `name` as text; absent → [`AuthError::Missing`].
fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, AuthError> {
    header_any(headers, &[name])
}

/// The value of the first present header among `names`, as text; none → [`AuthError::Missing`]
/// naming the first.
fn header_any<'h>(headers: &'h HeaderMap, names: &[&'static str]) -> Result<&'h str, AuthError> {
    let value = names.iter().find_map(|n| headers.get(*n)).ok_or(AuthError::Missing(names[0]))?;
    value.to_str().map_err(|_| AuthError::Invalid("credential header is not visible ASCII"))
}

/// The first [`MAX_SIGNATURE_ENTRIES`] items of `entries`; one more is an error. Stops
/// at that one, so a header of any length costs at most that many items.
fn bounded<'h>(entries: impl Iterator<Item = &'h str>) -> Result<Vec<&'h str>, AuthError> {
    let mut kept = Vec::new();
    for entry in entries {
        if kept.len() == MAX_SIGNATURE_ENTRIES {
            return Err(AuthError::Invalid(TOO_MANY_ENTRIES));
        }
        kept.push(entry);
    }
    Ok(kept)
}

/// Checks a signature timestamp (Unix seconds) against `now` ± `tolerance`.
fn check_timestamp(ts: &str, now: SystemTime, tolerance: std::time::Duration) -> Result<i64, AuthError> {
    let ts: i64 = ts.trim().parse().map_err(|_| AuthError::Invalid("signature timestamp is not a number"))?;
    let now = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    if now.abs_diff(ts) > tolerance.as_secs() {
        return Err(AuthError::Invalid("signature timestamp is outside the tolerance"));
    }
    Ok(ts)
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
