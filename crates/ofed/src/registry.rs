//! Tags of driver image repositories, listed by their registries with the OCI distribution API
//! (`GET /v2/<name>/tags/list`, following `Link` pagination; anonymous, basic or bearer-token
//! auth with the credentials of the policy's pull secrets) in the background and cached per
//! repository and pull secrets: a reconcile never waits for a registry. A new answer wakes the
//! controller.

use base64::Engine;
use bytes::Bytes;
use futures::channel::mpsc;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::Value;
use state_core::ImageTags;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one registry request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How often known repositories are listed again (new precompiled images appear).
pub const REFRESH: Duration = Duration::from_secs(30 * 60);
/// Most pages followed for one repository.
const MAX_PAGES: usize = 100;

/// A user name and password for a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

/// Where a repository lives: `nvcr.io/nvidia/mellanox/mofed` → (`https://nvcr.io`,
/// `nvidia/mellanox/mofed`); a first component without a dot or port is Docker Hub's.
pub fn locate(repository: &str) -> (String, String) {
    let (first, rest) = repository.split_once('/').unwrap_or(("", repository));
    let is_host = first.contains('.') || first.contains(':') || first == "localhost";
    if !is_host {
        let path =
            if rest.contains('/') || !first.is_empty() { repository.to_string() } else { format!("library/{rest}") };
        return ("https://registry-1.docker.io".to_string(), path);
    }
    let scheme = if first.starts_with("localhost") || first.starts_with("127.0.0.1") { "http" } else { "https" };
    (format!("{scheme}://{first}"), rest.to_string())
}

/// The credentials for `host` (e.g. `nvcr.io`) in a `kubernetes.io/dockerconfigjson` secret's
/// `.dockerconfigjson`.
pub fn credentials_for(docker_config: &[u8], host: &str) -> Option<Credentials> {
    let config: Value = serde_json::from_slice(docker_config).ok()?;
    let auths = config.get("auths")?.as_object()?;
    let entry = auths.iter().find(|(key, _)| {
        let key = key.trim_start_matches("https://").trim_start_matches("http://");
        key.split('/').next() == Some(host)
    })?;
    let entry = entry.1;
    if let (Some(username), Some(password)) = (entry["username"].as_str(), entry["password"].as_str()) {
        return Some(Credentials { username: username.into(), password: password.into() });
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(entry["auth"].as_str()?).ok()?;
    let (username, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(Credentials { username: username.into(), password: password.into() })
}

/// A registry client on the HTTP stack kube uses (rustls, the system's roots).
#[derive(Clone)]
pub struct Registry {
    http: HttpClient<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// A client trusting the system's certificate authorities.
    pub fn new() -> Self {
        let tls = rustls_config();
        let https =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build();
        Self { http: HttpClient::builder(TokioExecutor::new()).build(https) }
    }

    async fn get(
        &self,
        url: &str,
        authorization: Option<&str>,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes), String> {
        let mut request = Request::get(url).header(header::ACCEPT, "application/json");
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| format!("{url}: no answer within {REQUEST_TIMEOUT:?}"))?
            .map_err(|e| format!("{url}: {e}"))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| format!("{url}: {e}"))?.to_bytes();
        Ok((parts.status, parts.headers, body))
    }

    /// Every tag of `repository` (`registry/path/image`).
    pub async fn list_tags(
        &self,
        repository: &str,
        credentials: Option<&Credentials>,
    ) -> Result<BTreeSet<String>, String> {
        let (base, path) = locate(repository);
        let mut url = format!("{base}/v2/{path}/tags/list");
        let mut authorization: Option<String> = None;
        let mut tags = BTreeSet::new();
        for _ in 0..MAX_PAGES {
            let (mut status, mut headers, mut body) = self.get(&url, authorization.as_deref()).await?;
            if status == StatusCode::UNAUTHORIZED && authorization.is_none() {
                let challenge = headers.get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or_default();
                authorization = Some(self.authorize(challenge, credentials).await?);
                (status, headers, body) = self.get(&url, authorization.as_deref()).await?;
            }
            if !status.is_success() {
                return Err(format!("{repository}: the registry answered HTTP {status} to the tag list"));
            }
            let page: Value =
                serde_json::from_slice(&body).map_err(|e| format!("{repository}: invalid tag list: {e}"))?;
            tags.extend(page["tags"].as_array().into_iter().flatten().filter_map(Value::as_str).map(String::from));
            match next_page(&headers) {
                Some(next) if next.starts_with("http") => url = next,
                Some(next) => url = format!("{base}{next}"),
                None => return Ok(tags),
            }
        }
        Ok(tags)
    }

    /// The `Authorization` header answering `challenge` (`WWW-Authenticate`).
    async fn authorize(&self, challenge: &str, credentials: Option<&Credentials>) -> Result<String, String> {
        let basic = credentials.map(|c| {
            let raw = format!("{}:{}", c.username, c.password);
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
        });
        let Some(params) = challenge.strip_prefix("Bearer ") else {
            return basic.ok_or_else(|| "the registry requires credentials: add a pull secret".to_string());
        };
        let params = challenge_params(params);
        let realm = params.get("realm").ok_or("the registry's token challenge names no realm")?;
        let mut query = Vec::new();
        for key in ["service", "scope"] {
            if let Some(value) = params.get(key) {
                query.push(format!("{key}={}", value.replace(':', "%3A").replace('/', "%2F").replace(',', "%2C")));
            }
        }
        let url = if query.is_empty() { realm.clone() } else { format!("{realm}?{}", query.join("&")) };
        let (status, _, body) = self.get(&url, basic.as_deref()).await?;
        if !status.is_success() {
            return Err(format!("the registry's token service answered HTTP {status}"));
        }
        let token: Value = serde_json::from_slice(&body).map_err(|e| format!("invalid token answer: {e}"))?;
        let token =
            token["token"].as_str().or(token["access_token"].as_str()).ok_or("the token answer holds no token")?;
        Ok(format!("Bearer {token}"))
    }
}

