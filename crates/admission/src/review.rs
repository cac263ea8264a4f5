//! One `admission.k8s.io/v1` AdmissionReview in, its answer out: DELETE always passes; a
//! NicClusterPolicy or NicNodePolicy with findings ([`crate::rules`], which also compares it
//! with the other policies and the nodes the webhook watches) is refused with every finding in
//! one message and as causes (HTTP 422, reason `Invalid`, as the API server reports schema
//! errors); anything unreadable is refused with a message saying why. Never panics.

use api::{FieldError, NicClusterPolicy, NicNodePolicy};
use kube::core::admission::{AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, Status};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the webhook knows of the cluster when it judges a policy (from its watches; nothing
/// when it has none): the NicClusterPolicy, the NicNodePolicies and every node's labels.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    /// The NicClusterPolicy, if any.
    pub cluster_policy: Option<Arc<NicClusterPolicy>>,
    /// Every NicNodePolicy.
    pub node_policies: Vec<Arc<NicNodePolicy>>,
    /// Every node's name and labels.
    pub nodes: Vec<(String, BTreeMap<String, String>)>,
}

/// A source of what the webhook knows of the cluster, read at each review.
pub trait ClusterSource: Send + Sync {
    /// The cluster as known now.
    fn cluster(&self) -> Cluster;
}

impl ClusterSource for Cluster {
    fn cluster(&self) -> Cluster {
        self.clone()
    }
}

/// The review version the webhook speaks (its configuration asks for this one only).
pub const REVIEW_VERSION: &str = "admission.k8s.io/v1";

/// The answer to `review` knowing nothing of the cluster (see [`answer_in`]).
pub fn answer(review: AdmissionReview<DynamicObject>) -> AdmissionReview<DynamicObject> {
    answer_in(review, &Cluster::default())
}

/// The answer to `review` in `cluster` (a review without a request, or of another version, gets
/// an "invalid request" answer; a kind other than NicClusterPolicy and NicNodePolicy is allowed
/// with a warning: this webhook does not judge it).
pub fn answer_in(review: AdmissionReview<DynamicObject>, cluster: &Cluster) -> AdmissionReview<DynamicObject> {
    if review.types.api_version != REVIEW_VERSION {
        let version = &review.types.api_version;
        return AdmissionResponse::invalid(format!("AdmissionReview {version:?} is not served; send {REVIEW_VERSION}"))
            .into_review();
    }
    let request = match review.try_into() {
        Ok(request) => request,
        Err(e) => {
            return AdmissionResponse::invalid(format!("not an AdmissionReview with a request: {e}")).into_review();
        }
    };
    let request: kube::core::admission::AdmissionRequest<DynamicObject> = request;
    let mut response = AdmissionResponse::from(&request);
    let kind = request.kind.kind.clone();
    if request.kind.group != api::GROUP || !matches!(kind.as_str(), "NicClusterPolicy" | "NicNodePolicy") {
        let kind = format!("{}/{}", request.kind.group, request.kind.kind);
        response.warnings = Some(vec![format!("the NicClusterPolicy webhook does not judge {kind}; allowed")]);
        return response.into_review();
    }
    if matches!(request.operation, Operation::Delete | Operation::Connect) {
        return response.into_review();
    }
    let Some(object) = request.object else {
        return response.deny("the request carries no object").into_review();
    };
    let name = object.metadata.name.clone().unwrap_or_default();
    let value = serde_json::to_value(&object);
    let findings = if kind == "NicNodePolicy" {
        match value.and_then(serde_json::from_value::<NicNodePolicy>) {
            Ok(policy) => crate::rules::node_policy_findings(&policy, cluster),
            Err(e) => return response.deny(format!("not a readable NicNodePolicy: {e}")).into_review(),
        }
    } else {
        match value.and_then(serde_json::from_value::<NicClusterPolicy>) {
            Ok(policy) => {
                let mut findings = crate::rules::findings(&policy);
                findings.extend(crate::rules::shared_with_node_policies(&policy, cluster));
                findings
            }
            Err(e) => return response.deny(format!("not a readable NicClusterPolicy: {e}")).into_review(),
        }
    };
    if findings.is_empty() {
        tracing::info!(%kind, %name, operation = ?request.operation, "allowed");
        return response.into_review();
    }
    tracing::info!(%kind, %name, findings = findings.len(), "denied");
    denied(response, &kind, &name, &findings).into_review()
}

/// `response` refusing the policy of `kind` named `name` for `findings`.
pub fn denied(mut response: AdmissionResponse, kind: &str, name: &str, findings: &[FieldError]) -> AdmissionResponse {
    let listed: Vec<String> = findings.iter().map(ToString::to_string).collect();
    let message = format!("{kind}.mellanox.com {name:?} is invalid: [{}]", listed.join(", "));
    let causes = findings
        .iter()
        .map(|f| kube::core::response::StatusCause {
            reason: "FieldValueInvalid".into(),
            message: f.message.clone(),
            field: f.path.clone(),
        })
        .collect();
    response.allowed = false;
    response.result = Status {
        status: Some(kube::core::response::StatusSummary::Failure),
        code: 422,
        message,
        reason: "Invalid".into(),
        details: Some(kube::core::response::StatusDetails {
            name: name.to_string(),
            group: api::GROUP.into(),
            kind: kind.into(),
            uid: String::new(),
            causes,
            retry_after_seconds: 0,
        }),
        metadata: None,
    };
    response
}
