//! Strict parsing of user documents (YAML or JSON) into the typed API, with the field path of
//! the first problem in every error.
//!
//! A document is checked against its CRD schema first (so a misspelled or unknown field is an
//! error, as with `kubectl apply --validate=strict`), then deserialised into its type.

use crate::networks::{HostDeviceNetwork, IPoIBNetwork, MacvlanNetwork};
use crate::policy::NicClusterPolicy;
use crate::{FieldError, crd, schema};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;

/// A typed document of one of this project's kinds.
#[derive(Clone, Debug, PartialEq)]
pub enum Document {
    /// A NicClusterPolicy.
    Policy(Box<NicClusterPolicy>),
    /// A NicNodePolicy.
    NodePolicy(Box<crate::NicNodePolicy>),
    /// A MacvlanNetwork.
    Macvlan(Box<MacvlanNetwork>),
    /// A HostDeviceNetwork.
    HostDevice(Box<HostDeviceNetwork>),
    /// An IPoIBNetwork.
    IPoIB(Box<IPoIBNetwork>),
    /// A document of another API group (e.g. an nv-ipam IPPool), which this project does not
    /// interpret.
    Foreign {
        /// Its `apiVersion`.
        api_version: String,
        /// Its `kind`.
        kind: String,
    },
}

/// Why a document stream could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based index of the document in the stream, when the stream holds several.
    pub document: Option<usize>,
    /// Every problem found in that document (at least one).
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.document {
            write!(f, "document {n}: ")?;
        }
        let errors: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
        f.write_str(&errors.join("; "))
    }
}

impl std::error::Error for ParseError {}

/// Splits a YAML (or JSON) stream into its non-empty documents.
pub fn documents(text: &str) -> Result<Vec<Value>, ParseError> {
    let docs: Vec<Value> = serde_saphyr::from_str_multiple(text).map_err(|e| ParseError {
        document: None,
        // The parser's message points at the line with a snippet of the text: kept as written.
        errors: vec![FieldError::new("<yaml>", e.to_string().trim_end())],
    })?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Parses every document of a stream; the first bad one is the error.
pub fn parse_all(text: &str) -> Result<Vec<Document>, ParseError> {
    let docs = documents(text)?;
    let several = docs.len() > 1;
    docs.into_iter()
        .enumerate()
        .map(|(i, value)| document(value).map_err(|errors| ParseError { document: several.then_some(i + 1), errors }))
        .collect()
}

/// Checks one document against its CRD schema and deserialises it into its type; the error
/// lists every schema violation.
pub fn document(value: Value) -> Result<Document, Vec<FieldError>> {
    let Some(api_version) = value.get("apiVersion").and_then(Value::as_str) else {
        return Err(vec![FieldError::new("apiVersion", "missing field")]);
    };
    let Some(kind) = value.get("kind").and_then(Value::as_str).map(str::to_string) else {
        return Err(vec![FieldError::new("kind", "missing field")]);
    };
    if api_version.split('/').next() != Some(crate::GROUP) {
        return Ok(Document::Foreign { api_version: api_version.to_string(), kind });
    }
    let expected_api_version = format!("{}/{}", crate::GROUP, crate::VERSION);
    if api_version != expected_api_version {
        return Err(vec![FieldError::new(
            "apiVersion",
            format!("expected {expected_api_version}, got {api_version:?}"),
        )]);
    }
    let Some(definition) = crd::for_kind(&kind).filter(|c| c.spec.group == crate::GROUP) else {
        return Err(vec![FieldError::new(
            "kind",
            format!(
                "unsupported kind {kind:?}: expected NicClusterPolicy, NicNodePolicy, MacvlanNetwork, HostDeviceNetwork or IPoIBNetwork"
            ),
        )]);
    };
    let violations = schema::validate(&crd::schema_json(&definition), &value);
    if !violations.is_empty() {
        return Err(violations);
    }
    let typed_document = match kind.as_str() {
        "NicClusterPolicy" => typed(value).map(|p| Document::Policy(Box::new(p))),
        "NicNodePolicy" => typed(value).map(|p| Document::NodePolicy(Box::new(p))),
        "MacvlanNetwork" => typed(value).map(|n| Document::Macvlan(Box::new(n))),
        "HostDeviceNetwork" => typed(value).map(|n| Document::HostDevice(Box::new(n))),
        _ => typed(value).map(|n| Document::IPoIB(Box::new(n))),
    };
    typed_document.map_err(|e| vec![e])
}

/// Deserialises `value` into `T`, naming the field path of the first error.
pub fn typed<T: DeserializeOwned>(value: Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { "<root>".to_string() } else { path };
        let message = one_line(&e.into_inner().to_string());
        match did_you_mean(&message) {
            Some(suggestion) => FieldError::new(path, format!("{message} (did you mean `{suggestion}`?)")),
            None => FieldError::new(path, message),
        }
    })
}

/// For serde's "unknown field `forc`, expected one of `force`, ..." the expected name closest to
/// the unknown one, when it is close enough to be a typo.
fn did_you_mean(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, expected) = rest.split_once('`')?;
    closest(unknown, expected.split('`').skip(1).step_by(2)).map(String::from)
}

