//! `multus-controller`: deploys and keeps healthy Multus CNI.

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    state_core::run::<multus::Multus>().await
}
