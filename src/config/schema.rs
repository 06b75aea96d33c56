//! The typed experiment schema: every key an experiment file may set, with its default.

use serde::{Deserialize, Serialize};

use super::device::DeviceSpec;
use super::exact::pair;

/// A whole experiment: what `vitrun run FILE` trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Experiment name; groups trials in the run store and names `runs/<name>/`.
    pub name: String,
    /// Seed for weights, data order, augmentation and dropout.
    pub seed: u64,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub head: HeadConfig,
    pub augment: AugmentConfig,
    pub optimizer: OptimizerConfig,
    pub finetune: FinetuneConfig,
    /// DeiT's distillation from a teacher (`[distill]`).
    pub distill: DistillConfig,
    pub train: TrainConfig,
    /// The `[sweep]` table, kept as written; see [`crate::config::SweepSpec`].
    pub sweep: Option<toml::Table>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "experiment".into(),
            seed: 0,
            data: DataConfig::default(),
            model: ModelConfig::default(),
            head: HeadConfig::default(),
            augment: AugmentConfig::default(),
            optimizer: OptimizerConfig::default(),
            finetune: FinetuneConfig::default(),
            distill: DistillConfig::default(),
            train: TrainConfig::default(),
            sweep: None,
        }
    }
}

/// Which dataset implementation reads the images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    /// Procedural side-view vehicles, generated on the fly (no files).
    Synthetic,
    /// `path/<class>/*.png|jpg`, or `path/train/<class>` + `path/val/<class>`.
    ImageFolder,
    /// MNIST-style IDX files (`train-images-idx3-ubyte[.gz]`, …) in `path`.
    Idx,
    /// Scenes of several vehicles with boxes and masks, generated (detection, segmentation).
    SyntheticScenes,
    /// Grey scan-like images with lesion masks, generated (binary segmentation).
    SyntheticLesions,
    /// `path/images/NAME.png|jpg` + `path/masks/NAME.png` of class ids, or both under `train/`
    /// and `val/` (segmentation).
    MaskFolder,
    /// Images in `path` with a COCO-style JSON of boxes in `annotations` (detection).
    Coco,
    /// NIfTI volumes `path/images/NAME.nii[.gz]` with label volumes `path/labels/NAME.nii[.gz]`
    /// (or the Decathlon's `imagesTr`/`labelsTr`), cut into slices (segmentation).
    Nifti,
}

impl DatasetKind {
    /// Every dataset kind.
    pub const ALL: [DatasetKind; 8] = [
        DatasetKind::Synthetic,
        DatasetKind::ImageFolder,
        DatasetKind::Idx,
        DatasetKind::SyntheticScenes,
        DatasetKind::SyntheticLesions,
        DatasetKind::MaskFolder,
        DatasetKind::Coco,
        DatasetKind::Nifti,
    ];

    /// The tasks whose targets this dataset gives.
    pub fn tasks(self) -> &'static [TaskKind] {
        match self {
            DatasetKind::Synthetic | DatasetKind::ImageFolder | DatasetKind::Idx => {
                &[TaskKind::Classification]
            }
            DatasetKind::SyntheticScenes => &[TaskKind::Detection, TaskKind::Segmentation],
            DatasetKind::SyntheticLesions | DatasetKind::MaskFolder | DatasetKind::Nifti => {
                &[TaskKind::Segmentation]
            }
            DatasetKind::Coco => &[TaskKind::Detection],
        }
    }
}

