//! Range and consistency checks on a resolved config; each failure says what is valid.
//! Every float must be finite, every size has an upper bound, and a trial whose estimated
//! memory exceeds the machine's is refused before it starts.

use std::sync::OnceLock;

use super::schema::{
    ArchKind, Config, DatasetKind, Decoder, DistillType, ModelConfig, Pooling, StemKind, StemNorm,
    TaskKind, TeacherModel, PRESETS,
};

/// A failed check: the key path and what would be valid.
pub type Violation = (String, String);

/// Hard upper bounds that keep one trial inside one process.
pub struct Limits;

impl Limits {
    pub const IMAGE_SIZE: usize = 8192;
    pub const THREADS: usize = 256;
    pub const PREFETCH: usize = 256;
    pub const BATCH_SIZE: usize = 1 << 16;
    pub const EPOCHS: usize = 1_000_000;
    pub const DIM: usize = 16_384;
    pub const DEPTH: usize = 1024;
    pub const CLASSES: usize = 1 << 20;
    pub const MLP_RATIO: f64 = 64.0;
    pub const CENTER_CROP_RATIO: f64 = 4.0;
    pub const NAME_LEN: usize = 100;
}

fn fail<T>(key: &str, reason: impl Into<String>) -> Result<T, Violation> {
    Err((key.to_string(), reason.into()))
}

fn unit_open(key: &str, v: f64) -> Result<(), Violation> {
    if !(0.0..1.0).contains(&v) {
        return fail(key, format!("{v} is out of range; use a value in [0, 1)"));
    }
    Ok(())
}

fn at_most(key: &str, v: usize, max: usize) -> Result<(), Violation> {
    if v > max {
        return fail(key, format!("{v} is above the limit of {max}"));
    }
    Ok(())
}

fn range_pair(key: &str, v: [f64; 2], max: Option<f64>) -> Result<(), Violation> {
    let ok = v[0] > 0.0 && v[0] <= v[1] && max.is_none_or(|m| v[1] <= m);
    if !ok {
        let upper = max.map(|m| format!(" <= {m}")).unwrap_or_default();
        return fail(
            key,
            format!("{v:?} is not a range; use [low, high] with 0 < low <= high{upper}"),
        );
    }
    Ok(())
}

/// Whether `name` is one safe path component: letters, digits, '-', '_' and '.', not
/// starting with '.', at most [`Limits::NAME_LEN`] characters.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= Limits::NAME_LEN
        && !name.starts_with('.')
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
}

/// Checks every rule but finiteness (see [`finite_config`] and [`finite_value`], which the
/// loader runs where values enter), the memory estimate against this machine's included;
/// returns the first violation.
pub fn validate(c: &Config) -> Result<(), Violation> {
    validate_rules(c)?;
    fits_in_memory(c, machine_memory())
}

/// [`validate`] without the memory check against this machine: what a config of a trial that
/// ran elsewhere is held to.
pub fn validate_rules(c: &Config) -> Result<(), Violation> {
    if !is_safe_name(&c.name) {
        return fail(
            "name",
            format!(
                "{:?} cannot name a folder; use up to {} letters, digits, '-', '_' or '.', not starting with '.'",
                c.name,
                Limits::NAME_LEN
            ),
        );
    }
    validate_data(c)?;
    validate_model(c)?;
    validate_augment(c)?;
    validate_head(c)?;
    validate_optimizer(c)?;
    validate_finetune(c)?;
    validate_distill(c)?;
    let t = &c.train;
    if t.epochs == 0 {
        return fail("train.epochs", "must be at least 1");
    }
    at_most("train.epochs", t.epochs, Limits::EPOCHS)?;
    if t.batch_size == 0 {
        return fail("train.batch_size", "must be at least 1");
    }
    at_most("train.batch_size", t.batch_size, Limits::BATCH_SIZE)?;
    if t.grad_accumulation == 0 {
        return fail("train.grad_accumulation", "must be at least 1 (1 = off)");
    }
    at_most("train.grad_accumulation", t.grad_accumulation, 1024)?;
    at_most("train.threads", t.threads, Limits::THREADS)?;
    if let Some(every) = t.read_every {
        if every == 0 {
            return fail(
                "train.read_every",
                "must be at least 1 (1 = every step); leave it out for 16 on a GPU, 1 on the CPU",
            );
        }
        at_most("train.read_every", every, 1024)?;
    }
    if !(0.0..1.0).contains(&t.ema.decay) {
        return fail(
            "train.ema.decay",
            format!(
                "{} is out of range; use a decay in [0, 1) (timm: 0.9998)",
                t.ema.decay
            ),
        );
    }
    if !(t.ema.warmup_power > 0.0 && t.ema.warmup_power <= 10.0) {
        return fail(
            "train.ema.warmup_power",
            format!(
                "{} is out of range; use a power in (0, 10] (timm: 2/3, or 3/4 for short runs)",
                t.ema.warmup_power
            ),
        );
    }
    Ok(())
}

