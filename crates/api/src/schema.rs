//! Checks of CRD schemas and of documents against them, the way an API server does.
//!
//! Two questions are answered here without a cluster:
//! - [`structural_problems`]: would an API server accept this schema (is it *structural*)?
//! - [`validate`]: would an API server accept this object under this schema? Unknown fields,
//!   wrong types, missing required fields, enums, patterns and minimums are reported with the
//!   field path. CEL rules (`x-kubernetes-validations`) are not evaluated here.

use crate::FieldError;
use regex::Regex;
use serde_json::{Map, Value};

/// Every violation of `schema` by `value`, sorted by path.
///
/// `apiVersion`, `kind` and `metadata` at the root are the API server's business; `metadata` is
/// only checked to be an object.
pub fn validate(schema: &Value, value: &Value) -> Vec<FieldError> {
    let mut out = Vec::new();
    check(schema, value, "", &mut out);
    out.sort_by(|a, b| a.path.cmp(&b.path).then_with(|| a.message.cmp(&b.message)));
    out
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() { field.to_string() } else { format!("{path}.{field}") }
}

fn violation(out: &mut Vec<FieldError>, path: &str, message: impl Into<String>) {
    let path = if path.is_empty() { "<root>" } else { path };
    out.push(FieldError { path: path.to_string(), message: message.into() });
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn check(schema: &Value, value: &Value, path: &str, out: &mut Vec<FieldError>) {
    if value.is_null() {
        // The API server prunes nulls of non-nullable fields; `required` catches what matters.
        return;
    }
    if flag(schema, "x-kubernetes-int-or-string") {
        match value {
            Value::String(s) => check_string(schema, s, path, out),
            Value::Number(n) if n.is_i64() || n.is_u64() => {}
            _ => violation(out, path, format!("expected an integer or a string, got {}", type_name(value))),
        }
        return;
    }
    let Some(expected) = schema.get("type").and_then(Value::as_str) else {
        return; // x-kubernetes-preserve-unknown-fields without a type: anything goes.
    };
    let actual = type_name(value);
    let type_ok = actual == expected || (expected == "number" && actual == "integer");
    if !type_ok {
        violation(out, path, format!("expected {expected}, got {actual}"));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        violation(out, path, format!("unsupported value {value}: expected one of {}", list.join(", ")));
    }
    match value {
        Value::String(s) => check_string(schema, s, path, out),
        Value::Number(n) => check_number(schema, n.as_f64().unwrap_or_default(), path, out),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        Value::Object(fields) => check_object(schema, fields, path, out),
        _ => {}
    }
}

fn check_string(schema: &Value, s: &str, path: &str, out: &mut Vec<FieldError>) {
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match Regex::new(pattern) {
            Ok(re) if !re.is_match(s) => violation(out, path, format!("{s:?} does not match the pattern {pattern:?}")),
            Ok(_) => {}
            Err(e) => violation(out, path, format!("schema pattern {pattern:?} is invalid: {e}")),
        }
    }
    let len = s.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        violation(out, path, format!("must be at least {min} characters long"));
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        violation(out, path, format!("must be at most {max} characters long"));
    }
}

