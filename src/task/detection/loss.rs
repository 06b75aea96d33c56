//! DETR's set loss. Each decoder layer's predictions are matched to the ground truth on the host
//! (Hungarian, on class probability + L1 + GIoU costs); then, on the device so that gradients
//! flow: the class cross-entropy over every query (unmatched queries' target is "no object",
//! down-weighted), and the L1 and 1 − GIoU distances of matched boxes, both averaged over the
//! batch's ground-truth boxes. The layers' losses are summed (auxiliary losses) or only the
//! last layer's is used; a dense term classifies each patch token by the box it lies in.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};

use super::head::LayerOutputs;
use super::matcher::{match_queries, MatchWeights, TargetBox};

/// Keeps divisions by a degenerate box's area finite.
const AREA_EPS: f64 = 1e-7;

/// The loss's weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SetLoss {
    /// Class, L1 and GIoU weights, shared by the matching cost and the loss.
    pub weights: MatchWeights,
    /// The cross-entropy weight of queries matched to no object.
    pub no_object_weight: f64,
    /// Sum every decoder layer's loss, not only the last one's.
    pub aux_loss: bool,
    /// The weight of the patch tokens' cross-entropy against the box each lies in (0: off).
    pub patch_weight: f64,
}

/// The last layer's loss terms, unweighted, on the host.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossParts {
    pub ce: f64,
    pub l1: f64,
    pub giou: f64,
}

/// What the loss read of the last layer, for scoring on the host.
#[derive(Debug, Clone, Default)]
pub struct HostOutputs {
    /// `[batch, queries, classes + 1]` softmax probabilities, flat.
    pub probs: Vec<f32>,
    /// `[batch, queries, 4]` boxes, flat.
    pub boxes: Vec<f32>,
    pub queries: usize,
    pub parts: LossParts,
}

impl HostOutputs {
    /// The outputs of each image's first query group, of `[batch·groups, queries, …]`.
    fn first_group(self, groups: usize) -> HostOutputs {
        if groups == 1 {
            return self;
        }
        let queries = self.queries;
        let keep = |values: &[f32], width: usize| -> Vec<f32> {
            values
                .chunks(width * queries)
                .step_by(groups)
                .flatten()
                .copied()
                .collect()
        };
        let columns = self.probs.len() / (self.boxes.len() / 4);
        HostOutputs {
            probs: keep(&self.probs, columns),
            boxes: keep(&self.boxes, 4),
            ..self
        }
    }
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap_or_default()
}

/// Generalized IoU of matching rows of `a` and `b` (`[n, 4]`, `cx, cy, w, h`): `[n]`.
pub fn giou<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 1> {
    let [n, _] = a.dims();
    let corners = |t: Tensor<B, 2>| {
        let centre = t.clone().narrow(1, 0, 2);
        let half = t.narrow(1, 2, 2).div_scalar(2.0);
        (centre.clone() - half.clone(), centre + half)
    };
    let area = |lo: Tensor<B, 2>, hi: Tensor<B, 2>| {
        let size = (hi - lo).clamp_min(0.0);
        size.clone().narrow(1, 0, 1) * size.narrow(1, 1, 1)
    };
    let (a0, a1) = corners(a);
    let (b0, b1) = corners(b);
    let inter = area(
        a0.clone().max_pair(b0.clone()),
        a1.clone().min_pair(b1.clone()),
    );
    let union = area(a0.clone(), a1.clone()) + area(b0.clone(), b1.clone()) - inter.clone();
    let enclosing = area(a0.min_pair(b0), a1.max_pair(b1));
    let iou = inter / union.clone().add_scalar(AREA_EPS);
    let penalty = (enclosing.clone() - union) / enclosing.add_scalar(AREA_EPS);
    (iou - penalty).reshape([n])
}

