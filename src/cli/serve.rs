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
use crate::store::{SqliteStore, Store};

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
    store: Arc<dyn Store>,
}

impl Running {
    /// Stops accepting connections, lets in-flight requests finish, and closes the store.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        self.server.await.context("the server task failed")??;
        self.purge.abort();
        self.watcher.abort();
        let _ = self.watcher.await;
        self.store.close().await;
        Ok(())
    }
}

/// Opens the store, starts the executors and the HTTP listener, and returns at once.
pub async fn start(args: ServeArgs) -> anyhow::Result<Running> {
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
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&args.data_dir.join("gateway.db"))
            .await
            .map_err(|e| anyhow!("opening the store: {e}"))?,
    );
    if let Some(dir) = &args.modules {
        preload_modules(store.as_ref(), dir).await?;
    }

    let engine = Arc::new(WasmEngine::new().map_err(|e| anyhow!("starting the Wasm engine: {e}"))?);
    let host = crate::gateway::host(&store, engine, &key.did());
    let executors = registry::build(&policy.backends, &host)
        .map_err(|e| anyhow!("starting the backends: {}", e.message))?;

    let gateway = Gateway::new(key, policy, Arc::clone(&store), executors, args.leeway)
        .await
        .map_err(|e| anyhow!("starting the gateway: {e}"))?;
    let purge = spawn_replay_purge(Arc::clone(&store));
    let watcher = Arc::clone(&gateway).watch_pending();

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let did = gateway.did().to_owned();
    tracing::info!(%addr, %did, "ucan-gateway serving");
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::serve(
        listener,
        crate::server::router(gateway),
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
        store,
    })
}

/// Runs the gateway until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let running = start(args).await?;
    crate::server::shutdown_signal().await;
    running.stop().await
}

/// Forgets replay keys whose invocations can no longer validate, every ten minutes.
fn spawn_replay_purge(store: Arc<dyn Store>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tick.tick().await;
            match store.purge_seen(crate::ucan::validate::unix_now()).await {
                Ok(n) if n > 0 => tracing::debug!(purged = n, "expired replay keys purged"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purging replay keys failed"),
            }
        }
    })
}
