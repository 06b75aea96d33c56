//! NIfTI-1 volumes (`.nii`, `.nii.gz`): the 348-byte header (either byte order), the voxel
//! data of the common types scaled by `scl_slope`/`scl_inter`, and the voxel-to-world affine
//! (the sform when set, else the qform, else the voxel sizes). Voxels are stored x fastest
//! (`index = x + nx·(y + ny·z)`), as nibabel's arrays in Fortran order. Hostile files (a wrong
//! header size, a 4-D series, a declared size beyond the file or the pixel limit, a truncated
//! gzip stream) are errors naming the file and what is wrong.

use std::io::Read;
use std::path::Path;

/// A 3-D volume: its voxels as `f32`, x fastest, and its affine.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// `[nx, ny, nz]`.
    pub dims: [usize; 3],
    pub voxels: Vec<f32>,
    /// The voxel-to-world affine's first three rows, row-major.
    pub affine: [[f64; 4]; 3],
}

impl Volume {
    /// The voxel at `[x, y, z]`.
    pub fn at(&self, [x, y, z]: [usize; 3]) -> f32 {
        let [nx, ny, _] = self.dims;
        self.voxels[x + nx * (y + ny * z)]
    }

    /// Slice `index` across `axis` (0 = x, 1 = y, 2 = z) as `(rows, columns, values)`, rows
    /// along the higher of the two remaining axes (a z slice is `ny` rows of `nx` voxels).
    pub fn slice(&self, axis: usize, index: usize) -> (usize, usize, Vec<f32>) {
        let [nx, ny, nz] = self.dims;
        let (rows, columns) = match axis {
            0 => (nz, ny),
            1 => (nz, nx),
            _ => (ny, nx),
        };
        let mut values = Vec::with_capacity(rows * columns);
        for r in 0..rows {
            for c in 0..columns {
                let at = match axis {
                    0 => [index, c, r],
                    1 => [c, index, r],
                    _ => [c, r, index],
                };
                values.push(self.at(at));
            }
        }
        let _ = nz;
        (rows, columns, values)
    }
}

/// Reads a NIfTI-1 volume; `max_voxels` bounds what a header may declare.
pub fn read(path: &Path, max_voxels: u64) -> Result<Volume, String> {
    let raw = std::fs::read(path).map_err(|e| e.to_string())?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .take(1 << 34)
            .read_to_end(&mut out)
            .map_err(|e| format!("the gzip stream is damaged or truncated ({e})"))?;
        out
    } else {
        raw
    };
    parse(&bytes, max_voxels)
}

/// A little- or big-endian reader of the header's fields.
struct Header<'a> {
    bytes: &'a [u8],
    little: bool,
}

impl Header<'_> {
    fn i16(&self, at: usize) -> i16 {
        let b = [self.bytes[at], self.bytes[at + 1]];
        if self.little {
            i16::from_le_bytes(b)
        } else {
            i16::from_be_bytes(b)
        }
    }

    fn f32(&self, at: usize) -> f32 {
        let b: [u8; 4] = self.bytes[at..at + 4].try_into().expect("4 bytes");
        if self.little {
            f32::from_le_bytes(b)
        } else {
            f32::from_be_bytes(b)
        }
    }
}

