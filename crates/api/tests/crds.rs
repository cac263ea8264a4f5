//! The generated CRDs: up to date in `crds/`, structural, and with CEL rules that compile and hold.

use api::crd;
use serde_json::{Value, json};
use std::path::PathBuf;

const REGENERATE: &str = "hack/update-generated.sh";

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../crds")
}

#[test]
fn crds_in_the_repository_match_the_types() {
    let mut stale = Vec::new();
    for definition in crd::all() {
        let name = crd::file_name(&definition);
        let expected = crd::to_yaml(&definition).expect("CRD serialises");
        match std::fs::read_to_string(crds_dir().join(&name)) {
            Ok(actual) if actual == expected => {}
            Ok(_) => stale.push(format!("crds/{name} is stale")),
            Err(e) => stale.push(format!("crds/{name} cannot be read: {e}")),
        }
    }
    assert!(stale.is_empty(), "{}\nregenerate with: {REGENERATE}", stale.join("\n"));
}

#[test]
fn crds_directory_holds_no_file_the_types_do_not_generate() {
    let expected: Vec<String> = crd::all().iter().map(crd::file_name).collect();
    for entry in std::fs::read_dir(crds_dir()).expect("crds/ exists") {
        let name = entry.expect("readable entry").file_name().to_string_lossy().into_owned();
        assert!(expected.contains(&name), "crds/{name} is not generated; remove it or regenerate with: {REGENERATE}");
    }
}

#[test]
fn every_crd_schema_is_structural() {
    for definition in crd::all() {
        let problems = api::schema::structural_problems(&crd::schema_json(&definition));
        assert!(problems.is_empty(), "{}: {problems:#?}", definition.metadata.name.unwrap_or_default());
    }
}

#[test]
fn every_crd_has_a_status_subresource_and_the_original_printer_columns() {
    for definition in crd::all().into_iter().filter(|c| c.spec.group == api::GROUP) {
        let version = &definition.spec.versions[0];
        assert_eq!(definition.spec.scope, "Cluster");
        assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.as_str(), c.json_path.as_str()))
            .collect();
        assert_eq!(columns, [("Status", ".status.state"), ("Age", ".metadata.creationTimestamp")]);
    }
}

#[test]
fn applied_states_is_a_map_list_keyed_by_name() {
    let schema = crd::schema_json(&crd::nic_cluster_policy());
    let applied = &schema["properties"]["status"]["properties"]["appliedStates"];
    assert_eq!(applied["x-kubernetes-list-type"], "map");
    assert_eq!(applied["x-kubernetes-list-map-keys"], json!(["name"]));
    assert_eq!(applied["items"]["required"], json!(["name", "state"]));
}

fn policy(spec: Value) -> Value {
    json!({"apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy",
           "metadata": {"name": "nic-cluster-policy"}, "spec": spec})
}

fn cel_failures(object: &Value) -> Vec<String> {
    let schema = crd::schema_json(&crd::nic_cluster_policy());
    match kube::core::cel::Validator::new().validate(&schema, object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec().into_iter().map(|e| format!("{}: {}", e.field_path, e.message)).collect(),
    }
}

fn image() -> Value {
    json!({"image": "x", "repository": "r", "version": "23.04-0.5.3.3.1"})
}

#[test]
fn cel_rules_name_a_bad_repository_ofed_version_and_telemetry_config_map() {
    let mut ofed = image();
    ofed["repository"] = json!("https://nvcr.io/nvidia/");
    ofed["version"] = json!("latest");
    let mut doca = image();
    doca["config"] = json!({"fromConfigMap": "My_Config"});
    let failures = cel_failures(&policy(json!({"ofedDriver": ofed, "docaTelemetryService": doca})));
    let mut fields: Vec<&str> = failures.iter().map(|f| f.split(':').next().unwrap_or_default()).collect();
    fields.sort();
    assert_eq!(
        fields,
        ["spec.docaTelemetryService.config.fromConfigMap", "spec.ofedDriver.repository", "spec.ofedDriver.version"],
        "{failures:?}"
    );
}

