//! What the store can tell is not there without reading the database: Bloom filters of the replay
//! keys and of the work ids of reusable receipts.
//!
//! A fresh invocation asks for both, and neither is there; yet each lookup starts a read
//! transaction on a snapshot the latest commit made stale, so SQLite reads its index pages again
//! (8% of the gateway's samples at 32 concurrent callers). A filter that says "absent" answers
//! without SQL; any other answer goes to the lookup, so a filter can save a lookup but never change
//! an answer.
//!
//! Why the answers are right: a key enters the filters on the writer thread, inside the transaction
//! that stores it and before its COMMIT, so a reader that could find the row finds its bits set. A
//! filter is filled by a scan on a connection of its own, which the writer starts between two
//! batches after it has begun adding each new key to that filter too: every row committed before
//! is in the scan's snapshot, every row after comes through the writer. Until the first scan ends,
//! or when the tables hold more than half the keys one filter takes, or when a scan failed, every
//! lookup goes to SQL. Purged keys stay in a filter until the next scan, which starts once a
//! filter took its capacity of keys.
//!
//! A filter sees only what this process stored. Another process writing the same file (allowed on
//! one machine) may store a key this one's filters never see: a replay sent here is then refused
//! by the claim in its commit, after its task ran, not before. Only pure and nondestructive tasks
//! get that far, and they may run more than once; a destructive task's intent refuses it first.
//! Likewise work another process ran is run here again instead of reused.

use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use cid::Cid;
use rusqlite::Connection;

use super::schema::connect;
use crate::store::{Commit, Result};

/// Bits per filter, as a power of two: 8 MiB each.
const BITS_LOG2: u32 = 26;
/// Bits set per key.
const PROBES: u32 = 7;
/// Keys a filter takes before it is filled again from the tables: with [`BITS_LOG2`] and
/// [`PROBES`], at most about one key in 50 that is not there is looked up all the same.
pub(super) const CAPACITY: u64 = 8_000_000;

/// One Bloom filter over CIDs.
struct Filter {
    words: Box<[AtomicU64]>,
}

impl Filter {
    fn new() -> Self {
        Filter {
            words: (0..1usize << (BITS_LOG2 - 6))
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    /// The word and bit of each probe for the key hashed to `hash` (two halves, combined as in
    /// Kirsch and Mitzenmacher's double hashing).
    fn probes(&self, hash: u64) -> impl Iterator<Item = (usize, u64)> + '_ {
        let (h1, h2) = (hash as u32, (hash >> 32) as u32 | 1);
        (0..PROBES).map(move |i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) & ((1 << BITS_LOG2) - 1);
            ((bit >> 6) as usize, 1u64 << (bit & 63))
        })
    }

    fn add(&self, hash: u64) {
        for (word, bit) in self.probes(hash) {
            self.words[word].fetch_or(bit, Ordering::Release);
        }
    }

    fn may_hold(&self, hash: u64) -> bool {
        self.probes(hash)
            .all(|(word, bit)| self.words[word].load(Ordering::Acquire) & bit != 0)
    }
}

/// The filters of one scan: replay keys and reusable work ids.
struct Filters {
    seen: Filter,
    memo: Filter,
    /// Keys added to both since the scan began.
    added: AtomicU64,
}

impl Filters {
    fn new() -> Arc<Self> {
        Arc::new(Filters {
            seen: Filter::new(),
            memo: Filter::new(),
            added: AtomicU64::new(0),
        })
    }
}

/// The filters a store answers from, and the one being filled.
pub(super) struct Absent {
    hasher: RandomState,
    /// The database the scans read.
    path: PathBuf,
    /// Filled filters, or none while the first scan runs (or after giving up).
    ready: RwLock<Option<Arc<Filters>>>,
    /// Filters being filled; touched by the writer thread and the scan that fills them.
    filling: RwLock<Option<Arc<Filters>>>,
    /// Set when a scan failed or found more keys than leave a filter room: from then on every
    /// lookup is SQL's.
    gave_up: AtomicBool,
    /// Keys a filter takes before it is filled again.
    capacity: u64,
}

impl Absent {
    /// Filters for the database at `path`, empty until [`Absent::fill`] has run once.
    pub(super) fn new(path: PathBuf, capacity: u64) -> Arc<Self> {
        Arc::new(Absent {
            hasher: RandomState::new(),
            path,
            ready: RwLock::new(None),
            filling: RwLock::new(None),
            gave_up: AtomicBool::new(false),
            capacity,
        })
    }