/// Parses a whole (decompressed) NIfTI-1 file.
pub fn parse(bytes: &[u8], max_voxels: u64) -> Result<Volume, String> {
    if bytes.len() < 348 {
        return Err(format!(
            "{} bytes is shorter than a NIfTI-1 header (348)",
            bytes.len()
        ));
    }
    let size = |little: bool| Header { bytes, little }.i32_at(0);
    let little = match (size(true), size(false)) {
        (348, _) => true,
        (_, 348) => false,
        (540, _) | (_, 540) => {
            return Err(
                "a NIfTI-2 header (540 bytes); save the volume as NIfTI-1 (nibabel.Nifti1Image)"
                    .into(),
            )
        }
        _ => {
            return Err("not a NIfTI-1 file (the header does not start with its size, 348)".into())
        }
    };
    let h = Header { bytes, little };
    let magic = &bytes[344..348];
    if magic != b"n+1\0" {
        return Err(match magic {
            b"ni1\0" => "a header-only .hdr/.img pair; give a single-file .nii or .nii.gz".into(),
            _ => format!("the header's magic is {magic:?}, not \"n+1\""),
        });
    }
    let rank = h.i16(40);
    let dim = |i: usize| h.i16(40 + 2 * i);
    let extra: Vec<i16> = (4..=7).filter(|&i| i as i16 <= rank).map(dim).collect();
    if !(3..=7).contains(&rank) || extra.iter().any(|&d| d > 1) {
        let shape: Vec<i16> = (1..=rank.clamp(1, 7) as usize).map(dim).collect();
        return Err(format!(
            "the volume's dims are {shape:?}; vitrun reads 3-D volumes (one channel, one time point)"
        ));
    }
    let dims = [dim(1), dim(2), dim(3)];
    if dims.iter().any(|&d| d < 1) {
        return Err(format!("the volume's dims {dims:?} are not all positive"));
    }
    let dims = dims.map(|d| d as usize);
    let count = dims.iter().map(|&d| d as u64).product::<u64>();
    if count > max_voxels {
        return Err(format!(
            "the volume declares {count} voxels, more than data.max_image_pixels ({max_voxels})"
        ));
    }
    let (datatype, width): (i16, usize) = match h.i16(70) {
        2 | 256 => (h.i16(70), 1),
        4 | 512 => (h.i16(70), 2),
        8 | 16 | 768 => (h.i16(70), 4),
        64 => (64, 8),
        other => {
            return Err(format!(
                "voxel datatype {other} is not read (vitrun reads uint8, int8, int16, uint16, int32, uint32, float32, float64)"
            ))
        }
    };
    let offset = h.f32(108);
    if !(offset >= 348.0 && offset.fract() == 0.0) {
        return Err(format!(
            "vox_offset {offset} is not a whole byte offset past the header"
        ));
    }
    let offset = offset as usize;
    let needed = count as usize * width;
    let Some(data) = offset
        .checked_add(needed)
        .and_then(|end| bytes.get(offset..end))
    else {
        return Err(format!(
            "the header declares {needed} bytes of voxels from byte {offset} and the file has {}; it is truncated",
            bytes.len()
        ));
    };
    let value = |chunk: &[u8]| -> f32 {
        let word = |n: usize| -> [u8; 8] {
            let mut b = [0u8; 8];
            if little {
                b[..n].copy_from_slice(chunk);
            } else {
                for (i, &v) in chunk.iter().rev().enumerate() {
                    b[i] = v;
                }
            }
            b
        };
        let b = word(width);
        match datatype {
            2 => f32::from(b[0]),
            256 => f32::from(b[0] as i8),
            4 => f32::from(i16::from_le_bytes([b[0], b[1]])),
            512 => f32::from(u16::from_le_bytes([b[0], b[1]])),
            8 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            768 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            16 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            _ => f64::from_le_bytes(b) as f32,
        }
    };
    let (slope, inter) = (h.f32(112), h.f32(116));
    let scale = slope.is_finite() && slope != 0.0;
    let voxels = data
        .chunks_exact(width)
        .map(|c| {
            let v = value(c);
            if scale {
                v * slope + if inter.is_finite() { inter } else { 0.0 }
            } else {
                v
            }
        })
        .collect();
    Ok(Volume {
        dims,
        voxels,
        affine: affine(&h),
    })
}

