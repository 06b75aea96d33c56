//! The teacher's outputs kept on disk (`distill.cache`), so that students which see the same
//! images run the teacher once. An entry is addressed by what determines it: the teacher (its
//! weights file, architecture, input size, the backend) and the exact pixels of the batch it
//! classified. Students of one seed, data and augmentation draw the same batches in the same
//! epochs, so their batches find each other's entries; anything else (another seed, changed
//! data, another epoch's crops) hashes elsewhere and is computed.
//!
//! ```text
//! runs/.teacher-cache/<teacher>/teacher.json         what the teacher is (for people)
//! runs/.teacher-cache/<teacher>/<ab>/<abcdef…>.bin    one batch's outputs
//! ```
//!
//! An entry holds the top class of each image (hard distillation) or its logits in f16
//! (soft), with its own header and checksum. It is written to a private temporary file, synced
//! and linked into place, so a reader sees a whole entry or none, and concurrent trials or
//! SLURM tasks writing the same entry never clobber each other. Every read is verified (the
//! teacher, the input's hash, the shape and the payload's checksum); an entry that does not
//! match is recomputed and replaced, never trusted. With the cache on, the outputs handed to
//! the loss are always the stored form (f16-rounded logits, or the top class), so a hit gives
//! the very bits a recompute gives.

use std::io::Write;
use std::path::{Path, PathBuf};

use half::f16;
use sha2::{Digest, Sha256};

use crate::config::DistillType;

/// An entry's first bytes.
const MAGIC: &[u8; 8] = b"VTTEACH1";

/// What an entry keeps of each image's logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The top class (hard distillation needs nothing else).
    TopClass,
    /// The logits in f16 (soft distillation).
    HalfLogits,
}

impl Stored {
    /// What `kind` of distillation needs.
    pub fn for_kind(kind: DistillType) -> Stored {
        match kind {
            DistillType::Hard => Stored::TopClass,
            DistillType::Soft | DistillType::None => Stored::HalfLogits,
        }
    }

    fn code(self) -> u8 {
        match self {
            Stored::TopClass => 1,
            Stored::HalfLogits => 2,
        }
    }

    /// The logits the stored form gives back: a one-hot row at the top class (whose arg-max
    /// is the teacher's), or the f16-rounded logits.
    pub fn settle(self, logits: &[f32], classes: usize) -> Vec<f32> {
        match self {
            Stored::HalfLogits => logits.iter().map(|&v| f16::from_f32(v).to_f32()).collect(),
            Stored::TopClass => {
                let mut out = vec![0f32; logits.len()];
                for (row, top) in top_classes(logits, classes).into_iter().enumerate() {
                    out[row * classes + top as usize] = 1.0;
                }
                out
            }
        }
    }
}

/// Each row's arg-max (the first of equals, as `argmax_rows`).
fn top_classes(logits: &[f32], classes: usize) -> Vec<u32> {
    logits
        .chunks(classes.max(1))
        .map(|row| {
            let mut best = 0;
            for (c, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = c;
                }
            }
            best as u32
        })
        .collect()
}

/// One teacher's cache in a runs folder.
pub struct TeacherCache {
    dir: PathBuf,
    teacher: [u8; 32],
    stored: Stored,
    classes: usize,
}

/// Why an entry was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// No entry for this input.
    Absent,
    /// An entry that does not match or is damaged (named by what failed).
    Rejected(String),
}

impl TeacherCache {
    /// The cache of the teacher identified by `teacher` (see [`teacher_key`]) under
    /// `runs_dir`; `describe` is written beside its entries for people.
    pub fn open(
        runs_dir: &Path,
        teacher: [u8; 32],
        stored: Stored,
        classes: usize,
        describe: &str,
    ) -> std::io::Result<TeacherCache> {
        let form = match stored {
            Stored::TopClass => "top",
            Stored::HalfLogits => "f16",
        };
        let dir = crate::contract::RunsDir::new(runs_dir)
            .teacher_cache()
            .join(format!("{}-{form}", hex::encode(&teacher[..8])));
        std::fs::create_dir_all(&dir)?;
        let about = dir.join("teacher.json");
        if !about.exists() {
            let text = serde_json::json!({ "teacher": describe, "key": hex::encode(teacher) });
            write_once(&about, text.to_string().as_bytes())?;
        }
        Ok(TeacherCache {
            dir,
            teacher,
            stored,
            classes,
        })
    }

