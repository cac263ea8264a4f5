//! The part of cert-manager's API (`cert-manager.io/v1`) the operator renders: a self-signed
//! `Issuer` and the `Certificate` it issues for a webhook's Service (NVIDIA IPAM's webhook).
//!
//! cert-manager installs these CRDs; this project never ships them (they are not in
//! [`crate::crd::all`]). The types hold only the fields the operator writes, so a typed round
//! trip catches a misspelled one.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of cert-manager.
pub const GROUP: &str = "cert-manager.io";

/// An issuer of certificates in one namespace.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(group = "cert-manager.io", version = "v1", kind = "Issuer", plural = "issuers", namespaced)]
#[serde(rename_all = "camelCase")]
pub struct IssuerSpec {
    /// Issue self-signed certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_signed: Option<SelfSignedIssuer>,
}

/// A self-signed issuer: no settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SelfSignedIssuer {}

/// A certificate cert-manager keeps issued and stored in a Secret.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(group = "cert-manager.io", version = "v1", kind = "Certificate", plural = "certificates", namespaced)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    /// The DNS names the certificate is for.
    pub dns_names: Vec<String>,
    /// The issuer that signs it.
    pub issuer_ref: IssuerRef,
    /// The Secret (in the certificate's namespace) holding the key pair.
    pub secret_name: String,
}

/// A reference to an issuer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IssuerRef {
    /// `Issuer` or `ClusterIssuer`.
    pub kind: String,
    /// The issuer's name.
    pub name: String,
}
