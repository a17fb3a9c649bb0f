//! The argument shapes of the three commands (`/docker/run`, `/wasm32-wasi/run`,
//! `/bacalhau/job/run`) turned into a Job skeleton: engine, environment, input sources and result
//! paths. Resources, timeouts, publisher and labels are [`super::mapping`]'s.

use std::collections::BTreeMap;

use ipld_core::ipld::Ipld;
use serde_json::{Map, Value, json};

use super::mapping::{MappingError, bad};

pub(super) fn string(value: Option<&Ipld>, what: &str) -> Result<String, MappingError> {
    match value {
        Some(Ipld::String(s)) => Ok(s.clone()),
        _ => Err(bad(format!("{what} must be a string"))),
    }
}

/// A list of strings; an item of another kind is refused by its index, never turned into text.
pub(super) fn strings(value: &Ipld, what: &str) -> Result<Vec<String>, MappingError> {
    let Ipld::List(items) = value else {
        return Err(bad(format!("{what} must be a list of strings")));
    };
    crate::ipld::strings(items, what).map_err(bad)
}

fn opt_strings(args: &BTreeMap<String, Ipld>, key: &str) -> Result<Vec<String>, MappingError> {
    args.get(key).map_or(Ok(Vec::new()), |v| strings(v, key))
}

/// `env` as a string map. Key rules are Bacalhau's to enforce; the gateway passes them on.
fn env(args: &BTreeMap<String, Ipld>) -> Result<Map<String, Value>, MappingError> {
    let mut out = Map::new();
    match args.get("env") {
        None => {}
        Some(Ipld::Map(m)) => {
            for (k, v) in m {
                let Ipld::String(v) = v else {
                    return Err(bad(format!("env {k:?} must be a string")));
                };
                out.insert(k.clone(), json!(v));
            }
        }
        Some(_) => return Err(bad("env must be a map of strings")),
    }
    Ok(out)
}

/// An input source: a CID link or `ipfs://CID` → IPFS; `http(s)://…` → a URL download.
fn source(value: &Ipld, target: &str) -> Result<Value, MappingError> {
    let spec = match value {
        Ipld::Link(cid) => json!({ "Type": "ipfs", "Params": { "CID": cid.to_string() } }),
        Ipld::String(s) if s.starts_with("ipfs://") => {
            let cid = &s["ipfs://".len()..];
            cid::Cid::try_from(cid).map_err(|_| bad(format!("{s:?} does not name a CID")))?;
            json!({ "Type": "ipfs", "Params": { "CID": cid } })
        }
        Ipld::String(s) if s.starts_with("https://") || s.starts_with("http://") => {
            json!({ "Type": "urlDownload", "Params": { "URL": s } })
        }
        _ => {
            return Err(bad(format!(
                "the source for {target} must be a CID link, \"ipfs://…\" or \"https://…\""
            )));
        }
    };
    Ok(json!({ "Source": spec, "Target": target }))
}

fn absolute(path: &str, what: &str) -> Result<(), MappingError> {
    if path.starts_with('/') && !path.split('/').any(|s| s == "..") {
        Ok(())
    } else {
        Err(bad(format!(
            "{what} path {path:?} must be absolute, without `..`"
        )))
    }
}

fn mounts(args: &BTreeMap<String, Ipld>) -> Result<Vec<Value>, MappingError> {
    let mut out = Vec::new();
    match args.get("mounts") {
        None => {}
        Some(Ipld::Map(m)) => {
            for (path, value) in m {
                absolute(path, "mount")?;
                out.push(source(value, path)?);
            }
        }
        Some(_) => return Err(bad("mounts must be a map {path: source}")),
    }
    Ok(out)
}

fn outputs(args: &BTreeMap<String, Ipld>) -> Result<Vec<Value>, MappingError> {
    let mut out = Vec::new();
    match args.get("outputs") {
        None => {}
        Some(Ipld::Map(m)) => {
            for path in m.keys() {
                absolute(path, "output")?;
                let name: String = path
                    .trim_matches('/')
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .collect();
                let name = if name.is_empty() {
                    "outputs".to_owned()
                } else {
                    name
                };
                out.push(json!({ "Name": name, "Path": path }));
            }
        }
        Some(_) => return Err(bad("outputs must be a map {path: {}}")),
    }
    Ok(out)
}

