//! CARv1 archives as ucanto sends them: a DAG-CBOR header `{version: 1, roots: [CID]}` followed by
//! `varint(len) ‖ CID ‖ block` sections.
//!
//! A small reader and writer over `unsigned-varint`, `cid` and `serde_ipld_dagcbor` (all already
//! dependencies) rather than `iroh-car`: that crate is async-only, which fits a stream but not a body
//! already in memory, and it pulls in second copies of `serde_ipld_dagcbor` and `unsigned-varint`.
//! Reading here also checks what a gateway must: every block's bytes hash to its CID (a sender never
//! names a block it did not send), and block count and sizes are bounded.

use std::collections::BTreeMap;

use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::ipld::{DAG_CBOR, RAW, cid_for};

/// Most blocks accepted in one archive: invocations, their proofs and attachments.
pub const MAX_BLOCKS: usize = 4096;

const SHA2_256: u64 = 0x12;

/// Why bytes are not an acceptable CARv1 archive.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CarError {
    /// The header is missing, not DAG-CBOR, not version 1, or has no single root.
    #[error("bad CAR header: {0}")]
    Header(String),
    /// A section is truncated or its CID does not parse.
    #[error("bad CAR section at byte {offset}: {message}")]
    Section {
        /// Where the section starts.
        offset: usize,
        /// What is wrong.
        message: String,
    },
    /// A block's bytes do not hash to its CID, or it uses a hash or codec not accepted here.
    #[error("block {0} does not match its CID or uses an unsupported hash or codec")]
    BlockMismatch(String),
    /// More than [`MAX_BLOCKS`] blocks.
    #[error("the archive holds more than {MAX_BLOCKS} blocks")]
    TooManyBlocks,
    /// The root is not among the blocks.
    #[error("the root block {0} is missing")]
    MissingRoot(String),
}

/// A decoded archive: its single root and its blocks by CID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Car {
    /// The root CID.
    pub root: Option<Cid>,
    /// Blocks by CID (later duplicates are ignored).
    pub blocks: BTreeMap<Cid, Vec<u8>>,
}

impl Car {
    /// Reads a CARv1 with exactly one root present among its blocks.
    pub fn decode(bytes: &[u8]) -> Result<Car, CarError> {
        let (header_len, rest) = unsigned_varint::decode::usize(bytes)
            .map_err(|e| CarError::Header(format!("length: {e}")))?;
        if header_len > rest.len() {
            return Err(CarError::Header("truncated".into()));
        }
        let header = crate::ipld::from_dag_cbor_strict(&rest[..header_len])
            .map_err(|e| CarError::Header(e.into()))?;
        let root = read_header(&header)?;
        let mut offset = bytes.len() - rest.len() + header_len;
        let mut blocks = BTreeMap::new();
        let mut count = 0usize;
        while offset < bytes.len() {
            count += 1;
            if count > MAX_BLOCKS {
                return Err(CarError::TooManyBlocks);
            }
            let section_err = |message: String| CarError::Section { offset, message };
            let (len, after) = unsigned_varint::decode::usize(&bytes[offset..])
                .map_err(|e| section_err(format!("length: {e}")))?;
            if len > after.len() {
                return Err(section_err("truncated".into()));
            }
            let section = &after[..len];
            let mut cursor = std::io::Cursor::new(section);
            let cid = Cid::read_bytes(&mut cursor).map_err(|e| section_err(format!("CID: {e}")))?;
            let data = &section[usize::try_from(cursor.position()).unwrap_or(section.len())..];
            if !matches_cid(&cid, data) {
                return Err(CarError::BlockMismatch(cid.to_string()));
            }
            blocks.entry(cid).or_insert_with(|| data.to_vec());
            offset = bytes.len() - after.len() + len;
        }
        if !blocks.contains_key(&root) {
            return Err(CarError::MissingRoot(root.to_string()));
        }
        Ok(Car {
            root: Some(root),
            blocks,
        })
    }

