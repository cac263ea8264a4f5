//! The figures each side exports, read into one vocabulary: API requests by HTTP method
//! (`GET` for get, list and watch; `POST`, `PUT`, `PATCH` with server-side apply, `DELETE`).
//! Ours count in `network_operator_api_requests_total{verb}`, the original's (controller-runtime)
//! in `rest_client_requests_total{method}`, and the API server's own in
//! `apiserver_request_total{verb, resource, subresource}`, which counts both the same way.

use std::collections::BTreeMap;

/// Requests by HTTP method.
pub type Requests = BTreeMap<String, f64>;

/// Whether requests of `method` change something.
pub fn is_write(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH" | "DELETE")
}

/// The value of label `name` in a sample line (`metric{a="1",name="x"} 3`).
fn label<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let labels = line.split_once('{')?.1.rsplit_once('}')?.0;
    labels.split("\",").find_map(|pair| {
        let (key, value) = pair.split_once("=\"")?;
        (key.trim_start_matches(',') == name).then(|| value.trim_end_matches('"'))
    })
}

/// The value of a sample line (the number after the labels; a timestamp after it is ignored).
fn value(line: &str) -> f64 {
    let rest = line.rsplit_once('}').map(|(_, rest)| rest).unwrap_or(line);
    rest.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

/// The HTTP method of a Kubernetes verb (ours are lower case, the API server's upper case).
fn method_of(verb: &str) -> &'static str {
    match verb.to_ascii_lowercase().as_str() {
        "get" | "list" | "watch" => "GET",
        "create" | "post" => "POST",
        "update" | "put" => "PUT",
        "patch" | "apply" => "PATCH",
        "delete" | "deletecollection" => "DELETE",
        _ => "OTHER",
    }
}

/// The sample lines of `metric` on a `/metrics` page.
fn samples<'a>(page: &'a str, metric: &'a str) -> impl Iterator<Item = &'a str> {
    page.lines().filter(move |l| l.strip_prefix(metric).is_some_and(|rest| rest.starts_with('{')))
}

/// Our controllers' requests (`network_operator_api_requests_total`), by method.
pub fn ours(page: &str) -> Requests {
    let mut out = Requests::new();
    for line in samples(page, "network_operator_api_requests_total") {
        *out.entry(method_of(label(line, "verb").unwrap_or_default()).to_string()).or_default() += value(line);
    }
    out
}

/// The original's requests (controller-runtime's `rest_client_requests_total`), by method.
pub fn original(page: &str) -> Requests {
    let mut out = Requests::new();
    for line in samples(page, "rest_client_requests_total") {
        let method = label(line, "method").unwrap_or("OTHER").to_ascii_uppercase();
        *out.entry(method).or_default() += value(line);
    }
    out
}

/// The API server's requests (`apiserver_request_total`), by method, leaving out what the
/// benchmark itself sends as scheduler and kubelet (`pods/binding`, `pods/status`, pod deletions)
/// and its own policy watch and reads.
pub fn apiserver(page: &str) -> Requests {
    let mut out = Requests::new();
    for line in samples(page, "apiserver_request_total") {
        let verb = label(line, "verb").unwrap_or_default();
        let resource = label(line, "resource").unwrap_or_default();
        let subresource = label(line, "subresource").unwrap_or_default();
        let played = resource == "pods" && (matches!(subresource, "binding" | "status") || verb == "DELETE");
        if played {
            continue;
        }
        *out.entry(method_of(verb).to_string()).or_default() += value(line);
    }
    out
}

