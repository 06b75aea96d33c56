//! NIfTI volumes as a segmentation dataset (`dataset = "nifti"`): `path/images/NAME.nii[.gz]`
//! with `path/labels/NAME.nii[.gz]` of class ids on the same grid (the Medical Segmentation
//! Decathlon's `imagesTr`/`labelsTr` too). Each volume is windowed to `[0, 1]` (a fixed
//! `data.window`, or its own percentiles) and cut into grey slices across `data.slice_axis`;
//! the split holds out whole volumes, so that no patient's slices straddle train and val.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use super::dataset::{hold_out, DataError, Dataset, Sample, Splits, Target};
use super::geometry::Mask;
use super::nifti::{self, Volume};
use super::Image;

/// How intensities become `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    /// A fixed range (a CT window in Hounsfield units, say).
    Range(f64, f64),
    /// Each volume's own percentiles (MR, whose scale varies by scanner).
    Percentiles(f64, f64),
}

/// How volumes become slices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slicing {
    /// 0 = x (sagittal for RAS volumes), 1 = y (coronal), 2 = z (axial).
    pub axis: usize,
    pub window: Window,
}

impl Slicing {
    /// The slicing `[data]` sets: `slice_axis`, and `window` or `window_percentiles`.
    pub fn of(data: &crate::config::DataConfig) -> Slicing {
        Slicing {
            axis: data.slice_axis,
            window: match data.window {
                Some([lo, hi]) => Window::Range(lo, hi),
                None => Window::Percentiles(data.window_percentiles[0], data.window_percentiles[1]),
            },
        }
    }
}

/// Whether `path` names a NIfTI volume (`.nii` or `.nii.gz`).
pub fn is_volume(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".nii") || name.ends_with(".nii.gz")
}

/// `path`'s file name without `.nii` or `.nii.gz`.
pub fn volume_stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    name.trim_end_matches(".gz")
        .trim_end_matches(".nii")
        .to_string()
}

/// One volume's slices, windowed (16-bit) with their labels.
struct Slices {
    rows: usize,
    columns: usize,
    /// Per slice, the windowed intensities scaled to `0..=65535`.
    images: Vec<Vec<u16>>,
    labels: Vec<Vec<u8>>,
}

/// The slices of a set of volumes.
pub struct VolumeSlices {
    volumes: Vec<Arc<Slices>>,
    /// `(volume, slice)` of each sample.
    index: Vec<(usize, usize)>,
}

impl Dataset for VolumeSlices {
    fn len(&self) -> usize {
        self.index.len()
    }

    fn get(&self, index: usize) -> Result<Sample, DataError> {
        let (v, k) = self.index[index];
        let s = &self.volumes[v];
        let data = s.images[k]
            .iter()
            .map(|&p| f32::from(p) / 65535.0)
            .collect();
        Ok(Sample {
            image: Image {
                channels: 1,
                height: s.rows,
                width: s.columns,
                data,
            },
            target: Target::Mask(Mask {
                height: s.rows,
                width: s.columns,
                labels: s.labels[k].clone(),
            }),
        })
    }
}

