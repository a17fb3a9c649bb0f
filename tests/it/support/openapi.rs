//! A small checker of JSON values against the schemas of Bacalhau's OpenAPI (Swagger 2) document,
//! `tests/it/data/bacalhau-swagger-v1.9.3.json` (copied unchanged from the Bacalhau v1.9.3 release,
//! Apache-2.0).
//!
//! It checks what the gateway relies on: every field present is one the schema names (a misspelt
//! key is an error, which the document's open objects would otherwise let through), has the
//! schema's type, integer enums hold allowed values, and `required` fields are there. Where the
//! live wire differs from the document it follows the wire: job states, history `Type` and network
//! `Type` are strings there (see the gateway's issue on the contract), so those enums accept
//! strings naming one of their `x-enum-varnames`.

use serde_json::Value;

/// Enum schemas that travel as strings on the wire though the document says integer.
const STRING_ON_THE_WIRE: &[&str] = &[
    "models.JobStateType",
    "models.JobHistoryType",
    "models.Network",
];

/// The document's schemas.
pub struct OpenApi {
    definitions: Value,
}

impl OpenApi {
    /// Loads the Bacalhau document.
    pub fn bacalhau() -> OpenApi {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/data/bacalhau-swagger-v1.9.3.json"
        );
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        OpenApi {
            definitions: doc["definitions"].clone(),
        }
    }

    /// Problems of `value` against the definition `name` (e.g. `apimodels.PutJobRequest`); empty
    /// when it conforms.
    pub fn check(&self, value: &Value, name: &str) -> Vec<String> {
        let mut problems = Vec::new();
        // A work list rather than recursion; the schemas are finite and the values ours.
        let mut work: Vec<(String, &Value, Value)> = vec![(
            "$".to_owned(),
            value,
            serde_json::json!({ "$ref": format!("#/definitions/{name}") }),
        )];
        while let Some((path, value, schema)) = work.pop() {
            let (schema, def) = self.resolve(&schema);
            if value.is_null() {
                continue; // Go sends null for nil maps, slices and pointers.
            }
            if let Some(def) = &def
                && STRING_ON_THE_WIRE.contains(&def.as_str())
            {
                // Names are the Go constants: `JobStateTypeCompleted` travels as `Completed`.
                let prefix = def.trim_start_matches("models.");
                let names = schema["x-enum-varnames"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                match value.as_str() {
                    Some(s)
                        if names
                            .iter()
                            .any(|n| n.as_str() == Some(&format!("{prefix}{s}"))) => {}
                    _ => problems.push(format!("{path}: {value} is not a {def} name")),
                }
                continue;
            }
            let ty = schema["type"]
                .as_str()
                .unwrap_or(if schema.get("properties").is_some() {
                    "object"
                } else {
                    ""
                });
            match ty {
                "string" if !value.is_string() => {
                    problems.push(format!("{path}: expected a string, got {value}"))
                }
                "integer" if !(value.is_i64() || value.is_u64()) => {
                    problems.push(format!("{path}: expected an integer, got {value}"))
                }
                "number" if !value.is_number() => {
                    problems.push(format!("{path}: expected a number, got {value}"))
                }
                "boolean" if !value.is_boolean() => {
                    problems.push(format!("{path}: expected a boolean, got {value}"))
                }
                "integer" => {
                    if let Some(allowed) = schema["enum"].as_array()
                        && !allowed.contains(value)
                    {
                        problems.push(format!("{path}: {value} is not one of {allowed:?}"));
                    }
                }
                "array" => match value.as_array() {
                    None => problems.push(format!("{path}: expected an array, got {value}")),
                    Some(items) => {
                        for (i, item) in items.iter().enumerate() {
                            work.push((format!("{path}[{i}]"), item, schema["items"].clone()));
                        }
                    }
                },
                "object" => match value.as_object() {
                    None => problems.push(format!("{path}: expected an object, got {value}")),
                    Some(map) => {
                        for key in schema["required"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                        {
                            if !map.contains_key(key) {
                                problems.push(format!("{path}: missing required field {key}"));
                            }
                        }
                        let props = schema.get("properties").and_then(Value::as_object);
                        for (key, v) in map {
                            match (
                                props.and_then(|p| p.get(key)),
                                schema.get("additionalProperties"),
                            ) {
                                (Some(s), _) => work.push((format!("{path}.{key}"), v, s.clone())),
                                (None, Some(Value::Bool(true))) => {}
                                (None, Some(extra @ Value::Object(_))) => {
                                    work.push((format!("{path}.{key}"), v, extra.clone()));
                                }
                                (None, _) if props.is_none() => {}
                                (None, _) => problems.push(format!(
                                    "{path}: field {key:?} is not in {}",
                                    def.as_deref().unwrap_or("the schema")
                                )),
                            }
                        }
                    }
                },
                _ => {}
            }
        }
        problems
    }

    /// Follows `$ref` and single-element `allOf`, returning the schema and its definition name.
    fn resolve(&self, schema: &Value) -> (Value, Option<String>) {
        let mut schema = schema.clone();
        let mut name = None;
        for _ in 0..16 {
            if let Some(all) = schema.get("allOf").and_then(Value::as_array)
                && let Some(first) = all.first()
            {
                schema = first.clone();
                continue;
            }
            let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
                break;
            };
            let def = reference.trim_start_matches("#/definitions/").to_owned();
            schema = self.definitions[&def].clone();
            assert!(!schema.is_null(), "no definition {def}");
            name = Some(def);
        }
        (schema, name)
    }
}

#[test]
fn the_checker_catches_what_it_should() {
    let api = OpenApi::bacalhau();
    let good = serde_json::json!({ "Job": { "Type": "batch", "Tasks": [{ "Name": "t", "Engine": { "Type": "docker", "Params": { "Image": "x" } } }] } });
    assert_eq!(
        api.check(&good, "apimodels.PutJobRequest"),
        Vec::<String>::new()
    );
    let misspelt = serde_json::json!({ "Job": { "Type": "batch", "Taks": [] } });
    assert_eq!(api.check(&misspelt, "apimodels.PutJobRequest").len(), 1);
    let wrong_type = serde_json::json!({ "Job": { "Count": "1" } });
    assert_eq!(api.check(&wrong_type, "apimodels.PutJobRequest").len(), 1);
    let state = serde_json::json!({ "Job": { "State": { "StateType": "Completed" } } });
    assert!(api.check(&state, "apimodels.GetJobResponse").is_empty());
    let bad_state = serde_json::json!({ "Job": { "State": { "StateType": "Done" } } });
    assert_eq!(api.check(&bad_state, "apimodels.GetJobResponse").len(), 1);
    let bad_exec = serde_json::json!({ "Items": [{ "ComputeState": { "StateType": 42 } }] });
    assert_eq!(
        api.check(&bad_exec, "apimodels.ListJobExecutionsResponse")
            .len(),
        1
    );
}
