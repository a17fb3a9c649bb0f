//! WASI preview-1 command modules, run with no ambient authority and a deterministic world.
//!
//! What a guest sees (also in `docs/wasm-abi.md`):
//! - argv and environment exactly as in the [`WasiRequest`]; nothing inherited from the host.
//! - stdin: the request's bytes, then end of file. stdout and stderr: captured in memory, each
//!   keeping its first `max_output_bytes`; writes beyond that succeed but are dropped, and the
//!   result says `truncated: true`.
//! - no preopened directories (so no files at all), no sockets, no name lookup.
//! - `CLOCK_REALTIME` is fixed at the Unix epoch (0 ns). `CLOCK_MONOTONIC` starts at 0 and
//!   advances by [`MONOTONIC_STEP_NS`] on every read; `poll_oneoff` never blocks: every
//!   subscription fires at once and clock subscriptions move the monotonic clock to their deadline.
//!   CPU-time clocks are unsupported (`EBADF`).
//! - `random_get` returns a pseudo-random stream seeded from the module CID and the request, so
//!   two identical runs see identical bytes. It is deliberately predictable: not for secrets.
//! - `proc_exit(n)` ends the run with exit code `n` (`n` must be below 126, as WASI requires).
//!
//! Most functions come from `wasmtime-wasi`; `poll_oneoff` and `random_get` are replaced because
//! the stock ones sleep on the host clock and draw from the host's entropy.

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use cid::Cid;
use ipld_core::ipld::Ipld;
use sha2::{Digest, Sha256};
use wasmtime::{Caller, Engine, Extern, InstancePre, Linker, Store};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, I32Exit, WasiCtxBuilder};

use super::{Fail, HasLimiter, Limiter, Limits, classify};
use crate::exec::{ExecError, ExecErrorKind, Failure};

/// How far `CLOCK_MONOTONIC` advances on each read, in nanoseconds; also its reported resolution.
pub const MONOTONIC_STEP_NS: u64 = 1_000;

/// Domain separation for the random seed, versioned so the stream can change deliberately.
const RANDOM_DOMAIN: &[u8] = b"ucan-gateway/wasi-random/v1";

const WASI_MODULE: &str = "wasi_snapshot_preview1";
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;

/// Everything a WASI command gets from the outside world.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WasiRequest {
    /// argv, verbatim; by convention the first is the program name.
    pub args: Vec<String>,
    /// Environment variables, in order; names must be non-empty and free of `=` and NUL.
    pub env: Vec<(String, String)>,
    /// The whole of stdin.
    pub stdin: Vec<u8>,
}

impl WasiRequest {
    /// Rejects strings a C-style guest could not receive intact.
    fn validate(&self) -> Result<(), Fail> {
        let invalid = |message: String| Fail::new(Failure::InvalidArgs, message);
        if let Some(i) = self.args.iter().position(|a| a.contains('\0')) {
            return Err(invalid(format!("argument {i} contains a NUL byte")));
        }
        for (name, value) in &self.env {
            if name.is_empty() || name.contains(['=', '\0']) {
                return Err(invalid(format!(
                    "environment name {name:?} is empty or contains `=` or NUL"
                )));
            }
            if value.contains('\0') {
                return Err(invalid(format!(
                    "environment variable {name:?} contains a NUL byte"
                )));
            }
        }
        Ok(())
    }

    /// The random seed: SHA-256 over a domain tag, the module CID and the request, each
    /// length-prefixed so that no two different requests share a seed.
    fn seed(&self, cid: &Cid) -> [u8; 32] {
        fn feed(hasher: &mut Sha256, bytes: &[u8]) {
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        }
        let mut hasher = Sha256::new();
        feed(&mut hasher, RANDOM_DOMAIN);
        feed(&mut hasher, &cid.to_bytes());
        hasher.update((self.args.len() as u64).to_be_bytes());
        for arg in &self.args {
            feed(&mut hasher, arg.as_bytes());
        }
        hasher.update((self.env.len() as u64).to_be_bytes());
        for (name, value) in &self.env {
            feed(&mut hasher, name.as_bytes());
            feed(&mut hasher, value.as_bytes());
        }
        feed(&mut hasher, &self.stdin);
        hasher.finalize().into()
    }
}

