//! The Helm charts: generated files up to date, RBAC without wildcards or group bindings,
//! dashboards and alerts on metric names the binaries export, and (where helm is installed) the
//! rendered manifests parsed back into their typed structs.

use api::parse::round_trip_losses;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const CONTROLLERS: [&str; 15] = [
    "aggregator",
    "ofed",
    "rdma-dp",
    "sriov-dp",
    "nic-feature-discovery",
    "doca-telemetry",
    "ib-kubernetes",
    "multus",
    "cni-plugins",
    "ipoib",
    "whereabouts",
    "nv-ipam",
    "nic-configuration",
    "spectrum-x",
    "network-nads",
];

/// Every chart with generated RBAC: the controllers, and the single-process install of them all.
fn rbac_charts() -> impl Iterator<Item = &'static str> {
    CONTROLLERS.into_iter().chain(["all-in-one"])
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn umbrella() -> PathBuf {
    repo().join("charts/network-operator")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_charts_rbac_files_are_what_nicctl_generates() {
    let dir = std::env::temp_dir().join(format!("nicctl-rbac-{}", std::process::id()));
    for chart in rbac_charts() {
        std::fs::create_dir_all(dir.join(chart).join("files")).unwrap();
    }
    let output = Command::new(env!("CARGO_BIN_EXE_nicctl")).args(["rbac", "--dir"]).arg(&dir).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for chart in rbac_charts() {
        let generated = read(&dir.join(chart).join("files/rbac.yaml"));
        let shipped = read(&umbrella().join("charts").join(chart).join("files/rbac.yaml"));
        assert_eq!(
            shipped, generated,
            "charts/network-operator/charts/{chart}/files/rbac.yaml is stale: run hack/update-generated.sh"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_charts_crds_are_the_generated_crds() {
    let mut shipped: Vec<String> = std::fs::read_dir(umbrella().join("crds"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    shipped.sort();
    let expected: Vec<String> =
        api::crd::all().iter().map(api::crd::file_name).collect::<BTreeSet<_>>().into_iter().collect();
    assert_eq!(
        shipped, expected,
        "charts/network-operator/crds/ holds other files than crds/: run hack/update-generated.sh"
    );
    for name in expected {
        assert_eq!(
            read(&umbrella().join("crds").join(&name)),
            read(&repo().join("crds").join(&name)),
            "charts/network-operator/crds/{name} differs from crds/{name}: run hack/update-generated.sh"
        );
    }
}

#[test]
fn no_controller_is_granted_a_wildcard() {
    for chart in rbac_charts() {
        let text = read(&umbrella().join("charts").join(chart).join("files/rbac.yaml"));
        assert!(!text.contains('*'), "{chart} grants a wildcard:\n{text}");
    }
}

/// Metric names a PromQL expression uses: identifiers right before a `{` selector.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{").unwrap();
    re.captures_iter(expr).map(|c| c[1].to_string()).collect()
}

fn exported(name: &str, known: &[String]) -> bool {
    // Prometheus' own `up`, and the series of a histogram.
    name == "up"
        || known
            .iter()
            .any(|k| k == name || ["_bucket", "_sum", "_count"].iter().any(|suffix| name == format!("{k}{suffix}")))
}

#[test]
fn dashboards_and_alerts_use_only_metrics_the_binaries_export() {
    let known = state_core::metrics::Metrics::new().names();
    let dashboard: Value = serde_json::from_str(&read(&umbrella().join("dashboards/network-operator.json"))).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    for line in read(&umbrella().join("templates/prometheusrule.yaml")).lines() {
        if let Some(expr) = line.trim().strip_prefix("expr:") {
            exprs.push(expr.to_string());
        }
    }
    assert!(exprs.len() >= 12, "only {} queries found", exprs.len());
    let mut used = BTreeSet::new();
    for expr in &exprs {
        for name in metric_names(expr) {
            assert!(exported(&name, &known), "{name} (in {expr}) is not exported by the binaries: {known:?}");
            used.insert(name);
        }
    }
    for wanted in ["network_operator_policy_state", "network_operator_state", "network_operator_reconcile_total"] {
        assert!(used.contains(wanted), "nothing shows {wanted}");
    }
}

fn collect_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => collect_exprs(child, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_exprs(item, out)),
        _ => {}
    }
}

/// The helm binary: `NETOP_HELM`, or `helm` on the PATH; `None` (after saying so) without one.
fn helm() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("NETOP_HELM") {
        return Some(PathBuf::from(path));
    }
    let found = Command::new("helm").arg("version").output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipping: no helm (install it with hack/install-helm.sh and put it on the PATH)");
    }
    found.then(|| PathBuf::from("helm"))
}

/// `helm template` of the umbrella chart with `args`: the rendered documents.
fn template(helm: &Path, args: &[&str]) -> Vec<Value> {
    let output = Command::new(helm)
        .args(["template", "network-operator", "charts/network-operator", "--namespace", "nvidia-network-operator"])
        .args(args)
        .current_dir(repo())
        .output()
        .expect("helm runs");
    assert!(output.status.success(), "helm template {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    let documents: Vec<Value> = serde_saphyr::from_str_multiple(&text).expect("helm renders YAML");
    documents.into_iter().filter(|d| !d.is_null()).collect()
}

fn losses(document: &Value) -> Vec<String> {
    match document["kind"].as_str().unwrap_or_default() {
        "Deployment" => round_trip_losses::<Deployment>(document),
        "ServiceAccount" => round_trip_losses::<ServiceAccount>(document),
        "Service" => round_trip_losses::<Service>(document),
        "ConfigMap" => round_trip_losses::<ConfigMap>(document),
        "ClusterRole" => round_trip_losses::<ClusterRole>(document),
        "ClusterRoleBinding" => round_trip_losses::<ClusterRoleBinding>(document),
        "Role" => round_trip_losses::<Role>(document),
        "RoleBinding" => round_trip_losses::<RoleBinding>(document),
        "NicClusterPolicy" => round_trip_losses::<api::NicClusterPolicy>(document),
        // The prometheus-operator and NFD kinds have no types here: only well-formed YAML.
        "ServiceMonitor" | "PrometheusRule" | "NodeFeatureRule" => Vec::new(),
        other => vec![format!("unexpected kind {other}")],
    }
}

fn kinds(documents: &[Value]) -> Vec<(String, String)> {
    documents
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap_or_default().to_string(),
                d["metadata"]["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn every_rendered_manifest_round_trips_through_its_type() {
    let Some(helm) = helm() else { return };
    let monitoring = [
        "--api-versions",
        "monitoring.coreos.com/v1/ServiceMonitor",
        "--api-versions",
        "monitoring.coreos.com/v1/PrometheusRule",
        "--api-versions",
        "nfd.k8s-sigs.io/v1alpha1/NodeFeatureRule",
        "--set",
        "global.serviceMonitor.enabled=true",
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "grafanaDashboard.enabled=true",
    ];
    let cases: [&[&str]; 3] = [
        &[],
        &monitoring,
        &["-f", "charts/network-operator/ci/every-section-values.yaml", "--set", "rdma-dp.replicas=2"],
    ];
    for args in cases {
        let documents = template(&helm, args);
        for document in &documents {
            let lost = losses(document);
            assert!(
                lost.is_empty(),
                "{args:?}: {} {} loses fields: {lost:#?}",
                document["kind"],
                document["metadata"]["name"]
            );
        }
        for binding in documents.iter().filter(|d| d["kind"].as_str().is_some_and(|k| k.ends_with("Binding"))) {
            for subject in binding["subjects"].as_array().unwrap() {
                assert_eq!(
                    subject["kind"], "ServiceAccount",
                    "{args:?}: a binding to something else than its ServiceAccount: {binding}"
                );
            }
        }
    }
    let monitored = kinds(&template(&helm, &monitoring));
    for kind in ["ServiceMonitor", "PrometheusRule", "NodeFeatureRule", "ConfigMap"] {
        assert!(monitored.iter().any(|(k, _)| k == kind), "no {kind} with monitoring on: {monitored:?}");
    }
}

#[test]
fn each_controller_is_a_hardened_deployment_with_its_own_service_account() {
    let Some(helm) = helm() else { return };
    let documents = template(&helm, &["--set", "rdma-dp.replicas=2"]);
    let deployments: Vec<&Value> = documents.iter().filter(|d| d["kind"] == "Deployment").collect();
    assert_eq!(deployments.len(), CONTROLLERS.len(), "{:?}", kinds(&documents));
    for deployment in deployments {
        let name = deployment["metadata"]["name"].as_str().unwrap();
        let pod = &deployment["spec"]["template"]["spec"];
        let account = pod["serviceAccountName"].as_str().unwrap();
        assert!(documents.iter().any(|d| d["kind"] == "ServiceAccount" && d["metadata"]["name"] == account), "{name}");
        let container = &pod["containers"][0];
        let security = &container["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(security["runAsNonRoot"], true, "{name}");
        assert_eq!(security["capabilities"]["drop"][0], "ALL", "{name}");
        assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz", "{name}");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz", "{name}");
        let env: Vec<&str> = container["env"].as_array().unwrap().iter().filter_map(|e| e["name"].as_str()).collect();
        for flag in ["OPERANDS_NAMESPACE", "METRICS_ADDR", "LEADER_ELECT", "POD_NAME", "LOG_FORMAT", "CLUSTER_TYPE"] {
            assert!(env.contains(&flag), "{name} lacks {flag}: {env:?}");
        }
        let leader_elect = container["env"].as_array().unwrap().iter().find(|e| e["name"] == "LEADER_ELECT").unwrap();
        let wanted = if deployment["spec"]["replicas"] == 2 { "true" } else { "false" };
        assert_eq!(leader_elect["value"], wanted, "{name}");
    }
}

#[test]
fn a_mistyped_value_is_refused_naming_it() {
    let Some(helm) = helm() else { return };
    let output = Command::new(&helm)
        .args(["template", "network-operator", "charts/network-operator", "--set", "rdma-dp.replicaz=2"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("replicaz"), "{stderr}");
}

#[test]
fn deploy_cr_with_the_seed_values_renders_the_seed_policy() {
    let Some(helm) = helm() else { return };
    let documents = template(&helm, &["-f", "charts/network-operator/ci/seed-policy-values.yaml"]);
    let rendered = documents.iter().find(|d| d["kind"] == "NicClusterPolicy").expect("deployCR renders the policy");
    let rendered: api::NicClusterPolicy = serde_json::from_value(rendered.clone()).unwrap();
    let seed =
        match api::parse::parse_all(&read(&repo().join("example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr.yaml")))
            .unwrap()
            .remove(0)
        {
            api::parse::Document::Policy(policy) => *policy,
            other => panic!("{other:?}"),
        };
    let sections = |p: &api::NicClusterPolicy| {
        api::state::names::ALL.iter().filter(|s| p.spec.has_section(s)).copied().collect::<Vec<_>>()
    };
    assert_eq!(sections(&rendered), sections(&seed));
    let ofed = |p: &api::NicClusterPolicy| p.spec.ofed_driver.as_ref().unwrap().image.reference();
    assert_eq!(ofed(&rendered), ofed(&seed));
    let rdma = |p: &api::NicClusterPolicy| p.spec.rdma_shared_device_plugin.clone().unwrap();
    assert_eq!(rdma(&rendered).image.reference(), rdma(&seed).image.reference());
    let config =
        |p: &api::NicClusterPolicy| -> Value { serde_json::from_str(rdma(p).config.as_deref().unwrap()).unwrap() };
    assert_eq!(config(&rendered)["configList"][0]["resourceName"], config(&seed)["configList"][0]["resourceName"]);
    assert_eq!(
        config(&rendered)["configList"][0]["selectors"]["ifNames"],
        config(&seed)["configList"][0]["selectors"]["ifNames"]
    );
    assert_eq!(rendered.spec.tolerations, seed.spec.tolerations);
}

#[test]
fn the_all_in_one_values_install_one_deployment_with_the_union_of_the_rbac() {
    let Some(helm) = helm() else { return };
    let documents = template(&helm, &["-f", "charts/network-operator/values-all-in-one.yaml"]);
    let deployments: Vec<&Value> = documents.iter().filter(|d| d["kind"] == "Deployment").collect();
    assert_eq!(deployments.len(), 1, "{:?}", kinds(&documents));
    assert_eq!(deployments[0]["metadata"]["name"], "network-operator-all-in-one");
    let image = deployments[0]["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap();
    assert!(image.contains("/network-operator:"), "{image}");
    let cluster_role = documents
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "network-operator-all-in-one")
        .expect("the all-in-one ClusterRole");
    let resources: BTreeSet<&str> = cluster_role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["resources"].as_array().unwrap().iter().filter_map(Value::as_str))
        .collect();
    // What the OFED controller (nodes), the aggregator (events), network-nads (the network CRs)
    // and the CNI states (ClusterRoles) need, in one role.
    for wanted in ["nodes", "events", "macvlannetworks", "clusterroles", "nicclusterpolicies/status"] {
        assert!(resources.contains(wanted), "the all-in-one ClusterRole lacks {wanted}: {resources:?}");
    }
}

#[test]
fn all_in_one_beside_a_per_controller_chart_is_refused_naming_it() {
    let Some(helm) = helm() else { return };
    let mut args = vec!["template", "network-operator", "charts/network-operator", "--set", "all-in-one.enabled=true"];
    let off: Vec<String> = CONTROLLERS.iter().filter(|c| **c != "ofed").map(|c| format!("{c}.enabled=false")).collect();
    for value in &off {
        args.extend(["--set", value.as_str()]);
    }
    let output = Command::new(&helm).args(&args).current_dir(repo()).output().unwrap();
    assert!(!output.status.success(), "all-in-one beside ofed was accepted");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("these must be off: ofed"), "{stderr}");
}

#[test]
fn no_controller_pod_is_evicted_by_a_driver_upgrades_drain() {
    let Some(helm) = helm() else { return };
    let installs: [&[&str]; 2] =
        [&["--set", "admission.enabled=true"], &["-f", "charts/network-operator/values-all-in-one.yaml"]];
    for args in installs {
        let documents = template(&helm, args);
        let deployments: Vec<&Value> = documents.iter().filter(|d| d["kind"] == "Deployment").collect();
        assert!(!deployments.is_empty(), "{args:?}");
        for deployment in deployments {
            let labels = &deployment["spec"]["template"]["metadata"]["labels"];
            assert_eq!(
                labels["nvidia.com/ofed-driver-upgrade-drain.skip"], "true",
                "{args:?}: {} lacks the drain-skip label",
                deployment["metadata"]["name"]
            );
        }
    }
}

/// The environment the chart gives the OFED controller from `ofedDriver.initContainer`.
fn ofed_settings(helm: &Path, args: &[&str]) -> Value {
    let documents = template(helm, args);
    let settings = documents
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "network-operator-ofed-settings")
        .expect("the OFED settings ConfigMap");
    let controller = documents
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "network-operator-ofed")
        .expect("the OFED controller");
    let env_from = &controller["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"];
    assert_eq!(env_from["name"], "network-operator-ofed-settings", "{controller}");
    settings["data"].clone()
}

