//! The webhook's serving certificate: read from files (a Secret mounted from cert-manager or by
//! the user, re-read when it changes), or self-managed: the webhook makes its own CA and
//! serving certificate, keeps them in a Secret (so every replica and restart serves the same
//! CA), puts the CA in its ValidatingWebhookConfiguration's `caBundle`, and renews the serving
//! certificate (and the CA) when a third of its lifetime is left.
//!
//! The TLS listener asks a [`Resolver`] for the certificate at each handshake, so a renewed one
//! is served without a restart.

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

/// A certificate problem: what could not be made, read or stored.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Generating a key or certificate failed.
    #[error("generating {what}: {source}")]
    Generate {
        /// What was being made.
        what: &'static str,
        /// Why it failed.
        source: rcgen::Error,
    },
    /// The PEM material is not a certificate chain and a matching private key.
    #[error("{0}")]
    Unusable(String),
    /// The API refused a read or a write.
    #[error("{what}: {}", state_core::apply::describe(.source))]
    Api {
        /// What was being done.
        what: String,
        /// The API error.
        source: kube::Error,
    },
}

/// Serving material, PEM-encoded, with the CA that signed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Material {
    /// The CA certificate.
    pub ca_cert: String,
    /// The CA key (kept to sign the next serving certificate).
    pub ca_key: String,
    /// When the CA expires (Unix seconds).
    pub ca_not_after: i64,
    /// The serving certificate.
    pub cert: String,
    /// Its key.
    pub key: String,
    /// When it expires (Unix seconds).
    pub not_after: i64,
    /// The names it is valid for (DNS names and IP addresses).
    pub names: Vec<String>,
}

/// What the webhook's serving certificates are made for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// DNS names and IP addresses of the serving certificate.
    pub names: Vec<String>,
    /// Lifetime of a serving certificate, in seconds (the CA lives ten times as long).
    pub validity: i64,
}

/// Whether something valid until `not_after`, issued for `validity` seconds, must be renewed
/// at `now`: when less than a third of its lifetime is left.
pub fn needs_renewal(not_after: i64, validity: i64, now: i64) -> bool {
    now >= not_after - validity / 3
}

