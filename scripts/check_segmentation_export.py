"""Rebuilds a segmenter exported by `vitrun export` in PyTorch and checks it reproduces
`vitrun predict --probs`.

The encoder is timm's (`timm.create_model(timm_name, num_classes=0, **model_args)`, loaded
strictly from the export's non-`decode_head.` tensors); the decoder named in the JSON is rebuilt
here from its description in vitrun's README: linear (per-patch classifier, bilinear upsampling),
conv (kernel-2 stride-2 transposed convs + GELU, then the per-pixel classifier), mask
(Segmenter's MaskTransformer; with `mask_norm = "tempered"`, vitrun's default, centred scores
over the temperature, scaled and shifted by the mask norm's weight and bias, instead of the mask
norm) and unet (UNETR-style skips). IMAGE must already be the model's size (the check is of
the model, not of the resize); its probabilities are compared with PROBS.npy.

Run: python scripts/check_segmentation_export.py EXPORT.safetensors IMAGE PROBS.npy
     (needs torch, timm, safetensors, numpy, pillow)
"""

import json
import pathlib
import sys

import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file


def linear(x, w, prefix):
    return F.linear(x, w[prefix + ".weight"], w[prefix + ".bias"])


def up2(x, w, prefix):
    return F.gelu(F.conv_transpose2d(x, w[prefix + ".weight"], w[prefix + ".bias"], stride=2))


def conv3x3(x, w, prefix):
    return F.relu(F.conv2d(x, w[prefix + ".weight"], w[prefix + ".bias"], padding=1))


def classify(features, w):
    """Pixel features [1, C, H, W] → logits [1, classes, H, W] by decode_head.head."""
    return linear(features.permute(0, 2, 3, 1), w, "head").permute(0, 3, 1, 2)


def block(x, w, prefix, heads, eps):
    def ln(v, name):
        return F.layer_norm(v, v.shape[-1:], w[f"{prefix}.{name}.weight"], w[f"{prefix}.{name}.bias"], eps)

    b, n, d = x.shape
    qkv = linear(ln(x, "norm1"), w, f"{prefix}.attn.qkv").reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = (q @ k.transpose(-2, -1) * (d // heads) ** -0.5).softmax(-1)
    x = x + linear((attn @ v).transpose(1, 2).reshape(b, n, d), w, f"{prefix}.attn.proj")
    return x + linear(F.gelu(linear(ln(x, "norm2"), w, f"{prefix}.mlp.fc1")), w, f"{prefix}.mlp.fc2")


def mask_decoder(patches, w, spec, heads, classes, grid):
    eps = spec["norm_eps"]
    x = linear(patches, w, "decoder.proj_dec")
    x = torch.cat([x, w["decoder.cls_emb"].expand(x.shape[0], -1, -1)], 1)
    for i in range(spec["layers"]):
        x = block(x, w, f"decoder.blocks.{i}", heads, eps)
    x = F.layer_norm(x, x.shape[-1:], w["decoder.decoder_norm.weight"], w["decoder.decoder_norm.bias"], eps)
    n = patches.shape[1]
    p = x[:, :n] @ w["decoder.proj_patch"]
    c = x[:, n:] @ w["decoder.proj_classes"]
    masks = (p / p.norm(dim=-1, keepdim=True)) @ (c / c.norm(dim=-1, keepdim=True)).transpose(1, 2)
    if spec["mask_norm"] == "tempered":
        masks = (masks - masks.mean(-1, keepdim=True)) / spec["temperature"]
        masks = masks * w["decoder.mask_norm.weight"] + w["decoder.mask_norm.bias"]
    else:
        masks = F.layer_norm(masks, (classes,), w["decoder.mask_norm.weight"], w["decoder.mask_norm.bias"], eps)
    return masks.transpose(1, 2).reshape(1, classes, *grid)


def main():
    export, image, probs = pathlib.Path(sys.argv[1]), sys.argv[2], np.load(sys.argv[3])
    meta = json.loads(export.with_suffix(".json").read_text())
    tensors = load_file(str(export))
    prefix = meta["prefix"]
    head = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    model = timm.create_model(meta["timm_name"], pretrained=False, **meta["model_args"]).eval()
    model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(prefix)})

    channels, size, _ = meta["input"]["size"]
    picture = Image.open(image).convert("L" if channels == 1 else "RGB")
    assert picture.size == (size, size), f"give a {size}×{size} image"
    x = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).reshape(size, size, channels).permute(2, 0, 1)[None]
    if meta["input"]["mean"] is not None:
        x = (x - torch.tensor(meta["input"]["mean"]).view(1, -1, 1, 1)) / torch.tensor(meta["input"]["std"]).view(1, -1, 1, 1)

    spec = meta["decoder"]
    classes = len(meta["label_names"])
    skips = spec.get("skip_blocks", [])
    with torch.no_grad():
        tokens = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
        taps = {}
        for i, blk in enumerate(model.blocks):
            tokens = blk(tokens)
            if i + 1 in skips:
                taps[i + 1] = tokens[:, model.num_prefix_tokens:]
        patches = model.fc_norm(model.norm(tokens)[:, model.num_prefix_tokens:])
        grid = (size // model.patch_embed.patch_size[0],) * 2
        as_grid = lambda t: t.reshape(1, *grid, t.shape[-1]).permute(0, 3, 1, 2)  # noqa: E731
        resize = lambda t: t if t.shape[-2:] == (size, size) else F.interpolate(t, (size, size), mode="bilinear", align_corners=False)  # noqa: E731
        kind = spec["kind"]
        if kind == "linear":
            logits = resize(classify(as_grid(patches), head))
        elif kind == "conv":
            y = as_grid(patches)
            for s in range(spec["stages"]):
                y = up2(y, head, f"decoder.stages.{s}")
            logits = classify(resize(y), head)
        elif kind == "mask":
            logits = resize(mask_decoder(patches, head, spec, model.blocks[0].attn.num_heads, classes, grid))
        elif kind == "unet":
            y = as_grid(patches)
            for s in range(spec["stages"]):
                y = up2(y, head, f"decoder.up.{s}")
                if s < len(skips):
                    t = as_grid(taps[skips[s]])
                    for k in range(s + 1):
                        t = up2(t, head, f"decoder.skips.{s}.{k}")
                    y = conv3x3(torch.cat([y, t], 1), head, f"decoder.fuse.{s}")
            y = torch.cat([resize(y), conv3x3(x, head, "decoder.stem")], 1)
            logits = classify(conv3x3(y, head, "decoder.out"), head)
        else:
            raise SystemExit(f"unknown decoder {kind}")
        ours = logits.softmax(1)[0].numpy()
    assert ours.shape == probs.shape, f"{ours.shape} vs vitrun's {probs.shape}"
    worst = float(np.abs(ours - probs).max())
    print(f"{kind} decoder: PyTorch probabilities vs vitrun predict: max |difference| {worst:.2e}")
    assert worst < 1e-4, "the export does not reproduce vitrun's outputs"


if __name__ == "__main__":
    main()
