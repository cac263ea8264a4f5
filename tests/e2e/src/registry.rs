//! A local image registry that answers the OCI tags API, so tests of the OFED state choose
//! precompiled images without reaching any real registry.

use axum::Router;
use axum::routing::get;
use serde_json::json;

/// Serves `GET /v2/<path>/tags/list` with `tags` on a free loopback port; returns `host:port`.
pub async fn serve(path: &str, tags: Vec<String>) -> String {
    serve_stoppable(path, tags).await.0
}

/// Like [`serve`], with a handle that stops the registry (an outage: connections are refused).
pub async fn serve_stoppable(path: &str, tags: Vec<String>) -> (String, tokio::task::AbortHandle) {
    let body = json!({"name": path, "tags": tags}).to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let host = listener.local_addr().expect("bound").to_string();
    // `/v2/` answers as a registry without authentication does: clients such as the original
    // operator's ping it before they list.
    let app = Router::new()
        .route("/v2/", get(|| async { "{}" }))
        .route(&format!("/v2/{path}/tags/list"), get(move || async move { body }));
    let task = tokio::spawn(async move { axum::serve(listener, app).await.expect("registry serves") });
    (host, task.abort_handle())
}
