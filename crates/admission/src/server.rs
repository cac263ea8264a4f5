//! The HTTPS server: `POST /validate-mellanox-com-v1alpha1-nicclusterpolicy` (the original's
//! path) answers AdmissionReviews, `GET /healthz` says it is alive; TLS through rustls with the
//! certificate of a [`Resolver`](crate::certs::Resolver).
//!
//! The API server calls with a short timeout and, with `failurePolicy: Fail`, refuses every
//! policy write the webhook does not answer in time, so no client may stall the others: each
//! connection is a task of its own (TLS handshake included), with a deadline for the handshake,
//! for each request's headers and body and for the connection as a whole, a cap on open
//! connections ([`Limits`]), and a body limit above the largest review the API server sends.

use crate::certs::Resolver;
use crate::review::ClusterSource;
use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionResponse, AdmissionReview};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// The path the API server posts NicClusterPolicy reviews to.
pub const POLICY_PATH: &str = "/validate-mellanox-com-v1alpha1-nicclusterpolicy";

/// How long clients may take, and how many may be connected at once.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The TLS handshake.
    pub handshake: Duration,
    /// Each request's headers, counted from the connection's start or its previous response.
    pub headers: Duration,
    /// Each request's body.
    pub body: Duration,
    /// A connection as a whole (the API server opens a new one after).
    pub connection: Duration,
    /// Connections served at once; more are closed at once.
    pub connections: usize,
    /// Bytes of a request body: an UPDATE review carries the object and the old one, each up
    /// to the API server's 3 MiB request limit.
    pub body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake: Duration::from_secs(5),
            headers: Duration::from_secs(5),
            body: Duration::from_secs(10),
            connection: Duration::from_secs(60),
            connections: 256,
            body_bytes: 7 * 1024 * 1024,
        }
    }
}

/// The path the API server posts NicNodePolicy reviews to.
pub const NODE_POLICY_PATH: &str = "/validate-mellanox-com-v1alpha1-nicnodepolicy";

/// The routes, with `limits` on request bodies, judging in the cluster `cluster` knows.
pub fn router(limits: Limits, cluster: Arc<dyn ClusterSource>) -> Router {
    let (for_nodes, for_policy) = (cluster.clone(), cluster);
    Router::new()
        .route(POLICY_PATH, post(move |request: Request| review(request, limits, for_policy.clone())))
        .route(NODE_POLICY_PATH, post(move |request: Request| review(request, limits, for_nodes.clone())))
        .route("/healthz", get(|| async { "ok" }))
}

async fn review(request: Request, limits: Limits, cluster: Arc<dyn ClusterSource>) -> Response {
    let body =
        match tokio::time::timeout(limits.body, axum::body::to_bytes(request.into_body(), limits.body_bytes)).await {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => {
                let message = format!("the review could not be read (at most {} bytes): {e}", limits.body_bytes);
                return (StatusCode::PAYLOAD_TOO_LARGE, message).into_response();
            }
            Err(_) => return (StatusCode::REQUEST_TIMEOUT, "the review's body came too slowly").into_response(),
        };
    let answer = match serde_json::from_slice::<AdmissionReview<DynamicObject>>(&body) {
        Ok(review) => crate::review::answer_in(review, &cluster.cluster()),
        Err(e) => AdmissionResponse::invalid(format!("not an AdmissionReview: {e}")).into_review(),
    };
    match serde_json::to_string(&answer) {
        Ok(json) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The TLS side: the certificates of `resolver`, HTTP/1.1.
pub fn acceptor(resolver: Arc<Resolver>) -> TlsAcceptor {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|builder| builder.with_no_client_auth().with_cert_resolver(resolver))
        .expect("the ring provider supports the default protocol versions");
    TlsAcceptor::from(Arc::new(config))
}

/// The open connections: a permit each, out of [`Limits::connections`].
#[derive(Clone)]
pub struct Connections {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl Connections {
    /// Room for `limit` connections.
    pub fn new(limit: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(limit)), limit }
    }

    /// How many are open now.
    pub fn open(&self) -> usize {
        self.limit - self.permits.available_permits()
    }
}

/// Serves `tcp` until `shutdown` completes, each connection in a task of its own within `limits`,
/// judging in the cluster `cluster` knows.
pub async fn serve(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    limits: Limits,
    connections: Connections,
    cluster: Arc<dyn ClusterSource>,
    shutdown: impl Future<Output = ()>,
) {
    let app = router(limits, cluster);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            () = &mut shutdown => return,
            accepted = tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.permits.clone().try_acquire_owned() else {
            tracing::warn!(%addr, limit = limits.connections, "too many open connections; closing this one");
            continue;
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(limits.handshake, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%addr, "TLS handshake timed out"),
            };
            let service = TowerToHyperService::new(app);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.headers)
                .serve_connection(TokioIo::new(tls), service);
            match tokio::time::timeout(limits.connection, connection).await {
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "connection ended"),
                Err(_) => tracing::debug!(%addr, "connection closed after its lifetime"),
                Ok(Ok(())) => {}
            }
        });
    }
}
