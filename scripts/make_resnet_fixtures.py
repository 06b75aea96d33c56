"""Reference outputs of timm's ResNet, for the ResNet parity tests (and distillation teachers).

Writes tests/fixtures/resnet/ (or OUTDIR). Needs torch, timm and safetensors (the files in the
repository were made with torch 2.9.0 and timm 1.0.31):

    python scripts/make_resnet_fixtures.py [OUTDIR]

For each model, narrow versions of timm's resnet18 (BasicBlock) and resnet50 (Bottleneck) at
their full depths, so the repository carries kilobytes:
  NAME.safetensors     the state dict under timm's own key names (conv1.weight, bn1.running_mean,
                       layer1.0.downsample.0.weight, fc.weight, ...; num_batches_tracked kept as
                       timm saves it), float32
  NAME.pth             the same, torch.save(state_dict) as timm's checkpoints are
  NAME.io.safetensors  input images and reference outputs:
      input         [2, 3, H, W] float32
      features      [2, C]       globally pooled features (pre_logits), eval mode
      logits        [2, classes] eval mode (BatchNorm on its running statistics)
      logits_train  [2, classes] train mode (BatchNorm on the batch's statistics)
  NAME.json            the architecture
Weights and running statistics are random, seeded per model.
"""
import copy
import json
import sys

import torch
import timm
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from safetensors.torch import save_file

WIDTHS = (8, 16, 32, 64)
MODELS = {
    "resnet18_w8": dict(block=BasicBlock, layers=[2, 2, 2, 2], kind="basic"),
    "resnet50_w8": dict(block=Bottleneck, layers=[3, 4, 6, 3], kind="bottleneck"),
}
CLASSES = 5
SIZE = 64


def scramble(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif ".bn" in name or name.startswith("bn") or "downsample.1" in name:
                base = 1.0 if name.endswith("weight") else 0.0
                t.copy_(base + 0.1 * torch.randn(t.shape, generator=g))
            else:
                fan_in = t[0].numel() if t.dim() > 1 else 1
                t.copy_(torch.randn(t.shape, generator=g) * (2.0 / fan_in) ** 0.5)


def make(name, entry, out, seed):
    model = ResNet(block=entry["block"], layers=entry["layers"], channels=WIDTHS,
                   num_classes=CLASSES).eval()
    scramble(model, seed)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, f"{out}/{name}.safetensors")
    torch.save(sd, f"{out}/{name}.pth")
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        feats = model.forward_head(model.forward_features(x), pre_logits=True)
        logits = model(x)
        trained = copy.deepcopy(model).train()
        logits_train = trained(x)
    save_file({"input": x, "features": feats.contiguous(), "logits": logits.contiguous(),
               "logits_train": logits_train.contiguous()}, f"{out}/{name}.io.safetensors")
    arch = dict(block=entry["kind"], layers=entry["layers"], widths=list(WIDTHS),
                num_classes=CLASSES, img_size=SIZE, torch=torch.__version__,
                timm=timm.__version__, seed=seed)
    with open(f"{out}/{name}.json", "w") as f:
        json.dump(arch, f, indent=1)
        f.write("\n")
    print(name, "params", sum(p.numel() for p in model.parameters()),
          "logits[0,:3]", logits[0, :3].tolist())


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/resnet"
    for i, (n, e) in enumerate(MODELS.items()):
        make(n, e, out, seed=2000 + i)
