//! The local backends: `/wasm/run` and `/wasi/run` on the shared [`WasmEngine`], and `/blob/put`,
//! which stores module bytes by CID for later tasks to name.
//!
//! Arguments (documented in `docs/http-api.md`):
//! - `/wasm/run`: `{module: <link to a stored blob> | <bytes>, func: "<export>", args: [numbers]}`, or
//!   `{module, func, input: <any>}` for the DAG-CBOR ABI (`docs/wasm-abi.md`).
//! - `/wasi/run`: `{module, args?: [string], env?: {name: string}, stdin?: <bytes>}`.
//! - `/blob/put`: `{bytes: <bytes>}` → `{cid: <link>}` (CIDv1, raw, sha2-256).
//!
//! Malformed arguments fail the task (`InvalidArgs` in the receipt): the invocation was authorised,
//! so the caller is owed a signed account of why nothing ran.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use cid::Cid;
use ipld_core::ipld::Ipld;

use super::registry::{Backend, BackendConfig};
use super::wasm::{WasiRequest, WasmEngine};
use super::{Blobs, ExecError, ExecErrorKind, Executed, Executor, Host, Limits};
use crate::ipld::{RAW, cid_for};
use crate::receipt::{Effect, Effects, Out};
use crate::task::Task;
use crate::ucan::Command;

/// The `wasm` backend kind: [`WasmExecutor`].
pub static WASM: Local = Local::Wasm;
/// The `wasi` backend kind: [`WasiExecutor`].
pub static WASI: Local = Local::Wasi;
/// The `blob` backend kind: [`BlobExecutor`].
pub static BLOB: Local = Local::Blob;

/// The backends that run in this process, each with one built-in instance named after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// `/wasm/run`.
    Wasm,
    /// `/wasi/run` (and `/wasm32-wasi/run` run locally).
    Wasi,
    /// `/blob/put`.
    Blob,
}

impl Backend for Local {
    fn name(&self) -> &'static str {
        match self {
            Local::Wasm => "wasm",
            Local::Wasi => "wasi",
            Local::Blob => "blob",
        }
    }

    fn build(
        &self,
        _config: Option<&BackendConfig>,
        host: &Host,
    ) -> Result<Arc<dyn Executor>, ExecError> {
        let (engine, blobs) = (Arc::clone(&host.engine), Arc::clone(&host.blobs));
        Ok(match self {
            Local::Wasm => Arc::new(WasmExecutor::new(engine, blobs)),
            Local::Wasi => Arc::new(WasiExecutor::new(engine, blobs)),
            Local::Blob => Arc::new(BlobExecutor::new(blobs)),
        })
    }
}

pub(crate) fn invalid(message: impl Into<String>) -> Out {
    Out::error("InvalidArgs", message)
}

/// An outcome reached without the engine (bad arguments, a blob stored).
fn finished(out: Out) -> Executed {
    Executed::finished(out)
}

/// Finds the module a task names: inline bytes, or a link to a stored blob.
async fn module(blobs: &dyn Blobs, input: &BTreeMap<String, Ipld>) -> Result<(Cid, Vec<u8>), Out> {
    match input.get("module") {
        Some(Ipld::Bytes(bytes)) => Ok((cid_for(RAW, bytes), bytes.clone())),
        Some(Ipld::Link(cid)) => match blobs.get(*cid).await {
            Ok(Some(bytes)) => Ok((*cid, bytes)),
            Ok(None) => Err(Out::error(
                "ModuleNotFound",
                format!("no module {cid} is stored; put it with /blob/put"),
            )),
            Err(e) => Err(Out::error(
                "ModuleUnavailable",
                format!("the module store failed: {e}"),
            )),
        },
        Some(_) => Err(invalid("module must be bytes or a link to stored bytes")),
        None => Err(invalid("missing module")),
    }
}

/// `/wasm/run`: an exported function with numeric arguments, or the DAG-CBOR ABI.
pub struct WasmExecutor {
    engine: Arc<WasmEngine>,
    blobs: Arc<dyn Blobs>,
}

impl WasmExecutor {
    /// Runs modules on `engine`, fetching linked modules from `blobs`.
    pub fn new(engine: Arc<WasmEngine>, blobs: Arc<dyn Blobs>) -> Self {
        WasmExecutor { engine, blobs }
    }
}