/// Every float in `value` (set at key `path`) must be finite.
pub fn finite_value(path: &str, value: &toml::Value) -> Result<(), Violation> {
    match value {
        toml::Value::Float(f) if !f.is_finite() => fail(
            path,
            format!("{f} is not a finite number; use a finite value"),
        ),
        toml::Value::Table(t) => t.iter().try_for_each(|(k, v)| {
            let key = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            finite_value(&key, v)
        }),
        toml::Value::Array(items) => items.iter().try_for_each(|v| finite_value(path, v)),
        _ => Ok(()),
    }
}

/// Every float in the config, found through its TOML form (which keeps NaN and infinities
/// that JSON would turn into null), must be finite.
pub fn finite_config(c: &Config) -> Result<(), Violation> {
    let mut plain = c.clone();
    plain.sweep = None;
    match toml::Value::try_from(&plain) {
        Ok(v) => finite_value("", &v),
        Err(e) => fail("", format!("the config cannot be represented: {e}")),
    }
}

fn validate_data(c: &Config) -> Result<(), Violation> {
    let d = &c.data;
    if d.image_size == 0 {
        return fail("data.image_size", "must be at least 1 pixel");
    }
    at_most("data.image_size", d.image_size, Limits::IMAGE_SIZE)?;
    if ![1, 3].contains(&d.channels) {
        return fail(
            "data.channels",
            format!("{} channels; use 1 (grey) or 3 (RGB)", d.channels),
        );
    }
    if let Some(classes) = &d.classes {
        if classes.is_empty() {
            return fail(
                "data.classes",
                "the class list is empty; list at least two class names, or remove the key to use the dataset's own",
            );
        }
        at_most("data.classes", classes.len(), Limits::CLASSES)?;
    }
    if !(0.0..1.0).contains(&d.val_split) {
        return fail(
            "data.val_split",
            format!("{} is not a fraction; use a value in [0, 1)", d.val_split),
        );
    }
    use super::schema::DatasetKind::*;
    if d.slice_axis > 2 {
        return fail(
            "data.slice_axis",
            format!(
                "{} is not an axis of a volume; use 0 (x), 1 (y) or 2 (z)",
                d.slice_axis
            ),
        );
    }
    if let Some([lo, hi]) = d.window {
        if !(lo < hi && lo.is_finite() && hi.is_finite()) {
            return fail(
                "data.window",
                format!("[{lo}, {hi}] is not a range; give [low, high] with low < high (e.g. [-100, 240] for abdominal CT)"),
            );
        }
    }
    let [p_lo, p_hi] = d.window_percentiles;
    if !(0.0 <= p_lo && p_lo < p_hi && p_hi <= 100.0) {
        return fail(
            "data.window_percentiles",
            format!("[{p_lo}, {p_hi}] is not a percentile range; give [low, high] with 0 ≤ low < high ≤ 100 (e.g. [0.5, 99.5])"),
        );
    }
    if matches!(d.dataset, ImageFolder | Idx | MaskFolder | Coco | Nifti)
        && d.path.as_deref().unwrap_or("").is_empty()
    {
        return fail(
            "data.path",
            "this dataset reads files: set data.path to its folder",
        );
    }
    for (key, size) in [
        ("data.train_size", d.train_size),
        ("data.val_size", d.val_size),
    ] {
        if size == Some(0) {
            return fail(
                key,
                "must be at least 1 (remove the key for the dataset's default)",
            );
        }
    }
    if d.prefetch == 0 {
        return fail("data.prefetch", "must be at least 1 batch");
    }
    at_most("data.prefetch", d.prefetch, Limits::PREFETCH)?;
    at_most("data.workers", d.workers, Limits::THREADS)?;
    if !(1..=super::schema::MAX_REPEATED_AUG).contains(&d.repeated_aug) {
        return fail(
            "data.repeated_aug",
            format!(
                "{} draws per image; use 1 (off) to {} (DeiT uses 3)",
                d.repeated_aug,
                super::schema::MAX_REPEATED_AUG
            ),
        );
    }
    if d.max_image_pixels == 0 {
        return fail(
            "data.max_image_pixels",
            format!(
                "must be at least 1 (the default is {})",
                super::schema::DEFAULT_MAX_IMAGE_PIXELS
            ),
        );
    }
    Ok(())
}

