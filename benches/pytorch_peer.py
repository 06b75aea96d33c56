"""The PyTorch peer of benches/train_step.rs: timm's VisionTransformer, same shapes, same threads.

ViT-Tiny (dim 192, depth 12, heads 3), patch 4, 32x32, batch 64, PyTorch eager on the CPU.
Prints `pytorch train img/s: X` and `pytorch infer img/s: Y` (median of 5 after one warm-up).
Then two Fashion-MNIST models (pooled conv stem [32, 64], mean pooling, dim 96, 28x28 grey, batch
128): one conv per stage into 2 blocks (`conv-stem pytorch train img/s`, `... infer img/s`), and
the committed recipe's two conv + BatchNorm + ReLU per stage into 1 block (`bn-stem pytorch ...`).
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
x = torch.randn(BATCH, 3, 32, 32)
y = torch.arange(BATCH) % 10
loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)



def rates(model, x, y):
    """Median training-step and forward images/s of `model` on the batch `x`, `y`."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    train = []
    model.train()
    for i in range(RUNS + 1):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
        if i:
            train.append(len(x) / (time.perf_counter() - t))
    infer = []
    model.eval()
    with torch.inference_mode():
        for i in range(RUNS + 1):
            t = time.perf_counter()
            model(x)
            if i:
                infer.append(len(x) / (time.perf_counter() - t))
    return statistics.median(train), statistics.median(infer)


def conv_stem_model(convs=1, norm=False, depth=2):
    """A Fashion-MNIST model: two stages of `convs` 3x3 conv [+ BatchNorm] + ReLU and a 3x3/2 max pool."""
    vit = timm.models.vision_transformer.VisionTransformer(
        img_size=28, patch_size=4, in_chans=1, embed_dim=96, depth=depth, num_heads=3,
        num_classes=10, global_pool="avg", fc_norm=True)
    layers, channels = [], 1
    for out in (32, 64):
        for _ in range(convs):
            layers.append(torch.nn.Conv2d(channels, out, 3, 1, 1))
            layers += [torch.nn.BatchNorm2d(out)] if norm else []
            layers.append(torch.nn.ReLU())
            channels = out
        layers.append(torch.nn.MaxPool2d(3, 2, 1))
    vit.patch_embed.proj = torch.nn.Sequential(*layers, torch.nn.Conv2d(channels, 96, 1))
    return vit


print(f"threads: {THREADS}, torch {torch.__version__}, timm {timm.__version__}")
train, infer = rates(model, x, y)
print(f"pytorch train img/s: {train:.1f}")
print(f"pytorch infer img/s: {infer:.1f}")
train, infer = rates(conv_stem_model(), torch.randn(128, 1, 28, 28), torch.arange(128) % 10)
print(f"conv-stem pytorch train img/s: {train:.1f}")
print(f"conv-stem pytorch infer img/s: {infer:.1f}")
stem_batch = (torch.randn(128, 1, 28, 28), torch.arange(128) % 10)
train, infer = rates(conv_stem_model(convs=2, norm=True, depth=1), *stem_batch)
print(f"bn-stem pytorch train img/s: {train:.1f}")
print(f"bn-stem pytorch infer img/s: {infer:.1f}")
