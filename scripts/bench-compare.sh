#!/usr/bin/env bash
# Runs the pipeline benchmarks (bench/: Nomad replay, Consul health; the
# incidents storm) on a base commit and on the working tree, one after the
# other on this machine, so that before and after are measured alike.
# The base gets the benchmark files as first written (7f5aa4f: the harness is
# newer than the base; later versions use APIs the base lacks).
#
#   scripts/bench-compare.sh [base-commit] [count]
set -euo pipefail
base=${1:-2d84b90}
count=${2:-3}
top=$(git rev-parse --show-toplevel)
cd "$top"
export GOFLAGS=-tags=goolm
tmp=$(mktemp -d)
trap 'git worktree remove --force "$tmp" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git worktree add --detach --quiet "$tmp" "$base"
harness=7f5aa4f
for f in $(git ls-tree --name-only "$harness" bench/); do
	case $f in *_test.go) git show "$harness:$f" > "$tmp/$f" ;; esac
done
git show "$harness:incidents/engine_bench_test.go" > "$tmp/incidents/engine_bench_test.go"

run() {
	local dir=$1 label=$2
	echo "== $label ($(cd "$dir" && git rev-parse --short HEAD)$( [ "$dir" = "$top" ] && ! git diff --quiet && echo ', with uncommitted changes'))"
	(cd "$dir" && go test ./bench -run '^$' -bench 'NomadReplay$|ConsulHealth' -benchtime 1x -count "$count" 2>&1 | grep -E '^ +(replay|consul)_test.go|^(ok|FAIL)') || true
	(cd "$dir" && go test ./incidents -run '^$' -bench ConsumeStorm -benchtime 2000x -count "$count" 2>&1 | grep -E '^Benchmark|^(ok|FAIL)') || true
}
run "$tmp" before
run "$top" after
