//! Kubernetes Events (`events.k8s.io/v1`) that each say what happened. An exact repeat (same
//! object, type, reason and note) within a few minutes becomes a series on the first Event
//! (count and last seen, as `kubectl describe` shows `(x3)`); anything else is an Event of its
//! own. kube's own recorder also merges Events whose notes differ and keeps the first note, so
//! `unknown -> notReady` went on being shown, with a fresh "last seen", while the policy was
//! ready.

pub use kube::runtime::events::{Event, EventType, Reporter};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;

/// How long an Event takes exact repeats as its series.
const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// What makes two Events the same: the object, type, reason and note.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    regarding: (Option<String>, Option<String>, Option<String>, Option<String>),
    warning: bool,
    reason: String,
    note: Option<String>,
}

/// A published Event: its name and namespace, its count, when it was last seen.
#[derive(Clone, Debug)]
struct Published {
    name: String,
    namespace: String,
    count: i32,
    last: Timestamp,
}

/// Publishes Events for one reporting controller.
pub struct Recorder {
    client: Client,
    reporter: Reporter,
    published: Mutex<HashMap<Key, Published>>,
}

impl Recorder {
    /// A recorder writing as `reporter`.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self { client, reporter, published: Mutex::new(HashMap::new()) }
    }

    /// Records `event` about `regarding` (in its namespace, `default` for cluster-scoped objects):
    /// a new Event, or the next of its series when it repeats the last one exactly.
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = Key {
            regarding: (
                regarding.kind.clone(),
                regarding.namespace.clone(),
                regarding.name.clone(),
                regarding.uid.clone(),
            ),
            warning: matches!(event.type_, EventType::Warning),
            reason: event.reason.clone(),
            note: event.note.clone(),
        };
        let repeat = {
            let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
            published.retain(|_, p| p.last + SERIES_WINDOW > now);
            published.get(&key).cloned()
        };
        let written = match repeat {
            Some(previous) => {
                let count = previous.count + 1;
                let series = json!({"series": {"count": count, "lastObservedTime": MicroTime(now)}});
                Api::<K8sEvent>::namespaced(self.client.clone(), &previous.namespace)
                    .patch(&previous.name, &PatchParams::default(), &Patch::Merge(&series))
                    .await?;
                Published { count, last: now, ..previous }
            }
            None => {
                let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".to_string());
                let new = self.event(event, regarding, &namespace, now);
                let name = new.metadata.name.clone().unwrap_or_default();
                Api::<K8sEvent>::namespaced(self.client.clone(), &namespace)
                    .create(&PostParams::default(), &new)
                    .await?;
                Published { name, namespace, count: 1, last: now }
            }
        };
        self.published.lock().unwrap_or_else(|e| e.into_inner()).insert(key, written);
        Ok(())
    }

    fn event(&self, event: &Event, regarding: &ObjectReference, namespace: &str, now: Timestamp) -> K8sEvent {
        let object = regarding.name.as_deref().unwrap_or(&self.reporter.controller);
        K8sEvent {
            metadata: ObjectMeta {
                name: Some(format!("{object}.{:x}", now.as_nanosecond())),
                namespace: Some(namespace.to_string()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter.instance.clone().unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            type_: Some(if matches!(event.type_, EventType::Warning) { "Warning" } else { "Normal" }.to_string()),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::mock_client;

    fn policy() -> ObjectReference {
        ObjectReference {
            api_version: Some("mellanox.com/v1alpha1".into()),
            kind: Some("NicClusterPolicy".into()),
            name: Some("nic-cluster-policy".into()),
            uid: Some("u1".into()),
            ..Default::default()
        }
    }

    fn normal(reason: &str, note: &str) -> Event {
        Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(note.into()),
            action: "Aggregate".into(),
            secondary: None,
        }
    }

    #[tokio::test]
    async fn every_different_note_is_an_event_of_its_own_and_an_exact_repeat_a_series() {
        let (client, mut server) = mock_client();
        let recorder = Recorder::new(client, Reporter { controller: "aggregator".into(), instance: None });
        let task = tokio::spawn(async move {
            for (reason, note) in [
                ("StateNotReady", "unknown -> notReady: waiting"),
                ("StateNotReady", "ready -> notReady: a pod crashed"),
                ("StateNotReady", "ready -> notReady: a pod crashed"),
            ] {
                recorder.publish(&normal(reason, note), &policy()).await.unwrap();
            }
        });
        let events = "/apis/events.k8s.io/v1/namespaces/default/events";
        let first = server.expect("POST", events, 201, json!({})).await;
        assert_eq!(first.body["note"], "unknown -> notReady: waiting");
        let second = server.expect("POST", events, 201, json!({})).await;
        assert_eq!(second.body["note"], "ready -> notReady: a pod crashed", "not merged into the first");
        let name = second.body["metadata"]["name"].as_str().unwrap().to_string();
        let repeat = server.expect("PATCH", &format!("{events}/{name}"), 200, json!({})).await;
        assert_eq!(repeat.body["series"]["count"], 2);
        server.expect_no_more().await;
        task.await.unwrap();
    }
}
