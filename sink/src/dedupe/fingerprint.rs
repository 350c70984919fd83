//! 128-bit fingerprints of message ids.
//!
//! A fingerprint is two independent 64-bit SipHashes; two different ids share one with
//! probability about n²/2¹²⁹ (nil in practice even at billions of ids), so a dropped row is
//! a real duplicate.

use std::{
    collections::HashSet,
    hash::{BuildHasherDefault, Hash, Hasher},
};

/// The fingerprint of a message id.
pub fn fingerprint(message_id: &str) -> u128 {
    let half = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        message_id.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0x5a)) << 64) | u128::from(half(0xa5))
}

/// Fingerprints are already uniformly random: the set uses them as their own hash.
#[derive(Debug, Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

/// A set of message-id fingerprints in memory.
pub type Fingerprints = HashSet<u128, BuildHasherDefault<IdentityHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        assert_eq!(fingerprint("msg_1"), fingerprint("msg_1"));
        assert_ne!(fingerprint("msg_1"), fingerprint("msg_2"));
        let mut set = Fingerprints::default();
        for i in 0..100_000 {
            assert!(set.insert(fingerprint(&format!("id-{i}"))));
        }
        assert!(!set.insert(fingerprint("id-77")));
    }
}
