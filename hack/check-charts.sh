#!/usr/bin/env bash
# Checks the Helm charts with the real helm (installed by hack/install-helm.sh), offline:
#   lint of every chart, `helm template` of the umbrella chart in several cases, values that must
#   be refused (schema), the CRD copies, the chart wiring (symlinks), the dashboard's metric names.
# Prints one line per check and exits non-zero if any failed.
#
#   hack/check-charts.sh [OUT_DIR]
#
# With OUT_DIR, the manifests each `helm template` case rendered are written there, one file per
# case (<case>.yaml), for tests that parse them.
set -uo pipefail
cd "$(dirname "$0")/.."

out_dir="${1:-}"
if [ -n "$out_dir" ]; then
    mkdir -p "$out_dir" || exit 1
    out_dir="$(cd "$out_dir" && pwd)"
fi

bin="$(hack/install-helm.sh)" || { echo "FAIL install helm (hack/install-helm.sh)"; exit 1; }
export PATH="$bin:$PATH"
# Keep helm away from the user's repositories, plugins and kubeconfig: everything here is offline.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export HELM_CACHE_HOME="$tmp/helm/cache" HELM_CONFIG_HOME="$tmp/helm/config" HELM_DATA_HOME="$tmp/helm/data"
export KUBECONFIG="$tmp/no-kubeconfig"

charts=charts
umbrella=$charts/network-operator
controllers=(aggregator ofed rdma-dp nic-feature-discovery doca-telemetry ib-kubernetes sriov-dp multus cni-plugins ipoib whereabouts nv-ipam nic-configuration spectrum-x network-nads)
release=network-operator
namespace=nvidia-network-operator
# APIs the optional objects wait for (ServiceMonitor, PrometheusRule, NodeFeatureRule).
all_apis=(--api-versions monitoring.coreos.com/v1/ServiceMonitor
          --api-versions monitoring.coreos.com/v1/PrometheusRule
          --api-versions nfd.k8s-sigs.io/v1alpha1/NodeFeatureRule)

failures=0
ok() { printf 'ok    %s\n' "$1"; }
fail() {
    printf 'FAIL  %s\n' "$1"
    [ -n "${2:-}" ] && [ -s "$2" ] && grep -v 'found symbolic link in path' "$2" | sed 's/^/      | /' | head -n 40
    failures=$((failures + 1))
}
# Helm logs every symlink it follows (the library chart is one) on stderr; that is expected.
quiet() { grep -v 'found symbolic link in path' "$1"; }

# count KIND FILE: number of rendered objects of that kind.
count() { grep -c "^kind: $1\$" "$2"; }

# --- wiring -----------------------------------------------------------------------------------
check_links() {
    local log="$tmp/links.log" bad=0
    : >"$log"
    for path in "$umbrella/charts/lib" \
        $(for c in "${controllers[@]}" all-in-one; do echo "$umbrella/charts/$c/charts/lib" "$umbrella/charts/$c/values.schema.json"; done); do
        if [ ! -L "$path" ]; then
            echo "$path is not a symlink" >>"$log"; bad=1
        elif [ ! -e "$path" ]; then
            echo "$path -> $(readlink "$path") does not resolve" >>"$log"; bad=1
        fi
    done
    for c in "${controllers[@]}" all-in-one; do
        [ -f "$umbrella/charts/$c/files/rbac.yaml" ] || { echo "$c: files/rbac.yaml is missing" >>"$log"; bad=1; }
    done
    if [ $bad = 0 ]; then ok "wiring: charts/lib and values.schema.json symlinks resolve, files/rbac.yaml present"
    else fail "wiring" "$log"; fi
}

