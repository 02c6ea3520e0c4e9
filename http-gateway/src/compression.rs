//! Compressed bodies, both ways, in one code path (async-compression's streaming codecs):
//! `gzip`, `deflate`, `br`, `zstd` and `bzip2`.
//!
//! - **Replies** honour `Accept-Encoding`: the encoding with the highest q-value wins; on a
//!   tie the gateway's preference ([`Encoding::PREFERENCE`]) decides; `*` stands for `gzip`.
//!   Bodies known to be smaller than [`MIN_SIZE`] are sent as they are, and so are replies
//!   already encoded, WebSocket upgrades, `HEAD`, 204 and 304.
//! - **Request bodies** may carry `Content-Encoding` (one coding or a list, applied in
//!   order). They are decoded before any handler sees them, and the *decoded* size counts
//!   against the body limit: a decompression bomb is refused with 413 as soon as its output
//!   passes the limit, without ever holding more than the limit in memory. An unknown coding
//!   is 415 with the codings the gateway takes in `Accept-Encoding` (RFC 7694).
//!
//! `bzip2` has no registered HTTP token: the gateway takes `bzip2`, `x-bzip2` and Qorus's
//! `bzip`, and answers with the token the client used. `deflate` replies are zlib-wrapped
//! (RFC 9110); a `deflate` request body may be zlib-wrapped or raw (RFC 1951, as Qorus
//! writes it): the first two bytes tell which.

use std::io;
use std::pin::Pin;

use async_compression::tokio::bufread as codec;
use async_compression::Level;
use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, BufReader};
use tokio_util::io::{ReaderStream, StreamReader};

use crate::errors::ApiError;
use crate::format;

/// Replies whose body is known to be smaller than this are not compressed.
pub const MIN_SIZE: u64 = 1024;
/// The most codings one request body may be wrapped in.
const MAX_CODINGS: usize = 3;
/// zstd frames may ask for a window up to this (2^24 = 16 MiB, the body limit): a larger
/// one would make the decoder allocate it before a byte is out.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;
/// What `Accept-Encoding` says in a 415.
const ACCEPTED: &str = "gzip, deflate, br, zstd, bzip2, x-bzip2, bzip, identity";

/// A content coding the gateway reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gzip,
    Deflate,
    Brotli,
    Zstd,
    Bzip2,
}

impl Encoding {
    /// Which encoding wins when the client rates several the same: the best ratio for
    /// the time first (bzip2 is slow and rarely wanted unless asked for alone).
    pub const PREFERENCE: [Encoding; 5] = [
        Encoding::Zstd,
        Encoding::Brotli,
        Encoding::Gzip,
        Encoding::Deflate,
        Encoding::Bzip2,
    ];

    /// The encoding a token names, and the token to answer it with.
    pub fn from_token(token: &str) -> Option<(Encoding, &'static str)> {
        let token = token.trim();
        [
            ("gzip", Encoding::Gzip, "gzip"),
            ("x-gzip", Encoding::Gzip, "gzip"),
            ("deflate", Encoding::Deflate, "deflate"),
            ("br", Encoding::Brotli, "br"),
            ("zstd", Encoding::Zstd, "zstd"),
            ("bzip2", Encoding::Bzip2, "bzip2"),
            ("x-bzip2", Encoding::Bzip2, "x-bzip2"),
            ("bzip", Encoding::Bzip2, "bzip"),
        ]
        .into_iter()
        .find(|(name, _, _)| token.eq_ignore_ascii_case(name))
        .map(|(_, encoding, answer)| (encoding, answer))
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
            Encoding::Bzip2 => "bzip2",
        }
    }

    fn rank(self) -> usize {
        Self::PREFERENCE
            .iter()
            .position(|e| *e == self)
            .unwrap_or(usize::MAX)
    }
}

