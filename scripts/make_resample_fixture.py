"""Writes tests/fixtures/pos_embed_resample.safetensors: random position embeddings and timm's
own `resample_abs_pos_embed` of them (bicubic, antialiased, prefix tokens kept), the oracle of
vitrun's resampling when a checkpoint's patch grid differs from the model's.

    pip install torch timm safetensors && python3 scripts/make_resample_fixture.py
"""
import os

import timm
import torch
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed

torch.manual_seed(0)
out = {}
for prefix in (1, 2):
    src = torch.randn(1, prefix + 7 * 7, 6)
    out[f"src_p{prefix}"] = src.clone()
    for size in (4, 10, 7):
        out[f"to{size}_p{prefix}"] = resample_abs_pos_embed(
            src, new_size=(size, size), old_size=(7, 7), num_prefix_tokens=prefix
        ).clone().contiguous()
path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "pos_embed_resample.safetensors")
save_file(out, path, metadata={"timm": timm.__version__, "torch": torch.__version__})
print("wrote", path)
