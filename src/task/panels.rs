//! What every task's report panels share: their input (the trial, its data, its metrics, the
//! options), their output, and small helpers for images on the CPU.

use std::path::Path;

use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::config::Config;
use crate::contract::Metric;
use crate::data::augment::sample_rng;
use crate::data::{Image, Pipeline, Splits, Target};
use crate::plot::charts::{self, PALETTE};
use crate::plot::{Figure, Fusion};
use crate::track::MetricRow;

/// How the report draws a trial's panels (`vitrun report --fusion … --discard … --samples …`).
#[derive(Debug, Clone, Copy)]
pub struct PanelOptions {
    /// How attention heads are combined.
    pub fusion: Fusion,
    /// Fraction of the lowest attention weights dropped per row, in `[0, 1)`.
    pub discard: f32,
    /// Validation images shown in attention maps and predictions.
    pub samples: usize,
}

/// What a task's panels draw from.
pub struct PanelInput<'a> {
    pub config: &'a Config,
    /// The trial's id.
    pub trial: &'a str,
    pub splits: &'a Splits,
    /// The trial's stored metrics.
    pub metrics: &'a [MetricRow],
    pub options: &'a PanelOptions,
    /// The folder the figures are written to.
    pub out: &'a Path,
}

/// A section of figures a task contributes to a report.
#[derive(Debug, Clone, Default)]
pub struct Panels {
    pub title: String,
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
}

/// The normalisation to undo for display, when the trial normalises.
pub fn denorm(config: &Config) -> Option<(&[f64], &[f64])> {
    let n = &config.augment.normalize;
    n.enabled.then_some((n.mean.as_slice(), n.std.as_slice()))
}

/// How many display pixels an image pixel of a `size`-pixel image takes.
pub(crate) fn display_scale(size: usize) -> usize {
    (128 / size).max(1)
}

/// A tensor's values on the host, flat.
pub(crate) fn host<const D: usize>(t: Tensor<Flex, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap_or_default()
}

/// Images of one size as a batch `[images, channels, height, width]`.
pub(crate) fn batch<B: Backend>(images: &[Image], device: &B::Device) -> Tensor<B, 4> {
    let (c, h, w) = (images[0].channels, images[0].height, images[0].width);
    let data: Vec<f32> = images.iter().flat_map(|i| i.data.iter().copied()).collect();
    Tensor::from_data(TensorData::new(data, [images.len(), c, h, w]), device)
}

/// The index of the largest value.
pub(crate) fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

/// A class's colour in masks and boxes.
pub(crate) fn colour(class: usize) -> [u8; 3] {
    let c = PALETTE[class % PALETTE.len()];
    [c.0, c.1, c.2]
}

/// Names joined by commas, or "none".
pub(crate) fn names(items: impl Iterator<Item = String>) -> String {
    let listed: Vec<String> = items.collect();
    if listed.is_empty() {
        "none".into()
    } else {
        listed.join(", ")
    }
}

/// The first `count` validation images through the validation pipeline, with their targets
/// moved as the pipeline moved the pixels.
pub(crate) fn val_samples(
    config: &Config,
    splits: &Splits,
    count: usize,
) -> anyhow::Result<(Vec<Image>, Vec<Target>)> {
    let pipeline = Pipeline::val(
        &config.augment,
        config.data.image_size,
        config.data.channels,
    )
    .with_interpolation(config.data.interpolation);
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

/// The bar chart of one per-class figure family (`iou_`, `ap50_` + class) at the epoch with
/// the best `main` metric; `None` when none is stored yet.
pub(crate) fn class_bars(
    input: &PanelInput<'_>,
    main: Metric,
    prefix: &str,
    label: &str,
) -> anyhow::Result<Option<Figure>> {
    let best_epoch = input
        .metrics
        .iter()
        .filter(|m| m.split == main.split.as_str() && m.name == main.name)
        .max_by(|a, b| a.value.total_cmp(&b.value))
        .map(|m| m.epoch);
    let Some(epoch) = best_epoch else {
        return Ok(None);
    };
    let bars: Vec<(String, f64)> = input
        .metrics
        .iter()
        .filter(|m| m.split == main.split.as_str() && m.epoch == epoch)
        .filter_map(|m| Some((m.name.strip_prefix(prefix)?.to_string(), m.value)))
        .collect();
    if bars.is_empty() {
        return Ok(None);
    }
    let file = "per_class.png";
    let title = format!("{label} per class, epoch {epoch} (best {main})");
    let height = 90 + 34 * bars.len() as u32;
    charts::png(&input.out.join(file), (640, height), |root| {
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

/// The dense tasks' prediction grid (truth beside prediction for each image) and their
/// per-class bars.
pub(crate) fn dense_figures(
    input: &PanelInput<'_>,
    tiles: &[(crate::plot::raster::Rgb, String)],
    title: &str,
    bars: Option<Figure>,
) -> anyhow::Result<Panels> {
    let file = "predictions.png";
    charts::image_grid(&input.out.join(file), title, 4, tiles, 3, None)?;
    let mut figures = vec![Figure {
        file: file.into(),
        title: "Predictions".into(),
        caption: format!(
            "the first {} validation images through the validation pipeline; colours are classes ({})",
            input.options.samples.max(1),
            input.splits.classes.join(", ")
        ),
    }];
    figures.extend(bars);
    Ok(Panels {
        title: "Predictions".into(),
        figures,
        notes: Vec::new(),
    })
}

/// The data section of a dense task's report: its augmentation panels are classification's
/// (class labels), so it says where this trial's images are drawn instead.
pub(crate) fn dense_data_note(input: &PanelInput<'_>, task: &str) -> Panels {
    Panels {
        title: "Augmentations".into(),
        figures: Vec::new(),
        notes: vec![format!(
            "the augmentation panels show class labels, and trial {} is a {task:?} trial; its predictions are drawn below",
            input.trial
        )],
    }
}
