//! The API server accepts every CRD (structural schemas, valid CEL), enforces its rules, and
//! accepts everything the original's CRDs accept: every example CR and the optional shapes.

use api::NicClusterPolicy;
use e2e::TestEnv;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use std::path::Path;

fn dry_run() -> PostParams {
    PostParams { dry_run: true, ..Default::default() }
}

/// Dry-run creates `object` (a document of one of our kinds) and returns the server's error.
async fn create(client: &Client, object: &Value) -> Result<(), String> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let definition = api::crd::for_type(api_version, kind).unwrap_or_else(|| panic!("no CRD for {api_version} {kind}"));
    let version = &definition.spec.versions[0].name;
    let gvk = GroupVersionKind::gvk(&definition.spec.group, version, kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, &definition.spec.names.plural);
    let api: Api<DynamicObject> = if definition.spec.scope == "Namespaced" {
        Api::namespaced_with(client.clone(), "default", &resource)
    } else {
        Api::all_with(client.clone(), &resource)
    };
    let mut object: DynamicObject = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
    if definition.spec.scope == "Namespaced" {
        object.metadata.namespace = Some("default".into()); // e.g. the example IPPool's nvidia-network-operator
    }
    api.create(&dry_run(), &object).await.map(|_| ()).map_err(|e| e.to_string())
}

fn policy(spec: Value) -> Value {
    json!({"apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy",
           "metadata": {"name": "nic-cluster-policy"}, "spec": spec})
}

