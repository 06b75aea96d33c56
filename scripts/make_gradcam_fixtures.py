"""Grad-CAM references from pytorch-grad-cam, for vitrun's Grad-CAM of ViTs.

For each timm fixture model of tests/fixtures/timm (weights NAME.safetensors, architecture
NAME.json, inputs NAME.io.safetensors), runs pytorch-grad-cam's `GradCAM` as its ViT tutorial
does: target layer `model.blocks[-1].norm1`, a reshape transform that drops the prefix tokens
(class, and DeiT's distillation token) and lays the patch tokens out on the grid, and
`ClassifierOutputTarget(k)` for two targets per image (the predicted class and class 3).
Writes tests/fixtures/gradcam/NAME.safetensors:

    predicted  [2, H, W]  the CAM of each image's top class (`targets=None`)
    class3     [2, H, W]  the CAM of class 3
    top        [2]        the predicted classes, as float

Run: python scripts/make_gradcam_fixtures.py   (needs torch, timm, safetensors, grad-cam)
"""

import json
import pathlib

import timm
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from safetensors.torch import load_file, save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures"
MODELS = ["vit_tiny_p4_32_avg", "deit_tiny_distilled_p4_32"]


def build(name):
    arch = json.loads((ROOT / "timm" / f"{name}.json").read_text())
    keys = ["model_name", "img_size", "patch_size", "embed_dim", "depth", "num_heads", "num_classes"]
    extra = {k: arch[k] for k in ("global_pool", "fc_norm") if k in arch}
    model = timm.create_model(pretrained=False, **{k: arch[k] for k in keys}, **extra)
    model.load_state_dict(load_file(str(ROOT / "timm" / f"{name}.safetensors")))
    return model.eval(), arch


def main():
    out = ROOT / "gradcam"
    out.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        model, arch = build(name)
        prefix = model.num_prefix_tokens
        grid = arch["img_size"] // arch["patch_size"]

        def reshape(tensor):
            result = tensor[:, prefix:, :].reshape(tensor.size(0), grid, grid, tensor.size(2))
            return result.transpose(2, 3).transpose(1, 2)

        images = load_file(str(ROOT / "timm" / f"{name}.io.safetensors"))["input"]
        with GradCAM(model=model, target_layers=[model.blocks[-1].norm1], reshape_transform=reshape) as cam:
            predicted = cam(input_tensor=images, targets=None)
            class3 = cam(input_tensor=images, targets=[ClassifierOutputTarget(3)] * images.shape[0])
        top = model(images).argmax(dim=1).float()
        save_file(
            {"predicted": torch.from_numpy(predicted).contiguous(), "class3": torch.from_numpy(class3).contiguous(), "top": top},
            str(out / f"{name}.safetensors"),
        )
        print(name, predicted.shape, top.tolist())


if __name__ == "__main__":
    main()
