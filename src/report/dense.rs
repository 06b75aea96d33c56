//! The panels of detection and segmentation trials: validation images with their ground truth
//! beside the model's prediction (boxes with class and score, or a mask overlay), and per-class
//! AP@0.5 or IoU bars from the stored metrics at the best epoch.

use std::path::Path;

use burn::backend::Flex;
use burn::tensor::activation::softmax;

use super::charts::{self, image_grid, PALETTE};
use super::html::Figure;
use super::raster::{grey, outline, tint, Rgb};
use super::select::TrialRecord;
use super::views::{batch, denorm, display_scale, host, AttentionOptions};
use crate::config::{Config, Task};
use crate::data::augment::sample_rng;
use crate::data::geometry::{Mask, ObjectBox, IGNORE_LABEL};
use crate::data::{Image, Pipeline, Splits, Target};
use crate::model::Vit;
use crate::task::detection::head::{detect, ImagePredictions, PredictedBox, Wanted};
use crate::task::segmentation::head::pixel_logits;

fn colour(class: usize) -> [u8; 3] {
    let c = PALETTE[class % PALETTE.len()];
    [c.0, c.1, c.2]
}

/// The first validation images through the validation pipeline, with their moved targets.
fn val_samples(
    trial: &TrialRecord,
    splits: &Splits,
    count: usize,
) -> anyhow::Result<(Vec<Image>, Vec<Target>)> {
    let config = &trial.config;
    let pipeline = Pipeline::val(
        &config.augment,
        config.data.image_size,
        config.data.channels,
    );
    let (mut images, mut targets) = (Vec::new(), Vec::new());
    for i in 0..count.min(splits.val.len()) {
        let sample = splits.val.get(i)?;
        let (h, w) = (sample.image.height, sample.image.width);
        let out = pipeline.apply(sample.image, &mut sample_rng(config.seed, 0, i));
        targets.push(
            sample
                .target
                .moved(&out.geometry, h, w, config.augment.min_box_visible),
        );
        images.push(out.image);
    }
    Ok((images, targets))
}

/// A copy of `base` with each box outlined in its class's colour.
fn boxed(base: &Rgb, boxes: &[(usize, crate::data::boxes::Corners)], scale: usize) -> Rgb {
    let mut image = base.clone();
    for (class, corners) in boxes {
        outline(&mut image, corners, scale as f64, colour(*class));
    }
    image
}

fn names(boxes: impl Iterator<Item = String>) -> String {
    let listed: Vec<String> = boxes.collect();
    if listed.is_empty() {
        "none".into()
    } else {
        listed.join(", ")
    }
}

/// Validation images with their targets, the model and the class names the tiles draw.
struct Shown<'a> {
    config: &'a Config,
    classes: &'a [String],
    model: Vit<Flex>,
    images: Vec<Image>,
    targets: Vec<Target>,
}

/// Ground truth beside predicted boxes scoring at least `head.score_threshold`.
fn detection_tiles(shown: &Shown<'_>) -> anyhow::Result<(Vec<(Rgb, String)>, String)> {
    let Shown {
        config,
        classes: names_of,
        model,
        images,
        targets,
    } = shown;
    let classes = names_of.len();
    let outputs = detect(model, batch(images, &Default::default()), Wanted::default());
    let (Some(logits), Some(boxes)) = (outputs.logits.last(), outputs.boxes.last()) else {
        anyhow::bail!("the detection model gave no decoder output");
    };
    let [_, queries, _] = logits.dims();
    let probs = host(softmax(logits.clone(), 2));
    let boxes = host(boxes.clone());
    let threshold = config.head.detection().score_threshold;
    let size = config.data.image_size;
    let scale = display_scale(size);
    let mut tiles = Vec::new();
    for (j, (image, target)) in images.iter().zip(targets).enumerate() {
        let base = Rgb::from_image(image, denorm(config), scale);
        let truth: &[ObjectBox] = match target {
            Target::Objects(objects) => objects,
            _ => &[],
        };
        let predicted: Vec<PredictedBox> = ImagePredictions {
            probs: &probs[j * queries * (classes + 1)..(j + 1) * queries * (classes + 1)],
            boxes: &boxes[j * queries * 4..(j + 1) * queries * 4],
            classes,
        }
        .above(size, threshold);
        let truth_boxes: Vec<_> = truth.iter().map(|o| (o.class, o.corners)).collect();
        tiles.push((
            boxed(&base, &truth_boxes, scale),
            format!(
                "truth: {}",
                names(truth.iter().map(|o| names_of[o.class].clone()))
            ),
        ));
        let predicted_boxes: Vec<_> = predicted.iter().map(|b| (b.class, b.corners)).collect();
        tiles.push((
            boxed(&base, &predicted_boxes, scale),
            format!(
                "predicted: {}",
                names(
                    predicted
                        .iter()
                        .map(|b| format!("{} {:.2}", names_of[b.class], b.score))
                )
            ),
        ));
    }
    Ok((
        tiles,
        format!(
            "Validation boxes: ground truth (left) and predictions scoring ≥ {threshold} (right)"
        ),
    ))
}