/// `[data]`: where images come from and how many.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    pub dataset: DatasetKind,
    /// Dataset folder (image_folder, idx).
    pub path: Option<String>,
    /// Class names, in label order; unset means the dataset's own (folder, vehicle or IDX names).
    pub classes: Option<Vec<String>>,
    /// Side of the square model input, in pixels.
    pub image_size: usize,
    /// Channels fed to the model: 3 (RGB) or 1 (grey).
    pub channels: usize,
    /// Fraction of the training images held out for validation when the dataset has no split.
    pub val_split: f64,
    /// Training images: generated count (synthetic, default 2000) or a cap (others; unset = all).
    pub train_size: Option<usize>,
    /// Validation images: generated count (synthetic, default 500) or a cap (others; unset = all).
    pub val_size: Option<usize>,
    /// Skip unreadable images (counted in the log and the store) instead of failing.
    pub skip_bad: bool,
    /// Decode/augment threads (0 = as many as the trial's threads).
    pub workers: usize,
    /// Batches prepared ahead of the training step.
    pub prefetch: usize,
    /// Draws of each training image per epoch, each differently augmented, with the epoch's
    /// length kept (DeiT's repeated augmentation, `RASampler`; 1 = off, DeiT uses 3).
    pub repeated_aug: usize,
    /// Images declaring more pixels than this are refused before decoding (a decompression
    /// bomb guard, as PIL's `MAX_IMAGE_PIXELS`); skipped and counted under `skip_bad`.
    pub max_image_pixels: u64,
    /// Most vehicles in one synthetic scene (each scene has 1 to this many).
    pub max_objects: usize,
    /// COCO-style JSON of the training images' boxes (coco).
    pub annotations: Option<String>,
    /// COCO-style JSON of the validation images' boxes (coco; unset = hold out `val_split`).
    pub val_annotations: Option<String>,
    /// Folder of the validation images (coco; unset = `path`).
    pub val_path: Option<String>,
    /// How images are resized: vitrun's own bilinear, or PIL's bicubic or area filter with
    /// torchvision's sizes (timm's pipeline, to match a timm-trained model's preprocessing).
    pub interpolation: Interpolation,
    /// NIfTI volumes: the axis slices are cut across (0 = x, 1 = y, 2 = z; 2 is axial for the
    /// usual RAS or LPS volumes).
    pub slice_axis: usize,
    /// NIfTI volumes: the intensity range mapped to [0, 1] (a CT window, e.g. [-100, 240]);
    /// unset: each volume's `window_percentiles`.
    pub window: Option<[f64; 2]>,
    /// NIfTI volumes: the percentiles of each volume's intensities mapped to 0 and 1 when
    /// `window` is unset (nnU-Net clips at 0.5 and 99.5).
    pub window_percentiles: [f64; 2],
}

/// `data.interpolation`: the resize filter of the training crop and the validation resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// vitrun's bilinear, averaging over the covered area when shrinking by more than 2×.
    #[default]
    Bilinear,
    /// PIL's bicubic (a = −0.5, antialiased), as timm's default pipeline.
    Bicubic,
    /// PIL's box filter: each output pixel the mean of the inputs it covers.
    Area,
}

impl Interpolation {
    /// The name the config uses (`bilinear`, `bicubic`, `area`).
    pub fn name(self) -> &'static str {
        match self {
            Interpolation::Bilinear => "bilinear",
            Interpolation::Bicubic => "bicubic",
            Interpolation::Area => "area",
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dataset: DatasetKind::Synthetic,
            path: None,
            classes: None,
            image_size: 32,
            channels: 3,
            val_split: 0.1,
            train_size: None,
            val_size: None,
            skip_bad: false,
            workers: 0,
            prefetch: 4,
            repeated_aug: 1,
            max_image_pixels: DEFAULT_MAX_IMAGE_PIXELS,
            max_objects: 4,
            annotations: None,
            val_annotations: None,
            val_path: None,
            interpolation: Interpolation::Bilinear,
            slice_axis: 2,
            window: None,
            window_percentiles: [0.5, 99.5],
        }
    }
}

/// Most draws of one sample per epoch that `data.repeated_aug` allows.
pub const MAX_REPEATED_AUG: usize = 16;

/// PIL's default `Image.MAX_IMAGE_PIXELS`.
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 89_478_485;

/// Token pooling before the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The class token after the final norm (timm `global_pool="token"`).
    Cls,
    /// Mean of the patch tokens, then `fc_norm` (timm `global_pool="avg"`).
    Mean,
}

/// How a conv stem stage halves the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StemKind {
    /// A 3×3 stride-2 conv + ReLU.
    Strided,
    /// A 3×3 stride-1 conv + ReLU, then a 3×3 stride-2 max pool.
    Pooled,
}

/// What normalises each conv stem conv's output before its ReLU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StemNorm {
    /// Nothing: conv + ReLU.
    None,
    /// BatchNorm (PyTorch's `BatchNorm2d`: batch statistics while training, running ones,
    /// momentum 0.1, in evaluation), as in ResNet stems.
    Batch,
}

