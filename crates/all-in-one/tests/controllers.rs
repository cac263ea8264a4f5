//! The single process runs every controller the charts ship, and nothing else: a new
//! controller chart without its body here (or the reverse) fails this test.

use std::collections::BTreeSet;
use std::path::Path;

/// The binaries of the controller subcharts (annotation `network-operator.nvidia.com/binary`),
/// but the webhook (not a controller) and the all-in-one itself.
fn chart_binaries() -> BTreeSet<String> {
    let charts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/network-operator/charts");
    let mut binaries = BTreeSet::new();
    for entry in std::fs::read_dir(&charts).expect("the subcharts") {
        let chart = entry.expect("a subchart").path().join("Chart.yaml");
        let Ok(text) = std::fs::read_to_string(&chart) else { continue };
        let binary = text
            .lines()
            .find_map(|line| line.trim().strip_prefix("network-operator.nvidia.com/binary:"))
            .map(|b| b.trim().to_string());
        if let Some(binary) = binary.filter(|b| b != "admission-webhook" && b != "network-operator") {
            binaries.insert(binary);
        }
    }
    binaries
}

#[test]
fn the_one_process_runs_exactly_the_controllers_the_charts_ship() {
    let running: BTreeSet<String> = all_in_one::controllers().into_iter().map(|(name, _)| name.to_string()).collect();
    let shipped = chart_binaries();
    assert_eq!(shipped.len(), 15, "{shipped:?}");
    assert_eq!(running, shipped);
}

#[test]
fn the_binary_is_built_for_the_end_to_end_tests() {
    // `cargo test` builds a package's binaries only for its integration tests; the e2e suite runs
    // this one.
    assert!(Path::new(env!("CARGO_BIN_EXE_network-operator")).is_file());
}
