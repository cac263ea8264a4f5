//! `sriov-dp-controller`: deploys and keeps healthy the SR-IOV network device plugin.

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    state_core::run::<sriov_dp::SriovDevicePlugin>().await
}