fn validate_model(c: &Config) -> Result<(), Violation> {
    let m = &c.model;
    if m.arch != ArchKind::Vit {
        return validate_resnet(m);
    }
    if !m.widths.is_empty() {
        return fail(
            "model.widths",
            "stage widths shape a ResNet; a ViT is shaped by embed_dim, depth and num_heads (remove model.widths, or set model.arch = \"resnet50\")",
        );
    }
    if let Some(p) = &m.preset {
        if !PRESETS.iter().any(|(name, ..)| name == p) {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
            return fail(
                "model.preset",
                format!("unknown preset {p:?}; use one of {}", names.join(", ")),
            );
        }
    }
    let (Some(dim), Some(depth), Some(heads)) = (m.embed_dim, m.depth, m.num_heads) else {
        return fail(
            "model.embed_dim",
            "no preset and no explicit dims: set model.preset, or embed_dim, depth and num_heads",
        );
    };
    if m.patch_size == 0 {
        return fail("model.patch_size", "must be at least 1");
    }
    if !c.data.image_size.is_multiple_of(m.patch_size) {
        return fail(
            "model.patch_size",
            format!(
                "data.image_size {} is not divisible by patch_size {}; use a patch size that divides it (e.g. {})",
                c.data.image_size,
                m.patch_size,
                divisors(c.data.image_size)
            ),
        );
    }
    validate_conv_stem(m)?;
    if dim == 0 || depth == 0 || heads == 0 {
        return fail(
            "model.embed_dim",
            "embed_dim, depth and num_heads must be at least 1",
        );
    }
    at_most("model.embed_dim", dim, Limits::DIM)?;
    at_most("model.depth", depth, Limits::DEPTH)?;
    if dim % heads != 0 {
        return fail(
            "model.embed_dim",
            format!(
                "embed dim {dim} is not divisible by num_heads {heads}; use a multiple of {heads}"
            ),
        );
    }
    if !(m.mlp_ratio > 0.0 && m.mlp_ratio <= Limits::MLP_RATIO) || (dim as f64 * m.mlp_ratio) < 1.0
    {
        return fail(
            "model.mlp_ratio",
            format!(
                "{} gives an MLP of {} units for embed_dim {dim}; use a ratio with at least 1 unit, at most {} (e.g. 4.0)",
                m.mlp_ratio,
                (dim as f64 * m.mlp_ratio) as usize,
                Limits::MLP_RATIO
            ),
        );
    }
    unit_open("model.dropout", m.dropout)?;
    unit_open("model.attn_dropout", m.attn_dropout)?;
    unit_open("model.drop_path", m.drop_path)
}

/// A ResNet's keys: four stage widths at most, and none of the ViT's own options.
fn validate_resnet(m: &ModelConfig) -> Result<(), Violation> {
    let arch = m.arch.name();
    if !m.widths.is_empty() && (m.widths.len() != 4 || m.widths.contains(&0)) {
        return fail(
            "model.widths",
            format!(
                "{:?}: a ResNet has four stages; give four widths of at least 1 (timm's: [64, 128, 256, 512])",
                m.widths
            ),
        );
    }
    for &w in &m.widths {
        at_most("model.widths", w, Limits::DIM)?;
    }
    let vit_only = [
        ("model.distilled", m.distilled),
        ("model.conv_stem", !m.conv_stem.is_empty()),
        ("model.pooling", m.pooling != Pooling::Cls),
        ("model.dropout", m.dropout != 0.0),
        ("model.attn_dropout", m.attn_dropout != 0.0),
        ("model.drop_path", m.drop_path != 0.0),
    ];
    if let Some((key, _)) = vit_only.iter().find(|(_, set)| *set) {
        return fail(
            key,
            format!("{key} shapes a ViT; model.arch = {arch:?} has no such option (remove it, or set model.arch = \"vit\")"),
        );
    }
    Ok(())
}

fn divisors(n: usize) -> String {
    let d: Vec<String> = (2..=n.min(32))
        .filter(|d| n.is_multiple_of(*d))
        .map(|d| d.to_string())
        .collect();
    if d.is_empty() {
        "1".into()
    } else {
        d.join(", ")
    }
}

fn validate_augment(c: &Config) -> Result<(), Violation> {
    let a = &c.augment;
    range_pair(
        "augment.random_resized_crop.scale",
        a.random_resized_crop.scale,
        Some(1.0),
    )?;
    range_pair(
        "augment.random_resized_crop.ratio",
        a.random_resized_crop.ratio,
        None,
    )?;
    if !(0.0..=1.0).contains(&a.hflip.p) {
        return fail("augment.hflip.p", "a probability: use a value in [0, 1]");
    }
    let j = &a.color_jitter;
    for (key, v) in [
        ("brightness", j.brightness),
        ("contrast", j.contrast),
        ("saturation", j.saturation),
    ] {
        if !(0.0..=100.0).contains(&v) {
            return fail(
                &format!("augment.color_jitter.{key}"),
                format!("{v} is out of range; use a strength in [0, 100] (e.g. 0.4)"),
            );
        }
    }
    if !(0.0..=0.5).contains(&j.hue) {
        return fail("augment.color_jitter.hue", "use a value in [0, 0.5]");
    }
    let e = &a.random_erasing;
    if !(0.0..=1.0).contains(&e.p) {
        return fail(
            "augment.random_erasing.p",
            "a probability: use a value in [0, 1]",
        );
    }
    range_pair("augment.random_erasing.scale", e.scale, Some(1.0))?;
    range_pair("augment.random_erasing.ratio", e.ratio, None)?;
    validate_mixing(c)?;
    let r = &a.rand_augment;
    if !(1..=10).contains(&r.num_ops) {
        return fail(
            "augment.rand_augment.num_ops",
            format!("{} ops per image; use 1 to 10 (DeiT: 2)", r.num_ops),
        );
    }
    if !(0.0..=100.0).contains(&r.magnitude_max) || !(0.0..=r.magnitude_max).contains(&r.magnitude)
    {
        return fail(
            "augment.rand_augment.magnitude",
            format!(
                "{} is out of range; use a magnitude in [0, magnitude_max = {}] on timm's 0-10 scale (DeiT: 9)",
                r.magnitude, r.magnitude_max
            ),
        );
    }
    if r.magnitude_std < 0.0 {
        return fail(
            "augment.rand_augment.magnitude_std",
            "use 0 (fixed), a deviation (DeiT: 0.5), or above 100 for uniform in [0, magnitude]",
        );
    }
    if !(0.0..=1.0).contains(&r.prob) {
        return fail(
            "augment.rand_augment.prob",
            "a probability: use a value in [0, 1] (timm: 0.5)",
        );
    }
    if !(0.0..=1.0).contains(&r.translate_pct) {
        return fail(
            "augment.rand_augment.translate_pct",
            "a fraction of the image side: use a value in [0, 1] (timm: 0.45)",
        );
    }
    let n = &a.normalize;
    let ch = c.data.channels;
    if n.enabled && (n.mean.len() != ch || n.std.len() != ch) {
        return fail(
            "augment.normalize.mean",
            format!(
                "mean has {} and std {} values but data.channels is {ch}; give one per channel",
                n.mean.len(),
                n.std.len()
            ),
        );
    }
    if n.std.iter().any(|s| *s <= 0.0) {
        return fail("augment.normalize.std", "every std must be above 0");
    }
    let ratio = a.center_crop.ratio;
    if !(1.0..=Limits::CENTER_CROP_RATIO).contains(&ratio) {
        return fail(
            "augment.center_crop.ratio",
            format!(
                "{ratio} is out of range; use a resize ratio in [1, {}] (e.g. 1.14; below 1 would crop outside the image)",
                Limits::CENTER_CROP_RATIO
            ),
        );
    }
    Ok(())
}

