//! The local Wasm engine: runs `/wasm/run` and `/wasi/run` tasks synchronously, deterministically
//! and within limits.
//!
//! One [`WasmEngine`] serves the whole process. It wraps a single `wasmtime::Engine` (compiling is
//! expensive and the engine is thread-safe), a bounded cache of compiled modules keyed by CID, and a
//! ticker thread that advances the engine's epoch so that runaway guests hit their deadline. Every
//! run gets a fresh `Store` with its own fuel, memory and deadline, so runs never share guest state.
//!
//! Three ways to call a module:
//! - [`WasmEngine::run_core`]: call an export with plain numbers (`i32`/`i64`/`f32`/`f64`).
//! - [`WasmEngine::run_cbor`]: call an export through the DAG-CBOR ABI of `docs/wasm-abi.md`.
//! - [`WasmEngine::run_wasi`]: run a WASI preview-1 command (`_start`) with captured stdio and no
//!   ambient authority.
//!
//! Determinism is a design goal, because receipts should not depend on which host ran a task: NaNs
//! are canonicalised, threads and relaxed SIMD are off, and WASI sees fixed clocks and seeded
//! randomness. Wall-clock deadlines are the one source of nondeterminism, and they only ever turn a
//! run into a `Timeout` failure.

mod abi;
mod core;
mod wasi;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use cid::Cid;
use ipld_core::ipld::Ipld;
use wasmtime::{Config, Engine, InstancePre, Linker, Module, ResourceLimiter, Store};

use self::core::{CoreState, Fail, HasLimiter, Limiter, classify};
pub use super::Limits;
use super::{ExecError, ExecErrorKind, Failure, Outcome};

pub use self::wasi::WasiRequest;

/// How often the epoch ticker advances the engine's epoch; deadlines are this coarse.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Compiled modules kept by default. Modules are usually small and few per deployment; 64 keeps the
/// working set of a busy gateway hot while bounding memory (a compiled module costs roughly its code
/// size plus a few tens of KiB).
pub const DEFAULT_CACHE_CAPACITY: usize = 64;

/// Elements any one table may grow to: enough for large function tables, small enough to bound memory.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Instances a run may create (we instantiate exactly one module per run).
const MAX_INSTANCES: usize = 4;
/// Tables a run may create.
const MAX_TABLES: usize = 16;
/// Linear memories a run may create; their total size is bounded by [`Limits::memory_bytes`].
const MAX_MEMORIES: usize = 4;

/// Counters of the compiled-module cache, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Runs that found their module already compiled.
    pub hits: u64,
    /// Modules compiled successfully (each miss that produced a module).
    pub compiles: u64,
    /// Modules dropped to make room.
    pub evictions: u64,
    /// Modules currently cached.
    pub entries: usize,
    /// Most modules the cache holds.
    pub capacity: usize,
}

/// The process-wide Wasm engine. `Send + Sync`: share it (e.g. in an `Arc`) and run many tasks at once.
///
/// Every `run_*` method blocks until the guest finishes or hits a limit. From async code, call
/// it through `tokio::task::spawn_blocking`, never directly inside an async task: WASI host calls
/// enter a Tokio runtime to block on their work, which panics on an async worker thread.
pub struct WasmEngine {
    engine: Engine,
    core_linker: Linker<CoreState>,
    wasi_linker: Linker<wasi::WasiState>,
    cache: Mutex<ModuleCache>,
    // Last, so the ticker stops after everything else is gone.
    _ticker: EpochTicker,
}

impl std::fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmEngine")
            .field("cache", &self.cache_stats())
            .finish_non_exhaustive()
    }
}

impl WasmEngine {
    /// An engine with the default cache capacity.
    pub fn new() -> Result<Self, ExecError> {
        Self::with_cache_capacity(DEFAULT_CACHE_CAPACITY)
    }

    /// An engine that keeps at most `capacity` compiled modules (0 disables caching).
    pub fn with_cache_capacity(capacity: usize) -> Result<Self, ExecError> {
        let engine =
            Engine::new(&engine_config()).map_err(|e| engine_error("creating engine", &e))?;
        let core_linker = Linker::new(&engine);
        let wasi_linker = wasi::linker(&engine)?;
        let ticker = EpochTicker::start(&engine)?;
        Ok(WasmEngine {
            engine,
            core_linker,
            wasi_linker,
            cache: Mutex::new(ModuleCache::new(capacity)),
            _ticker: ticker,
        })
    }

