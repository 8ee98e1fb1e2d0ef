#!/usr/bin/env bash
# checkov, offline, on kiln's transformed (CloudFormation JSON) templates:
# every finding must be fixed in the template or skipped there, inline in the
# resource's Metadata with the reason (`checkov: skip: [{id, comment}]`).
# Exits non-zero on any failed check.
#   tools/checkov.sh        transform infra/*.yaml offline, then scan (make checkov)
#   tools/checkov.sh DIR    scan the *.json templates already in DIR
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV_CHECKOV:-.venv-checkov}
if [ $# -eq 0 ]; then
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  for t in template deploy-pipeline watchdog alerts; do
    AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1} \
      "${VENV_INFRA:-.venv-sam}/bin/python" infra/tests/sam_transform.py "infra/$t.yaml" "$dir/$t.json"
  done
else
  dir=$1
fi
# --skip-download: no call to checkov's vendor API (it would fail offline
# with long tracebacks); the built-in checks are all kiln uses.
"$venv/bin/checkov" --skip-download --quiet --compact \
  --framework cloudformation --directory "$dir" --output cli
echo "checkov: no failed check"
