//! Golden renders of NVIDIA IPAM: never the pools' CRDs; the webhook only where its certificate
//! can be issued (cert-manager, or OpenShift's service CA).

use api::NicClusterPolicy;
use kube::core::DynamicObject;
use nv_ipam::NvIpam;
use state_core::testing::{self, assert_round_trips, find, policy_from_file, to_yaml};
use state_core::{Observed, RenderContext, RenderError, State, render_state};

const EXAMPLE: &str = "example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr-nvidia-ipam.yaml";

/// What a cluster with cert-manager shows the controller.
fn with_cert_manager() -> Observed {
    Observed::default().serving_all(&NvIpam::kinds())
}

fn example(webhook: bool) -> NicClusterPolicy {
    let mut policy = policy_from_file(EXAMPLE);
    policy.spec.nv_ipam.as_mut().expect("the example has nvIpam").enable_webhook = Some(webhook);
    policy
}

fn golden(name: &str, policy: &NicClusterPolicy, openshift: bool, observed: &Observed) -> Vec<DynamicObject> {
    let objects = testing::render_observed::<NvIpam>(policy, openshift, observed);
    assert_round_trips(&objects);
    insta::assert_snapshot!(name, to_yaml(&objects));
    objects
}

fn kinds_and_names(objects: &[DynamicObject]) -> Vec<(String, String)> {
    objects
        .iter()
        .map(|o| (o.types.as_ref().unwrap().kind.clone(), o.metadata.name.clone().unwrap_or_default()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, n)| (k.to_string(), n.to_string())).collect()
}

const ALWAYS: [(&str, &str); 8] = [
    ("ServiceAccount", "nv-ipam-node"),
    ("ServiceAccount", "nv-ipam-controller"),
    ("ClusterRole", "nv-ipam-node"),
    ("ClusterRole", "nv-ipam-controller"),
    ("ClusterRoleBinding", "nv-ipam-node"),
    ("ClusterRoleBinding", "nv-ipam-controller"),
    ("Deployment", "nv-ipam-controller"),
    ("DaemonSet", "nv-ipam-node"),
];

fn container(objects: &[DynamicObject], kind: &str, name: &str) -> serde_json::Value {
    find(objects, kind, name).data["spec"]["template"]["spec"]["containers"][0].clone()
}

#[test]
fn the_upstream_example_renders_rbac_controller_and_node_agent_but_no_crd_and_no_webhook() {
    let objects = golden("upstream_example", &example(false), false, &Observed::default());
    assert_eq!(kinds_and_names(&objects), pairs(&ALWAYS));
    assert!(!NvIpam::kinds().iter().any(|k| k.resource.kind == "CustomResourceDefinition"), "never owns its CRDs");
    let controller = container(&objects, "Deployment", "nv-ipam-controller");
    assert_eq!(controller["image"], "ghcr.io/mellanox/nvidia-k8s-ipam:v0.1.2");
    assert!(!controller["args"].to_string().contains("--webhook"));
    assert_eq!(find(&objects, "Deployment", "nv-ipam-controller").data["spec"]["replicas"], 2);
    let node = find(&objects, "DaemonSet", "nv-ipam-node").data["spec"]["template"]["spec"].clone();
    assert_eq!(node["volumes"][0]["hostPath"]["path"], "/opt/cni/bin");
    assert!(node.get("hostNetwork").is_none() && node.get("nodeSelector").is_none(), "{node}");
    assert_eq!(node["containers"][0]["resources"]["limits"]["memory"], "300Mi");
}