fn timestamp(seconds: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn generate_error(what: &'static str) -> impl FnOnce(rcgen::Error) -> CertError {
    move |source| CertError::Generate { what, source }
}

/// The CA's parameters but its validity: the same for making it and for signing with it (the
/// issuer of a certificate is the CA's name and key identifier, derived from these and its key).
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "network-operator admission webhook CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

/// A new CA, valid from `now` for ten serving lifetimes: (certificate, key, not after).
pub fn new_ca(plan: &Plan, now: i64) -> Result<(String, String, i64), CertError> {
    let key = KeyPair::generate().map_err(generate_error("the CA key"))?;
    let mut params = ca_params();
    let not_after = now + plan.validity * 10;
    params.not_before = timestamp(now - 60);
    params.not_after = timestamp(not_after);
    let cert = params.self_signed(&key).map_err(generate_error("the CA certificate"))?;
    Ok((cert.pem(), key.serialize_pem(), not_after))
}

/// A serving certificate for `plan`, signed by the CA of `ca_cert`/`ca_key`, valid from `now`:
/// (certificate, key, not after).
pub fn new_serving(plan: &Plan, ca_cert: &str, ca_key: &str, now: i64) -> Result<(String, String, i64), CertError> {
    if !ca_cert.contains("BEGIN CERTIFICATE") {
        return Err(CertError::Unusable("the stored CA certificate is not PEM".into()));
    }
    let ca_key = KeyPair::from_pem(ca_key).map_err(generate_error("reading the CA key"))?;
    let issuer = Issuer::new(ca_params(), ca_key);
    let key = KeyPair::generate().map_err(generate_error("the serving key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, plan.names.first().cloned().unwrap_or_default());
    params.subject_alt_names = plan
        .names
        .iter()
        .map(|name| match name.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => name.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()
        .map_err(generate_error("the serving certificate's names"))?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let not_after = now + plan.validity;
    params.not_before = timestamp(now - 60);
    params.not_after = timestamp(not_after);
    let cert = params.signed_by(&key, &issuer).map_err(generate_error("the serving certificate"))?;
    Ok((cert.pem(), key.serialize_pem(), not_after))
}

/// The material to serve at `now`: `current` if it is still good for `plan` (`false`), else
/// renewed (`true`): the serving certificate, and the CA too when it is due.
pub fn renewed(current: Option<&Material>, plan: &Plan, now: i64) -> Result<(Material, bool), CertError> {
    let ca_due = current.is_none_or(|m| needs_renewal(m.ca_not_after, plan.validity * 10, now));
    let cert_due = current.is_none_or(|m| needs_renewal(m.not_after, plan.validity, now) || m.names != plan.names);
    let (ca_cert, ca_key, ca_not_after) = match current {
        Some(m) if !ca_due && !cert_due => return Ok((m.clone(), false)),
        Some(m) if !ca_due => (m.ca_cert.clone(), m.ca_key.clone(), m.ca_not_after),
        _ => new_ca(plan, now)?,
    };
    let (cert, key, not_after) = new_serving(plan, &ca_cert, &ca_key, now)?;
    Ok((Material { ca_cert, ca_key, ca_not_after, cert, key, not_after, names: plan.names.clone() }, true))
}

/// The rustls form of a PEM certificate chain and key.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Unusable(format!("reading the certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(CertError::Unusable("no certificate in the chain".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| CertError::Unusable(format!("reading the private key: {e}")))?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| CertError::Unusable(format!("the key does not fit the certificate: {e}")))
}

/// Hands the current certificate to every TLS handshake; [`Resolver::set`] swaps it.
#[derive(Debug)]
pub struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl Resolver {
    /// A resolver serving `key`.
    pub fn new(key: CertifiedKey) -> Arc<Self> {
        Arc::new(Self { current: RwLock::new(Arc::new(key)) })
    }

    /// Serves `key` from the next handshake on.
    pub fn set(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

const CA_NOT_AFTER: &str = "network-operator.nvidia.com/ca-not-after";
const CERT_NOT_AFTER: &str = "network-operator.nvidia.com/cert-not-after";
const CERT_NAMES: &str = "network-operator.nvidia.com/cert-names";

/// The material kept in `secret`, if it holds all of it.
pub fn from_secret(secret: &Secret) -> Option<Material> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| data.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok());
    let annotations = secret.metadata.annotations.as_ref()?;
    let seconds = |key: &str| annotations.get(key)?.parse::<i64>().ok();
    Some(Material {
        ca_cert: text("ca.crt")?,
        ca_key: text("ca.key")?,
        ca_not_after: seconds(CA_NOT_AFTER)?,
        cert: text("tls.crt")?,
        key: text("tls.key")?,
        not_after: seconds(CERT_NOT_AFTER)?,
        names: annotations.get(CERT_NAMES)?.split(',').filter(|n| !n.is_empty()).map(String::from).collect(),
    })
}

/// `material` as the Secret `name` in `namespace` (a `kubernetes.io/tls` Secret with the CA).
pub fn to_secret(material: &Material, name: &str, namespace: &str) -> Secret {
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    let data: BTreeMap<String, ByteString> = [
        ("ca.crt", bytes(&material.ca_cert)),
        ("ca.key", bytes(&material.ca_key)),
        ("tls.crt", bytes(&material.cert)),
        ("tls.key", bytes(&material.key)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let annotations = [
        (CA_NOT_AFTER, material.ca_not_after.to_string()),
        (CERT_NOT_AFTER, material.not_after.to_string()),
        (CERT_NAMES, material.names.join(",")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            annotations: Some(annotations),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Default::default()
    }
}

/// Self-managed certificates: where they are kept and whose `caBundle` they go to.
#[derive(Clone)]
pub struct SelfManaged {
    /// The API client.
    pub client: Client,
    /// Namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret.
    pub secret: String,
    /// Name of the ValidatingWebhookConfiguration whose `caBundle` is kept current.
    pub webhook_config: String,
    /// What the certificates are made for.
    pub plan: Plan,
}

impl SelfManaged {
    /// The material to serve now: the Secret's, renewed (and stored) when due. Returns whether
    /// it changed.
    pub async fn ensure(&self, now: i64) -> Result<(Material, bool), CertError> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let api = |what: String| move |source| CertError::Api { what, source };
        let live = secrets.get_opt(&self.secret).await.map_err(api(format!("reading Secret {}", self.secret)))?;
        let current = live.as_ref().and_then(from_secret);
        let (material, changed) = renewed(current.as_ref(), &self.plan, now)?;
        if !changed {
            return Ok((material, false));
        }
        let mut secret = to_secret(&material, &self.secret, &self.namespace);
        let written = match live {
            Some(live) => {
                secret.metadata.resource_version = live.metadata.resource_version;
                secrets.replace(&self.secret, &PostParams::default(), &secret).await
            }
            None => secrets.create(&PostParams::default(), &secret).await,
        };
        match written {
            Ok(_) => {
                tracing::info!(secret = %self.secret, not_after = material.not_after, "stored a new serving certificate");
                Ok((material, true))
            }
            // Another replica wrote first: serve what it stored.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let stored = secrets.get(&self.secret).await.map_err(api(format!("reading Secret {}", self.secret)))?;
                let material = from_secret(&stored).ok_or_else(|| {
                    CertError::Unusable(format!("Secret {} holds no complete certificate material", self.secret))
                })?;
                Ok((material, true))
            }
            Err(source) => Err(CertError::Api { what: format!("storing Secret {}", self.secret), source }),
        }
    }

    /// Puts `ca_cert` into the `caBundle` of every webhook of the configuration, unless it is
    /// there already.
    pub async fn publish_ca(&self, ca_cert: &str) -> Result<(), CertError> {
        let configs: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        let what = format!("updating the caBundle of ValidatingWebhookConfiguration {}", self.webhook_config);
        let mut config =
            configs.get(&self.webhook_config).await.map_err(|source| CertError::Api { what: what.clone(), source })?;
        let bundle = ByteString(ca_cert.as_bytes().to_vec());
        let mut changed = false;
        for webhook in config.webhooks.iter_mut().flatten() {
            if webhook.client_config.ca_bundle.as_ref() != Some(&bundle) {
                webhook.client_config.ca_bundle = Some(bundle.clone());
                changed = true;
            }
        }
        if changed {
            configs
                .replace(&self.webhook_config, &PostParams::default(), &config)
                .await
                .map_err(|source| CertError::Api { what, source })?;
            tracing::info!(config = %self.webhook_config, "caBundle updated");
        }
        Ok(())
    }
}

/// The base64 of `pem`, as a `caBundle` is written in YAML.
pub fn ca_bundle(pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan { names: vec!["webhook.ns.svc".into(), "127.0.0.1".into()], validity: 3_000 }
    }

    #[test]
    fn renewal_is_due_when_a_third_of_the_lifetime_is_left() {
        assert!(!needs_renewal(3_000, 3_000, 1_999));
        assert!(needs_renewal(3_000, 3_000, 2_000));
        assert!(needs_renewal(3_000, 3_000, 5_000));
    }

    #[test]
    fn a_first_run_makes_a_ca_and_a_serving_certificate_rustls_can_serve() {
        let (material, _) = renewed(None, &plan(), 1_000).unwrap();
        assert_eq!((material.not_after, material.ca_not_after), (4_000, 31_000));
        assert!(material.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        certified_key(material.cert.as_bytes(), material.key.as_bytes()).expect("servable");
        assert!(certified_key(material.cert.as_bytes(), material.ca_key.as_bytes()).is_err(), "wrong key refused");
    }

    #[test]
    fn current_material_is_kept_then_the_serving_certificate_is_renewed_with_the_same_ca() {
        let (first, made) = renewed(None, &plan(), 1_000).unwrap();
        assert!(made);
        assert_eq!(renewed(Some(&first), &plan(), 2_000).unwrap(), (first.clone(), false));
        let (second, _) = renewed(Some(&first), &plan(), 3_000).unwrap();
        assert_eq!(second.ca_cert, first.ca_cert);
        assert_ne!(second.cert, first.cert);
        assert_eq!(second.not_after, 6_000);
        let renamed = Plan { names: vec!["other.ns.svc".into()], ..plan() };
        let (third, _) = renewed(Some(&second), &renamed, 3_001).unwrap();
        assert_eq!((third.ca_cert == first.ca_cert, third.names.clone()), (true, vec!["other.ns.svc".to_string()]));
    }

    #[test]
    fn the_ca_is_renewed_before_it_expires() {
        let (first, _) = renewed(None, &plan(), 0).unwrap();
        let (late, _) = renewed(Some(&first), &plan(), 20_000).unwrap();
        assert_ne!(late.ca_cert, first.ca_cert);
        assert_eq!(late.ca_not_after, 50_000);
    }

    #[test]
    fn material_round_trips_through_its_secret() {
        let (material, _) = renewed(None, &plan(), 1_000).unwrap();
        let secret = to_secret(&material, "webhook-certs", "ns");
        assert_eq!(from_secret(&secret), Some(material));
        assert_eq!(from_secret(&Secret::default()), None);
    }

    #[test]
    fn unusable_pem_is_an_error_not_a_panic() {
        for (cert, key) in
            [("", ""), ("garbage", "garbage"), ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "")]
        {
            assert!(certified_key(cert.as_bytes(), key.as_bytes()).is_err());
        }
    }
}
