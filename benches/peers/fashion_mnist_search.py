"""Recipe search for experiments/vit_fashion_mnist.toml in PyTorch/timm, one config per process.

The model and schedule mirror vitrun's: an optional pooled conv stem (per stage, `convs` 3x3
convs, each [+ BatchNorm] + ReLU, then a 3x3 stride-2 max pool; then a 1x1 projection) or a
strided one, a class token, mean pooling over the patch tokens with fc_norm, AdamW with no
decay on 1-D parameters and positions, linear warmup then per-step cosine, label smoothing.
Each epoch trains on the 60,000 training images and validates on the 10,000 test images.

    python3 fashion_mnist_search.py '{"epochs": 10, "double": true, "bn": true}' NAME
    RATE=1 THREADS=2 python3 fashion_mnist_search.py '{"double": true}' NAME   # CPU img/s

Keys (defaults = the search's baseline: one conv per stage, 2 blocks, no norm): epochs, lr,
bs, dim, depth, heads, mlp, stem, kind ("pool" | "strided"), convs (convs per stage, e.g.
[1, 2]), double (= convs 2 everywhere), bn (BatchNorm after every stem conv), act ("relu" |
"gelu"), pool ("max" | "avg"), wd, ls, warmup, pad (random translation by up to this many
pixels), erase (random erasing prob), drop_path, flip, ema (ModelEmaV3 decay), tta (also
report top-1 averaged over the image and its mirror), seed. Data: $FASHION_MNIST (default
/usr/share/datasets/fashion-mnist). Runs on CUDA when there is one. RATE=1 instead times a
training step on random data and prints its images/s. fashion_mnist_search.sh runs every row
of a table (fashion_mnist_search.tsv, fashion_mnist_search_bn.tsv) at once on one GPU.
"""
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

cfg = json.loads(sys.argv[1])
name = sys.argv[2]
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_num_threads(int(os.environ.get("THREADS", 1)))
torch.manual_seed(cfg.get("seed", 1))
np.random.seed(cfg.get("seed", 1))
dev = "cuda" if torch.cuda.is_available() else "cpu"
root = os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist")


def idx(file, offset):
    return np.frombuffer(gzip.open(os.path.join(root, file)).read(), np.uint8, offset=offset)


def images(file):
    return torch.tensor(idx(file, 16).reshape(-1, 1, 28, 28)).float().div(255).to(dev)


def labels(file):
    return torch.tensor(idx(file, 8)).long().to(dev)


MEAN, STD = 0.286, 0.353
EPOCHS, LR, BS = cfg.get("epochs", 14), cfg.get("lr", 2e-3), cfg.get("bs", 128)
DIM, DEPTH, HEADS = cfg.get("dim", 96), cfg.get("depth", 2), cfg.get("heads", 3)
WD, LS, WARMUP = cfg.get("wd", 0.05), cfg.get("ls", 0.1), cfg.get("warmup", 1.0)
PAD, ERASE = cfg.get("pad", 0), cfg.get("erase", 0.0)

model = timm.models.vision_transformer.VisionTransformer(
    img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=DIM, depth=DEPTH,
    num_heads=HEADS, mlp_ratio=cfg.get("mlp", 4.0), global_pool="avg", fc_norm=True,
    class_token=True, drop_path_rate=cfg.get("drop_path", 0.0))
stem = cfg.get("stem", [32, 64])
convs = cfg.get("convs", [2 if cfg.get("double") else 1] * len(stem))
if stem:
    layers, channels = [], 1
    for out, count in zip(stem, convs):
        act = nn.GELU if cfg.get("act") == "gelu" else nn.ReLU
        stride = 1 if cfg.get("kind", "pool") == "pool" else 2
        for k in range(count):
            norm = [nn.BatchNorm2d(out)] if cfg.get("bn") else []
            layers += [nn.Conv2d(channels, out, 3, stride if k == 0 else 1, 1), *norm, act()]
            channels = out
        if stride == 1:
            layers.append(nn.AvgPool2d(3, 2, 1) if cfg.get("pool") == "avg" else nn.MaxPool2d(3, 2, 1))
    model.patch_embed.proj = nn.Sequential(*layers, nn.Conv2d(channels, DIM, 1))
