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

use crate::in_flight::Taken;

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
    /// `ingest.max_in_flight_bytes` had no room for the bytes that arrived (or for the
    /// inflated form of a compressed body).
    NoRoom,
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

/// The body bytes a request announces: its Content-Length, at most `limit` (a larger one
/// is refused at the cap); 0 for a chunked body, which announces none. Checked against the
/// free room of `ingest.max_in_flight_bytes` before the body is read, so that a body that
/// cannot fit is turned away unsent. Nothing is reserved for it: a request holds room only
/// for the bytes that have arrived ([`read_limited`]), so a client that announces a large
/// body and sends it slowly holds only what it sent.
pub fn announced(headers: &HeaderMap, limit: usize) -> usize {
    declared_length(headers).map_or(0, |len| len.min(limit as u64) as usize)
}

/// Reads the whole body if it is at most `limit` bytes and arrives before `deadline`,
/// growing `room` by each frame's bytes as they arrive ([`BodyError::NoRoom`] when
/// `ingest.max_in_flight_bytes` has none left).
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    deadline: Instant,
    room: &mut Taken<'_>,
) -> Result<Bytes, BodyError> {
    tokio::time::timeout_at(deadline, read_within_limit(headers, body, limit, deadline, room))
        .await
        .unwrap_or(Err(BodyError::TimedOut))
}

async fn read_within_limit(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    deadline: Instant,
    room: &mut Taken<'_>,
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
        if !room.try_grow(data.len()) {
            return Err(BodyError::NoRoom);
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
    use crate::in_flight::Budget;

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
        assert_eq!(
            read_limited(&headers, body, 1000, later(), &mut ROOMY.share()).await,
            Err(BodyError::TooLarge { drained: true })
        );
        let body = Body::from(vec![b'x'; 1000]);
        assert_eq!(read_limited(&HeaderMap::new(), body, 1000, later(), &mut ROOMY.share()).await.unwrap().len(), 1000);
    }

    #[tokio::test]
    async fn bodies_in_several_frames_are_joined_in_order() {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            [&b"{\"a\":"[..], b"[1,", b"2]}"].into_iter().map(|c| Ok(Bytes::from_static(c))).collect();
        let body = Body::from_stream(futures::stream::iter(chunks));
        assert_eq!(
            &read_limited(&HeaderMap::new(), body, 100, later(), &mut ROOMY.share()).await.unwrap()[..],
            br#"{"a":[1,2]}"#
        );
        let empty = read_limited(&HeaderMap::new(), Body::empty(), 100, later(), &mut ROOMY.share()).await.unwrap();
        assert!(empty.is_empty());
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    /// Room enough for any body: for the tests that are not about `max_in_flight_bytes`.
    static ROOMY: Budget = Budget::new(usize::MAX);

    /// A body holds room for the bytes that arrived, frame by frame, not for what it
    /// announces; a frame that does not fit is refused and takes nothing.
    #[tokio::test]
    async fn a_body_holds_room_for_the_bytes_that_arrived() {
        let budget = Budget::new(1000);
        let (send, chunks) = futures::channel::mpsc::unbounded::<Result<Bytes, std::io::Error>>();
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, "900".parse().unwrap());
        let reading = tokio::spawn(async move {
            let mut room = budget.share();
            let got = read_limited(&headers, Body::from_stream(chunks), 1000, later(), &mut room).await;
            (got.map(|b| b.len()), budget.in_use())
        });
        send.unbounded_send(Ok(Bytes::from(vec![b'x'; 400]))).unwrap();
        send.unbounded_send(Ok(Bytes::from(vec![b'x'; 500]))).unwrap();
        drop(send);
        assert_eq!(reading.await.unwrap(), (Ok(900), 900));

        let budget = Budget::new(1000);
        let other = budget.try_take(600).unwrap();
        let mut room = budget.share();
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            vec![Ok(Bytes::from(vec![b'x'; 300])), Ok(Bytes::from(vec![b'x'; 200]))];
        let got =
            read_limited(&HeaderMap::new(), Body::from_stream(futures::stream::iter(chunks)), 1000, later(), &mut room)
                .await;
        assert_eq!(got, Err(BodyError::NoRoom));
        assert_eq!(budget.in_use(), 900, "the first frame is held, the second refused");
        drop((room, other));
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn a_body_that_stalls_times_out_at_the_deadline() {
        let first: Result<Bytes, std::io::Error> = Ok(Bytes::from_static(b"{\"a\":"));
        let stalled = futures::stream::iter([first]).chain(futures::stream::pending());
        let started = Instant::now();
        let deadline = started + Duration::from_millis(300);
        let got = read_limited(&HeaderMap::new(), Body::from_stream(stalled), 100, deadline, &mut ROOMY.share()).await;
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
    fn a_body_announces_its_content_length_up_to_the_cap() {
        let headers = |pairs: &[(header::HeaderName, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(k, v.parse().unwrap());
            }
            h
        };
        let len = |n: &'static str| (header::CONTENT_LENGTH, n);
        assert_eq!(announced(&headers(&[len("700")]), 1000), 700);
        assert_eq!(announced(&headers(&[len("0")]), 1000), 0);
        assert_eq!(announced(&headers(&[len("5000")]), 1000), 1000, "refused at the cap");
        assert_eq!(announced(&headers(&[]), 1000), 0, "chunked: announces nothing");
        assert_eq!(announced(&headers(&[len("300"), (header::CONTENT_ENCODING, "gzip")]), 1000), 300);
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
