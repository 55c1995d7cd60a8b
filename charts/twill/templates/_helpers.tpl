{{/*
Shared names, labels and checks. Everything here is pure text generation: no objects.
*/}}

{{/* The namespace of the namespaced objects; refuses a value that contradicts --namespace. */}}
{{- define "twill.namespace" -}}
{{- $ns := .Values.namespace | default .Release.Namespace -}}
{{- if and (ne $ns .Release.Namespace) (ne .Release.Namespace "default") -}}
{{- fail (printf "values.namespace is %q but the release namespace is %q: install with --namespace %s, or set namespace=%s" $ns .Release.Namespace $ns .Release.Namespace) -}}
{{- end -}}
{{- $ns -}}
{{- end -}}

{{/* Prefix of every object name: the release name, unless it already says twill. */}}
{{- define "twill.fullname" -}}
{{- if contains "twill" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-twill" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "twill.node.name" -}}{{ include "twill.fullname" . }}-node{{- end -}}
{{- define "twill.ipamController.name" -}}{{ include "twill.fullname" . }}-ipam-controller{{- end -}}
{{- define "twill.cniConfig.name" -}}{{ include "twill.fullname" . }}-cni-config{{- end -}}

{{/* Labels on every object. */}}
{{- define "twill.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: twill
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component; call with (dict "ctx" $ "component" "node"). */}}
{{- define "twill.selectorLabels" -}}
app.kubernetes.io/name: twill
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* An image reference; call with (dict "ctx" $ "override" .Values.node.image). */}}
{{- define "twill.image" -}}
{{- $img := merge (deepCopy (.override | default dict)) .ctx.Values.image -}}
{{- printf "%s:%s" $img.repository ($img.tag | default .ctx.Chart.AppVersion) -}}
{{- end -}}

{{- define "twill.imagePullPolicy" -}}
{{- $img := merge (deepCopy (.override | default dict)) .ctx.Values.image -}}
{{- $img.pullPolicy -}}
{{- end -}}

{{/* The Secrets the BGP peers of values name for their passwords, sorted, as JSON. */}}
{{- define "twill.bgpPasswordSecrets" -}}
{{- $names := list -}}
{{- range .Values.bgp.peers -}}
{{- if .password -}}
{{- $names = append $names .password.secretKeyRef.name -}}
{{- end -}}
{{- end -}}
{{- $names | uniq | sortAlpha | toJson -}}
{{- end -}}
