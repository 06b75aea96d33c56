"""vitrun's prediction against timm's whole pipeline on one image file.

    python scripts/timm_pipeline_parity.py EXPORT.safetensors TRIAL_DIR IMAGE [VITRUN]

Builds the exported model with timm (the README's `timm.create_model` snippet), preprocesses
IMAGE with timm's eval transform from the export's pretrained_cfg (PIL decode, resize, centre
crop, normalise), and compares its class probabilities with `vitrun predict TRIAL_DIR IMAGE`:
the largest difference and whether the top-1 agrees. With the trial's `data.interpolation`
matching timm's filter the remaining difference is the JPEG decoders'. Needs torch, timm, PIL.
"""
import json
import subprocess
import sys

import timm
import torch
from PIL import Image


def main(export: str, trial: str, image: str, vitrun: str) -> None:
    spec = json.load(open(export[: -len(".safetensors")] + ".json"))
    model = timm.create_model(
        spec["timm_name"],
        pretrained=True,
        pretrained_cfg_overlay=dict(spec["pretrained_cfg"], file=export),
        **spec["model_args"],
    ).eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))
    mode = "L" if spec["model_args"]["in_chans"] == 1 else "RGB"
    with torch.no_grad():
        probs = model(transform(Image.open(image).convert(mode)).unsqueeze(0)).softmax(-1)[0]
    theirs = dict(zip(spec["label_names"], probs.tolist()))
    out = subprocess.run(
        [vitrun, "predict", trial, image, "--json", "--top-k", str(len(theirs))],
        capture_output=True, text=True, check=True,
    )
    ours = {t["class"]: t["probability"] for t in json.loads(out.stdout.splitlines()[0])["top"]}
    diff = max(abs(ours[k] - theirs[k]) for k in theirs)
    same = max(ours, key=ours.get) == max(theirs, key=theirs.get)
    print(f"max |p_vitrun - p_timm| = {diff:.2e}; same top-1: {same} ({max(theirs, key=theirs.get)})")


if __name__ == "__main__":
    main(*sys.argv[1:4], sys.argv[4] if len(sys.argv) > 4 else "vitrun")
