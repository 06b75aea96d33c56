# vitrun's everyday commands. `cargo install just` once; each recipe is plain cargo underneath.

# Train one experiment (the flagship by default).
run file="experiments/deit_vehicles.toml" *args="":
    cargo run --release -- run {{file}} {{args}}

# Print the resolved config of an experiment, with where each value came from.
config file="experiments/deit_vehicles.toml" *args="":
    cargo run --release -- check {{file}} {{args}}

# Transfer learning demo: pretrain, export, then a small task from scratch and fine-tuned.
transfer:
    cargo run --release -- run experiments/transfer_pretrain.toml
    cargo run --release -- export transfer_pretrain --out runs/transfer_pretrain.safetensors
    cargo run --release -- run experiments/transfer_small.toml
    cargo run --release -- run experiments/transfer_small.toml --set 'model.pretrained="runs/transfer_pretrain.safetensors"'
    cargo run --release -- report transfer_small

# A GPU binary at target/release/vitrun: LibTorch CUDA from the torch $PYTHON imports (tch, the
# default), or burn's own CUDA backend (cuda). `vitrun doctor` then checks the driver and GPUs.
build-gpu backend="tch":
    scripts/build-gpu.sh {{backend}}

# What this machine and binary can run, and whether each trial of FILE would start here.
doctor *args="":
    cargo run --release -- doctor {{args}}

# List trials in the run store.
ls *args="":
    cargo run --release -- ls {{args}}

# Run a sweep's trials that the store does not have done (the flagship sweep by default).
sweep file="experiments/deit_vehicles_sweep.toml" *args="":
    cargo run --release -- sweep {{file}} {{args}}

# Print the trials a sweep expands into, with their status in the store.
plan file="experiments/deit_vehicles_sweep.toml" *args="":
    cargo run --release -- plan {{file}} {{args}}

# Charts, attention maps and an HTML page of a trial, experiment or sweep (default: the latest).
report *args="":
    cargo run --release -- report {{args}}

# The reports over HTTP, live while trials run (http://127.0.0.1:8080/).
serve *args="":
    cargo run --release -- serve {{args}}

# The test suite (what CI runs).
test:
    cargo test

# Speed: burn-flex / burn-tch vs timm in PyTorch eager on the same threads.
bench:
    benches/run.sh

# The GPU checks and figures (benches/gpu/run.sh; on a GPU machine with target/gpu/ binaries,
# or `just bench-gpu --cpu` for the parts a CPU runs).
bench-gpu *args="":
    benches/gpu/run.sh {{args}}

# Sweep planning and scheduling: planner time, simulated-GPU and real-CPU makespans.
bench-sweep:
    cargo bench --bench sweep

# TPE against random search and Optuna's TPE (trials to a target, 50 seeds), and the time of a
# proposal with 1,000 finished trials (benches/search.sh; Optuna from PyPI in the bench venv).
bench-search:
    benches/search.sh

# A TPE sweep of the flagship against a random one, 24 trials each (about 50 minutes on 2 cores).
bench-search-flagship:
    benches/search_flagship.sh

# The 224-px JPEG input pipeline on one core against torchvision's.
bench-loader:
    cargo bench --bench loader

# `vitrun report` on a 50-trial sweep.
bench-report:
    cargo bench --bench report

# SLURM launcher: 1,000-trial submission, folding 1,000 shards, cluster vs local makespan.
bench-slurm:
    cargo bench --bench slurm

# 1,000 concurrent shard writers judging every epoch: peer shards vs rung summaries, and sync
bench-shards:
    cargo bench --bench shard_wave

# ResNet-18 teacher steps against timm's in PyTorch (same threads), and the student's step with
# the teacher against without, in three rounds with the median ratio (needs torch and timm: the
# venv `just bench` makes).
bench-distill:
    benches/resnet_rounds.sh

# The segmentation decoders (linear, conv, mask, unet) at about equal wall time, two seeds
# (benches/decoders.sh; about 25 minutes on 2 cores).
bench-decoders:
    cargo build --release
    benches/decoders.sh | tee target/bench-decoders.txt

# The mask transformer against the linear decoder on the scene experiment at about equal wall
# time (an epoch of the mask decoder costs about 1.3 of the linear's), two seeds (benches/
# decoders.sh; about 35 minutes on 2 cores).
bench-decoders-scenes:
    cargo build --release
    EXPERIMENT=experiments/vit_seg_scenes.toml RUNS="linear:36 mask:28" benches/decoders.sh | tee target/bench-decoders-scenes.txt

# The teacher cache: a 4-student distillation sweep without and with distill.cache (teacher
# forwards and wall time; needs Fashion-MNIST).
bench-teacher-cache:
    cargo build --release
    benches/teacher_cache.sh | tee target/bench-teacher-cache.txt

# A single-node SLURM cluster on this machine (as root; needs slurm-wlm and munge).
cluster action="start":
    .ci/slurm-cluster {{action}}

# Formatting, lints and the GPU feature build.
check:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings
    cargo check --features cuda --all-targets
