//! The CRDs' CEL rules, checked here by running their regular expressions (the API server runs
//! the same expressions; the e2e `crds` tests show it refusing the bad values).

use api::image::{REPOSITORIES_ACCEPTED, REPOSITORIES_REFUSED, REPOSITORY_RULE};
use api::networks::{DNS_SUBDOMAIN_RULE, RESOURCE_NAME_RULE};
use api::policy::OFED_VERSION_RULE;
use regex::Regex;

/// Whether `value` passes `rule`, a disjunction of `<x>.matches('<regex>')` terms.
fn passes(rule: &str, value: &str) -> bool {
    rule.split("matches('").skip(1).any(|term| {
        let pattern = term.split("')").next().expect("a closed pattern").replace("\\\\", "\\");
        Regex::new(&pattern).expect("a valid pattern").is_match(value)
    })
}

fn check(rule: &str, good: &[&str], bad: &[&str]) {
    for value in good {
        assert!(passes(rule, value), "{value:?} should pass {rule}");
    }
    for value in bad {
        assert!(!passes(rule, value), "{value:?} should fail {rule}");
    }
}

#[test]
fn repositories_are_what_the_image_reference_grammar_allows_before_the_image() {
    check(REPOSITORY_RULE, REPOSITORIES_ACCEPTED, REPOSITORIES_REFUSED);
}

#[test]
fn ofed_versions_are_driver_versions_or_digests() {
    let digest = format!("sha256:{}", "a".repeat(64));
    check(
        OFED_VERSION_RULE,
        &["23.04-0.5.3.3.1", "24.07-0.6.1.0-0", "24.10-0.7.0.0-0", "doca3.1.0-25.07-0.9.7.0-0", &digest],
        &["", "1.0", "latest", "23.04", "v23.04-0.5.3.3.1", "sha256:abc", "23.04-0.5.3.3.1-ubuntu22.04"],
    );
}

#[test]
fn config_map_names_are_dns_subdomains() {
    check(DNS_SUBDOMAIN_RULE, &["my-config", "a.b", "x1"], &["", "My-Config", "-a", "a-", "a_b", "a..b"]);
}

#[test]
fn host_device_resource_names_follow_the_device_plugin_pattern() {
    check(
        RESOURCE_NAME_RULE,
        &["hostdev", "nvidia.com/hostdev", "my_res.1", "a"],
        &["", "-x", "x-", "a/b/c", "x y", "nvidia.com/"],
    );
}
