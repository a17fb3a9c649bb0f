//! Containers: the official `ctn-v1` vectors, exact writer output, and every way the reader refuses
//! input.
//!
//! The vectors in `container-testvectors/` come from go-ucan. Each file is one container, named
//! after its form, holding ten freshly generated Ed25519-signed delegations; the six files were
//! generated separately, so they hold *different* tokens, and they list them in no particular order.
//! They carry no expected values beyond themselves, so the tests check what can be known
//! independently: each token is a delegation envelope whose signature verifies, and a general
//! DAG-CBOR decoder agrees with ours about the inner map.

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, VerifyingKey};
use ipld_core::ipld::Ipld;
use proptest::prelude::*;
use ucan_gateway::ucan::container::{
    Container, ContainerError, Format, MAX_DECOMPRESSED, MAX_TOKENS,
};

use crate::fixtures;

/// Each vector file with the form its name promises.
const VECTORS: [(&str, Format); 6] = [
    ("Bytes", Format::Raw),
    ("Base64StdPadding", Format::Base64Std),
    ("Base64URL", Format::Base64Url),
    ("BytesGzipped", Format::RawGzip),
    ("Base64StdPaddingGzipped", Format::Base64StdGzip),
    ("Base64URLGzipped", Format::Base64UrlGzip),
];

