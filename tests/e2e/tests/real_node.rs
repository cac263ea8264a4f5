//! The chart on a real node (`../shared/k8s/cluster-up`: kubelet, containerd, scheduler): every
//! controller runs as a pod from the image `hack/build-images.sh` built, with in-cluster
//! credentials, its probes and its memory limit, as `helm install` gives a user. `hack/e2e.sh`
//! runs this stage after the played-kubelet suite, on a cluster of its own, with the images
//! imported; on any other cluster it skips, saying why.

use e2e::helm::{helm, install};
use e2e::{TestEnv, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, LogParams};
use kube::{Api, Client, ResourceExt};
use std::time::Duration;

/// How long a controller pod may take to start and become Ready on the node.
const START: Duration = Duration::from_secs(180);

/// The pod's container's resident memory from its own `/metrics`, through the API server's proxy.
async fn resident_memory(client: &Client, namespace: &str, pod: &str) -> Result<u64, String> {
    let request = http::Request::get(format!("/api/v1/namespaces/{namespace}/pods/{pod}:8080/proxy/metrics"))
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let text = client.request_text(request).await.map_err(|e| e.to_string())?;
    let line = text.lines().find(|l| l.starts_with("process_resident_memory_bytes ")).ok_or("no RSS metric")?;
    line.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()).map(|v| v as u64).ok_or(line.to_string())
}

/// A memory quantity of the chart's values (`64Mi`) in bytes.
fn bytes(quantity: &str) -> u64 {
    let (number, unit) = quantity.split_at(quantity.find(|c: char| !c.is_ascii_digit()).unwrap_or(quantity.len()));
    let factor = match unit {
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => 1,
    };
    number.parse::<u64>().unwrap_or(0) * factor
}

/// Waits until the release's `count` Deployments are Available, then checks each pod: on the
/// node, no restart, RSS under its memory limit (from its own `/metrics`), the start-up line with
/// the version in its log. The problems found, one line each.
async fn controllers_run(client: &Client, ns: &str, node: &str, count: usize) -> Vec<String> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    eventually("every controller Deployment to be Available on the node", START, || async {
        let list = deployments.list(&Default::default()).await.map_err(|e| e.to_string())?;
        let waiting: Vec<String> = list
            .items
            .iter()
            .filter(|d| {
                let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0) < wanted
            })
            .map(ResourceExt::name_any)
            .collect();
        if list.items.len() == count && waiting.is_empty() {
            Ok(())
        } else {
            Err(format!("{} Deployments, waiting: {waiting:?}", list.items.len()))
        }
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods.list(&Default::default()).await.unwrap();
    let mut problems = Vec::new();
    for pod in &list.items {
        let name = pod.name_any();
        let spec = pod.spec.as_ref().unwrap();
        if spec.node_name.as_deref() != Some(node) {
            problems.push(format!("{name}: not on the real node {node}"));
        }
        let status = pod.status.as_ref().unwrap();
        let restarts: i32 = status.container_statuses.iter().flatten().map(|c| c.restart_count).sum();
        if restarts > 0 {
            problems.push(format!("{name}: {restarts} restart(s)"));
        }
        let limit = spec.containers[0]
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("memory"))
            .map(|q| bytes(&q.0))
            .unwrap_or(u64::MAX);
        match resident_memory(client, ns, &name).await {
            Ok(rss) if rss < limit => {
                eprintln!("{name}: RSS {:.1} MiB (limit {} MiB)", rss as f64 / 1048576.0, limit >> 20)
            }
            Ok(rss) => problems.push(format!("{name}: RSS {rss} bytes over its limit {limit}")),
            Err(e) => problems.push(format!("{name}: /metrics not reachable: {e}")),
        }
        let log = pods.logs(&name, &LogParams::default()).await.unwrap_or_default();
        let started = log.lines().any(|l| l.contains("\"message\":\"starting\"") && l.contains("\"version\""));
        if !started {
            problems.push(format!("{name}: no start-up line with the version in its log"));
        }
    }
    problems
}

