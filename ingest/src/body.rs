//! Reading request bodies within `max_body_bytes` and before the request's deadline:
//! the cap is enforced while streaming (chunked bodies, lying Content-Length) and again
//! after Content-Encoding is undone, so a small gzip bomb cannot expand past the cap.
//! Large compressed bodies are inflated on the blocking pool, off the async workers.

use std::{io::Read, time::Duration};

use tokio::time::Instant;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use flate2::read::{MultiGzDecoder, ZlibDecoder};
use http::{HeaderMap, header};
use http_body_util::BodyExt;

/// How a body was compressed by the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEncoding {
    Identity,
    Gzip,
    Deflate,
}

impl ContentEncoding {
    /// The request's single Content-Encoding; `Err` names an unsupported one.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, String> {
        let Some(value) = headers.get(header::CONTENT_ENCODING) else { return Ok(Self::Identity) };
        let text = value.to_str().unwrap_or_default().trim().to_ascii_lowercase();
        match text.as_str() {
            "" | "identity" => Ok(Self::Identity),
            "gzip" | "x-gzip" => Ok(Self::Gzip),
            "deflate" => Ok(Self::Deflate),
            _ => Err("Content-Encoding must be gzip, deflate or identity".into()),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Over the cap. `drained` says whether the rest was read, so the connection can be reused.
    TooLarge { drained: bool },
    /// The client went away or the stream broke.
    Read(String),
    /// The body had not fully arrived by the deadline (a stalled or very slow client).
    TimedOut,
    /// The compressed stream is corrupt.
    Corrupt(String),
}

/// How much of an oversized body is read and discarded so that the connection stays
/// usable; past this the connection is closed instead.
fn drain_budget(limit: usize) -> usize {
    limit.saturating_mul(4).max(1 << 20)
}

/// How long an oversized body is read and discarded at most (see [`drain_budget`]).
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// The body's Content-Length, when it has a valid one.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
}

/// How many bytes of body a request may come to hold, reserved from
/// `ingest.max_in_flight_bytes` before its body is read: its Content-Length, or `limit`
/// when it declares none (a chunked body) or more (it is cut off at `limit`); for a
/// compressed body `limit` more, for its inflated form. Once the body is decoded the
/// request keeps only its size.
pub fn reservation(headers: &HeaderMap, limit: usize) -> usize {
    let declared = declared_length(headers).map_or(limit, |len| len.min(limit as u64) as usize);
    match ContentEncoding::from_headers(headers) {
        Ok(ContentEncoding::Identity) => declared,
        // An unsupported encoding is refused (415) before its body is read.
        _ => declared + limit,
    }
}

/// Reads the whole body if it is at most `limit` bytes and arrives before `deadline`.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    deadline: Instant,
) -> Result<Bytes, BodyError> {
    tokio::time::timeout_at(deadline, read_within_limit(headers, body, limit, deadline))
        .await
        .unwrap_or(Err(BodyError::TimedOut))
}

async fn read_within_limit(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    deadline: Instant,
) -> Result<Bytes, BodyError> {
    // Draining never takes the answer past the deadline.
    let drain_until = deadline.min(Instant::now() + DRAIN_TIME);
    if let Some(len) = declared_length(headers)
        && len > limit as u64
    {
        // With `Expect: 100-continue` the client has not sent the body and will not.
        let expects_continue = headers.contains_key(header::EXPECT);
        let drained = !expects_continue
            && len <= drain_budget(limit) as u64
            && drain(body, drain_budget(limit), drain_until).await;
        return Err(BodyError::TooLarge { drained });
    }
    let mut received = Bytes::new();
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        if received.len() + data.len() > limit {
            let budget = drain_budget(limit).saturating_sub(received.len() + data.len());
            return Err(BodyError::TooLarge { drained: drain(body, budget, drain_until).await });
        }
        received = if received.is_empty() {
            // A body in one frame (most webhooks) is kept as hyper read it, without a copy.
            data
        } else {
            // Copies hyper's first frame once; after that the buffer is ours and grows in place.
            let mut joined = BytesMut::from(received);
            joined.extend_from_slice(&data);
            joined.freeze()
        };
    }
    Ok(received)
}

