//! `vitrun predict`: runs image files through a trained trial's weights and its own
//! validation pipeline, batched, on the CPU; each task words its own answer.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;

use crate::config::Config;
use crate::contract::{weights_in, RunsDir, TrialDir};
use crate::data::nifti::{self, Volume};
use crate::data::volumes::{is_volume, slice_images, stack, Slicing};
use crate::data::{self, folder, Image, Pipeline, Targets};
use crate::model::{apply_state_dict, state_dict, with_arch, Arch, ArchTask, Model, StateDict};
use crate::plot::Fusion;
use crate::report::select;
use crate::task::explain::{attention_maps, Grad, Map, Method};
use crate::task::{with_task, Answer, PredictOptions, Task, TaskWork};
use crate::track::Store;

/// A loaded model of some architecture and task.
trait Loaded {
    fn answer(
        &self,
        images: Tensor<Flex, 4>,
        originals: &[Image],
        options: &PredictOptions,
    ) -> anyhow::Result<Vec<Answer>>;
    fn pipeline(&self, validation: Pipeline) -> Pipeline;
    fn explain(
        &self,
        images: Tensor<Flex, 4>,
        request: &ExplainRequest,
    ) -> anyhow::Result<Vec<Map>>;
    fn classes(&self) -> &[String];
    fn export_args(&self) -> anyhow::Result<serde_json::Value>;
    /// The weights under timm's own names.
    fn timm_weights(&self, sd: StateDict) -> anyhow::Result<StateDict>;
}

struct Trained<A: Arch, T: Task> {
    arch: A,
    task: T,
    model: Model<Flex, A::Net<Flex>, T::Head<Flex>>,
    config: Config,
    classes: Vec<String>,
}

impl<A: Arch, T: Task> Loaded for Trained<A, T> {
    fn answer(
        &self,
        images: Tensor<Flex, 4>,
        originals: &[Image],
        options: &PredictOptions,
    ) -> anyhow::Result<Vec<Answer>> {
        self.task.predict(&self.model, images, originals, options)
    }

    fn pipeline(&self, validation: Pipeline) -> Pipeline {
        self.task.predict_pipeline(validation)
    }

    fn explain(
        &self,
        images: Tensor<Flex, 4>,
        request: &ExplainRequest,
    ) -> anyhow::Result<Vec<Map>> {
        if request.method == Method::Attention {
            if let Some(maps) = self
                .task
                .attention(&self.model, images.clone(), request.class)
            {
                return maps;
            }
            anyhow::ensure!(
                request.class.is_none(),
                "--class picks the class Grad-CAM explains (or a detector's box); this model's attention maps do not depend on a class (use --method gradcam)"
            );
        }
        if request.method != Method::Gradcam {
            return attention_maps(
                &self.model.encoder,
                images,
                request.method,
                (request.fusion, request.discard),
                &self.config,
            )
            .context("this backbone has no attention to draw; use --method gradcam");
        }
        // Grad-CAM differentiates: the same weights on the autodiff backend.
        let device = Default::default();
        let fresh = Model::new(
            self.arch.init::<Grad>(&device),
            self.task.head::<Grad>(self.arch.shape(), &device),
        );
        let model = apply_state_dict(
            fresh,
            &state_dict(&self.model),
            "the trial's weights",
            &device,
        )?;
        self.task
            .gradcam(&model, Tensor::from_inner(images), request.class)
    }

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn export_args(&self) -> anyhow::Result<serde_json::Value> {
        self.task.export_args(
            &self.config,
            &self.classes,
            self.arch.timm_model()?,
            self.arch.shape(),
        )
    }

    fn timm_weights(&self, sd: StateDict) -> anyhow::Result<StateDict> {
        self.task.export_weights(self.arch.to_timm(sd))
    }
}

/// A model ready to answer, with what it needs to read images.
pub struct Predictor {
    loaded: Box<dyn Loaded>,
    pipeline: Pipeline,
    max_pixels: u64,
    /// How volumes are cut into the slices the model was trained on.
    slicing: Slicing,
    /// The input normalisation's mean and std, to undo for display.
    normalization: Option<(Vec<f64>, Vec<f64>)>,
    /// The weights file, for messages.
    pub weights: PathBuf,
    /// The trial the weights belong to, when known.
    pub trial: Option<String>,
}

/// What `vitrun explain` draws.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExplainRequest {
    pub method: Method,
    /// The class index to explain (default: the model's answer).
    pub class: Option<usize>,
    pub fusion: Fusion,
    pub discard: f32,
}

/// One image's explanation: the image as the model saw it, and the map over it.
#[derive(Debug, Clone, PartialEq)]
pub struct Explained {
    pub image: PathBuf,
    pub input: Image,
    pub map: Map,
}

/// One image's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub image: PathBuf,
    pub answer: Answer,
}

