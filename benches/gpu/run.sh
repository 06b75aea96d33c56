#!/usr/bin/env bash
# The GPU checks and figures, in one run of at most about 8 minutes on one H100/H200:
#   benches/gpu/run.sh          on the device machine, with the binaries of target/gpu/
#   benches/gpu/run.sh --cpu    the same parts with this machine's CPU binary, small
# Binaries: target/gpu/vitrun-tch (LibTorch CUDA: `STRIP=1 PYTHON=<venv with the device's
# torch>/bin/python just build-gpu tch`, then copied there) and target/gpu/vitrun-cuda
# (`STRIP=1 just build-gpu cuda`); each one present is checked. A LibTorch binary finds its
# libraries through $TORCH_LIB (default: the lib/ of the torch python3 imports).
# Figures go to $OUT (default target/gpu-out): summary.tsv (part, name, value) and a log per
# part; every part has its own time limit, so one failure costs only its own lines.
#   1 doctor      backends, driver, GPUs; the two experiments judged
#   2 no-claim    a GPU trial where no GPU is visible stops before it is claimed
#   3 speed       DeiT-Tiny 224 (benches/gpu/recipe_synthetic.toml), batch 128 and 256, f32 and
#                 bf16 (and bf16 with gradient checkpointing): train and inference img/s and
#                 peak GPU memory, beside timm's in the same session (benches/gpu/timm_peer.py)
#   4 train       the flagship (bf16) and 300 steps of the recipe: wall time, loss curves,
#                 and a run interrupted mid-way and resumed against the uninterrupted one
#   5 packing     the flagship sweep (2 epochs a trial) at 1, 2 and 4 trials per GPU and auto:
#                 makespan, and the trials' summed img/s against one trial alone
set -uo pipefail
cd "$(dirname "$0")/../.."
mode=gpu
[ "${1:-}" = --cpu ] && mode=cpu
OUT="${OUT:-target/gpu-out}"
mkdir -p "$OUT"
summary="$OUT/summary.tsv"
: > "$summary"
note() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" | tee -a "$summary"; }
flagship=experiments/deit_vehicles.toml
recipe=benches/gpu/recipe_synthetic.toml
sweepfile=experiments/deit_vehicles_sweep.toml

if [ "$mode" = cpu ]; then
  cargo build --release -q
  bins=("cpu:target/release/vitrun")
  steps=2 warmup=1 batches="8" precisions="f32" mixed=f32 recipe_sets=(--set data.train_size=64 --set data.val_size=32 --set train.batch_size=8)
  flagship_sets=(--set train.epochs=3 --set data.train_size=1024 --set data.val_size=128)
  resume_after=5
  python="${PYTHON:-/work/venv/bin/python}"
