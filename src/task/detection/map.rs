//! COCO-style mean average precision, computed as pycocotools' `COCOeval` does for boxes over
//! the whole area range: IoU thresholds .50:.05:.95, 101-point interpolated precision, at most
//! 100 detections per image and class, crowd boxes ignored, per-class AP then the mean over
//! classes that have ground truth. Checked against pycocotools in the tests.

use std::collections::BTreeMap;

/// Detections kept per image and class (COCO's `maxDets` = 100).
pub const MAX_DETECTIONS: usize = 100;
const IOU_THRESHOLDS: usize = 10;
const RECALL_POINTS: usize = 101;

/// A ground-truth box, `xywh` as COCO writes it (`[x, y, width, height]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroundTruth {
    pub image: u64,
    pub class: usize,
    pub xywh: [f64; 4],
    /// A crowd region: matching it neither helps nor hurts.
    pub crowd: bool,
}

/// A predicted box with its confidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub image: u64,
    pub class: usize,
    pub xywh: [f64; 4],
    pub score: f64,
}

/// One class's average precision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassAp {
    /// AP averaged over IoU .50:.95.
    pub ap: f64,
    /// AP at IoU .50.
    pub ap50: f64,
}

/// What the evaluation measured.
#[derive(Debug, Clone, PartialEq)]
pub struct MapSummary {
    /// mAP@[.5:.95]; 0 when no class has ground truth.
    pub map: f64,
    /// mAP@.5.
    pub map50: f64,
    /// mAP@.75.
    pub map75: f64,
    /// Per class, `None` for a class without ground truth (left out of the means).
    pub per_class: Vec<Option<ClassAp>>,
}

/// numpy's `linspace(start, stop, n)`, whose exact values the thresholds are compared with.
fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    let step = (stop - start) / (n - 1) as f64;
    let mut values: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    values[n - 1] = stop;
    values
}

/// pycocotools' box IoU (`bbIou`): a crowd box's IoU is the share of the detection inside it.
fn coco_iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
    let w = (d[0] + d[2]).min(g[0] + g[2]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[1] + d[3]).min(g[1] + g[3]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let inter = w * h;
    let union = if crowd {
        d[2] * d[3]
    } else {
        d[2] * d[3] + g[2] * g[3] - inter
    };
    inter / union
}

/// One image's ground truth and detections of one class.
type ImageBoxes<'a> = (Vec<&'a GroundTruth>, Vec<&'a Detection>);

/// One image and class after matching at every IoU threshold.
struct ImageMatches {
    /// Scores of the kept detections, best first.
    scores: Vec<f64>,
    /// `[threshold][detection]`: matched to a ground truth.
    matched: Vec<Vec<bool>>,
    /// `[threshold][detection]`: matched to a crowd box (ignored).
    ignored: Vec<Vec<bool>>,
    /// Ground truths that count (not crowd).
    counted: usize,
}

fn match_image(gts: &[&GroundTruth], dets: &[&Detection], thresholds: &[f64]) -> ImageMatches {
    let mut gts = gts.to_vec();
    gts.sort_by_key(|g| g.crowd);
    let mut dets = dets.to_vec();
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    dets.truncate(MAX_DETECTIONS);
    let ious: Vec<Vec<f64>> = dets
        .iter()
        .map(|d| {
            gts.iter()
                .map(|g| coco_iou(&d.xywh, &g.xywh, g.crowd))
                .collect()
        })
        .collect();
    let mut matched = vec![vec![false; dets.len()]; thresholds.len()];
    let mut ignored = vec![vec![false; dets.len()]; thresholds.len()];
    for (t, &threshold) in thresholds.iter().enumerate() {
        let mut taken = vec![false; gts.len()];
        for (d, row) in ious.iter().enumerate() {
            let mut best = threshold.min(1.0 - 1e-10);
            let mut found: Option<usize> = None;
            for (g, gt) in gts.iter().enumerate() {
                if taken[g] && !gt.crowd {
                    continue;
                }
                if found.is_some_and(|m| !gts[m].crowd) && gt.crowd {
                    break;
                }
                if row[g] < best {
                    continue;
                }
                best = row[g];
                found = Some(g);
            }
            if let Some(g) = found {
                matched[t][d] = true;
                ignored[t][d] = gts[g].crowd;
                taken[g] = true;
            }
        }
    }
    ImageMatches {
        scores: dets.iter().map(|d| d.score).collect(),
        matched,
        ignored,
        counted: gts.iter().filter(|g| !g.crowd).count(),
    }
}