/// `[model]`: the ViT's shape. A preset fills the dims; explicit keys override it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// The backbone: `vit` (timm's VisionTransformer) or a timm ResNet (`resnet18`,
    /// `resnet26`, `resnet34`, `resnet50`).
    pub arch: ArchKind,
    /// A ResNet's four stage widths (timm's `channels`; the stem stays 64 wide); empty:
    /// timm's 64, 128, 256, 512.
    pub widths: Vec<usize>,
    /// `vit-tiny|vit-small|vit-base|deit-tiny|deit-small|deit-base`, or none for explicit dims.
    pub preset: Option<String>,
    pub embed_dim: Option<usize>,
    pub depth: Option<usize>,
    pub num_heads: Option<usize>,
    pub patch_size: usize,
    /// A convolutional stem in place of the patchify conv (Xiao et al. 2021, "Early
    /// convolutions help transformers see better"): one stage per entry, a 3×3 conv + ReLU
    /// with that many output channels that halves the image (see `conv_stem_kind`), then a 1×1
    /// conv to `embed_dim`; `log2(patch_size)` stages. Empty: timm's patchify conv.
    pub conv_stem: Vec<usize>,
    /// How each conv stem stage halves the image: a stride-2 conv (`strided`, Xiao et al.) or a
    /// stride-1 conv followed by a 3×3 stride-2 max pool (`pooled`, the tokenizer of Hassani et
    /// al. 2021's compact convolutional transformers).
    pub conv_stem_kind: StemKind,
    /// 3×3 convs (each + ReLU) per conv stem stage: the first changes the channels (and halves
    /// the image when strided), the others keep both. 1: one conv per stage.
    pub conv_stem_depth: usize,
    /// A norm between each stem conv and its ReLU: `none` or `batch` (BatchNorm, whose running
    /// statistics are saved in checkpoints and averaged by `[train.ema]`).
    pub conv_stem_norm: StemNorm,
    pub mlp_ratio: f64,
    /// Dropout after positions, attention projection and MLP (timm `drop_rate`).
    pub dropout: f64,
    /// Dropout on the attention weights (timm `attn_drop_rate`).
    pub attn_dropout: f64,
    /// Stochastic depth rate of the last block, linear from 0 (timm `drop_path_rate`).
    pub drop_path: f64,
    pub pooling: Pooling,
    /// Adds DeiT's distillation token and second head.
    pub distilled: bool,
    /// Weights to start from: a timm/DeiT `.safetensors`, `.pth` or `.bin`, a vitrun checkpoint
    /// (its file or folder), or `trial:ID` (a trial id or prefix in this run store).
    pub pretrained: Option<String>,
    /// Refuse a `pretrained` file that does not cover the whole encoder.
    pub pretrained_strict: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            arch: ArchKind::Vit,
            widths: Vec::new(),
            preset: Some("vit-tiny".into()),
            embed_dim: None,
            depth: None,
            num_heads: None,
            patch_size: 4,
            conv_stem: Vec::new(),
            conv_stem_kind: StemKind::Strided,
            conv_stem_depth: 1,
            conv_stem_norm: StemNorm::None,
            mlp_ratio: 4.0,
            dropout: 0.0,
            attn_dropout: 0.0,
            drop_path: 0.0,
            pooling: Pooling::Cls,
            distilled: false,
            pretrained: None,
            pretrained_strict: true,
        }
    }
}

/// How the student's distillation head learns from the teacher (DeiT's
/// `--distillation-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DistillType {
    /// No teacher: a distilled model trains both heads on the labels.
    None,
    /// `(1 − α)·CE(cls, y) + α·τ²·KL(dist/τ ‖ teacher/τ)`.
    Soft,
    /// `(1 − α)·CE(cls, y) + α·CE(dist, argmax teacher)`.
    Hard,
}

/// The teacher's architecture when `teacher` is a file: a name (`"resnet50"`, a ViT preset
/// such as `"deit-small"`) or a table of the same keys as `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TeacherModel {
    Name(String),
    Table(Box<ModelConfig>),
}

/// `[distill]`: DeiT's distillation through the student's distillation token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistillConfig {
    /// `none`, `soft` or `hard`.
    #[serde(rename = "type")]
    pub kind: DistillType,
    /// The teacher: `trial:ID` (a trial of this run store: its best weights and model config),
    /// or a timm/DeiT/vitrun checkpoint file with its architecture in `teacher_model`.
    pub teacher: Option<String>,
    /// The architecture of a teacher file.
    pub teacher_model: Option<TeacherModel>,
    /// The input size of a teacher file, when it differs from `data.image_size` (its images
    /// are resized to it on the fly); a trial teacher has its own.
    pub teacher_image_size: Option<usize>,
    /// The distillation term's weight (DeiT's `--distillation-alpha`).
    pub alpha: f64,
    /// The soft distillation's temperature (DeiT's `--distillation-tau`).
    pub tau: f64,
    /// Which images the teacher sees: the augmented batch before Mixup/CutMix, or after.
    pub teacher_input: TeacherInput,
    /// Keeps the teacher's outputs in the run folder, so students that see the same images
    /// (a sweep's arms of one seed) run the teacher once (hard: its top class; soft: f16 logits).
    pub cache: bool,
}

/// The images the teacher classifies (`distill.teacher_input`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeacherInput {
    /// The augmented images before Mixup/CutMix mixes them.
    Unmixed,
    /// The images the student sees, mixed (what DeiT's `engine.py` hands its teacher).
    Mixed,
}

impl Default for DistillConfig {
    fn default() -> Self {
        DistillConfig {
            kind: DistillType::None,
            teacher: None,
            teacher_model: None,
            teacher_image_size: None,
            alpha: 0.5,
            tau: 1.0,
            teacher_input: TeacherInput::Unmixed,
            cache: false,
        }
    }
}

