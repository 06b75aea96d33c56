"""Rebuilds a detector exported by `vitrun export` in PyTorch and checks it reproduces
`vitrun predict`'s boxes.

The encoder is timm's (`timm.create_model(timm_name, num_classes=0, **model_args)`, loaded
strictly from the export's tensors outside `detr.`); the decoder is DETR's pre-norm transformer
decoder built from PyTorch's own `nn.MultiheadAttention` (loaded strictly from the `detr.`
tensors, whose names are DETR's), with the additions the JSON describes: each query's learned
reference point, 2-D sine positions, boxes as offsets from the reference. Each IMAGE must already
be the model's size (the check is of the model, not of the resize). Every query's box
(`vitrun predict --threshold 0 --out DIR` writes them all to DIR/predictions.jsonl) must match
PyTorch's: class, score and box.

Run: python scripts/check_detection_export.py EXPORT.safetensors PREDICTIONS.jsonl IMAGE...
       [--write FIXTURE.json]
     (needs torch, timm, safetensors, numpy, pillow). --write records PyTorch's boxes and a
     digest of every exported tensor, for tests/suite/parity.rs.
"""

import argparse
import hashlib
import json
import math
import pathlib

import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from torch import nn


class DecoderLayer(nn.Module):
    """DETR's TransformerDecoderLayer, `forward_pre` (normalize_before=True), no dropout, with
    the feed-forward's activation the JSON names (vitrun's: GELU, where DETR has ReLU)."""

    def __init__(self, dim, heads, ffn_dim, eps, activation):
        super().__init__()
        self.activation = {"gelu": F.gelu, "relu": F.relu}[activation]
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.norm3 = nn.LayerNorm(dim, eps=eps)

    def forward(self, tgt, memory, pos, query_pos):
        t = self.norm1(tgt)
        q = k = t + query_pos
        tgt = tgt + self.self_attn(q, k, t, need_weights=False)[0]
        t = self.norm2(tgt)
        tgt = tgt + self.multihead_attn(t + query_pos, memory + pos, memory, need_weights=False)[0]
        t = self.norm3(tgt)
        return tgt + self.linear2(self.activation(self.linear1(t)))


class Decoder(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderLayer(spec["dim"], spec["heads"], spec["ffn_dim"], spec["norm_eps"], spec["activation"])
            for _ in range(spec["layers"])
        )
        self.norm = nn.LayerNorm(spec["dim"], eps=spec["norm_eps"])


class MLP(nn.Module):
    """DETR's box MLP: linear layers with ReLU between."""

    def __init__(self, dim, out, depth):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, out if i == depth - 1 else dim) for i in range(depth))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


def sine(points, dim, temperature):
    """Codes [n, dim] of points [n, 2] (x, y in [0, 1]): y's sines, y's cosines, x's, x's."""
    per_axis = dim // 2
    half = per_axis // 2
    i = torch.arange(half, dtype=torch.float64)
    frequencies = (2 * math.pi / temperature ** (2 * i / per_axis)).float()

    def axis(column):
        angles = points[:, column : column + 1] * frequencies
        return torch.cat([angles.sin(), angles.cos()], 1)

    codes = torch.cat([axis(1), axis(0)], 1)
    return F.pad(codes, (0, dim - codes.shape[1]))


class Detr(nn.Module):
    """The export's head: queries, reference points, the decoder, the class and box heads."""

    def __init__(self, spec, classes):
        super().__init__()
        self.spec = spec
        self.query_embed = nn.Embedding(spec["queries"], spec["dim"])
        self.reference_points = nn.Embedding(spec["queries"], 2)
        self.decoder = Decoder(spec)
        self.class_embed = nn.Linear(spec["dim"], classes + 1)
        self.bbox_embed = MLP(spec["dim"], 4, 3)

    def forward(self, memory, grid):
        rows, columns = grid
        dim, temperature = self.spec["dim"], self.spec["sine_temperature"]
        centres = torch.tensor(
            [[(c + 0.5) / columns, (r + 0.5) / rows] for r in range(rows) for c in range(columns)]
        )
        pos = sine(centres, dim, temperature)[None]
        query_pos = (self.query_embed.weight + sine(self.reference_points.weight.sigmoid(), dim, temperature))[None]
        tgt = torch.zeros(memory.shape[0], self.spec["queries"], dim)
        for layer in self.decoder.layers:
            tgt = layer(tgt, memory, pos, query_pos)
        h = self.decoder.norm(tgt)
        offsets = F.pad(self.reference_points.weight, (0, 2))[None]
        return self.class_embed(h).softmax(-1), (self.bbox_embed(h) + offsets).sigmoid()