else
  bins=()
  [ -x target/gpu/vitrun-tch ] && bins+=("tch-cuda:0:target/gpu/vitrun-tch")
  [ -x target/gpu/vitrun-cuda ] && bins+=("cuda:0:target/gpu/vitrun-cuda")
  [ ${#bins[@]} -gt 0 ] || { echo "no target/gpu/vitrun-tch or vitrun-cuda: build them first (see the top of this file)" >&2; exit 2; }
  steps=30 warmup=10 batches="128 256" precisions="f32 bf16" mixed=bf16 recipe_sets=()
  flagship_sets=()
  resume_after=8
  python="${PYTHON:-python3}"
  TORCH_LIB="${TORCH_LIB:-$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')}"
  export LD_LIBRARY_PATH="$TORCH_LIB:${LD_LIBRARY_PATH:-}"
fi

# Peak memory (MiB) nvidia-smi saw for the process running "$@" (its output to stdout).
peak_mib() {
  "$@" & local pid=$! peak=0 used
  while kill -0 "$pid" 2>/dev/null; do
    used=$(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null \
      | awk -F', ' -v p="$pid" '$1 == p { print $2 }')
    [ -n "$used" ] && [ "$used" -gt "$peak" ] && peak=$used
    sleep 0.2
  done
  wait "$pid"; local rc=$?
  echo "$peak" > "$OUT/.peak"
  return $rc
}
json_field() { sed -n "s/.*\"$1\":\([0-9.eE+-]*\).*/\1/p"; }
now() { date +%s%N; }
seconds_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }

for entry in "${bins[@]}"; do
  bin="${entry##*:}" device="${entry%:*}"
  tag=$(basename "$bin")
  runs="$OUT/runs-$tag"
  rm -rf "$runs"
  at=(--runs-dir "$runs" --set "train.device=\"$device\"")

  # 1 doctor
  timeout 60 "$bin" doctor "$flagship" "${at[@]}" > "$OUT/doctor-$tag.txt" 2>&1
  note doctor "$tag flagship rc" $?
  timeout 60 "$bin" doctor "$recipe" "${at[@]}" --set 'train.precision="bf16"' >> "$OUT/doctor-$tag.txt" 2>&1
  note doctor "$tag recipe bf16 rc" $?

  # 2 no claim without a GPU
  if [ "$mode" = gpu ]; then
    CUDA_VISIBLE_DEVICES="" timeout 120 "$bin" run "$flagship" "${at[@]}" --quiet > "$OUT/noclaim-$tag.txt" 2>&1
    rc=$?
    rows=$("$bin" ls --runs-dir "$runs" -q 2>/dev/null | wc -l)
    note no-claim "$tag rc (expect 1), trials recorded (expect 0)" "$rc $rows"
  fi

  # 3 speed: vitrun's probe beside timm's
  for batch in $batches; do
    for precision in $precisions; do
      for ckpt in false true; do
        [ "$ckpt" = true ] && { [ "$precision" = bf16 ] && [ "$batch" = 256 ] || continue; }
        name="$tag bs$batch $precision${ckpt/false/}"; name="${name/true/ ckpt}"
        out=$(peak_mib timeout 180 "$bin" probe "$recipe" "${at[@]}" "${recipe_sets[@]}" \
          --set "train.batch_size=$batch" --set "train.precision=\"$precision\"" \
          --set "train.grad_checkpointing=$ckpt" --steps "$steps" --warmup "$warmup" --json 2>>"$OUT/speed.log")
        note speed "$name train img/s" "$(echo "$out" | json_field train_images_per_sec)"
        note speed "$name infer img/s" "$(echo "$out" | json_field infer_images_per_sec)"
        note speed "$name peak MiB" "$(cat "$OUT/.peak")"
      done
    done
  done

  # 4 train end to end; the curves as CSV
  start=$(now)
  timeout 240 "$bin" run "$flagship" "${at[@]}" "${flagship_sets[@]}" --set "train.precision=\"$mixed\"" --quiet >> "$OUT/train-$tag.log" 2>&1
  note train "$tag flagship $mixed rc, seconds" "$? $(seconds_since "$start")"
  "$bin" export-metrics deit_vehicles --runs-dir "$runs" --out "$OUT/flagship-$tag.csv" >> "$OUT/train-$tag.log" 2>&1
  if [ "$mode" = gpu ]; then
    start=$(now)
    timeout 240 "$bin" run "$recipe" "${at[@]}" --set 'train.precision="bf16"' --quiet >> "$OUT/train-$tag.log" 2>&1
    note train "$tag recipe 300 steps bf16 rc, seconds" "$? $(seconds_since "$start")"
    "$bin" export-metrics deit_recipe_synthetic --runs-dir "$runs" --out "$OUT/recipe-$tag.csv" >> "$OUT/train-$tag.log" 2>&1
  fi
  # Interrupted at about half time, resumed, against the uninterrupted run above.
  resumed="$OUT/resume-$tag"
  rm -rf "$resumed"
  "$bin" run "$flagship" --runs-dir "$resumed" --set "train.device=\"$device\"" "${flagship_sets[@]}" \
    --set "train.precision=\"$mixed\"" --quiet >> "$OUT/train-$tag.log" 2>&1 &
  pid=$!
  sleep "${RESUME_AFTER:-$resume_after}"; kill -INT "$pid"; wait "$pid"
  id=$("$bin" ls --runs-dir "$resumed" -q | head -1)
  timeout 240 "$bin" resume "$id" --runs-dir "$resumed" --quiet >> "$OUT/train-$tag.log" 2>&1
  "$bin" export-metrics deit_vehicles --runs-dir "$resumed" --out "$OUT/resumed-$tag.csv" >> "$OUT/train-$tag.log" 2>&1
  note train "$tag resumed val/top1 vs uninterrupted" "$(grep ',val,top1,' "$OUT/resumed-$tag.csv" | tail -1 | cut -d, -f9) $(grep ',val,top1,' "$OUT/flagship-$tag.csv" | tail -1 | cut -d, -f9)"

  # 5 packing
  if [ "$mode" = gpu ]; then
    for per in 1 2 4 '"auto"'; do
      packed="$OUT/sweep-$tag-${per//\"/}"
      rm -rf "$packed"
      start=$(now)
      timeout 150 "$bin" sweep "$sweepfile" --runs-dir "$packed" --set "train.device=\"$device\"" \
        --set train.epochs=2 --set "sweep.trials_per_gpu=$per" > "$packed.log" 2>&1
      note packing "$tag trials_per_gpu=$per rc, makespan s" "$? $(seconds_since "$start")"
      "$bin" export-metrics deit_vehicles_sweep --runs-dir "$packed" --out "$packed.csv" >> "$packed.log" 2>&1
      note packing "$tag trials_per_gpu=$per summed img/s (last epochs)" \
        "$(grep ',train,images_per_sec,' "$packed.csv" | awk -F, '{ last[$1] = $9 } END { for (t in last) s += last[t]; print s }')"
    done
  fi
done

# timm's DeiT-Tiny in the same session: bf16 autocast (and f32), same batches.
timeout 240 "$python" benches/gpu/timm_peer.py --mode "$mode" --batches $batches --steps "$steps" --warmup "$warmup" \
  2>>"$OUT/speed.log" | while IFS=$'\t' read -r name value; do note speed "$name" "$value"; done
echo "summary: $summary"