/// Class names from the trial folder's `classes.json`, else from opening the dataset.
fn class_names<T: Targets>(
    trial_dir: Option<&TrialDir>,
    config: &Config,
) -> anyhow::Result<Vec<String>> {
    if let Some(file) = trial_dir.map(TrialDir::classes).filter(|f| f.is_file()) {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        return serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JSON list of class names", file.display()));
    }
    Ok(data::open(config, T::KIND)
        .context("cannot tell the class names: the trial folder has no classes.json and the dataset does not open")?
        .classes)
}

/// Loads the model `config` describes from `weights`, with its task and class names.
fn load(
    config: &Config,
    weights: &Path,
    trial_dir: Option<&TrialDir>,
) -> anyhow::Result<Box<dyn Loaded>> {
    struct ForArch<'a> {
        config: &'a Config,
        weights: &'a Path,
        trial_dir: Option<&'a TrialDir>,
    }
    struct ForTask<'a, A: Arch> {
        at: ForArch<'a>,
        arch: A,
    }
    impl<'a> ArchTask for ForArch<'a> {
        type Output = anyhow::Result<Box<dyn Loaded>>;
        fn run<A: Arch>(self, arch: A) -> Self::Output {
            let kind = self.config.head.task;
            with_task(kind, ForTask { at: self, arch })
        }
    }
    impl<A: Arch> TaskWork for ForTask<'_, A> {
        type Output = anyhow::Result<Box<dyn Loaded>>;
        fn run<T: Task>(self) -> Self::Output {
            let ForArch {
                config,
                weights,
                trial_dir,
            } = self.at;
            let classes = class_names::<T::Targets>(trial_dir, config)?;
            let task = T::new(config, &classes)?;
            let device = Default::default();
            let model = crate::model::load(
                self.arch.init::<Flex>(&device),
                task.head::<Flex>(self.arch.shape(), &device),
                weights,
                &device,
            )?;
            Ok(Box::new(Trained::<A, T> {
                arch: self.arch,
                task,
                model,
                config: config.clone(),
                classes,
            }))
        }
    }
    with_arch(
        config,
        ForArch {
            config,
            weights,
            trial_dir,
        },
    )
}

