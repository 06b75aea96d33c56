//! Classification's report panels: augmentation samples and mixed batches (from the data
//! alone); attention maps and rollout, top-5 predictions, the confusion matrix and the
//! patch-embedding view (from the trial's weights, on the CPU backend).

use std::path::Path;

use anyhow::Context;
use burn::backend::Flex;
use burn::tensor::{activation::softmax, Tensor};

use super::head::ClassifierHead;
use crate::config::Config;
use crate::data::augment::sample_rng;
use crate::data::{Batch, Dataset, Image, Labels, Mixer, Pipeline, Sample, Splits};
use crate::model::{Backbone, Model};
use crate::plot::attention::{last_block_map, rollout, to_patches, Reader};
use crate::plot::charts::{self, image_grid};
use crate::plot::pca;
use crate::plot::raster::{cells, grid_lines, overlay, upsample, Rgb};
use crate::plot::Figure;
use crate::task::panels::{argmax, batch, denorm, display_scale, host};
use crate::task::{PanelInput, Panels};

type Cpu = Flex;

fn short(transform: &str) -> &str {
    match transform {
        "random_resized_crop" => "crop",
        "hflip" => "flip",
        "color_jitter" => "jitter",
        "random_erasing" => "erase",
        "normalize" => "norm",
        "center_crop" => "centre-crop",
        other => other,
    }
}

/// The class of a sample these classification panels draw.
fn class_of(sample: &Sample) -> anyhow::Result<usize> {
    sample.class().ok_or_else(|| {
        anyhow::anyhow!(
            "this report panel shows class labels, and the dataset gives masks or boxes"
        )
    })
}

/// Up to `count` sample indices, one per class while classes last (scanning the first few
/// hundred samples), then evenly spread.
fn distinct_classes(data: &dyn Dataset, count: usize) -> anyhow::Result<Vec<usize>> {
    let mut picks = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..data.len().min(400) {
        if picks.len() == count {
            break;
        }
        if seen.insert(data.get(i)?.class()) {
            picks.push(i);
        }
    }
    let mut k = 0;
    while picks.len() < count.min(data.len()) {
        let i = k * data.len() / count;
        if !picks.contains(&i) {
            picks.push(i);
        }
        k += 1;
    }
    Ok(picks)
}

/// Rows of training images, each under several random draws of the trial's training pipeline
/// (un-normalised for display), captioned with the transforms applied.
pub fn augmentations(config: &Config, splits: &Splits, out: &Path) -> anyhow::Result<Figure> {
    const ROWS: usize = 4;
    const DRAWS: usize = 5;
    let size = config.data.image_size;
    let pipeline = Pipeline::train(&config.augment, size, config.data.channels)
        .with_interpolation(config.data.interpolation);
    let scale = display_scale(size);
    let mut tiles = Vec::new();
    for index in distinct_classes(splits.train.as_ref(), ROWS)? {
        let sample = splits.train.get(index)?;
        let source = sample
            .image
            .clone()
            .with_channels(config.data.channels)
            .resize(size, size);
        tiles.push((
            Rgb::from_image(&source, None, scale),
            format!("source: {}", splits.classes[class_of(&sample)?]),
        ));
        for draw in 0..DRAWS {
            let mut rng = sample_rng(config.seed, 1 + draw, index);
            let a = pipeline.apply(sample.image.clone(), &mut rng);
            let names: Vec<&str> = a.applied.iter().map(|t| short(t)).collect();
            let caption = if names.is_empty() {
                "(none)".to_string()
            } else {
                names.join(" ")
            };
            tiles.push((Rgb::from_image(&a.image, denorm(config), scale), caption));
        }
    }
    let file = "augmentations.png";
    image_grid(
        &out.join(file),
        "Training augmentations (each row: one image, five random draws)",
        DRAWS + 1,
        &tiles,
        2,
        None,
    )?;
    Ok(Figure {
        file: file.into(),
        title: "Augmentation samples".into(),
        caption: "what the model sees in training, un-normalised for display; captions list the transforms that changed each draw".into(),
    })
}

