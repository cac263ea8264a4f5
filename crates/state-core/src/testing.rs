//! Test helpers every state crate uses (feature `testing`): policies from files, rendering,
//! typed round trips of every object, YAML for golden snapshots, and a mock API server.

use crate::render::render_state;
use crate::state::{Observed, RenderContext, State};
use api::NicClusterPolicy;
use api::parse::{self, Document};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Client;
use kube::client::Body;
use kube::core::DynamicObject;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Namespace the helpers render into.
pub const NAMESPACE: &str = "nvidia-network-operator";

/// The repository's root directory (for `example/crs/...`).
pub fn repo_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The NicClusterPolicy in a YAML text; panics with the parse error.
pub fn policy_from_yaml(text: &str) -> NicClusterPolicy {
    match parse::parse_all(text).unwrap_or_else(|e| panic!("policy does not parse: {e}")).remove(0) {
        Document::Policy(policy) => *policy,
        other => panic!("expected a NicClusterPolicy, got {other:?}"),
    }
}

/// The NicClusterPolicy in a file relative to the repository root.
pub fn policy_from_file(relative: &str) -> NicClusterPolicy {
    let path = repo_root().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    policy_from_yaml(&text)
}

/// Every object of state `S` for `policy`; panics if the section is absent or does not render.
pub fn render<S: State>(policy: &NicClusterPolicy, openshift: bool) -> Vec<DynamicObject> {
    let ctx = RenderContext::new(NAMESPACE, openshift, policy);
    match render_state::<S>(&ctx) {
        Ok(Some(objects)) => objects,
        Ok(None) => panic!("{}: section absent", S::NAME),
        Err(e) => panic!("{}: {e}", S::NAME),
    }
}

/// Every object of state `S` for `policy` with `observed` from the cluster (e.g. a configured
/// CNI binary directory); panics if the section is absent or does not render.
pub fn render_observed<S: State>(
    policy: &NicClusterPolicy,
    openshift: bool,
    observed: &Observed,
) -> Vec<DynamicObject> {
    let ctx = RenderContext { namespace: NAMESPACE, openshift, policy, observed };
    match render_state::<S>(&ctx) {
        Ok(Some(objects)) => objects,
        Ok(None) => panic!("{}: section absent", S::NAME),
        Err(e) => panic!("{}: {e}", S::NAME),
    }
}

/// The NicNodePolicy named `name` in a file relative to the repository root, with a uid and a
/// generation as the API server gives them (so owner references show in goldens).
pub fn node_policy_from_file(relative: &str, name: &str) -> api::NicNodePolicy {
    let path = repo_root().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let documents = parse::parse_all(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut policy = documents
        .into_iter()
        .find_map(|document| match document {
            Document::NodePolicy(policy) if policy.metadata.name.as_deref() == Some(name) => Some(*policy),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no NicNodePolicy {name} in {}", path.display()));
    policy.metadata.uid = Some(format!("uid-of-{name}"));
    policy.metadata.generation = Some(1);
    policy
}

/// Every object of state `S` for NicNodePolicy `policy`, as its controller renders it (the
/// policy alone holds the section), with `observed` from the cluster; panics if the section is
/// absent or does not render.
pub fn render_node_policy<S: State>(policy: &api::NicNodePolicy, observed: &Observed) -> Vec<DynamicObject> {
    let view = policy.view(None);
    let observed = Observed { peers: vec![std::sync::Arc::new(policy.clone())], ..observed.clone() };
    let ctx = RenderContext { namespace: NAMESPACE, openshift: false, policy: &view, observed: &observed };
    match crate::render::render_in_scope::<S>(&ctx, &crate::scope::Scope::Node(policy)) {
        Ok(Some(objects)) => objects,
        Ok(None) => panic!("{}: section absent", S::NAME),
        Err(e) => panic!("{}: {e}", S::NAME),
    }
}

/// The error rendering state `S` for `policy` gives (as its message); panics if it renders.
pub fn render_error<S: State>(policy: &NicClusterPolicy) -> String {
    let ctx = RenderContext::new(NAMESPACE, false, policy);
    match render_state::<S>(&ctx) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{}: rendered, but an error was expected", S::NAME),
    }
}

/// The object of `kind` named `name` among `objects`; panics if there is none.
pub fn find<'a>(objects: &'a [DynamicObject], kind: &str, name: &str) -> &'a DynamicObject {
    objects
        .iter()
        .find(|o| o.types.as_ref().is_some_and(|t| t.kind == kind) && o.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} among the rendered objects"))
}