#[test]
fn the_webhook_on_kubernetes_gets_its_certificate_from_cert_manager() {
    let objects = golden("webhook_kubernetes", &example(true), false, &with_cert_manager());
    let webhook = [
        ("Issuer", "nv-ipam-selfsigned-issuer"),
        ("Certificate", "nv-ipam-serving-cert"),
        ("Service", "nv-ipam-webhook-service"),
        ("ValidatingWebhookConfiguration", "nv-ipam-validating-webhook-configuration"),
    ];
    let mut expected = ALWAYS[..6].to_vec();
    expected.extend(webhook);
    expected.extend(&ALWAYS[6..]);
    assert_eq!(kinds_and_names(&objects), pairs(&expected));
    let certificate = find(&objects, "Certificate", "nv-ipam-serving-cert");
    assert_eq!(
        certificate.data["spec"]["dnsNames"],
        serde_json::json!([
            "nv-ipam-webhook-service.nvidia-network-operator.svc",
            "nv-ipam-webhook-service.nvidia-network-operator.svc.cluster.local"
        ])
    );
    let configuration = find(&objects, "ValidatingWebhookConfiguration", "nv-ipam-validating-webhook-configuration");
    assert_eq!(
        configuration.metadata.annotations.as_ref().unwrap()["cert-manager.io/inject-ca-from"],
        "nvidia-network-operator/nv-ipam-serving-cert"
    );
    let hooks = configuration.data["webhooks"].as_array().unwrap();
    assert_eq!(hooks[1]["clientConfig"]["service"]["path"], "/validate-nv-ipam-nvidia-com-v1alpha1-cidrpool");
    let controller = container(&objects, "Deployment", "nv-ipam-controller");
    assert!(controller["args"].as_array().unwrap().contains(&"--webhook=true".into()));
    assert_eq!(controller["volumeMounts"][0]["mountPath"], "/tmp/k8s-webhook-server/serving-certs");
}

#[test]
fn the_webhook_on_kubernetes_without_cert_manager_waits_for_it_and_renders_nothing() {
    let policy = example(true);
    let ctx = RenderContext::new(testing::NAMESPACE, false, &policy);
    match render_state::<NvIpam>(&ctx) {
        Err(RenderError::Waiting(message)) => {
            assert!(
                message.starts_with("spec.nvIpam.enableWebhook: the webhook's serving certificate needs cert-manager")
            );
        }
        other => panic!("expected Waiting, got {other:?}"),
    }
    // Without the webhook cert-manager is not needed.
    let objects = testing::render::<NvIpam>(&example(false), false);
    assert_eq!(kinds_and_names(&objects), pairs(&ALWAYS));
}

#[test]
fn the_webhook_on_openshift_uses_the_service_ca_and_the_node_agent_its_scc() {
    let objects = golden("webhook_openshift", &example(true), true, &Observed::default());
    assert!(!objects.iter().any(|o| o.types.as_ref().unwrap().api_version.starts_with("cert-manager.io")));
    let service = find(&objects, "Service", "nv-ipam-webhook-service");
    assert_eq!(
        service.metadata.annotations.as_ref().unwrap()["service.alpha.openshift.io/serving-cert-secret-name"],
        "nv-ipam-webhook-server-cert"
    );
    let configuration = find(&objects, "ValidatingWebhookConfiguration", "nv-ipam-validating-webhook-configuration");
    assert_eq!(
        configuration.metadata.annotations.as_ref().unwrap()["service.beta.openshift.io/inject-cabundle"],
        "true"
    );
    find(&objects, "Role", "nv-ipam-node");
    let binding = find(&objects, "RoleBinding", "nv-ipam-node");
    assert_eq!(binding.data["subjects"][0]["name"], "nv-ipam-node");
    let node = find(&objects, "DaemonSet", "nv-ipam-node").data["spec"]["template"]["spec"].clone();
    assert_eq!(node["volumes"][0]["hostPath"]["path"], "/var/lib/cni/bin");
}

#[test]
fn policy_tolerations_affinity_pull_secrets_and_resources_are_applied() {
    let mut policy = example(false);
    testing::add_cross_cutting(&mut policy, |p| &mut p.spec.nv_ipam.as_mut().unwrap().image, "nv-ipam-node");
    let objects = golden("tolerations_affinity_secrets_resources", &policy, false, &Observed::default());
    let node = find(&objects, "DaemonSet", "nv-ipam-node").data["spec"]["template"]["spec"].clone();
    assert_eq!(node["imagePullSecrets"][0]["name"], "registry-secret");
    assert_eq!(node["containers"][0]["resources"]["limits"], serde_json::json!({"memory": "128Mi"}));
    assert!(node["tolerations"].to_string().contains("dedicated"));
    let controller = find(&objects, "Deployment", "nv-ipam-controller").data["spec"]["template"]["spec"].clone();
    assert_eq!(controller["imagePullSecrets"][0]["name"], "registry-secret");
    assert_eq!(controller["containers"][0]["resources"]["requests"]["memory"], "300Mi", "its own default");
    let affinity = &controller["affinity"]["nodeAffinity"];
    assert!(affinity["requiredDuringSchedulingIgnoredDuringExecution"].is_object(), "the policy's, as for every state");
    assert_eq!(affinity["preferredDuringSchedulingIgnoredDuringExecution"].as_array().unwrap().len(), 2, "kept");
}

