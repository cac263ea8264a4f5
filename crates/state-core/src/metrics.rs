//! Prometheus metrics shared by every controller, with names dashboards can rely on.

use api::SyncState;
use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The metrics of one controller process.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `network_operator_reconcile_total{state,result}`: reconciles by outcome.
    pub reconcile_total: IntCounterVec,
    /// `network_operator_reconcile_duration_seconds{state}`.
    pub reconcile_duration: HistogramVec,
    /// `network_operator_state{state,value}`: 1 for the state's current value, 0 for the others.
    pub state: IntGaugeVec,
    /// `network_operator_objects_applied_total{state}`: server-side applies sent.
    pub objects_applied: IntCounterVec,
    /// `network_operator_status_writes_total{state}`: status writes sent (only on change).
    pub status_writes: IntCounterVec,
    /// `network_operator_policy_state{value}`: 1 for the policy's global state (aggregator).
    pub policy_state: IntGaugeVec,
    /// `network_operator_policy_section_state{state,value}`: each state as the aggregator folds
    /// it (a state whose controller never reported or stopped is `notReady` here), apart from
    /// the `network_operator_state` each state's own controller exports.
    pub section_state: IntGaugeVec,
    /// `network_operator_api_requests_total{verb,resource}`: requests sent to the API server
    /// (counted by [`Metrics::request_layer`] on the client).
    pub api_requests: IntCounterVec,
    /// `network_operator_build_info{component,version,commit}`: 1, naming what runs.
    pub build_info: IntGaugeVec,
    /// `network_operator_leader`: 1 while this process acts (holds the lease, or runs without
    /// leader election), 0 while it stands by.
    pub leader: IntGauge,
    /// `process_cpu_seconds_total`: user and system CPU time, read from `/proc/self/stat` at
    /// each scrape.
    pub cpu_seconds: prometheus::Counter,
    /// `process_open_fds`: open file descriptors, counted in `/proc/self/fd` at each scrape.
    pub open_fds: IntGauge,
    /// `process_resident_memory_bytes`, read from `/proc/self/status` at each scrape.
    resident_memory: IntGauge,
    /// `process_start_time_seconds`: a change means the controller restarted.
    start_time: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconcile_total = IntCounterVec::new(
            Opts::new("network_operator_reconcile_total", "Reconciles, by state and result"),
            &["state", "result"],
        )
        .expect("valid metric");
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new("network_operator_reconcile_duration_seconds", "Duration of one reconcile")
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["state"],
        )
        .expect("valid metric");
        let state = IntGaugeVec::new(
            Opts::new("network_operator_state", "Current value of each state (1 for the current value)"),
            &["state", "value"],
        )
        .expect("valid metric");
        let objects_applied = IntCounterVec::new(
            Opts::new("network_operator_objects_applied_total", "Objects written by server-side apply"),
            &["state"],
        )
        .expect("valid metric");
        let status_writes = IntCounterVec::new(
            Opts::new("network_operator_status_writes_total", "Status writes (sent only when the status changed)"),
            &["state"],
        )
        .expect("valid metric");
        let policy_state = IntGaugeVec::new(
            Opts::new("network_operator_policy_state", "Global state of nic-cluster-policy (1 for the current value)"),
            &["value"],
        )
        .expect("valid metric");
        let section_state = IntGaugeVec::new(
            Opts::new(
                "network_operator_policy_section_state",
                "Each state as the aggregator folds it into the policy's status: 1 for its current value",
            ),
            &["state", "value"],
        )
        .expect("valid metric");
        let api_requests = IntCounterVec::new(
            Opts::new("network_operator_api_requests_total", "Requests sent to the API server, by verb and resource"),
            &["verb", "resource"],
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new("network_operator_build_info", "The controller's name, version and commit (always 1)"),
            &["component", "version", "commit"],
        )
        .expect("valid metric");
        let leader = IntGauge::new("network_operator_leader", "Whether this replica acts (1) or stands by (0)")
            .expect("valid metric");
        let resident_memory =
            IntGauge::new("process_resident_memory_bytes", "Resident memory size in bytes").expect("valid metric");
        let cpu_seconds =
            prometheus::Counter::new("process_cpu_seconds_total", "Total user and system CPU time spent in seconds")
                .expect("valid metric");
        let open_fds = IntGauge::new("process_open_fds", "Number of open file descriptors").expect("valid metric");
        let start_time =
            IntGauge::new("process_start_time_seconds", "Start time of the process since the Unix epoch in seconds")
                .expect("valid metric");
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        start_time.set(i64::try_from(started.as_secs()).unwrap_or_default());
        for collector in [
            Box::new(reconcile_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reconcile_duration.clone()),
            Box::new(state.clone()),
            Box::new(objects_applied.clone()),
            Box::new(status_writes.clone()),
            Box::new(policy_state.clone()),
            Box::new(section_state.clone()),
            Box::new(api_requests.clone()),
            Box::new(leader.clone()),
            Box::new(build_info.clone()),
            Box::new(resident_memory.clone()),
            Box::new(cpu_seconds.clone()),
            Box::new(open_fds.clone()),
            Box::new(start_time.clone()),
        ] {
            registry.register(collector).expect("metric registered once");
        }
        Self {
            registry,
            reconcile_total,
            reconcile_duration,
            state,
            objects_applied,
            status_writes,
            policy_state,
            section_state,
            api_requests,
            leader,
            build_info,
            resident_memory,
            cpu_seconds,
            open_fds,
            start_time,
        }
    }

    /// The client layer counting requests into `network_operator_api_requests_total`.
    pub fn request_layer(&self) -> crate::requests::CountRequests {
        crate::requests::CountRequests::new(self.api_requests.clone())
    }

    /// Registers a metric of one controller's own (the OFED upgrade's, say) with the others.
    pub fn register(&self, collector: Box<dyn Collector>) {
        if let Err(e) = self.registry.register(collector) {
            tracing::warn!(error = %e, "a metric could not be registered");
        }
    }

    /// Starts every `network_operator_reconcile_total{state=name}` series at zero (each result,
    /// and `failed`), so `rate()` and `increase()` see the first one counted.
    pub fn init_reconciles(&self, name: &str) {
        for result in SyncState::ALL.iter().map(|s| s.as_str()).chain(["failed"]) {
            self.reconcile_total.with_label_values(&[name, result]);
        }
    }

    /// Sets `network_operator_state{state=name}` to `current`.
    pub fn set_state(&self, name: &str, current: SyncState) {
        for value in SyncState::ALL {
            self.state.with_label_values(&[name, value.as_str()]).set(i64::from(value == current));
        }
    }

    /// Sets `network_operator_policy_state` to `current`.
    pub fn set_policy_state(&self, current: SyncState) {
        for value in SyncState::ALL {
            self.policy_state.with_label_values(&[value.as_str()]).set(i64::from(value == current));
        }
    }

    /// Withdraws every state series (`network_operator_state`, `network_operator_policy_state`,
    /// `network_operator_policy_section_state`) once the policy is gone: absent, as after a
    /// restart, instead of its last value.
    pub fn forget_states(&self) {
        self.state.reset();
        self.policy_state.reset();
        self.section_state.reset();
    }

    /// Sets `network_operator_policy_section_state{state=name}` to `current` (aggregator).
    pub fn set_section_state(&self, name: &str, current: SyncState) {
        for value in SyncState::ALL {
            self.section_state.with_label_values(&[name, value.as_str()]).set(i64::from(value == current));
        }
    }

    /// The name of every metric this process exports (histograms without their suffixes).
    pub fn names(&self) -> Vec<String> {
        let collectors: [&dyn Collector; 14] = [
            &self.reconcile_total,
            &self.reconcile_duration,
            &self.state,
            &self.objects_applied,
            &self.status_writes,
            &self.policy_state,
            &self.section_state,
            &self.api_requests,
            &self.leader,
            &self.build_info,
            &self.resident_memory,
            &self.cpu_seconds,
            &self.open_fds,
            &self.start_time,
        ];
        collectors.iter().flat_map(|c| c.desc()).map(|d| d.fq_name.clone()).collect()
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        if let Some(bytes) = resident_memory_bytes() {
            self.resident_memory.set(bytes);
        }
        if let Some(seconds) = cpu_seconds() {
            let counted = self.cpu_seconds.get();
            if seconds > counted {
                self.cpu_seconds.inc_by(seconds - counted);
            }
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(i64::try_from(fds.count()).unwrap_or(i64::MAX));
        }
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// The process's resident memory (`VmRSS` of `/proc/self/status`), where there is one.
fn resident_memory_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kilobytes: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes * 1024)
}

