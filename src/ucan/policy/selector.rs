//! Selectors: the jq-like paths (`.a.b[0]`, `.["key"]`, `[-1]`, `[1:3]`, `[]`, `?`) that pick the
//! value a statement talks about out of `args`.
//!
//! Parsing happens once, when the policy is parsed; resolution happens on every check and borrows
//! from `args` instead of cloning. Only `[]` allocates, because it has to collect several values.
//!
//! Resolution rules (spec, "Selectors" and "Validation"):
//! - Segments are applied left to right. A segment that cannot apply (a key on a non-map, an index
//!   out of range, ...) fails the whole selection at once, even if a later segment is optional.
//! - A missing key on a map is not a failure: it gives `null`. A further segment on that `null` fails.
//! - `?` turns a failure *of its own segment* into `null`; `???` is the same as `?`.
//! - Bytes are selected into as a list of byte values (`[3]` gives an integer, `[1:3]` gives bytes).
//!   Strings are not indexable: only lists, maps and bytes are.
//!
//! `[]` is jq's "iterate": every child (list elements, map values, or the bytes of a byte string)
//! goes through the *rest* of the selector, and the results are collected into one list, flattened
//! across nested `[]` the way jq flattens streams. So `.a[]` is `.a` for a list and the list of values
//! for a map (the spec's "noop on lists, values on maps"), and `.a[].b` is the list of every child's
//! `.b`. If the rest fails on any child the whole selection fails: a policy over "every `.b`" must
//! not pass because some children have none (write `.b?` to get `null` for those instead). The
//! result is then just a list value, so `==` compares it as a list and `all`/`any` range over it.
//! go-ucan instead treats `[]` as "turn this into a list" and ignores what follows it; we agree on
//! every selector where `[]` comes last, and give the segments after it the jq meaning.

use std::fmt;

use ipld_core::ipld::Ipld;

use super::eval::{Budget, Exhausted};

/// Longest selector text accepted, in bytes. Selectors come from untrusted tokens and are resolved on
/// every check, so their length (and thus their segment count) is bounded up front.
pub const MAX_SELECTOR_LEN: usize = 1024;

/// A parsed selector. The identity selector `.` has no segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selector {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    kind: SegmentKind,
    optional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SegmentKind {
    /// `.name` or `["name"]`.
    Key(String),
    /// `[i]`, negative counting from the end.
    Index(i64),
    /// `[a:b]`, `[a:]`, `[:b]`; bounds may be negative, and are clamped like Python slices.
    Slice {
        start: Option<i64>,
        end: Option<i64>,
    },
    /// `[]`.
    Iterate,
}

/// One value reached by a selector. Besides plain nodes of `args`, selecting into bytes and slicing
/// produce values that are not themselves `Ipld` nodes; they borrow instead of being built.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Item<'a> {
    /// A node of `args`.
    Node(&'a Ipld),
    /// `null` from a missing key or an optional segment.
    Null,
    /// One byte of a byte string, seen as an integer.
    Byte(u8),
    /// A slice of a byte string.
    Bytes(&'a [u8]),
    /// A slice of a list.
    List(&'a [Ipld]),
}

/// What a selector resolved to: one value, or the list of values collected by `[]`.
#[derive(Debug)]
pub(crate) enum Selected<'a> {
    One(Item<'a>),
    Many(Vec<Item<'a>>),
}

impl Selector {
    /// The identity selector `.`.
    #[cfg(test)]
    pub(crate) fn identity() -> Self {
        Self {
            segments: Vec::new(),
        }
    }

    /// Parses selector text, returning a human-readable reason on failure.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_SELECTOR_LEN {
            return Err(format!("selector is longer than {MAX_SELECTOR_LEN} bytes"));
        }
        let b = text.as_bytes();
        if b.first() != Some(&b'.') {
            return Err(format!("selector {text:?} must begin with `.`"));
        }
        let err = |at: usize, what: &str| format!("selector {text:?} at byte {at}: {what}");
        let mut segments: Vec<Segment> = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'.' => match b.get(i + 1) {
                    // The identity selector, alone.
                    None if i == 0 => i += 1,
                    None => return Err(err(i, "trailing `.`")),
                    Some(b'.') => return Err(err(i, "`..` is not allowed")),
                    // `.[0]` and `.a.[0]`: the dot only introduces the bracket.
                    Some(b'[') => i += 1,
                    // `.?`: the identity never fails, so the `?` changes nothing.
                    Some(b'?') if i == 0 => i += 1,
                    Some(_) => {
                        let end = ident_end(text, i + 1);
                        if end == i + 1 {
                            return Err(err(
                                i + 1,
                                "expected a field name after `.` (use [\"...\"] for other keys)",
                            ));
                        }
                        segments.push(Segment::new(SegmentKind::Key(text[i + 1..end].to_owned())));
                        i = end;
                    }
                },
                b'[' => {
                    let (kind, next) = bracket(text, i).map_err(|what| err(i, &what))?;
                    segments.push(Segment::new(kind));
                    i = next;
                }
                b'?' => {
                    // Idempotent; after a bare leading `.` there is nothing to make optional.
                    if let Some(last) = segments.last_mut() {
                        last.optional = true;
                    }
                    i += 1;
                }
                _ => {
                    let c = text[i..].chars().next().unwrap_or('\u{fffd}');
                    return Err(err(i, &format!("unexpected character {c:?}")));
                }
            }
        }
        Ok(Self { segments })
    }

    /// Resolves the selector against `subject`. `Ok(None)` means "could not be resolved", which makes
    /// the statement false; `Err` means the evaluation budget ran out.
    pub(crate) fn select<'a>(
        &self,
        subject: Item<'a>,
        budget: &mut Budget,
    ) -> Result<Option<Selected<'a>>, Exhausted> {
        let mut cur = subject;
        for (i, seg) in self.segments.iter().enumerate() {
            budget.charge(1)?;
            if seg.kind != SegmentKind::Iterate {
                match seg.apply(cur) {
                    Some(next) => cur = next,
                    None => return Ok(None),
                }
                continue;
            }
            if !is_collection(cur) {
                // `[]?` on a non-collection is `null`, and the rest applies to that `null`.
                if seg.optional {
                    cur = Item::Null;
                    continue;
                }
                return Ok(None);
            }
            let rest = &self.segments[i + 1..];
            // A trailing `[]` on a list is the list itself: skip collecting it.
            if let (true, Some(list)) = (rest.is_empty(), as_list(cur)) {
                return Ok(Some(Selected::One(Item::List(list))));
            }
            let mut items = Vec::new();
            seg.expand(cur, &mut items, budget)?;
            for seg in rest {
                let mut next = Vec::with_capacity(items.len());
                for item in items {
                    budget.charge(1)?;
                    if seg.kind == SegmentKind::Iterate {
                        if !seg.expand(item, &mut next, budget)? {
                            return Ok(None);
                        }
                    } else {
                        match seg.apply(item) {
                            Some(v) => next.push(v),
                            None => return Ok(None),
                        }
                    }
                }
                items = next;
            }
            return Ok(Some(Selected::Many(items)));
        }
        Ok(Some(Selected::One(cur)))
    }
}

