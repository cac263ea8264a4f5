//! `network-operator`: every controller in one process (the chart's `all-in-one` install).

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    ofed::configure(ofed::Settings::from_env());
    state_core::run::run_process(all_in_one::COMPONENT, &api::state::names::ALL, all_in_one::run).await
}
