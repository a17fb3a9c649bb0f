//! The cost of each stage of the invocation path, one benchmark per stage, so a regression shows
//! where it happened: decode → validate → task → Wasm call → sign the receipt → store commit.
//!
//! `cargo bench --bench stages`. The inputs are what the load generator sends (`/wasm/run` `add`
//! with the module inline, one delegation from the subject to the invoker). Figures are only
//! comparable within one run on one machine; `docs/performance.md` reports them as shares of the
//! whole path.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use cid::Cid;
use criterion::{Criterion, criterion_group, criterion_main};
use ipld_core::ipld::Ipld;
use ucan_gateway::did::{KeyAlg, PublicKey, SigningKey};
use ucan_gateway::exec::wasm::{Limits, WasmEngine};
use ucan_gateway::ipld::{RAW, cid_for};
use ucan_gateway::receipt::{Effects, Out, Receipt, ReceiptBody};
use ucan_gateway::store::{Commit, SqliteStore, Store, StoredReceipt};
use ucan_gateway::task::{EffectClass, Task};
use ucan_gateway::ucan::container::{Container, Format};
use ucan_gateway::ucan::delegation::DelegationBuilder;
use ucan_gateway::ucan::envelope::{Envelope, Kind};
use ucan_gateway::ucan::invocation::InvocationBuilder;
use ucan_gateway::ucan::validate::{NoRevocations, Options, SignatureCache, validate};
use ucan_gateway::ucan::{Command, Delegation, Invocation};

const NOW: i64 = 1_750_000_000;

/// `add(i32, i32) -> i32`, as the load generator sends it.
const ADD_WASM: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x07, 0x01, 0x60, 0x02, 0x7f, 0x7f, 0x01,
    0x7f, 0x03, 0x02, 0x01, 0x00, 0x07, 0x07, 0x01, 0x03, 0x61, 0x64, 0x64, 0x00, 0x00, 0x0a, 0x09,
    0x01, 0x07, 0x00, 0x20, 0x00, 0x20, 0x01, 0x6a, 0x0b,
];

/// Delegations verified once and issuers' keys parsed once, as the gateway keeps them; invocations
/// are never cached.
#[derive(Default)]
struct Delegations(Mutex<HashSet<Cid>>, Mutex<HashMap<String, PublicKey>>);

impl SignatureCache for Delegations {
    fn is_verified(&self, token: &Cid) -> bool {
        self.0.lock().unwrap().contains(token)
    }
    fn mark_verified(&self, token: &Cid) {
        self.0.lock().unwrap().insert(*token);
    }
    fn issuer_key(&self, did: &str) -> Option<PublicKey> {
        self.1.lock().unwrap().get(did).cloned()
    }
    fn keep_issuer_key(&self, did: &str, key: &PublicKey) {
        self.1.lock().unwrap().insert(did.to_owned(), key.clone());
    }
}

/// The request body (a container: invocation, then its one delegation) and its parts.
struct Request {
    body: Vec<u8>,
    invocation: Invocation,
    proofs: HashMap<Cid, Delegation>,
}

fn request(subject: &SigningKey, invoker: &SigningKey, a: i64) -> Request {
    let delegation = DelegationBuilder::new(
        invoker.did(),
        Some(subject.did()),
        Command::parse("/wasm/run").unwrap(),
    )
    .expires(Some(NOW + 3600))
    .sign(subject)
    .unwrap();
    let args = BTreeMap::from([
        ("module".to_owned(), Ipld::Bytes(ADD_WASM.to_vec())),
        ("func".to_owned(), Ipld::String("add".into())),
        (
            "args".to_owned(),
            Ipld::List(vec![Ipld::Integer(a.into()), Ipld::Integer(22)]),
        ),
    ]);
    let invocation =
        InvocationBuilder::new(subject.did(), Command::parse("/wasm/run").unwrap(), args)
            .audience(subject.did())
            .proofs(vec![delegation.cid()])
            .expires(Some(NOW + 60))
            .sign(invoker)
            .unwrap();
    let mut container = Container::default();
    container.tokens.push(invocation.bytes().to_vec());
    container.tokens.push(delegation.bytes().to_vec());
    Request {
        body: container.encode(Format::Raw),
        invocation,
        proofs: HashMap::from([(delegation.cid(), delegation)]),
    }
}