check_crds() {
    local log="$tmp/crds.log" bad=0
    : >"$log"
    for f in crds/*; do
        cmp -s "$f" "$umbrella/crds/$(basename "$f")" || { echo "$umbrella/crds/$(basename "$f") differs from $f (copy crds/* into it)" >>"$log"; bad=1; }
    done
    for f in "$umbrella"/crds/*; do
        [ -e "crds/$(basename "$f")" ] || { echo "$f has no counterpart in crds/ (remove it)" >>"$log"; bad=1; }
    done
    if [ $bad = 0 ]; then ok "crds: $umbrella/crds is a byte-identical copy of crds/"
    else fail "crds" "$log"; fi
}

# --- lint -------------------------------------------------------------------------------------
lint() { # name args...
    local name="$1"; shift
    local log="$tmp/lint-${name//\//_}.log"
    if helm lint --strict "$@" >"$log" 2>&1; then ok "lint $name"
    else fail "lint $name" "$log"; fi
}

# --- template ---------------------------------------------------------------------------------
# render CASE args...: helm template of the umbrella chart; the manifests land in $tmp/CASE.yaml
# (and OUT_DIR/CASE.yaml).
render() {
    local name="$1"; shift
    local log="$tmp/$name.log"
    if helm template "$release" "$umbrella" -n "$namespace" "$@" >"$tmp/$name.yaml" 2>"$log"; then
        [ -n "$out_dir" ] && cp "$tmp/$name.yaml" "$out_dir/$name.yaml"
        return 0
    fi
    fail "template $name" "$log"
    return 1
}

# expect CASE DESCRIPTION CONDITION...: the condition (a command) must hold on the rendered case.
expect() {
    local name="$1" what="$2"; shift 2
    if "$@"; then ok "template $name: $what"
    else fail "template $name: $what (got: $(grep '^kind:' "$tmp/$name.yaml" | sort | uniq -c | tr -s ' ' | tr '\n' ';'))"; fi
}

kinds_are() { # FILE "Kind=N Kind=N ...": exact counts of those kinds, and no other kind
    local file="$1" spec="$2" k n listed=""
    for pair in $spec; do
        k="${pair%%=*}"; n="${pair##*=}"; listed="$listed|$k"
        [ "$(count "$k" "$file")" = "$n" ] || return 1
    done
    ! grep '^kind: ' "$file" | grep -qvE "^kind: (${listed#|})\$"
}

# refuse CASE KEY args...: helm template must fail, and its error must name KEY.
refuse() {
    local name="$1" key="$2"; shift 2
    local log="$tmp/refuse-$name.log"
    if helm template "$release" "$umbrella" -n "$namespace" "$@" >/dev/null 2>"$log"; then
        fail "refuse $name: helm template accepted $*"
    elif ! grep -q -- "$key" "$log"; then
        fail "refuse $name: the error does not name '$key'" "$log"
    else
        ok "refuse $name: $(quiet "$log" | grep -m1 -- "$key" | sed 's/^[[:space:]-]*//')"
    fi
}

# --- the checks -------------------------------------------------------------------------------
check_links
check_crds

lint "lib (library)" "$charts/lib"
for c in "${controllers[@]}"; do lint "$c" "$umbrella/charts/$c"; done
lint all-in-one "$umbrella/charts/all-in-one"
lint admission "$umbrella/charts/admission"
lint "network-operator (all-in-one values)" "$umbrella" -f "$umbrella/values-all-in-one.yaml"
lint "network-operator" "$umbrella"
lint "network-operator (seed policy values)" "$umbrella" -f "$umbrella/ci/seed-policy-values.yaml"
lint "network-operator (every section values)" "$umbrella" -f "$umbrella/ci/every-section-values.yaml"

per_controller="ServiceAccount=1 ClusterRole=1 ClusterRoleBinding=1 Deployment=1 Service=1"

if render defaults; then
    expect defaults "15 controllers, their RBAC and Services, the OFED settings, nothing optional" \
        kinds_are "$tmp/defaults.yaml" "ServiceAccount=15 ClusterRole=15 ClusterRoleBinding=15 Role=28 RoleBinding=28 Deployment=15 Service=15 ConfigMap=1"
fi

