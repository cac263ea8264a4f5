//! Taking over the original operator's workloads without restarting a pod.
//!
//! A DaemonSet or Deployment the original operator created (it carries the state label and the
//! policy's owner reference, but not our `app.kubernetes.io/managed-by` label) is adopted with
//! its live pod template: our rendering differs in details (labels, annotations, defaults), and
//! any change to a template restarts every pod of a RollingUpdate DaemonSet and sets the driver
//! upgrade going on every node. The live template is kept while nothing the user controls
//! changed:
//!
//! - at adoption, when every container runs the image we render for it (a version the user
//!   changed while no operator ran is rolled out, as it would have been);
//! - afterwards, while our rendered template is the one we rendered at adoption and the live
//!   template is the one we kept (both hashes are in [`ADOPTED_TEMPLATE_ANNOTATION`], on the
//!   object's metadata, never in its template).
//!
//! The first change of either (a version, config or resources change; a template edited by
//! someone else) applies our template, and the annotation goes with it.
//!
//! Likewise a NetworkAttachmentDefinition keeps its live `spec.config` text while it is the same
//! JSON as ours (the original wrote it with other whitespace): no NAD changes at a takeover.

use crate::edits::STANDARD_LABELS;
use crate::objects::hash;
use kube::ResourceExt;
use kube::core::DynamicObject;
use serde_json::Value;
use std::collections::BTreeMap;

/// Annotation of an adopted workload whose live pod template is kept:
/// `rendered=<hash of our template>,kept=<hash of the live template>`.
pub const ADOPTED_TEMPLATE_ANNOTATION: &str = "nvidia.network-operator.adopted-template";

/// `desired` as it is to be applied over `live`: with the live pod template of an adopted
/// workload, or the live config text of a NAD that means the same (see the module
/// documentation); otherwise unchanged.
pub fn adopted(desired: DynamicObject, live: &DynamicObject) -> DynamicObject {
    keep_same_config(keep_adopted_template(desired, live), live)
}

/// `desired`, with the live `spec.config` of a NetworkAttachmentDefinition when both parse to
/// the same JSON.
fn keep_same_config(mut desired: DynamicObject, live: &DynamicObject) -> DynamicObject {
    if desired.types.as_ref().is_none_or(|t| t.kind != "NetworkAttachmentDefinition") {
        return desired;
    }
    let parse = |object: &DynamicObject| {
        let text = object.data.pointer("/spec/config")?.as_str()?;
        Some((text.to_string(), serde_json::from_str::<Value>(text).ok()?))
    };
    if let (Some((_, ours)), Some((text, theirs))) = (parse(&desired), parse(live))
        && ours == theirs
    {
        desired.data["spec"]["config"] = Value::String(text);
    }
    desired
}

/// `desired`, with the pod template of `live` in place of its own when `live` is an adopted
/// workload whose template is kept (see the module documentation); otherwise `desired` as it is.
fn keep_adopted_template(mut desired: DynamicObject, live: &DynamicObject) -> DynamicObject {
    let Some(live_template) = template(live) else { return desired };
    let Some(rendered) = template(&desired) else { return desired };
    let marker = format!("rendered={},kept={}", hash_of(rendered), hash_of(live_template));
    let keep = match live.annotations().get(ADOPTED_TEMPLATE_ANNOTATION) {
        Some(previous) => *previous == marker,
        None => adopting(live) && images(live_template) == images(rendered),
    };
    if keep {
        desired.data["spec"]["template"] = live_template.clone();
        desired.annotations_mut().insert(ADOPTED_TEMPLATE_ANNOTATION.to_string(), marker);
    }
    desired
}

/// Whether `object` is a workload another operator wrote: it lacks our managed-by label.
fn adopting(object: &DynamicObject) -> bool {
    let (key, value) = STANDARD_LABELS[0];
    object.labels().get(key).map(String::as_str) != Some(value)
}

/// The pod template of a DaemonSet or Deployment.
fn template(object: &DynamicObject) -> Option<&Value> {
    let kind = object.types.as_ref().map(|t| t.kind.as_str());
    if !matches!(kind, Some("DaemonSet" | "Deployment")) {
        return None;
    }
    object.data.pointer("/spec/template").filter(|t| t.is_object())
}

