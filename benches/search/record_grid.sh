#!/usr/bin/env bash
# Records the grid behind `just bench-search`'s tabular objective: runs the 135-trial sweep of
# benches/search/fmnist_grid.toml (Fashion-MNIST: apt-get install dataset-fashion-mnist; about
# 12 minutes on 2 cores) into a store of its own and writes benches/search/fmnist_grid.csv.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${1:-target/search-grid-runs}"
cargo build --release
target/release/vitrun sweep benches/search/fmnist_grid.toml --runs-dir "$runs"
python3 benches/search/export_grid.py "$runs/vitrun.sqlite"
