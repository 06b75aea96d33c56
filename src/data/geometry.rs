//! Geometric transforms as data: each crop, resize or flip an augmentation draws is recorded as
//! a [`Step`], so the same change moves an image, its class mask (nearest neighbour) and its
//! boxes (clipped, and dropped when too little stays visible) together.

use super::boxes::Corners;
use super::image::Image;
use super::resample::{self, Filter};
use crate::config::Interpolation;

/// A per-pixel label that counts for nothing (VOC's 255): outside the image after a transform,
/// or marked so in a mask file.
pub const IGNORE_LABEL: u8 = 255;

/// Per-pixel labels, row-major: class ids for a class mask, object numbers for instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    pub height: usize,
    pub width: usize,
    pub labels: Vec<u8>,
}

impl Mask {
    /// A mask of one label.
    pub fn filled(height: usize, width: usize, label: u8) -> Mask {
        Mask {
            height,
            width,
            labels: vec![label; height * width],
        }
    }

    /// Label at row `y`, column `x`.
    pub fn at(&self, y: usize, x: usize) -> u8 {
        self.labels[y * self.width + x]
    }

    /// The smallest box (pixel edges) holding every pixel labelled `label`, if any is.
    pub fn bounding_box(&self, label: u8) -> Option<Corners> {
        let mut found: Option<(usize, usize, usize, usize)> = None;
        for y in 0..self.height {
            for x in 0..self.width {
                if self.at(y, x) == label {
                    found = Some(match found {
                        None => (x, y, x, y),
                        Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
                    });
                }
            }
        }
        found.map(|(x0, y0, x1, y1)| Corners {
            x0: x0 as f64,
            y0: y0 as f64,
            x1: (x1 + 1) as f64,
            y1: (y1 + 1) as f64,
        })
    }

    /// Pixels labelled `label`.
    pub fn count(&self, label: u8) -> usize {
        self.labels.iter().filter(|&&l| l == label).count()
    }
}

/// One geometric change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// The source window `[top, top + h) × [left, left + w)` resampled to `out_h × out_w`.
    CropResize {
        top: f32,
        left: f32,
        h: f32,
        w: f32,
        out_h: usize,
        out_w: usize,
    },
    /// Mirror left-right.
    HFlip,
}

impl Step {
    /// The whole `height × width` image resampled to `out_h × out_w`.
    pub fn resize(height: usize, width: usize, out_h: usize, out_w: usize) -> Step {
        Step::CropResize {
            top: 0.0,
            left: 0.0,
            h: height as f32,
            w: width as f32,
            out_h,
            out_w,
        }
    }

    /// The step applied to an image (bilinear, area-averaged when shrinking).
    pub fn image(&self, img: &Image) -> Image {
        match *self {
            Step::CropResize {
                top,
                left,
                h,
                w,
                out_h,
                out_w,
            } => {
                let whole = top == 0.0
                    && left == 0.0
                    && h == img.height as f32
                    && w == img.width as f32
                    && (out_h, out_w) == (img.height, img.width);
                if whole {
                    img.clone()
                } else {
                    img.crop_resize(top, left, h, w, out_h, out_w)
                }
            }
            Step::HFlip => img.hflip(),
        }
    }

    /// The step applied to an image with `interpolation`'s filter: [`Step::image`] for
    /// vitrun's bilinear, PIL's resize of the window for the others.
    pub fn image_as(&self, img: &Image, interpolation: Interpolation) -> Image {
        let filter = match interpolation {
            Interpolation::Bilinear => return self.image(img),
            Interpolation::Bicubic => Filter::Bicubic,
            Interpolation::Area => Filter::Area,
        };
        match *self {
            Step::CropResize {
                top,
                left,
                h,
                w,
                out_h,
                out_w,
            } => resample::crop_resize(img, [top, left, h, w], out_h, out_w, filter),
            Step::HFlip => img.hflip(),
        }
    }

    /// The step applied to a mask: each output pixel takes the label under its centre, and
    /// [`IGNORE_LABEL`] where that centre falls outside the source.
    pub fn mask(&self, m: &Mask) -> Mask {
        match *self {
            Step::CropResize {
                top,
                left,
                h,
                w,
                out_h,
                out_w,
            } => {
                let source =
                    |start: f32, len: f32, out: usize, size: usize| -> Vec<Option<usize>> {
                        (0..out)
                            .map(|o| {
                                let p = (start + (o as f32 + 0.5) * len / out as f32).floor();
                                (p >= 0.0 && (p as usize) < size).then_some(p as usize)
                            })
                            .collect()
                    };
                let rows = source(top, h, out_h, m.height);
                let cols = source(left, w, out_w, m.width);
                let mut labels = Vec::with_capacity(out_h * out_w);
                for r in &rows {
                    for c in &cols {
                        labels.push(match (r, c) {
                            (Some(y), Some(x)) => m.at(*y, *x),
                            _ => IGNORE_LABEL,
                        });
                    }
                }
                Mask {
                    height: out_h,
                    width: out_w,
                    labels,
                }
            }
            Step::HFlip => Mask {
                height: m.height,
                width: m.width,
                labels: m
                    .labels
                    .chunks_exact(m.width)
                    .flat_map(|row| row.iter().rev().copied())
                    .collect(),
            },
        }
    }