/// Each patch's class: that of the smallest box containing the patch's centre, else "no
/// object" (`classes`); for every image of `targets`, row-major over the `[gh, gw]` grid.
pub fn patch_targets(targets: &[Vec<TargetBox>], grid: [usize; 2], classes: usize) -> Vec<i64> {
    let [gh, gw] = grid;
    let mut labels = Vec::with_capacity(targets.len() * gh * gw);
    for objects in targets {
        for i in 0..gh * gw {
            let (x, y) = (
                ((i % gw) as f64 + 0.5) / gw as f64,
                ((i / gw) as f64 + 0.5) / gh as f64,
            );
            let inside = objects.iter().filter(|o| {
                let [cx, cy, w, h] = o.center_size;
                (x - cx).abs() <= w / 2.0 && (y - cy).abs() <= h / 2.0
            });
            let smallest = inside.min_by(|a, b| {
                let area = |o: &&TargetBox| o.center_size[2] * o.center_size[3];
                area(a).total_cmp(&area(b))
            });
            labels.push(smallest.map_or(classes, |o| o.class) as i64);
        }
    }
    labels
}

/// The mean cross-entropy of patch logits `[batch, patches, classes + 1]` against
/// [`patch_targets`].
fn patch_loss<B: Backend>(
    logits: Tensor<B, 3>,
    grid: [usize; 2],
    targets: &[Vec<TargetBox>],
) -> Tensor<B, 1> {
    let [batch, patches, columns] = logits.dims();
    let n = batch * patches;
    let labels = patch_targets(targets, grid, columns - 1);
    let labels = Tensor::<B, 2, Int>::from_data(TensorData::new(labels, [n, 1]), &logits.device());
    log_softmax(logits.reshape([n, columns]), 1)
        .gather(1, labels)
        .mean()
        .neg()
}

impl SetLoss {
    /// The loss of `outputs` against each image's `targets`, and the last layer's first
    /// query group on the host. Each query group is matched to the targets on its own.
    pub fn loss<B: Backend>(
        &self,
        outputs: LayerOutputs<B>,
        targets: &[Vec<TargetBox>],
    ) -> (Tensor<B, 1>, HostOutputs) {
        let layers = outputs.logits.len();
        let groups = outputs.groups;
        let grouped: Vec<Vec<TargetBox>>;
        let per_query_set = if groups > 1 {
            grouped = targets
                .iter()
                .flat_map(|t| std::iter::repeat_n(t.clone(), groups))
                .collect();
            &grouped
        } else {
            targets
        };
        let mut total: Option<Tensor<B, 1>> = match outputs.patch_logits {
            Some(logits) if self.patch_weight > 0.0 => {
                Some(patch_loss(logits, outputs.grid, targets).mul_scalar(self.patch_weight))
            }
            _ => None,
        };
        let mut last = HostOutputs::default();
        for (i, (logits, boxes)) in outputs.logits.into_iter().zip(outputs.boxes).enumerate() {
            let is_last = i + 1 == layers;
            if !(is_last || self.aux_loss) {
                continue;
            }
            let (loss, host) = self.layer_loss(logits, boxes, per_query_set, is_last);
            total = Some(match total {
                Some(t) => t + loss,
                None => loss,
            });
            if is_last {
                last = host.first_group(groups);
            }
        }
        (total.expect("a detection model has a decoder layer"), last)
    }

