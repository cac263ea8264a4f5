//! Stand-in operand images for the real-node stage: for every image a policy renders, a busybox
//! image under that exact reference, so the kubelet starts the operands' pods and their probes
//! pass as the real operands' would on a NIC node. The image's entrypoint, and every absolute
//! path the pod templates run, idle until stopped (a main container) or exit at once (an init
//! container that runs the image's entrypoint); a driver stand-in marks the driver loaded
//! (`/run/mellanox/drivers/.driver-ready`) and `lsmod` in `sh -c` reports `mlx5_core`.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// What one stand-in image must provide.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stub {
    /// Its entrypoint exits at once (an init container runs it), instead of idling.
    pub exits: bool,
    /// Absolute paths the pod templates run, installed as the idling stand-in.
    pub executables: BTreeSet<String>,
    /// A template runs `bash`, which busybox lacks: `/bin/bash` runs `sh`.
    pub bash: bool,
}

/// Paths busybox itself provides; a template running one of them needs no stand-in there.
const BUSYBOX_PATHS: &[&str] = &["/bin/sh"];

/// The stand-ins the rendered `objects` need, by image reference: every container and init
/// container of their DaemonSets, Deployments and pods. An image that one container runs as its
/// idling entrypoint and another as an exiting one cannot be stood in for: that is an error
/// naming it.
pub fn plan(objects: &[Value]) -> Result<BTreeMap<String, Stub>, String> {
    let mut stubs: BTreeMap<String, Stub> = BTreeMap::new();
    let mut idles = BTreeSet::new();
    for object in objects {
        let spec = match object["kind"].as_str() {
            Some("DaemonSet" | "Deployment" | "StatefulSet" | "Job") => &object["spec"]["template"]["spec"],
            Some("Pod") => &object["spec"],
            _ => continue,
        };
        for (list, init) in [("initContainers", true), ("containers", false)] {
            for container in spec[list].as_array().into_iter().flatten() {
                let Some(image) = container["image"].as_str() else { continue };
                let words = |key: &str| -> Vec<String> {
                    container[key]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|w| w.as_str().map(String::from))
                        .collect()
                };
                let (command, args) = (words("command"), words("args"));
                let stub = stubs.entry(image.to_string()).or_default();
                if command.is_empty() {
                    if init {
                        stub.exits = true
                    } else {
                        idles.insert(image.to_string());
                    }
                }
                stub.bash |= command.first().is_some_and(|c| c == "bash" || c == "/bin/bash");
                stub.executables.extend(executables(&command, &args));
            }
        }
    }
    let conflicting: Vec<&String> = idles.iter().filter(|image| stubs[*image].exits).collect();
    if conflicting.is_empty() {
        Ok(stubs)
    } else {
        Err(format!("images run as both an init and a main container's entrypoint: {conflicting:?}"))
    }
}