    /// Writes a CARv1: header with the root, then the root block, then the others in `order`.
    pub fn encode(root: Cid, blocks: &[(Cid, Vec<u8>)]) -> Vec<u8> {
        let header = Ipld::Map(BTreeMap::from([
            ("roots".to_owned(), Ipld::List(vec![Ipld::Link(root)])),
            ("version".to_owned(), Ipld::Integer(1)),
        ]));
        // A map of a link list and an integer always encodes.
        let header = crate::ipld::to_dag_cbor(&header).unwrap_or_default();
        let mut out = Vec::new();
        push_varint(&mut out, header.len());
        out.extend_from_slice(&header);
        let mut written = std::collections::HashSet::new();
        for (cid, data) in blocks {
            if !written.insert(*cid) {
                continue;
            }
            let cid_bytes = cid.to_bytes();
            push_varint(&mut out, cid_bytes.len() + data.len());
            out.extend_from_slice(&cid_bytes);
            out.extend_from_slice(data);
        }
        out
    }
}

fn push_varint(out: &mut Vec<u8>, n: usize) {
    let mut buf = unsigned_varint::encode::usize_buffer();
    out.extend_from_slice(unsigned_varint::encode::usize(n, &mut buf));
}

fn read_header(header: &Ipld) -> Result<Cid, CarError> {
    let Ipld::Map(map) = header else {
        return Err(CarError::Header("not a map".into()));
    };
    if map.get("version") != Some(&Ipld::Integer(1)) {
        return Err(CarError::Header("version must be 1".into()));
    }
    match map.get("roots") {
        Some(Ipld::List(roots)) => match roots.as_slice() {
            [Ipld::Link(root)] => Ok(*root),
            _ => Err(CarError::Header("exactly one root is expected".into())),
        },
        _ => Err(CarError::Header("roots must be a list of links".into())),
    }
}

/// Whether `data` hashes to `cid`: CIDv1, sha2-256, DAG-CBOR or raw (what ucanto emits).
fn matches_cid(cid: &Cid, data: &[u8]) -> bool {
    cid.version() == cid::Version::V1
        && cid.hash().code() == SHA2_256
        && matches!(cid.codec(), DAG_CBOR | RAW)
        && cid_for(cid.codec(), data) == *cid
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(text: &str) -> (Cid, Vec<u8>) {
        let bytes = crate::ipld::to_dag_cbor(&Ipld::String(text.into())).unwrap();
        (crate::ipld::dag_cbor_cid(&bytes), bytes)
    }

    #[test]
    fn round_trips() {
        let (a, b) = (block("a"), block("b"));
        let bytes = Car::encode(a.0, &[a.clone(), b.clone()]);
        let car = Car::decode(&bytes).unwrap();
        assert_eq!(car.root, Some(a.0));
        assert_eq!(car.blocks.get(&b.0), Some(&b.1));
        assert_eq!(car.blocks.len(), 2);
    }

    #[test]
    fn refuses_a_block_that_does_not_hash_to_its_cid() {
        let (a, _) = block("a");
        let (_, other) = block("b");
        let bytes = Car::encode(a, &[(a, other)]);
        assert!(matches!(
            Car::decode(&bytes),
            Err(CarError::BlockMismatch(_))
        ));
    }

    #[test]
    fn refuses_a_missing_root_and_truncation() {
        let (a, b) = (block("a"), block("b"));
        let bytes = Car::encode(a.0, &[b]);
        assert!(matches!(Car::decode(&bytes), Err(CarError::MissingRoot(_))));
        let good = Car::encode(a.0, &[a]);
        assert!(matches!(
            Car::decode(&good[..good.len() - 1]),
            Err(CarError::Section { .. })
        ));
        assert!(matches!(Car::decode(b"\x05ab"), Err(CarError::Header(_))));
        assert!(matches!(Car::decode(b""), Err(CarError::Header(_))));
    }
}