/// Training batches after Mixup/CutMix as the trial mixes them (`None` when neither is on),
/// each image captioned with its two labels and their shares.
pub fn mixed_samples(
    config: &Config,
    splits: &Splits,
    out: &Path,
) -> anyhow::Result<Option<Figure>> {
    const BATCHES: usize = 3;
    const BATCH: usize = 6;
    let classes = &splits.classes;
    let Some(mixer) = Mixer::new(
        &config.augment,
        config.optimizer.label_smoothing,
        classes.len(),
        config.seed,
    ) else {
        return Ok(None);
    };
    let (size, channels) = (config.data.image_size, config.data.channels);
    let pipeline = Pipeline::train(&config.augment, size, channels)
        .with_interpolation(config.data.interpolation);
    let picks = distinct_classes(splits.train.as_ref(), BATCH)?;
    let scale = display_scale(size);
    let mut tiles = Vec::new();
    for index in 0..BATCHES {
        let mut batch = Batch {
            channels,
            size,
            ..Batch::<Labels>::default()
        };
        for &i in &picks {
            let sample = splits.train.get(i)?;
            let class = class_of(&sample)?;
            let a = pipeline.apply(sample.image, &mut sample_rng(config.seed, 1, i));
            batch.images.extend_from_slice(&a.image.data);
            batch.targets.labels.push(class as i64);
        }
        let mixed = mixer.mix(&mut batch, 1, index);
        let n = batch.len();
        let plane = channels * size * size;
        for i in 0..n {
            let image = Image {
                channels,
                height: size,
                width: size,
                data: batch.images[i * plane..(i + 1) * plane].to_vec(),
            };
            let lam = mixed.lam[i];
            let own = &classes[batch.targets.labels[i] as usize];
            let other = &classes[batch.targets.labels[n - 1 - i] as usize];
            let caption = if lam >= 1.0 {
                format!("{own} (unmixed)")
            } else {
                let how = if mixed.cutmix[i] { "cutmix" } else { "mixup" };
                format!(
                    "{own} {:.0}% + {other} {:.0}% ({how})",
                    lam * 100.0,
                    (1.0 - lam) * 100.0
                )
            };
            tiles.push((Rgb::from_image(&image, denorm(config), scale), caption));
        }
    }
    let file = "mixed.png";
    image_grid(
        &out.join(file),
        "Mixup / CutMix (each row: one training batch; image i mixes with image n-1-i)",
        BATCH,
        &tiles,
        3,
        None,
    )?;
    Ok(Some(Figure {
        file: file.into(),
        title: "Mixup and CutMix".into(),
        caption: "training batches after mixing, with each image's soft target: its own label's share and its partner's (train top-1 counts the larger as the label)".into(),
    }))
}

/// The data panels: augmentation samples, and mixed batches under Mixup/CutMix.
pub fn data_panels(input: &PanelInput<'_>) -> anyhow::Result<Panels> {
    let mut figures = vec![augmentations(input.config, input.splits, input.out)?];
    figures.extend(mixed_samples(input.config, input.splits, input.out)?);
    Ok(Panels {
        title: "Augmentations".into(),
        figures,
        notes: Vec::new(),
    })
}

