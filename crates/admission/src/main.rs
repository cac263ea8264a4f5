//! `admission-webhook`: the validating admission webhook for NicClusterPolicy, over HTTPS.

use admission::certs::{self, Plan, Resolver, SelfManaged};
use admission::server::{self, Connections, Limits};
use anyhow::Context;
use clap::Parser;
use state_core::run::{LogFormat, init_tracing, shutdown_signal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Flags; each has an environment fallback.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    /// Address to serve HTTPS on.
    #[arg(long, env = "WEBHOOK_LISTEN", default_value = "0.0.0.0:9443")]
    listen: SocketAddr,
    /// Directory with tls.crt and tls.key (a mounted Secret), re-read when they change.
    #[arg(long, env = "WEBHOOK_CERT_DIR", default_value = "/tmp/k8s-webhook-server/serving-certs")]
    cert_dir: PathBuf,
    /// Manage the certificates here instead: own CA, kept in this Secret of --namespace, and
    /// put into the caBundle of --webhook-config.
    #[arg(long, env = "WEBHOOK_SELF_MANAGED_SECRET")]
    self_managed_secret: Option<String>,
    /// Namespace of the webhook (its Service and Secret).
    #[arg(long, env = "OPERANDS_NAMESPACE", default_value = "nvidia-network-operator")]
    namespace: String,
    /// Name of the webhook's Service (the certificate is made for its DNS names).
    #[arg(long, env = "WEBHOOK_SERVICE", default_value = "network-operator-admission")]
    service: String,
    /// Name of the ValidatingWebhookConfiguration whose caBundle is kept current.
    #[arg(long, env = "WEBHOOK_CONFIG_NAME", default_value = "network-operator-admission")]
    webhook_config: String,
    /// More DNS names or IP addresses for the certificate (comma-separated).
    #[arg(long, env = "WEBHOOK_EXTRA_NAMES", value_delimiter = ',')]
    extra_names: Vec<String>,
    /// Lifetime of a self-managed serving certificate in seconds (renewed with a third left;
    /// the CA lives ten times as long).
    #[arg(long, env = "WEBHOOK_CERT_VALIDITY_SECONDS", default_value_t = 365 * 24 * 3600)]
    cert_validity_seconds: i64,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
}

fn now() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    init_tracing(flags.log_format);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tcp = tokio::net::TcpListener::bind(flags.listen).await.with_context(|| format!("binding {}", flags.listen))?;
    let resolver = match &flags.self_managed_secret {
        Some(secret) => {
            let service = &flags.service;
            let namespace = &flags.namespace;
            let mut names = vec![
                format!("{service}.{namespace}.svc"),
                format!("{service}.{namespace}.svc.cluster.local"),
                format!("{service}.{namespace}"),
                service.clone(),
            ];
            names.extend(flags.extra_names.iter().filter(|n| !n.is_empty()).cloned());
            let client = kube::Client::try_default().await.context("building the Kubernetes client")?;
            let manager = SelfManaged {
                client,
                namespace: namespace.clone(),
                secret: secret.clone(),
                webhook_config: flags.webhook_config.clone(),
                plan: Plan { names, validity: flags.cert_validity_seconds.max(10) },
            };
            let (material, _) = manager.ensure(now()).await.context("preparing the self-managed certificates")?;
            let resolver = Resolver::new(certs::certified_key(material.cert.as_bytes(), material.key.as_bytes())?);
            tokio::spawn(keep_self_managed(manager, material, resolver.clone()));
            resolver
        }
        None => {
            let (cert, key) = (flags.cert_dir.join("tls.crt"), flags.cert_dir.join("tls.key"));
            let loaded = load_files(&cert, &key).with_context(|| format!("reading {}", flags.cert_dir.display()))?;
            let resolver = Resolver::new(loaded);
            tokio::spawn(reload_files(cert, key, resolver.clone()));
            resolver
        }
    };
    // The other policies and the nodes, for the rules that compare a policy with them.
    let cluster: std::sync::Arc<dyn admission::review::ClusterSource> = match kube::Client::try_default().await {
        Ok(client) => admission::watched::Watched::start(&client),
        Err(e) => {
            tracing::warn!(error = %e, "no Kubernetes client: policies are judged without the other policies and the nodes");
            std::sync::Arc::new(admission::review::Cluster::default())
        }
    };
    tracing::info!(listen = %flags.listen, "serving admission reviews");
    let limits = Limits::default();
    let connections = Connections::new(limits.connections);
    server::serve(tcp, server::acceptor(resolver), limits, connections, cluster, shutdown_signal()).await;
    Ok(())
}

fn load_files(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<rustls::sign::CertifiedKey> {
    let cert_pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let key_pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
    Ok(certs::certified_key(&cert_pem, &key_pem)?)
}

/// Re-reads the certificate files every 30 s when they changed (a mounted Secret is updated in
/// place when cert-manager renews it); a bad update is logged and the old one kept.
async fn reload_files(cert: PathBuf, key: PathBuf, resolver: Arc<Resolver>) {
    let stamp = |path: &PathBuf| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut seen = (stamp(&cert), stamp(&key));
    loop {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let current = (stamp(&cert), stamp(&key));
        if current == seen {
            continue;
        }
        match load_files(&cert, &key) {
            Ok(loaded) => {
                resolver.set(loaded);
                seen = current;
                tracing::info!("serving the renewed certificate");
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "the changed certificate files are unusable; keeping the old ones")
            }
        }
    }
}

/// Keeps the self-managed certificates current: publishes the CA, then checks every tenth of
/// a lifetime (at most hourly) and renews when due.
async fn keep_self_managed(manager: SelfManaged, mut material: certs::Material, resolver: Arc<Resolver>) {
    let every = Duration::from_secs((manager.plan.validity / 10).clamp(1, 3600) as u64);
    let mut published = false;
    loop {
        if !published {
            match manager.publish_ca(&material.ca_cert).await {
                Ok(()) => published = true,
                Err(e) => tracing::warn!(error = %e, "publishing the CA failed; retrying"),
            }
        }
        tokio::time::sleep(if published { every } else { Duration::from_secs(2) }).await;
        match manager.ensure(now()).await {
            Ok((renewed, true)) => match certs::certified_key(renewed.cert.as_bytes(), renewed.key.as_bytes()) {
                Ok(key) => {
                    published &= renewed.ca_cert == material.ca_cert;
                    resolver.set(key);
                    material = renewed;
                    tracing::info!(not_after = material.not_after, "serving a renewed certificate");
                }
                Err(e) => tracing::warn!(error = %e, "the renewed certificate is unusable"),
            },
            Ok((_, false)) => {}
            Err(e) => tracing::warn!(error = %e, "checking the certificates failed; retrying"),
        }
    }
}
