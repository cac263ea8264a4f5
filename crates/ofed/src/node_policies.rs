//! The driver of each NicNodePolicy: the same pools, precompiled images, mofed.wait labels and
//! upgrades as the cluster policy's, on the nodes the policy selects only.
//!
//! Its DaemonSets are `mofed-<os><version>-<hash>-<policy>-ds` (the original's names), its
//! upgrades count `maxParallelUpgrades` and `maxUnavailable` among its own nodes, and its
//! ServiceAccount and roles are shared by every NicNodePolicy with a driver
//! ([`State::SHARED_KINDS`]). A policy refused by the checks every state makes
//! ([`state_core::node_policies::refusal`]) changes nothing; a deleted one leaves its nodes
//! without the mofed.wait label and without upgrade keys (its objects are garbage-collected).

use crate::OfedDriver;
use crate::controller::{OfedContext, sync_and_upgrade};
use crate::mofed_wait;
use crate::upgrade::pass::{NodeSet, RECHECK};
use api::{NicClusterPolicy, NicNodePolicy};
use futures::StreamExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use state_core::State;
use state_core::node_policies::{labelled, peers, refusal, with_shared_pruned};
use state_core::nodes::NodeCache;
use state_core::reconcile::{self, Error, field_manager};
use state_core::scope::Scope;
use std::sync::Arc;
use std::time::Instant;

/// What the NicNodePolicy reconcile of the driver reads besides the policy.
pub struct NodePolicyContext {
    /// The OFED controller's context (caches, registry answers, upgrades).
    pub ofed: Arc<OfedContext>,
    /// The NicClusterPolicy.
    pub cluster: Store<NicClusterPolicy>,
}

/// Reconciles the driver of one NicNodePolicy and reports its entry in that policy's status.
pub async fn reconcile(policy: Arc<NicNodePolicy>, ctx: Arc<NodePolicyContext>) -> Result<Action, Error> {
    let started = Instant::now();
    let ofed = &ctx.ofed;
    let cluster = ctx.cluster.get(&ObjectRef::new(api::POLICY_NAME));
    let others = ofed.node_policies.state();
    let holds_driver = policy.has_section(OfedDriver::NAME);
    let nodes = if holds_driver { labelled(&ofed.node_labels.state()) } else { Vec::new() };
    let scope = Scope::Node(&policy);
    // Without a driver the policy's nodes are not its driver's: nothing is labelled or upgraded.
    let mine = NodeSet::Only(if holds_driver { ofed.selected_by(&policy) } else { Default::default() });
    let view = policy.view(None);
    let peers = peers::<OfedDriver>(&others);
    let (outcome, recheck) =
        match refusal::<OfedDriver>(&policy, cluster.as_deref(), others.iter().map(Arc::as_ref), &nodes) {
            Some(refused) => (refused, false),
            None => {
                let (outcome, report) = sync_and_upgrade(&view, &scope, &mine, peers.clone(), ofed).await;
                let outcome = match peers.is_empty() {
                    true => with_shared_pruned::<OfedDriver>(outcome, &ofed.core).await,
                    false => outcome,
                };
                (outcome, report.recheck)
            }
        };
    let action = reconcile::finish_in::<OfedDriver>(&view, &scope, &ofed.core, outcome, started).await?;
    Ok(if recheck { Action::requeue(RECHECK) } else { action })
}

/// Retry a failed reconcile soon.
pub fn error_policy(_policy: Arc<NicNodePolicy>, error: &Error, ctx: Arc<NodePolicyContext>) -> Action {
    reconcile::on_error::<OfedDriver>(error, &ctx.ofed.core)
}

/// What a deleted NicNodePolicy leaves on its nodes (no reconcile runs for it): its upgrades
/// stop and their keys and cordons go, and so does the mofed.wait label, unless the cluster
/// policy deploys the driver there now.
pub async fn clean_up_deleted(ctx: Arc<NodePolicyContext>) {
    let policies: Api<NicNodePolicy> = Api::all(ctx.ofed.core.client.clone());
    let mut deletions = std::pin::pin!(
        state_core::owned::backoff_on_failure(watcher(policies, watcher::Config::default())).filter_map(
            |event| async move {
                match event {
                    Ok(watcher::Event::Delete(policy)) => Some(policy),
                    _ => None,
                }
            }
        )
    );
    while let Some(policy) = deletions.next().await {
        if policy.spec.ofed_driver.is_none() {
            continue;
        }
        let name = policy.name_any();
        tracing::info!(state = OfedDriver::NAME, policy = %name, "NicNodePolicy deleted: stopping its upgrades, cleaning its nodes");
        let selected = NodeSet::Only(ctx.ofed.selected_by(&policy));
        let report = ctx.ofed.upgrades.policy_deleted(&name, &selected).await;
        let cluster_driver =
            ctx.cluster.get(&ObjectRef::new(api::POLICY_NAME)).is_some_and(|c| c.spec.ofed_driver.is_some());
        let mut errors: Vec<String> = report.message.into_iter().collect();
        if !cluster_driver {
            let mut nodes = ctx.ofed.core.nodes.as_ref().map(NodeCache::nodes).unwrap_or_default();
            nodes.retain(|node| selected.contains(&node.name_any()));
            let changes = mofed_wait::changes(false, &nodes, &Default::default(), &ctx.ofed.pods.state());
            errors.extend(mofed_wait::write(&ctx.ofed.core.client, &field_manager::<OfedDriver>(), &changes).await);
        }
        for error in errors {
            tracing::warn!(state = OfedDriver::NAME, policy = %name, %error, "cleaning the nodes after the NicNodePolicy's deletion");
        }
    }
}
