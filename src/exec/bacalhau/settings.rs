//! A Bacalhau backend's settings: the `[[bacalhau]]` tables of the operator policy, each naming a
//! compute network that routes may forward to, read here with positioned errors; and the backend
//! kind the registry lists, which builds one executor per network.
//!
//! Secrets never sit in the policy file: a backend names the environment variables holding its API
//! key or password, read when the gateway starts.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Auth, BacalhauExecutor, BacalhauSettings, Client, ClientConfig, Defaults};
use crate::exec::registry::{
    Backend, BackendConfig, Offer, SettingsError, SettingsErrorKind as Kind,
};
use crate::exec::{ExecError, ExecErrorKind, Executor, Host};
use crate::task::EffectClass;

/// Default wait window: how long `POST /` waits for a Bacalhau job before answering with a join
/// effect that awaits it.
pub const DEFAULT_BACALHAU_WAIT: Duration = Duration::from_secs(10);
/// Total timeout of the routes `serve --bacalhau` adds (the policy's `[limits]` are meant for local
/// Wasm and are far too short for containers).
pub const QUICK_TIMEOUT: Duration = Duration::from_secs(600);
/// Memory cap of the routes `serve --bacalhau` adds: 2 GiB.
pub const QUICK_MEMORY_BYTES: u64 = 2 << 30;
/// Default publisher for tasks that ask for outputs.
pub const DEFAULT_PUBLISHER: &str = "ipfs";

/// How often a request polls a job while it waits for it.
const REQUEST_POLL: Duration = Duration::from_millis(100);

/// A Bacalhau network the gateway forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BacalhauBackend {
    /// The name routes use as their `backend`.
    pub name: String,
    /// The orchestrator API's base URL.
    pub url: String,
    /// How to authenticate.
    pub auth: BackendAuth,
    /// How long a request waits for a job before answering with a join effect.
    pub wait: Duration,
    /// The publisher for tasks with outputs that name none.
    pub publisher: String,
}

/// How the gateway authenticates to a backend; secrets are named, not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendAuth {
    /// No credentials.
    None,
    /// An API key sent as `Authorization: Bearer`, read from this environment variable.
    ApiKeyEnv(String),
    /// Basic authentication with this user; the password is read from `password_env`.
    Basic {
        /// The user name.
        username: String,
        /// The environment variable holding the password.
        password_env: String,
    },
}

impl BacalhauBackend {
    /// A backend named `name` at `url` with no auth and the defaults, as `serve --bacalhau` makes.
    pub fn quick(name: &str, url: &str) -> Self {
        BacalhauBackend {
            name: name.to_owned(),
            url: url.to_owned(),
            auth: BackendAuth::None,
            wait: DEFAULT_BACALHAU_WAIT,
            publisher: DEFAULT_PUBLISHER.to_owned(),
        }
    }
}

/// A `[[bacalhau]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBacalhau {
    name: Spanned<String>,
    url: Spanned<String>,
    api_key_env: Option<String>,
    username: Option<String>,
    password_env: Option<Spanned<String>>,
    wait: Option<Spanned<String>>,
    publisher: Option<String>,
}

/// The Bacalhau backend kind.
pub static BACKEND: Bacalhau = Bacalhau;

/// Compute networks speaking Bacalhau's v1 orchestrator API.
#[derive(Debug, Clone, Copy)]
pub struct Bacalhau;

impl Backend for Bacalhau {
    fn name(&self) -> &'static str {
        "bacalhau"
    }

    fn section(&self) -> Option<&'static str> {
        Some("bacalhau")
    }

    fn configure(
        &self,
        section: toml::de::ValueDeserializer<'_>,
        taken: &[String],
    ) -> Result<Vec<BackendConfig>, SettingsError> {
        let raw = Vec::<RawBacalhau>::deserialize(section)?;
        let mut names: Vec<String> = taken.to_vec();
        let mut out = Vec::with_capacity(raw.len());
        for raw in &raw {
            let backend = backend(raw, &names)?;
            names.push(backend.name.clone());
            out.push(BackendConfig::new(
                backend.name.clone(),
                "bacalhau",
                backend,
            ));
        }
        Ok(out)
    }

    fn build(
        &self,
        config: Option<&BackendConfig>,
        host: &Host,
    ) -> Result<Arc<dyn Executor>, ExecError> {
        let backend = config
            .and_then(BackendConfig::settings::<BacalhauBackend>)
            .ok_or_else(|| {
                ExecError::new(
                    ExecErrorKind::Engine,
                    "a Bacalhau backend needs its settings",
                )
            })?;
        let env = |name: &str| {
            std::env::var(name).map_err(|_| {
                ExecError::new(
                    ExecErrorKind::Engine,
                    format!(
                        "backend {}: environment variable {name} is not set",
                        backend.name
                    ),
                )
            })
        };
        let auth = match &backend.auth {
            BackendAuth::None => Auth::None,
            BackendAuth::ApiKeyEnv(var) => Auth::Bearer(env(var)?),
            BackendAuth::Basic {
                username,
                password_env,
            } => Auth::Basic {
                username: username.clone(),
                password: env(password_env)?,
            },
        };
        let settings = BacalhauSettings {
            name: backend.name.clone(),
            client: ClientConfig::new(backend.url.clone(), auth),
            wait: backend.wait,
            poll: REQUEST_POLL,
            defaults: Defaults {
                publisher: backend.publisher.clone(),
                ..Defaults::default()
            },
        };
        let executor = BacalhauExecutor::new(
            settings,
            host.gateway_did.clone(),
            Arc::clone(&host.journal),
        )
        .map_err(|e| {
            ExecError::new(
                ExecErrorKind::Engine,
                format!("backend {}: {e}", backend.name),
            )
        })?;
        spawn_probe(backend.name.clone(), executor.client().clone());
        Ok(Arc::new(executor))
    }
}