/// Preset names and their timm dims (embed dim, depth, heads).
pub const PRESETS: [(&str, usize, usize, usize); 6] = [
    ("vit-tiny", 192, 12, 3),
    ("vit-small", 384, 12, 6),
    ("vit-base", 768, 12, 12),
    ("deit-tiny", 192, 12, 3),
    ("deit-small", 384, 12, 6),
    ("deit-base", 768, 12, 12),
];

/// The task a model is trained for (`head.task`); each task is a module of `task`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Classification,
    Detection,
    Segmentation,
}

/// The backbone a model is built on (`model.arch`); each backbone is a module of `model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchKind {
    /// timm's `VisionTransformer` (ViT, DeiT), shaped by `preset` and the dims below.
    Vit,
    /// timm's ResNet-18 (BasicBlocks 2-2-2-2).
    Resnet18,
    /// timm's ResNet-26 (Bottlenecks 2-2-2-2).
    Resnet26,
    /// timm's ResNet-34 (BasicBlocks 3-4-6-3).
    Resnet34,
    /// timm's ResNet-50 (Bottlenecks 3-4-6-3).
    Resnet50,
}

/// Each architecture with the name `model.arch` spells it with.
const ARCH_NAMES: [(ArchKind, &str); 5] = [
    (ArchKind::Vit, "vit"),
    (ArchKind::Resnet18, "resnet18"),
    (ArchKind::Resnet26, "resnet26"),
    (ArchKind::Resnet34, "resnet34"),
    (ArchKind::Resnet50, "resnet50"),
];

impl ArchKind {
    /// The architecture `model.arch = name` picks.
    pub fn from_name(name: &str) -> Option<ArchKind> {
        ARCH_NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(kind, _)| *kind)
    }

    /// The name `model.arch` spells it with.
    pub fn name(self) -> &'static str {
        ARCH_NAMES
            .iter()
            .find(|(kind, _)| *kind == self)
            .map_or("vit", |(_, name)| name)
    }
}

/// How the mask transformer turns each patch's cosines with the class embeddings into logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskNorm {
    /// Centred over the classes and divided by CLIP's temperature 0.07, then scaled and
    /// shifted per class: learns from scratch whatever the number of classes.
    Tempered,
    /// Segmenter's LayerNorm over the classes: the logits span at most ±√(classes − 1), made
    /// for many classes (ADE20K's 150); with a few it caps confidence, and a model trained from
    /// scratch on six classes stayed at the class prior (BENCHMARKS.md).
    Segmenter,
}

/// A segmentation decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decoder {
    /// Segmenter's linear decoder: the head classifies each patch token, bilinear upsampling.
    Linear,
    /// Progressive transposed convolutions from the patch grid to the input's resolution, the
    /// head classifying each pixel's features.
    Conv,
    /// Segmenter's mask transformer: class embeddings decoded with the patch tokens by
    /// `head.layers` transformer layers, masks from their normalised products.
    Mask,
    /// A U-Net decoder (UNETR's idea): upsampling stages fed skip connections from the
    /// encoder blocks `head.skip_blocks` and from the image.
    Unet,
}

/// `[head]`: which task the model is trained for, and that task's options (each unset unless
/// the file sets it; setting one of another task is an error).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadConfig {
    pub task: TaskKind,
    /// Segmentation: the decoder (default `linear`).
    pub decoder: Option<Decoder>,
    /// Segmentation: weight of the soft Dice term added to the pixel cross-entropy (default 0).
    pub dice_weight: Option<f64>,
    /// Segmentation: a cross-entropy weight per class, in class order (default all 1).
    pub class_weights: Option<Vec<f64>>,
    /// Segmentation with `decoder = "unet"`: the encoder blocks (numbered from 1) whose
    /// tokens feed the decoder's stages, one per stage at most (default: evenly spaced, as
    /// UNETR's 3, 6, 9 of 12).
    pub skip_blocks: Option<Vec<usize>>,
    /// Segmentation with `decoder = "mask"`: how patch–class cosines become logits
    /// (default `tempered`; `segmenter` is Segmenter's LayerNorm over the classes).
    pub mask_norm: Option<MaskNorm>,
    /// Detection: object queries, the most objects an image can be given (default 12).
    pub queries: Option<usize>,
    /// Detection: transformer decoder layers (default 3); segmentation with `decoder =
    /// "mask"`: the mask transformer's layers (default 2, Segmenter's).
    pub layers: Option<usize>,
    /// Detection: groups of queries decoded while training, each matched on its own (Group
    /// DETR; default 1 = plain DETR).
    pub groups: Option<usize>,
    /// Detection: the weight of the cross-entropy of queries matched to no object (DETR's
    /// `eos_coef`, default 0.1).
    pub no_object_weight: Option<f64>,
    /// Detection: the weight of the class cross-entropy, in the loss and the matching cost
    /// (default 1).
    pub ce_weight: Option<f64>,
    /// Detection: the weight of the L1 box distance (default 5).
    pub l1_weight: Option<f64>,
    /// Detection: the weight of the generalized-IoU loss (default 2).
    pub giou_weight: Option<f64>,
    /// Detection: add the loss of every decoder layer, not only the last (default true).
    pub aux_loss: Option<bool>,
    /// Detection: the weight of the dense auxiliary loss classifying each patch token by the
    /// box it lies in (default 1; 0 turns it off).
    pub patch_weight: Option<f64>,
    /// Detection: the least score of a box that reports draw (default 0.5).
    pub score_threshold: Option<f64>,
}

