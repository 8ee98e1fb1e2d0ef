#!/usr/bin/env bash
# checkov, offline, on transformed (CloudFormation JSON) templates: every
# finding must be fixed in the template or skipped there, inline in the
# resource's Metadata with the reason (`checkov: skip: [{id, comment}]`).
# Exits non-zero on any failed check.
#   tools/checkov.sh DIR   (the *.json templates in DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: tools/checkov.sh DIR-OF-TRANSFORMED-TEMPLATES}
venv=${VENV_CHECKOV:-.venv-checkov}
# --skip-download: no call to checkov's vendor API (it would fail offline
# with long tracebacks); the built-in checks are all kiln uses.
"$venv/bin/checkov" --skip-download --quiet --compact \
  --framework cloudformation --directory "$dir" --output cli
echo "checkov: no failed check"
