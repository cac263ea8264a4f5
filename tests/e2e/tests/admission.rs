//! The real `admission-webhook` registered with the real API server (a `url` client config on
//! 127.0.0.1): with self-managed certificates it makes its CA, stores it in a Secret and puts it
//! into the ValidatingWebhookConfiguration's `caBundle`; then creating a bad policy is refused
//! with every field path, a good one passes, a NicNodePolicy holding a section of the cluster
//! policy is refused, a delete passes, and a renewed serving certificate is served without a
//! break.

use api::{NicClusterPolicy, NicNodePolicy, POLICY_NAME};
use e2e::binary::ControllerProcess;
use e2e::{TestEnv, WAIT, eventually, seed_policy, unique_name};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use std::time::Duration;

const SECRET: &str = "admission-webhook-certs";
const LABEL: &str = "network-operator.nvidia.com/e2e-admission";

/// Registers the webhook at `base` (its paths for both policy kinds) for policies carrying the
/// label `LABEL=run` (so other tests' policies never reach it), without a caBundle.
async fn register(client: &Client, name: &str, base: &str, run: &str) {
    let webhook = |kind: &str, resource: &str| {
        json!({
            "name": format!("v{kind}.mellanox.com"),
            "admissionReviewVersions": ["v1"],
            "clientConfig": {"url": format!("{base}/validate-mellanox-com-v1alpha1-{kind}")},
            "rules": [{"apiGroups": ["mellanox.com"], "apiVersions": ["v1alpha1"],
                       "operations": ["CREATE", "UPDATE", "DELETE"], "resources": [resource]}],
            "failurePolicy": "Fail", "sideEffects": "None", "timeoutSeconds": 5,
            "objectSelector": {"matchLabels": {LABEL: run}},
        })
    };
    let config: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": name},
        "webhooks": [webhook("nicclusterpolicy", "nicclusterpolicies"), webhook("nicnodepolicy", "nicnodepolicies")]
    }))
    .expect("a valid ValidatingWebhookConfiguration");
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &config)
        .await
        .expect("the configuration is accepted");
}

fn labelled(mut policy: NicClusterPolicy, run: &str) -> NicClusterPolicy {
    policy.metadata.labels.get_or_insert_with(Default::default).insert(LABEL.into(), run.into());
    policy
}

