//! `nic-configuration-controller`: deploys the NIC configuration operator and its daemon.

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    state_core::run::<nic_configuration::NicConfiguration>().await
}
