#!/usr/bin/env bash
# `just bench-search`: trials to reach the target for vitrun's TPE, random search and Optuna's
# TPE (from PyPI, in the bench venv) on the same problems, median over 50 seeds, with the ratio
# vitrun / Optuna; and the time of one TPE proposal with 1,000 finished trials.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/bench-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import optuna" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q optuna
fi
out=$(mktemp)
cargo bench --bench search 2>/dev/null | tee "$out"
"$venv/bin/python" benches/search_optuna.py | tee -a "$out"
awk '
  / trials-to-target median: / { split($0, w, " "); median[w[2], w[3]] = w[6] }
  END {
    for (key in median) {
      split(key, k, SUBSEP)
      if (k[2] == "vitrun-tpe" && ((k[1], "optuna-tpe") in median))
        printf "search %s tpe trials vitrun/optuna: %.2f\n", k[1], median[key] / median[k[1], "optuna-tpe"]
    }
  }' "$out"
