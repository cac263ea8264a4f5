{{/*
Names, labels and small values shared by every network-operator chart.
Every template here takes the calling chart's root context (`.`) unless it says otherwise.
*/}}

{{/* The chart's short name: nameOverride, else the chart name. */}}
{{- define "netop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The objects' base name: fullnameOverride, else the release name when it already contains the
chart's short name, else "<release>-<name>"; at most 63 characters.
*/}}
{{- define "netop.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of the metrics Service: "<fullname>-metrics", a DNS label (at most 63 characters). */}}
{{- define "netop.metricsServiceName" -}}
{{- printf "%s-metrics" (include "netop.fullname" . | trunc 55 | trimSuffix "-") -}}
{{- end -}}

{{/* The helm.sh/chart label value. */}}
{{- define "netop.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select a controller's pods (never change them: Deployment selectors are immutable). */}}
{{- define "netop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "netop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
The standard labels, with a component: takes (dict "ctx" $root "component" "controller").
*/}}
{{- define "netop.labelsFor" -}}
helm.sh/chart: {{ include "netop.chart" .ctx }}
{{ include "netop.selectorLabels" .ctx }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: network-operator
{{- end -}}

{{/* The standard labels of a controller's objects. */}}
{{- define "netop.labels" -}}
{{ include "netop.labelsFor" (dict "ctx" . "component" "controller") }}
{{- end -}}

{{/*
Labels of every controller's pods besides the standard ones: a driver upgrade's drain never
evicts the operator itself (the OFED controller runs that drain), as the original's pod.
*/}}
{{- define "netop.podLabels" -}}
nvidia.com/ofed-driver-upgrade-drain.skip: "true"
{{- end -}}

{{/* .Values.global, or an empty dict (a chart rendered on its own may have none). */}}
{{- define "netop.global" -}}
{{- toJson (.Values.global | default dict) -}}
{{- end -}}

{{/* Namespace of the operands: global.operandsNamespace, else the release namespace. */}}
{{- define "netop.operandsNamespace" -}}
{{- $global := include "netop.global" . | fromJson -}}
{{- $global.operandsNamespace | default .Release.Namespace -}}
{{- end -}}

{{/* "true" when leader election runs: more than one replica, or leaderElection.enabled. */}}
{{- define "netop.leaderElect" -}}
{{- $le := .Values.leaderElection | default dict -}}
{{- if or (gt (int .Values.replicas) 1) $le.enabled -}}true{{- else -}}false{{- end -}}
{{- end -}}

{{/* Name of the Lease: leaderElection.leaseName, else "<fullname>-leader". */}}
{{- define "netop.leaseName" -}}
{{- $le := .Values.leaderElection | default dict -}}
{{- $le.leaseName | default (printf "%s-leader" (include "netop.fullname" .)) -}}
{{- end -}}

{{/*
The controller's image: image.repository (its registry replaced by global.image.registry when
set; hack/build-images.sh builds every image under one registry), with image.tag, else
global.image.tag, else the chart's appVersion; a "sha256:..." tag gives repository@sha256:....
*/}}
{{- define "netop.image" -}}
{{- $global := include "netop.global" . | fromJson -}}
{{- $registry := ($global.image | default dict).registry | default "" | trimSuffix "/" -}}
{{- $repository := .Values.image.repository -}}
{{- if $registry -}}
{{- $repository = printf "%s/%s" $registry (base $repository) -}}
{{- end -}}
{{- $tag := .Values.image.tag | default ($global.image | default dict).tag | default .Chart.AppVersion | toString -}}
{{- if hasPrefix "sha256:" $tag -}}
{{- printf "%s@%s" $repository $tag -}}
{{- else -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
Pull secrets of the controller's pod: imagePullSecrets, else global.imagePullSecrets; each entry
a name or {name: ...}. Renders a YAML list, or nothing.
*/}}
{{- define "netop.imagePullSecrets" -}}
{{- $global := include "netop.global" . | fromJson -}}
{{- $secrets := .Values.imagePullSecrets | default $global.imagePullSecrets | default list -}}
{{- range $secrets }}
- name: {{ if kindIs "string" . }}{{ . | quote }}{{ else }}{{ .name | quote }}{{ end }}
{{- end }}
{{- end -}}