fn vector(name: &str) -> Vec<u8> {
    let path = fixtures::path(&format!("container-testvectors/{name}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The inner CBOR of a container, unwrapped without our reader so the two can be compared.
fn independent_inner_cbor(bytes: &[u8], format: Format) -> Vec<u8> {
    let body = &bytes[1..];
    let body = match format {
        Format::Base64Std | Format::Base64StdGzip => STANDARD.decode(body).unwrap(),
        Format::Base64Url | Format::Base64UrlGzip => URL_SAFE_NO_PAD.decode(body).unwrap(),
        Format::Raw | Format::RawGzip => body.to_vec(),
    };
    if format.is_gzipped() {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut out).unwrap();
        out
    } else {
        body
    }
}

fn ctn_map(tokens: &[Vec<u8>]) -> Ipld {
    let list = tokens.iter().cloned().map(Ipld::Bytes).collect();
    Ipld::Map(BTreeMap::from([("ctn-v1".to_string(), Ipld::List(list))]))
}

/// Checks that `token` is a delegation envelope signed by its issuer, and returns its command.
fn check_signed_delegation(token: &[u8]) -> String {
    let Ipld::List(parts) = serde_ipld_dagcbor::from_slice::<Ipld>(token).unwrap() else {
        panic!("envelope is not a list");
    };
    let [Ipld::Bytes(sig), Ipld::Map(payload)] = parts.as_slice() else {
        panic!("envelope is not [signature, payload]: {parts:?}");
    };
    // Varsig header for Ed25519 over DAG-CBOR.
    assert_eq!(payload["h"], Ipld::Bytes(vec![0x34, 0xed, 0x01, 0x71]));
    let Ipld::Map(dlg) = &payload["ucan/dlg@1.0.0-rc.1"] else {
        panic!("payload has no delegation: {payload:?}");
    };
    let Ipld::String(iss) = &dlg["iss"] else {
        panic!("iss is not a string");
    };
    let (_, key) = multibase::decode(iss.strip_prefix("did:key:").unwrap()).unwrap();
    assert_eq!(key[..2], [0xed, 0x01], "issuer is not an Ed25519 did:key");
    let key = VerifyingKey::from_bytes(key[2..].try_into().unwrap()).unwrap();
    let sig = Signature::from_slice(sig).unwrap();

    // The signature covers the payload's DAG-CBOR bytes: everything after the 2-element array head
    // and the 64-byte signature (`82 58 40 <sig>`).
    assert_eq!(token[..3], [0x82, 0x58, 0x40]);
    key.verify_strict(&token[3 + 64..], &sig)
        .expect("token signature verifies");
    match &dlg["cmd"] {
        Ipld::String(cmd) => cmd.clone(),
        other => panic!("cmd is {other:?}"),
    }
}

#[test]
fn vectors_announce_the_form_their_name_promises() {
    for (name, format) in VECTORS {
        let bytes = vector(name);
        assert_eq!(Container::format_of(&bytes), Some(format), "{name}");
        assert_eq!(bytes[0], format.header(), "{name}");
    }
}

#[test]
fn vectors_hold_ten_signed_delegations_each() {
    let mut seen = Vec::new();
    for (name, _) in VECTORS {
        let container = Container::decode(&vector(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(container.tokens.len(), 10, "{name}");
        for token in &container.tokens {
            assert_eq!(token.len(), 414, "{name}: token size");
            assert_eq!(check_signed_delegation(token), "/foo/bar", "{name}");
        }
        seen.extend(container.tokens);
    }
    // Sixty distinct tokens: no vector repeats a token, within itself or across files.
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 60);
}

#[test]
fn vectors_list_tokens_unsorted_and_the_reader_keeps_their_order() {
    for (name, format) in VECTORS {
        let bytes = vector(name);
        let ours = Container::decode(&bytes).unwrap().tokens;
        let theirs: Ipld = serde_ipld_dagcbor::from_slice(&independent_inner_cbor(&bytes, format))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            theirs,
            ctn_map(&ours),
            "{name}: a general decoder disagrees"
        );
        assert!(
            !ours.is_sorted(),
            "{name}: expected the vector to be unsorted"
        );
    }
}

#[test]
fn vectors_re_encode_in_every_form_to_the_same_tokens() {
    for (name, original_format) in VECTORS {
        let container = Container::decode(&vector(name)).unwrap();
        let mut sorted = container.tokens.clone();
        sorted.sort();

        for format in Format::ALL {
            let encoded = container.encode(format);
            assert_eq!(Container::format_of(&encoded), Some(format));
            assert_eq!(
                encoded,
                container.encode(format),
                "{name}: not deterministic"
            );
            // Our inner CBOR is exactly what a DAG-CBOR encoder makes of the sorted list.
            let inner = independent_inner_cbor(&encoded, format);
            assert_eq!(
                inner,
                serde_ipld_dagcbor::to_vec(&ctn_map(&sorted)).unwrap()
            );
            let back = Container::decode(&encoded).unwrap();
            assert_eq!(back.tokens, sorted, "{name} as {format:?}");
        }

        // The same form as the vector decodes to the same inner map, up to token order.
        let again = Container::decode(&container.encode(original_format)).unwrap();
        let mut original = container.tokens;
        original.sort();
        assert_eq!(again.tokens, original, "{name}");
    }
}

#[test]
fn vectors_tolerate_whitespace_only_in_base64_forms() {
    for (name, format) in VECTORS {
        let bytes = vector(name);
        let expected = Container::decode(&bytes).unwrap();
        let mut padded = b" \t\r\n".to_vec();
        padded.extend_from_slice(&bytes);
        padded.extend_from_slice(b"\r\n");
        let mut trailing_newline = bytes.clone();
        trailing_newline.push(b'\n');
        if format.is_base64() {
            assert_eq!(Container::decode(&padded), Ok(expected.clone()), "{name}");
            assert_eq!(Container::decode(&trailing_newline), Ok(expected), "{name}");
        } else {
            assert_error(&padded, "whitespace before a binary container header");
            let err = Container::decode(&trailing_newline).unwrap_err();
            // Raw: the CBOR is followed by a stray byte; gzip: the byte is not a gzip member.
            let expected = if format.is_gzipped() {
                "invalid gzip data"
            } else {
                "1 trailing bytes after the container map"
            };
            assert!(err.to_string().contains(expected), "{name}: {err}");
        }
    }
}

/// `a1 66 "ctn-v1"`, the fixed prefix of every inner map.
const PREFIX: &[u8] = b"\xa1\x66ctn-v1";

fn raw(cbor_after_prefix: &[u8]) -> Vec<u8> {
    [b"@", PREFIX, cbor_after_prefix].concat()
}

fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[track_caller]
fn assert_error(input: &[u8], needle: &str) {
    match Container::decode(input) {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}")
        }
        Ok(c) => panic!("decoded {c:?}, expected an error containing {needle:?}"),
    }
}

#[test]
fn header_bytes_round_trip() {
    for format in Format::ALL {
        assert_eq!(Format::from_header(format.header()), Some(format));
    }
    let headers: Vec<u8> = Format::ALL.iter().map(|f| f.header()).collect();
    assert_eq!(headers, b"@BCMOP");
    for byte in (0..=u8::MAX).filter(|b| !headers.contains(b)) {
        assert_eq!(Format::from_header(byte), None);
    }
}