if render all "${all_apis[@]}" \
    --set global.serviceMonitor.enabled=true --set prometheusRule.enabled=true \
    --set grafanaDashboard.enabled=true --set nfd.deployNodeFeatureRules=true; then
    expect all "plus ServiceMonitors, PrometheusRule, NodeFeatureRule, dashboard ConfigMap" \
        kinds_are "$tmp/all.yaml" "ServiceAccount=15 ClusterRole=15 ClusterRoleBinding=15 Role=28 RoleBinding=28 Deployment=15 Service=15 ServiceMonitor=15 PrometheusRule=1 NodeFeatureRule=1 ConfigMap=2"
    expect all "dashboard ConfigMap labelled grafana_dashboard" grep -q 'grafana_dashboard: "1"' "$tmp/all.yaml"
fi

# The install examples of README.md and the chart README, each with the controllers it installs.
readme_values="$tmp/readme-some.yaml"
sed -n "/^cat > some.yaml <<'VALUES'/,/^VALUES/p" "$umbrella/README.md" | sed '1d;$d' >"$readme_values"
examples=(
    "example-all-but-nads|14|--set network-nads.enabled=false"
    "example-some-yaml|3|-f $readme_values"
    "example-networks-only|1|-f $umbrella/values-networks-only.yaml"
    "example-all-in-one|1|-f $umbrella/values-all-in-one.yaml"
    "example-defaults|15|"
)
for example in "${examples[@]}"; do
    IFS='|' read -r name deployments args <<<"$example"
    # shellcheck disable=SC2086 # the arguments are words
    if render "$name" $args; then
        expect "$name" "the README's example installs $deployments controller(s)" \
            test "$(count Deployment "$tmp/$name.yaml")" = "$deployments"
    fi
done
[ -s "$readme_values" ] || fail "example-some-yaml: no some.yaml heredoc found in $umbrella/README.md"

for c in "${controllers[@]}"; do
    off=()
    for other in "${controllers[@]}"; do [ "$other" = "$c" ] || off+=(--set "$other.enabled=false"); done
    if render "only-$c" "${off[@]}"; then
        case "$c" in
            rdma-dp|ofed|nic-feature-discovery|doca-telemetry|ib-kubernetes|sriov-dp|multus|cni-plugins|ipoib|whereabouts|nv-ipam|nic-configuration|spectrum-x) roles="Role=2 RoleBinding=2" ;; # operands + leader election
            *) roles="Role=1 RoleBinding=1" ;;       # leader election
        esac
        settings=""; [ "$c" = ofed ] && settings="ConfigMap=1"  # ofedDriver.initContainer
        expect "only-$c" "only $release-$c" kinds_are "$tmp/only-$c.yaml" "$per_controller $roles $settings"
        expect "only-$c" "Deployment $release-$c" grep -q "^  name: $release-$c\$" "$tmp/only-$c.yaml"
    fi
done

# The single-process install: one Deployment with the union of the RBAC (cluster, operands,
# lease), and refused beside any per-controller chart.
if render all-in-one -f "$umbrella/values-all-in-one.yaml"; then
    expect all-in-one "only $release-all-in-one" kinds_are "$tmp/all-in-one.yaml" "$per_controller Role=2 RoleBinding=2 ConfigMap=1"
    expect all-in-one "image network-operator" grep -q 'image: ".*/network-operator:' "$tmp/all-in-one.yaml"
fi
refuse all-in-one-beside-controllers "these must be off: aggregator, ofed" --set all-in-one.enabled=true

# The admission webhook (off by default): self-managed certificates with the RBAC for its one
# Secret and its one ValidatingWebhookConfiguration; or cert-manager; or a given Secret.
webhook_only=(--set admission.enabled=true)
for c in "${controllers[@]}"; do webhook_only+=(--set "$c.enabled=false"); done
if render admission "${webhook_only[@]}"; then
    expect admission "webhook, Service, self-managed certificate RBAC" kinds_are "$tmp/admission.yaml" \
        "ServiceAccount=1 Role=1 RoleBinding=1 ClusterRole=1 ClusterRoleBinding=1 Deployment=1 Service=1 ValidatingWebhookConfiguration=1"
    expect admission "failurePolicy Fail, sideEffects None" grep -q 'failurePolicy: Fail' "$tmp/admission.yaml"
