//! `ipoib-controller`: installs the IPoIB CNI plugin on every node.

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    state_core::run::<ipoib::IpoibCni>().await
}
