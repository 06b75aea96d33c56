#!/usr/bin/env bash
# `just build-gpu [tch|cuda]`: target/release/vitrun with a GPU backend.
#   tch  (default) burn-tch on LibTorch, found from the torch that $PYTHON (default: python3)
#        imports: a CUDA build of torch (pip install torch) makes a CUDA vitrun. At run time
#        the same torch's lib/ must be on LD_LIBRARY_PATH; the script prints the line.
#   cuda burn's own CUDA backend (cubecl): needs the CUDA toolkit (nvcc, libcudart) at run time.
# STRIP=1 strips the binary (to carry it to another machine). The binary says what it has:
# `vitrun --version`, and `vitrun doctor` checks the driver and the GPUs.
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-tch}"
case "$backend" in
  tch)
    python="${PYTHON:-python3}"
    if ! torch_dir=$("$python" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null); then
      echo "build-gpu: $python cannot import torch; pip install torch (a CUDA build) in a venv and run PYTHON=/path/to/venv/bin/python just build-gpu" >&2
      exit 1
    fi
    cuda=$("$python" -c 'import torch; print(torch.version.cuda or "none")')
    echo "build-gpu: LibTorch from $torch_dir (torch $("$python" -c 'import torch; print(torch.__version__)'), CUDA $cuda)"
    # torch-sys asks `python` for LibTorch when VIRTUAL_ENV is set: make it this one.
    export VIRTUAL_ENV="$(dirname "$(dirname "$python")")" PATH="$(dirname "$python"):$PATH"
    export LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1
    export LD_LIBRARY_PATH="$torch_dir/lib:${LD_LIBRARY_PATH:-}"
    cargo build --release --features tch
    run_env="export LD_LIBRARY_PATH=$torch_dir/lib:\$LD_LIBRARY_PATH"
    ;;
  cuda)
    cargo build --release --features cuda
    run_env="(the CUDA toolkit's libraries on the library path)"
    ;;
  *)
    echo "build-gpu: unknown backend '$backend'; use tch or cuda, e.g. just build-gpu tch" >&2
    exit 2
    ;;
esac
if [ "${STRIP:-0}" = 1 ]; then
  strip target/release/vitrun
fi
echo "build-gpu: target/release/vitrun ($(target/release/vitrun --version 2>/dev/null || echo 'run it with the line below'))"
echo "build-gpu: before running it: $run_env"
