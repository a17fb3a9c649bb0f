//! UCAN containers (`ctn-v1`): several tokens in one CBOR map `{"ctn-v1": [bytes, …]}` behind a
//! one-byte header that says how it is encoded (raw, base64 standard with padding, base64 URL without
//! padding) and whether it is gzipped.
//!
//! The writer sorts tokens bytewise and drops duplicates, as the spec asks; the reader accepts any order.
//!
//! Containers arrive from the network, so the reader is strict and bounded:
//! - base64 must use exactly the alphabet and padding its header names; a container is a token in
//!   transit, not free text, so a wrong variant is more likely a bug than something to paper over.
//!   Only ASCII whitespace around a base64 container is forgiven (files and headers often end in a
//!   newline); the binary forms are taken byte for byte.
//! - gzip output is capped at [`MAX_DECOMPRESSED`] bytes, because a few kilobytes of gzip can expand
//!   to gigabytes, and a container holds at most [`MAX_TOKENS`] tokens; each limit is refused by
//!   its own name ([`ContainerError::name`]).
//! - the inner CBOR is read by a small purpose-built parser rather than a general IPLD decoder: the
//!   shape is fixed (one map, one key, one array of byte strings), so nothing nests and nothing
//!   recurses, and every length is checked against the bytes actually present before it is trusted.
//!
//! Token bytes are returned exactly as found; decoding and verifying them is the envelope's job.

use std::io::{Read, Write};

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, STANDARD, URL_SAFE_NO_PAD};

/// The most bytes a gzipped container may expand to. Far above any honest token bundle (a
/// delegation is a few hundred bytes), and low enough that a hostile one costs little memory.
pub const MAX_DECOMPRESSED: usize = 16 * 1024 * 1024;

/// The only key the inner map may hold: the container format version.
const VERSION_KEY: &str = "ctn-v1";

/// The six header forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `@` (0x40): raw CBOR bytes.
    Raw,
    /// `B` (0x42): base64, standard alphabet, padded.
    Base64Std,
    /// `C` (0x43): base64, URL alphabet, unpadded.
    Base64Url,
    /// `M` (0x4D): raw, gzipped.
    RawGzip,
    /// `O` (0x4F): base64 standard padded, gzipped.
    Base64StdGzip,
    /// `P` (0x50): base64 URL unpadded, gzipped.
    Base64UrlGzip,
}

impl Format {
    /// Every form, in header-byte order; handy for exhaustive tests and format negotiation.
    pub const ALL: [Format; 6] = [
        Format::Raw,
        Format::Base64Std,
        Format::Base64Url,
        Format::RawGzip,
        Format::Base64StdGzip,
        Format::Base64UrlGzip,
    ];

    /// The form a header byte names, or `None` if the spec assigns it no meaning.
    pub fn from_header(byte: u8) -> Option<Format> {
        match byte {
            b'@' => Some(Format::Raw),
            b'B' => Some(Format::Base64Std),
            b'C' => Some(Format::Base64Url),
            b'M' => Some(Format::RawGzip),
            b'O' => Some(Format::Base64StdGzip),
            b'P' => Some(Format::Base64UrlGzip),
            _ => None,
        }
    }

    /// The header byte that announces this form.
    pub fn header(self) -> u8 {
        match self {
            Format::Raw => b'@',
            Format::Base64Std => b'B',
            Format::Base64Url => b'C',
            Format::RawGzip => b'M',
            Format::Base64StdGzip => b'O',
            Format::Base64UrlGzip => b'P',
        }
    }

    /// Whether the CBOR is gzipped before any base64 step.
    pub fn is_gzipped(self) -> bool {
        matches!(
            self,
            Format::RawGzip | Format::Base64StdGzip | Format::Base64UrlGzip
        )
    }

    /// Whether the container is text (base64) rather than binary.
    pub fn is_base64(self) -> bool {
        self.base64().is_some()
    }

    /// The base64 engine for this form, with the name used in error messages.
    fn base64(self) -> Option<(&'static GeneralPurpose, &'static str)> {
        match self {
            Format::Raw | Format::RawGzip => None,
            Format::Base64Std | Format::Base64StdGzip => {
                Some((&STANDARD, "base64 (standard alphabet, padded)"))
            }
            Format::Base64Url | Format::Base64UrlGzip => {
                Some((&URL_SAFE_NO_PAD, "base64 (URL alphabet, unpadded)"))
            }
        }
    }
}