fn bench_stages(c: &mut Criterion) {
    let gateway = SigningKey::generate(KeyAlg::Ed25519);
    let invoker = SigningKey::generate(KeyAlg::Ed25519);
    let req = request(&gateway, &invoker, 20);
    let cache = Delegations::default();
    let auth = validate(
        &req.invocation,
        &req.proofs,
        Options::at(NOW),
        &NoRevocations,
        &cache,
    )
    .expect("a valid chain");

    let mut group = c.benchmark_group("stage");
    group.bench_function("decode", |b| {
        b.iter(|| {
            // As the gateway decodes a container: each token once, sorted by its envelope's kind.
            let container = Container::decode(black_box(&req.body)).unwrap();
            let mut invocations = Vec::new();
            let mut proofs = HashMap::new();
            for token in &container.tokens {
                let envelope = Envelope::decode(token).unwrap();
                match envelope.kind {
                    Kind::Invocation => {
                        invocations.push(Invocation::from_envelope(envelope).unwrap())
                    }
                    Kind::Delegation => {
                        let delegation = Delegation::from_envelope(envelope).unwrap();
                        proofs.insert(delegation.cid(), delegation);
                    }
                }
            }
            (invocations, proofs)
        })
    });
    // The delegation's signature is cached after the first request; the invocation's is checked
    // every time, as the gateway does.
    group.bench_function("validate", |b| {
        b.iter(|| {
            validate(
                black_box(&req.invocation),
                &req.proofs,
                Options::at(NOW),
                &NoRevocations,
                &cache,
            )
            .unwrap()
        })
    });
    group.bench_function("task", |b| {
        b.iter(|| Task::new(black_box(&auth), &req.invocation.payload, EffectClass::Pure).unwrap())
    });
    let engine = WasmEngine::new().unwrap();
    let module = cid_for(RAW, ADD_WASM);
    let args = [Ipld::Integer(20), Ipld::Integer(22)];
    group.bench_function("wasm_call", |b| {
        b.iter(|| {
            engine
                .run_core(
                    &module,
                    ADD_WASM,
                    "add",
                    black_box(&args),
                    Limits::default(),
                )
                .unwrap()
        })
    });
    let body = ReceiptBody {
        ran: req.invocation.cid(),
        task: auth.task,
        out: Out::Ok(Ipld::Integer(42)),
        fx: Effects::default(),
        meta: BTreeMap::new(),
    };
    group.bench_function("sign_receipt", |b| {
        b.iter(|| Receipt::issue(black_box(body.clone()), &gateway).unwrap())
    });
    group.finish();

    // One durable commit (synchronous=FULL) of a replay key and a receipt, as the hot path makes:
    // the disk's flush dominates, so few samples.
    let mut group = c.benchmark_group("stage");
    group.sample_size(20);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = runtime
        .block_on(SqliteStore::open(&dir.path().join("bench.db")))
        .unwrap();
    let receipt = Receipt::issue(body, &gateway).unwrap();
    let serial = AtomicU64::new(0);
    group.bench_function("store_commit", |b| {
        b.iter(|| {
            let n = serial.fetch_add(1, Ordering::Relaxed);
            let key = cid_for(RAW, &n.to_be_bytes());
            let mut bytes = receipt.bytes().to_vec();
            bytes.extend_from_slice(&n.to_be_bytes());
            let stored = StoredReceipt {
                receipt_cid: cid_for(RAW, &bytes),
                ran: key,
                task_id: key,
                work_id: None,
                ok: true,
                pure: true,
                created_at: NOW,
                bytes,
            };
            let commit = Commit {
                claim: Some((key, Some(NOW + 60))),
                receipt: Some(stored),
                ..Commit::default()
            };
            runtime.block_on(store.commit(commit)).unwrap()
        })
    });
    group.finish();
}

criterion_group!(stages, bench_stages);
criterion_main!(stages);
