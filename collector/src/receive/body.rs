//! Reading an OTLP/HTTP request body under the limits: a size cap on the
//! bytes received and again on the bytes decompressed (so a small gzip or
//! zstd "bomb" cannot expand past `max_request_bytes`), and a deadline on
//! receiving it (so a client trickling a body cannot hold a slot forever).

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use tokio_stream::StreamExt;

/// A `Content-Encoding` the receiver decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// No encoding (absent header or `identity`).
    Identity,
    /// `gzip`.
    Gzip,
    /// `zstd`.
    Zstd,
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// `Content-Encoding` names something else (415).
    #[error("Content-Encoding {0:?} not supported: use gzip, zstd or none")]
    UnknownEncoding(String),
    /// Over the cap, as sent or once decompressed (413).
    #[error("request body over {max} bytes{}", if *.decompressed { " once decompressed" } else { "" })]
    TooLarge {
        /// The cap.
        max: usize,
        /// Whether the cap was hit while decompressing.
        decompressed: bool,
    },
    /// Not received within the deadline (408).
    #[error("request body not received within {0:?}")]
    Timeout(Duration),
    /// The connection failed mid-body, or the compressed stream is corrupt (400).
    #[error("unreadable request body: {0}")]
    Unreadable(String),
}

impl Encoding {
    /// The encoding a request declares.
    pub fn of(headers: &HeaderMap) -> Result<Encoding, BodyError> {
        let Some(v) = headers.get(header::CONTENT_ENCODING) else {
            return Ok(Encoding::Identity);
        };
        let name = v.to_str().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("identity") || name.is_empty() {
            Ok(Encoding::Identity)
        } else if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            Ok(Encoding::Gzip)
        } else if name.eq_ignore_ascii_case("zstd") {
            Ok(Encoding::Zstd)
        } else {
            let shown = String::from_utf8_lossy(v.as_bytes());
            Err(BodyError::UnknownEncoding(
                audit_schema::limits::clip(&shown, 64).to_owned(),
            ))
        }
    }
}

/// Bytes of a body over the cap read and discarded before the 413 goes out.
/// Answering while the client still sends, then closing, makes the kernel
/// reset the connection, and the client usually loses the 413 with it: it
/// sees a network error and resends the same request, which never fits
/// (audit-layer splits a request only on the 413). Draining costs bandwidth
/// the client was spending anyway, bounded here and by the body deadline,
/// and no memory.
const DRAIN_BYTES: usize = 64 << 20;

/// Receives a body of at most `max` bytes within `deadline`.
pub async fn receive(body: Body, max: usize, deadline: Duration) -> Result<Vec<u8>, BodyError> {
    let mut frames = body.into_data_stream();
    let mut over = false;
    let read = async {
        let mut out = Vec::new();
        while let Some(chunk) = frames.next().await {
            let chunk = chunk.map_err(|e| BodyError::Unreadable(e.to_string()))?;
            if out.len() + chunk.len() > max {
                over = true;
                break;
            }
            out.extend_from_slice(&chunk);
        }
        if over {
            let mut drained = 0usize;
            while drained < DRAIN_BYTES {
                match frames.next().await {
                    Some(Ok(chunk)) => drained += chunk.len(),
                    _ => break,
                }
            }
        }
        Ok(out)
    };
    let read = tokio::time::timeout(deadline, read).await;
    if over {
        // Over the cap is the answer, even when the drain ran out of time.
        return Err(BodyError::TooLarge {
            max,
            decompressed: false,
        });
    }
    read.unwrap_or(Err(BodyError::Timeout(deadline)))
}

/// Largest zstd window accepted for a `max`-byte body, as a power of two:
/// a frame may declare a window up to 2^31 bytes, which the decoder would
/// allocate. Enough for the body's size, and never less than 2^23, the
/// largest window zstd's levels 1-19 choose when the encoder streams
/// without knowing the size; never more than libzstd's own default, 2^27.
fn zstd_window_log(max: usize) -> u32 {
    let bits = max
        .max(1)
        .checked_next_power_of_two()
        .map_or(usize::BITS, |p| p.trailing_zeros());
    bits.clamp(23, 27)
}

