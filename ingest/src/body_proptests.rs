//! Property tests of the body decoder ([`crate::body::decode`]): gzip, deflate and
//! identity bodies come back as sent, truncated or garbage compressed bodies are a clean
//! error and never a panic, and no output is larger than the cap.

use std::io::Write;

use bytes::Bytes;
use flate2::{
    Compression,
    write::{GzEncoder, ZlibEncoder},
};
use proptest::{collection::vec, prelude::*};

use crate::body::{BodyError, ContentEncoding, decode};

fn encoding() -> impl Strategy<Value = ContentEncoding> {
    prop_oneof![Just(ContentEncoding::Identity), Just(ContentEncoding::Gzip), Just(ContentEncoding::Deflate)]
}

fn compressed() -> impl Strategy<Value = ContentEncoding> {
    prop_oneof![Just(ContentEncoding::Gzip), Just(ContentEncoding::Deflate)]
}

/// Bodies that compress well (JSON-like repeats) and badly (random bytes).
fn body(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![vec(any::<u8>(), 0..max), ("[ -~]{1,16}", 0..max / 4).prop_map(|(unit, n)| unit.repeat(n).into_bytes()),]
}

/// `data` as the sender would send it with `encoding` (deflate is zlib in HTTP).
fn encode(encoding: ContentEncoding, data: &[u8]) -> Vec<u8> {
    match encoding {
        ContentEncoding::Identity => data.to_vec(),
        ContentEncoding::Gzip => {
            let mut e = GzEncoder::new(Vec::new(), Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        ContentEncoding::Deflate => {
            let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn bodies_round_trip(encoding in encoding(), data in body(8192), slack in 0usize..100) {
        let limit = data.len().max(1) + slack;
        let decoded = decode(encoding, Bytes::from(encode(encoding, &data)), limit);
        prop_assert_eq!(decoded.as_deref(), Ok(&data[..]));
    }

    #[test]
    fn truncated_compressed_bodies_are_an_error(
        encoding in compressed(),
        data in body(4096),
        cut in any::<prop::sample::Index>(),
    ) {
        let full = encode(encoding, &data);
        let truncated = &full[..cut.index(full.len())];
        let decoded = decode(encoding, Bytes::copy_from_slice(truncated), 1 << 20);
        prop_assert!(matches!(decoded, Err(BodyError::Corrupt(_))), "{} of {} bytes: {:?}",
            truncated.len(), full.len(), decoded.map(|b| b.len()));
    }

    #[test]
    fn garbage_is_answered_without_panicking(
        encoding in compressed(),
        garbage in vec(any::<u8>(), 0..2048),
        limit in 1usize..4096,
    ) {
        if let Ok(out) = decode(encoding, Bytes::from(garbage), limit) {
            prop_assert!(out.len() <= limit);
        }
    }

    #[test]
    fn corrupted_compressed_bodies_are_an_error_or_the_original(
        encoding in compressed(),
        data in body(4096),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut damaged = encode(encoding, &data);
        let i = at.index(damaged.len());
        damaged[i] ^= flip;
        // A flipped bit in a gzip header flag or the like may be harmless; a changed
        // body never is: the checksums catch it.
        if let Ok(out) = decode(encoding, Bytes::from(damaged), 1 << 20) {
            prop_assert_eq!(&out[..], &data[..]);
        }
    }

    #[test]
    fn output_is_capped_at_the_limit(encoding in encoding(), data in body(8192), limit in 1usize..8192) {
        let decoded = decode(encoding, Bytes::from(encode(encoding, &data)), limit);
        if data.len() > limit {
            prop_assert_eq!(decoded, Err(BodyError::TooLarge { drained: true }));
        } else {
            prop_assert_eq!(decoded.as_deref(), Ok(&data[..]));
        }
    }
}
