#!/usr/bin/env bash
# `just bench-search-flagship`: a real TPE sweep of the flagship against a random one over the
# same space (experiments/deit_vehicles_tpe.toml: 24 trials each, 2 slots, ASHA), each in a
# store of its own; prints each search's best val/top1 and its best-so-far curve by proposal.
# About 50 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${1:-target/search-flagship}"
mkdir -p "$root"
cargo build --release 2>&1 | tail -1
for method in tpe random; do
  args=(experiments/deit_vehicles_tpe.toml --runs-dir "$root/$method" --set "sweep.method=\"$method\"")
  start=$(date +%s)
  target/release/vitrun sweep "${args[@]}" --cpu-slots 2 > "$root/$method.log" 2>&1
  echo "search flagship $method wall seconds: $(( $(date +%s) - start ))"
  target/release/vitrun plan "${args[@]}" | awk -v method="$method" '
    $1 ~ /^[0-9]+$/ && $4 != "-" {
      if (n == 0 || $4 > best) { best = $4; at = $1 }
      curve = curve sprintf(" %.3f", best); n++
    }
    END {
      printf "search flagship %s best val/top1: %.4f (proposal %d of %d)\n", method, best, at, n
      printf "search flagship %s best-so-far:%s\n", method, curve
    }'
done