    /// What the entries keep.
    pub fn stored(&self) -> Stored {
        self.stored
    }

    fn entry(&self, input: &[u8; 32]) -> PathBuf {
        let name = hex::encode(input);
        self.dir.join(&name[..2]).join(format!("{name}.bin"))
    }

    /// The settled logits `[rows, classes]` of the input hashed to `input`, when an entry
    /// for it exists and passes every check.
    pub fn read(&self, input: &[u8; 32], rows: usize) -> Result<Vec<f32>, Miss> {
        let bytes = match std::fs::read(self.entry(input)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Miss::Absent),
            Err(e) => return Err(Miss::Rejected(format!("unreadable ({e})"))),
        };
        self.decode(&bytes, input, rows).map_err(Miss::Rejected)
    }

    fn decode(&self, bytes: &[u8], input: &[u8; 32], rows: usize) -> Result<Vec<f32>, String> {
        let header = 8 + 1 + 4 + 4 + 32 + 32;
        if bytes.len() < header + 32 || &bytes[..8] != MAGIC {
            return Err("not a teacher-cache entry".into());
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != sum {
            return Err("its checksum does not match its contents".into());
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]));
        if body[8] != self.stored.code() {
            return Err("it keeps another form of the outputs".into());
        }
        if u32_at(9) as usize != rows || u32_at(13) as usize != self.classes {
            return Err(format!(
                "its shape {}x{} is not the batch's {rows}x{}",
                u32_at(9),
                u32_at(13),
                self.classes
            ));
        }
        if body[17..49] != self.teacher || body[49..81] != input[..] {
            return Err("it belongs to another teacher or input".into());
        }
        let payload = &body[header..];
        let classes = self.classes;
        match self.stored {
            Stored::TopClass => {
                if payload.len() != rows * 4 {
                    return Err("its payload has the wrong length".into());
                }
                let mut out = vec![0f32; rows * classes];
                for (row, c) in payload.chunks_exact(4).enumerate() {
                    let top = u32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as usize;
                    if top >= classes {
                        return Err(format!("class {top} is out of range"));
                    }
                    out[row * classes + top] = 1.0;
                }
                Ok(out)
            }
            Stored::HalfLogits => {
                if payload.len() != rows * classes * 2 {
                    return Err("its payload has the wrong length".into());
                }
                Ok(payload
                    .chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect())
            }
        }
    }

    /// Keeps the teacher's `logits` `[rows, classes]` of the input hashed to `input`. An
    /// existing entry is left as it is unless `replace` (it failed its checks).
    pub fn write(&self, input: &[u8; 32], logits: &[f32], replace: bool) -> std::io::Result<()> {
        let rows = logits.len() / self.classes.max(1);
        let mut body = Vec::with_capacity(81 + logits.len() * 2 + 32);
        body.extend_from_slice(MAGIC);
        body.push(self.stored.code());
        body.extend_from_slice(&(rows as u32).to_le_bytes());
        body.extend_from_slice(&(self.classes as u32).to_le_bytes());
        body.extend_from_slice(&self.teacher);
        body.extend_from_slice(input);
        match self.stored {
            Stored::TopClass => {
                for top in top_classes(logits, self.classes) {
                    body.extend_from_slice(&top.to_le_bytes());
                }
            }
            Stored::HalfLogits => {
                for &v in logits {
                    body.extend_from_slice(&f16::from_f32(v).to_le_bytes());
                }
            }
        }
        let sum = Sha256::digest(&body);
        body.extend_from_slice(&sum);
        let path = self.entry(input);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if replace {
            let tmp = temporary(&path);
            write_synced(&tmp, &body)?;
            std::fs::rename(&tmp, &path).inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })
        } else {
            write_once(&path, &body)
        }
    }
}

