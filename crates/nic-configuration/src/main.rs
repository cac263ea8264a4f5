//! `nic-configuration-controller`: deploys the NIC configuration operator and its daemon, and
//! keeps the nodes' `nic-configuration.wait` label while the policy has no such section.

use nic_configuration::NicConfiguration;
use state_core::State;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    state_core::run::run_process(NicConfiguration::COMPONENT, &[NicConfiguration::NAME], nic_configuration::controller)
        .await
}
