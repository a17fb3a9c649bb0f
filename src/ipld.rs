//! Small helpers over IPLD values: CIDs of DAG-CBOR blocks and raw blobs, and DAG-JSON text.

use std::collections::{BTreeMap, btree_map};

use cid::Cid;
use cid::multihash::Multihash;
use ipld_core::ipld::Ipld;
use sha2::{Digest, Sha256};

/// Multicodec for DAG-CBOR.
pub const DAG_CBOR: u64 = 0x71;
/// Multicodec for raw bytes.
pub const RAW: u64 = 0x55;
const SHA2_256: u64 = 0x12;

/// The IPLD kind of `value` with its article ("an integer", "a map"), for error messages.
pub fn kind(value: &Ipld) -> &'static str {
    match value {
        Ipld::Null => "null",
        Ipld::Bool(_) => "a boolean",
        Ipld::Integer(_) => "an integer",
        Ipld::Float(_) => "a float",
        Ipld::String(_) => "a string",
        Ipld::Bytes(_) => "bytes",
        Ipld::List(_) => "a list",
        Ipld::Map(_) => "a map",
        Ipld::Link(_) => "a link",
    }
}

/// The items of a list named `what` as strings. An item of another kind is refused by its index
/// (`what[2] must be a string, not an integer`), never turned into text: a number a policy approved
/// as a number must not reach a program as its digits.
pub fn strings(items: &[Ipld], what: &str) -> Result<Vec<String>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Ipld::String(s) => Ok(s.clone()),
            other => Err(format!("{what}[{i}] must be a string, not {}", kind(other))),
        })
        .collect()
}

/// CIDv1 with sha2-256 of `bytes` under `codec`.
pub fn cid_for(codec: u64, bytes: &[u8]) -> Cid {
    let digest = Sha256::digest(bytes);
    let mh = Multihash::<64>::wrap(SHA2_256, &digest).expect("a 32-byte digest fits in 64 bytes");
    Cid::new_v1(codec, mh)
}

/// CIDv1 (dag-cbor, sha2-256) of DAG-CBOR bytes.
pub fn dag_cbor_cid(bytes: &[u8]) -> Cid {
    cid_for(DAG_CBOR, bytes)
}

/// Encodes an IPLD value as DAG-CBOR.
pub fn to_dag_cbor(value: &Ipld) -> Result<Vec<u8>, String> {
    serde_ipld_dagcbor::to_vec(value).map_err(|e| e.to_string())
}

/// Encodes an IPLD value as DAG-JSON text.
pub fn to_dag_json(value: &Ipld) -> Result<String, String> {
    let bytes = serde_ipld_dagjson::to_vec(value).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

/// Parses DAG-JSON text into an IPLD value.
pub fn from_dag_json(text: &str) -> Result<Ipld, String> {
    serde_ipld_dagjson::from_slice(text.as_bytes()).map_err(|e| e.to_string())
}

/// Deepest nesting of arrays and maps accepted in untrusted DAG-CBOR (the outermost container is
/// level 1). `serde_ipld_dagcbor` 0.7 stops by itself at 127 levels for `Ipld`, but decoding and
/// re-encoding that deep takes more than 512 KiB of stack in debug builds, and every consumer that
/// walks a payload inherits the depth; 64 leaves ample room for real arguments.
pub const MAX_DEPTH: usize = 64;

/// Largest integer magnitude allowed in a UCAN (2^53 − 1), so every value is exact in JavaScript.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why untrusted DAG-CBOR, or a value meant to become it, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Lists and maps nest deeper than `max` levels: a limit of this implementation, not a fault
    /// of the encoding.
    #[error("nesting deeper than {max} levels of lists and maps; at most {max}")]
    TooDeep {
        /// The deepest nesting accepted where the refusal happened.
        max: usize,
    },
    /// Not one complete, canonical DAG-CBOR item with integers in range.
    #[error("{0}")]
    Invalid(String),
}

impl From<DecodeError> for String {
    fn from(e: DecodeError) -> String {
        e.to_string()
    }
}

impl From<String> for DecodeError {
    fn from(message: String) -> DecodeError {
        DecodeError::Invalid(message)
    }
}

