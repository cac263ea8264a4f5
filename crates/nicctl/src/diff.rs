//! `nicctl diff -f POLICY.yaml`: what applying a policy (and its NicNodePolicies) would do to a
//! live cluster. The policy is rendered as the controllers render it, from the cluster's own
//! facts (its Nodes, the operands' ConfigMaps, OpenShift, the optional APIs it serves) and
//! from the policy as the API server would store it (a dry run: the CRD's defaults); each
//! object is compared with its live copy as the controller compares it
//! ([`state_core::apply::holds`]), and one that would change is sent to the API server as a
//! server-side apply dry run with the controller's field manager: the diff is between the live
//! object and what the API server would make of it. Objects of a state that the policy no
//! longer renders would be deleted. Changed driver DaemonSets name the nodes whose driver
//! would reload. Nothing is written.

use crate::Failure;
use crate::live::{self, ClusterArgs, Format, Paint};
use crate::render::{self, Rendered, Target};
use anyhow::Context as _;
use api::parse::Document;
use clap::Args;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::DynamicObject;
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use serde_json::Value;
use state_core::objects::{Kind, ObjectKey};
use state_core::{Observed, State, apply};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

/// Arguments of `nicctl diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// YAML file with the NicClusterPolicy (and NicNodePolicies) to compare with the cluster.
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    output: Format,
}

/// What applying would do to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Create it.
    Create,
    /// Change it.
    Change,
    /// Delete it (its state no longer renders it).
    Delete,
}

/// One object that would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What would happen.
    pub action: Action,
    /// The state it belongs to.
    pub state: String,
    /// `Kind namespace/name` (or `Kind name`).
    pub object: String,
    /// The unified diff of the live object against what it would become (changes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// A driver pool whose nodes would reload their driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Roll {
    /// The driver DaemonSet.
    pub daemon_set: String,
    /// The nodes running its pods.
    pub nodes: Vec<String>,
}

/// The whole answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Objects that would be created, changed or deleted.
    pub changes: Vec<Change>,
    /// Objects already as the policy wants them.
    pub unchanged: usize,
    /// Driver pools that would roll.
    pub rolls: Vec<Roll>,
    /// What could not be compared, and why.
    pub notes: Vec<String>,
}

fn shown(kind: &str, key: &ObjectKey) -> String {
    match &key.namespace {
        Some(ns) => format!("{kind} {ns}/{}", key.name),
        None => format!("{kind} {}", key.name),
    }
}

/// An object as the diff shows it: without what the API server keeps for itself.
pub fn comparable(object: &DynamicObject) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or_default();
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in ["managedFields", "resourceVersion", "generation", "uid", "creationTimestamp"] {
            meta.remove(key);
        }
    }
    if let Some(object) = value.as_object_mut() {
        object.remove("status");
    }
    value
}

/// The unified diff of `live` against `applied` (as YAML), `None` when they are the same.
pub fn unified(live: &DynamicObject, applied: &DynamicObject) -> Option<String> {
    let before = serde_saphyr::to_string(&comparable(live)).unwrap_or_default();
    let after = serde_saphyr::to_string(&comparable(applied)).unwrap_or_default();
    if before == after {
        return None;
    }
    let diff = similar::TextDiff::from_lines(&before, &after);
    Some(diff.unified_diff().context_radius(3).header("live", "applied").to_string())
}

/// Whether a DaemonSet's pod template differs between `live` and `applied`.
pub fn template_changed(live: &DynamicObject, applied: &DynamicObject) -> bool {
    live.data["spec"]["template"] != applied.data["spec"]["template"]
}

/// The cluster's facts a render reads: Nodes, the operands' ConfigMaps, OpenShift and the
/// optional APIs served.
async fn observe(client: &Client, namespace: &str) -> Result<(Observed, bool), Failure> {
    let mut observed = Observed::default();
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await.context("listing the nodes")?;
    observed.nodes = nodes.items.into_iter().map(|n| Arc::new(state_core::nodes::facts(n, None))).collect();
    observed.nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing the ConfigMaps of {namespace}"))?;
    for config_map in config_maps.items {
        observed.config_maps.insert(config_map.name_any(), config_map);
    }
    let kinds: Vec<Kind> = render::states().into_iter().flat_map(|s| s.kinds).collect();
    observed.served = state_core::reconcile::discover(client, &kinds).await.map_err(anyhow::Error::msg)?;
    let openshift = client.list_api_group_resources("config.openshift.io/v1").await.is_ok();
    Ok((observed, openshift))
}

/// The policies of `documents` as the API server would store them (a dry-run replace, or
/// create when new): with the CRD's defaults and the live uid, so that the render and its owner
/// references are those the controllers make from the stored policy.
async fn as_stored(client: &Client, mut documents: Vec<Document>) -> Result<Vec<Document>, Failure> {
    for document in &mut documents {
        match document {
            Document::Policy(policy) => **policy = stored(client, &**policy).await?,
            Document::NodePolicy(policy) => **policy = stored(client, &**policy).await?,
            _ => {}
        }
    }
    Ok(documents)
}

