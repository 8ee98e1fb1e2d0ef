#!/usr/bin/env bash
# Times a newcomer's first `make run` and a contributor's inner loop, the way
# docs/development.md reports them:
#   1. `make run` on a fresh clone (new venvs, an empty target/);
#   2. `make run` after a one-line edit in one function (watchdog);
#   3. `make run` after a one-line edit in the shared library (shared/).
# Each step is timed with /usr/bin/time -v (wall, user and system CPU, peak
# memory) and the load average before it is recorded: on a shared machine
# the wall time says little without the load.
#
# Usage: tools/measure-local-run.sh [--dir DIR] [--branch BRANCH] [--timings] [--test]
#   --dir DIR        where to clone (default /tmp/kiln-measure; removed first)
#   --branch BRANCH  the branch to clone (default: the current one)
#   --timings        then run make run's cargo commands once more with
#                    --timings, after another shared/ edit
#                    (DIR/target/cargo-timings/)
#   --test           then time `make test` on the same clone
# The cargo registry is used as it is (already downloaded, or fetched on
# the first build). Results go to stdout and to DIR.measurements.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

dir=/tmp/kiln-measure
branch=$(git -C "$here" rev-parse --abbrev-ref HEAD)
timings=""
with_test=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --dir) dir=$2; shift 2 ;;
    --branch) branch=$2; shift 2 ;;
    --timings) timings=1; shift ;;
    --test) with_test=1; shift ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if [[ ! -x /usr/bin/time ]]; then
  echo "error: /usr/bin/time is needed (Debian: apt-get install time)" >&2
  exit 2
fi

results=$dir.measurements.txt
# The clone builds into its own target/ (the Makefile's default).
unset CARGO_TARGET_DIR
export CARGO_TERM_COLOR=never

rm -rf "$dir"
git clone --quiet --branch "$branch" --single-branch "$here" "$dir"
cd "$dir"
{
  echo "kiln local-run measurements: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)"
  echo "machine: $(nproc) × $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/^Mem:/ {print $2}') GB, Linux $(uname -r)"
  echo "rustc: $(rustc --version)"
} | tee "$results"

# step NAME COMMAND...: runs the command under /usr/bin/time, appends one line.
step() {
  local name=$1; shift
  local load log
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  log=$(mktemp)
  if ! /usr/bin/time -v -o "$log.time" "$@" >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "error: step '$name' failed (output: $log)" >&2
    exit 1
  fi
  local wall user sys rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log.time")
  user=$(awk -F': ' '/User time/ {print $2}' "$log.time")
  sys=$(awk -F': ' '/System time/ {print $2}' "$log.time")
  rss=$(awk -F': ' '/Maximum resident/ {printf "%.0f MB", $2/1024}' "$log.time")
  printf '%-34s wall %8s  user %8s s  sys %7s s  peak RSS %s  load before %s  (%s)\n' \
    "$name" "$wall" "$user" "$sys" "$rss" "$load" "$(grep -E 'steps passed|steps failed' "$log" | tail -1)" | tee -a "$results"
}

# A one-line edit: a new private constant at the end of a crate's lib.rs
# (the crate and everything that depends on it is compiled again).
edit() {
  printf '\n#[allow(dead_code)]\nconst LOCAL_EDIT_%s: u32 = %s;\n' "$2" "$RANDOM" >>"$1"
}

step "first make run (fresh clone)" make run
edit functions/watchdog/src/lib.rs FUNCTION
step "make run, one function edited" make run
edit shared/src/lib.rs SHARED
step "make run, shared/ edited" make run
if [[ -n $timings ]]; then
  # Where the seconds go: make run's own cargo commands, with --timings,
  # after one more shared/ edit (reports in target/cargo-timings/).
  edit shared/src/lib.rs TIMINGS
  mapfile -t builds < <(make -n run | grep '^cargo build')
  for build in "${builds[@]}"; do
    step "--timings: ${build#cargo build --profile local }" bash -c "$build --timings"
  done
fi
git checkout --quiet -- functions/watchdog/src/lib.rs shared/src/lib.rs
if [[ -n $with_test ]]; then
  step "make test (same clone)" make test
fi
echo "written to $results"