impl Segment {
    fn new(kind: SegmentKind) -> Self {
        Self {
            kind,
            optional: false,
        }
    }

    /// Applies a non-iterating segment; `None` is a failure that `?` did not absorb.
    fn apply<'a>(&self, item: Item<'a>) -> Option<Item<'a>> {
        let out = match &self.kind {
            SegmentKind::Key(key) => match item {
                Item::Node(Ipld::Map(map)) => Some(map.get(key).map_or(Item::Null, Item::Node)),
                _ => None,
            },
            SegmentKind::Index(index) => {
                if let Some(list) = as_list(item) {
                    list_index(list.len(), *index).map(|i| Item::Node(&list[i]))
                } else if let Some(bytes) = as_bytes(item) {
                    list_index(bytes.len(), *index).map(|i| Item::Byte(bytes[i]))
                } else {
                    None
                }
            }
            SegmentKind::Slice { start, end } => {
                if let Some(list) = as_list(item) {
                    let (a, b) = slice_bounds(list.len(), *start, *end);
                    Some(Item::List(&list[a..b]))
                } else if let Some(bytes) = as_bytes(item) {
                    let (a, b) = slice_bounds(bytes.len(), *start, *end);
                    Some(Item::Bytes(&bytes[a..b]))
                } else {
                    None
                }
            }
            SegmentKind::Iterate => None,
        };
        match out {
            None if self.optional => Some(Item::Null),
            other => other,
        }
    }

    /// Applies `[]` to one item, pushing its children onto `out`. Returns false on a failure that
    /// `?` did not absorb (`[]?` on a non-collection gives a single `null`).
    fn expand<'a>(
        &self,
        item: Item<'a>,
        out: &mut Vec<Item<'a>>,
        budget: &mut Budget,
    ) -> Result<bool, Exhausted> {
        if let Some(list) = as_list(item) {
            budget.charge(list.len() as u64)?;
            out.extend(list.iter().map(Item::Node));
        } else if let Item::Node(Ipld::Map(map)) = item {
            budget.charge(map.len() as u64)?;
            out.extend(map.values().map(Item::Node));
        } else if let Some(bytes) = as_bytes(item) {
            budget.charge(bytes.len() as u64)?;
            out.extend(bytes.iter().copied().map(Item::Byte));
        } else if self.optional {
            out.push(Item::Null);
        } else {
            return Ok(false);
        }
        Ok(true)
    }
}

fn is_collection(item: Item<'_>) -> bool {
    as_list(item).is_some() || as_bytes(item).is_some() || matches!(item, Item::Node(Ipld::Map(_)))
}

fn as_list(item: Item<'_>) -> Option<&[Ipld]> {
    match item {
        Item::Node(Ipld::List(list)) => Some(list),
        Item::List(list) => Some(list),
        _ => None,
    }
}

fn as_bytes(item: Item<'_>) -> Option<&[u8]> {
    match item {
        Item::Node(Ipld::Bytes(bytes)) => Some(bytes),
        Item::Bytes(bytes) => Some(bytes),
        _ => None,
    }
}

