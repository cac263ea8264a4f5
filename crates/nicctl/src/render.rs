//! `nicctl render`: documents in, every object the compiled-in states would create out.

use crate::Failure;
use anyhow::Context;
use api::parse::{self, Document};
use clap::Args;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::core::DynamicObject;
use network_nads::render::Network;
use serde_json::Value;
use state_core::objects::Kind;
use state_core::{Observed, RenderContext, RenderError, State, render_state};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Arguments of `nicctl render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// YAML file with a NicClusterPolicy, NicNodePolicies and network CRs (any of them).
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// YAML file with the cluster's Nodes (and any ConfigMaps the policy names), as documents
    /// or Lists, for states that render from them (the OFED driver's pools) and to tell which
    /// nodes each NicNodePolicy selects (and that no two select the same node).
    #[arg(long)]
    nodes: Option<PathBuf>,
    /// Namespace the operands are rendered into.
    #[arg(long, env = "OPERANDS_NAMESPACE", default_value = "nvidia-network-operator")]
    namespace: String,
    /// Render for an OpenShift cluster.
    #[arg(long)]
    openshift: bool,
    /// The nodes' CNI binary directory (default: /opt/cni/bin, /var/lib/cni/bin with --openshift).
    #[arg(long, env = "CNI_BIN_DIR")]
    cni_bin_dir: Option<String>,
}

/// One rendered object, with the state that renders it: its field manager and kinds.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The state's name (`state-OFED`), or `network-nads` for a network CR's.
    pub state: &'static str,
    /// The field manager its controller applies with.
    pub manager: String,
    /// The kinds of the state (one of them is the object's).
    pub kinds: Vec<Kind>,
    /// The object.
    pub object: DynamicObject,
}

impl Rendered {
    fn of<S: State>(object: DynamicObject) -> Self {
        Self { state: S::NAME, manager: state_core::reconcile::field_manager::<S>(), kinds: S::kinds(), object }
    }

    /// The kind of the object, among its state's.
    pub fn kind(&self) -> Option<&Kind> {
        let types = self.object.types.as_ref()?;
        self.kinds.iter().find(|k| k.resource.api_version == types.api_version && k.resource.kind == types.kind)
    }
}

/// A compiled-in state: what the cluster commands need to know of it.
#[derive(Debug, Clone)]
pub struct StateInfo {
    /// Its name (`state-OFED`).
    pub name: &'static str,
    /// Its controller's subchart (`ofed`), also its field manager's suffix.
    pub component: &'static str,
    /// The kinds it renders.
    pub kinds: Vec<Kind>,
    /// The kinds it keeps (never prunes).
    pub kept: &'static [&'static str],
}

/// Every compiled-in state of the NicClusterPolicy, in the original's order.
pub fn states() -> Vec<StateInfo> {
    fn of<S: State>() -> StateInfo {
        StateInfo { name: S::NAME, component: S::COMPONENT, kinds: S::kinds(), kept: S::KEPT_KINDS }
    }
    vec![
        of::<multus::Multus>(),
        of::<cni_plugins::CniPlugins>(),
        of::<ipoib::IpoibCni>(),
        of::<whereabouts::Whereabouts>(),
        of::<ofed::OfedDriver>(),
        of::<sriov_dp::SriovDevicePlugin>(),
        of::<rdma_dp::RdmaDevicePlugin>(),
        of::<nic_feature_discovery::NicFeatureDiscovery>(),
        of::<ib_kubernetes::IbKubernetes>(),
        of::<nv_ipam::NvIpam>(),
        of::<doca_telemetry::DocaTelemetry>(),
        of::<nic_configuration::NicConfiguration>(),
        of::<spectrum_x::SpectrumX>(),
    ]
}

/// Where and how to render.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The file the documents came from (named in errors).
    pub file: &'a Path,
    /// The operands' namespace.
    pub namespace: &'a str,
    /// An OpenShift cluster.
    pub openshift: bool,
    /// Nodes were given (else states that wait for them say how to give them).
    pub nodes_given: bool,
    /// Render as a cluster serving every optional API does (offline); else as `observed` says.
    pub serve_all: bool,
}

/// Runs `nicctl render`.
pub fn run(args: &RenderArgs) -> Result<(), Failure> {
    let documents = read_documents(&args.file)?;
    let mut observed = match &args.nodes {
        Some(path) => read_cluster(path)?,
        None => Observed::default(),
    };
    observed.cni_bin_dir = args.cni_bin_dir.clone();
    let target = Target {
        file: &args.file,
        namespace: &args.namespace,
        openshift: args.openshift,
        nodes_given: args.nodes.is_some(),
        serve_all: true,
    };
    let mut objects: Vec<DynamicObject> = Vec::new();
    let foreign: Vec<String> = documents
        .iter()
        .filter_map(|d| match d {
            Document::Foreign { api_version, kind } => Some(format!("{api_version} {kind}")),
            _ => None,
        })
        .collect();
    if foreign.len() == documents.len() {
        return Err(input_error(
            &args.file,
            format!("no NicClusterPolicy, NicNodePolicy or network CR in the file (found: {})", foreign.join(", ")),
        ));
    }
    let policies = render_policies(&documents, &observed, &target)?;
    objects.extend(policies.into_iter().map(|r| r.object));
    for document in &documents {
        match document {
            Document::NodePolicy(_) | Document::Policy(_) => {}
            Document::Foreign { api_version, kind } => {
                eprintln!("note: {}: skipping {api_version} {kind}: not an operator kind", args.file.display());
            }
            Document::Macvlan(network) => objects.push(network_nad(network.as_ref(), &args.file)?),
            Document::HostDevice(network) => objects.push(network_nad(network.as_ref(), &args.file)?),
            Document::IPoIB(network) => objects.push(network_nad(network.as_ref(), &args.file)?),
        }
    }
    // The objects NicNodePolicies share (the driver's ServiceAccount and roles) come once.
    let mut seen = std::collections::BTreeSet::new();
    objects.retain(|object| seen.insert(state_core::objects::ObjectKey::of(object)));
    if objects.is_empty() {
        eprintln!("note: no compiled-in state renders anything for {}", args.file.display());
    }
    let mut stream = String::new();
    for object in &objects {
        stream.push_str("---\n");
        stream.push_str(&serde_saphyr::to_string(object).context("serialising an object")?);
    }
    crate::emit(&stream)?;
    Ok(())
}

/// Every object the NicClusterPolicy and NicNodePolicies of `documents` render, checked as
/// the controllers check them; the objects NicNodePolicies share come once.
pub fn render_policies(
    documents: &[Document],
    observed: &Observed,
    target: &Target<'_>,
) -> Result<Vec<Rendered>, Failure> {
    let cluster_policy = documents.iter().find_map(|d| match d {
        Document::Policy(policy) => Some(policy.as_ref()),
        _ => None,
    });
    let node_policies: Vec<&api::NicNodePolicy> = documents
        .iter()
        .filter_map(|d| match d {
            Document::NodePolicy(policy) => Some(policy.as_ref()),
            _ => None,
        })
        .collect();
    let mut rendered = Vec::new();
    for document in documents {
        match document {
            Document::NodePolicy(policy) => {
                rendered.extend(render_node_policy(policy, cluster_policy, &node_policies, observed, target)?);
            }
            Document::Policy(policy) => {
                if let Some(first) = api::validate::policy(policy).into_iter().next() {
                    return Err(input_error(target.file, first));
                }
                rendered.extend(render_policy(policy, observed, target)?);
            }
            _ => {}
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    rendered.retain(|r| seen.insert(state_core::objects::ObjectKey::of(&r.object)));
    Ok(rendered)
}

/// Every object of every compiled-in state for this policy, states in the original's order.
fn render_policy(
    policy: &api::NicClusterPolicy,
    observed: &Observed,
    target: &Target<'_>,
) -> Result<Vec<Rendered>, Failure> {
    let ctx = RenderContext { namespace: target.namespace, openshift: target.openshift, policy, observed };
    let mut objects = Vec::new();
    objects.extend(state::<multus::Multus>(&ctx, target)?);
    objects.extend(state::<cni_plugins::CniPlugins>(&ctx, target)?);
    objects.extend(state::<ipoib::IpoibCni>(&ctx, target)?);
    objects.extend(state::<whereabouts::Whereabouts>(&ctx, target)?);
    objects.extend(state::<ofed::OfedDriver>(&ctx, target)?);
    objects.extend(state::<sriov_dp::SriovDevicePlugin>(&ctx, target)?);
    objects.extend(state::<rdma_dp::RdmaDevicePlugin>(&ctx, target)?);
    objects.extend(state::<nic_feature_discovery::NicFeatureDiscovery>(&ctx, target)?);
    objects.extend(state::<ib_kubernetes::IbKubernetes>(&ctx, target)?);
    objects.extend(state::<nv_ipam::NvIpam>(&ctx, target)?);
    objects.extend(state::<doca_telemetry::DocaTelemetry>(&ctx, target)?);
    objects.extend(state::<nic_configuration::NicConfiguration>(&ctx, target)?);
    objects.extend(state::<spectrum_x::SpectrumX>(&ctx, target)?);
    let compiled_in: Vec<&str> = states().iter().map(|s| s.name).collect();
    let skipped: Vec<&str> = api::state::names::ALL
        .into_iter()
        .filter(|name| policy.spec.has_section(name) && !compiled_in.contains(name))
        .collect();
    if !skipped.is_empty() {
        eprintln!("note: not rendered (no compiled-in state yet): {}", skipped.join(", "));
    }
    Ok(objects)
}

/// The objects of the states that serve NicNodePolicies for `policy`, checked as the
/// controllers check it against the file's `cluster` policy, its other NicNodePolicies and the
/// nodes of `--nodes` (which decide the nodes it selects, said on stderr).
fn render_node_policy(
    policy: &api::NicNodePolicy,
    cluster: Option<&api::NicClusterPolicy>,
    all: &[&api::NicNodePolicy],
    observed: &Observed,
    target: &Target<'_>,
) -> Result<Vec<Rendered>, Failure> {
    use api::node_policy;
    use kube::ResourceExt;
    let nodes: Vec<(String, std::collections::BTreeMap<String, String>)> =
        observed.nodes.iter().map(|node| (node.name_any(), node.labels().clone())).collect();
    let mut errors = node_policy::validate(policy);
    errors.extend(node_policy::section_conflicts(policy, cluster));
    errors.extend(node_policy::overlap_error(&node_policy::overlaps(policy, all.iter().copied(), &nodes)));
    if let Some(first) = errors.into_iter().next() {
        return Err(input_error(target.file, format!("NicNodePolicy {}: {first}", policy.name_any())));
    }
    if target.nodes_given {
        let selected: Vec<&str> =
            nodes.iter().filter(|(_, labels)| policy.selects(labels)).map(|(name, _)| name.as_str()).collect();
        eprintln!(
            "note: NicNodePolicy {} selects {} node(s): {}",
            policy.name_any(),
            selected.len(),
            selected.join(", ")
        );
    }
    let view = policy.view(cluster);
    // The policy's driver pools come from the nodes it selects.
    let mut mine = observed.clone();
    mine.nodes.retain(|node| policy.selects(node.labels()));
    let ctx =
        RenderContext { namespace: target.namespace, openshift: target.openshift, policy: &view, observed: &mine };
    let mut objects = Vec::new();
    objects.extend(node_policy_state::<ofed::OfedDriver>(&ctx, policy, all, target.file, target.nodes_given)?);
    objects.extend(node_policy_state::<sriov_dp::SriovDevicePlugin>(&ctx, policy, all, target.file, true)?);
    objects.extend(node_policy_state::<rdma_dp::RdmaDevicePlugin>(&ctx, policy, all, target.file, true)?);
    Ok(objects)
}

/// The objects of state `S` for NicNodePolicy `policy` (one of `all`, which share the state's
/// shared objects), when it holds the section; a state that waits for nodes says so, with a
/// hint to pass them unless `nodes_given`.
fn node_policy_state<S: State>(
    ctx: &RenderContext<'_>,
    policy: &api::NicNodePolicy,
    all: &[&api::NicNodePolicy],
    file: &Path,
    nodes_given: bool,
) -> Result<Vec<Rendered>, Failure> {
    if !policy.has_section(S::NAME) {
        return Ok(Vec::new());
    }
    let peers = all.iter().filter(|p| p.has_section(S::NAME)).map(|p| Arc::new((*p).clone())).collect();
    let observed = Observed { peers, ..ctx.observed.clone() };
    let ctx = RenderContext { observed: &observed, ..*ctx };
    let scope = state_core::scope::Scope::Node(policy);
    match state_core::render::render_in_scope::<S>(&ctx, &scope) {
        Ok(objects) => Ok(objects.unwrap_or_default().into_iter().map(Rendered::of::<S>).collect()),
        Err(RenderError::Invalid(e)) => Err(input_error(file, e)),
        Err(RenderError::Waiting(reason)) => {
            let hint = if nodes_given { "" } else { " (pass the cluster's Nodes with --nodes)" };
            eprintln!(
                "note: NicNodePolicy {}: {}: nothing rendered: {reason}{hint}",
                kube::ResourceExt::name_any(policy),
                S::NAME
            );
            Ok(Vec::new())
        }
        Err(e) => Err(Failure::Internal(anyhow::anyhow!("{}: {e}", S::NAME))),
    }
}

/// The NetworkAttachmentDefinition of a network CR; bad input is an input error naming the field.
fn network_nad<N: Network>(network: &N, file: &Path) -> Result<DynamicObject, Failure> {
    network_nads::render::render(network).map_err(|e| input_error(file, e))
}

/// The objects of state `S` (offline, as a cluster serving every optional API of the state
/// gets them, e.g. cert-manager's); bad input is an input error naming the field. A state that
/// waits for nodes says so, with a hint to pass them unless they were given.
fn state<S: State>(ctx: &RenderContext<'_>, target: &Target<'_>) -> Result<Vec<Rendered>, Failure> {
    let observed = if target.serve_all { ctx.observed.clone().serving_all(&S::kinds()) } else { ctx.observed.clone() };
    match render_state::<S>(&RenderContext { observed: &observed, ..*ctx }) {
        Ok(objects) => Ok(objects.unwrap_or_default().into_iter().map(Rendered::of::<S>).collect()),
        Err(RenderError::Invalid(e)) => Err(input_error(target.file, e)),
        Err(RenderError::Waiting(reason)) => {
            let hint = if target.nodes_given { "" } else { " (pass the cluster's Nodes with --nodes)" };
            eprintln!("note: {}: nothing rendered: {reason}{hint}", S::NAME);
            Ok(Vec::new())
        }
        Err(e) => Err(Failure::Internal(anyhow::anyhow!("{}: {e}", S::NAME))),
    }
}

fn read(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))
        .map_err(|e| Failure::Input(format!("{e:#}")))
}

fn input_error(path: &Path, error: impl std::fmt::Display) -> Failure {
    Failure::Input(format!("{}: {error}", path.display()))
}

/// The documents of the YAML file at `path` (an input error when there is none).
pub fn read_documents(path: &Path) -> Result<Vec<Document>, Failure> {
    let documents = parse::parse_all(&read(path)?).map_err(|e| input_error(path, e))?;
    if documents.is_empty() {
        return Err(input_error(path, "no document in the file"));
    }
    Ok(documents)
}

/// The cluster objects a render reads, from a YAML file: Nodes and ConfigMaps (as documents or
/// in Lists). Registries are not asked offline: precompiled driver images count as absent.
fn read_cluster(path: &Path) -> Result<Observed, Failure> {
    let mut observed = Observed::default();
    for (i, doc) in parse::documents(&read(path)?).map_err(|e| input_error(path, e))?.into_iter().enumerate() {
        let items = match doc.get("kind").and_then(Value::as_str) {
            Some("List" | "NodeList" | "ConfigMapList") => {
                doc.get("items").and_then(Value::as_array).cloned().unwrap_or_default()
            }
            _ => vec![doc],
        };
        for item in items {
            let at = |e| input_error(path, format!("document {}: {e}", i + 1));
            match item.get("kind").and_then(Value::as_str) {
                Some("ConfigMap") => {
                    let config_map = parse::typed::<ConfigMap>(item).map_err(at)?;
                    observed.config_maps.insert(config_map.metadata.name.clone().unwrap_or_default(), config_map);
                }
                _ => observed
                    .nodes
                    .push(Arc::new(state_core::nodes::facts(parse::typed::<Node>(item).map_err(at)?, None))),
            }
        }
    }
    observed.nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(observed)
}
