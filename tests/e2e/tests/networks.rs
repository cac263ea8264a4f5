//! The network-nads controllers against a real API server: every network example gets its
//! NAD and a ready status; moving a network to another namespace removes the old NAD.

use api::NetworkAttachmentDefinition;
use api::networks::{HostDeviceNetwork, IPoIBNetwork, MacvlanNetwork};
use api::parse::{self, Document};
use e2e::{MANAGER, client, delete_if_present, eventually, exclusive, install_crds, unique_namespace};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use network_nads::render::{Network, render};
use serde_json::Value;
use state_core::metrics::Metrics;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn config(text: &str) -> Value {
    serde_json::from_str(text).expect("NAD config is JSON")
}

/// Applies `network`, then waits until its NAD holds the rendered config and its status is
/// ready with the reference to it.
async fn apply_and_check<N: Network>(client: &Client, network: &N, reference_of: fn(&N) -> Option<String>) {
    let name = network.name_any();
    let api: Api<N> = Api::all(client.clone());
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(network)).await.expect("network accepted");
    let expected = render(network).expect("example renders");
    let namespace = network.network_namespace().to_string();
    let nads: Api<NetworkAttachmentDefinition> = Api::namespaced(client.clone(), &namespace);
    let want = config(expected.data["spec"]["config"].as_str().unwrap());
    eventually(&format!("the NAD of {name} to hold the rendered config"), WAIT, || async {
        let nad = nads.get_opt(&name).await.map_err(|e| e.to_string())?.ok_or("no NAD yet")?;
        let got = config(nad.spec.config.as_deref().unwrap_or("{}"));
        if got == want { Ok(()) } else { Err(format!("config is {got}")) }
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

#[tokio::test]
async fn every_network_example_gets_its_nad_and_moves_cleanly() {
    let Some(client) = client().await else { return };
    let _guard = exclusive().await;
    install_crds(&client).await;
    let controller = tokio::spawn(network_nads::controller::run_all(
        client.clone(),
        Metrics::new(),
        Arc::new(AtomicBool::new(false)),
    ));

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../example/crs");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut names = Vec::new();
    for path in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
        for document in parse::parse_all(&std::fs::read_to_string(&path).unwrap()).unwrap() {
            match document {
                Document::Macvlan(n) => {
                    apply_and_check(&client, n.as_ref(), macvlan_reference).await;
                    names.push(("macvlan", n.name_any()));
                }
                Document::HostDevice(n) => {
                    apply_and_check(&client, n.as_ref(), host_device_reference).await;
                    names.push(("hostdevice", n.name_any()));
                }
                Document::IPoIB(n) => {
                    apply_and_check(&client, n.as_ref(), ipoib_reference).await;
                    names.push(("ipoib", n.name_any()));
                }
                _ => {}
            }
        }
    }
    assert!(names.len() >= 9, "{names:?}");

    // Move the README's macvlan network to another namespace.
    let namespace = unique_namespace(&client, "netop-e2e-nad").await;
    let text = std::fs::read_to_string(dir.join("mellanox.com_v1alpha1_macvlannetwork_cr.yaml")).unwrap();
    let Document::Macvlan(mut moved) = parse::parse_all(&text).unwrap().remove(0) else { panic!("a MacvlanNetwork") };
    moved.spec.network_namespace = Some(namespace.clone());
    apply_and_check(&client, moved.as_ref(), macvlan_reference).await;
    let old: Api<NetworkAttachmentDefinition> = Api::namespaced(client.clone(), "default");
    eventually("the NAD in the old namespace to be deleted", WAIT, || async {
        match old.get_opt(&moved.name_any()).await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err("still present".to_string()),
        }
    })
    .await;

    controller.abort();
    for (kind, name) in names {
        match kind {
            "macvlan" => delete_if_present(&Api::<MacvlanNetwork>::all(client.clone()), &name).await,
            "hostdevice" => delete_if_present(&Api::<HostDeviceNetwork>::all(client.clone()), &name).await,
            _ => delete_if_present(&Api::<IPoIBNetwork>::all(client.clone()), &name).await,
        }
        // No garbage collector runs here: remove the NADs too.
        delete_if_present(&old, &name).await;
    }
    delete_if_present(
        &Api::<NetworkAttachmentDefinition>::namespaced(client.clone(), &namespace),
        "example-macvlannetwork",
    )
    .await;
}