#[test]
fn writer_sorts_bytewise_and_drops_duplicates() {
    let container = Container {
        tokens: vec![
            b"b".to_vec(),
            b"ab".to_vec(),
            b"b".to_vec(),
            b"a".to_vec(),
            vec![],
        ],
    };
    // `[h'', h'61', h'6162', h'62']`: shorter prefixes first, the repeated "b" once.
    let expected = raw(b"\x84\x40\x41a\x42ab\x41b");
    assert_eq!(container.encode(Format::Raw), expected);
    assert_eq!(
        container.encode(Format::Base64Std),
        [b"B", STANDARD.encode(&expected[1..]).as_bytes()].concat()
    );
    assert_eq!(
        container.encode(Format::Base64Url),
        [b"C", URL_SAFE_NO_PAD.encode(&expected[1..]).as_bytes()].concat()
    );
}

#[test]
fn empty_container_round_trips() {
    let empty = Container::default();
    assert_eq!(empty.encode(Format::Raw), raw(b"\x80"));
    assert_eq!(empty.encode(Format::Base64Std), b"BoWZjdG4tdjGA");
    assert_eq!(empty.encode(Format::Base64Url), b"CoWZjdG4tdjGA");
    for format in Format::ALL {
        assert_eq!(
            Container::decode(&empty.encode(format)),
            Ok(Container::default())
        );
    }
}

#[test]
fn reader_keeps_order_and_duplicates() {
    let input = raw(b"\x83\x41b\x41a\x41b");
    let tokens = Container::decode(&input).unwrap().tokens;
    assert_eq!(tokens, [b"b".to_vec(), b"a".to_vec(), b"b".to_vec()]);
}

#[test]
fn large_tokens_round_trip_in_every_form() {
    // 70 000 bytes needs a 4-byte length head; 300 needs 2 bytes; 30 needs 1.
    let tokens: Vec<Vec<u8>> = [70_000usize, 300, 30, 0]
        .iter()
        .map(|&n| (0..n).map(|i| (i * 31 % 251) as u8).collect())
        .collect();
    let container = Container { tokens };
    let mut sorted = container.tokens.clone();
    sorted.sort();
    for format in Format::ALL {
        assert_eq!(
            Container::decode(&container.encode(format)).unwrap().tokens,
            sorted
        );
    }
}

#[test]
fn base64_must_match_the_header_exactly() {
    let cbor = &raw(b"\x81\x43\xfb\xff\xfe")[1..];
    let std = STANDARD.encode(cbor);
    let url = URL_SAFE_NO_PAD.encode(cbor);
    assert!(std.contains(['+', '/']) && std.ends_with('='), "{std}");
    assert!(url.contains(['-', '_']), "{url}");

    assert!(Container::decode(format!("B{std}").as_bytes()).is_ok());
    assert!(Container::decode(format!("C{url}").as_bytes()).is_ok());
    // URL alphabet or missing padding under the standard header.
    assert_error(
        format!("B{url}").as_bytes(),
        "invalid base64 (standard alphabet, padded)",
    );
    assert_error(
        format!("B{}", std.trim_end_matches('=')).as_bytes(),
        "invalid base64 (standard alphabet, padded)",
    );
    // Standard alphabet or padding under the URL header.
    assert_error(
        format!("C{std}").as_bytes(),
        "invalid base64 (URL alphabet, unpadded)",
    );
    assert_error(
        format!("C{url}=").as_bytes(),
        "invalid base64 (URL alphabet, unpadded)",
    );
    // Whitespace inside the text, and non-canonical trailing bits ("QQ==" is "A"; "QR==" is not).
    let (head, tail) = std.split_at(8);
    assert_error(format!("B{head}\n{tail}").as_bytes(), "invalid base64");
    assert_error(b"BQR==", "invalid base64");
}

#[test]
fn framing_errors() {
    assert_error(b"", "empty input");
    assert_error(b"  \n", "empty input");
    assert_error(b"A", "unknown header byte 0x41");
    assert_error(b"\x00", "unknown header byte 0x00");
    // The right content under a lowercase (unassigned) header.
    assert_error(b"boWZjdG4tdjGA", "unknown header byte 0x62");
}

