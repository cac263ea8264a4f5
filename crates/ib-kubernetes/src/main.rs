//! `ib-kubernetes-controller`: deploys ib-kubernetes, the InfiniBand PKey/GUID manager.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    state_core::run::<ib_kubernetes::IbKubernetes>().await
}
