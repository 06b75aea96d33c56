//! Mask folders, VOC's layout: `root/images/NAME.{png,jpg,jpeg}`, each with
//! `root/masks/NAME.png`, or both folders under `root/train/` and `root/val/`. A mask's pixels are
//! class ids (a palette PNG's indices or a grey PNG's values): 0 = the first class, 255 = ignore.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use super::dataset::{hold_out, DataError, Dataset, Sample, Splits, Target};
use super::folder::decode;
use super::geometry::{Mask, IGNORE_LABEL};

/// Images with their masks; both are decoded on `get`.
pub struct MaskFolder {
    items: Vec<Pair>,
    classes: usize,
    max_pixels: u64,
}

/// An image and the mask file that should label it.
#[derive(Debug, Clone)]
struct Pair {
    image: PathBuf,
    mask: PathBuf,
}

impl Dataset for MaskFolder {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn get(&self, index: usize) -> Result<Sample, DataError> {
        let pair = &self.items[index];
        let image = decode(&pair.image, self.max_pixels)?;
        let mask = read_mask(&pair.mask, self.max_pixels, &pair.image)?;
        if (mask.height, mask.width) != (image.height, image.width) {
            return Err(bad(
                &pair.mask,
                format!(
                    "the mask is {}x{} but its image {} is {}x{}; masks must have their image's size",
                    mask.width,
                    mask.height,
                    pair.image.display(),
                    image.width,
                    image.height
                ),
            ));
        }
        if let Some(&label) = mask
            .labels
            .iter()
            .find(|&&l| l != IGNORE_LABEL && usize::from(l) >= self.classes)
        {
            return Err(bad(
                &pair.mask,
                format!(
                    "class id {label} is beyond the {} classes (0..={}, and 255 = ignore); list every class in data.classes",
                    self.classes,
                    self.classes - 1
                ),
            ));
        }
        Ok(Sample {
            image,
            target: Target::Mask(mask),
        })
    }
}

fn bad(path: &Path, reason: String) -> DataError {
    DataError::BadFile {
        path: path.display().to_string(),
        reason,
    }
}

/// Reads a mask PNG's class ids: a palette PNG's indices (never its colours) or a grey PNG's
/// values, at bit depths 1 to 8. `image` names the image the mask belongs to, for errors.
pub fn read_mask(path: &Path, max_pixels: u64, image: &Path) -> Result<Mask, DataError> {
    let file = File::open(path).map_err(|e| {
        bad(
            path,
            format!("{e}; the image {} needs this mask", image.display()),
        )
    })?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder
        .read_info()
        .map_err(|e| bad(path, format!("not a readable PNG: {e}")))?;
    let info = reader.info();
    let (width, height) = (info.width as usize, info.height as usize);
    let (color, depth) = (info.color_type, info.bit_depth);
    if (width * height) as u64 > max_pixels || width * height == 0 {
        return Err(bad(
            path,
            format!("the mask declares {width}x{height} pixels, outside 1..={max_pixels} (data.max_image_pixels)"),
        ));
    }
    let bits = match (color, depth) {
        (png::ColorType::Indexed | png::ColorType::Grayscale, png::BitDepth::Eight) => 8,
        (png::ColorType::Indexed | png::ColorType::Grayscale, png::BitDepth::Four) => 4,
        (png::ColorType::Indexed | png::ColorType::Grayscale, png::BitDepth::Two) => 2,
        (png::ColorType::Indexed | png::ColorType::Grayscale, png::BitDepth::One) => 1,
        _ => {
            return Err(bad(
                path,
                format!("the mask is {color:?} at {depth:?} bits; a mask is a palette or 8-bit grey PNG of class ids (0 = first class, 255 = ignore)"),
            ))
        }
    };
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| bad(path, "the mask is too large to decode".into()))?;
    let mut buf = vec![0u8; size];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| bad(path, format!("cannot decode the mask: {e}")))?;
    let per_byte = 8 / bits;
    let mut labels = Vec::with_capacity(width * height);
    for row in buf.chunks(frame.line_size).take(height) {
        labels.extend((0..width).map(|x| {
            let byte = row[x / per_byte];
            let shift = 8 - bits * (x % per_byte + 1);
            (byte >> shift) & ((1u16 << bits) - 1) as u8
        }));
    }
    Ok(Mask {
        height,
        width,
        labels,
    })
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