#[test]
fn gzip_errors() {
    let good = gzip_bytes(&raw(b"\x81\x41x")[1..]);
    assert_eq!(
        Container::decode(&[b"M", &good[..]].concat())
            .unwrap()
            .tokens,
        [b"x".to_vec()]
    );
    assert_error(b"M", "invalid gzip data");
    assert_error(b"Mnot gzip at all", "invalid gzip data");
    assert_error(
        &[b"M", &good[..good.len() - 3]].concat(),
        "invalid gzip data",
    );
    let mut bad_crc = good.clone();
    let crc_at = bad_crc.len() - 8;
    bad_crc[crc_at] ^= 1;
    assert_error(&[b"M", &bad_crc[..]].concat(), "invalid gzip data");
    assert_error(&[b"M", &good[..], b"junk"].concat(), "invalid gzip data");
    // Gzip that inflates to something that is not a container.
    assert_error(&[b"M", &gzip_bytes(b"\x80")[..]].concat(), "found an array");
    // RFC 1952 allows several members; their outputs concatenate.
    let cbor = &raw(b"\x81\x41x")[1..];
    let (a, b) = cbor.split_at(5);
    let two = [b"M", &gzip_bytes(a)[..], &gzip_bytes(b)[..]].concat();
    assert_eq!(Container::decode(&two).unwrap().tokens, [b"x".to_vec()]);
}

#[test]
fn gzip_output_is_capped_at_max_decompressed() {
    // Inner map with a single token whose size puts the whole CBOR at exactly `size` bytes:
    // 8 bytes of prefix, 1 for the array head, 5 for the 4-byte-length token head.
    let container_of_size = |size: usize| {
        let mut cbor = PREFIX.to_vec();
        cbor.push(0x81);
        let len = u32::try_from(size - PREFIX.len() - 6).unwrap();
        cbor.push(0x5a);
        cbor.extend_from_slice(&len.to_be_bytes());
        cbor.resize(size, 0);
        gzip_bytes(&cbor)
    };

    let at_limit = container_of_size(MAX_DECOMPRESSED);
    let decoded = Container::decode(&[b"M", &at_limit[..]].concat()).unwrap();
    assert_eq!(decoded.tokens[0].len(), MAX_DECOMPRESSED - 14);

    let over = container_of_size(MAX_DECOMPRESSED + 1);
    // The bomb is small on the wire: about a thousandth of what it expands to.
    assert!(over.len() < MAX_DECOMPRESSED / 500, "{}", over.len());
    let limit = format!("expands beyond the {MAX_DECOMPRESSED}-byte limit");
    assert_error(&[b"M", &over[..]].concat(), &limit);
    assert_error(format!("O{}", STANDARD.encode(&over)).as_bytes(), &limit);
    assert_error(
        format!("P{}", URL_SAFE_NO_PAD.encode(&over)).as_bytes(),
        &limit,
    );
    // A limit, named as one.
    let err = Container::decode(&[b"M", &over[..]].concat()).unwrap_err();
    assert_eq!(
        (err.clone(), err.name()),
        (ContainerError::TooLarge, "ContainerTooLarge")
    );
}

#[test]
fn the_token_count_is_bounded_by_name() {
    let tokens = |n: usize| Container {
        tokens: (0..n as u32).map(|i| i.to_be_bytes().to_vec()).collect(),
    };
    for format in Format::ALL {
        let at_limit = tokens(MAX_TOKENS).encode(format);
        assert_eq!(
            Container::decode(&at_limit).unwrap().tokens.len(),
            MAX_TOKENS
        );
        let over = tokens(MAX_TOKENS + 1).encode(format);
        let err = Container::decode(&over).unwrap_err();
        assert_eq!(
            err,
            ContainerError::TooManyTokens {
                count: MAX_TOKENS as u64 + 1
            },
            "{format:?}"
        );
        assert_eq!(err.name(), "TooManyTokens");
        assert_eq!(
            err.to_string(),
            "the container holds 1025 tokens; at most 1024"
        );
    }
    // A count the bytes cannot back is a truncation, not the limit.
    let mut lie = PREFIX.to_vec();
    lie.extend_from_slice(&[0x9a, 0x00, 0x01, 0x00, 0x00]);
    assert_error(&raw(&lie[PREFIX.len()..]), "truncated");
    assert_eq!(
        Container::decode(&raw(&lie[PREFIX.len()..]))
            .unwrap_err()
            .name(),
        "MalformedContainer"
    );
}

