//! `ucan-gateway serve`: resolve settings (flags, environment, embedded defaults), open the store,
//! start the executors and serve HTTP until SIGINT/SIGTERM.
//!
//! With no flags at all it needs nothing outside its data directory: a gateway key is generated there
//! on first start, the SQLite store lives there, and the operator policy is the embedded
//! `policies/default.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};

use crate::config::OperatorPolicy;
use crate::did::{KeyAlg, SigningKey};
use crate::exec::registry;
use crate::exec::wasm::WasmEngine;
use crate::gateway::Gateway;
use crate::ipld::{RAW, cid_for};
use crate::server::{self, CorsOrigins, Drain, Edge, HttpSettings};
use crate::store::Store;

/// What `serve` was asked for (flags and environment), before defaults are applied.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "UCAN_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory for the gateway key (if --key is not given) and the SQLite store.
    #[arg(
        long,
        env = "UCAN_GATEWAY_DATA_DIR",
        default_value = "ucan-gateway-data"
    )]
    pub data_dir: PathBuf,
    /// The gateway's key file. Default: `<data-dir>/gateway.key`, generated on first start.
    #[arg(long, env = "UCAN_GATEWAY_KEY")]
    pub key: Option<PathBuf>,
    /// Operator policy file. Default: the embedded policies/default.toml.
    #[arg(long, env = "UCAN_GATEWAY_POLICY")]
    pub policy: Option<PathBuf>,
    /// A directory of .wasm files to store at startup, so invocations can link to them by CID.
    #[arg(long, env = "UCAN_GATEWAY_MODULES")]
    pub modules: Option<PathBuf>,
    /// Allowed clock skew in seconds for token time bounds.
    #[arg(long, default_value_t = crate::ucan::validate::DEFAULT_LEEWAY_SECS)]
    pub leeway: i64,
    /// A Bacalhau network's API URL: adds a backend named "bacalhau" (no auth) and routes
    /// /docker/run, /wasm32-wasi/run and /bacalhau/job/run to it unless the policy routes them.
    #[arg(long, env = "UCAN_GATEWAY_BACALHAU_URL")]
    pub bacalhau: Option<String>,
    /// Log lines as `text` (for people) or `json` (one object per line, for log pipelines).
    #[arg(long, value_enum, env = "UCAN_GATEWAY_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The HTTP edge: timeouts, drain, concurrency caps, CORS.
    #[command(flatten)]
    pub http: HttpArgs,
    /// The store, and how replicas sharing one keep up with each other.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Threads that answer requests (the async runtime's workers). Default: one per core. The
    /// SQLite writer and Wasm calls run on threads of their own besides these.
    // Read by the `serve` command when it builds its runtime; `start` runs on the caller's.
    #[arg(long, env = "UCAN_GATEWAY_WORKER_THREADS")]
    pub worker_threads: Option<std::num::NonZeroUsize>,
}

/// Where the durable state lives, and how a replica follows what the others sharing it do.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// The store: `sqlite:PATH`, or `postgres://USER@HOST/DB` (query parameters `pool_size`,
    /// `statement_timeout`, `connect_timeout`, `schema`; see docs/deploy.md) for several replicas
    /// sharing one database. Default: `sqlite:<data-dir>/gateway.db`.
    #[arg(long = "store", env = "UCAN_GATEWAY_STORE")]
    pub url: Option<String>,
    /// How often revocations and awaited receipts are looked up again, in case an announcement
    /// from another replica was missed (announced ones are seen at once).
    #[arg(long, env = "UCAN_GATEWAY_STORE_REFRESH", value_parser = seconds, default_value = "5")]
    pub store_refresh: Duration,
    /// How long a replica holds the jobs it watches: if it dies, another takes them over after
    /// this long.
    #[arg(long, env = "UCAN_GATEWAY_JOB_LEASE", value_parser = seconds, default_value = "30")]
    pub job_lease: Duration,
}