    /// Calls export `func` of the module with numeric `args`.
    ///
    /// Each argument must be an integer or float that fits the parameter's type exactly
    /// (`docs/wasm-abi.md` has the rules). The result is the single return value, a list for
    /// several, or null for none.
    pub fn run_core(
        &self,
        cid: &Cid,
        bytes: &[u8],
        func: &str,
        args: &[Ipld],
        limits: Limits,
    ) -> Result<Outcome, ExecError> {
        let pre = match self.core_pre(cid, bytes)? {
            Ok(pre) => pre,
            Err(fail) => return Ok(fail.never_ran()),
        };
        let mut store = self.new_store(CoreState::new(&limits), &limits)?;
        let meter = Meter::start(&store);
        let result = self::core::call(&mut store, &pre, func, args);
        Ok(meter.finish(&store, result))
    }

    /// Calls export `func` through the DAG-CBOR ABI (`docs/wasm-abi.md`), passing `input` and
    /// decoding the guest's DAG-CBOR result.
    pub fn run_cbor(
        &self,
        cid: &Cid,
        bytes: &[u8],
        func: &str,
        input: &Ipld,
        limits: Limits,
    ) -> Result<Outcome, ExecError> {
        let pre = match self.core_pre(cid, bytes)? {
            Ok(pre) => pre,
            Err(fail) => return Ok(fail.never_ran()),
        };
        let input = match crate::ipld::to_dag_cbor(input) {
            Ok(bytes) => bytes,
            Err(e) => {
                let fail = Fail::new(Failure::InvalidArgs, format!("input is not DAG-CBOR: {e}"));
                return Ok(fail.never_ran());
            }
        };
        let mut store = self.new_store(CoreState::new(&limits), &limits)?;
        let meter = Meter::start(&store);
        let result = abi::call(&mut store, &pre, func, &input, limits.max_output_bytes);
        Ok(meter.finish(&store, result))
    }

    /// Runs a WASI preview-1 command module's `_start` with `request` as its whole world; the
    /// value is `{exit_code, stdout, stderr, truncated}` (see `docs/wasm-abi.md`).
    pub fn run_wasi(
        &self,
        cid: &Cid,
        bytes: &[u8],
        request: WasiRequest,
        limits: Limits,
    ) -> Result<Outcome, ExecError> {
        let pre = match self.compiled(cid, bytes)? {
            Ok(compiled) => compiled.wasi_pre(&self.wasi_linker),
            Err(fail) => Err(fail),
        };
        let pre = match pre {
            Ok(pre) => pre,
            Err(fail) => return Ok(fail.never_ran()),
        };
        let (state, pipes) = match wasi::WasiState::new(cid, request, &limits) {
            Ok(built) => built,
            Err(fail) => return Ok(fail.never_ran()),
        };
        let mut store = self.new_store(state, &limits)?;
        let meter = Meter::start(&store);
        let result = wasi::call(&mut store, &pre, &pipes);
        Ok(meter.finish(&store, result))
    }

    /// Current counters of the compiled-module cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.lock_cache().stats()
    }

    /// Whether the module with `cid` is compiled and cached.
    pub fn is_cached(&self, cid: &Cid) -> bool {
        self.lock_cache().entries.contains_key(cid)
    }

    fn lock_cache(&self) -> MutexGuard<'_, ModuleCache> {
        // A panic while holding the lock cannot leave the map half-updated in a harmful way.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The instantiable module for plain and ABI calls: compiled (or cached) and linked with no
    /// imports. The inner error is a task failure (bad module), the outer one a host failure.
    fn core_pre(
        &self,
        cid: &Cid,
        bytes: &[u8],
    ) -> Result<Result<InstancePre<CoreState>, Fail>, ExecError> {
        Ok(self
            .compiled(cid, bytes)?
            .and_then(|compiled| compiled.core_pre(&self.core_linker)))
    }

    /// The compiled module for `cid`, compiling `bytes` on a miss. The outer error is a broken
    /// contract (bytes that are not the CID's); the inner one an invalid module.
    fn compiled(&self, cid: &Cid, bytes: &[u8]) -> Result<Result<Arc<Compiled>, Fail>, ExecError> {
        if let Some(hit) = self.lock_cache().get(cid) {
            return Ok(Ok(hit));
        }
        check_cid(cid, bytes)?;
        // Compile outside the lock: it takes milliseconds to seconds and other runs must not wait.
        // Two runs racing on the same new CID may both compile; the first insert wins.
        let module = match Module::from_binary(&self.engine, bytes) {
            Ok(module) => module,
            Err(e) => return Ok(Err(Fail::new(Failure::InvalidModule, format!("{e:#}")))),
        };
        let compiled = Arc::new(Compiled {
            module,
            core: OnceLock::new(),
            wasi: OnceLock::new(),
        });
        Ok(Ok(self.lock_cache().insert(*cid, compiled)))
    }

    fn new_store<T: HasLimiter>(&self, data: T, limits: &Limits) -> Result<Store<T>, ExecError> {
        let mut store = Store::new(&self.engine, data);
        store.limiter(|state| state.limiter() as &mut dyn ResourceLimiter);
        store
            .set_fuel(limits.fuel)
            .map_err(|e| ExecError::new(ExecErrorKind::Host, format!("setting fuel: {e}")))?;
        store.set_epoch_deadline(deadline_ticks(limits.timeout));
        store.epoch_deadline_trap();
        Ok(store)
    }
}