/// The ×2 upsampling stages a decoder needs from a `patch`-pixel grid toward the input,
/// ⌊log₂ patch⌋ (what is left is bilinear).
pub fn upsampling_stages(patch: usize) -> usize {
    (usize::BITS - 1 - patch.max(1).leading_zeros()) as usize
}

/// Detection's options with their defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectionOptions {
    pub queries: usize,
    pub layers: usize,
    pub groups: usize,
    pub no_object_weight: f64,
    pub ce_weight: f64,
    pub l1_weight: f64,
    pub giou_weight: f64,
    pub aux_loss: bool,
    pub patch_weight: f64,
    pub score_threshold: f64,
}

impl Default for HeadConfig {
    fn default() -> Self {
        HeadConfig {
            task: TaskKind::Classification,
            decoder: None,
            dice_weight: None,
            class_weights: None,
            skip_blocks: None,
            mask_norm: None,
            queries: None,
            layers: None,
            groups: None,
            no_object_weight: None,
            ce_weight: None,
            l1_weight: None,
            giou_weight: None,
            aux_loss: None,
            patch_weight: None,
            score_threshold: None,
        }
    }
}

impl HeadConfig {
    /// The task options the file set, as `(key, task it belongs to)`.
    pub fn set_options(&self) -> Vec<(&'static str, TaskKind)> {
        let mut set = Vec::new();
        if self.decoder.is_some() {
            set.push(("head.decoder", TaskKind::Segmentation));
        }
        if self.dice_weight.is_some() {
            set.push(("head.dice_weight", TaskKind::Segmentation));
        }
        if self.class_weights.is_some() {
            set.push(("head.class_weights", TaskKind::Segmentation));
        }
        if self.skip_blocks.is_some() {
            set.push(("head.skip_blocks", TaskKind::Segmentation));
        }
        if self.mask_norm.is_some() {
            set.push(("head.mask_norm", TaskKind::Segmentation));
        }
        if self.layers.is_some() {
            let owner = match self.task {
                TaskKind::Segmentation => TaskKind::Segmentation,
                _ => TaskKind::Detection,
            };
            set.push(("head.layers", owner));
        }
        let detection = [
            ("head.queries", self.queries.is_some()),
            ("head.groups", self.groups.is_some()),
            ("head.no_object_weight", self.no_object_weight.is_some()),
            ("head.ce_weight", self.ce_weight.is_some()),
            ("head.l1_weight", self.l1_weight.is_some()),
            ("head.giou_weight", self.giou_weight.is_some()),
            ("head.aux_loss", self.aux_loss.is_some()),
            ("head.patch_weight", self.patch_weight.is_some()),
            ("head.score_threshold", self.score_threshold.is_some()),
        ];
        for (key, is_set) in detection {
            if is_set {
                set.push((key, TaskKind::Detection));
            }
        }
        set
    }

    /// The encoder blocks the U-Net decoder taps, the deepest first: `skip_blocks`, or one
    /// per stage of a `patch`-pixel grid evenly spaced over `depth` blocks (UNETR's 9, 6, 3 of
    /// 12 for three stages).
    pub fn skip_blocks_for(&self, depth: usize, patch: usize) -> Vec<usize> {
        let mut blocks = self.skip_blocks.clone().unwrap_or_else(|| {
            let stages = upsampling_stages(patch).min(depth);
            (1..=stages)
                .map(|k| (k * depth / (stages + 1)).max(1))
                .collect()
        });
        blocks.sort_unstable_by(|a, b| b.cmp(a));
        blocks.dedup();
        blocks
    }

