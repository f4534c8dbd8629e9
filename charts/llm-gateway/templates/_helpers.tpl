{{/* Names and labels. */}}
{{- define "llm-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llm-gateway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "llm-gateway.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "llm-gateway.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "llm-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "llm-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "llm-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "llm-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llm-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "llm-gateway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Where the pod's parts meet: fixed, because the containers' mounts and ports depend on them. */}}
{{- define "llm-gateway.socketDir" -}}/var/run/extproc{{- end }}
{{- define "llm-gateway.providerKeysDir" -}}/var/run/secrets/llm-gateway/providers{{- end }}

{{/* The Redis URL the store uses: the bundled Redis's Service, or redis.url. */}}
{{- define "llm-gateway.redisURL" -}}
{{- if .Values.redis.url }}
{{- .Values.redis.url }}
{{- else if .Values.redis.bundled }}
{{- printf "redis://%s-redis:6379/0" (include "llm-gateway.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The filter config (gateway.yaml): `config` as given, then what the chart owns: the server
settings the pod's mounts and ports depend on, the providers with their keys read from the
mounted Secret files, the models, the keys and the store.
*/}}
{{- define "llm-gateway.config" -}}
{{- $config := deepCopy (default dict .Values.config) }}
{{- $server := deepCopy (default dict $config.server) }}
{{- $_ := set $server "socket_dir" (include "llm-gateway.socketDir" .) }}
{{- $_ := set $server "admin" "0.0.0.0:9464" }}
{{- $_ := set $server "health_port" 50051 }}
{{- $_ := set $config "server" $server }}
{{- $providers := dict }}
{{- range $name, $provider := .Values.providers }}
{{- $entry := omit $provider "apiKeySecret" }}
{{- if $provider.apiKeySecret }}
{{- $_ := set $entry "api_key" (dict "file" (printf "%s/%s/api-key" (include "llm-gateway.providerKeysDir" $) $name)) }}
{{- end }}
{{- $_ := set $providers $name $entry }}
{{- end }}
{{- $_ := set $config "providers" $providers }}
{{- $_ := set $config "models" (default dict .Values.models) }}
{{- if .Values.keys }}
{{- $_ := set $config "keys" .Values.keys }}
{{- end }}
{{- $url := include "llm-gateway.redisURL" . }}
{{- if and $url (not $config.store) }}
{{- $_ := set $config "store" (dict "kind" "redis" "url" $url "fail_mode" .Values.redis.failMode) }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* The projected volume's sources: one Secret key per provider with apiKeySecret. */}}
{{- define "llm-gateway.keySources" -}}
{{- range $name, $provider := .Values.providers }}
{{- with $provider.apiKeySecret }}
- secret:
    name: {{ required (printf "providers.%s.apiKeySecret.name is required" $name) .name }}
    items:
    - key: {{ required (printf "providers.%s.apiKeySecret.key is required" $name) .key }}
      path: {{ $name }}/api-key
{{- end }}
{{- end }}
{{- end }}
