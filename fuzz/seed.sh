#!/usr/bin/env bash
# Builds the seed corpora in fuzz/seeds/<target>/ from tests/fixtures, in
# each target's input format (see fuzz/src). libFuzzer reads them alongside
# the growing corpus in fuzz/corpus/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
fixtures=../tests/fixtures
rm -rf seeds
mkdir -p seeds/webhook_request seeds/signature_header seeds/github_payload seeds/aws_events seeds/slack_render

# GitHub payloads: webhook_request takes `<flags><event>\n<body>`,
# github_payload takes `<event selector><body>`.
events=(push deployment ping deployment_status release)
n=0
for file in "$fixtures"/github/*/*.json; do
  event=$(basename "$(dirname "$file")")
  n=$((n + 1))
  # flags: 0x01 signed, 0x05 signed + base64, 0x09 signed + form,
  # 0x41 signed + allowlist, 0x00 forged.
  for flags in '\x01' '\x05' '\x09' '\x41' '\x00'; do
    { printf "$flags%s\n" "$event"; cat "$file"; } > "seeds/webhook_request/$n-$event-${flags:2}"
  done
  for i in "${!events[@]}"; do
    if [[ ${events[$i]} == "$event" ]]; then
      { printf "\\x$(printf %02x "$i")"; cat "$file"; } > "seeds/github_payload/$n-$event"
      { printf "\\x$(printf %02x $((i + 128)))"; cat "$file"; } > "seeds/github_payload/$n-$event-restricted"
    fi
  done
done

# github_payload with DEPLOY_PATHS from the input (selector bit 0x40):
# `<selector><DEPLOY_PATHS>\n<body>`, valid and malformed values.
paths_values=(
  'production=infra/**,services/api/**;staging=**'
  'staging=**/*.rs,!docs/**'
  'production=**.md'
  'production=README.md;production=docs/**'
)
for i in "${!paths_values[@]}"; do
  for file in "$fixtures"/github/push/*.json; do
    { printf '\x40%s\n' "${paths_values[$i]}"; cat "$file"; } > "seeds/github_payload/paths-$i-$(basename "$file")"
  done
done

# Signature headers: GitHub's documented vector and near misses.
sig=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17
printf 'sha256=%s' "$sig" > seeds/signature_header/valid
printf ' sha256=%s\t' "$sig" > seeds/signature_header/padded
printf 'sha256=%s' "${sig^^}" > seeds/signature_header/upper
printf 'sha1=%s' "${sig:0:40}" > seeds/signature_header/sha1
printf 'sha256=%s,sha256=%s' "$sig" "$sig" > seeds/signature_header/repeated

# AWS events: every AWS fixture as it is (SNS, EventBridge, alarms, ECS).
for file in "$fixtures"/aws/*/*.json "$fixtures"/aws/*/*/*.json; do
  [[ -f $file ]] || continue
  name=$(echo "${file#"$fixtures"/aws/}" | tr / _)
  cp "$file" "seeds/aws_events/$name"
  cp "$file" "seeds/slack_render/$name"
done
echo "seeds: $(find seeds -type f | wc -l) files in fuzz/seeds/"