async fn serving_cert(client: &Client, namespace: &str) -> Option<Vec<u8>> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace).get_opt(SECRET).await.ok()??;
    Some(secret.data?.get("tls.crt")?.0.clone())
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn bad_policies_are_refused_at_apply_time_with_every_field_and_self_managed_certificates_renew() {
    let Some(env) = TestEnv::new("netop-e2e-admission").await else { return };
    let client = env.client.clone();
    let run = unique_name("run");
    let config_name = unique_name("netop-e2e-admission");
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("a free port").port();
    env.cleanup.cluster_resource::<ValidatingWebhookConfiguration>(&config_name);
    register(&client, &config_name, &format!("https://127.0.0.1:{port}"), &run).await;
    let listen = format!("127.0.0.1:{port}");
    let _webhook = ControllerProcess::start(
        "admission-webhook",
        &env.namespace,
        &[
            ("WEBHOOK_LISTEN", listen.as_str()),
            ("WEBHOOK_SELF_MANAGED_SECRET", SECRET),
            ("WEBHOOK_CONFIG_NAME", config_name.as_str()),
            ("WEBHOOK_EXTRA_NAMES", "127.0.0.1"),
            ("WEBHOOK_CERT_VALIDITY_SECONDS", "15"),
        ],
    );

    // The webhook made its CA, kept it in the Secret and published it as the caBundle.
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &env.namespace);
    eventually("the CA in the Secret and in the caBundle", WAIT, || async {
        let secret = secrets.get_opt(SECRET).await.map_err(|e| e.to_string())?.ok_or("no Secret yet")?;
        let ca = secret.data.and_then(|d| d.get("ca.crt").cloned()).ok_or("no ca.crt")?;
        let config = configs.get(&config_name).await.map_err(|e| e.to_string())?;
        let bundle = config.webhooks.unwrap_or_default().first().and_then(|w| w.client_config.ca_bundle.clone());
        if bundle == Some(ca) { Ok(()) } else { Err("caBundle not published yet".to_string()) }
    })
    .await;

    // A bad policy: every finding, with its path, in one denial.
    let policies: Api<NicClusterPolicy> = Api::all(client.clone());
    let dry_run = PostParams { dry_run: true, ..Default::default() };
    let mut bad = labelled(seed_policy(), &run);
    bad.spec.rdma_shared_device_plugin.as_mut().expect("the seed has RDMA").config = Some("{not json".into());
    let ofed = bad.spec.ofed_driver.as_mut().expect("the seed has OFED");
    ofed.upgrade_policy = Some(serde_json::from_value(json!({"autoUpgrade": true, "drain": {}})).unwrap());
    ofed.image.container_resources =
        Some(serde_json::from_value(json!([{"name": "mofed-container", "requests": {"cpu": "0"}}])).unwrap());
    let error = eventually("the webhook to answer", WAIT, || async {
        match policies.create(&dry_run, &bad).await {
            Err(kube::Error::Api(status)) if status.message.contains("is invalid") => Ok(status),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(error.code, 422, "{error:?}");
    assert!(
        error.message.contains("admission webhook \"vnicclusterpolicy.mellanox.com\" denied the request"),
        "{}",
        error.message
    );
    for path in ["spec.rdmaSharedDevicePlugin.config", "spec.ofedDriver.containerResources[0].requests.cpu"] {
        assert!(error.message.contains(path), "{path} in {}", error.message);
    }

    // A good one passes; so does a delete.
    let good = labelled(seed_policy(), &run);
    policies.create(&dry_run, &good).await.expect("the seed policy is allowed");
    e2e::fresh_policy(&env, &good).await;

    // A NicNodePolicy with a section the cluster policy holds is refused, naming the field; one
    // with another section passes.
    let node_policies: Api<NicNodePolicy> = Api::all(client.clone());
    let node_policy = |section: &str| -> NicNodePolicy {
        let spec = json!({section: {"image": "plugin", "repository": "ghcr.io/mellanox", "version": "v1.5.1",
            "config": "{\"configList\": [{\"resourceName\": \"rdma_a\", \"rdmaHcaMax\": 63, \"selectors\": {\"vendors\": [\"15b3\"]}}], \"resourceList\": [{\"resourceName\": \"sriov_a\", \"selectors\": {\"vendors\": [\"15b3\"]}}]}"}});
        serde_json::from_value(json!({"apiVersion": "mellanox.com/v1alpha1", "kind": "NicNodePolicy",
            "metadata": {"name": unique_name("pool"), "labels": {LABEL: run}}, "spec": spec}))
        .expect("a NicNodePolicy")
    };
    let error = eventually("the webhook to see the cluster policy", WAIT, || async {
        match node_policies.create(&dry_run, &node_policy("rdmaSharedDevicePlugin")).await {
            Err(kube::Error::Api(status)) if status.message.contains("also set in NicClusterPolicy") => Ok(status),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        error.message.contains("admission webhook \"vnicnodepolicy.mellanox.com\" denied the request"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("spec.rdmaSharedDevicePlugin: also set in NicClusterPolicy nic-cluster-policy"),
        "{}",
        error.message
    );
    node_policies.create(&dry_run, &node_policy("sriovDevicePlugin")).await.expect("another section is allowed");
    policies.delete(POLICY_NAME, &DeleteParams::default()).await.expect("a delete always passes");

    // The serving certificate lives 15 s and is renewed with 5 s left, under the same CA:
    // requests keep being answered.
    let first = serving_cert(&client, &env.namespace).await.expect("a serving certificate");
    eventually("a renewed serving certificate", Duration::from_secs(30), || async {
        let current = serving_cert(&client, &env.namespace).await;
        if current.as_ref().is_some_and(|c| *c != first) { Ok(()) } else { Err("not renewed yet".to_string()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    eventually("the renewed certificate to serve", WAIT, || async {
        match policies.create(&dry_run, &good).await {
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let error = policies.create(&dry_run, &bad).await.expect_err("still refused");
    assert!(error.to_string().contains("spec.rdmaSharedDevicePlugin.config"), "{error}");
}