/// The engine configuration: deterministic, metered and interruptible.
fn engine_config() -> Config {
    let mut config = Config::new();
    config
        // Metering and deadlines.
        .consume_fuel(true)
        .epoch_interruption(true)
        // Determinism: the same inputs give the same outputs on every host. Threads and shared
        // memory are not compiled in (no `threads` feature), and relaxed SIMD is the one SIMD part
        // whose results may differ between CPUs.
        .cranelift_nan_canonicalization(true)
        .wasm_relaxed_simd(false)
        .relaxed_simd_deterministic(true)
        .shared_memory(false)
        .wasm_features(wasmtime::WasmFeatures::THREADS, false)
        // We only run core modules; components would need a different API.
        .wasm_component_model(false);
    config
}

/// Epoch ticks from now until the deadline, rounded so the guest never gets less than `timeout`
/// (the first tick may come almost at once, hence the extra one).
fn deadline_ticks(timeout: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    let ticks = timeout.as_nanos().div_ceil(tick).saturating_add(1);
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

fn engine_error(what: &str, e: &wasmtime::Error) -> ExecError {
    ExecError::new(ExecErrorKind::Engine, format!("{what}: {e:#}"))
}

/// Checks that `bytes` are what `cid` names, so a wrong pairing can never poison the cache.
fn check_cid(cid: &Cid, bytes: &[u8]) -> Result<(), ExecError> {
    const SHA2_256: u64 = 0x12;
    if cid.hash().code() != SHA2_256 {
        return Err(ExecError::new(
            ExecErrorKind::CidMismatch,
            format!("module CID {cid} does not use sha2-256"),
        ));
    }
    if crate::ipld::cid_for(cid.codec(), bytes) != *cid {
        return Err(ExecError::new(
            ExecErrorKind::CidMismatch,
            format!("module bytes do not hash to {cid}"),
        ));
    }
    Ok(())
}

/// What a store held when the guest started (its fuel) and when that was, so a run's outcome says
/// what it consumed: the fuel taken from the store, and the time from instantiation (which runs the
/// guest's start function) to the end of the call.
struct Meter {
    fuel: u64,
    started: Instant,
}

impl Meter {
    fn start<T>(store: &Store<T>) -> Meter {
        Meter {
            fuel: store.get_fuel().unwrap_or(0),
            started: Instant::now(),
        }
    }

    /// Turns a run's result into an outcome, with what it consumed.
    fn finish<T>(self, store: &Store<T>, result: Result<Ipld, Fail>) -> Outcome {
        let run_time = self.started.elapsed();
        let fuel_used = self.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        match result {
            Ok(value) => Outcome::Ok {
                value,
                fuel_used,
                run_time,
            },
            Err(fail) => fail.into_outcome(fuel_used, run_time),
        }
    }
}

/// A compiled module and its pre-linked instances, one per run mode, linked on first use.
struct Compiled {
    module: Module,
    core: OnceLock<Result<InstancePre<CoreState>, String>>,
    wasi: OnceLock<Result<InstancePre<wasi::WasiState>, String>>,
}

impl Compiled {
    fn core_pre(&self, linker: &Linker<CoreState>) -> Result<InstancePre<CoreState>, Fail> {
        let pre = self.core.get_or_init(|| {
            // The core linker is empty: plain and ABI modules get no host functions at all.
            linker
                .instantiate_pre(&self.module)
                .map_err(|e| format!("module cannot be linked without imports: {e:#}"))
        });
        pre.clone()
            .map_err(|message| Fail::new(Failure::InvalidModule, message))
    }

    fn wasi_pre(
        &self,
        linker: &Linker<wasi::WasiState>,
    ) -> Result<InstancePre<wasi::WasiState>, Fail> {
        let pre = self.wasi.get_or_init(|| {
            linker
                .instantiate_pre(&self.module)
                .map_err(|e| format!("module imports more than WASI preview 1: {e:#}"))
        });
        pre.clone()
            .map_err(|message| Fail::new(Failure::InvalidModule, message))
    }
}

/// A count-bounded map from CID to compiled module, evicting the least recently used entry.
///
/// Bounded by count rather than bytes because wasmtime does not report a module's memory cost
/// cheaply; a linear scan to find the victim is fine at the capacities we use (tens of modules).
struct ModuleCache {
    capacity: usize,
    entries: HashMap<Cid, CacheSlot>,
    clock: u64,
    stats: CacheStats,
}

struct CacheSlot {
    compiled: Arc<Compiled>,
    last_used: u64,
}

impl ModuleCache {
    fn new(capacity: usize) -> Self {
        ModuleCache {
            capacity,
            entries: HashMap::new(),
            clock: 0,
            stats: CacheStats {
                capacity,
                ..CacheStats::default()
            },
        }
    }

    fn get(&mut self, cid: &Cid) -> Option<Arc<Compiled>> {
        self.clock += 1;
        let slot = self.entries.get_mut(cid)?;
        slot.last_used = self.clock;
        self.stats.hits += 1;
        Some(Arc::clone(&slot.compiled))
    }

    fn insert(&mut self, cid: Cid, compiled: Arc<Compiled>) -> Arc<Compiled> {
        self.stats.compiles += 1;
        self.clock += 1;
        if let Some(slot) = self.entries.get_mut(&cid) {
            slot.last_used = self.clock;
            return Arc::clone(&slot.compiled);
        }
        if self.capacity == 0 {
            return compiled;
        }
        while self.entries.len() >= self.capacity {
            let victim = self
                .entries
                .iter()
                .min_by_key(|(_, slot)| slot.last_used)
                .map(|(cid, _)| *cid);
            let Some(victim) = victim else { break };
            self.entries.remove(&victim);
            self.stats.evictions += 1;
        }
        self.entries.insert(
            cid,
            CacheSlot {
                compiled: Arc::clone(&compiled),
                last_used: self.clock,
            },
        );
        compiled
    }

    fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.entries.len(),
            ..self.stats
        }
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: &Engine) -> Result<Self, ExecError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        // A weak handle, so a ticker that somehow outlives its owner cannot keep the engine alive.
        let weak = engine.weak();
        let handle = thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                let mut next = Instant::now() + EPOCH_TICK;
                while !flag.load(Ordering::Acquire) {
                    let now = Instant::now();
                    if now < next {
                        // Parking (not sleeping) lets `drop` wake us at once; wake-ups may be
                        // spurious, hence the explicit schedule.
                        thread::park_timeout(next - now);
                        continue;
                    }
                    let Some(engine) = weak.upgrade() else { break };
                    engine.increment_epoch();
                    next += EPOCH_TICK;
                }
            })
            .map_err(|e| {
                ExecError::new(ExecErrorKind::Engine, format!("starting epoch ticker: {e}"))
            })?;
        Ok(EpochTicker {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(handle) = self.handle.take() {
            handle.thread().unpark();
            // The thread never panics; if it somehow did, there is nothing left to clean up.
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(fuel: u64, memory_bytes: u64, ms: u64, out: usize) -> Limits {
        Limits {
            fuel,
            memory_bytes,
            timeout: Duration::from_millis(ms),
            max_output_bytes: out,
            ..Limits::default()
        }
    }

    #[test]
    fn limits_min_takes_the_lower_of_each() {
        let a = limits(10, 2_000, 50, 7);
        let b = limits(20, 1_000, 40, 9);
        assert_eq!(a.min(&b), limits(10, 1_000, 40, 7));
        assert_eq!(b.min(&a), a.min(&b));
    }

    #[test]
    fn deadline_never_shorter_than_timeout() {
        assert_eq!(deadline_ticks(Duration::ZERO), 1);
        assert_eq!(deadline_ticks(Duration::from_millis(10)), 2);
        assert_eq!(deadline_ticks(Duration::from_millis(11)), 3);
        assert_eq!(deadline_ticks(Duration::MAX), u64::MAX);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn dropping_the_engine_stops_the_ticker() {
        // Only this test creates engines in the library's test binary, so the count is ours.
        fn tickers() -> usize {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .filter(|name| name.trim() == "wasm-epoch")
                .count()
        }
        // A new thread names itself, and an exited one leaves `/proc` shortly after `join`:
        // allow a moment for each.
        fn settles_at(expected: usize) -> bool {
            (0..200).any(|_| {
                let now = tickers();
                if now != expected {
                    thread::sleep(Duration::from_millis(5));
                }
                now == expected
            })
        }
        assert!(settles_at(0));
        let engine = WasmEngine::new().unwrap();
        assert!(settles_at(1), "the ticker runs");
        drop(engine);
        assert!(settles_at(0), "the ticker stopped");
    }

    #[test]
    fn engine_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<WasmEngine>();
    }
}
