//! Key material held by verifiers, and the constant-time HMAC check they share.

use std::fmt;

use hmac::{Mac, SimpleHmac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Key bytes that never show in `Debug`.
#[derive(Clone)]
pub(super) struct KeyBytes(pub(super) Vec<u8>);

impl fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Whether HMAC(`key`, concatenation of `parts`) equals `expected`, in constant time
/// (`verify_slice` compares with `subtle`). An empty or truncated `expected` never matches.
pub(super) fn hmac_matches<M>(key: &[u8], parts: &[&[u8]], expected: &[u8]) -> bool
where
    M: Mac + hmac::digest::KeyInit,
{
    let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(key) else {
        return false;
    };
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(expected).is_ok()
}

/// HMAC-SHA256, the algorithm of Standard Webhooks, GitHub and Stripe.
pub(super) type HmacSha256 = SimpleHmac<Sha256>;

/// Whether any of `keys` signs `parts` as `expected`. Every key is tried, so the time taken
/// does not tell which one matched.
pub(super) fn any_key_matches<M>(keys: &[KeyBytes], parts: &[&[u8]], expected: &[u8]) -> bool
where
    M: Mac + hmac::digest::KeyInit,
{
    keys.iter().fold(false, |found, key| hmac_matches::<M>(&key.0, parts, expected) | found)
}

/// Whether any of `candidates` equals any of `macs`. Every pair is compared in constant
/// time, so the time taken tells neither which secret nor which entry matched. The MACs
/// are computed once per secret by the caller ([`hmac_of`]), never once per candidate.
pub(super) fn any_candidate_matches(macs: &[Vec<u8>], candidates: &[&[u8]]) -> bool {
    let mut found = subtle::Choice::from(0);
    for mac in macs {
        for candidate in candidates {
            found |= mac.as_slice().ct_eq(candidate);
        }
    }
    found.into()
}

/// HMAC(`key`, concatenation of `parts`): the signing side of [`hmac_matches`].
pub(super) fn hmac_of<M>(key: &[u8], parts: &[&[u8]]) -> Vec<u8>
where
    M: Mac + hmac::digest::KeyInit,
{
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}
