//! Every example CR under `example/crs/` is accepted: it parses, matches its CRD schema and CEL
//! rules, passes the controller-side checks, and survives a typed round trip unchanged.

use api::parse::{self, Document};
use api::{HostDeviceNetwork, IPoIBNetwork, MacvlanNetwork, NicClusterPolicy, crd};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;
use std::path::PathBuf;

fn examples() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../example/crs");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("example/crs exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable example");
            (p.file_name().unwrap().to_string_lossy().into_owned(), text)
        })
        .collect();
    files.sort();
    assert!(files.len() >= 8, "expected the original product's examples and ours, found {}", files.len());
    files
}

/// The examples of the kinds whose CRDs this project ships (ours and NVIDIA IPAM's pools), as
/// raw JSON values.
fn operator_documents() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (name, text) in examples() {
        for value in parse::documents(&text).unwrap_or_else(|e| panic!("{name}: {e}")) {
            let group = value["apiVersion"].as_str().unwrap_or_default().split('/').next().unwrap_or_default();
            if group == api::GROUP || group == api::nv_ipam::GROUP {
                out.push((name.clone(), value));
            }
        }
    }
    out
}

/// The CRD of an example document.
fn definition(value: &Value) -> CustomResourceDefinition {
    let (api_version, kind) = (value["apiVersion"].as_str().unwrap(), value["kind"].as_str().unwrap());
    crd::for_type(api_version, kind).unwrap_or_else(|| panic!("no CRD for {api_version} {kind}"))
}

#[test]
fn the_original_products_examples_are_all_present() {
    let names: Vec<String> = examples().into_iter().map(|(n, _)| n).collect();
    for expected in [
        "mellanox.com_v1alpha1_nicclusterpolicy_cr.yaml",
        "mellanox.com_v1alpha1_nicclusterpolicy_cr-nvidia-ipam.yaml",
        "mellanox.com_v1alpha1_macvlannetwork_cr.yaml",
        "mellanox.com_v1alpha1_macvlannetwork_cr-nvidia-ipam.yaml",
        "mellanox.com_v1alpha1_hostdevicenetwork_cr.yaml",
        "mellanox.com_v1alpha1_ipoibnetwork_cr.yaml",
        "nicclusterpolicy_every-section.yaml",
        "nicclusterpolicy_ofed-upgrade.yaml",
        "nvidia.com_v1alpha1_nv_ipam_ippool_cr.yaml",
    ] {
        assert!(names.iter().any(|n| n == expected), "missing example/crs/{expected}");
    }
}

#[test]
fn every_example_parses_into_the_typed_api() {
    for (name, text) in examples() {
        let docs = parse::parse_all(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!docs.is_empty(), "{name}: no document");
        for doc in docs {
            if let Document::Policy(policy) = doc {
                let problems = api::validate::policy(&policy);
                assert!(problems.is_empty(), "{name}: {problems:?}");
            }
        }
    }
}

#[test]
fn every_example_matches_its_crd_schema() {
    for (name, value) in operator_documents() {
        let definition = definition(&value);
        let violations = api::schema::validate(&crd::schema_json(&definition), &value);
        assert!(violations.is_empty(), "{name}: {violations:?}");
    }
}

#[test]
fn every_example_passes_the_crd_cel_rules() {
    let validator = kube::core::cel::Validator::new();
    for (name, value) in operator_documents() {
        let definition = definition(&value);
        if let Err(errors) = validator.validate(&crd::schema_json(&definition), &value, None) {
            panic!("{name}: {errors}");
        }
    }
}

#[test]
fn a_typed_round_trip_loses_no_field_of_any_example() {
    for (name, value) in operator_documents() {
        let lost = match value["kind"].as_str().unwrap() {
            "NicClusterPolicy" => parse::round_trip_losses::<NicClusterPolicy>(&value),
            "NicNodePolicy" => parse::round_trip_losses::<api::NicNodePolicy>(&value),
            "MacvlanNetwork" => parse::round_trip_losses::<MacvlanNetwork>(&value),
            "HostDeviceNetwork" => parse::round_trip_losses::<HostDeviceNetwork>(&value),
            "IPoIBNetwork" => parse::round_trip_losses::<IPoIBNetwork>(&value),
            "IPPool" => parse::round_trip_losses::<api::nv_ipam::IPPool>(&value),
            other => panic!("{name}: unexpected kind {other}"),
        };
        assert!(lost.is_empty(), "{name}: {lost:?}");
    }
}

#[test]
fn the_every_section_example_sets_every_section() {
    let text = examples().into_iter().find(|(n, _)| n == "nicclusterpolicy_every-section.yaml").unwrap().1;
    let value = parse::documents(&text).unwrap().remove(0);
    let spec = value["spec"].as_object().unwrap();
    let schema = crd::schema_json(&crd::nic_cluster_policy());
    for section in schema["properties"]["spec"]["properties"].as_object().unwrap().keys() {
        assert!(spec.contains_key(section), "spec.{section} is not set");
    }
}

#[test]
fn every_state_has_a_section_in_the_every_section_example() {
    let text = examples().into_iter().find(|(n, _)| n == "nicclusterpolicy_every-section.yaml").unwrap().1;
    let Document::Policy(policy) = parse::parse_all(&text).unwrap().remove(0) else { panic!("a policy") };
    for state in api::state::names::ALL {
        assert!(policy.spec.has_section(state), "{state} has no section");
    }
    assert!(!NicClusterPolicy::default().spec.has_section(api::state::names::OFED));
}
