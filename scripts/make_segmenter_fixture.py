"""Writes tests/fixtures/segmenter/mask_transformer.safetensors: a small Segmenter mask
transformer with random weights, a batch of patch tokens and the masks it gives them.

The module follows rstrudel/segmenter's `segm/model/decoder.py` (`MaskTransformer`): `proj_dec`,
the class embeddings `cls_emb` concatenated after the patches, `n_layers` pre-norm blocks
(Segmenter's `Block` is timm's, with `nn.LayerNorm`'s default eps 1e-5), `decoder_norm`, the
`proj_patch` / `proj_classes` projections, L2 normalisation, the patch·class products and
`mask_norm`, reshaped to the patch grid. The grid here is 3×4 (not square) to pin the layout.

Weights are stored under Segmenter's names (no `decoder.` prefix), with `input.patches`
`[batch, rows·columns, d_encoder]` and `output.masks` `[batch, classes, rows, columns]`.

Run: python scripts/make_segmenter_fixture.py   (needs torch, timm, safetensors)
"""

import functools
import pathlib

import torch
from safetensors.torch import save_file
from timm.models.vision_transformer import Block
from torch import nn

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "segmenter"


class MaskTransformer(nn.Module):
    def __init__(self, n_cls, d_encoder, n_layers, n_heads, d_model, d_ff):
        super().__init__()
        self.n_cls = n_cls
        self.scale = d_model**-0.5
        norm = functools.partial(nn.LayerNorm, eps=1e-5)
        self.blocks = nn.ModuleList(
            [Block(d_model, n_heads, mlp_ratio=d_ff / d_model, qkv_bias=True, norm_layer=norm) for _ in range(n_layers)]
        )
        self.cls_emb = nn.Parameter(torch.randn(1, n_cls, d_model))
        self.proj_dec = nn.Linear(d_encoder, d_model)
        self.proj_patch = nn.Parameter(self.scale * torch.randn(d_model, d_model))
        self.proj_classes = nn.Parameter(self.scale * torch.randn(d_model, d_model))
        self.decoder_norm = nn.LayerNorm(d_model)
        self.mask_norm = nn.LayerNorm(n_cls)

    def forward(self, x, grid):
        x = self.proj_dec(x)
        x = torch.cat((x, self.cls_emb.expand(x.size(0), -1, -1)), 1)
        for blk in self.blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        patches, cls_seg_feat = x[:, : -self.n_cls], x[:, -self.n_cls :]
        patches = patches @ self.proj_patch
        cls_seg_feat = cls_seg_feat @ self.proj_classes
        patches = patches / patches.norm(dim=-1, keepdim=True)
        cls_seg_feat = cls_seg_feat / cls_seg_feat.norm(dim=-1, keepdim=True)
        masks = self.mask_norm(patches @ cls_seg_feat.transpose(1, 2))
        b, _, n = masks.shape
        return masks.transpose(1, 2).reshape(b, n, grid[0], grid[1])


def main():
    torch.manual_seed(20261207)
    model = MaskTransformer(n_cls=3, d_encoder=24, n_layers=2, n_heads=2, d_model=16, d_ff=64).eval()
    with torch.no_grad():
        for p in model.parameters():  # random norms and biases too, so each one is checked
            p.add_(0.1 * torch.randn_like(p))
    patches = torch.randn(2, 12, 24)
    with torch.no_grad():
        masks = model(patches, (3, 4))
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    tensors["input.patches"] = patches
    tensors["output.masks"] = masks.contiguous()
    OUT.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(OUT / "mask_transformer.safetensors"))
    print({k: tuple(v.shape) for k, v in tensors.items()})


if __name__ == "__main__":
    main()