fn rustls_config() -> rustls::ClientConfig {
    use hyper_rustls::ConfigBuilderExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    match builder.clone().with_native_roots() {
        Ok(with_roots) => with_roots.with_no_client_auth(),
        Err(e) => {
            tracing::warn!(error = %e, "no system certificate authorities; registries over HTTPS will fail");
            builder.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth()
        }
    }
}

/// `realm="https://auth",service="registry",scope="repository:x:pull"` as a map.
fn challenge_params(params: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = params.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => quoted.split_once('"').unwrap_or((quoted, "")),
            None => after.split_once(',').unwrap_or((after, "")),
        };
        out.insert(key, value.to_string());
        rest = remaining.trim_start_matches(',').trim();
    }
    out
}

/// The `rel="next"` target of a `Link` header.
fn next_page(headers: &http::HeaderMap) -> Option<String> {
    let link = headers.get(header::LINK)?.to_str().ok()?;
    link.split(',').find(|part| part.contains("rel=\"next\"")).and_then(|part| {
        let start = part.find('<')? + 1;
        let end = part.find('>')?;
        Some(part[start..end].to_string())
    })
}

/// What the cache wants listed: a repository, with the pull secrets to read credentials from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Wanted {
    repository: String,
    pull_secrets: Vec<String>,
}

/// Tag lists per repository, listed in the background.
#[derive(Clone)]
pub struct TagCache {
    registry: Registry,
    secrets: Option<Api<Secret>>,
    known: Arc<Mutex<BTreeMap<Wanted, ImageTags>>>,
    changed: mpsc::UnboundedSender<()>,
}

impl TagCache {
    /// A cache reading pull secrets through `secrets` (the operands' namespace); the receiver
    /// yields each time an answer arrives.
    pub fn new(registry: Registry, secrets: Option<Api<Secret>>) -> (Self, mpsc::UnboundedReceiver<()>) {
        let (changed, receiver) = mpsc::unbounded();
        (Self { registry, secrets, known: Arc::default(), changed }, receiver)
    }