/// The real node's name, or `None` after saying why this stage skips.
fn real_node() -> Option<String> {
    let node = std::env::var("NETOP_E2E_NODE").ok();
    if node.is_none() {
        eprintln!("skipping: no real node (../shared/k8s/cluster-up sets NETOP_E2E_NODE; hack/e2e.sh runs this stage)");
    }
    node
}

/// The registry the images were built for (`hack/build-images.sh` with `IMAGE_REGISTRY`).
fn registry() -> String {
    std::env::var("NETOP_E2E_IMAGE_REGISTRY").unwrap_or_else(|_| "localhost/netop-e2e".to_string())
}

/// The leader identity of the Lease `name` in `ns`.
async fn holder(client: &Client, ns: &str, name: &str) -> Result<String, String> {
    let lease = Api::<Lease>::namespaced(client.clone(), ns).get(name).await.map_err(|e| e.to_string())?;
    lease.spec.and_then(|s| s.holder_identity).filter(|h| !h.is_empty()).ok_or("no holder".to_string())
}

#[tokio::test]
#[cfg_attr(not(e2e_real_node), ignore = "needs a real node: ../shared/k8s/cluster-up (hack/e2e.sh runs this stage)")]
async fn every_controller_runs_as_a_real_pod_from_the_images_this_repo_builds() {
    let Some(node) = real_node() else { return };
    let Some(env) = TestEnv::new("netop-e2e-node").await else { return };
    if helm().is_none() {
        return;
    }
    let client = env.client.clone();
    let ns = env.namespace.clone();
    // As the README installs it; only the registry of the images this repo built is set, and two
    // replicas of one controller, to see leader election with real pods.
    install(
        &env.cleanup,
        "netop",
        &ns,
        &["--set", &format!("global.image.registry={}", registry()), "--set", "rdma-dp.replicas=2"],
    );
    let problems = controllers_run(&client, &ns, &node, 13).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // Two rdma-dp replicas: exactly one leads (its Lease names it, its metrics say so); deleting
    // its pod hands the Lease over to the other.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let lease = "netop-rdma-dp-leader";
    let leader = eventually("one rdma-dp replica to lead", START, || holder(&client, &ns, lease)).await;
    let replicas = pods.list(&ListParams::default().labels("app.kubernetes.io/name=rdma-dp")).await.unwrap();
    let names: Vec<String> = replicas.items.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&leader), "the Lease names {leader}, not one of {names:?}");
    let mut leading = 0;
    for name in &names {
        let request = http::Request::get(format!("/api/v1/namespaces/{ns}/pods/{name}:8080/proxy/metrics"))
            .body(Vec::new())
            .unwrap();
        let metrics = client.request_text(request).await.unwrap_or_default();
        leading += usize::from(metrics.contains("network_operator_leader 1"));
    }
    assert_eq!(leading, 1, "exactly one replica acts");
    pods.delete(&leader, &DeleteParams::default()).await.unwrap();
    let next = eventually("the other replica to take the Lease", START, || async {
        match holder(&client, &ns, lease).await? {
            holder if holder != leader => Ok(holder),
            _ => Err("the old leader still holds it".to_string()),
        }
    })
    .await;
    assert!(names.contains(&next), "{next} took over");
}

#[tokio::test]
#[cfg_attr(not(e2e_real_node), ignore = "needs a real node: ../shared/k8s/cluster-up (hack/e2e.sh runs this stage)")]
async fn the_all_in_one_install_runs_as_one_real_pod() {
    let Some(node) = real_node() else { return };
    let Some(env) = TestEnv::new("netop-e2e-node-aio").await else { return };
    if helm().is_none() {
        return;
    }
    let ns = env.namespace.clone();
    install(
        &env.cleanup,
        "netop",
        &ns,
        &[
            "-f",
            "charts/network-operator/values-all-in-one.yaml",
            "--set",
            &format!("global.image.registry={}", registry()),
        ],
    );
    let problems = controllers_run(&env.client, &ns, &node, 1).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
