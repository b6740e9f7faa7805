{{/* Names, labels, images and the checks that stop a render with a clear message. */}}

{{- define "portcullis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-<chart>, or the release name alone when it already contains the chart name. */}}
{{- define "portcullis.fullname" -}}
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

{{- define "portcullis.issuer.fullname" -}}
{{- printf "%s-issuer" (include "portcullis.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "portcullis.gateway.fullname" -}}
{{- printf "%s-gateway" (include "portcullis.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "portcullis.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "portcullis.labels" -}}
helm.sh/chart: {{ include "portcullis.chart" . }}
app.kubernetes.io/name: {{ include "portcullis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: portcullis
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: pass (dict "root" $ "component" "gateway"). */}}
{{- define "portcullis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portcullis.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of one component's objects: pass (dict "root" $ "component" "gateway"). */}}
{{- define "portcullis.componentLabels" -}}
{{ include "portcullis.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* An image reference: pass (dict "root" $ "image" .Values.image.gateway). */}}
{{- define "portcullis.image" -}}
{{- $tag := default .root.Chart.AppVersion .image.tag -}}
{{- if .image.digest -}}
{{- printf "%s:%s@%s" .image.repository $tag .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.issuer.serviceAccountName" -}}
{{- if .Values.issuer.serviceAccount.create -}}
{{- default (include "portcullis.issuer.fullname" .) .Values.issuer.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.issuer.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.gateway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create -}}
{{- default (include "portcullis.gateway.fullname" .) .Values.gateway.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.gateway.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The issuer's in-cluster base URL. */}}
{{- define "portcullis.issuer.internalUrl" -}}
{{- printf "http://%s.%s.svc:%d" (include "portcullis.issuer.fullname" .) .Release.Namespace (int .Values.issuer.service.port) -}}
{{- end -}}

{{/* The issuer identifier (`iss`). */}}
{{- define "portcullis.issuer.url" -}}
{{- default (include "portcullis.issuer.internalUrl" .) .Values.issuer.publicUrl | trimSuffix "/" -}}
{{- end -}}

{{/* Secret names and keys; the chart's own Secrets use the default keys. */}}
{{- define "portcullis.issuer.databaseSecretName" -}}
{{- default (printf "%s-database" (include "portcullis.issuer.fullname" .)) .Values.issuer.database.existingSecret -}}
{{- end -}}
{{- define "portcullis.issuer.databaseSecretKey" -}}
{{- ternary .Values.issuer.database.existingSecretKey "database-url" (ne .Values.issuer.database.existingSecret "") -}}
{{- end -}}

{{- define "portcullis.issuer.secretName" -}}
{{- printf "%s-secrets" (include "portcullis.issuer.fullname" .) -}}
{{- end -}}

{{/* Whether the issuer has an admin token from any source. */}}
{{- define "portcullis.issuer.hasAdminToken" -}}
{{- if or .Values.issuer.adminToken.existingSecret .Values.issuer.adminToken.value -}}true{{- end -}}
{{- end -}}

{{/* Whether the chart makes the issuer's Secret (key-encryption secret and/or admin token). */}}
{{- define "portcullis.issuer.ownsSecret" -}}
{{- if or (and .Values.issuer.keyEncryption.secret (not .Values.issuer.keyEncryption.existingSecret)) (and .Values.issuer.adminToken.value (not .Values.issuer.adminToken.existingSecret)) -}}true{{- end -}}
{{- end -}}

{{- define "portcullis.gateway.hasSigningKey" -}}
{{- if or .Values.gateway.signingKey.existingSecret .Values.gateway.signingKey.value -}}true{{- end -}}
{{- end -}}

{{- define "portcullis.gateway.hasSessionKeys" -}}
{{- if or .Values.gateway.sessionKeys.existingSecret .Values.gateway.sessionKeys.value -}}true{{- end -}}
{{- end -}}

{{- define "portcullis.gateway.hasSharedState" -}}
{{- if or .Values.gateway.sharedState.existingSecret .Values.gateway.sharedState.redisUrl -}}true{{- end -}}
{{- end -}}

{{/* The gateway's configuration file, with the fields the chart owns filled in. */}}
{{- define "portcullis.gateway.config" -}}
{{- include "portcullis.validate" . -}}
{{- $cfg := deepCopy (default (dict) .Values.gateway.config) -}}
{{- range $field := list "listen" "admin_listen" "signing_key_file" "shared_state" -}}
{{- if hasKey $cfg $field -}}
{{- fail (printf "gateway.config.%s is set by the chart; remove it (see gateway.listenHost, gateway.ports, gateway.signingKey, gateway.sharedState)" $field) -}}
{{- end -}}
{{- end -}}
{{- $host := .Values.gateway.listenHost -}}
{{- if contains ":" $host -}}{{- $host = printf "[%s]" $host -}}{{- end -}}
{{- $_ := set $cfg "listen" (printf "%s:%d" $host (int .Values.gateway.ports.proxy)) -}}
{{- $_ := set $cfg "admin_listen" (printf "%s:%d" $host (int .Values.gateway.ports.admin)) -}}
{{- if not $cfg.public_url -}}
{{- fail "gateway.config.public_url is required: the gateway's public base URL, e.g. https://mcp.example.com" -}}
{{- end -}}
{{- $issuer := deepCopy (default (dict) $cfg.issuer) -}}
{{- if not $issuer.url -}}
{{- if not .Values.issuer.enabled -}}
{{- fail "gateway.config.issuer.url is required when issuer.enabled is false" -}}
{{- end -}}
{{- $_ := set $issuer "url" (include "portcullis.issuer.internalUrl" .) -}}
{{- if and .Values.issuer.publicUrl (not (hasKey $issuer "issuer")) -}}
{{- $_ := set $issuer "issuer" (include "portcullis.issuer.url" .) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg "issuer" $issuer -}}
{{- if eq .Values.mode "sidecar" -}}
{{- if $cfg.upstreams -}}
{{- fail "gateway.config.upstreams must be empty in sidecar mode: the chart writes the one upstream from sidecar.upstream" -}}
{{- end -}}
{{- $up := deepCopy .Values.sidecar.upstream -}}
{{- if not $up.name -}}
{{- fail "sidecar.upstream.name is required in sidecar mode: the {name} of /mcp/{name}" -}}
{{- end -}}
{{- $url := printf "http://127.0.0.1:%d%s" (int $up.port) (default "/mcp" $up.path) -}}
{{- $_ := unset $up "port" -}}
{{- $_ := unset $up "path" -}}
{{- $_ := set $up "url" $url -}}
{{- $_ := set $cfg "upstreams" (list $up) -}}
{{- else if not $cfg.upstreams -}}
{{- fail "gateway.config.upstreams is required: the MCP servers behind the gateway, e.g. [{name: expenses, url: 'http://expenses.mcp.svc:8001/mcp'}]" -}}
{{- end -}}
{{- if include "portcullis.gateway.hasSigningKey" . -}}
{{- $_ := set $cfg "signing_key_file" "/etc/portcullis/signing-key/signing-key" -}}
{{- end -}}
{{- if include "portcullis.gateway.hasSessionKeys" . -}}
{{- $sessions := deepCopy (default (dict) $cfg.sessions) -}}
{{- if hasKey $sessions "keys_file" -}}
{{- fail "gateway.config.sessions.keys_file is set by the chart; remove it (see gateway.sessionKeys)" -}}
{{- end -}}
{{- $_ := set $sessions "keys_file" "/etc/portcullis/session-keys/session-keys" -}}
{{- $_ := set $cfg "sessions" $sessions -}}
{{- end -}}
{{- if include "portcullis.gateway.hasSharedState" . -}}
{{- $shared := .Values.gateway.sharedState -}}
{{- $_ := set $cfg "shared_state" (dict "redis_url_file" "/etc/portcullis/shared-state/redis-url" "mode" $shared.mode "key_prefix" $shared.keyPrefix "timeout_ms" (int $shared.timeoutMs)) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Whether any upstream gets minted downstream tokens. */}}
{{- define "portcullis.gateway.mints" -}}
{{- if eq .Values.mode "sidecar" -}}
{{- if ne (toString (default "mint" .Values.sidecar.upstream.downstream_auth)) "none" -}}true{{- end -}}
{{- else -}}
{{- range .Values.gateway.config.upstreams -}}
{{- if ne (toString (default "mint" .downstream_auth)) "none" -}}true{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Checks across values; included once, by validate.yaml. */}}
{{- define "portcullis.validate" -}}
{{- if not (has .Values.mode (list "sharedProxy" "sidecar")) -}}
{{- fail (printf "mode must be sharedProxy or sidecar, not %q" .Values.mode) -}}
{{- end -}}
{{- if not (or .Values.gateway.enabled .Values.issuer.enabled) -}}
{{- fail "gateway.enabled and issuer.enabled are both false: nothing to run" -}}
{{- end -}}
{{- if and (eq .Values.mode "sidecar") (not .Values.gateway.enabled) -}}
{{- fail "sidecar mode needs gateway.enabled" -}}
{{- end -}}
{{- if .Values.gateway.enabled -}}
{{- if and (eq .Values.mode "sharedProxy") (include "portcullis.gateway.mints" .) (or .Values.gateway.autoscaling.enabled (gt (int .Values.gateway.replicaCount) 1)) (not (include "portcullis.gateway.hasSigningKey" .)) -}}
{{- fail "gateway.signingKey (value or existingSecret) is required with more than one gateway replica: every replica must sign downstream tokens with the same key, or upstreams reject the tokens of replicas whose key they did not fetch" -}}
{{- end -}}
{{- if and (eq .Values.mode "sharedProxy") .Values.gateway.config.upstreams (or .Values.gateway.autoscaling.enabled (gt (int .Values.gateway.replicaCount) 1)) (not (include "portcullis.gateway.hasSessionKeys" .)) -}}
{{- fail "gateway.sessionKeys (value or existingSecret) is required with more than one gateway replica: every replica must read the MCP session ids the others mint, or a session opened at one replica is unknown (404) at the next" -}}
{{- end -}}
{{- range $line := splitList "\n" (trim .Values.gateway.sessionKeys.value) -}}
{{- if and (trim $line) (not (regexMatch "^[A-Za-z0-9_-]{43}$" (trim $line))) -}}
{{- fail "gateway.sessionKeys.value must be base64url 32-byte keys without padding (43 characters), one per line" -}}
{{- end -}}
{{- end -}}
{{- with .Values.gateway.signingKey.value -}}
{{- if not (regexMatch "^[A-Za-z0-9_-]{43}$" (trim .)) -}}
{{- fail "gateway.signingKey.value must be a base64url 32-byte seed without padding (43 characters)" -}}
{{- end -}}
{{- end -}}
{{- if not (has .Values.gateway.sharedState.mode (list "lenient" "strict")) -}}
{{- fail (printf "gateway.sharedState.mode must be lenient or strict, not %q" .Values.gateway.sharedState.mode) -}}
{{- end -}}
{{- if and .Values.gateway.sharedState.redisUrl (not .Values.gateway.sharedState.existingSecret) (not (hasPrefix "redis://" .Values.gateway.sharedState.redisUrl)) -}}
{{- fail "gateway.sharedState.redisUrl must be a redis:// URL" -}}
{{- end -}}
{{- if and (eq .Values.mode "sidecar") (not .Values.sidecar.mcpServer.image.repository) -}}
{{- fail "sidecar.mcpServer.image.repository is required in sidecar mode" -}}
{{- end -}}
{{- end -}}
{{- if .Values.issuer.enabled -}}
{{- if not (or .Values.issuer.database.existingSecret .Values.issuer.database.url) -}}
{{- fail "issuer.database.existingSecret (or issuer.database.url) is required: the issuer's PostgreSQL database" -}}
{{- end -}}
{{- if and .Values.issuer.database.url (not .Values.issuer.database.existingSecret) (not (regexMatch "^postgres(ql)?://" .Values.issuer.database.url)) -}}
{{- fail "issuer.database.url must be a postgres:// URL (SQLite in a pod's file system would lose the issuer's keys and grants)" -}}
{{- end -}}
{{- if not (or .Values.issuer.keyEncryption.existingSecret .Values.issuer.keyEncryption.secret) -}}
{{- fail "issuer.keyEncryption.existingSecret (or issuer.keyEncryption.secret) is required: the secret that seals the issuer's signing keys" -}}
{{- end -}}
{{- if and .Values.issuer.keyEncryption.secret (not .Values.issuer.keyEncryption.existingSecret) (lt (len (trim .Values.issuer.keyEncryption.secret)) 32) -}}
{{- fail "issuer.keyEncryption.secret must be at least 32 characters" -}}
{{- end -}}
{{- if and .Values.issuer.adminToken.value (not .Values.issuer.adminToken.existingSecret) (lt (len (trim .Values.issuer.adminToken.value)) 16) -}}
{{- fail "issuer.adminToken.value must be at least 16 characters" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Topology spread constraints, with the component's pods as the default labelSelector. */}}
{{- define "portcullis.topologySpread" -}}
{{- $root := .root -}}
{{- $component := .component -}}
{{- range .constraints }}
{{- $c := deepCopy . }}
{{- if not $c.labelSelector }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" (fromYaml (include "portcullis.selectorLabels" (dict "root" $root "component" $component)))) }}
{{- end }}
- {{ toYaml $c | indent 2 | trim }}
{{- end }}
{{- end -}}

{{/* Environment both `serve` and `migrate` need: the data directory and the database. */}}
{{- define "portcullis.issuer.storageEnv" -}}
- name: PORTCULLIS_DATA_DIR
  value: /var/lib/portcullis
- name: PORTCULLIS_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "portcullis.issuer.databaseSecretName" . }}
      key: {{ include "portcullis.issuer.databaseSecretKey" . }}
{{- end -}}