/// Store data of a WASI run.
pub(super) struct WasiState {
    wasi: WasiP1Ctx,
    limiter: Limiter,
    clock: Arc<VirtualClock>,
    random: RandomStream,
}

impl HasLimiter for WasiState {
    fn limiter(&mut self) -> &mut Limiter {
        &mut self.limiter
    }
    fn limit_hit(&self) -> Option<&str> {
        self.limiter.hit.as_deref()
    }
}

/// The host ends of the guest's stdout and stderr.
pub(super) struct Pipes {
    stdout: CapturePipe,
    stderr: CapturePipe,
}

impl WasiState {
    /// The guest's world for `request`, and the pipes to read its output from afterwards.
    pub(super) fn new(
        cid: &Cid,
        request: WasiRequest,
        limits: &Limits,
    ) -> Result<(Self, Pipes), Fail> {
        request.validate()?;
        let seed = request.seed(cid);
        let clock = Arc::new(VirtualClock::default());
        let pipes = Pipes {
            stdout: CapturePipe::new(limits.max_output_bytes),
            stderr: CapturePipe::new(limits.max_output_bytes),
        };
        let mut builder = WasiCtxBuilder::new();
        builder
            .args(&request.args)
            .envs(&request.env)
            .stdin(MemoryInputPipe::new(request.stdin))
            .stdout(pipes.stdout.clone())
            .stderr(pipes.stderr.clone())
            .wall_clock(EpochWallClock)
            .monotonic_clock(SharedClock(Arc::clone(&clock)))
            // Preview 1 reaches randomness only through `random_get`, which we replace; these make
            // sure no other path could reach host entropy either.
            .secure_random(wasmtime_wasi::Deterministic::new(seed.to_vec()))
            .insecure_random(wasmtime_wasi::Deterministic::new(seed.to_vec()))
            .insecure_random_seed(0)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let state = WasiState {
            wasi: builder.build_p1(),
            limiter: Limiter::new(usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX)),
            clock,
            random: RandomStream::new(seed),
        };
        Ok((state, pipes))
    }
}

/// The linker for WASI runs: `wasmtime-wasi`'s preview 1, with our deterministic replacements.
pub(super) fn linker(engine: &Engine) -> Result<Linker<WasiState>, ExecError> {
    let setup = |e: wasmtime::Error| {
        ExecError::new(ExecErrorKind::Engine, format!("setting up WASI: {e:#}"))
    };
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state: &mut WasiState| &mut state.wasi)
        .map_err(setup)?;
    linker.allow_shadowing(true);
    linker
        .func_wrap(WASI_MODULE, "poll_oneoff", poll_oneoff)
        .map_err(setup)?;
    linker
        .func_wrap(WASI_MODULE, "random_get", random_get)
        .map_err(setup)?;
    linker.allow_shadowing(false);
    Ok(linker)
}

/// Instantiates `pre`, runs `_start` and collects exit code and output.
pub(super) fn call(
    store: &mut Store<WasiState>,
    pre: &InstancePre<WasiState>,
    pipes: &Pipes,
) -> Result<Ipld, Fail> {
    let instance = pre
        .instantiate(&mut *store)
        .map_err(|e| classify(store, &e))?;
    let Some(start) = instance.get_func(&mut *store, "_start") else {
        return Err(Fail::new(
            Failure::NoSuchExport,
            "a WASI command must export `_start`",
        ));
    };
    let start = start.typed::<(), ()>(&*store).map_err(|_| {
        Fail::new(
            Failure::InvalidModule,
            "`_start` must take and return nothing",
        )
    })?;
    let exit_code = match start.call(&mut *store, ()) {
        Ok(()) => 0,
        Err(e) => match e.downcast_ref::<I32Exit>() {
            // `proc_exit` is how a command ends, not a failure.
            Some(I32Exit(code)) if store.data().limit_hit().is_none() => *code,
            _ => return Err(classify(store, &e)),
        },
    };
    let (stdout, stdout_truncated) = pipes.stdout.take();
    let (stderr, stderr_truncated) = pipes.stderr.take();
    Ok(Ipld::Map(BTreeMap::from([
        (
            "exit_code".to_string(),
            Ipld::Integer(i128::from(exit_code)),
        ),
        ("stdout".to_string(), Ipld::Bytes(stdout)),
        ("stderr".to_string(), Ipld::Bytes(stderr)),
        (
            "truncated".to_string(),
            Ipld::Bool(stdout_truncated || stderr_truncated),
        ),
    ])))
}

