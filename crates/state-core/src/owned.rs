//! The live copies of the objects a state owns, kept by watches on the state label.
//!
//! Reconcile compares desired objects against these copies (no GET per object) and prunes the
//! ones that are no longer rendered.

use crate::STATE_LABEL;
use crate::objects::{Kind, ObjectKey};
use futures::{Stream, StreamExt};
use kube::core::{DynamicObject, TypeMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use std::sync::Arc;
use std::time::Duration;

/// Live copies of the state's objects, one store per kind.
#[derive(Clone)]
pub struct OwnedObjects {
    stores: Vec<(Kind, Store<DynamicObject>)>,
}

impl OwnedObjects {
    /// Watches every kind of `kinds` carrying `nvidia.network-operator.state=<state>`
    /// (namespaced kinds in `namespace` only, or in every namespace when it is `None`). The
    /// returned stream must be polled (it drives the stores); it yields each created, changed or
    /// deleted object, and `None` when a full list arrived.
    pub fn watch(
        client: &Client,
        kinds: Vec<Kind>,
        state: &str,
        namespace: Option<&str>,
    ) -> (Self, impl Stream<Item = Option<DynamicObject>> + Send + 'static) {
        let config = watcher::Config::default().labels(&format!("{STATE_LABEL}={state}"));
        let mut stores = Vec::new();
        let mut streams = Vec::new();
        for kind in kinds {
            let api: Api<DynamicObject> = match (kind.namespaced, namespace) {
                (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &kind.resource),
                _ => Api::all_with(client.clone(), &kind.resource),
            };
            let writer = reflector::store::Writer::new(kind.resource.clone());
            // Objects of a list (the first one, or a re-list after 410 Gone) carry no apiVersion
            // and kind: key them by the kind of the watch that delivered them, so they match
            // what was rendered and are neither re-applied nor pruned.
            let types = TypeMeta { api_version: kind.resource.api_version.clone(), kind: kind.resource.kind.clone() };
            let optional = kind.optional;
            stores.push((kind, writer.as_reader()));
            let typed = watcher(api, config.clone()).modify(move |object: &mut DynamicObject| {
                object.types = Some(types.clone());
            });
            let stream = backoff_on_failure(reflector::reflector(writer, typed))
                .filter_map(move |event| async move {
                    match event {
                        Ok(watcher::Event::Apply(object) | watcher::Event::Delete(object)) => Some(Some(object)),
                        Ok(watcher::Event::InitDone) => Some(None),
                        Ok(_) => None,
                        // An optional kind's API may simply not be installed (yet): no alarm.
                        Err(e) if optional => {
                            tracing::debug!(error = %crate::apply::describe_watch(&e), "watch of owned objects of an optional API failed; retrying");
                            None
                        }
                        Err(e) => {
                            tracing::warn!(error = %crate::apply::describe_watch(&e), "watch of owned objects failed; retrying");
                            None
                        }
                    }
                })
                .boxed();
            streams.push(stream);
        }
        (Self { stores }, futures::stream::select_all(streams))
    }

    /// Stores filled from fixed objects (for tests): every object is "live".
    #[cfg(feature = "testing")]
    pub fn from_objects(kinds: Vec<Kind>, objects: Vec<DynamicObject>) -> Self {
        let stores = kinds
            .into_iter()
            .map(|kind| {
                let mut writer = reflector::store::Writer::new(kind.resource.clone());
                let mine: Vec<DynamicObject> = objects.iter().filter(|o| kind.matches(o)).cloned().collect();
                writer.apply_watcher_event(&watcher::Event::Init);
                for object in mine {
                    writer.apply_watcher_event(&watcher::Event::InitApply(object));
                }
                writer.apply_watcher_event(&watcher::Event::InitDone);
                (kind, writer.as_reader())
            })
            .collect();
        Self { stores }
    }

    /// Waits until the store of every required kind holds its first full list (the watch of
    /// an [optional](Kind::optional) kind whose API is not installed never lists).
    pub async fn synced(&self) {
        self.synced_where(|kind| !kind.optional).await
    }

    /// Waits until the store of every kind `which` selects holds its first full list.
    pub async fn synced_where(&self, which: impl Fn(&Kind) -> bool) {
        let stores = self.stores.iter().filter(|(kind, _)| which(kind));
        futures::future::join_all(stores.map(|(_, s)| s.wait_until_ready())).await;
    }

    /// Waits (at most `timeout`) until every store holds its first full list.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.synced()).await.is_ok()
    }

    /// The live copy of the object with this identity, if any.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<DynamicObject>> {
        let (kind, store) = self
            .stores
            .iter()
            .find(|(kind, _)| kind.resource.api_version == key.api_version && kind.resource.kind == key.kind)?;
        let mut reference = ObjectRef::new_with(&key.name, kind.resource.clone());
        if let Some(ns) = &key.namespace {
            reference = reference.within(ns);
        }
        store.get(&reference)
    }

    /// Every live object, with its kind.
    pub fn all(&self) -> Vec<(Kind, Arc<DynamicObject>)> {
        let mut all: Vec<(Kind, Arc<DynamicObject>)> = self
            .stores
            .iter()
            .flat_map(|(kind, store)| store.state().into_iter().map(move |o| (kind.clone(), o)))
            .collect();
        all.sort_by_key(|(_, o)| ObjectKey::of(o));
        all
    }
}

