//! One `admission.k8s.io/v1` AdmissionReview in, its answer out: DELETE always passes; a
//! NicClusterPolicy with findings ([`crate::rules::findings`]) is refused with every finding in
//! one message and as causes (HTTP 422, reason `Invalid`, as the API server reports schema
//! errors); anything unreadable is refused with a message saying why. Never panics.

use api::{FieldError, NicClusterPolicy};
use kube::core::admission::{AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, Status};

/// The review version the webhook speaks (its configuration asks for this one only).
pub const REVIEW_VERSION: &str = "admission.k8s.io/v1";

/// The answer to `review` (a review without a request, or of another version, gets an
/// "invalid request" answer; a kind other than NicClusterPolicy is allowed with a warning: this
/// webhook does not judge it).
pub fn answer(review: AdmissionReview<DynamicObject>) -> AdmissionReview<DynamicObject> {
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
    if request.kind.group != api::GROUP || request.kind.kind != "NicClusterPolicy" {
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
    let policy: NicClusterPolicy = match serde_json::to_value(&object).and_then(serde_json::from_value) {
        Ok(policy) => policy,
        Err(e) => return response.deny(format!("not a readable NicClusterPolicy: {e}")).into_review(),
    };
    let findings = crate::rules::findings(&policy);
    if findings.is_empty() {
        tracing::info!(%name, operation = ?request.operation, "allowed");
        return response.into_review();
    }
    tracing::info!(%name, findings = findings.len(), "denied");
    denied(response, &name, &findings).into_review()
}

/// `response` refusing the policy `name` for `findings`.
pub fn denied(mut response: AdmissionResponse, name: &str, findings: &[FieldError]) -> AdmissionResponse {
    let listed: Vec<String> = findings.iter().map(ToString::to_string).collect();
    let message = format!("NicClusterPolicy.mellanox.com {name:?} is invalid: [{}]", listed.join(", "));
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
            kind: "NicClusterPolicy".into(),
            uid: String::new(),
            causes,
            retry_after_seconds: 0,
        }),
        metadata: None,
    };
    response
}
