//! The distillation teacher (`[distill] teacher`): a classifier of any backbone vitrun builds,
//! loaded once before the trial is claimed, run without autodiff and in eval mode (BatchNorm on
//! its running statistics) on the very images the student sees, resized to its own input size
//! when that differs, with the filter its own training images were resized with
//! (`data.interpolation`). Its weights are never updated: it is not a parameter of the student.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::tensor::module::{adaptive_avg_pool2d, interpolate};
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Tensor, TensorData};

use crate::config::{Config, Interpolation, ModelConfig};
use crate::kernels::VitKernels;
use crate::model::{
    apply_state_dict, read_state_dict, with_arch, Arch, ArchTask, Backbone, Coverage, Model,
};
use crate::task::classification::ClassifierHead;
use crate::track::Store;

use super::teacher_cache::{input_key, teacher_key, Miss, Stored, TeacherCache};

/// A classifier the teacher is: images in, class logits out.
trait TeacherNet<K: VitKernels> {
    fn logits(&self, images: Tensor<K, 4>) -> Tensor<K, 2>;
}

impl<K: VitKernels, E: Backbone<K>> TeacherNet<K> for Model<K, E, ClassifierHead<K>> {
    fn logits(&self, images: Tensor<K, 4>) -> Tensor<K, 2> {
        self.forward(images)
    }
}

/// A loaded teacher, on backend `K` (a training backend's inner one).
pub struct Teacher<K: VitKernels> {
    net: Box<dyn TeacherNet<K>>,
    /// The image side the teacher takes.
    image_size: usize,
    /// The filter the student's images are resized to it with.
    filter: Interpolation,
    /// Its classes (the student's, in the same order).
    pub classes: usize,
    /// What it is, for the log and the store: `teacher resnet50 at 32 px from runs/…`.
    pub describe: String,
    /// Its weights file.
    pub file: PathBuf,
    /// Its outputs kept on disk (`distill.cache`).
    cache: Option<TeacherCache>,
    tally: Cell<TeacherTally>,
}

/// What the teacher did since the tally was last taken: images it classified, images whose
/// outputs came from the cache, and cache entries that failed their checks or could not be
/// written (with the last reason).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TeacherTally {
    pub forwards: usize,
    pub cached: usize,
    pub rejected: usize,
    pub unwritten: usize,
    pub last_problem: Option<String>,
}

