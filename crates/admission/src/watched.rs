//! What the webhook knows of the cluster, kept by watches: the NicClusterPolicy, the
//! NicNodePolicies and every node's labels (metadata only), so that a review reads them from
//! memory, within the API server's short timeout.

use crate::review::{Cluster, ClusterSource};
use api::{NicClusterPolicy, NicNodePolicy};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use std::sync::Arc;

/// The watched caches.
pub struct Watched {
    cluster_policy: Store<NicClusterPolicy>,
    node_policies: Store<NicNodePolicy>,
    nodes: Store<PartialObjectMeta<Node>>,
}

impl Watched {
    /// Starts the watches (tasks of their own, retried with backoff when they fail).
    pub fn start(client: &Client) -> Arc<Self> {
        let (cluster_policy, writer) = reflector::store();
        let config = watcher::Config::default().fields(&format!("metadata.name={}", api::POLICY_NAME));
        tokio::spawn(drive(
            "NicClusterPolicy",
            reflector::reflector(writer, watcher(Api::all(client.clone()), config)),
        ));
        let (node_policies, writer) = reflector::store();
        let config = watcher::Config::default();
        tokio::spawn(drive("NicNodePolicies", reflector::reflector(writer, watcher(Api::all(client.clone()), config))));
        let (nodes, writer) = reflector::store();
        let stream =
            watcher(Api::<PartialObjectMeta<Node>>::all(client.clone()), watcher::Config::default().page_size(100))
                .modify(|node| {
                    node.metadata.managed_fields = None;
                    node.metadata.annotations = None;
                });
        tokio::spawn(drive("nodes", reflector::reflector(writer, stream)));
        Arc::new(Self { cluster_policy, node_policies, nodes })
    }
}

/// Drives one watch forever, logging its failures.
async fn drive<K: Send>(
    what: &'static str,
    stream: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
) {
    let mut stream = std::pin::pin!(state_core::owned::backoff_on_failure(stream));
    while let Some(event) = stream.next().await {
        if let Err(e) = event {
            tracing::warn!(watch = what, error = %state_core::apply::describe_watch(&e), "watch failed; retrying");
        }
    }
}

impl ClusterSource for Watched {
    fn cluster(&self) -> Cluster {
        Cluster {
            cluster_policy: self.cluster_policy.get(&ObjectRef::new(api::POLICY_NAME)),
            node_policies: self.node_policies.state(),
            nodes: state_core::node_policies::labelled(&self.nodes.state()),
        }
    }
}
