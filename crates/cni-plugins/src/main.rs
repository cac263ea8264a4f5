//! `cni-plugins-controller`: installs the reference CNI plugins on every node.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    state_core::run::<cni_plugins::CniPlugins>().await
}
