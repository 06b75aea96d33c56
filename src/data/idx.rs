//! IDX files (MNIST, Fashion-MNIST), raw or gzipped.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::dataset::{select_classes, DataError, Dataset, Sample, Splits};
use super::image::Image;

/// Fashion-MNIST's label names, in label order.
pub const FASHION_CLASSES: [&str; 10] = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
];

/// Grey images held in memory as bytes.
pub struct IdxImages {
    rows: usize,
    cols: usize,
    pixels: Arc<Vec<u8>>,
    /// (image index in `pixels`, label) per sample.
    items: Vec<(usize, usize)>,
}

impl Dataset for IdxImages {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn get(&self, index: usize) -> Result<Sample, DataError> {
        let (at, label) = self.items[index];
        let plane = self.rows * self.cols;
        let image = Image::from_interleaved_u8(
            1,
            self.rows,
            self.cols,
            &self.pixels[at * plane..(at + 1) * plane],
        );
        Ok(Sample { image, label })
    }
}

fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    [stem.to_string(), format!("{stem}.gz")]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

fn read_all(path: &Path) -> Result<Vec<u8>, DataError> {
    let bad = |reason: String| DataError::BadFile {
        path: path.display().to_string(),
        reason,
    };
    let raw = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| bad(format!("not a valid gzip file ({e})")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses an IDX file: returns its dims and its u8 payload.
fn parse(path: &Path, expect_dims: usize) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let bytes = read_all(path)?;
    let bad = |reason: String| DataError::BadFile {
        path: path.display().to_string(),
        reason,
    };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        return Err(bad(
            "not an unsigned-byte IDX file (bad magic number)".into()
        ));
    }
    let ndims = bytes[3] as usize;
    if ndims != expect_dims || bytes.len() < 4 + 4 * ndims {
        return Err(bad(format!(
            "expected {expect_dims} dimensions, found {ndims}"
        )));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| {
            u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize
        })
        .collect();
    let payload = bytes[4 + 4 * ndims..].to_vec();
    if payload.len() != dims.iter().product::<usize>() {
        return Err(bad(format!(
            "header says {dims:?} but the file holds {} bytes of data (truncated?)",
            payload.len()
        )));
    }
    Ok((dims, payload))
}

/// One images file with its labels file.
struct IdxPair {
    rows: usize,
    cols: usize,
    pixels: Vec<u8>,
    labels: Vec<u8>,
}

fn load_pair(dir: &Path, prefix: &str) -> Result<Option<IdxPair>, DataError> {
    let (Some(images), Some(labels)) = (
        find(dir, &format!("{prefix}-images-idx3-ubyte")),
        find(dir, &format!("{prefix}-labels-idx1-ubyte")),
    ) else {
        return Ok(None);
    };
    let (dims, pixels) = parse(&images, 3)?;
    let (ldims, labels_raw) = parse(&labels, 1)?;
    if ldims[0] != dims[0] {
        return Err(DataError::Layout {
            path: dir.display().to_string(),
            reason: format!("{} images but {} labels", dims[0], ldims[0]),
        });
    }
    Ok(Some(IdxPair {
        rows: dims[1],
        cols: dims[2],
        pixels,
        labels: labels_raw,
    }))
}

/// Opens an IDX folder: `train-*` for training and `t10k-*` for validation (or a fraction of
/// training when `t10k-*` is absent).
pub fn open(
    dir: &Path,
    wanted: Option<&[String]>,
    val_split: f64,
    caps: (Option<usize>, Option<usize>),
) -> Result<Splits, DataError> {
    if !dir.is_dir() {
        return Err(DataError::MissingPath {
            path: dir.display().to_string(),
        });
    }
    let Some(IdxPair {
        rows,
        cols,
        pixels,
        labels,
    }) = load_pair(dir, "train")?
    else {
        return Err(DataError::Layout {
            path: dir.display().to_string(),
            reason: "no train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] here".into(),
        });
    };
    let n_classes = labels.iter().copied().max().unwrap_or(0) as usize + 1;
    let fashion = dir.display().to_string().to_lowercase().contains("fashion");
    let own: Vec<String> = (0..n_classes)
        .map(|i| match (fashion, FASHION_CLASSES.get(i)) {
            (true, Some(name)) => name.to_string(),
            _ => i.to_string(),
        })
        .collect();
    let picked = select_classes(&own, wanted)?;
    let relabel =
        |labels: &[u8], range: std::ops::Range<usize>, cap: Option<usize>| -> Vec<(usize, usize)> {
            let mut items: Vec<(usize, usize)> = range
                .filter_map(|i| {
                    picked
                        .iter()
                        .position(|&c| c == labels[i] as usize)
                        .map(|l| (i, l))
                })
                .collect();
            if let Some(cap) = cap {
                items.truncate(cap);
            }
            items
        };
    let train_pixels = Arc::new(pixels);
    let (train, val) = match load_pair(dir, "t10k")? {
        Some(IdxPair {
            rows: r,
            cols: c,
            pixels: vpix,
            labels: vlabels,
        }) if (r, c) == (rows, cols) => {
            let val = IdxImages {
                rows,
                cols,
                items: relabel(&vlabels, 0..vlabels.len(), caps.1),
                pixels: Arc::new(vpix),
            };
            let train = IdxImages {
                rows,
                cols,
                items: relabel(&labels, 0..labels.len(), caps.0),
                pixels: train_pixels,
            };
            (train, val)
        }
        _ => {
            let n_val = (labels.len() as f64 * val_split).round() as usize;
            let cut = labels.len() - n_val;
            let train = IdxImages {
                rows,
                cols,
                items: relabel(&labels, 0..cut, caps.0),
                pixels: train_pixels.clone(),
            };
            let val = IdxImages {
                rows,
                cols,
                items: relabel(&labels, cut..labels.len(), caps.1),
                pixels: train_pixels,
            };
            (train, val)
        }
    };
    Ok(Splits {
        train: Arc::new(train),
        val: Arc::new(val),
        classes: picked.iter().map(|&i| own[i].clone()).collect(),
        source: dir.display().to_string(),
    })
}
