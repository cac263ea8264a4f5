//! The API server accepts every CRD (structural schemas, valid CEL) and enforces its rules.

use api::NicClusterPolicy;
use e2e::{client, exclusive, install_crds};
use kube::Api;
use kube::api::PostParams;

#[tokio::test]
async fn the_api_server_accepts_every_crd_and_enforces_the_policy_rules() {
    let Some(client) = client().await else { return };
    let _guard = exclusive().await;
    install_crds(&client).await;

    let policies: Api<NicClusterPolicy> = Api::all(client.clone());
    let mut wrong_name = NicClusterPolicy::new("my-policy", Default::default());
    wrong_name.metadata.name = Some("my-policy".into());
    let err = policies.create(&PostParams::default(), &wrong_name).await.expect_err("another name is refused");
    assert!(err.to_string().contains("only the NicClusterPolicy named nic-cluster-policy"), "{err}");

    let unsafe_load: NicClusterPolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy",
        "metadata": {"name": "nic-cluster-policy"},
        "spec": {"ofedDriver": {"image": "doca-driver", "repository": "nvcr.io/nvidia/mellanox",
                 "version": "24.07-0.6.1.0-0", "upgradePolicy": {"safeLoad": true}}}
    }))
    .unwrap();
    let params = PostParams { dry_run: true, ..Default::default() };
    let err = policies.create(&params, &unsafe_load).await.expect_err("safeLoad without autoUpgrade is refused");
    assert!(err.to_string().contains("safeLoad requires autoUpgrade"), "{err}");
}