#[test]
fn resources_of_an_unknown_container_are_an_error_naming_the_field() {
    let mut policy = example(false);
    testing::add_cross_cutting(&mut policy, |p| &mut p.spec.nv_ipam.as_mut().unwrap().image, "ipam");
    let err = testing::render_error::<NvIpam>(&policy);
    assert!(err.starts_with("spec.nvIpam.containerResources[0].name: no container \"ipam\""), "{err}");
}

#[test]
fn the_old_config_map_and_the_pool_crds_are_released_and_its_controller_may_read_and_patch_those_names() {
    let released = NvIpam::released();
    let released: Vec<(&str, &str)> = released.iter().map(|r| (r.kind.resource.kind.as_str(), r.name)).collect();
    assert_eq!(
        released,
        [
            ("ConfigMap", "nvidia-k8s-ipam-config"),
            ("CustomResourceDefinition", "ippools.nv-ipam.nvidia.com"),
            ("CustomResourceDefinition", "cidrpools.nv-ipam.nvidia.com"),
        ]
    );
    assert!(NvIpam::leftovers().is_empty(), "released, never deleted");
    let rbac = state_core::rbac::state_rbac::<NvIpam>(&example(true), &with_cert_manager());
    let rule = rbac
        .operands
        .to_policy_rules()
        .into_iter()
        .find(|r| r.resources.as_deref() == Some(&["configmaps".to_string()][..]) && r.resource_names.is_some())
        .expect("a rule on the old ConfigMap");
    assert_eq!(rule.resource_names.as_deref(), Some(&["nvidia-k8s-ipam-config".to_string()][..]));
    assert_eq!(rule.verbs, ["get", "patch"]);
    let crds: Vec<_> = rbac
        .cluster
        .to_policy_rules()
        .into_iter()
        .filter(|r| r.resources.as_deref() == Some(&["customresourcedefinitions".to_string()][..]))
        .collect();
    let mut names: Vec<String> = crds.iter().flat_map(|r| r.resource_names.clone().unwrap_or_default()).collect();
    names.sort();
    assert_eq!(names, ["cidrpools.nv-ipam.nvidia.com", "ippools.nv-ipam.nvidia.com"], "by name only");
    assert!(crds.iter().all(|r| r.verbs == ["get", "patch"]), "never delete, never list: {crds:?}");
}

#[test]
fn the_controller_writes_cert_manager_objects_its_webhook_and_its_cluster_roles_by_name_only() {
    let rbac = state_core::rbac::state_rbac::<NvIpam>(&example(true), &with_cert_manager());
    for resource in ["issuers", "certificates"] {
        assert!(rbac.operands.allows("cert-manager.io", resource, "any", "patch"), "{resource}");
    }
    let webhooks = "validatingwebhookconfigurations";
    let group = "admissionregistration.k8s.io";
    assert!(rbac.cluster.allows(group, webhooks, "nv-ipam-validating-webhook-configuration", "patch"));
    assert!(rbac.cluster.allows(group, webhooks, "any", "watch"));
    assert!(!rbac.cluster.allows(group, webhooks, "another-product", "delete"));
    let rbac_group = "rbac.authorization.k8s.io";
    for role in ["nv-ipam-controller", "nv-ipam-node"] {
        assert!(rbac.cluster.allows(rbac_group, "clusterroles", role, "escalate"), "{role}");
        assert!(rbac.cluster.allows(rbac_group, "clusterroles", role, "bind"), "{role}");
    }
    // What those ClusterRoles grant (pool status, ConfigMaps, nodes) the controller does not hold.
    assert!(!rbac.cluster.allows("nv-ipam.nvidia.com", "ippools/status", "any", "update"));
    assert!(!rbac.cluster.allows("", "configmaps", "any", "delete"));
    assert!(!rbac.cluster.allows("", "nodes", "any", "patch"));
    assert!(rbac.unjustified().is_empty(), "{:?}", rbac.unjustified());
}
