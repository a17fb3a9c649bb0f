//! Scheduler guarantees by effect class, over real HTTP with a backend that counts its runs:
//! host failures are retried for pure work and never for destructive work, and a destructive task
//! runs at most once, even when a crash left its intent open.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use ipld_core::ipld::Ipld;
use ucan_gateway::config::{Limits, OperatorPolicy};
use ucan_gateway::did::{KeyAlg, SigningKey};
use ucan_gateway::exec::{ExecError, ExecErrorKind, Executed, Executor};
use ucan_gateway::gateway::Gateway;
use ucan_gateway::receipt::{Out, Receipt};
use ucan_gateway::store::{Commit, IntentChange, Outcome};
use ucan_gateway::store::{SqliteStore, Store};
use ucan_gateway::task::Task;
use ucan_gateway::ucan::container::{Container, Format};
use ucan_gateway::ucan::invocation::InvocationBuilder;
use ucan_gateway::ucan::validate::unix_now;
use ucan_gateway::ucan::{Command, Invocation};

use super::gateway::error_name;

/// Fails with a host error on its first `failures` calls, then returns the call count.
struct Flaky {
    calls: AtomicUsize,
    failures: usize,
}

#[async_trait]
impl Executor for Flaky {
    async fn execute(&self, _task: &Task, _limits: &Limits) -> Result<Executed, ExecError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if call <= self.failures {
            return Err(ExecError::new(ExecErrorKind::Host, "backend unreachable"));
        }
        Ok(Executed::finished(Out::Ok(Ipld::Integer(call as i128))))
    }
}

/// A gateway on loopback whose `/job/pure` and `/job/once` routes (pure and destructive) run on
/// `backend`, with its store in `dir`.
struct Harness {
    addr: std::net::SocketAddr,
    key: SigningKey,
    store: Arc<dyn Store>,
    server: tokio::task::JoinHandle<()>,
}

async fn harness(dir: &Path, key: &SigningKey, backend: Arc<Flaky>) -> Harness {
    let policy = OperatorPolicy::parse(
        r#"
[[route]]
command = "/job/pure"
backend = "wasm"
effect = "pure"
[[route]]
command = "/job/once"
backend = "wasm"
effect = "destructive"
"#,
        "test policy",
    )
    .unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("store.db")).await.unwrap());
    let executors: HashMap<String, Arc<dyn Executor>> =
        HashMap::from([("wasm".to_owned(), backend as Arc<dyn Executor>)]);
    let gateway = Gateway::new(copy(key), policy, Arc::clone(&store), executors, 60)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = ucan_gateway::server::router(gateway);
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Harness {
        addr,
        key: copy(key),
        store,
        server,
    }
}

impl Harness {
    /// The gateway's own invocation of `cmd` (it is its own subject), with `nonce`.
    fn invocation(&self, cmd: &str, nonce: &[u8], exp_offset: i64) -> Invocation {
        InvocationBuilder::new(
            self.key.did(),
            Command::parse(cmd).unwrap(),
            BTreeMap::from([("x".to_owned(), Ipld::Integer(1))]),
        )
        .nonce(nonce.to_vec())
        .expires(Some(unix_now() + 300 + exp_offset))
        .sign(&self.key)
        .unwrap()
    }

    async fn receipt(&self, inv: &Invocation) -> Receipt {
        let body = Container {
            tokens: vec![inv.bytes().to_vec()],
        }
        .encode(Format::Raw);
        let response = reqwest::Client::new()
            .post(format!("http://{}/", self.addr))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let tokens = Container::decode(&response.bytes().await.unwrap())
            .unwrap()
            .tokens;
        let r = Receipt::decode(&tokens[0]).unwrap();
        r.verify(Some(&self.key.did())).unwrap();
        r
    }

    async fn stop(self) {
        self.server.abort();
        let _ = self.server.await;
        self.store.close().await;
    }
}

/// The same key again (keys are deliberately not `Clone`; the key file is the way to copy one).
fn copy(key: &SigningKey) -> SigningKey {
    SigningKey::from_key_file(&key.to_key_file()).unwrap()
}

fn flaky(failures: usize) -> Arc<Flaky> {
    Arc::new(Flaky {
        calls: AtomicUsize::new(0),
        failures,
    })
}

#[tokio::test]
async fn pure_work_is_retried_after_a_host_failure_and_destructive_work_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate(KeyAlg::Ed25519);

    let backend = flaky(1);
    let h = harness(dir.path(), &key, Arc::clone(&backend)).await;
    let r = h.receipt(&h.invocation("/job/pure", b"p", 0)).await;
    assert_eq!(r.body.out, Out::Ok(Ipld::Integer(2)));
    assert_eq!(backend.calls.load(Ordering::SeqCst), 2);
    h.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let backend = flaky(1);
    let h = harness(dir.path(), &key, Arc::clone(&backend)).await;
    let r = h.receipt(&h.invocation("/job/once", b"d", 0)).await;
    assert_eq!(error_name(&r), "ExecutionFailed");
    assert_eq!(backend.calls.load(Ordering::SeqCst), 1);
    h.stop().await;
}

#[tokio::test]
async fn a_destructive_task_runs_once_per_task_even_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate(KeyAlg::Ed25519);
    let backend = flaky(0);
    let h = harness(dir.path(), &key, Arc::clone(&backend)).await;

    // Two invocations of one task (same subject, command, args and nonce; different expiry).
    let first = h.invocation("/job/once", b"n", 0);
    let second = h.invocation("/job/once", b"n", 60);
    assert_ne!(first.cid(), second.cid());
    assert_eq!(first.payload.task_id(), second.payload.task_id());
    let r1 = h.receipt(&first).await;
    let r2 = h.receipt(&second).await;
    assert_eq!(r1.body.out, Out::Ok(Ipld::Integer(1)));
    assert_eq!(
        r2.body.out, r1.body.out,
        "the first outcome, not a second run"
    );
    assert_eq!(
        r2.body.meta.get(ucan_gateway::receipt::META_MEMOIZED),
        Some(&Ipld::Link(r1.cid()))
    );
    assert_eq!(backend.calls.load(Ordering::SeqCst), 1);

    // A crash between recording the intent and finishing leaves the intent open and no receipt:
    // the state a gateway killed mid-run leaves behind. After a restart the task is not started.
    let crashed = h.invocation("/job/once", b"crash", 0);
    let opened = h
        .store
        .commit(Commit::default().with_intent(IntentChange::Open {
            task: crashed.payload.task_id(),
            invocation: crashed.cid(),
            until: 0,
        }))
        .await
        .unwrap();
    assert_eq!(opened, Outcome::Committed);
    h.stop().await;
    let h = harness(dir.path(), &key, Arc::clone(&backend)).await;
    let r = h.receipt(&crashed).await;
    assert_eq!(error_name(&r), "Interrupted");
    // Its intent is now settled by that receipt; a later invocation of the task gets the same.
    let again = h.invocation("/job/once", b"crash", 30);
    assert_eq!(error_name(&h.receipt(&again).await), "Interrupted");
    assert_eq!(backend.calls.load(Ordering::SeqCst), 1);

    // Pure work with the same shape runs again for a new nonce (no intent is involved).
    h.receipt(&h.invocation("/job/pure", b"a", 0)).await;
    h.receipt(&h.invocation("/job/pure", b"b", 0)).await;
    assert_eq!(
        backend.calls.load(Ordering::SeqCst),
        2,
        "memoized by work id"
    );
    h.stop().await;
}