/// Reads and discards up to `budget` bytes until `until`; true when the body ended within both.
async fn drain(mut body: Body, budget: usize, until: Instant) -> bool {
    let mut seen = 0usize;
    let read_rest = async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                if seen > budget {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout_at(until, read_rest).await.unwrap_or(false)
}

/// Compressed bodies up to this size are inflated on the calling worker: deflate expands
/// at most about 1032:1, so their output stays near 1 MiB and takes well under a
/// millisecond. Larger ones (and gzip bombs against a large cap) go to the blocking pool,
/// so that one sender's big body does not stall the other requests on the worker.
const INLINE_DECODE_MAX: usize = 1024;

/// [`decode`], on the blocking pool when `raw` is large enough to take real CPU time.
pub async fn decode_off_worker(encoding: ContentEncoding, raw: Bytes, limit: usize) -> Result<Bytes, BodyError> {
    if encoding == ContentEncoding::Identity || raw.len() <= INLINE_DECODE_MAX {
        return decode(encoding, raw, limit);
    }
    tokio::task::spawn_blocking(move || decode(encoding, raw, limit))
        .await
        .map_err(|e| BodyError::Corrupt(format!("the body could not be decompressed: {e}")))?
}

/// Undoes `encoding`, refusing output over `limit` bytes.
pub fn decode(encoding: ContentEncoding, raw: Bytes, limit: usize) -> Result<Bytes, BodyError> {
    let reader: Box<dyn Read + '_> = match encoding {
        // `read_limited` has capped it already; checked here too, so that the cap holds
        // for every encoding whoever calls this.
        ContentEncoding::Identity if raw.len() > limit => return Err(BodyError::TooLarge { drained: true }),
        ContentEncoding::Identity => return Ok(raw),
        ContentEncoding::Gzip => Box::new(MultiGzDecoder::new(&raw[..])),
        ContentEncoding::Deflate => Box::new(ZlibDecoder::new(&raw[..])),
    };
    let mut out = Vec::with_capacity((raw.len() * 4).min(limit + 1));
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::Corrupt(format!("the body could not be decompressed: {e}")))?;
    if out.len() > limit {
        return Err(BodyError::TooLarge { drained: true });
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::{Compression, write::GzEncoder};
    use futures::StreamExt;

    use super::*;

    fn gzip(data: &[u8]) -> Bytes {
        let mut e = GzEncoder::new(Vec::new(), Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap().into()
    }

    #[test]
    fn gzip_bombs_stop_at_the_cap() {
        let bomb = gzip(&vec![b' '; 50 << 20]);
        assert!(bomb.len() < 100 << 10, "50 MiB compresses to {} bytes", bomb.len());
        assert_eq!(decode(ContentEncoding::Gzip, bomb, 1 << 20), Err(BodyError::TooLarge { drained: true }));
        let ok = gzip(br#"{"a":1}"#);
        assert_eq!(&decode(ContentEncoding::Gzip, ok, 1 << 20).unwrap()[..], br#"{"a":1}"#);
        assert!(matches!(
            decode(ContentEncoding::Gzip, Bytes::from_static(b"not gzip"), 100),
            Err(BodyError::Corrupt(_))
        ));
    }

    #[tokio::test]
    async fn streamed_bodies_over_the_cap_are_refused_whatever_the_content_length_says() {
        let chunks: Vec<Result<Bytes, std::io::Error>> = (0..10).map(|_| Ok(Bytes::from(vec![b'x'; 300]))).collect();
        let body = Body::from_stream(futures::stream::iter(chunks));
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, "10".parse().unwrap());
        assert_eq!(read_limited(&headers, body, 1000, later()).await, Err(BodyError::TooLarge { drained: true }));
        let body = Body::from(vec![b'x'; 1000]);
        assert_eq!(read_limited(&HeaderMap::new(), body, 1000, later()).await.unwrap().len(), 1000);
    }

    #[tokio::test]
    async fn bodies_in_several_frames_are_joined_in_order() {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            [&b"{\"a\":"[..], b"[1,", b"2]}"].into_iter().map(|c| Ok(Bytes::from_static(c))).collect();
        let body = Body::from_stream(futures::stream::iter(chunks));
        assert_eq!(&read_limited(&HeaderMap::new(), body, 100, later()).await.unwrap()[..], br#"{"a":[1,2]}"#);
        let empty = read_limited(&HeaderMap::new(), Body::empty(), 100, later()).await.unwrap();
        assert!(empty.is_empty());
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[tokio::test]
    async fn a_body_that_stalls_times_out_at_the_deadline() {
        let first: Result<Bytes, std::io::Error> = Ok(Bytes::from_static(b"{\"a\":"));
        let stalled = futures::stream::iter([first]).chain(futures::stream::pending());
        let started = Instant::now();
        let deadline = started + Duration::from_millis(300);
        let got = read_limited(&HeaderMap::new(), Body::from_stream(stalled), 100, deadline).await;
        assert_eq!(got, Err(BodyError::TimedOut));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(2), "{took:?}");
    }

    /// On a single-threaded runtime, other tasks must still run while a large body is
    /// inflated: the inflating happens on the blocking pool.
    #[tokio::test(flavor = "current_thread")]
    async fn large_compressed_bodies_are_inflated_off_the_worker() {
        let bomb = gzip(&vec![b' '; 60 << 20]);
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        });
        tokio::task::yield_now().await;
        let before = ticks.load(std::sync::atomic::Ordering::SeqCst);
        let started = std::time::Instant::now();
        let out = decode_off_worker(ContentEncoding::Gzip, bomb, 64 << 20).await.unwrap();
        let took = started.elapsed();
        let during = ticks.load(std::sync::atomic::Ordering::SeqCst) - before;
        ticker.abort();
        assert_eq!(out.len(), 60 << 20);
        assert!(during >= 3, "the worker ran {during} timer ticks during {took:?} of inflating");
    }

    #[test]
    fn a_body_reserves_what_it_declares_or_the_cap() {
        let headers = |pairs: &[(header::HeaderName, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(k, v.parse().unwrap());
            }
            h
        };
        let len = |n: &'static str| (header::CONTENT_LENGTH, n);
        assert_eq!(reservation(&headers(&[len("700")]), 1000), 700);
        assert_eq!(reservation(&headers(&[len("0")]), 1000), 0);
        assert_eq!(reservation(&headers(&[len("5000")]), 1000), 1000, "refused at the cap");
        assert_eq!(reservation(&headers(&[]), 1000), 1000, "chunked: up to the cap");
        let gzip = (header::CONTENT_ENCODING, "gzip");
        assert_eq!(reservation(&headers(&[len("300"), gzip.clone()]), 1000), 1300, "and its inflated form");
        assert_eq!(reservation(&headers(&[gzip]), 1000), 2000);
        assert_eq!(reservation(&headers(&[len("300"), (header::CONTENT_ENCODING, "identity")]), 1000), 300);
    }

    #[test]
    fn content_encodings() {
        let mut h = HeaderMap::new();
        assert_eq!(ContentEncoding::from_headers(&h), Ok(ContentEncoding::Identity));
        h.insert(header::CONTENT_ENCODING, "GZIP".parse().unwrap());
        assert_eq!(ContentEncoding::from_headers(&h), Ok(ContentEncoding::Gzip));
        h.insert(header::CONTENT_ENCODING, "br".parse().unwrap());
        assert!(ContentEncoding::from_headers(&h).is_err());
    }
}