/// The guest's exported memory, which every WASI function that takes pointers needs.
fn memory(caller: &mut Caller<'_, WasiState>) -> wasmtime::Result<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => Err(wasmtime::Error::msg(
            "WASI needs an exported memory named `memory`",
        )),
    }
}

/// `ptr..ptr + len` if it lies within `memory`.
fn guest_range(memory: &[u8], ptr: i32, len: usize) -> Option<Range<usize>> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(len)?;
    (end <= memory.len()).then_some(start..end)
}

/// `random_get(buf, len) -> errno`: fills the buffer from the run's seeded stream.
fn random_get(mut caller: Caller<'_, WasiState>, buf: i32, len: i32) -> wasmtime::Result<i32> {
    let memory = memory(&mut caller)?;
    let (bytes, state) = memory.data_and_store_mut(&mut caller);
    let Some(range) = guest_range(bytes, buf, len as u32 as usize) else {
        return Ok(ERRNO_FAULT);
    };
    state.random.fill(&mut bytes[range]);
    Ok(ERRNO_SUCCESS)
}

const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;
const EVENTTYPE_CLOCK: u8 = 0;
const EVENTTYPE_FD_READ: u8 = 1;
const EVENTTYPE_FD_WRITE: u8 = 2;
const CLOCKID_REALTIME: u32 = 0;
const CLOCKID_MONOTONIC: u32 = 1;
const SUBCLOCKFLAGS_ABSTIME: u16 = 1;

/// `poll_oneoff(in, out, nsubscriptions, nevents) -> errno`, without ever blocking.
///
/// Every subscription fires at once: a clock subscription advances the virtual monotonic clock to
/// its deadline (so a guest that sleeps sees the time it slept pass), stdio descriptors are always
/// ready, and other descriptors report `EBADF`. Layouts follow `wasi_snapshot_preview1.witx`:
/// a subscription is 48 bytes (`userdata` u64 @0, tag u8 @8, clock id u32 @16 / fd u32 @16,
/// timeout u64 @24, flags u16 @40); an event is 32 bytes (`userdata` @0, error u16 @8, type u8 @10).
fn poll_oneoff(
    mut caller: Caller<'_, WasiState>,
    subscriptions: i32,
    events: i32,
    count: i32,
    nevents: i32,
) -> wasmtime::Result<i32> {
    let memory = memory(&mut caller)?;
    let (bytes, state) = memory.data_and_store_mut(&mut caller);
    let count = count as u32 as usize;
    if count == 0 {
        return Ok(ERRNO_INVAL);
    }
    let ranges = (
        count
            .checked_mul(SUBSCRIPTION_SIZE)
            .and_then(|len| guest_range(bytes, subscriptions, len)),
        count
            .checked_mul(EVENT_SIZE)
            .and_then(|len| guest_range(bytes, events, len)),
        guest_range(bytes, nevents, 4),
    );
    let (Some(subs_at), Some(events_at), Some(nevents_at)) = ranges else {
        return Ok(ERRNO_FAULT);
    };
    // Decode everything first: the output may overlap the input.
    let mut out = Vec::with_capacity(count);
    for sub in bytes[subs_at].chunks_exact(SUBSCRIPTION_SIZE) {
        let userdata = read_u64(sub, 0);
        let tag = sub[8];
        let errno = match tag {
            EVENTTYPE_CLOCK => match read_u32(sub, 16) {
                CLOCKID_MONOTONIC => {
                    let timeout = read_u64(sub, 24);
                    let absolute = read_u16(sub, 40) & SUBCLOCKFLAGS_ABSTIME != 0;
                    state.clock.advance(timeout, absolute);
                    ERRNO_SUCCESS
                }
                // The wall clock never moves, so any deadline on it is as good as reached.
                CLOCKID_REALTIME => ERRNO_SUCCESS,
                _ => ERRNO_INVAL,
            },
            EVENTTYPE_FD_READ | EVENTTYPE_FD_WRITE => match read_u32(sub, 16) {
                0..=2 => ERRNO_SUCCESS,
                _ => ERRNO_BADF,
            },
            _ => return Ok(ERRNO_INVAL),
        };
        let mut event = [0u8; EVENT_SIZE];
        event[0..8].copy_from_slice(&userdata.to_le_bytes());
        event[8..10].copy_from_slice(&(errno as u16).to_le_bytes());
        event[10] = tag;
        out.push(event);
    }
    for (slot, event) in bytes[events_at].chunks_exact_mut(EVENT_SIZE).zip(&out) {
        slot.copy_from_slice(event);
    }
    bytes[nevents_at].copy_from_slice(&(count as u32).to_le_bytes());
    Ok(ERRNO_SUCCESS)
}

fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The guest's monotonic clock: advances only when read or slept on.
#[derive(Debug, Default)]
struct VirtualClock {
    next: AtomicU64,
}

impl VirtualClock {
    /// The current time, moving the clock on by one step.
    fn read(&self) -> u64 {
        let step = |t: u64| Some(t.saturating_add(MONOTONIC_STEP_NS));
        // `fetch_update` with a closure that always returns `Some` cannot fail.
        match self
            .next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, step)
        {
            Ok(previous) | Err(previous) => previous,
        }
    }

    /// Moves the clock to a deadline (`timeout` after now, or at `timeout` when absolute).
    fn advance(&self, timeout: u64, absolute: bool) {
        let now = self.next.load(Ordering::Relaxed);
        let deadline = if absolute {
            timeout
        } else {
            now.saturating_add(timeout)
        };
        self.next.fetch_max(deadline, Ordering::Relaxed);
    }
}

struct SharedClock(Arc<VirtualClock>);

impl HostMonotonicClock for SharedClock {
    fn resolution(&self) -> u64 {
        MONOTONIC_STEP_NS
    }
    fn now(&self) -> u64 {
        self.0.read()
    }
}

/// A wall clock stopped at the Unix epoch.
struct EpochWallClock;

impl HostWallClock for EpochWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// A reproducible byte stream: block `n` is SHA-256(seed ‖ n as u64 big-endian).
struct RandomStream {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl RandomStream {
    fn new(seed: [u8; 32]) -> Self {
        RandomStream {
            seed,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }

    fn fill(&mut self, out: &mut [u8]) {
        for byte in out {
            if self.used == self.block.len() {
                let mut hasher = Sha256::new();
                hasher.update(self.seed);
                hasher.update(self.counter.to_be_bytes());
                self.block = hasher.finalize().into();
                self.counter = self.counter.wrapping_add(1);
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
    }
}

/// An in-memory stdout/stderr that keeps the first `capacity` bytes and drops (but accepts) the
/// rest, so a chatty guest is truncated rather than killed.
#[derive(Clone)]
struct CapturePipe {
    inner: Arc<Mutex<Captured>>,
}

struct Captured {
    bytes: Vec<u8>,
    capacity: usize,
    truncated: bool,
}

impl CapturePipe {
    /// The most bytes a single write may carry, bounding what the host copies out per call.
    const WRITE_BUDGET: usize = 64 * 1024;

    fn new(capacity: usize) -> Self {
        CapturePipe {
            inner: Arc::new(Mutex::new(Captured {
                bytes: Vec::new(),
                capacity,
                truncated: false,
            })),
        }
    }

    fn push(&self, data: &[u8]) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let room = inner.capacity.saturating_sub(inner.bytes.len());
        let kept = data.len().min(room);
        inner.bytes.extend_from_slice(&data[..kept]);
        if kept < data.len() {
            inner.truncated = true;
        }
    }

    /// The captured bytes and whether any were dropped.
    fn take(&self) -> (Vec<u8>, bool) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        (std::mem::take(&mut inner.bytes), inner.truncated)
    }
}

impl IsTerminal for CapturePipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturePipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for CapturePipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(Self::WRITE_BUDGET)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturePipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturePipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_pipe_keeps_a_prefix_and_flags_truncation() {
        let pipe = CapturePipe::new(5);
        pipe.push(b"abc");
        assert_eq!(pipe.take(), (b"abc".to_vec(), false));
        let pipe = CapturePipe::new(5);
        pipe.push(b"abc");
        pipe.push(b"defg");
        pipe.push(b"h");
        assert_eq!(pipe.take(), (b"abcde".to_vec(), true));
    }

