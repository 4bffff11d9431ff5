{{/* The labels every object of the chart carries; weft check and uninstall find them by these. */}}
{{- define "weft.labels" -}}
app.kubernetes.io/name: weft
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "weft.controlPlaneLabels" -}}
{{ include "weft.labels" . }}
app.kubernetes.io/component: control-plane
{{- end -}}

{{- define "weft.selectorLabels" -}}
app.kubernetes.io/name: weft
app.kubernetes.io/component: control-plane
{{- end -}}

{{/* The control plane's Service DNS names: the webhook serving certificate's SANs. */}}
{{- define "weft.serviceDNSNames" -}}
{{- $svc := printf "weft-cp.%s" .Release.Namespace -}}
{{- list $svc (printf "%s.svc" $svc) (printf "%s.svc.%s" $svc .Values.clusterDomain) | toJson -}}
{{- end -}}
