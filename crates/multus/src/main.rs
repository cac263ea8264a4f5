//! `multus-controller`: deploys and keeps healthy Multus CNI.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    state_core::run::<multus::Multus>().await
}
