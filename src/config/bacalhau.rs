//! The operator policy's Bacalhau parts: `[[bacalhau]]` tables naming compute networks a route may
//! forward to, and a route's `[route.compute]` caps (CPU, GPU, disk) for such tasks. Raw forms (what
//! the operator wrote) live here beside their resolution; `policy_file` calls in with its positioned
//! error builder.
//!
//! Secrets never sit in the policy file: a backend names the environment variables holding its API
//! key or password, read when the gateway starts.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::PolicyFileErrorKind as Kind;

/// Default wait window: how long `POST /` waits for a Bacalhau job before answering with a join
/// effect that awaits it.
pub const DEFAULT_BACALHAU_WAIT: Duration = Duration::from_secs(10);
/// Default CPU cap of a route forwarding to Bacalhau, in millicores (one core).
pub const DEFAULT_CPU_MILLI: u64 = 1000;
/// Default GPU cap: none.
pub const DEFAULT_GPU: u64 = 0;
/// Default disk cap: 10 GiB.
pub const DEFAULT_DISK_BYTES: u64 = 10 << 30;
/// Total timeout of the routes `serve --bacalhau` adds (the policy's `[limits]` are meant for local
/// Wasm and are far too short for containers).
pub const QUICK_TIMEOUT: Duration = Duration::from_secs(600);
/// Memory cap of the routes `serve --bacalhau` adds: 2 GiB.
pub const QUICK_MEMORY_BYTES: u64 = 2 << 30;
/// Default publisher for tasks that ask for outputs.
pub const DEFAULT_PUBLISHER: &str = "ipfs";

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

/// What a route lets one forwarded task use beyond its `[limits]` (memory and timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compute {
    /// CPU in millicores.
    pub cpu_milli: u64,
    /// GPUs.
    pub gpu: u64,
    /// Disk in bytes.
    pub disk_bytes: u64,
}

impl Default for Compute {
    fn default() -> Self {
        Compute {
            cpu_milli: DEFAULT_CPU_MILLI,
            gpu: DEFAULT_GPU,
            disk_bytes: DEFAULT_DISK_BYTES,
        }
    }
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
pub(super) struct RawBacalhau {
    name: Spanned<String>,
    url: Spanned<String>,
    api_key_env: Option<String>,
    username: Option<String>,
    password_env: Option<Spanned<String>>,
    wait: Option<Spanned<String>>,
    publisher: Option<String>,
}

/// A `[route.compute]` table as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCompute {
    cpu: Option<Spanned<String>>,
    gpu: Option<u32>,
    disk: Option<Spanned<String>>,
}

/// A positioned error: span, kind, message.
pub(super) type Fail<'a> =
    &'a dyn Fn(&std::ops::Range<usize>, Kind, String) -> super::PolicyFileError;

pub(super) fn backend(
    raw: &RawBacalhau,
    taken: &[&str],
    fail: Fail<'_>,
) -> Result<BacalhauBackend, super::PolicyFileError> {
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
    if taken.contains(&name.as_str()) {
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

pub(super) fn compute(
    raw: Option<&RawCompute>,
    fail: Fail<'_>,
) -> Result<Compute, super::PolicyFileError> {
    let mut out = Compute::default();
    let Some(raw) = raw else {
        return Ok(out);
    };
    if let Some(cpu) = &raw.cpu {
        out.cpu_milli = crate::exec::bacalhau::mapping::parse_cpu(cpu.get_ref())
            .map_err(|e| fail(&cpu.span(), Kind::Size, e.to_string()))?;
    }
    if let Some(gpu) = raw.gpu {
        out.gpu = u64::from(gpu);
    }
    if let Some(disk) = &raw.disk {
        out.disk_bytes = super::policy_file::parse_size(disk.get_ref())
            .map_err(|e| fail(&disk.span(), Kind::Size, e))?;
    }
    Ok(out)
}
