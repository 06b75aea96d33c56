#!/usr/bin/env bash
# The committed detector of tests/fixtures/detr_export/, checked against PyTorch: trains the
# suite's tiny detection run (at width 32, two heads), keeps its checkpoint,
# resolved config and classes, draws two 32×32 images, and runs `vitrun predict --threshold 0`
# and `vitrun export` on them; scripts/check_detection_export.py rebuilds the export in PyTorch
# (timm's encoder, DETR's decoder from nn.MultiheadAttention), checks it gives vitrun's boxes,
# and writes pytorch.json (its boxes and a digest of every exported tensor) for the test
# `parity::a_detector_export_rebuilt_in_pytorch_gives_vitruns_boxes`.
#
# Run from the repository root: scripts/make_detection_export_fixture.sh
#   (VITRUN_BIN: default target/release/vitrun; PYTHON: a python with torch, timm, safetensors,
#   numpy and pillow, default python3)
set -euo pipefail
bin=${VITRUN_BIN:-target/release/vitrun}
python=${PYTHON:-python3}
out=tests/fixtures/detr_export
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$bin" run tests/configs/tiny_detection.toml --quiet --set "train.runs_dir=\"$work/runs\"" \
    --set model.embed_dim=32 --set model.num_heads=2 >/dev/null
trial=$(dirname "$(find "$work/runs/tiny_detection" -path '*/best/model.safetensors' | head -n 1)")/..
mkdir -p "$out"
cp "$trial/best/model.safetensors" "$out/model.safetensors"
grep -v '^runs_dir = ' "$trial/config.toml" >"$out/config.toml"
cp "$trial/classes.json" "$out/classes.json"
"$python" - "$out" <<'EOF'
import sys
import numpy as np
from PIL import Image
out = sys.argv[1]
scene = np.full((32, 32, 3), (90, 110, 90), np.uint8)
scene[6:20, 4:26] = (220, 40, 40)
scene[22:30, 18:30] = (30, 60, 200)
Image.fromarray(scene).save(f"{out}/scene.png")
noise = np.random.default_rng(7).integers(0, 256, (32, 32, 3), dtype=np.uint8)
Image.fromarray(noise).save(f"{out}/noise.png")
EOF
"$bin" predict "$out/model.safetensors" "$out/scene.png" "$out/noise.png" --threshold 0 \
    --out "$work/predicted" >/dev/null
"$bin" export "$out/model.safetensors" --out "$work/export.safetensors" >/dev/null
"$python" scripts/check_detection_export.py "$work/export.safetensors" \
    "$work/predicted/predictions.jsonl" "$out/scene.png" "$out/noise.png" --write "$out/pytorch.json"
