"""Round trip of `vitrun export` through timm.

    python scripts/timm_roundtrip.py EXPORT.safetensors [FIXTURE.safetensors]

Builds timm's model from the JSON beside the export, loads the weights with strict=True (every
name and shape must be timm's), and runs a seeded random input. With FIXTURE it also writes the
export's tensors, the input and timm's logits into one file: tests/suite/finetune.rs reads
tests/fixtures/export_roundtrip_*.safetensors and checks that vitrun computes the same logits
from the same weights (within 1e-4), so CI needs no torch. Needs torch, timm and safetensors.
"""
import json
import sys

import torch
from safetensors.torch import load_file, save_file
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer


def main(path: str, fixture: str | None) -> None:
    spec = json.load(open(path[: -len(".safetensors")] + ".json"))
    build = {
        "VisionTransformer": VisionTransformer,
        "VisionTransformerDistilled": VisionTransformerDistilled,
    }[spec["architecture"]]
    args = dict(spec["model_args"])
    model = build(**args).eval()
    weights = load_file(path)
    model.load_state_dict(weights, strict=True)
    torch.manual_seed(0)
    x = torch.randn(3, args["in_chans"], args["img_size"], args["img_size"])
    with torch.no_grad():
        logits = model(x)
    print("loaded strictly:", path, "classes:", spec["label_names"])
    print("logits:", logits.tolist())
    if fixture:
        tensors = {f"weights.{k}": v.contiguous() for k, v in weights.items()}
        tensors["input"] = x
        tensors["timm_logits"] = logits
        save_file(tensors, fixture, metadata={"args": json.dumps(spec)})
        print("wrote", fixture)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
