//! `vitrun explain`: what a trained model's prediction looked at, per image, as a map over
//! the image as the model saw it: the last block's CLS attention, attention rollout, or
//! Grad-CAM of a class (the model's answer by default). Writes `<image>.<method>.png` (the map
//! over the image) and `<image>.<method>.npy` (the map, float32 `[height, width]`) under
//! `--out`, and one line (or JSON object) per image.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::predict::{images, ExplainRequest, Explained, Predictor};
use super::runs::RunsDirArg;
use crate::plot::raster::{overlay, Rgb};
use crate::plot::Fusion;
use crate::task::explain::Method;

/// What `vitrun explain` takes.
#[derive(clap::Args)]
pub struct ExplainArgs {
    /// A trial id or prefix, an experiment or sweep (its best trial), or a checkpoint file or
    /// trial folder (its trial's config.toml describes it, or --config), e.g. 1ce1b0 or
    /// runs/deit_vehicles/1ce1b0…/checkpoints/best.mpk
    pub target: String,
    /// Image files or folders (searched recursively for .png/.jpg/.jpeg), e.g. cat.jpg
    /// photos/
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// attention (the last block's CLS attention), rollout (attention rollout through every
    /// block) or gradcam (Grad-CAM of a class's score, as pytorch-grad-cam), e.g. --method
    /// rollout
    #[arg(long, value_parser = parse_method)]
    pub method: Method,
    /// The class whose score Grad-CAM explains (default: the model's answer: a classifier's
    /// top class, a segmenter's largest class other than the first), or whose best box a
    /// detector's attention shows, e.g. --class truck
    #[arg(long, value_name = "NAME")]
    pub class: Option<String>,
    /// Where the maps are written, e.g. --out maps/
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// How attention heads are combined: mean, max or min, e.g. --fusion max
    #[arg(long, default_value = "mean")]
    pub fusion: Fusion,
    /// Fraction of the lowest attention weights dropped per row (0 keeps all), e.g.
    /// --discard 0.9
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION", value_parser = super::parse::number::<f32>)]
    pub discard: f32,
    /// One JSON object per image instead of text.
    #[arg(long)]
    pub json: bool,
    /// Images per forward pass, e.g. --batch 64
    #[arg(long, default_value_t = 16, value_name = "N", value_parser = super::parse::whole::<usize>)]
    pub batch: usize,
    /// The experiment file of a checkpoint given as TARGET (default: the config.toml of the
    /// trial folder it is in), e.g. --config experiments/deit_vehicles.toml
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Overrides for --config's file, e.g. --set model.depth=6 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    #[command(flatten)]
    pub runs: RunsDirArg,
}

fn parse_method(s: &str) -> Result<Method, String> {
    match s {
        "attention" => Ok(Method::Attention),
        "rollout" => Ok(Method::Rollout),
        "gradcam" => Ok(Method::Gradcam),
        other => Err(format!(
            "unknown method {other:?}; use attention, rollout or gradcam"
        )),
    }
}

/// The index of class `name` among `classes`.
fn class_index(name: &str, classes: &[String], method: Method) -> anyhow::Result<usize> {
    anyhow::ensure!(
        method != Method::Rollout,
        "--class picks the class Grad-CAM explains (or a detector's box); rollout does not depend on a class (use --method gradcam)"
    );
    classes.iter().position(|c| c == name).with_context(|| {
        format!(
            "--class {name:?} is not one of the model's classes ({})",
            classes.join(", ")
        )
    })
}

/// Display pixels per input pixel: small inputs are shown at least 224 pixels wide.
fn display_scale(input: usize) -> usize {
    224usize.div_ceil(input.max(1)).max(1)
}

/// Writes one image's map as `<stem>.<method>.png` and `.npy` under `out`; returns the paths.
fn write_map(
    out: &Path,
    stem: &str,
    explained: &Explained,
    method: Method,
    denorm: Option<(&[f64], &[f64])>,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let [h, w] = explained.map.size;
    let scale = display_scale(h.max(w));
    let base = Rgb::from_image(&explained.input, denorm, scale);
    let shown = crate::task::explain::resize_bilinear(
        &explained.map.values,
        [h, w],
        [h * scale, w * scale],
    );
    let png = out.join(format!("{stem}.{}.png", method.name()));
    let mut drawn = overlay(&base, &shown, 0.5);
    if let Some([x0, y0, x1, y1]) = explained.map.region {
        let corners = crate::data::boxes::Corners { x0, y0, x1, y1 };
        crate::plot::raster::outline(&mut drawn, &corners, scale as f64, [255, 255, 255]);
    }
    drawn
        .save(&png)
        .with_context(|| format!("cannot write {}", png.display()))?;
    let npy = out.join(format!("{stem}.{}.npy", method.name()));
    let bytes = crate::task::npy_f32(&[h, w], &explained.map.values)?;
    std::fs::write(&npy, bytes).with_context(|| format!("cannot write {}", npy.display()))?;
    Ok((png, npy))
}

/// `vitrun explain`: a map per image under `--out`; unreadable images are reported and
/// skipped. Returns how many could not be read.
pub fn explain(args: ExplainArgs, predictor: &Predictor) -> anyhow::Result<usize> {
    anyhow::ensure!(
        args.batch >= 1,
        "--batch 0: give at least 1 image per batch"
    );
    anyhow::ensure!(
        (0.0..1.0).contains(&args.discard),
        "--discard {}: use a fraction in [0, 1), e.g. --discard 0.9",
        args.discard
    );
    let class = args
        .class
        .as_deref()
        .map(|name| class_index(name, predictor.classes(), args.method))
        .transpose()?;
    let request = ExplainRequest {
        method: args.method,
        class,
        fusion: args.fusion,
        discard: args.discard,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("--out {}: cannot create the folder", args.out.display()))?;
    let files = images(&args.images)?;
    let mut stems: HashMap<String, usize> = HashMap::new();
    let mut stdout = std::io::stdout().lock();
    let mut failed = 0;
    for chunk in files.chunks(args.batch) {
        for result in predictor.explain(chunk, &request)? {
            let explained = match result {
                Ok(e) => e,
                Err(why) => {
                    failed += 1;
                    eprintln!("vitrun: skipped: {why}");
                    continue;
                }
            };
            let stem = explained
                .image
                .file_stem()
                .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
            let seen = stems.entry(stem.clone()).or_insert(0);
            *seen += 1;
            let stem = if *seen == 1 {
                stem
            } else {
                format!("{stem}-{seen}")
            };
            let (png, npy) = write_map(
                &args.out,
                &stem,
                &explained,
                args.method,
                predictor.denorm(),
            )?;
            let class = explained.map.class.map(|k| predictor.classes()[k].clone());
            let line = if args.json {
                serde_json::json!({
                    "image": explained.image.display().to_string(),
                    "method": args.method.name(),
                    "class": class,
                    "box": explained.map.region,
                    "map": png.display().to_string(),
                    "values": npy.display().to_string(),
                })
                .to_string()
            } else {
                let what = match (class, explained.map.region) {
                    (Some(c), Some([x0, y0, x1, y1])) => format!(
                        " of the best box, {c} at ({x0:.0}, {y0:.0})–({x1:.0}, {y1:.0}) (its query's cross-attention)"
                    ),
                    (Some(c), None) => format!(" of {c}"),
                    (None, _) => String::new(),
                };
                format!(
                    "{}: {}{what} → {}",
                    explained.image.display(),
                    args.method.name(),
                    png.display()
                )
            };
            writeln!(stdout, "{line}")?;
        }
    }
    Ok(failed)
}
