//! The PostgreSQL server tests may use: `UCAN_GATEWAY_TEST_POSTGRES=postgres://…` names it. Without
//! it (or when it does not answer) those tests are skipped with one visible line, unless
//! `UCAN_GATEWAY_REQUIRE_POSTGRES=1` (set by `.ci/run`), where that is a failure. Each test gets a
//! schema of its own, so tests run in parallel without seeing each other's data.

use std::io::Write;
use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Connection;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// The server's URL.
pub const TEST_POSTGRES: &str = "UCAN_GATEWAY_TEST_POSTGRES";
/// Set to `1` to make a missing or unreachable server fail the tests that need it.
pub const REQUIRE_POSTGRES: &str = "UCAN_GATEWAY_REQUIRE_POSTGRES";

/// The server's URL, or `None` after printing (once per run for each `what`) `SKIPPED: {what} (…)`. Panics instead
/// when [`REQUIRE_POSTGRES`] is `1`.
pub fn postgres_url(what: &str) -> Option<String> {
    static CHECKED: Mutex<Option<Result<String, String>>> = Mutex::new(None);
    static SAID: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut checked = CHECKED.lock().unwrap_or_else(|e| e.into_inner());
    let found = checked.get_or_insert_with(check).clone();
    match found {
        Ok(url) => Some(url),
        Err(why) if std::env::var(REQUIRE_POSTGRES).as_deref() == Ok("1") => {
            panic!("{what}: {why}, and {REQUIRE_POSTGRES}=1 requires it")
        }
        Err(why) => {
            let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
            if !said.iter().any(|w| w == what) {
                said.push(what.to_owned());
                // Straight to stderr: the test harness captures `eprintln!` of passing tests.
                let _ = writeln!(std::io::stderr(), "SKIPPED: {what} ({why})");
            }
            None
        }
    }
}

/// The URL, if it is set and its server accepts connections.
fn check() -> Result<String, String> {
    let url = std::env::var(TEST_POSTGRES).map_err(|_| format!("set {TEST_POSTGRES}"))?;
    let parsed = url::Url::parse(&url).map_err(|e| format!("{TEST_POSTGRES}={url:?}: {e}"))?;
    let host = parsed.host_str().unwrap_or("localhost").to_owned();
    let port = parsed.port().unwrap_or(5432);
    let addrs: Vec<_> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("{host}:{port}: {e}"))?
        .collect();
    let reachable = addrs
        .iter()
        .any(|a| std::net::TcpStream::connect_timeout(a, Duration::from_secs(2)).is_ok());
    if !reachable {
        return Err(format!("no PostgreSQL server answers at {host}:{port}"));
    }
    Ok(url)
}

/// `base` naming a schema nobody else uses (the store creates it). Schemas that earlier runs left
/// behind more than an hour ago are dropped on the first call of a run.
pub async fn fresh_schema(base: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static SWEPT: AtomicBool = AtomicBool::new(false);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if !SWEPT.swap(true, Ordering::AcqRel) {
        sweep(base, now.saturating_sub(3600)).await;
    }
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let schema = format!("ucan_t_{now}_{}_{n}", std::process::id());
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}schema={schema}")
}

/// Drops the test schemas created before `before` (Unix seconds).
async fn sweep(base: &str, before: u64) {
    let Ok(mut conn) = sqlx::PgConnection::connect(base).await else {
        return;
    };
    let names: Vec<(String,)> =
        sqlx::query_as("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'ucan\\_t\\_%'")
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    for (name,) in names {
        let created: Option<u64> = name.split('_').nth(2).and_then(|t| t.parse().ok());
        if created.is_some_and(|t| t < before) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
            )))
            .execute(&mut conn)
            .await;
        }
    }
    let _ = conn.close().await;
}

/// A TCP relay to the database that can be cut (every connection dropped, new ones refused) and
/// restored: the database going away and coming back, as the gateway sees it.
pub struct Relay {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    cut: Arc<AtomicBool>,
    links: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    /// A relay to the server `url` names.
    pub async fn to(url: &str) -> Relay {
        let parsed = url::Url::parse(url).unwrap();
        let upstream = format!(
            "{}:{}",
            parsed.host_str().unwrap_or("localhost"),
            parsed.port().unwrap_or(5432)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let links = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, l) = (Arc::clone(&cut), Arc::clone(&links));
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    let _ = client.shutdown().await;
                    continue;
                }
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                l.lock().unwrap().push(link);
            }
        });
        Relay { addr, cut, links }
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// `url` with its host and port replaced by `addr`.
pub fn through(url: &str, addr: std::net::SocketAddr) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    parsed.set_host(Some(&addr.ip().to_string())).unwrap();
    parsed.set_port(Some(addr.port())).unwrap();
    parsed.to_string()
}
