//! `network_operator_api_requests_total{verb,resource}`: every request a controller's client sends,
//! counted client-side by a layer on the client ([`CountRequests`]), so convergence and steady
//! state can be measured (steady state must show no writes).

use http::{Method, Request};
use prometheus::IntCounterVec;
use std::task::{Context, Poll};

/// A layer counting each request by verb and resource.
#[derive(Clone)]
pub struct CountRequests {
    counter: IntCounterVec,
}

impl CountRequests {
    /// Counts into `counter` (labels `verb`, `resource`).
    pub fn new(counter: IntCounterVec) -> Self {
        Self { counter }
    }
}

impl<S> tower::Layer<S> for CountRequests {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted { inner, counter: self.counter.clone() }
    }
}

/// A service counting the requests it passes on.
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    counter: IntCounterVec,
}

impl<S, B> tower::Service<Request<B>> for Counted<S>
where
    S: tower::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (verb, kind) = classify(request.method(), request.uri().path(), request.uri().query());
        self.counter.with_label_values(&[verb, &kind]).inc();
        self.inner.call(request)
    }
}

/// The Kubernetes verb and resource (`pods`, `pods/eviction`, ...) of a request.
pub fn classify(method: &Method, path: &str, query: Option<&str>) -> (&'static str, String) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return (verb(method, false, query), "other".into()),
    };
    let rest = match rest {
        ["namespaces", _namespace, resource, more @ ..] => [&[*resource][..], more].concat(),
        other => other.to_vec(),
    };
    let (resource, named, subresource) = match rest.as_slice() {
        [] => ("other", false, None),
        [resource] => (*resource, false, None),
        [resource, _name] => (*resource, true, None),
        [resource, _name, sub, ..] => (*resource, true, Some(*sub)),
    };
    let kind = match subresource {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_string(),
    };
    (verb(method, named, query), kind)
}

fn verb(method: &Method, named: bool, query: Option<&str>) -> &'static str {
    let watching = query.is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    match *method {
        Method::GET if watching => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_named_by_kubernetes_verb_and_resource() {
        let cases = [
            (Method::GET, "/api/v1/nodes", Some("labelSelector=x"), ("list", "nodes")),
            (Method::GET, "/api/v1/nodes", Some("watch=true&resourceVersion=5"), ("watch", "nodes")),
            (Method::GET, "/api/v1/nodes/n1", None, ("get", "nodes")),
            (Method::PATCH, "/api/v1/nodes/n1", None, ("patch", "nodes")),
            (Method::POST, "/api/v1/namespaces/work/pods/web/eviction", None, ("create", "pods/eviction")),
            (Method::DELETE, "/api/v1/namespaces/netop/pods/mofed-1", None, ("delete", "pods")),
            (
                Method::PATCH,
                "/apis/mellanox.com/v1alpha1/nicclusterpolicies/p/status",
                None,
                ("patch", "nicclusterpolicies/status"),
            ),
            (Method::GET, "/apis/apps/v1/namespaces/netop/daemonsets", None, ("list", "daemonsets")),
            (Method::PUT, "/apis/coordination.k8s.io/v1/namespaces/netop/leases/l", None, ("update", "leases")),
            (Method::GET, "/api/v1/namespaces/netop", None, ("get", "namespaces")),
            (Method::GET, "/version", None, ("list", "other")),
        ];
        for (method, path, query, (verb, kind)) in cases {
            assert_eq!(classify(&method, path, query), (verb, kind.to_string()), "{method} {path}");
        }
    }
}
