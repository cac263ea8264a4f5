//! Selectors the plugin decides itself: the state renders and says what it passed on unchecked.

use api::SyncState;
use serde_json::json;
use sriov_dp::SriovDevicePlugin;
use state_core::edits::REVISION_ANNOTATION;
use state_core::metrics::Metrics;
use state_core::owned::OwnedObjects;
use state_core::reconcile::{Context, sync_with};
use state_core::testing::{NAMESPACE, mock_client, policy_from_yaml, render};
use state_core::{Observed, State};

#[tokio::test]
async fn an_unknown_selector_is_passed_on_and_named_in_the_ready_message() {
    let policy = policy_from_yaml(
        r#"
apiVersion: mellanox.com/v1alpha1
kind: NicClusterPolicy
metadata: {name: nic-cluster-policy}
spec:
  sriovDevicePlugin:
    image: sriov-network-device-plugin
    repository: ghcr.io/k8snetworkplumbingwg
    version: v3.7.0
    config: '{"resourceList": [{"resourceName": "ib", "selectors": {"pKeys": ["0x7fff"], "linkSpeed": ["200"]}}]}'
"#,
    );
    // Everything is in place and available: the reconcile writes nothing and only reports.
    let live = render::<SriovDevicePlugin>(&policy, false)
        .into_iter()
        .map(|mut object| {
            let revision = state_core::apply::revision(&object);
            object.metadata.annotations.get_or_insert_with(Default::default).insert(REVISION_ANNOTATION.into(), revision);
            if object.types.as_ref().is_some_and(|t| t.kind == "DaemonSet") {
                object.metadata.generation = Some(1);
                object.data["status"] = json!({"observedGeneration": 1, "desiredNumberScheduled": 1, "numberAvailable": 1, "updatedNumberScheduled": 1});
            }
            object
        })
        .collect();
    let (client, mut server) = mock_client();
    let owned = OwnedObjects::from_objects(SriovDevicePlugin::kinds(), live);
    let ctx = Context::new(client, NAMESPACE.into(), false, owned, Metrics::new());
    let outcome = sync_with::<SriovDevicePlugin>(&policy, &ctx, &Observed::default()).await;
    server.expect_no_more().await;
    assert_eq!(outcome.state, SyncState::Ready, "{outcome:?}");
    let message = outcome.message.unwrap_or_default();
    assert!(
        message.contains(
            "spec.sriovDevicePlugin.config.resourceList[0].selectors.linkSpeed: not a selector the plugin documents"
        ),
        "{message}"
    );
    assert!(!message.contains("selectors.pKeys"), "a documented selector is no warning: {message}");
}
