//! UCAN containers (`ctn-v1`): several tokens in one CBOR map `{"ctn-v1": [bytes, …]}` behind a
//! one-byte header that says how it is encoded (raw, base64 standard with padding, base64 URL without
//! padding) and whether it is gzipped.
//!
//! The writer sorts tokens bytewise and drops duplicates, as the spec asks; the reader accepts any order.

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

/// Why bytes could not be read as a container.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("malformed container: {0}")]
pub struct ContainerError(pub String);

/// A set of token byte strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Container {
    /// The tokens, as encoded envelopes.
    pub tokens: Vec<Vec<u8>>,
}

impl Container {
    /// Reads a container in any of the six forms. Decompression is bounded (see `MAX_DECOMPRESSED`).
    pub fn decode(bytes: &[u8]) -> Result<Self, ContainerError> {
        todo!("{bytes:?}")
    }

    /// Writes the container in `format`, tokens sorted bytewise without duplicates.
    pub fn encode(&self, format: Format) -> Vec<u8> {
        todo!("{format:?}")
    }
}
