//! Marks the build `e2e_cluster` when `NETOP_E2E_KUBECONFIG` is set, and `e2e_real_node` when
//! `NETOP_E2E_NODE` is too (a `../shared/k8s/cluster-up` cluster): those tests then run; without,
//! `cargo test` lists them as ignored, with the reason, never as passed.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(e2e_cluster)");
    println!("cargo::rustc-check-cfg=cfg(e2e_real_node)");
    println!("cargo::rerun-if-env-changed=NETOP_E2E_KUBECONFIG");
    println!("cargo::rerun-if-env-changed=NETOP_E2E_NODE");
    if std::env::var_os("NETOP_E2E_KUBECONFIG").is_some() {
        println!("cargo::rustc-cfg=e2e_cluster");
        if std::env::var_os("NETOP_E2E_NODE").is_some() {
            println!("cargo::rustc-cfg=e2e_real_node");
        }
    }
}