#[test]
fn cel_rules_accept_a_valid_policy() {
    let mut ofed = image();
    ofed["upgradePolicy"] = json!({"autoUpgrade": true, "safeLoad": true});
    let mut ib = image();
    ib["pKeyGUIDPoolRangeStart"] = json!("02:00:00:00:00:00:00:00");
    ib["pKeyGUIDPoolRangeEnd"] = json!("02:FF:FF:FF:FF:FF:FF:FF");
    assert_eq!(cel_failures(&policy(json!({"ofedDriver": ofed, "ibKubernetes": ib}))), Vec::<String>::new());
}

#[test]
fn cel_rule_refuses_another_policy_name() {
    let mut object = policy(json!({}));
    object["metadata"]["name"] = json!("my-policy");
    let failures = cel_failures(&object);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("only the NicClusterPolicy named nic-cluster-policy"), "{failures:?}");
}

#[test]
fn cel_rule_refuses_safe_load_without_auto_upgrade() {
    let mut ofed = image();
    ofed["upgradePolicy"] = json!({"safeLoad": true});
    let failures = cel_failures(&policy(json!({"ofedDriver": ofed})));
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("safeLoad requires autoUpgrade"), "{failures:?}");
}

#[test]
fn cel_rule_refuses_a_guid_range_that_ends_before_it_starts() {
    let mut ib = image();
    ib["pKeyGUIDPoolRangeStart"] = json!("02:FF:00:00:00:00:00:00");
    ib["pKeyGUIDPoolRangeEnd"] = json!("02:00:00:00:00:00:00:00");
    let failures = cel_failures(&policy(json!({"ibKubernetes": ib})));
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("pKeyGUIDPoolRangeEnd must be greater"), "{failures:?}");
}

#[test]
fn guid_format_is_enforced_by_the_schema_pattern() {
    let mut ib = image();
    ib["pKeyGUIDPoolRangeStart"] = json!("02:00:00");
    let violations =
        api::schema::validate(&crd::schema_json(&crd::nic_cluster_policy()), &policy(json!({"ibKubernetes": ib})));
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].path, "spec.ibKubernetes.pKeyGUIDPoolRangeStart");
}

fn violations(object: &Value) -> Vec<String> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let definition = crd::for_type(api_version, kind).unwrap_or_else(|| panic!("no CRD for {kind}"));
    api::schema::validate(&crd::schema_json(&definition), object).into_iter().map(|v| v.to_string()).collect()
}

#[test]
fn resource_quantities_must_look_like_quantities() {
    let mut rdma = image();
    rdma["containerResources"] =
        json!([{"name": "rdma-shared-dp", "requests": {"cpu": "lots", "memory": "64Mi"}, "limits": {"cpu": 2}}]);
    let found = violations(&policy(json!({"rdmaSharedDevicePlugin": rdma})));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("spec.rdmaSharedDevicePlugin.containerResources[0].requests.cpu:"), "{found:?}");

    let mut ofed = image();
    ofed["env"] =
        json!([{"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1 Mi"}}}]);
    let found = violations(&policy(json!({"ofedDriver": ofed})));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("spec.ofedDriver.env[0].valueFrom.resourceFieldRef.divisor:"), "{found:?}");
}

#[test]
fn every_quantity_in_every_crd_has_the_quantity_schema() {
    fn count(schema: &Value) -> usize {
        let own = usize::from(schema.get("pattern").and_then(Value::as_str) == Some(crd::QUANTITY_PATTERN));
        let children: usize = match schema {
            Value::Object(map) => map.values().map(count).sum(),
            Value::Array(items) => items.iter().map(count).sum(),
            _ => 0,
        };
        own + children
    }
    let policy_schema = crd::schema_json(&crd::nic_cluster_policy());
    let text = policy_schema.to_string();
    assert!(!text.contains("Quantity is a fixed-point"), "a quantity kept the plain int-or-string schema");
    // requests + limits of every image's containerResources (15: one per section, 4 of them
    // inside secondaryNetwork, but two for the NIC configuration operator and Spectrum-X's
    // xPlane) and the env divisors of OFED and the NIC configuration operator.
    assert_eq!(count(&policy_schema), 2 * 15 + 2);
}

