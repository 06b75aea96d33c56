//! `vitrun predict` for detection: the whole image is resized to the model's input, the last
//! decoder layer's boxes scoring at least the threshold are scaled back to the image's own
//! pixels (clipped to it), best first, and drawn on the image.

use burn::backend::Flex;
use burn::tensor::Tensor;

use super::head::{DetectionHead, LastLayer};
use super::panels::boxed;
use crate::data::boxes::Corners;
use crate::data::Image;
use crate::model::{Backbone, Model};
use crate::plot::raster::Rgb;
use crate::task::outputs::rgb_png;
use crate::task::{Answer, FoundBox, PredictFile};

/// `corners` in pixels of a `size × size` input, in pixels of a `height × width` image.
fn to_image(corners: &Corners, size: usize, height: usize, width: usize) -> Corners {
    let (sx, sy) = (width as f64 / size as f64, height as f64 / size as f64);
    Corners {
        x0: (corners.x0 * sx).clamp(0.0, width as f64),
        y0: (corners.y0 * sy).clamp(0.0, height as f64),
        x1: (corners.x1 * sx).clamp(0.0, width as f64),
        y1: (corners.y1 * sy).clamp(0.0, height as f64),
    }
}

/// The answers for `images` (the model's `size × size` input) whose decoded originals are
/// `originals`: the boxes scoring at least `threshold`.
pub fn answers<E: Backbone<Flex>>(
    model: &Model<Flex, E, DetectionHead<Flex>>,
    classes: &[String],
    threshold: f64,
    images: Tensor<Flex, 4>,
    originals: &[Image],
    files: bool,
) -> anyhow::Result<Vec<Answer>> {
    let size = images.dims()[2];
    let last = LastLayer::of(model, images)?;
    originals
        .iter()
        .enumerate()
        .map(|(j, original)| {
            let (h, w) = (original.height, original.width);
            let kept: Vec<(usize, f64, Corners)> = last
                .image(j)
                .above(size, threshold)
                .into_iter()
                .map(|b| (b.class, b.score, to_image(&b.corners, size, h, w)))
                .collect();
            let mut written = Vec::new();
            if files {
                let drawn: Vec<(usize, Corners, Option<String>)> = kept
                    .iter()
                    .map(|&(c, score, k)| (c, k, Some(format!("{} {score:.2}", classes[c]))))
                    .collect();
                written.push(PredictFile {
                    suffix: "overlay.png",
                    bytes: rgb_png(&boxed(&Rgb::from_image(original, None, 1), &drawn, 1))?,
                });
            }
            let found: Vec<FoundBox> = kept
                .iter()
                .map(|&(class, score, k)| FoundBox {
                    class: classes[class].clone(),
                    class_index: class,
                    score,
                    bbox: [k.x0, k.y0, k.x1 - k.x0, k.y1 - k.y0],
                })
                .collect();
            Ok(answer(found, [h, w], written))
        })
        .collect()
}

fn answer(found: Vec<FoundBox>, size: [usize; 2], files: Vec<PredictFile>) -> Answer {
    let text = if found.is_empty() {
        "no boxes".to_string()
    } else {
        found
            .iter()
            .map(|b| {
                let [x, y, w, h] = b.bbox.map(|v| v.round() as i64);
                format!("{} {:.2} [{x}, {y}, {w}, {h}]", b.class, b.score)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let boxes: Vec<serde_json::Value> = found
        .iter()
        .map(|b| serde_json::json!({"class": b.class, "score": b.score, "bbox": b.bbox}))
        .collect();
    Answer {
        text,
        json: serde_json::json!({"size": size, "boxes": boxes}),
        files,
        boxes: Some(found),
        labels: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Arch, VitSpec};
    use crate::task::detection::head::DetectionShape;
    use burn::tensor::Distribution;

    /// The boxes are the ones the report draws (the last layer's above the threshold, best
    /// first), scaled from the input to the image's own size.
    #[test]
    fn the_boxes_are_the_reports_at_the_images_size() {
        let spec = VitSpec::plain(16, 4, [16, 1, 2]);
        let device = Default::default();
        let shape = DetectionShape {
            queries: 5,
            groups: 1,
            layers: 1,
            classes: 2,
        };
        let model = Model::new(
            Arch::init::<Flex>(&spec, &device),
            DetectionHead::new(spec.shape(), shape, &device),
        );
        let images =
            Tensor::<Flex, 4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
        let classes = ["car".to_string(), "tree".to_string()];
        let originals = [Image::new(3, 16, 16), Image::new(3, 32, 48)];
        let answers = answers(&model, &classes, 0.0, images.clone(), &originals, true).unwrap();
        let last = LastLayer::of(&model, images).unwrap();
        for (j, (answer, scale)) in answers.iter().zip([[1.0, 1.0], [3.0, 2.0]]).enumerate() {
            let reported = last.image(j).above(16, 0.0);
            let found = answer.boxes.as_ref().unwrap();
            assert_eq!(found.len(), reported.len());
            assert!(found.windows(2).all(|w| w[0].score >= w[1].score));
            for (f, r) in found.iter().zip(&reported) {
                assert_eq!((f.class_index, f.score), (r.class, r.score));
                assert_eq!(f.class, classes[r.class]);
                let k = to_image(
                    &r.corners,
                    16,
                    16 * scale[1] as usize,
                    16 * scale[0] as usize,
                );
                assert_eq!(f.bbox, [k.x0, k.y0, k.x1 - k.x0, k.y1 - k.y0]);
            }
        }
        assert_eq!(answers[1].json["size"], serde_json::json!([32, 48]));
        assert_eq!(answers[1].files[0].suffix, "overlay.png");
    }

    #[test]
    fn boxes_scale_to_the_image_and_clip_to_it() {
        let c = Corners {
            x0: -2.0,
            y0: 8.0,
            x1: 16.0,
            y1: 20.0,
        };
        let k = to_image(&c, 16, 32, 64);
        assert_eq!([k.x0, k.y0, k.x1, k.y1], [0.0, 16.0, 64.0, 32.0]);
    }
}
