//! "Does the live object already hold every field we want?": the test that lets a steady-state
//! reconcile make zero writes while drift made by anyone else is still corrected.

use serde_json::Value;

/// True when every field of `desired` is present in `live` with the same value.
///
/// Objects compare key by key (extra live keys, e.g. defaults and status, are fine); lists
/// compare element by element and must have the same length; numbers compare by value (`1`
/// equals `1.0`); a zero value (`false`, `0`, `""`, empty) matches an absent field.
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(k, v)| match l.get(k) {
            Some(lv) => is_subset(v, lv),
            None => is_zero(v),
        }),
        (Value::Array(d), Value::Array(l)) => d.len() == l.len() && d.iter().zip(l).all(|(a, b)| is_subset(a, b)),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

/// Values the API server leaves out when it writes an object back (Go's `omitempty`): an
/// absent live field holds them.
fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extra_live_fields_do_not_matter() {
        let desired = json!({"spec": {"a": 1, "list": [{"name": "c"}]}});
        let live = json!({"spec": {"a": 1, "b": 2, "list": [{"name": "c", "default": true}]}, "status": {}});
        assert!(is_subset(&desired, &live));
    }

    #[test]
    fn a_changed_or_missing_field_is_drift() {
        let desired = json!({"spec": {"a": 1, "image": "x:1"}});
        assert!(!is_subset(&desired, &json!({"spec": {"a": 1, "image": "x:2"}})));
        assert!(!is_subset(&desired, &json!({"spec": {"a": 1}})));
    }

    #[test]
    fn lists_must_have_the_same_length() {
        let desired = json!({"args": ["--a"]});
        assert!(!is_subset(&desired, &json!({"args": ["--a", "--b"]})));
        assert!(!is_subset(&json!({"args": ["--a", "--b"]}), &json!({"args": ["--a"]})));
    }

    #[test]
    fn zero_values_match_an_absent_field_as_the_api_server_omits_them() {
        let desired = json!({"spec": {"selector": {}, "readOnly": false, "n": 0, "s": "", "l": []}});
        assert!(is_subset(&desired, &json!({"spec": {}})));
        assert!(!is_subset(&json!({"spec": {"readOnly": true}}), &json!({"spec": {}})));
    }
}
