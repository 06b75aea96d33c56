"""Writes tests/fixtures/coco_map/reference.json: random ground truth and detections, and what
pycocotools' COCOeval (bbox, area "all", 100 detections) says of them.

The reference for vitrun's mAP (`vitrun::task::detection::map`): overall AP@[.5:.95], AP@.5,
AP@.75 and each category's AP and AP@.5. Category ids are not contiguous (as in real COCO), one
category has detections and no ground truth (pycocotools leaves it out of the mean), one has ground
truth and no detection (AP 0), some boxes are crowd regions (ignored), and scores tie.

Run: python scripts/make_coco_map_fixture.py   (needs numpy and pycocotools)
"""

import json
import pathlib

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "coco_map" / "reference.json"


def jitter(rng, box, amount):
    x, y, w, h = box
    dx, dy = rng.normal(0, amount * w), rng.normal(0, amount * h)
    sw, sh = np.exp(rng.normal(0, amount, size=2))
    return [float(x + dx), float(y + dy), float(w * sw), float(h * sh)]


def main():
    rng = np.random.default_rng(20261129)
    categories = [{"id": i, "name": n} for i, n in [(1, "car"), (3, "bus"), (7, "truck"), (12, "bicycle"), (40, "unseen")]]
    gt_ids = [1, 3, 7, 12]
    images, annotations, detections = [], [], []
    ann_id = 1
    for image_id in range(1, 26):
        width, height = int(rng.integers(48, 160)), int(rng.integers(48, 160))
        images.append({"id": image_id, "width": width, "height": height, "file_name": f"{image_id}.png"})
        for _ in range(int(rng.integers(0, 6))):
            w, h = float(rng.uniform(4, width / 2)), float(rng.uniform(4, height / 2))
            x, y = float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h))
            cat = int(rng.choice(gt_ids[:3]))
            crowd = int(rng.random() < 0.08)
            annotations.append({"id": ann_id, "image_id": image_id, "category_id": cat, "bbox": [x, y, w, h],
                                "area": w * h, "iscrowd": crowd})
            ann_id += 1
            for _ in range(int(rng.integers(0, 3))):
                detections.append({"image_id": image_id, "category_id": cat if rng.random() < 0.8 else int(rng.choice([1, 3, 7, 40])),
                                   "bbox": jitter(rng, [x, y, w, h], float(rng.uniform(0.01, 0.12))),
                                   "score": float(np.round(rng.uniform(0.05, 1.0), 2))})
        for _ in range(int(rng.integers(0, 3))):
            w, h = float(rng.uniform(4, width / 2)), float(rng.uniform(4, height / 2))
            detections.append({"image_id": image_id, "category_id": int(rng.choice([1, 3, 7, 40])),
                               "bbox": [float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h)), w, h],
                               "score": float(np.round(rng.uniform(0.05, 0.9), 2))})
    # Category 12 has ground truth but no detection.
    annotations.append({"id": ann_id, "image_id": 1, "category_id": 12, "bbox": [2.0, 3.0, 20.0, 10.0], "area": 200.0, "iscrowd": 0})

    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations, "categories": categories}
    gt.createIndex()
    dt = gt.loadRes([dict(d) for d in detections])
    evaluator = COCOeval(gt, dt, "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()

    precision = evaluator.eval["precision"][:, :, :, 0, 2]  # iou × recall × category, area all, 100 dets

    def mean_valid(values):
        valid = values[values > -1]
        return float(np.mean(valid)) if valid.size else -1.0

    per_category = {}
    for k, cat in enumerate(evaluator.params.catIds):
        per_category[str(cat)] = {"ap": mean_valid(precision[:, :, k]), "ap50": mean_valid(precision[0, :, k])}
    reference = {
        "images": images,
        "categories": categories,
        "annotations": annotations,
        "detections": detections,
        "map": float(evaluator.stats[0]),
        "map50": float(evaluator.stats[1]),
        "map75": float(evaluator.stats[2]),
        "per_category": per_category,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(reference, indent=1) + "\n")
    print(f"wrote {OUT}: {len(annotations)} boxes, {len(detections)} detections, mAP {reference['map']:.4f}")


if __name__ == "__main__":
    main()
