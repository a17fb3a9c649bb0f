//! The argument shape of each command an executor serves, as JSON Schema (2020-12) over the
//! arguments' DAG-JSON form: bytes are `{"/": {"bytes": "<base64>"}}`, a link is `{"/": "<CID>"}`.
//! `GET /` publishes them per offered command and `docs/arguments.md` gives a runnable example of
//! each; the executors remain the judges (a task whose arguments do not fit fails with
//! `InvalidArgs` in its receipt).
//!
//! The schemas describe arguments after promises are resolved: any value may instead be an
//! `{"await/ok": {"/": "<task>"}}` promise, which the gateway replaces before the task runs.
//!
//! Kept here, beside the executors that read these shapes, and written out by hand rather than
//! derived: the executors read IPLD values field by field, so there is no type to derive from.

use serde_json::{Value, json};

use super::bacalhau::local::WASM_RUN as BACALHAU_WASI_COMMAND;
use super::bacalhau::mapping::{DOCKER_RUN, JOB_RUN, WASM_RUN};

const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// The argument schema of `command` on a route whose executor is `backend`: the local backends
/// (`wasm`, `wasi`, `blob`) have one shape each whatever the command (except `/wasm32-wasi/run` on
/// `wasi`, which reads Bacalhau's shape); any other backend is a compute network, whose shape
/// depends on the command. `None` for a command with no known shape.
pub fn argument_schema(backend: &str, command: &str) -> Option<Value> {
    let (title, mut schema) = match (backend, command) {
        ("wasm", _) => ("Run an exported function of a Wasm module", wasm_run()),
        ("wasi", BACALHAU_WASI_COMMAND) => (
            "Run a WASI command module locally, in Bacalhau's argument shape",
            local_bacalhau_wasi(),
        ),
        ("wasi", _) => ("Run a WASI command module", wasi_run()),
        ("blob", _) => ("Store bytes by CID (CIDv1, raw, sha2-256)", blob_put()),
        (_, DOCKER_RUN) => ("Run a container image on a compute network", docker_run()),
        (_, WASM_RUN) => ("Run a WASI module on a compute network", bacalhau_wasm()),
        (_, JOB_RUN) => ("Submit a Bacalhau batch job spec", job_run()),
        _ => return None,
    };
    schema["$schema"] = json!(DIALECT);
    schema["title"] = json!(title);
    Some(schema)
}

/// The schema of `/ucan/revoke`'s arguments (built into the gateway, not an executor).
pub fn revoke_schema() -> Value {
    json!({
        "$schema": DIALECT,
        "title": "Revoke a delegation",
        "type": "object",
        "required": ["revoke"],
        "properties": {
            "revoke": link(),
            "path": { "type": "array", "items": link(),
                      "description": "the delegations from the revoker's own to the revoked one" },
        },
        "additionalProperties": false,
    })
}

fn bytes() -> Value {
    json!({
        "type": "object",
        "required": ["/"],
        "properties": { "/": {
            "type": "object",
            "required": ["bytes"],
            "properties": { "bytes": { "type": "string", "contentEncoding": "base64" } },
            "additionalProperties": false,
        }},
        "additionalProperties": false,
    })
}

fn link() -> Value {
    json!({
        "type": "object",
        "required": ["/"],
        "properties": { "/": { "type": "string", "description": "a CID" } },
        "additionalProperties": false,
    })
}

/// Inline module bytes, or a link to bytes stored with `/blob/put`.
fn module() -> Value {
    json!({ "oneOf": [bytes(), link()] })
}

fn strings() -> Value {
    json!({ "type": "array", "items": { "type": "string" } })
}

fn string_map() -> Value {
    json!({ "type": "object", "additionalProperties": { "type": "string" } })
}

fn wasm_run() -> Value {
    json!({
        "description": "Either numbers in `args` (core Wasm i32/i64/f32/f64 parameters) or any value \
                        in `input` (the DAG-CBOR ABI, docs/wasm-abi.md); `input` wins when both are given.",
        "type": "object",
        "required": ["module", "func"],
        "properties": {
            "module": module(),
            "func": { "type": "string", "description": "the exported function" },
            "args": { "type": "array", "items": { "type": "number" } },
            "input": { "description": "any value, passed as DAG-CBOR" },
        },
    })
}

fn wasi_run() -> Value {
    json!({
        "type": "object",
        "required": ["module"],
        "properties": {
            "module": module(),
            "args": strings(),
            "env": string_map(),
            "stdin": { "oneOf": [bytes(), { "type": "string" }] },
        },
    })
}

fn local_bacalhau_wasi() -> Value {
    json!({
        "type": "object",
        "required": ["module"],
        "properties": {
            "module": module(),
            "entrypoint": { "const": "_start" },
            "parameters": strings(),
            "env": string_map(),
        },
        "additionalProperties": false,
    })
}

fn blob_put() -> Value {
    json!({
        "type": "object",
        "required": ["bytes"],
        "properties": { "bytes": bytes() },
    })
}

/// An input for a compute network: a CID link, `ipfs://CID`, or an HTTP(S) URL.
fn source() -> Value {
    json!({ "oneOf": [
        link(),
        { "type": "string", "pattern": "^ipfs://" },
        { "type": "string", "pattern": "^https?://" },
    ]})
}

fn absolute_path() -> Value {
    json!({ "type": "string", "pattern": "^/" })
}

fn resources() -> Value {
    let count = json!({ "type": "integer", "minimum": 0 });
    json!({
        "type": "object",
        "properties": {
            "cpu": { "type": "integer", "minimum": 0, "description": "millicores" },
            "memory": { "type": "integer", "minimum": 0, "description": "bytes" },
            "disk": { "type": "integer", "minimum": 0, "description": "bytes" },
            "gpu": count,
            "timeout": { "type": "integer", "minimum": 0, "description": "seconds" },
        },
        "additionalProperties": false,
    })
}

fn mounts() -> Value {
    json!({ "type": "object", "propertyNames": absolute_path(), "additionalProperties": source() })
}

fn outputs() -> Value {
    json!({ "type": "object", "propertyNames": absolute_path(),
            "additionalProperties": { "type": "object" } })
}

fn docker_run() -> Value {
    json!({
        "type": "object",
        "required": ["image"],
        "properties": {
            "image": { "type": "string", "minLength": 1 },
            "entrypoint": strings(),
            "parameters": strings(),
            "env": string_map(),
            "workdir": absolute_path(),
            "mounts": mounts(),
            "outputs": outputs(),
            "resources": resources(),
        },
        "additionalProperties": false,
    })
}

fn bacalhau_wasm() -> Value {
    json!({
        "type": "object",
        "required": ["module"],
        "properties": {
            "module": source(),
            "entrypoint": { "type": "string" },
            "parameters": strings(),
            "env": string_map(),
            "imports": { "type": "array", "items": source() },
            "mounts": mounts(),
            "outputs": outputs(),
            "resources": resources(),
        },
        "additionalProperties": false,
    })
}

fn job_run() -> Value {
    json!({
        "type": "object",
        "required": ["job"],
        "properties": {
            "job": {
                "type": "object",
                "required": ["Type"],
                "properties": {
                    "Type": { "const": "batch" },
                    "Count": { "const": 1 },
                },
                "description": "a Bacalhau job spec; ID, Namespace, State, Version, Revision, \
                                CreateTime and ModifyTime are Bacalhau's to set",
            },
            "resources": resources(),
        },
        "additionalProperties": false,
    })
}
