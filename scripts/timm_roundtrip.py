"""Loads a `vitrun export` into timm: builds the model from the JSON beside the .safetensors and
loads the weights with strict=True, so every name and shape must be timm's; then prints the
logits of a seeded random input.

    python scripts/timm_roundtrip.py runs/export/model.safetensors

Needs torch, timm and safetensors (pip install torch timm safetensors). The test suite does not:
it checks that an export of timm's own fixture state dict reproduces it tensor for tensor, and
the parity tests check vitrun's logits against timm's for those weights.
"""
import json
import sys

import torch
from safetensors.torch import load_file
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer


def main(path: str) -> None:
    spec = json.load(open(path[: -len(".safetensors")] + ".json"))
    build = {
        "VisionTransformer": VisionTransformer,
        "VisionTransformerDistilled": VisionTransformerDistilled,
    }[spec["architecture"]]
    args = dict(spec["model_args"])
    model = build(**args).eval()
    model.load_state_dict(load_file(path), strict=True)
    torch.manual_seed(0)
    x = torch.randn(2, args["in_chans"], args["img_size"], args["img_size"])
    with torch.no_grad():
        logits = model(x)
    print("loaded strictly:", path)
    print("classes:", spec["label_names"])
    print("logits:", logits.tolist())


if __name__ == "__main__":
    main(sys.argv[1])