/// `after - before`, per method, leaving out methods that did not grow.
pub fn delta(after: &Requests, before: &Requests) -> Requests {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

/// All requests, and the writes among them.
pub fn totals(requests: &Requests) -> (f64, f64) {
    // `+ 0.0`: an empty f64 sum is -0.0, which would print as "-0".
    let all: f64 = requests.values().sum();
    let writes: f64 = requests.iter().filter(|(m, _)| is_write(m)).map(|(_, n)| n).sum();
    (all + 0.0, writes + 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page of one of our controllers, as `state_core::metrics` writes it.
    const OURS: &str = r#"# HELP network_operator_api_requests_total Requests to the API server, by verb and resource.
# TYPE network_operator_api_requests_total counter
network_operator_api_requests_total{resource="daemonsets",verb="list"} 2
network_operator_api_requests_total{resource="daemonsets",verb="watch"} 3
network_operator_api_requests_total{resource="daemonsets",verb="patch"} 7
network_operator_api_requests_total{resource="nicclusterpolicies",verb="get"} 1
network_operator_api_requests_total{resource="events",verb="create"} 4
network_operator_api_requests_total{resource="configmaps",verb="delete"} 1
network_operator_state{state="state-multus-cni",value="ready"} 1
"#;

    /// A page of the original (controller-runtime v0.18, client-go's rest client metrics).
    const ORIGINAL: &str = r#"# HELP rest_client_requests_total Number of HTTP requests, partitioned by status code, method, and host.
# TYPE rest_client_requests_total counter
rest_client_requests_total{code="200",host="127.0.0.1:6443",method="GET"} 1520
rest_client_requests_total{code="200",host="127.0.0.1:6443",method="PUT"} 311
rest_client_requests_total{code="201",host="127.0.0.1:6443",method="POST"} 42
rest_client_requests_total{code="404",host="127.0.0.1:6443",method="GET"} 80
rest_client_requests_total{code="200",host="127.0.0.1:6443",method="PATCH"} 9
rest_client_request_duration_seconds_bucket{host="127.0.0.1:6443",verb="GET",le="0.005"} 1200
"#;

    /// A page of the API server (kube-apiserver v1.36).
    const APISERVER: &str = r#"# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="apps",resource="daemonsets",scope="resource",subresource="",verb="APPLY",version="v1"} 12
apiserver_request_total{code="200",component="apiserver",dry_run="",group="apps",resource="daemonsets",scope="namespace",subresource="",verb="LIST",version="v1"} 5
apiserver_request_total{code="0",component="apiserver",dry_run="",group="apps",resource="daemonsets",scope="namespace",subresource="",verb="WATCH",version="v1"} 2
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="binding",verb="POST",version="v1"} 1000
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1"} 1000
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="DELETE",version="v1"} 30
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 1000
apiserver_request_total{code="200",component="apiserver",dry_run="",group="mellanox.com",resource="nicclusterpolicies",scope="resource",subresource="status",verb="PUT",version="v1alpha1"} 3
apiserver_request_duration_seconds_count{verb="GET"} 99
"#;

    #[test]
    fn our_verbs_are_counted_by_http_method() {
        let requests = ours(OURS);
        assert_eq!(requests["GET"], 6.0);
        assert_eq!(requests["PATCH"], 7.0);
        assert_eq!(requests["POST"], 4.0);
        assert_eq!(requests["DELETE"], 1.0);
        assert_eq!(totals(&requests), (18.0, 12.0));
        assert_eq!(format!("{:.0}", totals(&Requests::new()).1), "0");
    }

    #[test]
    fn the_originals_requests_are_summed_over_status_codes() {
        let requests = original(ORIGINAL);
        assert_eq!(requests["GET"], 1600.0);
        assert_eq!(requests["PUT"], 311.0);
        assert_eq!(requests["POST"], 42.0);
        assert_eq!(requests["PATCH"], 9.0);
        assert_eq!(requests.len(), 4, "{requests:?}");
    }

    #[test]
    fn the_api_servers_count_leaves_out_the_played_kubelet() {
        let requests = apiserver(APISERVER);
        assert_eq!(requests["PATCH"], 12.0, "server-side apply is a PATCH");
        assert_eq!(requests["GET"], 7.0);
        assert_eq!(requests["POST"], 1000.0, "pods created by the DaemonSet controller count");
        assert_eq!(requests["PUT"], 3.0);
        assert!(!requests.contains_key("DELETE"), "{requests:?}");
    }

    #[test]
    fn a_delta_keeps_only_what_grew() {
        let before = Requests::from([("GET".to_string(), 5.0), ("PATCH".to_string(), 2.0)]);
        let after = Requests::from([("GET".to_string(), 9.0), ("PATCH".to_string(), 2.0), ("POST".to_string(), 1.0)]);
        assert_eq!(delta(&after, &before), Requests::from([("GET".to_string(), 4.0), ("POST".to_string(), 1.0)]));
    }
}