/// A q-value in thousandths (`q=0.5` is 500); `None` when malformed.
fn qvalue(text: &str) -> Option<u16> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The encoding to answer `Accept-Encoding` with, and the token for `Content-Encoding`;
/// `None`: send the body as it is.
pub fn negotiate(accept: &str) -> Option<(Encoding, &'static str)> {
    let mut named: Vec<(Encoding, &'static str, u16)> = Vec::new();
    let mut star = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let token = parts.next().unwrap_or_default().trim();
        if token.is_empty() {
            continue;
        }
        let mut q = Some(1000);
        for parameter in parts {
            if let Some((name, value)) = parameter.split_once('=') {
                if name.trim().eq_ignore_ascii_case("q") {
                    q = qvalue(value);
                }
            }
        }
        // A malformed q-value makes the item mean nothing.
        let Some(q) = q else { continue };
        if token == "*" {
            star = star.or(Some(q));
        } else if let Some((encoding, answer)) = Encoding::from_token(token) {
            if !named.iter().any(|(e, _, _)| *e == encoding) {
                named.push((encoding, answer, q));
            }
        }
    }
    if let Some(q) = star {
        if !named.iter().any(|(e, _, _)| *e == Encoding::Gzip) {
            named.push((Encoding::Gzip, "gzip", q));
        }
    }
    named
        .into_iter()
        .filter(|(_, _, q)| *q > 0)
        .max_by_key(|(encoding, _, q)| (*q, std::cmp::Reverse(encoding.rank())))
        .map(|(encoding, answer, _)| (encoding, answer))
}

/// Middleware: decodes a compressed request body, and compresses the reply as the client
/// accepts.
pub async fn negotiate_bodies(request: Request, next: Next) -> Response {
    let chosen = request
        .headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .and_then(negotiate);
    let head = request.method() == Method::HEAD;
    let reply_format = format::reply_format(request.headers());
    let request = match decode_request(request, crate::rest::MAX_BODY).await {
        Ok(request) => request,
        Err(error) => {
            let mut response = format::respond_error(reply_format, &error);
            if error.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
                response
                    .headers_mut()
                    .insert(header::ACCEPT_ENCODING, HeaderValue::from_static(ACCEPTED));
            }
            return response;
        }
    };
    let response = next.run(request).await;
    compress(response, chosen, head)
}

/// The codings of a request's `Content-Encoding`, in the order they were applied.
fn request_codings(headers: &HeaderMap) -> Result<Vec<Encoding>, ApiError> {
    let mut codings = Vec::new();
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let text = value.to_str().map_err(|_| {
            ApiError::new("UNSUPPORTED-ENCODING", "Content-Encoding is not ASCII text")
        })?;
        for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if token.eq_ignore_ascii_case("identity") {
                continue;
            }
            let (encoding, _) = Encoding::from_token(token).ok_or_else(|| {
                ApiError::new(
                    "UNSUPPORTED-ENCODING",
                    format!(
                        "the request body is {token:?}-encoded; the gateway reads gzip, \
                         deflate, br, zstd and bzip2 (bzip2, x-bzip2 or bzip)"
                    ),
                )
            })?;
            codings.push(encoding);
        }
    }
    if codings.len() > MAX_CODINGS {
        return Err(ApiError::new(
            "UNSUPPORTED-ENCODING",
            format!(
                "the request body is wrapped in {} codings; at most {MAX_CODINGS} are taken",
                codings.len()
            ),
        ));
    }
    Ok(codings)
}

fn too_large(limit: usize, what: &str) -> ApiError {
    ApiError::new(
        "PAYLOAD-TOO-LARGE",
        format!("the request body is larger than {limit} bytes{what}"),
    )
}

/// Whether a read failed because the raw body passed its limit.
fn is_length_limit(error: &io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.is::<http_body_util::LengthLimitError>())
}

/// The request with its body decoded (and `Content-Encoding` gone), when it was encoded.
/// Both the body as sent and the decoded body are held to `limit` bytes.
pub async fn decode_request(request: Request, limit: usize) -> Result<Request, ApiError> {
    let codings = request_codings(request.headers())?;
    if codings.is_empty() {
        return Ok(request);
    }
    let (mut parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit, ""));
    }
    let decoded = decode(&codings, body, limit).await?;
    parts.headers.remove(header::CONTENT_ENCODING);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, decoded.len().into());
    Ok(Request::from_parts(parts, Body::from(decoded)))
}

