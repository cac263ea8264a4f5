//! `ib-kubernetes-controller`: deploys ib-kubernetes, the InfiniBand PKey/GUID manager.

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    state_core::run::<ib_kubernetes::IbKubernetes>().await
}