/// The hash that addresses a batch: its shape and pixels.
pub fn input_key(pixels: &[f32], dims: [usize; 4]) -> [u8; 32] {
    let mut h = Sha256::new();
    for d in dims {
        h.update((d as u64).to_le_bytes());
    }
    // In blocks of bytes: one hasher call per pixel would cost more than the hash itself.
    let mut block = [0u8; 4096];
    for chunk in pixels.chunks(block.len() / 4) {
        for (bytes, v) in block.chunks_exact_mut(4).zip(chunk) {
            bytes.copy_from_slice(&v.to_le_bytes());
        }
        h.update(&block[..chunk.len() * 4]);
    }
    h.finalize().into()
}

/// The hash that identifies a teacher: its weights file's bytes, what it is built as
/// (`describe_model`: architecture and input size), and the backend that runs it.
pub fn teacher_key(
    weights: &Path,
    describe_model: &str,
    backend: &str,
) -> std::io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(b"vitrun teacher cache 1\0");
    h.update(describe_model.as_bytes());
    h.update([0]);
    h.update(backend.as_bytes());
    h.update([0]);
    let mut file = std::fs::File::open(weights)?;
    std::io::copy(&mut file, &mut h)?;
    Ok(h.finalize().into())
}

/// A temporary name beside `path`, private to this process and call.
fn temporary(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Writes `bytes` to `path` whole or not at all, keeping an entry another process linked
/// first (hard links are atomic on local disks and NFS alike).
fn write_once(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temporary(path);
    write_synced(&tmp, bytes)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path, stored: Stored) -> TeacherCache {
        TeacherCache::open(dir, [7; 32], stored, 3, "test teacher").unwrap()
    }

    #[test]
    fn the_input_key_is_the_hash_of_the_shape_and_the_pixels_bytes() {
        let pixels: Vec<f32> = (0..3000).map(|i| i as f32 * 0.37 - 11.0).collect();
        let mut bytes: Vec<u8> = [3000u64, 1, 1, 1]
            .iter()
            .flat_map(|d| d.to_le_bytes())
            .collect();
        bytes.extend(pixels.iter().flat_map(|v| v.to_le_bytes()));
        let want: [u8; 32] = Sha256::digest(&bytes).into();
        assert_eq!(input_key(&pixels, [3000, 1, 1, 1]), want);
        let mut other = pixels.clone();
        other[2999] += 1.0;
        assert_ne!(input_key(&other, [3000, 1, 1, 1]), want);
    }

    #[test]
    fn an_entry_reads_back_as_the_settled_logits() {
        let dir = tempfile::tempdir().unwrap();
        let logits = [0.1, 2.5, -1.0, 3.3, 0.0, 1.000_123];
        for stored in [Stored::TopClass, Stored::HalfLogits] {
            let c = cache(dir.path(), stored);
            let input = input_key(&[1.0, 2.0], [2, 1, 1, 1]);
            assert_eq!(c.read(&input, 2), Err(Miss::Absent));
            c.write(&input, &logits, false).unwrap();
            assert_eq!(c.read(&input, 2).unwrap(), stored.settle(&logits, 3));
        }
        assert_eq!(
            Stored::TopClass.settle(&logits, 3),
            vec![0.0, 1.0, 0.0, 1.0, 0.0, 0.0]
        );
    }

    #[test]
    fn a_damaged_or_foreign_entry_is_rejected_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path(), Stored::HalfLogits);
        let input = input_key(&[1.0], [1, 1, 1, 1]);
        c.write(&input, &[1.0, 2.0, 3.0], false).unwrap();
        let path = c.entry(&input);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[90] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(c.read(&input, 1), Err(Miss::Rejected(why)) if why.contains("checksum")));
        c.write(&input, &[1.0, 2.0, 3.0], true).unwrap();
        assert_eq!(c.read(&input, 1).unwrap(), vec![1.0, 2.0, 3.0]);
        let other = TeacherCache {
            teacher: [8; 32],
            ..cache(dir.path(), Stored::HalfLogits)
        };
        assert!(matches!(other.read(&input, 1), Err(Miss::Rejected(_))));
        assert!(matches!(c.read(&input, 2), Err(Miss::Rejected(why)) if why.contains("shape")));
    }
}
