//! CR → NetworkAttachmentDefinition, pure.
//!
//! The CNI configuration is a JSON document built with serde: values are escaped correctly,
//! `ipam` is checked and embedded as the user wrote it (key order and number spelling kept,
//! whitespace dropped; empty means `{}`; invalid JSON or a duplicate key is an error naming
//! `spec.ipam` with the position), and optional keys are left out as the original does.

use api::FieldError;
use api::networks::{HostDeviceNetwork, IPoIBNetwork, MacvlanNetwork, NetworkState};
use kube::core::DynamicObject;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::fmt::Debug;

/// The CNI spec version written into every configuration (as the original).
pub const CNI_VERSION: &str = "0.3.1";
/// NAD annotation Multus reads to add a device-plugin resource request to pods.
pub const RESOURCE_NAME_ANNOTATION: &str = "k8s.v1.cni.cncf.io/resourceName";
/// Prefix of the device-plugin resources the operator's plugins advertise.
pub const RESOURCE_PREFIX: &str = "nvidia.com/";
/// Namespace of the NAD when `spec.networkNamespace` is empty.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The status fields of a network CR, as this controller writes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkStatus {
    /// `status.state`.
    pub state: NetworkState,
    /// `status.reason`, set while not ready.
    pub reason: Option<String>,
    /// The NAD reference, `<apiVersion>/namespaces/<ns>/<Kind>/<name>`, once the NAD exists.
    pub reference: Option<String>,
}

impl NetworkStatus {
    /// The status as read from a CR's `state`, `reason` and reference field.
    fn of(state: NetworkState, reason: &Option<String>, reference: &Option<String>) -> Self {
        Self { state, reason: reason.clone(), reference: reference.clone() }
    }
}

/// One of the three network kinds.
pub trait Network:
    Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The original's state name, used as the NAD's state label.
    const STATE: &'static str;
    /// The status field holding the NAD reference, e.g. `macvlanNetworkAttachmentDef`.
    const REFERENCE_FIELD: &'static str;

    /// `spec.networkNamespace` as written (may be empty).
    fn network_namespace_field(&self) -> Option<&str>;
    /// `spec.ipam` as written.
    fn ipam(&self) -> Option<&String>;
    /// The CNI configuration as JSON text, `ipam` given checked.
    fn cni_config(&self, ipam: &RawValue) -> String;
    /// Annotations of the NAD (host-device: the resource name).
    fn annotations(&self) -> Result<BTreeMap<String, String>, FieldError> {
        Ok(BTreeMap::new())
    }
    /// The status as currently written on the CR.
    fn status(&self) -> Option<NetworkStatus>;

    /// The namespace of the NAD: `spec.networkNamespace`, or `default` when empty.
    fn network_namespace(&self) -> &str {
        self.network_namespace_field().filter(|ns| !ns.is_empty()).unwrap_or(DEFAULT_NAMESPACE)
    }
}

/// The CNI configuration's keys, in the original's order; `None` fields are left out.
#[derive(Serialize)]
struct CniConfig<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'static str,
    name: &'a str,
    #[serde(rename = "type")]
    plugin: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    master: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<i32>,
    ipam: &'a RawValue,
}

impl<'a> CniConfig<'a> {
    /// The configuration of `plugin` for the network named `name`, without optional keys.
    fn new(name: &'a str, plugin: &'static str, ipam: &'a RawValue) -> Self {
        Self { cni_version: CNI_VERSION, name, plugin, master: None, mode: None, mtu: None, ipam }
    }

