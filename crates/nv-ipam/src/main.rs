//! `nv-ipam-state-controller`: deploys and keeps healthy NVIDIA IPAM (its controller Deployment
//! is `nv-ipam-controller`, hence this binary's longer name).

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    state_core::run::<nv_ipam::NvIpam>().await
}
