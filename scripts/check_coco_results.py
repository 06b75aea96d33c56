"""Checks `vitrun predict --out DIR --coco ANNOTATIONS` against pycocotools: the run's
DIR/detections.json loads with `COCO.loadRes` on the annotation file, every result names an image
and a category the file lists, each image's boxes are the ones DIR/predictions.jsonl gives it, and
COCOeval scores the results (printed).

Run: python scripts/check_coco_results.py ANNOTATIONS DIR   (needs pycocotools)
"""

import json
import pathlib
import sys

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def main():
    annotations, out = sys.argv[1], pathlib.Path(sys.argv[2])
    truth = COCO(annotations)
    results = truth.loadRes(str(out / "detections.json"))
    rows = json.loads((out / "detections.json").read_text())
    images, categories = set(truth.getImgIds()), set(truth.getCatIds())
    assert all(r["image_id"] in images for r in rows), "an image id the annotation file lacks"
    assert all(r["category_id"] in categories for r in rows), "a category id it lacks"
    names = {c["id"]: c["name"] for c in truth.loadCats(truth.getCatIds())}
    for line in (out / "predictions.jsonl").read_text().splitlines():
        image = json.loads(line)
        mine = [r for r in rows if r["image_id"] == image["image_id"]]
        assert [(b["class"], b["bbox"], b["score"]) for b in image["boxes"]] == [
            (names[r["category_id"]], r["bbox"], r["score"]) for r in mine
        ], f"{image['image']}: detections.json and predictions.jsonl differ"
    print(f"{len(rows)} results on {len({r['image_id'] for r in rows})} images load with loadRes")
    evaluation = COCOeval(truth, results, "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()


if __name__ == "__main__":
    main()