/// The value below which `fraction` of `sorted` lies (NumPy's linear percentile).
fn percentile(sorted: &[f32], fraction: f64) -> f64 {
    let at = fraction * (sorted.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    let t = at - lo as f64;
    f64::from(sorted[lo]) * (1.0 - t) + f64::from(sorted[hi]) * t
}

/// `volume`'s intensity range under `window`.
fn range(volume: &Volume, window: Window) -> (f64, f64) {
    match window {
        Window::Range(lo, hi) => (lo, hi),
        Window::Percentiles(lo, hi) => {
            let mut sorted: Vec<f32> = volume
                .voxels
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .collect();
            if sorted.is_empty() {
                return (0.0, 1.0);
            }
            sorted.sort_by(f32::total_cmp);
            (
                percentile(&sorted, lo / 100.0),
                percentile(&sorted, hi / 100.0),
            )
        }
    }
}

/// Intensities `values` windowed from `lo` (times `scale`) into `0..=65535`.
fn windowed(values: &[f32], lo: f64, scale: f64) -> Vec<u16> {
    values
        .iter()
        .map(|&v| ((f64::from(v) - lo) * scale).clamp(0.0, 1.0))
        .map(|v| (v * 65535.0).round() as u16)
        .collect()
}

/// `volume`'s slices across `slicing.axis` as grey images, windowed as training windows them
/// (what `vitrun predict` feeds a model trained on volumes).
pub fn slice_images(volume: &Volume, slicing: Slicing) -> Vec<Image> {
    let (lo, hi) = range(volume, slicing.window);
    let scale = if hi > lo { 1.0 / (hi - lo) } else { 0.0 };
    (0..volume.dims[slicing.axis])
        .map(|k| {
            let (rows, columns, values) = volume.slice(slicing.axis, k);
            Image {
                channels: 1,
                height: rows,
                width: columns,
                data: windowed(&values, lo, scale)
                    .into_iter()
                    .map(|p| f32::from(p) / 65535.0)
                    .collect(),
            }
        })
        .collect()
}

/// Per-slice labels (row-major, as [`Volume::slice`] lays slices out) placed back on the grid
/// `dims`, x fastest: the inverse of slicing across `axis`.
pub fn stack(dims: [usize; 3], axis: usize, slices: &[Vec<u8>]) -> Vec<u8> {
    let [nx, ny, _] = dims;
    let mut out = vec![0u8; dims.iter().product()];
    for (k, slice) in slices.iter().enumerate() {
        let columns = match axis {
            0 => ny,
            _ => nx,
        };
        for (i, &label) in slice.iter().enumerate() {
            let (r, c) = (i / columns, i % columns);
            let [x, y, z] = match axis {
                0 => [k, c, r],
                1 => [c, k, r],
                _ => [c, r, k],
            };
            out[x + nx * (y + ny * z)] = label;
        }
    }
    out
}

/// Where a dataset keeps its images and labels: `images`/`labels`, or the Decathlon's
/// `imagesTr`/`labelsTr`.
fn layout(root: &Path) -> Result<(PathBuf, PathBuf), DataError> {
    for (images, labels) in [("images", "labels"), ("imagesTr", "labelsTr")] {
        if root.join(images).is_dir() {
            return Ok((root.join(images), root.join(labels)));
        }
    }
    Err(DataError::Layout {
        path: root.display().to_string(),
        reason: "a NIfTI dataset keeps its volumes in images/ with their label volumes in labels/ (or the Decathlon's imagesTr/ and labelsTr/)".into(),
    })
}

/// The volume files of `dir`, sorted.
fn volume_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::BadFile {
        path: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // The Decathlon's macOS copies carry `._NAME` resource files: not volumes.
            !name.starts_with("._") && is_volume(p)
        })
        .collect();
    files.sort();
    Ok(files)
}

fn bad(path: &Path, reason: String) -> DataError {
    DataError::BadFile {
        path: path.display().to_string(),
        reason,
    }
}

/// Reads an image volume and its label volume into slices.
fn load(
    image: &Path,
    label: &Path,
    slicing: Slicing,
    max_voxels: u64,
) -> Result<Slices, DataError> {
    let volume = nifti::read(image, max_voxels).map_err(|e| bad(image, e))?;
    if !label.is_file() {
        return Err(DataError::Layout {
            path: image.display().to_string(),
            reason: format!(
                "its label volume {} is missing; every image volume needs one of the same name",
                label.display()
            ),
        });
    }
    let labels = nifti::read(label, max_voxels).map_err(|e| bad(label, e))?;
    if labels.dims != volume.dims {
        return Err(bad(
            label,
            format!(
                "the label grid is {:?} and its image {} is {:?}; labels must be on the image's grid",
                labels.dims,
                image.display(),
                volume.dims
            ),
        ));
    }
    if let Some(v) = labels
        .voxels
        .iter()
        .find(|v| !(v.fract() == 0.0 && (0.0..255.0).contains(*v)))
    {
        return Err(bad(
            label,
            format!("label value {v} is not a class id in 0..=254"),
        ));
    }
    let (lo, hi) = range(&volume, slicing.window);
    let scale = if hi > lo { 1.0 / (hi - lo) } else { 0.0 };
    let depth = volume.dims[slicing.axis];
    let mut slices = Slices {
        rows: 0,
        columns: 0,
        images: Vec::with_capacity(depth),
        labels: Vec::with_capacity(depth),
    };
    for k in 0..depth {
        let (rows, columns, values) = volume.slice(slicing.axis, k);
        let (_, _, ids) = labels.slice(slicing.axis, k);
        slices.rows = rows;
        slices.columns = columns;
        slices.images.push(windowed(&values, lo, scale));
        slices.labels.push(ids.iter().map(|&l| l as u8).collect());
    }
    Ok(slices)
}

