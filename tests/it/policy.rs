//! The policy language through its public API: the official fixtures, every operator and selector
//! form, parse errors with their paths, the safety bounds, and a parse/print round trip.

use std::collections::BTreeSet;

use ipld_core::ipld::Ipld;
use proptest::prelude::*;
use ucan_gateway::ipld::from_dag_json;
use ucan_gateway::ucan::policy::{MAX_DEPTH, MAX_LITERAL_DEPTH, Mismatch, Policy, PolicyError};

use crate::fixtures;

fn json(text: &str) -> Ipld {
    from_dag_json(text).unwrap_or_else(|e| panic!("bad test JSON {text}: {e}"))
}

fn policy(text: &str) -> Policy {
    Policy::from_json(text).unwrap_or_else(|e| panic!("{text} should parse: {e}"))
}

/// Whether the one-statement policy `[statement]` holds on `args`.
fn holds(statement: &str, args: &str) -> bool {
    policy(&format!("[{statement}]")).check(&json(args)).is_ok()
}

fn parse_error(text: &str) -> PolicyError {
    match Policy::from_json(text) {
        Ok(p) => panic!("{text} should not parse, got {p:?}"),
        Err(e) => e,
    }
}

/// `fixtures/policy.json`: `valid` cases must pass every policy, `invalid` cases must fail every one.
#[test]
fn official_fixtures() {
    let path = fixtures::path("policy.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let Ipld::Map(sections) = json(&text) else {
        panic!("fixture root is not a map")
    };
    // A section we do not know (say, malformed policies) must not be skipped silently.
    let names: BTreeSet<&str> = sections.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["invalid", "valid"]),
        "unexpected fixture sections"
    );

    let mut checked = 0;
    for (section, expect_pass) in [("valid", true), ("invalid", false)] {
        let Some(Ipld::List(cases)) = sections.get(section) else {
            panic!("{section} is not a list")
        };
        for (c, case) in cases.iter().enumerate() {
            let Ipld::Map(case) = case else {
                panic!("{section}[{c}] is not a map")
            };
            let args = case
                .get("args")
                .unwrap_or_else(|| panic!("{section}[{c}] has no args"));
            let Some(Ipld::List(policies)) = case.get("policies") else {
                panic!("{section}[{c}]: no policies")
            };
            for (p, value) in policies.iter().enumerate() {
                let parsed = Policy::parse(value)
                    .unwrap_or_else(|e| panic!("{section}[{c}] policy {p}: {e}"));
                let result = parsed.check(args);
                assert_eq!(
                    result.is_ok(),
                    expect_pass,
                    "{section}[{c}] policy {p}: {result:?}"
                );
                // The canonical form behaves the same.
                let reparsed = Policy::parse(&parsed.to_ipld()).expect("canonical form parses");
                assert_eq!(reparsed, parsed);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 25, "every fixture policy was checked");
}

#[test]
fn empty_policy_passes_everything() {
    for p in [Policy::empty(), Policy::default(), policy("[]")] {
        assert!(p.is_empty());
        assert_eq!(p.check(&json(r#"{"a": 1}"#)), Ok(()));
        assert_eq!(p.check(&Ipld::Null), Ok(()));
        assert_eq!(p.to_ipld(), Ipld::List(vec![]));
    }
    assert!(!policy(r#"[["==", ".", null]]"#).is_empty());
}

#[test]
fn equality_is_deep_and_number_kind_agnostic() {
    let args = r#"{"a": [1, 2, {"b": 3}], "f": 2.5, "n": null, "s": "x", "t": true, "by": {"/": {"bytes": "AQI"}}}"#;
    assert!(holds(r#"["==", ".a", [1, 2, {"b": 3}]]"#, args));
    assert!(holds(r#"["==", ".a", [1.0, 2, {"b": 3.0}]]"#, args));
    assert!(!holds(r#"["==", ".a", [1, 2, {"b": 4}]]"#, args));
    assert!(!holds(r#"["==", ".a", [1, 2]]"#, args));
    assert!(!holds(r#"["==", ".a", [1, 2, {"b": 3, "c": 4}]]"#, args));
    assert!(holds(r#"["==", ".f", 2.5]"#, args));
    assert!(!holds(r#"["==", ".f", 2]"#, args));
    assert!(holds(r#"["==", ".n", null]"#, args));
    assert!(holds(r#"["==", ".missing", null]"#, args));
    assert!(holds(r#"["==", ".s", "x"]"#, args));
    assert!(
        !holds(r#"["==", ".t", 1]"#, args),
        "booleans are not numbers"
    );
    assert!(holds(r#"["==", ".by", {"/": {"bytes": "AQI"}}]"#, args));
    assert!(
        !holds(r#"["==", ".by", [1, 2]]"#, args),
        "bytes are not a list"
    );
    assert!(
        !holds(r#"["==", ".s.deeper", null]"#, args),
        "unresolvable is false"
    );
}

#[test]
fn inequality() {
    let args = r#"{"b": 1, "s": "x", "x": {"y": 1}}"#;
    for other in ["2", "1.5", "null", r#""1""#, "true", "[1]", r#"{"b": 1}"#] {
        assert!(
            holds(&format!(r#"["!=", ".b", {other}]"#), args),
            "1 != {other}"
        );
    }
    assert!(!holds(r#"["!=", ".b", 1]"#, args));
    assert!(!holds(r#"["!=", ".b", 1.0]"#, args));
    assert!(
        holds(r#"["!=", ".missing", 1]"#, args),
        "a missing key is null"
    );
    // An unresolvable selector makes `!=` false too (while `not ==` is true).
    assert!(!holds(r#"["!=", ".s.deeper", 1]"#, args));
    assert!(holds(r#"["not", ["==", ".s.deeper", 1]]"#, args));
}

#[test]
fn numeric_comparisons() {
    let args = r#"{"i": 1, "f": 1.5, "big": 9007199254740993, "s": "2", "n": null, "l": [1]}"#;
    let cases = [
        (r#"["<", ".i", 2]"#, true),
        (r#"["<", ".i", 1]"#, false),
        (r#"["<", ".i", 1.5]"#, true),
        (r#"["<=", ".i", 1]"#, true),
        (r#"["<=", ".i", 1.0]"#, true),
        (r#"["<=", ".i", 0.999]"#, false),
        (r#"[">", ".i", 0]"#, true),
        (r#"[">", ".i", 1]"#, false),
        (r#"[">", ".f", 1]"#, true),
        (r#"[">=", ".f", 1.5]"#, true),
        (r#"[">=", ".f", 2]"#, false),
        (r#"[">=", ".i", -1]"#, true),
        // 2^53 + 1 against 2^53 as a float: exact, not rounded.
        (r#"[">", ".big", 9007199254740992.0]"#, true),
        (r#"["<", ".s", 3]"#, false),
        (r#"["<", ".n", 3]"#, false),
        (r#"[">=", ".l", 0]"#, false),
        (r#"[">=", ".missing", 0]"#, false),
        (r#"[">=", ".i.deeper", 0]"#, false),
    ];
    for (statement, expected) in cases {
        assert_eq!(holds(statement, args), expected, "{statement}");
    }
}

#[test]
fn like() {
    let args = r#"{"email": "bob@example.com", "star": "a*b", "n": 5, "l": ["x@example.com"]}"#;
    assert!(holds(r#"["like", ".email", "*@example.com"]"#, args));
    assert!(holds(r#"["like", ".email", "bob@*"]"#, args));
    assert!(holds(r#"["like", ".email", "*"]"#, args));
    assert!(!holds(r#"["like", ".email", "*@example.org"]"#, args));
    assert!(holds(r#"["like", ".star", "a\\*b"]"#, args));
    assert!(!holds(r#"["like", ".email", "a\\*b"]"#, args));
    assert!(
        !holds(r#"["like", ".n", "*"]"#, args),
        "non-strings never match"
    );
    assert!(!holds(r#"["like", ".l", "*"]"#, args));
    assert!(!holds(r#"["like", ".missing", "*"]"#, args));
}

#[test]
fn connectives() {
    let args = r#"{"name": "Katie", "age": 35, "nationalities": ["Canadian", "South African"]}"#;
    assert!(holds(r#"["and", []]"#, args));
    assert!(holds(r#"["or", []]"#, args));
    assert!(holds(
        r#"["and", [["==", ".name", "Katie"], [">=", ".age", 21]]]"#,
        args
    ));
    assert!(!holds(
        r#"["and", [["==", ".name", "Katie"], ["==", ".nationalities", ["American"]]]]"#,
        args
    ));
    assert!(holds(
        r#"["or", [["==", ".name", "Bob"], [">", ".age", 30]]]"#,
        args
    ));
    assert!(!holds(
        r#"["or", [["==", ".name", "Bob"], [">", ".age", 45]]]"#,
        args
    ));
    assert!(holds(r#"["not", ["==", ".name", "Bob"]]"#, args));
    assert!(!holds(r#"["not", ["==", ".name", "Katie"]]"#, args));
    assert!(holds(r#"["not", ["not", ["==", ".name", "Katie"]]]"#, args));
    assert!(!holds(r#"["not", ["and", []]]"#, args));
}

#[test]
fn quantifiers() {
    let args = r#"{"a": [{"b": 1}, {"b": 2}, {"z": [7, 8, 9]}], "m": {"x": 1, "y": 2}, "e": [], "s": "str"}"#;
    assert!(
        !holds(r#"["all", ".a", [">", ".b", 0]]"#, args),
        "the spec's example: {{z}} has no .b"
    );
    assert!(holds(r#"["any", ".a", ["==", ".b", 2]]"#, args));
    assert!(!holds(r#"["any", ".a", ["==", ".b", 3]]"#, args));
    assert!(
        holds(r#"["all", ".m", [">", ".", 0]]"#, args),
        "maps quantify over values"
    );
    assert!(!holds(r#"["all", ".m", [">", ".", 1]]"#, args));
    assert!(holds(r#"["any", ".m", ["==", ".", 2]]"#, args));
    assert!(
        holds(r#"["all", ".e", ["==", ".", 0]]"#, args),
        "all over nothing holds"
    );
    assert!(
        !holds(r#"["any", ".e", ["==", ".", 0]]"#, args),
        "any over nothing fails"
    );
    for sel in [".s", ".missing", ".a[0].b", ".s.x"] {
        assert!(
            !holds(&format!(r#"["all", "{sel}", ["==", ".", 0]]"#), args),
            "{sel} is no collection"
        );
        assert!(
            !holds(&format!(r#"["any", "{sel}", ["==", ".", 0]]"#), args),
            "{sel} is no collection"
        );
    }
    // Nested quantification (the spec's newsletter example).
    let news = r#"{"newsletters": {"xmas": {"recipients": [{"email": "fraud@example.com"}, {"email": "a@b.c"}]},
                                   "summer": {"recipients": [{"email": "fraud@example.com"}]}}}"#;
    let statement =
        r#"["all", ".newsletters", ["any", ".recipients", ["==", ".email", "fraud@example.com"]]]"#;
    assert!(holds(statement, news));
    let news = r#"{"newsletters": {"xmas": {"recipients": [{"email": "a@b.c"}]}}}"#;
    assert!(!holds(statement, news));
}

#[test]
fn selector_forms_through_statements() {
    let args = r#"{"from": "alice@example.com", "to": ["bob@example.com", "carol@not.example.com", "dan@example.com"],
                   "cc": ["fraud@example.com"], "title": "Meeting Confirmation", "odd key": {"1": true},
                   "bytes": {"/": {"bytes": "1qnBjPjE"}}}"#;
    let cases = [
        (r#"["==", ".title", "Meeting Confirmation"]"#, true),
        (r#"["==", ".cc", ["fraud@example.com"]]"#, true),
        (r#"["==", ".to[1]", "carol@not.example.com"]"#, true),
        (r#"["==", ".to[-1]", "dan@example.com"]"#, true),
        (r#"["==", ".to[99]?", null]"#, true),
        (r#"["==", ".to[99]", null]"#, false),
        (
            r#"["==", ".to[1:]", ["carol@not.example.com", "dan@example.com"]]"#,
            true,
        ),
        (r#"["==", ".to[:-2]", ["bob@example.com"]]"#, true),
        (r#"["==", ".[\"odd key\"][\"1\"]", true]"#, true),
        (r#"["==", ".bytes[3]", 140]"#, true),
        (r#"["==", ".title???", "Meeting Confirmation"]"#, true),
        (r#"["==", ".title.x?", null]"#, true),
        (r#"["==", ".nope.x?", null]"#, true),
        (r#"["==", ".nope.x", null]"#, false),
        (
            r#"["==", ".to[]", ["bob@example.com", "carol@not.example.com", "dan@example.com"]]"#,
            true,
        ),
        (r#"["all", ".to[]", ["like", ".", "*example.com"]]"#, true),
        (r#"["all", ".to", ["like", ".", "*@example.com"]]"#, false),
    ];
    for (statement, expected) in cases {
        assert_eq!(holds(statement, args), expected, "{statement}");
    }
    // The whole `args` under the identity selector.
    assert!(holds(r#"["==", ".", {"a": 1}]"#, r#"{"a": 1}"#));
}

#[test]
fn iterate_reaches_through_the_rest_of_the_selector() {
    let args =
        r#"{"groups": {"admins": {"members": ["ann", "bo"]}, "users": {"members": ["cy"]}}}"#;
    assert!(holds(
        r#"["any", ".groups[].members[]", ["==", ".", "cy"]]"#,
        args
    ));
    assert!(holds(
        r#"["all", ".groups[].members[]", ["like", ".", "*"]]"#,
        args
    ));
    assert!(holds(
        r#"["==", ".groups[].members[]", ["ann", "bo", "cy"]]"#,
        args
    ));
    assert!(holds(
        r#"["==", ".groups[].members[0]", ["ann", "cy"]]"#,
        args
    ));
    assert!(
        !holds(r#"["==", ".groups[].members[1]", ["bo", null]]"#, args),
        "users has no [1]"
    );
    assert!(holds(
        r#"["==", ".groups[].members[1]?", ["bo", null]]"#,
        args
    ));
}

#[test]
fn mismatch_names_the_first_failing_statement() {
    let p = policy(r#"[["==", ".a", 1], ["like", ".b", "x*"], ["==", ".c", 3]]"#);
    assert_eq!(p.check(&json(r#"{"a": 1, "b": "xy", "c": 3}"#)), Ok(()));
    let err = p
        .check(&json(r#"{"a": 1, "b": "no", "c": 4}"#))
        .expect_err("b fails");
    assert_eq!(
        err,
        Mismatch {
            index: 1,
            statement: r#"["like",".b","x*"]"#.to_owned(),
            exhausted: false,
        }
    );
    let err = p.check(&json(r#"{"a": 2}"#)).expect_err("a fails");
    assert_eq!(err.index, 0);
}

#[test]
fn parse_errors_say_where_and_why() {
    let cases = [
        (r#"{"a": 1}"#, "top level", "must be a list of statements"),
        ("[1]", "[0]", "a statement must be a list"),
        ("[[]]", "[0]", "must not be empty"),
        ("[[1, \".\", 2]]", "[0][0]", "operator must be a string"),
        (
            r#"[["===", ".", 1]]"#,
            "[0][0]",
            r#"unknown operator "===""#,
        ),
        (r#"[["==", ".a"]]"#, "[0]", r#""==" takes 3 elements"#),
        (
            r#"[["not", ["==", ".", 1], 2]]"#,
            "[0]",
            r#""not" takes 2 elements"#,
        ),
        (r#"[["==", 1, 1]]"#, "[0][1]", "selector must be a string"),
        (r#"[["==", "a", 1]]"#, "[0][1]", "must begin with `.`"),
        (r#"[["==", ".a..b", 1]]"#, "[0][1]", "`..` is not allowed"),
        (r#"[["<", ".a", "1"]]"#, "[0][2]", r#""<" needs a number"#),
        (
            r#"[[">=", ".a", null]]"#,
            "[0][2]",
            r#"">=" needs a number"#,
        ),
        (r#"[["like", ".a", 1]]"#, "[0][2]", "needs a string pattern"),
        (
            r#"[["and", ["==", ".", 1]]]"#,
            "[0][1][0]",
            "a statement must be a list",
        ),
        (r#"[["or", {}]]"#, "[0][1]", "needs a list of statements"),
        (r#"[["and", 1]]"#, "[0][1]", "needs a list of statements"),
        (
            r#"[["==", ".", 1], ["and", [["==", ".", 1], ["~", ".", 1]]]]"#,
            "[1][1][1][0]",
            "unknown operator",
        ),
        (
            r#"[["not", ["all", ".", ["nope"]]]]"#,
            "[0][1][2][0]",
            "unknown operator",
        ),
        (
            r#"[["any", ".x", 5]]"#,
            "[0][2]",
            "a statement must be a list",
        ),
        (
            "[[\"all\", \".x[\", [\"==\", \".\", 1]]]",
            "[0][1]",
            "unterminated",
        ),
        ("not json", "top level", "not valid DAG-JSON"),
    ];
    for (text, path, reason) in cases {
        let e = parse_error(text);
        assert_eq!(e.path, path, "{text}: {e}");
        assert!(
            e.reason.contains(reason),
            "{text}: {:?} should mention {reason:?}",
            e.reason
        );
    }
    let e = parse_error(r#"[["==", 1, 1]]"#);
    assert_eq!(
        e.to_string(),
        "malformed policy at [0][1]: the selector must be a string, found an integer"
    );
}

/// `depth` statements nested with `not`, the innermost a comparison.
fn nested_nots(depth: usize) -> String {
    let mut s = r#"["==", ".", 1]"#.to_owned();
    for _ in 1..depth {
        s = format!(r#"["not", {s}]"#);
    }
    format!("[{s}]")
}

#[test]
fn nesting_is_bounded() {
    let ok = policy(&nested_nots(MAX_DEPTH));
    // An odd number of `not`s around a true comparison.
    assert_eq!(ok.check(&json("1")).is_ok(), MAX_DEPTH % 2 == 1);
    let e = parse_error(&nested_nots(MAX_DEPTH + 1));
    assert!(e.reason.contains("nested more than 32"), "{e}");
    assert_eq!(e.path, format!("[0]{}", "[1]".repeat(MAX_DEPTH)));
    // Far deeper input is rejected just the same, without exhausting the stack.
    let deep = Ipld::List(vec![(0..10_000).fold(Ipld::Null, |inner, _| {
        Ipld::List(vec![Ipld::String("not".into()), inner])
    })]);
    assert!(Policy::parse(&deep).is_err());

    let literal = |depth: usize| (1..depth).fold("0".to_owned(), |s, _| format!("[{s}]"));
    policy(&format!(r#"[["==", ".", {}]]"#, literal(MAX_LITERAL_DEPTH)));
    let e = parse_error(&format!(
        r#"[["!=", ".", {}]]"#,
        literal(MAX_LITERAL_DEPTH + 1)
    ));
    assert_eq!(e.path, "[0][2]");
}

#[test]
fn limits_are_named_in_parse_errors() {
    use ucan_gateway::ucan::ErrorKind;
    use ucan_gateway::ucan::policy::MAX_SELECTOR_LEN;

    let e = parse_error(&nested_nots(MAX_DEPTH + 1));
    assert_eq!(e.kind, ErrorKind::PolicyTooDeep, "{e}");
    assert!(e.to_string().starts_with("PolicyTooDeep: "), "{e}");
    assert!(e.reason.contains("at most 32"), "{e}");
    let literal = (0..MAX_LITERAL_DEPTH).fold("0".to_owned(), |s, _| format!("[{s}]"));
    let e = parse_error(&format!(r#"[["==", ".", {literal}]]"#));
    assert_eq!(e.kind, ErrorKind::PolicyTooDeep, "{e}");
    assert!(e.reason.contains("at most 64"), "{e}");
    let long = format!(".{}", "a".repeat(MAX_SELECTOR_LEN));
    let e = parse_error(&format!(r#"[["==", "{long}", 1]]"#));
    assert_eq!(
        (e.kind, e.path.as_str()),
        (ErrorKind::SelectorTooLong, "[0][1]"),
        "{e}"
    );
    assert_eq!(e.reason, "the selector is 1025 bytes; at most 1024");
    // A selector at the limit is not refused for its length.
    let at_limit = format!(".{}", "a".repeat(MAX_SELECTOR_LEN - 1));
    policy(&format!(r#"[["==", "{at_limit}", 1]]"#));
    // Malformed stays malformed.
    assert_eq!(parse_error(r#"[["=="]]"#).kind, ErrorKind::MalformedToken);
}

#[test]
fn an_exhausted_budget_is_named_apart_from_a_false_statement() {
    use ucan_gateway::ucan::ErrorKind;
    use ucan_gateway::ucan::policy::MAX_STEPS;

    let args = Ipld::List((0..20_000).map(Ipld::Integer).collect());
    let statements = vec![r#"["all", ".[]", [">=", ".", 0]]"#; 100].join(",");
    let err = policy(&format!("[{statements}]"))
        .check(&args)
        .expect_err("budget runs out");
    assert!(err.exhausted);
    assert_eq!(err.kind(), ErrorKind::PolicyTooComplex);
    assert!(
        err.to_string().ends_with(&format!(
            "takes more than {MAX_STEPS} evaluation steps; at most {MAX_STEPS}"
        )),
        "{err}"
    );
    let err = policy(r#"[["==", ".", 2]]"#).check(&json("1")).unwrap_err();
    assert_eq!((err.exhausted, err.kind()), (false, ErrorKind::MatchError));
}

#[test]
fn runaway_evaluation_fails_instead_of_stalling() {
    // Each statement walks all of `args`; together they need more than the budget allows.
    let args = Ipld::List((0..20_000).map(Ipld::Integer).collect());
    let statements = vec![r#"["all", ".[]", [">=", ".", 0]]"#; 100].join(",");
    let p = policy(&format!("[{statements}]"));
    let few = policy(&format!(
        "[{}]",
        [r#"["all", ".[]", [">=", ".", 0]]"#; 2].join(",")
    ));
    assert_eq!(
        few.check(&args),
        Ok(()),
        "a couple of passes over args are affordable"
    );
    let start = std::time::Instant::now();
    let err = p.check(&args).expect_err("budget runs out");
    assert!(err.index > 2 && err.index < 100, "ran out at {}", err.index);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    // Running out under `not` fails the check too, rather than turning into a pass.
    let statements = vec![r#"["not", ["any", ".[]", ["<", ".", 0]]]"#; 100].join(",");
    let p = policy(&format!("[{statements}]"));
    assert!(p.check(&args).is_err());
    assert_eq!(
        policy(&format!(
            "[{}]",
            r#"["not", ["any", ".[]", ["<", ".", 0]]]"#
        ))
        .check(&args),
        Ok(())
    );
}

#[test]
fn display_is_canonical_dag_json() {
    let p = policy(r#"[["==", ".[\"a\"]???", 1.5], ["any", ".a.[0]", ["like", ".", "x\\*"]]]"#);
    assert_eq!(
        p.to_string(),
        r#"[["==",".a?",1.5],["any",".a[0]",["like",".","x\\*"]]]"#
    );
    assert_eq!(policy(&p.to_string()), p);
}

// ---- round trip over generated policies ----

fn selector_text() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        "[a-z_][a-z0-9_]{0,4}".prop_map(|k| format!(".{k}")),
        any::<String>()
            .prop_map(|k| format!("[{}]", serde_json::to_string(&k).expect("strings encode"))),
        (-5i64..5).prop_map(|i| format!("[{i}]")),
        (proptest::option::of(-5i64..5), -5i64..5).prop_map(|(a, b)| match a {
            Some(a) => format!("[{a}:{b}]"),
            None => format!("[:{b}]"),
        }),
        (-5i64..5).prop_map(|a| format!("[{a}:]")),
        Just("[]".to_owned()),
    ];
    let optional = prop_oneof![Just(""), Just("?"), Just("???")];
    proptest::collection::vec((segment, optional), 0..4).prop_map(|segments| {
        let mut text = String::from(".");
        for (i, (seg, opt)) in segments.iter().enumerate() {
            let seg = if i == 0 {
                seg.strip_prefix('.').unwrap_or(seg)
            } else {
                seg.as_str()
            };
            text.push_str(seg);
            text.push_str(opt);
        }
        text
    })
}

fn literal() -> impl Strategy<Value = Ipld> {
    let leaf = prop_oneof![
        Just(Ipld::Null),
        any::<bool>().prop_map(Ipld::Bool),
        any::<i64>().prop_map(|i| Ipld::Integer(i.into())),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Ipld::Float),
        "\\PC{0,6}".prop_map(Ipld::String),
        proptest::collection::vec(any::<u8>(), 0..4).prop_map(Ipld::Bytes),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Ipld::List),
            proptest::collection::btree_map("[a-z]{0,3}", inner, 0..4).prop_map(Ipld::Map),
        ]
    })
}

fn number() -> impl Strategy<Value = Ipld> {
    prop_oneof![
        any::<i64>().prop_map(|i| Ipld::Integer(i.into())),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Ipld::Float),
    ]
}

fn statement() -> impl Strategy<Value = Ipld> {
    let s = |v: &str| Ipld::String(v.to_owned());
    let leaf = prop_oneof![
        (
            prop_oneof![Just("=="), Just("!=")],
            selector_text(),
            literal()
        )
            .prop_map(move |(op, sel, v)| Ipld::List(vec![s(op), s(&sel), v])),
        (
            prop_oneof![Just("<"), Just("<="), Just(">"), Just(">=")],
            selector_text(),
            number()
        )
            .prop_map(move |(op, sel, n)| Ipld::List(vec![s(op), s(&sel), n])),
        (selector_text(), r"[a*\\]{0,6}").prop_map(move |(sel, pat)| Ipld::List(vec![
            s("like"),
            s(&sel),
            s(&pat)
        ])),
    ];
    leaf.prop_recursive(5, 32, 4, move |inner| {
        prop_oneof![
            inner
                .clone()
                .prop_map(move |st| Ipld::List(vec![s("not"), st])),
            (
                prop_oneof![Just("and"), Just("or")],
                proptest::collection::vec(inner.clone(), 0..4)
            )
                .prop_map(move |(op, list)| Ipld::List(vec![s(op), Ipld::List(list)])),
            (
                prop_oneof![Just("all"), Just("any")],
                selector_text(),
                inner
            )
                .prop_map(move |(op, sel, st)| Ipld::List(vec![s(op), s(&sel), st])),
        ]
    })
}

fn policy_value() -> impl Strategy<Value = Ipld> {
    proptest::collection::vec(statement(), 0..4).prop_map(Ipld::List)
}

proptest! {
    #[test]
    fn parse_of_to_ipld_gives_back_the_policy(value in policy_value()) {
        let p = Policy::parse(&value).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let canonical = p.to_ipld();
        prop_assert_eq!(Policy::parse(&canonical), Ok(p.clone()));
        // The canonical form is a fixed point.
        prop_assert_eq!(Policy::parse(&canonical).map(|q| q.to_ipld()), Ok(canonical));
    }

    #[test]
    fn dag_json_text_round_trips(value in policy_value()) {
        let p = Policy::parse(&value).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(Policy::from_json(&p.to_string()), Ok(p));
    }

    #[test]
    fn checking_never_panics_and_survives_the_round_trip(value in policy_value(), args in literal()) {
        let p = Policy::parse(&value).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let q = Policy::parse(&p.to_ipld()).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(p.check(&args), q.check(&args));
    }
}
