//! Reading request bodies within `max_body_bytes`: enforced while streaming (chunked
//! bodies, lying Content-Length) and again after Content-Encoding is undone, so a small
//! gzip bomb cannot expand past the cap.

use std::{io::Read, time::Duration};

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
    /// The compressed stream is corrupt.
    Corrupt(String),
}

/// How much of an oversized body is read and discarded so that the connection stays
/// usable; past this the connection is closed instead.
fn drain_budget(limit: usize) -> usize {
    limit.saturating_mul(4).max(1 << 20)
}

/// Reads the whole body if it is at most `limit` bytes.
pub async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared
        && len > limit as u64
    {
        // With `Expect: 100-continue` the client has not sent the body and will not.
        let expects_continue = headers.contains_key(header::EXPECT);
        let drained = !expects_continue && len <= drain_budget(limit) as u64 && drain(body, drain_budget(limit)).await;
        return Err(BodyError::TooLarge { drained });
    }
    let mut received = Bytes::new();
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        if received.len() + data.len() > limit {
            let budget = drain_budget(limit).saturating_sub(received.len() + data.len());
            return Err(BodyError::TooLarge { drained: drain(body, budget).await });
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

/// Reads and discards up to `budget` bytes; true when the body ended within it.
async fn drain(mut body: Body, budget: usize) -> bool {
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
    tokio::time::timeout(Duration::from_secs(2), read_rest).await.unwrap_or(false)
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
        assert_eq!(read_limited(&headers, body, 1000).await, Err(BodyError::TooLarge { drained: true }));
        let body = Body::from(vec![b'x'; 1000]);
        assert_eq!(read_limited(&HeaderMap::new(), body, 1000).await.unwrap().len(), 1000);
    }

    #[tokio::test]
    async fn bodies_in_several_frames_are_joined_in_order() {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            [&b"{\"a\":"[..], b"[1,", b"2]}"].into_iter().map(|c| Ok(Bytes::from_static(c))).collect();
        let body = Body::from_stream(futures::stream::iter(chunks));
        assert_eq!(&read_limited(&HeaderMap::new(), body, 100).await.unwrap()[..], br#"{"a":[1,2]}"#);
        let empty = read_limited(&HeaderMap::new(), Body::empty(), 100).await.unwrap();
        assert!(empty.is_empty());
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