fn check_number(schema: &Value, n: f64, path: &str, out: &mut Vec<FieldError>) {
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && n < min
    {
        violation(out, path, format!("must be greater than or equal to {min}"));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && n > max
    {
        violation(out, path, format!("must be less than or equal to {max}"));
    }
}

fn check_object(schema: &Value, fields: &Map<String, Value>, path: &str, out: &mut Vec<FieldError>) {
    let root = path.is_empty();
    if root {
        // apiVersion, kind and metadata are the API server's own, never the CRD schema's.
        if let Some(meta) = fields.get("metadata")
            && !meta.is_object()
        {
            violation(out, "metadata", "expected object");
        }
    }
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if fields.get(name).is_none_or(Value::is_null) {
                violation(out, &join(path, name), "missing field");
            }
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    for (name, field) in fields {
        if root && matches!(name.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        let field_path = join(path, name);
        match (properties.and_then(|p| p.get(name)), additional) {
            (Some(field_schema), _) => check(field_schema, field, &field_path, out),
            (None, Some(Value::Bool(true))) => {}
            (None, Some(extra)) if extra.is_object() => check(extra, field, &field_path, out),
            _ if preserve => {}
            _ => {
                let known = properties.into_iter().flat_map(|p| p.keys().map(String::as_str));
                match crate::parse::closest(name, known) {
                    Some(typo_of) => violation(out, &field_path, format!("unknown field (did you mean {typo_of}?)")),
                    None => violation(out, &field_path, "unknown field"),
                }
            }
        }
    }
}

/// `anyOf: [{type: integer}, {type: string}]`, which the API server accepts beside
/// `x-kubernetes-int-or-string`.
fn is_int_or_string_any_of(branches: &[Value]) -> bool {
    let types: Vec<Option<&str>> = branches.iter().map(|b| b.get("type").and_then(Value::as_str)).collect();
    types == [Some("integer"), Some("string")] && branches.iter().all(|b| b.as_object().is_some_and(|o| o.len() == 1))
}

/// Why an API server would refuse `schema` as a CRD's structural schema (empty when it would not).
///
/// Checked: every node has a `type` (unless it is `x-kubernetes-int-or-string` or
/// `x-kubernetes-preserve-unknown-fields`); no `$ref`; `anyOf`/`oneOf`/`allOf`/`not` carry no
/// types or structure of their own; `properties` and `additionalProperties` are not combined;
/// arrays have `items`; map-list keys are required scalar fields of their items.
pub fn structural_problems(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    structural(schema, "<root>", &mut out);
    out
}

fn structural(schema: &Value, path: &str, out: &mut Vec<String>) {
    let Some(node) = schema.as_object() else {
        out.push(format!("{path}: schema is not an object"));
        return;
    };
    if node.contains_key("$ref") {
        out.push(format!("{path}: $ref is not allowed"));
    }
    let int_or_string = flag(schema, "x-kubernetes-int-or-string");
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    let ty = node.get("type").and_then(Value::as_str);
    if ty.is_none() && !int_or_string && !preserve {
        out.push(format!("{path}: type is missing"));
    }
    for junction in ["anyOf", "oneOf", "allOf"] {
        let branches = node.get(junction).and_then(Value::as_array);
        if int_or_string && junction == "anyOf" && branches.is_some_and(|b| is_int_or_string_any_of(b)) {
            continue; // the one typed junction a structural schema allows
        }
        for (i, branch) in branches.into_iter().flatten().enumerate() {
            value_validation_only(branch, &format!("{path}.{junction}[{i}]"), out);
        }
    }
    if let Some(not) = node.get("not") {
        value_validation_only(not, &format!("{path}.not"), out);
    }
    if node.contains_key("properties") && node.contains_key("additionalProperties") {
        out.push(format!("{path}: properties and additionalProperties are mutually exclusive"));
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            structural(prop, &format!("{path}.{name}"), out);
        }
    }
    if let Some(extra) = node.get("additionalProperties")
        && extra.is_object()
    {
        structural(extra, &format!("{path}.additionalProperties"), out);
    }
    if ty == Some("array") {
        match node.get("items") {
            Some(items) => {
                structural(items, &format!("{path}.items"), out);
                map_list_keys(node, items, path, out);
            }
            None => out.push(format!("{path}: array without items")),
        }
    }
}

fn value_validation_only(branch: &Value, path: &str, out: &mut Vec<String>) {
    const STRUCTURE: [&str; 7] = ["type", "properties", "items", "additionalProperties", "nullable", "default", "$ref"];
    for key in STRUCTURE {
        if branch.get(key).is_some() {
            out.push(format!("{path}: {key} is not allowed inside a junction"));
        }
    }
}

fn map_list_keys(node: &Map<String, Value>, items: &Value, path: &str, out: &mut Vec<String>) {
    if node.get("x-kubernetes-list-type").and_then(Value::as_str) != Some("map") {
        return;
    }
    let required: Vec<&str> = items
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let keys = node.get("x-kubernetes-list-map-keys").and_then(Value::as_array);
    if keys.is_none_or(|k| k.is_empty()) {
        out.push(format!("{path}: list-type map needs x-kubernetes-list-map-keys"));
    }
    for key in keys.into_iter().flatten().filter_map(Value::as_str) {
        let key_type = items.pointer(&format!("/properties/{key}/type")).and_then(Value::as_str);
        if !matches!(key_type, Some("string" | "integer" | "boolean")) {
            out.push(format!("{path}: map key {key} must be a scalar property of the items"));
        }
        if !required.contains(&key) && items.pointer(&format!("/properties/{key}/default")).is_none() {
            out.push(format!("{path}: map key {key} must be required or defaulted"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["version"],
                    "properties": {
                        "version": {"type": "string", "pattern": "[a-z0-9.]+"},
                        "mtu": {"type": "integer", "minimum": 0},
                        "mode": {"type": "string", "enum": ["bridge", "vepa"]},
                        "list": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "map": {"type": "object", "additionalProperties": {"type": "string"}},
                        "q": {"x-kubernetes-int-or-string": true}
                    }
                }
            }
        })
    }

    fn messages(value: Value) -> Vec<String> {
        validate(&schema(), &value).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_valid_document_has_no_violations() {
        let doc = json!({"metadata": {"name": "x"}, "spec": {
            "version": "1.2", "mtu": 0, "mode": "vepa", "list": [{"k": "v"}],
            "free": {"any": {"thing": 1}}, "map": {"a": "b"}, "q": "100m"}});
        assert_eq!(messages(doc), Vec::<String>::new());
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let doc = json!({"spec": {"version": "1", "versoin": "2", "list": [{"k": "v", "kk": 1}]}});
        assert_eq!(
            messages(doc),
            ["spec.list[0].kk: unknown field (did you mean k?)", "spec.versoin: unknown field (did you mean version?)"]
        );
        let far = json!({"spec": {"version": "1", "zzzzzzzz": 1}});
        assert_eq!(messages(far), ["spec.zzzzzzzz: unknown field"], "no suggestion when nothing is close");
    }

    #[test]
    fn missing_required_fields_are_named() {
        assert_eq!(messages(json!({"spec": {}})), ["spec.version: missing field"]);
    }

    #[test]
    fn wrong_types_enums_patterns_and_minimums_are_reported() {
        let doc = json!({"spec": {"version": "UPPER", "mtu": -1, "mode": "x", "map": {"a": 1}, "q": true}});
        assert_eq!(
            messages(doc),
            [
                "spec.map.a: expected string, got integer",
                "spec.mode: unsupported value \"x\": expected one of \"bridge\", \"vepa\"",
                "spec.mtu: must be greater than or equal to 0",
                "spec.q: expected an integer or a string, got boolean",
                "spec.version: \"UPPER\" does not match the pattern \"[a-z0-9.]+\"",
            ]
        );
        assert_eq!(messages(json!({"spec": {"version": 1}})), ["spec.version: expected string, got integer"]);
    }

    #[test]
    fn a_structural_schema_has_no_problems() {
        assert_eq!(structural_problems(&schema()), Vec::<String>::new());
    }

    #[test]
    fn untyped_nodes_refs_and_typed_junctions_are_not_structural() {
        let bad = json!({"type": "object", "properties": {
            "a": {"description": "no type"},
            "b": {"$ref": "#/x", "type": "string"},
            "c": {"type": "string", "anyOf": [{"type": "string"}]},
            "d": {"type": "array"},
            "e": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                  "items": {"type": "object", "properties": {"name": {"type": "string"}}}}
        }});
        assert_eq!(
            structural_problems(&bad),
            [
                "<root>.a: type is missing",
                "<root>.b: $ref is not allowed",
                "<root>.c.anyOf[0]: type is not allowed inside a junction",
                "<root>.d: array without items",
                "<root>.e: map key name must be required or defaulted",
            ]
        );
    }
}
