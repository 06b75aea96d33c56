//! Append-only shards: what one trial attempt on a cluster node records, in its own file in
//! the trial folder (`shards/attempt-NNNN.jsonl`), one writer per file. SQLite's WAL and POSIX
//! locks are not safe across hosts on NFS or Lustre, so cluster nodes never write the store;
//! the submit host folds shards into it ([`super::Store::fold_shards`]).
//!
//! Each record is one line: the CRC-32 of its JSON in 8 hex digits, a space, the JSON, `\n`.
//! A reader takes complete lines whose checksum matches; a torn last line (no newline yet, or
//! a checksum that does not match at the very end) is left for a later read. When the attempt
//! ends, `attempt-NNNN.end` (its final status) is renamed into place.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::contract::TrialDir;

use super::{MetricRow, Status};

/// One record of a shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// The attempt started: what [`super::Store::claim_trial`] records.
    Claim {
        trial: String,
        experiment: String,
        file: String,
        config: String,
        seed: u64,
        params: Vec<(String, String)>,
        device: String,
        host: String,
        pid: u32,
        /// `JOBID_INDEX` of the array task.
        job: Option<String>,
        git_commit: Option<String>,
        time: String,
        /// The task's main metric's name (absent from shards of vitrun 0.1's first stores).
        #[serde(default)]
        main_metric: Option<String>,
    },
    ClearMetrics {
        trial: String,
    },
    Metrics {
        trial: String,
        rows: Vec<MetricRow>,
    },
    Status {
        trial: String,
        status: Status,
        error: Option<String>,
        time: String,
    },
    Artifact {
        trial: String,
        kind: String,
        path: String,
        time: String,
    },
    Event {
        trial: String,
        kind: String,
        message: String,
        time: String,
    },
}

impl Record {
    /// The trial the record is about.
    pub fn trial(&self) -> &str {
        match self {
            Record::Claim { trial, .. }
            | Record::ClearMetrics { trial }
            | Record::Metrics { trial, .. }
            | Record::Status { trial, .. }
            | Record::Artifact { trial, .. }
            | Record::Event { trial, .. } => trial,
        }
    }
}

/// The final marker of an attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndMarker {
    pub status: Status,
    pub error: Option<String>,
    pub time: String,
}

/// A shard that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("shard {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("shard {path}, byte {offset}: {reason}; the file is damaged before its end, so it cannot be folded; move it out of the runs folder and resume the trial")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ShardError + '_ {
    move |source| ShardError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Encodes one record as its line.
pub fn encode(record: &Record) -> String {
    let json = serde_json::to_string(record).expect("a record serialises");
    format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes()))
}

/// What a read from an offset found.
#[derive(Debug, Default)]
pub struct Chunk {
    pub records: Vec<Record>,
    /// The offset just past the last complete record read.
    pub end: u64,
}

/// Reads the complete records of `path` from byte `from` on.
pub fn read_from(path: &Path, from: u64) -> Result<Chunk, ShardError> {
    let mut file = File::open(path).map_err(io(path))?;
    file.seek(SeekFrom::Start(from)).map_err(io(path))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io(path))?;
    let mut out = Chunk {
        records: Vec::new(),
        end: from,
    };
    let mut start = 0;
    while let Some(len) = bytes[start..].iter().position(|b| *b == b'\n') {
        let line = &bytes[start..start + len];
        let is_last = start + len + 1 == bytes.len();
        match decode(line) {
            Ok(record) => out.records.push(record),
            // A torn final write: left until the writer completes it (or forever, if it died).
            Err(_) if is_last => break,
            Err(reason) => {
                return Err(ShardError::Corrupt {
                    path: path.to_path_buf(),
                    offset: from + start as u64,
                    reason,
                })
            }
        }
        start += len + 1;
        out.end = from + start as u64;
    }
    Ok(out)
}

fn decode(line: &[u8]) -> Result<Record, String> {
    let text = std::str::from_utf8(line).map_err(|_| "a line is not UTF-8".to_string())?;
    let (crc, json) = text
        .split_once(' ')
        .ok_or_else(|| "a line has no checksum".to_string())?;
    let want = u32::from_str_radix(crc, 16).map_err(|_| format!("bad checksum field {crc:?}"))?;
    if crc32fast::hash(json.as_bytes()) != want {
        return Err("checksum mismatch".into());
    }
    serde_json::from_str(json).map_err(|e| format!("unreadable record: {e}"))
}

/// The attempts' shard files of a trial folder, oldest first.
pub fn attempts(trial_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(TrialDir::at(trial_dir).shards()) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "jsonl")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("attempt-"))
        })
        .collect();
    files.sort();
    files
}

/// The end marker beside a shard file, if the attempt ended.
pub fn end_marker(shard: &Path) -> Option<EndMarker> {
    let text = std::fs::read_to_string(shard.with_extension("end")).ok()?;
    serde_json::from_str(&text).ok()
}

/// A trial as its shards tell it, all attempts applied in order.
#[derive(Debug, Default, Clone)]
pub struct ShardView {
    /// By (split, name, step).
    pub metrics: BTreeMap<(String, String, i64), MetricRow>,
    pub status: Option<Status>,
    pub attempts: usize,
    /// Whether the newest attempt has its end marker.
    pub ended: bool,
    /// Attempts that ended preempted.
    pub preemptions: usize,
    /// The SLURM array task (`JOBID_INDEX`) of the newest attempt's claim.
    pub last_job: Option<String>,
}

