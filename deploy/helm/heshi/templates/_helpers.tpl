{{/* Names, labels and shared snippets of the heshi chart. */}}

{{- define "heshi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "heshi.fullname" -}}
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

{{- define "heshi.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "heshi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "gateway") */}}
{{- define "heshi.selector" -}}
app.kubernetes.io/name: {{ include "heshi.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "heshi.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Pod labels: the selector's and the app's name, nothing that changes with a chart
     upgrade (a new chart version must not restart backends that load for minutes). */}}
{{- define "heshi.podLabels" -}}
{{- include "heshi.selector" . }}
app.kubernetes.io/part-of: heshi
{{- end -}}

{{- define "heshi.secretName" -}}
{{- default (printf "%s-secrets" (include "heshi.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* The backend's Service name: (dict "root" $ "backend" $b) */}}
{{- define "heshi.backendName" -}}
{{- printf "%s-%s" (include "heshi.fullname" .root) .backend.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* heshi.yaml: what the chart sets (server, store, backends and aliases), with
     gateway.config merged over it. */}}
{{- define "heshi.config" -}}
{{- $root := . -}}
{{- $backends := dict -}}
{{- $aliases := dict -}}
{{- range .Values.backends -}}
{{- $url := printf "http://%s:%d/v1" (include "heshi.backendName" (dict "root" $root "backend" .)) (int (default 8000 .port)) -}}
{{- $entry := dict "base_url" $url "models" (list .model) "timeout" 300 "connect_timeout" 5 -}}
{{- if .context -}}
{{- $_ := set $entry "context" (int .context) -}}
{{- $_ := set $entry "max_output_tokens" (div (int .context) 2) -}}
{{- end -}}
{{- if .chatTemplateKwargs -}}
{{- $_ := set $entry "chat_template_kwargs" .chatTemplateKwargs -}}
{{- end -}}
{{- $_ := set $backends .name $entry -}}
{{- $_ := set $aliases (default .name .alias) (dict "backend" .name "model" .model) -}}
{{- end -}}
{{- /* in-flight requests finish within the pod's grace period, after the preStop pause */ -}}
{{- $grace := max 5 (sub (int .Values.gateway.terminationGracePeriodSeconds) 15) -}}
{{- $base := dict
  "server" (dict "host" "0.0.0.0" "port" (int .Values.gateway.port) "admin_token_env" "HESHI_ADMIN_TOKEN" "shutdown_grace_seconds" $grace)
  "engine" (dict "enabled" false)
  "store" (dict "url_env" "HESHI_DATABASE_URL" "redis_url_env" "HESHI_REDIS_URL")
  "backends" $backends
  "aliases" $aliases -}}
{{- $config := mergeOverwrite $base (deepCopy .Values.gateway.config) -}}
{{- /* a URL given in gateway.config replaces the Secret's (heshi takes one or the other) */ -}}
{{- if hasKey $config.store "url" }}{{ $_ := unset $config.store "url_env" }}{{ end -}}
{{- if hasKey $config.store "redis_url" }}{{ $_ := unset $config.store "redis_url_env" }}{{ end -}}
{{- toYaml $config -}}
{{- end -}}