#[test]
fn the_init_container_values_reach_the_ofed_controller() {
    let Some(helm) = helm() else { return };
    let default = ofed_settings(&helm, &[]);
    assert_eq!(default["OFED_INIT_CONTAINER_IMAGE"], "ghcr.io/mellanox/network-operator-init-container:v0.0.2");
    let mirrored = ofed_settings(
        &helm,
        &[
            "--set",
            "ofedDriver.initContainer.repository=registry.local:5000/mellanox",
            "--set",
            "ofedDriver.initContainer.image=init",
            "--set",
            "ofedDriver.initContainer.version=v1.2",
        ],
    );
    assert_eq!(mirrored["OFED_INIT_CONTAINER_IMAGE"], "registry.local:5000/mellanox/init:v1.2");
    let off = ofed_settings(&helm, &["--set", "ofedDriver.initContainer.enable=false"]);
    assert_eq!(off["OFED_INIT_CONTAINER_IMAGE"], "", "no init container");
}

#[test]
fn global_image_registry_and_tag_select_every_controller_image_unless_a_chart_sets_its_own_tag() {
    let Some(helm) = helm() else { return };
    let documents = template(
        &helm,
        &[
            "--set",
            "global.image.registry=registry.local:5000/netop/",
            "--set",
            "global.image.tag=1.2.3-patched",
            "--set",
            "rdma-dp.image.tag=own",
        ],
    );
    let deployments: Vec<&Value> = documents.iter().filter(|d| d["kind"] == "Deployment").collect();
    assert_eq!(deployments.len(), CONTROLLERS.len());
    for deployment in deployments {
        let name = deployment["metadata"]["name"].as_str().unwrap();
        let image = deployment["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap();
        let (repository, tag) = image.rsplit_once(':').unwrap();
        assert!(repository.starts_with("registry.local:5000/netop/") && !repository.contains("//"), "{name}: {image}");
        let wanted = if name.ends_with("rdma-dp") { "own" } else { "1.2.3-patched" };
        assert_eq!(tag, wanted, "{name}: {image}");
    }
}
