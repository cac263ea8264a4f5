//! `cni-plugins-controller`: installs the reference CNI plugins on every node.

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    state_core::run::<cni_plugins::CniPlugins>().await
}
