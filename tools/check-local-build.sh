#!/usr/bin/env bash
# Checks that `make run` and `make dev` run the function binaries the Lambda
# zips are made of: the same crates with the same features, so no test
# harness code or test-only feature reaches them. Only the profile and the
# target may differ.
#
# Usage: tools/check-local-build.sh "<the zips' build command>" "<the local build command>" ["<the harness build command>"]
# The Makefile passes its own command lines (`make check-local-build`, part
# of `make test`). Each is turned into the `cargo tree` that resolves what it
# builds (its packages and feature flags, no dev-dependencies), for this
# machine's target, and the first two resolutions must be the same crates
# with the same features.
#
# The third, kiln-local's build, runs after the local one, in its own cargo
# invocation. Every crate it shares with the functions must have the same
# features there too, or cargo compiles that crate and everything above it
# a second time (a slower first `make run`, not a wrong one). Its features
# are lined up in tests/Cargo.toml, under "Feature unification".
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -ne 2 && $# -ne 3 ]]; then
  echo "usage: $0 \"<zip build command>\" \"<local build command>\" [\"<harness build command>\"]" >&2
  exit 2
fi

# The arguments of `cargo tree` that select what a build command selects.
# Profile and target settings are dropped (they don't change which crates
# and features are resolved, except for target-specific dependencies, and
# the target is the one thing allowed to differ); anything else cargo tree
# does not know makes the check fail rather than pass unseen.
tree_args() {
  local skip="" word
  local -a words
  read -r -a words <<<"$1"
  for word in "${words[@]}"; do
    if [[ -n $skip ]]; then skip=""; continue; fi
    case $word in
      cargo | build | lambda | --release | --arm64 | --x86-64) ;;
      # Which targets of the selected packages are built (their features
      # are the same); --tests, --all-targets and the like are not dropped:
      # they bring in dev-dependencies.
      --bins | --lib | --locked | --offline | --frozen) ;;
      --bin) skip=1 ;;
      --profile | --target | --output-format | --compiler) skip=1 ;;
      --profile=* | --target=* | --output-format=* | --compiler=*) ;;
      *) printf '%s\n' "$word" ;;
    esac
  done
}

resolve() {
  local -a args
  mapfile -t args < <(tree_args "$1")
  cargo tree --locked --edges normal,build,features --prefix none --format '{p} {f}' "${args[@]}" |
    sed -e 's/ (\*)$//' -e 's/ (proc-macro)//' | sort -u
}

zips=$(resolve "$1")
local_=$(resolve "$2")

status=0
if [[ "$zips" != "$local_" ]]; then
  echo "error: the local build resolves other crates or features than the Lambda zips" >&2
  echo "  zips:  $1" >&2
  echo "  local: $2" >&2
  diff <(echo "$zips") <(echo "$local_") | sed 's/^/  /' >&2 || true
  status=1
fi
# Whatever the two agree on, neither may carry the harness, or a test-util
# feature of one of kiln's own crates (the workspace members: the packages
# listed with a path). (The AWS SDK turns on test-util of some of its own
# crates in every build; that is not kiln's to change.)
members=$(sed -n 's/^\([^ ]*\) v[^ ]* (\/.*/\1/p' <<<"$zips" | sort -u)
for member in $members; do
  if [[ $member == kiln-tests ]] || grep -qxF "$member feature \"test-util\"" <<<"$zips"; then
    echo "error: the Lambda zips' build resolves $member$([[ $member == kiln-tests ]] || echo "'s test-util feature")" >&2
    status=1
  fi
done
if [[ $status -eq 0 ]]; then
  echo "local build: the same $(grep -vc ' feature "' <<<"$zips") crates and features as the Lambda zips"
fi

# One line a crate: "name version features" (features comma-separated,
# "-" for none), from a resolution's package lines.
crate_features() {
  grep -v ' feature "' | awk '{ f = ($NF ~ /^v[0-9]/ || $NF ~ /^\(/) ? "-" : $NF; print $1, $2, f }' | sort -u
}

if [[ $# -eq 3 ]]; then
  harness=$(resolve "$3" | crate_features)
  functions=$(crate_features <<<"$local_")
  keyed() { awk '{ print $1 "@" $2, $3 }' | sort; }
  # Crates in both builds: "name@version functions' features kiln-local's features".
  both=$(join -j1 -o 0,1.2,2.2 <(keyed <<<"$functions") <(keyed <<<"$harness"))
  differing=$(awk '$2 != $3' <<<"$both")
  if [[ -n $differing ]]; then
    echo "error: kiln-local's build turns on other features than the functions' build in crates they share," >&2
    echo "  so the first make run compiles them (and every crate above them) twice:" >&2
    awk '{ sub("@", " ", $1); printf "  %s\n    functions:  %s\n    kiln-local: %s\n", $1, $2, $3 }' <<<"$differing" >&2
    echo "  Line them up under \"Feature unification\" in tests/Cargo.toml" >&2
    echo "  (or drop the kiln-local dependency that turns on the extra ones)." >&2
    status=1
  else
    echo "kiln-local's build: the same features as the functions' build in all $(wc -l <<<"$both") crates they share"
  fi
fi
exit $status