impl Predictor {
    /// A trial id or prefix, or an experiment or sweep (its best trial by its main metric),
    /// from the store in `runs_dir`.
    pub fn from_store(runs_dir: &Path, target: &str) -> anyhow::Result<Predictor> {
        let path = RunsDir::new(runs_dir).store();
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
        let weights = dir.weights().with_context(|| {
            format!(
                "trial {} has no checkpoint in {} (best/ or last/)",
                best.summary.id,
                dir.path().display()
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
            .map(TrialDir::at)
            .find(|d| d.classes().is_file());
        Self::new(config, weights, trial_dir.as_ref(), None)
    }

    /// How images are resized to the model's input, in words.
    pub fn resize(&self) -> String {
        self.pipeline.describe_resize()
    }

    fn new(
        config: &Config,
        weights: PathBuf,
        trial_dir: Option<&TrialDir>,
        trial: Option<String>,
    ) -> anyhow::Result<Predictor> {
        let loaded = load(config, &weights, trial_dir)?;
        let validation = Pipeline::val(
            &config.augment,
            config.data.image_size,
            config.data.channels,
        )
        .with_interpolation(config.data.interpolation);
        Ok(Predictor {
            pipeline: loaded.pipeline(validation),
            loaded,
            max_pixels: config.data.max_image_pixels,
            slicing: Slicing::of(&config.data),
            normalization: crate::task::denorm(config).map(|(m, s)| (m.to_vec(), s.to_vec())),
            weights,
            trial,
        })
    }

    /// What `vitrun export` writes beside the weights; an error when the task cannot export.
    pub fn export_args(&self) -> anyhow::Result<serde_json::Value> {
        self.loaded.export_args()
    }

    /// Labels a NIfTI volume slice by slice (its windowing and slice axis as in training):
    /// the label volume on its grid, x fastest, with its grid and affine.
    pub fn predict_volume(
        &self,
        path: &Path,
        options: &PredictOptions,
        batch: usize,
    ) -> anyhow::Result<(Volume, Vec<u8>)> {
        let volume = nifti::read(path, self.max_pixels)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let slices = slice_images(&volume, self.slicing);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let mut labels = Vec::with_capacity(slices.len());
        let (c, s) = (self.pipeline.channels, self.pipeline.size);
        let options = PredictOptions {
            probs: false,
            files: false,
            ..*options
        };
        for chunk in slices.chunks(batch.max(1)) {
            let data: Vec<f32> = chunk
                .iter()
                .flat_map(|img| self.pipeline.apply(img.clone(), &mut rng).image.data)
                .collect();
            let x = Tensor::from_data(
                TensorData::new(data, [chunk.len(), c, s, s]),
                &Default::default(),
            );
            for answer in self.loaded.answer(x, chunk, &options)? {
                labels.push(answer.labels.with_context(|| {
                    format!(
                        "{}: a volume is labelled by a segmentation model, and this one does not label pixels",
                        path.display()
                    )
                })?);
            }
        }
        let stacked = stack(volume.dims, self.slicing.axis, &labels);
        Ok((volume, stacked))
    }

    /// The normalisation to undo to show the model's input.
    pub fn denorm(&self) -> Option<(&[f64], &[f64])> {
        self.normalization
            .as_ref()
            .map(|(m, s)| (m.as_slice(), s.as_slice()))
    }

    /// The model's class names.
    pub fn classes(&self) -> &[String] {
        self.loaded.classes()
    }

    /// The model's input of each image (the pipeline's output), as one batch; an unreadable
    /// image gives its error in its place.
    fn inputs(&self, images: &[PathBuf]) -> (Vec<Result<Image, String>>, Option<Tensor<Flex, 4>>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let inputs: Vec<Result<Image, String>> = images
            .iter()
            .map(|p| {
                folder::decode(p, self.max_pixels)
                    .map(|image| self.pipeline.apply(image, &mut rng).image)
                    .map_err(|e| e.to_string())
            })
            .collect();
        let good: Vec<&Image> = inputs.iter().filter_map(|i| i.as_ref().ok()).collect();
        if good.is_empty() {
            return (inputs, None);
        }
        let (c, s) = (self.pipeline.channels, self.pipeline.size);
        let data: Vec<f32> = good.iter().flat_map(|i| i.data.iter().copied()).collect();
        let x = Tensor::from_data(
            TensorData::new(data, [good.len(), c, s, s]),
            &Default::default(),
        );
        (inputs, Some(x))
    }

    /// The maps `request` asks for of `images`, as one batch; an unreadable image gives its
    /// error in its place.
    pub fn explain(
        &self,
        images: &[PathBuf],
        request: &ExplainRequest,
    ) -> anyhow::Result<Vec<Result<Explained, String>>> {
        let (inputs, batch) = self.inputs(images);
        let mut maps = match batch {
            Some(x) => self.loaded.explain(x, request)?.into_iter(),
            None => Vec::new().into_iter(),
        };
        Ok(images
            .iter()
            .zip(inputs)
            .map(|(path, input)| {
                let input = input?;
                let map = maps.next().ok_or("the model gave no map")?;
                Ok(Explained {
                    image: path.clone(),
                    input,
                    map,
                })
            })
            .collect())
    }

    /// A state dict of this model under timm's own names.
    pub fn timm_weights(&self, sd: StateDict) -> anyhow::Result<StateDict> {
        self.loaded.timm_weights(sd)
    }

    /// Answers for `images` as one batch; an unreadable image gives its error in its place.
    /// A task that gives no answer from `vitrun predict` is an error of the whole call.
    pub fn predict(
        &self,
        images: &[PathBuf],
        options: &PredictOptions,
    ) -> anyhow::Result<Vec<Result<Prediction, String>>> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let mut originals = Vec::new();
        let decoded: Vec<Result<(), String>> = images
            .iter()
            .map(|p| {
                folder::decode(p, self.max_pixels)
                    .map(|image| originals.push(image))
                    .map_err(|e| e.to_string())
            })
            .collect();
        let mut answers = Vec::new().into_iter();
        if !originals.is_empty() {
            let (c, s) = (self.pipeline.channels, self.pipeline.size);
            let data: Vec<f32> = originals
                .iter()
                .flat_map(|img| self.pipeline.apply(img.clone(), &mut rng).image.data)
                .collect();
            let x = Tensor::<Flex, 4>::from_data(
                TensorData::new(data, [originals.len(), c, s, s]),
                &Default::default(),
            );
            answers = self.loaded.answer(x, &originals, options)?.into_iter();
        }
        Ok(images
            .iter()
            .zip(decoded)
            .map(|(path, d)| {
                d.and_then(|_| {
                    let answer = answers.next().ok_or("the model gave no answer")?;
                    Ok(Prediction {
                        image: path.clone(),
                        answer,
                    })
                })
            })
            .collect())
    }
}

fn is_image(path: &Path) -> bool {
    is_volume(path)
        || path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

/// The image files the arguments name: files as given, folders searched recursively for
/// `.png`/`.jpg`/`.jpeg` and NIfTI volumes (`.nii`, `.nii.gz`), in sorted order.
pub fn images(args: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    use std::os::unix::fs::MetadataExt;
    /// Walks `dir`, each folder once however many links lead to it (`seen`: device and inode),
    /// so that symlink loops end.
    fn walk(
        dir: &Path,
        seen: &mut std::collections::HashSet<(u64, u64)>,
        out: &mut Vec<PathBuf>,
    ) -> anyhow::Result<()> {
        let meta = std::fs::metadata(dir)
            .with_context(|| format!("cannot read folder {}", dir.display()))?;
        if !seen.insert((meta.dev(), meta.ino())) {
            return Ok(());
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read folder {}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, seen, out)?;
            } else if is_image(&p) && p.is_file() {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for a in args {
        if a.is_dir() {
            walk(a, &mut seen, &mut out)?;
        } else {
            anyhow::ensure!(a.exists(), "{}: no such image or folder", a.display());
            out.push(a.clone());
        }
    }
    Ok(out)
}
