//! Segmentation metrics from a confusion matrix accumulated over the validation set, as
//! mmsegmentation reports them: per-class IoU, mean IoU over the classes that occur, pixel
//! accuracy and, for a binary task, the foreground Dice.

pub use crate::data::geometry::IGNORE_LABEL;

/// Pixel counts by (true class, predicted class).
#[derive(Debug, Clone, PartialEq)]
pub struct Confusion {
    classes: usize,
    /// Row-major `classes × classes`: `counts[truth * classes + predicted]`.
    counts: Vec<u64>,
}

impl Confusion {
    /// An empty matrix for `classes` classes.
    pub fn new(classes: usize) -> Self {
        Confusion {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    /// Adds one mask's pixels; truths equal to [`IGNORE_LABEL`] or out of range are skipped.
    pub fn add(&mut self, truth: &[u8], predicted: &[u8]) {
        assert_eq!(
            truth.len(),
            predicted.len(),
            "mask and prediction differ in size"
        );
        for (&t, &p) in truth.iter().zip(predicted) {
            let (t, p) = (usize::from(t), usize::from(p));
            if t < self.classes && p < self.classes {
                self.counts[t * self.classes + p] += 1;
            }
        }
    }

    /// Adds another matrix's counts (from another batch or worker).
    pub fn merge(&mut self, other: &Confusion) {
        assert_eq!(
            self.classes, other.classes,
            "merging matrices of other sizes"
        );
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    fn row(&self, class: usize) -> u64 {
        self.counts[class * self.classes..(class + 1) * self.classes]
            .iter()
            .sum()
    }

    fn column(&self, class: usize) -> u64 {
        (0..self.classes)
            .map(|t| self.counts[t * self.classes + class])
            .sum()
    }

    fn hits(&self, class: usize) -> u64 {
        self.counts[class * self.classes + class]
    }

    /// IoU of each class, `None` where the class is neither present nor predicted.
    pub fn iou(&self) -> Vec<Option<f64>> {
        (0..self.classes)
            .map(|c| {
                let union = self.row(c) + self.column(c) - self.hits(c);
                (union > 0).then(|| self.hits(c) as f64 / union as f64)
            })
            .collect()
    }

    /// Mean IoU over classes that are present or predicted (0 on an empty matrix).
    pub fn mean_iou(&self) -> f64 {
        let present: Vec<f64> = self.iou().into_iter().flatten().collect();
        if present.is_empty() {
            0.0
        } else {
            present.iter().sum::<f64>() / present.len() as f64
        }
    }

    /// Share of counted pixels whose class was predicted right.
    pub fn pixel_accuracy(&self) -> f64 {
        let total: u64 = self.counts.iter().sum();
        let right: u64 = (0..self.classes).map(|c| self.hits(c)).sum();
        if total == 0 {
            0.0
        } else {
            right as f64 / total as f64
        }
    }

    /// Dice of one class, `2·TP / (2·TP + FP + FN)`; `None` where it is neither present nor
    /// predicted. For a binary task the foreground Dice is `dice(1)`.
    pub fn dice(&self, class: usize) -> Option<f64> {
        let denominator = self.row(class) + self.column(class);
        (denominator > 0).then(|| 2.0 * self.hits(class) as f64 / denominator as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_made_masks_give_known_figures() {
        // 3 classes over 8 pixels; the last pixel is ignored.
        let truth = [0, 0, 0, 1, 1, 2, 2, IGNORE_LABEL];
        let predicted = [0, 0, 1, 1, 1, 2, 0, 2];
        let mut m = Confusion::new(3);
        m.add(&truth, &predicted);
        let iou = m.iou();
        // class 0: TP 2, FP 1 (pixel 6), FN 1 (pixel 2) → 2/4; class 1: TP 2, FP 1 → 2/3;
        // class 2: TP 1, FN 1 → 1/2.
        assert_eq!(iou, vec![Some(0.5), Some(2.0 / 3.0), Some(0.5)]);
        assert!((m.mean_iou() - (0.5 + 2.0 / 3.0 + 0.5) / 3.0).abs() < 1e-12);
        assert_eq!(m.pixel_accuracy(), 5.0 / 7.0);
        assert_eq!(m.dice(1), Some(4.0 / 5.0));
    }

    #[test]
    fn absent_classes_leave_the_mean_and_batches_merge() {
        let mut a = Confusion::new(3);
        a.add(&[0, 0, 1], &[0, 0, 1]);
        assert_eq!(a.iou()[2], None);
        assert_eq!(a.mean_iou(), 1.0);
        assert_eq!(a.dice(2), None);
        let mut b = Confusion::new(3);
        b.add(&[1, 1], &[0, 1]);
        a.merge(&b);
        assert_eq!(a.iou(), vec![Some(2.0 / 3.0), Some(2.0 / 3.0), None]);
        assert_eq!(a.pixel_accuracy(), 0.8);
        assert_eq!(Confusion::new(2).mean_iou(), 0.0);
    }

    #[test]
    fn binary_dice_matches_its_definition() {
        // All background right, lesion half found with one false alarm.
        let truth = [0, 0, 0, 0, 1, 1, 1, 1];
        let predicted = [0, 0, 0, 1, 1, 1, 0, 0];
        let mut m = Confusion::new(2);
        m.add(&truth, &predicted);
        // TP 2, FP 1, FN 2 → 4 / 7.
        assert_eq!(m.dice(1), Some(4.0 / 7.0));
    }
}