/// The dataset of the volumes under `root`: whole volumes held out (`val_split`, shuffled by
/// `seed`), every slice a sample (capped by `caps`), classes `wanted` or `background`,
/// `label_1`, … up to the largest label.
pub fn open(
    root: &Path,
    wanted: Option<&[String]>,
    val_split: f64,
    seed: u64,
    caps: (Option<usize>, Option<usize>),
    max_voxels: u64,
    slicing: Slicing,
) -> Result<Splits, DataError> {
    if !root.is_dir() {
        return Err(DataError::MissingPath {
            path: root.display().to_string(),
        });
    }
    let (images, labels) = layout(root)?;
    let files = volume_files(&images)?;
    let loaded: Vec<(PathBuf, Arc<Slices>)> = files
        .par_iter()
        .map(|image| {
            let label = labels.join(image.file_name().expect("a file"));
            load(image, &label, slicing, max_voxels).map(|s| (image.clone(), Arc::new(s)))
        })
        .collect::<Result<_, _>>()?;
    if loaded.len() < 2 {
        return Err(DataError::Layout {
            path: images.display().to_string(),
            reason: format!(
                "{} volumes; the split holds out whole volumes, so give at least 2",
                loaded.len()
            ),
        });
    }
    let largest = loaded
        .iter()
        .flat_map(|(_, s)| s.labels.iter().flatten())
        .copied()
        .max()
        .unwrap_or(0);
    let classes: Vec<String> = match wanted {
        Some(names) => {
            if usize::from(largest) >= names.len() {
                return Err(DataError::Classes {
                    reason: format!(
                        "the label volumes hold class id {largest} and data.classes names {} classes; name every class, the background first",
                        names.len()
                    ),
                });
            }
            names.to_vec()
        }
        None => std::iter::once("background".to_string())
            .chain((1..=largest.max(1)).map(|k| format!("label_{k}")))
            .collect(),
    };
    let volumes: Vec<usize> = (0..loaded.len()).collect();
    let (train, val) = hold_out(volumes, val_split, seed);
    let slices: Vec<Arc<Slices>> = loaded.iter().map(|(_, s)| s.clone()).collect();
    let split = |members: &[usize], cap: Option<usize>| {
        let mut members = members.to_vec();
        members.sort_unstable();
        let index: Vec<(usize, usize)> = members
            .iter()
            .flat_map(|&v| (0..slices[v].images.len()).map(move |k| (v, k)))
            .take(cap.unwrap_or(usize::MAX))
            .collect();
        VolumeSlices {
            volumes: slices.clone(),
            index,
        }
    };
    if val.is_empty() || train.is_empty() {
        return Err(DataError::Layout {
            path: images.display().to_string(),
            reason: format!(
                "data.val_split = {val_split} of {} volumes leaves a split empty; hold out a fraction that gives each split a volume",
                loaded.len()
            ),
        });
    }
    Ok(Splits {
        train: Arc::new(split(&train, caps.0)),
        val: Arc::new(split(&val, caps.1)),
        classes,
        source: format!("{} NIfTI volumes in {}", loaded.len(), root.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nifti")
    }

    const Z: Slicing = Slicing {
        axis: 2,
        window: Window::Range(0.0, 400.0),
    };

    fn open_at(root: &Path, slicing: Slicing) -> Result<Splits, DataError> {
        open(root, None, 0.34, 7, (None, None), 1 << 20, slicing)
    }

    /// Which fixture volume a slice's labels come from (scripts/make_nifti_fixtures.py).
    fn case_of(mask: &Mask, z: Option<usize>) -> Vec<&'static str> {
        let label = |x: usize, y: usize| mask.labels[y * mask.width + x];
        let a = |x: usize, _: usize| if z == Some(3) { 2 } else { u8::from(x >= 3) };
        type Rule<'a> = &'a dyn Fn(usize, usize) -> u8;
        let tests: [(&str, Rule); 3] = [
            ("a", &a),
            ("b", &|_, y| u8::from(y >= 2)),
            ("c", &|x, y| u8::from(x + y > 5)),
        ];
        tests
            .iter()
            .filter(|(_, f)| (0..5).all(|y| (0..6).all(|x| label(x, y) == f(x, y))))
            .map(|(n, _)| *n)
            .collect()
    }

    /// Whole volumes are held out: every validation slice is of one volume, no training slice
    /// is of it; z slices are 5 rows of 6; classes default to background and label_k.
    #[test]
    fn the_split_holds_out_whole_volumes() {
        let splits = open_at(&fixtures().join("scans"), Z).unwrap();
        assert_eq!(splits.classes, ["background", "label_1", "label_2"]);
        assert_eq!((splits.train.len(), splits.val.len()), (8, 4));
        let cases = |d: &Arc<dyn Dataset>| -> Vec<Vec<&'static str>> {
            (0..d.len())
                .map(|i| match d.get(i).unwrap().target {
                    Target::Mask(m) => {
                        assert_eq!((m.height, m.width), (5, 6));
                        case_of(&m, Some(i % 4))
                    }
                    _ => unreachable!(),
                })
                .collect()
        };
        let val = cases(&splits.val);
        let held: Vec<&str> = val.iter().flatten().copied().collect();
        assert!(!held.is_empty());
        let first = held[0];
        assert!(val.iter().all(|c| c.contains(&first)), "{val:?}");
        assert!(
            cases(&splits.train).iter().all(|c| !c.contains(&first)),
            "{first} leaks into training"
        );
    }

    /// Stacking the slices of any axis gives the volume back.
    #[test]
    fn stacking_inverts_slicing() {
        let volume = nifti::read(&fixtures().join("scans/images/case_a.nii.gz"), 1 << 20).unwrap();
        let truth: Vec<u8> = volume
            .voxels
            .iter()
            .map(|&v| (v as u32 % 251) as u8)
            .collect();
        let labels = Volume {
            voxels: truth.iter().map(|&l| f32::from(l)).collect(),
            ..volume.clone()
        };
        for axis in 0..3 {
            let slices: Vec<Vec<u8>> = (0..labels.dims[axis])
                .map(|k| labels.slice(axis, k).2.iter().map(|&v| v as u8).collect())
                .collect();
            assert_eq!(stack(labels.dims, axis, &slices), truth, "axis {axis}");
        }
        let images = slice_images(&volume, Z);
        assert_eq!((images.len(), images[3].height, images[3].width), (4, 5, 6));
    }

    /// A fixed window maps its range to [0, 1]; the default percentiles reach both ends.
    #[test]
    fn windows_scale_intensities() {
        let root = fixtures().join("scans");
        let volume = load(
            &root.join("images/case_a.nii.gz"),
            &root.join("labels/case_a.nii.gz"),
            Z,
            1 << 20,
        )
        .unwrap();
        let pixel = f32::from(volume.images[3][2 * 6 + 1]) / 65535.0;
        assert!((pixel - 321.0 / 400.0).abs() < 1e-4, "{pixel}");
        let clipped = Slicing {
            axis: 2,
            window: Window::Percentiles(0.5, 99.5),
        };
        let volume = load(
            &root.join("images/case_a.nii.gz"),
            &root.join("labels/case_a.nii.gz"),
            clipped,
            1 << 20,
        )
        .unwrap();
        let all: Vec<u16> = volume.images.concat();
        assert!(all.contains(&0) && all.contains(&65535));
    }

    /// Bad layouts and label volumes are named errors.
    #[test]
    fn bad_datasets_are_named_errors() {
        let err = |root: &Path| open_at(root, Z).err().unwrap().to_string();
        let e = err(&fixtures().join("mismatch"));
        assert!(
            e.contains("x.nii.gz") && e.contains("the label grid is [6, 5, 3] and its image"),
            "{e}"
        );
        let e = err(&fixtures().join("bad"));
        assert!(
            e.contains("keeps its volumes in images/ with their label volumes in labels/"),
            "{e}"
        );
        let e = open(
            &fixtures().join("scans"),
            Some(&["bg".to_string(), "x".to_string()]),
            0.34,
            7,
            (None, None),
            1 << 20,
            Z,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.contains("hold class id 2 and data.classes names 2 classes"),
            "{e}"
        );
        let tmp = tempfile::tempdir().unwrap();
        for (from, to) in [("images", "imagesTr"), ("labels", "labelsTr")] {
            std::fs::create_dir(tmp.path().join(to)).unwrap();
            for name in ["case_a.nii.gz", "case_c.nii.gz"] {
                std::fs::copy(
                    fixtures().join("scans").join(from).join(name),
                    tmp.path().join(to).join(name),
                )
                .unwrap();
            }
        }
        let splits = open(tmp.path(), None, 0.5, 1, (None, None), 1 << 20, Z).unwrap();
        assert_eq!(
            (splits.train.len(), splits.val.len()),
            (4, 4),
            "the Decathlon's layout"
        );
        std::fs::remove_file(tmp.path().join("labelsTr/case_c.nii.gz")).unwrap();
        let e = err(tmp.path());
        assert!(
            e.contains("its label volume") && e.contains("labelsTr/case_c.nii.gz is missing"),
            "{e}"
        );
    }
}
