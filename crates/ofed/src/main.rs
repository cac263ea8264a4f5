//! `ofed-controller`: deploys the NIC driver on every NIC node and keeps the
//! `network.nvidia.com/operator.mofed.wait` label that gates driver-dependent states.

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    ofed::configure(ofed::Settings::from_env());
    state_core::run::run_process(
        <ofed::OfedDriver as state_core::State>::COMPONENT,
        &[<ofed::OfedDriver as state_core::State>::NAME],
        ofed::controller::run,
    )
    .await
}
