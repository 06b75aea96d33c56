"""Reference values of DeiT's DistillationLoss, for the distillation loss tests.

Writes tests/fixtures/distill/losses.safetensors (or OUTDIR/losses.safetensors). Needs torch,
timm and safetensors (the file in the repository was made with torch 2.9.0, timm 1.0.31):

    python scripts/make_distill_fixtures.py [OUTDIR]

`DistillationLoss` below is facebookresearch/deit's losses.py (Apache-2.0) as DeiT trains with
it, the teacher's outputs given instead of the teacher; the base criteria are timm's, as DeiT's
main.py picks them: LabelSmoothingCrossEntropy(0.1) without Mixup, SoftTargetCrossEntropy with.

Tensors: cls, dist, teacher [8, 5] logits; labels [8] (float); mixed [8, 5] soft targets;
and one scalar per case, named type_alpha_tau_base (e.g. hard_0.5_1.0_smooth).
"""
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy


class DistillationLoss(torch.nn.Module):
    def __init__(self, base_criterion, distillation_type, alpha, tau):
        super().__init__()
        self.base_criterion = base_criterion
        assert distillation_type in ['none', 'soft', 'hard']
        self.distillation_type = distillation_type
        self.alpha = alpha
        self.tau = tau

    def forward(self, teacher_outputs, outputs, labels):
        outputs_kd = None
        if not isinstance(outputs, torch.Tensor):
            outputs, outputs_kd = outputs
        base_loss = self.base_criterion(outputs, labels)
        if self.distillation_type == 'none':
            return base_loss
        if self.distillation_type == 'soft':
            T = self.tau
            distillation_loss = F.kl_div(
                F.log_softmax(outputs_kd / T, dim=1),
                F.log_softmax(teacher_outputs / T, dim=1),
                reduction='sum',
                log_target=True
            ) * (T * T) / outputs_kd.numel()
        elif self.distillation_type == 'hard':
            distillation_loss = F.cross_entropy(outputs_kd, teacher_outputs.argmax(dim=1))
        return base_loss * (1 - self.alpha) + distillation_loss * self.alpha


def main(out):
    g = torch.Generator().manual_seed(27)
    n, k = 8, 5
    cls = 2.0 * torch.randn(n, k, generator=g)
    dist = 2.0 * torch.randn(n, k, generator=g)
    teacher = 3.0 * torch.randn(n, k, generator=g)
    labels = torch.randint(0, k, (n,), generator=g)
    mixed = torch.softmax(torch.randn(n, k, generator=g), dim=1)
    tensors = {"cls": cls, "dist": dist, "teacher": teacher, "labels": labels.float(),
               "mixed": mixed}
    for kind in ["hard", "soft"]:
        for alpha, tau in [(0.5, 1.0), (0.7, 3.0), (0.1, 0.5)]:
            for base in ["smooth", "mixed"]:
                if base == "smooth":
                    crit, target = LabelSmoothingCrossEntropy(0.1), labels
                else:
                    crit, target = SoftTargetCrossEntropy(), mixed
                loss = DistillationLoss(crit, kind, alpha, tau)(teacher, (cls, dist), target)
                tensors[f"{kind}_{alpha}_{tau}_{base}"] = loss.reshape(1)
    save_file({k: v.contiguous() for k, v in tensors.items()}, f"{out}/losses.safetensors")
    print({k: float(v) for k, v in tensors.items() if v.numel() == 1})


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/distill")
