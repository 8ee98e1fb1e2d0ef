#!/usr/bin/env bash
# Checks kiln's SAM templates with no AWS account and no network:
#   1. cfn-lint on every template (zero errors, zero warnings);
#   2. sam validate --lint on the root template;
#   3. the SAM transform run offline (aws-sam-translator), then cfn-lint on
#      the resulting CloudFormation: this catches what cfn-lint misses on a
#      SAM template (a dangling !Ref or !GetAtt, a bad Runtime, ...);
#   4. checkov, offline, on the transformed templates: zero failed checks
#      (each check kiln does not follow is skipped in the template's
#      Metadata, with the reason);
#   5. the template tests in infra/tests (pytest).
# Runs with the tools of .venv-sam and .venv-checkov (make check-templates
# installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VENV_INFRA:-.venv-sam}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
export SAM_CLI_TELEMETRY=0

templates=(infra/template.yaml infra/deploy-pipeline.yaml infra/watchdog.yaml infra/alerts.yaml)

echo "==> cfn-lint ${templates[*]}"
# No rule is ignored. If one ever must be, add it to infra/.cfnlintrc with
# the reason next to it.
"$venv/bin/cfn-lint" "${templates[@]}"

echo "==> sam validate --lint infra/template.yaml"
"$venv/bin/sam" validate --lint --template infra/template.yaml

echo "==> offline SAM transform, then cfn-lint on the CloudFormation"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for t in "${templates[@]}"; do
  "$venv/bin/python" infra/tests/sam_transform.py "$t" "$out/$(basename "$t" .yaml).json"
done
"$venv/bin/cfn-lint" "$out"/*.json
echo "transformed and linted: ${#templates[@]} templates"

echo "==> checkov on the transformed templates"
tools/checkov.sh "$out"

echo "==> template tests"
"$venv/bin/python" -m pytest infra/tests -q -p no:cacheprovider
