"""Writes tests/fixtures/rand_augment/: two fixed 8-bit images (RGB and grey), timm's
RandAugment ops applied to them with explicit arguments (PNG, lossless), and timm's
level-to-argument values at a few magnitudes: the oracle of vitrun's RandAugment.
(Pillow 10+ refuses to posterize to 0 bits, so that case is tested by hand.)

    pip install timm pillow numpy && python3 scripts/make_rand_augment_fixtures.py
"""
import json
import os

import numpy as np
import PIL
import timm
from PIL import Image
from timm.data import auto_augment as aa

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "rand_augment")
os.makedirs(OUT, exist_ok=True)
FILL = (124, 116, 104)  # timm's img_mean for the ImageNet mean


def scene(size=24):
    """A gradient background, two shapes and noise: every op has something to change."""
    rng = np.random.RandomState(0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    img = np.stack([40 + 6 * x, 60 + 5 * y, 150 - 3 * (x + y)], axis=-1)
    img[4:12, 5:15] = [220, 40, 30]
    img[(x - 16) ** 2 + (y - 15) ** 2 < 25] = [30, 200, 90]
    img += rng.normal(0, 12, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


IMAGES = {"rgb": scene(), "grey": scene().convert("L")}
FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}

# (case name, timm op, argument or None, geometric?)
CASES = [
    ("autocontrast", aa.auto_contrast, None, False),
    ("equalize", aa.equalize, None, False),
    ("invert", aa.invert, None, False),
    ("posterize_2", aa.posterize, 2, False),
    ("posterize_4", aa.posterize, 4, False),
    ("solarize_128", aa.solarize, 128, False),
    ("solarize_26", aa.solarize, 26, False),
    ("solarizeadd_99", aa.solarize_add, 99, False),
    ("color_0.3", aa.color, 0.3, False),
    ("color_1.81", aa.color, 1.81, False),
    ("contrast_0.3", aa.contrast, 0.3, False),
    ("contrast_1.81", aa.contrast, 1.81, False),
    ("brightness_0.3", aa.brightness, 0.3, False),
    ("brightness_1.81", aa.brightness, 1.81, False),
    ("sharpness_0.3", aa.sharpness, 0.3, False),
    ("sharpness_1.81", aa.sharpness, 1.81, False),
    ("rotate_27", aa.rotate, 27.0, True),
    ("rotate_-13.5", aa.rotate, -13.5, True),
    ("shearx_0.27", aa.shear_x, 0.27, True),
    ("sheary_-0.2", aa.shear_y, -0.2, True),
    ("translatex_0.3", aa.translate_x_rel, 0.3, True),
    ("translatey_-0.405", aa.translate_y_rel, -0.405, True),
]

cases = []
for image_name, image in IMAGES.items():
    image.save(os.path.join(OUT, f"{image_name}.png"))
    fill = FILL if image.mode == "RGB" else FILL[0]
    for name, fn, arg, geometric in CASES:
        args = () if arg is None else (arg,)
        for filter_name in FILTERS if geometric else [None]:
            kwargs = {"fillcolor": fill, "resample": FILTERS[filter_name]} if geometric else {}
            out = fn(image.copy(), *args, **kwargs)
            file = f"{image_name}_{name}" + (f"_{filter_name}" if filter_name else "") + ".png"
            out.save(os.path.join(OUT, file))
            cases.append({"image": image_name, "op": name.split("_")[0], "arg": arg,
                          "filter": filter_name, "file": file})

# Deterministic parts of the level-to-argument rules (absolute values; signs are random).
levels = []
for magnitude in (0.0, 4.5, 9.0, 10.0):
    for name in aa._RAND_TRANSFORMS + aa._RAND_INCREASING_TRANSFORMS:
        fn = aa.LEVEL_TO_ARG[name]
        if fn is None:
            continue
        values = {abs(fn(magnitude, {"translate_pct": 0.45})[0]) for _ in range(64)}
        if name.endswith("Increasing") and name[:-len("Increasing")] in ("Color", "Contrast", "Brightness", "Sharpness"):
            values = {round(v, 12) for v in values}
        levels.append({"op": name, "magnitude": magnitude, "values": sorted(values)})

meta = {"timm": timm.__version__, "pillow": PIL.__version__, "fill": FILL,
        "cases": cases, "levels": levels}
with open(os.path.join(OUT, "cases.json"), "w") as f:
    json.dump(meta, f, indent=1)
print("wrote", len(cases), "cases to", OUT)