fi
if render admission-cert-manager "${webhook_only[@]}" --set admission.certificates.mode=certManager; then
    expect admission-cert-manager "Issuer, Certificate, CA injection, no RBAC" kinds_are "$tmp/admission-cert-manager.yaml" \
        "ServiceAccount=1 Issuer=1 Certificate=1 Deployment=1 Service=1 ValidatingWebhookConfiguration=1"
    expect admission-cert-manager "cainjector annotation" grep -q 'cert-manager.io/inject-ca-from' "$tmp/admission-cert-manager.yaml"
fi
refuse admission-secret-without-ca caBundle "${webhook_only[@]}" --set admission.certificates.mode=secret --set admission.certificates.secretName=x

if render cni-bin-dir --set global.cniBinDir=/usr/libexec/cni; then
    expect cni-bin-dir "CNI_BIN_DIR=/usr/libexec/cni for every controller" \
        test "$(grep -A1 'name: CNI_BIN_DIR$' "$tmp/cni-bin-dir.yaml" | grep -c 'value: "/usr/libexec/cni"')" = 15
fi
if render deploycr-seed -f "$umbrella/ci/seed-policy-values.yaml"; then
    expect deploycr-seed "NicClusterPolicy nic-cluster-policy" grep -q '^kind: NicClusterPolicy$' "$tmp/deploycr-seed.yaml"
fi
if render deploycr-every-section -f "$umbrella/ci/every-section-values.yaml" "${all_apis[@]}"; then
    expect deploycr-every-section "NicClusterPolicy" grep -q '^kind: NicClusterPolicy$' "$tmp/deploycr-every-section.yaml"
    expect deploycr-every-section "LEADER_ELECT=true for replicas > 1 and leaderElection.enabled" \
        test "$(grep -A1 'name: LEADER_ELECT$' "$tmp/deploycr-every-section.yaml" | grep -c 'value: "true"')" = 2
fi

# The rendered policies against the CRD's schema (unknown fields are errors, as the API server's
# pruning would silently drop them). Needs python3 with PyYAML and jsonschema; skipped otherwise.
validate_policies() {
    local log="$tmp/validate.log"
    if ! python3 -c 'import yaml, jsonschema' 2>/dev/null; then
        ok "policy vs CRD schema: skipped (python3 with yaml and jsonschema not available)"
        return
    fi
    if python3 - "$umbrella/crds/nicclusterpolicies.mellanox.com.yaml" "$tmp/deploycr-seed.yaml" "$tmp/deploycr-every-section.yaml" >"$log" 2>&1 <<'EOF'
import sys, yaml, jsonschema
crd = yaml.safe_load(open(sys.argv[1]))
schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
def strict(s):
    if isinstance(s, dict):
        if s.get("type") == "object" and "properties" in s and "additionalProperties" not in s \
                and not s.get("x-kubernetes-preserve-unknown-fields"):
            s["additionalProperties"] = False
        for v in list(s.values()):
            strict(v)
    elif isinstance(s, list):
        for v in s:
            strict(v)
strict(schema)
for path in sys.argv[2:]:
    policies = [d for d in yaml.safe_load_all(open(path)) if d and d.get("kind") == "NicClusterPolicy"]
    if not policies:
        sys.exit(f"{path}: no NicClusterPolicy")
    for p in policies:
        try:
            jsonschema.validate(p["spec"], schema)
        except jsonschema.ValidationError as e:
            sys.exit(f"{path}: spec.{'.'.join(map(str, e.absolute_path))}: {e.message}")
EOF
    then ok "policy vs CRD schema: deploycr-seed and deploycr-every-section validate"
    else fail "policy vs CRD schema" "$log"; fi
}
[ -s "$tmp/deploycr-seed.yaml" ] && [ -s "$tmp/deploycr-every-section.yaml" ] && validate_policies