/// Decodes untrusted DAG-CBOR strictly: one item, no trailing bytes, nesting at most [`MAX_DEPTH`],
/// every integer within ±[`MAX_SAFE_INTEGER`], and canonical (re-encoding gives the same bytes, which
/// rules out unsorted or duplicate map keys, non-minimal lengths and integers, and short floats).
pub fn from_dag_cbor_strict(bytes: &[u8]) -> Result<Ipld, DecodeError> {
    // The structural scan runs first so the recursive decoder never sees deep input.
    scan_dag_cbor(bytes, MAX_DEPTH)?;
    let value: Ipld =
        serde_ipld_dagcbor::from_slice(bytes).map_err(|e| format!("invalid DAG-CBOR: {e}"))?;
    let canonical = to_dag_cbor(&value)?;
    if canonical != bytes {
        return Err(DecodeError::Invalid("not canonical DAG-CBOR".to_owned()));
    }
    Ok(value)
}

/// Checks, without recursion, that `value` nests at most `max_depth` levels of lists and maps and that
/// every integer lies within ±[`MAX_SAFE_INTEGER`]: what [`from_dag_cbor_strict`] would demand of it.
pub fn check_limits(value: &Ipld, max_depth: usize) -> Result<(), DecodeError> {
    let max = i128::from(MAX_SAFE_INTEGER);
    let mut pending = vec![(value, 1usize)];
    while let Some((item, depth)) = pending.pop() {
        match item {
            Ipld::Integer(n) if !(-max..=max).contains(n) => {
                return Err(DecodeError::Invalid(format!(
                    "integer {n} outside ±(2^53−1)"
                )));
            }
            Ipld::List(_) | Ipld::Map(_) if depth > max_depth => {
                return Err(DecodeError::TooDeep { max: max_depth });
            }
            Ipld::List(items) => pending.extend(items.iter().map(|v| (v, depth + 1))),
            Ipld::Map(entries) => pending.extend(entries.values().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

/// Walks the CBOR item heads of `bytes` iteratively, without decoding values: exactly one complete
/// item, definite lengths only, only tag 42 (CIDs), integers within ±[`MAX_SAFE_INTEGER`], and at most
/// `max_depth` nested arrays/maps.
fn scan_dag_cbor(bytes: &[u8], max_depth: usize) -> Result<(), DecodeError> {
    let truncated = || DecodeError::Invalid("truncated DAG-CBOR".to_owned());
    let mut pos = 0usize;
    // Items still expected in each open array/map (a map entry counts as two items).
    let mut open: Vec<u64> = Vec::new();
    loop {
        let head = *bytes.get(pos).ok_or_else(truncated)?;
        pos += 1;
        let (major, info) = (head >> 5, head & 0x1f);
        let arg_len = match info {
            0..=23 => 0,
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            31 => return Err(DecodeError::Invalid("indefinite-length item".to_owned())),
            _ => {
                return Err(DecodeError::Invalid(format!(
                    "reserved CBOR head {head:#04x}"
                )));
            }
        };
        let arg_bytes = bytes.get(pos..pos + arg_len).ok_or_else(truncated)?;
        pos += arg_len;
        let arg = if arg_len == 0 {
            u64::from(info)
        } else {
            arg_bytes
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        };
        let remaining = (bytes.len() - pos) as u64;
        let children = match major {
            0 if arg > MAX_SAFE_INTEGER => {
                return Err(DecodeError::Invalid(format!("integer {arg} above 2^53−1")));
            }
            // A negative integer is −1 − arg.
            1 if arg >= MAX_SAFE_INTEGER => {
                return Err(DecodeError::Invalid("integer below −(2^53−1)".to_owned()));
            }
            2 | 3 => {
                if arg > remaining {
                    return Err(truncated());
                }
                pos += arg as usize;
                0
            }
            // Every child takes at least one byte, so a count above what is left is a lie; checking
            // it here also keeps the map doubling below from overflowing.
            4 | 5 if arg > remaining => return Err(truncated()),
            4 => arg,
            5 => 2 * arg,
            6 if arg != 42 => {
                return Err(DecodeError::Invalid(format!(
                    "CBOR tag {arg} (only 42, CID, is allowed)"
                )));
            }
            // The tagged item follows and fills this slot.
            6 => continue,
            _ => 0,
        };
        if let Some(slots) = open.last_mut() {
            *slots -= 1;
        }
        if matches!(major, 4 | 5) {
            if open.len() >= max_depth {
                return Err(DecodeError::TooDeep { max: max_depth });
            }
            open.push(children);
        }
        while open.last() == Some(&0) {
            open.pop();
        }
        if open.is_empty() {
            break;
        }
    }
    if pos != bytes.len() {
        return Err(DecodeError::Invalid(
            "trailing bytes after DAG-CBOR item".to_owned(),
        ));
    }
    Ok(())
}

/// A copy of `value` in which every node that `replace` maps to `Some(new)` is replaced by `new`
/// (and not descended into); lists and maps that `replace` leaves alone are copied with their
/// children rewritten, and other leaves are cloned.
///
/// Walked with an explicit stack rather than recursion, so the depth of untrusted values costs
/// heap, not stack.
pub fn rewrite(value: &Ipld, mut replace: impl FnMut(&Ipld) -> Option<Ipld>) -> Ipld {
    match visit(value, &mut replace) {
        Ok(done) => done,
        Err(frame) => walk(frame, &mut replace),
    }
}

/// [`rewrite`] for each value of a map (such as invocation `args`), without copying the map first.
pub fn rewrite_map(
    map: &BTreeMap<String, Ipld>,
    mut replace: impl FnMut(&Ipld) -> Option<Ipld>,
) -> BTreeMap<String, Ipld> {
    match walk(Frame::Map(map.iter(), BTreeMap::new(), None), &mut replace) {
        Ipld::Map(map) => map,
        _ => BTreeMap::new(),
    }
}

/// A list or map being copied by [`rewrite`]: the children still to visit and the ones rewritten.
enum Frame<'a> {
    List(std::slice::Iter<'a, Ipld>, Vec<Ipld>),
    // The key under which the child being built will go.
    Map(
        btree_map::Iter<'a, String, Ipld>,
        BTreeMap<String, Ipld>,
        Option<&'a String>,
    ),
}

/// A node rewritten at once (`Ok`), or a container to open (`Err`).
fn visit<'a>(
    node: &'a Ipld,
    replace: &mut impl FnMut(&Ipld) -> Option<Ipld>,
) -> Result<Ipld, Frame<'a>> {
    if let Some(new) = replace(node) {
        return Ok(new);
    }
    match node {
        Ipld::List(items) => Err(Frame::List(items.iter(), Vec::with_capacity(items.len()))),
        Ipld::Map(map) => Err(Frame::Map(map.iter(), BTreeMap::new(), None)),
        leaf => Ok(leaf.clone()),
    }
}

/// Rewrites the container `root` and everything below it.
fn walk(root: Frame<'_>, replace: &mut impl FnMut(&Ipld) -> Option<Ipld>) -> Ipld {
    let mut stack = vec![root];
    loop {
        let Some(top) = stack.last_mut() else {
            return Ipld::Null;
        };
        let opened = match top {
            Frame::List(rest, done) => match rest.next() {
                None => None,
                Some(child) => match visit(child, replace) {
                    Ok(new) => {
                        done.push(new);
                        continue;
                    }
                    Err(frame) => Some(frame),
                },
            },
            Frame::Map(rest, done, pending) => match rest.next() {
                None => None,
                Some((key, child)) => match visit(child, replace) {
                    Ok(new) => {
                        done.insert(key.clone(), new);
                        continue;
                    }
                    Err(frame) => {
                        *pending = Some(key);
                        Some(frame)
                    }
                },
            },
        };
        if let Some(frame) = opened {
            stack.push(frame);
            continue;
        }
        // The innermost container is complete: hand it to its parent, or return it at the root.
        let finished = match stack.pop() {
            Some(Frame::List(_, done)) => Ipld::List(done),
            Some(Frame::Map(_, done, _)) => Ipld::Map(done),
            None => return Ipld::Null,
        };
        match stack.last_mut() {
            Some(Frame::List(_, done)) => done.push(finished),
            Some(Frame::Map(_, done, pending)) => {
                if let Some(key) = pending.take() {
                    done.insert(key.clone(), finished);
                }
            }
            None => return finished,
        }
    }
}