/// Writes `labels` (x fastest, on the grid `dims`) as a uint8 NIfTI-1 volume with `affine` as
/// its sform (code 1, "scanner"), gzipped when `path` ends in `.gz`: a label volume that
/// overlays its image in any viewer.
pub fn write_labels(
    path: &Path,
    dims: [usize; 3],
    labels: &[u8],
    affine: &[[f64; 4]; 3],
) -> Result<(), String> {
    let mut header = vec![0u8; 352];
    let mut put = |at: usize, bytes: &[u8]| header[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &348i32.to_le_bytes());
    let mut dim = [1i16; 8];
    dim[0] = 3;
    for (k, &d) in dims.iter().enumerate() {
        dim[k + 1] =
            i16::try_from(d).map_err(|_| format!("dimension {d} does not fit a NIfTI-1 header"))?;
    }
    for (k, d) in dim.iter().enumerate() {
        put(40 + 2 * k, &d.to_le_bytes());
    }
    put(70, &2i16.to_le_bytes()); // uint8
    put(72, &8i16.to_le_bytes());
    let zoom = |c: usize| {
        (0..3)
            .map(|r| affine[r][c] * affine[r][c])
            .sum::<f64>()
            .sqrt() as f32
    };
    let pixdim = [1.0, zoom(0), zoom(1), zoom(2), 1.0, 1.0, 1.0, 1.0];
    for (k, v) in pixdim.iter().enumerate() {
        put(76 + 4 * k, &v.to_le_bytes());
    }
    put(108, &352f32.to_le_bytes());
    put(112, &1f32.to_le_bytes());
    put(123, &[10]); // xyzt_units: mm, s
    put(254, &1i16.to_le_bytes());
    for (r, row) in affine.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            put(280 + 16 * r + 4 * c, &(*v as f32).to_le_bytes());
        }
    }
    put(344, b"n+1\0");
    header.extend_from_slice(labels);
    let bytes = if path.to_string_lossy().ends_with(".gz") {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&header).map_err(|e| e.to_string())?;
        encoder.finish().map_err(|e| e.to_string())?
    } else {
        header
    };
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

impl Header<'_> {
    fn i32_at(&self, at: usize) -> i32 {
        let b: [u8; 4] = self.bytes[at..at + 4].try_into().expect("4 bytes");
        if self.little {
            i32::from_le_bytes(b)
        } else {
            i32::from_be_bytes(b)
        }
    }
}

