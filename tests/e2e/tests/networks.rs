//! `network-nads-controller` against a real API server: every network example gets its NAD
//! and a ready status, moving a network removes the old NAD, deleting a network lets the
//! garbage collector remove its NAD; and the binary's health, metrics and shutdown.

use api::NetworkAttachmentDefinition;
use api::networks::{HostDeviceNetwork, IPoIBNetwork, MacvlanNetwork};
use api::parse::{self, Document};
use e2e::binary::ControllerProcess;
use e2e::{MANAGER, TestEnv, WAIT, create_namespace, eventually, unique_name};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use network_nads::render::{Network, render};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

fn config(text: &str) -> Value {
    serde_json::from_str(text).expect("NAD config is JSON")
}

/// Applies `network` (registered for cleanup), then waits until its NAD holds the rendered
/// config and its status is ready with the reference to it.
async fn apply_and_check<N: Network>(env: &TestEnv, network: &N, reference_of: fn(&N) -> Option<String>) {
    let client = &env.client;
    let name = network.name_any();
    let api: Api<N> = Api::all(client.clone());
    env.cleanup.cluster_resource::<N>(&name);
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(network)).await.expect("network accepted");
    let expected = render(network).expect("example renders");
    let namespace = network.network_namespace().to_string();
    let nads: Api<NetworkAttachmentDefinition> = Api::namespaced(client.clone(), &namespace);
    let want = expected.data["spec"]["config"].as_str().unwrap().to_string();
    eventually(&format!("the NAD of {name} to hold the rendered config"), WAIT, || async {
        let nad = nads.get_opt(&name).await.map_err(|e| e.to_string())?.ok_or("no NAD yet")?;
        let got = nad.spec.config.unwrap_or_default();
        if config(&got) == config(&want) { Ok(()) } else { Err(format!("config is {got}")) }
    })
    .await;
    let reference = format!("k8s.cni.cncf.io/v1/namespaces/{namespace}/NetworkAttachmentDefinition/{name}");
    eventually(&format!("{name} to report ready"), WAIT, || async {
        let live = api.get(&name).await.map_err(|e| e.to_string())?;
        match reference_of(&live) {
            Some(r) if r == reference => Ok(()),
            other => Err(format!("reference is {other:?}")),
        }
    })
    .await;
}

fn macvlan_reference(n: &MacvlanNetwork) -> Option<String> {
    n.status.as_ref().filter(|s| s.reason.is_none()).and_then(|s| s.macvlan_network_attachment_def.clone())
}

fn host_device_reference(n: &HostDeviceNetwork) -> Option<String> {
    n.status.as_ref().filter(|s| s.reason.is_none()).and_then(|s| s.host_device_network_attachment_def.clone())
}

fn ipoib_reference(n: &IPoIBNetwork) -> Option<String> {
    n.status.as_ref().filter(|s| s.reason.is_none()).and_then(|s| s.ipoib_network_attachment_def.clone())
}

fn examples() -> Vec<Document> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../example/crs");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .flat_map(|path| parse::parse_all(&std::fs::read_to_string(&path).unwrap()).unwrap())
        .collect()
}

async fn nad_exists(client: &Client, namespace: &str, name: &str) -> Result<bool, String> {
    let nads: Api<NetworkAttachmentDefinition> = Api::namespaced(client.clone(), namespace);
    nads.get_opt(name).await.map(|n| n.is_some()).map_err(|e| e.to_string())
}

#[tokio::test]
async fn the_binary_gives_every_network_example_its_nad_and_follows_moves_and_deletions() {
    let Some(env) = TestEnv::new("netop-e2e-nad").await else { return };
    let client = env.client.clone();
    let mut controller = ControllerProcess::start("network-nads-controller", &env.namespace, &[]);
    controller.wait_ready().await;

    let mut applied = 0;
    for document in examples() {
        match document {
            Document::Macvlan(n) => apply_and_check(&env, n.as_ref(), macvlan_reference).await,
            Document::HostDevice(n) => apply_and_check(&env, n.as_ref(), host_device_reference).await,
            Document::IPoIB(n) => apply_and_check(&env, n.as_ref(), ipoib_reference).await,
            _ => continue,
        }
        applied += 1;
    }
    assert!(applied >= 9, "only {applied} network examples");
    let metrics = controller.metrics().await;
    assert!(
        metrics.contains(r#"network_operator_reconcile_total{result="ready",state="state-Macvlan-Network"}"#),
        "{metrics}"
    );

    // Move a macvlan network to another namespace: the old NAD goes.
    let moved_to = unique_name("netop-e2e-nad-moved");
    create_namespace(&client, &moved_to).await;
    env.cleanup.namespace(&moved_to);
    let Document::Macvlan(mut network) = examples()
        .into_iter()
        .find(|d| matches!(d, Document::Macvlan(n) if n.name_any() == "example-macvlannetwork"))
        .expect("the README's macvlan network")
    else {
        unreachable!()
    };
    let name = network.name_any();
    let old_namespace = network.network_namespace().to_string();
    network.spec.network_namespace = Some(moved_to.clone());
    apply_and_check(&env, network.as_ref(), macvlan_reference).await;
    eventually("the NAD in the old namespace to be deleted", WAIT, || async {
        if nad_exists(&client, &old_namespace, &name).await? { Err("still present".into()) } else { Ok(()) }
    })
    .await;

    // Delete the network: the garbage collector removes its NAD (owner reference).
    Api::<MacvlanNetwork>::all(client.clone()).delete(&name, &DeleteParams::default()).await.expect("deleted");
    eventually("the garbage collector to delete the NAD", WAIT, || async {
        if nad_exists(&client, &moved_to, &name).await? { Err("still present".into()) } else { Ok(()) }
    })
    .await;

    let (status, took) = controller.terminate(Duration::from_secs(5)).await;
    assert!(status.success(), "exit status {status:?} after {took:?}");
}
