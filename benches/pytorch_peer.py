"""The PyTorch peer of benches/train_step.rs: timm's VisionTransformer, same shapes, same threads.

ViT-Tiny (dim 192, depth 12, heads 3), patch 4, 32x32, batch 64, PyTorch eager on the CPU.
Prints `pytorch train img/s: X` and `pytorch infer img/s: Y` (median of 5 after one warm-up).
Run by `just bench` from a venv under target/ (never needed by the tests).
"""
import os
import statistics
import time

import timm
import torch

THREADS = int(os.environ.get("VITRUN_BENCH_THREADS", "2"))
BATCH, RUNS = 64, 5
torch.set_num_threads(THREADS)
torch.manual_seed(0)
model = timm.models.vision_transformer.VisionTransformer(
    img_size=32, patch_size=4, embed_dim=192, depth=12, num_heads=3, num_classes=10
)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
x = torch.randn(BATCH, 3, 32, 32)
y = torch.arange(BATCH) % 10
loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

train = []
model.train()
for i in range(RUNS + 1):
    t = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    opt.step()
    if i:
        train.append(BATCH / (time.perf_counter() - t))

infer = []
model.eval()
with torch.inference_mode():
    for i in range(RUNS + 1):
        t = time.perf_counter()
        model(x)
        if i:
            infer.append(BATCH / (time.perf_counter() - t))

print(f"threads: {THREADS}, torch {torch.__version__}, timm {timm.__version__}")
print(f"pytorch train img/s: {statistics.median(train):.1f}")
print(f"pytorch infer img/s: {statistics.median(infer):.1f}")