/// Largest Beta concentration accepted for Mixup/CutMix (timm's recipes use 0.1–1).
const MAX_MIX_ALPHA: f64 = 100.0;

fn validate_mixing(c: &Config) -> Result<(), Violation> {
    let (m, k) = (&c.augment.mixup, &c.augment.cutmix);
    if c.head.task != TaskKind::Classification && (m.enabled || k.enabled) {
        let key = if m.enabled {
            "augment.mixup.enabled"
        } else {
            "augment.cutmix.enabled"
        };
        return fail(
            key,
            format!(
                "Mixup and CutMix blend class labels, and a {} head has boxes or masks to blend instead; set it to false for this task",
                serde_json::to_string(&c.head.task).unwrap_or_default()
            ),
        );
    }
    for (key, alpha) in [
        ("augment.mixup.alpha", m.alpha),
        ("augment.cutmix.alpha", k.alpha),
    ] {
        if !(alpha > 0.0 && alpha <= MAX_MIX_ALPHA) {
            return fail(
                key,
                format!("{alpha} is out of range; use a Beta concentration in (0, {MAX_MIX_ALPHA}] (DeiT: mixup 0.8, cutmix 1.0)"),
            );
        }
    }
    for (key, p) in [
        ("augment.mixup.prob", m.prob),
        ("augment.mixup.switch_prob", m.switch_prob),
    ] {
        if !(0.0..=1.0).contains(&p) {
            return fail(key, "a probability: use a value in [0, 1]");
        }
    }
    if let Some([lo, hi]) = k.minmax {
        if !(lo > 0.0 && lo <= hi && hi < 1.0) {
            return fail(
                "augment.cutmix.minmax",
                format!("[{lo}, {hi}] is not a range of box sides; use [min, max] with 0 < min <= max < 1 (e.g. [0.2, 0.8])"),
            );
        }
    }
    Ok(())
}

fn task_name(task: TaskKind) -> String {
    serde_json::to_string(&task).unwrap_or_default()
}

/// The task, its options, and whether the dataset gives its targets.
/// `[distill]`: a teacher exactly when a distillation type is on, a student with DeiT's
/// distillation token, a teacher architecture vitrun builds, sane alpha and tau.
fn validate_distill(c: &Config) -> Result<(), Violation> {
    let d = &c.distill;
    if !(0.0..=1.0).contains(&d.alpha) {
        return fail(
            "distill.alpha",
            format!(
                "{} is out of range; use a weight in [0, 1] (DeiT: 0.5)",
                d.alpha
            ),
        );
    }
    if !(d.tau > 0.0 && d.tau <= 100.0) {
        return fail(
            "distill.tau",
            format!(
                "{} is out of range; use a temperature in (0, 100] (DeiT: 1.0)",
                d.tau
            ),
        );
    }
    let on = d.kind != DistillType::None;
    let Some(teacher) = &d.teacher else {
        if on {
            return fail(
                "distill.type",
                "distillation needs a teacher: set distill.teacher = \"trial:ID\" or a checkpoint file",
            );
        }
        if d.teacher_model.is_some() || d.teacher_image_size.is_some() {
            return fail(
                "distill.teacher_model",
                "describes a teacher file, and distill.teacher is not set; set it, or remove the key",
            );
        }
        return Ok(());
    };
    if !on {
        // A sweep's control arm: the teacher is named but not asked (nor loaded).
        return Ok(());
    }
    if c.head.task != TaskKind::Classification {
        return fail(
            "distill.type",
            "distillation teaches a classifier's distillation head; set head.task = \"classification\"",
        );
    }
    if !c.model.distilled {
        return fail(
            "distill.type",
            "the student learns from the teacher through DeiT's distillation token; set model.distilled = true",
        );
    }
    if teacher.trim().is_empty() {
        return fail(
            "distill.teacher",
            "is empty; give \"trial:ID\" or a checkpoint file",
        );
    }
    if teacher.starts_with("trial:") {
        if d.teacher_model.is_some() || d.teacher_image_size.is_some() {
            return fail(
                "distill.teacher_model",
                "a trial teacher brings its own model and image size; remove distill.teacher_model and distill.teacher_image_size",
            );
        }
        return Ok(());
    }
    if let Some(size) = d.teacher_image_size {
        if size == 0 {
            return fail("distill.teacher_image_size", "must be at least 1");
        }
        at_most("distill.teacher_image_size", size, Limits::IMAGE_SIZE)?;
    }
    let Some(model) = c.teacher_model() else {
        let named = match &d.teacher_model {
            Some(TeacherModel::Name(n)) => format!("{n:?} is not an architecture vitrun builds"),
            _ => "is not set".into(),
        };
        return fail(
            "distill.teacher_model",
            format!("{named}; name the teacher file's architecture: \"resnet50\" (resnet18, resnet26, resnet34), a ViT preset (\"deit-small\"), or a table of [model] keys"),
        );
    };
    let as_student = Config {
        model,
        data: crate::config::DataConfig {
            image_size: d.teacher_image_size.unwrap_or(c.data.image_size),
            ..c.data.clone()
        },
        ..Config::default()
    };
    validate_model(&as_student)
        .map_err(|(key, why)| (key.replacen("model.", "distill.teacher_model.", 1), why))
}

