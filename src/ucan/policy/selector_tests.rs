use ipld_core::ipld::Ipld;

use super::super::eval::Budget;
use super::*;
use crate::ipld::from_dag_json;

fn json(text: &str) -> Ipld {
    from_dag_json(text).unwrap_or_else(|e| panic!("bad test JSON {text}: {e}"))
}

/// Resolves `selector` on `args`, turning the result back into a plain value; `None` = unresolvable.
fn select(selector: &str, args: &Ipld) -> Option<Ipld> {
    let sel = Selector::parse(selector).unwrap_or_else(|e| panic!("{selector}: {e}"));
    let item = |i: &Item<'_>| match *i {
        Item::Node(n) => n.clone(),
        Item::Null => Ipld::Null,
        Item::Byte(b) => Ipld::Integer(b.into()),
        Item::Bytes(b) => Ipld::Bytes(b.to_vec()),
        Item::List(l) => Ipld::List(l.to_vec()),
    };
    match sel
        .select(Item::Node(args), &mut Budget::new())
        .expect("budget")
    {
        None => None,
        Some(Selected::One(i)) => Some(item(&i)),
        Some(Selected::Many(items)) => Some(Ipld::List(items.iter().map(item).collect())),
    }
}

fn email() -> Ipld {
    json(
        r#"{
        "from": "alice@example.com",
        "to": ["bob@example.com", "carol@not.example.com", "dan@example.com"],
        "cc": ["fraud@example.com"],
        "title": "Meeting Confirmation",
        "body": "I'll see you on Tuesday"
    }"#,
    )
}

