//! Bacalhau's Wasm job shape (`/wasm32-wasi/run`, `docs/bacalhau.md`) for an operator who routes it
//! to the local `wasi` backend instead of a compute network: the shape is Bacalhau's, so it is read
//! here, and the local backend runs the request it gives.

use std::collections::BTreeMap;

use ipld_core::ipld::Ipld;

pub use super::mapping::WASM_RUN;
use crate::exec::local::invalid;
use crate::exec::wasm::WasiRequest;
use crate::receipt::Out;

/// A `/wasm32-wasi/run` task (Bacalhau's shape, `docs/bacalhau.md`) run locally: `module` (a stored
/// blob's link or bytes; URLs need the network), `entrypoint` (only `_start`), `parameters` (the
/// arguments after the program name `module.wasm`) and `env`. What only a compute network offers —
/// `imports`, `mounts`, `outputs`, `resources` — is refused rather than ignored, so nobody believes a
/// mount or a CPU request took effect; local limits come from the route and `meta["ipvm/config"]`.
pub(crate) fn wasi_request(input: &BTreeMap<String, Ipld>) -> Result<WasiRequest, Out> {
    for key in input.keys() {
        match key.as_str() {
            "module" | "entrypoint" | "parameters" | "env" => {}
            "imports" | "mounts" | "outputs" | "resources" => {
                return Err(invalid(format!(
                    "`{key}` needs a compute network; this gateway runs {WASM_RUN} locally"
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
    args.extend(crate::exec::local::string_list(input, "parameters")?);
    let mut request = crate::exec::local::wasi_request(&BTreeMap::from_iter(
        input.get("env").map(|env| ("env".to_owned(), env.clone())),
    ))?;
    request.args = args;
    Ok(request)
}
