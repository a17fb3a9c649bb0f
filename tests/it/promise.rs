//! Promises in arguments: which values are promises, and how each branch resolves.

use std::collections::{BTreeMap, HashMap};

use cid::Cid;
use ipld_core::ipld::Ipld;
use ucan_gateway::ipld::{RAW, cid_for};
use ucan_gateway::promise::{Branch, Promise, PromiseError, Resolved, promises, resolve};
use ucan_gateway::receipt::Out;

fn cid(s: &str) -> Cid {
    cid_for(RAW, s.as_bytes())
}

fn tagged(tag: &str, target: Cid) -> Ipld {
    Ipld::Map(BTreeMap::from([(tag.to_owned(), Ipld::Link(target))]))
}

fn args(pairs: Vec<(&str, Ipld)>) -> BTreeMap<String, Ipld> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

#[test]
fn promises_are_found_anywhere_once_and_look_alikes_are_not_promises() {
    let (a, b) = (cid("a"), cid("b"));
    let nested = Ipld::List(vec![Ipld::Map(BTreeMap::from([(
        "deep".to_owned(),
        tagged("await/error", b),
    )]))]);
    let two_keys = Ipld::Map(BTreeMap::from([
        ("await/ok".to_owned(), Ipld::Link(a)),
        ("x".to_owned(), Ipld::Null),
    ]));
    let found = promises(&args(vec![
        ("x", tagged("await/ok", a)),
        ("y", nested),
        ("z", tagged("await/ok", a)),
        (
            "not-a-link",
            Ipld::Map(BTreeMap::from([(
                "await/ok".to_owned(),
                Ipld::String(a.to_string()),
            )])),
        ),
        ("two-keys", two_keys),
        ("other-tag", tagged("await/maybe", a)),
    ]));
    assert_eq!(
        found,
        vec![
            Promise {
                branch: Branch::Ok,
                target: a
            },
            Promise {
                branch: Branch::Error,
                target: b
            },
        ]
    );
}

#[test]
fn each_branch_substitutes_what_the_spec_says() {
    let (ok, failed) = (cid("ok-task"), cid("failed-task"));
    let results = HashMap::from([
        (
            ok,
            Resolved {
                out: Out::Ok(Ipld::Integer(5)),
                receipt: cid("r1"),
            },
        ),
        (
            failed,
            Resolved {
                out: Out::error("Trap", "boom"),
                receipt: cid("r2"),
            },
        ),
    ]);
    let error_map = Ipld::Map(BTreeMap::from([
        ("name".to_owned(), Ipld::String("Trap".into())),
        ("message".to_owned(), Ipld::String("boom".into())),
    ]));
    let resolved = resolve(
        &args(vec![
            ("a", tagged("await/ok", ok)),
            ("b", Ipld::List(vec![tagged("await/error", failed)])),
            ("c", tagged("await/*", ok)),
            ("d", tagged("await/*", failed)),
            ("plain", Ipld::Integer(1)),
        ]),
        &results,
    )
    .unwrap();
    assert_eq!(resolved["a"], Ipld::Integer(5));
    assert_eq!(resolved["b"], Ipld::List(vec![error_map.clone()]));
    assert_eq!(
        resolved["c"],
        Ipld::Map(BTreeMap::from([("ok".to_owned(), Ipld::Integer(5))]))
    );
    assert_eq!(
        resolved["d"],
        Ipld::Map(BTreeMap::from([("error".to_owned(), error_map)]))
    );
    assert_eq!(resolved["plain"], Ipld::Integer(1));

    // The wrong branch, either way round, and a missing result.
    let mismatch = |tag, target| resolve(&args(vec![("a", tagged(tag, target))]), &results);
    match mismatch("await/error", ok) {
        Err(PromiseError::BranchMismatch(m)) => {
            assert_eq!((m.expected, m.got, m.from), ("error", "ok", cid("r1")))
        }
        other => panic!("{other:?}"),
    }
    match mismatch("await/ok", failed) {
        Err(e @ PromiseError::BranchMismatch(_)) => {
            let Out::Error { name, details, .. } = e.to_out() else {
                unreachable!()
            };
            assert_eq!(name, "BranchMismatch");
            assert_eq!(details["from"], Ipld::Link(cid("r2")));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        mismatch("await/ok", cid("unknown")),
        Err(PromiseError::Unresolved(cid("unknown")))
    );
}