/// The name among `known` that `unknown` is most likely a typo of (at most a third of its
/// letters, and at least two, differ), if any.
pub(crate) fn closest<'a>(unknown: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let (distance, best) = known.map(|k| (edit_distance(unknown, k), k)).min_by_key(|(d, _)| *d)?;
    (distance <= (unknown.chars().count() / 3).max(2)).then_some(best)
}

/// Levenshtein distance, case-insensitive (`ofeddriver` is a typo of `ofedDriver`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, y) in b.iter().enumerate() {
            let cost = usize::from(x != y);
            current.push((previous[j] + cost).min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// Paths of `input` that a typed round trip through `T` would drop or change.
///
/// Empty means the type holds every field of the input: nothing the user wrote is lost.
pub fn round_trip_losses<T: DeserializeOwned + Serialize>(input: &Value) -> Vec<String> {
    let output = typed::<T>(input.clone())
        .and_then(|t| serde_json::to_value(t).map_err(|e| FieldError::new("<root>", e.to_string())));
    match output {
        Ok(output) => {
            let mut lost = Vec::new();
            diff(input, &output, "", &mut lost);
            lost
        }
        Err(e) => vec![e.to_string()],
    }
}

fn diff(input: &Value, output: &Value, path: &str, lost: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                match b.get(key) {
                    Some(other) => diff(value, other, &child, lost),
                    None => lost.push(format!("{child}: dropped")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(x, y, &format!("{path}[{i}]"), lost);
            }
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        (a, b) if a == b => {}
        (a, b) => lost.push(format!("{path}: {a} became {b}")),
    }
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_field_close_to_a_known_one_gets_a_suggestion() {
        let message = "unknown field `ofeddriver`, expected one of `nodeAffinity`, `tolerations`, `ofedDriver`";
        assert_eq!(did_you_mean(message).as_deref(), Some("ofedDriver"));
        assert_eq!(did_you_mean("unknown field `forc`, expected `force` or `enable`").as_deref(), Some("force"));
        assert_eq!(did_you_mean("unknown field `zzzzzz`, expected `force` or `enable`"), None, "nothing close");
        assert_eq!(did_you_mean("invalid type: string, expected i32"), None);
    }

    #[test]
    fn a_yaml_syntax_error_keeps_the_parsers_snippet_on_its_lines() {
        let error = documents("a: b\nc: d: e\n").unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("<yaml>: "), "{message}");
        assert!(message.lines().count() > 1, "the snippet is on lines of its own: {message}");
    }

    const POLICY: &str = "apiVersion: mellanox.com/v1alpha1
kind: NicClusterPolicy
metadata:
  name: nic-cluster-policy
spec:
  rdmaSharedDevicePlugin:
    image: k8s-rdma-shared-dev-plugin
    repository: ghcr.io/mellanox
    version: v1.5.1
";

    #[test]
    fn a_valid_policy_parses() {
        let docs = parse_all(POLICY).unwrap();
        assert!(matches!(&docs[..], [Document::Policy(p)] if p.spec.rdma_shared_device_plugin.is_some()));
    }

    #[test]
    fn a_misspelled_field_is_named() {
        let text = POLICY.replace("repository:", "repositry:");
        let err = parse_all(&text).unwrap_err().to_string();
        assert_eq!(err, "spec.rdmaSharedDevicePlugin.repositry: unknown field (did you mean repository?)");
        let text = POLICY.replace("  rdmaSharedDevicePlugin:", "  rdmaSharedDevicePlugn:");
        let err = parse_all(&text).unwrap_err().to_string();
        assert_eq!(err, "spec.rdmaSharedDevicePlugn: unknown field (did you mean rdmaSharedDevicePlugin?)");
    }

    #[test]
    fn a_wrong_type_is_named() {
        let text = format!("{POLICY}    useCdi: maybe\n");
        let err = parse_all(&text).unwrap_err().to_string();
        assert_eq!(err, "spec.rdmaSharedDevicePlugin.useCdi: expected boolean, got string");
    }

    #[test]
    fn the_failing_document_of_a_stream_is_numbered() {
        let text = format!("{POLICY}---\napiVersion: mellanox.com/v1\nkind: MacvlanNetwork\n");
        let err = parse_all(&text).unwrap_err().to_string();
        assert_eq!(err, "document 2: apiVersion: expected mellanox.com/v1alpha1, got \"mellanox.com/v1\"");
    }

    #[test]
    fn documents_of_other_groups_are_kept_aside() {
        let docs = parse_all("apiVersion: nv-ipam.nvidia.com/v1alpha1\nkind: IPPool\n").unwrap();
        assert_eq!(
            docs,
            [Document::Foreign { api_version: "nv-ipam.nvidia.com/v1alpha1".into(), kind: "IPPool".into() }]
        );
        let err = parse_all("apiVersion: mellanox.com/v1alpha1\nkind: Bogus\n").unwrap_err().to_string();
        assert!(err.starts_with("kind: unsupported kind \"Bogus\""), "{err}");
    }

    #[test]
    fn broken_yaml_is_an_error_not_a_panic() {
        assert!(parse_all("spec: [unclosed").is_err());
    }

    #[test]
    fn round_trip_losses_names_dropped_fields() {
        let value: Value = serde_json::json!({"apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy",
            "metadata": {"name": "nic-cluster-policy"}, "spec": {"extra": 1}});
        assert_eq!(round_trip_losses::<NicClusterPolicy>(&value), ["spec.extra: dropped"]);
    }
}
