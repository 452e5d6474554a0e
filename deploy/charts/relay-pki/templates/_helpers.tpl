{{/* The name of every object of this release. */}}
{{- define "relay-pki.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "relay-pki.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "relay-pki.labels" -}}
{{ include "relay-pki.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The namespace of the relay secrets and Certificates (config.namespace, default gloo-mesh). */}}
{{- define "relay-pki.relayNamespace" -}}
{{- .Values.config.namespace | default "gloo-mesh" -}}
{{- end -}}

{{/* The configuration file the controller reads. */}}
{{- define "relay-pki.config" -}}
{{- $cfg := merge (dict "apiVersion" "relay-pki.io/v1alpha1" "kind" "Config") (deepCopy .Values.config) -}}
{{- toYaml $cfg -}}
{{- end -}}

{{- define "relay-pki.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}