fn validate_head(c: &Config) -> Result<(), Violation> {
    let h = &c.head;
    for (key, owner) in h.set_options() {
        if owner != h.task {
            return fail(
                key,
                format!(
                    "is a {} option and this experiment's head.task is {}; remove it, or set head.task = {}",
                    task_name(owner),
                    task_name(h.task),
                    task_name(owner)
                ),
            );
        }
    }
    let gives = c.data.dataset.tasks();
    if !gives.contains(&h.task) {
        let fits: Vec<String> = DatasetKind::ALL
            .iter()
            .filter(|d| d.tasks().contains(&h.task))
            .map(|d| serde_json::to_string(d).unwrap_or_default())
            .collect();
        return fail(
            "data.dataset",
            format!(
                "{} has no targets for head.task = {}; use one of {}",
                serde_json::to_string(&c.data.dataset).unwrap_or_default(),
                task_name(h.task),
                fits.join(", ")
            ),
        );
    }
    if let Some(w) = h.dice_weight {
        if !(0.0..=100.0).contains(&w) {
            return fail(
                "head.dice_weight",
                format!("{w} is out of range; use a weight in [0, 100] (0 = cross-entropy only)"),
            );
        }
    }
    if let Some(weights) = &h.class_weights {
        if weights.is_empty()
            || weights.iter().any(|w| *w < 0.0)
            || weights.iter().all(|w| *w == 0.0)
        {
            return fail(
                "head.class_weights",
                "list one weight of at least 0 per class, in class order, not all 0",
            );
        }
    }
    if h.task == TaskKind::Segmentation {
        validate_decoder(c)?;
    }
    if h.task != TaskKind::Classification && c.augment.rand_augment.enabled {
        return fail(
            "augment.rand_augment.enabled",
            format!(
                "RandAugment's rotations, shears and translations move pixels without moving the {}; set it to false for {}",
                if h.task == TaskKind::Detection { "boxes" } else { "masks" },
                task_name(h.task)
            ),
        );
    }
    if h.task == TaskKind::Detection {
        validate_detection(c)?;
    }
    Ok(())
}