/// The absolute paths a container runs: its command, or the commands of its `sh -c` script
/// (the first word of each simple command, after any `NAME=value` assignments).
fn executables(command: &[String], args: &[String]) -> Vec<String> {
    let words: Vec<&String> = command.iter().chain(args).collect();
    let Some(first) = words.first() else { return Vec::new() };
    let shell = ["sh", "bash"].contains(&first.rsplit('/').next().unwrap_or(first));
    let mut out: Vec<String> = if shell {
        let script = words.iter().position(|w| w.starts_with('-') && w.contains('c')).and_then(|i| words.get(i + 1));
        script
            .map(|script| {
                script
                    .split([';', '|', '&', '\n'])
                    .filter_map(|segment| segment.split_whitespace().find(|w| !is_assignment(w)))
                    .filter(|w| w.starts_with('/'))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    } else {
        vec![first.to_string()].into_iter().filter(|w| w.starts_with('/')).collect()
    };
    out.retain(|path| !BUSYBOX_PATHS.contains(&path.as_str()));
    out
}

/// `NAME=value`, a shell variable assignment before a command.
fn is_assignment(word: &str) -> bool {
    word.split_once('=')
        .is_some_and(|(name, _)| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// The idling stand-in: marks the driver loaded where a driver container has its
/// `/run/mellanox/drivers` mount, then sleeps until stopped (and unmarks it).
const IDLE: &str = "#!/bin/sh\n\
# A stand-in operand (tests/e2e, real-node stage).\n\
ready=/run/mellanox/drivers/.driver-ready\n\
trap 'rm -f \"$ready\"; exit 0' TERM INT\n\
if [ -d /run/mellanox/drivers ]; then touch \"$ready\"; fi\n\
echo \"stand-in for $0 started\"\n\
while :; do sleep 1 & wait $!; done\n";

/// The exiting stand-in of an init container.
const EXIT: &str = "#!/bin/sh\necho \"stand-in for $0: done\"\n";

/// `sh` first on the PATH (`/usr/local/bin/sh`): busybox's `sh` with `lsmod` showing the NIC
/// driver loaded, for the templates' `sh -c "lsmod | grep mlx5_core"` probes and waits. A
/// function, because busybox's `sh` runs its own applets before the PATH (and the harness's
/// kernel may have no `/proc/modules`).
const SH: &str = r#"#!/bin/sh
if [ "$1" = -c ]; then
  shift; script=$1; shift
  exec /bin/sh -c "lsmod() { echo 'Module Size Used by'; echo 'mlx5_core 2080768 0'; }; $script" "$@"
fi
exec /bin/sh "$@"
"#;

/// `bash` for templates that run it: the `sh` above.
const BASH: &str = "#!/bin/sh\nexec /usr/local/bin/sh \"$@\"\n";

/// Builds each stand-in with `mkimage` (on `busybox`, the harness's busybox image) into
/// `out/<n>.tar` and returns the tars.
pub fn build(
    stubs: &BTreeMap<String, Stub>,
    mkimage: &Path,
    busybox: &Path,
    out: &Path,
) -> Result<Vec<String>, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let script = |name: &str, text: &str| -> Result<String, String> {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path.display().to_string())
    };
    let (idle, exit, sh, bash) =
        (script("idle", IDLE)?, script("exit", EXIT)?, script("sh", SH)?, script("bash", BASH)?);
    let mut tars = Vec::new();
    for (n, (image, stub)) in stubs.iter().enumerate() {
        let tar = out.join(format!("stub-{n}.tar")).display().to_string();
        let entrypoint = if stub.exits { &exit } else { &idle };
        let mut command = Command::new(mkimage);
        command.args([&tar, image, "--base"]).arg(busybox);
        command.args(["--file", &format!("{entrypoint}:/usr/local/bin/operand:0755")]);
        command.args(["--file", &format!("{sh}:/usr/local/bin/sh:0755")]);
        if stub.bash {
            command.args(["--file", &format!("{bash}:/bin/bash:0755")]);
        }
        for path in &stub.executables {
            command.args(["--file", &format!("{idle}:{path}:0755")]);
        }
        command.args(["--entrypoint", "[\"/usr/local/bin/operand\"]"]);
        let output = command.output().map_err(|e| format!("{}: {e}", mkimage.display()))?;
        if !output.status.success() {
            return Err(format!("mkimage {image}: {}", String::from_utf8_lossy(&output.stderr)));
        }
        tars.push(tar);
    }
    Ok(tars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn daemonset(init: Value, containers: Value) -> Value {
        json!({"kind": "DaemonSet", "spec": {"template": {"spec": {"initContainers": init, "containers": containers}}}})
    }

    #[test]
    fn an_init_container_running_the_images_entrypoint_gets_an_exiting_stub() {
        let objects =
            [daemonset(json!([{"image": "init:1", "args": ["--node-name", "x"]}]), json!([{"image": "driver:1"}]))];
        let stubs = plan(&objects).unwrap();
        assert!(stubs["init:1"].exits);
        assert!(!stubs["driver:1"].exits);
    }

    #[test]
    fn the_paths_a_command_or_its_shell_script_runs_are_stood_in_for() {
        let objects = [daemonset(
            json!([{"image": "dp:1", "command": ["sh", "-c"], "args": ["until lsmod | grep mlx5_core; do sleep 30; done"]}]),
            json!([
                {"image": "dp:1", "command": ["/bin/k8s-rdma-shared-dp"]},
                {"image": "wh:1", "command": ["/bin/sh"], "args": ["-c", "SLEEP=false /install-cni.sh &&\n/ip-control-loop\n"]},
                {"image": "dts:1", "command": ["/bin/bash", "-c", "rm -rf /config/* && DTS_CONFIG_DIR=host /usr/bin/telemetry-init.sh"]}
            ]),
        )];
        let stubs = plan(&objects).unwrap();
        assert_eq!(stubs["dp:1"].executables, BTreeSet::from(["/bin/k8s-rdma-shared-dp".to_string()]));
        assert_eq!(
            stubs["wh:1"].executables,
            BTreeSet::from(["/install-cni.sh".to_string(), "/ip-control-loop".to_string()])
        );
        assert_eq!(stubs["dts:1"].executables, BTreeSet::from(["/usr/bin/telemetry-init.sh".to_string()]));
        assert!(stubs["dts:1"].bash);
        assert!(!stubs["wh:1"].bash);
    }

    #[test]
    fn an_image_both_idling_and_exiting_is_refused_by_name() {
        let objects = [daemonset(json!([{"image": "x:1"}]), json!([{"image": "x:1"}]))];
        let error = plan(&objects).unwrap_err();
        assert!(error.contains("x:1"), "{error}");
    }

    #[test]
    fn objects_without_pods_are_ignored() {
        let objects = [json!({"kind": "ConfigMap", "data": {"image": "nope"}})];
        assert!(plan(&objects).unwrap().is_empty());
    }
}
