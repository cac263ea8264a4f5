//! `nic-feature-discovery-controller`: deploys NIC feature discovery on every node.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    state_core::run::<nic_feature_discovery::NicFeatureDiscovery>().await
}
