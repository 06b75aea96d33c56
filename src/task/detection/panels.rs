//! Detection's report panels: validation images with their ground-truth boxes beside the
//! predicted ones, and AP@0.5 per class at the best epoch.

use burn::backend::Flex;

use super::head::{DetectionHead, LastLayer, PredictedBox};
use super::Detection;
use crate::data::geometry::ObjectBox;
use crate::data::Target;
use crate::model::{Backbone, Model};
use crate::plot::raster::{ink_on, label, outline, Rgb};
use crate::task::panels::{
    batch, class_bars, colour, denorm, dense_attention, dense_augmentations, dense_figures,
    display_scale, names, val_samples,
};
use crate::task::{PanelInput, Panels, Task};

/// A copy of `base` with each box outlined in its class's colour and, where given, its label
/// (`car 0.87`) on a swatch of that colour above its top-left corner.
pub(super) fn boxed(
    base: &Rgb,
    boxes: &[(usize, crate::data::boxes::Corners, Option<String>)],
    scale: usize,
) -> Rgb {
    let mut image = base.clone();
    for (class, corners, _) in boxes {
        outline(&mut image, corners, scale as f64, colour(*class));
    }
    let height = (image.height as f32 / 16.0).clamp(9.0, 14.0);
    for (class, corners, text) in boxes {
        if let Some(text) = text {
            let swatch = colour(*class);
            let at = (
                (corners.x0 * scale as f64).round() as i64,
                (corners.y0 * scale as f64).round() as i64 - (height + 2.0).ceil() as i64,
            );
            label(&mut image, at, text, height, ink_on(swatch), swatch);
        }
    }
    image
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
    }
    let title =
        format!("Validation boxes: image, ground truth, and predictions scoring ≥ {threshold}");
    let bars = class_bars(input, Detection::METRICS.main(), "ap50_", "AP@0.5")?;
    let mut panels = dense_figures(input, (&tiles, 3), &title, bars)?;
    panels.notes.push(format!(
        "Boxes scoring ≥ {threshold} are drawn ({}; display only). {below_count} of {} images had none: each shows its best box, captioned as below the threshold.",
        if input.options.score_threshold.is_some() {
            "--score-threshold"
        } else {
            "the trial's head.score_threshold; --score-threshold changes it"
        },
        images.len()
    ));
    panels
        .figures
        .extend(dense_attention(&model.encoder, &images, input)?);
    Ok(panels)
}
