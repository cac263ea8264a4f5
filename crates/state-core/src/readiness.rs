//! When a rendered workload counts as ready.
//!
//! A DaemonSet is ready when its status describes the current generation, every desired pod is
//! available and updated; one that matches no node is ready, with a message saying so. A
//! Deployment is ready when it is Available and every replica is updated. Other kinds are ready
//! once they exist.

use kube::core::DynamicObject;
/// The readiness of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// Ready or not.
    pub ready: bool,
    /// Why not, or a note worth showing even when ready (e.g. "no node matches").
    pub message: Option<String>,
}

impl Readiness {
    fn ready() -> Self {
        Self { ready: true, message: None }
    }

    fn not_ready(message: String) -> Self {
        Self { ready: false, message: Some(message) }
    }
}

/// The readiness of `object` as it is live (with its status).
pub fn of(object: &DynamicObject) -> Readiness {
    let kind = object.types.as_ref().map(|t| t.kind.as_str()).unwrap_or_default();
    let name = object.metadata.name.as_deref().unwrap_or_default();
    let generation = object.metadata.generation.unwrap_or(0);
    let status = &object.data["status"];
    let int = |field: &str| status[field].as_i64().unwrap_or(0);
    match kind {
        "DaemonSet" => {
            let observed = status["observedGeneration"].as_i64();
            if observed.is_none_or(|o| o < generation) {
                return Readiness::not_ready(format!(
                    "DaemonSet {name}: status not yet observed for generation {generation}"
                ));
            }
            let desired = int("desiredNumberScheduled");
            let (available, updated) = (int("numberAvailable"), int("updatedNumberScheduled"));
            if desired == 0 {
                Readiness { ready: true, message: Some(format!("DaemonSet {name}: no node matches")) }
            } else if available != desired {
                Readiness::not_ready(format!("DaemonSet {name}: {available} of {desired} pods available"))
            } else if updated != desired {
                Readiness::not_ready(format!("DaemonSet {name}: {updated} of {desired} pods updated"))
            } else {
                Readiness::ready()
            }
        }
        "Deployment" => {
            let observed = status["observedGeneration"].as_i64();
            if observed.is_none_or(|o| o < generation) {
                return Readiness::not_ready(format!(
                    "Deployment {name}: status not yet observed for generation {generation}"
                ));
            }
            let available = status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Available" && c["status"] == "True");
            let replicas = object.data["spec"]["replicas"].as_i64().unwrap_or(1);
            let updated = int("updatedReplicas");
            if !available {
                Readiness::not_ready(format!("Deployment {name}: not Available"))
            } else if updated != replicas {
                Readiness::not_ready(format!("Deployment {name}: {updated} of {replicas} replicas updated"))
            } else {
                Readiness::ready()
            }
        }
        _ => Readiness::ready(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::ApiResource;
    use serde_json::{Value, json};

    fn with_status(mut object: DynamicObject, generation: i64, status: Value) -> DynamicObject {
        object.metadata.generation = Some(generation);
        object.data["status"] = status;
        object
    }

    fn ds(generation: i64, status: Value) -> DynamicObject {
        let ar = ApiResource::erase::<k8s_openapi::api::apps::v1::DaemonSet>(&());
        with_status(DynamicObject::new("ds", &ar), generation, status)
    }

    fn deploy(status: Value) -> DynamicObject {
        let ar = ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&());
        let mut d = with_status(DynamicObject::new("dep", &ar), 1, status);
        d.data["spec"] = json!({"replicas": 2});
        d
    }

    #[test]
    fn a_daemonset_with_every_pod_available_and_updated_is_ready() {
        let r = of(&ds(
            2,
            json!({"observedGeneration": 2, "desiredNumberScheduled": 3, "numberAvailable": 3, "updatedNumberScheduled": 3}),
        ));
        assert_eq!(r, Readiness::ready());
    }

    #[test]
    fn a_daemonset_with_a_stale_observed_generation_is_not_ready() {
        let r = of(&ds(
            3,
            json!({"observedGeneration": 2, "desiredNumberScheduled": 3, "numberAvailable": 3, "updatedNumberScheduled": 3}),
        ));
        assert!(!r.ready);
        assert_eq!(r.message.unwrap(), "DaemonSet ds: status not yet observed for generation 3");
    }

    #[test]
    fn a_daemonset_with_unavailable_or_outdated_pods_is_not_ready() {
        let r = of(&ds(
            1,
            json!({"observedGeneration": 1, "desiredNumberScheduled": 3, "numberAvailable": 2, "updatedNumberScheduled": 3}),
        ));
        assert_eq!(r.message.unwrap(), "DaemonSet ds: 2 of 3 pods available");
        let r = of(&ds(
            1,
            json!({"observedGeneration": 1, "desiredNumberScheduled": 3, "numberAvailable": 3, "updatedNumberScheduled": 1}),
        ));
        assert_eq!(r.message.unwrap(), "DaemonSet ds: 1 of 3 pods updated");
    }

    #[test]
    fn a_daemonset_matching_no_node_is_ready_and_says_so() {
        let r = of(&ds(1, json!({"observedGeneration": 1, "desiredNumberScheduled": 0})));
        assert!(r.ready);
        assert_eq!(r.message.unwrap(), "DaemonSet ds: no node matches");
    }

    #[test]
    fn a_daemonset_without_status_is_not_ready() {
        assert!(!of(&ds(1, Value::Null)).ready);
    }

    #[test]
    fn a_deployment_must_be_available_and_updated() {
        let available = json!([{"type": "Available", "status": "True"}]);
        assert!(of(&deploy(json!({"observedGeneration": 1, "conditions": available, "updatedReplicas": 2}))).ready);
        assert!(!of(&deploy(json!({"observedGeneration": 1, "conditions": available, "updatedReplicas": 1}))).ready);
        assert!(!of(&deploy(json!({"observedGeneration": 1, "updatedReplicas": 2}))).ready);
    }
}