# Values that must be refused, with an error that names the offending key.
refuse subchart-typo replicaz --set rdma-dp.replicaz=2
refuse umbrella-typo deployCRR --set deployCRR=true
refuse global-typo operandNamespace --set global.operandNamespace=x
refuse nested-typo forc --set ofedDriver.upgradePolicy.drain.forc=true
refuse wrong-type logFormat --set aggregator.logFormat=yaml
refuse relative-cni-bin-dir cniBinDir --set global.cniBinDir=opt/cni/bin
refuse lease-timing renewDeadline --set network-nads.leaderElection.renewDeadline=20
refuse empty-rdma-resources rdmaSharedDevicePlugin.resources --set deployCR=true --set 'rdmaSharedDevicePlugin.resources=null'

# The dashboard: valid JSON, and only the metric names the controllers export (plus `up`).
check_dashboard() {
    local json="$umbrella/dashboards/network-operator.json" log="$tmp/dashboard.log"
    local allowed=" network_operator_policy_state network_operator_state network_operator_reconcile_total"
    allowed+=" network_operator_reconcile_duration_seconds_bucket network_operator_objects_applied_total"
    allowed+=" network_operator_leader process_resident_memory_bytes process_start_time_seconds "
    : >"$log"
    python3 -m json.tool "$json" >/dev/null 2>>"$log" || { fail "dashboard: $json is not valid JSON" "$log"; return; }
    for name in $(grep -oE '(network_operator|process)_[a-z_]+' "$json" | sort -u); do
        case "$allowed" in *" $name "*) ;; *) echo "unknown metric $name" >>"$log" ;; esac
    done
    if [ -s "$log" ]; then fail "dashboard: metric names" "$log"
    else ok "dashboard: valid JSON, known metric names only"; fi
}
check_dashboard

# The packaged chart (hack/package-chart.sh): the same objects, and no symlink lines from Helm.
check_package() {
    local log="$tmp/package.log"
    if ! helm package "$umbrella" -d "$tmp/package" >"$log" 2>&1; then fail "package" "$log"; return; fi
    helm template "$release" "$tmp"/package/network-operator-*.tgz -n "$namespace" >"$tmp/packaged.yaml" 2>"$log"
    if grep -q 'found symbolic link' "$log"; then
        fail "package: helm still follows symlinks in the packaged chart" "$log"
    elif [ "$(count Deployment "$tmp/packaged.yaml")" != 15 ]; then
        fail "package: the packaged chart renders $(count Deployment "$tmp/packaged.yaml") Deployments, not 15" "$log"
    else
        ok "package: the packaged chart renders the 15 controllers with no symlink lines"
    fi
}
check_package

# The OFED controller's settings ConfigMap: the registry lookup on by default, off on request.
if render ofed-lookup-off --set ofedDriver.precompiledLookup=false; then
    expect ofed-lookup-off "OFED_PRECOMPILED_LOOKUP false in <release>-ofed-settings" \
        grep -q 'OFED_PRECOMPILED_LOOKUP: "false"' "$tmp/ofed-lookup-off.yaml"
    expect defaults "OFED_PRECOMPILED_LOOKUP true by default" grep -q 'OFED_PRECOMPILED_LOOKUP: "true"' "$tmp/defaults.yaml"
fi
refuse requestor-id "requestorID" --set operator.maintenanceOperator.requestorID=-bad
refuse other-operator-key "admissionController" --set operator.admissionController.enabled=true
# Driver upgrades through the Maintenance Operator: off by default, the original chart's keys on request.
expect defaults "no MAINTENANCE_OPERATOR_* setting by default" \
    bash -c "! grep -q MAINTENANCE_OPERATOR_ '$tmp/defaults.yaml'"
