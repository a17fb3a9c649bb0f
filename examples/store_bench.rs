//! Store benchmark: durable invocation commits per second at several numbers of concurrent callers.
//!
//! ```sh
//! cargo run --release --example store_bench -- [SECONDS] [CALLERS…]     # defaults: 3 1 32 256
//! cargo run --release --example store_bench -- --fresh-proof [SECONDS] [CALLERS…]
//! UCAN_GATEWAY_STORE=postgres://… cargo run --release --example store_bench   # another backend
//! ```
//!
//! An "invocation commit" is what the gateway makes durable before it answers an invocation: its
//! replay key and its receipt (a 1 KiB token) in one commit, synchronous=FULL on SQLite. Each caller commits
//! distinct invocations back to back for the given time; the figure is commits per second over all
//! callers. The store is fresh (a temporary SQLite file, or the database URL given).
//!
//! With `--fresh-proof` every commit also keeps the delegation its invocation rested on, a new one
//! each time from one issuer, as when a service delegates to every new client: past the first
//! [`MAX_PROOFS_PER_ISSUER`] the issuer is at its cap, and each commit checks it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ucan_gateway::gateway::MAX_PROOFS_PER_ISSUER;
use ucan_gateway::ipld::{DAG_CBOR, RAW, cid_for};
use ucan_gateway::store::{Commit, Outcome, SqliteStore, Store, StoredDelegation, StoredReceipt};

/// One invocation's durable state, as the gateway writes it; with `fresh_proof`, with a new
/// delegation to keep.
async fn commit(store: &dyn Store, n: u64, fresh_proof: bool) -> anyhow::Result<()> {
    let ran = cid_for(RAW, format!("invocation {n}").as_bytes());
    let mut bytes = vec![0u8; 1024];
    bytes[..8].copy_from_slice(&n.to_be_bytes());
    let receipt = StoredReceipt {
        receipt_cid: cid_for(DAG_CBOR, &bytes),
        ran,
        task_id: cid_for(RAW, format!("task {n}").as_bytes()),
        work_id: Some(cid_for(RAW, format!("work {n}").as_bytes())),
        ok: true,
        pure: true,
        created_at: 1_800_000_000,
        bytes,
    };
    let mut commit = Commit::default()
        .with_claim(ran, Some(1_800_000_600))
        .with_receipt(receipt);
    if fresh_proof {
        let bytes = vec![7u8; 400];
        let proof = StoredDelegation {
            cid: cid_for(DAG_CBOR, format!("delegation {n}").as_bytes()),
            issuer: "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp".into(),
            audience: format!("did:key:client{n}"),
            expires_at: Some(1_800_000_600),
            bytes,
        };
        commit = commit.with_proofs(vec![proof], MAX_PROOFS_PER_ISSUER);
    }
    anyhow::ensure!(
        store.commit(commit).await? == Outcome::Committed,
        "replayed"
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut argv = std::env::args().skip(1).peekable();
    let fresh_proof = argv.next_if(|a| a == "--fresh-proof").is_some();
    let seconds: u64 = argv.next().map_or(Ok(3), |s| s.parse())?;
    let mut callers: Vec<usize> = argv.map(|s| s.parse()).collect::<Result<_, _>>()?;
    if callers.is_empty() {
        callers = vec![1, 32, 256];
    }
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = match std::env::var("UCAN_GATEWAY_STORE") {
        Ok(url) => ucan_gateway::store::open(&url).await?,
        Err(_) => Arc::new(SqliteStore::open(&dir.path().join("bench.db")).await?),
    };
    let next = Arc::new(AtomicU64::new(0));
    println!("callers  commits/s  mean latency");
    for &c in &callers {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let tasks: Vec<_> = (0..c)
            .map(|_| {
                let (store, next, done) =
                    (Arc::clone(&store), Arc::clone(&next), Arc::clone(&done));
                tokio::spawn(async move {
                    while Instant::now() < stop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        commit(store.as_ref(), n, fresh_proof).await?;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let n = done.load(Ordering::Relaxed) as f64;
        println!(
            "{c:>7}  {:>9.0}  {:>9.2} ms",
            n / elapsed,
            elapsed * 1000.0 * c as f64 / n
        );
    }
    store.close().await;
    Ok(())
}
