//! The registry of backend kinds: the one place that lists them ([`BACKENDS`]). Each kind says its
//! name, how its instances are declared in the operator policy, and how to build its executor from
//! the [`Host`]; the policy reader and the gateway ask the registry and name no backend themselves.
//!
//! A kind without a policy section has exactly one instance, named after the kind (`wasm`, `wasi`,
//! `blob`). A kind with a section (`bacalhau` for `[[bacalhau]]` tables) has as many instances as
//! the operator declares, each with a name of its own that routes use as their `backend`.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use super::{ExecError, Executor, Host};
use crate::task::EffectClass;

/// A kind of backend.
pub trait Backend: Sync {
    /// The kind's name; for a kind without a policy section, also the name routes use.
    fn name(&self) -> &'static str;

    /// The policy's array of tables declaring this kind's instances (`bacalhau` for
    /// `[[bacalhau]]`), or `None` for a kind with one built-in instance.
    fn section(&self) -> Option<&'static str> {
        None
    }

    /// Reads this kind's section (a TOML array of tables, spans relative to the policy text).
    /// `taken` holds the backend names already in use.
    fn configure(
        &self,
        section: toml::de::ValueDeserializer<'_>,
        taken: &[String],
    ) -> Result<Vec<BackendConfig>, SettingsError> {
        let _ = (section, taken);
        Ok(Vec::new())
    }

    /// Builds the executor of one instance (`config` is `None` for the built-in instance of a kind
    /// without a section).
    fn build(
        &self,
        config: Option<&BackendConfig>,
        host: &Host,
    ) -> Result<Arc<dyn Executor>, ExecError>;
}

/// Every kind of backend the gateway can run tasks on.
pub static BACKENDS: &[&dyn Backend] = &[
    &super::local::WASM,
    &super::local::WASI,
    &super::local::BLOB,
    &super::bacalhau::BACKEND,
];

/// The kind named `name`.
pub fn kind(name: &str) -> Option<&'static dyn Backend> {
    BACKENDS.iter().copied().find(|k| k.name() == name)
}

/// The names of the built-in instances (kinds without a section).
pub fn built_in() -> impl Iterator<Item = &'static str> {
    BACKENDS
        .iter()
        .filter(|k| k.section().is_none())
        .map(|k| k.name())
}

/// Builds one executor per backend: the built-in instances and every configured one, by name.
pub fn build(
    configured: &[BackendConfig],
    host: &Host,
) -> Result<HashMap<String, Arc<dyn Executor>>, ExecError> {
    let mut executors: HashMap<String, Arc<dyn Executor>> = HashMap::new();
    for kind in BACKENDS.iter().filter(|k| k.section().is_none()) {
        executors.insert(kind.name().to_owned(), kind.build(None, host)?);
    }
    for config in configured {
        let kind = kind(config.kind).ok_or_else(|| {
            ExecError::new(
                super::ExecErrorKind::Engine,
                format!("no backend kind {}", config.kind),
            )
        })?;
        executors.insert(config.name.clone(), kind.build(Some(config), host)?);
    }
    Ok(executors)
}

/// One configured instance of a backend kind: its name and its kind's own settings.
#[derive(Clone)]
pub struct BackendConfig {
    /// The name routes use as their `backend`.
    pub name: String,
    /// The kind's name.
    pub kind: &'static str,
    settings: Arc<dyn Settings>,
}

impl BackendConfig {
    /// An instance named `name` of kind `kind` with its settings.
    pub fn new<T: Any + fmt::Debug + PartialEq + Send + Sync>(
        name: impl Into<String>,
        kind: &'static str,
        settings: T,
    ) -> Self {
        BackendConfig {
            name: name.into(),
            kind,
            settings: Arc::new(settings),
        }
    }

    /// The settings, if they are of type `T` (the kind that wrote them knows).
    pub fn settings<T: Any>(&self) -> Option<&T> {
        self.settings.as_any().downcast_ref()
    }
}

impl fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("settings", &self.settings)
            .finish()
    }
}

impl PartialEq for BackendConfig {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.kind == other.kind && self.settings.same(&*other.settings)
    }
}

/// A kind's settings behind a type the policy does not know.
trait Settings: fmt::Debug + Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn same(&self, other: &dyn Settings) -> bool;
}

impl<T: Any + fmt::Debug + PartialEq + Send + Sync> Settings for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn same(&self, other: &dyn Settings) -> bool {
        other.as_any().downcast_ref::<T>() == Some(self)
    }
}

/// A command a backend offers when added without an operator's route for it (`serve --bacalhau`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// The command served.
    pub command: &'static str,
    /// How its tasks may be scheduled.
    pub effect: EffectClass,
    /// The total timeout of its tasks.
    pub timeout: Duration,
    /// The memory cap of its tasks.
    pub memory_bytes: u64,
}

/// What is wrong in a backend's section of the policy, with the span of the offending value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    /// Byte range in the policy text; `None` when the reader gave no position.
    pub span: Option<Range<usize>>,
    /// What kind of mistake.
    pub kind: SettingsErrorKind,
    /// What is wrong, in words.
    pub message: String,
}

/// Kinds of mistakes in a backend's section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SettingsErrorKind {
    /// The TOML reader refused it: an unknown or missing key, a value of the wrong type.
    Toml,
    /// A name, URL or combination of settings that is not allowed.
    Backend,
    /// A malformed duration.
    Duration,
}

impl SettingsError {
    /// An error of `kind` at `span`.
    pub fn at(span: Range<usize>, kind: SettingsErrorKind, message: impl Into<String>) -> Self {
        SettingsError {
            span: Some(span),
            kind,
            message: message.into(),
        }
    }
}

impl From<toml::de::Error> for SettingsError {
    fn from(e: toml::de::Error) -> Self {
        SettingsError {
            span: e.span(),
            kind: SettingsErrorKind::Toml,
            message: e.message().trim_end().to_owned(),
        }
    }
}