    /// What is known of `repository` listed with `pull_secrets`: the first call starts listing
    /// it in the background (and `Pending` is returned until it is done).
    pub fn tags(&self, repository: &str, pull_secrets: &[String]) -> ImageTags {
        let wanted = Wanted { repository: repository.to_string(), pull_secrets: pull_secrets.to_vec() };
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tags) = known.get(&wanted) {
            return tags.clone();
        }
        // Only what the policy wants now is kept: a changed spec forgets the old repository.
        known.retain(|w, _| w.repository == wanted.repository && w.pull_secrets == wanted.pull_secrets);
        known.insert(wanted.clone(), ImageTags::Pending);
        drop(known);
        let cache = self.clone();
        tokio::spawn(async move { cache.list(wanted).await });
        ImageTags::Pending
    }

    async fn list(&self, wanted: Wanted) {
        let (base, _) = locate(&wanted.repository);
        let host = base.split("://").nth(1).unwrap_or_default().to_string();
        let credentials = self.credentials(&wanted.pull_secrets, &host).await;
        let tags = match credentials {
            Ok(credentials) => match self.registry.list_tags(&wanted.repository, credentials.as_ref()).await {
                Ok(tags) => {
                    tracing::info!(repository = %wanted.repository, tags = tags.len(), "listed image tags");
                    ImageTags::Listed(tags)
                }
                Err(e) => {
                    tracing::warn!(repository = %wanted.repository, error = %e, "could not list image tags");
                    ImageTags::Failed(e)
                }
            },
            Err(e) => ImageTags::Failed(e),
        };
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = known.get_mut(&wanted) {
            *entry = tags;
            let _ = self.changed.unbounded_send(());
        }
    }

    async fn credentials(&self, pull_secrets: &[String], host: &str) -> Result<Option<Credentials>, String> {
        let Some(secrets) = &self.secrets else { return Ok(None) };
        for name in pull_secrets {
            match secrets.get_opt(name).await {
                Ok(Some(secret)) => {
                    let config = secret.data.as_ref().and_then(|d| d.get(".dockerconfigjson"));
                    if let Some(found) = config.and_then(|c| credentials_for(&c.0, host)) {
                        return Ok(Some(found));
                    }
                }
                Ok(None) => tracing::warn!(secret = %name, "pull secret not found; skipped"),
                Err(e) => return Err(format!("reading pull secret {name}: {}", state_core::apply::describe(&e))),
            }
        }
        Ok(None)
    }

    /// Lists every known repository again every [`REFRESH`], until the process ends.
    pub async fn refresh_forever(self) {
        loop {
            tokio::time::sleep(REFRESH).await;
            let wanted: Vec<Wanted> = self.known.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
            for wanted in wanted {
                self.list(wanted).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_are_located_like_container_runtimes_do() {
        assert_eq!(
            locate("nvcr.io/nvidia/mellanox/doca-driver"),
            ("https://nvcr.io".into(), "nvidia/mellanox/doca-driver".into())
        );
        assert_eq!(locate("localhost:5000/team/driver"), ("http://localhost:5000".into(), "team/driver".into()));
        assert_eq!(locate("mellanox/mofed"), ("https://registry-1.docker.io".into(), "mellanox/mofed".into()));
    }

    #[test]
    fn credentials_come_from_username_and_password_or_auth() {
        let config = br#"{"auths": {"nvcr.io": {"username": "$oauthtoken", "password": "key"},
                                    "https://other.example": {"auth": "dTpw"}}}"#;
        assert_eq!(
            credentials_for(config, "nvcr.io"),
            Some(Credentials { username: "$oauthtoken".into(), password: "key".into() })
        );
        assert_eq!(
            credentials_for(config, "other.example"),
            Some(Credentials { username: "u".into(), password: "p".into() })
        );
        assert_eq!(credentials_for(config, "docker.io"), None);
    }

    #[test]
    fn token_challenges_are_parsed() {
        let params = challenge_params(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        );
        assert_eq!(params["realm"], "https://auth.example/token");
        assert_eq!(params["scope"], "repository:a/b:pull");
    }
}
