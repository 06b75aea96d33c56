//! `vitrun predict`: classifies image files with a trained trial's weights, through that
//! trial's own validation pipeline, batched, on the CPU.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::backend::Flex;
use burn::tensor::activation::softmax;
use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;

use crate::config::Config;
use crate::data::{folder, Pipeline};
use crate::model::{load_on_cpu, Vit};
use crate::report::select;
use crate::track::Store;
use crate::train::pretrained::weights_in;
use crate::train::CLASSES_FILE;

/// A model ready to classify, with what it needs to read and name images.
pub struct Predictor {
    model: Vit<Flex>,
    config: Config,
    pipeline: Pipeline,
    classes: Vec<String>,
    max_pixels: u64,
    /// The weights file, for messages.
    pub weights: PathBuf,
    /// The trial the weights belong to, when known.
    pub trial: Option<String>,
}

/// One image's most likely classes, most likely first.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub image: PathBuf,
    pub top: Vec<(String, f32)>,
}

/// Class names from the trial folder's `classes.json`, else from opening the dataset.
fn class_names(trial_dir: Option<&Path>, config: &Config) -> anyhow::Result<Vec<String>> {
    if let Some(file) = trial_dir
        .map(|d| d.join(CLASSES_FILE))
        .filter(|f| f.is_file())
    {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        return serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JSON list of class names", file.display()));
    }
    Ok(crate::data::open(config)
        .context("cannot tell the class names: the trial folder has no classes.json and the dataset does not open")?
        .classes)
}

impl Predictor {
    /// A trial id or prefix, or an experiment or sweep (its best trial by val top-1), from the
    /// store in `runs_dir`.
    pub fn from_store(runs_dir: &Path, target: &str) -> anyhow::Result<Predictor> {
        let path = runs_dir.join("vitrun.sqlite");
        anyhow::ensure!(
            path.exists(),
            "no run store at {}; train a trial first, or pass a checkpoint with --config",
            path.display()
        );
        crate::track::sync_before_reading(runs_dir)?;
        let store = Store::open(&path)?;
        let sel = select(&store, runs_dir, Some(target), None)?;
        let best = sel.best();
        let dir = best.config.trial_dir(&best.summary.id);
        let weights = weights_in(&dir).with_context(|| {
            format!(
                "trial {} has no checkpoint in {} (best/ or last/)",
                best.summary.id,
                dir.display()
            )
        })?;
        Self::new(
            &best.config,
            weights,
            Some(&dir),
            Some(best.summary.id.clone()),
        )
    }

    /// A checkpoint file (or a trial folder) with the experiment file that describes its model.
    pub fn from_checkpoint(checkpoint: &Path, config: &Config) -> anyhow::Result<Predictor> {
        let weights = if checkpoint.is_dir() {
            weights_in(checkpoint)
                .with_context(|| format!("{} holds no model.safetensors", checkpoint.display()))?
        } else {
            anyhow::ensure!(
                checkpoint.is_file(),
                "{}: no such checkpoint file",
                checkpoint.display()
            );
            checkpoint.to_path_buf()
        };
        let trial_dir = weights
            .ancestors()
            .skip(1)
            .take(2)
            .find(|d| d.join(CLASSES_FILE).is_file())
            .map(Path::to_path_buf);
        Self::new(config, weights, trial_dir.as_deref(), None)
    }

    fn new(
        config: &Config,
        weights: PathBuf,
        trial_dir: Option<&Path>,
        trial: Option<String>,
    ) -> anyhow::Result<Predictor> {
        anyhow::ensure!(
            config.head.task == crate::config::Task::Classification,
            "vitrun predict and vitrun export take classification models (class labels, timm's VisionTransformer), and this model's head.task is {}; its report draws its predictions (vitrun report)",
            serde_json::to_string(&config.head.task).unwrap_or_default()
        );
        let classes = class_names(trial_dir, config)?;
        let (model, _) = load_on_cpu(config, classes.len(), &weights)?;
        Ok(Predictor {
            model,
            config: config.clone(),
            pipeline: Pipeline::val(
                &config.augment,
                config.data.image_size,
                config.data.channels,
            ),
            classes,
            max_pixels: config.data.max_image_pixels,
            weights,
            trial,
        })
    }

    /// Class names in label order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The experiment config the model was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Classifies `images` as one batch; an unreadable image gives its error in its place.
    pub fn predict(&self, images: &[PathBuf], top_k: usize) -> Vec<Result<Prediction, String>> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let decoded: Vec<Result<Vec<f32>, String>> = images
            .iter()
            .map(|p| {
                folder::decode(p, self.max_pixels)
                    .map(|img| self.pipeline.apply(img, &mut rng).image.data)
                    .map_err(|e| e.to_string())
            })
            .collect();
        let good: Vec<&Vec<f32>> = decoded.iter().filter_map(|d| d.as_ref().ok()).collect();
        let mut probs = Vec::new();
        if !good.is_empty() {
            let (c, s) = (self.pipeline.channels, self.pipeline.size);
            let data: Vec<f32> = good.iter().flat_map(|d| d.iter().copied()).collect();
            let x = Tensor::<Flex, 4>::from_data(
                TensorData::new(data, [good.len(), c, s, s]),
                &Default::default(),
            );
            probs = softmax(self.model.forward(x), 1)
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .unwrap_or_default();
        }
        let n = self.classes.len();
        let mut next = 0;
        images
            .iter()
            .zip(decoded)
            .map(|(path, d)| {
                d.map(|_| {
                    let p = &probs[next * n..(next + 1) * n];
                    next += 1;
                    let mut order: Vec<usize> = (0..n).collect();
                    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
                    Prediction {
                        image: path.clone(),
                        top: order
                            .into_iter()
                            .take(top_k.max(1))
                            .map(|i| (self.classes[i].clone(), p[i]))
                            .collect(),
                    }
                })
            })
            .collect()
    }
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

/// The image files the arguments name: files as given, folders searched recursively for
/// `.png`/`.jpg`/`.jpeg`, in sorted order.
pub fn images(args: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read folder {}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out)?;
            } else if is_image(&p) {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for a in args {
        if a.is_dir() {
            walk(a, &mut out)?;
        } else {
            anyhow::ensure!(a.exists(), "{}: no such image or folder", a.display());
            out.push(a.clone());
        }
    }
    Ok(out)
}
