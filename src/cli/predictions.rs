//! `vitrun predict --out DIR`: each image's files (`<stem>.<suffix>`), one JSON line per image
//! in `predictions.jsonl`, and for a detector the run's boxes as COCO results
//! (`detections.json`, the list pycocotools' `COCO.loadRes` reads), with image and category
//! ids from a COCO annotation file when one is given (`--coco`).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::task::Answer;

/// The ids a COCO annotation file gives images (by file name) and categories (by name).
pub struct CocoIds {
    file: PathBuf,
    images: HashMap<String, u64>,
    categories: HashMap<String, u64>,
}

#[derive(Deserialize)]
struct CocoFile {
    images: Vec<CocoImage>,
    categories: Vec<CocoCategory>,
}

#[derive(Deserialize)]
struct CocoImage {
    id: u64,
    file_name: String,
}

#[derive(Deserialize)]
struct CocoCategory {
    id: u64,
    name: String,
}

impl CocoIds {
    /// The ids of the annotation file `file`.
    pub fn read(file: &Path) -> anyhow::Result<CocoIds> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("--coco {}: cannot read it", file.display()))?;
        let parsed: CocoFile = serde_json::from_str(&text).with_context(|| {
            format!(
                "--coco {}: not a COCO annotation file (it needs `images` [{{id, file_name}}] and `categories` [{{id, name}}])",
                file.display()
            )
        })?;
        Ok(CocoIds {
            file: file.to_path_buf(),
            images: parsed
                .images
                .into_iter()
                .map(|i| (i.file_name, i.id))
                .collect(),
            categories: parsed
                .categories
                .into_iter()
                .map(|c| (c.name, c.id))
                .collect(),
        })
    }

    /// The id of `image`: the entry whose `file_name` the path ends with, the longest first.
    fn image_id(&self, image: &Path) -> anyhow::Result<u64> {
        self.images
            .iter()
            .filter(|(name, _)| image.ends_with(name))
            .max_by_key(|(name, _)| name.len())
            .map(|(_, &id)| id)
            .with_context(|| {
                format!(
                    "{}: no entry of {}'s `images` has this file_name; give images the annotation file lists, or leave out --coco",
                    image.display(),
                    self.file.display()
                )
            })
    }

    fn category_id(&self, class: &str) -> anyhow::Result<u64> {
        self.categories.get(class).copied().with_context(|| {
            format!(
                "class {class:?} is not a category of {} (by name); give the annotation file the model was trained on",
                self.file.display()
            )
        })
    }
}

/// The folder predictions are written to.
pub struct OutDir {
    dir: PathBuf,
    lines: std::io::BufWriter<std::fs::File>,
    stems: HashMap<String, usize>,
    coco: Option<CocoIds>,
    results: Option<Vec<serde_json::Value>>,
    count: u64,
}

impl OutDir {
    /// Creates `dir` (and `predictions.jsonl` in it, replacing an earlier one).
    pub fn create(dir: &Path, coco: Option<CocoIds>) -> anyhow::Result<OutDir> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--out {}: cannot create the folder", dir.display()))?;
        let path = dir.join("predictions.jsonl");
        let file = std::fs::File::create(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(OutDir {
            dir: dir.to_path_buf(),
            lines: std::io::BufWriter::new(file),
            stems: HashMap::new(),
            coco,
            results: None,
            count: 0,
        })
    }

    /// A stem for `image`'s files not used before in this run (`a`, then `a-2`, …).
    fn stem(&mut self, image: &Path) -> String {
        let stem = image
            .file_stem()
            .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
        let seen = self.stems.entry(stem.clone()).or_insert(0);
        *seen += 1;
        if *seen == 1 {
            stem
        } else {
            format!("{stem}-{seen}")
        }
    }

    /// Writes `answer`'s files for `image` and its line; returns its JSON with the files'
    /// paths (and image id, for a detector) added.
    pub fn write(&mut self, image: &Path, answer: &Answer) -> anyhow::Result<serde_json::Value> {
        self.count += 1;
        let stem = self.stem(image);
        let mut fields = serde_json::Map::new();
        fields.insert("image".into(), image.display().to_string().into());
        if let serde_json::Value::Object(own) = &answer.json {
            fields.extend(own.clone());
        }
        let mut files = serde_json::Map::new();
        for file in &answer.files {
            let path = self.dir.join(format!("{stem}.{}", file.suffix));
            std::fs::write(&path, &file.bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            files.insert(file.suffix.into(), path.display().to_string().into());
        }
        fields.insert("files".into(), files.into());
        if let Some(boxes) = &answer.boxes {
            let image_id = match &self.coco {
                Some(ids) => ids.image_id(image)?,
                None => self.count,
            };
            fields.insert("image_id".into(), image_id.into());
            let results = self.results.get_or_insert_with(Vec::new);
            for b in boxes {
                let category_id = match &self.coco {
                    Some(ids) => ids.category_id(&b.class)?,
                    None => b.class_index as u64 + 1,
                };
                results.push(serde_json::json!({
                    "image_id": image_id,
                    "category_id": category_id,
                    "bbox": b.bbox,
                    "score": b.score,
                }));
            }
        }
        let json = serde_json::Value::Object(fields);
        writeln!(self.lines, "{json}")?;
        Ok(json)
    }

    /// Finishes the run's files: `predictions.jsonl`, and `detections.json` when boxes were
    /// predicted; returns the latter's path.
    pub fn finish(mut self) -> anyhow::Result<Option<PathBuf>> {
        self.lines.flush()?;
        let Some(results) = self.results else {
            return Ok(None);
        };
        let path = self.dir.join("detections.json");
        std::fs::write(&path, serde_json::to_string(&results)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Some(path))
    }

    /// Whether ids come from a COCO file (else images count from 1 in order and categories are
    /// the class index + 1).
    pub fn has_coco_ids(&self) -> bool {
        self.coco.is_some()
    }
}
