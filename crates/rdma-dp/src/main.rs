//! `rdma-dp-controller`: deploys and keeps healthy the RDMA shared device plugin.

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    state_core::run::<rdma_dp::RdmaDevicePlugin>().await
}
