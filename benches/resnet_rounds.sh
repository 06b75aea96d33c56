#!/usr/bin/env bash
# `just bench-distill`: the distillation bench (the ResNet-18 teacher's steps, the student with
# and without it) and timm's ResNet in PyTorch (benches/resnet_peer.py), in three rounds one
# after the other, and the ResNet's ratio to PyTorch per round and their median: this machine's
# speed drifts over minutes, so one pair of figures can mislead.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${VITRUN_BENCH_PYTHON:-target/bench-venv/bin/python}
out=target/bench-distill.txt
: > "$out"
cargo bench --bench distill --no-run 2>&1 | tail -1
for round in 1 2 3; do
    echo "round $round" | tee -a "$out"
    cargo bench --bench distill 2>/dev/null | grep -v '^$' | tee -a "$out"
    "$python" benches/resnet_peer.py | tee -a "$out"
done
awk -F': ' '
  function mid(a) { return a[1] + a[2] + a[3] - max3(a) - min3(a) }
  function max3(a) { return (a[1] > a[2] ? (a[1] > a[3] ? a[1] : a[3]) : (a[2] > a[3] ? a[2] : a[3])) }
  function min3(a) { return (a[1] < a[2] ? (a[1] < a[3] ? a[1] : a[3]) : (a[2] < a[3] ? a[2] : a[3])) }
  /^round / { r = $0; sub("round ", "", r) }
  /resnet18-w32 (burn-flex|pytorch) (train|infer) img\/s/ {
    split($1, w, " "); value[r, w[2], w[3]] = $2
  }
  END {
    for (i = 1; i <= r; i++) {
      t[i] = value[i, "burn-flex", "train"] / value[i, "pytorch", "train"]
      f[i] = value[i, "burn-flex", "infer"] / value[i, "pytorch", "infer"]
      printf "round %d resnet18-w32 burn-flex / pytorch: train %.2fx, infer %.2fx\n", i, t[i], f[i]
    }
    printf "median resnet18-w32 burn-flex / pytorch: train %.2fx, infer %.2fx\n", mid(t), mid(f)
  }
' "$out"
