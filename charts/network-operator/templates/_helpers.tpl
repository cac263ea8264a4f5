{{/*
Helpers of the umbrella chart. Names and labels come from the library chart (netop.*).
*/}}

{{/* Standard labels of an umbrella object: (dict "ctx" $ "component" "...") */}}
{{- define "network-operator.labels" -}}
{{ include "netop.labelsFor" . }}
{{- end -}}

{{/*
A controller subchart's context as the library's name templates see it, for its chart name:
(dict "root" $ "chart" "rdma-dp") -> JSON {Chart, Release, Values}.
*/}}
{{- define "network-operator.subchartContext" -}}
{{- $values := index .root.Values .chart | default dict -}}
{{- toJson (dict "Chart" (dict "Name" .chart) "Release" (dict "Name" .root.Release.Name) "Values" $values) -}}
{{- end -}}

{{/* The controller subcharts, in a fixed order. */}}
{{- define "network-operator.controllers" -}}
{{- toJson (list "aggregator" "ofed" "rdma-dp" "nic-feature-discovery" "doca-telemetry" "ib-kubernetes" "sriov-dp" "multus" "cni-plugins" "ipoib" "whereabouts" "nv-ipam" "nic-configuration" "spectrum-x" "network-nads" "all-in-one") -}}
{{- end -}}

{{/* Whether a value is set: booleans and numbers always, strings, lists and maps when not empty. */}}
{{- define "network-operator.isSet" -}}
{{- if or (kindIs "bool" .) (kindIs "float64" .) (kindIs "int64" .) (kindIs "int" .) (and (not (kindIs "invalid" .)) (not (empty .))) -}}
true
{{- end -}}
{{- end -}}

{{/*
The entries of a map whose value is set (see isSet), for the given keys:
(dict "from" $map "keys" (list ...)) -> JSON object.
*/}}
{{- define "network-operator.pick" -}}
{{- $out := dict -}}
{{- $from := .from | default dict -}}
{{- range $key := .keys -}}
{{- if hasKey $from $key -}}
{{- $v := index $from $key -}}
{{- if include "network-operator.isSet" $v -}}
{{- $_ := set $out $key $v -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
imagePullSecrets of a policy section: its own, else the top-level imagePullSecrets, else
global.imagePullSecrets (names; {name: ...} entries are reduced to their name).
(dict "root" $ "section" $section) -> JSON list of names.
*/}}
{{- define "network-operator.pullSecrets" -}}
{{- $global := .root.Values.global | default dict -}}
{{- $src := .section.imagePullSecrets | default .root.Values.imagePullSecrets | default $global.imagePullSecrets | default list -}}
{{- $names := list -}}
{{- range $src -}}
{{- if kindIs "string" . -}}
{{- $names = append $names . -}}
{{- else -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- end -}}
{{- toJson $names -}}
{{- end -}}

{{/*
The fields every policy section has (image, repository, version, imagePullSecrets,
containerResources) plus the given extra keys when set:
(dict "root" $ "section" $section "keys" (list ...)) -> JSON object.
*/}}
{{- define "network-operator.component" -}}
{{- $s := .section -}}
{{- $out := dict "image" $s.image "repository" $s.repository "version" ($s.version | toString) -}}
{{- $_ := set $out "imagePullSecrets" (include "network-operator.pullSecrets" . | fromJsonArray) -}}
{{- $picked := include "network-operator.pick" (dict "from" $s "keys" (concat (list "containerResources") (.keys | default list))) | fromJson -}}
{{- toJson (merge $out $picked) -}}
{{- end -}}

{{/* A selector list as a JSON array of strings (numbers from unquoted YAML become strings). */}}
{{- define "network-operator.selectorList" -}}
{{- $out := list -}}
{{- range (. | default list) -}}
{{- if kindIs "float64" . -}}
{{- $out = append $out (int64 . | toString) -}}
{{- else -}}
{{- $out = append $out (toString .) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
The RDMA shared device plugin's config from rdmaSharedDevicePlugin.resources: a configList with
one entry per resource, rdmaHcaMax defaulting to 63, every selector list present ([] if unset).
*/}}
{{- define "network-operator.rdmaConfig" -}}
{{- $entries := list -}}
{{- range $r := . -}}
{{- $max := 63 -}}
{{- if and (hasKey $r "rdmaHcaMax") (not (kindIs "invalid" $r.rdmaHcaMax)) -}}
{{- $max = int64 $r.rdmaHcaMax -}}
{{- end -}}
{{- $selectors := list -}}
{{- range $key := list "vendors" "deviceIDs" "drivers" "ifNames" "linkTypes" -}}
{{- $selectors = append $selectors (printf "        %q: %s" $key (include "network-operator.selectorList" (get $r $key))) -}}
{{- end -}}
{{- $entries = append $entries (printf "    {\n      \"resourceName\": %s,\n      \"rdmaHcaMax\": %d,\n      \"selectors\": {\n%s\n      }\n    }" (toJson $r.name) $max (join ",\n" $selectors)) -}}
{{- end -}}
{{- printf "{\n  \"configList\": [\n%s\n  ]\n}\n" (join ",\n" $entries) -}}
{{- end -}}

{{/*
The SR-IOV device plugin's config from sriovDevicePlugin.resources: a resourceList with prefix
nvidia.com and isRdma true, every selector list present ([] if unset).
*/}}
{{- define "network-operator.sriovConfig" -}}
{{- $entries := list -}}
{{- range $r := . -}}
{{- $selectors := list -}}
{{- range $key := list "vendors" "devices" "drivers" "pfNames" "pciAddresses" "rootDevices" "linkTypes" -}}
{{- $selectors = append $selectors (printf "        %q: %s" $key (include "network-operator.selectorList" (get $r $key))) -}}
{{- end -}}
{{- $selectors = append $selectors "        \"isRdma\": true" -}}
{{- $entries = append $entries (printf "    {\n      \"resourcePrefix\": \"nvidia.com\",\n      \"resourceName\": %s,\n      \"selectors\": {\n%s\n      }\n    }" (toJson $r.name) (join ",\n" $selectors)) -}}
{{- end -}}
{{- printf "{\n  \"resourceList\": [\n%s\n  ]\n}\n" (join ",\n" $entries) -}}
{{- end -}}

{{/*
The single-process install runs every controller itself: fails, naming them, when any
per-controller chart is still on beside it (they would reconcile the same objects twice).
*/}}
{{- define "network-operator.checkAllInOne" -}}
{{- if (index .Values "all-in-one").enabled -}}
{{- $on := list -}}
{{- range $chart := include "network-operator.controllers" . | fromJsonArray -}}
{{- if and (ne $chart "all-in-one") (index $.Values $chart | default dict).enabled -}}
{{- $on = append $on $chart -}}
{{- end -}}
{{- end -}}
{{- if $on -}}
{{- fail (printf "all-in-one.enabled runs every controller in one process, so these must be off: %s (set <name>.enabled=false, or use -f values-all-in-one.yaml)" (join ", " $on)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
