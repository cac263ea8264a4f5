//! `doca-telemetry-controller`: deploys the DOCA telemetry service on the NIC nodes.

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    state_core::run::<doca_telemetry::DocaTelemetry>().await
}