    /// The step applied to a box in pixel coordinates of an image `width` wide (unclipped).
    pub fn corners(&self, b: Corners, width: usize) -> Corners {
        match *self {
            Step::CropResize {
                top,
                left,
                h,
                w,
                out_h,
                out_w,
            } => {
                let sx = out_w as f64 / f64::from(w);
                let sy = out_h as f64 / f64::from(h);
                Corners {
                    x0: (b.x0 - f64::from(left)) * sx,
                    y0: (b.y0 - f64::from(top)) * sy,
                    x1: (b.x1 - f64::from(left)) * sx,
                    y1: (b.y1 - f64::from(top)) * sy,
                }
            }
            Step::HFlip => Corners {
                x0: width as f64 - b.x1,
                y0: b.y0,
                x1: width as f64 - b.x0,
                y1: b.y1,
            },
        }
    }

    /// Width of the image after the step, given the width before.
    pub fn out_width(&self, width: usize) -> usize {
        match *self {
            Step::CropResize { out_w, .. } => out_w,
            Step::HFlip => width,
        }
    }

    /// Height of the image after the step, given the height before.
    pub fn out_height(&self, height: usize) -> usize {
        match *self {
            Step::CropResize { out_h, .. } => out_h,
            Step::HFlip => height,
        }
    }
}

/// An object's class and box in pixel coordinates of its image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObjectBox {
    pub class: usize,
    pub corners: Corners,
}

/// Moves boxes of a `height × width` image through `steps`: each is mapped, clipped to the
/// output, and dropped when less than `min_visible` of its mapped area stays inside.
pub fn transform_boxes(
    boxes: &[ObjectBox],
    steps: &[Step],
    height: usize,
    width: usize,
    min_visible: f64,
) -> Vec<ObjectBox> {
    boxes
        .iter()
        .filter_map(|o| {
            let (mut b, mut h, mut w) = (o.corners, height, width);
            let mut kept = 1.0;
            for step in steps {
                let mapped = step.corners(b, w);
                h = step.out_height(h);
                w = step.out_width(w);
                let clipped = mapped.clipped(w as f64, h as f64);
                if mapped.area() > 0.0 {
                    kept *= clipped.area() / mapped.area();
                }
                b = clipped;
            }
            (b.area() > 0.0 && kept >= min_visible).then_some(ObjectBox {
                class: o.class,
                corners: b,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crop_keeps_the_labels_under_each_centre() {
        let m = Mask {
            height: 2,
            width: 4,
            labels: vec![0, 1, 2, 3, 4, 5, 6, 7],
        };
        let doubled = Step::resize(2, 4, 4, 8).mask(&m);
        assert_eq!(&doubled.labels[..8], &[0, 0, 1, 1, 2, 2, 3, 3]);
        assert_eq!(Step::HFlip.mask(&m).labels, vec![3, 2, 1, 0, 7, 6, 5, 4]);
        let outside = Step::CropResize {
            top: 0.0,
            left: 2.0,
            h: 2.0,
            w: 4.0,
            out_h: 2,
            out_w: 4,
        }
        .mask(&m);
        assert_eq!(
            outside.labels,
            vec![2, 3, IGNORE_LABEL, IGNORE_LABEL, 6, 7, 255, 255]
        );
    }

    #[test]
    fn boxes_are_clipped_and_dropped_when_mostly_outside() {
        let boxes = [
            ObjectBox {
                class: 0,
                corners: Corners::from_coco(0.0, 0.0, 10.0, 10.0),
            },
            ObjectBox {
                class: 1,
                corners: Corners::from_coco(18.0, 0.0, 10.0, 10.0),
            },
        ];
        // Keep the left 20 columns, doubled: box 1 keeps 2 of its 10 columns.
        let crop = [Step::CropResize {
            top: 0.0,
            left: 0.0,
            h: 32.0,
            w: 20.0,
            out_h: 64,
            out_w: 40,
        }];
        let kept = transform_boxes(&boxes, &crop, 32, 32, 0.25);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].corners, Corners::from_coco(0.0, 0.0, 20.0, 20.0));
        let all = transform_boxes(&boxes, &crop, 32, 32, 0.1);
        assert_eq!(all[1].corners, Corners::from_coco(36.0, 0.0, 4.0, 20.0));
        let flipped = transform_boxes(&boxes, &[Step::HFlip], 32, 32, 0.0);
        assert_eq!(
            flipped[0].corners,
            Corners::from_coco(22.0, 0.0, 10.0, 10.0)
        );
    }
}
