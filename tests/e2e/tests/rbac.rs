//! Least privilege, proven on the API server: as each controller's ServiceAccount (the chart's
//! RBAC, impersonated), server-side dry-runs of what would damage the cluster are refused:
//! deleting or emptying `cluster-admin`, binding a role to every user, widening a ClusterRole,
//! touching another product's webhook configuration, a `kube-system` ConfigMap, an IP pool, a
//! pod or a Node. The same requests as the admin are not refused, so each refusal is RBAC's.

use e2e::helm::{helm, impersonating, install};
use e2e::{TestEnv, client_for, unique_name};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// A request's outcome without its body.
fn unit<T>(result: kube::Result<T>) -> kube::Result<()> {
    result.map(|_| ())
}

fn delete() -> DeleteParams {
    DeleteParams { dry_run: true, ..Default::default() }
}

fn patch() -> PatchParams {
    PatchParams { dry_run: true, ..Default::default() }
}

/// Each damaging request, dry-run, with what it tried; `own_role` is the caller's chart ClusterRole.
async fn attempts(
    client: &Client,
    namespace: &str,
    other_webhook: &str,
    own_role: &str,
) -> Vec<(String, kube::Result<()>)> {
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let webhooks: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let binding = |name: &str| -> ClusterRoleBinding {
        serde_json::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": own_role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}],
        }))
        .unwrap()
    };
    let wide: ClusterRole = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "netop-e2e-everything"},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
    }))
    .unwrap();
    let pool = |group: &str, kind: &str, plural: &str| {
        let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1alpha1", kind), plural);
        Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource)
    };
    let label = json!({"metadata": {"labels": {"netop-e2e": "touched"}}});
    vec![
        ("delete ClusterRole cluster-admin".into(), unit(roles.delete("cluster-admin", &delete()).await)),
        (
            "empty the rules of cluster-admin".into(),
            unit(roles.patch("cluster-admin", &patch(), &Patch::Merge(json!({"rules": []}))).await),
        ),
        (
            "create a ClusterRole granting everything".into(),
            unit(roles.create(&PostParams { dry_run: true, ..Default::default() }, &wide).await),
        ),
        (
            "bind its own role to system:authenticated (create)".into(),
            unit(bindings.create(&PostParams { dry_run: true, ..Default::default() }, &binding("netop-e2e-all")).await),
        ),
        (
            "bind its own role to system:authenticated (apply)".into(),
            unit(
                bindings
                    .patch(
                        "netop-e2e-all",
                        &PatchParams::apply("netop-e2e").dry_run(),
                        &Patch::Apply(binding("netop-e2e-all")),
                    )
                    .await,
            ),
        ),
        (
            "delete another product's webhook configuration".into(),
            unit(webhooks.delete(other_webhook, &delete()).await),
        ),
        (
            "patch another product's webhook configuration".into(),
            unit(webhooks.patch(other_webhook, &patch(), &Patch::Merge(&label)).await),
        ),
        (
            "delete kube-system/extension-apiserver-authentication".into(),
            unit(
                Api::<ConfigMap>::namespaced(client.clone(), "kube-system")
                    .delete("extension-apiserver-authentication", &delete())
                    .await,
            ),
        ),
        (
            "delete a Whereabouts IP pool".into(),
            unit(pool("whereabouts.cni.cncf.io", "IPPool", "ippools").delete("pool", &delete()).await),
        ),
        (
            "delete an NV-IPAM IPPool".into(),
            unit(pool("nv-ipam.nvidia.com", "IPPool", "ippools").delete("pool", &delete()).await),
        ),
        (
            "delete an NV-IPAM CIDRPool".into(),
            unit(pool("nv-ipam.nvidia.com", "CIDRPool", "cidrpools").delete("pool", &delete()).await),
        ),
        (
            "patch a pod of kube-system".into(),
            unit(
                Api::<Pod>::namespaced(client.clone(), "kube-system")
                    .patch("any", &patch(), &Patch::Merge(&label))
                    .await,
            ),
        ),
        ("delete a Node".into(), unit(Api::<Node>::all(client.clone()).delete("any", &delete()).await)),
    ]
}

fn refused(result: &kube::Result<()>) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.code == 403)
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn no_service_account_may_damage_what_its_controller_does_not_own() {
    let Some(env) = TestEnv::new("netop-e2e-least").await else { return };
    if helm().is_none() {
        return;
    }
    let client = env.client.clone();
    let ns = env.namespace.clone();
    let release = unique_name("least");
    install(
        &env.cleanup,
        &release,
        &ns,
        &["--set", "admission.enabled=true", "--set", "admission.failurePolicy=Ignore"],
    );
    let single = unique_name("least-aio");
    install(&env.cleanup, &single, &ns, &["-f", "charts/network-operator/values-all-in-one.yaml"]);

    let other_webhook = unique_name("netop-e2e-other-product");
    let webhook: ValidatingWebhookConfiguration =
        serde_json::from_value(json!({"metadata": {"name": other_webhook}})).unwrap();
    Api::<ValidatingWebhookConfiguration>::all(client.clone()).create(&PostParams::default(), &webhook).await.unwrap();
    env.cleanup.cluster_resource::<ValidatingWebhookConfiguration>(&other_webhook);

    // The admin may do each of them (dry-run): a refusal below is the ServiceAccount's RBAC.
    for (what, result) in attempts(&client, &ns, &other_webhook, "view").await {
        assert!(!refused(&result), "the admin was refused {what}: {result:?}");
    }

    // Every ServiceAccount the two releases made: 15 controllers and the webhook, and the one
    // of the all-in-one.
    let service_accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let mut accounts = Vec::new();
    for (instance, expected) in [(&release, 16), (&single, 1)] {
        let selector = format!("app.kubernetes.io/instance={instance}");
        let listed = service_accounts.list(&ListParams::default().labels(&selector)).await.unwrap();
        assert_eq!(listed.items.len(), expected, "ServiceAccounts of {instance}");
        accounts.extend(listed.items.iter().map(ResourceExt::name_any));
    }
    let mut allowed = Vec::new();
    for account in &accounts {
        let config = impersonating(&ns, account);
        let as_account = client_for(&config.display().to_string()).await;
        for (what, result) in attempts(&as_account, &ns, &other_webhook, account).await {
            if !refused(&result) {
                allowed.push(format!("{account}: {what}: {result:?}"));
            }
        }
        let _ = std::fs::remove_file(config);
    }
    assert!(allowed.is_empty(), "not refused:\n{}", allowed.join("\n"));
}