/// The most tokens one container may hold. A request carries at most a pipeline of invocations,
/// each with a chain of at most [`MAX_CHAIN`](crate::ucan::validate::MAX_CHAIN) delegations, and
/// every token is decoded before anything is checked; this bounds that work.
pub const MAX_TOKENS: usize = 1024;

/// Why bytes could not be read as a container.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContainerError {
    /// Not a container in any of the six forms.
    #[error("malformed container: {0}")]
    Malformed(String),
    /// More than [`MAX_TOKENS`] tokens.
    #[error("the container holds {count} tokens; at most {MAX_TOKENS}")]
    TooManyTokens {
        /// How many tokens the container claims to hold.
        count: u64,
    },
    /// Gzipped data that inflates past [`MAX_DECOMPRESSED`] bytes.
    #[error(
        "gzip data expands beyond the {MAX_DECOMPRESSED}-byte limit; at most {MAX_DECOMPRESSED} bytes"
    )]
    TooLarge,
}

impl ContainerError {
    fn new(msg: impl Into<String>) -> Self {
        ContainerError::Malformed(msg.into())
    }

    /// The error name for clients: `MalformedContainer`, or the limit's (`TooManyTokens`,
    /// `ContainerTooLarge`).
    pub fn name(&self) -> &'static str {
        match self {
            ContainerError::Malformed(_) => "MalformedContainer",
            ContainerError::TooManyTokens { .. } => "TooManyTokens",
            ContainerError::TooLarge => "ContainerTooLarge",
        }
    }
}

/// A set of token byte strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Container {
    /// The tokens, as encoded envelopes.
    pub tokens: Vec<Vec<u8>>,
}

impl Container {
    /// Reads a container in any of the six forms. Decompression is bounded (see `MAX_DECOMPRESSED`).
    ///
    /// Tokens come back in the order the container lists them; duplicates are kept, since a reader
    /// that indexes tokens by CID removes them anyway and silently editing input hides writer bugs.
    pub fn decode(bytes: &[u8]) -> Result<Self, ContainerError> {
        let (format, body) = split_header(bytes)?;
        let decoded;
        let body = match format.base64() {
            Some((engine, name)) => {
                decoded = engine
                    .decode(body)
                    .map_err(|e| ContainerError::Malformed(format!("invalid {name}: {e}")))?;
                decoded.as_slice()
            }
            None => body,
        };
        let inflated;
        let cbor = if format.is_gzipped() {
            inflated = gunzip(body)?;
            inflated.as_slice()
        } else {
            body
        };
        Ok(Container {
            tokens: parse_inner(cbor)?,
        })
    }

    /// The form `bytes` announce, if their header byte is one of the six. It applies the same
    /// whitespace rule as [`Container::decode`] but does not check the rest of the input.
    pub fn format_of(bytes: &[u8]) -> Option<Format> {
        split_header(bytes).ok().map(|(format, _)| format)
    }

    /// Writes the container in `format`, tokens sorted bytewise without duplicates.
    pub fn encode(&self, format: Format) -> Vec<u8> {
        let cbor = self.to_cbor();
        let payload = if format.is_gzipped() {
            gzip(&cbor)
        } else {
            cbor
        };
        let mut out = Vec::with_capacity(1 + payload.len() * 4 / 3 + 4);
        out.push(format.header());
        match format.base64() {
            Some((engine, _)) => out.extend_from_slice(engine.encode(&payload).as_bytes()),
            None => out.extend_from_slice(&payload),
        }
        out
    }

    /// The inner CBOR map, with the tokens in the order the spec requires.
    fn to_cbor(&self) -> Vec<u8> {
        let mut tokens: Vec<&[u8]> = self.tokens.iter().map(Vec::as_slice).collect();
        tokens.sort_unstable();
        tokens.dedup();

        let size: usize = tokens.iter().map(|t| t.len() + 9).sum();
        let mut out = Vec::with_capacity(size + VERSION_KEY.len() + 11);
        write_head(&mut out, MAJOR_MAP, 1);
        write_head(&mut out, MAJOR_TEXT, VERSION_KEY.len() as u64);
        out.extend_from_slice(VERSION_KEY.as_bytes());
        write_head(&mut out, MAJOR_ARRAY, tokens.len() as u64);
        for token in tokens {
            write_head(&mut out, MAJOR_BYTES, token.len() as u64);
            out.extend_from_slice(token);
        }
        out
    }
}