/// Decodes `body` (encoded with `codings`, in that order), at most `limit` bytes of it in
/// and out.
pub async fn decode(codings: &[Encoding], body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let names: Vec<&str> = codings.iter().map(|c| c.name()).collect();
    let names = names.join(", then ");
    let limited = http_body_util::Limited::new(body, limit);
    let stream = http_body_util::BodyDataStream::new(limited).map(|r| r.map_err(io::Error::other));
    let mut reader: Pin<Box<dyn AsyncBufRead + Send>> = Box::pin(StreamReader::new(stream));
    let malformed = |e: io::Error| {
        if is_length_limit(&e) {
            too_large(limit, "")
        } else {
            ApiError::new(
                "BAD-REQUEST",
                format!("the request body is not valid {names} data: {e}"),
            )
        }
    };
    for coding in codings.iter().rev() {
        let decoder = decoder(*coding, reader).await.map_err(malformed)?;
        reader = Box::pin(BufReader::new(decoder));
    }
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .await
        .map_err(malformed)?;
    if out.len() > limit {
        return Err(too_large(
            limit,
            &format!(" once decoded (it was sent {names}-compressed)"),
        ));
    }
    Ok(out)
}

async fn decoder(
    coding: Encoding,
    inner: Pin<Box<dyn AsyncBufRead + Send>>,
) -> io::Result<Pin<Box<dyn AsyncRead + Send>>> {
    Ok(match coding {
        Encoding::Gzip => {
            let mut d = codec::GzipDecoder::new(inner);
            d.multiple_members(true);
            Box::pin(d)
        }
        Encoding::Deflate => deflate_decoder(inner).await?,
        Encoding::Brotli => Box::pin(codec::BrotliDecoder::new(inner)),
        Encoding::Zstd => {
            let mut d = codec::ZstdDecoder::with_params(
                inner,
                &[async_compression::zstd::DParameter::window_log_max(
                    ZSTD_WINDOW_LOG_MAX,
                )],
            );
            d.multiple_members(true);
            Box::pin(d)
        }
        Encoding::Bzip2 => {
            let mut d = codec::BzDecoder::new(inner);
            d.multiple_members(true);
            Box::pin(d)
        }
    })
}

/// `deflate` as HTTP means it (zlib, RFC 1950) or as Qorus writes it (raw, RFC 1951): a
/// zlib stream starts with a header whose two bytes are a multiple of 31.
async fn deflate_decoder(
    mut inner: Pin<Box<dyn AsyncBufRead + Send>>,
) -> io::Result<Pin<Box<dyn AsyncRead + Send>>> {
    let mut head = [0u8; 2];
    let mut got = 0;
    while got < head.len() {
        let n = inner.read(&mut head[got..]).await?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let zlib = got == 2 && head[0] & 0x0f == 8 && u16::from_be_bytes(head) % 31 == 0;
    let whole = BufReader::new(io::Cursor::new(head[..got].to_vec()).chain(inner));
    Ok(if zlib {
        Box::pin(codec::ZlibDecoder::new(whole))
    } else {
        Box::pin(codec::DeflateDecoder::new(whole))
    })
}

/// Whether a reply of this kind may be compressed at all (its size aside).
fn compressible(response: &Response, head: bool) -> bool {
    let status = response.status();
    if head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status == StatusCode::PARTIAL_CONTENT
    {
        return false;
    }
    let headers = response.headers();
    if headers.contains_key(header::CONTENT_ENCODING) || headers.contains_key(header::CONTENT_RANGE)
    {
        return false;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    ![
        "application/grpc",
        "text/event-stream",
        "image/",
        "audio/",
        "video/",
        "application/gzip",
        "application/zstd",
        "application/zip",
        "application/x-bzip2",
    ]
    .iter()
    .any(|t| content_type.starts_with(t))
}

/// The reply, compressed with `chosen` when it is worth it.
pub fn compress(
    mut response: Response,
    chosen: Option<(Encoding, &'static str)>,
    head: bool,
) -> Response {
    if !compressible(&response, head) {
        return response;
    }
    let headers = response.headers_mut();
    let varies = headers.get_all(header::VARY).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("accept-encoding"))
    });
    if !varies {
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    let Some((encoding, token)) = chosen else {
        return response;
    };
    if response
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n < MIN_SIZE)
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_ENCODING, HeaderValue::from_static(token));
    Response::from_parts(parts, encode(encoding, body))
}