/// Decodes `raw` to at most `max` bytes.
pub fn decode(encoding: Encoding, raw: Vec<u8>, max: usize) -> Result<Vec<u8>, BodyError> {
    let reader: Box<dyn Read + '_> = match encoding {
        Encoding::Identity => return Ok(raw),
        Encoding::Gzip => Box::new(flate2::read::GzDecoder::new(&raw[..])),
        Encoding::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(&raw[..])
                .map_err(|e| BodyError::Unreadable(format!("bad zstd body: {e}")))?;
            d.window_log_max(zstd_window_log(max))
                .map_err(|e| BodyError::Unreadable(format!("bad zstd body: {e}")))?;
            Box::new(d)
        }
    };
    let mut out = Vec::new();
    // One byte past the cap tells "exactly max" from "more" without
    // inflating the rest of a bomb.
    let read = reader.take(max as u64 + 1).read_to_end(&mut out);
    if let Err(e) = read {
        // zstd refuses a frame asking for a window over `window_log_max`:
        // a memory cap like the size cap (honest encoders stay within it,
        // see `zstd_window_log`), not corruption.
        if encoding == Encoding::Zstd && e.to_string().contains("too much memory") {
            return Err(BodyError::TooLarge {
                max,
                decompressed: true,
            });
        }
        return Err(BodyError::Unreadable(format!("bad {encoding:?} body: {e}")));
    }
    if out.len() > max {
        return Err(BodyError::TooLarge {
            max,
            decompressed: true,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn bombs_stop_at_the_cap_and_honest_bodies_pass() {
        let zeros = vec![0u8; 1 << 20];
        for (enc, packed) in [
            (Encoding::Gzip, gzip(&zeros)),
            (Encoding::Zstd, zstd::encode_all(&zeros[..], 3).unwrap()),
        ] {
            assert!(packed.len() < 10_000, "{enc:?} compresses zeros");
            assert!(matches!(
                decode(enc, packed.clone(), 1000),
                Err(BodyError::TooLarge {
                    max: 1000,
                    decompressed: true
                })
            ));
            assert_eq!(decode(enc, packed, 1 << 20).unwrap().len(), 1 << 20);
        }
        assert!(matches!(
            decode(Encoding::Zstd, b"not zstd".to_vec(), 1000),
            Err(BodyError::Unreadable(_))
        ));
        // A frame declaring a window over the limit is refused as too
        // large, even when its content is within the size cap.
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        e.window_log(25).unwrap();
        e.long_distance_matching(true).unwrap();
        e.write_all(&zeros).unwrap();
        let wide = e.finish().unwrap();
        assert!(matches!(
            decode(Encoding::Zstd, wide, 2 << 20),
            Err(BodyError::TooLarge { .. })
        ));
    }

    #[test]
    fn encodings_are_named_or_refused() {
        let mut h = HeaderMap::new();
        assert_eq!(Encoding::of(&h).unwrap(), Encoding::Identity);
        h.insert(header::CONTENT_ENCODING, "ZSTD".parse().unwrap());
        assert_eq!(Encoding::of(&h).unwrap(), Encoding::Zstd);
        h.insert(header::CONTENT_ENCODING, "br".parse().unwrap());
        assert!(matches!(Encoding::of(&h), Err(BodyError::UnknownEncoding(e)) if e == "br"));
    }

    #[test]
    fn zstd_window_follows_the_cap() {
        assert_eq!(zstd_window_log(16 << 20), 24);
        assert_eq!(zstd_window_log(1000), 23);
        assert_eq!(zstd_window_log(usize::MAX), 27);
    }
}
