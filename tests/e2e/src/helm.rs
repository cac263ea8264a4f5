//! The real helm against the cluster under test: install the umbrella chart from the checkout,
//! and uninstall it in the test's cleanup; and kubeconfigs that impersonate a ServiceAccount, to
//! run a controller with exactly its chart's RBAC.

use crate::{Cleanup, KUBECONFIG_VAR};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The umbrella chart's controller subcharts (all on by default).
pub const CONTROLLER_CHARTS: [&str; 15] = [
    "aggregator",
    "network-nads",
    "ofed",
    "rdma-dp",
    "nic-feature-discovery",
    "doca-telemetry",
    "ib-kubernetes",
    "sriov-dp",
    "multus",
    "cni-plugins",
    "ipoib",
    "whereabouts",
    "nv-ipam",
    "nic-configuration",
    "spectrum-x",
];

/// The `--set <chart>.enabled=false` arguments that leave only the controllers of `kept`.
pub fn only_controllers(kept: &[&str]) -> Vec<String> {
    CONTROLLER_CHARTS
        .iter()
        .filter(|chart| !kept.contains(chart))
        .flat_map(|chart| ["--set".to_string(), format!("{chart}.enabled=false")])
        .collect()
}

/// The helm binary on the PATH (`hack/e2e.sh` puts one there), or `None` after saying so.
pub fn helm() -> Option<PathBuf> {
    let found = Command::new("helm").arg("version").output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipping chart test: no helm on the PATH (hack/e2e.sh installs one)");
    }
    found.then(|| PathBuf::from("helm"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `helm install <release> charts/network-operator -n <namespace> <args>` into the cluster under
/// test (not waiting: no kubelet runs the pods); uninstalled by `cleanup`.
pub fn install(cleanup: &Cleanup, release: &str, namespace: &str, args: &[&str]) {
    cleanup.helm_release(release, namespace);
    release_command("install", release, namespace, args);
}

/// `helm <verb> <release> charts/network-operator -n <namespace> <args>`, which must succeed.
fn release_command(verb: &str, release: &str, namespace: &str, args: &[&str]) {
    let output = Command::new("helm")
        .args([verb, release, "charts/network-operator", "--namespace", namespace])
        .args(args)
        .env("KUBECONFIG", std::env::var(KUBECONFIG_VAR).expect("the cluster under test"))
        .current_dir(repo())
        .output()
        .expect("helm runs");
    assert!(
        output.status.success(),
        "helm {verb} {release} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `helm upgrade <release> charts/network-operator -n <namespace> <args>` of a release
/// [`install`] installed.
pub fn upgrade(release: &str, namespace: &str, args: &[&str]) {
    release_command("upgrade", release, namespace, args);
}

/// `helm uninstall <release> -n <namespace>`; errors are printed (this is cleanup).
pub fn uninstall(release: &str, namespace: &str, kubeconfig: &str) {
    let output = Command::new("helm")
        .args(["uninstall", release, "--namespace", namespace])
        .env("KUBECONFIG", kubeconfig)
        .output();
    match output {
        Ok(o) if o.status.success() => {}
        // A test that uninstalled it already.
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("not found") => {}
        Ok(o) => eprintln!("cleanup: helm uninstall {release}: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => eprintln!("cleanup: helm uninstall {release}: {e}"),
    }
}

/// A kubeconfig file with the admin's credentials that acts as ServiceAccount `namespace/name`
/// (`as:`), so a client or controller using it has exactly that ServiceAccount's rights.
pub fn impersonating(namespace: &str, name: &str) -> PathBuf {
    let admin = std::fs::read_to_string(std::env::var(KUBECONFIG_VAR).expect("the cluster under test")).unwrap();
    let mut config: serde_json::Value = serde_saphyr::from_str(&admin).expect("kubeconfig is YAML");
    for user in config["users"].as_array_mut().expect("kubeconfig users") {
        user["user"]["as"] = serde_json::json!(format!("system:serviceaccount:{namespace}:{name}"));
    }
    let path = std::env::temp_dir().join(format!("{}.kubeconfig", crate::unique_name(&format!("netop-as-{name}"))));
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    path
}
