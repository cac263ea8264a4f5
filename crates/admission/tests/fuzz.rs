//! Fuzz-style property test: arbitrary JSON in the device-plugin configs and arbitrary
//! policies (random values in random places) never make the rules or the review panic.

use admission::review::answer;
use admission::rules::findings;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionReview;
use serde_json::{Map, Value, json};

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn string(&mut self) -> String {
        const WORDS: &[&str] = &[
            "",
            "a",
            "15b3",
            "-x-",
            "nvidia.com",
            "rdma_a",
            "ens1",
            "1Gi",
            "0",
            "-1",
            "cpu",
            "memory",
            "netDevice",
            "accelerator",
            "auxNetDevice",
            "ü",
            "{",
            "\"",
            "02:00:00:00:00:00:00:00",
            "true",
            "null",
            "1e309",
        ];
        WORDS[self.below(WORDS.len() as u64) as usize].to_string()
    }

    fn value(&mut self, depth: u32) -> Value {
        const KEYS: &[&str] = &[
            "configList",
            "resourceList",
            "resourceName",
            "resourcePrefix",
            "rdmaHcaMax",
            "selectors",
            "devices",
            "vendors",
            "deviceIDs",
            "drivers",
            "ifNames",
            "linkTypes",
            "deviceType",
            "isRdma",
            "pfNames",
            "excludeTopology",
            "name",
            "requests",
            "limits",
            "x",
        ];
        match (self.below(if depth == 0 { 5 } else { 8 }), depth) {
            (0, _) => Value::Null,
            (1, _) => json!(self.below(2) == 0),
            (2, _) => json!(self.next() as i64 % 1000 - 500),
            (3, _) => json!(self.next() as f64 / 7.0),
            (4, _) => json!(self.string()),
            (5 | 6, d) => {
                let mut map = Map::new();
                for _ in 0..self.below(4) {
                    let key = KEYS[self.below(KEYS.len() as u64) as usize].to_string();
                    map.insert(key, self.value(d - 1));
                }
                Value::Object(map)
            }
            (_, d) => Value::Array((0..self.below(4)).map(|_| self.value(d - 1)).collect()),
        }
    }
}

const SECTIONS: &[&str] = &[
    "ofedDriver",
    "rdmaSharedDevicePlugin",
    "sriovDevicePlugin",
    "ibKubernetes",
    "nicFeatureDiscovery",
    "docaTelemetryService",
    "spectrumXOperator",
];

fn section(random: &mut Random) -> Value {
    let mut section = json!({"image": "x", "repository": "ghcr.io/x", "version": "23.04-0.5.3.3.1"});
    for key in ["config", "containerResources", "pKeyGUIDPoolRangeStart", "upgradePolicy", "ufmSecret", "env"] {
        if random.below(2) == 0 {
            section[key] = match (key, random.below(3)) {
                ("config", 0) => json!(random.value(4).to_string()),
                ("config", 1) => json!(random.string()),
                (_, _) => random.value(3),
            };
        }
    }
    section
}

#[test]
fn arbitrary_configs_and_policies_never_panic() {
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let mut typed = 0;
    for _ in 0..4_000 {
        let mut spec = Map::new();
        for name in SECTIONS {
            if random.below(2) == 0 {
                spec.insert(name.to_string(), section(&mut random));
            }
        }
        let object = json!({"apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy",
                            "metadata": {"name": "nic-cluster-policy"}, "spec": spec});
        if let Ok(policy) = serde_json::from_value::<api::NicClusterPolicy>(object.clone()) {
            typed += 1;
            let _ = findings(&policy);
        }
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "mellanox.com", "version": "v1alpha1", "kind": "NicClusterPolicy"},
                        "resource": {"group": "mellanox.com", "version": "v1alpha1", "resource": "nicclusterpolicies"},
                        "name": "nic-cluster-policy", "operation": "CREATE", "userInfo": {}, "object": object}
        }))
        .expect("a review");
        let _ = answer(review);
    }
    assert!(typed > 300, "enough inputs reach the rules as typed policies: {typed}");
}
