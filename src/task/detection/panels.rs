//! Detection's report panels: validation images with their ground-truth boxes beside the
//! predicted ones, AP@0.5 per class at the best epoch, the encoder's attention, and what the
//! query behind each image's best box looked at (DETR's figure).

use burn::backend::Flex;

use super::head::{DetectionHead, LastLayer, PredictedBox};
use super::Detection;
use crate::data::boxes::Corners;
use crate::data::geometry::ObjectBox;
use crate::data::Image;
use crate::data::Target;
use crate::model::{Backbone, Model};
use crate::plot::charts;
use crate::plot::raster::{grey, ink_on, label, outline, overlay, Rgb};
use crate::plot::Figure;
use crate::task::explain::resize_bilinear;
use crate::task::panels::{
    batch, class_bars, colour, denorm, dense_attention, dense_augmentations, dense_figures,
    display_scale, names, val_samples,
};
use crate::task::{PanelInput, Panels, Task};

/// A copy of `base` with each box outlined in its class's colour and, where given, its label
/// (`car 0.87`) on a swatch of that colour above its top-left corner.
pub(super) fn boxed(base: &Rgb, boxes: &[(usize, Corners, Option<String>)], scale: usize) -> Rgb {
    let painted: Vec<_> = boxes
        .iter()
        .map(|(class, corners, text)| (colour(*class), *corners, text.clone()))
        .collect();
    painted_boxes(base, &painted, scale)
}

/// A copy of `base` with each box outlined in its colour and, where given, its label on a
/// swatch of that colour above its top-left corner.
fn painted_boxes(base: &Rgb, boxes: &[([u8; 3], Corners, Option<String>)], scale: usize) -> Rgb {
    let mut image = base.clone();
    for (swatch, corners, _) in boxes {
        outline(&mut image, corners, scale as f64, *swatch);
    }
    let height = (image.height as f32 / 16.0).clamp(9.0, 14.0);
    for (swatch, corners, text) in boxes {
        if let Some(text) = text {
            let swatch = *swatch;
            let at = (
                (corners.x0 * scale as f64).round() as i64,
                (corners.y0 * scale as f64).round() as i64 - (height + 2.0).ceil() as i64,
            );
            label(&mut image, at, text, height, ink_on(swatch), swatch);
        }
    }
    image
}

/// Which predictions found an object and which objects were found, matched as COCO matches at
/// IoU 0.5: in descending score, each prediction takes the unmatched ground-truth box of its
/// class with the highest IoU ≥ 0.5.
pub(super) fn matches(truth: &[ObjectBox], predicted: &[PredictedBox]) -> (Vec<bool>, Vec<bool>) {
    let mut found = vec![false; truth.len()];
    let mut hit = vec![false; predicted.len()];
    let mut order: Vec<usize> = (0..predicted.len()).collect();
    order.sort_by(|&a, &b| predicted[b].score.total_cmp(&predicted[a].score));
    for p in order {
        let best = truth
            .iter()
            .enumerate()
            .filter(|(t, o)| !found[*t] && o.class == predicted[p].class)
            .map(|(t, o)| (t, o.corners.iou(&predicted[p].corners)))
            .filter(|(_, iou)| *iou >= 0.5)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((t, _)) = best {
            found[t] = true;
            hit[p] = true;
        }
    }
    (hit, found)
}

/// The errors of an image's predictions on a grey copy of it: true positives in green, false
/// positives in red (`FP car 0.41`), missed objects in blue (`missed truck`); with the counts
/// (true positives, false positives, misses).
pub(super) fn errors(
    base: &Rgb,
    truth: &[ObjectBox],
    predicted: &[PredictedBox],
    classes: &[String],
    scale: usize,
) -> (Rgb, [usize; 3]) {
    const TRUE_POSITIVE: [u8; 3] = [40, 160, 60];
    const FALSE_POSITIVE: [u8; 3] = [220, 30, 30];
    const MISSED: [u8; 3] = [30, 90, 230];
    let (hit, found) = matches(truth, predicted);
    let mut boxes = Vec::new();
    for (o, _) in truth.iter().zip(&found).filter(|(_, f)| !**f) {
        boxes.push((
            MISSED,
            o.corners,
            Some(format!("missed {}", classes[o.class])),
        ));
    }
    for (b, &h) in predicted.iter().zip(&hit) {
        let name = &classes[b.class];
        boxes.push(if h {
            (TRUE_POSITIVE, b.corners, None)
        } else {
            (
                FALSE_POSITIVE,
                b.corners,
                Some(format!("FP {name} {:.2}", b.score)),
            )
        });
    }
    let tp = hit.iter().filter(|h| **h).count();
    let counts = [tp, predicted.len() - tp, truth.len() - tp];
    (painted_boxes(&grey(base), &boxes, scale), counts)
}