/// The panels that need the weights: attention maps, predictions, the confusion matrix and
/// the patch-embedding view.
pub fn model_panels<E: Backbone<Cpu>>(
    model: &Model<Cpu, E, ClassifierHead<Cpu>>,
    input: &PanelInput<'_>,
) -> anyhow::Result<Panels> {
    let (config, splits, options, out) = (input.config, input.splits, input.options, input.out);
    let device = Default::default();
    let size = config.data.image_size;
    let pipeline = Pipeline::val(&config.augment, size, config.data.channels)
        .with_interpolation(config.data.interpolation);
    let picks = input.picks(|count| distinct_classes(splits.val.as_ref(), count))?;
    let (images, labels) = val_images(splits, &pipeline, config, &picks)?;
    let trace = model.trace(batch(&images, &device));
    let mut figures = Vec::new();
    let Some(first) = trace.attentions.first() else {
        figures.push(predictions(
            &images,
            &labels,
            &host(softmax(trace.logits, 1)),
            splits,
            config,
            out,
        )?);
        figures.extend(confusion(model, splits, &pipeline, config, out)?);
        return Ok(Panels {
            title: "Predictions".into(),
            figures,
            notes: vec!["this backbone has no attention to draw".into()],
        });
    };
    let [_, heads, n, _] = first.dims();
    let prefix = trace.prefix;
    let grid = trace.grid[0];
    let blocks: Vec<Vec<f32>> = trace
        .attentions
        .iter()
        .map(|a| {
            a.clone()
                .into_data()
                .convert::<f32>()
                .to_vec()
                .unwrap_or_default()
        })
        .collect();
    let probs = host(softmax(trace.logits.clone(), 1));
    let classes = splits.classes.len();
    let scale = display_scale(size);
    let shown = size * scale;
    let mut tiles = Vec::new();
    let setting = format!(
        "{:?} fusion, discard {:.2}",
        options.fusion, options.discard
    )
    .to_lowercase();
    let reader = Reader::of(config, prefix);
    for (j, image) in images.iter().enumerate() {
        let base = Rgb::from_image(image, denorm(config), scale);
        let per = heads * n * n;
        let last = &blocks[blocks.len() - 1][j * per..(j + 1) * per];
        let last_map = last_block_map(
            last,
            (heads, n, prefix),
            reader,
            options.fusion,
            options.discard,
        );
        let own: Vec<Vec<f32>> = blocks
            .iter()
            .map(|b| b[j * per..(j + 1) * per].to_vec())
            .collect();
        let flow = rollout(&own, heads, n, options.fusion, options.discard);
        let roll_map = to_patches(&flow, n, prefix, reader);
        let predicted = argmax(&probs[j * classes..(j + 1) * classes]);
        tiles.push((
            base.clone(),
            format!(
                "true {} / predicted {}",
                splits.classes[labels[j]], splits.classes[predicted]
            ),
        ));
        tiles.push((
            overlay(&base, &upsample(&last_map, grid, shown), 0.55),
            format!("last block {}", reader.describe()),
        ));
        tiles.push((
            overlay(&base, &upsample(&roll_map, grid, shown), 0.55),
            "attention rollout".into(),
        ));
    }
    image_grid(
        &out.join("attention.png"),
        &format!(
            "{} over the {grid}×{grid} patch grid ({setting})",
            reader.describe()
        ),
        3,
        &tiles,
        2,
        Some("attention (scaled to max 1)"),
    )?;
    figures.push(Figure {
        file: "attention.png".into(),
        title: "Attention maps".into(),
        caption: format!("validation images; the last block's CLS-token attention and the rollout across all {} blocks (Abnar & Zuidema 2020, residual identity added), {setting}", blocks.len()),
    });
    figures.push(predictions(&images, &labels, &probs, splits, config, out)?);
    figures.extend(confusion(model, splits, &pipeline, config, out)?);
    figures.push(patches(
        &images[0],
        &trace.tokens,
        prefix,
        grid,
        config,
        out,
    )?);
    Ok(Panels {
        title: "Attention, predictions and patches".into(),
        figures,
        notes: Vec::new(),
    })
}

/// Validation samples `indices` through the validation pipeline, with their labels.
fn val_images(
    splits: &Splits,
    pipeline: &Pipeline,
    config: &Config,
    indices: &[usize],
) -> anyhow::Result<(Vec<Image>, Vec<usize>)> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for &i in indices {
        let s = splits.val.get(i)?;
        labels.push(class_of(&s)?);
        images.push(
            pipeline
                .apply(s.image, &mut sample_rng(config.seed, 0, i))
                .image,
        );
    }
    Ok((images, labels))
}

