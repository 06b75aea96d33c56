"""The README's `timm.create_model` snippet, run on a `vitrun export`.

    python scripts/timm_create_model.py EXPORT.safetensors

Builds the model exactly as the README prints it (the registered name, `pretrained=True`, the
export's `pretrained_cfg` with `file=` the export, and its `model_args`), then checks that every
tensor is the export's — the classifier included, which timm re-initialises when the class
count it expects differs — and that timm's data config for the model is the preprocessing vitrun
validates with. Needs torch, timm and safetensors.
"""
import json
import sys

import timm
import torch
from safetensors.torch import load_file


def main(path: str) -> None:
    spec = json.load(open(path[: -len(".safetensors")] + ".json"))
    # The README's snippet.
    model = timm.create_model(
        spec["timm_name"],
        pretrained=True,
        pretrained_cfg_overlay=dict(spec["pretrained_cfg"], file=path),
        **spec["model_args"],
    )
    weights = load_file(path)
    state = model.state_dict()
    # BatchNorm's update counter is PyTorch's own (vitrun's export leaves it out; it loads as 0).
    expected = {k for k in state if not k.endswith("num_batches_tracked")}
    assert expected == set(weights), expected ^ set(weights)
    for name, tensor in weights.items():
        assert torch.equal(state[name], tensor), f"{name} is not the export's"
    cfg = timm.data.resolve_data_config(model=model)
    want = spec["pretrained_cfg"]
    assert list(cfg["input_size"]) == want["input_size"], cfg
    assert abs(cfg["crop_pct"] - want["crop_pct"]) < 1e-9, cfg
    assert cfg["interpolation"] == want["interpolation"], cfg
    assert list(cfg["mean"]) == want["mean"] and list(cfg["std"]) == want["std"], cfg
    print(f"{spec['timm_name']}: every tensor is the export's ({len(weights)}), data config {cfg}")


if __name__ == "__main__":
    main(sys.argv[1])
