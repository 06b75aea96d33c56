"""Reference outputs of timm's VisionTransformer, for the weight-loading and parity tests.

Writes tests/fixtures/timm/ (or OUTDIR). Needs torch, timm and safetensors (the files in the
repository were made with torch 2.9.0 and timm 1.0.31):

    python scripts/make_timm_fixtures.py [OUTDIR] [NAME ...]

For each model:
  NAME.safetensors     the state dict under timm's own key names (blocks.0.attn.qkv.weight, ...),
                       float32, or float16 for the models marked `half` (the full DeiT-tiny, so
                       the repository carries 11 MB instead of 23 MB; the reference outputs are
                       computed from the float16 weights widened back to float32)
  NAME.pth             the same tensors as DeiT releases them, torch.save({"model": state_dict})
                       (models marked `pth`)
  NAME.io.safetensors  input images and reference outputs:
      input        [2, 3, H, W] float32, already normalized
      patch_embed  [2, T, D]    tokens after patch embedding + prefix tokens + positions
      attn_last    [2, heads, T, T] softmax attention of the last block
      features     [2, D]       pooled, normed features fed to the head (pre_logits)
      logits       [2, classes] model output in eval mode
  NAME.json            the architecture (timm's create_model arguments)
Weights are random but far from timm's init (so every tensor matters), seeded per model.
"""
import json
import sys

import torch
import timm
from safetensors.torch import save_file

MODELS = {
    # A small CIFAR-like ViT with mean pooling and a 10-class head.
    "vit_tiny_p4_32_avg": dict(
        spec=dict(model_name="vit_tiny_patch16_224", img_size=32, patch_size=4, embed_dim=64,
                  depth=2, num_heads=2, num_classes=10, global_pool="avg", fc_norm=True),
        pth=True),
    # A small distilled DeiT: class and distillation tokens, two heads averaged.
    "deit_tiny_distilled_p4_32": dict(
        spec=dict(model_name="deit_tiny_distilled_patch16_224", img_size=32, patch_size=4,
                  embed_dim=64, depth=2, num_heads=2, num_classes=10)),
    # The seed's default backbone at full size with its ImageNet head: the fine-tune recipe
    # freezes 8 of its 12 blocks, so it cannot be cut down.
    "deit_tiny_patch16_224": dict(spec=dict(model_name="deit_tiny_patch16_224"), half=True),
}


def scramble(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or ".norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


def make(name, entry, out, seed):
    spec = dict(entry["spec"])
    model = timm.create_model(pretrained=False, **spec).eval()
    scramble(model, seed)
    half = entry.get("half", False)
    if half:
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.half().float())
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    stored = {k: v.half() for k, v in sd.items()} if half else sd
    save_file(stored, f"{out}/{name}.safetensors")
    if entry.get("pth", False):
        torch.save({"model": sd}, f"{out}/{name}.pth")
    H = model.patch_embed.img_size[0]
    x = torch.randn(2, 3, H, H, generator=torch.Generator().manual_seed(seed + 1))
    caught = {}
    last = model.blocks[-1]

    def grab(_m, _inp, y):
        a = last.attn
        B, N, C = y.shape
        qkv = a.qkv(y).reshape(B, N, 3, a.num_heads, C // a.num_heads).permute(2, 0, 3, 1, 4)
        q, k, _ = qkv.unbind(0)
        q, k = a.q_norm(q), a.k_norm(k)
        caught["attn_last"] = ((q * a.scale) @ k.transpose(-2, -1)).softmax(-1)

    h = last.norm1.register_forward_hook(grab)
    with torch.no_grad():
        tokens = model._pos_embed(model.patch_embed(x))
        feats = model.forward_head(model.forward_features(x), pre_logits=True)
        logits = model(x)
    h.remove()
    save_file({"input": x, "patch_embed": tokens.contiguous(),
               "attn_last": caught["attn_last"].contiguous(),
               "features": feats.contiguous(), "logits": logits.contiguous()},
              f"{out}/{name}.io.safetensors")
    arch = dict(spec, num_classes=model.num_classes, embed_dim=model.embed_dim,
                depth=len(model.blocks), num_heads=model.blocks[0].attn.num_heads, img_size=H,
                patch_size=model.patch_embed.patch_size[0], global_pool=model.global_pool,
                num_prefix_tokens=model.num_prefix_tokens,
                mlp_ratio=model.blocks[0].mlp.fc1.out_features / model.embed_dim,
                layer_norm_eps=1e-6, dtype="float16" if half else "float32",
                torch=torch.__version__, timm=timm.__version__, seed=seed)
    with open(f"{out}/{name}.json", "w") as f:
        json.dump(arch, f, indent=1)
        f.write("\n")
    print(name, "params", sum(p.numel() for p in model.parameters()),
          "logits[0,:3]", logits[0, :3].tolist())


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/timm"
    names = sys.argv[2:] or list(MODELS)
    for n in names:
        make(n, MODELS[n], out, seed=1000 + list(MODELS).index(n))
