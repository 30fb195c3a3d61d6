{{/* Names and labels shared by every template. */}}

{{- define "rollout-bot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rollout-bot.fullname" -}}
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

{{- define "rollout-bot.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "rollout-bot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "rollout-bot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rollout-bot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: bot
{{- end -}}

{{- define "rollout-bot.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "rollout-bot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end -}}

{{- define "rollout-bot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "rollout-bot.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the Slack tokens (and the bundled Redis's password). */}}
{{- define "rollout-bot.secretName" -}}
{{- default (include "rollout-bot.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "rollout-bot.redisHost" -}}
{{- printf "%s-redis" (include "rollout-bot.fullname" .) -}}
{{- end -}}

{{- define "rollout-bot.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The port serving /healthz, /readyz and /metrics: the HTTP server in http mode. */}}
{{- define "rollout-bot.probePort" -}}
{{- if eq .Values.slack.mode "http" -}}http{{- else -}}health{{- end -}}
{{- end -}}

{{/* Pod Security "restricted": what every container here sets. */}}
{{- define "rollout-bot.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "rollout-bot.policyEnabled" -}}
{{- if .Values.policy -}}true{{- end -}}
{{- end -}}

{{/* KUBECONFIG for the mounted kubeconfig files (a list of keys), joined in merge order. */}}
{{- define "rollout-bot.kubeconfigPath" -}}
{{- $paths := list }}
{{- range . }}
{{- $paths = append $paths (printf "/etc/rollout-bot/kubeconfigs/%s" .) }}
{{- end }}
{{- join ":" $paths }}
{{- end }}

{{/* The bundled Redis runs with replicas and Sentinel. */}}
{{- define "rollout-bot.bundledSentinel" -}}
{{- if and .Values.redis.enabled (gt (int .Values.redis.replicas) 0) -}}true{{- end -}}
{{- end -}}

{{- define "rollout-bot.sentinelHost" -}}
{{- printf "%s-sentinel" (include "rollout-bot.fullname" .) -}}
{{- end -}}

{{- define "rollout-bot.sentinelSelectorLabels" -}}
app.kubernetes.io/name: {{ include "rollout-bot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis-sentinel
{{- end -}}

{{/* REDIS_SENTINELS: the bundled Sentinels (one address per pod), or externalRedis.sentinels. */}}
{{- define "rollout-bot.sentinels" -}}
{{- if include "rollout-bot.bundledSentinel" . -}}
{{- $host := include "rollout-bot.sentinelHost" . -}}
{{- $addresses := list -}}
{{- range $i := until (int .Values.redis.sentinel.replicas) -}}
{{- $addresses = append $addresses (printf "%s-%d.%s.%s.svc:26379" $host $i $host $.Release.Namespace) -}}
{{- end -}}
{{- join "," $addresses -}}
{{- else if not .Values.redis.enabled -}}
{{- join "," .Values.externalRedis.sentinels -}}
{{- end -}}
{{- end -}}

{{/* REDIS_SENTINEL_MASTER. */}}
{{- define "rollout-bot.sentinelMaster" -}}
{{- if include "rollout-bot.bundledSentinel" . -}}
{{- .Values.redis.sentinel.masterName -}}
{{- else if not .Values.redis.enabled -}}
{{- .Values.externalRedis.sentinelMaster -}}
{{- end -}}
{{- end -}}
