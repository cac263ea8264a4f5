//! `aggregator`: keeps the NicClusterPolicy's global status, events and state metrics.

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    state_core::run::run_process("aggregator", &[], aggregator::controller::run).await
}
