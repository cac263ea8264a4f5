//! Tera templates embedded in a state crate (`manifests/*.yaml`), rendered to objects.
//!
//! Templates hold the static shape of the objects. Anything a user typed (configs, names) is
//! emitted with the `json` filter, which writes a JSON scalar (valid YAML), so quotes and newlines
//! survive; whole config strings are best set in Rust after templating.

use crate::state::RenderError;
use kube::core::DynamicObject;
use serde::Serialize;
use serde_json::Value;

/// One embedded template file.
#[derive(Clone, Copy, Debug)]
pub struct Manifest {
    /// File name, e.g. `0050-daemonset.yaml`; files are rendered in the given order.
    pub name: &'static str,
    /// The template text.
    pub text: &'static str,
}

/// Embeds template files from the calling crate's `manifests/` directory.
///
/// `manifests!("0010-a.yaml", "0020-b.yaml")` gives a `&'static [Manifest]`.
#[macro_export]
macro_rules! manifests {
    ($($file:literal),+ $(,)?) => {
        &[$($crate::template::Manifest {
            name: $file,
            text: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/", $file)),
        }),+]
    };
}

/// Renders every manifest with `values` and parses the result into objects.
///
/// Documents that are empty or have no `kind` are dropped, so a template can switch a whole
/// object off with `{% if %}`.
pub fn render_manifests(manifests: &[Manifest], values: &impl Serialize) -> Result<Vec<DynamicObject>, RenderError> {
    let mut engine = tera::Tera::new();
    engine.autoescape_on(Vec::<&str>::new());
    engine.register_filter("json", |value: tera::Value, _: tera::Kwargs, _: &tera::State| {
        if value.is_undefined() {
            return Err(tera::Error::message("the json filter got an undefined value"));
        }
        serde_json::to_string(&value).map_err(tera::Error::message)
    });
    let context = tera::Context::from_serialize(values)
        .map_err(|e| RenderError::Manifest { manifest: "<values>".into(), message: e.to_string() })?;
    let mut objects = Vec::new();
    for manifest in manifests {
        let broken = |message: String| RenderError::Manifest { manifest: manifest.name.into(), message };
        engine.add_raw_template(manifest.name, manifest.text).map_err(|e| broken(e.to_string()))?;
        let text = engine.render(manifest.name, &context).map_err(|e| broken(format!("{e:?}")))?;
        let documents: Vec<Value> = serde_saphyr::from_str_multiple(&text).map_err(|e| broken(e.to_string()))?;
        for document in documents {
            if document.get("kind").and_then(Value::as_str).is_none_or(str::is_empty) {
                continue;
            }
            objects.push(serde_json::from_value(document).map_err(|e| broken(e.to_string()))?);
        }
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CM: Manifest = Manifest {
        name: "cm.yaml",
        text: "{% if enabled %}apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: {{ ns | json }}\ndata:\n  v: {{ value | json }}\n{% endif %}",
    };

    #[test]
    fn values_with_quotes_and_newlines_survive_the_json_filter() {
        let objects = render_manifests(&[CM], &json!({"enabled": true, "ns": "n", "value": "a'b\"c\nd: e"})).unwrap();
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].data["data"]["v"], "a'b\"c\nd: e");
        assert_eq!(objects[0].metadata.namespace.as_deref(), Some("n"));
    }

    #[test]
    fn a_document_switched_off_renders_nothing() {
        assert!(render_manifests(&[CM], &json!({"enabled": false})).unwrap().is_empty());
    }

    #[test]
    fn an_undefined_value_is_an_error_naming_the_manifest() {
        let err = render_manifests(&[CM], &json!({"enabled": true})).unwrap_err();
        assert!(err.to_string().contains("cm.yaml"), "{err}");
    }
}