/// A grey copy of `base` with each pixel of a class other than the first painted in its
/// colour (grey first, so that the classes' colours stand out from the image's own).
fn masked(base: &Rgb, mask: &Mask, scale: usize) -> Rgb {
    let colours: Vec<Option<[u8; 3]>> = mask
        .labels
        .iter()
        .map(|&l| (l != 0 && l != IGNORE_LABEL).then(|| colour(usize::from(l) - 1)))
        .collect();
    tint(&grey(base), &colours, mask.width, scale, 0.7)
}

/// Ground-truth masks beside predicted ones.
fn segmentation_tiles(shown: &Shown<'_>) -> anyhow::Result<(Vec<(Rgb, String)>, String)> {
    let Shown {
        config,
        classes,
        model,
        images,
        targets,
    } = shown;
    let labels = host(
        pixel_logits(model, batch(images, &Default::default()))
            .argmax(1)
            .float(),
    );
    let size = config.data.image_size;
    let plane = size * size;
    let scale = display_scale(size);
    let mut tiles = Vec::new();
    for (j, (image, target)) in images.iter().zip(targets).enumerate() {
        let base = Rgb::from_image(image, denorm(config), scale);
        let predicted = Mask {
            height: size,
            width: size,
            labels: labels[j * plane..(j + 1) * plane]
                .iter()
                .map(|&l| l as u8)
                .collect(),
        };
        let present = |m: &Mask| {
            let mut ids: Vec<u8> = m.labels.clone();
            ids.sort_unstable();
            ids.dedup();
            names(
                ids.into_iter()
                    .filter(|&l| l != 0 && l != IGNORE_LABEL)
                    .filter_map(|l| classes.get(usize::from(l)).cloned()),
            )
        };
        if let Target::Mask(truth) = target {
            tiles.push((
                masked(&base, truth, scale),
                format!("truth: {}", present(truth)),
            ));
        }
        tiles.push((
            masked(&base, &predicted, scale),
            format!("predicted: {}", present(&predicted)),
        ));
    }
    Ok((
        tiles,
        format!(
            "Validation masks: ground truth (left) and prediction (right); {} is left untinted",
            classes.first().map_or("class 0", String::as_str)
        ),
    ))
}

/// The per-class figure of the trial's best epoch (by the task's main metric): AP@0.5 or IoU.
fn class_bars(trial: &TrialRecord, out: &Path) -> anyhow::Result<Option<Figure>> {
    let main = trial.config.head.task.main_metric();
    let (prefix, label) = match trial.config.head.task {
        Task::Detection => ("ap50_", "AP@0.5"),
        _ => ("iou_", "IoU"),
    };
    let best_epoch = trial
        .metrics
        .iter()
        .filter(|m| m.split == main.split && m.name == main.name)
        .max_by(|a, b| a.value.total_cmp(&b.value))
        .map(|m| m.epoch);
    let Some(epoch) = best_epoch else {
        return Ok(None);
    };
    let bars: Vec<(String, f64)> = trial
        .metrics
        .iter()
        .filter(|m| m.split == "val" && m.epoch == epoch)
        .filter_map(|m| Some((m.name.strip_prefix(prefix)?.to_string(), m.value)))
        .collect();
    if bars.is_empty() {
        return Ok(None);
    }
    let file = "per_class.png";
    let title = format!("{label} per class, epoch {epoch} (best {main})");
    let height = 90 + 34 * bars.len() as u32;
    charts::png(&out.join(file), (640, height), |root| {
        charts::hbars(root, &title, label, &bars)
    })?;
    Ok(Some(Figure {
        file: file.into(),
        title: format!("{label} per class"),
        caption: format!(
            "validation {label} of each class at the epoch with the best {main}; classes absent from validation are left out"
        ),
    }))
}

/// The dense task's figures for the trial whose weights are at `path`.
pub fn views(
    trial: &TrialRecord,
    splits: &Splits,
    path: &Path,
    options: &AttentionOptions,
    out: &Path,
) -> anyhow::Result<Vec<Figure>> {
    let count = options.samples.max(1);
    let config = &trial.config;
    let (model, _) = crate::model::load_on_cpu(config, splits.classes.len(), path)?;
    let (images, targets) = val_samples(trial, splits, count)?;
    let shown = Shown {
        config,
        classes: &splits.classes,
        model,
        images,
        targets,
    };
    let (tiles, title) = match config.head.task {
        Task::Detection => detection_tiles(&shown)?,
        _ => segmentation_tiles(&shown)?,
    };
    let file = "predictions.png";
    image_grid(&out.join(file), &title, 4, &tiles, 3, None)?;
    let mut figures = vec![Figure {
        file: file.into(),
        title: "Predictions".into(),
        caption: format!(
            "the first {count} validation images through the validation pipeline; colours are classes ({})",
            splits.classes.join(", ")
        ),
    }];
    figures.extend(class_bars(trial, out)?);
    Ok(figures)
}