fn batch(task: Value) -> Value {
    json!({ "Type": "batch", "Count": 1, "Tasks": [task] })
}

pub(super) fn docker(args: &BTreeMap<String, Ipld>) -> Result<Value, MappingError> {
    let image = string(args.get("image"), "image")?;
    if image.is_empty() {
        return Err(bad("image must not be empty"));
    }
    let mut params = Map::new();
    params.insert("Image".into(), json!(image));
    let entrypoint = opt_strings(args, "entrypoint")?;
    if !entrypoint.is_empty() {
        params.insert("Entrypoint".into(), json!(entrypoint));
    }
    let parameters = opt_strings(args, "parameters")?;
    if !parameters.is_empty() {
        params.insert("Parameters".into(), json!(parameters));
    }
    if let Some(v) = args.get("workdir") {
        let dir = string(Some(v), "workdir")?;
        absolute(&dir, "workdir")?;
        params.insert("WorkingDirectory".into(), json!(dir));
    }
    known(
        args,
        &[
            "image",
            "entrypoint",
            "parameters",
            "env",
            "workdir",
            "mounts",
            "outputs",
            "resources",
        ],
    )?;
    Ok(batch(json!({
        "Name": "main",
        "Engine": { "Type": "docker", "Params": params },
        "Env": env(args)?,
        "InputSources": mounts(args)?,
        "ResultPaths": outputs(args)?,
    })))
}

/// Where the Wasm module and its imports are placed for the engine.
const MODULE_TARGET: &str = "/ucan/module.wasm";

pub(super) fn wasm(args: &BTreeMap<String, Ipld>) -> Result<Value, MappingError> {
    known(
        args,
        &[
            "module",
            "entrypoint",
            "parameters",
            "env",
            "imports",
            "mounts",
            "outputs",
            "resources",
        ],
    )?;
    let module = args
        .get("module")
        .ok_or_else(|| bad("module is required"))?;
    let mut inputs = vec![source(module, MODULE_TARGET)?];
    let mut imports = Vec::new();
    if let Some(list) = args.get("imports") {
        let Ipld::List(items) = list else {
            return Err(bad("imports must be a list of module sources"));
        };
        for (i, item) in items.iter().enumerate() {
            let target = format!("/ucan/imports/{i}.wasm");
            inputs.push(source(item, &target)?);
            imports.push(target);
        }
    }
    inputs.extend(mounts(args)?);
    let entrypoint = match args.get("entrypoint") {
        None => "_start".to_owned(),
        v => string(v, "entrypoint")?,
    };
    Ok(batch(json!({
        "Name": "main",
        "Engine": { "Type": "wasm", "Params": {
            "EntryModule": MODULE_TARGET,
            "Entrypoint": entrypoint,
            "Parameters": opt_strings(args, "parameters")?,
            "ImportModules": imports,
        }},
        "Env": env(args)?,
        "InputSources": inputs,
        "ResultPaths": outputs(args)?,
    })))
}