    /// Detection's options, defaults filled in (DETR's loss weights; queries and layers sized
    /// for small scenes on a CPU).
    pub fn detection(&self) -> DetectionOptions {
        DetectionOptions {
            queries: self.queries.unwrap_or(12),
            layers: self.layers.unwrap_or(3),
            groups: self.groups.unwrap_or(1),
            no_object_weight: self.no_object_weight.unwrap_or(0.1),
            ce_weight: self.ce_weight.unwrap_or(1.0),
            l1_weight: self.l1_weight.unwrap_or(5.0),
            giou_weight: self.giou_weight.unwrap_or(2.0),
            aux_loss: self.aux_loss.unwrap_or(true),
            patch_weight: self.patch_weight.unwrap_or(1.0),
            score_threshold: self.score_threshold.unwrap_or(0.5),
        }
    }
}

/// `[augment]`: each training transform, off unless the file enables it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// A box keeping less than this share of its area after a crop is dropped (detection).
    pub min_box_visible: f64,
    pub random_resized_crop: RandomResizedCropConfig,
    pub hflip: HflipConfig,
    pub color_jitter: ColorJitterConfig,
    pub random_erasing: RandomErasingConfig,
    pub normalize: NormalizeConfig,
    pub center_crop: CenterCropConfig,
    pub rand_augment: RandAugmentConfig,
    pub mixup: MixupConfig,
    pub cutmix: CutmixConfig,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            min_box_visible: 0.25,
            random_resized_crop: RandomResizedCropConfig::default(),
            hflip: HflipConfig::default(),
            color_jitter: ColorJitterConfig::default(),
            random_erasing: RandomErasingConfig::default(),
            normalize: NormalizeConfig::default(),
            center_crop: CenterCropConfig::default(),
            rand_augment: RandAugmentConfig::default(),
            mixup: MixupConfig::default(),
            cutmix: CutmixConfig::default(),
        }
    }
}

/// Resampling of RandAugment's geometric ops (PIL's filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resample {
    Bilinear,
    Bicubic,
    /// Bilinear or bicubic, drawn per op (timm's default).
    Random,
}

/// RandAugment after the flip (timm's `rand_augment_transform`, Cubuk et al. 2020): `num_ops`
/// ops drawn with replacement from timm's set, each applied with probability `prob` at a
/// magnitude drawn around `magnitude` (0–10). DeiT: `rand-m9-mstd0.5-inc1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RandAugmentConfig {
    pub enabled: bool,
    pub num_ops: usize,
    /// On timm's 0–10 scale.
    pub magnitude: f64,
    /// Per-op magnitude noise: Gaussian with this deviation; above 100 the magnitude is drawn
    /// uniformly in `[0, magnitude]` (timm's `mstd101`); 0 keeps it fixed.
    pub magnitude_std: f64,
    /// Upper clamp of a drawn magnitude.
    pub magnitude_max: f64,
    /// timm's "increasing" op variants, whose severity grows with the magnitude (`inc1`).
    pub increasing: bool,
    /// Probability that each drawn op is applied.
    pub prob: f64,
    /// Largest translation as a fraction of the image side.
    pub translate_pct: f64,
    pub resample: Resample,
}

impl Default for RandAugmentConfig {
    fn default() -> Self {
        RandAugmentConfig {
            enabled: false,
            num_ops: 2,
            magnitude: 9.0,
            magnitude_std: 0.5,
            magnitude_max: 10.0,
            increasing: true,
            prob: 0.5,
            translate_pct: 0.45,
            resample: Resample::Random,
        }
    }
}

/// Crop a random area and aspect ratio, resize to `image_size` (timm/torchvision semantics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RandomResizedCropConfig {
    pub enabled: bool,
    /// Range of the crop's area as a fraction of the image.
    #[serde(deserialize_with = "pair")]
    pub scale: [f64; 2],
    /// Range of the crop's width/height.
    #[serde(deserialize_with = "pair")]
    pub ratio: [f64; 2],
}

impl Default for RandomResizedCropConfig {
    fn default() -> Self {
        RandomResizedCropConfig {
            enabled: false,
            scale: [0.08, 1.0],
            ratio: [3.0 / 4.0, 4.0 / 3.0],
        }
    }
}

/// Mirror left-right with probability `p`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HflipConfig {
    pub enabled: bool,
    pub p: f64,
}

impl Default for HflipConfig {
    fn default() -> Self {
        HflipConfig {
            enabled: false,
            p: 0.5,
        }
    }
}

/// Random brightness, contrast, saturation and hue, in a random order (torchvision).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ColorJitterConfig {
    pub enabled: bool,
    pub brightness: f64,
    pub contrast: f64,
    pub saturation: f64,
    /// At most 0.5 (a half turn of the hue circle).
    pub hue: f64,
}

impl Default for ColorJitterConfig {
    fn default() -> Self {
        ColorJitterConfig {
            enabled: false,
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.1,
        }
    }
}

