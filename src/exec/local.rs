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

use super::wasm::{self, WasiRequest, WasmEngine};
use super::{ExecError, ExecErrorKind, Executed, Executor};
use crate::config::Limits;
use crate::ipld::{RAW, cid_for};
use crate::receipt::{Effect, Effects, Out};
use crate::store::Store;
use crate::task::Task;
use crate::ucan::Command;

fn invalid(message: impl Into<String>) -> Out {
    Out::error("InvalidArgs", message)
}

/// An outcome reached without the engine (bad arguments, a blob stored).
fn finished(out: Out) -> Executed {
    Executed {
        out,
        fuel_used: None,
        effects: Effects::default(),
    }
}

fn wasm_limits(limits: &Limits) -> wasm::Limits {
    wasm::Limits {
        fuel: limits.fuel,
        memory_bytes: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
        timeout: limits.timeout,
        max_output_bytes: limits.max_output_bytes,
    }
}

/// Finds the module a task names: inline bytes, or a link to a blob in the store.
async fn module(store: &dyn Store, input: &BTreeMap<String, Ipld>) -> Result<(Cid, Vec<u8>), Out> {
    match input.get("module") {
        Some(Ipld::Bytes(bytes)) => Ok((cid_for(RAW, bytes), bytes.clone())),
        Some(Ipld::Link(cid)) => match store.get_blob(*cid).await {
            Ok(Some(bytes)) => Ok((*cid, bytes)),
            Ok(None) => Err(Out::error(
                "ModuleNotFound",
                format!("no module {cid} is stored; put it with /blob/put"),
            )),
            Err(e) => Err(Out::error(
                "ModuleUnavailable",
                format!("the module store failed: {}", e.kind.describe()),
            )),
        },
        Some(_) => Err(invalid("module must be bytes or a link to stored bytes")),
        None => Err(invalid("missing module")),
    }
}

/// `/wasm/run`: an exported function with numeric arguments, or the DAG-CBOR ABI.
pub struct WasmExecutor {
    engine: Arc<WasmEngine>,
    store: Arc<dyn Store>,
}

impl WasmExecutor {
    /// Runs modules on `engine`, fetching linked modules from `store`.
    pub fn new(engine: Arc<WasmEngine>, store: Arc<dyn Store>) -> Self {
        WasmExecutor { engine, store }
    }
}

#[async_trait]
impl Executor for WasmExecutor {
    async fn execute(&self, task: &Task, limits: &Limits) -> Result<Executed, ExecError> {
        let (cid, bytes) = match module(self.store.as_ref(), &task.input).await {
            Ok(found) => found,
            Err(out) => return Ok(finished(out)),
        };
        let Some(Ipld::String(func)) = task.input.get("func") else {
            return Ok(finished(invalid("func must name an exported function")));
        };
        let func = func.clone();
        let limits = wasm_limits(limits);
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
    store: Arc<dyn Store>,
}

impl WasiExecutor {
    /// Runs command modules on `engine`, fetching linked modules from `store`.
    pub fn new(engine: Arc<WasmEngine>, store: Arc<dyn Store>) -> Self {
        WasiExecutor { engine, store }
    }
}

/// The command that names Bacalhau's Wasm job shape; an operator may route it to this local backend.
pub const BACALHAU_WASI_COMMAND: &str = "/wasm32-wasi/run";

/// A `/wasm32-wasi/run` task (Bacalhau's shape, `docs/bacalhau.md`) run locally: `module` (a stored
/// blob's link or bytes; URLs need the network), `entrypoint` (only `_start`), `parameters` (the
/// arguments after the program name `module.wasm`) and `env`. What only a compute network offers —
/// `imports`, `mounts`, `outputs`, `resources` — is refused rather than ignored, so nobody believes a
/// mount or a CPU request took effect; local limits come from the route and `meta["ipvm/config"]`.
fn bacalhau_wasi_request(input: &BTreeMap<String, Ipld>) -> Result<WasiRequest, Out> {
    for key in input.keys() {
        match key.as_str() {
            "module" | "entrypoint" | "parameters" | "env" => {}
            "imports" | "mounts" | "outputs" | "resources" => {
                return Err(invalid(format!(
                    "`{key}` needs a compute network; this gateway runs {BACALHAU_WASI_COMMAND} locally"
                )));
            }
            _ => return Err(invalid(format!("unexpected argument {key:?}"))),
        }
    }
    match input.get("entrypoint") {
        None => {}
        Some(Ipld::String(e)) if e == "_start" => {}
        Some(_) => return Err(invalid("locally, the entrypoint can only be _start")),
    }
    let mut args = vec!["module.wasm".to_owned()];
    args.extend(string_list(input, "parameters")?);
    let mut request = wasi_request(&BTreeMap::from_iter(
        input.get("env").map(|env| ("env".to_owned(), env.clone())),
    ))?;
    request.args = args;
    Ok(request)
}

/// `input[key]` as a list of strings (absent: empty), each item as the policies saw it.
fn string_list(input: &BTreeMap<String, Ipld>, key: &str) -> Result<Vec<String>, Out> {
    match input.get(key) {
        None => Ok(Vec::new()),
        Some(Ipld::List(items)) => crate::ipld::strings(items, key).map_err(invalid),
        Some(_) => Err(invalid(format!("{key} must be a list of strings"))),
    }
}

fn wasi_request(input: &BTreeMap<String, Ipld>) -> Result<WasiRequest, Out> {
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
        let (cid, bytes) = match module(self.store.as_ref(), &task.input).await {
            Ok(found) => found,
            Err(out) => return Ok(finished(out)),
        };
        let request = if task.operation.as_str() == BACALHAU_WASI_COMMAND {
            bacalhau_wasi_request(&task.input)
        } else {
            wasi_request(&task.input)
        };
        let request = match request {
            Ok(request) => request,
            Err(out) => return Ok(finished(out)),
        };
        let limits = wasm_limits(limits);
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
    store: Arc<dyn Store>,
}

impl BlobExecutor {
    /// Stores blobs in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        BlobExecutor { store }
    }
}

#[async_trait]
impl Executor for BlobExecutor {
    async fn execute(&self, task: &Task, _limits: &Limits) -> Result<Executed, ExecError> {
        let Some(Ipld::Bytes(bytes)) = task.input.get("bytes") else {
            return Ok(finished(invalid("bytes must be a byte string")));
        };
        let cid = cid_for(RAW, bytes);
        if let Err(e) = self.store.put_blob(cid, bytes).await {
            return Ok(finished(Out::error(
                "StoreUnavailable",
                format!("could not store the blob: {}", e.kind.describe()),
            )));
        }
        Ok(finished(Out::Ok(Ipld::Map(BTreeMap::from([(
            "cid".to_owned(),
            Ipld::Link(cid),
        )])))))
    }
}