if render ofed-requestor --set operator.maintenanceOperator.useRequestor=true \
    --set operator.maintenanceOperator.nodeMaintenanceNamespace=maintenance; then
    expect ofed-requestor "MAINTENANCE_OPERATOR_* in <release>-ofed-settings with useRequestor" \
        bash -c "grep -q 'MAINTENANCE_OPERATOR_ENABLED: \"true\"' '$tmp/ofed-requestor.yaml' \
            && grep -q 'MAINTENANCE_OPERATOR_REQUESTOR_ID: \"nvidia.doca-driver-upgrade\"' '$tmp/ofed-requestor.yaml' \
            && grep -q 'MAINTENANCE_OPERATOR_REQUESTOR_NAMESPACE: \"maintenance\"' '$tmp/ofed-requestor.yaml'"
fi

# The install notes: a warning for each monitoring object requested whose API is absent, none
# when it is there; the CRD command with --force-conflicts.
notes() { # NAME ARGS...: the notes `helm install --dry-run=client` prints
    local name="$1"; shift
    helm install "$release" "$umbrella" -n "$namespace" --dry-run=client "$@" 2>"$tmp/$name.log" \
        | sed -n '/^NOTES:/,$p' >"$tmp/$name.notes"
}
check_notes() {
    notes notes-absent --set prometheusRule.enabled=true --set global.serviceMonitor.enabled=true --set upgradeCRDs=true
    if grep -q "WARNING: ServiceMonitors were requested" "$tmp/notes-absent.notes" \
        && grep -q "WARNING: prometheusRule.enabled is set" "$tmp/notes-absent.notes" \
        && grep -q "apply --server-side --force-conflicts" "$tmp/notes-absent.notes"; then
        ok "notes: warn when ServiceMonitor/PrometheusRule were requested without their API"
    else
        fail "notes: no warning for requested monitoring without its API" "$tmp/notes-absent.notes"
    fi
    notes notes-present "${all_apis[@]}" --set prometheusRule.enabled=true --set global.serviceMonitor.enabled=true
    if grep -q "WARNING" "$tmp/notes-present.notes"; then
        fail "notes: a monitoring warning although the APIs are served" "$tmp/notes-present.notes"
    else
        ok "notes: no monitoring warning when the APIs are served"
    fi
}
check_notes

# The alerts: the rendered PrometheusRule's rules checked and unit-tested with promtool
# (hack/alerts.test.yaml: each alert fires while its problem lasts and clears soon after).
check_alerts() {
    local dir="$tmp/alerts" log="$tmp/alerts.log"
    mkdir -p "$dir"
    if ! hack/install-promtool.sh 2>"$log"; then fail "alerts: promtool" "$log"; return; fi
    if ! helm template "$release" "$umbrella" -n "$namespace" "${all_apis[@]}" \
        --set prometheusRule.enabled=true --set global.serviceMonitor.enabled=true \
        --show-only templates/prometheusrule.yaml >"$dir/rule.yaml" 2>"$log"; then
        fail "alerts: template" "$log"; return
    fi
    # A PrometheusRule's spec is a Prometheus rule file, indented under `spec:`.
    sed -n '/^spec:/,$p' "$dir/rule.yaml" | tail -n +2 | sed 's/^  //' >"$dir/rules.yaml"
    cp hack/alerts.test.yaml "$dir/"
    if promtool check rules "$dir/rules.yaml" >"$log" 2>&1 && promtool test rules "$dir/alerts.test.yaml" >>"$log" 2>&1; then
        ok "alerts: promtool check rules and test rules (fire while the problem lasts, clear after)"
    else
        fail "alerts: promtool" "$log"
    fi
}
check_alerts

if [ "$failures" -gt 0 ]; then
    echo "$failures check(s) failed"
    exit 1
fi
echo "all chart checks passed"