/// Interpolated precision at each recall point for one class and threshold, or `None` without
/// ground truth.
fn precision_curve(images: &[ImageMatches], t: usize) -> Option<Vec<f64>> {
    let counted: usize = images.iter().map(|m| m.counted).sum();
    if counted == 0 {
        return None;
    }
    let mut all: Vec<(f64, bool, bool)> = images
        .iter()
        .flat_map(|m| {
            (0..m.scores.len()).map(move |d| (m.scores[d], m.matched[t][d], m.ignored[t][d]))
        })
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut fp) = (0.0f64, 0.0f64);
    let mut recall = Vec::with_capacity(all.len());
    let mut precision = Vec::with_capacity(all.len());
    for &(_, is_match, is_ignored) in &all {
        if !is_ignored {
            if is_match {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
        }
        recall.push(tp / counted as f64);
        precision.push(tp / (fp + tp + f64::EPSILON));
    }
    for i in (1..precision.len()).rev() {
        if precision[i] > precision[i - 1] {
            precision[i - 1] = precision[i];
        }
    }
    let curve = linspace(0.0, 1.0, RECALL_POINTS)
        .into_iter()
        .map(|r| {
            let at = recall.partition_point(|&x| x < r);
            precision.get(at).copied().unwrap_or(0.0)
        })
        .collect();
    Some(curve)
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Evaluates `detections` against `ground_truth` for classes `0..classes`.
pub fn evaluate(
    classes: usize,
    ground_truth: &[GroundTruth],
    detections: &[Detection],
) -> MapSummary {
    let thresholds = linspace(0.5, 0.95, IOU_THRESHOLDS);
    let mut by_class: Vec<BTreeMap<u64, ImageBoxes>> = vec![BTreeMap::new(); classes];
    for g in ground_truth.iter().filter(|g| g.class < classes) {
        by_class[g.class].entry(g.image).or_default().0.push(g);
    }
    for d in detections.iter().filter(|d| d.class < classes) {
        by_class[d.class].entry(d.image).or_default().1.push(d);
    }
    // curves[class][threshold] = the 101 interpolated precisions.
    let curves: Vec<Option<Vec<Vec<f64>>>> = by_class
        .iter()
        .map(|images| {
            let matches: Vec<ImageMatches> = images
                .values()
                .map(|(gts, dets)| match_image(gts, dets, &thresholds))
                .collect();
            (0..thresholds.len())
                .map(|t| precision_curve(&matches, t))
                .collect()
        })
        .collect();
    let at =
        |t: usize| mean(curves.iter().flatten().flat_map(|c| c[t].iter().copied())).unwrap_or(0.0);
    let per_class = curves
        .iter()
        .map(|c| {
            c.as_ref().map(|c| ClassAp {
                ap: mean(c.iter().flatten().copied()).unwrap_or(0.0),
                ap50: mean(c[0].iter().copied()).unwrap_or(0.0),
            })
        })
        .collect();
    MapSummary {
        map: mean(curves.iter().flatten().flatten().flatten().copied()).unwrap_or(0.0),
        map50: at(0),
        map75: at(5),
        per_class,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gt(image: u64, class: usize, xywh: [f64; 4]) -> GroundTruth {
        GroundTruth {
            image,
            class,
            xywh,
            crowd: false,
        }
    }

    fn det(image: u64, class: usize, xywh: [f64; 4], score: f64) -> Detection {
        Detection {
            image,
            class,
            xywh,
            score,
        }
    }

    /// Precision is `tp / (tp + fp + ε)` as in pycocotools, so a perfect score is 1 − ε.
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn perfect_detections_score_one_and_none_score_zero() {
        let truth = [
            gt(1, 0, [0.0, 0.0, 10.0, 10.0]),
            gt(2, 1, [5.0, 5.0, 4.0, 8.0]),
        ];
        let perfect: Vec<Detection> = truth
            .iter()
            .map(|g| det(g.image, g.class, g.xywh, 0.9))
            .collect();
        let s = evaluate(2, &truth, &perfect);
        assert!(
            close(s.map, 1.0) && close(s.map50, 1.0) && close(s.map75, 1.0),
            "{s:?}"
        );
        let s = evaluate(2, &truth, &[]);
        assert_eq!((s.map, s.map50), (0.0, 0.0));
        assert_eq!(s.per_class, vec![Some(ClassAp { ap: 0.0, ap50: 0.0 }); 2]);
    }

    #[test]
    fn a_false_positive_ranked_first_halves_precision_at_full_recall() {
        // One object; the best-scored detection misses it, the second hits it exactly.
        let truth = [gt(1, 0, [0.0, 0.0, 10.0, 10.0])];
        let dets = [
            det(1, 0, [50.0, 50.0, 10.0, 10.0], 0.9),
            det(1, 0, [0.0, 0.0, 10.0, 10.0], 0.5),
        ];
        let s = evaluate(1, &truth, &dets);
        // Recall reaches 1 at the second detection with precision 1/2 at every recall point.
        assert!(close(s.map50, 0.5), "{}", s.map50);
        // A box with IoU 0.58 counts at .50 and .55 only: 2 of 10 thresholds.
        let half = [det(1, 0, [0.0, 0.0, 10.0, 5.8], 0.9)];
        let s = evaluate(1, &truth, &half);
        assert!(close(s.map, 0.2), "{}", s.map);
        assert!(close(s.map50, 1.0));
    }

    #[test]
    fn a_class_without_ground_truth_is_left_out_and_crowds_are_ignored() {
        let truth = [
            gt(1, 0, [0.0, 0.0, 10.0, 10.0]),
            GroundTruth {
                image: 1,
                class: 0,
                xywh: [40.0, 40.0, 30.0, 30.0],
                crowd: true,
            },
        ];
        let dets = [
            det(1, 0, [0.0, 0.0, 10.0, 10.0], 0.8),
            det(1, 0, [45.0, 45.0, 10.0, 10.0], 0.95),
            det(1, 1, [0.0, 0.0, 10.0, 10.0], 0.7),
        ];
        let s = evaluate(2, &truth, &dets);
        assert_eq!(s.per_class[1], None);
        assert!(
            close(s.map, 1.0),
            "the detection inside the crowd box is neither right nor wrong: {}",
            s.map
        );
    }

    #[derive(serde::Deserialize)]
    struct Reference {
        categories: Vec<Category>,
        annotations: Vec<Annotation>,
        detections: Vec<Det>,
        map: f64,
        map50: f64,
        map75: f64,
        per_category: BTreeMap<String, RefAp>,
    }
    #[derive(serde::Deserialize)]
    struct Category {
        id: u64,
    }
    #[derive(serde::Deserialize)]
    struct Annotation {
        image_id: u64,
        category_id: u64,
        bbox: [f64; 4],
        iscrowd: u8,
    }
    #[derive(serde::Deserialize)]
    struct Det {
        image_id: u64,
        category_id: u64,
        bbox: [f64; 4],
        score: f64,
    }
    #[derive(serde::Deserialize)]
    struct RefAp {
        ap: f64,
        ap50: f64,
    }

    /// `tests/fixtures/coco_map/reference.json` comes from `scripts/make_coco_map_fixture.py`.
    #[test]
    fn agrees_with_pycocotools() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/coco_map/reference.json"
        );
        let text = std::fs::read_to_string(path).expect("fixture present");
        let r: Reference = serde_json::from_str(&text).expect("fixture parses");
        let class_of = |id: u64| {
            r.categories
                .iter()
                .position(|c| c.id == id)
                .expect("known id")
        };
        let truth: Vec<GroundTruth> = r
            .annotations
            .iter()
            .map(|a| GroundTruth {
                image: a.image_id,
                class: class_of(a.category_id),
                xywh: a.bbox,
                crowd: a.iscrowd != 0,
            })
            .collect();
        let dets: Vec<Detection> = r
            .detections
            .iter()
            .map(|d| det(d.image_id, class_of(d.category_id), d.bbox, d.score))
            .collect();
        let s = evaluate(r.categories.len(), &truth, &dets);
        assert!((s.map - r.map).abs() < 1e-6, "mAP {} vs {}", s.map, r.map);
        assert!(
            (s.map50 - r.map50).abs() < 1e-6,
            "mAP50 {} vs {}",
            s.map50,
            r.map50
        );
        assert!(
            (s.map75 - r.map75).abs() < 1e-6,
            "mAP75 {} vs {}",
            s.map75,
            r.map75
        );
        for (k, c) in r.categories.iter().enumerate() {
            let want = &r.per_category[&c.id.to_string()];
            match s.per_class[k] {
                None => assert_eq!(want.ap, -1.0, "category {}", c.id),
                Some(got) => {
                    assert!(
                        (got.ap - want.ap).abs() < 1e-6,
                        "category {} AP {} vs {}",
                        c.id,
                        got.ap,
                        want.ap
                    );
                    assert!(
                        (got.ap50 - want.ap50).abs() < 1e-6,
                        "category {} AP50",
                        c.id
                    );
                }
            }
        }
    }
}