#[test]
fn spec_example_table() {
    let args = email();
    assert_eq!(select(".", &args), Some(args.clone()));
    assert_eq!(
        select(".title", &args),
        Some(json(r#""Meeting Confirmation""#))
    );
    assert_eq!(select(".cc", &args), Some(json(r#"["fraud@example.com"]"#)));
    assert_eq!(
        select(".to[1]", &args),
        Some(json(r#""carol@not.example.com""#))
    );
    assert_eq!(select(".to[-1]", &args), Some(json(r#""dan@example.com""#)));
    assert_eq!(select(".to[99]?", &args), Some(Ipld::Null));
    assert_eq!(select(".to[99]", &args), None);
}

#[test]
fn spec_bytes_example() {
    let args = json(r#"{"/": {"bytes": "1qnBjPjE"}}"#);
    assert_eq!(args, Ipld::Bytes(vec![0xd6, 0xa9, 0xc1, 0x8c, 0xf8, 0xc4]));
    assert_eq!(select(".[3]", &args), Some(Ipld::Integer(140)));
    assert_eq!(select(".[-1]", &args), Some(Ipld::Integer(0xc4)));
    assert_eq!(select(".[1:3]", &args), Some(Ipld::Bytes(vec![0xa9, 0xc1])));
    assert_eq!(select(".[6]", &args), None);
    assert_eq!(
        select(".[]", &args),
        Some(json("[214, 169, 193, 140, 248, 196]"))
    );
    assert_eq!(select(".a", &args), None);
}

#[test]
fn keys() {
    let args =
        json(r#"{"a": {"b": 1}, ".": 2, "$_*": 3, "1": 4, "": 5, "q\"\\": 6, "é": 7, "bar0_": 8}"#);
    assert_eq!(select(".a.b", &args), Some(Ipld::Integer(1)));
    assert_eq!(select(r#".["a"]["b"]"#, &args), Some(Ipld::Integer(1)));
    assert_eq!(select(r#".a["b"]"#, &args), Some(Ipld::Integer(1)));
    assert_eq!(select(r#".["."]"#, &args), Some(Ipld::Integer(2)));
    assert_eq!(select(r#".["$_*"]"#, &args), Some(Ipld::Integer(3)));
    assert_eq!(select(r#".["1"]"#, &args), Some(Ipld::Integer(4)));
    assert_eq!(select(r#".[""]"#, &args), Some(Ipld::Integer(5)));
    assert_eq!(select(r#".["q\"\\"]"#, &args), Some(Ipld::Integer(6)));
    assert_eq!(select(r#".["\u00e9"]"#, &args), Some(Ipld::Integer(7)));
    assert_eq!(select(".é", &args), Some(Ipld::Integer(7)));
    assert_eq!(select(".bar0_", &args), Some(Ipld::Integer(8)));
    // `[1]` is an index, which does not apply to a map.
    assert_eq!(select(".[1]", &args), None);
}

#[test]
fn missing_keys_are_null_but_nothing_resolves_below_them() {
    let args = json(r#"{"a": {"b": null}, "s": "str"}"#);
    assert_eq!(select(".nope", &args), Some(Ipld::Null));
    assert_eq!(select(".a.nope", &args), Some(Ipld::Null));
    assert_eq!(select(".nope.deeper", &args), None);
    assert_eq!(select(".nope.deeper?", &args), Some(Ipld::Null));
    assert_eq!(select(".a.b.c", &args), None);
    // A key on a non-map fails; `?` makes that `null`.
    assert_eq!(select(".s.x", &args), None);
    assert_eq!(select(".s.x?", &args), Some(Ipld::Null));
    assert_eq!(select(".s.x???", &args), Some(Ipld::Null));
}

#[test]
fn resolution_stops_at_the_first_failure_even_before_an_optional() {
    let args = json(r#"{"list": [1]}"#);
    assert_eq!(select(".list[5].x?", &args), None);
    assert_eq!(select(".list[5]?.x", &args), None);
    assert_eq!(select(".list[5]?.x?", &args), Some(Ipld::Null));
    assert_eq!(select(".list.x?[0]", &args), None);
}

#[test]
fn indexes() {
    let args = json("[10, 20, 30]");
    assert_eq!(select(".[0]", &args), Some(Ipld::Integer(10)));
    assert_eq!(select(".[2]", &args), Some(Ipld::Integer(30)));
    assert_eq!(select(".[-3]", &args), Some(Ipld::Integer(10)));
    assert_eq!(select(".[-4]", &args), None);
    assert_eq!(select(".[3]", &args), None);
    assert_eq!(select(".[3]?", &args), Some(Ipld::Null));
    assert_eq!(select(&format!(".[{}]", i64::MIN), &args), None);
    assert_eq!(select(&format!(".[{}]", i64::MAX), &args), None);
    assert_eq!(
        select(".[0]", &json(r#""str""#)),
        None,
        "strings are not indexable"
    );
}

#[test]
fn slices() {
    let args = json("[0, 1, 2, 3, 4]");
    let cases = [
        ("[1:3]", "[1, 2]"),
        ("[2:]", "[2, 3, 4]"),
        ("[:2]", "[0, 1]"),
        ("[0:-2]", "[0, 1, 2]"),
        ("[-2:]", "[3, 4]"),
        ("[:-4]", "[0]"),
        ("[3:1]", "[]"),
        ("[7:11]", "[]"),
        ("[-99:99]", "[0, 1, 2, 3, 4]"),
        ("[-99:-98]", "[]"),
    ];
    for (sel, expected) in cases {
        assert_eq!(
            select(&format!(".{sel}"), &args),
            Some(json(expected)),
            "{sel}"
        );
    }
    assert_eq!(select(".[1:3][0]", &args), Some(Ipld::Integer(1)));
    assert_eq!(select(".[1:2]", &json("{}")), None);
    assert_eq!(select(".[1:2]?", &json("{}")), Some(Ipld::Null));
}

#[test]
fn iterate_is_a_noop_on_lists_and_takes_values_of_maps() {
    let list = json("[1, 2]");
    assert_eq!(select(".[]", &list), Some(list.clone()));
    let map = json(r#"{"b": 2, "a": 1}"#);
    assert_eq!(select(".[]", &map), Some(json("[1, 2]")));
    assert_eq!(select(".[]", &json("5")), None);
    assert_eq!(select(".[]", &Ipld::Null), None);
    assert_eq!(select(".[]?", &Ipld::Null), Some(Ipld::Null));
}

#[test]
fn iterate_applies_the_rest_of_the_selector_to_each_child() {
    let args = json(r#"{"a": [{"b": 1}, {"b": 2}, {"z": 3}], "m": {"x": [1, 2], "y": [3]}}"#);
    assert_eq!(select(".a[].b", &args), Some(json("[1, 2, null]")));
    assert_eq!(select(".a[].b.c", &args), None);
    assert_eq!(select(".a[].z?", &args), Some(json("[null, null, 3]")));
    assert_eq!(
        select(".a[][0]", &args),
        None,
        "a child that is not a list fails the selection"
    );
    assert_eq!(select(".a[][0]?", &args), Some(json("[null, null, null]")));
    // Nested `[]` flattens, as jq streams do.
    assert_eq!(select(".m[][]", &args), Some(json("[1, 2, 3]")));
    assert_eq!(select(".m[]", &args), Some(json("[[1, 2], [3]]")));
    assert_eq!(select(".m[][0]", &args), Some(json("[1, 3]")));
    assert_eq!(select(".m[][1]", &args), None);
    assert_eq!(select(".m[][1]?", &args), Some(json("[2, null]")));
    assert_eq!(select(".a[][]?", &args), Some(json("[1, 2, 3]")));
    assert_eq!(
        select(".a[1:][]", &args),
        Some(json(r#"[{"b": 2}, {"z": 3}]"#))
    );
    assert_eq!(select(".a[1:][].b", &args), Some(json("[2, null]")));
    // `[]?` on a non-collection is `null`, and segments after it apply to that `null`.
    assert_eq!(select(".a[0].b[]?", &args), Some(Ipld::Null));
    assert_eq!(select(".a[0].b[]?.c", &args), None);
    assert_eq!(select(".a[0].b[]?.c?", &args), Some(Ipld::Null));
}

#[test]
fn canonical_printing_round_trips() {
    let cases = [
        (".", "."),
        (".?", "."),
        (".a", ".a"),
        (".a.b", ".a.b"),
        (r#".["a"]"#, ".a"),
        (r#".["a b"]"#, r#".["a b"]"#),
        (r#".x["a\nb"]"#, r#".x["a\nb"]"#),
        (r#".["\u0001"]"#, r#".["\u0001"]"#),
        (".a.[0]", ".a[0]"),
        (".[0]", ".[0]"),
        (".[-1]?", ".[-1]?"),
        (".a???", ".a?"),
        (".[1:]", ".[1:]"),
        (".[:-1]", ".[:-1]"),
        (".[-0]", ".[0]"),
        (".a[]?.b", ".a[]?.b"),
        (".[]", ".[]"),
    ];
    for (input, canonical) in cases {
        let sel = Selector::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(sel.to_string(), canonical, "{input}");
        assert_eq!(Selector::parse(canonical), Ok(sel), "{input}");
    }
    assert_eq!(Selector::parse("."), Ok(Selector::identity()));
}

#[test]
fn malformed_selectors_are_rejected() {
    let cases = [
        ("", "must begin with `.`"),
        ("a", "must begin with `.`"),
        ("[0]", "must begin with `.`"),
        ("..", "`..` is not allowed"),
        (".a..b", "`..` is not allowed"),
        ("...", "`..` is not allowed"),
        (".a.", "trailing `.`"),
        (".1", "expected a field name"),
        (".a-b", "unexpected character '-'"),
        (".a b", "unexpected character ' '"),
        (".a.?", "expected a field name"),
        (".[", "unterminated `[`"),
        (".[0", "unterminated `[`"),
        (".[:]", "at least one bound"),
        (".[+1]", "is not an index"),
        (".[ 1]", "is not an index"),
        (".[a]", "is not an index"),
        (".[1:2:3]", "is not an index"),
        (".[99999999999999999999]", "out of range"),
        (r#".["a"#, "unterminated string key"),
        (r#".["a\"]"#, "unterminated string key"),
        (r#".["a"x]"#, "expected `]`"),
        (r#".["\x"]"#, "invalid string key"),
        (".]", "expected a field name"),
        (".a]", "unexpected character ']'"),
    ];
    for (input, reason) in cases {
        match Selector::parse(input) {
            Ok(sel) => panic!("{input:?} parsed as {sel:?}"),
            Err(e) => assert!(
                e.contains(reason),
                "{input:?}: {e:?} should mention {reason:?}"
            ),
        }
    }
    let long = format!(".{}", "a".repeat(MAX_SELECTOR_LEN));
    assert!(Selector::parse(&long).is_err_and(|e| e.contains("longer than")));
}

#[test]
fn iteration_is_charged_to_the_budget() {
    let args = Ipld::List((0..100).map(Ipld::Integer).collect());
    let sel = Selector::parse(".[][]?").expect("valid");
    assert!(
        sel.select(Item::Node(&args), &mut Budget::with(50))
            .is_err()
    );
    assert!(
        sel.select(Item::Node(&args), &mut Budget::with(1_000))
            .is_ok()
    );
}

proptest::proptest! {
    #[test]
    fn parsing_arbitrary_text_never_panics(text in r#"\.[a-z0-9\.\[\]\?:"\\-]{0,16}"#) {
        if let Ok(sel) = Selector::parse(&text) {
            proptest::prop_assert_eq!(Selector::parse(&sel.to_string()), Ok(sel));
        }
    }

    #[test]
    fn any_key_round_trips_through_canonical_text(key in "\\PC{0,8}|[\\x00-\\x7f]{0,8}", optional: bool) {
        let sel = Selector { segments: vec![Segment { kind: SegmentKind::Key(key), optional }] };
        proptest::prop_assert_eq!(Selector::parse(&sel.to_string()), Ok(sel));
    }
}
