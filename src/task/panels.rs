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
use crate::model::Backbone;
use crate::plot::charts::{self, PALETTE};
use crate::plot::raster::{overlay, Rgb};
use crate::plot::{Figure, Fusion};
use crate::task::explain::{attention_maps, resize_bilinear, Map, Method};
use crate::track::MetricRow;

/// In what order the report picks the validation images it draws predictions of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleOrder {
    /// The task's own choice: a classifier's first image of each class, a dense task's first
    /// images.
    First,
    /// Drawn at random (seeded by the trial's seed).
    Random,
    /// The highest validation loss first, among the first [`WORST_POOL`] images.
    Worst,
}

/// How many validation images the report scores for `--samples worst`.
pub const WORST_POOL: usize = 256;

/// `--samples`: which validation images, and how many (`6`, `worst`, `random:8`, `first:4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Samples {
    pub order: SampleOrder,
    pub count: usize,
}

impl std::str::FromStr for Samples {
    type Err = String;

    fn from_str(s: &str) -> Result<Samples, String> {
        let bad = || {
            format!("{s:?}: use a count (6), or first, random or worst with an optional count (worst, worst:8)")
        };
        let (order, count) = match s.split_once(':') {
            Some((order, count)) => (order, Some(count)),
            None if s.parse::<usize>().is_ok() => ("first", Some(s)),
            None => (s, None),
        };
        let order = match order {
            "first" => SampleOrder::First,
            "random" => SampleOrder::Random,
            "worst" => SampleOrder::Worst,
            _ => return Err(bad()),
        };
        let count = match count {
            Some(c) => c
                .parse::<usize>()
                .ok()
                .filter(|c| (1..=64).contains(c))
                .ok_or_else(|| format!("{s:?}: the count is a whole number from 1 to 64"))?,
            None => 6,
        };
        Ok(Samples { order, count })
    }
}

/// Validation images the report chose (for `--samples random` and `worst`), with how.
#[derive(Debug, Clone, PartialEq)]
pub struct Chosen {
    pub indices: Vec<usize>,
    /// A sentence for the report: which images these are.
    pub what: String,
}

/// How the report draws a trial's panels (`vitrun report --fusion … --discard … --samples …`).
#[derive(Debug, Clone, Copy)]
pub struct PanelOptions {
    /// How attention heads are combined.
    pub fusion: Fusion,
    /// Fraction of the lowest attention weights dropped per row, in `[0, 1)`.
    pub discard: f32,
    /// Validation images shown in attention maps and predictions.
    pub samples: Samples,
    /// The least score of a box drawn (detection; display only, never part of a trial id);
    /// `None`: the trial's `head.score_threshold`.
    pub score_threshold: Option<f64>,
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
    /// The validation images to draw, when the report chose them; `None`: the task's own
    /// choice of `options.samples.count`.
    pub chosen: Option<&'a Chosen>,
    /// The folder the figures are written to.
    pub out: &'a Path,
}

