//! Range and consistency checks on a resolved config; each failure says what is valid.

use super::device::DeviceSpec;
use super::schema::{Config, Task, PRESETS};

/// A failed check: the key path and what would be valid.
pub type Violation = (String, String);

fn fail<T>(key: &str, reason: impl Into<String>) -> Result<T, Violation> {
    Err((key.to_string(), reason.into()))
}

fn unit_open(key: &str, v: f64) -> Result<(), Violation> {
    if !(0.0..1.0).contains(&v) {
        return fail(key, format!("{v} is out of range; use a value in [0, 1)"));
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

/// Checks every rule; returns the first violation.
pub fn validate(c: &Config) -> Result<(), Violation> {
    if c.name.is_empty()
        || !c
            .name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    {
        return fail(
            "name",
            format!(
                "{:?} cannot name a folder; use letters, digits, '-', '_' or '.'",
                c.name
            ),
        );
    }
    validate_data(c)?;
    validate_model(c)?;
    if c.head.task != Task::Classification {
        return fail(
            "head.task",
            format!(
                "{} is not implemented yet (detection and segmentation heads have their own issue); use \"classification\"",
                serde_json::to_string(&c.head.task).unwrap_or_default()
            ),
        );
    }
    validate_augment(c)?;
    validate_optimizer(c)?;
    let t = &c.train;
    if t.epochs == 0 {
        return fail("train.epochs", "must be at least 1");
    }
    if t.batch_size == 0 {
        return fail("train.batch_size", "must be at least 1");
    }
    if let Err(reason) = t.device.parse::<DeviceSpec>() {
        return fail("train.device", reason);
    }
    Ok(())
}

fn validate_data(c: &Config) -> Result<(), Violation> {
    let d = &c.data;
    if d.image_size == 0 {
        return fail("data.image_size", "must be at least 1 pixel");
    }
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
    }
    if !(0.0..1.0).contains(&d.val_split) {
        return fail(
            "data.val_split",
            format!("{} is not a fraction; use a value in [0, 1)", d.val_split),
        );
    }
    use super::schema::DatasetKind::*;
    if matches!(d.dataset, ImageFolder | Idx) && d.path.as_deref().unwrap_or("").is_empty() {
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
    Ok(())
}

fn validate_model(c: &Config) -> Result<(), Violation> {
    let m = &c.model;
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
    if dim == 0 || depth == 0 || heads == 0 {
        return fail(
            "model.embed_dim",
            "embed_dim, depth and num_heads must be at least 1",
        );
    }
    if dim % heads != 0 {
        return fail(
            "model.embed_dim",
            format!(
                "embed dim {dim} is not divisible by num_heads {heads}; use a multiple of {heads}"
            ),
        );
    }
    if m.mlp_ratio <= 0.0 {
        return fail("model.mlp_ratio", "must be above 0");
    }
    unit_open("model.dropout", m.dropout)?;
    unit_open("model.attn_dropout", m.attn_dropout)?;
    unit_open("model.drop_path", m.drop_path)
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
        if v < 0.0 {
            return fail(&format!("augment.color_jitter.{key}"), "must be 0 or more");
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
    if a.center_crop.ratio < 1.0 {
        return fail(
            "augment.center_crop.ratio",
            "resize ratio below 1 would crop outside the image; use 1.0 or more (e.g. 1.14)",
        );
    }
    Ok(())
}

fn validate_optimizer(c: &Config) -> Result<(), Violation> {
    let o = &c.optimizer;
    if o.lr.is_nan() || o.lr <= 0.0 {
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
    if o.warmup_lr < 0.0 || o.min_lr < 0.0 {
        return fail("optimizer.min_lr", "min_lr and warmup_lr must be 0 or more");
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
