//! NIC nodes grouped into driver pools: one pool (and one driver DaemonSet) per OS, OS version,
//! kernel and CPU architecture, named as the original names them.
//!
//! The original had no architecture in its pools. A driver DaemonSet it created (named
//! `mofed-<os><version>-<kernel hash>-ds`, selecting no architecture) is a *legacy pool*: it keeps
//! its name and selector and serves every architecture of its OS and kernel, as before the
//! takeover, so no driver is deleted or moved; arch-aware pools are for groups without one.

use kube::core::DynamicObject;
use state_core::nodes::{NodeFacts, container_runtime};
use std::collections::BTreeMap;
use std::sync::Arc;

/// NFD label: the OS (`ubuntu`, `rhel`, `rhcos`, ...).
pub const OS_LABEL: &str = "feature.node.kubernetes.io/system-os_release.ID";
/// NFD label: the OS version (`22.04`, `9.2`, ...).
pub const OS_VERSION_LABEL: &str = "feature.node.kubernetes.io/system-os_release.VERSION_ID";
/// NFD label: the full kernel version.
pub const KERNEL_LABEL: &str = "feature.node.kubernetes.io/kernel-version.full";
/// NFD label: the RHCOS OSTree version (OpenShift).
pub const OSTREE_LABEL: &str = "feature.node.kubernetes.io/system-os_release.OSTREE_VERSION";
/// Kubernetes label: the CPU architecture.
pub const ARCH_LABEL: &str = "kubernetes.io/arch";
/// The labels a pool is made of; a NIC node without one of them gets no pool.
pub const POOL_LABELS: [&str; 4] = [OS_LABEL, OS_VERSION_LABEL, KERNEL_LABEL, ARCH_LABEL];

/// The nodes that share OS, OS version, kernel and architecture, and so one driver image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    /// OS name, e.g. `ubuntu`.
    pub os: String,
    /// OS version, e.g. `22.04`.
    pub os_version: String,
    /// Full kernel version, e.g. `5.15.0-78-generic`.
    pub kernel: String,
    /// CPU architecture, e.g. `amd64`.
    pub arch: String,
    /// RHCOS OSTree version, when the nodes have one.
    pub ostree: Option<String>,
    /// Container runtime of the first node: `docker`, `containerd`, `cri-o` or empty.
    pub runtime: String,
    /// The pool's nodes, by name.
    pub nodes: Vec<String>,
    /// A pool the original operator created, selecting no architecture (see the module
    /// documentation); `arch` is then the one its image is for.
    pub legacy: bool,
}

/// A NIC node that has no pool, and the pool labels it lacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unpooled {
    /// The node's name.
    pub node: String,
    /// The labels it lacks.
    pub missing: Vec<&'static str>,
}

impl Pool {
    /// `<os><version>`, e.g. `ubuntu22.04`.
    pub fn os_tag(&self) -> String {
        format!("{}{}", self.os, self.os_version)
    }

    /// The value of the DaemonSet's `app` label: `mofed-<os><version>-<kernel hash>`, with
    /// `-<arch>` added for architectures other than amd64 (the original had no architecture in
    /// its names; amd64 pools and legacy pools keep its names, so its DaemonSets are adopted).
    pub fn app(&self) -> String {
        let base = base_app(&self.os, &self.os_version, &self.kernel);
        if self.arch == "amd64" || self.legacy { base } else { format!("{base}-{}", self.arch) }
    }

    /// The DaemonSet's name: `<app>-ds`.
    pub fn daemon_set(&self) -> String {
        format!("{}-ds", self.app())
    }
}