/// The voxel-to-world affine: the sform's rows when `sform_code > 0`, else the qform's
/// quaternion, offsets and voxel sizes (with `qfac`), else the voxel sizes alone.
fn affine(h: &Header<'_>) -> [[f64; 4]; 3] {
    let pixdim = |i: usize| f64::from(h.f32(76 + 4 * i));
    if h.i16(254) > 0 {
        return [0, 1, 2].map(|r| [0, 1, 2, 3].map(|c| f64::from(h.f32(280 + 16 * r + 4 * c))));
    }
    if h.i16(252) > 0 {
        let (b, c, d) = (
            f64::from(h.f32(256)),
            f64::from(h.f32(260)),
            f64::from(h.f32(264)),
        );
        let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
        let rotation = [
            [
                a * a + b * b - c * c - d * d,
                2.0 * (b * c - a * d),
                2.0 * (b * d + a * c),
            ],
            [
                2.0 * (b * c + a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d - a * b),
            ],
            [
                2.0 * (b * d - a * c),
                2.0 * (c * d + a * b),
                a * a + d * d - c * c - b * b,
            ],
        ];
        let qfac = if pixdim(0) < 0.0 { -1.0 } else { 1.0 };
        let zooms = [pixdim(1), pixdim(2), pixdim(3) * qfac];
        let offsets = [h.f32(268), h.f32(272), h.f32(276)].map(f64::from);
        return [0, 1, 2].map(|r| {
            [
                rotation[r][0] * zooms[0],
                rotation[r][1] * zooms[1],
                rotation[r][2] * zooms[2],
                offsets[r],
            ]
        });
    }
    [
        [pixdim(1), 0.0, 0.0, 0.0],
        [0.0, pixdim(2), 0.0, 0.0],
        [0.0, 0.0, pixdim(3), 0.0],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/nifti")
            .join(name)
    }

    /// Voxels (gzip little-endian int16 with an sform; raw big-endian float32 with scaling and a
    /// qform) and affines agree with nibabel's (scripts/make_nifti_fixtures.py).
    #[test]
    fn volumes_read_as_nibabel_reads_them() {
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap())
                .unwrap();
        for (case, file) in [
            ("case_a", "scans/images/case_a.nii.gz"),
            ("case_b", "scans/images/case_b.nii"),
        ] {
            let volume = read(&fixture(file), 1 << 20).unwrap();
            assert_eq!(volume.dims, [6, 5, 4]);
            for (r, row) in expected[case]["affine"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
            {
                for (c, v) in row.as_array().unwrap().iter().enumerate() {
                    assert!(
                        (volume.affine[r][c] - v.as_f64().unwrap()).abs() < 1e-5,
                        "{case} affine {r},{c}"
                    );
                }
            }
            for pair in expected[case]["voxels"].as_array().unwrap() {
                let at: Vec<usize> = serde_json::from_value(pair[0].clone()).unwrap();
                let value = pair[1].as_f64().unwrap() as f32;
                assert_eq!(volume.at([at[0], at[1], at[2]]), value, "{case} {at:?}");
            }
        }
    }

    /// A z slice has ny rows of nx voxels; x and y slices have z as rows.
    #[test]
    fn slices_keep_the_volume_orientation() {
        let volume = read(&fixture("scans/images/case_a.nii.gz"), 1 << 20).unwrap();
        let (rows, columns, values) = volume.slice(2, 3);
        assert_eq!((rows, columns), (5, 6));
        assert_eq!(
            values[2 * 6 + 1],
            321.0,
            "row y = 2, column x = 1 of slice z = 3"
        );
        let (rows, columns, values) = volume.slice(0, 5);
        assert_eq!((rows, columns), (4, 5));
        assert_eq!(
            values[6],
            5.0 + 10.0 + 100.0,
            "row z = 1, column y = 1 of slice x = 5"
        );
    }

    /// A written label volume reads back with its labels and affine.
    #[test]
    fn label_volumes_round_trip() {
        let volume = read(&fixture("scans/images/case_a.nii.gz"), 1 << 20).unwrap();
        let labels: Vec<u8> = (0..120).map(|i| (i % 3) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.nii.gz");
        write_labels(&path, volume.dims, &labels, &volume.affine).unwrap();
        let back = read(&path, 1 << 20).unwrap();
        assert_eq!(back.dims, volume.dims);
        assert_eq!(
            back.voxels,
            labels.iter().map(|&l| f32::from(l)).collect::<Vec<_>>()
        );
        assert_eq!(
            back.affine.map(|r| r.map(|v| v as f32)),
            volume.affine.map(|r| r.map(|v| v as f32))
        );
    }

    /// Hostile files are named errors, never panics.
    #[test]
    fn hostile_volumes_are_named_errors() {
        let err = |name: &str| read(&fixture(name), 1 << 20).unwrap_err();
        assert!(
            err("bad/four_d.nii").contains("dims are [4, 4, 4, 2]; vitrun reads 3-D volumes"),
            "{}",
            err("bad/four_d.nii")
        );
        assert!(err("bad/truncated.nii.gz").contains("the gzip stream is damaged or truncated"));
        assert!(err("bad/not_nifti.nii").contains("not a NIfTI-1 file"));
        assert!(read(&fixture("scans/images/case_a.nii.gz"), 100)
            .unwrap_err()
            .contains("declares 120 voxels"));
        let mut bytes = std::fs::read(fixture("scans/images/case_b.nii")).unwrap();
        bytes.truncate(bytes.len() - 8);
        assert!(parse(&bytes, 1 << 20)
            .unwrap_err()
            .contains("it is truncated"));
        let mut far = bytes.clone();
        let little = i32::from_le_bytes(far[..4].try_into().unwrap()) == 348;
        let offset = if little {
            1e30f32.to_le_bytes()
        } else {
            1e30f32.to_be_bytes()
        };
        far[108..112].copy_from_slice(&offset);
        let e = parse(&far, 1 << 20).unwrap_err();
        assert!(
            e.contains("it is truncated"),
            "an offset past any file: {e}"
        );
        for cut in [0, 100, 347] {
            assert!(parse(&bytes[..cut], 1 << 20).is_err());
        }
    }
}