#[test]
fn no_crd_requires_spec_at_the_root() {
    for definition in crd::all() {
        let required = crd::schema_json(&definition)["required"].clone();
        assert!(
            !required.as_array().into_iter().flatten().any(|r| r == "spec"),
            "{} requires spec",
            definition.metadata.name.unwrap_or_default()
        );
    }
    let bare: api::NicClusterPolicy =
        serde_json::from_value(json!({"apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy",
                                      "metadata": {"name": "nic-cluster-policy"}}))
        .expect("a policy without spec deserialises");
    assert_eq!(bare.spec, Default::default());
}

#[test]
fn original_optional_fields_stay_optional() {
    let mut dts = image();
    dts["config"] = json!({});
    let mut ofed = image();
    ofed["env"] = json!([
        {"name": "A", "valueFrom": {"configMapKeyRef": {"key": "a"}}},
        {"name": "B", "valueFrom": {"secretKeyRef": {"key": "b"}}},
    ]);
    let found = violations(&policy(json!({"docaTelemetryService": dts, "ofedDriver": ofed})));
    assert_eq!(found, Vec::<String>::new());
    ofed = image();
    ofed["env"] = json!([{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm"}}}]);
    let found = violations(&policy(json!({"ofedDriver": ofed})));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("configMapKeyRef.key"), "{found:?}");
}

#[test]
fn the_whereabouts_crds_are_namespaced_and_named_as_whereabouts_names_them() {
    let names: Vec<(String, String, String)> = crd::all()
        .into_iter()
        .filter(|c| c.spec.group == api::whereabouts::GROUP)
        .map(|c| (c.metadata.name.clone().unwrap_or_default(), c.spec.names.kind.clone(), c.spec.scope.clone()))
        .collect();
    assert_eq!(
        names,
        [
            ("ippools.whereabouts.cni.cncf.io".to_string(), "IPPool".to_string(), "Namespaced".to_string()),
            (
                "overlappingrangeipreservations.whereabouts.cni.cncf.io".to_string(),
                "OverlappingRangeIPReservation".to_string(),
                "Namespaced".to_string()
            ),
        ]
    );
    let pool = crd::schema_json(&crd::for_type("whereabouts.cni.cncf.io/v1alpha1", "IPPool").unwrap());
    let spec = &pool["properties"]["spec"];
    assert_eq!(spec["required"], json!(["allocations", "range"]));
    assert_eq!(spec["properties"]["allocations"]["additionalProperties"]["required"], json!(["id"]));
    let reservation =
        crd::schema_json(&crd::for_type("whereabouts.cni.cncf.io/v1alpha1", "OverlappingRangeIPReservation").unwrap());
    assert_eq!(reservation["properties"]["spec"]["required"], json!(["containerid"]));
}

#[test]
fn an_ippool_as_whereabouts_writes_it_is_valid_and_survives_a_typed_round_trip() {
    let pool = json!({"apiVersion": "whereabouts.cni.cncf.io/v1alpha1", "kind": "IPPool",
        "metadata": {"name": "192.168.2.224-28", "namespace": "nvidia-network-operator"},
        "spec": {"range": "192.168.2.224/28", "allocations": {"1": {"id": "c0ffee", "podref": "default/pod-a", "ifname": "net1"}}}});
    assert_eq!(violations(&pool), Vec::<String>::new());
    assert!(api::parse::round_trip_losses::<api::whereabouts::IPPool>(&pool).is_empty());
    let nv_ipam = crd::for_type("nv-ipam.nvidia.com/v1alpha1", "IPPool").expect("nv-ipam's IPPool is shipped too");
    assert_ne!(nv_ipam.metadata.name, crd::for_kind("IPPool").unwrap().metadata.name, "another kind of the same name");
}

#[test]
fn the_nv_ipam_crds_have_the_originals_fields_printer_columns_and_status() {
    let expected = [
        (
            "ippools.nv-ipam.nvidia.com",
            "IPPool",
            ["Subnet", "Gateway", "Block Size"],
            json!(["perNodeBlockSize", "subnet"]),
        ),
        (
            "cidrpools.nv-ipam.nvidia.com",
            "CIDRPool",
            ["CIDR", "Gateway index", "Per Node Network Prefix"],
            json!(["cidr", "perNodeNetworkPrefix"]),
        ),
    ];
    let shipped: Vec<_> = crd::all().into_iter().filter(|c| c.spec.group == api::nv_ipam::GROUP).collect();
    assert_eq!(shipped.len(), 2);
    for (definition, (name, kind, columns, required)) in shipped.iter().zip(expected) {
        assert_eq!(definition.metadata.name.as_deref(), Some(name));
        assert_eq!((definition.spec.names.kind.as_str(), definition.spec.scope.as_str()), (kind, "Namespaced"));
        let version = &definition.spec.versions[0];
        assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "{name}: status subresource");
        let names: Vec<&str> = version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
        assert_eq!(names, columns, "{name}");
        let schema = crd::schema_json(definition);
        assert_eq!(schema["properties"]["spec"]["required"], required, "{name}");
        assert_eq!(
            schema["properties"]["spec"]["properties"]["exclusions"]["items"]["required"],
            json!(["endIP", "startIP"])
        );
        assert_eq!(
            schema["properties"]["spec"]["properties"]["nodeSelector"]["required"],
            json!(["nodeSelectorTerms"])
        );
    }
    let ip_pool = crd::schema_json(&shipped[0]);
    assert_eq!(
        ip_pool["properties"]["status"]["properties"]["allocations"]["items"]["required"],
        json!(["endIP", "nodeName", "startIP"])
    );
    let cidr_pool = crd::schema_json(&shipped[1]);
    let spec = &cidr_pool["properties"]["spec"]["properties"];
    assert_eq!(spec["staticAllocations"]["items"]["required"], json!(["prefix"]));
    assert_eq!(spec["gatewayIndex"]["type"], "integer");
}

#[test]
fn a_cidr_pool_with_every_field_is_valid_and_survives_a_typed_round_trip() {
    let pool = json!({"apiVersion": "nv-ipam.nvidia.com/v1alpha1", "kind": "CIDRPool",
        "metadata": {"name": "pool-1", "namespace": "nvidia-network-operator"},
        "spec": {"cidr": "10.200.0.0/16", "perNodeNetworkPrefix": 24, "gatewayIndex": 1,
            "exclusions": [{"startIP": "10.200.0.10", "endIP": "10.200.0.20"}],
            "staticAllocations": [{"nodeName": "node-33", "prefix": "10.200.33.0/24", "gateway": "10.200.33.10"}, {"prefix": "10.200.2.0/24"}],
            "nodeSelector": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/role", "operator": "In", "values": ["worker"]}]}]}},
        "status": {"allocations": [{"nodeName": "node-1", "prefix": "10.200.1.0/24", "gateway": "10.200.1.1"}]}});
    assert_eq!(violations(&pool), Vec::<String>::new());
    assert!(api::parse::round_trip_losses::<api::nv_ipam::CIDRPool>(&pool).is_empty());
    let mut wrong = pool.clone();
    wrong["spec"]["perNodeNetworkPrefix"] = json!("24");
    assert_eq!(violations(&wrong).len(), 1, "perNodeNetworkPrefix is an integer");
}

#[test]
fn cel_rule_takes_max_unavailable_as_a_node_count_or_a_percentage() {
    let with = |value: Value| {
        let mut ofed = image();
        ofed["upgradePolicy"] = json!({"autoUpgrade": true, "maxUnavailable": value});
        cel_failures(&policy(json!({"ofedDriver": ofed})))
    };
    for good in [json!(1), json!(12), json!("1%"), json!("25%"), json!("100%")] {
        assert_eq!(with(good.clone()), Vec::<String>::new(), "{good}");
    }
    for bad in [json!(0), json!(-1), json!("0%"), json!("150%"), json!("lots"), json!("25")] {
        let failures = with(bad.clone());
        assert!(
            failures.len() == 1 && failures[0].starts_with("spec.ofedDriver.upgradePolicy.maxUnavailable"),
            "{bad}: {failures:?}"
        );
    }
}
