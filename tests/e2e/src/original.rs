//! The original operator (release v24.7.0, `../shared/original` beside the checkout) against the
//! cluster under test, for the takeover and differential tests: its CRDs, the process, its
//! objects; and the swap back to our CRDs the way the README tells users to upgrade them.
//!
//! Tests that need it skip with a message when the folder is absent (a user's checkout).

use crate::{KUBECONFIG_VAR, WAIT, eventually};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The CRDs both operators install: ours replace the original's.
pub const SHARED_CRDS: [&str; 5] = [
    "nicclusterpolicies.mellanox.com",
    "macvlannetworks.mellanox.com",
    "hostdevicenetworks.mellanox.com",
    "ipoibnetworks.mellanox.com",
    "network-attachment-definitions.k8s.cni.cncf.io",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The original's `run` script, or `None` after saying why the test is skipped.
pub fn script() -> Option<PathBuf> {
    let script = repo().join("../shared/original/run");
    if !script.is_file() {
        eprintln!("skipping: the original operator is not beside the checkout ({})", script.display());
        return None;
    }
    if Command::new("kubectl").arg("version").arg("--client").output().is_err() {
        eprintln!("skipping: the original's run script needs kubectl on the PATH (hack/e2e.sh puts one there)");
        return None;
    }
    Some(script)
}

/// The original operator, running; stopped when dropped.
pub struct Original {
    script: PathBuf,
    state: PathBuf,
    namespace: String,
}

fn run(script: &Path, state: &Path, namespace: &str, verb: &str) -> String {
    let output = Command::new(script)
        .arg(verb)
        .env("NETOP_E2E_KUBECONFIG", std::env::var(KUBECONFIG_VAR).expect("the cluster under test"))
        .env("NETOP_ORIGINAL_DIR", state)
        .env("POD_NAMESPACE", namespace)
        .output()
        .unwrap_or_else(|e| panic!("{} {verb}: {e}", script.display()));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{} {verb} failed: {text}", script.display());
    text
}

impl Original {
    /// Starts the original with its operands in `namespace` (after [`install_original_crds`]).
    pub fn start(script: &Path, namespace: &str) -> Self {
        let state = std::env::temp_dir().join(crate::unique_name("netop-e2e-original"));
        run(script, &state, namespace, "start");
        Self { script: script.to_path_buf(), state, namespace: namespace.to_string() }
    }

    /// Its metrics page, as controller-runtime serves it.
    pub fn metrics_url(&self) -> Option<String> {
        let env = std::fs::read_to_string(self.state.join("env")).ok()?;
        env.lines().find_map(|l| l.strip_prefix("export NETOP_ORIGINAL_METRICS=")).map(str::to_string)
    }

    /// Its process id (from the run script's state).
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.state.join("pid")).ok()?.trim().parse().ok()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.join("operator.log")).unwrap_or_default()
    }

    /// Stops it (SIGTERM, then SIGKILL after 10 s) and waits until it is gone.
    pub fn stop(&mut self) {
        run(&self.script, &self.state, &self.namespace, "stop");
    }
}

impl Drop for Original {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- the original's log (last 40 lines) ---\n{}",
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
        let _ = Command::new(&self.script)
            .arg("stop")
            .env("NETOP_E2E_KUBECONFIG", std::env::var(KUBECONFIG_VAR).unwrap_or_default())
            .env("NETOP_ORIGINAL_DIR", &self.state)
            .output();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

async fn delete_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in SHARED_CRDS {
        crate::delete_if_present(&crds, name).await;
    }
    eventually("the shared CRDs to be gone", WAIT, || async {
        for name in SHARED_CRDS {
            if crds.get_opt(name).await.map_err(|e| e.to_string())?.is_some() {
                return Err(format!("{name} still there"));
            }
        }
        Ok(())
    })
    .await;
}

/// Replaces the shared CRDs (and so every policy and network CR) with the original's, exactly
/// as its release installs them. The guard applies ours again when dropped, whatever happened.
pub async fn install_original_crds(client: &Client, script: &Path) -> OriginalCrds {
    delete_crds(client).await;
    let state = std::env::temp_dir().join(crate::unique_name("netop-e2e-original-crds"));
    run(script, &state, "default", "crds");
    OriginalCrds
}

/// The original's CRDs are installed; ours come back when this is dropped.
pub struct OriginalCrds;

impl Drop for OriginalCrds {
    fn drop(&mut self) {
        if let Err(e) = apply_our_crds() {
            eprintln!("cleanup: applying our CRDs again: {e}");
        }
    }
}

/// `kubectl apply --server-side --force-conflicts -f charts/network-operator/crds/`: what the
/// README tells users to run before an upgrade. The original's CRDs were applied the same way,
/// so ours replace them field by field.
fn apply_our_crds() -> Result<(), String> {
    let output = Command::new("kubectl")
        .args(["apply", "--server-side", "--force-conflicts", "-f", "charts/network-operator/crds/"])
        .env("KUBECONFIG", std::env::var(KUBECONFIG_VAR).map_err(|e| e.to_string())?)
        .current_dir(repo())
        .output()
        .map_err(|e| e.to_string())?;
    match output.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&output.stderr).to_string()),
    }
}

/// Applies our CRDs over the original's as users upgrade them ([`apply_our_crds`]) and waits
/// until they are Established.
pub async fn upgrade_crds_as_users_do(client: &Client) {
    apply_our_crds().unwrap_or_else(|e| panic!("kubectl apply of our CRDs: {e}"));
    for name in SHARED_CRDS {
        crate::wait_established(client, name).await;
    }
}