async fn stored<K>(client: &Client, object: &K) -> Result<K, Failure>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let name = object.name_any();
    let dry_run = kube::api::PostParams { dry_run: true, ..Default::default() };
    let what = format!("{} {name}", K::kind(&()));
    let mut desired = object.clone();
    let result = match api.get_opt(&name).await.with_context(|| format!("reading {what}"))? {
        Some(live) => {
            desired.meta_mut().resource_version = live.meta().resource_version.clone();
            api.replace(&name, &dry_run, &desired).await
        }
        None => api.create(&dry_run, &desired).await,
    };
    result.map_err(|e| Failure::Input(format!("{what}: the API server refuses it: {}", apply::describe(&e))))
}

/// Compares what `rendered` holds with the cluster.
pub async fn compare(client: &Client, namespace: &str, rendered: &[Rendered]) -> Result<Report, Failure> {
    let mut report = Report::default();
    let mut wanted: BTreeSet<ObjectKey> = BTreeSet::new();
    for r in rendered {
        let key = ObjectKey::of(&r.object);
        wanted.insert(key.clone());
        let Some(kind) = r.kind() else {
            report.notes.push(format!("{}: {}: not a kind of its state; not compared", r.state, key.name));
            continue;
        };
        let what = shown(&kind.resource.kind, &key);
        let api = apply::api_for(client, kind, key.namespace.as_deref());
        let live = api.get_opt(&key.name).await.with_context(|| format!("reading {what}"))?;
        let Some(live) = live else {
            report.changes.push(Change { action: Action::Create, state: r.state.into(), object: what, diff: None });
            continue;
        };
        let Some(applied) = apply::to_apply(r.object.clone(), Some(&live)) else {
            report
                .notes
                .push(format!("{what} exists and is not the operator's: its state leaves it alone and reports it"));
            continue;
        };
        if apply::holds(&live, &applied) {
            report.unchanged += 1;
            continue;
        }
        let dry_run = PatchParams::apply(&r.manager).force().dry_run();
        let result = api
            .patch(&key.name, &dry_run, &Patch::Apply(&applied))
            .await
            .map_err(|e| anyhow::anyhow!("{what}: the API server refused the dry run: {}", apply::describe(&e)))?;
        match unified(&live, &result) {
            None => report.unchanged += 1,
            Some(diff) => {
                if r.state == ofed::OfedDriver::NAME
                    && kind.resource.kind == "DaemonSet"
                    && template_changed(&live, &result)
                {
                    report.rolls.push(Roll { daemon_set: key.name.clone(), nodes: nodes_of(client, &live).await? });
                }
                report.changes.push(Change {
                    action: Action::Change,
                    state: r.state.into(),
                    object: what,
                    diff: Some(diff),
                });
            }
        }
    }
    // What a state labels and no longer renders is pruned (kept kinds never are).
    let mut listed = BTreeSet::new();
    let states = render::states();
    for state in &states {
        for kind in &state.kinds {
            if state.kept.contains(&kind.resource.kind.as_str()) || !listed.insert(kind.type_name()) {
                continue;
            }
            let api = apply::api_for(client, kind, kind.namespaced.then_some(namespace));
            let objects = match api.list(&ListParams::default().labels(state_core::STATE_LABEL)).await {
                Ok(list) => list.items,
                Err(kube::Error::Api(status)) if status.code == 404 => continue,
                Err(e) => {
                    return Err(anyhow::anyhow!("listing {}: {}", kind.resource.plural, apply::describe(&e)).into());
                }
            };
            for object in objects {
                // List items carry no apiVersion and kind: the listed kind's are theirs.
                let key = ObjectKey {
                    api_version: kind.resource.api_version.clone(),
                    kind: kind.resource.kind.clone(),
                    namespace: object.namespace(),
                    name: object.name_any(),
                };
                let state = object.labels().get(state_core::STATE_LABEL).cloned().unwrap_or_default();
                let ours = states.iter().any(|s| s.name == state);
                if ours && !wanted.contains(&key) {
                    let what = shown(&kind.resource.kind, &key);
                    report.changes.push(Change { action: Action::Delete, state, object: what, diff: None });
                }
            }
        }
    }
    report.changes.sort_by(|a, b| (a.action, &a.object).cmp(&(b.action, &b.object)));
    Ok(report)
}

/// The nodes running pods of the DaemonSet `live`.
async fn nodes_of(client: &Client, live: &DynamicObject) -> Result<Vec<String>, Failure> {
    let namespace = live.namespace().unwrap_or_default();
    let pods = Api::<Pod>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default().labels(ofed::DRIVER_LABEL))
        .await
        .context("listing the driver pods")?;
    let uid = live.metadata.uid.clone();
    let mut nodes: Vec<String> = pods
        .items
        .iter()
        .filter(|p| p.owner_references().iter().any(|o| Some(&o.uid) == uid.as_ref()))
        .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
        .collect();
    nodes.sort();
    Ok(nodes)
}