impl<K: VitKernels> Teacher<K> {
    /// The teacher `config`'s `[distill]` names, checked against the student's `classes`;
    /// `None` without one, or under `type = "none"` (a sweep's control arm names it unasked). A missing trial, a file that does not load as its architecture,
    /// or other classes than the student's is an error naming the key and the fix.
    pub fn load(
        config: &Config,
        classes: &[String],
        store: Option<&Store>,
        device: &K::Device,
    ) -> anyhow::Result<Option<Teacher<K>>> {
        let Some(spec) = config.distill.teacher.as_deref() else {
            return Ok(None);
        };
        if config.distill.kind == crate::config::DistillType::None {
            return Ok(None);
        }
        let runs_dir = Path::new(&config.train.runs_dir);
        let path = super::pretrained::source("distill.teacher", spec, store, runs_dir)?;
        let (model, image_size, filter, names) = if spec.starts_with("trial:") {
            trial_teacher(spec, &path)?
        } else {
            let model = config
                .teacher_model()
                .context("distill.teacher_model does not name an architecture vitrun builds")?;
            let size = config
                .distill
                .teacher_image_size
                .unwrap_or(config.data.image_size);
            (model, size, config.data.interpolation, None)
        };
        if let Some(names) = &names {
            anyhow::ensure!(
                names.as_slice() == classes,
                "distill.teacher = {spec:?}: the teacher's classes {names:?} are not the data's {classes:?}; distil from a teacher trained on these classes, in this order"
            );
        }
        let sd = read_state_dict(&path).with_context(|| format!("distill.teacher = {spec:?}"))?;
        if let Some((name, _)) = sd
            .iter()
            .find(|(_, t)| t.data.iter().any(|v| !v.is_finite()))
        {
            anyhow::bail!(
                "distill.teacher {}: tensor {name} holds NaN or infinite values; use a checkpoint saved before its run diverged",
                path.display()
            );
        }
        let teacher_config = Config {
            model: model.clone(),
            data: crate::config::DataConfig {
                image_size,
                ..config.data.clone()
            },
            ..Config::default()
        };
        let net = with_arch(
            &teacher_config,
            Build::<K> {
                sd,
                path: &path,
                spec,
                classes: classes.len(),
                device,
            },
        )?;
        let arch = arch_name(&model);
        let describe = format!("teacher {arch} at {image_size} px from {}", path.display());
        let cache = if config.distill.cache {
            let built = format!(
                "{}|{image_size}|{}",
                serde_json::to_string(&model)?,
                filter.name()
            );
            let key = teacher_key(&path, &built, &K::name(device))
                .with_context(|| format!("distill.cache: cannot read {}", path.display()))?;
            let stored = Stored::for_kind(config.distill.kind);
            let cache = TeacherCache::open(runs_dir, key, stored, classes.len(), &describe)
                .with_context(|| {
                    format!(
                        "distill.cache: cannot create the teacher cache in {}; make the runs folder writable, or set distill.cache = false",
                        runs_dir.display()
                    )
                })?;
            Some(cache)
        } else {
            None
        };
        Ok(Some(Teacher {
            net,
            image_size,
            filter,
            classes: classes.len(),
            describe,
            file: path,
            cache,
            tally: Cell::default(),
        }))
    }

    /// The teacher's class logits `[batch, classes]` (row-major) of the images `pixels`
    /// (`dims` = `[batch, channels, h, w]`): from the cache when it holds them, else computed
    /// (and kept there). With the cache on they are the cache's form of them (f16-rounded,
    /// or one-hot at the top class), hit or miss alike.
    pub fn logits(&self, pixels: &[f32], dims: [usize; 4], device: &K::Device) -> Vec<f32> {
        let mut tally = self.tally.take();
        let Some(cache) = &self.cache else {
            tally.forwards += dims[0];
            self.tally.set(tally);
            return self.forward(pixels, dims, device);
        };
        let input = input_key(pixels, dims);
        let replace = match cache.read(&input, dims[0]) {
            Ok(logits) => {
                tally.cached += dims[0];
                self.tally.set(tally);
                return logits;
            }
            Err(Miss::Absent) => false,
            Err(Miss::Rejected(why)) => {
                tally.rejected += 1;
                tally.last_problem = Some(format!("an entry was recomputed: {why}"));
                true
            }
        };
        let logits = self.forward(pixels, dims, device);
        tally.forwards += dims[0];
        if let Err(e) = cache.write(&input, &logits, replace) {
            tally.unwritten += 1;
            tally.last_problem = Some(format!("an entry could not be written: {e}"));
        }
        self.tally.set(tally);
        cache.stored().settle(&logits, self.classes)
    }

    /// What the teacher did since the last call.
    pub fn take_tally(&self) -> TeacherTally {
        self.tally.take()
    }

    /// The network's class logits of images `dims`, resized to its input size when they
    /// differ.
    fn forward(&self, pixels: &[f32], dims: [usize; 4], device: &K::Device) -> Vec<f32> {
        let images = Tensor::<K, 4>::from_data(TensorData::new(pixels.to_vec(), dims), device);
        let images = resize(images, self.image_size, self.filter);
        self.net
            .logits(images)
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap_or_default()
    }
}

