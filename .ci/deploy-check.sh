#!/usr/bin/env bash
# What can be checked of the deployment files without a container daemon or a cluster:
# the Kubernetes manifests against the API schemas (strict: unknown fields fail), and
# the compose file against the Compose specification. (Building the images needs a
# daemon and base images from a registry; neither is reachable here.)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${HOICLIP_DEPLOY_VENV:-$HOME/.cache/hoiclip-deploy-venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "kubernetes-validate==1.37.0" "check-jsonschema==0.39.0"
cd "$ROOT"
# The oldest Kubernetes release still supported when these were written, and the newest.
for k in 1.32.0 1.37.0; do
  "$VENV/bin/kubernetes-validate" --strict --quiet -k "$k" deploy/k8s/{secret,deployment,service,pdb,hpa}.yaml
done
"$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec compose.yaml
# Every manifest is in the kustomization (so `kubectl apply -k deploy/k8s` takes all).
for f in deploy/k8s/*.yaml; do
  name=$(basename "$f")
  [ "$name" = kustomization.yaml ] && continue
  grep -q "^  - $name\$" deploy/k8s/kustomization.yaml || { echo "$name is not in kustomization.yaml" >&2; exit 1; }
done
echo "deployment files: valid"