/// Groups `nodes` into pools (sorted by DaemonSet name) and lists the nodes without a pool.
/// `legacy` names the driver DaemonSets of the original (see [`legacy_daemon_sets`]): each
/// serves all architectures of its OS and kernel.
pub fn pools(nodes: &[Arc<NodeFacts>], legacy: &BTreeMap<String, Option<String>>) -> (Vec<Pool>, Vec<Unpooled>) {
    let mut pools: BTreeMap<(String, String, String, String), Pool> = BTreeMap::new();
    let mut unpooled = Vec::new();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let value = |key: &str| labels.get(key).filter(|v| !v.is_empty()).cloned();
        let missing: Vec<&'static str> = POOL_LABELS.into_iter().filter(|key| value(key).is_none()).collect();
        if !missing.is_empty() {
            unpooled.push(Unpooled { node: name, missing });
            continue;
        }
        let [os, os_version, kernel, arch] = POOL_LABELS.map(|key| value(key).unwrap_or_default());
        let legacy_image_arch = legacy.get(&format!("{}-ds", base_app(&os, &os_version, &kernel)));
        // A legacy pool is keyed without its architecture: all of them share its DaemonSet.
        let key_arch = if legacy_image_arch.is_some() { String::new() } else { arch.clone() };
        let pool = pools.entry((os.clone(), os_version.clone(), kernel.clone(), key_arch)).or_insert_with(|| Pool {
            os,
            os_version,
            kernel,
            arch: arch.clone(),
            ostree: value(OSTREE_LABEL),
            runtime: container_runtime(node).unwrap_or_default().to_string(),
            nodes: Vec::new(),
            legacy: legacy_image_arch.is_some(),
        });
        // The architecture of a legacy pool: the one its live image is for, when a node has it.
        if let Some(Some(image_arch)) = legacy_image_arch
            && *image_arch == arch
        {
            pool.arch = arch;
        }
        pool.nodes.push(name);
    }
    let mut pools: Vec<Pool> = pools.into_values().collect();
    pools.sort_by_key(Pool::daemon_set);
    (pools, unpooled)
}

/// The driver DaemonSets of the original operator among `owned` (this state's live objects):
/// DaemonSets whose pod template selects nodes by OS, version and kernel but not by
/// architecture, by name, with the architecture their driver image is for (the tag's last
/// `-<arch>`), when it names one.
pub fn legacy_daemon_sets(owned: &[Arc<DynamicObject>]) -> BTreeMap<String, Option<String>> {
    owned
        .iter()
        .filter(|o| o.types.as_ref().is_some_and(|t| t.kind == "DaemonSet"))
        .filter_map(|daemon_set| {
            let selector = daemon_set.data.pointer("/spec/template/spec/nodeSelector")?.as_object()?;
            if selector.contains_key(ARCH_LABEL) || !selector.contains_key(KERNEL_LABEL) {
                return None;
            }
            let image = daemon_set.data.pointer("/spec/template/spec/containers/0/image").and_then(|i| i.as_str());
            let arch = image.and_then(|i| i.rsplit_once('-')).map(|(_, arch)| arch.to_string());
            Some((daemon_set.metadata.name.clone()?, arch))
        })
        .collect()
}

/// `mofed-<os><version>-<kernel hash>`: the original's name of the pool of an OS and kernel.
fn base_app(os: &str, os_version: &str, kernel: &str) -> String {
    format!("mofed-{os}{os_version}-{}", kernel_hash(kernel))
}

/// The original's kernel hash: FNV-1a 32 of the kernel string, in decimal, each digit mapped
/// through Kubernetes' "safe encode" alphabet.
pub fn kernel_hash(kernel: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let hash = kernel.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    hash.to_string().bytes().map(|digit| ALPHABET[usize::from(digit) % ALPHABET.len()] as char).collect()
}