/// `images` resized to `size × size` with `filter`: bilinear and bicubic interpolate (no
/// antialiasing, as a tensor resize on the device); area averages the pixels each output covers
/// when shrinking (PIL's box filter) and repeats them when growing.
pub(crate) fn resize<K: burn::tensor::backend::Backend>(
    images: Tensor<K, 4>,
    size: usize,
    filter: Interpolation,
) -> Tensor<K, 4> {
    let [_, _, h, w] = images.dims();
    if [h, w] == [size, size] {
        return images;
    }
    let mode = match filter {
        Interpolation::Area if h >= size && w >= size => {
            return adaptive_avg_pool2d(images, [size, size]);
        }
        Interpolation::Area => InterpolateMode::Nearest,
        Interpolation::Bilinear => InterpolateMode::Bilinear,
        Interpolation::Bicubic => InterpolateMode::Bicubic,
    };
    interpolate(
        images,
        [size, size],
        InterpolateOptions {
            mode,
            align_corners: false,
        },
    )
}

/// A model's name for people: its ViT preset, else its architecture.
fn arch_name(model: &ModelConfig) -> String {
    model
        .preset
        .clone()
        .filter(|_| model.arch == crate::config::ArchKind::Vit)
        .unwrap_or_else(|| model.arch.name().to_string())
}

/// What `vitrun check` says of the teacher `config` names: its architecture and input size,
/// whether the student's images are resized to it, which images it sees, and the cache.
/// `None` without a teacher in use; a teacher that cannot be found is said as such.
pub fn check_note(config: &Config, store: Option<&Store>) -> Option<String> {
    let d = &config.distill;
    let spec = d.teacher.as_deref()?;
    if d.kind == crate::config::DistillType::None {
        return Some(format!(
            "# distill: type = \"none\": the teacher {spec} is not loaded; both heads learn from the labels"
        ));
    }
    let found = if spec.starts_with("trial:") {
        let runs_dir = Path::new(&config.train.runs_dir);
        super::pretrained::source("distill.teacher", spec, store, runs_dir)
            .and_then(|path| trial_teacher(spec, &path))
            .map(|(model, size, filter, _)| (model, size, filter))
    } else {
        config
            .teacher_model()
            .map(|m| {
                let size = d.teacher_image_size.unwrap_or(config.data.image_size);
                (m, size, config.data.interpolation)
            })
            .context("distill.teacher_model names no architecture")
    };
    let (model, size, filter) = match found {
        Ok(found) => found,
        Err(e) => return Some(format!("# distill: teacher {spec}: {e:#}")),
    };
    let student = config.data.image_size;
    let resize = if size == student {
        "the student's size, no resize".to_string()
    } else {
        format!(
            "the student's {student} px images are resized to it on the fly ({}, the teacher's data.interpolation)",
            filter.name()
        )
    };
    let sees = match d.teacher_input {
        crate::config::TeacherInput::Unmixed => "before Mixup/CutMix",
        crate::config::TeacherInput::Mixed => "after Mixup/CutMix",
    };
    let cache = if d.cache {
        "its outputs are kept in the runs folder's .teacher-cache"
    } else {
        "no cache"
    };
    Some(format!(
        "# distill: teacher {} ({spec}) takes {size} px: {resize}; it sees the augmented batch {sees}; {cache}",
        arch_name(&model)
    ))
}

/// A trial teacher's model config, image size and class names, from its folder (its resolved
/// `config.toml` and `classes.json` beside the weights file `weights`).
fn trial_teacher(
    spec: &str,
    weights: &Path,
) -> anyhow::Result<(ModelConfig, usize, Interpolation, Option<Vec<String>>)> {
    let folder: PathBuf = weights
        .ancestors()
        .find(|p| p.join("config.toml").is_file())
        .map(Path::to_path_buf)
        .with_context(|| {
            format!(
                "distill.teacher = {spec:?}: no config.toml beside {}; the trial never started here",
                weights.display()
            )
        })?;
    let file = folder.join("config.toml");
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("distill.teacher = {spec:?}: cannot read {}", file.display()))?;
    let config: Config = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "distill.teacher = {spec:?}: {} does not parse ({e})",
            file.display()
        )
    })?;
    let config = Config::from_stored(&serde_json::to_string(&config)?, spec)
        .map_err(|e| anyhow::anyhow!("distill.teacher: {e} ({})", file.display()))?;
    anyhow::ensure!(
        config.head.task == crate::config::TaskKind::Classification,
        "distill.teacher = {spec:?}: that trial trains {:?}, not a classifier; a teacher gives class logits",
        config.head.task
    );
    let names_file = folder.join("classes.json");
    let names: Vec<String> = std::fs::read_to_string(&names_file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .with_context(|| {
            format!(
                "distill.teacher = {spec:?}: {} is missing or unreadable",
                names_file.display()
            )
        })?;
    Ok((
        config.model,
        config.data.image_size,
        config.data.interpolation,
        Some(names),
    ))
}