#[async_trait]
impl Executor for WasmExecutor {
    async fn execute(&self, task: &Task, limits: &Limits) -> Result<Executed, ExecError> {
        let (cid, bytes) = match module(self.blobs.as_ref(), &task.input).await {
            Ok(found) => found,
            Err(out) => return Ok(finished(out)),
        };
        let Some(Ipld::String(func)) = task.input.get("func") else {
            return Ok(finished(invalid("func must name an exported function")));
        };
        let func = func.clone();
        let limits = *limits;
        let engine = Arc::clone(&self.engine);
        // A structured `input` selects the DAG-CBOR ABI; otherwise `args` are plain numbers.
        let outcome = if let Some(input) = task.input.get("input") {
            let input = input.clone();
            tokio::task::spawn_blocking(move || {
                engine.run_cbor(&cid, &bytes, &func, &input, limits)
            })
            .await
        } else {
            let args = match task.input.get("args") {
                None => Vec::new(),
                Some(Ipld::List(args)) => args.clone(),
                Some(_) => return Ok(finished(invalid("args must be a list of numbers"))),
            };
            tokio::task::spawn_blocking(move || engine.run_core(&cid, &bytes, &func, &args, limits))
                .await
        };
        let outcome = outcome
            .map_err(|e| ExecError::new(ExecErrorKind::Host, format!("wasm worker: {e}")))??;
        let mut executed: Executed = outcome.into();
        if task.input.contains_key("input") {
            // Only the DAG-CBOR ABI can return a map that asks for effects.
            requested_effects(&mut executed, task);
        }
        Ok(executed)
    }
}

/// The result key under which a DAG-CBOR guest returns its value when it also requests effects.
pub const RESULT_KEY: &str = "ucan/ok";
/// The result key under which a DAG-CBOR guest requests effects (`docs/wasm-abi.md`).
pub const EFFECTS_KEY: &str = "ucan/fx";

/// Takes the effects a guest requested out of its result: `{"ucan/ok": value, "ucan/fx": {"fork":
/// [request…], "join": request}}` becomes the value `value` and those effects, each request being
/// `{cmd, args, sub?, nonce?, meta?}` with the task's own subject and an empty nonce by default. A
/// malformed request fails the task: silently dropping work the guest asked for would be worse.
fn requested_effects(executed: &mut Executed, task: &Task) {
    let Out::Ok(Ipld::Map(map)) = &mut executed.out else {
        return;
    };
    let Some(fx) = map.remove(EFFECTS_KEY) else {
        return;
    };
    let value = map.remove(RESULT_KEY).unwrap_or(Ipld::Null);
    match parse_effects(&fx, task) {
        Ok(effects) => {
            executed.out = Out::Ok(value);
            executed.effects = effects;
        }
        Err(message) => {
            executed.out = Out::error("InvalidEffect", message);
        }
    }
}

fn parse_effects(fx: &Ipld, task: &Task) -> Result<Effects, String> {
    let Ipld::Map(fx) = fx else {
        return Err(format!(
            "`{EFFECTS_KEY}` must be a map with `fork` and/or `join`"
        ));
    };
    let mut effects = Effects::default();
    for (key, value) in fx {
        match (key.as_str(), value) {
            ("fork", Ipld::List(items)) => {
                for (i, item) in items.iter().enumerate() {
                    effects
                        .fork
                        .push(effect_request(item, task).map_err(|e| format!("fork[{i}]: {e}"))?);
                }
            }
            ("join", item) => {
                effects.join = Some(effect_request(item, task).map_err(|e| format!("join: {e}"))?)
            }
            _ => return Err(format!("`{EFFECTS_KEY}` has an unexpected entry {key:?}")),
        }
    }
    Ok(effects)
}

fn effect_request(item: &Ipld, task: &Task) -> Result<Effect, String> {
    let Ipld::Map(map) = item else {
        return Err("an effect must be a map {cmd, args, sub?, nonce?, meta?}".into());
    };
    let mut effect = Effect {
        cmd: match map.get("cmd") {
            Some(Ipld::String(cmd)) => Command::parse(cmd).map_err(|e| format!("cmd: {e}"))?,
            _ => return Err("cmd must be a command string".into()),
        },
        sub: task.resource.clone(),
        args: match map.get("args") {
            Some(Ipld::Map(args)) => args.clone(),
            None => BTreeMap::new(),
            Some(_) => return Err("args must be a map".into()),
        },
        nonce: Vec::new(),
        iss: None,
        aud: None,
        meta: None,
        prf: None,
        exp: None,
    };
    for (key, value) in map {
        match (key.as_str(), value) {
            ("cmd" | "args", _) => {}
            ("sub", Ipld::String(sub)) => effect.sub = sub.clone(),
            ("nonce", Ipld::Bytes(nonce)) => effect.nonce = nonce.clone(),
            ("meta", Ipld::Map(meta)) => effect.meta = Some(meta.clone()),
            _ => return Err(format!("unexpected or mistyped field {key:?}")),
        }
    }
    Ok(effect)
}