impl ShardView {
    /// Reads every attempt of the trial in `trial_dir`.
    pub fn read(trial_dir: &Path) -> Result<ShardView, ShardError> {
        let mut view = ShardView::default();
        let files = attempts(trial_dir);
        for file in &files {
            for record in read_from(file, 0)?.records {
                match record {
                    Record::ClearMetrics { .. } => view.metrics.clear(),
                    Record::Metrics { rows, .. } => {
                        for r in rows {
                            view.metrics
                                .insert((r.split.clone(), r.name.clone(), r.step), r);
                        }
                    }
                    Record::Status { status, .. } => view.status = Some(status),
                    Record::Claim { job, .. } => {
                        view.status = Some(Status::Running);
                        view.last_job = job;
                    }
                    Record::Artifact { .. } | Record::Event { .. } => {}
                }
            }
            let end = end_marker(file);
            if end.as_ref().is_some_and(|e| e.status == Status::Preempted) {
                view.preemptions += 1;
            }
            view.ended = end.is_some();
        }
        view.attempts = files.len();
        Ok(view)
    }

    /// `split/name` values at epochs `1..=epoch` (or exactly `epoch`), in epoch order.
    pub fn values(&self, metric: &str, epoch: usize, exact: bool) -> Vec<f64> {
        let (split, name) = metric.split_once('/').unwrap_or(("val", metric));
        let mut rows: Vec<&MetricRow> = self
            .metrics
            .values()
            .filter(|r| r.split == split && r.name == name)
            .filter(|r| {
                if exact {
                    r.epoch == epoch as i64
                } else {
                    r.epoch <= epoch as i64
                }
            })
            .collect();
        rows.sort_by_key(|r| r.epoch);
        rows.iter().map(|r| r.value).collect()
    }
}

/// The writer of one attempt's shard.
pub struct ShardWriter {
    path: PathBuf,
    file: File,
}

impl ShardWriter {
    /// Creates the next attempt's shard in `trial_dir` (never reusing an existing file).
    pub fn create(trial_dir: &Path) -> Result<ShardWriter, ShardError> {
        let dir = TrialDir::at(trial_dir).shards();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut n = attempts(trial_dir).len() + 1;
        loop {
            let path = dir.join(format!("attempt-{n:04}.jsonl"));
            match OpenOptions::new().append(true).create_new(true).open(&path) {
                Ok(file) => return Ok(ShardWriter { path, file }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(io(&path)(e)),
            }
        }
    }

    /// The shard file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record and flushes it to the disk (readers on other hosts see whole lines).
    pub fn append(&mut self, record: &Record) -> Result<(), ShardError> {
        self.file
            .write_all(encode(record).as_bytes())
            .and_then(|_| self.file.sync_data())
            .map_err(io(&self.path))
    }

    /// Puts the attempt's end marker in place (write, flush, rename), replacing an earlier one.
    pub fn mark_end(&self, end: &EndMarker) -> Result<(), ShardError> {
        let target = self.path.with_extension("end");
        let tmp = self.path.with_extension("end.tmp");
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(
            serde_json::to_string(end)
                .expect("a marker serialises")
                .as_bytes(),
        )
        .and_then(|_| f.sync_all())
        .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &target).map_err(io(&target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: usize) -> Record {
        Record::Event {
            trial: "t".into(),
            kind: "k".into(),
            message: format!("m{n}"),
            time: "now".into(),
        }
    }

    #[test]
    fn a_torn_last_line_waits_and_a_damaged_middle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ShardWriter::create(dir.path()).unwrap();
        w.append(&event(1)).unwrap();
        w.append(&event(2)).unwrap();
        let path = w.path().to_path_buf();
        let whole = std::fs::read(&path).unwrap();
        let partial = encode(&event(3));
        std::fs::write(
            &path,
            [whole.as_slice(), &partial.as_bytes()[..20]].concat(),
        )
        .unwrap();
        let read = read_from(&path, 0).unwrap();
        assert_eq!(read.records, vec![event(1), event(2)]);
        assert_eq!(read.end, whole.len() as u64);
        let mut damaged = whole.clone();
        damaged[12] ^= 1;
        std::fs::write(&path, damaged).unwrap();
        let err = read_from(&path, 0).unwrap_err().to_string();
        assert!(
            err.contains("byte 0") && err.contains("move it out"),
            "{err}"
        );
    }

    #[test]
    fn attempts_get_new_files_and_markers() {
        let dir = tempfile::tempdir().unwrap();
        let a = ShardWriter::create(dir.path()).unwrap();
        let b = ShardWriter::create(dir.path()).unwrap();
        assert_ne!(a.path(), b.path());
        assert_eq!(attempts(dir.path()), vec![a.path(), b.path()]);
        let end = EndMarker {
            status: Status::Preempted,
            error: None,
            time: "t".into(),
        };
        a.mark_end(&end).unwrap();
        assert_eq!(end_marker(a.path()), Some(end));
        assert_eq!(end_marker(b.path()), None);
    }
}