fn image() -> Value {
    json!({"image": "x", "repository": "nvcr.io/nvidia", "version": "23.04-0.5.3.3.1"})
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn the_api_server_accepts_every_crd_and_enforces_the_policy_rules() {
    let Some(env) = TestEnv::new("netop-e2e-crds").await else { return };
    let policies: Api<NicClusterPolicy> = Api::all(env.client.clone());
    let mut wrong_name = NicClusterPolicy::new("my-policy", Default::default());
    wrong_name.metadata.name = Some("my-policy".into());
    let err = policies.create(&dry_run(), &wrong_name).await.expect_err("another name is refused");
    assert!(err.to_string().contains("only the NicClusterPolicy named nic-cluster-policy"), "{err}");

    let mut ofed = image();
    ofed["upgradePolicy"] = json!({"safeLoad": true});
    let err = create(&env.client, &policy(json!({"ofedDriver": ofed}))).await.expect_err("safeLoad alone is refused");
    assert!(err.contains("safeLoad requires autoUpgrade"), "{err}");

    for bad in [json!(0), json!("0%"), json!("lots"), json!("150%"), json!("25")] {
        let mut ofed = image();
        ofed["upgradePolicy"] = json!({"autoUpgrade": true, "maxUnavailable": bad});
        let err = create(&env.client, &policy(json!({"ofedDriver": ofed}))).await.expect_err("refused");
        assert!(err.contains("maxUnavailable must be a number of nodes (at least 1) or a percentage"), "{bad}: {err}");
    }
    let mut ofed = image();
    ofed["repository"] = json!("https://nvcr.io/nvidia/");
    let err = create(&env.client, &policy(json!({"ofedDriver": ofed}))).await.expect_err("a URL is refused");
    assert!(err.contains("spec.ofedDriver.repository") && err.contains("no scheme, tag, digest"), "{err}");
    let mut ofed = image();
    ofed["version"] = json!("latest");
    let err = create(&env.client, &policy(json!({"ofedDriver": ofed}))).await.expect_err("latest is refused");
    assert!(err.contains("spec.ofedDriver.version") && err.contains("must be a driver version"), "{err}");
    let mut doca = image();
    doca["config"] = json!({"fromConfigMap": "My_Config"});
    let err = create(&env.client, &policy(json!({"docaTelemetryService": doca}))).await.expect_err("refused");
    assert!(err.contains("spec.docaTelemetryService.config.fromConfigMap") && err.contains("DNS-1123"), "{err}");
    let network = json!({"apiVersion": "mellanox.com/v1alpha1", "kind": "HostDeviceNetwork",
                         "metadata": {"name": "bad-resource"}, "spec": {"resourceName": "my resource"}});
    let err = create(&env.client, &network).await.expect_err("a blank in resourceName is refused");
    assert!(err.contains("spec.resourceName") && err.contains("device-plugin resource name"), "{err}");

    // Anchored patterns: an image or version no runtime can pull is refused at apply time.
    for (field, value) in [
        ("image", "img:tag"),
        ("image", "../../etc/x"),
        ("version", "v1\nkind: Secret"),
        ("version", "sha256:zz"),
        ("version", "$(reboot)-x"),
    ] {
        let mut rdma = image();
        rdma[field] = json!(value);
        let err = create(&env.client, &policy(json!({"rdmaSharedDevicePlugin": rdma}))).await.expect_err(value);
        assert!(err.contains(&format!("spec.rdmaSharedDevicePlugin.{field}")), "{value:?}: {err}");
    }
    for repository in api::image::REPOSITORIES_REFUSED {
        let mut ofed = image();
        ofed["repository"] = json!(repository);
        let err = create(&env.client, &policy(json!({"ofedDriver": ofed}))).await.expect_err(repository);
        assert!(err.contains("spec.ofedDriver.repository"), "{repository:?}: {err}");
    }
    for repository in api::image::REPOSITORIES_ACCEPTED {
        let mut ofed = image();
        ofed["repository"] = json!(repository);
        create(&env.client, &policy(json!({"ofedDriver": ofed}))).await.unwrap_or_else(|e| panic!("{repository}: {e}"));
    }
    // spec.global: its repository is checked as a section's; a section may leave its
    // repository and version to it; the Deployment placement fields are accepted.
    let err = create(&env.client, &policy(json!({"global": {"repository": "https://nvcr.io/nvidia"}})))
        .await
        .expect_err("a URL is refused in global too");
    assert!(err.contains("spec.global.repository") && err.contains("no scheme, tag, digest"), "{err}");
    let err = create(&env.client, &policy(json!({"global": {"version": "v1 2"}}))).await.expect_err("refused");
    assert!(err.contains("spec.global.version"), "{err}");
    create(
        &env.client,
        &policy(json!({
            "global": {"repository": "nvcr.io/nvidia", "version": "v1", "imagePullSecrets": ["s"]},
            "rdmaSharedDevicePlugin": {"image": "x", "useCdi": true},
            "ofedDriver": {"image": "doca-driver", "version": "doca3.3.0-26.01-0.5.6.0-0"},
            "deploymentTolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
            "deploymentNodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "node-role.kubernetes.io/infra", "operator": "Exists"}]}]}},
        })),
    )
    .await
    .expect("sections completed from spec.global are accepted");
    for good in [json!(2), json!("25%"), json!("100%")] {
        let mut ofed = image();
        ofed["upgradePolicy"] = json!({"autoUpgrade": true, "maxUnavailable": good});
        create(&env.client, &policy(json!({"ofedDriver": ofed}))).await.unwrap_or_else(|e| panic!("{good}: {e}"));
    }
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn every_example_cr_of_the_original_is_accepted() {
    let Some(env) = TestEnv::new("netop-e2e-crds").await else { return };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../example/crs");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut accepted = 0;
    for path in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
        let text = std::fs::read_to_string(&path).unwrap();
        let documents: Vec<Value> = serde_saphyr::from_str_multiple(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        for document in documents.into_iter().filter(|d| !d.is_null()) {
            let (api_version, kind) =
                (document["apiVersion"].as_str().unwrap_or_default(), document["kind"].as_str().unwrap_or_default());
            if api::crd::for_type(api_version, kind).is_none() {
                continue; // a kind whose CRD this project does not ship
            }
            create(&env.client, &document).await.unwrap_or_else(|e| panic!("{}: refused: {e}", path.display()));
            accepted += 1;
        }
    }
    assert!(accepted >= 18, "only {accepted} example documents were checked");
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn the_originals_optional_shapes_are_accepted() {
    let Some(env) = TestEnv::new("netop-e2e-crds").await else { return };
    // No spec at all, for every kind.
    for kind in
        ["NicClusterPolicy", "MacvlanNetwork", "HostDeviceNetwork", "IPoIBNetwork", "NetworkAttachmentDefinition"]
    {
        let definition = api::crd::for_kind(kind).unwrap();
        let name = if kind == "NicClusterPolicy" { "nic-cluster-policy" } else { "no-spec" };
        let object = json!({"apiVersion": format!("{}/{}", definition.spec.group, definition.spec.versions[0].name),
                            "kind": kind, "metadata": {"name": name}});
        create(&env.client, &object).await.unwrap_or_else(|e| panic!("{kind} without spec refused: {e}"));
    }
    // DOCA telemetry config without fromConfigMap; env key references with only a key.
    let mut dts = image();
    dts["config"] = json!({});
    let mut ofed = image();
    ofed["env"] = json!([
        {"name": "A", "valueFrom": {"configMapKeyRef": {"key": "a"}}},
        {"name": "B", "valueFrom": {"secretKeyRef": {"key": "b"}}},
        {"name": "C", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
    ]);
    create(&env.client, &policy(json!({"docaTelemetryService": dts, "ofedDriver": ofed})))
        .await
        .expect("optional fields are optional");
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn resource_quantities_are_checked_when_the_policy_is_applied() {
    let Some(env) = TestEnv::new("netop-e2e-crds").await else { return };
    let mut rdma = image();
    rdma["containerResources"] = json!([{"name": "rdma-shared-dp", "requests": {"cpu": "lots"}}]);
    let err = create(&env.client, &policy(json!({"rdmaSharedDevicePlugin": rdma}))).await.expect_err("cpu: lots");
    assert!(err.contains("spec.rdmaSharedDevicePlugin.containerResources[0].requests.cpu"), "{err}");
    let mut ofed = image();
    ofed["env"] =
        json!([{"name": "C", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1 Mi"}}}]);
    let err = create(&env.client, &policy(json!({"ofedDriver": ofed}))).await.expect_err("divisor: 1 Mi");
    assert!(err.contains("divisor"), "{err}");
    rdma["containerResources"] =
        json!([{"name": "rdma-shared-dp", "requests": {"cpu": "100m", "memory": 64}, "limits": {"memory": "1.5Gi"}}]);
    create(&env.client, &policy(json!({"rdmaSharedDevicePlugin": rdma}))).await.expect("valid quantities");
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn a_node_policy_is_cluster_scoped_answers_to_its_short_names_and_keeps_its_name_short() {
    let Some(env) = TestEnv::new("netop-e2e-crds").await else { return };
    let node_policy = |name: &str| {
        json!({"apiVersion": "mellanox.com/v1alpha1", "kind": "NicNodePolicy", "metadata": {"name": name},
               "spec": {"nodeSelector": {"pool": "a"}, "rdmaSharedDevicePlugin": image()}})
    };
    create(&env.client, &node_policy(&"p".repeat(59))).await.expect("59 characters are accepted");
    let error = create(&env.client, &node_policy(&"p".repeat(60))).await.expect_err("60 are refused");
    assert!(error.contains("a NicNodePolicy name has at most 59 characters"), "{error}");
    let definition = api::crd::for_kind("NicNodePolicy").expect("shipped");
    assert_eq!(definition.spec.scope, "Cluster");
    assert_eq!(definition.spec.names.short_names, Some(vec!["nicnode".to_string(), "nnp".to_string()]));
    let served =
        Api::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>::all(
            env.client.clone(),
        )
        .get("nicnodepolicies.mellanox.com")
        .await
        .expect("installed");
    assert_eq!(served.spec.names.short_names, definition.spec.names.short_names);
}
