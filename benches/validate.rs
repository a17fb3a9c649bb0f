//! Chain validation and policy evaluation costs.
//!
//! `cargo bench --bench validate`. Figures are only comparable within one run on one machine; report
//! them as ratios (e.g. an 8-link chain against a 1-link chain).

use std::collections::{BTreeMap, HashMap};

use cid::Cid;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ipld_core::ipld::Ipld;
use std::hint::black_box;
use ucan_gateway::did::{KeyAlg, SigningKey};
use ucan_gateway::ipld::from_dag_json;
use ucan_gateway::ucan::delegation::DelegationBuilder;
use ucan_gateway::ucan::invocation::InvocationBuilder;
use ucan_gateway::ucan::validate::{NoCache, NoRevocations, Options, validate};
use ucan_gateway::ucan::{Command, Delegation, Invocation, Policy};

const NOW: i64 = 1_750_000_000;

/// A chain of `links` delegations from a root subject to the invoker, each with a small policy, and an
/// invocation that passes them all.
fn chain(links: usize, alg: KeyAlg) -> (Invocation, HashMap<Cid, Delegation>) {
    let keys: Vec<SigningKey> = (0..=links).map(|_| SigningKey::generate(alg)).collect();
    let subject = keys[0].did();
    let policy =
        Policy::from_json(r#"[["==", ".func", "add"], ["all", ".args", [">=", ".", 0]]]"#).unwrap();
    let mut proofs = HashMap::new();
    let mut prf = Vec::new();
    for i in 0..links {
        let dlg = DelegationBuilder::new(
            keys[i + 1].did(),
            Some(subject.clone()),
            Command::parse("/wasm").unwrap(),
        )
        .policy(policy.clone())
        .expires(Some(NOW + 3600))
        .sign(&keys[i])
        .unwrap();
        prf.push(dlg.cid());
        proofs.insert(dlg.cid(), dlg);
    }
    let args: BTreeMap<String, Ipld> =
        match from_dag_json(r#"{"func": "add", "args": [1, 2]}"#).unwrap() {
            Ipld::Map(m) => m,
            _ => unreachable!(),
        };
    let inv = InvocationBuilder::new(subject, Command::parse("/wasm/run").unwrap(), args)
        .proofs(prf)
        .expires(Some(NOW + 60))
        .sign(&keys[links])
        .unwrap();
    (inv, proofs)
}

fn bench_chains(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate_chain");
    for alg in [KeyAlg::Ed25519, KeyAlg::P256] {
        for links in [1usize, 3, 8] {
            let (inv, proofs) = chain(links, alg);
            validate(&inv, &proofs, Options::at(NOW), &NoRevocations, &NoCache)
                .expect("valid chain");
            group.bench_with_input(
                BenchmarkId::new(format!("{alg:?}"), links),
                &links,
                |b, _| {
                    b.iter(|| {
                        validate(
                            black_box(&inv),
                            &proofs,
                            Options::at(NOW),
                            &NoRevocations,
                            &NoCache,
                        )
                        .unwrap()
                    })
                },
            );
        }
    }
    group.finish();
}

fn bench_decode(c: &mut Criterion) {
    let (inv, proofs) = chain(3, KeyAlg::Ed25519);
    let dlg_bytes: Vec<Vec<u8>> = proofs.values().map(|d| d.bytes().to_vec()).collect();
    c.bench_function("decode_invocation_and_3_delegations", |b| {
        b.iter(|| {
            let inv = Invocation::decode(black_box(inv.bytes())).unwrap();
            let dlgs: Vec<Delegation> = dlg_bytes
                .iter()
                .map(|d| Delegation::decode(d).unwrap())
                .collect();
            (inv, dlgs)
        })
    });
}

fn bench_policy(c: &mut Criterion) {
    let args = from_dag_json(
        r#"{"from": "alice@example.com", "to": ["bob@example.com", "carol@example.com", "dan@example.com"],
            "title": "Coffee", "size": 42, "meta": {"tags": ["a", "b", "c"], "draft": false}}"#,
    )
    .unwrap();
    let simple = Policy::from_json(r#"[["==", ".title", "Coffee"]]"#).unwrap();
    let typical = Policy::from_json(
        r#"[["==", ".from", "alice@example.com"],
            ["all", ".to", ["like", ".", "*@example.com"]],
            ["<=", ".size", 100],
            ["not", ["==", ".meta.draft", true]],
            ["or", [["any", ".meta.tags", ["==", ".", "c"]], ["==", ".title", "Urgent"]]]]"#,
    )
    .unwrap();
    let mut group = c.benchmark_group("policy_check");
    group.bench_function("one_equality", |b| {
        b.iter(|| simple.check(black_box(&args)).unwrap())
    });
    group.bench_function("five_statements_with_quantifiers_and_globs", |b| {
        b.iter(|| typical.check(black_box(&args)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_chains, bench_decode, bench_policy);
criterion_main!(benches);
