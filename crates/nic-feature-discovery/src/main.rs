//! `nic-feature-discovery-controller`: deploys NIC feature discovery on every node.

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    state_core::run::<nic_feature_discovery::NicFeatureDiscovery>().await
}