/// The segmentation decoder's own options: each only with its decoder, in range.
fn validate_decoder(c: &Config) -> Result<(), Violation> {
    let h = &c.head;
    let decoder = h.decoder.unwrap_or(Decoder::Linear);
    if let Some(layers) = h.layers {
        if decoder != Decoder::Mask {
            return fail(
                "head.layers",
                "for segmentation it sizes the mask transformer; set head.decoder = \"mask\", or remove it",
            );
        }
        if !(1..=24).contains(&layers) {
            return fail(
                "head.layers",
                format!(
                    "{layers} is out of range; use 1 to 24 mask transformer layers (Segmenter: 2)"
                ),
            );
        }
    }
    if h.mask_norm.is_some() && decoder != Decoder::Mask {
        return fail(
            "head.mask_norm",
            "it sets how the mask transformer scores patches; set head.decoder = \"mask\", or remove it",
        );
    }
    let Some(blocks) = &h.skip_blocks else {
        return Ok(());
    };
    if decoder != Decoder::Unet {
        return fail(
            "head.skip_blocks",
            "the blocks the U-Net decoder taps; set head.decoder = \"unet\", or remove it",
        );
    }
    let stages = super::schema::upsampling_stages(c.model.patch_size);
    if blocks.len() > stages {
        return fail(
            "head.skip_blocks",
            format!(
                "{} blocks but patch_size {} gives the decoder {stages} upsampling stages, one skip each; list at most {stages}",
                blocks.len(),
                c.model.patch_size
            ),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(&b) = blocks.iter().find(|&&b| b == 0 || !seen.insert(b)) {
        return fail(
            "head.skip_blocks",
            format!(
                "block {b} is {}; list distinct blocks numbered from 1",
                if b == 0 {
                    "not a block"
                } else {
                    "listed twice"
                }
            ),
        );
    }
    Ok(())
}

/// Detection's sizes and loss weights.
fn validate_detection(c: &Config) -> Result<(), Violation> {
    let d = c.head.detection();
    if !(1..=1000).contains(&d.queries) {
        return fail(
            "head.queries",
            format!("{} is out of range; use 1 to 1000 object queries (at least the most objects an image has)", d.queries),
        );
    }
    if c.data.dataset == DatasetKind::SyntheticScenes && d.queries < c.data.max_objects {
        return fail(
            "head.queries",
            format!(
                "{} queries cannot each take one of up to data.max_objects = {} vehicles; use at least {}",
                d.queries, c.data.max_objects, c.data.max_objects
            ),
        );
    }
    if !(1..=32).contains(&d.groups) {
        return fail(
            "head.groups",
            format!(
                "{} is out of range; use 1 to 32 query groups (1 = plain DETR)",
                d.groups
            ),
        );
    }
    if !(1..=24).contains(&d.layers) {
        return fail(
            "head.layers",
            format!(
                "{} is out of range; use 1 to 24 decoder layers (DETR: 6)",
                d.layers
            ),
        );
    }
    for (key, w) in [
        ("head.no_object_weight", d.no_object_weight),
        ("head.ce_weight", d.ce_weight),
        ("head.l1_weight", d.l1_weight),
        ("head.giou_weight", d.giou_weight),
        ("head.patch_weight", d.patch_weight),
    ] {
        if !(0.0..=100.0).contains(&w) {
            return fail(
                key,
                format!("{w} is out of range; use a weight in [0, 100] (DETR: ce 1, l1 5, giou 2, no object 0.1)"),
            );
        }
    }
    if d.ce_weight == 0.0 || d.l1_weight + d.giou_weight == 0.0 {
        return fail(
            if d.ce_weight == 0.0 {
                "head.ce_weight"
            } else {
                "head.l1_weight"
            },
            "detection needs a class term and a box term (L1 or GIoU) above 0",
        );
    }
    if !(0.0..=1.0).contains(&d.score_threshold) {
        return fail(
            "head.score_threshold",
            format!(
                "{} is not a score; use a value in [0, 1]",
                d.score_threshold
            ),
        );
    }
    Ok(())
}

fn validate_finetune(c: &Config) -> Result<(), Violation> {
    let f = &c.finetune;
    let depth = c.model.depth.unwrap_or(0);
    if f.freeze_blocks > depth {
        return fail(
            "finetune.freeze_blocks",
            format!(
                "{} blocks, but the model has {depth}; freeze at most {depth}",
                f.freeze_blocks
            ),
        );
    }
    if !(f.layer_decay > 0.0 && f.layer_decay <= 1.0) {
        return fail(
            "finetune.layer_decay",
            format!(
                "{} is out of range; use a factor in (0, 1] (1 = off, e.g. 0.75)",
                f.layer_decay
            ),
        );
    }
    if let Some(name) = f.freeze.iter().find(|n| n.trim().is_empty()) {
        return fail("finetune.freeze", format!("{name:?} names no parameter"));
    }
    if c.model
        .pretrained
        .as_deref()
        .is_some_and(|p| p.trim().is_empty())
    {
        return fail(
            "model.pretrained",
            "an empty path; give a checkpoint file or trial:ID, or remove the key",
        );
    }
    Ok(())
}

fn validate_optimizer(c: &Config) -> Result<(), Violation> {
    let o = &c.optimizer;
    if o.lr <= 0.0 {
        return fail(
            "optimizer.lr",
            format!("learning rate {} must be above 0 (e.g. 1e-3)", o.lr),
        );
    }
    if o.weight_decay < 0.0 {
        return fail("optimizer.weight_decay", "must be 0 or more");
    }
    unit_open("optimizer.betas", o.betas[0])?;
    unit_open("optimizer.betas", o.betas[1])?;
    if o.eps <= 0.0 {
        return fail("optimizer.eps", "must be above 0 (e.g. 1e-8)");
    }
    unit_open("optimizer.momentum", o.momentum)?;
    if o.warmup_epochs < 0.0 {
        return fail("optimizer.warmup_epochs", "must be 0 or more");
    }
    if o.warmup_lr < 0.0 {
        return fail("optimizer.warmup_lr", "must be 0 or more");
    }
    if o.min_lr < 0.0 {
        return fail("optimizer.min_lr", "must be 0 or more");
    }
    if o.step_epochs == 0 {
        return fail("optimizer.step_epochs", "must be at least 1");
    }
    if !(o.gamma > 0.0 && o.gamma <= 1.0) {
        return fail("optimizer.gamma", "use a factor in (0, 1]");
    }
    unit_open("optimizer.label_smoothing", o.label_smoothing)?;
    if o.grad_clip < 0.0 {
        return fail("optimizer.grad_clip", "a norm: use 0 (off) or more");
    }
    Ok(())
}

/// Host memory one trial is estimated to need, by part (bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryEstimate {
    /// Sample order of both splits (8 bytes per image).
    pub order: f64,
    /// Batches the loader keeps ready (`prefetch + 1`, as `f32`).
    pub loader: f64,
    /// Weights, gradients and AdamW moments, plus the activations of one training step
    /// (zero when the trial runs on a GPU).
    pub step: f64,
}

impl MemoryEstimate {
    pub fn total(&self) -> f64 {
        self.order + self.loader + self.step
    }

    /// The key to lower first: the one behind the largest part.
    fn blame(&self) -> &'static str {
        if self.order >= self.loader && self.order >= self.step {
            "data.train_size"
        } else if self.loader >= self.step {
            "data.prefetch"
        } else {
            "train.batch_size"
        }
    }
}

