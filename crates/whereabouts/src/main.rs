//! `whereabouts-controller`: deploys and keeps healthy the Whereabouts IPAM plugin.

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    state_core::run::<whereabouts::Whereabouts>().await
}