/// `/wasi/run`: a WASI preview-1 command module with arguments, environment and stdin.
pub struct WasiExecutor {
    engine: Arc<WasmEngine>,
    blobs: Arc<dyn Blobs>,
}

impl WasiExecutor {
    /// Runs command modules on `engine`, fetching linked modules from `blobs`.
    pub fn new(engine: Arc<WasmEngine>, blobs: Arc<dyn Blobs>) -> Self {
        WasiExecutor { engine, blobs }
    }
}

/// `input[key]` as a list of strings (absent: empty), each item as the policies saw it.
pub(crate) fn string_list(input: &BTreeMap<String, Ipld>, key: &str) -> Result<Vec<String>, Out> {
    match input.get(key) {
        None => Ok(Vec::new()),
        Some(Ipld::List(items)) => crate::ipld::strings(items, key).map_err(invalid),
        Some(_) => Err(invalid(format!("{key} must be a list of strings"))),
    }
}

/// A `/wasi/run` request: `{module, args?: [string], env?: {name: string}, stdin?: bytes | string}`.
pub(crate) fn wasi_request(input: &BTreeMap<String, Ipld>) -> Result<WasiRequest, Out> {
    let args = string_list(input, "args")?;
    let env = match input.get("env") {
        None => Vec::new(),
        Some(Ipld::Map(vars)) => vars
            .iter()
            .map(|(k, v)| match v {
                Ipld::String(s) => Ok((k.clone(), s.clone())),
                other => Err(invalid(format!(
                    "env value {k:?} must be a string, not {}",
                    crate::ipld::kind(other)
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("env must be a map of strings")),
    };
    let stdin = match input.get("stdin") {
        None => Vec::new(),
        Some(Ipld::Bytes(b)) => b.clone(),
        Some(Ipld::String(s)) => s.as_bytes().to_vec(),
        Some(_) => return Err(invalid("stdin must be bytes or a string")),
    };
    Ok(WasiRequest { args, env, stdin })
}

#[async_trait]
impl Executor for WasiExecutor {
    async fn execute(&self, task: &Task, limits: &Limits) -> Result<Executed, ExecError> {
        let (cid, bytes) = match module(self.blobs.as_ref(), &task.input).await {
            Ok(found) => found,
            Err(out) => return Ok(finished(out)),
        };
        let request = if task.operation.as_str() == super::bacalhau::local::WASM_RUN {
            super::bacalhau::local::wasi_request(&task.input)
        } else {
            wasi_request(&task.input)
        };
        let request = match request {
            Ok(request) => request,
            Err(out) => return Ok(finished(out)),
        };
        let limits = *limits;
        let engine = Arc::clone(&self.engine);
        let outcome =
            tokio::task::spawn_blocking(move || engine.run_wasi(&cid, &bytes, request, limits))
                .await
                .map_err(|e| ExecError::new(ExecErrorKind::Host, format!("wasi worker: {e}")))??;
        Ok(outcome.into())
    }
}

/// `/blob/put`: stores bytes by their raw CID, for modules and inputs that later tasks link to.
pub struct BlobExecutor {
    blobs: Arc<dyn Blobs>,
}

impl BlobExecutor {
    /// Stores blobs in `blobs`.
    pub fn new(blobs: Arc<dyn Blobs>) -> Self {
        BlobExecutor { blobs }
    }
}

#[async_trait]
impl Executor for BlobExecutor {
    async fn execute(&self, task: &Task, _limits: &Limits) -> Result<Executed, ExecError> {
        let Some(Ipld::Bytes(bytes)) = task.input.get("bytes") else {
            return Ok(finished(invalid("bytes must be a byte string")));
        };
        let cid = cid_for(RAW, bytes);
        if let Err(e) = self.blobs.put(cid, bytes).await {
            return Ok(finished(Out::error(
                "StoreUnavailable",
                format!("could not store the blob: {e}"),
            )));
        }
        Ok(finished(Out::Ok(Ipld::Map(BTreeMap::from([(
            "cid".to_owned(),
            Ipld::Link(cid),
        )])))))
    }
}