/// Training images and augmentations of them with their boxes.
pub fn augmentations(input: &PanelInput<'_>) -> anyhow::Result<Panels> {
    dense_augmentations(
        input,
        &|image: &Rgb, target: &Target, scale: usize| match target {
            Target::Objects(objects) => {
                let boxes: Vec<_> = objects.iter().map(|o| (o.class, o.corners, None)).collect();
                boxed(image, &boxes, scale)
            }
            _ => image.clone(),
        },
    )
}

/// The validation images' ground-truth boxes beside the predicted ones scoring at least the
/// report's `--score-threshold` (default `head.score_threshold`; an image with none shows its
/// best box, marked as below), and AP@0.5 per class.
pub fn panels<E: Backbone<Flex>>(
    model: &Model<Flex, E, DetectionHead<Flex>>,
    input: &PanelInput<'_>,
) -> anyhow::Result<Panels> {
    let config = input.config;
    let names_of = &input.splits.classes;
    let picks = input.picks(|count| Ok((0..count).collect()))?;
    let (images, targets) = val_samples(config, input.splits, &picks)?;
    let last = LastLayer::of(model, batch(&images, &Default::default()))?;
    let threshold = input
        .options
        .score_threshold
        .unwrap_or(config.head.detection().score_threshold);
    let size = config.data.image_size;
    let scale = display_scale(size);
    let mut tiles = Vec::new();
    let mut below_count = 0;
    let mut totals = [0usize; 3];
    for (j, (image, target)) in images.iter().zip(&targets).enumerate() {
        let base = Rgb::from_image(image, denorm(config), scale);
        let truth: &[ObjectBox] = match target {
            Target::Objects(objects) => objects,
            _ => &[],
        };
        let mut predicted: Vec<PredictedBox> = last.image(j).above(size, threshold);
        // Nothing clears the threshold: the best box still says what the model saw.
        let below = predicted.is_empty();
        if below {
            below_count += 1;
            predicted.extend(last.image(j).above(size, 0.0).into_iter().take(1));
        }
        let truth_boxes: Vec<_> = truth
            .iter()
            .map(|o| (o.class, o.corners, Some(names_of[o.class].clone())))
            .collect();
        tiles.push((base.clone(), "validation image".into()));
        tiles.push((
            boxed(&base, &truth_boxes, scale),
            format!(
                "truth: {}",
                names(truth.iter().map(|o| names_of[o.class].clone()))
            ),
        ));
        let predicted_boxes: Vec<_> = predicted
            .iter()
            .map(|b| {
                let text = format!("{} {:.2}", names_of[b.class], b.score);
                (b.class, b.corners, Some(text))
            })
            .collect();
        let (wrong, counts) = errors(&base, truth, &predicted, names_of, scale);
        let [tp, fp, missed] = counts;
        for (total, n) in totals.iter_mut().zip(counts) {
            *total += n;
        }
        tiles.push((
            boxed(&base, &predicted_boxes, scale),
            format!(
                "{}: {}",
                if below {
                    "best box, below the threshold"
                } else {
                    "predicted"
                },
                names(
                    predicted
                        .iter()
                        .map(|b| format!("{} {:.2}", names_of[b.class], b.score))
                )
            ),
        ));
        tiles.push((
            wrong,
            format!(
                "errors at IoU 0.5: {tp} found, {}, {missed} missed",
                crate::contract::count(fp, "false positive")
            ),
        ));
    }
    let title = format!(
        "Validation boxes: image, ground truth, predictions scoring ≥ {threshold}, errors (green: found; red: false positive; blue: missed)"
    );
    let bars = class_bars(input, Detection::METRICS.main(), "ap50_", "AP@0.5")?;
    let mut panels = dense_figures(input, (&tiles, 4), &title, bars)?;
    panels.notes.push(format!(
        "Boxes scoring ≥ {threshold} are drawn ({}; display only). {below_count} of {} images had none: each shows its best box, captioned as below the threshold.",
        if input.options.score_threshold.is_some() {
            "--score-threshold"
        } else {
            "the trial's head.score_threshold; --score-threshold changes it"
        },
        images.len()
    ));
    let [tp, fp, missed] = totals;
    panels.notes.push(format!(
        "Errors at IoU 0.5 (COCO's matching: by descending score, each box takes the best unmatched object of its class) over these {} images: {tp} of {} found, {}, {missed} missed.",
        images.len(),
        crate::contract::count(tp + missed, "object"),
        crate::contract::count(fp, "false positive")
    ));
    panels
        .figures
        .extend(dense_attention(&model.encoder, &images, input)?);
    panels.figures.push(box_attention(model, &images, input)?);
    Ok(panels)
}

