"""timm's ResNet-18 at half its widths (experiments/resnet_fashion_mnist.toml's teacher) in
PyTorch eager: training step (AdamW, label-smoothed cross-entropy) and forward images/s on
28x28 grey, batch 128, 10 classes, median of 7 runs; the peer of benches/distill.rs's ResNet
lines. Threads: VITRUN_BENCH_THREADS (default 2)."""
import os
import time

import torch
from timm.models.resnet import BasicBlock, ResNet

THREADS = int(os.environ.get("VITRUN_BENCH_THREADS", "2"))
torch.set_num_threads(THREADS)
BATCH, RUNS = 128, 7

model = ResNet(BasicBlock, [2, 2, 2, 2], channels=(32, 64, 128, 256), in_chans=1, num_classes=10)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
x = torch.rand(BATCH, 1, 28, 28)
y = torch.arange(BATCH) % 10
loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)


def train():
    model.train()
    opt.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    opt.step()


def infer():
    model.eval()
    with torch.no_grad():
        model(x)


def rate(fn):
    fn()
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        fn()
        times.append(BATCH / (time.perf_counter() - t))
    return sorted(times)[RUNS // 2]


print(f"resnet18-w32 pytorch train img/s: {rate(train):.1f}")
print(f"resnet18-w32 pytorch infer img/s: {rate(infer):.1f}")
