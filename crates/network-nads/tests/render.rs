//! Golden NetworkAttachmentDefinitions for every network example, and the edge cases.

use api::networks::{HostDeviceNetwork, IPoIBNetwork, MacvlanNetwork};
use api::parse::{self, Document};
use kube::core::DynamicObject;
use network_nads::render::render;
use serde_json::{Value, json};
use state_core::testing::{assert_round_trips, repo_root, to_yaml};

fn config(nad: &DynamicObject) -> Value {
    serde_json::from_str(nad.data["spec"]["config"].as_str().expect("config is a string")).expect("config is JSON")
}

fn documents(text: &str) -> Vec<Document> {
    parse::parse_all(text).unwrap_or_else(|e| panic!("{e}"))
}

fn render_document(document: &Document) -> Option<DynamicObject> {
    match document {
        Document::Macvlan(n) => Some(render(n.as_ref()).unwrap()),
        Document::HostDevice(n) => Some(render(n.as_ref()).unwrap()),
        Document::IPoIB(n) => Some(render(n.as_ref()).unwrap()),
        _ => None,
    }
}

#[test]
fn every_network_example_renders_a_golden_nad() {
    let dir = repo_root().join("example/crs");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut rendered = 0;
    for path in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
        let text = std::fs::read_to_string(&path).unwrap();
        for document in documents(&text) {
            let Some(nad) = render_document(&document) else { continue };
            assert_round_trips(std::slice::from_ref(&nad));
            let name = path.file_stem().unwrap().to_string_lossy().replace("mellanox.com_v1alpha1_", "");
            golden(&name, &nad);
            rendered += 1;
        }
    }
    assert!(rendered >= 9, "expected every network example, rendered {rendered}");
}

/// A golden snapshot of one NAD: the object and its config, pretty-printed.
fn golden(name: &str, nad: &DynamicObject) {
    assert_round_trips(std::slice::from_ref(nad));
    let pretty = serde_json::to_string_pretty(&config(nad)).unwrap();
    insta::assert_snapshot!(name, format!("{}\n# config, pretty:\n{pretty}", to_yaml(std::slice::from_ref(nad))));
}

fn macvlan(spec: Value) -> MacvlanNetwork {
    serde_json::from_value(json!({"apiVersion": "mellanox.com/v1alpha1", "kind": "MacvlanNetwork",
        "metadata": {"name": "net"}, "spec": spec}))
    .unwrap()
}