/// Builds the teacher network of an architecture and loads its weights by name.
struct Build<'a, K: VitKernels> {
    sd: crate::model::StateDict,
    path: &'a Path,
    spec: &'a str,
    classes: usize,
    device: &'a K::Device,
}

impl<K: VitKernels> ArchTask for Build<'_, K> {
    type Output = anyhow::Result<Box<dyn TeacherNet<K>>>;

    fn run<A: Arch>(self, arch: A) -> Self::Output {
        let mut coverage = Coverage::default();
        let sd = arch.adapt(self.sd, &mut coverage);
        if let Some(head) = sd.get("head.weight") {
            let rows = head.shape.first().copied().unwrap_or(0);
            anyhow::ensure!(
                rows == self.classes,
                "distill.teacher = {:?}: the teacher classifies {rows} classes and the data has {}; distil from a teacher trained on the data's classes",
                self.spec,
                self.classes
            );
        }
        let model = Model::new(
            arch.init::<K>(self.device),
            ClassifierHead::new(arch.shape(), self.classes, self.device),
        );
        let model = apply_state_dict(model, &sd, &self.path.display().to_string(), self.device)
            .with_context(|| {
                format!(
                    "distill.teacher = {:?} does not load as the teacher's architecture; name the right one in distill.teacher_model",
                    self.spec
                )
            })?;
        Ok(Box::new(model))
    }
}

#[cfg(test)]
mod resize_tests {
    use burn::backend::Flex;
    use burn::tensor::{Tensor, TensorData};

    use super::resize;
    use crate::config::Interpolation;

    fn image(side: usize) -> Tensor<Flex, 4> {
        let values: Vec<f32> = (0..side * side).map(|i| ((i * 7) % 11) as f32).collect();
        Tensor::from_data(
            TensorData::new(values, [1, 1, side, side]),
            &Default::default(),
        )
    }

    fn values(t: Tensor<Flex, 4>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec().unwrap()
    }

    /// The teacher's resize follows `data.interpolation`: area averages each 2×2 block when
    /// halving, the three filters give different images, and the same size is left alone.
    #[test]
    fn the_resize_follows_the_filter() {
        let input = values(image(8));
        let halved = values(resize(image(8), 4, Interpolation::Area));
        for (i, v) in halved.iter().enumerate() {
            let (y, x) = (2 * (i / 4), 2 * (i % 4));
            let block = [
                input[y * 8 + x],
                input[y * 8 + x + 1],
                input[(y + 1) * 8 + x],
                input[(y + 1) * 8 + x + 1],
            ];
            assert!((v - block.iter().sum::<f32>() / 4.0).abs() < 1e-5, "{i}");
        }
        let grown = |filter| values(resize(image(4), 8, filter));
        let (bilinear, bicubic, area) = (
            grown(Interpolation::Bilinear),
            grown(Interpolation::Bicubic),
            grown(Interpolation::Area),
        );
        assert!(bilinear != bicubic && bicubic != area && bilinear != area);
        let small = values(image(4));
        assert_eq!(
            area[0..2],
            [small[0], small[0]],
            "area repeats when growing"
        );
        assert_eq!(values(resize(image(4), 4, Interpolation::Bicubic)), small);
    }
}
