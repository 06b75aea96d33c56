//! ImageFolder: `root/<class>/*.{png,jpg,jpeg}`, split by `train/` + `val/` or by a fraction.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::dataset::{hold_out, select_classes, DataError, Dataset, Sample, Splits};
use super::image::Image;

/// Image files with their labels; images are decoded on `get`.
pub struct ImageFolder {
    items: Vec<(PathBuf, usize)>,
    max_pixels: u64,
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn get(&self, index: usize) -> Result<Sample, DataError> {
        let (path, label) = &self.items[index];
        Ok(Sample::classified(decode(path, self.max_pixels)?, *label))
    }
}

fn reader(path: &Path) -> Result<image::ImageReader<std::io::BufReader<std::fs::File>>, DataError> {
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return Err(bad(path, "not a regular file".into()));
    }
    image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| bad(path, e.to_string()))
}

/// Decodes a PNG/JPEG of any size and colour mode into RGB. Its header is read first: an
/// image declaring more than `max_pixels` pixels is refused before anything is allocated.
pub fn decode(path: &Path, max_pixels: u64) -> Result<Image, DataError> {
    let (w, h) = reader(path)?
        .into_dimensions()
        .map_err(|e| bad(path, e.to_string()))?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels == 0 || pixels > max_pixels {
        return Err(bad(
            path,
            format!(
                "the image declares {w}x{h} = {pixels} pixels, outside 1..={max_pixels} (data.max_image_pixels; a decompression bomb?); raise data.max_image_pixels only if the image is genuine"
            ),
        ));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    limits.max_alloc = Some(pixels.saturating_mul(8).max(1 << 20));
    let mut reader = reader(path)?;
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| bad(path, e.to_string()))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    Ok(Image::from_interleaved_u8(
        3,
        h as usize,
        w as usize,
        img.as_raw(),
    ))
}

fn bad(path: &Path, reason: String) -> DataError {
    DataError::BadFile {
        path: path.display().to_string(),
        reason,
    }
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

fn subdirs(dir: &Path) -> Result<Vec<String>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| bad(dir, e.to_string()))?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .collect();
    names.sort();
    Ok(names)
}

fn scan(dir: &Path, own: &[String], picked: &[usize]) -> Result<Vec<(PathBuf, usize)>, DataError> {
    let mut items = Vec::new();
    for (label, &class) in picked.iter().enumerate() {
        let class_dir = dir.join(&own[class]);
        let Ok(entries) = std::fs::read_dir(&class_dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| is_image(p) && std::fs::metadata(p).is_ok_and(|m| m.is_file()))
            .collect();
        files.sort();
        items.extend(files.into_iter().map(|p| (p, label)));
    }
    Ok(items)
}

/// Opens `root` as an ImageFolder with the given class selection and split settings.
pub fn open(
    root: &Path,
    wanted: Option<&[String]>,
    val_split: f64,
    seed: u64,
    caps: (Option<usize>, Option<usize>),
    max_pixels: u64,
) -> Result<Splits, DataError> {
    if !root.is_dir() {
        return Err(DataError::MissingPath {
            path: root.display().to_string(),
        });
    }
    let (train_dir, val_dir) = (root.join("train"), root.join("val"));
    let presplit = train_dir.is_dir() && val_dir.is_dir();
    let class_root = if presplit { &train_dir } else { root };
    let own = subdirs(class_root)?;
    if own.is_empty() {
        return Err(DataError::Layout {
            path: root.display().to_string(),
            reason: "no class sub-folders; lay images out as ROOT/<class>/*.png (or ROOT/train/<class> and ROOT/val/<class>)".into(),
        });
    }
    let picked = select_classes(&own, wanted)?;
    let (mut train, mut val) = if presplit {
        (
            scan(&train_dir, &own, &picked)?,
            scan(&val_dir, &own, &picked)?,
        )
    } else {
        hold_out(scan(root, &own, &picked)?, val_split, seed)
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    train.shuffle(&mut rng);
    val.shuffle(&mut rng);
    if train.is_empty() {
        return Err(DataError::Layout {
            path: root.display().to_string(),
            reason: "no .png/.jpg/.jpeg images in the class folders".into(),
        });
    }
    if let Some(cap) = caps.0 {
        train.truncate(cap);
    }
    if let Some(cap) = caps.1 {
        val.truncate(cap);
    }
    Ok(Splits {
        train: Arc::new(ImageFolder {
            items: train,
            max_pixels,
        }),
        val: Arc::new(ImageFolder {
            items: val,
            max_pixels,
        }),
        classes: picked.iter().map(|&i| own[i].clone()).collect(),
        source: root.display().to_string(),
    })
}
