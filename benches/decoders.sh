#!/usr/bin/env bash
# The segmentation decoders against each other at about equal wall time: each decoder of
# RUNS (decoder:epochs) trains EXPERIMENT for its epochs, with two seeds. The default epochs give
# each decoder the linear decoder's 10-epoch budget on the lesion experiment, from their measured
# cost per epoch on 2 cores (linear 1, conv 2.1, mask 2.7, unet 7.2: the U-Net's full-resolution
# convolutions dominate). Prints one line per run: decoder, seed, epochs, wall seconds, best val
# mIoU and Dice (binary tasks; '-' for more classes); compare the walls before the scores.
#
# `just bench-decoders` (VITRUN_BIN: the binary, default target/release/vitrun; EXPERIMENT and
# RUNS to change what runs, e.g. RUNS="linear:10 mask:10" for equal epochs).
set -euo pipefail
bin=${VITRUN_BIN:-target/release/vitrun}
experiment=${EXPERIMENT:-experiments/vit_seg_lesions.toml}
runs=${RUNS:-linear:10 conv:5 mask:4 unet:2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for seed in 1 2; do
    for run in $runs; do
        decoder=${run%%:*} epochs=${run##*:} dir="$work/$decoder-$seed"
        start=$(date +%s.%N)
        "$bin" run "$experiment" --quiet --set "train.runs_dir=\"$dir\"" --set "seed=$seed" \
            --set "head.decoder=\"$decoder\"" --set "train.epochs=$epochs" >/dev/null
        end=$(date +%s.%N)
        best=$(sqlite3 "$dir/vitrun.sqlite" \
            "select printf('%.4f', max(case when name = 'miou' then value end)), coalesce(max(case when name = 'dice' then printf('%.4f', value) end), '-') from metrics where split = 'val'")
        awk -v x="$(basename "$experiment" .toml)" -v d="$decoder" -v s="$seed" -v n="$epochs" \
            -v a="$start" -v b="$end" -v m="$best" \
            'BEGIN { split(m, v, "|"); printf "decoders %s: %s seed %s: %d epochs, wall %.0f s, best val miou %s, dice %s\n", x, d, s, n, b - a, v[1], v[2] }'
    done
done