    fn layer_loss<B: Backend>(
        &self,
        logits: Tensor<B, 3>,
        boxes: Tensor<B, 3>,
        targets: &[Vec<TargetBox>],
        read_parts: bool,
    ) -> (Tensor<B, 1>, HostOutputs) {
        let [batch, queries, columns] = logits.dims();
        let classes = columns - 1;
        let device = logits.device();
        let probs = host(softmax(logits.clone(), 2));
        let host_boxes = host(boxes.clone());
        let mut class_targets = vec![classes as i64; batch * queries];
        let mut weights = vec![self.no_object_weight as f32; batch * queries];
        let (mut rows, mut matched) = (Vec::new(), Vec::new());
        for (image, objects) in targets.iter().enumerate() {
            let offset = image * queries;
            let predicted: Vec<[f32; 4]> = host_boxes[offset * 4..(offset + queries) * 4]
                .chunks(4)
                .map(|b| [b[0], b[1], b[2], b[3]])
                .collect();
            let image_probs = &probs[offset * columns..(offset + queries) * columns];
            for (query, target) in
                match_queries(image_probs, columns, &predicted, objects, self.weights)
            {
                let object = &objects[target];
                class_targets[offset + query] = object.class as i64;
                weights[offset + query] = 1.0;
                rows.push((offset + query) as i64);
                matched.extend(object.center_size.map(|v| v as f32));
            }
        }
        let weight_sum: f32 = weights.iter().sum();
        let n = batch * queries;
        let class_targets =
            Tensor::<B, 2, Int>::from_data(TensorData::new(class_targets, [n, 1]), &device);
        let weights = Tensor::<B, 1>::from_data(TensorData::new(weights, [n]), &device);
        let picked = log_softmax(logits.reshape([n, columns]), 1)
            .gather(1, class_targets)
            .reshape([n]);
        let ce = (picked * weights)
            .sum()
            .neg()
            .div_scalar(f64::from(weight_sum.max(f32::MIN_POSITIVE)));
        let w = self.weights;
        let mut loss = ce.clone().mul_scalar(w.class);
        let mut parts = LossParts::default();
        if !rows.is_empty() {
            let count = rows.len();
            let num_boxes = count as f64;
            let rows = Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [count]), &device);
            let predicted = boxes.reshape([n, 4]).select(0, rows);
            let target = Tensor::<B, 2>::from_data(TensorData::new(matched, [count, 4]), &device);
            let l1 = (predicted.clone() - target.clone())
                .abs()
                .sum()
                .div_scalar(num_boxes);
            let giou_loss = giou(predicted, target)
                .neg()
                .add_scalar(1.0)
                .sum()
                .div_scalar(num_boxes);
            if read_parts {
                parts.l1 = l1.clone().into_scalar().elem();
                parts.giou = giou_loss.clone().into_scalar().elem();
            }
            loss = loss + l1.mul_scalar(w.l1) + giou_loss.mul_scalar(w.giou);
        }
        if read_parts {
            parts.ce = ce.into_scalar().elem();
        }
        (
            loss,
            HostOutputs {
                probs,
                boxes: host_boxes,
                queries,
                parts,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::boxes::Corners;
    use burn::backend::{Autodiff, Flex};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    type B = Flex;

    fn rows(values: &[[f32; 4]]) -> Tensor<B, 2> {
        let flat: Vec<f32> = values.iter().flatten().copied().collect();
        Tensor::from_data(
            TensorData::new(flat, [values.len(), 4]),
            &Default::default(),
        )
    }

    /// The tensor GIoU equals the host one on random boxes, is 1 for a box with itself, below 0
    /// for disjoint boxes and symmetric.
    #[test]
    fn tensor_giou_agrees_with_the_host_measure_and_its_properties() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let draw = |rng: &mut ChaCha8Rng| {
            [
                rng.gen_range(0.1..0.9f32),
                rng.gen_range(0.1..0.9f32),
                rng.gen_range(0.05..0.6f32),
                rng.gen_range(0.05..0.6f32),
            ]
        };
        let a: Vec<[f32; 4]> = (0..64).map(|_| draw(&mut rng)).collect();
        let b: Vec<[f32; 4]> = (0..64).map(|_| draw(&mut rng)).collect();
        let ours = host(giou(rows(&a), rows(&b)));
        let swapped = host(giou(rows(&b), rows(&a)));
        let itself = host(giou(rows(&a), rows(&a)));
        let corners = |v: [f32; 4]| {
            let [cx, cy, w, h] = v.map(f64::from);
            Corners::from_center(cx, cy, w, h)
        };
        for i in 0..a.len() {
            let expected = corners(a[i]).giou(&corners(b[i]));
            assert!((f64::from(ours[i]) - expected).abs() < 1e-5, "row {i}");
            assert!((ours[i] - swapped[i]).abs() < 1e-6, "symmetric, row {i}");
            assert!((itself[i] - 1.0).abs() < 1e-5, "identity, row {i}");
        }
        let disjoint = host(giou(
            rows(&[[0.2, 0.2, 0.1, 0.1]]),
            rows(&[[0.8, 0.8, 0.1, 0.1]]),
        ));
        assert!(disjoint[0] < 0.0);
    }

    /// A patch takes the class of the smallest box around its centre, else "no object".
    #[test]
    fn patches_take_the_smallest_box_around_their_centre() {
        let big = TargetBox {
            class: 0,
            center_size: [0.5, 0.5, 1.0, 0.5],
        };
        let small = TargetBox {
            class: 1,
            center_size: [0.125, 0.5, 0.25, 0.5],
        };
        // A 2 × 4 grid: centres at x = 1/8, 3/8, 5/8, 7/8 and y = 1/4, 3/4.
        assert_eq!(
            patch_targets(&[vec![big, small], vec![]], [2, 4], 2),
            vec![1, 0, 0, 0, 1, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2]
        );
    }

    fn outputs<B: Backend>(
        logits: Vec<f32>,
        boxes: Vec<f32>,
        queries: usize,
        columns: usize,
    ) -> LayerOutputs<B> {
        let device = Default::default();
        let batch = boxes.len() / 4 / queries;
        LayerOutputs {
            logits: vec![Tensor::from_data(
                TensorData::new(logits, [batch, queries, columns]),
                &device,
            )],
            boxes: vec![Tensor::from_data(
                TensorData::new(boxes, [batch, queries, 4]),
                &device,
            )],
            groups: 1,
            patch_logits: None,
            grid: [1, 1],
            cross_attention: None,
        }
    }

    /// Hand-computed terms: one image, two queries, one object matched to the query that
    /// predicts it; the other query's cross-entropy counts at the no-object weight.
    #[test]
    fn the_terms_equal_a_hand_computation() {
        let loss = SetLoss {
            weights: MatchWeights::default(),
            no_object_weight: 0.1,
            aux_loss: true,
            patch_weight: 1.0,
        };
        let logits = vec![2.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        let boxes = vec![0.5, 0.5, 0.2, 0.2, 0.1, 0.1, 0.1, 0.1];
        let target = TargetBox {
            class: 0,
            center_size: [0.5, 0.5, 0.4, 0.2],
        };
        let (total, host) = loss.loss(outputs::<B>(logits, boxes, 2, 3), &[vec![target]]);
        let lse0 = (2f64.exp() + 2.0).ln();
        let lse1 = (2.0 + 1f64.exp()).ln();
        let ce = ((lse0 - 2.0) + 0.1 * (lse1 - 1.0)) / 1.1;
        let l1 = 0.2;
        let giou_loss = 1.0 - 0.5;
        assert!((host.parts.ce - ce).abs() < 1e-5, "{:?}", host.parts);
        assert!((host.parts.l1 - l1).abs() < 1e-6);
        assert!((host.parts.giou - giou_loss).abs() < 1e-6);
        let expected = ce + 5.0 * l1 + 2.0 * giou_loss;
        assert!((f64::from(total.into_scalar()) - expected).abs() < 1e-5);
    }

    /// Two identical query groups give the loss of one (each group is matched on its own and
    /// the terms are means), and the host keeps the first group of each image.
    #[test]
    fn query_groups_are_matched_apart_and_the_first_is_kept() {
        let loss = SetLoss {
            weights: MatchWeights::default(),
            no_object_weight: 0.1,
            aux_loss: true,
            patch_weight: 1.0,
        };
        let target = TargetBox {
            class: 1,
            center_size: [0.3, 0.6, 0.2, 0.3],
        };
        let targets = [vec![target], vec![target, target]];
        // Two images, two queries, two classes + no object.
        let logits: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
        let boxes: Vec<f32> = (0..16).map(|i| 0.2 + 0.03 * i as f32).collect();
        let (one, single) = loss.loss(outputs::<B>(logits.clone(), boxes.clone(), 2, 3), &targets);
        // The same outputs twice per image: [image 0 group 0, image 0 group 1, image 1 …].
        let doubled = |v: &[f32], per_image: usize| -> Vec<f32> {
            v.chunks(per_image)
                .flat_map(|image| image.iter().chain(image).copied())
                .collect()
        };
        let mut grouped = outputs::<B>(doubled(&logits, 6), doubled(&boxes, 8), 2, 3);
        grouped.groups = 2;
        let (two, kept) = loss.loss(grouped, &targets);
        let (one, two) = (f64::from(one.into_scalar()), f64::from(two.into_scalar()));
        assert!((one - two).abs() < 1e-5, "{one} vs {two}");
        assert_eq!(kept.probs, single.probs);
        assert_eq!(kept.boxes, single.boxes);
    }

    /// Gradient descent on the loss alone moves a query's box onto its object and its class
    /// to the object's, while an image without objects pushes every query to "no object".
    #[test]
    fn descending_the_loss_fits_boxes_and_classes() {
        type A = Autodiff<Flex>;
        let device = Default::default();
        let loss = SetLoss {
            weights: MatchWeights::default(),
            no_object_weight: 0.1,
            aux_loss: false,
            patch_weight: 1.0,
        };
        let targets = vec![
            vec![TargetBox {
                class: 1,
                center_size: [0.3, 0.6, 0.2, 0.3],
            }],
            vec![],
        ];
        let mut logits = Tensor::<A, 3>::zeros([2, 3, 3], &device).require_grad();
        let mut raw = Tensor::<A, 3>::zeros([2, 3, 4], &device).require_grad();
        let mut first = None;
        let steps = 400;
        for k in 0..steps {
            let out = LayerOutputs {
                logits: vec![logits.clone()],
                boxes: vec![burn::tensor::activation::sigmoid(raw.clone())],
                groups: 1,
                patch_logits: None,
                grid: [1, 1],
                cross_attention: None,
            };
            let (l, _) = loss.loss(out, &targets);
            let value = f64::from(l.clone().into_scalar());
            first.get_or_insert(value);
            let grads = l.backward();
            // A decaying step: L1's gradient keeps its size at the optimum.
            let lr = 0.5 * (1.0 - k as f64 / steps as f64);
            let step = |t: Tensor<A, 3>| {
                let g = t.grad(&grads).expect("a gradient");
                Tensor::<A, 3>::from_inner(t.inner() - g.mul_scalar(lr)).require_grad()
            };
            logits = step(logits);
            raw = step(raw);
        }
        let out = LayerOutputs {
            logits: vec![logits],
            boxes: vec![burn::tensor::activation::sigmoid(raw)],
            groups: 1,
            patch_logits: None,
            grid: [1, 1],
            cross_attention: None,
        };
        let (l, host) = loss.loss(out, &targets);
        let end = f64::from(l.into_scalar());
        assert!(end < 0.1 * first.unwrap_or(0.0));
        let best = (0..3)
            .max_by(|&a, &b| host.probs[a * 3 + 1].total_cmp(&host.probs[b * 3 + 1]))
            .unwrap_or(0);
        assert!(host.probs[best * 3 + 1] > 0.8, "{:?}", host.probs);
        let fitted = &host.boxes[best * 4..best * 4 + 4];
        for (got, want) in fitted.iter().zip([0.3, 0.6, 0.2, 0.3]) {
            assert!((got - want).abs() < 0.03, "{fitted:?}");
        }
        for q in 3..6 {
            assert!(
                host.probs[q * 3 + 2] > 0.8,
                "image 2 query {q}: {:?}",
                host.probs
            );
        }
    }
}