fn predictions(
    images: &[Image],
    labels: &[usize],
    probs: &[f32],
    splits: &Splits,
    config: &Config,
    out: &Path,
) -> anyhow::Result<Figure> {
    let classes = splits.classes.len();
    let scale = display_scale(config.data.image_size);
    let row_h = 170;
    let file = "predictions.png";
    charts::png(
        &out.join(file),
        (760, (row_h * images.len()) as u32),
        |root| {
            for (j, row) in root.split_evenly((images.len(), 1)).iter().enumerate() {
                let (left, right) = row.split_horizontally(200);
                let base = Rgb::from_image(&images[j], denorm(config), scale);
                charts::blit(&left, &base, (16, 14))?;
                left.draw(&plotters::element::Text::new(
                    format!("true: {}", splits.classes[labels[j]]),
                    (16, 20 + base.height as i32),
                    ("sans-serif", 13),
                ))?;
                let p = &probs[j * classes..(j + 1) * classes];
                let mut order: Vec<usize> = (0..classes).collect();
                order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
                let bars: Vec<(String, f64)> = order
                    .iter()
                    .take(5)
                    .map(|&c| (splits.classes[c].clone(), p[c] as f64))
                    .collect();
                let title = if classes > 5 {
                    "top-5 predictions".to_string()
                } else {
                    format!("probabilities of all {classes} classes")
                };
                charts::top5(&right, &title, &bars)?;
            }
            Ok(())
        },
    )?;
    Ok(Figure {
        file: file.into(),
        title: "Predictions".into(),
        caption: format!(
            "the {} most likely classes' probabilities for validation images",
            classes.min(5)
        ),
    })
}

fn confusion<E: Backbone<Cpu>>(
    model: &Model<Cpu, E, ClassifierHead<Cpu>>,
    splits: &Splits,
    pipeline: &Pipeline,
    config: &Config,
    out: &Path,
) -> anyhow::Result<Vec<Figure>> {
    let classes = splits.classes.len();
    let device = Default::default();
    let mut counts = vec![vec![0u64; classes]; classes];
    let indices: Vec<usize> = (0..splits.val.len()).collect();
    for chunk in indices.chunks(64) {
        let (images, labels) = val_images(splits, pipeline, config, chunk)?;
        let logits = host(model.forward(batch(&images, &device)));
        for (j, label) in labels.iter().enumerate() {
            counts[*label][argmax(&logits[j * classes..(j + 1) * classes])] += 1;
        }
    }
    let side = (260 + 60 * classes).min(900) as u32;
    let mut figures = Vec::new();
    for (file, normalised, title) in [
        ("confusion_counts.png", false, "Confusion matrix (counts)"),
        (
            "confusion_normalised.png",
            true,
            "Confusion matrix (row-normalised)",
        ),
    ] {
        charts::png(&out.join(file), (side + 150, side), |root| {
            charts::confusion(root, title, &splits.classes, &counts, normalised)
        })?;
        figures.push(Figure {
            file: file.into(),
            title: title.into(),
            caption: format!(
                "all {} validation images; rows are true classes",
                splits.val.len()
            ),
        });
    }
    Ok(figures)
}

fn patches(
    image: &Image,
    tokens: &Tensor<Cpu, 3>,
    prefix: usize,
    grid: usize,
    config: &Config,
    out: &Path,
) -> anyhow::Result<Figure> {
    let [_, n, dim] = tokens.dims();
    let first: Vec<f32> = tokens
        .clone()
        .slice([0..1, prefix..n, 0..dim])
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap_or_default();
    let count = n - prefix;
    let projected = pca::project(&first, count, dim, 3);
    let mut rgb = vec![[0f32; 3]; count];
    for c in 0..3 {
        let column: Vec<f32> = (0..count).map(|i| projected[i * 3 + c]).collect();
        let (lo, hi) = column
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
                (a.min(*v), b.max(*v))
            });
        for i in 0..count {
            rgb[i][c] = if hi > lo {
                (column[i] - lo) / (hi - lo)
            } else {
                0.5
            };
        }
    }
    let size = config.data.image_size;
    let scale = (256 / size).max(1);
    let mut cut = Rgb::from_image(image, denorm(config), scale);
    grid_lines(&mut cut, config.model.patch_size * scale);
    let pcs = cells(&rgb, grid, (cut.width / grid).max(1));
    let file = "patch_embeddings.png";
    image_grid(
        &out.join(file),
        &format!(
            "{grid}×{grid} patches of {}×{} pixels",
            config.model.patch_size, config.model.patch_size
        ),
        2,
        &[
            (cut, "the image cut into its patch grid".into()),
            (
                pcs,
                "patch tokens' first 3 principal components as RGB".into(),
            ),
        ],
        2,
        None,
    )
    .context("patch-embedding view")?;
    Ok(Figure {
        file: file.into(),
        title: "Patch embeddings".into(),
        caption: "patch tokens (projection + position) of the first validation image; similar colours are similar embeddings".into(),
    })
}
