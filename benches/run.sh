#!/usr/bin/env bash
# `just bench`: burn-flex (and burn-tch CPU when it builds) against timm in PyTorch eager, on the
# same threads, in one run; prints every figure and the ratios. PyTorch comes from PyPI into a
# venv under target/ (the tests never need it).
set -euo pipefail
cd "$(dirname "$0")/.."
export VITRUN_BENCH_THREADS="${VITRUN_BENCH_THREADS:-2}"
venv=target/bench-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, timm" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch==2.9.0 timm
fi
out=$(mktemp)
features=()
if [ "${VITRUN_BENCH_TCH:-1}" = 1 ]; then
  features=(--features tch)
  # A target dir of its own, so the tch build never replaces the default (flex-only) binaries.
  export CARGO_TARGET_DIR="$PWD/target/tch"
  export LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1
  export PATH="$PWD/$venv/bin:$PATH"
  torch_lib=$("$venv/bin/python" -c "import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))")
  export LD_LIBRARY_PATH="$torch_lib:${LD_LIBRARY_PATH:-}"
fi
build_start=$(date +%s)
cargo bench --bench train_step "${features[@]}" --no-run 2>&1 | tail -1
echo "bench build seconds: $(( $(date +%s) - build_start ))"
cargo bench --bench train_step "${features[@]}" 2>/dev/null | tee "$out"
"$venv/bin/python" benches/pytorch_peer.py | tee -a "$out"
# The convnet: timm's ResNet-18 (half widths, the distillation teacher) against timm's in PyTorch.
cargo bench --bench distill "${features[@]}" 2>/dev/null | grep '^resnet' | tee -a "$out"
"$venv/bin/python" benches/resnet_peer.py | tee -a "$out"
# Each figure's peer is the PyTorch line with the same prefix: `burn-flex train img/s` against
# `pytorch train img/s`, `conv-stem burn-flex ...` against `conv-stem pytorch ...`.
awk -F': ' '
  / (train|infer) img\/s: / {
    n = split($1, w, " "); kind = w[n - 1]; key = w[1]
    for (i = 2; i < n - 1; i++) key = key " " w[i]
    value[key, kind] = $2; keys[key] = 1
  }
  END {
    for (k in keys) {
      m = split(k, p, " ")
      if (p[m] == "pytorch" || k ~ /bare-burn/) continue
      peer = (m > 1 ? p[1] " " : "") "pytorch"
      if ((peer, "train") in value)
        printf "%s / %s: train %.2fx, infer %.2fx\n", k, peer, value[k, "train"] / value[peer, "train"], value[k, "infer"] / value[peer, "infer"]
    }
  }
' "$out"
