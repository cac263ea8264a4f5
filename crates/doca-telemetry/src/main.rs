//! `doca-telemetry-controller`: deploys the DOCA telemetry service on the NIC nodes.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    state_core::run::<doca_telemetry::DocaTelemetry>().await
}