/// Adds the cross-cutting inputs of the golden cases to `policy`: a toleration and a required
/// node-affinity term; and to `image`: a pull secret and resources for `container`.
pub fn add_cross_cutting(
    policy: &mut NicClusterPolicy,
    image: impl FnOnce(&mut NicClusterPolicy) -> &mut api::ImageSpec,
    container: &str,
) {
    policy.spec.tolerations = Some(vec![k8s_openapi::api::core::v1::Toleration {
        key: Some("dedicated".into()),
        operator: Some("Equal".into()),
        value: Some("hpc".into()),
        effect: Some("NoSchedule".into()),
        ..Default::default()
    }]);
    policy.spec.node_affinity = Some(
        serde_json::from_value(serde_json::json!({
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "node-role.kubernetes.io/worker", "operator": "Exists"}]}
            ]}
        }))
        .expect("valid node affinity"),
    );
    let image = image(policy);
    image.image_pull_secrets = Some(vec!["registry-secret".into()]);
    image.container_resources = Some(vec![
        serde_json::from_value(serde_json::json!({"name": container, "requests": {"cpu": "200m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}))
            .expect("valid container resources"),
    ]);
}

/// Objects as one multi-document YAML stream (for golden snapshots).
pub fn to_yaml(objects: &[DynamicObject]) -> String {
    objects.iter().map(|o| format!("---\n{}", serde_saphyr::to_string(o).expect("object serialises"))).collect()
}

/// Asserts that every object survives a round trip through its typed k8s-openapi struct:
/// a misspelled or misplaced field (which the API server would drop) fails the test.
pub fn assert_round_trips(objects: &[DynamicObject]) {
    for object in objects {
        let value = serde_json::to_value(object).expect("object serialises");
        let kind = value["kind"].as_str().unwrap_or_default().to_string();
        let lost = match kind.as_str() {
            "DaemonSet" => parse::round_trip_losses::<DaemonSet>(&value),
            "Deployment" => parse::round_trip_losses::<Deployment>(&value),
            "ConfigMap" => parse::round_trip_losses::<ConfigMap>(&value),
            "PersistentVolumeClaim" => parse::round_trip_losses::<PersistentVolumeClaim>(&value),
            "Service" => parse::round_trip_losses::<Service>(&value),
            "ServiceAccount" => parse::round_trip_losses::<ServiceAccount>(&value),
            "Role" => parse::round_trip_losses::<Role>(&value),
            "RoleBinding" => parse::round_trip_losses::<RoleBinding>(&value),
            "ClusterRole" => parse::round_trip_losses::<ClusterRole>(&value),
            "ClusterRoleBinding" => parse::round_trip_losses::<ClusterRoleBinding>(&value),
            "NetworkAttachmentDefinition" => parse::round_trip_losses::<api::NetworkAttachmentDefinition>(&value),
            "ValidatingWebhookConfiguration" => parse::round_trip_losses::<ValidatingWebhookConfiguration>(&value),
            "Issuer" => parse::round_trip_losses::<api::cert_manager::Issuer>(&value),
            "Certificate" => parse::round_trip_losses::<api::cert_manager::Certificate>(&value),
            other => panic!("no typed round trip for kind {other}: add it to state_core::testing"),
        };
        let name = value["metadata"]["name"].as_str().unwrap_or_default();
        assert!(lost.is_empty(), "{kind} {name} loses fields in a typed round trip: {lost:#?}");
    }
}

/// A request the mock API server received.
#[derive(Clone, Debug)]
pub struct Received {
    /// HTTP method, e.g. `PATCH`.
    pub method: String,
    /// Path and query, e.g. `/apis/apps/v1/namespaces/ns/daemonsets/x?&force=true&fieldManager=...`.
    pub uri: String,
    /// The JSON body (`Null` when empty).
    pub body: Value,
}

impl Received {
    /// Whether the query string holds `key=value` (value URL-encoded as sent).
    pub fn has_query(&self, key: &str, value: &str) -> bool {
        let query = self.uri.split_once('?').map(|(_, q)| q).unwrap_or_default();
        query.split('&').any(|pair| pair == format!("{key}={value}"))
    }
}

/// A mock API server: the test plays the server, request by request.
pub struct ApiServer {
    handle: tower_test::mock::Handle<http::Request<Body>, http::Response<Body>>,
}

/// A client talking to a mock API server.
pub fn mock_client() -> (Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<http::Request<Body>, http::Response<Body>>();
    (Client::new(service, NAMESPACE), ApiServer { handle })
}

impl ApiServer {
    /// Waits for the next request, checks its method and its path (query excluded), and
    /// answers `status` with `response` as JSON.
    pub async fn expect(&mut self, method: &str, path: &str, status: u16, response: Value) -> Received {
        self.handle(method, path, |_| (status, response)).await
    }

    /// Like [`expect`](Self::expect), with the answer computed from the request (e.g. echoing
    /// an applied object back).
    pub async fn handle(
        &mut self,
        method: &str,
        path: &str,
        respond: impl FnOnce(&Received) -> (u16, Value),
    ) -> Received {
        let next = tokio::time::timeout(Duration::from_secs(5), self.handle.next_request()).await;
        let (request, send) = next
            .unwrap_or_else(|_| panic!("no request arrived; expected {method} {path}"))
            .unwrap_or_else(|| panic!("client gone; expected {method} {path}"));
        let method_seen = request.method().to_string();
        let uri = request.uri().to_string();
        let bytes = request.into_body().collect_bytes().await.expect("request body readable");
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
        assert_eq!(
            (method_seen.as_str(), uri.split('?').next().unwrap_or_default()),
            (method, path),
            "unexpected request {method_seen} {uri} with body {body}"
        );
        let received = Received { method: method_seen, uri, body };
        let (status, response) = respond(&received);
        let response_body = serde_json::to_vec(&response).expect("response serialises");
        send.send_response(
            http::Response::builder().status(status).body(Body::from(response_body)).expect("valid response"),
        );
        received
    }

    /// Expects a GET of `path` and answers 404: the object does not exist yet.
    pub async fn expect_absent(&mut self, path: &str) -> Received {
        self.expect("GET", path, 404, status_error(404, "NotFound")).await
    }

    /// Answers every request with `respond` until none arrives for a short while; returns them
    /// all, in order (for scenarios where the exact sequence is not the point).
    pub async fn answer_all(&mut self, mut respond: impl FnMut(&Received) -> (u16, Value)) -> Vec<Received> {
        let mut received = Vec::new();
        while let Ok(Some((request, send))) =
            tokio::time::timeout(Duration::from_millis(300), self.handle.next_request()).await
        {
            let method = request.method().to_string();
            let uri = request.uri().to_string();
            let bytes = request.into_body().collect_bytes().await.expect("request body readable");
            let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
            let request = Received { method, uri, body };
            let (status, response) = respond(&request);
            let response_body = serde_json::to_vec(&response).expect("response serialises");
            send.send_response(
                http::Response::builder().status(status).body(Body::from(response_body)).expect("valid response"),
            );
            received.push(request);
        }
        received
    }

    /// Asserts that no further request arrives within a short while.
    pub async fn expect_no_more(&mut self) {
        if let Ok(Some((request, _))) =
            tokio::time::timeout(Duration::from_millis(200), self.handle.next_request()).await
        {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }
}

/// A Kubernetes `Status` error body with `code`, as the API server sends it.
pub fn status_error(code: u16, reason: &str) -> Value {
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason, "reason": reason, "code": code})
}