/// DETR's figure over the validation `images`: each image's best box, beside the last decoder
/// layer's cross-attention of the query that predicted it (mean of the heads), the box on it.
fn box_attention<E: Backbone<Flex>>(
    model: &Model<Flex, E, DetectionHead<Flex>>,
    images: &[Image],
    input: &PanelInput<'_>,
) -> anyhow::Result<Figure> {
    let maps = super::explain::box_attention(model, batch(images, &Default::default()), None)?;
    let config = input.config;
    let scale = display_scale(config.data.image_size);
    let mut tiles = Vec::new();
    for (image, map) in images.iter().zip(&maps) {
        let base = Rgb::from_image(image, denorm(config), scale);
        let drawn: Vec<(usize, Corners, Option<String>)> = map
            .region
            .zip(map.class)
            .map(|([x0, y0, x1, y1], class)| {
                let name = input.splits.classes[class].clone();
                (class, Corners { x0, y0, x1, y1 }, Some(name))
            })
            .into_iter()
            .collect();
        let shown = [map.size[0] * scale, map.size[1] * scale];
        let heat = overlay(&base, &resize_bilinear(&map.values, map.size, shown), 0.55);
        tiles.push((boxed(&base, &drawn, scale), "best box".to_string()));
        tiles.push((
            boxed(&heat, &drawn, scale),
            "what its query looked at".to_string(),
        ));
    }
    let file = "box_attention.png";
    charts::image_grid(
        &input.out.join(file),
        "Box attention: each image's best box and its query's cross-attention over the patches",
        4,
        &tiles,
        1,
        Some("attention (scaled to max 1)"),
    )?;
    Ok(Figure {
        file: file.into(),
        title: "Box attention".into(),
        caption: "DETR's figure: the last decoder layer's cross-attention (mean of the heads) of the query behind each validation image's best-scoring box, whatever its score; `vitrun explain TRIAL IMAGES --method attention --class NAME` draws it for a class's best box".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(class: usize, x0: f64) -> ObjectBox {
        ObjectBox {
            class,
            corners: Corners {
                x0,
                y0: 40.0,
                x1: x0 + 10.0,
                y1: 50.0,
            },
        }
    }

    fn guess(class: usize, x0: f64, score: f64) -> PredictedBox {
        let o = object(class, x0);
        PredictedBox {
            query: 0,
            class,
            score,
            corners: o.corners,
        }
    }

    /// COCO's rule: the higher score takes an object first, a duplicate of it is a false
    /// positive, the wrong class or IoU < 0.5 never matches, and an object nobody takes is
    /// missed.
    #[test]
    fn predictions_match_objects_by_score_class_and_iou() {
        let truth = [object(0, 0.0), object(1, 20.0), object(0, 40.0)];
        let predicted = [
            guess(0, 1.0, 0.6),  // IoU 9/11 with the first object, but second in score
            guess(0, 0.0, 0.9),  // the first object, exactly
            guess(0, 20.0, 0.8), // the second object's place, the wrong class
            guess(0, 46.0, 0.7), // IoU 4/16 with the third object
        ];
        let (hit, found) = matches(&truth, &predicted);
        assert_eq!(hit, [false, true, false, false]);
        assert_eq!(found, [true, false, false]);
        let base = Rgb {
            width: 64,
            height: 64,
            pixels: vec![128; 64 * 64 * 3],
        };
        let classes = ["car".to_string(), "truck".to_string()];
        let (image, counts) = errors(&base, &truth, &predicted, &classes, 1);
        assert_eq!(counts, [1, 3, 2]);
        let at = |x: usize, y: usize| image.pixels[3 * (y * 64 + x)..3 * (y * 64 + x) + 3].to_vec();
        // The found object's box is green; the far right edge of the 0.7 guess is red; the
        // third object's left edge (not covered by any guess) is blue.
        // (Labels sit above the boxes, clear of these pixels.)
        assert_eq!(at(0, 48), [40, 160, 60]);
        assert_eq!(at(56, 48), [220, 30, 30]);
        assert_eq!(at(40, 45), [30, 90, 230]);
    }
}
