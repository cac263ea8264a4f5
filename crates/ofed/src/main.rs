//! `ofed-controller`: deploys the NIC driver on every NIC node and keeps the
//! `network.nvidia.com/operator.mofed.wait` label that gates driver-dependent states.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if let Ok(image) = std::env::var("OFED_INIT_CONTAINER_IMAGE") {
        ofed::set_init_container_image(&image);
    }
    state_core::run::run_process(<ofed::OfedDriver as state_core::State>::COMPONENT, ofed::controller::run).await
}