/// A backend named `name` at `url` with no auth and the defaults, and the commands it serves where
/// the operator routes none: what `serve --bacalhau URL` adds. The routes are `nondestructive`, with
/// a 10-minute timeout and 2 GiB of memory (the policy's `[limits]` are meant for local Wasm).
pub fn quick(name: &str, url: &str) -> (BackendConfig, Vec<Offer>) {
    let offers = super::COMMANDS
        .iter()
        .map(|command| Offer {
            command,
            effect: EffectClass::Nondestructive,
            timeout: QUICK_TIMEOUT,
            memory_bytes: QUICK_MEMORY_BYTES,
        })
        .collect();
    (
        BackendConfig::new(name, "bacalhau", BacalhauBackend::quick(name, url)),
        offers,
    )
}

/// Logs whether a network answers, its version and its node count, once at startup. A network that
/// is down does not stop the gateway: its tasks get `BackendUnavailable` receipts until it is back.
fn spawn_probe(name: String, client: Client) {
    tokio::spawn(async move {
        match client.alive().await {
            Ok(status) => {
                let version = client
                    .version()
                    .await
                    .ok()
                    .and_then(|v| v["GitVersion"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "unknown".to_owned());
                let nodes = client.nodes().await.map(|n| n.len());
                tracing::info!(backend = %name, url = %client.url(), %status, %version, nodes = ?nodes.ok(), "bacalhau network answers");
            }
            Err(e) => {
                tracing::warn!(backend = %name, url = %client.url(), error = %e, "bacalhau network unreachable at startup");
            }
        }
    });
}

/// Resolves one `[[bacalhau]]` table; `taken` holds the backend names already in use.
fn backend(raw: &RawBacalhau, taken: &[String]) -> Result<BacalhauBackend, SettingsError> {
    let fail = |span: &std::ops::Range<usize>, kind: Kind, message: String| {
        SettingsError::at(span.clone(), kind, message)
    };
    let name = raw.name.get_ref();
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        return Err(fail(
            &raw.name.span(),
            Kind::Backend,
            format!("backend name {name:?} must be lowercase letters, digits, - or _"),
        ));
    }
    if taken.contains(name) {
        return Err(fail(
            &raw.name.span(),
            Kind::Backend,
            format!("backend name {name:?} is already taken"),
        ));
    }
    let url = raw.url.get_ref();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(fail(
            &raw.url.span(),
            Kind::Backend,
            format!("url {url:?} must start with http:// or https://"),
        ));
    }
    let auth = match (&raw.api_key_env, &raw.username, &raw.password_env) {
        (None, None, None) => BackendAuth::None,
        (Some(env), None, None) => BackendAuth::ApiKeyEnv(env.clone()),
        (None, Some(user), Some(env)) => BackendAuth::Basic {
            username: user.clone(),
            password_env: env.get_ref().clone(),
        },
        _ => {
            return Err(fail(
                &raw.name.span(),
                Kind::Backend,
                "give either api_key_env, or username with password_env".to_owned(),
            ));
        }
    };
    let wait = match &raw.wait {
        None => DEFAULT_BACALHAU_WAIT,
        Some(text) => humantime::parse_duration(text.get_ref()).map_err(|e| {
            fail(
                &text.span(),
                Kind::Duration,
                format!("invalid duration {:?}: {e}", text.get_ref()),
            )
        })?,
    };
    Ok(BacalhauBackend {
        name: name.clone(),
        url: url.clone(),
        auth,
        wait,
        publisher: raw
            .publisher
            .clone()
            .unwrap_or_else(|| DEFAULT_PUBLISHER.to_owned()),
    })
}