/// Retries a failing watch with growing delays (kube's default: 0.8 s doubling to 30 s).
/// kube's backoff starts over on every item, and a watcher yields `Init` before each list, so
/// a list that keeps failing (an optional API that is not installed, such as cert-manager's for
/// nv-ipam; a 403) was retried about once a second, forever: 48 lists a minute per kind in the
/// benchmark's steady state. `Init` is dropped before the backoff (the reflector before it has
/// seen it), so only a listed or watched object starts the delays over.
pub fn backoff_on_failure<K, S>(stream: S) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Send,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    stream.filter(|event| std::future::ready(!matches!(event, Ok(watcher::Event::Init)))).default_backoff()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::client::Body;
    use serde_json::json;

    /// The first list of the API server, whose items (unlike watch events) carry no apiVersion
    /// or kind, and then a watch that reports nothing.
    fn serve_one_list(mut handle: tower_test::mock::Handle<http::Request<Body>, http::Response<Body>>) {
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let watching = request.uri().query().is_some_and(|q| q.contains("watch=true"));
                let body = if watching {
                    Body::empty()
                } else {
                    let list = json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"resourceVersion": "7"},
                        "items": [{"metadata": {"name": "rdma-devices", "namespace": "ns", "resourceVersion": "5",
                                   "labels": {"nvidia.network-operator.state": "state-X"}}, "data": {"k": "v"}}]});
                    Body::from(serde_json::to_vec(&list).unwrap())
                };
                if watching {
                    // Hold the watch open: nothing changes.
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                send.send_response(http::Response::builder().status(200).body(body).unwrap());
            }
        });
    }

    #[tokio::test]
    async fn objects_of_the_initial_list_are_keyed_by_the_kind_of_their_watch() {
        let (service, handle) = tower_test::mock::pair::<http::Request<Body>, http::Response<Body>>();
        serve_one_list(handle);
        let client = Client::new(service, "ns");
        let (owned, changes) =
            OwnedObjects::watch(&client, vec![Kind::namespaced::<ConfigMap>()], "state-X", Some("ns"));
        tokio::spawn(changes.for_each(|_| async {}));
        assert!(owned.wait_ready(Duration::from_secs(5)).await, "the list fills the store");

        let rendered = crate::objects::config_map("rdma-devices", "ns", "k", "v");
        let live = owned.get(&ObjectKey::of(&rendered)).expect("the listed object is found under the rendered key");
        assert_eq!(live.types.as_ref().map(|t| t.kind.as_str()), Some("ConfigMap"));
        let keys: Vec<ObjectKey> = owned.all().iter().map(|(_, o)| ObjectKey::of(o)).collect();
        assert_eq!(keys, [ObjectKey::of(&rendered)], "prune would compare these keys with the rendered ones");
    }

    #[tokio::test(start_paused = true)]
    async fn a_list_that_keeps_failing_is_retried_less_and_less_often() {
        // A watcher whose list always fails: `Init`, then the error, each time it is polled.
        let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = attempts.clone();
        let failing = futures::stream::iter(0..)
            .flat_map(move |_| {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                futures::stream::iter([Ok(watcher::Event::<ConfigMap>::Init), Err(watcher::Error::NoResourceVersion)])
            })
            .boxed();
        let retried = backoff_on_failure(failing).for_each(|_| async {});
        let _ = tokio::time::timeout(Duration::from_secs(300), retried).await;
        // 0.8, 1.6, 3.2, ... capped at 30 s (with jitter): about 13 tries in 5 minutes, not 300.
        let tries = attempts.load(std::sync::atomic::Ordering::Relaxed);
        assert!(tries <= 30, "{tries} lists in 5 minutes");
    }
}
