{{/*
Everything a controller subchart renders. A subchart's templates are one-liners:

  {{ include "netop.controller" . }}        (all of the below)

or any of "netop.deployment", "netop.serviceAccount", "netop.rbac", "netop.service",
"netop.serviceMonitor" on their own. Each renders complete YAML documents, starting with "---".
*/}}

{{- define "netop.controller" -}}
{{ include "netop.serviceAccount" . }}
{{ include "netop.rbac" . }}
{{ include "netop.deployment" . }}
{{ include "netop.service" . }}
{{ include "netop.serviceMonitor" . }}
{{- end -}}

{{/* Checks of values that a JSON schema cannot express. Renders nothing. */}}
{{- define "netop.validate" -}}
{{- $le := .Values.leaderElection -}}
{{- if not (lt (int $le.renewDeadline) (int $le.leaseDuration)) -}}
{{- fail (printf "%s: leaderElection.renewDeadline (%v) must be less than leaderElection.leaseDuration (%v)" .Chart.Name $le.renewDeadline $le.leaseDuration) -}}
{{- end -}}
{{- if not (lt (int $le.retryPeriod) (int $le.renewDeadline)) -}}
{{- fail (printf "%s: leaderElection.retryPeriod (%v) must be less than leaderElection.renewDeadline (%v)" .Chart.Name $le.retryPeriod $le.renewDeadline) -}}
{{- end -}}
{{- end -}}

{{- define "netop.serviceAccount" -}}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "netop.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "netop.labels" . | nindent 4 }}
automountServiceAccountToken: true
{{- end -}}

{{/*
RBAC from the subchart's generated files/rbac.yaml (`nicctl rbac`), whose keys are:
  clusterRules: ClusterRole <fullname> + ClusterRoleBinding
  operandRules: Role <fullname> in the operands' namespace + RoleBinding
  leaseRules:   Role <fullname>-leader-election in the release namespace + RoleBinding
Each binding's only subject is the controller's ServiceAccount. An empty list renders nothing.
*/}}
{{- define "netop.rbac" -}}
{{- $raw := .Files.Get "files/rbac.yaml" -}}
{{- if not $raw -}}
{{- fail (printf "%s: files/rbac.yaml is missing; generate it with `nicctl rbac --dir charts/network-operator/charts`" .Chart.Name) -}}
{{- end -}}
{{- $rbac := fromYaml $raw -}}
{{- if hasKey $rbac "Error" -}}
{{- fail (printf "%s: files/rbac.yaml is not valid YAML: %s" .Chart.Name $rbac.Error) -}}
{{- end -}}
{{- range $key, $_ := $rbac -}}
{{- if not (has $key (list "clusterRules" "operandRules" "leaseRules")) -}}
{{- fail (printf "%s: files/rbac.yaml: unknown key %q (expected clusterRules, operandRules, leaseRules)" $.Chart.Name $key) -}}
{{- end -}}
{{- end -}}
{{- $fullname := include "netop.fullname" . -}}
{{- $labels := include "netop.labels" . -}}
{{- with $rbac.clusterRules }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ $fullname }}
  labels:
    {{- $labels | nindent 4 }}
rules:
  {{- toYaml . | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ $fullname }}
  labels:
    {{- $labels | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ $fullname }}
subjects:
  - kind: ServiceAccount
    name: {{ $fullname }}
    namespace: {{ $.Release.Namespace }}
{{- end }}
{{- with $rbac.operandRules }}
{{- $operands := include "netop.operandsNamespace" $ }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ $fullname }}
  namespace: {{ $operands }}
  labels:
    {{- $labels | nindent 4 }}
rules:
  {{- toYaml . | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ $fullname }}
  namespace: {{ $operands }}
  labels:
    {{- $labels | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ $fullname }}
subjects:
  - kind: ServiceAccount
    name: {{ $fullname }}
    namespace: {{ $.Release.Namespace }}
{{- end }}
{{- with $rbac.leaseRules }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ $fullname }}-leader-election
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- $labels | nindent 4 }}
rules:
  {{- toYaml . | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ $fullname }}-leader-election
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- $labels | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ $fullname }}-leader-election
subjects:
  - kind: ServiceAccount
    name: {{ $fullname }}
    namespace: {{ $.Release.Namespace }}
{{- end }}
{{- end -}}

