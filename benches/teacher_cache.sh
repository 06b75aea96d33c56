#!/usr/bin/env bash
# The teacher cache's saving: the 4-student sweep of benches/distill_cache_sweep.toml, once
# without distill.cache and once with it, from the same teacher trial (the ResNet-18 of
# experiments/resnet_fashion_mnist.toml, trained here on 5,000 images for one epoch). Prints
# each sweep's wall time and teacher forwards (images the teacher classified, and images the
# cache answered), then the ratios. The sweep runs trials as `vitrun sweep` does on this
# machine: one per core at once.
#
# `just bench-teacher-cache` (VITRUN_BIN: the binary, default target/release/vitrun).
set -euo pipefail
bin=${VITRUN_BIN:-target/release/vitrun}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$bin" run experiments/resnet_fashion_mnist.toml --quiet \
    --set "train.runs_dir=\"$work/plain\"" --set data.train_size=5000 --set data.val_size=2000 \
    --set train.epochs=1 >/dev/null
teacher=$("$bin" ls resnet_fashion_mnist --runs-dir "$work/plain" | awk 'NR == 2 { print $1 }')
cp -r "$work/plain" "$work/cached"

declare -A wall forwards cached
for mode in plain cached; do
    cache=false
    [ "$mode" = cached ] && cache=true
    start=$(date +%s.%N)
    "$bin" sweep benches/distill_cache_sweep.toml \
        --set "train.runs_dir=\"$work/$mode\"" --set "distill.teacher=\"trial:$teacher\"" \
        --set "distill.cache=$cache" >/dev/null
    end=$(date +%s.%N)
    wall[$mode]=$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')
    line=$("$bin" ls distill_cache_bench --runs-dir "$work/$mode" | grep '^# teacher:')
    forwards[$mode]=$(echo "$line" | sed -E 's/# teacher: ([0-9,]+) images classified.*/\1/' | tr -d ,)
    cached[$mode]=$(echo "$line" | sed -E 's/.*, ([0-9,]+) answered by.*/\1/' | tr -d ,)
    printf 'teacher-cache %s: wall %.1f s, teacher forwards %s images, answered by the cache %s images\n' \
        "$mode" "${wall[$mode]}" "${forwards[$mode]}" "${cached[$mode]}"
done
awk -v wc="${wall[cached]}" -v wp="${wall[plain]}" -v fc="${forwards[cached]}" -v fp="${forwards[plain]}" \
    'BEGIN { printf "teacher-cache cached / plain: wall %.2fx, teacher forwards %.2fx\n", wc / wp, fc / fp }'
