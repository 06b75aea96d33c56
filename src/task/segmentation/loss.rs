//! The segmentation loss: per-pixel cross-entropy that skips ignored pixels, optionally
//! weighted per class (as `F.cross_entropy(weight=…, ignore_index=255)`: a weighted mean), plus
//! an optional soft Dice term (mmseg's `DiceLoss`, averaged over classes).

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::data::geometry::IGNORE_LABEL;

/// Smoothing of the Dice ratio, so that a class absent from both prediction and target
/// scores 1.
const DICE_SMOOTH: f64 = 1.0;

/// How the loss is put together.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelLoss {
    /// A weight per class (empty = all 1).
    pub class_weights: Vec<f64>,
    /// Weight of the Dice term (0 = cross-entropy only).
    pub dice_weight: f64,
}

/// Logits `[batch, classes, height, width]` as one row of class logits per pixel, `[batch ·
/// height · width, classes]`, in the masks' pixel order. The loss and the predictions work on
/// rows, so every softmax and sum runs along contiguous memory.
pub fn pixel_rows<B: Backend>(logits: Tensor<B, 4>) -> Tensor<B, 2> {
    let [b, classes, h, w] = logits.dims();
    logits.permute([0, 2, 3, 1]).reshape([b * h * w, classes])
}

impl PixelLoss {
    /// The loss of per-pixel logits `rows` (`[pixels, classes]`, see [`pixel_rows`]) against
    /// `masks` (one class id per pixel, [`IGNORE_LABEL`] where nothing counts). A batch whose
    /// every pixel is ignored gives 0 (and no gradient).
    pub fn loss<B: Backend>(&self, rows: Tensor<B, 2>, masks: &[u8]) -> Tensor<B, 1> {
        let dims = rows.dims();
        let [pixels, classes] = dims;
        assert_eq!(masks.len(), pixels, "one mask label per pixel");
        let weight = |c: usize| self.class_weights.get(c).copied().unwrap_or(1.0) as f32;
        let counted = |i: usize| {
            let label = masks[i];
            (label != IGNORE_LABEL && usize::from(label) < classes).then_some(usize::from(label))
        };
        let mut weighted = vec![0f32; pixels * classes];
        let mut total = 0f64;
        for i in 0..pixels {
            if let Some(c) = counted(i) {
                weighted[i * classes + c] = weight(c);
                total += f64::from(weight(c));
            }
        }
        let device = rows.device();
        if total == 0.0 {
            return rows.sum().mul_scalar(0.0);
        }
        let host =
            |values: Vec<f32>| Tensor::<B, 2>::from_data(TensorData::new(values, dims), &device);
        let cross_entropy = (host(weighted) * log_softmax(rows.clone(), 1))
            .sum()
            .div_scalar(total)
            .neg();
        if self.dice_weight == 0.0 {
            return cross_entropy;
        }
        // The Dice term's one-hot targets and counted-pixel mask, built only when it is on.
        let mut onehot = vec![0f32; pixels * classes];
        let mut valid = vec![0f32; pixels * classes];
        for i in 0..pixels {
            if let Some(c) = counted(i) {
                onehot[i * classes + c] = 1.0;
                valid[i * classes..(i + 1) * classes].fill(1.0);
            }
        }
        let target = host(onehot);
        let probs = softmax(rows, 1) * host(valid);
        // Column sums as one matrix product: ones[1, pixels] · x[pixels, classes].
        let ones = Tensor::<B, 2>::ones([1, pixels], &device);
        let per_class = |t: Tensor<B, 2>| ones.clone().matmul(t).reshape([classes]);
        let overlap = per_class(probs.clone() * target.clone());
        let sizes = per_class(probs) + per_class(target);
        let dice = overlap
            .mul_scalar(2.0)
            .add_scalar(DICE_SMOOTH)
            .div(sizes.add_scalar(DICE_SMOOTH));
        let dice_loss = dice.mean().neg().add_scalar(1.0);
        cross_entropy + dice_loss.mul_scalar(self.dice_weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::classification::loss::cross_entropy;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::Distribution;

    type B = Flex;

    fn scalar(t: Tensor<B, 1>) -> f32 {
        t.into_data().to_vec::<f32>().unwrap()[0]
    }

    #[test]
    fn one_pixel_images_give_the_classification_loss() {
        let device = Default::default();
        let logits = Tensor::<B, 2>::random([6, 4], Distribution::Normal(0.0, 2.0), &device);
        let labels = [0i64, 3, 1, 1, 2, 0];
        let masks: Vec<u8> = labels.iter().map(|&l| l as u8).collect();
        let plain = PixelLoss {
            class_weights: vec![],
            dice_weight: 0.0,
        };
        let a = scalar(plain.loss(pixel_rows(logits.clone().reshape([6, 4, 1, 1])), &masks));
        let b = scalar(cross_entropy(logits, &labels, 0.0));
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }

    #[test]
    fn ignored_pixels_do_not_count_and_weights_take_a_weighted_mean() {
        let device = Default::default();
        let logits = Tensor::<B, 4>::random([1, 3, 2, 2], Distribution::Normal(0.0, 1.0), &device);
        let loss = PixelLoss {
            class_weights: vec![1.0, 2.0, 1.0],
            dice_weight: 0.0,
        };
        let masks = [0u8, 1, IGNORE_LABEL, 2];
        let base = scalar(loss.loss(pixel_rows(logits.clone()), &masks));
        // Changing the ignored pixel's logits changes nothing.
        let mut values = logits.clone().into_data().to_vec::<f32>().unwrap();
        for c in 0..3 {
            values[c * 4 + 2] += 5.0 * (c as f32 + 1.0);
        }
        let moved =
            Tensor::<B, 4>::from_data(TensorData::new(values.clone(), [1, 3, 2, 2]), &device);
        assert!((scalar(loss.loss(pixel_rows(moved), &masks)) - base).abs() < 1e-6);
        // The weighted mean by hand: -(1·lp0 + 2·lp1 + 1·lp2) / 4.
        let logp = |pixel: usize, class: usize| {
            let z: Vec<f32> = (0..3).map(|c| values[c * 4 + pixel]).collect();
            let m = z.iter().cloned().fold(f32::MIN, f32::max);
            z[class] - m - z.iter().map(|v| (v - m).exp()).sum::<f32>().ln()
        };
        let want = -(logp(0, 0) + 2.0 * logp(1, 1) + logp(3, 2)) / 4.0;
        assert!((base - want).abs() < 1e-5, "{base} vs {want}");
        let none = loss.loss(pixel_rows(logits), &[IGNORE_LABEL; 4]);
        assert_eq!(scalar(none), 0.0);
    }

    #[test]
    fn dice_rewards_overlap_and_gradients_flow() {
        let device = Default::default();
        let masks = [0u8, 0, 1, 1];
        let good = Tensor::<B, 4>::from_data(
            TensorData::new(
                vec![9.0f32, 9.0, -9.0, -9.0, -9.0, -9.0, 9.0, 9.0],
                [1, 2, 2, 2],
            ),
            &device,
        );
        let dice_only = PixelLoss {
            class_weights: vec![],
            dice_weight: 1.0,
        };
        let plain = PixelLoss {
            class_weights: vec![],
            dice_weight: 0.0,
        };
        let good = pixel_rows(good);
        let perfect =
            scalar(dice_only.loss(good.clone(), &masks)) - scalar(plain.loss(good.clone(), &masks));
        assert!(
            perfect.abs() < 1e-3,
            "perfect prediction, Dice term {perfect}"
        );
        let wrong = scalar(dice_only.loss(good.clone().neg(), &masks))
            - scalar(plain.loss(good.neg(), &masks));
        assert!(wrong > 0.6, "inverted prediction, Dice term {wrong}");

        let x =
            Tensor::<Autodiff<B>, 4>::random([2, 3, 4, 4], Distribution::Normal(0.0, 1.0), &device)
                .require_grad();
        let masks: Vec<u8> = (0..32)
            .map(|i| (i % 4) as u8)
            .map(|l| if l == 3 { IGNORE_LABEL } else { l })
            .collect();
        let grads = dice_only.loss(pixel_rows(x.clone()), &masks).backward();
        let g = x
            .grad(&grads)
            .expect("a gradient")
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert!(g.iter().all(|v| v.is_finite()) && g.iter().any(|&v| v != 0.0));
        // Ignored pixels (every fourth) get no gradient.
        for image in 0..2 {
            for c in 0..3 {
                for p in (3..16).step_by(4) {
                    assert_eq!(g[(image * 3 + c) * 16 + p], 0.0);
                }
            }
        }
    }
}