/// Erase a random rectangle after normalisation (timm `RandomErasing`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RandomErasingConfig {
    pub enabled: bool,
    pub p: f64,
    #[serde(deserialize_with = "pair")]
    pub scale: [f64; 2],
    #[serde(deserialize_with = "pair")]
    pub ratio: [f64; 2],
    /// `random` (per-pixel normal noise, timm `mode="pixel"`) or `zero`.
    pub value: ErasingValue,
}

/// What fills an erased rectangle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErasingValue {
    Random,
    Zero,
}

impl Default for RandomErasingConfig {
    fn default() -> Self {
        RandomErasingConfig {
            enabled: false,
            p: 0.25,
            scale: [0.02, 1.0 / 3.0],
            ratio: [0.3, 3.3],
            value: ErasingValue::Random,
        }
    }
}

/// Subtract `mean` and divide by `std`, per channel, for training and validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NormalizeConfig {
    pub enabled: bool,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        NormalizeConfig {
            enabled: false,
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
        }
    }
}

/// Validation: resize the short side to `image_size * ratio`, then crop the centre.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CenterCropConfig {
    pub enabled: bool,
    pub ratio: f64,
}

impl Default for CenterCropConfig {
    fn default() -> Self {
        CenterCropConfig {
            enabled: false,
            ratio: 1.14,
        }
    }
}

/// How Mixup/CutMix pair the images of a batch (timm's `mixup_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MixMode {
    /// One draw for the whole batch; image i mixes with image n−1−i.
    Batch,
    /// One draw per pair (i, n−1−i), shared by both images of the pair.
    Pair,
    /// One draw per image.
    Elem,
}

/// Blend each training image with its partner in the reversed batch, and its target with the
/// partner's (timm `Mixup`, Zhang et al. 2018). `prob`, `switch_prob` and `mode` govern CutMix
/// too, as timm's `--mixup-prob`, `--mixup-switch-prob` and `--mixup-mode` do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MixupConfig {
    pub enabled: bool,
    /// The mixing weight is drawn from Beta(alpha, alpha).
    pub alpha: f64,
    /// Probability that a batch (or an image, per `mode`) is mixed at all.
    pub prob: f64,
    /// With both Mixup and CutMix on: probability of CutMix for a draw.
    pub switch_prob: f64,
    pub mode: MixMode,
}

impl Default for MixupConfig {
    fn default() -> Self {
        MixupConfig {
            enabled: false,
            alpha: 0.8,
            prob: 1.0,
            switch_prob: 0.5,
            mode: MixMode::Batch,
        }
    }
}

/// Paste a random box of the partner image over each training image, the targets mixed by
/// the box's area (timm `Mixup` with `cutmix_alpha`, Yun et al. 2019).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CutmixConfig {
    pub enabled: bool,
    /// The kept fraction is drawn from Beta(alpha, alpha); the box covers the rest.
    pub alpha: f64,
    /// Box sides as fractions of the image sides, drawn uniformly in `[min, max]` instead of
    /// from `alpha` (timm `cutmix_minmax`).
    pub minmax: Option<[f64; 2]>,
    /// Mix the targets by the box's area after clipping to the image (timm `correct_lam`).
    pub correct_lam: bool,
}

impl Default for CutmixConfig {
    fn default() -> Self {
        CutmixConfig {
            enabled: false,
            alpha: 1.0,
            minmax: None,
            correct_lam: true,
        }
    }
}

/// Which update rule trains the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    Adamw,
    Sgd,
}

/// How the learning rate moves after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    Cosine,
    Constant,
    Step,
}

/// `[optimizer]`: update rule, learning-rate schedule and loss regularisers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    pub name: OptimizerKind,
    pub lr: f64,
    /// Decoupled (AdamW) or L2 (SGD) decay; never on norms, biases, tokens or positions.
    pub weight_decay: f64,
    #[serde(deserialize_with = "pair")]
    pub betas: [f64; 2],
    pub eps: f64,
    pub momentum: f64,
    pub nesterov: bool,
    /// Linear warmup from `warmup_lr` to `lr`, in epochs (may be fractional).
    pub warmup_epochs: f64,
    pub warmup_lr: f64,
    pub schedule: Schedule,
    /// Floor of the cosine schedule.
    pub min_lr: f64,
    /// Step schedule: multiply by `gamma` every `step_epochs`.
    pub step_epochs: usize,
    pub gamma: f64,
    pub label_smoothing: f64,
    /// Clip the global gradient norm to this value (0 = off).
    pub grad_clip: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            name: OptimizerKind::Adamw,
            lr: 1e-3,
            weight_decay: 0.05,
            betas: [0.9, 0.999],
            eps: 1e-8,
            momentum: 0.9,
            nesterov: false,
            warmup_epochs: 0.0,
            warmup_lr: 1e-6,
            schedule: Schedule::Cosine,
            min_lr: 1e-5,
            step_epochs: 30,
            gamma: 0.1,
            label_smoothing: 0.0,
            grad_clip: 0.0,
        }
    }
}