model = model.to(dev)
if os.environ.get("RATE"):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(BS, 1, 28, 28, device=dev), torch.arange(BS, device=dev) % 10
    times = []
    for _ in range(6):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - start)
    print(f"RATE {name} train img/s {BS / sorted(times[1:])[2]:.1f}", flush=True)
    sys.exit(0)
xtr, ytr = images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz")
xte, yte = images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz")


def no_decay(name, p):
    return p.ndim <= 1 or "pos_embed" in name or "token" in name


params = list(model.named_parameters())
opt = torch.optim.AdamW([
    {"params": [p for n, p in params if not no_decay(n, p)], "weight_decay": WD},
    {"params": [p for n, p in params if no_decay(n, p)], "weight_decay": 0.0},
], lr=LR)
steps = len(xtr) // BS
total, warm = EPOCHS * steps, int(WARMUP * steps)


def lr_at(step):
    if step < warm:
        return LR * step / warm
    return LR * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def augment(x):
    b = x.shape[0]
    if cfg.get("flip", True):
        flip = torch.rand(b, device=dev) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if PAD:
        padded = F.pad(x, (PAD,) * 4)[:, 0]
        dy = torch.randint(0, 2 * PAD + 1, (b,), device=dev)
        dx = torch.randint(0, 2 * PAD + 1, (b,), device=dev)
        grid = torch.arange(28, device=dev)
        rows, cols = dy[:, None] + grid, dx[:, None] + grid
        x = padded[torch.arange(b, device=dev)[:, None, None], rows[:, :, None], cols[:, None, :]][:, None]
    for i in range(b) if ERASE else []:
        if np.random.rand() >= ERASE:
            continue
        for _ in range(10):
            area = 784 * np.random.uniform(0.02, 1 / 3)
            ratio = math.exp(np.random.uniform(math.log(0.3), math.log(1 / 0.3)))
            h, w = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
            if h < 28 and w < 28:
                t, l = np.random.randint(0, 29 - h), np.random.randint(0, 29 - w)
                x[i, :, t:t + h, l:l + w] = torch.randn(1, h, w, device=dev) * STD + MEAN
                break
    return x


def accuracy(net, tta=False):
    net.eval()
    right = 0
    with torch.no_grad():
        for i in range(0, len(xte), 2000):
            x = (xte[i:i + 2000] - MEAN) / STD
            logits = net(x).softmax(1)
            if tta:
                logits = logits + net(x.flip(3)).softmax(1)
            right += (logits.argmax(1) == yte[i:i + 2000]).sum().item()
    return round(100 * right / len(xte), 2)


ema = timm.utils.ModelEmaV3(model, decay=cfg["ema"]) if cfg.get("ema") else None
step, curve, ema_curve, tta_curve, start = 0, [], [], [], time.time()
for epoch in range(EPOCHS):
    model.train()
    order = torch.randperm(len(xtr), device=dev)
    right = 0
    for i in range(steps):
        batch = order[i * BS:(i + 1) * BS]
        x, y = (augment(xtr[batch].clone()) - MEAN) / STD, ytr[batch]
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        out = model(x)
        loss = F.cross_entropy(out, y, label_smoothing=LS)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if ema is not None:
            ema.update(model, step=step)
        right += (out.argmax(1) == y).sum()
    curve.append(accuracy(model))
    if cfg.get("tta"):
        tta_curve.append(accuracy(model, tta=True))
    if ema is not None:
        ema_curve.append(accuracy(ema.module))
    print(f"{name} epoch {epoch + 1} train {right.item() / (steps * BS):.4f} val {curve[-1]} "
          f"t {time.time() - start:.0f}s", flush=True)
print(f"RESULT {name} final {curve[-1]} best {max(curve)} curve {curve} ema {ema_curve} tta {tta_curve} "
      f"cfg {json.dumps(cfg)}", flush=True)
