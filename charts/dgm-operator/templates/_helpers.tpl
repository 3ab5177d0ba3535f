{{/* Chart name, truncated to 63 characters. */}}
{{- define "dgm-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, unless it already contains the chart name. */}}
{{- define "dgm-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "dgm-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dgm-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dgm-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "dgm-operator.labels" -}}
helm.sh/chart: {{ include "dgm-operator.chart" . }}
{{ include "dgm-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: dgm-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "dgm-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dgm-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "dgm-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
What the operator itself does in a watched namespace: exactly the calls in
operator/dgm_operator/kube.py plus kopf's watches. No secrets, no wildcards.
Used by the ClusterRole (cluster-wide mode) and by each Role (namespaced mode).
*/}}
{{- define "dgm-operator.namespacedRules" -}}
- apiGroups: ["dgm.io"]
  resources: ["dgmagents", "improvementcandidates"]
  verbs: ["get", "list", "watch", "create", "delete", "patch", "update"]
- apiGroups: ["dgm.io"]
  resources: ["dgmagents/status", "improvementcandidates/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* kopf's discovery of the CRDs it serves (cluster-scoped, read-only; both modes). */}}
{{- define "dgm-operator.crdRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/*
kopf peering (with peering.enabled): list and watch the peering objects of one kind, and
read and patch (the keep-alive) only the release's own. Context: dict "plural" "name".
*/}}
{{- define "dgm-operator.peeringRules" -}}
- apiGroups: ["kopf.dev"]
  resources: [{{ .plural | quote }}]
  verbs: ["list", "watch"]
- apiGroups: ["kopf.dev"]
  resources: [{{ .plural | quote }}]
  resourceNames: [{{ .name | quote }}]
  verbs: ["get", "patch"]
{{- end }}