#[test]
fn inner_cbor_errors() {
    let cases: &[(&[u8], &str)] = &[
        (b"@", "truncated CBOR: expected another item"),
        (
            b"@\x80",
            "expected a CBOR map at the top level, found an array",
        ),
        (
            b"@\x41x",
            "expected a CBOR map at the top level, found a byte string",
        ),
        (b"@\xa0", "exactly one key (`ctn-v1`), found 0"),
        (
            b"@\xa2\x66ctn-v1\x80\x61x\x80",
            "exactly one key (`ctn-v1`), found 2",
        ),
        (
            b"@\xa1\x01\x80",
            "top-level key must be a text string, found an unsigned integer",
        ),
        (
            b"@\xa1\x46ctn-v1\x80",
            "top-level key must be a text string, found a byte string",
        ),
        (
            b"@\xa1\x66ctn-v2\x80",
            "unsupported container version key \"ctn-v2\"",
        ),
        (
            b"@\xa1\x66ctn-v",
            "truncated CBOR: the top-level key runs past the end",
        ),
        (b"@\xa1\x66ctn-v1", "truncated CBOR: expected another item"),
        (
            b"@\xa1\x66ctn-v1\xa0",
            "`ctn-v1` must be an array of byte strings, found a map",
        ),
        (
            b"@\xa1\x66ctn-v1\x41x",
            "`ctn-v1` must be an array of byte strings, found a byte string",
        ),
        (
            b"@\xa1\x66ctn-v1\x82\x41x\x61y",
            "token 1 must be a byte string, found a text string",
        ),
        (
            b"@\xa1\x66ctn-v1\x81\xd8\x2a\x41x",
            "token 0 must be a byte string, found a tag",
        ),
        (
            b"@\xa1\x66ctn-v1\x81\xf6",
            "token 0 must be a byte string, found a simple value",
        ),
        (
            b"@\xa1\x66ctn-v1\x82\x41x",
            "truncated CBOR: expected another item",
        ),
        (
            b"@\xa1\x66ctn-v1\x81\x45abc",
            "truncated CBOR: a token runs past the end",
        ),
        (
            b"@\xa1\x66ctn-v1\x81\x59\x01",
            "truncated CBOR: an item head runs past the end",
        ),
        (
            b"@\xa1\x66ctn-v1\x9f\x41x\xff",
            "an array with an indefinite length is not allowed",
        ),
        (
            b"@\xa1\x66ctn-v1\x81\x5f\x41x\xff",
            "a byte string with an indefinite length",
        ),
        (
            b"@\xbf\x66ctn-v1\x80\xff",
            "a map with an indefinite length",
        ),
        (
            b"@\xa1\x66ctn-v1\x80\x00",
            "1 trailing bytes after the container map",
        ),
        (b"@\xa1\x66ctn-v1\x80\xa1\x66ctn-v1\x80", "9 trailing bytes"),
    ];
    for (input, needle) in cases {
        assert_error(input, needle);
    }
}

/// Tokens drawn partly from a tiny space, so duplicates and shared prefixes are common.
fn token() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(0u8..2, 0..3),
    ]
}

fn any_format() -> impl Strategy<Value = Format> {
    proptest::sample::select(Format::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_token_set_round_trips(
        tokens in proptest::collection::vec(token(), 0..12),
        format in any_format(),
    ) {
        let mut expected = tokens.clone();
        expected.sort();
        expected.dedup();
        let decoded = Container::decode(&Container { tokens }.encode(format)).unwrap();
        prop_assert_eq!(decoded.tokens, expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        format in any_format(),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut input = vec![format.header()];
        input.extend_from_slice(&body);
        let _ = Container::decode(&input);
    }

    #[test]
    fn corrupted_containers_never_panic(
        format in any_format(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1..=u8::MAX), 1..4),
    ) {
        let container = Container { tokens: vec![b"first".to_vec(), vec![7; 40]] };
        let mut input = container.encode(format);
        for (at, mask) in flips {
            let i = at.index(input.len());
            input[i] ^= mask;
        }
        let _ = Container::decode(&input);
    }
}
