//! What the cluster showed and when, as the benchmark saw it through watches: the policy's
//! status, and whether every operand DaemonSet and Deployment has rolled out (every pod of its
//! current generation updated and available) with which images. The timings are read from it:
//! when an image first appeared in an operand (the operator's first write after a change), and
//! when the policy said `ready` with everything rolled out.

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use kube::api::ApiResource;
use kube::core::{DynamicObject, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The view after one watch event.
#[derive(Clone, Debug)]
struct Sample {
    at: Instant,
    state: String,
    generation: i64,
    /// The generation the policy's `Ready` condition is True for (ours write it; the original
    /// has no conditions).
    ready_generation: Option<i64>,
    rolled: bool,
    images: Arc<BTreeSet<String>>,
}

#[derive(Default)]
struct Workload {
    rolled: bool,
    images: Vec<String>,
}

#[derive(Default)]
struct State {
    policy: Option<Value>,
    workloads: BTreeMap<String, Workload>,
    samples: Vec<Sample>,
}

impl State {
    fn sample(&mut self) {
        let policy = self.policy.clone().unwrap_or(Value::Null);
        let status = &policy["status"];
        let generation = policy["metadata"]["generation"].as_i64().unwrap_or(0);
        let ready_generation = status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready" && c["status"] == "True")
            .and_then(|c| c["observedGeneration"].as_i64());
        let images = self.workloads.values().flat_map(|w| w.images.iter().cloned()).collect();
        self.samples.push(Sample {
            at: Instant::now(),
            state: status["state"].as_str().unwrap_or_default().to_string(),
            generation,
            ready_generation,
            rolled: !self.workloads.is_empty() && self.workloads.values().all(|w| w.rolled),
            images: Arc::new(images),
        });
    }
}

/// The timeline, filled by watches until dropped.
pub struct Timeline {
    state: Arc<Mutex<State>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Timeline {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn images(template: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>) -> Vec<String> {
    template
        .and_then(|t| t.spec.as_ref())
        .map(|s| s.containers.iter().filter_map(|c| c.image.clone()).collect())
        .unwrap_or_default()
}

impl Timeline {
    /// Starts watching the policy and the operands of `namespace`.
    pub fn start(client: &Client, namespace: &str) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let gvk = GroupVersionKind::gvk("mellanox.com", "v1alpha1", "NicClusterPolicy");
        let resource = ApiResource::from_gvk_with_plural(&gvk, "nicclusterpolicies");
        let policies: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let shared = state.clone();
        let policy_task = tokio::spawn(async move {
            let mut events = watcher(policies, watcher::Config::default()).applied_objects().boxed();
            while let Some(event) = events.next().await {
                let Ok(object) = event else { continue };
                let mut state = shared.lock().unwrap_or_else(|e| e.into_inner());
                state.policy = serde_json::to_value(&object).ok();
                state.sample();
            }
        });
        let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
        let shared = state.clone();
        let daemonset_task = tokio::spawn(async move {
            let mut events = watcher(daemonsets, watcher::Config::default()).applied_objects().boxed();
            while let Some(event) = events.next().await {
                let Ok(set) = event else { continue };
                let status = set.status.clone().unwrap_or_default();
                let rolled = status.observed_generation == set.metadata.generation
                    && status.desired_number_scheduled > 0
                    && status.updated_number_scheduled == Some(status.desired_number_scheduled)
                    && status.number_available == Some(status.desired_number_scheduled);
                let workload = Workload { rolled, images: images(set.spec.as_ref().map(|s| &s.template)) };
                let mut state = shared.lock().unwrap_or_else(|e| e.into_inner());
                state.workloads.insert(format!("DaemonSet/{}", set.name_any()), workload);
                state.sample();
            }
        });
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
        let shared = state.clone();
        let deployment_task = tokio::spawn(async move {
            let mut events = watcher(deployments, watcher::Config::default()).applied_objects().boxed();
            while let Some(event) = events.next().await {
                let Ok(deployment) = event else { continue };
                let status = deployment.status.clone().unwrap_or_default();
                let wanted = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let rolled = status.observed_generation == deployment.metadata.generation
                    && status.replicas == Some(wanted)
                    && status.updated_replicas == Some(wanted)
                    && status.available_replicas == Some(wanted);
                let workload = Workload { rolled, images: images(deployment.spec.as_ref().map(|s| &s.template)) };
                let mut state = shared.lock().unwrap_or_else(|e| e.into_inner());
                state.workloads.insert(format!("Deployment/{}", deployment.name_any()), workload);
                state.sample();
            }
        });
        Self { state, tasks: vec![policy_task, daemonset_task, deployment_task] }
    }

    /// When an operand's image first contained `marker` after `since` (the operator's first
    /// write of a change).
    pub fn first_image(&self, since: Instant, marker: &str) -> Option<Instant> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.samples.iter().find(|s| s.at >= since && s.images.iter().any(|i| i.contains(marker))).map(|s| s.at)
    }

    /// When, after `since`, the policy first said `ready` for generation `generation` or later
    /// (ours: its `Ready` condition for that generation; the original writes no generation) with
    /// every operand rolled out, and, with `marker`, an operand running an image containing it.
    pub fn ready(&self, since: Instant, generation: i64, marker: Option<&str>) -> Option<Instant> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .samples
            .iter()
            .find(|s| {
                s.at >= since
                    && s.rolled
                    && s.state == "ready"
                    && s.generation >= generation
                    && s.ready_generation.is_none_or(|g| g >= generation)
                    && marker.is_none_or(|m| s.images.iter().any(|i| i.contains(m)))
            })
            .map(|s| s.at)
    }

    /// The policy's state and generation as last seen.
    pub fn policy(&self) -> (String, i64) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.samples.last().map(|s| (s.state.clone(), s.generation)).unwrap_or_default()
    }
}
