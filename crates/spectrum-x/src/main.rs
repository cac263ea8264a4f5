//! `spectrum-x-controller`: deploys the NVIDIA Spectrum-X operator's flow controller.

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    state_core::run::<spectrum_x::SpectrumX>().await
}