impl Default for StoreArgs {
    fn default() -> Self {
        StoreArgs {
            url: None,
            store_refresh: crate::gateway::DEFAULT_STORE_REFRESH,
            job_lease: crate::gateway::DEFAULT_JOB_LEASE,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per event, with the request's span (and its request id) in it.
    Json,
}

/// The HTTP edge's flags, as given (resolved into [`HttpSettings`] by [`HttpArgs::resolve`]).
/// Durations are seconds (`10`) or humantime (`500ms`, `1m`).
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Time a client has to send a request's headers, from its first byte.
    #[arg(long, env = "UCAN_GATEWAY_HEADER_READ_TIMEOUT", value_parser = seconds, default_value = "10")]
    pub header_read_timeout: Duration,
    /// Time a kept-alive connection may stay silent between requests before it is closed.
    #[arg(long, env = "UCAN_GATEWAY_IDLE_TIMEOUT", value_parser = seconds, default_value = "75")]
    pub idle_timeout: Duration,
    /// Time a request body may go without a byte arriving (a slow upload that keeps sending is
    /// never cut).
    #[arg(long, env = "UCAN_GATEWAY_BODY_READ_TIMEOUT", value_parser = seconds, default_value = "30")]
    pub body_read_timeout: Duration,
    /// Deadline for answering a request (long polls are bounded by their own `wait`).
    #[arg(long, env = "UCAN_GATEWAY_REQUEST_TIMEOUT", value_parser = seconds, default_value = "60")]
    pub request_timeout: Duration,
    /// On SIGTERM/SIGINT, how long requests in flight may take before every connection is closed.
    #[arg(long, env = "UCAN_GATEWAY_DRAIN_TIMEOUT", value_parser = seconds, default_value = "20")]
    pub drain_timeout: Duration,
    /// Requests answered at once; more get 503 with Retry-After.
    #[arg(long, env = "UCAN_GATEWAY_MAX_IN_FLIGHT", default_value_t = server::settings::DEFAULT_MAX_IN_FLIGHT)]
    pub max_in_flight: usize,
    /// Long polls (`GET /receipts/{cid}?follow=join`) waiting at once; more get 503 with Retry-After.
    #[arg(long, env = "UCAN_GATEWAY_MAX_LONG_POLLS", default_value_t = server::settings::DEFAULT_MAX_LONG_POLLS)]
    pub max_long_polls: usize,
    /// Workflow event streams (`GET /receipts/{cid}/events`) open at once; more get 503 with
    /// Retry-After.
    #[arg(long, env = "UCAN_GATEWAY_MAX_STREAMS", default_value_t = server::settings::DEFAULT_MAX_STREAMS)]
    pub max_streams: usize,
    /// Time between heartbeats on a quiet event stream.
    #[arg(long, env = "UCAN_GATEWAY_STREAM_HEARTBEAT", value_parser = seconds, default_value = "15")]
    pub stream_heartbeat: Duration,
    /// Origins browsers may call the gateway from (repeat, or comma-separate): `*` for any (the
    /// default), `none` for no CORS headers, or origins such as `https://app.example`.
    #[arg(
        long = "cors-origin",
        env = "UCAN_GATEWAY_CORS_ORIGIN",
        value_delimiter = ',',
        default_value = "*"
    )]
    pub cors_origins: Vec<String>,
}

impl Default for HttpArgs {
    fn default() -> Self {
        let d = HttpSettings::default();
        HttpArgs {
            header_read_timeout: d.header_read_timeout,
            idle_timeout: d.idle_timeout,
            body_read_timeout: d.body_read_timeout,
            request_timeout: d.request_timeout,
            drain_timeout: d.drain_timeout,
            max_in_flight: d.max_in_flight,
            max_long_polls: d.max_long_polls,
            max_streams: d.max_streams,
            stream_heartbeat: d.stream_heartbeat,
            cors_origins: vec!["*".to_owned()],
        }
    }
}