/// A conv stem has one stage per halving of the patch size, each with some channels.
fn validate_conv_stem(m: &ModelConfig) -> Result<(), Violation> {
    let stem = &m.conv_stem;
    if stem.is_empty() {
        for (key, set) in [
            (
                "model.conv_stem_kind",
                m.conv_stem_kind != StemKind::Strided,
            ),
            ("model.conv_stem_depth", m.conv_stem_depth != 1),
            ("model.conv_stem_norm", m.conv_stem_norm != StemNorm::None),
        ] {
            if set {
                return fail(
                    key,
                    format!("applies to a conv stem and model.conv_stem is empty; list its channels (e.g. conv_stem = [32, 64] for patch 4) or remove {}", &key[6..]),
                );
            }
        }
        return Ok(());
    }
    if !(1..=Limits::DEPTH).contains(&m.conv_stem_depth) {
        return fail(
            "model.conv_stem_depth",
            format!(
                "{} convs per stem stage; give 1 to {} (1 is one conv per stage)",
                m.conv_stem_depth,
                Limits::DEPTH
            ),
        );
    }
    if let Some(zero) = stem.iter().position(|&c| c == 0) {
        return fail(
            "model.conv_stem",
            format!("entry {zero} has 0 channels; give every stem conv at least 1 channel"),
        );
    }
    if let Some(&wide) = stem.iter().find(|&&c| c > Limits::DIM) {
        return fail(
            "model.conv_stem",
            format!("{wide} channels is above the limit of {}", Limits::DIM),
        );
    }
    let stride = 1usize
        .checked_shl(stem.len() as u32)
        .filter(|&s| s <= Limits::IMAGE_SIZE);
    if stride != Some(m.patch_size) {
        let fits = m.patch_size.is_power_of_two() && m.patch_size > 1;
        let fix = if fits {
            format!(
                "give it {} entries (one per halving: log2 of patch_size {})",
                m.patch_size.trailing_zeros(),
                m.patch_size
            )
        } else {
            format!(
                "use a power-of-two patch_size (2, 4, 8, 16) with it, or remove conv_stem for patch_size {}",
                m.patch_size
            )
        };
        return fail(
            "model.conv_stem",
            format!(
                "{} stages, each halving the image, downsample by {}, not by patch_size {}; {fix}",
                stem.len(),
                stride.map_or_else(|| "too much".to_string(), |s| s.to_string()),
                m.patch_size
            ),
        );
    }
    Ok(())
}

/// An upper-side estimate of the host memory a trial needs: enough to refuse what cannot fit,
/// not a prediction to budget by.
pub fn estimate_memory(c: &Config) -> MemoryEstimate {
    let d = &c.data;
    let (batch, size) = (c.train.batch_size as f64, d.image_size as f64);
    let images = d.train_size.unwrap_or(2000) as f64 + d.val_size.unwrap_or(500) as f64;
    let pixels = batch * d.channels as f64 * size * size;
    let loader = (d.prefetch as f64 + 1.0) * pixels * 4.0;
    let step = if c.train.device.is_gpu() == Some(true) {
        0.0
    } else {
        step_memory(c)
    };
    MemoryEstimate {
        order: 8.0 * images,
        loader,
        step,
    }
}

/// Bytes a CUDA context and the caching allocator's slack take on a GPU besides the trial.
const GPU_OVERHEAD: f64 = 1.0 * (1u64 << 30) as f64;

/// An upper-side estimate of the GPU memory a trial needs (its training step and the
/// context), to refuse a trial a GPU cannot hold before it starts.
pub fn estimate_device_memory(c: &Config) -> f64 {
    step_memory(c) + GPU_OVERHEAD
}