/// "n1, n2, n3 and 4 more": a few names, and how many others.
pub fn some_of(names: &[String], shown: usize) -> String {
    let first = names[..names.len().min(shown)].join(", ");
    match names.len().saturating_sub(shown) {
        0 => first,
        more => format!("{first} and {more} more"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const NIC_LABEL: &str = "feature.node.kubernetes.io/pci-15b3.present";

    #[test]
    fn kernel_hashes_match_the_originals_test_vectors() {
        assert_eq!(kernel_hash("5.15.0-78-generic"), "54669c9886");
        assert_eq!(kernel_hash("5.15.0-91-generic"), "6d568d699f");
        assert_eq!(kernel_hash("5.14.0-284.43.1.el9_2.x86_64"), "687cd9dc94");
    }

    fn node(name: &str, os: &str, version: &str, kernel: &str, arch: &str) -> Arc<NodeFacts> {
        Arc::new(state_core::nodes::facts(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {
                OS_LABEL: os, OS_VERSION_LABEL: version, KERNEL_LABEL: kernel, ARCH_LABEL: arch}},
                "status": {"nodeInfo": {"containerRuntimeVersion": "containerd://1.7.1", "architecture": arch,
                    "bootID": "", "kernelVersion": kernel, "kubeProxyVersion": "", "kubeletVersion": "", "machineID": "",
                    "operatingSystem": "linux", "osImage": "", "systemUUID": ""}}}))
            .unwrap(),
            None,
        ))
    }

    #[test]
    fn nodes_group_by_os_version_kernel_and_architecture() {
        let nodes = [
            node("a", "ubuntu", "22.04", "5.15.0-78-generic", "amd64"),
            node("b", "ubuntu", "22.04", "5.15.0-78-generic", "amd64"),
            node("c", "ubuntu", "22.04", "5.15.0-78-generic", "arm64"),
            node("d", "ubuntu", "20.04", "5.15.0-91-generic", "amd64"),
        ];
        let (pools, unpooled) = pools(&nodes, &BTreeMap::new());
        assert!(unpooled.is_empty());
        let names: Vec<(String, Vec<String>)> = pools.iter().map(|p| (p.daemon_set(), p.nodes.clone())).collect();
        assert_eq!(
            names,
            [
                ("mofed-ubuntu20.04-6d568d699f-ds".to_string(), vec!["d".to_string()]),
                ("mofed-ubuntu22.04-54669c9886-arm64-ds".to_string(), vec!["c".to_string()]),
                ("mofed-ubuntu22.04-54669c9886-ds".to_string(), vec!["a".to_string(), "b".to_string()]),
            ]
        );
        assert_eq!(pools[0].runtime, "containerd");
    }

    fn driver_daemon_set(name: &str, selector: Value, image: &str) -> Arc<DynamicObject> {
        Arc::new(
            serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
                "metadata": {"name": name, "namespace": "ns"},
                "spec": {"template": {"spec": {"nodeSelector": selector,
                    "containers": [{"name": "mofed-container", "image": image}]}}}}))
            .unwrap(),
        )
    }

    #[test]
    fn a_daemon_set_of_the_original_keeps_serving_every_architecture_of_its_os_and_kernel() {
        let nodes = [
            node("a", "ubuntu", "22.04", "5.15.0-78-generic", "amd64"),
            node("c", "ubuntu", "22.04", "5.15.0-78-generic", "arm64"),
            node("d", "ubuntu", "20.04", "5.15.0-91-generic", "amd64"),
            node("e", "ubuntu", "20.04", "5.15.0-91-generic", "arm64"),
        ];
        let original = json!({NIC_LABEL: "true", OS_LABEL: "ubuntu", OS_VERSION_LABEL: "22.04",
                              KERNEL_LABEL: "5.15.0-78-generic"});
        let mut ours = json!({NIC_LABEL: "true", OS_LABEL: "ubuntu", OS_VERSION_LABEL: "20.04",
                              KERNEL_LABEL: "5.15.0-91-generic"});
        ours[ARCH_LABEL] = json!("amd64");
        let owned = [
            driver_daemon_set("mofed-ubuntu22.04-54669c9886-ds", original, "r/mofed:24.07-ubuntu22.04-arm64"),
            driver_daemon_set("mofed-ubuntu20.04-6d568d699f-ds", ours, "r/mofed:24.07-ubuntu20.04-amd64"),
        ];
        let legacy = legacy_daemon_sets(&owned);
        assert_eq!(
            legacy,
            BTreeMap::from([("mofed-ubuntu22.04-54669c9886-ds".to_string(), Some("arm64".to_string()))])
        );

        let (pools, _) = pools(&nodes, &legacy);
        let shape: Vec<(String, &str, bool, Vec<String>)> =
            pools.iter().map(|p| (p.daemon_set(), p.arch.as_str(), p.legacy, p.nodes.clone())).collect();
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            shape,
            [
                ("mofed-ubuntu20.04-6d568d699f-arm64-ds".to_string(), "arm64", false, names(&["e"])),
                ("mofed-ubuntu20.04-6d568d699f-ds".to_string(), "amd64", false, names(&["d"])),
                ("mofed-ubuntu22.04-54669c9886-ds".to_string(), "arm64", true, names(&["a", "c"])),
            ],
            "the original's pool keeps its name, both architectures and the image's architecture"
        );
    }

    #[test]
    fn a_node_without_nfd_labels_gets_no_pool_and_says_which_are_missing() {
        let mut bare = (*node("x", "ubuntu", "22.04", "k", "amd64")).clone();
        bare.metadata.labels.as_mut().unwrap().remove(KERNEL_LABEL);
        bare.metadata.labels.as_mut().unwrap().remove(OS_LABEL);
        let (pools, unpooled) = pools(&[Arc::new(bare)], &BTreeMap::new());
        assert!(pools.is_empty());
        assert_eq!(unpooled, [Unpooled { node: "x".into(), missing: vec![OS_LABEL, KERNEL_LABEL] }]);
    }

    #[test]
    fn long_lists_of_names_are_cut() {
        let names: Vec<String> = (1..=5).map(|i| format!("n{i}")).collect();
        assert_eq!(some_of(&names, 3), "n1, n2, n3 and 2 more");
        assert_eq!(some_of(&names[..2], 3), "n1, n2");
    }
}