    /// Serialised straight to text, so the keys keep the struct's order.
    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `spec.ipam` checked and kept as written: empty means `{}`; anything but a JSON object, or an
/// object with a duplicate key (at any depth), is an error naming `spec.ipam` with the position.
/// The result keeps the user's key order and number spelling, without insignificant whitespace.
pub fn parse_ipam(ipam: Option<&String>) -> Result<Box<RawValue>, FieldError> {
    let text = ipam.map(String::as_str).unwrap_or_default();
    if text.trim().is_empty() {
        return Ok(RawValue::from_string("{}".to_string()).expect("{} is JSON"));
    }
    let is_object =
        api::json::is_object(text).map_err(|e| FieldError::new("spec.ipam", format!("invalid JSON: {e}")))?;
    if !is_object {
        return Err(FieldError::new("spec.ipam", "must be a JSON object"));
    }
    RawValue::from_string(compact(text)).map_err(|e| FieldError::new("spec.ipam", format!("invalid JSON: {e}")))
}

/// `text` (valid JSON) without whitespace outside strings.
fn compact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if !c.is_ascii_whitespace() {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

fn non_empty(value: Option<&String>) -> Option<&str> {
    value.map(String::as_str).filter(|v| !v.is_empty())
}

impl Network for MacvlanNetwork {
    const STATE: &'static str = "state-Macvlan-Network";
    const REFERENCE_FIELD: &'static str = "macvlanNetworkAttachmentDef";

    fn network_namespace_field(&self) -> Option<&str> {
        self.spec.network_namespace.as_deref()
    }

    fn ipam(&self) -> Option<&String> {
        self.spec.ipam.as_ref()
    }

    fn cni_config(&self, ipam: &RawValue) -> String {
        CniConfig {
            master: non_empty(self.spec.master.as_ref()),
            mode: non_empty(self.spec.mode.as_ref()),
            mtu: self.spec.mtu.filter(|mtu| *mtu != 0),
            ..CniConfig::new(self.metadata.name.as_deref().unwrap_or_default(), "macvlan", ipam)
        }
        .to_json()
    }

    fn status(&self) -> Option<NetworkStatus> {
        self.status.as_ref().map(|s| NetworkStatus::of(s.state, &s.reason, &s.macvlan_network_attachment_def))
    }
}

impl Network for HostDeviceNetwork {
    const STATE: &'static str = "state-host-device-network";
    const REFERENCE_FIELD: &'static str = "hostDeviceNetworkAttachmentDef";

    fn network_namespace_field(&self) -> Option<&str> {
        self.spec.network_namespace.as_deref()
    }

    fn ipam(&self) -> Option<&String> {
        self.spec.ipam.as_ref()
    }

    fn cni_config(&self, ipam: &RawValue) -> String {
        CniConfig::new(self.metadata.name.as_deref().unwrap_or_default(), "host-device", ipam).to_json()
    }

    fn annotations(&self) -> Result<BTreeMap<String, String>, FieldError> {
        let resource = non_empty(self.spec.resource_name.as_ref()).ok_or_else(|| {
            FieldError::new("spec.resourceName", "required: the device-plugin resource pool to attach")
        })?;
        let resource = if resource.starts_with(RESOURCE_PREFIX) {
            resource.to_string()
        } else {
            format!("{RESOURCE_PREFIX}{resource}")
        };
        Ok([(RESOURCE_NAME_ANNOTATION.to_string(), resource)].into())
    }

    fn status(&self) -> Option<NetworkStatus> {
        self.status.as_ref().map(|s| NetworkStatus::of(s.state, &s.reason, &s.host_device_network_attachment_def))
    }
}

impl Network for IPoIBNetwork {
    const STATE: &'static str = "state-IPoIB-Network";
    const REFERENCE_FIELD: &'static str = "ipoibNetworkAttachmentDef";

    fn network_namespace_field(&self) -> Option<&str> {
        self.spec.network_namespace.as_deref()
    }

    fn ipam(&self) -> Option<&String> {
        self.spec.ipam.as_ref()
    }

    fn cni_config(&self, ipam: &RawValue) -> String {
        CniConfig {
            // The original always writes master, even when empty.
            master: Some(self.spec.master.as_deref().unwrap_or_default()),
            ..CniConfig::new(self.metadata.name.as_deref().unwrap_or_default(), "ipoib", ipam)
        }
        .to_json()
    }

    fn status(&self) -> Option<NetworkStatus> {
        self.status.as_ref().map(|s| NetworkStatus::of(s.state, &s.reason, &s.ipoib_network_attachment_def))
    }
}

/// The NetworkAttachmentDefinition of `network`: named after it, in its network namespace,
/// labelled with its state, owned by it (when it has a uid), with the CNI config as JSON.
pub fn render<N: Network>(network: &N) -> Result<DynamicObject, FieldError> {
    let ipam = parse_ipam(network.ipam())?;
    let config = network.cni_config(&ipam);
    let mut labels: BTreeMap<String, String> = [(state_core::STATE_LABEL.to_string(), N::STATE.to_string())].into();
    for (key, value) in state_core::edits::STANDARD_LABELS {
        labels.insert(key.to_string(), value.to_string());
    }
    let annotations = network.annotations()?;
    let mut nad = json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {
            "name": network.name_any(),
            "namespace": network.network_namespace(),
            "labels": labels,
        },
        "spec": { "config": config },
    });
    if !annotations.is_empty() {
        nad["metadata"]["annotations"] = json!(annotations);
    }
    if network.meta().uid.is_some()
        && let Some(owner) = network.controller_owner_ref(&())
    {
        nad["metadata"]["ownerReferences"] = json!([owner]);
    }
    serde_json::from_value(nad).map_err(|e| FieldError::new("<root>", format!("internal error: {e}")))
}