/// `[finetune]`: which parameters train, and how fast per depth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinetuneConfig {
    /// Freeze the patch embedding (`patch_embed.*`).
    pub freeze_patch_embed: bool,
    /// Freeze the first N transformer blocks (`blocks.0` … `blocks.N-1`).
    pub freeze_blocks: usize,
    /// More parameters to freeze, by timm name or name prefix (`cls_token`, `pos_embed`,
    /// `blocks.3.attn`, …).
    pub freeze: Vec<String>,
    /// timm's layer-wise learning-rate decay: block i trains at lr × decay^(depth − i), the
    /// embeddings at lr × decay^(depth + 1), the head at lr (1 = off).
    pub layer_decay: f64,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        FinetuneConfig {
            freeze_patch_embed: false,
            freeze_blocks: 0,
            freeze: Vec::new(),
            layer_decay: 1.0,
        }
    }
}

/// Which checkpoints a trial keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointPolicy {
    /// `last/` (for resume) and `best/` (by val top-1).
    LastAndBest,
    /// `last/` only.
    Last,
    /// No checkpoints (a stopped trial cannot resume).
    None,
}

/// The float format a trial computes in (`train.precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Mixed: matrix multiplies and convolutions in bfloat16, master weights, optimizer state,
    /// norms and softmax in f32 (PyTorch's bf16 autocast).
    Bf16,
    /// Mixed as `bf16` but in float16, with dynamic loss scaling (skipped steps are logged).
    F16,
}

impl Precision {
    /// The name the experiment file uses.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// Whether some ops run in a 16-bit format.
    pub fn is_mixed(self) -> bool {
        self != Precision::F32
    }
}

/// `[train]`: epochs, batches, device and checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// Batches whose gradients are summed into one optimizer step (the effective batch is
    /// `batch_size × grad_accumulation`; the loss of each is divided by it, as timm does).
    pub grad_accumulation: usize,
    /// `auto|cpu|cuda:N|tch-cpu|tch-cuda:N`.
    pub device: DeviceSpec,
    /// CPU threads for the trial (0 = all cores).
    pub threads: usize,
    pub checkpoint: CheckpointPolicy,
    /// Where trial folders and the store live.
    pub runs_dir: String,
    pub ema: EmaConfig,
    /// `f32`, or mixed `bf16` / `f16` (GPU backends only).
    pub precision: Precision,
    /// Recompute cheap activations in the backward pass instead of keeping them (burn's
    /// balanced checkpointing strategy): the same gradients; it saved no memory where measured.
    pub grad_checkpointing: bool,
    /// Training steps between copies of their losses and scores to the host: on a GPU each
    /// copy waits for the device, so they are read in groups (1 = every step). Unset: 16 on a
    /// GPU, 1 on the CPU (where a copy costs nothing and the progress display stays live).
    pub read_every: Option<usize>,
}

/// `[train.ema]`: an exponential moving average of the weights, updated after every optimizer
/// step and validated beside them each epoch (timm's `ModelEmaV3`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmaConfig {
    pub enabled: bool,
    /// Weight of the average at each update: `ema = decay·ema + (1 − decay)·weights`.
    pub decay: f64,
    /// Ramp the decay up as `1 − (1 + step)^−warmup_power` until it reaches `decay`, so the
    /// average is not dominated by the random initial weights on short runs.
    pub warmup: bool,
    pub warmup_power: f64,
}

impl Default for EmaConfig {
    fn default() -> Self {
        EmaConfig {
            enabled: false,
            decay: 0.9998,
            warmup: false,
            warmup_power: 2.0 / 3.0,
        }
    }
}

impl TrainConfig {
    /// Training steps between host reads on `device` (`train.device` as the trial resolved
    /// it): `read_every`, else 16 on a GPU and 1 on the CPU.
    pub fn read_every_on(&self, device: DeviceSpec) -> usize {
        self.read_every
            .unwrap_or(if device.is_gpu() == Some(true) { 16 } else { 1 })
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch_size: 64,
            grad_accumulation: 1,
            device: DeviceSpec::Auto,
            threads: 0,
            checkpoint: CheckpointPolicy::LastAndBest,
            runs_dir: "runs".into(),
            ema: EmaConfig::default(),
            precision: Precision::F32,
            grad_checkpointing: false,
            read_every: None,
        }
    }
}

/// Keys that say where or how fast a trial runs, not what it computes: left out of its id.
pub const EXECUTION_KEYS: [&str; 9] = [
    "train.device",
    "train.grad_checkpointing",
    "train.read_every",
    "train.threads",
    "train.runs_dir",
    "data.workers",
    "data.prefetch",
    "data.max_image_pixels",
    "sweep",
];
