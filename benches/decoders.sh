#!/usr/bin/env bash
# The segmentation decoders against each other: each decoder of DECODERS on an experiment at
# its own epochs, two seeds, then the linear decoder again given the slowest decoder's wall time
# (its epochs scaled by the wall-time ratio), so that a slower decoder is also compared at equal
# wall time. Prints one line per run: decoder, seed, epochs, wall seconds, best val mIoU and
# Dice (binary tasks).
#
# `just bench-decoders` (VITRUN_BIN: the binary, default target/release/vitrun; EXPERIMENT,
# DECODERS, EPOCHS to change what runs).
set -euo pipefail
bin=${VITRUN_BIN:-target/release/vitrun}
experiment=${EXPERIMENT:-experiments/vit_seg_lesions.toml}
decoders=${DECODERS:-linear conv mask unet}
epochs=${EPOCHS:-10}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Runs one trial; prints "decoder seed epochs wall miou dice".
run() {
    local decoder=$1 seed=$2 n=$3 runs="$work/$1-$2-$3"
    local start end
    start=$(date +%s.%N)
    "$bin" run "$experiment" --quiet --set "train.runs_dir=\"$runs\"" --set "seed=$seed" \
        --set "head.decoder=\"$decoder\"" --set "train.epochs=$n" >/dev/null
    end=$(date +%s.%N)
    local best
    best=$(sqlite3 "$runs/vitrun.sqlite" \
        "select printf('%.4f', max(case when name = 'miou' then value end)), printf('%.4f', max(case when name = 'dice' then value end)) from metrics where split = 'val'")
    awk -v d="$decoder" -v s="$seed" -v n="$n" -v a="$start" -v b="$end" -v m="$best" \
        'BEGIN { split(m, v, "|"); printf "%s seed %s: %d epochs, wall %.0f s, best val miou %s, dice %s\n", d, s, n, b - a, v[1], (v[2] == "" ? "-" : v[2]) }'
}

slowest=0
linear_wall=0
for seed in 1 2; do
    for decoder in $decoders; do
        line=$(run "$decoder" "$seed" "$epochs")
        echo "decoders $(basename "$experiment" .toml): $line"
        wall=$(echo "$line" | sed -E 's/.*wall ([0-9]+) s.*/\1/')
        [ "$decoder" = linear ] && linear_wall=$wall
        [ "$wall" -gt "$slowest" ] && slowest=$wall
    done
    if [ "$linear_wall" -gt 0 ] && [ "$slowest" -gt "$linear_wall" ]; then
        matched=$(( (epochs * slowest + linear_wall / 2) / linear_wall ))
        echo "decoders $(basename "$experiment" .toml) (equal wall time): $(run linear "$seed" "$matched")"
    fi
    slowest=0
done
