//! The validating admission webhook for NicClusterPolicy and NicNodePolicy (binary
//! `admission-webhook`): a bad policy is refused when it is applied, with every finding and its field path, instead of
//! being found later in a status.
//!
//! What a CRD rule can express is in the CRDs (CEL, with messages); what needs code is found by
//! [`rules`], which runs the same validation the controllers run at render, so a rule exists
//! once; what depends on the other policies and the nodes (a section in both kinds, two
//! NicNodePolicies selecting one node) is judged against [`watched`] caches. [`review`] answers
//! AdmissionReviews (DELETE always passes), [`server`] serves them over
//! HTTPS, and [`certs`] provides the serving certificate: mounted (cert-manager or the user's)
//! or self-managed (own CA, kept in a Secret, `caBundle` patched, renewed before expiry).

pub mod certs;
pub mod review;
pub mod rules;
pub mod server;
pub mod watched;