/// A spec given whole: checked for the shape the gateway relies on; the rest is Bacalhau's to judge.
pub(super) fn passthrough(args: &BTreeMap<String, Ipld>) -> Result<Value, MappingError> {
    known(args, &["job", "resources"])?;
    let job = args.get("job").ok_or_else(|| bad("job is required"))?;
    let text = serde_ipld_dagjson::to_vec(job).map_err(|e| bad(e.to_string()))?;
    let mut job: Value = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    let map = job
        .as_object_mut()
        .ok_or_else(|| bad("job must be a map"))?;
    // The gateway decides identity and placement; a spec may not choose them.
    for key in [
        "ID",
        "Namespace",
        "State",
        "Version",
        "Revision",
        "CreateTime",
        "ModifyTime",
    ] {
        if map.contains_key(key) {
            return Err(bad(format!(
                "job.{key} is set by Bacalhau, not by the caller"
            )));
        }
    }
    // A batch job runs once; `ops` and `daemon` jobs run on every matching node, and `Count`
    // multiplies a job: either would take many times the resources the route caps per task.
    match map.get("Type").and_then(Value::as_str) {
        Some("batch") => {}
        other => return Err(bad(format!("job.Type must be \"batch\", not {other:?}"))),
    }
    match map.get("Count") {
        None => {}
        Some(n) if n.as_u64() == Some(1) => {}
        Some(n) => return Err(bad(format!("job.Count must be 1, not {n}"))),
    }
    let task = match map.get("Tasks").and_then(Value::as_array) {
        Some(tasks) if tasks.len() == 1 && tasks[0].is_object() => &tasks[0],
        _ => return Err(bad("job.Tasks must hold exactly one task")),
    };
    // Sources the gateway would itself offer; a local directory would read the compute node's disk.
    for input in task["InputSources"].as_array().into_iter().flatten() {
        match input["Source"]["Type"].as_str() {
            Some("ipfs" | "urlDownload" | "s3") => {}
            other => {
                return Err(bad(format!(
                    "input source type {other:?} is not allowed (ipfs, urlDownload or s3)"
                )));
            }
        }
    }
    // No network unless the operator offers it some other way: a job could reach anything.
    match task["Network"]["Type"].as_str() {
        None | Some("None") => Ok(job),
        Some(other) => Err(bad(format!(
            "task Network {other:?} is not allowed; jobs run without network"
        ))),
    }
}

fn known(args: &BTreeMap<String, Ipld>, keys: &[&str]) -> Result<(), MappingError> {
    match args.keys().find(|k| !keys.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => {
            let shown: String = k.chars().take(64).collect();
            Err(bad(format!(
                "unknown argument {shown:?} (expected {})",
                keys.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(job: Value) -> BTreeMap<String, Ipld> {
        let ipld = crate::ipld::from_dag_json(&json!({ "job": job }).to_string()).unwrap();
        match ipld {
            Ipld::Map(m) => m,
            _ => unreachable!(),
        }
    }

    fn task(extra: Value) -> Value {
        let mut t =
            json!({ "Name": "t", "Engine": { "Type": "docker", "Params": { "Image": "a" } } });
        if let (Some(t), Value::Object(extra)) = (t.as_object_mut(), extra) {
            t.extend(extra);
        }
        t
    }

    #[test]
    fn passthrough_refuses_what_would_escape_the_caps() {
        let ok = json!({ "Type": "batch", "Count": 1, "Tasks": [task(json!({
            "InputSources": [{ "Source": { "Type": "ipfs", "Params": { "CID": "x" } }, "Target": "/i" }],
            "Network": { "Type": "None" },
        }))] });
        assert!(passthrough(&spec(ok)).is_ok());
        let refused = [
            (
                json!({ "Type": "ops", "Tasks": [task(json!({}))] }),
                "job.Type",
            ),
            (
                json!({ "Type": "batch", "Count": 3, "Tasks": [task(json!({}))] }),
                "job.Count",
            ),
            (
                json!({ "Type": "batch", "ID": "j-1", "Tasks": [task(json!({}))] }),
                "job.ID",
            ),
            (
                json!({ "Type": "batch", "Tasks": [task(json!({})), task(json!({}))] }),
                "exactly one task",
            ),
            (
                json!({ "Type": "batch", "Tasks": [task(json!({ "InputSources": [{ "Source": { "Type": "localDirectory", "Params": { "SourcePath": "/etc" } }, "Target": "/i" }] }))] }),
                "localDirectory",
            ),
            (
                json!({ "Type": "batch", "Tasks": [task(json!({ "Network": { "Type": "Full" } }))] }),
                "Network",
            ),
        ];
        for (job, needle) in refused {
            let e = passthrough(&spec(job.clone())).expect_err(&job.to_string());
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        }
    }
}