    /// Hashes the CID's fields, not its binary form, so a lookup allocates nothing.
    fn hash(&self, cid: &Cid) -> u64 {
        self.hasher.hash_one(cid)
    }

    fn ready(&self) -> Option<Arc<Filters>> {
        self.ready.read().ok()?.clone()
    }

    /// Whether no replay key `key` is stored, for certain. `false` means "look it up".
    pub(super) fn lacks_key(&self, key: &Cid) -> bool {
        self.ready()
            .is_some_and(|f| !f.seen.may_hold(self.hash(key)))
    }

    /// Whether no reusable receipt of the work `work` is stored, for certain.
    pub(super) fn lacks_work(&self, work: &Cid) -> bool {
        self.ready()
            .is_some_and(|f| !f.memo.may_hold(self.hash(work)))
    }

    /// Whether lookups are answered from filters now.
    #[cfg(test)]
    pub(super) fn is_ready(&self) -> bool {
        self.ready().is_some()
    }

    /// Adds what `commit` would store. Runs on the writer thread, before the batch's COMMIT; a
    /// commit that is then refused leaves bits that only cost a lookup.
    pub(super) fn add(&self, commit: &Commit) {
        let key = commit.claim.as_ref().map(|(key, _)| self.hash(key));
        let work = commit
            .receipt
            .as_ref()
            .filter(|r| r.ok && r.pure)
            .and_then(|r| r.work_id)
            .map(|w| self.hash(&w));
        if key.is_none() && work.is_none() {
            return;
        }
        // The filling ones first: a scan that ends meanwhile makes them the ready ones before it
        // stops filling them, so the key reaches them either way.
        let filling = self.filling.read().ok().and_then(|f| f.clone());
        let ready = self.ready();
        for filters in [filling, ready].into_iter().flatten() {
            if let Some(key) = key {
                filters.seen.add(key);
            }
            if let Some(work) = work {
                filters.memo.add(work);
            }
            filters.added.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Starts filling new filters from the tables when none are being filled and the ready ones
    /// are full. Runs on the writer thread between two batches (or before the first).
    pub(super) fn between_batches(self: &Arc<Self>) {
        let full = self
            .ready()
            .is_some_and(|f| f.added.load(Ordering::Relaxed) > self.capacity);
        if full && !self.gave_up.load(Ordering::Relaxed) {
            self.fill();
        }
    }

    /// Starts a scan that fills new filters, unless one runs already. From this call on, the
    /// writer adds each new key to them too, so it must be made on the writer thread between two
    /// batches, or before the first.
    pub(super) fn fill(self: &Arc<Self>) {
        let filters = {
            let Ok(mut filling) = self.filling.write() else {
                return;
            };
            if filling.is_some() {
                return;
            }
            let filters = Filters::new();
            *filling = Some(Arc::clone(&filters));
            filters
        };
        let absent = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("sqlite-filter".into())
            .spawn(move || absent.scan(&filters));
        if spawned.is_err() {
            // The ready filters (if any) still hold every key: the writer kept adding to them.
            if let Ok(mut filling) = self.filling.write() {
                *filling = None;
            }
        }
    }

    /// Fills `filters` from the tables, then answers from them.
    fn scan(&self, filters: &Arc<Filters>) {
        let scanned = connect(&self.path, false).and_then(|conn| {
            let keys = self.scan_into(&conn, "SELECT key FROM seen", &filters.seen)?;
            let works = self.scan_into(
                &conn,
                "SELECT work_id FROM receipts WHERE ok = 1 AND pure = 1 AND work_id IS NOT NULL",
                &filters.memo,
            )?;
            Ok(keys.max(works))
        });
        match scanned {
            Ok(keys) if keys <= self.capacity / 2 => {
                filters.added.fetch_add(keys, Ordering::Relaxed);
                if let Ok(mut ready) = self.ready.write() {
                    *ready = Some(Arc::clone(filters));
                }
            }
            Ok(keys) => {
                tracing::warn!(
                    keys,
                    "too many replay keys or reusable receipts for the store's filters; \
                     every lookup reads the database"
                );
                self.gave_up.store(true, Ordering::Relaxed);
                if let Ok(mut ready) = self.ready.write() {
                    *ready = None;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "filling the store's filters failed; every lookup reads the database");
                self.gave_up.store(true, Ordering::Relaxed);
                if let Ok(mut ready) = self.ready.write() {
                    *ready = None;
                }
            }
        }
        if let Ok(mut filling) = self.filling.write() {
            *filling = None;
        }
    }

    /// Adds the binary CID in the first column of every row of `sql` to `filter`; how many. A row
    /// that is not a CID fails the scan, and with it the filters.
    fn scan_into(&self, conn: &Connection, sql: &str, filter: &Filter) -> Result<u64> {
        const OP: &str = "fill filters";
        let fail = super::db_error(OP);
        let mut statement = conn.prepare(sql).map_err(&fail)?;
        let mut rows = statement.query([]).map_err(&fail)?;
        let mut n = 0;
        while let Some(row) = rows.next().map_err(&fail)? {
            let bytes = row
                .get_ref(0)
                .and_then(|v| Ok(v.as_blob()?))
                .map_err(&fail)?;
            filter.add(self.hash(&super::decode_cid(OP, bytes)?));
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipld::{RAW, cid_for};

    #[test]
    fn a_filter_holds_what_was_added_and_little_else() {
        let hasher = RandomState::new();
        let filter = Filter::new();
        let hash = |n: u32| hasher.hash_one(cid_for(RAW, &n.to_be_bytes()));
        for n in 0..20_000 {
            filter.add(hash(n));
        }
        assert!((0..20_000).all(|n| filter.may_hold(hash(n))));
        let strays = (20_000..120_000)
            .filter(|&n| filter.may_hold(hash(n)))
            .count();
        // At this load a false "maybe" is about one in 10^14; a handful would mean broken probes.
        assert!(
            strays <= 2,
            "{strays} of 100,000 absent keys looked present"
        );
    }

    /// A store on a file fills its filters from the tables it opened with, then answers "absent"
    /// from them for what it never stored, and "look it up" for all it did.
    #[tokio::test]
    async fn a_reopened_store_answers_from_filters_filled_from_its_tables() {
        use crate::store::{Commit, Store};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.db");
        let key = |n: u32| cid_for(RAW, format!("key {n}").as_bytes());
        let store = super::super::SqliteStore::open(&path).await.unwrap();
        for n in 0..100 {
            store
                .commit(Commit::default().with_claim(key(n), None))
                .await
                .unwrap();
        }
        store.close().await;
        drop(store);

        let store = super::super::SqliteStore::open(&path).await.unwrap();
        let absent = store
            .inner
            .absent
            .clone()
            .expect("a store on a file has filters");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !absent.is_ready() {
            assert!(
                std::time::Instant::now() < deadline,
                "the filters were never filled"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!((0..100).all(|n| !absent.lacks_key(&key(n))));
        assert!((100..200).all(|n| absent.lacks_key(&key(n))));
        assert!((100..200).all(|n| absent.lacks_work(&key(n))));
        store.close().await;
    }

    /// A stored key that is not a CID fails the scan: the store stops answering from filters and
    /// every lookup reads the database, which still finds what is stored.
    #[tokio::test]
    async fn a_scan_that_meets_a_damaged_row_leaves_every_lookup_to_sql() {
        use crate::store::{Commit, ReplayStore, Store};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.db");
        let key = cid_for(RAW, b"stored");
        let store = super::super::SqliteStore::open(&path).await.unwrap();
        store
            .commit(Commit::default().with_claim(key, None))
            .await
            .unwrap();
        store.close().await;
        drop(store);
        Connection::open(&path)
            .unwrap()
            .execute("INSERT INTO seen (key) VALUES (x'ffff')", [])
            .unwrap();

        let store = super::super::SqliteStore::open(&path).await.unwrap();
        let absent = store
            .inner
            .absent
            .clone()
            .expect("a store on a file has filters");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !absent.gave_up.load(Ordering::Relaxed) {
            assert!(
                std::time::Instant::now() < deadline,
                "the scan never gave up"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(!absent.is_ready());
        assert!(!absent.lacks_key(&cid_for(RAW, b"never stored")));
        assert!(store.seen(key).await.unwrap());
        assert!(!store.seen(cid_for(RAW, b"never stored")).await.unwrap());
        store.close().await;
    }
}
