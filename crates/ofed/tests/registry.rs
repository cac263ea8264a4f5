//! The registry client against a local registry that speaks the OCI tags API: a bearer-token
//! challenge answered with the pull secret's credentials, and pagination through `Link`.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::StreamExt;
use ofed::registry::{Credentials, Registry, TagCache};
use serde_json::json;
use state_core::ImageTags;

const BASIC: &str = "Basic dXNlcjpwYXNz"; // user:pass

async fn registry() -> String {
    async fn tags(State(base): State<String>, headers: HeaderMap, uri: Uri) -> impl IntoResponse {
        if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some("Bearer t0k") {
            let challenge = format!(r#"Bearer realm="{base}/token",service="test",scope="repository:team/mofed:pull""#);
            return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge)], String::new()).into_response();
        }
        match uri.query().filter(|q| q.contains("last=")) {
            None => {
                let link = r#"</v2/team/mofed/tags/list?last=b&n=2>; rel="next""#;
                ([(header::LINK, link)], json!({"name": "team/mofed", "tags": ["a", "b"]}).to_string()).into_response()
            }
            Some(_) => json!({"name": "team/mofed", "tags": ["c"]}).to_string().into_response(),
        }
    }
    async fn token(headers: HeaderMap, uri: Uri) -> impl IntoResponse {
        let authorized = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(BASIC);
        let scoped = uri.query().is_some_and(|q| q.contains("scope=repository%3Ateam%2Fmofed%3Apull"));
        if !authorized || !scoped {
            return (StatusCode::UNAUTHORIZED, String::new()).into_response();
        }
        json!({"token": "t0k"}).to_string().into_response()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app =
        Router::new().route("/v2/team/mofed/tags/list", get(tags)).route("/token", get(token)).with_state(base.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base.trim_start_matches("http://").to_string()
}

fn credentials() -> Credentials {
    Credentials { username: "user".into(), password: "pass".into() }
}

#[tokio::test]
async fn tags_are_listed_through_a_token_challenge_and_every_page() {
    let host = registry().await;
    let tags = Registry::new().list_tags(&format!("{host}/team/mofed"), Some(&credentials())).await.unwrap();
    assert_eq!(tags.into_iter().collect::<Vec<_>>(), ["a", "b", "c"]);
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_a_clear_failure() {
    let host = registry().await;
    let err = Registry::new().list_tags(&format!("{host}/team/mofed"), None).await.unwrap_err();
    assert_eq!(err, "the registry's token service answered HTTP 401 Unauthorized");
    let err = Registry::new().list_tags(&format!("{host}/team/other"), None).await.unwrap_err();
    assert!(err.contains("HTTP 404"), "{err}");
}

#[tokio::test]
async fn the_cache_lists_in_the_background_and_says_when_it_knows() {
    let host = registry().await;
    let (cache, mut changed) = TagCache::new(Registry::new(), None);
    let repository = format!("{host}/team/mofed");
    assert_eq!(cache.tags(&repository, &[]), ImageTags::Pending);
    changed.next().await.expect("an answer arrives");
    // Without credentials this registry refuses: the failure is kept, with its reason.
    assert!(matches!(cache.tags(&repository, &[]), ImageTags::Failed(e) if e.contains("401")));
}
