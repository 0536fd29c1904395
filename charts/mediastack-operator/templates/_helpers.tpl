{{/* Chart name (or nameOverride), truncated to the 63 characters of a label value. */}}
{{- define "mediastack-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: fullnameOverride when set; else the release name when it already
contains the name, else <release>-<name>. Names the Deployment, Service, RBAC
objects and Lease.
*/}}
{{- define "mediastack-operator.fullname" -}}
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

{{- define "mediastack-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mediastack-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mediastack-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mediastack-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "mediastack-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mediastack-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The fixed ClusterRole granting node read that the operator binds for Dozzle. */}}
{{- define "mediastack-operator.nodeReaderRole" -}}
{{- printf "%s-node-reader" (include "mediastack-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mediastack-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
RBAC rules for the namespaced resources the operator reads and writes. Bound
cluster-wide (ClusterRole) when watchNamespace is empty, else by a Role in
watchNamespace.
*/}}
{{- define "mediastack-operator.namespacedRules" -}}
# The operator's own kinds: read, and write their status.
- apiGroups: ["mediastack.io"]
  resources: ["mediastacks", "vpngateways", "ingressroutes"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["mediastack.io"]
  resources: ["mediastacks/status", "vpngateways/status", "ingressroutes/status"]
  verbs: ["get", "patch", "update"]
# Children, written with server-side apply and pruned. A MediaStack exposes
# its apps through IngressRoutes of its own (operator/src/render/route.rs).
- apiGroups: ["mediastack.io"]
  resources: ["ingressroutes"]
  verbs: ["create", "patch", "update", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments", "daemonsets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["services", "persistentvolumeclaims", "configmaps", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["traefik.io"]
  resources: ["ingressroutes", "middlewares"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors", "prometheusrules"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Credential Secrets are read (and watched by metadata); generated Secrets
# (API keys) are created once; patch adds the key of an app enabled later,
# existing values never change.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# Kubernetes lets the operator create a Role only if it holds every permission
# in it itself. The rules below are held for that reason only; together with
# the reads above they cover the Roles it renders.
# Dozzle's Role (operator/src/render/dozzle.rs); pods are also watched by the
# operator itself (VPN consumer pods, for the VpnGateway's TunnelReady):
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: ["metrics.k8s.io"]
  resources: ["pods"]
  verbs: ["get", "list"]
# Traefik's Role (operator/src/render/traefik.rs); configmaps, secrets,
# services, ingressroutes and middlewares are granted above.
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list", "watch"]
- apiGroups: ["traefik.io"]
  resources:
    - ingressroutetcps
    - ingressrouteudps
    - middlewaretcps
    - serverstransports
    - serverstransporttcps
    - tlsoptions
    - tlsstores
    - traefikservices
  verbs: ["get", "list", "watch"]
{{- end }}

{{/* RBAC rules for cluster-scoped resources: always a ClusterRole. */}}
{{- define "mediastack-operator.clusterRules" -}}
# Cluster ranges reachable outside a VPN tunnel (skipped with clusterSubnets).
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["servicecidrs"]
  verbs: ["get", "list", "watch"]
# Whether the Traefik and prometheus-operator CRDs are installed.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
# Whether a Traefik already serves the cluster (k3s's): an IngressClass with
# controller traefik.io/ingress-controller (ingress.traefik.managed unset).
- apiGroups: ["networking.k8s.io"]
  resources: ["ingressclasses"]
  verbs: ["get", "list", "watch"]
# Dozzle reads nodes: the operator binds the chart's fixed node-reader
# ClusterRole (templates/rbac.yaml) to each stack's Dozzle ServiceAccount. It
# writes ClusterRoleBindings only, and may bind only that one role (bind
# with resourceNames); it never writes ClusterRoles.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["clusterrolebindings"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["clusterroles"]
  resourceNames: [{{ include "mediastack-operator.nodeReaderRole" . | quote }}]
  verbs: ["bind"]
{{- end }}