    #[test]
    fn virtual_clock_steps_and_advances() {
        let clock = VirtualClock::default();
        assert_eq!(clock.read(), 0);
        assert_eq!(clock.read(), MONOTONIC_STEP_NS);
        clock.advance(1_000_000, false);
        assert_eq!(clock.read(), 2 * MONOTONIC_STEP_NS + 1_000_000);
        // An absolute deadline in the past does not move the clock back.
        clock.advance(5, true);
        assert!(clock.read() > 1_000_000);
        clock.advance(u64::MAX, true);
        assert_eq!(clock.read(), u64::MAX);
        assert_eq!(clock.read(), u64::MAX);
    }

    #[test]
    fn random_stream_is_reproducible_and_seed_dependent() {
        let (mut a, mut b, mut c) = (
            RandomStream::new([1; 32]),
            RandomStream::new([1; 32]),
            RandomStream::new([2; 32]),
        );
        let (mut x, mut y, mut z) = ([0u8; 100], [0u8; 100], [0u8; 100]);
        a.fill(&mut x[..7]);
        a.fill(&mut x[7..]);
        b.fill(&mut y);
        c.fill(&mut z);
        assert_eq!(x, y, "split reads give the same stream");
        assert_ne!(x, z);
        assert_ne!(x[..32], x[32..64], "blocks differ");
    }

    #[test]
    fn seed_depends_on_every_part_of_the_request() {
        let cid = crate::ipld::cid_for(crate::ipld::RAW, b"module");
        let base = WasiRequest {
            args: vec!["a".into(), "b".into()],
            env: vec![("K".into(), "V".into())],
            stdin: b"in".to_vec(),
        };
        let mut shifted = base.clone();
        shifted.args = vec!["ab".into()];
        let mut other_env = base.clone();
        other_env.env[0].1 = "W".into();
        let seed = base.seed(&cid);
        assert_eq!(seed, base.clone().seed(&cid));
        assert_ne!(seed, shifted.seed(&cid));
        assert_ne!(seed, other_env.seed(&cid));
        assert_ne!(
            seed,
            base.seed(&crate::ipld::cid_for(crate::ipld::RAW, b"other"))
        );
    }

    #[test]
    fn requests_with_nul_or_bad_env_names_are_refused() {
        let bad = |request: WasiRequest| request.validate().is_err();
        assert!(bad(WasiRequest {
            args: vec!["a\0b".into()],
            ..WasiRequest::default()
        }));
        assert!(bad(WasiRequest {
            env: vec![("A=B".into(), "v".into())],
            ..WasiRequest::default()
        }));
        assert!(bad(WasiRequest {
            env: vec![(String::new(), "v".into())],
            ..WasiRequest::default()
        }));
        assert!(!bad(WasiRequest {
            env: vec![("A".into(), "x=y".into())],
            ..WasiRequest::default()
        }));
    }
}