impl HttpArgs {
    /// The settings these flags ask for, checked.
    pub fn resolve(&self) -> anyhow::Result<HttpSettings> {
        for (flag, value) in [
            ("--header-read-timeout", self.header_read_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--body-read-timeout", self.body_read_timeout),
            ("--request-timeout", self.request_timeout),
            ("--stream-heartbeat", self.stream_heartbeat),
        ] {
            if value.is_zero() {
                return Err(anyhow!("{flag} must be greater than zero"));
            }
        }
        if self.max_in_flight == 0 || self.max_long_polls == 0 || self.max_streams == 0 {
            return Err(anyhow!(
                "--max-in-flight, --max-long-polls and --max-streams must be at least 1"
            ));
        }
        let cors =
            CorsOrigins::parse(&self.cors_origins).map_err(|e| anyhow!("--cors-origin: {e}"))?;
        Ok(HttpSettings {
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            body_read_timeout: self.body_read_timeout,
            request_timeout: self.request_timeout,
            drain_timeout: self.drain_timeout,
            max_in_flight: self.max_in_flight,
            max_long_polls: self.max_long_polls,
            max_streams: self.max_streams,
            stream_heartbeat: self.stream_heartbeat,
            cors,
        })
    }
}

/// A duration flag: whole seconds (`10`) or a humantime duration (`500ms`, `1m 30s`).
fn seconds(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(value)
        .map_err(|e| format!("{value:?} is neither seconds nor a duration like 500ms: {e}"))
}

/// Reads the key file, or creates one in the data dir when none was named.
fn gateway_key(args: &ServeArgs) -> anyhow::Result<SigningKey> {
    if let Some(path) = &args.key {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return SigningKey::from_key_file(&text)
            .with_context(|| format!("in key file {}", path.display()));
    }
    let path = args.data_dir.join("gateway.key");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return SigningKey::from_key_file(&text)
            .with_context(|| format!("in key file {}", path.display()));
    }
    let key = SigningKey::generate(KeyAlg::Ed25519);
    super::commands::write_private(&path, format!("{}\n", key.to_key_file()).as_bytes())?;
    tracing::info!(path = %path.display(), did = %key.did(), "generated a gateway key");
    Ok(key)
}

/// Stores every `.wasm` file in `dir`, so invocations can name modules by CID.
async fn preload_modules(store: &dyn Store, dir: &Path) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
            continue;
        }
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let cid = cid_for(RAW, &bytes);
        store
            .put_blob(cid, &bytes)
            .await
            .map_err(|e| anyhow!("storing {}: {e}", path.display()))?;
        tracing::info!(module = %path.display(), %cid, "module preloaded");
    }
    Ok(())
}

/// A gateway serving HTTP in the background.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The gateway's DID.
    pub did: String,
    shutdown: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    purge: tokio::task::JoinHandle<()>,
    watcher: tokio::task::JoinHandle<()>,
    follower: tokio::task::JoinHandle<()>,
    store: Arc<dyn Store>,
}

impl Running {
    /// Drains (requests in flight finish, within the drain deadline; see `server::listen`), then
    /// stops the background tasks and closes the store.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        self.server.await.context("the server task failed")??;
        self.purge.abort();
        self.follower.abort();
        self.watcher.abort();
        let _ = self.watcher.await;
        self.store.close().await;
        Ok(())
    }
}