/// Finds the header byte and the body after it. Whitespace is trimmed only around base64 forms:
/// in a binary form a trailing `\n` may be the last byte of a token.
fn split_header(bytes: &[u8]) -> Result<(Format, &[u8]), ContainerError> {
    let trimmed = bytes.trim_ascii_start();
    let Some((&header, body)) = trimmed.split_first() else {
        return Err(ContainerError::new("empty input"));
    };
    let Some(format) = Format::from_header(header) else {
        return Err(ContainerError::Malformed(format!(
            "unknown header byte 0x{header:02x} (expected one of @ B C M O P)"
        )));
    };
    if format.is_base64() {
        Ok((format, body.trim_ascii_end()))
    } else if trimmed.len() != bytes.len() {
        Err(ContainerError::new(
            "whitespace before a binary container header",
        ))
    } else {
        Ok((format, body))
    }
}

/// Inflates gzip data, refusing to produce more than [`MAX_DECOMPRESSED`] bytes.
///
/// Several gzip members in a row are accepted, as RFC 1952 allows; anything after the last member
/// that is not another member is an error, which the multi-member decoder reports as a bad header.
fn gunzip(data: &[u8]) -> Result<Vec<u8>, ContainerError> {
    let decoder = flate2::bufread::MultiGzDecoder::new(data);
    let mut out = Vec::new();
    // Reading one byte past the limit tells "exactly at the limit" from "over it" without ever
    // holding more than the limit plus one byte.
    decoder
        .take(MAX_DECOMPRESSED as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ContainerError::Malformed(format!("invalid gzip data: {e}")))?;
    if out.len() > MAX_DECOMPRESSED {
        return Err(ContainerError::TooLarge);
    }
    Ok(out)
}

/// Compresses with gzip at the default level.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a `Vec` has no failure mode: these results can only be `Ok`.
    encoder
        .write_all(data)
        .expect("gzip into a Vec cannot fail");
    encoder.finish().expect("gzip into a Vec cannot fail")
}

const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;