/// The report as a terminal shows it.
pub fn human(report: &Report, paint: Paint) -> String {
    let mut out = String::new();
    for change in &report.changes {
        let action = match change.action {
            Action::Create => paint.green("create"),
            Action::Change => paint.yellow("change"),
            Action::Delete => paint.red("delete"),
        };
        out.push_str(&format!("{action}  {}  ({})\n", change.object, change.state));
        if let Some(diff) = &change.diff {
            for line in diff.lines() {
                let line = match line.chars().next() {
                    Some('+') if !line.starts_with("+++") => paint.green(line),
                    Some('-') if !line.starts_with("---") => paint.red(line),
                    _ => line.to_string(),
                };
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    if !report.rolls.is_empty() {
        out.push_str("\nDriver pools that would roll (each node reloads its driver: with autoUpgrade as the upgrade reaches it, else when its driver pod is deleted):\n");
        for roll in &report.rolls {
            out.push_str(&format!(
                "  {}: {}\n",
                roll.daemon_set,
                if roll.nodes.is_empty() { "no node yet".into() } else { roll.nodes.join(", ") }
            ));
        }
    }
    for note in &report.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    let count = |a: Action| report.changes.iter().filter(|c| c.action == a).count();
    out.push_str(&format!(
        "\n{} to create, {} to change, {} to delete, {} unchanged\n",
        count(Action::Create),
        count(Action::Change),
        count(Action::Delete),
        report.unchanged
    ));
    out
}

/// Runs `nicctl diff`.
pub async fn run(args: &DiffArgs) -> Result<(), Failure> {
    let documents = render::read_documents(&args.file)?;
    let client = live::connect(&args.cluster).await?;
    let namespace = args.cluster.namespace.as_str();
    let documents = as_stored(&client, documents).await?;
    let (observed, openshift) = observe(&client, namespace).await?;
    let target = Target { file: &args.file, namespace, openshift, nodes_given: true, serve_all: false };
    let rendered = render::render_policies(&documents, &observed, &target)?;
    let report = compare(&client, namespace, &rendered).await?;
    match args.output {
        Format::Human => crate::emit(&human(&report, Paint::for_stdout()))?,
        format => live::print_structured(&report, format)?,
    }
    if report.changes.is_empty() { Ok(()) } else { Err(Failure::Exit(1)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> DynamicObject {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_diff_leaves_out_what_the_api_server_keeps_and_shows_the_changed_field() {
        let live = object(json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "mofed-ds", "namespace": "ns", "resourceVersion": "7", "uid": "u", "generation": 2,
                         "managedFields": [{"manager": "x"}]},
            "spec": {"template": {"spec": {"containers": [{"name": "mofed", "image": "doca-driver:24.07"}]}}},
            "status": {"numberReady": 1}}));
        let mut applied = live.clone();
        applied.metadata.resource_version = Some("8".into());
        assert_eq!(unified(&live, &applied), None, "only server-kept fields differ");
        applied.data["spec"]["template"]["spec"]["containers"][0]["image"] = json!("doca-driver:24.10");
        let diff = unified(&live, &applied).expect("a diff");
        assert!(diff.starts_with("--- live\n+++ applied\n"), "{diff}");
        assert!(
            diff.contains("-      - image: doca-driver:24.07") && diff.contains("+      - image: doca-driver:24.10"),
            "{diff}"
        );
        assert!(!diff.contains("managedFields") && !diff.contains("numberReady"), "{diff}");
        assert!(template_changed(&live, &applied));
    }

    #[test]
    fn the_summary_counts_each_action_and_names_the_nodes_that_would_reload() {
        let report = Report {
            changes: vec![
                Change {
                    action: Action::Create,
                    state: "state-OFED".into(),
                    object: "ConfigMap ns/a".into(),
                    diff: None,
                },
                Change {
                    action: Action::Change,
                    state: "state-OFED".into(),
                    object: "DaemonSet ns/mofed-ds".into(),
                    diff: Some("--- live\n+++ applied\n-a\n+b\n".into()),
                },
            ],
            unchanged: 4,
            rolls: vec![Roll { daemon_set: "mofed-ds".into(), nodes: vec!["node-a".into(), "node-b".into()] }],
            notes: vec![],
        };
        let text = human(&report, Paint::plain());
        assert!(
            text.contains(
                "change  DaemonSet ns/mofed-ds  (state-OFED)\n    --- live\n    +++ applied\n    -a\n    +b\n"
            ),
            "{text}"
        );
        assert!(text.contains("  mofed-ds: node-a, node-b\n"), "{text}");
        assert!(text.ends_with("1 to create, 1 to change, 0 to delete, 4 unchanged\n"), "{text}");
    }
}