def memory_of(encoder, x):
    """The encoder's patch tokens after its final norm, and the patch grid."""
    if hasattr(encoder, "blocks"):
        tokens = encoder.forward_features(x)
        patches = encoder.fc_norm(tokens[:, encoder.num_prefix_tokens :])
        size = x.shape[-1] // encoder.patch_embed.patch_size[0]
        return patches, (size, size)
    features = encoder.forward_features(x)
    return features.flatten(2).transpose(1, 2), tuple(features.shape[-2:])


def boxes_of(probs, boxes, size):
    """vitrun predict's boxes at threshold 0: each query's best object class, best first."""
    found = []
    for p, (cx, cy, w, h) in zip(probs.tolist(), (boxes * size).tolist()):
        scores = p[:-1]
        best = max(range(len(scores)), key=scores.__getitem__)
        x0, y0 = min(max(cx - w / 2, 0), size), min(max(cy - h / 2, 0), size)
        x1, y1 = min(max(cx + w / 2, 0), size), min(max(cy + h / 2, 0), size)
        found.append({"class_index": best, "score": scores[best], "bbox": [x0, y0, x1 - x0, y1 - y0]})
    return sorted(found, key=lambda b: -b["score"])


def digest(tensor):
    data = tensor.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
    return {"shape": list(tensor.shape), "sha256": hashlib.sha256(data).hexdigest()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=pathlib.Path)
    parser.add_argument("predictions", type=pathlib.Path)
    parser.add_argument("images", nargs="+", type=pathlib.Path)
    parser.add_argument("--write", type=pathlib.Path)
    args = parser.parse_args()

    meta = json.loads(args.export.with_suffix(".json").read_text())
    tensors = load_file(str(args.export))
    prefix, spec = meta["prefix"], meta["decoder"]
    assert spec["kind"] == "detr", spec
    encoder = timm.create_model(meta["timm_name"], pretrained=False, **meta["model_args"]).eval()
    encoder.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(prefix)})
    detr = Detr(spec, len(meta["label_names"])).eval()
    detr.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})

    vitrun = {pathlib.Path(json.loads(line)["image"]).name: json.loads(line) for line in args.predictions.read_text().splitlines()}
    channels, size, _ = meta["input"]["size"]
    results, worst_score, worst_box = {}, 0.0, 0.0
    for path in args.images:
        picture = Image.open(path).convert("L" if channels == 1 else "RGB")
        assert picture.size == (size, size), f"{path}: give a {size}×{size} image"
        x = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).reshape(size, size, channels).permute(2, 0, 1)[None]
        if meta["input"]["mean"] is not None:
            x = (x - torch.tensor(meta["input"]["mean"]).view(1, -1, 1, 1)) / torch.tensor(meta["input"]["std"]).view(1, -1, 1, 1)
        with torch.no_grad():
            memory, grid = memory_of(encoder, x)
            probs, boxes = detr(memory, grid)
        ours = boxes_of(probs[0], boxes[0], size)
        theirs = vitrun[path.name]["boxes"]
        assert len(ours) == len(theirs) == spec["queries"], f"{path}: {len(ours)} boxes vs vitrun's {len(theirs)}"
        for a, b in zip(ours, theirs):
            assert meta["label_names"][a["class_index"]] == b["class"], f"{path}: {a} vs vitrun's {b}"
            worst_score = max(worst_score, abs(a["score"] - b["score"]))
            worst_box = max(worst_box, max(abs(p - q) for p, q in zip(a["bbox"], b["bbox"])))
        results[path.name] = ours
    print(f"{len(args.images)} images, {spec['queries']} queries each: PyTorch vs vitrun predict: max |score difference| {worst_score:.2e}, max |box difference| {worst_box:.2e} px")
    assert worst_score < 1e-4 and worst_box < 1e-3 * size, "the export does not reproduce vitrun's boxes"
    if args.write:
        fixture = {
            "made_by": "scripts/make_detection_export_fixture.sh",
            "torch": torch.__version__,
            "timm": timm.__version__,
            "boxes": results,
            "export": {k: digest(v) for k, v in sorted(tensors.items())},
        }
        args.write.write_text(json.dumps(fixture, indent=1) + "\n")


if __name__ == "__main__":
    main()