/// The images of `dir/images` paired with `dir/masks/<stem>.png`. A missing mask is an error
/// naming both, or (under `skip_bad`) left for `get` to report and count.
fn pairs(dir: &Path, skip_bad: bool) -> Result<Vec<Pair>, DataError> {
    let images = dir.join("images");
    let masks = dir.join("masks");
    for sub in [&images, &masks] {
        if !sub.is_dir() {
            return Err(DataError::Layout {
                path: dir.display().to_string(),
                reason: format!(
                    "no {} folder; a mask folder holds images/NAME.png|jpg and masks/NAME.png (or train/ and val/ each holding both)",
                    sub.file_name().and_then(|n| n.to_str()).unwrap_or_default()
                ),
            });
        }
    }
    let entries = std::fs::read_dir(&images).map_err(|e| bad(&images, e.to_string()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| is_image(p) && p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|image| {
            // `<stem>.png` for the whole stem: `a.v1.png`'s mask is `a.v1.png`, never `a.png`.
            let mut name = image.file_stem().unwrap_or_default().to_os_string();
            name.push(".png");
            let mask = masks.join(name);
            if !skip_bad && !mask.is_file() {
                return Err(bad(
                    &image,
                    format!(
                        "its mask {} is missing; add it, remove the image, or set data.skip_bad = true to skip (and count) such images",
                        mask.display()
                    ),
                ));
            }
            Ok(Pair { image, mask })
        })
        .collect()
}

/// The number of classes the masks use: one past the largest id other than 255. Unreadable
/// masks are left to `get` under `skip_bad`, and are errors otherwise.
fn classes_in(items: &[Pair], max_pixels: u64, skip_bad: bool) -> Result<usize, DataError> {
    let largest: Vec<Result<Option<u8>, DataError>> = items
        .par_iter()
        .map(|p| match read_mask(&p.mask, max_pixels, &p.image) {
            Ok(m) => Ok(m.labels.into_iter().filter(|&l| l != IGNORE_LABEL).max()),
            Err(_) if skip_bad => Ok(None),
            Err(e) => Err(e),
        })
        .collect();
    let mut top = None;
    for l in largest {
        top = top.max(l?);
    }
    Ok(top.map_or(1, |t| usize::from(t) + 1))
}

/// Opens `root` as a mask folder. Class names come from `wanted` (every id the masks use must
/// have one), else they are `class_0`, `class_1`, … up to the largest id found.
pub fn open(
    root: &Path,
    wanted: Option<&[String]>,
    val_split: f64,
    seed: u64,
    caps: (Option<usize>, Option<usize>),
    skip_bad: bool,
    max_pixels: u64,
) -> Result<Splits, DataError> {
    if !root.is_dir() {
        return Err(DataError::MissingPath {
            path: root.display().to_string(),
        });
    }
    let (train_dir, val_dir) = (root.join("train"), root.join("val"));
    let (mut train, mut val) = if train_dir.is_dir() && val_dir.is_dir() {
        (pairs(&train_dir, skip_bad)?, pairs(&val_dir, skip_bad)?)
    } else {
        hold_out(pairs(root, skip_bad)?, val_split, seed)
    };
    if let Some(cap) = caps.0 {
        train.truncate(cap);
    }
    if let Some(cap) = caps.1 {
        val.truncate(cap);
    }
    let names: Vec<String> = match wanted {
        Some(names) => names.to_vec(),
        None => {
            let both: Vec<Pair> = train.iter().chain(&val).cloned().collect();
            let n = classes_in(&both, max_pixels, skip_bad)?;
            (0..n).map(|i| format!("class_{i}")).collect()
        }
    };
    // One class leaves nothing to tell apart: its IoU, Dice and loss are all trivially perfect.
    if names.len() < 2 {
        return Err(DataError::Classes {
            reason: format!(
                "the masks in {} hold class 0 only, and segmentation needs at least two classes; name them in data.classes (e.g. [\"background\", \"lesion\"]) or check that the masks mark the objects",
                root.display()
            ),
        });
    }
    let make = |items| MaskFolder {
        items,
        classes: names.len(),
        max_pixels,
    };
    Ok(Splits {
        train: Arc::new(make(train)),
        val: Arc::new(make(val)),
        classes: names,
        source: root.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a `width × height` PNG of `labels`, as a palette (with colours unlike the ids)
    /// or as grey.
    fn write_mask(path: &Path, width: u32, height: u32, labels: &[u8], palette: bool) {
        let file = File::create(path).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width, height);
        if palette {
            enc.set_color(png::ColorType::Indexed);
            enc.set_palette(
                (0..=255u8)
                    .flat_map(|i| [255 - i, i / 2, 7])
                    .collect::<Vec<u8>>(),
            );
        } else {
            enc.set_color(png::ColorType::Grayscale);
        }
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header()
            .unwrap()
            .write_image_data(labels)
            .unwrap();
    }

    fn write_image(path: &Path, width: u32, height: u32) {
        image::RgbImage::from_pixel(width, height, image::Rgb([10, 200, 30]))
            .save(path)
            .unwrap();
    }

    fn open_err(root: &Path) -> String {
        match open(root, None, 0.0, 1, (None, None), false, 1 << 20) {
            Ok(_) => panic!("{} opened", root.display()),
            Err(e) => e.to_string(),
        }
    }

    fn layout(root: &Path) {
        std::fs::create_dir_all(root.join("images")).unwrap();
        std::fs::create_dir_all(root.join("masks")).unwrap();
    }

    #[test]
    fn palette_and_grey_masks_give_class_ids_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        layout(root);
        for i in 0..4 {
            write_image(&root.join(format!("images/{i}.png")), 3, 2);
            let labels = [0, 1, 2, 255, i as u8 % 3, 0];
            write_mask(
                &root.join(format!("masks/{i}.png")),
                3,
                2,
                &labels,
                i % 2 == 0,
            );
        }
        let s = open(root, None, 0.25, 1, (None, None), false, 1 << 20).unwrap();
        assert_eq!(s.classes, ["class_0", "class_1", "class_2"]);
        assert_eq!((s.train.len(), s.val.len()), (3, 1));
        for split in [&s.train, &s.val] {
            for i in 0..split.len() {
                let Target::Mask(m) = split.get(i).unwrap().target else {
                    panic!("a mask target");
                };
                assert_eq!((m.width, m.height), (3, 2));
                assert_eq!(
                    &m.labels[..4],
                    &[0, 1, 2, 255],
                    "indices, not palette colours"
                );
            }
        }
    }

    #[test]
    fn malformed_folders_name_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        layout(root);
        write_image(&root.join("images/a.png"), 4, 4);
        write_image(&root.join("images/b.jpg"), 4, 4);
        let mut blob = [0u8; 16];
        blob[5] = 1;
        write_mask(&root.join("masks/a.png"), 4, 4, &blob, false);
        let e = open_err(root);
        assert!(
            e.contains("b.jpg") && e.contains("masks/b.png") && e.contains("skip_bad"),
            "{e}"
        );
        let failures = |s: &Splits| -> Vec<String> {
            (0..s.train.len())
                .filter_map(|i| s.train.get(i).err())
                .map(|e| e.to_string())
                .collect()
        };
        // Under skip_bad the image stays, and reading it is the counted failure.
        let s = open(root, None, 0.0, 1, (None, None), true, 1 << 20).unwrap();
        let errors = failures(&s);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].contains("masks/b.png") && errors[0].contains("b.jpg"),
            "{}",
            errors[0]
        );

        write_mask(&root.join("masks/b.png"), 4, 3, &[0; 12], false);
        let s = open(root, None, 0.0, 1, (None, None), false, 1 << 20).unwrap();
        let e = failures(&s).join("; ");
        assert!(
            e.contains("masks/b.png") && e.contains("4x3") && e.contains("4x4"),
            "{e}"
        );

        write_mask(&root.join("masks/b.png"), 4, 4, &[7; 16], false);
        let two = ["sky".to_string(), "road".to_string()];
        let s = open(root, Some(&two), 0.0, 1, (None, None), false, 1 << 20).unwrap();
        let e = failures(&s).join("; ");
        assert!(
            e.contains("masks/b.png") && e.contains("class id 7") && e.contains("data.classes"),
            "{e}"
        );

        image::RgbImage::new(4, 4)
            .save(root.join("masks/b.png"))
            .unwrap();
        let e = failures(&s).join("; ");
        assert!(
            e.contains("masks/b.png") && e.contains("palette or 8-bit grey"),
            "{e}"
        );

        std::fs::remove_dir_all(root.join("masks")).unwrap();
        let e = open_err(root);
        assert!(e.contains("no masks folder"), "{e}");
    }

    #[test]
    fn masks_of_one_class_are_refused_before_training() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        layout(root);
        write_image(&root.join("images/a.png"), 4, 4);
        write_mask(&root.join("masks/a.png"), 4, 4, &[0; 16], false);
        let e = open_err(root);
        assert!(
            e.contains("class 0 only") && e.contains("data.classes"),
            "{e}"
        );
        let two = ["background".to_string(), "lesion".to_string()];
        assert!(open(root, Some(&two), 0.0, 1, (None, None), false, 1 << 20).is_ok());
    }
}
