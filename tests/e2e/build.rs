//! Marks the build `e2e_cluster` when `NETOP_E2E_KUBECONFIG` is set: the cluster tests then run;
//! without it, `cargo test` lists them as ignored, with the reason, never as passed.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(e2e_cluster)");
    println!("cargo::rerun-if-env-changed=NETOP_E2E_KUBECONFIG");
    if std::env::var_os("NETOP_E2E_KUBECONFIG").is_some() {
        println!("cargo::rustc-cfg=e2e_cluster");
    }
}
