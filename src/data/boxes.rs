//! Axis-aligned boxes and the overlap measures detection uses: IoU for matching and mAP,
//! generalized IoU for the matching cost and the loss.

/// A box by its corners, `x0 ≤ x1` and `y0 ≤ y1` for a proper box (in pixels or in [0, 1]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Corners {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

impl Corners {
    /// From a centre and a size, the form DETR's box head predicts.
    pub fn from_center(cx: f64, cy: f64, w: f64, h: f64) -> Self {
        Corners {
            x0: cx - w / 2.0,
            y0: cy - h / 2.0,
            x1: cx + w / 2.0,
            y1: cy + h / 2.0,
        }
    }

    /// From COCO's `[x, y, width, height]`.
    pub fn from_coco(x: f64, y: f64, w: f64, h: f64) -> Self {
        Corners {
            x0: x,
            y0: y,
            x1: x + w,
            y1: y + h,
        }
    }

    /// `[cx, cy, w, h]`.
    pub fn center_size(&self) -> [f64; 4] {
        [
            (self.x0 + self.x1) / 2.0,
            (self.y0 + self.y1) / 2.0,
            self.x1 - self.x0,
            self.y1 - self.y0,
        ]
    }

    /// Width, or 0 for an inverted box.
    pub fn width(&self) -> f64 {
        (self.x1 - self.x0).max(0.0)
    }

    /// Height, or 0 for an inverted box.
    pub fn height(&self) -> f64 {
        (self.y1 - self.y0).max(0.0)
    }

    /// Area, 0 for an empty or inverted box.
    pub fn area(&self) -> f64 {
        self.width() * self.height()
    }

    /// Area shared with `other`.
    pub fn intersection(&self, other: &Corners) -> f64 {
        let w = self.x1.min(other.x1) - self.x0.max(other.x0);
        let h = self.y1.min(other.y1) - self.y0.max(other.y0);
        w.max(0.0) * h.max(0.0)
    }

    /// Intersection over union; 0 when both boxes are empty.
    pub fn iou(&self, other: &Corners) -> f64 {
        let inter = self.intersection(other);
        let union = self.area() + other.area() - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    }

    /// Generalized IoU (Rezatofighi et al. 2019): IoU minus the share of the smallest enclosing
    /// box that neither covers. In [-1, 1]; 1 only for identical boxes, below 0 once disjoint.
    pub fn giou(&self, other: &Corners) -> f64 {
        let inter = self.intersection(other);
        let union = self.area() + other.area() - inter;
        let iou = if union > 0.0 { inter / union } else { 0.0 };
        let hull = (self.x1.max(other.x1) - self.x0.min(other.x0)).max(0.0)
            * (self.y1.max(other.y1) - self.y0.min(other.y0)).max(0.0);
        if hull > 0.0 {
            iou - (hull - union) / hull
        } else {
            iou
        }
    }

    /// The box clipped to `[0, width] × [0, height]`.
    pub fn clipped(&self, width: f64, height: f64) -> Corners {
        Corners {
            x0: self.x0.clamp(0.0, width),
            y0: self.y0.clamp(0.0, height),
            x1: self.x1.clamp(0.0, width),
            y1: self.y1.clamp(0.0, height),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn boxes() -> impl Strategy<Value = Corners> {
        (0.0..100.0f64, 0.0..100.0f64, 0.5..60.0f64, 0.5..60.0f64)
            .prop_map(|(x, y, w, h)| Corners::from_coco(x, y, w, h))
    }

    #[test]
    fn iou_and_giou_of_known_pairs() {
        let a = Corners::from_coco(0.0, 0.0, 2.0, 2.0);
        let b = Corners::from_coco(1.0, 0.0, 2.0, 2.0);
        assert!((a.iou(&b) - 2.0 / 6.0).abs() < 1e-12);
        assert!(
            (a.giou(&b) - 2.0 / 6.0).abs() < 1e-12,
            "hull 3×2 = union, no penalty"
        );
        let far = Corners::from_coco(4.0, 0.0, 2.0, 2.0);
        assert_eq!(a.iou(&far), 0.0);
        assert!((a.giou(&far) - (0.0 - (12.0 - 8.0) / 12.0)).abs() < 1e-12);
        let c = Corners::from_center(1.0, 1.0, 2.0, 2.0);
        assert_eq!(c, a);
        assert_eq!(c.center_size(), [1.0, 1.0, 2.0, 2.0]);
    }

    proptest! {
        #[test]
        fn giou_is_one_on_identity_symmetric_and_bounded(a in boxes(), b in boxes()) {
            prop_assert!((a.giou(&a) - 1.0).abs() < 1e-12);
            prop_assert!((a.iou(&a) - 1.0).abs() < 1e-12);
            prop_assert!((a.giou(&b) - b.giou(&a)).abs() < 1e-12);
            prop_assert!((a.iou(&b) - b.iou(&a)).abs() < 1e-12);
            let g = a.giou(&b);
            prop_assert!((-1.0..=1.0).contains(&g));
            prop_assert!(g <= a.iou(&b) + 1e-12);
            if a.intersection(&b) == 0.0 && (a.x1 < b.x0 || b.x1 < a.x0 || a.y1 < b.y0 || b.y1 < a.y0) {
                prop_assert!(g < 0.0, "disjoint boxes have negative GIoU: {a:?} {b:?} → {g}");
            }
        }
    }
}