impl PanelInput<'_> {
    /// The validation images to draw: the report's choice, else `first(count)`.
    pub fn picks(
        &self,
        first: impl FnOnce(usize) -> anyhow::Result<Vec<usize>>,
    ) -> anyhow::Result<Vec<usize>> {
        match self.chosen {
            Some(c) => Ok(c.indices.clone()),
            None => first(self.options.samples.count.max(1)),
        }
    }
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
pub fn val_samples(
    config: &Config,
    splits: &Splits,
    indices: &[usize],
) -> anyhow::Result<(Vec<Image>, Vec<Target>)> {
    let pipeline = Pipeline::val(
        &config.augment,
        config.data.image_size,
        config.data.channels,
    )
    .with_interpolation(config.data.interpolation);
    let (mut images, mut targets) = (Vec::new(), Vec::new());
    for &i in indices.iter().filter(|&&i| i < splits.val.len()) {
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
    (tiles, columns): (&[(crate::plot::raster::Rgb, String)], usize),
    title: &str,
    bars: Option<Figure>,
) -> anyhow::Result<Panels> {
    let file = "predictions.png";
    charts::image_grid(&input.out.join(file), title, columns, tiles, 3, None)?;
    let mut figures = vec![Figure {
        file: file.into(),
        title: "Predictions".into(),
        caption: format!(
            "validation images through the validation pipeline (`--samples` picks them); colours are classes ({})",
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

/// How a dense task draws a target on a display copy of its image (`scale` display pixels per
/// image pixel).
pub(crate) type DrawTarget<'a> = &'a dyn Fn(&Rgb, &Target, usize) -> Rgb;

/// The data section of a dense task's report: the first training images, each beside five
/// draws of the training pipeline, with their masks or boxes moved as the pixels were and
/// drawn by `draw`.
pub(crate) fn dense_augmentations(
    input: &PanelInput<'_>,
    draw: DrawTarget<'_>,
) -> anyhow::Result<Panels> {
    const ROWS: usize = 4;
    const DRAWS: usize = 5;
    let config = input.config;
    let size = config.data.image_size;
    let pipeline = Pipeline::train(&config.augment, size, config.data.channels)
        .with_interpolation(config.data.interpolation);
    let scale = display_scale(size);
    let visible = config.augment.min_box_visible;
    let mut tiles = Vec::new();
    for index in 0..ROWS.min(input.splits.train.len()) {
        let sample = input.splits.train.get(index)?;
        let (h, w) = (sample.image.height, sample.image.width);
        let resize = [crate::data::geometry::Step::resize(h, w, size, size)];
        let source = sample
            .image
            .clone()
            .with_channels(config.data.channels)
            .resize(size, size);
        let target = sample.target.clone().moved(&resize, h, w, visible);
        tiles.push((
            draw(&Rgb::from_image(&source, None, scale), &target, scale),
            "source".into(),
        ));
        for attempt in 0..DRAWS {
            let mut rng = sample_rng(config.seed, 1 + attempt, index);
            let a = pipeline.apply(sample.image.clone(), &mut rng);
            let moved = sample.target.clone().moved(&a.geometry, h, w, visible);
            let caption = if a.applied.is_empty() {
                "(none)".to_string()
            } else {
                a.applied.join(" ")
            };
            tiles.push((
                draw(
                    &Rgb::from_image(&a.image, denorm(config), scale),
                    &moved,
                    scale,
                ),
                caption,
            ));
        }
    }
    let file = "augmentations.png";
    charts::image_grid(
        &input.out.join(file),
        "Training augmentations with their targets moved along",
        1 + DRAWS,
        &tiles,
        2,
        None,
    )?;
    Ok(Panels {
        title: "Augmentations".into(),
        figures: vec![Figure {
            file: file.into(),
            title: "Augmentation samples".into(),
            caption: format!(
                "the first {ROWS} training images (left) and five draws of the training pipeline each, the targets moved with the pixels; colours are classes ({})",
                input.splits.classes.join(", ")
            ),
        }],
        notes: Vec::new(),
    })
}

/// A dense model's encoder attention over validation images: the last block's CLS attention
/// and the rollout through every block; `None` for a backbone without attention.
pub(crate) fn dense_attention<E: Backbone<Flex>>(
    encoder: &E,
    images: &[Image],
    input: &PanelInput<'_>,
) -> anyhow::Result<Option<Figure>> {
    let options = input.options;
    let x = batch::<Flex>(images, &Default::default());
    let maps = |method| {
        attention_maps(
            encoder,
            x.clone(),
            method,
            (options.fusion, options.discard),
            input.config,
        )
    };
    let (Some(last), Some(flow)) = (maps(Method::Attention), maps(Method::Rollout)) else {
        return Ok(None);
    };
    let size = input.config.data.image_size;
    let scale = display_scale(size);
    let shown = [size * scale, size * scale];
    let mut tiles = Vec::new();
    for ((image, last), flow) in images.iter().zip(&last).zip(&flow) {
        let base = Rgb::from_image(image, denorm(input.config), scale);
        let up = |m: &Map| resize_bilinear(&m.values, m.size, shown);
        tiles.push((base.clone(), "validation image".into()));
        tiles.push((overlay(&base, &up(last), 0.55), "last block".into()));
        tiles.push((overlay(&base, &up(flow), 0.55), "attention rollout".into()));
    }
    let file = "attention.png";
    charts::image_grid(
        &input.out.join(file),
        "Encoder attention: the mean attention of the patch tokens (what the decoder reads)",
        3,
        &tiles,
        2,
        Some("attention (scaled to max 1)"),
    )?;
    Ok(Some(Figure {
        file: file.into(),
        title: "Attention maps".into(),
        caption: "the encoder's last-block attention and the rollout through all blocks (Abnar & Zuidema 2020), averaged over the patch tokens (the decoder reads every patch, not a class token), over validation images; `vitrun explain --method gradcam` maps a class".into(),
    }))
}

#[cfg(test)]
mod sample_tests {
    use super::*;

    #[test]
    fn samples_read_a_count_an_order_or_both() {
        let read = |s: &str| s.parse::<Samples>();
        let of = |order, count| Ok(Samples { order, count });
        assert_eq!(read("6"), of(SampleOrder::First, 6));
        assert_eq!(read("worst"), of(SampleOrder::Worst, 6));
        assert_eq!(read("random:8"), of(SampleOrder::Random, 8));
        assert_eq!(read("first:1"), of(SampleOrder::First, 1));
        assert!(read("0").unwrap_err().contains("from 1 to 64"));
        assert!(read("best").unwrap_err().contains("first, random or worst"));
        assert!(read("worst:-1").is_err() && read("").is_err());
    }
}