#[test]
fn the_readme_macvlan_has_the_originals_keys_and_parsed_ipam() {
    let text =
        std::fs::read_to_string(repo_root().join("example/crs/mellanox.com_v1alpha1_macvlannetwork_cr.yaml")).unwrap();
    let nad = render_document(&documents(&text)[0]).unwrap();
    assert_eq!(nad.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(nad.metadata.name.as_deref(), Some("example-macvlannetwork"));
    let config = config(&nad);
    assert_eq!(config["cniVersion"], "0.3.1");
    assert_eq!(config["type"], "macvlan");
    assert_eq!(config["master"], "ens2f0");
    assert_eq!(config["mode"], "bridge");
    assert_eq!(config["mtu"], 1500);
    assert_eq!(config["ipam"]["range"], "192.168.2.225/28");
    assert_eq!(config["ipam"]["exclude"], json!(["192.168.2.229/30", "192.168.2.236/32"]));
}

#[test]
fn keys_come_in_the_originals_order() {
    let nad = render(&macvlan(json!({"master": "eth0", "mode": "vepa", "mtu": 9000}))).unwrap();
    let text = nad.data["spec"]["config"].as_str().unwrap();
    assert_eq!(
        text,
        r#"{"cniVersion":"0.3.1","name":"net","type":"macvlan","master":"eth0","mode":"vepa","mtu":9000,"ipam":{}}"#
    );
}

#[test]
fn empty_master_mode_and_zero_mtu_are_left_out() {
    let nad = render(&macvlan(json!({"master": "", "mode": "", "mtu": 0}))).unwrap();
    golden("edge_mtu_0_and_empty_fields", &nad);
    let config = config(&nad);
    assert!(config.get("master").is_none() && config.get("mode").is_none() && config.get("mtu").is_none(), "{config}");
    assert_eq!(config["ipam"], json!({}));
}

#[test]
fn quotes_and_unicode_in_values_are_escaped_not_broken() {
    let ipam = r#"{"type": "static", "note": "it's \"quoted\" — ünïcødé", "addresses": [{"address": "10.0.0.1/24"}]}"#;
    let nad = render(&macvlan(json!({"master": "eth'0\"", "ipam": ipam}))).unwrap();
    golden("edge_quotes_and_unicode", &nad);
    let config = config(&nad);
    assert_eq!(config["master"], "eth'0\"");
    assert_eq!(config["ipam"]["note"], "it's \"quoted\" — ünïcødé");
}

#[test]
fn nested_ipam_objects_are_kept_whole() {
    let ipam = r#"{"type": "whereabouts", "kubernetes": {"kubeconfig": "/etc/k"}, "ipRanges": [{"range": "10.0.0.0/24", "exclude": ["10.0.0.1/32"]}]}"#;
    let nad = render(&macvlan(json!({"ipam": ipam}))).unwrap();
    golden("edge_nested_ipam", &nad);
    let config = config(&nad);
    assert_eq!(config["ipam"]["kubernetes"]["kubeconfig"], "/etc/k");
    assert_eq!(config["ipam"]["ipRanges"][0]["exclude"][0], "10.0.0.1/32");
}

#[test]
fn invalid_ipam_is_an_error_naming_the_field_and_position() {
    let err = render(&macvlan(json!({"ipam": "{\"type\": \"static\",}"}))).unwrap_err();
    assert_eq!(err.path, "spec.ipam");
    assert!(err.message.starts_with("invalid JSON: trailing comma at line 1 column"), "{}", err.message);
    let err = render(&macvlan(json!({"ipam": "[1, 2]"}))).unwrap_err();
    assert_eq!(err.to_string(), "spec.ipam: must be a JSON object");
}

fn ipam_text(nad: &DynamicObject) -> String {
    let config = nad.data["spec"]["config"].as_str().unwrap();
    let start = config.find("\"ipam\":").expect("ipam key") + "\"ipam\":".len();
    config[start..config.len() - 1].to_string()
}

#[test]
fn ipam_keeps_the_users_key_order_and_number_spelling() {
    let ipam = "{\n  \"type\": \"whereabouts\",\n  \"range\": \"10.0.0.0/24\",\n  \"big\": 123456789012345678901234,\n  \"ratio\": 1.10,\n  \"a b\": \"x  y\"\n}";
    let nad = render(&macvlan(json!({"ipam": ipam}))).unwrap();
    assert_eq!(
        ipam_text(&nad),
        r#"{"type":"whereabouts","range":"10.0.0.0/24","big":123456789012345678901234,"ratio":1.10,"a b":"x  y"}"#
    );
    let config = config(&nad);
    assert_eq!(config["ipam"]["a b"], "x  y", "whitespace inside strings is kept");
}

#[test]
fn escaped_quotes_in_ipam_strings_survive_compaction() {
    let ipam = r#"{ "note" : "say \"hi\" \\" , "n" : [ 1 , 2 ] }"#;
    let nad = render(&macvlan(json!({"ipam": ipam}))).unwrap();
    assert_eq!(ipam_text(&nad), r#"{"note":"say \"hi\" \\","n":[1,2]}"#);
}

#[test]
fn a_duplicate_ipam_key_is_an_error_naming_the_key() {
    let err = render(&macvlan(json!({"ipam": r#"{"type": "static", "type": "whereabouts"}"#}))).unwrap_err();
    assert_eq!(err.path, "spec.ipam");
    assert!(err.message.starts_with("invalid JSON: duplicate key \"type\" at line 1"), "{}", err.message);
    let nested = r#"{"type": "static", "routes": [{"dst": "0.0.0.0/0", "dst": "10.0.0.0/8"}]}"#;
    let err = render(&macvlan(json!({"ipam": nested}))).unwrap_err();
    assert!(err.message.contains("duplicate key \"dst\""), "{}", err.message);
}

fn host_device(resource: &str) -> HostDeviceNetwork {
    serde_json::from_value(json!({"apiVersion": "mellanox.com/v1alpha1", "kind": "HostDeviceNetwork",
        "metadata": {"name": "hd"}, "spec": {"resourceName": resource}}))
    .unwrap()
}

#[test]
fn host_device_resource_names_get_the_prefix_once() {
    for (given, expected) in [("hostdev", "nvidia.com/hostdev"), ("nvidia.com/hostdev", "nvidia.com/hostdev")] {
        let nad = render(&host_device(given)).unwrap();
        golden(&format!("edge_host_device_{}", given.replace(['.', '/'], "_")), &nad);
        assert_eq!(nad.metadata.annotations.as_ref().unwrap()["k8s.v1.cni.cncf.io/resourceName"], expected);
        assert_eq!(nad.metadata.namespace.as_deref(), Some("default"), "no networkNamespace means default");
    }
    assert_eq!(render(&host_device("")).unwrap_err().path, "spec.resourceName");
}

#[test]
fn ipoib_always_writes_master() {
    let network: IPoIBNetwork = serde_json::from_value(json!({"apiVersion": "mellanox.com/v1alpha1",
        "kind": "IPoIBNetwork", "metadata": {"name": "ib"}, "spec": {}}))
    .unwrap();
    let config = config(&render(&network).unwrap());
    assert_eq!(config["master"], "");
    assert_eq!(config["type"], "ipoib");
}

#[test]
fn a_network_with_a_uid_owns_its_nad() {
    let mut network = macvlan(json!({}));
    network.metadata.uid = Some("abc".into());
    let nad = render(&network).unwrap();
    let owner = &nad.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("MacvlanNetwork", "net", Some(true)));
    assert_eq!(nad.metadata.labels.as_ref().unwrap()["nvidia.network-operator.state"], "state-Macvlan-Network");
}