fn hash_of(value: &Value) -> String {
    hash(&serde_json::to_string(value).unwrap_or_default())
}

/// Image of every container and init container, by container name.
fn images(template: &Value) -> BTreeMap<String, String> {
    ["containers", "initContainers"]
        .into_iter()
        .filter_map(|list| template.pointer(&format!("/spec/{list}"))?.as_array())
        .flatten()
        .map(|c| (text(c, "name"), text(c, "image")))
        .collect()
}

fn text(value: &Value, key: &str) -> String {
    value.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// The ConfigMaps, Secrets and ServiceAccount the pod template of `object` (a DaemonSet or
/// Deployment) refers to, as `(kind, name)`: objects a prune must not delete while pods use them
/// (an adopted template may refer to objects we no longer render).
pub fn template_references(object: &DynamicObject) -> Vec<(&'static str, String)> {
    let Some(pod) = template(object).and_then(|t| t.get("spec")) else { return Vec::new() };
    let mut found = Vec::new();
    let mut add = |kind: &'static str, name: Option<&Value>| {
        if let Some(name) = name.and_then(Value::as_str).filter(|n| !n.is_empty()) {
            found.push((kind, name.to_string()));
        }
    };
    add("ServiceAccount", pod.get("serviceAccountName"));
    for volume in pod.get("volumes").and_then(Value::as_array).into_iter().flatten() {
        add("ConfigMap", volume.pointer("/configMap/name"));
        add("Secret", volume.pointer("/secret/secretName"));
        for source in volume.pointer("/projected/sources").and_then(Value::as_array).into_iter().flatten() {
            add("ConfigMap", source.pointer("/configMap/name"));
            add("Secret", source.pointer("/secret/name"));
        }
    }
    let containers =
        ["containers", "initContainers"].into_iter().filter_map(|list| pod.get(list)?.as_array()).flatten();
    for container in containers {
        for source in container.get("envFrom").and_then(Value::as_array).into_iter().flatten() {
            add("ConfigMap", source.pointer("/configMapRef/name"));
            add("Secret", source.pointer("/secretRef/name"));
        }
        for var in container.get("env").and_then(Value::as_array).into_iter().flatten() {
            add("ConfigMap", var.pointer("/valueFrom/configMapKeyRef/name"));
            add("Secret", var.pointer("/valueFrom/secretKeyRef/name"));
        }
    }
    found.sort();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(image: &str, arg: &str) -> Value {
        json!({"metadata": {"labels": {"name": "multus"}},
               "spec": {"containers": [{"name": "kube-multus", "image": image, "args": [arg]}]}})
    }

    /// A DaemonSet as the original writes it, or as we render it (before the edits).
    fn workload(template: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "kube-multus-ds", "namespace": "ns",
                         "labels": {"nvidia.network-operator.state": "state-multus-cni"}},
            "spec": {"selector": {"matchLabels": {"name": "multus"}}, "template": template},
        }))
        .unwrap()
    }

    fn kept(object: &DynamicObject) -> Option<&String> {
        object.annotations().get(ADOPTED_TEMPLATE_ANNOTATION)
    }

    #[test]
    fn an_original_workload_keeps_its_live_template_when_the_images_are_the_same() {
        let live = workload(pod("multus:v3.9.3", "--multus-conf-file=/tmp/multus-conf/00-multus.conf"));
        let desired = workload(pod("multus:v3.9.3", "--multus-conf-file=auto"));
        let adopted = adopted(desired, &live);
        assert_eq!(adopted.data["spec"]["template"], live.data["spec"]["template"]);
        assert!(kept(&adopted).is_some_and(|m| m.starts_with("rendered=")), "{:?}", kept(&adopted));
    }

    #[test]
    fn an_original_workload_whose_image_the_user_changed_gets_our_template() {
        let live = workload(pod("multus:v3.9.3", "--multus-conf-file=/tmp/multus-conf/00-multus.conf"));
        let desired = workload(pod("multus:v4.0.0", "--multus-conf-file=auto"));
        let adopted = adopted(desired.clone(), &live);
        assert_eq!(adopted.data, desired.data);
        assert_eq!(kept(&adopted), None);
    }

    #[test]
    fn the_kept_template_stays_until_our_rendering_or_the_live_template_changes() {
        let original = pod("multus:v3.9.3", "--multus-conf-file=/tmp/multus-conf/00-multus.conf");
        let first = adopted(workload(pod("multus:v3.9.3", "auto")), &workload(original.clone()));
        // What the API server holds after our first apply: our labels, the marker, the old template.
        let mut live = first.clone();
        live.labels_mut().insert("app.kubernetes.io/managed-by".into(), "network-operator".into());

        let again = adopted(workload(pod("multus:v3.9.3", "auto")), &live);
        assert_eq!(again.data["spec"]["template"], original, "nothing changed: still kept");
        assert_eq!(kept(&again), kept(&first));

        let config_change = adopted(workload(pod("multus:v3.9.3", "/etc/cni/multus.conf")), &live);
        assert_eq!(config_change.data["spec"]["template"], pod("multus:v3.9.3", "/etc/cni/multus.conf"));
        assert_eq!(kept(&config_change), None, "our template from now on");

        let mut edited = live.clone();
        edited.data["spec"]["template"]["spec"]["containers"][0]["args"][0] = json!("--by-hand");
        let drift = adopted(workload(pod("multus:v3.9.3", "auto")), &edited);
        assert_eq!(drift.data["spec"]["template"], pod("multus:v3.9.3", "auto"), "drift is corrected");
    }

    #[test]
    fn workloads_the_operator_wrote_and_other_kinds_are_rendered_as_they_are() {
        let mut live = workload(pod("multus:v3.9.3", "old"));
        live.labels_mut().insert("app.kubernetes.io/managed-by".into(), "network-operator".into());
        let desired = workload(pod("multus:v3.9.3", "new"));
        assert_eq!(adopted(desired.clone(), &live).data, desired.data);

        let config_map: DynamicObject = serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c"}, "data": {"k": "v"}}))
        .unwrap();
        assert_eq!(adopted(config_map.clone(), &config_map).data, config_map.data);
    }

    #[test]
    fn a_nad_keeps_its_config_text_while_it_means_the_same() {
        let nad = |config: &str| -> DynamicObject {
            serde_json::from_value(json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                "metadata": {"name": "n", "namespace": "default"}, "spec": {"config": config}}))
            .unwrap()
        };
        let original = nad(r#"{ "cniVersion":"0.3.1", "type":"macvlan","mode" : "bridge" }"#);
        let same = adopted(nad(r#"{"cniVersion":"0.3.1","type":"macvlan","mode":"bridge"}"#), &original);
        assert_eq!(same.data["spec"], original.data["spec"], "only whitespace differs: the live text stays");
        let changed = adopted(nad(r#"{"cniVersion":"0.3.1","type":"macvlan","mode":"vepa"}"#), &original);
        assert_eq!(changed.data["spec"]["config"], r#"{"cniVersion":"0.3.1","type":"macvlan","mode":"vepa"}"#);
    }

    #[test]
    fn a_template_refers_to_its_config_maps_secrets_and_service_account() {
        let template = json!({"spec": {
            "serviceAccountName": "multus",
            "volumes": [{"name": "a", "configMap": {"name": "multus-cni-config"}},
                        {"name": "b", "secret": {"secretName": "tls"}},
                        {"name": "c", "hostPath": {"path": "/etc"}},
                        {"name": "d", "projected": {"sources": [{"configMap": {"name": "ca"}}]}}],
            "containers": [{"name": "x", "envFrom": [{"configMapRef": {"name": "env"}}],
                            "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "pw", "key": "k"}}}]}]}});
        let found = template_references(&workload(template));
        let expected = [
            ("ConfigMap", "ca"),
            ("ConfigMap", "env"),
            ("ConfigMap", "multus-cni-config"),
            ("Secret", "pw"),
            ("Secret", "tls"),
            ("ServiceAccount", "multus"),
        ];
        assert_eq!(found, expected.map(|(k, n)| (k, n.to_string())));
    }
}
