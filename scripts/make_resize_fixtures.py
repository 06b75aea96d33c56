"""Fixtures for `data.interpolation`: timm's eval transform (torchvision on PIL) of one image.

    python scripts/make_resize_fixtures.py

Writes tests/fixtures/resize/source.png (a seeded 131×97 RGB image: smooth gradients, edges and
noise, lossless so both sides decode the same bytes) and expected.safetensors: for each case
`<filter>_<size>_<crop_pct>`, timm's `create_transform(..., crop_pct, interpolation)` output
with mean 0 and std 1 (the 8-bit values / 255), [3, size, size]. tests/suite/augment.rs checks
vitrun's validation pipeline against them. Needs numpy, pillow, torch, timm, safetensors.
"""
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from timm.data import create_transform

OUT = Path(__file__).resolve().parent.parent / "tests/fixtures/resize"
CASES = [("bicubic", 32, 0.875), ("bicubic", 48, 1.0), ("area", 24, 0.9), ("bicubic", 56, 0.95)]


def source() -> Image.Image:
    rng = np.random.default_rng(7)
    h, w = 97, 131
    y, x = np.mgrid[0:h, 0:w]
    r = 127 + 120 * np.sin(x / 9.0) * np.cos(y / 13.0)
    g = np.where((x // 17 + y // 11) % 2 == 0, 40.0, 215.0)
    b = 255 * (x + y) / (h + w)
    img = np.stack([r, g, b], axis=-1) + rng.normal(0, 18, (h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8), "RGB")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    img = source()
    img.save(OUT / "source.png")
    tensors = {}
    for name, size, crop_pct in CASES:
        t = create_transform(
            input_size=(3, size, size),
            interpolation=name if name != "area" else "box",
            crop_pct=crop_pct,
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
        )
        tensors[f"{name}_{size}_{crop_pct}"] = t(img).contiguous().to(torch.float32)
        print(name, size, crop_pct, t)
    save_file(tensors, OUT / "expected.safetensors")


if __name__ == "__main__":
    main()