/// Weights, gradients and AdamW moments in f32, plus the activations one training step keeps
/// for its backward pass. Mixed precision keeps the 16-bit copies of the matrix ops' inputs
/// beside their f32 outputs (3 bytes a value instead of 4) and a 16-bit copy of the weights.
/// Gradient checkpointing (burn's balanced strategy) recomputes only elementwise outputs and
/// keeps the matrix ops' outputs, and its bookkeeping costs more than that saves: peak memory
/// measured +12–16 % on burn-flex and +5–8 % on LibTorch (BENCHMARKS.md), counted as 15 % more.
fn step_memory(c: &Config) -> f64 {
    let d = &c.data;
    let m = &c.model;
    let (batch, size) = (c.train.batch_size as f64, d.image_size as f64);
    let pixels = batch * d.channels as f64 * size * size;
    let dim = m.embed_dim.unwrap_or(192) as f64;
    let depth = m.depth.unwrap_or(12) as f64;
    let heads = m.num_heads.unwrap_or(3) as f64;
    let patch = m.patch_size.max(1) as f64;
    let tokens = (size / patch).powi(2) + 2.0;
    let hidden = dim * m.mlp_ratio;
    let params = depth * (4.0 * dim * dim + 2.0 * dim * hidden) + tokens * dim;
    let per_block =
        batch * tokens * (12.0 * dim + 2.0 * hidden) + 3.0 * batch * heads * tokens * tokens;
    let (activation_bytes, weight_copies) = if c.train.precision.is_mixed() {
        (3.0, 2.0 * params)
    } else {
        (4.0, 0.0)
    };
    let kept = if c.train.grad_checkpointing {
        1.15
    } else {
        1.0
    };
    4.0 * 4.0 * params
        + weight_copies
        + activation_bytes * kept * (depth * per_block + stem_activations(c))
        + 4.0 * pixels
}

/// Floats a conv stem keeps for its backward pass: each stage's conv output, activation and
/// (pooled) max-pool indices at the resolution it convolves, the output and activation of
/// each further conv of the stage, and each conv's normalised output under a norm.
fn stem_activations(c: &Config) -> f64 {
    let batch = c.train.batch_size as f64;
    let pooled = c.model.conv_stem_kind == StemKind::Pooled;
    let convs = c.model.conv_stem_depth.max(1) as f64;
    let per_conv = if c.model.conv_stem_norm == StemNorm::None {
        2.0
    } else {
        3.0
    };
    let mut side = c.data.image_size as f64;
    let mut floats = 0.0;
    for &channels in &c.model.conv_stem {
        let out_side = if pooled { side } else { side / 2.0 };
        let kept = per_conv * convs + if pooled { 1.0 } else { 0.0 };
        floats += kept * batch * channels as f64 * out_side * out_side;
        side /= 2.0;
    }
    floats
}

/// Total memory of this machine (bytes), from `/proc/meminfo`; `None` when unknown.
pub fn machine_memory() -> Option<f64> {
    static TOTAL: OnceLock<Option<f64>> = OnceLock::new();
    *TOTAL.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kib: f64 = text
            .lines()
            .find(|l| l.starts_with("MemTotal:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kib * 1024.0)
    })
}

fn gib(bytes: f64) -> String {
    format!("{:.1} GiB", bytes / f64::from(1u32 << 30))
}

fn fits_in_memory(c: &Config, available: Option<f64>) -> Result<(), Violation> {
    let Some(available) = available else {
        return Ok(());
    };
    let need = estimate_memory(c);
    if need.total() > available {
        return fail(
            need.blame(),
            format!(
                "this trial would need about {} of memory (sample order {}, loader batches {}, training step {}) but this machine has {}; lower data.image_size, train.batch_size, data.prefetch or the dataset size",
                gib(need.total()),
                gib(need.order),
                gib(need.loader),
                gib(need.step),
                gib(available)
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_safe_path_component() {
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "ü"] {
            assert!(!is_safe_name(bad), "{bad:?}");
        }
        for good in ["deit_vehicles", "run-2.1", "A"] {
            assert!(is_safe_name(good), "{good:?}");
        }
        assert!(!is_safe_name(&"x".repeat(Limits::NAME_LEN + 1)));
    }

    #[test]
    fn the_memory_estimate_refuses_what_cannot_fit() {
        let mut c = Config::default();
        c.resolve_model();
        assert!(fits_in_memory(&c, Some(4e9)).is_ok());
        c.data.train_size = Some(10_000_000_000);
        let (key, reason) = fits_in_memory(&c, Some(24e9)).unwrap_err();
        assert_eq!(key, "data.train_size");
        assert!(reason.contains("GiB"), "{reason}");
    }

    #[test]
    fn a_conv_stem_counts_its_full_resolution_activations() {
        let mut c = Config::default();
        c.resolve_model();
        let plain = estimate_memory(&c).step;
        c.model.conv_stem = vec![32, 64];
        let strided = estimate_memory(&c).step;
        c.model.conv_stem_kind = StemKind::Pooled;
        let pooled = estimate_memory(&c).step;
        let batch = c.train.batch_size as f64;
        let side = c.data.image_size as f64;
        let per_pooled = 3.0 * batch * (32.0 * side * side + 64.0 * side * side / 4.0);
        assert_eq!(pooled - plain, 4.0 * per_pooled);
        assert!(plain < strided && strided < pooled);
        c.model.conv_stem_depth = 2;
        let doubled = estimate_memory(&c).step;
        let per_further = 2.0 * batch * (32.0 * side * side + 64.0 * side * side / 4.0);
        assert_eq!(doubled - pooled, 4.0 * per_further);
        c.model.conv_stem_norm = StemNorm::Batch;
        let normed = estimate_memory(&c).step;
        assert_eq!(normed - doubled, 4.0 * per_further);
    }
}