/// Opens the store, starts the executors and the HTTP listener, and returns at once.
pub async fn start(args: ServeArgs) -> anyhow::Result<Running> {
    let http = args.http.resolve()?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let mut policy = match &args.policy {
        Some(path) => OperatorPolicy::load(path).map_err(|e| anyhow!("{e}"))?,
        None => OperatorPolicy::embedded_default(),
    };
    if let Some(url) = &args.bacalhau {
        let (backend, offers) = crate::exec::bacalhau::quick("bacalhau", url);
        policy.add_backend(backend, &offers);
    }
    let key = gateway_key(&args)?;
    let url = match &args.store.url {
        Some(url) => url.clone(),
        None => crate::store::default_url(&args.data_dir),
    };
    let store = crate::store::open(&url)
        .await
        .map_err(|e| anyhow!("opening the store: {e}"))?;
    if let Some(dir) = &args.modules {
        preload_modules(store.as_ref(), dir).await?;
    }

    let engine = Arc::new(WasmEngine::new().map_err(|e| anyhow!("starting the Wasm engine: {e}"))?);
    let host = crate::gateway::host(&store, engine, &key.did());
    let executors = registry::build(&policy.backends, &host)
        .map_err(|e| anyhow!("starting the backends: {}", e.message))?;
    // `/readyz` asks every compute network (a backend whose jobs outlive a request) whether it
    // answers.
    let mut checks: Vec<(String, server::probes::Check)> = Vec::new();
    for backend in &policy.backends {
        let Some(executor) = executors.get(&backend.name) else {
            continue;
        };
        if executor.jobs().is_none() {
            continue;
        }
        let executor = Arc::clone(executor);
        let check: server::probes::Check = Arc::new(move || {
            let executor = Arc::clone(&executor);
            Box::pin(async move {
                match executor.jobs() {
                    Some(jobs) => jobs
                        .ready(server::probes::CHECK_TIMEOUT)
                        .await
                        .map_err(|e| e.to_string()),
                    None => Ok(()),
                }
            })
        });
        checks.push((format!("{}:{}", backend.kind, backend.name), check));
    }
    checks.sort_by(|a, b| a.0.cmp(&b.0));

    warn_on_short_request_timeout(&policy, &executors, http.request_timeout);
    let sharing = crate::gateway::Sharing {
        refresh: args.store.store_refresh,
        job_lease: args.store.job_lease,
    };
    let gateway = Gateway::shared(
        key,
        policy,
        Arc::clone(&store),
        executors,
        args.leeway,
        sharing,
    )
    .await
    .map_err(|e| anyhow!("starting the gateway: {e}"))?;
    let follower = Arc::clone(&gateway).follow_store();
    let purge = spawn_replay_purge(Arc::clone(&store), args.leeway);
    let watcher = Arc::clone(&gateway).watch_pending();

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let did = gateway.did().to_owned();
    checks.insert(0, server::probes::store_check(&gateway));
    let drain = Drain::new();
    let edge = Edge::new(
        gateway,
        http.clone(),
        drain.clone(),
        server::probes::Readiness::new(checks),
    );
    tracing::info!(%addr, %did, "ucan-gateway serving");
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(
        listener,
        server::app(edge),
        http,
        drain,
        async {
            let _ = stopped.await;
        },
    ));
    Ok(Running {
        addr,
        did,
        shutdown,
        server,
        purge,
        watcher,
        follower,
        store,
    })
}

/// Warns when a request the policy allows may take longer than the request timeout: such requests
/// would be cut off with 504 while their work is still running. A request waits for a task run in
/// this process until its timeout, for a compute network's job until the backend's wait window,
/// and for a promise until the promise wait.
fn warn_on_short_request_timeout(
    policy: &OperatorPolicy,
    executors: &std::collections::HashMap<String, Arc<dyn crate::exec::Executor>>,
    timeout: Duration,
) {
    let longest = policy
        .routes
        .iter()
        .filter_map(|r| {
            let executor = executors.get(&r.backend)?;
            Some(match executor.jobs() {
                Some(jobs) => jobs.wait().min(r.limits.timeout),
                None => r.limits.timeout,
            })
        })
        .chain(std::iter::once(policy.effects.promise_wait))
        .max()
        .unwrap_or_default();
    if longest >= timeout {
        tracing::warn!(
            request_timeout_secs = timeout.as_secs_f64(),
            longest_wait_secs = longest.as_secs_f64(),
            "the request timeout is not longer than the longest task timeout or wait the policy allows; raise --request-timeout"
        );
    }
}

/// Runs the gateway until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let running = start(args).await?;
    crate::server::shutdown_signal().await;
    running.stop().await
}

/// Forgets replay keys whose invocations can no longer validate, kept delegations that have
/// expired (beyond the clock `leeway`) or been revoked, and the counts of quota windows that have
/// ended, every ten minutes.
fn spawn_replay_purge(store: Arc<dyn Store>, leeway: i64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tick.tick().await;
            let now = crate::ucan::validate::unix_now();
            match store.purge_seen(now).await {
                Ok(n) if n > 0 => tracing::debug!(purged = n, "expired replay keys purged"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purging replay keys failed"),
            }
            match store.purge_proofs(now.saturating_sub(leeway.max(0))).await {
                Ok(n) if n > 0 => tracing::debug!(purged = n, "expired or revoked proofs purged"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purging kept proofs failed"),
            }
            match store.purge_quotas(now).await {
                Ok(n) if n > 0 => tracing::debug!(purged = n, "ended quota windows purged"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purging quota windows failed"),
            }
        }
    })
}