/// `body`, compressed as it streams.
pub fn encode(encoding: Encoding, body: Body) -> Body {
    let reader = StreamReader::new(body.into_data_stream().map(|r| r.map_err(io::Error::other)));
    let encoder: Pin<Box<dyn AsyncRead + Send>> = match encoding {
        Encoding::Gzip => Box::pin(codec::GzipEncoder::with_quality(reader, Level::Default)),
        Encoding::Deflate => Box::pin(codec::ZlibEncoder::with_quality(reader, Level::Default)),
        // Brotli's own default (11) costs a hundred times more than 4 for a few per cent.
        Encoding::Brotli => Box::pin(codec::BrotliEncoder::with_quality(
            reader,
            Level::Precise(4),
        )),
        Encoding::Zstd => Box::pin(codec::ZstdEncoder::with_quality(reader, Level::Default)),
        Encoding::Bzip2 => Box::pin(codec::BzEncoder::with_quality(reader, Level::Default)),
    };
    Body::from_stream(ReaderStream::with_capacity(encoder, 16 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_values_decide_and_ties_go_by_preference() {
        let pick = |accept: &str| negotiate(accept).map(|(_, token)| token);
        assert_eq!(pick(""), None);
        assert_eq!(pick("identity"), None);
        assert_eq!(pick("gzip"), Some("gzip"));
        assert_eq!(pick("x-gzip"), Some("gzip"));
        assert_eq!(pick("gzip, deflate, br, zstd"), Some("zstd"));
        assert_eq!(pick("gzip, deflate, br"), Some("br"));
        assert_eq!(pick("gzip;q=0.5, deflate;q=0.8"), Some("deflate"));
        assert_eq!(pick("br;q=0, gzip;q=0.1"), Some("gzip"));
        assert_eq!(pick("br;q=0"), None);
        assert_eq!(pick("BZIP2"), Some("bzip2"));
        assert_eq!(pick("x-bzip2"), Some("x-bzip2"));
        assert_eq!(pick("bzip"), Some("bzip"));
        assert_eq!(pick("bzip2;q=1, gzip;q=0.999"), Some("bzip2"));
        assert_eq!(pick("gzip;q=1.0, zstd;q=1"), Some("zstd"));
        assert_eq!(pick("*"), Some("gzip"));
        assert_eq!(pick("*;q=0.3, br;q=0.2"), Some("gzip"));
        assert_eq!(pick("gzip;q=0, *"), None, "gzip refused by name");
        // Malformed q-values make their item void; unknown codings are skipped.
        assert_eq!(pick("gzip;q=2, br;q=0.5"), Some("br"));
        assert_eq!(pick("gzip;q=abc"), None);
        assert_eq!(pick("gzip;q=0.1234"), None);
        assert_eq!(pick("compress, lzma, deflate ; q=0.2"), Some("deflate"));
        assert_eq!(qvalue("0.5"), Some(500));
        assert_eq!(qvalue("1"), Some(1000));
        assert_eq!(qvalue("1.000"), Some(1000));
        assert_eq!(qvalue("1.001"), None);
        assert_eq!(qvalue("0"), Some(0));
    }

    async fn round_trip(encoding: Encoding, data: &[u8]) -> Vec<u8> {
        let encoded = crate::body_bytes(encode(encoding, Body::from(data.to_vec()))).await;
        assert_ne!(encoded, data, "{encoding:?}");
        decode(&[encoding], Body::from(encoded), 1 << 20)
            .await
            .unwrap_or_else(|e| panic!("{encoding:?}: {e}"))
    }

    #[tokio::test]
    async fn every_encoding_round_trips() {
        let data: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("line {i} of the test\n").into_bytes())
            .collect();
        for encoding in Encoding::PREFERENCE {
            assert_eq!(round_trip(encoding, &data).await, data, "{encoding:?}");
        }
        // Two codings, applied in order: gzip first, then br.
        let once = crate::body_bytes(encode(Encoding::Gzip, Body::from(data.clone()))).await;
        let twice = crate::body_bytes(encode(Encoding::Brotli, Body::from(once))).await;
        let back = decode(
            &[Encoding::Gzip, Encoding::Brotli],
            Body::from(twice),
            1 << 20,
        )
        .await
        .unwrap();
        assert_eq!(back, data);
    }

    #[tokio::test]
    async fn raw_deflate_is_read_too() {
        use tokio::io::AsyncReadExt;
        let data = b"raw deflate as RFC 1951 has it, as Qorus writes it".repeat(50);
        let mut raw = Vec::new();
        codec::DeflateEncoder::new(&data[..])
            .read_to_end(&mut raw)
            .await
            .unwrap();
        let back = decode(&[Encoding::Deflate], Body::from(raw), 1 << 20)
            .await
            .unwrap();
        assert_eq!(back, data);
    }

    #[tokio::test]
    async fn a_bomb_stops_at_the_limit() {
        let limit = 64 * 1024;
        // 8 MiB of zeros: a few KiB compressed, far past the limit decoded.
        let zeros = vec![0u8; 8 << 20];
        for encoding in Encoding::PREFERENCE {
            let bomb = crate::body_bytes(encode(encoding, Body::from(zeros.clone()))).await;
            assert!(bomb.len() < limit, "{encoding:?}: {} bytes", bomb.len());
            let err = decode(&[encoding], Body::from(bomb), limit)
                .await
                .unwrap_err();
            assert_eq!(err.code, "PAYLOAD-TOO-LARGE", "{encoding:?}: {err}");
            assert!(err.desc.contains("once decoded"), "{}", err.desc);
        }
        // Exactly at the limit is fine.
        let fits = crate::body_bytes(encode(Encoding::Gzip, Body::from(vec![7u8; limit]))).await;
        assert_eq!(
            decode(&[Encoding::Gzip], Body::from(fits), limit)
                .await
                .unwrap()
                .len(),
            limit
        );
        // A body that is too large as sent.
        let err = decode(&[Encoding::Gzip], Body::from(vec![1u8; limit + 1]), limit)
            .await
            .unwrap_err();
        assert_eq!(err.code, "PAYLOAD-TOO-LARGE", "{err}");
    }

    #[tokio::test]
    async fn malformed_and_unknown_codings() {
        let err = decode(&[Encoding::Gzip], Body::from("not gzip at all"), 1024)
            .await
            .unwrap_err();
        assert_eq!(err.code, "BAD-REQUEST");
        assert!(err.desc.contains("not valid gzip"), "{}", err.desc);
        for bad in ["compress", "gzip, lzma", "gzip,gzip,gzip,gzip"] {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(bad));
            let err = request_codings(&headers).unwrap_err();
            assert_eq!(err.code, "UNSUPPORTED-ENCODING", "{bad}");
            assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static("identity, x-bzip2"),
        );
        assert_eq!(request_codings(&headers).unwrap(), vec![Encoding::Bzip2]);
    }

    #[test]
    fn small_upgraded_and_encoded_replies_stay_as_they_are() {
        let reply = |body: Body| Response::new(body);
        let gzip = Some((Encoding::Gzip, "gzip"));
        let small = compress(reply(Body::from("short")), gzip, false);
        assert!(!small.headers().contains_key(header::CONTENT_ENCODING));
        assert_eq!(small.headers()[header::VARY], "accept-encoding");
        let big = compress(reply(Body::from(vec![b'a'; 4096])), gzip, false);
        assert_eq!(big.headers()[header::CONTENT_ENCODING], "gzip");
        let head = compress(reply(Body::from(vec![b'a'; 4096])), gzip, true);
        assert!(!head.headers().contains_key(header::CONTENT_ENCODING));
        let mut upgrade = reply(Body::empty());
        *upgrade.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let upgrade = compress(upgrade, gzip, false);
        assert!(!upgrade.headers().contains_key(header::VARY));
        let mut done = reply(Body::from(vec![b'a'; 4096]));
        done.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert_eq!(
            compress(done, gzip, false).headers()[header::CONTENT_ENCODING],
            "br"
        );
    }
}
