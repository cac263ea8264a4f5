//! `network-nads-controller`: MacvlanNetwork, HostDeviceNetwork and IPoIBNetwork to
//! NetworkAttachmentDefinitions.

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    state_core::run::run_process("network-nads", &[], network_nads::controller::run).await
}
