"""timm's DeiT-Tiny (deit_tiny_patch16_224, 5 classes) in PyTorch, the peer of vitrun's probe in
benches/gpu/run.sh: training steps (AdamW, cross-entropy) and inference passes on one fixed
batch of random 224-px images, in f32 and under bf16 autocast (f32 weights and optimizer state,
as timm's train.py --amp --amp-dtype bfloat16), timed after warm-up steps with the device
synchronised. On CUDA also the peak memory (torch.cuda.max_memory_allocated, MiB). Prints one
"name<TAB>value" line per figure.

    python3 benches/gpu/timm_peer.py --mode gpu --batches 128 256 --steps 30 --warmup 10
    python3 benches/gpu/timm_peer.py --mode cpu --batches 8 --steps 2 --warmup 1
"""
import argparse
import contextlib
import time

import timm
import torch


def measure(device, batch, precision, steps, warmup):
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_patch16_224", num_classes=5).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    images = torch.randn(batch, 3, 224, 224, device=device)
    labels = torch.randint(0, 5, (batch,), device=device)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if precision == "bf16"
        else contextlib.nullcontext()
    )
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def train_step():
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    for _ in range(warmup):
        train_step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        train_step()
    sync()
    train = steps * batch / (time.perf_counter() - start)
    model.eval()
    with torch.no_grad():
        for _ in range(warmup):
            with autocast:
                model(images)
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            with autocast:
                model(images)
        sync()
    infer = steps * batch / (time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    return train, infer, peak


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    device = torch.device("cuda" if args.mode == "gpu" else "cpu")
    for batch in args.batches:
        for precision in ["f32", "bf16"]:
            train, infer, peak = measure(device, batch, precision, args.steps, args.warmup)
            name = f"timm bs{batch} {precision}"
            print(f"{name} train img/s\t{train:.1f}", flush=True)
            print(f"{name} infer img/s\t{infer:.1f}", flush=True)
            print(f"{name} peak MiB\t{peak:.0f}", flush=True)


if __name__ == "__main__":
    main()