/// Writes a CBOR item head with the shortest argument encoding, as deterministic CBOR requires.
fn write_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    // The `as` casts below only run once `arg` is known to fit.
    if arg < 24 {
        out.push(m | arg as u8);
    } else if arg <= u64::from(u8::MAX) {
        out.extend_from_slice(&[m | 24, arg as u8]);
    } else if arg <= u64::from(u16::MAX) {
        out.push(m | 25);
        out.extend_from_slice(&(arg as u16).to_be_bytes());
    } else if arg <= u64::from(u32::MAX) {
        out.push(m | 26);
        out.extend_from_slice(&(arg as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

/// A read position over untrusted CBOR.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// Takes `n` bytes, or fails if fewer remain. `n` is checked before any slicing or allocation.
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], ContainerError> {
        let n = usize::try_from(n).ok().filter(|&n| n <= self.rest.len());
        let Some(n) = n else {
            return Err(ContainerError::Malformed(format!(
                "truncated CBOR: {what} runs past the end of the input"
            )));
        };
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    /// Reads an item head: its major type and argument (a length, for the types we accept).
    fn head(&mut self) -> Result<(u8, u64), ContainerError> {
        let Some((&initial, rest)) = self.rest.split_first() else {
            return Err(ContainerError::new("truncated CBOR: expected another item"));
        };
        self.rest = rest;
        let major = initial >> 5;
        let info = initial & 0x1f;
        let width = match info {
            0..=23 => return Ok((major, u64::from(info))),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            31 => {
                return Err(ContainerError::Malformed(format!(
                    "{} with an indefinite length is not allowed; lengths must be definite",
                    kind(major)
                )));
            }
            _ => {
                return Err(ContainerError::Malformed(format!(
                    "reserved CBOR additional information {info}"
                )));
            }
        };
        let arg = self
            .take(width, "an item head")?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        Ok((major, arg))
    }
}

/// What a CBOR major type holds, for error messages.
fn kind(major: u8) -> &'static str {
    match major {
        0 => "an unsigned integer",
        1 => "a negative integer",
        MAJOR_BYTES => "a byte string",
        MAJOR_TEXT => "a text string",
        MAJOR_ARRAY => "an array",
        MAJOR_MAP => "a map",
        6 => "a tag",
        _ => "a simple value or float",
    }
}

/// Reads `{"ctn-v1": [bytes, …]}` and nothing else, returning the token byte strings.
fn parse_inner(cbor: &[u8]) -> Result<Vec<Vec<u8>>, ContainerError> {
    let mut cur = Cursor { rest: cbor };

    let (major, entries) = cur.head()?;
    if major != MAJOR_MAP {
        return Err(ContainerError::Malformed(format!(
            "expected a CBOR map at the top level, found {}",
            kind(major)
        )));
    }
    if entries != 1 {
        return Err(ContainerError::Malformed(format!(
            "the top-level map must have exactly one key (`{VERSION_KEY}`), found {entries}"
        )));
    }

    let (major, key_len) = cur.head()?;
    if major != MAJOR_TEXT {
        return Err(ContainerError::Malformed(format!(
            "the top-level key must be a text string, found {}",
            kind(major)
        )));
    }
    let key = cur.take(key_len, "the top-level key")?;
    if key != VERSION_KEY.as_bytes() {
        return Err(ContainerError::Malformed(format!(
            "unsupported container version key {:?} (expected `{VERSION_KEY}`)",
            String::from_utf8_lossy(key)
        )));
    }

    let (major, count) = cur.head()?;
    if major != MAJOR_ARRAY {
        return Err(ContainerError::Malformed(format!(
            "`{VERSION_KEY}` must be an array of byte strings, found {}",
            kind(major)
        )));
    }
    // A count the input cannot hold (each token takes a byte at least) is a truncation, found
    // below; an honest count above the limit is the limit's.
    if count <= cur.rest.len() as u64 && count > MAX_TOKENS as u64 {
        return Err(ContainerError::TooManyTokens { count });
    }
    // Each token takes at least one byte, so the remaining input bounds any honest count; a
    // larger claim must not turn into a large allocation.
    let capacity = usize::try_from(count).map_or(cur.rest.len(), |c| c.min(cur.rest.len()));
    let mut tokens = Vec::with_capacity(capacity);
    for index in 0..count {
        let (major, len) = cur.head()?;
        if major != MAJOR_BYTES {
            return Err(ContainerError::Malformed(format!(
                "token {index} must be a byte string, found {}",
                kind(major)
            )));
        }
        tokens.push(cur.take(len, "a token")?.to_vec());
    }

    if !cur.rest.is_empty() {
        return Err(ContainerError::Malformed(format!(
            "{} trailing bytes after the container map",
            cur.rest.len()
        )));
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_use_the_shortest_encoding() {
        let cases: [(u64, &[u8]); 9] = [
            (0, &[0x40]),
            (23, &[0x57]),
            (24, &[0x58, 24]),
            (255, &[0x58, 0xff]),
            (256, &[0x59, 0x01, 0x00]),
            (65_535, &[0x59, 0xff, 0xff]),
            (65_536, &[0x5a, 0x00, 0x01, 0x00, 0x00]),
            (u64::from(u32::MAX), &[0x5a, 0xff, 0xff, 0xff, 0xff]),
            (u64::from(u32::MAX) + 1, &[0x5b, 0, 0, 0, 1, 0, 0, 0, 0]),
        ];
        for (arg, expected) in cases {
            let mut out = Vec::new();
            write_head(&mut out, MAJOR_BYTES, arg);
            assert_eq!(out, expected, "head for {arg}");
            let mut cur = Cursor { rest: &out };
            assert_eq!(cur.head().unwrap(), (MAJOR_BYTES, arg));
            assert!(cur.rest.is_empty());
        }
    }

    #[test]
    fn non_minimal_heads_are_read() {
        // Plain CBOR allows longer length encodings; the reader accepts them, the writer never emits them.
        let cbor = [
            0xb8, 1, 0x78, 6, b'c', b't', b'n', b'-', b'v', b'1', 0x98, 1, 0x59, 0, 2, 7, 8,
        ];
        assert_eq!(parse_inner(&cbor).unwrap(), vec![vec![7, 8]]);
    }

    #[test]
    fn huge_claimed_lengths_fail_without_allocating() {
        let mut cbor = vec![0xa1, 0x66];
        cbor.extend_from_slice(b"ctn-v1");
        cbor.extend_from_slice(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        let err = parse_inner(&cbor).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");

        let mut cbor = vec![0xa1, 0x66];
        cbor.extend_from_slice(b"ctn-v1");
        cbor.extend_from_slice(&[0x81, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        let err = parse_inner(&cbor).unwrap_err();
        assert_eq!(
            err,
            ContainerError::new("truncated CBOR: a token runs past the end of the input")
        );
    }

    #[test]
    fn reserved_and_indefinite_heads_are_rejected() {
        let err = Cursor { rest: &[0x5c] }.head().unwrap_err();
        assert_eq!(
            err,
            ContainerError::new("reserved CBOR additional information 28")
        );
        let err = Cursor { rest: &[0x9f] }.head().unwrap_err();
        assert_eq!(
            err,
            ContainerError::new(
                "an array with an indefinite length is not allowed; lengths must be definite"
            )
        );
    }
}
