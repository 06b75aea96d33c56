"""Small NIfTI volumes for vitrun's `dataset = "nifti"` tests, written with nibabel.

tests/fixtures/nifti/
  scans/images/case_a.nii.gz  int16, 6×5×4, voxel = x + 10·y + 100·z, an oblique sform
  scans/labels/case_a.nii.gz  uint8 labels on the same grid: 1 where x ≥ 3, 2 where z = 3
  scans/images/case_b.nii     big-endian float32, 6×5×4, scl_slope 2, a qform only
  scans/labels/case_b.nii     uint8 labels: 1 where y ≥ 2
  scans/images/case_c.nii.gz  int16, 6×5×4 (a third volume, for the split)
  scans/labels/case_c.nii.gz
  bad/four_d.nii              a 4-D series (4×4×4×2)
  bad/truncated.nii.gz        case_a's gzip stream cut in half
  bad/not_nifti.nii           text
  mismatch/images/x.nii.gz    6×5×4, and mismatch/labels/x.nii.gz 6×5×3
  expected.json               nibabel's affine and a few voxels of case_a and case_b

Run: python scripts/make_nifti_fixtures.py   (needs nibabel, numpy)
"""

import json
import pathlib

import nibabel as nib
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "nifti"


def grid(shape):
    x, y, z = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return x, y, z


def save(img, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))


def main():
    shape = (6, 5, 4)
    x, y, z = grid(shape)
    oblique = np.array([[0.9, -0.2, 0.0, -10.0], [0.2, 0.9, 0.1, 5.5], [0.0, -0.1, 2.5, 30.0], [0, 0, 0, 1]])
    a = nib.Nifti1Image((x + 10 * y + 100 * z).astype(np.int16), oblique)
    a.set_sform(oblique, code=1)
    save(a, ROOT / "scans/images/case_a.nii.gz")
    labels_a = np.where(x >= 3, 1, 0).astype(np.uint8)
    labels_a[z == 3] = 2
    save(nib.Nifti1Image(labels_a, oblique), ROOT / "scans/labels/case_a.nii.gz")

    qform = np.diag([1.5, 1.5, 3.0, 1.0])
    qform[:3, 3] = [1.0, 2.0, 3.0]
    values = (x * 0.5 - y + z * 0.25).astype(">f4")
    b = nib.Nifti1Image(values, None, header=nib.Nifti1Header())
    b.header.set_data_dtype(">f4")
    b.set_qform(qform, code=1)
    b.set_sform(None, code=0)
    b.header["scl_slope"] = 2.0
    b.header["scl_inter"] = 1.0
    save(b, ROOT / "scans/images/case_b.nii")
    save(nib.Nifti1Image(np.where(y >= 2, 1, 0).astype(np.uint8), qform), ROOT / "scans/labels/case_b.nii")

    c = nib.Nifti1Image((50 * np.sin(x + y) + z).astype(np.int16), np.eye(4))
    save(c, ROOT / "scans/images/case_c.nii.gz")
    save(nib.Nifti1Image(np.where(x + y > 5, 1, 0).astype(np.uint8), np.eye(4)), ROOT / "scans/labels/case_c.nii.gz")

    save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.int16), np.eye(4)), ROOT / "bad/four_d.nii")
    packed = (ROOT / "scans/images/case_a.nii.gz").read_bytes()
    (ROOT / "bad/truncated.nii.gz").write_bytes(packed[: len(packed) // 2])
    (ROOT / "bad/not_nifti.nii").write_text("not a volume\n" * 40)
    save(nib.Nifti1Image(np.zeros(shape, np.int16), np.eye(4)), ROOT / "mismatch/images/x.nii.gz")
    save(nib.Nifti1Image(np.zeros((6, 5, 3), np.uint8), np.eye(4)), ROOT / "mismatch/labels/x.nii.gz")

    loaded_b = nib.load(str(ROOT / "scans/images/case_b.nii"))
    expected = {
        "case_a": {"affine": nib.load(str(ROOT / "scans/images/case_a.nii.gz")).affine[:3].tolist(),
                   "voxels": [[[1, 2, 3], float(a.get_fdata()[1, 2, 3])], [[5, 0, 1], float(a.get_fdata()[5, 0, 1])]]},
        "case_b": {"affine": loaded_b.affine[:3].tolist(),
                   "voxels": [[[4, 1, 2], float(loaded_b.get_fdata()[4, 1, 2])], [[0, 4, 3], float(loaded_b.get_fdata()[0, 4, 3])]]},
    }
    (ROOT / "expected.json").write_text(json.dumps(expected, indent=1))
    print(json.dumps(expected))


if __name__ == "__main__":
    main()