/// The process's user and system CPU time (`utime` and `stime` of `/proc/self/stat`, in the
/// kernel's USER_HZ of 100 ticks a second), where there is one.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_named_and_memory_is_read_at_each_scrape() {
        let metrics = Metrics::new();
        assert_eq!(metrics.names().len(), 14);
        assert!(metrics.names().contains(&"network_operator_reconcile_duration_seconds".to_string()));
        let text = metrics.encode();
        let rss = text.lines().find(|l| l.starts_with("process_resident_memory_bytes ")).expect("exported");
        assert_ne!(rss, "process_resident_memory_bytes 0", "read from /proc/self/status");
        let fds = text.lines().find(|l| l.starts_with("process_open_fds ")).expect("exported");
        assert_ne!(fds, "process_open_fds 0", "counted in /proc/self/fd");
        // Burn a little CPU: the counter follows.
        let mut x = 0u64;
        for i in 0..30_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let text = metrics.encode();
        let cpu = text.lines().find(|l| l.starts_with("process_cpu_seconds_total ")).expect("exported");
        assert_ne!(cpu, "process_cpu_seconds_total 0", "read from /proc/self/stat");
    }

    #[test]
    fn every_reconcile_result_is_exported_at_zero_before_the_first() {
        let metrics = Metrics::new();
        metrics.init_reconciles("state-OFED");
        let text = metrics.encode();
        for result in ["ready", "notReady", "ignore", "error", "failed"] {
            let series = format!(r#"network_operator_reconcile_total{{result="{result}",state="state-OFED"}} 0"#);
            assert!(text.contains(&series), "{series} missing:\n{text}");
        }
    }

    #[test]
    fn forgotten_states_are_absent_from_the_exposition() {
        let metrics = Metrics::new();
        metrics.set_state("state-RDMA-device-plugin", SyncState::Ready);
        metrics.set_policy_state(SyncState::Ready);
        metrics.forget_states();
        let text = metrics.encode();
        assert!(!text.contains("network_operator_state{"), "{text}");
        assert!(!text.contains("network_operator_policy_state{"), "{text}");
    }

    #[test]
    fn the_state_gauge_is_one_only_for_the_current_value() {
        let metrics = Metrics::new();
        metrics.set_state("state-RDMA-device-plugin", SyncState::NotReady);
        metrics.set_state("state-RDMA-device-plugin", SyncState::Ready);
        let text = metrics.encode();
        assert!(text.contains(r#"network_operator_state{state="state-RDMA-device-plugin",value="ready"} 1"#), "{text}");
        assert!(
            text.contains(r#"network_operator_state{state="state-RDMA-device-plugin",value="notReady"} 0"#),
            "{text}"
        );
    }
}
