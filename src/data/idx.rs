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
        Ok(Sample::classified(image, label))
    }
}

fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    [stem.to_string(), format!("{stem}.gz")]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

fn bad(path: &Path, reason: String) -> DataError {
    DataError::BadFile {
        path: path.display().to_string(),
        reason,
    }
}

/// The gzip trailer's ISIZE: the uncompressed size modulo 2^32.
fn gzip_isize(path: &Path) -> std::io::Result<u32> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::End(-4))?;
    let mut tail = [0u8; 4];
    file.read_exact(&mut tail)?;
    Ok(u32::from_le_bytes(tail))
}

/// Parses an IDX file: returns its dims and its u8 payload. The header is checked against
/// the file (and against `max_pixels` per image for 3-d files) before the payload is read,
/// and no more than the declared payload is ever inflated.
fn parse(
    path: &Path,
    expect_dims: usize,
    max_pixels: u64,
) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let meta = std::fs::metadata(path).map_err(|e| bad(path, e.to_string()))?;
    if !meta.is_file() {
        return Err(bad(path, "not a regular file".into()));
    }
    let gz = path.extension().is_some_and(|e| e == "gz");
    let file = std::fs::File::open(path).map_err(|e| bad(path, e.to_string()))?;
    let mut reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
    } else {
        Box::new(std::io::BufReader::new(file))
    };
    let unreadable = |e: std::io::Error| {
        bad(
            path,
            if gz {
                format!("not a valid gzip file ({e})")
            } else {
                e.to_string()
            },
        )
    };
    let mut magic = [0u8; 4];
    reader.read_exact(&mut magic).map_err(unreadable)?;
    if magic[..3] != [0, 0, 0x08] {
        return Err(bad(
            path,
            "not an unsigned-byte IDX file (bad magic number)".into(),
        ));
    }
    let ndims = magic[3] as usize;
    if ndims != expect_dims {
        return Err(bad(
            path,
            format!("expected {expect_dims} dimensions, found {ndims}"),
        ));
    }
    let mut raw = vec![0u8; 4 * ndims];
    reader.read_exact(&mut raw).map_err(unreadable)?;
    let dims: Vec<usize> = raw
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    if dims.contains(&0) {
        return Err(bad(
            path,
            format!("the header declares a zero size: {dims:?}"),
        ));
    }
    if ndims == 3 {
        let pixels = dims[1] as u64 * dims[2] as u64;
        if pixels > max_pixels {
            return Err(bad(
                path,
                format!(
                    "the header declares {}x{} images = {pixels} pixels each, above data.max_image_pixels = {max_pixels}",
                    dims[1], dims[2]
                ),
            ));
        }
    }
    let payload = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= isize::MAX as usize / 2)
        .ok_or_else(|| {
            bad(
                path,
                format!("the header declares an impossible size {dims:?}"),
            )
        })?;
    let header = 4 + 4 * ndims;
    let mismatch = |found: String| {
        bad(
            path,
            format!("the header says {dims:?} ({payload} bytes of data) but the file holds {found} (truncated or corrupt?)"),
        )
    };
    if gz {
        let isize = gzip_isize(path).map_err(|e| bad(path, e.to_string()))?;
        if isize != (header + payload) as u32 {
            return Err(mismatch(format!(
                "{} bytes uncompressed, modulo 2^32",
                isize.wrapping_sub(header as u32)
            )));
        }
    } else if meta.len() != (header + payload) as u64 {
        return Err(mismatch(format!(
            "{} bytes",
            meta.len().saturating_sub(header as u64)
        )));
    }
    let mut data = Vec::new();
    reader
        .take(payload as u64 + 1)
        .read_to_end(&mut data)
        .map_err(unreadable)?;
    if data.len() != payload {
        return Err(mismatch(format!("{} bytes", data.len())));
    }
    Ok((dims, data))
}

/// One images file with its labels file.
struct IdxPair {
    rows: usize,
    cols: usize,
    pixels: Vec<u8>,
    labels: Vec<u8>,
}

fn load_pair(dir: &Path, prefix: &str, max_pixels: u64) -> Result<Option<IdxPair>, DataError> {
    let (Some(images), Some(labels)) = (
        find(dir, &format!("{prefix}-images-idx3-ubyte")),
        find(dir, &format!("{prefix}-labels-idx1-ubyte")),
    ) else {
        return Ok(None);
    };
    let (dims, pixels) = parse(&images, 3, max_pixels)?;
    let (ldims, labels_raw) = parse(&labels, 1, max_pixels)?;
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
    max_pixels: u64,
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
    }) = load_pair(dir, "train", max_pixels)?
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
    let (train, val) = match load_pair(dir, "t10k", max_pixels)? {
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