/// The position of `index` (negative from the end) in a sequence of `len`, if in range.
fn list_index(len: usize, index: i64) -> Option<usize> {
    let len = i128::try_from(len).ok()?;
    let i = if index < 0 {
        len + i128::from(index)
    } else {
        i128::from(index)
    };
    if (0..len).contains(&i) {
        usize::try_from(i).ok()
    } else {
        None
    }
}

/// Clamped `[start, end)` bounds of a slice; an empty range when start is not before end.
fn slice_bounds(len: usize, start: Option<i64>, end: Option<i64>) -> (usize, usize) {
    let n = len as i128;
    let clamp = |bound: Option<i64>, default: i128| -> usize {
        let v = match bound {
            None => default,
            Some(b) if b < 0 => n + i128::from(b),
            Some(b) => i128::from(b),
        };
        // Within 0..=len, so it fits back into usize.
        v.clamp(0, n) as usize
    };
    let (a, b) = (clamp(start, 0), clamp(end, n));
    if a < b { (a, b) } else { (0, 0) }
}

/// End (exclusive, in bytes) of the field name starting at `start`; `start` when there is none.
/// Field names are identifiers: a letter or `_`, then letters, digits or `_`.
fn ident_end(text: &str, start: usize) -> usize {
    let mut end = start;
    for (i, c) in text[start..].char_indices() {
        let ok = if i == 0 {
            c.is_alphabetic() || c == '_'
        } else {
            c.is_alphanumeric() || c == '_'
        };
        if !ok {
            break;
        }
        end = start + i + c.len_utf8();
    }
    end
}

fn is_ident(key: &str) -> bool {
    !key.is_empty() && ident_end(key, 0) == key.len()
}

/// Parses the bracket segment starting at `open` (which holds `[`); returns it and the index after `]`.
fn bracket(text: &str, open: usize) -> Result<(SegmentKind, usize), String> {
    let b = text.as_bytes();
    match b.get(open + 1) {
        Some(b']') => return Ok((SegmentKind::Iterate, open + 2)),
        Some(b'"') => {
            // Find the closing quote, stepping over escapes; only ASCII bytes are compared, and those
            // never occur inside a multi-byte UTF-8 character.
            let mut j = open + 2;
            loop {
                match b.get(j) {
                    None => return Err("unterminated string key".into()),
                    Some(b'\\') => j += 2,
                    Some(b'"') => break,
                    Some(_) => j += 1,
                }
            }
            let key: String = serde_json::from_str(&text[open + 1..=j])
                .map_err(|e| format!("invalid string key: {e}"))?;
            if b.get(j + 1) != Some(&b']') {
                return Err("expected `]` after the string key".into());
            }
            return Ok((SegmentKind::Key(key), j + 2));
        }
        _ => {}
    }
    let close = text[open..]
        .find(']')
        .map(|k| open + k)
        .ok_or_else(|| "unterminated `[`".to_owned())?;
    let inner = &text[open + 1..close];
    let kind = match inner.split_once(':') {
        Some((a, b)) => {
            if a.is_empty() && b.is_empty() {
                return Err("a slice needs at least one bound".into());
            }
            let bound = |s: &str| {
                if s.is_empty() {
                    Ok(None)
                } else {
                    parse_int(s).map(Some)
                }
            };
            SegmentKind::Slice {
                start: bound(a)?,
                end: bound(b)?,
            }
        }
        None => SegmentKind::Index(parse_int(inner)?),
    };
    Ok((kind, close + 1))
}

/// A decimal integer with an optional leading `-` and nothing else (no `+`, no spaces).
fn parse_int(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|d| d.is_ascii_digit()) {
        return Err(format!("{s:?} is not an index, slice, or quoted key"));
    }
    s.parse().map_err(|_| format!("index {s} is out of range"))
}

/// Writes `s` as a JSON string literal.
fn write_json_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if u32::from(c) < 0x20 => write!(f, "\\u{:04x}", u32::from(c))?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

/// The canonical text, which parses back to an equal selector.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str(".");
        }
        for (i, seg) in self.segments.iter().enumerate() {
            let dotted = matches!(&seg.kind, SegmentKind::Key(k) if is_ident(k));
            if i == 0 && !dotted {
                f.write_str(".")?;
            }
            match &seg.kind {
                SegmentKind::Key(k) if dotted => write!(f, ".{k}")?,
                SegmentKind::Key(k) => {
                    f.write_str("[")?;
                    write_json_string(f, k)?;
                    f.write_str("]")?;
                }
                SegmentKind::Index(i) => write!(f, "[{i}]")?,
                SegmentKind::Slice { start, end } => {
                    f.write_str("[")?;
                    if let Some(a) = start {
                        write!(f, "{a}")?;
                    }
                    f.write_str(":")?;
                    if let Some(b) = end {
                        write!(f, "{b}")?;
                    }
                    f.write_str("]")?;
                }
                SegmentKind::Iterate => f.write_str("[]")?,
            }
            if seg.optional {
                f.write_str("?")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "selector_tests.rs"]
mod tests;