{{- define "netop.deployment" -}}
{{- include "netop.validate" . -}}
{{- $fullname := include "netop.fullname" . -}}
{{- $leader := include "netop.leaderElect" . -}}
{{- $le := .Values.leaderElection -}}
{{- $global := include "netop.global" . | fromJson -}}
{{- $pullSecrets := include "netop.imagePullSecrets" . -}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $fullname }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "netop.labels" . | nindent 4 }}
spec:
  replicas: {{ .Values.replicas }}
  revisionHistoryLimit: 3
  {{- if eq $leader "true" }}
  # A new pod waits for the lease the old one holds, so a rolling update could never finish:
  # stop the old pods first (a controller pausing for a few seconds is harmless).
  strategy:
    type: Recreate
  {{- else }}
  # Explicit (not left to the API server's defaults), so that an upgrade to Recreate removes them.
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 25%
  {{- end }}
  selector:
    matchLabels:
      {{- include "netop.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "netop.labels" . | nindent 8 }}
        {{- include "netop.podLabels" . | nindent 8 }}
        {{- with .Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with .Values.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ $fullname }}
      automountServiceAccountToken: true
      {{- with $pullSecrets }}
      imagePullSecrets:
        {{- . | nindent 8 }}
      {{- end }}
      {{- with .Values.priorityClassName }}
      priorityClassName: {{ . | quote }}
      {{- end }}
      securityContext:
        runAsNonRoot: true
        seccompProfile:
          type: RuntimeDefault
      {{- with .Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .Chart.Name }}
          image: {{ include "netop.image" . | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          {{- with .Values.extraArgs }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          env:
            - name: OPERANDS_NAMESPACE
              value: {{ include "netop.operandsNamespace" . | quote }}
            - name: METRICS_ADDR
              value: {{ printf "0.0.0.0:%v" .Values.metricsPort | quote }}
            - name: LEADER_ELECT
              value: {{ $leader | quote }}
            - name: LEASE_NAME
              value: {{ include "netop.leaseName" . | quote }}
            - name: LEASE_NAMESPACE
              value: {{ .Release.Namespace | quote }}
            - name: LEASE_DURATION
              value: {{ $le.leaseDuration | toString | quote }}
            - name: RENEW_DEADLINE
              value: {{ $le.renewDeadline | toString | quote }}
            - name: RETRY_PERIOD
              value: {{ $le.retryPeriod | toString | quote }}
            - name: POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            - name: LOG_FORMAT
              value: {{ .Values.logFormat | quote }}
            - name: CLUSTER_TYPE
              value: {{ $global.clusterType | default "auto" | quote }}
            {{- with $global.cniBinDir }}
            - name: CNI_BIN_DIR
              value: {{ . | quote }}
            {{- end }}
            - name: RUST_LOG
              value: {{ .Values.logLevel | quote }}
            {{- with .Values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- if has .Chart.Name (list "ofed" "all-in-one") }}
          {{- /* The umbrella chart's ofedDriver.initContainer (templates/ofed-settings.yaml). */}}
          envFrom:
            - configMapRef:
                name: {{ printf "%s-ofed-settings" .Release.Name | trunc 63 | trimSuffix "-" }}
                optional: true
          {{- end }}
          ports:
            - name: http-metrics
              containerPort: {{ .Values.metricsPort }}
              protocol: TCP
          livenessProbe:
            httpGet:
              path: /healthz
              port: http-metrics
            initialDelaySeconds: 5
            periodSeconds: 20
          readinessProbe:
            httpGet:
              path: /readyz
              port: http-metrics
            initialDelaySeconds: 2
            periodSeconds: 10
          {{- with .Values.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            runAsNonRoot: true
            runAsUser: 65532
            runAsGroup: 65532
            readOnlyRootFilesystem: true
            allowPrivilegeEscalation: false
            capabilities:
              drop:
                - ALL
            seccompProfile:
              type: RuntimeDefault
{{- end -}}

{{- define "netop.service" -}}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "netop.metricsServiceName" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "netop.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "netop.selectorLabels" . | nindent 4 }}
  ports:
    - name: http-metrics
      port: {{ .Values.metricsPort }}
      targetPort: http-metrics
      protocol: TCP
{{- end -}}

{{/*
ServiceMonitor (prometheus-operator): when serviceMonitor.enabled or global.serviceMonitor.enabled,
and only if the cluster serves monitoring.coreos.com/v1 ServiceMonitor.
*/}}
{{- define "netop.serviceMonitor" -}}
{{- $global := include "netop.global" . | fromJson -}}
{{- $globalSM := $global.serviceMonitor | default dict -}}
{{- $sm := .Values.serviceMonitor -}}
{{- if and (or $sm.enabled $globalSM.enabled) (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor") }}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "netop.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "netop.labels" . | nindent 4 }}
    {{- with merge (dict) ($sm.labels | default dict) ($globalSM.labels | default dict) }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  namespaceSelector:
    matchNames:
      - {{ .Release.Namespace }}
  selector:
    matchLabels:
      {{- include "netop.selectorLabels" . | nindent 6 }}
  endpoints:
    - port: http-metrics
      path: /metrics
      {{- with $sm.interval | default $globalSM.interval }}
      interval: {{ . }}
      {{- end }}
      {{- with $sm.scrapeTimeout }}
      scrapeTimeout: {{ . }}
      {{- end }}
{{- end }}
{{- end -}}
