//! The HTTPS server: `POST /validate-mellanox-com-v1alpha1-nicclusterpolicy` (the original's
//! path) answers AdmissionReviews, `GET /healthz` says it is alive; TLS through rustls with the
//! certificate of a [`Resolver`](crate::certs::Resolver).

use crate::certs::Resolver;
use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionResponse, AdmissionReview};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The path the API server posts NicClusterPolicy reviews to.
pub const POLICY_PATH: &str = "/validate-mellanox-com-v1alpha1-nicclusterpolicy";

/// The routes.
pub fn router() -> Router {
    Router::new().route(POLICY_PATH, post(review)).route("/healthz", get(|| async { "ok" }))
}

async fn review(body: Bytes) -> impl IntoResponse {
    let answer = match serde_json::from_slice::<AdmissionReview<DynamicObject>>(&body) {
        Ok(review) => crate::review::answer(review),
        Err(e) => AdmissionResponse::invalid(format!("not an AdmissionReview: {e}")).into_review(),
    };
    match serde_json::to_string(&answer) {
        Ok(json) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// A TCP listener that hands out connections after their TLS handshake (a client that does
/// not finish it within 5 s is dropped).
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl TlsListener {
    /// Listens on `tcp`, serving the certificates of `resolver`.
    pub fn new(tcp: TcpListener, resolver: Arc<Resolver>) -> Self {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map(|builder| builder.with_no_client_auth().with_cert_resolver(resolver))
            .expect("the ring provider supports the default protocol versions");
        Self { tcp, acceptor: TlsAcceptor::from(Arc::new(config)) }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.tcp.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match tokio::time::timeout(Duration::from_secs(5), self.acceptor.accept(stream)).await {
                Ok(Ok(tls)) => return (tls, addr),
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
