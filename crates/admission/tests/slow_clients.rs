//! Clients that connect and say nothing, send half their headers, or trickle their body never
//! stall the webhook: a valid review beside them is answered within a second, they are
//! closed at their deadlines, and every connection they held is given back.

use admission::certs::{self, Plan, Resolver};
use admission::server::{self, Connections, Limits, POLICY_PATH};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const IDLE: usize = 20;
const SLOW_HEADERS: usize = 20;

fn limits() -> Limits {
    Limits {
        handshake: Duration::from_secs(2),
        headers: Duration::from_secs(2),
        body: Duration::from_secs(2),
        connection: Duration::from_secs(30),
        connections: 128,
        ..Limits::default()
    }
}

/// A webhook on a free loopback port, and a TLS client that trusts its CA.
async fn start() -> (SocketAddr, TlsConnector, Connections) {
    let plan = Plan { names: vec!["localhost".into()], validity: 3600 };
    let now = jiff::Timestamp::now().as_second();
    let (ca_cert, ca_key, _) = certs::new_ca(&plan, now).expect("a CA");
    let (cert, key, _) = certs::new_serving(&plan, &ca_cert, &ca_key, now).expect("a serving certificate");
    let resolver = Resolver::new(certs::certified_key(cert.as_bytes(), key.as_bytes()).expect("usable"));
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr = tcp.local_addr().expect("bound");
    let connections = Connections::new(limits().connections);
    tokio::spawn(server::serve(tcp, server::acceptor(resolver), limits(), connections.clone(), std::future::pending()));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_cert.as_bytes()).expect("PEM")).expect("a root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (addr, TlsConnector::from(Arc::new(config)), connections)
}

async fn tls(addr: SocketAddr, connector: &TlsConnector) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connects");
    connector.connect(ServerName::try_from("localhost").expect("a name"), tcp).await.expect("a TLS session")
}

/// Posts `body` to the policy path; the status code and the response.
async fn post(addr: SocketAddr, connector: &TlsConnector, body: &[u8]) -> (u16, String) {
    let mut stream = tls(addr, connector).await;
    let head = format!(
        "POST {POLICY_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("sends");
    // The server may answer (413) and close before the whole body is sent.
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).to_string();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text)
}

fn review(annotation_bytes: usize) -> Vec<u8> {
    let policy = json!({"apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy",
        "metadata": {"name": "nic-cluster-policy", "annotations": {"big": "x".repeat(annotation_bytes)}}, "spec": {}});
    serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u1", "kind": {"group": "mellanox.com", "version": "v1alpha1", "kind": "NicClusterPolicy"},
                    "resource": {"group": "mellanox.com", "version": "v1alpha1", "resource": "nicclusterpolicies"},
                    "operation": "UPDATE", "userInfo": {}, "object": policy, "oldObject": policy}}))
    .expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_slow_header_and_slow_body_clients_do_not_stall_a_valid_review_and_are_closed() {
    let (addr, connector, connections) = start().await;
    // Connections that never start TLS, ones that send half their headers, one that trickles.
    let mut idle = Vec::new();
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(addr).await.expect("connects"));
    }
    let mut slow = Vec::new();
    for _ in 0..SLOW_HEADERS {
        let mut stream = tls(addr, &connector).await;
        stream.write_all(format!("POST {POLICY_PATH} HTTP/1.1\r\nHost: loc").as_bytes()).await.expect("sends");
        slow.push(stream);
    }
    let mut trickle = tls(addr, &connector).await;
    let head = format!("POST {POLICY_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n{{\"api");
    trickle.write_all(head.as_bytes()).await.expect("sends");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(connections.open() >= IDLE + SLOW_HEADERS, "{} open", connections.open());

    let started = Instant::now();
    let (code, text) = post(addr, &connector, &review(16)).await;
    let took = started.elapsed();
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("\"allowed\""), "{text}");
    assert!(took < Duration::from_secs(1), "a valid review beside stalled clients took {took:?}");

    // Their deadlines pass: every one is closed and its connection given back.
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), trickle.read_to_end(&mut response)).await;
    assert!(read.is_ok(), "the slow body was not cut off");
    assert!(String::from_utf8_lossy(&response).contains(" 408 "), "{}", String::from_utf8_lossy(&response));
    for mut stream in slow {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "a slow-header client was not closed");
    }
    for mut stream in idle {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "an idle connection was not closed");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while connections.open() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(connections.open(), 0, "connections still held after their clients were closed");
}

#[tokio::test]
async fn an_update_review_of_a_large_policy_is_answered_and_a_larger_one_refused() {
    let (addr, connector, _) = start().await;
    // Object and old object of 1.5 MiB each: what the API server may send for a large policy.
    let (code, text) = post(addr, &connector, &review(1536 * 1024)).await;
    assert_eq!(code, 200, "{}", &text[..text.len().min(300)]);
    let (code, _) = post(addr, &connector, &review(4 * 1024 * 1024)).await;
    assert_eq!(code, 413, "over the limit");
}
